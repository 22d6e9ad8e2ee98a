//! Webhooks, the pure part: one implementation shared by the gateway (verifying the
//! carrier's webhooks), the webhooks service (signing and sending ours) and the
//! carrier simulator (signing its webhooks).
//!
//! Owns: Standard Webhooks 1.0 symmetric signatures ([`signature`]: `whsec_` secrets of
//! 24–64 bytes, `v1,` signatures over `{id}.{timestamp}.{body}`, verification in
//! constant time with lengths compared and a ±5 minute timestamp tolerance, several
//! secrets for rotation); the SSRF check of endpoint URLs ([`destination`]); the retry
//! schedule of outbound deliveries ([`schedule`]); the carrier event bodies and the
//! outbound event types ([`events`]).
//!
//! Must not: do I/O (no network, no database, no clock: callers pass the time, the
//! resolver and the random numbers), or log anything.

pub mod destination;
pub mod events;
pub mod schedule;
pub mod signature;

pub use destination::{
    DestinationPolicy, EndpointUrl, Refusal, parse_endpoint_url, resolve_checked,
};
pub use events::{CarrierEvent, CarrierEventKind, CaseEventType, EventError, parse_carrier_event};
pub use schedule::RetrySchedule;
pub use signature::{
    ReceivedHeaders, Secret, SecretError, Verified, VerifyError, sign, sign_all, verify,
};
