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
use case_store::{Claim, StoreError};
use case_workflows::{WorkflowError, risk};
use chrono::{DateTime, Utc};
use service_runtime::worker::{CaseStep, ClaimInfo, ClaimSource, StepOutcome};
use sqlx::PgPool;

/// The actor id this service writes in case events.
pub const SERVICE: &str = risk::ACTOR;

/// How long a case may wait for the carrier's signals before a person decides.
pub const MAX_WAIT_FOR_SIGNALS: Duration = risk::MAX_WAIT_FOR_SIGNALS;

/// Cases in some states, claimed from the case table with a lease and a fencing token.
#[derive(Debug, Clone)]
pub struct CaseClaims {
    states: Vec<CaseState>,
}

impl CaseClaims {
    /// Claims cases in `states`.
    pub fn new(states: Vec<CaseState>) -> Self {
        Self { states }
    }
}

impl ClaimSource for CaseClaims {
    type Claim = Claim;

    fn channels(&self) -> Vec<String> {
        self.states.iter().map(|s| s.work_channel()).collect()
    }

    async fn claim(
        &self,
        pool: &PgPool,
        worker: &str,
        lease: Duration,
    ) -> anyhow::Result<Option<Claim>> {
        Ok(case_store::claim_next(pool, &self.states, worker, lease).await?)
    }

    async fn renew(&self, pool: &PgPool, claim: &Claim, lease: Duration) -> anyhow::Result<()> {
        case_store::renew_lease(pool, claim.case_id, &claim.fence, lease).await?;
        Ok(())
    }

    async fn release(&self, pool: &PgPool, claim: &Claim, after: Duration) -> anyhow::Result<()> {
        Ok(case_store::release(pool, claim.case_id, &claim.fence, after).await?)
    }

    async fn next_due(&self, pool: &PgPool) -> anyhow::Result<Option<DateTime<Utc>>> {
        Ok(case_store::next_case_due(pool, &self.states).await?)
    }

    fn info(&self, claim: &Claim) -> ClaimInfo {
        ClaimInfo {
            id: claim.case_id,
            label: claim.state.as_str().to_owned(),
            attempt: claim.fence.attempt,
            handoff_wait: claim.first_in_state.then_some(claim.waited),
        }
    }

    fn superseded(&self, error: &anyhow::Error) -> bool {
        matches!(
            error.downcast_ref::<WorkflowError>(),
            Some(WorkflowError::ClaimedByOther | WorkflowError::StaleVersion)
        ) || matches!(
            error.downcast_ref::<StoreError>(),
            Some(StoreError::LeaseLost { .. } | StoreError::StaleVersion { .. })
        )
    }
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
            claims: CaseClaims::new(vec![CaseState::RiskAssessment]),
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
        let msisdn = risk::claimed_number(pool, claim).await?;
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
