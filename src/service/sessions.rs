//! Login sessions: password checks, the session credential, its lookup and logout.

use std::net::IpAddr;
use std::sync::Arc;

use crate::crypto;
use crate::domain::Timestamp;
use crate::error::ApiError;
use crate::service::hasher::Hasher;
use crate::service::throttle::{Key, Throttle};
use crate::service::{Caches, Ttls, UserDirectory};
use crate::store::{SessionRecord, Store};

/// A session just created: the cookie value goes to the browser once.
pub struct NewSession {
    pub value: String,
    pub expires_in: u64,
}

#[derive(Clone)]
pub struct SessionService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    caches: Arc<Caches>,
    users: Arc<UserDirectory>,
    hasher: Hasher,
    ttls: Ttls,
    throttle: Arc<Throttle>,
}

impl SessionService {
    pub fn new(
        store: Arc<dyn Store>,
        caches: Arc<Caches>,
        users: Arc<UserDirectory>,
        hasher: Hasher,
        ttls: Ttls,
        throttle: Arc<Throttle>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                caches,
                users,
                hasher,
                ttls,
                throttle,
            }),
        }
    }

    /// Checks the password and opens a session. An unknown user costs one argon2 verification
    /// too, against a dummy hash, and fails the same way. A username or address over its failure
    /// limit is refused before any verification.
    pub async fn login(
        &self,
        username: &str,
        password: String,
        address: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<NewSession, ApiError> {
        let inner = &self.inner;
        let by_user = Key::username(username);
        let by_address = address.map(Key::Address);
        // Counted before the verification, so concurrent guesses cannot outrun the limit.
        inner.throttle.reserve(&by_user, now)?;
        if let Some(a) = &by_address {
            if let Err(e) = inner.throttle.reserve(a, now) {
                inner.throttle.release(&by_user);
                return Err(e);
            }
        }
        let give_back = || {
            inner.throttle.release(&by_user);
            if let Some(a) = &by_address {
                inner.throttle.release(a);
            }
        };
        let user = match inner.users.by_username(username).await {
            Ok(u) => u,
            Err(e) => {
                give_back();
                return Err(e);
            }
        };
        let hash = user
            .as_ref()
            .map_or_else(|| inner.users.dummy_hash(), |u| Arc::clone(&u.password));
        let verified = inner.hasher.verify(hash, password).await;
        // A disabled user fails like a wrong password, after the same verification.
        let user = match (user, verified) {
            (Some(u), Ok(true)) if !u.disabled => u,
            (user, Ok(_)) => {
                tracing::info!(target: "security", known_user = user.is_some(), "login failed");
                inner.throttle.failed(&by_user);
                return Err(ApiError::InvalidCredentials);
            }
            // Not a failure of the password: give the attempts back.
            (_, Err(e)) => {
                give_back();
                return Err(e);
            }
        };
        // The account's own failures are forgotten; the address's are not (one valid account must
        // not reset an attacker's count), only this attempt is given back.
        inner.throttle.succeeded(&by_user);
        if let Some(a) = &by_address {
            inner.throttle.release(a);
        }
        let token = crypto::generate_token();
        let record = SessionRecord {
            hash: token.hash,
            sub: Arc::clone(&user.sub),
            auth_time: now,
            expires_at: now.plus(inner.ttls.session),
        };
        inner.store.insert_session(&record).await?;
        inner.caches.sessions.insert(record.hash, record);
        Ok(NewSession {
            value: token.value,
            expires_in: inner.ttls.session.as_secs(),
        })
    }

    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    /// The live session for a cookie value, if any.
    pub async fn resolve(&self, cookie: &str, now: Timestamp) -> Result<Option<Arc<SessionRecord>>, ApiError> {
        let hash = crypto::hash_token(cookie);
        let store = &self.inner.store;
        let session = self
            .inner
            .caches
            .sessions
            .get_or_load(&hash, || store.get_session(&hash))
            .await?;
        let Some(session) = session.filter(|s| s.expires_at > now) else {
            return Ok(None);
        };
        // A session speaks for its user while the user exists, is enabled, and has not changed
        // their password since the login.
        let user = self.inner.users.behind_login(&session.sub, session.auth_time).await?;
        Ok(user.map(|_| session))
    }

    /// Ends the session; once this returns, no cache on this node accepts it.
    pub async fn logout(&self, cookie: &str) -> Result<(), ApiError> {
        let hash = crypto::hash_token(cookie);
        self.inner.store.delete_session(&hash).await?;
        self.inner.caches.sessions.invalidate(&hash);
        Ok(())
    }
}
