//! Dead letters: the items the product's queues gave up on (outbox messages, carrier
//! webhooks, outbound deliveries that reached their attempt ceiling or were given up),
//! listed for admins and put back on their queue by an admin retry (audited).
//! The store side is `case_store::queue`.

use axum::{
    Json,
    extract::{Path, State},
};
use case_domain::Role;
use case_store::{
    audit::{self, AuditEntry},
    queue,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{AppState, agent_auth::AgentSession, error::ApiError};

/// Admins see and retry dead letters.
pub const DEAD_LETTER_ADMINS: &[Role] = &[Role::Admin];
/// Dead items listed per queue (newest first).
const LIST_LIMIT: i64 = 50;

/// One dead item: ids and outcome, no payload and no personal data.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetter {
    /// `outbox`, `carrier_webhooks` or `webhook_deliveries`.
    pub queue: String,
    /// The item's id (a UUID, or the carrier's webhook-id).
    pub id: String,
    /// Its topic (outbox) or event type.
    pub kind: String,
    /// Attempts made.
    pub attempts: i32,
    /// The last error, without personal data.
    pub last_error: Option<String>,
    /// When it was given up.
    pub died_at: Option<DateTime<Utc>>,
}

impl From<queue::DeadItem> for DeadLetter {
    fn from(d: queue::DeadItem) -> Self {
        Self {
            queue: d.queue,
            id: d.id,
            kind: d.kind,
            attempts: d.attempts,
            last_error: d.last_error,
            died_at: d.died_at,
        }
    }
}

/// One queue's dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueDeadLetters {
    /// The queue.
    pub queue: String,
    /// How many items it holds dead in all.
    pub dead: i64,
    /// Attempts an item gets before it dies.
    pub max_attempts: i32,
    /// The newest dead items, at most 50, newest first.
    pub items: Vec<DeadLetter>,
}

/// Every queue's dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterList {
    /// Per queue: outbox, carrier_webhooks, webhook_deliveries.
    pub queues: Vec<QueueDeadLetters>,
}

/// Lists each queue's dead letters, newest first.
#[utoipa::path(
    get, path = "/v1/agent/admin/dead-letters", tag = "agent",
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Per queue: the count and the newest dead items (at most 50)", body = DeadLetterList),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    session: AgentSession,
) -> Result<Json<DeadLetterList>, ApiError> {
    session.require_any(DEAD_LETTER_ADMINS)?;
    let counts = queue::dead_counts(&state.pool).await?;
    let mut queues = Vec::with_capacity(queue::ALL.len());
    for q in queue::ALL {
        let items = queue::list_dead(&state.pool, &q, LIST_LIMIT).await?;
        queues.push(QueueDeadLetters {
            queue: q.name.to_owned(),
            dead: counts
                .iter()
                .find(|(name, _)| *name == q.name)
                .map_or(0, |(_, n)| *n),
            max_attempts: q.max_attempts,
            items: items.into_iter().map(DeadLetter::from).collect(),
        });
    }
    Ok(Json(DeadLetterList { queues }))
}

/// Puts a dead item back on its queue: pending, due now, attempts from zero. Audited.
#[utoipa::path(
    post, path = "/v1/agent/admin/dead-letters/{queue}/{id}/retry", tag = "agent",
    params(
        ("queue" = String, Path, description = "outbox, carrier_webhooks or webhook_deliveries"),
        ("id" = String, Path, description = "The dead item's id"),
    ),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "Requeued; the item as it was when dead", body = DeadLetter),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins only", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such queue, or no dead item with that id in it", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    session: AgentSession,
    Path((queue_name, id)): Path<(String, String)>,
) -> Result<Json<DeadLetter>, ApiError> {
    session.require_any(DEAD_LETTER_ADMINS)?;
    let q = queue::by_name(&queue_name).ok_or(ApiError::NotFound)?;
    let mut tx = state.pool.begin().await.map_err(anyhow::Error::from)?;
    let was = queue::requeue(&mut *tx, &q, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    audit::record(
        &mut tx,
        &AuditEntry {
            actor: &session.actor(Role::Admin),
            action: "dead_letter.retry",
            case_id: None,
            detail: serde_json::json!({
                "queue": q.name,
                "id": was.id,
                "kind": was.kind,
                "attempts": was.attempts,
            }),
            reason: None,
        },
    )
    .await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    tracing::info!(queue = q.name, item = %was.id, "dead letter requeued by an admin");
    Ok(Json(was.into()))
}
