//! The bodies that travel in webhooks: what the carrier sends us (validated here,
//! at the gateway and again by the processor), and the event types we send out.

use case_domain::Msisdn;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

/// The inbound carrier event types, as named on the wire.
pub const CARRIER_EVENT_TYPES: [&str; 3] = [
    "subscriber.suspended",
    "subscriber.signals",
    "provisioning.completed",
];

/// Most flagged contacts one signals event may carry.
pub const MAX_FLAGGED_CONTACTS: usize = 500;
/// Upper bound of each traffic count.
pub const MAX_SIGNAL: u64 = 1_000_000;

/// A validated carrier event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierEvent {
    /// When the carrier says it happened.
    pub timestamp: DateTime<Utc>,
    /// What happened.
    pub kind: CarrierEventKind,
}

/// The three things a carrier tells us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarrierEventKind {
    /// `subscriber.suspended`: a number was suspended.
    Suspended {
        /// The number.
        msisdn: Msisdn,
        /// The carrier's reason code.
        reason: String,
        /// When (`data.suspended_at`, else the event's timestamp).
        suspended_at: DateTime<Utc>,
    },
    /// `subscriber.signals`: a number's risk signals changed.
    Signals {
        /// The number.
        msisdn: Msisdn,
        /// Recent counterparties linked to reported fraud.
        fraud_linked_contacts: u32,
        /// Peak SMS in one hour.
        sms_peak_per_hour: u32,
        /// International calls in 24 hours.
        intl_calls_24h: u32,
        /// The counterparties the carrier flagged, in E.164.
        flagged_contacts: Vec<String>,
        /// The suspension reason, when the carrier sends it.
        suspension_reason: Option<String>,
    },
    /// `provisioning.completed`: an order we placed was carried out.
    ProvisioningCompleted {
        /// Our order id (the `externalId` we sent).
        order_id: Uuid,
        /// The number.
        msisdn: Msisdn,
        /// `full` or `inbound_only`.
        restoration: Restoration,
        /// The carrier's order reference, when sent.
        carrier_ref: Option<String>,
    },
}

/// How much service an order restored (the domain's type, re-exported here).
pub use case_domain::Restoration;

impl CarrierEvent {
    /// The wire name of the event's type.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            CarrierEventKind::Suspended { .. } => CARRIER_EVENT_TYPES[0],
            CarrierEventKind::Signals { .. } => CARRIER_EVENT_TYPES[1],
            CarrierEventKind::ProvisioningCompleted { .. } => CARRIER_EVENT_TYPES[2],
        }
    }

    /// The number the event is about.
    pub fn msisdn(&self) -> &Msisdn {
        match &self.kind {
            CarrierEventKind::Suspended { msisdn, .. }
            | CarrierEventKind::Signals { msisdn, .. }
            | CarrierEventKind::ProvisioningCompleted { msisdn, .. } => msisdn,
        }
    }
}

/// Why a carrier event body is refused (422). Field paths and messages never echo
/// values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The body is not a JSON object.
    #[error("the body must be a JSON object")]
    NotAnObject,
    /// `type` is not one of [`CARRIER_EVENT_TYPES`].
    #[error("unknown event type")]
    UnknownType,
    /// Fields are missing or invalid: (JSON path, what is wrong).
    #[error("invalid fields")]
    Invalid(Vec<(String, String)>),
}

/// Validates a carrier event body `{"type", "timestamp", "data": {...}}`. Unknown
/// extra fields are tolerated (carriers add fields); known ones must be valid.
pub fn parse_carrier_event(body: &Value) -> Result<CarrierEvent, EventError> {
    let object = body.as_object().ok_or(EventError::NotAnObject)?;
    let kind = object.get("type").and_then(Value::as_str);
    let Some(kind) = kind else {
        return Err(EventError::Invalid(vec![(
            "type".into(),
            format!("is required: one of {}", CARRIER_EVENT_TYPES.join(", ")),
        )]));
    };
    if !CARRIER_EVENT_TYPES.contains(&kind) {
        return Err(EventError::UnknownType);
    }
    let mut errors = Vec::new();
    let timestamp = match object.get("timestamp") {
        Some(v) => time(v, "timestamp", &mut errors),
        None => {
            errors.push(("timestamp".into(), "is required (RFC 3339)".into()));
            None
        }
    };
    let Some(data) = object.get("data").and_then(Value::as_object) else {
        errors.push(("data".into(), "is required: an object".into()));
        return Err(EventError::Invalid(errors));
    };
    let msisdn = match data.get("msisdn").and_then(Value::as_str) {
        Some(raw) => Msisdn::parse(raw)
            .map_err(|_| {
                errors.push((
                    "data.msisdn".into(),
                    "is not a mainland mobile number".into(),
                ))
            })
            .ok(),
        None => {
            errors.push(("data.msisdn".into(), "is required".into()));
            None
        }
    };
    let parsed = match kind {
        "subscriber.suspended" => {
            let reason = code(data.get("reason"), "data.reason", true, &mut errors);
            let suspended_at = data
                .get("suspended_at")
                .and_then(|v| time(v, "data.suspended_at", &mut errors));
            match (reason.flatten(), timestamp, msisdn) {
                (Some(reason), Some(timestamp), Some(msisdn)) => {
                    Some(CarrierEventKind::Suspended {
                        msisdn,
                        reason,
                        suspended_at: suspended_at.unwrap_or(timestamp),
                    })
                }
                _ => None,
            }
        }
        "subscriber.signals" => signals(data, &mut errors).zip(msisdn).map(
            |((fraud, sms, intl, flagged, reason), msisdn)| CarrierEventKind::Signals {
                msisdn,
                fraud_linked_contacts: fraud,
                sms_peak_per_hour: sms,
                intl_calls_24h: intl,
                flagged_contacts: flagged,
                suspension_reason: reason,
            },
        ),
        _ => {
            let order_id = match data.get("order_id").and_then(Value::as_str) {
                Some(raw) => raw
                    .parse::<Uuid>()
                    .map_err(|_| errors.push(("data.order_id".into(), "is not a UUID".into())))
                    .ok(),
                None => {
                    errors.push(("data.order_id".into(), "is required (a UUID)".into()));
                    None
                }
            };
            let restoration = match data.get("restoration").and_then(Value::as_str) {
                Some("full") => Some(Restoration::Full),
                Some("inbound_only") => Some(Restoration::InboundOnly),
                _ => {
                    errors.push((
                        "data.restoration".into(),
                        "must be full or inbound_only".into(),
                    ));
                    None
                }
            };
            let carrier_ref = code(
                data.get("carrier_ref"),
                "data.carrier_ref",
                false,
                &mut errors,
            )
            .flatten();
            match (order_id, restoration, msisdn) {
                (Some(order_id), Some(restoration), Some(msisdn)) => {
                    Some(CarrierEventKind::ProvisioningCompleted {
                        order_id,
                        msisdn,
                        restoration,
                        carrier_ref,
                    })
                }
                _ => None,
            }
        }
    };
    match (parsed, timestamp) {
        (Some(kind), Some(timestamp)) if errors.is_empty() => Ok(CarrierEvent { timestamp, kind }),
        _ => Err(EventError::Invalid(errors)),
    }
}

fn time(value: &Value, field: &str, errors: &mut Vec<(String, String)>) -> Option<DateTime<Utc>> {
    let parsed = value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    if parsed.is_none() {
        errors.push((field.into(), "must be an RFC 3339 time".into()));
    }
    parsed
}

/// A short code (`[A-Za-z0-9_.:-]`, 1–100 characters). `Some(None)` when absent and
/// optional; `None` on error.
fn code(
    value: Option<&Value>,
    field: &str,
    required: bool,
    errors: &mut Vec<(String, String)>,
) -> Option<Option<String>> {
    match value {
        None | Some(Value::Null) if !required => Some(None),
        None | Some(Value::Null) => {
            errors.push((field.into(), "is required".into()));
            None
        }
        Some(v) => {
            let ok = v.as_str().filter(|s| {
                (1..=100).contains(&s.len())
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
            });
            match ok {
                Some(s) => Some(Some(s.to_owned())),
                None => {
                    errors.push((
                        field.into(),
                        "must be a code of 1 to 100 letters, digits, '_', '.', ':' or '-'".into(),
                    ));
                    None
                }
            }
        }
    }
}

type ParsedSignals = (u32, u32, u32, Vec<String>, Option<String>);

fn signals(
    data: &serde_json::Map<String, Value>,
    errors: &mut Vec<(String, String)>,
) -> Option<ParsedSignals> {
    let before = errors.len();
    let Some(signals) = data.get("signals").and_then(Value::as_object) else {
        errors.push(("data.signals".into(), "is required: an object".into()));
        return None;
    };
    let mut count = |name: &str| -> u32 {
        match signals.get(name) {
            None => 0,
            Some(v) => match v.as_u64().filter(|n| *n <= MAX_SIGNAL) {
                Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
                None => {
                    errors.push((
                        format!("data.signals.{name}"),
                        format!("must be a whole number from 0 to {MAX_SIGNAL}"),
                    ));
                    0
                }
            },
        }
    };
    let fraud = count("fraud_linked_contacts");
    let sms = count("sms_peak_per_hour");
    let intl = count("intl_calls_24h");
    let mut flagged = Vec::new();
    match signals.get("flagged_contacts") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) if items.len() <= MAX_FLAGGED_CONTACTS => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(Msisdn::parse) {
                    Some(Ok(m)) => {
                        if !flagged.iter().any(|f| f == m.e164()) {
                            flagged.push(m.e164().to_owned());
                        }
                    }
                    _ => errors.push((
                        format!("data.signals.flagged_contacts[{i}]"),
                        "is not a mainland mobile number".into(),
                    )),
                }
            }
        }
        Some(_) => errors.push((
            "data.signals.flagged_contacts".into(),
            format!("must be a list of at most {MAX_FLAGGED_CONTACTS} numbers"),
        )),
    }
    let reason = code(
        data.get("suspension_reason"),
        "data.suspension_reason",
        false,
        errors,
    );
    if errors.len() > before {
        return None;
    }
    Some((fraud, sms, intl, flagged, reason.flatten()))
}

/// The outbound event types an endpoint may subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaseEventType {
    /// A case was opened.
    Opened,
    /// A case moved from one state to another.
    StateChanged,
}

impl CaseEventType {
    /// Every type.
    pub const ALL: [Self; 2] = [Self::Opened, Self::StateChanged];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "case.opened",
            Self::StateChanged => "case.state_changed",
        }
    }

    /// Parses the wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The type of a case-log row (`opened` rows have no previous state).
    pub fn of_event(event: &str) -> Self {
        if event == "opened" {
            Self::Opened
        } else {
            Self::StateChanged
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const T: &str = "2026-12-01T08:00:00Z";

    fn fields(result: Result<CarrierEvent, EventError>) -> Vec<String> {
        match result {
            Err(EventError::Invalid(errors)) => errors.into_iter().map(|(f, _)| f).collect(),
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn a_suspension_is_read() {
        let event = parse_carrier_event(&json!({
            "type": "subscriber.suspended", "timestamp": T,
            "data": {"msisdn": "13800138000", "reason": "fraud_linked_contacts", "extra": 1}
        }))
        .unwrap();
        assert_eq!(event.type_name(), "subscriber.suspended");
        assert_eq!(event.msisdn().e164(), "+8613800138000");
        match event.kind {
            CarrierEventKind::Suspended {
                reason,
                suspended_at,
                ..
            } => {
                assert_eq!(reason, "fraud_linked_contacts");
                assert_eq!(suspended_at, event.timestamp);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn signals_are_read_and_flagged_numbers_normalised() {
        let event = parse_carrier_event(&json!({
            "type": "subscriber.signals", "timestamp": T,
            "data": {"msisdn": "+8613800138000", "signals": {
                "fraud_linked_contacts": 3, "sms_peak_per_hour": 600,
                "flagged_contacts": ["13900000001", "+8613900000001", "+8613900000002"]}}
        }))
        .unwrap();
        match event.kind {
            CarrierEventKind::Signals {
                fraud_linked_contacts,
                sms_peak_per_hour,
                intl_calls_24h,
                flagged_contacts,
                suspension_reason,
                ..
            } => {
                assert_eq!(
                    (fraud_linked_contacts, sms_peak_per_hour, intl_calls_24h),
                    (3, 600, 0)
                );
                assert_eq!(flagged_contacts, ["+8613900000001", "+8613900000002"]);
                assert_eq!(suspension_reason, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_order_completion_is_read() {
        let id = Uuid::now_v7();
        let event = parse_carrier_event(&json!({
            "type": "provisioning.completed", "timestamp": T,
            "data": {"order_id": id, "msisdn": "+8613800138000", "restoration": "inbound_only", "carrier_ref": "SO-1"}
        }))
        .unwrap();
        assert_eq!(
            event.kind,
            CarrierEventKind::ProvisioningCompleted {
                order_id: id,
                msisdn: Msisdn::parse("+8613800138000").unwrap(),
                restoration: Restoration::InboundOnly,
                carrier_ref: Some("SO-1".into()),
            }
        );
    }

    #[test]
    fn unknown_types_and_non_objects_are_told_apart() {
        assert_eq!(
            parse_carrier_event(&json!({"type": "subscriber.deleted", "timestamp": T, "data": {}})),
            Err(EventError::UnknownType)
        );
        assert_eq!(
            parse_carrier_event(&json!([1])),
            Err(EventError::NotAnObject)
        );
        assert_eq!(fields(parse_carrier_event(&json!({"data": {}}))), ["type"]);
    }

    #[test]
    fn every_bad_field_is_named_without_its_value() {
        let result = parse_carrier_event(&json!({
            "type": "provisioning.completed", "timestamp": "yesterday",
            "data": {"order_id": "x", "msisdn": "110", "restoration": "half"}
        }));
        let message = format!("{result:?}");
        assert!(!message.contains("yesterday") && !message.contains("half"));
        assert_eq!(
            fields(result),
            [
                "timestamp",
                "data.msisdn",
                "data.order_id",
                "data.restoration"
            ]
        );
        assert_eq!(
            fields(parse_carrier_event(&json!({
                "type": "subscriber.signals", "timestamp": T,
                "data": {"msisdn": "+8613800138000", "signals": {"sms_peak_per_hour": -1, "flagged_contacts": ["x"]}}
            }))),
            [
                "data.signals.sms_peak_per_hour",
                "data.signals.flagged_contacts[0]"
            ]
        );
        assert_eq!(
            fields(parse_carrier_event(&json!({
                "type": "subscriber.suspended", "timestamp": T,
                "data": {"msisdn": "+8613800138000", "reason": "has space"}
            }))),
            ["data.reason"]
        );
        assert_eq!(
            fields(parse_carrier_event(
                &json!({"type": "subscriber.suspended", "timestamp": T})
            )),
            ["data"]
        );
    }

    #[test]
    fn case_event_types_round_trip() {
        for t in CaseEventType::ALL {
            assert_eq!(CaseEventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(CaseEventType::parse("case.deleted"), None);
        assert_eq!(CaseEventType::of_event("opened"), CaseEventType::Opened);
        assert_eq!(
            CaseEventType::of_event("restored"),
            CaseEventType::StateChanged
        );
    }
}
