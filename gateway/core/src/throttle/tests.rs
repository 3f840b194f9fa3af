//! Unit tests of the login throttle: back-off per source, lockout per user, bounded tables, time as a
//! parameter.

#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;

const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// One step of a scenario: at `at` ms, do something and expect something.
enum Step {
    /// A wrong password; expect exactly these lockouts to start (`"source"`/`"user"` and the wait or
    /// lock length in ms).
    Fail(
        u64,
        &'static str,
        &'static str,
        &'static [(&'static str, u64)],
    ),
    /// A right password.
    Succeed(u64, &'static str, &'static str),
    /// Expect this verdict: `Allow`, `Wait(retry_after ms)` or `Locked(until ms)`.
    Check(u64, &'static str, &'static str, Expect),
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Allow,
    Wait(u64),
    Locked(u64),
}

/// Runs `steps` on a fresh throttle with `config` and checks every expectation.
fn check(name: &str, config: ThrottleConfig, steps: &[Step]) -> LoginThrottle {
    let mut throttle = LoginThrottle::new(config);
    for (index, step) in steps.iter().enumerate() {
        match step {
            Step::Fail(at, addr, user, expect) => {
                let events = throttle.record_failure(ip(addr), user, ms(*at));
                let got: Vec<(&str, u64)> = events
                    .iter()
                    .map(|event| match event {
                        LockEvent::Source { wait, until, .. } => {
                            assert_eq!(*until, ms(*at) + *wait, "{name} step {index}");
                            ("source", wait.as_millis() as u64)
                        }
                        LockEvent::User { until, username } => {
                            assert_eq!(username, user, "{name} step {index}");
                            ("user", (*until - ms(*at)).as_millis() as u64)
                        }
                    })
                    .collect();
                assert_eq!(got, *expect, "{name} step {index}: lock events");
            }
            Step::Succeed(at, addr, user) => throttle.record_success(ip(addr), user, ms(*at)),
            Step::Check(at, addr, user, expect) => {
                let verdict = throttle.check(ip(addr), user, ms(*at));
                let ok = match (expect, verdict) {
                    (Expect::Allow, Verdict::Allow) => true,
                    (Expect::Wait(w), Verdict::Wait { retry_after }) => retry_after == ms(*w),
                    (Expect::Locked(u), Verdict::UserLocked { until }) => until == ms(*u),
                    _ => false,
                };
                assert!(
                    ok,
                    "{name} step {index}: expected {expect:?}, got {verdict:?}"
                );
            }
        }
    }
    throttle
}

fn fails(from: u64, every: u64, addr: &'static str, user: &'static str, count: usize) -> Vec<Step> {
    (0..count)
        .map(|i| Step::Fail(from + i as u64 * every, addr, user, &[]))
        .collect()
}

#[test]
fn sources_back_off_exponentially_up_to_the_cap() {
    use Expect::*;
    use Step::*;
    let mut steps = fails(0, 100, "192.0.2.1", "alice", 4);
    steps.extend([
        Check(350, "192.0.2.1", "alice", Allow),
        Fail(400, "192.0.2.1", "alice", &[("source", SECOND)]),
        // The right password is not even looked at, and other usernames wait too.
        Check(400, "192.0.2.1", "alice", Wait(SECOND)),
        Check(900, "192.0.2.1", "bob", Wait(500)),
        // Other sources are not affected.
        Check(900, "192.0.2.2", "alice", Allow),
        Check(1400, "192.0.2.1", "alice", Allow),
        Fail(1400, "192.0.2.1", "alice", &[("source", 2 * SECOND)]),
        Check(3399, "192.0.2.1", "alice", Wait(1)),
        Fail(3400, "192.0.2.1", "alice", &[("source", 4 * SECOND)]),
        Fail(7400, "192.0.2.1", "alice", &[("source", 8 * SECOND)]),
    ]);
    check("doubling", ThrottleConfig::default(), &steps);

    let capped = ThrottleConfig {
        source_max_failures: 1,
        backoff_max: ms(5 * SECOND),
        user_max_failures: 100,
        ..ThrottleConfig::default()
    };
    check(
        "capped",
        capped,
        &[
            Fail(0, "192.0.2.1", "a", &[("source", SECOND)]),
            Fail(1000, "192.0.2.1", "a", &[("source", 2 * SECOND)]),
            Fail(3000, "192.0.2.1", "a", &[("source", 4 * SECOND)]),
            Fail(7000, "192.0.2.1", "a", &[("source", 5 * SECOND)]),
            Fail(12000, "192.0.2.1", "a", &[("source", 5 * SECOND)]),
            Check(16000, "192.0.2.1", "a", Wait(SECOND)),
        ],
    );
}

#[test]
fn failures_outside_the_window_do_not_add_up() {
    use Expect::*;
    use Step::*;
    // Four failures, then one more just after the first left the five-minute window.
    let mut steps = fails(0, SECOND, "192.0.2.1", "alice", 4);
    steps.push(Fail(5 * MINUTE, "192.0.2.1", "alice", &[]));
    steps.push(Check(5 * MINUTE, "192.0.2.1", "alice", Allow));
    steps.push(Fail(
        5 * MINUTE + 1,
        "192.0.2.1",
        "alice",
        &[("source", SECOND)],
    ));
    check("window", ThrottleConfig::default(), &steps);
}

#[test]
fn a_quiet_window_after_the_last_wait_resets_the_back_off() {
    use Expect::*;
    use Step::*;
    let config = ThrottleConfig {
        source_max_failures: 2,
        user_max_failures: 100,
        ..ThrottleConfig::default()
    };
    check(
        "quiet",
        config,
        &[
            Fail(0, "192.0.2.1", "a", &[]),
            Fail(0, "192.0.2.1", "a", &[("source", SECOND)]),
            Fail(SECOND, "192.0.2.1", "a", &[("source", 2 * SECOND)]),
            // Still escalated a moment before the quiet window ends…
            Fail(3 * SECOND, "192.0.2.1", "a", &[("source", 4 * SECOND)]),
            // …then nothing for five minutes after the wait: the next failure starts over.
            Check(7 * SECOND + 5 * MINUTE, "192.0.2.1", "a", Allow),
            Fail(7 * SECOND + 5 * MINUTE, "192.0.2.1", "a", &[]),
            Fail(
                7 * SECOND + 5 * MINUTE,
                "192.0.2.1",
                "a",
                &[("source", SECOND)],
            ),
        ],
    );
}

#[test]
fn a_success_forgets_that_sources_failures_for_that_user_only() {
    use Expect::*;
    use Step::*;
    // A person who mistyped four times and then got it right starts afresh.
    let mut steps = fails(0, 100, "192.0.2.1", "alice", 4);
    steps.push(Succeed(500, "192.0.2.1", "alice"));
    steps.extend(fails(600, 100, "192.0.2.1", "alice", 4));
    steps.push(Check(1000, "192.0.2.1", "alice", Allow));
    check("mistyped", ThrottleConfig::default(), &steps);

    // An attacker with an account of their own: guessing at bob, then logging in as mallory,
    // does not clear the guesses at bob.
    let mut steps = fails(0, 100, "192.0.2.1", "bob", 4);
    steps.push(Succeed(500, "192.0.2.1", "mallory"));
    steps.push(Fail(600, "192.0.2.1", "bob", &[("source", SECOND)]));
    steps.push(Check(700, "192.0.2.1", "bob", Wait(900)));
    check("other account", ThrottleConfig::default(), &steps);

    // After the wait, a success clears the back-off so the next typo is just a typo.
    let mut steps = fails(0, 100, "192.0.2.1", "alice", 4);
    steps.push(Fail(400, "192.0.2.1", "alice", &[("source", SECOND)]));
    steps.push(Succeed(1500, "192.0.2.1", "alice"));
    steps.push(Fail(1600, "192.0.2.1", "alice", &[]));
    steps.push(Check(1600, "192.0.2.1", "alice", Allow));
    check("after the wait", ThrottleConfig::default(), &steps);
}

#[test]
fn users_lock_after_failures_from_any_source() {
    use Expect::*;
    use Step::*;
    const LOCK: u64 = 15 * MINUTE;
    let mut steps = Vec::new();
    for (i, addr) in [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "192.0.2.4",
        "192.0.2.5",
    ]
    .into_iter()
    .enumerate()
    {
        let at = i as u64 * 1000;
        steps.push(Fail(at, addr, "alice", &[]));
        steps.push(Fail(at, addr, "nobody-here", &[]));
        if i < 4 {
            steps.push(Fail(at + 1, addr, "alice", &[]));
            steps.push(Fail(at + 1, addr, "nobody-here", &[]));
        }
    }
    steps.extend([
        Fail(4001, "192.0.2.6", "alice", &[("user", LOCK)]),
        Fail(4001, "192.0.2.6", "nobody-here", &[("user", LOCK)]),
        // Locked from every source, an unknown username exactly like a real one.
        Check(5000, "198.51.100.9", "alice", Locked(4001 + LOCK)),
        Check(5000, "198.51.100.9", "nobody-here", Locked(4001 + LOCK)),
        Check(5000, "198.51.100.9", "carol", Allow),
        // A success from a source does not lift the lock (the portal never gets that far, but
        // the throttle does not rely on it).
        Succeed(6000, "192.0.2.6", "alice"),
        Check(6000, "198.51.100.9", "alice", Locked(4001 + LOCK)),
        Check(4001 + LOCK, "198.51.100.9", "alice", Allow),
    ]);
    check("user lock", ThrottleConfig::default(), &steps);

    // Both lockouts can start with the same failure.
    let both = ThrottleConfig {
        source_max_failures: 2,
        user_max_failures: 2,
        ..ThrottleConfig::default()
    };
    check(
        "both",
        both,
        &[
            Fail(0, "192.0.2.1", "a", &[]),
            Fail(1, "192.0.2.1", "a", &[("source", SECOND), ("user", LOCK)]),
            // The source's wait is reported first.
            Check(2, "192.0.2.1", "a", Wait(999)),
            Check(2, "192.0.2.2", "a", Locked(1 + LOCK)),
        ],
    );
}

#[test]
fn ipv6_sources_are_their_slash_64_and_mapped_ipv4_is_ipv4() {
    use Expect::*;
    use Step::*;
    let steps = [
        Fail(0, "2001:db8:1:2::1", "a", &[]),
        Fail(0, "2001:db8:1:2::2", "a", &[]),
        Fail(0, "2001:db8:1:2:ffff::3", "a", &[]),
        Fail(0, "2001:db8:1:2::4", "a", &[]),
        Fail(0, "2001:db8:1:2::5", "a", &[("source", SECOND)]),
        Check(1, "2001:db8:1:2:abcd::9", "a", Wait(999)),
        Check(1, "2001:db8:1:3::1", "a", Allow),
        Fail(0, "::ffff:192.0.2.7", "b", &[]),
        Fail(0, "192.0.2.7", "b", &[]),
        Fail(0, "::ffff:192.0.2.7", "b", &[]),
        Fail(0, "192.0.2.7", "b", &[]),
        Fail(0, "192.0.2.7", "b", &[("source", SECOND)]),
        Check(1, "::ffff:192.0.2.7", "b", Wait(999)),
    ];
    let throttle = check("ipv6", ThrottleConfig::default(), &steps);
    assert_eq!(
        throttle.blocked_sources(ms(1)),
        vec![
            ("192.0.2.7/32".parse().unwrap(), ms(SECOND)),
            ("2001:db8:1:2::/64".parse().unwrap(), ms(SECOND)),
        ]
    );
    assert!(throttle.blocked_sources(ms(SECOND)).is_empty());
}

#[test]
fn memory_is_bounded_and_blocked_entries_are_evicted_last() {
    let config = ThrottleConfig {
        source_max_failures: 1,
        user_max_failures: 1,
        max_tracked_sources: 50,
        max_tracked_users: 50,
        ..ThrottleConfig::default()
    };
    let mut throttle = LoginThrottle::new(config);
    let blocked = ip("192.0.2.1");
    throttle.record_failure(blocked, "victim", ms(0));
    // Spray from many sources with many usernames while the first source waits.
    for i in 0..1000u32 {
        let addr = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        throttle.record_failure(addr, &format!("user{i}"), ms(0));
    }
    let (sources, users) = throttle.tracked();
    assert!(
        sources <= 50 && users <= 50,
        "{sources} sources, {users} users"
    );
    // Every sprayed source is blocked too, so some blocks had to go: the newest are kept.
    assert!(matches!(
        throttle.check(IpAddr::from([10, 0, 3, 231]), "x", ms(1)),
        Verdict::Wait { .. }
    ));

    // With room to spare, entries nobody needs any more are dropped before blocked ones.
    let config = ThrottleConfig {
        source_max_failures: 3,
        max_tracked_sources: 10,
        ..ThrottleConfig::default()
    };
    let mut throttle = LoginThrottle::new(config);
    for _ in 0..3 {
        throttle.record_failure(blocked, "victim", ms(0));
    }
    for i in 0..100u8 {
        // One failure each, far apart: none of these sources is blocked.
        throttle.record_failure(IpAddr::from([10, 0, 0, i]), "someone", ms(u64::from(i)));
    }
    assert!(throttle.tracked().0 <= 10);
    assert!(matches!(
        throttle.check(blocked, "victim", ms(200)),
        Verdict::Wait { .. }
    ));
    // Once everything is stale, a new entry sweeps the table.
    throttle.record_failure(ip("198.51.100.1"), "late", ms(60 * MINUTE));
    assert_eq!(throttle.tracked().0, 1);
}

#[test]
fn successes_leave_nothing_behind() {
    let mut throttle = LoginThrottle::new(ThrottleConfig::default());
    throttle.record_failure(ip("192.0.2.1"), "alice", ms(0));
    throttle.record_failure(ip("192.0.2.1"), "alice", ms(1));
    throttle.record_success(ip("192.0.2.1"), "alice", ms(2));
    assert_eq!(throttle.tracked(), (0, 0));
}
