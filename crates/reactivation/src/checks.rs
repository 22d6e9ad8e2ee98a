//! The start-up checks of `reactivation serve`: what keeps development data and
//! published secrets out of a real deployment.
//!
//! `serve` refuses to start (exit 1, one line on stderr naming the variable) when:
//! - a secret it is given is one this project publishes ([`PUBLISHED_SECRETS`]);
//! - `REACTIVATION_SECRET_KEY` is missing where it is used, is not base64 of at least
//!   32 bytes, or does not look random (text, or few distinct bytes); with
//!   `REACTIVATION_SECRET_KEYS`, the same for every key it lists, old ones included;
//! - `REACTIVATION_INTERNAL_TOKENS` is missing where an internal API is served or
//!   called, or one of its tokens does not look random;
//! - the database holds an agent account that `reactivation dev` seeded
//!   (`agents.demo`), whose password is published.
//!
//! Each line of docs/operations.md's "Going to production" checklist names the check
//! here that enforces it. `dev` does not run these checks.

use anyhow::Context;
use service_runtime::{
    ConfigError, Settings,
    config::{InternalTokens, decode_base64},
};

use crate::{Service, dev};

/// Every fixed secret in this repository and its history, base64 without any
/// `whsec_` prefix, with where it is published. A secret of any kind whose bytes
/// equal one of these is refused. (The system tests' carrier webhook secrets are not
/// listed: the tests hand them to `serve`; they never appear as a default anywhere.)
pub const PUBLISHED_SECRETS: &[(&str, &str)] = &[
    (dev::DEV_SECRET_KEY, "the demo key of `reactivation dev`"),
    (
        dev::DEV_WEBHOOK_SECRET_BASE64,
        "the demo webhook secret of `reactivation dev`",
    ),
    (
        "cmVhY3RpdmF0aW9uLWNvbXBvc2UtZGVtby1rZXktY2hhbmdlLW1l",
        "the demo key docker-compose.yml used to ship",
    ),
    (
        "Y29tcG9zZS1kZW1vLXdlYmhvb2stc2VjcmV0LTAwMDAwMDA=",
        "the demo webhook secret docker-compose.yml used to ship",
    ),
    (
        "dGVzdC1vbmx5LXNlY3JldC1rZXktZm9yLXN5c3RlbS10ZXN0cy0wMDAwMDAwMA==",
        "the key the system tests used to share",
    ),
    (
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "the example secret of the Standard Webhooks specification",
    ),
    (
        "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
        "an example in the configuration tests",
    ),
    (
        "Tm9pc2VOb2lzZU5vaXNlTm9pc2VOb2lzZU5vaXNlTm9pcw==",
        "an example in the configuration tests",
    ),
    (
        "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA",
        "an example in the tests",
    ),
    (
        "b2xkLXRva2VuLWZvci10ZXN0cy1vbmx5LTEyMzQ1Njc4OTA=",
        "an example in the tests",
    ),
];

/// The fewest bytes of the master secret.
pub const MIN_SECRET_KEY_BYTES: usize = 32;

/// The fewest distinct byte values in a secret of 32 bytes or more. 32 random bytes
/// hold about 30; fewer than 16 happens by chance with a probability far below 1e-9.
const MIN_DISTINCT_BYTES: usize = 16;

/// Services that use `REACTIVATION_SECRET_KEY`.
fn uses_secret_key(service: Service) -> bool {
    matches!(
        service,
        Service::Gateway | Service::Identity | Service::Timers | Service::Webhooks | Service::All
    )
}

/// Services that serve or call an internal API (the identity service's).
fn uses_internal_api(service: Service) -> bool {
    matches!(service, Service::Gateway | Service::Identity | Service::All)
}

/// Where `bytes` are published, if they are.
fn published(bytes: &[u8]) -> Option<&'static str> {
    PUBLISHED_SECRETS
        .iter()
        .find(|(text, _)| decode_base64(text).is_some_and(|p| p == bytes))
        .map(|(_, place)| *place)
}

/// Why `bytes` do not look like random bytes, if they do not: the secret was typed
/// (a pass-phrase, a sentence, a repeated character) rather than generated.
fn not_random(bytes: &[u8]) -> Option<&'static str> {
    if bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Some("decodes to printable text, not random bytes");
    }
    let mut seen = [false; 256];
    for b in bytes {
        seen[usize::from(*b)] = true;
    }
    if seen.iter().filter(|s| **s).count() < MIN_DISTINCT_BYTES {
        return Some("repeats too few byte values to be random");
    }
    None
}

const GENERATE: &str = "generate one with `openssl rand -base64 32`";

/// Checks the master secret's text.
pub fn check_secret_key(text: &str) -> Result<(), ConfigError> {
    check_secret_key_in("REACTIVATION_SECRET_KEY", None, text)
}

/// Checks one master secret of `variable` (`position`: its place in a list).
fn check_secret_key_in(
    variable: &str,
    position: Option<usize>,
    text: &str,
) -> Result<(), ConfigError> {
    let which = position.map(|n| format!("key #{n} ")).unwrap_or_default();
    let refuse = |problem: String| Err(ConfigError::new(variable, format!("{which}{problem}")));
    let Some(bytes) = decode_base64(text) else {
        return refuse(format!("is not base64; {GENERATE}"));
    };
    if let Some(place) = published(&bytes) {
        return refuse(format!(
            "is a published secret ({place}); {GENERATE} and keep it secret"
        ));
    }
    if bytes.len() < MIN_SECRET_KEY_BYTES {
        return refuse(format!(
            "holds {} bytes; at least {MIN_SECRET_KEY_BYTES} random bytes are needed ({GENERATE})",
            bytes.len()
        ));
    }
    if let Some(why) = not_random(&bytes) {
        return refuse(format!("{why}; {GENERATE}"));
    }
    Ok(())
}

/// Checks every internal token.
pub fn check_internal_tokens(tokens: &InternalTokens) -> Result<(), ConfigError> {
    for (i, token) in tokens.all().enumerate() {
        let n = i + 1;
        let refuse = |problem: String| {
            Err(ConfigError::new(
                "REACTIVATION_INTERNAL_TOKENS",
                format!("token #{n} {problem}"),
            ))
        };
        // `InternalTokens::parse` checked the base64 and the length.
        let bytes = decode_base64(token).unwrap_or_default();
        if let Some(place) = published(&bytes) {
            return refuse(format!("is a published secret ({place}); {GENERATE}"));
        }
        if let Some(why) = not_random(&bytes) {
            return refuse(format!("{why}; {GENERATE}"));
        }
    }
    Ok(())
}

/// Checks that no webhook secret is a published one.
fn check_webhook_secret(variable: &str, secret: &webhooks::Secret) -> Result<(), ConfigError> {
    for (text, place) in PUBLISHED_SECRETS {
        let same = decode_base64(text)
            .and_then(|bytes| webhooks::Secret::from_bytes(&bytes).ok())
            .is_some_and(|p| &p == secret);
        if same {
            return Err(ConfigError::new(
                variable,
                format!("holds a published secret ({place}); use the carrier's own secret"),
            ));
        }
    }
    Ok(())
}

/// Every check of the settings of `serve <service>` (no I/O).
pub fn check_settings(service: Service, settings: &Settings) -> Result<(), ConfigError> {
    match &settings.secret_key {
        Some(key) if settings.secret_key_variable == "REACTIVATION_SECRET_KEY" => {
            check_secret_key(key)?;
        }
        Some(key) => {
            // Every key of the list, old ones too: a published old key reads the data.
            let keys = std::iter::once(key).chain(&settings.old_secret_keys);
            for (i, key) in keys.enumerate() {
                check_secret_key_in(settings.secret_key_variable, Some(i + 1), key)?;
            }
        }
        None if uses_secret_key(service) => {
            settings.require_secret_key()?;
        }
        None => {}
    }
    if uses_internal_api(service) {
        check_internal_tokens(settings.require_internal_tokens()?)?;
    } else {
        check_internal_tokens(&settings.internal_tokens)?;
    }
    for secret in &settings.carrier_webhook_secrets {
        check_webhook_secret("REACTIVATION_CARRIER_WEBHOOK_SECRETS", secret)?;
    }
    if let Some(secret) = &settings.sim_webhook_secret {
        check_webhook_secret("REACTIVATION_SIM_WEBHOOK_SECRET", secret)?;
    }
    Ok(())
}

/// The refusal for a database holding the demo accounts `usernames` (none: `Ok`).
pub fn check_demo_accounts(usernames: &[String]) -> Result<(), ConfigError> {
    if usernames.is_empty() {
        return Ok(());
    }
    Err(ConfigError::new(
        "DATABASE_URL",
        format!(
            "names a database holding demo agent accounts seeded by `reactivation dev` ({}), whose password is published; serve a database `dev` never seeded with demo data",
            usernames.join(", ")
        ),
    ))
}

/// Refuses a database holding demo accounts.
pub async fn refuse_demo_data(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let demo = case_store::demo::demo_agents(pool)
        .await
        .map_err(anyhow::Error::from)
        .context("looking for demo accounts (has `reactivation migrate` run?)")?;
    Ok(check_demo_accounts(&demo)?)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Base64 of 32 bytes from a fixed but random-looking sequence.
    fn random_like(seed: u8) -> String {
        use base64::{Engine, engine::general_purpose::STANDARD};
        let bytes: Vec<u8> = (0..32u32)
            .map(|i| (i.wrapping_mul(97).wrapping_add(u32::from(seed)) % 251) as u8 ^ 0x5a)
            .collect();
        STANDARD.encode(bytes)
    }

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned()).expect("well-formed settings")
    }

    fn good() -> Vec<(&'static str, String)> {
        vec![
            ("REACTIVATION_SECRET_KEY", random_like(1)),
            ("REACTIVATION_INTERNAL_TOKENS", random_like(2)),
        ]
    }

    fn check(service: Service, changes: &[(&'static str, &str)]) -> Result<(), ConfigError> {
        let mut pairs: HashMap<&str, String> = good().into_iter().collect();
        for (k, v) in changes {
            if v.is_empty() {
                pairs.remove(*k);
            } else {
                pairs.insert(*k, (*v).to_owned());
            }
        }
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        check_settings(service, &settings(&pairs))
    }

    fn refused_for(service: Service, changes: &[(&'static str, &str)], variable: &str) {
        let err = check(service, changes).expect_err("refused");
        assert_eq!(err.variable, variable, "{err}");
        assert!(!err.to_string().contains('\n'), "one line: {err}");
        for (_, value) in changes {
            if value.len() > 8 {
                assert!(!err.to_string().contains(value), "the secret leaks: {err}");
            }
        }
    }

    #[test]
    fn random_secrets_pass_for_every_service() {
        for service in [
            Service::Gateway,
            Service::Identity,
            Service::Risk,
            Service::Provisioning,
            Service::Timers,
            Service::Webhooks,
            Service::CarrierSim,
            Service::All,
        ] {
            check(service, &[]).unwrap();
        }
        let whsec = format!("whsec_{}", random_like(3));
        check(
            Service::Gateway,
            &[("REACTIVATION_CARRIER_WEBHOOK_SECRETS", &whsec)],
        )
        .unwrap();
    }

    #[test]
    fn every_published_secret_key_is_refused() {
        for (text, _) in PUBLISHED_SECRETS {
            if decode_base64(text).is_some_and(|b| b.len() >= 32) {
                refused_for(
                    Service::Gateway,
                    &[("REACTIVATION_SECRET_KEY", text)],
                    "REACTIVATION_SECRET_KEY",
                );
                let err = check_secret_key(text).unwrap_err();
                assert!(err.problem.contains("published"), "{err}");
            }
        }
        // The same bytes in another base64 form are the same secret.
        let unpadded = "dGVzdC1vbmx5LXNlY3JldC1rZXktZm9yLXN5c3RlbS10ZXN0cy0wMDAwMDAwMA";
        refused_for(
            Service::Risk,
            &[("REACTIVATION_SECRET_KEY", unpadded)],
            "REACTIVATION_SECRET_KEY",
        );
        assert_eq!(
            dev::DEV_WEBHOOK_SECRET,
            format!("whsec_{}", dev::DEV_WEBHOOK_SECRET_BASE64)
        );
    }

    #[test]
    fn a_short_or_typed_key_is_refused() {
        let short = "MDEyMzQ1Njc4OWFiY2RlZg=="; // 16 bytes
        let err = check_secret_key(short).unwrap_err();
        assert!(err.problem.contains("16 bytes"), "{err}");
        // A pass-phrase of 40 characters, base64-encoded.
        let text = "Y29ycmVjdCBob3JzZSBiYXR0ZXJ5IHN0YXBsZSBhbmQgbW9yZSB3b3Jkcw==";
        assert!(check_secret_key(text).unwrap_err().problem.contains("text"));
        // 32 bytes of one value.
        let same = "//////////////////////////////////////////8=";
        assert!(
            check_secret_key(same)
                .unwrap_err()
                .problem
                .contains("too few")
        );
        assert!(check_secret_key("not base64!").is_err());
        for key in [short, text, same] {
            refused_for(
                Service::Webhooks,
                &[("REACTIVATION_SECRET_KEY", key)],
                "REACTIVATION_SECRET_KEY",
            );
        }
        check_secret_key(&random_like(9)).unwrap();
    }

    #[test]
    fn every_key_of_the_list_is_checked_old_ones_too() {
        let list = format!("{} {}", random_like(6), random_like(7));
        // Keys rotated in: the single key (of `good()`) listed as the old one.
        let rotated = format!("{} {}", random_like(6), random_like(1));
        check(Service::Gateway, &[("REACTIVATION_SECRET_KEYS", &rotated)]).unwrap();
        let unset = ("REACTIVATION_SECRET_KEY", "");
        check(
            Service::Gateway,
            &[("REACTIVATION_SECRET_KEYS", &list), unset],
        )
        .unwrap();
        let published = format!("{} {}", random_like(6), dev::DEV_SECRET_KEY);
        refused_for(
            Service::Gateway,
            &[("REACTIVATION_SECRET_KEYS", &published), unset],
            "REACTIVATION_SECRET_KEYS",
        );
        let err = check(
            Service::Identity,
            &[("REACTIVATION_SECRET_KEYS", &published), unset],
        )
        .unwrap_err();
        assert!(
            err.problem.starts_with("key #2 is a published secret"),
            "{err}"
        );
        let short = format!("MDEyMzQ1Njc4OWFiY2RlZg== {}", random_like(6));
        let err = check(
            Service::Webhooks,
            &[("REACTIVATION_SECRET_KEYS", &short), unset],
        )
        .unwrap_err();
        assert!(err.problem.starts_with("key #1 holds 16 bytes"), "{err}");
    }

    #[test]
    fn the_key_is_required_where_it_is_used() {
        for service in [
            Service::Gateway,
            Service::Identity,
            Service::Webhooks,
            Service::All,
        ] {
            refused_for(
                service,
                &[("REACTIVATION_SECRET_KEY", "")],
                "REACTIVATION_SECRET_KEY",
            );
        }
        check(Service::Risk, &[("REACTIVATION_SECRET_KEY", "")]).unwrap();
    }

    #[test]
    fn internal_tokens_are_required_where_the_internal_api_is_served_or_called() {
        for service in [Service::Gateway, Service::Identity, Service::All] {
            refused_for(
                service,
                &[("REACTIVATION_INTERNAL_TOKENS", "")],
                "REACTIVATION_INTERNAL_TOKENS",
            );
        }
        for service in [Service::Risk, Service::Timers, Service::CarrierSim] {
            check(service, &[("REACTIVATION_INTERNAL_TOKENS", "")]).unwrap();
        }
        // Published or typed tokens are refused, naming their position.
        let published = format!(
            "{} {}",
            random_like(4),
            "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA"
        );
        refused_for(
            Service::Identity,
            &[("REACTIVATION_INTERNAL_TOKENS", &published)],
            "REACTIVATION_INTERNAL_TOKENS",
        );
        let typed = "dGhpcyBpcyBhIHR5cGVkIHBhc3MtcGhyYXNlLCBub3QgcmFuZG9t";
        let err = check(Service::Gateway, &[("REACTIVATION_INTERNAL_TOKENS", typed)]).unwrap_err();
        assert!(err.problem.starts_with("token #1"), "{err}");
    }

    #[test]
    fn published_webhook_secrets_are_refused() {
        let dev = dev::DEV_WEBHOOK_SECRET;
        let compose = "whsec_Y29tcG9zZS1kZW1vLXdlYmhvb2stc2VjcmV0LTAwMDAwMDA=";
        let spec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        for secret in [dev, compose, spec] {
            let list = format!("whsec_{} {secret}", random_like(5));
            refused_for(
                Service::Gateway,
                &[("REACTIVATION_CARRIER_WEBHOOK_SECRETS", &list)],
                "REACTIVATION_CARRIER_WEBHOOK_SECRETS",
            );
            let sim_url = "http://127.0.0.1:8080/v1/webhooks/carrier";
            refused_for(
                Service::CarrierSim,
                &[
                    ("REACTIVATION_SIM_WEBHOOK_URL", sim_url),
                    ("REACTIVATION_SIM_WEBHOOK_SECRET", secret),
                ],
                "REACTIVATION_SIM_WEBHOOK_SECRET",
            );
        }
    }

    #[test]
    fn demo_accounts_are_named_in_one_line() {
        check_demo_accounts(&[]).unwrap();
        let err =
            check_demo_accounts(&["admin.demo".to_owned(), "cs.demo".to_owned()]).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(err.problem.contains("admin.demo, cs.demo"), "{err}");
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn random_bytes_pass_the_randomness_check() {
        // Many keys from the OS generator: none is refused as typed.
        for _ in 0..1000 {
            let tokens = InternalTokens::generate();
            let bytes = decode_base64(tokens.current().unwrap()).unwrap();
            assert_eq!(not_random(&bytes), None);
        }
    }
}
