//! Processing the carrier's webhooks: the gateway verified and stored them; here each
//! is claimed once (SKIP LOCKED, lease, attempts as fence) and applied in one
//! transaction with its "processed" mark.

use std::time::Duration;

use carrier_adapter::Restoration as CarrierRestoration;
use case_domain::{
    CaseState,
    material::{Material, remaining_needs},
    risk::{self, RiskSignals},
};
use case_store::webhooks::{self as store, CarrierWebhookClaim};
use sqlx::{PgConnection, PgPool};
use webhooks::{CarrierEventKind, events::Restoration, parse_carrier_event};

/// Processing attempts before a webhook is given up.
pub const MAX_ATTEMPTS: i32 = 10;

/// The states whose case a `subscriber.signals` webhook re-scores.
pub const RESCORED_STATES: [CaseState; 3] = [
    CaseState::SecurityReview,
    CaseState::AwaitingCustomerSecurity,
    CaseState::PartiallyReactivated,
];

/// The back-off after the `attempts`-th failed processing: 1 s doubling, at most 5 min.
pub fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(300))
}

/// Claims and processes at most one carrier webhook. Returns whether there was one.
pub async fn process_one(pool: &PgPool, worker: &str, lease: Duration) -> anyhow::Result<bool> {
    let Some(claim) = store::claim_carrier_webhook(pool, worker, lease).await? else {
        return Ok(false);
    };
    let span = tracing::info_span!("carrier_webhook", webhook_id = %claim.id, kind = %claim.kind, attempt = claim.attempts);
    let outcome = tracing::Instrument::instrument(apply(pool, &claim), span.clone()).await;
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
    Ok(true)
}

/// Applies one webhook and marks it processed, in one transaction. Returns the note
/// when it was ignored (nothing to do).
async fn apply(pool: &PgPool, claim: &CarrierWebhookClaim) -> anyhow::Result<Option<String>> {
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
                store::record_suspension_notice(
                    &mut *tx,
                    &claim.id,
                    msisdn.e164(),
                    &reason,
                    suspended_at,
                )
                .await?;
                // Tell the subscriber why, what to do and where to start, once per notice.
                // The carrier does not say the subscriber's language; notices go out in Chinese.
                case_timers::notify_suspension(
                    &mut tx,
                    &case_timers::SuspensionNotice {
                        msisdn: &msisdn,
                        reason: &reason,
                        locale: "zh-CN",
                        notice_id: &claim.id,
                    },
                )
                .await?;
                tracing::info!(msisdn = %msisdn, reason, "suspension notice recorded and the subscriber told");
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
                let signals = RiskSignals {
                    fraud_linked_contacts,
                    sms_peak_per_hour,
                    intl_calls_24h,
                    suspension_reason,
                };
                rescore(&mut tx, msisdn.e164(), signals, flagged_contacts).await?
            }
            CarrierEventKind::ProvisioningCompleted {
                order_id,
                msisdn,
                restoration,
                carrier_ref,
            } => {
                confirm_order(
                    &mut tx,
                    order_id,
                    msisdn.e164(),
                    restoration,
                    carrier_ref.as_deref(),
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

/// Re-scores the number's open case from new signals when it is under security
/// review (or waits for the subscriber's answer to security, or is partly restored):
/// a new assessment whose needs are the tier's, minus what the subscriber's material
/// already satisfies — the rule the material endpoints use.
async fn rescore(
    conn: &mut PgConnection,
    msisdn: &str,
    mut signals: RiskSignals,
    flagged_contacts: Vec<String>,
) -> anyhow::Result<Option<String>> {
    let Some(case) = store::lock_open_case_for_msisdn(conn, msisdn).await? else {
        return Ok(Some("the number has no open case".into()));
    };
    if !RESCORED_STATES.contains(&case.state) {
        return Ok(Some(format!(
            "the case is {}, not under security review",
            case.state
        )));
    }
    let latest = case_store::risk::latest_assessment(&mut *conn, case.id).await?;
    if signals.suspension_reason.is_none() {
        signals.suspension_reason = latest
            .as_ref()
            .and_then(|a| a.signals["suspension_reason"].as_str())
            .map(str::to_owned);
    }
    let assessment = risk::assess(&signals);
    let explained = case_store::material::explained_contacts(&mut *conn, case.id).await?;
    let counts = case_store::material::count_material(&mut *conn, case.id).await?;
    let needs = remaining_needs(
        assessment.tier,
        &flagged_contacts,
        &Material {
            explanations: usize::try_from(counts.explanations).unwrap_or(usize::MAX),
            explained_contacts: &explained,
            evidence: usize::try_from(counts.evidence).unwrap_or(usize::MAX),
        },
    );
    let codes: Vec<String> = assessment
        .reasons
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    let needs: Vec<String> = needs.iter().map(|n| n.as_str().to_owned()).collect();
    let recorded = serde_json::json!({
        "fraud_linked_contacts": signals.fraud_linked_contacts,
        "sms_peak_per_hour": signals.sms_peak_per_hour,
        "intl_calls_24h": signals.intl_calls_24h,
        "suspension_reason": signals.suspension_reason,
        "flagged_contacts": flagged_contacts,
        "source": "carrier_webhook",
    });
    store::save_rescored_assessment(
        &mut *conn,
        case.id,
        assessment.tier,
        &codes,
        &needs,
        &recorded,
    )
    .await?;
    tracing::info!(case_id = %case.id, tier = assessment.tier.as_str(), reasons = ?codes, "case re-scored from the carrier's signals");
    Ok(None)
}

/// Confirms one of our orders from the carrier's word: if it is not completed yet, it
/// is finished exactly as the provisioning worker finishes it (same function).
async fn confirm_order(
    conn: &mut PgConnection,
    order_id: uuid::Uuid,
    msisdn: &str,
    restoration: Restoration,
    carrier_ref: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let Some(order) = store::lock_order(conn, order_id).await? else {
        return Ok(Some("no such order".into()));
    };
    let case = case_store::load_case(&mut *conn, order.case_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("order's case vanished"))?;
    if case.msisdn != msisdn {
        return Ok(Some("the number does not match the order".into()));
    }
    if order.state == "completed" {
        return Ok(Some("the order was already completed".into()));
    }
    let (event, reason) = provisioning::completion(match restoration {
        Restoration::Full => CarrierRestoration::Full,
        Restoration::InboundOnly => CarrierRestoration::InboundOnly,
    });
    let moved = provisioning::finish_order(
        conn,
        &provisioning::OrderOutcome {
            order_id,
            case_id: order.case_id,
            state: "completed",
            carrier_ref,
            event,
            reason,
        },
        provisioning::OutboxSettlement::Confirmed,
    )
    .await?;
    tracing::info!(case_id = %order.case_id, %order_id, moved = moved.is_some(), "order confirmed by the carrier");
    Ok(None)
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
