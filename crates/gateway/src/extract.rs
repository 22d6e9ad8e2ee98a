//! Edge parsing: JSON bodies with our error shape, and case-token authentication.

use axum::{
    extract::{FromRequestParts, Path},
    http::{header, request::Parts},
};
use case_store::CaseRow;
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
    let parsed = serde_json::from_value(value.clone())
        .map_err(|e| ApiError::Schema(safe_serde_message(&e.to_string())))?;
    Ok((parsed, value))
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
        let case = case_workflows::customer::case_for_token(&state.pool, case_id, token)
            .await?
            .ok_or(ApiError::NotFound)?;
        Ok(Self(case))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
