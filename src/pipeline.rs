//! The pipeline: capture -> detect + landmarks -> align + classify -> output.
//!
//! Capture runs on the calling thread (camera backends must stay on the thread that opened them);
//! detection, classification and output each run on their own thread, joined by bounded crossbeam
//! channels so a slow stage holds back the ones before it instead of piling up frames. A live
//! source never waits: when detection is still busy with an older frame, the oldest queued frame is
//! dropped and counted. File sources wait, so every frame is processed, in order. A frame that
//! fails anywhere becomes an error result in the output and the run goes on.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::align::align;
use crate::capture::{FailedFrame, Frame, FrameSource};
use crate::classify::{AlignedFace, Classifier};
use crate::detect::{FaceBox, FaceFinder, Landmarks};
use crate::error::{Error, Result};
use crate::metrics::Counters;
use crate::mqtt::MqttSink;
pub use crate::output::VisitsSink;
use crate::output::{FaceResult, Finished, Format, FrameResult, Lines, Sink};
use crate::pose::{Pose, PoseConfig};
use crate::serve::Hub;
use crate::stats::PipelineTimes;
use crate::track::{Smoother, TrackConfig, TrackedFace, Tracker};
use crate::visits::{Sighting, VisitConfig, VisitRecord, Visits};

/// Pipeline settings.
#[derive(Debug, Clone, Default)]
pub struct PipelineConfig {
    /// Stop after this many frames from the source (default: until the source ends).
    pub max_frames: Option<u64>,
    /// How results are written.
    pub format: Format,
    /// Show a progress bar on standard error for file sources (only when it is a terminal).
    pub progress: bool,
    /// Set (by a signal handler, say) to stop reading the source; frames already read are still
    /// processed and written, then the run returns normally.
    pub stop: Arc<AtomicBool>,
    /// How often to detect, and at what width; faces are followed in between.
    pub track: TrackConfig,
    /// Exponential smoothing of each tracked face's probabilities: the weight of the newest
    /// frame, in (0, 1]. `None`: off.
    pub smoothing: Option<f32>,
    /// Where each stage records its latencies (read them during or after the run).
    pub times: Arc<PipelineTimes>,
    /// What the run counts, for `/metrics` (read them during or after the run).
    pub counters: Counters,
    /// Print a stage report to standard error this often.
    pub stats_every: Option<Duration>,
    /// Set (by SIGUSR1) to print a stage report now; cleared once printed.
    pub stats_now: Arc<AtomicBool>,
    /// Also publish every result (and, while someone watches, its frame) to the web view.
    pub publish: Option<Hub>,
    /// How each face's head pose is fitted and whether it looks at the screen.
    pub pose: PoseConfig,
    /// How visits are delimited. Visits are followed when they are written ([`Self::visits`]),
    /// the kiosk view shows them ([`Self::publish`]) or they are published ([`Self::mqtt`]).
    pub visit: VisitConfig,
    /// Summarise each person's stay in visit records, written here as JSON lines.
    pub visits: Option<VisitsSink>,
    /// Also publish results and visit records to an MQTT broker.
    pub mqtt: Option<MqttSink>,
    /// Privacy mode: no landmarks leave the pipeline (every output's faces have none); with
    /// [`crate::serve::Hub::private`], no frame leaves the process.
    pub privacy: bool,
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames read from the source (including failed ones, excluding dropped ones).
    pub frames: u64,
    /// Frames that could not be processed (each reported in the output).
    pub failed: u64,
    /// Live frames dropped because the pipeline was busy.
    pub dropped: u64,
    /// Faces classified.
    pub faces: u64,
    /// Whether the output was closed early (a closed pipe); the run then stops quietly.
    pub output_closed: bool,
    /// Whether the run ended because [`PipelineConfig::stop`] was set.
    pub stopped: bool,
}

enum Item {
    Frame(Frame),
    Failed(FailedFrame),
}

/// A frame's result, with its pixels when the web view wants them, and the visits that ended with
/// it; at the end of the input, the visits still open, with no frame.
struct Done {
    /// The frame's time on its source's clock ([`Frame::time_s`]).
    time_s: f64,
    result: Option<FrameResult>,
    pixels: Option<image::RgbImage>,
    visits: Vec<VisitRecord>,
}

struct Detected {
    frame: Frame,
    /// `None` when frames are already aligned face crops (no detector).
    faces: Option<Vec<TrackedFace>>,
}

/// Runs the pipeline until the source ends, `max_frames` is reached, `stop` is set or the output
/// is closed. Frames already read when it stops are processed and written (drained), so every
/// line of output is whole.
///
/// Without a `finder`, every frame is taken to be an aligned face crop (RAF-DB's aligned set,
/// `train prepare`'s crops): it is resized to the model's input and classified as one face whose
/// box is the whole frame.
///
/// # Errors
/// Only for failures of the run itself (a worker thread panicked, output could not be written for
/// a reason other than a closed pipe). Per-frame failures are written to the output and counted in
/// [`Stats::failed`].
pub fn run(
    source: &mut dyn FrameSource,
    finder: Option<FaceFinder>,
    classifier: Classifier,
    out: Box<dyn Write + Send>,
    config: &PipelineConfig,
) -> Result<Stats> {
    // Small queues: a live source should only ever be a frame or two ahead of detection.
    let (capture_tx, capture_rx) = bounded::<Item>(2);
    let (detect_tx, detect_rx_classify) = bounded::<std::result::Result<Detected, FailedFrame>>(2);
    let (result_tx, result_rx) = bounded::<Done>(4);

    let live = source.is_live();
    // A live source keeps a receiver too, to discard the oldest queued frame. Holding it keeps
    // the channel open even after detection has stopped, so that case watches the thread instead;
    // a file source holds none, and its blocking send fails once detection is gone.
    let stale_rx = live.then(|| capture_rx.clone());
    let (times, track) = (Arc::clone(&config.times), config.track);
    let detect = spawn("detect", move || {
        detect_stage(finder.as_ref(), track, &times, capture_rx, detect_tx)
    })?;
    let (times, smoothing, pose) = (Arc::clone(&config.times), config.smoothing, config.pose);
    let privacy = config.privacy;
    let hub = config.publish.clone();
    let visits = (config.visits.is_some() || config.publish.is_some() || config.mqtt.is_some())
        .then(|| Visits::new(config.visit, classifier.card().labels.clone()));
    let classify = spawn("classify", move || {
        classify_stage(
            &classifier,
            FaceState {
                pose,
                privacy,
                smoother: smoothing.map(Smoother::new),
                visits,
            },
            hub.as_ref(),
            &times,
            detect_rx_classify,
            result_tx,
        )
    })?;
    // Visits that ended before a frame are written first, then the frame.
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(visits) = &config.visits {
        sinks.push(Box::new(visits.clone()));
    }
    if let Some(hub) = &config.publish {
        sinks.push(Box::new(hub.clone()));
    }
    if let Some(mqtt) = &config.mqtt {
        sinks.push(Box::new(mqtt.clone()));
    }
    sinks.push(Box::new(Lines::new(out, config.format, "standard output")));
    let (times, counters) = (Arc::clone(&config.times), config.counters.clone());
    let output = spawn("output", move || {
        output_stage(sinks, result_rx, &times, &counters)
    })?;

    let bar = progress_bar(source, config.progress);
    let mut stats = Stats::default();
    let started = Instant::now();
    let mut last_report = started;
    while config.max_frames.is_none_or(|max| stats.frames < max) && !detect.is_finished() {
        if config.stop.load(Ordering::Relaxed) {
            break;
        }
        let due = config
            .stats_every
            .is_some_and(|every| last_report.elapsed() >= every);
        if due || config.stats_now.swap(false, Ordering::Relaxed) {
            last_report = Instant::now();
            bar.suspend(|| {
                eprintln!(
                    "edge-fer: {}",
                    config
                        .times
                        .report(stats.frames, stats.dropped, started.elapsed())
                )
            });
        }
        let read = Instant::now();
        let Some(next) = source.next_frame() else {
            break;
        };
        config.times.capture.record(read.elapsed());
        stats.frames += 1;
        config.counters.frames.inc();
        bar.inc(1);
        let item = match next {
            Ok(frame) => Item::Frame(frame),
            Err(failed) => Item::Failed(failed),
        };
        let sent = match &stale_rx {
            Some(rx) => {
                send_dropping_stale(&capture_tx, rx, item, &mut stats.dropped, &config.counters)
            }
            None => capture_tx.send(item).is_ok(),
        };
        if !sent {
            break; // Downstream has stopped (closed output).
        }
    }
    drop(capture_tx);
    drop(stale_rx);
    bar.finish_and_clear();

    join(detect)?;
    join(classify)?;
    let written = join(output)?;
    let (faces, failed, closed) = written?;
    stats.faces = faces;
    stats.failed = failed;
    stats.output_closed = closed;
    stats.stopped = config.stop.load(Ordering::Relaxed);
    Ok(stats)
}

fn send_dropping_stale(
    tx: &Sender<Item>,
    rx: &Receiver<Item>,
    item: Item,
    dropped: &mut u64,
    counters: &Counters,
) -> bool {
    match tx.try_send(item) {
        Ok(()) => true,
        Err(TrySendError::Disconnected(_)) => false,
        Err(TrySendError::Full(item)) => {
            if rx.try_recv().is_ok() {
                *dropped += 1;
                counters.dropped.inc();
            }
            tx.send(item).is_ok()
        }
    }
}

fn detect_stage(
    finder: Option<&FaceFinder>,
    track: TrackConfig,
    times: &PipelineTimes,
    rx: Receiver<Item>,
    tx: Sender<std::result::Result<Detected, FailedFrame>>,
) {
    let mut tracker = Tracker::new(track);
    for item in rx {
        let next = match item {
            Item::Frame(frame) => {
                let faces = finder.map(|f| {
                    let (faces, took) = tracker.update(f, &frame.rgb);
                    if faces.first().is_none_or(|f| f.detected) {
                        times.detect.record(took.detect);
                    }
                    times.landmarks.record(took.landmarks);
                    faces
                });
                Ok(Detected { frame, faces })
            }
            Item::Failed(failed) => Err(failed),
        };
        if tx.send(next).is_err() {
            return;
        }
    }
}

/// What the classify stage keeps about faces beyond one frame, and how it judges their pose.
struct FaceState {
    pose: PoseConfig,
    privacy: bool,
    smoother: Option<Smoother>,
    visits: Option<Visits>,
}

fn classify_stage(
    classifier: &Classifier,
    state: FaceState,
    hub: Option<&Hub>,
    times: &PipelineTimes,
    rx: Receiver<std::result::Result<Detected, FailedFrame>>,
    tx: Sender<Done>,
) {
    let FaceState {
        pose,
        privacy,
        mut smoother,
        mut visits,
    } = state;
    let pose = &pose;
    for item in rx {
        let finished = match item {
            Ok(detected) => {
                let (result, ended) = times.classify.time(|| {
                    classify_frame(
                        classifier,
                        pose,
                        privacy,
                        &detected,
                        smoother.as_mut(),
                        visits.as_mut(),
                    )
                });
                // The frame itself is done with here: hand its pixels on rather than copy them.
                let pixels = hub
                    .is_some_and(Hub::wants_frame)
                    .then_some(detected.frame.rgb);
                Done {
                    time_s: detected.frame.time_s,
                    result: Some(result),
                    pixels,
                    visits: ended,
                }
            }
            Err(failed) => Done {
                time_s: 0.0,
                result: Some(failed_result(
                    failed.source,
                    failed.index,
                    failed.timestamp_ms,
                    &failed.error,
                )),
                pixels: None,
                visits: Vec::new(),
            },
        };
        if tx.send(finished).is_err() {
            return;
        }
    }
    // The input has ended (or the run was stopped): so have the visits still open.
    if let Some(visits) = visits.as_mut() {
        let _ = tx.send(Done {
            time_s: 0.0,
            result: None,
            pixels: None,
            visits: visits.finish(),
        });
    }
}

/// The whole per-frame path on one thread: detect faces and landmarks (unless `finder` is `None`:
/// the frame is then an aligned crop), align and classify them. The pipeline runs the same two
/// steps on two threads; this is for callers with a single frame (and the fuzzer).
pub fn process_frame(
    finder: Option<&FaceFinder>,
    classifier: &Classifier,
    frame: Frame,
) -> FrameResult {
    let faces = finder.map(|f| Tracker::new(TrackConfig::default()).update(f, &frame.rgb).0);
    classify_frame(
        classifier,
        &PoseConfig::default(),
        false,
        &Detected { frame, faces },
        None,
        None,
    )
    .0
}

/// Aligns and classifies one frame's faces in one batch; smooths tracked faces' probabilities.
fn classify_frame(
    classifier: &Classifier,
    pose: &PoseConfig,
    privacy: bool,
    detected: &Detected,
    smoother: Option<&mut Smoother>,
    visits: Option<&mut Visits>,
) -> (FrameResult, Vec<VisitRecord>) {
    let Detected { frame, faces } = detected;
    let card = classifier.card();
    let mut kept: Vec<(FaceBox, Option<Landmarks>, Option<u64>)> = Vec::new();
    let mut crops = Vec::new();
    match faces {
        Some(faces) => {
            for TrackedFace { face, track, .. } in faces {
                let mut crop = classifier.blank_crop();
                match align(&frame.rgb, &face.landmarks, &card.alignment, &mut crop) {
                    Ok(_) => {
                        crops.push(AlignedFace(crop));
                        kept.push((face.bbox, Some(face.landmarks), Some(*track)));
                    }
                    Err(e) => {
                        tracing::warn!(source = %frame.source, frame = frame.index, "face skipped: {e}")
                    }
                }
            }
        }
        None => {
            let (w, h) = (card.input.width, card.input.height);
            let crop = if frame.rgb.dimensions() == (w, h) {
                frame.rgb.clone()
            } else {
                image::imageops::resize(&frame.rgb, w, h, image::imageops::FilterType::Triangle)
            };
            crops.push(AlignedFace(crop));
            let whole = FaceBox {
                left: 0,
                top: 0,
                right: i64::from(frame.rgb.width()) - 1,
                bottom: i64::from(frame.rgb.height()) - 1,
            };
            kept.push((whole, None, None));
        }
    }
    let mut probs = match classifier.classify(&crops) {
        Ok(p) => p,
        Err(e) => {
            let failed = failed_result(frame.source.clone(), frame.index, frame.timestamp_ms, &e);
            return (failed, Vec::new());
        }
    };
    let judged: Vec<Option<(Pose, bool)>> = kept
        .iter()
        .map(|(_, landmarks, _)| {
            landmarks
                .as_ref()
                .and_then(|l| pose.judge(l, frame.rgb.width(), frame.rgb.height()))
        })
        .collect();
    // Visits average this frame's own probabilities, before smoothing mixes in earlier frames.
    let ended = match visits {
        Some(visits) => {
            let seen: Vec<Sighting> = kept
                .iter()
                .zip(&probs)
                .zip(&judged)
                .filter_map(|(((bbox, _, track), p), judged)| {
                    Some(Sighting {
                        track: (*track)?,
                        bbox: *bbox,
                        looking: judged.is_some_and(|j| j.1),
                        probs: &p.0,
                    })
                })
                .collect();
            visits.observe(&frame.source, frame.time_s, &seen)
        }
        None => Vec::new(),
    };
    if let Some(smoother) = smoother {
        smoother.next_frame();
        for ((_, _, track), p) in kept.iter().zip(probs.iter_mut()) {
            if let Some(track) = track {
                smoother.smooth(*track, &mut p.0);
            }
        }
    }
    let faces = kept
        .into_iter()
        .zip(probs)
        .zip(judged)
        .map(|(((bbox, landmarks, track), p), judged)| {
            let best = p.argmax();
            FaceResult {
                bbox,
                track,
                // Used above for alignment and pose; in privacy mode they stay here.
                landmarks: landmarks.filter(|_| !privacy),
                pose: judged.map(|j| j.0),
                looking: judged.map(|j| j.1),
                label: card.labels[best].clone(),
                score: p.0[best],
                probs: card
                    .labels
                    .iter()
                    .zip(&p.0)
                    .map(|(l, v)| (l.clone(), serde_json::Value::from(*v)))
                    .collect(),
                entropy: p.entropy(),
            }
        })
        .collect();
    let result = FrameResult {
        source: frame.source.clone(),
        frame: frame.index,
        timestamp_ms: frame.timestamp_ms,
        width: Some(frame.rgb.width()),
        height: Some(frame.rgb.height()),
        faces: Some(faces),
        error: None,
    };
    (result, ended)
}

fn failed_result(source: String, index: u64, timestamp_ms: u64, error: &Error) -> FrameResult {
    let message = error.chain();
    tracing::warn!("{message}");
    FrameResult {
        source,
        frame: index,
        timestamp_ms,
        width: None,
        height: None,
        faces: None,
        error: Some(message),
    }
}

/// Hands each frame's outcome to every sink, in order; returns (faces, failed frames, whether
/// the output was closed early).
fn output_stage(
    mut sinks: Vec<Box<dyn Sink>>,
    rx: Receiver<Done>,
    times: &PipelineTimes,
    counters: &Counters,
) -> Result<(u64, u64, bool)> {
    let (mut faces, mut failed) = (0, 0);
    for done in rx {
        counters.visits.inc_by(done.visits.len() as u64);
        if let Some(result) = &done.result {
            let found = result.faces.as_ref().map_or(0, |f| f.len() as u64);
            faces += found;
            failed += u64::from(result.error.is_some());
            counters.faces.inc_by(found);
            counters.faces_present.set(found as i64);
            counters.failed.inc_by(u64::from(result.error.is_some()));
        }
        let finished = Finished {
            time_s: done.time_s,
            result: done.result.as_ref(),
            pixels: done.pixels.as_ref(),
            visits: &done.visits,
        };
        let written = times.output.time(|| {
            sinks.iter_mut().try_for_each(|sink| {
                sink.write(&finished)
                    .map_err(|e| (sink.name().to_string(), e))
            })
        });
        match written {
            Ok(()) => {}
            Err((_, e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                return Ok((faces, failed, true))
            }
            Err((name, e)) => return Err(Error::io(name, e)),
        }
    }
    Ok((faces, failed, false))
}

fn progress_bar(source: &dyn FrameSource, enabled: bool) -> ProgressBar {
    match source.len_hint() {
        Some(n) if enabled && n > 1 => {
            let bar = ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {pos}/{len} frames {wide_bar} {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        }
        _ => ProgressBar::hidden(),
    }
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|e| Error::io(format!("<{name} thread>"), e))
}

fn join<T>(handle: std::thread::JoinHandle<T>) -> Result<T> {
    let name = handle.thread().name().unwrap_or("pipeline").to_string();
    handle
        .join()
        .map_err(|_| Error::Invalid(format!("the {name} thread panicked")))
}
