//! The context form of retry on tokio's virtual time: a `&mut` connection lent to each
//! attempt, handed back at the end, the future still `Send` for `tokio::spawn`.

use std::time::Duration;

use sturdy_core::retry::{RetryPolicy, fixed_policy};
use sturdy_core::{FailureKind, unwrap_config};
use sturdy_tokio::{RetryError, retry_with_context};
use tokio::time::Instant;

#[derive(Debug, PartialEq, Eq)]
struct Refused;

struct Conn {
    start: Instant,
    calls: Vec<u64>,
    refusals: usize,
}

impl Conn {
    async fn query(&mut self) -> Result<&'static str, Refused> {
        self.calls.push(self.start.elapsed().as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(1)).await;
        if self.calls.len() <= self.refusals {
            Err(Refused)
        } else {
            Ok("row")
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_mut_connection_is_lent_per_attempt_and_handed_back() {
    let policy = fixed_policy(3, Duration::from_millis(100)).unwrap();
    let mut conn = Conn {
        start: Instant::now(),
        calls: Vec::new(),
        refusals: 1,
    };
    let (back, out) = retry_with_context(
        &policy,
        &mut conn,
        |_e: &Refused| FailureKind::Network,
        async |c: &mut &mut Conn| c.query().await,
    )
    .await;
    assert_eq!(out, Ok("row"));
    back.refusals = 10;
    assert_eq!(conn.calls, [0, 101]);

    // Owned and spawned: the future is `Send` (the policy a `static`, built at compile
    // time); the connection comes back with the error.
    static POLICY: RetryPolicy = unwrap_config(fixed_policy(3, Duration::from_millis(100)));
    let owned = Conn {
        start: Instant::now(),
        calls: Vec::new(),
        refusals: 10,
    };
    let (owned, out) = tokio::spawn(retry_with_context(
        &POLICY,
        owned,
        |_e: &Refused| FailureKind::Network,
        async |c: &mut Conn| c.query().await,
    ))
    .await
    .unwrap();
    assert_eq!(owned.calls, [0, 101, 202]);
    assert_eq!(
        out.unwrap_err(),
        RetryError::Failed {
            error: Refused,
            attempts: 3,
            reason: sturdy_core::retry::GiveUpReason::AttemptsExhausted { attempts: 3 }
        }
    );
}
