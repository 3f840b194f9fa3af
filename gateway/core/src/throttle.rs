//! Brute-force defence for the portal login, sans-io: per-source back-off and per-user lockout.
//!
//! The portal asks [`LoginThrottle::check`] before it verifies a password and refuses the attempt
//! without verifying anything when the answer is not [`Verdict::Allow`]. It then reports the outcome
//! with [`LoginThrottle::record_failure`] or [`LoginThrottle::record_success`]. Two rules apply:
//!
//! - **Per source.** After [`ThrottleConfig::source_max_failures`] failures from one source within
//!   [`ThrottleConfig::source_window`], the source must wait: 1 s, then 2 s, 4 s… (each further failure
//!   doubles the wait, up to [`ThrottleConfig::backoff_max`]). A source is an IPv4 address or an IPv6
//!   /64 (one subscriber usually holds a whole /64); IPv4-mapped IPv6 addresses count as IPv4.
//! - **Per user.** After [`ThrottleConfig::user_max_failures`] failures for one username within
//!   [`ThrottleConfig::user_window`], from any sources, that username is locked for
//!   [`ThrottleConfig::user_lock`]. Usernames that do not exist are tracked exactly like real ones, so
//!   the throttle never reveals which users exist.
//!
//! A success removes the failures that source made against that username (a person who mistyped and
//! then got it right starts afresh), but not the failures it made against other usernames: owning one
//! account does not buy more guesses at another.
//!
//! Time is a parameter (`now`, a [`Duration`] since any fixed point of a monotonic clock), and memory
//! is bounded: at most [`ThrottleConfig::max_tracked_sources`] sources and
//! [`ThrottleConfig::max_tracked_users`] usernames are tracked. When a table is full, entries with
//! nothing left to enforce are dropped first, then the one whose last failure is oldest, preferring
//! entries that are not currently blocked. Usernames are kept as keyed hashes, never as text.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};

/// The prefix type sources are reported in (re-exported: it is part of this module's API).
pub use ipnet::IpNet;

/// The throttle's limits. The portal's defaults are [`ThrottleConfig::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures from one source within [`Self::source_window`] before it must wait.
    pub source_max_failures: u32,
    /// The window in which a source's failures are counted.
    pub source_window: Duration,
    /// The first wait; each further failure doubles it.
    pub backoff_initial: Duration,
    /// The longest wait.
    pub backoff_max: Duration,
    /// Failures for one username within [`Self::user_window`], from any source, before it is locked.
    pub user_max_failures: u32,
    /// The window in which a username's failures are counted.
    pub user_window: Duration,
    /// How long a username stays locked.
    pub user_lock: Duration,
    /// Most sources tracked at once.
    pub max_tracked_sources: usize,
    /// Most usernames tracked at once.
    pub max_tracked_users: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            source_max_failures: 5,
            source_window: Duration::from_secs(5 * 60),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(15 * 60),
            user_max_failures: 10,
            user_window: Duration::from_secs(15 * 60),
            user_lock: Duration::from_secs(15 * 60),
            max_tracked_sources: 10_000,
            max_tracked_users: 10_000,
        }
    }
}

/// What to do with a login attempt, decided before the password is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Verify the password.
    Allow,
    /// The source is backing off: refuse without verifying; it may try again after `retry_after`.
    Wait {
        /// How long until the source may try again.
        retry_after: Duration,
    },
    /// The username is locked: refuse without verifying, whoever asks.
    UserLocked {
        /// When the lock ends (same clock as `now`).
        until: Duration,
    },
}

/// A lockout that has just started, reported by [`LoginThrottle::record_failure`] so that it can be
/// audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockEvent {
    /// A source must wait.
    Source {
        /// The source (an IPv4 /32 or an IPv6 /64).
        source: IpNet,
        /// When the wait ends.
        until: Duration,
        /// The wait just imposed.
        wait: Duration,
    },
    /// A username is locked.
    User {
        /// The username, as typed.
        username: String,
        /// When the lock ends.
        until: Duration,
    },
}

/// The unit a per-source rule applies to: an IPv4 address (IPv4-mapped IPv6 included) or an IPv6 /64.
pub fn source_net(addr: IpAddr) -> IpNet {
    match addr {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpNet::V4(Ipv4Net::from(v4)),
            None => {
                // A prefix length of 64 is always valid, so the fallback never applies.
                Ipv6Net::new(v6, 64)
                    .map(|net| IpNet::V6(net.trunc()))
                    .unwrap_or_else(|_| IpNet::V6(Ipv6Net::from(v6)))
            }
        },
    }
}

#[derive(Debug, Default)]
struct SourceEntry {
    /// Recent failures: (username hash, when), oldest first, at most `source_max_failures`.
    failures: VecDeque<(u64, Duration)>,
    /// How many waits in a row this source has earned (0: not backing off).
    level: u32,
    blocked_until: Duration,
    last_failure: Duration,
}

#[derive(Debug, Default)]
struct UserEntry {
    /// Recent failures: (source, when), oldest first, at most `user_max_failures`.
    failures: VecDeque<(IpNet, Duration)>,
    locked_until: Duration,
    last_failure: Duration,
}

/// Trait shared by both tables so eviction is written once.
trait Tracked {
    /// Whether the entry blocks anything at `now`.
    fn blocking(&self, now: Duration) -> bool;
    /// Whether the entry still has anything to remember at `now`.
    fn live(&self, now: Duration, config: &ThrottleConfig) -> bool;
    fn last_failure(&self) -> Duration;
}

impl Tracked for SourceEntry {
    fn blocking(&self, now: Duration) -> bool {
        self.blocked_until > now
    }
    fn live(&self, now: Duration, config: &ThrottleConfig) -> bool {
        let recent = self
            .failures
            .back()
            .is_some_and(|(_, at)| *at + config.source_window > now);
        let escalated = self.level > 0 && self.blocked_until + config.source_window > now;
        recent || escalated
    }
    fn last_failure(&self) -> Duration {
        self.last_failure
    }
}

impl Tracked for UserEntry {
    fn blocking(&self, now: Duration) -> bool {
        self.locked_until > now
    }
    fn live(&self, now: Duration, config: &ThrottleConfig) -> bool {
        self.blocking(now)
            || self
                .failures
                .back()
                .is_some_and(|(_, at)| *at + config.user_window > now)
    }
    fn last_failure(&self) -> Duration {
        self.last_failure
    }
}

/// The entry for `key`, made room for when the table is full.
fn entry_with_room<'a, K, V>(
    table: &'a mut HashMap<K, V>,
    key: K,
    cap: usize,
    now: Duration,
    config: &ThrottleConfig,
) -> &'a mut V
where
    K: std::hash::Hash + Eq + Copy,
    V: Tracked + Default,
{
    if !table.contains_key(&key) && table.len() >= cap.max(1) {
        table.retain(|_, entry| entry.live(now, config));
        if table.len() >= cap.max(1) {
            let victim = table
                .iter()
                .min_by_key(|(_, entry)| (entry.blocking(now), entry.last_failure()))
                .map(|(key, _)| *key);
            if let Some(victim) = victim {
                table.remove(&victim);
            }
        }
    }
    table.entry(key).or_default()
}

/// Login failure bookkeeping for the whole portal (wrap it in a mutex; every method is quick).
#[derive(Debug)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    sources: HashMap<IpNet, SourceEntry>,
    users: HashMap<u64, UserEntry>,
    /// Keys the username hash, so nobody can aim collisions at a chosen username.
    hasher: RandomState,
}

impl LoginThrottle {
    /// An empty throttle.
    pub fn new(config: ThrottleConfig) -> LoginThrottle {
        LoginThrottle {
            config,
            sources: HashMap::new(),
            users: HashMap::new(),
            hasher: RandomState::new(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    fn user_key(&self, username: &str) -> u64 {
        self.hasher.hash_one(username)
    }

    /// Whether a login attempt by `username` from `addr` may be verified at `now`.
    pub fn check(&self, addr: IpAddr, username: &str, now: Duration) -> Verdict {
        if let Some(source) = self.sources.get(&source_net(addr))
            && source.blocked_until > now
        {
            return Verdict::Wait {
                retry_after: source.blocked_until - now,
            };
        }
        if let Some(user) = self.users.get(&self.user_key(username))
            && user.locked_until > now
        {
            return Verdict::UserLocked {
                until: user.locked_until,
            };
        }
        Verdict::Allow
    }

    /// Records a wrong password (or unknown username) from `addr` at `now`; returns the lockouts
    /// this failure started (none, one or both kinds).
    pub fn record_failure(
        &mut self,
        addr: IpAddr,
        username: &str,
        now: Duration,
    ) -> Vec<LockEvent> {
        let mut events = Vec::new();
        let net = source_net(addr);
        let user_key = self.user_key(username);
        let config = &self.config;

        let source = entry_with_room(
            &mut self.sources,
            net,
            config.max_tracked_sources,
            now,
            config,
        );
        // A source that stayed quiet for a whole window after its last wait starts afresh.
        if source.level > 0 && source.blocked_until + config.source_window <= now {
            source.level = 0;
        }
        source
            .failures
            .retain(|(_, at)| *at + config.source_window > now);
        source.failures.push_back((user_key, now));
        while source.failures.len() > config.source_max_failures.max(1) as usize {
            source.failures.pop_front();
        }
        source.last_failure = now;
        if source.level > 0 || source.failures.len() >= config.source_max_failures as usize {
            source.level = source.level.saturating_add(1);
            let wait = backoff(config, source.level);
            source.blocked_until = now + wait;
            events.push(LockEvent::Source {
                source: net,
                until: source.blocked_until,
                wait,
            });
        }

        let user = entry_with_room(
            &mut self.users,
            user_key,
            config.max_tracked_users,
            now,
            config,
        );
        user.failures
            .retain(|(_, at)| *at + config.user_window > now);
        user.failures.push_back((net, now));
        while user.failures.len() > config.user_max_failures.max(1) as usize {
            user.failures.pop_front();
        }
        user.last_failure = now;
        if user.failures.len() >= config.user_max_failures as usize && user.locked_until <= now {
            user.locked_until = now + config.user_lock;
            user.failures.clear();
            events.push(LockEvent::User {
                username: username.to_owned(),
                until: user.locked_until,
            });
        }
        events
    }

    /// Records a successful login of `username` from `addr`: that source's failures against that
    /// username are forgotten, on both sides.
    pub fn record_success(&mut self, addr: IpAddr, username: &str, now: Duration) {
        let net = source_net(addr);
        let user_key = self.user_key(username);
        if let Some(source) = self.sources.get_mut(&net) {
            source.failures.retain(|(user, _)| *user != user_key);
            if source.failures.is_empty() {
                self.sources.remove(&net);
            }
        }
        if let Some(user) = self.users.get_mut(&user_key) {
            user.failures.retain(|(source, _)| *source != net);
            if user.failures.is_empty() && user.locked_until <= now {
                self.users.remove(&user_key);
            }
        }
    }

    /// The sources that must wait at `now`, with when their wait ends.
    ///
    /// This is the interface the eBPF edge uses to push a source into the XDP blocklist (an LPM trie
    /// with expiry): each entry is a prefix (an IPv4 /32 or an IPv6 /64) and the instant, on the clock
    /// `now` is measured on, at which the block lapses. The caller converts that instant to its own
    /// clock and decides from which wait on a source is worth dropping at the edge.
    pub fn blocked_sources(&self, now: Duration) -> Vec<(IpNet, Duration)> {
        let mut blocked: Vec<(IpNet, Duration)> = self
            .sources
            .iter()
            .filter(|(_, source)| source.blocked_until > now)
            .map(|(net, source)| (*net, source.blocked_until))
            .collect();
        blocked.sort();
        blocked
    }

    /// How many sources and usernames are tracked (for tests and metrics).
    pub fn tracked(&self) -> (usize, usize) {
        (self.sources.len(), self.users.len())
    }
}

/// The wait for the `level`th back-off in a row: `backoff_initial * 2^(level-1)`, capped.
fn backoff(config: &ThrottleConfig, level: u32) -> Duration {
    let doublings = level.saturating_sub(1).min(31);
    config
        .backoff_initial
        .saturating_mul(1u32 << doublings)
        .min(config.backoff_max)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
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

    fn fails(
        from: u64,
        every: u64,
        addr: &'static str,
        user: &'static str,
        count: usize,
    ) -> Vec<Step> {
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
}
