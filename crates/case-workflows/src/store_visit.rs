//! The store-visit remedy (issue 14 item 2): a case whose tier asks for a store visit
//! waits in `awaiting_store_visit`; a store agent (or a supervisor) looks the number
//! up, checks the original ID card in person, compares the face and records it. The
//! check is the proof `in_person_id` (the strongest: it satisfies every tier), the
//! case moves on by `store_visit_verified` to risk assessment, whose policy then sends
//! it to security review or provisioning (`case_domain::ladder`,
//! [`crate::risk::grade_claimed_case`]).
//!
//! Stored: the codes of the documents seen and the ID number typed from the card,
//! masked (it is compared with the case's encrypted one, never kept in clear). Every
//! lookup and every check is audited.

use case_domain::{
    CaseEvent, CaseState, Msisdn, ResidentId, Role, decide, ladder::ProofKind, sla::SlaConfig,
};
use case_store::{
    TransitionRequest,
    audit::{self, AuditEntry},
    store_visits::{self, NewStoreVisit, NumberCase},
};
use data_protection::Keys;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{WorkflowError, agent::Agent, agent::CaseView};

pub use case_domain::agent_policy::STORE_AGENTS;

/// The original documents a store agent may say they saw.
pub const DOCUMENTS: [&str; 5] = [
    "resident_id_card",
    "temporary_id_card",
    "household_register",
    "police_release_letter",
    "other_official_document",
];

/// The documents that are an identity card (one of them must be seen).
pub const ID_CARDS: [&str; 2] = ["resident_id_card", "temporary_id_card"];

/// What a store agent records.
#[derive(Debug, Clone)]
pub struct StoreVisitRequest {
    /// The case version the agent saw.
    pub expected_version: i32,
    /// Codes of the original documents seen ([`DOCUMENTS`]), one ID card among them.
    pub documents_seen: Vec<String>,
    /// The ID number as printed on the card.
    pub id_number: String,
    /// The agent compared the face with the card's photo (must be true).
    pub face_compared: bool,
}

/// The documents as given, checked: known codes, each once, an ID card among them.
pub fn check_documents(documents: &[String]) -> Result<Vec<String>, WorkflowError> {
    let mut seen: Vec<String> = Vec::new();
    for d in documents {
        let d = d.trim();
        if !DOCUMENTS.contains(&d) {
            return Err(WorkflowError::invalid(
                "documents_seen",
                format!("each document is one of {}", DOCUMENTS.join(", ")),
            ));
        }
        if !seen.iter().any(|s| s == d) {
            seen.push(d.to_owned());
        }
    }
    if !seen.iter().any(|d| ID_CARDS.contains(&d.as_str())) {
        return Err(WorkflowError::invalid(
            "documents_seen",
            "the original resident_id_card or temporary_id_card must be among the documents seen",
        ));
    }
    Ok(seen)
}

fn acting_role(agent: &Agent) -> Result<Role, WorkflowError> {
    [Role::Store, Role::Supervisor]
        .into_iter()
        .find(|r| {
            agent.roles.contains(r)
                && decide(
                    CaseState::AwaitingStoreVisit,
                    CaseEvent::StoreVisitVerified,
                    *r,
                )
                .is_ok()
        })
        .ok_or_else(|| {
            WorkflowError::Forbidden(
                "Only a store agent or a supervisor records a store visit.".into(),
            )
        })
}

/// The number's cases waiting for a store visit (audited: `store_visit.lookup`, the
/// number masked).
pub async fn lookup(
    pool: &PgPool,
    agent: &Agent,
    msisdn: &str,
) -> Result<Vec<NumberCase>, WorkflowError> {
    agent.require_any(STORE_AGENTS)?;
    let msisdn = Msisdn::parse(msisdn.trim()).map_err(|_| {
        WorkflowError::invalid(
            "msisdn",
            "a mainland mobile number in E.164, +86 and 11 digits",
        )
    })?;
    let cases = store_visits::awaiting_visit_for_number(pool, msisdn.e164()).await?;
    let mut conn = pool.acquire().await?;
    audit::record(
        &mut conn,
        &AuditEntry {
            actor: &agent.any_actor(),
            action: "store_visit.lookup",
            case_id: None,
            detail: serde_json::json!({
                "msisdn": msisdn.masked(),
                "found": cases.len(),
            }),
            reason: None,
        },
    )
    .await?;
    Ok(cases)
}

/// Records the in-person check on a case awaiting a store visit and moves it on
/// (`store_visit_verified` → `risk_assessment`), in one transaction with the stored
/// check and its audit row. An ID number that differs from the case's is refused
/// (`id_number_mismatch`, audited) and changes nothing else.
pub async fn record(
    pool: &PgPool,
    sla: &SlaConfig,
    keys: &Keys,
    agent: &Agent,
    case_id: Uuid,
    request: StoreVisitRequest,
) -> Result<CaseView, WorkflowError> {
    let role = acting_role(agent)?;
    let documents = check_documents(&request.documents_seen)?;
    if !request.face_compared {
        return Err(WorkflowError::invalid(
            "face_compared",
            "compare the face with the ID card's photo before recording the visit",
        ));
    }
    let id_number = ResidentId::parse(request.id_number.trim()).map_err(|_| {
        WorkflowError::invalid(
            "id_number",
            "an 18-character resident ID number with a valid check digit",
        )
    })?;
    let case = case_store::load_case(pool, case_id)
        .await?
        .ok_or(WorkflowError::NotFound)?;
    if case.state != CaseState::AwaitingStoreVisit {
        return Err(WorkflowError::Refused {
            code: "not_awaiting_store_visit",
            detail: format!(
                "The case is {}; it does not wait for a store visit.",
                case.state
            ),
        });
    }
    if case.version != request.expected_version {
        return Err(WorkflowError::StaleVersion);
    }
    let actor = agent.actor(role);
    let identity = case_store::identity::load_identity(pool, case.id)
        .await?
        .ok_or(WorkflowError::NotFound)?;
    let mut tx = pool.begin().await?;
    // Every decryption of personal data is audited, before it happens.
    audit::record(
        &mut tx,
        &AuditEntry {
            actor: &actor,
            action: "identity.decrypt",
            case_id: Some(case.id),
            detail: serde_json::json!({"fields": ["id_number"], "purpose": "store_visit"}),
            reason: Some("ID number on the original card compared with the case's"),
        },
    )
    .await?;
    // Under the case's data key (or the master secret for a case opened before data
    // keys); a case past retention has nothing to compare with.
    let on_case = crate::retention::open_identity(pool, keys, &identity)
        .await?
        .id_number;
    let matches =
        ResidentId::parse(&on_case).is_ok_and(|on_case| on_case.expose() == id_number.expose());
    if !matches {
        audit::record(
            &mut tx,
            &AuditEntry {
                actor: &actor,
                action: "store_visit.id_mismatch",
                case_id: Some(case.id),
                detail: serde_json::json!({"id_number": id_number.masked()}),
                reason: Some("the ID card seen does not match the case"),
            },
        )
        .await?;
        tx.commit().await?;
        return Err(WorkflowError::Refused {
            code: "id_number_mismatch",
            detail: "The ID card seen is not the one this case was opened with; the visit was not recorded.".into(),
        });
    }
    let masked = id_number.masked();
    let visit = store_visits::insert(
        &mut *tx,
        &NewStoreVisit {
            case_id: case.id,
            agent_id: agent.id,
            acted_as: role,
            documents_seen: &documents,
            id_number_masked: &masked,
        },
    )
    .await?;
    // The strongest proof on the verification ladder.
    case_store::identity::add_proof(&mut *tx, case.id, ProofKind::InPersonId.as_str()).await?;
    audit::record(
        &mut tx,
        &AuditEntry {
            actor: &actor,
            action: "store_visit.record",
            case_id: Some(case.id),
            detail: serde_json::json!({
                "visit_id": visit,
                "proof": ProofKind::InPersonId.as_str(),
                "documents_seen": documents,
                "face_compared": true,
                "id_number": masked,
            }),
            reason: None,
        },
    )
    .await?;
    case_store::transition_in(
        &mut tx,
        TransitionRequest {
            case_id: case.id,
            expected_version: request.expected_version,
            event: CaseEvent::StoreVisitVerified,
            actor: &actor,
            reason: Some(
                "identity checked in person at a store: original ID card seen, face compared",
            ),
            fence: None,
            outbox: vec![],
        },
    )
    .await?;
    tx.commit().await?;
    crate::agent::view_case(pool, sla, agent, case.id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn documents_must_be_known_and_include_an_id_card() {
        assert_eq!(
            check_documents(&docs(&[
                "resident_id_card",
                "resident_id_card",
                "police_release_letter"
            ]))
            .unwrap(),
            docs(&["resident_id_card", "police_release_letter"])
        );
        assert!(check_documents(&docs(&["temporary_id_card"])).is_ok());
        for bad in [
            docs(&[]),
            docs(&["household_register"]),
            docs(&["passport_photo", "resident_id_card"]),
        ] {
            assert!(
                matches!(check_documents(&bad), Err(WorkflowError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
