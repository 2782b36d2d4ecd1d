//! The kiosk view: a small local web server showing the live frames with boxes, landmarks and
//! labels, and the JSON results as Server-Sent Events for other programs.
//!
//! Routes (GET only; anything else is 404 or 405):
//! - `/`: the page (MJPEG frames, an overlay drawn from the results);
//! - `/frame.jpg`: the latest frame;
//! - `/stream.mjpg`: the frames as `multipart/x-mixed-replace` JPEGs;
//! - `/events`: every result as an SSE `data:` line (edge-fer's JSON line);
//! - `/latest`: the most recent result as JSON;
//! - `/audience`: people present, visits in the last hour, median dwell and the expression
//!   timeline ([`audience::Summary`]);
//! - `/metrics`: health metrics for Prometheus ([`crate::metrics`]), when given.
//!
//! [`Server::metrics`] serves `/metrics` alone, for a kiosk without the view.
//!
//! The pipeline never waits for the server: it replaces the latest snapshot (a `watch` channel:
//! one slot per client), so a slow or vanished client misses frames, alone. At most
//! [`MAX_CONNECTIONS`] connections are open and [`MAX_STREAMS`] of them streaming at once. JPEGs are encoded only
//! while someone has asked for them in the last few seconds, at most `max_fps` a second. Tokio runs
//! on the server's own thread; the pipeline's threads stay plain.
//!
//! Connections are served by hyper's HTTP/1 builder with a timer, so a client gets
//! [`ServeOptions::header_timeout`] to send a request's headers, and a kept-alive connection the
//! same between requests: a client sending headers byte by byte, or idling, cannot hold a slot for
//! ever. Only header reading is timed: an open SSE or MJPEG stream, silent between frames, is not
//! cut.

pub mod audience;
mod hub;
mod listener;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener as _;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

pub use hub::{Hub, Snapshot, MAX_STREAMS};
pub use listener::MAX_CONNECTIONS;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use listener::LimitedListener;
use routes::{metrics_router, router};

/// How the server treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Time a client has to send a request's headers, and a kept-alive connection may idle
    /// between requests, before it is closed.
    pub header_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_S),
        }
    }
}

/// [`ServeOptions::header_timeout`]'s default, in seconds: ample for a browser on a slow Wi-Fi
/// link, short enough that idle or dribbling clients give their slot back soon.
pub const DEFAULT_HEADER_TIMEOUT_S: u64 = 10;

/// A running server; dropping it (or [`Server::stop`]) shuts it down.
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` now (so a taken port is reported before the run starts) and serves `hub`
    /// (and `metrics` on `/metrics`, if given) on a thread of its own.
    ///
    /// # Errors
    /// [`Error::Serve`] if the address cannot be bound or the thread cannot start.
    pub fn start(
        addr: SocketAddr,
        hub: Hub,
        metrics: Option<Arc<Metrics>>,
        options: ServeOptions,
    ) -> Result<Server> {
        let app = match metrics {
            Some(metrics) => router(hub).merge(metrics_router(metrics)),
            None => router(hub),
        };
        Server::start_router(addr, app, options)
    }

    /// Binds `addr` and serves `/metrics` alone (`--metrics ADDR`).
    ///
    /// # Errors
    /// As [`Server::start`].
    pub fn metrics(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        options: ServeOptions,
    ) -> Result<Server> {
        Server::start_router(addr, metrics_router(metrics), options)
    }

    fn start_router(addr: SocketAddr, app: Router, options: ServeOptions) -> Result<Server> {
        let serve_err = |reason: String| Error::Serve { addr, reason };
        let listener = std::net::TcpListener::bind(addr).map_err(|e| serve_err(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| serve_err(e.to_string()))?;
        let bound = listener
            .local_addr()
            .map_err(|e| serve_err(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| serve_err(e.to_string()))?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("serve".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => LimitedListener::new(l),
                        Err(e) => {
                            tracing::error!("web view: {e}");
                            return;
                        }
                    };
                    tokio::select! {
                        () = serve(listener, app, options) => {}
                        _ = stop_rx => {}
                    }
                });
                // Streams still open end here, with the runtime.
                runtime.shutdown_timeout(Duration::from_millis(200));
            })
            .map_err(|e| serve_err(e.to_string()))?;
        Ok(Server {
            addr: bound,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the server's thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts connections for ever, each served on a task of its own.
async fn serve(mut listener: LimitedListener, app: Router, options: ServeOptions) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    loop {
        let (io, peer) = listener.accept().await;
        let connection =
            http.serve_connection(TokioIo::new(io), TowerToHyperService::new(app.clone()));
        tokio::spawn(async move {
            // A closed or timed-out connection is routine for a kiosk's viewers.
            if let Err(e) = connection.await {
                tracing::debug!("web view: connection from {peer}: {e}");
            }
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}
