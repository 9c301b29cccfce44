//! `cadenza train` (and `cargo xtask train`): hand the shared train flags
//! ([`cadenza_core::train_args::TrainArgs`]) to the `cadenza-train` program,
//! which links libtorch so that `cadenza` does not. Before that, the
//! defaults that depend on what is shipped are filled in: the style's own
//! config (`trainer/configs/STYLE.toml`), and on `--resume` without a run the
//! shipped checkpoint to continue from. (`--from NAME` is looked up by the
//! trainer, `checkpoint::resolve_from`: its runs, then the shipped checkpoints.) Typed paths are made absolute: the
//! trainer runs in the working folder (`runs/`, `data/` are relative to it).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use cadenza_core::locate::{shipped_checkpoint, style_config};
pub use cadenza_core::train_args::TrainArgs as Args;

use crate::export::absolute;

/// How to install the trainer, for the error when it is missing.
pub const INSTALL_TRAINER: &str = "cargo install --path trainer";

/// The run folder of `args` in `work_dir`.
fn run_dir(args: &Args, work_dir: &Path) -> std::path::PathBuf {
    args.out.as_deref().map(absolute).unwrap_or_else(|| work_dir.join("runs").join(&args.style))
}

/// The flags the trainer gets: typed paths absolute, the shipped defaults filled in.
pub fn trainer_args(args: &Args, work_dir: &Path) -> Args {
    let continue_from = match (&args.continue_from, args.resume) {
        (Some(p), _) => Some(absolute(p)),
        (None, true) if !run_dir(args, work_dir).join("run.json").is_file() => {
            shipped_checkpoint(&args.style).inspect(|shipped| {
                eprintln!(
                    "train: no run in {}; continuing from the shipped {} (fresh optimizer, short warm-up)",
                    run_dir(args, work_dir).display(),
                    shipped.display()
                );
            })
        }
        (None, _) => None,
    };
    let resume = args.resume && continue_from.is_none();
    let config = match &args.config {
        _ if continue_from.is_some() => None,
        Some(c) if Path::new(c).is_file() => Some(absolute(Path::new(c)).display().to_string()),
        Some(c) => Some(c.clone()),
        // A resumed run keeps the config it started with; the trainer refuses only a change.
        None if resume => None,
        None => style_config(&args.style).map(|p| p.display().to_string()),
    };
    if let Some(c) = &config {
        eprintln!("train: config {c}");
    }
    Args {
        data: args.data.as_deref().map(absolute),
        from: args.from.as_deref().map(from_arg),
        config,
        out: args.out.as_deref().map(absolute),
        resume,
        continue_from,
        ..args.clone()
    }
}

/// `--from` as the trainer gets it: a path that exists made absolute (the
/// trainer may run in another folder), anything else as typed: the trainer
/// looks a name up in its runs, then in the shipped checkpoints.
fn from_arg(from: &str) -> String {
    let path = Path::new(from);
    if path.exists() {
        absolute(path).display().to_string()
    } else {
        from.to_string()
    }
}

/// Train with `trainer` (a `cadenza-train` command, its environment set by
/// the caller) in `work_dir`. A failed trainer has printed its own error
/// chain, which is all the musician needs: this process ends with its exit
/// code and adds nothing (not the command line, whose environment would bury
/// the error).
pub fn run(args: &Args, mut trainer: Command, work_dir: &Path) -> Result<()> {
    trainer.current_dir(work_dir).arg("train").args(trainer_args(args, work_dir).to_args());
    run_trainer(&mut trainer)
}

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
    use cadenza_core::locate::checkout;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(line: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("train").chain(line.iter().copied())).expect("parses").args
    }

    /// Issue 11: a resumed run gets no config of its own choosing; one typed is passed on,
    /// made absolute, for the trainer to compare with the run's.
    #[test]
    fn config_is_the_styles_own_for_a_new_run_and_the_typed_one_on_resume() {
        let root = checkout().expect("tests run in the checkout");
        // A style with a config of its own and no shipped checkpoint: a resume without a
        // run has nothing to continue from (a shipped style would continue from its checkpoint).
        let work = tempfile::tempdir().expect("tmp");
        let own = root.join("trainer/configs/classical-anneal.toml").display().to_string();
        let config = |line: &[&str]| trainer_args(&args(line), work.path()).config;
        assert_eq!(config(&["--style", "classical-anneal"]), Some(own.clone()));
        assert_eq!(config(&["--style", "nostyle"]), None);
        assert_eq!(config(&["--style", "classical-anneal", "--resume", "--from", "x"]), None, "the run keeps its own");
        assert_eq!(config(&["--style", "classical-anneal", "--resume", "--config", &own]), Some(own));
        assert_eq!(config(&["--style", "classical-anneal", "--resume", "--config", "tiny"]).as_deref(), Some("tiny"));
        let typed = config(&["--style", "classical-anneal", "--config", "Cargo.toml"]).expect("given");
        assert!(Path::new(&typed).is_absolute() && typed.ends_with("Cargo.toml"), "{typed}");
    }

    /// A resume without a run continues from the shipped checkpoint, with the run's own config.
    #[test]
    fn resume_without_a_run_continues_from_the_shipped_checkpoint() {
        let work = tempfile::tempdir().expect("tmp");
        let Some(shipped) = shipped_checkpoint("classical") else { panic!("classical is shipped") };
        let a = trainer_args(&args(&["--style", "classical", "--resume"]), work.path());
        assert_eq!((a.continue_from, a.resume, a.config), (Some(shipped), false, None));
        std::fs::create_dir_all(work.path().join("runs/classical")).expect("dir");
        std::fs::write(work.path().join("runs/classical/run.json"), b"{}").expect("run");
        let a = trainer_args(&args(&["--style", "classical", "--resume"]), work.path());
        assert_eq!((a.continue_from, a.resume), (None, true));
    }

    #[test]
    fn from_is_made_absolute_when_it_is_a_path_and_passed_on_as_a_name_otherwise() {
        assert_eq!(from_arg("classical"), "classical", "the trainer looks names up");
        assert_eq!(from_arg("Cargo.toml"), absolute(Path::new("Cargo.toml")).display().to_string());
    }

    /// Set in the child that plays a failed `cadenza train`.
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
}
