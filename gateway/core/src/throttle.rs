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
mod tests;
