//! Console login and logout: the agent API's authentication (argon2id, the same
//! answer for every refusal, lock-out), with the session token in an HttpOnly,
//! SameSite=Strict cookie, and a double-submit token against login CSRF.

use askama::Template;
use axum::{
    extract::{Form, State, rejection::FormRejection},
    http::{StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use case_domain::{Department, Role};
use serde::Deserialize;

use super::{ConsoleError, Ctx, Failure, Layout, cookie, cookie_header, render, safe_next};
use crate::{
    AppState,
    agent::queue_roles,
    agent_auth::{self, AgentSession, SESSION_COOKIE},
    error::ApiError,
};

/// The login form's anti-CSRF cookie (a random value echoed in a hidden field).
const LOGIN_CSRF_COOKIE: &str = "reactivation_login_csrf";

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    layout: Layout,
    failed: bool,
    login_csrf: String,
    next: String,
    username: String,
}

/// Where an agent starts: supervisors on the dashboard, others on their first queue.
fn home_of(session: &AgentSession) -> Option<String> {
    if session.has(Role::Supervisor) {
        return Some("/console/dashboard".into());
    }
    [
        Department::Security,
        Department::CustomerService,
        Department::Technical,
    ]
    .into_iter()
    .find(|d| session.has_any(queue_roles(*d)))
    .map(|d| format!("/console/queue?department={}", super::department_code(d)))
    .or_else(|| {
        // A store agent has no queue: their work starts at the walk-in's number.
        super::require_api_rule(session, "get", "/v1/agent/store-visits")
            .is_ok()
            .then(|| "/console/store-visits".into())
    })
    .or_else(|| {
        // An admin's work is the accounts.
        session
            .has_any(case_workflows::accounts::ACCOUNT_ADMINS)
            .then(|| "/console/accounts".into())
    })
}

/// `/console`: the agent's start page, or the login page.
pub(super) async fn home(
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
) -> Result<Response, ConsoleError> {
    let session = ctx.require(session)?;
    match home_of(&session) {
        Some(to) => Ok(Redirect::to(&to).into_response()),
        None => Err(ctx.fail(ApiError::Forbidden(
            "Your role has no work in the console.".into(),
        ))),
    }
}

fn login_form(
    ctx: &Ctx,
    failed: bool,
    next: String,
    username: String,
    status: StatusCode,
) -> Response {
    let token = data_protection::issue_token().token;
    let page = LoginPage {
        layout: ctx.layout(ctx.ui.t("login.title"), None),
        failed,
        login_csrf: token.clone(),
        next,
        username,
    };
    let mut response = render(&page, status);
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(LOGIN_CSRF_COOKIE, &token, 3600, ctx.secure),
    );
    response
}

/// `GET /console/login`.
pub(super) async fn login_page(ctx: Ctx, session: Result<AgentSession, ApiError>) -> Response {
    let next = safe_next(ctx.param("next")).unwrap_or_default();
    if let Ok(session) = session
        && let Some(home) = home_of(&session)
    {
        return Redirect::to(if next.is_empty() { &home } else { &next }).into_response();
    }
    login_form(&ctx, false, next, String::new(), StatusCode::OK)
}

/// The login form.
#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    login_csrf: String,
    #[serde(default)]
    next: String,
}

/// `POST /console/login`.
pub(super) async fn login(
    State(state): State<AppState>,
    ctx: Ctx,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let expected = cookie(&ctx.headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty()
        || !data_protection::hashes_equal(expected.as_bytes(), form.login_csrf.as_bytes())
        || !super::same_origin(&ctx.headers)
    {
        tracing::warn!("console login refused: CSRF check failed");
        return Err(ctx.refuse(Failure::Csrf));
    }
    let next = safe_next(Some(&form.next)).unwrap_or_default();
    let username = form.username.trim();
    match agent_auth::authenticate(&state, username, &form.password)
        .await
        .map_err(|e| ctx.fail(e))?
    {
        None => {
            let kept: String = username.chars().take(64).collect();
            Ok(login_form(&ctx, true, next, kept, StatusCode::UNAUTHORIZED))
        }
        Some((agent, session)) => {
            let probe = AgentSession {
                agent,
                token_hash: data_protection::hash_token(&session.token),
            };
            let to = if next.is_empty() {
                home_of(&probe).unwrap_or_else(|| "/console".into())
            } else {
                next
            };
            let mut response = Redirect::to(&to).into_response();
            let max_age = (session.expires_at - chrono::Utc::now())
                .num_seconds()
                .max(0);
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                cookie_header(SESSION_COOKIE, &session.token, max_age, ctx.secure),
            );
            headers.append(
                header::SET_COOKIE,
                cookie_header(LOGIN_CSRF_COOKIE, "", 0, ctx.secure),
            );
            Ok(response)
        }
    }
}

/// The logout form.
#[derive(Debug, Deserialize)]
pub(super) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /console/logout`: ends the session and clears the cookie.
pub(super) async fn logout(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = ctx.require_post(session, &form.csrf)?;
    case_store::agents::end_session(&state.pool, &session.token_hash)
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    let mut response = Redirect::to("/console/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(SESSION_COOKIE, "", 0, ctx.secure),
    );
    Ok(response)
}
