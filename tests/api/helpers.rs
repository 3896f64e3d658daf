//! The test kit (`testkit/`): `spawn_app()` for a real server on 127.0.0.1:0 with the fixture's
//! users and clients and a manual clock, the fixture's credentials, and helpers that speak the
//! protocol. Re-exported here so that every area module reads `use crate::helpers::*`.

pub use authplane_testkit::*;

/// An OAuth error answer's status and `error`.
pub async fn error_of(res: reqwest::Response) -> (reqwest::StatusCode, String) {
    let status = res.status();
    (status, s(&json(res).await, "error"))
}

/// The server's discovery document.
pub async fn discovery(app: &TestApp) -> serde_json::Value {
    let res = app.client.get(app.url("/.well-known/openid-configuration"));
    json(res.send().await.unwrap()).await
}

/// The `issuer` of the server's discovery document.
pub async fn issuer(app: &TestApp) -> String {
    s(&discovery(app).await, "issuer")
}

/// `authplane_tokens_issued_total` of one grant type, or of all of them.
pub fn tokens_issued(metrics: &str, grant: Option<&str>) -> f64 {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("authplane_tokens_issued_total{"))
        .filter(|l| grant.is_none_or(|g| l.starts_with(&format!("grant_type=\"{g}\"}}"))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls the health document until `pred` holds (bounded; the events are internal counters).
pub async fn until_queue(app: &TestApp, route: &str, pred: impl Fn(&serde_json::Value) -> bool) {
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let report = serde_json::to_value(app.state.health.report().await).unwrap();
            if pred(&report["queues"][route]) {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("queue state reached");
}
