//! The versions of the risk rules' thresholds (`risk_rule_versions`) and the history
//! a replay reads.

use case_domain::{
    risk::{ReasonCode, RiskSignals, RiskTier},
    risk_rules::{ReplayCase, RiskThresholds},
};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::{PgConnection, PgExecutor, types::Json};
use uuid::Uuid;

use crate::StoreError;

/// The current version of the rules: its number and thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentRules {
    /// The version.
    pub version: i32,
    /// Its thresholds.
    pub thresholds: RiskThresholds,
}

/// One version of the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleVersionRow {
    /// The version.
    pub version: i32,
    /// Its thresholds.
    pub thresholds: RiskThresholds,
    /// Why it was made.
    pub reason: String,
    /// The supervisor who made it (none for version 1, the rules as they were).
    pub created_by: Option<Uuid>,
    /// Their username.
    pub created_by_username: Option<String>,
    /// When it was made and activated.
    pub created_at: DateTime<Utc>,
    /// Whether it is the current version.
    pub activated: bool,
}

/// The current version of the rules: one row through the partial unique index
/// `risk_rule_versions_current`.
pub async fn current(db: impl PgExecutor<'_>) -> Result<CurrentRules, StoreError> {
    let row = sqlx::query!(
        r#"SELECT version, thresholds AS "thresholds: Json<RiskThresholds>"
           FROM risk_rule_versions WHERE activated"#
    )
    .fetch_optional(db)
    .await?
    .ok_or(StoreError::Invariant(
        "no current version of the risk rules",
    ))?;
    Ok(CurrentRules {
        version: row.version,
        thresholds: row.thresholds.0,
    })
}

/// The versions of the rules, newest first (at most `limit`).
pub async fn versions(
    db: impl PgExecutor<'_>,
    limit: i64,
) -> Result<Vec<RuleVersionRow>, StoreError> {
    Ok(sqlx::query!(
        r#"SELECT v.version, v.thresholds AS "thresholds: Json<RiskThresholds>", v.reason,
                  v.created_by, a.username AS "created_by_username?", v.created_at, v.activated
           FROM risk_rule_versions v LEFT JOIN agents a ON a.id = v.created_by
           ORDER BY v.version DESC LIMIT $1"#,
        limit
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|r| RuleVersionRow {
        version: r.version,
        thresholds: r.thresholds.0,
        reason: r.reason,
        created_by: r.created_by,
        created_by_username: r.created_by_username,
        created_at: r.created_at,
        activated: r.activated,
    })
    .collect())
}

/// What became of a request to make the next version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activation {
    /// The new version is current now.
    Activated {
        /// Its number.
        version: i32,
        /// The thresholds of the version it replaced.
        previous: RiskThresholds,
        /// When.
        created_at: DateTime<Utc>,
    },
    /// The version it was based on is not the current one (any more): nothing changed.
    NotCurrent,
}

/// Makes version `based_on + 1` with `thresholds` and activates it, deactivating
/// `based_on` — only while `based_on` is the current version. Of two callers based on
/// the same version exactly one succeeds: the deactivating `UPDATE` locks the row, and
/// the second caller, once the first commits, finds it no longer activated
/// ([`Activation::NotCurrent`]). Run it in a transaction (with the audit row).
pub async fn activate_next(
    conn: &mut PgConnection,
    based_on: i32,
    thresholds: &RiskThresholds,
    reason: &str,
    created_by: Uuid,
) -> Result<Activation, StoreError> {
    let previous = sqlx::query_scalar!(
        r#"UPDATE risk_rule_versions SET activated = false
           WHERE version = $1 AND activated
           RETURNING thresholds AS "thresholds: Json<RiskThresholds>""#,
        based_on
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(previous) = previous else {
        return Ok(Activation::NotCurrent);
    };
    let version = based_on
        .checked_add(1)
        .ok_or(StoreError::Invariant("risk rule versions exhausted"))?;
    let created_at = sqlx::query_scalar!(
        r#"INSERT INTO risk_rule_versions (version, thresholds, reason, created_by, activated)
           VALUES ($1, $2, $3, $4, true) RETURNING created_at"#,
        version,
        Json(thresholds) as _,
        reason,
        created_by
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Activation::Activated {
        version,
        previous: previous.0,
        created_at,
    })
}

/// Streams the history a replay reads to `each`: the latest assessment since `since`
/// of every case assessed since then (the one its review decided on), with the graded
/// signals (not the flagged counterparties), the recorded tier and reasons, and the
/// reason codes labelled false positives on the case. Reads only the assessments
/// since `since` (index `risk_assessments_by_time`), row by row.
pub async fn replay_history(
    db: impl PgExecutor<'_>,
    since: DateTime<Utc>,
    mut each: impl FnMut(ReplayCase),
) -> Result<(), StoreError> {
    let mut rows = sqlx::query!(
        r#"SELECT DISTINCT ON (r.case_id) r.case_id,
                  r.tier AS "tier: RiskTier", r.reason_codes,
                  coalesce((r.signals->>'fraud_linked_contacts')::bigint, 0) AS "fraud_linked_contacts!",
                  coalesce((r.signals->>'sms_peak_per_hour')::bigint, 0) AS "sms_peak_per_hour!",
                  coalesce((r.signals->>'intl_calls_24h')::bigint, 0) AS "intl_calls_24h!",
                  r.signals->>'suspension_reason' AS suspension_reason,
                  coalesce((SELECT array_agg(l.reason_code ORDER BY l.reason_code)
                            FROM outcome_labels l
                            WHERE l.case_id = r.case_id AND l.label = 'false_positive'),
                           '{}') AS "false_positives!"
           FROM risk_assessments r
           WHERE r.assessed_at >= $1
           ORDER BY r.case_id, r.assessed_at DESC, r.id DESC"#,
        since
    )
    .fetch(db);
    let count = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
    let codes = |codes: &[String]| -> Vec<ReasonCode> {
        codes.iter().filter_map(|c| ReasonCode::parse(c)).collect()
    };
    while let Some(r) = rows.try_next().await? {
        each(ReplayCase {
            signals: RiskSignals {
                fraud_linked_contacts: count(r.fraud_linked_contacts),
                sms_peak_per_hour: count(r.sms_peak_per_hour),
                intl_calls_24h: count(r.intl_calls_24h),
                suspension_reason: r.suspension_reason,
            },
            tier: r.tier,
            reasons: codes(&r.reason_codes),
            false_positives: codes(&r.false_positives),
        });
    }
    Ok(())
}
