//! What the subscriber is told about progress: what is needed from them now, and
//! when the case is expected to be done (from the stage SLAs).

use chrono::{DateTime, Duration, Utc};

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
        AwaitingIdentity | AwaitingCustomerIdentity | AwaitingCustomerSecurity | Rejected => None,
        Reactivated | Cancelled | Expired | Closed => None,
    }
}

/// The stages still ahead of a case in `state` on its way to reactivation, not
/// counting the current one.
fn stages_after(state: CaseState) -> &'static [CaseState] {
    use CaseState::*;
    match state {
        IdentityReview => &[RiskAssessment, Provisioning],
        RiskAssessment | SecurityReview | PartiallyReactivated | ProvisioningFailed => {
            &[Provisioning]
        }
        _ => &[],
    }
}

/// When a case in `state` since `entered_at` is expected to be reactivated, from
/// the stage SLAs given by `sla`; `None` while it waits on the subscriber or is finished.
pub fn eta(
    state: CaseState,
    entered_at: DateTime<Utc>,
    now: DateTime<Utc>,
    sla: impl Fn(CaseState) -> Option<Duration>,
) -> Option<DateTime<Utc>> {
    let current = sla(state)?;
    let end_of_stage = (entered_at + current).max(now);
    Some(
        stages_after(state)
            .iter()
            .fold(end_of_stage, |at, s| at + sla(*s).unwrap_or_default()),
    )
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

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::hours(h)
    }

    #[test]
    fn eta_adds_the_stages_ahead() {
        let e = eta(CaseState::SecurityReview, at(0), at(1), default_stage_sla).unwrap();
        assert_eq!(e, at(24) + Duration::minutes(30));
        let e = eta(CaseState::IdentityReview, at(0), at(0), default_stage_sla).unwrap();
        assert_eq!(e, at(4) + Duration::minutes(31));
    }

    #[test]
    fn an_overdue_stage_is_expected_to_end_now() {
        let e = eta(CaseState::Provisioning, at(0), at(10), default_stage_sla).unwrap();
        assert_eq!(e, at(10));
    }

    #[test]
    fn no_eta_while_the_subscriber_has_the_case_or_it_is_done() {
        for s in [
            CaseState::AwaitingIdentity,
            CaseState::AwaitingCustomerSecurity,
            CaseState::Rejected,
            CaseState::Reactivated,
        ] {
            assert_eq!(eta(s, at(0), at(0), default_stage_sla), None, "{s}");
        }
    }

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
