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
//!   timeline ([`audience::Summary`]).
//!
//! The pipeline never waits for the server: it replaces the latest snapshot (a `watch` channel:
//! one slot per client), so a slow or vanished client misses frames, alone. At most
//! [`MAX_CONNECTIONS`] connections are open and [`MAX_STREAMS`] of them streaming at once. JPEGs are encoded only
//! while someone has asked for them in the last few seconds, at most `max_fps` a second. Tokio runs
//! on the server's own thread; the pipeline's threads stay plain.

pub mod audience;
mod hub;
mod listener;
mod routes;

use std::net::SocketAddr;
use std::time::Duration;

pub use hub::{Hub, Snapshot, MAX_STREAMS};
pub use listener::MAX_CONNECTIONS;

use crate::error::{Error, Result};
use listener::LimitedListener;
use routes::router;

/// A running server; dropping it (or [`Server::stop`]) shuts it down.
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` now (so a taken port is reported before the run starts) and serves `hub` on
    /// a thread of its own.
    ///
    /// # Errors
    /// [`Error::Serve`] if the address cannot be bound or the thread cannot start.
    pub fn start(addr: SocketAddr, hub: Hub) -> Result<Server> {
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
                    let app = router(hub);
                    tokio::select! {
                        served = axum::serve(listener, app) => {
                            if let Err(e) = served {
                                tracing::error!("web view stopped: {e}");
                            }
                        }
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

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}
