//! Percentiles of latency samples: the samples are sorted and picked by nearest rank
//! (no histogram crate; a bench run holds at most a few hundred thousand samples).

use std::time::Duration;

/// The usual figures of a set of latency samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Arithmetic mean.
    pub mean: Duration,
    /// Median (nearest rank).
    pub p50: Duration,
    /// 90th percentile (nearest rank).
    pub p90: Duration,
    /// 95th percentile (nearest rank).
    pub p95: Duration,
    /// 99th percentile (nearest rank).
    pub p99: Duration,
    /// Largest sample.
    pub max: Duration,
}

/// The `p`-th percentile (0–100) of `sorted` by nearest rank; `None` when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Count, mean, p50, p95, p99 and max of `samples`; `None` when there are none.
pub fn summarize(samples: &[Duration]) -> Option<Summary> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let max = *sorted.last()?;
    let count = sorted.len();
    let total: Duration = sorted.iter().sum();
    Some(Summary {
        count,
        mean: total / u32::try_from(count).unwrap_or(u32::MAX),
        p50: percentile(&sorted, 50.0)?,
        p90: percentile(&sorted, 90.0)?,
        p95: percentile(&sorted, 95.0)?,
        p99: percentile(&sorted, 99.0)?,
        max,
    })
}

/// Events per second: `count` over `window` (0 when the window is empty).
pub fn rate(count: usize, window: Duration) -> f64 {
    let secs = window.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_hundred() {
        let samples: Vec<Duration> = (1..=100).rev().map(ms).collect();
        let s = summarize(&samples).unwrap();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50, ms(50));
        assert_eq!(s.p90, ms(90));
        assert_eq!(s.p95, ms(95));
        assert_eq!(s.p99, ms(99));
        assert_eq!(s.max, ms(100));
        assert_eq!(s.mean, Duration::from_micros(50_500));
    }

    #[test]
    fn small_and_empty_sets() {
        assert_eq!(summarize(&[]), None);
        let one = summarize(&[ms(7)]).unwrap();
        assert_eq!((one.p50, one.p99, one.max), (ms(7), ms(7), ms(7)));
        let two = summarize(&[ms(9), ms(1)]).unwrap();
        assert_eq!((two.p50, two.p95), (ms(1), ms(9)));
    }

    #[test]
    fn rate_over_a_window() {
        assert_eq!(rate(10, Duration::from_secs(2)), 5.0);
        assert_eq!(rate(10, Duration::ZERO), 0.0);
    }
}
