//! Open-loop arrivals: request `i` starts at `start + i / rate`, whether or not the
//! earlier ones have answered (a closed loop would wait, and hide queueing from its own
//! latencies). Latencies are taken from the *scheduled* start, so a start the client
//! itself delayed still counts its delay.
//!
//! A start is *late* when the ticker woke more than [`LATE_AFTER`] after its scheduled
//! time (the bench process itself was short of CPU); it is *dropped* when
//! `max_in_flight` requests are already outstanding (the product is not keeping up and
//! the bench refuses to pile up unbounded work). Both are counted and reported.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{sync::Semaphore, task::JoinSet};

/// How far behind its scheduled time a start may be before it counts as late.
pub const LATE_AFTER: Duration = Duration::from_millis(5);

/// A fixed-rate arrival schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Arrivals per second (> 0).
    pub rate: f64,
    /// Number of arrivals.
    pub count: usize,
}

impl Schedule {
    /// `rate` arrivals per second for `duration` (rounded down; at least one arrival).
    pub fn new(rate: f64, duration: Duration) -> Self {
        assert!(rate.is_finite() && rate > 0.0, "a positive rate");
        let count = (rate * duration.as_secs_f64()).floor() as usize;
        Self {
            rate,
            count: count.max(1),
        }
    }

    /// When arrival `i` is due, after the schedule's start.
    pub fn offset(&self, i: usize) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// The time the whole schedule takes to issue (the last arrival's offset plus one gap).
    pub fn span(&self) -> Duration {
        Duration::from_secs_f64(self.count as f64 / self.rate)
    }
}

/// Whether a start `lateness` after its due time counts as late.
pub fn is_late(lateness: Duration) -> bool {
    lateness > LATE_AFTER
}

/// What one open-loop run did.
#[derive(Debug)]
pub struct OpenLoop<T> {
    /// Per arrival index: its result, or `None` when the start was dropped.
    pub results: Vec<Option<T>>,
    /// Starts more than [`LATE_AFTER`] behind schedule.
    pub late: usize,
    /// The largest lateness of a start.
    pub max_lateness: Duration,
    /// Starts not made because `max_in_flight` requests were outstanding.
    pub dropped: usize,
    /// From the first due time to the last start actually made.
    pub issue_window: Duration,
}

impl<T> OpenLoop<T> {
    /// Arrivals actually started.
    pub fn started(&self) -> usize {
        self.results.len() - self.dropped
    }

    /// The rate at which arrivals were started (per second).
    pub fn achieved_rate(&self) -> f64 {
        // n starts span n - 1 gaps; with a single start, report 0.
        let gaps = self.started().saturating_sub(1);
        crate::stats::rate(gaps, self.issue_window)
    }
}

/// Runs `f(i, due)` for every arrival of `schedule` on its own task, each started at its
/// due time (`due` is the scheduled `Instant`, for latencies measured from it). At most
/// `max_in_flight` run at once; a start beyond that is dropped.
pub async fn run<T, F, Fut>(schedule: Schedule, max_in_flight: usize, f: F) -> OpenLoop<T>
where
    F: Fn(usize, Instant) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut tasks = JoinSet::new();
    let (mut late, mut dropped) = (0, 0);
    let mut max_lateness = Duration::ZERO;
    let start = Instant::now();
    let mut last_start = start;
    for i in 0..schedule.count {
        let due = start + schedule.offset(i);
        tokio::time::sleep_until(due.into()).await;
        let now = Instant::now();
        let lateness = now.saturating_duration_since(due);
        max_lateness = max_lateness.max(lateness);
        if is_late(lateness) {
            late += 1;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            dropped += 1;
            continue;
        };
        last_start = now;
        let work = f(i, due);
        tasks.spawn(async move {
            let out = work.await;
            drop(slot);
            (i, out)
        });
    }
    let mut results: Vec<Option<T>> = (0..schedule.count).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, out)) => results[i] = Some(out),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("an open-loop task was cancelled: {e}"),
        }
    }
    OpenLoop {
        results,
        late,
        max_lateness,
        dropped,
        issue_window: last_start - start,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn arrivals_are_evenly_spaced_at_the_rate() {
        let s = Schedule::new(100.0, Duration::from_secs(20));
        assert_eq!(s.count, 2000);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(10));
        assert_eq!(s.offset(1999), Duration::from_millis(19_990));
        assert_eq!(s.span(), Duration::from_secs(20));
        let odd = Schedule::new(3.0, Duration::from_millis(2500));
        assert_eq!(odd.count, 7);
        assert_eq!(odd.offset(3), Duration::from_secs(1));
        // A tiny product still makes one arrival.
        assert_eq!(Schedule::new(1.0, Duration::from_millis(10)).count, 1);
        assert_eq!(
            Schedule::new(200.0, Duration::from_secs(1)).offset(1),
            Duration::from_millis(5)
        );
    }

    #[test]
    fn lateness_threshold() {
        assert!(!is_late(Duration::ZERO));
        assert!(!is_late(LATE_AFTER));
        assert!(is_late(LATE_AFTER + Duration::from_micros(1)));
    }

    #[tokio::test]
    async fn starts_do_not_wait_for_earlier_answers() {
        // Every call waits at a barrier for all 50 to be in flight at once: a closed loop
        // would never get there (the timeout turns that into a failure, not a hang).
        let barrier = Arc::new(tokio::sync::Barrier::new(50));
        let calls = Arc::new(AtomicUsize::new(0));
        let schedule = Schedule::new(1000.0, Duration::from_millis(50));
        let run = run(schedule, 1000, |i, due| {
            let (barrier, calls) = (barrier.clone(), calls.clone());
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                barrier.wait().await;
                (i, due)
            }
        });
        let out = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("all 50 in flight at once");
        assert_eq!(calls.load(Ordering::SeqCst), 50);
        assert_eq!((out.started(), out.dropped), (50, 0));
        let first_due = out.results[0].expect("started").1;
        for (i, r) in out.results.iter().enumerate() {
            let (j, due) = r.expect("every start made");
            assert_eq!(j, i);
            assert_eq!(due - first_due, schedule.offset(i));
        }
        assert!(out.max_lateness >= Duration::ZERO);
    }

    #[tokio::test]
    async fn starts_beyond_the_in_flight_cap_are_dropped() {
        // 20 arrivals within 0.2 s; each call is held for 3 s; at most 5 at once.
        let out = run(
            Schedule::new(100.0, Duration::from_millis(200)),
            5,
            |i, _| async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                i
            },
        )
        .await;
        assert_eq!(out.dropped, 15);
        assert_eq!(out.started(), 5);
        assert_eq!(
            out.results.iter().flatten().copied().collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn achieved_rate_counts_the_gaps_between_starts() {
        let out = OpenLoop::<()> {
            results: vec![Some(()); 11],
            late: 0,
            max_lateness: Duration::ZERO,
            dropped: 0,
            issue_window: Duration::from_secs(1),
        };
        assert!((out.achieved_rate() - 10.0).abs() < 1e-9);
    }
}
