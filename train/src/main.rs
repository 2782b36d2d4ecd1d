//! The `train` command: `inspect` (read a dataset and report what it found, skipped and would
//! flip), `synth` (write synthetic faces with known landmarks), `prepare` (detect, fit landmarks
//! and align a dataset once into a cache), `fit` (train, resumable) and `eval`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use train::data::noise::{inject, Noise, NoiseKind};
use train::data::{affectnet, ferplus, folder, rafdb, ClassSet, Expression, Loaded, Split};

/// `println!` that ends quietly on a closed stdout (`train eval ... | head`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("train: writing standard output: {e}");
            std::process::exit(1);
        }
    }};
}

/// Train expression models for edge-fer.
#[derive(Debug, Parser)]
#[command(name = "train", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read a dataset and report samples per split and class, skipped lines, and noise flips.
    Inspect {
        #[command(subcommand)]
        dataset: Dataset,
        #[command(flatten)]
        options: InspectOptions,
    },
    /// Detect, fit landmarks and align every face of a dataset once, with the runtime's own code,
    /// and cache the crops for `fit --data`.
    Prepare {
        #[command(subcommand)]
        dataset: Dataset,
        /// Cache folder to write.
        #[arg(long, value_name = "DIR", global = true)]
        out: Option<PathBuf>,
        /// Crop side in pixels (224 for a full-size ResNet).
        #[arg(long, default_value_t = 224, global = true)]
        size: u32,
        /// Class set: 7, or 8 with contempt.
        #[arg(long, default_value_t = 7, global = true, value_parser = clap::value_parser!(u8).range(7..=8))]
        classes: u8,
        /// dlib's CNN face detector file instead of HOG (e.g. models/dlib-mmod-face-detector/mmod_human_face_detector.dat).
        #[arg(long, value_name = "FILE", global = true)]
        cnn_model: Option<PathBuf>,
    },
    /// Train LA-Net or the CE baseline on synthetic faces or a prepared cache; writes
    /// config.json, metrics.jsonl, and per epoch a checkpoint and a resumable state into OUT.
    Fit(Box<FitArgs>),
    /// Evaluate a run's newest checkpoint on its clean test set; writes RUN/confusion.csv.
    Eval {
        /// The run's output folder (as given to `fit --out`).
        #[arg(long, value_name = "DIR")]
        run: PathBuf,
    },
    /// Export a run's inference path (no landmark branch) to OUT/model.onnx with the model card
    /// OUT/model.json that `edge-fer --model` reads; checks tract against burn before writing.
    Export {
        /// The run's output folder.
        #[arg(long, value_name = "DIR")]
        run: PathBuf,
        /// The checkpoint to export (default: the run's newest).
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// Folder to write model.onnx and model.json into (created).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The model's name in its card (default: the output folder's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Write a run's clean test crops as OUT/<class>/<index>.png, for `edge-fer --aligned`.
    Crops {
        /// The run's output folder.
        #[arg(long, value_name = "DIR")]
        run: PathBuf,
        /// Folder to write into (created).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write a synthetic dataset: OUT/<class>/<index>.png plus OUT/landmarks.jsonl.
    Synth {
        /// Output folder (created).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Number of faces, cycling through the classes.
        #[arg(long, default_value_t = 700)]
        count: u64,
        /// Image side in pixels.
        #[arg(long, default_value_t = 112)]
        size: u32,
        /// Seed of the stream of faces.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Class set: 7, or 8 with contempt.
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u8).range(7..=8))]
        classes: u8,
    },
}

#[derive(Debug, Args)]
struct FitArgs {
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Continue the run in OUT from its newest good state, with its saved config (other options
    /// are ignored).
    #[arg(long)]
    resume: bool,
    /// A cache from `train prepare`; synthetic faces if absent.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A second cache to test on (default: the test or val split of --data).
    #[arg(long, value_name = "DIR")]
    test_data: Option<PathBuf>,
    /// Training method.
    #[arg(long, value_enum, default_value_t = MethodArg::Lanet)]
    method: MethodArg,
    /// Label noise on the training labels.
    #[arg(long, value_enum)]
    noise: Option<NoiseArg>,
    /// Fraction of training labels to flip.
    #[arg(long, default_value_t = 0.3)]
    noise_rate: f64,
    /// Epochs (LA-Net's 80; the synthetic CPU experiment uses 15).
    #[arg(long, default_value_t = 80)]
    epochs: usize,
    /// Synthetic training faces.
    #[arg(long, default_value_t = 1400)]
    train_faces: u64,
    /// Synthetic test faces.
    #[arg(long, default_value_t = 700)]
    test_faces: u64,
    /// Input crop side (multiple of 32; must match a cache's).
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Backbone width (64 = ResNet-18; the synthetic CPU experiment uses 8).
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// Basic blocks per stage (2 = ResNet-18).
    #[arg(long, default_value_t = 2)]
    blocks: usize,
    /// ResNet-50 backbone (bottleneck blocks 3, 4, 6, 3; --blocks is ignored).
    #[arg(long)]
    resnet50: bool,
    /// Start the backbone from a PyTorch ResNet checkpoint with torchvision's names (e.g.
    /// torchvision's resnet18 weights, or an MS-Celeb-1M face-pretrained ResNet-18); the width
    /// and depth options must match it.
    #[arg(long, value_name = "FILE.pth")]
    init: Option<PathBuf>,
    /// Predict heatmaps for these dlib landmark indices only (comma-separated, e.g. the eye
    /// corners, nose tip and mouth corners 36,39,42,45,30,48,54); all 68 by default.
    #[arg(long, value_name = "I,J,...", value_delimiter = ',')]
    landmarks: Option<Vec<usize>>,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Initial learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// LDE neighbours.
    #[arg(long, default_value_t = 8)]
    k: usize,
    /// LDE history weight w in target = w * history + (1 - w) * neighbours. Each sample's
    /// one-hot label keeps weight w^epochs, so short runs need a smaller w than the paper's 0.9
    /// over 80 epochs.
    #[arg(long, default_value_t = 0.9)]
    history_momentum: f64,
    /// Weight of the landmark (Adaptive Wing) loss.
    #[arg(long, default_value_t = 1.0)]
    landmark_weight: f64,
    /// Weight of the KL loss to the LDE targets.
    #[arg(long, default_value_t = 1.0)]
    kl_weight: f64,
    /// Weight of the expression-landmark contrastive loss (0 = off).
    #[arg(long, default_value_t = 0.1)]
    contrastive_weight: f64,
    /// Contrastive queue length per modality.
    #[arg(long, default_value_t = 8192)]
    queue: usize,
    /// Weight of the supervised contrastive loss on a projection of the expression feature
    /// (second method; 0 = off).
    #[arg(long, default_value_t = 0.0)]
    scl_weight: f64,
    /// Temperature of the supervised contrastive loss.
    #[arg(long, default_value_t = 0.1)]
    scl_temperature: f64,
    /// UERM: after each epoch, relabel among this fraction of the most uncertain training
    /// samples (0 = off).
    #[arg(long, default_value_t = 0.0)]
    relabel_fraction: f64,
    /// UERM: a sample is relabelled when its top class beats its label's probability by more
    /// than this.
    #[arg(long, default_value_t = 0.2)]
    relabel_margin: f32,
    /// UERM: the first epoch after which labels may change.
    #[arg(long, default_value_t = 5)]
    relabel_from: usize,
    /// UERM: epochs of predictions averaged for the uncertainty.
    #[arg(long, default_value_t = 3)]
    uncertainty_window: usize,
    /// ARM: de-albino pooling of the last feature map and minibatch affinity sharing.
    #[arg(long)]
    arm: bool,
    /// ARM's de-albino kernel side (0: half the last map's side, rounded up).
    #[arg(long, default_value_t = 0)]
    arm_kernel: usize,
    /// ARM's kernel stride.
    #[arg(long, default_value_t = 1)]
    arm_stride: usize,
    /// Train without augmentation.
    #[arg(long)]
    no_augment: bool,
    /// Device: cpu, or cuda:N (needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Debug, Subcommand)]
enum Dataset {
    /// RAF-DB basic: the folder holding EmoLabel/ and Image/aligned/.
    Rafdb { root: PathBuf },
    /// FERPlus: fer2013.csv and fer2013new.csv.
    Ferplus { fer2013: PathBuf, ferplus: PathBuf },
    /// AffectNet: training.csv or validation.csv, and the image folder.
    Affectnet {
        csv: PathBuf,
        #[arg(long, value_name = "DIR")]
        images: PathBuf,
    },
    /// One sub-folder per class under ROOT (all read as the training split).
    Folder { root: PathBuf },
}

#[derive(Debug, Args)]
struct InspectOptions {
    /// Class set: 7 basic expressions, or 8 with contempt.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u8).range(7..=8))]
    classes: u8,
    /// Inject label noise into the training split.
    #[arg(long, value_enum)]
    noise: Option<NoiseArg>,
    /// Fraction of training labels to flip.
    #[arg(long, default_value_t = 0.3)]
    noise_rate: f64,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MethodArg {
    Lanet,
    Ce,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum NoiseArg {
    Symmetric,
    Asymmetric,
}

impl From<NoiseArg> for NoiseKind {
    fn from(n: NoiseArg) -> Self {
        match n {
            NoiseArg::Symmetric => NoiseKind::Symmetric,
            NoiseArg::Asymmetric => NoiseKind::Asymmetric,
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("train: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect { dataset, options } => inspect(dataset, options),
        Command::Synth {
            out,
            count,
            size,
            seed,
            classes,
        } => synth(&out, count, size, seed, classes),
        Command::Eval { run } => {
            let report = train::eval::evaluate(&run, &burn::prelude::Device::flex())
                .map_err(anyhow::Error::msg)?;
            outln!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Prepare {
            dataset,
            out,
            size,
            classes,
            cnn_model,
        } => prepare(dataset, out, size, classes, cnn_model),
        Command::Fit(args) => fit(*args),
        Command::Export {
            run,
            checkpoint,
            out,
            name,
        } => {
            let name = name.unwrap_or_else(|| {
                out.file_name()
                    .map_or("lanet".into(), |n| n.to_string_lossy().into_owned())
            });
            let report = train::export::export(&run, checkpoint.as_deref(), &out, &name)
                .map_err(anyhow::Error::msg)?;
            outln!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Crops { run, out } => {
            let n = train::export::write_test_crops(&run, &out).map_err(anyhow::Error::msg)?;
            outln!("wrote {n} test crops to {}", out.display());
            Ok(())
        }
    }
}

fn device(name: &str) -> anyhow::Result<burn::prelude::Device> {
    if name == "cpu" {
        return Ok(burn::prelude::Device::flex());
    }
    #[cfg(feature = "cuda")]
    if let Some(index) = name.strip_prefix("cuda:") {
        let index: usize = index
            .parse()
            .map_err(|_| anyhow::anyhow!("--device {name}: expected cuda:N"))?;
        return Ok(burn::prelude::Device::cuda(index));
    }
    anyhow::bail!(
        "--device {name}: this build knows cpu{}",
        if cfg!(feature = "cuda") {
            " and cuda:N"
        } else {
            " only (build with --features cuda for cuda:N)"
        }
    )
}

fn fit(args: FitArgs) -> anyhow::Result<()> {
    use train::fit::{FitConfig, Method};
    let config = if args.resume {
        FitConfig::load(&args.out).map_err(anyhow::Error::msg)?
    } else {
        FitConfig {
            method: match args.method {
                MethodArg::Lanet => Method::Lanet,
                MethodArg::Ce => Method::Ce,
            },
            data: args.data,
            test_data: args.test_data,
            noise: args.noise.map(|n| (NoiseKind::from(n), args.noise_rate)),
            epochs: args.epochs,
            train_faces: args.train_faces,
            test_faces: args.test_faces,
            input_size: args.size,
            width: args.width,
            blocks: args.blocks,
            resnet50: args.resnet50,
            init: args.init,
            landmark_subset: args.landmarks,
            batch: args.batch,
            lr: args.lr,
            seed: args.seed,
            k: args.k,
            momentum: args.history_momentum,
            landmark_weight: args.landmark_weight,
            kl_weight: args.kl_weight,
            contrastive_weight: args.contrastive_weight,
            queue: args.queue,
            augment: if args.no_augment {
                train::augment::Augment::none()
            } else {
                train::augment::Augment::default()
            },
            scl_weight: args.scl_weight,
            scl_temperature: args.scl_temperature,
            relabel_fraction: args.relabel_fraction,
            relabel_margin: args.relabel_margin,
            relabel_from: args.relabel_from,
            uncertainty_window: args.uncertainty_window,
            arm: args.arm,
            arm_kernel: args.arm_kernel,
            arm_stride: args.arm_stride,
            ..Default::default()
        }
    };
    let device = device(&args.device)?.autodiff();
    let summary =
        train::fit::fit(&config, &args.out, &device, args.resume).map_err(anyhow::Error::msg)?;
    let relabelling = config.relabel_rule().is_some();
    for e in &summary.epochs {
        let relabels = if relabelling {
            format!(
                "  relabelled {} ({} right), wrong labels {}",
                e.relabelled, e.relabelled_right, e.wrong_labels
            )
        } else {
            String::new()
        };
        outln!(
            "epoch {:>3}  loss {:.4}  ce {:.4}  landmark {:.4}  kl {:.4}  contrastive {:.4}  scl {:.4}  test accuracy {:.3}{relabels}",
            e.epoch, e.loss, e.ce, e.landmark, e.kl, e.contrastive, e.scl, e.test_accuracy
        );
    }
    outln!(
        "final clean test accuracy {:.3} ({} training labels flipped)",
        summary.test_accuracy,
        summary.flipped
    );
    Ok(())
}

fn load_dataset(dataset: &Dataset, classes: ClassSet) -> anyhow::Result<Loaded> {
    Ok(match dataset {
        Dataset::Rafdb { root } => rafdb::read(root)?,
        Dataset::Ferplus {
            fer2013,
            ferplus: votes,
        } => ferplus::read(fer2013, votes, classes)?,
        Dataset::Affectnet { csv, images } => affectnet::read(csv, images, classes)?,
        Dataset::Folder { root } => folder::read(root, classes, Split::Train)?,
    })
}

fn class_set(n: u8) -> ClassSet {
    if n == 8 {
        ClassSet::Eight
    } else {
        ClassSet::Seven
    }
}

fn prepare(
    dataset: Dataset,
    out: Option<PathBuf>,
    size: u32,
    classes: u8,
    cnn_model: Option<PathBuf>,
) -> anyhow::Result<()> {
    let out = out.ok_or_else(|| anyhow::anyhow!("--out DIR is required"))?;
    anyhow::ensure!(
        size >= 32 && size.is_multiple_of(32),
        "--size {size}: a positive multiple of 32 is needed"
    );
    let classes = class_set(classes);
    let loaded = load_dataset(&dataset, classes)?;
    let finder = edge_fer::FaceFinder::load(&edge_fer::detect::FaceFinderConfig {
        cnn_model,
        ..Default::default()
    })?;
    let alignment = train::fit::default_alignment().map_err(anyhow::Error::msg)?;
    let summary = train::prepare::prepare(
        &loaded,
        &format!("{dataset:?}"),
        classes,
        &finder,
        &alignment,
        size,
        &out,
    )
    .map_err(anyhow::Error::msg)?;
    const SHOWN: usize = 20;
    for s in summary.skipped.iter().take(SHOWN) {
        eprintln!("skipped {s}");
    }
    if summary.skipped.len() > SHOWN {
        eprintln!("... and {} more skipped", summary.skipped.len() - SHOWN);
    }
    let l = &summary.landmarks;
    outln!(
        "prepared {} faces ({size}x{size}) into {}; {} skipped; landmarks: {} from the dataset, {} in its boxes, {} detected, {} in the whole pre-cropped image",
        summary.faces,
        out.display(),
        summary.skipped.len(),
        l.dataset,
        l.dataset_box,
        l.detected,
        l.whole_image
    );
    Ok(())
}

fn synth(
    out: &std::path::Path,
    count: u64,
    size: u32,
    seed: u64,
    classes: u8,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    anyhow::ensure!(
        size >= 32,
        "--size {size} is too small to draw a face (at least 32)"
    );
    let classes = if classes == 8 {
        ClassSet::Eight
    } else {
        ClassSet::Seven
    };
    for name in classes.names() {
        std::fs::create_dir_all(out.join(name))
            .with_context(|| format!("creating {}", out.join(name).display()))?;
    }
    let list_path = out.join("landmarks.jsonl");
    let mut list = std::io::BufWriter::new(
        std::fs::File::create(&list_path)
            .with_context(|| format!("creating {}", list_path.display()))?,
    );
    let bar = indicatif::ProgressBar::new(count);
    let faces = train::data::synthetic::stream(seed, size, classes.count()).take(count as usize);
    for (i, face) in faces.enumerate() {
        let label = face.label;
        let rel = format!("{}/{i:06}.png", label.name());
        face.image
            .save(out.join(&rel))
            .with_context(|| format!("writing {}", out.join(&rel).display()))?;
        let line = serde_json::json!({ "file": rel, "label": label.name(), "landmarks": face.landmarks.to_vec() });
        writeln!(list, "{line}").with_context(|| format!("writing {}", list_path.display()))?;
        bar.inc(1);
    }
    list.flush()
        .with_context(|| format!("writing {}", list_path.display()))?;
    bar.finish_and_clear();
    outln!(
        "wrote {count} faces ({} classes, {size}x{size}, seed {seed}) to {}",
        classes.count(),
        out.display()
    );
    Ok(())
}

fn inspect(dataset: Dataset, options: InspectOptions) -> anyhow::Result<()> {
    let classes = class_set(options.classes);
    let loaded = load_dataset(&dataset, classes)?;
    report(&loaded, classes);
    if let Some(kind) = options.noise {
        let train: Vec<Expression> = loaded
            .samples
            .iter()
            .filter(|s| s.split == Split::Train)
            .map(|s| s.label)
            .collect();
        let noise = Noise {
            kind: NoiseKind::from(kind),
            rate: options.noise_rate,
            seed: options.seed,
        };
        let noisy = inject(&train, classes.count(), &noise).map_err(anyhow::Error::msg)?;
        outln!(
            "noise {:?} at {} (seed {}): {} of {} training labels flipped",
            noise.kind,
            noise.rate,
            noise.seed,
            noisy.flip_count(),
            train.len()
        );
    }
    Ok(())
}

fn report(loaded: &Loaded, classes: ClassSet) {
    const SHOWN: usize = 20;
    for s in loaded.skipped.iter().take(SHOWN) {
        eprintln!("skipped {s}");
    }
    if loaded.skipped.len() > SHOWN {
        eprintln!("... and {} more skipped", loaded.skipped.len() - SHOWN);
    }
    outln!(
        "{:<10} {}",
        "split",
        classes
            .names()
            .iter()
            .map(|n| format!("{n:>10}"))
            .collect::<String>()
    );
    for split in [Split::Train, Split::Val, Split::Test] {
        let name = train::prepare::split_name(split);
        let counts = loaded.class_counts(classes, Some(split));
        if counts.iter().sum::<usize>() > 0 {
            outln!(
                "{name:<10} {}",
                counts
                    .iter()
                    .map(|c| format!("{c:>10}"))
                    .collect::<String>()
            );
        }
    }
    outln!(
        "{} samples, {} skipped",
        loaded.samples.len(),
        loaded.skipped.len()
    );
}
