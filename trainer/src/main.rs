//! `cadenza-train`: train a style from a folder of MIDI, finetune one style
//! from another, resume a killed run, redraw a run's plots, evaluate a
//! checkpoint, and time training steps for `cargo xtask bench train`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use cadenza_core::train_args::TrainArgs;
use cadenza_core::ModelConfig;
use cadenza_trainer::bench::{bench_train, BenchArgs};
use cadenza_trainer::config::PrecisionChoice;
use cadenza_trainer::device::DeviceChoice;
use cadenza_trainer::train::{self, RunOptions};

#[derive(Parser)]
#[command(name = "cadenza-train", about = "Train Cadenza's Music Transformer styles with libtorch", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Train(TrainArgs),
    /// Redraw a run's plots (the whole finetune chain up to it) into RUN/plots/.
    Plot {
        /// The run folder, e.g. runs/pop.
        run: PathBuf,
    },
    /// Validation loss and accuracy of a checkpoint on a data folder's validation split.
    Eval(EvalArgs),
    /// Time training steps on random tokens; prints one JSON line.
    Bench(BenchCli),
    /// Copy a checkpoint with float16 weights and no optimizer state (what ships in
    /// models/checkpoints/), after checking on a validation split that it predicts as the
    /// float32 weights do; prints one JSON line.
    Ship(ShipArgs),
}

#[derive(Args)]
struct ShipArgs {
    /// Checkpoint (.safetensors/.json), run folder or style name.
    #[arg(long)]
    checkpoint: String,
    /// Base path of the copy, e.g. models/checkpoints/classical (.safetensors and .json are added).
    #[arg(long)]
    out: PathBuf,
    /// Data folder whose validation split checks the half-precision weights.
    #[arg(long)]
    data: PathBuf,
    /// Largest validation-loss change (nats per event) float16 may cause.
    #[arg(long, default_value_t = 0.002)]
    tolerance: f64,
    /// Validation windows at most.
    #[arg(long, default_value_t = 64)]
    max_windows: usize,
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
}

#[derive(Args)]
struct EvalArgs {
    /// Checkpoint (.safetensors/.json), run folder or style name.
    #[arg(long)]
    checkpoint: String,
    /// Data folder whose validation split is measured.
    #[arg(long)]
    data: PathBuf,
    /// Events per validation window (default: the checkpoint's training crop).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Windows at most.
    #[arg(long, default_value_t = 256)]
    max_windows: usize,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    device: DeviceChoice,
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
}

#[derive(Args)]
struct BenchCli {
    /// Model preset: tiny, small, medium or base.
    #[arg(long, default_value = "small")]
    config: String,
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Events per sequence (default: the preset's max_seq_len).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Timed steps (after the warm-up steps).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// fp32, bf16 (mixed), or auto (bf16 where the hardware has it).
    #[arg(long, value_parser = parse_precision, default_value = "auto")]
    precision: PrecisionChoice,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    device: DeviceChoice,
}

fn parse_precision(s: &str) -> Result<PrecisionChoice, String> {
    match s {
        "auto" => Ok(PrecisionChoice::Auto),
        "fp32" => Ok(PrecisionChoice::Fp32),
        "bf16" => Ok(PrecisionChoice::Bf16),
        other => Err(format!("unknown precision {other:?}: auto, fp32 or bf16")),
    }
}

/// Keep freed memory in the process for the next step instead of returning
/// it to the kernel. libtorch allocates every activation with malloc; glibc
/// serves blocks over 32 MB with mmap and unmaps them on free, so each step
/// would page-fault and zero its attention matrices again (hundreds of MB per
/// layer at sequence 2048). With mmap off and trimming off, the heap stays at
/// the peak of one step and is reused. The price is a higher peak RSS (freed
/// blocks stay mapped and fragment); `CADENZA_KEEP_FREED_MEMORY=0` turns it off.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    if std::env::var_os("CADENZA_KEEP_FREED_MEMORY").is_some_and(|v| v == "0") {
        return;
    }
    // SAFETY: mallopt only changes glibc allocator parameters; it is called
    // before any other thread exists and takes no pointers.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("{}", cadenza_core::report_error(&*e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Train(a) => {
            let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&a.style));
            let data = a.data.clone().or_else(|| (!a.resume).then(|| PathBuf::from("data").join(&a.style)));
            let opts = RunOptions {
                data,
                from: a.from,
                config: a.config,
                epochs: a.epochs,
                steps: a.steps,
                freeze_layers: a.freeze_layers,
                seed: a.seed,
                resume: a.resume,
                continue_from: a.continue_from,
                force: a.force,
                device: <DeviceChoice as clap::ValueEnum>::from_str(&a.device, false).map_err(anyhow::Error::msg)?,
                threads: a.threads,
                progress: !a.no_progress,
                ..RunOptions::new(&a.style, &out)
            };
            let s = train::run(&opts).with_context(|| format!("training {} into {}", a.style, out.display()))?;
            // The engine's model for this run, from its best checkpoint; a failed
            // export does not undo the training (`cargo xtask export` retries it).
            if let Some(best) = &s.best_checkpoint {
                let onnx = out.join(format!("{}.onnx", a.style));
                match cadenza_trainer::export::export_onnx(
                    best,
                    &onnx,
                    &cadenza_trainer::export::ExportOptions { style: Some(a.style.clone()), ..Default::default() },
                ) {
                    Ok(r) => println!("exported {} ({:.1} MB)", r.path.display(), r.bytes as f64 / 1e6),
                    Err(e) => eprintln!("warning: no ONNX export: {e}"),
                }
            }
            println!(
                "done: {} steps of {} in {:.0} s | best val {} | {}",
                s.step,
                s.total_steps,
                s.elapsed_s,
                s.best_val_loss.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()),
                s.best_checkpoint.map(|p| p.display().to_string()).unwrap_or_else(|| "no checkpoint".into()),
            );
        }
        Cmd::Plot { run } => {
            for p in cadenza_trainer::plot::plot_chain(&run)? {
                println!("{}", p.display());
            }
        }
        Cmd::Eval(a) => {
            let device = a.device.resolve()?;
            let path = cadenza_trainer::checkpoint::resolve_from(&a.checkpoint, &a.runs_dir)?;
            let meta = cadenza_trainer::checkpoint::read_sidecar(
                &cadenza_trainer::checkpoint::CheckpointPaths::new(&path).sidecar,
            )?;
            let seq_len = a
                .seq_len
                .or_else(|| cadenza_trainer::checkpoint::train_meta(&meta).map(|t| t.config.seq_len))
                .unwrap_or(meta.model.max_seq_len);
            let v = train::evaluate_checkpoint(
                &path,
                &a.data,
                seq_len,
                a.max_windows,
                a.batch,
                cadenza_trainer::Precision::Fp32,
                device,
            )?;
            println!(
                "{}",
                serde_json::json!({
                    "checkpoint": path,
                    "val_loss": v.loss,
                    "val_acc": v.accuracy,
                    "val_bits_per_s": v.bits_per_s(),
                    "seq_len": seq_len
                })
            );
        }
        Cmd::Ship(a) => {
            let path = cadenza_trainer::checkpoint::resolve_from(&a.checkpoint, &a.runs_dir)?;
            let meta = cadenza_trainer::checkpoint::read_sidecar(
                &cadenza_trainer::checkpoint::CheckpointPaths::new(&path).sidecar,
            )?;
            let seq_len =
                cadenza_trainer::checkpoint::train_meta(&meta).map_or(meta.model.max_seq_len, |t| t.config.seq_len);
            let measure = |p: &std::path::Path| {
                train::evaluate_checkpoint(
                    p,
                    &a.data,
                    seq_len,
                    a.max_windows,
                    8,
                    cadenza_trainer::Precision::Fp32,
                    tch::Device::Cpu,
                )
            };
            let full = measure(&path)?;
            // Written to a temporary base beside the target first: a copy that fails the check replaces nothing.
            let trial = a.out.with_file_name(format!(
                ".{}.trial",
                a.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ));
            let trial_paths = cadenza_trainer::checkpoint::ship_half(&path, &trial)?;
            let half = measure(&trial);
            let delta = half.as_ref().map(|h| h.loss - full.loss);
            let fits = matches!(delta, Ok(d) if d.abs() <= a.tolerance);
            let shipped = if fits { Some(cadenza_trainer::checkpoint::ship_half(&path, &a.out)?) } else { None };
            let _ = std::fs::remove_file(&trial_paths.weights);
            let _ = std::fs::remove_file(&trial_paths.sidecar);
            let half = half?;
            println!(
                "{}",
                serde_json::json!({
                    "checkpoint": path,
                    "out": shipped.as_ref().map(|p| p.weights.clone()),
                    "step": meta.step,
                    "fp32_val_loss": full.loss,
                    "fp16_val_loss": half.loss,
                    "val_bits_per_s": full.bits_per_s(),
                })
            );
            if shipped.is_none() {
                anyhow::bail!(
                    "float16 weights change the validation loss by {:+.4} nats per event (more than {}); not shipped",
                    half.loss - full.loss,
                    a.tolerance
                );
            }
        }
        Cmd::Bench(a) => {
            let device = a.device.resolve()?;
            tch::set_num_threads(a.threads as i32);
            let model = ModelConfig::preset(&a.config).with_context(|| {
                format!("unknown preset {:?}: the presets are {}", a.config, ModelConfig::preset_names())
            })?;
            let result = bench_train(&BenchArgs {
                name: a.config.clone(),
                model,
                batch: a.batch,
                seq_len: a.seq_len.unwrap_or(model.max_seq_len),
                steps: a.steps,
                warmup_steps: a.warmup,
                precision: a.precision.resolve(device),
                device,
            });
            println!("{}", serde_json::to_string(&result)?);
        }
    }
    Ok(())
}
