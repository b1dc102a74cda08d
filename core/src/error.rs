//! Configuration errors shared by every validating constructor in the core.

use core::fmt;

/// A configuration value broke a rule. Names the field and the rule, for example
/// `` `cap` must be >= `base` ``.
///
/// Shape: two `&'static str` (no allocation); `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConfigError {
    field: &'static str,
    rule: &'static str,
}

impl ConfigError {
    /// A new error for `field` breaking `rule` (the rule reads as a sentence that
    /// follows the field name: "must be in (0, 1]").
    pub const fn new(field: &'static str, rule: &'static str) -> Self {
        Self { field, rule }
    }

    /// The name of the offending field, as spelled in the config struct.
    pub const fn field(&self) -> &'static str {
        self.field
    }

    /// The rule it broke, for example "must be >= base".
    pub const fn rule(&self) -> &'static str {
        self.rule
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config: `{}` {}", self.field, self.rule)
    }
}

impl core::error::Error for ConfigError {}
