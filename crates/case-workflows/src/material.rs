//! The subscriber's material for a risk-graded review: explanations of flagged
//! contacts, evidence files, and the one appeal of a rejection.
//!
//! Material is accepted while a review is open (see
//! [`case_domain::material::accepts_material`]). In the transaction that stores it,
//! the case row is locked; when an agent was waiting for the subscriber
//! (`awaiting_customer_*`) the material is their answer and the case goes back to
//! the asking state (`customer_responded`); and the latest risk assessment is
//! re-scored (same tier and reasons, the needs still open), so the status shows what
//! is still needed.
//!
//! Crypto-shredding: material is sealed before it is stored, under a data key of the
//! case per kind of material ([`MaterialKind`]: evidence; explanations, which
//! include the appeal statement), made in the transaction that stores the first
//! material of its kind and stored only wrapped by the master secrets
//! (`case_material_keys`). An evidence file is sealed as bytes (the evidence id as
//! associated data), an explanation's statement and counterparties as one JSON
//! document (the explanation id), the appeal statement under an id derived from the
//! case id ([`appeal_row_id`]). Readers open it ([`read_explanations`],
//! [`open_evidence`], [`read_appeal`]); rows stored before sealing existed are read
//! in clear; once retention destroyed a kind's key they say when.

use case_domain::{
    Actor, CaseEvent, CaseState, Msisdn, hex,
    material::{self, ContentRefusal},
    progress,
    risk::Need,
    subscriber_policy,
};
use case_store::{
    CaseRow, TransitionRequest,
    material::{Counterparty, EvidenceStored, ExplanationBody, KeyKind, StoredEvidence},
    risk::AssessmentRow,
};
use chrono::{DateTime, Utc};
use data_protection::{CaseKey, Keys, MaterialKind, derived_id};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{FieldError, WorkflowError, customer::StatusView};

pub use case_domain::material::mask_counterparty as mask_number;

/// The flagged contacts recorded in an assessment (older rows hold only a count).
pub fn flagged_contacts(assessment: &AssessmentRow) -> Vec<String> {
    assessment.signals.flagged_contacts.clone()
}

/// The flagged contacts of an assessment, masked for the subscriber.
pub fn masked_flagged_contacts(assessment: &AssessmentRow) -> Vec<String> {
    flagged_contacts(assessment)
        .iter()
        .map(|n| mask_number(n))
        .collect()
}

/// The needs stored with an assessment.
pub fn stored_needs(needs: &[String]) -> Vec<Need> {
    needs.iter().filter_map(|n| Need::parse(n)).collect()
}

fn names(needs: &[Need]) -> Vec<String> {
    needs.iter().map(|n| n.as_str().to_owned()).collect()
}

fn not_accepting(state: CaseState) -> WorkflowError {
    WorkflowError::Refused {
        code: "material_not_accepted",
        detail: format!(
            "The case is {state}: explanations and evidence are accepted only while it is under review or waiting for your answer."
        ),
    }
}

/// Whether `case` takes material now (checked again, locked, when it is stored).
pub fn check_accepts_material(case: &CaseRow) -> Result<(), WorkflowError> {
    if material::accepts_material(case.state) {
        Ok(())
    } else {
        Err(not_accepting(case.state))
    }
}

/// One counterparty the subscriber explains, as typed.
#[derive(Debug, Clone)]
pub struct CounterpartyInput {
    /// The counterparty's number.
    pub msisdn: String,
    /// Who it is to the subscriber.
    pub relation: String,
    /// Why they were in touch.
    pub purpose: String,
}

/// An explanation of the flagged traffic, as typed.
#[derive(Debug, Clone)]
pub struct ExplanationInput {
    /// What the subscriber says.
    pub statement: String,
    /// The counterparties explained.
    pub counterparties: Vec<CounterpartyInput>,
}

/// A checked explanation: the statement trimmed, the numbers in E.164.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidExplanation {
    /// The statement.
    pub statement: String,
    /// The counterparties.
    pub counterparties: Vec<Counterparty>,
}

/// Checks an explanation; every invalid field is named (never with its value).
pub fn validate_explanation(req: ExplanationInput) -> Result<ValidExplanation, WorkflowError> {
    let mut errors = Vec::new();
    let mut err = |field: String, message: String| errors.push(FieldError { field, message });
    let statement = material::check_text(&req.statement, material::MAX_STATEMENT_CHARS)
        .map_err(|m| err("statement".into(), m))
        .ok()
        .map(str::to_owned);
    if req.counterparties.len() > material::MAX_COUNTERPARTIES {
        err(
            "counterparties".into(),
            format!("at most {} counterparties", material::MAX_COUNTERPARTIES),
        );
    }
    let mut counterparties = Vec::new();
    for (i, c) in req
        .counterparties
        .iter()
        .take(material::MAX_COUNTERPARTIES)
        .enumerate()
    {
        let msisdn = Msisdn::parse(&c.msisdn)
            .map_err(|e| err(format!("counterparties[{i}].msisdn"), e.to_string()))
            .ok();
        let relation = material::check_text(&c.relation, material::MAX_LABEL_CHARS)
            .map_err(|m| err(format!("counterparties[{i}].relation"), m))
            .ok();
        let purpose = material::check_text(&c.purpose, material::MAX_LABEL_CHARS)
            .map_err(|m| err(format!("counterparties[{i}].purpose"), m))
            .ok();
        if let (Some(msisdn), Some(relation), Some(purpose)) = (msisdn, relation, purpose) {
            counterparties.push(Counterparty {
                msisdn: msisdn.e164().to_owned(),
                relation: relation.to_owned(),
                purpose: purpose.to_owned(),
            });
        }
    }
    match statement {
        Some(statement) if errors.is_empty() => Ok(ValidExplanation {
            statement,
            counterparties,
        }),
        _ => Err(WorkflowError::Invalid(errors)),
    }
}

fn store_kind(kind: MaterialKind) -> KeyKind {
    match kind {
        MaterialKind::Evidence => KeyKind::Evidence,
        MaterialKind::Explanations => KeyKind::Explanations,
    }
}

/// The associated data of a case's sealed appeal statement (the appeal has no row
/// id of its own).
pub fn appeal_row_id(case_id: &Uuid) -> Uuid {
    derived_id(case_id, "appeal")
}

/// The case's data key for `kind`, made and stored (wrapped) when it has none yet:
/// in the caller's transaction, which holds the case row locked (two writers racing
/// would still agree: the store keeps the first key and returns it).
async fn key_for_writing(
    conn: &mut PgConnection,
    keys: &Keys,
    case_id: Uuid,
    kind: MaterialKind,
) -> Result<CaseKey, WorkflowError> {
    let stored =
        match case_store::material::load_material_key(&mut *conn, case_id, store_kind(kind)).await?
        {
            Some(wrapped) => wrapped,
            None => {
                let wrapped = keys.wrap_material_key(&CaseKey::generate(), &case_id, kind);
                case_store::material::insert_material_key(
                    conn,
                    case_id,
                    store_kind(kind),
                    kind.wrap_id(&case_id),
                    &wrapped,
                )
                .await?
            }
        };
    unwrap_key(keys, &stored, case_id, kind)
}

fn unwrap_key(
    keys: &Keys,
    wrapped: &[u8],
    case_id: Uuid,
    kind: MaterialKind,
) -> Result<CaseKey, WorkflowError> {
    keys.unwrap_material_key(wrapped, &case_id, kind)
        .map_err(|e| {
            WorkflowError::Internal(anyhow::anyhow!(
                "the {} key of case {case_id} does not open: {e}",
                kind.as_str()
            ))
        })
}

/// A case's data key for reading `kind`: `Ok(key)`, or, when it has none, the
/// refusal to show: deleted by retention on a date, or an inconsistency.
async fn key_for_reading(
    conn: &mut PgConnection,
    keys: &Keys,
    case_id: Uuid,
    kind: MaterialKind,
) -> Result<Result<CaseKey, DateTime<Utc>>, WorkflowError> {
    if let Some(wrapped) =
        case_store::material::load_material_key(&mut *conn, case_id, store_kind(kind)).await?
    {
        return Ok(Ok(unwrap_key(keys, &wrapped, case_id, kind)?));
    }
    match deleted_on(conn, case_id, kind).await? {
        Some(on) => Ok(Err(on)),
        None => Err(WorkflowError::Internal(anyhow::anyhow!(
            "case {case_id} has sealed {} but no key for it",
            kind.as_str()
        ))),
    }
}

/// When retention deleted the case's material of `kind`, if it did.
async fn deleted_on(
    conn: &mut PgConnection,
    case_id: Uuid,
    kind: MaterialKind,
) -> Result<Option<DateTime<Utc>>, WorkflowError> {
    Ok(case_store::retention::deletions(&mut *conn, case_id)
        .await?
        .and_then(|d| match kind {
            MaterialKind::Evidence => d.evidence_deleted_at,
            MaterialKind::Explanations => d.explanations_deleted_at,
        }))
}

/// The refusal when retention deleted the material asked for.
pub fn deleted(kind: MaterialKind, on: DateTime<Utc>) -> WorkflowError {
    WorkflowError::Refused {
        code: "personal_data_deleted",
        detail: format!(
            "the {} of this case were deleted on {}",
            kind.as_str(),
            on.format("%Y-%m-%d")
        ),
    }
}

fn unreadable(what: &str, id: Uuid) -> WorkflowError {
    WorkflowError::Internal(anyhow::anyhow!("{what} {id} does not open"))
}

/// What an explanation's sealed document holds.
#[derive(Serialize, Deserialize)]
struct SealedExplanation {
    statement: String,
    counterparties: Vec<Counterparty>,
}

/// An explanation, opened.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenedExplanation {
    /// Explanation id.
    pub id: Uuid,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// The statement (empty when deleted).
    pub statement: String,
    /// The counterparties explained (none when deleted).
    pub counterparties: Vec<Counterparty>,
    /// Retention deleted it (with its key) on this date: nothing could be opened.
    pub deleted_on: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for OpenedExplanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedExplanation")
            .field("id", &self.id)
            .field("counterparties", &self.counterparties)
            .field("deleted_on", &self.deleted_on)
            .finish_non_exhaustive()
    }
}

/// The case's explanations, oldest first, opened (sealed ones under the case's
/// explanations key, older ones as stored in clear).
pub async fn read_explanations(
    conn: &mut PgConnection,
    keys: &Keys,
    case_id: Uuid,
) -> Result<Vec<OpenedExplanation>, WorkflowError> {
    let rows = case_store::material::list_explanations(&mut *conn, case_id).await?;
    let mut key = None;
    let mut opened = Vec::with_capacity(rows.len());
    for row in rows {
        let (statement, counterparties, deleted_on) = match row.body {
            ExplanationBody::Clear {
                statement,
                counterparties,
            } => (statement, counterparties, None),
            ExplanationBody::Sealed(sealed) => {
                if key.is_none() {
                    key = Some(
                        key_for_reading(conn, keys, case_id, MaterialKind::Explanations).await?,
                    );
                }
                match key.as_ref().expect("just loaded") {
                    Ok(key) => {
                        let body: SealedExplanation = key
                            .decrypt_bytes(&sealed, &row.id)
                            .ok()
                            .and_then(|json| serde_json::from_slice(&json).ok())
                            .ok_or_else(|| unreadable("explanation", row.id))?;
                        (body.statement, body.counterparties, None)
                    }
                    Err(on) => (String::new(), Vec::new(), Some(*on)),
                }
            }
        };
        opened.push(OpenedExplanation {
            id: row.id,
            created_at: row.created_at,
            statement,
            counterparties,
            deleted_on,
        });
    }
    Ok(opened)
}

/// Every distinct counterparty number named in the explanations, sorted.
pub fn explained_contacts(explanations: &[OpenedExplanation]) -> Vec<String> {
    let mut numbers: Vec<String> = explanations
        .iter()
        .flat_map(|e| e.counterparties.iter().map(|c| c.msisdn.clone()))
        .collect();
    numbers.sort();
    numbers.dedup();
    numbers
}

/// An evidence file's content in clear: opened under the case's evidence key when
/// sealed. After retention destroyed the key, the refusal says when.
pub async fn open_evidence(
    conn: &mut PgConnection,
    keys: &Keys,
    case_id: Uuid,
    evidence_id: Uuid,
    stored: StoredEvidence,
) -> Result<Vec<u8>, WorkflowError> {
    if !stored.sealed {
        return Ok(stored.content);
    }
    match key_for_reading(conn, keys, case_id, MaterialKind::Evidence).await? {
        Ok(key) => key
            .decrypt_bytes(&stored.content, &evidence_id)
            .map_err(|_| unreadable("evidence file", evidence_id)),
        Err(on) => Err(deleted(MaterialKind::Evidence, on)),
    }
}

/// The case's appeal statement, opened, if it was appealed (`[deleted]` after
/// retention).
pub async fn read_appeal(
    conn: &mut PgConnection,
    keys: &Keys,
    case_id: Uuid,
) -> Result<Option<String>, WorkflowError> {
    let Some(appeal) = case_store::material::load_appeal(&mut *conn, case_id).await? else {
        return Ok(None);
    };
    match (appeal.statement, appeal.statement_sealed) {
        (Some(statement), _) => Ok(Some(statement)),
        (None, Some(sealed)) => {
            match key_for_reading(conn, keys, case_id, MaterialKind::Explanations).await? {
                Ok(key) => key
                    .decrypt(&sealed, &appeal_row_id(&case_id))
                    .map(Some)
                    .map_err(|_| unreadable("appeal of case", case_id)),
                Err(on) => Err(deleted(MaterialKind::Explanations, on)),
            }
        }
        (None, None) => Err(WorkflowError::Internal(anyhow::anyhow!(
            "the appeal of case {case_id} has no statement"
        ))),
    }
}

/// Where sealing the material stored before sealing existed stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealProgress {
    /// Cases done.
    pub cases: i64,
    /// Evidence files sealed.
    pub evidence: i64,
    /// Explanations sealed.
    pub explanations: i64,
    /// Appeal statements sealed.
    pub appeals: i64,
}

/// Seals the material stored in clear before sealing existed (`reactivation keys
/// envelope --material`): case by case in id order, `batch` cases per transaction,
/// each case's row locked (material of the case is not written meanwhile) and its
/// key of each kind made if it has none; the rows are rewritten in place. Resumable
/// (only clear rows are selected) and idempotent; calls `progress` after each batch.
pub async fn seal_clear_material(
    pool: &PgPool,
    keys: &Keys,
    batch: i64,
    mut progress: impl FnMut(&SealProgress),
) -> Result<SealProgress, WorkflowError> {
    let batch = batch.clamp(1, 10_000);
    let mut state = SealProgress::default();
    let mut after = Uuid::nil();
    loop {
        let mut tx = pool.begin().await?;
        let cases = case_store::material::cases_with_clear_material(&mut *tx, after, batch).await?;
        let Some(last) = cases.last() else {
            return Ok(state);
        };
        after = *last;
        for case_id in cases {
            case_store::material::lock_case(&mut tx, case_id).await?;
            let files = case_store::material::clear_evidence(&mut *tx, case_id).await?;
            if !files.is_empty() {
                let key = key_for_writing(&mut tx, keys, case_id, MaterialKind::Evidence).await?;
                for (id, content) in files {
                    case_store::material::seal_evidence_row(
                        &mut *tx,
                        id,
                        &key.encrypt_bytes(&content, &id),
                    )
                    .await?;
                    state.evidence += 1;
                }
            }
            let clear: Vec<_> = case_store::material::list_explanations(&mut *tx, case_id)
                .await?
                .into_iter()
                .filter_map(|e| match e.body {
                    ExplanationBody::Clear {
                        statement,
                        counterparties,
                    } => Some((
                        e.id,
                        SealedExplanation {
                            statement,
                            counterparties,
                        },
                    )),
                    ExplanationBody::Sealed(_) => None,
                })
                .collect();
            let appeal = case_store::material::load_appeal(&mut *tx, case_id)
                .await?
                .and_then(|a| a.statement)
                .filter(|s| s != "[deleted]");
            if !clear.is_empty() || appeal.is_some() {
                let key =
                    key_for_writing(&mut tx, keys, case_id, MaterialKind::Explanations).await?;
                for (id, body) in clear {
                    let document =
                        serde_json::to_vec(&body).map_err(|e| WorkflowError::Internal(e.into()))?;
                    case_store::material::seal_explanation_row(
                        &mut *tx,
                        id,
                        &key.encrypt_bytes(&document, &id),
                    )
                    .await?;
                    state.explanations += 1;
                }
                if let Some(statement) = appeal {
                    case_store::material::seal_appeal_row(
                        &mut *tx,
                        case_id,
                        &key.encrypt(&statement, &appeal_row_id(&case_id)),
                    )
                    .await?;
                    state.appeals += 1;
                }
            }
            state.cases += 1;
        }
        tx.commit().await?;
        progress(&state);
    }
}

/// Locks the case for new material and checks that it takes material now.
async fn lock_for_material(
    conn: &mut PgConnection,
    case_id: Uuid,
) -> Result<CaseRow, WorkflowError> {
    let case = case_store::material::lock_case(conn, case_id).await?;
    check_accepts_material(&case)?;
    Ok(case)
}

/// What follows new material, in its transaction: the answer to an information
/// request moves the case back to the asking state, and the latest assessment is
/// re-scored. Returns the case's state and what it still needs.
async fn after_material(
    conn: &mut PgConnection,
    keys: &Keys,
    case: &CaseRow,
) -> Result<(CaseState, Vec<Need>), WorkflowError> {
    let mut state = case.state;
    if material::material_answers_request(case.state) {
        let customer = Actor::customer();
        let moved = case_store::transition_in(
            conn,
            TransitionRequest {
                case_id: case.id,
                expected_version: case.version,
                event: CaseEvent::CustomerResponded,
                actor: &customer,
                reason: Some("the subscriber sent the requested material"),
                fence: None,
                outbox: vec![],
            },
        )
        .await?;
        state = moved.case.state;
    }
    let Some(latest) = case_store::risk::latest_assessment(&mut *conn, case.id).await? else {
        // Not graded yet (identity review): nothing to re-score.
        return Ok((state, progress::needs(state, None)));
    };
    let flagged = flagged_contacts(&latest);
    let explained = explained_contacts(&read_explanations(&mut *conn, keys, case.id).await?);
    let counts = case_store::material::count_material(&mut *conn, case.id).await?;
    let remaining = material::remaining_needs(
        latest.tier,
        &flagged,
        &material::Material {
            explanations: usize::try_from(counts.explanations).unwrap_or(usize::MAX),
            explained_contacts: &explained,
            evidence: usize::try_from(counts.evidence).unwrap_or(usize::MAX),
        },
    );
    case_store::material::rescore_assessment(&mut *conn, latest.id, &names(&remaining)).await?;
    Ok((
        state,
        progress::needs_assessed(state, Some(latest.tier), Some(&remaining)),
    ))
}

/// An explanation was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplanationStored {
    /// Explanation id.
    pub explanation_id: Uuid,
    /// The counterparties it names, masked.
    pub counterparties: Vec<String>,
    /// The case's state afterwards.
    pub state: CaseState,
    /// What the case still needs.
    pub needs: Vec<Need>,
}

/// Explains the flagged traffic. While the case waits for the subscriber's answer,
/// this is the answer: the case goes back to the department that asked.
pub async fn explain(
    pool: &PgPool,
    keys: &Keys,
    case_id: Uuid,
    input: ExplanationInput,
) -> Result<ExplanationStored, WorkflowError> {
    let valid = validate_explanation(input)?;
    let mut tx = pool.begin().await?;
    let locked = lock_for_material(&mut tx, case_id).await?;
    let key = key_for_writing(&mut tx, keys, case_id, MaterialKind::Explanations).await?;
    let explanation_id = Uuid::now_v7();
    let document = serde_json::to_vec(&SealedExplanation {
        statement: valid.statement.clone(),
        counterparties: valid.counterparties.clone(),
    })
    .map_err(|e| WorkflowError::Internal(e.into()))?;
    case_store::material::insert_sealed_explanation(
        &mut *tx,
        explanation_id,
        case_id,
        &key.encrypt_bytes(&document, &explanation_id),
    )
    .await?;
    let (state, needs) = after_material(&mut tx, keys, &locked).await?;
    tx.commit().await?;
    tracing::info!(case_id = %case_id, %explanation_id, counterparties = valid.counterparties.len(), "explanation stored");
    Ok(ExplanationStored {
        explanation_id,
        counterparties: valid
            .counterparties
            .iter()
            .map(|c| mask_number(&c.msisdn))
            .collect(),
        state,
        needs,
    })
}

/// The refusal of content that is too large (nothing is kept).
pub fn too_large() -> WorkflowError {
    WorkflowError::TooLarge(ContentRefusal::TooLarge { size: 0 }.to_string())
}

/// An evidence file was stored, or the case already had it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceAdded {
    /// Evidence id (the first one's, for a duplicate).
    pub evidence_id: Uuid,
    /// image/jpeg, image/png or application/pdf, as recognised by content.
    pub media_type: String,
    /// Size in bytes.
    pub size_bytes: i32,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
    /// The case already had this exact file: nothing new was stored.
    pub duplicate: bool,
    /// The case's state afterwards.
    pub state: CaseState,
    /// What the case still needs.
    pub needs: Vec<Need>,
}

/// Adds one evidence file. Its type is recognised from the content; programs,
/// archives and active PDFs are refused. The same file twice is stored once.
pub async fn add_evidence(
    pool: &PgPool,
    keys: &Keys,
    case_id: Uuid,
    content: &[u8],
) -> Result<EvidenceAdded, WorkflowError> {
    let kind = material::sniff(content).map_err(|refusal| match refusal {
        ContentRefusal::TooLarge { .. } => too_large(),
        ContentRefusal::Empty => WorkflowError::invalid("file", "the file is empty"),
        other => WorkflowError::UnsupportedMedia(other.to_string()),
    })?;
    let mut tx = pool.begin().await?;
    let locked = lock_for_material(&mut tx, case_id).await?;
    let key = key_for_writing(&mut tx, keys, case_id, MaterialKind::Evidence).await?;
    let seal = |id: &Uuid, file: &[u8]| key.encrypt_bytes(file, id);
    let stored = case_store::material::insert_sealed_evidence(
        &mut tx,
        case_id,
        kind.media_type(),
        content,
        &seal,
    )
    .await?;
    let (state, needs) = match &stored {
        EvidenceStored::New(_) => after_material(&mut tx, keys, &locked).await?,
        // Nothing new: the case does not move and is not re-scored.
        EvidenceStored::Duplicate(_) => {
            let latest = case_store::risk::latest_assessment(&mut *tx, case_id).await?;
            let needs = progress::needs_assessed(
                locked.state,
                latest.as_ref().map(|a| a.tier),
                latest.as_ref().map(|a| stored_needs(&a.needs)).as_deref(),
            );
            (locked.state, needs)
        }
    };
    tx.commit().await?;
    let meta = stored.meta();
    let duplicate = matches!(stored, EvidenceStored::Duplicate(_));
    tracing::info!(case_id = %case_id, evidence_id = %meta.id, media_type = %meta.media_type, size = meta.size_bytes, duplicate, "evidence stored");
    Ok(EvidenceAdded {
        evidence_id: meta.id,
        media_type: meta.media_type.clone(),
        size_bytes: meta.size_bytes,
        sha256: hex(&meta.sha256),
        duplicate,
        state,
        needs,
    })
}

/// Appeals a rejection: once per case, within 15 days of the rejection, not when the
/// remedy is a store visit (extreme tier). The case goes back to security review.
pub async fn appeal(
    pool: &PgPool,
    keys: &Keys,
    sla: &case_domain::sla::SlaConfig,
    case_id: Uuid,
    statement: &str,
) -> Result<StatusView, WorkflowError> {
    let statement = material::check_text(statement, material::MAX_STATEMENT_CHARS)
        .map_err(|message| WorkflowError::invalid("statement", message))?
        .to_owned();
    let refused = |r: material::AppealRefusal| WorkflowError::Refused {
        code: subscriber_policy::appeal_refusal_code(&r),
        detail: r.to_string(),
    };
    let mut tx = pool.begin().await?;
    let locked = case_store::material::lock_case(&mut tx, case_id).await?;
    let already_appealed = case_store::material::load_appeal(&mut *tx, case_id)
        .await?
        .is_some();
    if already_appealed {
        return Err(refused(material::AppealRefusal::AlreadyAppealed));
    }
    if locked.state == CaseState::AwaitingStoreVisit {
        // Refused online with the store-visit remedy: the visit, not an appeal.
        return Err(refused(material::AppealRefusal::StoreVisitRequired));
    }
    if locked.state != CaseState::Rejected {
        return Err(refused(material::AppealRefusal::NotRejected(locked.state)));
    }
    let tier = case_store::risk::latest_assessment(&mut *tx, case_id)
        .await?
        .map(|a| a.tier);
    // The rejection took effect when the case entered `rejected`.
    let rejected_at = locked.state_entered_at;
    material::may_appeal(rejected_at, Utc::now(), already_appealed, tier).map_err(refused)?;
    let key = key_for_writing(&mut tx, keys, case_id, MaterialKind::Explanations).await?;
    case_store::material::record_sealed_appeal(
        &mut *tx,
        case_id,
        &key.encrypt(&statement, &appeal_row_id(&case_id)),
        rejected_at,
    )
    .await?;
    let customer = Actor::customer();
    let moved = case_store::transition_in(
        &mut tx,
        TransitionRequest {
            case_id,
            expected_version: locked.version,
            event: CaseEvent::Appealed,
            actor: &customer,
            reason: Some("appealed by the subscriber"),
            fence: None,
            outbox: vec![],
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(case_id = %case_id, "rejection appealed");
    crate::customer::read_status(pool, sla, &moved.case).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use case_domain::risk::RecordedSignals;

    fn input(statement: &str, counterparties: &[(&str, &str, &str)]) -> ExplanationInput {
        ExplanationInput {
            statement: statement.into(),
            counterparties: counterparties
                .iter()
                .map(|(m, r, p)| CounterpartyInput {
                    msisdn: (*m).into(),
                    relation: (*r).into(),
                    purpose: (*p).into(),
                })
                .collect(),
        }
    }

    fn fields(e: WorkflowError) -> Vec<String> {
        match e {
            WorkflowError::Invalid(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn a_valid_explanation_is_normalised() {
        let valid = validate_explanation(input(
            "  They are my colleagues. ",
            &[("137 0013 7001", "colleague", "work")],
        ))
        .unwrap();
        assert_eq!(valid.statement, "They are my colleagues.");
        assert_eq!(valid.counterparties[0].msisdn, "+8613700137001");
    }

    #[test]
    fn invalid_explanations_name_the_fields_and_never_echo_values() {
        let long = "x".repeat(201);
        let e = validate_explanation(input("", &[("110105194912310021", "", &long)])).unwrap_err();
        if let WorkflowError::Invalid(errors) = &e {
            assert!(errors.iter().all(|f| !f.message.contains("110105")));
        }
        assert_eq!(
            fields(e),
            [
                "statement",
                "counterparties[0].msisdn",
                "counterparties[0].relation",
                "counterparties[0].purpose"
            ]
        );
        let many: Vec<String> = (0..21).map(|i| format!("+86137001370{i:02}")).collect();
        let too_many: Vec<(&str, &str, &str)> =
            many.iter().map(|m| (m.as_str(), "r", "p")).collect();
        assert_eq!(
            fields(validate_explanation(input("s", &too_many)).unwrap_err()),
            ["counterparties"]
        );
        assert_eq!(
            fields(validate_explanation(input(&"字".repeat(4001), &[])).unwrap_err()),
            ["statement"]
        );
        assert!(validate_explanation(input(&"字".repeat(4000), &[])).is_ok());
    }

    #[test]
    fn numbers_are_masked() {
        assert_eq!(mask_number("+8613700137001"), "+86*******7001");
        assert_eq!(mask_number("12345"), "*******2345");
        assert_eq!(mask_number("1"), "*******1");
        let row = |signals| AssessmentRow {
            id: Uuid::nil(),
            case_id: Uuid::nil(),
            tier: case_domain::risk::RiskTier::Medium,
            reason_codes: vec![],
            needs: vec![],
            signals,
            rule_version: 1,
            assessed_at: Utc::now(),
        };
        let signals = RecordedSignals {
            flagged_contacts: vec!["+8613700137001".into(), "+8613700137002".into()],
            ..Default::default()
        };
        assert_eq!(
            masked_flagged_contacts(&row(signals)),
            ["+86*******7001", "+86*******7002"]
        );
        // Assessments from before the numbers were kept hold a count.
        assert!(
            masked_flagged_contacts(&row(serde_json::from_value(
                serde_json::json!({"fraud_linked_contacts": 2,
                    "sms_peak_per_hour": 0, "intl_calls_24h": 0, "suspension_reason": null,
                    "flagged_contacts": 2})
            )
            .unwrap()))
            .is_empty()
        );
    }
}
