//! `GET /console/events`: every case change as Server-Sent Events, for the queue
//! and dashboard pages (a case page follows its own case on the agent API's
//! `/v1/agent/cases/{id}/events`). Fed by the gateway's one `LISTEN case_changed`
//! connection ([`crate::live::LiveHub`]); the page decides whether a change concerns
//! it and then re-fetches its main section.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::{ConsoleError, Ctx, require_case_reader};
use crate::{
    AppState,
    agent_auth::AgentSession,
    error::ApiError,
    live::{Holder, KEEP_ALIVE, MAX_STREAM, Signal, StreamSlot},
};

/// How long the browser waits before reconnecting.
const RETRY: Duration = Duration::from_secs(3);

/// `GET /console/events` (agents who read cases); counts against the agent's live
/// stream limit (429 past it).
pub(super) async fn events(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Result<AgentSession, ApiError>,
) -> Result<Response, ConsoleError> {
    let session = ctx.require(session)?;
    require_case_reader(&session).map_err(|e| ctx.fail(e))?;
    let slot = match state.live.open(Holder::Agent(session.id()), None) {
        Ok(slot) => slot,
        Err(refused) => return Ok(refused.response()),
    };
    let mut response = Sse::new(changes(state, MAX_STREAM, slot))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `change` events (`{case_id, state, version}`) and `resync` when changes may have
/// been missed; ends at shutdown or after `max`.
fn changes(
    state: AppState,
    max: Duration,
    slot: StreamSlot,
) -> impl Stream<Item = Result<Event, Infallible>> {
    struct Feed {
        rx: tokio::sync::broadcast::Receiver<Signal>,
        hub: crate::live::LiveHub,
        deadline: tokio::time::Instant,
        first: bool,
        _slot: StreamSlot,
    }
    let feed = Feed {
        _slot: slot,
        rx: state.live.subscribe(),
        hub: state.live.clone(),
        deadline: tokio::time::Instant::now() + max,
        first: true,
    };
    futures_util::stream::unfold(feed, |mut f| async move {
        if f.first {
            f.first = false;
            let hello = Event::default().event("ready").data("{}").retry(RETRY);
            return Some((Ok(hello), f));
        }
        let signal = tokio::select! {
            () = f.hub.wait_closed() => return None,
            () = tokio::time::sleep_until(f.deadline) => return None,
            signal = f.rx.recv() => signal,
        };
        let event = match signal {
            Ok(Signal::Changed(change)) => Event::default()
                .event("change")
                .data(serde_json::to_string(&change).unwrap_or_default()),
            Ok(Signal::Resync(_)) | Err(RecvError::Lagged(_)) => {
                Event::default().event("resync").data("{}")
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), f))
    })
}
