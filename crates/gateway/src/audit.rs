//! The audit log for supervisors and admins: query it (JSON, a page at a time) or
//! export it (CSV, streamed in batches so no connection is held for the whole
//! export), filtered by case, agent, action and time. Each query is itself audited
//! (`audit.query`). Also the periodic publication of the chain head (log line and
//! `/metrics` gauges), so a rewrite of the whole table — which the chain walk of
//! `reactivation audit verify` cannot see — shows as a head that changed.

use std::time::Duration;

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{Query, State, rejection::QueryRejection},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use case_domain::Role;
use case_store::audit::{self, AuditEntry, AuditFilter, AuditRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_runtime::Shutdown;
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{AppState, agent_auth::AgentSession, error::ApiError, error::FieldError};

/// Who may read the audit log.
pub const AUDIT_READERS: &[Role] = &[Role::Supervisor, Role::Admin];
/// Rows per JSON page unless `limit` says otherwise.
const DEFAULT_LIMIT: i64 = 100;
/// The most rows per JSON page.
const MAX_LIMIT: i64 = 1000;
/// Rows read per batch of a CSV export.
const CSV_BATCH: i64 = 1000;
/// How often the chain head is written out.
pub const HEAD_EVERY: Duration = Duration::from_secs(60);

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::Invalid(vec![FieldError::new(field, message)])
}

/// Filters of the audit log; all optional, combined with AND.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Rows about this case (UUID).
    #[serde(default)]
    pub case_id: Option<String>,
    /// Rows by this agent (their id, a UUID).
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Rows of this action, e.g. `case.view`, `case.unmask`, `case.decision`, `agent.login`.
    #[serde(default)]
    pub action: Option<String>,
    /// Rows at or after this time (RFC 3339).
    #[serde(default)]
    pub from: Option<String>,
    /// Rows before this time (RFC 3339).
    #[serde(default)]
    pub to: Option<String>,
    /// Rows after this position in the chain (`next_after` of the previous page).
    #[serde(default)]
    pub after: Option<String>,
    /// Rows per page, 1 to 1000 (default 100); JSON only (the CSV export has every matching row).
    #[serde(default)]
    pub limit: Option<String>,
    /// `json` (default) or `csv`.
    #[serde(default)]
    pub format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

/// A validated query.
#[derive(Debug)]
struct Parsed {
    filter: AuditFilter,
    after: i64,
    limit: i64,
    format: Format,
}

fn time(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| invalid(field, "must be an RFC 3339 time, e.g. 2026-12-01T08:00:00Z"))
    })
    .transpose()
}

fn parse(q: &AuditQuery) -> Result<Parsed, ApiError> {
    let uuid = |field: &str, raw: Option<&str>| {
        raw.map(|v| {
            v.parse::<Uuid>()
                .map_err(|_| invalid(field, "must be a UUID"))
        })
        .transpose()
    };
    let case_id = uuid("case_id", q.case_id.as_deref())?;
    let agent_id = uuid("agent_id", q.agent_id.as_deref())?;
    let action = match q.action.as_deref() {
        Some(a)
            if a.is_empty()
                || a.len() > 64
                || !a
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b"._".contains(&b)) =>
        {
            return Err(invalid(
                "action",
                "must be 1 to 64 lower-case letters, '.' or '_', e.g. case.view",
            ));
        }
        other => other.map(str::to_owned),
    };
    let from = time("from", q.from.as_deref())?;
    let to = time("to", q.to.as_deref())?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(invalid("to", "must be after from"));
    }
    let after = match q.after.as_deref() {
        None => 0,
        Some(a) => a
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| invalid("after", "must be a position in the chain (0 or more)"))?,
    };
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| invalid("limit", "must be 1 to 1000"))?,
    };
    let format = match q.format.as_deref() {
        None | Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some(_) => return Err(invalid("format", "must be json or csv")),
    };
    Ok(Parsed {
        filter: AuditFilter {
            case_id,
            actor_id: agent_id.map(|id| id.to_string()),
            action,
            from,
            to,
        },
        after,
        limit,
        format,
    })
}

/// One row of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditRecord {
    /// Position in the chain (gap-free).
    pub seq: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// The role the actor used (cs, store, security, technical, supervisor, admin, system, ...).
    pub actor_role: String,
    /// The agent's id, or a service's name.
    pub actor_id: String,
    /// What was done.
    pub action: String,
    /// The case, if any.
    pub case_id: Option<Uuid>,
    /// Structured detail (never personal data).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// Why, as the actor said.
    pub reason: Option<String>,
    /// The row's chain hash (hex).
    pub hash: String,
}

impl From<AuditRow> for AuditRecord {
    fn from(r: AuditRow) -> Self {
        Self {
            seq: r.seq,
            at: r.at,
            actor_role: r.actor_role.as_str().into(),
            actor_id: r.actor_id,
            action: r.action,
            case_id: r.case_id,
            detail: r.detail,
            reason: r.reason,
            hash: hex(&r.hash),
        }
    }
}

/// A page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Oldest first.
    pub entries: Vec<AuditRecord>,
    /// Pass as `after` to read the next page; absent on the last page.
    pub next_after: Option<i64>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the audit log: a JSON page (`next_after` reads on), or with `format=csv` every matching row as a streamed CSV file. Supervisors and admins only; each query is itself audited (`audit.query`).
#[utoipa::path(
    get, path = "/v1/agent/audit", tag = "agent",
    params(AuditQuery),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The matching rows, oldest first", content(
            (AuditPage = "application/json"),
            (String = "text/csv"),
        )),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Supervisors and admins only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A filter is not valid", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn query(
    State(state): State<AppState>,
    session: AgentSession,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    session.require_any(AUDIT_READERS)?;
    let Query(query) = query.map_err(|_| {
        invalid(
            "query",
            "parameters are case_id, agent_id, action, from, to, after, limit and format, each at most once",
        )
    })?;
    let parsed = parse(&query)?;
    let role = if session.has(Role::Supervisor) {
        Role::Supervisor
    } else {
        Role::Admin
    };
    let mut conn = state.pool.acquire().await.map_err(anyhow::Error::from)?;
    audit::record(
        &mut conn,
        &AuditEntry {
            actor: &session.actor(role),
            action: "audit.query",
            case_id: parsed.filter.case_id,
            detail: serde_json::json!({
                "format": if parsed.format == Format::Csv { "csv" } else { "json" },
                "agent_id": parsed.filter.actor_id,
                "action": parsed.filter.action,
                "from": parsed.filter.from,
                "to": parsed.filter.to,
                "after": parsed.after,
            }),
            reason: None,
        },
    )
    .await?;
    drop(conn);
    let mut response = match parsed.format {
        Format::Json => {
            let rows =
                audit::query(&state.pool, &parsed.filter, parsed.after, parsed.limit).await?;
            let next_after = (rows.len() as i64 == parsed.limit)
                .then(|| rows.last().map(|r| r.seq))
                .flatten();
            Json(AuditPage {
                entries: rows.into_iter().map(AuditRecord::from).collect(),
                next_after,
            })
            .into_response()
        }
        Format::Csv => {
            let mut r =
                Body::from_stream(csv_stream(state.pool.clone(), parsed.filter, parsed.after))
                    .into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"audit.csv\""),
            );
            r
        }
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// The CSV header line.
pub const CSV_HEADER: &str = "seq,at,actor_role,actor_id,action,case_id,reason,detail,hash\r\n";

/// One CSV field: quoted when needed (RFC 4180); a value a spreadsheet would run as
/// a formula (`=`, `+`, `-`, `@`, tab, CR first) gets a leading `'`.
fn csv_field(value: &str) -> String {
    crate::reports::csv_field(value)
}

fn csv_line(r: &AuditRow) -> String {
    let fields = [
        r.seq.to_string(),
        r.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        r.actor_role.as_str().to_owned(),
        r.actor_id.clone(),
        r.action.clone(),
        r.case_id.map(|c| c.to_string()).unwrap_or_default(),
        r.reason.clone().unwrap_or_default(),
        r.detail.to_string(),
        hex(&r.hash),
    ];
    let mut line = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// The header, then every matching row, read [`CSV_BATCH`] rows at a time (a
/// connection is taken per batch). A read that fails ends the body with an error,
/// so the client sees a broken transfer, never a silently short file.
fn csv_stream(
    pool: PgPool,
    filter: AuditFilter,
    after: i64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    struct Cursor {
        pool: PgPool,
        filter: AuditFilter,
        after: i64,
        header: bool,
        done: bool,
    }
    let cursor = Cursor {
        pool,
        filter,
        after,
        header: true,
        done: false,
    };
    futures_util::stream::unfold(cursor, |mut c| async move {
        if c.header {
            c.header = false;
            return Some((Ok(Bytes::from_static(CSV_HEADER.as_bytes())), c));
        }
        if c.done {
            return None;
        }
        match audit::query(&c.pool, &c.filter, c.after, CSV_BATCH).await {
            Ok(rows) if rows.is_empty() => None,
            Ok(rows) => {
                c.done = (rows.len() as i64) < CSV_BATCH;
                c.after = rows.last().map_or(c.after, |r| r.seq);
                let text: String = rows.iter().map(csv_line).collect();
                Some((Ok(Bytes::from(text)), c))
            }
            Err(e) => {
                tracing::error!(error.message = %e, "audit export failed part-way");
                c.done = true;
                Some((Err(std::io::Error::other("audit export failed")), c))
            }
        }
    })
}

/// Writes the chain head (its `seq` and hash) to the log and to the gauges
/// `audit_chain_head_seq` and `audit_chain_head_hash_prefix` (the hash's first 48
/// bits as a number), now and every `every` until `shutdown`. Kept by the log store
/// and the metrics history, old heads let anyone notice a rewritten table: a head
/// whose `seq` went back, or whose hash at a known `seq` differs.
pub async fn publish_chain_head(pool: PgPool, every: Duration, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = tick.tick() => match audit::head(&pool).await {
                Ok(head) => {
                    let (seq, hash) = head.unwrap_or((0, vec![0; 32]));
                    metrics::gauge!("audit_chain_head_seq").set(seq as f64);
                    metrics::gauge!("audit_chain_head_hash_prefix").set(hash_prefix(&hash) as f64);
                    tracing::info!(seq, hash = %hex(&hash), "audit chain head");
                }
                Err(e) => tracing::warn!(error.message = %e, "cannot read the audit chain head"),
            },
        }
    }
}

/// The first 48 bits of a hash as a number (exact in an f64 gauge).
pub fn hash_prefix(hash: &[u8]) -> u64 {
    hash.iter()
        .take(6)
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("case.view"), "case.view");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("@sum"), "'@sum");
        assert_eq!(csv_field("-2"), "'-2");
    }

    #[test]
    fn queries_are_checked_field_by_field() {
        let ok = parse(&AuditQuery {
            case_id: Some(Uuid::nil().to_string()),
            action: Some("case.view".into()),
            from: Some("2026-12-01T00:00:00Z".into()),
            to: Some("2026-12-02T00:00:00+08:00".into()),
            limit: Some("10".into()),
            format: Some("csv".into()),
            ..AuditQuery::default()
        })
        .expect("valid");
        assert_eq!(ok.limit, 10);
        assert_eq!(ok.format, Format::Csv);
        assert_eq!(ok.filter.case_id, Some(Uuid::nil()));
        for (bad, field) in [
            (
                AuditQuery {
                    case_id: Some("x".into()),
                    ..AuditQuery::default()
                },
                "case_id",
            ),
            (
                AuditQuery {
                    agent_id: Some("\0".into()),
                    ..AuditQuery::default()
                },
                "agent_id",
            ),
            (
                AuditQuery {
                    action: Some("case.view\0".into()),
                    ..AuditQuery::default()
                },
                "action",
            ),
            (
                AuditQuery {
                    from: Some("yesterday".into()),
                    ..AuditQuery::default()
                },
                "from",
            ),
            (
                AuditQuery {
                    from: Some("2026-12-02T00:00:00Z".into()),
                    to: Some("2026-12-01T00:00:00Z".into()),
                    ..AuditQuery::default()
                },
                "to",
            ),
            (
                AuditQuery {
                    limit: Some("0".into()),
                    ..AuditQuery::default()
                },
                "limit",
            ),
            (
                AuditQuery {
                    limit: Some("1001".into()),
                    ..AuditQuery::default()
                },
                "limit",
            ),
            (
                AuditQuery {
                    after: Some("-1".into()),
                    ..AuditQuery::default()
                },
                "after",
            ),
            (
                AuditQuery {
                    format: Some("xml".into()),
                    ..AuditQuery::default()
                },
                "format",
            ),
        ] {
            match parse(&bad) {
                Err(ApiError::Invalid(errors)) => assert_eq!(errors[0].field, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_hash_prefix_is_the_first_six_bytes() {
        assert_eq!(hash_prefix(&[0; 32]), 0);
        assert_eq!(hash_prefix(&[1, 2, 3, 4, 5, 6, 7, 8]), 0x0102_0304_0506);
        assert!(hash_prefix(&[0xff; 32]) < (1u64 << 53));
    }
}
