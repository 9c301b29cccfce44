//! `cadenza export` (and `cargo xtask export`): write a style's `.onnx` model
//! from a training run's best checkpoint into the user's style folder
//! (`~/.local/share/cadenza/models/`), where the plugin's Rescan and
//! `cadenza generate --style NAME` find it. The repository's `models/` holds
//! only the shipped styles; `--out` writes anywhere else. The exporter is
//! core's ([`cadenza_core::export`]), so exporting needs no libtorch.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cadenza_core::export::{export_onnx, ExportOptions, ExportReport, Precision};
use cadenza_core::locate::{user_model_dir, MODEL_EXTENSION};
use cadenza_core::records::run_checkpoint;

/// Export a trained style to ONNX in your style folder, where the plugin's Rescan finds it.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Style name: written into the model, names the default run folder and the file.
    #[arg(long)]
    pub style: String,
    /// A checkpoint (`x.safetensors`, `x.json` or the base path `x`) instead of a run folder.
    #[arg(long, conflicts_with = "run")]
    pub checkpoint: Option<PathBuf>,
    /// The run folder whose best (else latest) checkpoint to export. Default: runs/STYLE.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// The .onnx file to write. Default: STYLE.onnx in your style folder
    /// (~/.local/share/cadenza/models/), where the plugin's Rescan finds it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Weight products in int8 (about twice as fast on a CPU, at most
    /// +0.005 nats per event) or float32 (the trainer's exact numbers; use it
    /// for a GPU, whose provider runs int8 products on the CPU).
    #[arg(long, default_value = "int8")]
    pub precision: Precision,
}

/// Where a style's model goes by default: the user's style folder.
pub fn default_out(style: &str) -> Result<PathBuf> {
    let dir = user_model_dir().context("no style folder: neither XDG_DATA_HOME nor HOME is set; pass --out")?;
    Ok(dir.join(format!("{style}.{MODEL_EXTENSION}")))
}

/// Export the checkpoint `args` names (run folders relative to `work_dir`)
/// with the libtorch-free exporter; prints and returns what was written.
pub fn run(args: &Args, work_dir: &Path) -> Result<ExportReport> {
    let out = match &args.out {
        Some(o) => absolute(o),
        None => default_out(&args.style)?,
    };
    let checkpoint = match (&args.checkpoint, &args.run) {
        (Some(c), _) => c.clone(),
        (None, run) => {
            let dir = run.clone().unwrap_or_else(|| work_dir.join("runs").join(&args.style));
            run_checkpoint(&dir).with_context(|| {
                format!(
                    "{}: no checkpoint in this run folder (train one with `cadenza train --style {}`)",
                    dir.display(),
                    args.style
                )
            })?
        }
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the folder", dir.display()))?;
    }
    let report =
        export_onnx(&checkpoint, &out, &ExportOptions { style: Some(args.style.clone()), precision: args.precision })
            .with_context(|| format!("no model written for style `{}`", args.style))?;
    let found = user_model_dir().is_some_and(|d| out.parent() == Some(d.as_path()));
    eprintln!(
        "export: {} ({} style, {} layers x d_model {}, window {}, {:.1} MB){}",
        report.path.display(),
        report.style,
        report.config.n_layers,
        report.config.d_model,
        report.config.max_seq_len,
        report.bytes as f64 / 1e6,
        if found {
            format!("; the plugin's Rescan and `cadenza generate --style {}` find it", args.style)
        } else {
            String::new()
        }
    );
    Ok(report)
}

/// A path as the user typed it, made absolute against their folder (the
/// programs this hands work to may run in another).
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12: an exported style goes where the plugin's Rescan looks, not into the checkout.
    #[test]
    fn the_default_output_is_the_users_style_folder() {
        let out = default_out("mine").expect("a home");
        assert_eq!(out, user_model_dir().expect("folder").join("mine.onnx"));
        assert!(cadenza_core::locate::checkout().is_none_or(|c| !out.starts_with(c)), "{}", out.display());
    }
}
