//! Consent for third-party clients (`first_party = false`): after login, the authorization
//! endpoint sends the browser to `GET /auth/consent?return_to=<the authorize request>`, which
//! names the client and each scope; the user's Allow or Deny posts back.
//!
//! The form is protected like the login form (no cross-site posts), and it carries a tag
//! (HMAC-SHA-256 under a key derived from `--key-encryption-key`, the same on every node) over
//! the session and the exact authorize request: a decision posted for another request, or by
//! another user's session, does not verify. Allow remembers the scopes per user and client
//! (a later request for the same or fewer skips the page) and resumes the authorize request;
//! Deny sends `error=access_denied` to the client.

use std::sync::Arc;

use crate::domain::{Scope, Timestamp};
use crate::error::ApiError;
use crate::service::authorize::{AuthorizeRequest, AuthorizeService, redirect_error};
use crate::store::{ConsentRecord, SessionRecord};

/// What the consent page shows and posts back.
#[derive(Debug)]
pub struct ConsentPage {
    pub client_name: String,
    /// The scopes asked for, each with the words the page shows.
    pub scopes: Vec<(String, &'static str)>,
    pub return_to: String,
    pub tag: String,
}

/// The words for a scope on the consent page.
pub fn describe(scope: &str) -> &'static str {
    match scope {
        "openid" => "Sign you in with your account (your user identifier)",
        "profile" => "See your name",
        "email" => "See your email address and whether it is verified",
        "offline_access" => "Stay connected to your account when you are not using the app",
        _ => "Access to this permission",
    }
}

impl AuthorizeService {
    /// The consent page for the authorize request `return_to` (a same-origin
    /// `/auth/authorize?...` path, checked by the caller) and the session of `cookie`.
    pub async fn consent_page(
        &self,
        cookie: Option<&str>,
        return_to: &str,
        now: Timestamp,
    ) -> Result<ConsentPage, ApiError> {
        let (session, client_name, scope) = self.consent_request(cookie, return_to, now).await?;
        Ok(ConsentPage {
            client_name,
            scopes: scope.iter().map(|s| (s.to_owned(), describe(s))).collect(),
            return_to: return_to.to_owned(),
            tag: self.consent_tag(&session.hash, return_to),
        })
    }

    /// The user's decision. Allow: the consent is remembered and the answer is where the
    /// browser goes next (the authorize request, without `prompt`, so it does not ask again).
    /// Deny: the client's redirect URI with `error=access_denied`.
    pub async fn consent_decision(
        &self,
        cookie: Option<&str>,
        return_to: &str,
        tag: &str,
        allow: bool,
        now: Timestamp,
    ) -> Result<String, ApiError> {
        let inner = &self.inner;
        let (session, _, scope) = self.consent_request(cookie, return_to, now).await?;
        let tagged = [b"consent".as_slice(), &session.hash.0, return_to.as_bytes()];
        if !inner.forms.verify(&tagged, tag) {
            tracing::info!(target: "security", "consent form for another request or session refused");
            return Err(ApiError::CrossSite);
        }
        let (req, pushed) = self.resolve_pushed(authorize_request(return_to)?, now).await?;
        let target = self.redirect_target(&req).await?;
        let (client, registered) = (&target.client, target.registered());
        if !allow {
            tracing::info!(target: "security", client_id = %client.client_id, "consent denied");
            // The authorization ends here, with an answer to the client: a pushed request is
            // used up by it as by a code (RFC 9126 section 4), not left to be tried again.
            if let Some(pushed) = &pushed {
                inner.store.consume_pushed_request(&pushed.hash).await?;
            }
            let e = redirect_error(ApiError::AccessDenied);
            return Ok(self.error_redirect(&registered.base, &req.state, e));
        }
        let previous = inner.store.get_consent(&session.sub, &client.client_id).await?;
        let scope = previous.map_or(scope.clone(), |p| p.scope.union(&scope));
        inner
            .store
            .put_consent(&ConsentRecord {
                sub: Arc::clone(&session.sub),
                client_id: Arc::clone(&client.client_id),
                scope,
                granted_at: now,
            })
            .await?;
        tracing::info!(target: "security", client_id = %client.client_id, "consent given");
        Ok(without_prompt(return_to))
    }

    /// The session (one that still speaks for its user), the client's name and the scope of a
    /// consent request, all checked.
    async fn consent_request(
        &self,
        cookie: Option<&str>,
        return_to: &str,
        now: Timestamp,
    ) -> Result<(Arc<SessionRecord>, String, Scope), ApiError> {
        let inner = &self.inner;
        let cookie = cookie.ok_or(ApiError::LoginRequired)?;
        let session = inner
            .sessions
            .resolve(cookie, now)
            .await?
            .ok_or(ApiError::LoginRequired)?;
        let (req, _) = self.resolve_pushed(authorize_request(return_to)?, now).await?;
        let client = self.redirect_target(&req).await?.client;
        if client.first_party {
            return Err(ApiError::InvalidRequest("this client needs no consent"));
        }
        let checked = self
            .check(&client, &req)
            .map_err(|_| ApiError::InvalidRequest("the authorization request is not valid"))?;
        let name = client
            .client_name
            .clone()
            .unwrap_or_else(|| client.client_id.to_string());
        Ok((session, name, checked.scope))
    }

    fn consent_tag(&self, session: &crate::domain::TokenHash, return_to: &str) -> String {
        self.inner
            .forms
            .tag(&[b"consent".as_slice(), &session.0, return_to.as_bytes()])
    }
}

/// The authorize request a `return_to` path carries.
fn authorize_request(return_to: &str) -> Result<AuthorizeRequest, ApiError> {
    let query = return_to.split_once('?').map_or("", |(_, q)| q);
    Ok(AuthorizeRequest::from_query(query))
}

/// `return_to` without its `prompt` (so that `prompt=consent` is not asked again).
fn without_prompt(return_to: &str) -> String {
    without_params(return_to, &["prompt"])
}

/// The way back to an authorize request (path and query) after the login it forced: without
/// `max_age`, and with `prompt` reduced to `kept_prompt` (what is left to do), so that it does
/// not ask for the login again but still asks for what else `prompt` names.
pub fn after_forced_login(path_and_query: &str, kept_prompt: Option<&str>) -> String {
    let mut back = without_params(path_and_query, &["prompt", "max_age"]);
    let Some(prompt) = kept_prompt else {
        return back;
    };
    if !back.contains('?') {
        back.push('?');
    }
    let query = back.find('?').map_or(back.len(), |q| q + 1);
    url::form_urlencoded::Serializer::for_suffix(back, query)
        .append_pair("prompt", prompt)
        .finish()
}

/// A path and query without the parameters named in `names` (the way back after a forced login
/// or a consent must not ask again).
pub fn without_params(path_and_query: &str, names: &[&str]) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_owned();
    };
    let kept = url::form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| !names.contains(&&**k));
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .finish();
    format!("{path}?{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_way_back_leaves_out_prompt_only() {
        assert_eq!(
            without_prompt("/auth/authorize?client_id=a&prompt=consent&state=x%20y"),
            "/auth/authorize?client_id=a&state=x+y"
        );
    }

    #[test]
    fn the_way_back_after_a_forced_login_keeps_the_rest_of_prompt() {
        let here = "/auth/authorize?client_id=a&prompt=login+consent&max_age=0&state=s";
        assert_eq!(
            after_forced_login(here, Some("consent")),
            "/auth/authorize?client_id=a&state=s&prompt=consent"
        );
        assert_eq!(after_forced_login(here, None), "/auth/authorize?client_id=a&state=s");
        assert_eq!(
            after_forced_login("/auth/authorize?prompt=login", Some("consent")),
            "/auth/authorize?prompt=consent"
        );
    }

    #[test]
    fn every_scope_of_the_demo_has_words() {
        for s in ["openid", "profile", "email", "offline_access"] {
            assert_ne!(describe(s), describe("unknown"), "{s}");
        }
    }
}
