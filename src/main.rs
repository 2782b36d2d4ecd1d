//! The `edge-fer` command: flags in, pipeline run, exit code out.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{ArgGroup, CommandFactory, FromArgMatches, Parser, ValueEnum};
use edge_fer::capture::DEFAULT_FRAME_RATE;
use edge_fer::capture::{
    list_cameras, Backoff, CameraConfig, CameraSource, ImageFiles, Reconnecting,
};
use edge_fer::config_file;
use edge_fer::detect::{DetectorChoice, DEFAULT_LANDMARKS_MODEL, LANDMARKS_MODEL_ENV};
use edge_fer::metrics::{BuildInfo, Counters, Metrics, MqttCounters};
use edge_fer::mqtt::{BrokerUrl, MqttConfig, Publisher, DEFAULT_OUTBOX};
use edge_fer::output::Format;
use edge_fer::pipeline::{self, PipelineConfig, VisitsSink};
use edge_fer::pose::{Attention, PoseConfig};
use edge_fer::serve::{Hub, ServeOptions, Server, DEFAULT_HEADER_TIMEOUT_S};
use edge_fer::track::TrackConfig;
use edge_fer::visits::VisitConfig;
use edge_fer::{Classifier, FaceFinder, FaceFinderConfig, FrameSource};

/// Recognise facial expressions in a camera stream or in image files.
///
/// Prints one JSON object per frame (faces, 68 landmarks, expression probabilities) or, with
/// --format text, one line per face. Exit status: 0 on success, 1 if the run could not start, 2 if
/// some frames could not be processed (each is reported in the output), 3 if the camera was lost
/// with --exit-on-camera-loss. SIGINT or SIGTERM stop capture, finish the frames in flight and exit
/// 0; a second one exits at once.
///
/// Every long option can also be set in a TOML file (--config FILE: `max-faces = 4`,
/// `privacy = true`, `image = ["a.png"]`) or an environment variable (EDGE_FER_MAX_FACES=4).
/// Precedence: flag, then environment, then file, then default.
#[derive(Debug, Parser)]
#[command(name = "edge-fer", version, about, long_about = None)]
#[command(group(ArgGroup::new("input").required(true).args(["camera", "image", "frames", "list_cameras"])))]
struct Cli {
    /// Read options from this TOML file. Keys are the long options' names: `max-faces = 4`,
    /// `privacy = true`, `image = ["a.png", "b.png"]`, `serve = true` (its default address).
    /// Each option's environment variable (shown with it, e.g. EDGE_FER_MAX_FACES) wins over the
    /// file, and a flag over both. Unknown keys are refused.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print the options given (by flags, environment and --config) as a config file, then exit.
    #[arg(long)]
    print_config: bool,

    /// Read frames from camera N (/dev/videoN on Linux).
    #[arg(long, value_name = "N")]
    camera: Option<u32>,

    /// Process these image files, in order.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    image: Vec<PathBuf>,

    /// Process the images in DIR, in file name order.
    #[arg(long, value_name = "DIR")]
    frames: Option<PathBuf>,

    /// List the cameras that can be opened, then exit.
    #[arg(long)]
    list_cameras: bool,

    /// Model card (model.json beside its ONNX file). Default: the built-in FER2013 mini-Xception.
    #[arg(long, value_name = "CARD")]
    model: Option<PathBuf>,

    /// Threads each face's classification runs on. Default: all cores for a large model (from
    /// 0.5 G multiply-adds per face, e.g. a ResNet-18 export), 1 for a small one (the built-in
    /// model, which more threads only slow down).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    classifier_threads: Option<u32>,

    /// The images are already aligned face crops (e.g. RAF-DB's aligned set, `train prepare`'s
    /// crops): classify each whole image as one face, without detection.
    #[arg(long, conflicts_with = "camera")]
    aligned: bool,

    /// dlib 68-point landmark model.
    #[arg(long, value_name = "FILE", env = LANDMARKS_MODEL_ENV, default_value = DEFAULT_LANDMARKS_MODEL)]
    landmarks_model: PathBuf,

    /// Face detector: dlib's HOG, dlib's CNN (mmod; needs --detector-model), or MediaPipe's
    /// BlazeFace (built in). Default: blazeface for a camera, hog for files.
    #[arg(long, value_enum)]
    detector: Option<DetectorKind>,

    /// The detector's model file: mmod_human_face_detector.dat for mmod
    /// (models/dlib-mmod-face-detector/), an ONNX file for blazeface (default: the built-in one).
    #[arg(long, value_name = "FILE")]
    detector_model: Option<PathBuf>,

    /// Same as --detector mmod --detector-model FILE.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["detector", "detector_model"])]
    cnn_detector: Option<PathBuf>,

    /// Keep at most N faces per frame, largest first.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    max_faces: u32,

    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
    format: OutputFormat,

    /// Camera: requested width in pixels (the camera picks its closest mode).
    #[arg(long, value_name = "PX", default_value_t = 640)]
    width: u32,

    /// Camera: requested height in pixels.
    #[arg(long, value_name = "PX", default_value_t = 480)]
    height: u32,

    /// Camera: requested frames per second.
    #[arg(long, value_name = "FPS", default_value_t = 30)]
    fps: u32,

    /// Detect faces on every Nth frame and follow them between detections by re-fitting their
    /// landmarks (much cheaper). Default: 5 for a camera, 1 (every frame) for files.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    detect_every: Option<u32>,

    /// HOG and mmod: detect on a copy of the frame scaled down to this width (landmarks are still
    /// fitted at full resolution); 0 detects at full resolution. Faces under ~60 px at this scale
    /// are missed. Default: 480 for a camera, 0 for files. BlazeFace scales every frame to its
    /// 128 px input itself.
    #[arg(long, value_name = "PX")]
    detect_width: Option<u32>,

    /// Smooth each tracked face's probabilities over frames: the weight of the newest frame, in
    /// (0, 1]; 1 turns smoothing off. Default: 0.5 for a camera, 1 for files.
    #[arg(long, value_name = "A", value_parser = parse_smoothing)]
    smooth: Option<f32>,

    /// Head pose: the camera's focal length in pixels at the frame's size. Default: the frame's
    /// width (a horizontal field of view of about 53 degrees, an ordinary webcam's).
    #[arg(long, value_name = "PX", value_parser = parse_focal, allow_hyphen_values = true)]
    focal_length: Option<f64>,

    /// Attention: a face is `looking` when its head points within DEG degrees of the screen.
    #[arg(long, value_name = "DEG", default_value_t = Attention::default().cone, value_parser = parse_cone, allow_hyphen_values = true)]
    attention_cone: f32,

    /// Attention: the head pitch, relative to the line to the camera, of someone facing the
    /// middle of the screen. Negative when the camera is above the screen (e.g. -15), positive
    /// when below.
    #[arg(long, value_name = "DEG", default_value_t = Attention::default().pitch_offset, value_parser = parse_pitch_offset, allow_hyphen_values = true)]
    attention_pitch: f32,

    /// Write one JSON line per visit (a person's stay, which may span several tracks) to FILE, or
    /// `-` for standard output, as each visit ends: dwell, seconds looking, frames, the mean
    /// expression while looking.
    #[arg(long, value_name = "FILE|-")]
    visits: Option<PathBuf>,

    /// Visits: a visit ends when none of its tracks has been seen for SECS seconds; a new track
    /// near where one of its tracks ended, within SECS, rejoins it.
    #[arg(long, value_name = "SECS", default_value_t = VisitConfig::default().timeout_s, value_parser = parse_visit_timeout, allow_hyphen_values = true)]
    visit_timeout: f64,

    /// Images and frames folders: the frame rate they are timed at (frame i at i / FPS seconds),
    /// for visits' times and dwell. A camera's frames carry their capture time instead.
    #[arg(long, value_name = "FPS", default_value_t = DEFAULT_FRAME_RATE, value_parser = parse_frame_rate, allow_hyphen_values = true, conflicts_with = "camera")]
    frame_rate: f64,

    /// Privacy mode: no pixels leave the process or touch the disk (the kiosk view's /frame.jpg
    /// and /stream.mjpg answer 404 and its page draws boxes on a blank canvas) and no output has
    /// landmarks; boxes, pose, labels and probabilities remain. The packaged service's default.
    #[arg(long)]
    privacy: bool,

    /// Print each stage's latency (median/p95/max) and the dropped frames to stderr every SECS
    /// seconds and on exit. SIGUSR1 prints them at any time.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    stats: Option<u64>,

    /// Serve the kiosk view (live frames with boxes, landmarks and labels) and the results as
    /// Server-Sent Events on ADDR: http://ADDR/ (page), /events (SSE), /latest (JSON),
    /// /stream.mjpg (frames). Without a value: 127.0.0.1:8080, reachable from this machine only;
    /// give 0.0.0.0:PORT to open it to the network.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
    serve: Option<SocketAddr>,

    /// Health metrics for Prometheus (frames, drops, faces, stage latencies, camera reconnects,
    /// MQTT queue) on http://ADDR/metrics. The kiosk view (--serve) also has them on /metrics;
    /// this serves them alone, e.g. without the view.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,

    /// Publish to an MQTT broker: mqtt://[USER:PASS@]HOST[:PORT][/PREFIX] or mqtts://... (TLS).
    /// Topics PREFIX/DEVICE/status (retained online/offline), PREFIX/DEVICE/frame (results, QoS
    /// 0, rate-limited) and PREFIX/DEVICE/visit (visit records, QoS 1, kept until acknowledged).
    /// PREFIX defaults to edge-fer.
    #[arg(long, value_name = "URL", value_parser = parse_mqtt_url)]
    mqtt: Option<BrokerUrl>,

    /// MQTT: a file whose first line is USER:PASSWORD (keeps the password out of the command
    /// line and the process list).
    #[arg(long, value_name = "FILE", requires = "mqtt")]
    mqtt_credentials: Option<PathBuf>,

    /// MQTT over TLS (mqtts://): trust the certificates in this PEM file instead of the system's.
    #[arg(long, value_name = "FILE", requires = "mqtt")]
    mqtt_ca: Option<PathBuf>,

    /// MQTT: this device's id in topics and payloads. Default: the host name.
    #[arg(long, value_name = "ID")]
    device_id: Option<String>,

    /// MQTT: per-frame results published per second at most, on the frames' clock; 0 publishes
    /// none (visits and status only).
    #[arg(long, value_name = "FPS", default_value_t = 1.0, value_parser = parse_mqtt_frame_rate, allow_hyphen_values = true)]
    mqtt_frame_rate: f64,

    /// MQTT: visit records kept while the broker is away; when full, the oldest is dropped and
    /// counted.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_OUTBOX as u64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    mqtt_outbox: u64,

    /// MQTT: start even if the broker cannot be reached, and keep trying (records wait in the
    /// outbox). Without it an unreachable broker at start is an error.
    #[arg(long, requires = "mqtt")]
    mqtt_wait: bool,

    /// MQTT: at exit, seconds to wait for the broker to acknowledge the records still queued.
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    mqtt_drain: u64,

    /// Web servers (--serve, --metrics): seconds a client has to send a request's headers, and a
    /// kept-alive connection may stay idle, before it is closed. Open streams are not cut.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_HEADER_TIMEOUT_S, value_parser = clap::value_parser!(u64).range(1..=3600))]
    serve_timeout: u64,

    /// Images and frames folders: start again after the last one, until stopped (a stand-in
    /// camera, e.g. for the kiosk view).
    #[arg(long = "loop", conflicts_with = "camera")]
    repeat: bool,

    /// Camera: exit (status 3) when the camera is lost, instead of waiting for it to come back
    /// (retrying with back-off from 0.5 s to 30 s). For a service manager that restarts it.
    #[arg(long, requires = "camera")]
    exit_on_camera_loss: bool,

    /// Stop after N frames.
    #[arg(long, value_name = "N")]
    max_frames: Option<u64>,

    /// Log more (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DetectorKind {
    /// dlib's HOG + linear SVM.
    Hog,
    /// dlib's CNN (max-margin object detection).
    Mmod,
    /// MediaPipe's short-range BlazeFace, run by tract.
    Blazeface,
}

/// The detector the flags ask for, or the default for the source.
fn detector_choice(cli: &Cli, from_camera: bool) -> anyhow::Result<DetectorChoice> {
    if let Some(file) = &cli.cnn_detector {
        return Ok(DetectorChoice::Mmod(file.clone()));
    }
    let kind = cli.detector.unwrap_or(if from_camera {
        CAMERA_DETECTOR
    } else {
        FILES_DETECTOR
    });
    Ok(match kind {
        DetectorKind::Hog => {
            if let Some(file) = &cli.detector_model {
                anyhow::bail!(
                    "--detector-model {}: the HOG detector is built in and takes no model file",
                    file.display()
                );
            }
            DetectorChoice::Hog
        }
        DetectorKind::Mmod => match &cli.detector_model {
            Some(file) => DetectorChoice::Mmod(file.clone()),
            None => anyhow::bail!(
                "--detector mmod needs its model: --detector-model models/dlib-mmod-face-detector/mmod_human_face_detector.dat"
            ),
        },
        DetectorKind::Blazeface => DetectorChoice::BlazeFace(cli.detector_model.clone()),
    })
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    /// One JSON object per frame per line.
    Json,
    /// One readable line per face.
    Text,
}

/// The prefix of every option's environment variable.
const ENV_PREFIX: &str = "EDGE_FER";

/// Flags, environment and config file, merged and checked by clap.
fn parse_options() -> Result<Cli, ExitCode> {
    let command = config_file::with_env(Cli::command(), ENV_PREFIX, &["print-config"]);
    let layered =
        config_file::layer(&command, std::env::args_os().collect(), "config").map_err(|e| {
            eprintln!("edge-fer: {e}");
            ExitCode::from(2)
        })?;
    let matches = match command.clone().try_get_matches_from(&layered.args) {
        Ok(matches) => matches,
        Err(e) => match layered.blame(&e) {
            Some(file) => {
                eprintln!("edge-fer: {file}");
                return Err(ExitCode::from(2));
            }
            None => e.exit(),
        },
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if cli.print_config {
        print!(
            "{}",
            config_file::render(&command, &matches, &["config", "print-config"])
        );
        return Err(ExitCode::SUCCESS);
    }
    Ok(cli)
}

fn main() -> ExitCode {
    let cli = match parse_options() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    init_logging(cli.verbose);
    match run(&cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("edge-fer: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// A camera's detection width unless --detect-width says otherwise. Measured (BENCHMARKS.md,
/// "Detection width"): at 480 px HOG still finds a face 80 px wide in a 640x480 frame, a kiosk
/// visitor's face is larger, and detection costs about 30% less than at 640. Files keep full
/// resolution: a photo's faces can be any size.
const CAMERA_DETECT_WIDTH: u32 = 480;

/// The detectors used unless --detector says otherwise (README, "Choosing a detector"; measured in
/// BENCHMARKS.md): BlazeFace finds a face as small as HOG does at a camera's detection width (80 px
/// in a 640x480 frame) in a sixth of the time; in files HOG at full resolution finds smaller faces
/// (60 px), and a photo's faces can be any size.
const CAMERA_DETECTOR: DetectorKind = DetectorKind::Blazeface;
const FILES_DETECTOR: DetectorKind = DetectorKind::Hog;

fn parse_smoothing(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(a) if a > 0.0 && a <= 1.0 => Ok(a),
        _ => Err(format!("{text:?} is not a weight in (0, 1]")),
    }
}

fn parse_number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a number"))
}

fn parse_visit_timeout(text: &str) -> Result<f64, String> {
    checked_number(text, |timeout_s| {
        VisitConfig {
            timeout_s,
            ..VisitConfig::default()
        }
        .validate()
    })
}

fn parse_mqtt_url(text: &str) -> Result<BrokerUrl, String> {
    BrokerUrl::parse(text).map_err(|e| e.to_string())
}

fn parse_mqtt_frame_rate(text: &str) -> Result<f64, String> {
    checked_number(text, |fps: f64| {
        if (0.0..=1000.0).contains(&fps) {
            Ok(())
        } else {
            Err(format!(
                "{fps} is out of range: give 0 to 1000 results per second"
            ))
        }
    })
}

fn parse_frame_rate(text: &str) -> Result<f64, String> {
    checked_number(text, |fps: f64| {
        if fps > 0.0 && fps <= 1000.0 {
            Ok(())
        } else {
            Err(format!(
                "frame rate {fps} is out of range: give (0, 1000] frames per second"
            ))
        }
    })
}

/// A number that the library's own range check (`validate`, given the number) accepts.
fn checked_number<T: std::str::FromStr + Copy>(
    text: &str,
    validate: impl FnOnce(T) -> Result<(), String>,
) -> Result<T, String> {
    let value = parse_number(text)?;
    validate(value).map(|()| value)
}

fn parse_focal(text: &str) -> Result<f64, String> {
    checked_number(text, |focal| {
        PoseConfig {
            focal: Some(focal),
            ..PoseConfig::default()
        }
        .validate()
    })
}

fn parse_cone(text: &str) -> Result<f32, String> {
    checked_number(text, |cone| {
        Attention {
            cone,
            ..Attention::default()
        }
        .validate()
    })
}

fn parse_pitch_offset(text: &str) -> Result<f32, String> {
    checked_number(text, |pitch_offset| {
        Attention {
            pitch_offset,
            ..Attention::default()
        }
        .validate()
    })
}

/// Where `--visits` writes: the file (created or truncated now, so a path that cannot be written is
/// reported before the run), or standard output for `-`.
fn visits_sink(path: &std::path::Path) -> anyhow::Result<VisitsSink> {
    let (out, name): (Box<dyn std::io::Write + Send>, String) = if path.as_os_str() == "-" {
        (Box::new(std::io::stdout()), "standard output".into())
    } else {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create the visits file {}", path.display()))?;
        (
            Box::new(std::io::LineWriter::new(file)),
            path.display().to_string(),
        )
    };
    Ok(VisitsSink {
        out: Arc::new(std::sync::Mutex::new(out)),
        name,
    })
}

/// Exit status when the camera was lost and --exit-on-camera-loss was given.
const EXIT_CAMERA_LOST: u8 = 3;

/// SIGINT and SIGTERM set the returned flag, which stops capture; the pipeline drains and the run
/// ends normally. A second signal, while the first is being honoured, exits at once (status 1).
fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the earlier signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
            .context("installing signal handlers")?;
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    Ok(stop)
}

/// SIGUSR1 sets the returned flag; the pipeline prints a stage report and clears it.
fn report_on_sigusr1() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&flag))
        .context("installing the SIGUSR1 handler")?;
    Ok(flag)
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    if cli.list_cameras {
        let cameras = list_cameras();
        if cameras.is_empty() {
            eprintln!("edge-fer: no cameras found");
        }
        for (index, name) in cameras {
            println!("{index}\t{name}");
        }
        return Ok(ExitCode::SUCCESS);
    }

    // Open the source first: a missing camera or empty folder should be reported before the
    // seconds spent loading models.
    let stop = stop_on_signals()?;
    let counters = Counters::default();
    let mut source: Box<dyn FrameSource> = if let Some(index) = cli.camera {
        let config = CameraConfig {
            index,
            width: cli.width,
            height: cli.height,
            fps: cli.fps,
        };
        // The first open must work (a wrong index is a mistake to report); later losses are
        // waited out unless asked not to.
        let camera = Box::new(CameraSource::open(config)?);
        if cli.exit_on_camera_loss {
            camera
        } else {
            Box::new(
                Reconnecting::new(
                    camera,
                    move || Ok(Box::new(CameraSource::open(config)?) as Box<dyn FrameSource>),
                    format!("camera {index}"),
                    Backoff::default(),
                    Arc::clone(&stop),
                )
                .counting_into(counters.camera_reconnects.clone()),
            )
        }
    } else {
        let files = match &cli.frames {
            Some(dir) => ImageFiles::from_dir(dir)?,
            None => ImageFiles::new(cli.image.clone()),
        }
        .with_frame_rate(cli.frame_rate);
        Box::new(if cli.repeat { files.repeating() } else { files })
    };

    // The classifier's plan is optimised while the face models load (BENCHMARKS.md, "start-up").
    let (classifier, finder) = std::thread::scope(|scope| {
        let classifier = scope.spawn(|| {
            match &cli.model {
                Some(card) => Classifier::load(card)
                    .with_context(|| format!("loading model {}", card.display())),
                None => Classifier::builtin().context("loading the built-in model"),
            }?
            .with_threads(cli.classifier_threads.map(|n| n as usize))
            .context("--classifier-threads")
        });
        let finder = if cli.aligned {
            Ok(None)
        } else {
            detector_choice(cli, cli.camera.is_some()).and_then(|detector| {
                FaceFinder::load(&FaceFinderConfig {
                    landmarks_model: cli.landmarks_model.clone(),
                    detector,
                    max_faces: cli.max_faces as usize,
                })
                .map(Some)
                .context("loading face detection")
            })
        };
        let classifier = classifier
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (classifier, finder)
    });
    let (classifier, finder) = (classifier?, finder?);
    tracing::info!(
        source = %source.describe(),
        model = %classifier.card().name,
        classifier_threads = classifier.threads(),
        "starting"
    );

    let mqtt_counters = MqttCounters::default();
    let publisher = match &cli.mqtt {
        Some(url) => {
            let mut mqtt = MqttConfig::new(url.clone());
            mqtt.credentials_file = cli.mqtt_credentials.clone();
            mqtt.ca_file = cli.mqtt_ca.clone();
            if let Some(id) = &cli.device_id {
                mqtt.device = id.clone();
            }
            mqtt.frame_rate = cli.mqtt_frame_rate;
            mqtt.outbox = cli.mqtt_outbox as usize;
            mqtt.wait = cli.mqtt_wait;
            mqtt.drain = Duration::from_secs(cli.mqtt_drain);
            Some(Publisher::start(mqtt, mqtt_counters.clone())?)
        }
        None => None,
    };
    let from_camera = cli.camera.is_some();
    let config = PipelineConfig {
        max_frames: cli.max_frames,
        format: match cli.format {
            OutputFormat::Json => Format::Json,
            OutputFormat::Text => Format::Text,
        },
        progress: std::io::stderr().is_terminal() && !std::io::stdout().is_terminal(),
        stop: Arc::clone(&stop),
        // Camera and file sources differ in what suits them (see the flags' help).
        track: TrackConfig {
            detect_every: cli.detect_every.unwrap_or(if from_camera { 5 } else { 1 }),
            detect_width: cli.detect_width.unwrap_or(if from_camera {
                CAMERA_DETECT_WIDTH
            } else {
                0
            }),
            end_ghosts: true,
        },
        smoothing: cli
            .smooth
            .or(from_camera.then_some(0.5))
            .filter(|&a| a < 1.0),
        times: Arc::default(),
        counters: counters.clone(),
        stats_every: cli.stats.map(Duration::from_secs),
        stats_now: report_on_sigusr1()?,
        publish: cli.serve.map(|_| {
            if cli.privacy {
                Hub::private(15)
            } else {
                Hub::new(15)
            }
        }),
        privacy: cli.privacy,
        mqtt: publisher.as_ref().map(Publisher::sink),
        visit: VisitConfig {
            timeout_s: cli.visit_timeout,
            frame_s: 1.0
                / if cli.camera.is_some() {
                    f64::from(cli.fps.max(1))
                } else {
                    cli.frame_rate
                },
            ..VisitConfig::default()
        },
        visits: cli.visits.as_deref().map(visits_sink).transpose()?,
        pose: PoseConfig {
            focal: cli.focal_length,
            attention: Attention {
                cone: cli.attention_cone,
                pitch_offset: cli.attention_pitch,
            },
        },
    };
    let metrics = Metrics::new(
        &BuildInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            model: classifier.card().name.clone(),
            model_sha256: classifier.card().sha256.clone(),
        },
        &counters,
        &config.times,
    );
    let metrics = Arc::new(match &publisher {
        Some(_) => metrics.with_mqtt(&mqtt_counters),
        None => metrics,
    });
    let serve_options = ServeOptions {
        header_timeout: Duration::from_secs(cli.serve_timeout),
    };
    // Bound before the run starts, so a taken port is reported at once.
    let server = match (cli.serve, &config.publish) {
        (Some(addr), Some(hub)) => {
            let server =
                Server::start(addr, hub.clone(), Some(Arc::clone(&metrics)), serve_options)?;
            eprintln!("edge-fer: kiosk view on http://{}/", server.addr());
            Some(server)
        }
        _ => None,
    };
    let metrics_server = match cli.metrics {
        Some(addr) => {
            let server = Server::metrics(addr, Arc::clone(&metrics), serve_options)?;
            eprintln!("edge-fer: metrics on http://{}/metrics", server.addr());
            Some(server)
        }
        None => None,
    };
    let started = Instant::now();
    let live = source.is_live();
    let stats = pipeline::run(
        source.as_mut(),
        finder,
        classifier,
        Box::new(std::io::stdout()),
        &config,
    )?;
    if stats.stopped {
        eprintln!(
            "edge-fer: stopped by a signal after {} frames",
            stats.frames
        );
    }
    if cli.stats.is_some() || live {
        eprintln!(
            "edge-fer: {}",
            config
                .times
                .report(stats.frames, stats.dropped, started.elapsed())
        );
    }
    if live || stats.dropped > 0 {
        eprintln!(
            "edge-fer: {} frames, {} dropped (the pipeline was busy), {} faces",
            stats.frames, stats.dropped, stats.faces
        );
    }
    tracing::info!(?stats, "done");
    if let Some(publisher) = publisher {
        let broker = publisher.broker().to_string();
        let delivery = publisher.finish();
        eprintln!(
            "edge-fer: MQTT {broker}: {} records delivered, {} dropped (outbox full), {} not delivered",
            delivery.delivered, delivery.dropped, delivery.undelivered
        );
    }
    drop(server);
    drop(metrics_server);
    let reached_max = cli.max_frames.is_some_and(|max| stats.frames >= max);
    if live && !stats.stopped && !stats.output_closed && !reached_max {
        // Only a camera without reconnection ends on its own: it was lost.
        eprintln!(
            "edge-fer: camera {} was lost; exiting (--exit-on-camera-loss)",
            cli.camera.unwrap_or_default()
        );
        return Ok(ExitCode::from(EXIT_CAMERA_LOST));
    }
    if stats.failed > 0 && !stats.output_closed {
        eprintln!(
            "edge-fer: {} of {} frames could not be processed (see their \"error\" lines)",
            stats.failed, stats.frames
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
