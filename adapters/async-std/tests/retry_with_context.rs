//! The context form of retry on async-io timers, under async-std and under smol: a
//! `&mut` buffer lent to each attempt and handed back at the end. Real timers: the
//! test checks call counts and the handed-back state, and that no call came early.

use std::time::{Duration, Instant};

use sturdy_async_std::{RetryError, retry_with_context};
use sturdy_core::FailureKind;
use sturdy_core::retry::{GiveUpReason, fixed_policy};

#[derive(Debug, PartialEq, Eq)]
struct Short;

/// Fills itself one byte per attempt; a read succeeds once 3 bytes are in.
struct Frame {
    bytes: Vec<u8>,
    at: Vec<Duration>,
}

impl Frame {
    async fn read(&mut self, start: Instant) -> Result<usize, Short> {
        self.at.push(start.elapsed());
        self.bytes.push(self.bytes.len() as u8);
        if self.bytes.len() < 3 {
            Err(Short)
        } else {
            Ok(self.bytes.len())
        }
    }
}

async fn lend(max_attempts: u32) -> (Frame, Result<usize, RetryError<Short>>) {
    let policy = fixed_policy(max_attempts, Duration::from_millis(5)).unwrap();
    let start = Instant::now();
    let mut frame = Frame {
        bytes: Vec::new(),
        at: Vec::new(),
    };
    let (_, out) = retry_with_context(
        &policy,
        &mut frame,
        |_e: &Short| FailureKind::Network,
        async |f: &mut &mut Frame| f.read(start).await,
    )
    .await;
    (frame, out)
}

#[test]
fn a_mut_buffer_is_lent_per_attempt_under_async_std_and_smol() {
    for (frame, out) in [async_std::task::block_on(lend(5)), smol::block_on(lend(5))] {
        assert_eq!(out, Ok(3));
        assert_eq!(frame.bytes, [0, 1, 2]);
        assert!(frame.at[1] >= Duration::from_millis(5), "{:?}", frame.at);
        assert!(frame.at[2] >= Duration::from_millis(10), "{:?}", frame.at);
    }
    let (frame, out) = smol::block_on(lend(2));
    assert_eq!(frame.bytes, [0, 1]);
    assert_eq!(
        out,
        Err(RetryError::Failed {
            error: Short,
            attempts: 2,
            reason: GiveUpReason::AttemptsExhausted { attempts: 2 }
        })
    );
}
