//! grant_type=refresh_token: rotation, replay, scope narrowing, concurrency, and rotation keeping
//! no history (invariant 12 of docs/reference.md) on both stores.

use std::sync::Arc;

use authplane::store::RecordKind;
use authplane::store::memory::MemoryStore;
use reqwest::StatusCode;

use crate::helpers::*;
use crate::pg::TestDb;

#[tokio::test]
async fn refresh_rotates_and_a_rotated_token_replayed_revokes_the_grant() {
    let app = spawn_app().await;
    let first = app.app_tokens("openid profile").await;
    let r1 = s(&first, "refresh_token");
    let second = json(app.refresh_app(&r1).await).await;
    let r2 = s(&second, "refresh_token");
    let a2 = s(&second, "access_token");
    assert_ne!(r1, r2, "refresh tokens rotate");
    assert_eq!(second["scope"], "openid profile");
    assert_eq!(app.userinfo(&a2).await.status(), StatusCode::OK);
    // Replaying r1 is refused and revokes the whole grant: r2 and a2 die with it.
    let res = app.refresh_app(&r1).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(res).await["error"], "invalid_grant");
    assert_eq!(app.userinfo(&a2).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.userinfo(&s(&first, "access_token")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(json(app.refresh_app(&r2).await).await["error"], "invalid_grant");
    assert_eq!(app.introspect(&r2).await["active"], false);
}

#[tokio::test]
async fn refresh_may_narrow_but_never_widen_the_scope() {
    let app = spawn_app().await;
    let t = app.app_tokens("openid profile").await;
    let res = app
        .token(
            Some((APP, APP_SECRET)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &s(&t, "refresh_token")),
                ("scope", "openid email"),
            ],
        )
        .await;
    assert_eq!(json(res).await["error"], "invalid_scope");
    let res = app
        .token(
            Some((APP, APP_SECRET)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &s(&t, "refresh_token")),
                ("scope", "openid"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let narrowed = json(res).await;
    assert_eq!(narrowed["scope"], "openid");
    // The new refresh token keeps the grant's full scope.
    let again = json(app.refresh_app(&s(&narrowed, "refresh_token")).await).await;
    assert_eq!(again["scope"], "openid profile");
}

#[tokio::test]
async fn refresh_tokens_are_bound_to_their_client_and_expire() {
    let app = spawn_with(test_config(|s| s.refresh_token_ttl = Some("1h".parse().unwrap())), None).await;
    let session = app.login().await;
    let code = app.code(&session, SPA, SPA_REDIRECT, "openid").await;
    let res = app
        .token(
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", SPA),
                ("code", &code),
                ("redirect_uri", SPA_REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    let spa = json(res).await;
    // demo-app cannot use demo-spa's refresh token.
    assert_eq!(
        json(app.refresh_app(&s(&spa, "refresh_token")).await).await["error"],
        "invalid_grant"
    );
    let t = app.app_tokens("openid").await;
    app.advance(std::time::Duration::from_secs(3601));
    assert_eq!(
        json(app.refresh_app(&s(&t, "refresh_token")).await).await["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn fifty_concurrent_refreshes_give_exactly_one_success() {
    let app = spawn_app().await;
    let t = app.app_tokens("openid").await;
    let refresh = s(&t, "refresh_token");
    let results = futures::future::join_all((0..50).map(|_| app.refresh_app(&refresh))).await;
    let statuses: Vec<_> = results.iter().map(|r| r.status()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::BAD_REQUEST)
    );
}

/// Invariant 12 of docs/reference.md through the API: the record counts of each kind after `n` rotations (once the
/// access tokens they issued have expired and been swept) equal those after one, and replaying
/// the first token still revokes the grant (invariant 4 of docs/reference.md). `counts` reads the store's records by
/// kind, in [`RecordKind::ALL`] order.
async fn rotation_leaves_no_record_behind<F, Fut>(app: &TestApp, counts: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<usize>>,
{
    let first = app.app_tokens("openid").await;
    let r1 = s(&first, "refresh_token");
    let mut latest = s(&json(app.refresh_app(&r1).await).await, "refresh_token");
    let settle = || async {
        // Past every access token's lifetime, well within the grant's.
        app.advance(std::time::Duration::from_secs(16 * 60));
        app.sweeper.sweep_once(app.clock.now()).await.unwrap();
    };
    settle().await;
    let after_one = counts().await;
    assert_eq!(after_one[kind_index(RecordKind::RefreshTokens)], 1, "{after_one:?}");
    assert_eq!(after_one[kind_index(RecordKind::Grants)], 1, "{after_one:?}");
    for _ in 0..25 {
        let res = app.refresh_app(&latest).await;
        assert_eq!(res.status(), StatusCode::OK);
        latest = s(&json(res).await, "refresh_token");
    }
    settle().await;
    assert_eq!(counts().await, after_one, "kinds in RecordKind::ALL order");
    assert_eq!(app.introspect(&latest).await["active"], true);
    assert_eq!(app.introspect(&r1).await["active"], false);
    // The first token's record is long gone, and its replay is still recognised.
    let res = app.refresh_app(&r1).await;
    assert_eq!(json(res).await["error"], "invalid_grant");
    assert_eq!(app.introspect(&latest).await["active"], false);
    assert_eq!(json(app.refresh_app(&latest).await).await["error"], "invalid_grant");
}

fn kind_index(kind: RecordKind) -> usize {
    RecordKind::ALL.iter().position(|k| *k == kind).unwrap()
}

#[tokio::test]
async fn rotation_leaves_no_record_behind_in_memory() {
    let memory = Arc::new(MemoryStore::new());
    let app = spawn_with(test_config(|_| {}), Some(memory.clone())).await;
    rotation_leaves_no_record_behind(&app, || async { RecordKind::ALL.map(|k| memory.len(k)).to_vec() }).await;
}

#[tokio::test]
async fn rotation_leaves_no_row_behind_in_postgres() {
    let db = TestDb::new().await;
    let app = db.spawn(|_| {}).await;
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    let driver = tokio::spawn(conn);
    rotation_leaves_no_record_behind(&app, || async {
        let mut out = Vec::new();
        for kind in RecordKind::ALL {
            let row = client
                .query_one(&format!("SELECT count(*) FROM {}", kind.as_str()), &[])
                .await
                .unwrap();
            out.push(usize::try_from(row.get::<_, i64>(0)).unwrap());
        }
        out
    })
    .await;
    drop(client);
    let _ = driver.await;
}

/// A token of a known family that was never issued (a holder of the family secret crafting a
/// generation) is refused and revokes the grant; a value that names no family is just unknown.
#[tokio::test]
async fn a_crafted_generation_revokes_and_garbage_does_not() {
    let app = spawn_app().await;
    let t = app.app_tokens("openid").await;
    let r = s(&t, "refresh_token");
    let junk = format!("{}.1.{}", "A".repeat(43), "B".repeat(43));
    assert_eq!(json(app.refresh_app(&junk).await).await["error"], "invalid_grant");
    assert_eq!(
        json(app.refresh_app("not-a-token").await).await["error"],
        "invalid_grant"
    );
    assert_eq!(
        app.introspect(&r).await["active"],
        true,
        "unrelated values revoke nothing"
    );
    let family = r.split('.').next().unwrap();
    let crafted = format!("{family}.7.{}", "C".repeat(43));
    assert_eq!(json(app.refresh_app(&crafted).await).await["error"], "invalid_grant");
    assert_eq!(app.introspect(&r).await["active"], false);
    assert_eq!(
        app.userinfo(&s(&t, "access_token")).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// RFC 7009: revoking a rotated refresh token revokes its grant, as revoking the current one does.
#[tokio::test]
async fn revoking_a_rotated_refresh_token_revokes_the_grant() {
    let app = spawn_app().await;
    let t = app.app_tokens("openid").await;
    let r1 = s(&t, "refresh_token");
    let next = json(app.refresh_app(&r1).await).await;
    assert_eq!(app.revoke((APP, APP_SECRET), &r1).await.status(), StatusCode::OK);
    assert_eq!(app.introspect(&s(&next, "refresh_token")).await["active"], false);
    assert_eq!(
        app.userinfo(&s(&next, "access_token")).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
