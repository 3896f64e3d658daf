//! The store contract, run against both implementations: the atomic operations the protocol
//! rests on (consume once, rotate once, revoke a grant, tombstones), the purge cascade and the
//! batched expiry sweep.

use std::sync::Arc;
use std::time::Duration;

use authplane::crypto::{generate_grant_id, generate_token};
use authplane::domain::{Resources, Scope, Timestamp};
use authplane::jose::Alg;
use authplane::store::memory::MemoryStore;
use authplane::store::*;

use crate::pg::TestDb;

fn now() -> Timestamp {
    Timestamp::from_millis(1_800_000_000_000)
}

fn scope() -> Scope {
    Scope::parse("openid profile").unwrap()
}

/// Non-empty, so that every store shows it keeps a record's resources.
fn resources() -> Resources {
    Resources::parse(&["https://api.example.test", "urn:example:billing"]).unwrap()
}

fn code(grant: authplane::domain::GrantId) -> CodeRecord {
    CodeRecord {
        dpop_jkt: Some("thumbprint-0".into()),
        resources: resources(),
        hash: generate_token().hash,
        client_id: "c".into(),
        redirect_uri: "http://x/cb".into(),
        redirect_uri_given: true,
        sub: "u".into(),
        scope: scope(),
        challenge: authplane::domain::CodeChallenge::parse(&"a".repeat(43)),
        grant_id: grant,
        auth_time: now(),
        expires_at: now().plus(Duration::from_secs(60)),
        consumed: false,
        nonce: Some("n-0S6_WzA2Mj".into()),
        sid: Some("sid-1".into()),
    }
}

fn grant() -> GrantRecord {
    GrantRecord {
        resources: resources(),
        id: generate_grant_id(),
        client_id: "c".into(),
        sub: "u".into(),
        scope: scope(),
        created_at: now(),
        expires_at: now().plus(Duration::from_secs(3600)),
        revoked_at: None,
        auth_time: Some(now()),
        sid: Some("sid-1".into()),
    }
}

fn access(g: &GrantRecord) -> AccessTokenRecord {
    AccessTokenRecord {
        jkt: Some("thumbprint-1".into()),
        resources: resources(),
        hash: generate_token().hash,
        client_id: g.client_id.clone(),
        sub: Some(g.sub.clone()),
        scope: g.scope.clone(),
        grant_id: Some(g.id),
        issued_at: now(),
        expires_at: now().plus(Duration::from_secs(900)),
        revoked_at: None,
    }
}

/// The first token of a new family of grant `g`.
fn refresh(g: &GrantRecord) -> RefreshTokenRecord {
    RefreshTokenRecord {
        jkt: Some("thumbprint-1".into()),
        resources: resources(),
        family: generate_token().hash,
        hash: generate_token().hash,
        generation: 1,
        client_id: g.client_id.clone(),
        sub: g.sub.clone(),
        scope: g.scope.clone(),
        grant_id: g.id,
        issued_at: now(),
        expires_at: g.expires_at,
        auth_time: g.auth_time,
        sid: g.sid.clone(),
    }
}

/// The successor of `r` in its family.
fn next(r: &RefreshTokenRecord) -> RefreshTokenRecord {
    RefreshTokenRecord {
        jkt: Some("thumbprint-1".into()),
        resources: resources(),
        hash: generate_token().hash,
        generation: r.generation + 1,
        issued_at: r.issued_at.plus(Duration::from_secs(1)),
        ..r.clone()
    }
}

async fn records_roundtrip(s: Arc<dyn Store>) {
    let c = code(generate_grant_id());
    s.insert_code(&c).await.unwrap();
    let g = grant();
    let (a, r) = (access(&g), refresh(&g));
    s.insert_grant_tokens(&g, &a, Some(&r)).await.unwrap();
    let got = s.get_access_token(&a.hash).await.unwrap().unwrap();
    assert_eq!(
        (got.sub.as_deref(), got.grant_id, got.expires_at),
        (Some("u"), Some(g.id), a.expires_at)
    );
    assert_eq!((&got.scope, &got.resources), (&scope(), &resources()));
    assert_eq!(got.jkt, a.jkt);
    let got = s.get_refresh_token(&r.family).await.unwrap().unwrap();
    assert_eq!((&got.resources, &got.jkt), (&resources(), &r.jkt));
    assert_eq!(
        (got.grant_id, got.hash, got.generation, got.expires_at),
        (g.id, r.hash, 1, g.expires_at)
    );
    assert_eq!((got.auth_time, got.sid.as_deref()), (g.auth_time, Some("sid-1")));
    assert!(s.get_refresh_token(&r.hash).await.unwrap().is_none(), "keyed by family");
    let got = s.get_grant(&g.id).await.unwrap().unwrap();
    assert_eq!((&*got.client_id, got.revoked_at), ("c", None));
    assert_eq!((got.auth_time, got.sid.as_deref()), (g.auth_time, Some("sid-1")));
    assert_eq!(got.resources, resources());
    let ConsumeOutcome::Consumed(got) = s.consume_code(&c.hash).await.unwrap() else {
        panic!("the code was not consumed");
    };
    assert_eq!((got.nonce, got.sid.as_deref()), (c.nonce.clone(), Some("sid-1")));
    assert_eq!((&got.resources, &got.dpop_jkt), (&resources(), &c.dpop_jkt));
    let sess = SessionRecord {
        hash: generate_token().hash,
        sub: "u".into(),
        auth_time: now(),
        expires_at: now(),
    };
    s.insert_session(&sess).await.unwrap();
    assert_eq!(s.get_session(&sess.hash).await.unwrap().unwrap().sub, "u".into());
    assert!(s.delete_session(&sess.hash).await.unwrap());
    assert!(s.get_session(&sess.hash).await.unwrap().is_none());
    assert!(!s.delete_session(&sess.hash).await.unwrap());
    assert!(s.get_access_token(&generate_token().hash).await.unwrap().is_none());
    s.ping().await.unwrap();
}

async fn a_code_is_consumed_exactly_once(s: Arc<dyn Store>) {
    let c = code(generate_grant_id());
    s.insert_code(&c).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.consume_code(&c.hash).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            ConsumeOutcome::Consumed(r) => {
                won += 1;
                assert_eq!((&*r.client_id, r.challenge.is_some()), ("c", true));
            }
            ConsumeOutcome::AlreadyConsumed(r) => assert_eq!(r.grant_id, c.grant_id),
            ConsumeOutcome::NotFound | ConsumeOutcome::Refused(_) => panic!("the code exists"),
        }
    }
    assert_eq!(won, 1);
    assert!(matches!(
        s.consume_code(&generate_token().hash).await.unwrap(),
        ConsumeOutcome::NotFound
    ));
}

async fn a_refresh_token_rotates_exactly_once(s: Arc<dyn Store>) {
    let g = grant();
    let r = refresh(&g);
    s.insert_grant_tokens(&g, &access(&g), Some(&r)).await.unwrap();
    let candidates: Vec<RefreshTokenRecord> = (0..50).map(|_| next(&r)).collect();
    let tasks: Vec<_> = candidates
        .iter()
        .cloned()
        .map(|n| {
            let (s, g) = (Arc::clone(&s), g.clone());
            tokio::spawn(async move { s.rotate_refresh_token(&r.hash, &access(&g), &n).await.unwrap() })
        })
        .collect();
    let mut won = Vec::new();
    for (t, n) in tasks.into_iter().zip(&candidates) {
        match t.await.unwrap() {
            RotateOutcome::Rotated => won.push(n.hash),
            RotateOutcome::AlreadyRotated => {}
            RotateOutcome::NotFound => panic!("the token exists"),
        }
    }
    assert_eq!(won.len(), 1);
    let got = s.get_refresh_token(&r.family).await.unwrap().unwrap();
    assert_eq!((got.hash, got.generation), (won[0], 2), "the winner's token is current");
    // The rotated token can no longer rotate: its family has another current token.
    assert!(matches!(
        s.rotate_refresh_token(&r.hash, &access(&g), &next(&got)).await.unwrap(),
        RotateOutcome::AlreadyRotated
    ));
    let unknown = s
        .rotate_refresh_token(&generate_token().hash, &access(&g), &refresh(&g))
        .await
        .unwrap();
    assert!(matches!(unknown, RotateOutcome::NotFound));
}

/// Invariant 12 of docs/reference.md: a rotation replaces the family's record and adds only the new access token; the
/// replaced token leaves nothing behind.
async fn rotation_keeps_no_history(s: Arc<dyn Store>) {
    let g = grant();
    let mut r = refresh(&g);
    s.insert_grant_tokens(&g, &access(&g), Some(&r)).await.unwrap();
    let first = r.clone();
    for _ in 0..20 {
        let n = next(&r);
        assert!(matches!(
            s.rotate_refresh_token(&r.hash, &access(&g), &n).await.unwrap(),
            RotateOutcome::Rotated
        ));
        r = n;
    }
    let got = s.get_refresh_token(&first.family).await.unwrap().unwrap();
    assert_eq!((got.hash, got.generation, got.issued_at), (r.hash, 21, r.issued_at));
    assert_eq!(got.expires_at, g.expires_at, "rotation never extends the grant");
    // Every access token expires before the grant: once they are swept, the grant holds what it
    // held after its first token. One refresh record, whatever the number of rotations.
    let later = now().plus(Duration::from_secs(1800));
    assert_eq!(
        s.delete_expired(RecordKind::AccessTokens, later, 100).await.unwrap(),
        21
    );
    assert_eq!(
        s.delete_expired(RecordKind::RefreshTokens, later, 100).await.unwrap(),
        0
    );
    assert_eq!(
        s.purge_grant_tokens(&g.id, 100).await.unwrap(),
        vec![first.family],
        "the grant's only token left is its refresh family"
    );
}

async fn revoking_a_grant_and_tombstones(s: Arc<dyn Store>) {
    let g = grant();
    s.insert_grant_tokens(&g, &access(&g), None).await.unwrap();
    s.revoke_grant(&g, now()).await.unwrap();
    assert_eq!(s.get_grant(&g.id).await.unwrap().unwrap().revoked_at, Some(now()));
    // Revoking again keeps the first revocation time.
    s.revoke_grant(&g, now().plus(Duration::from_secs(5))).await.unwrap();
    assert_eq!(s.get_grant(&g.id).await.unwrap().unwrap().revoked_at, Some(now()));
    // A replay that races the first redemption leaves a revoked tombstone the redemption keeps.
    let t = grant();
    s.revoke_grant(&t, now()).await.unwrap();
    s.insert_grant_tokens(&t, &access(&t), Some(&refresh(&t)))
        .await
        .unwrap();
    assert!(s.get_grant(&t.id).await.unwrap().unwrap().revoked_at.is_some());
    // Revoking one access token.
    let a = access(&g);
    s.insert_access_token(&a).await.unwrap();
    assert!(s.revoke_access_token(&a.hash, now()).await.unwrap());
    assert!(!s.revoke_access_token(&a.hash, now()).await.unwrap());
    assert_eq!(
        s.get_access_token(&a.hash).await.unwrap().unwrap().revoked_at,
        Some(now())
    );
}

async fn purging_a_grant_deletes_its_tokens_in_batches(s: Arc<dyn Store>) {
    let g = grant();
    let first = refresh(&g);
    s.insert_grant_tokens(&g, &access(&g), Some(&first)).await.unwrap();
    let mut current = first.clone();
    for _ in 0..4 {
        let n = next(&current);
        assert!(matches!(
            s.rotate_refresh_token(&current.hash, &access(&g), &n).await.unwrap(),
            RotateOutcome::Rotated
        ));
        current = n;
    }
    let other = grant();
    let keep = access(&other);
    s.insert_grant_tokens(&other, &keep, None).await.unwrap();
    let mut purged = 0;
    loop {
        let batch = s.purge_grant_tokens(&g.id, 3).await.unwrap();
        assert!(batch.len() <= 3);
        purged += batch.len();
        if batch.len() < 3 {
            break;
        }
    }
    assert_eq!(purged, 6, "5 access tokens and the one refresh family");
    assert!(s.get_refresh_token(&first.family).await.unwrap().is_none());
    assert!(
        s.get_access_token(&keep.hash).await.unwrap().is_some(),
        "other grants are untouched"
    );
}

async fn expired_records_are_deleted_in_batches(s: Arc<dyn Store>) {
    for i in 0..25 {
        let t = now().plus(Duration::from_secs(i));
        let sess = SessionRecord {
            hash: generate_token().hash,
            sub: "u".into(),
            auth_time: t,
            expires_at: t,
        };
        s.insert_session(&sess).await.unwrap();
    }
    let live = SessionRecord {
        hash: generate_token().hash,
        sub: "u".into(),
        auth_time: now(),
        expires_at: now().plus(Duration::from_secs(3600)),
    };
    s.insert_session(&live).await.unwrap();
    let at = now().plus(Duration::from_secs(100));
    assert_eq!(s.delete_expired(RecordKind::Sessions, at, 10).await.unwrap(), 10);
    assert_eq!(s.delete_expired(RecordKind::Sessions, at, 10).await.unwrap(), 10);
    assert_eq!(s.delete_expired(RecordKind::Sessions, at, 10).await.unwrap(), 5);
    assert_eq!(s.delete_expired(RecordKind::Sessions, at, 10).await.unwrap(), 0);
    assert!(s.get_session(&live.hash).await.unwrap().is_some());
    let g = grant();
    s.insert_grant_tokens(&g, &access(&g), Some(&refresh(&g)))
        .await
        .unwrap();
    let later = now().plus(Duration::from_secs(7200));
    for kind in [RecordKind::AccessTokens, RecordKind::RefreshTokens, RecordKind::Grants] {
        assert!(s.delete_expired(kind, later, 100).await.unwrap() >= 1, "{kind:?}");
    }
}

fn signing_key(alg: Alg, generation: i64, kid: &str) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        alg,
        generation,
        created_at: now(),
        active_from: now().plus(Duration::from_secs(60)),
        withdrawn_at: None,
        public_jwk: format!("{{\"kid\":\"{kid}\"}}"),
        sealed_private_key: vec![1, 2, 3],
    }
}

/// One successor per generation however many nodes rotate at once; times only move one way.
async fn signing_keys_have_one_successor_per_generation(s: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                s.insert_signing_key(&signing_key(Alg::ES256, 0, &format!("k{i}")))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1, "exactly one insert of generation 0 wins");
    assert!(
        s.insert_signing_key(&signing_key(Alg::RS256, 0, "r0")).await.unwrap(),
        "per algorithm"
    );
    let keys = s.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    let es = keys.iter().find(|k| k.alg == Alg::ES256).unwrap();
    assert_eq!((es.generation, &es.sealed_private_key[..]), (0, &[1u8, 2, 3][..]));
    let kid = es.kid.clone();
    let earlier = now();
    s.update_signing_key(&kid, Some(earlier), None).await.unwrap();
    s.update_signing_key(&kid, Some(now().plus(Duration::from_secs(999))), Some(earlier))
        .await
        .unwrap();
    s.update_signing_key(&kid, None, Some(earlier.plus(Duration::from_secs(5))))
        .await
        .unwrap();
    let es = s
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.kid == kid)
        .unwrap();
    assert_eq!(es.active_from, earlier, "active_from only moves earlier");
    assert_eq!(es.withdrawn_at, Some(earlier), "a withdrawal is never undone");
    s.delete_signing_key(&kid).await.unwrap();
    assert_eq!(s.signing_keys().await.unwrap().len(), 1);
}

/// Consent per user and client, replaced as a whole.
async fn consents_are_kept_per_user_and_client(s: Arc<dyn Store>) {
    assert!(s.get_consent("u", "c").await.unwrap().is_none());
    let consent = |scope: &str| ConsentRecord {
        sub: "u".into(),
        client_id: "c".into(),
        scope: Scope::parse(scope).unwrap(),
        granted_at: now(),
    };
    s.put_consent(&consent("openid")).await.unwrap();
    s.put_consent(&consent("openid profile")).await.unwrap();
    let got = s.get_consent("u", "c").await.unwrap().unwrap();
    assert_eq!(got.scope, Scope::parse("openid profile").unwrap());
    assert!(s.get_consent("u", "other").await.unwrap().is_none());
    assert!(s.get_consent("v", "c").await.unwrap().is_none());
}

fn user(sub: &str, username: &str) -> UserRecord {
    UserRecord {
        sub: sub.into(),
        username: username.into(),
        password_hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        name: Some("N".into()),
        email: None,
        email_verified: false,
        disabled: false,
        not_before: now(),
        created_at: now(),
        updated_at: now(),
    }
}

/// Runtime users: unique by sub and username, read by either, paged by sub, updated (never the
/// username), deleted with their consents.
async fn users_are_unique_paged_and_deleted_with_their_consents(s: Arc<dyn Store>) {
    for (sub, name) in [("u-3", "c"), ("u-1", "a"), ("u-2", "b")] {
        assert!(s.insert_user(&user(sub, name)).await.unwrap());
    }
    assert!(!s.insert_user(&user("u-1", "z")).await.unwrap(), "sub taken");
    assert!(!s.insert_user(&user("u-9", "a")).await.unwrap(), "username taken");
    let by_name = s.get_user(UserKey::Username("b")).await.unwrap().unwrap();
    assert_eq!(&*by_name.sub, "u-2");
    assert!(s.get_user(UserKey::Sub("u-9")).await.unwrap().is_none());
    let page = s.list_users(None, 2).await.unwrap();
    assert_eq!(page.iter().map(|u| &*u.sub).collect::<Vec<_>>(), ["u-1", "u-2"]);
    let page = s.list_users(Some("u-2"), 2).await.unwrap();
    assert_eq!(page.iter().map(|u| &*u.sub).collect::<Vec<_>>(), ["u-3"]);

    // Each change sets only its own fields: a disabling and a rename made at once both stay.
    let later = now().plus(Duration::from_secs(1));
    let disable = UserUpdate {
        disabled: Some(true),
        not_before: Some(later),
        ..UserUpdate::at(later)
    };
    let got = s.update_user("u-2", &disable).await.unwrap().unwrap();
    assert!(got.disabled && got.not_before == later);
    let rename = UserUpdate {
        name: Some(None),
        email: Some(Some("b@example.com".into())),
        // An older instant never moves not_before back.
        not_before: Some(now()),
        ..UserUpdate::at(later)
    };
    let got = s.update_user("u-2", &rename).await.unwrap().unwrap();
    assert_eq!((got.name, got.email.as_deref()), (None, Some("b@example.com")));
    assert!(got.disabled, "a change of other fields keeps the disabling");
    assert_eq!(got.not_before, later, "not_before never moves back");
    assert_eq!(got.username, "b", "the username never changes");
    assert_eq!(got.password_hash, user("u-2", "b").password_hash);
    let stored = s.get_user(UserKey::Sub("u-2")).await.unwrap().unwrap();
    assert!(stored.disabled && stored.email.as_deref() == Some("b@example.com"));
    assert!(s.update_user("u-9", &disable).await.unwrap().is_none());

    // Pages follow byte order whatever the database's collation ('B' < '_' < 'a').
    for (sub, name) in [("u-_", "d"), ("u-B", "e"), ("u-a", "f")] {
        assert!(s.insert_user(&user(sub, name)).await.unwrap());
    }
    let all = s.list_users(None, 10).await.unwrap();
    let subs: Vec<&str> = all.iter().map(|u| &*u.sub).collect();
    assert_eq!(subs, ["u-1", "u-2", "u-3", "u-B", "u-_", "u-a"]);
    let page = s.list_users(Some("u-B"), 1).await.unwrap();
    assert_eq!(&*page[0].sub, "u-_");

    let consent = ConsentRecord {
        sub: "u-2".into(),
        client_id: "c".into(),
        scope: scope(),
        granted_at: now(),
    };
    s.put_consent(&consent).await.unwrap();
    assert!(s.delete_user("u-2").await.unwrap());
    assert!(!s.delete_user("u-2").await.unwrap());
    assert!(s.get_user(UserKey::Username("b")).await.unwrap().is_none());
    assert!(
        s.get_consent("u-2", "c").await.unwrap().is_none(),
        "consents go with the user"
    );
    assert!(
        s.insert_user(&user("u-4", "b")).await.unwrap(),
        "the username is free again"
    );
}

/// Registered clients: unique ids, paged, updated, deleted with the consents given to them.
async fn clients_are_unique_paged_and_deleted(s: Arc<dyn Store>) {
    let client = |id: &str| ClientRecord {
        client_id: id.into(),
        metadata: format!("{{\"client_id\":\"{id}\"}}"),
        registration_token: Some(generate_token().hash),
        created_at: now(),
        updated_at: now(),
    };
    for id in ["dyn-b", "dyn-a"] {
        assert!(s.insert_client(&client(id)).await.unwrap());
    }
    assert!(!s.insert_client(&client("dyn-a")).await.unwrap());
    let page = s.list_clients(None, 10).await.unwrap();
    assert_eq!(
        page.iter().map(|c| &*c.client_id).collect::<Vec<_>>(),
        ["dyn-a", "dyn-b"]
    );
    let mut changed = client("dyn-a");
    changed.metadata = "{}".into();
    changed.registration_token = None;
    assert!(s.update_client(&changed).await.unwrap());
    let got = s.get_client("dyn-a").await.unwrap().unwrap();
    assert_eq!(got.metadata, "{}");
    assert!(got.registration_token.is_none());
    let consent = ConsentRecord {
        sub: "u".into(),
        client_id: "dyn-a".into(),
        scope: scope(),
        granted_at: now(),
    };
    s.put_consent(&consent).await.unwrap();
    assert!(s.delete_client("dyn-a").await.unwrap());
    assert!(!s.delete_client("dyn-a").await.unwrap());
    assert!(s.get_client("dyn-a").await.unwrap().is_none());
    assert!(s.get_consent("u", "dyn-a").await.unwrap().is_none());
}

/// A user's or client's cascade revokes their active grants of logins up to the change: not the
/// grants of later logins, but a grant made later from an old login's session (on a node that had
/// not heard of the change yet).
async fn an_owners_grants_are_revoked_up_to_the_change(s: Arc<dyn Store>) {
    let mut old = grant();
    old.sub = "owner".into();
    let mut later = grant();
    later.sub = "owner".into();
    later.created_at = now().plus(Duration::from_secs(10));
    later.auth_time = Some(later.created_at);
    let mut stale = grant();
    stale.sub = "owner".into();
    stale.created_at = now().plus(Duration::from_secs(10));
    let other = grant();
    for g in [&old, &later, &stale, &other] {
        s.insert_grant_tokens(g, &access(g), Some(&refresh(g))).await.unwrap();
    }
    let mut revoked = s
        .revoke_grants_of(GrantOwner::User("owner"), now().plus(Duration::from_secs(5)), now())
        .await
        .unwrap();
    revoked.sort();
    let mut expected = vec![old.id, stale.id];
    expected.sort();
    assert_eq!(revoked, expected);
    assert!(s.get_grant(&old.id).await.unwrap().unwrap().revoked_at.is_some());
    assert!(s.get_grant(&stale.id).await.unwrap().unwrap().revoked_at.is_some());
    assert!(s.get_grant(&later.id).await.unwrap().unwrap().revoked_at.is_none());
    assert!(s.get_grant(&other.id).await.unwrap().unwrap().revoked_at.is_none());
    // The later grant is still found by a later cascade.
    let revoked = s
        .revoke_grants_of(GrantOwner::User("owner"), now().plus(Duration::from_secs(20)), now())
        .await
        .unwrap();
    assert_eq!(revoked, vec![later.id]);
    let revoked = s
        .revoke_grants_of(GrantOwner::Client("c"), now().plus(Duration::from_secs(20)), now())
        .await
        .unwrap();
    assert_eq!(revoked, vec![other.id], "the client's remaining active grant");
}

/// A token issued without a write (a client_credentials JWT) is revoked by writing a revoked
/// record of it; revoking it again keeps the first time, and the record goes at its expiry.
async fn an_unstored_access_token_is_revoked_by_a_record(s: Arc<dyn Store>) {
    let token = AccessTokenRecord {
        jkt: Some("thumbprint-1".into()),
        sub: None,
        grant_id: None,
        expires_at: now().plus(Duration::from_secs(60)),
        ..access(&grant())
    };
    assert!(s.get_access_token(&token.hash).await.unwrap().is_none());
    s.revoke_unstored_access_token(&token, now()).await.unwrap();
    let got = s.get_access_token(&token.hash).await.unwrap().unwrap();
    assert_eq!(
        (got.revoked_at, &got.resources, got.expires_at),
        (Some(now()), &resources(), token.expires_at)
    );
    let later = now().plus(Duration::from_secs(5));
    s.revoke_unstored_access_token(&token, later).await.unwrap();
    assert_eq!(
        s.get_access_token(&token.hash).await.unwrap().unwrap().revoked_at,
        Some(now())
    );
    let swept = s
        .delete_expired(
            RecordKind::AccessTokens,
            token.expires_at.plus(Duration::from_secs(1)),
            100,
        )
        .await
        .unwrap();
    assert_eq!(swept, 1);
    assert!(s.get_access_token(&token.hash).await.unwrap().is_none());
}

/// A client assertion's jti is spent once; the record goes when the assertion expires.
async fn a_jti_is_spent_once(s: Arc<dyn Store>) {
    let jti = UsedJtiRecord {
        hash: generate_token().hash,
        expires_at: now().plus(Duration::from_secs(300)),
    };
    let spends = futures::future::join_all((0..20).map(|_| s.spend_jti(&jti))).await;
    assert_eq!(spends.into_iter().filter(|r| *r.as_ref().unwrap()).count(), 1);
    let later = now().plus(Duration::from_secs(301));
    assert_eq!(s.delete_expired(RecordKind::UsedJtis, later, 100).await.unwrap(), 1);
}

/// A conditional consume that its check refuses leaves the code as it was; of concurrent ones
/// that pass, exactly one consumes it; a consumed code is a replay whatever the check says.
async fn a_refused_conditional_consume_leaves_the_code(s: Arc<dyn Store>) {
    let c = code(generate_grant_id());
    s.insert_code(&c).await.unwrap();
    let refuse = |_: &CodeRecord| false;
    for _ in 0..3 {
        let ConsumeOutcome::Refused(r) = s.consume_code_if(&c.hash, &refuse).await.unwrap() else {
            panic!("refused");
        };
        assert_eq!((r.grant_id, r.consumed), (c.grant_id, false));
    }
    let accept = |r: &CodeRecord| r.client_id.as_ref() == "c";
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.consume_code_if(&c.hash, &accept).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            ConsumeOutcome::Consumed(r) => {
                won += 1;
                assert_eq!(r.grant_id, c.grant_id);
            }
            ConsumeOutcome::AlreadyConsumed(_) => {}
            ConsumeOutcome::NotFound | ConsumeOutcome::Refused(_) => panic!("the code exists and passes"),
        }
    }
    assert_eq!(won, 1);
    assert!(matches!(
        s.consume_code_if(&c.hash, &refuse).await.unwrap(),
        ConsumeOutcome::AlreadyConsumed(_)
    ));
    assert!(matches!(
        s.consume_code_if(&generate_token().hash, &accept).await.unwrap(),
        ConsumeOutcome::NotFound
    ));
}

/// A pushed request under way gets new parameters and a later expiry while unused (the sweeper
/// keeps it until then), and none once used.
async fn a_pushed_request_is_resumed_while_unused(s: Arc<dyn Store>) {
    let p = PushedRequestRecord {
        hash: generate_token().hash,
        client_id: "c".into(),
        params: "prompt=login+consent".into(),
        expires_at: now().plus(Duration::from_secs(60)),
        consumed: false,
    };
    s.insert_pushed_request(&p).await.unwrap();
    let resumed = PushedRequestRecord {
        params: "prompt=consent".into(),
        expires_at: now().plus(Duration::from_secs(600)),
        ..p.clone()
    };
    assert!(s.resume_pushed_request(&resumed).await.unwrap());
    let got = s.get_pushed_request(&p.hash).await.unwrap().unwrap();
    assert_eq!(
        (got.params.as_str(), got.expires_at, got.consumed),
        ("prompt=consent", resumed.expires_at, false)
    );
    let past_first = now().plus(Duration::from_secs(120));
    s.delete_expired(RecordKind::PushedRequests, past_first, 100)
        .await
        .unwrap();
    assert!(
        s.get_pushed_request(&p.hash).await.unwrap().is_some(),
        "kept until its new expiry"
    );
    assert!(s.consume_pushed_request(&p.hash).await.unwrap());
    assert!(!s.resume_pushed_request(&resumed).await.unwrap(), "used");
    assert!(s.get_pushed_request(&p.hash).await.unwrap().unwrap().consumed);
    assert!(!s.consume_pushed_request(&p.hash).await.unwrap());
}

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(std::sync::Arc::new(super::MemoryStore::new())).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = super::TestDb::new().await;
                    super::$name(db.store().await).await;
                }
            )*
        }
    };
}

both_stores!(
    records_roundtrip,
    a_code_is_consumed_exactly_once,
    a_refresh_token_rotates_exactly_once,
    rotation_keeps_no_history,
    revoking_a_grant_and_tombstones,
    purging_a_grant_deletes_its_tokens_in_batches,
    expired_records_are_deleted_in_batches,
    signing_keys_have_one_successor_per_generation,
    consents_are_kept_per_user_and_client,
    users_are_unique_paged_and_deleted_with_their_consents,
    clients_are_unique_paged_and_deleted,
    an_owners_grants_are_revoked_up_to_the_change,
    an_unstored_access_token_is_revoked_by_a_record,
    a_jti_is_spent_once,
    a_refused_conditional_consume_leaves_the_code,
    a_pushed_request_is_resumed_while_unused,
);
