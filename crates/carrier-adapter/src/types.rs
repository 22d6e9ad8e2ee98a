//! The data exchanged with the carrier. Serde names are the wire names: snake_case,
//! except order states, which follow TMF641 (`acknowledged`, `inProgress`, ...).

use std::fmt;

use case_domain::Msisdn;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kind of a contact the carrier holds for a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactKind {
    /// A mobile number that receives SMS.
    Sms,
    /// An e-mail address.
    Email,
}

impl ContactKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Email => "email",
        }
    }
}

/// Which contact on file a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageChannel {
    /// An SMS contact on file.
    Sms,
    /// An e-mail contact on file.
    Email,
    /// Whatever contact is on file (the carrier prefers SMS).
    Any,
}

impl MessageChannel {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Email => "email",
            Self::Any => "any",
        }
    }
}

impl From<ContactKind> for MessageChannel {
    fn from(kind: ContactKind) -> Self {
        match kind {
            ContactKind::Sms => Self::Sms,
            ContactKind::Email => Self::Email,
        }
    }
}

/// A backup contact held by the carrier, as the carrier shows it (masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactOnFile {
    /// SMS or e-mail.
    pub kind: ContactKind,
    /// The address, masked by the carrier (e.g. `+86*******9001`, `l***@example.com`).
    pub masked: String,
}

/// The carrier's receipt for a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentMessage {
    /// The carrier's id of the message.
    pub message_id: String,
    /// Where it went, masked.
    pub sent_to_masked: String,
    /// The kind of contact it went to.
    pub kind: ContactKind,
}

/// The carrier's anti-fraud signals for a subscriber.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskSignals {
    /// Contacts of the subscriber linked to known fraud.
    pub fraud_linked_contacts: u32,
    /// Highest number of SMS sent in one hour recently.
    pub sms_peak_per_hour: u32,
    /// International calls in the last 24 hours.
    pub intl_calls_24h: u32,
    /// Why the number was suspended, when it is (a code such as `fraud_linked_contacts`).
    pub suspension_reason: Option<String>,
    /// The flagged counterparties (numbers; personal data of third parties: masked in `Debug`).
    pub flagged_contacts: Vec<String>,
}

impl fmt::Debug for RiskSignals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flagged: Vec<String> = self
            .flagged_contacts
            .iter()
            .map(|c| mask_number(c))
            .collect();
        f.debug_struct("RiskSignals")
            .field("fraud_linked_contacts", &self.fraud_linked_contacts)
            .field("sms_peak_per_hour", &self.sms_peak_per_hour)
            .field("intl_calls_24h", &self.intl_calls_24h)
            .field("suspension_reason", &self.suspension_reason)
            .field("flagged_contacts", &flagged)
            .finish()
    }
}

/// Masks a counterparty that may not be a valid mainland number: the last four characters.
fn mask_number(raw: &str) -> String {
    match Msisdn::parse(raw) {
        Ok(m) => m.masked(),
        Err(_) => {
            let chars: Vec<char> = raw.chars().collect();
            if chars.len() <= 6 {
                "***".to_owned()
            } else {
                let tail: String = chars[chars.len() - 4..].iter().collect();
                format!("***{tail}")
            }
        }
    }
}

/// How much service a resume order restores (the domain's type, re-exported here).
pub use case_domain::Restoration;

/// The state of a carrier service order (TMF641 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OrderState {
    /// Received, not started.
    Acknowledged,
    /// Being carried out.
    InProgress,
    /// Done: the service is restored.
    Completed,
    /// The carrier could not carry it out.
    Failed,
    /// Cancelled before it took effect (it never will).
    Cancelled,
}

impl OrderState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acknowledged => "acknowledged",
            Self::InProgress => "inProgress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the order will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// A request to resume a subscriber's service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOrderRequest {
    /// Chosen by the product; also the idempotency key of the order.
    pub order_id: Uuid,
    /// The number to resume.
    pub msisdn: Msisdn,
    /// How much to restore.
    pub restoration: Restoration,
}

/// A service order as the carrier reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceOrder {
    /// The product's id of the order (its `externalId` at the carrier).
    pub order_id: Uuid,
    /// The carrier's own reference.
    pub carrier_ref: String,
    /// Where the order stands.
    pub state: OrderState,
    /// How much it restores.
    pub restoration: Restoration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_snake_case_and_tmf641_for_order_states() {
        let names = |v: serde_json::Value| v.to_string();
        assert_eq!(names(serde_json::json!(ContactKind::Email)), "\"email\"");
        assert_eq!(names(serde_json::json!(MessageChannel::Any)), "\"any\"");
        assert_eq!(
            names(serde_json::json!(Restoration::InboundOnly)),
            "\"inbound_only\""
        );
        for state in [
            OrderState::Acknowledged,
            OrderState::InProgress,
            OrderState::Completed,
            OrderState::Failed,
            OrderState::Cancelled,
        ] {
            assert_eq!(
                names(serde_json::json!(state)),
                format!("\"{}\"", state.as_str())
            );
        }
        assert_eq!(OrderState::InProgress.as_str(), "inProgress");
        assert_eq!(Restoration::InboundOnly.as_str(), "inbound_only");
        let state: OrderState = serde_json::from_str("\"inProgress\"").unwrap();
        assert_eq!(state, OrderState::InProgress);
        assert!(serde_json::from_str::<OrderState>("\"in_progress\"").is_err());
    }

    #[test]
    fn risk_signals_debug_masks_the_flagged_numbers() {
        let signals = RiskSignals {
            fraud_linked_contacts: 2,
            flagged_contacts: vec!["+8613700137001".into(), "12345".into()],
            ..RiskSignals::default()
        };
        let shown = format!("{signals:?}");
        assert!(shown.contains("+86*******7001"), "{shown}");
        assert!(!shown.contains("13700137001"), "{shown}");
        assert!(!shown.contains("12345"), "{shown}");
    }

    #[test]
    fn order_requests_print_the_number_masked() {
        let request = ServiceOrderRequest {
            order_id: Uuid::nil(),
            msisdn: Msisdn::parse("+8613800138000").unwrap(),
            restoration: Restoration::Full,
        };
        assert!(!format!("{request:?}").contains("13800138000"));
    }
}
