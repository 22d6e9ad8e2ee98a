//! The carrier API (`/carrier/v1/*`): what the product's `carrier-adapter` calls.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use case_domain::{PersonName, ResidentId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use service_runtime::Problem;
use uuid::Uuid;

use crate::{
    db::{self, Cancellation, NewMessage, OrderRow, Submitted},
    extract::{ApiJson, ApiPath, idempotency_key, internal, invalid, invalid_field, msisdn_param},
    model::{ContactKind, FieldError, mask_address},
    state::{AppState, Fault},
    subscribers,
};

/// Longest message body accepted, in characters.
const MAX_BODY_CHARS: usize = 2_000;
/// Most counterparties in one call-record check.
const MAX_COUNTERPARTIES: usize = 100;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/carrier/v1/subscribers/match", post(subscriber_match))
        .route(
            "/carrier/v1/subscribers/{msisdn}/service-password/verify",
            post(verify_password),
        )
        .route("/carrier/v1/subscribers/{msisdn}/contacts", get(contacts))
        .route(
            "/carrier/v1/subscribers/{msisdn}/call-records/check",
            post(call_records_check),
        )
        .route(
            "/carrier/v1/subscribers/{msisdn}/risk-signals",
            get(risk_signals),
        )
        .route("/carrier/v1/messages", post(send_message))
        .route("/carrier/v1/serviceOrder", post(submit_order))
        .route("/carrier/v1/serviceOrder/{external_id}", get(get_order))
        .route("/carrier/v1/cancelServiceOrder", post(cancel_order))
}

fn db_error(e: &sqlx::Error) -> Problem {
    internal("carrier simulator database call failed", e)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchBody {
    msisdn: String,
    full_name: String,
    id_number: String,
}

/// Yes or no: does the number belong to this name and ID? `false` for unknown numbers.
async fn subscriber_match(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<MatchBody>,
) -> Result<Json<serde_json::Value>, Problem> {
    let mut errors = Vec::new();
    let msisdn = case_domain::Msisdn::parse(&body.msisdn)
        .map_err(|e| {
            errors.push(FieldError {
                field: "msisdn".into(),
                detail: e.to_string(),
            })
        })
        .ok();
    let name = PersonName::parse(&body.full_name)
        .map_err(|e| {
            errors.push(FieldError {
                field: "full_name".into(),
                detail: e.to_string(),
            })
        })
        .ok();
    let id = ResidentId::parse(&body.id_number)
        .map_err(|e| {
            errors.push(FieldError {
                field: "id_number".into(),
                detail: e.to_string(),
            })
        })
        .ok();
    let (Some(msisdn), Some(name), Some(id)) = (msisdn, name, id) else {
        return Err(invalid(&errors));
    };
    let row = db::subscriber(&state.pool, msisdn.e164())
        .await
        .map_err(|e| db_error(&e))?;
    let matches = row.is_some_and(|r| r.full_name == name.expose() && r.id_number == id.expose());
    Ok(Json(json!({ "match": matches })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
}

/// Whether the password is the number's service password; `false` for unknown numbers.
async fn verify_password(
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<Json<serde_json::Value>, Problem> {
    let msisdn = msisdn_param("msisdn", &raw)?;
    state.count_check(msisdn.e164(), "service_password");
    let hash = db::subscriber(&state.pool, msisdn.e164())
        .await
        .map_err(|e| db_error(&e))?
        .and_then(|r| r.password_hash);
    let valid = match hash {
        Some(hash) => subscribers::verify_password(hash, body.password).await,
        None => false,
    };
    Ok(Json(json!({ "valid": valid })))
}

#[derive(Serialize)]
struct ContactOut {
    kind: ContactKind,
    masked: String,
}

/// The backup contacts on file, masked. 404 for unknown numbers.
async fn contacts(
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let msisdn = msisdn_param("msisdn", &raw)?;
    let row = db::subscriber(&state.pool, msisdn.e164())
        .await
        .map_err(|e| db_error(&e))?
        .ok_or_else(Problem::not_found)?;
    let contacts: Vec<ContactOut> = row
        .backup_contacts
        .0
        .iter()
        .map(|c| ContactOut {
            kind: c.kind,
            masked: mask_address(c.kind, &c.address),
        })
        .collect();
    Ok(Json(json!({ "contacts": contacts })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    counterparties: Vec<String>,
}

/// How many of the given numbers (distinct) are recent counterparties; 0 for unknown numbers.
async fn call_records_check(
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<CheckBody>,
) -> Result<Json<serde_json::Value>, Problem> {
    let msisdn = msisdn_param("msisdn", &raw)?;
    state.count_check(msisdn.e164(), "call_records");
    if body.counterparties.len() > MAX_COUNTERPARTIES {
        return Err(invalid_field(
            "counterparties",
            format!("at most {MAX_COUNTERPARTIES} numbers"),
        ));
    }
    let mut asked: Vec<String> = Vec::new();
    for (i, raw) in body.counterparties.iter().enumerate() {
        let number = msisdn_param(&format!("counterparties[{i}]"), raw)?;
        if !asked.iter().any(|n| n == number.e164()) {
            asked.push(number.e164().to_owned());
        }
    }
    let recent = db::subscriber(&state.pool, msisdn.e164())
        .await
        .map_err(|e| db_error(&e))?
        .map(|r| r.recent_contacts)
        .unwrap_or_default();
    let matched = asked.iter().filter(|n| recent.contains(n)).count();
    Ok(Json(json!({ "matched": matched })))
}

/// The anti-fraud signals. 404 for unknown numbers.
async fn risk_signals(
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let msisdn = msisdn_param("msisdn", &raw)?;
    let row = db::subscriber(&state.pool, msisdn.e164())
        .await
        .map_err(|e| db_error(&e))?
        .ok_or_else(Problem::not_found)?;
    Ok(Json(json!({
        "fraud_linked_contacts": row.fraud_linked_contacts,
        "sms_peak_per_hour": row.sms_peak_per_hour,
        "intl_calls_24h": row.intl_calls_24h,
        "suspension_reason": row.suspension_reason,
        "flagged_contacts": row.flagged_contacts,
    })))
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Channel {
    Sms,
    Email,
    Any,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    msisdn: String,
    channel: Channel,
    body: String,
}

fn no_contact() -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "no-contact-on-file",
        "No contact on file",
        "The subscriber has no contact of that kind on file.",
    )
}

/// Sends a message to a contact on file of the asked kind (`any`: SMS first). The same
/// idempotency key again answers the first receipt and sends nothing.
async fn send_message(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<MessageBody>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let msisdn = msisdn_param("msisdn", &body.msisdn)?;
    let length = body.body.chars().count();
    if !(1..=MAX_BODY_CHARS).contains(&length) {
        return Err(invalid_field(
            "body",
            format!("must be 1 to {MAX_BODY_CHARS} characters"),
        ));
    }
    let receipt = |m: &db::MessageRow| {
        (
            StatusCode::ACCEPTED,
            Json(json!({
                "message_id": m.message_id,
                "sent_to_masked": m.sent_to_masked,
                "kind": m.kind,
            })),
        )
            .into_response()
    };
    if let Some(earlier) = db::message_by_key(&state.pool, &key)
        .await
        .map_err(|e| db_error(&e))?
    {
        return Ok(receipt(&earlier));
    }
    let row = db::subscriber(&state.pool, msisdn.e164())
        .await
        .map_err(|e| db_error(&e))?
        .ok_or_else(no_contact)?;
    let contacts = &row.backup_contacts.0;
    let of_kind = |kind: ContactKind| contacts.iter().find(|c| c.kind == kind);
    let contact = match body.channel {
        Channel::Sms => of_kind(ContactKind::Sms),
        Channel::Email => of_kind(ContactKind::Email),
        Channel::Any => of_kind(ContactKind::Sms).or_else(|| of_kind(ContactKind::Email)),
    }
    .ok_or_else(no_contact)?;
    let masked = mask_address(contact.kind, &contact.address);
    let sent = db::insert_message(
        &state.pool,
        &NewMessage {
            key: &key,
            msisdn: msisdn.e164(),
            kind: contact.kind.as_str(),
            to_address: &contact.address,
            sent_to_masked: &masked,
            body: &body.body,
        },
    )
    .await
    .map_err(|e| db_error(&e))?;
    tracing::info!(msisdn = %msisdn, kind = contact.kind.as_str(), to = %masked, "message sent");
    Ok(receipt(&sent))
}

#[derive(Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Restoration {
    Full,
    InboundOnly,
}

impl Restoration {
    fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::InboundOnly => "inbound_only",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderBody {
    #[serde(rename = "externalId")]
    external_id: Uuid,
    msisdn: String,
    action: String,
    restoration: Restoration,
}

fn order_json(order: &OrderRow) -> serde_json::Value {
    json!({
        "id": order.carrier_ref,
        "externalId": order.external_id,
        "action": order.action,
        "state": order.state(),
        "restoration": order.restoration,
        "orderDate": order.created_at,
        "completionDate": order.completed_at,
    })
}

fn provisioning_unavailable() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "provisioning-unavailable",
        "Provisioning unavailable",
        "The provisioning system did not answer; retry with the same Idempotency-Key.",
    )
}

/// Creates a resume order (TMF641 style), deduplicated on `externalId`, which must equal
/// the `Idempotency-Key`. Every call with a valid body is recorded for
/// `/sim/provisioning-requests`, failed and duplicate ones included.
async fn submit_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<OrderBody>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    if Uuid::parse_str(&key).ok() != Some(body.external_id) {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-mismatch",
            "Idempotency key mismatch",
            "The Idempotency-Key header must equal the order's externalId.",
        ));
    }
    let msisdn = msisdn_param("msisdn", &body.msisdn)?;
    if body.action != "resume" {
        return Err(invalid_field(
            "action",
            "the only supported action is `resume`",
        ));
    }
    let (fault, faults) = state.draw_fault();
    let order = db::NewOrder {
        external_id: body.external_id,
        msisdn: msisdn.e164(),
        action: "resume",
        restoration: body.restoration.as_str(),
        latency_ms: i64::try_from(faults.provisioning_latency_ms).unwrap_or(i64::MAX),
    };
    if fault == Fault::BeforeRecording {
        db::record_unprocessed_request(&state.pool, &order, 503)
            .await
            .map_err(|e| db_error(&e))?;
        tracing::info!(msisdn = %msisdn, "provisioning fault injected before recording");
        return Err(provisioning_unavailable());
    }
    let lost = (fault == Fault::AfterRecording).then_some(503);
    let submitted = db::submit_order(&state.pool, &order, lost)
        .await
        .map_err(|e| db_error(&e))?;
    let (status, row) = match submitted {
        Submitted::Conflict => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
                "An order with this externalId exists with another number, action or restoration.",
            ));
        }
        Submitted::Created(row) => (StatusCode::CREATED, row),
        Submitted::Duplicate(row) => (StatusCode::OK, row),
    };
    if lost.is_some() {
        tracing::info!(msisdn = %msisdn, "provisioning fault injected after recording");
        return Err(provisioning_unavailable());
    }
    tracing::info!(msisdn = %msisdn, state = row.state(), status = status.as_u16(), "service order");
    // A completed order is reported by webhook at once.
    state.webhooks.sweep.notify_one();
    Ok((status, Json(order_json(&row))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelledOrderRef {
    #[serde(rename = "externalId")]
    external_id: Uuid,
    msisdn: String,
    restoration: Restoration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    #[serde(rename = "serviceOrder")]
    service_order: CancelledOrderRef,
    #[serde(rename = "cancellationReason", default)]
    cancellation_reason: Option<String>,
}

/// Cancels an order (TMF641 `cancelServiceOrder`), keyed like the order itself: the
/// `Idempotency-Key` must equal `serviceOrder.externalId`. Answers the cancellation
/// (`state` `done` when the order will never take effect, `terminatedWithError` when it
/// had already completed or failed) with the order as it now stands: 201 when this call
/// cancelled it, 200 when it was cancelled before or was too late. An order the
/// simulator never received is recorded as cancelled, so a late copy does nothing.
/// Every call with a valid body is recorded for `/sim/provisioning-requests` (action
/// `cancel`).
async fn cancel_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CancelBody>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let order_ref = &body.service_order;
    if Uuid::parse_str(&key).ok() != Some(order_ref.external_id) {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-mismatch",
            "Idempotency key mismatch",
            "The Idempotency-Key header must equal serviceOrder.externalId.",
        ));
    }
    if body
        .cancellation_reason
        .as_deref()
        .is_some_and(|r| r.chars().count() > 500)
    {
        return Err(invalid_field(
            "cancellationReason",
            "must be at most 500 characters",
        ));
    }
    let msisdn = msisdn_param("serviceOrder.msisdn", &order_ref.msisdn)?;
    let order = db::NewOrder {
        external_id: order_ref.external_id,
        msisdn: msisdn.e164(),
        action: "cancel",
        restoration: order_ref.restoration.as_str(),
        latency_ms: 0,
    };
    let cancellation = db::cancel_order(&state.pool, &order)
        .await
        .map_err(|e| db_error(&e))?;
    let (status, cancel_state, row) = match cancellation {
        Cancellation::Conflict => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
                "An order with this externalId exists with another number or restoration.",
            ));
        }
        Cancellation::Cancelled(row, true) => (StatusCode::CREATED, "done", row),
        Cancellation::Cancelled(row, false) => (StatusCode::OK, "done", row),
        Cancellation::TooLate(row) => (StatusCode::OK, "terminatedWithError", row),
    };
    tracing::info!(msisdn = %msisdn, state = cancel_state, order_state = row.state(), "service order cancellation");
    // Settling may have completed orders: report them.
    state.webhooks.sweep.notify_one();
    Ok((
        status,
        Json(json!({
            "id": format!("CSO-{}", row.carrier_ref.trim_start_matches("SO-")),
            "state": cancel_state,
            "cancellationReason": body.cancellation_reason,
            "serviceOrder": order_json(&row),
        })),
    )
        .into_response())
}

/// The order with its current state. 404 for unknown orders.
async fn get_order(
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let Ok(external_id) = Uuid::parse_str(&raw) else {
        return Err(Problem::not_found());
    };
    let row = db::order(&state.pool, external_id)
        .await
        .map_err(|e| db_error(&e))?
        .ok_or_else(Problem::not_found)?;
    Ok(Json(order_json(&row)))
}
