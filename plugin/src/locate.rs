//! Where the plugin's files are, found from the plugin binary itself so a DAW
//! needs no environment variable: the bundle's resources (the ONNX Runtime
//! library and the shipped models) and the default export folder. The user's
//! style folder, the style lookup and the soundfonts for the preview piano
//! follow the rule every program shares, in [`cadenza_core::locate`].
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

pub use cadenza_core::locate::{user_data_dir, user_model_dir, Style};

/// Default export folder: `~/Music/Cadenza` (or the data folder when there is no home).
pub fn default_export_dir() -> PathBuf {
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h).join("Music").join("Cadenza"),
        None => std::env::temp_dir().join("cadenza-exports"),
    }
}

/// Every `*.onnx` in the bundle's `models/` folders and the user's style folder,
/// sorted by name; a user model shadows a shipped one of the same name (the
/// one lookup rule of [`cadenza_core::locate`]).
pub fn scan_styles() -> Vec<Style> {
    let shipped: Vec<PathBuf> = resource_dirs().into_iter().map(|d| d.join("models")).collect();
    cadenza_core::locate::scan_styles_in(&shipped, user_model_dir().as_deref())
}

/// Soundfonts found on the system and in the user's folder, smallest first (they load fastest).
pub fn find_soundfonts() -> Vec<PathBuf> {
    cadenza_core::locate::soundfonts()
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
    fn own_binary_is_found() {
        let me = own_binary().expect("dladdr finds the test binary");
        assert!(me.exists(), "{}", me.display());
    }
}
