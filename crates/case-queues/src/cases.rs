//! Cases in some states, claimed from the case table.

use std::time::Duration;

use case_domain::CaseState;
use case_store::{Claim, StoreError};
use chrono::{DateTime, Utc};
use service_runtime::worker::{Batch, ClaimInfo, ClaimSource};
use sqlx::PgPool;

/// Cases in some states, claimed from the case table with a lease and a fencing token.
#[derive(Debug, Clone)]
pub struct CaseClaims {
    states: Vec<CaseState>,
    also_superseded: fn(&anyhow::Error) -> bool,
}

impl CaseClaims {
    /// Claims cases in `states`. A step's error means "the case moved on" when the
    /// store says its lease was lost or its version is stale.
    pub fn new(states: Vec<CaseState>) -> Self {
        Self {
            states,
            also_superseded: |_| false,
        }
    }

    /// Also treats errors for which `superseded` holds as "the case moved on" (e.g.
    /// the use-case layer's own names for a lost lease or a stale version).
    pub fn also_superseded_when(mut self, superseded: fn(&anyhow::Error) -> bool) -> Self {
        self.also_superseded = superseded;
        self
    }

    /// The states whose cases it claims.
    pub fn states(&self) -> &[CaseState] {
        &self.states
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

    async fn claim_batch(
        &self,
        pool: &PgPool,
        worker: &str,
        lease: Duration,
        max: usize,
    ) -> anyhow::Result<Vec<Claim>> {
        Ok(case_store::claim_batch(pool, &self.states, worker, lease, max).await?)
    }

    async fn claim_batch_due(
        &self,
        pool: &PgPool,
        worker: &str,
        lease: Duration,
        max: usize,
    ) -> anyhow::Result<Batch<Claim>> {
        let (items, next_due) =
            case_store::claim_batch_due(pool, &self.states, worker, lease, max).await?;
        Ok(Batch::read(items, max, next_due))
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
            error.downcast_ref::<StoreError>(),
            Some(StoreError::LeaseLost { .. } | StoreError::StaleVersion { .. })
        ) || (self.also_superseded)(error)
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[derive(Debug)]
    struct Moved;

    impl std::fmt::Display for Moved {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("moved on")
        }
    }

    impl std::error::Error for Moved {}

    #[test]
    fn a_lost_lease_or_a_stale_version_is_superseded_other_errors_are_not() {
        let claims = CaseClaims::new(vec![CaseState::INITIAL]);
        let lost = anyhow::Error::from(StoreError::LeaseLost {
            case_id: Uuid::nil(),
            attempt: 1,
        });
        assert!(claims.superseded(&lost));
        assert!(!claims.superseded(&anyhow::anyhow!("carrier said no")));
        assert!(!claims.superseded(&anyhow::Error::from(Moved)));
    }

    #[test]
    fn the_caller_may_name_more_superseded_errors() {
        let claims = CaseClaims::new(vec![CaseState::INITIAL])
            .also_superseded_when(|e| e.downcast_ref::<Moved>().is_some());
        assert!(claims.superseded(&anyhow::Error::from(Moved)));
        assert!(!claims.superseded(&anyhow::anyhow!("carrier said no")));
    }

    #[test]
    fn its_channels_are_the_work_channels_of_its_states() {
        let claims = CaseClaims::new(vec![CaseState::INITIAL]);
        assert_eq!(claims.channels(), vec![CaseState::INITIAL.work_channel()]);
        assert_eq!(claims.states(), &[CaseState::INITIAL]);
    }

    #[sqlx::test(migrator = "case_store::MIGRATOR")]
    async fn claims_a_case_describes_it_and_releases_it_for_later(pool: PgPool) {
        let case_id = case_store::testing::open_case(&pool, "+8613800138009").await;
        let claims = CaseClaims::new(vec![CaseState::INITIAL]);
        let lease = Duration::from_secs(30);
        let claim = claims
            .claim(&pool, "test-worker", lease)
            .await
            .unwrap()
            .expect("the open case is claimable");
        let info = claims.info(&claim);
        assert_eq!(info.id, case_id);
        assert_eq!(info.label, CaseState::INITIAL.as_str());
        assert_eq!(info.attempt, 1);
        assert!(info.handoff_wait.is_some());
        claims.renew(&pool, &claim, lease).await.unwrap();
        assert!(
            claims
                .claim(&pool, "other-worker", lease)
                .await
                .unwrap()
                .is_none(),
            "a leased case is not claimed twice"
        );
        claims
            .release(&pool, &claim, Duration::from_secs(60))
            .await
            .unwrap();
        let due = claims.next_due(&pool).await.unwrap().expect("a due time");
        assert!(due > Utc::now() + chrono::Duration::seconds(30));
    }
}
