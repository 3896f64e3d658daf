//! `/admin/...`: the administration API (scope `admin`). JSON bodies, bounded and validated.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::http::extract::bearer_token;
use crate::service::admin::AdminService;

/// Admin bodies are small JSON documents.
pub const MAX_ADMIN_BODY: usize = 16 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    retire_now: bool,
}

/// `POST /admin/keys/rotate`, body `{"retire_now": false}` (optional).
pub async fn rotate_keys(
    State(admin): State<AdminService>,
    State(clock): State<Clock>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let caller = admin.authorize(bearer_token(req.headers())?, clock.now()).await?;
    let body = body(req).await?;
    let body: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|_| ApiError::InvalidRequest("the body must be {\"retire_now\": true|false}"))?
    };
    let keys = admin.rotate_keys(&caller, body.retire_now).await?;
    Ok(Json(json!({ "keys": keys })))
}

/// The body, at most [`MAX_ADMIN_BODY`] bytes (413 in the OAuth error format beyond).
async fn body(req: Request) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), MAX_ADMIN_BODY)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)
}
