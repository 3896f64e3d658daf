//! JOSE on one cryptography provider, aws-lc-rs: the three signature algorithms of ID tokens
//! (`RS256`, `ES256`, `EdDSA` with Ed25519), key generation, compact JWS (RFC 7515), public JWKs
//! (RFC 7517), and the AEAD (AES-256-GCM) that seals private keys at rest.
//!
//! Private key material lives in [`PrivateKey`] and in the transient PKCS#8 buffers that
//! [`PrivateKey::generate`] and [`KeyEncryptionKey::open`] hand out, which zero themselves on
//! drop. None of these types prints its contents: their `Debug` names the algorithm only, and
//! nothing here implements `Serialize` for private material.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair as _, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

/// A signature algorithm of the tokens this server signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA 2048.
    #[value(name = "RS256")]
    RS256,
    /// ECDSA on P-256 with SHA-256.
    #[value(name = "ES256")]
    ES256,
    /// EdDSA with Ed25519.
    #[value(name = "EdDSA")]
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 3] = [Alg::RS256, Alg::ES256, Alg::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// `at_hash` (OpenID Connect Core 3.1.3.6): the left half of the hash of the access token's
    /// ASCII, base64url. The hash is the one of the signature: SHA-256 for `RS256` and `ES256`,
    /// SHA-512 for `EdDSA` with Ed25519.
    pub fn at_hash(self, access_token: &str) -> String {
        let digest = match self {
            Self::RS256 | Self::ES256 => Sha256::digest(access_token.as_bytes()).to_vec(),
            Self::EdDSA => Sha512::digest(access_token.as_bytes()).to_vec(),
        };
        URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JoseError {
    #[error("key generation failed")]
    Generate,
    #[error("private key rejected: {0}")]
    KeyRejected(String),
    #[error("signing failed")]
    Sign,
    #[error("the key-encryption key must be base64 of 32 bytes")]
    BadKeyEncryptionKey,
    /// A sealed key does not open: the key-encryption key is not the one that sealed it, or the
    /// ciphertext was changed.
    #[error("a sealed private key does not open with this key-encryption key")]
    Unseal,
}

/// PKCS#8 DER of a private key, zeroed when dropped.
pub type Pkcs8 = Zeroizing<Vec<u8>>;

enum KeyPair {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private signing key.
pub struct PrivateKey {
    alg: Alg,
    pair: KeyPair,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// A new key from the OS CSPRNG, with its PKCS#8 encoding (to be sealed for the store).
    pub fn generate(alg: Alg) -> Result<(Self, Pkcs8), JoseError> {
        let rng = SystemRandom::new();
        let pkcs8: Vec<u8> = match alg {
            Alg::RS256 => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).map_err(|_| JoseError::Generate)?;
                let der = pair.as_der().map_err(|_| JoseError::Generate)?;
                der.as_ref().to_vec()
            }
            Alg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| JoseError::Generate)?
                .as_ref()
                .to_vec(),
            Alg::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| JoseError::Generate)?
                .as_ref()
                .to_vec(),
        };
        let pkcs8 = Zeroizing::new(pkcs8);
        let key = Self::from_pkcs8(alg, &pkcs8)?;
        Ok((key, pkcs8))
    }

    pub fn from_pkcs8(alg: Alg, pkcs8: &[u8]) -> Result<Self, JoseError> {
        let rejected = |e: aws_lc_rs::error::KeyRejected| JoseError::KeyRejected(e.to_string());
        let pair = match alg {
            Alg::RS256 => {
                let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8).map_err(rejected)?;
                if pair.public_modulus_len() < 256 {
                    return Err(JoseError::KeyRejected("RSA keys must be 2048 bits or larger".into()));
                }
                KeyPair::Rsa(pair)
            }
            Alg::ES256 => {
                KeyPair::Ec(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(rejected)?)
            }
            Alg::EdDSA => KeyPair::Ed(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(rejected)?),
        };
        Ok(Self { alg, pair })
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The signature of `msg` (JWS: ECDSA as the fixed-width `r || s`).
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, JoseError> {
        let rng = SystemRandom::new();
        match &self.pair {
            KeyPair::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| JoseError::Sign)?;
                Ok(sig)
            }
            KeyPair::Ec(pair) => {
                let mut sig = pair.sign(&rng, msg).map_err(|_| JoseError::Sign)?.as_ref().to_vec();
                low_s(&mut sig);
                Ok(sig)
            }
            KeyPair::Ed(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
        }
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let bytes = match &self.pair {
            // PKCS#1 RSAPublicKey DER; the JWK takes n and e from it.
            KeyPair::Rsa(pair) => pair.public_key().as_ref().to_vec(),
            // The uncompressed point 0x04 || x || y.
            KeyPair::Ec(pair) => pair.public_key().as_ref().to_vec(),
            KeyPair::Ed(pair) => pair.public_key().as_ref().to_vec(),
        };
        let rsa = match &self.pair {
            KeyPair::Rsa(pair) => Some((
                pair.public_key().modulus().big_endian_without_leading_zero().to_vec(),
                pair.public_key().exponent().big_endian_without_leading_zero().to_vec(),
            )),
            _ => None,
        };
        PublicKey::new(self.alg, bytes, rsa)
    }
}

/// A public key: verifies signatures and renders itself as a JWK.
#[derive(Clone)]
pub struct PublicKey {
    alg: Alg,
    /// In the provider's encoding (PKCS#1 for RSA, the uncompressed point for P-256, the raw
    /// 32 bytes for Ed25519).
    bytes: Vec<u8>,
    /// RSA's `n` and `e`, big-endian.
    rsa: Option<(Vec<u8>, Vec<u8>)>,
    /// The provider's parsed form, made once: an RSA key's Montgomery constants or a point's
    /// validation are not redone for each signature (a DPoP client, or this server's own
    /// keys, verify many with one key). `None` when the provider refused the bytes: nothing
    /// then verifies.
    parsed: Option<std::sync::Arc<ParsedPublicKey>>,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        (self.alg, &self.bytes, &self.rsa) == (other.alg, &other.bytes, &other.rsa)
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("alg", &self.alg)
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    fn new(alg: Alg, bytes: Vec<u8>, rsa: Option<(Vec<u8>, Vec<u8>)>) -> Self {
        let parsed = ParsedPublicKey::new(verification_alg(alg), &bytes)
            .ok()
            .map(std::sync::Arc::new);
        Self {
            alg,
            bytes,
            rsa,
            parsed,
        }
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.parsed.as_ref().is_some_and(|key| key.verify_sig(msg, sig).is_ok())
    }

    /// The JWK of this key (RFC 7517, RFC 7518 section 6, RFC 8037), public parameters only.
    pub fn jwk(&self, kid: &str) -> Jwk {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let mut jwk = Jwk {
            kty: "",
            kid: kid.to_owned(),
            use_: "sig",
            alg: self.alg,
            n: None,
            e: None,
            crv: None,
            x: None,
            y: None,
        };
        match self.alg {
            Alg::RS256 => {
                jwk.kty = "RSA";
                if let Some((n, e)) = &self.rsa {
                    jwk.n = Some(b64(n));
                    jwk.e = Some(b64(e));
                }
            }
            Alg::ES256 => {
                jwk.kty = "EC";
                jwk.crv = Some("P-256");
                // 0x04 || x (32 bytes) || y (32 bytes).
                if self.bytes.len() == 65 {
                    jwk.x = Some(b64(&self.bytes[1..33]));
                    jwk.y = Some(b64(&self.bytes[33..]));
                }
            }
            Alg::EdDSA => {
                jwk.kty = "OKP";
                jwk.crv = Some("Ed25519");
                jwk.x = Some(b64(&self.bytes));
            }
        }
        jwk
    }

    /// Reads back a JWK that [`PublicKey::jwk`] wrote (the store keeps public keys as JWKs).
    pub fn from_jwk(jwk: &serde_json::Value) -> Option<Self> {
        Self::from_jwk_for(Alg::parse(jwk.get("alg")?.as_str()?)?, jwk)
    }

    /// A public JWK for use with `alg` (a DPoP proof's header names the algorithm; its `jwk` may
    /// not): `None` when the key is not one of `alg`'s, or names another `alg`.
    pub fn from_jwk_for(alg: Alg, jwk: &serde_json::Value) -> Option<Self> {
        let field = |k: &str| jwk.get(k).and_then(|v| v.as_str());
        let bytes = |k: &str| field(k).and_then(|s| URL_SAFE_NO_PAD.decode(s).ok());
        if jwk.get("alg").is_some_and(|a| a.as_str() != Some(alg.as_str())) {
            return None;
        }
        match (alg, field("kty")?) {
            (Alg::RS256, "RSA") => {
                let (n, e) = (bytes("n")?, bytes("e")?);
                Some(Self::new(alg, rsa_public_key_der(&n, &e), Some((n, e))))
            }
            (Alg::ES256, "EC") if field("crv")? == "P-256" => {
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return None;
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Some(Self::new(alg, point, None))
            }
            (Alg::EdDSA, "OKP") if field("crv")? == "Ed25519" => {
                let x = bytes("x")?;
                (x.len() == 32).then(|| Self::new(alg, x, None))
            }
            _ => None,
        }
        // A key the provider refuses (a point off the curve, a modulus out of range) is no key.
        .filter(|key| key.parsed.is_some())
    }
}

impl PublicKey {
    /// The JWK thumbprint (RFC 7638): SHA-256 over the key's required members in lexicographic
    /// order, base64url. DPoP's `jkt` (RFC 9449 section 6).
    pub fn thumbprint(&self) -> String {
        let jwk = self.jwk("");
        let v = |o: &Option<String>| o.clone().unwrap_or_default();
        // Written out: every value is base64url or a fixed name, so nothing needs escaping,
        // and the member order cannot depend on a JSON library's map.
        let canonical = match self.alg {
            Alg::RS256 => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, v(&jwk.e), v(&jwk.n)),
            Alg::ES256 => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                v(&jwk.x),
                v(&jwk.y)
            ),
            Alg::EdDSA => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, v(&jwk.x)),
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }
}

/// The order n of P-256, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Whether the `s` half of a fixed-size P-256 signature (`r || s`) is at most n/2.
pub fn is_low_s(sig: &[u8]) -> bool {
    let Some(s) = sig.get(32..64) else {
        return false;
    };
    // n/2 rounded down: shift n right by one bit.
    let mut half = [0u8; 32];
    let mut carry = 0u8;
    for (i, b) in P256_N.iter().enumerate() {
        half[i] = (b >> 1) | carry;
        carry = (b & 1) << 7;
    }
    s <= &half[..]
}

/// Puts an ECDSA P-256 signature in low-S form (s := n - s when s > n/2; both verify): our
/// tokens then have one encoding only, so a revoked one cannot be revived as a new string by
/// flipping `s` (ECDSA malleability).
fn low_s(sig: &mut [u8]) {
    if sig.len() != 64 || is_low_s(sig) {
        return;
    }
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(P256_N[i]) - i16::from(sig[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        sig[32 + i] = d as u8;
    }
}

/// The provider's verification algorithm of `alg` (RSA: 2048 to 8192 bits).
fn verification_alg(alg: Alg) -> &'static dyn signature::VerificationAlgorithm {
    match alg {
        Alg::RS256 => &RSA_PKCS1_2048_8192_SHA256,
        Alg::ES256 => &ECDSA_P256_SHA256_FIXED,
        Alg::EdDSA => &ED25519,
    }
}

/// DER of PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn integer(v: &[u8]) -> Vec<u8> {
        let v = match v.iter().position(|b| *b != 0) {
            Some(i) => &v[i..],
            None => &[0][..],
        };
        let mut body = Vec::with_capacity(v.len() + 1);
        if v[0] & 0x80 != 0 {
            body.push(0);
        }
        body.extend_from_slice(v);
        tlv(0x02, &body)
    }
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = body.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len() - 1);
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(body);
        out
    }
    let mut seq = integer(n);
    seq.extend(integer(e));
    tlv(0x30, &seq)
}

/// A public JWK as `GET /auth/jwks` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    pub kid: String,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub alg: Alg,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

/// Signs `claims` as a compact JWS with the header `{"alg", "kid", "typ"}`.
pub fn sign_jwt(key: &PrivateKey, kid: &str, typ: &str, claims: &impl Serialize) -> Result<String, JoseError> {
    #[derive(Serialize)]
    struct Header<'a> {
        alg: Alg,
        kid: &'a str,
        typ: &'a str,
    }
    let header = serde_json::to_vec(&Header {
        alg: key.alg(),
        kid,
        typ,
    })
    .map_err(|_| JoseError::Sign)?;
    let claims = serde_json::to_vec(claims).map_err(|_| JoseError::Sign)?;
    let mut out = String::with_capacity((header.len() + claims.len()) * 4 / 3 + 400);
    URL_SAFE_NO_PAD.encode_string(&header, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&claims, &mut out);
    let sig = key.sign(out.as_bytes())?;
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&sig, &mut out);
    Ok(out)
}

/// Why a presented JWT was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not a compact JWS")]
    Malformed,
    #[error("the header names no key of this server")]
    UnknownKey,
    #[error("the header's alg is not the key's")]
    WrongAlg,
    #[error("the signature does not verify")]
    BadSignature,
}

/// A JWS that verified: its header's `typ` and its claims.
#[derive(Debug)]
pub struct Verified {
    pub typ: Option<String>,
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// A compact JWS split and decoded, its signature not checked yet.
pub struct Compact<'a> {
    pub header: serde_json::Map<String, serde_json::Value>,
    claims: &'a str,
    signing_input: &'a str,
    signature: Vec<u8>,
}

/// Splits a compact JWS (three base64url parts) and decodes its header and signature.
pub fn parse_compact(token: &str) -> Result<Compact<'_>, JwtError> {
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| JwtError::Malformed);
    Ok(Compact {
        header: serde_json::from_slice(&decode(h)?).map_err(|_| JwtError::Malformed)?,
        claims: c,
        signing_input: &token[..h.len() + 1 + c.len()],
        signature: decode(s)?,
    })
}

impl Compact<'_> {
    /// A header member that is a string.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(serde_json::Value::as_str)
    }

    /// Whether `key` signed it: the header's `alg` must be the key's own (never `none`).
    pub fn verify(&self, key: &PublicKey) -> Result<(), JwtError> {
        if self.header_str("alg").and_then(Alg::parse) != Some(key.alg()) {
            return Err(JwtError::WrongAlg);
        }
        match key.verify(self.signing_input.as_bytes(), &self.signature) {
            true => Ok(()),
            false => Err(JwtError::BadSignature),
        }
    }

    /// The claims, once verified.
    pub fn claims(&self) -> Result<serde_json::Map<String, serde_json::Value>, JwtError> {
        let bytes = URL_SAFE_NO_PAD.decode(self.claims).map_err(|_| JwtError::Malformed)?;
        serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
    }
}

/// Verifies a compact JWS against the key its header's `kid` names (via `key_of`), refusing
/// `alg: none` and any `alg` that is not the key's own.
pub fn verify_jwt<'k>(token: &str, key_of: impl FnOnce(&str) -> Option<&'k PublicKey>) -> Result<Verified, JwtError> {
    let jws = parse_compact(token)?;
    let key = jws.header_str("kid").and_then(key_of).ok_or(JwtError::UnknownKey)?;
    jws.verify(key)?;
    // This server signs in low-S form only: a high-S twin of one of its tokens is a forgery of
    // a new token string, not a token it issued.
    if key.alg() == Alg::ES256 && !is_low_s(&jws.signature) {
        return Err(JwtError::BadSignature);
    }
    Ok(Verified {
        typ: jws.header_str("typ").map(str::to_owned),
        claims: jws.claims()?,
    })
}

/// `--key-encryption-key`: AES-256-GCM over the private keys at rest. The nonce is random (96
/// bits) for each sealing: a deployment seals a few keys a month, far below the bound where
/// random nonces could repeat.
pub struct KeyEncryptionKey {
    aead: LessSafeKey,
    /// The key of the form tags ([`FormKey`]), derived from the same 32 bytes.
    forms: FormKey,
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyEncryptionKey([redacted])")
    }
}

impl KeyEncryptionKey {
    /// Base64 (standard or URL-safe, padded or not) of exactly 32 bytes.
    pub fn parse(text: &str) -> Result<Self, JoseError> {
        let text = text.trim();
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
                .map_err(|_| JoseError::BadKeyEncryptionKey)?,
        );
        Self::from_bytes(&bytes)
    }

    /// A random key for a process that keeps its keys to itself (the memory store).
    pub fn generate() -> Result<Self, JoseError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| JoseError::Generate)?;
        Self::from_bytes(bytes.as_ref())
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, JoseError> {
        if bytes.len() != 32 {
            return Err(JoseError::BadKeyEncryptionKey);
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| JoseError::BadKeyEncryptionKey)?;
        // A key of its own for the form tags: HMAC-SHA-256 of a label under the 32 bytes, so
        // that no tag ever uses the encryption key itself.
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, bytes), b"authplane form tags v1");
        Ok(Self {
            aead: LessSafeKey::new(key),
            forms: FormKey(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())),
        })
    }

    /// The key that tags forms (consent), the same on every node of a deployment.
    pub fn form_key(&self) -> FormKey {
        self.forms.clone()
    }

    /// `nonce || ciphertext || tag`, bound to `aad` (the key's id and algorithm, so a sealed key
    /// cannot be moved to another row).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, JoseError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| JoseError::Generate)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        sealed.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.aead
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body)
            .map_err(|_| JoseError::Sign)?;
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Pkcs8, JoseError> {
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(JoseError::Unseal);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| JoseError::Unseal)?;
        let mut body = Zeroizing::new(body.to_vec());
        let len = self
            .aead
            .open_in_place(nonce, Aad::from(aad), body.as_mut_slice())
            .map_err(|_| JoseError::Unseal)?
            .len();
        body.truncate(len);
        Ok(body)
    }
}

/// Tags what a server-rendered form must post back unchanged (HMAC-SHA-256): a form tagged for
/// one session and one request verifies for exactly those.
#[derive(Clone)]
pub struct FormKey(hmac::Key);

impl fmt::Debug for FormKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FormKey([redacted])")
    }
}

impl FormKey {
    /// The tag of `parts` (each length-prefixed, so no two lists share a tag), base64url.
    pub fn tag(&self, parts: &[&[u8]]) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.0, &framed(parts)))
    }

    /// Whether `tag` is the tag of `parts`, in constant time.
    pub fn verify(&self, parts: &[&[u8]], tag: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(tag)
            .is_ok_and(|t| hmac::verify(&self.0, &framed(parts), &t).is_ok())
    }
}

fn framed(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for p in parts {
        out.extend_from_slice(&(p.len() as u64).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn es256_signatures_are_low_s_and_high_s_twins_are_refused() {
        let (key, _) = PrivateKey::generate(Alg::ES256).unwrap();
        for i in 0..32 {
            let token = sign_jwt(&key, "k", "JWT", &serde_json::json!({"i": i})).unwrap();
            let public = key.public_key();
            assert!(verify_jwt(&token, |_| Some(&public)).is_ok());
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
            assert!(is_low_s(&sig), "signed low-S");
            // The twin (r, n - s) verifies as ECDSA but is not a token this server issued.
            let mut twin = sig.clone();
            twin[32..].copy_from_slice(&[0u8; 32]);
            let mut borrow = 0i16;
            for b in (0..32).rev() {
                let mut d = i16::from(P256_N[b]) - i16::from(sig[32 + b]) - borrow;
                borrow = i16::from(d < 0);
                if d < 0 {
                    d += 256;
                }
                twin[32 + b] = d as u8;
            }
            assert!(
                public.verify(input.as_bytes(), &twin),
                "the twin is a valid ECDSA signature"
            );
            let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&twin));
            assert_eq!(
                verify_jwt(&forged, |_| Some(&public)).err(),
                Some(JwtError::BadSignature)
            );
        }
    }

    #[test]
    fn form_tags_bind_every_part() {
        let key = KeyEncryptionKey::generate().unwrap().form_key();
        let tag = key.tag(&[b"session", b"request"]);
        assert!(key.verify(&[b"session", b"request"], &tag));
        assert!(!key.verify(&[b"session", b"other"], &tag));
        assert!(!key.verify(&[b"sessionrequest", b""], &tag), "parts are framed");
        assert!(
            !KeyEncryptionKey::generate()
                .unwrap()
                .form_key()
                .verify(&[b"session", b"request"], &tag)
        );
        assert!(!key.verify(&[b"session", b"request"], "not base64!"));
    }

    #[test]
    fn each_algorithm_signs_and_verifies_its_own_and_refuses_a_changed_message() {
        for alg in Alg::ALL {
            let (key, pkcs8) = PrivateKey::generate(alg).unwrap();
            let token = sign_jwt(&key, "k1", "JWT", &serde_json::json!({"sub": "x"})).unwrap();
            let public = key.public_key();
            let verified = verify_jwt(&token, |kid| (kid == "k1").then_some(&public)).unwrap();
            assert_eq!(verified.claims["sub"], "x", "{alg}");
            // The JWK round-trips to the same verifier.
            let jwk = serde_json::to_value(public.jwk("k1")).unwrap();
            assert_eq!(PublicKey::from_jwk(&jwk).as_ref(), Some(&public), "{alg}");
            // A reloaded key signs what the first one verifies.
            let reloaded = PrivateKey::from_pkcs8(alg, &pkcs8).unwrap();
            let again = sign_jwt(&reloaded, "k1", "JWT", &serde_json::json!({"sub": "y"})).unwrap();
            assert!(verify_jwt(&again, |_| Some(&public)).is_ok());
            // Another payload under the same signature fails.
            let mut parts: Vec<&str> = token.split('.').collect();
            let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin"}"#);
            parts[1] = &forged;
            assert_eq!(
                verify_jwt(&parts.join("."), |_| Some(&public)).unwrap_err(),
                JwtError::BadSignature
            );
        }
    }

    #[test]
    fn alg_none_and_a_foreign_alg_are_refused() {
        let (key, _) = PrivateKey::generate(Alg::ES256).unwrap();
        let public = key.public_key();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
        let none = format!("{header}.{claims}.");
        assert_eq!(verify_jwt(&none, |_| Some(&public)).unwrap_err(), JwtError::WrongAlg);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":"k1"}"#);
        assert_eq!(
            verify_jwt(&format!("{header}.{claims}.AAAA"), |_| Some(&public)).unwrap_err(),
            JwtError::WrongAlg
        );
        assert_eq!(verify_jwt("a.b", |_| Some(&public)).unwrap_err(), JwtError::Malformed);
    }

    #[test]
    fn sealed_keys_open_only_with_their_key_and_their_aad() {
        let kek = KeyEncryptionKey::generate().unwrap();
        let sealed = kek.seal(b"kid-1", b"private").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"private"));
        assert_eq!(kek.open(b"kid-1", &sealed).unwrap().as_slice(), b"private");
        assert!(kek.open(b"kid-2", &sealed).is_err());
        assert!(KeyEncryptionKey::generate().unwrap().open(b"kid-1", &sealed).is_err());
        assert!(format!("{kek:?}").contains("redacted"));
    }

    #[test]
    fn key_encryption_keys_are_32_bytes_of_base64() {
        let good = STANDARD.encode([7u8; 32]);
        assert!(KeyEncryptionKey::parse(&good).is_ok());
        assert!(KeyEncryptionKey::parse(&URL_SAFE_NO_PAD.encode([7u8; 32])).is_ok());
        assert!(KeyEncryptionKey::parse(&STANDARD.encode([7u8; 16])).is_err());
        assert!(KeyEncryptionKey::parse("not base64!").is_err());
    }

    #[test]
    fn at_hash_is_the_left_half_of_the_algorithms_hash() {
        // Expected values from Python's hashlib (left 16 bytes of SHA-256, 32 of SHA-512).
        let token = "jHkWEdUXMU1BwAsC4vtUsZwnNnrJ1ZCAM";
        assert_eq!(Alg::RS256.at_hash(token), "GFxtY7-EgYplRMPbxpCE-A");
        assert_eq!(Alg::ES256.at_hash(token), "GFxtY7-EgYplRMPbxpCE-A");
        assert_eq!(Alg::EdDSA.at_hash(token), "I8DUaBR2MZIwBPRyMJ6AdW3Pc8eQSapohL3WsaK8meE");
    }
}
