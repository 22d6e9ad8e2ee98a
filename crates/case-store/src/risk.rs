//! Risk assessments and provisioning orders.

use case_domain::{
    Msisdn, Restoration,
    risk::{RecordedSignals, RiskTier},
};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::{OutboxClaim, StoreError};

/// A stored risk assessment.
#[derive(Debug, Clone, PartialEq)]
pub struct AssessmentRow {
    /// Assessment id.
    pub id: Uuid,
    /// The case.
    pub case_id: Uuid,
    /// The tier.
    pub tier: RiskTier,
    /// Customer-safe reason codes.
    pub reason_codes: Vec<String>,
    /// What the tier requires.
    pub needs: Vec<String>,
    /// The signals used.
    pub signals: RecordedSignals,
    /// The version of the risk rules it was graded under.
    pub rule_version: i32,
    /// When.
    pub assessed_at: DateTime<Utc>,
}

/// Stores an assessment graded under version `rule_version` of the risk rules.
pub async fn save_assessment(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
    tier: RiskTier,
    reason_codes: &[String],
    needs: &[String],
    signals: &RecordedSignals,
    rule_version: i32,
) -> Result<Uuid, StoreError> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO risk_assessments (id, case_id, tier, reason_codes, needs, signals, rule_version) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        id,
        case_id,
        tier as RiskTier,
        reason_codes,
        needs,
        sqlx::types::Json(signals) as _,
        rule_version,
    )
    .execute(db)
    .await?;
    Ok(id)
}

/// The case's current (latest) assessment.
pub async fn latest_assessment(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Option<AssessmentRow>, StoreError> {
    Ok(latest_assessments(db, &[case_id]).await?.pop())
}

/// The latest assessment of each of `case_ids` that has one (at most 1000 asked at
/// once; more is an error), in one read: one index probe per case.
pub async fn latest_assessments(
    db: impl PgExecutor<'_>,
    case_ids: &[Uuid],
) -> Result<Vec<AssessmentRow>, StoreError> {
    if case_ids.len() > 1000 {
        return Err(StoreError::Invariant(
            "latest_assessments asked for more than 1000 cases",
        ));
    }
    Ok(sqlx::query!(
        r#"SELECT a.id AS "id!", a.case_id AS "case_id!", a.tier AS "tier!: RiskTier",
                  a.reason_codes AS "reason_codes!", a.needs AS "needs!",
                  a.signals AS "signals!: sqlx::types::Json<RecordedSignals>",
                  a.rule_version AS "rule_version!", a.assessed_at AS "assessed_at!"
           FROM unnest($1::uuid[]) AS k(case_id)
           CROSS JOIN LATERAL (
               SELECT * FROM risk_assessments r WHERE r.case_id = k.case_id
               ORDER BY r.assessed_at DESC, r.id DESC LIMIT 1) a"#,
        case_ids
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|r| AssessmentRow {
        id: r.id,
        case_id: r.case_id,
        tier: r.tier,
        reason_codes: r.reason_codes,
        needs: r.needs,
        signals: r.signals.0,
        rule_version: r.rule_version,
        assessed_at: r.assessed_at,
    })
    .collect())
}

/// A provisioning order as the product knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    /// Order id (= outbox id = idempotency key).
    pub id: Uuid,
    /// The case.
    pub case_id: Uuid,
    /// How much service the order restores.
    pub restoration: Restoration,
    /// pending, acknowledged, inProgress, completed, failed, cancelled, withdrawn.
    pub state: String,
    /// The carrier's reference.
    pub carrier_ref: Option<String>,
    /// Failed delivery attempts.
    pub failures: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last state change.
    pub updated_at: DateTime<Utc>,
}

/// Records a new order (in the transaction that moves the case into provisioning);
/// `supersedes` names the order it replaces (a retry's), cancelled before it is sent.
pub async fn create_order(
    db: impl PgExecutor<'_>,
    id: Uuid,
    case_id: Uuid,
    restoration: Restoration,
    supersedes: Option<Uuid>,
) -> Result<(), StoreError> {
    sqlx::query!(
        "INSERT INTO provisioning_orders (id, case_id, restoration, supersedes) VALUES ($1, $2, $3, $4)",
        id,
        case_id,
        restoration.as_str(),
        supersedes
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Records an order's state as a worker learned it, fenced by the worker's outbox
/// claim: refused with [`StoreError::LeaseLost`] (nothing written) once the claim's
/// lease was taken over by another claim or the message was settled. The claim may be
/// another order's (a retry's worker records the cancellation of the order it replaces).
/// Run it inside a transaction: the fence holds until the transaction ends.
pub async fn update_order(
    conn: &mut PgConnection,
    claim: &OutboxClaim,
    id: Uuid,
    state: &str,
    carrier_ref: Option<&str>,
) -> Result<(), StoreError> {
    hold_fence(conn, claim, id).await?;
    record_order_state(&mut *conn, id, state, carrier_ref).await
}

/// Records the carrier's own word on an order (a `provisioning.completed` webhook),
/// without an outbox fence: the caller's transaction is fenced by the webhook's claim.
pub async fn record_order_state(
    db: impl PgExecutor<'_>,
    id: Uuid,
    state: &str,
    carrier_ref: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE provisioning_orders SET state = $2, carrier_ref = coalesce($3, carrier_ref), updated_at = now() WHERE id = $1",
        id,
        state,
        carrier_ref
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Locks the order row, then holds the claim's outbox row (`FOR SHARE`, so no other
/// worker can claim it until this transaction ends) if the claim is still the one
/// that holds it: same owner, same attempt (the fencing token of every outbox write,
/// see [`crate::queue`]). Order row first, outbox row second: the lock order of every path
/// that finishes an order (the carrier's confirmation takes the same), so none
/// deadlocks another.
async fn hold_fence(
    conn: &mut PgConnection,
    claim: &OutboxClaim,
    order_id: Uuid,
) -> Result<(), StoreError> {
    let order = sqlx::query_scalar!(
        "SELECT id FROM provisioning_orders WHERE id = $1 FOR UPDATE",
        order_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    if order.is_none() {
        return Err(StoreError::Invariant("a fenced write names no order"));
    }
    let held = sqlx::query_scalar!(
        r#"SELECT id FROM outbox
           WHERE id = $1 AND lease_owner = $2 AND attempts = $3
           FOR SHARE"#,
        claim.id,
        claim.owner,
        claim.attempts
    )
    .fetch_optional(&mut *conn)
    .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::LeaseLost {
            case_id: claim.case_id.unwrap_or(claim.id),
            attempt: claim.attempts,
        }),
    }
}

/// The case's orders, oldest first.
pub async fn orders_for_case(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Vec<OrderRow>, StoreError> {
    Ok(sqlx::query_as!(
        OrderRow,
        r#"SELECT id, case_id, restoration AS "restoration: Restoration", state, carrier_ref,
                  failures, created_at, updated_at
           FROM provisioning_orders WHERE case_id = $1 ORDER BY created_at"#,
        case_id
    )
    .fetch_all(db)
    .await?)
}

/// Loads one order.
pub async fn load_order(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<OrderRow>, StoreError> {
    Ok(sqlx::query_as!(
        OrderRow,
        r#"SELECT id, case_id, restoration AS "restoration: Restoration", state, carrier_ref,
                  failures, created_at, updated_at
           FROM provisioning_orders WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await?)
}

/// Counts a failed delivery attempt of an order; returns the new count. Fenced like
/// [`update_order`]: a worker that lost its claim counts nothing ([`StoreError::LeaseLost`]).
pub async fn count_order_failure(
    conn: &mut PgConnection,
    claim: &OutboxClaim,
    id: Uuid,
) -> Result<i32, StoreError> {
    hold_fence(conn, claim, id).await?;
    Ok(sqlx::query_scalar!(
        "UPDATE provisioning_orders SET failures = failures + 1, updated_at = now() WHERE id = $1 RETURNING failures",
        id
    )
    .fetch_one(&mut *conn)
    .await?)
}

/// The case's current order: its newest order that was not withdrawn (a retry order
/// is withdrawn, never sent, when the order it replaced completed after all). Only
/// the current order's outcome moves the case.
pub async fn current_order(
    db: impl PgExecutor<'_>,
    case_id: Uuid,
) -> Result<Option<Uuid>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT id FROM provisioning_orders WHERE case_id = $1 AND state <> 'withdrawn'
           ORDER BY created_at DESC, id DESC LIMIT 1"#,
        case_id
    )
    .fetch_optional(db)
    .await?)
}

/// What the provisioning worker needs to send an order, read in one statement:
/// the order, its case's number, whether it is still the case's current order, and
/// the order it replaces (a retry's), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderToSend {
    /// The order (= outbox id = idempotency key).
    pub id: Uuid,
    /// Its case.
    pub case_id: Uuid,
    /// The number to restore.
    pub msisdn: Msisdn,
    /// How much service it restores.
    pub restoration: Restoration,
    /// Whether it is its case's current order (the newest not withdrawn).
    pub current: bool,
    /// The order it replaces: (id, restoration, last known state).
    pub supersedes: Option<(Uuid, Restoration, String)>,
}

/// See [`OrderToSend`]; `None` when there is no such order.
pub async fn order_to_send(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<OrderToSend>, StoreError> {
    let row = sqlx::query!(
        r#"SELECT o.id, o.case_id, o.restoration AS "restoration: Restoration",
                  c.msisdn AS "msisdn: Msisdn",
                  coalesce((SELECT cur.id FROM provisioning_orders cur
                            WHERE cur.case_id = o.case_id AND cur.state <> 'withdrawn'
                            ORDER BY cur.created_at DESC, cur.id DESC LIMIT 1) = o.id,
                           false) AS "current!",
                  p.id AS "previous_id?", p.restoration AS "previous_restoration?: Restoration",
                  p.state AS "previous_state?"
           FROM provisioning_orders o
           JOIN reactivation_cases c ON c.id = o.case_id
           LEFT JOIN provisioning_orders p ON p.id = o.supersedes
           WHERE o.id = $1"#,
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| OrderToSend {
        id: r.id,
        case_id: r.case_id,
        msisdn: r.msisdn,
        restoration: r.restoration,
        current: r.current,
        supersedes: match (r.previous_id, r.previous_restoration, r.previous_state) {
            (Some(id), Some(restoration), Some(state)) => Some((id, restoration, state)),
            _ => None,
        },
    }))
}

/// The order an order replaces (set for a retry's order), if any.
pub async fn superseded_by(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Uuid>, StoreError> {
    Ok(sqlx::query_scalar!(
        "SELECT supersedes FROM provisioning_orders WHERE id = $1",
        id
    )
    .fetch_optional(db)
    .await?
    .flatten())
}

/// The outbox topic of provisioning orders.
pub const PROVISIONING_TOPIC: &str = "provisioning.order";

/// Moves a case into `provisioning` and, in the same transaction, writes the
/// service order to the outbox and to `provisioning_orders` (order id = outbox id =
/// the carrier's idempotency key). Every way into provisioning goes through here.
///
/// A retry (`provisioning_retried`) supersedes the case's current order: the new order
/// names it, and the provisioning worker cancels it at the carrier (or finds that it
/// completed after all) before sending anything; from now on only the new order's
/// outcome moves the case.
pub async fn transition_into_provisioning(
    conn: &mut sqlx::PgConnection,
    mut req: crate::TransitionRequest<'_>,
    restoration: Restoration,
) -> Result<crate::Transitioned, StoreError> {
    let case_id = req.case_id;
    let supersedes = if req.event == case_domain::CaseEvent::ProvisioningRetried {
        current_order(&mut *conn, case_id).await?
    } else {
        None
    };
    req.outbox.insert(
        0,
        crate::OutboxMessage {
            topic: PROVISIONING_TOPIC.to_owned(),
            payload: serde_json::json!({ "case_id": case_id, "restoration": restoration.as_str() }),
            dedupe_suffix: "order".to_owned(),
        },
    );
    let done = crate::transition_in(conn, req).await?;
    if done.case.state != case_domain::CaseState::Provisioning {
        return Err(StoreError::UnexpectedState {
            case_id,
            state: done.case.state,
        });
    }
    create_order(
        &mut *conn,
        done.outbox_ids[0],
        case_id,
        restoration,
        supersedes,
    )
    .await?;
    Ok(done)
}
