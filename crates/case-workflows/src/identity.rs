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
    ladder::{self, NextStep, ProofKind},
    risk::{self, RiskTier},
};
use case_store::{
    CaseRow, StoreError, TransitionRequest,
    identity::{self as store, IdentityRow},
    number_budget::{self, BudgetKind, ProofOutcome, Reservation, Reserve},
};
use data_protection::Keys;
pub use data_protection::TokenHash;
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

/// A code-send request was taken. Says nothing about whether the number is known to
/// the carrier or has a contact on file (the answer is the same either way: "if a
/// contact is on file, a code was sent to it").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSent {
    /// Codes that may still be requested for this case.
    pub remaining_sends: i32,
}

/// What the requester is told after asking for a code, whatever happened.
pub const CODE_SENT_WORDS: &str = "If a contact is on file with the carrier for this number, a code was sent to it. It expires in 10 minutes.";

/// Whether a proof was accepted. Never says which part was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// This request moved the case (identity verified, or passed to a CS agent for
    /// call records or a call-back, or to a store visit).
    pub accepted: bool,
    /// Failed attempts left before the case goes to a CS agent.
    pub remaining_attempts: i32,
    /// The proof was good and counted, but the case's tier asks for more before it
    /// moves: the rungs still open, each "any one of these kinds"
    /// (`case_domain::ladder`). Empty otherwise.
    pub still_needed: Vec<Vec<String>>,
}

/// What the requester of a lost-token recovery is told, whatever the number.
pub const RECOVERY_WORDS: &str = "If this number has an open request past identity verification and a contact on file, a code was sent to it.";

/// A recovery request was taken (the same answer for every number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryStarted {
    /// The recovery to send the code to.
    pub recovery_id: Uuid,
}

/// The end of a recovery attempt.
#[derive(Clone, PartialEq, Eq)]
pub enum RecoveryOutcome {
    /// The code was right: the case has a new token (the old one stopped working).
    Recovered {
        /// The case.
        case_id: Uuid,
        /// Its new token, shown only here.
        case_token: String,
    },
    /// Not recovered: a wrong, expired or used code, or an unknown recovery (the
    /// same answer; never which).
    NotRecovered {
        /// Failed proofs the number has left before its budget is spent.
        remaining_attempts: i32,
    },
}

impl std::fmt::Debug for RecoveryOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Recovered { case_id, .. } => f
                .debug_struct("Recovered")
                .field("case_id", case_id)
                .finish_non_exhaustive(),
            Self::NotRecovered { remaining_attempts } => f
                .debug_struct("NotRecovered")
                .field("remaining_attempts", remaining_attempts)
                .finish(),
        }
    }
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
    /// The case is with a CS agent (attempts used up, or call records given).
    #[error("too many failed attempts")]
    Locked,
    /// The number's budget of failed proofs is spent: no proof is judged until
    /// `frees_at` (the case has gone to a CS agent).
    #[error("the number's attempts are used up")]
    BudgetSpent {
        /// When the next proof may be judged.
        frees_at: chrono::DateTime<chrono::Utc>,
    },
    /// No more codes may be sent for this case.
    #[error("too many codes requested")]
    TooManyCodes,
    /// The carrier has no contact on file to send a code to.
    #[error("no contact on file")]
    NoContactOnFile,
    /// Not judged: the number's remaining attempts are all being judged right now (a
    /// racing request). Nothing changed; the proof may be offered again in a moment.
    #[error("another proof for this number is being checked")]
    ProofInFlight,
    /// The proof was good, but another case for the number is past identity already
    /// (nothing changed).
    #[error("another case for the number is past identity")]
    OtherCaseProven,
    /// The case is past identity verification (or otherwise not waiting for it).
    #[error("case is {0}")]
    WrongState(CaseState),
    /// The carrier could not be reached.
    #[error("carrier unavailable")]
    CarrierUnavailable,
    /// The case's tier asks for the original ID card seen at a store before anything
    /// else: no code is sent and no proof judged (the case now waits for the visit).
    #[error("a store visit is required")]
    StoreVisitRequired,
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
    /// The HTTP status of a refusal the requester can act on (those with
    /// [`Self::wording`]); both the identity service and the gateway answer with it.
    pub fn status(&self) -> u16 {
        match self {
            Self::Locked | Self::BudgetSpent { .. } => 423,
            Self::TooManyCodes => 429,
            Self::WrongState(_)
            | Self::OtherCaseProven
            | Self::ProofInFlight
            | Self::StoreVisitRequired => 409,
            Self::CarrierUnavailable | Self::Unreachable(_) => 503,
            Self::NotFound => 404,
            Self::Internal(_) => 500,
            // Invalid proofs, no contact on file.
            Self::Invalid(_) | Self::NoContactOnFile => 422,
        }
    }

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
            Self::BudgetSpent { frees_at } => (
                "identity-locked",
                "Too many failed attempts",
                format!(
                    "Too many failed attempts for this number. No proof is checked before {}; a customer-service agent now checks your identity and will contact you.",
                    frees_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
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
            Self::ProofInFlight => (
                "proof-in-progress",
                "Another proof is being checked",
                "Another proof for this number is being checked right now. Wait for its answer before trying again.".into(),
            ),
            Self::OtherCaseProven => (
                "other-case-in-progress",
                "Another request is in progress",
                "Your identity is confirmed, but another request for this number is already past identity verification. Follow that request, or cancel it first.".into(),
            ),
            Self::WrongState(state) => (
                "wrong-state",
                "Not waiting for identity proof",
                format!("The case is {state}; identity proofs are not taken now."),
            ),
            Self::StoreVisitRequired => (
                "store-visit-required",
                "A store visit is required",
                "This number can only be restored after your original ID card was checked in person at a store of your carrier. Your request now waits for that visit; no code or password is taken online.".into(),
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

/// The header of the identity service's internal API that carries the hash of the
/// case token the subscriber presented to the gateway ([`TokenHash::encode`]).
pub const CASE_TOKEN_HASH_HEADER: &str = "case-token-hash";

/// Sends codes and judges proofs for a case: in-process ([`IdentityCases`]) or
/// through the identity service.
#[async_trait]
pub trait IdentityPort: Send + Sync + std::fmt::Debug {
    /// Sends a one-time code to a contact on file with the carrier. `holder` is the
    /// hash of the case token the subscriber presented: checked in the read of the
    /// case, a wrong one is answered as an unknown case.
    async fn send_code(&self, case_id: Uuid, holder: TokenHash) -> Result<CodeSent, IdentityError>;
    /// Judges one proof and moves the case when the policy says so (`holder`: as for
    /// [`IdentityPort::send_code`]).
    async fn verify(
        &self,
        case_id: Uuid,
        holder: TokenHash,
        proof: Proof,
    ) -> Result<Verdict, IdentityError>;
    /// Grades a new case's place on the verification ladder from the carrier's
    /// signals (an extreme-tier case goes to wait for a store visit at once).
    async fn grade(&self, case_id: Uuid) -> Result<RiskTier, IdentityError>;
    /// Asks for a new token for the number's case past identity: a code goes to a
    /// contact on file. The answer is the same whatever the number.
    async fn start_recovery(&self, msisdn: &str) -> Result<RecoveryStarted, IdentityError>;
    /// Checks a recovery's code; the right one replaces the case's token.
    async fn finish_recovery(
        &self,
        recovery_id: Uuid,
        code: &str,
    ) -> Result<RecoveryOutcome, IdentityError>;
}

/// The identity use cases over a store, a carrier and the keys for codes and personal data.
#[derive(Debug, Clone)]
pub struct IdentityCases {
    pool: PgPool,
    carrier: Arc<dyn Carrier>,
    keys: Arc<Keys>,
    /// The decryptions' audit entries, written a burst at a time.
    audit: crate::audit_appender::Appender,
}

#[async_trait]
impl IdentityPort for IdentityCases {
    async fn send_code(&self, case_id: Uuid, holder: TokenHash) -> Result<CodeSent, IdentityError> {
        IdentityCases::send_code(self, case_id, holder).await
    }

    async fn verify(
        &self,
        case_id: Uuid,
        holder: TokenHash,
        proof: Proof,
    ) -> Result<Verdict, IdentityError> {
        IdentityCases::verify(self, case_id, holder, proof).await
    }

    async fn grade(&self, case_id: Uuid) -> Result<RiskTier, IdentityError> {
        IdentityCases::grade(self, case_id).await
    }

    async fn start_recovery(&self, msisdn: &str) -> Result<RecoveryStarted, IdentityError> {
        IdentityCases::start_recovery(self, msisdn).await
    }

    async fn finish_recovery(
        &self,
        recovery_id: Uuid,
        code: &str,
    ) -> Result<RecoveryOutcome, IdentityError> {
        IdentityCases::finish_recovery(self, recovery_id, code).await
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

/// A case awaiting identity and what judging it needs, read in one statement
/// ([`store::load_proof_context`]).
struct Proving {
    case: CaseRow,
    msisdn: Msisdn,
    identity: IdentityRow,
    wrapped_key: Option<Vec<u8>>,
    rules: case_store::risk_rules::CurrentRules,
    /// Whether the decryption of the name and ID was audited (so they may be opened).
    audited: bool,
}

impl IdentityCases {
    /// The use cases over `pool`, asking `carrier`, with keys for codes and personal data.
    pub fn new(pool: PgPool, carrier: Arc<dyn Carrier>, keys: Arc<Keys>) -> Self {
        Self {
            audit: crate::audit_appender::Appender::new(pool.clone()),
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
            CaseState::AwaitingStoreVisit => return Err(IdentityError::StoreVisitRequired),
            other => return Err(IdentityError::WrongState(other)),
        }
        let msisdn = case.msisdn.clone();
        Ok((case, msisdn))
    }

    /// The case, awaiting identity, with what judging it needs ([`Proving`]), read
    /// in one statement. With `holder`, a case whose token hash is another is
    /// [`IdentityError::NotFound`], before anything else is looked at. When the name
    /// and ID given have not been compared with the carrier's record yet and
    /// `will_compare` says they are about to be, the decryption is audited in the same
    /// transaction, before it happens.
    async fn proving(
        &self,
        case_id: Uuid,
        holder: Option<&TokenHash>,
        will_compare: bool,
    ) -> Result<Proving, IdentityError> {
        let ctx = store::load_proof_context(&self.pool, case_id, holder.map(TokenHash::as_bytes))
            .await?
            .ok_or(IdentityError::NotFound)?;
        self.proving_from(ctx, will_compare).await
    }

    /// [`Self::proving`] of a context already read.
    async fn proving_from(
        &self,
        ctx: store::ProofContext,
        will_compare: bool,
    ) -> Result<Proving, IdentityError> {
        let case_id = ctx.case.id;
        match ctx.case.state {
            CaseState::AwaitingIdentity => {}
            CaseState::IdentityReview => return Err(IdentityError::Locked),
            CaseState::AwaitingStoreVisit => return Err(IdentityError::StoreVisitRequired),
            other => return Err(IdentityError::WrongState(other)),
        }
        let identity = ctx.identity.ok_or(IdentityError::NotFound)?;
        if will_compare && identity.subscriber_match.is_none() {
            // Every decryption of personal data is audited, before it happens: the
            // entry is committed (with those of concurrent gradings and proofs, one
            // take of the chain's lock for the burst) before this returns.
            self.audit
                .append(crate::audit_appender::OwnedEntry {
                    actor: Actor::system(SERVICE),
                    action: "identity.decrypt",
                    case_id: Some(case_id),
                    detail: serde_json::json!({
                        "fields": ["full_name", "id_number"],
                        "purpose": "subscriber_match",
                    }),
                    reason: Some("name and ID compared with the carrier's subscriber record"),
                })
                .await?;
        }
        Ok(Proving {
            msisdn: ctx.case.msisdn.clone(),
            case: ctx.case,
            identity,
            wrapped_key: ctx.wrapped_key,
            rules: ctx.rules,
            audited: will_compare,
        })
    }

    /// Sends a one-time code to a contact on file with the carrier. The answer is
    /// the same whether the number is a subscriber with a contact on file, has none,
    /// or is unknown to the carrier: every request takes a send from the case and
    /// from the number's daily budget.
    #[tracing::instrument(skip(self, holder), fields(case_id = %case_id))]
    pub async fn send_code(
        &self,
        case_id: Uuid,
        holder: TokenHash,
    ) -> Result<CodeSent, IdentityError> {
        let mut proving = self.proving(case_id, Some(&holder), true).await?;
        // The ladder first: a case whose tier asks for a store visit sends no code.
        let (tier, given) = self.ladder(&mut proving).await?;
        self.store_visit_first(&proving.case, tier, &given).await?;
        let Proving { case, msisdn, .. } = proving;
        // The case's send and the number's daily budget are taken in one transaction:
        // when the budget is spent, the case's send is not taken either.
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| IdentityError::Internal(e.into()))?;
        let Some(sends) = store::take_otp_send(&mut *tx, case_id, identity::MAX_OTP_SENDS).await?
        else {
            return Err(IdentityError::TooManyCodes);
        };
        let daily = number_budget::reserve_in(
            &mut tx,
            &Reserve {
                msisdn: msisdn.e164(),
                kind: BudgetKind::Code,
                case_id: Some(case_id),
                method: None,
                cause: None,
                limit: identity::MAX_OTP_PER_NUMBER_PER_DAY,
                window: identity::budget_window(),
            },
        )
        .await?;
        if matches!(daily, Reservation::Spent { .. }) {
            // Rolled back (now, giving the number's lock and the case's row back): the
            // case's send is not taken.
            tx.rollback()
                .await
                .map_err(|e| IdentityError::Internal(e.into()))?;
            return Err(IdentityError::TooManyCodes);
        }
        tx.commit()
            .await
            .map_err(|e| IdentityError::Internal(e.into()))?;
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
        match sent {
            Ok(sent) => {
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
            }
            // Told apart in the log only: the requester hears the same as for a code sent.
            Err(CarrierError::NoContactOnFile | CarrierError::NotFound) => {
                ::metrics::counter!("otp_not_sent_total", "why" => "no_contact_on_file")
                    .increment(1);
                tracing::info!("no contact on file (or unknown number): no code sent");
            }
            Err(e) => {
                // The carrier could not be reached: that says nothing about the number.
                store::return_otp_send(&self.pool, case_id).await?;
                return Err(carrier_failure(e));
            }
        }
        Ok(CodeSent {
            remaining_sends: identity::MAX_OTP_SENDS - sends,
        })
    }

    /// Asks the carrier whether the name and ID given at opening match the number's
    /// subscriber (the decryption was audited when `proving` was read), without
    /// recording the answer.
    async fn ask_match(&self, proving: &Proving) -> Result<bool, IdentityError> {
        if !proving.audited {
            return Err(IdentityError::Internal(anyhow::anyhow!(
                "the name and ID would be decrypted without an audit row"
            )));
        }
        // Under the case's data key (a finished case's may be destroyed by retention:
        // it is never asked about again, so that is an internal error here).
        let opened = crate::retention::open_identity_with_key(
            &self.pool,
            &self.keys,
            &proving.identity,
            proving.wrapped_key.as_deref(),
        )
        .await
        .map_err(|e| IdentityError::Internal(e.into()))?;
        let name =
            PersonName::parse(&opened.full_name).map_err(|e| IdentityError::Internal(e.into()))?;
        let id =
            ResidentId::parse(&opened.id_number).map_err(|e| IdentityError::Internal(e.into()))?;
        self.carrier
            .subscriber_matches(&proving.msisdn, &name, &id)
            .await
            .map_err(carrier_failure)
    }

    /// Whether the name and ID given at opening match the number's subscriber
    /// (asked of the carrier once, then remembered in the row and in `proving`).
    async fn name_id_match(&self, proving: &mut Proving) -> Result<bool, IdentityError> {
        if let Some(known) = proving.identity.subscriber_match {
            return Ok(known);
        }
        let matched = self.ask_match(proving).await?;
        store::record_subscriber_match(&self.pool, proving.case.id, matched).await?;
        proving.identity.subscriber_match = Some(matched);
        Ok(matched)
    }

    /// Judges one proof and moves the case when the policy says so.
    ///
    /// A slot of the number's budget of failed proofs is reserved before anything is
    /// asked of the carrier, so concurrent guesses cannot overshoot it; once it is
    /// spent, no proof on the number is judged (the right one included) and the case
    /// goes to a CS agent.
    #[tracing::instrument(skip(self, holder, proof), fields(case_id = %case_id, method = proof.method()))]
    pub async fn verify(
        &self,
        case_id: Uuid,
        holder: TokenHash,
        proof: Proof,
    ) -> Result<Verdict, IdentityError> {
        let offered = Offered::parse(proof);
        // A proof that does not parse is refused before the name and ID are opened.
        let mut proving = self
            .proving(case_id, Some(&holder), offered.is_ok())
            .await?;
        let offered = offered?;
        // The ladder before the budget: nothing online is judged for a case whose
        // tier asks for a store visit.
        let (tier, given) = self.ladder(&mut proving).await?;
        let (case, msisdn) = (proving.case.clone(), proving.msisdn.clone());
        self.store_visit_first(&case, tier, &given).await?;
        // The slot and, for a code, the code's check are taken in one transaction:
        // the check is counted before anything is compared, and only when the budget
        // granted a slot.
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| IdentityError::Internal(e.into()))?;
        let reserved = number_budget::reserve_in(
            &mut tx,
            &Reserve {
                msisdn: msisdn.e164(),
                kind: BudgetKind::Proof,
                case_id: Some(case_id),
                method: Some(offered.method()),
                cause: None,
                limit: i64::from(identity::MAX_FAILED_ATTEMPTS),
                window: identity::budget_window(),
            },
        )
        .await?;
        let (slot, under_check) = match reserved {
            Reservation::Granted { id, .. } => {
                let under_check = match &offered {
                    Offered::Otp(_) => {
                        store::count_otp_check(&mut *tx, case_id, identity::MAX_CHECKS_PER_CODE)
                            .await?
                    }
                    _ => None,
                };
                tx.commit()
                    .await
                    .map_err(|e| IdentityError::Internal(e.into()))?;
                (id, under_check)
            }
            // Nothing was written: the number's lock is given back at once (a dropped
            // transaction rolls back only when its connection is next flushed).
            Reservation::Spent { frees_at } => {
                tx.rollback()
                    .await
                    .map_err(|e| IdentityError::Internal(e.into()))?;
                self.escalate(&case).await?;
                ::metrics::counter!("identity_proofs_refused_total", "why" => "budget_spent")
                    .increment(1);
                return Err(IdentityError::BudgetSpent { frees_at });
            }
            // Every slot left is taken by a proof being judged right now (racing
            // requests): this one is not judged; it may be offered again in a moment.
            Reservation::Busy => {
                tx.rollback()
                    .await
                    .map_err(|e| IdentityError::Internal(e.into()))?;
                return Err(IdentityError::ProofInFlight);
            }
            Reservation::AlreadyPaid => {
                return Err(IdentityError::Internal(anyhow::anyhow!(
                    "a proof slot was reserved without a cause but found paid"
                )));
            }
        };
        match self
            .judge(&mut proving, offered, under_check, slot, tier)
            .await
        {
            Ok(verdict) => Ok(verdict),
            Err(e) => {
                // Not judged (the carrier could not be reached, a racing request won):
                // the slot does not count.
                number_budget::settle_proof(&self.pool, slot, ProofOutcome::Released).await?;
                Err(e)
            }
        }
    }

    /// Judges a proof whose budget slot `slot` is reserved, and settles the slot.
    /// For a code, `under_check` is the case's code whose check was counted with the
    /// slot (none when no code may be compared).
    async fn judge(
        &self,
        proving: &mut Proving,
        offered: Offered,
        under_check: Option<store::OtpUnderCheck>,
        slot: Uuid,
        tier: RiskTier,
    ) -> Result<Verdict, IdentityError> {
        let (case, msisdn) = (&proving.case.clone(), &proving.msisdn.clone());
        let case_id = case.id;
        let mut otp_id = None;
        let check = match &offered {
            Offered::Otp(code) => {
                let correct = under_check.is_some_and(|c| {
                    otp_id = Some(c.id);
                    self.keys.otp_matches(&case_id, code, &c.code_hash)
                });
                ProofCheck::Otp { correct }
            }
            Offered::ServicePassword(password) => {
                let correct = self
                    .carrier
                    .verify_service_password(msisdn, password)
                    .await
                    .map_err(carrier_failure)?;
                ProofCheck::ServicePassword { correct }
            }
            Offered::CallRecords(numbers) => {
                let matched = self
                    .carrier
                    .count_call_record_matches(msisdn, numbers)
                    .await
                    .map_err(carrier_failure)?;
                ProofCheck::CallRecords { matched }
            }
        };
        // Asked whatever the proof's outcome, so the answer's timing does not tell.
        let name_id = self.name_id_match(proving).await?;
        let decision = identity::decide_proof(name_id, check);
        let system = Actor::system(SERVICE);

        match decision {
            IdentityDecision::Verified | IdentityDecision::NeedsAgent => {
                let mut tx = self
                    .pool
                    .begin()
                    .await
                    .map_err(|e| IdentityError::Internal(e.into()))?;
                // The proof counts on the ladder; the row lock this takes serialises
                // two good proofs of one case, so the second sees the first.
                let next = match ladder::online_kind(offered.method()) {
                    Some(kind) if decision == IdentityDecision::Verified => {
                        let given = store::add_proof(&mut *tx, case_id, kind.as_str()).await?;
                        ladder::next_step(tier, &ladder::parse_given(&given))
                    }
                    // Call records: a CS agent confirms identity.
                    _ => NextStep::CallBack,
                };
                if let Some(id) = otp_id
                    && !store::consume_otp(&mut *tx, id).await?
                {
                    // Used by a concurrent request a moment ago (which committed first):
                    // that request is the one accepted.
                    drop(tx);
                    return Err(self.overtaken(case_id).await);
                }
                let (event, reason) = match &next {
                    NextStep::Proven => {
                        store::mark_identity_verified(&mut *tx, case_id, offered.method()).await?;
                        (CaseEvent::ProofsAccepted, "identity verified")
                    }
                    NextStep::MoreOnline(open) => {
                        // Good, counted, and more is asked: the case does not move.
                        number_budget::settle_proof(&mut *tx, slot, ProofOutcome::Accepted).await?;
                        let spent = self.failures(&mut *tx, msisdn).await?;
                        tx.commit()
                            .await
                            .map_err(|e| IdentityError::Internal(e.into()))?;
                        ::metrics::counter!("identity_ladder_proofs_total", "outcome" => "more_needed")
                            .increment(1);
                        return Ok(Verdict {
                            accepted: false,
                            remaining_attempts: identity::remaining_attempts(spent),
                            still_needed: ladder::rung_names(open)
                                .into_iter()
                                .map(|r| r.into_iter().map(str::to_owned).collect())
                                .collect(),
                        });
                    }
                    NextStep::CallBack if decision == IdentityDecision::NeedsAgent => (
                        CaseEvent::IdentityEscalated,
                        "call records given; a customer-service agent confirms identity",
                    ),
                    NextStep::CallBack => (
                        CaseEvent::IdentityEscalated,
                        "online proofs given; the risk tier asks a customer-service agent to call back the number on file",
                    ),
                    NextStep::StoreVisit => (
                        CaseEvent::StoreVisitRequired,
                        "online proofs given; the risk tier asks for the original ID card at a store",
                    ),
                };
                number_budget::settle_proof(&mut *tx, slot, ProofOutcome::Accepted).await?;
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
                // The answer's count, read before the commit (one transaction).
                let spent = match moved {
                    Ok(_) => {
                        let spent = self.failures(&mut *tx, msisdn).await?;
                        tx.commit()
                            .await
                            .map_err(|e| IdentityError::Internal(e.into()))?;
                        spent
                    }
                    // A concurrent proof moved the case first: only that request is
                    // accepted; this one is told where the case is now.
                    Err(StoreError::StaleVersion { .. } | StoreError::Refused(_)) => {
                        drop(tx);
                        return Err(self.overtaken(case_id).await);
                    }
                    // Another case for the number is past identity already.
                    Err(StoreError::OpenCaseExists) => {
                        drop(tx);
                        return Err(IdentityError::OtherCaseProven);
                    }
                    Err(e) => return Err(e.into()),
                };
                Ok(Verdict {
                    accepted: true,
                    remaining_attempts: identity::remaining_attempts(spent),
                    still_needed: Vec::new(),
                })
            }
            IdentityDecision::Failed => {
                number_budget::settle_proof(&self.pool, slot, ProofOutcome::Failed).await?;
                store::record_failed_attempt(&self.pool, case_id).await?;
                let spent = self.failures(&self.pool, msisdn).await?;
                if identity::locked_out(spent) {
                    self.escalate(case).await?;
                }
                Ok(Verdict {
                    accepted: false,
                    remaining_attempts: identity::remaining_attempts(spent),
                    still_needed: Vec::new(),
                })
            }
        }
    }

    /// The case's place on the ladder: the tier that decides its proofs (graded from
    /// the carrier's signals the first time it is needed) and the proofs given. The
    /// name/ID match and the tier graded with it are recorded in one statement.
    async fn ladder(
        &self,
        proving: &mut Proving,
    ) -> Result<(RiskTier, Vec<ProofKind>), IdentityError> {
        let given = ladder::parse_given(&proving.identity.proofs_given);
        if let Some(tier) = proving.identity.proof_tier {
            return Ok((tier, given));
        }
        let known = proving.identity.subscriber_match;
        let matched = match known {
            Some(known) => known,
            None => self.ask_match(proving).await?,
        };
        // Graded only for a requester who named the number's subscriber: anyone
        // else would learn from the answers how the carrier sees the number (a
        // police stop, fraud links). Their proofs fail on the name/ID anyway, so
        // for them the ladder is the lowest rung, as for every other number.
        let graded = if matched {
            Some(self.graded_tier(proving).await?)
        } else {
            None
        };
        let mut tier = RiskTier::Low;
        if known.is_none() || graded.is_some() {
            // If a concurrent grading set a tier first, or a re-score raised it, that one.
            let stored =
                store::record_match_and_tier(&self.pool, proving.case.id, matched, graded).await?;
            proving.identity.subscriber_match = Some(matched);
            proving.identity.proof_tier = stored;
            tier = stored.or(graded).unwrap_or(RiskTier::Low);
        }
        if graded.is_some() {
            ::metrics::counter!("identity_ladder_graded_total", "tier" => tier.as_str())
                .increment(1);
        }
        Ok((tier, given))
    }

    /// The tier the carrier's signals for the number give under the risk rules'
    /// current version (as the risk stage grades).
    async fn graded_tier(&self, proving: &Proving) -> Result<RiskTier, IdentityError> {
        let signals = self
            .carrier
            .risk_signals(&proving.msisdn)
            .await
            .map_err(carrier_failure)?;
        Ok(risk::assess_with(
            &risk::RiskSignals {
                fraud_linked_contacts: signals.fraud_linked_contacts,
                sms_peak_per_hour: signals.sms_peak_per_hour,
                intl_calls_24h: signals.intl_calls_24h,
                suspension_reason: signals.suspension_reason.clone(),
            },
            &proving.rules.thresholds,
        )
        .tier)
    }

    /// Grades a newly opened case's proof tier (the gateway asks right after the
    /// opening, so the status answer can say up front what will be needed), when the
    /// name and ID given match the number's subscriber (else nothing is graded or
    /// told). Grading again changes nothing.
    #[tracing::instrument(skip(self), fields(case_id = %case_id))]
    pub async fn grade(&self, case_id: Uuid) -> Result<RiskTier, IdentityError> {
        // Asked by the gateway right after it opened the case: no token to check.
        let proving = self.proving(case_id, None, true).await?;
        self.grade_proving(proving).await
    }

    /// [`Self::grade`] of several cases, answered in their order: their contexts
    /// read in one statement, then each graded, all at once (the audit entries of
    /// their decryptions go in together, the carrier is asked for each). Fails as a
    /// whole only when the read fails.
    #[tracing::instrument(skip_all, fields(cases = case_ids.len()))]
    pub async fn grade_many(
        &self,
        case_ids: &[Uuid],
    ) -> Result<Vec<Result<RiskTier, IdentityError>>, IdentityError> {
        let mut contexts: std::collections::HashMap<Uuid, store::ProofContext> =
            store::load_proof_contexts(&self.pool, case_ids, None)
                .await?
                .into_iter()
                .map(|c| (c.case.id, c))
                .collect();
        let grades = case_ids.iter().map(|id| {
            let ctx = contexts.remove(id);
            async move {
                let proving = self
                    .proving_from(ctx.ok_or(IdentityError::NotFound)?, true)
                    .await?;
                self.grade_proving(proving).await
            }
        });
        Ok(futures_util::future::join_all(grades).await)
    }

    async fn grade_proving(&self, mut proving: Proving) -> Result<RiskTier, IdentityError> {
        let (tier, given) = self.ladder(&mut proving).await?;
        let case = proving.case.clone();
        // Proven already (the original ID card seen at a store when the case was
        // opened): accepted once the carrier confirms the name and ID.
        if ladder::satisfied(tier, &given) && self.name_id_match(&mut proving).await? {
            self.accept_in_person(&case).await?;
            return Ok(tier);
        }
        // Nothing online is asked of an extreme-tier case: it waits for the visit now.
        match self.store_visit_first(&case, tier, &given).await {
            Ok(()) | Err(IdentityError::StoreVisitRequired) => Ok(tier),
            Err(e) => Err(e),
        }
    }

    /// Moves a case whose identity was proven in person at a store on to risk
    /// assessment (`proofs_accepted`).
    async fn accept_in_person(&self, case: &CaseRow) -> Result<(), IdentityError> {
        let system = Actor::system(SERVICE);
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| IdentityError::Internal(e.into()))?;
        store::mark_identity_verified(&mut *tx, case.id, "agent").await?;
        let moved = case_store::transition_in(
            &mut tx,
            TransitionRequest {
                case_id: case.id,
                expected_version: case.version,
                event: CaseEvent::ProofsAccepted,
                actor: &system,
                reason: Some("the original ID card was seen in person at a store"),
                fence: None,
                outbox: vec![],
            },
        )
        .await;
        match moved {
            Ok(_) => tx
                .commit()
                .await
                .map_err(|e| IdentityError::Internal(e.into())),
            // Moved already (a concurrent grading), or cancelled meanwhile.
            Err(StoreError::StaleVersion { .. } | StoreError::Refused(_)) => Ok(()),
            Err(StoreError::OpenCaseExists) => Err(IdentityError::OtherCaseProven),
            Err(e) => Err(e.into()),
        }
    }

    /// Refuses online proofs (and codes) for a case whose tier asks only for a store
    /// visit, and moves it to wait for the visit (`store_visit_required`).
    async fn store_visit_first(
        &self,
        case: &CaseRow,
        tier: RiskTier,
        given: &[ProofKind],
    ) -> Result<(), IdentityError> {
        if ladder::next_step(tier, given) != NextStep::StoreVisit {
            return Ok(());
        }
        let system = Actor::system(SERVICE);
        let moved = case_store::transition(
            &self.pool,
            TransitionRequest {
                case_id: case.id,
                expected_version: case.version,
                event: CaseEvent::StoreVisitRequired,
                actor: &system,
                reason: Some(
                    "the risk tier asks for the original ID card seen in person at a store",
                ),
                fence: None,
                outbox: vec![],
            },
        )
        .await;
        match moved {
            // Moved already (a concurrent request did it, or it was cancelled).
            Ok(_) | Err(StoreError::StaleVersion { .. } | StoreError::Refused(_)) => {
                Err(IdentityError::StoreVisitRequired)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Failed proofs on the number in the window (not those still being judged).
    async fn failures(
        &self,
        db: impl sqlx::PgExecutor<'_>,
        msisdn: &Msisdn,
    ) -> Result<i32, IdentityError> {
        let used = number_budget::window_use(
            db,
            msisdn.e164(),
            BudgetKind::Proof,
            identity::budget_window(),
        )
        .await?
        .used;
        Ok(i32::try_from(used).unwrap_or(i32::MAX))
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

    /// Sends the case to a CS agent: the number's attempts are used up.
    async fn escalate(&self, case: &CaseRow) -> Result<(), IdentityError> {
        let system = Actor::system(SERVICE);
        let moved = case_store::transition(
            &self.pool,
            TransitionRequest {
                case_id: case.id,
                expected_version: case.version,
                event: CaseEvent::IdentityEscalated,
                actor: &system,
                reason: Some(
                    "too many failed identity attempts; a customer-service agent checks identity",
                ),
                fence: None,
                outbox: vec![],
            },
        )
        .await;
        match moved {
            Ok(_) => {
                tracing::info!("identity attempts used up; case sent to a CS agent");
                Ok(())
            }
            // Moved already (a concurrent request escalated it, or it was cancelled).
            Err(StoreError::StaleVersion { .. } | StoreError::Refused(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn recovery_message(locale: &str, code: &str) -> String {
    if locale == "zh-CN" {
        format!(
            "【复机验证】您正在找回复机申请的凭证，验证码为 {code}，10分钟内有效。请勿告诉任何人。如非本人操作，请忽略本短信。"
        )
    } else {
        format!(
            "Code to recover your reactivation request: {code}. It expires in 10 minutes. Never share it with anyone. If you did not ask for it, ignore this message."
        )
    }
}

/// Whether `code` has the form of a one-time code (six ASCII digits).
fn six_digits(code: &str) -> bool {
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

/// Lost case tokens: a subscriber proves control of a contact on file again (a
/// one-time code) and gets a new token for the number's case past identity
/// verification, within the number's budgets of codes and failed proofs.
impl IdentityCases {
    /// Takes a recovery request for `msisdn`. Every request takes a code from the
    /// number's daily budget (spent: [`IdentityError::TooManyCodes`]); a code is
    /// sent only when the number has an open case past identity and the carrier
    /// has a contact on file. The answer does not say which: the same recovery id
    /// comes back for every number.
    #[tracing::instrument(skip_all)]
    pub async fn start_recovery(&self, msisdn: &str) -> Result<RecoveryStarted, IdentityError> {
        let msisdn = Msisdn::parse(msisdn).map_err(|_| {
            IdentityError::Invalid(
                "msisdn must be a mainland China mobile number in E.164 (+861…)".into(),
            )
        })?;
        let case = case_store::recovery::proven_open_case(&self.pool, msisdn.e164()).await?;
        let daily = number_budget::reserve(
            &self.pool,
            &Reserve {
                msisdn: msisdn.e164(),
                kind: BudgetKind::Code,
                case_id: case.as_ref().map(|(id, _)| *id),
                method: None,
                cause: None,
                limit: identity::MAX_OTP_PER_NUMBER_PER_DAY,
                window: identity::budget_window(),
            },
        )
        .await?;
        if matches!(daily, Reservation::Spent { .. }) {
            return Err(IdentityError::TooManyCodes);
        }
        let recovery_id = Uuid::now_v7();
        let mut code_hash = None;
        if let Some((case_id, locale)) = &case {
            let code = data_protection::one_time_code();
            let sent = self
                .carrier
                .send_message(
                    &msisdn,
                    MessageChannel::Any,
                    &recovery_message(locale, &code),
                    &recovery_id.to_string(),
                )
                .await;
            match sent {
                Ok(sent) => {
                    code_hash = Some(self.keys.otp_hash(&recovery_id, &code));
                    tracing::info!(%case_id, channel = sent.kind.as_str(), "recovery code sent");
                }
                Err(CarrierError::NoContactOnFile | CarrierError::NotFound) => {
                    ::metrics::counter!("otp_not_sent_total", "why" => "no_contact_on_file")
                        .increment(1);
                    tracing::info!(%case_id, "no contact on file: no recovery code sent");
                }
                // Answered like any other request: a 503 here only for numbers with a
                // case past identity would tell that the number has one.
                Err(e) => {
                    ::metrics::counter!("otp_not_sent_total", "why" => "carrier_failure")
                        .increment(1);
                    tracing::warn!(%case_id, error.message = %e, "carrier failed: no recovery code sent");
                }
            }
        }
        case_store::recovery::insert_recovery(
            &self.pool,
            &case_store::recovery::NewRecovery {
                id: recovery_id,
                msisdn: msisdn.e164(),
                case_id: case.map(|(id, _)| id),
                code_hash,
                expires_at: chrono::Utc::now() + identity::otp_lifetime(),
            },
        )
        .await?;
        Ok(RecoveryStarted { recovery_id })
    }

    /// Checks `code` against a recovery. A malformed code is refused before anything
    /// is reserved; otherwise the try takes a slot of the number's budget of failed
    /// proofs (as [`IdentityCases::verify`] does: spent → [`IdentityError::BudgetSpent`],
    /// every slot being judged → [`IdentityError::ProofInFlight`]). The right code,
    /// while the case is still open past identity, issues a new token (the old one
    /// stops working), in one transaction with the recovery used up, the slot settled
    /// and an audit entry. A wrong, expired or used code, and an unknown recovery,
    /// get the same `NotRecovered` answer.
    #[tracing::instrument(skip(self, code), fields(recovery_id = %recovery_id))]
    pub async fn finish_recovery(
        &self,
        recovery_id: Uuid,
        code: &str,
    ) -> Result<RecoveryOutcome, IdentityError> {
        if !six_digits(code) {
            return Err(IdentityError::Invalid("code must be six digits".into()));
        }
        let Some((msisdn, case_id)) =
            case_store::recovery::recovery_msisdn(&self.pool, recovery_id).await?
        else {
            // No number to budget: nothing reserved, the answer of a wrong code.
            return Ok(RecoveryOutcome::NotRecovered {
                remaining_attempts: 0,
            });
        };
        let slot = match number_budget::reserve(
            &self.pool,
            &Reserve {
                msisdn: &msisdn,
                kind: BudgetKind::Proof,
                case_id,
                method: Some("otp"),
                cause: None,
                limit: i64::from(identity::MAX_FAILED_ATTEMPTS),
                window: identity::budget_window(),
            },
        )
        .await?
        {
            Reservation::Granted { id, .. } => id,
            Reservation::Spent { frees_at } => {
                ::metrics::counter!("identity_proofs_refused_total", "why" => "budget_spent")
                    .increment(1);
                return Err(IdentityError::BudgetSpent { frees_at });
            }
            Reservation::Busy => return Err(IdentityError::ProofInFlight),
            Reservation::AlreadyPaid => {
                return Err(IdentityError::Internal(anyhow::anyhow!(
                    "a proof slot was reserved without a cause but found paid"
                )));
            }
        };
        match self.judge_recovery(recovery_id, code, &msisdn, slot).await {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                number_budget::settle_proof(&self.pool, slot, ProofOutcome::Released).await?;
                Err(e)
            }
        }
    }

    /// Compares the code of a recovery whose budget slot `slot` is reserved, and
    /// settles the slot.
    async fn judge_recovery(
        &self,
        recovery_id: Uuid,
        code: &str,
        msisdn: &str,
        slot: Uuid,
    ) -> Result<RecoveryOutcome, IdentityError> {
        let under_check = case_store::recovery::count_recovery_check(
            &self.pool,
            recovery_id,
            identity::MAX_CHECKS_PER_CODE,
        )
        .await?;
        let case_id = under_check.and_then(|c| {
            self.keys
                .otp_matches(&recovery_id, code, &c.code_hash)
                .then_some(c.case_id)
        });
        if let Some(case_id) = case_id {
            let issued = data_protection::issue_token();
            let mut tx = self
                .pool
                .begin()
                .await
                .map_err(|e| IdentityError::Internal(e.into()))?;
            let consumed = case_store::recovery::consume_recovery(&mut *tx, recovery_id).await?;
            let replaced = consumed
                && case_store::recovery::replace_token(&mut *tx, case_id, &issued.hash).await?;
            if replaced {
                number_budget::settle_proof(&mut *tx, slot, ProofOutcome::Accepted).await?;
                let system = Actor::system(SERVICE);
                case_store::audit::record(
                    &mut tx,
                    &case_store::audit::AuditEntry {
                        actor: &system,
                        action: "case.token_recovered",
                        case_id: Some(case_id),
                        detail: serde_json::json!({ "recovery_id": recovery_id, "proof": "otp" }),
                        reason: Some("lost case token: a one-time code to a contact on file was proven; the old token no longer works"),
                    },
                )
                .await?;
                tx.commit()
                    .await
                    .map_err(|e| IdentityError::Internal(e.into()))?;
                tracing::info!(%case_id, "case token recovered");
                return Ok(RecoveryOutcome::Recovered {
                    case_id,
                    case_token: issued.token.clone(),
                });
            }
            drop(tx);
            if consumed {
                // The right code, but the case is no longer open past identity: the
                // recovery is used up, the try does not count against the number.
                case_store::recovery::consume_recovery(&self.pool, recovery_id).await?;
                number_budget::settle_proof(&self.pool, slot, ProofOutcome::Released).await?;
                let spent = self.failures_of(msisdn).await?;
                return Ok(RecoveryOutcome::NotRecovered {
                    remaining_attempts: identity::remaining_attempts(spent),
                });
            }
            // Used a moment ago by a concurrent request (which committed first): only
            // that one recovers; this one is told what a wrong code is told.
        }
        number_budget::settle_proof(&self.pool, slot, ProofOutcome::Failed).await?;
        let spent = self.failures_of(msisdn).await?;
        Ok(RecoveryOutcome::NotRecovered {
            remaining_attempts: identity::remaining_attempts(spent),
        })
    }

    /// Failed proofs on the number (E.164) in the window.
    async fn failures_of(&self, msisdn: &str) -> Result<i32, IdentityError> {
        let used = number_budget::window_use(
            &self.pool,
            msisdn,
            BudgetKind::Proof,
            identity::budget_window(),
        )
        .await?
        .used;
        Ok(i32::try_from(used).unwrap_or(i32::MAX))
    }
}

/// A proof, checked for form (nothing is reserved or asked for a malformed one).
enum Offered {
    Otp(String),
    ServicePassword(String),
    CallRecords(Vec<Msisdn>),
}

impl Offered {
    fn parse(proof: Proof) -> Result<Self, IdentityError> {
        Ok(match proof {
            Proof::Otp { code } => {
                if !(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())) {
                    return Err(IdentityError::Invalid("code must be six digits".into()));
                }
                Self::Otp(code)
            }
            Proof::ServicePassword { password } => {
                if password.is_empty() || password.chars().count() > 64 || password.contains('\0') {
                    return Err(IdentityError::Invalid(
                        "password must be 1 to 64 characters".into(),
                    ));
                }
                Self::ServicePassword(password)
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
                Self::CallRecords(numbers)
            }
        })
    }

    fn method(&self) -> &'static str {
        match self {
            Self::Otp(_) => "otp",
            Self::ServicePassword(_) => "service_password",
            Self::CallRecords(_) => "call_records",
        }
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
