//! The identity port over HTTP: calls the identity service's internal API and reads
//! its answers back into the typed outcomes of `case_workflows::identity`, which the
//! customer API renders.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use async_trait::async_trait;
use case_domain::{CaseState, risk::RiskTier};
use case_workflows::identity::{
    CASE_TOKEN_HASH_HEADER, CodeSent, IdentityError, IdentityPort, Proof, RecoveryOutcome,
    RecoveryStarted, Verdict,
};
use data_protection::TokenHash;
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use crate::customer::{
    OtpSent, RecoveryAccepted, RecoveryCode, RecoveryRequest, RecoveryResult, VerificationRequest,
    VerificationResponse,
};

/// Calls the identity service at a base URL, with the internal bearer token.
#[derive(Clone)]
pub struct HttpIdentity {
    base_url: String,
    http: reqwest::Client,
    /// `Bearer <token>` (`REACTIVATION_INTERNAL_TOKENS`' current token), marked sensitive.
    authorization: Option<reqwest::header::HeaderValue>,
    /// The gradings waiting for a call, started at the first one ([`gather_grades`]).
    grades: Arc<OnceLock<mpsc::Sender<GradeAsk>>>,
}

/// A case to grade, and where its answer goes.
type GradeAsk = (Uuid, oneshot::Sender<Result<RiskTier, IdentityError>>);

/// The most cases one grading call names (the identity service's limit).
const GRADES_PER_CALL: usize = 100;

/// Grading calls in flight at once; the openings that arrive while all are busy go
/// together in the next.
const GRADE_CALLS_IN_FLIGHT: usize = 4;

/// Gradings that may wait for a call; past that an opening is not graded at once
/// (it is at its first code request or proof, as when the identity service is down).
const GRADES_WAITING: usize = 10_000;

impl std::fmt::Debug for HttpIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpIdentity")
            .field("base_url", &self.base_url)
            .field("authenticated", &self.authorization.is_some())
            .finish()
    }
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
            authorization: None,
            grades: Arc::default(),
        })
    }

    /// Sends `token` as the bearer credential of every call (the identity service
    /// refuses calls without one of its `REACTIVATION_INTERNAL_TOKENS`).
    pub fn with_token(mut self, token: &str) -> anyhow::Result<Self> {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| anyhow::anyhow!("REACTIVATION_INTERNAL_TOKENS: not a header value"))?;
        value.set_sensitive(true);
        self.authorization = Some(value);
        Ok(self)
    }

    /// Where gradings wait for a call; the first use starts the task that makes the
    /// calls.
    fn grade_queue(&self) -> &mpsc::Sender<GradeAsk> {
        self.grades.get_or_init(|| {
            let (queue, asks) = mpsc::channel(GRADES_WAITING);
            let mut caller = self.clone();
            caller.grades = Arc::default();
            tokio::spawn(gather_grades(caller, asks));
            queue
        })
    }

    /// One call grading `asks`; each gets its case's answer.
    async fn grade_batch(&self, asks: Vec<GradeAsk>) {
        let mut ids: Vec<Uuid> = asks.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let graded = match self.call_grades(&ids).await {
            Ok(graded) => graded,
            Err(failed) => {
                for (_, answer) in asks {
                    let _ = answer.send(Err(failed.error()));
                }
                return;
            }
        };
        for (case_id, answer) in asks {
            let _ = answer.send(match graded.get(&case_id) {
                Some(GradeOutcome {
                    proof_tier: Some(tier),
                    ..
                }) => Ok(*tier),
                Some(GradeOutcome {
                    problem: Some(problem),
                    ..
                }) => {
                    let status = problem["status"]
                        .as_u64()
                        .and_then(|s| u16::try_from(s).ok());
                    Err(failure(
                        status.unwrap_or(500),
                        &serde_json::to_vec(problem).unwrap_or_default(),
                    ))
                }
                _ => Err(IdentityError::Internal(anyhow::anyhow!(
                    "identity service: no grading of case {case_id} in its answer"
                ))),
            });
        }
    }

    /// `POST /internal/v1/grades` for `ids`: each case's outcome, or why the call
    /// as a whole failed.
    async fn call_grades(
        &self,
        ids: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, GradeOutcome>, CallFailed> {
        let unreachable = |e: reqwest::Error| CallFailed::Unreachable(e.without_url().to_string());
        let response = self
            .post_to("grades")
            .json(&serde_json::json!({ "case_ids": ids }))
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(CallFailed::Answered(status.as_u16(), body.to_vec()));
        }
        let answer: GradesAnswer =
            serde_json::from_slice(&body).map_err(|e| CallFailed::Unreadable(e.to_string()))?;
        Ok(answer.grades.into_iter().map(|g| (g.case_id, g)).collect())
    }

    fn post(&self, case_id: Uuid, what: &str) -> reqwest::RequestBuilder {
        self.post_to(&format!("cases/{case_id}/{what}"))
    }

    /// A call to `/internal/v1/{path}`, with the bearer credential.
    fn post_to(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .post(format!("{}/internal/v1/{path}", self.base_url));
        match &self.authorization {
            Some(value) => request.header(reqwest::header::AUTHORIZATION, value.clone()),
            None => request,
        }
    }
}

/// The hash of the case token the subscriber presented, for the identity service to
/// check in its read of the case (`CASE_TOKEN_HASH_HEADER`).
fn holding(request: reqwest::RequestBuilder, holder: &TokenHash) -> reqwest::RequestBuilder {
    request.header(CASE_TOKEN_HASH_HEADER, holder.encode())
}

#[async_trait]
impl IdentityPort for HttpIdentity {
    async fn send_code(&self, case_id: Uuid, holder: TokenHash) -> Result<CodeSent, IdentityError> {
        let sent: OtpSent = call(holding(self.post(case_id, "otp"), &holder)).await?;
        Ok(CodeSent {
            remaining_sends: sent.remaining_sends,
        })
    }

    async fn verify(
        &self,
        case_id: Uuid,
        holder: TokenHash,
        proof: Proof,
    ) -> Result<Verdict, IdentityError> {
        let body = VerificationRequest::from(proof);
        let answer: VerificationResponse =
            call(holding(self.post(case_id, "verifications"), &holder).json(&body)).await?;
        Ok(Verdict {
            accepted: answer.accepted,
            remaining_attempts: answer.remaining_attempts,
            still_needed: answer.still_needed,
        })
    }

    /// Gathered with the other openings waiting: one call grades them all.
    async fn grade(&self, case_id: Uuid) -> Result<RiskTier, IdentityError> {
        let (answer, graded) = oneshot::channel();
        if self.grade_queue().try_send((case_id, answer)).is_err() {
            return Err(IdentityError::Unreachable(
                "too many gradings are waiting for the identity service".into(),
            ));
        }
        graded.await.unwrap_or_else(|_| {
            Err(IdentityError::Unreachable(
                "the grading was dropped before the identity service answered".into(),
            ))
        })
    }

    async fn start_recovery(&self, msisdn: &str) -> Result<RecoveryStarted, IdentityError> {
        let body = RecoveryRequest {
            msisdn: msisdn.to_owned(),
        };
        let answer: RecoveryAccepted = call(self.post_to("recoveries").json(&body)).await?;
        Ok(RecoveryStarted {
            recovery_id: answer.recovery_id,
        })
    }

    async fn finish_recovery(
        &self,
        recovery_id: Uuid,
        code: &str,
    ) -> Result<RecoveryOutcome, IdentityError> {
        let body = RecoveryCode {
            code: code.to_owned(),
        };
        let answer: RecoveryResult = call(
            self.post_to(&format!("recoveries/{recovery_id}"))
                .json(&body),
        )
        .await?;
        match answer {
            RecoveryResult {
                recovered: true,
                case_id: Some(case_id),
                case_token: Some(case_token),
                ..
            } => Ok(RecoveryOutcome::Recovered {
                case_id,
                case_token,
            }),
            RecoveryResult {
                recovered: false,
                remaining_attempts: Some(remaining_attempts),
                ..
            } => Ok(RecoveryOutcome::NotRecovered { remaining_attempts }),
            other => Err(IdentityError::Internal(anyhow::anyhow!(
                "identity service: unexpected recovery answer {other:?}"
            ))),
        }
    }
}

/// Makes the grading calls: takes the first grading waiting, waits for a free call,
/// and sends it with every other grading that arrived meanwhile (up to a call's
/// limit). One opening alone is sent at once; a burst goes in few calls.
async fn gather_grades(caller: HttpIdentity, mut asks: mpsc::Receiver<GradeAsk>) {
    let calls = Arc::new(Semaphore::new(GRADE_CALLS_IN_FLIGHT));
    while let Some(first) = asks.recv().await {
        let Ok(call) = calls.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < GRADES_PER_CALL {
            match asks.try_recv() {
                Ok(ask) => batch.push(ask),
                Err(_) => break,
            }
        }
        let caller = caller.clone();
        tokio::spawn(async move {
            caller.grade_batch(batch).await;
            drop(call);
        });
    }
}

/// Why a grading call failed as a whole (every case in it gets the same failure).
enum CallFailed {
    /// No answer.
    Unreachable(String),
    /// An error answer: its status and body.
    Answered(u16, Vec<u8>),
    /// An answer that does not read.
    Unreadable(String),
}

impl CallFailed {
    fn error(&self) -> IdentityError {
        match self {
            Self::Unreachable(e) => IdentityError::Unreachable(e.clone()),
            Self::Answered(status, body) => failure(*status, body),
            Self::Unreadable(e) => {
                IdentityError::Internal(anyhow::anyhow!("identity service answer: {e}"))
            }
        }
    }
}

/// The identity service's answer to a grading call.
#[derive(Debug, Deserialize)]
struct GradesAnswer {
    grades: Vec<GradeOutcome>,
}

/// One case's grading in it: its tier, or the problem grading it alone answers.
#[derive(Debug, Deserialize)]
struct GradeOutcome {
    case_id: Uuid,
    #[serde(default)]
    proof_tier: Option<RiskTier>,
    #[serde(default)]
    problem: Option<serde_json::Value>,
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
        ("store-visit-required", _) => IdentityError::StoreVisitRequired,
        ("wrong-state", Some(p)) => match p.state.as_deref().and_then(CaseState::parse) {
            Some(state) => IdentityError::WrongState(state),
            None => IdentityError::Internal(anyhow::anyhow!(
                "identity service: wrong-state answer without a state"
            )),
        },
        // The identity service refused this process's internal token: a deployment
        // error (REACTIVATION_INTERNAL_TOKENS differs), never the subscriber's fault.
        _ if status == 401 => IdentityError::Internal(anyhow::anyhow!(
            "identity service refused the internal token (check REACTIVATION_INTERNAL_TOKENS)"
        )),
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
        let refused = failure(401, &problem("unauthenticated", "", serde_json::json!({})));
        assert!(
            matches!(&refused, IdentityError::Internal(e) if e.to_string().contains("REACTIVATION_INTERNAL_TOKENS")),
            "{refused:?}"
        );
    }
}
