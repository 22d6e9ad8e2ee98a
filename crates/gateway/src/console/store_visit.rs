//! The store-visit page of the console (`/console/store-visits`, issue 14 items 2
//! and 8): a store agent (or a supervisor) looks the walk-in's number up among the
//! cases waiting for a store visit and records the in-person check — the original
//! documents seen, the ID number typed from the card, the face compared. Both steps
//! call the agent API's use cases (`case_workflows::store_visit`), so the roles, the
//! audit rows and the ID-number comparison are the same by construction. The number
//! is posted in a form body, never put in a URL.

use askama::Template;
use axum::{
    extract::{Form, Path, State, rejection::FormRejection},
    http::StatusCode,
    response::Response,
};
use case_workflows::store_visit::{self as wf, DOCUMENTS, StoreVisitRequest};
use serde::Deserialize;

use super::{ConsoleError, Ctx, Failure, Layout, render, short_id, show_time};
use crate::{AppState, agent::case_id, agent_auth::AgentSession, error::ApiError};

/// The API route whose roles may use this page.
const LOOKUP_API: &str = "/v1/agent/store-visits";

/// (key, English, 简体中文): the labels of this page.
pub const LABELS: &[(&str, &str, &str)] = &[
    ("nav.store_visits", "Store visits", "到店核验"),
    ("store.title", "Store visits", "到店核验"),
    (
        "store.intro",
        "For subscribers asked to come to a store: search the number, check the original ID card in person, compare the face with its photo, and record the check. The case then goes on to the security department. Every search and every check is recorded in the audit log with your name.",
        "适用于被要求到营业厅办理的用户：查询号码，当面核验身份证原件并比对本人与证件照片，然后登记核验结果。案件随后转交安全部门。每次查询和核验都会以您的名义记入审计日志。",
    ),
    ("store.msisdn", "Mobile number (+86…)", "手机号码（+86…）"),
    ("store.search", "Search", "查询"),
    (
        "store.result",
        "Cases waiting for a store visit:",
        "等待到店核验的案件：",
    ),
    (
        "store.none",
        "No case of this number is waiting for a store visit.",
        "该号码没有等待到店核验的案件。",
    ),
    ("store.case", "Case", "案件"),
    ("store.opened", "Opened", "提交时间"),
    ("store.waiting_since", "Waiting since", "等待自"),
    (
        "store.documents",
        "Original documents seen",
        "已查验的证件原件",
    ),
    (
        "store.id_number",
        "ID number on the card",
        "证件上的身份证号码",
    ),
    (
        "store.face",
        "I compared the face with the card's photo",
        "已比对本人与证件照片",
    ),
    ("store.record", "Record the store visit", "登记到店核验"),
    ("store.recorded", "Store visit recorded", "到店核验已登记"),
    (
        "store.recorded_text",
        "The case goes on to the security department; the subscriber is told by SMS.",
        "案件已转交安全部门，系统将以短信通知用户。",
    ),
    ("store.now", "Now", "当前状态"),
    ("store.another", "Next visitor", "接待下一位"),
    (
        "document.resident_id_card",
        "Resident ID card",
        "居民身份证",
    ),
    (
        "document.temporary_id_card",
        "Temporary ID card",
        "临时居民身份证",
    ),
    (
        "document.household_register",
        "Household register",
        "户口簿",
    ),
    (
        "document.police_release_letter",
        "Police release letter",
        "公安机关解除说明",
    ),
    (
        "document.other_official_document",
        "Other official document",
        "其他官方证件",
    ),
];

/// A document checkbox.
#[derive(Debug)]
pub(super) struct DocumentChoice {
    code: &'static str,
    label: String,
}

/// A case waiting for a visit, with what its form needs.
#[derive(Debug)]
pub(super) struct WaitingLine {
    id: String,
    short_id: String,
    version: i32,
    opened: String,
    waiting_since: String,
}

/// What the confirmation shows.
#[derive(Debug)]
pub(super) struct Recorded {
    id: String,
    short_id: String,
    state: String,
    state_label: String,
}

#[derive(Template)]
#[template(path = "console/store_visits.html")]
struct StoreVisitsPage {
    layout: Layout,
    msisdn: String,
    result: Option<String>,
    cases: Vec<WaitingLine>,
    documents: Vec<DocumentChoice>,
    recorded: Option<Recorded>,
}

fn page(
    ctx: &Ctx,
    session: &AgentSession,
    msisdn: String,
    found: Option<(String, Vec<WaitingLine>)>,
    recorded: Option<Recorded>,
) -> StoreVisitsPage {
    let ui = ctx.ui;
    let (result, cases) = match found {
        Some((masked, cases)) => (Some(masked), cases),
        None => (None, vec![]),
    };
    StoreVisitsPage {
        layout: ctx.layout(ui.t("store.title"), Some(session)),
        msisdn,
        result,
        cases,
        documents: DOCUMENTS
            .into_iter()
            .map(|code| DocumentChoice {
                code,
                label: ui.code("document", code),
            })
            .collect(),
        recorded,
    }
}

/// `GET /console/store-visits`: the search form (for the roles of the lookup route).
pub(super) async fn form(
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
) -> Result<Response, ConsoleError> {
    let session = ctx.require(session)?;
    super::require_api_rule(&session, "get", LOOKUP_API).map_err(|e| ctx.fail(e))?;
    Ok(render(
        &page(&ctx, &session, String::new(), None, None),
        StatusCode::OK,
    ))
}

/// The search form.
#[derive(Debug, Deserialize)]
pub(super) struct SearchForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    msisdn: String,
}

/// `POST /console/store-visits`: the API's lookup use case (role, audit).
pub(super) async fn search(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    form: Result<Form<SearchForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = ctx.require_post(session, &form.csrf)?;
    let msisdn = form.msisdn.trim().to_owned();
    let cases = wf::lookup(&state.pool, &session.as_agent(), &msisdn)
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    // The lookup accepted the number: it parses.
    let masked = case_domain::Msisdn::parse(&msisdn)
        .map(|m| m.masked())
        .unwrap_or_default();
    let lines = cases
        .into_iter()
        .map(|c| WaitingLine {
            id: c.id.to_string(),
            short_id: short_id(c.id),
            version: c.version,
            opened: show_time(c.created_at),
            waiting_since: show_time(c.state_entered_at),
        })
        .collect();
    Ok(render(
        &page(&ctx, &session, msisdn, Some((masked, lines)), None),
        StatusCode::OK,
    ))
}

/// The in-person check form: one checkbox per document (`doc_<code>`).
#[derive(Debug, Deserialize)]
pub(super) struct RecordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    expected_version: String,
    #[serde(default)]
    id_number: String,
    #[serde(default)]
    face_compared: Option<String>,
    #[serde(default)]
    doc_resident_id_card: Option<String>,
    #[serde(default)]
    doc_temporary_id_card: Option<String>,
    #[serde(default)]
    doc_household_register: Option<String>,
    #[serde(default)]
    doc_police_release_letter: Option<String>,
    #[serde(default)]
    doc_other_official_document: Option<String>,
}

impl RecordForm {
    /// The codes of the ticked documents, in [`DOCUMENTS`] order.
    fn documents(&self) -> Vec<String> {
        let ticked = [
            &self.doc_resident_id_card,
            &self.doc_temporary_id_card,
            &self.doc_household_register,
            &self.doc_police_release_letter,
            &self.doc_other_official_document,
        ];
        DOCUMENTS
            .into_iter()
            .zip(ticked)
            .filter(|(_, on)| on.is_some())
            .map(|(code, _)| code.to_owned())
            .collect()
    }
}

/// `POST /console/store-visits/{case_id}`: the API's recording use case (role,
/// ID-number comparison, audit, the transition).
pub(super) async fn record(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    Path(raw_case_id): Path<String>,
    form: Result<Form<RecordForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = ctx.require_post(session, &form.csrf)?;
    let case = case_id(&raw_case_id).map_err(|e| ctx.fail(e))?;
    let Ok(expected_version) = form.expected_version.trim().parse::<i32>() else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let view = wf::record(
        &state.pool,
        &state.sla,
        &state.keys,
        &session.as_agent(),
        case,
        StoreVisitRequest {
            expected_version,
            documents_seen: form.documents(),
            id_number: form.id_number.clone(),
            face_compared: form.face_compared.is_some(),
        },
    )
    .await
    .map_err(|e| ctx.fail(e.into()))?;
    let recorded = Recorded {
        id: view.case_id.to_string(),
        short_id: short_id(view.case_id),
        state: view.state.as_str().to_owned(),
        state_label: ctx.ui.code("state", view.state.as_str()),
    };
    Ok(render(
        &page(&ctx, &session, String::new(), None, Some(recorded)),
        StatusCode::OK,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(docs: [bool; 5]) -> RecordForm {
        let on = |b: bool| b.then(|| "on".to_owned());
        RecordForm {
            csrf: String::new(),
            expected_version: "3".into(),
            id_number: String::new(),
            face_compared: None,
            doc_resident_id_card: on(docs[0]),
            doc_temporary_id_card: on(docs[1]),
            doc_household_register: on(docs[2]),
            doc_police_release_letter: on(docs[3]),
            doc_other_official_document: on(docs[4]),
        }
    }

    #[test]
    fn ticked_checkboxes_become_the_document_codes_in_order() {
        assert!(form([false; 5]).documents().is_empty());
        assert_eq!(
            form([true, false, false, true, false]).documents(),
            ["resident_id_card", "police_release_letter"]
        );
        assert_eq!(form([true; 5]).documents(), DOCUMENTS);
    }

    #[test]
    fn every_document_has_a_label_in_both_languages() {
        for code in DOCUMENTS {
            let key = format!("document.{code}");
            assert!(
                LABELS
                    .iter()
                    .any(|(k, en, zh)| *k == key && !en.is_empty() && !zh.is_empty()),
                "{key}"
            );
        }
    }
}
