//! Configuration precedence (flag > environment > file > default), through the real binary.

use std::io::Write as _;
use std::process::{Command, Stdio};

fn check_config(args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authplane"));
    cmd.arg("check-config").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Do not let the developer's environment leak into the test.
    for var in [
        "AUTHPLANE_SESSION_TTL",
        "AUTHPLANE_CODE_TTL",
        "AUTHPLANE_ACCESS_TOKEN_TTL",
        "AUTHPLANE_CONFIG",
        "AUTHPLANE_ISSUER",
    ] {
        if !env.iter().any(|(k, _)| *k == var) {
            cmd.env_remove(var);
        }
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn flag_beats_environment_beats_file_beats_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.toml");
    std::fs::write(
        &file,
        "[settings]\nsession_ttl = \"3h\"\ncode_ttl = \"30s\"\naccess_token_ttl = \"5m\"\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let cfg = check_config(
        &["--config", path, "--session-ttl", "1h"],
        &[("AUTHPLANE_SESSION_TTL", "2h"), ("AUTHPLANE_CODE_TTL", "45s")],
    );
    assert_eq!(cfg["session_ttl"], "1h", "flag over environment and file");
    assert_eq!(cfg["code_ttl"], "45s", "environment over file");
    assert_eq!(cfg["access_token_ttl"], "5m", "file over default");
    assert_eq!(cfg["refresh_token_ttl"], "30days", "default");
    assert_eq!(cfg["listen"], "127.0.0.1:8080");
    // The config path itself can come from the environment.
    let cfg = check_config(&[], &[("AUTHPLANE_CONFIG", path)]);
    assert_eq!(cfg["session_ttl"], "3h");
}

#[test]
fn the_default_config_is_the_demo_config() {
    let cfg = check_config(&[], &[]);
    assert_eq!(cfg["issuer"], "http://127.0.0.1:8080");
    assert_eq!(cfg["store"], "memory");
    assert_eq!(cfg["cache_capacity"], 100_000);
}

#[test]
fn bad_configuration_fails_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[settings]\nsession_tll = \"3h\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_authplane"))
        .args(["check-config", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("session_tll"));
    let out = Command::new(env!("CARGO_BIN_EXE_authplane"))
        .args(["check-config", "--session-ttl", "soon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn hash_password_prints_a_verifiable_argon2id_hash() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_authplane"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"wonderland\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap();
    let hash = authplane::crypto::PasswordHashString::parse(phc.trim()).unwrap();
    assert!(phc.starts_with("$argon2id$"));
    assert!(hash.verify("wonderland"));
    assert!(!hash.verify("wonderland\n"));
}

/// `authplane serve` with `file` as its config: the exit status and stderr. A start-up that
/// hangs fails the test instead of hanging it.
async fn serve_with_file(file: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, file).unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_authplane"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config", path.to_str().unwrap()])
        .env_remove("AUTHPLANE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the server neither started nor refused its config within 30 s")
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn user(name: &str, sub: &str, hash: &str) -> String {
    format!("[[users]]\nusername = {name:?}\nsub = {sub:?}\npassword_hash = {hash:?}\n")
}

#[tokio::test]
async fn a_config_with_two_users_sharing_a_sub_is_refused_at_start_up() {
    let hash = authplane::crypto::hash_password("x", authplane::crypto::Argon2Params::cheap()).unwrap();
    let (code, stderr) = serve_with_file(&(user("a", "same", &hash) + &user("b", "same", &hash))).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("sub \"same\" belongs to another user"), "{stderr}");
}

#[tokio::test]
async fn a_hash_asking_for_absurd_argon2_work_is_refused_at_start_up_without_hashing() {
    // 4 GiB and 100 passes: verifying (or making the dummy hash with) these would hang the start.
    let absurd =
        "$argon2id$v=19$m=4194304,t=100,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let (code, stderr) = serve_with_file(&user("a", "s", absurd)).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("more work than a login can afford"), "{stderr}");
    let client = format!(
        "[[clients]]\nclient_id = \"c\"\nsecret_hash = {absurd:?}\nredirect_uris = []\ngrant_types = [\"client_credentials\"]\nscopes = []\n"
    );
    let (code, stderr) = serve_with_file(&client).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("more work than a login can afford"), "{stderr}");
}

/// The key-encryption key is never printed: `check-config` shows it redacted, and a malformed
/// one is refused at start-up (exit 1) with a message that does not repeat it.
#[test]
fn the_key_encryption_key_is_never_printed() {
    let kek = authplane_testkit::fixture::KEY_ENCRYPTION_KEY;
    let v = check_config(&["--key-encryption-key", kek], &[]);
    let text = v.to_string();
    assert!(!text.contains(kek), "{text}");
    let v = check_config(&[], &[("AUTHPLANE_KEY_ENCRYPTION_KEY", kek)]);
    assert!(!v.to_string().contains(kek));

    let bad = "c2hvcnQtYnV0LXNlY3JldA==";
    let out = Command::new(env!("CARGO_BIN_EXE_authplane"))
        .args(["check-config", "--key-encryption-key", bad])
        .env_remove("AUTHPLANE_KEY_ENCRYPTION_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("key_encryption_key") && !stderr.contains(bad),
        "{stderr}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_authplane"))
        .args([
            "check-config",
            "--store",
            "postgres",
            "--database-url",
            "postgres://x@127.0.0.1/x",
        ])
        .env_remove("AUTHPLANE_KEY_ENCRYPTION_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--key-encryption-key"));
}
