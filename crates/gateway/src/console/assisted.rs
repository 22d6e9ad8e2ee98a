//! Console pages of the agent-assisted channels: search by number
//! (`/console/numbers`) and the assisted opening (`/console/assisted`). Both call
//! the use cases of the agent API (`case_workflows::assisted`), so roles, audit, the
//! lookup limit and the token SMS are the same by construction. The number is posted
//! in a form body, never put in a URL.

use askama::Template;
use axum::{
    extract::{Form, State, rejection::FormRejection},
    http::StatusCode,
    response::Response,
};
use case_workflows::{
    assisted::{self as wf, Lookup},
    customer::{Opening, RetryKey},
};
use serde::Deserialize;
use uuid::Uuid;

use super::{ConsoleError, Ctx, Failure, Layout, render, short_id, show_time};
use crate::{
    AppState,
    agent_auth::AgentSession,
    assisted::{AssistedCaseRequest, LookupResponse, assisted_request, lookup_view},
    error::ApiError,
};

/// (key, English, 简体中文): the labels of these pages.
pub const LABELS: &[(&str, &str, &str)] = &[
    ("nav.numbers", "Search by number", "按号码查询"),
    ("nav.assisted", "Open a case", "代客受理"),
    ("numbers.title", "Search by number", "按号码查询"),
    (
        "numbers.intro",
        "Shows the number's open cases and those of the last 90 days. Every search is recorded in the audit log with your name; searches are limited per hour.",
        "显示该号码的在办案件及近90天的案件。每次查询都会以您的名义记入审计日志；每小时查询次数有限。",
    ),
    ("numbers.msisdn", "Mobile number (+86…)", "手机号码（+86…）"),
    ("numbers.submit", "Search", "查询"),
    ("numbers.result", "Cases of", "号码案件："),
    (
        "numbers.none",
        "This number has no open or recent case.",
        "该号码没有在办或近期案件。",
    ),
    ("numbers.col.case", "Case", "案件"),
    ("numbers.col.state", "State", "状态"),
    ("numbers.col.channel", "Channel", "渠道"),
    ("numbers.col.identity", "Identity", "身份"),
    ("numbers.col.opened_by", "Opened by", "受理坐席"),
    ("numbers.col.opened", "Opened", "提交时间"),
    ("numbers.proven", "proven", "已验证"),
    ("numbers.not_proven", "not proven", "未验证"),
    ("numbers.subscriber", "subscriber", "用户本人"),
    (
        "numbers.open_for",
        "Open a case for this number",
        "为该号码代客受理",
    ),
    (
        "numbers.limited",
        "You have used up your number searches for this hour. Try again later.",
        "您本小时的号码查询次数已用完，请稍后再试。",
    ),
    (
        "assisted.title",
        "Open a case for a caller",
        "代客受理复机申请",
    ),
    (
        "assisted.intro",
        "Opens a reactivation case on the caller's behalf. The case token goes by SMS to the contact on file with the carrier, never to you. A hotline call does not prove identity alone: the caller then proves with the code sent to them or with the service password. At a store, the original ID card seen in person with the face compared proves identity by itself.",
        "代来电用户提交复机申请。申请凭证将以短信发送到运营商登记的联系方式，不会显示给您。热线通话本身不足以证明身份：来电用户还需使用收到的验证码或服务密码完成验证。在营业厅当面核验身份证原件并比对本人，可直接证明身份。",
    ),
    (
        "assisted.msisdn",
        "Suspended number (+86…)",
        "停机号码（+86…）",
    ),
    (
        "assisted.full_name",
        "Full name as on the ID card",
        "身份证姓名",
    ),
    ("assisted.id_number", "Resident ID number", "身份证号码"),
    ("assisted.channel", "Channel", "受理渠道"),
    ("assisted.check", "How identity was checked", "身份核验方式"),
    ("assisted.locale", "Language of the case", "案件语言"),
    ("assisted.submit", "Open the case", "提交申请"),
    ("assisted.opened", "Case opened", "申请已提交"),
    (
        "assisted.token_sent",
        "The case token was sent by SMS to the contact on file. Ask the caller to open it on the web or in the app and prove their identity with the code or the service password.",
        "申请凭证已通过短信发送到登记的联系方式。请来电用户在网页或App中使用该凭证，并通过验证码或服务密码完成身份验证。",
    ),
    ("assisted.view_case", "View the case", "查看案件"),
    ("assisted.another", "Open another case", "继续受理"),
    ("channel.hotline", "Hotline", "客服热线"),
    ("channel.store", "Store", "营业厅"),
    ("channel.web", "Web", "网页"),
    ("channel.app", "App", "App"),
    (
        "assisted_check.in_person_id",
        "Original ID card seen in person, face compared (proves identity by itself)",
        "已当面核验身份证原件并比对本人（可直接证明身份）",
    ),
    (
        "assisted_check.hotline_call",
        "Hotline call (the caller still proves with a code or the service password)",
        "热线通话（来电用户仍需通过验证码或服务密码验证）",
    ),
    ("locale.zh-CN", "Chinese", "中文"),
    ("locale.en", "English", "英文"),
];

/// A channel or check choice on the form.
#[derive(Debug)]
pub(super) struct Choice {
    value: &'static str,
    label: String,
}

/// One case row.
#[derive(Debug)]
pub(super) struct CaseLine {
    id: String,
    short_id: String,
    state: String,
    state_label: String,
    channel_label: String,
    proven: bool,
    opened_by: Option<String>,
    opened: String,
}

#[derive(Template)]
#[template(path = "console/numbers.html")]
struct NumbersPage {
    layout: Layout,
    msisdn: String,
    result: Option<String>,
    cases: Vec<CaseLine>,
    limited: bool,
    may_open: bool,
}

#[derive(Template)]
#[template(path = "console/assisted.html")]
struct AssistedPage {
    layout: Layout,
    request_key: String,
    channels: Vec<Choice>,
    checks: Vec<Choice>,
    opened: Option<Opened>,
}

/// What the confirmation shows.
#[derive(Debug)]
pub(super) struct Opened {
    id: String,
    short_id: String,
    msisdn: String,
    state_label: String,
}

fn may_open(session: &AgentSession) -> bool {
    super::require_api_rule(session, "post", "/v1/agent/cases").is_ok()
}

fn numbers_page(
    ctx: &Ctx,
    session: &AgentSession,
    msisdn: String,
    found: Option<LookupResponse>,
    limited: bool,
) -> NumbersPage {
    let ui = ctx.ui;
    let (result, cases) = match found {
        Some(found) => (
            Some(found.msisdn),
            found
                .cases
                .into_iter()
                .map(|c| CaseLine {
                    id: c.case_id.to_string(),
                    short_id: short_id(c.case_id),
                    state_label: ui.code("state", &c.state),
                    state: c.state,
                    channel_label: ui.code("channel", &c.channel),
                    proven: c.identity_proven,
                    opened_by: c.opened_by,
                    opened: show_time(c.created_at),
                })
                .collect(),
        ),
        None => (None, vec![]),
    };
    NumbersPage {
        layout: ctx.layout(ui.t("numbers.title"), Some(session)),
        msisdn,
        result,
        cases,
        limited,
        may_open: may_open(session),
    }
}

/// `GET /console/numbers`: the search form (for the roles of the lookup route).
pub(super) async fn numbers(
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
) -> Result<Response, ConsoleError> {
    let session = ctx.require(session)?;
    super::require_api_rule(&session, "post", "/v1/agent/numbers/lookup")
        .map_err(|e| ctx.fail(e))?;
    Ok(render(
        &numbers_page(&ctx, &session, String::new(), None, false),
        StatusCode::OK,
    ))
}

/// The search form.
#[derive(Debug, Deserialize)]
pub(super) struct LookupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    msisdn: String,
}

/// `POST /console/numbers`: the API's lookup use case (role, audit, limit); the
/// number's cases on this answer only.
pub(super) async fn lookup(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    form: Result<Form<LookupForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = ctx.require_post(session, &form.csrf)?;
    let msisdn = form.msisdn.trim().to_owned();
    let found = wf::lookup_number(&state.pool, &state.keys, &session.as_agent(), &msisdn)
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    let (page, status) = match found {
        Lookup::Found {
            msisdn_masked,
            cases,
        } => (
            numbers_page(
                &ctx,
                &session,
                msisdn,
                Some(lookup_view(msisdn_masked, cases)),
                false,
            ),
            StatusCode::OK,
        ),
        Lookup::Limited { .. } => (
            numbers_page(&ctx, &session, msisdn, None, true),
            StatusCode::TOO_MANY_REQUESTS,
        ),
    };
    Ok(render(&page, status))
}

fn assisted_page(ctx: &Ctx, session: &AgentSession, opened: Option<Opened>) -> AssistedPage {
    let ui = ctx.ui;
    let roles = session.roles();
    let channels = [case_domain::Channel::Hotline, case_domain::Channel::Store]
        .into_iter()
        .filter(|c| {
            case_domain::assisted::opening_roles(*c)
                .iter()
                .any(|r| roles.contains(r))
        })
        .map(|c| Choice {
            value: c.as_str(),
            label: ui.code("channel", c.as_str()),
        })
        .collect();
    let checks = case_domain::assisted::AssistedCheck::ALL
        .into_iter()
        .filter(|c| {
            case_domain::assisted::opening_roles(c.channel())
                .iter()
                .any(|r| roles.contains(r))
        })
        .map(|c| Choice {
            value: c.as_str(),
            label: ui.code("assisted_check", c.as_str()),
        })
        .collect();
    AssistedPage {
        layout: ctx.layout(ui.t("assisted.title"), Some(session)),
        // A fresh retry key per form: a double submit opens one case.
        request_key: Uuid::new_v4().to_string(),
        channels,
        checks,
        opened,
    }
}

/// `GET /console/assisted`: the opening form (for the roles of the opening route).
pub(super) async fn form(
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
) -> Result<Response, ConsoleError> {
    let session = ctx.require(session)?;
    super::require_api_rule(&session, "post", "/v1/agent/cases").map_err(|e| ctx.fail(e))?;
    Ok(render(&assisted_page(&ctx, &session, None), StatusCode::OK))
}

/// The opening form.
#[derive(Debug, Deserialize)]
pub(super) struct OpenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    request_key: String,
    #[serde(default)]
    msisdn: String,
    #[serde(default)]
    full_name: String,
    #[serde(default)]
    id_number: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    identity_check: String,
    #[serde(default)]
    locale: String,
}

/// `POST /console/assisted`: the API's opening use case, with the form's own retry
/// key (the same form sent twice opens one case).
pub(super) async fn open(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    form: Result<Form<OpenForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = ctx.require_post(session, &form.csrf)?;
    let request = AssistedCaseRequest {
        msisdn: form.msisdn.trim().to_owned(),
        full_name: form.full_name,
        id_number: form.id_number.trim().to_owned(),
        channel: form.channel,
        identity_check: form.identity_check,
        locale: Some(form.locale).filter(|l| !l.is_empty()),
    };
    let fingerprint = data_protection::sha256(
        serde_json::json!([
            request.msisdn,
            request.full_name,
            request.id_number,
            request.channel,
            request.identity_check,
            request.locale,
        ])
        .to_string()
        .as_bytes(),
    );
    let key = form.request_key.trim();
    let retry = (!key.is_empty() && key.len() <= 255 && key.bytes().all(|b| b.is_ascii_graphic()))
        .then_some(RetryKey { key, fingerprint });
    let opening = wf::open_for_subscriber(
        &state.pool,
        &state.keys,
        &session.as_agent(),
        assisted_request(request),
        retry,
    )
    .await
    .map_err(|e| ctx.fail(e.into()))?;
    let opened = match opening {
        Opening::Opened(o) => {
            crate::customer::grade_in_background(&state, o.case_id);
            o
        }
        Opening::Replayed { answer: o, .. } => o,
        Opening::KeyReused => return Err(ctx.fail(ApiError::IdempotencyMismatch)),
        Opening::KeyInFlight => return Err(ctx.fail(ApiError::IdempotencyInFlight)),
    };
    let shown = Opened {
        id: opened.case_id.to_string(),
        short_id: short_id(opened.case_id),
        msisdn: opened.msisdn_masked,
        state_label: ctx.ui.code("state", opened.state.as_str()),
    };
    Ok(render(
        &assisted_page(&ctx, &session, Some(shown)),
        StatusCode::OK,
    ))
}
