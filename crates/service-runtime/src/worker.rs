//! The generic worker loop shared by every service that moves cases or delivers
//! outbox messages.
//!
//! A loop keeps up to K items in flight ([`WorkerSettings::concurrency`]): it claims
//! a batch of up to its free slots in one statement, works each item as its own task
//! and claims again when a slot frees up. With nothing claimable it sleeps until a
//! `NOTIFY` on one of its channels (read on the process's dedicated listener
//! connection, [`Wakeups`]), the next due time, the slow fallback poll, or shutdown.
//! While an item is processed its lease is renewed every third of the lease; every
//! write presents that item's fencing token, so a worker whose lease was lost can
//! never overwrite a newer outcome. On shutdown the loop stops claiming and finishes
//! the items in flight.
//!
//! The runtime knows no tables: where work is claimed from, how a lease is renewed
//! or released and when the next item falls due is a [`ClaimSource`] (cases) or an
//! [`OutboxSource`] (messages) that the worker crate implements over the store.

use std::{future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::Shutdown;
pub use crate::wake::{Subscription, Wakeups};

/// Timing, concurrency and wake-ups of a worker loop.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Fallback poll when no notification arrives.
    pub poll: Duration,
    /// Lease length; renewed every third of it while processing.
    pub lease: Duration,
    /// Items one loop works on at once.
    pub concurrency: usize,
    /// The `LISTEN` connection the loops share (one per process when the process
    /// hands the same hub to every loop).
    pub wakeups: Wakeups,
}

impl WorkerSettings {
    /// From the process settings, with a hub of its own (see [`Self::woken_by`]).
    pub fn from(settings: &crate::Settings) -> Self {
        Self {
            poll: settings.worker_poll,
            lease: settings.worker_lease,
            concurrency: settings.worker_concurrency,
            wakeups: Wakeups::new(),
        }
    }

    /// The same settings, woken by `wakeups` (the process's shared hub).
    pub fn woken_by(mut self, wakeups: Wakeups) -> Self {
        self.wakeups = wakeups;
        self
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

/// What a batch claim found and, when it came back short, when the next item it
/// did not take falls due, if the source read that with the claim (`None`: not
/// known, the loop asks `next_due` before it sleeps).
#[derive(Debug)]
pub struct Batch<T> {
    /// The items claimed.
    pub items: Vec<T>,
    /// `Some(due)` when the claim also read the next due time (`Some(None)`: nothing
    /// is pending).
    pub next_due: Option<Option<DateTime<Utc>>>,
}

impl<T> Batch<T> {
    /// A claim of up to `max` items that read `next_due` with them: kept only when
    /// the claim came back short (a full one says nothing of what is left).
    pub fn read(items: Vec<T>, max: usize, next_due: Option<DateTime<Utc>>) -> Self {
        let short = items.len() < max;
        Self {
            items,
            next_due: short.then_some(next_due),
        }
    }

    /// A claim that read no due time.
    pub fn unknown(items: Vec<T>) -> Self {
        Self {
            items,
            next_due: None,
        }
    }
}

/// Where a case step's work comes from: claiming, renewing and releasing leases on
/// cases, and when the next one falls due. Implemented over the store by the
/// worker crate.
pub trait ClaimSource: Send + Sync + 'static {
    /// One claimed case, with its fencing token.
    type Claim: Send + Sync + 'static;
    /// The notification channels that announce new work.
    fn channels(&self) -> Vec<String>;
    /// Claims the next claimable case for `lease`, if any.
    fn claim(
        &self,
        pool: &PgPool,
        worker: &str,
        lease: Duration,
    ) -> impl Future<Output = anyhow::Result<Option<Self::Claim>>> + Send;
    /// Claims up to `max` claimable cases for `lease`, each with its own fencing
    /// token. Sources over a table claim them in one statement; the default claims
    /// one at a time.
    fn claim_batch(
        &self,
        pool: &PgPool,
        worker: &str,
        lease: Duration,
        max: usize,
    ) -> impl Future<Output = anyhow::Result<Vec<Self::Claim>>> + Send {
        claim_one_at_a_time(max, move || self.claim(pool, worker, lease))
    }
    /// [`ClaimSource::claim_batch`], with the next due time when the claim came back
    /// short if the source reads it in the same statement (the default does not).
    fn claim_batch_due(
        &self,
        pool: &PgPool,
        worker: &str,
        lease: Duration,
        max: usize,
    ) -> impl Future<Output = anyhow::Result<Batch<Self::Claim>>> + Send {
        async move {
            Ok(Batch::unknown(
                self.claim_batch(pool, worker, lease, max).await?,
            ))
        }
    }
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

/// The default batch claim of both sources: up to `max` single claims, stopping at
/// the first that finds nothing.
async fn claim_one_at_a_time<T, F, Fut>(max: usize, mut claim: F) -> anyhow::Result<Vec<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let mut claimed = Vec::new();
    while claimed.len() < max {
        match claim().await? {
            Some(item) => claimed.push(item),
            None => break,
        }
    }
    Ok(claimed)
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
    type Message: Send + Sync + 'static;
    /// The notification channels that announce new messages.
    fn channels(&self) -> Vec<String>;
    /// Claims the next due message for `lease`, if any.
    fn claim(
        &self,
        pool: &PgPool,
        worker: &str,
        lease: Duration,
    ) -> impl Future<Output = anyhow::Result<Option<Self::Message>>> + Send;
    /// Claims up to `max` due messages for `lease`, each with its own fence.
    /// Sources over a table claim them in one statement; the default claims one at
    /// a time.
    fn claim_batch(
        &self,
        pool: &PgPool,
        worker: &str,
        lease: Duration,
        max: usize,
    ) -> impl Future<Output = anyhow::Result<Vec<Self::Message>>> + Send {
        claim_one_at_a_time(max, move || self.claim(pool, worker, lease))
    }
    /// [`OutboxSource::claim_batch`], with the next due time when the claim came
    /// back short if the source reads it in the same statement (the default does not).
    fn claim_batch_due(
        &self,
        pool: &PgPool,
        worker: &str,
        lease: Duration,
        max: usize,
    ) -> impl Future<Output = anyhow::Result<Batch<Self::Message>>> + Send {
        async move {
            Ok(Batch::unknown(
                self.claim_batch(pool, worker, lease, max).await?,
            ))
        }
    }
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
    let Some(claim) = step.source().claim(pool, worker, lease).await? else {
        return Ok(false);
    };
    work_case(pool, step, claim, lease).await;
    Ok(true)
}

/// Works one claimed case: processes it while renewing its lease every third of
/// the lease, then releases it as the outcome says. Every write presents the
/// claim's own fence. Returns whether the case was put back to be claimed again
/// later (a back-off: the loop's next due time may have moved).
pub async fn work_case<S: CaseStep>(
    pool: &PgPool,
    step: &S,
    claim: <S::Source as ClaimSource>::Claim,
    lease: Duration,
) -> bool {
    let source = step.source();
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
        Ok(StepOutcome::Transitioned) => false,
        Ok(StepOutcome::RetryAfter(after)) => {
            release(after).await;
            true
        }
        Err(e) if source.superseded(&e) => {
            tracing::info!(parent: span, error.message = %e, "case moved on while it was processed; leaving it");
            false
        }
        Err(e) => {
            ::metrics::counter!("worker_errors_total", "service" => service).increment(1);
            tracing::error!(parent: span, error.message = %e, error.cause_chain = ?e, "case step failed; will retry");
            let backoff = Duration::from_secs((5 * info.attempt.clamp(1, 60)) as u64);
            release(backoff).await;
            true
        }
    }
}

/// Claims and delivers at most one outbox message. Returns whether there was one.
pub async fn process_one_message<H: OutboxHandler>(
    pool: &PgPool,
    handler: &H,
    worker: &str,
    lease: Duration,
) -> anyhow::Result<bool> {
    let Some(message) = handler.source().claim(pool, worker, lease).await? else {
        return Ok(false);
    };
    work_message(pool, handler, message, lease).await;
    Ok(true)
}

/// Delivers one claimed message while renewing its lease, then records the
/// outcome with the message's own fence. Returns whether the message was put back
/// to be tried again later (the loop's next due time may have moved).
pub async fn work_message<H: OutboxHandler>(
    pool: &PgPool,
    handler: &H,
    message: <H::Source as OutboxSource>::Message,
    lease: Duration,
) -> bool {
    let source = handler.source();
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
    let (recorded, put_back) = match result {
        Ok(Delivery::Delivered) => (source.delivered(pool, &message).await, false),
        Ok(Delivery::Recorded) => (Ok(()), false),
        Ok(Delivery::RetryAfter(after, error)) => {
            tracing::info!(parent: &span, error.message = %error, retry_in_secs = after.as_secs_f64(), "delivery will be retried");
            (
                source.retry_later(pool, &message, after, &error).await,
                true,
            )
        }
        Ok(Delivery::GiveUp(error)) => {
            tracing::warn!(parent: &span, error.message = %error, "delivery given up");
            (source.failed(pool, &message, &error).await, false)
        }
        Err(e) => {
            ::metrics::counter!("worker_errors_total", "service" => service).increment(1);
            tracing::error!(parent: &span, error.message = %e, error.cause_chain = ?e, "delivery failed; will retry");
            let recorded = source
                .retry_later(pool, &message, Duration::from_secs(5), &e.to_string())
                .await;
            (recorded, true)
        }
    };
    if let Err(e) = recorded {
        tracing::info!(parent: &span, error.message = %e, "delivery outcome not recorded (lease lost)");
        // Its lease ends some time: the loop reads its next due time again.
        return true;
    }
    put_back
}

/// Runs a case step until shutdown, working up to `settings.concurrency` cases at once.
pub async fn run_case_worker<S: CaseStep>(
    pool: PgPool,
    step: Arc<S>,
    settings: WorkerSettings,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let worker = worker_id(step.service());
    let subscription = settings
        .wakeups
        .subscribe(&pool, &step.source().channels())
        .await?;
    let lease = settings.lease;
    tracing::info!(
        worker,
        concurrency = settings.concurrency,
        "case worker started"
    );
    let (claim_pool, claim_step) = (pool.clone(), step.clone());
    let (work_pool, work_step) = (pool.clone(), step.clone());
    let (due_pool, due_step) = (pool.clone(), step.clone());
    run_concurrent(
        Loop {
            service: step.service(),
            poll: settings.poll,
            concurrency: settings.concurrency,
            subscription,
            shutdown,
        },
        move |free| {
            let (pool, step, worker) = (claim_pool.clone(), claim_step.clone(), worker.clone());
            async move {
                step.source()
                    .claim_batch_due(&pool, &worker, lease, free)
                    .await
            }
        },
        move |claim| {
            let (pool, step) = (work_pool.clone(), work_step.clone());
            async move { work_case(&pool, step.as_ref(), claim, lease).await }
        },
        move || {
            let (pool, step) = (due_pool.clone(), due_step.clone());
            async move { step.source().next_due(&pool).await }
        },
    )
    .await
}

/// Runs an outbox handler until shutdown, delivering up to `settings.concurrency`
/// messages at once.
pub async fn run_outbox_worker<H: OutboxHandler>(
    pool: PgPool,
    handler: Arc<H>,
    settings: WorkerSettings,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let worker = worker_id(handler.service());
    let subscription = settings
        .wakeups
        .subscribe(&pool, &handler.source().channels())
        .await?;
    let lease = settings.lease;
    tracing::info!(
        worker,
        concurrency = settings.concurrency,
        "outbox worker started"
    );
    let (claim_pool, claim_handler) = (pool.clone(), handler.clone());
    let (work_pool, work_handler) = (pool.clone(), handler.clone());
    let (due_pool, due_handler) = (pool.clone(), handler.clone());
    run_concurrent(
        Loop {
            service: handler.service(),
            poll: settings.poll,
            concurrency: settings.concurrency,
            subscription,
            shutdown,
        },
        move |free| {
            let (pool, handler, worker) =
                (claim_pool.clone(), claim_handler.clone(), worker.clone());
            async move {
                handler
                    .source()
                    .claim_batch_due(&pool, &worker, lease, free)
                    .await
            }
        },
        move |message| {
            let (pool, handler) = (work_pool.clone(), work_handler.clone());
            async move { work_message(&pool, handler.as_ref(), message, lease).await }
        },
        move || {
            let (pool, handler) = (due_pool.clone(), due_handler.clone());
            async move { handler.source().next_due(&pool).await }
        },
    )
    .await
}

/// What a concurrent loop needs besides its claim, work and due-time functions.
#[derive(Debug)]
pub struct Loop {
    /// The service's name (metrics, logs).
    pub service: &'static str,
    /// Fallback poll when no notification arrives.
    pub poll: Duration,
    /// Items worked on at once (at least 1).
    pub concurrency: usize,
    /// The loop's wake flag.
    pub subscription: Subscription,
    /// Stops claiming; in-flight items are finished first.
    pub shutdown: Shutdown,
}

/// How many items to claim with `free` slots: the largest power of two not above
/// it. A claim's batch size is written into its statement (so its plan is cached,
/// see `case_store::queue::claim_batch_due`), and Postgres keeps a statement's
/// generic plan only after five runs on the connection: with every size from 1 to
/// the concurrency, most sizes never got there and 43 % of the case claims were
/// planned again at 100/s (710 plans of 1,636 claims). A full claim is followed by
/// the next at once, so a backlog still fills every slot.
fn claim_size(free: usize) -> usize {
    match free {
        0 => 0,
        n => 1 << n.ilog2(),
    }
}

/// Keeps up to `concurrency` items in flight: claims a batch of up to the free
/// slots in one call (`claim(n)`, `n` the free slots rounded down by
/// [`claim_size`]), runs each item as its own task (`work`, which renews that
/// item's lease and writes with its fence), and claims again whenever a slot frees
/// up or a notification arrives. With nothing claimable and nothing in
/// flight it sleeps until a notification, the moment `next_due` names (a back-off
/// or lease ending), the poll interval, or shutdown. On shutdown it stops claiming
/// and waits for the items in flight; an item whose task dies keeps its lease and
/// is claimable again once the lease ends.
pub async fn run_concurrent<T, C, CF, W, WF, D, DF>(
    lp: Loop,
    claim: C,
    work: W,
    next_due: D,
) -> anyhow::Result<()>
where
    T: Send + 'static,
    C: Fn(usize) -> CF,
    CF: Future<Output = anyhow::Result<Batch<T>>>,
    W: Fn(T) -> WF,
    WF: Future<Output = bool> + Send + 'static,
    D: Fn() -> DF,
    DF: Future<Output = anyhow::Result<Option<DateTime<Utc>>>>,
{
    let Loop {
        service,
        poll,
        concurrency,
        subscription,
        shutdown,
    } = lp;
    let concurrency = concurrency.max(1);
    let mut in_flight: JoinSet<bool> = JoinSet::new();
    let gauge = ::metrics::gauge!("worker_in_flight", "service" => service);
    // Whether a claim may find something: false once a claim came back short (the
    // queue was drained at that moment), true again on a notification, a timer or
    // the poll. A finished item alone does not make the loop claim again when the
    // last claim was short: that claim would find nothing and cost a transaction.
    let mut may_have_work = true;
    // The next due time read by the last short claim, while nothing this loop did
    // since can have moved it (an item put back with a back-off clears it): the
    // idle loop then sleeps without asking `next_due` again.
    let mut known_due: Option<Option<DateTime<Utc>>> = None;
    'run: while !shutdown.is_triggered() {
        // Fill the free slots until a claim comes back short (nothing more is due).
        while may_have_work && in_flight.len() < concurrency && !shutdown.is_triggered() {
            let ask = claim_size(concurrency - in_flight.len());
            match claim(ask).await {
                Ok(Batch { items, next_due }) => {
                    let short = items.len() < ask;
                    known_due = if short { next_due } else { None };
                    if !items.is_empty() {
                        ::metrics::histogram!("worker_claim_batch_size", "service" => service)
                            .record(items.len() as f64);
                    }
                    for item in items {
                        in_flight.spawn(work(item));
                    }
                    if short {
                        may_have_work = false;
                    }
                }
                Err(e) => {
                    ::metrics::counter!("worker_errors_total", "service" => service).increment(1);
                    tracing::error!(service, error.message = %e, error.cause_chain = ?e, "worker could not claim work; backing off");
                    tokio::select! {
                        () = shutdown.wait() => break 'run,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    may_have_work = false;
                    known_due = None;
                }
            }
        }
        gauge.set(in_flight.len() as f64);
        if shutdown.is_triggered() {
            break;
        }
        if !in_flight.is_empty() {
            // Busy: claim again when a slot frees up and the last claim filled every
            // slot (more may be waiting), when new work is announced, or after the
            // poll interval (a back-off of an item this loop released has ended).
            tokio::select! {
                () = shutdown.wait() => break,
                done = in_flight.join_next() => {
                    if finished(service, done) {
                        known_due = None;
                    }
                }
                () = subscription.woken(), if !may_have_work => {
                    ::metrics::counter!("worker_wakeups_total", "service" => service, "source" => "notify").increment(1);
                    may_have_work = true;
                }
                () = tokio::time::sleep(poll), if !may_have_work => {
                    ::metrics::counter!("worker_wakeups_total", "service" => service, "source" => "poll").increment(1);
                    may_have_work = true;
                }
            }
            continue;
        }
        let due = match known_due.take() {
            Some(due) => Ok(due),
            None => next_due().await,
        };
        let sleep_for = sleep_for(service, poll, due);
        let timer_is_poll = sleep_for == poll;
        tokio::select! {
            () = shutdown.wait() => break,
            () = subscription.woken() => {
                ::metrics::counter!("worker_wakeups_total", "service" => service, "source" => "notify").increment(1);
            }
            () = tokio::time::sleep(sleep_for) => {
                let source = if timer_is_poll { "poll" } else { "timer" };
                ::metrics::counter!("worker_wakeups_total", "service" => service, "source" => source).increment(1);
            }
        }
        may_have_work = true;
    }
    if !in_flight.is_empty() {
        tracing::info!(
            service,
            in_flight = in_flight.len(),
            "stopping: finishing the items in flight"
        );
    }
    while let Some(done) = in_flight.join_next().await {
        finished(service, Some(done));
        gauge.set(in_flight.len() as f64);
    }
    tracing::info!(service, "worker stopped");
    Ok(())
}

/// Notes an item task that ended; a panic is logged (the item keeps its lease and
/// is claimed again once it ends). Returns whether the item is due again later (put
/// back with a back-off, or left leased by a task that died).
fn finished(service: &'static str, done: Option<Result<bool, tokio::task::JoinError>>) -> bool {
    match done {
        Some(Ok(put_back)) => put_back,
        Some(Err(e)) => {
            ::metrics::counter!("worker_errors_total", "service" => service).increment(1);
            tracing::error!(service, error.message = %e, "an item's task failed; it is claimable again after its lease");
            true
        }
        None => false,
    }
}

/// How long an idle loop sleeps: until the next due time, at most `poll`.
fn sleep_for(
    service: &'static str,
    poll: Duration,
    next_due: anyhow::Result<Option<DateTime<Utc>>>,
) -> Duration {
    match next_due {
        Ok(Some(due)) => (due - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(poll),
        Ok(None) => poll,
        Err(e) => {
            tracing::warn!(service, error.message = %e, "cannot read the next due time");
            poll.min(Duration::from_secs(5))
        }
    }
}

/// Drains `tick` (which returns whether it found work) one item at a time and then
/// waits for a notification on `channels`, the moment `next_due` names (a back-off
/// or lease ending), the poll interval, or shutdown — whichever comes first. The
/// loop listens on a connection of its own, not one of `pool`'s.
pub async fn run_loop<F, Fut, D, DFut>(
    pool: &PgPool,
    service: &'static str,
    channels: Vec<String>,
    poll: Duration,
    shutdown: Shutdown,
    tick: F,
    next_due: D,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
    D: Fn() -> DFut,
    DFut: Future<Output = anyhow::Result<Option<chrono::DateTime<chrono::Utc>>>>,
{
    let wakeups = Wakeups::new();
    run_loop_woken_by(
        &wakeups, pool, service, channels, poll, shutdown, tick, next_due,
    )
    .await
}

/// [`run_loop`] on a given hub: loops of one process share its `LISTEN`
/// connection, and a routed hub also wakes the loop when a routing payload names
/// one of its channels.
#[allow(clippy::too_many_arguments)]
pub async fn run_loop_woken_by<F, Fut, D, DFut>(
    wakeups: &Wakeups,
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
    let subscription = wakeups.subscribe(pool, &channels).await?;
    while !shutdown.is_triggered() {
        loop {
            match tick().await {
                Ok(true) if !shutdown.is_triggered() => continue,
                Ok(_) => break,
                Err(e) => {
                    ::metrics::counter!("worker_errors_total", "service" => service).increment(1);
                    tracing::error!(service, error.message = %e, error.cause_chain = ?e, "worker could not claim work; backing off");
                    tokio::select! {
                        () = shutdown.wait() => return Ok(()),
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    break;
                }
            }
        }
        let sleep_for = sleep_for(service, poll, next_due().await);
        let timer_is_poll = sleep_for == poll;
        tokio::select! {
            () = shutdown.wait() => break,
            () = subscription.woken() => {
                ::metrics::counter!("worker_wakeups_total", "service" => service, "source" => "notify").increment(1);
            }
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

    #[test]
    fn claims_ask_for_a_power_of_two_of_the_free_slots() {
        let sizes: Vec<usize> = (0..=17).map(claim_size).collect();
        assert_eq!(
            sizes,
            [0, 1, 2, 2, 4, 4, 4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 16, 16]
        );
    }

    #[test]
    fn a_batch_keeps_the_due_time_only_of_a_short_claim() {
        let due = Utc::now();
        assert_eq!(Batch::read(vec![1], 2, Some(due)).next_due, Some(Some(due)));
        assert_eq!(Batch::read(Vec::<u8>::new(), 2, None).next_due, Some(None));
        assert_eq!(Batch::read(vec![1, 2], 2, Some(due)).next_due, None);
        assert_eq!(Batch::unknown(vec![1]).next_due, None);
    }

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
