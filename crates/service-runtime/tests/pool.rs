//! The services' pool against a real PostgreSQL: what it hands out after a
//! connection died.

use std::time::{Duration, Instant};

use service_runtime::db::{PING_AFTER_IDLE, try_connect};
use sqlx::{ConnectOptions, PgPool};

async fn backend_pid(pool: &PgPool) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(pool)
        .await
}

/// Ends backend `pid` from another connection and waits until it is gone.
async fn terminate(admin: &PgPool, pid: i32) {
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(admin)
        .await
        .unwrap();
    assert!(killed);
    for _ in 0..100 {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
            .bind(pid)
            .fetch_one(admin)
            .await
            .unwrap();
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("backend {pid} never went away");
}

/// Waits until the pool's one connection is back idle: its release ping answered.
async fn settled(pool: &PgPool) {
    for _ in 0..250 {
        if pool.num_idle() == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the released connection never went back idle");
}

/// A connection that died while it sat idle in the pool is pinged on its way out,
/// closed and replaced: the caller never sees it. One that died within
/// PING_AFTER_IDLE of its last use fails one statement as unavailable (the
/// server's "terminating connection", or an I/O error) and is closed; the next
/// statement gets a new connection.
#[sqlx::test(migrations = false)]
async fn a_dead_connection_costs_at_most_one_statement(admin: PgPool) {
    let url = admin.connect_options().to_url_lossy().to_string();
    let pool = try_connect(&url, 1).await.unwrap();

    let first = backend_pid(&pool).await.unwrap();
    settled(&pool).await;
    terminate(&admin, first).await;
    tokio::time::sleep(PING_AFTER_IDLE + Duration::from_millis(200)).await;
    let second = backend_pid(&pool)
        .await
        .expect("the dead idle connection is replaced before it is handed out");
    assert_ne!(second, first);

    // sqlx pings a connection as it goes back to the pool, in a task of its
    // own; a cut that lands before that ping is noticed there and never
    // reaches a caller. Cut only once the connection sits idle, and count the
    // try only if the cut took less than PING_AFTER_IDLE (a stalled machine
    // would have the pool ping it, rightly).
    let mut cut_pid = second;
    let mut cut = None;
    for _ in 0..5 {
        settled(&pool).await;
        let idle_since = Instant::now();
        terminate(&admin, cut_pid).await;
        if idle_since.elapsed() < PING_AFTER_IDLE - Duration::from_millis(200) {
            cut = Some(backend_pid(&pool).await);
            break;
        }
        cut_pid = backend_pid(&pool)
            .await
            .expect("a connection idle past PING_AFTER_IDLE is pinged and replaced");
    }
    let cut = cut.expect("every cut took longer than PING_AFTER_IDLE: the machine stalled");
    let unavailable = match &cut {
        Err(sqlx::Error::Io(_)) => true,
        Err(sqlx::Error::Database(e)) => e.code().as_deref() == Some("57P01"),
        _ => false,
    };
    assert!(
        unavailable,
        "a connection used a moment ago is handed out unpinged: {cut:?}"
    );
    let third = backend_pid(&pool)
        .await
        .expect("the broken connection was closed on release");
    assert!(third != first && third != cut_pid);
}
