//! The demo users and clients, defined once: a TOML text in the shape of `config/authplane.toml`
//! (`fixtures/authplane.toml`), loaded by the server's own config loader. Going through the file
//! format rather than the config structs keeps the fixture valid as those structs change, and it
//! is what the process tests hand to the real binary.

use std::path::{Path, PathBuf};

use authplane::Config;
use authplane::config::{Settings, parse_file};

/// The fixture file: alice and bob, demo-app, demo-spa and other-app, with cheap argon2 hashes of
/// the passwords below, and `listen = "127.0.0.1:0"`.
pub const TOML: &str = include_str!("../fixtures/authplane.toml");

/// `--key-encryption-key` of every test app on PostgreSQL (nodes of one deployment share it).
/// A test value: 32 bytes of base64, public in this repository.
pub const KEY_ENCRYPTION_KEY: &str = "dGVzdC1rZXktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM=";

pub const ALICE: &str = "alice";
pub const ALICE_PASSWORD: &str = "wonderland";
pub const ALICE_SUB: &str = "u-alice";
pub const BOB: &str = "bob";
pub const BOB_PASSWORD: &str = "builder";

/// The confidential demo client (`client_secret_basic`, every grant).
pub const APP: &str = "demo-app";
pub const APP_SECRET: &str = "demo-secret";
pub const APP_REDIRECT: &str = "http://127.0.0.1:9000/callback";
/// `Basic base64(demo-app:demo-secret)`, for requests built by hand.
pub const APP_BASIC: &str = "Basic ZGVtby1hcHA6ZGVtby1zZWNyZXQ=";

/// The public demo client (PKCE, no secret).
pub const SPA: &str = "demo-spa";
pub const SPA_REDIRECT: &str = "http://127.0.0.1:9000/spa";

/// A second confidential client with two redirect URIs, for cross-client checks.
pub const PARTNER: &str = "demo-partner";
pub const PARTNER_SECRET: &str = "demo-partner-secret";
pub const PARTNER_REDIRECT: &str = "http://127.0.0.1:9000/partner";
pub const ADMIN: &str = "demo-admin";
pub const ADMIN_SECRET: &str = "demo-admin-secret";

/// A confidential client with JWT access tokens and two resource servers; secret demo-secret.
pub const JWT_APP: &str = "jwt-app";
/// The resource servers jwt-app may ask tokens for (demo-partner: the first).
pub const API: &str = "https://api.example.test";
pub const BILLING: &str = "https://billing.example.test";

/// A confidential client that must send a DPoP proof with every token request; secret demo-secret.
pub const DPOP_APP: &str = "dpop-app";

/// A confidential client whose authorize requests must be pushed; secret demo-secret.
pub const PAR_APP: &str = "par-app";

pub const OTHER: &str = "other-app";
pub const OTHER_SECRET: &str = "other-secret";
pub const OTHER_REDIRECT: &str = "http://127.0.0.1:9001/cb";

/// The fixture as the server would run it, with `tweak` applied to the flags (flags win over the
/// file, as on the command line).
pub fn config(tweak: impl FnOnce(&mut Settings)) -> anyhow::Result<Config> {
    config_from(TOML, tweak)
}

/// As [`config`], from another TOML text (typically [`TOML`] with a substitution).
pub fn config_from(text: &str, tweak: impl FnOnce(&mut Settings)) -> anyhow::Result<Config> {
    let file = parse_file(Path::new("fixtures/authplane.toml"), text)?;
    let mut flags = Settings::default();
    tweak(&mut flags);
    Ok(Config::resolve(flags, file)?)
}

/// Writes the fixture to `dir/authplane.toml` for a process test, and returns its path.
pub fn write(dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join("authplane.toml");
    std::fs::write(&path, TOML)?;
    Ok(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use authplane::crypto::PasswordHashString;

    use super::*;

    #[test]
    fn the_fixture_loads_with_its_documented_passwords() {
        let cfg = config(|_| {}).unwrap();
        assert_eq!(cfg.listen.port(), 0);
        let user = |name: &str| cfg.users.iter().find(|u| u.username == name).unwrap();
        let client = |id: &str| cfg.clients.iter().find(|c| &*c.client_id == id).unwrap();
        let verifies = |hash: &PasswordHashString, pw: &str| {
            // Cheap parameters only: a fixture must never cost what a real hash costs.
            let p = hash.params().unwrap();
            assert_eq!((p.m_cost_kib, p.t_cost, p.p_cost), (64, 1, 1));
            hash.verify(pw)
        };
        let uris = |id: &str| -> Vec<String> { client(id).redirect_uris.iter().map(|u| u.exact.clone()).collect() };
        assert_eq!(&*user(ALICE).sub, ALICE_SUB);
        assert!(verifies(&user(ALICE).password, ALICE_PASSWORD));
        assert!(verifies(&user(BOB).password, BOB_PASSWORD));
        assert!(verifies(client(APP).secret.as_deref().unwrap(), APP_SECRET));
        assert!(verifies(client(OTHER).secret.as_deref().unwrap(), OTHER_SECRET));
        assert!(client(SPA).secret.is_none());
        assert_eq!(uris(APP), [APP_REDIRECT]);
        assert_eq!(uris(SPA), [SPA_REDIRECT]);
        assert_eq!(uris(OTHER)[0], OTHER_REDIRECT);
    }

    #[test]
    fn flags_win_over_the_fixture() {
        let cfg = config(|s| s.listen = Some("127.0.0.1:1".parse().unwrap())).unwrap();
        assert_eq!(cfg.listen.port(), 1);
    }

    #[test]
    fn the_basic_constant_is_the_demo_apps_credentials() {
        assert_eq!(crate::oauth::basic_auth(APP, APP_SECRET).unwrap(), APP_BASIC);
    }
}
