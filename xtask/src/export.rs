//! `cargo xtask export`: write `models/<style>.onnx` (or `--out`) from a
//! training run's best checkpoint, with the `cadenza-export` binary of the
//! trainer crate, then validate the file with `onnx.checker` (full check).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::env::{cargo, repo_root, run_checked, ToolEnv};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Style name: written into the model, names the default run folder and output.
    #[arg(long)]
    pub style: String,
    /// A checkpoint (`x.safetensors`, `x.json` or the base path `x`) instead of a run folder.
    #[arg(long, conflicts_with = "run")]
    pub checkpoint: Option<PathBuf>,
    /// The run folder whose best (else latest) checkpoint to export. Default: runs/STYLE.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// The .onnx file to write. Default: models/STYLE.onnx.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Skip the `onnx.checker.check_model(full_check=True)` validation.
    #[arg(long)]
    pub no_check: bool,
}

/// Build `cadenza-export` in release mode; returns the binary.
pub fn build_exporter(env: &ToolEnv) -> Result<PathBuf> {
    let mut build = cargo(env);
    build.args(["build", "--release", "-p", "cadenza-trainer", "--bin", "cadenza-export"]);
    run_checked(&mut build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    Ok(target.join("release").join("cadenza-export"))
}

/// Run `onnx.checker.check_model(path, full_check=True)` in the project's Python.
pub fn check_onnx(env: &ToolEnv, path: &std::path::Path) -> Result<()> {
    let out = Command::new(&env.python)
        .args(["-c", "import sys, onnx; onnx.checker.check_model(sys.argv[1], full_check=True)"])
        .arg(path)
        .output()
        .with_context(|| format!("cannot start {}", env.python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{}: onnx.checker rejects the model: {}", path.display(), err.lines().last().unwrap_or("unknown error"));
    }
    Ok(())
}

pub fn run(args: &Args) -> Result<()> {
    let env = crate::setup::tool_env()?;
    let root = repo_root();
    let out = args.out.clone().unwrap_or_else(|| root.join("models").join(format!("{}.onnx", args.style)));
    let bin = build_exporter(&env)?;
    let mut cmd = Command::new(&bin);
    cmd.current_dir(&root);
    env.apply(&mut cmd);
    cmd.args(["--style", &args.style]);
    match (&args.checkpoint, &args.run) {
        (Some(c), _) => cmd.arg("--checkpoint").arg(c),
        (None, Some(r)) => cmd.arg("--run").arg(r),
        (None, None) => cmd.arg("--run").arg(root.join("runs").join(&args.style)),
    };
    cmd.arg("--out").arg(&out);
    // cadenza-export prints its own error naming the file; add only the outcome.
    let status = cmd.status().with_context(|| format!("cannot start {}", bin.display()))?;
    if !status.success() {
        bail!("no model written for style `{}`", args.style);
    }
    if !args.no_check {
        check_onnx(&env, &out)?;
        eprintln!("export: {} passes onnx.checker (full check)", out.display());
    }
    Ok(())
}
