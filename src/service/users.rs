//! The user directory, loaded from the config file. Users are first-party and static.

use std::collections::HashMap;
use std::sync::Arc;

use argon2::password_hash::PasswordHash;

use crate::config::UserConfig;
use crate::crypto::{self, Argon2Params, PasswordHashString};

#[derive(Debug)]
pub struct User {
    pub username: String,
    pub sub: Arc<str>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub password: Arc<PasswordHashString>,
}

pub struct UserDirectory {
    by_username: HashMap<String, Arc<User>>,
    by_sub: HashMap<Arc<str>, Arc<User>>,
    /// Verified for unknown usernames, so that they cost what a wrong password costs.
    dummy: Arc<PasswordHashString>,
}

impl UserDirectory {
    pub fn new(users: &[UserConfig]) -> anyhow::Result<Self> {
        let mut by_username = HashMap::new();
        let mut by_sub = HashMap::new();
        for u in users {
            let password = Arc::new(PasswordHashString::parse(&u.password_hash).map_err(anyhow::Error::msg)?);
            let user = Arc::new(User {
                username: u.username.clone(),
                sub: Arc::from(u.sub.as_str()),
                name: u.name.clone(),
                email: u.email.clone(),
                email_verified: u.email_verified,
                password,
            });
            by_username.insert(u.username.clone(), Arc::clone(&user));
            by_sub.insert(Arc::clone(&user.sub), user);
        }
        // The dummy uses the same argon2 parameters as the real users, so timing matches.
        let params = users
            .first()
            .and_then(|u| params_of(&u.password_hash))
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

fn params_of(phc: &str) -> Option<Argon2Params> {
    let h = PasswordHash::new(phc).ok()?;
    let get = |k: &str| h.params.get_decimal(k);
    Some(Argon2Params {
        m_cost_kib: get("m")?,
        t_cost: get("t")?,
        p_cost: get("p")?,
    })
}
