//! The `train` command. For now: `train inspect`, which reads a dataset the way training will and
//! reports what it found, what it skipped and why, and what a noise setting would flip.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use train::data::noise::{inject, Noise, NoiseKind};
use train::data::{affectnet, ferplus, folder, rafdb, ClassSet, Expression, Loaded, Split};

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
enum NoiseArg {
    Symmetric,
    Asymmetric,
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
    let Command::Inspect { dataset, options } = cli.command;
    let classes = if options.classes == 8 {
        ClassSet::Eight
    } else {
        ClassSet::Seven
    };
    let loaded = match &dataset {
        Dataset::Rafdb { root } => rafdb::read(root)?,
        Dataset::Ferplus {
            fer2013,
            ferplus: votes,
        } => ferplus::read(fer2013, votes, classes)?,
        Dataset::Affectnet { csv, images } => affectnet::read(csv, images, classes)?,
        Dataset::Folder { root } => folder::read(root, classes, Split::Train)?,
    };
    report(&loaded, classes);
    if let Some(kind) = options.noise {
        let train: Vec<Expression> = loaded
            .samples
            .iter()
            .filter(|s| s.split == Split::Train)
            .map(|s| s.label)
            .collect();
        let noise = Noise {
            kind: match kind {
                NoiseArg::Symmetric => NoiseKind::Symmetric,
                NoiseArg::Asymmetric => NoiseKind::Asymmetric,
            },
            rate: options.noise_rate,
            seed: options.seed,
        };
        let noisy = inject(&train, classes.count(), &noise).map_err(anyhow::Error::msg)?;
        println!(
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
    println!(
        "{:<10} {}",
        "split",
        classes
            .names()
            .iter()
            .map(|n| format!("{n:>10}"))
            .collect::<String>()
    );
    for (name, split) in [
        ("train", Split::Train),
        ("val", Split::Val),
        ("test", Split::Test),
    ] {
        let counts = loaded.class_counts(classes, Some(split));
        if counts.iter().sum::<usize>() > 0 {
            println!(
                "{name:<10} {}",
                counts
                    .iter()
                    .map(|c| format!("{c:>10}"))
                    .collect::<String>()
            );
        }
    }
    println!(
        "{} samples, {} skipped",
        loaded.samples.len(),
        loaded.skipped.len()
    );
}
