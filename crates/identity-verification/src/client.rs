//! The gateway's client of this service's internal API. It passes answers through
//! unchanged (status, body and content type), so the service alone decides them.

use std::time::Duration;

use uuid::Uuid;

use crate::api::VerificationRequest;

/// An answer of the identity service, to be relayed as is.
#[derive(Debug, Clone)]
pub struct Relayed {
    /// HTTP status.
    pub status: u16,
    /// Content type.
    pub content_type: String,
    /// Body.
    pub body: Vec<u8>,
}

/// The identity service could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("identity service unreachable: {0}")]
pub struct Unreachable(String);

/// Calls the identity service at a base URL.
#[derive(Debug, Clone)]
pub struct IdentityClient {
    base_url: String,
    http: reqwest::Client,
}

impl IdentityClient {
    /// A client for the service at `base_url` (e.g. `http://127.0.0.1:8081`).
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// Asks for a one-time code to be sent.
    pub async fn send_code(&self, case_id: Uuid) -> Result<Relayed, Unreachable> {
        let url = format!("{}/internal/v1/cases/{case_id}/otp", self.base_url);
        relay(self.http.post(url)).await
    }

    /// Submits a proof.
    pub async fn verify(
        &self,
        case_id: Uuid,
        request: &VerificationRequest,
    ) -> Result<Relayed, Unreachable> {
        let url = format!(
            "{}/internal/v1/cases/{case_id}/verifications",
            self.base_url
        );
        relay(self.http.post(url).json(request)).await
    }
}

async fn relay(request: reqwest::RequestBuilder) -> Result<Relayed, Unreachable> {
    let response = request
        .send()
        .await
        .map_err(|e| Unreachable(e.without_url().to_string()))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let body = response
        .bytes()
        .await
        .map_err(|e| Unreachable(e.without_url().to_string()))?
        .to_vec();
    Ok(Relayed {
        status,
        content_type,
        body,
    })
}
