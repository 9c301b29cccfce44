//! `cadenza-export`: write a style's `.onnx` model from a checkpoint (or, for
//! benchmarks, from random weights of a preset size). The one-shot GPU check
//! (`scripts/gpu-check/`) runs it; `cadenza export` is the users' command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;

use cadenza_core::export::{export_onnx, export_random, ExportOptions, Precision};
use cadenza_core::records::run_checkpoint;
use cadenza_core::ModelConfig;

#[derive(Parser)]
#[command(name = "cadenza-export", about = "Export a Cadenza checkpoint to an ONNX model with a KV cache", version)]
struct Cli {
    /// Style name written into the model (default: the checkpoint's).
    #[arg(long)]
    style: Option<String>,
    /// A checkpoint: `x.safetensors`, `x.json` or the base path `x`.
    #[arg(long, conflicts_with_all = ["run", "random"])]
    checkpoint: Option<PathBuf>,
    /// A run folder: its best checkpoint, else its latest.
    #[arg(long, conflicts_with = "random")]
    run: Option<PathBuf>,
    /// Random weights of a preset size (tiny, small, medium, base), for benchmarks.
    #[arg(long)]
    random: Option<String>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// With --random: a longer (or shorter) window than the preset's, for timing long contexts.
    #[arg(long, requires = "random")]
    max_seq_len: Option<usize>,
    /// The .onnx file to write.
    #[arg(long)]
    out: PathBuf,
}

fn run(cli: &Cli) -> Result<()> {
    let report = if let Some(preset) = &cli.random {
        let mut cfg = ModelConfig::preset(preset)
            .with_context(|| format!("unknown preset `{preset}`; the presets are {}", ModelConfig::preset_names()))?;
        if let Some(l) = cli.max_seq_len {
            cfg.max_seq_len = l;
        }
        let style = cli.style.clone().unwrap_or_else(|| format!("random-{preset}"));
        export_random(&cfg, &style, cli.seed, Precision::Float32, &cli.out)?
    } else {
        let checkpoint = match (&cli.checkpoint, &cli.run) {
            (Some(c), _) => c.clone(),
            (None, Some(dir)) => {
                run_checkpoint(dir).with_context(|| format!("{}: no checkpoint in this run folder", dir.display()))?
            }
            (None, None) => bail!("give --checkpoint, --run or --random"),
        };
        export_onnx(&checkpoint, &cli.out, &ExportOptions { style: cli.style.clone(), ..Default::default() })?
    };
    println!(
        "exported {} parameters ({} style, {} layers x d_model {}, window {}) to {} ({:.1} MB)",
        report.config.num_params(),
        report.style,
        report.config.n_layers,
        report.config.d_model,
        report.config.max_seq_len,
        report.path.display(),
        report.bytes as f64 / 1e6
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("{}", cadenza_core::report_error(&*e));
            ExitCode::FAILURE
        }
    }
}
