//! Standard Webhooks 1.0 symmetric signatures (`v1`): secrets, signing, verifying.
//!
//! Signed content is `{webhook-id}.{webhook-timestamp}.{raw body}`; the signature is
//! `v1,` + base64(HMAC-SHA256(secret, content)). The `webhook-signature` header is a
//! space-separated list, so a sender may sign with an old and a new secret while a
//! secret is rotated, and a receiver may hold several secrets.

use std::fmt;

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD},
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of a secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";
/// Fewest secret bytes accepted (Standard Webhooks: 24 to 64 random bytes).
pub const MIN_SECRET_BYTES: usize = 24;
/// Most secret bytes accepted.
pub const MAX_SECRET_BYTES: usize = 64;
/// How far `webhook-timestamp` may be from the receiver's clock, in seconds (±5 minutes).
pub const TOLERANCE_SECS: i64 = 5 * 60;
/// Longest `webhook-id` accepted.
pub const MAX_ID_LEN: usize = 255;

/// The three headers of a signed webhook.
pub const HEADER_ID: &str = "webhook-id";
/// Unix seconds when the message was (re)sent.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Space-separated `v1,<base64>` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// A signing secret. Its bytes never appear in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.key.len())
    }
}

/// Why a secret is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// No secret at all.
    #[error("is empty")]
    Empty,
    /// The text does not start with `whsec_`.
    #[error("must start with `whsec_` followed by base64")]
    MissingPrefix,
    /// The part after the prefix is not base64.
    #[error("is not valid base64 after `whsec_`")]
    NotBase64,
    /// Fewer than 24 or more than 64 bytes.
    #[error("must decode to {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, got {0}")]
    BadLength(usize),
}

impl Secret {
    /// A secret from its raw bytes (24 to 64 of them).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        match bytes.len() {
            0 => Err(SecretError::Empty),
            n if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&n) => {
                Err(SecretError::BadLength(n))
            }
            _ => Ok(Self {
                key: bytes.to_vec(),
            }),
        }
    }

    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SecretError::Empty);
        }
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        if encoded.is_empty() {
            return Err(SecretError::Empty);
        }
        let bytes = STANDARD
            .decode(encoded)
            .or_else(|_| STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| SecretError::NotBase64)?;
        Self::from_bytes(&bytes)
    }

    /// Parses a space-separated list of `whsec_` secrets; the error names the
    /// position (1-based) of the first bad one. An empty list is refused.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, (usize, SecretError)> {
        let secrets = text
            .split_whitespace()
            .enumerate()
            .map(|(i, s)| Self::parse(s).map_err(|e| (i + 1, e)))
            .collect::<Result<Vec<_>, _>>()?;
        if secrets.is_empty() {
            return Err((1, SecretError::Empty));
        }
        Ok(secrets)
    }

    /// The text form `whsec_<base64>` (to show once, when the secret is made).
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }
}

/// The `v1,<base64>` signature of one message under one secret.
pub fn sign(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", signature_base64(secret, id, timestamp, body))
}

/// The `webhook-signature` header value: one signature per secret, space-separated
/// (a sender rotating its secret signs with both).
pub fn sign_all(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| sign(s, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

fn signature_base64(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = secret.mac();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The raw header values of a received webhook (`None` when absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReceivedHeaders<'a> {
    /// `webhook-id`.
    pub id: Option<&'a str>,
    /// `webhook-timestamp`.
    pub timestamp: Option<&'a str>,
    /// `webhook-signature`.
    pub signature: Option<&'a str>,
}

/// A webhook whose signature and timestamp checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The message id (the receiver's deduplication key).
    pub id: String,
    /// The signed timestamp (unix seconds).
    pub timestamp: i64,
}

/// Why a received webhook is refused. Every variant means 401 to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header is missing or empty.
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// `webhook-id` is longer than 255 characters or has spaces or control characters.
    #[error("the webhook-id header is malformed")]
    MalformedId,
    /// `webhook-timestamp` is not a whole number of seconds.
    #[error("the webhook-timestamp header is not a unix time in seconds")]
    MalformedTimestamp,
    /// `webhook-timestamp` is more than 5 minutes from now.
    #[error("the webhook-timestamp is more than 5 minutes from the receiver's clock")]
    OutsideTolerance,
    /// No `v1` signature matches any of the receiver's secrets.
    #[error("no signature matches")]
    NoMatch,
    /// The receiver has no secret to verify with.
    #[error("no secret is configured")]
    NoSecret,
}

/// Verifies a received webhook on its raw body: the headers are present and well
/// formed, the timestamp is within ±5 minutes of `now_unix`, and one of the `v1`
/// signatures equals the signature under one of `secrets` (compared in constant
/// time, lengths included: `v1,` with an empty signature never matches).
pub fn verify(
    secrets: &[Secret],
    headers: ReceivedHeaders<'_>,
    body: &[u8],
    now_unix: i64,
) -> Result<Verified, VerifyError> {
    fn present<'h>(value: Option<&'h str>, name: &'static str) -> Result<&'h str, VerifyError> {
        value
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(VerifyError::MissingHeader(name))
    }
    let id = present(headers.id, HEADER_ID)?;
    let timestamp = present(headers.timestamp, HEADER_TIMESTAMP)?;
    let signatures = present(headers.signature, HEADER_SIGNATURE)?;
    if id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(VerifyError::MalformedId);
    }
    let timestamp = parse_timestamp(timestamp)?;
    if (now_unix - timestamp).abs() > TOLERANCE_SECS {
        return Err(VerifyError::OutsideTolerance);
    }
    if secrets.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    let expected: Vec<String> = secrets
        .iter()
        .map(|s| signature_base64(s, id, timestamp, body))
        .collect();
    let mut matched = subtle::Choice::from(0);
    for entry in signatures.split(' ').filter(|e| !e.is_empty()) {
        let Some((version, given)) = entry.split_once(',') else {
            continue;
        };
        if version != "v1" {
            continue;
        }
        for want in &expected {
            // `ct_eq` on slices is false when the lengths differ.
            matched |= want.as_bytes().ct_eq(given.as_bytes());
        }
    }
    if bool::from(matched) {
        Ok(Verified {
            id: id.to_owned(),
            timestamp,
        })
    } else {
        Err(VerifyError::NoMatch)
    }
}

fn parse_timestamp(raw: &str) -> Result<i64, VerifyError> {
    if raw.is_empty() || raw.len() > 12 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::MalformedTimestamp);
    }
    raw.parse().map_err(|_| VerifyError::MalformedTimestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn secret(byte: u8) -> Secret {
        Secret::from_bytes(&[byte; 32]).unwrap()
    }

    fn headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> ReceivedHeaders<'a> {
        ReceivedHeaders {
            id: Some(id),
            timestamp: Some(ts),
            signature: Some(sig),
        }
    }

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // From the Standard Webhooks reference libraries' tests.
        let s = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&s, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_signed_message_verifies_and_every_change_breaks_it() {
        let s = secret(7);
        let body = br#"{"type":"subscriber.suspended"}"#;
        let sig = sign(&s, "msg_1", NOW, body);
        let ts = NOW.to_string();
        assert_eq!(
            verify(
                std::slice::from_ref(&s),
                headers("msg_1", &ts, &sig),
                body,
                NOW
            ),
            Ok(Verified {
                id: "msg_1".into(),
                timestamp: NOW
            })
        );
        let no = Err(VerifyError::NoMatch);
        assert_eq!(
            verify(
                std::slice::from_ref(&s),
                headers("msg_2", &ts, &sig),
                body,
                NOW
            ),
            no
        );
        assert_eq!(
            verify(
                std::slice::from_ref(&s),
                headers("msg_1", &ts, &sig),
                b"{}",
                NOW
            ),
            no
        );
        let later = (NOW + 1).to_string();
        assert_eq!(
            verify(
                std::slice::from_ref(&s),
                headers("msg_1", &later, &sig),
                body,
                NOW
            ),
            no
        );
        assert_eq!(
            verify(&[secret(8)], headers("msg_1", &ts, &sig), body, NOW),
            no
        );
    }

    #[test]
    fn empty_truncated_or_foreign_signatures_never_match() {
        let s = secret(7);
        let body = b"{}";
        let ts = NOW.to_string();
        let good = sign(&s, "msg", NOW, body);
        let truncated = &good[..good.len() - 4];
        let prefix_only = &good[..4];
        let v1a = good.replacen("v1,", "v1a,", 1);
        let upper = good.to_uppercase();
        for bad in [
            "v1,",
            "v1, ",
            "v1",
            ",",
            truncated,
            prefix_only,
            v1a.as_str(),
            upper.as_str(),
            "v2,abc",
        ] {
            assert_eq!(
                verify(
                    std::slice::from_ref(&s),
                    headers("msg", &ts, bad),
                    body,
                    NOW
                ),
                Err(VerifyError::NoMatch),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn any_listed_signature_under_any_secret_is_enough() {
        let (old, new) = (secret(1), secret(2));
        let body = b"{}";
        let ts = NOW.to_string();
        let both = sign_all(&[old.clone(), new.clone()], "m", NOW, body);
        assert_eq!(both.split(' ').count(), 2);
        for receiver in [vec![old.clone()], vec![new.clone()], vec![secret(3), new]] {
            assert!(verify(&receiver, headers("m", &ts, &both), body, NOW).is_ok());
        }
        let only_old = sign(&old, "m", NOW, body);
        let listed = format!("v1,bm9wZQ== {only_old}");
        assert!(verify(&[secret(3), old], headers("m", &ts, &listed), body, NOW).is_ok());
    }

    #[test]
    fn timestamps_are_checked_before_the_signature() {
        let s = secret(7);
        let body = b"{}";
        let at = |t: i64| sign(&s, "m", t, body);
        let check = |ts: &str, sig: &str| {
            verify(std::slice::from_ref(&s), headers("m", ts, sig), body, NOW)
        };
        let edge = NOW - TOLERANCE_SECS;
        assert!(check(&edge.to_string(), &at(edge)).is_ok());
        let edge = NOW + TOLERANCE_SECS;
        assert!(check(&edge.to_string(), &at(edge)).is_ok());
        for off in [TOLERANCE_SECS + 1, -(TOLERANCE_SECS + 1), 86_400] {
            let t = NOW + off;
            assert_eq!(
                check(&t.to_string(), &at(t)),
                Err(VerifyError::OutsideTolerance)
            );
        }
        for bad in ["abc", "17e8", "-5", "1.5", " ", "9999999999999", "0x10"] {
            let result = check(bad, &at(NOW));
            assert!(
                matches!(
                    result,
                    Err(VerifyError::MalformedTimestamp | VerifyError::MissingHeader(_))
                ),
                "{bad:?}: {result:?}"
            );
        }
    }

    #[test]
    fn missing_headers_are_named() {
        let s = secret(7);
        let ts = NOW.to_string();
        let sig = sign(&s, "m", NOW, b"");
        let cases = [
            (
                ReceivedHeaders {
                    id: None,
                    ..headers("m", &ts, &sig)
                },
                HEADER_ID,
            ),
            (
                ReceivedHeaders {
                    timestamp: Some(""),
                    ..headers("m", &ts, &sig)
                },
                HEADER_TIMESTAMP,
            ),
            (
                ReceivedHeaders {
                    signature: None,
                    ..headers("m", &ts, &sig)
                },
                HEADER_SIGNATURE,
            ),
        ];
        for (h, name) in cases {
            assert_eq!(
                verify(std::slice::from_ref(&s), h, b"", NOW),
                Err(VerifyError::MissingHeader(name))
            );
        }
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert_eq!(
            verify(
                std::slice::from_ref(&s),
                headers(&long, &ts, &sig),
                b"",
                NOW
            ),
            Err(VerifyError::MalformedId)
        );
        assert_eq!(
            verify(&[], headers("m", &ts, &sig), b"", NOW),
            Err(VerifyError::NoSecret)
        );
    }

    #[test]
    fn secrets_must_be_whsec_base64_of_24_to_64_bytes() {
        let b64 = |n: usize| STANDARD.encode(vec![9u8; n]);
        assert!(Secret::parse(&format!("whsec_{}", b64(24))).is_ok());
        assert!(Secret::parse(&format!("whsec_{}", b64(64))).is_ok());
        assert_eq!(
            Secret::parse(&format!("whsec_{}", b64(23))),
            Err(SecretError::BadLength(23))
        );
        assert_eq!(
            Secret::parse(&format!("whsec_{}", b64(65))),
            Err(SecretError::BadLength(65))
        );
        assert_eq!(Secret::parse("whsec_"), Err(SecretError::Empty));
        assert_eq!(Secret::parse(""), Err(SecretError::Empty));
        assert_eq!(Secret::parse(&b64(32)), Err(SecretError::MissingPrefix));
        assert_eq!(
            Secret::parse("whsec_not*base64!"),
            Err(SecretError::NotBase64)
        );
        let s = secret(5);
        assert_eq!(Secret::parse(&s.to_whsec()), Ok(s.clone()));
        assert!(!format!("{s:?}").contains(&b64(32)));
    }

    #[test]
    fn secret_lists_name_the_bad_entry() {
        let good = secret(1).to_whsec();
        assert_eq!(
            Secret::parse_list(&format!(" {good}  {} ", secret(2).to_whsec()))
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            Secret::parse_list(&format!("{good} whsec_c2hvcnQ=")),
            Err((2, SecretError::BadLength(5)))
        );
        assert_eq!(Secret::parse_list("  "), Err((1, SecretError::Empty)));
    }
}
