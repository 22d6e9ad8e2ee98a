//! The case page and its forms. The page is the use case behind the agent API's case
//! view (`case_workflows::agent::view_case`: same role check, same audit record,
//! same `allowed_actions`) plus the subscriber's material; each form calls the same
//! use case as the API for that action (claim, release, decision, note, unmask), so
//! a tampered form is refused exactly as the API refuses it. Evidence files are
//! streamed with their stored type, sandboxed.

use askama::Template;
use axum::{
    body::Body,
    extract::{Form, Path, State, rejection::FormRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use case_domain::material::mask_counterparty as mask_number;
use case_domain::{
    CaseEvent, Role,
    agent_policy::{IdentityCheck, UNMASKERS, queue_roles},
    decision::{RejectionCode, agent_may_act},
    risk::ReasonCode,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    ConsoleError, Ctx, Failure, Layout, department_code, iso, render, require_case_reader,
    safe_next, short_id, show_time,
};
use case_workflows::agent::{self as wf, CaseView, Unmasked};

use crate::{
    AppState, agent::case_id as parse_case_id, agent_auth::AgentSession, complaints::ComplaintView,
    error::ApiError,
};

#[derive(Debug)]
pub(super) struct Head {
    id: String,
    short_id: String,
    state: String,
    state_label: String,
    department_label: Option<String>,
    version: i32,
    msisdn: String,
    channel: String,
    locale: String,
    created_at: String,
    created_at_text: String,
    due: Option<String>,
    due_text: String,
    breached: bool,
    holder: Option<String>,
    held_by_me: bool,
    held_by_other: bool,
    claimed_until: Option<String>,
    claimed_until_text: String,
    appealed: bool,
    may_act: bool,
}

#[derive(Debug)]
pub(super) struct Notice {
    kind: &'static str,
    text: String,
}

#[derive(Debug)]
pub(super) struct ActionView {
    name: String,
    label: String,
    help: String,
    reason_required: bool,
    is_reject: bool,
    is_verify: bool,
    danger: bool,
}

#[derive(Debug)]
pub(super) struct CodeLabel {
    code: &'static str,
    label: String,
}

#[derive(Debug)]
pub(super) struct ReasonView {
    code: String,
    why: String,
}

#[derive(Debug)]
pub(super) struct Fact {
    label: String,
    value: String,
}

#[derive(Debug)]
pub(super) struct RiskView {
    tier: String,
    tier_label: String,
    reasons: Vec<ReasonView>,
    needs: Vec<String>,
    signals: Vec<Fact>,
    flagged: Vec<String>,
    assessed_at: String,
    assessed_at_text: String,
}

#[derive(Debug)]
pub(super) struct ProofsRow {
    full_name: String,
    id_number: String,
    otp_sends: i32,
    failed_attempts: i32,
    verified: Option<String>,
    verified_at: Option<String>,
    verified_at_text: String,
    name_id_match: String,
    name_id_label: String,
    tried: Vec<TriedRow>,
}

#[derive(Debug)]
pub(super) struct TriedRow {
    method: String,
    outcome: String,
    outcome_label: String,
    at: String,
    at_text: String,
}

#[derive(Debug)]
pub(super) struct CounterpartyRow {
    msisdn: String,
    relation: String,
    purpose: String,
}

#[derive(Debug)]
pub(super) struct ExplanationView {
    at: String,
    at_text: String,
    statement: String,
    counterparties: Vec<CounterpartyRow>,
}

#[derive(Debug)]
pub(super) struct EvidenceView {
    url: String,
    media_type: String,
    is_pdf: bool,
    size_text: String,
    at: String,
    at_text: String,
}

#[derive(Debug)]
pub(super) struct ComplaintRowView {
    open: bool,
    status_label: String,
    channel: String,
    body: String,
    due: String,
    due_text: String,
    answer: Option<String>,
}

#[derive(Debug)]
pub(super) struct OrderRowView {
    restoration: String,
    state: String,
    failures: i32,
    at: String,
    at_text: String,
}

#[derive(Debug)]
pub(super) struct NoteRowView {
    author: String,
    body: String,
    at: String,
    at_text: String,
}

#[derive(Debug)]
pub(super) struct TimelineRow {
    at: String,
    at_text: String,
    event_label: String,
    from_label: Option<String>,
    to_label: String,
    actor: String,
    reason: Option<String>,
}

#[derive(Template)]
#[template(path = "console/case.html")]
struct CasePage {
    layout: Layout,
    c: Head,
    notice: Option<Notice>,
    unmasked: Option<Unmasked>,
    can_unmask: bool,
    proofs: Option<ProofsRow>,
    risk: Option<RiskView>,
    explanations: Vec<ExplanationView>,
    evidence: Vec<EvidenceView>,
    complaints: Vec<ComplaintRowView>,
    open_complaints: usize,
    escalated: bool,
    orders: Vec<OrderRowView>,
    notes: Vec<NoteRowView>,
    timeline: Vec<TimelineRow>,
    actions: Vec<ActionView>,
    rejection_codes: Vec<CodeLabel>,
    identity_checks: Vec<CodeLabel>,
    supervisor_needed: bool,
    tools: super::supervision::CaseTools,
    back: String,
    back_label: String,
    self_href: String,
    departments: Vec<super::progress::DepartmentRow>,
    expedite: Option<super::progress::ExpediteShown>,
}

fn size_text(bytes: i32) -> String {
    let b = f64::from(bytes);
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

fn stamp(t: DateTime<Utc>) -> (String, String) {
    (iso(t), show_time(t))
}

/// `GET /console/cases/{id}`.
pub(super) async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    Path(case_id): Path<String>,
) -> Result<Response, ConsoleError> {
    let session = ctx.require(session)?;
    let notice = ctx.param("done").and_then(|d| {
        let key = match d {
            "claim" => "notice.claim",
            "release" => "notice.release",
            "note" => "notice.note",
            "decided" => "notice.decided",
            "reassigned" => "notice.reassigned",
            "claim_broken" => "notice.claim_broken",
            "escalated" => "notice.escalated",
            _ => return None,
        };
        Some(Notice {
            kind: "ok",
            text: ctx.ui.t(key),
        })
    });
    show(&state, &ctx, session, case_id, notice, None).await
}

/// Reads the case through the API's use case (role check and audit) and renders it.
async fn show(
    state: &AppState,
    ctx: &Ctx,
    session: AgentSession,
    case_id: String,
    notice: Option<Notice>,
    unmasked: Option<Unmasked>,
) -> Result<Response, ConsoleError> {
    let page = async {
        let view = wf::view_case(
            &state.pool,
            &state.sla,
            &session.as_agent(),
            parse_case_id(&case_id)?,
        )
        .await?;
        let complaints = crate::complaints::for_case(state, view.case_id).await?;
        build(state, ctx, &session, view, complaints, notice, unmasked).await
    }
    .await
    .map_err(|e| ctx.fail(e))?;
    Ok(render(&page, StatusCode::OK))
}

async fn build(
    state: &AppState,
    ctx: &Ctx,
    session: &AgentSession,
    view: CaseView,
    complaints: Vec<ComplaintView>,
    notice: Option<Notice>,
    unmasked: Option<Unmasked>,
) -> Result<CasePage, ApiError> {
    let ui = ctx.ui;
    let now = Utc::now();
    let pool = &state.pool;
    let explanations = {
        let mut conn = pool
            .acquire()
            .await
            .map_err(case_workflows::WorkflowError::from)?;
        case_workflows::material::read_explanations(&mut conn, &state.keys, view.case_id).await?
    };
    let evidence = view.evidence.clone();
    let agent_ids: Vec<Uuid> = view
        .timeline
        .iter()
        .filter_map(|e| e.actor_id.parse().ok())
        .chain(view.claimed_by.as_deref().and_then(|h| h.parse().ok()))
        .collect();
    let names = case_store::dashboard::agent_names(pool, &agent_ids).await?;
    let name_of = |id: &str| -> String {
        id.parse::<Uuid>()
            .ok()
            .and_then(|u| names.get(&u).cloned())
            .unwrap_or_else(|| id.to_owned())
    };
    let case_state = view.state;
    let held_by_me = view
        .claimed_by
        .as_deref()
        .is_some_and(|h| h == session.id().to_string());
    let (created_at, created_at_text) = stamp(view.created_at);
    let head = Head {
        id: view.case_id.to_string(),
        short_id: short_id(view.case_id),
        state_label: ui.code("state", view.state.as_str()),
        state: view.state.as_str().into(),
        department_label: view.state.department().map(|d| ui.code("dept", d.as_str())),
        version: view.version,
        msisdn: view.msisdn.clone(),
        channel: view.channel.as_str().into(),
        locale: view.locale.as_str().into(),
        created_at,
        created_at_text,
        due: view.sla_due_at.map(iso),
        due_text: view
            .sla_due_at
            .map(|d| ui.countdown((d - now).num_seconds()))
            .unwrap_or_default(),
        breached: view.sla_due_at.is_some_and(|d| d < now),
        holder: view.claimed_by.as_deref().map(name_of),
        held_by_me,
        held_by_other: view.claimed_by.is_some() && !held_by_me,
        claimed_until: view.claimed_until.map(iso),
        claimed_until_text: view.claimed_until.map(show_time).unwrap_or_default(),
        appealed: view.appealed,
        may_act: agent_may_act(session.roles(), case_state),
    };
    let actions = view
        .allowed_actions
        .iter()
        .map(|name| ActionView {
            label: ui.code("action", name),
            help: ui.t(&format!("action.{name}.help")),
            reason_required: matches!(
                CaseEvent::from_agent_action(name),
                Some(CaseEvent::InfoRequested | CaseEvent::Cancelled)
            ),
            is_reject: CaseEvent::from_agent_action(name) == Some(CaseEvent::Rejected),
            is_verify: CaseEvent::from_agent_action(name) == Some(CaseEvent::IdentityVerified),
            danger: matches!(
                CaseEvent::from_agent_action(name),
                Some(CaseEvent::Rejected | CaseEvent::Cancelled)
            ),
            name: (*name).to_owned(),
        })
        .collect();
    let risk = view.risk.as_ref().map(|r| {
        let locale = ui.tag();
        let s = &r.signals;
        let signals = [
            (
                "fraud_linked_contacts",
                Some(s.fraud_linked_contacts.to_string()),
            ),
            ("sms_peak_per_hour", Some(s.sms_peak_per_hour.to_string())),
            ("intl_calls_24h", Some(s.intl_calls_24h.to_string())),
            ("suspension_reason", s.suspension_reason.clone()),
        ]
        .into_iter()
        .filter_map(|(key, value)| {
            Some(Fact {
                label: ui.t(&format!("signal.{key}")),
                value: value?,
            })
        })
        .collect();
        let (assessed_at, assessed_at_text) = stamp(r.assessed_at);
        RiskView {
            tier: r.tier.as_str().into(),
            tier_label: ui.code("tier", r.tier.as_str()),
            reasons: r
                .reason_codes
                .iter()
                .map(|code| ReasonView {
                    why: ReasonCode::parse(code)
                        .map(|c| c.text(locale).why.to_owned())
                        .unwrap_or_else(|| ui.code("reason", code)),
                    code: code.clone(),
                })
                .collect(),
            needs: r.needs.iter().map(|n| ui.code("need", n)).collect(),
            signals,
            flagged: r
                .signals
                .flagged_contacts
                .iter()
                .map(|n| mask_number(n))
                .collect(),
            assessed_at,
            assessed_at_text,
        }
    });
    let proofs = view.proofs.as_ref().map(|p| {
        let (verified_at, verified_at_text) = p.verified_at.map(stamp).unzip();
        ProofsRow {
            full_name: p.full_name.clone(),
            id_number: p.id_number.clone(),
            otp_sends: p.otp_sends,
            failed_attempts: p.failed_attempts,
            verified: p.verified_method.as_deref().map(|m| ui.code("method", m)),
            verified_at,
            verified_at_text: verified_at_text.unwrap_or_default(),
            name_id_match: p.name_id_match.as_str().into(),
            name_id_label: ui.code("name_id", p.name_id_match.as_str()),
            tried: p
                .tried
                .iter()
                .map(|t| {
                    let (at, at_text) = stamp(t.at);
                    TriedRow {
                        method: ui.code("method", &t.method),
                        outcome_label: ui.code("proof_outcome", &t.outcome),
                        outcome: t.outcome.clone(),
                        at,
                        at_text,
                    }
                })
                .collect(),
        }
    });
    // The table would let this agent verify, but the carrier's "no" needs a supervisor.
    let supervisor_needed = view.state == case_domain::CaseState::IdentityReview
        && view.proofs.as_ref().is_some_and(|p| {
            case_domain::agent_policy::may_verify_identity(session.roles(), p.name_id_match)
                .is_err()
        });
    let complaints: Vec<ComplaintRowView> = complaints
        .into_iter()
        .map(|k| ComplaintRowView {
            open: k.status == "open",
            status_label: ui.code("complaint.status", &k.status),
            channel: k.channel,
            body: k.text,
            due: iso(k.due_at),
            due_text: show_time(k.due_at),
            answer: k.answer,
        })
        .collect();
    let open_complaints = complaints.iter().filter(|k| k.open).count();
    // The shared view carries no escalation level: the case page shows none.
    let escalated = false;
    let department = case_state.department();
    let (back, back_label) = match department {
        Some(d) if session.has_any(queue_roles(d)) && d != case_domain::Department::Subscriber => (
            format!("/console/queue?department={}", department_code(d)),
            ui.t("case.back_queue"),
        ),
        _ if session.has(Role::Supervisor) => {
            ("/console/dashboard".to_owned(), ui.t("case.back_dashboard"))
        }
        _ => ("/console".to_owned(), ui.t("case.back_queue")),
    };
    let route = case_workflows::progress::route(
        pool,
        &state.sla,
        view.state,
        view.risk.as_ref().map(|r| r.tier),
        &view.timeline,
        now,
    )
    .await;
    let departments = super::progress::rows(ui, &route);
    let expedite = case_workflows::progress::expedite_of(pool, view.case_id)
        .await?
        .map(|row| super::progress::ExpediteShown::new(ui, row));
    let title = format!("{} {}", ui.t("case.title"), head.short_id);
    Ok(CasePage {
        layout: ctx.layout(title, Some(session)),
        self_href: format!("/console/cases/{}", view.case_id),
        departments,
        expedite,
        notice,
        can_unmask: session.has_any(UNMASKERS),
        unmasked,
        proofs,
        risk,
        explanations: explanations
            .into_iter()
            .map(|e| {
                let (at, at_text) = stamp(e.created_at);
                ExplanationView {
                    at,
                    at_text,
                    // Retention destroyed the key: say when instead of the text.
                    statement: match e.deleted_on {
                        Some(on) if ui.tag() == "zh-CN" => {
                            format!("［已于 {} 删除］", on.format("%Y-%m-%d"))
                        }
                        Some(on) => format!("[deleted on {}]", on.format("%Y-%m-%d")),
                        None => e.statement,
                    },
                    counterparties: e
                        .counterparties
                        .into_iter()
                        .map(|c| CounterpartyRow {
                            msisdn: mask_number(&c.msisdn),
                            relation: c.relation,
                            purpose: c.purpose,
                        })
                        .collect(),
                }
            })
            .collect(),
        evidence: evidence
            .into_iter()
            .map(|e| {
                let (at, at_text) = stamp(e.created_at);
                EvidenceView {
                    url: format!("/console/cases/{}/evidence/{}", view.case_id, e.id),
                    is_pdf: e.media_type == "application/pdf",
                    media_type: e.media_type,
                    size_text: size_text(e.size_bytes),
                    at,
                    at_text,
                }
            })
            .collect(),
        complaints,
        open_complaints,
        escalated,
        orders: view
            .orders
            .iter()
            .map(|o| {
                let (at, at_text) = stamp(o.created_at);
                OrderRowView {
                    restoration: ui.code("restoration", o.restoration.as_str()),
                    state: o.state.clone(),
                    failures: o.failures,
                    at,
                    at_text,
                }
            })
            .collect(),
        notes: view
            .notes
            .iter()
            .map(|n| {
                let (at, at_text) = stamp(n.at);
                NoteRowView {
                    author: n.author.clone(),
                    body: n.body.clone(),
                    at,
                    at_text,
                }
            })
            .collect(),
        timeline: view
            .timeline
            .iter()
            .map(|e| {
                let (at, at_text) = stamp(e.at);
                let role = ui.code("role", e.actor_role.as_str());
                let actor = match e.actor_role.as_str() {
                    "customer" => role,
                    "system" => format!("{role} ({})", e.actor_id.trim_start_matches("system:")),
                    _ => format!("{} ({role})", name_of(&e.actor_id)),
                };
                TimelineRow {
                    at,
                    at_text,
                    event_label: ui.code("event", e.event.as_str()),
                    from_label: e.from_state.map(|f| ui.code("state", f.as_str())),
                    to_label: ui.code("state", e.to_state.as_str()),
                    actor,
                    reason: e.reason.clone(),
                }
            })
            .collect(),
        actions,
        rejection_codes: RejectionCode::ALL
            .into_iter()
            .map(|c| CodeLabel {
                code: c.as_str(),
                label: ui.code("reject", c.as_str()),
            })
            .collect(),
        identity_checks: IdentityCheck::ALL
            .into_iter()
            .map(|c| CodeLabel {
                code: c.as_str(),
                label: ui.code("identity_check", c.as_str()),
            })
            .collect(),
        supervisor_needed,
        tools: super::supervision::case_tools(session, case_state, head.holder.is_some()),
        back,
        back_label,
        c: head,
    })
}

fn done(case_id: &str, what: &str) -> Response {
    Redirect::to(&format!("/console/cases/{case_id}?done={what}")).into_response()
}

/// The claim form.
#[derive(Debug, Deserialize)]
pub(super) struct ClaimForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    expected_version: Option<String>,
}

/// `POST /console/cases/{id}/claim`: the API's claim use case.
pub(super) async fn claim(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    Path(case_id): Path<String>,
    form: Result<Form<ClaimForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = ctx.require_post(session, &form.csrf)?;
    let version = match form.expected_version.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(v) => Some(v.parse::<i32>().map_err(|_| ctx.refuse(Failure::BadForm))?),
    };
    let id = parse_case_id(&case_id).map_err(|e| ctx.fail(e))?;
    wf::claim(&state.pool, &session.as_agent(), id, version)
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    Ok(done(&case_id, "claim"))
}

/// The release form.
#[derive(Debug, Deserialize)]
pub(super) struct ReleaseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /console/cases/{id}/release`: the API's release use case.
pub(super) async fn release(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    Path(case_id): Path<String>,
    form: Result<Form<ReleaseForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = ctx.require_post(session, &form.csrf)?;
    let id = parse_case_id(&case_id).map_err(|e| ctx.fail(e))?;
    wf::release(&state.pool, &session.as_agent(), id)
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    match safe_next(form.next.as_deref()) {
        Some(next) if !next.starts_with(&format!("/console/cases/{case_id}")) => {
            Ok(Redirect::to(&next).into_response())
        }
        _ => Ok(done(&case_id, "release")),
    }
}

/// A decision form.
#[derive(Debug, Deserialize)]
pub(super) struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    expected_version: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    reason_code: Option<String>,
    #[serde(default)]
    identity_check: Option<String>,
}

/// `POST /console/cases/{id}/actions`: the API's decision use case (role, claim and
/// version checks included); an action the role may not take answers 403.
pub(super) async fn act(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    Path(case_id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = ctx.require_post(session, &form.csrf)?;
    let version = expected_version(&ctx, &form.expected_version)?;
    let id = parse_case_id(&case_id).map_err(|e| ctx.fail(e))?;
    let decision = crate::agent::ActionRequest {
        action: form.action,
        reason: form.reason.filter(|r| !r.trim().is_empty()),
        reason_code: form.reason_code.map(|c| c.trim().to_owned()),
        identity_check: form
            .identity_check
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty()),
        expected_version: version,
    }
    .decision()
    .map_err(|e| ctx.fail(e))?;
    wf::decide(&state.pool, &session.as_agent(), id, &decision)
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    Ok(done(&case_id, "decided"))
}

/// The note form.
#[derive(Debug, Deserialize)]
pub(super) struct NoteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    body: String,
}

/// `POST /console/cases/{id}/notes`: the API's note use case.
pub(super) async fn note(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    Path(case_id): Path<String>,
    form: Result<Form<NoteForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = ctx.require_post(session, &form.csrf)?;
    let id = parse_case_id(&case_id).map_err(|e| ctx.fail(e))?;
    wf::add_note(&state.pool, &session.as_agent(), id, &form.body)
        .await
        .map_err(|e| ctx.fail(e.into()))?;
    Ok(done(&case_id, "note"))
}

/// The unmask form.
#[derive(Debug, Deserialize)]
pub(super) struct UnmaskForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /console/cases/{id}/unmask`: the API's unmask use case (role check, reason,
/// audit row); the clear values are shown in this answer only.
pub(super) async fn unmask(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    Path(case_id): Path<String>,
    form: Result<Form<UnmaskForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ctx.refuse(Failure::BadForm));
    };
    let session = ctx.require_post(session, &form.csrf)?;
    let id = parse_case_id(&case_id).map_err(|e| ctx.fail(e))?;
    let clear = wf::unmask(
        &state.pool,
        &state.keys,
        &session.as_agent(),
        id,
        &form.reason,
    )
    .await
    .map_err(|e| ctx.fail(e.into()))?;
    show(&state, &ctx, session, case_id, None, Some(clear)).await
}

/// `GET /console/cases/{id}/evidence/{evidence_id}`: the stored file, with its
/// recognised type, never sniffed, PDFs sandboxed; each view is audited.
pub(super) async fn evidence(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
    Path((case_id, evidence_id)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    let session = ctx.require(session)?;
    require_case_reader(&session).map_err(|e| ctx.fail(e))?;
    let (Ok(case_id), Ok(evidence_id)) = (case_id.parse::<Uuid>(), evidence_id.parse::<Uuid>())
    else {
        return Err(ctx.fail(ApiError::NotFound));
    };
    let wf::EvidenceFile {
        media_type,
        content,
    } = wf::evidence_file(
        &state.pool,
        &state.keys,
        &session.as_agent(),
        case_id,
        evidence_id,
    )
    .await
    .map_err(|e| ctx.fail(e.into()))?;
    // Only the three types the upload accepts are ever served as themselves.
    let content_type = match media_type.as_str() {
        "image/jpeg" => "image/jpeg",
        "image/png" => "image/png",
        "application/pdf" => "application/pdf",
        _ => "application/octet-stream",
    };
    let mut response = Response::new(Body::from(content));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(if content_type == "application/pdf" {
            "sandbox"
        } else {
            "default-src 'none'; sandbox"
        }),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("inline"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    headers.insert(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    Ok(response)
}
/// The `expected_version` field of a case form: a whole number, else 422 on the page.
pub(super) fn expected_version(ctx: &Ctx, raw: &str) -> Result<i32, ConsoleError> {
    raw.trim().parse().map_err(|_| {
        ctx.fail(ApiError::Invalid(vec![crate::error::FieldError {
            field: "expected_version".into(),
            message: "expected_version must be a whole number".into(),
        }]))
    })
}
