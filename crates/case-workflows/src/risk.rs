//! The security stage's automatic work on a case: grading the carrier's signals of a
//! claimed case and moving it (the risk worker), and re-scoring a case under review
//! when the carrier sends new signals (the webhooks worker). The rules themselves
//! are `case_domain::risk`'s; the carrier call that fetches the signals stays in the
//! risk worker.

use std::time::Duration;

use carrier_adapter::RiskSignals as CarrierSignals;
use case_domain::{
    Actor, CaseEvent, CaseState, Msisdn, Restoration,
    material::{Material, remaining_needs},
    risk::{self, Need, ReasonCode, RecordedSignals, RiskSignals, RiskTier},
};
use case_store::{Claim, TransitionRequest, risk as store};
use sqlx::{PgConnection, PgPool};

use crate::WorkflowError;

/// The actor id written in the events of a case the risk worker moved.
pub const ACTOR: &str = "risk-assessment";

/// How long a case may wait for the carrier's signals before a person decides.
pub const MAX_WAIT_FOR_SIGNALS: Duration = Duration::from_secs(15 * 60);

/// The states whose case a `subscriber.signals` webhook re-scores.
pub const RESCORED_STATES: [CaseState; 3] = [
    CaseState::SecurityReview,
    CaseState::AwaitingCustomerSecurity,
    CaseState::PartiallyReactivated,
];

/// The customer-safe summary of an assessment written as the event's reason.
pub fn reason_text(tier: RiskTier, reasons: &[ReasonCode]) -> String {
    let codes: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
    if codes.is_empty() {
        format!("risk tier {}", tier.as_str())
    } else {
        format!("risk tier {}: {}", tier.as_str(), codes.join(", "))
    }
}

/// Sends a claimed case to a security analyst because the carrier's signals stayed
/// unavailable for too long (fail safe: a person decides instead of waiting forever).
pub async fn refer_without_signals(pool: &PgPool, claim: &Claim) -> Result<(), WorkflowError> {
    let system = Actor::system(ACTOR);
    case_store::transition(
        pool,
        TransitionRequest {
            case_id: claim.case_id,
            expected_version: claim.version,
            event: CaseEvent::RiskFlagged,
            actor: &system,
            reason: Some(
                "the carrier's risk signals are unavailable; a security analyst reviews the case",
            ),
            fence: Some(&claim.fence),
            outbox: vec![],
        },
    )
    .await?;
    Ok(())
}

/// Grades the carrier's signals of a claimed case under the current version of the
/// risk rules, stores the assessment (with that version) and moves the case in one
/// transaction, fenced by the claim: the lowest tier straight to
/// provisioning (with its order), higher tiers to a security analyst, the extreme
/// tier to `awaiting_store_visit` (the store-visit remedy) — or, once a store agent
/// checked the original ID card in person, to a security analyst. Returns the tier.
pub async fn grade_claimed_case(
    pool: &PgPool,
    claim: &Claim,
    carrier_signals: &CarrierSignals,
) -> Result<RiskTier, WorkflowError> {
    let signals = RiskSignals {
        fraud_linked_contacts: carrier_signals.fraud_linked_contacts,
        sms_peak_per_hour: carrier_signals.sms_peak_per_hour,
        intl_calls_24h: carrier_signals.intl_calls_24h,
        suspension_reason: carrier_signals.suspension_reason.clone(),
    };
    // Read in the grading transaction (one row through a unique index, no extra
    // round trip of its own): the version graded under is the one recorded.
    let mut tx = pool.begin().await?;
    let rules = case_store::risk_rules::current(&mut *tx).await?;
    let assessment = risk::assess_with(&signals, &rules.thresholds);
    let codes: Vec<String> = assessment
        .reasons
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    // A store agent checked the original ID card in person (`in_person_id`): the
    // store-visit remedy is done, so the extreme tier goes to a security analyst
    // instead of being refused online again.
    // Asked only for the extreme tier: a lower tier's path does not depend on it, and
    // a clean journey costs no read of the store visits.
    let after_visit = assessment.tier == RiskTier::Extreme
        && case_store::store_visits::latest(&mut *tx, claim.case_id)
            .await?
            .is_some();
    let needs: Vec<String> = if after_visit {
        vec![Need::SecurityReview.as_str().to_owned()]
    } else {
        assessment
            .needs()
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect()
    };
    // The numbers themselves: the subscriber is asked to explain each one.
    let recorded = RecordedSignals::new(&signals, carrier_signals.flagged_contacts.clone(), None);
    let reason = reason_text(assessment.tier, &assessment.reasons);
    let system = Actor::system(ACTOR);
    let request = |event| TransitionRequest {
        case_id: claim.case_id,
        expected_version: claim.version,
        event,
        actor: &system,
        reason: Some(reason.as_str()),
        fence: Some(&claim.fence),
        outbox: vec![],
    };

    store::save_assessment(
        &mut *tx,
        claim.case_id,
        assessment.tier,
        &codes,
        &needs,
        &recorded,
        rules.version,
    )
    .await?;
    // The verification ladder's tier only rises with a later grading (a low one
    // changes nothing, so it costs no statement).
    if assessment.tier > RiskTier::Low {
        case_store::identity::grade_proof_tier(&mut *tx, claim.case_id, assessment.tier).await?;
    }
    match assessment.tier {
        RiskTier::Low => {
            store::transition_into_provisioning(
                &mut tx,
                request(CaseEvent::RiskCleared),
                Restoration::Full,
            )
            .await?;
        }
        RiskTier::Medium | RiskTier::High => {
            case_store::transition_in(&mut tx, request(CaseEvent::RiskFlagged)).await?;
        }
        RiskTier::Extreme if after_visit => {
            case_store::transition_in(&mut tx, request(CaseEvent::RiskFlagged)).await?;
        }
        RiskTier::Extreme => {
            case_store::transition_in(&mut tx, request(CaseEvent::RiskRefused)).await?;
        }
    }
    tx.commit().await?;
    tracing::info!(case_id = %claim.case_id, tier = assessment.tier.as_str(), reasons = ?codes, rule_version = rules.version, "risk assessed");
    Ok(assessment.tier)
}

/// New signals the carrier sent for a number (a `subscriber.signals` webhook).
#[derive(Debug, Clone)]
pub struct NewSignals {
    /// The number.
    pub msisdn: Msisdn,
    /// The signals; a missing suspension reason keeps the latest assessment's.
    pub signals: RiskSignals,
    /// The flagged contacts the subscriber is asked to explain.
    pub flagged_contacts: Vec<String>,
}

/// Re-scores the number's open case from new signals when it is under security
/// review (or waits for the subscriber's answer to security, or is partly restored),
/// in the caller's transaction, under the current version of the risk rules (recorded
/// with it): a new assessment whose needs are the tier's, minus
/// what the subscriber's material already satisfies — the rule the material
/// endpoints use. Returns why nothing was done, if so.
pub async fn rescore(
    conn: &mut PgConnection,
    keys: &data_protection::Keys,
    new: NewSignals,
) -> Result<Option<String>, WorkflowError> {
    let NewSignals {
        msisdn,
        mut signals,
        flagged_contacts,
    } = new;
    let Some(case) = case_store::webhooks::lock_open_case_for_msisdn(conn, msisdn.e164()).await?
    else {
        return Ok(Some("the number has no open case".into()));
    };
    if !RESCORED_STATES.contains(&case.state) {
        return Ok(Some(format!(
            "the case is {}, not under security review",
            case.state
        )));
    }
    let latest = store::latest_assessment(&mut *conn, case.id).await?;
    if signals.suspension_reason.is_none() {
        signals.suspension_reason = latest
            .as_ref()
            .and_then(|a| a.signals.suspension_reason.clone());
    }
    let rules = case_store::risk_rules::current(&mut *conn).await?;
    let assessment = risk::assess_with(&signals, &rules.thresholds);
    let explained = crate::material::explained_contacts(
        &crate::material::read_explanations(&mut *conn, keys, case.id).await?,
    );
    let counts = case_store::material::count_material(&mut *conn, case.id).await?;
    let needs = remaining_needs(
        assessment.tier,
        &flagged_contacts,
        &Material {
            explanations: usize::try_from(counts.explanations).unwrap_or(usize::MAX),
            explained_contacts: &explained,
            evidence: usize::try_from(counts.evidence).unwrap_or(usize::MAX),
        },
    );
    let codes: Vec<String> = assessment
        .reasons
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    let needs: Vec<String> = needs.iter().map(|n| n.as_str().to_owned()).collect();
    let recorded = RecordedSignals::new(&signals, flagged_contacts, Some("carrier_webhook"));
    case_store::webhooks::save_rescored_assessment(
        &mut *conn,
        case.id,
        assessment.tier,
        &codes,
        &needs,
        &recorded,
        rules.version,
    )
    .await?;
    tracing::info!(case_id = %case.id, tier = assessment.tier.as_str(), reasons = ?codes, rule_version = rules.version, "case re-scored from the carrier's signals");
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_names_the_tier_and_its_codes() {
        assert_eq!(reason_text(RiskTier::Low, &[]), "risk tier low");
        let text = reason_text(RiskTier::High, &[ReasonCode::FraudLinkedContacts]);
        assert!(text.starts_with("risk tier high: "), "{text}");
    }
}
