//! Messages to subscribers that are decided outside the timers' own loop: the
//! carrier's suspension notice (why the number was suspended, what to do and where
//! to start), told once per notice. The messages go to the outbox topic that the
//! timers service delivers through the carrier.

use case_domain::{Msisdn, identity, notice};
use case_store::{
    StoreError,
    number_budget::{self, BudgetKind, Reservation, Reserve},
    timers::{NewMessage, enqueue_message},
};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::WorkflowError;

/// The outbox topic of messages to subscribers.
pub const NOTIFICATION_TOPIC: &str = "notification.subscriber";

/// The outbox row of one subscriber message (the one payload shape the deliverer
/// reads: number, body, kind and idempotency key).
pub fn subscriber_message<'a>(
    case_id: Option<Uuid>,
    event_id: Option<Uuid>,
    dedupe_key: &'a str,
    msisdn: &Msisdn,
    kind: &str,
    body: &str,
) -> NewMessage<'a> {
    NewMessage {
        topic: NOTIFICATION_TOPIC,
        case_id,
        event_id,
        dedupe_key,
        payload: serde_json::json!({
            "msisdn": msisdn.e164(),
            "body": body,
            "kind": kind,
            "idempotency_key": dedupe_key,
        }),
    }
}

/// The key under which a case's messages about its state replace one another while
/// held (see `case_store::messages`).
pub fn status_key(case_id: Uuid) -> String {
    format!("case:{case_id}:status")
}

/// A message about a case, before it is enqueued: whether the number's budget lets it go.
#[derive(Debug, Clone, Copy)]
pub struct CaseMessage<'a> {
    /// The number whose contacts get it.
    pub msisdn: &'a Msisdn,
    /// The case it is about.
    pub case_id: Uuid,
    /// When the case proved identity, if it has.
    pub identity_proven_at: Option<DateTime<Utc>>,
    /// When what the message tells of happened.
    pub caused_at: DateTime<Utc>,
    /// The message's dedupe key (a message is paid for once).
    pub dedupe_key: &'a str,
}

/// Whether a message about a case may go out, in the caller's transaction. Before
/// the case proved identity, anyone holding a name and ID number can cause messages
/// (opening, cancelling): those share a budget of
/// [`identity::MAX_ANONYMOUS_MESSAGES_PER_NUMBER`] per number per 24 hours; past it
/// the message is dropped and counted in `notifications_dropped_total`.
pub async fn may_send(conn: &mut PgConnection, m: &CaseMessage<'_>) -> Result<bool, StoreError> {
    Ok(may_send_all(conn, std::slice::from_ref(m))
        .await?
        .pop()
        .unwrap_or(false))
}

/// [`may_send`] for several messages, answered in their order, as if asked one by
/// one: the budgets they take are reserved together
/// ([`number_budget::reserve_many_in`]).
pub async fn may_send_all(
    conn: &mut PgConnection,
    messages: &[CaseMessage<'_>],
) -> Result<Vec<bool>, StoreError> {
    let anonymous: Vec<usize> = (0..messages.len())
        .filter(|&i| {
            identity::message_is_anonymous(messages[i].identity_proven_at, messages[i].caused_at)
        })
        .collect();
    let slots: Vec<Reserve<'_>> = anonymous
        .iter()
        .map(|&i| Reserve {
            msisdn: messages[i].msisdn.e164(),
            kind: BudgetKind::Notice,
            case_id: Some(messages[i].case_id),
            method: None,
            cause: Some(messages[i].dedupe_key),
            limit: identity::MAX_ANONYMOUS_MESSAGES_PER_NUMBER,
            window: identity::budget_window(),
        })
        .collect();
    let mut allowed = vec![true; messages.len()];
    for (i, paid) in anonymous
        .into_iter()
        .zip(number_budget::reserve_many_in(conn, &slots).await?)
    {
        if matches!(paid, Reservation::Spent { .. }) {
            ::metrics::counter!("notifications_dropped_total", "reason" => "number_budget")
                .increment(1);
            tracing::info!(case_id = %messages[i].case_id, "message dropped: the number's budget for messages before identity is proven is spent");
            allowed[i] = false;
        }
    }
    Ok(allowed)
}

/// A carrier's suspension notice, to tell the subscriber why, what to do and where
/// to start.
#[derive(Debug, Clone)]
pub struct SuspensionNotice<'a> {
    /// The suspended number.
    pub msisdn: &'a Msisdn,
    /// The carrier's reason code (e.g. `fraud_linked_contacts`, `real_name_reverification`).
    pub reason: &'a str,
    /// zh-CN or en (anything else: English).
    pub locale: &'a str,
    /// What makes this notice unique (the webhook id): the same id again enqueues nothing.
    pub notice_id: &'a str,
    /// Where a suspended subscriber starts a request (configured, passed in).
    pub start_url: &'a str,
}

/// Enqueues the message for a carrier's suspension notice, in the caller's
/// transaction. Returns the outbox id, or `None` when this notice was already
/// enqueued.
pub async fn notify_suspension(
    conn: &mut PgConnection,
    notice: &SuspensionNotice<'_>,
) -> Result<Option<Uuid>, WorkflowError> {
    let body = notice::suspension_message(
        notice.msisdn,
        notice.reason,
        notice.start_url,
        notice.locale,
    );
    let dedupe_key = format!("suspension:{}:{NOTIFICATION_TOPIC}", notice.notice_id);
    Ok(enqueue_message(
        conn,
        &subscriber_message(None, None, &dedupe_key, notice.msisdn, "suspension", &body),
    )
    .await?)
}

/// The carrier announced a suspension (a `subscriber.suspended` webhook).
#[derive(Debug, Clone)]
pub struct Suspension<'a> {
    /// The webhook's id: the same webhook again records and tells nothing new.
    pub webhook_id: &'a str,
    /// The suspended number.
    pub msisdn: &'a Msisdn,
    /// The carrier's reason code.
    pub reason: &'a str,
    /// When the carrier suspended it.
    pub suspended_at: DateTime<Utc>,
    /// Where a suspended subscriber starts a request.
    pub start_url: &'a str,
}

/// Records a suspension the carrier announced and tells the subscriber why, what to
/// do and where to start, once per notice, in the caller's transaction. The carrier's
/// record does not say the subscriber's language: the notice goes out in the language
/// of the number's most recent case, else in Chinese.
pub async fn record_suspension(
    conn: &mut PgConnection,
    suspension: &Suspension<'_>,
) -> Result<(), WorkflowError> {
    case_store::webhooks::record_suspension_notice(
        &mut *conn,
        suspension.webhook_id,
        suspension.msisdn.e164(),
        suspension.reason,
        suspension.suspended_at,
    )
    .await?;
    let locale = case_store::messages::number_locale(&mut *conn, suspension.msisdn.e164())
        .await?
        .unwrap_or(case_domain::Locale::ZhCn);
    notify_suspension(
        conn,
        &SuspensionNotice {
            msisdn: suspension.msisdn,
            reason: suspension.reason,
            locale: locale.as_str(),
            notice_id: suspension.webhook_id,
            start_url: suspension.start_url,
        },
    )
    .await?;
    tracing::info!(msisdn = %suspension.msisdn, reason = suspension.reason, "suspension notice recorded and the subscriber told");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_message_carries_its_idempotency_key() {
        let msisdn = Msisdn::parse("+8613800138000").unwrap();
        let m = subscriber_message(None, None, "k:1", &msisdn, "suspension", "hello");
        assert_eq!(m.topic, NOTIFICATION_TOPIC);
        assert_eq!(m.payload["idempotency_key"], "k:1");
        assert_eq!(m.payload["msisdn"], "+8613800138000");
        assert_eq!(m.payload["kind"], "suspension");
    }
}
