//! The risk-graded verification ladder (graded re-verification, as the anti-fraud law
//! asks): the carrier's risk signals are read when a case opens, and the tier they
//! grade decides which identity proofs are asked before anything else happens.
//!
//! | tier | asked before anything else |
//! |---|---|
//! | low | a one-time code **or** the service password (as before the ladder) |
//! | medium | a one-time code **and** the service password |
//! | high | both, **and** a CS call-back to the number on file **or** a store visit |
//! | extreme | a store visit |
//!
//! A store agent who saw the original ID card and compared the face (`in_person_id`)
//! gives the strongest proof: it satisfies every tier. Proofs accumulate: each one
//! given is kept, and only the rungs still open are asked for. A later re-score can
//! only raise the tier ([`raise`]): proofs already given stay given.

use serde::{Deserialize, Serialize};

use crate::{agent_policy::IdentityCheck, risk::RiskTier};

/// A kind of identity proof the ladder counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProofKind {
    /// A one-time code sent to a contact on file with the carrier (the subscriber).
    Otp,
    /// The number's service password, checked by the carrier (the subscriber).
    ServicePassword,
    /// A customer-service agent called back the number on file and the subscriber answered.
    CsCallback,
    /// A store agent saw the original ID card in person and compared the face: the
    /// strongest proof, it satisfies every tier.
    InPersonId,
}

impl ProofKind {
    /// Every kind, weakest first.
    pub const ALL: [ProofKind; 4] = [
        Self::Otp,
        Self::ServicePassword,
        Self::CsCallback,
        Self::InPersonId,
    ];

    /// The snake_case name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Otp => "otp",
            Self::ServicePassword => "service_password",
            Self::CsCallback => "cs_callback",
            Self::InPersonId => "in_person_id",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether the subscriber gives this proof online (else an agent records it).
    pub fn given_online(self) -> bool {
        matches!(self, Self::Otp | Self::ServicePassword)
    }

    /// What the subscriber is told to do for it, in `locale` (zh-CN, else English).
    pub fn text(self, locale: &str) -> &'static str {
        match (self, locale == "zh-CN") {
            (Self::Otp, false) => "enter the one-time code sent to a contact on file",
            (Self::Otp, true) => "输入发送至预留联系方式的验证码",
            (Self::ServicePassword, false) => "enter the number's service password",
            (Self::ServicePassword, true) => "输入号码的服务密码",
            (Self::CsCallback, false) => {
                "answer a customer-service call-back on the number on file"
            }
            (Self::CsCallback, true) => "接听客服对预留号码的回拨",
            (Self::InPersonId, false) => "visit a store of your carrier with your original ID card",
            (Self::InPersonId, true) => "携带本人身份证原件前往营业厅",
        }
    }
}

/// One rung of the ladder: any one of these kinds satisfies it.
pub type Rung = &'static [ProofKind];

use ProofKind::*;

/// The ladder as data: the rungs each tier asks for, in the order the subscriber
/// sees them.
pub const LADDER: [(RiskTier, &[Rung]); 4] = [
    (RiskTier::Low, &[&[Otp, ServicePassword]]),
    (RiskTier::Medium, &[&[Otp], &[ServicePassword]]),
    (
        RiskTier::High,
        &[&[Otp], &[ServicePassword], &[CsCallback, InPersonId]],
    ),
    (RiskTier::Extreme, &[&[InPersonId]]),
];

/// The rungs `tier` asks for.
pub fn rungs(tier: RiskTier) -> &'static [Rung] {
    LADDER
        .iter()
        .find(|(t, _)| *t == tier)
        .map_or(&[], |(_, rungs)| rungs)
}

/// The rungs of `tier` that `given` does not satisfy yet (none once `in_person_id`
/// is given: it satisfies every tier).
pub fn outstanding(tier: RiskTier, given: &[ProofKind]) -> Vec<Rung> {
    if given.contains(&InPersonId) {
        return Vec::new();
    }
    rungs(tier)
        .iter()
        .copied()
        .filter(|rung| !rung.iter().any(|k| given.contains(k)))
        .collect()
}

/// Whether `given` satisfies every rung of `tier`.
pub fn satisfied(tier: RiskTier, given: &[ProofKind]) -> bool {
    outstanding(tier, given).is_empty()
}

/// What happens to a case awaiting identity once a proof was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// Every rung is satisfied: identity is proven (`proofs_accepted`).
    Proven,
    /// The subscriber still has online proofs to give (the case does not move).
    MoreOnline(Vec<Rung>),
    /// Only a CS call-back or a store visit is left: the case goes to a CS agent
    /// who calls back (`identity_escalated`); a store visit also satisfies it.
    CallBack,
    /// Only a store visit is left (`store_visit_required`).
    StoreVisit,
}

/// The step for a case of `tier` whose proofs so far are `given`.
pub fn next_step(tier: RiskTier, given: &[ProofKind]) -> NextStep {
    let open = outstanding(tier, given);
    if open.is_empty() {
        return NextStep::Proven;
    }
    if open
        .iter()
        .any(|rung| rung.iter().any(|k| k.given_online()))
    {
        return NextStep::MoreOnline(open);
    }
    if open.iter().all(|rung| rung.contains(&CsCallback)) {
        NextStep::CallBack
    } else {
        NextStep::StoreVisit
    }
}

/// A re-score can only raise the bar: the tier the ladder keeps.
pub fn raise(current: RiskTier, rescored: RiskTier) -> RiskTier {
    current.max(rescored)
}

/// The ladder's kind for a subscriber's proof method (`otp`, `service_password`);
/// call records are not a rung (they send the case to a CS agent).
pub fn online_kind(method: &str) -> Option<ProofKind> {
    match method {
        "otp" => Some(Otp),
        "service_password" => Some(ServicePassword),
        _ => None,
    }
}

/// The ladder's kind an agent's identity check gives, if it is one.
pub fn agent_kind(check: IdentityCheck) -> Option<ProofKind> {
    match check {
        IdentityCheck::OriginalIdInPerson => Some(InPersonId),
        IdentityCheck::CallbackToContactOnFile => Some(CsCallback),
        IdentityCheck::VideoCallFaceMatch | IdentityCheck::DocumentsReviewed => None,
    }
}

/// Whether an agent who confirms identity with `check` satisfies what `tier` still
/// asks after `given`. Up to the medium tier an agent's judgement stands in for the
/// online proofs (as before the ladder); the high tier asks for a call-back to the
/// number on file or the original ID seen in person, the extreme tier for the latter.
pub fn agent_check_suffices(tier: RiskTier, given: &[ProofKind], check: IdentityCheck) -> bool {
    match tier {
        RiskTier::Low | RiskTier::Medium => true,
        RiskTier::High | RiskTier::Extreme => {
            let Some(kind) = agent_kind(check) else {
                return false;
            };
            // What is still open once the online rungs count as the agent's to judge.
            let mut with = given.to_vec();
            with.extend([Otp, ServicePassword, kind]);
            satisfied(tier, &with)
        }
    }
}

/// The open rungs as names, for the API: each inner list is "any one of these".
pub fn rung_names(rungs: &[Rung]) -> Vec<Vec<&'static str>> {
    rungs
        .iter()
        .map(|rung| rung.iter().map(|k| k.as_str()).collect())
        .collect()
}

/// Parses stored proof names, skipping any this version does not know.
pub fn parse_given<S: AsRef<str>>(names: &[S]) -> Vec<ProofKind> {
    names
        .iter()
        .filter_map(|n| ProofKind::parse(n.as_ref()))
        .collect()
}

/// Why the tier asks what it asks, in words the subscriber may read before proving
/// identity: no reason code, no signal, nothing the number's use would tell a stranger
/// beyond the tier itself.
pub fn why(tier: RiskTier, locale: &str) -> &'static str {
    match (tier, locale == "zh-CN") {
        (RiskTier::Low, false) => {
            "No unusual use was reported for this number: one proof is enough."
        }
        (RiskTier::Low, true) => "该号码未发现异常使用，完成一项验证即可。",
        (RiskTier::Medium, false) => {
            "The carrier reported unusual use of this number, so two proofs are needed."
        }
        (RiskTier::Medium, true) => "运营商发现该号码存在异常使用，需完成两项验证。",
        (RiskTier::High, false) => {
            "The carrier reported serious signs of misuse of this number, so a person also confirms it is you."
        }
        (RiskTier::High, true) => "运营商发现该号码存在较严重的异常使用，还需人工确认是您本人。",
        (RiskTier::Extreme, false) => {
            "This number can only be restored after your original ID card was checked in person at a store."
        }
        (RiskTier::Extreme, true) => "该号码需到营业厅现场核验身份证原件后方可恢复。",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_table() {
        // tier, proofs given, rungs still open, next step.
        type Row = (RiskTier, &'static [ProofKind], &'static [Rung], NextStep);
        let table: &[Row] = &[
            // Low: one code or the password, as before the ladder.
            (
                RiskTier::Low,
                &[],
                &[&[Otp, ServicePassword]],
                NextStep::MoreOnline(vec![&[Otp, ServicePassword]]),
            ),
            (RiskTier::Low, &[Otp], &[], NextStep::Proven),
            (RiskTier::Low, &[ServicePassword], &[], NextStep::Proven),
            // Medium: both.
            (
                RiskTier::Medium,
                &[],
                &[&[Otp], &[ServicePassword]],
                NextStep::MoreOnline(vec![&[Otp], &[ServicePassword]]),
            ),
            (
                RiskTier::Medium,
                &[ServicePassword],
                &[&[Otp]],
                NextStep::MoreOnline(vec![&[Otp]]),
            ),
            (
                RiskTier::Medium,
                &[Otp],
                &[&[ServicePassword]],
                NextStep::MoreOnline(vec![&[ServicePassword]]),
            ),
            (
                RiskTier::Medium,
                &[Otp, ServicePassword],
                &[],
                NextStep::Proven,
            ),
            // A call-back alone is not enough for medium.
            (
                RiskTier::Medium,
                &[CsCallback],
                &[&[Otp], &[ServicePassword]],
                NextStep::MoreOnline(vec![&[Otp], &[ServicePassword]]),
            ),
            // High: both, then a call-back or a store visit.
            (
                RiskTier::High,
                &[Otp],
                &[&[ServicePassword], &[CsCallback, InPersonId]],
                NextStep::MoreOnline(vec![&[ServicePassword], &[CsCallback, InPersonId]]),
            ),
            (
                RiskTier::High,
                &[Otp, ServicePassword],
                &[&[CsCallback, InPersonId]],
                NextStep::CallBack,
            ),
            (
                RiskTier::High,
                &[Otp, ServicePassword, CsCallback],
                &[],
                NextStep::Proven,
            ),
            // Extreme: a store visit, nothing online counts.
            (
                RiskTier::Extreme,
                &[],
                &[&[InPersonId]],
                NextStep::StoreVisit,
            ),
            (
                RiskTier::Extreme,
                &[Otp, ServicePassword, CsCallback],
                &[&[InPersonId]],
                NextStep::StoreVisit,
            ),
            (RiskTier::Extreme, &[InPersonId], &[], NextStep::Proven),
        ];
        for (tier, given, open, next) in table {
            assert_eq!(
                outstanding(*tier, given),
                open.to_vec(),
                "{tier:?} {given:?}"
            );
            assert_eq!(next_step(*tier, given), *next, "{tier:?} {given:?}");
            assert_eq!(satisfied(*tier, given), open.is_empty());
        }
    }

    #[test]
    fn in_person_id_satisfies_every_tier_and_nothing_less_satisfies_extreme() {
        for (tier, _) in LADDER {
            assert!(satisfied(tier, &[InPersonId]), "{tier:?}");
        }
        let online_and_callback = [Otp, ServicePassword, CsCallback];
        assert!(!satisfied(RiskTier::Extreme, &online_and_callback));
    }

    #[test]
    fn a_higher_tier_never_asks_less() {
        // Every set of proofs that satisfies a tier satisfies every lower tier.
        let tiers = [
            RiskTier::Low,
            RiskTier::Medium,
            RiskTier::High,
            RiskTier::Extreme,
        ];
        for mask in 0u8..16 {
            let given: Vec<ProofKind> = ProofKind::ALL
                .into_iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, k)| k)
                .collect();
            for pair in tiers.windows(2) {
                if satisfied(pair[1], &given) {
                    assert!(satisfied(pair[0], &given), "{pair:?} {given:?}");
                }
            }
        }
    }

    #[test]
    fn a_rescore_only_raises() {
        assert_eq!(raise(RiskTier::Medium, RiskTier::Low), RiskTier::Medium);
        assert_eq!(raise(RiskTier::Medium, RiskTier::High), RiskTier::High);
        assert_eq!(raise(RiskTier::Low, RiskTier::Extreme), RiskTier::Extreme);
    }

    #[test]
    fn names_round_trip_and_every_tier_has_rungs_and_words() {
        for k in ProofKind::ALL {
            assert_eq!(ProofKind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
            assert!(!k.text("en").is_empty() && !k.text("zh-CN").is_empty());
        }
        assert_eq!(ProofKind::parse("call_records"), None);
        for (tier, r) in LADDER {
            assert!(!r.is_empty());
            assert_eq!(rungs(tier), r);
            assert!(why(tier, "en").is_ascii());
            assert!(!why(tier, "zh-CN").is_ascii());
        }
    }

    #[test]
    fn agents_checks_against_the_tiers() {
        use IdentityCheck::*;
        // tier, check, suffices.
        let table = [
            (RiskTier::Low, DocumentsReviewed, true),
            (RiskTier::Medium, VideoCallFaceMatch, true),
            (RiskTier::High, DocumentsReviewed, false),
            (RiskTier::High, VideoCallFaceMatch, false),
            (RiskTier::High, CallbackToContactOnFile, true),
            (RiskTier::High, OriginalIdInPerson, true),
            (RiskTier::Extreme, CallbackToContactOnFile, false),
            (RiskTier::Extreme, DocumentsReviewed, false),
            (RiskTier::Extreme, OriginalIdInPerson, true),
        ];
        for (tier, check, ok) in table {
            assert_eq!(
                agent_check_suffices(tier, &[], check),
                ok,
                "{tier:?} {check:?}"
            );
        }
        assert_eq!(online_kind("otp"), Some(Otp));
        assert_eq!(online_kind("service_password"), Some(ServicePassword));
        assert_eq!(online_kind("call_records"), None);
        assert_eq!(
            parse_given(&["otp", "nonsense", "in_person_id"]),
            vec![Otp, InPersonId]
        );
        assert_eq!(
            rung_names(&outstanding(RiskTier::High, &[Otp])),
            vec![
                vec!["service_password"],
                vec!["cs_callback", "in_person_id"]
            ]
        );
    }
}
