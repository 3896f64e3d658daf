//! The RFC 8414 authorization server metadata document, rendered once at start-up.

use serde_json::{Value, json};

use crate::domain::Scope;

/// `issuer` exactly as configured; endpoints below it without a doubled slash.
pub fn document(issuer: &str, scopes: &Scope) -> Value {
    let base = issuer.trim_end_matches('/');
    let at = |path: &str| format!("{base}{path}");
    let auth_methods = ["client_secret_basic", "client_secret_post", "none"];
    json!({
        "issuer": issuer,
        "authorization_endpoint": at("/auth/authorize"),
        "token_endpoint": at("/auth/token"),
        "userinfo_endpoint": at("/auth/userinfo"),
        "revocation_endpoint": at("/auth/revoke"),
        "introspection_endpoint": at("/auth/introspect"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "scopes_supported": scopes.iter().collect::<Vec<_>>(),
        "claims_supported": ["sub", "name", "email", "email_verified"],
        "subject_types_supported": ["public"],
        "authorization_response_iss_parameter_supported": true,
    })
}
