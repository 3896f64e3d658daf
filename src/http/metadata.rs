//! Discovery: the RFC 8414 / OpenID Connect Discovery metadata document, rendered once at
//! start-up, and the JWKS (`GET /auth/jwks`), rendered at each key refresh.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::domain::Scope;
use crate::jose::Alg;
use crate::service::KeyService;
use crate::service::dpop::DPOP_ALGS;
use crate::state::WebConfig;

/// `GET /auth/jwks`: the public keys, cacheable for less than `--key-publish-ahead` so that a
/// relying party sees a successor key before it signs anything.
pub async fn jwks(State(keys): State<KeyService>, State(web): State<Arc<WebConfig>>) -> Response {
    let mut res = keys.jwks().into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={}", web.jwks_max_age)) {
        h.insert(header::CACHE_CONTROL, v);
    }
    res
}

/// `issuer` exactly as configured; endpoints below it without a doubled slash.
pub fn document(issuer: &str, scopes: &Scope) -> Value {
    let base = issuer.trim_end_matches('/');
    let at = |path: &str| format!("{base}{path}");
    let auth_methods = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"];
    // private_key_jwt assertions and DPoP proofs: the algorithms of the keys this server reads.
    let signing_algs = DPOP_ALGS.map(Alg::as_str);
    json!({
        "issuer": issuer,
        "authorization_endpoint": at("/auth/authorize"),
        "token_endpoint": at("/auth/token"),
        "userinfo_endpoint": at("/auth/userinfo"),
        "revocation_endpoint": at("/auth/revoke"),
        "introspection_endpoint": at("/auth/introspect"),
        "pushed_authorization_request_endpoint": at("/auth/par"),
        "require_pushed_authorization_requests": false,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": signing_algs,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_signing_alg_values_supported": signing_algs,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_signing_alg_values_supported": signing_algs,
        "scopes_supported": scopes.iter().collect::<Vec<_>>(),
        "claims_supported": [
            "iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "at_hash", "sid",
            "name", "email", "email_verified",
        ],
        "subject_types_supported": ["public"],
        "authorization_response_iss_parameter_supported": true,
        "jwks_uri": at("/auth/jwks"),
        "end_session_endpoint": at("/auth/end-session"),
        "registration_endpoint": at("/auth/register"),
        "id_token_signing_alg_values_supported": Alg::ALL.map(Alg::as_str),
        "request_parameter_supported": false,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
        "dpop_signing_alg_values_supported": signing_algs,
    })
}
