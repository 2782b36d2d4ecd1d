//! A TCP listener for the kiosk view that caps the connections held open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Open connections at once; further ones wait in the kernel's accept queue until one closes.
/// Room for 64 clients stuck sending their headers (each cut at the header timeout) beside the
/// [`crate::serve::MAX_STREAMS`] streams and ordinary requests.
pub const MAX_CONNECTIONS: usize = 128;

/// A TCP listener that holds at most [`MAX_CONNECTIONS`] connections open: a crowd of clients
/// (or one misbehaving program) cannot take unbounded sockets, memory or tasks.
pub(super) struct LimitedListener {
    inner: tokio::net::TcpListener,
    slots: Arc<Semaphore>,
}

impl LimitedListener {
    /// `inner`, holding at most [`MAX_CONNECTIONS`] connections open.
    pub(super) fn new(inner: tokio::net::TcpListener) -> Self {
        LimitedListener {
            inner,
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        }
    }
}

/// A connection holding one of the listener's slots until it closes.
pub(super) struct Limited {
    stream: tokio::net::TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl axum::serve::Listener for LimitedListener {
    type Io = Limited;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Limited, SocketAddr) {
        let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else {
            // The semaphore is never closed; park rather than spin if it were.
            return std::future::pending().await;
        };
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (
                        Limited {
                            stream,
                            _slot: slot,
                        },
                        addr,
                    );
                }
                // Out of file descriptors and the like: wait a little instead of spinning.
                Err(e) => {
                    tracing::warn!("web view: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl tokio::io::AsyncRead for Limited {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Limited {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
