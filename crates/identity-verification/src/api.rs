//! The request and answer bodies of identity verification, shared by the gateway
//! (public customer API) and this service's internal API.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A proof of identity offered by the requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

impl VerificationRequest {
    /// The method name.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Otp { .. } => "otp",
            Self::ServicePassword { .. } => "service_password",
            Self::CallRecords { .. } => "call_records",
        }
    }
}

/// Whether a proof was accepted. Never says which part was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerificationResponse {
    /// The proof was accepted (identity verified, or passed to a CS agent for call records).
    pub accepted: bool,
    /// Failed attempts left before the case goes to a CS agent.
    pub remaining_attempts: i32,
}

/// A one-time code was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OtpSent {
    /// Always `sent`.
    pub status: String,
    /// The masked contact on file it went to.
    pub sent_to: String,
    /// sms or email.
    pub channel: String,
    /// Codes that may still be requested for this case.
    pub remaining_sends: i32,
}
