//! The administration API (`/admin/...`), authorised by access tokens with scope `admin` (the
//! demo's `demo-admin` client gets them with client_credentials). Every action is logged on the
//! `audit` target and counted in `authplane_admin_actions_total{action}`.
//!
//! Users and clients created at runtime live in the store; the config file's are this node's and
//! read-only here (409 `managed_by_config`). Removing a user or client, disabling a user or
//! changing their password takes effect at once on every path that checks the user or client
//! (sessions, every grant, userinfo, introspection; through the caches, which the other nodes
//! drop by NOTIFY), and queues the cascade that revokes their grants in the store.

use std::collections::HashMap;
use std::sync::Arc;

use metrics::Counter;
use serde::Serialize;

use crate::domain::Timestamp;
use crate::domain::User;
use crate::error::ApiError;
use crate::jose::Alg;
use crate::service::clients::parse_record;
use crate::service::hasher::Hasher;
use crate::service::keys::KeyState;
use crate::service::registration::{ClientMetadata, RegistrationService};
use crate::service::revocation::Cascade;
use crate::service::{ClientRegistry, KeyService, TokenService, UserDirectory};
use crate::store::{Store, UserKey, UserRecord, UserUpdate};
use crate::telemetry::{self, Metrics};

/// The actions, as `authplane_admin_actions_total`'s `action` label.
pub const ACTIONS: [&str; 8] = [
    "keys_rotate",
    "user_create",
    "user_update",
    "user_delete",
    "client_delete",
    "client_register",
    "client_update",
    "client_unregister",
];

/// Longest page of a listing, and the default.
pub const MAX_PAGE: usize = 1000;
pub const DEFAULT_PAGE: usize = 100;

/// A key as the rotation's answer shows it (public facts only).
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub kid: String,
    pub alg: Alg,
    pub state: &'static str,
}

/// The `audit` log and `authplane_admin_actions_total{action}`: every admin action goes
/// through [`Audit::record`], whoever makes it (an admin token's client, a client managing its own
/// registration, an open registration).
#[derive(Clone)]
pub struct Audit {
    actions: Arc<HashMap<&'static str, Counter>>,
}

impl Audit {
    pub fn new(metrics: &Metrics) -> Self {
        let actions = ACTIONS
            .into_iter()
            .map(|a| {
                let c = metrics.counter(telemetry::ADMIN_ACTIONS, &[("action", a)]);
                c.absolute(0);
                (a, c)
            })
            .collect();
        Self {
            actions: Arc::new(actions),
        }
    }

    /// Logs who (a client id) did what to which object: never a password, secret or token.
    pub fn record(&self, who: &str, action: &'static str, detail: &str) {
        tracing::info!(target: "audit", action, client_id = %who, detail, "admin action");
        if let Some(c) = self.actions.get(action) {
            c.increment(1);
        }
    }
}

#[derive(Clone)]
pub struct AdminService {
    inner: Arc<AdminParts>,
}

/// What the admin service is built from.
pub struct AdminParts {
    pub tokens: TokenService,
    pub keys: KeyService,
    pub users: Arc<UserDirectory>,
    pub clients: ClientRegistry,
    pub store: Arc<dyn Store>,
    pub hasher: Hasher,
    pub registration: RegistrationService,
    pub audit: Audit,
}

/// A user as the API shows it: never a password hash.
#[derive(Debug, Serialize)]
pub struct UserView {
    pub sub: String,
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub email_verified: bool,
    pub disabled: bool,
    /// `config` (read-only here) or `api`.
    pub managed_by: &'static str,
    /// Unix seconds; absent for config-file users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
}

impl UserView {
    fn of_config(u: &User) -> Self {
        Self {
            sub: u.sub.to_string(),
            username: u.username.clone(),
            name: u.name.clone(),
            email: u.email.clone(),
            email_verified: u.email_verified,
            disabled: false,
            managed_by: "config",
            created_at: None,
            updated_at: None,
        }
    }

    fn of_record(u: &UserRecord) -> Self {
        Self {
            sub: u.sub.to_string(),
            username: u.username.clone(),
            name: u.name.clone(),
            email: u.email.clone(),
            email_verified: u.email_verified,
            disabled: u.disabled,
            managed_by: "api",
            created_at: Some(u.created_at.secs()),
            updated_at: Some(u.updated_at.secs()),
        }
    }
}

/// `POST /admin/users`, validated by the HTTP layer's parser ([`validate`]). No `Debug`: it
/// holds a password.
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub sub: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
}

/// `PATCH /admin/users/{sub}`: what is given changes, the rest stays. `name`/`email` set to
/// `null` remove the claim. No `Debug`: it may hold a password.
#[derive(Default)]
pub struct UserChanges {
    pub password: Option<String>,
    pub name: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub email_verified: Option<bool>,
    pub disabled: Option<bool>,
}

/// A page of a listing: `next` is the `after` of the next page, absent on the last.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// The first `limit` of `items` (the config file's and the store's, each already after the
    /// cursor) in key order, and the cursor of the next page. `store_full_at` is the last key of
    /// the store's page when that page was full: the store may hold more after it, so nothing
    /// beyond it is shown yet (a config entry past it would skip the store's rows before it), and
    /// the next page starts there even when entries the file shadows made this one short.
    fn of(mut items: Vec<T>, limit: usize, key: fn(&T) -> &String, store_full_at: Option<String>) -> Self {
        if let Some(last) = &store_full_at {
            items.retain(|i| key(i) <= last);
        }
        items.sort_by(|a, b| key(a).cmp(key(b)));
        items.truncate(limit);
        let next = match items.last() {
            Some(i) if items.len() == limit => Some(key(i).clone()),
            _ => store_full_at,
        };
        Self { items, next }
    }
}

/// A client as the API lists it: its metadata, never a secret.
#[derive(Debug, Serialize)]
pub struct ClientView {
    pub client_id: String,
    /// `config` (read-only here) or `registration`.
    pub managed_by: &'static str,
    #[serde(flatten)]
    pub metadata: ClientMetadata,
}

/// Who called: the client of the admin token (for the audit log).
pub struct Admin {
    pub client_id: Arc<str>,
}

impl AdminService {
    pub fn new(parts: AdminParts) -> Self {
        Self { inner: Arc::new(parts) }
    }

    /// The caller of an admin endpoint: a valid access token with scope `admin`. No token or an
    /// invalid one is 401, a token without the scope 403.
    pub async fn authorize(&self, token: Option<&str>, now: Timestamp) -> Result<Admin, ApiError> {
        let token = token.ok_or(ApiError::MissingToken)?;
        let record = self
            .inner
            .tokens
            .valid_access_token(token, None, now)
            .await?
            .ok_or(ApiError::InvalidToken)?
            .record;
        // The admin API takes bearer tokens meant for the issuer: a DPoP-bound one (RFC 9449
        // section 7.1) or one meant only for other resource servers (RFC 8707) is refused.
        let issuer = self.inner.tokens.issuer();
        if record.jkt.is_some() || !(record.resources.is_empty() || record.resources.contains(issuer)) {
            tracing::info!(target: "security", client_id = %record.client_id, "admin call with a DPoP-bound token or one for another resource");
            return Err(ApiError::InvalidToken);
        }
        if !record.scope.contains("admin") {
            tracing::info!(target: "security", client_id = %record.client_id, "admin call without the admin scope");
            return Err(ApiError::AdminScopeRequired);
        }
        Ok(Admin {
            client_id: Arc::clone(&record.client_id),
        })
    }

    /// `POST /admin/keys/rotate`: every algorithm's successor signs from now on; with
    /// `retire_now` the replaced keys leave the JWKS at once (a compromise).
    pub async fn rotate_keys(&self, admin: &Admin, retire_now: bool) -> Result<Vec<KeyView>, ApiError> {
        let inner = &self.inner;
        inner.keys.rotate_now(retire_now).await.map_err(ApiError::internal)?;
        self.done(admin, "keys_rotate", &format!("retire_now={retire_now}"));
        Ok(inner
            .keys
            .states()
            .into_iter()
            .filter(|(_, _, s)| *s != KeyState::Gone)
            .map(|(kid, alg, state)| KeyView {
                kid,
                alg,
                state: state.as_str(),
            })
            .collect())
    }

    // === users ===

    /// `POST /admin/users`.
    pub async fn create_user(&self, admin: &Admin, new: NewUser, now: Timestamp) -> Result<UserView, ApiError> {
        let inner = &self.inner;
        let sub = new.sub.unwrap_or_else(|| crate::crypto::random_uuid().to_string());
        if inner.users.is_configured(&sub, &new.username) {
            return Err(ApiError::ManagedByConfig);
        }
        let password_hash = inner.hasher.hash(new.password, inner.users.password_params()).await?;
        let record = UserRecord {
            sub: Arc::from(sub.as_str()),
            username: new.username,
            password_hash,
            name: new.name,
            email: new.email,
            email_verified: new.email_verified,
            disabled: false,
            // What an earlier user of this sub left behind is not this user's (the instant
            // before the creation, so a login in the same millisecond counts).
            not_before: Timestamp::from_millis(now.millis() - 1),
            created_at: now,
            updated_at: now,
        };
        if !inner.store.insert_user(&record).await? {
            return Err(ApiError::Conflict("a user with this sub or username exists"));
        }
        // A lookup of this sub before its creation may have cached "no such user".
        inner.users.cache().invalidate(&*record.sub);
        self.done(admin, "user_create", &format!("sub={}", record.sub));
        Ok(UserView::of_record(&record))
    }

    /// `GET /admin/users/{sub}`.
    pub async fn user(&self, sub: &str) -> Result<UserView, ApiError> {
        if let Some(u) = self.inner.users.configured().find(|u| &*u.sub == sub) {
            return Ok(UserView::of_config(u));
        }
        let record = self.inner.store.get_user(UserKey::Sub(sub)).await?;
        record.as_ref().map(UserView::of_record).ok_or(ApiError::NotFound)
    }

    /// `GET /admin/users`: the config file's users and the store's, merged in `sub` order and
    /// paged by `sub` (keyset: a page never shifts when users are added before it).
    pub async fn users(&self, after: Option<&str>, limit: usize) -> Result<Page<UserView>, ApiError> {
        let inner = &self.inner;
        let mut items: Vec<UserView> = inner
            .users
            .configured()
            .filter(|u| after.is_none_or(|a| &*u.sub > a))
            .map(|u| UserView::of_config(u))
            .collect();
        let stored = inner.store.list_users(after, limit).await?;
        let full_at = (stored.len() == limit)
            .then(|| stored.last().map(|u| u.sub.to_string()))
            .flatten();
        // Where this node's file and the store share a sub, the file wins on this node.
        items.extend(
            stored
                .iter()
                .filter(|u| !inner.users.is_configured(&u.sub, &u.username))
                .map(UserView::of_record),
        );
        Ok(Page::of(items, limit, |u| &u.sub, full_at))
    }

    /// `PATCH /admin/users/{sub}`.
    pub async fn update_user(
        &self,
        admin: &Admin,
        sub: &str,
        changes: UserChanges,
        now: Timestamp,
    ) -> Result<UserView, ApiError> {
        let inner = &self.inner;
        if inner.users.configured().any(|u| &*u.sub == sub) {
            return Err(ApiError::ManagedByConfig);
        }
        let password_hash = match changes.password {
            Some(p) => Some(inner.hasher.hash(p, inner.users.password_params()).await?),
            None => None,
        };
        // A new password or a disabling ends every session and token from before it.
        let password_changed = password_hash.is_some();
        let disabling = changes.disabled == Some(true);
        let ends_sessions = password_changed || disabling;
        let change = UserUpdate {
            password_hash,
            name: changes.name,
            email: changes.email,
            email_verified: changes.email_verified,
            disabled: changes.disabled,
            not_before: ends_sessions.then_some(now),
            updated_at: now,
        };
        // One statement applies only what was given: concurrent changes never undo each other.
        let record = inner.store.update_user(sub, &change).await?.ok_or(ApiError::NotFound)?;
        inner.users.cache().invalidate(&*record.sub);
        if ends_sessions {
            let job = Cascade::UserGrants(Arc::clone(&record.sub), now);
            inner.tokens.queue_cascade(job, now).await?;
        }
        let what = match (password_changed, disabling) {
            (true, true) => " password disabled",
            (true, false) => " password",
            (false, true) => " disabled",
            (false, false) => "",
        };
        self.done(admin, "user_update", &format!("sub={}{what}", record.sub));
        Ok(UserView::of_record(&record))
    }

    /// `DELETE /admin/users/{sub}`.
    pub async fn delete_user(&self, admin: &Admin, sub: &str, now: Timestamp) -> Result<(), ApiError> {
        let inner = &self.inner;
        if inner.users.configured().any(|u| &*u.sub == sub) {
            return Err(ApiError::ManagedByConfig);
        }
        if !inner.store.delete_user(sub).await? {
            return Err(ApiError::NotFound);
        }
        let sub: Arc<str> = Arc::from(sub);
        inner.users.cache().invalidate(&*sub);
        inner
            .tokens
            .queue_cascade(Cascade::UserGrants(Arc::clone(&sub), now), now)
            .await?;
        self.done(admin, "user_delete", &format!("sub={sub}"));
        Ok(())
    }

    // === clients ===

    /// `GET /admin/clients`: the config file's clients and the registered ones, by id.
    pub async fn clients(&self, after: Option<&str>, limit: usize) -> Result<Page<ClientView>, ApiError> {
        let inner = &self.inner;
        let mut items: Vec<ClientView> = inner
            .clients
            .configured()
            .filter(|c| after.is_none_or(|a| &*c.client_id > a))
            .map(|c| ClientView {
                client_id: c.client_id.to_string(),
                managed_by: "config",
                metadata: ClientMetadata::of(c),
            })
            .collect();
        let stored = inner.store.list_clients(after, limit).await?;
        let full_at = (stored.len() == limit)
            .then(|| stored.last().map(|c| c.client_id.to_string()))
            .flatten();
        for record in stored {
            if inner.clients.is_configured(&record.client_id) {
                continue;
            }
            let client = parse_record(&record)?;
            items.push(ClientView {
                client_id: record.client_id.to_string(),
                managed_by: "registration",
                metadata: ClientMetadata::of(&client),
            });
        }
        Ok(Page::of(items, limit, |c| &c.client_id, full_at))
    }

    /// `GET /admin/clients/{client_id}`.
    pub async fn client(&self, client_id: &str) -> Result<ClientView, ApiError> {
        let inner = &self.inner;
        let client = inner.clients.get(client_id).await?.ok_or(ApiError::NotFound)?;
        Ok(ClientView {
            client_id: client.client_id.to_string(),
            managed_by: if inner.clients.is_configured(client_id) {
                "config"
            } else {
                "registration"
            },
            metadata: ClientMetadata::of(&client),
        })
    }

    /// `DELETE /admin/clients/{client_id}`.
    pub async fn delete_client(&self, admin: &Admin, client_id: &str, now: Timestamp) -> Result<(), ApiError> {
        if self.inner.clients.is_configured(client_id) {
            return Err(ApiError::ManagedByConfig);
        }
        self.inner.registration.remove(client_id, now).await?;
        self.done(admin, "client_delete", &format!("client_id={client_id}"));
        Ok(())
    }

    fn done(&self, admin: &Admin, action: &'static str, detail: &str) {
        self.inner.audit.record(&admin.client_id, action, detail);
    }
}

#[cfg(test)]
mod page_tests {
    use super::Page;

    fn page(items: &[&str], limit: usize, full_at: Option<&str>) -> (Vec<String>, Option<String>) {
        let items = items.iter().map(|s| (*s).to_owned()).collect();
        let p = Page::of(items, limit, |s| s, full_at.map(str::to_owned));
        (p.items, p.next)
    }

    #[test]
    fn a_page_never_jumps_over_store_rows_it_has_not_read() {
        // Config "z" lies past the store's full page ending at "c": it waits for a later page.
        assert_eq!(
            page(&["a", "c", "z"], 3, Some("c")),
            (vec!["a".into(), "c".into()], Some("c".into()))
        );
        // A shadowed store row made the page short: the cursor still moves on.
        assert_eq!(page(&["b"], 2, Some("c")), (vec!["b".into()], Some("c".into())));
        assert_eq!(
            page(&["b", "a"], 2, None),
            (vec!["a".into(), "b".into()], Some("b".into()))
        );
        assert_eq!(page(&["a"], 2, None), (vec!["a".into()], None));
    }
}

/// Field checks of the admin API's bodies: each failure names the field and what is wrong, as a
/// 400 `invalid_request`, never a 500.
pub mod validate {
    use crate::error::ApiError;

    fn bad(field: &str, why: &str) -> ApiError {
        ApiError::InvalidField(format!("{field}: {why}"))
    }

    fn no_controls(field: &str, s: &str) -> Result<(), ApiError> {
        if s.chars().any(char::is_control) {
            return Err(bad(field, "must not contain control characters"));
        }
        Ok(())
    }

    /// 1 to 64 characters: letters, digits and `.`, `_`, `-`, `@`, `+`.
    pub fn username(s: &str) -> Result<(), ApiError> {
        let ok = !s.is_empty()
            && s.chars().count() <= 64
            && s.chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'));
        if !ok {
            return Err(bad("username", "1 to 64 letters, digits or . _ - @ + (no spaces)"));
        }
        Ok(())
    }

    /// 8 to 1024 bytes (argon2 takes any bytes; the bound keeps a request's hashing cost fixed).
    pub fn password(s: &str) -> Result<(), ApiError> {
        if s.len() < 8 || s.len() > 1024 {
            return Err(bad("password", "8 to 1024 bytes"));
        }
        Ok(())
    }

    /// OpenID Connect Core 2: at most 255 ASCII characters; here printable, without spaces.
    pub fn sub(s: &str) -> Result<(), ApiError> {
        let ok = !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(bad("sub", "1 to 255 printable ASCII characters without spaces"));
        }
        Ok(())
    }

    pub fn name(s: &str) -> Result<(), ApiError> {
        if s.trim().is_empty() || s.chars().count() > 256 {
            return Err(bad("name", "1 to 256 characters, not only spaces"));
        }
        no_controls("name", s)
    }

    /// A sane address: one `@`, something on each side, a dot in the domain, no spaces or
    /// control characters, at most 254 bytes (RFC 5321).
    pub fn email(s: &str) -> Result<(), ApiError> {
        let ok = s.len() <= 254
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && match s.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !domain.contains("..")
                }
                None => false,
            };
        if !ok {
            return Err(bad("email", "not an email address"));
        }
        Ok(())
    }

    /// A listing's `limit`: 1 to [`super::MAX_PAGE`].
    pub fn limit(n: usize) -> Result<(), ApiError> {
        if n == 0 || n > super::MAX_PAGE {
            return Err(bad("limit", "1 to 1000"));
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn sane_values_pass_and_others_name_their_field() {
            assert!(username("alice.smith+1@corp").is_ok());
            for bad in ["", "a b", "x\u{0}", "<script>", &"a".repeat(65)] {
                let e = username(bad).unwrap_err();
                assert!(
                    matches!(&e, ApiError::InvalidField(d) if d.starts_with("username:")),
                    "{bad}"
                );
            }
            assert!(email("a@b.example").is_ok());
            for bad in [
                "a",
                "a@",
                "@b.c",
                "a@b",
                "a@@b.c",
                "a b@c.d",
                "a@b..c",
                "a@.b.c",
                &format!("{}@b.c", "a".repeat(260)),
            ] {
                assert!(email(bad).is_err(), "{bad}");
            }
            assert!(password("12345678").is_ok() && password("1234567").is_err());
            assert!(password(&"x".repeat(1025)).is_err());
            assert!(sub("u-1").is_ok() && sub("a b").is_err() && sub("").is_err() && sub("é").is_err());
            assert!(name("Ada").is_ok() && name("  ").is_err() && name("a\nb").is_err());
            assert!(limit(1).is_ok() && limit(0).is_err() && limit(1001).is_err());
        }
    }
}
