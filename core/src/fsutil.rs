//! Atomic file writes: a reader (or a crash) sees the old file or the new
//! one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary sibling a write goes through before its rename.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Write `bytes` to a temporary file beside `path`, flush it to disk, then
/// rename it over `path`. On error the temporary file is removed and `path`
/// is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_no_file_behind() {
        let dir = std::env::temp_dir().join(format!("cadenza-fsutil-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ok = dir.join("a.bin");
        write_atomic(&ok, b"hello").expect("write");
        assert_eq!(std::fs::read(&ok).expect("read"), b"hello");
        let bad = dir.join("missing").join("b.bin");
        assert!(write_atomic(&bad, b"x").is_err());
        assert!(!bad.exists());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
