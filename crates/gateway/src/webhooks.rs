//! Webhooks at the edge: the carrier's webhooks in (`POST /v1/webhooks/carrier`,
//! verified per Standard Webhooks on the raw body before anything is stored, stored
//! once per webhook-id, processed by the webhooks service), and the admin API of
//! outbound endpoints (`/v1/agent/webhook-endpoints…`: register with an SSRF check,
//! list, delete, read the delivery log).

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use case_domain::Role;
use case_store::{
    audit::{self, AuditEntry},
    webhooks as store,
};
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use service_runtime::Problem;
use utoipa::ToSchema;
use uuid::Uuid;
use webhooks::{
    CaseEventType, DestinationPolicy, EventError, ReceivedHeaders, Secret, parse_carrier_event,
    parse_endpoint_url, resolve_checked,
};

use crate::{
    AppState,
    agent_auth::AgentSession,
    error::{ApiError, FieldError},
    extract::parse_json,
};

/// The webhook settings the gateway needs.
#[derive(Debug, Clone, Default)]
pub struct WebhookConfig {
    /// Secrets accepted on carrier webhooks (`REACTIVATION_CARRIER_WEBHOOK_SECRETS`).
    pub carrier_secrets: Arc<Vec<Secret>>,
    /// Which outbound destinations may be registered.
    pub policy: DestinationPolicy,
}

/// Admins manage outbound endpoints.
pub const ENDPOINT_ADMINS: &[Role] = &[Role::Admin];
/// Deliveries listed per request (newest first).
const DELIVERY_LOG_LIMIT: i64 = 100;
/// Event types one endpoint may subscribe to at most.
const MAX_EVENT_TYPES: usize = 10;

// ---------------------------------------------------------------- inbound

/// The body of a carrier webhook (documentation of what is validated).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CarrierWebhook {
    /// `subscriber.suspended`, `subscriber.signals` or `provisioning.completed`.
    #[serde(rename = "type")]
    #[schema(example = "subscriber.suspended")]
    pub kind: String,
    /// When it happened (RFC 3339).
    pub timestamp: DateTime<Utc>,
    /// `subscriber.suspended`: `{"msisdn", "reason", "suspended_at"?}`.
    /// `subscriber.signals`: `{"msisdn", "signals": {"fraud_linked_contacts", "sms_peak_per_hour", "intl_calls_24h", "flagged_contacts"?}, "suspension_reason"?}`.
    /// `provisioning.completed`: `{"order_id", "msisdn", "restoration": "full"|"inbound_only", "carrier_ref"?}`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// The acknowledgment of a carrier webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReceipt {
    /// The webhook-id.
    pub webhook_id: String,
    /// True when this id was received before (acknowledged, not processed again).
    pub duplicate: bool,
}

fn unverified(detail: String) -> Response {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "webhook-not-verified",
        "Webhook not verified",
        detail,
    )
    .into_response()
}

/// Receives a carrier webhook (Standard Webhooks): verified on the raw body, stored
/// once per `webhook-id`, processed asynchronously by the webhooks service.
#[utoipa::path(
    post, path = "/v1/webhooks/carrier", tag = "webhooks",
    params(
        ("webhook-id" = String, Header, description = "Message id; a repeated id is acknowledged and not processed again"),
        ("webhook-timestamp" = String, Header, description = "Unix seconds; more than 5 minutes off is refused"),
        ("webhook-signature" = String, Header, description = "Space-separated `v1,<base64 HMAC-SHA256 of {id}.{timestamp}.{body}>`"),
    ),
    request_body(content = CarrierWebhook, content_type = "application/json"),
    responses(
        (status = 200, description = "Accepted (queued), or a repeated webhook-id acknowledged", body = WebhookReceipt),
        (status = 400, description = "The body is not a JSON object", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing header, bad signature, or a timestamp more than 5 minutes off; nothing stored", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Unknown event type or invalid data; nothing stored", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No carrier webhook secret is configured", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn receive_carrier(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WebhookReceipt>, Response> {
    let secrets = &state.webhooks.carrier_secrets;
    if secrets.is_empty() {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhooks-not-configured",
            "Webhooks not configured",
            "This gateway has no carrier webhook secret (REACTIVATION_CARRIER_WEBHOOK_SECRETS).",
        )
        .into_response());
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge("The webhook body is too large.".into()).into_response()
        } else {
            ApiError::Malformed("The body could not be read.".into()).into_response()
        }
    })?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let received = ReceivedHeaders {
        id: header(webhooks::signature::HEADER_ID),
        timestamp: header(webhooks::signature::HEADER_TIMESTAMP),
        signature: header(webhooks::signature::HEADER_SIGNATURE),
    };
    let verified =
        webhooks::verify(secrets, received, &body, Utc::now().timestamp()).map_err(|e| {
            ::metrics::counter!("carrier_webhooks_received_total", "outcome" => "unverified", "type" => "unknown")
                .increment(1);
            tracing::warn!(error.message = %e, "carrier webhook refused");
            unverified(format!("The webhook was not verified: {e}."))
        })?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::Malformed("The body is not valid JSON.".into()).into_response())?;
    // Stored as jsonb, which cannot hold a NUL character.
    crate::extract::refuse_nul_json(&value).map_err(IntoResponse::into_response)?;
    let event = parse_carrier_event(&value).map_err(|e| {
        ::metrics::counter!("carrier_webhooks_received_total", "outcome" => "invalid", "type" => "unknown").increment(1);
        match e {
            EventError::NotAnObject => {
                ApiError::Malformed("The body must be a JSON object.".into()).into_response()
            }
            EventError::UnknownType => ApiError::Invalid(vec![FieldError {
                field: "type".into(),
                message: format!(
                    "unknown event type (known: {})",
                    webhooks::events::CARRIER_EVENT_TYPES.join(", ")
                ),
            }])
            .into_response(),
            EventError::Invalid(errors) => ApiError::Invalid(
                errors
                    .into_iter()
                    .map(|(field, message)| FieldError { field, message })
                    .collect(),
            )
            .into_response(),
        }
    })?;
    let new = store::receive_carrier_webhook(&state.pool, &verified.id, event.type_name(), &value)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    let outcome = if new { "accepted" } else { "duplicate" };
    ::metrics::counter!("carrier_webhooks_received_total", "outcome" => outcome, "type" => event.type_name()).increment(1);
    tracing::info!(webhook_id = %verified.id, kind = event.type_name(), duplicate = !new, "carrier webhook received");
    Ok(Json(WebhookReceipt {
        webhook_id: verified.id,
        duplicate: !new,
    }))
}

// ---------------------------------------------------------------- outbound (admin)

/// A new outbound endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// Where to POST (http or https, public addresses only).
    #[schema(example = "https://carrier.example.com/hooks/reactivation")]
    pub url: String,
    /// What to send: `case.state_changed`, `case.opened`.
    #[schema(example = json!(["case.state_changed"]))]
    pub event_types: Vec<String>,
}

/// A registered outbound endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct Endpoint {
    /// Endpoint id.
    pub id: Uuid,
    /// Where deliveries go.
    pub url: String,
    /// Subscribed event types.
    pub event_types: Vec<String>,
    /// False once the receiver answered 410 Gone.
    pub enabled: bool,
    /// When it was disabled.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why.
    pub disabled_reason: Option<String>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// A just-registered endpoint, with its signing secret (shown only this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedEndpoint {
    /// Endpoint id.
    pub id: Uuid,
    /// Where deliveries go.
    pub url: String,
    /// Subscribed event types.
    pub event_types: Vec<String>,
    /// True.
    pub enabled: bool,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// The `whsec_` secret that signs every delivery (Standard Webhooks). Shown once.
    pub secret: String,
}

/// How long the replaced secret keeps signing after a rotation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// Hours (1–168, default 24) during which deliveries carry a signature under the
    /// previous secret as well as the new one.
    pub overlap_hours: Option<u32>,
}

/// A rotated secret (shown only this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    /// Endpoint id.
    pub id: Uuid,
    /// The new `whsec_` secret. Shown once.
    pub secret: String,
    /// Until when deliveries are signed under the previous secret too.
    pub previous_valid_until: DateTime<Utc>,
}

/// The longest overlap window of a secret rotation (a week).
pub const MAX_OVERLAP_HOURS: u32 = 168;

/// The registered endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    /// Oldest first.
    pub endpoints: Vec<Endpoint>,
}

/// One attempt in the delivery log.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryAttempt {
    /// Attempt number.
    pub attempt: i32,
    /// When it ended.
    pub at: DateTime<Utc>,
    /// The receiver's status, if it answered.
    pub status_code: Option<i32>,
    /// What went wrong.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: i32,
}

/// One delivery (a message to the endpoint) and its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    /// Delivery id, sent as `webhook-id`.
    pub id: Uuid,
    /// The case event it reports.
    pub event_id: Uuid,
    /// Event type.
    pub event_type: String,
    /// `pending`, `delivered`, `failed` or `cancelled`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Last HTTP status.
    pub last_status: Option<i32>,
    /// Last error.
    pub last_error: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stopped being pending.
    pub finished_at: Option<DateTime<Utc>>,
    /// The body sent.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Every attempt, first to last.
    pub log: Vec<DeliveryAttempt>,
}

/// An endpoint's delivery log.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryLog {
    /// Newest first, at most 100.
    pub deliveries: Vec<Delivery>,
}

fn endpoint_json(row: store::EndpointRow) -> Endpoint {
    Endpoint {
        id: row.id,
        url: row.url,
        event_types: row.event_types,
        enabled: row.disabled_at.is_none(),
        disabled_at: row.disabled_at,
        disabled_reason: row.disabled_reason,
        created_at: row.created_at,
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::Invalid(vec![FieldError {
        field: field.into(),
        message: message.into(),
    }])
}

/// Checks a URL against SSRF: parsed, http(s), no credentials, and every address
/// the host resolves to (A and AAAA) public, unless the development setting allows
/// loopback and private ranges.
pub async fn check_destination(raw: &str, policy: DestinationPolicy) -> Result<String, ApiError> {
    let endpoint =
        parse_endpoint_url(raw, policy).map_err(|e| invalid("url", format!("the URL {e}")))?;
    resolve_checked(&endpoint, policy, |host, port| async move {
        tokio::net::lookup_host((host.as_str(), port))
            .await
            .map(|found| found.collect::<Vec<SocketAddr>>())
    })
    .await
    .map_err(|e| invalid("url", format!("the URL {e}")))?;
    Ok(endpoint.as_str().to_owned())
}

fn event_types(requested: &[String]) -> Result<Vec<String>, ApiError> {
    if requested.is_empty() || requested.len() > MAX_EVENT_TYPES {
        return Err(invalid(
            "event_types",
            format!("must list 1 to {MAX_EVENT_TYPES} event types"),
        ));
    }
    let mut types: Vec<String> = Vec::new();
    for (i, name) in requested.iter().enumerate() {
        let Some(kind) = CaseEventType::parse(name) else {
            let known: Vec<&str> = CaseEventType::ALL.iter().map(|t| t.as_str()).collect();
            return Err(invalid(
                &format!("event_types[{i}]"),
                format!("is not an event type (known: {})", known.join(", ")),
            ));
        };
        if !types.iter().any(|t| t == kind.as_str()) {
            types.push(kind.as_str().to_owned());
        }
    }
    Ok(types)
}

fn endpoint_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound)
}

/// Registers an outbound webhook endpoint; the answer shows its signing secret once.
#[utoipa::path(
    post, path = "/v1/agent/webhook-endpoints", tag = "webhooks",
    request_body = NewEndpoint,
    security(("agent_token" = [])),
    responses(
        (status = 201, description = "Registered; `secret` is shown only now", body = CreatedEndpoint),
        (status = 400, description = "Malformed body", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Unknown event type, or a URL that is not http(s), has credentials, does not resolve, or points at a loopback, private, link-local, metadata or otherwise reserved address", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn create_endpoint(
    State(state): State<AppState>,
    session: AgentSession,
    body: Bytes,
) -> Result<Response, ApiError> {
    session.require_any(ENDPOINT_ADMINS)?;
    let (request, _): (NewEndpoint, _) = parse_json(&body)?;
    let types = event_types(&request.event_types)?;
    let url = check_destination(&request.url, state.webhooks.policy).await?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = Secret::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("secret: {e}"))?;
    let id = Uuid::now_v7();
    let sealed = state.keys.encrypt(&secret.to_whsec(), &id);
    let mut tx = state.pool.begin().await.map_err(anyhow::Error::from)?;
    let row =
        store::create_endpoint(&mut *tx, id, &url, &types, &sealed, Some(session.id())).await?;
    audit::record(
        &mut tx,
        &AuditEntry {
            actor: &session.actor(Role::Admin),
            action: "webhook_endpoint.create",
            case_id: None,
            detail: serde_json::json!({ "endpoint_id": id, "event_types": types }),
            reason: None,
        },
    )
    .await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    tracing::info!(endpoint_id = %id, event_types = ?row.event_types, "webhook endpoint registered");
    let body = CreatedEndpoint {
        id: row.id,
        url: row.url,
        event_types: row.event_types,
        enabled: true,
        created_at: row.created_at,
        secret: secret.to_whsec(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Rotates an endpoint's signing secret. Until the overlap window ends, every delivery
/// carries two signatures (new and previous secret), so the receiver can switch at
/// leisure; afterwards only the new one.
#[utoipa::path(
    post, path = "/v1/agent/webhook-endpoints/{endpoint_id}/rotate-secret", tag = "webhooks",
    params(("endpoint_id" = Uuid, Path, description = "Endpoint id")),
    security(("agent_token" = [])),
    request_body = RotateSecret,
    responses(
        (status = 200, description = "Rotated; `secret` is shown only now", body = RotatedSecret),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "overlap_hours out of 1–168", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    session: AgentSession,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Json<RotatedSecret>, ApiError> {
    session.require_any(ENDPOINT_ADMINS)?;
    let id = endpoint_id(&raw)?;
    let request: RotateSecret = if body.is_empty() {
        RotateSecret::default()
    } else {
        parse_json(&body)?.0
    };
    let hours = request.overlap_hours.unwrap_or(24);
    if !(1..=MAX_OVERLAP_HOURS).contains(&hours) {
        return Err(ApiError::Invalid(vec![crate::error::FieldError::new(
            "overlap_hours",
            format!("must be between 1 and {MAX_OVERLAP_HOURS}"),
        )]));
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = Secret::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("secret: {e}"))?;
    let sealed = state.keys.encrypt(&secret.to_whsec(), &id);
    let until = Utc::now() + chrono::Duration::hours(i64::from(hours));
    let mut tx = state.pool.begin().await.map_err(anyhow::Error::from)?;
    if !store::rotate_endpoint_secret(&mut *tx, id, &sealed, until).await? {
        return Err(ApiError::NotFound);
    }
    audit::record(
        &mut tx,
        &AuditEntry {
            actor: &session.actor(Role::Admin),
            action: "webhook_endpoint.rotate_secret",
            case_id: None,
            detail: serde_json::json!({ "endpoint_id": id, "overlap_hours": hours }),
            reason: None,
        },
    )
    .await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    tracing::info!(endpoint_id = %id, overlap_hours = hours, "webhook endpoint secret rotated");
    Ok(Json(RotatedSecret {
        id,
        secret: secret.to_whsec(),
        previous_valid_until: until,
    }))
}

/// The registered outbound webhook endpoints (without secrets).
#[utoipa::path(
    get, path = "/v1/agent/webhook-endpoints", tag = "webhooks",
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "The endpoints", body = EndpointList),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list_endpoints(
    State(state): State<AppState>,
    session: AgentSession,
) -> Result<Json<EndpointList>, ApiError> {
    session.require_any(ENDPOINT_ADMINS)?;
    let rows = store::list_endpoints(&state.pool).await?;
    Ok(Json(EndpointList {
        endpoints: rows.into_iter().map(endpoint_json).collect(),
    }))
}

/// Deletes an endpoint: nothing more is sent to it and its secret is destroyed; its
/// delivery log is kept.
#[utoipa::path(
    delete, path = "/v1/agent/webhook-endpoints/{endpoint_id}", tag = "webhooks",
    params(("endpoint_id" = Uuid, Path, description = "Endpoint id")),
    security(("agent_token" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    session: AgentSession,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    session.require_any(ENDPOINT_ADMINS)?;
    let id = endpoint_id(&raw)?;
    let mut tx = state.pool.begin().await.map_err(anyhow::Error::from)?;
    if !store::delete_endpoint(&mut tx, id).await? {
        return Err(ApiError::NotFound);
    }
    audit::record(
        &mut tx,
        &AuditEntry {
            actor: &session.actor(Role::Admin),
            action: "webhook_endpoint.delete",
            case_id: None,
            detail: serde_json::json!({ "endpoint_id": id }),
            reason: None,
        },
    )
    .await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    tracing::info!(endpoint_id = %id, "webhook endpoint deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The endpoint's delivery log: its newest deliveries and every attempt.
#[utoipa::path(
    get, path = "/v1/agent/webhook-endpoints/{endpoint_id}/deliveries", tag = "webhooks",
    params(("endpoint_id" = Uuid, Path, description = "Endpoint id")),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Newest first, at most 100", body = DeliveryLog),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn deliveries(
    State(state): State<AppState>,
    session: AgentSession,
    Path(raw): Path<String>,
) -> Result<Json<DeliveryLog>, ApiError> {
    session.require_any(ENDPOINT_ADMINS)?;
    let id = endpoint_id(&raw)?;
    let mut conn = state.pool.acquire().await.map_err(anyhow::Error::from)?;
    if store::load_endpoint(&mut *conn, id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let log = store::delivery_log(&mut conn, id, DELIVERY_LOG_LIMIT).await?;
    Ok(Json(DeliveryLog {
        deliveries: log
            .into_iter()
            .map(|(d, attempts)| Delivery {
                next_attempt_at: (d.status == "pending").then_some(d.next_attempt_at),
                id: d.id,
                event_id: d.event_id,
                event_type: d.event_type,
                status: d.status,
                attempts: d.attempts,
                last_status: d.last_status,
                last_error: d.last_error,
                created_at: d.created_at,
                finished_at: d.finished_at,
                payload: d.payload,
                log: attempts
                    .into_iter()
                    .map(|a| DeliveryAttempt {
                        attempt: a.attempt,
                        at: a.attempted_at,
                        status_code: a.status_code,
                        error: a.error,
                        duration_ms: a.duration_ms,
                    })
                    .collect(),
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_checked_and_deduplicated() {
        assert_eq!(
            event_types(&["case.state_changed".into(), "case.state_changed".into()]).unwrap(),
            ["case.state_changed"]
        );
        for bad in [vec![], vec!["case.deleted".to_owned()]] {
            assert!(matches!(event_types(&bad), Err(ApiError::Invalid(_))));
        }
    }

    #[tokio::test]
    async fn private_destinations_are_refused_unless_allowed() {
        let strict = DestinationPolicy::default();
        for url in [
            "http://127.0.0.1:9/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://0x7f000001/",
            "http://[::1]/",
            "http://localhost:9/",
            "ftp://example.com/",
        ] {
            match check_destination(url, strict).await {
                Err(ApiError::Invalid(errors)) => assert_eq!(errors[0].field, "url", "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
        let dev = DestinationPolicy {
            allow_private: true,
        };
        assert!(
            check_destination("http://127.0.0.1:9/hook", dev)
                .await
                .is_ok()
        );
        assert!(
            check_destination("http://169.254.169.254/", dev)
                .await
                .is_err()
        );
    }
}
