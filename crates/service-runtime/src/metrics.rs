//! Prometheus metrics: one recorder per process, rendered at `/metrics`.
//!
//! Names: `http_requests_total` / `http_request_duration_seconds` (by method,
//! route, status), `reactivation_cases` (gauge by state, refreshed at each scrape),
//! `worker_claims_total` (by service, state), `handoff_latency_seconds` (commit of a
//! transition → first claim by the next service, by state), `worker_wakeups_total`
//! (by service and source: notify or poll), `worker_errors_total`.

use std::sync::OnceLock;

use case_domain::CaseState;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 3600.0,
];

/// Installs the process-wide recorder (once) and returns its handle.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; metrics then go there.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Scrapes within this long of the last refresh reuse its counts (every process of
/// every service serves /metrics; the GROUP BY need not run for each scrape).
const GAUGE_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);
static LAST_REFRESH: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);

/// Refreshes the per-state case gauges from the database (at most every 10 s).
pub async fn refresh_case_gauges(pool: &PgPool) -> Result<(), case_store::StoreError> {
    {
        let mut last = LAST_REFRESH.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < GAUGE_REFRESH) {
            return Ok(());
        }
        *last = Some(std::time::Instant::now());
    }
    let counts = case_store::cases_per_state(pool).await?;
    for state in CaseState::ALL {
        let n = counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("reactivation_cases", "state" => state.as_str()).set(n as f64);
    }
    Ok(())
}

/// The text exposition of every metric.
pub fn render() -> String {
    let handle = install();
    handle.run_upkeep();
    handle.render()
}
