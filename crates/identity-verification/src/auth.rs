//! The credential of the internal API: every call carries
//! `Authorization: Bearer <token>` with one of `REACTIVATION_INTERNAL_TOKENS`.
//!
//! A call without it, with another scheme or with an unknown token is refused with
//! `401` problem+json before any handler runs, so it reads and changes nothing. The
//! answer is the same whatever was wrong, and the tokens are compared in constant time
//! ([`InternalTokens::accepts`]).

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use service_runtime::{Problem, config::InternalTokens};

/// `router` with every route behind the internal credential. With no token
/// configured every call is refused (`serve` does not start that way).
pub fn require_internal_token(router: Router, tokens: InternalTokens) -> Router {
    router.layer(middleware::from_fn_with_state(tokens, check))
}

async fn check(State(tokens): State<InternalTokens>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    match presented {
        Some(token) if tokens.accepts(token) => next.run(request).await,
        _ => {
            tracing::warn!(
                credential = if presented.is_some() {
                    "unknown token"
                } else {
                    "none"
                },
                "internal call refused"
            );
            refused()
        }
    }
}

/// The token of a `Bearer` credential (the scheme is case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The one answer to a call without a valid credential.
pub fn refused() -> Response {
    let mut response = Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Not authenticated",
        "This internal API needs the calling service's bearer token.",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, routing::post};
    use tower::ServiceExt;

    use super::*;

    const OLD: &str = "b2xkLXRva2VuLWZvci10ZXN0cy1vbmx5LTEyMzQ1Njc4OTA=";
    const NEW: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA";

    fn app(tokens: &str) -> Router {
        let tokens = if tokens.is_empty() {
            InternalTokens::default()
        } else {
            InternalTokens::parse(tokens).unwrap()
        };
        require_internal_token(
            Router::new().route("/internal/v1/x", post(|| async { StatusCode::ACCEPTED })),
            tokens,
        )
    }

    async fn call(app: &Router, authorization: Option<&str>) -> (StatusCode, Response) {
        let mut request = Request::post("/internal/v1/x");
        if let Some(a) = authorization {
            request = request.header(header::AUTHORIZATION, a);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        (response.status(), response)
    }

    #[tokio::test]
    async fn only_a_listed_bearer_token_gets_through() {
        let app = app(NEW);
        let refused_with = [
            None,
            Some(String::new()),
            Some("Bearer".to_owned()),
            Some("Bearer ".to_owned()),
            Some(format!("Bearer {OLD}")),
            Some(format!("Basic {NEW}")),
            Some(format!("Bearer {}", &NEW[..NEW.len() - 1])),
            Some(format!("Bearer {NEW}x")),
            Some(NEW.to_owned()),
        ];
        for authorization in refused_with {
            let (status, response) = call(&app, authorization.as_deref()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/problem+json"
            );
            assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        }
        let (status, _) = call(&app, Some(&format!("Bearer {NEW}"))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (status, _) = call(&app, Some(&format!("bearer {NEW}"))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }

    #[tokio::test]
    async fn during_a_rotation_old_and_new_are_accepted() {
        let rotating = app(&format!("{NEW} {OLD}"));
        for token in [NEW, OLD] {
            let (status, _) = call(&rotating, Some(&format!("Bearer {token}"))).await;
            assert_eq!(status, StatusCode::ACCEPTED);
        }
        // After the rotation the old token is refused.
        let (status, _) = call(&app(NEW), Some(&format!("Bearer {OLD}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn without_configured_tokens_everything_is_refused() {
        let app = app("");
        for authorization in [None, Some(format!("Bearer {NEW}")), Some("Bearer ".into())] {
            let (status, _) = call(&app, authorization.as_deref()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
    }
}
