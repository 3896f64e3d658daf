//! The user directory: the users the config parsed (this node's file, read-only through the API)
//! and those managed at runtime (in the store; by `sub` through a cache that other nodes' changes
//! invalidate, by username straight from the store, as only a login asks by name and it pays an
//! argon2 verification anyway).

use std::collections::HashMap;
use std::hash::RandomState;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::RecordCache;
use crate::crypto::{self, Argon2Params, PasswordHashString};
pub use crate::domain::User;
use crate::error::ApiError;
use crate::store::{Store, StoreError, UserKey, UserRecord};
use crate::telemetry::Metrics;

pub struct UserDirectory {
    /// The config file's users, keyed by the operator's names: foldhash, not SipHash.
    by_username: HashMap<String, Arc<User>, foldhash::fast::RandomState>,
    by_sub: HashMap<Arc<str>, Arc<User>, foldhash::fast::RandomState>,
    /// Runtime-managed users by `sub`, in front of the store.
    managed: RecordCache<String, User, RandomState>,
    store: Arc<dyn Store>,
    /// Verified for unknown usernames, so that they cost what a wrong password costs.
    dummy: Arc<PasswordHashString>,
    /// The argon2 parameters of passwords set through the API (those of the config's users, so
    /// that every login costs the same).
    params: Argon2Params,
}

impl UserDirectory {
    pub fn new(
        users: &[User],
        store: Arc<dyn Store>,
        cache_capacity: u64,
        cache_ttl: Duration,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let mut by_username = HashMap::default();
        let mut by_sub = HashMap::default();
        for u in users {
            let user = Arc::new(u.clone());
            by_username.insert(u.username.clone(), Arc::clone(&user));
            by_sub.insert(Arc::clone(&user.sub), user);
        }
        // The dummy uses the same argon2 parameters as the real users, so timing matches.
        let params = users
            .first()
            .and_then(|u| u.password.params())
            .unwrap_or(Argon2Params::DEFAULT);
        let dummy_secret = crypto::generate_token().value;
        let dummy = crypto::hash_password(&dummy_secret, params).map_err(|e| anyhow::anyhow!("dummy hash: {e}"))?;
        let dummy = Arc::new(PasswordHashString::parse(&dummy).map_err(anyhow::Error::msg)?);
        Ok(Self {
            by_username,
            by_sub,
            managed: RecordCache::new("users", cache_capacity, cache_ttl, metrics),
            store,
            dummy,
            params,
        })
    }

    /// A user by login name: the config file's first, else a runtime-managed one.
    pub async fn by_username(&self, username: &str) -> Result<Option<Arc<User>>, ApiError> {
        if let Some(u) = self.by_username.get(username) {
            return Ok(Some(Arc::clone(u)));
        }
        match self.store.get_user(UserKey::Username(username)).await? {
            Some(record) => Ok(Some(Arc::new(parse_record(&record)?))),
            None => Ok(None),
        }
    }

    /// A user by subject: the config file's first, else a runtime-managed one (cached).
    pub async fn by_sub(&self, sub: &str) -> Result<Option<Arc<User>>, ApiError> {
        if let Some(u) = self.by_sub.get(sub) {
            return Ok(Some(Arc::clone(u)));
        }
        let load = async {
            match self.store.get_user(UserKey::Sub(sub)).await? {
                Some(record) => parse_record(&record).map(Some),
                None => Ok::<_, StoreError>(None),
            }
        };
        Ok(self.managed.get_or_load(sub, || load).await?)
    }

    /// The user of `sub` when it still speaks for a login made at `login`: it exists, is
    /// enabled, and has not changed its password or been disabled since ([`User::accepts`]).
    /// Every session and token check asks this, with the login's time (a session's, or the
    /// `auth_time` of the grant a token descends from), never the time a token was minted: a
    /// grant made from an old session is as void as the session.
    pub async fn behind_login(
        &self,
        sub: &str,
        login: crate::domain::Timestamp,
    ) -> Result<Option<Arc<User>>, ApiError> {
        Ok(self.by_sub(sub).await?.filter(|u| u.accepts(login)))
    }

    /// Whether the config file defines this subject or username (then the API cannot take it).
    pub fn is_configured(&self, sub: &str, username: &str) -> bool {
        self.by_sub.contains_key(sub) || self.by_username.contains_key(username)
    }

    /// The config file's users, by subject.
    pub fn configured(&self) -> impl Iterator<Item = &Arc<User>> {
        self.by_sub.values()
    }

    /// The cache of runtime-managed users (health, invalidation).
    pub fn cache(&self) -> &RecordCache<String, User, RandomState> {
        &self.managed
    }

    pub fn dummy_hash(&self) -> Arc<PasswordHashString> {
        Arc::clone(&self.dummy)
    }

    pub fn password_params(&self) -> Argon2Params {
        self.params
    }
}

/// A runtime-managed user as the store keeps it.
pub fn parse_record(record: &UserRecord) -> Result<User, StoreError> {
    let password = PasswordHashString::parse(&record.password_hash)
        .map_err(|e| StoreError::Internal(anyhow::anyhow!("stored user {:?}: {e}", record.sub)))?;
    Ok(User {
        username: record.username.clone(),
        sub: Arc::clone(&record.sub),
        name: record.name.clone(),
        email: record.email.clone(),
        email_verified: record.email_verified,
        password: Arc::new(password),
        disabled: record.disabled,
        not_before: Some(record.not_before),
    })
}
