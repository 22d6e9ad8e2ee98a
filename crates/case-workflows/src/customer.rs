//! The subscriber's use cases on their case: open it (with Idempotency-Key replay),
//! read where it stands, cancel it. Material (explain, add evidence, appeal) is in
//! [`crate::material`], complaints in [`crate::complaints`], identity proofs in
//! [`crate::identity`].

use case_domain::{
    Actor, CaseEvent, CaseState, Channel, Locale, Msisdn, PersonName, ResidentId, hex, progress,
    risk::{Need, ReasonCode, RiskTier},
    subscriber_policy,
};
use case_store::{
    CaseRow, EventRow, IdempotencyBegin, NewCase, StoreError, TransitionRequest,
    identity::NewIdentity,
};
use chrono::{DateTime, Utc};
use data_protection::Keys;
use serde::{Serialize, de::DeserializeOwned};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{FieldError, WorkflowError, material};

/// The risk grading as the subscriber sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskShown {
    /// The tier.
    pub tier: RiskTier,
    /// Customer-safe reasons, most serious first (their words: `ReasonCode::text`).
    pub reasons: Vec<ReasonCode>,
}

/// Where a case stands, as the subscriber may see it (no personal data in clear).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusView {
    /// Case id.
    pub case_id: Uuid,
    /// Current state (its department follows from it).
    pub state: CaseState,
    /// Version.
    pub version: i32,
    /// The case's language (for the reasons' words).
    pub locale: Locale,
    /// What is needed now.
    pub needs: Vec<Need>,
    /// Expected completion, when a department has the case.
    pub eta: Option<DateTime<Utc>>,
    /// The suspended number, masked.
    pub msisdn_masked: String,
    /// The risk grading, once made.
    pub risk: Option<RiskShown>,
    /// The contacts the carrier flagged, masked.
    pub flagged_contacts: Vec<String>,
    /// Explanations sent.
    pub explanations: i64,
    /// Evidence files uploaded.
    pub evidence: i64,
    /// Every hand-off so far, oldest first.
    pub timeline: Vec<EventRow>,
    /// Opened at.
    pub created_at: DateTime<Utc>,
    /// The departments the case passes, with typical times (see [`crate::progress`]).
    pub route: Vec<case_domain::route::Step>,
    /// The subscriber's request for expedited handling, if made.
    pub expedite: Option<case_store::expedite::ExpediteRow>,
    /// While the case waits for identity proofs: what its tier asks (the ladder).
    pub identity_proofs: Option<IdentityProofs>,
}

/// What the verification ladder asks of a case waiting for identity proofs, told up
/// front: the open rungs (each "any one of these"), the proofs given, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityProofs {
    /// The rungs still open.
    pub needed: Vec<Vec<&'static str>>,
    /// The proofs given so far.
    pub given: Vec<&'static str>,
    /// Why the tier asks this, in the case's language (`None` until the carrier's
    /// signals were read: then the lowest tier's rung is shown).
    pub why: Option<&'static str>,
}

impl IdentityProofs {
    /// From the case's place on the ladder.
    pub fn of(row: &case_store::identity::LadderRow, locale: Locale) -> Self {
        let given = case_domain::ladder::parse_given(&row.proofs_given);
        let tier = row.proof_tier.unwrap_or(RiskTier::Low);
        Self {
            needed: case_domain::ladder::rung_names(&case_domain::ladder::outstanding(
                tier, &given,
            )),
            given: given.iter().map(|k| k.as_str()).collect(),
            why: row
                .proof_tier
                .map(|t| case_domain::ladder::why(t, locale.as_str())),
        }
    }
}

/// The subscriber's view of a case from what was read about it (no I/O).
pub fn status_view(
    case: &CaseRow,
    timeline: Vec<EventRow>,
    assessment: Option<case_store::risk::AssessmentRow>,
    counts: case_store::material::MaterialCounts,
    eta: Option<DateTime<Utc>>,
) -> StatusView {
    let tier: Option<RiskTier> = assessment.as_ref().map(|a| a.tier);
    // Re-scored as material arrives: the stored needs win over the tier's.
    let stored_needs = assessment
        .as_ref()
        .map(|a| material::stored_needs(&a.needs));
    let flagged_contacts = assessment
        .as_ref()
        .map(material::masked_flagged_contacts)
        .unwrap_or_default();
    let risk = assessment.map(|a| RiskShown {
        tier: a.tier,
        reasons: a
            .reason_codes
            .iter()
            .filter_map(|c| ReasonCode::parse(c))
            .collect(),
    });
    // Typical times under the default SLAs; `read_status` uses the live figures.
    let route = crate::progress::route_with(
        &case_domain::sla::SlaConfig::default(),
        case.state,
        tier,
        &timeline,
        &Default::default(),
    );
    StatusView {
        case_id: case.id,
        state: case.state,
        version: case.version,
        locale: case.locale,
        needs: progress::needs_assessed(case.state, tier, stored_needs.as_deref()),
        eta,
        msisdn_masked: case.msisdn.masked(),
        risk,
        flagged_contacts,
        explanations: counts.explanations,
        evidence: counts.evidence,
        timeline,
        created_at: case.created_at,
        route,
        expedite: None,
        identity_proofs: None,
    }
}

/// Reads where `case` stands now, with its ETA under `sla`.
pub async fn read_status(
    pool: &PgPool,
    sla: &case_domain::sla::SlaConfig,
    case: &CaseRow,
) -> Result<StatusView, WorkflowError> {
    // One read-only transaction: one commit, and the three reads see one snapshot.
    let mut tx = case_store::begin_snapshot(pool).await?;
    let timeline = case_store::timeline(&mut *tx, case.id).await?;
    let assessment = case_store::risk::latest_assessment(&mut *tx, case.id).await?;
    let counts = case_store::material::count_material(&mut *tx, case.id).await?;
    let expedite = case_store::expedite::of_case(&mut *tx, case.id).await?;
    // Read only while proofs are asked: other states' answers cost nothing more.
    let ladder = if case.state == CaseState::AwaitingIdentity {
        case_store::identity::ladder(&mut *tx, case.id).await?
    } else {
        None
    };
    tx.commit().await?;
    let now = Utc::now();
    let eta = crate::eta::case_eta(pool, sla, case, &timeline, now).await;
    let tier = assessment.as_ref().map(|a| a.tier);
    let route = crate::progress::route(pool, sla, case.state, tier, &timeline, now).await;
    Ok(StatusView {
        route,
        expedite,
        identity_proofs: ladder.map(|l| IdentityProofs::of(&l, case.locale)),
        ..status_view(case, timeline, assessment, counts, eta)
    })
}

/// The case a case token opens, given the token's hash (`None`: no such case, or
/// a wrong token).
pub async fn case_for_token(
    pool: &PgPool,
    case_id: Uuid,
    token: &data_protection::TokenHash,
) -> Result<Option<CaseRow>, WorkflowError> {
    Ok(case_store::load_case_by_token(pool, case_id, token.as_bytes()).await?)
}

/// A subscriber asks for their number back: the fields as typed.
#[derive(Debug, Clone)]
pub struct OpenCaseRequest {
    /// The suspended number.
    pub msisdn: String,
    /// Full name as on the ID card.
    pub full_name: String,
    /// Resident ID number.
    pub id_number: String,
    /// web, app, hotline or store (default web).
    pub channel: Option<String>,
    /// zh-CN or en (default zh-CN).
    pub locale: Option<String>,
}

struct ValidOpen {
    msisdn: Msisdn,
    name: PersonName,
    id: ResidentId,
    channel: Channel,
    locale: Locale,
}

fn validate(req: OpenCaseRequest) -> Result<ValidOpen, WorkflowError> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| errors.push(FieldError::new(field, message));
    let msisdn = Msisdn::parse(&req.msisdn)
        .map_err(|e| err("msisdn", e.to_string()))
        .ok();
    let name = PersonName::parse(&req.full_name)
        .map_err(|e| err("full_name", e.to_string()))
        .ok();
    let id = ResidentId::parse(&req.id_number)
        .map_err(|e| err("id_number", e.to_string()))
        .ok();
    let channel = req
        .channel
        .as_deref()
        .map_or(Ok(subscriber_policy::DEFAULT_CHANNEL), Channel::parse);
    if channel.is_err() {
        err(
            "channel",
            "channel must be one of web, app, hotline, store".into(),
        );
    }
    let locale = req
        .locale
        .as_deref()
        .map_or(Ok(subscriber_policy::DEFAULT_LOCALE), Locale::parse);
    if locale.is_err() {
        err("locale", "locale must be zh-CN or en".into());
    }
    match (msisdn, name, id, channel, locale) {
        (Some(msisdn), Some(name), Some(id), Ok(channel), Ok(locale)) if errors.is_empty() => {
            Ok(ValidOpen {
                msisdn,
                name,
                id,
                channel,
                locale,
            })
        }
        _ => Err(WorkflowError::Invalid(errors)),
    }
}

/// A case just opened.
#[derive(Debug, Clone)]
pub struct CaseOpened {
    /// The case token: shown once, never stored in clear.
    pub token: String,
    /// The case as it now stands.
    pub status: StatusView,
}

/// A retry key for opening a case, and the fingerprint of the request it came with.
#[derive(Debug, Clone, Copy)]
pub struct RetryKey<'a> {
    /// The key as sent.
    pub key: &'a str,
    /// SHA-256 of the canonical request.
    pub fingerprint: [u8; 32],
}

/// What opening a case did: `A` is the caller's answer to a new case, `R` what it
/// reads a replayed one as.
#[derive(Debug, Clone, PartialEq)]
pub enum Opening<A, R> {
    /// A new case; the answer to give.
    Opened(A),
    /// The key's first request opened it: its answer again (with the token).
    Replayed {
        /// The first answer's status.
        status: u16,
        /// The first answer.
        answer: R,
    },
    /// The key was used with another request: nothing done.
    KeyReused,
    /// The key's first request is still running: nothing done.
    KeyInFlight,
}

const OPEN_SCOPE: &str = "POST /v1/cases";
/// The status of the stored answer to an opening.
const CREATED: u16 = 201;

/// Opens a case. With a retry key, the answer `answer` makes of the new case is
/// kept (its `case_token` field only encrypted) and given again to a retry with
/// the same key and request. Never says whether the name and ID match the number.
pub async fn open_case<A, R, F>(
    pool: &PgPool,
    keys: &Keys,
    request: OpenCaseRequest,
    retry: Option<RetryKey<'_>>,
    answer: F,
) -> Result<Opening<A, R>, WorkflowError>
where
    A: Serialize,
    R: DeserializeOwned,
    F: FnOnce(&CaseOpened) -> A,
{
    open_case_by(pool, keys, request, retry, Opener::Subscriber, answer).await
}

/// Who opens a case: the subscriber, or an agent on their behalf
/// ([`crate::assisted`]), whose opening also records itself, sends the token to the
/// contact on file and is audited, in the same transaction.
pub(crate) enum Opener<'a> {
    /// The subscriber (the customer API).
    Subscriber,
    /// An agent on the subscriber's behalf.
    Agent(&'a crate::assisted::AgentOpening<'a>),
}

impl Opener<'_> {
    /// The Idempotency-Key scope: keys are per operation, and an agent's per agent.
    fn scope(&self) -> String {
        match self {
            Self::Subscriber => OPEN_SCOPE.to_owned(),
            Self::Agent(by) => format!("{} {}", crate::assisted::OPEN_SCOPE, by.agent.id),
        }
    }
}

/// [`open_case`] for `opener`: the same validation, idempotency and writes.
pub(crate) async fn open_case_by<A, R, F>(
    pool: &PgPool,
    keys: &Keys,
    request: OpenCaseRequest,
    retry: Option<RetryKey<'_>>,
    opener: Opener<'_>,
    answer: F,
) -> Result<Opening<A, R>, WorkflowError>
where
    A: Serialize,
    R: DeserializeOwned,
    F: FnOnce(&CaseOpened) -> A,
{
    let valid = validate(request)?;
    let scope = opener.scope();
    if let Some(retry) = retry {
        match case_store::begin_idempotent(pool, &scope, retry.key, &retry.fingerprint).await? {
            IdempotencyBegin::Started => {}
            IdempotencyBegin::Replay { status, body } => {
                let answer = reveal_token(keys, body)?;
                return Ok(Opening::Replayed { status, answer });
            }
            IdempotencyBegin::Mismatch => return Ok(Opening::KeyReused),
            IdempotencyBegin::InFlight => return Ok(Opening::KeyInFlight),
        }
    }
    let opened = create(pool, keys, valid, retry.map(|r| r.key), &opener, answer).await;
    if opened.is_err()
        && let Some(retry) = retry
    {
        // Nothing was done: a retry with the same key runs again.
        case_store::forget_idempotent(pool, &scope, retry.key).await?;
    }
    Ok(Opening::Opened(opened?))
}

async fn create<A, F>(
    pool: &PgPool,
    keys: &Keys,
    valid: ValidOpen,
    key: Option<&str>,
    opener: &Opener<'_>,
    answer: F,
) -> Result<A, WorkflowError>
where
    A: Serialize,
    F: FnOnce(&CaseOpened) -> A,
{
    let case_id = Uuid::now_v7();
    let token = data_protection::issue_token();
    // The personal data is sealed under the case's own data key, stored only wrapped
    // by the master secret (envelope encryption: retention destroys the key).
    let data_key = data_protection::CaseKey::generate();
    let wrapped_key = keys.wrap_case_key(&data_key, &case_id);
    let identity = NewIdentity {
        full_name_enc: data_key.encrypt(valid.name.expose(), &case_id),
        id_number_enc: data_key.encrypt(valid.id.expose(), &case_id),
        full_name_masked: valid.name.masked(),
        id_number_last4: valid.id.last_four().to_owned(),
    };
    let new = NewCase {
        id: case_id,
        msisdn: valid.msisdn,
        channel: valid.channel,
        locale: valid.locale,
        token_hash: token.hash,
    };
    let actor = match opener {
        Opener::Subscriber => Actor::customer(),
        Opener::Agent(by) => by.actor(),
    };
    let sealed = case_store::Sealed {
        wrapped_key: &wrapped_key,
        identity: &identity,
    };
    if key.is_none()
        && let Opener::Subscriber = opener
    {
        // Nothing else is written with it: the opening's one statement (case, event,
        // sealed identity, notification) commits on its own, one round trip.
        let mut conn = pool.acquire().await?;
        let (case, opened) =
            case_store::create_sealed_case(&mut conn, &new, &actor, sealed).await?;
        drop(conn);
        let given = answer(&CaseOpened {
            token: token.token,
            status: status_view(&case, vec![opened], None, Default::default(), None),
        });
        tracing::info!(case_id = %case_id, "case opened");
        return Ok(given);
    }
    let mut tx = pool.begin().await?;
    let (case, opened) = case_store::create_sealed_case(&mut tx, &new, &actor, sealed).await?;
    if let Opener::Agent(by) = opener {
        // The token goes to the contact on file, never into the answer.
        crate::assisted::record_opening(&mut tx, keys, by, &case, &token.token).await?;
        if by.check.verifies_identity() {
            // The original ID card seen in person at a store: the ladder's strongest
            // proof. The identity service accepts it once the carrier confirms the
            // name and ID (its grading right after the opening).
            case_store::identity::add_proof(
                &mut *tx,
                case_id,
                case_domain::ladder::ProofKind::InPersonId.as_str(),
            )
            .await?;
        }
    }
    // The log as written: its one `opened` row (nothing above adds an event).
    let status = status_view(&case, vec![opened], None, Default::default(), None);
    let given = answer(&CaseOpened {
        token: token.token.clone(),
        status,
    });
    if let Some(key) = key {
        let mut stored = serde_json::to_value(&given).map_err(anyhow::Error::from)?;
        if let Opener::Subscriber = opener {
            // The stored answer is replayed to retries, but the token is kept only encrypted.
            stored["case_token"] = serde_json::Value::Null;
            stored["case_token_enc"] =
                serde_json::json!(hex(&keys.encrypt(&token.token, &case_id)));
        }
        stored["case_id"] = serde_json::json!(case_id);
        case_store::complete_idempotent(&mut *tx, &opener.scope(), key, CREATED, &stored).await?;
    }
    tx.commit().await?;
    tracing::info!(case_id = %case_id, "case opened");
    Ok(given)
}

/// Puts the decrypted case token back into a stored opening answer.
fn reveal_token<R: DeserializeOwned>(
    keys: &Keys,
    mut body: serde_json::Value,
) -> Result<R, WorkflowError> {
    if let Some(sealed) = body
        .get("case_token_enc")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
    {
        let case_id: Uuid = body["case_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("stored answer without case_id"))?;
        let bytes: Option<Vec<u8>> = (0..sealed.len())
            .step_by(2)
            .map(|i| {
                sealed
                    .get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        let token = keys
            .decrypt(&bytes.unwrap_or_default(), &case_id)
            .map_err(|e| WorkflowError::Internal(e.into()))?;
        if let Some(map) = body.as_object_mut() {
            map.remove("case_token_enc");
            map.insert("case_token".into(), serde_json::Value::String(token));
        }
    }
    Ok(serde_json::from_value(body).map_err(anyhow::Error::from)?)
}

/// The subscriber withdraws the request; not possible once provisioning has started.
pub async fn cancel(
    pool: &PgPool,
    sla: &case_domain::sla::SlaConfig,
    case: &CaseRow,
) -> Result<StatusView, WorkflowError> {
    let customer = Actor::customer();
    let moved = case_store::transition(
        pool,
        TransitionRequest {
            case_id: case.id,
            expected_version: case.version,
            event: CaseEvent::Cancelled,
            actor: &customer,
            reason: Some("cancelled by the subscriber"),
            fence: None,
            outbox: vec![],
        },
    )
    .await;
    let moved = match moved {
        Ok(done) => done.case,
        Err(StoreError::Refused(_)) => {
            let refusal = subscriber_policy::cancel_refusal(case.state);
            return Err(WorkflowError::Refused {
                code: refusal.code(),
                detail: refusal.to_string(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    read_status(pool, sla, &moved).await
}
