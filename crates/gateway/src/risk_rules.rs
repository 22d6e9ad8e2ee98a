//! The risk rules' thresholds for supervisors: the current version and its history,
//! a new version (audited), and the replay of recent assessed cases under a proposal.
//! Each calls one use case of `case_workflows::risk_rules`; the roles are those of
//! the false-positive report, declared in [`crate::access::AGENT_ROUTES`] and checked
//! again by the use case.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use case_domain::risk_rules::{ReplayReport, RiskThresholds, RuleThresholds};
use case_store::risk_rules::RuleVersionRow;
use case_workflows::risk_rules as wf;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{AppState, agent_auth::AgentSession, error::ApiError, extract::parse_json};

/// The thresholds of one graded rule.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleThresholdsBody {
    /// From this count on the rule calls for the medium tier (at least 1).
    pub medium: u32,
    /// From this count on the rule calls for the high tier (at least `medium`; at most 1000 fraud-linked contacts, 100000 SMS per hour, 10000 international calls).
    pub high: u32,
}

/// The thresholds of the risk rules.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsBody {
    /// Recent counterparties linked to reported fraud (reason `fraud_linked_contacts`).
    pub fraud_linked_contacts: RuleThresholdsBody,
    /// Peak SMS sent in one hour (reason `bulk_sms`).
    pub bulk_sms: RuleThresholdsBody,
    /// International calls in the last 24 hours (reason `international_calls`).
    pub international_calls: RuleThresholdsBody,
    /// How many rules at high together make the case extreme (1 to 3).
    pub highs_for_extreme: u32,
}

impl From<RuleThresholdsBody> for RuleThresholds {
    fn from(b: RuleThresholdsBody) -> Self {
        Self {
            medium: b.medium,
            high: b.high,
        }
    }
}

impl From<RuleThresholds> for RuleThresholdsBody {
    fn from(t: RuleThresholds) -> Self {
        Self {
            medium: t.medium,
            high: t.high,
        }
    }
}

impl From<ThresholdsBody> for RiskThresholds {
    fn from(b: ThresholdsBody) -> Self {
        Self {
            fraud_linked_contacts: b.fraud_linked_contacts.into(),
            bulk_sms: b.bulk_sms.into(),
            international_calls: b.international_calls.into(),
            highs_for_extreme: b.highs_for_extreme,
        }
    }
}

impl From<RiskThresholds> for ThresholdsBody {
    fn from(t: RiskThresholds) -> Self {
        Self {
            fraud_linked_contacts: t.fraud_linked_contacts.into(),
            bulk_sms: t.bulk_sms.into(),
            international_calls: t.international_calls.into(),
            highs_for_extreme: t.highs_for_extreme,
        }
    }
}

/// One version of the rules.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleVersionView {
    /// The version.
    pub version: i32,
    /// Its thresholds.
    pub thresholds: ThresholdsBody,
    /// Why it was made.
    pub reason: String,
    /// The supervisor who made it (agent id; absent for version 1, the rules as they were).
    pub created_by: Option<Uuid>,
    /// Their username.
    pub created_by_username: Option<String>,
    /// When it was made and activated.
    pub created_at: DateTime<Utc>,
    /// Whether it is the current version.
    pub current: bool,
}

impl From<RuleVersionRow> for RuleVersionView {
    fn from(r: RuleVersionRow) -> Self {
        Self {
            version: r.version,
            thresholds: r.thresholds.into(),
            reason: r.reason,
            created_by: r.created_by,
            created_by_username: r.created_by_username,
            created_at: r.created_at,
            current: r.activated,
        }
    }
}

/// The current version of the rules and their history.
#[derive(Debug, Serialize, ToSchema)]
pub struct RiskRulesView {
    /// The version the risk service grades with now.
    pub current: RuleVersionView,
    /// Every version, newest first (the current one included; at most 200).
    pub history: Vec<RuleVersionView>,
}

/// A new version of the rules.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRulesRequest {
    /// The current version, as the supervisor read it: the change is refused (409 `rules_changed`) when the rules changed meanwhile.
    pub based_on: i32,
    /// The new thresholds.
    pub thresholds: ThresholdsBody,
    /// Why (5 to 500 characters; recorded with the version and in the audit log).
    pub reason: String,
}

/// The version made.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewRulesView {
    /// Its number: current now.
    pub version: i32,
    /// The version it replaced.
    pub based_on: i32,
    /// Its thresholds.
    pub thresholds: ThresholdsBody,
    /// The replaced version's thresholds.
    pub previous: ThresholdsBody,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A proposal to replay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The proposed thresholds.
    pub thresholds: ThresholdsBody,
    /// How many days back (1 to 90).
    pub days: u32,
}

/// One rule's part of a replay.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleReplayView {
    /// The reason code.
    pub reason_code: String,
    /// Cases it flagged, as recorded.
    pub fired_recorded: u64,
    /// Cases it would flag under the proposal.
    pub fired_proposed: u64,
    /// Its labelled false positives (approved after review).
    pub false_positives: u64,
    /// Of those, the ones the proposal no longer fires this rule for.
    pub false_positives_passing: u64,
}

/// What a proposal would have done to the cases assessed in the window.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayView {
    /// The current version of the rules (what the proposal would replace).
    pub current_version: i32,
    /// Cases assessed since then were replayed.
    pub since: DateTime<Utc>,
    /// Cases replayed (each case's latest assessment in the window).
    pub assessments: u64,
    /// Of those, flagged (above low) as recorded.
    pub flagged_recorded: u64,
    /// Of those, flagged under the proposal.
    pub flagged_proposed: u64,
    /// Low as recorded, flagged under the proposal.
    pub newly_flagged: u64,
    /// Flagged as recorded, low under the proposal.
    pub cleared: u64,
    /// Cases with at least one labelled false positive.
    pub false_positive_cases: u64,
    /// Of those, the ones that would have passed (low) under the proposal.
    pub false_positive_cases_passing: u64,
    /// Per rule.
    pub rules: Vec<RuleReplayView>,
}

impl ReplayView {
    fn new(current_version: i32, since: DateTime<Utc>, r: ReplayReport) -> Self {
        Self {
            current_version,
            since,
            assessments: r.assessments,
            flagged_recorded: r.flagged_recorded,
            flagged_proposed: r.flagged_proposed,
            newly_flagged: r.newly_flagged,
            cleared: r.cleared,
            false_positive_cases: r.false_positive_cases,
            false_positive_cases_passing: r.false_positive_cases_passing,
            rules: r
                .rules
                .into_iter()
                .map(|l| RuleReplayView {
                    reason_code: l.reason.as_str().into(),
                    fired_recorded: l.fired_recorded,
                    fired_proposed: l.fired_proposed,
                    false_positives: l.false_positives,
                    false_positives_passing: l.false_positives_passing,
                })
                .collect(),
        }
    }
}

/// The current thresholds of the risk rules and every version before (who, when, why).
#[utoipa::path(
    get, path = "/v1/agent/risk-rules", tag = "agent",
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The current version and the history", body = RiskRulesView),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Supervisors only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn risk_rules(
    State(state): State<AppState>,
    session: AgentSession,
) -> Result<Json<RiskRulesView>, ApiError> {
    let rows = wf::versions(&state.pool, &session.as_agent()).await?;
    let current = rows
        .iter()
        .find(|r| r.activated)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no current version of the risk rules"))?;
    Ok(Json(RiskRulesView {
        current: current.into(),
        history: rows.into_iter().map(Into::into).collect(),
    }))
}

/// Makes new thresholds the next version of the risk rules and activates it: the risk service grades with it from now on, and every assessment records it. Audited (`risk_rules.change`, with the old and new thresholds and the reason).
#[utoipa::path(
    post, path = "/v1/agent/risk-rules", tag = "agent",
    request_body = NewRulesRequest,
    security(("agent_token" = [])),
    responses(
        (status = 201, description = "The new version, current now", body = NewRulesView),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Supervisors only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "`based_on` is not the current version (code rules_changed): read the rules again", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Thresholds out of bounds (each named: medium at least 1 and at most high, high within the rule's bound, highs_for_extreme 1 to 3), reason missing or out of bounds, unknown field", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn change_risk_rules(
    State(state): State<AppState>,
    session: AgentSession,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (request, _): (NewRulesRequest, _) = parse_json(&body)?;
    let made = wf::change(
        &state.pool,
        &session.as_agent(),
        request.based_on,
        request.thresholds.into(),
        &request.reason,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewRulesView {
            version: made.version,
            based_on: made.based_on,
            thresholds: made.thresholds.into(),
            previous: made.previous.into(),
            created_at: made.created_at,
        }),
    )
        .into_response())
}

/// Replays the cases assessed in the last `days` days under proposed thresholds: how many would have been flagged, and how many of the labelled false positives would have passed, per rule and overall. Changes nothing.
#[utoipa::path(
    post, path = "/v1/agent/risk-rules/replay", tag = "agent",
    request_body = ReplayRequest,
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The counts", body = ReplayView),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Supervisors only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Thresholds out of bounds (each named), days not between 1 and 90, unknown field", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn replay_risk_rules(
    State(state): State<AppState>,
    session: AgentSession,
    body: Bytes,
) -> Result<Json<ReplayView>, ApiError> {
    let (request, _): (ReplayRequest, _) = parse_json(&body)?;
    let replayed = wf::replay(
        &state.pool,
        &session.as_agent(),
        request.thresholds.into(),
        request.days,
        Utc::now(),
    )
    .await?;
    Ok(Json(ReplayView::new(
        replayed.current_version,
        replayed.since,
        replayed.report,
    )))
}
