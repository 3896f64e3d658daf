//! The user directory: the users the config parsed, by username and by subject.

use std::collections::HashMap;
use std::sync::Arc;

use crate::crypto::{self, Argon2Params, PasswordHashString};
pub use crate::domain::User;

pub struct UserDirectory {
    by_username: HashMap<String, Arc<User>>,
    by_sub: HashMap<Arc<str>, Arc<User>>,
    /// Verified for unknown usernames, so that they cost what a wrong password costs.
    dummy: Arc<PasswordHashString>,
}

impl UserDirectory {
    pub fn new(users: &[User]) -> anyhow::Result<Self> {
        let mut by_username = HashMap::new();
        let mut by_sub = HashMap::new();
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
            dummy,
        })
    }
    pub fn by_username(&self, username: &str) -> Option<&Arc<User>> {
        self.by_username.get(username)
    }

    pub fn by_sub(&self, sub: &str) -> Option<&Arc<User>> {
        self.by_sub.get(sub)
    }

    pub fn dummy_hash(&self) -> Arc<PasswordHashString> {
        Arc::clone(&self.dummy)
    }
}
