//! [`SharedRetryBudget`]: one retry budget for every task of a firmware, behind a
//! critical section.

use core::cell::Cell;

use sturdy_core::retry::{RetryBudget, RetryBudgetConfig};
use sturdy_core::retry_driver::RetryGate;
use sturdy_core::{Clock, Instant};

use crate::clock::EmbassyClock;

/// The core's [`RetryBudget`] shared between tasks (and interrupts): each access is a
/// short `critical_section::with` around a copy of the 40-byte state. Its floor trickles
/// in by embassy-time. A [`RetryGate`]: pass `&budget` to
/// [`retrying`](crate::retrying)`(..).budget(..)`.
///
/// The application provides the critical-section implementation (`cortex-m`'s
/// `critical-section-single-core` feature, an RTOS's, or `std` in tests), as for
/// embassy itself.
///
/// ```
/// # use critical_section as _;
/// use sturdy_core::retry::RetryBudgetConfig;
/// use sturdy_embassy::SharedRetryBudget;
///
/// // At most 3 retries saved up, 1 more per second, none earned by calls.
/// let budget = SharedRetryBudget::new(RetryBudgetConfig::new(0, 1, 3)?);
/// assert_eq!(budget.tokens(), 3);
/// # Ok::<(), sturdy_core::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct SharedRetryBudget {
    state: critical_section::Mutex<Cell<RetryBudget>>,
}

impl SharedRetryBudget {
    /// A full budget under `config`, its floor counted from boot.
    pub const fn new(config: RetryBudgetConfig) -> Self {
        Self {
            state: critical_section::Mutex::new(Cell::new(RetryBudget::new(config, Instant::ZERO))),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut RetryBudget, Instant) -> R) -> R {
        let now = EmbassyClock.now();
        critical_section::with(|cs| {
            let cell = self.state.borrow(cs);
            let mut b = cell.get();
            let r = f(&mut b, now);
            cell.set(b);
            r
        })
    }

    /// Whole tokens available now (no refill is paid in by this getter).
    pub fn tokens(&self) -> u64 {
        self.with(|b, _| b.tokens())
    }
}

impl RetryGate for SharedRetryBudget {
    fn on_call(&self) {
        self.with(|b, now| b.record_request(now));
    }

    fn try_retry(&self) -> bool {
        self.with(|b, now| b.try_withdraw(now))
    }
}
