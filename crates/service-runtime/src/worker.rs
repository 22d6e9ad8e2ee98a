//! The generic worker loop shared by every service that moves cases or delivers
//! outbox messages.
//!
//! A loop drains its work (claim → process → write) until nothing is claimable,
//! then sleeps until a `NOTIFY` on one of its channels, the slow fallback poll, or
//! shutdown. While a case is processed its lease is renewed every third of the
//! lease; every write presents the claim's fencing token, so a worker whose lease
//! was lost can never overwrite a newer outcome.

use std::{future::Future, sync::Arc, time::Duration};

use case_domain::CaseState;
use case_store::{Claim, OutboxClaim, StoreError};
use sqlx::{PgPool, postgres::PgListener};
use uuid::Uuid;

use crate::Shutdown;

/// Timing of a worker loop.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Fallback poll when no notification arrives.
    pub poll: Duration,
    /// Lease length; renewed every third of it while processing.
    pub lease: Duration,
}

impl WorkerSettings {
    /// From the process settings.
    pub fn from(settings: &crate::Settings) -> Self {
        Self {
            poll: settings.worker_poll,
            lease: settings.worker_lease,
        }
    }
}

/// A unique id for one worker loop in one process start (`service-xxxxxxxx`).
pub fn worker_id(service: &str) -> String {
    let id = Uuid::new_v4().simple().to_string();
    format!("{service}-{}", &id[..8])
}

/// What a case step did with a claimed case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step moved the case (through `case_store::transition` with the claim's fence).
    Transitioned,
    /// Nothing to do yet (e.g. the carrier is unreachable): try again after this long.
    RetryAfter(Duration),
}

/// One service's work on cases in the states it owns.
pub trait CaseStep: Send + Sync + 'static {
    /// The service's name, used as actor id, worker-id prefix and metrics label.
    fn service(&self) -> &'static str;
    /// The states whose cases this step claims.
    fn states(&self) -> Vec<CaseState>;
    /// Works one claimed case. Must move it with `claim.fence`, or ask to retry.
    fn process(
        &self,
        pool: &PgPool,
        claim: &Claim,
    ) -> impl Future<Output = anyhow::Result<StepOutcome>> + Send;
}

/// What delivering one outbox message came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver confirmed it.
    Delivered,
    /// Try again after this long.
    RetryAfter(Duration, String),
    /// Give up (permanent failure or retries exhausted).
    GiveUp(String),
    /// The handler recorded the outcome itself (e.g. in a transaction with a transition).
    Recorded,
}

/// One service's delivery of outbox messages of some topics.
pub trait OutboxHandler: Send + Sync + 'static {
    /// The service's name.
    fn service(&self) -> &'static str;
    /// The topics it delivers.
    fn topics(&self) -> Vec<String>;
    /// Delivers one claimed message.
    fn deliver(
        &self,
        pool: &PgPool,
        message: &OutboxClaim,
    ) -> impl Future<Output = anyhow::Result<Delivery>> + Send;
}

/// Claims and processes at most one case. Returns whether there was one. Tests
/// call it to drain work deterministically.
pub async fn process_one_case<S: CaseStep>(
    pool: &PgPool,
    step: &S,
    worker: &str,
    lease: Duration,
) -> anyhow::Result<bool> {
    let states = step.states();
    let Some(claim) = case_store::claim_next(pool, &states, worker, lease).await? else {
        return Ok(false);
    };
    let service = step.service();
    ::metrics::counter!("worker_claims_total", "service" => service, "state" => claim.state.as_str()).increment(1);
    if claim.first_in_state {
        ::metrics::histogram!("handoff_latency_seconds", "state" => claim.state.as_str())
            .record(claim.waited.as_secs_f64());
    }
    let span = tracing::info_span!("case_step", service, case_id = %claim.case_id, state = %claim.state, attempt = claim.fence.attempt);

    let outcome = {
        let work = tracing::Instrument::instrument(step.process(pool, &claim), span.clone());
        tokio::pin!(work);
        let mut renew = tokio::time::interval(lease / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                result = &mut work => break result,
                _ = renew.tick() => {
                    if let Err(e) = case_store::renew_lease(pool, claim.case_id, &claim.fence, lease).await {
                        tracing::warn!(parent: &span, error.message = %e, "lease renewal failed");
                    }
                }
            }
        }
    };
    match outcome {
        Ok(StepOutcome::Transitioned) => {}
        Ok(StepOutcome::RetryAfter(after)) => release_quietly(pool, &claim, after, &span).await,
        Err(e) => match e.downcast_ref::<StoreError>() {
            Some(StoreError::LeaseLost { .. } | StoreError::StaleVersion { .. }) => {
                tracing::info!(parent: &span, error.message = %e, "case moved on while it was processed; leaving it");
            }
            _ => {
                ::metrics::counter!("worker_errors_total", "service" => service).increment(1);
                tracing::error!(parent: &span, error.message = %e, error.cause_chain = ?e, "case step failed; will retry");
                let backoff = Duration::from_secs((5 * claim.fence.attempt.clamp(1, 60)) as u64);
                release_quietly(pool, &claim, backoff, &span).await;
            }
        },
    }
    Ok(true)
}

async fn release_quietly(pool: &PgPool, claim: &Claim, after: Duration, span: &tracing::Span) {
    if let Err(e) = case_store::release(pool, claim.case_id, &claim.fence, after).await {
        tracing::warn!(parent: span, error.message = %e, "could not release the case");
    }
}

/// Claims and delivers at most one outbox message. Returns whether there was one.
pub async fn process_one_message<H: OutboxHandler>(
    pool: &PgPool,
    handler: &H,
    worker: &str,
    lease: Duration,
) -> anyhow::Result<bool> {
    let Some(message) = case_store::claim_outbox(pool, &handler.topics(), worker, lease).await?
    else {
        return Ok(false);
    };
    let service = handler.service();
    if message.attempts == 1 {
        ::metrics::histogram!("handoff_latency_seconds", "state" => message.topic.clone())
            .record(message.waited.as_secs_f64());
    }
    let span = tracing::info_span!("outbox_delivery", service, message_id = %message.id, topic = %message.topic, attempt = message.attempts);
    let result = {
        let work = tracing::Instrument::instrument(handler.deliver(pool, &message), span.clone());
        tokio::pin!(work);
        let mut renew = tokio::time::interval(lease / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                result = &mut work => break result,
                _ = renew.tick() => {
                    if let Err(e) = case_store::renew_outbox_lease(pool, &message, lease).await {
                        tracing::warn!(parent: &span, error.message = %e, "outbox lease renewal failed");
                    }
                }
            }
        }
    };
    let recorded = match result {
        Ok(Delivery::Delivered) => case_store::mark_delivered(pool, &message).await,
        Ok(Delivery::Recorded) => Ok(()),
        Ok(Delivery::RetryAfter(after, error)) => {
            tracing::info!(parent: &span, error.message = %error, retry_in_secs = after.as_secs_f64(), "delivery will be retried");
            case_store::retry_later(pool, &message, after, &error).await
        }
        Ok(Delivery::GiveUp(error)) => {
            tracing::warn!(parent: &span, error.message = %error, "delivery given up");
            case_store::mark_failed(pool, &message, &error).await
        }
        Err(e) => {
            ::metrics::counter!("worker_errors_total", "service" => service).increment(1);
            tracing::error!(parent: &span, error.message = %e, error.cause_chain = ?e, "delivery failed; will retry");
            case_store::retry_later(pool, &message, Duration::from_secs(5), &e.to_string()).await
        }
    };
    if let Err(e) = recorded {
        tracing::info!(parent: &span, error.message = %e, "delivery outcome not recorded (lease lost)");
    }
    Ok(true)
}

/// Runs a case step until shutdown.
pub async fn run_case_worker<S: CaseStep>(
    pool: PgPool,
    step: Arc<S>,
    settings: WorkerSettings,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let worker = worker_id(step.service());
    let channels = step
        .states()
        .into_iter()
        .map(|s| s.work_channel())
        .collect();
    let lease = settings.lease;
    let states = step.states();
    let due_pool = pool.clone();
    tracing::info!(worker, "case worker started");
    run_loop(
        &pool,
        step.service(),
        channels,
        settings.poll,
        shutdown,
        || {
            let (pool, step, worker) = (pool.clone(), step.clone(), worker.clone());
            async move { process_one_case(&pool, step.as_ref(), &worker, lease).await }
        },
        move || {
            let (pool, states) = (due_pool.clone(), states.clone());
            async move { Ok(case_store::next_case_due(&pool, &states).await?) }
        },
    )
    .await
}

/// Runs an outbox handler until shutdown.
pub async fn run_outbox_worker<H: OutboxHandler>(
    pool: PgPool,
    handler: Arc<H>,
    settings: WorkerSettings,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let worker = worker_id(handler.service());
    let channels = handler
        .topics()
        .iter()
        .map(|t| case_store::outbox_channel(t))
        .collect();
    let lease = settings.lease;
    let topics = handler.topics();
    let due_pool = pool.clone();
    tracing::info!(worker, "outbox worker started");
    run_loop(
        &pool,
        handler.service(),
        channels,
        settings.poll,
        shutdown,
        || {
            let (pool, handler, worker) = (pool.clone(), handler.clone(), worker.clone());
            async move { process_one_message(&pool, handler.as_ref(), &worker, lease).await }
        },
        move || {
            let (pool, topics) = (due_pool.clone(), topics.clone());
            async move { Ok(case_store::next_outbox_due(&pool, &topics).await?) }
        },
    )
    .await
}

/// Drains `tick` (which returns whether it found work) and then waits for a
/// notification on `channels`, the moment `next_due` names (a back-off or lease
/// ending), the poll interval, or shutdown — whichever comes first.
pub async fn run_loop<F, Fut, D, DFut>(
    pool: &PgPool,
    service: &'static str,
    channels: Vec<String>,
    poll: Duration,
    shutdown: Shutdown,
    mut tick: F,
    next_due: D,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
    D: Fn() -> DFut,
    DFut: Future<Output = anyhow::Result<Option<chrono::DateTime<chrono::Utc>>>>,
{
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all(channels.iter().map(String::as_str))
        .await?;
    while !shutdown.is_triggered() {
        loop {
            match tick().await {
                Ok(true) if !shutdown.is_triggered() => continue,
                Ok(_) => break,
                Err(e) => {
                    ::metrics::counter!("worker_errors_total", "service" => service).increment(1);
                    tracing::error!(service, error.message = %e, "worker could not claim work; backing off");
                    tokio::select! {
                        () = shutdown.wait() => return Ok(()),
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    break;
                }
            }
        }
        let sleep_for = match next_due().await {
            Ok(Some(due)) => (due - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(poll),
            Ok(None) => poll,
            Err(e) => {
                tracing::warn!(service, error.message = %e, "cannot read the next due time");
                poll.min(Duration::from_secs(5))
            }
        };
        let timer_is_poll = sleep_for == poll;
        tokio::select! {
            () = shutdown.wait() => break,
            notification = listener.recv() => match notification {
                Ok(_) => ::metrics::counter!("worker_wakeups_total", "service" => service, "source" => "notify").increment(1),
                Err(e) => {
                    tracing::warn!(service, error.message = %e, "notification listener failed; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            () = tokio::time::sleep(sleep_for) => {
                let source = if timer_is_poll { "poll" } else { "timer" };
                ::metrics::counter!("worker_wakeups_total", "service" => service, "source" => source).increment(1);
            }
        }
    }
    tracing::info!(service, "worker stopped");
    Ok(())
}
