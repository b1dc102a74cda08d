//! How a tower layer tells a failed call from a successful one.

use std::time::Duration;

use sturdy_core::FailureKind;
use sturdy_core::breaker::Outcome;

/// Judges one call's result for a [`CircuitBreakerLayer`](crate::CircuitBreakerLayer)
/// or a [`RetryLayer`](crate::RetryLayer): [`Outcome::Success`], a
/// [`Outcome::Failure`] with its kind, or [`Outcome::Ignored`] (counts neither way;
/// not retried).
///
/// Implemented for closures `Fn(&Result<Res, Err>) -> Outcome`, for
/// [`ErrorsAreFailures`] and for [`HttpStatus`].
pub trait ClassifyResult<Res, Err> {
    /// The outcome of a call that returned `result`.
    fn classify(&self, result: &Result<Res, Err>) -> Outcome;

    /// A server's hint for the delay before the next attempt, carried by a failed
    /// `result` (HTTP `Retry-After`, gRPC pushback); `None` by default.
    fn retry_after(&self, result: &Result<Res, Err>) -> Option<Duration> {
        let _ = result;
        None
    }
}

impl<Res, Err, F> ClassifyResult<Res, Err> for F
where
    F: Fn(&Result<Res, Err>) -> Outcome,
{
    fn classify(&self, result: &Result<Res, Err>) -> Outcome {
        self(result)
    }
}

/// `Ok` is a success, `Err` a failure of kind [`FailureKind::Unknown`] (retryable and
/// counted by default).
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorsAreFailures;

impl<Res, Err> ClassifyResult<Res, Err> for ErrorsAreFailures {
    fn classify(&self, result: &Result<Res, Err>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure(FailureKind::Unknown),
        }
    }
}

/// HTTP responses by status (RFC 9110): a transport error and `502`, `503`, `504` are
/// [`FailureKind::Network`] failures (the dependency or the path to it is down), `408`
/// and `429` are failures of kind [`FailureKind::TaskTimeout`] and
/// [`FailureKind::Network`] (overload: back off), any other `5xx` is
/// [`FailureKind::Unknown`]; every other status (`2xx`, `3xx`, the client's own `4xx`
/// mistakes) is a success for the breaker and is not retried.
///
/// A `Retry-After` header in delay-seconds form (RFC 9110 §10.2.3) is the retry-after
/// hint; the HTTP-date form is ignored (it would need the wall clock).
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpStatus;

impl HttpStatus {
    /// The outcome of a response with `status`.
    pub fn outcome(status: http::StatusCode) -> Outcome {
        match status.as_u16() {
            502..=504 | 429 => Outcome::Failure(FailureKind::Network),
            408 => Outcome::Failure(FailureKind::TaskTimeout),
            500..=599 => Outcome::Failure(FailureKind::Unknown),
            _ => Outcome::Success,
        }
    }
}

impl<B, Err> ClassifyResult<http::Response<B>, Err> for HttpStatus {
    fn classify(&self, result: &Result<http::Response<B>, Err>) -> Outcome {
        match result {
            Ok(resp) => Self::outcome(resp.status()),
            Err(_) => Outcome::Failure(FailureKind::Network),
        }
    }

    fn retry_after(&self, result: &Result<http::Response<B>, Err>) -> Option<Duration> {
        let value = result
            .as_ref()
            .ok()?
            .headers()
            .get(http::header::RETRY_AFTER)?;
        let secs: u64 = value.to_str().ok()?.trim().parse().ok()?;
        Some(Duration::from_secs(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses() {
        let at = |code: u16| HttpStatus::outcome(http::StatusCode::from_u16(code).unwrap());
        assert_eq!(at(200), Outcome::Success);
        assert_eq!(at(404), Outcome::Success);
        assert_eq!(at(503), Outcome::Failure(FailureKind::Network));
        assert_eq!(at(429), Outcome::Failure(FailureKind::Network));
        assert_eq!(at(408), Outcome::Failure(FailureKind::TaskTimeout));
        assert_eq!(at(500), Outcome::Failure(FailureKind::Unknown));
        let err: Result<http::Response<()>, ()> = Err(());
        assert_eq!(
            HttpStatus.classify(&err),
            Outcome::Failure(FailureKind::Network)
        );
        assert_eq!(
            ErrorsAreFailures.classify(&Ok::<(), ()>(())),
            Outcome::Success
        );
        assert_eq!(ErrorsAreFailures.retry_after(&Err::<(), ()>(())), None);

        let with = |v: &str| -> Result<http::Response<()>, ()> {
            Ok(http::Response::builder()
                .status(503)
                .header(http::header::RETRY_AFTER, v)
                .body(())
                .unwrap())
        };
        assert_eq!(
            HttpStatus.retry_after(&with("120")),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            HttpStatus.retry_after(&with("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(HttpStatus.retry_after(&err), None);
    }
}
