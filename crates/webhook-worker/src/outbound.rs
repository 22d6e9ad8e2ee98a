//! Outbound webhooks: fanning case events out into deliveries, and delivering them.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use case_store::webhooks::{self as store, AttemptOutcome, DeliveryClaim, Disposition, FeedEvent};
use data_protection::Keys;
use rand::Rng;
use reqwest::redirect;
use sqlx::PgPool;
use webhooks::{
    CaseEventType, DestinationPolicy, RetrySchedule, Secret, parse_endpoint_url, resolve_checked,
    sign_all,
};

/// Events fanned out per transaction.
const FEED_BATCH: i64 = 100;

/// How the deliverer behaves.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Which destinations are allowed.
    pub policy: DestinationPolicy,
    /// When failed deliveries are retried.
    pub schedule: RetrySchedule,
    /// Time limit of one attempt (connect, send, answer).
    pub timeout: Duration,
    /// The keys that open endpoint secrets.
    pub keys: Arc<Keys>,
}

/// The body of an outbound webhook: thin, no personal data.
pub fn payload(event: &FeedEvent) -> (CaseEventType, serde_json::Value) {
    let kind = CaseEventType::of_event(event.event.as_str());
    let at = event
        .at
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let body = serde_json::json!({
        "type": kind.as_str(),
        "timestamp": at,
        "data": {
            "case_id": event.case_id,
            "from": event.from_state.map(|s| s.as_str()),
            "to": event.to_state.as_str(),
            "event": event.event.as_str(),
            "version": event.version,
            "at": at,
        },
    });
    (kind, body)
}

/// Turns up to a batch of queued case events into deliveries (one per event and
/// matching endpoint), in one transaction. Returns whether there were events.
pub async fn fan_out_once(pool: &PgPool) -> anyhow::Result<bool> {
    let mut tx = pool.begin().await?;
    let events = store::take_feed_batch(&mut tx, FEED_BATCH).await?;
    if events.is_empty() {
        return Ok(false);
    }
    let endpoints = store::active_endpoints(&mut *tx).await?;
    let mut created = 0u64;
    for event in &events {
        let (kind, body) = payload(event);
        for (endpoint, types) in &endpoints {
            if types.iter().any(|t| t == kind.as_str())
                && store::insert_delivery(&mut tx, *endpoint, event.event_id, kind.as_str(), &body)
                    .await?
            {
                created += 1;
            }
        }
    }
    tx.commit().await?;
    ::metrics::counter!("webhook_deliveries_created_total").increment(created);
    tracing::debug!(
        events = events.len(),
        deliveries = created,
        "case events fanned out"
    );
    Ok(true)
}

/// How one attempt went, before the schedule decides what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    Answered(u16),
    NoAnswer(String),
}

/// Claims and sends at most one due delivery. Returns whether there was one.
pub async fn deliver_one(
    pool: &PgPool,
    settings: &DeliverySettings,
    worker: &str,
    lease: Duration,
) -> anyhow::Result<bool> {
    let Some(claim) = store::claim_delivery(pool, worker, lease).await? else {
        return Ok(false);
    };
    let span = tracing::info_span!("webhook_delivery", delivery_id = %claim.id, endpoint_id = %claim.endpoint_id, attempt = claim.attempts);
    let started = Instant::now();
    let sent = match (claim.endpoint_active, &claim.secret_sealed) {
        (true, Some(sealed)) => match open_secret(&settings.keys, sealed, claim.endpoint_id) {
            Ok(secret) => {
                // During a rotation's overlap window, signed under the previous secret
                // too (one more signature in the header), so receivers can switch at leisure.
                let mut secrets = vec![secret];
                if let Some(previous) = &claim.previous_secret_sealed {
                    match open_secret(&settings.keys, previous, claim.endpoint_id) {
                        Ok(old) => secrets.push(old),
                        Err(why) => {
                            tracing::warn!(endpoint_id = %claim.endpoint_id, "previous secret not used: {why}")
                        }
                    }
                }
                Some(
                    tracing::Instrument::instrument(send(settings, &claim, &secrets), span.clone())
                        .await,
                )
            }
            Err(why) => Some(Sent::NoAnswer(why)),
        },
        _ => None,
    };
    let duration = started.elapsed();
    let unit: f64 = rand::rng().random_range(0.0..1.0);
    let next = |failed: i32| {
        settings
            .schedule
            .delay_after(u32::try_from(failed).unwrap_or(u32::MAX), unit)
            .map_or(Disposition::Failed, Disposition::RetryAfter)
    };
    let (status_code, error, disposition) = match &sent {
        None => (
            None,
            Some("the endpoint no longer takes deliveries".to_owned()),
            Disposition::Cancelled,
        ),
        Some(Sent::Answered(s)) if (200..300).contains(s) => {
            (Some(*s), None, Disposition::Delivered)
        }
        Some(Sent::Answered(410)) => (
            Some(410),
            Some("the endpoint answered 410 Gone: disabled".to_owned()),
            Disposition::Failed,
        ),
        Some(Sent::Answered(s)) => (
            Some(*s),
            Some(format!("the endpoint answered {s}")),
            next(claim.attempts),
        ),
        Some(Sent::NoAnswer(why)) => (None, Some(why.clone()), next(claim.attempts)),
    };
    let mut tx = pool.begin().await?;
    let recorded = store::record_attempt(
        &mut tx,
        &claim,
        &AttemptOutcome {
            status_code,
            error: error.as_deref(),
            duration,
            disposition,
        },
    )
    .await;
    if let Err(e) = recorded {
        tracing::info!(parent: &span, error.message = %e, "delivery outcome not recorded (lease lost)");
        return Ok(true);
    }
    if status_code == Some(410) {
        store::disable_endpoint(&mut tx, claim.endpoint_id, "the endpoint answered 410 Gone")
            .await?;
    }
    tx.commit().await?;
    let outcome = match disposition {
        Disposition::Delivered => "delivered",
        Disposition::RetryAfter(_) => "retry",
        Disposition::Failed => "failed",
        Disposition::Cancelled => "cancelled",
    };
    ::metrics::counter!("webhook_deliveries_total", "outcome" => outcome).increment(1);
    match disposition {
        Disposition::Delivered => {
            tracing::info!(parent: &span, status = status_code, "webhook delivered");
        }
        Disposition::RetryAfter(after) => {
            tracing::info!(parent: &span, status = status_code, error.message = error.as_deref(), retry_in_secs = after.as_secs_f64(), "webhook delivery failed; will retry");
        }
        Disposition::Failed | Disposition::Cancelled => {
            tracing::warn!(parent: &span, status = status_code, error.message = error.as_deref(), outcome, "webhook delivery given up");
        }
    }
    Ok(true)
}

/// The endpoint's signing secret, decrypted (bound to the endpoint id).
fn open_secret(keys: &Keys, sealed: &[u8], endpoint_id: uuid::Uuid) -> Result<Secret, String> {
    keys.decrypt(sealed, &endpoint_id)
        .ok()
        .and_then(|text| Secret::parse(&text).ok())
        .ok_or_else(|| {
            "not sent: the endpoint's secret cannot be opened (is its key missing from REACTIVATION_SECRET_KEYS?)"
                .to_owned()
        })
}

/// One attempt: SSRF check (resolve, check every address, connect only to them),
/// then a signed POST without redirects.
async fn send(settings: &DeliverySettings, claim: &DeliveryClaim, secrets: &[Secret]) -> Sent {
    let endpoint = match parse_endpoint_url(&claim.url, settings.policy) {
        Ok(e) => e,
        Err(refusal) => return Sent::NoAnswer(format!("destination refused: the URL {refusal}")),
    };
    let addrs = resolve_checked(&endpoint, settings.policy, |host, port| async move {
        tokio::net::lookup_host((host.as_str(), port))
            .await
            .map(|found| found.collect::<Vec<SocketAddr>>())
    })
    .await;
    let addrs = match addrs {
        Ok(a) => a,
        Err(refusal) => return Sent::NoAnswer(format!("destination refused: the URL {refusal}")),
    };
    let mut client = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("reactivation-webhooks/", env!("CARGO_PKG_VERSION")));
    if let webhooks::destination::Host::Domain(name) = endpoint.host() {
        // Connect to the addresses just checked, never to a second lookup's answer.
        client = client.resolve_to_addrs(name, &addrs);
    }
    let client = match client.build() {
        Ok(c) => c,
        Err(_) => return Sent::NoAnswer("could not build the HTTP client".into()),
    };
    let body = serde_json::to_vec(&claim.payload).unwrap_or_default();
    let id = claim.id.to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let response = client
        .post(endpoint.as_str())
        .header("content-type", "application/json")
        .header(webhooks::signature::HEADER_ID, &id)
        .header(webhooks::signature::HEADER_TIMESTAMP, timestamp.to_string())
        .header(
            webhooks::signature::HEADER_SIGNATURE,
            sign_all(secrets, &id, timestamp, &body),
        )
        .body(body)
        .send()
        .await;
    match response {
        Ok(r) => Sent::Answered(r.status().as_u16()),
        Err(e) if e.is_timeout() => Sent::NoAnswer("no answer within the time limit".into()),
        Err(e) if e.is_connect() => Sent::NoAnswer("could not connect".into()),
        Err(_) => Sent::NoAnswer("the request failed".into()),
    }
}

#[cfg(test)]
mod tests {
    use case_domain::{CaseEvent, CaseState};
    use uuid::Uuid;

    use super::*;

    #[test]
    fn payloads_are_thin() {
        let event = FeedEvent {
            event_id: Uuid::now_v7(),
            seq: 7,
            case_id: Uuid::nil(),
            version: 3,
            from_state: Some(CaseState::Provisioning),
            to_state: CaseState::Reactivated,
            event: CaseEvent::Restored,
            at: chrono::DateTime::UNIX_EPOCH,
        };
        let (kind, body) = payload(&event);
        assert_eq!(kind, CaseEventType::StateChanged);
        assert_eq!(
            body,
            serde_json::json!({
                "type": "case.state_changed",
                "timestamp": "1970-01-01T00:00:00.000000Z",
                "data": {
                    "case_id": Uuid::nil(), "from": "provisioning", "to": "reactivated",
                    "event": "restored", "version": 3, "at": "1970-01-01T00:00:00.000000Z"
                }
            })
        );
        let opened = FeedEvent {
            from_state: None,
            event: CaseEvent::Opened,
            ..event
        };
        let (kind, body) = payload(&opened);
        assert_eq!(kind, CaseEventType::Opened);
        assert_eq!(body["data"]["from"], serde_json::Value::Null);
    }
}
