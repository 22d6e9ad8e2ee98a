//! The risk-assessment service: the security department's automatic stage.
//!
//! Owns: claiming cases in `risk_assessment`, asking the carrier for the number's
//! traffic signals, grading them with the domain's explainable rules, storing the
//! assessment, and moving the case: the lowest tier straight to provisioning (with
//! its service order, in the same transaction), higher tiers to a security analyst
//! (`security_review`), the extreme tier to `rejected` with the store-visit remedy.
//!
//! Must not: invent rules (they live in `case_domain::risk`), log numbers, or move a
//! case without the claim's fencing token.

use std::{sync::Arc, time::Duration};

use carrier_adapter::{Carrier, CarrierError};
use case_domain::{
    Actor, CaseEvent, CaseState, Msisdn,
    risk::{self, RiskSignals, RiskTier},
};
use case_store::{Claim, TransitionRequest, risk as store};
use service_runtime::worker::{CaseStep, StepOutcome};
use sqlx::PgPool;

/// The actor id this service writes in case events.
pub const SERVICE: &str = "risk-assessment";

/// How long a case may wait for the carrier's signals before a person decides.
pub const MAX_WAIT_FOR_SIGNALS: Duration = Duration::from_secs(15 * 60);

/// The risk step of the worker loop.
#[derive(Debug, Clone)]
pub struct RiskStep {
    carrier: Arc<dyn Carrier>,
}

impl RiskStep {
    /// A step asking `carrier` for signals.
    pub fn new(carrier: Arc<dyn Carrier>) -> Self {
        Self { carrier }
    }
}

/// The customer-safe summary of an assessment written as the event's reason.
fn reason_text(tier: RiskTier, reasons: &[risk::ReasonCode]) -> String {
    let codes: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
    if codes.is_empty() {
        format!("risk tier {}", tier.as_str())
    } else {
        format!("risk tier {}: {}", tier.as_str(), codes.join(", "))
    }
}

impl CaseStep for RiskStep {
    fn service(&self) -> &'static str {
        SERVICE
    }

    fn states(&self) -> Vec<CaseState> {
        vec![CaseState::RiskAssessment]
    }

    async fn process(&self, pool: &PgPool, claim: &Claim) -> anyhow::Result<StepOutcome> {
        let case = case_store::load_case(pool, claim.case_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("claimed case vanished"))?;
        let msisdn = Msisdn::parse(&case.msisdn)?;
        let carrier_signals = match self.carrier.risk_signals(&msisdn).await {
            Ok(s) => s,
            Err(CarrierError::Unavailable(why)) if claim.waited < MAX_WAIT_FOR_SIGNALS => {
                tracing::warn!(case_id = %claim.case_id, error.message = %why, "carrier unavailable; risk assessment retried later");
                return Ok(StepOutcome::RetryAfter(Duration::from_secs(10)));
            }
            Err(CarrierError::Unavailable(why)) => {
                // Fail safe: without signals, a security analyst decides instead of waiting forever.
                tracing::warn!(case_id = %claim.case_id, error.message = %why, "no risk signals for too long; case goes to a security analyst");
                let system = Actor::system(SERVICE);
                case_store::transition(
                    pool,
                    TransitionRequest {
                        case_id: claim.case_id,
                        expected_version: claim.version,
                        event: CaseEvent::RiskFlagged,
                        actor: &system,
                        reason: Some("the carrier's risk signals are unavailable; a security analyst reviews the case"),
                        fence: Some(&claim.fence),
                        outbox: vec![],
                    },
                )
                .await?;
                return Ok(StepOutcome::Transitioned);
            }
            Err(other) => return Err(anyhow::anyhow!("risk signals: {other}")),
        };
        let signals = RiskSignals {
            fraud_linked_contacts: carrier_signals.fraud_linked_contacts,
            sms_peak_per_hour: carrier_signals.sms_peak_per_hour,
            intl_calls_24h: carrier_signals.intl_calls_24h,
            suspension_reason: carrier_signals.suspension_reason.clone(),
        };
        let assessment = risk::assess(&signals);
        let codes: Vec<String> = assessment
            .reasons
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect();
        let needs: Vec<String> = assessment
            .needs()
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect();
        let recorded = serde_json::json!({
            "fraud_linked_contacts": signals.fraud_linked_contacts,
            "sms_peak_per_hour": signals.sms_peak_per_hour,
            "intl_calls_24h": signals.intl_calls_24h,
            "suspension_reason": signals.suspension_reason,
            // The numbers themselves: the subscriber is asked to explain each one.
            "flagged_contacts": carrier_signals.flagged_contacts,
        });
        let reason = reason_text(assessment.tier, &assessment.reasons);
        let system = Actor::system(SERVICE);
        let request = |event| TransitionRequest {
            case_id: claim.case_id,
            expected_version: claim.version,
            event,
            actor: &system,
            reason: Some(reason.as_str()),
            fence: Some(&claim.fence),
            outbox: vec![],
        };

        let mut tx = pool.begin().await?;
        store::save_assessment(
            &mut *tx,
            claim.case_id,
            assessment.tier,
            &codes,
            &needs,
            &recorded,
        )
        .await?;
        match assessment.tier {
            RiskTier::Low => {
                store::transition_into_provisioning(
                    &mut tx,
                    request(CaseEvent::RiskCleared),
                    "full",
                )
                .await?;
            }
            RiskTier::Medium | RiskTier::High => {
                case_store::transition_in(&mut tx, request(CaseEvent::RiskFlagged)).await?;
            }
            RiskTier::Extreme => {
                case_store::transition_in(&mut tx, request(CaseEvent::RiskRefused)).await?;
            }
        }
        tx.commit().await?;
        tracing::info!(case_id = %claim.case_id, tier = assessment.tier.as_str(), reasons = ?codes, "risk assessed");
        Ok(StepOutcome::Transitioned)
    }
}
