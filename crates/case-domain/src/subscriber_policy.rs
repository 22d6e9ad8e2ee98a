//! The subscriber's side of a case as policy: where a request may come from, which
//! languages are spoken, why a cancellation is refused, and the stable code of each
//! appeal refusal.

use crate::{CaseState, Channel, Locale, material::AppealRefusal};

/// The channel when none is given.
pub const DEFAULT_CHANNEL: Channel = Channel::Web;
/// The language when none is given.
pub const DEFAULT_LOCALE: Locale = Locale::ZhCn;

/// Why the subscriber may not cancel a case the transition table refused to cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CancelRefusal {
    /// The carrier is already changing the number.
    #[error("Provisioning has started; the case can no longer be cancelled.")]
    ProvisioningStarted,
    /// The case is finished.
    #[error("The case is finished and cannot be cancelled.")]
    Finished,
}

impl CancelRefusal {
    /// Stable machine-readable reason.
    pub fn code(self) -> &'static str {
        match self {
            Self::ProvisioningStarted => "provisioning_started",
            Self::Finished => "case_finished",
        }
    }
}

/// The reason to give for a refused cancellation of a case in `state`.
pub fn cancel_refusal(state: CaseState) -> CancelRefusal {
    if matches!(
        state,
        CaseState::Provisioning | CaseState::ProvisioningFailed | CaseState::PartiallyReactivated
    ) {
        CancelRefusal::ProvisioningStarted
    } else {
        CancelRefusal::Finished
    }
}

/// The stable machine-readable code of an appeal refusal.
pub fn appeal_refusal_code(refusal: &AppealRefusal) -> &'static str {
    match refusal {
        AppealRefusal::AlreadyAppealed => "already_appealed",
        AppealRefusal::NotRejected(_) => "not_rejected",
        AppealRefusal::StoreVisitRequired => "store_visit_required",
        AppealRefusal::WindowPassed { .. } => "appeal_window_passed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_and_locales_are_a_closed_list() {
        for c in ["web", "app", "hotline", "store"] {
            assert!(Channel::parse(c).is_ok(), "{c}");
        }
        assert!(Channel::parse("fax").is_err());
        assert!(Channel::parse("Web").is_err());
        assert_eq!(DEFAULT_CHANNEL.as_str(), "web");
        assert!(Locale::parse("zh-CN").is_ok() && Locale::parse("en").is_ok());
        assert!(Locale::parse("fr").is_err());
        assert_eq!(DEFAULT_LOCALE.as_str(), "zh-CN");
    }

    #[test]
    fn a_cancellation_is_refused_for_provisioning_or_for_a_finished_case() {
        for s in [
            CaseState::Provisioning,
            CaseState::ProvisioningFailed,
            CaseState::PartiallyReactivated,
        ] {
            assert_eq!(cancel_refusal(s), CancelRefusal::ProvisioningStarted);
        }
        assert_eq!(cancel_refusal(CaseState::Rejected), CancelRefusal::Finished);
        assert_eq!(CancelRefusal::Finished.code(), "case_finished");
        assert_eq!(
            CancelRefusal::Finished.to_string(),
            "The case is finished and cannot be cancelled."
        );
    }

    #[test]
    fn every_appeal_refusal_has_its_code() {
        assert_eq!(
            appeal_refusal_code(&AppealRefusal::AlreadyAppealed),
            "already_appealed"
        );
        assert_eq!(
            appeal_refusal_code(&AppealRefusal::NotRejected(CaseState::Closed)),
            "not_rejected"
        );
        assert_eq!(
            appeal_refusal_code(&AppealRefusal::StoreVisitRequired),
            "store_visit_required"
        );
    }
}
