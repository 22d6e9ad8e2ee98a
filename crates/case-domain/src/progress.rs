//! What the subscriber is told about progress: what is needed from them now, and
//! the default stage SLAs (the ETA itself is `crate::eta`).

use chrono::Duration;

use crate::{
    CaseState,
    risk::{Need, RiskTier},
};

/// The default time a department has for a stage; `None` where the clock is
/// stopped (the case waits on the subscriber) or the case is finished.
pub fn default_stage_sla(state: CaseState) -> Option<Duration> {
    use CaseState::*;
    match state {
        IdentityReview => Some(Duration::hours(4)),
        RiskAssessment => Some(Duration::minutes(1)),
        SecurityReview | PartiallyReactivated => Some(Duration::hours(24)),
        Provisioning => Some(Duration::minutes(30)),
        ProvisioningFailed => Some(Duration::hours(4)),
        AwaitingIdentity
        | AwaitingCustomerIdentity
        | AwaitingCustomerSecurity
        | Rejected
        | AwaitingStoreVisit => None,
        Reactivated | Cancelled | Expired | Closed => None,
    }
}

/// What is needed from the subscriber (or still to happen) for a case in `state`,
/// given its risk tier once graded.
pub fn needs(state: CaseState, tier: Option<RiskTier>) -> Vec<Need> {
    use CaseState::*;
    match state {
        AwaitingIdentity => vec![Need::IdentityProof],
        AwaitingCustomerIdentity | AwaitingCustomerSecurity => vec![Need::Information],
        SecurityReview | PartiallyReactivated => {
            tier.map_or_else(|| vec![Need::SecurityReview], |t| t.needs().to_vec())
        }
        Rejected if tier == Some(RiskTier::Extreme) => vec![Need::StoreVisit],
        AwaitingStoreVisit => vec![Need::StoreVisit],
        _ => vec![],
    }
}

/// Like [`needs`], but while security reviews the case (or a partial restoration),
/// the needs stored with the latest assessment win: they are re-scored as the
/// subscriber's explanations and evidence arrive.
pub fn needs_assessed(
    state: CaseState,
    tier: Option<RiskTier>,
    stored: Option<&[Need]>,
) -> Vec<Need> {
    match (state, stored) {
        (CaseState::SecurityReview | CaseState::PartiallyReactivated, Some(stored)) => {
            stored.to_vec()
        }
        _ => needs(state, tier),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_a_department_owns_has_an_sla() {
        for s in CaseState::ALL {
            let owned = s
                .department()
                .is_some_and(|d| d != crate::Department::Subscriber)
                && s != CaseState::AwaitingIdentity;
            assert_eq!(default_stage_sla(s).is_some(), owned, "{s}");
        }
    }

    #[test]
    fn needs_follow_the_state_and_tier() {
        assert_eq!(
            needs(CaseState::AwaitingIdentity, None),
            vec![Need::IdentityProof]
        );
        assert_eq!(
            needs(CaseState::SecurityReview, Some(RiskTier::High)),
            vec![Need::Explanation, Need::Evidence, Need::SecurityReview]
        );
        assert_eq!(
            needs(CaseState::Rejected, Some(RiskTier::Extreme)),
            vec![Need::StoreVisit]
        );
        assert_eq!(
            needs(CaseState::AwaitingStoreVisit, None),
            vec![Need::StoreVisit]
        );
        assert!(needs(CaseState::Reactivated, Some(RiskTier::Low)).is_empty());
    }

    #[test]
    fn stored_needs_win_during_security_review() {
        let stored = [Need::SecurityReview];
        assert_eq!(
            needs_assessed(
                CaseState::SecurityReview,
                Some(RiskTier::Medium),
                Some(&stored)
            ),
            vec![Need::SecurityReview]
        );
        assert_eq!(
            needs_assessed(CaseState::SecurityReview, Some(RiskTier::Medium), None),
            vec![Need::Explanation, Need::SecurityReview]
        );
        // Elsewhere the state decides.
        assert_eq!(
            needs_assessed(
                CaseState::AwaitingCustomerSecurity,
                Some(RiskTier::Medium),
                Some(&stored)
            ),
            vec![Need::Information]
        );
    }
}
