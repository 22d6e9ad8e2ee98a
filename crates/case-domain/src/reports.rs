//! The supervisors' reports and exports (issue 15 item 4): which reports exist, and
//! the date range every one of them covers, as pure rules.
//!
//! A range is two calendar days, both included, in China Standard Time (UTC+08:00,
//! no daylight saving): the carrier's business day, whatever the reader's time zone.
//! It spans at most [`MAX_RANGE_DAYS`] days, so one request never reads more than a
//! year of history.

use chrono::{DateTime, FixedOffset, NaiveDate, Offset, TimeZone, Utc};

/// The longest range a report or an export covers, in days (both ends included).
pub const MAX_RANGE_DAYS: i64 = 366;

/// The time zone the days of a range are in: China Standard Time, UTC+08:00.
pub const RANGE_UTC_OFFSET_SECS: i32 = 8 * 3600;

/// The offset as written in answers.
pub const RANGE_UTC_OFFSET: &str = "+08:00";

/// A report for supervisors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportKind {
    /// Cases opened in the range, per channel and outcome.
    Cases,
    /// Time spent per stage (p50, p90) and how often the stage's SLA was met.
    Stages,
    /// Decisions per team (the role acted in) and agent, with the median decision time.
    Agents,
    /// Complaints made in the range, per channel, with their answer times.
    Complaints,
    /// Cases flagged per reason code, and how many were approved after review.
    FalsePositives,
    /// Expedite requests made in the range, per state asked in.
    Expedite,
}

impl ReportKind {
    /// Every report, in the order pages list them.
    pub const ALL: [ReportKind; 6] = [
        Self::Cases,
        Self::Stages,
        Self::Agents,
        Self::Complaints,
        Self::FalsePositives,
        Self::Expedite,
    ];

    /// The name in URLs (`/v1/agent/reports/{name}`) and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cases => "cases",
            Self::Stages => "stages",
            Self::Agents => "agents",
            Self::Complaints => "complaints",
            // `false-positives` is the older, all-time report's route.
            Self::FalsePositives => "false-positive-reasons",
            Self::Expedite => "expedite-requests",
        }
    }

    /// A report by its URL name (exactly).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Why a range was refused: the parameter at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeError {
    /// `from` or `to`.
    pub field: &'static str,
    /// What is wrong, for the caller.
    pub message: String,
}

/// Calendar days `from..=to` in China Standard Time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    from: NaiveDate,
    to: NaiveDate,
}

fn day(field: &'static str, raw: Option<&str>) -> Result<NaiveDate, RangeError> {
    let raw = raw
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or(RangeError {
            field,
            message: "is required: a date as YYYY-MM-DD".into(),
        })?;
    // Exactly YYYY-MM-DD: chrono alone would take "2026-1-5" or a sign.
    let shaped = raw.len() == 10
        && raw.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    shaped
        .then(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok())
        .flatten()
        .ok_or(RangeError {
            field,
            message: "must be a date as YYYY-MM-DD".into(),
        })
}

impl DateRange {
    /// The range of the `from` and `to` parameters (both required, `from` ≤ `to`, at
    /// most [`MAX_RANGE_DAYS`] days). Every problem found is returned.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Self, Vec<RangeError>> {
        match (day("from", from), day("to", to)) {
            (Ok(from), Ok(to)) => Self::new(from, to).map_err(|e| vec![e]),
            (a, b) => Err([a.err(), b.err()].into_iter().flatten().collect()),
        }
    }

    /// The range `from..=to`, checked.
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Self, RangeError> {
        if from > to {
            return Err(RangeError {
                field: "to",
                message: "must not be before from".into(),
            });
        }
        let days = (to - from).num_days() + 1;
        if days > MAX_RANGE_DAYS {
            return Err(RangeError {
                field: "to",
                message: format!(
                    "the range spans {days} days; at most {MAX_RANGE_DAYS} are allowed"
                ),
            });
        }
        Ok(Self { from, to })
    }

    /// The first day.
    pub fn from(self) -> NaiveDate {
        self.from
    }

    /// The last day (included).
    pub fn to(self) -> NaiveDate {
        self.to
    }

    /// How many days it spans.
    pub fn days(self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    /// The first instant of the range (midnight at the start of `from`, UTC+08:00).
    pub fn start(self) -> DateTime<Utc> {
        midnight(self.from)
    }

    /// The first instant after the range (midnight at the end of `to`, UTC+08:00).
    pub fn end(self) -> DateTime<Utc> {
        midnight(self.to.succ_opt().unwrap_or(self.to))
    }

    /// The day (China Standard Time) an instant falls on.
    pub fn day_of(at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&zone()).date_naive()
    }
}

fn zone() -> FixedOffset {
    // 8 hours is within ±24 h: the constructor cannot fail; UTC is the fallback anyway.
    FixedOffset::east_opt(RANGE_UTC_OFFSET_SECS).unwrap_or_else(|| Utc.fix())
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    let naive = day.and_time(chrono::NaiveTime::MIN);
    zone()
        .from_local_datetime(&naive)
        .single()
        .map_or_else(|| naive.and_utc(), |t| t.with_timezone(&Utc))
}

/// A CSV cell that a spreadsheet would run as a formula (it starts with `=`, `+`,
/// `-`, `@`, a tab or a carriage return) gets a leading apostrophe, so it shows as
/// text. Any cell of an export may come from a person (a reason, a username).
pub fn defuse_formula(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{value}"))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn a_range_is_whole_days_of_china_standard_time() {
        let r = DateRange::parse(Some("2026-12-01"), Some("2026-12-03")).unwrap();
        assert_eq!(r.days(), 3);
        assert_eq!(r.start().to_rfc3339(), "2026-11-30T16:00:00+00:00");
        assert_eq!(r.end().to_rfc3339(), "2026-12-03T16:00:00+00:00");
        let one = DateRange::parse(Some("2026-12-01"), Some("2026-12-01")).unwrap();
        assert_eq!(one.days(), 1);
        assert_eq!((one.end() - one.start()).num_hours(), 24);
        // 23:59 UTC on the 1st is the 2nd in Beijing.
        let late = "2026-12-01T23:59:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(DateRange::day_of(late), d("2026-12-02"));
        let full = DateRange::parse(Some("2024-01-01"), Some("2024-12-31")).unwrap();
        assert_eq!(full.days(), MAX_RANGE_DAYS);
    }

    #[test]
    fn bad_ranges_name_the_parameter() {
        let cases: [(Option<&str>, Option<&str>, &[&str]); 10] = [
            (None, Some("2026-12-01"), &["from"]),
            (Some("2026-12-01"), None, &["to"]),
            (None, None, &["from", "to"]),
            (Some("2026-12-1"), Some("2026-12-01"), &["from"]),
            (Some("yesterday"), Some("2026-12-01"), &["from"]),
            (Some("2026-02-30"), Some("2026-03-01"), &["from"]),
            (Some("2026-12-01"), Some("+2026-12-0"), &["to"]),
            (Some("2026-12-02"), Some("2026-12-01"), &["to"]),
            (Some("2025-01-01"), Some("2026-01-02"), &["to"]),
            (Some("2026-12-01T00:00"), Some("2026-12-02"), &["from"]),
        ];
        for (from, to, fields) in cases {
            let errors = DateRange::parse(from, to).unwrap_err();
            let got: Vec<&str> = errors.iter().map(|e| e.field).collect();
            assert_eq!(got, fields, "{from:?} {to:?}");
        }
    }

    #[test]
    fn reports_round_trip_by_name() {
        for k in ReportKind::ALL {
            assert_eq!(ReportKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ReportKind::parse("false-positives"), None);
        assert_eq!(ReportKind::parse("Cases"), None);
    }

    #[test]
    fn formulas_are_defused() {
        for (raw, shown) in [
            ("=1+1", "'=1+1"),
            ("+86", "'+86"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("plain", "plain"),
            ("", ""),
            ("a=b", "a=b"),
        ] {
            assert_eq!(defuse_formula(raw), shown);
        }
    }
}
