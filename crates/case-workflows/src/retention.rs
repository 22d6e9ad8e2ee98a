//! Retention of finished cases' personal data, and reading a case's sealed identity
//! under its data key.
//!
//! [`run`] deletes, per kind (codes, explanations, evidence, identity), the data of
//! every finished case whose retention period ([`RetentionPolicy`]) has passed since
//! it ended, in batches of one transaction each (`case_store::retention`), with
//! Prometheus metrics: `retention_cases_total{kind}`, `retention_rows_deleted_total{kind}`,
//! `retention_errors_total`, `retention_due_cases{kind}` (what was still due when
//! the pass started) and `retention_last_pass_timestamp_seconds`. A dry run
//! counts what is due and changes nothing. [`backfill_data_keys`] gives the cases
//! opened before data keys existed a data key of their own (resumable).

use case_domain::{
    Actor,
    retention::{DataKind, RetentionPolicy},
};
use case_store::{identity::IdentityRow, retention::Due};
use chrono::{DateTime, Utc};
use data_protection::{CaseKey, Keys};
use sqlx::PgPool;
use uuid::Uuid;

use crate::WorkflowError;

/// A case's name and ID number, opened.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenedIdentity {
    /// The full name.
    pub full_name: String,
    /// The resident ID number.
    pub id_number: String,
}

impl std::fmt::Debug for OpenedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenedIdentity(..)")
    }
}

/// Why a case's identity could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenIdentityError {
    /// Retention destroyed the case's data key on this date: nothing can be read.
    #[error("the personal data of this case was deleted on {}", .0.format("%Y-%m-%d"))]
    Deleted(DateTime<Utc>),
    /// The sealed values do not open (wrong or missing master secret, tampering).
    #[error("the identity does not decrypt: {0}")]
    Undecryptable(#[from] data_protection::ProtectionError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] case_store::StoreError),
}

impl From<OpenIdentityError> for WorkflowError {
    fn from(e: OpenIdentityError) -> Self {
        match e {
            OpenIdentityError::Deleted(_) => WorkflowError::Refused {
                code: "personal_data_deleted",
                detail: e.to_string(),
            },
            OpenIdentityError::Store(e) => e.into(),
            other => WorkflowError::Internal(other.into()),
        }
    }
}

/// Opens a case's sealed name and ID number: under the case's data key, or under
/// the master secrets for a case opened before data keys existed. After retention
/// destroyed the data key, says so (with the date) instead of trying.
pub async fn open_identity(
    pool: &PgPool,
    keys: &Keys,
    identity: &IdentityRow,
) -> Result<OpenedIdentity, OpenIdentityError> {
    let wrapped = case_store::data_keys::load_data_key(pool, identity.case_id).await?;
    open_identity_with_key(pool, keys, identity, wrapped.as_deref()).await
}

/// [`open_identity`] with the case's wrapped data key already read (`None`: the
/// case has none); reads the database only to say when retention destroyed it.
pub async fn open_identity_with_key(
    pool: &PgPool,
    keys: &Keys,
    identity: &IdentityRow,
    wrapped: Option<&[u8]>,
) -> Result<OpenedIdentity, OpenIdentityError> {
    let case_id = identity.case_id;
    // Without a data key: destroyed by retention (say when), or a case opened before
    // data keys existed (sealed under the master secrets).
    if wrapped.is_none()
        && let Some(deleted_at) = case_store::retention::deletions(pool, case_id)
            .await?
            .and_then(|d| d.identity_deleted_at)
    {
        return Err(OpenIdentityError::Deleted(deleted_at));
    }
    let full_name = keys.open_personal(wrapped, &identity.full_name_enc, &case_id)?;
    let id_number = keys.open_personal(wrapped, &identity.id_number_enc, &case_id)?;
    Ok(OpenedIdentity {
        full_name,
        id_number,
    })
}

/// What a retention pass did (or, dry, would do) for one kind of data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindReport {
    /// The kind.
    pub kind: DataKind,
    /// Cases that ended at or before this time were due.
    pub cutoff: DateTime<Utc>,
    /// Due when the pass started (cases, rows).
    pub due: Due,
    /// Cases handled by this pass.
    pub cases: i64,
    /// Rows deleted by this pass.
    pub rows: i64,
    /// Another runner held this kind, so this pass left it.
    pub busy: bool,
}

/// Runs retention over every per-case kind of data as of `now`: `batch` cases per
/// transaction, at most `max_batches` batches per kind (the scheduled pass bounds
/// its work; the CLI runs to the end). `dry_run` only counts. `progress` is called
/// after each batch.
pub async fn run(
    pool: &PgPool,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
    options: RunOptions,
    actor: &Actor,
    mut progress: impl FnMut(&KindReport),
) -> Result<Vec<KindReport>, WorkflowError> {
    let mut reports = Vec::new();
    for kind in DataKind::PER_CASE {
        let cutoff = policy.cutoff(kind, now);
        let due = case_store::retention::due(pool, kind, cutoff)
            .await
            .inspect_err(|_| {
                ::metrics::counter!("retention_errors_total", "kind" => kind.as_str()).increment(1);
            })?;
        ::metrics::gauge!("retention_due_cases", "kind" => kind.as_str()).set(due.cases as f64);
        let mut report = KindReport {
            kind,
            cutoff,
            due,
            cases: 0,
            rows: 0,
            busy: false,
        };
        if !options.dry_run {
            for _ in 0..options.max_batches {
                let outcome = match case_store::retention::run_batch(
                    pool,
                    kind,
                    cutoff,
                    now,
                    options.batch,
                    actor,
                )
                .await
                {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        ::metrics::counter!("retention_errors_total", "kind" => kind.as_str())
                            .increment(1);
                        return Err(e.into());
                    }
                };
                let Some(outcome) = outcome else {
                    report.busy = true;
                    break;
                };
                if outcome.cases.is_empty() {
                    break;
                }
                report.cases += outcome.cases.len() as i64;
                report.rows += outcome.rows;
                ::metrics::counter!("retention_cases_total", "kind" => kind.as_str())
                    .increment(outcome.cases.len() as u64);
                ::metrics::counter!("retention_rows_deleted_total", "kind" => kind.as_str())
                    .increment(u64::try_from(outcome.rows).unwrap_or(0));
                ::metrics::gauge!("retention_due_cases", "kind" => kind.as_str())
                    .set((due.cases - report.cases).max(0) as f64);
                progress(&report);
            }
            if report.cases > 0 {
                tracing::info!(
                    kind = kind.as_str(),
                    cases = report.cases,
                    rows = report.rows,
                    "retention deleted personal data of finished cases"
                );
            }
        }
        reports.push(report);
    }
    if !options.dry_run {
        ::metrics::gauge!("retention_last_pass_timestamp_seconds").set(now.timestamp() as f64);
    }
    Ok(reports)
}

/// How a retention pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Count only; change nothing.
    pub dry_run: bool,
    /// Cases per transaction (1 to 10,000).
    pub batch: i64,
    /// At most this many batches per kind in this pass.
    pub max_batches: u32,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            batch: 200,
            max_batches: u32::MAX,
        }
    }
}

/// Gives every case without a data key (opened before data keys existed) one:
/// its name and ID number are re-sealed under it. Resumable; two runners at once
/// do each case once. Returns what was done; values that open under no configured
/// master secret are left as they are and counted.
pub async fn backfill_data_keys(
    pool: &PgPool,
    keys: &Keys,
    batch: i64,
    progress: impl FnMut(&case_store::data_keys::BackfillProgress),
) -> Result<case_store::data_keys::BackfillProgress, WorkflowError> {
    let envelope = |case_id: &Uuid, name: &[u8], id_number: &[u8]| {
        let name = keys
            .open_personal(None, name, case_id)
            .map_err(|e| e.to_string())?;
        let id_number = keys
            .open_personal(None, id_number, case_id)
            .map_err(|e| e.to_string())?;
        let key = CaseKey::generate();
        Ok((
            keys.wrap_case_key(&key, case_id),
            key.encrypt(&name, case_id),
            key.encrypt(&id_number, case_id),
        ))
    };
    Ok(case_store::data_keys::backfill(pool, &envelope, batch, progress).await?)
}
