//! Subscriber messages: enqueued in the outbox, delivered through the carrier to a
//! contact **on file** (channel `any`), with an idempotency key derived from what
//! caused the message (the transition, the timer, the suspension notice), so a
//! retried delivery never sends twice.

use std::{sync::Arc, time::Duration};

use carrier_adapter::{Carrier, CarrierError, MessageChannel};
use case_domain::{Msisdn, notice};
use case_store::{
    OutboxClaim, StoreError,
    timers::{NewMessage, enqueue_message},
};
use rand::Rng;
use serde_json::json;
use service_runtime::worker::{Delivery, OutboxHandler};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The outbox topic of messages to subscribers.
pub const NOTIFICATION_TOPIC: &str = "notification.subscriber";

/// Delivery attempts before a message is given up.
pub const MAX_ATTEMPTS: i32 = 15;

/// The outbox row of one subscriber message.
pub(crate) fn message<'a>(
    case_id: Option<Uuid>,
    event_id: Option<Uuid>,
    dedupe_key: &'a str,
    msisdn: &Msisdn,
    kind: &str,
    body: &str,
) -> NewMessage<'a> {
    NewMessage {
        topic: NOTIFICATION_TOPIC,
        case_id,
        event_id,
        dedupe_key,
        payload: json!({
            "msisdn": msisdn.e164(),
            "body": body,
            "kind": kind,
            "idempotency_key": dedupe_key,
        }),
    }
}

/// A carrier's suspension notice, to tell the subscriber why, what to do and where
/// to start.
#[derive(Debug, Clone)]
pub struct SuspensionNotice<'a> {
    /// The suspended number.
    pub msisdn: &'a Msisdn,
    /// The carrier's reason code (e.g. `fraud_linked_contacts`, `real_name_reverification`).
    pub reason: &'a str,
    /// zh-CN or en (anything else: English).
    pub locale: &'a str,
    /// What makes this notice unique (the webhook id): the same id again enqueues nothing.
    pub notice_id: &'a str,
}

/// Enqueues the message for a carrier's suspension notice, in the caller's
/// transaction (the webhook handler commits it with its own records). Returns the
/// outbox id, or `None` when this notice was already enqueued.
pub async fn notify_suspension(
    conn: &mut PgConnection,
    notice: &SuspensionNotice<'_>,
) -> Result<Option<Uuid>, StoreError> {
    let start_url = &crate::TimersConfig::global().start_url;
    let body = notice::suspension_message(notice.msisdn, notice.reason, start_url, notice.locale);
    let dedupe_key = format!("suspension:{}:{NOTIFICATION_TOPIC}", notice.notice_id);
    enqueue_message(
        conn,
        &message(None, None, &dedupe_key, notice.msisdn, "suspension", &body),
    )
    .await
}

/// Delivers `notification.subscriber` messages through the carrier.
#[derive(Debug, Clone)]
pub struct NotificationHandler {
    carrier: Arc<dyn Carrier>,
}

impl NotificationHandler {
    /// A handler sending through `carrier`.
    pub fn new(carrier: Arc<dyn Carrier>) -> Self {
        Self { carrier }
    }

    /// The back-off after `attempts` failed deliveries: 5 s doubling to 10 min, ±50 %.
    pub fn backoff(attempts: i32) -> Duration {
        let exp = Duration::from_secs(5)
            .saturating_mul(1u32 << attempts.clamp(0, 16) as u32)
            .min(Duration::from_secs(600));
        exp.mul_f64(rand::rng().random_range(0.5..1.5))
    }
}

impl OutboxHandler for NotificationHandler {
    fn service(&self) -> &'static str {
        crate::SERVICE
    }

    fn topics(&self) -> Vec<String> {
        vec![NOTIFICATION_TOPIC.to_owned()]
    }

    async fn deliver(&self, _pool: &PgPool, message: &OutboxClaim) -> anyhow::Result<Delivery> {
        let payload = &message.payload;
        let field = |name: &str| payload.get(name).and_then(|v| v.as_str());
        let (Some(number), Some(body)) = (field("msisdn"), field("body")) else {
            return Ok(Delivery::GiveUp("malformed notification payload".into()));
        };
        let Ok(msisdn) = Msisdn::parse(number) else {
            return Ok(Delivery::GiveUp(
                "notification payload has no valid number".into(),
            ));
        };
        let key = field("idempotency_key")
            .map(str::to_owned)
            .unwrap_or_else(|| message.id.to_string());
        let kind = field("kind").unwrap_or("transition");
        match self
            .carrier
            .send_message(&msisdn, MessageChannel::Any, body, &key)
            .await
        {
            Ok(sent) => {
                ::metrics::counter!("notifications_sent_total", "kind" => kind.to_owned())
                    .increment(1);
                tracing::info!(case_id = ?message.case_id, msisdn = %msisdn, to = %sent.sent_to_masked, kind, "subscriber notified");
                Ok(Delivery::Delivered)
            }
            Err(CarrierError::NoContactOnFile | CarrierError::NotFound) => {
                ::metrics::counter!("notifications_undeliverable_total").increment(1);
                Ok(Delivery::GiveUp(
                    "no contact on file with the carrier".into(),
                ))
            }
            Err(e) if e.is_retryable() && message.attempts < MAX_ATTEMPTS => Ok(
                Delivery::RetryAfter(Self::backoff(message.attempts), e.to_string()),
            ),
            Err(e) => Ok(Delivery::GiveUp(e.to_string())),
        }
    }
}
