//! `cargo xtask bench train`: training tokens/s and peak memory of
//! `cadenza-train` against a PyTorch eager implementation of the same model
//! (`scripts/bench/train_torch.py`): same presets, batch, sequence length and
//! threads, each measurement in its own process (so its peak RSS is its own),
//! the two sides interleaved so a noisy neighbour hits both alike.

use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::process::json_line;
use crate::env::{repo_root, ToolEnv};

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Cases as PRESET:SEQ_LEN, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "small:512,base:512,base:2048")]
    pub cases: Vec<String>,
    /// Sequences per step.
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Timed steps per measurement.
    #[arg(long, default_value_t = 4)]
    pub steps: usize,
    /// Untimed steps first (allocator and kernel warm-up).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// CPU threads for both implementations.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Device for cadenza-train (the PyTorch script runs on the CPU): cpu, cuda or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Also time PyTorch with bfloat16 autocast, the eager counterpart of cadenza's bf16 mode.
    #[arg(long)]
    pub torch_bf16: bool,
    /// Interleaved rounds per case; each implementation reports its best round (noise on a shared
    /// machine only ever slows a run down).
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
}

/// The faster of two measurements.
fn best(a: Option<Measured>, b: Measured) -> Option<Measured> {
    match a {
        Some(a) if a.tokens_per_s >= b.tokens_per_s => Some(a),
        _ => Some(b),
    }
}

/// One JSON line from either implementation.
#[derive(Debug, Clone, Deserialize)]
struct Measured {
    tokens_per_s: f64,
    peak_rss_mb: Option<f64>,
    precision: String,
}

fn torch_importable(env: &ToolEnv) -> Result<()> {
    let out = Command::new(&env.python)
        .args(["-c", "import torch; print(torch.__version__)"])
        .output()
        .with_context(|| format!("cannot start {}", env.python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "{}: `import torch` fails ({}); the PyTorch eager baseline needs torch with its \
             dependencies: `{} -m pip install torch==2.11.0` (or `cargo xtask setup --cuda`)",
            env.python.display(),
            err.lines().last().unwrap_or("unknown error"),
            env.python.display()
        );
    }
    Ok(())
}

pub fn run(a: &TrainArgs) -> Result<()> {
    let env = crate::setup::tool_env()?;
    torch_importable(&env)?;
    let bin = crate::train::build_trainer(&env)?;
    let root = repo_root();
    let script = root.join("scripts/bench/train_torch.py");

    let mut cases = Vec::new();
    for c in &a.cases {
        let (preset, seq) = c.split_once(':').with_context(|| format!("case {c:?}: expected PRESET:SEQ_LEN"))?;
        let seq: usize = seq.parse().with_context(|| format!("case {c:?}: bad sequence length"))?;
        cases.push((preset.to_string(), seq));
    }
    let common = |seq: usize, preset: &str| {
        vec![
            "--config".to_string(),
            preset.to_string(),
            "--batch".into(),
            a.batch.to_string(),
            "--seq-len".into(),
            seq.to_string(),
            "--steps".into(),
            a.steps.to_string(),
            "--warmup".into(),
            a.warmup.to_string(),
            "--threads".into(),
            a.threads.to_string(),
        ]
    };
    let torch = |preset: &str, seq: usize, bf16: bool| -> Result<Measured> {
        let mut cmd = Command::new(&env.python);
        cmd.arg(&script).args(common(seq, preset)).current_dir(&root);
        if bf16 {
            cmd.arg("--autocast-bf16");
        }
        json_line(&mut cmd, &format!("PyTorch eager {preset}:{seq}"))
    };
    let ours = |preset: &str, seq: usize, precision: &str| -> Result<Measured> {
        let mut cmd = Command::new(&bin);
        env.apply(&mut cmd);
        cmd.arg("bench").args(common(seq, preset)).args(["--precision", precision, "--device", &a.device]);
        json_line(&mut cmd, &format!("cadenza-train bench {preset}:{seq} {precision}"))
    };

    println!(
        "training throughput, batch {}, {} threads, {} timed steps after {} warm-up, best of {} rounds (cadenza on {})",
        a.batch,
        a.threads,
        a.steps,
        a.warmup,
        a.rounds.max(1),
        a.device
    );
    println!(
        "{:<12} {:>22} {:>22} {:>22} {:>22} {:>9} {:>9}",
        "case", "pytorch eager fp32", "pytorch bf16 autocast", "cadenza fp32", "cadenza auto", "fp32 x", "auto x"
    );
    let cell = |m: &Option<Measured>| match m {
        Some(m) => format!("{:>7.0} tok/s {:>5.0} MB", m.tokens_per_s, m.peak_rss_mb.unwrap_or(f64::NAN)),
        None => "-".to_string(),
    };
    for (preset, seq) in &cases {
        // Interleaved, so a noisy neighbour hits both sides alike.
        let (mut eager, mut fp32, mut eager_bf16, mut auto) = (None, None, None, None);
        for _ in 0..a.rounds.max(1) {
            eager = best(eager, torch(preset, *seq, false)?);
            fp32 = best(fp32, ours(preset, *seq, "fp32")?);
            if a.torch_bf16 {
                eager_bf16 = best(eager_bf16, torch(preset, *seq, true)?);
            }
            auto = best(auto, ours(preset, *seq, "auto")?);
        }
        let (Some(eager), Some(fp32)) = (eager, fp32) else { bail!("no measurement") };
        let auto = auto.filter(|m| m.precision != fp32.precision);
        let ratio = |m: &Measured| m.tokens_per_s / eager.tokens_per_s;
        println!(
            "{:<12} {:>22} {:>22} {:>22} {:>22} {:>8.2}x {:>9}",
            format!("{preset}:{seq}"),
            cell(&Some(eager.clone())),
            cell(&eager_bf16),
            cell(&Some(fp32.clone())),
            cell(&auto),
            ratio(&fp32),
            auto.as_ref().map(|m| format!("{:.2}x", ratio(m))).unwrap_or_else(|| "-".into()),
        );
    }
    println!("(x = tokens/s relative to PyTorch eager fp32; MB = peak RSS of the process; `auto` = bf16 products where the CPU has AVX512-BF16)");
    Ok(())
}
