//! Outbox messages of some topics, on the store's leased queue.

use std::time::Duration;

use case_store::OutboxClaim;
use chrono::{DateTime, Utc};
use service_runtime::worker::{Batch, ClaimInfo, OutboxSource};
use sqlx::PgPool;

/// Outbox messages of some topics, claimed from the outbox with a lease (the
/// claim's attempts are its fence).
#[derive(Debug, Clone)]
pub struct OutboxTopics {
    topics: Vec<String>,
}

impl OutboxTopics {
    /// Messages of `topics`.
    pub fn new(topics: Vec<String>) -> Self {
        Self { topics }
    }

    /// Messages of one topic.
    pub fn one(topic: &str) -> Self {
        Self::new(vec![topic.to_owned()])
    }

    /// The topics whose messages it claims.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }
}

impl OutboxSource for OutboxTopics {
    type Message = OutboxClaim;

    fn channels(&self) -> Vec<String> {
        self.topics
            .iter()
            .map(|t| case_store::outbox_channel(t))
            .collect()
    }

    async fn claim(
        &self,
        pool: &PgPool,
        worker: &str,
        lease: Duration,
    ) -> anyhow::Result<Option<OutboxClaim>> {
        Ok(case_store::claim_outbox(pool, &self.topics, worker, lease).await?)
    }

    async fn claim_batch(
        &self,
        pool: &PgPool,
        worker: &str,
        lease: Duration,
        max: usize,
    ) -> anyhow::Result<Vec<OutboxClaim>> {
        Ok(case_store::claim_outbox_batch(pool, &self.topics, worker, lease, max).await?)
    }

    async fn claim_batch_due(
        &self,
        pool: &PgPool,
        worker: &str,
        lease: Duration,
        max: usize,
    ) -> anyhow::Result<Batch<OutboxClaim>> {
        let (items, next_due) =
            case_store::claim_outbox_batch_due(pool, &self.topics, worker, lease, max).await?;
        Ok(Batch::read(items, max, next_due))
    }

    async fn renew(
        &self,
        pool: &PgPool,
        message: &OutboxClaim,
        lease: Duration,
    ) -> anyhow::Result<()> {
        Ok(case_store::renew_outbox_lease(pool, message, lease).await?)
    }

    async fn delivered(&self, pool: &PgPool, message: &OutboxClaim) -> anyhow::Result<()> {
        Ok(case_store::mark_delivered(pool, message).await?)
    }

    async fn retry_later(
        &self,
        pool: &PgPool,
        message: &OutboxClaim,
        after: Duration,
        error: &str,
    ) -> anyhow::Result<()> {
        Ok(case_store::retry_later(pool, message, after, error).await?)
    }

    async fn failed(
        &self,
        pool: &PgPool,
        message: &OutboxClaim,
        error: &str,
    ) -> anyhow::Result<()> {
        Ok(case_store::mark_failed(pool, message, error).await?)
    }

    async fn next_due(&self, pool: &PgPool) -> anyhow::Result<Option<DateTime<Utc>>> {
        Ok(case_store::next_outbox_due(pool, &self.topics).await?)
    }

    fn info(&self, message: &OutboxClaim) -> ClaimInfo {
        ClaimInfo {
            id: message.id,
            label: message.topic.clone(),
            attempt: message.attempts,
            handoff_wait: (message.attempts == 1).then_some(message.waited),
        }
    }
}

#[cfg(test)]
mod tests {
    use case_store::timers::{NewMessage, enqueue_message};

    use super::*;

    async fn enqueue(pool: &PgPool, topic: &str, key: &str) {
        let mut conn = pool.acquire().await.unwrap();
        enqueue_message(
            &mut conn,
            &NewMessage {
                topic,
                case_id: None,
                event_id: None,
                dedupe_key: key,
                payload: serde_json::json!({ "k": key }),
            },
        )
        .await
        .unwrap()
        .expect("written");
    }

    #[test]
    fn its_channels_are_the_outbox_channels_of_its_topics() {
        let source = OutboxTopics::new(vec!["a.b".into(), "c".into()]);
        assert_eq!(
            source.channels(),
            vec![
                case_store::outbox_channel("a.b"),
                case_store::outbox_channel("c")
            ]
        );
        assert_eq!(OutboxTopics::one("c").topics(), &["c".to_owned()]);
    }

    #[sqlx::test(migrator = "case_store::MIGRATOR")]
    async fn claims_only_its_topics_and_retries_then_delivers(pool: PgPool) {
        enqueue(&pool, "other.topic", "k-other").await;
        enqueue(&pool, "mine.topic", "k-mine").await;
        let source = OutboxTopics::one("mine.topic");
        let lease = Duration::from_secs(30);
        let message = source
            .claim(&pool, "test-worker", lease)
            .await
            .unwrap()
            .expect("my message");
        let info = source.info(&message);
        assert_eq!(info.label, "mine.topic");
        assert_eq!(info.attempt, 1);
        assert!(info.handoff_wait.is_some());
        source.renew(&pool, &message, lease).await.unwrap();
        source
            .retry_later(&pool, &message, Duration::from_secs(60), "not yet")
            .await
            .unwrap();
        assert!(
            source
                .claim(&pool, "test-worker", lease)
                .await
                .unwrap()
                .is_none(),
            "backing off, and the other topic is not mine"
        );
        let due = source.next_due(&pool).await.unwrap().expect("a due time");
        assert!(due > Utc::now() + chrono::Duration::seconds(30));
        assert!(
            source.delivered(&pool, &message).await.is_err(),
            "a released message's old lease cannot record an outcome"
        );
    }
}
