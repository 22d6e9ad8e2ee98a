//! Processing the carrier's webhooks: the gateway verified and stored them; here each
//! is claimed once (SKIP LOCKED, lease, attempts as fence) and applied in one
//! transaction with its "processed" mark.

use std::time::Duration;

use case_domain::risk::RiskSignals;
use case_store::webhooks::{self as store, CarrierWebhookClaim};
use case_workflows::{
    notices::{self, Suspension},
    orders::{self, CarrierConfirmation},
    risk::{self, NewSignals},
};
use sqlx::PgPool;
use webhooks::{CarrierEventKind, parse_carrier_event};

/// Processing attempts before a webhook is given up.
pub const MAX_ATTEMPTS: i32 = 10;

/// The states whose case a `subscriber.signals` webhook re-scores.
pub const RESCORED_STATES: [case_domain::CaseState; 3] = risk::RESCORED_STATES;

/// What processing the carrier's webhooks needs from the configuration.
#[derive(Debug, Clone)]
pub struct InboundSettings {
    /// Where a suspended subscriber starts a request (the link in suspension notices).
    pub start_url: String,
    /// The keys that open the case's sealed explanations (a re-score counts the
    /// counterparties they explain).
    pub keys: std::sync::Arc<data_protection::Keys>,
}

/// The back-off after the `attempts`-th failed processing: 1 s doubling, at most 5 min.
pub fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(300))
}

/// Claims and processes at most one carrier webhook. Returns whether there was one.
pub async fn process_one(
    pool: &PgPool,
    settings: &InboundSettings,
    worker: &str,
    lease: Duration,
) -> anyhow::Result<bool> {
    Ok(matches!(
        process_next(pool, settings, worker, lease).await?,
        Tick::Processed
    ))
}

/// What [`process_next`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// It processed one webhook (more may be due).
    Processed,
    /// None was due; the next one falls due then (`None`: none is pending), read
    /// by the same statement as the empty claim.
    Idle(Option<chrono::DateTime<chrono::Utc>>),
}

/// [`process_one`], saying when the next webhook falls due when none is.
pub async fn process_next(
    pool: &PgPool,
    settings: &InboundSettings,
    worker: &str,
    lease: Duration,
) -> anyhow::Result<Tick> {
    let (claim, next_due) = store::claim_carrier_webhook_due(pool, worker, lease).await?;
    let Some(claim) = claim else {
        return Ok(Tick::Idle(next_due));
    };
    let span = tracing::info_span!("carrier_webhook", webhook_id = %claim.id, kind = %claim.kind, attempt = claim.attempts);
    let outcome =
        tracing::Instrument::instrument(apply(pool, settings, &claim), span.clone()).await;
    match outcome {
        Ok(note) => {
            ::metrics::counter!("carrier_webhooks_processed_total", "type" => claim.kind.clone(), "outcome" => if note.is_some() { "ignored" } else { "applied" }).increment(1);
        }
        Err(e) if claim.attempts >= MAX_ATTEMPTS => {
            ::metrics::counter!("carrier_webhooks_processed_total", "type" => claim.kind.clone(), "outcome" => "failed").increment(1);
            tracing::error!(parent: &span, error.message = %e, "carrier webhook given up");
            if let Err(e) = store::fail_carrier_webhook(pool, &claim, &e.to_string()).await {
                tracing::warn!(parent: &span, error.message = %e, "could not record the failure");
            }
        }
        Err(e) => {
            ::metrics::counter!("worker_errors_total", "service" => crate::SERVICE).increment(1);
            let after = backoff(claim.attempts);
            tracing::warn!(parent: &span, error.message = %e, retry_in_secs = after.as_secs(), "carrier webhook processing failed; will retry");
            if let Err(e) = store::retry_carrier_webhook(pool, &claim, after, &e.to_string()).await
            {
                tracing::warn!(parent: &span, error.message = %e, "could not schedule the retry");
            }
        }
    }
    Ok(Tick::Processed)
}

/// Applies one webhook and marks it processed, in one transaction. Returns the note
/// when it was ignored (nothing to do).
async fn apply(
    pool: &PgPool,
    settings: &InboundSettings,
    claim: &CarrierWebhookClaim,
) -> anyhow::Result<Option<String>> {
    let mut tx = pool.begin().await?;
    let note = match parse_carrier_event(&claim.payload) {
        // The gateway validated it; a body that no longer parses is a bug, not a retry.
        Err(e) => Some(format!("the stored body does not parse: {e}")),
        Ok(event) => match event.kind {
            CarrierEventKind::Suspended {
                msisdn,
                reason,
                suspended_at,
            } => {
                // Tell the subscriber why, what to do and where to start, once per notice.
                notices::record_suspension(
                    &mut tx,
                    &Suspension {
                        webhook_id: &claim.id,
                        msisdn: &msisdn,
                        reason: &reason,
                        suspended_at,
                        start_url: &settings.start_url,
                    },
                )
                .await?;
                None
            }
            CarrierEventKind::Signals {
                msisdn,
                fraud_linked_contacts,
                sms_peak_per_hour,
                intl_calls_24h,
                flagged_contacts,
                suspension_reason,
            } => {
                risk::rescore(
                    &mut tx,
                    &settings.keys,
                    NewSignals {
                        msisdn,
                        signals: RiskSignals {
                            fraud_linked_contacts,
                            sms_peak_per_hour,
                            intl_calls_24h,
                            suspension_reason,
                        },
                        flagged_contacts,
                    },
                )
                .await?
            }
            CarrierEventKind::ProvisioningCompleted {
                order_id,
                msisdn,
                restoration,
                carrier_ref,
            } => {
                orders::confirm_order(
                    &mut tx,
                    &CarrierConfirmation {
                        order_id,
                        msisdn: msisdn.e164(),
                        restoration,
                        carrier_ref: carrier_ref.as_deref(),
                    },
                )
                .await?
            }
        },
    };
    if let Some(note) = &note {
        tracing::info!(note, "carrier webhook ignored");
    }
    store::mark_carrier_webhook_processed(&mut *tx, claim, note.as_deref()).await?;
    tx.commit().await?;
    Ok(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let secs: Vec<u64> = (1..=11).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(i32::MAX), Duration::from_secs(300));
    }
}
