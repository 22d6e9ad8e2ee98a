//! What an agent does with a case: read the queue and the shared view, claim and
//! release, decide, note, unmask, and the supervisors' views (the false-positive
//! report, the escalations). The JSON agent API and the console call these same
//! functions, so what an agent may see and do is the same in both by construction.
//!
//! Every decision is checked against the domain's transition table (deny by
//! default), claims the case for the acting agent, uses optimistic concurrency
//! (`expected_version`), and is audited in the same transaction as the transition.
//! The role check comes first (`Forbidden`), then the claim (`ClaimedByOther`), then
//! the version (`StaleVersion`).

use case_domain::{
    Actor, CaseEvent, CaseState, Department, Restoration, Role,
    agent_policy::{
        self, CASE_READERS, CLAIM_TTL, IdentityCheck, NameIdMatch, REASON_MAX_CHARS, SUPERVISORS,
        UNMASKERS, decides_appeal, may_decide_appeal, may_verify_identity, note_ok, queue_roles,
        queue_states, unmask_reason_ok,
    },
    complaint::Priority,
    decision::{RejectionCode, acting_role, agent_may_act},
    sla::SlaConfig,
};
use case_store::{
    CaseRow, EventRow, StoreError, TransitionRequest,
    agent_work::{self, ClaimRefusal},
    audit::{self, AuditEntry},
    material::EvidenceMeta,
    number_budget::{self, ProofTried},
    risk::{self as risk_store, AssessmentRow, OrderRow},
};
use chrono::{DateTime, Utc};
use data_protection::Keys;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{WorkflowError, eta::sla_due_at};

/// The acting agent: who they are and which roles they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Agent id.
    pub id: Uuid,
    /// Login name.
    pub username: String,
    /// Roles (cs, store, security, technical, supervisor, admin).
    pub roles: Vec<Role>,
}

impl Agent {
    /// Whether the agent holds any of `roles`.
    pub fn holds_any(&self, roles: &[Role]) -> bool {
        agent_policy::holds_any(&self.roles, roles)
    }

    /// `Forbidden` unless the agent holds one of `roles`.
    pub fn require_any(&self, roles: &[Role]) -> Result<(), WorkflowError> {
        if self.holds_any(roles) {
            Ok(())
        } else {
            Err(WorkflowError::Forbidden(
                "Your role may not do this.".into(),
            ))
        }
    }

    /// The agent as an actor in `role`.
    pub fn actor(&self, role: Role) -> Actor {
        Actor::agent(role, self.id.to_string())
    }

    /// The agent as an actor in their first role (audit rows not tied to a decision).
    pub fn any_actor(&self) -> Actor {
        self.actor(self.roles.first().copied().unwrap_or(Role::Admin))
    }

    fn may_work(&self, state: CaseState) -> Result<(), WorkflowError> {
        if agent_may_act(&self.roles, state) {
            Ok(())
        } else {
            Err(WorkflowError::Forbidden(format!(
                "Your role may not work cases that are {state}."
            )))
        }
    }
}

/// The agent holding a case now (their id), if an agent's claim is live.
fn live_holder(
    lease_owner: Option<&str>,
    lease_expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<String> {
    let live = lease_expires_at.is_some_and(|t| t > now);
    lease_owner
        .filter(|o| live && o.starts_with("agent:"))
        .map(|o| o.trim_start_matches("agent:").to_owned())
}

async fn load(pool: &PgPool, case_id: Uuid) -> Result<CaseRow, WorkflowError> {
    case_store::load_case(pool, case_id)
        .await?
        .ok_or(WorkflowError::NotFound)
}

async fn audit_read(
    pool: &PgPool,
    agent: &Agent,
    case_id: Uuid,
    action: &str,
    detail: serde_json::Value,
    reason: Option<&str>,
) -> Result<(), WorkflowError> {
    let mut conn = pool.acquire().await?;
    audit::record(
        &mut conn,
        &AuditEntry {
            actor: &agent.any_actor(),
            action,
            case_id: Some(case_id),
            detail,
            reason,
        },
    )
    .await?;
    Ok(())
}

/// One case in a department queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueItem {
    /// Case id.
    pub case_id: Uuid,
    /// State.
    pub state: CaseState,
    /// Version.
    pub version: i32,
    /// When the stage is due.
    pub sla_due_at: Option<DateTime<Utc>>,
    /// Whether the stage is overdue.
    pub breached: bool,
    /// The agent holding the case (id), if any.
    pub claimed_by: Option<String>,
    /// Until when the case is held (by an agent or a worker), if it is.
    pub claimed_until: Option<DateTime<Utc>>,
    /// The number, masked.
    pub msisdn: String,
    /// Latest risk tier.
    pub tier: Option<String>,
    /// The case has an unanswered complaint.
    pub complaint: bool,
    /// The subscriber asked for expedited handling.
    pub expedited: bool,
    /// Its priority (complaint, expedited or normal).
    pub priority: Priority,
}

/// A department's queue: cases with an unanswered complaint first, then those that
/// asked for expedited handling, then earliest SLA due first. Only the department's roles (and supervisors) may read it.
pub async fn queue(
    pool: &PgPool,
    sla: &SlaConfig,
    agent: &Agent,
    department: Department,
    now: DateTime<Utc>,
) -> Result<Vec<QueueItem>, WorkflowError> {
    agent.require_any(queue_roles(department))?;
    let rows = agent_work::queue(pool, queue_states(department), 500).await?;
    let mut cases: Vec<QueueItem> = rows
        .into_iter()
        .map(|r| {
            let due = sla_due_at(sla, r.state, r.state_entered_at);
            let holder = live_holder(r.lease_owner.as_deref(), r.lease_expires_at, now);
            QueueItem {
                case_id: r.id,
                state: r.state,
                version: r.version,
                sla_due_at: due,
                breached: due.is_some_and(|d| d < now),
                claimed_until: r.lease_expires_at.filter(|t| *t > now),
                claimed_by: holder,
                msisdn: r.msisdn.masked(),
                tier: r.tier,
                priority: Priority::for_case(i64::from(r.complaint), r.expedited),
                complaint: r.complaint,
                expedited: r.expedited,
            }
        })
        .collect();
    cases.sort_by_key(|c| (c.priority, c.sla_due_at));
    Ok(cases)
}

/// The identity proofs' status, masked.
#[derive(Debug, Clone, PartialEq)]
pub struct Proofs {
    /// Masked full name.
    pub full_name: String,
    /// Masked ID number (last four only).
    pub id_number: String,
    /// Codes sent.
    pub otp_sends: i32,
    /// Failed proofs.
    pub failed_attempts: i32,
    /// The proof that verified identity, if any.
    pub verified_method: Option<String>,
    /// When.
    pub verified_at: Option<DateTime<Utc>>,
    /// Whether the name and ID matched the carrier's record (or it was not asked yet).
    pub name_id_match: NameIdMatch,
    /// The proofs offered on the case (method, outcome, when), oldest first.
    pub tried: Vec<ProofTried>,
    /// The verification ladder: the tier that decides the proofs asked (None until
    /// graded), the proofs given, and the steps still open (each: any one kind).
    pub ladder_tier: Option<case_domain::risk::RiskTier>,
    /// The ladder's proofs given so far.
    pub ladder_given: Vec<&'static str>,
    /// The ladder's steps still open.
    pub ladder_needed: Vec<Vec<&'static str>>,
}

/// A note.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// Note id.
    pub id: Uuid,
    /// Author's username.
    pub author: String,
    /// Text.
    pub body: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The shared view of a case (the subscriber's complaints are added by the edge).
#[derive(Debug, Clone)]
pub struct CaseView {
    /// Case id.
    pub case_id: Uuid,
    /// State.
    pub state: CaseState,
    /// Version (sent back as expected_version).
    pub version: i32,
    /// Masked number.
    pub msisdn: String,
    /// Channel.
    pub channel: case_domain::Channel,
    /// Subscriber's language.
    pub locale: case_domain::Locale,
    /// Opened at.
    pub created_at: DateTime<Utc>,
    /// When the stage is due.
    pub sla_due_at: Option<DateTime<Utc>>,
    /// The agent holding the case (id), if any.
    pub claimed_by: Option<String>,
    /// Until when.
    pub claimed_until: Option<DateTime<Utc>>,
    /// Whether the case was appealed.
    pub appealed: bool,
    /// Agent who made the last rejection (an appeal must go to someone else).
    pub rejected_by: Option<String>,
    /// Identity proofs.
    pub proofs: Option<Proofs>,
    /// Latest risk grading.
    pub risk: Option<AssessmentRow>,
    /// Provisioning orders.
    pub orders: Vec<OrderRow>,
    /// Notes, oldest first.
    pub notes: Vec<Note>,
    /// Every transition, oldest first.
    pub timeline: Vec<EventRow>,
    /// The evidence files' metadata, oldest first.
    pub evidence: Vec<EvidenceMeta>,
    /// The actions this agent may take now (the table the server enforces, less
    /// `verify_identity` when the name/ID mismatch needs a supervisor this agent is not).
    pub allowed_actions: Vec<&'static str>,
}

/// The shared view of a case, read by an agent who may read cases; audited (`case.view`).
pub async fn view_case(
    pool: &PgPool,
    sla: &SlaConfig,
    agent: &Agent,
    case_id: Uuid,
) -> Result<CaseView, WorkflowError> {
    agent.require_any(CASE_READERS)?;
    let case = load(pool, case_id).await?;
    audit_read(
        pool,
        agent,
        case.id,
        "case.view",
        serde_json::json!({}),
        None,
    )
    .await?;
    case_view(pool, sla, agent, &case).await
}

/// An agent opens the live stream of a case (its status as it changes): only for
/// agents who may read cases; audited (`case.follow`) like any read of a case.
pub async fn follow_case(
    pool: &PgPool,
    agent: &Agent,
    case_id: Uuid,
) -> Result<CaseRow, WorkflowError> {
    agent.require_any(CASE_READERS)?;
    let case = load(pool, case_id).await?;
    audit_read(
        pool,
        agent,
        case.id,
        "case.follow",
        serde_json::json!({}),
        None,
    )
    .await?;
    Ok(case)
}

/// Builds the shared view of `case` for `agent` (no role check, no audit: callers
/// have done both, e.g. after a decision).
pub async fn case_view(
    pool: &PgPool,
    sla: &SlaConfig,
    agent: &Agent,
    case: &CaseRow,
) -> Result<CaseView, WorkflowError> {
    let identity = case_store::identity::load_identity(pool, case.id).await?;
    let risk = risk_store::latest_assessment(pool, case.id).await?;
    let orders = risk_store::orders_for_case(pool, case.id).await?;
    let notes = agent_work::notes(pool, case.id).await?;
    let timeline = case_store::timeline(pool, case.id).await?;
    let evidence = case_store::material::list_evidence(pool, case.id).await?;
    let tried = match identity {
        Some(_) => number_budget::proofs_tried(pool, case.id).await?,
        None => Vec::new(),
    };
    let name_id_match = NameIdMatch::of(identity.as_ref().and_then(|i| i.subscriber_match));
    let mut allowed_actions = agent_policy::allowed_actions(&agent.roles, case.state);
    if may_verify_identity(&agent.roles, name_id_match).is_err() {
        let verify = CaseEvent::IdentityVerified.agent_action();
        allowed_actions.retain(|a| Some(*a) != verify);
    }
    let appealed = timeline.iter().any(|e| e.event == CaseEvent::Appealed);
    let rejected_by = timeline
        .iter()
        .rev()
        .find(|e| e.event == CaseEvent::Rejected)
        .map(|e| e.actor_id.clone());
    let holder = live_holder(
        case.lease_owner.as_deref(),
        case.lease_expires_at,
        Utc::now(),
    );
    Ok(CaseView {
        case_id: case.id,
        state: case.state,
        version: case.version,
        msisdn: case.msisdn.masked(),
        channel: case.channel,
        locale: case.locale,
        created_at: case.created_at,
        sla_due_at: sla_due_at(sla, case.state, case.state_entered_at),
        claimed_until: holder.as_ref().and(case.lease_expires_at),
        claimed_by: holder,
        appealed,
        rejected_by,
        proofs: identity.map(|i| {
            let given = case_domain::ladder::parse_given(&i.proofs_given);
            let tier = i.proof_tier.unwrap_or(case_domain::risk::RiskTier::Low);
            Proofs {
                ladder_tier: i.proof_tier,
                ladder_needed: case_domain::ladder::rung_names(&case_domain::ladder::outstanding(
                    tier, &given,
                )),
                ladder_given: given.iter().map(|k| k.as_str()).collect(),
                full_name: i.full_name_masked,
                id_number: format!("**************{}", i.id_number_last4),
                otp_sends: i.otp_sends,
                failed_attempts: i.failed_attempts,
                verified_method: i.verified_method,
                verified_at: i.verified_at,
                name_id_match,
                tried,
            }
        }),
        risk,
        orders,
        notes: notes
            .into_iter()
            .map(|n| Note {
                id: n.id,
                author: n.username,
                body: n.body,
                at: n.created_at,
            })
            .collect(),
        timeline,
        evidence,
        allowed_actions,
    })
}

/// An agent's decision on a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The event the decision causes (approve, approve partly, reject, request
    /// info, verify identity, retry provisioning, resolve by hand, close).
    pub event: CaseEvent,
    /// Why (shown to the subscriber for request_info and reject); required for request_info.
    pub reason: Option<String>,
    /// For a rejection: the customer-safe code (required).
    pub rejection: Option<RejectionCode>,
    /// For verify_identity: how identity was checked (required).
    pub identity_check: Option<IdentityCheck>,
    /// The version the agent saw.
    pub expected_version: i32,
}

fn invalid(field: &str, message: &str) -> WorkflowError {
    WorkflowError::invalid(field, message)
}

/// Applies an agent's decision and returns the case as it now stands.
///
/// The role is judged on the state the agent saw (the state at their expected
/// version), so a stale decision is `StaleVersion`, not `Forbidden`. An appeal is
/// decided by someone other than the analyst who rejected (four-eyes).
pub async fn decide(
    pool: &PgPool,
    agent: &Agent,
    case_id: Uuid,
    decision: &Decision,
) -> Result<CaseRow, WorkflowError> {
    let case = load(pool, case_id).await?;
    decide_on(pool, agent, &case, decision).await
}

async fn decide_on(
    pool: &PgPool,
    agent: &Agent,
    case: &CaseRow,
    decision: &Decision,
) -> Result<CaseRow, WorkflowError> {
    let event = decision.event;
    let expected_version = decision.expected_version;
    // 1. Role (deny by default), on the state the agent saw.
    let seen_state = if expected_version == case.version {
        case.state
    } else {
        agent_work::state_at_version(pool, case.id, expected_version)
            .await?
            .unwrap_or(case.state)
    };
    let role = acting_role(&agent.roles, seen_state, event).map_err(|e| match e {
        case_domain::TransitionError::Forbidden { from, .. } => {
            WorkflowError::Forbidden(format!("Your role may not act on a case that is {from}."))
        }
        illegal => WorkflowError::IllegalTransition(illegal.to_string()),
    })?;
    // Four-eyes on appeals.
    if decides_appeal(case.state, event, true) && agent_work::was_appealed(pool, case.id).await? {
        let rejected_by = agent_work::last_rejected_by(pool, case.id).await?;
        if !may_decide_appeal(rejected_by.as_deref(), &agent.id.to_string()) {
            return Err(WorkflowError::Forbidden("An appeal must be decided by a different analyst than the one who rejected the case.".into()));
        }
    }
    // 2. Input rules.
    let reason = decision
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.chars().count() > REASON_MAX_CHARS) {
        return Err(invalid("reason", "reason must be at most 2000 characters"));
    }
    let rejection = match event {
        CaseEvent::Rejected => Some(decision.rejection.ok_or_else(|| invalid("reason_code", "reject needs a reason_code: insufficient_explanation, evidence_not_verifiable, identity_not_confirmed or fraud_confirmed"))?),
        _ => None,
    };
    if event == CaseEvent::InfoRequested && reason.is_none() {
        return Err(invalid(
            "reason",
            "request_info needs a reason: what the subscriber must provide",
        ));
    }
    if event == CaseEvent::Cancelled && !reason.is_some_and(case_domain::supervision::reason_ok) {
        return Err(invalid(
            "reason",
            "cancel needs a reason of 5 to 500 characters: why the request is withdrawn on the subscriber's behalf",
        ));
    }
    let identity_check = match event {
        CaseEvent::IdentityVerified => Some(decision.identity_check.ok_or_else(|| {
            invalid(
                "identity_check",
                &format!(
                    "verify_identity needs identity_check, how identity was checked: {}",
                    IdentityCheck::ALL.map(IdentityCheck::as_str).join(", ")
                ),
            )
        })?),
        _ => None,
    };
    // A name/ID the carrier said does not match takes a supervisor to verify; the
    // case's tier on the verification ladder may ask for a call-back or the ID in person.
    if event == CaseEvent::IdentityVerified {
        may_verify(
            agent,
            &case_store::identity::load_identity(pool, case.id).await?,
        )?;
        if let Some(check) = identity_check {
            ladder_allows(pool, case.id, check).await?;
        }
    }
    // 3. Claim for this agent (another holds it: ClaimedByOther), at the expected version.
    let fence = match agent_work::claim_for_agent(
        pool,
        case.id,
        agent.id,
        Some(expected_version),
        CLAIM_TTL,
    )
    .await?
    {
        Ok((fence, _)) => fence,
        Err(refusal) => return Err(claim_refused(refusal)),
    };
    // 4. The transition, its side effects and the audit row, in one transaction.
    let actor = agent.actor(role);
    let customer_reason = match (rejection, identity_check) {
        (Some(code), _) => Some(code.text(case.locale.as_str()).to_owned()),
        // The timeline says how identity was checked, then the agent's words.
        (None, Some(check)) => Some(match reason {
            Some(r) => format!("{}. {r}", check.text(case.locale.as_str())),
            None => check.text(case.locale.as_str()).to_owned(),
        }),
        (None, None) => reason.map(str::to_owned),
    };
    let transition = TransitionRequest {
        case_id: case.id,
        expected_version,
        event,
        actor: &actor,
        reason: customer_reason.as_deref(),
        fence: Some(&fence),
        outbox: vec![],
    };
    let mut tx = pool.begin().await?;
    if event == CaseEvent::IdentityVerified {
        // Again inside the transaction, on the row as it now stands.
        may_verify(
            agent,
            &case_store::identity::load_identity(&mut *tx, case.id).await?,
        )?;
    }
    let moved = match event {
        CaseEvent::Approved | CaseEvent::PartlyApproved | CaseEvent::ProvisioningRetried => {
            let restoration = match event {
                CaseEvent::PartlyApproved => Restoration::InboundOnly,
                CaseEvent::ProvisioningRetried => {
                    let orders = risk_store::orders_for_case(&mut *tx, case.id).await?;
                    orders.last().map_or(Restoration::Full, |o| o.restoration)
                }
                _ => Restoration::Full,
            };
            risk_store::transition_into_provisioning(&mut tx, transition, restoration).await
        }
        _ => case_store::transition_in(&mut tx, transition).await,
    };
    let moved = match moved {
        Ok(done) => done,
        Err(StoreError::StaleVersion { .. }) => return Err(WorkflowError::StaleVersion),
        Err(StoreError::LeaseLost { .. }) => return Err(WorkflowError::ClaimedByOther),
        Err(e) => return Err(e.into()),
    };
    if matches!(event, CaseEvent::Approved | CaseEvent::PartlyApproved)
        && case.state == CaseState::SecurityReview
        && let Some(assessment) = risk_store::latest_assessment(&mut *tx, case.id).await?
    {
        agent_work::label_false_positives(&mut *tx, case.id, &assessment.reason_codes, agent.id)
            .await?;
    }
    if event == CaseEvent::IdentityVerified {
        case_store::identity::mark_identity_verified(&mut *tx, case.id, "agent").await?;
        if let Some(kind) = identity_check.and_then(case_domain::ladder::agent_kind) {
            case_store::identity::add_proof(&mut *tx, case.id, kind.as_str()).await?;
        }
    }
    audit::record(
        &mut tx,
        &AuditEntry {
            actor: &actor,
            action: "case.decision",
            case_id: Some(case.id),
            detail: serde_json::json!({
                "action": event.agent_action(),
                "from": case.state,
                "to": moved.case.state,
                "version": moved.case.version,
                "reason_code": rejection.map(|c| c.as_str()),
                "identity_check": identity_check.map(IdentityCheck::as_str),
            }),
            reason,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(case_id = %case.id, action = event.agent_action(), role = %role, "agent decision");
    Ok(moved.case)
}

/// Refuses an agent's identity check that does not give what the case's tier on the
/// verification ladder asks (the high tier: a call-back to the number on file or the
/// ID seen in person; the extreme tier: the latter).
async fn ladder_allows(
    pool: &PgPool,
    case_id: uuid::Uuid,
    check: IdentityCheck,
) -> Result<(), WorkflowError> {
    let Some(row) = case_store::identity::ladder(pool, case_id).await? else {
        return Ok(());
    };
    let tier = row.proof_tier.unwrap_or(case_domain::risk::RiskTier::Low);
    let given = case_domain::ladder::parse_given(&row.proofs_given);
    if case_domain::ladder::agent_check_suffices(tier, &given, check) {
        return Ok(());
    }
    Err(WorkflowError::Refused {
        code: "ladder_requires",
        detail: format!(
            "This case's risk tier ({}) asks for {}: confirm identity that way.",
            tier.as_str(),
            if tier == case_domain::risk::RiskTier::Extreme {
                "the original ID card seen in person (original_id_in_person)"
            } else {
                "a call-back to the number on file (callback_to_contact_on_file) or the original ID card seen in person (original_id_in_person)"
            }
        ),
    })
}

/// `ForbiddenOf` when the carrier said the case's name and ID do not match and the
/// agent is not a supervisor.
fn may_verify(
    agent: &Agent,
    identity: &Option<case_store::identity::IdentityRow>,
) -> Result<(), WorkflowError> {
    let name_id = NameIdMatch::of(identity.as_ref().and_then(|i| i.subscriber_match));
    may_verify_identity(&agent.roles, name_id).map_err(|refusal| WorkflowError::ForbiddenOf {
        code: refusal.code(),
        detail: "The name and ID on this case did not match the carrier's record: only a supervisor may confirm identity.".into(),
    })
}

fn claim_refused(refusal: ClaimRefusal) -> WorkflowError {
    match refusal {
        ClaimRefusal::NotFound => WorkflowError::NotFound,
        ClaimRefusal::Stale { .. } => WorkflowError::StaleVersion,
        ClaimRefusal::HeldByOther { .. } => WorkflowError::ClaimedByOther,
    }
}

/// A granted claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Case id.
    pub case_id: Uuid,
    /// The agent holding it.
    pub claimed_by: Uuid,
    /// Until when (renewed by every action).
    pub claimed_until: DateTime<Utc>,
}

/// Claims a case for the agent (or renews their claim), optionally only at
/// `expected_version`: one agent at a time, for [`CLAIM_TTL`].
pub async fn claim(
    pool: &PgPool,
    agent: &Agent,
    case_id: Uuid,
    expected_version: Option<i32>,
) -> Result<Claim, WorkflowError> {
    let case = load(pool, case_id).await?;
    agent.may_work(case.state)?;
    if case.state.is_automated() {
        // A service worker holds such cases; an agent's claim would stall it.
        return Err(WorkflowError::Refused {
            code: "worked_automatically",
            detail: format!(
                "Cases that are {} are worked automatically and cannot be claimed.",
                case.state
            ),
        });
    }
    match agent_work::claim_for_agent(pool, case.id, agent.id, expected_version, CLAIM_TTL).await? {
        Ok((_, until)) => Ok(Claim {
            case_id: case.id,
            claimed_by: agent.id,
            claimed_until: until,
        }),
        Err(refusal) => Err(claim_refused(refusal)),
    }
}

/// Releases the agent's claim on a case.
pub async fn release(pool: &PgPool, agent: &Agent, case_id: Uuid) -> Result<(), WorkflowError> {
    let case = load(pool, case_id).await?;
    agent.may_work(case.state)?;
    if agent_work::release_for_agent(pool, case.id, agent.id).await? {
        Ok(())
    } else {
        Err(WorkflowError::Refused {
            code: "not_claimed",
            detail: "You do not hold this case.".into(),
        })
    }
}

/// Adds an internal note (never shown to the subscriber): 1 to 4000 characters.
pub async fn add_note(
    pool: &PgPool,
    agent: &Agent,
    case_id: Uuid,
    text: &str,
) -> Result<Note, WorkflowError> {
    agent.require_any(CASE_READERS)?;
    let case = load(pool, case_id).await?;
    let text = text.trim();
    if !note_ok(text) {
        return Err(invalid("body", "a note has 1 to 4000 characters"));
    }
    let id = agent_work::add_note(pool, case.id, agent.id, text).await?;
    Ok(Note {
        id,
        author: agent.username.clone(),
        body: text.to_owned(),
        at: Utc::now(),
    })
}

/// Personal data in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmasked {
    /// The number.
    pub msisdn: String,
    /// Full name.
    pub full_name: String,
    /// Resident ID number.
    pub id_number: String,
}

/// Shows the subscriber's personal data unmasked: only for [`UNMASKERS`], with a
/// reason of 5 to 500 characters recorded in the audit log (`case.unmask`).
pub async fn unmask(
    pool: &PgPool,
    keys: &Keys,
    agent: &Agent,
    case_id: Uuid,
    reason: &str,
) -> Result<Unmasked, WorkflowError> {
    agent.require_any(UNMASKERS)?;
    let case = load(pool, case_id).await?;
    let reason = reason.trim();
    if !unmask_reason_ok(reason) {
        return Err(invalid("reason", "say why, in 5 to 500 characters"));
    }
    let identity = case_store::identity::load_identity(pool, case.id)
        .await?
        .ok_or(WorkflowError::NotFound)?;
    // Refused (`personal_data_deleted`, with the date) once retention destroyed the
    // case's data key.
    let crate::retention::OpenedIdentity {
        full_name,
        id_number,
    } = crate::retention::open_identity(pool, keys, &identity).await?;
    audit_read(
        pool,
        agent,
        case.id,
        "case.unmask",
        serde_json::json!({}),
        Some(reason),
    )
    .await?;
    Ok(Unmasked {
        msisdn: case.msisdn.e164().to_owned(),
        full_name,
        id_number,
    })
}

/// An evidence file as stored: its recognised media type and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceFile {
    /// The media type recognised at upload.
    pub media_type: String,
    /// The content.
    pub content: Vec<u8>,
}

/// One evidence file of a case, for an agent who may read cases, opened under the
/// case's evidence key (a file stored before sealing existed is read in clear);
/// each view is audited (`case.evidence_view`). After retention deleted the case's
/// evidence, the refusal says when.
pub async fn evidence_file(
    pool: &PgPool,
    keys: &data_protection::Keys,
    agent: &Agent,
    case_id: Uuid,
    evidence_id: Uuid,
) -> Result<EvidenceFile, WorkflowError> {
    agent.require_any(CASE_READERS)?;
    let mut conn = pool.acquire().await?;
    let Some(stored) =
        case_store::material::load_evidence_content(&mut *conn, case_id, evidence_id).await?
    else {
        return Err(
            match case_store::retention::deletions(&mut *conn, case_id)
                .await?
                .and_then(|d| d.evidence_deleted_at)
            {
                Some(on) => crate::material::deleted(data_protection::MaterialKind::Evidence, on),
                None => WorkflowError::NotFound,
            },
        );
    };
    let media_type = stored.media_type.clone();
    let content =
        crate::material::open_evidence(&mut conn, keys, case_id, evidence_id, stored).await?;
    drop(conn);
    audit_read(
        pool,
        agent,
        case_id,
        "case.evidence_view",
        serde_json::json!({ "evidence_id": evidence_id }),
        None,
    )
    .await?;
    Ok(EvidenceFile {
        media_type,
        content,
    })
}

/// One reason code's feedback under one version of the risk rules.
#[derive(Debug, Clone, PartialEq)]
pub struct FalsePositiveLine {
    /// The version of the risk rules.
    pub rule_version: i32,
    /// Reason code.
    pub reason_code: String,
    /// Cases it flagged.
    pub flagged: i64,
    /// Of those, approved after review (false positives).
    pub approved: i64,
    /// approved ÷ flagged (0 when none flagged).
    pub false_positive_rate: f64,
}

/// Per rule version and reason code, how many flagged cases were later approved
/// (supervisors only).
pub async fn false_positive_report(
    pool: &PgPool,
    agent: &Agent,
) -> Result<Vec<FalsePositiveLine>, WorkflowError> {
    agent.require_any(SUPERVISORS)?;
    Ok(agent_work::false_positive_report(pool)
        .await?
        .into_iter()
        .map(|r| FalsePositiveLine {
            false_positive_rate: if r.flagged > 0 {
                r.approved as f64 / r.flagged as f64
            } else {
                0.0
            },
            rule_version: r.rule_version,
            reason_code: r.reason_code,
            flagged: r.flagged,
            approved: r.approved,
        })
        .collect())
}

/// One escalated case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalated {
    /// Case id.
    pub case_id: Uuid,
    /// Current state.
    pub state: CaseState,
    /// Version.
    pub version: i32,
    /// 1: the stage ran past its SLA; 2: past twice its SLA.
    pub escalation_level: i16,
    /// When that level was reached.
    pub escalated_at: Option<DateTime<Utc>>,
    /// The stage that breached.
    pub escalated_state: Option<CaseState>,
    /// When the case entered its current state.
    pub state_entered_at: DateTime<Utc>,
    /// The agent holding the case (id), if any.
    pub claimed_by: Option<String>,
    /// The number, masked.
    pub msisdn: String,
    /// The agent who escalated the case by hand (None: an SLA escalation).
    pub escalated_by: Option<String>,
    /// Their reason.
    pub escalation_reason: Option<String>,
}

/// The most escalated cases listed.
const ESCALATIONS_LIMIT: i64 = 500;

/// Open cases escalated to supervisors because a stage ran past its SLA or an agent
/// escalated them by hand (supervisors only): highest level first, then the oldest
/// escalation.
pub async fn escalations(
    pool: &PgPool,
    agent: &Agent,
    now: DateTime<Utc>,
) -> Result<Vec<Escalated>, WorkflowError> {
    agent.require_any(SUPERVISORS)?;
    let rows = case_store::timers::escalated_cases(pool, ESCALATIONS_LIMIT).await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.case_id).collect();
    let manual = case_store::supervision::manual_escalations(pool, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let by_hand = manual.iter().find(|m| m.case_id == r.case_id);
            Escalated {
                escalated_by: by_hand.and_then(|m| m.escalated_by.clone()),
                escalation_reason: by_hand.and_then(|m| m.reason.clone()),
                case_id: r.case_id,
                state: r.state,
                version: r.version,
                escalation_level: r.level,
                escalated_at: r.escalated_at,
                escalated_state: r.escalated_state,
                state_entered_at: r.state_entered_at,
                claimed_by: live_holder(r.lease_owner.as_deref(), r.lease_expires_at, now),
                msisdn: r.msisdn.masked(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_agent_claims_name_a_holder() {
        let now = Utc::now();
        let later = now + chrono::Duration::minutes(5);
        let id = Uuid::nil().to_string();
        assert_eq!(
            live_holder(Some(&format!("agent:{id}")), Some(later), now),
            Some(id.clone())
        );
        assert_eq!(
            live_holder(
                Some(&format!("agent:{id}")),
                Some(now - chrono::Duration::seconds(1)),
                now
            ),
            None
        );
        assert_eq!(live_holder(Some("worker:risk"), Some(later), now), None);
        assert_eq!(live_holder(None, None, now), None);
    }

    #[test]
    fn numbers_are_masked() {
        // A stored number that does not parse never reaches here: reading it is an error.
        let number = case_domain::Msisdn::parse("+8613800138000").unwrap();
        assert!(!number.masked().contains("13800138"));
    }
}
