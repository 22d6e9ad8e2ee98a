//! What the subscriber is told, and when: which transitions are worth a message,
//! and the message texts (zh-CN and English) for transitions, reminders and
//! carrier suspension notices.
//!
//! Messages name the number only masked (`+86*******8001`, in Chinese `尾号8001`),
//! never the name or the ID number, and contain no six-digit runs (those are
//! one-time codes). Times are shown in Beijing time (UTC+8).
//!
//! Every text fits one billed SMS segment where the content allows ([`crate::sms`]:
//! 70 characters once any Chinese character is in it, 160 GSM-7 characters in
//! English): a quoted reason or question that would not fit is left to the case
//! page (the headline says so), and the complaint hint is added only where it fits.
//! A unit test measures every template in both languages with worst-case values.

use chrono::{DateTime, FixedOffset, Utc};

use crate::{
    CaseEvent, CaseState, Msisdn,
    risk::{Need, ReasonCode},
    sms,
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
        | CustomerResponded | RiskFlagged | RiskRefused | StoreVisitRequired
        | StoreVisitVerified | Approved | PartlyApproved | Rejected | Appealed | Restored
        | PartlyRestored | ProvisioningFailed | ResolvedManually | Superseded | Cancelled
        | Expired | Closed => true,
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
        (Need::IdentityProof, false) => "prove it is you (code or service password)",
        (Need::IdentityProof, true) => "用验证码或服务密码验证身份",
        (Need::Explanation, false) => "explain the flagged use",
        (Need::Explanation, true) => "说明被标记的通信",
        (Need::Evidence, false) => "upload documents",
        (Need::Evidence, true) => "上传证明材料",
        (Need::StoreVisit, false) => "visit a store with your original ID card",
        (Need::StoreVisit, true) => "携带身份证原件前往营业厅",
        (Need::Information, false) => "answer the agent on your case page",
        (Need::Information, true) => "在申请页面回复工作人员",
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
        Some(format!("请{}。", items.join("；")))
    } else {
        Some(format!("To do: {}.", items.join("; ")))
    }
}

fn complaint_line(locale: &str) -> &'static str {
    if zh(locale) {
        "如有异议可在申请页投诉。"
    } else {
        "Disagree? Complain on your case page (answer in 15 days)."
    }
}

/// A time in Beijing time without the year (`12-02 18:30`), for the short Chinese texts.
fn beijing_short(at: DateTime<Utc>) -> String {
    let offset = FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    at.with_timezone(&offset).format("%m-%d %H:%M").to_string()
}

fn deadline_line(deadline: DateTime<Utc>, locale: &str) -> String {
    if zh(locale) {
        format!(
            "请于北京时间{}前处理，逾期申请将失效。",
            beijing_short(deadline)
        )
    } else {
        format!(
            "Act by {} Beijing time or it lapses.",
            beijing_short(deadline)
        )
    }
}

fn eta_line(eta: DateTime<Utc>, locale: &str) -> String {
    if zh(locale) {
        format!("预计北京时间{}前完成。", beijing_short(eta))
    } else {
        format!("ETA {} Beijing time.", beijing_short(eta))
    }
}

/// The number as messages name it: masked (`+86*******8001`; in Chinese `尾号8001`,
/// the usual form of carrier texts).
fn prefix(msisdn: &Msisdn, locale: &str) -> String {
    let masked = msisdn.masked();
    if zh(locale) {
        let tail = &masked[masked.len().saturating_sub(4)..];
        format!("【复机服务】尾号{tail}：")
    } else {
        format!("Reactivation {masked}: ")
    }
}

/// The parts of a message; [`assemble`] makes them fit one SMS segment where the
/// content allows.
struct Parts {
    /// The headline with what it quotes (an agent's words, the risk reasons).
    full: String,
    /// The headline pointing to the case page instead of quoting, if it quotes.
    short: Option<String>,
    /// What follows (needs, deadline, ETA), always sent.
    tail: Vec<String>,
    /// Sent only when the message still fits one segment with it.
    optional: Option<String>,
}

/// Joins the parts: the quote is kept only when the whole fits one segment (else
/// the headline points to the case page, where everything is shown), and the
/// optional line only when it still fits.
fn assemble(prefix: &str, p: Parts, locale: &str) -> String {
    let sep = if zh(locale) { "" } else { " " };
    let join = |head: &str, optional: Option<&str>| {
        let mut parts: Vec<&str> = vec![head];
        parts.extend(p.tail.iter().map(String::as_str));
        parts.extend(optional);
        format!("{prefix}{}", parts.join(sep))
    };
    let head = match &p.short {
        Some(short) if !sms::fits_one(&join(&p.full, None)) => short.as_str(),
        _ => p.full.as_str(),
    };
    let with_optional = join(head, p.optional.as_deref());
    if p.optional.is_some() && sms::fits_one(&with_optional) {
        with_optional
    } else {
        join(head, None)
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

/// The headline: (with what it quotes, pointing to the case page instead).
fn headline(n: &TransitionNotice<'_>, locale: &str) -> (String, Option<String>) {
    use CaseEvent::*;
    let z = zh(locale);
    let reason = n.reason.map(clip).unwrap_or_default();
    let risk = |field: fn(&crate::risk::ReasonText) -> &'static str| -> String {
        n.risk_reasons
            .iter()
            .map(|r| field(&r.text(locale)))
            .collect::<Vec<_>>()
            .join(if z { "" } else { " " })
    };
    let fixed = |text: &str| (text.to_owned(), None);
    let quoted = |full: String, short: &str| (full, Some(short.to_owned()));
    match (n.event, z) {
        (Opened, false) => fixed("we received your request to restore the number."),
        (Opened, true) => fixed("我们已收到您的复机申请。"),
        (ProofsAccepted, false) => {
            fixed("your identity is confirmed; we are checking the number's recent use.")
        }
        (ProofsAccepted, true) => fixed("身份已核验，正在检查号码近期使用情况。"),
        (IdentityEscalated, false) => fixed("a customer-service agent will check your identity."),
        (IdentityEscalated, true) => fixed("将由客服人员人工核验您的身份。"),
        (IdentityVerified, false) => {
            fixed("an agent confirmed your identity; we are checking the number's recent use.")
        }
        (IdentityVerified, true) => fixed("客服已确认您的身份，正在检查号码近期使用情况。"),
        (InfoRequested, false) => quoted(
            format!("we need more information: {reason}"),
            "we need more information; see the request on your case page.",
        ),
        (InfoRequested, true) => quoted(
            format!("需要您补充信息：{reason}"),
            "需要您补充信息，详见申请页面。",
        ),
        (CustomerResponded, false) => fixed("we received your answer; the review continues."),
        (CustomerResponded, true) => fixed("我们已收到您的回复，审核继续进行。"),
        (RiskFlagged, false) => quoted(
            format!(
                "a security analyst will review the number's recent use. Why: {} What to do: {}",
                risk(|t| t.why),
                risk(|t| t.remedy)
            ),
            "security review; why: see your case page.",
        ),
        (RiskFlagged, true) => quoted(
            format!(
                "安全人员将审核号码近期使用情况。原因：{}处理方式：{}",
                risk(|t| t.why),
                risk(|t| t.remedy)
            ),
            "转安全人员审核，原因见申请页面。",
        ),
        (StoreVisitRequired, false) if n.risk_reasons.is_empty() => {
            fixed("the number can only be restored after a visit to a store.")
        }
        (StoreVisitRequired, false) => quoted(
            format!(
                "the number can only be restored after a visit to a store. Why: {}",
                risk(|t| t.why)
            ),
            "the number can only be restored after a visit to a store; why is on your case page.",
        ),
        (StoreVisitRequired, true) if n.risk_reasons.is_empty() => {
            fixed("该号码需到营业厅办理复机。")
        }
        (StoreVisitRequired, true) => quoted(
            format!("该号码需到营业厅办理复机。原因：{}", risk(|t| t.why)),
            "该号码需到营业厅办理复机，原因见申请页面。",
        ),
        (StoreVisitVerified, false) => {
            fixed("the store confirmed your identity; we are checking the number's recent use.")
        }
        (StoreVisitVerified, true) => fixed("营业厅已核验您的身份，正在检查号码近期使用情况。"),
        (RiskRefused, false) => quoted(
            format!(
                "the number cannot be restored online. Why: {} What to do: {}",
                risk(|t| t.why),
                risk(|t| t.remedy)
            ),
            "the number cannot be restored online; why and what to do are on your case page.",
        ),
        (RiskRefused, true) => quoted(
            format!(
                "该号码无法在线复机。原因：{}处理方式：{}",
                risk(|t| t.why),
                risk(|t| t.remedy)
            ),
            "该号码无法在线复机，原因及处理方式见申请页面。",
        ),
        (Approved, false) => fixed("your request was approved; service is being restored."),
        (Approved, true) => fixed("您的申请已通过，正在恢复服务。"),
        (PartlyApproved, false) => fixed(
            "your request was partly approved: incoming calls and SMS first, the rest after a further review.",
        ),
        (PartlyApproved, true) => {
            fixed("您的申请已部分通过：先恢复来电和短信接收，其余服务待进一步审核。")
        }
        (Rejected, false) => quoted(
            format!("your request was refused. {reason}"),
            "your request was refused; the reason and how to appeal are on your case page.",
        ),
        (Rejected, true) => quoted(
            format!("您的申请未通过。{reason}"),
            "您的申请未通过，原因及申诉方式见申请页面。",
        ),
        (Appealed, false) => fixed("appeal received; another analyst will review it."),
        (Appealed, true) => fixed("已收到您的申诉，将由其他人员复核。"),
        (Restored | ResolvedManually, false) => fixed("your number works again."),
        (Restored | ResolvedManually, true) => fixed("您的号码已恢复正常使用。"),
        (PartlyRestored, false) => fixed("inbound calls and SMS work; the rest after review."),
        (PartlyRestored, true) => fixed("已恢复来电和短信接收，其余服务待审核。"),
        (ProvisioningFailed, false) => {
            fixed("restoring the number takes longer than expected; our technical team is on it.")
        }
        (ProvisioningFailed, true) => fixed("号码恢复耗时超出预期，技术人员正在处理。"),
        (Superseded, false) => fixed(
            "another request for this number proved the subscriber's identity; this one is closed. Not yours? Nothing to do.",
        ),
        (Superseded, true) => fixed(
            "本号码的另一份复机申请已通过身份验证，本申请已关闭。如非您本人提交，无需任何操作。",
        ),
        (Cancelled, false) => fixed("your request was withdrawn."),
        (Cancelled, true) => fixed("您的复机申请已撤销。"),
        (Expired, false) => fixed(
            "your request expired because we did not hear from you in time. You can open a new request at any time.",
        ),
        (Expired, true) => {
            fixed("由于未在规定时间内收到您的回复，申请已过期。您可随时重新提交申请。")
        }
        (Closed, false) => {
            fixed("your case is closed. Need more help? Open a new request or visit a store.")
        }
        (Closed, true) => fixed("您的申请已结案。如仍需帮助，可重新提交申请或前往营业厅办理。"),
        (RiskCleared | ProvisioningRetried, false) => fixed("your case moved on."),
        (RiskCleared | ProvisioningRetried, true) => fixed("您的申请已进入下一步。"),
    }
}

/// The message for a transition, in `locale` (zh-CN, else English): one SMS
/// segment where the content allows (see [`assemble`]).
pub fn transition_message(n: &TransitionNotice<'_>, locale: &str) -> String {
    let (full, short) = headline(n, locale);
    let mut tail = Vec::new();
    // An information request says what is needed in its headline already.
    let needs: Vec<Need> = n
        .needs
        .iter()
        .copied()
        .filter(|need| !(n.event == CaseEvent::InfoRequested && *need == Need::Information))
        .collect();
    if !n.state.is_terminal()
        && let Some(line) = needs_line(&needs, locale)
    {
        tail.push(line);
    }
    if let Some(deadline) = n.deadline {
        tail.push(deadline_line(deadline, locale));
    }
    if let Some(eta) = n.eta {
        tail.push(eta_line(eta, locale));
    }
    // The complaint path where the subscriber may disagree with how the case ended.
    let optional = (n.state.is_terminal() || n.state == CaseState::Rejected)
        .then(|| complaint_line(locale).to_owned());
    assemble(
        &prefix(n.msisdn, locale),
        Parts {
            full,
            short,
            tail,
            optional,
        },
        locale,
    )
}

/// A reminder while the case waits on the subscriber.
pub fn reminder_message(
    msisdn: &Msisdn,
    needs: &[Need],
    deadline: Option<DateTime<Utc>>,
    locale: &str,
) -> String {
    let z = zh(locale);
    let head = if z {
        "提醒：申请待您处理。"
    } else {
        "reminder: your request waits."
    };
    let mut tail: Vec<String> = needs_line(needs, locale).into_iter().collect();
    if let Some(deadline) = deadline {
        tail.push(deadline_line(deadline, locale));
    }
    assemble(
        &prefix(msisdn, locale),
        Parts {
            full: head.into(),
            short: None,
            tail,
            optional: None,
        },
        locale,
    )
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

/// The message to a subscriber whose number the carrier just suspended: where to
/// start (`start_url`), and why and what to do when that still fits one segment
/// (the start page says both).
pub fn suspension_message(msisdn: &Msisdn, reason: &str, start_url: &str, locale: &str) -> String {
    let (why, what) = suspension_text(reason, locale);
    let masked = msisdn.masked();
    let (full, short, start) = if zh(locale) {
        let tail = &masked[masked.len().saturating_sub(4)..];
        (
            format!("【复机服务】尾号{tail}号码已保护性停机。原因：{why}处理方式：{what}办理："),
            format!("【复机服务】尾号{tail}号码已保护性停机，原因及办理见："),
            start_url.to_owned(),
        )
    } else {
        (
            format!(
                "Reactivation: your number {masked} was suspended for your protection. Why: {why} What to do: {what}"
            ),
            format!(
                "Reactivation: your number {masked} was suspended for your protection; why and what to do are on the page."
            ),
            format!("Start: {start_url}"),
        )
    };
    let sep = if zh(locale) { "" } else { " " };
    let with_why = format!("{full}{sep}{start}");
    if sms::fits_one(&with_why) {
        with_why
    } else {
        format!("{short}{sep}{start}")
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
            (StoreVisitRequired, true),
            (StoreVisitVerified, true),
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
    fn every_message_is_masked_and_localised() {
        let m = number();
        let eta = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000);
        for t in crate::TRANSITIONS {
            for locale in ["zh-CN", "en"] {
                let mut n = notice(t.event, t.to, &m, &[Need::Information]);
                n.eta = Some(eta);
                n.reason = Some("Please send a photo of your work contract.");
                n.risk_reasons = &[ReasonCode::BulkSms];
                let text = transition_message(&n, locale);
                assert!(!text.contains("13812348001"), "{text}");
                assert!(no_six_digit_run(&text), "{text}");
                if locale == "zh-CN" {
                    assert!(text.starts_with("【复机服务】尾号8001："), "{text}");
                    assert!(text.contains("北京时间"), "{text}");
                } else {
                    assert!(text.starts_with("Reactivation +86*******8001: "), "{text}");
                    assert!(text.is_ascii(), "{text}");
                }
            }
        }
    }

    /// Realistic worst cases: the longest needs of each state, the longest risk
    /// reasons, an ETA and a deadline where the state has them, a typical agent
    /// question and the longest standard refusal text.
    fn worst_cases<'a>(m: &'a Msisdn, locale: &str) -> Vec<TransitionNotice<'a>> {
        let at = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_790);
        let rejection = crate::decision::RejectionCode::EvidenceNotVerifiable.text(locale);
        let question = if zh(locale) {
            "请上传您的工作证明。"
        } else {
            "Who is the contact you called most?"
        };
        crate::TRANSITIONS
            .iter()
            .filter(|t| notifies_subscriber(t.event))
            .map(|t| {
                let needs: &'static [Need] = match t.to {
                    CaseState::AwaitingIdentity => &[Need::IdentityProof],
                    CaseState::AwaitingCustomerIdentity | CaseState::AwaitingCustomerSecurity => {
                        &[Need::Information]
                    }
                    CaseState::SecurityReview | CaseState::PartiallyReactivated => {
                        &[Need::Explanation, Need::Evidence, Need::SecurityReview]
                    }
                    CaseState::Rejected => &[Need::StoreVisit],
                    _ => &[],
                };
                let department =
                    t.to.department()
                        .is_some_and(|d| d != crate::Department::Subscriber);
                TransitionNotice {
                    event: t.event,
                    state: t.to,
                    msisdn: m,
                    needs,
                    eta: department.then_some(at),
                    deadline: crate::sla::EXPIRING_STATES.contains(&t.to).then_some(at),
                    reason: match t.event {
                        CaseEvent::Rejected => Some(rejection),
                        CaseEvent::InfoRequested => Some(question),
                        _ => None,
                    },
                    risk_reasons: &[ReasonCode::FraudLinkedContacts, ReasonCode::BulkSms],
                }
            })
            .collect()
    }

    #[test]
    fn every_template_fits_one_sms_segment_in_every_locale() {
        let m = Msisdn::parse("+8619912349999").unwrap();
        let at = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_790);
        let mut texts: Vec<String> = Vec::new();
        for locale in ["zh-CN", "en"] {
            texts.extend(
                worst_cases(&m, locale)
                    .iter()
                    .map(|n| transition_message(n, locale)),
            );
            for needs in [
                &[Need::IdentityProof][..],
                &[Need::Information],
                &[Need::Explanation, Need::Evidence],
            ] {
                texts.push(reminder_message(&m, needs, Some(at), locale));
            }
            for reason in [
                "fraud_linked_contacts",
                "bulk_sms",
                "international_calls",
                "police_request",
                "real_name_reverification",
                "long_inactivity",
                "something_new",
            ] {
                texts.push(suspension_message(
                    &m,
                    reason,
                    "https://reactivation.example.cn/start",
                    locale,
                ));
            }
        }
        let long: Vec<(usize, &String)> = texts
            .iter()
            .map(|t| (sms::segments(t), t))
            .filter(|(n, _)| *n > 1)
            .collect();
        assert!(long.is_empty(), "more than one segment: {long:#?}");
        // The short texts still carry their quote when it fits.
        let zh = worst_cases(&m, "zh-CN");
        let info = zh
            .iter()
            .find(|n| n.event == CaseEvent::InfoRequested)
            .unwrap();
        assert!(transition_message(info, "zh-CN").contains("请上传您的工作证明。"));
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
        // Too long to quote in one English segment: the case page has it.
        let reason = crate::decision::RejectionCode::FraudConfirmed.text("en");
        n.reason = Some(reason);
        let text = transition_message(&n, "en");
        assert!(
            text.contains("refused") && text.contains("case page") && !text.contains(reason),
            "{text}"
        );
        assert!(sms::fits_one(&text), "{text}");

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
        assert!(text.contains("01-02 00:00 Beijing time"), "{text}");
        // A long question is not quoted: the case page shows it.
        let long = "x".repeat(3000);
        n.reason = Some(&long);
        let text = transition_message(&n, "en");
        assert!(text.contains("case page") && sms::fits_one(&text), "{text}");
    }

    #[test]
    fn risk_messages_say_why_where_it_fits_and_what_to_do() {
        let m = number();
        let mut n = notice(
            CaseEvent::RiskFlagged,
            CaseState::SecurityReview,
            &m,
            &[Need::Explanation, Need::SecurityReview],
        );
        n.risk_reasons = &[ReasonCode::FraudLinkedContacts, ReasonCode::BulkSms];
        // The reasons do not fit one segment with what to do: the case page says why.
        let text = transition_message(&n, "zh-CN");
        assert!(text.contains("原因见申请页面"), "{text}");
        assert!(text.contains("说明被标记的通信"), "{text}");
        assert!(sms::fits_one(&text), "{text}");
        // In English a short reason fits: it is quoted.
        n.risk_reasons = &[ReasonCode::InternationalCalls];
        n.needs = &[];
        let text = transition_message(&n, "en");
        let t = ReasonCode::InternationalCalls.text("en");
        assert!(text.contains(t.why) || text.contains("case page"), "{text}");
        assert!(sms::fits_one(&text), "{text}");
        // Security review is not the subscriber's to do.
        assert_eq!(needs_line(&[Need::SecurityReview], "en"), None);
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
        assert!(transition_message(&n, "en").contains("ETA 12-02 18:30 Beijing time."));
        assert!(transition_message(&n, "zh-CN").contains("预计北京时间12-02 18:30前完成。"));
    }

    #[test]
    fn the_complaint_path_is_named_where_a_case_ends_and_it_fits() {
        let m = number();
        for locale in ["zh-CN", "en"] {
            let n = notice(CaseEvent::Closed, CaseState::Closed, &m, &[]);
            let text = transition_message(&n, locale);
            assert!(text.contains("投诉") || text.contains("Complain"), "{text}");
            let n = notice(CaseEvent::Approved, CaseState::Provisioning, &m, &[]);
            let text = transition_message(&n, locale);
            assert!(
                !text.contains("投诉") && !text.contains("Complain"),
                "{text}"
            );
        }
    }

    #[test]
    fn reminders_and_suspension_notices() {
        let m = number();
        let deadline = DateTime::<Utc>::UNIX_EPOCH + Duration::days(7);
        let text = reminder_message(&m, &[Need::IdentityProof], Some(deadline), "zh-CN");
        assert!(text.contains("提醒") && text.contains("验证码"), "{text}");
        let text = reminder_message(&m, &[Need::Information], Some(deadline), "en");
        assert!(
            text.starts_with("Reactivation +86*******8001: reminder"),
            "{text}"
        );

        for (reason, expect_en) in [
            ("fraud_linked_contacts", "suspended for your protection"),
            ("police_request", "suspended for your protection"),
            ("long_inactivity", "suspended for your protection"),
            ("something_new", "suspended for your protection"),
        ] {
            let en = suspension_message(&m, reason, "https://example.cn/start", "en");
            assert!(en.contains(expect_en), "{en}");
            assert!(en.contains("https://example.cn/start") && en.contains("+86*******8001"));
            assert!(no_six_digit_run(&en), "{en}");
            assert!(sms::fits_one(&en), "{en}");
            let zh = suspension_message(&m, reason, "https://example.cn/start", "zh-CN");
            assert!(zh.contains("保护性停机") && zh.contains("原因"), "{zh}");
            assert!(zh.contains("尾号8001") && sms::fits_one(&zh), "{zh}");
        }
    }
}
