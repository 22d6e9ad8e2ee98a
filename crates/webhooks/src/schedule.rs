//! When a failed outbound delivery is tried again.

use std::time::Duration;

/// The retry schedule of outbound deliveries: the first attempt right away, then one
/// retry after each delay (Standard Webhooks / Svix: 5 s, 5 min, 30 min, 2 h, 5 h,
/// 10 h, 10 h), each with ± `jitter` so that a receiver coming back is not hit by
/// every delivery at once. `scale` multiplies every delay (tests run it fast).
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
    scale: f64,
    jitter: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::standard()
    }
}

impl RetrySchedule {
    /// The standard schedule, ±20 % jitter, unscaled.
    pub fn standard() -> Self {
        let m = 60;
        let h = 3600;
        Self::new(
            [5, 5 * m, 30 * m, 2 * h, 5 * h, 10 * h, 10 * h]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        )
    }

    /// A schedule with these base delays, ±20 % jitter, unscaled.
    pub fn new(delays: Vec<Duration>) -> Self {
        Self {
            delays,
            scale: 1.0,
            jitter: 0.2,
        }
    }

    /// The same schedule with every delay multiplied by `scale` (clamped to 0–1000).
    pub fn scaled(mut self, scale: f64) -> Self {
        self.scale = if scale.is_finite() {
            scale.clamp(0.0, 1000.0)
        } else {
            1.0
        };
        self
    }

    /// The same schedule with ± `jitter` (a fraction, clamped to 0–1).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Attempts in all (the first one and every retry).
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX - 1) + 1
    }

    /// How long to wait after the `failed`-th failed attempt (1-based) before the
    /// next one, or `None` when that was the last. `unit` is a random number in
    /// [0, 1) that places the delay within the jitter band.
    pub fn delay_after(&self, failed: u32, unit: f64) -> Option<Duration> {
        let index = usize::try_from(failed.checked_sub(1)?).ok()?;
        let base = self.delays.get(index)?.mul_f64(self.scale);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.5
        };
        Some(base.mul_f64(1.0 + self.jitter * (2.0 * unit - 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_schedule_spans_about_a_day_and_a_half() {
        let s = RetrySchedule::standard().with_jitter(0.0);
        assert_eq!(s.max_attempts(), 8);
        let delays: Vec<u64> = (1..=7)
            .map(|n| s.delay_after(n, 0.5).unwrap().as_secs())
            .collect();
        assert_eq!(delays, [5, 300, 1800, 7200, 18000, 36000, 36000]);
        assert_eq!(s.delay_after(8, 0.5), None);
        assert_eq!(s.delay_after(0, 0.5), None);
        let total: u64 = delays.iter().sum();
        assert_eq!(total, 99_305);
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let s = RetrySchedule::standard();
        let low = s.delay_after(2, 0.0).unwrap();
        let high = s.delay_after(2, 1.0).unwrap();
        assert_eq!(low, Duration::from_secs(240));
        assert_eq!(high, Duration::from_secs(360));
        for unit in [0.1, 0.37, 0.99, f64::NAN, -3.0, 7.0] {
            let d = s.delay_after(2, unit).unwrap();
            assert!(d >= low && d <= high, "{unit}: {d:?}");
        }
    }

    #[test]
    fn scaling_makes_tests_fast() {
        let s = RetrySchedule::standard().scaled(0.01).with_jitter(0.0);
        assert_eq!(s.delay_after(1, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(s.delay_after(2, 0.5), Some(Duration::from_secs(3)));
        let zero = RetrySchedule::standard().scaled(0.0);
        assert_eq!(zero.delay_after(7, 0.9), Some(Duration::ZERO));
        let weird = RetrySchedule::standard().scaled(f64::NAN).with_jitter(0.0);
        assert_eq!(weird.delay_after(1, 0.5), Some(Duration::from_secs(5)));
    }
}
