//! Where things are: the repository, the Python environment `setup` makes,
//! and the variables (LIBTORCH, ORT_DYLIB_PATH, library paths) every other
//! command passes to the builds and programs it runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The repository root (the folder holding the workspace Cargo.toml).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// The file `setup` writes; every command reads it.
pub fn env_file() -> PathBuf {
    repo_root().join(".cadenza-env.json")
}

/// What `setup` found and installed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolEnv {
    /// The virtual environment's Python.
    pub python: PathBuf,
    /// torch's folder inside the virtual environment (holds `lib/`), for tch's build.
    pub libtorch: PathBuf,
    /// The ONNX Runtime shared library from the onnxruntime wheel.
    pub ort_dylib_path: PathBuf,
    /// Folders the trainer and tests need on the loader path.
    pub library_path: Vec<PathBuf>,
    /// Whether torch was installed with its CUDA libraries.
    pub cuda: bool,
}

impl ToolEnv {
    pub fn load() -> Result<Self> {
        let path = env_file();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: not found; run `cargo xtask setup` first", path.display()))?;
        let env: ToolEnv = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a Cadenza environment file", path.display()))?;
        for p in [&env.python, &env.libtorch, &env.ort_dylib_path] {
            if !p.exists() {
                bail!("{}: {} is gone; run `cargo xtask setup` again", path.display(), p.display());
            }
        }
        Ok(env)
    }

    /// Give a command the variables it needs to build and run against libtorch and ONNX Runtime.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env("LIBTORCH", &self.libtorch);
        cmd.env("ORT_DYLIB_PATH", &self.ort_dylib_path);
        cmd.env("CADENZA_PYTHON", &self.python);
        let mut paths: Vec<PathBuf> = self.library_path.clone();
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
            paths.extend(std::env::split_paths(&old));
        }
        if let Ok(joined) = std::env::join_paths(paths) {
            cmd.env("LD_LIBRARY_PATH", joined);
        }
    }
}

/// The ONNX Runtime library in-process engines load: `ORT_DYLIB_PATH` when
/// set (the engine reads it itself), else the one `setup` installed.
pub fn ort_library() -> Option<PathBuf> {
    if std::env::var_os("ORT_DYLIB_PATH").is_some() {
        return None;
    }
    ToolEnv::load().ok().map(|e| e.ort_dylib_path)
}

/// Run a command to completion, failing with its command line when it fails.
pub fn run_checked(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// A `cargo` command in the repository, with the tool environment applied.
pub fn cargo(env: &ToolEnv) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(repo_root());
    env.apply(&mut cmd);
    cmd
}
