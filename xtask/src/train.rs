//! `cargo xtask train`: builds the trainer (`cadenza-train`, release, with
//! the `cuda` feature when setup installed the CUDA torch) and forwards to
//! `cadenza train` (cli/src/train.rs) in the repository root, with the tool
//! environment (libtorch's libraries) applied.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
pub use cadenza::train::Args;

use crate::env::{cargo, repo_root, ToolEnv};

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
    let mut trainer = Command::new(build_trainer(&env)?);
    env.apply(&mut trainer);
    cadenza::train::run(args, trainer, &repo_root())
}
