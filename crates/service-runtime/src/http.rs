//! The HTTP edge every service shares: operational routes and the middleware stack.

use std::time::{Duration, Instant};

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    sensitive_headers::SetSensitiveRequestHeadersLayer,
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::{Problem, Shutdown, db, metrics};

/// `/healthz` (the process is up), `/readyz` (the database answers) and `/metrics`.
pub fn ops_routes(pool: PgPool) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .with_state(pool)
}

async fn readyz(State(pool): State<PgPool>) -> Response {
    let check = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&pool),
    )
    .await;
    let why = match check {
        Ok(Ok(_)) => return "ready".into_response(),
        Ok(Err(e)) => db::describe(&e),
        Err(_) => "no answer within 2 s".to_owned(),
    };
    not_ready(format!("The database does not answer: {why}."))
}

/// `/readyz`'s 503 problem, with `Retry-After`.
fn not_ready(detail: String) -> Response {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not-ready",
        "Not ready",
        detail,
    )
    .into_response_retrying(STARTING_RETRY_AFTER.into())
}

/// `Retry-After` (seconds) of the answers of a process that is not ready.
pub const STARTING_RETRY_AFTER: u32 = 2;

/// What a process serves on its address while it waits for the database at start
/// ([`db::connect_with_retry`]): `/healthz` (the process is up), `/readyz` 503 saying
/// why it waits, `/metrics`, and 503 problem+json with `Retry-After` on every other
/// route, so a client or load balancer reaching it early is told to come back.
pub fn starting_routes(status: db::StartupStatus) -> Router {
    let waiting = move || {
        let reason = status.reason();
        async move { not_ready(reason.unwrap_or_else(|| "Waiting for the database.".to_owned())) }
    };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(waiting))
        .route("/metrics", get(prometheus))
        .fallback(|| async {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                "The service is starting; try again shortly.",
            )
            .into_response_retrying(STARTING_RETRY_AFTER.into())
        })
}

async fn prometheus() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(),
    )
        .into_response()
}

/// The standard stack, outermost first: request id, sensitive-header masking,
/// tracing span (method, route, request id; no query strings or bodies), request
/// metrics, panic → 500 problem, time limit → 408 problem. Unknown routes and
/// methods get problem+json too.
pub fn with_standard_layers(router: Router, timeout: Duration) -> Router {
    router
        .fallback(|| async { Problem::not_found() })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "This resource does not accept that method.",
            )
        })
        .layer(middleware::from_fn(problem_for_plain_errors))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            Problem::internal().into_response()
        }))
        .layer(middleware::from_fn(track_request))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", |p| p.as_str());
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("http", method = %req.method(), route, request_id)
        }))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Error answers that the framework or a layer wrote in plain text (or with no body
/// type at all) — the time limit's 408, the body limit's 413, an extractor's own
/// rejection — become problem+json like every other error. Answers that chose their
/// own type (problem+json, the console's HTML pages) pass unchanged; `Retry-After` and
/// `Allow` are kept.
async fn problem_for_plain_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.to_str().is_ok_and(|v| v.starts_with("text/plain")));
    if !plain {
        return response;
    }
    let (slug, title, detail) = match status {
        StatusCode::REQUEST_TIMEOUT => ("timeout", "Request timeout", "The request took too long."),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "too-large",
            "Payload too large",
            "The request body is larger than this route accepts.",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported-media-type",
            "Unsupported media type",
            "This route does not accept that content type.",
        ),
        StatusCode::NOT_FOUND => return Problem::not_found().into_response(),
        s if s.is_server_error() => return Problem::internal().into_response(),
        _ => (
            "malformed",
            "Malformed request",
            "The request could not be read.",
        ),
    };
    let mut problem = Problem::new(status, slug, title, detail).into_response();
    for name in [header::RETRY_AFTER, header::ALLOW] {
        if let Some(value) = response.headers().get(&name) {
            problem.headers_mut().insert(name, value.clone());
        }
    }
    problem
}

async fn track_request(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    ::metrics::counter!("http_requests_total", &labels).increment(1);
    ::metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Serves `app` on `listener` until `shutdown`, then lets in-flight requests finish.
/// Handlers and layers can read the peer address (`ConnectInfo<SocketAddr>`), which
/// the gateway's per-client rate limits need.
pub async fn serve(listener: TcpListener, app: Router, shutdown: Shutdown) -> anyhow::Result<()> {
    metrics::install();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.wait().await })
    .await?;
    Ok(())
}

/// Binds `addr`, naming it in the error.
pub async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn call(app: Router, method: &str, uri: &str) -> (StatusCode, String, String) {
        let response = app
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        (status, content_type, body)
    }

    async fn boom() -> &'static str {
        panic!("boom")
    }

    fn app() -> Router {
        let router = Router::new()
            .route(
                "/small",
                axum::routing::post(|_body: axum::body::Bytes| async { "ok" })
                    .layer(axum::extract::DefaultBodyLimit::max(16)),
            )
            .route("/boom", get(boom))
            .route("/hello", get(|| async { "hi" }));
        with_standard_layers(router, Duration::from_secs(5))
    }

    #[tokio::test]
    async fn unknown_routes_methods_and_panics_answer_problem_json() {
        let (status, ct, body) = call(app(), "GET", "/nope").await;
        assert_eq!(
            (status, ct.as_str()),
            (StatusCode::NOT_FOUND, "application/problem+json")
        );
        assert!(body.contains("\"status\":404"), "{body}");
        let (status, ct, _) = call(app(), "DELETE", "/hello").await;
        assert_eq!(
            (status, ct.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "application/problem+json")
        );
        let (status, ct, body) = call(app(), "GET", "/boom").await;
        assert_eq!(
            (status, ct.as_str()),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "application/problem+json"
            )
        );
        assert!(!body.contains("boom"), "internals leak: {body}");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_answers_problem_json_not_plain_text() {
        let response = app()
            .oneshot(
                Request::builder()
                    .method("POST")
                    .uri("/small")
                    .body(Body::from(vec![b'x'; 64]))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("/problems/too-large"), "{body}");
        assert!(body.contains("\"status\":413"), "{body}");
    }

    #[tokio::test]
    async fn a_starting_process_says_why_it_is_not_ready_and_asks_to_come_back() {
        let status = db::StartupStatus::new();
        status.set("Waiting for the database: refused (attempt 3, next in 2.0 s).".into());
        let app = starting_routes(status);
        let (code, _, body) = call(app.clone(), "GET", "/healthz").await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, "ok"));
        let response = app
            .clone()
            .oneshot(
                Request::builder()
                    .uri("/readyz")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("attempt 3, next in 2.0 s"), "{body}");
        let (code, ct, body) = call(app, "POST", "/v1/cases").await;
        assert_eq!(
            (code, ct.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "application/problem+json")
        );
        assert!(body.contains("/problems/unavailable"), "{body}");
    }

    #[tokio::test]
    async fn every_answer_carries_a_request_id() {
        let response = app()
            .oneshot(
                Request::builder()
                    .uri("/hello")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(response.headers().get("x-request-id").is_some());
    }
}
