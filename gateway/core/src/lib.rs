//! Sans-io core of Sallyport: the decisions and wire formats every session goes through.
//!
//! This crate never does I/O: no sockets, no files, no clock, no DNS, no tokio. Time, randomness and
//! resolved addresses are parameters. That keeps the rules that guard the gateway (which addresses may be
//! dialled, who may connect to what, what bytes from the browser mean) small, testable and fuzzable.
//!
//! - [`egress`]: which target addresses may be dialled (SSRF rules), and parsing of every address encoding.
//! - [`policy`]: the [`policy::Authenticated`] → [`policy::Authorized`] proof values a connect requires.
//! - [`frames`]: the browser ↔ gateway terminal WebSocket protocol.
//! - [`errors`]: the plain-words errors a user sees.

pub mod egress;
pub mod errors;
pub mod frames;
pub mod policy;
