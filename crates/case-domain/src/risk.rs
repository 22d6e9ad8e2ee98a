//! The graded risk policy: explainable rules over the carrier's signals, a tier,
//! customer-safe reason codes (with remedy and documents, in zh-CN and en) and what
//! the tier requires of the case (graded re-verification, as the anti-fraud law asks).

use serde::{Deserialize, Serialize};

pub use crate::risk_rules::RiskThresholds;

/// The carrier's traffic signals for a number (counts only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskSignals {
    /// Recent counterparties linked to reported fraud.
    pub fraud_linked_contacts: u32,
    /// Peak SMS sent in one hour recently.
    pub sms_peak_per_hour: u32,
    /// International calls in the last 24 hours.
    pub intl_calls_24h: u32,
    /// The carrier's suspension reason code, if any.
    pub suspension_reason: Option<String>,
}

/// Risk tiers, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[cfg_attr(
    feature = "sqlx",
    sqlx(type_name = "risk_tier", rename_all = "snake_case")
)]
pub enum RiskTier {
    /// Nothing suspicious: restore without review.
    Low,
    /// Explain the flagged traffic; a security analyst reviews.
    Medium,
    /// Explain and prove with documents; a security analyst reviews.
    High,
    /// No online reactivation: visit a store with the ID card.
    Extreme,
}

impl RiskTier {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Extreme => "extreme",
        }
    }

    /// What a case of this tier requires, in the order the subscriber sees it.
    pub fn needs(self) -> &'static [Need] {
        match self {
            Self::Low => &[],
            Self::Medium => &[Need::Explanation, Need::SecurityReview],
            Self::High => &[Need::Explanation, Need::Evidence, Need::SecurityReview],
            Self::Extreme => &[Need::StoreVisit],
        }
    }
}

/// Something a case needs before it can go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Need {
    /// Prove identity (one-time code or service password; call records go to an agent).
    IdentityProof,
    /// Explain the flagged contacts and traffic.
    Explanation,
    /// Upload supporting documents (contract, work e-mail, chat screenshot).
    Evidence,
    /// A security analyst decides.
    SecurityReview,
    /// Visit a store with the original ID card.
    StoreVisit,
    /// Answer the agent's information request.
    Information,
}

impl Need {
    /// The snake_case name used in the API's `needs`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IdentityProof => "identity_proof",
            Self::Explanation => "explanation",
            Self::Evidence => "evidence",
            Self::SecurityReview => "security_review",
            Self::StoreVisit => "store_visit",
            Self::Information => "information",
        }
    }

    /// Every need.
    pub const ALL: [Need; 6] = [
        Self::IdentityProof,
        Self::Explanation,
        Self::Evidence,
        Self::SecurityReview,
        Self::StoreVisit,
        Self::Information,
    ];

    /// Parses the snake_case name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.as_str() == name)
    }
}

/// A customer-safe reason a rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Contact with numbers reported for fraud.
    FraudLinkedContacts,
    /// Bursts of outgoing SMS.
    BulkSms,
    /// Many international calls.
    InternationalCalls,
    /// The carrier suspended the number on confirmed fraud or an authority's request.
    ConfirmedFraud,
}

/// A reason code's texts for one language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasonText {
    /// Why, in plain words.
    pub why: &'static str,
    /// What the subscriber can do.
    pub remedy: &'static str,
    /// Documents that help.
    pub documents: &'static str,
}

impl ReasonCode {
    /// Every reason code.
    pub const ALL: [ReasonCode; 4] = [
        Self::FraudLinkedContacts,
        Self::BulkSms,
        Self::InternationalCalls,
        Self::ConfirmedFraud,
    ];

    /// The snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FraudLinkedContacts => "fraud_linked_contacts",
            Self::BulkSms => "bulk_sms",
            Self::InternationalCalls => "international_calls",
            Self::ConfirmedFraud => "confirmed_fraud",
        }
    }

    /// Parses the snake_case code.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == code)
    }

    /// The texts in `locale` (`zh-CN`; anything else gets English).
    pub fn text(self, locale: &str) -> ReasonText {
        let zh = locale == "zh-CN";
        match (self, zh) {
            (Self::FraudLinkedContacts, false) => ReasonText {
                why: "Your number was recently in contact with numbers reported for fraud.",
                remedy: "Tell us who these contacts are and why you were in touch.",
                documents: "An explanation for each flagged contact; if you have them, messages or contracts that show the relationship.",
            },
            (Self::FraudLinkedContacts, true) => ReasonText {
                why: "您的号码近期与涉诈号码有过联系。",
                remedy: "请说明这些联系人是谁以及联系的原因。",
                documents: "每个被标记联系人的说明；如有，可提供能证明关系的聊天记录或合同。",
            },
            (Self::BulkSms, false) => ReasonText {
                why: "Your number sent an unusually large number of text messages in a short time.",
                remedy: "Explain what the messages were for.",
                documents: "For business use: a work certificate or the customer list's purpose; otherwise a short statement.",
            },
            (Self::BulkSms, true) => ReasonText {
                why: "您的号码在短时间内发送了异常大量的短信。",
                remedy: "请说明这些短信的用途。",
                documents: "如为工作用途，请提供工作证明；否则请提供简短说明。",
            },
            (Self::InternationalCalls, false) => ReasonText {
                why: "Your number made many international calls in the last day.",
                remedy: "Explain who you called abroad and why.",
                documents: "Travel, work or family documents that explain the calls.",
            },
            (Self::InternationalCalls, true) => ReasonText {
                why: "您的号码在过去一天内拨打了大量国际电话。",
                remedy: "请说明您在境外联系的对象及原因。",
                documents: "能说明通话原因的出行、工作或亲属证明材料。",
            },
            (Self::ConfirmedFraud, false) => ReasonText {
                why: "Your number was suspended on confirmed fraud or at an authority's request.",
                remedy: "Online reactivation is not possible. Visit a store of your carrier with your original ID card.",
                documents: "Your original resident ID card.",
            },
            (Self::ConfirmedFraud, true) => ReasonText {
                why: "您的号码因确认涉诈或应有关部门要求被停机。",
                remedy: "无法在线复机，请携带本人身份证原件前往营业厅办理。",
                documents: "本人身份证原件。",
            },
        }
    }
}

/// The outcome of grading a number: the tier, the reasons and what the case needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The tier.
    pub tier: RiskTier,
    /// The rules that fired, most serious first.
    pub reasons: Vec<ReasonCode>,
}

impl Assessment {
    /// What the tier requires.
    pub fn needs(&self) -> &'static [Need] {
        self.tier.needs()
    }
}

/// Carrier suspension reasons that rule out online reactivation.
const CONFIRMED_FRAUD_REASONS: &[&str] = &["confirmed_fraud", "police_request", "court_order"];

/// Grades a number under the rules' first version ([`RiskThresholds::default`]).
pub fn assess(signals: &RiskSignals) -> Assessment {
    assess_with(signals, &RiskThresholds::default())
}

/// Grades a number under `thresholds`. Each rule names its reason code and the tier
/// it calls for; the case's tier is the highest of them, and
/// `thresholds.highs_for_extreme` reasons at high together (or a confirmed-fraud
/// suspension) make it extreme.
pub fn assess_with(signals: &RiskSignals, thresholds: &RiskThresholds) -> Assessment {
    let mut fired: Vec<(RiskTier, ReasonCode)> = Vec::new();
    if signals
        .suspension_reason
        .as_deref()
        .is_some_and(|r| CONFIRMED_FRAUD_REASONS.contains(&r))
    {
        fired.push((RiskTier::Extreme, ReasonCode::ConfirmedFraud));
    }
    let graded = [
        (
            signals.fraud_linked_contacts,
            thresholds.fraud_linked_contacts,
            ReasonCode::FraudLinkedContacts,
        ),
        (
            signals.sms_peak_per_hour,
            thresholds.bulk_sms,
            ReasonCode::BulkSms,
        ),
        (
            signals.intl_calls_24h,
            thresholds.international_calls,
            ReasonCode::InternationalCalls,
        ),
    ];
    for (value, rule, code) in graded {
        if let Some(t) = rule.grade(value) {
            fired.push((t, code));
        }
    }
    fired.sort_by_key(|f| std::cmp::Reverse(f.0));
    let highs = fired.iter().filter(|(t, _)| *t == RiskTier::High).count();
    let tier = if highs >= thresholds.highs_for_extreme as usize {
        RiskTier::Extreme
    } else {
        fired.first().map_or(RiskTier::Low, |(t, _)| *t)
    };
    Assessment {
        tier,
        reasons: fired.into_iter().map(|(_, r)| r).collect(),
    }
}

/// The signals an assessment was graded on, as recorded with it
/// (`risk_assessments.signals`): the counts, the suspension reason, the flagged
/// counterparties the subscriber is asked to explain (third-party personal data:
/// only their number is shown by `Debug`) and, for a re-score, where the signals came from.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedSignals {
    /// Recent counterparties linked to reported fraud.
    pub fraud_linked_contacts: u32,
    /// Peak SMS sent in one hour recently.
    pub sms_peak_per_hour: u32,
    /// International calls in the last 24 hours.
    pub intl_calls_24h: u32,
    /// The carrier's suspension reason code, if any.
    pub suspension_reason: Option<String>,
    /// The flagged counterparties, as the carrier gave them (assessments recorded
    /// before the numbers were kept hold a count here: no numbers).
    #[serde(default, deserialize_with = "numbers_or_count")]
    pub flagged_contacts: Vec<String>,
    /// `carrier_webhook` when the signals came with a `subscriber.signals` webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The flagged contacts as recorded: a list of numbers, or (in assessments recorded
/// before the numbers were kept) their count, which names no number.
fn numbers_or_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flagged {
        Numbers(Vec<String>),
        Count(#[expect(dead_code, reason = "a count names no number")] u32),
    }
    Ok(match Flagged::deserialize(d)? {
        Flagged::Numbers(numbers) => numbers,
        Flagged::Count(_) => Vec::new(),
    })
}

impl RecordedSignals {
    /// Records `signals` with the flagged counterparties and their source.
    pub fn new(signals: &RiskSignals, flagged_contacts: Vec<String>, source: Option<&str>) -> Self {
        Self {
            fraud_linked_contacts: signals.fraud_linked_contacts,
            sms_peak_per_hour: signals.sms_peak_per_hour,
            intl_calls_24h: signals.intl_calls_24h,
            suspension_reason: signals.suspension_reason.clone(),
            flagged_contacts,
            source: source.map(str::to_owned),
        }
    }

    /// The graded part.
    pub fn signals(&self) -> RiskSignals {
        RiskSignals {
            fraud_linked_contacts: self.fraud_linked_contacts,
            sms_peak_per_hour: self.sms_peak_per_hour,
            intl_calls_24h: self.intl_calls_24h,
            suspension_reason: self.suspension_reason.clone(),
        }
    }
}

impl std::fmt::Debug for RecordedSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordedSignals")
            .field("fraud_linked_contacts", &self.fraud_linked_contacts)
            .field("sms_peak_per_hour", &self.sms_peak_per_hour)
            .field("intl_calls_24h", &self.intl_calls_24h)
            .field("suspension_reason", &self.suspension_reason)
            .field("flagged_contacts", &self.flagged_contacts.len())
            .field("source", &self.source)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn signals(fraud: u32, sms: u32, intl: u32, reason: Option<&str>) -> RiskSignals {
        RiskSignals {
            fraud_linked_contacts: fraud,
            sms_peak_per_hour: sms,
            intl_calls_24h: intl,
            suspension_reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn the_rules_table() {
        use ReasonCode::*;
        use RiskTier::*;
        let cases: &[(RiskSignals, RiskTier, &[ReasonCode])] = &[
            (signals(0, 0, 0, None), Low, &[]),
            (signals(0, 99, 9, Some("unusual_activity")), Low, &[]),
            (signals(1, 0, 0, None), Medium, &[FraudLinkedContacts]),
            (
                signals(2, 300, 15, Some("fraud_linked_contacts")),
                Medium,
                &[FraudLinkedContacts, BulkSms, InternationalCalls],
            ),
            (signals(3, 0, 0, None), High, &[FraudLinkedContacts]),
            (
                signals(0, 500, 10, None),
                High,
                &[BulkSms, InternationalCalls],
            ),
            (
                signals(3, 500, 50, None),
                Extreme,
                &[FraudLinkedContacts, BulkSms, InternationalCalls],
            ),
            (
                signals(0, 0, 0, Some("police_request")),
                Extreme,
                &[ConfirmedFraud],
            ),
        ];
        for (s, tier, reasons) in cases {
            let a = assess(s);
            assert_eq!((a.tier, a.reasons.as_slice()), (*tier, *reasons), "{s:?}");
        }
    }

    #[test]
    fn each_tier_names_what_it_needs() {
        assert!(RiskTier::Low.needs().is_empty());
        assert_eq!(
            RiskTier::Medium.needs(),
            &[Need::Explanation, Need::SecurityReview]
        );
        assert_eq!(
            RiskTier::High.needs(),
            &[Need::Explanation, Need::Evidence, Need::SecurityReview]
        );
        assert_eq!(RiskTier::Extreme.needs(), &[Need::StoreVisit]);
    }

    #[test]
    fn every_reason_has_texts_in_both_languages() {
        for r in ReasonCode::ALL {
            assert_eq!(ReasonCode::parse(r.as_str()), Some(r));
            let (en, zh) = (r.text("en"), r.text("zh-CN"));
            assert!(!en.why.is_empty() && !en.remedy.is_empty() && !en.documents.is_empty());
            assert_ne!(en.why, zh.why);
            assert!(!zh.why.is_ascii());
        }
    }

    proptest! {
        #[test]
        fn more_suspicious_traffic_never_lowers_the_tier(
            f in 0u32..10, s in 0u32..1000, i in 0u32..100, df in 0u32..5, ds in 0u32..500, di in 0u32..50,
        ) {
            let before = assess(&signals(f, s, i, None)).tier;
            let after = assess(&signals(f + df, s + ds, i + di, None)).tier;
            prop_assert!(after >= before);
        }

        #[test]
        fn the_low_tier_has_no_reasons_and_others_have_some(f in 0u32..10, s in 0u32..1000, i in 0u32..100) {
            let a = assess(&signals(f, s, i, None));
            prop_assert_eq!(a.tier == RiskTier::Low, a.reasons.is_empty());
        }
    }

    #[test]
    fn recorded_signals_keep_the_stored_json_shape() {
        let stored = serde_json::json!({
            "fraud_linked_contacts": 2, "sms_peak_per_hour": 300, "intl_calls_24h": 15,
            "suspension_reason": null, "flagged_contacts": ["+8613900000001"],
        });
        let r: RecordedSignals = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(r.flagged_contacts, ["+8613900000001"]);
        assert_eq!(r.source, None);
        assert_eq!(serde_json::to_value(&r).unwrap(), stored);
        assert_eq!(r.signals(), signals(2, 300, 15, None));
        assert!(!format!("{r:?}").contains("13900000001"));

        let rescored = RecordedSignals::new(
            &signals(0, 1, 2, Some("x")),
            vec![],
            Some("carrier_webhook"),
        );
        let json = serde_json::to_value(&rescored).unwrap();
        assert_eq!(json["source"], "carrier_webhook");
        assert_eq!(
            serde_json::from_value::<RecordedSignals>(json).unwrap(),
            rescored
        );

        // Written before flagged contacts were recorded: none.
        let old = serde_json::json!({"fraud_linked_contacts": 0, "sms_peak_per_hour": 0,
            "intl_calls_24h": 0, "suspension_reason": "police_request"});
        assert!(
            serde_json::from_value::<RecordedSignals>(old)
                .unwrap()
                .flagged_contacts
                .is_empty()
        );
        // Recorded before the numbers were kept: a count, naming no number.
        let counted = serde_json::json!({"fraud_linked_contacts": 2, "sms_peak_per_hour": 0,
            "intl_calls_24h": 0, "suspension_reason": null, "flagged_contacts": 2});
        assert!(
            serde_json::from_value::<RecordedSignals>(counted)
                .unwrap()
                .flagged_contacts
                .is_empty()
        );
        // A count that is not a count is refused, not defaulted.
        let bad = serde_json::json!({"fraud_linked_contacts": "many", "sms_peak_per_hour": 0,
            "intl_calls_24h": 0, "suspension_reason": null});
        assert!(serde_json::from_value::<RecordedSignals>(bad).is_err());
    }
}
