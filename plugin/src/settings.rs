//! Settings of this machine rather than of a project: which ONNX Runtime
//! library runs the models and on which execution provider. They live in
//! `settings.json` in the user's Cadenza folder (beside `models/`), written
//! atomically; a project never saves or loads them, so a project made on a
//! machine with a GPU opens unchanged on one without.
//!
//! The bundle carries a CPU-only ONNX Runtime (the CUDA provider alone is
//! hundreds of MB). A GPU build is found, best first, in
//! [`ORT_LIBRARY_ENV`], the saved setting, the user's folder
//! (`onnxruntime/libonnxruntime.so*`), and the bundle's own library comes
//! last: a library that does not load falls through to the next one.

use std::path::{Path, PathBuf};

use cadenza_core::engine::Provider;
use serde::{Deserialize, Serialize};

/// The settings file's name in the user's Cadenza folder.
pub const SETTINGS_FILE: &str = "settings.json";
pub use cadenza_core::locate::{ORT_LIBRARY_ENV, USER_ORT_DIR};

/// What this machine runs the models with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MachineSettings {
    /// The ONNX Runtime shared library (e.g. onnxruntime-gpu's
    /// `libonnxruntime.so.1.31.1`); `None`: the user folder's, else the bundle's.
    pub ort_library: Option<PathBuf>,
    /// `auto`: CUDA when the library is not the bundle's and has it, else the CPU;
    /// `cpu`; `cuda`: CUDA, or the CPU with the reason in the status line.
    pub execution: Provider,
}

/// Why the settings could not be read or written; names the file.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("no folder for Cadenza's settings: neither XDG_DATA_HOME nor HOME is set")]
    NoFolder,
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not Cadenza's settings: {message}", path.display())]
    Malformed { path: PathBuf, message: String },
}

/// `<user data folder>/settings.json`.
pub fn settings_path() -> Option<PathBuf> {
    crate::locate::user_data_dir().map(|d| d.join(SETTINGS_FILE))
}

impl MachineSettings {
    /// The saved settings; no file yet is the defaults.
    pub fn load() -> Result<Self, SettingsError> {
        Self::load_from(&settings_path().ok_or(SettingsError::NoFolder)?)
    }

    pub fn load_from(path: &Path) -> Result<Self, SettingsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(SettingsError::Io { path: path.to_path_buf(), source }),
        };
        serde_json::from_str(&text)
            .map_err(|e| SettingsError::Malformed { path: path.to_path_buf(), message: e.to_string() })
    }

    /// Save for this machine; returns the file written.
    pub fn save(&self) -> Result<PathBuf, SettingsError> {
        let path = settings_path().ok_or(SettingsError::NoFolder)?;
        self.save_to(&path)?;
        Ok(path)
    }

    pub fn save_to(&self, path: &Path) -> Result<(), SettingsError> {
        let io = |source| SettingsError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut json = serde_json::to_string_pretty(self)
            .map_err(|e| SettingsError::Malformed { path: path.to_path_buf(), message: e.to_string() })?;
        json.push('\n');
        cadenza_core::fsutil::write_atomic(path, json.as_bytes()).map_err(io)
    }
}

/// Where a library came from, in the words the status line uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibrarySource {
    Env,
    Setting,
    UserFolder,
    Bundle,
}

impl LibrarySource {
    pub fn describe(self) -> &'static str {
        match self {
            LibrarySource::Env => ORT_LIBRARY_ENV,
            LibrarySource::Setting => "the ONNX Runtime setting",
            LibrarySource::UserFolder => "your Cadenza folder",
            LibrarySource::Bundle => "Cadenza's bundle",
        }
    }
}

/// One ONNX Runtime library to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrtLibrary {
    pub path: PathBuf,
    pub source: LibrarySource,
}

/// How a generation's model is run: the libraries to try, best first, and the provider asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrtChoice {
    pub libraries: Vec<OrtLibrary>,
    pub execution: Provider,
    /// Where the bundle's library was looked for when it is missing (the bundle is broken).
    pub bundle_missing: Vec<PathBuf>,
}

impl OrtChoice {
    /// The choice on this machine now: [`ORT_LIBRARY_ENV`], `settings`, the user's folder, the bundle.
    pub fn current(settings: &MachineSettings) -> Self {
        let env = std::env::var_os(ORT_LIBRARY_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
        let user_dir = crate::locate::user_data_dir().map(|d| d.join(USER_ORT_DIR));
        Self::from_parts(env, settings, user_dir.as_deref(), crate::locate::ort_library())
    }

    /// The precedence rule on its inputs: the environment, the setting, the library in
    /// `user_dir`, the bundle's (`bundle`, or where it was looked for).
    pub fn from_parts(
        env: Option<PathBuf>,
        settings: &MachineSettings,
        user_dir: Option<&Path>,
        bundle: Result<PathBuf, Vec<PathBuf>>,
    ) -> Self {
        let mut libraries = Vec::new();
        let mut push = |path: PathBuf, source| {
            if !libraries.iter().any(|l: &OrtLibrary| l.path == path) {
                libraries.push(OrtLibrary { path, source });
            }
        };
        if let Some(path) = env {
            push(path, LibrarySource::Env);
        }
        if let Some(path) = settings.ort_library.clone().filter(|p| !p.as_os_str().is_empty()) {
            push(path, LibrarySource::Setting);
        }
        if let Some(path) = user_dir.and_then(|d| cadenza_core::engine::library_in(d, &mut Vec::new())) {
            push(path, LibrarySource::UserFolder);
        }
        let bundle_missing = match bundle {
            Ok(path) => {
                push(path, LibrarySource::Bundle);
                Vec::new()
            }
            Err(tried) => tried,
        };
        Self { libraries, execution: settings.execution, bundle_missing }
    }

    /// The library a fresh process would load, in words, e.g.
    /// "/x/libonnxruntime.so.1.31.1 (from CADENZA_ORT_LIBRARY), execution auto".
    pub fn describe(&self) -> String {
        let library = match self.libraries.first() {
            Some(l) => format!("{} (from {})", l.path.display(), l.source.describe()),
            None => format!(
                "library not found (looked in {})",
                self.bundle_missing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        };
        format!("{library}, execution {}", execution_name(self.execution))
    }
}

/// How the editor and the status line name a provider choice.
pub fn execution_name(p: Provider) -> &'static str {
    match p {
        Provider::Auto => "Auto",
        Provider::Cpu => "CPU",
        Provider::Cuda => "CUDA",
    }
}

/// Whether two paths name the same file (through links), or are equal when either is missing.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: the library and provider are saved per machine, in the user's Cadenza folder,
    /// and read back; a missing file is the defaults and a foreign key is refused.
    #[test]
    fn machine_settings_are_saved_in_the_user_folder_and_read_back() {
        let tmp = tempfile::tempdir().expect("tmp");
        // The only test in this crate that sets the variable; others only read it.
        std::env::set_var("XDG_DATA_HOME", tmp.path());
        assert_eq!(settings_path(), Some(tmp.path().join("cadenza").join(SETTINGS_FILE)));
        assert_eq!(MachineSettings::load().expect("no file yet"), MachineSettings::default());
        let settings = MachineSettings {
            ort_library: Some(PathBuf::from("/opt/ort-gpu/libonnxruntime.so.1.31.1")),
            execution: Provider::Cuda,
        };
        let written = settings.save().expect("save");
        assert_eq!(written, tmp.path().join("cadenza/settings.json"));
        assert_eq!(MachineSettings::load().expect("load"), settings);
        let text = std::fs::read_to_string(&written).expect("read");
        assert!(text.contains("\"execution\": \"cuda\""), "{text}");
        std::fs::write(&written, r#"{"execution": "cuda", "gpu": 1}"#).expect("write");
        let err = MachineSettings::load().expect_err("an unknown key is an error");
        assert!(err.to_string().contains("settings.json"), "names the file: {err}");
    }

    #[test]
    fn the_environment_beats_the_setting_which_beats_the_user_folder_and_the_bundle() {
        let tmp = tempfile::tempdir().expect("tmp");
        let user = tmp.path().join("onnxruntime");
        std::fs::create_dir_all(&user).expect("dir");
        std::fs::write(user.join("libonnxruntime.so.1.31.1"), b"x").expect("lib");
        let bundle = PathBuf::from("/b/Cadenza.clap.resources/lib/libonnxruntime.so.1.31.1");
        let settings =
            MachineSettings { ort_library: Some(PathBuf::from("/set/libonnxruntime.so")), execution: Provider::Cuda };
        let choice =
            OrtChoice::from_parts(Some(PathBuf::from("/env/libonnxruntime.so")), &settings, Some(&user), Ok(bundle));
        let sources: Vec<LibrarySource> = choice.libraries.iter().map(|l| l.source).collect();
        use LibrarySource::*;
        assert_eq!(sources, [Env, Setting, UserFolder, Bundle]);
        assert_eq!(choice.libraries[2].path, user.join("libonnxruntime.so.1.31.1"));
        assert_eq!(choice.execution, Provider::Cuda);
        assert!(choice.describe().starts_with("/env/libonnxruntime.so (from CADENZA_ORT_LIBRARY)"));

        let bare =
            OrtChoice::from_parts(None, &MachineSettings::default(), Some(&tmp.path().join("none")), Err(vec![]));
        assert!(bare.libraries.is_empty());
        assert_eq!(bare.execution, Provider::Auto);
    }
}
