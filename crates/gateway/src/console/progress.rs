//! The case page's per-department progress and the subscriber's expedite request.

use case_domain::{Locale, route::Step};
use case_store::expedite::ExpediteRow;

use super::{i18n::Ui, iso, show_time};

/// One department stage of the case's route, as the case page shows it.
#[derive(Debug)]
pub(super) struct DepartmentRow {
    pub state: String,
    pub state_label: String,
    pub department_label: String,
    pub checks: String,
    pub status: String,
    pub status_label: String,
    /// "4h 0m (SLA)", "3m (recent cases)".
    pub typical: Option<String>,
}

/// The route's rows in the console's language.
pub(super) fn rows(ui: Ui, steps: &[Step]) -> Vec<DepartmentRow> {
    let locale = if ui.tag() == "en" {
        Locale::En
    } else {
        Locale::ZhCn
    };
    steps
        .iter()
        .map(|s| DepartmentRow {
            state: s.state.as_str().into(),
            state_label: ui.code("state", s.state.as_str()),
            department_label: s
                .department
                .map(|d| ui.code("dept", d.as_str()))
                .unwrap_or_default(),
            checks: case_domain::route::stage_of(s.state)
                .map(|st| st.checks(locale).to_owned())
                .unwrap_or_default(),
            status: s.status.as_str().into(),
            status_label: ui.code("route", s.status.as_str()),
            typical: s.typical.map(|(d, source)| {
                format!(
                    "{} ({})",
                    ui.duration(d.num_seconds()),
                    ui.code("route.source", source.as_str())
                )
            }),
        })
        .collect()
}

/// The subscriber's expedite request, as the case page shows it.
#[derive(Debug)]
pub(super) struct ExpediteShown {
    pub reason: String,
    pub state_label: String,
    pub at: String,
    pub at_text: String,
}

impl ExpediteShown {
    pub(super) fn new(ui: Ui, row: ExpediteRow) -> Self {
        Self {
            reason: row.reason,
            state_label: ui.code("state", row.state.as_str()),
            at: iso(row.requested_at),
            at_text: show_time(row.requested_at),
        }
    }
}
