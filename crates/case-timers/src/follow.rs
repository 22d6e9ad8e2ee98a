//! The follower of the event log: for every transition, in one transaction with
//! the cursor, the subscriber's message and the timers of the state entered.
//!
//! Exactly once per transition: the cursor moves in the same transaction as the
//! writes, so a crash before the commit leaves both undone and the events are read
//! again; the outbox row's dedupe key is the event id, so even a second follower
//! could not enqueue twice; timers are unique per (case, version, kind, ordinal).

use case_domain::{
    CaseEvent, CaseState,
    notice::{TransitionNotice, notifies_subscriber, transition_message},
    progress::needs_assessed,
    risk::{Need, ReasonCode},
    sla::{SlaConfig, escalation_applies, plan_timers, stage_elapsed},
};
use std::borrow::Cow;

use case_store::{
    EventRow, StoreError,
    timers::{self as store, FollowedEvent, PassCases, TimerPlan},
};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use case_domain::Msisdn;
use case_workflows::{
    eta::{entries, eta_with, live_stats},
    notices::{CaseMessage, may_send_all},
};
use sqlx::types::Uuid;

use crate::{NOTIFICATION_TOPIC, TimersConfig, deliver::message};

/// The follower's name in `event_cursors`.
pub const CONSUMER: &str = "case-timers";

/// Events read per transaction.
pub const BATCH: i64 = 100;

/// What one pass of the follower did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Followed {
    /// Events handled.
    pub events: usize,
    /// Messages enqueued.
    pub messages: usize,
    /// Timers written.
    pub timers: u64,
    /// More events exist after the cursor (not yet safe to read, or past the batch).
    pub pending: bool,
    /// The earliest due time of the timers this pass planned (written now or
    /// already there), so the service knows when to fire next without asking.
    pub earliest_due: Option<DateTime<Utc>>,
}

/// Handles the next batch of events after the cursor, at clock `now` (used for the
/// ETA quoted in messages). Returns what it did; `events == 0` and `pending`
/// means a writer that started earlier is still running: look again shortly.
///
/// An event whose handling reads a row that does not decode (written by hand, or
/// by an older version whose shape the code no longer reads) would otherwise fail
/// every pass and hold up every case's messages and timers behind it. Such an event
/// is skipped instead: the pass is rolled back and run again without it, the skip
/// is logged with the event and case ids and counted in
/// `follower_events_skipped_total` (alert on it: that transition got no message and
/// no timers). Any other error fails the pass, to be retried.
pub async fn follow(
    pool: &PgPool,
    config: &TimersConfig,
    now: DateTime<Utc>,
) -> anyhow::Result<Followed> {
    let stats = live_stats(pool, now).await;
    let mut skip = Vec::new();
    loop {
        match follow_skipping(pool, config, &stats, now, &skip).await {
            Ok(done) => return Ok(done),
            Err(Pass::Undecodable { event, error }) if skip.len() < BATCH as usize => {
                // The column, not the decoder's message: that can quote the value
                // (a phone number in a risk assessment's signals, say).
                tracing::error!(
                    event_id = %event.id,
                    case_id = %event.case_id,
                    column = undecodable_column(&error),
                    "event skipped: a row it needs does not decode; no message or timer was planned for this transition"
                );
                ::metrics::counter!("follower_events_skipped_total").increment(1);
                skip.push(event.id);
            }
            Err(Pass::Undecodable { error, .. }) => return Err(error.into()),
            Err(Pass::Failed(e)) => return Err(e),
        }
    }
}

/// Why a pass of the follower did not commit.
enum Pass {
    /// Handling `event` read a row that does not decode.
    Undecodable {
        event: FollowedEvent,
        error: StoreError,
    },
    /// Anything else (the database away, a constraint): the pass is retried.
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Pass {
    fn from(e: E) -> Self {
        Self::Failed(e.into())
    }
}

/// Whether `e` is a value the database returned that this code cannot read (as
/// opposed to the database failing): the same on every attempt.
fn undecodable(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Db(sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_))
    )
}

/// The column that did not decode, as sqlx names it.
fn undecodable_column(e: &StoreError) -> &str {
    match e {
        StoreError::Db(sqlx::Error::ColumnDecode { index, .. }) => index,
        _ => "(unnamed)",
    }
}

/// One pass of [`follow`], passing over the events in `skip` (the cursor moves past
/// them; nothing is written for them).
async fn follow_skipping(
    pool: &PgPool,
    config: &TimersConfig,
    stats: &case_domain::eta::LiveStats,
    now: DateTime<Utc>,
    skip: &[sqlx::types::Uuid],
) -> Result<Followed, Pass> {
    let mut tx = pool.begin().await?;
    let Some(cursor) = store::lock_cursor(&mut tx, CONSUMER).await? else {
        // Another follower holds the cursor and is doing this work.
        return Ok(Followed::default());
    };
    let store::Pass { events, cases } = store::next_pass(&mut tx, cursor, BATCH, skip).await?;
    // A row of the cases' that does not decode: each event reads its own, so that
    // the one that needs it is found and skipped.
    let read = match cases {
        Ok(read) => Some(read),
        Err(e) if undecodable(&e) => None,
        Err(e) => return Err(e.into()),
    };
    let mut done = Followed::default();
    let mut last = cursor;
    // The pass's timers and messages, written together after its events.
    let mut plans = Vec::with_capacity(events.len());
    let mut outgoing = Vec::new();
    for event in &events {
        if skip.contains(&event.id) {
            last = event.cursor;
            continue;
        }
        let (message, plan) = match handle(&mut tx, event, read.as_ref(), config, stats, now).await
        {
            Ok(handled) => handled,
            Err(error) if undecodable(&error) => {
                // Rolled back now, not when the connection is next used: the pass
                // that follows at once must find the cursor unlocked.
                tx.rollback().await?;
                return Err(Pass::Undecodable {
                    event: event.clone(),
                    error,
                });
            }
            Err(error) => return Err(error.into()),
        };
        let due = plan.timers.iter().map(|t| t.due_at).min();
        done.earliest_due = done.earliest_due.into_iter().chain(due).min();
        done.events += 1;
        outgoing.extend(message);
        plans.push(plan);
        last = event.cursor;
    }
    done.messages = send(&mut tx, &outgoing, config).await?;
    done.timers = store::insert_timer_plans(&mut tx, &plans).await?;
    if last != cursor {
        store::advance_cursor(&mut tx, CONSUMER, last).await?;
    }
    done.pending = store::events_pending(&mut tx, last).await?;
    tx.commit().await?;
    if done.messages > 0 {
        ::metrics::counter!("notifications_enqueued_total").increment(done.messages as u64);
    }
    Ok(done)
}

/// A transition's message to the subscriber, written with the pass's others.
#[derive(Debug)]
struct Outgoing {
    case_id: Uuid,
    event_id: Uuid,
    msisdn: Msisdn,
    identity_proven_at: Option<DateTime<Utc>>,
    caused_at: DateTime<Utc>,
    dedupe_key: String,
    body: String,
}

/// Writes a pass's messages in the order of their events: first the budgets of
/// those caused before identity was proven, reserved together; then the messages
/// the budgets let go, in one statement when held for the window, and one wake-up
/// of the deliverers. Returns how many were enqueued.
async fn send(
    conn: &mut PgConnection,
    outgoing: &[Outgoing],
    config: &TimersConfig,
) -> Result<usize, StoreError> {
    if outgoing.is_empty() {
        return Ok(0);
    }
    let asks: Vec<CaseMessage<'_>> = outgoing
        .iter()
        .map(|o| CaseMessage {
            msisdn: &o.msisdn,
            case_id: o.case_id,
            identity_proven_at: o.identity_proven_at,
            caused_at: o.caused_at,
            dedupe_key: &o.dedupe_key,
        })
        .collect();
    let allowed = may_send_all(&mut *conn, &asks).await?;
    let paid: Vec<&Outgoing> = outgoing
        .iter()
        .zip(allowed)
        .filter_map(|(o, ok)| ok.then_some(o))
        .collect();
    let rows: Vec<_> = paid
        .iter()
        .map(|o| {
            message(
                Some(o.case_id),
                Some(o.event_id),
                &o.dedupe_key,
                &o.msisdn,
                "transition",
                &o.body,
            )
        })
        .collect();
    if config.message_window <= chrono::Duration::zero() {
        let mut written = 0;
        for row in &rows {
            written += usize::from(store::enqueue_message(&mut *conn, row).await?.is_some());
        }
        return Ok(written);
    }
    // Held for the window (counted from the first message it holds) and replaced by
    // the case's next transition message within it: one message, about the latest
    // state.
    let keys: Vec<String> = paid
        .iter()
        .map(|o| case_workflows::notices::status_key(o.case_id))
        .collect();
    let held: Vec<case_store::messages::Held<'_>> = rows
        .iter()
        .zip(&paid)
        .zip(&keys)
        .map(|((row, o), key)| case_store::messages::Held {
            message: row,
            key,
            caused_at: o.caused_at,
            hold_until: o.caused_at + config.message_window,
        })
        .collect();
    let done = case_store::messages::enqueue_superseding_many(&mut *conn, &held).await?;
    let superseded: u64 = done.iter().map(|d| d.superseded).sum();
    if superseded > 0 {
        ::metrics::counter!("notifications_superseded_total").increment(superseded);
    }
    if done.iter().any(case_store::messages::Enqueued::wakes) {
        store::wake_deliverers(&mut *conn, NOTIFICATION_TOPIC).await?;
    }
    Ok(done.iter().filter(|d| d.id.is_some()).count())
}

/// An event's timers, and its message if it tells the subscriber (written by [`send`]).
async fn handle(
    conn: &mut PgConnection,
    event: &FollowedEvent,
    read: Option<&PassCases>,
    config: &TimersConfig,
    stats: &case_domain::eta::LiveStats,
    now: DateTime<Utc>,
) -> Result<(Option<Outgoing>, TimerPlan), StoreError> {
    let sla = &config.sla;
    let timeline: Cow<'_, [EventRow]> = match read {
        Some(read) => Cow::Borrowed(
            read.timelines
                .get(&event.case_id)
                .map_or(&[][..], Vec::as_slice),
        ),
        None => Cow::Owned(case_store::timeline(&mut *conn, event.case_id).await?),
    };
    let history = entries(&timeline, event.version);

    // The timers of the state entered, with what the stage had already used
    // (written with the pass's others).
    let used = stage_elapsed(&history, event.at);
    let plan = TimerPlan {
        case_id: event.case_id,
        version: event.version,
        state: event.to_state,
        timers: plan_timers(event.to_state, event.at, used, sla),
    };

    // A stage that breached is over once the case leaves it (other than to wait).
    // The escalation was read with the event (the case as it is now; a clear of an
    // earlier event of the batch makes the second one find nothing to clear).
    if event.escalation_level > 0
        && event
            .escalated_state
            .is_some_and(|s| !escalation_applies(s, event.to_state))
    {
        store::clear_escalation(&mut *conn, event.case_id, event.version).await?;
    }

    if !notifies_subscriber(event.event) {
        return Ok((None, plan));
    }
    let msisdn = &event.msisdn;
    let assessment = match read {
        Some(read) => read.assessments.get(&event.case_id).cloned(),
        None => case_store::risk::latest_assessment(&mut *conn, event.case_id).await?,
    };
    let tier = assessment.as_ref().map(|a| a.tier);
    let stored: Option<Vec<Need>> = assessment
        .as_ref()
        .map(|a| a.needs.iter().filter_map(|n| Need::parse(n)).collect());
    let needs = needs_assessed(event.to_state, tier, stored.as_deref());
    let risk_reasons: Vec<ReasonCode> = match event.event {
        CaseEvent::RiskFlagged | CaseEvent::RiskRefused => assessment
            .as_ref()
            .map(|a| {
                a.reason_codes
                    .iter()
                    .filter_map(|c| ReasonCode::parse(c))
                    .collect()
            })
            .unwrap_or_default(),
        _ => vec![],
    };
    let quoted = matches!(event.event, CaseEvent::Rejected | CaseEvent::InfoRequested);
    let notice = TransitionNotice {
        event: event.event,
        state: event.to_state,
        msisdn,
        needs: &needs,
        eta: eta_with(
            event.to_state,
            event.version,
            &timeline,
            now.max(event.at),
            sla,
            stats,
        ),
        deadline: waiting_deadline(event.to_state, event.at, sla),
        reason: event.reason.as_deref().filter(|_| quoted),
        risk_reasons: &risk_reasons,
    };
    let body = transition_message(&notice, event.locale.as_str());
    let message = Outgoing {
        case_id: event.case_id,
        event_id: event.id,
        msisdn: msisdn.clone(),
        identity_proven_at: event.identity_proven_at,
        caused_at: event.at,
        dedupe_key: format!("{}:{NOTIFICATION_TOPIC}", event.id),
        body,
    };
    Ok((Some(message), plan))
}

/// When a case that entered a waiting `state` at `entered` lapses.
pub(crate) fn waiting_deadline(
    state: CaseState,
    entered: DateTime<Utc>,
    sla: &SlaConfig,
) -> Option<DateTime<Utc>> {
    if case_domain::sla::EXPIRING_STATES.contains(&state) {
        sla.deadline_after(state).map(|d| entered + d)
    } else {
        None
    }
}
