//! Wake-ups of worker loops by Postgres `NOTIFY`, on one dedicated connection per
//! process.
//!
//! A [`Wakeups`] hub holds one `LISTEN` connection of its own (opened with the work
//! pool's connect options, never taken from the pool, so the pool keeps every
//! connection for requests and claims) and serves every loop that subscribes to it.
//! Each loop's [`Subscription`] is a single wake flag: however many notifications
//! arrive while the loop is busy, it makes one more drain pass (wake-ups are
//! debounced, and payloads are not needed: a loop claims whatever is due).
//!
//! A hub may also route: notifications on its routing channel whose payload is a
//! JSON object with a `"wake"` array of channel names wake the subscribers of those
//! channels. A case transition thus sends one `NOTIFY` (the case change, which the
//! live view and the timers read anyway) that also wakes the owner of the new state
//! and the deliverers of the outbox messages it wrote.
//!
//! When the connection is lost, every subscriber is woken once it is back (the
//! notifications sent meanwhile are gone; the loops' claims find the work).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use anyhow::Context;
use sqlx::{
    PgPool,
    postgres::{PgListener, PgPoolOptions},
};
use tokio::sync::{Notify, mpsc, oneshot};

/// The JSON field of a routing payload that names the channels to wake.
pub const WAKE_FIELD: &str = "wake";

/// A process's shared `LISTEN` connection and the loops it wakes. Cheap to clone;
/// clones share the connection. It connects on the first subscription.
#[derive(Debug, Clone, Default)]
pub struct Wakeups {
    hub: Arc<Hub>,
}

#[derive(Debug, Default)]
struct Hub {
    /// The channel whose payloads may name other channels to wake.
    routing: Option<String>,
    subscribers: Mutex<Vec<Subscriber>>,
    listening: tokio::sync::Mutex<Option<mpsc::UnboundedSender<Listen>>>,
}

#[derive(Debug)]
struct Subscriber {
    channels: Vec<String>,
    flag: Weak<Notify>,
}

/// A request to the listener task: `LISTEN` on these channels, then answer.
type Listen = (Vec<String>, oneshot::Sender<Result<(), sqlx::Error>>);

/// One loop's wake flag.
#[derive(Debug)]
pub struct Subscription {
    flag: Arc<Notify>,
}

impl Subscription {
    /// Resolves once a notification for one of the loop's channels arrived since
    /// the last wake-up (at once if one already did): a burst makes one wake-up.
    pub async fn woken(&self) {
        self.flag.notified().await;
    }
}

impl Wakeups {
    /// A hub with no routing channel: a loop is woken by notifications on its own channels.
    pub fn new() -> Self {
        Self::default()
    }

    /// A hub that also wakes the subscribers named in the `"wake"` array of the
    /// payloads on `channel`.
    pub fn routed_through(channel: &str) -> Self {
        Self {
            hub: Arc::new(Hub {
                routing: Some(channel.to_owned()),
                ..Hub::default()
            }),
        }
    }

    /// Subscribes a loop to `channels` (and routed wake-ups naming them), opening
    /// the hub's connection (to the database of `pool`) on first use. Returns once
    /// Postgres listens on them, so no notification committed afterwards is missed.
    pub async fn subscribe(
        &self,
        pool: &PgPool,
        channels: &[String],
    ) -> anyhow::Result<Subscription> {
        let flag = Arc::new(Notify::new());
        let mut listen: Vec<String> = channels.to_vec();
        if let Some(routing) = &self.hub.routing {
            listen.push(routing.clone());
        }
        let sender = {
            let mut listening = self.hub.listening.lock().await;
            match &*listening {
                Some(sender) if !sender.is_closed() => sender.clone(),
                _ => {
                    let sender = self.start(pool).await?;
                    *listening = Some(sender.clone());
                    sender
                }
            }
        };
        self.hub
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Subscriber {
                channels: channels.to_vec(),
                flag: Arc::downgrade(&flag),
            });
        let (ack, acked) = oneshot::channel();
        sender
            .send((listen, ack))
            .map_err(|_| anyhow::anyhow!("the notification listener stopped"))?;
        acked
            .await
            .map_err(|_| anyhow::anyhow!("the notification listener stopped"))?
            .context("LISTEN failed")?;
        Ok(Subscription { flag })
    }

    /// Opens the dedicated connection and starts the task that reads it.
    async fn start(&self, pool: &PgPool) -> anyhow::Result<mpsc::UnboundedSender<Listen>> {
        let options = (*pool.connect_options()).clone();
        // A pool of one, used only to reconnect; no idle or lifetime limits.
        let own = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .context("cannot open the notification listener's connection")?;
        let mut listener = PgListener::connect_with(&own).await?;
        listener.ignore_pool_close_event(true);
        let (sender, requests) = mpsc::unbounded_channel();
        tokio::spawn(listen(listener, requests, Arc::downgrade(&self.hub)));
        Ok(sender)
    }

    /// How many loops are subscribed (and still running).
    pub fn subscribers(&self) -> usize {
        self.hub.live_subscribers().len()
    }
}

impl Hub {
    fn live_subscribers(&self) -> Vec<(Vec<String>, Arc<Notify>)> {
        let mut subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        subscribers.retain(|s| s.flag.strong_count() > 0);
        subscribers
            .iter()
            .filter_map(|s| Some((s.channels.clone(), s.flag.upgrade()?)))
            .collect()
    }

    /// Wakes the subscribers of `channel`, and those named by a routing payload.
    fn dispatch(&self, channel: &str, payload: &str) {
        let mut named: HashSet<String> = HashSet::new();
        named.insert(channel.to_owned());
        if self.routing.as_deref() == Some(channel) {
            named.extend(routed(payload));
        }
        for (channels, flag) in self.live_subscribers() {
            if channels.iter().any(|c| named.contains(c)) {
                flag.notify_one();
            }
        }
    }

    fn wake_all(&self) {
        for (_, flag) in self.live_subscribers() {
            flag.notify_one();
        }
    }
}

/// The channels a routing payload names (none if it is not such a payload).
pub fn routed(payload: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Routing {
        #[serde(default)]
        wake: Vec<String>,
    }
    if !payload.starts_with('{') {
        return Vec::new();
    }
    serde_json::from_str::<Routing>(payload)
        .map(|r| r.wake)
        .unwrap_or_default()
}

/// Reads the dedicated connection until the hub is gone.
async fn listen(
    mut listener: PgListener,
    mut requests: mpsc::UnboundedReceiver<Listen>,
    hub: Weak<Hub>,
) {
    let mut listening: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some((channels, ack)) = request else { break };
                let new: Vec<&str> = channels
                    .iter()
                    .filter(|c| !listening.contains(*c))
                    .map(String::as_str)
                    .collect();
                let result = listener.listen_all(new.iter().copied()).await;
                if result.is_ok() {
                    listening.extend(channels.iter().cloned());
                }
                let _ = ack.send(result);
            }
            received = listener.try_recv() => {
                let Some(hub) = hub.upgrade() else { break };
                match received {
                    Ok(Some(n)) => {
                        ::metrics::counter!("worker_notifications_total").increment(1);
                        hub.dispatch(n.channel(), n.payload());
                    }
                    Ok(None) => {
                        tracing::warn!("notification listener reconnected; waking every loop");
                        hub.wake_all();
                    }
                    Err(e) => {
                        tracing::warn!(error.message = %e, "notification listener failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        hub.wake_all();
                    }
                }
            }
        }
    }
    tracing::debug!("notification listener stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routing_payload_names_channels_anything_else_names_none() {
        assert_eq!(
            routed(r#"{"case_id":"x","wake":["case_work_a","outbox_b"]}"#),
            ["case_work_a", "outbox_b"]
        );
        assert!(routed(r#"{"case_id":"x"}"#).is_empty());
        assert!(routed("").is_empty());
        assert!(routed("12345").is_empty());
        assert!(routed(r#"{"wake":"not a list"}"#).is_empty());
    }

    #[tokio::test]
    async fn a_burst_of_notifications_makes_one_wake_up() {
        let hub = Hub {
            routing: Some("changes".into()),
            ..Hub::default()
        };
        let flag = Arc::new(Notify::new());
        let other = Arc::new(Notify::new());
        hub.subscribers.lock().unwrap().extend([
            Subscriber {
                channels: vec!["work".into()],
                flag: Arc::downgrade(&flag),
            },
            Subscriber {
                channels: vec!["elsewhere".into()],
                flag: Arc::downgrade(&other),
            },
        ]);
        for _ in 0..5 {
            hub.dispatch("work", "");
        }
        hub.dispatch("changes", r#"{"wake":["work"]}"#);
        // One stored wake-up, however many notifications came.
        flag.notified().await;
        let again = tokio::time::timeout(Duration::ZERO, flag.notified()).await;
        assert!(again.is_err(), "the burst was folded into one wake-up");
        // Routed payloads wake only the named channels.
        let other_woken = tokio::time::timeout(Duration::ZERO, other.notified()).await;
        assert!(other_woken.is_err());
        hub.dispatch("changes", r#"{"wake":["elsewhere"]}"#);
        other.notified().await;
    }
}
