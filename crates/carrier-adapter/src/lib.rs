//! Everything the reactivation product asks the carrier, behind one trait.
//!
//! Owns: the [`Carrier`] trait (subscriber match, service-password check, contacts on
//! file, messages to a contact on file, call-record check, risk signals, service orders),
//! the data it speaks ([`ContactOnFile`], [`SentMessage`], [`RiskSignals`],
//! [`ServiceOrderRequest`], [`ServiceOrder`], ...), its error type [`CarrierError`], and
//! [`HttpCarrier`], the implementation over the carrier's HTTP API (the simulator speaks
//! the same protocol; a real carrier integration implements the same trait).
//!
//! Must not: make case decisions, touch the product's database, or send a message to an
//! address the requester supplied (only to contacts on file, by kind). It never writes
//! personal data (numbers, names, ID numbers, passwords, message bodies) to logs or error
//! strings: only masked forms.

mod error;
mod http;
mod types;

pub use error::CarrierError;
pub use http::{CarrierConfigError, HttpCarrier};
pub use types::{
    ContactKind, ContactOnFile, MessageChannel, OrderState, Restoration, RiskSignals, SentMessage,
    ServiceOrder, ServiceOrderRequest,
};

use async_trait::async_trait;
use case_domain::{Msisdn, PersonName, ResidentId};
use uuid::Uuid;

/// What the product asks the carrier. Every call is safe to retry on
/// [`CarrierError::Unavailable`]: lookups change nothing, the two calls with an
/// effect ([`Carrier::send_message`], [`Carrier::submit_order`]) carry an idempotency key,
/// and a cancellation ([`Carrier::cancel_order`]) is idempotent.
#[async_trait]
pub trait Carrier: Send + Sync + std::fmt::Debug {
    /// Whether the number belongs to the person with this name and resident ID.
    /// Yes or no only (also `false` for an unknown number); never which part differs.
    async fn subscriber_matches(
        &self,
        msisdn: &Msisdn,
        name: &PersonName,
        id: &ResidentId,
    ) -> Result<bool, CarrierError>;

    /// Whether `password` is the number's service password (`false` for an unknown number).
    async fn verify_service_password(
        &self,
        msisdn: &Msisdn,
        password: &str,
    ) -> Result<bool, CarrierError>;

    /// The backup contacts the carrier holds for the number, masked.
    /// [`CarrierError::NotFound`] for an unknown number.
    async fn contacts_on_file(&self, msisdn: &Msisdn) -> Result<Vec<ContactOnFile>, CarrierError>;

    /// Sends `body` to a contact **on file** of the given kind (the product never passes
    /// an address). The same `idempotency_key` again returns the first answer and sends
    /// nothing. [`CarrierError::NoContactOnFile`] when there is no such contact.
    async fn send_message(
        &self,
        msisdn: &Msisdn,
        channel: MessageChannel,
        body: &str,
        idempotency_key: &str,
    ) -> Result<SentMessage, CarrierError>;

    /// How many of `counterparties` (distinct) are among the subscriber's recent call
    /// counterparties (0 for an unknown number).
    async fn count_call_record_matches(
        &self,
        msisdn: &Msisdn,
        counterparties: &[Msisdn],
    ) -> Result<u32, CarrierError>;

    /// The carrier's anti-fraud signals for the number. [`CarrierError::NotFound`] for an
    /// unknown number.
    async fn risk_signals(&self, msisdn: &Msisdn) -> Result<RiskSignals, CarrierError>;

    /// Asks the carrier to resume service. `order.order_id` is the idempotency key: the
    /// same order again returns the existing order (its current state) with no second effect.
    async fn submit_order(&self, order: &ServiceOrderRequest)
    -> Result<ServiceOrder, CarrierError>;

    /// The current state of an order. [`CarrierError::NotFound`] for an unknown order.
    async fn get_order(&self, order_id: Uuid) -> Result<ServiceOrder, CarrierError>;

    /// Asks the carrier to cancel an order (TMF641 `cancelServiceOrder`) and answers the
    /// order as it stands afterwards: [`OrderState::Cancelled`] when it will never take
    /// effect (an order the carrier never received is recorded as cancelled, so a late
    /// copy of it is refused), or its final state when it was too late
    /// ([`OrderState::Completed`], [`OrderState::Failed`]). Safe to repeat.
    async fn cancel_order(&self, order: &ServiceOrderRequest)
    -> Result<ServiceOrder, CarrierError>;
}
