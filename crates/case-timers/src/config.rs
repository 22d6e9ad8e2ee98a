//! The timers service's settings, from `REACTIVATION_*` environment variables.

use std::net::SocketAddr;

use case_domain::sla::{SlaConfig, SlaConfigError};

/// `REACTIVATION_TIMERS_ADDR`: health and metrics of the timers service.
pub const ADDR_VARIABLE: &str = "REACTIVATION_TIMERS_ADDR";
/// `REACTIVATION_START_URL`: where a suspended subscriber starts a request.
pub const START_URL_VARIABLE: &str = "REACTIVATION_START_URL";
/// The default of [`START_URL_VARIABLE`] (a placeholder: set the carrier's page).
pub const DEFAULT_START_URL: &str = "https://reactivation.example.com/start";

/// What the timers service (and the ETA) read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimersConfig {
    /// `REACTIVATION_TIMERS_ADDR` (default 127.0.0.1:8085).
    pub addr: SocketAddr,
    /// Stage SLAs, customer windows and reminders (see [`SlaConfig::from_lookup`]).
    pub sla: SlaConfig,
    /// `REACTIVATION_START_URL`: the link in suspension notices.
    pub start_url: String,
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
        Ok(Self {
            addr,
            sla: SlaConfig::from_lookup(&lookup)?,
            start_url,
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
        let c = config(&[
            ("REACTIVATION_TIMERS_ADDR", "127.0.0.1:9999"),
            ("REACTIVATION_START_URL", "https://10086.example.cn/fuji"),
            ("REACTIVATION_SLA_SECURITY_REVIEW_MINUTES", "5"),
        ])
        .unwrap();
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
        ] {
            assert_eq!(config(&[(name, value)]).unwrap_err().variable, name);
        }
    }
}
