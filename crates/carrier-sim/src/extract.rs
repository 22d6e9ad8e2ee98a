//! Extractors whose every refusal is an RFC 9457 problem, and the problems the
//! simulator answers with. Details never echo submitted values.

use axum::{
    extract::{
        FromRequest, FromRequestParts, Json, Path, Query, Request, rejection::JsonRejection,
    },
    http::{HeaderMap, StatusCode, request::Parts},
};
use case_domain::Msisdn;
use serde::de::DeserializeOwned;
use service_runtime::Problem;

use crate::model::{FieldError, errors_json};

/// A JSON body; malformed JSON is a 400 problem, a body of the wrong shape (unknown
/// field, wrong type, missing field) a 422 problem.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_problem(&rejection)),
        }
    }
}

fn json_problem(rejection: &JsonRejection) -> Problem {
    let detail = scrub(&rejection.body_text());
    match rejection {
        JsonRejection::JsonDataError(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-input",
            "Invalid input",
            detail,
        ),
        JsonRejection::JsonSyntaxError(_) => Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "Malformed JSON",
            detail,
        ),
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "The body must be JSON, sent with Content-Type: application/json.",
        ),
        _ => Problem::new(
            rejection.status(),
            "unreadable-body",
            "Unreadable body",
            detail,
        ),
    }
}

/// A query string; a malformed one is a 400 problem.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-query",
                "Invalid query string",
                scrub(&rejection.body_text()),
            )),
        }
    }
}

/// A path parameter; one that cannot be decoded is a 404 problem.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(_) => Err(Problem::not_found()),
        }
    }
}

/// Removes values from a deserialiser's message, which may quote what was sent:
/// anything in double quotes, and numbers in backticks (field names stay).
pub(crate) fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(['"', '`']) {
        let quote = rest[start..].chars().next().unwrap_or('"');
        out.push_str(&rest[..=start]);
        let after = &rest[start + 1..];
        let Some(len) = after.find(quote) else {
            out.push('…');
            return out;
        };
        let inner = &after[..len];
        let is_value = quote == '"' || inner.starts_with(|c: char| c.is_ascii_digit() || c == '-');
        out.push_str(if is_value { "…" } else { inner });
        out.push(quote);
        rest = &after[len + 1..];
    }
    out.push_str(rest);
    out
}

/// A 422 problem listing the refused fields.
pub(crate) fn invalid(errors: &[FieldError]) -> Problem {
    let detail = match errors {
        [one] => format!("{}: {}", one.field, one.detail),
        _ => format!("{} fields are invalid; see `errors`.", errors.len()),
    };
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-input",
        "Invalid input",
        detail,
    )
    .with("errors", errors_json(errors))
}

/// A 422 problem about one field.
pub(crate) fn invalid_field(field: &str, detail: impl Into<String>) -> Problem {
    invalid(&[FieldError {
        field: field.to_owned(),
        detail: detail.into(),
    }])
}

/// Parses a number given in a path or query, as a 422 problem when it is not one.
pub(crate) fn msisdn_param(field: &str, raw: &str) -> Result<Msisdn, Problem> {
    Msisdn::parse(raw).map_err(|e| invalid_field(field, e.to_string()))
}

/// The `Idempotency-Key` header: required, 1–255 visible ASCII characters.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<String, Problem> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()));
    key.map(str::to_owned).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "idempotency-key-required",
            "Idempotency key required",
            "This call needs an Idempotency-Key header of 1 to 255 visible ASCII characters.",
        )
    })
}

/// Logs a database or runtime failure once and answers an opaque 500.
pub(crate) fn internal(context: &str, error: &dyn std::fmt::Display) -> Problem {
    tracing::error!(error.message = %error, "{context}");
    Problem::internal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_quoted_values_only() {
        assert_eq!(
            scrub(r#"msisdn: invalid type: string "13800138000", expected u32 at line 1 column 9"#),
            r#"msisdn: invalid type: string "…", expected u32 at line 1 column 9"#
        );
        assert_eq!(
            scrub("unknown field `colour`, expected one of `msisdn`"),
            "unknown field `colour`, expected one of `msisdn`"
        );
        assert_eq!(
            scrub("invalid type: integer `110105194912310021`, expected a string"),
            "invalid type: integer `…`, expected a string"
        );
        assert_eq!(scrub("cut \"off"), "cut \"…");
    }
}
