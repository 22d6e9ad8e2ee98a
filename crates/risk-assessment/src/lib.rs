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
use case_domain::CaseState;
use case_queues::CaseClaims;
use case_store::Claim;
use case_workflows::{WorkflowError, risk};
use service_runtime::worker::{CaseStep, StepOutcome};
use sqlx::PgPool;

/// The actor id this service writes in case events.
pub const SERVICE: &str = risk::ACTOR;

/// How long a case may wait for the carrier's signals before a person decides.
pub const MAX_WAIT_FOR_SIGNALS: Duration = risk::MAX_WAIT_FOR_SIGNALS;

/// The use cases' names for "the case moved on while it was processed" (the
/// store's own are known to [`CaseClaims`]).
fn moved_on(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<WorkflowError>(),
        Some(WorkflowError::ClaimedByOther | WorkflowError::StaleVersion)
    )
}

/// The risk step of the worker loop.
#[derive(Debug, Clone)]
pub struct RiskStep {
    carrier: Arc<dyn Carrier>,
    claims: CaseClaims,
}

impl RiskStep {
    /// A step asking `carrier` for signals.
    pub fn new(carrier: Arc<dyn Carrier>) -> Self {
        Self {
            carrier,
            claims: CaseClaims::new(vec![CaseState::RiskAssessment]).also_superseded_when(moved_on),
        }
    }
}

impl CaseStep for RiskStep {
    type Source = CaseClaims;

    fn service(&self) -> &'static str {
        SERVICE
    }

    fn source(&self) -> &CaseClaims {
        &self.claims
    }

    async fn process(&self, pool: &PgPool, claim: &Claim) -> anyhow::Result<StepOutcome> {
        // The claim returned the number: no read of the case before asking the carrier.
        let msisdn = claim.msisdn.clone();
        let carrier_signals = match self.carrier.risk_signals(&msisdn).await {
            Ok(s) => s,
            Err(CarrierError::Unavailable(why)) if claim.waited < MAX_WAIT_FOR_SIGNALS => {
                tracing::warn!(case_id = %claim.case_id, error.message = %why, "carrier unavailable; risk assessment retried later");
                return Ok(StepOutcome::RetryAfter(Duration::from_secs(10)));
            }
            Err(CarrierError::Unavailable(why)) => {
                // Fail safe: without signals, a security analyst decides instead of waiting forever.
                tracing::warn!(case_id = %claim.case_id, error.message = %why, "no risk signals for too long; case goes to a security analyst");
                risk::refer_without_signals(pool, claim).await?;
                return Ok(StepOutcome::Transitioned);
            }
            Err(other) => return Err(anyhow::anyhow!("risk signals: {other}")),
        };
        risk::grade_claimed_case(pool, claim, &carrier_signals).await?;
        Ok(StepOutcome::Transitioned)
    }
}
