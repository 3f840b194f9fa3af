//! Tests of the dashboard snapshot over a real state database file, live sessions and a fake edge.

#![allow(clippy::unwrap_used, clippy::panic)]

use sallyport_state::AuditEvent;

use super::*;
use crate::live::LiveInfo;

struct FakeEdge(EdgeSummary);

impl EdgeSource for FakeEdge {
    fn summary(&self) -> EdgeSummary {
        self.0.clone()
    }
}

fn healthy() -> RecorderHealth {
    RecorderHealth {
        queued_events: 0,
        queue_capacity: 4096,
        failing: None,
    }
}

fn audit(state: &StateDb, at_ms: u64, kind: &str, actor: &str) {
    state
        .audit(
            at_ms,
            &AuditEvent {
                kind: kind.into(),
                actor: Some(actor.into()),
                client_addr: Some("192.0.2.7".into()),
                ..AuditEvent::default()
            },
        )
        .unwrap();
}

#[test]
fn a_snapshot_of_sessions_sign_ins_edge_disk_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDb::open(&dir.path().join("state.db")).unwrap();
    state
        .create_user("admin", "one-time", Role::Admin, true, 0)
        .unwrap();
    audit(&state, 10, "login", "ann");
    audit(&state, 20, "connect", "ann");
    audit(&state, 30, "login_failed", "mallory");
    audit(&state, 40, "quic_refused", "bob");

    let live = LiveSessions::default();
    let handle = live.register(LiveInfo {
        session_id: "s1".into(),
        user_id: 1,
        username: "ann".into(),
        target: "web".into(),
        client_addr: "192.0.2.7:5000".parse().unwrap(),
        protocol: "rdp".into(),
        started_at_ms: 1_000,
        bytes_up: 0,
        bytes_down: 0,
    });
    handle.counters.add_up(12);
    handle.counters.add_down(3400);

    let sources = DashboardSources {
        state_dir: dir.path().to_owned(),
        recordings_db: dir.path().join("recordings.db"),
        edge: Some(Arc::new(FakeEdge(EdgeSummary {
            not_attached: None,
            drops_last_hour: vec![("closed_port".into(), 42)],
            minutes_sampled: 60,
        }))),
    };
    let board = build(
        DashboardParts {
            state: &state,
            live: &live,
            recorder: healthy(),
            sources: Some(&sources),
        },
        61_000,
    );
    assert_eq!(board.live.len(), 1);
    let session = &board.live[0];
    assert_eq!(session.protocol, "rdp");
    assert_eq!(session.running_for, Duration::from_secs(60));
    assert_eq!(
        (session.bytes_to_target, session.bytes_from_target),
        (12, 3400)
    );

    let kinds: Vec<(&str, SignInOutcome)> = board
        .sign_ins
        .iter()
        .map(|s| (s.kind.as_str(), s.outcome))
        .collect();
    assert_eq!(
        kinds,
        [
            ("quic_refused", SignInOutcome::Refused),
            ("login_failed", SignInOutcome::Refused),
            ("login", SignInOutcome::SignedIn),
        ],
        "connects are not sign-ins"
    );
    assert_eq!(board.sign_ins[1].user.as_deref(), Some("mallory"));
    assert_eq!(board.sign_ins[1].source.as_deref(), Some("192.0.2.7"));

    assert!(board.edge.attached());
    assert_eq!(board.edge.drops_last_hour, [("closed_port".to_owned(), 42)]);
    let disk = board.disk.unwrap();
    assert!(disk.state_dir_bytes > 0, "the state database is there");
    assert!(board.unavailable.is_empty(), "{:?}", board.unavailable);
    assert!(
        board
            .warnings
            .iter()
            .any(|w| w.contains("admin account admin still has its one-time password")),
        "{:?}",
        board.warnings
    );
}

#[test]
fn warnings_in_words() {
    let detached = EdgeSummary {
        not_attached: Some("no [[edge.interfaces]] are configured".into()),
        ..EdgeSummary::default()
    };
    let full = DiskUse {
        recordings_bytes: 0,
        state_dir_bytes: 0,
        filesystem_bytes: 100 << 30,
        available_bytes: 5 << 30,
    };
    let failing = RecorderHealth {
        queued_events: 4000,
        queue_capacity: 4096,
        failing: Some("database or disk is full".into()),
    };
    let words = warnings(&detached, Some(&full), &failing, &[]);
    assert_eq!(words.len(), 4, "{words:?}");
    assert!(words[0].starts_with("Recording is failing (database or disk is full)"));
    assert!(words[1].contains("95% full (5.0 GiB left)"), "{}", words[1]);
    assert!(words[2].contains("not attached (no [[edge.interfaces]] are configured)"));
    assert!(words[3].contains("4000 of 4096"));
    let roomy = DiskUse {
        available_bytes: 50 << 30,
        ..full
    };
    let attached = EdgeSummary::default();
    assert!(warnings(&attached, Some(&roomy), &healthy(), &[]).is_empty());
}

#[test]
fn a_missing_directory_and_no_edge_are_said_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDb::open(&dir.path().join("state.db")).unwrap();
    let sources = DashboardSources {
        state_dir: dir.path().join("gone"),
        recordings_db: dir.path().join("gone/recordings.db"),
        edge: None,
    };
    let board = build(
        DashboardParts {
            state: &state,
            live: &LiveSessions::default(),
            recorder: healthy(),
            sources: Some(&sources),
        },
        0,
    );
    assert_eq!(board.disk, None);
    assert!(
        board.unavailable[0].starts_with("disk use: "),
        "{:?}",
        board.unavailable
    );
    assert!(!board.edge.attached());
    assert!(
        board
            .warnings
            .iter()
            .any(|w| w.contains("runs without the edge"))
    );
}
