//! What the `cadenza` command finds outside itself: the ONNX Runtime library
//! and the sibling programs it hands work to (`cadenza-train`, which links
//! libtorch so that `cadenza` does not).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use cadenza_core::engine::{library_in, ORT_DYLIB_ENV};
use cadenza_core::locate::{self, ORT_LIBRARY_ENV};

/// The file `cargo xtask setup` writes in the checkout, naming the ONNX Runtime library it installed.
pub const SETUP_ENV_FILE: &str = ".cadenza-env.json";

/// The ONNX Runtime library for the engine, best first:
/// 1. `CADENZA_ORT_LIBRARY` (as for the plugin);
/// 2. `ORT_DYLIB_PATH`: `None` here, the engine reads it itself;
/// 3. the user's Cadenza folder (`~/.local/share/cadenza/onnxruntime/`);
/// 4. beside the `cadenza` program, or in `<program folder>/../lib/cadenza/`;
/// 5. the one `cargo xtask setup` installed in the checkout `cadenza` was built from.
///
/// With none of them `None`: the engine searches its own folders and names them in its error.
pub fn ort_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(ORT_LIBRARY_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if std::env::var_os(ORT_DYLIB_ENV).is_some_and(|v| !v.is_empty()) {
        return None;
    }
    if let Some(p) = locate::user_ort_library() {
        return Some(p);
    }
    if let Some(dir) = program_dir() {
        for d in [dir.clone(), dir.join("../lib/cadenza")] {
            if let Some(p) = library_in(&d, &mut Vec::new()) {
                return Some(p);
            }
        }
    }
    locate::checkout().and_then(|root| setup_ort_library(&root))
}

/// The library named in the checkout's setup file, if it is still there.
fn setup_ort_library(root: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(root.join(SETUP_ENV_FILE)).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let path = PathBuf::from(json.get("ort_dylib_path")?.as_str()?);
    path.is_file().then_some(path)
}

/// The folder of the running program.
pub fn program_dir() -> Option<PathBuf> {
    std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf))
}

/// `name` beside the running program, else on `PATH`; the error says how to install it.
pub fn sibling_program(name: &str, install: &str) -> Result<PathBuf> {
    let beside = program_dir().map(|d| d.join(name));
    if let Some(p) = beside.as_ref().filter(|p| p.is_file()) {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|d| d.join(name)).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file())
    {
        return Ok(p);
    }
    bail!(
        "`{name}` was not found {}or on PATH; install it with `{install}` (it needs libtorch: run \
         `cargo xtask setup` in the checkout first)",
        beside.map(|p| format!("beside this program ({}) ", p.display())).unwrap_or_default()
    )
}
