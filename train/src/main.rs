//! The `train` command: `inspect` (read a dataset and report what it found, skipped and would
//! flip), `synth` (write synthetic faces with known landmarks), `prepare` (detect, fit landmarks
//! and align a dataset once into a cache), `fit` (train, resumable) and `eval`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use train::config::{Method, TrainingConfig};
use train::data::noise::{inject, Noise, NoiseKind};
use train::data::{affectnet, ferplus, folder, rafdb, ClassSet, Expression, Loaded, Split};
use train::run_dir::RunDir;

/// A line on standard output; an error (a closed pipe among them) goes up to `main`.
fn outln(line: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    writeln!(std::io::stdout(), "{line}").context("writing standard output")
}

/// Whether `e` comes from a closed standard output (`train eval ... | head`): not a failure.
fn closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
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
    /// The run's folder: config.json, metrics.jsonl, checkpoints, states.
    #[arg(long, value_name = "DIR", required_unless_present = "print_config")]
    out: Option<PathBuf>,
    /// A config file (JSON, as `--print-config` prints it; settings left out keep their
    /// defaults, an unknown one is refused). The options below override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the resolved config as JSON and exit without training.
    #[arg(long)]
    print_config: bool,
    /// Continue the run in OUT from its newest good state, with its saved config.json (no other
    /// setting may be given).
    #[arg(long, conflicts_with = "config")]
    resume: bool,
    /// Device: cpu, or cuda:N (needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    #[command(flatten)]
    set: Settings,
}

/// Options that override one setting each of the config (its path in the JSON in brackets; the
/// default shown in `--help` is read from the config's defaults there).
#[derive(Debug, Args, Default, PartialEq)]
#[command(next_help_heading = "Settings (each overrides the config at the path in brackets)")]
struct Settings {
    /// Training method [method].
    #[arg(long, value_enum)]
    method: Option<MethodArg>,
    /// A cache from `train prepare`; synthetic faces if absent [data.cache].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A second cache to test on (default: the test or val split of --data) [data.test_cache].
    #[arg(long, value_name = "DIR")]
    test_data: Option<PathBuf>,
    /// Synthetic training faces [data.train_faces].
    #[arg(long)]
    train_faces: Option<u64>,
    /// Synthetic test faces [data.test_faces].
    #[arg(long)]
    test_faces: Option<u64>,
    /// The blend set: half the synthetic training faces blend two classes, with a known true
    /// distribution and a label drawn from it [data.blends].
    #[arg(long)]
    blends: bool,
    /// Pretraining stand-in: synthetic faces of this many people, labelled by person (sets
    /// model.classes too) [data.identities].
    #[arg(long, value_name = "PEOPLE")]
    identities: Option<u64>,
    /// Fraction of the training faces held out with their noisy labels, to select an epoch on
    /// [data.validation].
    #[arg(long)]
    validation: Option<f64>,
    /// Label noise on the training labels [data.noise.kind].
    #[arg(long, value_enum)]
    noise: Option<NoiseArg>,
    /// Fraction of training labels to flip [data.noise.rate].
    #[arg(long)]
    noise_rate: Option<f64>,
    /// Classes of the data: 7, or 8 with contempt [model.classes].
    #[arg(long, value_parser = clap::value_parser!(u8).range(7..=8))]
    classes: Option<u8>,
    /// Input crop side, a multiple of 32 (must match a cache's) [model.input_size].
    #[arg(long, visible_alias = "input-size")]
    size: Option<u32>,
    /// Backbone width (64 = ResNet-18) [model.width].
    #[arg(long)]
    width: Option<usize>,
    /// Basic blocks per stage (2 = ResNet-18) [model.blocks].
    #[arg(long)]
    blocks: Option<usize>,
    /// ResNet-50 backbone (bottleneck blocks 3, 4, 6, 3; --blocks is ignored) [model.resnet50].
    #[arg(long)]
    resnet50: bool,
    /// Predict heatmaps for these dlib landmark indices only (comma-separated, e.g. the eye
    /// corners, nose tip and mouth corners 36,39,42,45,30,48,54) [model.landmarks].
    #[arg(long, value_name = "I,J,...", value_delimiter = ',')]
    landmarks: Option<Vec<usize>>,
    /// ARM: de-albino pooling of the last feature map and minibatch affinity sharing
    /// [model.arm].
    #[arg(long)]
    arm: bool,
    /// ARM's de-albino kernel side (0: half the last map's side, rounded up) [model.arm.kernel].
    #[arg(long)]
    arm_kernel: Option<usize>,
    /// ARM's kernel stride [model.arm.stride].
    #[arg(long)]
    arm_stride: Option<usize>,
    /// Start the backbone from a PyTorch ResNet checkpoint with torchvision's names; the width
    /// and depth options must match it [init].
    #[arg(long, value_name = "FILE.pth", conflicts_with = "init_from")]
    init: Option<PathBuf>,
    /// Start the backbone (both branches) from an earlier run of this tool: its folder or a
    /// checkpoint; the classifier starts fresh [init_from].
    #[arg(long, value_name = "RUN")]
    init_from: Option<PathBuf>,
    /// Epochs [epochs].
    #[arg(long)]
    epochs: Option<usize>,
    /// Batch size [batch].
    #[arg(long)]
    batch: Option<usize>,
    /// Initial learning rate, decayed linearly to 0 [lr].
    #[arg(long)]
    lr: Option<f64>,
    /// Seed [seed].
    #[arg(long)]
    seed: Option<u64>,
    /// Train without augmentation [augment].
    #[arg(long)]
    no_augment: bool,
    /// LDE neighbours [lde.k].
    #[arg(long)]
    k: Option<usize>,
    /// LDE history weight w in target = w * history + (1 - w) * neighbours [lde.momentum].
    #[arg(long, visible_alias = "lde-momentum")]
    history_momentum: Option<f64>,
    /// Weight of the landmark (Adaptive Wing) loss [loss.landmark].
    #[arg(long)]
    landmark_weight: Option<f64>,
    /// Weight of the KL loss to the LDE targets [loss.kl].
    #[arg(long)]
    kl_weight: Option<f64>,
    /// Weight of the expression-landmark contrastive loss (0 = off) [loss.contrastive].
    #[arg(long)]
    contrastive_weight: Option<f64>,
    /// Momentum of the contrastive key encoder [contrastive.key_momentum].
    #[arg(long)]
    key_momentum: Option<f64>,
    /// Contrastive queue length per modality [contrastive.queue].
    #[arg(long)]
    queue: Option<usize>,
    /// Supervised contrastive loss on a projection of the expression feature, at this weight
    /// (0 = off) [scl.weight].
    #[arg(long)]
    scl_weight: Option<f64>,
    /// Temperature of the supervised contrastive loss [scl.temperature].
    #[arg(long)]
    scl_temperature: Option<f64>,
    /// UERM: after each epoch, relabel among this fraction of the most uncertain training
    /// samples (0 = off) [uerm.fraction].
    #[arg(long)]
    relabel_fraction: Option<f64>,
    /// UERM: a sample is relabelled when its top class beats its label's probability by more
    /// than this [uerm.margin].
    #[arg(long)]
    relabel_margin: Option<f32>,
    /// UERM: the first epoch after which labels may change [uerm.from].
    #[arg(long)]
    relabel_from: Option<usize>,
    /// UERM: epochs of predictions averaged for the uncertainty [uerm.window].
    #[arg(long)]
    uncertainty_window: Option<usize>,
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

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum MethodArg {
    Lanet,
    Ce,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
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

/// The default at dotted `path` of the config's JSON, as `--help` shows it; inside a section that
/// is off by default, the value it starts from when turned on. `None` for a whole section.
fn default_at(
    defaults: &serde_json::Value,
    sections: &[(&str, serde_json::Value)],
    path: &str,
) -> Option<String> {
    let mut value = defaults;
    let mut within_off = false;
    let mut at = String::new();
    for key in path.split('.') {
        if value.is_null() {
            value = &sections.iter().find(|(p, _)| *p == at)?.1;
            within_off = true;
        }
        value = value.get(key)?;
        at = if at.is_empty() {
            key.to_string()
        } else {
            format!("{at}.{key}")
        };
    }
    let shown = match value {
        serde_json::Value::Null => "off".to_string(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(_) => return None,
        v => v.to_string(),
    };
    Some(if within_off {
        format!("off; {shown} once on")
    } else {
        shown
    })
}

/// `cmd` with each `fit` setting's help ending in its default, read from the config's defaults
/// at the path the help names in brackets (`[model.width]`), so the values are written once.
fn with_config_defaults(cmd: clap::Command) -> clap::Command {
    let defaults: serde_json::Value =
        serde_json::from_str(&train::config::layers::to_json(&TrainingConfig::new()))
            .expect("the default config is JSON");
    cmd.mut_subcommand("fit", |fit| {
        let sections = train::config::layers::section_defaults();
        let ids: Vec<clap::Id> = fit.get_arguments().map(|a| a.get_id().clone()).collect();
        ids.into_iter().fold(fit, |fit, id| {
            fit.mut_arg(id, |arg| {
                let Some(help) = arg.get_help().map(ToString::to_string) else {
                    return arg;
                };
                let Some(shown) = help
                    .rsplit_once('[')
                    .and_then(|(_, p)| p.strip_suffix(']'))
                    .and_then(|path| default_at(&defaults, &sections, path))
                else {
                    return arg;
                };
                arg.help(format!("{help} [default: {shown}]"))
            })
        })
    })
}

fn main() -> ExitCode {
    let matches = with_config_defaults(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if closed_stdout(&e) => ExitCode::SUCCESS,
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
            let report = train::eval::evaluate(&RunDir::new(run), &burn::prelude::Device::flex())?;
            outln(&serde_json::to_string_pretty(&report)?)
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
            let report =
                train::export::export(&RunDir::new(run), checkpoint.as_deref(), &out, &name)?;
            outln(&serde_json::to_string_pretty(&report)?)
        }
        Command::Crops { run, out } => {
            let n = train::export::write_test_crops(&RunDir::new(run), &out)?;
            outln(&format!("wrote {n} test crops to {}", out.display()))
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

/// `sub` of a section that is off: a clear error instead of turning it on by the back door.
fn section<'a, T>(
    section: &'a mut Option<T>,
    flag: &str,
    switch: &str,
) -> anyhow::Result<&'a mut T> {
    section
        .as_mut()
        .ok_or_else(|| anyhow::anyhow!("{flag} needs {switch} (or a config file that sets it)"))
}

impl Settings {
    /// Applies every given option to `config`, in the config's order.
    fn apply(self, config: &mut TrainingConfig) -> anyhow::Result<()> {
        use train::config::{NoiseConfig, SclConfig, UermConfig};
        use train::model::lanet::ArmOptions;
        if let Some(m) = self.method {
            config.method = match m {
                MethodArg::Lanet => Method::Lanet,
                MethodArg::Ce => Method::Ce,
            };
        }
        let data = &mut config.data;
        set(&mut data.cache, self.data.map(Some));
        set(&mut data.test_cache, self.test_data.map(Some));
        set(&mut data.train_faces, self.train_faces);
        set(&mut data.test_faces, self.test_faces);
        data.blends |= self.blends;
        set(&mut data.identities, self.identities.map(Some));
        set(&mut data.validation, self.validation);
        if let Some(kind) = self.noise {
            let kind = NoiseKind::from(kind);
            match &mut data.noise {
                Some(n) => n.kind = kind,
                None => data.noise = Some(NoiseConfig::new(kind)),
            }
        }
        if let Some(rate) = self.noise_rate {
            section(&mut data.noise, "--noise-rate", "--noise")?.rate = rate;
        }
        let model = &mut config.model;
        set(&mut model.classes, self.classes.map(usize::from));
        set(&mut model.classes, self.identities.map(|n| n as usize));
        set(&mut model.input_size, self.size);
        set(&mut model.width, self.width);
        set(&mut model.blocks, self.blocks);
        model.resnet50 |= self.resnet50;
        set(&mut model.landmarks, self.landmarks.map(Some));
        if self.arm && model.arm.is_none() {
            model.arm = Some(ArmOptions::new());
        }
        if let Some(k) = self.arm_kernel {
            section(&mut model.arm, "--arm-kernel", "--arm")?.kernel = k;
        }
        if let Some(s) = self.arm_stride {
            section(&mut model.arm, "--arm-stride", "--arm")?.stride = s;
        }
        set(&mut config.init, self.init.map(Some));
        set(&mut config.init_from, self.init_from.map(Some));
        set(&mut config.epochs, self.epochs);
        set(&mut config.batch, self.batch);
        set(&mut config.lr, self.lr);
        set(&mut config.seed, self.seed);
        if self.no_augment {
            config.augment = train::augment::Augment::none();
        }
        set(&mut config.lde.k, self.k);
        set(&mut config.lde.momentum, self.history_momentum);
        set(&mut config.loss.landmark, self.landmark_weight);
        set(&mut config.loss.kl, self.kl_weight);
        set(&mut config.loss.contrastive, self.contrastive_weight);
        set(&mut config.contrastive.key_momentum, self.key_momentum);
        set(&mut config.contrastive.queue, self.queue);
        match self.scl_weight {
            Some(0.0) => config.scl = None,
            Some(w) => config.scl.get_or_insert_with(SclConfig::new).weight = w,
            None => {}
        }
        if let Some(t) = self.scl_temperature {
            section(&mut config.scl, "--scl-temperature", "--scl-weight")?.temperature = t;
        }
        match self.relabel_fraction {
            Some(0.0) => config.uerm = None,
            Some(f) => config.uerm.get_or_insert_with(UermConfig::new).fraction = f,
            None => {}
        }
        let uerm = "--relabel-fraction";
        if let Some(m) = self.relabel_margin {
            section(&mut config.uerm, "--relabel-margin", uerm)?.margin = m;
        }
        if let Some(e) = self.relabel_from {
            section(&mut config.uerm, "--relabel-from", uerm)?.from = e;
        }
        if let Some(w) = self.uncertainty_window {
            section(&mut config.uerm, "--uncertainty-window", uerm)?.window = w;
        }
        Ok(())
    }
}

/// Sets `slot` when the option was given.
fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn fit(args: FitArgs) -> anyhow::Result<()> {
    let config = if args.resume {
        anyhow::ensure!(
            args.set == Settings::default(),
            "--resume continues with the run's saved config.json; give no other setting"
        );
        let out = args.out.as_ref().context("--resume needs --out")?;
        RunDir::new(out).read_config()?
    } else {
        let mut config = train::config::layers::resolve(args.config.as_deref())?;
        args.set.apply(&mut config)?;
        config.validate()?;
        config
    };
    if args.print_config {
        return outln(&train::config::layers::to_json(&config));
    }
    let run = RunDir::new(args.out.context("--out is needed to train")?);
    let device = device(&args.device)?.autodiff();
    let summary = train::fit::fit(&config, &run, &device, args.resume)?;
    let relabelling = config.uerm.is_some();
    for e in &summary.epochs {
        let relabels = if relabelling {
            format!(
                "  relabelled {} ({} right), wrong labels {}",
                e.relabelled, e.relabelled_right, e.wrong_labels
            )
        } else {
            String::new()
        };
        outln(&format!(
            "epoch {:>3}  loss {:.4}  ce {:.4}  landmark {:.4}  kl {:.4}  contrastive {:.4}  scl {:.4}  test accuracy {:.3}{relabels}",
            e.epoch, e.loss, e.ce, e.landmark, e.kl, e.contrastive, e.scl, e.test_accuracy
        ))?;
    }
    outln(&format!(
        "final clean test accuracy {:.3} ({} training labels flipped)",
        summary.test_accuracy, summary.flipped
    ))
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
        detector: cnn_model.map_or(edge_fer::detect::DetectorChoice::Hog, |file| {
            edge_fer::detect::DetectorChoice::Mmod(file)
        }),
        ..Default::default()
    })?;
    let alignment = edge_fer::align::Alignment::builtin();
    let summary = train::prepare::prepare(
        &loaded,
        &format!("{dataset:?}"),
        classes,
        &finder,
        &alignment,
        size,
        &out,
    )?;
    const SHOWN: usize = 20;
    for s in summary.skipped.iter().take(SHOWN) {
        eprintln!("skipped {s}");
    }
    if summary.skipped.len() > SHOWN {
        eprintln!("... and {} more skipped", summary.skipped.len() - SHOWN);
    }
    let l = &summary.landmarks;
    outln(&format!(
        "prepared {} faces ({size}x{size}) into {}; {} skipped; landmarks: {} from the dataset, {} in its boxes, {} detected, {} in the whole pre-cropped image",
        summary.faces,
        out.display(),
        summary.skipped.len(),
        l.dataset,
        l.dataset_box,
        l.detected,
        l.whole_image
    ))
}

fn synth(
    out: &std::path::Path,
    count: u64,
    size: u32,
    seed: u64,
    classes: u8,
) -> anyhow::Result<()> {
    use std::io::Write;
    anyhow::ensure!(
        size >= 32,
        "--size {size} is too small to draw a face (at least 32)"
    );
    let classes = class_set(classes);
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
    outln(&format!(
        "wrote {count} faces ({} classes, {size}x{size}, seed {seed}) to {}",
        classes.count(),
        out.display()
    ))
}

fn inspect(dataset: Dataset, options: InspectOptions) -> anyhow::Result<()> {
    let classes = class_set(options.classes);
    let loaded = load_dataset(&dataset, classes)?;
    report(&loaded, classes)?;
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
        let noisy = inject(&train, classes.count(), &noise)?;
        outln(&format!(
            "noise {:?} at {} (seed {}): {} of {} training labels flipped",
            noise.kind,
            noise.rate,
            noise.seed,
            noisy.flip_count(),
            train.len()
        ))?;
    }
    Ok(())
}

fn report(loaded: &Loaded, classes: ClassSet) -> anyhow::Result<()> {
    const SHOWN: usize = 20;
    for s in loaded.skipped.iter().take(SHOWN) {
        eprintln!("skipped {s}");
    }
    if loaded.skipped.len() > SHOWN {
        eprintln!("... and {} more skipped", loaded.skipped.len() - SHOWN);
    }
    outln(&format!(
        "{:<10} {}",
        "split",
        classes
            .names()
            .iter()
            .map(|n| format!("{n:>10}"))
            .collect::<String>()
    ))?;
    for split in [Split::Train, Split::Val, Split::Test] {
        let name = train::prepare::split_name(split);
        let counts = loaded.class_counts(classes, Some(split));
        if counts.iter().sum::<usize>() > 0 {
            outln(&format!(
                "{name:<10} {}",
                counts
                    .iter()
                    .map(|c| format!("{c:>10}"))
                    .collect::<String>()
            ))?;
        }
    }
    outln(&format!(
        "{} samples, {} skipped",
        loaded.samples.len(),
        loaded.skipped.len()
    ))
}
