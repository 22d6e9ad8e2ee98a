//! What can go wrong when asking the carrier, and how an HTTP answer maps onto it.
//! Every message here is safe to log: it never carries personal data.

use serde::Deserialize;

/// Why a carrier call did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarrierError {
    /// Timeout, connection error, 5xx, 408 or 429: worth retrying later.
    #[error("carrier unavailable: {0}")]
    Unavailable(String),
    /// The carrier does not know the subscriber or order (404).
    #[error("not found at the carrier")]
    NotFound,
    /// No contact of the asked kind is on file for the subscriber.
    #[error("no contact of that kind on file with the carrier")]
    NoContactOnFile,
    /// The carrier refused the request (any other 4xx); `detail` is redacted.
    #[error("carrier rejected the request ({status}): {detail}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The carrier's explanation, with anything that looks like personal data removed.
        detail: String,
    },
    /// The carrier's answer could not be understood.
    #[error("carrier answer not understood: {0}")]
    Protocol(String),
}

impl CarrierError {
    /// Whether trying the same call again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// The members of an RFC 9457 problem the adapter reads.
#[derive(Debug, Default, Deserialize)]
struct ProblemBody {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

/// Maps a non-2xx HTTP answer onto an error.
pub(crate) fn from_status(status: u16, body: &[u8]) -> CarrierError {
    match status {
        404 => CarrierError::NotFound,
        408 | 429 | 500..=599 => CarrierError::Unavailable(format!("carrier answered {status}")),
        400..=499 => {
            let problem: ProblemBody = serde_json::from_slice(body).unwrap_or_default();
            let is_no_contact = problem
                .kind
                .as_deref()
                .is_some_and(|k| k.ends_with("/no-contact-on-file"));
            if status == 422 && is_no_contact {
                return CarrierError::NoContactOnFile;
            }
            let text = problem
                .detail
                .or(problem.title)
                .unwrap_or_else(|| "no detail given".to_owned());
            CarrierError::Rejected {
                status,
                detail: redact(&text),
            }
        }
        300..=399 => CarrierError::Protocol(format!(
            "carrier answered a redirect ({status}), not followed"
        )),
        _ => CarrierError::Protocol(format!("unexpected status {status}")),
    }
}

/// Maps a transport failure onto an error, without the URL (it holds the number).
pub(crate) fn from_transport(error: &reqwest::Error) -> CarrierError {
    if error.is_timeout() {
        CarrierError::Unavailable("request timed out".to_owned())
    } else if error.is_connect() {
        CarrierError::Unavailable("cannot connect to the carrier".to_owned())
    } else if error.is_builder() {
        CarrierError::Protocol("request could not be built".to_owned())
    } else if error.is_body() || error.is_decode() {
        CarrierError::Unavailable("connection failed while reading the answer".to_owned())
    } else {
        CarrierError::Unavailable("request failed in transport".to_owned())
    }
}

/// Keeps a carrier's explanation loggable: removes e-mail addresses and runs of five or
/// more digits (numbers, ID numbers) and shortens it to 200 characters.
pub(crate) fn redact(text: &str) -> String {
    let mut words = Vec::new();
    for word in text.split_whitespace() {
        if word.contains('@') {
            words.push("[redacted]".to_owned());
            continue;
        }
        let mut out = String::new();
        let mut run = String::new();
        let flush = |run: &mut String, out: &mut String| {
            let digits = run.chars().filter(char::is_ascii_digit).count();
            if digits >= 5 {
                out.push_str("[redacted]");
            } else {
                out.push_str(run);
            }
            run.clear();
        };
        for c in word.chars() {
            if c.is_ascii_digit() || (!run.is_empty() && matches!(c, 'X' | 'x' | '-')) {
                run.push(c);
            } else {
                flush(&mut run, &mut out);
                out.push(c);
            }
        }
        flush(&mut run, &mut out);
        words.push(out);
    }
    let joined = words.join(" ");
    if joined.chars().count() > 200 {
        let cut: String = joined.chars().take(200).collect();
        format!("{cut}…")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str, detail: &str) -> Vec<u8> {
        serde_json::json!({"type": kind, "title": "T", "status": 422, "detail": detail})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn statuses_map_onto_the_error_kinds() {
        assert_eq!(from_status(404, b""), CarrierError::NotFound);
        for status in [408, 429, 500, 502, 503, 504] {
            let e = from_status(status, b"<html>busy</html>");
            assert!(e.is_retryable(), "{status}: {e:?}");
        }
        assert_eq!(
            from_status(
                422,
                &problem("https://carrier.example/problems/no-contact-on-file", "x")
            ),
            CarrierError::NoContactOnFile
        );
        assert_eq!(
            from_status(
                422,
                &problem(
                    "https://carrier.example/problems/invalid-input",
                    "bad channel"
                )
            ),
            CarrierError::Rejected {
                status: 422,
                detail: "bad channel".into()
            }
        );
        // The no-contact type only counts on a 422.
        assert!(matches!(
            from_status(
                400,
                &problem("https://carrier.example/problems/no-contact-on-file", "x")
            ),
            CarrierError::Rejected { status: 400, .. }
        ));
        assert_eq!(
            from_status(409, b"not json"),
            CarrierError::Rejected {
                status: 409,
                detail: "no detail given".into()
            }
        );
        assert!(matches!(from_status(302, b""), CarrierError::Protocol(_)));
        assert!(matches!(from_status(101, b""), CarrierError::Protocol(_)));
    }

    #[test]
    fn only_unavailable_is_retryable() {
        assert!(CarrierError::Unavailable("x".into()).is_retryable());
        for e in [
            CarrierError::NotFound,
            CarrierError::NoContactOnFile,
            CarrierError::Rejected {
                status: 400,
                detail: String::new(),
            },
            CarrierError::Protocol("x".into()),
        ] {
            assert!(!e.is_retryable(), "{e:?}");
        }
    }

    #[test]
    fn rejected_details_lose_personal_data() {
        let body = problem(
            "https://carrier.example/problems/invalid",
            "subscriber +8613800138000 with id 11010519491231002X (mail zhang.san@example.com) code 42",
        );
        let e = from_status(400, &body);
        let shown = e.to_string();
        for leak in [
            "13800138000",
            "11010519491231002X",
            "zhang.san",
            "example.com",
        ] {
            assert!(!shown.contains(leak), "{shown}");
        }
        assert!(shown.contains("code 42"), "{shown}");
        let long = "word ".repeat(100);
        assert!(redact(&long).chars().count() <= 201);
    }
}
