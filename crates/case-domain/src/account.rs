//! Agent accounts: which usernames, roles and passwords are accepted.
//!
//! The password rules follow NIST SP 800-63B (§5.1.1.2, memorized secrets): a
//! minimum length (12 characters here, above the standard's 8) and no composition
//! rules, a generous maximum, any printable character including spaces and
//! non-ASCII, and a refusal of passwords that are known to be weak: commonly used
//! or breached ones (a small embedded list, compared after folding case, and after
//! stripping the digits and symbols people add at either end, so `Password2024!`
//! counts as `password`), repetitive or sequential characters (`aaaaaaaaaaaa`,
//! `123456789012`, `abcabcabcabc`), and context-specific words (the username).

use std::fmt;

use crate::Role;

/// The fewest characters a password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The most characters a password may have (NIST asks for at least 64).
pub const MAX_PASSWORD_CHARS: usize = 128;
/// The most bytes a password may have (login refuses longer ones outright).
pub const MAX_PASSWORD_BYTES: usize = 256;

/// Commonly used and breached passwords and the words they are built on, in lower
/// case (after the list of the most common breached passwords, plus keyboard walks
/// and this product's own words).
const COMMON: &[&str] = &[
    "password",
    "passw0rd",
    "p@ssword",
    "p@ssw0rd",
    "pass",
    "passwd",
    "password1",
    "123456",
    "1234567",
    "12345678",
    "123456789",
    "1234567890",
    "12345678910",
    "123123",
    "123321",
    "111111",
    "000000",
    "654321",
    "666666",
    "121212",
    "112233",
    "qwerty",
    "qwertyuiop",
    "qwertyuiop[]",
    "asdfghjkl",
    "asdfgh",
    "zxcvbnm",
    "zxcvbn",
    "qazwsx",
    "1qaz2wsx",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "1q2w3e4r5t6y",
    "qwe123",
    "qweasd",
    "qweasdzxc",
    "q1w2e3r4",
    "q1w2e3r4t5y6",
    "zaq12wsx",
    "azerty",
    "qwertz",
    "abc123",
    "abcd1234",
    "a1b2c3d4",
    "aa123456",
    "iloveyou",
    "letmein",
    "welcome",
    "welcome1",
    "admin",
    "administrator",
    "root",
    "toor",
    "guest",
    "user",
    "login",
    "changeme",
    "secret",
    "default",
    "master",
    "monkey",
    "dragon",
    "football",
    "baseball",
    "basketball",
    "soccer",
    "hockey",
    "superman",
    "batman",
    "spiderman",
    "starwars",
    "pokemon",
    "princess",
    "sunshine",
    "shadow",
    "michael",
    "jennifer",
    "jordan",
    "hunter",
    "hunter2",
    "trustno1",
    "freedom",
    "whatever",
    "qazwsxedc",
    "computer",
    "internet",
    "samsung",
    "google",
    "facebook",
    "linkedin",
    "myspace",
    "mypassword",
    "photoshop",
    "access",
    "flower",
    "hello",
    "hellohello",
    "helloworld",
    "charlie",
    "donald",
    "ginger",
    "cookie",
    "chocolate",
    "summer",
    "winter",
    "spring",
    "autumn",
    "liverpool",
    "chelsea",
    "arsenal",
    "manchester",
    "killer",
    "pepper",
    "cheese",
    "ninja",
    "mustang",
    "harley",
    "ranger",
    "buster",
    "tigger",
    "soccer1",
    "lovely",
    "loveme",
    "iloveu",
    "blink182",
    "matrix",
    "zaq1zaq1",
    "letmein123",
    "password123",
    "admin123",
    "root123",
    "test",
    "test123",
    "testing",
    "demo",
    "temp",
    "temppass",
    "correcthorsebatterystaple",
    "thequickbrownfox",
    "opensesame",
    "sesame",
    "woaini",
    "woaini1314",
    "5201314",
    "1314520",
    "wangyang",
    "zhang",
    "wang",
    "li",
    "a123456",
    "a12345678",
    "aaaaaa",
    "abcdef",
    "abcdefg",
    "abcdefgh",
    "abcdefghijkl",
    "reactivation",
    "reactivate",
    "carrier",
    "mobile",
    "china",
    "chinamobile",
    "operator",
    "agent",
    "supervisor",
    "security",
    "technical",
    "service",
];

/// Why a password was refused. Messages are safe to show to the admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordRefusal {
    /// Fewer than [`MIN_PASSWORD_CHARS`] characters.
    TooShort,
    /// More than [`MAX_PASSWORD_CHARS`] characters or [`MAX_PASSWORD_BYTES`] bytes.
    TooLong,
    /// Contains a control character (NUL, escape, newline...).
    ControlCharacter,
    /// A commonly used or breached password, or one built on one.
    Common,
    /// Repeated or sequential characters (`aaaa…`, `1234…`, `abcabc…`).
    Repetitive,
    /// Contains the username.
    ContainsUsername,
}

impl fmt::Display for PasswordRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort => write!(f, "must have at least {MIN_PASSWORD_CHARS} characters"),
            Self::TooLong => write!(f, "must have at most {MAX_PASSWORD_CHARS} characters"),
            Self::ControlCharacter => f.write_str("must not contain control characters"),
            Self::Common => f.write_str(
                "is a commonly used or breached password (or built on one); choose a longer passphrase",
            ),
            Self::Repetitive => {
                f.write_str("is made of repeated or sequential characters; choose a passphrase")
            }
            Self::ContainsUsername => f.write_str("must not contain the username"),
        }
    }
}

/// Checks a new password for `username` (see the module docs for the rules).
pub fn check_password(username: &str, password: &str) -> Result<(), PasswordRefusal> {
    let chars: Vec<char> = password.chars().collect();
    if chars.len() < MIN_PASSWORD_CHARS {
        return Err(PasswordRefusal::TooShort);
    }
    if chars.len() > MAX_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordRefusal::TooLong);
    }
    if chars.iter().any(|c| c.is_control()) {
        return Err(PasswordRefusal::ControlCharacter);
    }
    let folded = password.to_lowercase();
    let user = username.trim().to_lowercase();
    if user.chars().count() >= 3 && folded.contains(&user) {
        return Err(PasswordRefusal::ContainsUsername);
    }
    if is_common(&folded) {
        return Err(PasswordRefusal::Common);
    }
    if is_repetitive(&folded.chars().collect::<Vec<_>>()) {
        return Err(PasswordRefusal::Repetitive);
    }
    Ok(())
}

/// The password, or it with the digits, symbols and spaces at either end removed,
/// or with every separator removed, is on the list.
fn is_common(folded: &str) -> bool {
    let not_letter = |c: char| !c.is_alphabetic();
    let core = folded.trim_matches(not_letter);
    let joined: String = folded.chars().filter(|c| c.is_alphanumeric()).collect();
    let letters: String = folded.chars().filter(|c| c.is_alphabetic()).collect();
    [folded, core, joined.as_str(), letters.as_str()]
        .iter()
        .any(|candidate| !candidate.is_empty() && COMMON.contains(candidate))
        // A common word repeated (`passwordpassword`, `qwertyqwerty`).
        || smallest_period(&joined.chars().collect::<Vec<_>>())
            .is_some_and(|p| COMMON.contains(&joined.chars().take(p).collect::<String>().as_str()))
}

/// The shortest unit the whole text repeats, if it repeats one at least twice.
fn smallest_period(chars: &[char]) -> Option<usize> {
    (1..=chars.len() / 2)
        .find(|&p| chars.len().is_multiple_of(p) && chars.chunks(p).all(|c| c == &chars[..p]))
}

/// Too few distinct characters, one unit repeated, or mostly one run of
/// consecutive characters (each the same as, or one up or down from, the last).
fn is_repetitive(chars: &[char]) -> bool {
    let mut distinct = chars.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 5 {
        return true;
    }
    if smallest_period(chars).is_some() {
        return true;
    }
    let step = |a: char, b: char| (b as i64 - a as i64).abs() <= 1;
    let mut longest = 1;
    let mut run = 1;
    for w in chars.windows(2) {
        run = if step(w[0], w[1]) { run + 1 } else { 1 };
        longest = longest.max(run);
    }
    longest * 2 >= chars.len()
}

/// Why a username was refused.
pub const USERNAME_RULE: &str =
    "must be 2 to 63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit";

/// Whether `username` is an acceptable login name.
pub fn username_ok(username: &str) -> bool {
    (2..=63).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && username.as_bytes()[0].is_ascii_alphanumeric()
}

/// Parses agent roles (each named once at most); `Err` names the first that is not
/// an agent role, or says that none was given.
pub fn parse_roles<S: AsRef<str>>(names: &[S]) -> Result<Vec<Role>, String> {
    let mut roles = Vec::new();
    for name in names {
        match Role::parse(name.as_ref()) {
            Some(role) if role.is_agent_role() => {
                if !roles.contains(&role) {
                    roles.push(role);
                }
            }
            _ => {
                return Err(format!(
                    "{} is not an agent role (cs, store, security, technical, supervisor, admin)",
                    name.as_ref().escape_debug()
                ));
            }
        }
    }
    if roles.is_empty() {
        return Err("at least one role is required".into());
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strong_passphrases_pass() {
        for ok in [
            "reactivate-demo-2026",
            "correct-horse-battery-1",
            "a long enough password",
            "Tr0ub4dor&3-blue-kettle",
            "大象喜欢在雨中跳舞吧真的很开心",
            "xK9#mP2$vL5@",
        ] {
            assert_eq!(check_password("admin.demo", ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        use PasswordRefusal::*;
        for (bad, why) in [
            ("short1!", TooShort),
            ("elevenchars", TooShort),
            (&"x9".repeat(65) as &str, TooLong),
            ("password\0with nul", ControlCharacter),
            ("tab\tin the password", ControlCharacter),
            ("Password2024!", Common),
            ("!!Password2024!!", Common),
            ("P@ssw0rd12345", Common),
            ("qwertyuiop[]", Common),
            ("1q2w3e4r5t6y", Common),
            ("correcthorsebatterystaple", Common),
            ("Correct Horse Battery Staple", Common),
            ("passwordpassword", Common),
            ("qwertyqwerty", Common),
            ("iloveyou123456", Common),
            ("aaaaaaaaaaaa", Repetitive),
            ("123456789012", Repetitive),
            ("abcdefghijklmn", Repetitive),
            ("abcdefghijkl", Common),
            ("abcdefghijklmnop", Repetitive),
            ("9876543210zz", Repetitive),
            ("abcabcabcabc", Repetitive),
            ("x1y2x1y2x1y2", Repetitive),
            ("zzzzzz111111", Repetitive),
            ("my name is analyst.one!", ContainsUsername),
            ("ANALYST.ONE-rocks-2026", ContainsUsername),
        ] {
            assert_eq!(check_password("analyst.one", bad), Err(why), "{bad:?}");
        }
    }

    #[test]
    fn usernames_and_roles() {
        assert!(username_ok("cs.demo"));
        assert!(username_ok("a1"));
        for bad in [
            "",
            "a",
            ".dot",
            "Upper",
            "space d",
            "nul\0",
            &"x".repeat(64),
        ] {
            assert!(!username_ok(bad), "{bad:?}");
        }
        assert_eq!(
            parse_roles(&["cs", "security", "cs"]),
            Ok(vec![Role::Cs, Role::Security])
        );
        assert!(parse_roles::<&str>(&[]).is_err());
        assert!(parse_roles(&["system"]).unwrap_err().contains("system"));
        assert!(parse_roles(&["cs\0"]).unwrap_err().contains("\\0"));
    }
}
