//! Account administration in the console (`/console/accounts`, issue 14 item 8):
//! admins list the agent accounts, create one, change its roles, disable or enable
//! it and set a new password. Every form calls the admins' API use cases
//! (`case_workflows::accounts`), so the password policy, the last-admin guard, the
//! sessions ended on disable or reset and the audit rows are the same by construction.
//! A password typed here is never shown again, not even on a refusal.

use askama::Template;
use axum::{
    extract::{Form, Path, State, rejection::FormRejection},
    http::StatusCode,
    response::Response,
};
use case_domain::Role;
use case_workflows::accounts::{self as wf, ACCOUNT_ADMINS};
use serde::Deserialize;
use uuid::Uuid;

use super::{ConsoleError, Ctx, Failure, Layout, render, show_time};
use crate::{AppState, agent_auth::AgentSession, error::ApiError};

/// Who sees this page: the admins of the accounts API.
pub(super) const ACCOUNT_ADMINS_OF_PAGE: &[Role] = ACCOUNT_ADMINS;

/// The roles an agent account may hold, in the order the forms show them.
pub const AGENT_ROLES: [Role; 6] = [
    Role::Cs,
    Role::Store,
    Role::Security,
    Role::Technical,
    Role::Supervisor,
    Role::Admin,
];

/// (key, English, 简体中文): the labels of this page.
pub const LABELS: &[(&str, &str, &str)] = &[
    ("nav.accounts", "Accounts", "账号管理"),
    ("accounts.title", "Agent accounts", "坐席账号"),
    (
        "accounts.intro",
        "Create accounts, change their roles, disable them or set a new password. Disabling an account or setting its password ends its sessions at once. Every change is recorded in the audit log with your name.",
        "创建账号、调整角色、停用账号或重设密码。停用账号或重设密码会立即结束其所有会话。每项变更都会以您的名义记入审计日志。",
    ),
    ("accounts.col.username", "Username", "用户名"),
    ("accounts.col.roles", "Roles", "角色"),
    ("accounts.col.status", "Status", "状态"),
    ("accounts.col.created", "Created", "创建时间"),
    ("accounts.col.manage", "Manage", "管理"),
    ("accounts.enabled", "enabled", "启用"),
    ("accounts.disabled", "disabled since", "停用自"),
    ("accounts.disable", "Disable", "停用"),
    ("accounts.enable", "Enable", "启用"),
    (
        "accounts.change",
        "Change roles or password",
        "调整角色或密码",
    ),
    ("accounts.set_roles", "Save roles", "保存角色"),
    ("accounts.new_password", "New password", "新密码"),
    ("accounts.set_password", "Set the password", "设置密码"),
    ("accounts.create", "New account", "新建账号"),
    ("accounts.username", "Username", "用户名"),
    (
        "accounts.password",
        "Password (at least 12 characters)",
        "密码（至少12位）",
    ),
    ("accounts.roles", "Roles", "角色"),
    ("accounts.submit", "Create the account", "创建账号"),
    ("accounts.done.created", "Account created:", "账号已创建："),
    ("accounts.done.roles", "Roles changed:", "角色已调整："),
    (
        "accounts.done.disabled",
        "Account disabled:",
        "账号已停用：",
    ),
    ("accounts.done.enabled", "Account enabled:", "账号已启用："),
    ("accounts.done.password", "Password set:", "密码已设置："),
];

/// One role checkbox.
#[derive(Debug)]
pub(super) struct RoleBox {
    name: &'static str,
    label: String,
    checked: bool,
}

/// One account row.
#[derive(Debug)]
pub(super) struct AccountLine {
    id: String,
    username: String,
    roles: String,
    enabled: bool,
    disabled_since: String,
    created: String,
    role_boxes: Vec<RoleBox>,
}

#[derive(Template)]
#[template(path = "console/accounts.html")]
struct AccountsPage {
    layout: Layout,
    accounts: Vec<AccountLine>,
    new_roles: Vec<RoleBox>,
    done: Option<(String, String)>,
}

fn role_boxes(ctx: &Ctx, held: &[Role]) -> Vec<RoleBox> {
    AGENT_ROLES
        .into_iter()
        .map(|r| RoleBox {
            name: r.as_str(),
            label: ctx.ui.code("role", r.as_str()),
            checked: held.contains(&r),
        })
        .collect()
}

async fn page(
    state: &AppState,
    ctx: &Ctx,
    session: &AgentSession,
    done: Option<(&str, String)>,
) -> Result<Response, ConsoleError> {
    let rows = wf::list(&state.pool)
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    let accounts = rows
        .into_iter()
        .map(|a| AccountLine {
            id: a.id.to_string(),
            roles: a
                .roles
                .iter()
                .map(|r| ctx.ui.code("role", r.as_str()))
                .collect::<Vec<_>>()
                .join(", "),
            role_boxes: role_boxes(ctx, &a.roles),
            enabled: a.disabled_at.is_none(),
            disabled_since: a.disabled_at.map(show_time).unwrap_or_default(),
            created: show_time(a.created_at),
            username: a.username,
        })
        .collect();
    let shown = AccountsPage {
        layout: ctx.layout(ctx.ui.t("accounts.title"), Some(session)),
        accounts,
        new_roles: role_boxes(ctx, &[]),
        done: done.map(|(key, who)| (ctx.ui.t(key), who)),
    };
    Ok(render(&shown, StatusCode::OK))
}

fn admin(ctx: &Ctx, session: &AgentSession) -> Result<(), ConsoleError> {
    session.require_any(ACCOUNT_ADMINS).map_err(|e| ctx.fail(e))
}

/// The admin of a form post, with its CSRF token and origin checked.
fn admin_post(
    ctx: &Ctx,
    session: Result<AgentSession, ApiError>,
    csrf: &str,
) -> Result<AgentSession, ConsoleError> {
    let session = ctx.require_post(session, csrf)?;
    admin(ctx, &session)?;
    Ok(session)
}

/// `GET /console/accounts`: the accounts and the forms (admins only).
pub(super) async fn list(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
) -> Result<Response, ConsoleError> {
    let session = ctx.require(session)?;
    admin(&ctx, &session)?;
    page(&state, &ctx, &session, None).await
}

/// Role checkboxes of a form (`role_<name>`).
#[derive(Debug, Default, Deserialize)]
pub(super) struct RoleChecks {
    #[serde(default)]
    role_cs: Option<String>,
    #[serde(default)]
    role_store: Option<String>,
    #[serde(default)]
    role_security: Option<String>,
    #[serde(default)]
    role_technical: Option<String>,
    #[serde(default)]
    role_supervisor: Option<String>,
    #[serde(default)]
    role_admin: Option<String>,
}

impl RoleChecks {
    /// The names of the ticked roles, in [`AGENT_ROLES`] order.
    fn names(&self) -> Vec<String> {
        let ticked = [
            &self.role_cs,
            &self.role_store,
            &self.role_security,
            &self.role_technical,
            &self.role_supervisor,
            &self.role_admin,
        ];
        AGENT_ROLES
            .into_iter()
            .zip(ticked)
            .filter(|(_, on)| on.is_some())
            .map(|(r, _)| r.as_str().to_owned())
            .collect()
    }
}

/// The new-account form.
#[derive(Debug, Deserialize)]
pub(super) struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(flatten)]
    roles: RoleChecks,
}

/// `POST /console/accounts`: the API's account creation (policy, audit).
pub(super) async fn create(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    form: Result<Form<CreateForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = admin_post(&ctx, session, &form.csrf)?;
    let row = wf::create(
        &state.pool,
        &session.actor(Role::Admin),
        form.username.trim(),
        &form.password,
        &form.roles.names(),
    )
    .await
    .map_err(|e| ctx.fail(e.into()))?;
    page(
        &state,
        &ctx,
        &session,
        Some(("accounts.done.created", row.username)),
    )
    .await
}

/// A form that only carries its CSRF token (disable, enable).
#[derive(Debug, Deserialize)]
pub(super) struct PlainForm {
    #[serde(default)]
    csrf: String,
}

fn account_id(ctx: &Ctx, raw: &str) -> Result<Uuid, ConsoleError> {
    raw.parse().map_err(|_| ctx.fail(ApiError::NotFound))
}

async fn set_enabled(
    state: AppState,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    raw_id: String,
    form: Result<Form<PlainForm>, FormRejection>,
    enabled: bool,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = admin_post(&ctx, session, &form.csrf)?;
    let id = account_id(&ctx, &raw_id)?;
    let row = wf::set_enabled(&state.pool, &session.actor(Role::Admin), id, enabled)
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    let key = if enabled {
        "accounts.done.enabled"
    } else {
        "accounts.done.disabled"
    };
    page(&state, &ctx, &session, Some((key, row.username))).await
}

/// `POST /console/accounts/{id}/disable`: ends the account's sessions at once.
pub(super) async fn disable(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    Path(raw_id): Path<String>,
    form: Result<Form<PlainForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    set_enabled(state, ctx, session, raw_id, form, false).await
}

/// `POST /console/accounts/{id}/enable`.
pub(super) async fn enable(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    Path(raw_id): Path<String>,
    form: Result<Form<PlainForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    set_enabled(state, ctx, session, raw_id, form, true).await
}

/// The roles form of one account.
#[derive(Debug, Deserialize)]
pub(super) struct RolesForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    roles: RoleChecks,
}

/// `POST /console/accounts/{id}/roles`: replaces the account's roles.
pub(super) async fn roles(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    Path(raw_id): Path<String>,
    form: Result<Form<RolesForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = admin_post(&ctx, session, &form.csrf)?;
    let id = account_id(&ctx, &raw_id)?;
    let row = wf::set_roles(
        &state.pool,
        &session.actor(Role::Admin),
        id,
        &form.roles.names(),
    )
    .await
    .map_err(|e| ctx.fail(e.into()))?;
    page(
        &state,
        &ctx,
        &session,
        Some(("accounts.done.roles", row.username)),
    )
    .await
}

/// The new-password form of one account.
#[derive(Debug, Deserialize)]
pub(super) struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

/// `POST /console/accounts/{id}/password`: sets a new password (policy enforced)
/// and ends the account's sessions.
pub(super) async fn password(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    Path(raw_id): Path<String>,
    form: Result<Form<PasswordForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = admin_post(&ctx, session, &form.csrf)?;
    let id = account_id(&ctx, &raw_id)?;
    let row = wf::reset_password(&state.pool, &session.actor(Role::Admin), id, &form.password)
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    page(
        &state,
        &ctx,
        &session,
        Some(("accounts.done.password", row.username)),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_roles_are_exactly_the_agent_roles() {
        let names: Vec<&str> = AGENT_ROLES.iter().map(|r| r.as_str()).collect();
        assert!(case_domain::account::parse_roles(&names).is_ok());
        for r in Role::ALL {
            assert_eq!(
                AGENT_ROLES.contains(&r),
                r.is_agent_role(),
                "{r:?} on the forms"
            );
        }
    }

    #[test]
    fn ticked_boxes_become_role_names_in_order() {
        let on = || Some("on".to_owned());
        let checks = RoleChecks {
            role_admin: on(),
            role_cs: on(),
            ..RoleChecks::default()
        };
        assert_eq!(checks.names(), ["cs", "admin"]);
        assert!(RoleChecks::default().names().is_empty());
    }
}
