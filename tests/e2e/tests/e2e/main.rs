//! The end-to-end scenarios against real peers, one module each, linked into one test executable
//! (one link of the harness instead of one per scenario; they once filled the disk). Scenarios run
//! side by side, two at a time in CI: each makes its own namespaces, servers and gateway. The ones that
//! must not share the machine or the process are in `tests/alone/`; the appliance test, which needs
//! the built image, is `tests/appliance_image.rs`.

mod admin_browser;
mod authorization;
mod browser_rdp;
mod browser_ssh;
mod cli_migration;
mod cli_proxy;
mod cli_quic;
mod cli_refusals;
mod connect_by_ip;
mod dashboard_browser;
mod demo;
mod desktop_clipboard_policy;
mod edge_live;
mod harness;
mod hostile_targets;
mod keyboard_admin;
mod login_throttle;
mod mfa_browser;
mod passkeys;
mod policy_editor;
mod program_browser;
mod rdp_client;
mod refusals;
mod review_desktop;
mod review_remote;
mod review_tui;
mod secrets;
mod session_limits;
mod signin_burst;
mod slowloris;
mod sso;
mod target_lost;
mod web_security;
