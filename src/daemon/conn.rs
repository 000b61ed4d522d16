//! A connection's socket as hyper's IO, shared with the task that serves the connection.
//!
//! hyper closes a connection whose request head does not arrive within the header read timeout
//! without answering. The serving task keeps its own handle on the socket ([`SharedStream`]) so
//! that it can still answer `408 Request Timeout` then, when part of a request had arrived
//! ([`Progress::partial_request`]); an idle keep-alive connection is closed without a word.
//!
//! A write that makes no progress for the write timeout fails (SEC-07): a client that pipelines
//! requests and never reads the answers fills the socket's buffers, and would otherwise hold its
//! connection slot forever. hyper then closes the connection.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What a slow request head gets before the connection closes.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// How far a connection got: bytes read from it, and how many of them had been read when the
/// last request was answered.
#[derive(Debug, Default)]
pub(super) struct Progress {
    read: AtomicU64,
    answered_at: AtomicU64,
}

impl Progress {
    /// Marks everything read so far as belonging to requests already answered.
    pub(super) fn answered(&self) {
        self.answered_at
            .store(self.read.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Whether bytes arrived after the last answer: a request was under way.
    pub(super) fn partial_request(&self) -> bool {
        self.read.load(Ordering::Relaxed) > self.answered_at.load(Ordering::Relaxed)
    }
}

/// The socket, readable and writable through a shared handle; writes give up after
/// `write_timeout` without progress.
#[derive(Debug)]
pub(super) struct SharedStream {
    stream: Arc<TcpStream>,
    progress: Arc<Progress>,
    write_timeout: Duration,
    /// Set while a write waits for room in the socket's buffer: when that wait ends in failure.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl SharedStream {
    pub(super) fn new(
        stream: Arc<TcpStream>,
        progress: Arc<Progress>,
        write_timeout: Duration,
    ) -> SharedStream {
        SharedStream {
            stream,
            progress,
            write_timeout,
            stalled: None,
        }
    }
}

impl AsyncRead for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            match self.stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    self.progress.read.fetch_add(n as u64, Ordering::Relaxed);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl SharedStream {
    /// Runs a non-blocking write until the socket takes it, or fails it with `TimedOut` once
    /// the socket has taken nothing for the write timeout.
    fn poll_write_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl Fn(&TcpStream) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            match self.stream.poll_write_ready(cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => match write(&self.stream) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    other => {
                        self.stalled = None;
                        return Poll::Ready(other);
                    }
                },
                Poll::Pending => {
                    let timeout = self.write_timeout;
                    let stalled = self
                        .stalled
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    if stalled.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client read nothing for the write timeout",
                        )));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_with(cx, |s| s.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |s| s.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The socket closes when the last handle is dropped (the serving task's, once it is done).
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Answers 408 on the connection (best effort: a client that does not read gets nothing).
pub(super) async fn request_timeout(mut stream: SharedStream) {
    let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, REQUEST_TIMEOUT).await;
}
