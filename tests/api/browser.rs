//! The login page in a real browser (docs/reference.md section 3): headless Chromium, driven over
//! WebDriver by chromedriver, runs a public client's authorization code flow against a listening
//! server: authorize → login page → the form, typed into and submitted → code at the client's
//! callback → token → userinfo. Only a browser checks what matters here: the headers its own form
//! post carries (`Origin: null` and `Sec-Fetch-Site: same-origin` under `Referrer-Policy:
//! no-referrer`), the SameSite=Lax cookie kept across the 303, and the page's CSP enforced on the
//! whole redirect chain (a `form-action 'self'` would stop it at the client's callback). And a
//! browser app on another origin runs that flow itself, calling the token plane with `fetch`
//! under the browser's CORS checks (docs/reference.md section 3, "Browsers calling the token plane").
//!
//! Needs Debian's `chromium` and `chromium-driver`; `scripts/ensure-chromium` installs them. Without
//! them the tests fail, they never skip.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use authplane::Config;
use authplane::crypto::pkce_challenge;
use axum::Router;
use axum::extract::RawQuery;
use axum::response::Html;
use axum::routing::get;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::helpers::*;

/// Debian's Chromium binary (`/usr/bin/chromium` is a shell wrapper around it).
const CHROMIUM: &str = "/usr/lib/chromium/chromium";
/// What a failure says when either binary is missing.
const MISSING: &str = "the browser test needs Debian's chromium and chromium-driver: run scripts/ensure-chromium";
/// The bound on every wait in this file.
const WAIT: Duration = Duration::from_secs(20);
/// Headless, as root, and quiet on a machine without a network: without the background-networking
/// flags Chromium keeps dialling Google's services and logs every refused connection. No desktop
/// keyring either (`--password-store=basic`): the password form must not wait on one.
const CHROMIUM_ARGS: [&str; 10] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--password-store=basic",
];

#[tokio::test]
async fn a_browser_signs_in_on_the_login_page_and_the_client_gets_tokens() {
    let (callback, mut arrivals) = client_callback().await;
    let app = spawn_with(config_with_spa_redirect(&callback), None).await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;

    let authorize = format!(
        "/auth/authorize?response_type=code&client_id={SPA}&redirect_uri={}&scope=openid%20profile&state=xyz\
         &code_challenge={}&code_challenge_method=S256",
        enc(&callback),
        pkce_challenge(VERIFIER),
    );
    browser.goto(&app.url(&authorize)).await.unwrap();

    // No session yet: the browser was sent to the login page, which keeps the request.
    let login = browser.current_url().await.unwrap();
    assert_eq!(login.path(), "/auth/login", "{login}");
    assert_eq!(query_param(&login, "return_to").as_deref(), Some(authorize.as_str()));
    let page = app.client.get(login.as_str()).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let header = |name: &str| {
        page.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{name} missing on the login page"))
            .to_owned()
    };
    let csp = header("content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        !csp.contains("form-action"),
        "form-action breaks the redirect to the client: {csp}"
    );
    assert!(
        header("x-frame-options").eq_ignore_ascii_case("DENY"),
        "X-Frame-Options"
    );
    assert_eq!(header("referrer-policy"), "no-referrer", "Referrer-Policy");

    // A wrong password: the form again, with the error, answered 401, and no session.
    sign_in(&browser, "alice", "not-the-password").await;
    let Ok(alert) = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("p.error[role='alert']"))
        .await
    else {
        panic!(
            "no login form with an error after a wrong password; {}",
            showing(&browser).await
        )
    };
    assert_eq!(alert.text().await.unwrap(), "Wrong username or password.");
    assert_eq!(navigation_status(&browser).await, 401);
    let kept = browser
        .find(Locator::Css("form input[name='return_to']"))
        .await
        .expect("the form keeps return_to")
        .attr("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some(authorize.as_str()));
    assert!(
        browser.get_named_cookie("authplane_session").await.is_err(),
        "no session after a wrong password"
    );

    // The right one: the browser follows 303 → authorize → 302 to the client with a code.
    sign_in(&browser, "alice", "wonderland").await;
    let Ok(Some(query)) = tokio::time::timeout(WAIT, arrivals.recv()).await else {
        panic!(
            "the browser did not reach the client's callback; {}",
            showing(&browser).await
        )
    };
    let landed = url::Url::parse(&format!("{callback}?{query}")).unwrap();
    browser
        .wait()
        .at_most(WAIT)
        .for_url(&landed)
        .await
        .expect("the browser's navigation ends at the client's callback");
    assert_eq!(query_param(&landed, "error"), None, "{query}");
    assert_eq!(query_param(&landed, "state").as_deref(), Some("xyz"), "{query}");
    let code = query_param(&landed, "code").expect("a code");

    // Cookies are per host, not per port: the callback page on 127.0.0.1 sees authplane's.
    let cookie = browser
        .get_named_cookie("authplane_session")
        .await
        .expect("a session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site().map(|s| s.to_string()).as_deref(), Some("Lax"));
    assert_eq!(cookie.path(), Some("/"));

    // The client's side: the code and the verifier for tokens, and the tokens for alice's claims.
    let res = app
        .token(
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &callback),
                ("client_id", SPA),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let tokens = json(res).await;
    let res = app.userinfo(&s(&tokens, "access_token")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let claims = json(res).await;
    assert_eq!(claims["sub"], "u-alice");
    assert_eq!(claims["name"], "Alice Liddell");

    browser.close().await.unwrap();
}

/// The SPA of docs/reference.md section 3, "Browsers calling the token plane": a page served from its own
/// origin (`localhost`, another site than authplane's `127.0.0.1`) runs the whole flow itself.
/// It makes its PKCE pair and state, navigates to authorize (and so to the login page, where the
/// person signs in), and on its return exchanges the code, reads userinfo, refreshes, revokes and
/// sees the revoked token refused, all with `fetch`. Chromium enforces CORS on every call: the
/// Bearer userinfo calls are preflighted, and no answer is readable without
/// `Access-Control-Allow-Origin` (the refusal's `WWW-Authenticate` not without
/// `Access-Control-Expose-Headers`). demo-spa's `allowed_origins` is the default: the origin of
/// its redirect URI.
#[tokio::test]
async fn a_browser_app_on_another_origin_runs_the_whole_flow_with_fetch() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page = format!("http://localhost:{}/spa", listener.local_addr().unwrap().port());
    let app = spawn_with(config_with_spa_redirect(&page), None).await;
    serve_spa_page(listener, &app.base);
    let driver = Driver::start().await;
    let browser = driver.browser().await;

    browser.goto(&page).await.unwrap();
    // The page sent the browser to authorize, which sent it to the login page.
    sign_in(&browser, "alice", "wonderland").await;
    let Ok(_) = browser.wait().at_most(WAIT).for_element(Locator::Id("done")).await else {
        panic!("the page did not finish its flow; {}", showing(&browser).await)
    };
    let result = browser.execute("return window.spaResult;", vec![]).await.unwrap();
    let landed = browser.current_url().await.unwrap();
    assert_eq!(
        landed.origin().ascii_serialization(),
        url::Url::parse(&page).unwrap().origin().ascii_serialization()
    );
    assert_eq!(result["stateMatches"], true, "{result}");
    let step = |name: &str| {
        let step = result["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} step in {result}"))
            .clone();
        assert!(
            step.get("error").is_none(),
            "the page could not read the {name} answer: {step}"
        );
        step
    };
    let token = step("token");
    assert_eq!(token["status"], 200, "{token}");
    assert_eq!(token["body"]["token_type"], "Bearer", "{token}");
    assert!(token["body"]["refresh_token"].is_string(), "{token}");
    let userinfo = step("userinfo");
    assert_eq!(userinfo["status"], 200, "{userinfo}");
    assert_eq!(userinfo["body"]["sub"], "u-alice", "{userinfo}");
    assert_eq!(userinfo["body"]["name"], "Alice Liddell", "{userinfo}");
    let refresh = step("refresh");
    assert_eq!(refresh["status"], 200, "{refresh}");
    assert_ne!(
        refresh["body"]["access_token"], token["body"]["access_token"],
        "{refresh}"
    );
    let refreshed = step("userinfo with the refreshed token");
    assert_eq!(refreshed["status"], 200, "{refreshed}");
    assert_eq!(refreshed["body"]["sub"], "u-alice", "{refreshed}");
    let revoke = step("revoke");
    assert_eq!(revoke["status"], 200, "{revoke}");
    // Revoking the refresh token revoked its grant; the page reads why it is refused.
    let revoked = step("userinfo after revoke");
    assert_eq!(revoked["status"], 401, "{revoked}");
    assert_eq!(revoked["body"]["error"], "invalid_token", "{revoked}");
    let challenge = revoked["wwwAuthenticate"].as_str().unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("invalid_token"),
        "WWW-Authenticate is exposed to the page: {revoked}"
    );

    browser.close().await.unwrap();
}

/// Serves [`SPA_PAGE`], calling authplane at `auth`, at `/spa` on `listener` (its URL is
/// `http://localhost:<port>/spa`, demo-spa's redirect URI in that test).
fn serve_spa_page(listener: tokio::net::TcpListener, auth: &str) {
    let html = SPA_PAGE.replace("{AUTH}", auth).replace("{CLIENT}", SPA);
    let page = Router::new().route("/spa", get(move || async move { Html(html) }));
    // Lives as long as the test's runtime.
    tokio::spawn(async move { axum::serve(listener, page).await });
}

/// A public client's single page: no library, the flow as a browser app writes it.
const SPA_PAGE: &str = r#"<!doctype html>
<title>demo-spa</title>
<script>
const AUTH = "{AUTH}", CLIENT = "{CLIENT}", REDIRECT = location.origin + location.pathname;
const b64url = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
  .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const random = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));

async function signIn() {
  const verifier = random(32), state = random(16);
  sessionStorage.setItem("flow", JSON.stringify({ verifier, state }));
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const query = new URLSearchParams({
    response_type: "code", client_id: CLIENT, redirect_uri: REDIRECT, scope: "openid profile",
    state, code_challenge: challenge, code_challenge_method: "S256",
  });
  location.assign(AUTH + "/auth/authorize?" + query);
}

// One call: what the page can read of the answer, or why it could read nothing.
async function call(name, path, init) {
  try {
    const res = await fetch(AUTH + path, init);
    const text = await res.text();
    let body = null;
    try { body = JSON.parse(text); } catch (_) {}
    return { name, status: res.status, body, wwwAuthenticate: res.headers.get("WWW-Authenticate") };
  } catch (e) {
    return { name, error: String(e) };
  }
}
const post = (params) => ({ method: "POST", body: new URLSearchParams(params) });
const bearer = (token) => ({ headers: { Authorization: "Bearer " + token } });

async function signedIn(params) {
  const flow = JSON.parse(sessionStorage.getItem("flow"));
  const steps = [];
  const step = async (...args) => { const r = await call(...args); steps.push(r); return r.body || {}; };
  const tokens = await step("token", "/auth/token", post({
    grant_type: "authorization_code", code: params.get("code"), redirect_uri: REDIRECT,
    client_id: CLIENT, code_verifier: flow.verifier,
  }));
  await step("userinfo", "/auth/userinfo", bearer(tokens.access_token));
  const refreshed = await step("refresh", "/auth/token", post({
    grant_type: "refresh_token", refresh_token: tokens.refresh_token, client_id: CLIENT,
  }));
  await step("userinfo with the refreshed token", "/auth/userinfo", bearer(refreshed.access_token));
  await step("revoke", "/auth/revoke", post({ token: refreshed.refresh_token, client_id: CLIENT }));
  await step("userinfo after revoke", "/auth/userinfo", bearer(refreshed.access_token));
  return { stateMatches: params.get("state") === flow.state, steps };
}

const params = new URLSearchParams(location.search);
if (params.has("code") || params.has("error")) {
  signedIn(params)
    .catch((e) => ({ error: String(e) }))
    .then((result) => {
      window.spaResult = result;
      const done = document.createElement("p");
      done.id = "done";
      done.textContent = JSON.stringify(result);
      document.body.append(done);
    });
} else {
  signIn();
}
</script>
"#;

/// The fixture, with demo-spa's only redirect_uri at `callback` (nothing listens on the fixture's
/// port 9000, and a browser needs a page to land on).
/// The next query the client's callback receives, within [`WAIT`].
async fn arrive(arrivals: &mut mpsc::UnboundedReceiver<String>) -> Option<String> {
    tokio::time::timeout(WAIT, arrivals.recv()).await.ok().flatten()
}

fn config_with_spa_redirect(callback: &str) -> Config {
    let text = authplane_testkit::fixture::TOML.replace(SPA_REDIRECT, callback);
    authplane_testkit::fixture::config_from(&text, |_| {}).unwrap()
}

/// The client's callback: a server on 127.0.0.1:0 that hands each query it receives to the test
/// and answers a small page, so the browser's navigation ends there.
async fn client_callback() -> (String, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/spa",
        get(move |RawQuery(q): RawQuery| async move {
            let _ = tx.send(q.unwrap_or_default());
            Html("<!doctype html><title>demo-spa</title><p id=\"done\">signed in</p>")
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/spa", listener.local_addr().unwrap());
    // Lives as long as the test's runtime.
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// Fills in the page's login form and clicks its button, as a person would.
async fn sign_in(browser: &Client, username: &str, password: &str) {
    let Ok(form) = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("form[action='/auth/login']"))
        .await
    else {
        panic!("no login form; {}", showing(browser).await)
    };
    for (name, value) in [("username", username), ("password", password)] {
        let input = form.find(Locator::Css(&format!("input[name='{name}']"))).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }
    form.find(Locator::Css("button[type='submit']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Where the browser is and what it shows, for a failure message.
async fn showing(browser: &Client) -> String {
    let url = browser.current_url().await.map(String::from).unwrap_or_default();
    let text = browser
        .execute("return document.body ? document.body.innerText : '';", vec![])
        .await
        .unwrap_or_default();
    let text = text.as_str().unwrap_or_default();
    let end = text.char_indices().nth(500).map_or(text.len(), |(i, _)| i);
    format!("the browser is at {url} and shows {:?}", &text[..end])
}

/// The HTTP status of the page the browser shows (Navigation Timing's `responseStatus`).
async fn navigation_status(browser: &Client) -> u64 {
    let status = browser
        .execute(
            "return performance.getEntriesByType('navigation')[0].responseStatus;",
            vec![],
        )
        .await
        .unwrap();
    status.as_u64().unwrap_or_else(|| panic!("a status, not {status}"))
}

fn query_param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A chromedriver on a port it chose, in a process group of its own: dropping the guard ends it
/// and every Chromium process it started, also when the test panics half way.
struct Driver {
    child: tokio::process::Child,
    url: String,
    /// A fresh profile for each run, removed after the processes are gone.
    profile: tempfile::TempDir,
}

impl Driver {
    async fn start() -> Self {
        assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} not found: {MISSING}");
        let mut child = tokio::process::Command::new("chromedriver")
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("chromedriver did not start ({e}): {MISSING}"));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.strip_prefix("ChromeDriver was started successfully on port ") {
                    return Some(rest.trim_end_matches('.').to_owned());
                }
            }
            None
        })
        .await
        .expect("chromedriver reports its port within the wait")
        .expect("chromedriver reports its port before it exits");
        // Keep reading its output, so that it never blocks on a full pipe; ends when it exits.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile: tempfile::tempdir().unwrap(),
        }
    }

    async fn browser(&self) -> Client {
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", self.profile.path().display()));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            "timeouts": { "pageLoad": WAIT.as_millis(), "script": WAIT.as_millis(), "implicit": 0 },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("a JSON object")
        };
        tokio::time::timeout(
            WAIT,
            ClientBuilder::new(HttpConnector::new())
                .capabilities(caps)
                .connect(&self.url),
        )
        .await
        .expect("Chromium starts within the wait")
        .unwrap_or_else(|e| panic!("chromedriver could not start Chromium: {e}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // The negative pid names the whole group: chromedriver and the browser it started.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A third-party client in a real browser: login, then the consent page (the client's name, the
/// scopes in words), Allow, and the code at the client; the next request skips the page; with
/// `prompt=consent` the page comes again, and Deny reaches the client as `access_denied`.
#[tokio::test]
async fn a_browser_signs_in_and_consents_to_a_third_party_client() {
    use authplane_testkit::fixture::{PARTNER, PARTNER_REDIRECT, PARTNER_SECRET};
    let (callback, mut arrivals) = client_callback().await;
    let text = authplane_testkit::fixture::TOML.replace(PARTNER_REDIRECT, &callback);
    let app = spawn_with(authplane_testkit::fixture::config_from(&text, |_| {}).unwrap(), None).await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    let authorize = |extra: &str| {
        format!(
            "/auth/authorize?response_type=code&client_id={PARTNER}&redirect_uri={}&scope=openid%20email&state=p1{extra}",
            enc(&callback),
        )
    };

    browser.goto(&app.url(&authorize(""))).await.unwrap();
    sign_in(&browser, "alice", "wonderland").await;
    let Ok(form) = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("form[action='/auth/consent']"))
        .await
    else {
        panic!("no consent page after login; {}", showing(&browser).await)
    };
    let page = browser.source().await.unwrap();
    assert!(page.contains("Partner App wants to access your account"), "{page}");
    assert!(page.contains("See your email address"), "{page}");
    form.find(Locator::Css("button[value='allow']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let Some(query) = arrive(&mut arrivals).await else {
        panic!("no code after Allow; {}", showing(&browser).await)
    };
    let landed = url::Url::parse(&format!("{callback}?{query}")).unwrap();
    assert_eq!(query_param(&landed, "state").as_deref(), Some("p1"));
    let code = query_param(&landed, "code").expect("a code");
    let res = app
        .token(
            Some((PARTNER, PARTNER_SECRET)),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &callback),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(json(res).await["id_token"].is_string());

    // Remembered: straight back to the client.
    browser.goto(&app.url(&authorize(""))).await.unwrap();
    let query = arrive(&mut arrivals).await.expect("remembered consent");
    assert!(query.contains("code="), "{query}");

    // Asked again, and denied.
    browser.goto(&app.url(&authorize("&prompt=consent"))).await.unwrap();
    let Ok(form) = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("form[action='/auth/consent']"))
        .await
    else {
        panic!("no consent page with prompt=consent; {}", showing(&browser).await)
    };
    form.find(Locator::Css("button[value='deny']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let query = arrive(&mut arrivals).await.expect("the client hears of the denial");
    let landed = url::Url::parse(&format!("{callback}?{query}")).unwrap();
    assert_eq!(query_param(&landed, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&landed, "code"), None);
    browser.close().await.unwrap();
}
