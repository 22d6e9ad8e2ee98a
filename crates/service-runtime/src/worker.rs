//! The generic worker loop shared by every service that moves cases or delivers
//! outbox messages.
//!
//! A loop drains its work (claim → process → write) until nothing is claimable,
//! then sleeps until a `NOTIFY` on one of its channels, the slow fallback poll, or
//! shutdown. While an item is processed its lease is renewed every third of the
//! lease; every write presents the claim's fencing token, so a worker whose lease
//! was lost can never overwrite a newer outcome.
//!
//! The runtime knows no tables: where work is claimed from, how a lease is renewed
//! or released and when the next item falls due is a [`ClaimSource`] (cases) or an
//! [`OutboxSource`] (messages) that the worker crate implements over the store.

use std::{future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
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

/// What the loop logs and counts of one claimed item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimInfo {
    /// The item (case id or message id), for the span.
    pub id: Uuid,
    /// Its state (cases) or topic (messages): the metrics label.
    pub label: String,
    /// Which claim of the item this is (1 for the first).
    pub attempt: i32,
    /// How long the item waited for this service, when this is its first claim
    /// (recorded as the hand-off latency).
    pub handoff_wait: Option<Duration>,
}

/// Where a case step's work comes from: claiming, renewing and releasing leases on
/// cases, and when the next one falls due. Implemented over the store by the
/// worker crate.
pub trait ClaimSource: Send + Sync + 'static {
    /// One claimed case, with its fencing token.
    type Claim: Send + Sync;
    /// The notification channels that announce new work.
    fn channels(&self) -> Vec<String>;
    /// Claims the next claimable case for `lease`, if any.
    fn claim(
        &self,
        pool: &PgPool,
        worker: &str,
        lease: Duration,
    ) -> impl Future<Output = anyhow::Result<Option<Self::Claim>>> + Send;
    /// Extends the claim's lease.
    fn renew(
        &self,
        pool: &PgPool,
        claim: &Self::Claim,
        lease: Duration,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Lets the case go, claimable again after `after`.
    fn release(
        &self,
        pool: &PgPool,
        claim: &Self::Claim,
        after: Duration,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// When the next case becomes claimable (a back-off or a lease ending), if known.
    fn next_due(
        &self,
        pool: &PgPool,
    ) -> impl Future<Output = anyhow::Result<Option<DateTime<Utc>>>> + Send;
    /// What the loop logs and counts of `claim`.
    fn info(&self, claim: &Self::Claim) -> ClaimInfo;
    /// Whether `error` means the case moved on while it was processed (lease lost,
    /// stale version): it is left alone and not counted as a failure.
    fn superseded(&self, error: &anyhow::Error) -> bool;
}

/// What a case step did with a claimed case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step moved the case (with the claim's fence).
    Transitioned,
    /// Nothing to do yet (e.g. the carrier is unreachable): try again after this long.
    RetryAfter(Duration),
}

/// One service's work on cases in the states it owns.
pub trait CaseStep: Send + Sync + 'static {
    /// Where its cases are claimed.
    type Source: ClaimSource;
    /// The service's name, used as actor id, worker-id prefix and metrics label.
    fn service(&self) -> &'static str;
    /// The claim source of its cases.
    fn source(&self) -> &Self::Source;
    /// Works one claimed case. Must move it with the claim's fence, or ask to retry.
    fn process(
        &self,
        pool: &PgPool,
        claim: &<Self::Source as ClaimSource>::Claim,
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

/// Where an outbox handler's messages come from and where their outcomes go.
/// Implemented over the store by the worker crate.
pub trait OutboxSource: Send + Sync + 'static {
    /// One claimed message, with its fence.
    type Message: Send + Sync;
    /// The notification channels that announce new messages.
    fn channels(&self) -> Vec<String>;
    /// Claims the next due message for `lease`, if any.
    fn claim(
        &self,
        pool: &PgPool,
        worker: &str,
        lease: Duration,
    ) -> impl Future<Output = anyhow::Result<Option<Self::Message>>> + Send;
    /// Extends the message's lease.
    fn renew(
        &self,
        pool: &PgPool,
        message: &Self::Message,
        lease: Duration,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Records the message delivered.
    fn delivered(
        &self,
        pool: &PgPool,
        message: &Self::Message,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Schedules another attempt after `after`.
    fn retry_later(
        &self,
        pool: &PgPool,
        message: &Self::Message,
        after: Duration,
        error: &str,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Records the message given up.
    fn failed(
        &self,
        pool: &PgPool,
        message: &Self::Message,
        error: &str,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// When the next message falls due (a back-off or a lease ending), if known.
    fn next_due(
        &self,
        pool: &PgPool,
    ) -> impl Future<Output = anyhow::Result<Option<DateTime<Utc>>>> + Send;
    /// What the loop logs and counts of `message`.
    fn info(&self, message: &Self::Message) -> ClaimInfo;
}

/// One service's delivery of outbox messages of some topics.
pub trait OutboxHandler: Send + Sync + 'static {
    /// Where its messages are claimed.
    type Source: OutboxSource;
    /// The service's name.
    fn service(&self) -> &'static str;
    /// The outbox source of its messages.
    fn source(&self) -> &Self::Source;
    /// Delivers one claimed message.
    fn deliver(
        &self,
        pool: &PgPool,
        message: &<Self::Source as OutboxSource>::Message,
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
    let source = step.source();
    let Some(claim) = source.claim(pool, worker, lease).await? else {
        return Ok(false);
    };
    let info = source.info(&claim);
    let service = step.service();
    ::metrics::counter!("worker_claims_total", "service" => service, "state" => info.label.clone())
        .increment(1);
    if let Some(waited) = info.handoff_wait {
        ::metrics::histogram!("handoff_latency_seconds", "state" => info.label.clone())
            .record(waited.as_secs_f64());
    }
    let span = tracing::info_span!("case_step", service, case_id = %info.id, state = %info.label, attempt = info.attempt);

    let outcome = {
        let work = tracing::Instrument::instrument(step.process(pool, &claim), span.clone());
        tokio::pin!(work);
        let mut renew = tokio::time::interval(lease / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                result = &mut work => break result,
                _ = renew.tick() => {
                    if let Err(e) = source.renew(pool, &claim, lease).await {
                        tracing::warn!(parent: &span, error.message = %e, "lease renewal failed");
                    }
                }
            }
        }
    };
    let (claim, span) = (&claim, &span);
    let release = |after: Duration| async move {
        if let Err(e) = source.release(pool, claim, after).await {
            tracing::warn!(parent: span, error.message = %e, "could not release the case");
        }
    };
    match outcome {
        Ok(StepOutcome::Transitioned) => {}
        Ok(StepOutcome::RetryAfter(after)) => release(after).await,
        Err(e) if source.superseded(&e) => {
            tracing::info!(parent: span, error.message = %e, "case moved on while it was processed; leaving it");
        }
        Err(e) => {
            ::metrics::counter!("worker_errors_total", "service" => service).increment(1);
            tracing::error!(parent: span, error.message = %e, error.cause_chain = ?e, "case step failed; will retry");
            let backoff = Duration::from_secs((5 * info.attempt.clamp(1, 60)) as u64);
            release(backoff).await;
        }
    }
    Ok(true)
}

/// Claims and delivers at most one outbox message. Returns whether there was one.
pub async fn process_one_message<H: OutboxHandler>(
    pool: &PgPool,
    handler: &H,
    worker: &str,
    lease: Duration,
) -> anyhow::Result<bool> {
    let source = handler.source();
    let Some(message) = source.claim(pool, worker, lease).await? else {
        return Ok(false);
    };
    let info = source.info(&message);
    let service = handler.service();
    if let Some(waited) = info.handoff_wait {
        ::metrics::histogram!("handoff_latency_seconds", "state" => info.label.clone())
            .record(waited.as_secs_f64());
    }
    let span = tracing::info_span!("outbox_delivery", service, message_id = %info.id, topic = %info.label, attempt = info.attempt);
    let result = {
        let work = tracing::Instrument::instrument(handler.deliver(pool, &message), span.clone());
        tokio::pin!(work);
        let mut renew = tokio::time::interval(lease / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                result = &mut work => break result,
                _ = renew.tick() => {
                    if let Err(e) = source.renew(pool, &message, lease).await {
                        tracing::warn!(parent: &span, error.message = %e, "outbox lease renewal failed");
                    }
                }
            }
        }
    };
    let recorded = match result {
        Ok(Delivery::Delivered) => source.delivered(pool, &message).await,
        Ok(Delivery::Recorded) => Ok(()),
        Ok(Delivery::RetryAfter(after, error)) => {
            tracing::info!(parent: &span, error.message = %error, retry_in_secs = after.as_secs_f64(), "delivery will be retried");
            source.retry_later(pool, &message, after, &error).await
        }
        Ok(Delivery::GiveUp(error)) => {
            tracing::warn!(parent: &span, error.message = %error, "delivery given up");
            source.failed(pool, &message, &error).await
        }
        Err(e) => {
            ::metrics::counter!("worker_errors_total", "service" => service).increment(1);
            tracing::error!(parent: &span, error.message = %e, error.cause_chain = ?e, "delivery failed; will retry");
            source
                .retry_later(pool, &message, Duration::from_secs(5), &e.to_string())
                .await
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
    let channels = step.source().channels();
    let lease = settings.lease;
    let due_pool = pool.clone();
    let due_step = step.clone();
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
            let (pool, step) = (due_pool.clone(), due_step.clone());
            async move { step.source().next_due(&pool).await }
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
    let channels = handler.source().channels();
    let lease = settings.lease;
    let due_pool = pool.clone();
    let due_handler = handler.clone();
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
            let (pool, handler) = (due_pool.clone(), due_handler.clone());
            async move { handler.source().next_due(&pool).await }
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// One scripted case and what the loop did with it.
    #[derive(Debug, Default)]
    struct Script {
        claimable: Mutex<Vec<u32>>,
        released: Mutex<Vec<(u32, Duration)>>,
    }

    #[derive(Debug)]
    struct Superseded;

    impl std::fmt::Display for Superseded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("lease lost")
        }
    }

    impl std::error::Error for Superseded {}

    impl ClaimSource for Script {
        type Claim = u32;

        fn channels(&self) -> Vec<String> {
            vec!["work".into()]
        }

        async fn claim(&self, _: &PgPool, _: &str, _: Duration) -> anyhow::Result<Option<u32>> {
            Ok(self.claimable.lock().unwrap().pop())
        }

        async fn renew(&self, _: &PgPool, _: &u32, _: Duration) -> anyhow::Result<()> {
            Ok(())
        }

        async fn release(&self, _: &PgPool, claim: &u32, after: Duration) -> anyhow::Result<()> {
            self.released.lock().unwrap().push((*claim, after));
            Ok(())
        }

        async fn next_due(&self, _: &PgPool) -> anyhow::Result<Option<DateTime<Utc>>> {
            Ok(None)
        }

        fn info(&self, claim: &u32) -> ClaimInfo {
            ClaimInfo {
                id: Uuid::nil(),
                label: "scripted".into(),
                attempt: i32::try_from(*claim).unwrap(),
                handoff_wait: None,
            }
        }

        fn superseded(&self, error: &anyhow::Error) -> bool {
            error.downcast_ref::<Superseded>().is_some()
        }
    }

    /// Case 1 moves, 2 asks to retry in 7 s, 3 lost its lease, 4 fails.
    #[derive(Debug, Default)]
    struct Step {
        script: Script,
    }

    impl CaseStep for Step {
        type Source = Script;

        fn service(&self) -> &'static str {
            "test"
        }

        fn source(&self) -> &Script {
            &self.script
        }

        async fn process(&self, _: &PgPool, claim: &u32) -> anyhow::Result<StepOutcome> {
            match claim {
                1 => Ok(StepOutcome::Transitioned),
                2 => Ok(StepOutcome::RetryAfter(Duration::from_secs(7))),
                3 => Err(Superseded.into()),
                _ => Err(anyhow::anyhow!("boom")),
            }
        }
    }

    #[tokio::test]
    async fn each_outcome_releases_or_leaves_the_case_as_its_source_says() {
        // Never connected: the loop itself touches no table.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let step = Step::default();
        *step.script.claimable.lock().unwrap() = vec![4, 3, 2, 1];
        let mut processed = 0;
        while process_one_case(&pool, &step, "w", Duration::from_secs(30))
            .await
            .unwrap()
        {
            processed += 1;
        }
        assert_eq!(processed, 4);
        assert_eq!(
            *step.script.released.lock().unwrap(),
            [
                (2, Duration::from_secs(7)),
                // A failure backs off 5 s per attempt.
                (4, Duration::from_secs(20)),
            ]
        );
    }
}
