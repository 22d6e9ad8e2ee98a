//! Who may call which agent route: one declared rule per route, enforced by a
//! middleware before any handler runs (deny by default: a route without a rule
//! answers 403), and read by the role-matrix test.

use axum::{
    extract::{FromRequestParts, MatchedPath, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use case_domain::{
    Role,
    agent_policy::{CASE_READERS, DOSSIER_READERS, STORE_AGENTS, SUPERVISORS, UNMASKERS},
};

use crate::{AppState, agent_auth::AgentSession, error::ApiError};

/// An access rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No session needed (login).
    Public,
    /// Any logged-in agent.
    AnyAgent,
    /// Logged-in agents holding one of these roles.
    Roles(&'static [Role]),
    /// A department queue: the roles of the department named in the query.
    DepartmentQueue,
    /// Work on one case: agents whose role may act in the case's current state (per
    /// the transition table); while another agent holds the case, 409.
    CaseWork,
}

/// The rule of every agent route: (method, path, rule).
pub const AGENT_ROUTES: &[(&str, &str, Access)] = &[
    ("post", "/v1/agent/login", Access::Public),
    ("post", "/v1/agent/logout", Access::AnyAgent),
    ("get", "/v1/agent/queue", Access::DepartmentQueue),
    (
        "get",
        "/v1/agent/cases/{case_id}",
        Access::Roles(CASE_READERS),
    ),
    (
        "post",
        "/v1/agent/cases/{case_id}/actions",
        Access::CaseWork,
    ),
    ("post", "/v1/agent/cases/{case_id}/claim", Access::CaseWork),
    (
        "post",
        "/v1/agent/cases/{case_id}/release",
        Access::CaseWork,
    ),
    (
        "post",
        "/v1/agent/cases/{case_id}/notes",
        Access::Roles(CASE_READERS),
    ),
    (
        "post",
        "/v1/agent/cases/{case_id}/unmask",
        Access::Roles(UNMASKERS),
    ),
    (
        "get",
        "/v1/agent/reports/false-positives",
        Access::Roles(SUPERVISORS),
    ),
    (
        "get",
        "/v1/agent/reports/{report}",
        Access::Roles(SUPERVISORS),
    ),
    ("get", "/v1/agent/exports/cases", Access::Roles(SUPERVISORS)),
    ("get", "/v1/agent/escalations", Access::Roles(SUPERVISORS)),
    // The risk rules: the audience of the false-positive report.
    ("get", "/v1/agent/risk-rules", Access::Roles(SUPERVISORS)),
    ("post", "/v1/agent/risk-rules", Access::Roles(SUPERVISORS)),
    (
        "post",
        "/v1/agent/risk-rules/replay",
        Access::Roles(SUPERVISORS),
    ),
    ("get", "/v1/agent/store-visits", Access::Roles(STORE_AGENTS)),
    (
        "post",
        "/v1/agent/cases/{case_id}/store-visit",
        Access::Roles(STORE_AGENTS),
    ),
    (
        "post",
        "/v1/agent/cases/{case_id}/complaints/{complaint_id}/answer",
        Access::Roles(CASE_READERS),
    ),
    (
        "get",
        "/v1/agent/complaints",
        Access::Roles(crate::complaints::COMPLAINT_SUPERVISORS),
    ),
    (
        "post",
        "/v1/agent/complaints",
        Access::Roles(crate::complaints::COMPLAINT_LOGGERS),
    ),
    (
        "post",
        "/v1/agent/complaints/{complaint_id}/answer",
        Access::Roles(CASE_READERS),
    ),
    (
        "post",
        "/v1/agent/cases/{case_id}/reassign",
        Access::Roles(case_domain::supervision::REASSIGNERS),
    ),
    (
        "post",
        "/v1/agent/cases/{case_id}/break-claim",
        Access::Roles(case_domain::supervision::REASSIGNERS),
    ),
    (
        "post",
        "/v1/agent/cases/{case_id}/escalate",
        Access::Roles(case_domain::supervision::ESCALATORS),
    ),
    (
        "get",
        "/v1/agent/cases/{case_id}/dossier",
        Access::Roles(DOSSIER_READERS),
    ),
    (
        "get",
        "/v1/agent/cases/{case_id}/events",
        Access::Roles(CASE_READERS),
    ),
    (
        "post",
        "/v1/agent/webhook-endpoints",
        Access::Roles(crate::webhooks::ENDPOINT_ADMINS),
    ),
    (
        "get",
        "/v1/agent/webhook-endpoints",
        Access::Roles(crate::webhooks::ENDPOINT_ADMINS),
    ),
    (
        "delete",
        "/v1/agent/webhook-endpoints/{endpoint_id}",
        Access::Roles(crate::webhooks::ENDPOINT_ADMINS),
    ),
    (
        "get",
        "/v1/agent/webhook-endpoints/{endpoint_id}/deliveries",
        Access::Roles(crate::webhooks::ENDPOINT_ADMINS),
    ),
    (
        "post",
        "/v1/agent/webhook-endpoints/{endpoint_id}/rotate-secret",
        Access::Roles(crate::webhooks::ENDPOINT_ADMINS),
    ),
    (
        "get",
        "/v1/agent/admin/dead-letters",
        Access::Roles(crate::dead_letters::DEAD_LETTER_ADMINS),
    ),
    (
        "post",
        "/v1/agent/admin/dead-letters/{queue}/{id}/retry",
        Access::Roles(crate::dead_letters::DEAD_LETTER_ADMINS),
    ),
    (
        "get",
        "/v1/agent/audit",
        Access::Roles(crate::audit::AUDIT_READERS),
    ),
    (
        "get",
        "/v1/agent/admin/agents",
        Access::Roles(crate::accounts::ACCOUNT_ADMINS),
    ),
    (
        "post",
        "/v1/agent/admin/agents",
        Access::Roles(crate::accounts::ACCOUNT_ADMINS),
    ),
    (
        "post",
        "/v1/agent/admin/agents/{agent_id}/disable",
        Access::Roles(crate::accounts::ACCOUNT_ADMINS),
    ),
    (
        "post",
        "/v1/agent/admin/agents/{agent_id}/enable",
        Access::Roles(crate::accounts::ACCOUNT_ADMINS),
    ),
    (
        "put",
        "/v1/agent/admin/agents/{agent_id}/roles",
        Access::Roles(crate::accounts::ACCOUNT_ADMINS),
    ),
    (
        "post",
        "/v1/agent/admin/agents/{agent_id}/password",
        Access::Roles(crate::accounts::ACCOUNT_ADMINS),
    ),
    (
        "post",
        "/v1/agent/numbers/lookup",
        Access::Roles(crate::assisted::LOOKUP_ROLES),
    ),
    (
        "post",
        "/v1/agent/cases",
        Access::Roles(crate::assisted::OPENERS),
    ),
];

/// The rule for a route, if declared.
pub fn rule_for(method: &str, path: &str) -> Option<Access> {
    AGENT_ROUTES
        .iter()
        .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == path)
        .map(|(_, _, a)| *a)
}

/// What a page on another site can make a browser send is refused on the state-changing
/// agent routes (anything but GET, HEAD and OPTIONS):
/// - a body must be `application/json` (a form or `text/plain` post is 415);
/// - the session must come as a bearer token: a browser attaches the console's cookie
///   by itself, never an `Authorization` header, so a cookie alone is 403 here. (The
///   console's own forms post to `/console/…` with their per-session CSRF token; its
///   script only reads the agent API, the live stream.)
///
/// Bodiless calls (claim, release, logout, …) need no content type.
#[allow(clippy::result_large_err)]
fn refuse_forgeable(request: &Request, rule: Access) -> Result<(), Response> {
    use axum::http::{Method, header};
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return Ok(());
    }
    let headers = request.headers();
    let content_type = headers.get(header::CONTENT_TYPE);
    let has_body = content_type.is_some()
        || axum::body::HttpBody::size_hint(request.body()).exact() != Some(0)
        || headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if has_body && !content_type.is_some_and(is_json) {
        return Err(ApiError::UnsupportedMedia(
            "This call takes a JSON body: send Content-Type: application/json.".into(),
        )
        .into_response());
    }
    if rule != Access::Public {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer "));
        if !bearer && headers.contains_key(header::COOKIE) {
            return Err(service_runtime::Problem::new(
                axum::http::StatusCode::FORBIDDEN,
                "bearer-required",
                "Bearer token required",
                "State-changing calls of the agent API take the session as a bearer token (Authorization: Bearer …); a cookie is not accepted here.",
            )
            .into_response());
        }
    }
    Ok(())
}

/// `application/json`, with parameters (`; charset=utf-8`) or not, in any case.
fn is_json(value: &axum::http::HeaderValue) -> bool {
    value.to_str().is_ok_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// Enforces the declared rule of `/v1/agent/…` routes before their handlers.
pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let Some(path) = path.filter(|p| p.starts_with("/v1/agent/")) else {
        return next.run(request).await;
    };
    let Some(rule) = rule_for(request.method().as_str(), &path) else {
        tracing::error!(route = %path, "agent route without an access rule: denied");
        return ApiError::Forbidden("This route has no access rule.".into()).into_response();
    };
    if let Err(refusal) = refuse_forgeable(&request, rule) {
        return refusal;
    }
    let (mut parts, body) = request.into_parts();
    let needed: Option<&[Role]> = match rule {
        Access::Public => None,
        Access::AnyAgent | Access::DepartmentQueue | Access::CaseWork => Some(&[]),
        Access::Roles(roles) => Some(roles),
    };
    if let Some(roles) = needed {
        let session = match AgentSession::from_request_parts(&mut parts, &state).await {
            Ok(s) => s,
            Err(e) => return e.into_response(),
        };
        if !roles.is_empty() && !session.has_any(roles) {
            return ApiError::Forbidden("Your role may not do this.".into()).into_response();
        }
    }
    next.run(Request::from_parts(parts, body)).await
}
