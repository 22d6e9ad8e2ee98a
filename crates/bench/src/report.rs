//! Formatting the bench's stdout table.

use std::time::Duration;

use crate::stats::summarize;

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Width of the label column.
pub const LABEL: usize = 46;

/// The header over [`latency_row`]s.
pub fn latency_header(title: &str) -> String {
    format!(
        "{title:<LABEL$} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "n", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "max ms"
    )
}

/// `label  n  p50  p90  p95  p99  max` of `samples` (dashes when there are none).
pub fn latency_row(label: &str, samples: &[Duration]) -> String {
    match summarize(samples) {
        Some(s) => format!(
            "  {label:<w$} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
            s.count,
            ms(s.p50),
            ms(s.p90),
            ms(s.p95),
            ms(s.p99),
            ms(s.max),
            w = LABEL - 2
        ),
        None => format!(
            "  {label:<w$} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
            0,
            "-",
            "-",
            "-",
            "-",
            "-",
            w = LABEL - 2
        ),
    }
}

/// `label  value` on one line.
pub fn kv(label: &str, value: impl std::fmt::Display) -> String {
    format!("  {label:<w$} {value}", w = LABEL - 2)
}

/// The number of CPUs this process may use.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The one-minute load average (Linux), or `?`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_line_up_with_the_header() {
        let header = latency_header("latency");
        let row = latency_row("create", &[Duration::from_micros(1500)]);
        assert_eq!(header.len(), row.len());
        assert!(row.contains("1.5"));
        assert_eq!(latency_row("none", &[]).len(), header.len());
        assert_eq!(ms(Duration::from_millis(20)), "20.0");
    }
}
