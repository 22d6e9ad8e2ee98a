//! The regulator dossier: everything a 12300 complaint needs about one case, in one
//! export — the parties (personal data masked: number, name, ID number's last four),
//! the request, the facts (risk, proofs, orders), every transition with its actor and
//! reason, the evidence list (metadata only) and the complaint history.
//!
//! After retention the personal data it deleted is marked "deleted on <date>"
//! (name, ID number, and [`DossierDeletion`] per kind of data); the timeline,
//! decisions, reasons and complaints are all still there.
//!
//! Two forms of the same [`Dossier`]: JSON, and a printable HTML page in the case's
//! language (zh-CN or en). Every text in the page goes through [`escape_html`], so
//! nothing the subscriber wrote can become markup. The facts are gathered, and
//! each export audited (`case.dossier`), by the use case
//! `case_workflows::dossier::export`; this module lays them out.

use std::fmt::Write as _;

use axum::{
    Json,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use case_domain::{hex, risk::ReasonCode};
use case_store::{
    CaseRow, EventRow,
    identity::IdentityRow,
    material::EvidenceMeta,
    number_budget::ProofTried,
    retention::DeletionRow,
    risk::{AssessmentRow, OrderRow},
};
use case_workflows::dossier::DossierForm;
use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{
    AppState, agent_auth::AgentSession, complaints::ComplaintView, error::ApiError,
    error::FieldError,
};

/// The subscriber, as the dossier shows them: masked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DossierSubscriber {
    /// The number, masked (`+86*******8000`).
    pub msisdn: String,
    /// The name, masked.
    pub full_name: Option<String>,
    /// The resident ID number: the last four characters only.
    pub id_number: Option<String>,
}

/// The carrier.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DossierCarrier {
    /// How the carrier is named.
    pub name: String,
    /// Its part in the complaint: respondent.
    pub role: String,
}

/// The parties.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DossierParties {
    /// The complaining subscriber.
    pub subscriber: DossierSubscriber,
    /// The carrier complained about.
    pub carrier: DossierCarrier,
}

/// What the subscriber asked for.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DossierRequest {
    /// What was asked, in the case's language.
    pub subject: String,
    /// Where the request came in (web, app, hotline, store).
    pub channel: String,
    /// When.
    pub opened_at: DateTime<Utc>,
}

/// One reason of the risk grading.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DossierReason {
    /// Reason code.
    pub code: String,
    /// Why, in the case's language.
    pub why: String,
}

/// The identity proofs' status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DossierProofs {
    /// The proof that verified identity, if any.
    pub verified_method: Option<String>,
    /// When.
    pub verified_at: Option<DateTime<Utc>>,
    /// One-time codes sent.
    pub otp_sends: i32,
    /// Failed proofs.
    pub failed_attempts: i32,
    /// Whether the name and ID matched the carrier's record: matched, did_not_match or not_yet_asked.
    pub name_id_match: String,
    /// The proofs offered, oldest first.
    pub tried: Vec<crate::agent::ProofTriedView>,
}

/// A provisioning order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DossierOrder {
    /// Order id (the idempotency key at the carrier).
    pub order_id: Uuid,
    /// full or inbound_only.
    pub restoration: String,
    /// Order state.
    pub state: String,
    /// Failed attempts.
    pub failures: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// The facts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DossierFacts {
    /// The case's state at export.
    pub state: String,
    /// The department that has it (null when finished).
    pub department: Option<String>,
    /// The latest risk tier.
    pub risk_tier: Option<String>,
    /// Its reasons.
    pub reasons: Vec<DossierReason>,
    /// When it was graded.
    pub assessed_at: Option<DateTime<Utc>>,
    /// Identity proofs.
    pub proofs: Option<DossierProofs>,
    /// Provisioning orders.
    pub orders: Vec<DossierOrder>,
}

/// One transition.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DossierEvent {
    /// The version it produced.
    pub version: i32,
    /// When.
    pub at: DateTime<Utc>,
    /// State before (null for the opening).
    pub from: Option<String>,
    /// State after.
    pub to: String,
    /// Event.
    pub event: String,
    /// The actor's role.
    pub actor_role: String,
    /// Agent id, service name or `subscriber`.
    pub actor_id: String,
    /// The agent's username, for agents.
    pub actor_name: Option<String>,
    /// The recorded reason.
    pub reason: Option<String>,
}

/// One evidence file (metadata only; never the content).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DossierEvidence {
    /// Evidence id.
    pub evidence_id: Uuid,
    /// Media type, as recognised by content.
    pub media_type: String,
    /// Size in bytes.
    pub size_bytes: i32,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
    /// When it was uploaded.
    pub at: DateTime<Utc>,
}

/// The regulator dossier of a case.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Dossier {
    /// Case id (the reference for the regulator).
    pub case_id: Uuid,
    /// The case's language (zh-CN or en): the language of the texts and of the HTML form.
    pub language: String,
    /// When exported.
    pub generated_at: DateTime<Utc>,
    /// The exporting agent's username.
    pub generated_by: String,
    /// The parties.
    pub parties: DossierParties,
    /// The request.
    pub request: DossierRequest,
    /// The facts.
    pub facts: DossierFacts,
    /// Every transition, oldest first.
    pub timeline: Vec<DossierEvent>,
    /// The evidence files, oldest first.
    pub evidence: Vec<DossierEvidence>,
    /// Every complaint, oldest first, with the carrier's answers.
    pub complaints: Vec<ComplaintView>,
    /// What retention deleted of the personal data, and when (null: nothing yet).
    pub personal_data_deletion: Option<DossierDeletion>,
}

/// What retention deleted of a case's personal data, and when; each `*_deleted_on`
/// is null while that kind is still kept.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DossierDeletion {
    /// When the case ended (retention periods count from here).
    pub case_ended_at: DateTime<Utc>,
    /// When the name and ID number were deleted (the case's data key destroyed).
    pub identity_deleted_on: Option<DateTime<Utc>>,
    /// When the evidence files were deleted.
    pub evidence_deleted_on: Option<DateTime<Utc>>,
    /// How many evidence files were deleted.
    pub evidence_files_deleted: i32,
    /// When the explanations (and the appeal statement) were deleted.
    pub explanations_deleted_on: Option<DateTime<Utc>>,
    /// How many explanations were deleted.
    pub explanations_deleted: i32,
    /// When the one-time code records were deleted.
    pub codes_deleted_on: Option<DateTime<Utc>>,
}

/// "deleted on <date>" in the case's language.
pub fn deleted_on(at: DateTime<Utc>, zh: bool) -> String {
    let date = when(at, zh);
    let day = date.get(..10).unwrap_or(&date);
    if zh {
        format!("已于 {day} 删除（保存期限届满）")
    } else {
        format!("deleted on {day} (retention period ended)")
    }
}

/// What a dossier is assembled from (read by the handler; nothing here does I/O).
#[derive(Debug)]
pub struct DossierInput<'a> {
    /// The case.
    pub case: &'a CaseRow,
    /// Its identity claim (only the masked fields are used).
    pub identity: Option<&'a IdentityRow>,
    /// The proofs offered on the case.
    pub proofs_tried: &'a [ProofTried],
    /// The latest risk assessment.
    pub assessment: Option<&'a AssessmentRow>,
    /// Provisioning orders.
    pub orders: &'a [OrderRow],
    /// The event log.
    pub timeline: &'a [EventRow],
    /// Agent usernames by id, for the timeline.
    pub agent_names: &'a [(Uuid, String)],
    /// Evidence metadata.
    pub evidence: &'a [EvidenceMeta],
    /// Complaints.
    pub complaints: Vec<ComplaintView>,
    /// What retention deleted, if anything.
    pub deletions: Option<&'a DeletionRow>,
    /// Export time.
    pub generated_at: DateTime<Utc>,
    /// Exporting agent.
    pub generated_by: &'a str,
}

fn zh(locale: &str) -> bool {
    locale == "zh-CN"
}

/// The resident ID number as shown: all but the last four characters hidden.
pub fn masked_id_number(last4: &str) -> String {
    format!("**************{last4}")
}

/// Assembles the dossier. Personal data enters only in masked form: the identity's
/// encrypted fields are never read.
pub fn assemble(input: DossierInput<'_>) -> Dossier {
    let case = input.case;
    let locale = case.locale.as_str();
    let name_of = |id: &str| {
        id.parse::<Uuid>().ok().and_then(|id| {
            input
                .agent_names
                .iter()
                .find(|(a, _)| *a == id)
                .map(|(_, n)| n.clone())
        })
    };
    let identity_deleted = input.deletions.and_then(|d| d.identity_deleted_at);
    Dossier {
        case_id: case.id,
        language: locale.into(),
        generated_at: input.generated_at,
        generated_by: input.generated_by.into(),
        parties: DossierParties {
            subscriber: DossierSubscriber {
                msisdn: case.msisdn.masked(),
                full_name: match identity_deleted {
                    Some(at) => Some(deleted_on(at, zh(locale))),
                    None => input.identity.map(|i| i.full_name_masked.clone()),
                },
                id_number: match identity_deleted {
                    Some(at) => Some(deleted_on(at, zh(locale))),
                    None => input.identity.map(|i| masked_id_number(&i.id_number_last4)),
                },
            },
            carrier: DossierCarrier {
                name: if zh(locale) {
                    "电信业务经营者（本运营商）"
                } else {
                    "The carrier (this operator)"
                }
                .into(),
                role: "respondent".into(),
            },
        },
        request: DossierRequest {
            subject: if zh(locale) {
                "申请恢复因防范电信网络诈骗被停机号码的通信服务（复机）"
            } else {
                "Restore service of the number suspended as a fraud-prevention measure"
            }
            .into(),
            channel: case.channel.as_str().into(),
            opened_at: case.created_at,
        },
        facts: DossierFacts {
            state: case.state.as_str().into(),
            department: case.state.department().map(|d| d.as_str().into()),
            risk_tier: input.assessment.map(|a| a.tier.as_str().into()),
            reasons: input
                .assessment
                .map(|a| {
                    a.reason_codes
                        .iter()
                        .map(|code| DossierReason {
                            code: code.clone(),
                            why: ReasonCode::parse(code)
                                .map(|r| r.text(locale).why.to_owned())
                                .unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            assessed_at: input.assessment.map(|a| a.assessed_at),
            proofs: input.identity.map(|i| DossierProofs {
                verified_method: i.verified_method.clone(),
                verified_at: i.verified_at,
                otp_sends: i.otp_sends,
                failed_attempts: i.failed_attempts,
                name_id_match: case_domain::agent_policy::NameIdMatch::of(i.subscriber_match)
                    .as_str()
                    .into(),
                tried: input
                    .proofs_tried
                    .iter()
                    .map(|t| crate::agent::ProofTriedView {
                        method: t.method.clone(),
                        outcome: t.outcome.clone(),
                        at: t.at,
                    })
                    .collect(),
            }),
            orders: input
                .orders
                .iter()
                .map(|o| DossierOrder {
                    order_id: o.id,
                    restoration: o.restoration.as_str().into(),
                    state: o.state.clone(),
                    failures: o.failures,
                    created_at: o.created_at,
                    updated_at: o.updated_at,
                })
                .collect(),
        },
        timeline: input
            .timeline
            .iter()
            .map(|e| DossierEvent {
                version: e.version,
                at: e.at,
                from: e.from_state.map(|s| s.as_str().into()),
                to: e.to_state.as_str().into(),
                event: e.event.as_str().into(),
                actor_role: e.actor_role.as_str().into(),
                actor_name: if e.actor_role.is_agent_role() {
                    name_of(&e.actor_id)
                } else {
                    None
                },
                actor_id: e.actor_id.clone(),
                reason: e.reason.clone(),
            })
            .collect(),
        evidence: input
            .evidence
            .iter()
            .map(|m| DossierEvidence {
                evidence_id: m.id,
                media_type: m.media_type.clone(),
                size_bytes: m.size_bytes,
                sha256: hex(&m.sha256),
                at: m.created_at,
            })
            .collect(),
        complaints: input.complaints,
        personal_data_deletion: input.deletions.map(|d| DossierDeletion {
            case_ended_at: d.ended_at,
            identity_deleted_on: d.identity_deleted_at,
            evidence_deleted_on: d.evidence_deleted_at,
            evidence_files_deleted: d.evidence_deleted,
            explanations_deleted_on: d.explanations_deleted_at,
            explanations_deleted: d.explanations_deleted,
            codes_deleted_on: d.codes_deleted_at,
        }),
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The page's fixed texts in one language.
struct Labels {
    title: &'static str,
    case: &'static str,
    generated: &'static str,
    by: &'static str,
    parties: &'static str,
    subscriber: &'static str,
    number: &'static str,
    name: &'static str,
    id_number: &'static str,
    carrier: &'static str,
    respondent: &'static str,
    request: &'static str,
    subject: &'static str,
    channel: &'static str,
    opened: &'static str,
    facts: &'static str,
    state: &'static str,
    department: &'static str,
    risk_tier: &'static str,
    reasons: &'static str,
    assessed: &'static str,
    proofs: &'static str,
    verified_by: &'static str,
    verified_at: &'static str,
    codes_sent: &'static str,
    failed: &'static str,
    name_id: &'static str,
    tried: &'static str,
    method: &'static str,
    outcome: &'static str,
    orders: &'static str,
    order: &'static str,
    restoration: &'static str,
    failures: &'static str,
    created: &'static str,
    updated: &'static str,
    timeline: &'static str,
    version: &'static str,
    at: &'static str,
    from: &'static str,
    to: &'static str,
    event: &'static str,
    actor: &'static str,
    reason: &'static str,
    evidence: &'static str,
    media_type: &'static str,
    size: &'static str,
    uploaded: &'static str,
    complaints: &'static str,
    status: &'static str,
    due: &'static str,
    text: &'static str,
    answer: &'static str,
    answered_at: &'static str,
    none: &'static str,
    zone: &'static str,
    footer: &'static str,
}

const ZH: Labels = Labels {
    title: "电信用户申诉材料（复机案件）",
    case: "案件编号",
    generated: "生成时间",
    by: "导出人",
    parties: "当事人",
    subscriber: "申诉人（用户）",
    number: "号码",
    name: "姓名",
    id_number: "身份证号码",
    carrier: "被申诉人",
    respondent: "电信业务经营者",
    request: "申诉请求",
    subject: "请求事项",
    channel: "受理渠道",
    opened: "提出时间",
    facts: "事实与理由",
    state: "当前状态",
    department: "当前处理部门",
    risk_tier: "风险等级",
    reasons: "风险原因",
    assessed: "评估时间",
    proofs: "身份核验",
    verified_by: "核验方式",
    verified_at: "核验时间",
    codes_sent: "已发送验证码",
    failed: "失败次数",
    name_id: "姓名与证件号（运营商登记）",
    tried: "已尝试的核验",
    method: "方式",
    outcome: "结果",
    orders: "复机工单",
    order: "工单号",
    restoration: "恢复范围",
    failures: "失败次数",
    created: "创建时间",
    updated: "更新时间",
    timeline: "处理经过（全部状态变更）",
    version: "序号",
    at: "时间",
    from: "原状态",
    to: "新状态",
    event: "事件",
    actor: "处理人",
    reason: "原因",
    evidence: "证据清单（仅元数据）",
    media_type: "类型",
    size: "大小（字节）",
    uploaded: "上传时间",
    complaints: "投诉记录",
    status: "状态",
    due: "答复期限",
    text: "投诉内容",
    answer: "答复",
    answered_at: "答复时间",
    none: "无",
    zone: "北京时间",
    footer: "本材料由复机系统自动生成；号码、姓名和身份证号码已脱敏。",
};

const EN: Labels = Labels {
    title: "Telecom complaint dossier (number reactivation case)",
    case: "Case",
    generated: "Generated",
    by: "Exported by",
    parties: "Parties",
    subscriber: "Complainant (subscriber)",
    number: "Number",
    name: "Name",
    id_number: "ID number",
    carrier: "Respondent",
    respondent: "Telecommunications operator",
    request: "Request",
    subject: "Subject",
    channel: "Channel",
    opened: "Opened",
    facts: "Facts",
    state: "Current state",
    department: "Department",
    risk_tier: "Risk tier",
    reasons: "Risk reasons",
    assessed: "Assessed",
    proofs: "Identity proofs",
    verified_by: "Verified by",
    verified_at: "Verified at",
    codes_sent: "Codes sent",
    failed: "Failed attempts",
    name_id: "Name and ID vs the carrier's record",
    tried: "Proofs tried",
    method: "Method",
    outcome: "Outcome",
    orders: "Restoration orders",
    order: "Order",
    restoration: "Restoration",
    failures: "Failures",
    created: "Created",
    updated: "Updated",
    timeline: "Timeline (every transition)",
    version: "#",
    at: "At",
    from: "From",
    to: "To",
    event: "Event",
    actor: "Actor",
    reason: "Reason",
    evidence: "Evidence (metadata only)",
    media_type: "Type",
    size: "Size (bytes)",
    uploaded: "Uploaded",
    complaints: "Complaints",
    status: "Status",
    due: "Answer due",
    text: "Complaint",
    answer: "Answer",
    answered_at: "Answered",
    none: "None",
    zone: "UTC",
    footer: "Generated by the reactivation system; number, name and ID number are masked.",
};

const STYLE: &str = "\
body{font-family:\"Noto Sans CJK SC\",\"PingFang SC\",\"Microsoft YaHei\",system-ui,sans-serif;margin:2em auto;max-width:60em;color:#111;font-size:14px;line-height:1.45}\
h1{font-size:1.45em;margin-bottom:.2em}h2{font-size:1.1em;border-bottom:1px solid #888;margin-top:1.6em;padding-bottom:.15em}\
table{border-collapse:collapse;width:100%;margin:.4em 0}th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top}\
th{background:#f0f0f0;font-weight:600}table.kv th{width:12em}\
.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;word-break:break-all}.text{white-space:pre-wrap}\
.meta{color:#444}footer{margin-top:2em;font-size:.85em;color:#444}\
@page{size:A4;margin:15mm}\
@media print{body{margin:0;max-width:none;font-size:10.5pt}th{background:#eee !important;-webkit-print-color-adjust:exact;print-color-adjust:exact}\
h2{break-after:avoid;page-break-after:avoid}tr{break-inside:avoid;page-break-inside:avoid}thead{display:table-header-group}a{color:inherit;text-decoration:none}}";

/// A time as printed: Beijing time for zh-CN, UTC for en.
fn when(at: DateTime<Utc>, zh: bool) -> String {
    match FixedOffset::east_opt(8 * 3600) {
        Some(beijing) if zh => at
            .with_timezone(&beijing)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        _ => at.format("%Y-%m-%d %H:%M:%S").to_string(),
    }
}

fn opt_when(at: Option<DateTime<Utc>>, zh: bool, none: &str) -> String {
    at.map_or_else(|| none.to_owned(), |t| when(t, zh))
}

/// A table of label/value rows; values are escaped here.
fn kv(out: &mut String, rows: &[(&str, String)]) {
    out.push_str("<table class=\"kv\">");
    for (label, value) in rows {
        let _ = write!(
            out,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape_html(label),
            escape_html(value)
        );
    }
    out.push_str("</table>");
}

/// A table with a header row; every cell is escaped here. Cells whose text starts
/// with a marker are styled: `\u{1}` monospace, `\u{2}` pre-wrapped text.
fn grid(out: &mut String, head: &[&str], rows: &[Vec<String>], none: &str) {
    if rows.is_empty() {
        let _ = write!(out, "<p>{}</p>", escape_html(none));
        return;
    }
    out.push_str("<table><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", escape_html(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            if let Some(rest) = cell.strip_prefix('\u{1}') {
                let _ = write!(out, "<td class=\"mono\">{}</td>", escape_html(rest));
            } else if let Some(rest) = cell.strip_prefix('\u{2}') {
                let _ = write!(out, "<td class=\"text\">{}</td>", escape_html(rest));
            } else {
                let _ = write!(out, "<td>{}</td>", escape_html(cell));
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

fn mono(s: impl std::fmt::Display) -> String {
    format!("\u{1}{s}")
}

fn prose(s: &str) -> String {
    format!("\u{2}{s}")
}

/// The printable page, in the dossier's language.
pub fn render_html(d: &Dossier) -> String {
    let zh = zh(&d.language);
    let l = if zh { &ZH } else { &EN };
    let none = l.none;
    let time_label = |label: &str| format!("{label} ({})", l.zone);
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} {case}</title><style>{STYLE}</style></head><body>",
        lang = escape_html(if zh { "zh-CN" } else { "en" }),
        title = escape_html(l.title),
        case = escape_html(&d.case_id.to_string()),
    );
    let _ = write!(
        out,
        "<header><h1>{}</h1><p class=\"meta\">{}: <span class=\"mono\">{}</span> · {}: {} ({}) · {}: {}</p></header>",
        escape_html(l.title),
        escape_html(l.case),
        escape_html(&d.case_id.to_string()),
        escape_html(l.generated),
        escape_html(&when(d.generated_at, zh)),
        escape_html(l.zone),
        escape_html(l.by),
        escape_html(&d.generated_by),
    );

    let _ = write!(out, "<section><h2>1. {}</h2>", escape_html(l.parties));
    let s = &d.parties.subscriber;
    let _ = write!(out, "<h3>{}</h3>", escape_html(l.subscriber));
    kv(
        &mut out,
        &[
            (l.number, s.msisdn.clone()),
            (l.name, s.full_name.clone().unwrap_or_else(|| none.into())),
            (
                l.id_number,
                s.id_number.clone().unwrap_or_else(|| none.into()),
            ),
        ],
    );
    let _ = write!(out, "<h3>{}</h3>", escape_html(l.carrier));
    kv(&mut out, &[(l.respondent, d.parties.carrier.name.clone())]);
    out.push_str("</section>");

    let _ = write!(out, "<section><h2>2. {}</h2>", escape_html(l.request));
    kv(
        &mut out,
        &[
            (l.subject, d.request.subject.clone()),
            (l.channel, d.request.channel.clone()),
            (&time_label(l.opened), when(d.request.opened_at, zh)),
        ],
    );
    out.push_str("</section>");

    let f = &d.facts;
    let _ = write!(out, "<section><h2>3. {}</h2>", escape_html(l.facts));
    let reasons = if f.reasons.is_empty() {
        none.to_owned()
    } else {
        f.reasons
            .iter()
            .map(|r| {
                if r.why.is_empty() {
                    r.code.clone()
                } else {
                    format!("{} — {}", r.code, r.why)
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let assessed = time_label(l.assessed);
    kv(
        &mut out,
        &[
            (l.state, f.state.clone()),
            (
                l.department,
                f.department.clone().unwrap_or_else(|| none.into()),
            ),
            (
                l.risk_tier,
                f.risk_tier.clone().unwrap_or_else(|| none.into()),
            ),
            (l.reasons, reasons),
            (&assessed, opt_when(f.assessed_at, zh, none)),
        ],
    );
    let _ = write!(out, "<h3>{}</h3>", escape_html(l.proofs));
    match &f.proofs {
        Some(p) => {
            let verified_at = time_label(l.verified_at);
            kv(
                &mut out,
                &[
                    (
                        l.verified_by,
                        p.verified_method.clone().unwrap_or_else(|| none.into()),
                    ),
                    (&verified_at, opt_when(p.verified_at, zh, none)),
                    (l.codes_sent, p.otp_sends.to_string()),
                    (l.failed, p.failed_attempts.to_string()),
                    (l.name_id, p.name_id_match.clone()),
                ],
            );
            let _ = write!(out, "<h4>{}</h4>", escape_html(l.tried));
            grid(
                &mut out,
                &[l.method, l.outcome, &time_label(l.at)],
                &p.tried
                    .iter()
                    .map(|t| vec![t.method.clone(), t.outcome.clone(), when(t.at, zh)])
                    .collect::<Vec<_>>(),
                none,
            );
        }
        None => {
            let _ = write!(out, "<p>{}</p>", escape_html(none));
        }
    }
    let _ = write!(out, "<h3>{}</h3>", escape_html(l.orders));
    grid(
        &mut out,
        &[
            l.order,
            l.restoration,
            l.status,
            l.failures,
            &time_label(l.created),
            &time_label(l.updated),
        ],
        &f.orders
            .iter()
            .map(|o| {
                vec![
                    mono(o.order_id),
                    o.restoration.clone(),
                    o.state.clone(),
                    o.failures.to_string(),
                    when(o.created_at, zh),
                    when(o.updated_at, zh),
                ]
            })
            .collect::<Vec<_>>(),
        none,
    );
    out.push_str("</section>");

    let _ = write!(out, "<section><h2>4. {}</h2>", escape_html(l.timeline));
    grid(
        &mut out,
        &[
            l.version,
            &time_label(l.at),
            l.from,
            l.to,
            l.event,
            l.actor,
            l.reason,
        ],
        &d.timeline
            .iter()
            .map(|e| {
                let actor = match &e.actor_name {
                    Some(name) => format!("{} {} ({})", e.actor_role, name, e.actor_id),
                    None => format!("{} {}", e.actor_role, e.actor_id),
                };
                vec![
                    e.version.to_string(),
                    when(e.at, zh),
                    e.from.clone().unwrap_or_else(|| "—".into()),
                    e.to.clone(),
                    e.event.clone(),
                    actor,
                    prose(e.reason.as_deref().unwrap_or("")),
                ]
            })
            .collect::<Vec<_>>(),
        none,
    );
    out.push_str("</section>");

    let _ = write!(out, "<section><h2>5. {}</h2>", escape_html(l.evidence));
    grid(
        &mut out,
        &[
            l.media_type,
            l.size,
            "SHA-256",
            &time_label(l.uploaded),
            "ID",
        ],
        &d.evidence
            .iter()
            .map(|e| {
                vec![
                    e.media_type.clone(),
                    e.size_bytes.to_string(),
                    mono(&e.sha256),
                    when(e.at, zh),
                    mono(e.evidence_id),
                ]
            })
            .collect::<Vec<_>>(),
        none,
    );
    out.push_str("</section>");

    let _ = write!(out, "<section><h2>6. {}</h2>", escape_html(l.complaints));
    grid(
        &mut out,
        &[
            &time_label(l.opened),
            l.channel,
            l.text,
            l.status,
            &time_label(l.due),
            l.answer,
            &time_label(l.answered_at),
        ],
        &d.complaints
            .iter()
            .map(|c| {
                vec![
                    when(c.created_at, zh),
                    c.channel.clone(),
                    prose(&c.text),
                    c.status.clone(),
                    when(c.due_at, zh),
                    prose(c.answer.as_deref().unwrap_or("")),
                    opt_when(c.answered_at, zh, ""),
                ]
            })
            .collect::<Vec<_>>(),
        none,
    );
    out.push_str("</section>");

    if let Some(gone) = &d.personal_data_deletion {
        let (title, ended, kept, name_id, evidence, explanations, codes) = if zh {
            (
                "个人信息删除记录（保存期限届满）",
                "案件结束",
                "保留中",
                "姓名与身份证号",
                "证据文件",
                "情况说明与申诉理由",
                "验证码记录",
            )
        } else {
            (
                "Personal data deleted under the retention policy",
                "Case ended",
                "kept",
                "Name and ID number",
                "Evidence files",
                "Explanations and appeal statement",
                "One-time code records",
            )
        };
        let mark =
            |at: Option<DateTime<Utc>>| at.map_or_else(|| kept.to_owned(), |t| deleted_on(t, zh));
        let _ = write!(out, "<section><h2>7. {}</h2>", escape_html(title));
        kv(
            &mut out,
            &[
                (&time_label(ended), when(gone.case_ended_at, zh)),
                (name_id, mark(gone.identity_deleted_on)),
                (
                    evidence,
                    format!(
                        "{} ({})",
                        mark(gone.evidence_deleted_on),
                        gone.evidence_files_deleted
                    ),
                ),
                (
                    explanations,
                    format!(
                        "{} ({})",
                        mark(gone.explanations_deleted_on),
                        gone.explanations_deleted
                    ),
                ),
                (codes, mark(gone.codes_deleted_on)),
            ],
        );
        out.push_str("</section>");
    }
    let _ = writeln!(
        out,
        "<footer>{}</footer></body></html>",
        escape_html(l.footer)
    );
    out
}

/// The form of the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// application/json.
    Json,
    /// A printable text/html page.
    Html,
}

/// The q-value an `Accept` header gives `media` (exact match only), 0 when absent.
fn accept_q(accept: &str, media: &str) -> f32 {
    accept
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let kind = pieces.next()?.trim();
            if !kind.eq_ignore_ascii_case(media) {
                return None;
            }
            let q = pieces
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            Some(q.clamp(0.0, 1.0))
        })
        .fold(0.0, f32::max)
}

/// Picks the form: `?format=` wins; else HTML when the `Accept` header prefers
/// `text/html` over `application/json`; else JSON.
pub fn choose_format(format: Option<&str>, accept: Option<&str>) -> Result<Format, ApiError> {
    match format {
        Some("json") => return Ok(Format::Json),
        Some("html") => return Ok(Format::Html),
        Some(_) => {
            return Err(ApiError::Invalid(vec![FieldError {
                field: "format".into(),
                message: "format must be json or html".into(),
            }]));
        }
        None => {}
    }
    let accept = accept.unwrap_or("");
    let html = accept_q(accept, "text/html");
    if html > 0.0 && html > accept_q(accept, "application/json") {
        Ok(Format::Html)
    } else {
        Ok(Format::Json)
    }
}

/// Which form.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DossierQuery {
    /// json or html; without it, `Accept: text/html` selects HTML.
    #[serde(default)]
    pub format: Option<String>,
}

/// Exports the regulator dossier of a case: JSON, or a printable HTML page (`Accept: text/html` or `?format=html`) in the case's language. Audited.
#[utoipa::path(
    get, path = "/v1/agent/cases/{case_id}/dossier", tag = "agent",
    params(("case_id" = Uuid, Path, description = "Case id"), DossierQuery),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The dossier (personal data masked)", content(
            (Dossier = "application/json"),
            (String = "text/html"),
        )),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Supervisors, security analysts and CS agents only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Unknown format", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn export(
    State(state): State<AppState>,
    session: AgentSession,
    Path(case_id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<DossierQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::Invalid(vec![FieldError {
            field: "format".into(),
            message: "the only parameter is format: json or html".into(),
        }])
    })?;
    let format = choose_format(
        query.format.as_deref(),
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
    )?;
    let form = match format {
        Format::Json => DossierForm::Json,
        Format::Html => DossierForm::Html,
    };
    let now = Utc::now();
    let facts = case_workflows::dossier::export(
        &state.pool,
        &session.as_agent(),
        crate::agent::case_id(&case_id)?,
        form,
        now,
    )
    .await?;
    let dossier = assemble(DossierInput {
        case: &facts.case,
        identity: facts.identity.as_ref(),
        proofs_tried: &facts.proofs_tried,
        assessment: facts.assessment.as_ref(),
        orders: &facts.orders,
        timeline: &facts.timeline,
        agent_names: &facts.agent_names,
        evidence: &facts.evidence,
        deletions: facts.deletions.as_ref(),
        complaints: facts
            .complaints
            .into_iter()
            .map(|r| ComplaintView::for_agents(r, now))
            .collect(),
        generated_at: facts.generated_at,
        generated_by: &facts.generated_by,
    });
    let mut response = match format {
        Format::Json => Json(&dossier).into_response(),
        Format::Html => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            render_html(&dossier),
        )
            .into_response(),
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    if format == Format::Html {
        // The page needs only its own inline style: no script, image, frame or form can run.
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use case_domain::{CaseEvent, CaseState, ResidentId, Role, risk::RiskTier};

    use super::*;

    const FULL_ID_FIRST17: &str = "11010519491231002";

    fn full_id() -> String {
        ResidentId::with_check_digit(FULL_ID_FIRST17).expect("valid ID")
    }

    fn at(minute: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2026, 12, 1, 8, minute, 0).unwrap()
    }

    fn case(locale: &str) -> CaseRow {
        CaseRow {
            id: Uuid::now_v7(),
            msisdn: case_domain::Msisdn::parse("+8613800138000").unwrap(),
            state: CaseState::Reactivated,
            version: 5,
            channel: case_domain::Channel::App,
            locale: case_domain::Locale::parse(locale).unwrap(),
            created_at: at(0),
            updated_at: at(5),
            state_entered_at: at(5),
            lease_owner: None,
            lease_expires_at: None,
            attempt: 1,
        }
    }

    fn identity(case_id: Uuid) -> IdentityRow {
        IdentityRow {
            case_id,
            // A trap: the encrypted fields are never read, even when they hold clear text.
            full_name_enc: "王小明".as_bytes().to_vec(),
            id_number_enc: full_id().into_bytes(),
            full_name_masked: "王**".into(),
            id_number_last4: full_id()[14..].to_owned(),
            subscriber_match: Some(true),
            otp_sends: 1,
            failed_attempts: 0,
            verified_method: Some("otp".into()),
            verified_at: Some(at(1)),
            proof_tier: None,
            proofs_given: vec!["otp".into()],
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        version: i32,
        from: Option<CaseState>,
        to: CaseState,
        event: CaseEvent,
        role: Role,
        actor: &str,
        reason: Option<&str>,
    ) -> EventRow {
        EventRow {
            id: Uuid::now_v7(),
            version,
            from_state: from,
            to_state: to,
            event,
            actor_role: role,
            actor_id: actor.into(),
            reason: reason.map(str::to_owned),
            at: at(u32::try_from(version).unwrap()),
        }
    }

    fn complaint(case_id: Uuid, text: &str, answer: Option<&str>) -> ComplaintView {
        ComplaintView {
            complaint_id: Uuid::now_v7(),
            case_id: Some(case_id),
            channel: "app".into(),
            reference: None,
            logged_by: None,
            escalated_at: None,
            text: text.into(),
            status: if answer.is_some() { "answered" } else { "open" }.into(),
            created_at: at(2),
            due_at: at(2) + chrono::Duration::days(15),
            overdue: false,
            regulator_eligible: answer.is_some(),
            answer: answer.map(str::to_owned),
            answered_at: answer.map(|_| at(3)),
            answered_by: answer.map(|_| "cs.one".to_owned()),
        }
    }

    struct Fixture {
        case: CaseRow,
        identity: IdentityRow,
        assessment: AssessmentRow,
        orders: Vec<OrderRow>,
        timeline: Vec<EventRow>,
        agents: Vec<(Uuid, String)>,
        evidence: Vec<EvidenceMeta>,
        tried: Vec<ProofTried>,
    }

    fn fixture(locale: &str) -> Fixture {
        let case = case(locale);
        let agent = Uuid::now_v7();
        let id = case.id;
        use CaseState::*;
        let timeline = vec![
            event(
                1,
                None,
                AwaitingIdentity,
                CaseEvent::Opened,
                Role::Customer,
                "subscriber",
                None,
            ),
            event(
                2,
                Some(AwaitingIdentity),
                RiskAssessment,
                CaseEvent::ProofsAccepted,
                Role::System,
                "identity",
                Some("one-time code accepted"),
            ),
            event(
                3,
                Some(RiskAssessment),
                SecurityReview,
                CaseEvent::RiskFlagged,
                Role::System,
                "risk",
                Some("<b>flagged</b>"),
            ),
            event(
                4,
                Some(SecurityReview),
                Provisioning,
                CaseEvent::Approved,
                Role::Security,
                &agent.to_string(),
                Some("explained"),
            ),
            event(
                5,
                Some(Provisioning),
                Reactivated,
                CaseEvent::Restored,
                Role::System,
                "provisioning",
                None,
            ),
        ];
        Fixture {
            identity: identity(id),
            assessment: AssessmentRow {
                id: Uuid::now_v7(),
                case_id: id,
                tier: RiskTier::Medium,
                reason_codes: vec!["fraud_linked_contacts".into()],
                needs: vec![],
                signals: case_domain::risk::RecordedSignals {
                    flagged_contacts: vec!["+8613700137001".into()],
                    ..Default::default()
                },
                rule_version: 1,
                assessed_at: at(4),
            },
            orders: vec![OrderRow {
                id: Uuid::now_v7(),
                case_id: id,
                restoration: case_domain::Restoration::Full,
                state: "completed".into(),
                carrier_ref: Some("SO-1".into()),
                failures: 0,
                created_at: at(5),
                updated_at: at(6),
            }],
            timeline,
            agents: vec![(agent, "analyst.one".into())],
            evidence: vec![EvidenceMeta {
                id: Uuid::now_v7(),
                case_id: id,
                media_type: "application/pdf".into(),
                size_bytes: 1234,
                sha256: vec![0xab; 32],
                created_at: at(4),
            }],
            tried: vec![
                ProofTried {
                    method: "service_password".into(),
                    outcome: "failed".into(),
                    at: at(2),
                },
                ProofTried {
                    method: "otp".into(),
                    outcome: "accepted".into(),
                    at: at(3),
                },
            ],
            case,
        }
    }

    fn build(f: &Fixture, complaints: Vec<ComplaintView>) -> Dossier {
        assemble(DossierInput {
            case: &f.case,
            identity: Some(&f.identity),
            proofs_tried: &f.tried,
            assessment: Some(&f.assessment),
            orders: &f.orders,
            timeline: &f.timeline,
            agent_names: &f.agents,
            evidence: &f.evidence,
            deletions: None,
            complaints,
            generated_at: at(30),
            generated_by: "boss",
        })
    }

    #[test]
    fn escaping_neutralises_markup_and_keeps_text() {
        assert_eq!(
            escape_html(r#"<script>alert("x")</script> & 'q'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;"
        );
        assert_eq!(escape_html("申诉 ok"), "申诉 ok");
        assert_eq!(escape_html(""), "");
        assert_eq!(escape_html("&amp;"), "&amp;amp;");
    }

    #[test]
    fn the_dossier_has_every_transition_with_actor_and_reason() {
        let f = fixture("en");
        let d = build(&f, vec![]);
        assert_eq!(d.timeline.len(), f.timeline.len());
        for (got, want) in d.timeline.iter().zip(&f.timeline) {
            assert_eq!(got.version, want.version);
            assert_eq!(got.to, want.to_state.as_str());
            assert_eq!(got.actor_role, want.actor_role.as_str());
            assert_eq!(got.actor_id, want.actor_id);
            assert_eq!(got.reason, want.reason);
        }
        assert_eq!(d.timeline[3].actor_name.as_deref(), Some("analyst.one"));
        assert_eq!(d.timeline[1].actor_name, None, "services are not agents");
        assert_eq!(d.facts.risk_tier.as_deref(), Some("medium"));
        assert_eq!(d.facts.reasons[0].code, "fraud_linked_contacts");
        assert!(!d.facts.reasons[0].why.is_empty());
        assert_eq!(d.facts.orders.len(), 1);
        assert_eq!(d.evidence[0].sha256, "ab".repeat(32));
        let proofs = d.facts.proofs.as_ref().expect("proofs");
        assert_eq!(proofs.name_id_match, "matched");
        let tried: Vec<_> = proofs
            .tried
            .iter()
            .map(|t| (t.method.as_str(), t.outcome.as_str()))
            .collect();
        assert_eq!(tried, [("service_password", "failed"), ("otp", "accepted")]);
        let html = render_html(&d);
        assert!(
            html.contains("<td>service_password</td><td>failed</td>"),
            "{html}"
        );
        assert!(
            html.contains("Name and ID vs the carrier&#39;s record"),
            "{html}"
        );
        assert_eq!(d.request.channel, "app");
        assert_eq!(d.parties.carrier.role, "respondent");
    }

    #[test]
    fn personal_data_is_masked_in_both_forms() {
        for locale in ["zh-CN", "en"] {
            let f = fixture(locale);
            let d = build(&f, vec![]);
            let json = serde_json::to_string(&d).unwrap();
            let html = render_html(&d);
            for form in [&json, &html] {
                assert!(!form.contains(&full_id()), "full ID leaked");
                assert!(!form.contains(FULL_ID_FIRST17), "ID prefix leaked");
                assert!(!form.contains("13800138000"), "full number leaked");
                assert!(!form.contains("王小明"), "full name leaked");
                assert!(!form.contains("13700137001"), "flagged contact leaked");
                assert!(form.contains(&full_id()[14..]), "last four shown");
            }
            assert_eq!(
                d.parties.subscriber.id_number.as_deref(),
                Some(format!("**************{}", &full_id()[14..]).as_str())
            );
            assert_eq!(d.parties.subscriber.msisdn, "+86*******8000");
        }
    }

    #[test]
    fn subscriber_text_cannot_inject_markup() {
        let f = fixture("en");
        let evil = r#"<script>alert(1)</script><img src=x onerror="alert(2)">"#;
        let d = build(
            &f,
            vec![complaint(f.case.id, evil, Some("</td><script>x</script>"))],
        );
        let html = render_html(&d);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;/td&gt;&lt;script&gt;x&lt;/script&gt;"));
        assert!(
            html.contains("&lt;b&gt;flagged&lt;/b&gt;"),
            "reasons escaped too"
        );
        // The only tags are the page's own.
        assert_eq!(html.matches("<style>").count(), 1);
    }

    #[test]
    fn the_page_is_printable_and_in_the_case_language() {
        let zh = render_html(&build(&fixture("zh-CN"), vec![]));
        assert!(zh.starts_with("<!DOCTYPE html>"));
        assert!(zh.contains("<html lang=\"zh-CN\">"));
        assert!(zh.contains("电信用户申诉材料"));
        assert!(zh.contains("处理经过"));
        assert!(zh.contains("北京时间"));
        assert!(zh.contains("@media print"));
        assert!(zh.contains("2026-12-01 16:06:00"), "Beijing time");
        let en = render_html(&build(&fixture("en"), vec![]));
        assert!(en.contains("<html lang=\"en\">"));
        assert!(en.contains("Timeline (every transition)"));
        assert!(en.contains("2026-12-01 08:06:00"));
        assert!(!en.contains("电信用户申诉材料"));
        // Every transition is a row of the timeline table.
        for v in 1..=5 {
            assert!(en.contains(&format!("<tr><td>{v}</td>")), "row {v}");
        }
    }

    #[test]
    fn a_case_without_identity_or_grading_still_exports() {
        let f = fixture("en");
        let d = assemble(DossierInput {
            case: &f.case,
            identity: None,
            proofs_tried: &[],
            assessment: None,
            orders: &[],
            timeline: &f.timeline[..1],
            agent_names: &[],
            evidence: &[],
            deletions: None,
            complaints: vec![],
            generated_at: at(30),
            generated_by: "boss",
        });
        assert_eq!(d.parties.subscriber.id_number, None);
        assert_eq!(d.facts.risk_tier, None);
        let html = render_html(&d);
        assert!(html.contains("None"));
    }

    #[test]
    fn after_retention_the_personal_data_is_marked_deleted_and_the_rest_stays() {
        for (locale, marker) in [
            ("en", "deleted on 2026-12-05 (retention period ended)"),
            ("zh-CN", "已于 2026-12-05 删除（保存期限届满）"),
        ] {
            let f = fixture(locale);
            let deleted_at = DateTime::parse_from_rfc3339("2026-12-05T03:00:00Z")
                .unwrap()
                .with_timezone(&Utc);
            let gone = DeletionRow {
                case_id: f.case.id,
                ended_at: at(20),
                codes_deleted_at: Some(deleted_at),
                explanations_deleted_at: Some(deleted_at),
                evidence_deleted_at: Some(deleted_at),
                identity_deleted_at: Some(deleted_at),
                codes_deleted: 2,
                explanations_deleted: 1,
                evidence_deleted: 1,
            };
            let d = assemble(DossierInput {
                case: &f.case,
                identity: Some(&f.identity),
                proofs_tried: &f.tried,
                assessment: Some(&f.assessment),
                orders: &f.orders,
                timeline: &f.timeline,
                agent_names: &f.agents,
                evidence: &[],
                deletions: Some(&gone),
                complaints: vec![complaint(f.case.id, "still unhappy", None)],
                generated_at: at(30),
                generated_by: "boss",
            });
            assert_eq!(d.parties.subscriber.full_name.as_deref(), Some(marker));
            assert_eq!(d.parties.subscriber.id_number.as_deref(), Some(marker));
            let gone = d.personal_data_deletion.as_ref().unwrap();
            assert_eq!(gone.identity_deleted_on, Some(deleted_at));
            assert_eq!(gone.evidence_files_deleted, 1);
            // The timeline, the reasons and the complaints are all still there.
            assert_eq!(d.timeline.len(), f.timeline.len());
            assert!(!d.facts.reasons.is_empty());
            assert_eq!(d.complaints.len(), 1);
            let html = render_html(&d);
            assert!(html.contains(&escape_html(marker)), "{locale}");
            assert!(!html.contains(&f.identity.full_name_masked));
            let json = serde_json::to_value(&d).unwrap();
            assert_eq!(
                json["personal_data_deletion"]["evidence_files_deleted"],
                serde_json::json!(1)
            );
        }
    }

    #[test]
    fn the_form_follows_the_query_then_the_accept_header() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(choose_format(None, None).unwrap(), Format::Json);
        assert_eq!(choose_format(None, Some("*/*")).unwrap(), Format::Json);
        assert_eq!(choose_format(None, Some(browser)).unwrap(), Format::Html);
        assert_eq!(
            choose_format(None, Some("text/html")).unwrap(),
            Format::Html
        );
        assert_eq!(
            choose_format(None, Some("application/json, text/html")).unwrap(),
            Format::Json
        );
        assert_eq!(
            choose_format(None, Some("application/json;q=0.5, text/html")).unwrap(),
            Format::Html
        );
        assert_eq!(
            choose_format(None, Some("text/html;q=0")).unwrap(),
            Format::Json
        );
        assert_eq!(
            choose_format(Some("json"), Some(browser)).unwrap(),
            Format::Json
        );
        assert_eq!(choose_format(Some("html"), None).unwrap(), Format::Html);
        assert!(choose_format(Some("pdf"), None).is_err());
    }
}
