//! Prometheus metrics: one recorder per process, rendered at `/metrics`.
//!
//! Names: `http_requests_total` / `http_request_duration_seconds` (by method,
//! route, status), `reactivation_cases` (gauge by state, refreshed by the binary
//! through `case_workflows::gauges`: the runtime knows no tables),
//! `worker_claims_total` (by service, state), `handoff_latency_seconds` (commit of a
//! transition → first claim by the next service, by state), `worker_wakeups_total`
//! (by service and source: notify or poll), `worker_errors_total`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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

/// The text exposition of every metric.
pub fn render() -> String {
    let handle = install();
    handle.run_upkeep();
    handle.render()
}
