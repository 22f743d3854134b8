//! The bounds on one client connection, so that no client, authenticated or not, can hold the
//! gateway's sockets or memory by being slow:
//!
//! - **a cap on open connections** (`max_connections`): one more is answered `503
//!   too_many_connections` in OpenAI's error shape and closed, instead of taking the process
//!   to its file-descriptor limit, where it could no longer open its own store or upstream
//!   sockets;
//! - **an idle timeout** (`idle_timeout_secs`): a connection with no call in flight and no
//!   bytes either way is closed ([`Activity`], [`idle`]); a call in flight, however long its
//!   upstream thinks, is never cut by it;
//! - **body timeouts** ([`TimeoutBody`]): a longest silence and a total time to send the
//!   request body, so a steady trickle cannot hold a call open either. (Headers have their own
//!   `header_timeout_secs`, enforced by hyper; and the proxy authenticates on the headers before
//!   it reads a body, so a client without a key gets its 401 without sending one.)

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// What a connection is doing: when it last moved a byte, and how many calls it has in flight.
pub struct Activity {
    epoch: Instant,
    last_io_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_io_ms.store(now, Ordering::Relaxed);
    }

    fn since_io(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_io_ms.load(Ordering::Relaxed)))
    }

    /// Counts a call in flight until the returned guard is dropped (with the response body).
    pub fn call(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A call in flight on a connection; dropped when its response body is done.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// Resolves once the connection has had no call in flight and no I/O for `limit`.
pub async fn idle(activity: Arc<Activity>, limit: Duration) {
    loop {
        let since = activity.since_io();
        let busy = activity.in_flight.load(Ordering::Relaxed) > 0;
        if !busy && since >= limit {
            return;
        }
        let wait = if busy { limit } else { limit - since };
        tokio::time::sleep(wait.max(Duration::from_millis(50))).await;
    }
}

/// A socket that records its I/O in an [`Activity`].
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        activity.touch();
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that keeps its call counted in flight until it is done.
pub struct Guarded<B> {
    inner: B,
    _call: InFlight,
}

impl<B> Guarded<B> {
    pub fn new(inner: B, call: InFlight) -> Self {
        Self { inner, _call: call }
    }
}

impl<B: Body + Unpin> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a connection over the cap: a 503 in OpenAI's shape, then close. Bounded in
/// time (the client may not read), and the request it may have sent is drained first, so the
/// close does not reset the connection before the client reads the answer.
pub async fn refuse(mut stream: TcpStream) {
    const BODY: &str = r#"{"error":{"message":"The gateway has too many open connections. Please retry shortly.","type":"api_error","param":null,"code":"too_many_connections"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// A request body that fails if no data arrives for `silence`, or if the whole body has not
/// arrived within `total`.
pub struct TimeoutBody<B> {
    inner: B,
    silence: Duration,
    quiet: Pin<Box<Sleep>>,
    deadline: Pin<Box<Sleep>>,
}

impl<B> TimeoutBody<B> {
    pub fn new(inner: B, silence: Duration, total: Duration) -> Self {
        Self {
            inner,
            silence,
            quiet: Box::pin(tokio::time::sleep(silence)),
            deadline: Box::pin(tokio::time::sleep(total)),
        }
    }
}

/// The error a timed-out body ends with; the proxy answers it with 408.
#[derive(Debug)]
pub struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body timed out")
    }
}

impl std::error::Error for BodyTimedOut {}

impl<B> Body for TimeoutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                let t = this.silence;
                this.quiet.as_mut().reset(tokio::time::Instant::now() + t);
                Poll::Ready(r.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => match this.quiet.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
