//! The identity port over HTTP: calls the identity service's internal API and reads
//! its answers back into the typed outcomes of `case_workflows::identity`, which the
//! customer API renders.

use std::time::Duration;

use async_trait::async_trait;
use case_domain::CaseState;
use case_workflows::identity::{CodeSent, IdentityError, IdentityPort, Proof, Verdict};
use serde::Deserialize;
use uuid::Uuid;

use crate::customer::{OtpSent, VerificationRequest, VerificationResponse};

/// Calls the identity service at a base URL.
#[derive(Debug, Clone)]
pub struct HttpIdentity {
    base_url: String,
    http: reqwest::Client,
}

impl HttpIdentity {
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

    fn url(&self, case_id: Uuid, what: &str) -> String {
        format!("{}/internal/v1/cases/{case_id}/{what}", self.base_url)
    }
}

#[async_trait]
impl IdentityPort for HttpIdentity {
    async fn send_code(&self, case_id: Uuid) -> Result<CodeSent, IdentityError> {
        let sent: OtpSent = call(self.http.post(self.url(case_id, "otp"))).await?;
        Ok(CodeSent {
            remaining_sends: sent.remaining_sends,
        })
    }

    async fn verify(&self, case_id: Uuid, proof: Proof) -> Result<Verdict, IdentityError> {
        let body = VerificationRequest::from(proof);
        let answer: VerificationResponse = call(
            self.http
                .post(self.url(case_id, "verifications"))
                .json(&body),
        )
        .await?;
        Ok(Verdict {
            accepted: answer.accepted,
            remaining_attempts: answer.remaining_attempts,
        })
    }
}

/// The problem answer of the identity service, as far as it is read here.
#[derive(Debug, Deserialize)]
struct ProblemBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    retry_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn unreachable(e: reqwest::Error) -> IdentityError {
    IdentityError::Unreachable(e.without_url().to_string())
}

async fn call<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> Result<T, IdentityError> {
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let body = response.bytes().await.map_err(unreachable)?;
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|e| IdentityError::Internal(anyhow::anyhow!("identity service answer: {e}")));
    }
    Err(failure(status.as_u16(), &body))
}

/// The typed failure an error answer of the identity service stands for.
fn failure(status: u16, body: &[u8]) -> IdentityError {
    let problem: Option<ProblemBody> = serde_json::from_slice(body).ok();
    let slug = problem
        .as_ref()
        .and_then(|p| p.kind.rsplit('/').next())
        .unwrap_or_default()
        .to_owned();
    match (slug.as_str(), problem) {
        ("not-found", _) => IdentityError::NotFound,
        ("validation", Some(p)) => IdentityError::Invalid(p.detail),
        (
            "identity-locked",
            Some(ProblemBody {
                retry_at: Some(frees_at),
                ..
            }),
        ) => IdentityError::BudgetSpent { frees_at },
        ("identity-locked", _) => IdentityError::Locked,
        ("other-case-in-progress", _) => IdentityError::OtherCaseProven,
        ("proof-in-progress", _) => IdentityError::ProofInFlight,
        ("too-many-codes", _) => IdentityError::TooManyCodes,
        ("no-contact-on-file", _) => IdentityError::NoContactOnFile,
        ("carrier-unavailable", _) => IdentityError::CarrierUnavailable,
        ("wrong-state", Some(p)) => match p.state.as_deref().and_then(CaseState::parse) {
            Some(state) => IdentityError::WrongState(state),
            None => IdentityError::Internal(anyhow::anyhow!(
                "identity service: wrong-state answer without a state"
            )),
        },
        _ if matches!(status, 502..=504) => {
            IdentityError::Unreachable(format!("identity service answered {status}"))
        }
        _ => IdentityError::Internal(anyhow::anyhow!("identity service answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(slug: &str, detail: &str, extra: serde_json::Value) -> Vec<u8> {
        let mut body = serde_json::json!({
            "type": format!("https://reactivation.example/problems/{slug}"),
            "title": "t", "status": 0, "detail": detail,
        });
        if let (Some(map), Some(more)) = (body.as_object_mut(), extra.as_object()) {
            map.extend(more.clone());
        }
        serde_json::to_vec(&body).unwrap()
    }

    #[test]
    fn problem_answers_are_read_back_into_their_failures() {
        let none = serde_json::json!({});
        assert!(matches!(
            failure(404, &problem("not-found", "", none.clone())),
            IdentityError::NotFound
        ));
        assert!(
            matches!(failure(422, &problem("validation", "code must be six digits", none.clone())), IdentityError::Invalid(d) if d == "code must be six digits")
        );
        assert!(matches!(
            failure(423, &problem("identity-locked", "", none.clone())),
            IdentityError::Locked
        ));
        assert!(matches!(
            failure(429, &problem("too-many-codes", "", none.clone())),
            IdentityError::TooManyCodes
        ));
        assert!(matches!(
            failure(422, &problem("no-contact-on-file", "", none.clone())),
            IdentityError::NoContactOnFile
        ));
        assert!(matches!(
            failure(503, &problem("carrier-unavailable", "", none.clone())),
            IdentityError::CarrierUnavailable
        ));
        assert!(matches!(
            failure(
                409,
                &problem(
                    "wrong-state",
                    "",
                    serde_json::json!({"state": "security_review"})
                )
            ),
            IdentityError::WrongState(CaseState::SecurityReview)
        ));
        assert!(matches!(
            failure(500, &problem("internal", "", none)),
            IdentityError::Internal(_)
        ));
        assert!(matches!(
            failure(502, b"bad gateway"),
            IdentityError::Unreachable(_)
        ));
    }
}
