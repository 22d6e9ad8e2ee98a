//! The agent web console (`/console…`): server-rendered HTML (askama templates,
//! checked at compile time) for login, department queues, the case page, decisions
//! and the supervisor dashboard, plus a small hand-written script for countdowns and
//! live updates (Server-Sent Events).
//!
//! Owns: the console's pages and forms, its session cookie, CSRF protection, the
//! language choice (zh-CN / en) and the console's security headers.
//!
//! Must not: have rules of its own. Every page and form calls the same use cases the
//! agent API calls (`case_workflows::agent`: queue, case view, claim, release,
//! decide, note, unmask, the false-positive report) and reads the same policy
//! (`case_domain::agent_policy`), so what an agent may see and do is the same in
//! both by construction. Console routes
//! are not JSON API routes and are not in the OpenAPI document.

mod accounts;
mod assets;
mod assisted;
mod auth;
mod case;
mod dashboard;
pub mod i18n;
mod i18n_supervision;
mod live;
mod progress;
mod queue;
mod reports;
mod risk_rules;
mod store_visit;
mod supervision;

use askama::Template;
use axum::{
    Router,
    extract::{FromRequestParts, Request},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use case_domain::{Department, Role};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use case_domain::agent_policy::queue_roles;

use crate::{AppState, agent_auth::AgentSession, error::ApiError};
use i18n::{LANG_COOKIE, Lang, Ui};

/// Environment variable: `true` marks console cookies `Secure` even without
/// `X-Forwarded-Proto: https` (set it when TLS ends in front of the gateway).
pub const COOKIE_SECURE_ENV: &str = "REACTIVATION_COOKIE_SECURE";

/// The console's settings, read once at start by the binary and passed in the state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// Cookies are always `Secure` ([`COOKIE_SECURE_ENV`]), not only when the proxy
    /// says the request came over TLS.
    pub cookie_secure: bool,
}

impl ConsoleConfig {
    /// Reads the settings through `lookup` (the binary passes the environment).
    /// `true`, `1` or `yes` (any case) count as true; anything else as false.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            cookie_secure: lookup(COOKIE_SECURE_ENV).is_some_and(|v| {
                matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes")
            }),
        }
    }
}

/// The console's routes (mounted by [`crate::app`]).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/console", get(auth::home))
        .route("/console/", get(auth::home))
        .route("/console/login", get(auth::login_page).post(auth::login))
        .route("/console/logout", post(auth::logout))
        .route("/console/queue", get(queue::page))
        .route("/console/dashboard", get(dashboard::page))
        .route("/console/reports", get(reports::page))
        .route("/console/events", get(live::events))
        .route("/console/cases/{case_id}", get(case::page))
        .route("/console/cases/{case_id}/claim", post(case::claim))
        .route("/console/cases/{case_id}/release", post(case::release))
        .route("/console/cases/{case_id}/actions", post(case::act))
        .route("/console/cases/{case_id}/notes", post(case::note))
        .route("/console/cases/{case_id}/unmask", post(case::unmask))
        .route(
            "/console/cases/{case_id}/reassign",
            post(supervision::reassign),
        )
        .route(
            "/console/cases/{case_id}/break-claim",
            post(supervision::break_claim),
        )
        .route(
            "/console/cases/{case_id}/escalate",
            post(supervision::escalate),
        )
        .route("/console/escalations", get(supervision::escalations))
        .route(
            "/console/risk-rules",
            get(risk_rules::show).post(risk_rules::submit),
        )
        .route(
            "/console/complaints",
            get(supervision::complaints).post(supervision::log),
        )
        .route(
            "/console/complaints/{complaint_id}/answer",
            post(supervision::answer),
        )
        .route(
            "/console/cases/{case_id}/evidence/{evidence_id}",
            get(case::evidence),
        )
        .route(
            "/console/numbers",
            get(assisted::numbers).post(assisted::lookup),
        )
        .route(
            "/console/assisted",
            get(assisted::form).post(assisted::open),
        )
        .route(
            "/console/store-visits",
            get(store_visit::form).post(store_visit::search),
        )
        .route("/console/store-visits/{case_id}", post(store_visit::record))
        .route(
            "/console/accounts",
            get(accounts::list).post(accounts::create),
        )
        .route(
            "/console/accounts/{agent_id}/disable",
            post(accounts::disable),
        )
        .route(
            "/console/accounts/{agent_id}/enable",
            post(accounts::enable),
        )
        .route("/console/accounts/{agent_id}/roles", post(accounts::roles))
        .route(
            "/console/accounts/{agent_id}/password",
            post(accounts::password),
        )
        .route("/console/static/console.js", get(assets::script))
        .route("/console/static/console.css", get(assets::stylesheet))
        .layer(middleware::from_fn_with_state(
            state.console,
            console_headers,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

/// The console's security headers (a response may set its own first) and the
/// language cookie when `?lang=` chose one.
async fn console_headers(
    axum::extract::State(config): axum::extract::State<ConsoleConfig>,
    request: Request,
    next: Next,
) -> Response {
    let chosen = query_param(request.uri().query(), "lang").and_then(|l| Lang::parse(&l));
    let secure = is_secure(config, request.headers());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let defaults: [(header::HeaderName, &str); 6] = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             frame-src 'self'; object-src 'none'; connect-src 'self'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'self'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if let Some(lang) = chosen {
        let cookie = format!(
            "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Strict{}",
            lang.tag(),
            if secure { "; Secure" } else { "" }
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    response
}

/// A cookie's value from the request.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

/// One query parameter (percent-decoded), if present.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Whether the console is served over TLS: the proxy said so, or the operator did.
fn is_secure(config: ConsoleConfig, headers: &HeaderMap) -> bool {
    config.cookie_secure
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value for a console cookie (HttpOnly, SameSite=Strict, Path=/).
fn cookie_header(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let cookie = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// What every console request knows before its handler: language, whether only the
/// main section is wanted (live refresh), the path (for links back) and TLS.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    ui: Ui,
    fragment: bool,
    secure: bool,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    method: Method,
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let query: Vec<(String, String)> = parts
            .uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default();
        let lang_param = query.iter().find(|(k, _)| k == "lang").map(|(_, v)| v);
        Ok(Self {
            ui: Ui {
                lang: Lang::choose(lang_param.map(String::as_str), &parts.headers),
            },
            fragment: parts
                .headers
                .get("x-fragment")
                .is_some_and(|v| v.as_bytes() == b"1"),
            secure: is_secure(state.console, &parts.headers),
            path: parts.uri.path().to_owned(),
            query,
            headers: parts.headers.clone(),
            method: parts.method.clone(),
        })
    }
}

impl Ctx {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The current path and query without `lang` and the one-shot `done` notice.
    fn here(&self) -> String {
        let kept: Vec<&(String, String)> = self
            .query
            .iter()
            .filter(|(k, _)| k != "lang" && k != "done")
            .collect();
        if kept.is_empty() {
            self.path.clone()
        } else {
            format!(
                "{}?{}",
                self.path,
                serde_urlencoded::to_string(kept).unwrap_or_default()
            )
        }
    }

    /// The page layout for an agent's page.
    fn layout(&self, title: String, session: Option<&AgentSession>) -> Layout {
        let here = self.here();
        let lang_links = Lang::ALL
            .into_iter()
            .map(|l| {
                let sep = if here.contains('?') { '&' } else { '?' };
                LangLink {
                    tag: l.tag(),
                    label: l.name(),
                    href: format!("{here}{sep}lang={}", l.tag()),
                    current: l == self.ui.lang,
                }
            })
            .collect();
        let agent = session.map(|s| {
            let mut links: Vec<NavLink> = [
                Department::CustomerService,
                Department::Security,
                Department::Technical,
            ]
            .into_iter()
            .filter(|d| s.has_any(queue_roles(*d)))
            .map(|d| {
                let code = department_code(d);
                let href = format!("/console/queue?department={code}");
                NavLink {
                    current: here == href,
                    label: self.ui.t(&format!("nav.queue.{code}")),
                    href,
                }
            })
            .collect();
            // The assisted channels: shown to the roles of their API routes.
            for (path, method, api, label) in [
                (
                    "/console/numbers",
                    "post",
                    "/v1/agent/numbers/lookup",
                    "nav.numbers",
                ),
                (
                    "/console/assisted",
                    "post",
                    "/v1/agent/cases",
                    "nav.assisted",
                ),
                (
                    "/console/store-visits",
                    "get",
                    "/v1/agent/store-visits",
                    "nav.store_visits",
                ),
            ] {
                if require_api_rule(s, method, api).is_ok() {
                    links.push(NavLink {
                        current: self.path == path,
                        label: self.ui.t(label),
                        href: path.into(),
                    });
                }
            }
            if s.has(Role::Supervisor) {
                links.push(NavLink {
                    current: self.path == "/console/dashboard",
                    label: self.ui.t("nav.dashboard"),
                    href: "/console/dashboard".into(),
                });
            }
            if s.has_any(accounts::ACCOUNT_ADMINS_OF_PAGE) {
                links.push(NavLink {
                    current: self.path == "/console/accounts",
                    label: self.ui.t("nav.accounts"),
                    href: "/console/accounts".into(),
                });
            }
            if require_api_rule(s, "get", reports::API_RULE).is_ok() {
                links.push(NavLink {
                    current: self.path == "/console/reports",
                    label: self.ui.t("nav.reports"),
                    href: "/console/reports".into(),
                });
            }
            for (href, key) in supervision::nav_links(s) {
                links.push(NavLink {
                    current: self.path == href,
                    label: self.ui.t(key),
                    href: href.into(),
                });
            }
            NavAgent {
                username: s.agent.username.clone(),
                roles: s
                    .roles()
                    .iter()
                    .map(|r| self.ui.code("role", r.as_str()))
                    .collect::<Vec<_>>()
                    .join(", "),
                links,
            }
        });
        Layout {
            ui: self.ui,
            fragment: self.fragment,
            title,
            agent,
            lang_links,
            csrf: session.map(csrf_token).unwrap_or_default(),
        }
    }

    /// A console failure, in this request's language.
    fn fail(&self, error: ApiError) -> ConsoleError {
        ConsoleError {
            ctx: Box::new(self.clone()),
            kind: Failure::Api(error),
        }
    }

    fn refuse(&self, kind: Failure) -> ConsoleError {
        ConsoleError {
            ctx: Box::new(self.clone()),
            kind,
        }
    }

    /// The agent of this request, or a failure (a log-in redirect for pages).
    fn require(
        &self,
        session: Result<AgentSession, ApiError>,
    ) -> Result<AgentSession, ConsoleError> {
        session.map_err(|e| self.fail(e))
    }

    /// The agent of a form post, with its CSRF token and origin checked.
    fn require_post(
        &self,
        session: Result<AgentSession, ApiError>,
        token: &str,
    ) -> Result<AgentSession, ConsoleError> {
        let session = self.require(session)?;
        if !same_origin(&self.headers) || !csrf_matches(&session, token) {
            tracing::warn!(agent_id = %session.id(), route = %self.path, "console form refused: CSRF check failed");
            return Err(self.refuse(Failure::Csrf));
        }
        Ok(session)
    }
}

/// The code a department has in console URLs.
pub(crate) fn department_code(d: Department) -> &'static str {
    match d {
        Department::CustomerService => "cs",
        Department::Security => "security",
        Department::Technical => "technical",
        Department::Subscriber => "subscriber",
    }
}

/// The CSRF token of a session: SHA-256 over a fixed label and the session token's
/// hash. It is stable for the session, unknown to anyone without the session
/// cookie (HttpOnly), and useless after logout.
pub(crate) fn csrf_token(session: &AgentSession) -> String {
    let mut input = b"reactivation-console-csrf-v1:".to_vec();
    input.extend_from_slice(&session.token_hash);
    hex(&data_protection::sha256(&input))
}

fn csrf_matches(session: &AgentSession, token: &str) -> bool {
    data_protection::hashes_equal(csrf_token(session).as_bytes(), token.trim().as_bytes())
}

/// A form post must come from a page of this origin: `Sec-Fetch-Site` (when the
/// browser sends it) is `same-origin`, and `Origin` (when sent) names this host.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        None => true,
        Some(Err(_)) => false,
        Some(Ok(origin)) => {
            let host = headers
                .get("x-forwarded-host")
                .or_else(|| headers.get(header::HOST))
                .and_then(|v| v.to_str().ok());
            let authority = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
        }
    }
}

pub(crate) use case_domain::hex;

/// A timestamp as shown before the script localises it.
pub(crate) fn show_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A timestamp for `datetime` attributes and the script.
pub(crate) fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The first eight characters of a case id (enough to tell cases apart on screen).
pub(crate) fn short_id(id: Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

/// Where a form may send the agent back to: console paths only.
pub(crate) fn safe_next(next: Option<&str>) -> Option<String> {
    next.filter(|n| {
        n.starts_with("/console")
            && !n.starts_with("//")
            && !n.contains("://")
            && !n.contains('\\')
            && n.len() <= 300
    })
    .map(str::to_owned)
}

/// The layout every page template has.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub ui: Ui,
    pub fragment: bool,
    pub title: String,
    pub agent: Option<NavAgent>,
    pub lang_links: Vec<LangLink>,
    pub csrf: String,
}

/// The signed-in agent, for the header.
#[derive(Debug, Clone)]
pub(crate) struct NavAgent {
    pub username: String,
    pub roles: String,
    pub links: Vec<NavLink>,
}

/// A navigation link.
#[derive(Debug, Clone)]
pub(crate) struct NavLink {
    pub href: String,
    pub label: String,
    pub current: bool,
}

/// A language switch link.
#[derive(Debug, Clone)]
pub(crate) struct LangLink {
    pub tag: &'static str,
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

/// Renders a template into an HTML answer.
pub(crate) fn render(template: &impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error.message = %e, "console template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    layout: Layout,
    heading: String,
    message: String,
    detail: Option<String>,
    back: String,
}

/// Why a console request was not served.
#[derive(Debug)]
pub(crate) enum Failure {
    /// What the API would have answered.
    Api(ApiError),
    /// The CSRF token or origin check failed.
    Csrf,
    /// The form could not be read.
    BadForm,
}

/// A failed console request, answered as an HTML page in the request's language
/// (or a redirect to the login page when there is no session).
#[derive(Debug)]
pub(crate) struct ConsoleError {
    ctx: Box<Ctx>,
    kind: Failure,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let ctx = self.ctx;
        let ui = ctx.ui;
        let (status, message, detail) = match self.kind {
            Failure::Api(ApiError::Unauthenticated) => {
                if ctx.fragment || ctx.method != Method::GET {
                    return (StatusCode::UNAUTHORIZED, "log in again").into_response();
                }
                let next = serde_urlencoded::to_string([("next", ctx.here())]).unwrap_or_default();
                return Redirect::to(&format!("/console/login?{next}")).into_response();
            }
            Failure::Api(ApiError::Forbidden(d) | ApiError::ForbiddenOf { detail: d, .. }) => {
                (StatusCode::FORBIDDEN, ui.t("error.forbidden"), Some(d))
            }
            Failure::Api(ApiError::NotFound) => {
                (StatusCode::NOT_FOUND, ui.t("error.not_found"), None)
            }
            Failure::Api(ApiError::Conflict(d))
            | Failure::Api(ApiError::ConflictOf { detail: d, .. })
            | Failure::Api(ApiError::Refused { detail: d, .. }) => {
                (StatusCode::CONFLICT, ui.t("error.conflict"), Some(d))
            }
            Failure::Api(
                e @ (ApiError::Invalid(_) | ApiError::Schema(_) | ApiError::Malformed(_)),
            ) => {
                let status = e.problem().status_code();
                let detail = match &e {
                    ApiError::Invalid(errors) => errors
                        .iter()
                        .map(|f| format!("{}: {}", f.field, f.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                    other => other.to_string(),
                };
                (status, ui.t("error.invalid"), Some(detail))
            }
            Failure::Api(ApiError::Unavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ui.t("error.unavailable"),
                None,
            ),
            Failure::Api(ApiError::Internal(cause)) => {
                tracing::error!(error.message = %cause, error.cause_chain = ?cause, "console request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ui.t("error.internal"),
                    None,
                )
            }
            Failure::Api(other) => (other.problem().status_code(), ui.t("error.invalid"), None),
            Failure::Csrf => (StatusCode::FORBIDDEN, ui.t("error.csrf"), None),
            Failure::BadForm => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ui.t("error.invalid"),
                None,
            ),
        };
        let back = if ctx.method == Method::GET {
            "/console".to_owned()
        } else {
            // Back to the case the form was about, else the console home.
            ctx.path
                .strip_prefix("/console/cases/")
                .and_then(|rest| rest.split('/').next())
                .and_then(|id| id.parse::<Uuid>().ok())
                .map_or_else(
                    || "/console".to_owned(),
                    |id| format!("/console/cases/{id}"),
                )
        };
        let page = ErrorPage {
            layout: Layout {
                ui,
                fragment: ctx.fragment,
                title: ui.t("error.heading"),
                agent: None,
                lang_links: vec![],
                csrf: String::new(),
            },
            heading: ui.t("error.heading"),
            message,
            detail,
            back,
        };
        render(&page, status)
    }
}

/// 403 unless the agent passes the declared rule of the agent API route `path`
/// (`crate::access::AGENT_ROUTES`): a console page shown to the same people as that
/// route. A route without a role rule denies (deny by default).
pub(crate) fn require_api_rule(
    session: &AgentSession,
    method: &str,
    path: &str,
) -> Result<(), ApiError> {
    match crate::access::rule_for(method, path) {
        Some(crate::access::Access::Roles(roles)) => session.require_any(roles),
        Some(crate::access::Access::AnyAgent) => Ok(()),
        _ => Err(ApiError::Forbidden("This page has no access rule.".into())),
    }
}

/// 403 unless the agent may read cases: the API's rule for the case view.
pub(crate) fn require_case_reader(session: &AgentSession) -> Result<(), ApiError> {
    require_api_rule(session, "get", "/v1/agent/cases/{case_id}")
}

#[cfg(test)]
mod tests {
    use case_store::agents::AgentRow;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn session(token_hash: [u8; 32]) -> AgentSession {
        AgentSession {
            agent: AgentRow {
                id: Uuid::nil(),
                username: "a".into(),
                password_hash: String::new(),
                roles: vec![Role::Security],
                created_at: Utc::now(),
                disabled_at: None,
            },
            token_hash,
        }
    }

    #[test]
    fn the_csrf_token_is_bound_to_the_session() {
        let a = session([1; 32]);
        let b = session([2; 32]);
        assert_eq!(csrf_token(&a), csrf_token(&a));
        assert_ne!(csrf_token(&a), csrf_token(&b));
        assert_eq!(csrf_token(&a).len(), 64);
        assert!(csrf_matches(&a, &csrf_token(&a)));
        assert!(!csrf_matches(&a, &csrf_token(&b)));
        assert!(!csrf_matches(&a, ""));
        // The token is not the session's hash itself.
        assert_ne!(csrf_token(&a), hex(&[1; 32]));
    }

    #[test]
    fn forms_must_come_from_this_origin() {
        assert!(same_origin(&headers(&[])));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        let ok = headers(&[
            ("host", "console.example:8080"),
            ("origin", "https://console.example:8080"),
        ]);
        assert!(same_origin(&ok));
        let evil = headers(&[
            ("host", "console.example:8080"),
            ("origin", "https://evil.example"),
        ]);
        assert!(!same_origin(&evil));
        assert!(!same_origin(&headers(&[("host", "a"), ("origin", "null")])));
        assert!(!same_origin(&headers(&[("origin", "https://a")])));
        let proxied = headers(&[
            ("host", "gateway:8080"),
            ("x-forwarded-host", "console.example"),
            ("origin", "https://console.example"),
        ]);
        assert!(same_origin(&proxied));
    }

    #[test]
    fn only_console_paths_are_followed_after_a_form() {
        assert_eq!(
            safe_next(Some("/console/queue?department=cs")).as_deref(),
            Some("/console/queue?department=cs")
        );
        for bad in [
            "//evil.example/console",
            "https://evil.example/console",
            "/v1/agent/cases",
            "/console\\..\\x",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad}");
        }
        assert_eq!(safe_next(None), None);
    }

    #[test]
    fn cookies_and_query_parameters_are_read_exactly() {
        let h = headers(&[("cookie", "a=1; reactivation_lang=en"), ("cookie", "x=y")]);
        assert_eq!(cookie(&h, "reactivation_lang").as_deref(), Some("en"));
        assert_eq!(cookie(&h, "x").as_deref(), Some("y"));
        assert_eq!(cookie(&h, "reactivation"), None);
        assert_eq!(
            query_param(Some("department=cs&lang=zh-CN"), "lang").as_deref(),
            Some("zh-CN")
        );
        assert_eq!(
            query_param(Some("next=%2Fconsole"), "next").as_deref(),
            Some("/console")
        );
        assert_eq!(query_param(None, "lang"), None);
    }

    #[test]
    fn console_pages_follow_the_declared_api_rules() {
        for role in Role::ALL {
            let mut s = session([3; 32]);
            s.agent.roles = vec![role];
            assert_eq!(
                require_case_reader(&s).is_ok(),
                case_domain::agent_policy::CASE_READERS.contains(&role),
                "{role:?}"
            );
            assert_eq!(
                require_api_rule(&s, "get", "/v1/agent/reports/false-positives").is_ok(),
                role == Role::Supervisor,
                "{role:?}"
            );
            assert!(require_api_rule(&s, "get", "/console/nowhere").is_err());
        }
    }

    #[test]
    fn secure_cookies_follow_the_forwarded_protocol() {
        let plain_config = ConsoleConfig::default();
        assert!(is_secure(
            plain_config,
            &headers(&[("x-forwarded-proto", "https")])
        ));
        assert!(!is_secure(plain_config, &headers(&[])));
        let forced = ConsoleConfig::from_lookup(|_| Some(" YES ".into()));
        assert!(is_secure(forced, &headers(&[])));
        assert!(!ConsoleConfig::from_lookup(|_| Some("on".into())).cookie_secure);
        let plain = cookie_header("n", "v", 60, false);
        assert_eq!(plain, "n=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=60");
        let secure = cookie_header("n", "v", 60, true);
        assert!(secure.to_str().unwrap().ends_with("; Secure"));
    }
}
