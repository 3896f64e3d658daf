//! Signing keys: one active key per algorithm, rotated on a schedule, published ahead, retired
//! after the tokens they signed, and shared by every node of a deployment.
//!
//! # Lifecycle
//! A key's state follows from three times, the same on every node that reads the same rows:
//! - `next` from its creation until `active_from`: in the JWKS, signing nothing yet;
//! - `active` from `active_from` until its successor (the next generation of its algorithm)
//!   becomes active: it signs;
//! - `retired` from then until every token it signed has expired (the longest token lifetime
//!   later, plus one refresh interval of slack for nodes that learn of the successor late): in the
//!   JWKS, signing nothing; then it is deleted.
//!
//! A withdrawn key (a rotation with `retire_now`, after a compromise) leaves the JWKS at once.
//!
//! # Rotation, once per deployment
//! Each node refreshes its key set every [`KeyPolicy::refresh_every`]. When the active key's
//! successor is due to be published (`--key-publish-ahead` before its rotation), the node
//! generates one and inserts it as the next generation; `(alg, generation)` is unique in the
//! store, so when several nodes do this at once one insert wins and the others find its key on
//! their next read. A node that starts later reads the same keys, and signs with them.
//!
//! # Secrecy
//! Private keys are sealed with `--key-encryption-key` (AES-256-GCM, bound to the key id and
//! algorithm) before they reach the store, and opened only into [`PrivateKey`], which prints
//! nothing. A node whose key-encryption key does not open the stored keys refuses to start, before
//! it writes anything: it must not "repair" the key set by rotating it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use metrics::{Gauge, Histogram};
use rand::RngCore;
use rand::rngs::OsRng;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::domain::Timestamp;
use crate::jose::{self, Alg, JoseError, JwtError, KeyEncryptionKey, PrivateKey, PublicKey, Verified};
use crate::store::{SigningKeyRecord, Store, StoreError};
use crate::telemetry::{self, Metrics};

/// The schedule of the keys.
#[derive(Clone, Copy, Debug)]
pub struct KeyPolicy {
    /// `--key-rotation-interval`: how long a key is active.
    pub rotation_interval: Duration,
    /// `--key-publish-ahead`: how long a successor is in the JWKS before it signs.
    pub publish_ahead: Duration,
    /// The longest lifetime of a token a key signs: a retired key stays published this long.
    pub token_lifetime: Duration,
}

impl KeyPolicy {
    /// How often a node re-reads the key set: often enough that every node knows a successor
    /// long before it signs (a quarter of the publish-ahead time), at most once a minute.
    pub fn refresh_every(&self) -> Duration {
        (self.publish_ahead / 4).clamp(Duration::from_millis(100), Duration::from_secs(60))
    }

    /// `Cache-Control: max-age` of the JWKS: a relying party that cached it just before a
    /// successor appeared sees the successor before it signs (refresh + max-age < publish-ahead).
    pub fn jwks_max_age(&self) -> Duration {
        (self.publish_ahead / 4).min(Duration::from_secs(600))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the key-encryption key does not open the stored signing key {kid:?}: start every node with the deployment's --key-encryption-key"
    )]
    WrongKeyEncryptionKey { kid: String },
    #[error("stored signing key {kid:?} is unusable: {source}")]
    Corrupt { kid: String, source: JoseError },
    #[error("no active {0} signing key")]
    NoActiveKey(Alg),
    #[error(transparent)]
    Jose(#[from] JoseError),
}

/// One key as this node holds it.
struct LoadedKey {
    kid: Arc<str>,
    alg: Alg,
    generation: i64,
    active_from: Timestamp,
    withdrawn_at: Option<Timestamp>,
    /// The successor's `active_from`: when this key stopped signing.
    retired_at: Option<Timestamp>,
    private: Arc<PrivateKey>,
    public: PublicKey,
}

/// What a key is at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    Next,
    Active,
    Retired,
    /// Out of the JWKS: withdrawn, or retired for longer than any token it signed lives.
    Gone,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retired => "retired",
            Self::Gone => "gone",
        }
    }
}

impl LoadedKey {
    fn state(&self, now: Timestamp, policy: &KeyPolicy) -> KeyState {
        if self.withdrawn_at.is_some_and(|w| w <= now) {
            return KeyState::Gone;
        }
        if now < self.active_from {
            return KeyState::Next;
        }
        match self.retired_at {
            Some(r) if r <= now => {
                let slack = policy.refresh_every();
                if now < r.plus(policy.token_lifetime).plus(slack) {
                    KeyState::Retired
                } else {
                    KeyState::Gone
                }
            }
            _ => KeyState::Active,
        }
    }
}

/// A node's view of the key set: every key it read, and the JWKS rendered from them.
pub struct KeySet {
    keys: Vec<LoadedKey>,
    jwks: Bytes,
}

impl KeySet {
    fn empty() -> Self {
        Self {
            keys: Vec::new(),
            jwks: Bytes::from_static(br#"{"keys":[]}"#),
        }
    }

    /// The key that signs for `alg` at `now`: the newest generation whose time has come.
    fn signer(&self, alg: Alg, now: Timestamp) -> Option<&LoadedKey> {
        self.keys
            .iter()
            .filter(|k| k.alg == alg && k.withdrawn_at.is_none_or(|w| now < w) && k.active_from <= now)
            .max_by_key(|k| k.generation)
    }
}

/// A signed token and the key that signed it.
pub struct Signed {
    pub token: String,
    pub kid: Arc<str>,
}

#[derive(Clone)]
pub struct KeyService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    kek: KeyEncryptionKey,
    clock: Clock,
    policy: KeyPolicy,
    set: RwLock<Arc<KeySet>>,
    /// Serialises refreshes and rotations on this node (other nodes are serialised by the
    /// store's unique generation).
    writer: tokio::sync::Mutex<()>,
    signing: HashMap<Alg, Histogram>,
    gauges: HashMap<(Alg, &'static str), Gauge>,
}

impl KeyService {
    /// Reads the deployment's keys (creating each algorithm's first key where there is none)
    /// and fails when the key-encryption key does not open them.
    pub async fn start(
        store: Arc<dyn Store>,
        kek: KeyEncryptionKey,
        clock: Clock,
        policy: KeyPolicy,
        metrics: &Metrics,
    ) -> Result<Self, KeyError> {
        let signing = Alg::ALL
            .into_iter()
            .map(|a| {
                (
                    a,
                    metrics.histogram(telemetry::SIGNING_DURATION, &[("alg", a.as_str())]),
                )
            })
            .collect();
        let gauges = Alg::ALL
            .into_iter()
            .flat_map(|a| {
                ["next", "active", "retired"].map(|s| {
                    (
                        (a, s),
                        metrics.gauge(telemetry::SIGNING_KEYS, &[("alg", a.as_str()), ("state", s)]),
                    )
                })
            })
            .collect();
        let service = Self {
            inner: Arc::new(Inner {
                store,
                kek,
                clock,
                policy,
                set: RwLock::new(Arc::new(KeySet::empty())),
                writer: tokio::sync::Mutex::new(()),
                signing,
                gauges,
            }),
        };
        service.refresh().await?;
        Ok(service)
    }

    pub fn policy(&self) -> KeyPolicy {
        self.inner.policy
    }

    fn current(&self) -> Arc<KeySet> {
        Arc::clone(&self.inner.set.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The JWKS document: every key in state next, active or retired, public parameters only.
    pub fn jwks(&self) -> Bytes {
        self.current().jwks.clone()
    }

    /// Signs `claims` as a JWT of type `typ` with the active key of `alg`. RSA signatures take
    /// about a millisecond of CPU, so they run on the blocking pool rather than stall a runtime
    /// worker; ECDSA and Ed25519 take tens of microseconds and are signed in place.
    pub async fn sign(&self, alg: Alg, typ: &'static str, claims: &impl Serialize) -> Result<Signed, KeyError> {
        let set = self.current();
        let now = self.inner.clock.now();
        let key = set.signer(alg, now).ok_or(KeyError::NoActiveKey(alg))?;
        let (kid, private) = (Arc::clone(&key.kid), Arc::clone(&key.private));
        let start = Instant::now();
        let token = if alg == Alg::RS256 {
            // The blocking pool needs owned claims.
            let claims = serde_json::to_value(claims).map_err(|_| JoseError::Sign)?;
            let kid = Arc::clone(&kid);
            tokio::task::spawn_blocking(move || jose::sign_jwt(&private, &kid, typ, &claims))
                .await
                .map_err(|_| JoseError::Sign)??
        } else {
            jose::sign_jwt(&private, &kid, typ, claims)?
        };
        if let Some(h) = self.inner.signing.get(&alg) {
            h.record(start.elapsed().as_secs_f64());
        }
        Ok(Signed { token, kid })
    }

    /// Verifies a JWT this server signed with a key still in its JWKS (whatever its `exp`).
    pub fn verify(&self, token: &str) -> Result<Verified, JwtError> {
        let set = self.current();
        let now = self.inner.clock.now();
        let policy = self.inner.policy;
        jose::verify_jwt(token, |kid| {
            set.keys
                .iter()
                .find(|k| &*k.kid == kid && k.state(now, &policy) != KeyState::Gone)
                .map(|k| &k.public)
        })
    }

    /// The state of every key this node knows, for tests and health: `(kid, alg, state)`.
    pub fn states(&self) -> Vec<(String, Alg, KeyState)> {
        let set = self.current();
        let now = self.inner.clock.now();
        set.keys
            .iter()
            .map(|k| (k.kid.to_string(), k.alg, k.state(now, &self.inner.policy)))
            .collect()
    }

    /// Re-reads the key set, creates what is due (a first key, a successor), deletes what no
    /// token can name any more, and swaps in the new view. Every node does this on its own
    /// schedule ([`KeyService::run`]); tests call it after moving a manual clock.
    pub async fn refresh(&self) -> Result<(), KeyError> {
        let _writer = self.inner.writer.lock().await;
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut records = inner.store.signing_keys().await?;
        // Open everything first: a wrong key-encryption key must stop us before any write.
        let mut set = self.load(&records)?;
        let mut changed = false;
        for alg in Alg::ALL {
            let newest = records.iter().filter(|r| r.alg == alg).map(|r| r.generation).max();
            match set.signer(alg, now) {
                None => {
                    // No key of this algorithm signs (a new deployment, or every key withdrawn).
                    let generation = newest.map_or(0, |g| g + 1);
                    self.create(alg, generation, now, now).await?;
                    // Re-read whether this node's insert won or another node's did.
                    changed = true;
                }
                Some(active) if newest == Some(active.generation) => {
                    let due = active.active_from.plus(inner.policy.rotation_interval);
                    if now.plus(inner.policy.publish_ahead) >= due {
                        // Published ahead in full even when the rotation is overdue (the
                        // deployment was down).
                        let from = due.max(now.plus(inner.policy.publish_ahead));
                        self.create(alg, active.generation + 1, now, from).await?;
                        changed = true;
                    }
                }
                Some(_) => {} // Its successor exists already.
            }
        }
        for key in &set.keys {
            if key.state(now, &inner.policy) == KeyState::Gone && set.signer(key.alg, now).is_some() {
                inner.store.delete_signing_key(&key.kid).await?;
                changed = true;
            }
        }
        if changed {
            records = inner.store.signing_keys().await?;
            set = self.load(&records)?;
        }
        set.keys.retain(|k| k.state(now, &inner.policy) != KeyState::Gone);
        set.jwks = render_jwks(&set.keys)?;
        self.publish_gauges(&set, now);
        *inner.set.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set);
        Ok(())
    }

    /// Rotates every algorithm now: each one's successor (the scheduled one if it exists, a new
    /// one otherwise) signs from now on. With `retire_now` the keys it replaces leave the JWKS
    /// at once (a compromise: tokens they signed stop verifying). Other nodes follow on their
    /// next refresh.
    pub async fn rotate_now(&self, retire_now: bool) -> Result<(), KeyError> {
        {
            let _writer = self.inner.writer.lock().await;
            let inner = &self.inner;
            let now = inner.clock.now();
            let records = inner.store.signing_keys().await?;
            let set = self.load(&records)?;
            for alg in Alg::ALL {
                let active = set.signer(alg, now).map(|k| (Arc::clone(&k.kid), k.generation));
                let next_generation = active.as_ref().map_or(0, |(_, g)| g + 1);
                match records.iter().find(|r| r.alg == alg && r.generation == next_generation) {
                    Some(next) => inner.store.update_signing_key(&next.kid, Some(now), None).await?,
                    None => {
                        self.create(alg, next_generation, now, now).await?;
                    }
                }
                if let (true, Some((kid, _))) = (retire_now, active) {
                    inner.store.update_signing_key(&kid, None, Some(now)).await?;
                }
            }
        }
        tracing::info!(target: "audit", retire_now, "signing keys rotated");
        self.refresh().await
    }

    /// Refreshes on schedule until cancelled. A failed refresh (the store unreachable) keeps the
    /// current keys and is retried at the next tick.
    pub async fn run(self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.inner.policy.refresh_every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = self.refresh().await {
                        tracing::error!(error = %e, "signing key refresh failed; keeping the current keys");
                    }
                }
            }
        }
        tracing::debug!("signing key refresh stopped");
    }

    /// Generates and stores a key; returns whether this node's insert won.
    async fn create(
        &self,
        alg: Alg,
        generation: i64,
        now: Timestamp,
        active_from: Timestamp,
    ) -> Result<bool, KeyError> {
        let (private, pkcs8) = tokio::task::spawn_blocking(move || PrivateKey::generate(alg))
            .await
            .map_err(|_| JoseError::Generate)??;
        let kid = new_kid();
        let public_jwk = serde_json::to_string(&private.public_key().jwk(&kid)).map_err(|_| JoseError::Generate)?;
        let record = SigningKeyRecord {
            sealed_private_key: self.inner.kek.seal(&aad(&kid, alg), &pkcs8)?,
            kid,
            alg,
            generation,
            created_at: now,
            active_from,
            withdrawn_at: None,
            public_jwk,
        };
        let won = self.inner.store.insert_signing_key(&record).await?;
        if won {
            tracing::info!(target: "audit", kid = %record.kid, %alg, generation, active_from = active_from.secs(),
                "signing key created");
        }
        Ok(won)
    }

    /// The records as keys, reusing what this node opened before (opening an RSA key costs).
    fn load(&self, records: &[SigningKeyRecord]) -> Result<KeySet, KeyError> {
        let previous = self.current();
        let mut keys = Vec::with_capacity(records.len());
        for r in records {
            let private = match previous.keys.iter().find(|k| *k.kid == *r.kid) {
                Some(k) => Arc::clone(&k.private),
                None => Arc::new(self.open(r)?),
            };
            keys.push(LoadedKey {
                kid: Arc::from(r.kid.as_str()),
                alg: r.alg,
                generation: r.generation,
                active_from: r.active_from,
                withdrawn_at: r.withdrawn_at,
                retired_at: records
                    .iter()
                    .find(|s| s.alg == r.alg && s.generation == r.generation + 1)
                    .map(|s| s.active_from),
                public: private.public_key(),
                private,
            });
        }
        keys.sort_by_key(|k| (k.alg, k.generation));
        Ok(KeySet {
            keys,
            jwks: Bytes::new(),
        })
    }

    fn open(&self, r: &SigningKeyRecord) -> Result<PrivateKey, KeyError> {
        let pkcs8 = self
            .inner
            .kek
            .open(&aad(&r.kid, r.alg), &r.sealed_private_key)
            .map_err(|_| KeyError::WrongKeyEncryptionKey { kid: r.kid.clone() })?;
        PrivateKey::from_pkcs8(r.alg, &pkcs8).map_err(|source| KeyError::Corrupt {
            kid: r.kid.clone(),
            source,
        })
    }

    fn publish_gauges(&self, set: &KeySet, now: Timestamp) {
        for alg in Alg::ALL {
            for state in [KeyState::Next, KeyState::Active, KeyState::Retired] {
                let n = set
                    .keys
                    .iter()
                    .filter(|k| k.alg == alg && k.state(now, &self.inner.policy) == state)
                    .count();
                if let Some(g) = self.inner.gauges.get(&(alg, state.as_str())) {
                    g.set(n as f64);
                }
            }
        }
    }
}

/// 128 random bits, base64url.
fn new_kid() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What a sealed key is bound to: its id and algorithm.
fn aad(kid: &str, alg: Alg) -> Vec<u8> {
    format!("authplane-signing-key:{kid}:{alg}").into_bytes()
}

fn render_jwks(keys: &[LoadedKey]) -> Result<Bytes, KeyError> {
    #[derive(Serialize)]
    struct Jwks {
        keys: Vec<jose::Jwk>,
    }
    let jwks = Jwks {
        keys: keys.iter().map(|k| k.public.jwk(&k.kid)).collect(),
    };
    Ok(serde_json::to_vec(&jwks).map_err(|_| JoseError::Sign)?.into())
}
