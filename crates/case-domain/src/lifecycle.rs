//! The case lifecycle: states, events, roles, departments and the transition table.
//!
//! The table [`TRANSITIONS`] is the single source of truth: the store refuses any
//! change it does not list, the API derives the actions an agent may take from it,
//! and `docs/state-machine.md` is generated from it (a test keeps the two equal).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a reactivation case stands. Mirrored by the Postgres enum `case_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[cfg_attr(
    feature = "sqlx",
    sqlx(type_name = "case_state", rename_all = "snake_case")
)]
pub enum CaseState {
    /// The request is in; the subscriber proves who they are (OTP, service password,
    /// call records). Owned by customer service, handled automatically.
    AwaitingIdentity,
    /// A CS agent checks identity by hand (lock-out, call-record path, ID photo).
    IdentityReview,
    /// CS asked the subscriber for more; the SLA clock stops.
    AwaitingCustomerIdentity,
    /// Identity is proven; the risk service grades the number automatically.
    RiskAssessment,
    /// A security analyst reviews the flagged traffic and the subscriber's explanations.
    SecurityReview,
    /// Security asked the subscriber for more; the SLA clock stops.
    AwaitingCustomerSecurity,
    /// A provisioning order is with the carrier's network (technical department, automatic).
    Provisioning,
    /// The carrier did not complete the order after every retry; technical staff act.
    ProvisioningFailed,
    /// Inbound-only service is restored; security decides on full service.
    PartiallyReactivated,
    /// Refused with a reason code and remedy; the subscriber may appeal once in 15 days.
    Rejected,
    /// The tier asks for a store visit (extreme at opening, or refused online on risk):
    /// the case waits on the subscriber to show the original ID card at a store, where
    /// a store agent records the in-person check. Owned by the subscriber (the SLA
    /// clock is stopped); reminders and an expiry come from the timers service.
    AwaitingStoreVisit,
    /// Terminal: the number works again.
    Reactivated,
    /// Terminal: withdrawn by the subscriber (or on their behalf).
    Cancelled,
    /// Terminal: the subscriber did not act within the allowed time.
    Expired,
    /// Terminal: a refusal or a partial restoration became final.
    Closed,
}

impl CaseState {
    /// Every state, in lifecycle order.
    pub const ALL: [CaseState; 15] = [
        Self::AwaitingIdentity,
        Self::IdentityReview,
        Self::AwaitingCustomerIdentity,
        Self::RiskAssessment,
        Self::SecurityReview,
        Self::AwaitingCustomerSecurity,
        Self::Provisioning,
        Self::ProvisioningFailed,
        Self::PartiallyReactivated,
        Self::Rejected,
        Self::AwaitingStoreVisit,
        Self::Reactivated,
        Self::Cancelled,
        Self::Expired,
        Self::Closed,
    ];

    /// The state every case starts in.
    pub const INITIAL: CaseState = CaseState::AwaitingIdentity;

    /// The snake_case name used in the API, the database and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingIdentity => "awaiting_identity",
            Self::IdentityReview => "identity_review",
            Self::AwaitingCustomerIdentity => "awaiting_customer_identity",
            Self::RiskAssessment => "risk_assessment",
            Self::SecurityReview => "security_review",
            Self::AwaitingCustomerSecurity => "awaiting_customer_security",
            Self::Provisioning => "provisioning",
            Self::ProvisioningFailed => "provisioning_failed",
            Self::PartiallyReactivated => "partially_reactivated",
            Self::Rejected => "rejected",
            Self::AwaitingStoreVisit => "awaiting_store_visit",
            Self::Reactivated => "reactivated",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Closed => "closed",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// No event leaves a terminal state; a terminal case no longer blocks a new case
    /// for the same number.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Reactivated | Self::Cancelled | Self::Expired | Self::Closed
        )
    }

    /// The department that owns the case in this state (`None` once it is terminal).
    pub fn department(self) -> Option<Department> {
        use Department::*;
        match self {
            Self::AwaitingIdentity | Self::IdentityReview => Some(CustomerService),
            Self::RiskAssessment | Self::SecurityReview | Self::PartiallyReactivated => {
                Some(Security)
            }
            Self::Provisioning | Self::ProvisioningFailed => Some(Technical),
            Self::AwaitingCustomerIdentity
            | Self::AwaitingCustomerSecurity
            | Self::Rejected
            | Self::AwaitingStoreVisit => Some(Subscriber),
            Self::Reactivated | Self::Cancelled | Self::Expired | Self::Closed => None,
        }
    }

    /// States that a service worker (not a person) moves on: workers claim cases in them.
    pub fn is_automated(self) -> bool {
        matches!(self, Self::RiskAssessment | Self::Provisioning)
    }

    /// The case waits on the subscriber: the department's SLA clock is stopped.
    pub fn waits_on_customer(self) -> bool {
        self.department() == Some(Department::Subscriber)
    }

    /// The Postgres `NOTIFY` channel that wakes whoever works cases in this state.
    pub fn work_channel(self) -> String {
        format!("case_work_{}", self.as_str())
    }
}

impl fmt::Display for CaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happens to a case. Each event is one row of the case's event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[cfg_attr(
    feature = "sqlx",
    sqlx(type_name = "case_event", rename_all = "snake_case")
)]
pub enum CaseEvent {
    /// The case was opened. Not a transition: the first row of every case's event log.
    Opened,
    /// The identity policy accepted the subscriber's proofs.
    ProofsAccepted,
    /// Lock-out or a proof that needs a person: identity goes to a CS agent.
    IdentityEscalated,
    /// A CS agent confirmed the subscriber's identity.
    IdentityVerified,
    /// An agent asked the subscriber for more information or documents.
    InfoRequested,
    /// The subscriber answered an information request.
    CustomerResponded,
    /// The risk rules found nothing: straight to provisioning.
    RiskCleared,
    /// The risk rules graded the number above the lowest tier: a security analyst reviews.
    RiskFlagged,
    /// The risk rules refused online reactivation (extreme tier): the remedy is a store
    /// visit, and the case waits for it.
    RiskRefused,
    /// The tier read when the case opened asks for a store visit before anything else
    /// (extreme): the case waits for it.
    StoreVisitRequired,
    /// A store agent saw the original ID card in person and compared the face
    /// (`in_person_id`, the strongest proof): the case goes on to risk assessment.
    StoreVisitVerified,
    /// A security analyst approved full restoration.
    Approved,
    /// A security analyst approved inbound-only restoration first (半恢复).
    PartlyApproved,
    /// An agent refused the reactivation with a reason code.
    Rejected,
    /// The subscriber appealed a refusal (once, within 15 days).
    Appealed,
    /// The carrier completed a full-service order.
    Restored,
    /// The carrier completed an inbound-only order.
    PartlyRestored,
    /// The carrier's order failed after every retry.
    ProvisioningFailed,
    /// Technical staff sent the order again.
    ProvisioningRetried,
    /// Technical staff restored the number by hand in the network.
    ResolvedManually,
    /// Another request for the same number proved identity first: this one, which had
    /// not, is closed (its token stops working).
    Superseded,
    /// The subscriber (or a supervisor on their behalf) withdrew the request.
    Cancelled,
    /// The subscriber did not act within the allowed time.
    Expired,
    /// A refusal or a partial restoration became final.
    Closed,
}

impl CaseEvent {
    /// Every event.
    pub const ALL: [CaseEvent; 24] = [
        Self::Opened,
        Self::ProofsAccepted,
        Self::IdentityEscalated,
        Self::IdentityVerified,
        Self::InfoRequested,
        Self::CustomerResponded,
        Self::RiskCleared,
        Self::RiskFlagged,
        Self::RiskRefused,
        Self::StoreVisitRequired,
        Self::StoreVisitVerified,
        Self::Approved,
        Self::PartlyApproved,
        Self::Rejected,
        Self::Appealed,
        Self::Restored,
        Self::PartlyRestored,
        Self::ProvisioningFailed,
        Self::ProvisioningRetried,
        Self::ResolvedManually,
        Self::Superseded,
        Self::Cancelled,
        Self::Expired,
        Self::Closed,
    ];

    /// The snake_case name used in the database and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::ProofsAccepted => "proofs_accepted",
            Self::IdentityEscalated => "identity_escalated",
            Self::IdentityVerified => "identity_verified",
            Self::InfoRequested => "info_requested",
            Self::CustomerResponded => "customer_responded",
            Self::RiskCleared => "risk_cleared",
            Self::RiskFlagged => "risk_flagged",
            Self::RiskRefused => "risk_refused",
            Self::StoreVisitRequired => "store_visit_required",
            Self::StoreVisitVerified => "store_visit_verified",
            Self::Approved => "approved",
            Self::PartlyApproved => "partly_approved",
            Self::Rejected => "rejected",
            Self::Appealed => "appealed",
            Self::Restored => "restored",
            Self::PartlyRestored => "partly_restored",
            Self::ProvisioningFailed => "provisioning_failed",
            Self::ProvisioningRetried => "provisioning_retried",
            Self::ResolvedManually => "resolved_manually",
            Self::Superseded => "superseded",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Closed => "closed",
        }
    }

    /// The agent API's action names (`POST /v1/agent/cases/{id}/actions`) and the event each means.
    pub const AGENT_ACTIONS: [(&'static str, CaseEvent); 9] = [
        ("verify_identity", Self::IdentityVerified),
        ("request_info", Self::InfoRequested),
        ("approve", Self::Approved),
        ("approve_partly", Self::PartlyApproved),
        ("reject", Self::Rejected),
        ("retry_provisioning", Self::ProvisioningRetried),
        ("resolve_manually", Self::ResolvedManually),
        ("close", Self::Closed),
        // A supervisor withdraws the request on the subscriber's behalf (reason required).
        ("cancel", Self::Cancelled),
    ];

    /// The event an agent action name stands for.
    pub fn from_agent_action(action: &str) -> Option<Self> {
        Self::AGENT_ACTIONS
            .iter()
            .find(|(name, _)| *name == action)
            .map(|(_, e)| *e)
    }

    /// The agent action name of this event, when agents can cause it.
    pub fn agent_action(self) -> Option<&'static str> {
        Self::AGENT_ACTIONS
            .iter()
            .find(|(_, e)| *e == self)
            .map(|(name, _)| *name)
    }
}

impl fmt::Display for CaseEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may cause events. Agents hold one or more of cs, store, security, technical,
/// supervisor, admin; `customer` is the subscriber holding the case token; `system`
/// is a service worker or a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[cfg_attr(
    feature = "sqlx",
    sqlx(type_name = "actor_role", rename_all = "snake_case")
)]
pub enum Role {
    /// The subscriber, authenticated by the case token.
    Customer,
    /// Customer-service agent.
    Cs,
    /// Store (营业厅) agent: sees the subscriber and the original ID card in person.
    Store,
    /// Security analyst.
    Security,
    /// Technical (network) staff.
    Technical,
    /// Supervisor: may act wherever an agent of any department may.
    Supervisor,
    /// Administrator: manages accounts and endpoints, takes no case decisions.
    Admin,
    /// A service worker or timer of this product.
    System,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 8] = [
        Self::Customer,
        Self::Cs,
        Self::Store,
        Self::Security,
        Self::Technical,
        Self::Supervisor,
        Self::Admin,
        Self::System,
    ];

    /// The roles an agent account can hold.
    pub const AGENT_ROLES: [Role; 6] = [
        Self::Cs,
        Self::Store,
        Self::Security,
        Self::Technical,
        Self::Supervisor,
        Self::Admin,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Cs => "cs",
            Self::Store => "store",
            Self::Security => "security",
            Self::Technical => "technical",
            Self::Supervisor => "supervisor",
            Self::Admin => "admin",
            Self::System => "system",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether an agent account may hold this role.
    pub fn is_agent_role(self) -> bool {
        Self::AGENT_ROLES.contains(&self)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who owns a case at a given moment (the hand-off goes CS → security → technical).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Department {
    /// Customer service: intake and identity.
    CustomerService,
    /// The security department: risk review.
    Security,
    /// The technical department: restoration in the network.
    Technical,
    /// The subscriber: the case waits on them.
    Subscriber,
}

impl Department {
    /// The snake_case name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CustomerService => "customer_service",
            Self::Security => "security",
            Self::Technical => "technical",
            Self::Subscriber => "subscriber",
        }
    }

    /// The agent role whose queue this department is (`None` for the subscriber).
    pub fn agent_role(self) -> Option<Role> {
        match self {
            Self::CustomerService => Some(Role::Cs),
            Self::Security => Some(Role::Security),
            Self::Technical => Some(Role::Technical),
            Self::Subscriber => None,
        }
    }
}

/// Who caused an event: a role and an identifier within it (an agent id, a worker
/// name, `subscriber`). Never personal data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// The role the actor acted in.
    pub role: Role,
    /// Agent id, service name or `subscriber`.
    pub id: String,
}

impl Actor {
    /// The subscriber holding the case token.
    pub fn customer() -> Self {
        Self {
            role: Role::Customer,
            id: "subscriber".into(),
        }
    }

    /// A service worker or timer, named after its service.
    pub fn system(service: &str) -> Self {
        Self {
            role: Role::System,
            id: service.into(),
        }
    }

    /// An agent acting in one of their roles.
    pub fn agent(role: Role, agent_id: impl Into<String>) -> Self {
        Self {
            role,
            id: agent_id.into(),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.role, self.id)
    }
}

/// One row of the transition table: in state `from`, event `event` moves the case
/// to `to`, and only the listed roles may cause it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state the case must be in.
    pub from: CaseState,
    /// The event.
    pub event: CaseEvent,
    /// The state the case moves to.
    pub to: CaseState,
    /// The roles allowed to cause it. Everyone else is denied.
    pub roles: &'static [Role],
}

use CaseEvent as E;
use CaseState as S;
use Role as R;

const fn t(from: S, event: E, to: S, roles: &'static [R]) -> Transition {
    Transition {
        from,
        event,
        to,
        roles,
    }
}

const SYSTEM: &[R] = &[R::System];
const CUSTOMER: &[R] = &[R::Customer];
const CS: &[R] = &[R::Cs, R::Supervisor];
const STORE: &[R] = &[R::Store, R::Supervisor];
const SECURITY: &[R] = &[R::Security, R::Supervisor];
const TECHNICAL: &[R] = &[R::Technical, R::Supervisor];
const WITHDRAW: &[R] = &[R::Customer, R::Supervisor];
const CLOSE_PARTIAL: &[R] = &[R::Security, R::Supervisor, R::System];

/// The whole lifecycle. Anything not listed here is illegal; any role not listed on
/// a row is denied (deny by default).
pub const TRANSITIONS: &[Transition] = &[
    // Customer service: identity.
    t(
        S::AwaitingIdentity,
        E::ProofsAccepted,
        S::RiskAssessment,
        SYSTEM,
    ),
    t(
        S::AwaitingIdentity,
        E::IdentityEscalated,
        S::IdentityReview,
        SYSTEM,
    ),
    t(S::AwaitingIdentity, E::Superseded, S::Cancelled, SYSTEM),
    t(S::AwaitingIdentity, E::Cancelled, S::Cancelled, WITHDRAW),
    t(S::AwaitingIdentity, E::Expired, S::Expired, SYSTEM),
    t(
        S::AwaitingIdentity,
        E::StoreVisitRequired,
        S::AwaitingStoreVisit,
        SYSTEM,
    ),
    t(
        S::IdentityReview,
        E::IdentityVerified,
        S::RiskAssessment,
        CS,
    ),
    t(
        S::IdentityReview,
        E::InfoRequested,
        S::AwaitingCustomerIdentity,
        CS,
    ),
    t(S::IdentityReview, E::Rejected, S::Rejected, CS),
    t(S::IdentityReview, E::Superseded, S::Cancelled, SYSTEM),
    t(S::IdentityReview, E::Cancelled, S::Cancelled, WITHDRAW),
    t(
        S::AwaitingCustomerIdentity,
        E::CustomerResponded,
        S::IdentityReview,
        CUSTOMER,
    ),
    t(
        S::AwaitingCustomerIdentity,
        E::Cancelled,
        S::Cancelled,
        WITHDRAW,
    ),
    t(S::AwaitingCustomerIdentity, E::Expired, S::Expired, SYSTEM),
    t(
        S::AwaitingCustomerIdentity,
        E::Superseded,
        S::Cancelled,
        SYSTEM,
    ),
    // Security: risk.
    t(S::RiskAssessment, E::RiskCleared, S::Provisioning, SYSTEM),
    t(S::RiskAssessment, E::RiskFlagged, S::SecurityReview, SYSTEM),
    t(
        S::RiskAssessment,
        E::RiskRefused,
        S::AwaitingStoreVisit,
        SYSTEM,
    ),
    t(S::RiskAssessment, E::Cancelled, S::Cancelled, WITHDRAW),
    t(S::SecurityReview, E::Approved, S::Provisioning, SECURITY),
    t(
        S::SecurityReview,
        E::PartlyApproved,
        S::Provisioning,
        SECURITY,
    ),
    t(
        S::SecurityReview,
        E::InfoRequested,
        S::AwaitingCustomerSecurity,
        SECURITY,
    ),
    t(S::SecurityReview, E::Rejected, S::Rejected, SECURITY),
    t(S::SecurityReview, E::Cancelled, S::Cancelled, WITHDRAW),
    t(
        S::AwaitingCustomerSecurity,
        E::CustomerResponded,
        S::SecurityReview,
        CUSTOMER,
    ),
    t(
        S::AwaitingCustomerSecurity,
        E::Cancelled,
        S::Cancelled,
        WITHDRAW,
    ),
    t(S::AwaitingCustomerSecurity, E::Expired, S::Expired, SYSTEM),
    t(
        S::PartiallyReactivated,
        E::Approved,
        S::Provisioning,
        SECURITY,
    ),
    t(S::PartiallyReactivated, E::Closed, S::Closed, CLOSE_PARTIAL),
    t(S::Rejected, E::Appealed, S::SecurityReview, CUSTOMER),
    t(S::Rejected, E::Cancelled, S::Cancelled, WITHDRAW),
    t(S::Rejected, E::Closed, S::Closed, SYSTEM),
    t(S::Rejected, E::Superseded, S::Cancelled, SYSTEM),
    // The store visit: a store agent checks the original ID card in person.
    t(
        S::AwaitingStoreVisit,
        E::StoreVisitVerified,
        S::RiskAssessment,
        STORE,
    ),
    t(S::AwaitingStoreVisit, E::Cancelled, S::Cancelled, WITHDRAW),
    t(S::AwaitingStoreVisit, E::Expired, S::Expired, SYSTEM),
    t(S::AwaitingStoreVisit, E::Superseded, S::Cancelled, SYSTEM),
    // Technical: provisioning.
    t(S::Provisioning, E::Restored, S::Reactivated, SYSTEM),
    t(
        S::Provisioning,
        E::PartlyRestored,
        S::PartiallyReactivated,
        SYSTEM,
    ),
    t(
        S::Provisioning,
        E::ProvisioningFailed,
        S::ProvisioningFailed,
        SYSTEM,
    ),
    t(
        S::ProvisioningFailed,
        E::ProvisioningRetried,
        S::Provisioning,
        TECHNICAL,
    ),
    t(
        S::ProvisioningFailed,
        E::ResolvedManually,
        S::Reactivated,
        TECHNICAL,
    ),
];

/// Why an event may not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The event has no row for this state.
    #[error("{event} is not possible while the case is {from}")]
    Illegal {
        /// The case's state.
        from: CaseState,
        /// The refused event.
        event: CaseEvent,
    },
    /// The role may not act on a case in this state at all, or may not cause this event.
    #[error("{role} may not cause {event} while the case is {from}")]
    Forbidden {
        /// The case's state.
        from: CaseState,
        /// The refused event.
        event: CaseEvent,
        /// The role that tried.
        role: Role,
    },
}

/// The table row for `(from, event)`, if the event is legal in that state.
pub fn transition_for(from: CaseState, event: CaseEvent) -> Option<&'static Transition> {
    TRANSITIONS
        .iter()
        .find(|t| t.from == from && t.event == event)
}

/// The events `role` may cause while a case is in `state`.
pub fn events_for(state: CaseState, role: Role) -> Vec<CaseEvent> {
    TRANSITIONS
        .iter()
        .filter(|t| t.from == state && t.roles.contains(&role))
        .map(|t| t.event)
        .collect()
}

/// Whether `role` may cause any event at all while a case is in `state`.
pub fn may_act(state: CaseState, role: Role) -> bool {
    TRANSITIONS
        .iter()
        .any(|t| t.from == state && t.roles.contains(&role))
}

/// Decides whether `role` may cause `event` on a case in `from`, and where it goes.
///
/// The role is checked first: a role with no row at all in this state gets
/// [`TransitionError::Forbidden`] whatever the event (it has no business here);
/// a role that may act here but names an event the state does not allow gets
/// [`TransitionError::Illegal`].
pub fn decide(from: CaseState, event: CaseEvent, role: Role) -> Result<CaseState, TransitionError> {
    let may_act_here = TRANSITIONS
        .iter()
        .any(|t| t.from == from && t.roles.contains(&role));
    if !may_act_here {
        return Err(TransitionError::Forbidden { from, event, role });
    }
    let row = transition_for(from, event).ok_or(TransitionError::Illegal { from, event })?;
    if row.roles.contains(&role) {
        Ok(row.to)
    } else {
        Err(TransitionError::Forbidden { from, event, role })
    }
}

/// The lifecycle as a Mermaid `stateDiagram-v2`, generated from [`TRANSITIONS`].
pub fn mermaid_state_diagram() -> String {
    let mut out = String::from("stateDiagram-v2\n");
    out.push_str(&format!("    [*] --> {}\n", CaseState::INITIAL));
    for t in TRANSITIONS {
        let roles: Vec<&str> = t.roles.iter().map(|r| r.as_str()).collect();
        out.push_str(&format!(
            "    {} --> {} : {} ({})\n",
            t.from,
            t.to,
            t.event,
            roles.join(", ")
        ));
    }
    for s in CaseState::ALL.into_iter().filter(|s| s.is_terminal()) {
        out.push_str(&format!("    {s} --> [*]\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, VecDeque};

    use proptest::prelude::*;

    use super::*;

    /// The lifecycle written out again by hand, independently of [`TRANSITIONS`]:
    /// (state, event, next state). Every pair not listed must be illegal.
    const EXPECTED: &[(S, E, S)] = &[
        (S::AwaitingIdentity, E::ProofsAccepted, S::RiskAssessment),
        (S::AwaitingIdentity, E::IdentityEscalated, S::IdentityReview),
        (S::AwaitingIdentity, E::Superseded, S::Cancelled),
        (S::AwaitingIdentity, E::Cancelled, S::Cancelled),
        (S::AwaitingIdentity, E::Expired, S::Expired),
        (
            S::AwaitingIdentity,
            E::StoreVisitRequired,
            S::AwaitingStoreVisit,
        ),
        (S::IdentityReview, E::IdentityVerified, S::RiskAssessment),
        (
            S::IdentityReview,
            E::InfoRequested,
            S::AwaitingCustomerIdentity,
        ),
        (S::IdentityReview, E::Rejected, S::Rejected),
        (S::IdentityReview, E::Superseded, S::Cancelled),
        (S::IdentityReview, E::Cancelled, S::Cancelled),
        (
            S::AwaitingCustomerIdentity,
            E::CustomerResponded,
            S::IdentityReview,
        ),
        (S::AwaitingCustomerIdentity, E::Cancelled, S::Cancelled),
        (S::AwaitingCustomerIdentity, E::Expired, S::Expired),
        (S::AwaitingCustomerIdentity, E::Superseded, S::Cancelled),
        (S::RiskAssessment, E::RiskCleared, S::Provisioning),
        (S::RiskAssessment, E::RiskFlagged, S::SecurityReview),
        (S::RiskAssessment, E::RiskRefused, S::AwaitingStoreVisit),
        (S::RiskAssessment, E::Cancelled, S::Cancelled),
        (S::SecurityReview, E::Approved, S::Provisioning),
        (S::SecurityReview, E::PartlyApproved, S::Provisioning),
        (
            S::SecurityReview,
            E::InfoRequested,
            S::AwaitingCustomerSecurity,
        ),
        (S::SecurityReview, E::Rejected, S::Rejected),
        (S::SecurityReview, E::Cancelled, S::Cancelled),
        (
            S::AwaitingCustomerSecurity,
            E::CustomerResponded,
            S::SecurityReview,
        ),
        (S::AwaitingCustomerSecurity, E::Cancelled, S::Cancelled),
        (S::AwaitingCustomerSecurity, E::Expired, S::Expired),
        (S::PartiallyReactivated, E::Approved, S::Provisioning),
        (S::PartiallyReactivated, E::Closed, S::Closed),
        (S::Rejected, E::Appealed, S::SecurityReview),
        (S::Rejected, E::Cancelled, S::Cancelled),
        (S::Rejected, E::Superseded, S::Cancelled),
        (S::Rejected, E::Closed, S::Closed),
        (
            S::AwaitingStoreVisit,
            E::StoreVisitVerified,
            S::RiskAssessment,
        ),
        (S::AwaitingStoreVisit, E::Cancelled, S::Cancelled),
        (S::AwaitingStoreVisit, E::Expired, S::Expired),
        (S::AwaitingStoreVisit, E::Superseded, S::Cancelled),
        (S::Provisioning, E::Restored, S::Reactivated),
        (S::Provisioning, E::PartlyRestored, S::PartiallyReactivated),
        (
            S::Provisioning,
            E::ProvisioningFailed,
            S::ProvisioningFailed,
        ),
        (
            S::ProvisioningFailed,
            E::ProvisioningRetried,
            S::Provisioning,
        ),
        (S::ProvisioningFailed, E::ResolvedManually, S::Reactivated),
    ];

    #[test]
    fn every_state_event_pair_matches_the_written_lifecycle() {
        let mut checked = 0;
        for from in CaseState::ALL {
            for event in CaseEvent::ALL {
                let expected = EXPECTED
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|r| r.2);
                assert_eq!(
                    transition_for(from, event).map(|t| t.to),
                    expected,
                    "{from} + {event}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, CaseState::ALL.len() * CaseEvent::ALL.len());
        assert_eq!(TRANSITIONS.len(), EXPECTED.len());
    }

    #[test]
    fn the_table_has_no_duplicate_rows_and_every_row_names_a_role() {
        let pairs: BTreeSet<_> = TRANSITIONS.iter().map(|t| (t.from, t.event)).collect();
        assert_eq!(pairs.len(), TRANSITIONS.len());
        assert!(TRANSITIONS.iter().all(|t| !t.roles.is_empty()));
        assert!(TRANSITIONS.iter().all(|t| !t.from.is_terminal()));
    }

    #[test]
    fn who_may_do_what() {
        use TransitionError::*;
        let cases: &[(S, E, R, Result<S, TransitionError>)] = &[
            (
                S::SecurityReview,
                E::Approved,
                R::Security,
                Ok(S::Provisioning),
            ),
            (
                S::SecurityReview,
                E::Approved,
                R::Supervisor,
                Ok(S::Provisioning),
            ),
            (
                S::SecurityReview,
                E::Approved,
                R::Technical,
                Err(Forbidden {
                    from: S::SecurityReview,
                    event: E::Approved,
                    role: R::Technical,
                }),
            ),
            (
                S::SecurityReview,
                E::Approved,
                R::Cs,
                Err(Forbidden {
                    from: S::SecurityReview,
                    event: E::Approved,
                    role: R::Cs,
                }),
            ),
            (
                S::SecurityReview,
                E::Approved,
                R::Admin,
                Err(Forbidden {
                    from: S::SecurityReview,
                    event: E::Approved,
                    role: R::Admin,
                }),
            ),
            (
                S::SecurityReview,
                E::Approved,
                R::Customer,
                Err(Forbidden {
                    from: S::SecurityReview,
                    event: E::Approved,
                    role: R::Customer,
                }),
            ),
            // Security may act in security_review, but verify_identity is not one of its events there.
            (
                S::SecurityReview,
                E::IdentityVerified,
                R::Security,
                Err(Illegal {
                    from: S::SecurityReview,
                    event: E::IdentityVerified,
                }),
            ),
            (
                S::IdentityReview,
                E::IdentityVerified,
                R::Cs,
                Ok(S::RiskAssessment),
            ),
            (
                S::ProvisioningFailed,
                E::ProvisioningRetried,
                R::Technical,
                Ok(S::Provisioning),
            ),
            (
                S::ProvisioningFailed,
                E::Approved,
                R::Technical,
                Err(Illegal {
                    from: S::ProvisioningFailed,
                    event: E::Approved,
                }),
            ),
            (
                S::Provisioning,
                E::Cancelled,
                R::Customer,
                Err(Forbidden {
                    from: S::Provisioning,
                    event: E::Cancelled,
                    role: R::Customer,
                }),
            ),
            (S::Rejected, E::Appealed, R::Customer, Ok(S::SecurityReview)),
            (
                S::AwaitingStoreVisit,
                E::StoreVisitVerified,
                R::Store,
                Ok(S::RiskAssessment),
            ),
            (
                S::AwaitingStoreVisit,
                E::StoreVisitVerified,
                R::Supervisor,
                Ok(S::RiskAssessment),
            ),
            // Only a store agent (or a supervisor) records the in-person check.
            (
                S::AwaitingStoreVisit,
                E::StoreVisitVerified,
                R::Cs,
                Err(Forbidden {
                    from: S::AwaitingStoreVisit,
                    event: E::StoreVisitVerified,
                    role: R::Cs,
                }),
            ),
            (
                S::AwaitingStoreVisit,
                E::StoreVisitVerified,
                R::Customer,
                Err(Forbidden {
                    from: S::AwaitingStoreVisit,
                    event: E::StoreVisitVerified,
                    role: R::Customer,
                }),
            ),
            // A store agent takes no other decision.
            (
                S::SecurityReview,
                E::Approved,
                R::Store,
                Err(Forbidden {
                    from: S::SecurityReview,
                    event: E::Approved,
                    role: R::Store,
                }),
            ),
            (
                S::Reactivated,
                E::Cancelled,
                R::Supervisor,
                Err(Forbidden {
                    from: S::Reactivated,
                    event: E::Cancelled,
                    role: R::Supervisor,
                }),
            ),
        ];
        for (from, event, role, expected) in cases {
            assert_eq!(
                decide(*from, *event, *role),
                *expected,
                "{from} {event} {role}"
            );
        }
    }

    #[test]
    fn admins_take_no_case_decisions_and_the_system_never_decides_for_a_person() {
        assert!(TRANSITIONS.iter().all(|t| !t.roles.contains(&R::Admin)));
        for e in [
            E::Approved,
            E::PartlyApproved,
            E::IdentityVerified,
            E::StoreVisitVerified,
            E::Appealed,
            E::CustomerResponded,
        ] {
            assert!(
                TRANSITIONS
                    .iter()
                    .filter(|t| t.event == e)
                    .all(|t| !t.roles.contains(&R::System)),
                "{e}"
            );
        }
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        for s in CaseState::ALL {
            assert_eq!(CaseState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for e in CaseEvent::ALL {
            assert_eq!(serde_json::to_string(&e).unwrap(), format!("\"{e}\""));
        }
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        for (name, e) in CaseEvent::AGENT_ACTIONS {
            assert_eq!(CaseEvent::from_agent_action(name), Some(e));
            assert_eq!(e.agent_action(), Some(name));
        }
        assert_eq!(CaseEvent::from_agent_action("restore_everything"), None);
    }

    #[test]
    fn ownership_is_consistent() {
        for s in CaseState::ALL {
            assert_eq!(s.is_terminal(), s.department().is_none(), "{s}");
            if s.is_automated() {
                // A worker owns it: only the system (and a withdrawal) moves it.
                assert!(
                    TRANSITIONS
                        .iter()
                        .filter(|t| t.from == s && t.event != E::Cancelled)
                        .all(|t| t.roles == SYSTEM),
                    "{s}"
                );
            }
        }
        assert!(S::AwaitingCustomerSecurity.waits_on_customer());
        assert!(!S::SecurityReview.waits_on_customer());
        assert_eq!(
            S::RiskAssessment.work_channel(),
            "case_work_risk_assessment"
        );
    }

    fn reachable_from(start: S) -> BTreeSet<S> {
        let mut seen = BTreeSet::from([start]);
        let mut queue = VecDeque::from([start]);
        while let Some(s) = queue.pop_front() {
            for t in TRANSITIONS.iter().filter(|t| t.from == s) {
                if seen.insert(t.to) {
                    queue.push_back(t.to);
                }
            }
        }
        seen
    }

    #[test]
    fn every_state_is_reachable_from_the_initial_state() {
        let reached = reachable_from(CaseState::INITIAL);
        for s in CaseState::ALL {
            assert!(reached.contains(&s), "{s} is unreachable");
        }
    }

    #[test]
    fn every_non_terminal_state_can_reach_a_terminal_state() {
        for s in CaseState::ALL.into_iter().filter(|s| !s.is_terminal()) {
            assert!(
                reachable_from(s).iter().any(|r| r.is_terminal()),
                "{s} cannot finish"
            );
        }
    }

    #[test]
    fn the_diagram_lists_every_row() {
        let d = mermaid_state_diagram();
        assert!(d.starts_with("stateDiagram-v2\n    [*] --> awaiting_identity\n"));
        assert_eq!(
            d.lines().filter(|l| l.contains(" : ")).count(),
            TRANSITIONS.len()
        );
    }

    proptest! {
        /// Random events by random roles, applied one after another: every accepted
        /// step is a row of the table with that role, every refused step leaves the
        /// state unchanged, and terminal states accept nothing.
        #[test]
        fn random_event_sequences_only_take_legal_steps(
            steps in proptest::collection::vec(
                (proptest::sample::select(CaseEvent::ALL.to_vec()), proptest::sample::select(Role::ALL.to_vec())),
                0..60,
            )
        ) {
            let mut state = CaseState::INITIAL;
            for (event, role) in steps {
                match decide(state, event, role) {
                    Ok(next) => {
                        let row = transition_for(state, event).unwrap();
                        prop_assert_eq!(row.to, next);
                        prop_assert!(row.roles.contains(&role));
                        prop_assert!(!state.is_terminal());
                        state = next;
                    }
                    Err(TransitionError::Illegal { from, event: e }) => {
                        prop_assert_eq!(from, state);
                        prop_assert_eq!(e, event);
                        prop_assert!(transition_for(state, event).is_none());
                    }
                    Err(TransitionError::Forbidden { from, role: r, .. }) => {
                        prop_assert_eq!(from, state);
                        prop_assert_eq!(r, role);
                        prop_assert!(transition_for(state, event).is_none_or(|row| !row.roles.contains(&role)));
                    }
                }
            }
        }
    }
}
