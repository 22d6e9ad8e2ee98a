//! The Postgres pool, and waiting for the database at start.
//!
//! A service started while its database is down (a restart of the database, an
//! orchestrator starting everything at once) does not exit: [`connect_with_retry`]
//! tries again with exponential back-off, logs every failed attempt and publishes why
//! it is waiting in a [`StartupStatus`] that `/readyz` answers with. Errors retrying
//! cannot fix (wrong password, no such database, a malformed URL) still end the start.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use sqlx::{
    Connection, PgConnection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::Shutdown;

/// The first pause between two connection attempts at start; doubled per attempt.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest pause between two connection attempts at start.
pub const MAX_RETRY: Duration = Duration::from_secs(10);

/// Connects a pool to `url` with bounded waits, so a database outage shows up as
/// errors (and a failing `/readyz`) instead of hung requests.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    try_connect(url, max_connections)
        .await
        .context("cannot connect to the database named by DATABASE_URL")
}

/// Applies every pending migration of `migrator` (the binary passes the store's).
pub async fn migrate(pool: &PgPool, migrator: &sqlx::migrate::Migrator) -> anyhow::Result<()> {
    migrator.run(pool).await.context("migrations failed")
}

/// Why a starting process is not ready yet, shared between the start-up wait (which
/// writes it) and `/readyz` (which answers with it).
#[derive(Debug, Clone, Default)]
pub struct StartupStatus(Arc<Mutex<Option<String>>>);

impl StartupStatus {
    /// A status saying nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records why the process is waiting.
    pub fn set(&self, reason: String) {
        if let Ok(mut r) = self.0.lock() {
            *r = Some(reason);
        }
    }

    /// Why the process is waiting, if it said.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().ok().and_then(|r| r.clone())
    }
}

/// Whether a failed connection attempt may succeed later: the server is unreachable,
/// refuses or resets connections, is starting up or shutting down, or has no free
/// connection slot. Authentication, a missing database and a malformed URL are not.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            // 57P01-57P03: admin shutdown, crash shutdown, cannot connect now
            // (starting up); 53300: too many connections; 08xxx: connection exceptions.
            matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300") || code.starts_with("08")
        }),
        _ => false,
    }
}

/// A short, credential-free account of why the database cannot be used, for logs and
/// `/readyz` (never the URL).
pub fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(e) => format!("cannot reach the database server ({e})"),
        sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".to_owned(),
        sqlx::Error::Tls(_) => "the TLS handshake with the database server failed".to_owned(),
        sqlx::Error::Database(e) => match e.code() {
            Some(code) => format!("the database server said {code}: {}", e.message()),
            None => format!("the database server said: {}", e.message()),
        },
        sqlx::Error::Configuration(_) => "DATABASE_URL is malformed".to_owned(),
        other => format!("database error ({other})"),
    }
}

/// The pause after the `attempt`-th failed attempt (1-based): [`FIRST_RETRY`] doubled
/// per attempt, at most [`MAX_RETRY`].
pub fn retry_delay(attempt: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_RETRY)
}

/// Connects like [`connect`], but while the failure is [transient](is_transient)
/// waits and tries again with [back-off](retry_delay) until it succeeds or
/// `shutdown` starts. Each failure is logged (attempt, reason, next try) and written
/// to `status`. A failure that is not transient is returned at once.
pub async fn connect_with_retry(
    url: &str,
    max_connections: u32,
    status: &StartupStatus,
    shutdown: &Shutdown,
) -> anyhow::Result<PgPool> {
    let mut attempt = 0u32;
    loop {
        let error = match try_connect(url, max_connections).await {
            Ok(pool) => {
                if attempt > 0 {
                    tracing::info!(attempts = attempt + 1, "connected to the database");
                }
                return Ok(pool);
            }
            Err(e) if is_transient(&e) => e,
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "cannot connect to the database named by DATABASE_URL: {}",
                    describe(&e)
                ));
            }
        };
        attempt += 1;
        let delay = retry_delay(attempt);
        let reason = describe(&error);
        tracing::warn!(
            attempt,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            reason = %reason,
            "waiting for the database"
        );
        status.set(format!(
            "Waiting for the database: {reason} (attempt {attempt}, next in {:.1} s).",
            delay.as_secs_f64()
        ));
        tokio::select! {
            () = shutdown.wait() => anyhow::bail!("stopped while waiting for the database ({reason})"),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Prepared statements kept per connection: more than every statement a service runs.
pub const STATEMENT_CACHE: usize = 400;

/// One attempt at what [`connect`] does, with the database's own error: one plain
/// connection first (a pool retries a refused connection until its acquire timeout
/// and then reports only the timeout), then the pool.
pub async fn try_connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    // Postgres's own plan cache choice (`plan_cache_mode` auto): sqlx prepares every
    // statement once per connection, and after five runs Postgres keeps a statement's
    // generic plan when it costs no more than the custom ones, so a hot statement is
    // no longer planned on every run (planning was about a third of the database's
    // CPU on the clean journey with custom plans forced; docs/performance.md). The
    // statements whose good plan depends on the values (a time window over the
    // history) ask for a custom plan themselves (`case_store::plan_for_values`), and
    // the hot ones whose generic plan is good but never chosen (the follower's cursor
    // reads over every partition) for the generic plan (`case_store::plan_generic`). A `plan_cache_mode` given in the
    // URL (`?options[plan_cache_mode]=force_generic_plan`, as tests/tests/hot_paths.rs
    // does to check every other statement's generic plan) is kept.
    //
    // Each connection keeps up to STATEMENT_CACHE prepared statements (sqlx's default
    // is 100): the gateway alone runs more distinct statements than that, and a
    // statement evicted from the cache is prepared again and planned for five more
    // runs before Postgres considers its generic plan.
    let options: PgConnectOptions = url
        .parse::<PgConnectOptions>()?
        .statement_cache_capacity(STATEMENT_CACHE);
    let probe = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&options))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    let _ = probe.close().await;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        // sqlx pings a connection when it goes back to the pool (always: a connection
        // its last use broke is closed there) and, by default, again before handing
        // it out. That second ping is a round trip in front of every request and
        // worker step (about ten on a journey's path, 0.1 ms each on an idle
        // machine), and it finds something only when the connection died while it
        // sat idle: it is sent only after PING_AFTER_IDLE idle.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
}

/// How long a pooled connection may sit idle before it is pinged on its way out.
/// One that died within this time (a failover, a terminated backend) fails its next
/// statement with an I/O error, which callers treat as "database unavailable" (a 503,
/// a worker's retry) like a statement cut by the same fault, and is closed on release.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_up_to_its_cap() {
        let delays: Vec<u128> = (1..=7).map(|a| retry_delay(a).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn refused_connections_are_waited_for_but_a_bad_url_is_not() {
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(is_transient(&refused));
        assert!(describe(&refused).starts_with("cannot reach the database server"));
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        let malformed = sqlx::Error::Configuration("bad".into());
        assert!(!is_transient(&malformed));
        assert_eq!(describe(&malformed), "DATABASE_URL is malformed");
    }

    #[tokio::test]
    async fn a_refused_server_is_retried_until_shutdown_and_the_reason_is_published() {
        // Port 1 on loopback: nothing listens there, the connection is refused.
        let status = StartupStatus::new();
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let watcher = status.clone();
        tokio::spawn(async move {
            // Stop once the second attempt has been announced.
            while !watcher.reason().is_some_and(|r| r.contains("attempt 2,")) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.trigger();
        });
        let outcome = tokio::time::timeout(
            Duration::from_secs(20),
            connect_with_retry("postgres://nobody@127.0.0.1:1/none", 1, &status, &shutdown),
        )
        .await
        .expect("the wait ends with shutdown");
        let error = outcome.expect_err("no database there");
        assert!(
            error.to_string().contains("stopped while waiting"),
            "{error}"
        );
        let reason = status.reason().expect("a published reason");
        assert!(
            reason.starts_with("Waiting for the database: cannot reach the database server"),
            "{reason}"
        );
        assert!(!reason.contains("nobody"), "the URL leaked: {reason}");
    }
}
