//! Where a finished frame goes: the main output's lines, the visits file, the kiosk view, the MQTT
//! broker. The pipeline's output stage hands each frame, in order, to every sink it was given.

use std::io::Write;
use std::sync::{Arc, Mutex};

use image::RgbImage;

use super::{write_result, Format, FrameResult};
use crate::visits::VisitRecord;

/// One frame's outcome as the sinks see it. At the end of the input there is one more, with no
/// result: the visits still open, now ended.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    /// The frame's time on its source's clock ([`crate::Frame::time_s`]).
    pub time_s: f64,
    /// The frame's result; `None` for the end of the input.
    pub result: Option<&'a FrameResult>,
    /// The frame's pixels, when a sink asked for them (the kiosk view, while watched).
    pub pixels: Option<&'a RgbImage>,
    /// Visits that ended with this frame, before it.
    pub visits: &'a [VisitRecord],
}

/// A destination of results.
pub trait Sink: Send {
    /// What it is, in messages (a path, standard output).
    fn name(&self) -> &str;

    /// Takes one frame's outcome.
    ///
    /// # Errors
    /// The destination's I/O error; a closed pipe ([`std::io::ErrorKind::BrokenPipe`]) ends the
    /// run quietly, any other error ends it with the sink's name.
    fn write(&mut self, finished: &Finished<'_>) -> std::io::Result<()>;
}

/// The main output: each frame's result as a JSON line or text, flushed at once.
pub struct Lines {
    out: Box<dyn Write + Send>,
    format: Format,
    name: String,
}

impl Lines {
    /// Writes to `out` (named `name` in errors) in `format`.
    pub fn new(out: Box<dyn Write + Send>, format: Format, name: impl Into<String>) -> Self {
        Lines {
            out,
            format,
            name: name.into(),
        }
    }
}

impl Sink for Lines {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, finished: &Finished<'_>) -> std::io::Result<()> {
        match finished.result {
            Some(result) => write_result(&mut *self.out, result, self.format),
            None => Ok(()),
        }
    }
}

/// Where visit records go, one JSON line each, as each visit ends.
#[derive(Clone)]
pub struct VisitsSink {
    /// The writer (shared, so the settings holding it can be cloned).
    pub out: Arc<Mutex<Box<dyn Write + Send>>>,
    /// Its name in messages (a path, or standard output).
    pub name: String,
}

impl std::fmt::Debug for VisitsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisitsSink")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Sink for VisitsSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, finished: &Finished<'_>) -> std::io::Result<()> {
        if finished.visits.is_empty() {
            return Ok(());
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        for record in finished.visits {
            serde_json::to_writer(&mut *out, record)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    }
}
