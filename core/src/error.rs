//! Configuration errors shared by every validating constructor in the core.

use core::fmt;

/// A configuration value broke a rule. Names the field and the rule, for example
/// `` `cap` must be >= `base` ``.
///
/// Shape: two `&'static str` (no allocation); `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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

    /// Panics with this error's message (`` invalid config: `field` rule ``). In a
    /// `const` or `static` initializer the panic is a **compile error** that shows the
    /// message; see [`unwrap_config`] for the usual way in. At run time, prefer `?`.
    #[track_caller]
    pub const fn panic(self) -> ! {
        const PREFIX: &[u8] = b"invalid config: `";
        let mut buf = [0u8; 256];
        let mut len = 0;
        len = append(&mut buf, len, PREFIX);
        len = append(&mut buf, len, self.field.as_bytes());
        len = append(&mut buf, len, b"` ");
        len = append(&mut buf, len, self.rule.as_bytes());
        match core::str::from_utf8(buf.split_at(len).0) {
            Ok(message) => panic!("{}", message),
            // Cut inside a character (a message over 256 bytes): the rule alone.
            Err(_) => panic!("{}", self.rule),
        }
    }
}

/// Copies as much of `bytes` as fits into `buf` from `len`; returns the new length.
const fn append(buf: &mut [u8; 256], mut len: usize, bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() && len < buf.len() {
        buf[len] = bytes[i];
        len += 1;
        i += 1;
    }
    len
}

/// The config in `result`, for `const` and `static` items: a config that breaks a rule
/// fails to **compile**, with the field and the rule in the error
/// ([`ConfigError::panic`]). Every config constructor of the core is a `const fn`, and
/// every config is `Copy`.
///
/// ```
/// use core::time::Duration;
/// use sturdy_core::backoff::BackoffConfig;
/// use sturdy_core::retry::RetryPolicy;
/// use sturdy_core::unwrap_config;
///
/// const BACKOFF: BackoffConfig = unwrap_config(BackoffConfig::exponential(
///     Duration::from_millis(10), 2_000, Duration::from_secs(1),
/// ));
/// static POLICY: RetryPolicy = unwrap_config(RetryPolicy::new(4, BACKOFF));
/// assert_eq!(POLICY.max_attempts(), 4);
/// ```
///
/// A rule broken in a `const` stops the build; rustc prints
/// ``evaluation panicked: invalid config: `max_attempts` must be >= 1 (...)``:
///
/// ```compile_fail,E0080
/// use core::time::Duration;
/// use sturdy_core::retry::{RetryPolicy, fixed_policy};
/// use sturdy_core::unwrap_config;
///
/// const POLICY: RetryPolicy = unwrap_config(fixed_policy(0, Duration::from_millis(10)));
/// ```
///
/// # Panics
/// When `result` is an error: at compile time in a `const` or `static`, at run time
/// elsewhere (use `?` there).
#[track_caller]
pub const fn unwrap_config<T: Copy>(result: Result<T, ConfigError>) -> T {
    match result {
        Ok(config) => config,
        Err(e) => e.panic(),
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config: `{}` {}", self.field, self.rule)
    }
}

impl core::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use core::time::Duration;
    use std::string::{String, ToString};

    use super::*;
    use crate::backoff::BackoffConfig;
    use crate::breaker::BreakerConfig;
    use crate::manager::LedgerConfig;
    use crate::retry::{RetryPolicy, fixed_policy};

    // Built at compile time by the same validating constructors.
    const BACKOFF: BackoffConfig = unwrap_config(BackoffConfig::linear(
        Duration::from_millis(10),
        Duration::from_millis(5),
        Duration::from_millis(40),
    ));
    static POLICY: RetryPolicy = unwrap_config(RetryPolicy::new(5, BACKOFF));
    const BREAKER: BreakerConfig = unwrap_config(
        unwrap_config(BreakerConfig::new().with_failure_rate_threshold(0.25)).with_minimum_calls(4),
    );
    const LEDGER: LedgerConfig =
        unwrap_config(LedgerConfig::new(RetryPolicy::ORIGINAL).with_lease(Duration::from_secs(9)));

    #[test]
    fn const_configs_equal_the_run_time_ones() {
        let backoff = BackoffConfig::linear(
            Duration::from_millis(10),
            Duration::from_millis(5),
            Duration::from_millis(40),
        )
        .unwrap();
        assert_eq!(POLICY, RetryPolicy::new(5, backoff).unwrap());
        assert_eq!(BACKOFF.raw_delay(3), Duration::from_millis(20));
        assert_eq!(BREAKER.failure_rate_threshold(), 0.25);
        assert_eq!(LEDGER.lease(), Duration::from_secs(9));
        assert_eq!(RetryPolicy::ORIGINAL, RetryPolicy::default());
        assert_eq!(LedgerConfig::ORIGINAL, LedgerConfig::default());
    }

    #[test]
    fn panic_message_names_the_field_and_the_rule() {
        let caught = std::panic::catch_unwind(|| unwrap_config(fixed_policy(0, Duration::ZERO)));
        let payload = caught.unwrap_err();
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap();
        assert_eq!(
            message,
            "invalid config: `max_attempts` must be >= 1 (it counts calls in total; 1 means never retry)"
        );
        assert_eq!(
            message,
            fixed_policy(0, Duration::ZERO).unwrap_err().to_string()
        );
    }
}
