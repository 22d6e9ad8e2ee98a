//! The identity-verification policy: which proofs verify a requester, the limits on
//! attempts, and what happens when they are used up.
//!
//! Identity is verified when the name and ID number match the number's subscriber
//! **and** either a one-time code (sent to a contact on file with the carrier) or the
//! service password is accepted. Naming enough recent call counterparties together
//! with a matching name and ID does not verify alone: it sends the case to a CS agent.

use chrono::{DateTime, Duration, Utc};

use crate::{CaseEvent, CaseState};

/// A one-time code lives this long.
pub fn otp_lifetime() -> Duration {
    Duration::minutes(10)
}
/// Checks allowed against one code.
pub const MAX_CHECKS_PER_CODE: i32 = 5;
/// Codes that may be sent for one case.
pub const MAX_OTP_SENDS: i32 = 5;
/// Codes that may be sent to one number's contacts in 24 hours, across all its cases
/// (so cancelling and reopening does not pump messages).
pub const MAX_OTP_PER_NUMBER_PER_DAY: i64 = 10;
/// Failed proofs (of any kind, across all the number's cases) judged per phone number
/// in a rolling [`budget_window`]. A slot is reserved before the carrier is asked, so
/// concurrent guesses cannot overshoot; once they are spent every proof on the number
/// is refused unjudged (the right one included) and the case goes to a CS agent.
pub const MAX_FAILED_ATTEMPTS: i32 = 5;
/// Messages that anonymous actions (opening, cancelling, anything before identity is
/// proven) may cause per number in a [`budget_window`], beyond the codes themselves.
/// Past it the action still works; the message is dropped (and counted).
pub const MAX_ANONYMOUS_MESSAGES_PER_NUMBER: i64 = 3;
/// Recent call counterparties that must match for the call-record path.
pub const CALL_RECORDS_REQUIRED: u32 = 3;
/// Most counterparties a requester may name at once.
pub const MAX_COUNTERPARTIES: usize = 10;

/// The rolling window of the per-number budgets (failed proofs, codes, messages).
pub fn budget_window() -> Duration {
    Duration::hours(24)
}

/// A case that has not proven identity expires after this long.
pub fn unproven_case_lifetime() -> Duration {
    Duration::hours(24)
}

/// Whether `event` proves the requester's identity (by the policy, by a CS agent, or
/// by a store agent who saw the original ID card in person).
/// From then on the case is the number's one case past identity.
pub fn proves_identity(event: CaseEvent) -> bool {
    matches!(
        event,
        CaseEvent::ProofsAccepted | CaseEvent::IdentityVerified | CaseEvent::StoreVisitVerified
    )
}

/// The states an open case that has not proven identity can be in; when another
/// case for the number proves identity, these are closed as superseded.
pub const SUPERSEDABLE: [CaseState; 5] = [
    CaseState::AwaitingIdentity,
    CaseState::IdentityReview,
    CaseState::AwaitingCustomerIdentity,
    CaseState::Rejected,
    CaseState::AwaitingStoreVisit,
];

/// When a spent budget frees its next slot: 24 hours after the oldest use still in the window.
pub fn budget_frees_at(oldest_counted: DateTime<Utc>) -> DateTime<Utc> {
    oldest_counted + budget_window()
}

/// Whether a message about a case, caused at `caused_at`, is paid from the number's
/// anonymous-message budget: it is when the case had not proven identity by then.
pub fn message_is_anonymous(
    identity_proven_at: Option<DateTime<Utc>>,
    caused_at: DateTime<Utc>,
) -> bool {
    identity_proven_at.is_none_or(|proven| proven > caused_at)
}

/// A proof the requester offered, as checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofCheck {
    /// One-time code: whether it matched an unexpired, unused code.
    Otp { correct: bool },
    /// Service password: the carrier's answer.
    ServicePassword { correct: bool },
    /// Call records: how many named counterparties are among the recent ones.
    CallRecords { matched: u32 },
}

/// What the policy makes of a proof together with the name/ID match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityDecision {
    /// Verified: the case goes on to risk assessment.
    Verified,
    /// Plausible but needs a person: the case goes to a CS agent (identity_review).
    NeedsAgent,
    /// Not accepted; one failed attempt is counted.
    Failed,
}

/// Decides one proof. `name_id_match` is the carrier's answer for the name and ID
/// number given when the case was opened. The requester is only ever told
/// accepted or not, never which part was wrong.
pub fn decide_proof(name_id_match: bool, proof: ProofCheck) -> IdentityDecision {
    match (name_id_match, proof) {
        (
            true,
            ProofCheck::Otp { correct: true } | ProofCheck::ServicePassword { correct: true },
        ) => IdentityDecision::Verified,
        (true, ProofCheck::CallRecords { matched }) if matched >= CALL_RECORDS_REQUIRED => {
            IdentityDecision::NeedsAgent
        }
        _ => IdentityDecision::Failed,
    }
}

/// Whether a failure count has used up the attempts.
pub fn locked_out(failed_attempts: i32) -> bool {
    failed_attempts >= MAX_FAILED_ATTEMPTS
}

/// Attempts left after `failed_attempts` failures.
pub fn remaining_attempts(failed_attempts: i32) -> i32 {
    (MAX_FAILED_ATTEMPTS - failed_attempts).max(0)
}

#[cfg(test)]
mod tests {
    use super::{IdentityDecision::*, ProofCheck::*, *};

    #[test]
    fn the_policy_table() {
        let cases = [
            (true, Otp { correct: true }, Verified),
            (true, ServicePassword { correct: true }, Verified),
            (false, Otp { correct: true }, Failed),
            (false, ServicePassword { correct: true }, Failed),
            (true, Otp { correct: false }, Failed),
            (true, ServicePassword { correct: false }, Failed),
            (true, CallRecords { matched: 3 }, NeedsAgent),
            (true, CallRecords { matched: 10 }, NeedsAgent),
            (true, CallRecords { matched: 2 }, Failed),
            (false, CallRecords { matched: 5 }, Failed),
        ];
        for (matched, proof, expected) in cases {
            assert_eq!(
                decide_proof(matched, proof),
                expected,
                "{matched} {proof:?}"
            );
        }
    }

    #[test]
    fn call_records_alone_never_verify() {
        for matched in 0..20 {
            assert_ne!(decide_proof(true, CallRecords { matched }), Verified);
        }
    }

    #[test]
    fn only_accepted_proofs_and_an_agents_verification_prove_identity() {
        for e in CaseEvent::ALL {
            assert_eq!(
                proves_identity(e),
                matches!(
                    e,
                    CaseEvent::ProofsAccepted
                        | CaseEvent::IdentityVerified
                        | CaseEvent::StoreVisitVerified
                ),
                "{e}"
            );
        }
        // Every way a case proves identity leads out of the supersedable states, and
        // every supersedable state can be superseded.
        for t in crate::TRANSITIONS
            .iter()
            .filter(|t| proves_identity(t.event))
        {
            assert!(SUPERSEDABLE.contains(&t.from) && !SUPERSEDABLE.contains(&t.to));
        }
        for s in SUPERSEDABLE {
            assert_eq!(
                crate::transition_for(s, CaseEvent::Superseded).map(|t| t.to),
                Some(CaseState::Cancelled),
                "{s}"
            );
        }
    }

    #[test]
    fn budgets_roll_over_24_hours() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(budget_frees_at(t0), t0 + Duration::hours(24));
        assert_eq!(unproven_case_lifetime(), Duration::hours(24));
        // Before proof, or caused before the proof: anonymous.
        assert!(message_is_anonymous(None, t0));
        assert!(message_is_anonymous(Some(t0 + Duration::seconds(1)), t0));
        // Caused at or after the proof: the subscriber's own.
        assert!(!message_is_anonymous(Some(t0), t0));
        assert!(!message_is_anonymous(Some(t0 - Duration::hours(1)), t0));
    }

    #[test]
    fn attempts_run_out_at_five() {
        assert_eq!(remaining_attempts(0), 5);
        assert_eq!(remaining_attempts(4), 1);
        assert_eq!(remaining_attempts(7), 0);
        assert!(!locked_out(4));
        assert!(locked_out(5));
        assert_eq!(otp_lifetime(), Duration::minutes(10));
    }
}
