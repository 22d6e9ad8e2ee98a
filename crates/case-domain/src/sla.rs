//! SLA clocks and the timers a case gets when it enters a state: reminders while it
//! waits on the subscriber, a deadline that expires (or closes) it, and escalations
//! when a department's stage runs past its SLA.
//!
//! The clock runs only while a department owns the case. It stops while the case
//! waits on the subscriber (`awaiting_*`, `rejected`): time spent answering an
//! information request does not count against the stage that asked, and the stage
//! resumes with what was left of its SLA. A new stage (any other way in) starts a
//! fresh clock. All of this is arithmetic over the case's event history; the store
//! turns the plan into durable timer rows.

use std::{collections::BTreeMap, fmt};

use chrono::{DateTime, Duration, Utc};

use crate::{CaseEvent, CaseState, material::appeal_window, progress::default_stage_sla};

/// The most minutes any configured duration may have (one year).
pub const MAX_MINUTES: i64 = 525_600;

/// A stage that breaches escalates to level 1 at its SLA and to level 2 at this
/// many times its SLA.
pub const SECOND_ESCALATION_FACTOR: i32 = 2;

/// The states where the case waits on the subscriber and may expire, in
/// configuration order.
pub const EXPIRING_STATES: [CaseState; 4] = [
    CaseState::AwaitingIdentity,
    CaseState::AwaitingCustomerIdentity,
    CaseState::AwaitingCustomerSecurity,
    CaseState::AwaitingStoreVisit,
];

/// How long a subscriber asked to visit a store has to come before the case expires
/// (`REACTIVATION_EXPIRY_AWAITING_STORE_VISIT_MINUTES` overrides it); the reminders
/// (`REACTIVATION_REMINDERS_MINUTES`) apply as in every waiting state.
pub fn store_visit_window() -> Duration {
    Duration::days(15)
}

/// The stage a waiting state pauses: the state that asked the subscriber and takes
/// the case back when they answer.
pub fn paused_stage(state: CaseState) -> Option<CaseState> {
    match state {
        CaseState::AwaitingCustomerIdentity => Some(CaseState::IdentityReview),
        CaseState::AwaitingCustomerSecurity => Some(CaseState::SecurityReview),
        _ => None,
    }
}

/// The event a case's deadline causes in `state`: waiting states expire; a refusal
/// nobody appealed closes.
pub fn deadline_event(state: CaseState) -> Option<CaseEvent> {
    match state {
        CaseState::AwaitingIdentity
        | CaseState::AwaitingCustomerIdentity
        | CaseState::AwaitingCustomerSecurity
        | CaseState::AwaitingStoreVisit => Some(CaseEvent::Expired),
        CaseState::Rejected => Some(CaseEvent::Closed),
        _ => None,
    }
}

/// A configuration value is malformed; names the environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaConfigError {
    /// The variable at fault.
    pub variable: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for SlaConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration: {} {}", self.variable, self.problem)
    }
}

impl std::error::Error for SlaConfigError {}

/// Stage SLAs, customer windows and reminders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaConfig {
    stage: BTreeMap<CaseState, Duration>,
    expiry: BTreeMap<CaseState, Duration>,
    reminders: Vec<Duration>,
    complaint_answer: Duration,
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self {
            stage: CaseState::ALL
                .into_iter()
                .filter_map(|s| default_stage_sla(s).map(|d| (s, d)))
                .collect(),
            // A request that has not proven identity lasts a day (it never blocks the
            // number, but should not linger); a subscriber asked for more gets a week;
            // a subscriber asked to visit a store gets [`store_visit_window`].
            expiry: EXPIRING_STATES
                .into_iter()
                .map(|s| {
                    let window = match s {
                        CaseState::AwaitingIdentity => crate::identity::unproven_case_lifetime(),
                        CaseState::AwaitingStoreVisit => store_visit_window(),
                        _ => Duration::days(7),
                    };
                    (s, window)
                })
                .collect(),
            reminders: vec![Duration::hours(24), Duration::hours(48)],
            complaint_answer: crate::complaint::answer_window(),
        }
    }
}

/// `security_review` → `SECURITY_REVIEW`.
fn upper(state: CaseState) -> String {
    state.as_str().to_ascii_uppercase()
}

/// The variable that sets the SLA of a stage.
pub fn sla_variable(state: CaseState) -> String {
    format!("REACTIVATION_SLA_{}_MINUTES", upper(state))
}

/// The variable that sets how long a waiting state lasts before the case expires.
pub fn expiry_variable(state: CaseState) -> String {
    format!("REACTIVATION_EXPIRY_{}_MINUTES", upper(state))
}

/// The variable that lists the reminders (minutes after entering a waiting state).
pub const REMINDERS_VARIABLE: &str = "REACTIVATION_REMINDER_MINUTES";

/// The variable that sets a complaint's answer clock in minutes (default the legal
/// 15 days; tests set 0 so a complaint is overdue at once).
pub const COMPLAINT_ANSWER_VARIABLE: &str = "REACTIVATION_COMPLAINT_ANSWER_MINUTES";

fn minutes(variable: &str, raw: &str) -> Result<Duration, SlaConfigError> {
    let n: i64 = raw.trim().parse().map_err(|_| SlaConfigError {
        variable: variable.into(),
        problem: format!("must be a whole number of minutes, got `{raw}`"),
    })?;
    if !(0..=MAX_MINUTES).contains(&n) {
        return Err(SlaConfigError {
            variable: variable.into(),
            problem: format!("must be between 0 and {MAX_MINUTES} minutes, got {n}"),
        });
    }
    Ok(Duration::minutes(n))
}

impl SlaConfig {
    /// Reads the configuration through `lookup` (the environment, or a map in tests):
    ///
    /// - `REACTIVATION_SLA_<STATE>_MINUTES` for each stage a department owns
    ///   (`IDENTITY_REVIEW`, `RISK_ASSESSMENT`, `SECURITY_REVIEW`, `PROVISIONING`,
    ///   `PROVISIONING_FAILED`, `PARTIALLY_REACTIVATED`);
    /// - `REACTIVATION_EXPIRY_<STATE>_MINUTES` for the waiting states
    ///   (`AWAITING_IDENTITY`, `AWAITING_CUSTOMER_IDENTITY`, `AWAITING_CUSTOMER_SECURITY`);
    /// - `REACTIVATION_REMINDER_MINUTES`: increasing comma-separated minutes, or `none`.
    ///
    /// Unset or empty variables keep the defaults. `0` is allowed (breach or expire
    /// at once), which tests use. An SLA for a state whose clock is stopped is refused.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SlaConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = Self::default();
        for state in CaseState::ALL {
            let variable = sla_variable(state);
            if let Some(raw) = get(&variable) {
                if !config.stage.contains_key(&state) {
                    return Err(SlaConfigError {
                        variable,
                        problem: format!(
                            "is not allowed: {state} has no running clock (the case waits on the subscriber or is finished)"
                        ),
                    });
                }
                config.stage.insert(state, minutes(&variable, &raw)?);
            }
        }
        for state in EXPIRING_STATES {
            let variable = expiry_variable(state);
            if let Some(raw) = get(&variable) {
                config.expiry.insert(state, minutes(&variable, &raw)?);
            }
        }
        if let Some(raw) = get(COMPLAINT_ANSWER_VARIABLE) {
            config.complaint_answer = minutes(COMPLAINT_ANSWER_VARIABLE, &raw)?;
        }
        if let Some(raw) = get(REMINDERS_VARIABLE) {
            config.reminders = if raw.trim().eq_ignore_ascii_case("none") {
                vec![]
            } else {
                raw.split(',')
                    .map(|m| minutes(REMINDERS_VARIABLE, m))
                    .collect::<Result<_, _>>()?
            };
            if config.reminders.len() > 10 || config.reminders.windows(2).any(|w| w[0] >= w[1]) {
                return Err(SlaConfigError {
                    variable: REMINDERS_VARIABLE.into(),
                    problem: "must list at most 10 strictly increasing minute values, or `none`"
                        .into(),
                });
            }
        }
        Ok(config)
    }

    /// The SLA of a stage a department owns; `None` while the clock is stopped.
    pub fn stage_sla(&self, state: CaseState) -> Option<Duration> {
        self.stage.get(&state).copied()
    }

    /// How long the case may stay in `state` before its deadline: the configured
    /// window for waiting states, the appeal window for a refusal.
    pub fn deadline_after(&self, state: CaseState) -> Option<Duration> {
        match state {
            CaseState::Rejected => Some(appeal_window()),
            s => self.expiry.get(&s).copied(),
        }
    }

    /// How long the carrier has to answer a complaint (15 days unless configured).
    pub fn complaint_answer_window(&self) -> Duration {
        self.complaint_answer
    }

    /// Reminders after entering a waiting state (the `awaiting_*` states only).
    pub fn reminders(&self, state: CaseState) -> &[Duration] {
        if EXPIRING_STATES.contains(&state) {
            &self.reminders
        } else {
            &[]
        }
    }
}

/// How much of its SLA the current stage has used at `now`, given the case's
/// history as (state entered, when) pairs, oldest first.
///
/// Counts the time in the current state, plus earlier spells in the same state
/// that were interrupted only by the subscriber answering an information request
/// (the paused state); any other way into the state starts afresh (an appeal gets a
/// new clock).
pub fn stage_elapsed(entries: &[(CaseState, DateTime<Utc>)], now: DateTime<Utc>) -> Duration {
    let Some(&(current, entered)) = entries.last() else {
        return Duration::zero();
    };
    let mut elapsed = (now - entered).max(Duration::zero());
    let mut next_start = entered;
    for &(state, at) in entries[..entries.len() - 1].iter().rev() {
        if paused_stage(state) == Some(current) {
            // Waiting on the subscriber: the clock is stopped.
        } else if state == current {
            elapsed += (next_start - at).max(Duration::zero());
        } else {
            break;
        }
        next_start = at;
    }
    elapsed
}

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// Remind the subscriber (the n-th reminder, from 1).
    Reminder(i16),
    /// The stage breached: raise the case's escalation to this level.
    Escalation(i16),
    /// Expire or close the case ([`deadline_event`]).
    Deadline,
}

impl TimerKind {
    /// The stored kind name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reminder(_) => "reminder",
            Self::Escalation(_) => "escalation",
            Self::Deadline => "deadline",
        }
    }

    /// The stored ordinal (reminder number or escalation level; 1 for the deadline).
    pub fn ordinal(self) -> i16 {
        match self {
            Self::Reminder(n) | Self::Escalation(n) => n,
            Self::Deadline => 1,
        }
    }

    /// Parses the stored pair.
    pub fn parse(name: &str, ordinal: i16) -> Option<Self> {
        match name {
            "reminder" => Some(Self::Reminder(ordinal)),
            "escalation" => Some(Self::Escalation(ordinal)),
            "deadline" => Some(Self::Deadline),
            _ => None,
        }
    }
}

/// A timer to write for a case that just entered a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedTimer {
    /// What it does.
    pub kind: TimerKind,
    /// When it becomes due.
    pub due_at: DateTime<Utc>,
}

/// The timers of a case that entered `state` at `entered_at`, having already used
/// `used` of the stage's SLA (see [`stage_elapsed`]; zero for a fresh stage).
///
/// - a clocked stage: escalation level 1 when its SLA runs out, level 2 at
///   [`SECOND_ESCALATION_FACTOR`] times the SLA;
/// - a waiting state: the reminders, then the deadline (expiry);
/// - a refusal: the deadline (closing) when the appeal window ends;
/// - anything else (terminal states): nothing.
pub fn plan_timers(
    state: CaseState,
    entered_at: DateTime<Utc>,
    used: Duration,
    config: &SlaConfig,
) -> Vec<PlannedTimer> {
    let mut plan = Vec::new();
    if let Some(sla) = config.stage_sla(state) {
        for level in 1..=SECOND_ESCALATION_FACTOR {
            let left = (sla * level - used).max(Duration::zero());
            plan.push(PlannedTimer {
                kind: TimerKind::Escalation(level as i16),
                due_at: entered_at + left,
            });
        }
    }
    let deadline = config
        .deadline_after(state)
        .filter(|_| deadline_event(state).is_some());
    for (i, after) in config.reminders(state).iter().enumerate() {
        // A reminder due when (or after) the case lapses would only precede the notice
        // that it lapsed.
        if deadline.is_some_and(|d| *after >= d) {
            continue;
        }
        plan.push(PlannedTimer {
            kind: TimerKind::Reminder(i as i16 + 1),
            due_at: entered_at + *after,
        });
    }
    if deadline_event(state).is_some()
        && let Some(after) = config.deadline_after(state)
    {
        plan.push(PlannedTimer {
            kind: TimerKind::Deadline,
            due_at: entered_at + after,
        });
    }
    plan
}

/// Whether an escalation raised in `escalated_state` still applies to a case now
/// in `state`: while the stage is worked or paused for the subscriber's answer.
pub fn escalation_applies(escalated_state: CaseState, state: CaseState) -> bool {
    state == escalated_state || paused_stage(state) == Some(escalated_state)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::hours(h)
    }

    fn config(pairs: &[(&str, &str)]) -> Result<SlaConfig, SlaConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SlaConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_stage_slas_and_the_customer_windows() {
        let c = SlaConfig::default();
        for s in CaseState::ALL {
            assert_eq!(c.stage_sla(s), default_stage_sla(s), "{s}");
        }
        // A request that has not proven identity lasts a day (issue 10).
        assert_eq!(
            c.deadline_after(CaseState::AwaitingIdentity),
            Some(Duration::days(1))
        );
        assert_eq!(
            c.deadline_after(CaseState::AwaitingCustomerSecurity),
            Some(Duration::days(7))
        );
        assert_eq!(
            c.deadline_after(CaseState::Rejected),
            Some(Duration::days(15))
        );
        assert_eq!(c.deadline_after(CaseState::SecurityReview), None);
        assert_eq!(
            c.reminders(CaseState::AwaitingCustomerIdentity),
            &[Duration::hours(24), Duration::hours(48)]
        );
        assert!(c.reminders(CaseState::Rejected).is_empty());
        assert_eq!(config(&[]).unwrap(), c);
    }

    #[test]
    fn the_complaint_clock_is_fifteen_days_unless_configured() {
        assert_eq!(
            SlaConfig::default().complaint_answer_window(),
            Duration::days(15)
        );
        let c = config(&[(COMPLAINT_ANSWER_VARIABLE, "0")]).unwrap();
        assert_eq!(c.complaint_answer_window(), Duration::zero());
        let e = config(&[(COMPLAINT_ANSWER_VARIABLE, "-1")]).unwrap_err();
        assert_eq!(e.variable, COMPLAINT_ANSWER_VARIABLE);
        assert!(config(&[(COMPLAINT_ANSWER_VARIABLE, "two weeks")]).is_err());
    }

    #[test]
    fn variables_override_the_defaults() {
        let c = config(&[
            ("REACTIVATION_SLA_SECURITY_REVIEW_MINUTES", "90"),
            ("REACTIVATION_SLA_PROVISIONING_MINUTES", "0"),
            ("REACTIVATION_EXPIRY_AWAITING_IDENTITY_MINUTES", " 1440 "),
            ("REACTIVATION_REMINDER_MINUTES", "60,120,180"),
            ("REACTIVATION_SLA_IDENTITY_REVIEW_MINUTES", ""),
        ])
        .unwrap();
        assert_eq!(
            c.stage_sla(CaseState::SecurityReview),
            Some(Duration::minutes(90))
        );
        assert_eq!(c.stage_sla(CaseState::Provisioning), Some(Duration::zero()));
        assert_eq!(
            c.stage_sla(CaseState::IdentityReview),
            Some(Duration::hours(4))
        );
        assert_eq!(
            c.deadline_after(CaseState::AwaitingIdentity),
            Some(Duration::days(1))
        );
        assert_eq!(c.reminders(CaseState::AwaitingIdentity).len(), 3);
        let none = config(&[("REACTIVATION_REMINDER_MINUTES", "none")]).unwrap();
        assert!(none.reminders(CaseState::AwaitingIdentity).is_empty());
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            ("REACTIVATION_SLA_SECURITY_REVIEW_MINUTES", "ten"),
            ("REACTIVATION_SLA_SECURITY_REVIEW_MINUTES", "-5"),
            ("REACTIVATION_SLA_SECURITY_REVIEW_MINUTES", "9999999"),
            ("REACTIVATION_SLA_AWAITING_IDENTITY_MINUTES", "60"),
            ("REACTIVATION_SLA_REJECTED_MINUTES", "60"),
            (
                "REACTIVATION_EXPIRY_AWAITING_CUSTOMER_SECURITY_MINUTES",
                "1.5",
            ),
            ("REACTIVATION_REMINDER_MINUTES", "120,60"),
            ("REACTIVATION_REMINDER_MINUTES", "60,,120"),
        ];
        for (name, value) in cases {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name, "{value}");
            assert!(
                err.to_string()
                    .starts_with(&format!("configuration: {name} "))
            );
        }
    }

    #[test]
    fn the_clock_counts_only_the_current_stage_and_stops_while_the_subscriber_answers() {
        use CaseState::*;
        let history = [
            (AwaitingIdentity, at(0)),
            (RiskAssessment, at(1)),
            (SecurityReview, at(2)),
            (AwaitingCustomerSecurity, at(12)),
            (SecurityReview, at(40)),
        ];
        // 10 h before the request, 5 h since the answer; the 28 h wait does not count.
        assert_eq!(stage_elapsed(&history, at(45)), Duration::hours(15));
        // Entering: only the earlier spell counts.
        assert_eq!(stage_elapsed(&history, at(40)), Duration::hours(10));
        // While waiting, the waiting state's own time is what "elapsed" means.
        assert_eq!(stage_elapsed(&history[..4], at(20)), Duration::hours(8));
        // An appeal starts a fresh clock: rejected is not a pause.
        let appealed = [
            (SecurityReview, at(0)),
            (Rejected, at(20)),
            (SecurityReview, at(30)),
        ];
        assert_eq!(stage_elapsed(&appealed, at(31)), Duration::hours(1));
        assert_eq!(stage_elapsed(&[], at(3)), Duration::zero());
    }

    #[test]
    fn timer_plans_per_state() {
        use CaseState::*;
        let c = SlaConfig::default();
        let kinds = |s: CaseState| -> Vec<(TimerKind, DateTime<Utc>)> {
            plan_timers(s, at(0), Duration::zero(), &c)
                .into_iter()
                .map(|p| (p.kind, p.due_at))
                .collect()
        };
        assert_eq!(
            kinds(SecurityReview),
            vec![
                (TimerKind::Escalation(1), at(24)),
                (TimerKind::Escalation(2), at(48)),
            ]
        );
        // An unproven request lapses after a day: no reminder is due before that.
        assert_eq!(kinds(AwaitingIdentity), vec![(TimerKind::Deadline, at(24))]);
        for waiting in [AwaitingCustomerIdentity, AwaitingCustomerSecurity] {
            assert_eq!(
                kinds(waiting),
                vec![
                    (TimerKind::Reminder(1), at(24)),
                    (TimerKind::Reminder(2), at(48)),
                    (TimerKind::Deadline, at(24 * 7)),
                ],
                "{waiting}"
            );
        }
        assert_eq!(kinds(Rejected), vec![(TimerKind::Deadline, at(24 * 15))]);
        // A store visit has its own, longer window, with the usual reminders.
        assert_eq!(
            kinds(AwaitingStoreVisit),
            vec![
                (TimerKind::Reminder(1), at(24)),
                (TimerKind::Reminder(2), at(48)),
                (TimerKind::Deadline, at(24 * 15)),
            ]
        );
        for s in CaseState::ALL.into_iter().filter(|s| s.is_terminal()) {
            assert!(kinds(s).is_empty(), "{s}");
        }
        // Every non-terminal state gets at least one timer, so none is forgotten.
        for s in CaseState::ALL.into_iter().filter(|s| !s.is_terminal()) {
            assert!(!kinds(s).is_empty(), "{s}");
        }
        // A resumed stage keeps what it had used; an overused one is due at once.
        let resumed = plan_timers(SecurityReview, at(40), Duration::hours(10), &c);
        assert_eq!(resumed[0].due_at, at(54));
        let overdue = plan_timers(SecurityReview, at(40), Duration::hours(30), &c);
        assert_eq!(
            (overdue[0].due_at, overdue[1].due_at),
            (at(40), at(40 + 18))
        );
    }

    #[test]
    fn deadlines_expire_waiting_cases_and_close_refusals() {
        for s in CaseState::ALL {
            let expected = match s {
                CaseState::AwaitingIdentity
                | CaseState::AwaitingCustomerIdentity
                | CaseState::AwaitingCustomerSecurity
                | CaseState::AwaitingStoreVisit => Some(CaseEvent::Expired),
                CaseState::Rejected => Some(CaseEvent::Closed),
                _ => None,
            };
            assert_eq!(deadline_event(s), expected, "{s}");
            // The system may cause it there.
            if let Some(e) = expected {
                assert!(crate::decide(s, e, crate::Role::System).is_ok(), "{s}");
            }
        }
    }

    #[test]
    fn waiting_states_never_have_a_running_clock() {
        let c = SlaConfig::default();
        for s in CaseState::ALL {
            if s.waits_on_customer() {
                assert_eq!(c.stage_sla(s), None, "{s}");
            }
        }
    }

    #[test]
    fn escalations_follow_the_stage_through_a_pause() {
        use CaseState::*;
        assert!(escalation_applies(SecurityReview, SecurityReview));
        assert!(escalation_applies(SecurityReview, AwaitingCustomerSecurity));
        assert!(!escalation_applies(SecurityReview, Provisioning));
        assert!(!escalation_applies(SecurityReview, Rejected));
        assert!(!escalation_applies(
            IdentityReview,
            AwaitingCustomerSecurity
        ));
    }

    #[test]
    fn timer_kinds_round_trip() {
        for k in [
            TimerKind::Reminder(1),
            TimerKind::Reminder(2),
            TimerKind::Escalation(2),
            TimerKind::Deadline,
        ] {
            assert_eq!(TimerKind::parse(k.name(), k.ordinal()), Some(k));
        }
        assert_eq!(TimerKind::parse("nap", 1), None);
    }
}
