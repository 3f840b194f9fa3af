//! Tests of the proxy's logic without sockets: the session cap (which fails closed when the bridge count
//! cannot be read), the session's end signal that cuts short waits for the target, the methods offered
//! for relay, and how target text is shown.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use russh::{MethodKind, MethodSet};

use super::auth::relayable;
use super::channels::{may_open_session, terminal_size};
use super::session::Shared;
use super::{MAX_PROMPT_CHARS, MAX_SESSIONS, shown};

#[test]
fn sessions_open_only_after_authentication_and_below_the_cap() {
    assert!(!may_open_session(false, Some(0), 0));
    assert!(may_open_session(true, Some(0), 0));
    assert!(may_open_session(true, Some(MAX_SESSIONS - 2), 1));
    assert!(!may_open_session(true, Some(MAX_SESSIONS - 1), 1));
    assert!(!may_open_session(true, Some(0), MAX_SESSIONS));
    assert!(!may_open_session(true, Some(MAX_SESSIONS), 0));
}

#[test]
fn a_poisoned_bridge_count_fails_closed() {
    let shared = Arc::new(Shared::new());
    assert_eq!(shared.bridges_open(), Some(0));
    let poisoner = shared.clone();
    let panicked = std::thread::spawn(move || {
        let _tasks = poisoner.tasks.lock().unwrap();
        panic!("a bridge panicked holding the task set");
    })
    .join();
    assert!(panicked.is_err());
    assert!(shared.tasks.is_poisoned());
    assert_eq!(shared.bridges_open(), None);
    // Unknown counts as full: no channel opens, however few are pending.
    assert!(!may_open_session(true, shared.bridges_open(), 0));
}

#[tokio::test]
async fn ending_the_session_releases_waits_for_the_target() {
    let shared = Arc::new(Shared::new());
    let waiting = tokio::spawn({
        let shared = shared.clone();
        async move { shared.ended().await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    shared.end();
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    // Once ended, later waits return at once.
    tokio::time::timeout(Duration::from_secs(5), shared.ended())
        .await
        .unwrap();
}

#[test]
fn only_relayable_methods_are_offered() {
    let target = MethodSet::from(
        &[
            MethodKind::PublicKey,
            MethodKind::Password,
            MethodKind::KeyboardInteractive,
        ][..],
    );
    let offered = relayable(&target);
    assert!(offered.contains(&MethodKind::Password));
    assert!(offered.contains(&MethodKind::KeyboardInteractive));
    assert!(!offered.contains(&MethodKind::PublicKey));
    assert!(relayable(&MethodSet::from(&[MethodKind::PublicKey][..])).is_empty());
}

#[test]
fn target_text_is_bounded_and_has_no_control_characters() {
    assert_eq!(shown("Password:\n\x1b[2J"), "Password:\n\u{fffd}[2J");
    assert_eq!(shown(&"x".repeat(10_000)).chars().count(), MAX_PROMPT_CHARS);
}

#[test]
fn terminal_sizes_saturate() {
    assert_eq!(terminal_size(80, 24), (80, 24));
    assert_eq!(terminal_size(u32::MAX, 70_000), (u16::MAX, u16::MAX));
}

#[tokio::test]
async fn a_wait_on_a_silent_target_gives_up_when_the_session_ends() {
    let shared = Arc::new(Shared::new());
    let answered = shared.unless_ended(async { 7 }).await;
    assert_eq!(answered, Some(7));
    let silent_target = tokio::spawn({
        let shared = shared.clone();
        async move { shared.unless_ended(std::future::pending::<()>()).await }
    });
    tokio::task::yield_now().await;
    assert!(!silent_target.is_finished());
    shared.end();
    let outcome = tokio::time::timeout(Duration::from_secs(5), silent_target)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, None);
}
