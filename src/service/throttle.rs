//! Brute-force protection (RFC 6749 section 2.3.1, RFC 9700 section 4.x): failed logins are
//! counted per username and per client address, failed client authentications per client, each
//! in a fixed window of `--failure-window`. Past a key's limit, attempts on that key are refused
//! with 429 and `Retry-After` until its window ends, before any password is verified. Only the
//! key that failed is slowed: other users, addresses and clients are never affected.
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

/// Most keys tracked at once; beyond this the least recently used are forgotten.
const MAX_KEYS: u64 = 200_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Username(String),
    Address(IpAddr),
    Client(String),
}

impl Key {
    fn label(&self) -> usize {
        match self {
            Self::Username(_) => 0,
            Self::Address(_) => 1,
            Self::Client(_) => 2,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub window: Duration,
    pub per_username: u32,
    pub per_address: u32,
    pub per_client: u32,
}

/// Failures of one key in its current window.
struct Window {
    started_ms: AtomicI64,
    failures: AtomicU32,
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
            .max_capacity(MAX_KEYS)
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
            Key::Client(_) => self.limits.per_client,
        }
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.limits.window.as_millis()).unwrap_or(i64::MAX)
    }

    /// `Throttled` when `key` used up its failures in the current window.
    pub fn check(&self, key: &Key, now: Timestamp) -> Result<(), ApiError> {
        let Some(w) = self.windows.get(key) else {
            return Ok(());
        };
        let started = w.started_ms.load(Ordering::Acquire);
        let ends = started.saturating_add(self.window_ms());
        if now.millis() >= ends || w.failures.load(Ordering::Acquire) < self.limit(key) {
            return Ok(());
        }
        self.throttled[key.label()].increment(1);
        tracing::info!(target: "security", key = ["username", "address", "client"][key.label()], "throttled");
        let retry_after_secs = u64::try_from((ends - now.millis() + 999) / 1000).unwrap_or(1).max(1);
        Err(ApiError::Throttled { retry_after_secs })
    }

    /// Counts a failure against `key`, opening a new window when the last one ended.
    pub fn failed(&self, key: Key, now: Timestamp) {
        self.failures[usize::from(matches!(key, Key::Client(_)))].increment(1);
        let w = self.windows.get_with(key, || {
            Arc::new(Window {
                started_ms: AtomicI64::new(now.millis()),
                failures: AtomicU32::new(0),
            })
        });
        let started = w.started_ms.load(Ordering::Acquire);
        if now.millis() >= started.saturating_add(self.window_ms())
            && w.started_ms
                .compare_exchange(started, now.millis(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            w.failures.store(0, Ordering::Release);
        }
        w.failures.fetch_add(1, Ordering::AcqRel);
    }

    /// Forgets a key's failures (a username after a successful login).
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

    #[test]
    fn a_key_is_throttled_after_its_limit_until_its_window_ends() {
        let t = throttle();
        let now = Timestamp::from_millis(1_000_000);
        let alice = Key::Username("alice".into());
        for _ in 0..3 {
            assert!(t.check(&alice, now).is_ok());
            t.failed(alice.clone(), now);
        }
        match t.check(&alice, now.plus(Duration::from_secs(10))) {
            Err(ApiError::Throttled { retry_after_secs }) => assert_eq!(retry_after_secs, 50),
            other => panic!("{other:?}"),
        }
        assert!(
            t.check(&Key::Username("bob".into()), now).is_ok(),
            "other keys are not affected"
        );
        assert!(
            t.check(&alice, now.plus(Duration::from_secs(60))).is_ok(),
            "the window ended"
        );
        // A failure after the window starts a fresh count.
        t.failed(alice.clone(), now.plus(Duration::from_secs(61)));
        assert!(t.check(&alice, now.plus(Duration::from_secs(62))).is_ok());
    }

    #[test]
    fn success_forgets_the_failures() {
        let t = throttle();
        let now = Timestamp::from_millis(0);
        let c = Key::Client("app".into());
        t.failed(c.clone(), now);
        t.failed(c.clone(), now);
        assert!(t.check(&c, now).is_err());
        t.succeeded(&c);
        assert!(t.check(&c, now).is_ok());
    }
}
