//! The router's state: the pool, the configured faults and the random source that
//! decides which provisioning calls fail.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// Longest provisioning latency that may be configured (10 minutes).
pub const MAX_LATENCY_MS: u64 = 600_000;

/// The faults injected into provisioning (`POST /sim/faults`). Per process, not stored:
/// a restarted simulator starts without faults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    /// Probability (0.0–1.0) that a `POST /carrier/v1/serviceOrder` call answers 503.
    pub provisioning_failure_rate: f64,
    /// Time (ms) from an order's creation to its completion; `inProgress` from half of it.
    pub provisioning_latency_ms: u64,
}

/// What happens to one provisioning call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Handled normally.
    None,
    /// Answers 503 before anything is recorded: nothing happened.
    BeforeRecording,
    /// Records and applies the order, then answers 503: the answer is "lost".
    AfterRecording,
}

#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub pool: PgPool,
    /// The simulator's webhooks to the product.
    pub webhooks: crate::webhooks::Sender,
    faults: Arc<Mutex<Faults>>,
    rng: Arc<Mutex<StdRng>>,
    /// Identity questions asked, per (number, kind): what a test counts to prove the
    /// product asked no more than its budget allows. Per process, like the faults.
    checks: Arc<Mutex<HashMap<(String, &'static str), u64>>>,
}

impl AppState {
    pub(crate) fn new(pool: PgPool, webhooks: crate::webhooks::Sender) -> Self {
        Self {
            pool,
            webhooks,
            faults: Arc::new(Mutex::new(Faults::default())),
            rng: Arc::new(Mutex::new(StdRng::from_os_rng())),
            checks: Arc::default(),
        }
    }

    /// Counts one identity question (`service_password`, `call_records`,
    /// `subscriber_match`) about `msisdn`.
    pub(crate) fn count_check(&self, msisdn: &str, kind: &'static str) {
        *self
            .checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((msisdn.to_owned(), kind))
            .or_default() += 1;
    }

    /// The identity questions asked about `msisdn` so far, per kind.
    pub(crate) fn checks_of(&self, msisdn: &str) -> HashMap<&'static str, u64> {
        self.checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|((m, _), _)| m == msisdn)
            .map(|((_, kind), n)| (*kind, *n))
            .collect()
    }

    pub(crate) fn faults(&self) -> Faults {
        *self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap_or_else(PoisonError::into_inner) = faults;
    }

    /// Draws the fault for one provisioning call: with the failure rate a failure, half
    /// of them before recording and half after.
    pub(crate) fn draw_fault(&self) -> (Fault, Faults) {
        let faults = self.faults();
        if faults.provisioning_failure_rate <= 0.0 {
            return (Fault::None, faults);
        }
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let fault = if rng.random_bool(faults.provisioning_failure_rate.clamp(0.0, 1.0)) {
            if rng.random_bool(0.5) {
                Fault::BeforeRecording
            } else {
                Fault::AfterRecording
            }
        } else {
            Fault::None
        };
        (fault, faults)
    }
}
