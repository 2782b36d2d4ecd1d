//! The kiosk view: a small local web server showing the live frames with boxes, landmarks and
//! labels, and the JSON results as Server-Sent Events for other programs.
//!
//! Routes (GET only; anything else is 404 or 405):
//! - `/`: the page (MJPEG frames, an overlay drawn from the results);
//! - `/frame.jpg`: the latest frame;
//! - `/stream.mjpg`: the frames as `multipart/x-mixed-replace` JPEGs;
//! - `/events`: every result as an SSE `data:` line (edge-fer's JSON line);
//! - `/latest`: the most recent result as JSON.
//!
//! The pipeline never waits for the server: it replaces the latest snapshot (a `watch` channel:
//! one slot per client), so a slow or vanished client misses frames, alone. At most
//! [`MAX_CONNECTIONS`] connections are open and [`MAX_STREAMS`] of them streaming at once. JPEGs are encoded only
//! while someone has asked for them in the last few seconds, at most `max_fps` a second. Tokio runs
//! on the server's own thread; the pipeline's threads stay plain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream};
use image::RgbImage;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

const PAGE: &str = include_str!("index.html");

/// Streaming clients (MJPEG + SSE) served at once; more get 503.
pub const MAX_STREAMS: usize = 32;

/// Open connections at once; further ones wait in the kernel's accept queue until one closes.
pub const MAX_CONNECTIONS: usize = 64;

/// JPEGs are encoded while a client asked for frames this recently.
const VIEWER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the pipeline last published.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The frame's result, as edge-fer's JSON line (without the newline).
    pub json: Option<Arc<str>>,
    /// The frame as JPEG, when a viewer wanted frames.
    pub jpeg: Option<Bytes>,
}

/// Where the pipeline publishes results for the server; cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    tx: watch::Sender<Snapshot>,
    /// When a client last asked for frames, ms since `epoch`.
    viewer_seen_ms: AtomicU64,
    epoch: Instant,
    min_frame_gap_ms: u64,
    /// When the last JPEG was encoded, ms since `epoch` (0: never).
    last_jpeg_ms: AtomicU64,
    streams: Arc<Semaphore>,
}

impl Hub {
    /// A hub that encodes at most `max_fps` JPEGs a second.
    pub fn new(max_fps: u32) -> Self {
        let (tx, _) = watch::channel(Snapshot::default());
        Hub {
            inner: Arc::new(HubInner {
                tx,
                viewer_seen_ms: AtomicU64::new(0),
                epoch: Instant::now(),
                min_frame_gap_ms: 1000 / u64::from(max_fps.max(1)),
                last_jpeg_ms: AtomicU64::new(0),
                streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            }),
        }
    }

    fn now_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64
    }

    fn viewer_seen(&self) {
        self.inner
            .viewer_seen_ms
            .store(self.now_ms().max(1), Ordering::Relaxed);
    }

    /// Whether the next frame should be encoded: someone watches, and the rate allows it.
    pub fn wants_frame(&self) -> bool {
        let now = self.now_ms();
        let seen = self.inner.viewer_seen_ms.load(Ordering::Relaxed);
        if seen == 0 || now.saturating_sub(seen) > VIEWER_TIMEOUT.as_millis() as u64 {
            return false;
        }
        let last = self.inner.last_jpeg_ms.load(Ordering::Relaxed);
        last == 0 || now.saturating_sub(last) >= self.inner.min_frame_gap_ms
    }

    /// Publishes a result (its JSON line) and, when given, its frame; never blocks.
    pub fn publish(&self, json: String, frame: Option<&RgbImage>) {
        let jpeg = frame.and_then(|rgb| {
            let mut bytes = Vec::with_capacity(64 * 1024);
            let encoded = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 80)
                .encode_image(rgb);
            match encoded {
                Ok(()) => {
                    let now = self.now_ms().max(1);
                    self.inner.last_jpeg_ms.store(now, Ordering::Relaxed);
                    Some(Bytes::from(bytes))
                }
                Err(e) => {
                    tracing::warn!("cannot encode the frame for the web view: {e}");
                    None
                }
            }
        });
        self.inner.tx.send_modify(|s| {
            s.json = Some(Arc::from(json));
            if jpeg.is_some() {
                s.jpeg = jpeg;
            }
        });
    }

    fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.inner.tx.subscribe()
    }

    /// A stream's start: one of the `MAX_STREAMS` permits (held for the stream's life), the
    /// viewer marked seen, and a receiver of the frames. `None` when every permit is taken.
    fn open_stream(&self) -> Option<(watch::Receiver<Snapshot>, OwnedSemaphorePermit)> {
        let permit = Arc::clone(&self.inner.streams).try_acquire_owned().ok()?;
        self.viewer_seen();
        Some((self.subscribe(), permit))
    }
}

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
                        Ok(l) => LimitedListener {
                            inner: l,
                            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
                        },
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

fn router(hub: Hub) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/frame.jpg", get(frame_jpeg))
        .route("/stream.mjpg", get(mjpeg))
        .route("/events", get(events))
        .route("/latest", get(latest))
        .layer(axum::extract::DefaultBodyLimit::max(1024))
        .with_state(hub)
}

/// The page, with the latest result written in (so the first paint already shows it).
async fn page(State(hub): State<Hub>) -> Html<String> {
    hub.viewer_seen();
    let json = hub.subscribe().borrow().json.clone();
    // Inside <script>, "</" could end the element; JSON allows "<\/" for it.
    let initial = json.map_or("null".to_string(), |j| j.replace("</", "<\\/"));
    Html(PAGE.replacen("/*INITIAL*/null", &initial, 1))
}

/// The latest frame as one JPEG, waiting briefly for one to be encoded if there is none yet.
async fn frame_jpeg(State(hub): State<Hub>) -> Response {
    hub.viewer_seen();
    let mut rx = hub.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(jpeg) = rx.borrow_and_update().jpeg.clone() {
            return (
                [
                    (header::CONTENT_TYPE, "image/jpeg"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                jpeg,
            )
                .into_response();
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => hub.viewer_seen(),
            _ => return (StatusCode::SERVICE_UNAVAILABLE, "no frame yet\n").into_response(),
        }
    }
}

async fn latest(State(hub): State<Hub>) -> Response {
    let json = hub.subscribe().borrow().json.clone();
    match json {
        Some(json) => (
            [(header::CONTENT_TYPE, "application/json")],
            json.to_string(),
        )
            .into_response(),
        None => (StatusCode::NO_CONTENT, "").into_response(),
    }
}

fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        "too many viewers\n",
    )
        .into_response()
}

async fn events(State(hub): State<Hub>) -> Response {
    let Some((rx, permit)) = hub.open_stream() else {
        return busy();
    };
    // Every publication carries a result, so each change is one event; the stream ends with
    // the pipeline (the sender is dropped).
    let updates = stream::unfold((rx, hub, permit), |(mut rx, hub, permit)| async move {
        rx.changed().await.ok()?;
        hub.viewer_seen();
        let json = rx.borrow_and_update().json.clone()?;
        let event = Event::default().data(json.as_ref());
        Some((Ok::<_, Infallible>(event), (rx, hub, permit)))
    });
    Sse::new(updates)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn mjpeg(State(hub): State<Hub>) -> Response {
    let Some((rx, permit)) = hub.open_stream() else {
        return busy();
    };
    let parts = mjpeg_parts(rx, hub, permit);
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            "multipart/x-mixed-replace; boundary=frame",
        )
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(parts))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn mjpeg_parts(
    rx: watch::Receiver<Snapshot>,
    hub: Hub,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = std::result::Result<Bytes, Infallible>> {
    stream::unfold(
        (rx, hub, permit, None::<Bytes>),
        |(mut rx, hub, permit, sent)| async move {
            loop {
                // The current frame first (a new viewer sees something at once), then changes.
                let jpeg = rx.borrow_and_update().jpeg.clone();
                hub.viewer_seen();
                if let Some(jpeg) = jpeg.filter(|j| sent.as_ref() != Some(j)) {
                    let mut part = Vec::with_capacity(jpeg.len() + 100);
                    part.extend_from_slice(
                        format!(
                            "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                            jpeg.len()
                        )
                        .as_bytes(),
                    );
                    part.extend_from_slice(&jpeg);
                    part.extend_from_slice(b"\r\n");
                    return Some((Ok(Bytes::from(part)), (rx, hub, permit, Some(jpeg))));
                }
                // Wake now and then even without frames, so a viewer keeps frames being encoded.
                let waited = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
                if let Ok(Err(_)) = waited {
                    return None; // The pipeline has ended.
                }
            }
        },
    )
}

/// A TCP listener that holds at most [`MAX_CONNECTIONS`] connections open: a crowd of clients
/// (or one misbehaving program) cannot take unbounded sockets, memory or tasks.
struct LimitedListener {
    inner: tokio::net::TcpListener,
    slots: Arc<Semaphore>,
}

/// A connection holding one of the listener's slots until it closes.
struct Limited {
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
