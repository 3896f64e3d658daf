//! The store seam: async traits over the records the protocol keeps, with the atomic operations it
//! needs (consume a code exactly once, rotate a refresh token exactly once, revoke a whole grant).
//! Two implementations: `memory` (dashmap, the default) and `postgres` (pooled, multi-node).
//! Records are keyed by the SHA-256 of their credential; no credential value ever reaches a store.
//! A store that several nodes share also owns the stream of the other nodes' changes
//! ([`Store::invalidations`]), which the application spawns and points at its caches.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::domain::{CodeChallenge, GrantId, Resources, Scope, Timestamp, TokenHash};

pub mod instrumented;
pub mod memory;
pub mod postgres;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or no connection was free in time: the caller answers 503.
    #[error("store unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// The memory store holds `--memory-store-capacity` records: new issuance is refused (503)
    /// until the sweeper removes expired ones, about `retry_after_secs` from now. Nothing live is
    /// ever evicted to make room.
    #[error("store full")]
    Full { retry_after_secs: u64 },
    /// Anything else: the caller answers 500.
    #[error("store error")]
    Internal(#[source] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A login session (the `authplane_session` cookie).
#[derive(Clone, Debug)]
pub struct SessionRecord {
    pub hash: TokenHash,
    pub sub: Arc<str>,
    pub auth_time: Timestamp,
    pub expires_at: Timestamp,
}

/// An authorization code, bound to everything the token request must match (invariant 2 of docs/reference.md).
#[derive(Clone, Debug)]
pub struct CodeRecord {
    pub hash: TokenHash,
    pub client_id: Arc<str>,
    pub redirect_uri: String,
    /// Whether the authorize request named the redirect_uri: then the token request must repeat it
    /// (RFC 6749 section 4.1.3).
    pub redirect_uri_given: bool,
    pub sub: Arc<str>,
    pub scope: Scope,
    pub challenge: Option<CodeChallenge>,
    /// The grant the code's tokens will belong to, so a replay can revoke them.
    pub grant_id: GrantId,
    pub auth_time: Timestamp,
    pub expires_at: Timestamp,
    pub consumed: bool,
    /// `nonce` of the authorize request, echoed in the ID token.
    pub nonce: Option<String>,
    /// The login session's `sid` (see [`crate::crypto::session_id`]).
    pub sid: Option<Arc<str>>,
    /// The `resource`s of the authorize request (RFC 8707): what the grant's tokens may be for.
    pub resources: Resources,
    /// `dpop_jkt` of the authorize request (RFC 9449 section 10): the code is exchanged only
    /// with a DPoP proof of that key.
    pub dpop_jkt: Option<String>,
}

/// A pushed authorization request (RFC 9126): the authorize parameters a client sent to
/// `/auth/par`, used once by `/auth/authorize` with its `request_uri`.
#[derive(Clone, Debug)]
pub struct PushedRequestRecord {
    /// SHA-256 of the `request_uri`.
    pub hash: TokenHash,
    pub client_id: Arc<str>,
    /// The authorize parameters, form-encoded, as the server checked them at the push.
    pub params: String,
    pub expires_at: Timestamp,
    /// Set by the authorization that used it; the sweeper removes it at expiry.
    pub consumed: bool,
}

/// A spent `jti` of a client assertion (`private_key_jwt`), kept until the assertion expires so
/// that it is used once across every node.
#[derive(Clone, Debug)]
pub struct UsedJtiRecord {
    /// SHA-256 of the client_id and the `jti`.
    pub hash: TokenHash,
    pub expires_at: Timestamp,
}

/// One authorization: the root that a code's refresh and access tokens descend from.
#[derive(Clone, Debug)]
pub struct GrantRecord {
    pub id: GrantId,
    pub client_id: Arc<str>,
    pub sub: Arc<str>,
    pub scope: Scope,
    pub created_at: Timestamp,
    /// No token of the grant outlives this; the sweeper removes the grant after it.
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// When the user entered a password for the session this grant was made in (ID tokens of
    /// its refreshes carry it); `None` for grants stored before OpenID Connect.
    pub auth_time: Option<Timestamp>,
    /// The login session the grant was made in (`sid`): logging out ends its grants.
    pub sid: Option<Arc<str>>,
    /// The resources the authorization named (RFC 8707); its tokens may ask for these or fewer.
    pub resources: Resources,
}

impl GrantRecord {
    /// When the user logged in for this grant: what a user's `not_before` is compared with, so
    /// a grant made from an old session (on a node that had not heard of the change yet) is as
    /// void as the session.
    pub fn authenticated_at(&self) -> Timestamp {
        self.auth_time.unwrap_or(self.created_at)
    }

    /// The grant a code's redemption creates (and the tombstone a replay of it revokes).
    pub fn of_code(code: &CodeRecord, now: Timestamp, lifetime: std::time::Duration) -> Self {
        Self {
            id: code.grant_id,
            client_id: code.client_id.clone(),
            sub: code.sub.clone(),
            scope: code.scope.clone(),
            created_at: now,
            expires_at: now.plus(lifetime),
            revoked_at: None,
            auth_time: Some(code.auth_time),
            sid: code.sid.clone(),
            resources: code.resources.clone(),
        }
    }

    /// The grant as far as one of its refresh tokens knows it: enough for its successor, and
    /// for a tombstone when the grant must be revoked.
    pub fn of_refresh(token: &RefreshTokenRecord) -> Self {
        Self {
            id: token.grant_id,
            client_id: token.client_id.clone(),
            sub: token.sub.clone(),
            scope: token.scope.clone(),
            created_at: token.issued_at,
            expires_at: token.expires_at,
            revoked_at: None,
            auth_time: token.auth_time,
            sid: token.sid.clone(),
            resources: token.resources.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AccessTokenRecord {
    pub hash: TokenHash,
    pub client_id: Arc<str>,
    /// `None` for client_credentials tokens.
    pub sub: Option<Arc<str>>,
    pub scope: Scope,
    /// `None` for client_credentials tokens.
    pub grant_id: Option<GrantId>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// The token's audience (RFC 8707 resources); empty: the issuer.
    pub resources: Resources,
    /// DPoP-bound (RFC 9449): the thumbprint of the key every use must prove (`cnf.jkt`).
    pub jkt: Option<String>,
}

/// A grant's refresh token: one record per grant (per token family), updated in place at each
/// rotation. It holds the hash of the current token only, so rotation keeps no history; a token
/// of the family that is not the current one is a replay (see [`crate::crypto::RefreshToken`]).
#[derive(Clone, Debug)]
pub struct RefreshTokenRecord {
    /// SHA-256 of the family secret, the same in every generation: the record's key.
    pub family: TokenHash,
    /// SHA-256 of the current token's whole value.
    pub hash: TokenHash,
    /// The current token's generation (1 for the grant's first token).
    pub generation: u32,
    pub client_id: Arc<str>,
    pub sub: Arc<str>,
    /// The grant's scope; a refresh may ask for less, never more.
    pub scope: Scope,
    pub grant_id: GrantId,
    /// When the current token was issued.
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// The grant's `auth_time` and `sid`, for the ID tokens of its refreshes.
    pub auth_time: Option<Timestamp>,
    pub sid: Option<Arc<str>>,
    /// The grant's resources (RFC 8707); a refresh may ask for fewer, never more.
    pub resources: Resources,
    /// A public client's family bound to a DPoP key (RFC 9449 section 5): every refresh must
    /// prove it. The same for every generation.
    pub jkt: Option<String>,
}

impl RefreshTokenRecord {
    /// Its grant's [`GrantRecord::authenticated_at`].
    pub fn authenticated_at(&self) -> Timestamp {
        self.auth_time.unwrap_or(self.issued_at)
    }
}

/// A signing key as the store keeps it: the private half sealed with `--key-encryption-key`,
/// the public half as its JWK. Its state follows from the times and its successor's (the key of
/// the same algorithm with the next generation); see [`crate::service::keys`].
#[derive(Clone)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: crate::jose::Alg,
    /// 0 for an algorithm's first key, one more for each successor. Unique per algorithm, so two
    /// nodes that rotate at once create one successor between them.
    pub generation: i64,
    pub created_at: Timestamp,
    /// When it starts to sign; it is in the JWKS from its creation.
    pub active_from: Timestamp,
    /// Set when the key was withdrawn at once (a compromise): it leaves the JWKS then.
    pub withdrawn_at: Option<Timestamp>,
    /// The public JWK (JSON).
    pub public_jwk: String,
    /// `nonce || ciphertext || tag` of the PKCS#8 private key (AES-256-GCM).
    pub sealed_private_key: Vec<u8>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("generation", &self.generation)
            .field("active_from", &self.active_from)
            .field("withdrawn_at", &self.withdrawn_at)
            .finish_non_exhaustive()
    }
}

/// A user's consent to a third-party client: the scopes approved so far (remembered until the
/// user or the client goes away).
#[derive(Clone, Debug)]
pub struct ConsentRecord {
    pub sub: Arc<str>,
    pub client_id: Arc<str>,
    pub scope: Scope,
    pub granted_at: Timestamp,
}

/// A user managed at runtime (the admin API); config-file users never reach the store.
#[derive(Clone)]
pub struct UserRecord {
    pub sub: Arc<str>,
    /// Unique, like `sub`; never changes.
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub disabled: bool,
    /// Sessions and tokens of this user from before this instant are void: the user's creation,
    /// and each password change or disabling moves it (a "not before" policy, as Keycloak's).
    pub not_before: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("sub", &self.sub)
            .field("username", &self.username)
            .field("disabled", &self.disabled)
            .field("not_before", &self.not_before)
            .finish_non_exhaustive()
    }
}

/// A change to a runtime user: what is `Some` changes, the rest stays as the store has it, so
/// two changes made at once never undo each other.
pub struct UserUpdate {
    /// argon2id PHC string.
    pub password_hash: Option<String>,
    pub name: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub email_verified: Option<bool>,
    pub disabled: Option<bool>,
    /// Moves the user's `not_before` up to this instant; never back.
    pub not_before: Option<Timestamp>,
    pub updated_at: Timestamp,
}

impl UserUpdate {
    /// A change of nothing but `updated_at`, to fill in.
    pub fn at(updated_at: Timestamp) -> Self {
        Self {
            password_hash: None,
            name: None,
            email: None,
            email_verified: None,
            disabled: None,
            not_before: None,
            updated_at,
        }
    }
}

/// How a user is looked up.
#[derive(Clone, Copy, Debug)]
pub enum UserKey<'a> {
    Sub(&'a str),
    Username(&'a str),
}

/// A client registered at runtime (dynamic registration); config-file clients never reach the
/// store. The metadata is kept as the JSON the registration service validated, so one parser
/// (the config file's) reads clients from either source.
#[derive(Clone)]
pub struct ClientRecord {
    pub client_id: Arc<str>,
    /// The client's metadata (JSON of [`crate::config::ClientConfig`]).
    pub metadata: String,
    /// SHA-256 of the RFC 7592 registration access token.
    pub registration_token: Option<TokenHash>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRecord")
            .field("client_id", &self.client_id)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// Whose grants a cascade revokes.
#[derive(Clone, Copy, Debug)]
pub enum GrantOwner<'a> {
    User(&'a str),
    Client(&'a str),
}

pub enum ConsumeOutcome {
    /// This call consumed the code; the record is as it was before.
    Consumed(CodeRecord),
    /// The code was consumed before: a replay.
    AlreadyConsumed(CodeRecord),
    NotFound,
    /// The caller's check turned the unconsumed record down ([`Store::consume_code_if`]): the
    /// code is left as it was, for a request that passes.
    Refused(CodeRecord),
}

/// The check a code exchange runs on a code before it is consumed ([`Store::consume_code_if`]).
pub type CodeCheck<'a> = dyn Fn(&CodeRecord) -> bool + Send + Sync + 'a;

pub enum RotateOutcome {
    /// This call rotated the token and stored its successors.
    Rotated,
    /// The family's current token is another one (someone rotated it first): a replay.
    AlreadyRotated,
    /// No such family (swept, purged, never issued).
    NotFound,
}

/// What the sweeper removes, one kind at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Sessions,
    Codes,
    AccessTokens,
    RefreshTokens,
    Grants,
    PushedRequests,
    UsedJtis,
}

impl RecordKind {
    pub const ALL: [RecordKind; 7] = [
        Self::Sessions,
        Self::Codes,
        Self::AccessTokens,
        Self::RefreshTokens,
        Self::Grants,
        Self::PushedRequests,
        Self::UsedJtis,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sessions => "sessions",
            Self::Codes => "codes",
            Self::AccessTokens => "access_tokens",
            Self::RefreshTokens => "refresh_tokens",
            Self::Grants => "grants",
            Self::PushedRequests => "pushed_requests",
            Self::UsedJtis => "used_jtis",
        }
    }
}

/// A change that other nodes' caches must drop (cross-node invalidation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    Session(TokenHash),
    AccessToken(TokenHash),
    /// A refresh token family (the hash of its family secret) whose current token changed.
    RefreshToken(TokenHash),
    Grant(GrantId),
    /// The signing keys changed outside their schedule (a rotation at once, a withdrawal).
    SigningKeys,
    /// A runtime-managed user (by `sub`) changed or went away.
    User(Arc<str>),
    /// A runtime-managed client changed or went away.
    Client(Arc<str>),
}

impl Invalidation {
    /// `kind:hex`, compact enough for a NOTIFY payload.
    pub fn encode(&self) -> String {
        let (k, bytes): (char, &[u8]) = match self {
            Self::Session(h) => ('s', &h.0),
            Self::AccessToken(h) => ('a', &h.0),
            Self::RefreshToken(h) => ('r', &h.0),
            Self::Grant(g) => ('g', &g.0),
            Self::SigningKeys => ('k', &[]),
            Self::User(sub) => ('u', sub.as_bytes()),
            Self::Client(id) => ('c', id.as_bytes()),
        };
        let mut out = String::with_capacity(2 + bytes.len() * 2);
        out.push(k);
        out.push(':');
        for b in bytes {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (kind, hex) = s.split_once(':')?;
        if hex.len() % 2 != 0 || !hex.is_ascii() {
            return None;
        }
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect::<Option<_>>()?;
        Some(match kind {
            "s" => Self::Session(TokenHash(bytes.try_into().ok()?)),
            "a" => Self::AccessToken(TokenHash(bytes.try_into().ok()?)),
            "r" => Self::RefreshToken(TokenHash(bytes.try_into().ok()?)),
            "g" => Self::Grant(GrantId(bytes.try_into().ok()?)),
            "k" if bytes.is_empty() => Self::SigningKeys,
            "u" => Self::User(Arc::from(String::from_utf8(bytes).ok()?)),
            "c" => Self::Client(Arc::from(String::from_utf8(bytes).ok()?)),
            _ => return None,
        })
    }
}

/// Where a shared store delivers the changes other nodes made: this node's caches.
#[async_trait]
pub trait InvalidationSink: Send + Sync + 'static {
    /// Drops what `inv` names.
    async fn invalidate(&self, inv: Invalidation);
    /// Drops everything: changes may have been missed.
    fn invalidate_all(&self);
}

/// A task that follows other nodes' changes until it is cancelled; the caller spawns it.
pub type InvalidationFeed = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Which implementation a store is. Also the `--store` setting, and the `kind` of the store in
/// `/debug/health` (lowercase, as [`StoreKind::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In this process only (dashmap): one node.
    Memory,
    /// PostgreSQL, shared by several nodes.
    Postgres,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Postgres => "postgres",
        }
    }
}

/// What a store that holds its records itself (the memory store) holds, against its bound.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RecordCounts {
    /// `--memory-store-capacity`.
    pub capacity: usize,
    /// Records held, all kinds together: what the capacity bounds.
    pub held: usize,
    /// Records by kind, in [`RecordKind::ALL`] order.
    #[serde(skip)]
    pub by_kind: [usize; 7],
}

impl RecordCounts {
    pub fn of(&self, kind: RecordKind) -> usize {
        let i = RecordKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.by_kind[i]
    }
}

/// Connection pool occupancy; all zero for the memory store.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PoolStatus {
    pub size: usize,
    pub idle: usize,
    pub in_use: usize,
    pub waiting: usize,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn kind(&self) -> StoreKind;
    fn pool_status(&self) -> PoolStatus {
        PoolStatus::default()
    }
    /// Releases connections at shutdown.
    fn close(&self) {}
    /// The records held and the bound on them; `None` for a store bounded elsewhere (PostgreSQL,
    /// by its disk).
    fn records(&self) -> Option<RecordCounts> {
        None
    }
    /// The changes other nodes make, for a store that several nodes share: a task that hands
    /// each one to `sink` until `cancel` fires. It reports on `connected` whether it is following
    /// them, and empties `sink` each time it starts to (changes may have been missed before), then
    /// reports `true`. `None` for a store that only this process writes: nothing to follow.
    fn invalidations(
        &self,
        sink: Arc<dyn InvalidationSink>,
        connected: watch::Sender<bool>,
        cancel: CancellationToken,
    ) -> Option<InvalidationFeed> {
        let _ = (sink, connected, cancel);
        None
    }
    async fn ping(&self) -> StoreResult<()>;

    async fn insert_session(&self, session: &SessionRecord) -> StoreResult<()>;
    async fn get_session(&self, hash: &TokenHash) -> StoreResult<Option<SessionRecord>>;
    /// Logout. Returns whether a session was removed.
    async fn delete_session(&self, hash: &TokenHash) -> StoreResult<bool>;

    async fn insert_code(&self, code: &CodeRecord) -> StoreResult<()>;
    async fn insert_pushed_request(&self, pushed: &PushedRequestRecord) -> StoreResult<()>;
    async fn get_pushed_request(&self, hash: &TokenHash) -> StoreResult<Option<PushedRequestRecord>>;
    /// Marks a pushed request used; `true` for exactly one caller, on any node.
    async fn consume_pushed_request(&self, hash: &TokenHash) -> StoreResult<bool>;
    /// Replaces an unused pushed request's parameters and expiry with `pushed`'s, as its
    /// authorization goes through a login or consent page: `true` when it did, `false` when
    /// the request was used (or removed) meanwhile. It stays single-use: of this and a use
    /// racing with it, at most one succeeds.
    async fn resume_pushed_request(&self, pushed: &PushedRequestRecord) -> StoreResult<bool>;
    /// Spends a client assertion's `jti`: `true` for exactly one caller, on any node.
    async fn spend_jti(&self, jti: &UsedJtiRecord) -> StoreResult<bool>;
    /// Marks the code consumed, atomically: of concurrent callers exactly one gets `Consumed`.
    async fn consume_code(&self, hash: &TokenHash) -> StoreResult<ConsumeOutcome>;
    /// [`Store::consume_code`], but only when `accept` takes the unconsumed record; otherwise
    /// `Refused`, and the code stays usable. A code exchange checks its request with `accept`, so
    /// that a request its client can correct, or one an attacker sends with a stolen code (a
    /// proof of another key, another client), does not burn the code for its rightful client.
    /// A code consumed before is `AlreadyConsumed` whatever `accept` says (a replay). Of
    /// concurrent callers whose `accept` takes the code, exactly one gets `Consumed`, and a
    /// refused caller never makes another see the code consumed.
    async fn consume_code_if(&self, hash: &TokenHash, accept: &CodeCheck<'_>) -> StoreResult<ConsumeOutcome>;

    /// Stores a new grant (unless it exists already, possibly revoked by a code replay that raced
    /// this call; an existing grant is left as it is) and its first tokens, all or nothing.
    async fn insert_grant_tokens(
        &self,
        grant: &GrantRecord,
        access: &AccessTokenRecord,
        refresh: Option<&RefreshTokenRecord>,
    ) -> StoreResult<()>;
    /// A client_credentials token: no grant, no refresh token.
    async fn insert_access_token(&self, access: &AccessTokenRecord) -> StoreResult<()>;
    async fn get_access_token(&self, hash: &TokenHash) -> StoreResult<Option<AccessTokenRecord>>;
    /// The refresh record of a token family, by the hash of its family secret.
    async fn get_refresh_token(&self, family: &TokenHash) -> StoreResult<Option<RefreshTokenRecord>>;
    async fn get_grant(&self, id: &GrantId) -> StoreResult<Option<GrantRecord>>;
    /// Compare-and-swap: replaces the record of `next.family` by `next` only if its current
    /// token is still `presented`, and stores `access`; of concurrent callers exactly one gets
    /// `Rotated`. Nothing of the replaced token is kept.
    async fn rotate_refresh_token(
        &self,
        presented: &TokenHash,
        access: &AccessTokenRecord,
        next: &RefreshTokenRecord,
    ) -> StoreResult<RotateOutcome>;
    async fn revoke_access_token(&self, hash: &TokenHash, now: Timestamp) -> StoreResult<bool>;
    /// Revokes an access token the store never held (a client_credentials JWT, issued without a
    /// write): keeps `token` revoked at `now` until its expiry, and tells the other nodes.
    async fn revoke_unstored_access_token(&self, token: &AccessTokenRecord, now: Timestamp) -> StoreResult<()>;
    /// Marks the grant revoked, creating a revoked tombstone when it does not exist yet (a code
    /// replay can race the first redemption). Takes effect at once: every token of the grant is
    /// checked against it. Returns whether the grant was active before.
    async fn revoke_grant(&self, tombstone: &GrantRecord, now: Timestamp) -> StoreResult<bool>;
    /// Logout: revokes every active grant made under the login session `sid`, except those whose
    /// scope holds `offline_access` (RP-Initiated Logout: they outlive the session by design).
    /// Returns the grants it revoked, for the caches and the purge queue.
    async fn revoke_session_grants(&self, sid: &str, now: Timestamp) -> StoreResult<Vec<GrantId>>;
    /// The cascade after a revocation: deletes up to `limit` tokens of a revoked grant and returns
    /// their keys (access token hashes, the refresh family) so caches can drop them; fewer than
    /// `limit` means it is done.
    async fn purge_grant_tokens(&self, id: &GrantId, limit: usize) -> StoreResult<Vec<TokenHash>>;

    /// Deletes up to `limit` records of `kind` that expired before `now`; returns how many.
    async fn delete_expired(&self, kind: RecordKind, now: Timestamp, limit: usize) -> StoreResult<usize>;

    // === consent ===

    async fn get_consent(&self, sub: &str, client_id: &str) -> StoreResult<Option<ConsentRecord>>;
    /// Stores (or replaces) the consent of `consent.sub` to `consent.client_id`.
    async fn put_consent(&self, consent: &ConsentRecord) -> StoreResult<()>;

    // === users and clients managed at runtime (docs/reference.md section 8) ===

    /// Stores a new user; `false` when its `sub` or `username` is taken.
    async fn insert_user(&self, user: &UserRecord) -> StoreResult<bool>;
    async fn get_user(&self, key: UserKey<'_>) -> StoreResult<Option<UserRecord>>;
    /// Up to `limit` users by `sub`, after `after`: keyset pagination, stable while users are added.
    async fn list_users(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<UserRecord>>;
    /// Applies `change` to the user of `sub` in one step (its username never changes) and
    /// returns the user as it now is; `None` when there is none. The other nodes drop it from
    /// their caches.
    async fn update_user(&self, sub: &str, change: &UserUpdate) -> StoreResult<Option<UserRecord>>;
    /// Deletes a user and its consents; `false` when there was none. The other nodes drop it.
    async fn delete_user(&self, sub: &str) -> StoreResult<bool>;
    /// Stores a new client; `false` when its id is taken.
    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<bool>;
    async fn get_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>>;
    /// Up to `limit` clients by id, after `after`.
    async fn list_clients(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<ClientRecord>>;
    /// Replaces a client's metadata; `false` when there is none. The other nodes drop it.
    async fn update_client(&self, client: &ClientRecord) -> StoreResult<bool>;
    /// Deletes a client and the consents given to it; `false` when there was none.
    async fn delete_client(&self, client_id: &str) -> StoreResult<bool>;
    /// The cascade after a user or client went away (or a password changed): revokes every
    /// active grant of `owner` whose login ([`GrantRecord::authenticated_at`]) was at or before
    /// `before` (the change; grants of logins since are the user's new ones), each announced to the other nodes; returns them for the caches
    /// and the purge queue.
    async fn revoke_grants_of(
        &self,
        owner: GrantOwner<'_>,
        before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<GrantId>>;

    // === signing keys (one set for every node) ===

    /// Every signing key, of every state.
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>>;
    /// Stores a key unless its algorithm has a key of that generation already (another node
    /// rotated first); returns whether this call stored it.
    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<bool>;
    /// Moves a key's `active_from` earlier (a rotation at once) and/or withdraws it.
    async fn update_signing_key(
        &self,
        kid: &str,
        active_from: Option<Timestamp>,
        withdrawn_at: Option<Timestamp>,
    ) -> StoreResult<()>;
    /// Removes a key that no token in circulation can name any more.
    async fn delete_signing_key(&self, kid: &str) -> StoreResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidations_roundtrip() {
        for inv in [
            Invalidation::Session(TokenHash([1; 32])),
            Invalidation::AccessToken(TokenHash([0xab; 32])),
            Invalidation::RefreshToken(TokenHash([0; 32])),
            Invalidation::Grant(GrantId([9; 16])),
            Invalidation::SigningKeys,
            Invalidation::User(Arc::from("u-1 é")),
            Invalidation::Client(Arc::from("dyn-abc")),
        ] {
            assert_eq!(Invalidation::decode(&inv.encode()), Some(inv.clone()));
        }
        for bad in ["", "x:00", "s:0", "s:zz", "g:00", "s", "k:00", "u:ff"] {
            assert_eq!(Invalidation::decode(bad), None, "{bad}");
        }
    }
}
