//! `cargo xtask export`: forwards to `cadenza export` (cli/src/export.rs:
//! the user's style folder by default, `--out` for anywhere else, e.g.
//! `models/STYLE.onnx` when shipping a style), then validates the file with
//! `onnx.checker` (full check).

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::env::{repo_root, ToolEnv};

/// Export a trained style to ONNX (with a KV cache) in your style folder, where the plugin's
/// Rescan finds it (or --out), and check it with onnx.checker.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub export: cadenza::export::Args,
    /// Skip the `onnx.checker.check_model(full_check=True)` validation.
    #[arg(long)]
    pub no_check: bool,
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
    let out = cadenza::export::run(&args.export, &repo_root())?.path;
    let env = crate::setup::tool_env()?;
    if !args.no_check {
        check_onnx(&env, &out)?;
        eprintln!("export: {} passes onnx.checker (full check)", out.display());
    }
    Ok(())
}
