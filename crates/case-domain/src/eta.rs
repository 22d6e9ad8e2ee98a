//! The subscriber's ETA: when the case is expected to be done, from the stage SLAs
//! and live statistics (recent time-in-stage, queue depth, throughput). The method
//! is described in `docs/eta.md`.
//!
//! For each stage still to go (the current one, then the stages ahead on the way to
//! reactivation) an *expected stage time* is taken:
//!
//! 1. the **median** time cases recently spent in the stage when at least
//!    [`MIN_SAMPLES`] cases left it in the window, else the stage's **SLA**;
//! 2. for a stage people work (a queue), at least the **backlog time**: the cases
//!    waiting in it divided by how many left it per hour recently (the queue must be
//!    worked through). A queue with cases but no recent exits counts its SLA;
//! 3. capped at [`max_stage`] (30 days).
//!
//! The current stage counts only what is left of it: its expected time minus the
//! time it has already used (the SLA clock, see [`crate::sla::stage_elapsed`]), but
//! never less than zero. While the case waits on the subscriber, or is finished,
//! there is no ETA.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::{CaseState, sla::SlaConfig};

/// Fewer exits than this in the window: the median is not trusted, the SLA is used.
pub const MIN_SAMPLES: u32 = 5;

/// No stage is expected to take longer than this.
pub fn max_stage() -> Duration {
    Duration::days(30)
}

/// Live figures of one state.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StageStats {
    /// Median time cases spent in the state, over those that left it recently.
    pub median: Option<Duration>,
    /// How many left it in the window.
    pub samples: u32,
    /// Cases in the state now.
    pub depth: u32,
    /// Cases that left the state per hour, recently.
    pub exits_per_hour: f64,
}

/// Live figures of every state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LiveStats {
    /// Per state; a missing state has no recent data.
    pub stages: BTreeMap<CaseState, StageStats>,
}

/// The stages a case in `state` still has to pass on its way to reactivation,
/// not counting the current one.
pub fn stages_ahead(state: CaseState) -> &'static [CaseState] {
    use CaseState::*;
    match state {
        IdentityReview => &[RiskAssessment, Provisioning],
        RiskAssessment | SecurityReview | PartiallyReactivated | ProvisioningFailed => {
            &[Provisioning]
        }
        _ => &[],
    }
}

/// The expected time of a stage (see the module doc); `None` where no clock runs.
pub fn expected_stage_time(
    state: CaseState,
    config: &SlaConfig,
    stats: &LiveStats,
) -> Option<Duration> {
    let sla = config.stage_sla(state)?;
    let live = stats.stages.get(&state).copied().unwrap_or_default();
    let mut expected = match live.median {
        Some(median) if live.samples >= MIN_SAMPLES => median.max(Duration::zero()),
        _ => sla,
    };
    if !state.is_automated() && live.depth > 0 {
        let backlog = if live.exits_per_hour > 0.0 {
            let hours = f64::from(live.depth) / live.exits_per_hour;
            let secs = (hours * 3600.0).min(max_stage().num_seconds() as f64);
            Duration::seconds(secs as i64)
        } else {
            sla
        };
        expected = expected.max(backlog);
    }
    Some(expected.min(max_stage()))
}

/// When a case in `state`, whose stage has used `used` of its clock, is expected to
/// be done, seen at `now`; `None` while it waits on the subscriber or is finished.
pub fn estimate(
    state: CaseState,
    used: Duration,
    now: DateTime<Utc>,
    config: &SlaConfig,
    stats: &LiveStats,
) -> Option<DateTime<Utc>> {
    let current = expected_stage_time(state, config, stats)?;
    let left = (current - used).max(Duration::zero());
    Some(stages_ahead(state).iter().fold(now + left, |at, s| {
        at + expected_stage_time(*s, config, stats).unwrap_or_default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::hours(h)
    }

    fn stats(pairs: &[(CaseState, StageStats)]) -> LiveStats {
        LiveStats {
            stages: pairs.iter().copied().collect(),
        }
    }

    #[test]
    fn without_data_the_slas_decide() {
        let c = SlaConfig::default();
        let none = LiveStats::default();
        // Security review 24 h, then provisioning 30 min.
        assert_eq!(
            estimate(
                CaseState::SecurityReview,
                Duration::hours(1),
                at(1),
                &c,
                &none
            ),
            Some(at(24) + Duration::minutes(30))
        );
        // Identity review 4 h, risk 1 min, provisioning 30 min.
        assert_eq!(
            estimate(
                CaseState::IdentityReview,
                Duration::zero(),
                at(0),
                &c,
                &none
            ),
            Some(at(4) + Duration::minutes(31))
        );
    }

    #[test]
    fn no_eta_while_the_subscriber_has_the_case_or_it_is_done() {
        let c = SlaConfig::default();
        for s in CaseState::ALL {
            let e = estimate(s, Duration::zero(), at(0), &c, &LiveStats::default());
            assert_eq!(e.is_some(), c.stage_sla(s).is_some(), "{s}");
            if s.waits_on_customer() || s.is_terminal() || s == CaseState::AwaitingIdentity {
                assert_eq!(e, None, "{s}");
            }
        }
    }

    #[test]
    fn a_trusted_median_replaces_the_sla() {
        let c = SlaConfig::default();
        let live = stats(&[(
            CaseState::SecurityReview,
            StageStats {
                median: Some(Duration::hours(3)),
                samples: 40,
                depth: 0,
                exits_per_hour: 2.0,
            },
        )]);
        assert_eq!(
            estimate(
                CaseState::SecurityReview,
                Duration::hours(1),
                at(1),
                &c,
                &live
            ),
            Some(at(3) + Duration::minutes(30))
        );
        // Too few samples: back to the SLA.
        let thin = stats(&[(
            CaseState::SecurityReview,
            StageStats {
                median: Some(Duration::hours(3)),
                samples: MIN_SAMPLES - 1,
                ..Default::default()
            },
        )]);
        assert_eq!(
            expected_stage_time(CaseState::SecurityReview, &c, &thin),
            Some(Duration::hours(24))
        );
    }

    #[test]
    fn a_long_queue_pushes_the_eta_back() {
        let c = SlaConfig::default();
        let busy = stats(&[(
            CaseState::SecurityReview,
            StageStats {
                median: Some(Duration::hours(3)),
                samples: 40,
                depth: 120,
                exits_per_hour: 4.0,
            },
        )]);
        // 120 cases at 4 an hour: 30 h of backlog beat the 3 h median (and the SLA).
        assert_eq!(
            expected_stage_time(CaseState::SecurityReview, &c, &busy),
            Some(Duration::hours(30))
        );
        // Cases but nobody finishing any: the SLA.
        let stuck = stats(&[(
            CaseState::SecurityReview,
            StageStats {
                median: Some(Duration::hours(3)),
                samples: 40,
                depth: 5,
                exits_per_hour: 0.0,
            },
        )]);
        assert_eq!(
            expected_stage_time(CaseState::SecurityReview, &c, &stuck),
            Some(Duration::hours(24))
        );
        // Automated stages have no queue to wait in.
        let risk = stats(&[(
            CaseState::Provisioning,
            StageStats {
                median: Some(Duration::seconds(20)),
                samples: 100,
                depth: 500,
                exits_per_hour: 1.0,
            },
        )]);
        assert_eq!(
            expected_stage_time(CaseState::Provisioning, &c, &risk),
            Some(Duration::seconds(20))
        );
        // And nothing runs past the cap.
        let flood = stats(&[(
            CaseState::SecurityReview,
            StageStats {
                depth: 1_000_000,
                exits_per_hour: 0.001,
                ..Default::default()
            },
        )]);
        assert_eq!(
            expected_stage_time(CaseState::SecurityReview, &c, &flood),
            Some(max_stage())
        );
    }

    #[test]
    fn an_overdue_stage_is_expected_to_end_now_and_the_rest_still_counts() {
        let c = SlaConfig::default();
        let e = estimate(
            CaseState::SecurityReview,
            Duration::hours(30),
            at(30),
            &c,
            &LiveStats::default(),
        );
        assert_eq!(e, Some(at(30) + Duration::minutes(30)));
        let e = estimate(
            CaseState::Provisioning,
            Duration::hours(10),
            at(10),
            &c,
            &LiveStats::default(),
        );
        assert_eq!(e, Some(at(10)));
    }

    #[test]
    fn the_configured_slas_are_used() {
        let c = SlaConfig::from_lookup(|k| {
            (k == "REACTIVATION_SLA_SECURITY_REVIEW_MINUTES").then(|| "60".to_owned())
        })
        .unwrap();
        assert_eq!(
            estimate(
                CaseState::SecurityReview,
                Duration::zero(),
                at(0),
                &c,
                &LiveStats::default()
            ),
            Some(at(1) + Duration::minutes(30))
        );
    }
}
