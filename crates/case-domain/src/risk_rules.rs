//! The thresholds of the risk rules as versioned configuration, and the replay of
//! assessed history under a proposed set of thresholds.
//!
//! Three rules grade a count each (fraud-linked contacts, peak SMS per hour,
//! international calls in 24 hours): at or above its `medium` threshold a rule calls
//! for the medium tier, at or above `high` for the high tier; `highs_for_extreme`
//! rules at high together make the case extreme. The confirmed-fraud rule (the
//! carrier's suspension reason) has no threshold. [`RiskThresholds::default`] is the
//! first version of the rules; supervisors change them (the store keeps every
//! version, who made it and why), and [`replay`] tells them beforehand what a
//! proposal would have done to the cases already assessed.

use serde::{Deserialize, Serialize};

use crate::risk::{ReasonCode, RiskSignals, RiskTier, assess_with};

/// The thresholds of one graded rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleThresholds {
    /// From this count on the rule calls for the medium tier (at least 1).
    pub medium: u32,
    /// From this count on the rule calls for the high tier (at least `medium`).
    pub high: u32,
}

impl RuleThresholds {
    /// The tier this rule calls for at `value`, if it fires.
    pub fn grade(self, value: u32) -> Option<RiskTier> {
        if value >= self.high {
            Some(RiskTier::High)
        } else if value >= self.medium {
            Some(RiskTier::Medium)
        } else {
            None
        }
    }
}

/// The thresholds of every graded rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskThresholds {
    /// Recent counterparties linked to reported fraud (`fraud_linked_contacts`).
    pub fraud_linked_contacts: RuleThresholds,
    /// Peak SMS sent in one hour (`bulk_sms`).
    pub bulk_sms: RuleThresholds,
    /// International calls in the last 24 hours (`international_calls`).
    pub international_calls: RuleThresholds,
    /// How many rules at high together make the case extreme (1 to 3).
    pub highs_for_extreme: u32,
}

impl Default for RiskThresholds {
    /// The rules' first version.
    fn default() -> Self {
        Self {
            fraud_linked_contacts: RuleThresholds { medium: 1, high: 3 },
            bulk_sms: RuleThresholds {
                medium: 100,
                high: 500,
            },
            international_calls: RuleThresholds {
                medium: 10,
                high: 50,
            },
            highs_for_extreme: 3,
        }
    }
}

/// The graded rules, in the order they are checked and reported.
pub const GRADED_RULES: [ReasonCode; 3] = [
    ReasonCode::FraudLinkedContacts,
    ReasonCode::BulkSms,
    ReasonCode::InternationalCalls,
];

/// The largest `high` threshold a graded rule accepts: a threshold above it would
/// switch the rule off in practice, which is not a tuning but a removal.
pub fn max_high(rule: ReasonCode) -> u32 {
    match rule {
        ReasonCode::FraudLinkedContacts => 1_000,
        ReasonCode::BulkSms => 100_000,
        ReasonCode::InternationalCalls => 10_000,
        ReasonCode::ConfirmedFraud => 0,
    }
}

/// Why a set of thresholds is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// A rule's medium threshold is 0: it would fire on every number.
    #[error("the medium threshold must be at least 1")]
    MediumBelowOne {
        /// The rule.
        rule: ReasonCode,
    },
    /// A rule's medium threshold is above its high threshold.
    #[error("the medium threshold ({medium}) must not be above the high threshold ({high})")]
    MediumAboveHigh {
        /// The rule.
        rule: ReasonCode,
        /// Its medium threshold.
        medium: u32,
        /// Its high threshold.
        high: u32,
    },
    /// A rule's high threshold is above the rule's bound.
    #[error("the high threshold ({high}) must be at most {max}")]
    HighAboveBound {
        /// The rule.
        rule: ReasonCode,
        /// Its high threshold.
        high: u32,
        /// The bound ([`max_high`]).
        max: u32,
    },
    /// The number of highs that make a case extreme is not between 1 and 3.
    #[error(
        "the number of rules at high that make a case extreme must be between 1 and 3, not {0}"
    )]
    HighsForExtreme(u32),
}

impl ThresholdError {
    /// The field it is about, as named in the API (`thresholds.bulk_sms.medium`).
    pub fn field(&self) -> String {
        match self {
            Self::MediumBelowOne { rule } | Self::MediumAboveHigh { rule, .. } => {
                format!("thresholds.{}.medium", rule.as_str())
            }
            Self::HighAboveBound { rule, .. } => format!("thresholds.{}.high", rule.as_str()),
            Self::HighsForExtreme(_) => "thresholds.highs_for_extreme".into(),
        }
    }
}

impl RiskThresholds {
    /// The thresholds of a graded rule (`None` for the confirmed-fraud rule).
    pub fn rule(&self, rule: ReasonCode) -> Option<RuleThresholds> {
        match rule {
            ReasonCode::FraudLinkedContacts => Some(self.fraud_linked_contacts),
            ReasonCode::BulkSms => Some(self.bulk_sms),
            ReasonCode::InternationalCalls => Some(self.international_calls),
            ReasonCode::ConfirmedFraud => None,
        }
    }

    /// Every reason these thresholds are refused (empty when they are acceptable).
    pub fn problems(&self) -> Vec<ThresholdError> {
        let mut problems = Vec::new();
        for rule in GRADED_RULES {
            let Some(t) = self.rule(rule) else { continue };
            if t.medium < 1 {
                problems.push(ThresholdError::MediumBelowOne { rule });
            } else if t.medium > t.high {
                problems.push(ThresholdError::MediumAboveHigh {
                    rule,
                    medium: t.medium,
                    high: t.high,
                });
            }
            if t.high > max_high(rule) {
                problems.push(ThresholdError::HighAboveBound {
                    rule,
                    high: t.high,
                    max: max_high(rule),
                });
            }
        }
        if !(1..=GRADED_RULES.len()).contains(&(self.highs_for_extreme as usize)) {
            problems.push(ThresholdError::HighsForExtreme(self.highs_for_extreme));
        }
        problems
    }

    /// These thresholds, if acceptable; otherwise every reason they are not.
    pub fn validated(self) -> Result<Self, Vec<ThresholdError>> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(problems)
        }
    }

    /// The graded rules whose thresholds differ from `other`'s.
    pub fn changed_rules(&self, other: &Self) -> Vec<ReasonCode> {
        GRADED_RULES
            .into_iter()
            .filter(|r| self.rule(*r) != other.rule(*r))
            .collect()
    }
}

/// One assessment of history, as replayed: the signals it was graded on, the tier
/// and reasons it recorded, and the reason codes an analyst labelled false positives
/// on its case (approved after review).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayCase {
    /// The graded signals, as recorded.
    pub signals: RiskSignals,
    /// The recorded tier.
    pub tier: RiskTier,
    /// The recorded reasons.
    pub reasons: Vec<ReasonCode>,
    /// The reason codes labelled false positives.
    pub false_positives: Vec<ReasonCode>,
}

/// One rule's part of a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RuleReplay {
    /// The rule.
    pub reason: ReasonCode,
    /// Assessments it fired in, as recorded.
    pub fired_recorded: u64,
    /// Assessments it would fire in under the proposal.
    pub fired_proposed: u64,
    /// Its labelled false positives.
    pub false_positives: u64,
    /// Of those, the ones the proposal no longer fires it for.
    pub false_positives_passing: u64,
}

/// What a proposal would have done to the replayed assessments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Assessments replayed.
    pub assessments: u64,
    /// Of those, flagged (above low) as recorded.
    pub flagged_recorded: u64,
    /// Of those, flagged under the proposal.
    pub flagged_proposed: u64,
    /// Low as recorded, flagged under the proposal.
    pub newly_flagged: u64,
    /// Flagged as recorded, low under the proposal.
    pub cleared: u64,
    /// Assessments whose case has at least one labelled false positive.
    pub false_positive_cases: u64,
    /// Of those, the ones that would be low under the proposal (would have passed
    /// without review).
    pub false_positive_cases_passing: u64,
    /// Per rule (every reason code, in [`ReasonCode::ALL`] order).
    pub rules: Vec<RuleReplay>,
}

impl ReplayReport {
    /// Nothing replayed yet.
    pub fn empty() -> Self {
        Self {
            assessments: 0,
            flagged_recorded: 0,
            flagged_proposed: 0,
            newly_flagged: 0,
            cleared: 0,
            false_positive_cases: 0,
            false_positive_cases_passing: 0,
            rules: ReasonCode::ALL
                .into_iter()
                .map(|reason| RuleReplay {
                    reason,
                    fired_recorded: 0,
                    fired_proposed: 0,
                    false_positives: 0,
                    false_positives_passing: 0,
                })
                .collect(),
        }
    }

    /// Grades one assessment again under `proposal` and counts it.
    pub fn add(&mut self, case: &ReplayCase, proposal: &RiskThresholds) {
        let proposed = assess_with(&case.signals, proposal);
        let was_flagged = case.tier > RiskTier::Low;
        let is_flagged = proposed.tier > RiskTier::Low;
        self.assessments += 1;
        self.flagged_recorded += u64::from(was_flagged);
        self.flagged_proposed += u64::from(is_flagged);
        self.newly_flagged += u64::from(!was_flagged && is_flagged);
        self.cleared += u64::from(was_flagged && !is_flagged);
        if !case.false_positives.is_empty() {
            self.false_positive_cases += 1;
            self.false_positive_cases_passing += u64::from(!is_flagged);
        }
        for line in &mut self.rules {
            let fires = proposed.reasons.contains(&line.reason);
            line.fired_recorded += u64::from(case.reasons.contains(&line.reason));
            line.fired_proposed += u64::from(fires);
            if case.false_positives.contains(&line.reason) {
                line.false_positives += 1;
                line.false_positives_passing += u64::from(!fires);
            }
        }
    }
}

/// Grades every replayed assessment again under `proposal` and counts what changes.
pub fn replay<'a>(
    cases: impl IntoIterator<Item = &'a ReplayCase>,
    proposal: &RiskThresholds,
) -> ReplayReport {
    let mut report = ReplayReport::empty();
    for case in cases {
        report.add(case, proposal);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::assess;

    fn t(medium: u32, high: u32) -> RuleThresholds {
        RuleThresholds { medium, high }
    }

    fn signals(fraud: u32, sms: u32, intl: u32, reason: Option<&str>) -> RiskSignals {
        RiskSignals {
            fraud_linked_contacts: fraud,
            sms_peak_per_hour: sms,
            intl_calls_24h: intl,
            suspension_reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn the_default_is_the_first_version_of_the_rules() {
        let d = RiskThresholds::default();
        assert_eq!(d.fraud_linked_contacts, t(1, 3));
        assert_eq!(d.bulk_sms, t(100, 500));
        assert_eq!(d.international_calls, t(10, 50));
        assert_eq!(d.highs_for_extreme, 3);
        assert_eq!(d.validated(), Ok(d));
        assert_eq!(d.rule(ReasonCode::ConfirmedFraud), None);
    }

    #[test]
    fn the_stored_shape_is_stable_and_strict() {
        let json = serde_json::json!({
            "fraud_linked_contacts": {"medium": 1, "high": 3},
            "bulk_sms": {"medium": 100, "high": 500},
            "international_calls": {"medium": 10, "high": 50},
            "highs_for_extreme": 3,
        });
        assert_eq!(
            serde_json::to_value(RiskThresholds::default()).unwrap(),
            json
        );
        assert_eq!(
            serde_json::from_value::<RiskThresholds>(json.clone()).unwrap(),
            RiskThresholds::default()
        );
        let mut extra = json.clone();
        extra["bulk_sms"]["low"] = 5.into();
        assert!(serde_json::from_value::<RiskThresholds>(extra).is_err());
        let mut missing = json;
        missing.as_object_mut().unwrap().remove("highs_for_extreme");
        assert!(serde_json::from_value::<RiskThresholds>(missing).is_err());
    }

    #[test]
    fn validation_names_every_problem_and_its_field() {
        use ReasonCode::*;
        let d = RiskThresholds::default();
        let cases: Vec<(RiskThresholds, Vec<(ThresholdError, &str)>)> = vec![
            (d, vec![]),
            // Equal medium and high: a rule that goes straight to high is allowed.
            (
                RiskThresholds {
                    bulk_sms: t(500, 500),
                    ..d
                },
                vec![],
            ),
            (
                RiskThresholds {
                    fraud_linked_contacts: t(0, 3),
                    ..d
                },
                vec![(
                    ThresholdError::MediumBelowOne {
                        rule: FraudLinkedContacts,
                    },
                    "thresholds.fraud_linked_contacts.medium",
                )],
            ),
            (
                RiskThresholds {
                    bulk_sms: t(600, 500),
                    ..d
                },
                vec![(
                    ThresholdError::MediumAboveHigh {
                        rule: BulkSms,
                        medium: 600,
                        high: 500,
                    },
                    "thresholds.bulk_sms.medium",
                )],
            ),
            (
                RiskThresholds {
                    international_calls: t(10, 10_001),
                    ..d
                },
                vec![(
                    ThresholdError::HighAboveBound {
                        rule: InternationalCalls,
                        high: 10_001,
                        max: 10_000,
                    },
                    "thresholds.international_calls.high",
                )],
            ),
            (
                RiskThresholds {
                    international_calls: t(10, 10_000),
                    fraud_linked_contacts: t(1, 1_000),
                    bulk_sms: t(1, 100_000),
                    ..d
                },
                vec![],
            ),
            (
                RiskThresholds {
                    highs_for_extreme: 0,
                    ..d
                },
                vec![(
                    ThresholdError::HighsForExtreme(0),
                    "thresholds.highs_for_extreme",
                )],
            ),
            (
                RiskThresholds {
                    highs_for_extreme: 4,
                    ..d
                },
                vec![(
                    ThresholdError::HighsForExtreme(4),
                    "thresholds.highs_for_extreme",
                )],
            ),
            // Several at once: all of them, in rule order.
            (
                RiskThresholds {
                    fraud_linked_contacts: t(0, 2_000),
                    bulk_sms: t(7, 6),
                    international_calls: t(10, 50),
                    highs_for_extreme: 9,
                },
                vec![
                    (
                        ThresholdError::MediumBelowOne {
                            rule: FraudLinkedContacts,
                        },
                        "thresholds.fraud_linked_contacts.medium",
                    ),
                    (
                        ThresholdError::HighAboveBound {
                            rule: FraudLinkedContacts,
                            high: 2_000,
                            max: 1_000,
                        },
                        "thresholds.fraud_linked_contacts.high",
                    ),
                    (
                        ThresholdError::MediumAboveHigh {
                            rule: BulkSms,
                            medium: 7,
                            high: 6,
                        },
                        "thresholds.bulk_sms.medium",
                    ),
                    (
                        ThresholdError::HighsForExtreme(9),
                        "thresholds.highs_for_extreme",
                    ),
                ],
            ),
        ];
        for (thresholds, expected) in cases {
            let problems = thresholds.problems();
            let got: Vec<(ThresholdError, String)> =
                problems.iter().map(|p| (*p, p.field())).collect();
            let want: Vec<(ThresholdError, String)> = expected
                .iter()
                .map(|(p, f)| (*p, (*f).to_owned()))
                .collect();
            assert_eq!(got, want, "{thresholds:?}");
            assert_eq!(thresholds.validated().is_ok(), expected.is_empty());
            for p in problems {
                assert!(!p.to_string().is_empty());
            }
        }
    }

    #[test]
    fn assess_is_assess_with_the_default() {
        for f in [0, 1, 2, 3, 4] {
            for s in [0, 99, 100, 499, 500, 2_000] {
                for i in [0, 9, 10, 49, 50] {
                    for reason in [None, Some("court_order"), Some("unusual_activity")] {
                        let x = signals(f, s, i, reason);
                        assert_eq!(assess(&x), assess_with(&x, &RiskThresholds::default()));
                    }
                }
            }
        }
    }

    #[test]
    fn assess_with_follows_the_thresholds() {
        use ReasonCode::*;
        use RiskTier::*;
        let d = RiskThresholds::default();
        let lenient = RiskThresholds {
            fraud_linked_contacts: t(3, 5),
            bulk_sms: t(400, 1_000),
            international_calls: t(20, 60),
            highs_for_extreme: 3,
        };
        let two_highs = RiskThresholds {
            highs_for_extreme: 2,
            ..d
        };
        let cases: &[(RiskThresholds, RiskSignals, RiskTier, &[ReasonCode])] = &[
            (lenient, signals(2, 300, 15, None), Low, &[]),
            (
                lenient,
                signals(3, 300, 15, None),
                Medium,
                &[FraudLinkedContacts],
            ),
            (
                lenient,
                signals(5, 400, 20, None),
                High,
                &[FraudLinkedContacts, BulkSms, InternationalCalls],
            ),
            (
                lenient,
                signals(0, 0, 0, Some("confirmed_fraud")),
                Extreme,
                &[ConfirmedFraud],
            ),
            (
                two_highs,
                signals(3, 500, 0, None),
                Extreme,
                &[FraudLinkedContacts, BulkSms],
            ),
            (
                two_highs,
                signals(3, 499, 0, None),
                High,
                &[FraudLinkedContacts, BulkSms],
            ),
            (
                RiskThresholds {
                    highs_for_extreme: 1,
                    ..d
                },
                signals(0, 0, 50, None),
                Extreme,
                &[InternationalCalls],
            ),
            (
                RiskThresholds {
                    bulk_sms: t(200, 200),
                    ..d
                },
                signals(0, 200, 0, None),
                High,
                &[BulkSms],
            ),
        ];
        for (thresholds, s, tier, reasons) in cases {
            let a = assess_with(s, thresholds);
            assert_eq!(
                (a.tier, a.reasons.as_slice()),
                (*tier, *reasons),
                "{s:?} under {thresholds:?}"
            );
        }
    }

    fn case(
        s: RiskSignals,
        thresholds: &RiskThresholds,
        false_positives: &[ReasonCode],
    ) -> ReplayCase {
        let a = assess_with(&s, thresholds);
        ReplayCase {
            signals: s,
            tier: a.tier,
            reasons: a.reasons,
            false_positives: false_positives.to_vec(),
        }
    }

    #[test]
    fn replay_counts_by_hand() {
        use ReasonCode::*;
        let d = RiskThresholds::default();
        let history = [
            // 0: clean, stays clean.
            case(signals(0, 0, 0, None), &d, &[]),
            // 1: medium on all three; approved (all three labelled).
            case(
                signals(2, 300, 15, None),
                &d,
                &[FraudLinkedContacts, BulkSms, InternationalCalls],
            ),
            // 2: medium on SMS only; approved.
            case(signals(0, 150, 0, None), &d, &[BulkSms]),
            // 3: high on fraud contacts; not approved.
            case(signals(4, 0, 0, None), &d, &[]),
            // 4: confirmed fraud: no threshold moves it.
            case(signals(0, 0, 0, Some("police_request")), &d, &[]),
            // 5: clean under the default, flagged by the proposal.
            case(signals(0, 80, 0, None), &d, &[]),
            // 6: medium on international calls; approved.
            case(signals(0, 0, 12, None), &d, &[InternationalCalls]),
        ];
        // Raise the SMS thresholds (bursts of 80, 150 and 300 pass) and lower the
        // international ones (the calls of cases 1 and 6 still fire, at medium).
        let proposal = RiskThresholds {
            bulk_sms: t(400, 800),
            international_calls: t(5, 50),
            ..d
        };
        let report = replay(&history, &proposal);
        // Under the proposal: 0 low; 1 medium (fraud 2, intl 15); 2 low; 3 high;
        // 4 extreme; 5 low; 6 medium (intl 12).
        assert_eq!(report.assessments, 7);
        assert_eq!(report.flagged_recorded, 5); // 1, 2, 3, 4, 6
        assert_eq!(report.flagged_proposed, 4); // 1, 3, 4, 6
        assert_eq!(report.newly_flagged, 0);
        assert_eq!(report.cleared, 1); // 2
        assert_eq!(report.false_positive_cases, 3); // 1, 2, 6
        assert_eq!(report.false_positive_cases_passing, 1); // 2
        let line = |r: ReasonCode| *report.rules.iter().find(|l| l.reason == r).unwrap();
        assert_eq!(
            line(BulkSms),
            RuleReplay {
                reason: BulkSms,
                fired_recorded: 2,
                fired_proposed: 0,
                false_positives: 2,
                false_positives_passing: 2,
            }
        );
        assert_eq!(
            line(FraudLinkedContacts),
            RuleReplay {
                reason: FraudLinkedContacts,
                fired_recorded: 2,
                fired_proposed: 2,
                false_positives: 1,
                false_positives_passing: 0,
            }
        );
        assert_eq!(
            line(InternationalCalls),
            RuleReplay {
                reason: InternationalCalls,
                fired_recorded: 2,
                fired_proposed: 2,
                false_positives: 2,
                false_positives_passing: 0,
            }
        );
        assert_eq!(
            line(ConfirmedFraud),
            RuleReplay {
                reason: ConfirmedFraud,
                fired_recorded: 1,
                fired_proposed: 1,
                false_positives: 0,
                false_positives_passing: 0,
            }
        );
        assert_eq!(
            report.rules.iter().map(|l| l.reason).collect::<Vec<_>>(),
            ReasonCode::ALL
        );

        // A stricter proposal flags the 80-SMS number.
        let strict = RiskThresholds {
            bulk_sms: t(50, 500),
            ..d
        };
        let report = replay(&history, &strict);
        assert_eq!(
            (
                report.flagged_proposed,
                report.newly_flagged,
                report.cleared
            ),
            (6, 1, 0)
        );
        assert_eq!(report.false_positive_cases_passing, 0);
    }

    #[test]
    fn replaying_under_the_recorded_thresholds_changes_nothing() {
        let d = RiskThresholds::default();
        let history: Vec<ReplayCase> = [(0, 0, 0), (1, 0, 0), (3, 500, 50), (0, 99, 10)]
            .into_iter()
            .map(|(f, s, i)| case(signals(f, s, i, None), &d, &[]))
            .collect();
        let report = replay(&history, &d);
        assert_eq!(report.flagged_recorded, report.flagged_proposed);
        assert_eq!((report.newly_flagged, report.cleared), (0, 0));
        assert!(
            report
                .rules
                .iter()
                .all(|l| l.fired_recorded == l.fired_proposed)
        );
        let empty = replay(&[], &d);
        assert_eq!(empty.assessments, 0);
        assert_eq!(empty.rules.len(), ReasonCode::ALL.len());
    }
}
