//! Agent-assisted channels: a customer-service or store agent (or a supervisor) looks
//! a number up; a customer-service agent (or a supervisor) opens a case on behalf of
//! a caller on the hotline.
//!
//! - **Lookup** ([`lookup_number`]): the number's open and recent cases, masked;
//!   every lookup is an audit row (`number.lookup`: who, when, the number masked and
//!   sealed under the product key), and an agent may make
//!   [`assisted::MAX_LOOKUPS_PER_AGENT`] per [`assisted::lookup_window`].
//! - **Opening** ([`open_for_subscriber`]): the subscriber's own opening
//!   ([`crate::customer::open_case`]: same validation, same Idempotency-Key handling,
//!   same writes), acted by the agent, plus in the same transaction: the record of
//!   the opening and of how the agent checked identity (`assisted_openings`), the
//!   case token sealed into an SMS to the number's contact on file (outbox, paid from
//!   the number's daily code budget), and an audit row (`case.assisted_open`). The
//!   agent never sees the token. A hotline call does not verify identity: the case
//!   waits in `awaiting_identity` for a code or the service password, judged by the
//!   identity policy within the number's budgets like any other case.

use case_domain::{
    Actor, CaseState, Channel, Msisdn, Role,
    assisted::{self, AssistedCheck, OpeningRefusal},
    hex, identity,
};
use case_store::{
    CaseRow,
    assisted::{self as store, NumberCase},
    audit::{self, AuditEntry},
    number_budget::{self, BudgetKind, Reservation, Reserve},
    timers::NewMessage,
};
use chrono::{DateTime, Utc};
use data_protection::Keys;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::{
    WorkflowError,
    agent::Agent,
    customer::{self, OpenCaseRequest, Opener, Opening, RetryKey},
    notices::NOTIFICATION_TOPIC,
};

/// The Idempotency-Key scope of assisted openings (followed by the agent's id).
pub const OPEN_SCOPE: &str = "POST /v1/agent/cases";
/// The audit action of an assisted opening.
pub const OPEN_ACTION: &str = "case.assisted_open";
/// The `kind` of the token message in the outbox.
pub const TOKEN_MESSAGE_KIND: &str = "case_token";

/// The result of a lookup.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The number's cases (open ones, and those that changed within
    /// [`assisted::recent_window`]), newest first.
    Found {
        /// The number, masked.
        msisdn_masked: String,
        /// Its cases.
        cases: Vec<NumberCase>,
    },
    /// The agent's lookups are used up until `retry_at`; nothing was read or audited.
    Limited {
        /// When the oldest lookup in the window leaves it.
        retry_at: DateTime<Utc>,
    },
}

/// Looks `msisdn` up for `agent` (cs, store or supervisor): audited, masked, limited per agent.
pub async fn lookup_number(
    pool: &PgPool,
    keys: &Keys,
    agent: &Agent,
    msisdn: &str,
) -> Result<Lookup, WorkflowError> {
    agent.require_any(assisted::NUMBER_LOOKUP_ROLES)?;
    let msisdn =
        Msisdn::parse(msisdn).map_err(|e| WorkflowError::invalid("msisdn", e.to_string()))?;
    let actor = agent.any_actor();
    let now = Utc::now();
    let mut tx = pool.begin().await?;
    store::lock_lookups(&mut tx, &actor.id).await?;
    let (used, oldest) =
        store::lookups_since(&mut *tx, &actor.id, now - assisted::lookup_window()).await?;
    if used >= assisted::MAX_LOOKUPS_PER_AGENT {
        tx.rollback().await?;
        let retry_at = oldest.unwrap_or(now) + assisted::lookup_window();
        return Ok(Lookup::Limited { retry_at });
    }
    let cases = store::cases_of_number(
        &mut *tx,
        &msisdn,
        now - assisted::recent_window(),
        assisted::LOOKUP_MAX_CASES,
    )
    .await?;
    let lookup_id = Uuid::now_v7();
    audit::record(
        &mut tx,
        &AuditEntry {
            actor: &actor,
            action: store::LOOKUP_ACTION,
            case_id: None,
            detail: serde_json::json!({
                "lookup_id": lookup_id,
                "msisdn_masked": msisdn.masked(),
                // Who looked up which number: sealed under the product key (bound to
                // the lookup id), so the log names the number without holding it in clear.
                "msisdn_sealed": hex(&keys.encrypt(msisdn.e164(), &lookup_id)),
                "cases": cases.iter().map(|c| c.case_id).collect::<Vec<_>>(),
            }),
            reason: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Lookup::Found {
        msisdn_masked: msisdn.masked(),
        cases,
    })
}

/// The number a lookup's audit row names, opened with the product key (for an auditor).
pub fn lookup_number_of(keys: &Keys, detail: &serde_json::Value) -> Result<String, WorkflowError> {
    let id: Uuid = detail["lookup_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or(WorkflowError::NotFound)?;
    let sealed = detail["msisdn_sealed"]
        .as_str()
        .and_then(unhex)
        .ok_or(WorkflowError::NotFound)?;
    keys.decrypt(&sealed, &id)
        .map_err(|e| WorkflowError::Internal(e.into()))
}

/// Lower-case hex back to bytes (`None` when it is not hex).
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

/// An agent opens a case for a subscriber: the fields as typed.
#[derive(Debug, Clone)]
pub struct AssistedRequest {
    /// The suspended number.
    pub msisdn: String,
    /// The subscriber's full name as on the ID card.
    pub full_name: String,
    /// Their resident ID number.
    pub id_number: String,
    /// `hotline`.
    pub channel: String,
    /// How the agent checked identity (`hotline_call`).
    pub identity_check: String,
    /// The case's language (zh-CN or en; default zh-CN).
    pub locale: Option<String>,
}

/// Who opens a case on whose behalf, as [`crate::customer`] writes it.
#[derive(Debug)]
pub struct AgentOpening<'a> {
    /// The agent.
    pub agent: &'a Agent,
    /// The role they act in.
    pub role: Role,
    /// The channel.
    pub channel: Channel,
    /// How they checked identity.
    pub check: AssistedCheck,
}

impl AgentOpening<'_> {
    /// The agent as the actor of the `opened` event.
    pub fn actor(&self) -> Actor {
        self.agent.actor(self.role)
    }
}

/// A case an agent opened, as the agent sees it (never the token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistedOpened {
    /// Case id.
    pub case_id: Uuid,
    /// Its state (`awaiting_identity`).
    pub state: CaseState,
    /// Its version.
    pub version: i32,
    /// The number, masked.
    pub msisdn_masked: String,
    /// The channel.
    pub channel: Channel,
    /// How the agent checked identity.
    pub identity_check: String,
    /// Whether identity still needs a code or the service password from the subscriber.
    pub proof_still_needed: bool,
    /// Where the case token went: always `contact_on_file` (by SMS, never to the agent).
    pub token_sent_to: String,
}

/// Opens a case for a subscriber on `agent`'s word (see the module docs). Refusals
/// change nothing: a role that may not open on the channel is `Forbidden`, a channel
/// or check that does not fit is `Invalid`, a number whose daily code budget is spent
/// is `Refused` (`number_budget_spent`).
pub async fn open_for_subscriber(
    pool: &PgPool,
    keys: &Keys,
    agent: &Agent,
    request: AssistedRequest,
    retry: Option<RetryKey<'_>>,
) -> Result<Opening<AssistedOpened, AssistedOpened>, WorkflowError> {
    // Who may open at all comes first: a role with no channel gets 403 whatever the body.
    if !agent.holds_any(assisted::ASSISTED_OPENERS) {
        return Err(WorkflowError::Forbidden(
            OpeningRefusal::RoleMayNotOpen.detail().into(),
        ));
    }
    let channel = Channel::parse(&request.channel)
        .map_err(|_| WorkflowError::invalid("channel", "channel must be hotline or store"))?;
    let check = AssistedCheck::parse(&request.identity_check).ok_or_else(|| {
        WorkflowError::invalid(
            "identity_check",
            format!(
                "identity_check must be one of {}",
                AssistedCheck::ALL.map(|c| c.as_str()).join(", ")
            ),
        )
    })?;
    let role =
        assisted::may_open(&agent.roles, channel, check).map_err(|refusal| match refusal {
            OpeningRefusal::RoleMayNotOpen => WorkflowError::Forbidden(refusal.detail().into()),
            OpeningRefusal::ChannelNotAssisted => {
                WorkflowError::invalid("channel", refusal.detail())
            }
            OpeningRefusal::CheckNotForChannel => {
                WorkflowError::invalid("identity_check", refusal.detail())
            }
        })?;
    let by = AgentOpening {
        agent,
        role,
        channel,
        check,
    };
    let open = OpenCaseRequest {
        msisdn: request.msisdn,
        full_name: request.full_name,
        id_number: request.id_number,
        channel: Some(channel.as_str().to_owned()),
        locale: request.locale,
    };
    customer::open_case_by(pool, keys, open, retry, Opener::Agent(&by), |opened| {
        AssistedOpened {
            case_id: opened.status.case_id,
            state: opened.status.state,
            version: opened.status.version,
            msisdn_masked: opened.status.msisdn_masked.clone(),
            channel,
            identity_check: check.as_str().to_owned(),
            proof_still_needed: !check.verifies_identity(),
            token_sent_to: "contact_on_file".into(),
        }
    })
    .await
}

/// The writes of an assisted opening, in the opening's transaction (called by
/// [`crate::customer`] once the case and its identity are written): the token SMS
/// (paid from the number's code budget), the opening record, the audit row (last).
pub(crate) async fn record_opening(
    tx: &mut Transaction<'_, Postgres>,
    keys: &Keys,
    by: &AgentOpening<'_>,
    case: &CaseRow,
    token: &str,
) -> Result<(), WorkflowError> {
    let dedupe = format!("case-token:{}", case.id);
    let reservation = number_budget::reserve_in(
        tx,
        &Reserve {
            msisdn: case.msisdn.e164(),
            kind: BudgetKind::Code,
            case_id: Some(case.id),
            method: None,
            cause: Some(&dedupe),
            limit: identity::MAX_OTP_PER_NUMBER_PER_DAY,
            window: identity::budget_window(),
        },
    )
    .await?;
    match reservation {
        Reservation::Granted { .. } => {}
        Reservation::Spent { frees_at } => {
            return Err(WorkflowError::Refused {
                code: "number_budget_spent",
                detail: format!(
                    "This number has had all the messages it may get today; no case was opened. Try again after {}.",
                    frees_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            });
        }
        Reservation::AlreadyPaid | Reservation::Busy => {
            return Err(WorkflowError::Internal(anyhow::anyhow!(
                "the token message of a new case was found paid or busy"
            )));
        }
    }
    let body = assisted::token_message(case.locale, by.channel, token);
    let message = case_store::timers::enqueue_message(
        tx,
        &NewMessage {
            topic: NOTIFICATION_TOPIC,
            case_id: Some(case.id),
            event_id: None,
            dedupe_key: &dedupe,
            payload: serde_json::json!({
                "msisdn": case.msisdn.e164(),
                // The token is a credential: only sealed at rest, bound to the case id.
                "body_sealed": hex(&keys.encrypt(&body, &case.id)),
                "kind": TOKEN_MESSAGE_KIND,
                "idempotency_key": dedupe,
            }),
        },
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("the token message of a new case already existed"))?;
    store::insert_opening(
        tx,
        &store::NewOpening {
            case_id: case.id,
            agent_id: by.agent.id,
            role: by.role,
            channel: by.channel,
            identity_check: by.check.as_str(),
            token_message: message,
        },
    )
    .await?;
    audit::record(
        tx,
        &AuditEntry {
            actor: &by.actor(),
            action: OPEN_ACTION,
            case_id: Some(case.id),
            detail: serde_json::json!({
                "channel": by.channel.as_str(),
                "identity_check": by.check.as_str(),
                "msisdn_masked": case.msisdn.masked(),
                "token_sent_to": "contact_on_file",
            }),
            reason: None,
        },
    )
    .await?;
    tracing::info!(case_id = %case.id, channel = by.channel.as_str(), "case opened by an agent");
    Ok(())
}

/// Opens the sealed bodies of subscriber messages that carry a credential (the case
/// token of an assisted opening) for the deliverer, which holds no key otherwise.
#[derive(Debug, Clone)]
pub struct SealedBodies(std::sync::Arc<Keys>);

impl SealedBodies {
    /// Opens bodies sealed under `keys`.
    pub fn new(keys: std::sync::Arc<Keys>) -> Self {
        Self(keys)
    }

    /// The body of a message sealed for `case_id` (`None`: not hex, or not sealed
    /// under these keys for that case).
    pub fn open(&self, sealed_hex: &str, case_id: Uuid) -> Option<String> {
        let sealed = unhex(sealed_hex)?;
        self.0.decrypt(&sealed, &case_id).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(&hex(&bytes)), Some(bytes.to_vec()));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(""), Some(vec![]));
    }

    #[test]
    fn a_sealed_lookup_number_opens_with_the_key_only() {
        let keys = Keys::from_master(&[7u8; 32]);
        let id = Uuid::now_v7();
        let detail = serde_json::json!({
            "lookup_id": id,
            "msisdn_sealed": hex(&keys.encrypt("+8613800000001", &id)),
        });
        assert_eq!(lookup_number_of(&keys, &detail).unwrap(), "+8613800000001");
        let other = Keys::from_master(&[8u8; 32]);
        assert!(lookup_number_of(&other, &detail).is_err());
    }

    #[test]
    fn a_sealed_body_opens_for_its_case_only() {
        let keys = std::sync::Arc::new(Keys::from_master(&[7u8; 32]));
        let (case, other) = (Uuid::now_v7(), Uuid::now_v7());
        let sealed = hex(&keys.encrypt("the body", &case));
        let bodies = SealedBodies::new(keys);
        assert_eq!(bodies.open(&sealed, case).as_deref(), Some("the body"));
        assert_eq!(bodies.open(&sealed, other), None);
        assert_eq!(bodies.open("not hex", case), None);
    }
}
