//! Where the pipeline publishes results and frames for the kiosk view: one `watch` slot, replaced
//! without waiting, and the bookkeeping of who is watching (JPEGs are encoded only for viewers,
//! at most `max_fps` a second) and how many streams are open.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use image::RgbImage;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::audience::{Audience, Summary};
use crate::output::FrameResult;
use crate::visits::VisitRecord;

/// Streaming clients (MJPEG + SSE) served at once; more get 503.
pub const MAX_STREAMS: usize = 32;

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
    /// Privacy mode: no frame is ever encoded or served.
    private: bool,
    audience: Mutex<Audience>,
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
                private: false,
                audience: Mutex::default(),
            }),
        }
    }

    /// A hub for privacy mode: results only; it never wants a frame, drops any it is given, and
    /// the server answers the frame routes with 404.
    pub fn private(max_fps: u32) -> Self {
        let mut hub = Hub::new(max_fps);
        if let Some(inner) = Arc::get_mut(&mut hub.inner) {
            inner.private = true;
        }
        hub
    }

    /// Whether this hub is in privacy mode.
    pub fn is_private(&self) -> bool {
        self.inner.private
    }

    fn now_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64
    }

    /// Marks that a client asked for frames now.
    pub(super) fn viewer_seen(&self) {
        self.inner
            .viewer_seen_ms
            .store(self.now_ms().max(1), Ordering::Relaxed);
    }

    /// Whether the next frame should be encoded: someone watches, and the rate allows it.
    pub fn wants_frame(&self) -> bool {
        if self.inner.private {
            return false;
        }
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
        let frame = frame.filter(|_| !self.inner.private);
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

    /// Adds a frame's faces (none for the end of the input) and the visits that ended with it
    /// to the audience figures.
    pub fn record(&self, time_s: f64, result: Option<&FrameResult>, visits: &[VisitRecord]) {
        let mut audience = self
            .inner
            .audience
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(faces) = result.and_then(|r| r.faces.as_deref()) {
            audience.frame(time_s, faces);
        }
        audience.visits(visits);
    }

    /// The audience figures now.
    pub fn audience(&self) -> Summary {
        let audience = self
            .inner
            .audience
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        audience.summary()
    }

    /// A receiver of every publication from now on (and the current one).
    pub(super) fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.inner.tx.subscribe()
    }

    /// A stream's start: one of the `MAX_STREAMS` permits (held for the stream's life), the
    /// viewer marked seen, and a receiver of the frames. `None` when every permit is taken.
    pub(super) fn open_stream(&self) -> Option<(watch::Receiver<Snapshot>, OwnedSemaphorePermit)> {
        let permit = Arc::clone(&self.inner.streams).try_acquire_owned().ok()?;
        self.viewer_seen();
        Some((self.subscribe(), permit))
    }
}

impl crate::output::Sink for Hub {
    fn name(&self) -> &str {
        "the kiosk view"
    }

    /// Records the frame for the audience figures and publishes it; never fails (a viewer that
    /// cannot keep up misses frames, alone).
    fn write(&mut self, finished: &crate::output::Finished<'_>) -> std::io::Result<()> {
        self.record(finished.time_s, finished.result, finished.visits);
        if let Some(result) = finished.result {
            match serde_json::to_string(result) {
                Ok(json) => self.publish(json, finished.pixels),
                Err(e) => tracing::warn!("cannot publish a result: {e}"),
            }
        }
        Ok(())
    }
}
