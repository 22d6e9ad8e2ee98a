use std::sync::Arc;

use axum::http::StatusCode;
use carrier_adapter::{Carrier, CarrierError, MessageChannel};
use case_domain::{
    Actor, CaseEvent, CaseState, Msisdn, PersonName, ResidentId,
    identity::{self, IdentityDecision, ProofCheck},
};
use case_store::{CaseRow, StoreError, TransitionRequest, identity as store};
use data_protection::Keys;
use service_runtime::Problem;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    SERVICE,
    api::{OtpSent, VerificationRequest, VerificationResponse},
};

/// Why a verification or code request was not processed; each maps to a problem.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The case does not exist.
    #[error("case not found")]
    NotFound,
    /// The body is invalid (the message names the field, never its value).
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
    /// Anything else.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for VerifyError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.into())
    }
}

impl VerifyError {
    /// The RFC 9457 problem for this error.
    pub fn problem(&self) -> Problem {
        match self {
            Self::NotFound => Problem::not_found(),
            Self::Invalid(detail) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid request",
                detail.clone(),
            ),
            Self::Locked => Problem::new(
                StatusCode::LOCKED,
                "identity-locked",
                "Too many failed attempts",
                "No more online attempts are possible. A customer-service agent now checks your identity and will contact you.",
            ),
            Self::TooManyCodes => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-codes",
                "Too many codes requested",
                "No more codes can be sent for this case. Use your service password or call records instead.",
            ),
            Self::NoContactOnFile => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no-contact-on-file",
                "No contact on file",
                "The carrier has no backup phone or e-mail on file to send a code to. Use your service password or call records instead.",
            ),
            Self::WrongState(state) => Problem::new(
                StatusCode::CONFLICT,
                "wrong-state",
                "Not waiting for identity proof",
                format!("The case is {state}; identity proofs are not taken now."),
            ),
            Self::CarrierUnavailable => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "carrier-unavailable",
                "Carrier unavailable",
                "The carrier cannot be reached right now. Please try again in a minute.",
            ),
            Self::Internal(_) => Problem::internal(),
        }
    }
}

/// The identity-verification logic, shared by the HTTP handlers and tests.
#[derive(Debug, Clone)]
pub struct IdentityService {
    pool: PgPool,
    carrier: Arc<dyn Carrier>,
    keys: Arc<Keys>,
}

fn carrier_failure(e: CarrierError) -> VerifyError {
    match e {
        CarrierError::Unavailable(_) => VerifyError::CarrierUnavailable,
        other => VerifyError::Internal(anyhow::anyhow!("carrier: {other}")),
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

impl IdentityService {
    /// A service over `pool`, asking `carrier`, with keys for codes and personal data.
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
    ) -> Result<(CaseRow, Msisdn), VerifyError> {
        let case = case_store::load_case(&self.pool, case_id)
            .await?
            .ok_or(VerifyError::NotFound)?;
        match case.state {
            CaseState::AwaitingIdentity => {}
            CaseState::IdentityReview => return Err(VerifyError::Locked),
            other => return Err(VerifyError::WrongState(other)),
        }
        let msisdn = Msisdn::parse(&case.msisdn).map_err(|e| VerifyError::Internal(e.into()))?;
        Ok((case, msisdn))
    }

    /// Sends a one-time code to a contact on file with the carrier.
    #[tracing::instrument(skip(self), fields(case_id = %case_id))]
    pub async fn send_code(&self, case_id: Uuid) -> Result<OtpSent, VerifyError> {
        let (case, msisdn) = self.case_awaiting_identity(case_id).await?;
        let recent = store::number_activity(&self.pool, msisdn.e164()).await?;
        if recent.codes >= identity::MAX_OTP_PER_NUMBER_PER_DAY {
            return Err(VerifyError::TooManyCodes);
        }
        let Some(sends) =
            store::take_otp_send(&self.pool, case_id, identity::MAX_OTP_SENDS).await?
        else {
            return Err(VerifyError::TooManyCodes);
        };
        let code = data_protection::one_time_code();
        let code_id = Uuid::now_v7();
        let sent = self
            .carrier
            .send_message(
                &msisdn,
                MessageChannel::Any,
                &code_message(&case.locale, &code),
                &code_id.to_string(),
            )
            .await;
        let sent = match sent {
            Ok(sent) => sent,
            Err(e) => {
                store::return_otp_send(&self.pool, case_id).await?;
                return Err(match e {
                    CarrierError::NoContactOnFile | CarrierError::NotFound => {
                        VerifyError::NoContactOnFile
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
        Ok(OtpSent {
            status: "sent".into(),
            sent_to: sent.sent_to_masked,
            channel: sent.kind.as_str().into(),
            remaining_sends: identity::MAX_OTP_SENDS - sends,
        })
    }

    /// Whether the name and ID given at opening match the number's subscriber
    /// (asked of the carrier once, then remembered).
    async fn name_id_match(&self, case_id: Uuid, msisdn: &Msisdn) -> Result<bool, VerifyError> {
        let row = store::load_identity(&self.pool, case_id)
            .await?
            .ok_or(VerifyError::NotFound)?;
        if let Some(known) = row.subscriber_match {
            return Ok(known);
        }
        let name = self
            .keys
            .decrypt(&row.full_name_enc, &case_id)
            .map_err(|e| VerifyError::Internal(e.into()))?;
        let id = self
            .keys
            .decrypt(&row.id_number_enc, &case_id)
            .map_err(|e| VerifyError::Internal(e.into()))?;
        let name = PersonName::parse(&name).map_err(|e| VerifyError::Internal(e.into()))?;
        let id = ResidentId::parse(&id).map_err(|e| VerifyError::Internal(e.into()))?;
        let matched = self
            .carrier
            .subscriber_matches(msisdn, &name, &id)
            .await
            .map_err(carrier_failure)?;
        store::record_subscriber_match(&self.pool, case_id, matched).await?;
        Ok(matched)
    }

    /// Checks one proof and moves the case when the policy says so.
    #[tracing::instrument(skip(self, request), fields(case_id = %case_id, method = request.method()))]
    pub async fn verify(
        &self,
        case_id: Uuid,
        request: VerificationRequest,
    ) -> Result<VerificationResponse, VerifyError> {
        let (case, msisdn) = self.case_awaiting_identity(case_id).await?;
        let mut otp_id = None;
        let proof = match &request {
            VerificationRequest::Otp { code } => {
                // The check is counted before anything is compared.
                let under_check =
                    store::count_otp_check(&self.pool, case_id, identity::MAX_CHECKS_PER_CODE)
                        .await?;
                if !(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())) {
                    return Err(VerifyError::Invalid("code must be six digits".into()));
                }
                let correct = under_check.is_some_and(|c| {
                    otp_id = Some(c.id);
                    data_protection::hashes_equal(&c.code_hash, &self.keys.otp_hash(&case_id, code))
                });
                ProofCheck::Otp { correct }
            }
            VerificationRequest::ServicePassword { password } => {
                if password.is_empty() || password.chars().count() > 64 {
                    return Err(VerifyError::Invalid(
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
            VerificationRequest::CallRecords { counterparties } => {
                if counterparties.is_empty() || counterparties.len() > identity::MAX_COUNTERPARTIES
                {
                    return Err(VerifyError::Invalid(format!(
                        "counterparties must list 1 to {} numbers",
                        identity::MAX_COUNTERPARTIES
                    )));
                }
                let mut numbers: Vec<Msisdn> = Vec::with_capacity(counterparties.len());
                for (i, raw) in counterparties.iter().enumerate() {
                    let n = Msisdn::parse(raw)
                        .map_err(|e| VerifyError::Invalid(format!("counterparties[{i}]: {e}")))?;
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
        let decision = identity::decide_proof(name_id, proof);
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
                    .map_err(|e| VerifyError::Internal(e.into()))?;
                if let Some(id) = otp_id
                    && !store::consume_otp(&mut *tx, id).await?
                {
                    // Used by a concurrent request a moment ago.
                    return self.fail(case_id, case.version).await;
                }
                let (event, reason) = if decision == IdentityDecision::Verified {
                    store::mark_identity_verified(&mut *tx, case_id, request.method()).await?;
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
                        .map_err(|e| VerifyError::Internal(e.into()))?,
                    // A concurrent proof moved the case first: this one was still good.
                    Err(StoreError::StaleVersion { .. } | StoreError::Refused(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(VerificationResponse {
                    accepted: true,
                    remaining_attempts: identity::remaining_attempts(failed_so_far),
                })
            }
            IdentityDecision::Failed => self.fail(case_id, case.version).await,
        }
    }

    /// Counts a failed proof; the last allowed failure sends the case to a CS agent.
    async fn fail(&self, case_id: Uuid, version: i32) -> Result<VerificationResponse, VerifyError> {
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
                return Err(VerifyError::Locked);
            }
        }
        Ok(VerificationResponse {
            accepted: false,
            remaining_attempts: identity::remaining_attempts(failed),
        })
    }
}
