//! The simulator's own calls (`/sim/*`), fixed by the API contract: set up subscribers,
//! read the outbox and the provisioning calls, inject faults.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use case_domain::Msisdn;
use serde::Deserialize;
use serde_json::json;
use service_runtime::Problem;

use crate::{
    db::{self, OnExisting, SubscriberRow},
    extract::{ApiJson, ApiPath, ApiQuery, internal, invalid, invalid_field, msisdn_param},
    model::NewSubscriber,
    state::{AppState, Faults, MAX_LATENCY_MS},
    subscribers::{self, StoreError},
};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sim/subscribers", axum::routing::post(put_subscriber))
        .route("/sim/subscribers/{msisdn}", get(get_subscriber))
        .route("/sim/outbox", get(outbox))
        .route("/sim/provisioning-requests", get(provisioning_requests))
        .route("/sim/faults", get(get_faults).post(set_faults))
        .route("/sim/identity-checks", get(identity_checks))
}

fn db_error(e: &sqlx::Error) -> Problem {
    internal("carrier simulator database call failed", e)
}

/// The simulator's view of a subscriber: never the password hash nor the ID number.
fn subscriber_json(row: &SubscriberRow) -> serde_json::Value {
    json!({
        "msisdn": row.msisdn,
        "status": row.status,
        "restoration": row.restoration,
        "resume_count": row.resume_count,
        "suspension_reason": row.suspension_reason,
        "backup_contacts": row.backup_contacts.0,
        "recent_contacts": row.recent_contacts,
        "signals": {
            "fraud_linked_contacts": row.fraud_linked_contacts,
            "sms_peak_per_hour": row.sms_peak_per_hour,
            "intl_calls_24h": row.intl_calls_24h,
            "flagged_contacts": row.flagged_contacts,
        },
        "has_service_password": row.password_hash.is_some(),
        "updated_at": row.updated_at,
    })
}

/// Creates or replaces a subscriber by number: 201 with the stored view.
async fn put_subscriber(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewSubscriber>,
) -> Result<Response, Problem> {
    let (valid, _) = subscribers::store(&state.pool, &body, OnExisting::Replace)
        .await
        .map_err(|e| match e {
            StoreError::Invalid(errors) => invalid(&errors),
            other => internal("cannot store a simulated subscriber", &other),
        })?;
    tracing::info!(msisdn = %valid.msisdn, "simulated subscriber stored");
    let row = db::subscriber(&state.pool, valid.msisdn.e164())
        .await
        .map_err(|e| db_error(&e))?
        .ok_or_else(Problem::internal)?;
    Ok((StatusCode::CREATED, Json(subscriber_json(&row))).into_response())
}

/// A subscriber with every due order applied. 404 when unknown.
async fn get_subscriber(
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let msisdn = msisdn_param("msisdn", &raw)?;
    let row = db::settled_subscriber(&state.pool, msisdn.e164())
        .await
        .map_err(|e| db_error(&e))?
        .ok_or_else(Problem::not_found)?;
    Ok(Json(subscriber_json(&row)))
}

#[derive(Deserialize)]
struct OutboxQuery {
    to: Option<String>,
}

/// Every message sent, oldest first; with `to`, only those to that address (a number in
/// any spelling, or an e-mail address, case-insensitive).
async fn outbox(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<OutboxQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    let to = query
        .to
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| Msisdn::parse(t).map_or_else(|_| t.to_lowercase(), |m| m.e164().to_owned()));
    let rows = db::outbox(&state.pool, to.as_deref())
        .await
        .map_err(|e| db_error(&e))?;
    let messages: Vec<serde_json::Value> = rows
        .iter()
        .map(|m| {
            json!({
                "to": m.to_address,
                "channel": m.kind,
                "body": m.body,
                "sent_at": m.sent_at,
                "message_id": m.message_id,
                "msisdn": m.msisdn,
            })
        })
        .collect();
    Ok(Json(json!(messages)))
}

#[derive(Deserialize)]
struct RequestsQuery {
    msisdn: Option<String>,
}

/// Every provisioning call received, oldest first, duplicates and failed ones included.
#[derive(Debug, Deserialize)]
struct ChecksQuery {
    msisdn: String,
}

/// `GET /sim/identity-checks?msisdn=M`: how many service-password and call-record
/// questions this process was asked about the number (since it started).
async fn identity_checks(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ChecksQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    let msisdn = msisdn_param("msisdn", query.msisdn.trim())?;
    let counts = state.checks_of(msisdn.e164());
    let count = |kind: &str| counts.get(kind).copied().unwrap_or(0);
    Ok(Json(json!({
        "msisdn": msisdn.e164(),
        "service_password": count("service_password"),
        "call_records": count("call_records"),
    })))
}

async fn provisioning_requests(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<RequestsQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    let msisdn = match query
        .msisdn
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        Some(raw) => Some(msisdn_param("msisdn", raw)?),
        None => None,
    };
    let rows = db::provisioning_requests(&state.pool, msisdn.as_ref().map(Msisdn::e164))
        .await
        .map_err(|e| db_error(&e))?;
    let requests: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            json!({
                "msisdn": r.msisdn,
                "action": r.action,
                "idempotency_key": r.idempotency_key,
                "received_at": r.received_at,
                "restoration": r.restoration,
                "outcome": r.outcome,
                "status": r.status,
            })
        })
        .collect();
    Ok(Json(json!(requests)))
}

async fn get_faults(State(state): State<AppState>) -> Json<Faults> {
    Json(state.faults())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsBody {
    provisioning_failure_rate: Option<f64>,
    provisioning_latency_ms: Option<i64>,
}

/// Sets the provisioning faults; a field left out keeps its value. 200 with the faults.
async fn set_faults(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<FaultsBody>,
) -> Result<Json<Faults>, Problem> {
    let mut faults = state.faults();
    if let Some(rate) = body.provisioning_failure_rate {
        if !(0.0..=1.0).contains(&rate) {
            return Err(invalid_field(
                "provisioning_failure_rate",
                "must be between 0.0 and 1.0",
            ));
        }
        faults.provisioning_failure_rate = rate;
    }
    if let Some(latency) = body.provisioning_latency_ms {
        let latency = u64::try_from(latency)
            .ok()
            .filter(|l| *l <= MAX_LATENCY_MS)
            .ok_or_else(|| {
                invalid_field(
                    "provisioning_latency_ms",
                    format!("must be between 0 and {MAX_LATENCY_MS}"),
                )
            })?;
        faults.provisioning_latency_ms = latency;
    }
    state.set_faults(faults);
    tracing::info!(
        failure_rate = faults.provisioning_failure_rate,
        latency_ms = faults.provisioning_latency_ms,
        "simulated provisioning faults set"
    );
    Ok(Json(faults))
}
