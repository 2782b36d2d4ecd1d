//! Keeps a live source going when its device goes away: a kiosk camera that is unplugged, reset
//! by a flaky USB hub or taken by another program comes back without anyone restarting edge-fer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{FailedFrame, Frame, FrameSource};
use crate::error::Result;

/// How long to wait between attempts to reopen a lost source: doubling from `initial` up to
/// `max`, and back to `initial` once it delivers again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait after a failed attempt.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

/// Waits of this many attempts are remembered (for logs and tests); older ones are forgotten so a
/// camera gone for a month does not grow memory.
const WAITS_KEPT: usize = 64;

/// A live source that reopens itself when it ends (the device went away), waiting with
/// exponential back-off between attempts. Frame indices go on counting across reconnections.
/// Ends only when `stop` is set.
pub struct Reconnecting<F> {
    open: F,
    current: Option<Box<dyn FrameSource>>,
    backoff: Backoff,
    delay: Duration,
    stop: Arc<AtomicBool>,
    next: u64,
    name: String,
    lost_since: Option<Instant>,
    reconnects: prometheus_client::metrics::counter::Counter,
    waits: Vec<Duration>,
}

impl<F> Reconnecting<F>
where
    F: FnMut() -> Result<Box<dyn FrameSource>>,
{
    /// Wraps an already opened source. `open` makes a new one after a loss; `name` is used in
    /// logs (e.g. `camera 0`).
    pub fn new(
        first: Box<dyn FrameSource>,
        open: F,
        name: impl Into<String>,
        backoff: Backoff,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Reconnecting {
            open,
            current: Some(first),
            backoff,
            delay: backoff.initial,
            stop,
            next: 0,
            name: name.into(),
            lost_since: None,
            reconnects: Default::default(),
            waits: Vec::new(),
        }
    }

    /// How many times the source was reopened after a loss.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.get()
    }

    /// Counts reconnections into `counter` (a metric shared with `/metrics`).
    pub fn counting_into(mut self, counter: prometheus_client::metrics::counter::Counter) -> Self {
        self.reconnects = counter;
        self
    }

    /// The waits between failed attempts so far, oldest first (the last 64).
    pub fn waits(&self) -> &[Duration] {
        &self.waits
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps `delay` in short steps, so a stop request is not held up by a long back-off.
    fn wait(&mut self) {
        if self.waits.len() == WAITS_KEPT {
            self.waits.remove(0);
        }
        self.waits.push(self.delay);
        let until = Instant::now() + self.delay;
        while !self.stopped() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        self.delay = (self.delay * 2).min(self.backoff.max);
    }

    /// Tries to reopen until it works or a stop is requested.
    fn reopen(&mut self) -> Option<Box<dyn FrameSource>> {
        while !self.stopped() {
            match (self.open)() {
                Ok(source) => {
                    let gone = self.lost_since.take().map(|t| t.elapsed());
                    self.reconnects.inc();
                    self.delay = self.backoff.initial;
                    tracing::warn!(
                        "{} is back after {:.1} s; resuming",
                        self.name,
                        gone.unwrap_or_default().as_secs_f64()
                    );
                    return Some(source);
                }
                Err(e) => {
                    tracing::warn!(
                        "{} is still unavailable ({}); next attempt in {:.1} s",
                        self.name,
                        e.chain(),
                        self.delay.as_secs_f64()
                    );
                    self.wait();
                }
            }
        }
        None
    }
}

impl<F> FrameSource for Reconnecting<F>
where
    F: FnMut() -> Result<Box<dyn FrameSource>>,
{
    fn next_frame(&mut self) -> Option<std::result::Result<Frame, FailedFrame>> {
        loop {
            if self.stopped() {
                return None;
            }
            let source = match &mut self.current {
                Some(source) => source,
                None => {
                    self.current = Some(self.reopen()?);
                    continue;
                }
            };
            let index = self.next;
            match source.next_frame() {
                None => {
                    tracing::error!("{} was lost; reconnecting", self.name);
                    self.current = None;
                    self.lost_since = Some(Instant::now());
                }
                Some(Ok(mut frame)) => {
                    self.next += 1;
                    frame.index = index;
                    return Some(Ok(frame));
                }
                Some(Err(mut failed)) => {
                    self.next += 1;
                    failed.index = index;
                    return Some(Err(failed));
                }
            }
        }
    }

    fn is_live(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        match &self.current {
            Some(source) => format!("{} (reconnects when lost)", source.describe()),
            None => format!("{} (reconnecting)", self.name),
        }
    }
}
