//! Credentials and their hashes: 256-bit random values from the OS CSPRNG, SHA-256 hashes for
//! storage, PKCE S256, argon2id for passwords and client secrets, constant-time comparison.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::{CodeChallenge, CodeVerifier, GrantId, TokenHash};

/// A freshly minted credential: the value goes to the client exactly once, the hash is all that
/// is kept.
pub struct NewToken {
    pub value: String,
    pub hash: TokenHash,
}

/// A random UUID (version 4) from the thread's CSPRNG (seeded from the OS, no system call per
/// value): request ids and generated subjects, which are unique names, not secrets.
pub fn random_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// 256 bits from the OS CSPRNG, base64url without padding (43 characters).
pub fn generate_token() -> NewToken {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    token_of(&bytes)
}

/// An authorization code ([`generate_token`]'s kind) and the id of the grant it starts, from one
/// draw of the OS CSPRNG: one system call where there were two, on every authorization.
pub fn generate_code() -> (NewToken, GrantId) {
    let mut bytes = [0u8; 48];
    OsRng.fill_bytes(&mut bytes);
    let (code, grant) = bytes.split_at(32);
    let mut id = [0u8; 16];
    id.copy_from_slice(grant);
    (token_of(code), GrantId(id))
}

fn token_of(bytes: &[u8]) -> NewToken {
    let value = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&value);
    NewToken { value, hash }
}

/// A refresh token: `<family>.<generation>.<secret>`, where `family` and `secret` are each 256
/// bits from the OS CSPRNG (base64url, 43 characters) and `generation` counts the grant's
/// rotations in decimal. The family secret is drawn once per grant and carried by every
/// generation; the secret is drawn anew at each rotation. The store keeps one record per family,
/// keyed by the SHA-256 of the family secret, holding the SHA-256 of the current token's whole
/// value: a token of a known family that is not the current one (an older generation, a replay)
/// is recognised as such without keeping any record of the tokens it replaced. Knowing the family
/// secret proves its holder was given a token of that grant, so only such a holder can make the
/// grant be revoked. The generation is not a secret: it is there for the security log.
///
/// A token of 43 characters with no dot (the format before generations) reads as generation 0
/// of the family whose secret is the token itself.
#[derive(Clone, Copy, Debug)]
pub struct RefreshToken<'a> {
    family_secret: &'a str,
    /// SHA-256 of the family secret: the key of the grant's refresh record.
    pub family: TokenHash,
    pub generation: u32,
    /// SHA-256 of the whole value: equal to the record's hash only for the current token.
    pub hash: TokenHash,
}

/// A freshly minted refresh token: its value goes to the client, the hashes to the store.
pub struct NewRefreshToken {
    pub value: String,
    pub family: TokenHash,
    pub generation: u32,
    pub hash: TokenHash,
}

/// Length of 256 bits in base64url without padding.
const SECRET_LEN: usize = 43;

fn is_secret(s: &str) -> bool {
    s.len() == SECRET_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl<'a> RefreshToken<'a> {
    /// Parses a presented value; `None` when it cannot be a refresh token of this server.
    pub fn parse(value: &'a str) -> Option<Self> {
        let (family_secret, generation) = match value.split_once('.') {
            None => (value, 0),
            Some((family, rest)) => {
                let (generation, secret) = rest.split_once('.')?;
                let digits =
                    !generation.is_empty() && generation.len() <= 10 && generation.bytes().all(|b| b.is_ascii_digit());
                if !digits || !is_secret(secret) {
                    return None;
                }
                (family, generation.parse().ok()?)
            }
        };
        if !is_secret(family_secret) {
            return None;
        }
        Some(Self {
            family_secret,
            family: hash_token(family_secret),
            generation,
            hash: hash_token(value),
        })
    }

    /// The next generation of this token's family; `None` once the counter is exhausted.
    pub fn successor(&self) -> Option<NewRefreshToken> {
        let generation = self.generation.checked_add(1)?;
        Some(mint_refresh(self.family_secret, self.family, generation))
    }
}

/// The first refresh token of a new grant: a new family, generation 1.
pub fn generate_refresh_token() -> NewRefreshToken {
    let family = generate_token();
    mint_refresh(&family.value, family.hash, 1)
}

fn mint_refresh(family_secret: &str, family: TokenHash, generation: u32) -> NewRefreshToken {
    let secret = generate_token().value;
    let value = format!("{family_secret}.{generation}.{secret}");
    let hash = hash_token(&value);
    NewRefreshToken {
        value,
        family,
        generation,
        hash,
    }
}

/// The `sid` of a login session (OpenID Connect): derived one-way from the session's hash, so it
/// names the session in ID tokens and logout without being (or revealing) the cookie's value,
/// and needs no storage of its own.
pub fn session_id(session: &TokenHash) -> String {
    let mut h = Sha256::new();
    h.update(b"authplane-sid:");
    h.update(session.0);
    URL_SAFE_NO_PAD.encode(&h.finalize()[..16])
}

pub fn generate_grant_id() -> GrantId {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    GrantId(bytes)
}

/// SHA-256 of a presented credential; the key under which it is stored and cached.
pub fn hash_token(value: &str) -> TokenHash {
    TokenHash(Sha256::digest(value.as_bytes()).into())
}

/// The key of a verified client secret in the cache (invariant 5 of docs/reference.md): a hash of the client id and
/// the presented secret, so a cache hit proves the same secret was verified before.
pub fn client_secret_key(client_id: &str, secret: &str) -> TokenHash {
    let mut h = Sha256::new();
    h.update(client_id.as_bytes());
    h.update([0u8]);
    h.update(secret.as_bytes());
    TokenHash(h.finalize().into())
}

/// RFC 7636 section 4.6: BASE64URL(SHA256(verifier)) == challenge, compared in constant time.
pub fn verify_pkce_s256(verifier: &CodeVerifier, challenge: &CodeChallenge) -> bool {
    let digest = Sha256::digest(verifier.as_str().as_bytes());
    let computed = URL_SAFE_NO_PAD.encode(digest);
    ct_eq(computed.as_bytes(), challenge.as_str().as_bytes())
}

/// The challenge a client computes from its verifier (used by tests, benches and the load tool).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// argon2id parameters. The shipped defaults follow OWASP (19 MiB, 2 passes); tests use
/// [`Argon2Params::cheap`] for their fixtures only.
#[derive(Clone, Copy, Debug)]
pub struct Argon2Params {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl Argon2Params {
    pub const DEFAULT: Self = Self {
        m_cost_kib: 19_456,
        t_cost: 2,
        p_cost: 1,
    };

    /// Fast parameters for test fixtures; never for real credentials.
    pub const fn cheap() -> Self {
        Self {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    /// The most work one verification may ask for: 256 MiB, 10 passes, 16 lanes. Every login
    /// (and the dummy verification of an unknown user) pays it, and the server makes its dummy
    /// hash with the first user's parameters at start-up: a hash beyond this would stall logins
    /// or hang the start, so it is refused with the config (invariant 13 of docs/reference.md).
    pub const MAX: Self = Self {
        m_cost_kib: 256 * 1024,
        t_cost: 10,
        p_cost: 16,
    };
}

/// Hashes a password or secret to an argon2id PHC string.
pub fn hash_password(password: &str, params: Argon2Params) -> Result<String, argon2::password_hash::Error> {
    let params = Params::new(params.m_cost_kib, params.t_cost, params.p_cost, None)?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon.hash_password(password.as_bytes(), &salt)?.to_string())
}

/// A PHC string parsed once at start-up, so each verification only pays for argon2 itself.
#[derive(Clone)]
pub struct PasswordHashString(String);

/// A password hash is as good as the password to an offline guesser: never in a log.
impl std::fmt::Debug for PasswordHashString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHashString(..)")
    }
}

impl PasswordHashString {
    /// Accepts only argon2id PHC strings.
    pub fn parse(phc: &str) -> Result<Self, String> {
        let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC string: {e}"))?;
        if parsed.algorithm.as_str() != "argon2id" {
            return Err(format!("algorithm {} is not argon2id", parsed.algorithm));
        }
        let hash = Self(phc.to_owned());
        // Parameters left out take argon2's defaults, which are below the limits.
        let max = Argon2Params::MAX;
        if let Some(p) = hash.params() {
            if p.m_cost_kib > max.m_cost_kib || p.t_cost > max.t_cost || p.p_cost > max.p_cost {
                return Err(format!(
                    "argon2 parameters m={},t={},p={} ask for more work than a login can afford \
                     (at most m={},t={},p={})",
                    p.m_cost_kib, p.t_cost, p.p_cost, max.m_cost_kib, max.t_cost, max.p_cost
                ));
            }
        }
        Ok(hash)
    }

    /// The PHC string (a hash: what the store keeps).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The argon2 cost parameters the hash was made with.
    pub fn params(&self) -> Option<Argon2Params> {
        let h = PasswordHash::new(&self.0).ok()?;
        let get = |k: &str, default: u32| match h.params.get(k) {
            None => Some(default),
            Some(_) => h.params.get_decimal(k),
        };
        Some(Argon2Params {
            m_cost_kib: get("m", argon2::Params::DEFAULT_M_COST)?,
            t_cost: get("t", argon2::Params::DEFAULT_T_COST)?,
            p_cost: get("p", argon2::Params::DEFAULT_P_COST)?,
        })
    }

    /// Blocking: call it off the async workers. The comparison inside is constant time.
    pub fn verify(&self, password: &str) -> bool {
        match PasswordHash::new(&self.0) {
            Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
            Err(_) => false,
        }
    }

    /// [`verify`](Self::verify) with caller-owned argon2 memory, reused across calls: a hashing
    /// thread keeps one buffer instead of allocating (and the allocator retaining) ~19 MiB per
    /// verification. The final comparison is constant time.
    pub fn verify_with(&self, password: &str, memory: &mut Vec<argon2::Block>) -> bool {
        let Ok(h) = PasswordHash::new(&self.0) else {
            return false;
        };
        let (Some(expected), Some(salt)) = (h.hash, h.salt) else {
            return false;
        };
        let (Ok(params), Ok(algorithm)) = (Params::try_from(&h), Algorithm::try_from(h.algorithm)) else {
            return false;
        };
        let version = h
            .version
            .and_then(|v| Version::try_from(v).ok())
            .unwrap_or(Version::V0x13);
        let mut salt_buf = [0u8; 64];
        let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
            return false;
        };
        memory.resize(params.block_count(), argon2::Block::default());
        let mut out = [0u8; 64];
        let Some(out) = out.get_mut(..expected.len()) else {
            return false;
        };
        let argon = Argon2::new(algorithm, version, params);
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt, out, memory.as_mut_slice())
            .is_ok()
            && ct_eq(out, expected.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_uuids_are_version_4() {
        let u = random_uuid();
        assert_eq!(u.get_version_num(), 4);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(random_uuid(), u);
    }

    #[test]
    fn tokens_are_256_bit_base64url_and_hash_to_sha256() {
        let t = generate_token();
        assert_eq!(t.value.len(), 43);
        assert!(
            t.value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(&t.value).unwrap().len(), 32);
        assert_eq!(t.hash, hash_token(&t.value));
        assert_ne!(generate_token().value, t.value);
        // The stored key is the SHA-256 of the value, not the value.
        assert_eq!(t.hash.0.as_slice(), Sha256::digest(t.value.as_bytes()).as_slice());
    }

    #[test]
    fn a_code_and_its_grant_id_are_independent_draws() {
        let (code, grant) = generate_code();
        let bytes = URL_SAFE_NO_PAD.decode(&code.value).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(code.hash, hash_token(&code.value));
        assert!(
            !bytes.windows(16).any(|w| w == grant.0),
            "the grant id is not part of the code"
        );
        let (other, other_grant) = generate_code();
        assert_ne!(other.value, code.value);
        assert_ne!(other_grant.0, grant.0);
    }

    #[test]
    fn refresh_tokens_name_their_family_and_generation() {
        let first = generate_refresh_token();
        let parsed = RefreshToken::parse(&first.value).unwrap();
        assert_eq!(
            (parsed.family, parsed.generation, parsed.hash),
            (first.family, 1, first.hash)
        );
        let next = parsed.successor().unwrap();
        assert_eq!((next.family, next.generation), (first.family, 2));
        assert_ne!(next.hash, first.hash);
        let (family, rest) = next.value.split_once('.').unwrap();
        let (generation, secret) = rest.split_once('.').unwrap();
        assert_eq!(family, first.value.split_once('.').unwrap().0);
        assert_eq!(generation, "2");
        // Both random parts are 256 bits.
        for part in [family, secret] {
            assert_eq!(URL_SAFE_NO_PAD.decode(part).unwrap().len(), 32);
        }
        assert_eq!(RefreshToken::parse(&next.value).unwrap().hash, hash_token(&next.value));
        // A token of the format before generations is generation 0 of its own family.
        let legacy = generate_token();
        let old = RefreshToken::parse(&legacy.value).unwrap();
        assert_eq!((old.family, old.generation, old.hash), (legacy.hash, 0, legacy.hash));
        assert_eq!(
            RefreshToken::parse(&old.successor().unwrap().value).unwrap().family,
            legacy.hash
        );
        let f = &legacy.value;
        for bad in [
            String::new(),
            "x".into(),
            format!("{f}."),
            format!("{f}.1"),
            format!("{f}..{f}"),
            format!("{f}.-1.{f}"),
            format!("{f}.+1.{f}"),
            format!("{f}.99999999999.{f}"),
            format!("{f}.4294967296.{f}"),
            format!("{f}.1.{f}x"),
            format!("{f}.1.{f}.1"),
            format!("{f}x.1.{f}"),
            format!("{}=.1.{f}", &f[..42]),
        ] {
            assert!(RefreshToken::parse(&bad).is_none(), "{bad}");
        }
        let last = format!("{f}.4294967295.{f}");
        assert!(RefreshToken::parse(&last).unwrap().successor().is_none());
    }

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        let verifier = CodeVerifier::parse("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
        let challenge = CodeChallenge::parse("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM").unwrap();
        assert!(verify_pkce_s256(&verifier, &challenge));
        let other = CodeVerifier::parse(&"x".repeat(43)).unwrap();
        assert!(!verify_pkce_s256(&other, &challenge));
    }

    #[test]
    fn argon2id_roundtrip_and_rejects_other_algorithms() {
        let phc = hash_password("wonderland", Argon2Params::cheap()).unwrap();
        let h = PasswordHashString::parse(&phc).unwrap();
        // Parameters beyond what a login can afford are refused without any hashing.
        let absurd =
            "$argon2id$v=19$m=4194304,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(PasswordHashString::parse(absurd).unwrap_err().contains("more work"));
        assert!(PasswordHashString::parse(&absurd.replace("m=4194304,t=3", "m=65536,t=100")).is_err());
        assert!(PasswordHashString::parse(&absurd.replace("m=4194304,t=3,p=1", "m=65536,t=3,p=64")).is_err());
        assert!(PasswordHashString::parse(&absurd.replace("m=4194304", "m=65536")).is_ok());
        assert!(h.verify("wonderland"));
        assert!(!h.verify("Wonderland"));
        let mut memory = Vec::new();
        assert!(h.verify_with("wonderland", &mut memory));
        assert!(!h.verify_with("Wonderland", &mut memory));
        assert!(h.verify_with("wonderland", &mut memory), "the buffer is reusable");
        let shipped = hash_password(
            "x",
            Argon2Params {
                m_cost_kib: 1024,
                t_cost: 2,
                p_cost: 1,
            },
        )
        .unwrap();
        assert!(
            PasswordHashString::parse(&shipped)
                .unwrap()
                .verify_with("x", &mut memory)
        );
        assert!(PasswordHashString::parse("$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo").is_err());
        assert!(PasswordHashString::parse("plaintext").is_err());
    }
}
