//! `cargo xtask train`: build the trainer (`cadenza-train`, release, with the
//! `cuda` feature when setup installed the CUDA torch) and run it with the
//! tool environment. A style without `--config` uses
//! `trainer/configs/<style>.toml` when there is one.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::env::{cargo, repo_root, ToolEnv};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Style name: names the run folder (runs/STYLE), the default data folder (data/STYLE) and
    /// the default config (trainer/configs/STYLE.toml, when it exists).
    #[arg(long)]
    pub style: String,
    /// Folder of MIDI files: a `cargo xtask data` style folder (with manifest.csv) or any folder
    /// of *.mid/*.midi (searched recursively; unreadable files are skipped with a warning).
    /// Default: data/STYLE.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Finetune from a style name (runs/NAME), a run folder, or a checkpoint file; a run folder
    /// gives its best checkpoint. The optimizer starts fresh.
    #[arg(long)]
    pub from: Option<String>,
    /// A preset (tiny, small, medium, base) or a TOML file of settings that differ from the defaults;
    /// unknown keys are an error. Default: trainer/configs/STYLE.toml if present, else `small`
    /// (or the parent's model with --from).
    #[arg(long)]
    pub config: Option<String>,
    /// Passes over the training data (overrides the config).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many optimizer steps (the learning-rate schedule ends there too).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Run folder. Default: runs/STYLE.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in the run folder from its newest complete checkpoint (also after kill -9).
    /// On a machine without the run, continue from the shipped models/checkpoints/STYLE
    /// instead (as --continue-from does).
    #[arg(long)]
    pub resume: bool,
    /// Continue a run from a checkpoint's weights, settings and step alone (the shipped
    /// models/checkpoints/STYLE.safetensors, half precision, no optimizer state): the same
    /// schedule and batches, a fresh optimizer warmed up over 100 steps.
    #[arg(long, conflicts_with_all = ["resume", "from", "config"])]
    pub continue_from: Option<PathBuf>,
    /// Start over in an existing run folder (its checkpoints, metrics and plots are deleted).
    #[arg(long)]
    pub force: bool,
    /// Freeze the token embedding and the first N blocks while finetuning.
    #[arg(long)]
    pub freeze_layers: Option<usize>,
    /// Seed for weights, crops, augmentation and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// cpu, cuda, or auto (CUDA when libtorch sees a GPU).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads for libtorch (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar, log lines only.
    #[arg(long)]
    pub no_progress: bool,
}

/// Where shipped checkpoints live: the starting points of finetunes on a
/// machine that has not trained them itself.
pub const SHIPPED_CHECKPOINTS: &str = "models/checkpoints";

/// `--from NAME` means a path that exists (made absolute: the trainer runs in
/// the repository root), else `runs/NAME`, else the shipped checkpoint
/// `models/checkpoints/NAME.safetensors`, so that `--from classical` works on
/// a fresh checkout.
fn resolve_from(root: &Path, from: &str) -> String {
    if Path::new(from).exists() {
        return typed_path(Path::new(from));
    }
    if root.join("runs").join(from).is_dir() {
        return from.to_string();
    }
    let shipped = root.join(SHIPPED_CHECKPOINTS).join(format!("{from}.safetensors"));
    if shipped.is_file() {
        eprintln!("train: finetuning from the shipped checkpoint {}", shipped.display());
        return shipped.display().to_string();
    }
    from.to_string()
}

/// A path as the user typed it, made absolute against their folder: the
/// trainer runs in the repository root.
fn typed_path(p: &Path) -> String {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}

/// The `--config` the trainer gets: the one given (a file made absolute, a
/// preset name as it is), else the style's own `trainer/configs/STYLE.toml`
/// for a new run. A resumed run keeps the config it started with, so it gets
/// none unless one is given; the trainer then refuses only a change.
fn config_arg(root: &Path, style: &str, given: Option<&str>, resume: bool) -> Option<String> {
    match given {
        Some(c) if Path::new(c).is_file() => Some(typed_path(Path::new(c))),
        Some(c) => Some(c.to_string()),
        None => {
            let own = root.join("trainer/configs").join(format!("{style}.toml"));
            (!resume && own.is_file()).then(|| own.display().to_string())
        }
    }
}

/// Build `cadenza-train` in release mode; returns the binary.
pub fn build_trainer(env: &ToolEnv) -> Result<PathBuf> {
    let mut build = cargo(env);
    build.args(["build", "--release", "-p", "cadenza-trainer", "--bin", "cadenza-train"]);
    if env.cuda {
        build.args(["--features", "cuda"]);
    }
    // Cargo prints the compiler's errors; the command line and its environment would only bury them.
    let status = build.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("building cadenza-train failed ({status}); cargo's errors are above");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    Ok(target.join("release").join("cadenza-train"))
}

pub fn run(args: &Args) -> Result<()> {
    let env = crate::setup::tool_env()?;
    let bin = build_trainer(&env)?;
    let root = repo_root();
    let mut cmd = Command::new(&bin);
    cmd.current_dir(&root);
    env.apply(&mut cmd);
    cmd.args(["train", "--style", &args.style, "--device", &args.device]);
    let run_dir = args.out.clone().unwrap_or_else(|| root.join("runs").join(&args.style));
    let shipped = root.join(SHIPPED_CHECKPOINTS).join(format!("{}.safetensors", args.style));
    let continue_from = match (&args.continue_from, args.resume) {
        (Some(p), _) => Some(typed_path(p)),
        (None, true) if !run_dir.join("run.json").is_file() && shipped.is_file() => {
            eprintln!(
                "train: no run in {}; continuing from the shipped {} (fresh optimizer, short warm-up)",
                run_dir.display(),
                shipped.display()
            );
            Some(shipped.display().to_string())
        }
        (None, _) => None,
    };
    let resume = args.resume && continue_from.is_none();
    let config =
        if continue_from.is_some() { None } else { config_arg(&root, &args.style, args.config.as_deref(), resume) };
    if let Some(c) = &config {
        eprintln!("train: config {c}");
        cmd.args(["--config", c]);
    }
    let mut opt = |flag: &str, value: Option<String>| {
        if let Some(v) = value {
            cmd.arg(flag).arg(v);
        }
    };
    opt("--data", args.data.as_deref().map(typed_path));
    opt("--from", args.from.as_deref().map(|f| resolve_from(&root, f)));
    opt("--epochs", args.epochs.map(|v| v.to_string()));
    opt("--steps", args.steps.map(|v| v.to_string()));
    opt("--out", args.out.as_deref().map(typed_path));
    opt("--freeze-layers", args.freeze_layers.map(|v| v.to_string()));
    opt("--seed", args.seed.map(|v| v.to_string()));
    opt("--threads", args.threads.map(|v| v.to_string()));
    opt("--continue-from", continue_from);
    for (on, flag) in [(resume, "--resume"), (args.force, "--force"), (args.no_progress, "--no-progress")] {
        if on {
            cmd.arg(flag);
        }
    }
    run_trainer(&mut cmd)
}

/// Run the trainer. A failed one has printed its own error chain, which is
/// all the musician needs: xtask ends with its exit code and adds nothing (not
/// the command line, whose environment variables would bury the error).
fn run_trainer(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot start {}", cmd.get_program().to_string_lossy()))?;
    match status.code() {
        _ if status.success() => Ok(()),
        Some(code) => std::process::exit(code),
        None => bail!("cadenza-train was stopped ({status})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11: a resumed run gets no config of its own choosing; one typed is passed on,
    /// made absolute, for the trainer to compare with the run's.
    #[test]
    fn config_is_the_styles_own_for_a_new_run_and_the_typed_one_on_resume() {
        let root = repo_root();
        let own = root.join("trainer/configs/jazz.toml").display().to_string();
        assert_eq!(config_arg(&root, "jazz", None, false), Some(own.clone()));
        assert_eq!(config_arg(&root, "jazz", None, true), None, "the run keeps its own");
        assert_eq!(config_arg(&root, "jazz", Some(&own), true), Some(own));
        assert_eq!(config_arg(&root, "jazz", Some("tiny"), true).as_deref(), Some("tiny"));
        let typed = config_arg(&root, "jazz", Some("Cargo.toml"), false).expect("given");
        assert!(Path::new(&typed).is_absolute() && typed.ends_with("Cargo.toml"), "{typed}");
    }

    /// Set in the child that plays a failed `cargo xtask train`.
    const FAILED_TRAINER_PROBE: &str = "CADENZA_FAILED_TRAINER_PROBE";

    /// Issue 11: a failed training shows the trainer's error chain and nothing after it (no
    /// command line, no environment), and ends with the trainer's exit code.
    #[test]
    fn a_failed_trainer_leaves_only_its_own_error() {
        if std::env::var_os(FAILED_TRAINER_PROBE).is_some() {
            let mut trainer = Command::new("sh");
            let chain = "echo 'error: training jazz into runs/jazz' >&2; echo '  caused by: no data' >&2; exit 3";
            trainer.args(["-c", chain]).env("LD_LIBRARY_PATH", "/secret/lib");
            let _ = run_trainer(&mut trainer);
            unreachable!("a failed trainer ends the process");
        }
        let name = "train::tests::a_failed_trainer_leaves_only_its_own_error";
        let out = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(FAILED_TRAINER_PROBE, "1")
            .output()
            .expect("run the probe");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "the trainer's exit code: {stderr}");
        assert_eq!(stderr, "error: training jazz into runs/jazz\n  caused by: no data\n", "nothing else");
    }

    #[test]
    fn from_prefers_a_run_then_the_shipped_checkpoint() {
        let root = std::env::temp_dir().join(format!("cadenza-from-{}", std::process::id()));
        std::fs::create_dir_all(root.join("runs/jazz")).expect("runs");
        std::fs::create_dir_all(root.join(SHIPPED_CHECKPOINTS)).expect("models");
        std::fs::write(root.join(SHIPPED_CHECKPOINTS).join("classical.safetensors"), b"x").expect("weights");
        assert_eq!(resolve_from(&root, "jazz"), "jazz");
        assert_eq!(
            resolve_from(&root, "classical"),
            root.join(SHIPPED_CHECKPOINTS).join("classical.safetensors").display().to_string()
        );
        assert_eq!(resolve_from(&root, "nothing"), "nothing");
        std::fs::remove_dir_all(&root).expect("clean up");
    }
}
