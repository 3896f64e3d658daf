//! `/admin/...`: the administration API (scope `admin`), and dynamic client registration
//! (`/auth/register`). JSON bodies, bounded and validated.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::http::extract::{bearer_token, read_body};
use crate::service::admin::{Admin, AdminService, ClientView, DEFAULT_PAGE, NewUser, UserChanges, UserView, validate};
use crate::service::registration::{ClientMetadata, Registered, RegistrationService};
use crate::state::AppState;

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
    AdminCaller(caller): AdminCaller,
    State(admin): State<AdminService>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
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
    read_body(req.into_body(), MAX_ADMIN_BODY).await
}

/// A JSON body of at most [`MAX_ADMIN_BODY`] bytes, as `T`; anything else is a 400 that says
/// what is wrong (serde names the field and the expected type), never a 500.
async fn json_body<T: serde::de::DeserializeOwned>(req: Request) -> Result<T, ApiError> {
    let bytes = body(req).await?;
    serde_json::from_slice(&bytes).map_err(|e| body_error(&e))
}

/// What is wrong with a JSON body, without the values it holds: serde's message names the field
/// or the expected type, but may quote the value sent (a password where a boolean belongs), so
/// only what was expected is kept of those, and the whole is bounded.
fn body_error(e: &serde_json::Error) -> ApiError {
    let msg = e.to_string();
    let quotes_value = ["invalid type", "invalid value", "invalid length"]
        .iter()
        .any(|p| msg.starts_with(p));
    let what = match msg.split_once(", expected ") {
        Some((_, expected)) if quotes_value => format!("wrong type or value, expected {expected}"),
        _ if quotes_value => "wrong type or value".to_owned(),
        _ => msg,
    };
    ApiError::InvalidField(format!("body: {}", what.chars().take(200).collect::<String>()))
}

/// No `Debug`, here and below: bodies carry passwords.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    username: String,
    password: String,
    sub: Option<String>,
    name: Option<String>,
    email: Option<String>,
    #[serde(default)]
    email_verified: bool,
}

/// `PATCH` semantics: an absent field stays, `null` removes an optional claim.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChangesBody {
    password: Option<String>,
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    email: Option<Option<String>>,
    email_verified: Option<bool>,
    disabled: Option<bool>,
}

/// A field that is present (possibly `null`): `Some(value)`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A listing's query: `limit` (1 to 1000, default 100) and `after` (the previous page's `next`).
/// Each at most once; an empty value counts as absent.
fn page_query(q: &str) -> Result<(Option<String>, usize), ApiError> {
    let (mut limit, mut after) = (None, None);
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        let slot = match &*k {
            "limit" => &mut limit,
            "after" => &mut after,
            other => {
                return Err(ApiError::InvalidField(format!(
                    "query: unknown parameter {:?} (limit, after)",
                    other.chars().take(32).collect::<String>()
                )));
            }
        };
        if slot.is_some() {
            return Err(ApiError::InvalidField(format!("{k}: given more than once")));
        }
        if !v.is_empty() {
            *slot = Some(v.into_owned());
        }
    }
    let limit = match limit {
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::InvalidField("limit: 1 to 1000".into()))?,
        None => DEFAULT_PAGE,
    };
    validate::limit(limit)?;
    if after.as_ref().is_some_and(|a| a.len() > 255) {
        return Err(ApiError::InvalidField("after: at most 255 bytes".into()));
    }
    Ok((after, limit))
}

async fn caller(admin: &AdminService, clock: &Clock, headers: &HeaderMap) -> Result<Admin, ApiError> {
    admin.authorize(bearer_token(headers)?, clock.now()).await
}

/// The caller of an admin endpoint, authorised (scope `admin`) before the handler runs.
pub struct AdminCaller(Admin);

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        caller(&state.admin, &state.clock, &parts.headers).await.map(Self)
    }
}

/// `POST /admin/users`.
pub async fn create_user(
    AdminCaller(who): AdminCaller,
    State(admin): State<AdminService>,
    State(clock): State<Clock>,
    req: Request,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let b: NewUserBody = json_body(req).await?;
    validate::username(&b.username)?;
    validate::password(&b.password)?;
    if let Some(s) = &b.sub {
        validate::sub(s)?;
    }
    if let Some(n) = &b.name {
        validate::name(n)?;
    }
    if let Some(e) = &b.email {
        validate::email(e)?;
    }
    let new = NewUser {
        username: b.username,
        password: b.password,
        sub: b.sub,
        name: b.name,
        email: b.email,
        email_verified: b.email_verified,
    };
    let user = admin.create_user(&who, new, clock.now()).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// `GET /admin/users?limit=&after=`.
pub async fn list_users(
    _: AdminCaller,
    State(admin): State<AdminService>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (after, limit) = page_query(query.as_deref().unwrap_or(""))?;
    let page = admin.users(after.as_deref(), limit).await?;
    Ok(Json(json!({ "users": page.items, "next": page.next })))
}

/// `GET /admin/users/{sub}`.
pub async fn get_user(
    _: AdminCaller,
    State(admin): State<AdminService>,
    Path(sub): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(admin.user(&sub).await?))
}

/// `PATCH /admin/users/{sub}`.
pub async fn update_user(
    AdminCaller(who): AdminCaller,
    State(admin): State<AdminService>,
    State(clock): State<Clock>,
    Path(sub): Path<String>,
    req: Request,
) -> Result<Json<UserView>, ApiError> {
    let b: UserChangesBody = json_body(req).await?;
    if let Some(p) = &b.password {
        validate::password(p)?;
    }
    if let Some(Some(n)) = &b.name {
        validate::name(n)?;
    }
    if let Some(Some(e)) = &b.email {
        validate::email(e)?;
    }
    let changes = UserChanges {
        password: b.password,
        name: b.name,
        email: b.email,
        email_verified: b.email_verified,
        disabled: b.disabled,
    };
    Ok(Json(admin.update_user(&who, &sub, changes, clock.now()).await?))
}

/// `DELETE /admin/users/{sub}`.
pub async fn delete_user(
    AdminCaller(who): AdminCaller,
    State(admin): State<AdminService>,
    State(clock): State<Clock>,
    Path(sub): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin.delete_user(&who, &sub, clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /admin/clients?limit=&after=`.
pub async fn list_clients(
    _: AdminCaller,
    State(admin): State<AdminService>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (after, limit) = page_query(query.as_deref().unwrap_or(""))?;
    let page = admin.clients(after.as_deref(), limit).await?;
    Ok(Json(json!({ "clients": page.items, "next": page.next })))
}

/// `GET /admin/clients/{client_id}`.
pub async fn get_client(
    _: AdminCaller,
    State(admin): State<AdminService>,
    Path(client_id): Path<String>,
) -> Result<Json<ClientView>, ApiError> {
    Ok(Json(admin.client(&client_id).await?))
}

/// `DELETE /admin/clients/{client_id}`.
pub async fn delete_client(
    AdminCaller(who): AdminCaller,
    State(admin): State<AdminService>,
    State(clock): State<Clock>,
    Path(client_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin.delete_client(&who, &client_id, clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

// === dynamic client registration (RFC 7591, RFC 7592) ===

/// Registration bodies: metadata that does not parse is `invalid_client_metadata`.
async fn metadata_body(req: Request) -> Result<ClientMetadata, ApiError> {
    let bytes = body(req).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::InvalidClientMetadata(format!("body: {e}")))
}

fn registered(status: StatusCode, r: Registered) -> Response {
    // RFC 7591 section 3.2.1: the answer holds a secret.
    (status, [(header::CACHE_CONTROL, "no-store")], Json(r)).into_response()
}

/// `POST /auth/register`: with an admin access token as the initial access token, or none with
/// `--open-registration`.
pub async fn register(
    State(registration): State<RegistrationService>,
    State(admin): State<AdminService>,
    State(clock): State<Clock>,
    req: Request,
) -> Result<Response, ApiError> {
    let by = match registration.is_open() {
        true => None,
        false => Some(caller(&admin, &clock, req.headers()).await?.client_id),
    };
    let metadata = metadata_body(req).await?;
    let r = registration.register(by.as_deref(), metadata, clock.now()).await?;
    Ok(registered(StatusCode::CREATED, r))
}

fn registration_token(req: &Request) -> Result<&str, ApiError> {
    bearer_token(req.headers())?.ok_or(ApiError::MissingToken)
}

/// `GET /auth/register/{client_id}` (RFC 7592 section 2.1).
pub async fn read_registration(
    State(registration): State<RegistrationService>,
    Path(client_id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let token = registration_token(&req)?;
    let token = token.to_owned();
    let r = registration.read(&client_id, &token).await?;
    Ok(registered(StatusCode::OK, r))
}

/// `PUT /auth/register/{client_id}` (RFC 7592 section 2.2).
pub async fn update_registration(
    State(registration): State<RegistrationService>,
    State(clock): State<Clock>,
    Path(client_id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let token = registration_token(&req)?.to_owned();
    let metadata = metadata_body(req).await?;
    let r = registration.update(&client_id, &token, metadata, clock.now()).await?;
    Ok(registered(StatusCode::OK, r))
}

/// `DELETE /auth/register/{client_id}` (RFC 7592 section 2.3).
pub async fn delete_registration(
    State(registration): State<RegistrationService>,
    State(clock): State<Clock>,
    Path(client_id): Path<String>,
    req: Request,
) -> Result<StatusCode, ApiError> {
    let token = registration_token(&req)?.to_owned();
    registration.delete(&client_id, &token, clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::page_query;

    #[test]
    fn a_page_query_takes_each_parameter_once() {
        assert_eq!(page_query("").unwrap(), (None, super::DEFAULT_PAGE));
        assert_eq!(page_query("limit=5&after=u-1").unwrap(), (Some("u-1".into()), 5));
        assert_eq!(page_query("limit=&after=").unwrap(), (None, super::DEFAULT_PAGE));
        for bad in ["limit=1&limit=2", "after=a&after=b", "limit=x", "limit=0", "x=1"] {
            assert!(page_query(bad).is_err(), "{bad}");
        }
        assert!(page_query(&format!("after={}", "a".repeat(256))).is_err());
    }
}
