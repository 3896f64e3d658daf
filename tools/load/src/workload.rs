//! The protocol steps a client takes, each timed and recorded under its endpoint, and the modes
//! built from them. Setup (logins, the token pools) is not measured, but any failure in it stops
//! the run with an error.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use authplane_testkit::oauth::{self, Pkce};
use reqwest::header::{self, HeaderName, HeaderValue};
use serde::Deserialize;
use tokio::time::Instant;

use crate::RunArgs;
use crate::cpu::CpuWindow;
use crate::dpop::{ProofKey, unix_now};
use crate::driver::{self, Job, Window};
use crate::stats::{CpuReport, Lag, Outcome, RunReport, Stats, TransportError};
use crate::target::loopback_base;
use crate::transport::{Reply, Transport};
use crate::zipf::Picker;

pub const AUTHORIZE: &str = "authorize";
pub const TOKEN_CODE: &str = "token:code";
pub const TOKEN_REFRESH: &str = "token:refresh";
pub const TOKEN_CC: &str = "token:cc";
pub const USERINFO: &str = "userinfo";
pub const INTROSPECT: &str = "introspect";
pub const BASELINE: &str = "baseline";
pub const LOGIN: &str = "login";
const ENDPOINTS: &[&str] = &[
    AUTHORIZE,
    TOKEN_CODE,
    TOKEN_REFRESH,
    TOKEN_CC,
    USERINFO,
    INTROSPECT,
    BASELINE,
    LOGIN,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Flow,
    Userinfo,
    UserinfoDpop,
    Introspect,
    TokenCc,
    Authorize,
    Refresh,
    TokenCode,
    Baseline,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Flow => "flow",
            Self::Userinfo => "userinfo",
            Self::UserinfoDpop => "userinfo-dpop",
            Self::Introspect => "introspect",
            Self::TokenCc => "token-cc",
            Self::Authorize => "authorize",
            Self::Refresh => "refresh",
            Self::TokenCode => "token-code",
            Self::Baseline => "baseline",
        }
    }

    fn needs_sessions(self) -> bool {
        matches!(
            self,
            Self::Flow
                | Self::Userinfo
                | Self::UserinfoDpop
                | Self::Introspect
                | Self::Authorize
                | Self::Refresh
                | Self::TokenCode
        )
    }
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
    refresh_token: Option<String>,
}

struct Tokens {
    access: String,
    refresh: Option<String>,
}

/// What an introspection answer must say for the request to count (RFC 7662 section 2.2); the
/// other members are the server's business.
#[derive(Deserialize)]
struct IntrospectionBody {
    active: bool,
}

/// The issuer's endpoint URLs, which DPoP proofs name (`htu`): the configured issuer's, not
/// necessarily the address the tool sends to.
#[derive(Deserialize)]
struct Discovery {
    token_endpoint: String,
    userinfo_endpoint: String,
}

/// A client's DPoP key and the URLs its proofs name.
pub struct DpopClient {
    key: ProofKey,
    token_htu: String,
    userinfo_htu: String,
}

/// The client side of the protocol against one server.
pub struct Client {
    /// The set-up's client (discovery, the admin API); the measured requests go through
    /// `transport`.
    http: reqwest::Client,
    transport: Transport,
    base: String,
    basic: HeaderValue,
    client_id: String,
    redirect_uri: String,
    scope: String,
}

impl Client {
    pub fn new(base: &str, client_id: &str, client_secret: &str, timeout: Duration) -> anyhow::Result<Self> {
        let base = loopback_base(base)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(usize::MAX)
            .timeout(timeout)
            .build()?;
        Ok(Self {
            http,
            transport: Transport::new(&base, timeout)?,
            base,
            basic: oauth::basic_auth(client_id, client_secret)?,
            client_id: client_id.to_owned(),
            redirect_uri: "http://127.0.0.1:9000/callback".to_owned(),
            scope: "openid profile email".to_owned(),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn basic(&self) -> &HeaderValue {
        &self.basic
    }

    /// The Basic authorization of this client, as a header value's text.
    fn basic_str(&self) -> &str {
        self.basic.to_str().unwrap_or_default()
    }

    /// The answer with the time since `start`.
    fn timed(start: Instant, res: Result<Reply, TransportError>) -> (Duration, Result<Reply, TransportError>) {
        (start.elapsed(), res)
    }

    /// Records the request and hands back what `parse` made of the expected answer.
    fn settle<T>(
        stats: &Stats,
        endpoint: &'static str,
        record: bool,
        (latency, res): (Duration, Result<Reply, TransportError>),
        expect: u16,
        parse: impl FnOnce(&Reply) -> Option<T>,
    ) -> Option<T> {
        let (outcome, value) = match res {
            Ok(reply) if reply.status == expect => match parse(&reply) {
                Some(v) => (Outcome::Ok(reply.status), Some(v)),
                None => (Outcome::Unexpected(reply.status), None),
            },
            Ok(reply) => (Outcome::Unexpected(reply.status), None),
            Err(t) => (Outcome::Transport(t), None),
        };
        if record {
            stats.record(endpoint, outcome, latency);
        }
        value
    }

    /// POST /auth/login (JSON API); the session cookie's value.
    pub async fn login(&self, stats: &Stats, user: &str, password: &str) -> Option<String> {
        let start = Instant::now();
        let res = self
            .transport
            .post_form(
                "/auth/login",
                &[("username", user), ("password", password)],
                &[(header::ACCEPT, "application/json")],
            )
            .await;
        Self::settle(stats, LOGIN, true, Self::timed(start, res), 200, |r| {
            oauth::session_cookie(&r.headers)
        })
    }

    /// GET /auth/authorize with the session and a PKCE S256 challenge; the code from the Location.
    async fn authorize(
        &self,
        stats: &Stats,
        session: &str,
        challenge: &str,
        start: Instant,
        record: bool,
    ) -> Option<String> {
        let path = "/auth/authorize?";
        let query = url::form_urlencoded::Serializer::for_suffix(path.to_owned(), path.len())
            .extend_pairs([
                ("response_type", "code"),
                ("client_id", &self.client_id),
                ("redirect_uri", &self.redirect_uri),
                ("scope", &self.scope),
                ("state", "load"),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
            ])
            .finish();
        let cookie = oauth::session_header(session);
        let res = self.transport.get(&query, &[(header::COOKIE, &cookie)]).await;
        Self::settle(stats, AUTHORIZE, record, Self::timed(start, res), 302, |r| {
            oauth::code_from_location(&r.headers)
        })
    }

    async fn token_code(
        &self,
        stats: &Stats,
        code: &str,
        verifier: &str,
        start: Instant,
        record: bool,
    ) -> Option<Tokens> {
        self.token_code_with(stats, code, verifier, None, start, record).await
    }

    /// The code grant; with `dpop`, a proof in the `DPoP` header (the tokens come back bound).
    async fn token_code_with(
        &self,
        stats: &Stats,
        code: &str,
        verifier: &str,
        dpop: Option<&str>,
        start: Instant,
        record: bool,
    ) -> Option<Tokens> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri),
            ("code_verifier", verifier),
        ];
        let auth = (header::AUTHORIZATION, self.basic_str());
        let res = match dpop {
            Some(proof) => {
                let headers = [auth, (HeaderName::from_static("dpop"), proof)];
                self.transport.post_form("/auth/token", &form, &headers).await
            }
            None => self.transport.post_form("/auth/token", &form, &[auth]).await,
        };
        Self::settle(stats, TOKEN_CODE, record, Self::timed(start, res), 200, parse_tokens)
    }

    /// The refresh grant: `Ok` with the new tokens, `Err(true)` when the server shed the request
    /// (503: it never reached the grant, so the old token is still good), `Err(false)` otherwise.
    /// A 503 can also come from the server's request timeout after the rotation committed; the
    /// old token is then a replay and its grant gets revoked, which shows as 400s in the run (none
    /// of the runs in BENCHMARKS.md had one: no request reached the 10 s timeout).
    async fn refresh(&self, stats: &Stats, refresh: &str, start: Instant, record: bool) -> Result<Tokens, bool> {
        let res = self
            .transport
            .post_form(
                "/auth/token",
                &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
                &[(header::AUTHORIZATION, self.basic_str())],
            )
            .await;
        let reply = Self::timed(start, res);
        let shed = matches!(&reply.1, Ok(r) if r.status == 503);
        Self::settle(stats, TOKEN_REFRESH, record, reply, 200, |r| {
            parse_tokens(r).filter(|t| t.refresh.is_some())
        })
        .ok_or(shed)
    }

    pub async fn token_cc(&self, stats: &Stats, start: Instant, record: bool) -> Option<String> {
        let res = self
            .transport
            .post_form(
                "/auth/token",
                &[("grant_type", "client_credentials")],
                &[(header::AUTHORIZATION, self.basic_str())],
            )
            .await;
        Self::settle(stats, TOKEN_CC, record, Self::timed(start, res), 200, |r| {
            parse_tokens(r).map(|t| t.access)
        })
    }

    pub async fn userinfo(&self, stats: &Stats, access: &str, start: Instant, record: bool) -> bool {
        let bearer = format!("Bearer {access}");
        let res = self
            .transport
            .get("/auth/userinfo", &[(header::AUTHORIZATION, &bearer)])
            .await;
        Self::settle(stats, USERINFO, record, Self::timed(start, res), 200, |r| {
            r.body.starts_with(b"{\"sub\"").then_some(())
        })
        .is_some()
    }

    /// POST /auth/introspect (RFC 7662) as this client, which the pool's tokens were issued to.
    /// Ok only when the answer says `"active": true`: an inactive answer is a 200 too, but it
    /// would mean a broken setup (a revoked or expired pool, a client the server does not show
    /// the tokens to) measured as if it were the real lookup.
    pub async fn introspect(&self, stats: &Stats, access: &str, start: Instant, record: bool) -> bool {
        let res = self
            .transport
            .post_form(
                "/auth/introspect",
                &[("token", access), ("token_type_hint", "access_token")],
                &[(header::AUTHORIZATION, self.basic_str())],
            )
            .await;
        Self::settle(stats, INTROSPECT, record, Self::timed(start, res), 200, |r| {
            let body: IntrospectionBody = serde_json::from_slice(&r.body).ok()?;
            body.active.then_some(())
        })
        .is_some()
    }

    /// GET /auth/userinfo with a DPoP-bound token: `Authorization: DPoP` and the proof.
    async fn userinfo_dpop(&self, stats: &Stats, access: &str, proof: &str, start: Instant, record: bool) -> bool {
        let auth = format!("DPoP {access}");
        let headers = [
            (header::AUTHORIZATION, auth.as_str()),
            (HeaderName::from_static("dpop"), proof),
        ];
        let res = self.transport.get("/auth/userinfo", &headers).await;
        Self::settle(stats, USERINFO, record, Self::timed(start, res), 200, |r| {
            r.body.starts_with(b"{\"sub\"").then_some(())
        })
        .is_some()
    }

    /// The issuer's token and UserInfo URLs from its discovery document, and a new DPoP key.
    async fn dpop_client(&self, alg: authplane::jose::Alg) -> anyhow::Result<DpopClient> {
        let d: Discovery = self
            .http
            .get(self.url("/.well-known/openid-configuration"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
            .context("the discovery document")?;
        Ok(DpopClient {
            key: ProofKey::generate(alg)?,
            token_htu: d.token_endpoint,
            userinfo_htu: d.userinfo_endpoint,
        })
    }

    /// authorize → token (code) with a DPoP proof at the token endpoint: a bound access token.
    async fn dpop_access_token(&self, stats: &Stats, session: &str, dpop: &DpopClient) -> anyhow::Result<String> {
        let pkce = Pkce::generate();
        let code = self
            .authorize(stats, session, &pkce.challenge, Instant::now(), true)
            .await
            .with_context(|| format!("authorize failed: {}", describe(stats)))?;
        let proof = dpop.key.proof("POST", &dpop.token_htu, None, unix_now())?;
        let tokens = self
            .token_code_with(stats, &code, &pkce.verifier, Some(&proof), Instant::now(), true)
            .await
            .with_context(|| format!("the code exchange with a DPoP proof failed: {}", describe(stats)))?;
        Ok(tokens.access)
    }

    async fn baseline(&self, stats: &Stats, start: Instant, record: bool) -> bool {
        let res = self.transport.get("/baseline", &[]).await;
        Self::settle(stats, BASELINE, record, Self::timed(start, res), 200, |_| Some(())).is_some()
    }

    /// login → authorize → token (code): an access token of `user` for this client.
    pub async fn user_access_token(&self, stats: &Stats, user: &str, password: &str) -> Option<String> {
        let session = self.login(stats, user, password).await?;
        Some(self.code_flow(stats, &session, Instant::now(), true).await?.access)
    }

    /// authorize → token (code): a fresh pair of tokens for a session.
    async fn code_flow(&self, stats: &Stats, session: &str, start: Instant, record: bool) -> Option<Tokens> {
        let pkce = Pkce::generate();
        let code = self.authorize(stats, session, &pkce.challenge, start, record).await?;
        self.token_code(stats, &code, &pkce.verifier, Instant::now(), record)
            .await
    }
}

fn parse_tokens(r: &Reply) -> Option<Tokens> {
    let body: TokenBody = serde_json::from_slice(&r.body).ok()?;
    Some(Tokens {
        access: body.access_token,
        refresh: body.refresh_token,
    })
}

// === the modes ===

/// Everything one mode's requests share.
struct Workload {
    mode: Mode,
    client: Client,
    stats: Stats,
    sessions: Vec<String>,
    session_picker: Picker,
    access_tokens: Vec<String>,
    token_picker: Picker,
    /// Refresh tokens not in use; each is taken for one request and its successor put back, so
    /// no token is ever presented twice (which the server rightly treats as a replay).
    refresh_pool: Mutex<Vec<String>>,
    /// Codes not redeemed yet, each with its PKCE verifier; each is redeemed once.
    code_pool: Mutex<Vec<(String, String)>>,
    /// userinfo-dpop: the client's DPoP key and URLs.
    dpop: Option<DpopClient>,
    /// userinfo-dpop with `--proofs`: proofs signed before the run, each with the index of the
    /// access token it names (`ath`); each is used once.
    proof_pool: Mutex<Vec<(usize, String)>>,
    presigned: bool,
    userinfo_per_flow: usize,
}

impl Job for Workload {
    async fn run(&self, start: Instant, record: bool) {
        let stats = &self.stats;
        let c = &self.client;
        match self.mode {
            Mode::Baseline => {
                c.baseline(stats, start, record).await;
            }
            Mode::TokenCc => {
                c.token_cc(stats, start, record).await;
            }
            Mode::Userinfo => {
                let token = &self.access_tokens[self.token_picker.pick()];
                c.userinfo(stats, token, start, record).await;
            }
            Mode::Introspect => {
                let token = &self.access_tokens[self.token_picker.pick()];
                c.introspect(stats, token, start, record).await;
            }
            Mode::UserinfoDpop => {
                let Some(dpop) = &self.dpop else {
                    return;
                };
                let taken = if self.presigned {
                    self.proof_pool.lock().unwrap_or_else(|p| p.into_inner()).pop()
                } else {
                    // Signed now: the client's own cost, inside the measured latency.
                    let i = self.token_picker.pick();
                    let token = &self.access_tokens[i];
                    dpop.key
                        .proof("GET", &dpop.userinfo_htu, Some(token), unix_now())
                        .ok()
                        .map(|p| (i, p))
                };
                let Some((i, proof)) = taken else {
                    if record {
                        stats.record(USERINFO, Outcome::NotSent("proof_pool_empty"), start.elapsed());
                    }
                    return;
                };
                c.userinfo_dpop(stats, &self.access_tokens[i], &proof, start, record)
                    .await;
            }
            Mode::Authorize => {
                let session = &self.sessions[self.session_picker.pick()];
                let challenge = Pkce::generate().challenge;
                c.authorize(stats, session, &challenge, start, record).await;
            }
            Mode::Refresh => {
                let taken = self.refresh_pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(old) = taken else {
                    // Every token is in flight: the pool is too small for the load, a tool limit.
                    if record {
                        stats.record(TOKEN_REFRESH, Outcome::NotSent("refresh_pool_empty"), start.elapsed());
                    }
                    return;
                };
                let usable = match c.refresh(stats, &old, start, record).await {
                    Ok(t) => t.refresh,
                    // Shed before the grant ran: the old token was not rotated.
                    Err(true) => Some(old),
                    Err(false) => None,
                };
                if let Some(next) = usable {
                    self.refresh_pool.lock().unwrap_or_else(|p| p.into_inner()).push(next);
                }
            }
            Mode::TokenCode => {
                let taken = self.code_pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some((code, verifier)) = taken else {
                    if record {
                        stats.record(TOKEN_CODE, Outcome::NotSent("code_pool_empty"), start.elapsed());
                    }
                    return;
                };
                c.token_code(stats, &code, &verifier, start, record).await;
            }
            Mode::Flow => {
                let session = &self.sessions[self.session_picker.pick()];
                let Some(tokens) = c.code_flow(stats, session, start, record).await else {
                    return;
                };
                for _ in 0..self.userinfo_per_flow {
                    if !c.userinfo(stats, &tokens.access, Instant::now(), record).await {
                        return;
                    }
                }
                if let Some(refresh) = &tokens.refresh {
                    let _ = c.refresh(stats, refresh, Instant::now(), record).await;
                }
            }
        }
    }
}

pub async fn run(mode: Mode, args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut client = Client::new(&args.url, &args.client_id, &args.client_secret, args.timeout)?;
    client.redirect_uri = args.redirect_uri.clone();
    client.scope = args.scope.clone();
    let stats = Stats::new(ENDPOINTS)?;
    let setup = Stats::new(ENDPOINTS)?;

    // Setup: log the virtual users in, then fill the token pools.
    let mut sessions = Vec::new();
    if mode.needs_sessions() {
        let users: Vec<(String, String)> = args
            .users
            .iter()
            .map(|u| match u.split_once(':') {
                Some((n, p)) => Ok((n.to_owned(), p.to_owned())),
                None => bail!("--user {u:?} is not name:password"),
            })
            .collect::<anyhow::Result<_>>()?;
        if users.is_empty() {
            bail!("no --user given");
        }
        for i in 0..args.vus.max(1) {
            let (name, password) = &users[i % users.len()];
            let s = client
                .login(&setup, name, password)
                .await
                .with_context(|| format!("login as {name:?} failed: {}", describe(&setup)))?;
            sessions.push(s);
        }
    }
    let pool_size = match mode {
        Mode::Userinfo | Mode::Introspect => args.tokens.max(1),
        Mode::UserinfoDpop => 0,
        Mode::Refresh => args.tokens.max(args.concurrency.unwrap_or(0) + 16),
        _ => 0,
    };
    let mut access_tokens = Vec::with_capacity(pool_size);
    let mut refresh_tokens = Vec::with_capacity(pool_size);
    for i in 0..pool_size {
        let session = &sessions[i % sessions.len()];
        let Some(t) = client.code_flow(&setup, session, Instant::now(), true).await else {
            bail!("getting tokens for the pool failed: {}", describe(&setup));
        };
        access_tokens.push(t.access);
        if let Some(r) = t.refresh {
            refresh_tokens.push(r);
        }
    }
    if mode == Mode::Refresh && refresh_tokens.len() < pool_size {
        bail!("the client got no refresh tokens (does it have the refresh_token grant?)");
    }
    let mut codes = Vec::new();
    if mode == Mode::TokenCode {
        // One PKCE pair for every code (the server binds each code to the challenge).
        let pkce = Pkce::generate();
        codes.reserve(args.tokens);
        for i in 0..args.tokens.max(1) {
            let session = &sessions[i % sessions.len()];
            let Some(code) = client
                .authorize(&setup, session, &pkce.challenge, Instant::now(), true)
                .await
            else {
                bail!("making the codes failed: {}", describe(&setup));
            };
            codes.push((code, pkce.verifier.clone()));
        }
    }
    // userinfo-dpop: access tokens bound to one DPoP key, and the proofs made before the run.
    let mut dpop = None;
    let mut proofs = Vec::new();
    let token_picker = if mode == Mode::UserinfoDpop {
        let d = client.dpop_client(args.dpop_alg).await?;
        for i in 0..args.tokens.max(1) {
            let session = &sessions[i % sessions.len()];
            access_tokens.push(client.dpop_access_token(&setup, session, &d).await?);
        }
        let picker = Picker::new(access_tokens.len(), args.zipf);
        proofs.reserve(args.proofs);
        let now = unix_now();
        for _ in 0..args.proofs {
            let i = picker.pick();
            proofs.push((i, d.key.proof("GET", &d.userinfo_htu, Some(&access_tokens[i]), now)?));
        }
        dpop = Some(d);
        picker
    } else {
        Picker::new(access_tokens.len(), args.zipf)
    };
    if mode == Mode::TokenCc {
        // The first client_credentials request pays the argon2 verification; not part of the run.
        if client.token_cc(&setup, Instant::now(), true).await.is_none() {
            bail!("client_credentials failed: {}", describe(&setup));
        }
    }
    if mode == Mode::Introspect {
        // A pool the server does not call active (revoked, expired, not shown to this client) stops
        // here, before a run of errors. No warm-up request: the code exchanges above already paid
        // the client's secret verification.
        if !client.introspect(&setup, &access_tokens[0], Instant::now(), true).await {
            bail!(
                "introspecting a token of the pool failed or answered inactive: {}",
                describe(&setup)
            );
        }
    }

    let workload = Arc::new(Workload {
        mode,
        session_picker: Picker::new(sessions.len(), args.zipf),
        token_picker,
        client,
        stats,
        sessions,
        access_tokens,
        refresh_pool: Mutex::new(refresh_tokens),
        code_pool: Mutex::new(codes),
        dpop,
        presigned: args.proofs > 0,
        proof_pool: Mutex::new(proofs),
        userinfo_per_flow: args.userinfo_per_flow,
    });
    let window = Window {
        warmup: args.warmup,
        duration: args.duration,
    };
    let lag = Lag::new()?;
    // CPU is sampled from the end of the warm-up to the end of the measurement.
    let cpu = {
        let (pid, warmup, duration) = (args.server_pid, args.warmup, args.duration);
        tokio::spawn(async move {
            tokio::time::sleep(warmup + Duration::from_millis(20)).await;
            let server = pid.and_then(|p| CpuWindow::start(Some(p)));
            let client = CpuWindow::start(None);
            tokio::time::sleep(duration).await;
            (server.and_then(|s| s.finish()), client.and_then(|c| c.finish()))
        })
    };
    let (shape, rate, concurrency) = match (args.rate, args.concurrency) {
        (Some(rate), _) if rate > 0.0 => {
            // A flow sends authorize, token, k userinfo and refresh: `--rate` counts requests.
            let jobs_per_sec = match mode {
                Mode::Flow => rate / (3 + args.userinfo_per_flow) as f64,
                _ => rate,
            };
            driver::open_loop(
                Arc::clone(&workload),
                jobs_per_sec,
                window,
                args.max_outstanding,
                args.timeout,
                &lag,
            )
            .await;
            ("open", Some(rate), None)
        }
        (None, Some(c)) if c > 0 => {
            driver::closed_loop(Arc::clone(&workload), c, window, args.timeout).await;
            ("closed", None, Some(c))
        }
        _ => bail!("give --rate N (open loop, N > 0) or --concurrency C (closed loop, C > 0)"),
    };
    let (server_cpu, client_cpu) = cpu.await.unwrap_or((None, None));

    let endpoints = workload.stats.report(args.duration);
    let total_ok: u64 = endpoints.values().map(|e| e.ok).sum();
    let per_ok = |(cpu, wall): (Duration, Duration)| CpuReport {
        cores_busy: cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9),
        cpu_us_per_ok: cpu.as_secs_f64() * 1e6 / (total_ok.max(1) as f64),
    };
    let report = RunReport {
        mode: mode.as_str(),
        target: workload.client.base.clone(),
        r#loop: shape,
        rate,
        concurrency,
        duration_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        zipf: args.zipf,
        total_ok_per_sec: total_ok as f64 / args.duration.as_secs_f64().max(1e-9),
        errors: workload.stats.errors(),
        endpoints,
        send_lag_ms: lag.report(),
        server_cpu: server_cpu.map(per_ok),
        client_cpu: client_cpu.map(per_ok),
    };
    crate::emit(&report, args.json_out.as_deref(), args.json, RunReport::table)?;
    if args.fail_on_errors && report.errors > 0 {
        eprintln!("authplane-load: {} requests failed", report.errors);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What went wrong in setup, for the error message.
fn describe(stats: &Stats) -> String {
    let r = stats.report(Duration::from_secs(1));
    let parts: Vec<String> = r
        .iter()
        .flat_map(|(ep, e)| e.by_status.iter().map(move |(k, v)| format!("{ep} {k}×{v}")))
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests;
