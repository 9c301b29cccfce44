//! What Cadenza's tests share, as one dev-dependency instead of copied
//! helpers and `#[path]` includes: where the workspace and the built
//! binaries are, the ONNX Runtime library and Python that `cargo xtask setup`
//! recorded, real models (a shipped style, or random weights exported by
//! cadenza-core's exporter, no libtorch needed) and real MIDI (Bach chorales).
//!
//! - [`clap_host`]: a minimal CLAP host that drives the built plugin;
//! - [`hosts`]: the plugin's host-test helpers (bundles, saved state, timing).

pub mod clap_host;
pub mod hosts;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cadenza_core::engine::{EngineOptions, Provider};
use cadenza_core::export::{export_random, Precision};
use cadenza_core::{codec, midi, ModelConfig, Performance};

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("test-support/ is in the workspace").to_path_buf()
}

/// `target/<profile>/`, the folder holding the running test binary's `deps/`.
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf()
}

/// What `cargo xtask setup` recorded in `.cadenza-env.json`.
#[derive(Debug, serde::Deserialize)]
pub struct SetupEnv {
    #[serde(default)]
    pub python: Option<PathBuf>,
    pub ort_dylib_path: PathBuf,
    pub library_path: Vec<PathBuf>,
}

/// The setup's record, when `cargo xtask setup` has run.
pub fn setup_env() -> Option<SetupEnv> {
    let text = std::fs::read_to_string(repo_root().join(".cadenza-env.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// The ONNX Runtime library: `ORT_DYLIB_PATH` (set by `cargo xtask test`), else what `cargo xtask setup` found.
pub fn ort_library() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from).filter(|p| p.is_file()) {
        return p;
    }
    let env = setup_env().expect("no ORT_DYLIB_PATH and no .cadenza-env.json: run `cargo xtask setup`");
    assert!(env.ort_dylib_path.is_file(), "{} is missing: run `cargo xtask setup`", env.ort_dylib_path.display());
    env.ort_dylib_path
}

/// The Python of the environment `cargo xtask setup` made: `CADENZA_PYTHON`, else what
/// `.cadenza-env.json` names; `None` when neither exists.
pub fn python() -> Option<PathBuf> {
    std::env::var_os("CADENZA_PYTHON")
        .map(PathBuf::from)
        .or_else(|| setup_env().and_then(|e| e.python))
        .filter(|p| p.is_file())
}

/// The engine on the CPU with two threads (these machines' cores) and [`ort_library`].
pub fn engine_options() -> EngineOptions {
    EngineOptions { ort_library: Some(ort_library()), intra_threads: 2, provider: Provider::Cpu }
}

/// Export deterministic random weights of `cfg` as `dir/<style>.onnx` (no
/// libtorch: cadenza-core's exporter). Returns the file.
pub fn random_model(dir: &Path, cfg: &ModelConfig, seed: u64, style: &str) -> PathBuf {
    let out = dir.join(format!("{style}.onnx"));
    export_random(cfg, style, seed, Precision::Float32, &out).expect("export random weights");
    out
}

/// A real model for the tests, made once per test binary: `CADENZA_TEST_MODEL`,
/// else the first shipped `models/*.onnx`, else a `tiny` random-weight export
/// (style `tinytest`). Returns (style name, path).
pub fn test_model() -> (String, PathBuf) {
    static MODEL: OnceLock<(String, PathBuf)> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("CADENZA_TEST_MODEL").map(PathBuf::from) {
                return (stem(&p), p);
            }
            let mut shipped: Vec<PathBuf> = std::fs::read_dir(repo_root().join("models"))
                .map(|rd| {
                    rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "onnx")).collect()
                })
                .unwrap_or_default();
            shipped.sort();
            if let Some(p) = shipped.into_iter().next() {
                return (stem(&p), p);
            }
            let dir = std::env::temp_dir().join(format!("cadenza-test-model-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            ("tinytest".into(), random_model(&dir, &ModelConfig::TINY, 3, "tinytest"))
        })
        .clone()
}

/// The Bach chorales the trainer's tests train on (`trainer/tests/fixtures/classical`).
pub fn chorales_dir() -> PathBuf {
    repo_root().join("trainer/tests/fixtures/classical")
}

/// One chorale of [`chorales_dir`], read.
pub fn chorale(name: &str) -> Performance {
    let path = chorales_dir().join(name);
    midi::read_file(&path, &midi::ReadOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Real events, at least `min_len` of them: the chorales in name order, each
/// framed by START and END as the trainer frames pieces.
pub fn chorale_tokens(min_len: usize) -> Vec<i64> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chorales_dir())
        .expect("the chorale fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mid"))
        .collect();
    files.sort();
    let mut tokens = Vec::new();
    for f in files.iter().cycle().take(64) {
        let perf = midi::read_file(f, &midi::ReadOptions::default()).expect("fixture reads");
        tokens.push(i64::from(codec::START));
        tokens.extend(codec::encode_tokens(&perf).into_iter().map(i64::from));
        tokens.push(i64::from(codec::END));
        if tokens.len() >= min_len {
            break;
        }
    }
    tokens
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}
