//! The `edge-fer` command: flags in, pipeline run, exit code out.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use clap::{ArgGroup, Parser, ValueEnum};
use edge_fer::capture::{
    list_cameras, Backoff, CameraConfig, CameraSource, ImageFiles, Reconnecting,
};
use edge_fer::detect::{DEFAULT_LANDMARKS_MODEL, LANDMARKS_MODEL_ENV};
use edge_fer::output::Format;
use edge_fer::pipeline::{self, PipelineConfig};
use edge_fer::{Classifier, FaceFinder, FaceFinderConfig, FrameSource};

/// Recognise facial expressions in a camera stream or in image files.
///
/// Prints one JSON object per frame (faces, 68 landmarks, expression probabilities) or, with
/// --format text, one line per face. Exit status: 0 on success, 1 if the run could not start, 2 if
/// some frames could not be processed (each is reported in the output), 3 if the camera was lost
/// with --exit-on-camera-loss. SIGINT or SIGTERM stop capture, finish the frames in flight and exit
/// 0; a second one exits at once.
#[derive(Debug, Parser)]
#[command(name = "edge-fer", version, about, long_about = None)]
#[command(group(ArgGroup::new("input").required(true).args(["camera", "image", "frames", "list_cameras"])))]
struct Cli {
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

    /// The images are already aligned face crops (e.g. RAF-DB's aligned set, `train prepare`'s
    /// crops): classify each whole image as one face, without detection.
    #[arg(long, conflicts_with = "camera")]
    aligned: bool,

    /// dlib 68-point landmark model.
    #[arg(long, value_name = "FILE", env = LANDMARKS_MODEL_ENV, default_value = DEFAULT_LANDMARKS_MODEL)]
    landmarks_model: PathBuf,

    /// Detect faces with dlib's CNN (mmod) detector from FILE instead of HOG: slower, handles
    /// more pose (models/dlib-mmod-face-detector/mmod_human_face_detector.dat).
    #[arg(long, value_name = "FILE")]
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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    /// One JSON object per frame per line.
    Json,
    /// One readable line per face.
    Text,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(&cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("edge-fer: {err:#}");
            ExitCode::from(1)
        }
    }
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
            Box::new(Reconnecting::new(
                camera,
                move || Ok(Box::new(CameraSource::open(config)?) as Box<dyn FrameSource>),
                format!("camera {index}"),
                Backoff::default(),
                Arc::clone(&stop),
            ))
        }
    } else if let Some(dir) = &cli.frames {
        Box::new(ImageFiles::from_dir(dir)?)
    } else {
        Box::new(ImageFiles::new(cli.image.clone()))
    };

    let classifier = match &cli.model {
        Some(card) => {
            Classifier::load(card).with_context(|| format!("loading model {}", card.display()))?
        }
        None => Classifier::builtin().context("loading the built-in model")?,
    };
    let finder = if cli.aligned {
        None
    } else {
        Some(
            FaceFinder::load(&FaceFinderConfig {
                landmarks_model: cli.landmarks_model.clone(),
                cnn_model: cli.cnn_detector.clone(),
                max_faces: cli.max_faces as usize,
            })
            .context("loading face detection")?,
        )
    };
    tracing::info!(
        source = %source.describe(),
        model = %classifier.card().name,
        "starting"
    );

    let config = PipelineConfig {
        max_frames: cli.max_frames,
        format: match cli.format {
            OutputFormat::Json => Format::Json,
            OutputFormat::Text => Format::Text,
        },
        progress: std::io::stderr().is_terminal() && !std::io::stdout().is_terminal(),
        stop: Arc::clone(&stop),
    };
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
    if live || stats.dropped > 0 {
        eprintln!(
            "edge-fer: {} frames, {} dropped (the pipeline was busy), {} faces",
            stats.frames, stats.dropped, stats.faces
        );
    }
    tracing::info!(?stats, "done");
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
