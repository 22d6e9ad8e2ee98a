//! The request and answer bodies of this service's internal API (the gateway's
//! HTTP identity client speaks the same shapes).

use case_workflows::identity::{CodeSent, Proof, RecoveryOutcome, RecoveryStarted, Verdict};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationResponse {
    /// This request moved the case (identity verified, or passed on to an agent or a store visit).
    pub accepted: bool,
    /// Failed attempts left before the case goes to a CS agent.
    pub remaining_attempts: i32,
    /// The proof counted, and the case's tier asks for more: the open rungs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub still_needed: Vec<Vec<String>>,
}

impl From<Verdict> for VerificationResponse {
    fn from(v: Verdict) -> Self {
        Self {
            accepted: v.accepted,
            remaining_attempts: v.remaining_attempts,
            still_needed: v.still_needed,
        }
    }
}

/// A case's proof tier was graded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graded {
    /// The tier that decides which proofs the case asks for (`low` … `extreme`).
    pub proof_tier: String,
}

/// Cases to grade at once (`POST /internal/v1/grades`): at most
/// [`MAX_GRADES_PER_CALL`], each once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GradesRequest {
    /// The cases, just opened.
    pub case_ids: Vec<uuid::Uuid>,
}

/// The most cases one grading call may name.
pub const MAX_GRADES_PER_CALL: usize = 100;

/// Each case's grading, in the order asked.
#[derive(Debug, Clone, Serialize)]
pub struct GradesResponse {
    /// One per case asked.
    pub grades: Vec<GradeOutcome>,
}

/// One case's grading: its tier, or the problem a grading of it alone would have
/// answered (with that answer's status).
#[derive(Debug, Clone, Serialize)]
pub struct GradeOutcome {
    /// The case.
    pub case_id: uuid::Uuid,
    /// The tier, when graded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof_tier: Option<String>,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<service_runtime::Problem>,
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

/// A lost case token: the number whose case past identity verification it was for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryRequest {
    /// The number, E.164.
    pub msisdn: String,
}

/// A recovery request was taken: the same answer whatever the number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryAccepted {
    /// The recovery to send the code to.
    pub recovery_id: Uuid,
    /// "If this number has an open request past identity verification ..., a code was sent to it."
    pub detail: String,
}

impl From<RecoveryStarted> for RecoveryAccepted {
    fn from(s: RecoveryStarted) -> Self {
        Self {
            recovery_id: s.recovery_id,
            detail: case_workflows::identity::RECOVERY_WORDS.into(),
        }
    }
}

/// The code received for a recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryCode {
    /// Six digits.
    pub code: String,
}

/// The end of a recovery attempt: a new token, or how many failed proofs the number
/// has left (a wrong, expired or used code and an unknown recovery answer alike).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryResult {
    /// A new token was issued (the old one stopped working).
    pub recovered: bool,
    /// The case, when recovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_id: Option<Uuid>,
    /// The new token, when recovered (shown only here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_token: Option<String>,
    /// Failed proofs the number has left, when not recovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_attempts: Option<i32>,
}

impl std::fmt::Debug for RecoveryResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryResult")
            .field("recovered", &self.recovered)
            .field("case_id", &self.case_id)
            .field("remaining_attempts", &self.remaining_attempts)
            .finish_non_exhaustive()
    }
}

impl From<RecoveryOutcome> for RecoveryResult {
    fn from(o: RecoveryOutcome) -> Self {
        match o {
            RecoveryOutcome::Recovered {
                case_id,
                case_token,
            } => Self {
                recovered: true,
                case_id: Some(case_id),
                case_token: Some(case_token),
                remaining_attempts: None,
            },
            RecoveryOutcome::NotRecovered { remaining_attempts } => Self {
                recovered: false,
                case_id: None,
                case_token: None,
                remaining_attempts: Some(remaining_attempts),
            },
        }
    }
}
