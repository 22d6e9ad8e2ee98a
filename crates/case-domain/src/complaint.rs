//! Complaints to the carrier about a case, and their clock.
//!
//! Under 《电信用户申诉处理办法》 the regulator (12300) takes a complaint only when the
//! subscriber complained to the carrier first and was not satisfied, or got no answer
//! within 15 days. So a complaint carries its own clock: the carrier must answer by
//! [`due_at`]; after that, or once answered, the subscriber may go to the regulator.
//! While a case has an open complaint it is worked before other cases of its queue.

use std::fmt;

use chrono::{DateTime, Duration, Utc};

use crate::Role;

/// Days the carrier has to answer a complaint.
pub const ANSWER_DAYS: i64 = 15;
/// The longest complaint text, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// The longest answer, in characters.
pub const MAX_ANSWER_CHARS: usize = 4000;
/// At most this many unanswered complaints per case (more are refused until one is answered).
pub const MAX_OPEN_PER_CASE: i64 = 5;

/// Who logs complaints that reached the carrier by hotline, in a store, on social
/// media or as a 12300 referral.
pub const LOGGERS: &[Role] = &[Role::Cs, Role::Supervisor];

/// How long the carrier has to answer.
pub fn answer_window() -> Duration {
    Duration::days(ANSWER_DAYS)
}

/// When a complaint made at `opened_at` must be answered.
pub fn due_at(opened_at: DateTime<Utc>) -> DateTime<Utc> {
    opened_at + answer_window()
}

/// Where the subscriber complained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComplaintChannel {
    /// In a store, to a store agent (logged by an agent).
    Store,
    /// The carrier's web page.
    Web,
    /// The carrier's app.
    App,
    /// Social media.
    Social,
    /// Forwarded by the regulator.
    Regulator,
    /// The hotline.
    Hotline,
}

impl ComplaintChannel {
    /// Every channel.
    pub const ALL: [Self; 6] = [
        Self::Store,
        Self::Web,
        Self::App,
        Self::Social,
        Self::Regulator,
        Self::Hotline,
    ];

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Web => "web",
            Self::App => "app",
            Self::Social => "social",
            Self::Regulator => "regulator",
            Self::Hotline => "hotline",
        }
    }

    /// Parses the API name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The channels an agent logs a complaint from (what reached the carrier other
    /// than through the subscriber's own case page).
    pub const AGENT_LOGGED: [Self; 4] = [Self::Hotline, Self::Store, Self::Social, Self::Regulator];

    /// The channels the subscriber's own API takes (`store` is an agent's channel).
    pub const SUBSCRIBER: [Self; 5] = [
        Self::Web,
        Self::App,
        Self::Social,
        Self::Regulator,
        Self::Hotline,
    ];

    /// Whether a complaint from this channel must name the sender's reference (a
    /// 12300 referral always carries the regulator's work-order number).
    pub fn needs_reference(self) -> bool {
        self == Self::Regulator
    }
}

/// The longest reference of a logged complaint (the regulator's work-order number, a
/// social-media post id, a hotline ticket), in characters.
pub const MAX_REFERENCE_CHARS: usize = 100;

/// Checks the reference of an agent-logged complaint from `channel`: trimmed,
/// 1 to [`MAX_REFERENCE_CHARS`] printable characters, required for a 12300 referral.
pub fn check_reference(
    channel: ComplaintChannel,
    reference: Option<&str>,
) -> Result<Option<&str>, &'static str> {
    match reference.map(str::trim).filter(|r| !r.is_empty()) {
        None if channel.needs_reference() => {
            Err("a 12300 referral needs reference: the regulator's work-order number")
        }
        None => Ok(None),
        Some(r) if r.chars().count() > MAX_REFERENCE_CHARS => {
            Err("reference must be at most 100 characters")
        }
        Some(r) if r.chars().any(char::is_control) => {
            Err("reference must not contain control characters")
        }
        Some(r) => Ok(Some(r)),
    }
}

impl fmt::Display for ComplaintChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a complaint still waits for the carrier's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComplaintStatus {
    /// Not answered yet: the clock runs.
    Open,
    /// Answered by an agent: closed.
    Answered,
}

impl ComplaintStatus {
    /// Every status.
    pub const ALL: [Self; 2] = [Self::Open, Self::Answered];

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Answered => "answered",
        }
    }

    /// Parses the API name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for ComplaintStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an open complaint has passed its due time at `now`.
pub fn overdue(status: ComplaintStatus, due_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    status == ComplaintStatus::Open && now >= due_at
}

/// Whether the subscriber may take the complaint to the regulator at `now`: once the
/// carrier answered (and the subscriber is not satisfied) or once the answer is overdue.
pub fn may_go_to_regulator(
    status: ComplaintStatus,
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> bool {
    status == ComplaintStatus::Answered || overdue(status, due_at, now)
}

/// A case's queue priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// An unanswered complaint: worked first. (Ordered before `Normal`.)
    Complaint,
    /// The subscriber asked for expedited handling: after complaints, before the rest.
    Expedited,
    /// Nothing special.
    Normal,
}

impl Priority {
    /// The priority of a case with `open_complaints` unanswered complaints.
    pub fn of(open_complaints: i64) -> Self {
        if open_complaints > 0 {
            Self::Complaint
        } else {
            Self::Normal
        }
    }

    /// The priority of a case with `open_complaints` unanswered complaints that
    /// did or did not ask for expedited handling.
    pub fn for_case(open_complaints: i64, expedited: bool) -> Self {
        match Self::of(open_complaints) {
            Self::Normal if expedited => Self::Expedited,
            p => p,
        }
    }

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complaint => "complaint",
            Self::Expedited => "expedited",
            Self::Normal => "normal",
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, day, 8, 0, 0).unwrap()
    }

    #[test]
    fn the_carrier_has_fifteen_days() {
        assert_eq!(due_at(t(1)), t(16));
        assert_eq!(answer_window(), Duration::days(15));
    }

    #[test]
    fn channels_and_statuses_round_trip_and_refuse_others() {
        for c in ComplaintChannel::ALL {
            assert_eq!(ComplaintChannel::parse(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
        }
        for s in ComplaintStatus::ALL {
            assert_eq!(ComplaintStatus::parse(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        for bad in ["", "WEB", "email", " web", "closed", "weibo"] {
            assert_eq!(ComplaintChannel::parse(bad), None, "{bad:?}");
        }
        assert_eq!(ComplaintStatus::parse("closed"), None);
    }

    #[test]
    fn agents_log_from_four_channels_and_a_referral_names_its_reference() {
        use ComplaintChannel::*;
        assert_eq!(
            ComplaintChannel::AGENT_LOGGED,
            [Hotline, Store, Social, Regulator]
        );
        assert!(!ComplaintChannel::SUBSCRIBER.contains(&Store));
        type Row<'a> = (
            ComplaintChannel,
            Option<&'a str>,
            Result<Option<&'a str>, ()>,
        );
        let table: &[Row] = &[
            (Regulator, Some("GX-2026-001"), Ok(Some("GX-2026-001"))),
            (Regulator, Some("  GX-1 "), Ok(Some("GX-1"))),
            (Regulator, None, Err(())),
            (Regulator, Some("   "), Err(())),
            (Hotline, None, Ok(None)),
            (Social, Some("weibo:4891"), Ok(Some("weibo:4891"))),
            (Store, Some("a\u{0}b"), Err(())),
        ];
        for (channel, reference, want) in table {
            let got = check_reference(*channel, *reference).map_err(|_| ());
            assert_eq!(&got, want, "{channel} {reference:?}");
        }
        let long = "x".repeat(MAX_REFERENCE_CHARS + 1);
        assert!(check_reference(Hotline, Some(&long)).is_err());
        assert!(check_reference(Hotline, Some(&long[1..])).is_ok());
    }

    #[test]
    fn overdue_only_while_open_and_from_the_due_time() {
        let due = due_at(t(1));
        assert!(!overdue(ComplaintStatus::Open, due, t(15)));
        assert!(overdue(ComplaintStatus::Open, due, due));
        assert!(overdue(ComplaintStatus::Open, due, t(20)));
        assert!(!overdue(ComplaintStatus::Answered, due, t(20)));
    }

    #[test]
    fn the_regulator_is_open_after_an_answer_or_after_the_due_time() {
        let due = due_at(t(1));
        assert!(!may_go_to_regulator(ComplaintStatus::Open, due, t(2)));
        assert!(may_go_to_regulator(ComplaintStatus::Open, due, t(16)));
        assert!(may_go_to_regulator(ComplaintStatus::Answered, due, t(2)));
    }

    #[test]
    fn an_open_complaint_raises_the_priority() {
        assert_eq!(Priority::of(0), Priority::Normal);
        assert_eq!(Priority::of(1), Priority::Complaint);
        assert_eq!(Priority::of(7), Priority::Complaint);
        assert!(
            Priority::Complaint < Priority::Normal,
            "complaints sort first"
        );
        assert_eq!(Priority::Complaint.as_str(), "complaint");
        assert_eq!(Priority::Normal.as_str(), "normal");
        // Expedited handling: after complaints, before the rest.
        let table = [
            (0, false, Priority::Normal),
            (0, true, Priority::Expedited),
            (1, false, Priority::Complaint),
            (2, true, Priority::Complaint),
        ];
        for (complaints, expedited, expected) in table {
            assert_eq!(Priority::for_case(complaints, expedited), expected);
        }
        assert!(
            Priority::Complaint < Priority::Expedited && Priority::Expedited < Priority::Normal
        );
        assert_eq!(Priority::Expedited.as_str(), "expedited");
    }
}
