//! Brute-force protection (RFC 6749 section 2.3.1, RFC 9700 section 4.x): failed logins are
//! counted per username and per client address, failed client authentications per client and
//! address, each in a fixed window of `--failure-window`. Past a key's limit, attempts on that key
//! are refused with 429 and `Retry-After` until its window ends, before any password is verified.
//! Only the key that failed is slowed: other users, addresses and clients are never affected, and
//! failures from one address never stop a client's correct secret from another.
//!
//! An attempt is counted (reserved) before its credential is verified, and uncounted when it
//! turns out right: guesses sent at the same moment get no more tries than guesses sent one by
//! one. Counting after the verification let hundreds of concurrent guesses through.
//!
//! The counters live in a bounded moka cache whose entries expire with the window, so a flood of
//! distinct usernames or addresses cannot grow memory without bound.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use metrics::Counter;

use crate::domain::Timestamp;
use crate::error::ApiError;
use crate::telemetry::{self, Metrics};

/// Bytes the tracked keys may take together (each weighed as its text plus a fixed overhead);
/// beyond this the least recently used are forgotten. About 200,000 keys of usual length.
const MAX_BYTES: u64 = 32 * 1024 * 1024;

/// What one tracked key costs besides its text: the window, the `Arc`, moka's entry.
const ENTRY_OVERHEAD: u32 = 160;

/// Usernames longer than this are tracked by their SHA-256 instead: a client picks them, and a
/// 16 KiB username must not cost 16 KiB of throttle state.
const MAX_KEY_TEXT: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Username(String),
    Address(IpAddr),
    /// A client's authentications from one address (`None`: the address is unknown).
    Client(String, Option<IpAddr>),
}

impl Key {
    /// A username as a key: as it is when short, else its SHA-256 (still one key per username).
    pub fn username(name: &str) -> Self {
        Self::Username(bounded(name))
    }

    fn text_len(&self) -> usize {
        match self {
            Self::Username(s) | Self::Client(s, _) => s.len(),
            Self::Address(_) => 16,
        }
    }

    fn label(&self) -> usize {
        match self {
            Self::Username(_) => 0,
            Self::Address(_) => 1,
            Self::Client(..) => 2,
        }
    }
}

fn bounded(text: &str) -> String {
    if text.len() <= MAX_KEY_TEXT {
        return text.to_owned();
    }
    let digest = crate::crypto::hash_token(text);
    let hex: String = digest.0.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub window: Duration,
    pub per_username: u32,
    pub per_address: u32,
    pub per_client: u32,
}

/// Attempts of one key in its current window: failures, and attempts still being verified.
struct Window {
    started_ms: AtomicI64,
    attempts: AtomicU32,
}

pub struct Throttle {
    limits: Limits,
    windows: moka::sync::Cache<Key, Arc<Window>>,
    throttled: [Counter; 3],
    failures: [Counter; 2],
}

impl Throttle {
    pub fn new(limits: Limits, metrics: &Metrics) -> Self {
        let throttled = ["username", "address", "client"].map(|k| {
            let c = metrics.counter(telemetry::THROTTLED, &[("key", k)]);
            c.absolute(0);
            c
        });
        let failures = ["login", "client"].map(|k| {
            let c = metrics.counter(telemetry::AUTH_FAILURES, &[("kind", k)]);
            c.absolute(0);
            c
        });
        let windows = moka::sync::Cache::builder()
            .max_capacity(MAX_BYTES)
            .weigher(|k: &Key, _| {
                u32::try_from(k.text_len())
                    .unwrap_or(u32::MAX)
                    .saturating_add(ENTRY_OVERHEAD)
            })
            .time_to_idle(limits.window.max(Duration::from_secs(1)))
            .build();
        Self {
            limits,
            windows,
            throttled,
            failures,
        }
    }

    fn limit(&self, key: &Key) -> u32 {
        match key {
            Key::Username(_) => self.limits.per_username,
            Key::Address(_) => self.limits.per_address,
            Key::Client(..) => self.limits.per_client,
        }
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.limits.window.as_millis()).unwrap_or(i64::MAX)
    }

    /// Counts an attempt against `key` before its credential is verified, or refuses it
    /// (`Throttled`) when the key's attempts in the current window reached its limit. An attempt
    /// that turns out right is given back with [`release`](Self::release) or
    /// [`succeeded`](Self::succeeded); a wrong one stays counted.
    pub fn reserve(&self, key: &Key, now: Timestamp) -> Result<(), ApiError> {
        let limit = self.limit(key);
        let w = self.windows.get_with_by_ref(key, || {
            Arc::new(Window {
                started_ms: AtomicI64::new(now.millis()),
                attempts: AtomicU32::new(0),
            })
        });
        let started = w.started_ms.load(Ordering::Acquire);
        if now.millis() >= started.saturating_add(self.window_ms())
            && w.started_ms
                .compare_exchange(started, now.millis(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            w.attempts.store(0, Ordering::Release);
        }
        let counted = w
            .attempts
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1));
        if counted.is_ok() {
            return Ok(());
        }
        self.throttled[key.label()].increment(1);
        tracing::info!(target: "security", key = ["username", "address", "client"][key.label()], "throttled");
        let ends = w.started_ms.load(Ordering::Acquire).saturating_add(self.window_ms());
        let retry_after_secs = u64::try_from((ends - now.millis() + 999) / 1000).unwrap_or(1).max(1);
        Err(ApiError::Throttled { retry_after_secs })
    }

    /// Gives back an attempt [`reserve`](Self::reserve) counted, when it did not fail.
    pub fn release(&self, key: &Key) {
        if let Some(w) = self.windows.get(key) {
            let _ = w
                .attempts
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// Records that a reserved attempt failed (it stays counted): the failure metric.
    pub fn failed(&self, key: &Key) {
        self.failures[usize::from(matches!(key, Key::Client(..)))].increment(1);
    }

    /// Forgets a key's attempts (a username after a successful login).
    pub fn succeeded(&self, key: &Key) {
        self.windows.invalidate(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        let limits = Limits {
            window: Duration::from_secs(60),
            per_username: 3,
            per_address: 5,
            per_client: 2,
        };
        Throttle::new(limits, &Metrics::new())
    }

    /// One failed attempt: reserved, then failed.
    fn fail(t: &Throttle, key: &Key, now: Timestamp) {
        t.reserve(key, now).unwrap();
        t.failed(key);
    }

    #[test]
    fn a_key_is_throttled_after_its_limit_until_its_window_ends() {
        let t = throttle();
        let now = Timestamp::from_millis(1_000_000);
        let alice = Key::Username("alice".into());
        for _ in 0..3 {
            fail(&t, &alice, now);
        }
        match t.reserve(&alice, now.plus(Duration::from_secs(10))) {
            Err(ApiError::Throttled { retry_after_secs }) => assert_eq!(retry_after_secs, 50),
            other => panic!("{other:?}"),
        }
        assert!(
            t.reserve(&Key::Username("bob".into()), now).is_ok(),
            "other keys are not affected"
        );
        // After the window a fresh count starts.
        let later = now.plus(Duration::from_secs(60));
        for _ in 0..3 {
            fail(&t, &alice, later);
        }
        assert!(t.reserve(&alice, later).is_err());
    }

    #[test]
    fn attempts_in_flight_count_before_they_fail() {
        let t = throttle();
        let now = Timestamp::from_millis(0);
        let alice = Key::Username("alice".into());
        // Three guesses under verification at once use up the limit: a fourth is refused
        // before any of them has failed.
        for _ in 0..3 {
            assert!(t.reserve(&alice, now).is_ok());
        }
        assert!(t.reserve(&alice, now).is_err());
        // One of them was right: its attempt is given back.
        t.release(&alice);
        assert!(t.reserve(&alice, now).is_ok());
    }

    #[test]
    fn success_forgets_the_failures() {
        let t = throttle();
        let now = Timestamp::from_millis(0);
        let c = Key::Client("app".into(), None);
        fail(&t, &c, now);
        fail(&t, &c, now);
        assert!(t.reserve(&c, now).is_err());
        t.succeeded(&c);
        assert!(t.reserve(&c, now).is_ok());
    }

    #[test]
    fn long_usernames_are_tracked_in_bounded_space() {
        let t = throttle();
        let now = Timestamp::from_millis(0);
        let long = "x".repeat(16 * 1024);
        let key = Key::username(&long);
        assert!(key.text_len() <= MAX_KEY_TEXT + 7, "{}", key.text_len());
        for _ in 0..3 {
            fail(&t, &Key::username(&long), now);
        }
        assert!(
            t.reserve(&Key::username(&long), now).is_err(),
            "still one key per username"
        );
        assert!(t.reserve(&Key::username(&format!("{long}y")), now).is_ok());
        assert_eq!(
            Key::username("alice"),
            Key::Username("alice".into()),
            "short ones as they are"
        );
    }

    #[test]
    fn a_client_is_throttled_per_address() {
        let t = throttle();
        let now = Timestamp::from_millis(0);
        let from = |a: [u8; 4]| Key::Client("app".into(), Some(IpAddr::from(a)));
        fail(&t, &from([10, 0, 0, 1]), now);
        fail(&t, &from([10, 0, 0, 1]), now);
        assert!(t.reserve(&from([10, 0, 0, 1]), now).is_err());
        assert!(
            t.reserve(&from([10, 0, 0, 2]), now).is_ok(),
            "another address is not slowed"
        );
    }
}
