//! The risk worker against a real Postgres (a fresh database per test) and a scripted
//! carrier: each case is claimed through the generic worker loop's
//! `process_one_case`, drained until nothing is claimable (no sleeping).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use carrier_adapter::{
    Carrier, CarrierError, ContactOnFile, MessageChannel, RiskSignals, SentMessage, ServiceOrder,
    ServiceOrderRequest,
};
use case_domain::{Actor, CaseEvent, CaseState, Msisdn, PersonName, ResidentId};
use case_store::{TransitionRequest, load_case, testing::open_case, timeline, transition};
use risk_assessment::RiskStep;
use service_runtime::worker::process_one_case;
use sqlx::PgPool;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

/// A carrier that answers risk signals from a script (or is unavailable).
#[derive(Debug, Default)]
struct Scripted {
    signals: Mutex<Option<RiskSignals>>,
}

fn unavailable<T>() -> Result<T, CarrierError> {
    Err(CarrierError::Unavailable("not scripted".into()))
}

#[async_trait]
impl Carrier for Scripted {
    async fn subscriber_matches(
        &self,
        _: &Msisdn,
        _: &PersonName,
        _: &ResidentId,
    ) -> Result<bool, CarrierError> {
        unavailable()
    }
    async fn verify_service_password(&self, _: &Msisdn, _: &str) -> Result<bool, CarrierError> {
        unavailable()
    }
    async fn contacts_on_file(&self, _: &Msisdn) -> Result<Vec<ContactOnFile>, CarrierError> {
        unavailable()
    }
    async fn send_message(
        &self,
        _: &Msisdn,
        _: MessageChannel,
        _: &str,
        _: &str,
    ) -> Result<SentMessage, CarrierError> {
        unavailable()
    }
    async fn count_call_record_matches(
        &self,
        _: &Msisdn,
        _: &[Msisdn],
    ) -> Result<u32, CarrierError> {
        unavailable()
    }
    async fn risk_signals(&self, _: &Msisdn) -> Result<RiskSignals, CarrierError> {
        self.signals
            .lock()
            .unwrap()
            .clone()
            .map_or_else(unavailable, Ok)
    }
    async fn submit_order(&self, _: &ServiceOrderRequest) -> Result<ServiceOrder, CarrierError> {
        unavailable()
    }
    async fn get_order(&self, _: Uuid) -> Result<ServiceOrder, CarrierError> {
        unavailable()
    }
    async fn cancel_order(&self, _: &ServiceOrderRequest) -> Result<ServiceOrder, CarrierError> {
        unavailable()
    }
}

/// A case waiting for the risk worker (state risk_assessment).
async fn in_risk_assessment(pool: &PgPool, msisdn: &str) -> Uuid {
    let id = open_case(pool, msisdn).await;
    let identity = Actor::system("identity-verification");
    transition(
        pool,
        TransitionRequest {
            case_id: id,
            expected_version: 1,
            event: CaseEvent::ProofsAccepted,
            actor: &identity,
            reason: None,
            fence: None,
            outbox: vec![],
        },
    )
    .await
    .unwrap();
    id
}

async fn drain(pool: &PgPool, step: &RiskStep) -> usize {
    let mut n = 0;
    while process_one_case(pool, step, "risk-test", LEASE)
        .await
        .unwrap()
    {
        n += 1;
    }
    n
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn clean_signals_send_the_case_to_provisioning_with_its_order(pool: PgPool) {
    let carrier = Arc::new(Scripted::default());
    *carrier.signals.lock().unwrap() = Some(RiskSignals::default());
    let step = RiskStep::new(carrier);
    let id = in_risk_assessment(&pool, "+8613800138050").await;
    assert_eq!(drain(&pool, &step).await, 1);
    let case = load_case(&pool, id).await.unwrap().unwrap();
    assert_eq!(case.state, CaseState::Provisioning);
    let last = timeline(&pool, id).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.event, last.actor_id.as_str()),
        (CaseEvent::RiskCleared, risk_assessment::SERVICE)
    );
    assert_eq!(
        case_store::risk::orders_for_case(&pool, id)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn fraud_signals_send_the_case_to_a_security_analyst(pool: PgPool) {
    let carrier = Arc::new(Scripted::default());
    *carrier.signals.lock().unwrap() = Some(RiskSignals {
        fraud_linked_contacts: 1,
        flagged_contacts: vec!["+8613900000001".into()],
        ..RiskSignals::default()
    });
    let step = RiskStep::new(carrier);
    let id = in_risk_assessment(&pool, "+8613800138051").await;
    assert_eq!(drain(&pool, &step).await, 1);
    let case = load_case(&pool, id).await.unwrap().unwrap();
    assert_eq!(case.state, CaseState::SecurityReview);
    let assessment = case_store::risk::latest_assessment(&pool, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(assessment.signals.flagged_contacts[0], "+8613900000001");
}

#[sqlx::test(migrator = "case_store::MIGRATOR")]
async fn an_unreachable_carrier_releases_the_case_for_later(pool: PgPool) {
    let carrier = Arc::new(Scripted::default());
    let step = RiskStep::new(carrier.clone());
    let id = in_risk_assessment(&pool, "+8613800138052").await;
    // The worker claimed and processed the case once (proved by the count), then let it go
    // with a back-off: it is not claimable again right away, and it did not move.
    assert_eq!(drain(&pool, &step).await, 1);
    let case = load_case(&pool, id).await.unwrap().unwrap();
    assert_eq!((case.state, case.version), (CaseState::RiskAssessment, 2));
    assert!(
        case_store::next_case_due(&pool, &[CaseState::RiskAssessment])
            .await
            .unwrap()
            .is_some(),
        "the back-off is known to the loop"
    );
}
