//! How long each kind of personal data is kept after a case ends (PIPL Art. 19:
//! no longer than the purpose needs; Art. 47: deleted once the purpose is served
//! or the retention period ends), read from `REACTIVATION_RETENTION_*_DAYS`.
//!
//! The periods count from the case's end (when it entered its terminal state; a
//! terminal state is never left). The defaults and their reasons are in
//! docs/operations.md. Pure: no I/O, no clock.

use chrono::{DateTime, Duration, Utc};

use crate::sla::SlaConfigError;

/// A kind of data with its own retention period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataKind {
    /// The claimed name and ID number (destroyed with the case's data key) and
    /// their masked forms.
    Identity,
    /// Uploaded evidence files.
    Evidence,
    /// The subscriber's explanations (naming third parties' numbers) and the
    /// appeal statement.
    Explanations,
    /// One-time code rows (keyed hashes, masked contact, counters).
    Codes,
    /// Agents' sessions, after they end (pruned by the history pruning).
    Sessions,
    /// Delivered subscriber messages in the outbox (pruned by the history pruning).
    DeliveredMessages,
    /// Carrier webhooks and outbound delivery logs (pruned by the history pruning).
    WebhookLogs,
}

impl DataKind {
    /// Every kind, in the order the retention pass deletes the per-case ones.
    pub const ALL: [DataKind; 7] = [
        Self::Codes,
        Self::Explanations,
        Self::Evidence,
        Self::Identity,
        Self::Sessions,
        Self::DeliveredMessages,
        Self::WebhookLogs,
    ];

    /// The kinds held per case that the retention pass deletes (the others are
    /// pruned by the history pruning, which reads their periods from this policy).
    pub const PER_CASE: [DataKind; 4] = [
        Self::Codes,
        Self::Explanations,
        Self::Evidence,
        Self::Identity,
    ];

    /// The snake_case name (metrics label, `retention_cursors.kind`, CLI output).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Evidence => "evidence",
            Self::Explanations => "explanations",
            Self::Codes => "codes",
            Self::Sessions => "sessions",
            Self::DeliveredMessages => "delivered_messages",
            Self::WebhookLogs => "webhook_logs",
        }
    }

    /// The environment variable holding its period in days.
    pub fn variable(self) -> String {
        format!(
            "REACTIVATION_RETENTION_{}_DAYS",
            self.as_str().to_ascii_uppercase()
        )
    }

    /// The default period in days (reasons in docs/operations.md).
    pub fn default_days(self) -> i64 {
        match self {
            Self::Identity => 730,
            Self::Evidence => 180,
            Self::Explanations => 180,
            Self::Codes => 30,
            Self::Sessions => 90,
            Self::DeliveredMessages => 90,
            Self::WebhookLogs => 30,
        }
    }
}

/// The longest period accepted (100 years): anything longer is a typo.
pub const MAX_DAYS: i64 = 36_500;

/// The retention period of every kind of data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    days: [i64; 7],
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            days: DataKind::ALL.map(DataKind::default_days),
        }
    }
}

impl RetentionPolicy {
    fn index(kind: DataKind) -> usize {
        DataKind::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("every kind is in ALL")
    }

    /// Reads `REACTIVATION_RETENTION_<KIND>_DAYS` through `lookup` (unset or blank:
    /// the default). Each is a whole number of days from 1 to [`MAX_DAYS`]; errors
    /// name the variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SlaConfigError> {
        let mut policy = Self::default();
        for kind in DataKind::ALL {
            let variable = kind.variable();
            let Some(raw) = lookup(&variable).filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            let days = raw
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|d| (1..=MAX_DAYS).contains(d))
                .ok_or_else(|| SlaConfigError {
                    variable: variable.clone(),
                    problem: format!("must be a whole number of days from 1 to {MAX_DAYS}"),
                })?;
            policy.days[Self::index(kind)] = days;
        }
        Ok(policy)
    }

    /// The same policy with `kind` kept `days` days (tests; 1 to [`MAX_DAYS`]).
    pub fn with_days(mut self, kind: DataKind, days: i64) -> Self {
        self.days[Self::index(kind)] = days.clamp(1, MAX_DAYS);
        self
    }

    /// How long `kind` is kept after a case ends.
    pub fn period(&self, kind: DataKind) -> Duration {
        Duration::days(self.days[Self::index(kind)])
    }

    /// The period in days.
    pub fn days(&self, kind: DataKind) -> i64 {
        self.days[Self::index(kind)]
    }

    /// Cases that ended at or before this time have had `kind` kept long enough.
    pub fn cutoff(&self, kind: DataKind, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.period(kind)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn policy(pairs: &[(&str, &str)]) -> Result<RetentionPolicy, SlaConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RetentionPolicy::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_overrides_and_cutoffs() {
        let p = policy(&[]).unwrap();
        assert_eq!(p, RetentionPolicy::default());
        for (kind, days) in [
            (DataKind::Identity, 730),
            (DataKind::Evidence, 180),
            (DataKind::Explanations, 180),
            (DataKind::Codes, 30),
            (DataKind::Sessions, 90),
            (DataKind::DeliveredMessages, 90),
            (DataKind::WebhookLogs, 30),
        ] {
            assert_eq!(p.days(kind), days, "{kind:?}");
        }
        let p = policy(&[
            ("REACTIVATION_RETENTION_IDENTITY_DAYS", " 365 "),
            ("REACTIVATION_RETENTION_WEBHOOK_LOGS_DAYS", "7"),
            ("REACTIVATION_RETENTION_CODES_DAYS", ""),
        ])
        .unwrap();
        assert_eq!(p.period(DataKind::Identity), Duration::days(365));
        assert_eq!(p.days(DataKind::WebhookLogs), 7);
        assert_eq!(p.days(DataKind::Codes), 30);
        let now = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            p.cutoff(DataKind::Identity, now),
            DateTime::parse_from_rfc3339("2029-01-01T00:00:00Z").unwrap()
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("REACTIVATION_RETENTION_IDENTITY_DAYS", "0"),
            ("REACTIVATION_RETENTION_EVIDENCE_DAYS", "-3"),
            ("REACTIVATION_RETENTION_EXPLANATIONS_DAYS", "two years"),
            ("REACTIVATION_RETENTION_SESSIONS_DAYS", "36501"),
            ("REACTIVATION_RETENTION_DELIVERED_MESSAGES_DAYS", "1.5"),
        ] {
            let err = policy(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name);
        }
    }

    #[test]
    fn names_are_stable() {
        let names: Vec<_> = DataKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "codes",
                "explanations",
                "evidence",
                "identity",
                "sessions",
                "delivered_messages",
                "webhook_logs"
            ]
        );
        assert_eq!(
            DataKind::DeliveredMessages.variable(),
            "REACTIVATION_RETENTION_DELIVERED_MESSAGES_DAYS"
        );
    }
}
