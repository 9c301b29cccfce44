//! Where the plugin's files are, found from the plugin binary itself so a DAW
//! needs no environment variable: the bundle's resources (the ONNX Runtime
//! library and the shipped models), the user's model folder, soundfonts for
//! the preview piano, and the default export folder.
//!
//! Bundle layouts (see `cargo xtask bundle`):
//! - VST3: `Cadenza.vst3/Contents/x86_64-linux/Cadenza.so`, resources in `Cadenza.vst3/Contents/Resources/`.
//! - CLAP: `Cadenza.clap` (one file, as CLAP wants on Linux), resources in the sibling `Cadenza.clap.resources/`.

use std::path::{Path, PathBuf};

/// File name of the ONNX Runtime library the bundles carry.
pub const ORT_LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";
/// Environment variable that overrides the resources folder (development and tests only).
pub const RESOURCES_ENV: &str = "CADENZA_RESOURCES";

/// The shared object (or executable) this code was loaded from.
pub fn own_binary() -> Option<PathBuf> {
    // SAFETY: dladdr only reads the loader's tables; `info` is plain data it fills in, and
    // dli_fname (when set) points to a NUL-terminated string owned by the loader.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let addr = own_binary as *const libc::c_void;
        if libc::dladdr(addr, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(info.dli_fname);
        let path = PathBuf::from(std::ffi::OsStr::from_encoded_bytes_unchecked(name.to_bytes()));
        // An executable reports the name it was started with; make it absolute.
        std::fs::canonicalize(&path).ok().or(Some(path))
    }
}

/// Resource folders to look in, best first, for a binary at `binary`.
pub fn resource_dirs_for(binary: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os(RESOURCES_ENV) {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(contents) = binary.parent().and_then(Path::parent) {
        dirs.push(contents.join("Resources"));
    }
    let mut sibling = binary.as_os_str().to_owned();
    sibling.push(".resources");
    dirs.push(PathBuf::from(sibling));
    if let Some(dir) = binary.parent() {
        dirs.push(dir.join("Cadenza.clap.resources"));
    }
    dirs
}

/// Resource folders of this plugin that exist.
pub fn resource_dirs() -> Vec<PathBuf> {
    let binary = own_binary().unwrap_or_default();
    resource_dirs_for(&binary).into_iter().filter(|d| d.is_dir()).collect()
}

/// The ONNX Runtime library: inside the bundle's resources, else beside the binary.
pub fn ort_library() -> Result<PathBuf, Vec<PathBuf>> {
    let mut tried = Vec::new();
    let binary = own_binary().unwrap_or_default();
    let mut candidates: Vec<PathBuf> =
        resource_dirs_for(&binary).into_iter().map(|d| d.join("lib").join(ORT_LIBRARY_FILE)).collect();
    if let Some(dir) = binary.parent() {
        candidates.push(dir.join(ORT_LIBRARY_FILE));
    }
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
        tried.push(c);
    }
    Err(tried)
}

/// `$XDG_DATA_HOME/cadenza` or `~/.local/share/cadenza`.
pub fn user_data_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("cadenza"));
    }
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".local/share/cadenza"))
}

/// The user's model folder (`cargo xtask install` and `cargo xtask train` put styles there).
pub fn user_model_dir() -> Option<PathBuf> {
    user_data_dir().map(|d| d.join("models"))
}

/// Default export folder: `~/Music/Cadenza` (or the data folder when there is no home).
pub fn default_export_dir() -> PathBuf {
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h).join("Music").join("Cadenza"),
        None => std::env::temp_dir().join("cadenza-exports"),
    }
}

/// A style the musician can pick: one exported model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Style {
    /// The file stem, e.g. `jazz`.
    pub name: String,
    pub path: PathBuf,
    /// Shipped in the bundle (false: from the user's model folder).
    pub shipped: bool,
}

/// Every `*.onnx` in the bundle's `models/` folders and the user's model folder,
/// sorted by name; a user model shadows a shipped one of the same name.
pub fn scan_styles() -> Vec<Style> {
    let shipped: Vec<PathBuf> = resource_dirs().into_iter().map(|d| d.join("models")).collect();
    scan_styles_in(&shipped, user_model_dir().as_deref())
}

pub fn scan_styles_in(shipped_dirs: &[PathBuf], user_dir: Option<&Path>) -> Vec<Style> {
    let mut styles: Vec<Style> = Vec::new();
    let dirs = shipped_dirs.iter().map(|d| (d.as_path(), true)).chain(user_dir.map(|d| (d, false)));
    for (dir, shipped) in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "onnx") && p.is_file())
            .collect();
        found.sort();
        for path in found {
            let Some(name) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else { continue };
            styles.retain(|s| s.name != name);
            styles.push(Style { name, path, shipped });
        }
    }
    styles.sort_by(|a, b| a.name.cmp(&b.name));
    styles
}

/// Soundfonts found on the system, smallest first (they load fastest).
pub fn find_soundfonts() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["/usr/share/sounds/sf2", "/usr/share/soundfonts", "/usr/local/share/soundfonts"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(d) = user_data_dir() {
        dirs.push(d.join("soundfonts"));
    }
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("sf2")) {
                if let Ok(meta) = std::fs::metadata(&p) {
                    found.push((meta.len(), p));
                }
            }
        }
    }
    found.sort();
    found.dedup_by(|a, b| a.1 == b.1);
    found.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_dirs_cover_both_bundle_layouts() {
        let vst3 = resource_dirs_for(Path::new("/p/Cadenza.vst3/Contents/x86_64-linux/Cadenza.so"));
        assert!(vst3.contains(&PathBuf::from("/p/Cadenza.vst3/Contents/Resources")));
        let clap = resource_dirs_for(Path::new("/home/u/.clap/Cadenza.clap"));
        assert!(clap.contains(&PathBuf::from("/home/u/.clap/Cadenza.clap.resources")));
    }

    #[test]
    fn styles_are_found_and_user_models_shadow_shipped_ones() {
        let tmp = tempfile::tempdir().expect("tmp");
        let shipped = tmp.path().join("shipped");
        let user = tmp.path().join("user");
        std::fs::create_dir_all(&shipped).expect("dir");
        std::fs::create_dir_all(&user).expect("dir");
        for (dir, name) in
            [(&shipped, "jazz.onnx"), (&shipped, "classical.onnx"), (&user, "jazz.onnx"), (&user, "notes.txt")]
        {
            std::fs::write(dir.join(name), b"x").expect("write");
        }
        let styles = scan_styles_in(std::slice::from_ref(&shipped), Some(&user));
        let names: Vec<(&str, bool)> = styles.iter().map(|s| (s.name.as_str(), s.shipped)).collect();
        assert_eq!(names, vec![("classical", true), ("jazz", false)]);
    }

    #[test]
    fn own_binary_is_found() {
        let me = own_binary().expect("dladdr finds the test binary");
        assert!(me.exists(), "{}", me.display());
    }
}
