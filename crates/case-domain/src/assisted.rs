//! Agent-assisted channels: an agent looks a number up and opens a case on behalf of
//! the subscriber who called the hotline or walked into a store. What each role may do, how the agent says identity was checked, what
//! that check counts for, the lookup limit per agent and the text of the SMS that
//! carries the case token to the subscriber's contact on file.
//!
//! The opening itself is the subscriber's opening (same checks, same idempotency);
//! a check recorded by the agent never verifies identity alone on the hotline: the
//! caller still proves with a one-time code or the service password on the case. At a
//! store, the original ID card seen in person with the face compared (`in_person_id`)
//! is the strongest proof of the verification ladder: it satisfies every tier, once the
//! carrier confirms the name and ID given match the number's subscriber.

use chrono::Duration;

use crate::{Channel, Locale, Role};

/// Roles that may look a number up (its open and recent cases, masked).
pub const NUMBER_LOOKUP_ROLES: &[Role] = &[Role::Cs, Role::Store, Role::Supervisor];

/// Roles that may open a case for a subscriber on some channel (the union of
/// [`opening_roles`]); the route's access rule.
pub const ASSISTED_OPENERS: &[Role] = &[Role::Cs, Role::Store, Role::Supervisor];

/// Lookups one agent may make in [`lookup_window`]; past it the lookup is refused
/// (429) until the oldest one leaves the window.
pub const MAX_LOOKUPS_PER_AGENT: i64 = 60;

/// The rolling window of the lookup limit.
pub fn lookup_window() -> Duration {
    Duration::hours(1)
}

/// How far back a lookup lists the number's finished cases.
pub fn recent_window() -> Duration {
    Duration::days(90)
}

/// Most cases a lookup lists.
pub const LOOKUP_MAX_CASES: i64 = 20;

/// The roles that may open a case on `channel` on a subscriber's behalf (empty: no
/// agent opens cases on that channel; the subscriber does, on the web or in the app).
pub fn opening_roles(channel: Channel) -> &'static [Role] {
    match channel {
        Channel::Hotline => &[Role::Cs, Role::Supervisor],
        Channel::Store => &[Role::Store, Role::Supervisor],
        Channel::Web | Channel::App => &[],
    }
}

/// How the agent checked the caller's identity when opening the case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssistedCheck {
    /// A hotline call: the agent spoke with the caller (name and ID number given on
    /// the phone). Not enough alone: the case still needs a code or the service password.
    HotlineCall,
    /// At a store: the agent saw the original ID card in person and compared the face
    /// with its photo. The strongest proof (`ladder::ProofKind::InPersonId`).
    InPersonId,
}

impl AssistedCheck {
    /// Every check, in API order.
    pub const ALL: [AssistedCheck; 2] = [Self::HotlineCall, Self::InPersonId];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HotlineCall => "hotline_call",
            Self::InPersonId => "in_person_id",
        }
    }

    /// Parses the wire name.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// The channel this check belongs to.
    pub fn channel(self) -> Channel {
        match self {
            Self::HotlineCall => Channel::Hotline,
            Self::InPersonId => Channel::Store,
        }
    }

    /// Whether the check proves identity by itself. A hotline call does not; the
    /// original ID card seen in person does (with the carrier's name/ID match).
    pub fn verifies_identity(self) -> bool {
        match self {
            Self::HotlineCall => false,
            Self::InPersonId => true,
        }
    }
}

/// Why an agent may not open a case as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpeningRefusal {
    /// The channel takes no assisted openings.
    ChannelNotAssisted,
    /// The agent's roles may not open cases on this channel.
    RoleMayNotOpen,
    /// The identity check does not belong to this channel.
    CheckNotForChannel,
}

impl OpeningRefusal {
    /// A stable code for the refusal.
    pub fn code(self) -> &'static str {
        match self {
            Self::ChannelNotAssisted => "channel_not_assisted",
            Self::RoleMayNotOpen => "role_may_not_open",
            Self::CheckNotForChannel => "check_not_for_channel",
        }
    }

    /// What the agent is told.
    pub fn detail(self) -> &'static str {
        match self {
            Self::ChannelNotAssisted => {
                "Agents open cases on the hotline and store channels only; subscribers use the web or the app."
            }
            Self::RoleMayNotOpen => "Your role may not open cases on this channel.",
            Self::CheckNotForChannel => "This identity check does not belong to this channel.",
        }
    }
}

/// Decides whether an agent holding `roles` may open a case on `channel` with `check`,
/// and returns the role to act in (the first of the channel's roles the agent holds).
pub fn may_open(
    roles: &[Role],
    channel: Channel,
    check: AssistedCheck,
) -> Result<Role, OpeningRefusal> {
    let allowed = opening_roles(channel);
    if allowed.is_empty() {
        return Err(OpeningRefusal::ChannelNotAssisted);
    }
    let Some(role) = allowed.iter().copied().find(|r| roles.contains(r)) else {
        return Err(OpeningRefusal::RoleMayNotOpen);
    };
    if check.channel() != channel {
        return Err(OpeningRefusal::CheckNotForChannel);
    }
    Ok(role)
}

/// The SMS that carries the case token to the subscriber's contact on file after an
/// agent opened the case. The agent never sees the token.
pub fn token_message(locale: Locale, channel: Channel, token: &str) -> String {
    let zh_where = match channel {
        Channel::Store => "营业厅",
        _ => "客服热线",
    };
    let en_where = match channel {
        Channel::Store => "a store",
        _ => "the hotline",
    };
    if locale.is_zh() {
        format!(
            "【复机】{zh_where}已为您提交复机申请。申请凭证：{token} 请在网页或App中使用，并按提示验证身份。请勿告诉任何人。"
        )
    } else {
        format!(
            "Your reactivation request was opened by {en_where}. Case token: {token} Use it on the web or in the app to prove your identity. Never share it."
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Row = (
        &'static [Role],
        Channel,
        AssistedCheck,
        Result<Role, OpeningRefusal>,
    );

    #[test]
    fn who_may_open_which_channel_with_which_check() {
        use OpeningRefusal::*;
        let cases: &[Row] = &[
            (
                &[Role::Cs],
                Channel::Hotline,
                AssistedCheck::HotlineCall,
                Ok(Role::Cs),
            ),
            (
                &[Role::Supervisor],
                Channel::Hotline,
                AssistedCheck::HotlineCall,
                Ok(Role::Supervisor),
            ),
            (
                &[Role::Security, Role::Cs],
                Channel::Hotline,
                AssistedCheck::HotlineCall,
                Ok(Role::Cs),
            ),
            (
                &[Role::Security],
                Channel::Hotline,
                AssistedCheck::HotlineCall,
                Err(RoleMayNotOpen),
            ),
            (
                &[Role::Technical],
                Channel::Hotline,
                AssistedCheck::HotlineCall,
                Err(RoleMayNotOpen),
            ),
            (
                &[Role::Store],
                Channel::Hotline,
                AssistedCheck::HotlineCall,
                Err(RoleMayNotOpen),
            ),
            (
                &[Role::Store],
                Channel::Store,
                AssistedCheck::InPersonId,
                Ok(Role::Store),
            ),
            (
                &[Role::Supervisor],
                Channel::Store,
                AssistedCheck::InPersonId,
                Ok(Role::Supervisor),
            ),
            (
                &[Role::Cs],
                Channel::Store,
                AssistedCheck::InPersonId,
                Err(RoleMayNotOpen),
            ),
            (
                &[Role::Store],
                Channel::Store,
                AssistedCheck::HotlineCall,
                Err(CheckNotForChannel),
            ),
            (
                &[Role::Cs],
                Channel::Hotline,
                AssistedCheck::InPersonId,
                Err(CheckNotForChannel),
            ),
            (
                &[Role::Admin],
                Channel::Hotline,
                AssistedCheck::HotlineCall,
                Err(RoleMayNotOpen),
            ),
            (
                &[Role::Cs],
                Channel::Web,
                AssistedCheck::HotlineCall,
                Err(ChannelNotAssisted),
            ),
            (
                &[Role::Cs],
                Channel::App,
                AssistedCheck::HotlineCall,
                Err(ChannelNotAssisted),
            ),
        ];
        for (roles, channel, check, expected) in cases {
            assert_eq!(
                may_open(roles, *channel, *check),
                *expected,
                "{roles:?} {channel} {check:?}"
            );
        }
    }

    #[test]
    fn the_openers_are_the_roles_of_some_channel() {
        for role in Role::ALL {
            let some_channel = Channel::ALL
                .iter()
                .any(|c| opening_roles(*c).contains(&role));
            assert_eq!(ASSISTED_OPENERS.contains(&role), some_channel, "{role}");
        }
    }

    #[test]
    fn a_hotline_call_does_not_verify_identity_alone() {
        assert!(!AssistedCheck::HotlineCall.verifies_identity());
        assert!(AssistedCheck::InPersonId.verifies_identity());
        for check in AssistedCheck::ALL {
            assert_eq!(AssistedCheck::parse(check.as_str()), Some(check));
        }
        assert_eq!(AssistedCheck::parse("in_person"), None);
        assert_eq!(AssistedCheck::parse("Hotline_Call"), None);
    }

    #[test]
    fn only_customer_service_store_agents_and_supervisors_look_numbers_up() {
        for role in Role::ALL {
            let expected = matches!(role, Role::Cs | Role::Store | Role::Supervisor);
            assert_eq!(NUMBER_LOOKUP_ROLES.contains(&role), expected, "{role}");
        }
    }

    #[test]
    fn the_token_message_carries_the_token_and_names_the_channel() {
        let token = "A".repeat(43);
        let zh = token_message(Locale::ZhCn, Channel::Hotline, &token);
        assert!(zh.contains(&token) && zh.contains("客服热线"), "{zh}");
        let en = token_message(Locale::En, Channel::Hotline, &token);
        assert!(en.contains(&token) && en.contains("hotline"), "{en}");
        // No six-digit run outside the token: never mistaken for a one-time code.
        assert!(
            !en.replace(&token, "")
                .split(|c: char| !c.is_ascii_digit())
                .any(|w| w.len() == 6)
        );
    }
}
