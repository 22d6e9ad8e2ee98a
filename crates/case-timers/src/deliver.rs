//! Subscriber messages: enqueued in the outbox, delivered through the carrier to a
//! contact **on file** (channel `any`), with an idempotency key derived from what
//! caused the message (the transition, the timer, the suspension notice), so a
//! retried delivery never sends twice.

use std::{sync::Arc, time::Duration};

use carrier_adapter::{Carrier, CarrierError, MessageChannel};
use case_domain::Msisdn;
use case_queues::OutboxTopics;
use case_store::OutboxClaim;
use rand::Rng;
use service_runtime::worker::{Delivery, OutboxHandler};
use sqlx::PgPool;

// The suspension notice is a use case (`case_workflows::notices`); kept here for
// callers of the old paths.
pub use case_workflows::notices::{
    NOTIFICATION_TOPIC, SuspensionNotice, notify_suspension, subscriber_message as message,
};

/// Delivery attempts before a message is given up.
pub const MAX_ATTEMPTS: i32 = 15;

/// Delivers `notification.subscriber` messages through the carrier.
#[derive(Debug, Clone)]
pub struct NotificationHandler {
    carrier: Arc<dyn Carrier>,
    source: OutboxTopics,
    /// Opens sealed bodies (messages carrying a case token); without it they are given up.
    sealed: Option<case_workflows::assisted::SealedBodies>,
}

impl NotificationHandler {
    /// A handler sending through `carrier`.
    pub fn new(carrier: Arc<dyn Carrier>) -> Self {
        Self {
            carrier,
            source: OutboxTopics::new(vec![NOTIFICATION_TOPIC.to_owned()]),
            sealed: None,
        }
    }

    /// Also delivers messages whose body is sealed (`body_sealed`, bound to the case).
    pub fn with_sealed_bodies(mut self, sealed: case_workflows::assisted::SealedBodies) -> Self {
        self.sealed = Some(sealed);
        self
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
    type Source = OutboxTopics;

    fn service(&self) -> &'static str {
        crate::SERVICE
    }

    fn source(&self) -> &OutboxTopics {
        &self.source
    }

    async fn deliver(&self, _pool: &PgPool, message: &OutboxClaim) -> anyhow::Result<Delivery> {
        let payload = &message.payload;
        let field = |name: &str| payload.get(name).and_then(|v| v.as_str());
        let opened;
        let body = match (field("body"), field("body_sealed"), message.case_id) {
            (Some(body), None, _) => Some(body),
            (None, Some(sealed), Some(case_id)) => {
                let Some(sealed_bodies) = &self.sealed else {
                    return Ok(Delivery::GiveUp(
                        "sealed notification body and no key to open it".into(),
                    ));
                };
                let Some(body) = sealed_bodies.open(sealed, case_id) else {
                    return Ok(Delivery::GiveUp(
                        "sealed notification body does not open with the product keys".into(),
                    ));
                };
                opened = body;
                Some(opened.as_str())
            }
            _ => None,
        };
        let (Some(number), Some(body)) = (field("msisdn"), body) else {
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
