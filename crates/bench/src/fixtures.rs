//! Fresh, valid, synthetic subscribers for one bench run.
//!
//! Every run draws a random four-digit run tag, so a second run against the same stack
//! uses other numbers (one open case per number is the product's rule). Each phase has
//! its own block of numbers, so the phases never share one.

use case_domain::ResidentId;
use chrono::{Days, NaiveDate};
use serde_json::{Value, json};

/// The most cases one phase of a run can have (five digits of the number).
pub const MAX_CASES: u32 = 99_999;

/// Which block of numbers a subscriber comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    /// Registered at the simulator and taken through the whole journey (`+8615…`).
    Journey,
    /// Only opened (and cancelled) through the gateway, never registered (`+8616…`).
    CreateOnly,
    /// Written straight into the scratch database by the raw-SQL baseline (`+8614…`).
    RawSql,
    /// Registered at the simulator without a service password and proven with a one-time
    /// code (the open-loop journeys, `+8619…`).
    Otp,
}

impl Series {
    fn prefix(self) -> &'static str {
        match self {
            Self::Journey => "15",
            Self::CreateOnly => "16",
            Self::RawSql => "14",
            Self::Otp => "19",
        }
    }
}

/// A random run tag (0–9999) that keeps this run's numbers apart from earlier runs'.
pub fn run_tag() -> u16 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u16::from_le_bytes([bytes[0], bytes[1]]) % 10_000
}

/// A synthetic subscriber with valid personal data (all numbers are made up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchSubscriber {
    /// E.164 number, unique per (run tag, series, index).
    pub msisdn: String,
    /// Name.
    pub full_name: String,
    /// 18-character resident ID with a correct check character.
    pub id_number: String,
    /// Service password registered at the simulator.
    pub password: String,
    /// Backup SMS contact on file.
    pub backup_sms: String,
    /// Recent call counterparties.
    pub recent: Vec<String>,
}

impl BenchSubscriber {
    /// Subscriber number `index` (at most [`MAX_CASES`]) of `series` in the run `run_tag`.
    pub fn new(run_tag: u16, series: Series, index: u32) -> Self {
        assert!(index <= MAX_CASES, "at most {MAX_CASES} cases per phase");
        let tag = run_tag % 10_000;
        let birth = NaiveDate::from_ymd_opt(1950, 1, 1)
            .and_then(|d| d.checked_add_days(Days::new(u64::from(index % 18_000))))
            .expect("a birth date between 1950 and 1999");
        let seq = (u32::from(tag) + index / 18_000) % 1000;
        let first17 = format!("310101{}{seq:03}", birth.format("%Y%m%d"));
        Self {
            msisdn: format!("+86{}{tag:04}{index:05}", series.prefix()),
            full_name: "王小明".into(),
            id_number: ResidentId::with_check_digit(&first17).expect("a valid resident ID"),
            password: format!("bench-{tag}-{index}"),
            backup_sms: format!("+8618{tag:04}{index:05}"),
            recent: (1..=4)
                .map(|k| format!("+8617{k}{:03}{index:05}", tag % 1000))
                .collect(),
        }
    }

    /// The simulator's `POST /sim/subscribers` body: a clean, suspended subscriber.
    pub fn sim_body(&self) -> Value {
        json!({
            "msisdn": self.msisdn,
            "full_name": self.full_name,
            "id_number": self.id_number,
            "service_password": self.password,
            "backup_contacts": [{"kind": "sms", "address": self.backup_sms}],
            "recent_contacts": self.recent,
            "signals": {"fraud_linked_contacts": 0, "sms_peak_per_hour": 0, "intl_calls_24h": 0},
            "status": "suspended",
            "suspension_reason": "real_name_reverification",
        })
    }

    /// The simulator's body for a subscriber with no service password: its only proof is
    /// a one-time code to the backup contact (no argon2id hash at registration).
    pub fn sim_body_without_password(&self) -> Value {
        let mut body = self.sim_body();
        if let Some(fields) = body.as_object_mut() {
            fields.remove("service_password");
        }
        body
    }

    /// The customer API's `POST /v1/cases` body.
    pub fn case_body(&self) -> Value {
        json!({
            "msisdn": self.msisdn,
            "full_name": self.full_name,
            "id_number": self.id_number,
            "channel": "app",
            "locale": "en",
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use case_domain::{Msisdn, PersonName};

    use super::*;

    #[test]
    fn subscribers_are_valid_and_distinct() {
        let mut numbers = HashSet::new();
        let mut ids = HashSet::new();
        for series in [
            Series::Journey,
            Series::CreateOnly,
            Series::RawSql,
            Series::Otp,
        ] {
            for i in (0..2_000).chain([17_999, 18_000, 36_001, MAX_CASES]) {
                let s = BenchSubscriber::new(4321, series, i);
                assert_eq!(Msisdn::parse(&s.msisdn).unwrap().e164(), s.msisdn);
                assert!(ResidentId::parse(&s.id_number).is_ok(), "{}", s.id_number);
                assert!(PersonName::parse(&s.full_name).is_ok());
                Msisdn::parse(&s.backup_sms).unwrap();
                for r in &s.recent {
                    Msisdn::parse(r).unwrap();
                }
                assert!(numbers.insert(s.msisdn.clone()), "{}", s.msisdn);
                if series == Series::Journey {
                    assert!(ids.insert(s.id_number.clone()), "{}", s.id_number);
                }
            }
        }
    }

    #[test]
    fn run_tags_change_the_numbers() {
        let a = BenchSubscriber::new(1, Series::Journey, 5);
        let b = BenchSubscriber::new(2, Series::Journey, 5);
        assert_ne!(a.msisdn, b.msisdn);
        assert!(
            a.sim_body_without_password()
                .get("service_password")
                .is_none()
        );
        assert_eq!(a.sim_body_without_password()["msisdn"], a.msisdn.as_str());
        assert!(run_tag() < 10_000);
    }
}
