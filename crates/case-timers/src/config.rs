//! The timers service's settings, from `REACTIVATION_*` environment variables.

use std::net::SocketAddr;

use std::time::Duration;

use case_domain::{
    retention::RetentionPolicy,
    sla::{SlaConfig, SlaConfigError},
};

/// `REACTIVATION_TIMERS_ADDR`: health and metrics of the timers service.
pub const ADDR_VARIABLE: &str = "REACTIVATION_TIMERS_ADDR";
/// `REACTIVATION_START_URL`: where a suspended subscriber starts a request.
pub const START_URL_VARIABLE: &str = "REACTIVATION_START_URL";
/// `REACTIVATION_RETENTION_PASS_MINUTES`: how often the timers service runs the
/// retention pass (default 60; `0` turns the scheduled pass off, e.g. when
/// `reactivation retention run` is scheduled outside).
pub const RETENTION_PASS_VARIABLE: &str = "REACTIVATION_RETENTION_PASS_MINUTES";
/// The default of [`START_URL_VARIABLE`] (a placeholder: set the carrier's page).
pub const DEFAULT_START_URL: &str = "https://reactivation.example.com/start";
/// `REACTIVATION_MESSAGE_WINDOW_SECONDS`: how long a message about a case's state is
/// held, to be replaced by a later one (transitions within the window collapse into
/// one message about the latest state). `0`: every message goes at once.
pub const MESSAGE_WINDOW_VARIABLE: &str = "REACTIVATION_MESSAGE_WINDOW_SECONDS";
/// The default of [`MESSAGE_WINDOW_VARIABLE`], in seconds.
pub const DEFAULT_MESSAGE_WINDOW_SECS: i64 = 20;
/// The longest window allowed, in seconds.
pub const MAX_MESSAGE_WINDOW_SECS: i64 = 3600;
/// `REACTIVATION_FOLLOW_GATHER_MS`: while transitions stream in, the follower's
/// passes start at least this far apart, so that each pass handles the events that
/// arrived meanwhile in one transaction instead of one pass per event. A pass after
/// a quiet spell, and one after a full batch (a backlog), starts at once. `0`: a pass
/// per wake-up.
pub const FOLLOW_GATHER_VARIABLE: &str = "REACTIVATION_FOLLOW_GATHER_MS";
/// The default of [`FOLLOW_GATHER_VARIABLE`], in milliseconds.
pub const DEFAULT_FOLLOW_GATHER_MS: u64 = 50;
/// The longest gather allowed, in milliseconds (a message or timer is planned at most
/// this much later than its transition).
pub const MAX_FOLLOW_GATHER_MS: u64 = 1000;

/// What the timers service (and the ETA) read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimersConfig {
    /// `REACTIVATION_TIMERS_ADDR` (default 127.0.0.1:8085).
    pub addr: SocketAddr,
    /// Stage SLAs, customer windows and reminders (see [`SlaConfig::from_lookup`]).
    pub sla: SlaConfig,
    /// `REACTIVATION_START_URL`: the link in suspension notices.
    pub start_url: String,
    /// `REACTIVATION_RETENTION_*_DAYS`: how long each kind of personal data is kept
    /// after a case ends.
    pub retention: RetentionPolicy,
    /// `REACTIVATION_RETENTION_PASS_MINUTES`: how often the retention pass runs;
    /// `None` when turned off (0).
    pub retention_every: Option<Duration>,
    /// `REACTIVATION_MESSAGE_WINDOW_SECONDS` (default 20 s).
    pub message_window: chrono::Duration,
    /// `REACTIVATION_FOLLOW_GATHER_MS` (default 50 ms).
    pub follow_gather: Duration,
}

impl TimersConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SlaConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads through `lookup` (tests pass a map). Errors name the variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SlaConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let raw_addr = get(ADDR_VARIABLE).unwrap_or_else(|| "127.0.0.1:8085".into());
        let addr = raw_addr.parse().map_err(|_| SlaConfigError {
            variable: ADDR_VARIABLE.into(),
            problem: format!("must be a socket address such as 127.0.0.1:8085, got `{raw_addr}`"),
        })?;
        let start_url = get(START_URL_VARIABLE).unwrap_or_else(|| DEFAULT_START_URL.into());
        if !(start_url.starts_with("https://") || start_url.starts_with("http://"))
            || start_url.chars().count() > 200
        {
            return Err(SlaConfigError {
                variable: START_URL_VARIABLE.into(),
                problem: "must be an http:// or https:// URL of at most 200 characters".into(),
            });
        }
        let retention_every = match get(RETENTION_PASS_VARIABLE) {
            None => Some(Duration::from_secs(3600)),
            Some(raw) => match raw.parse::<u64>() {
                Ok(0) => None,
                Ok(minutes) if minutes <= 10_080 => Some(Duration::from_secs(minutes * 60)),
                _ => {
                    return Err(SlaConfigError {
                        variable: RETENTION_PASS_VARIABLE.into(),
                        problem: format!(
                            "must be a whole number of minutes from 0 (off) to 10080, got `{raw}`"
                        ),
                    });
                }
            },
        };
        let message_window = match get(MESSAGE_WINDOW_VARIABLE) {
            None => DEFAULT_MESSAGE_WINDOW_SECS,
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .filter(|n| (0..=MAX_MESSAGE_WINDOW_SECS).contains(n))
                .ok_or_else(|| SlaConfigError {
                    variable: MESSAGE_WINDOW_VARIABLE.into(),
                    problem: format!(
                        "must be a whole number of seconds between 0 and {MAX_MESSAGE_WINDOW_SECS}, got `{raw}`"
                    ),
                })?,
        };
        let follow_gather = match get(FOLLOW_GATHER_VARIABLE) {
            None => DEFAULT_FOLLOW_GATHER_MS,
            Some(raw) => raw
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= MAX_FOLLOW_GATHER_MS)
                .ok_or_else(|| SlaConfigError {
                    variable: FOLLOW_GATHER_VARIABLE.into(),
                    problem: format!(
                        "must be a whole number of milliseconds between 0 and {MAX_FOLLOW_GATHER_MS}, got `{raw}`"
                    ),
                })?,
        };
        Ok(Self {
            addr,
            sla: SlaConfig::from_lookup(&lookup)?,
            start_url,
            retention: RetentionPolicy::from_lookup(&lookup)?,
            retention_every,
            message_window: chrono::Duration::seconds(message_window),
            follow_gather: Duration::from_millis(follow_gather),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<TimersConfig, SlaConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TimersConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        let c = config(&[]).unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:8085");
        assert_eq!(c.start_url, DEFAULT_START_URL);
        assert_eq!(c.sla, SlaConfig::default());
        assert_eq!(c.retention, RetentionPolicy::default());
        assert_eq!(c.retention_every, Some(Duration::from_secs(3600)));
        assert_eq!(c.message_window, chrono::Duration::seconds(20));
        let c = config(&[("REACTIVATION_MESSAGE_WINDOW_SECONDS", "0")]).unwrap();
        assert_eq!(c.message_window, chrono::Duration::zero());
        assert_eq!(c.follow_gather, Duration::from_millis(50));
        let c = config(&[("REACTIVATION_FOLLOW_GATHER_MS", "0")]).unwrap();
        assert_eq!(c.follow_gather, Duration::ZERO);
        let c = config(&[("REACTIVATION_FOLLOW_GATHER_MS", "1000")]).unwrap();
        assert_eq!(c.follow_gather, Duration::from_secs(1));
        let c = config(&[
            ("REACTIVATION_TIMERS_ADDR", "127.0.0.1:9999"),
            ("REACTIVATION_START_URL", "https://10086.example.cn/fuji"),
            ("REACTIVATION_SLA_SECURITY_REVIEW_MINUTES", "5"),
            ("REACTIVATION_RETENTION_EVIDENCE_DAYS", "90"),
            ("REACTIVATION_RETENTION_PASS_MINUTES", "0"),
        ])
        .unwrap();
        assert_eq!(
            c.retention.days(case_domain::retention::DataKind::Evidence),
            90
        );
        assert_eq!(c.retention_every, None);
        assert_eq!(c.addr.port(), 9999);
        assert_eq!(c.start_url, "https://10086.example.cn/fuji");
        assert_eq!(
            c.sla.stage_sla(case_domain::CaseState::SecurityReview),
            Some(chrono::Duration::minutes(5))
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("REACTIVATION_TIMERS_ADDR", "localhost"),
            ("REACTIVATION_START_URL", "javascript:alert(1)"),
            ("REACTIVATION_SLA_PROVISIONING_MINUTES", "soon"),
            ("REACTIVATION_RETENTION_PASS_MINUTES", "hourly"),
            ("REACTIVATION_RETENTION_IDENTITY_DAYS", "0"),
            ("REACTIVATION_MESSAGE_WINDOW_SECONDS", "-1"),
            ("REACTIVATION_MESSAGE_WINDOW_SECONDS", "3601"),
            ("REACTIVATION_MESSAGE_WINDOW_SECONDS", "20s"),
            ("REACTIVATION_FOLLOW_GATHER_MS", "1001"),
            ("REACTIVATION_FOLLOW_GATHER_MS", "-5"),
            ("REACTIVATION_FOLLOW_GATHER_MS", "50ms"),
        ] {
            assert_eq!(config(&[(name, value)]).unwrap_err().variable, name);
        }
    }
}
