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

/// gRPC statuses (feature `grpc`; tonic's [`Code`](tonic::Code)), after the gRPC retry
/// design (A6) and the status code guide: `UNAVAILABLE` and `RESOURCE_EXHAUSTED` are
/// [`FailureKind::Network`] failures and `DEADLINE_EXCEEDED` a
/// [`FailureKind::TaskTimeout`] one: counted by a breaker and retried by default.
/// `INTERNAL`, `UNKNOWN` and `DATA_LOSS` (the server's own faults) are
/// [`FailureKind::Permanent`] failures: never retried, counted by a breaker only if
/// its counted kinds include permanent. `CANCELLED` (the caller gave up) is
/// [`Outcome::Ignored`]. `OK` and every other code (the caller's mistakes:
/// `INVALID_ARGUMENT`, `NOT_FOUND`, `PERMISSION_DENIED`, ...) are successes for the
/// breaker and are not retried.
///
/// Where the status is read:
/// - on a tonic client call's `Result<_, tonic::Status>`: [`GrpcStatus::classify_status`]
///   for `retry()` (with the server's `grpc-retry-pushback-ms` as the retry-after hint);
/// - on a tower service over a tonic `Channel` (`http::Response`): the `grpc-status`
///   header of a trailers-only response (how a server answers a call it fails before
///   sending a message); a response without it is a success here (its status comes in
///   the trailers, after the layer has passed the response on); a transport error is a
///   [`FailureKind::Network`] failure.
#[cfg(feature = "grpc")]
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcStatus;

#[cfg(feature = "grpc")]
impl GrpcStatus {
    /// The outcome of a call that ended with `code`.
    pub fn outcome(code: tonic::Code) -> Outcome {
        use tonic::Code;
        match code {
            Code::Unavailable | Code::ResourceExhausted => Outcome::Failure(FailureKind::Network),
            Code::DeadlineExceeded => Outcome::Failure(FailureKind::TaskTimeout),
            Code::Internal | Code::Unknown | Code::DataLoss => {
                Outcome::Failure(FailureKind::Permanent)
            }
            Code::Cancelled => Outcome::Ignored,
            _ => Outcome::Success,
        }
    }

    /// The server's pushback (`grpc-retry-pushback-ms` metadata, gRPC A6), if any.
    pub fn pushback(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
        let ms: u64 = metadata
            .get("grpc-retry-pushback-ms")?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some(Duration::from_millis(ms))
    }

    /// A `retry()` classifier for a tonic client call's error: its kind by
    /// [`outcome`](Self::outcome) (a code that is not a failure is
    /// [`FailureKind::Permanent`]: not retried) and the server's pushback.
    pub fn classify_status(status: &tonic::Status) -> crate::Classified {
        let kind = match Self::outcome(status.code()) {
            Outcome::Failure(kind) => kind,
            _ => FailureKind::Permanent,
        };
        crate::Classified {
            kind,
            retry_after: Self::pushback(status.metadata()),
            rejected: None,
        }
    }

    fn header_code<B>(resp: &http::Response<B>) -> Option<tonic::Code> {
        let v = resp.headers().get("grpc-status")?.to_str().ok()?;
        Some(tonic::Code::from_i32(v.trim().parse().ok()?))
    }
}

#[cfg(feature = "grpc")]
impl<B, Err> ClassifyResult<http::Response<B>, Err> for GrpcStatus {
    fn classify(&self, result: &Result<http::Response<B>, Err>) -> Outcome {
        match result {
            Ok(resp) => Self::header_code(resp).map_or(Outcome::Success, Self::outcome),
            Err(_) => Outcome::Failure(FailureKind::Network),
        }
    }

    fn retry_after(&self, result: &Result<http::Response<B>, Err>) -> Option<Duration> {
        let resp = result.as_ref().ok()?;
        let ms: u64 = resp
            .headers()
            .get("grpc-retry-pushback-ms")?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some(Duration::from_millis(ms))
    }
}

#[cfg(feature = "grpc")]
impl<T> ClassifyResult<tonic::Response<T>, tonic::Status> for GrpcStatus {
    fn classify(&self, result: &Result<tonic::Response<T>, tonic::Status>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(status) => Self::outcome(status.code()),
        }
    }

    fn retry_after(&self, result: &Result<tonic::Response<T>, tonic::Status>) -> Option<Duration> {
        Self::pushback(result.as_ref().err()?.metadata())
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

    #[cfg(feature = "grpc")]
    #[test]
    fn grpc_codes() {
        use tonic::Code;
        let f = Outcome::Failure;
        for (code, want) in [
            (Code::Ok, Outcome::Success),
            (Code::Unavailable, f(FailureKind::Network)),
            (Code::ResourceExhausted, f(FailureKind::Network)),
            (Code::DeadlineExceeded, f(FailureKind::TaskTimeout)),
            (Code::Internal, f(FailureKind::Permanent)),
            (Code::Unknown, f(FailureKind::Permanent)),
            (Code::DataLoss, f(FailureKind::Permanent)),
            (Code::Cancelled, Outcome::Ignored),
            (Code::InvalidArgument, Outcome::Success),
            (Code::NotFound, Outcome::Success),
            (Code::Aborted, Outcome::Success),
        ] {
            assert_eq!(GrpcStatus::outcome(code), want, "{code:?}");
        }
        let mut st = tonic::Status::unavailable("down");
        st.metadata_mut()
            .insert("grpc-retry-pushback-ms", "250".parse().unwrap());
        let c = GrpcStatus::classify_status(&st);
        assert_eq!(c.kind, FailureKind::Network);
        assert_eq!(c.retry_after, Some(Duration::from_millis(250)));
        assert_eq!(
            GrpcStatus::classify_status(&tonic::Status::invalid_argument("no")).kind,
            FailureKind::Permanent
        );
        let trailers_only: Result<http::Response<()>, ()> = Ok(http::Response::builder()
            .header("grpc-status", "14")
            .body(())
            .unwrap());
        assert_eq!(GrpcStatus.classify(&trailers_only), f(FailureKind::Network));
        let ok: Result<http::Response<()>, ()> = Ok(http::Response::new(()));
        assert_eq!(GrpcStatus.classify(&ok), Outcome::Success);
    }
}
