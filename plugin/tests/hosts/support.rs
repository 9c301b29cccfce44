//! What the host tests share: where the built plugin and ONNX Runtime are, a
//! bundle laid out as `cargo xtask bundle` lays it out (in a temporary
//! folder), a real model, and reading Cadenza's saved state.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("plugin/ is in the workspace").to_path_buf()
}

/// `target/<profile>/`, the folder holding this test binary's `deps/`.
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf()
}

/// The plugin shared object cargo built for these tests (debug: with assert_process_allocs).
pub fn plugin_so() -> PathBuf {
    let so = target_profile_dir().join("libcadenza_plugin.so");
    assert!(so.is_file(), "{} is missing; build with `cargo test -p cadenza-plugin`", so.display());
    so
}

#[derive(serde::Deserialize)]
struct EnvFile {
    ort_dylib_path: PathBuf,
    library_path: Vec<PathBuf>,
}

fn env_file() -> Option<EnvFile> {
    let text = std::fs::read_to_string(repo_root().join(".cadenza-env.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// The ONNX Runtime library the bundle carries: `ORT_DYLIB_PATH`, else what `cargo xtask setup` found.
pub fn ort_library() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from).filter(|p| p.is_file()) {
        return p;
    }
    let env = env_file().expect("no ORT_DYLIB_PATH and no .cadenza-env.json: run `cargo xtask setup`");
    assert!(env.ort_dylib_path.is_file(), "{} is missing: run `cargo xtask setup`", env.ort_dylib_path.display());
    env.ort_dylib_path
}

/// A real model for the tests: `CADENZA_TEST_MODEL`, else the first shipped
/// `models/*.onnx`, else a tiny random-weight model exported by the trainer's
/// `cadenza-export` (built by `cargo test --workspace`). Returns (style name, path).
pub fn test_model() -> (String, PathBuf) {
    static MODEL: OnceLock<(String, PathBuf)> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("CADENZA_TEST_MODEL").map(PathBuf::from) {
                return (stem(&p), p);
            }
            let mut shipped: Vec<PathBuf> = std::fs::read_dir(repo_root().join("models"))
                .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "onnx")).collect())
                .unwrap_or_default();
            shipped.sort();
            if let Some(p) = shipped.into_iter().next() {
                return (stem(&p), p);
            }
            let out = std::env::temp_dir().join(format!("cadenza-host-tests-{}", std::process::id()));
            std::fs::create_dir_all(&out).expect("temp dir");
            let model = out.join("tinytest.onnx");
            let exporter = target_profile_dir().join("cadenza-export");
            assert!(
                exporter.is_file(),
                "no shipped model in models/ and no {} to make a test model: run `cargo xtask test` (builds the workspace)",
                exporter.display()
            );
            let mut cmd = Command::new(&exporter);
            cmd.args(["--random", "tiny", "--style", "tinytest", "--seed", "3", "--out"]).arg(&model);
            if let Some(env) = env_file() {
                let mut paths = env.library_path.clone();
                if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
                    paths.extend(std::env::split_paths(&old));
                }
                cmd.env("LD_LIBRARY_PATH", std::env::join_paths(paths).expect("paths"));
            }
            let status = cmd.status().expect("run cadenza-export");
            assert!(status.success(), "cadenza-export failed: {status}");
            ("tinytest".into(), model)
        })
        .clone()
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A CLAP bundle in `dir`: `Cadenza.clap` and `Cadenza.clap.resources/{lib,models}`, as `cargo xtask bundle` makes it.
pub fn clap_bundle(dir: &Path, models: &[(&str, &[u8])], with_ort: bool) -> PathBuf {
    let clap = dir.join("Cadenza.clap");
    std::fs::copy(plugin_so(), &clap).expect("copy plugin");
    let res = dir.join("Cadenza.clap.resources");
    std::fs::create_dir_all(res.join("lib")).expect("lib dir");
    std::fs::create_dir_all(res.join("models")).expect("models dir");
    if with_ort {
        std::os::unix::fs::symlink(ort_library(), res.join("lib").join("libonnxruntime.so.1.31.1")).expect("link ort");
    }
    for (name, bytes) in models {
        std::fs::write(res.join("models").join(format!("{name}.onnx")), bytes).expect("model");
    }
    clap
}

/// Keep the user's own model folder out of the tests: point XDG_DATA_HOME at an empty folder
/// (once, before any plugin is loaded; the plugin reads it when it scans styles).
pub fn isolate_user_data() {
    static ONCE: OnceLock<PathBuf> = OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cadenza-host-tests-xdg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("xdg dir");
        // Set once, before any plugin is loaded into this process.
        std::env::set_var("XDG_DATA_HOME", &dir);
        dir
    });
}

/// The session JSON inside a saved CLAP state (nice-plug: 8-byte length, then JSON whose
/// `fields.session` holds the session as a JSON string).
pub fn session_of_state(state: &[u8]) -> serde_json::Value {
    assert!(state.len() > 8, "state too short");
    let len = u64::from_le_bytes(state[..8].try_into().expect("8 bytes")) as usize;
    let json: serde_json::Value = serde_json::from_slice(&state[8..8 + len]).expect("state JSON");
    let field = json["fields"]["session"].as_str().expect("fields.session string");
    serde_json::from_str(field).expect("session JSON")
}

/// A saved CLAP state as a host would have saved it after `edit` changed its JSON (`params`,
/// `fields.session` as a string); the inverse of [`session_of_state`] for the session.
pub fn edit_state(state: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let len = u64::from_le_bytes(state[..8].try_into().expect("8 bytes")) as usize;
    let mut json: serde_json::Value = serde_json::from_slice(&state[8..8 + len]).expect("state JSON");
    edit(&mut json);
    let bytes = serde_json::to_vec(&json).expect("serialize");
    let mut out = (bytes.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&bytes);
    out
}

/// Notes of the bundled twinkle primer as (start beats, length beats, key, velocity) at `tempo_bpm`.
pub fn twinkle(tempo_bpm: f64) -> Vec<(f64, f64, u8, u8)> {
    let perf = cadenza_core::midi::read_file(&repo_root().join("models/primers/twinkle.mid"), &Default::default())
        .expect("twinkle.mid");
    let beats_per_s = tempo_bpm / 60.0;
    perf.notes
        .iter()
        .map(|n| (n.start_s * beats_per_s, (n.end_s - n.start_s) * beats_per_s, n.pitch, n.velocity))
        .collect()
}

/// The session JSON inside a saved VST3 state (nice-plug writes the JSON alone there).
pub fn session_of_vst3_state(state: &[u8]) -> serde_json::Value {
    let json: serde_json::Value = serde_json::from_slice(state).expect("state JSON");
    let field = json["fields"]["session"].as_str().expect("fields.session string");
    serde_json::from_str(field).expect("session JSON")
}
