//! Configuration from environment variables, validated once at start.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
};
use rand::Rng;
use subtle::ConstantTimeEq;

/// A configuration value is missing or malformed; the message names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {variable} {problem}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    /// An error about `variable`.
    pub fn new(variable: &str, problem: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            problem: problem.into(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event (development).
    Human,
    /// One JSON object per line (production log shipping).
    Json,
}

/// Items a worker loop works on at once unless `REACTIVATION_WORKER_CONCURRENCY`
/// says otherwise: the steps are I/O-bound (a carrier round trip of tens to hundreds
/// of milliseconds against a few milliseconds of SQL), so a loop overlaps many. A
/// provisioning order against a carrier that takes 200 ms is followed for about
/// 0.4 s, so 32 in flight complete about 78 orders/s per replica
/// (docs/performance.md, "Concurrent workers").
pub const DEFAULT_WORKER_CONCURRENCY: usize = 32;

/// Everything a service process needs to start. Each service reads only the
/// fields it uses; all are validated together so a typo fails fast.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `DATABASE_URL`: the shared Postgres (required except for `reactivation dev`).
    pub database_url: Option<String>,
    /// `REACTIVATION_DB_MAX_CONNECTIONS` (default 10).
    pub db_max_connections: u32,
    /// `REACTIVATION_LOG_FORMAT`: `human` (default) or `json`.
    pub log_format: LogFormat,
    /// `REACTIVATION_LOG`: tracing filter (default `info`).
    pub log_filter: String,
    /// `REACTIVATION_GATEWAY_ADDR` (default 127.0.0.1:8080).
    pub gateway_addr: SocketAddr,
    /// `REACTIVATION_IDENTITY_ADDR`: health/metrics of the identity service (default 127.0.0.1:8081).
    pub identity_addr: SocketAddr,
    /// `REACTIVATION_RISK_ADDR` (default 127.0.0.1:8082).
    pub risk_addr: SocketAddr,
    /// `REACTIVATION_PROVISIONING_ADDR` (default 127.0.0.1:8083).
    pub provisioning_addr: SocketAddr,
    /// `REACTIVATION_CARRIER_SIM_ADDR` (default 127.0.0.1:8090).
    pub carrier_sim_addr: SocketAddr,
    /// `REACTIVATION_CARRIER_URL`: base URL of the carrier API (default the simulator).
    pub carrier_url: String,
    /// `REACTIVATION_WORKER_POLL_SECS`: fallback poll when no NOTIFY arrives (default 30).
    pub worker_poll: Duration,
    /// `REACTIVATION_WORKER_LEASE_SECS`: how long a claim lasts unless renewed (default 30).
    pub worker_lease: Duration,
    /// `REACTIVATION_WORKER_CONCURRENCY`: items each worker loop works on at once
    /// (default 32, 1 to 256). Worker steps mostly wait on the carrier, so one loop
    /// keeps many calls in flight; each item holds a pool connection only for its
    /// short claim, renew and write statements.
    pub worker_concurrency: usize,
    /// `REACTIVATION_HTTP_TIMEOUT_SECS`: per-request time limit of HTTP servers (default 30).
    pub http_timeout: Duration,
    /// `REACTIVATION_IDENTITY_URL`: where the gateway reaches the identity service
    /// (default `http://` + the identity address).
    pub identity_url: String,
    /// The current master secret: base64 (≥ 32 bytes) from which the keys for
    /// personal data at rest and one-time codes derive. The first key of
    /// `REACTIVATION_SECRET_KEYS` when that is set, else `REACTIVATION_SECRET_KEY`.
    /// Required by the gateway, the identity and the webhooks service.
    pub secret_key: Option<String>,
    /// The old master secrets: the keys after the first in `REACTIVATION_SECRET_KEYS`
    /// (space-separated, current first). Data sealed under them is still read until
    /// `reactivation keys rotate` has moved it to the current key.
    pub old_secret_keys: Vec<String>,
    /// The variable the master secrets came from (named in errors about them).
    pub secret_key_variable: &'static str,
    /// `REACTIVATION_CARRIER_WEBHOOK_SECRETS`: space-separated `whsec_<base64>` secrets
    /// (24–64 bytes each) accepted on inbound carrier webhooks; several while one is
    /// rotated. Empty when unset (the gateway then refuses carrier webhooks with 503).
    pub carrier_webhook_secrets: Vec<webhooks::Secret>,
    /// `REACTIVATION_WEBHOOKS_ADDR`: health/metrics of the webhooks service (default 127.0.0.1:8084).
    pub webhooks_addr: SocketAddr,
    /// `REACTIVATION_WEBHOOKS_ALLOW_PRIVATE`: development only; lets outbound webhook
    /// endpoints be on loopback or private addresses (default false).
    pub webhooks_allow_private: bool,
    /// `REACTIVATION_WEBHOOKS_RETRY_SCALE`: multiplies the outbound retry schedule
    /// (default 1; tests use a small value), more than 0 and at most 1.
    pub webhooks_retry_scale: f64,
    /// `REACTIVATION_SIM_WEBHOOK_URL`: where the carrier simulator sends its signed
    /// webhooks (unset: it sends none).
    pub sim_webhook_url: Option<String>,
    /// `REACTIVATION_SIM_WEBHOOK_SECRET`: the `whsec_` secret the simulator signs with
    /// (required with `REACTIVATION_SIM_WEBHOOK_URL`).
    pub sim_webhook_secret: Option<webhooks::Secret>,
    /// `REACTIVATION_INTERNAL_TOKENS`: the bearer tokens of service-to-service calls
    /// (gateway → identity). The caller sends the first; the callee accepts any of
    /// them, so a token is rotated by listing the new one beside the old. Required by
    /// `serve gateway`, `serve identity` and `serve all`; `dev` generates one per run.
    pub internal_tokens: InternalTokens,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let parse = |name: &str, default: &str| -> Result<String, ConfigError> {
            Ok(get(name).unwrap_or_else(|| default.to_owned()))
        };
        let addr = |name: &str, default: &str| -> Result<SocketAddr, ConfigError> {
            parse_value(
                name,
                &parse(name, default)?,
                "a socket address such as 127.0.0.1:8080",
            )
        };
        let secs = |name: &str, default: u64, max: u64| -> Result<Duration, ConfigError> {
            let n: u64 = parse_value(
                name,
                &parse(name, &default.to_string())?,
                "a whole number of seconds",
            )?;
            if n == 0 || n > max {
                return Err(ConfigError::new(
                    name,
                    format!("must be between 1 and {max} seconds, got {n}"),
                ));
            }
            Ok(Duration::from_secs(n))
        };

        let database_url = get("DATABASE_URL");
        if let Some(url) = &database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must start with postgres:// or postgresql://",
            ));
        }
        let log_format = match parse("REACTIVATION_LOG_FORMAT", "human")?.as_str() {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::new(
                    "REACTIVATION_LOG_FORMAT",
                    format!("must be `human` or `json`, got `{other}`"),
                ));
            }
        };
        let db_max_connections: u32 = parse_value(
            "REACTIVATION_DB_MAX_CONNECTIONS",
            &parse("REACTIVATION_DB_MAX_CONNECTIONS", "10")?,
            "a whole number",
        )?;
        if !(1..=500).contains(&db_max_connections) {
            return Err(ConfigError::new(
                "REACTIVATION_DB_MAX_CONNECTIONS",
                "must be between 1 and 500",
            ));
        }
        let worker_concurrency: usize = parse_value(
            "REACTIVATION_WORKER_CONCURRENCY",
            &parse(
                "REACTIVATION_WORKER_CONCURRENCY",
                &DEFAULT_WORKER_CONCURRENCY.to_string(),
            )?,
            "a whole number",
        )?;
        if !(1..=256).contains(&worker_concurrency) {
            return Err(ConfigError::new(
                "REACTIVATION_WORKER_CONCURRENCY",
                "must be between 1 and 256",
            ));
        }
        let carrier_url = parse("REACTIVATION_CARRIER_URL", "http://127.0.0.1:8090")?;
        if !(carrier_url.starts_with("http://") || carrier_url.starts_with("https://")) {
            return Err(ConfigError::new(
                "REACTIVATION_CARRIER_URL",
                "must be an http:// or https:// URL",
            ));
        }
        let identity_addr = addr("REACTIVATION_IDENTITY_ADDR", "127.0.0.1:8081")?;
        let identity_url = parse(
            "REACTIVATION_IDENTITY_URL",
            &format!("http://{identity_addr}"),
        )?;
        if !(identity_url.starts_with("http://") || identity_url.starts_with("https://")) {
            return Err(ConfigError::new(
                "REACTIVATION_IDENTITY_URL",
                "must be an http:// or https:// URL",
            ));
        }
        let carrier_webhook_secrets = match get("REACTIVATION_CARRIER_WEBHOOK_SECRETS") {
            None => Vec::new(),
            Some(list) => webhooks::Secret::parse_list(&list).map_err(|(n, e)| {
                ConfigError::new(
                    "REACTIVATION_CARRIER_WEBHOOK_SECRETS",
                    format!("secret #{n} {e} (space-separated whsec_<base64> secrets of 24 to 64 random bytes)"),
                )
            })?,
        };
        let webhooks_allow_private =
            match parse("REACTIVATION_WEBHOOKS_ALLOW_PRIVATE", "false")?.as_str() {
                "true" => true,
                "false" => false,
                other => {
                    return Err(ConfigError::new(
                        "REACTIVATION_WEBHOOKS_ALLOW_PRIVATE",
                        format!("must be `true` or `false`, got `{other}`"),
                    ));
                }
            };
        let webhooks_retry_scale: f64 = parse_value(
            "REACTIVATION_WEBHOOKS_RETRY_SCALE",
            &parse("REACTIVATION_WEBHOOKS_RETRY_SCALE", "1")?,
            "a number greater than 0 and at most 1",
        )?;
        if !(webhooks_retry_scale > 0.0 && webhooks_retry_scale <= 1.0) {
            return Err(ConfigError::new(
                "REACTIVATION_WEBHOOKS_RETRY_SCALE",
                "must be greater than 0 and at most 1",
            ));
        }
        let sim_webhook_url = get("REACTIVATION_SIM_WEBHOOK_URL");
        if let Some(url) = &sim_webhook_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "REACTIVATION_SIM_WEBHOOK_URL",
                "must be an http:// or https:// URL",
            ));
        }
        let sim_webhook_secret = match get("REACTIVATION_SIM_WEBHOOK_SECRET") {
            Some(text) => Some(webhooks::Secret::parse(&text).map_err(|e| {
                ConfigError::new(
                    "REACTIVATION_SIM_WEBHOOK_SECRET",
                    format!("{e} (a whsec_<base64> secret of 24 to 64 random bytes)"),
                )
            })?),
            None if sim_webhook_url.is_some() => {
                return Err(ConfigError::new(
                    "REACTIVATION_SIM_WEBHOOK_SECRET",
                    "is required with REACTIVATION_SIM_WEBHOOK_URL",
                ));
            }
            None => None,
        };
        let internal_tokens = match get("REACTIVATION_INTERNAL_TOKENS") {
            None => InternalTokens::default(),
            Some(list) => InternalTokens::parse(&list)
                .map_err(|problem| ConfigError::new("REACTIVATION_INTERNAL_TOKENS", problem))?,
        };
        let (secret_key, old_secret_keys, secret_key_variable) = secret_keys(
            get("REACTIVATION_SECRET_KEYS"),
            get("REACTIVATION_SECRET_KEY"),
        )?;
        Ok(Self {
            old_secret_keys,
            secret_key_variable,
            internal_tokens,
            carrier_webhook_secrets,
            webhooks_addr: addr("REACTIVATION_WEBHOOKS_ADDR", "127.0.0.1:8084")?,
            webhooks_allow_private,
            webhooks_retry_scale,
            sim_webhook_url,
            sim_webhook_secret,
            identity_url: identity_url.trim_end_matches('/').to_owned(),
            secret_key,
            database_url,
            db_max_connections,
            log_format,
            log_filter: parse("REACTIVATION_LOG", "info,sqlx::postgres::notice=warn")?,
            gateway_addr: addr("REACTIVATION_GATEWAY_ADDR", "127.0.0.1:8080")?,
            identity_addr,
            risk_addr: addr("REACTIVATION_RISK_ADDR", "127.0.0.1:8082")?,
            provisioning_addr: addr("REACTIVATION_PROVISIONING_ADDR", "127.0.0.1:8083")?,
            carrier_sim_addr: addr("REACTIVATION_CARRIER_SIM_ADDR", "127.0.0.1:8090")?,
            carrier_url: carrier_url.trim_end_matches('/').to_owned(),
            worker_poll: secs("REACTIVATION_WORKER_POLL_SECS", 30, 3600)?,
            worker_lease: secs("REACTIVATION_WORKER_LEASE_SECS", 30, 3600)?,
            worker_concurrency,
            http_timeout: secs("REACTIVATION_HTTP_TIMEOUT_SECS", 30, 600)?,
        })
    }

    /// The master secret, or an error naming `REACTIVATION_SECRET_KEY`.
    pub fn require_secret_key(&self) -> Result<&str, ConfigError> {
        self.secret_key.as_deref().ok_or_else(|| {
            ConfigError::new(
                "REACTIVATION_SECRET_KEY",
                "is not set (base64 of at least 32 random bytes, e.g. `openssl rand -base64 32`; or REACTIVATION_SECRET_KEYS, the current key first, then old ones)",
            )
        })
    }

    /// The service-to-service tokens, or an error naming `REACTIVATION_INTERNAL_TOKENS`.
    pub fn require_internal_tokens(&self) -> Result<&InternalTokens, ConfigError> {
        if self.internal_tokens.is_empty() {
            return Err(ConfigError::new(
                "REACTIVATION_INTERNAL_TOKENS",
                "is not set (the credential of calls between services: base64 of at least 32 random bytes, e.g. `openssl rand -base64 32`; the same value for the gateway and the identity service)",
            ));
        }
        Ok(&self.internal_tokens)
    }

    /// The database URL, or an error naming `DATABASE_URL`.
    pub fn require_database_url(&self) -> Result<&str, ConfigError> {
        self.database_url.as_deref().ok_or_else(|| {
            ConfigError::new(
                "DATABASE_URL",
                "is not set (e.g. postgres://postgres@127.0.0.1:5432/reactivation)",
            )
        })
    }
}

/// The fewest random bytes a service-to-service token may hold.
pub const MIN_INTERNAL_TOKEN_BYTES: usize = 32;

/// The master secrets: `REACTIVATION_SECRET_KEYS` (space-separated, current first)
/// overrides `REACTIVATION_SECRET_KEY`; with both set, the single key must be one of
/// the list (so setting the list never silently drops the key the data is under).
#[allow(clippy::type_complexity)]
fn secret_keys(
    list: Option<String>,
    single: Option<String>,
) -> Result<(Option<String>, Vec<String>, &'static str), ConfigError> {
    const LIST: &str = "REACTIVATION_SECRET_KEYS";
    let Some(list) = list else {
        return Ok((single, Vec::new(), "REACTIVATION_SECRET_KEY"));
    };
    let keys: Vec<String> = list.split_whitespace().map(str::to_owned).collect();
    let bytes = |text: &str| decode_base64(text).unwrap_or_else(|| text.as_bytes().to_vec());
    for (i, key) in keys.iter().enumerate() {
        if keys[..i].iter().any(|k| bytes(k) == bytes(key)) {
            return Err(ConfigError::new(
                LIST,
                format!(
                    "lists key #{} twice (each key once, the current first)",
                    i + 1
                ),
            ));
        }
    }
    if let Some(single) = single
        && !keys.iter().any(|k| bytes(k) == bytes(&single))
    {
        return Err(ConfigError::new(
            LIST,
            "does not hold the key of REACTIVATION_SECRET_KEY: list it as an old key (after the current one) until `reactivation keys rotate` has run, or unset REACTIVATION_SECRET_KEY",
        ));
    }
    let mut keys = keys.into_iter();
    Ok((keys.next(), keys.collect(), LIST))
}

/// Decodes base64 in any of the usual forms (standard or URL-safe, padded or not).
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// The bearer tokens of calls between services (`REACTIVATION_INTERNAL_TOKENS`).
///
/// The first token is the one this process sends; every token listed is accepted. A
/// token is rotated in three deployments: every process gets `OLD NEW` (callers still
/// send the old one, callees accept both), then `NEW OLD` (callers send the new one),
/// then `NEW`. Never shown in `Debug` output or in errors.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct InternalTokens {
    tokens: Vec<String>,
}

impl fmt::Debug for InternalTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InternalTokens({} tokens)", self.tokens.len())
    }
}

impl InternalTokens {
    /// Parses a space-separated list of tokens, each base64 of at least 32 bytes.
    /// The error names the position (1-based) of the first bad token, never its text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        for (i, token) in text.split_whitespace().enumerate() {
            let n = i + 1;
            let Some(bytes) = decode_base64(token) else {
                return Err(format!(
                    "token #{n} is not base64 (space-separated tokens, each base64 of at least {MIN_INTERNAL_TOKEN_BYTES} random bytes)"
                ));
            };
            if bytes.len() < MIN_INTERNAL_TOKEN_BYTES {
                return Err(format!(
                    "token #{n} decodes to {} bytes; at least {MIN_INTERNAL_TOKEN_BYTES} random bytes are needed (`openssl rand -base64 32`)",
                    bytes.len()
                ));
            }
            if tokens.iter().any(|t| t == token) {
                return Err(format!("token #{n} is listed twice"));
            }
            tokens.push(token.to_owned());
        }
        if tokens.is_empty() {
            return Err("is empty".to_owned());
        }
        Ok(Self { tokens })
    }

    /// A fresh random token (32 bytes from the CSPRNG), for `reactivation dev`.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes);
        Self {
            tokens: vec![STANDARD.encode(bytes)],
        }
    }

    /// No token configured.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token this process sends on its calls (the first listed).
    pub fn current(&self) -> Option<&str> {
        self.tokens.first().map(String::as_str)
    }

    /// Every accepted token (for the start-up checks).
    pub fn all(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().map(String::as_str)
    }

    /// Whether `presented` is one of the tokens. Every token is compared, each in
    /// constant time, so the answer's timing tells nothing about which one matched or
    /// how much of it did. With no token configured nothing is accepted.
    pub fn accepts(&self, presented: &str) -> bool {
        let mut matched = subtle::Choice::from(0);
        for token in &self.tokens {
            // `ct_eq` on slices of different lengths is false (it reveals the length only).
            matched |= token.as_bytes().ct_eq(presented.as_bytes());
        }
        bool::from(matched)
    }
}

fn parse_value<T: FromStr>(name: &str, raw: &str, expected: &str) -> Result<T, ConfigError> {
    raw.parse()
        .map_err(|_| ConfigError::new(name, format!("must be {expected}, got `{raw}`")))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn secret_keys_list_the_current_key_first_and_override_the_single_key() {
        let (a, b) = (
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=",
        );
        let single = settings(&[("REACTIVATION_SECRET_KEY", a)]).unwrap();
        assert_eq!(single.secret_key.as_deref(), Some(a));
        assert!(single.old_secret_keys.is_empty());
        assert_eq!(single.secret_key_variable, "REACTIVATION_SECRET_KEY");

        let list = format!("{b}  {a}");
        let both = settings(&[
            ("REACTIVATION_SECRET_KEYS", &list),
            ("REACTIVATION_SECRET_KEY", a),
        ])
        .unwrap();
        assert_eq!(both.secret_key.as_deref(), Some(b));
        assert_eq!(both.old_secret_keys, vec![a.to_owned()]);
        assert_eq!(both.secret_key_variable, "REACTIVATION_SECRET_KEYS");

        // The list must keep the single key, and name each key once.
        let err = settings(&[
            ("REACTIVATION_SECRET_KEYS", b),
            ("REACTIVATION_SECRET_KEY", a),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "REACTIVATION_SECRET_KEYS");
        assert!(!err.to_string().contains(a) && !err.to_string().contains(b));
        let unpadded = a.trim_end_matches('=');
        let twice = format!("{a} {b} {unpadded}");
        let err = settings(&[("REACTIVATION_SECRET_KEYS", &twice)]).unwrap_err();
        assert!(err.problem.contains("key #3 twice"), "{err}");
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.gateway_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.carrier_sim_addr.to_string(), "127.0.0.1:8090");
        assert_eq!(s.carrier_url, "http://127.0.0.1:8090");
        assert_eq!(s.log_format, LogFormat::Human);
        assert_eq!(s.worker_concurrency, DEFAULT_WORKER_CONCURRENCY);
        assert!(s.database_url.is_none());
        assert_eq!(
            s.require_database_url().unwrap_err().variable,
            "DATABASE_URL"
        );
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let cases = [
            ("REACTIVATION_GATEWAY_ADDR", "localhost"),
            ("REACTIVATION_LOG_FORMAT", "xml"),
            ("REACTIVATION_WORKER_POLL_SECS", "0"),
            ("REACTIVATION_WORKER_LEASE_SECS", "ten"),
            ("REACTIVATION_DB_MAX_CONNECTIONS", "0"),
            ("REACTIVATION_WORKER_CONCURRENCY", "0"),
            ("REACTIVATION_CARRIER_URL", "ftp://carrier"),
            ("DATABASE_URL", "mysql://x"),
            ("REACTIVATION_CARRIER_WEBHOOK_SECRETS", "whsec_"),
            ("REACTIVATION_WEBHOOKS_ADDR", "8084"),
            ("REACTIVATION_WEBHOOKS_ALLOW_PRIVATE", "yes"),
            ("REACTIVATION_WEBHOOKS_RETRY_SCALE", "0"),
            ("REACTIVATION_SIM_WEBHOOK_URL", "carrier:9000"),
            ("REACTIVATION_SIM_WEBHOOK_SECRET", "c2VjcmV0"),
            ("REACTIVATION_INTERNAL_TOKENS", "c2hvcnQ="),
        ];
        for (name, value) in cases {
            let err = settings(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name);
            assert!(
                err.to_string()
                    .starts_with(&format!("configuration: {name} ")),
                "{err}"
            );
        }
    }

    #[test]
    fn values_are_read_and_trimmed() {
        let s = settings(&[
            ("DATABASE_URL", " postgres://u@h/db "),
            ("REACTIVATION_LOG_FORMAT", "json"),
            ("REACTIVATION_WORKER_POLL_SECS", "5"),
            ("REACTIVATION_WORKER_CONCURRENCY", " 4 "),
            ("REACTIVATION_CARRIER_URL", "http://carrier:9000/"),
        ])
        .unwrap();
        assert_eq!(s.worker_concurrency, 4);
        assert_eq!(s.database_url.as_deref(), Some("postgres://u@h/db"));
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.worker_poll, Duration::from_secs(5));
        assert_eq!(s.carrier_url, "http://carrier:9000");
    }

    #[test]
    fn carrier_webhook_secrets_are_checked_at_start() {
        let good = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let two = format!(
            "{good} whsec_{}",
            "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
        );
        let s = settings(&[("REACTIVATION_CARRIER_WEBHOOK_SECRETS", &two)]).unwrap();
        assert_eq!(s.carrier_webhook_secrets.len(), 2);
        assert!(settings(&[]).unwrap().carrier_webhook_secrets.is_empty());
        for bad in [
            "whsec_",                           // empty
            "whsec_c2hvcnQ=",                   // 5 bytes
            "whsec_***",                        // not base64
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", // no prefix
        ] {
            let list = format!("{good} {bad}");
            let err = settings(&[("REACTIVATION_CARRIER_WEBHOOK_SECRETS", &list)]).unwrap_err();
            assert_eq!(err.variable, "REACTIVATION_CARRIER_WEBHOOK_SECRETS");
            assert!(err.problem.contains("secret #2"), "{err}");
            assert!(!err.to_string().contains("MfKQ"), "the secret leaks: {err}");
        }
        let err = settings(&[(
            "REACTIVATION_SIM_WEBHOOK_URL",
            "http://127.0.0.1:8080/v1/webhooks/carrier",
        )])
        .unwrap_err();
        assert_eq!(err.variable, "REACTIVATION_SIM_WEBHOOK_SECRET");
    }

    #[test]
    fn webhook_settings_have_safe_defaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.webhooks_addr.to_string(), "127.0.0.1:8084");
        assert!(!s.webhooks_allow_private);
        assert_eq!(s.webhooks_retry_scale, 1.0);
        assert!(s.sim_webhook_url.is_none() && s.sim_webhook_secret.is_none());
        let s = settings(&[
            ("REACTIVATION_WEBHOOKS_ALLOW_PRIVATE", "true"),
            ("REACTIVATION_WEBHOOKS_RETRY_SCALE", "0.01"),
        ])
        .unwrap();
        assert!(s.webhooks_allow_private);
        assert_eq!(s.webhooks_retry_scale, 0.01);
    }

    #[test]
    fn the_identity_service_listens_on_loopback_unless_configured() {
        let s = settings(&[]).unwrap();
        assert!(s.identity_addr.ip().is_loopback());
        assert_eq!(s.identity_url, "http://127.0.0.1:8081");
    }

    #[test]
    fn internal_tokens_are_checked_at_start_and_never_shown() {
        let a = "Tm9pc2VOb2lzZU5vaXNlTm9pc2VOb2lzZU5vaXNlTm9pcw==";
        let b = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA";
        let s = settings(&[]).unwrap();
        assert!(s.internal_tokens.is_empty());
        let err = s.require_internal_tokens().unwrap_err();
        assert_eq!(err.variable, "REACTIVATION_INTERNAL_TOKENS");

        let s = settings(&[("REACTIVATION_INTERNAL_TOKENS", &format!(" {b}  {a} "))]).unwrap();
        let tokens = s.require_internal_tokens().unwrap();
        assert_eq!(tokens.current(), Some(b));
        assert_eq!(tokens.all().count(), 2);
        assert!(tokens.accepts(a) && tokens.accepts(b));
        assert!(!tokens.accepts(&a[..a.len() - 1]));
        assert!(!tokens.accepts(""));
        assert!(!tokens.accepts(&format!("{a} {b}")));
        assert!(!format!("{tokens:?}").contains(a) && !format!("{s:?}").contains(b));

        for (bad, why) in [
            ("c2hvcnQ=", "bytes"),     // 5 bytes
            ("not base64!", "base64"), // not base64
        ] {
            let list = format!("{a} {bad}");
            let err = settings(&[("REACTIVATION_INTERNAL_TOKENS", &list)]).unwrap_err();
            assert_eq!(err.variable, "REACTIVATION_INTERNAL_TOKENS");
            assert!(err.problem.contains("token #2"), "{err}");
            assert!(err.problem.contains(why), "{err}");
            assert!(!err.to_string().contains(&a[..10]), "a token leaks: {err}");
        }
        let twice = format!("{a} {a}");
        assert!(settings(&[("REACTIVATION_INTERNAL_TOKENS", &twice)]).is_err());
        assert!(InternalTokens::default().is_empty() && !InternalTokens::default().accepts(""));
    }

    #[test]
    fn generated_internal_tokens_are_fresh_and_valid() {
        let one = InternalTokens::generate();
        let two = InternalTokens::generate();
        assert_ne!(one, two);
        let text = one.current().unwrap();
        assert_eq!(decode_base64(text).unwrap().len(), 32);
        assert_eq!(InternalTokens::parse(text).unwrap(), one);
    }
}
