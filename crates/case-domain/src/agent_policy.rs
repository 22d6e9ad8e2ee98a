//! Who among the agents may see and do what, as data and pure functions: which
//! states a department's queue holds and who may read it, who may read the shared
//! case view, unmask personal data, export the dossier or read the supervisors'
//! reports, how long a claim lasts, the four-eyes rule on appeals, and what a note
//! or a reason may hold, how a CS agent says identity was checked, and who may
//! verify a case whose name and ID did not match the carrier's record.

use std::time::Duration;

use crate::{CaseEvent, CaseState, Department, Role, events_for};

/// How long an agent's claim on a case lasts (renewed by every action).
pub const CLAIM_TTL: Duration = Duration::from_secs(30 * 60);

/// Agents who work cases (everyone but admins) may read the shared case view.
pub const CASE_READERS: &[Role] = &[
    Role::Cs,
    Role::Store,
    Role::Security,
    Role::Technical,
    Role::Supervisor,
];

/// Agents who may see personal data unmasked (always with a recorded reason).
pub const UNMASKERS: &[Role] = &[Role::Security, Role::Supervisor];

/// Who may export a case's regulator dossier.
pub const DOSSIER_READERS: &[Role] = &[Role::Supervisor, Role::Security, Role::Cs];

/// Who may look numbers up and record the in-person check of a store visit.
pub const STORE_AGENTS: &[Role] = &[Role::Store, Role::Supervisor];

/// Who may read the supervisors' views: the false-positive report and the escalations.
pub const SUPERVISORS: &[Role] = &[Role::Supervisor];

/// The human states each department's queue holds.
pub fn queue_states(department: Department) -> &'static [CaseState] {
    match department {
        Department::CustomerService => &[CaseState::IdentityReview],
        Department::Security => &[CaseState::SecurityReview, CaseState::PartiallyReactivated],
        Department::Technical => &[CaseState::ProvisioningFailed],
        Department::Subscriber => &[],
    }
}

/// The agents who may see a department's queue.
pub fn queue_roles(department: Department) -> &'static [Role] {
    match department {
        Department::CustomerService => &[Role::Cs, Role::Supervisor],
        Department::Security => &[Role::Security, Role::Supervisor],
        Department::Technical => &[Role::Technical, Role::Supervisor],
        Department::Subscriber => &[Role::Supervisor],
    }
}

/// A department by the code agents use for it (`cs`, `security`, `technical`).
pub fn parse_department(code: &str) -> Option<Department> {
    match code {
        "cs" | "customer_service" => Some(Department::CustomerService),
        "security" => Some(Department::Security),
        "technical" => Some(Department::Technical),
        _ => None,
    }
}

/// Whether an agent holding `roles` holds any of `allowed`.
pub fn holds_any(roles: &[Role], allowed: &[Role]) -> bool {
    roles.iter().any(|r| allowed.contains(r))
}

/// The decisions that settle an appeal (and so fall under the four-eyes rule).
pub const APPEAL_DECISIONS: [CaseEvent; 4] = [
    CaseEvent::Approved,
    CaseEvent::PartlyApproved,
    CaseEvent::Rejected,
    CaseEvent::InfoRequested,
];

/// Whether `event` on a case in `state` decides an appeal, when the case was appealed.
pub fn decides_appeal(state: CaseState, event: CaseEvent, appealed: bool) -> bool {
    appealed && state == CaseState::SecurityReview && APPEAL_DECISIONS.contains(&event)
}

/// The four-eyes rule: an appeal is decided by someone other than the analyst who
/// rejected the case (`rejected_by`, the actor id of the last rejection).
pub fn may_decide_appeal(rejected_by: Option<&str>, agent_id: &str) -> bool {
    rejected_by != Some(agent_id)
}

/// The actions (API names) an agent holding `roles` may take on a case in `state`,
/// in the transition table's order, each once.
pub fn allowed_actions(roles: &[Role], state: CaseState) -> Vec<&'static str> {
    let mut actions: Vec<&'static str> = Vec::new();
    for role in roles {
        for event in events_for(state, *role) {
            if let Some(name) = event.agent_action()
                && !actions.contains(&name)
            {
                actions.push(name);
            }
        }
    }
    actions
}

/// The longest note, in characters.
pub const NOTE_MAX_CHARS: usize = 4000;
/// The longest decision reason, in characters.
pub const REASON_MAX_CHARS: usize = 2000;
/// The shortest and longest reason for unmasking, in characters.
pub const UNMASK_REASON_CHARS: (usize, usize) = (5, 500);

/// Whether a (trimmed) note is acceptable: 1 to [`NOTE_MAX_CHARS`] characters.
pub fn note_ok(text: &str) -> bool {
    !text.is_empty() && text.chars().count() <= NOTE_MAX_CHARS
}

/// Whether a (trimmed) reason for unmasking is acceptable.
pub fn unmask_reason_ok(reason: &str) -> bool {
    let n = reason.chars().count();
    (UNMASK_REASON_CHARS.0..=UNMASK_REASON_CHARS.1).contains(&n)
}

/// How an agent checked the subscriber's identity before `verify_identity` (required
/// with that action, recorded in the event's reason and the audit row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityCheck {
    /// The original ID document was seen in person (in a store).
    OriginalIdInPerson,
    /// The agent called back a contact on file and the subscriber answered.
    CallbackToContactOnFile,
    /// A video call, the face matched the ID document's photo.
    VideoCallFaceMatch,
    /// Documents sent by the subscriber were reviewed.
    DocumentsReviewed,
}

impl IdentityCheck {
    /// Every way, in the order a form lists them.
    pub const ALL: [IdentityCheck; 4] = [
        Self::OriginalIdInPerson,
        Self::CallbackToContactOnFile,
        Self::VideoCallFaceMatch,
        Self::DocumentsReviewed,
    ];

    /// The API code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OriginalIdInPerson => "original_id_in_person",
            Self::CallbackToContactOnFile => "callback_to_contact_on_file",
            Self::VideoCallFaceMatch => "video_call_face_match",
            Self::DocumentsReviewed => "documents_reviewed",
        }
    }

    /// Parses an API code (exactly; no other spelling).
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// What the case's timeline says (the subscriber reads it too), in `locale`.
    pub fn text(self, locale: &str) -> &'static str {
        let zh = locale == "zh-CN";
        match (self, zh) {
            (Self::OriginalIdInPerson, false) => {
                "Identity checked: original ID document seen in person"
            }
            (Self::OriginalIdInPerson, true) => "身份核验方式：现场查验身份证原件",
            (Self::CallbackToContactOnFile, false) => {
                "Identity checked: call back to a contact on file"
            }
            (Self::CallbackToContactOnFile, true) => "身份核验方式：回拨预留联系方式",
            (Self::VideoCallFaceMatch, false) => {
                "Identity checked: video call, face matched the ID photo"
            }
            (Self::VideoCallFaceMatch, true) => "身份核验方式：视频通话人像比对",
            (Self::DocumentsReviewed, false) => "Identity checked: documents reviewed",
            (Self::DocumentsReviewed, true) => "身份核验方式：审核证明材料",
        }
    }
}

/// Whether the name and ID given with a case matched the carrier's subscriber record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameIdMatch {
    /// The carrier said they match.
    Matched,
    /// The carrier said they do not.
    DidNotMatch,
    /// The carrier was not asked yet.
    NotYetAsked,
}

impl NameIdMatch {
    /// From the stored answer (`None`: not asked).
    pub fn of(subscriber_match: Option<bool>) -> Self {
        match subscriber_match {
            Some(true) => Self::Matched,
            Some(false) => Self::DidNotMatch,
            None => Self::NotYetAsked,
        }
    }

    /// matched, did_not_match or not_yet_asked.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::DidNotMatch => "did_not_match",
            Self::NotYetAsked => "not_yet_asked",
        }
    }
}

/// Who may verify identity against the carrier's "no" on name and ID.
pub const MISMATCH_VERIFIERS: &[Role] = &[Role::Supervisor];

/// Why an agent may not verify a case's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyRefusal {
    /// The name and ID did not match the carrier's record: only a supervisor may verify.
    SupervisorRequiredNameIdMismatch,
}

impl VerifyRefusal {
    /// The stable code the API answers with.
    pub fn code(self) -> &'static str {
        match self {
            Self::SupervisorRequiredNameIdMismatch => "supervisor_required_name_id_mismatch",
        }
    }
}

/// Whether an agent holding `roles` may verify identity on a case whose carrier
/// match answer is `name_id`: always, unless the name and ID did NOT match, which
/// takes a supervisor (a leaked name + ID number is the fraudster's starting point;
/// a mismatch is the carrier saying the requester is not the subscriber).
pub fn may_verify_identity(roles: &[Role], name_id: NameIdMatch) -> Result<(), VerifyRefusal> {
    match name_id {
        NameIdMatch::DidNotMatch if !holds_any(roles, MISMATCH_VERIFIERS) => {
            Err(VerifyRefusal::SupervisorRequiredNameIdMismatch)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_queue_holds_its_departments_human_states() {
        for department in [
            Department::CustomerService,
            Department::Security,
            Department::Technical,
        ] {
            assert!(!queue_states(department).is_empty());
            for state in queue_states(department) {
                assert!(!state.is_automated(), "{state}");
                assert!(!state.is_terminal(), "{state}");
            }
            // Supervisors see every queue; admins none.
            assert!(queue_roles(department).contains(&Role::Supervisor));
            assert!(!queue_roles(department).contains(&Role::Admin));
        }
        assert!(queue_states(Department::Subscriber).is_empty());
        assert_eq!(
            queue_roles(Department::Security),
            [Role::Security, Role::Supervisor]
        );
        assert_eq!(
            queue_states(Department::Security),
            [CaseState::SecurityReview, CaseState::PartiallyReactivated]
        );
    }

    #[test]
    fn departments_are_named_by_their_codes() {
        assert_eq!(parse_department("cs"), Some(Department::CustomerService));
        assert_eq!(
            parse_department("customer_service"),
            Some(Department::CustomerService)
        );
        assert_eq!(parse_department("security"), Some(Department::Security));
        assert_eq!(parse_department("technical"), Some(Department::Technical));
        assert_eq!(parse_department("subscriber"), None);
        assert_eq!(parse_department(""), None);
    }

    #[test]
    fn admins_neither_read_cases_nor_unmask() {
        assert!(!CASE_READERS.contains(&Role::Admin));
        assert!(!UNMASKERS.contains(&Role::Admin));
        assert!(!UNMASKERS.contains(&Role::Cs));
        assert!(!UNMASKERS.contains(&Role::Technical));
        assert!(holds_any(&[Role::Cs, Role::Security], UNMASKERS));
        assert!(!holds_any(&[Role::Technical], UNMASKERS));
        assert!(!holds_any(&[], CASE_READERS));
        // Whoever may unmask or export a dossier may read the case.
        for role in UNMASKERS.iter().chain(DOSSIER_READERS) {
            assert!(CASE_READERS.contains(role), "{role:?}");
        }
    }

    #[test]
    fn an_appeal_is_decided_by_another_analyst() {
        assert!(!may_decide_appeal(Some("a"), "a"));
        assert!(may_decide_appeal(Some("a"), "b"));
        assert!(may_decide_appeal(None, "a"));
        for event in APPEAL_DECISIONS {
            assert!(decides_appeal(CaseState::SecurityReview, event, true));
            assert!(!decides_appeal(CaseState::SecurityReview, event, false));
            assert!(!decides_appeal(CaseState::IdentityReview, event, true));
        }
        assert!(!decides_appeal(
            CaseState::SecurityReview,
            CaseEvent::Closed,
            true
        ));
    }

    #[test]
    fn allowed_actions_follow_the_transition_table() {
        let security = allowed_actions(&[Role::Security], CaseState::SecurityReview);
        assert!(security.contains(&"approve"));
        assert!(security.contains(&"reject"));
        assert!(allowed_actions(&[Role::Technical], CaseState::SecurityReview).is_empty());
        assert!(allowed_actions(&[Role::Admin], CaseState::SecurityReview).is_empty());
        // Two roles allowing the same action list it once.
        let both = allowed_actions(
            &[Role::Security, Role::Supervisor],
            CaseState::SecurityReview,
        );
        let mut unique = both.clone();
        unique.dedup();
        assert_eq!(both.len(), unique.len());
        for name in both {
            assert!(CaseEvent::from_agent_action(name).is_some(), "{name}");
        }
    }

    #[test]
    fn notes_and_reasons_have_bounds() {
        assert!(!note_ok(""));
        assert!(note_ok("x"));
        assert!(note_ok(&"é".repeat(NOTE_MAX_CHARS)));
        assert!(!note_ok(&"x".repeat(NOTE_MAX_CHARS + 1)));
        assert!(!unmask_reason_ok("why"));
        assert!(unmask_reason_ok("hotline"));
        assert!(unmask_reason_ok(&"x".repeat(500)));
        assert!(!unmask_reason_ok(&"x".repeat(501)));
    }

    #[test]
    fn a_claim_lasts_half_an_hour() {
        assert_eq!(CLAIM_TTL.as_secs(), 1800);
    }

    #[test]
    fn identity_checks_are_data_with_stable_codes() {
        assert_eq!(IdentityCheck::ALL.len(), 4);
        for check in IdentityCheck::ALL {
            assert_eq!(IdentityCheck::parse(check.as_str()), Some(check));
            assert!(!check.text("en").is_empty());
            assert!(!check.text("zh-CN").is_empty());
            assert_ne!(check.text("en"), check.text("zh-CN"));
        }
        assert_eq!(
            IdentityCheck::parse("original_id_in_person"),
            Some(IdentityCheck::OriginalIdInPerson)
        );
        for bad in [
            "",
            "ORIGINAL_ID_IN_PERSON",
            " documents_reviewed",
            "trust_me",
        ] {
            assert_eq!(IdentityCheck::parse(bad), None, "{bad}");
        }
        let mut codes: Vec<_> = IdentityCheck::ALL.iter().map(|c| c.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), IdentityCheck::ALL.len());
    }

    #[test]
    fn the_carriers_match_answer_reads_three_ways() {
        assert_eq!(NameIdMatch::of(Some(true)), NameIdMatch::Matched);
        assert_eq!(NameIdMatch::of(Some(false)), NameIdMatch::DidNotMatch);
        assert_eq!(NameIdMatch::of(None), NameIdMatch::NotYetAsked);
        assert_eq!(NameIdMatch::DidNotMatch.as_str(), "did_not_match");
    }

    #[test]
    fn a_name_id_mismatch_takes_a_supervisor_to_verify() {
        use NameIdMatch::*;
        for m in [Matched, NotYetAsked] {
            assert_eq!(may_verify_identity(&[Role::Cs], m), Ok(()));
            assert_eq!(may_verify_identity(&[Role::Supervisor], m), Ok(()));
        }
        assert_eq!(
            may_verify_identity(&[Role::Cs], DidNotMatch),
            Err(VerifyRefusal::SupervisorRequiredNameIdMismatch)
        );
        assert_eq!(
            may_verify_identity(&[Role::Cs, Role::Security], DidNotMatch),
            Err(VerifyRefusal::SupervisorRequiredNameIdMismatch)
        );
        assert_eq!(
            may_verify_identity(&[Role::Cs, Role::Supervisor], DidNotMatch),
            Ok(())
        );
        assert_eq!(
            may_verify_identity(&[Role::Supervisor], DidNotMatch),
            Ok(())
        );
        assert_eq!(
            VerifyRefusal::SupervisorRequiredNameIdMismatch.code(),
            "supervisor_required_name_id_mismatch"
        );
    }
}
