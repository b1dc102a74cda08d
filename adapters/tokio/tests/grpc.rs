//! gRPC on 127.0.0.1 (feature `grpc`): a tonic server whose method fails with a chosen
//! status, called through a tonic client. `retry()` with `GrpcStatus::classify_status`
//! retries UNAVAILABLE and stops at INVALID_ARGUMENT; a `CircuitBreakerLayer` over the
//! channel, judging `grpc-status` with `GrpcStatus`, opens on UNAVAILABLE and then
//! refuses without reaching the server. No code generation: a raw-bytes codec.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut};
use sturdy_core::breaker::{ConsecutiveBreaker, ConsecutiveConfig, State};
use sturdy_core::retry::{GiveUpReason, fixed_policy};
use sturdy_tokio::{Breaker, CircuitBreakerLayer, GrpcStatus};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};
use tower::{Service, ServiceBuilder};

const PATH: &str = "/test.Echo/Call";

/// Messages are raw bytes.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Self;
    type Decoder = Self;
    fn encoder(&mut self) -> Self {
        Self
    }
    fn decoder(&mut self) -> Self {
        Self
    }
}

/// The server: answers each call with the next scripted code (the last one repeats),
/// counting calls.
#[derive(Clone)]
struct Echo {
    script: Arc<Mutex<(Vec<Code>, usize)>>,
}

impl Echo {
    fn calls(&self) -> usize {
        self.script.lock().unwrap().1
    }
}

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

impl Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let script = self.script.clone();
        Box::pin(async move {
            let handler = tower::service_fn(move |r: tonic::Request<Vec<u8>>| {
                let code = {
                    let mut s = script.lock().unwrap();
                    let code = s.0[s.1.min(s.0.len() - 1)];
                    s.1 += 1;
                    code
                };
                async move {
                    match code {
                        Code::Ok => Ok(tonic::Response::new(r.into_inner())),
                        c => Err(Status::new(c, "scripted")),
                    }
                }
            });
            Ok(tonic::server::Grpc::new(Raw).unary(handler, req).await)
        })
    }
}

async fn serve(script: Vec<Code>) -> (std::net::SocketAddr, Echo) {
    let echo = Echo {
        script: Arc::new(Mutex::new((script, 0))),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream_from(listener);
    let svc = echo.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    (addr, echo)
}

/// The listener as a stream of connections.
fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures_core::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    })
}

async fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// One unary call of `PATH` over any gRPC service.
async fn call<S>(svc: S) -> Result<Vec<u8>, Status>
where
    S: tonic::client::GrpcService<tonic::body::Body>,
    S::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <S::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut grpc = tonic::client::Grpc::new(svc);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.into().to_string()))?;
    let path = http::uri::PathAndQuery::from_static(PATH);
    grpc.unary(tonic::Request::new(b"hi".to_vec()), path, Raw)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn retry_retries_unavailable_and_stops_at_invalid_argument() {
    let (addr, echo) = serve(vec![Code::Unavailable, Code::Unavailable, Code::Ok]).await;
    let ch = channel(addr).await;
    let policy = fixed_policy(5, Duration::from_millis(5)).unwrap();
    let out = sturdy_tokio::retry(&policy, GrpcStatus::classify_status, || call(ch.clone())).await;
    assert_eq!(out.unwrap(), b"hi".to_vec());
    assert_eq!(echo.calls(), 3);

    let (addr, echo) = serve(vec![Code::InvalidArgument]).await;
    let ch = channel(addr).await;
    let err = sturdy_tokio::retry(&policy, GrpcStatus::classify_status, || call(ch.clone()))
        .await
        .unwrap_err();
    assert_eq!(echo.calls(), 1);
    assert_eq!(
        err.reason(),
        GiveUpReason::NotRetryable(sturdy_core::FailureKind::Permanent)
    );
    assert_eq!(err.into_error().unwrap().code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_breaker_over_the_channel_opens_on_unavailable_and_refuses_locally() {
    let (addr, echo) = serve(vec![Code::NotFound, Code::Unavailable]).await;
    let breaker = Breaker::new(ConsecutiveBreaker::new(
        ConsecutiveConfig::new(2, Duration::from_secs(30), 1).unwrap(),
    ))
    .named("echo");
    let svc = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify(GrpcStatus))
        .service(channel(addr).await);
    // NOT_FOUND is the caller's mistake: a success for the breaker.
    assert_eq!(call(svc.clone()).await.unwrap_err().code(), Code::NotFound);
    for _ in 0..2 {
        assert_eq!(
            call(svc.clone()).await.unwrap_err().code(),
            Code::Unavailable
        );
    }
    assert!(matches!(breaker.state(), State::Open { .. }));
    let refused = call(svc.clone()).await.unwrap_err();
    assert_eq!(echo.calls(), 3, "the refused call never reached the server");
    assert!(refused.message().contains("circuit"), "{refused:?}");
    let t = breaker.totals();
    assert_eq!((t.successes, t.failures, t.rejections), (1, 2, 1));
}

/// The retry layer at the message level: a tower service of `tonic::Request`s (around
/// a client call), judged by `GrpcStatus`, copying each request's message.
#[tokio::test]
async fn the_retry_layer_retries_unavailable_calls() {
    use sturdy_tokio::RetryLayer;
    use tower::ServiceExt;
    let (addr, echo) = serve(vec![Code::Unavailable, Code::ResourceExhausted, Code::Ok]).await;
    let ch = channel(addr).await;
    let client = tower::service_fn(move |r: tonic::Request<Vec<u8>>| {
        let ch = ch.clone();
        async move {
            let mut grpc = tonic::client::Grpc::new(ch);
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            let path = http::uri::PathAndQuery::from_static(PATH);
            grpc.unary(r, path, Raw).await
        }
    });
    let mut svc = ServiceBuilder::new()
        .layer(
            RetryLayer::new(fixed_policy(4, Duration::from_millis(5)).unwrap())
                .classify(GrpcStatus)
                .clone_request(|r: &tonic::Request<Vec<u8>>| {
                    Some(tonic::Request::new(r.get_ref().clone()))
                }),
        )
        .service(client);
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(tonic::Request::new(b"hi".to_vec()))
        .await
        .unwrap();
    assert_eq!(resp.into_inner(), b"hi".to_vec());
    assert_eq!(echo.calls(), 3);
}
