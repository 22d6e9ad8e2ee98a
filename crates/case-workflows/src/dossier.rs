//! The regulator's dossier of a case, assembled from the store: everything a 12300
//! complaint needs about one case (the case, its masked identity, the latest risk
//! grading, the orders, every transition with the agents' names, the evidence
//! metadata and the complaints; after retention, what was deleted and when). Each export is audited (`case.dossier`). The edge
//! lays it out (JSON or a printable page).

use case_domain::agent_policy::DOSSIER_READERS;
use case_store::{
    CaseRow, EventRow,
    audit::{self, AuditEntry},
    complaints::ComplaintRow,
    identity::IdentityRow,
    material::EvidenceMeta,
    number_budget::ProofTried,
    retention::DeletionRow,
    risk::{AssessmentRow, OrderRow},
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{WorkflowError, agent::Agent};

/// The form the dossier is exported in (recorded in the audit row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DossierForm {
    /// application/json.
    Json,
    /// A printable text/html page.
    Html,
}

impl DossierForm {
    /// json or html.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Html => "html",
        }
    }
}

/// The facts of a case's dossier, as stored. Personal data only in masked form:
/// the identity's encrypted fields are never decrypted here.
#[derive(Debug, Clone)]
pub struct DossierFacts {
    /// The case.
    pub case: CaseRow,
    /// Its identity claim (only the masked fields are to be shown).
    pub identity: Option<IdentityRow>,
    /// The proofs offered on the case, oldest first.
    pub proofs_tried: Vec<ProofTried>,
    /// The latest risk assessment.
    pub assessment: Option<AssessmentRow>,
    /// Provisioning orders, oldest first.
    pub orders: Vec<OrderRow>,
    /// The event log, oldest first.
    pub timeline: Vec<EventRow>,
    /// Usernames of the agents in the timeline.
    pub agent_names: Vec<(Uuid, String)>,
    /// Evidence metadata, oldest first.
    pub evidence: Vec<EvidenceMeta>,
    /// Complaints, oldest first.
    pub complaints: Vec<ComplaintRow>,
    /// What retention deleted of the case's personal data, and when (none before).
    pub deletions: Option<DeletionRow>,
    /// Export time.
    pub generated_at: DateTime<Utc>,
    /// The exporting agent's username.
    pub generated_by: String,
}

/// Exports a case's dossier for `agent` ([`DOSSIER_READERS`] only), recording the
/// export in the audit log.
pub async fn export(
    pool: &PgPool,
    agent: &Agent,
    case_id: Uuid,
    form: DossierForm,
    now: DateTime<Utc>,
) -> Result<DossierFacts, WorkflowError> {
    agent.require_any(DOSSIER_READERS)?;
    let case = case_store::load_case(pool, case_id)
        .await?
        .ok_or(WorkflowError::NotFound)?;
    let identity = case_store::identity::load_identity(pool, case.id).await?;
    let proofs_tried = case_store::number_budget::proofs_tried(pool, case.id).await?;
    let assessment = case_store::risk::latest_assessment(pool, case.id).await?;
    let orders = case_store::risk::orders_for_case(pool, case.id).await?;
    let timeline = case_store::timeline(pool, case.id).await?;
    let evidence = case_store::material::list_evidence(pool, case.id).await?;
    let complaints = case_store::complaints::list_for_case(pool, case.id).await?;
    let deletions = case_store::retention::deletions(pool, case.id).await?;
    let agent_ids: Vec<Uuid> = timeline
        .iter()
        .filter(|e| e.actor_role.is_agent_role())
        .filter_map(|e| e.actor_id.parse().ok())
        .collect();
    let agent_names = case_store::agents::usernames(pool, &agent_ids).await?;
    let mut conn = pool.acquire().await?;
    audit::record(
        &mut conn,
        &AuditEntry {
            actor: &agent.any_actor(),
            action: "case.dossier",
            case_id: Some(case.id),
            detail: serde_json::json!({
                "format": form.as_str(),
                "transitions": timeline.len(),
                "complaints": complaints.len(),
                "evidence": evidence.len(),
            }),
            reason: None,
        },
    )
    .await?;
    tracing::info!(case_id = %case.id, format = form.as_str(), "dossier exported");
    Ok(DossierFacts {
        case,
        identity,
        proofs_tried,
        assessment,
        orders,
        timeline,
        agent_names,
        evidence,
        complaints,
        deletions,
        generated_at: now,
        generated_by: agent.username.clone(),
    })
}
