//! The console's script and stylesheet, embedded in the binary (no build step).

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};

const SCRIPT: &str = include_str!("../../static/console.js");
const STYLESHEET: &str = include_str!("../../static/console.css");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// `GET /console/static/console.js`.
pub(super) async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /console/static/console.css`.
pub(super) async fn stylesheet() -> Response {
    asset(STYLESHEET, "text/css; charset=utf-8")
}
