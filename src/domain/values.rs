//! Validated values. Parsing is the only way in, so a `SecretName` in hand is valid.
use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::{Error, Result};

/// 1–128 chars of `[A-Za-z0-9_]`, not starting with a digit. Unique per organization
/// ignoring case; [`SecretName::key`] is the case-folded form used for lookups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretName(String);

impl SecretName {
    pub const MAX_LEN: usize = 128;

    pub fn parse(name: &str) -> Result<Self> {
        let valid_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let starts_ok = name.bytes().next().is_some_and(|b| !b.is_ascii_digit());
        if !(valid_chars && starts_ok && name.len() <= Self::MAX_LEN) {
            return Err(Error::bad_input(
                "a secret name is 1 to 128 characters of A-Z, a-z, 0-9 and _, \
                 and does not start with a digit",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded name: names are unique per organization ignoring case.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A plaintext secret value: UTF-8, 1 byte to 64 KiB. Zeroized on drop; `Debug` prints
/// `[REDACTED]`.
pub struct SecretValue(SecretString);

impl SecretValue {
    pub const MAX_BYTES: usize = 64 * 1024;

    pub fn parse(value: String) -> Result<Self> {
        let len = value.len();
        let value = SecretString::from(value);
        if len == 0 {
            return Err(Error::bad_input("a secret value must not be empty"));
        }
        if len > Self::MAX_BYTES {
            return Err(Error::bad_input(format!(
                "a secret value is at most {} bytes (64 KiB); this one is {len} bytes",
                Self::MAX_BYTES
            )));
        }
        Ok(Self(value))
    }

    /// Wraps decrypted bytes; they were validated as UTF-8 when stored.
    pub fn from_decrypted(bytes: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| Error::Integrity("decrypted value is not UTF-8".into()))?;
        Ok(Self(SecretString::from(text)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// A second copy, for a value served in several places of one answer.
    pub fn duplicate(&self) -> Self {
        Self(SecretString::from(self.expose()))
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([REDACTED])")
    }
}

/// Optional free text on a secret or token: at most 1,024 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 1024;

    pub fn parse(text: String) -> Result<Self> {
        if text.chars().count() > Self::MAX_CHARS {
            return Err(Error::bad_input(format!(
                "a description is at most {} characters",
                Self::MAX_CHARS
            )));
        }
        Ok(Self(text))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A principal's name: 1–64 chars of `[A-Za-z0-9_.-]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalName(String);

impl PrincipalName {
    pub fn parse(name: &str) -> Result<Self> {
        let ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(Error::bad_input(
                "a principal name is 1 to 64 characters of A-Z, a-z, 0-9, _, . and -",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A resource's name: 1–128 chars of `[A-Za-z0-9_.-]`, unique per organization and kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceName(String);

impl ResourceName {
    pub fn parse(name: &str) -> Result<Self> {
        let ok = (1..=128).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(Error::bad_input(
                "a resource name is 1 to 128 characters of A-Z, a-z, 0-9, _, . and -",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where in a resource's configuration a secret is used, e.g. `sinks.alerts.hash_key`:
/// 1–256 printable characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferenceField(String);

impl ReferenceField {
    pub fn parse(field: &str) -> Result<Self> {
        let ok = !field.trim().is_empty()
            && field.chars().count() <= 256
            && !field.chars().any(char::is_control);
        if !ok {
            return Err(Error::bad_input(
                "a reference field is 1 to 256 printable characters",
            ));
        }
        Ok(Self(field.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How long a deleted secret stays restorable before it is purged: 0 to 30 days (0
/// shreds it at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryWindow(chrono::TimeDelta);

impl RecoveryWindow {
    pub const MAX_DAYS: i32 = 30;

    /// A window a `deleteSecret` call asks for, in whole days.
    pub fn days(days: i32) -> Result<Self> {
        if !(0..=Self::MAX_DAYS).contains(&days) {
            return Err(Error::bad_input(
                "`recoveryWindowDays` is 0 to 30 (0 purges at once)",
            ));
        }
        Ok(Self(chrono::TimeDelta::days(i64::from(days))))
    }

    /// The server's default (`STRONGROOM_RECOVERY_WINDOW_DAYS`, or `_SECS`), already
    /// bounded by the settings parser.
    pub fn configured(window: chrono::TimeDelta) -> Self {
        Self(window)
    }

    pub fn as_delta(self) -> chrono::TimeDelta {
        self.0
    }
}

/// Days between value changes before rotation is due: 1 to 3650.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationPeriod(i32);

impl RotationPeriod {
    pub fn days(days: i32) -> Result<Self> {
        if !(1..=3650).contains(&days) {
            return Err(Error::bad_input(
                "`rotationPeriodDays` is 1 to 3650 days (omit it, or send null, for none)",
            ));
        }
        Ok(Self(days))
    }

    pub fn as_days(self) -> i32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn recovery_windows_and_rotation_periods_have_their_ranges() {
        use super::{RecoveryWindow, RotationPeriod};
        assert_eq!(
            RecoveryWindow::days(0).map(RecoveryWindow::as_delta).ok(),
            Some(chrono::TimeDelta::zero())
        );
        assert_eq!(
            RecoveryWindow::days(30).map(RecoveryWindow::as_delta).ok(),
            Some(chrono::TimeDelta::days(30))
        );
        for bad in [-1, 31] {
            let err = RecoveryWindow::days(bad).expect_err("out of range");
            assert_eq!(err.code(), crate::error::Code::BadUserInput);
        }
        assert_eq!(
            RotationPeriod::days(1).map(RotationPeriod::as_days).ok(),
            Some(1)
        );
        assert_eq!(
            RotationPeriod::days(3650).map(RotationPeriod::as_days).ok(),
            Some(3650)
        );
        assert!(RotationPeriod::days(0).is_err() && RotationPeriod::days(3651).is_err());
    }

    use super::*;

    #[test]
    fn secret_names() {
        for good in ["A", "_x", "HOOK_KEY", "a1", &"N".repeat(128)] {
            assert!(SecretName::parse(good).is_ok(), "{good:?} should be valid");
        }
        for bad in [
            "",
            "1ABC",
            "A-B",
            "A B",
            "SECR\u{0415}T",
            "A\0B",
            &"N".repeat(129),
        ] {
            let err = SecretName::parse(bad).expect_err(bad);
            assert_eq!(err.code(), crate::error::Code::BadUserInput);
        }
        assert_eq!(
            SecretName::parse("Hook_Key").map(|n| n.key()).ok(),
            Some("hook_key".into())
        );
    }

    #[test]
    fn value_bounds_and_redaction() {
        assert!(SecretValue::parse(String::new()).is_err());
        assert!(SecretValue::parse("x".repeat(SecretValue::MAX_BYTES)).is_ok());
        let err = SecretValue::parse("x".repeat(SecretValue::MAX_BYTES + 1)).expect_err("too big");
        assert!(!err.to_string().contains("xxxx"));
        let value = SecretValue::parse("hunter2".into()).expect("valid");
        assert_eq!(format!("{value:?}"), "SecretValue([REDACTED])");
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        /// What the contract says a secret name is (DESIGN.md §2), written independently.
        fn is_secret_name(text: &str) -> bool {
            let mut chars = text.chars();
            let first_ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            first_ok && text.len() <= 128 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }

        proptest! {
            #[test]
            fn secret_names_parse_exactly_the_contract(text in any::<String>()) {
                let parsed = SecretName::parse(&text);
                prop_assert_eq!(parsed.is_ok(), is_secret_name(&text));
                if let Ok(name) = parsed {
                    prop_assert_eq!(name.as_str(), text.as_str());
                    prop_assert_eq!(name.key(), text.to_ascii_lowercase());
                }
            }

            #[test]
            fn name_like_text_parses_and_folds(text in "[A-Za-z_][A-Za-z0-9_]{0,127}") {
                let name = SecretName::parse(&text).expect("valid by construction");
                prop_assert!(SecretName::parse(&name.key()).is_ok());
            }

            #[test]
            fn other_names_and_fields_never_panic(text in any::<String>()) {
                let resource = ResourceName::parse(&text).is_ok();
                let principal = PrincipalName::parse(&text).is_ok();
                let field = ReferenceField::parse(&text);
                let plain = |extra: &[u8]| text.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b));
                prop_assert_eq!(resource, (1..=128).contains(&text.len()) && plain(b"_.-"));
                prop_assert_eq!(principal, (1..=64).contains(&text.len()) && plain(b"_.-"));
                if field.is_ok() {
                    prop_assert!(!text.chars().any(char::is_control));
                }
            }
        }
    }
}
