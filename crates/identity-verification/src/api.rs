//! The request and answer bodies of this service's internal API (the gateway's
//! HTTP identity client speaks the same shapes).

use case_workflows::identity::{CodeSent, Proof, Verdict};
use serde::{Deserialize, Serialize};

/// A proof of identity offered by the requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum VerificationRequest {
    /// The six-digit code sent to a contact on file with the carrier.
    Otp {
        /// Six digits.
        code: String,
    },
    /// The number's service password (checked by the carrier, never stored).
    ServicePassword {
        /// The password.
        password: String,
    },
    /// Recent call counterparties (E.164); enough matches send the case to a CS agent.
    CallRecords {
        /// One to ten numbers.
        counterparties: Vec<String>,
    },
}

impl From<VerificationRequest> for Proof {
    fn from(r: VerificationRequest) -> Self {
        match r {
            VerificationRequest::Otp { code } => Self::Otp { code },
            VerificationRequest::ServicePassword { password } => Self::ServicePassword { password },
            VerificationRequest::CallRecords { counterparties } => {
                Self::CallRecords { counterparties }
            }
        }
    }
}

/// Whether a proof was accepted. Never says which part was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationResponse {
    /// The proof was accepted (identity verified, or passed to a CS agent for call records).
    pub accepted: bool,
    /// Failed attempts left before the case goes to a CS agent.
    pub remaining_attempts: i32,
}

impl From<Verdict> for VerificationResponse {
    fn from(v: Verdict) -> Self {
        Self {
            accepted: v.accepted,
            remaining_attempts: v.remaining_attempts,
        }
    }
}

/// A code was asked for: the same answer whether or not the number has a contact on
/// file or is known to the carrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtpSent {
    /// Always `requested`.
    pub status: String,
    /// "If a contact is on file ..., a code was sent to it."
    pub detail: String,
    /// Codes that may still be requested for this case.
    pub remaining_sends: i32,
}

impl From<CodeSent> for OtpSent {
    fn from(s: CodeSent) -> Self {
        Self {
            status: "requested".into(),
            detail: case_workflows::identity::CODE_SENT_WORDS.into(),
            remaining_sends: s.remaining_sends,
        }
    }
}
