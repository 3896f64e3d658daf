//! The client registry: the clients the config parsed and those registered at runtime (in the
//! store, read through a cache that other nodes' changes invalidate), and client authentication
//! (RFC 6749 section 2.3). A successful secret verification is cached under a hash of the client id and the
//! presented secret (invariant 5 of docs/reference.md), so the token endpoint pays argon2 once per distinct secret, not
//! once per request; concurrent first uses of one secret share a single verification.

use std::collections::HashMap;
use std::hash::RandomState;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{CacheReport, RecordCache, Unshare};
use crate::config::ClientConfig;
use crate::crypto;
pub use crate::domain::Client;
use crate::domain::{Timestamp, TokenEndpointAuthMethod, TokenHash, UniformKeys};
use crate::error::ApiError;
use crate::jose;
use crate::service::assertions::{ClientAssertions, Refused};
use crate::service::hasher::Hasher;
use crate::service::throttle::{Key, Throttle};
use crate::store::{ClientRecord, Store, StoreError};
use crate::telemetry::Metrics;

/// Shortest time a verified client secret stays cached.
const SECRET_TTL: Duration = Duration::from_secs(3600);

/// How a request identified its client. Parsing (the Basic header, the form) happens in `http/`.
#[derive(Debug)]
pub enum ClientCredentials {
    Basic {
        client_id: String,
        secret: String,
    },
    Post {
        client_id: String,
        secret: String,
    },
    /// `client_id` alone: a public client.
    Public {
        client_id: String,
    },
    /// `client_assertion` (RFC 7523 section 2.2), with the `client_id` of the body if any.
    Assertion {
        client_id: Option<String>,
        /// `client_assertion_type` was `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
        jwt_bearer: bool,
        assertion: String,
    },
    None,
}

impl ClientCredentials {
    pub fn used_basic(&self) -> bool {
        matches!(self, Self::Basic { .. })
    }
}

/// Why a verification was not cached: only successes are.
#[derive(Debug)]
enum VerifyFailure {
    Mismatch,
    /// Over the failure limit (429): not verified at all.
    Refused(ApiError),
    Internal(ApiError),
}

impl Unshare for VerifyFailure {
    fn unshare(e: Arc<Self>) -> Self {
        match &*e {
            Self::Mismatch => Self::Mismatch,
            Self::Refused(ApiError::Throttled { retry_after_secs }) => Self::Refused(ApiError::Throttled {
                retry_after_secs: *retry_after_secs,
            }),
            Self::Refused(_) | Self::Internal(_) => {
                Self::Internal(ApiError::Internal(anyhow::anyhow!("secret verification failed")))
            }
        }
    }
}

#[derive(Clone)]
pub struct ClientRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    /// The config file's clients: this node's, read-only through the API. Keyed with foldhash:
    /// the keys are the operator's (SipHash's defence is for keys an attacker chooses), and
    /// this map is read on every authenticated request.
    clients: HashMap<String, Arc<Client>, foldhash::fast::RandomState>,
    /// Registered clients, by id, in front of the store.
    registered: RecordCache<String, Client, RandomState>,
    store: Arc<dyn Store>,
    verified: RecordCache<TokenHash, (), UniformKeys, VerifyFailure>,
    hasher: Hasher,
    throttle: Arc<Throttle>,
    assertions: ClientAssertions,
}

/// What the registry is built from.
pub struct ClientRegistryParts<'a> {
    pub configured: &'a [Client],
    pub store: Arc<dyn Store>,
    pub hasher: Hasher,
    pub throttle: Arc<Throttle>,
    pub cache_capacity: u64,
    pub cache_ttl: Duration,
    /// What `private_key_jwt` assertions may name as `aud`: the issuer, the token endpoint.
    pub assertion_audiences: Vec<String>,
}

impl ClientRegistry {
    pub fn new(parts: ClientRegistryParts<'_>, metrics: &Metrics) -> Self {
        let ClientRegistryParts {
            configured,
            store,
            hasher,
            throttle,
            cache_capacity,
            cache_ttl,
            assertion_audiences,
        } = parts;
        let clients = configured
            .iter()
            .map(|c| (c.client_id.to_string(), Arc::new(c.clone())))
            .collect();
        // A verification cannot go stale: secrets change only with the config file, which is
        // read at start-up. So it is kept for an hour at least, not `--cache-ttl`: otherwise every
        // TTL a token request would wait for a full argon2 run (~75 ms) on the hot path.
        let verified = RecordCache::new("client_secrets", cache_capacity, cache_ttl.max(SECRET_TTL), metrics);
        let assertions = ClientAssertions::new(assertion_audiences, Arc::clone(&store));
        Self {
            inner: Arc::new(Inner {
                clients,
                registered: RecordCache::new("clients", cache_capacity, cache_ttl, metrics),
                store,
                verified,
                hasher,
                throttle,
                assertions,
            }),
        }
    }

    /// A client by id: the config file's first, else a registered one.
    pub async fn get(&self, client_id: &str) -> Result<Option<Arc<Client>>, ApiError> {
        if let Some(c) = self.inner.clients.get(client_id) {
            return Ok(Some(Arc::clone(c)));
        }
        // Registered ids have one shape (`dyn-` and 22 base64url characters): anything else is
        // unknown without a store read or a cache entry, so random ids sent by anyone cannot
        // fill the cache or reach the store.
        let registered_shape = client_id.len() == 26
            && client_id.starts_with("dyn-")
            && client_id[4..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !registered_shape {
            return Ok(None);
        }
        let inner = &self.inner;
        let load = async {
            match inner.store.get_client(client_id).await? {
                Some(record) => Ok(Some(parse_record(&record)?)),
                None => Ok::<_, StoreError>(None),
            }
        };
        Ok(inner.registered.get_or_load(client_id, || load).await?)
    }

    /// Whether the config file defines this client (then the API cannot change it).
    pub fn is_configured(&self, client_id: &str) -> bool {
        self.inner.clients.contains_key(client_id)
    }

    /// The config file's clients.
    pub fn configured(&self) -> impl Iterator<Item = &Arc<Client>> {
        self.inner.clients.values()
    }

    /// The cache of registered clients (health, invalidation).
    pub fn cache(&self) -> &RecordCache<String, Client, RandomState> {
        &self.inner.registered
    }

    /// The figures of the cache of verified secrets (health, tests).
    pub fn secret_cache_report(&self) -> CacheReport {
        self.inner.verified.report()
    }

    /// Authenticates the client of a token, revocation or introspection request, sent from
    /// `address`. A client over its failure limit from that address is refused (429) before its
    /// secret is looked at; the attempt is counted before the verification.
    pub async fn authenticate(
        &self,
        creds: ClientCredentials,
        address: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<Arc<Client>, ApiError> {
        let basic = creds.used_basic();
        let fail = |why: &'static str, client_id: &str| {
            tracing::info!(target: "security", client_id, reason = why, "client authentication failed");
            ApiError::InvalidClient { basic }
        };
        match creds {
            ClientCredentials::None => Err(fail("no client authentication", "")),
            ClientCredentials::Public { client_id } => match self.get(&client_id).await? {
                Some(c) if c.is_public() => Ok(c),
                Some(_) => Err(fail("confidential client sent no secret", &client_id)),
                None => Err(fail("unknown client", &client_id)),
            },
            ClientCredentials::Assertion {
                client_id,
                jwt_bearer,
                assertion,
            } => {
                let named = client_id.as_deref().unwrap_or("");
                if !jwt_bearer {
                    return Err(fail("client_assertion_type is not jwt-bearer", named));
                }
                let Ok(jws) = jose::parse_compact(&assertion) else {
                    return Err(fail("client assertion is not a JWS", named));
                };
                let Ok(claims) = jws.claims() else {
                    return Err(fail("client assertion claims are not JSON", named));
                };
                // The client is the one the assertion names (and the body's client_id, if any,
                // must agree): its keys decide whether the assertion is genuine.
                let id = match (client_id.as_deref(), claims.get("sub").and_then(|v| v.as_str())) {
                    (Some(body), Some(sub)) if body == sub => body,
                    (None, Some(sub)) => sub,
                    _ => return Err(fail("client assertion sub is missing or not the client_id", named)),
                };
                let Some(client) = self.get(id).await? else {
                    return Err(fail("unknown client", id));
                };
                if client.auth_method != TokenEndpointAuthMethod::PrivateKeyJwt {
                    return Err(fail("client does not authenticate with private_key_jwt", id));
                }
                let throttle_key = Key::Client(id.to_owned(), address);
                let throttle = &self.inner.throttle;
                throttle.reserve(&throttle_key, now)?;
                match self.inner.assertions.check(&client, &jws, &claims, now).await {
                    Ok(()) => {
                        throttle.release(&throttle_key);
                        Ok(client)
                    }
                    Err(Refused::Invalid(why)) => {
                        throttle.failed(&throttle_key);
                        Err(fail(why, id))
                    }
                    Err(Refused::Store(e)) => {
                        throttle.release(&throttle_key);
                        Err(e.into())
                    }
                }
            }
            ClientCredentials::Basic { client_id, secret } | ClientCredentials::Post { client_id, secret } => {
                let Some(client) = self.get(&client_id).await? else {
                    return Err(fail("unknown client", &client_id));
                };
                let Some(hash) = &client.secret else {
                    return Err(fail("public client sent a secret", &client_id));
                };
                let key = crypto::client_secret_key(&client_id, &secret);
                let (hasher, throttle) = (&self.inner.hasher, &self.inner.throttle);
                // A secret verified before answers from the cache and is never throttled: guesses
                // are what the limit is for, and they are never in the cache. Otherwise the attempt
                // is counted before the verification, inside the load, which concurrent requests
                // with the same secret share: a distinct secret counts once, a burst of the
                // application's own first requests does not use up its limit.
                let verified = self
                    .inner
                    .verified
                    .get_or_load(&key, || async {
                        // Made on a miss only: a hit needs no throttle key (nor its allocation).
                        let throttle_key = Key::Client(client_id.clone(), address);
                        throttle.reserve(&throttle_key, now).map_err(VerifyFailure::Refused)?;
                        match hasher.verify(Arc::clone(hash), secret).await {
                            Ok(true) => {
                                throttle.release(&throttle_key);
                                Ok(Some(()))
                            }
                            Ok(false) => {
                                throttle.failed(&throttle_key);
                                Err(VerifyFailure::Mismatch)
                            }
                            Err(e) => {
                                throttle.release(&throttle_key);
                                Err(VerifyFailure::Internal(e))
                            }
                        }
                    })
                    .await;
                match verified {
                    Ok(_) => Ok(client),
                    Err(VerifyFailure::Mismatch) => Err(fail("wrong secret", &client_id)),
                    Err(VerifyFailure::Refused(e) | VerifyFailure::Internal(e)) => Err(e),
                }
            }
        }
    }
}

/// A registered client as the store keeps it, read by the config file's parser: one set of rules
/// for clients from either source.
pub fn parse_record(record: &ClientRecord) -> Result<Client, StoreError> {
    let corrupt = |e: String| StoreError::Internal(anyhow::anyhow!("stored client {:?}: {e}", record.client_id));
    let config: ClientConfig = serde_json::from_str(&record.metadata).map_err(|e| corrupt(e.to_string()))?;
    config.parse().map_err(corrupt)
}
