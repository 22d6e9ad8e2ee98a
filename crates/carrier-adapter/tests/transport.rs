//! The adapter's transport behaviour against a tiny scripted HTTP server: retries,
//! time limits, redirects, error mapping, and no personal data in errors.
//! (The protocol itself is tested against the real simulator in `carrier-sim`.)

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use carrier_adapter::{
    Carrier, CarrierError, HttpCarrier, MessageChannel, Restoration, ServiceOrderRequest,
};
use case_domain::{Msisdn, PersonName, ResidentId};
use uuid::Uuid;

const NUMBER: &str = "+8613800138000";

/// An `Idempotency-Key` header (if any) and the body of one request.
type Seen = (Option<String>, String);

#[derive(Clone, Default)]
struct Stub {
    hits: Arc<AtomicU32>,
    /// Idempotency-Key headers and bodies received.
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn carrier(base: &str, timeout: Duration) -> HttpCarrier {
    HttpCarrier::new(base, timeout)
        .unwrap()
        .with_retries(3, Duration::from_millis(5))
}

fn msisdn() -> Msisdn {
    Msisdn::parse(NUMBER).unwrap()
}

fn assert_no_personal_data(e: &CarrierError) {
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("13800138000"), "{shown}");
}

#[tokio::test]
async fn unavailable_answers_are_retried_until_one_succeeds() {
    let stub = Stub::default();
    let app = Router::new()
        .route(
            "/carrier/v1/serviceOrder",
            post(
                |State(s): State<Stub>, headers: HeaderMap, body: String| async move {
                    let n = s.hits.fetch_add(1, Ordering::SeqCst) + 1;
                    let key = headers
                        .get("idempotency-key")
                        .map(|v| v.to_str().unwrap().to_owned());
                    s.seen.lock().unwrap().push((key, body.clone()));
                    if n < 3 {
                        return StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    let answer = serde_json::json!({
                        "id": "SO-1", "externalId": v["externalId"], "state": "acknowledged",
                        "restoration": v["restoration"],
                    });
                    (StatusCode::CREATED, axum::Json(answer)).into_response()
                },
            ),
        )
        .with_state(stub.clone());
    let base = serve(app).await;
    let order = ServiceOrderRequest {
        order_id: Uuid::now_v7(),
        msisdn: msisdn(),
        restoration: Restoration::InboundOnly,
    };
    let answer = carrier(&base, Duration::from_secs(2))
        .submit_order(&order)
        .await
        .unwrap();
    assert_eq!(answer.order_id, order.order_id);
    assert_eq!(answer.carrier_ref, "SO-1");
    assert_eq!(stub.hits.load(Ordering::SeqCst), 3);
    let seen = stub.seen.lock().unwrap();
    for (key, body) in seen.iter() {
        assert_eq!(key.as_deref(), Some(order.order_id.to_string().as_str()));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["action"], "resume");
        assert_eq!(v["restoration"], "inbound_only");
        assert_eq!(v["msisdn"], NUMBER);
    }
}

#[tokio::test]
async fn retries_stop_after_three_attempts_and_client_errors_are_not_retried() {
    let stub = Stub::default();
    let app = Router::new()
        .route(
            "/carrier/v1/subscribers/{m}/risk-signals",
            get(|State(s): State<Stub>| async move {
                s.hits.fetch_add(1, Ordering::SeqCst);
                StatusCode::TOO_MANY_REQUESTS
            }),
        )
        .route(
            "/carrier/v1/messages",
            post(|State(s): State<Stub>| async move {
                s.hits.fetch_add(100, Ordering::SeqCst);
                let problem = serde_json::json!({
                    "type": "https://carrier.example/problems/invalid-input",
                    "title": "Invalid input", "status": 422,
                    "detail": "channel for +8613800138000 is unknown",
                });
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    [("content-type", "application/problem+json")],
                    problem.to_string(),
                )
            }),
        )
        .with_state(stub.clone());
    let base = serve(app).await;
    let carrier = carrier(&base, Duration::from_secs(2));

    let e = carrier.risk_signals(&msisdn()).await.unwrap_err();
    assert!(matches!(e, CarrierError::Unavailable(_)), "{e:?}");
    assert_eq!(stub.hits.load(Ordering::SeqCst), 3);

    let e = carrier
        .send_message(&msisdn(), MessageChannel::Sms, "code 123456", "key-1")
        .await
        .unwrap_err();
    assert!(
        matches!(e, CarrierError::Rejected { status: 422, .. }),
        "{e:?}"
    );
    assert_eq!(
        stub.hits.load(Ordering::SeqCst),
        103,
        "a 4xx is not retried"
    );
    assert_no_personal_data(&e);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let stub = Stub::default();
    let app = Router::new()
        .route(
            "/carrier/v1/subscribers/{m}/contacts",
            get(|| async {
                Response::builder()
                    .status(StatusCode::FOUND)
                    .header("location", "/elsewhere")
                    .body(axum::body::Body::empty())
                    .unwrap()
            }),
        )
        .route(
            "/elsewhere",
            get(|State(s): State<Stub>| async move {
                s.hits.fetch_add(1, Ordering::SeqCst);
                axum::Json(serde_json::json!({"contacts": []}))
            }),
        )
        .with_state(stub.clone());
    let base = serve(app).await;
    let e = carrier(&base, Duration::from_secs(2))
        .contacts_on_file(&msisdn())
        .await
        .unwrap_err();
    assert!(matches!(e, CarrierError::Protocol(_)), "{e:?}");
    assert_eq!(stub.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn slow_answers_time_out_as_unavailable_and_errors_hold_no_personal_data() {
    let stub = Stub::default();
    let app = Router::new()
        .route(
            "/carrier/v1/subscribers/match",
            post(|State(s): State<Stub>| async move {
                s.hits.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(5)).await;
                axum::Json(serde_json::json!({"match": true}))
            }),
        )
        .with_state(stub.clone());
    let base = serve(app).await;
    let name = PersonName::parse("张伟").unwrap();
    let id = ResidentId::parse("110105199003071239").unwrap();
    let e = carrier(&base, Duration::from_millis(200))
        .subscriber_matches(&msisdn(), &name, &id)
        .await
        .unwrap_err();
    assert_eq!(e, CarrierError::Unavailable("request timed out".into()));
    assert_eq!(stub.hits.load(Ordering::SeqCst), 3, "lookups are retried");
    assert_no_personal_data(&e);
}

#[tokio::test]
async fn connection_failures_are_unavailable() {
    // Bind then drop: nothing listens on the port any more.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let e = carrier(&base, Duration::from_secs(1))
        .verify_service_password(&msisdn(), "secret-pw")
        .await
        .unwrap_err();
    assert!(matches!(e, CarrierError::Unavailable(_)), "{e:?}");
    assert!(!e.to_string().contains("secret-pw"));
    assert_no_personal_data(&e);
}

#[tokio::test]
async fn unparseable_answers_are_protocol_errors_without_the_value() {
    let app = Router::new().route(
        "/carrier/v1/subscribers/{m}/call-records/check",
        post(|| async { axum::Json(serde_json::json!({"matched": "+8613800138000"})) }),
    );
    let base = serve(app).await;
    let e = carrier(&base, Duration::from_secs(1))
        .count_call_record_matches(&msisdn(), &[msisdn()])
        .await
        .unwrap_err();
    assert!(matches!(e, CarrierError::Protocol(_)), "{e:?}");
    assert_no_personal_data(&e);
}

#[tokio::test]
async fn not_found_maps_to_not_found() {
    let app = Router::new();
    let base = serve(app).await;
    let e = carrier(&base, Duration::from_secs(1))
        .get_order(Uuid::now_v7())
        .await
        .unwrap_err();
    assert_eq!(e, CarrierError::NotFound);
}
