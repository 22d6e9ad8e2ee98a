//! Live status streams (Server-Sent Events) for the subscriber and for agents.
//!
//! The gateway runs ONE `LISTEN case_changed` connection ([`LiveHub::start`]) and fans
//! every change out through a `tokio::sync::broadcast` channel; each stream subscribes
//! and keeps only its own case. Nothing polls. A stream first sends the case's current
//! status, then one `status` event per change, in version order; when it may have
//! missed changes (the listener reconnected, or the stream fell behind the channel) it
//! re-reads the case's event log and sends each missed version. A comment line every
//! 15 s keeps proxies from closing an idle stream. Streams end at shutdown and after
//! [`MAX_STREAM`] (an `EventSource` reconnects by itself, re-authenticating).

use std::{convert::Infallible, time::Duration};

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
    #[derive(Deserialize)]
    struct Payload {
        case_id: Uuid,
        version: i32,
        state: String,
        #[serde(default)]
        at: Option<DateTime<Utc>>,
    }
    let p: Payload = serde_json::from_str(payload).ok()?;
    CaseState::parse(&p.state)?;
    Some(StatusEvent {
        case_id: p.case_id,
        state: p.state,
        version: p.version,
        at: p.at.unwrap_or(now),
    })
}

/// What the hub fans out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A case changed.
    Changed(StatusEvent),
    /// Changes may have been missed (the listener reconnected): re-read.
    Resync,
}

/// The fan-out of case changes to live streams. Cheap to clone; every clone shares
/// the channel.
#[derive(Debug, Clone)]
pub struct LiveHub {
    sender: broadcast::Sender<Signal>,
    closed: Shutdown,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new(CHANNEL_CAPACITY)
    }
}

impl LiveHub {
    /// A hub whose streams may fall `capacity` changes behind before they catch up from the log.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            sender,
            closed: Shutdown::new(),
        }
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
    ) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        let first = StatusEvent::of_case(current);
        let follower = Follower {
            rx,
            pool,
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
                // Whatever changed while nobody listened.
                hub.publish(Signal::Resync);
                loop {
                    tokio::select! {
                        () = shutdown.wait() => break,
                        next = listener.try_recv() => match next {
                            Ok(Some(n)) => match parse_payload(n.payload(), Utc::now()) {
                                Some(change) => hub.publish(Signal::Changed(change)),
                                None => tracing::warn!("unreadable case_changed payload ignored"),
                            },
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
                Ok(Signal::Resync) | Err(RecvError::Lagged(_)) => self.catch_up().await,
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Queues every version after the last one sent, from the case's event log.
    async fn catch_up(&mut self) {
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

/// Subscribes, re-reads the case, and answers with the stream.
async fn stream_case(state: &AppState, case_id: Uuid) -> Result<Response, ApiError> {
    let rx = state.live.subscribe();
    let current = case_store::load_case(&state.pool, case_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let stream = state
        .live
        .follow(state.pool.clone(), rx, &current, MAX_STREAM);
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
    stream_case(&state, case.id).await
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
    stream_case(&state, case_id).await
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
        let stream = hub.follow(pool, rx, &case_row(mine, 1), MAX_STREAM);
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
        let stream = hub.follow(pool, hub.subscribe(), &case_row(id, 7), Duration::ZERO);
        let mut body = Sse::new(stream).into_response().into_body();
        assert!(frame(&mut body).await.unwrap().contains("id: 7\n"));
        assert_eq!(frame(&mut body).await, None);
    }

    #[tokio::test]
    async fn a_hub_without_streams_accepts_signals_and_counts_streams() {
        let hub = LiveHub::new(4);
        hub.publish(Signal::Resync);
        assert_eq!(hub.streams(), 0);
        let mut rx = hub.subscribe();
        assert_eq!(hub.streams(), 1);
        hub.publish(Signal::Resync);
        assert_eq!(rx.recv().await.ok(), Some(Signal::Resync));
    }
}
