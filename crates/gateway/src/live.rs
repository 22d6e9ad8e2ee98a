//! Live status streams (Server-Sent Events) for the subscriber and for agents.
//!
//! The gateway runs ONE `LISTEN case_changed` connection ([`LiveHub::start`]) and fans
//! every change out through a `tokio::sync::broadcast` channel; each stream subscribes
//! and keeps only its own case. Nothing polls. A stream first sends the case's current
//! status, then one `status` event per change, in version order; when it may have
//! missed changes (the listener reconnected, or the stream fell behind the channel) it
//! re-reads where it stands and sends each missed version. A comment line every
//! 15 s keeps proxies from closing an idle stream. Streams end at shutdown and after
//! [`MAX_STREAM`] (an `EventSource` reconnects by itself, re-authenticating).
//!
//! Limits ([`StreamLimits`], `REACTIVATION_LIVE_STREAMS_*`): open streams are
//! counted per case token (the subscriber's streams of one case), per agent (the
//! case streams and the console's change feed) and in total; past a limit the
//! request answers 429 problem+json with `Retry-After`, and a stream's slot is freed
//! the moment it ends (the client went away, shutdown, its longest life).
//!
//! Catch-up cannot exhaust the pool: after a listener reconnect the hub reads where
//! every followed case stands in ONE query (batches of 1000 ids) and fans that out
//! ([`Signal::Resync`]); a stream re-reads its own event log only when it missed
//! more than one version or fell behind the channel, and at most
//! [`CATCH_UP_CONCURRENCY`] such re-reads run at once.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderMap, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use case_domain::CaseState;
use case_store::{CASE_CHANGED_CHANNEL, CaseRow};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use service_runtime::Shutdown;
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::broadcast::{self, error::RecvError};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{AppState, agent::CASE_READERS, agent_auth::AgentSession, error::ApiError};

/// Keep-alive comment interval.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The longest a stream stays open; the client then reconnects.
pub const MAX_STREAM: Duration = Duration::from_secs(30 * 60);
/// How long an `EventSource` waits before reconnecting (sent to the client).
const RETRY: Duration = Duration::from_secs(3);
/// Changes buffered per stream before it counts as lagging (it then catches up from the log).
const CHANNEL_CAPACITY: usize = 1024;
/// Streams re-reading their case's event log at once (each holds one pooled connection).
pub const CATCH_UP_CONCURRENCY: usize = 4;
/// Case ids read per query when the hub re-reads the followed cases after a reconnect.
const RESYNC_BATCH: usize = 1000;
/// What a client refused a stream is asked to wait before trying again.
pub const STREAM_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Open streams allowed per case token (default 5).
pub const PER_TOKEN_ENV: &str = "REACTIVATION_LIVE_STREAMS_PER_TOKEN";
/// Open streams allowed per agent (default 20).
pub const PER_AGENT_ENV: &str = "REACTIVATION_LIVE_STREAMS_PER_AGENT";
/// Open streams allowed in total on one gateway (default 2000).
pub const TOTAL_ENV: &str = "REACTIVATION_LIVE_STREAMS_TOTAL";

/// How many live streams may be open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Per case token (the subscriber's streams of one case).
    pub per_token: usize,
    /// Per agent (case streams and the console's change feed together).
    pub per_agent: usize,
    /// On this gateway.
    pub total: usize,
}

impl Default for StreamLimits {
    /// 5 per token, 20 per agent, 2000 in total.
    fn default() -> Self {
        Self {
            per_token: 5,
            per_agent: 20,
            total: 2000,
        }
    }
}

impl StreamLimits {
    /// Reads the limits from the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the limits through `lookup`; unset or empty means the default; anything
    /// but a whole number from 1 to 1 000 000 is an error naming the variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let defaults = Self::default();
        let read = |var: &str, default: usize| -> anyhow::Result<usize> {
            match lookup(var).map(|v| v.trim().to_owned()) {
                None => Ok(default),
                Some(v) if v.is_empty() => Ok(default),
                Some(v) => v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or_else(|| {
                        anyhow::anyhow!("{var} must be a whole number from 1 to 1000000")
                    }),
            }
        };
        Ok(Self {
            per_token: read(PER_TOKEN_ENV, defaults.per_token)?,
            per_agent: read(PER_AGENT_ENV, defaults.per_agent)?,
            total: read(TOTAL_ENV, defaults.total)?,
        })
    }
}

/// Whose streams a slot counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Holder {
    /// The subscriber holding a case's token (one token per case at a time).
    CaseToken(Uuid),
    /// An agent.
    Agent(Uuid),
}

/// Which limit refused a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRefused {
    /// Too many streams on this case token.
    PerToken,
    /// Too many streams of this agent.
    PerAgent,
    /// Too many streams on the gateway.
    Total,
}

impl StreamRefused {
    /// The 429 answer, with `Retry-After`.
    pub fn response(self) -> Response {
        let (code, detail) = match self {
            Self::PerToken => (
                "per_token",
                "Too many live streams are open for this case; close one (another tab or device) and retry.",
            ),
            Self::PerAgent => (
                "per_agent",
                "You have too many live streams open; close some pages and retry.",
            ),
            Self::Total => (
                "total",
                "The server has too many live streams open; retry later.",
            ),
        };
        let seconds = STREAM_RETRY_AFTER.as_secs();
        service_runtime::Problem::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too-many-streams",
            "Too many live streams",
            detail,
        )
        .with("limit", code)
        .with("retry_after", seconds)
        .into_response_retrying(seconds)
    }
}

#[derive(Debug, Default)]
struct Slots {
    limits: StreamLimits,
    total: usize,
    per_holder: HashMap<Holder, usize>,
    per_case: HashMap<Uuid, usize>,
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// What every clone of a hub shares besides the channel.
#[derive(Debug)]
struct Shared {
    slots: Mutex<Slots>,
    catch_up: tokio::sync::Semaphore,
    catch_ups: AtomicU64,
    resync_reads: AtomicU64,
}

impl Shared {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        // A panic while holding the lock leaves plain counters behind: keep using them.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One open stream's place in the counts; dropping it (the stream ended) frees it.
#[derive(Debug)]
pub struct StreamSlot {
    shared: Arc<Shared>,
    holder: Holder,
    case_id: Option<Uuid>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut slots = self.shared.slots();
        slots.total = slots.total.saturating_sub(1);
        decrement(&mut slots.per_holder, &self.holder);
        if let Some(case_id) = self.case_id {
            decrement(&mut slots.per_case, &case_id);
        }
    }
}

/// Where the followed cases stood when the listener reconnected.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Each followed case's current status.
    pub statuses: HashMap<Uuid, StatusEvent>,
    /// Every followed case was read (false: the read failed; streams re-read themselves).
    pub complete: bool,
}

/// One status event: where a case stands after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusEvent {
    /// Case id.
    pub case_id: Uuid,
    /// The state after the change.
    pub state: String,
    /// The version after the change (also the SSE event id).
    pub version: i32,
    /// When the case entered that state.
    pub at: DateTime<Utc>,
}

impl StatusEvent {
    fn of_case(case: &CaseRow) -> Self {
        Self {
            case_id: case.id,
            state: case.state.as_str().into(),
            version: case.version,
            at: case.state_entered_at,
        }
    }

    fn to_sse(&self) -> Event {
        Event::default()
            .event("status")
            .id(self.version.to_string())
            .data(serde_json::to_string(self).unwrap_or_default())
    }
}

/// Parses a `case_changed` payload (`{"case_id", "version", "state", "at"}`); a
/// payload without `at` is dated `now`.
pub fn parse_payload(payload: &str, now: DateTime<Utc>) -> Option<StatusEvent> {
    parse_changes(payload, now).into_iter().next()
}

/// Every case change a `case_changed` payload announces: the case itself, then the
/// other cases the same transaction changed (`"also"`, e.g. the number's unproven
/// cases that a proof superseded; one `NOTIFY` per transaction). Unreadable
/// entries are left out; an unreadable payload gives nothing.
pub fn parse_changes(payload: &str, now: DateTime<Utc>) -> Vec<StatusEvent> {
    #[derive(Deserialize)]
    struct Change {
        case_id: Uuid,
        version: i32,
        state: String,
        #[serde(default)]
        at: Option<DateTime<Utc>>,
    }
    #[derive(Deserialize)]
    struct Payload {
        #[serde(flatten)]
        change: Change,
        #[serde(default)]
        also: Vec<serde_json::Value>,
    }
    let event = |c: Change| {
        CaseState::parse(&c.state).map(|_| StatusEvent {
            case_id: c.case_id,
            state: c.state,
            version: c.version,
            at: c.at.unwrap_or(now),
        })
    };
    let Ok(p) = serde_json::from_str::<Payload>(payload) else {
        return Vec::new();
    };
    let Some(first) = event(p.change) else {
        return Vec::new();
    };
    std::iter::once(first)
        .chain(
            p.also
                .into_iter()
                .filter_map(|v| serde_json::from_value::<Change>(v).ok())
                .filter_map(event),
        )
        .collect()
}

/// What the hub fans out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A case changed.
    Changed(StatusEvent),
    /// Changes may have been missed (the listener reconnected): where every followed
    /// case stands now, read in one batch.
    Resync(Arc<Snapshot>),
}

/// The fan-out of case changes to live streams. Cheap to clone; every clone shares
/// the channel.
#[derive(Debug, Clone)]
pub struct LiveHub {
    sender: broadcast::Sender<Signal>,
    closed: Shutdown,
    shared: Arc<Shared>,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new(CHANNEL_CAPACITY)
    }
}

impl LiveHub {
    /// A hub whose streams may fall `capacity` changes behind before they catch up from the log.
    pub fn new(capacity: usize) -> Self {
        Self::with_limits(capacity, StreamLimits::default())
    }

    /// A hub with `limits` on open streams.
    pub fn with_limits(capacity: usize, limits: StreamLimits) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            sender,
            closed: Shutdown::new(),
            shared: Arc::new(Shared {
                slots: Mutex::new(Slots {
                    limits,
                    ..Slots::default()
                }),
                catch_up: tokio::sync::Semaphore::new(CATCH_UP_CONCURRENCY),
                catch_ups: AtomicU64::new(0),
                resync_reads: AtomicU64::new(0),
            }),
        }
    }

    /// Replaces the limits (at start, from the environment); open streams keep their slots.
    pub fn set_limits(&self, limits: StreamLimits) {
        self.shared.slots().limits = limits;
    }

    /// The limits in force.
    pub fn limits(&self) -> StreamLimits {
        self.shared.slots().limits
    }

    /// Takes a slot for a stream of `holder` (following `case_id`, if any), or says
    /// which limit refuses it. The slot is freed when dropped.
    pub fn open(&self, holder: Holder, case_id: Option<Uuid>) -> Result<StreamSlot, StreamRefused> {
        let mut slots = self.shared.slots();
        let limits = slots.limits;
        let held = slots.per_holder.get(&holder).copied().unwrap_or(0);
        match holder {
            Holder::CaseToken(_) if held >= limits.per_token => {
                return Err(StreamRefused::PerToken);
            }
            Holder::Agent(_) if held >= limits.per_agent => return Err(StreamRefused::PerAgent),
            _ => {}
        }
        if slots.total >= limits.total {
            return Err(StreamRefused::Total);
        }
        slots.total += 1;
        *slots.per_holder.entry(holder).or_default() += 1;
        if let Some(case_id) = case_id {
            *slots.per_case.entry(case_id).or_default() += 1;
        }
        Ok(StreamSlot {
            shared: Arc::clone(&self.shared),
            holder,
            case_id,
        })
    }

    /// Streams holding a slot.
    pub fn open_streams(&self) -> usize {
        self.shared.slots().total
    }

    /// How many times a stream re-read its own event log (it missed several versions,
    /// or fell behind the channel). A listener reconnect alone causes none.
    pub fn catch_ups(&self) -> u64 {
        self.shared.catch_ups.load(Ordering::Relaxed)
    }

    /// How many batched reads of the followed cases the hub made after (re)connecting.
    pub fn resync_reads(&self) -> u64 {
        self.shared.resync_reads.load(Ordering::Relaxed)
    }

    /// Reads where every followed case stands, in batches of [`RESYNC_BATCH`] ids.
    async fn snapshot(&self, pool: &PgPool) -> Snapshot {
        let ids: Vec<Uuid> = self.shared.slots().per_case.keys().copied().collect();
        let mut snapshot = Snapshot {
            statuses: HashMap::with_capacity(ids.len()),
            complete: true,
        };
        for batch in ids.chunks(RESYNC_BATCH) {
            self.shared.resync_reads.fetch_add(1, Ordering::Relaxed);
            match case_store::load_cases(pool, batch).await {
                Ok(cases) => snapshot
                    .statuses
                    .extend(cases.iter().map(|c| (c.id, StatusEvent::of_case(c)))),
                Err(e) => {
                    tracing::warn!(error.message = %e, "cannot re-read the followed cases; streams catch up one by one");
                    snapshot.complete = false;
                }
            }
        }
        snapshot
    }

    /// Starts the one `LISTEN case_changed` loop (reconnecting on errors) on `pool`;
    /// at `shutdown` it stops and ends every stream.
    pub fn start(&self, pool: PgPool, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        tokio::spawn(listen(self.clone(), pool, shutdown))
    }

    /// Sends a signal to every stream.
    pub fn publish(&self, signal: Signal) {
        // No stream listening is not an error.
        let _ = self.sender.send(signal);
    }

    /// A new subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Signal> {
        self.sender.subscribe()
    }

    /// How many streams are connected.
    pub fn streams(&self) -> usize {
        self.sender.receiver_count()
    }

    /// Ends every stream (at shutdown).
    pub fn close(&self) {
        self.closed.trigger();
    }

    /// Resolves once the hub is closed, so streams built on [`Self::subscribe`]
    /// (the console's queue stream) end at shutdown too.
    pub async fn wait_closed(&self) {
        self.closed.wait().await;
    }

    /// Follows one case: `current` is its status read after subscribing (so no change
    /// between the read and the subscription is lost).
    pub fn follow(
        &self,
        pool: PgPool,
        rx: broadcast::Receiver<Signal>,
        current: &CaseRow,
        max: Duration,
        slot: StreamSlot,
    ) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        let first = StatusEvent::of_case(current);
        let follower = Follower {
            rx,
            pool,
            shared: Arc::clone(&self.shared),
            _slot: slot,
            case_id: current.id,
            last: current.version,
            pending: std::collections::VecDeque::from([first.to_sse().retry(RETRY)]),
            closed: self.closed.clone(),
            deadline: tokio::time::Instant::now() + max,
        };
        futures_util::stream::unfold(follower, |mut f| async move {
            f.next().await.map(|event| (Ok(event), f))
        })
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CASE_CHANGED_CHANNEL).await?;
    Ok(listener)
}

async fn listen(hub: LiveHub, pool: PgPool, shutdown: Shutdown) {
    let mut backoff = Duration::from_secs(1);
    while !shutdown.is_triggered() {
        let connected = tokio::select! {
            () = shutdown.wait() => break,
            connected = connect(&pool) => connected,
        };
        match connected {
            Ok(mut listener) => {
                backoff = Duration::from_secs(1);
                tracing::debug!("live status listener connected");
                // Whatever changed while nobody listened: one batched read, after
                // LISTEN, so nothing falls between the read and the notifications.
                let snapshot = hub.snapshot(&pool).await;
                hub.publish(Signal::Resync(Arc::new(snapshot)));
                loop {
                    tokio::select! {
                        () = shutdown.wait() => break,
                        next = listener.try_recv() => match next {
                            Ok(Some(n)) => {
                                let changes = parse_changes(n.payload(), Utc::now());
                                if changes.is_empty() {
                                    tracing::warn!("unreadable case_changed payload ignored");
                                }
                                for change in changes {
                                    hub.publish(Signal::Changed(change));
                                }
                            }
                            Ok(None) => {
                                tracing::warn!("live status listener lost its connection; reconnecting");
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(error.message = %e, "live status listener failed; reconnecting");
                                break;
                            }
                        },
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error.message = %e, "live status listener cannot connect; retrying");
            }
        }
        tokio::select! {
            () = shutdown.wait() => {}
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
    hub.close();
}

/// One stream's state.
struct Follower {
    rx: broadcast::Receiver<Signal>,
    pool: PgPool,
    shared: Arc<Shared>,
    _slot: StreamSlot,
    case_id: Uuid,
    last: i32,
    pending: std::collections::VecDeque<Event>,
    closed: Shutdown,
    deadline: tokio::time::Instant,
}

impl Follower {
    /// The next event, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            let signal = tokio::select! {
                () = self.closed.wait() => return None,
                () = tokio::time::sleep_until(self.deadline) => return None,
                signal = self.rx.recv() => signal,
            };
            match signal {
                Ok(Signal::Changed(change)) if change.case_id == self.case_id => {
                    if change.version == self.last + 1 {
                        self.last = change.version;
                        return Some(change.to_sse());
                    }
                    if change.version > self.last {
                        // A gap: fill it from the log, in order.
                        self.catch_up().await;
                    }
                }
                Ok(Signal::Changed(_)) => {}
                Ok(Signal::Resync(snapshot)) => match snapshot.statuses.get(&self.case_id) {
                    Some(now) if now.version == self.last + 1 => {
                        self.last = now.version;
                        return Some(now.to_sse());
                    }
                    Some(now) if now.version <= self.last => {}
                    Some(_) => self.catch_up().await,
                    // Not followed when the batch was read: this stream read the case
                    // after the listener was back, so it missed nothing.
                    None if snapshot.complete => {}
                    None => self.catch_up().await,
                },
                Err(RecvError::Lagged(_)) => self.catch_up().await,
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Queues every version after the last one sent, from the case's event log.
    async fn catch_up(&mut self) {
        // A few at a time, so a burst of lagging streams cannot take the whole pool.
        let Ok(_permit) = self.shared.catch_up.acquire().await else {
            return;
        };
        self.shared.catch_ups.fetch_add(1, Ordering::Relaxed);
        match case_store::timeline(&self.pool, self.case_id).await {
            Ok(events) => {
                let after = self.last;
                for e in events.into_iter().filter(|e| e.version > after) {
                    self.last = e.version;
                    self.pending.push_back(
                        StatusEvent {
                            case_id: self.case_id,
                            state: e.to_state.as_str().into(),
                            version: e.version,
                            at: e.at,
                        }
                        .to_sse(),
                    );
                }
            }
            Err(e) => {
                tracing::warn!(case_id = %self.case_id, error.message = %e, "cannot catch up a live stream");
            }
        }
    }
}

/// Takes a slot (429 past a limit), subscribes, re-reads the case, and answers with
/// the stream.
async fn stream_case(
    state: &AppState,
    holder: Holder,
    case_id: Uuid,
) -> Result<Response, ApiError> {
    let slot = match state.live.open(holder, Some(case_id)) {
        Ok(slot) => slot,
        Err(refused) => return Ok(refused.response()),
    };
    let rx = state.live.subscribe();
    let current = case_store::load_case(&state.pool, case_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let stream = state
        .live
        .follow(state.pool.clone(), rx, &current, MAX_STREAM, slot);
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    // Tell buffering proxies (nginx) to pass events through at once.
    headers.insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    Ok(response)
}

/// The customer stream's optional query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// The case token, for `EventSource` clients that cannot set headers (the header wins when both are given).
    #[serde(default)]
    pub token: Option<String>,
}

/// Follows the case live (Server-Sent Events): first its current status, then one `status` event per change.
#[utoipa::path(
    get, path = "/v1/cases/{case_id}/events", tag = "customer",
    params(("case_id" = Uuid, Path, description = "Case id"), StreamQuery),
    security(("case_token" = [])),
    responses(
        (status = 200, description = "An endless text/event-stream: `event: status`, `id: <version>`, `data: StatusEvent` (the current status first, then one per change); a `: keep-alive` comment every 15 s", body = StatusEvent, content_type = "text/event-stream"),
        (status = 404, description = "No such case, or a wrong token (the same answer)", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many live streams open for this case token, or on the server (`too-many-streams`); `Retry-After` says when to retry", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn customer_events(
    State(state): State<AppState>,
    Path(case_id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let case_id: Uuid = case_id.parse().map_err(|_| ApiError::NotFound)?;
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let from_query = query.ok().and_then(|Query(q)| q.token);
    let token = from_header
        .or(from_query)
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .ok_or(ApiError::NotFound)?;
    let hash = data_protection::hash_token(&token);
    let case = case_store::load_case_by_token(&state.pool, case_id, &hash)
        .await?
        .ok_or(ApiError::NotFound)?;
    stream_case(&state, Holder::CaseToken(case.id), case.id).await
}

/// Follows a case live (Server-Sent Events), as the subscriber's stream does.
#[utoipa::path(
    get, path = "/v1/agent/cases/{case_id}/events", tag = "agent",
    params(("case_id" = Uuid, Path, description = "Case id")),
    security(("agent_token" = [])),
    responses(
        (status = 200, description = "An endless text/event-stream: `event: status`, `id: <version>`, `data: StatusEvent` (the current status first, then one per change); a `: keep-alive` comment every 15 s", body = StatusEvent, content_type = "text/event-stream"),
        (status = 401, description = "Not logged in", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Admins do not read cases", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such case", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many live streams open for this agent, or on the server (`too-many-streams`); `Retry-After` says when to retry", body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub async fn agent_events(
    State(state): State<AppState>,
    session: AgentSession,
    Path(case_id): Path<String>,
) -> Result<Response, ApiError> {
    session.require_any(CASE_READERS)?;
    let case_id: Uuid = case_id.parse().map_err(|_| ApiError::NotFound)?;
    // Audited (`case.follow`) before the first event is sent.
    case_workflows::agent::follow_case(&state.pool, &session.as_agent(), case_id).await?;
    stream_case(&state, Holder::Agent(session.id()), case_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_with_and_without_at() {
        let now = Utc::now();
        let id = Uuid::now_v7();
        let with_at = format!(
            r#"{{"case_id":"{id}","version":3,"state":"risk_assessment","at":"2026-12-01T08:00:00Z"}}"#
        );
        let e = parse_payload(&with_at, now).expect("parses");
        assert_eq!(
            (e.case_id, e.version, e.state.as_str()),
            (id, 3, "risk_assessment")
        );
        assert_eq!(e.at.to_rfc3339(), "2026-12-01T08:00:00+00:00");
        let without = format!(r#"{{"case_id":"{id}","version":1,"state":"awaiting_identity"}}"#);
        assert_eq!(parse_payload(&without, now).map(|e| e.at), Some(now));
        for bad in [
            "",
            "{}",
            "not json",
            &format!(r#"{{"case_id":"{id}","version":1,"state":"no_such_state"}}"#),
            r#"{"case_id":"x","version":1,"state":"awaiting_identity"}"#,
        ] {
            assert_eq!(parse_payload(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn one_payload_announces_every_case_its_transaction_changed() {
        let now = Utc::now();
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let payload = format!(
            r#"{{"case_id":"{a}","version":2,"state":"risk_assessment","wake":["x"],
                "also":[{{"case_id":"{b}","version":2,"state":"cancelled","at":"2026-12-01T08:00:00Z"}},
                        {{"case_id":"bad"}},
                        {{"case_id":"{c}","version":3,"state":"cancelled"}}]}}"#
        );
        let changes = parse_changes(&payload, now);
        let seen: Vec<(Uuid, i32, &str)> = changes
            .iter()
            .map(|e| (e.case_id, e.version, e.state.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (a, 2, "risk_assessment"),
                (b, 2, "cancelled"),
                (c, 3, "cancelled")
            ]
        );
        assert_eq!(changes[2].at, now);
        assert!(parse_changes("{}", now).is_empty());
    }

    fn case_row(id: Uuid, version: i32) -> CaseRow {
        let now = Utc::now();
        CaseRow {
            id,
            msisdn: case_domain::Msisdn::parse("+8613800138000").unwrap(),
            state: CaseState::AwaitingIdentity,
            version,
            channel: case_domain::Channel::App,
            locale: case_domain::Locale::En,
            created_at: now,
            updated_at: now,
            state_entered_at: now,
            lease_owner: None,
            lease_expires_at: None,
            attempt: 0,
        }
    }

    fn change(case_id: Uuid, version: i32, state: &str) -> Signal {
        Signal::Changed(StatusEvent {
            case_id,
            state: state.into(),
            version,
            at: Utc::now(),
        })
    }

    /// The next frame of an SSE body as text, or None when it ended.
    async fn frame(body: &mut axum::body::Body) -> Option<String> {
        use http_body_util::BodyExt;
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("a frame in time")?
            .expect("readable");
        Some(String::from_utf8(frame.into_data().expect("data").to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_stream_sends_the_current_status_then_its_own_changes_in_order() {
        let hub = LiveHub::new(16);
        // Never connects: these cases need no catch-up from the log.
        let pool = PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
        let (mine, other) = (Uuid::now_v7(), Uuid::now_v7());
        let rx = hub.subscribe();
        let slot = hub.open(Holder::CaseToken(mine), Some(mine)).unwrap();
        let stream = hub.follow(pool, rx, &case_row(mine, 1), MAX_STREAM, slot);
        let mut body = Sse::new(stream).into_response().into_body();
        let first = frame(&mut body).await.unwrap();
        assert!(
            first.starts_with("event: status\nid: 1\ndata: {"),
            "{first}"
        );
        assert!(first.contains("\"state\":\"awaiting_identity\""), "{first}");
        assert!(first.contains("retry: 3000"), "{first}");

        hub.publish(change(other, 2, "risk_assessment"));
        hub.publish(change(mine, 1, "awaiting_identity"));
        hub.publish(change(mine, 2, "risk_assessment"));
        hub.publish(change(mine, 2, "risk_assessment"));
        hub.publish(change(mine, 3, "provisioning"));
        let second = frame(&mut body).await.unwrap();
        assert!(second.contains("id: 2\n"), "{second}");
        assert!(second.contains("risk_assessment"), "{second}");
        let third = frame(&mut body).await.unwrap();
        assert!(
            third.contains("id: 3\n") && third.contains("provisioning"),
            "{third}"
        );

        // Shutdown ends the stream.
        hub.close();
        assert_eq!(frame(&mut body).await, None);
    }

    #[tokio::test]
    async fn a_stream_ends_after_its_longest_life() {
        let hub = LiveHub::new(4);
        let pool = PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
        let id = Uuid::now_v7();
        let slot = hub.open(Holder::CaseToken(id), Some(id)).unwrap();
        let stream = hub.follow(
            pool,
            hub.subscribe(),
            &case_row(id, 7),
            Duration::ZERO,
            slot,
        );
        let mut body = Sse::new(stream).into_response().into_body();
        assert!(frame(&mut body).await.unwrap().contains("id: 7\n"));
        assert_eq!(frame(&mut body).await, None);
    }

    #[tokio::test]
    async fn a_hub_without_streams_accepts_signals_and_counts_streams() {
        let hub = LiveHub::new(4);
        let resync = Signal::Resync(Arc::default());
        hub.publish(resync.clone());
        assert_eq!(hub.streams(), 0);
        let mut rx = hub.subscribe();
        assert_eq!(hub.streams(), 1);
        hub.publish(resync.clone());
        assert_eq!(rx.recv().await.ok(), Some(resync));
    }

    #[test]
    fn streams_are_counted_per_token_per_agent_and_in_total() {
        let hub = LiveHub::with_limits(
            4,
            StreamLimits {
                per_token: 2,
                per_agent: 3,
                total: 5,
            },
        );
        let (case, agent) = (Uuid::now_v7(), Uuid::now_v7());
        let a = hub.open(Holder::CaseToken(case), Some(case)).unwrap();
        let _b = hub.open(Holder::CaseToken(case), Some(case)).unwrap();
        assert_eq!(
            hub.open(Holder::CaseToken(case), Some(case)).err(),
            Some(StreamRefused::PerToken)
        );
        // Another token, an agent: their own counts.
        let other = Uuid::now_v7();
        let _c = hub.open(Holder::CaseToken(other), Some(other)).unwrap();
        let _d = hub.open(Holder::Agent(agent), Some(case)).unwrap();
        let _e = hub.open(Holder::Agent(agent), None).unwrap();
        assert_eq!(hub.open_streams(), 5);
        assert_eq!(
            hub.open(Holder::Agent(Uuid::now_v7()), None).err(),
            Some(StreamRefused::Total)
        );
        // A closed stream frees its slot at once.
        drop(a);
        assert_eq!(hub.open_streams(), 4);
        let _f = hub.open(Holder::Agent(agent), None).unwrap();
        assert_eq!(
            hub.open(Holder::Agent(Uuid::now_v7()), None).err(),
            Some(StreamRefused::Total)
        );
        hub.set_limits(StreamLimits {
            per_token: 2,
            per_agent: 3,
            total: 100,
        });
        assert_eq!(
            hub.open(Holder::Agent(agent), None).err(),
            Some(StreamRefused::PerAgent)
        );
        let refused = StreamRefused::PerAgent.response();
        assert_eq!(refused.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "30");
        assert_eq!(
            refused.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    #[test]
    fn limits_come_from_the_environment() {
        let none = |_: &str| None;
        assert_eq!(
            StreamLimits::from_lookup(none).unwrap(),
            StreamLimits::default()
        );
        assert_eq!(
            StreamLimits::default(),
            StreamLimits {
                per_token: 5,
                per_agent: 20,
                total: 2000
            }
        );
        let set = |name: &str| match name {
            PER_TOKEN_ENV => Some("3".to_owned()),
            TOTAL_ENV => Some(" 500 ".to_owned()),
            _ => Some(String::new()),
        };
        assert_eq!(
            StreamLimits::from_lookup(set).unwrap(),
            StreamLimits {
                per_token: 3,
                per_agent: 20,
                total: 500
            }
        );
        for bad in ["0", "-1", "many", "1e3", "2000000"] {
            let lookup = |name: &str| (name == PER_AGENT_ENV).then(|| bad.to_owned());
            let err = StreamLimits::from_lookup(lookup).unwrap_err().to_string();
            assert!(err.contains(PER_AGENT_ENV), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn a_resync_brings_the_next_version_without_reading_the_log() {
        let hub = LiveHub::new(16);
        // Never connects: a read of the log would fail and send nothing.
        let pool = PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
        let id = Uuid::now_v7();
        let slot = hub.open(Holder::CaseToken(id), Some(id)).unwrap();
        let stream = hub.follow(pool, hub.subscribe(), &case_row(id, 1), MAX_STREAM, slot);
        let mut body = Sse::new(stream).into_response().into_body();
        assert!(frame(&mut body).await.unwrap().contains("id: 1\n"));
        let snapshot = |version: i32| {
            let mut statuses = HashMap::new();
            statuses.insert(
                id,
                StatusEvent {
                    case_id: id,
                    state: "identity_review".into(),
                    version,
                    at: Utc::now(),
                },
            );
            Signal::Resync(Arc::new(Snapshot {
                statuses,
                complete: true,
            }))
        };
        hub.publish(snapshot(2));
        let second = frame(&mut body).await.unwrap();
        assert!(
            second.contains("id: 2\n") && second.contains("identity_review"),
            "{second}"
        );
        // The same status again, and a batch without this case: nothing to send.
        hub.publish(snapshot(2));
        hub.publish(Signal::Resync(Arc::new(Snapshot {
            statuses: HashMap::new(),
            complete: true,
        })));
        hub.publish(change(id, 3, "risk_assessment"));
        assert!(frame(&mut body).await.unwrap().contains("id: 3\n"));
        assert_eq!(hub.catch_ups(), 0);
        assert_eq!(hub.open_streams(), 1);
        drop(body);
        assert_eq!(hub.open_streams(), 0, "the slot is freed with the stream");
    }
}
