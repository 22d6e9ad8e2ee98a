//! Reports and exports for supervisors (issue 15 item 4), as CSV or JSON, for a date
//! range (calendar days in China Standard Time, both included, at most 366):
//!
//! - `GET /v1/agent/reports/{report}`: one report's figures (small: one row per
//!   channel, stage, agent, reason code…), built from one query;
//! - `GET /v1/agent/exports/cases`: one row per case opened in the range, streamed:
//!   rows come off a database cursor (`sqlx` fetch stream) and go out in chunks of
//!   about [`CHUNK_BYTES`] through a bounded channel, so the gateway holds a few
//!   chunks at a time whatever the range's size, and a client that stops reading
//!   stops the query. JSON is NDJSON there (one object per line).
//!
//! The format is `format=csv|json`, else the `Accept` header (`text/csv` gives CSV),
//! else JSON. CSV follows RFC 4180, and a cell that a spreadsheet would run as a
//! formula is written with a leading apostrophe. Each read is audited (`report.read`,
//! `cases.export`) before any figure is read. Bad input is a problem answer that
//! changes nothing (no audit row either).

use std::fmt::Write as _;

use axum::{
    body::{Body, Bytes},
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use case_domain::reports::{DateRange, RANGE_UTC_OFFSET, ReportKind, defuse_formula};
use case_store::reports::ExportRow;
use case_workflows::reports::{self as wf, ReportData};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::{AppState, agent_auth::AgentSession, error::ApiError, error::FieldError};

/// Bytes gathered before a chunk of the export is sent.
pub const CHUNK_BYTES: usize = 32 * 1024;
/// Chunks of the export that may wait for a slow client (the rest waits in Postgres).
const CHUNKS_IN_FLIGHT: usize = 4;
/// Case exports one gateway process streams at once: each holds a database connection
/// for its whole transfer, so they must not take the pool from the product.
pub const MAX_CONCURRENT_EXPORTS: usize = 2;
/// Seconds a client turned away because of [`MAX_CONCURRENT_EXPORTS`] is asked to wait.
const EXPORTS_BUSY_RETRY_SECS: u32 = 10;

static EXPORTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_EXPORTS);

/// `503` with `Retry-After` while [`MAX_CONCURRENT_EXPORTS`] exports are running.
fn exports_busy() -> Response {
    service_runtime::Problem::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "exports-busy",
        "Too many exports",
        format!(
            "{MAX_CONCURRENT_EXPORTS} case exports are running on this server; retry in a few seconds."
        ),
    )
    .into_response_retrying(EXPORTS_BUSY_RETRY_SECS.into())
}

/// The range and format of a report or an export.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// First day, `YYYY-MM-DD` (China Standard Time, UTC+08:00).
    #[serde(default)]
    pub from: Option<String>,
    /// Last day, included, `YYYY-MM-DD`; at most 366 days after `from`, counting both.
    #[serde(default)]
    pub to: Option<String>,
    /// `csv` or `json`; when absent, `Accept: text/csv` gives CSV, anything else JSON.
    #[serde(default)]
    pub format: Option<String>,
}

/// CSV or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180, header line first.
    Csv,
    /// JSON (a report: one document; the export: NDJSON).
    Json,
}

impl Format {
    /// The name in URLs and audit rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Json => "json",
        }
    }
}

fn invalid(errors: Vec<FieldError>) -> ApiError {
    ApiError::Invalid(errors)
}

/// The format a request asks for: `format`, else `Accept`, else JSON.
fn format_of(param: Option<&str>, headers: &HeaderMap) -> Result<Format, FieldError> {
    match param.map(str::trim) {
        Some("csv") => Ok(Format::Csv),
        Some("json") => Ok(Format::Json),
        Some(_) => Err(FieldError::new("format", "must be csv or json")),
        None => {
            let accept = headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|v| {
                    v.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
                .collect::<Vec<_>>();
            let csv = accept.iter().position(|t| t == "text/csv");
            let json = accept
                .iter()
                .position(|t| t == "application/json" || t == "application/x-ndjson" || t == "*/*");
            // The first of the two the client lists wins.
            Ok(match (csv, json) {
                (Some(c), Some(j)) if c < j => Format::Csv,
                (Some(_), None) => Format::Csv,
                _ => Format::Json,
            })
        }
    }
}

/// The range and format of a request, every problem at once.
fn parse(query: &RangeQuery, headers: &HeaderMap) -> Result<(DateRange, Format), ApiError> {
    let range = DateRange::parse(query.from.as_deref(), query.to.as_deref());
    let format = format_of(query.format.as_deref(), headers);
    match (range, format) {
        (Ok(r), Ok(f)) => Ok((r, f)),
        (range, format) => {
            let mut errors: Vec<FieldError> = range
                .err()
                .unwrap_or_default()
                .into_iter()
                .map(|e| FieldError::new(e.field, &e.message))
                .collect();
            errors.extend(format.err());
            Err(invalid(errors))
        }
    }
}

fn query_of(query: Result<Query<RangeQuery>, QueryRejection>) -> Result<RangeQuery, ApiError> {
    query.map(|Query(q)| q).map_err(|_| {
        invalid(vec![FieldError::new(
            "query",
            "parameters are from, to and format, each at most once",
        )])
    })
}

/// One cell of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text (codes, names).
    Text(String),
    /// A count.
    Int(i64),
    /// A measure (seconds, a rate).
    Num(f64),
    /// Nothing to say (no sample; a team's total has no agent).
    Null,
}

impl Cell {
    fn json(&self) -> Value {
        match self {
            Self::Text(t) => Value::from(t.as_str()),
            Self::Int(n) => Value::from(*n),
            Self::Num(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
            Self::Null => Value::Null,
        }
    }

    fn csv(&self) -> String {
        match self {
            Self::Text(t) => csv_field(t),
            Self::Int(n) => n.to_string(),
            Self::Num(x) if x.is_finite() => x.to_string(),
            Self::Num(_) | Self::Null => String::new(),
        }
    }
}

/// Seconds to a tenth, as reports show them.
fn secs(x: f64) -> Cell {
    Cell::Num((x * 10.0).round() / 10.0)
}

fn opt_secs(x: Option<f64>) -> Cell {
    x.map_or(Cell::Null, secs)
}

/// A share, to four decimals.
fn rate(part: i64, whole: i64) -> Cell {
    if whole > 0 {
        Cell::Num(((part as f64 / whole as f64) * 10_000.0).round() / 10_000.0)
    } else {
        Cell::Null
    }
}

fn text(s: &str) -> Cell {
    Cell::Text(s.to_owned())
}

/// A report laid out as columns and rows: what both formats are written from, so
/// the CSV and the JSON of one report hold the same figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names (CSV header, JSON keys).
    pub columns: &'static [&'static str],
    /// Rows, each with one cell per column.
    pub rows: Vec<Vec<Cell>>,
}

/// The label of a total row.
const ALL: &str = "all";

/// Lays a report out.
pub fn table(data: ReportData) -> Table {
    match data {
        ReportData::Cases(rows) => Table {
            columns: &["channel", "outcome", "cases"],
            rows: rows
                .into_iter()
                .map(|r| {
                    vec![
                        Cell::Text(r.channel),
                        Cell::Text(r.outcome),
                        Cell::Int(r.cases),
                    ]
                })
                .collect(),
        },
        ReportData::Stages(rows) => Table {
            columns: &[
                "stage",
                "exits",
                "p50_seconds",
                "p90_seconds",
                "sla_met",
                "sla_met_rate",
            ],
            rows: rows
                .into_iter()
                .map(|r| {
                    vec![
                        text(r.state.as_str()),
                        Cell::Int(r.exits),
                        secs(r.p50_secs),
                        secs(r.p90_secs),
                        r.sla_met.map_or(Cell::Null, Cell::Int),
                        r.sla_met.map_or(Cell::Null, |m| rate(m, r.exits)),
                    ]
                })
                .collect(),
        },
        ReportData::Agents(rows) => Table {
            columns: &[
                "team",
                "agent_id",
                "username",
                "cases",
                "decisions",
                "median_decision_seconds",
            ],
            rows: rows
                .into_iter()
                .map(|r| {
                    vec![
                        text(r.team.as_str()),
                        r.agent_id.map_or(Cell::Null, Cell::Text),
                        r.username.map_or(Cell::Null, Cell::Text),
                        Cell::Int(r.cases),
                        Cell::Int(r.decisions),
                        secs(r.median_secs),
                    ]
                })
                .collect(),
        },
        ReportData::Complaints(rows) => Table {
            columns: &[
                "channel",
                "made",
                "answered",
                "answered_in_time",
                "open",
                "open_overdue",
                "escalated",
                "answer_p50_seconds",
                "answer_p90_seconds",
            ],
            rows: rows
                .into_iter()
                .map(|r| {
                    vec![
                        Cell::Text(r.channel.unwrap_or_else(|| ALL.into())),
                        Cell::Int(r.made),
                        Cell::Int(r.answered),
                        Cell::Int(r.answered_in_time),
                        Cell::Int(r.open),
                        Cell::Int(r.open_overdue),
                        Cell::Int(r.escalated),
                        opt_secs(r.answer_p50_secs),
                        opt_secs(r.answer_p90_secs),
                    ]
                })
                .collect(),
        },
        ReportData::FalsePositives(rows) => Table {
            columns: &["reason_code", "flagged", "approved", "false_positive_rate"],
            rows: rows
                .into_iter()
                .map(|r| {
                    let share = rate(r.approved, r.flagged);
                    vec![
                        Cell::Text(r.reason_code),
                        Cell::Int(r.flagged),
                        Cell::Int(r.approved),
                        share,
                    ]
                })
                .collect(),
        },
        ReportData::Expedite(rows) => Table {
            columns: &[
                "asked_in_state",
                "requests",
                "finished",
                "reactivated",
                "finish_p50_seconds",
            ],
            rows: rows
                .into_iter()
                .map(|r| {
                    vec![
                        text(r.state.map_or(ALL, |s| s.as_str())),
                        Cell::Int(r.requests),
                        Cell::Int(r.finished),
                        Cell::Int(r.reactivated),
                        opt_secs(r.finish_p50_secs),
                    ]
                })
                .collect(),
        },
    }
}

/// One CSV field: quoted when needed (RFC 4180), a formula defused first.
pub(crate) fn csv_field(value: &str) -> String {
    let value = defuse_formula(value);
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.into_owned()
    }
}

fn csv_line(cells: impl IntoIterator<Item = String>) -> String {
    let mut line = cells.into_iter().collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

/// A report as CSV.
pub fn to_csv(table: &Table) -> String {
    let mut out = csv_line(table.columns.iter().map(|c| (*c).to_owned()));
    for row in &table.rows {
        out.push_str(&csv_line(row.iter().map(Cell::csv)));
    }
    out
}

/// A report as a JSON document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportDoc {
    /// The report's name.
    pub report: String,
    /// First day of the range.
    pub from: String,
    /// Last day of the range (included).
    pub to: String,
    /// The offset the days are in (`+08:00`).
    pub utc_offset: String,
    /// When the figures were read.
    pub generated_at: DateTime<Utc>,
    /// The columns, in CSV order.
    pub columns: Vec<String>,
    /// One object per row, keyed by column (null: no sample, or a total's missing key).
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Value>>,
}

fn to_doc(kind: ReportKind, range: DateRange, table: &Table, now: DateTime<Utc>) -> ReportDoc {
    ReportDoc {
        report: kind.as_str().into(),
        from: range.from().to_string(),
        to: range.to().to_string(),
        utc_offset: RANGE_UTC_OFFSET.into(),
        generated_at: now,
        columns: table.columns.iter().map(|c| (*c).to_owned()).collect(),
        rows: table
            .rows
            .iter()
            .map(|row| {
                table
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| ((*c).to_owned(), v.json()))
                    .collect()
            })
            .collect(),
    }
}

fn with_download_headers(mut response: Response, format: Format, file: &str) -> Response {
    let h = response.headers_mut();
    let (content_type, ext) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Json => ("", "json"),
    };
    if !content_type.is_empty() {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}.{ext}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// One report for a date range, as CSV or JSON (supervisors only). Reports: `cases` (cases opened, per channel and outcome), `stages` (time per stage p50/p90 and SLA met), `agents` (decisions per team and agent, median decision time), `complaints` (per channel, answer times), `false-positive-reasons` (flagged and approved per reason code), `expedite-requests` (per state asked in). Audited as `report.read`.
#[utoipa::path(
    get, path = "/v1/agent/reports/{report}", tag = "agent",
    params(
        ("report" = String, Path, description = "cases, stages, agents, complaints, false-positive-reasons or expedite-requests"),
        RangeQuery,
    ),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The report", content(
            (ReportDoc = "application/json"),
            (String = "text/csv"),
        )),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Supervisors only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such report", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "The range or format is not valid", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn report(
    State(state): State<AppState>,
    session: AgentSession,
    Path(name): Path<String>,
    headers: HeaderMap,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let kind = ReportKind::parse(&name).ok_or(ApiError::NotFound)?;
    let (range, format) = parse(&query_of(query)?, &headers)?;
    let now = Utc::now();
    let data = wf::report(
        &state.pool,
        &session.as_agent(),
        kind,
        range,
        format.as_str(),
        &state.sla,
        now,
    )
    .await?;
    let table = table(data);
    let file = format!("{}-{}-{}", kind.as_str(), range.from(), range.to());
    let response = match format {
        Format::Csv => to_csv(&table).into_response(),
        Format::Json => axum::Json(to_doc(kind, range, &table, now)).into_response(),
    };
    Ok(with_download_headers(response, format, &file))
}

/// The export's columns (CSV header, NDJSON keys).
pub const EXPORT_COLUMNS: [&str; 8] = [
    "case_id",
    "channel",
    "created_at",
    "finished_at",
    "outcome",
    "state",
    "tier",
    "msisdn_masked",
];

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Appends one case to the export's text.
fn write_row(out: &mut String, row: &ExportRow, format: Format) {
    let finished = row.finished_at().map(time);
    match format {
        Format::Csv => {
            let cells = [
                row.id.to_string(),
                csv_field(&row.channel),
                time(row.created_at),
                finished.unwrap_or_default(),
                row.outcome().to_owned(),
                row.state.as_str().to_owned(),
                row.tier.as_deref().map(csv_field).unwrap_or_default(),
                // The masked number starts with '+': defused like any cell.
                csv_field(&row.msisdn.masked()),
            ];
            out.push_str(&csv_line(cells));
        }
        Format::Json => {
            let line = serde_json::json!({
                "case_id": row.id,
                "channel": row.channel,
                "created_at": time(row.created_at),
                "finished_at": finished,
                "outcome": row.outcome(),
                "state": row.state.as_str(),
                "tier": row.tier,
                "msisdn_masked": row.msisdn.masked(),
            });
            let _ = writeln!(out, "{line}");
        }
    }
}

/// One row per case opened in the range (case id, channel, opened, finished, outcome, state, risk tier, masked number; no other personal data), streamed as CSV or NDJSON (one JSON object per line). Supervisors only; audited as `cases.export`. A failure part-way ends the transfer with an error rather than a short file.
#[utoipa::path(
    get, path = "/v1/agent/exports/cases", tag = "agent",
    params(RangeQuery),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The cases, oldest first", content(
            (String = "text/csv"),
            (String = "application/x-ndjson"),
        )),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Supervisors only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "The range or format is not valid", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Two exports are already running on this server (`exports-busy`); `Retry-After` says when to come back", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn export_cases(
    State(state): State<AppState>,
    session: AgentSession,
    headers: HeaderMap,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (range, format) = parse(&query_of(query)?, &headers)?;
    // Held by the streaming task until the last chunk is sent (or the client leaves).
    let Ok(permit) = EXPORTS.try_acquire() else {
        return Ok(exports_busy());
    };
    wf::begin_case_export(&state.pool, &session.as_agent(), range, format.as_str()).await?;
    // Taken before answering, so a pool that is exhausted is a 503-class problem, not
    // a broken download.
    let conn = state.pool.acquire().await.map_err(anyhow::Error::from)?;
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
    let (start, end) = (range.start(), range.end());
    tokio::spawn(async move {
        let _permit = permit;
        let mut conn = conn;
        let rows = case_store::reports::export_cases(&mut conn, start, end);
        futures_util::pin_mut!(rows);
        let mut buf = String::with_capacity(CHUNK_BYTES + 512);
        if format == Format::Csv {
            buf.push_str(&csv_line(EXPORT_COLUMNS.iter().map(|c| (*c).to_owned())));
        }
        let mut count: u64 = 0;
        while let Some(row) = rows.next().await {
            match row {
                Ok(row) => {
                    write_row(&mut buf, &row, format);
                    count += 1;
                }
                Err(e) => {
                    tracing::error!(error.message = %e, rows = count, "case export failed part-way");
                    let _ = tx
                        .send(Err(std::io::Error::other("case export failed")))
                        .await;
                    return;
                }
            }
            if buf.len() >= CHUNK_BYTES {
                let chunk = Bytes::from(std::mem::replace(
                    &mut buf,
                    String::with_capacity(CHUNK_BYTES + 512),
                ));
                if tx.send(Ok(chunk)).await.is_err() {
                    // The client went away: dropping the stream ends the query.
                    tracing::info!(rows = count, "case export abandoned by the client");
                    return;
                }
            }
        }
        if !buf.is_empty() {
            let _ = tx.send(Ok(Bytes::from(buf))).await;
        }
        metrics::counter!("case_export_rows_total").increment(count);
    });
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let mut response = body.into_response();
    if format == Format::Json {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
    }
    let file = format!("cases-{}-{}", range.from(), range.to());
    let mut response = with_download_headers(response, format, &file);
    if format == Format::Json {
        // NDJSON, not one JSON document: say so in the file name too.
        response.headers_mut().insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&format!("attachment; filename=\"{file}.ndjson\""))
                .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        h
    }

    #[test]
    fn the_format_comes_from_the_parameter_then_accept() {
        let none = HeaderMap::new();
        assert_eq!(format_of(None, &none), Ok(Format::Json));
        assert_eq!(
            format_of(Some("csv"), &headers("application/json")),
            Ok(Format::Csv)
        );
        assert_eq!(
            format_of(Some("json"), &headers("text/csv")),
            Ok(Format::Json)
        );
        assert_eq!(format_of(None, &headers("text/csv")), Ok(Format::Csv));
        assert_eq!(
            format_of(None, &headers("text/csv;q=0.9, */*")),
            Ok(Format::Csv)
        );
        assert_eq!(
            format_of(None, &headers("application/json, text/csv")),
            Ok(Format::Json)
        );
        assert_eq!(format_of(None, &headers("text/html")), Ok(Format::Json));
        assert!(format_of(Some("xml"), &none).is_err());
    }

    #[test]
    fn every_bad_parameter_is_named() {
        let q = RangeQuery {
            from: Some("2026-13-01".into()),
            to: None,
            format: Some("pdf".into()),
        };
        match parse(&q, &HeaderMap::new()) {
            Err(ApiError::Invalid(errors)) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, ["from", "to", "format"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn csv_and_json_are_written_from_the_same_cells() {
        let t = Table {
            columns: &["code", "n", "secs", "none"],
            rows: vec![vec![
                text("=cmd"),
                Cell::Int(3),
                Cell::Num(12.5),
                Cell::Null,
            ]],
        };
        assert_eq!(to_csv(&t), "code,n,secs,none\r\n'=cmd,3,12.5,\r\n");
        let range = DateRange::parse(Some("2026-12-01"), Some("2026-12-02")).unwrap();
        let doc = to_doc(ReportKind::Cases, range, &t, Utc::now());
        assert_eq!(
            serde_json::to_value(&doc.rows).unwrap(),
            serde_json::json!([{"code": "=cmd", "n": 3, "secs": 12.5, "none": null}])
        );
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(csv_field("+86*******0001"), "'+86*******0001");
    }

    #[test]
    fn the_false_positive_columns_line_up() {
        let t = table(ReportData::FalsePositives(vec![
            case_store::reports::ReasonFlags {
                reason_code: "sms_burst".into(),
                flagged: 4,
                approved: 1,
            },
        ]));
        assert_eq!(
            t.rows[0],
            vec![
                text("sms_burst"),
                Cell::Int(4),
                Cell::Int(1),
                Cell::Num(0.25)
            ]
        );
    }
}
