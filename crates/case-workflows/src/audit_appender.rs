//! Group commit of audit entries ([`Appender`]).

use case_domain::Actor;
use case_store::{
    StoreError,
    audit::{AuditEntry, record, record_many},
};
use uuid::Uuid;

/// An entry owned by an [`Appender`]'s queue.
#[derive(Debug, Clone)]
pub struct OwnedEntry {
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: &'static str,
    /// Which case.
    pub case_id: Option<Uuid>,
    /// Structured detail, without personal data.
    pub detail: serde_json::Value,
    /// Why.
    pub reason: Option<&'static str>,
}

impl OwnedEntry {
    fn entry(&self) -> AuditEntry<'_> {
        AuditEntry {
            actor: &self.actor,
            action: self.action,
            case_id: self.case_id,
            detail: self.detail.clone(),
            reason: self.reason,
        }
    }
}

type Waiting = (
    OwnedEntry,
    tokio::sync::oneshot::Sender<Result<i64, StoreError>>,
);

/// Group commit of audit entries for callers that record on their own (not inside a
/// transaction of theirs), such as the identity service's "personal data decrypted"
/// entries: a caller queues its entry and waits for its turn to write; whoever gets
/// the turn writes every entry queued at that moment with [`record_many`], so a burst
/// of N callers takes the chain's lock and commits once instead of N times (each
/// append holds the lock, which every writer of the chain waits for, until its
/// commit). Each caller returns once its own row is committed, as with [`record`].
///
/// The write runs as a task of its own, so a caller that is cancelled mid-write (its
/// request dropped) does not take the others' entries down with it. A batch that
/// fails is written again one entry at a time, so that each caller gets its own
/// answer.
#[derive(Debug, Clone)]
pub struct Appender {
    inner: std::sync::Arc<AppenderInner>,
}

#[derive(Debug)]
struct AppenderInner {
    pool: sqlx::PgPool,
    queued: std::sync::Mutex<Vec<Waiting>>,
    turn: tokio::sync::Mutex<()>,
}

impl Appender {
    /// An appender writing to `pool`.
    pub fn new(pool: sqlx::PgPool) -> Self {
        Self {
            inner: std::sync::Arc::new(AppenderInner {
                pool,
                queued: std::sync::Mutex::new(Vec::new()),
                turn: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Appends `entry`; returns its sequence number once it is committed.
    pub async fn append(&self, entry: OwnedEntry) -> Result<i64, StoreError> {
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        self.queue().push((entry, reply));
        let _turn = self.inner.turn.lock().await;
        match answer.try_recv() {
            // Written by the turn before this one.
            Ok(result) => return result,
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                return Err(StoreError::Invariant(
                    "an audit entry was dropped unwritten",
                ));
            }
            // Still queued: this turn writes it, with everything queued since.
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
        }
        let batch = std::mem::take(&mut *self.queue());
        let pool = self.inner.pool.clone();
        // A task of its own: it finishes, and answers everyone, even if this caller
        // is cancelled.
        let _ = tokio::spawn(write_batch(pool, batch)).await;
        answer.await.unwrap_or(Err(StoreError::Invariant(
            "an audit entry was dropped unwritten",
        )))
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        // A poisoned queue only means a panic elsewhere while pushing or taking.
        self.inner
            .queued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn write_batch(pool: sqlx::PgPool, batch: Vec<Waiting>) {
    let entries: Vec<AuditEntry<'_>> = batch.iter().map(|(e, _)| e.entry()).collect();
    let written = record_many(&pool, &entries).await;
    drop(entries);
    match written {
        Ok(seqs) => {
            for ((_, reply), seq) in batch.into_iter().zip(seqs) {
                let _ = reply.send(Ok(seq));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some((_, reply)) = batch.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
        Err(_) => {
            // Each alone, so that each caller gets its own answer (a database that
            // is down is reported as such to each).
            for (entry, reply) in batch {
                let alone = async {
                    let mut conn = pool.acquire().await?;
                    record(&mut conn, &entry.entry()).await
                };
                let _ = reply.send(alone.await);
            }
        }
    }
}
