//! The subscriber proves their identity (the customer-service stage): a one-time code
//! sent through the carrier to a contact **on file** (never to one the requester
//! typed), the service password (asked of the carrier, never stored), or call
//! records. Attempts are counted; an accepted proof moves the case on
//! (`proofs_accepted`), call records and used-up attempts send it to a CS agent
//! (`identity_escalated`).
//!
//! [`IdentityCases`] holds the use cases. Callers reach them through [`IdentityPort`]:
//! `IdentityCases` implements it in-process; the gateway has an HTTP implementation
//! that calls the identity service's internal API (which calls these use cases).
//!
//! Never tells the requester which part of a proof was wrong or whether the
//! number/ID pair exists; keeps no code or password in clear; logs no personal data.

use std::sync::Arc;

use async_trait::async_trait;
use carrier_adapter::{Carrier, CarrierError, MessageChannel};
use case_domain::{
    Actor, CaseEvent, CaseState, Msisdn, PersonName, ResidentId,
    identity::{self, IdentityDecision, ProofCheck},
};
use case_store::{CaseRow, StoreError, TransitionRequest, identity as store};
use data_protection::Keys;
use sqlx::PgPool;
use uuid::Uuid;

/// The actor id written in case events by the identity use cases.
pub const SERVICE: &str = "identity-verification";

/// A proof of identity offered by the requester, as typed (checked by [`IdentityPort::verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// The six-digit code sent to a contact on file.
    Otp {
        /// The code as typed.
        code: String,
    },
    /// The number's service password.
    ServicePassword {
        /// The password as typed.
        password: String,
    },
    /// Recent call counterparties (E.164).
    CallRecords {
        /// The numbers as typed.
        counterparties: Vec<String>,
    },
}

impl Proof {
    /// The method name (`otp`, `service_password`, `call_records`).
    pub fn method(&self) -> &'static str {
        match self {
            Self::Otp { .. } => "otp",
            Self::ServicePassword { .. } => "service_password",
            Self::CallRecords { .. } => "call_records",
        }
    }
}

/// A one-time code was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSent {
    /// The masked contact on file it went to.
    pub sent_to: String,
    /// sms or email.
    pub channel: String,
    /// Codes that may still be requested for this case.
    pub remaining_sends: i32,
}

/// Whether a proof was accepted. Never says which part was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Accepted (identity verified, or passed to a CS agent for call records).
    pub accepted: bool,
    /// Failed attempts left before the case goes to a CS agent.
    pub remaining_attempts: i32,
}

/// Why a code was not sent or a proof not judged. Every variant but
/// [`IdentityError::Internal`] and [`IdentityError::Unreachable`] means nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The case does not exist.
    #[error("case not found")]
    NotFound,
    /// The proof is malformed (the message names the field, never its value).
    #[error("{0}")]
    Invalid(String),
    /// Attempts are used up; the case is with a CS agent.
    #[error("too many failed attempts")]
    Locked,
    /// No more codes may be sent for this case.
    #[error("too many codes requested")]
    TooManyCodes,
    /// The carrier has no contact on file to send a code to.
    #[error("no contact on file")]
    NoContactOnFile,
    /// The case is past identity verification (or otherwise not waiting for it).
    #[error("case is {0}")]
    WrongState(CaseState),
    /// The carrier could not be reached.
    #[error("carrier unavailable")]
    CarrierUnavailable,
    /// The identity service (behind a remote [`IdentityPort`]) could not be reached.
    #[error("identity service unreachable: {0}")]
    Unreachable(String),
    /// Anything else.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What the requester is told about a refusal: a stable kind (`slug`), its title,
/// and this occurrence's words. Never which part of a proof was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wording {
    /// Stable kind, e.g. `identity-locked`.
    pub slug: &'static str,
    /// Short, stable summary.
    pub title: &'static str,
    /// What the requester is told this time.
    pub detail: String,
}

impl IdentityError {
    /// The words for a refusal the requester can act on; `None` for a missing case
    /// and for failures (unreachable, internal), which every edge words its own way.
    pub fn wording(&self) -> Option<Wording> {
        let (slug, title, detail) = match self {
            Self::NotFound | Self::Unreachable(_) | Self::Internal(_) => return None,
            Self::Invalid(detail) => ("validation", "Invalid request", detail.clone()),
            Self::Locked => (
                "identity-locked",
                "Too many failed attempts",
                "No more online attempts are possible. A customer-service agent now checks your identity and will contact you.".into(),
            ),
            Self::TooManyCodes => (
                "too-many-codes",
                "Too many codes requested",
                "No more codes can be sent for this case. Use your service password or call records instead.".into(),
            ),
            Self::NoContactOnFile => (
                "no-contact-on-file",
                "No contact on file",
                "The carrier has no backup phone or e-mail on file to send a code to. Use your service password or call records instead.".into(),
            ),
            Self::WrongState(state) => (
                "wrong-state",
                "Not waiting for identity proof",
                format!("The case is {state}; identity proofs are not taken now."),
            ),
            Self::CarrierUnavailable => (
                "carrier-unavailable",
                "Carrier unavailable",
                "The carrier cannot be reached right now. Please try again in a minute.".into(),
            ),
        };
        Some(Wording {
            slug,
            title,
            detail,
        })
    }
}

impl From<StoreError> for IdentityError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.into())
    }
}

/// Sends codes and judges proofs for a case: in-process ([`IdentityCases`]) or
/// through the identity service.
#[async_trait]
pub trait IdentityPort: Send + Sync + std::fmt::Debug {
    /// Sends a one-time code to a contact on file with the carrier.
    async fn send_code(&self, case_id: Uuid) -> Result<CodeSent, IdentityError>;
    /// Judges one proof and moves the case when the policy says so.
    async fn verify(&self, case_id: Uuid, proof: Proof) -> Result<Verdict, IdentityError>;
}

/// The identity use cases over a store, a carrier and the keys for codes and personal data.
#[derive(Debug, Clone)]
pub struct IdentityCases {
    pool: PgPool,
    carrier: Arc<dyn Carrier>,
    keys: Arc<Keys>,
}

#[async_trait]
impl IdentityPort for IdentityCases {
    async fn send_code(&self, case_id: Uuid) -> Result<CodeSent, IdentityError> {
        IdentityCases::send_code(self, case_id).await
    }

    async fn verify(&self, case_id: Uuid, proof: Proof) -> Result<Verdict, IdentityError> {
        IdentityCases::verify(self, case_id, proof).await
    }
}

fn carrier_failure(e: CarrierError) -> IdentityError {
    match e {
        CarrierError::Unavailable(_) => IdentityError::CarrierUnavailable,
        other => IdentityError::Internal(anyhow::anyhow!("carrier: {other}")),
    }
}

fn code_message(locale: &str, code: &str) -> String {
    if locale == "zh-CN" {
        format!(
            "【复机验证】您的验证码为 {code}，10分钟内有效。请勿告诉任何人。如非本人操作，请忽略本短信。"
        )
    } else {
        format!(
            "Reactivation code: {code}. It expires in 10 minutes. Never share it with anyone. If you did not ask for it, ignore this message."
        )
    }
}

impl IdentityCases {
    /// The use cases over `pool`, asking `carrier`, with keys for codes and personal data.
    pub fn new(pool: PgPool, carrier: Arc<dyn Carrier>, keys: Arc<Keys>) -> Self {
        Self {
            pool,
            carrier,
            keys,
        }
    }

    async fn case_awaiting_identity(
        &self,
        case_id: Uuid,
    ) -> Result<(CaseRow, Msisdn), IdentityError> {
        let case = case_store::load_case(&self.pool, case_id)
            .await?
            .ok_or(IdentityError::NotFound)?;
        match case.state {
            CaseState::AwaitingIdentity => {}
            CaseState::IdentityReview => return Err(IdentityError::Locked),
            other => return Err(IdentityError::WrongState(other)),
        }
        let msisdn = case.msisdn.clone();
        Ok((case, msisdn))
    }

    /// Sends a one-time code to a contact on file with the carrier.
    #[tracing::instrument(skip(self), fields(case_id = %case_id))]
    pub async fn send_code(&self, case_id: Uuid) -> Result<CodeSent, IdentityError> {
        let (case, msisdn) = self.case_awaiting_identity(case_id).await?;
        let recent = store::number_activity(&self.pool, msisdn.e164()).await?;
        if recent.codes >= identity::MAX_OTP_PER_NUMBER_PER_DAY {
            return Err(IdentityError::TooManyCodes);
        }
        let Some(sends) =
            store::take_otp_send(&self.pool, case_id, identity::MAX_OTP_SENDS).await?
        else {
            return Err(IdentityError::TooManyCodes);
        };
        let code = data_protection::one_time_code();
        let code_id = Uuid::now_v7();
        let sent = self
            .carrier
            .send_message(
                &msisdn,
                MessageChannel::Any,
                &code_message(case.locale.as_str(), &code),
                &code_id.to_string(),
            )
            .await;
        let sent = match sent {
            Ok(sent) => sent,
            Err(e) => {
                store::return_otp_send(&self.pool, case_id).await?;
                return Err(match e {
                    CarrierError::NoContactOnFile | CarrierError::NotFound => {
                        IdentityError::NoContactOnFile
                    }
                    other => carrier_failure(other),
                });
            }
        };
        let expires_at = chrono::Utc::now() + identity::otp_lifetime();
        store::insert_otp(
            &self.pool,
            code_id,
            case_id,
            &self.keys.otp_hash(&case_id, &code),
            &sent.sent_to_masked,
            expires_at,
        )
        .await?;
        tracing::info!(channel = sent.kind.as_str(), "one-time code sent");
        Ok(CodeSent {
            sent_to: sent.sent_to_masked,
            channel: sent.kind.as_str().into(),
            remaining_sends: identity::MAX_OTP_SENDS - sends,
        })
    }

    /// Whether the name and ID given at opening match the number's subscriber
    /// (asked of the carrier once, then remembered).
    async fn name_id_match(&self, case_id: Uuid, msisdn: &Msisdn) -> Result<bool, IdentityError> {
        let row = store::load_identity(&self.pool, case_id)
            .await?
            .ok_or(IdentityError::NotFound)?;
        if let Some(known) = row.subscriber_match {
            return Ok(known);
        }
        // Every decryption of personal data is audited, before it happens.
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| IdentityError::Internal(e.into()))?;
        case_store::audit::record(
            &mut conn,
            &case_store::audit::AuditEntry {
                actor: &Actor::system(SERVICE),
                action: "identity.decrypt",
                case_id: Some(case_id),
                detail: serde_json::json!({
                    "fields": ["full_name", "id_number"],
                    "purpose": "subscriber_match",
                }),
                reason: Some("name and ID compared with the carrier's subscriber record"),
            },
        )
        .await?;
        drop(conn);
        let name = self
            .keys
            .decrypt(&row.full_name_enc, &case_id)
            .map_err(|e| IdentityError::Internal(e.into()))?;
        let id = self
            .keys
            .decrypt(&row.id_number_enc, &case_id)
            .map_err(|e| IdentityError::Internal(e.into()))?;
        let name = PersonName::parse(&name).map_err(|e| IdentityError::Internal(e.into()))?;
        let id = ResidentId::parse(&id).map_err(|e| IdentityError::Internal(e.into()))?;
        let matched = self
            .carrier
            .subscriber_matches(msisdn, &name, &id)
            .await
            .map_err(carrier_failure)?;
        store::record_subscriber_match(&self.pool, case_id, matched).await?;
        Ok(matched)
    }

    /// Judges one proof and moves the case when the policy says so.
    #[tracing::instrument(skip(self, proof), fields(case_id = %case_id, method = proof.method()))]
    pub async fn verify(&self, case_id: Uuid, proof: Proof) -> Result<Verdict, IdentityError> {
        let (case, msisdn) = self.case_awaiting_identity(case_id).await?;
        let mut otp_id = None;
        let check = match &proof {
            Proof::Otp { code } => {
                // The check is counted before anything is compared.
                let under_check =
                    store::count_otp_check(&self.pool, case_id, identity::MAX_CHECKS_PER_CODE)
                        .await?;
                if !(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())) {
                    return Err(IdentityError::Invalid("code must be six digits".into()));
                }
                let correct = under_check.is_some_and(|c| {
                    otp_id = Some(c.id);
                    data_protection::hashes_equal(&c.code_hash, &self.keys.otp_hash(&case_id, code))
                });
                ProofCheck::Otp { correct }
            }
            Proof::ServicePassword { password } => {
                if password.is_empty() || password.chars().count() > 64 {
                    return Err(IdentityError::Invalid(
                        "password must be 1 to 64 characters".into(),
                    ));
                }
                let correct = self
                    .carrier
                    .verify_service_password(&msisdn, password)
                    .await
                    .map_err(carrier_failure)?;
                ProofCheck::ServicePassword { correct }
            }
            Proof::CallRecords { counterparties } => {
                if counterparties.is_empty() || counterparties.len() > identity::MAX_COUNTERPARTIES
                {
                    return Err(IdentityError::Invalid(format!(
                        "counterparties must list 1 to {} numbers",
                        identity::MAX_COUNTERPARTIES
                    )));
                }
                let mut numbers: Vec<Msisdn> = Vec::with_capacity(counterparties.len());
                for (i, raw) in counterparties.iter().enumerate() {
                    let n = Msisdn::parse(raw)
                        .map_err(|e| IdentityError::Invalid(format!("counterparties[{i}]: {e}")))?;
                    if !numbers.contains(&n) {
                        numbers.push(n);
                    }
                }
                let matched = self
                    .carrier
                    .count_call_record_matches(&msisdn, &numbers)
                    .await
                    .map_err(carrier_failure)?;
                ProofCheck::CallRecords { matched }
            }
        };
        // Asked whatever the proof's outcome, so the answer's timing does not tell.
        let name_id = self.name_id_match(case_id, &msisdn).await?;
        let decision = identity::decide_proof(name_id, check);
        let failed_so_far = store::load_identity(&self.pool, case_id)
            .await?
            .map_or(0, |r| r.failed_attempts);
        let system = Actor::system(SERVICE);

        match decision {
            IdentityDecision::Verified | IdentityDecision::NeedsAgent => {
                let mut tx = self
                    .pool
                    .begin()
                    .await
                    .map_err(|e| IdentityError::Internal(e.into()))?;
                if let Some(id) = otp_id
                    && !store::consume_otp(&mut *tx, id).await?
                {
                    // Used by a concurrent request a moment ago (which committed first):
                    // that request is the one accepted.
                    drop(tx);
                    return Err(self.overtaken(case_id).await);
                }
                let (event, reason) = if decision == IdentityDecision::Verified {
                    store::mark_identity_verified(&mut *tx, case_id, proof.method()).await?;
                    (CaseEvent::ProofsAccepted, "identity verified")
                } else {
                    (
                        CaseEvent::IdentityEscalated,
                        "call records given; a customer-service agent confirms identity",
                    )
                };
                let moved = case_store::transition_in(
                    &mut tx,
                    TransitionRequest {
                        case_id,
                        expected_version: case.version,
                        event,
                        actor: &system,
                        reason: Some(reason),
                        fence: None,
                        outbox: vec![],
                    },
                )
                .await;
                match moved {
                    Ok(_) => tx
                        .commit()
                        .await
                        .map_err(|e| IdentityError::Internal(e.into()))?,
                    // A concurrent proof moved the case first: only that request is
                    // accepted; this one is told where the case is now.
                    Err(StoreError::StaleVersion { .. } | StoreError::Refused(_)) => {
                        drop(tx);
                        return Err(self.overtaken(case_id).await);
                    }
                    Err(e) => return Err(e.into()),
                }
                Ok(Verdict {
                    accepted: true,
                    remaining_attempts: identity::remaining_attempts(failed_so_far),
                })
            }
            IdentityDecision::Failed => self.fail(case_id, case.version).await,
        }
    }

    /// The answer to a good proof that a concurrent request beat to the case: the
    /// case's state now, as any later proof would be told (409 `wrong-state`, or 423
    /// once it is with an agent), never a second `accepted`.
    async fn overtaken(&self, case_id: Uuid) -> IdentityError {
        match self.case_awaiting_identity(case_id).await {
            Err(e) => e,
            // Still waiting (the winner rolled back after all): the caller may try again.
            Ok((case, _)) => IdentityError::WrongState(case.state),
        }
    }

    /// Counts a failed proof; the last allowed failure sends the case to a CS agent.
    async fn fail(&self, case_id: Uuid, version: i32) -> Result<Verdict, IdentityError> {
        let recorded =
            store::record_failed_attempt(&self.pool, case_id, identity::MAX_FAILED_ATTEMPTS)
                .await?;
        // No attempts left (e.g. carried over from the number's recent cases): a person checks.
        let failed = recorded.unwrap_or(identity::MAX_FAILED_ATTEMPTS);
        if identity::locked_out(failed) {
            let system = Actor::system(SERVICE);
            let moved = case_store::transition(
                &self.pool,
                TransitionRequest {
                    case_id,
                    expected_version: version,
                    event: CaseEvent::IdentityEscalated,
                    actor: &system,
                    reason: Some("too many failed identity attempts; a customer-service agent checks identity"),
                    fence: None,
                    outbox: vec![],
                },
            )
            .await;
            match moved {
                Ok(_) | Err(StoreError::StaleVersion { .. } | StoreError::Refused(_)) => {}
                Err(e) => return Err(e.into()),
            }
            tracing::info!("identity attempts used up; case sent to a CS agent");
            if recorded.is_none() {
                return Err(IdentityError::Locked);
            }
        }
        Ok(Verdict {
            accepted: false,
            remaining_attempts: identity::remaining_attempts(failed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_worded_and_never_say_which_part_was_wrong() {
        assert!(IdentityError::NotFound.wording().is_none());
        assert!(
            IdentityError::Unreachable("down".into())
                .wording()
                .is_none()
        );
        let locked = IdentityError::Locked.wording().expect("worded");
        assert_eq!(locked.slug, "identity-locked");
        let state = IdentityError::WrongState(CaseState::Cancelled)
            .wording()
            .expect("worded");
        assert_eq!(
            state.detail,
            "The case is cancelled; identity proofs are not taken now."
        );
        assert_eq!(
            Proof::ServicePassword {
                password: "x".into()
            }
            .method(),
            "service_password"
        );
    }
}
