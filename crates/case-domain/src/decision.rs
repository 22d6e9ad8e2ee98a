//! Agents' decisions: customer-safe rejection codes with their remedy, and which of
//! an agent's roles acts on a case.

use serde::{Deserialize, Serialize};

use crate::{CaseEvent, CaseState, Role, TransitionError, decide, may_act};

/// Why an agent refused a reactivation, in words the subscriber is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionCode {
    /// The explanation of the flagged traffic did not convince.
    InsufficientExplanation,
    /// The documents could not be verified.
    EvidenceNotVerifiable,
    /// The identity could not be confirmed.
    IdentityNotConfirmed,
    /// Fraud was confirmed.
    FraudConfirmed,
}

impl RejectionCode {
    /// Every code.
    pub const ALL: [RejectionCode; 4] = [
        Self::InsufficientExplanation,
        Self::EvidenceNotVerifiable,
        Self::IdentityNotConfirmed,
        Self::FraudConfirmed,
    ];

    /// The snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InsufficientExplanation => "insufficient_explanation",
            Self::EvidenceNotVerifiable => "evidence_not_verifiable",
            Self::IdentityNotConfirmed => "identity_not_confirmed",
            Self::FraudConfirmed => "fraud_confirmed",
        }
    }

    /// Parses the code.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// What the subscriber is told (reason and remedy) in `locale` (zh-CN, else English).
    pub fn text(self, locale: &str) -> &'static str {
        match (self, locale == "zh-CN") {
            (Self::InsufficientExplanation, false) => {
                "Your explanation did not show why the flagged contacts are safe. You may appeal once within 15 days with more detail or documents."
            }
            (Self::InsufficientExplanation, true) => {
                "您的说明不足以证明被标记的联系人安全。您可在15天内申诉一次，并补充说明或材料。"
            }
            (Self::EvidenceNotVerifiable, false) => {
                "The documents you sent could not be verified. You may appeal once within 15 days with clearer documents, or visit a store with your ID card."
            }
            (Self::EvidenceNotVerifiable, true) => {
                "您提交的材料无法核实。您可在15天内申诉一次并提交更清晰的材料，或携带身份证前往营业厅办理。"
            }
            (Self::IdentityNotConfirmed, false) => {
                "Your identity could not be confirmed online. Visit a store with your original ID card, or appeal once within 15 days."
            }
            (Self::IdentityNotConfirmed, true) => {
                "无法在线确认您的身份。请携带身份证原件前往营业厅，或在15天内申诉一次。"
            }
            (Self::FraudConfirmed, false) => {
                "The number was used for fraud. Online reactivation is refused; you may appeal once within 15 days or visit a store with your ID card."
            }
            (Self::FraudConfirmed, true) => {
                "该号码经核实涉及诈骗，在线复机已被拒绝。您可在15天内申诉一次，或携带身份证前往营业厅办理。"
            }
        }
    }
}

/// Picks which of an agent's roles acts for `event` on a case in `state`.
///
/// Deny by default: `Forbidden` unless one of the roles may act in this state at
/// all; `Illegal` if they may act here but the event is not possible; otherwise the
/// first role (in the order given) the table allows.
pub fn acting_role(
    roles: &[Role],
    state: CaseState,
    event: CaseEvent,
) -> Result<Role, TransitionError> {
    let mut best_error = None;
    for role in roles.iter().copied().filter(|r| r.is_agent_role()) {
        match decide(state, event, role) {
            Ok(_) => return Ok(role),
            Err(e @ TransitionError::Illegal { .. }) => best_error = Some(e),
            Err(e) => {
                if best_error.is_none() {
                    best_error = Some(e);
                }
            }
        }
    }
    Err(best_error.unwrap_or(TransitionError::Forbidden {
        from: state,
        event,
        role: roles.first().copied().unwrap_or(Role::Admin),
    }))
}

/// Whether any of an agent's roles may act on a case in `state`.
pub fn agent_may_act(roles: &[Role], state: CaseState) -> bool {
    roles
        .iter()
        .any(|r| r.is_agent_role() && may_act(state, *r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_have_both_languages() {
        for c in RejectionCode::ALL {
            assert_eq!(RejectionCode::parse(c.as_str()), Some(c));
            assert!(c.text("en").contains("appeal") || c.text("en").contains("store"));
            assert!(!c.text("zh-CN").is_ascii());
        }
    }

    #[test]
    fn the_acting_role_is_the_one_the_table_allows() {
        use CaseEvent as E;
        use CaseState as S;
        assert_eq!(
            acting_role(&[Role::Cs, Role::Security], S::SecurityReview, E::Approved),
            Ok(Role::Security)
        );
        assert_eq!(
            acting_role(
                &[Role::Supervisor],
                S::ProvisioningFailed,
                E::ProvisioningRetried
            ),
            Ok(Role::Supervisor)
        );
        assert!(matches!(
            acting_role(&[Role::Technical], S::SecurityReview, E::Approved),
            Err(TransitionError::Forbidden { .. })
        ));
        assert!(matches!(
            acting_role(&[Role::Admin], S::SecurityReview, E::Approved),
            Err(TransitionError::Forbidden { .. })
        ));
        assert!(matches!(
            acting_role(&[Role::Security], S::SecurityReview, E::IdentityVerified),
            Err(TransitionError::Illegal { .. })
        ));
        // Agents never act as the system or the customer, whatever they hold.
        assert!(
            acting_role(
                &[Role::System, Role::Customer],
                S::RiskAssessment,
                E::RiskCleared
            )
            .is_err()
        );
        assert!(agent_may_act(&[Role::Technical], S::ProvisioningFailed));
        assert!(!agent_may_act(&[Role::Technical], S::SecurityReview));
    }
}
