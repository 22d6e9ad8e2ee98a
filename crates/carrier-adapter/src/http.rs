//! [`HttpCarrier`]: the [`Carrier`] trait over the carrier's HTTP API.
//!
//! Every call has a connect and a request time limit, follows no redirects, and is
//! retried (3 attempts, exponential backoff with jitter from ~100 ms) on
//! [`CarrierError::Unavailable`] only. All calls qualify: GETs and the match / verify /
//! check lookups change nothing, `send_message` / `submit_order` carry an
//! `Idempotency-Key` the carrier deduplicates on, and `cancel_order` is idempotent.

use std::{fmt, time::Duration};

use async_trait::async_trait;
use case_domain::{Msisdn, PersonName, ResidentId};
use rand::Rng;
use reqwest::{Method, Url, redirect};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    Carrier, CarrierError, ContactOnFile, MessageChannel, OrderState, Restoration, RiskSignals,
    SentMessage, ServiceOrder, ServiceOrderRequest, error,
};

/// Attempts per call, the first included.
const DEFAULT_ATTEMPTS: u32 = 3;
/// Backoff before the second attempt; doubled for each further one, then jittered ±50 %.
const DEFAULT_FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Upper bound of a connect, whatever the request time limit.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The carrier's base URL or the HTTP client could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("carrier client: {0}")]
pub struct CarrierConfigError(String);

/// The carrier's HTTP API (e.g. the simulator at `http://127.0.0.1:8090`).
#[derive(Clone)]
pub struct HttpCarrier {
    client: reqwest::Client,
    /// Without a trailing slash.
    base: String,
    /// The base without credentials, for `Debug`.
    shown_base: String,
    attempts: u32,
    first_backoff: Duration,
}

impl fmt::Debug for HttpCarrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCarrier")
            .field("base", &self.shown_base)
            .field("attempts", &self.attempts)
            .field("first_backoff", &self.first_backoff)
            .finish_non_exhaustive()
    }
}

impl HttpCarrier {
    /// A client for the carrier at `base_url` (http or https, no query), each request
    /// limited to `timeout` (connects to at most `timeout` and 5 s).
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, CarrierConfigError> {
        let url = Url::parse(base_url.trim())
            .map_err(|e| CarrierConfigError(format!("base URL is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CarrierConfigError(
                "base URL must be http:// or https://".into(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(CarrierConfigError(
                "base URL must not have a query or fragment".into(),
            ));
        }
        if timeout.is_zero() {
            return Err(CarrierConfigError("timeout must be positive".into()));
        }
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
            .timeout(timeout)
            .redirect(redirect::Policy::none())
            .user_agent(concat!(
                "reactivation-carrier-adapter/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| CarrierConfigError(format!("cannot build the HTTP client ({e})")))?;
        Ok(Self {
            client,
            base: url.as_str().trim_end_matches('/').to_owned(),
            shown_base: shown.as_str().trim_end_matches('/').to_owned(),
            attempts: DEFAULT_ATTEMPTS,
            first_backoff: DEFAULT_FIRST_BACKOFF,
        })
    }

    /// Changes the retry policy: `attempts` in all (at least 1), the first backoff
    /// `first_backoff` (doubled each time, jittered). Tests use short backoffs.
    #[must_use]
    pub fn with_retries(mut self, attempts: u32, first_backoff: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.first_backoff = first_backoff;
        self
    }

    /// The base URL the client calls (without credentials).
    pub fn base_url(&self) -> &str {
        &self.shown_base
    }

    /// Sends one logical call, retrying on `Unavailable` when `idempotent`.
    async fn call<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, CarrierError> {
        let attempts = if call.idempotent { self.attempts } else { 1 };
        let mut attempt = 1;
        let (status, body) = loop {
            match self.attempt(&call).await {
                Ok(answer) => break answer,
                Err(e) if e.is_retryable() && attempt < attempts => {
                    let wait = backoff(self.first_backoff, attempt);
                    tracing::warn!(
                        op = call.op,
                        msisdn = call.masked.as_deref().unwrap_or("-"),
                        attempt,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        error.message = %e,
                        "carrier call failed, retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => {
                    let msisdn = call.masked.as_deref().unwrap_or("-");
                    if matches!(e, CarrierError::NotFound | CarrierError::NoContactOnFile) {
                        // Ordinary answers about unknown numbers or missing contacts.
                        tracing::debug!(op = call.op, msisdn, attempt, error.message = %e, "carrier said no");
                    } else {
                        tracing::warn!(op = call.op, msisdn, attempt, error.message = %e, "carrier call failed");
                    }
                    return Err(e);
                }
            }
        };
        tracing::debug!(
            op = call.op,
            msisdn = call.masked.as_deref().unwrap_or("-"),
            attempt,
            status,
            "carrier call answered"
        );
        serde_json::from_slice(&body).map_err(|e| {
            // serde's message may quote the offending value: keep only its position.
            CarrierError::Protocol(format!(
                "{} answer does not parse (line {}, column {})",
                call.op,
                e.line(),
                e.column()
            ))
        })
    }

    /// One HTTP exchange: `Ok` with a 2xx status and its body, else the mapped error.
    async fn attempt(&self, call: &Call<'_>) -> Result<(u16, Vec<u8>), CarrierError> {
        let url = format!("{}{}", self.base, call.path);
        let mut request = self
            .client
            .request(call.method.clone(), url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(key) = call.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| error::from_transport(&e))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| error::from_transport(&e))?;
        if (200..300).contains(&status) {
            Ok((status, body.to_vec()))
        } else {
            Err(error::from_status(status, &body))
        }
    }
}

/// The wait before attempt `attempt + 1`: `first · 2^(attempt-1)`, jittered to 50–150 %.
fn backoff(first: Duration, attempt: u32) -> Duration {
    let base = first.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
    let factor: f64 = rand::rng().random_range(0.5..1.5);
    base.mul_f64(factor)
}

/// One logical request to the carrier.
struct Call<'a> {
    /// A short name for logs.
    op: &'static str,
    method: Method,
    /// Starts with `/`.
    path: String,
    body: Option<Value>,
    idempotency_key: Option<&'a str>,
    /// Safe to send again: changes nothing, or deduplicated by its idempotency key.
    idempotent: bool,
    /// The subscriber's masked number, for logs.
    masked: Option<String>,
}

impl<'a> Call<'a> {
    fn get(op: &'static str, path: String, msisdn: Option<&Msisdn>) -> Self {
        Self {
            op,
            method: Method::GET,
            path,
            body: None,
            idempotency_key: None,
            idempotent: true,
            masked: msisdn.map(Msisdn::masked),
        }
    }

    /// A POST that changes nothing at the carrier (a lookup with a body).
    fn lookup(op: &'static str, path: String, msisdn: &Msisdn, body: Value) -> Self {
        Self {
            method: Method::POST,
            body: Some(body),
            ..Self::get(op, path, Some(msisdn))
        }
    }

    /// A POST with an effect, deduplicated by the carrier on `key`.
    fn keyed(op: &'static str, path: String, msisdn: &Msisdn, body: Value, key: &'a str) -> Self {
        Self {
            idempotency_key: Some(key),
            ..Self::lookup(op, path, msisdn, body)
        }
    }
}

/// Checks an idempotency key before it becomes a header.
fn check_key(key: &str) -> Result<(), CarrierError> {
    let ok = (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(CarrierError::Rejected {
            status: 400,
            detail:
                "idempotency key must be 1 to 255 visible ASCII characters (refused before sending)"
                    .into(),
        })
    }
}

#[derive(Deserialize)]
struct MatchAnswer {
    #[serde(rename = "match")]
    matches: bool,
}

#[derive(Deserialize)]
struct VerifyAnswer {
    valid: bool,
}

#[derive(Deserialize)]
struct ContactsAnswer {
    contacts: Vec<ContactOnFile>,
}

#[derive(Deserialize)]
struct CheckAnswer {
    matched: u32,
}

/// A TMF641-style service order as the carrier sends it.
#[derive(Deserialize)]
struct WireOrder {
    id: String,
    #[serde(rename = "externalId")]
    external_id: Uuid,
    state: OrderState,
    restoration: Restoration,
}

/// A TMF641-style cancellation: its own state (`done`, `terminatedWithError`) and the
/// order as it stands after it.
#[derive(Deserialize)]
struct WireCancellation {
    #[serde(rename = "serviceOrder")]
    service_order: WireOrder,
}

impl WireOrder {
    fn into_order(self, expected: Uuid) -> Result<ServiceOrder, CarrierError> {
        if self.external_id != expected {
            return Err(CarrierError::Protocol(
                "service order answer is about another order".into(),
            ));
        }
        Ok(ServiceOrder {
            order_id: self.external_id,
            carrier_ref: self.id,
            state: self.state,
            restoration: self.restoration,
        })
    }
}

fn subscriber_path(msisdn: &Msisdn, rest: &str) -> String {
    // A validated E.164 number is `+` and digits: nothing to escape in a path.
    format!("/carrier/v1/subscribers/{}{rest}", msisdn.e164())
}

#[async_trait]
impl Carrier for HttpCarrier {
    async fn subscriber_matches(
        &self,
        msisdn: &Msisdn,
        name: &PersonName,
        id: &ResidentId,
    ) -> Result<bool, CarrierError> {
        let body = json!({
            "msisdn": msisdn.e164(),
            "full_name": name.expose(),
            "id_number": id.expose(),
        });
        let answer: MatchAnswer = self
            .call(Call::lookup(
                "subscriber_matches",
                "/carrier/v1/subscribers/match".into(),
                msisdn,
                body,
            ))
            .await?;
        Ok(answer.matches)
    }

    async fn verify_service_password(
        &self,
        msisdn: &Msisdn,
        password: &str,
    ) -> Result<bool, CarrierError> {
        let answer: VerifyAnswer = self
            .call(Call::lookup(
                "verify_service_password",
                subscriber_path(msisdn, "/service-password/verify"),
                msisdn,
                json!({ "password": password }),
            ))
            .await?;
        Ok(answer.valid)
    }

    async fn contacts_on_file(&self, msisdn: &Msisdn) -> Result<Vec<ContactOnFile>, CarrierError> {
        let answer: ContactsAnswer = self
            .call(Call::get(
                "contacts_on_file",
                subscriber_path(msisdn, "/contacts"),
                Some(msisdn),
            ))
            .await?;
        Ok(answer.contacts)
    }

    async fn send_message(
        &self,
        msisdn: &Msisdn,
        channel: MessageChannel,
        body: &str,
        idempotency_key: &str,
    ) -> Result<SentMessage, CarrierError> {
        check_key(idempotency_key)?;
        let payload = json!({
            "msisdn": msisdn.e164(),
            "channel": channel.as_str(),
            "body": body,
        });
        self.call(Call::keyed(
            "send_message",
            "/carrier/v1/messages".into(),
            msisdn,
            payload,
            idempotency_key,
        ))
        .await
    }

    async fn count_call_record_matches(
        &self,
        msisdn: &Msisdn,
        counterparties: &[Msisdn],
    ) -> Result<u32, CarrierError> {
        let numbers: Vec<&str> = counterparties.iter().map(Msisdn::e164).collect();
        let answer: CheckAnswer = self
            .call(Call::lookup(
                "count_call_record_matches",
                subscriber_path(msisdn, "/call-records/check"),
                msisdn,
                json!({ "counterparties": numbers }),
            ))
            .await?;
        Ok(answer.matched)
    }

    async fn risk_signals(&self, msisdn: &Msisdn) -> Result<RiskSignals, CarrierError> {
        self.call(Call::get(
            "risk_signals",
            subscriber_path(msisdn, "/risk-signals"),
            Some(msisdn),
        ))
        .await
    }

    async fn submit_order(
        &self,
        order: &ServiceOrderRequest,
    ) -> Result<ServiceOrder, CarrierError> {
        let key = order.order_id.to_string();
        let payload = json!({
            "externalId": key,
            "msisdn": order.msisdn.e164(),
            "action": "resume",
            "restoration": order.restoration.as_str(),
        });
        let answer: WireOrder = self
            .call(Call::keyed(
                "submit_order",
                "/carrier/v1/serviceOrder".into(),
                &order.msisdn,
                payload,
                &key,
            ))
            .await?;
        answer.into_order(order.order_id)
    }

    async fn get_order(&self, order_id: Uuid) -> Result<ServiceOrder, CarrierError> {
        let answer: WireOrder = self
            .call(Call::get(
                "get_order",
                format!("/carrier/v1/serviceOrder/{order_id}"),
                None,
            ))
            .await?;
        answer.into_order(order_id)
    }

    async fn cancel_order(
        &self,
        order: &ServiceOrderRequest,
    ) -> Result<ServiceOrder, CarrierError> {
        let key = order.order_id.to_string();
        let payload = json!({
            "serviceOrder": {
                "externalId": key,
                "msisdn": order.msisdn.e164(),
                "restoration": order.restoration.as_str(),
            },
            "cancellationReason": "superseded by a retry",
        });
        let answer: WireCancellation = self
            .call(Call::keyed(
                "cancel_order",
                "/carrier/v1/cancelServiceOrder".into(),
                &order.msisdn,
                payload,
                &key,
            ))
            .await?;
        answer.service_order.into_order(order.order_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_credentials_never_shown() {
        assert!(HttpCarrier::new("ftp://carrier", Duration::from_secs(1)).is_err());
        assert!(HttpCarrier::new("not a url", Duration::from_secs(1)).is_err());
        assert!(HttpCarrier::new("http://c/?q=1", Duration::from_secs(1)).is_err());
        assert!(HttpCarrier::new("http://c", Duration::ZERO).is_err());
        let carrier = HttpCarrier::new(
            "https://user:secret@carrier.example/api/",
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(carrier.base, "https://user:secret@carrier.example/api");
        let shown = format!("{carrier:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("user"),
            "{shown}"
        );
        assert_eq!(carrier.base_url(), "https://carrier.example/api");
    }

    #[test]
    fn backoff_doubles_with_jitter() {
        let first = Duration::from_millis(100);
        for _ in 0..50 {
            let one = backoff(first, 1);
            let two = backoff(first, 2);
            assert!((50..=150).contains(&one.as_millis()), "{one:?}");
            assert!((100..=300).contains(&two.as_millis()), "{two:?}");
        }
    }

    #[test]
    fn idempotency_keys_are_checked_before_sending() {
        assert!(check_key("3f1c-ok").is_ok());
        for bad in ["", "has space", "line\nbreak", &"k".repeat(256)] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn orders_about_another_id_are_refused() {
        let wire = WireOrder {
            id: "SO-1".into(),
            external_id: Uuid::nil(),
            state: OrderState::Completed,
            restoration: Restoration::Full,
        };
        assert!(matches!(
            wire.into_order(Uuid::now_v7()),
            Err(CarrierError::Protocol(_))
        ));
    }
}
