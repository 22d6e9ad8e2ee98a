//! Four demo subscribers, one per path through the product, for `reactivation dev` to
//! load and print. The values are public so the dev command can show how to try each.
//! All are suspended at first; numbers, names and resident IDs are made up (the IDs
//! carry a correct check character, so `case_domain::ResidentId` accepts them).

use std::fmt;

use sqlx::PgPool;

use crate::{
    db::{self, OnExisting},
    model::{BackupContact, ContactKind, NewSubscriber, Signals, SubscriberStatus},
    subscribers,
};

/// One demo subscriber, with everything needed to try it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DemoSubscriber {
    /// Short name: `clean`, `forgot-password`, `no-backup-contact`, `flagged`.
    pub key: &'static str,
    /// What this subscriber demonstrates.
    pub summary: &'static str,
    /// How to walk it through the product.
    pub how_to_try: &'static str,
    /// The number, E.164.
    pub msisdn: &'static str,
    /// The registered name.
    pub full_name: &'static str,
    /// The resident ID.
    pub id_number: &'static str,
    /// The service password the carrier holds.
    pub service_password: &'static str,
    /// A backup SMS number on file, if any.
    pub sms_contact: Option<&'static str>,
    /// A backup e-mail address on file, if any.
    pub email_contact: Option<&'static str>,
    /// Recent call counterparties (name three or more to pass the call-record proof).
    pub recent_contacts: &'static [&'static str],
    /// Contacts linked to fraud.
    pub fraud_linked_contacts: u32,
    /// Highest SMS count in one hour.
    pub sms_peak_per_hour: u32,
    /// International calls in 24 hours.
    pub intl_calls_24h: u32,
    /// Counterparties flagged by anti-fraud (among `recent_contacts`).
    pub flagged_contacts: &'static [&'static str],
    /// Why the number is suspended.
    pub suspension_reason: &'static str,
}

impl fmt::Debug for DemoSubscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoSubscriber")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl DemoSubscriber {
    /// Where a one-time code goes for this subscriber (read it from `GET /sim/outbox?to=`):
    /// the SMS contact, else the e-mail contact.
    pub fn contact_address(&self) -> Option<&'static str> {
        self.sms_contact.or(self.email_contact)
    }

    /// The `POST /sim/subscribers` body for this subscriber.
    pub fn new_subscriber(&self) -> NewSubscriber {
        let contacts = [
            (ContactKind::Sms, self.sms_contact),
            (ContactKind::Email, self.email_contact),
        ];
        NewSubscriber {
            msisdn: self.msisdn.to_owned(),
            full_name: self.full_name.to_owned(),
            id_number: self.id_number.to_owned(),
            service_password: Some(self.service_password.to_owned()),
            backup_contacts: contacts
                .into_iter()
                .filter_map(|(kind, address)| {
                    address.map(|a| BackupContact {
                        kind,
                        address: a.to_owned(),
                    })
                })
                .collect(),
            recent_contacts: self
                .recent_contacts
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
            signals: Signals {
                fraud_linked_contacts: self.fraud_linked_contacts,
                sms_peak_per_hour: self.sms_peak_per_hour,
                intl_calls_24h: self.intl_calls_24h,
                flagged_contacts: self
                    .flagged_contacts
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect(),
            },
            status: SubscriberStatus::Suspended,
            suspension_reason: Some(self.suspension_reason.to_owned()),
        }
    }
}

/// Everything checks out: name and ID match, the password is known, an SMS backup
/// contact receives the code, no risk signals. Reaches `reactivated` with no human.
pub const CLEAN: DemoSubscriber = DemoSubscriber {
    key: "clean",
    summary: "clean case: known service password, backup SMS contact, no risk signals",
    how_to_try: "open a case with this number, name and ID; prove with the service password \
                 or an OTP (read it from GET /sim/outbox?to=<sms contact>)",
    msisdn: "+8613800138001",
    full_name: "张伟",
    id_number: "110105199003071239",
    service_password: "135790",
    sms_contact: Some("+8613900139001"),
    email_contact: None,
    recent_contacts: &[
        "+8613700137001",
        "+8613700137002",
        "+8613700137003",
        "+8613700137004",
    ],
    fraud_linked_contacts: 0,
    sms_peak_per_hour: 0,
    intl_calls_24h: 0,
    flagged_contacts: &[],
    suspension_reason: "real_name_reverification",
};

/// Like [`CLEAN`], but the subscriber has forgotten the service password: the one-time
/// code goes to the backup e-mail address on file.
pub const FORGOT_PASSWORD: DemoSubscriber = DemoSubscriber {
    key: "forgot-password",
    summary: "forgot the service password; backup e-mail contact receives the OTP",
    how_to_try: "open a case, ask for an OTP (it goes to the e-mail on file: \
                 GET /sim/outbox?to=<email contact>) and submit it",
    msisdn: "+8613800138002",
    full_name: "李娜",
    id_number: "310104198506142023",
    service_password: "864209",
    sms_contact: None,
    email_contact: Some("li.na@example.com"),
    recent_contacts: &["+8613700137011", "+8613700137012", "+8613700137013"],
    fraud_linked_contacts: 0,
    sms_peak_per_hour: 0,
    intl_calls_24h: 0,
    flagged_contacts: &[],
    suspension_reason: "real_name_reverification",
};

/// No backup contact at all: no OTP is possible, only the service password or naming
/// recent call counterparties works.
pub const NO_BACKUP_CONTACT: DemoSubscriber = DemoSubscriber {
    key: "no-backup-contact",
    summary: "no backup contact on file: only the service password or call records work",
    how_to_try: "open a case; an OTP request finds no contact; prove with the service password \
                 or name three recent counterparties",
    msisdn: "+8613800138003",
    full_name: "王强",
    id_number: "440305199211183515",
    service_password: "246810",
    sms_contact: None,
    email_contact: None,
    recent_contacts: &[
        "+8613700137021",
        "+8613700137022",
        "+8613700137023",
        "+8613700137024",
    ],
    fraud_linked_contacts: 0,
    sms_peak_per_hour: 0,
    intl_calls_24h: 0,
    flagged_contacts: &[],
    suspension_reason: "long_inactivity",
};

/// High risk signals: linked to fraud, SMS bursts, international calls. Identity proofs
/// pass, then the case goes to a security analyst, who asks about the flagged contacts.
pub const FLAGGED: DemoSubscriber = DemoSubscriber {
    key: "flagged",
    summary: "risk signals that grade medium (fraud-linked contacts, SMS bursts, international calls)",
    how_to_try: "open a case: its tier (medium) asks for both the service password and the OTP; \
                 the case then goes to security review, explain the flagged counterparties, an \
                 analyst decides (full or inbound only)",
    msisdn: "+8613800138004",
    full_name: "刘洋",
    id_number: "510107198809254475",
    service_password: "975310",
    sms_contact: Some("+8613900139004"),
    email_contact: None,
    recent_contacts: &[
        "+8613700137031",
        "+8613700137032",
        "+8613700137033",
        "+8613700137034",
    ],
    fraud_linked_contacts: 2,
    sms_peak_per_hour: 300,
    intl_calls_24h: 15,
    flagged_contacts: &["+8613700137031", "+8613700137032"],
    suspension_reason: "fraud_linked_contacts",
};

/// The four demo subscribers.
pub const ALL: [DemoSubscriber; 4] = [CLEAN, FORGOT_PASSWORD, NO_BACKUP_CONTACT, FLAGGED];

/// The `POST /sim/subscribers` bodies of the four demo subscribers.
pub fn subscribers() -> Vec<NewSubscriber> {
    ALL.iter().map(DemoSubscriber::new_subscriber).collect()
}

/// Creates the schema if needed and adds the demo subscribers that are missing. Existing
/// ones are kept as they are, so their state (e.g. reactivated) survives restarts; use
/// [`reset`] to put them back to their initial state.
pub async fn seed(pool: &PgPool) -> anyhow::Result<()> {
    store_all(pool, OnExisting::Keep).await
}

/// Creates the schema if needed and puts every demo subscriber back to its initial state.
pub async fn reset(pool: &PgPool) -> anyhow::Result<()> {
    store_all(pool, OnExisting::Replace).await
}

async fn store_all(pool: &PgPool, on_existing: OnExisting) -> anyhow::Result<()> {
    db::prepare(pool).await?;
    for demo in ALL {
        subscribers::store(pool, &demo.new_subscriber(), on_existing)
            .await
            .map_err(|e| anyhow::anyhow!("demo subscriber `{}`: {e}", demo.key))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use case_domain::{Msisdn, PersonName, ResidentId};

    use super::*;

    #[test]
    fn demo_values_are_valid_and_distinct() {
        for demo in ALL {
            assert!(ResidentId::parse(demo.id_number).is_ok(), "{}", demo.key);
            assert!(Msisdn::parse(demo.msisdn).is_ok(), "{}", demo.key);
            assert!(PersonName::parse(demo.full_name).is_ok(), "{}", demo.key);
            assert!(demo.new_subscriber().validate().is_ok(), "{}", demo.key);
            assert!(demo.recent_contacts.len() >= 3, "{}", demo.key);
            for flagged in demo.flagged_contacts {
                assert!(demo.recent_contacts.contains(flagged), "{}", demo.key);
            }
        }
        let mut numbers: Vec<&str> = ALL.iter().map(|d| d.msisdn).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), 4);
        assert_eq!(NO_BACKUP_CONTACT.contact_address(), None);
        assert_eq!(FORGOT_PASSWORD.contact_address(), Some("li.na@example.com"));
        assert_eq!(FLAGGED.flagged_contacts.len(), 2);
    }
}
