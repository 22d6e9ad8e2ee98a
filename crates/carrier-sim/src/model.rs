//! The simulator's own data: the `POST /sim/subscribers` body ([`NewSubscriber`]) and
//! its validation into the form that is stored. Independent of `carrier-adapter` on
//! purpose, so the contract tests between the two crates test the wire, not shared code.

use std::fmt;

use case_domain::{Msisdn, PersonName, ResidentId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Most backup contacts one subscriber may have.
const MAX_BACKUP_CONTACTS: usize = 5;
/// Most recent call counterparties one subscriber may have.
const MAX_RECENT_CONTACTS: usize = 500;
/// Upper bound of each traffic signal.
const MAX_SIGNAL: u32 = 1_000_000;

/// The kind of a backup contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactKind {
    /// A mobile number (SMS).
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

/// Whether the line works.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriberStatus {
    /// In service (fully, or inbound only after a partial resume).
    Active,
    /// Protectively suspended.
    #[default]
    Suspended,
}

impl SubscriberStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
}

/// A backup contact the carrier holds (unmasked: this is the simulator's own record).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupContact {
    /// SMS or e-mail.
    pub kind: ContactKind,
    /// A mainland mobile number for `sms`, an e-mail address for `email`.
    pub address: String,
}

impl fmt::Debug for BackupContact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupContact")
            .field("kind", &self.kind)
            .field("address", &mask_address(self.kind, &self.address))
            .finish()
    }
}

/// The carrier's anti-fraud signals for a subscriber.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signals {
    /// Contacts linked to known fraud.
    #[serde(default)]
    pub fraud_linked_contacts: u32,
    /// Highest number of SMS in one hour recently.
    #[serde(default)]
    pub sms_peak_per_hour: u32,
    /// International calls in the last 24 hours.
    #[serde(default)]
    pub intl_calls_24h: u32,
    /// The counterparties the anti-fraud side flagged (mainland numbers). An addition to
    /// the contract's body; defaults to none.
    #[serde(default)]
    pub flagged_contacts: Vec<String>,
}

impl fmt::Debug for Signals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signals")
            .field("fraud_linked_contacts", &self.fraud_linked_contacts)
            .field("sms_peak_per_hour", &self.sms_peak_per_hour)
            .field("intl_calls_24h", &self.intl_calls_24h)
            .field("flagged_contacts", &self.flagged_contacts.len())
            .finish()
    }
}

/// The body of `POST /sim/subscribers`: a subscriber record, created or replaced by
/// `msisdn`. Everything but `msisdn`, `full_name` and `id_number` may be left out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubscriber {
    /// The number (any spelling `case_domain::Msisdn` accepts).
    pub msisdn: String,
    /// The registered name.
    pub full_name: String,
    /// The 18-character resident ID.
    pub id_number: String,
    /// The service password (stored as an argon2id hash); none means no password works.
    #[serde(default)]
    pub service_password: Option<String>,
    /// Where one-time codes may go.
    #[serde(default)]
    pub backup_contacts: Vec<BackupContact>,
    /// Recent call counterparties (mainland numbers).
    #[serde(default)]
    pub recent_contacts: Vec<String>,
    /// Traffic and fraud signals.
    #[serde(default)]
    pub signals: Signals,
    /// `suspended` (default) or `active`.
    #[serde(default)]
    pub status: SubscriberStatus,
    /// Why the number is suspended (a code such as `fraud_linked_contacts`).
    #[serde(default)]
    pub suspension_reason: Option<String>,
}

impl fmt::Debug for NewSubscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked =
            Msisdn::parse(&self.msisdn).map_or_else(|_| "(invalid)".into(), |m| m.masked());
        f.debug_struct("NewSubscriber")
            .field("msisdn", &masked)
            .field("full_name", &"(redacted)")
            .field("id_number", &"(redacted)")
            .field(
                "service_password",
                &self.service_password.as_ref().map(|_| "(redacted)"),
            )
            .field("backup_contacts", &self.backup_contacts)
            .field("recent_contacts", &self.recent_contacts.len())
            .field("signals", &self.signals)
            .field("status", &self.status)
            .field("suspension_reason", &self.suspension_reason)
            .finish()
    }
}

/// A subscriber record that passed validation, in the form it is stored.
#[derive(Debug, Clone)]
pub(crate) struct ValidSubscriber {
    pub msisdn: Msisdn,
    pub full_name: PersonName,
    pub id_number: ResidentId,
    pub service_password: Option<String>,
    pub backup_contacts: Vec<BackupContact>,
    pub recent_contacts: Vec<String>,
    pub signals: Signals,
    pub status: SubscriberStatus,
    pub suspension_reason: Option<String>,
}

/// One refused field: `field` is a JSON path, `detail` never echoes the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct FieldError {
    pub field: String,
    pub detail: String,
}

impl FieldError {
    fn new(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            detail: detail.into(),
        }
    }
}

/// The `errors` extension of a 422 problem.
pub(crate) fn errors_json(errors: &[FieldError]) -> Value {
    json!(errors)
}

impl NewSubscriber {
    /// Checks every field, reporting all refusals at once.
    pub(crate) fn validate(&self) -> Result<ValidSubscriber, Vec<FieldError>> {
        let mut errors = Vec::new();
        let msisdn = Msisdn::parse(&self.msisdn)
            .map_err(|e| errors.push(FieldError::new("msisdn", e.to_string())))
            .ok();
        let full_name = PersonName::parse(&self.full_name)
            .map_err(|e| errors.push(FieldError::new("full_name", e.to_string())))
            .ok();
        let id_number = ResidentId::parse(&self.id_number)
            .map_err(|e| errors.push(FieldError::new("id_number", e.to_string())))
            .ok();
        if let Some(password) = &self.service_password {
            let length = password.chars().count();
            if !(1..=64).contains(&length) || password.chars().any(char::is_control) {
                errors.push(FieldError::new(
                    "service_password",
                    "must be 1 to 64 characters without control characters",
                ));
            }
        }
        if self.backup_contacts.len() > MAX_BACKUP_CONTACTS {
            errors.push(FieldError::new(
                "backup_contacts",
                format!("at most {MAX_BACKUP_CONTACTS} contacts"),
            ));
        }
        let mut backup_contacts = Vec::new();
        for (i, contact) in self.backup_contacts.iter().enumerate() {
            match normalise_address(contact.kind, &contact.address) {
                Ok(address) => backup_contacts.push(BackupContact {
                    kind: contact.kind,
                    address,
                }),
                Err(detail) => {
                    errors.push(FieldError::new(
                        format!("backup_contacts[{i}].address"),
                        detail,
                    ));
                }
            }
        }
        if self.recent_contacts.len() > MAX_RECENT_CONTACTS {
            errors.push(FieldError::new(
                "recent_contacts",
                format!("at most {MAX_RECENT_CONTACTS} numbers"),
            ));
        }
        let recent_contacts = numbers(&self.recent_contacts, "recent_contacts", &mut errors);
        let flagged = numbers(
            &self.signals.flagged_contacts,
            "signals.flagged_contacts",
            &mut errors,
        );
        for (name, value) in [
            ("fraud_linked_contacts", self.signals.fraud_linked_contacts),
            ("sms_peak_per_hour", self.signals.sms_peak_per_hour),
            ("intl_calls_24h", self.signals.intl_calls_24h),
        ] {
            if value > MAX_SIGNAL {
                errors.push(FieldError::new(
                    format!("signals.{name}"),
                    format!("must be at most {MAX_SIGNAL}"),
                ));
            }
        }
        let suspension_reason = self
            .suspension_reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        if let Some(reason) = suspension_reason
            && (reason.chars().count() > 200 || reason.chars().any(char::is_control))
        {
            errors.push(FieldError::new(
                "suspension_reason",
                "must be at most 200 characters without control characters",
            ));
        }
        match (msisdn, full_name, id_number) {
            (Some(msisdn), Some(full_name), Some(id_number)) if errors.is_empty() => {
                Ok(ValidSubscriber {
                    msisdn,
                    full_name,
                    id_number,
                    service_password: self.service_password.clone(),
                    backup_contacts,
                    recent_contacts,
                    signals: Signals {
                        flagged_contacts: flagged,
                        ..self.signals.clone()
                    },
                    status: self.status,
                    suspension_reason: suspension_reason.map(str::to_owned),
                })
            }
            _ => Err(errors),
        }
    }
}

/// Parses a list of mainland numbers into E.164, without duplicates, in order.
fn numbers(input: &[String], field: &str, errors: &mut Vec<FieldError>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, raw) in input.iter().enumerate() {
        match Msisdn::parse(raw) {
            Ok(m) => {
                if !out.iter().any(|n| n == m.e164()) {
                    out.push(m.e164().to_owned());
                }
            }
            Err(e) => errors.push(FieldError::new(format!("{field}[{i}]"), e.to_string())),
        }
    }
    out
}

/// The stored form of a contact address: E.164 for SMS, lower-case for e-mail.
pub(crate) fn normalise_address(kind: ContactKind, address: &str) -> Result<String, String> {
    match kind {
        ContactKind::Sms => Msisdn::parse(address)
            .map(|m| m.e164().to_owned())
            .map_err(|e| e.to_string()),
        ContactKind::Email => {
            let address = address.trim().to_lowercase();
            let valid = address.len() <= 254
                && !address.chars().any(|c| c.is_whitespace() || c.is_control())
                && address.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty()
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !domain.contains('@')
                });
            if valid {
                Ok(address)
            } else {
                Err("must be an e-mail address such as name@example.com".to_owned())
            }
        }
    }
}

/// The masked form of a contact address, as the carrier shows it.
pub(crate) fn mask_address(kind: ContactKind, address: &str) -> String {
    match kind {
        ContactKind::Sms => Msisdn::parse(address).map_or_else(|_| "***".into(), |m| m.masked()),
        ContactKind::Email => match address.split_once('@') {
            Some((local, domain)) => {
                let first = local.chars().next().unwrap_or('*');
                format!("{first}***@{domain}")
            }
            None => "***".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> NewSubscriber {
        serde_json::from_value(json!({
            "msisdn": "13800138000",
            "full_name": "张伟",
            "id_number": "110105199003071239",
            "service_password": "135790",
            "backup_contacts": [
                {"kind": "sms", "address": "139 0013 9001"},
                {"kind": "email", "address": " Zhang.Wei@Example.com "}
            ],
            "recent_contacts": ["+8613700137001", "13700137001", "+8613700137002"],
            "signals": {"fraud_linked_contacts": 0, "sms_peak_per_hour": 3, "intl_calls_24h": 0},
            "status": "suspended",
            "suspension_reason": "real_name_reverification"
        }))
        .unwrap()
    }

    #[test]
    fn a_valid_body_is_normalised() {
        let valid = body().validate().unwrap();
        assert_eq!(valid.msisdn.e164(), "+8613800138000");
        assert_eq!(valid.backup_contacts[0].address, "+8613900139001");
        assert_eq!(valid.backup_contacts[1].address, "zhang.wei@example.com");
        assert_eq!(valid.recent_contacts, ["+8613700137001", "+8613700137002"]);
    }

    #[test]
    fn every_refusal_is_reported_without_the_value() {
        let mut bad = body();
        bad.msisdn = "+1 415 555 0100".into();
        bad.id_number = "110105199003071230".into();
        bad.backup_contacts[1].address = "not-mail".into();
        bad.recent_contacts.push("12345".into());
        let errors = bad.validate().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "msisdn",
                "id_number",
                "backup_contacts[1].address",
                "recent_contacts[3]"
            ]
        );
        let shown = serde_json::to_string(&errors).unwrap();
        assert!(!shown.contains("110105199003071230") && !shown.contains("not-mail"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut value = serde_json::to_value(body()).unwrap();
        value["colour"] = json!("blue");
        assert!(serde_json::from_value::<NewSubscriber>(value).is_err());
    }

    #[test]
    fn debug_hides_personal_data() {
        let shown = format!("{:?}", body());
        for secret in [
            "13800138000",
            "张伟",
            "110105199003071239",
            "135790",
            "zhang.wei",
            "13900139001",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn addresses_are_masked() {
        assert_eq!(
            mask_address(ContactKind::Sms, "+8613900139001"),
            "+86*******9001"
        );
        assert_eq!(
            mask_address(ContactKind::Email, "li.na@example.com"),
            "l***@example.com"
        );
    }
}
