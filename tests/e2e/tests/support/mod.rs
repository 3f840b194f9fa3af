//! Shared steps of the end-to-end scenarios (they live in the harness library, `sallyport_e2e::portal`).

#![allow(unused_imports)]

pub use sallyport_e2e::portal::*;
