//! What the subscriber is told, and when: which transitions are worth a message,
//! and the message texts (zh-CN and English) for transitions, reminders and
//! carrier suspension notices.
//!
//! Messages name the number only masked (`+86*******8001`), never the name or the
//! ID number, and contain no six-digit runs (those are one-time codes). Times are
//! shown in Beijing time (UTC+8).

use chrono::{DateTime, FixedOffset, Utc};

use crate::{
    CaseEvent, CaseState, Msisdn,
    risk::{Need, ReasonCode},
};

/// The longest agent-written reason quoted in a message, in characters.
pub const MAX_QUOTED_REASON: usize = 500;

/// Whether a transition by `event` is worth a message to the subscriber.
///
/// Not worth one: `risk_cleared` (the case moves straight on to provisioning and
/// the next message follows within seconds) and `provisioning_retried` (internal).
pub fn notifies_subscriber(event: CaseEvent) -> bool {
    use CaseEvent::*;
    match event {
        Opened | ProofsAccepted | IdentityEscalated | IdentityVerified | InfoRequested
        | CustomerResponded | RiskFlagged | RiskRefused | Approved | PartlyApproved | Rejected
        | Appealed | Restored | PartlyRestored | ProvisioningFailed | ResolvedManually
        | Superseded | Cancelled | Expired | Closed => true,
        RiskCleared | ProvisioningRetried => false,
    }
}

fn zh(locale: &str) -> bool {
    locale == "zh-CN"
}

/// A time in Beijing time, to the minute: `2026-12-02 18:30`.
pub fn beijing_time(at: DateTime<Utc>) -> String {
    let offset = FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    at.with_timezone(&offset)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

fn clip(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= MAX_QUOTED_REASON {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(MAX_QUOTED_REASON).collect();
        s.push('…');
        s
    }
}

fn need_text(need: Need, locale: &str) -> Option<&'static str> {
    let text = match (need, zh(locale)) {
        (Need::IdentityProof, false) => {
            "prove your identity with a one-time code or your service password"
        }
        (Need::IdentityProof, true) => "通过验证码或服务密码证明您的身份",
        (Need::Explanation, false) => "explain the flagged contacts and traffic",
        (Need::Explanation, true) => "说明被标记的联系人和通信情况",
        (Need::Evidence, false) => "upload supporting documents",
        (Need::Evidence, true) => "上传证明材料",
        (Need::StoreVisit, false) => "visit a store of your carrier with your original ID card",
        (Need::StoreVisit, true) => "携带本人身份证原件前往营业厅",
        (Need::Information, false) => "answer the agent's request on your case page",
        (Need::Information, true) => "在复机申请页面回复工作人员的要求",
        // Not the subscriber's to do.
        (Need::SecurityReview, _) => return None,
    };
    Some(text)
}

fn needs_line(needs: &[Need], locale: &str) -> Option<String> {
    let items: Vec<&str> = needs.iter().filter_map(|n| need_text(*n, locale)).collect();
    if items.is_empty() {
        None
    } else if zh(locale) {
        Some(format!("需要您：{}。", items.join("；")))
    } else {
        Some(format!("What you need to do: {}.", items.join("; ")))
    }
}

fn complaint_line(locale: &str) -> &'static str {
    if zh(locale) {
        "如有不满，可在App或网页的复机申请页面提交投诉，我们将在15天内答复。"
    } else {
        "Not satisfied? Send a complaint from your case page in the app or on the web; we answer within 15 days."
    }
}

fn prefix(msisdn: &Msisdn, locale: &str) -> String {
    if zh(locale) {
        format!("【复机服务】号码{}：", msisdn.masked())
    } else {
        format!("[Reactivation] Number {}: ", msisdn.masked())
    }
}

/// What a transition message says.
#[derive(Debug, Clone)]
pub struct TransitionNotice<'a> {
    /// The event.
    pub event: CaseEvent,
    /// The state it led to.
    pub state: CaseState,
    /// The case's number (shown masked).
    pub msisdn: &'a Msisdn,
    /// What the case needs from the subscriber now.
    pub needs: &'a [Need],
    /// Expected completion, when a department has the case.
    pub eta: Option<DateTime<Utc>>,
    /// When the case lapses unless the subscriber acts (while it waits on them).
    pub deadline: Option<DateTime<Utc>>,
    /// The event's customer-safe reason (quoted for refusals and information requests).
    pub reason: Option<&'a str>,
    /// The risk grading's reasons (for `risk_flagged` and `risk_refused`).
    pub risk_reasons: &'a [ReasonCode],
}

fn headline(n: &TransitionNotice<'_>, locale: &str) -> String {
    use CaseEvent::*;
    let z = zh(locale);
    let reason = n.reason.map(clip).unwrap_or_default();
    let risk = |field: fn(&crate::risk::ReasonText) -> &'static str| -> String {
        n.risk_reasons
            .iter()
            .map(|r| field(&r.text(locale)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match (n.event, z) {
        (Opened, false) => "we received your request to restore the number.".into(),
        (Opened, true) => "我们已收到您的复机申请。".into(),
        (ProofsAccepted, false) => {
            "your identity is confirmed; we are checking the number's recent use.".into()
        }
        (ProofsAccepted, true) => "身份已核验，正在检查号码近期使用情况。".into(),
        (IdentityEscalated, false) => "a customer-service agent will check your identity.".into(),
        (IdentityEscalated, true) => "将由客服人员人工核验您的身份。".into(),
        (IdentityVerified, false) => {
            "an agent confirmed your identity; we are checking the number's recent use.".into()
        }
        (IdentityVerified, true) => "客服已确认您的身份，正在检查号码近期使用情况。".into(),
        (InfoRequested, false) => format!("we need more information from you: {reason}"),
        (InfoRequested, true) => format!("需要您补充信息：{reason}"),
        (CustomerResponded, false) => "we received your answer; the review continues.".into(),
        (CustomerResponded, true) => "我们已收到您的回复，审核继续进行。".into(),
        (RiskFlagged, false) => format!(
            "a security analyst will review the number's recent use. Why: {} What to do: {}",
            risk(|t| t.why),
            risk(|t| t.remedy)
        ),
        (RiskFlagged, true) => format!(
            "安全人员将审核号码的近期使用情况。原因：{}处理方式：{}",
            risk(|t| t.why),
            risk(|t| t.remedy)
        ),
        (RiskRefused, false) => format!(
            "the number cannot be restored online. Why: {} What to do: {}",
            risk(|t| t.why),
            risk(|t| t.remedy)
        ),
        (RiskRefused, true) => format!(
            "该号码无法在线复机。原因：{}处理方式：{}",
            risk(|t| t.why),
            risk(|t| t.remedy)
        ),
        (Approved, false) => "your request was approved; service is being restored.".into(),
        (Approved, true) => "您的申请已通过，正在恢复服务。".into(),
        (PartlyApproved, false) => "your request was partly approved: incoming calls and SMS are restored first, full service after a further review.".into(),
        (PartlyApproved, true) => "您的申请已部分通过：先恢复来电和短信接收，其余服务待进一步审核。".into(),
        (Rejected, false) => format!("your request was refused. {reason}"),
        (Rejected, true) => format!("您的申请未通过。{reason}"),
        (Appealed, false) => {
            "we received your appeal; a different analyst will review the case.".into()
        }
        (Appealed, true) => "我们已收到您的申诉，将由另一位审核人员复核。".into(),
        (Restored | ResolvedManually, false) => "your number works again.".into(),
        (Restored | ResolvedManually, true) => "您的号码已恢复正常使用。".into(),
        (PartlyRestored, false) => "incoming calls and SMS work again; outgoing service stays barred until the review ends.".into(),
        (PartlyRestored, true) => "已恢复来电和短信接收；呼出等服务待审核结束后恢复。".into(),
        (ProvisioningFailed, false) => "restoring the number takes longer than expected; our technical team is on it.".into(),
        (ProvisioningFailed, true) => "号码恢复耗时超出预期，技术人员正在处理。".into(),
        (Superseded, false) => "another request for this number proved the subscriber's identity, so this one is closed. If you did not make it, nothing more is needed.".into(),
        (Superseded, true) => "本号码的另一份复机申请已通过身份验证，本申请已关闭。如非您本人提交，无需任何操作。".into(),
        (Cancelled, false) => "your request was withdrawn.".into(),
        (Cancelled, true) => "您的复机申请已撤销。".into(),
        (Expired, false) => "your request expired because we did not hear from you in time. You can open a new request at any time.".into(),
        (Expired, true) => "由于未在规定时间内收到您的回复，申请已过期。您可随时重新提交申请。".into(),
        (Closed, false) => "your case is closed. If you still need help, open a new request or visit a store.".into(),
        (Closed, true) => "您的申请已结案。如仍需帮助，可重新提交申请或前往营业厅办理。".into(),
        (RiskCleared | ProvisioningRetried, false) => "your case moved on.".into(),
        (RiskCleared | ProvisioningRetried, true) => "您的申请已进入下一步。".into(),
    }
}

/// The message for a transition, in `locale` (zh-CN, else English).
pub fn transition_message(n: &TransitionNotice<'_>, locale: &str) -> String {
    let z = zh(locale);
    let mut parts = vec![format!(
        "{}{}",
        prefix(n.msisdn, locale),
        headline(n, locale)
    )];
    if !n.state.is_terminal()
        && let Some(line) = needs_line(n.needs, locale)
    {
        parts.push(line);
    }
    if let Some(deadline) = n.deadline {
        parts.push(if z {
            format!(
                "请在{}（北京时间）前处理，逾期申请将失效。",
                beijing_time(deadline)
            )
        } else {
            format!(
                "Please act by {} (Beijing time), or the request lapses.",
                beijing_time(deadline)
            )
        });
    }
    if let Some(eta) = n.eta {
        parts.push(if z {
            format!("预计完成时间：{}（北京时间）。", beijing_time(eta))
        } else {
            format!("Expected by {} (Beijing time).", beijing_time(eta))
        });
    }
    parts.push(complaint_line(locale).into());
    parts.join(if z { "" } else { " " })
}

/// A reminder while the case waits on the subscriber (the `ordinal`-th one).
pub fn reminder_message(
    msisdn: &Msisdn,
    needs: &[Need],
    deadline: Option<DateTime<Utc>>,
    locale: &str,
) -> String {
    let z = zh(locale);
    let mut parts = vec![format!(
        "{}{}",
        prefix(msisdn, locale),
        if z {
            "提醒：您的复机申请正在等待您处理。"
        } else {
            "reminder: your reactivation request is waiting for you."
        }
    )];
    if let Some(line) = needs_line(needs, locale) {
        parts.push(line);
    }
    if let Some(deadline) = deadline {
        parts.push(if z {
            format!(
                "请在{}（北京时间）前处理，逾期申请将失效。",
                beijing_time(deadline)
            )
        } else {
            format!(
                "Please act by {} (Beijing time), or the request lapses.",
                beijing_time(deadline)
            )
        });
    }
    parts.push(complaint_line(locale).into());
    parts.join(if z { "" } else { " " })
}

/// The carrier's suspension reasons, as the subscriber is told them: (why, what to do).
fn suspension_text(reason: &str, locale: &str) -> (String, String) {
    let z = zh(locale);
    let by_code = |code: ReasonCode| {
        let t = code.text(locale);
        (t.why.to_owned(), t.remedy.to_owned())
    };
    let (why, what): (&str, &str) = match (reason, z) {
        ("fraud_linked_contacts", _) => return by_code(ReasonCode::FraudLinkedContacts),
        ("bulk_sms", _) => return by_code(ReasonCode::BulkSms),
        ("international_calls", _) => return by_code(ReasonCode::InternationalCalls),
        ("confirmed_fraud" | "police_request" | "court_order", _) => {
            return by_code(ReasonCode::ConfirmedFraud);
        }
        ("real_name_reverification", false) => (
            "the law asks carriers to re-check the real name behind numbers that show unusual use.",
            "Confirm it is you online with a one-time code or your service password.",
        ),
        ("real_name_reverification", true) => (
            "根据反诈要求，需对出现异常使用情况的号码进行二次实名核验。",
            "请在线通过验证码或服务密码确认是您本人。",
        ),
        ("long_inactivity", false) => (
            "the number was not used for a long time.",
            "Confirm it is you online with a one-time code or your service password.",
        ),
        ("long_inactivity", true) => (
            "该号码长期未使用。",
            "请在线通过验证码或服务密码确认是您本人。",
        ),
        (_, false) => (
            "unusual use of the number was detected.",
            "Confirm it is you online; we may ask you to explain the flagged use.",
        ),
        (_, true) => (
            "检测到号码存在异常使用情况。",
            "请在线确认是您本人，我们可能会请您说明被标记的使用情况。",
        ),
    };
    (why.to_owned(), what.to_owned())
}

/// The message to a subscriber whose number the carrier just suspended: why, what
/// to do and where to start (`start_url`).
pub fn suspension_message(msisdn: &Msisdn, reason: &str, start_url: &str, locale: &str) -> String {
    let (why, what) = suspension_text(reason, locale);
    if zh(locale) {
        format!(
            "【复机服务】您的号码{}已被保护性停机。原因：{}处理方式：{}办理入口：{}（或运营商App）。如有疑问可投诉，我们将在15天内答复。",
            msisdn.masked(),
            why,
            what,
            start_url
        )
    } else {
        format!(
            "[Reactivation] Your number {} was suspended for your protection. Why: {} What to do: {} Start here: {} (or in your carrier's app). Questions or complaints: we answer within 15 days.",
            msisdn.masked(),
            why,
            what,
            start_url
        )
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn number() -> Msisdn {
        Msisdn::parse("+8613812348001").unwrap()
    }

    fn no_six_digit_run(text: &str) -> bool {
        text.split(|c: char| !c.is_ascii_digit())
            .all(|w| w.len() < 6)
    }

    #[test]
    fn which_transitions_message_the_subscriber() {
        use CaseEvent::*;
        let table: &[(CaseEvent, bool)] = &[
            (Opened, true),
            (ProofsAccepted, true),
            (IdentityEscalated, true),
            (IdentityVerified, true),
            (InfoRequested, true),
            (CustomerResponded, true),
            (RiskCleared, false),
            (RiskFlagged, true),
            (RiskRefused, true),
            (Approved, true),
            (PartlyApproved, true),
            (Rejected, true),
            (Appealed, true),
            (Restored, true),
            (PartlyRestored, true),
            (ProvisioningFailed, true),
            (ProvisioningRetried, false),
            (ResolvedManually, true),
            (Superseded, true),
            (Cancelled, true),
            (Expired, true),
            (Closed, true),
        ];
        assert_eq!(table.len(), CaseEvent::ALL.len());
        for (event, expected) in table {
            assert_eq!(notifies_subscriber(*event), *expected, "{event}");
        }
        // Every way into a terminal state is announced.
        for t in crate::TRANSITIONS.iter().filter(|t| t.to.is_terminal()) {
            assert!(notifies_subscriber(t.event), "{}", t.event);
        }
    }

    fn notice<'a>(
        event: CaseEvent,
        state: CaseState,
        msisdn: &'a Msisdn,
        needs: &'a [Need],
    ) -> TransitionNotice<'a> {
        TransitionNotice {
            event,
            state,
            msisdn,
            needs,
            eta: None,
            deadline: None,
            reason: None,
            risk_reasons: &[],
        }
    }

    #[test]
    fn every_message_is_masked_localised_and_mentions_the_complaint_path() {
        let m = number();
        let eta = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000);
        for t in crate::TRANSITIONS {
            for locale in ["zh-CN", "en"] {
                let mut n = notice(t.event, t.to, &m, &[Need::Information]);
                n.eta = Some(eta);
                n.reason = Some("Please send a photo of your work contract.");
                n.risk_reasons = &[ReasonCode::BulkSms];
                let text = transition_message(&n, locale);
                assert!(text.contains("+86*******8001"), "{text}");
                assert!(!text.contains("13812348001"), "{text}");
                assert!(no_six_digit_run(&text), "{text}");
                assert!(text.chars().count() < 2000);
                if locale == "zh-CN" {
                    assert!(text.contains("投诉"), "{text}");
                    assert!(text.contains("北京时间"), "{text}");
                } else {
                    assert!(text.contains("complaint"), "{text}");
                    assert!(text.is_ascii() || text.contains('…'), "{text}");
                }
            }
        }
    }

    #[test]
    fn refusals_quote_the_reason_and_information_requests_the_question() {
        let m = number();
        let reason = crate::decision::RejectionCode::FraudConfirmed.text("zh-CN");
        let mut n = notice(CaseEvent::Rejected, CaseState::Rejected, &m, &[]);
        n.reason = Some(reason);
        let text = transition_message(&n, "zh-CN");
        assert!(
            text.contains("您的申请未通过") && text.contains(reason),
            "{text}"
        );

        let mut n = notice(
            CaseEvent::InfoRequested,
            CaseState::AwaitingCustomerSecurity,
            &m,
            &[Need::Information],
        );
        n.reason = Some("Who is +86*******0002?");
        n.deadline = Some(DateTime::<Utc>::UNIX_EPOCH + Duration::hours(16));
        let text = transition_message(&n, "en");
        assert!(text.contains("Who is +86*******0002?"), "{text}");
        assert!(text.contains("answer the agent's request"), "{text}");
        assert!(text.contains("1970-01-02 00:00 (Beijing time)"), "{text}");
        // A long reason is clipped.
        let long = "x".repeat(3000);
        n.reason = Some(&long);
        assert!(transition_message(&n, "en").chars().count() < 1000);
    }

    #[test]
    fn risk_messages_say_why_and_what_to_do() {
        let m = number();
        let mut n = notice(
            CaseEvent::RiskFlagged,
            CaseState::SecurityReview,
            &m,
            &[Need::Explanation, Need::SecurityReview],
        );
        n.risk_reasons = &[ReasonCode::FraudLinkedContacts];
        let text = transition_message(&n, "zh-CN");
        let t = ReasonCode::FraudLinkedContacts.text("zh-CN");
        assert!(text.contains(t.why) && text.contains(t.remedy), "{text}");
        assert!(text.contains("说明被标记的联系人"), "{text}");
        // Security review is not the subscriber's to do.
        assert!(!text.contains("security"), "{text}");
    }

    #[test]
    fn the_eta_is_shown_in_beijing_time() {
        let at = DateTime::parse_from_rfc3339("2026-12-02T10:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(beijing_time(at), "2026-12-02 18:30");
        let m = number();
        let mut n = notice(
            CaseEvent::ProofsAccepted,
            CaseState::RiskAssessment,
            &m,
            &[],
        );
        n.eta = Some(at);
        assert!(
            transition_message(&n, "en").contains("Expected by 2026-12-02 18:30 (Beijing time).")
        );
        assert!(
            transition_message(&n, "zh-CN")
                .contains("预计完成时间：2026-12-02 18:30（北京时间）。")
        );
    }

    #[test]
    fn reminders_and_suspension_notices() {
        let m = number();
        let deadline = DateTime::<Utc>::UNIX_EPOCH + Duration::days(7);
        let text = reminder_message(&m, &[Need::IdentityProof], Some(deadline), "zh-CN");
        assert!(text.contains("提醒") && text.contains("验证码"), "{text}");
        let text = reminder_message(&m, &[Need::Information], Some(deadline), "en");
        assert!(
            text.starts_with("[Reactivation] Number +86*******8001: reminder"),
            "{text}"
        );

        for (reason, expect_en) in [
            ("fraud_linked_contacts", "reported for fraud"),
            ("police_request", "Visit a store"),
            ("real_name_reverification", "re-check the real name"),
            ("long_inactivity", "not used for a long time"),
            ("something_new", "unusual use"),
        ] {
            let en = suspension_message(&m, reason, "https://example.cn/start", "en");
            assert!(en.contains(expect_en), "{en}");
            assert!(en.contains("https://example.cn/start") && en.contains("+86*******8001"));
            assert!(no_six_digit_run(&en), "{en}");
            let zh = suspension_message(&m, reason, "https://example.cn/start", "zh-CN");
            assert!(zh.contains("保护性停机") && zh.contains("原因"), "{zh}");
        }
    }
}
