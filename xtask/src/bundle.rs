//! `cargo xtask bundle` and `cargo xtask install`: the plugin as a DAW loads
//! it. Each bundle carries the ONNX Runtime library and the shipped models, and
//! the plugin finds both relative to its own binary (no environment variable):
//!
//! ```text
//! target/bundled/
//!   Cadenza.clap                       the plugin (one file, as CLAP wants on Linux)
//!   Cadenza.clap.resources/lib/        libonnxruntime.so.1.31.1
//!   Cadenza.clap.resources/models/     <style>.onnx, <style>.md, style-judge.json
//!   Cadenza.vst3/Contents/x86_64-linux/Cadenza.so
//!   Cadenza.vst3/Contents/Resources/{lib,models}/
//!   cadenza-standalone                 (with --standalone) finds Cadenza.clap.resources beside it
//! ```
//!
//! The layout must agree with `plugin/src/locate.rs` (where the plugin looks)
//! and `test-support/src/hosts.rs` (the bundle the host tests build).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cadenza_core::classifier::JUDGE_FILE;

use crate::env::{cargo, repo_root, run_checked};

/// File name of the ONNX Runtime library inside a bundle (`plugin/src/locate.rs` looks for it).
const ORT_FILE: &str = "libonnxruntime.so.1.31.1";
/// VST3's folder for 64-bit Linux binaries.
const VST3_ARCH_DIR: &str = "x86_64-linux";

#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// Build and bundle the debug profile (with nice-plug's allocation checks in process()).
    #[arg(long)]
    pub debug: bool,
    /// Also build the standalone application (JACK/ALSA) into the bundle folder.
    #[arg(long)]
    pub standalone: bool,
    /// Where the bundles go (default: target/bundled).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Install the bundles already in target/bundled instead of building them first.
    #[arg(long)]
    pub no_build: bool,
    /// Install the debug build.
    #[arg(long)]
    pub debug: bool,
}

/// What `bundle` made.
pub struct Bundles {
    pub clap: PathBuf,
    pub clap_resources: PathBuf,
    pub vst3: PathBuf,
    pub models: Vec<PathBuf>,
}

pub fn bundled_dir() -> PathBuf {
    repo_root().join("target").join("bundled")
}

pub fn run_bundle(args: &BundleArgs) -> Result<()> {
    let b = bundle(args)?;
    let size = |p: &Path| dir_size(p).map(|s| format!("{:.1} MB", s as f64 / 1e6)).unwrap_or_default();
    println!("CLAP: {} (+ {}, {})", b.clap.display(), b.clap_resources.display(), size(&b.clap_resources));
    println!("VST3: {} ({})", b.vst3.display(), size(&b.vst3));
    if b.models.is_empty() {
        println!("models: none shipped yet (models/*.onnx); the plugin also reads the user model folder");
    } else {
        for m in &b.models {
            println!("model: {}", m.display());
        }
    }
    Ok(())
}

pub fn bundle(args: &BundleArgs) -> Result<Bundles> {
    let env = crate::setup::tool_env()?;
    let profile = if args.debug { "debug" } else { "release" };
    let mut build = cargo(&env);
    build.args(["build", "-p", "cadenza-plugin", "--lib"]);
    if !args.debug {
        build.arg("--release");
    }
    run_checked(&mut build).context("building the plugin")?;
    let target = repo_root().join("target").join(profile);
    let so = target.join("libcadenza_plugin.so");
    if !so.is_file() {
        bail!("{}: the build made no plugin library", so.display());
    }

    let out = args.out.clone().unwrap_or_else(bundled_dir);
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    let models = shipped_models()?;

    let clap = out.join("Cadenza.clap");
    let clap_resources = out.join("Cadenza.clap.resources");
    replace_dir(&clap_resources)?;
    copy(&so, &clap)?;
    fill_resources(&clap_resources, &env.ort_dylib_path, &models)?;

    let vst3 = out.join("Cadenza.vst3");
    replace_dir(&vst3)?;
    let contents = vst3.join("Contents");
    copy(&so, &contents.join(VST3_ARCH_DIR).join("Cadenza.so"))?;
    fill_resources(&contents.join("Resources"), &env.ort_dylib_path, &models)?;

    if args.standalone {
        let mut build = cargo(&env);
        build.args(["build", "-p", "cadenza-standalone"]);
        if !args.debug {
            build.arg("--release");
        }
        run_checked(&mut build).context("building the standalone")?;
        copy(&target.join("cadenza-standalone"), &out.join("cadenza-standalone"))?;
    }
    Ok(Bundles { clap, clap_resources, vst3, models })
}

pub fn run_install(args: &InstallArgs) -> Result<()> {
    let out = bundled_dir();
    if !args.no_build {
        bundle(&BundleArgs { debug: args.debug, standalone: false, out: Some(out.clone()) })?;
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).context("HOME is not set")?;
    let (clap, clap_res, vst3) =
        (out.join("Cadenza.clap"), out.join("Cadenza.clap.resources"), out.join("Cadenza.vst3"));
    for p in [&clap, &clap_res, &vst3] {
        if !p.exists() {
            bail!("{}: missing; run `cargo xtask bundle` first", p.display());
        }
    }
    let clap_dir = home.join(".clap");
    let vst3_dir = home.join(".vst3");
    copy(&clap, &clap_dir.join("Cadenza.clap"))?;
    replace_dir(&clap_dir.join("Cadenza.clap.resources"))?;
    copy_tree(&clap_res, &clap_dir.join("Cadenza.clap.resources"))?;
    replace_dir(&vst3_dir.join("Cadenza.vst3"))?;
    copy_tree(&vst3, &vst3_dir.join("Cadenza.vst3"))?;
    println!("installed {}", clap_dir.join("Cadenza.clap").display());
    println!("installed {}", vst3_dir.join("Cadenza.vst3").display());

    // The user model folder: styles you train go here; the shipped ones are copied in unless a
    // file of that name is already there (never overwrite a model you trained).
    let user_models = user_model_dir().context("neither XDG_DATA_HOME nor HOME is set")?;
    std::fs::create_dir_all(&user_models).with_context(|| format!("{}: cannot create", user_models.display()))?;
    for m in shipped_models()? {
        let Some(name) = m.file_name() else { continue };
        let dest = user_models.join(name);
        // The style judge is Cadenza's, not a style of yours: it is brought up to date.
        if dest.exists() && name != JUDGE_FILE {
            println!("kept {} (already there)", dest.display());
        } else {
            copy(&m, &dest)?;
            println!("installed {}", dest.display());
        }
    }
    println!("user model folder: {} (put trained <style>.onnx files here)", user_models.display());
    Ok(())
}

/// `$XDG_DATA_HOME/cadenza/models` or `~/.local/share/cadenza/models` (as the plugin reads it).
fn user_model_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("cadenza").join("models"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/cadenza/models"))
}

/// `models/*.onnx`, their `*.md` model cards and the style judge that decides when they lead.
fn shipped_models() -> Result<Vec<PathBuf>> {
    let dir = repo_root().join("models");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("{}: cannot read", dir.display()))? {
        let p = e?.path();
        let shipped = p.extension().is_some_and(|x| x == "onnx" || x == "md") || p.ends_with(JUDGE_FILE);
        if p.is_file() && shipped {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn fill_resources(resources: &Path, ort: &Path, models: &[PathBuf]) -> Result<()> {
    if !ort.is_file() {
        bail!("{}: the ONNX Runtime library is missing; run `cargo xtask setup`", ort.display());
    }
    copy(ort, &resources.join("lib").join(ORT_FILE))?;
    let model_dir = resources.join("models");
    std::fs::create_dir_all(&model_dir).with_context(|| format!("{}: cannot create", model_dir.display()))?;
    for m in models {
        if let Some(name) = m.file_name() {
            copy(m, &model_dir.join(name))?;
        }
    }
    Ok(())
}

fn replace_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("{}: cannot remove the old copy", dir.display()))?;
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create", parent.display()))?;
    }
    // Copy beside, then rename: a host scanning the folder never sees half a plugin.
    let tmp = cadenza_core::fsutil::temp_path(to);
    std::fs::copy(from, &tmp).with_context(|| format!("cannot copy {} to {}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to).with_context(|| format!("cannot move {} to {}", tmp.display(), to.display()))?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("{}: cannot create", to.display()))?;
    for e in std::fs::read_dir(from).with_context(|| format!("{}: cannot read", from.display()))? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dest)?;
        } else {
            copy(&e.path(), &dest)?;
        }
    }
    Ok(())
}

fn dir_size(p: &Path) -> Option<u64> {
    let meta = std::fs::metadata(p).ok()?;
    if meta.is_file() {
        return Some(meta.len());
    }
    let mut total = 0;
    for e in std::fs::read_dir(p).ok()?.flatten() {
        total += dir_size(&e.path())?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bundles and the user model folder get the style judge with the models: without it
    /// jazz, pop and rock would not lead a nursery tune by default.
    #[test]
    fn the_style_judge_ships_with_the_models() {
        let shipped = shipped_models().expect("models/");
        assert!(shipped.iter().any(|p| p.ends_with(JUDGE_FILE)), "{shipped:?}");
        assert!(shipped.iter().any(|p| p.extension().is_some_and(|x| x == "onnx")), "{shipped:?}");
    }
}
