//! `cargo xtask bench plugin`: the plugin as a host runs it. Builds the
//! release bundle, then runs `plugin/examples/bench.rs` (a CLAP host) against
//! it: process() time per 512-sample block idle, playing, and playing with the
//! preview piano; and the time from pressing Generate to the first note of an
//! 8-bar variation, with whichever model the bundle ships (it prints which).

use anyhow::{Context, Result};

use crate::bundle::{bundle, bundled_dir, BundleArgs};
use crate::env::{cargo, run_checked};

#[derive(Debug, clap::Args)]
pub struct PluginArgs {
    /// Process blocks per measurement (512 samples each at 48 kHz).
    #[arg(long, default_value_t = 4000)]
    pub blocks: usize,
    /// Measure the bundle already in target/bundled instead of building it first.
    #[arg(long)]
    pub no_build: bool,
    /// A model (.onnx) to measure with, offered as the user's only style; default: the shipped styles.
    #[arg(long)]
    pub model: Option<std::path::PathBuf>,
    /// The style to generate in (a model file's stem); default: the first style found.
    #[arg(long)]
    pub style: Option<String>,
    /// The Lean away parameter (0 = off; default the plugin's 0.5).
    #[arg(long)]
    pub lean: Option<f32>,
}

pub fn run(args: &PluginArgs) -> Result<()> {
    if !args.no_build {
        bundle(&BundleArgs { debug: false, standalone: false, out: None }).context("building the bundle")?;
    }
    let env = crate::setup::tool_env()?;
    let clap = bundled_dir().join("Cadenza.clap");
    let mut cmd = cargo(&env);
    cmd.args(["run", "--quiet", "-p", "cadenza-plugin", "--release", "--example", "bench", "--", "--clap"])
        .arg(&clap)
        .arg("--blocks")
        .arg(args.blocks.to_string());
    if let Some(style) = &args.style {
        cmd.arg("--style").arg(style);
    }
    if let Some(lean) = args.lean {
        cmd.arg("--lean").arg(lean.to_string());
    }
    // The plugin must find ONNX Runtime inside its bundle, as in a DAW.
    cmd.env_remove("ORT_DYLIB_PATH");
    // A private user data folder: the user's own styles stay out of the measurement.
    let data = std::env::temp_dir().join(format!("cadenza-bench-{}", std::process::id()));
    let models = data.join("cadenza").join("models");
    std::fs::create_dir_all(&models).with_context(|| format!("{}: cannot create", models.display()))?;
    if let Some(m) = &args.model {
        let name = m.file_name().context("--model names no file")?;
        std::fs::copy(m, models.join(name)).with_context(|| format!("{}: cannot copy", m.display()))?;
    }
    cmd.env("XDG_DATA_HOME", &data);
    let result = run_checked(&mut cmd);
    let _ = std::fs::remove_dir_all(&data);
    result
}
