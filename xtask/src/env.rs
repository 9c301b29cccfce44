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

    /// With the CUDA install, run this xtask again with setup's library folders on the
    /// loader path, once: ONNX Runtime's CUDA provider, loaded in this process by
    /// `generate` and the benchmarks, finds cuBLAS and cuDNN only through the path the
    /// process started with. Returns when nothing needs doing or the restart failed.
    #[cfg(target_os = "linux")]
    pub fn restart_with_cuda_libraries() {
        use std::os::unix::process::CommandExt;
        const MARK: &str = "CADENZA_XTASK_RESTARTED";
        if std::env::var_os(MARK).is_some() {
            return;
        }
        let Ok(env) = ToolEnv::load() else { return };
        let old: Vec<PathBuf> =
            std::env::var_os("LD_LIBRARY_PATH").map(|v| std::env::split_paths(&v).collect()).unwrap_or_default();
        if !env.cuda || env.library_path.iter().all(|p| old.contains(p)) {
            return;
        }
        let (Ok(me), Ok(joined)) = (std::env::current_exe(), std::env::join_paths(env.library_path.iter().chain(&old)))
        else {
            return;
        };
        let err =
            Command::new(me).args(std::env::args_os().skip(1)).env("LD_LIBRARY_PATH", joined).env(MARK, "1").exec();
        eprintln!("xtask: could not restart with CUDA's libraries on the loader path ({err}); going on without");
    }

    #[cfg(not(target_os = "linux"))]
    pub fn restart_with_cuda_libraries() {}

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
