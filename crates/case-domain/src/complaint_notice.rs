//! What the subscriber is told about a complaint: that it was answered (with the
//! answer, clipped), and that it went unanswered past its clock. Once the carrier's
//! 15 days have passed without an answer, every complaint message names the
//! regulator's complaint centre (12300, 工信部电信用户申诉受理中心) as the next avenue.
//! The number is always masked; the texts fit one SMS segment where the content
//! allows (the answer itself is clipped to [`ANSWER_CLIP_CHARS`]).

use crate::Msisdn;

/// The most characters of an agent's answer an SMS repeats (the whole answer stays
/// on the case page).
pub const ANSWER_CLIP_CHARS: usize = 60;

fn zh(locale: &str) -> bool {
    locale == "zh-CN"
}

fn clip(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= ANSWER_CLIP_CHARS {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(ANSWER_CLIP_CHARS).collect();
        s.push('…');
        s
    }
}

/// The message telling the subscriber their complaint was answered. `late`: the
/// answer came after the complaint's due time, so the regulator is named too.
pub fn answered_message(msisdn: &Msisdn, answer: &str, late: bool, locale: &str) -> String {
    let answer = clip(answer);
    if zh(locale) {
        let mut s = format!("【复机服务】号码{}：投诉答复：{answer}", msisdn.masked());
        if late {
            s.push_str("如不满意可拨12300向工信部申诉。");
        }
        s
    } else {
        let mut s = format!(
            "[Reactivation] Number {}: answer to your complaint: {answer}",
            msisdn.masked()
        );
        if late {
            s.push_str(" Not satisfied? Call the regulator, 12300 (MIIT).");
        }
        s
    }
}

/// The message telling the subscriber their complaint has had no answer within the
/// carrier's time: it is escalated, and the regulator (12300) is the next avenue.
pub fn overdue_message(msisdn: &Msisdn, locale: &str) -> String {
    if zh(locale) {
        format!(
            "【复机服务】号码{}：您的投诉15天内未获答复，已升级督办。您可拨12300向工信部申诉。",
            msisdn.masked()
        )
    } else {
        format!(
            "[Reactivation] Number {}: your complaint had no answer within 15 days and was escalated. You may now complain to the regulator, 12300 (MIIT).",
            msisdn.masked()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number() -> Msisdn {
        Msisdn::parse("+8613800138001").unwrap()
    }

    #[test]
    fn the_regulator_is_named_once_the_clock_ran_out() {
        for locale in ["zh-CN", "en"] {
            let on_time = answered_message(&number(), "We restored it.", false, locale);
            let late = answered_message(&number(), "We restored it.", true, locale);
            let overdue = overdue_message(&number(), locale);
            assert!(!on_time.contains("12300"), "{on_time}");
            assert!(late.contains("12300"), "{late}");
            assert!(overdue.contains("12300"), "{overdue}");
            for text in [&on_time, &late, &overdue] {
                assert!(!text.contains("13800138001"), "masked: {text}");
            }
            assert!(on_time.contains("We restored it."));
        }
    }

    #[test]
    fn long_answers_are_clipped_and_chinese_texts_fit_one_segment() {
        let long = "答".repeat(500);
        let text = answered_message(&number(), &long, false, "zh-CN");
        assert!(text.ends_with('…'), "{text}");
        assert!(text.chars().count() < 120);
        // One 70-character segment for the fixed texts.
        assert!(overdue_message(&number(), "zh-CN").chars().count() <= 70);
        assert!(
            answered_message(&number(), "已恢复。", true, "zh-CN")
                .chars()
                .count()
                <= 70
        );
    }
}
