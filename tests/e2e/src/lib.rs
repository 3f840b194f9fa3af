//! End-to-end test harness for Sallyport with real peers.
//!
//! - [`netns`]: network namespaces joined to the root namespace by a veth pair (the target networks).
//! - [`sshd`]: OpenSSH's sshd inside such a namespace, the `sp-e2e` test user (and `sp-e2e-sudo`, who may use
//!   sudo) and client keys.
//! - [`hostile_rdp`]: an RDP server of ours that breaks the protocol on purpose, one way per CVE class.
//! - [`rdp`]: xrdp (and FreeRDP's shadow server) inside such a namespace, with a known desktop.
//! - [`gateway`]: the built `sallyport-gateway` binary with a generated configuration.
//! - [`http`]: an HTTPS client pinned to the gateway's certificate, with cookies and WebSockets.
//! - [`browser`]: headless Chromium through chromedriver and fantoccini.
//! - [`idp`]: panva's oidc-provider (npm) as the tests' OpenID provider, its login page driven over HTTPS too.
//! - [`cli`]: the built `sallyport` CLI with its own config directory, driven through a pseudo-terminal.
//! - [`tunnel`]: TCP between the root namespace and the browser's own namespace.
//! - [`tmux`]: terminal programs (the built `sallyport-review`) in a private tmux server, typed into and read.
//! - [`common`]: root and tool checks, bounded waits, free ports, processes by PID.
//! - [`bench_rdp`]: the RDP benchmark of `sallyport-bench rdp` (fps, CPU, bytes ratio, memory, concurrency).
//! - [`bench_edge`]: the eBPF edge benchmark of `sallyport-bench edge` (XDP against nftables, TCP with and
//!   without the edge).
//! - [`bench_quic`]: the QUIC benchmark of `sallyport-bench quic` (bulk and CPU per GB against the WebSocket
//!   path, set-up time cold and resumed).
//!
//! Network rule: traffic goes only to loopback or to addresses inside namespaces the harness
//! created, and every wait is bounded in time. Everything started is stopped by PID on drop,
//! also when a test panics. The tests need root; without it they fail with a message saying so.

pub mod appliance;
pub mod bench_boot;
pub mod bench_edge;
pub mod bench_quic;
pub mod bench_rdp;
pub mod browser;
pub mod cli;
pub mod common;
pub mod gateway;
pub mod hostile;
pub mod hostile_rdp;
pub mod http;
pub mod idp;
pub mod netns;
pub mod paced_rdp;
pub mod portal;
pub mod postgres;
pub mod rdp;
pub mod sshd;
pub mod tmux;
pub mod tunnel;
pub mod webauthn;

pub use browser::Browser;
pub use common::{free_port, require_root, wait_until, wait_until_async};
pub use gateway::{Gateway, GatewayOptions};
pub use http::{Client, HandshakeError, Response};
pub use netns::TargetNet;
pub use sshd::{KeyPair, Sshd, SshdOptions, TestUser, ensure_sudo_user, ensure_test_user};
