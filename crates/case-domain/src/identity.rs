//! The identity-verification policy: which proofs verify a requester, the limits on
//! attempts, and what happens when they are used up.
//!
//! Identity is verified when the name and ID number match the number's subscriber
//! **and** either a one-time code (sent to a contact on file with the carrier) or the
//! service password is accepted. Naming enough recent call counterparties together
//! with a matching name and ID does not verify alone: it sends the case to a CS agent.

use chrono::Duration;

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
/// Failed proofs (of any kind) before the case goes to a CS agent.
pub const MAX_FAILED_ATTEMPTS: i32 = 5;
/// Recent call counterparties that must match for the call-record path.
pub const CALL_RECORDS_REQUIRED: u32 = 3;
/// Most counterparties a requester may name at once.
pub const MAX_COUNTERPARTIES: usize = 10;

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
    fn attempts_run_out_at_five() {
        assert_eq!(remaining_attempts(0), 5);
        assert_eq!(remaining_attempts(4), 1);
        assert_eq!(remaining_attempts(7), 0);
        assert!(!locked_out(4));
        assert!(locked_out(5));
        assert_eq!(otp_lifetime(), Duration::minutes(10));
    }
}
