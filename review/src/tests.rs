//! Snapshot tests of every screen on ratatui's TestBackend, driven through `App::update` with real recordings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
