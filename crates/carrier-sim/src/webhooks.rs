//! The simulator's webhooks to the product: `subscriber.suspended`,
//! `subscriber.signals` and `provisioning.completed`, signed per Standard Webhooks
//! (through the shared `webhooks` crate, which only signs: the bodies are built
//! here, so the product's parser is tested against an independent sender), each
//! retried a few times on failure, and logged in memory for `GET /sim/webhooks`.
//!
//! Orders complete by time: a sweeper settles due orders every 250 ms (or at once
//! when an order arrives) and reports each completed order exactly once.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use case_domain::Msisdn;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use service_runtime::{Problem, Shutdown};
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;
use webhooks::Secret;

use crate::{
    db,
    extract::{ApiJson, ApiPath, internal, invalid, invalid_field, msisdn_param},
    model::{FieldError, Signals},
    state::AppState,
};

/// Where the simulator sends its webhooks, and the secret it signs them with.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    /// The product's `POST /v1/webhooks/carrier` URL.
    pub url: String,
    /// The shared `whsec_` secret.
    pub secret: Secret,
}

/// Delays between the attempts of one webhook (five attempts in all).
const RETRY_DELAYS_MS: [u64; 4] = [200, 500, 1_000, 2_000];
/// Webhooks kept in the in-memory log.
const LOG_SIZE: usize = 1_000;
/// How often due orders are settled.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// Most flagged contacts a signals update may carry.
const MAX_FLAGGED: usize = 500;
/// Upper bound of each traffic signal.
const MAX_SIGNAL: u32 = 1_000_000;

/// One webhook the simulator sent (or tried to).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SentWebhook {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    attempts: u32,
    last_status: Option<u16>,
    delivered: bool,
    created_at: DateTime<Utc>,
}

/// The sender: configured or not, with its log.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sender {
    target: Option<Arc<WebhookTarget>>,
    http: Option<reqwest::Client>,
    log: Arc<Mutex<VecDeque<SentWebhook>>>,
    /// Wakes the sweeper (an order was submitted).
    pub(crate) sweep: Arc<Notify>,
}

impl Sender {
    pub(crate) fn new(target: Option<WebhookTarget>) -> Self {
        let http = target.as_ref().and_then(|_| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .ok()
        });
        Self {
            target: target.map(Arc::new),
            http,
            log: Arc::default(),
            sweep: Arc::default(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.target.is_some()
    }

    fn log(&self) -> Vec<SentWebhook> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut SentWebhook)) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = log.iter_mut().find(|w| w.id == id) {
            f(entry);
        }
    }

    /// Sends `{type, timestamp, data}` in the background; returns the webhook id, or
    /// `None` when no target is configured.
    pub(crate) fn send(&self, kind: &str, id: String, data: Value) -> Option<String> {
        let (target, http) = (self.target.clone()?, self.http.clone()?);
        let now = Utc::now();
        let body = json!({
            "type": kind,
            "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": data,
        })
        .to_string();
        {
            let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
            if log.len() >= LOG_SIZE {
                log.pop_front();
            }
            log.push_back(SentWebhook {
                id: id.clone(),
                kind: kind.to_owned(),
                attempts: 0,
                last_status: None,
                delivered: false,
                created_at: now,
            });
        }
        let sender = self.clone();
        let (webhook_id, kind) = (id.clone(), kind.to_owned());
        tokio::spawn(async move {
            for attempt in 0..=RETRY_DELAYS_MS.len() {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(RETRY_DELAYS_MS[attempt - 1])).await;
                }
                let timestamp = Utc::now().timestamp();
                let signature =
                    webhooks::sign(&target.secret, &webhook_id, timestamp, body.as_bytes());
                let answer = http
                    .post(&target.url)
                    .header("content-type", "application/json")
                    .header(webhooks::signature::HEADER_ID, &webhook_id)
                    .header(webhooks::signature::HEADER_TIMESTAMP, timestamp.to_string())
                    .header(webhooks::signature::HEADER_SIGNATURE, signature)
                    .body(body.clone())
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                let ok = matches!(answer, Ok(200..=299));
                sender.update(&webhook_id, |w| {
                    w.attempts += 1;
                    w.last_status = answer.as_ref().ok().copied();
                    w.delivered = ok;
                });
                if ok {
                    tracing::info!(
                        webhook_id,
                        kind,
                        attempts = attempt + 1,
                        "webhook delivered"
                    );
                    return;
                }
                tracing::warn!(
                    webhook_id,
                    kind,
                    status = answer.ok(),
                    "webhook not accepted"
                );
            }
            tracing::warn!(webhook_id, kind, "webhook given up");
        });
        Some(id)
    }
}

fn new_id() -> String {
    format!("msg_{}", Uuid::new_v4().simple())
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sim/subscribers/{msisdn}/suspend", post(suspend))
        .route("/sim/subscribers/{msisdn}/signals", post(set_signals))
        .route("/sim/webhooks", get(sent_webhooks))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuspendBody {
    reason: String,
}

fn is_code(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

/// Suspends a subscriber and tells the product (`subscriber.suspended`): 200 with
/// the subscriber and the webhook id (null when webhooks are not configured).
async fn suspend(
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<SuspendBody>,
) -> Result<Response, Problem> {
    let msisdn = msisdn_param("msisdn", &raw)?;
    if !is_code(&body.reason) {
        return Err(invalid_field(
            "reason",
            "must be a code of 1 to 100 letters, digits, '_', '.', ':' or '-'",
        ));
    }
    let row = db::suspend(&state.pool, msisdn.e164(), &body.reason)
        .await
        .map_err(|e| internal("cannot suspend a simulated subscriber", &e))?
        .ok_or_else(Problem::not_found)?;
    tracing::info!(msisdn = %msisdn, reason = body.reason, "simulated subscriber suspended");
    let webhook = state.webhooks.send(
        "subscriber.suspended",
        new_id(),
        json!({
            "msisdn": msisdn.e164(),
            "reason": body.reason,
            "suspended_at": row.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        }),
    );
    Ok(Json(json!({ "msisdn": row.msisdn, "status": row.status, "suspension_reason": row.suspension_reason, "webhook_id": webhook })).into_response())
}

fn check_signals(signals: &Signals) -> Result<Signals, Vec<FieldError>> {
    let mut errors = Vec::new();
    for (name, value) in [
        ("fraud_linked_contacts", signals.fraud_linked_contacts),
        ("sms_peak_per_hour", signals.sms_peak_per_hour),
        ("intl_calls_24h", signals.intl_calls_24h),
    ] {
        if value > MAX_SIGNAL {
            errors.push(FieldError {
                field: name.into(),
                detail: format!("must be at most {MAX_SIGNAL}"),
            });
        }
    }
    if signals.flagged_contacts.len() > MAX_FLAGGED {
        errors.push(FieldError {
            field: "flagged_contacts".into(),
            detail: format!("at most {MAX_FLAGGED} numbers"),
        });
    }
    let mut flagged: Vec<String> = Vec::new();
    for (i, raw) in signals.flagged_contacts.iter().enumerate() {
        match Msisdn::parse(raw) {
            Ok(m) if !flagged.iter().any(|f| f == m.e164()) => flagged.push(m.e164().to_owned()),
            Ok(_) => {}
            Err(e) => errors.push(FieldError {
                field: format!("flagged_contacts[{i}]"),
                detail: e.to_string(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(Signals {
            flagged_contacts: flagged,
            ..signals.clone()
        })
    } else {
        Err(errors)
    }
}

/// Replaces a subscriber's risk signals and tells the product (`subscriber.signals`):
/// 200 with the new signals and the webhook id.
async fn set_signals(
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<Signals>,
) -> Result<Response, Problem> {
    let msisdn = msisdn_param("msisdn", &raw)?;
    let signals = check_signals(&body).map_err(|errors| invalid(&errors))?;
    let updated = db::set_signals(&state.pool, msisdn.e164(), &signals)
        .await
        .map_err(|e| internal("cannot update simulated signals", &e))?;
    if !updated {
        return Err(Problem::not_found());
    }
    tracing::info!(msisdn = %msisdn, "simulated signals updated");
    let wire = json!({
        "fraud_linked_contacts": signals.fraud_linked_contacts,
        "sms_peak_per_hour": signals.sms_peak_per_hour,
        "intl_calls_24h": signals.intl_calls_24h,
        "flagged_contacts": signals.flagged_contacts,
    });
    let webhook = state.webhooks.send(
        "subscriber.signals",
        new_id(),
        json!({ "msisdn": msisdn.e164(), "signals": wire }),
    );
    Ok((
        StatusCode::OK,
        Json(json!({ "msisdn": msisdn.e164(), "signals": wire, "webhook_id": webhook })),
    )
        .into_response())
}

/// Every webhook sent since start (the last 1000): id, type, attempts, last status,
/// delivered.
async fn sent_webhooks(State(state): State<AppState>) -> Json<Vec<SentWebhook>> {
    Json(state.webhooks.log())
}

/// Settles due orders and reports completed ones until shutdown.
pub(crate) async fn sweep(pool: PgPool, sender: Sender, shutdown: Shutdown) {
    loop {
        if let Err(e) = sweep_once(&pool, &sender).await {
            tracing::warn!(error.message = %e, "order sweep failed");
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = sender.sweep.notified() => {}
            () = tokio::time::sleep(SWEEP_EVERY) => {}
        }
    }
}

async fn sweep_once(pool: &PgPool, sender: &Sender) -> Result<(), sqlx::Error> {
    for msisdn in db::numbers_with_due_orders(pool).await? {
        db::settle_number(pool, &msisdn).await?;
    }
    for order in db::take_unreported_completions(pool).await? {
        sender.send(
            "provisioning.completed",
            format!("msg_order_{}", order.external_id.simple()),
            json!({
                "order_id": order.external_id,
                "msisdn": order.msisdn,
                "restoration": order.restoration,
                "carrier_ref": order.carrier_ref,
            }),
        );
    }
    Ok(())
}
