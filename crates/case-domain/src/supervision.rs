//! The supervisors' tools over other agents' work, as data and pure functions:
//! who may reassign a case or break another agent's claim, who may escalate a case
//! by hand, what the required reason holds, and to whom a case may be handed.
//!
//! Every one of these acts needs a reason (5 to 500 characters), recorded in the
//! audit log with the agents involved.

use crate::{CaseState, Role, decision::agent_may_act};

/// Who may reassign a case to another agent or break another agent's claim.
pub const REASSIGNERS: &[Role] = &[Role::Supervisor];

/// Who may escalate a case by hand into the supervisors' escalation queue: every
/// agent who works cases (an agent who cannot resolve a case hands it up; a
/// supervisor may flag one for the others).
pub const ESCALATORS: &[Role] = &[Role::Cs, Role::Security, Role::Technical, Role::Supervisor];

/// The shortest and longest reason for a supervisor's act or a manual escalation.
pub const REASON_CHARS: (usize, usize) = (5, 500);

/// The escalation level a manual escalation sets (the same as a first SLA breach).
pub const MANUAL_LEVEL: i16 = 1;

/// Whether a (trimmed) reason is acceptable.
pub fn reason_ok(reason: &str) -> bool {
    let n = reason.chars().count();
    (REASON_CHARS.0..=REASON_CHARS.1).contains(&n) && !reason.chars().any(char::is_control)
}

/// Why a case may not be handed to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignRefusal {
    /// The case is finished: nobody works it any more.
    Finished,
    /// A service worker moves cases in this state; an agent's claim would stall it.
    Automated,
    /// The case waits on the subscriber: there is nothing for an agent to decide.
    WaitsOnSubscriber,
    /// The agent's roles may not act on a case in this state.
    RoleMayNotAct,
    /// The agent already holds the case.
    AlreadyHolder,
}

impl AssignRefusal {
    /// The stable code the API answers with.
    pub fn code(self) -> &'static str {
        match self {
            Self::Finished => "case_finished",
            Self::Automated => "worked_automatically",
            Self::WaitsOnSubscriber => "waits_on_subscriber",
            Self::RoleMayNotAct => "assignee_may_not_act",
            Self::AlreadyHolder => "already_assigned",
        }
    }
}

/// Whether a case in `state`, now held by `holder` (an agent id, if an agent's
/// claim is live), may be handed to the agent `to` holding `to_roles`.
pub fn may_assign(
    state: CaseState,
    holder: Option<&str>,
    to: &str,
    to_roles: &[Role],
) -> Result<(), AssignRefusal> {
    if state.is_terminal() {
        return Err(AssignRefusal::Finished);
    }
    if state.is_automated() {
        return Err(AssignRefusal::Automated);
    }
    if state.waits_on_customer() {
        return Err(AssignRefusal::WaitsOnSubscriber);
    }
    if !agent_may_act(to_roles, state) {
        return Err(AssignRefusal::RoleMayNotAct);
    }
    if holder == Some(to) {
        return Err(AssignRefusal::AlreadyHolder);
    }
    Ok(())
}

/// Whether a case in `state` may be escalated by hand (open, not already escalated).
pub fn may_escalate(state: CaseState, level: i16) -> Result<(), &'static str> {
    if state.is_terminal() {
        Err("case_finished")
    } else if level > 0 {
        Err("already_escalated")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CaseState as S;

    #[test]
    fn reasons_are_five_to_five_hundred_printable_characters() {
        assert!(!reason_ok(""));
        assert!(!reason_ok("away"));
        assert!(reason_ok("agent away"));
        assert!(reason_ok("休假中请接手"));
        assert!(reason_ok(&"x".repeat(500)));
        assert!(!reason_ok(&"x".repeat(501)));
        assert!(!reason_ok("line\u{0}break"));
    }

    #[test]
    fn a_case_goes_only_to_an_agent_who_may_act_on_it() {
        let security = [Role::Security];
        let cs = [Role::Cs];
        type Row<'a> = (S, Option<&'a str>, &'a [Role], Result<(), AssignRefusal>);
        let table: &[Row] = &[
            (S::SecurityReview, Some("a"), &security, Ok(())),
            (S::SecurityReview, None, &security, Ok(())),
            (
                S::SecurityReview,
                Some("a"),
                &cs,
                Err(AssignRefusal::RoleMayNotAct),
            ),
            (
                S::SecurityReview,
                Some("b"),
                &security,
                Err(AssignRefusal::AlreadyHolder),
            ),
            (S::IdentityReview, Some("a"), &cs, Ok(())),
            (S::IdentityReview, Some("a"), &[Role::Supervisor], Ok(())),
            (
                S::IdentityReview,
                Some("a"),
                &[Role::Admin],
                Err(AssignRefusal::RoleMayNotAct),
            ),
            (S::ProvisioningFailed, None, &[Role::Technical], Ok(())),
            (
                S::RiskAssessment,
                None,
                &security,
                Err(AssignRefusal::Automated),
            ),
            (
                S::Provisioning,
                None,
                &[Role::Technical],
                Err(AssignRefusal::Automated),
            ),
            (
                S::AwaitingCustomerSecurity,
                None,
                &security,
                Err(AssignRefusal::WaitsOnSubscriber),
            ),
            (
                S::Reactivated,
                None,
                &security,
                Err(AssignRefusal::Finished),
            ),
            (S::Cancelled, None, &cs, Err(AssignRefusal::Finished)),
        ];
        for (state, holder, roles, want) in table {
            assert_eq!(
                may_assign(*state, *holder, "b", roles),
                *want,
                "{state} {holder:?} {roles:?}"
            );
        }
    }

    #[test]
    fn only_open_cases_not_yet_escalated_are_escalated_by_hand() {
        assert_eq!(may_escalate(S::SecurityReview, 0), Ok(()));
        assert_eq!(may_escalate(S::AwaitingCustomerSecurity, 0), Ok(()));
        assert_eq!(may_escalate(S::SecurityReview, 1), Err("already_escalated"));
        assert_eq!(may_escalate(S::Closed, 0), Err("case_finished"));
        assert!(REASSIGNERS.contains(&Role::Supervisor) && REASSIGNERS.len() == 1);
        assert!(!ESCALATORS.contains(&Role::Admin));
        assert_eq!(MANUAL_LEVEL, 1);
    }
}
