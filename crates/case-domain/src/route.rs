//! Per-department progress: the stages a case passes on its way to reactivation
//! (derived from the transition table and its risk tier), what each checks, the
//! typical time of each (live median, else the stage SLA) and where the case is now.
//!
//! The stages are data ([`STAGES`]): a new state a department works only needs a
//! line there (its department comes from [`CaseState::department`], its place on the
//! route from [`crate::TRANSITIONS`]). The route of a case is
//!
//! 1. the stages it already passed (its history, oldest first),
//! 2. the stage it is in now (for a state where it waits on the subscriber: the
//!    stage that asked, see [`crate::sla::paused_stage`]),
//! 3. the stages still ahead: every stage on the route for its tier that the
//!    transition table can still reach from the current state, nearest first (ties
//!    in lifecycle order).

use std::collections::{BTreeMap, VecDeque};

use chrono::Duration;

use crate::{
    CaseState, Department, Locale, TRANSITIONS,
    eta::{LiveStats, MIN_SAMPLES},
    risk::RiskTier,
    sla::{SlaConfig, paused_stage},
};

/// Whether a stage is on a case's route, given its risk tier (`None`: not graded yet).
pub type OnRoute = fn(Option<RiskTier>) -> bool;

/// One stage a department works: what it checks, in both languages, and whether
/// a case of a given tier passes it.
#[derive(Debug, Clone, Copy)]
pub struct Stage {
    /// The state the case is in during the stage.
    pub state: CaseState,
    /// Whether a case passes the stage on its way to reactivation.
    pub on_route: OnRoute,
    /// What the stage checks, in English.
    pub checks_en: &'static str,
    /// What the stage checks, in Chinese.
    pub checks_zh: &'static str,
}

impl Stage {
    /// What the stage checks, in `locale`.
    pub fn checks(&self, locale: Locale) -> &'static str {
        if locale.is_zh() {
            self.checks_zh
        } else {
            self.checks_en
        }
    }

    /// The department that works the stage.
    pub fn department(&self) -> Option<Department> {
        self.state.department()
    }
}

fn always(_: Option<RiskTier>) -> bool {
    true
}

/// Only when the case is sent there (an exception path, not planned ahead).
fn on_exception(_: Option<RiskTier>) -> bool {
    false
}

/// Tiers above low go to a security analyst.
fn reviewed(tier: Option<RiskTier>) -> bool {
    tier.is_some_and(|t| t != RiskTier::Low)
}

const fn stage(
    state: CaseState,
    on_route: OnRoute,
    checks_en: &'static str,
    checks_zh: &'static str,
) -> Stage {
    Stage {
        state,
        on_route,
        checks_en,
        checks_zh,
    }
}

/// Every stage a department works, in lifecycle order. Add a line for a new state.
pub const STAGES: &[Stage] = &[
    stage(
        CaseState::AwaitingIdentity,
        always,
        "Your identity: a one-time code or your service password.",
        "核验身份：验证码或服务密码。",
    ),
    stage(
        CaseState::IdentityReview,
        on_exception,
        "An agent checks your identity by hand.",
        "客服人员人工核验您的身份。",
    ),
    stage(
        CaseState::RiskAssessment,
        always,
        "The number's recent use, checked automatically.",
        "自动检查号码近期使用情况。",
    ),
    stage(
        CaseState::SecurityReview,
        reviewed,
        "A security analyst reviews the flagged use and your explanations.",
        "安全人员审核被标记的使用情况及您的说明。",
    ),
    stage(
        CaseState::Provisioning,
        always,
        "The network restores service on the number.",
        "网络侧恢复号码服务。",
    ),
    stage(
        CaseState::ProvisioningFailed,
        on_exception,
        "Technical staff finish a restoration the network did not complete.",
        "技术人员处理未完成的恢复操作。",
    ),
    stage(
        CaseState::PartiallyReactivated,
        on_exception,
        "Security decides on full service after incoming service was restored.",
        "已恢复来电和短信接收，安全人员决定是否恢复全部服务。",
    ),
];

/// The stage of `state`, if a department works it.
pub fn stage_of(state: CaseState) -> Option<&'static Stage> {
    STAGES.iter().find(|s| s.state == state)
}

/// Where a stage stands for a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepStatus {
    /// The case passed it.
    Done,
    /// The case is in it (or waits on the subscriber for it).
    Current,
    /// Still ahead.
    Ahead,
}

impl StepStatus {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Current => "current",
            Self::Ahead => "ahead",
        }
    }
}

/// Where a typical stage time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypicalSource {
    /// The median of recent cases ([`MIN_SAMPLES`] or more left the stage).
    Live,
    /// Too few samples: the stage's SLA.
    Sla,
}

impl TypicalSource {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Sla => "sla",
        }
    }
}

/// One stage of a case's route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// The stage's state.
    pub state: CaseState,
    /// The department working it.
    pub department: Option<Department>,
    /// Done, current or ahead.
    pub status: StepStatus,
    /// Its typical time and where that comes from; `None` when neither enough
    /// recent cases nor an SLA say (the subscriber's own step).
    pub typical: Option<(Duration, TypicalSource)>,
}

/// The typical time of a stage: the median of recent cases when at least
/// [`MIN_SAMPLES`] left it, else the configured SLA.
pub fn typical_time(
    state: CaseState,
    config: &SlaConfig,
    stats: &LiveStats,
) -> Option<(Duration, TypicalSource)> {
    let live = stats.stages.get(&state).copied().unwrap_or_default();
    match live.median {
        Some(median) if live.samples >= MIN_SAMPLES => Some((
            median.max(Duration::zero()).min(crate::eta::max_stage()),
            TypicalSource::Live,
        )),
        _ => config.stage_sla(state).map(|d| (d, TypicalSource::Sla)),
    }
}

/// How many transitions each state is from `from` (terminal states are not passed
/// through).
fn distances(from: CaseState) -> BTreeMap<CaseState, usize> {
    let mut seen = BTreeMap::from([(from, 0)]);
    let mut todo = VecDeque::from([from]);
    while let Some(state) = todo.pop_front() {
        let d = seen[&state];
        if state.is_terminal() {
            continue;
        }
        for t in TRANSITIONS.iter().filter(|t| t.from == state) {
            if let std::collections::btree_map::Entry::Vacant(e) = seen.entry(t.to) {
                e.insert(d + 1);
                todo.push_back(t.to);
            }
        }
    }
    seen
}

fn lifecycle_index(state: CaseState) -> usize {
    CaseState::ALL
        .iter()
        .position(|s| *s == state)
        .unwrap_or(usize::MAX)
}

/// The stage a case in `state` is in now: its own, or for a waiting state the one
/// that asked the subscriber.
pub fn current_stage(state: CaseState) -> Option<CaseState> {
    stage_of(state)
        .map(|s| s.state)
        .or_else(|| paused_stage(state))
}

/// The route of a case now in `state`, of risk `tier`, that entered the states of
/// `history` (oldest first; the current state may be among them), with each
/// stage's typical time. A finished case lists only what it passed.
pub fn route(
    state: CaseState,
    tier: Option<RiskTier>,
    history: &[CaseState],
    config: &SlaConfig,
    stats: &LiveStats,
) -> Vec<Step> {
    let current = if state.is_terminal() {
        None
    } else {
        current_stage(state)
    };
    let mut ahead: Vec<(usize, usize, CaseState)> = if state.is_terminal() {
        vec![]
    } else {
        distances(state)
            .into_iter()
            .filter(|(s, _)| Some(*s) != current)
            .filter(|(s, _)| stage_of(*s).is_some_and(|st| (st.on_route)(tier)))
            .map(|(s, d)| (d, lifecycle_index(s), s))
            .collect()
    };
    ahead.sort();
    let mut steps: Vec<Step> = Vec::new();
    let step = |s: CaseState, status| Step {
        state: s,
        department: s.department(),
        status,
        typical: typical_time(s, config, stats),
    };
    for s in history {
        let passed = stage_of(*s).is_some()
            && Some(*s) != current
            && !ahead.iter().any(|(_, _, a)| a == s)
            && !steps.iter().any(|p| p.state == *s);
        if passed {
            steps.push(step(*s, StepStatus::Done));
        }
    }
    if let Some(s) = current {
        steps.push(step(s, StepStatus::Current));
    }
    steps.extend(
        ahead
            .into_iter()
            .map(|(_, _, s)| step(s, StepStatus::Ahead)),
    );
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eta::StageStats;
    use CaseState::*;
    use StepStatus::*;

    fn shape(steps: &[Step]) -> Vec<(CaseState, StepStatus)> {
        steps.iter().map(|s| (s.state, s.status)).collect()
    }

    #[test]
    fn the_route_follows_the_state_machine_and_the_tier() {
        let c = SlaConfig::default();
        let none = LiveStats::default();
        type Row = (
            CaseState,
            Option<RiskTier>,
            &'static [CaseState],
            &'static [(CaseState, StepStatus)],
        );
        let table: &[Row] = &[
            // A clean, low-risk case: identity, risk check, network.
            (
                AwaitingIdentity,
                Some(RiskTier::Low),
                &[AwaitingIdentity],
                &[
                    (AwaitingIdentity, Current),
                    (RiskAssessment, Ahead),
                    (Provisioning, Ahead),
                ],
            ),
            // Not graded yet: no security review planned.
            (
                AwaitingIdentity,
                None,
                &[AwaitingIdentity],
                &[
                    (AwaitingIdentity, Current),
                    (RiskAssessment, Ahead),
                    (Provisioning, Ahead),
                ],
            ),
            // Medium risk passes a security analyst before the network.
            (
                RiskAssessment,
                Some(RiskTier::Medium),
                &[AwaitingIdentity, RiskAssessment],
                &[
                    (AwaitingIdentity, Done),
                    (RiskAssessment, Current),
                    (SecurityReview, Ahead),
                    (Provisioning, Ahead),
                ],
            ),
            // Escalated identity: the manual check is on the route because it was passed.
            (
                SecurityReview,
                Some(RiskTier::High),
                &[
                    AwaitingIdentity,
                    IdentityReview,
                    RiskAssessment,
                    SecurityReview,
                ],
                &[
                    (AwaitingIdentity, Done),
                    (IdentityReview, Done),
                    (RiskAssessment, Done),
                    (SecurityReview, Current),
                    (Provisioning, Ahead),
                ],
            ),
            // Waiting on the subscriber: the stage that asked is current.
            (
                AwaitingCustomerSecurity,
                Some(RiskTier::Medium),
                &[
                    AwaitingIdentity,
                    RiskAssessment,
                    SecurityReview,
                    AwaitingCustomerSecurity,
                ],
                &[
                    (AwaitingIdentity, Done),
                    (RiskAssessment, Done),
                    (SecurityReview, Current),
                    (Provisioning, Ahead),
                ],
            ),
            // A failed order is its own stage, then the network again.
            (
                ProvisioningFailed,
                Some(RiskTier::Low),
                &[
                    AwaitingIdentity,
                    RiskAssessment,
                    Provisioning,
                    ProvisioningFailed,
                ],
                &[
                    (AwaitingIdentity, Done),
                    (RiskAssessment, Done),
                    (ProvisioningFailed, Current),
                    (Provisioning, Ahead),
                ],
            ),
            // Finished: only what it passed.
            (
                Reactivated,
                Some(RiskTier::Low),
                &[AwaitingIdentity, RiskAssessment, Provisioning, Reactivated],
                &[
                    (AwaitingIdentity, Done),
                    (RiskAssessment, Done),
                    (Provisioning, Done),
                ],
            ),
            // Refused: an appeal goes back through security and the network.
            (
                Rejected,
                Some(RiskTier::High),
                &[AwaitingIdentity, RiskAssessment, SecurityReview, Rejected],
                &[
                    (AwaitingIdentity, Done),
                    (RiskAssessment, Done),
                    (SecurityReview, Ahead),
                    (Provisioning, Ahead),
                ],
            ),
        ];
        for (state, tier, history, expected) in table {
            let steps = route(*state, *tier, history, &c, &none);
            assert_eq!(shape(&steps), expected.to_vec(), "{state} {tier:?}");
            for s in &steps {
                assert_eq!(s.department, s.state.department(), "{state}");
            }
        }
    }

    #[test]
    fn typical_times_are_live_medians_or_the_slas() {
        let c = SlaConfig::default();
        let mut live = LiveStats::default();
        live.stages.insert(
            SecurityReview,
            StageStats {
                median: Some(Duration::hours(3)),
                samples: MIN_SAMPLES,
                ..Default::default()
            },
        );
        live.stages.insert(
            Provisioning,
            StageStats {
                median: Some(Duration::seconds(20)),
                samples: MIN_SAMPLES - 1,
                ..Default::default()
            },
        );
        let table: &[(CaseState, Option<(Duration, TypicalSource)>)] = &[
            (
                SecurityReview,
                Some((Duration::hours(3), TypicalSource::Live)),
            ),
            // Too few samples: the SLA.
            (
                Provisioning,
                Some((Duration::minutes(30), TypicalSource::Sla)),
            ),
            (
                IdentityReview,
                Some((Duration::hours(4), TypicalSource::Sla)),
            ),
            // The subscriber's own step has no SLA and no data.
            (AwaitingIdentity, None),
        ];
        for (state, expected) in table {
            assert_eq!(typical_time(*state, &c, &live), *expected, "{state}");
        }
    }

    #[test]
    fn every_stage_is_worked_by_a_department_and_says_what_it_checks() {
        for s in STAGES {
            assert!(
                s.department().is_some_and(|d| d != Department::Subscriber),
                "{}",
                s.state
            );
            assert!(!s.checks_en.is_empty() && s.checks_en.is_ascii());
            assert!(!s.checks_zh.is_empty() && !s.checks_zh.is_ascii());
            assert_eq!(stage_of(s.state).map(|x| x.state), Some(s.state));
        }
        // Every state a department owns (other than terminal ones) is a stage.
        for state in CaseState::ALL {
            let worked = state
                .department()
                .is_some_and(|d| d != Department::Subscriber);
            assert_eq!(stage_of(state).is_some(), worked, "{state}");
        }
    }
}
