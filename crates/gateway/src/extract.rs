//! Edge parsing: JSON bodies with our error shape, and case-token authentication.

use axum::{
    body::Body,
    extract::{FromRequestParts, Path, Request},
    http::{header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use case_store::CaseRow;
use data_protection::TokenHash;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::{AppState, error::ApiError};

/// Parses a JSON body into `T`, also returning the canonical JSON value (sorted
/// keys) for fingerprinting. Error messages name fields, never values.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<(T, serde_json::Value), ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::Malformed(format!(
            "The body is not valid JSON (line {}, column {}).",
            e.line(),
            e.column()
        ))
    })?;
    if !value.is_object() {
        return Err(ApiError::Malformed(
            "The body must be a JSON object.".into(),
        ));
    }
    refuse_nul_json(&value)?;
    let parsed = serde_json::from_value(value.clone())
        .map_err(|e| ApiError::Schema(safe_serde_message(&e.to_string())))?;
    Ok((parsed, value))
}

/// The error for a text field holding a NUL character, which PostgreSQL cannot store
/// (in `text` or in `jsonb`): refused at the edge rather than failing in the database.
pub fn nul_error(field: impl Into<String>) -> crate::error::FieldError {
    crate::error::FieldError::new(field, "must not contain a NUL character (U+0000)")
}

/// Refuses a JSON value holding a NUL character in any string or key (422 naming it).
pub fn refuse_nul_json(value: &serde_json::Value) -> Result<(), ApiError> {
    match nul_field(value, "") {
        Some(field) => Err(ApiError::Invalid(vec![nul_error(field)])),
        None => Ok(()),
    }
}

/// Form bodies are read whole to look for NULs: no more than this (axum's default
/// body limit, which the console's forms have).
const FORM_LIMIT: usize = 2 * 1024 * 1024;
/// The most of a refused request's body read (and thrown away) before the answer.
const DRAIN_LIMIT: usize = 8 * 1024 * 1024;
/// The longest a refused request's body is read before the answer.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and discards what a client is still sending of a request refused from its
/// head alone (at most [`DRAIN_LIMIT`] bytes, [`DRAIN_TIME`]), so that it reads the
/// refusal: closing the connection with its body unread makes the kernel reset it,
/// and the client may lose the answer mid-read.
async fn drain(body: axum::body::Body) {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

/// The text that does not come as JSON — the path, the query string, and
/// `application/x-www-form-urlencoded` bodies (the console's forms) — must not decode
/// to a NUL character either: 422 naming the field (`path`, or the parameter's name).
pub async fn refuse_nul(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let refused = if path.contains("%00") {
        Some("path".to_owned())
    } else {
        request.uri().query().and_then(nul_in_urlencoded)
    };
    if let Some(field) = refused {
        drain(request.into_body()).await;
        return ApiError::Invalid(vec![nul_error(&field)]).into_response();
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, FORM_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::TooLarge("The form is larger than this route accepts.".into())
                .into_response();
        }
    };
    let nul = std::str::from_utf8(&bytes)
        .ok()
        .and_then(nul_in_urlencoded)
        .or_else(|| bytes.contains(&0).then(|| "body".to_owned()));
    if let Some(field) = nul {
        return ApiError::Invalid(vec![nul_error(field)]).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The name of the first pair of a urlencoded text whose name or value decodes to a
/// text holding a NUL character.
fn nul_in_urlencoded(text: &str) -> Option<String> {
    if !text.contains("%00") && !text.contains('\0') {
        return None;
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(text).ok()?;
    pairs
        .into_iter()
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        .map(|(k, _)| {
            let k = k.replace('\0', "");
            if k.is_empty() { "query".to_owned() } else { k }
        })
}

/// The path (`a.b[2].c`) of the first string or key holding a NUL character.
fn nul_field(value: &serde_json::Value, at: &str) -> Option<String> {
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(if at.is_empty() {
            "body".into()
        } else {
            at.into()
        }),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_field(v, &format!("{at}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            // A key with a NUL is named without it (the answer never echoes a NUL).
            let key = k.replace('\0', "");
            let path = if at.is_empty() {
                key
            } else {
                format!("{at}.{key}")
            };
            if k.contains('\0') {
                Some(path)
            } else {
                nul_field(v, &path)
            }
        }),
        _ => None,
    }
}

/// serde's messages can quote the offending value (`invalid type: string "…"`);
/// keep only what does not echo input.
fn safe_serde_message(message: &str) -> String {
    let echo_free = message.starts_with("unknown field")
        || message.starts_with("missing field")
        || message.starts_with("unknown variant")
        || !(message.contains('"') || message.contains('`'));
    if echo_free {
        let trimmed = message.split(", expected one of").next().unwrap_or(message);
        format!("The body does not match the schema: {trimmed}.")
    } else if let Some(pos) = message.find(", expected ") {
        format!(
            "The body does not match the schema: a value has the wrong type (expected {}).",
            &message[pos + 11..]
        )
    } else {
        "The body does not match the schema.".into()
    }
}

/// The case the bearer's case token opens. A malformed id, a missing or wrong
/// token and a missing case all answer the same 404.
#[derive(Debug)]
pub struct CustomerCase(pub CaseRow);

impl FromRequestParts<AppState> for CustomerCase {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let holder = CaseHolder::from_request_parts(parts, state).await?;
        Ok(Self(holder.case(state).await?))
    }
}

/// A case id and the hash of the bearer's case token, not yet checked: for the calls
/// whose service checks the token in its own read of the case (the identity
/// service's code and proof calls), so the gateway does not read the case first.
/// A malformed id or a missing token answers 404, as for [`CustomerCase`].
#[derive(Debug)]
pub struct CaseHolder {
    /// The case asked about.
    pub case_id: Uuid,
    /// The hash of the token presented.
    pub token_hash: TokenHash,
}

impl CaseHolder {
    /// The case, when the token opens it (else 404): one read.
    pub async fn case(&self, state: &AppState) -> Result<CaseRow, ApiError> {
        case_workflows::customer::case_for_token(&state.pool, self.case_id, &self.token_hash)
            .await?
            .ok_or(ApiError::NotFound)
    }
}

impl FromRequestParts<AppState> for CaseHolder {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Path(params): Path<std::collections::HashMap<String, String>> =
            Path::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound)?;
        let case_id: Uuid = params
            .get("case_id")
            .and_then(|s| s.parse().ok())
            .ok_or(ApiError::NotFound)?;
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or(ApiError::NotFound)?;
        Ok(Self {
            case_id,
            token_hash: TokenHash::of(token),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_refused_naming_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct B {
            a: serde_json::Value,
        }
        for (body, field) in [
            (r#"{"a":"x\u0000y"}"#, "a"),
            (r#"{"a":{"b":["ok","\u0000"]}}"#, "a.b[1]"),
            (r#"{"a":{"k\u0000":1}}"#, "a.k"),
        ] {
            match parse_json::<B>(body.as_bytes()) {
                Err(ApiError::Invalid(errors)) => assert_eq!(errors[0].field, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        assert!(parse_json::<B>(br#"{"a":"fine \\u0000 as text"}"#).is_ok());
    }

    #[test]
    fn serde_messages_never_echo_values() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct B {
            n: u32,
        }
        for body in [
            r#"{"n":"110105194912310021"}"#,
            r#"{"n":-1}"#,
            r#"{"x":1}"#,
            r#"{}"#,
            r#"[1]"#,
            "nope",
        ] {
            let message = match parse_json::<B>(body.as_bytes()) {
                Err(e) => e.problem().detail,
                Ok(_) => panic!("{body} parsed"),
            };
            assert!(!message.contains("110105"), "{message}");
            assert!(!message.contains("-1"), "{message}");
        }
    }
}
