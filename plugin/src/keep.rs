//! Keep: the chosen variation (with or without its primer) as a MIDI file at
//! the host tempo, written atomically into the musician's export folder under
//! a name that never overwrites an earlier export.

use std::path::{Path, PathBuf};

use cadenza_core::midi::{write_clip, WriteOptions};
use cadenza_core::Clip;

/// Most numbered files tried for one name before giving up.
const MAX_NAME_TRIES: u32 = 10_000;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    #[error("{}: cannot create the export folder: {source}", path.display())]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{}: no free file name left", dir.display())]
    NoName { dir: PathBuf },
    #[error("nothing to export yet: generate first")]
    Nothing,
}

/// The primer followed by `variation`, which starts at `primer_len_beats`.
pub use cadenza_core::join::join_clips as with_primer;

/// A file-name-safe version of `text`.
fn slug(text: &str) -> String {
    let s: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    if s.is_empty() {
        "cadenza".into()
    } else {
        s
    }
}

/// Write `clip` as `<dir>/<stem>-NNN.mid` with the first free number; returns the path.
pub fn export(dir: &Path, stem: &str, clip: &Clip, opts: &WriteOptions) -> Result<PathBuf, KeepError> {
    std::fs::create_dir_all(dir).map_err(|source| KeepError::Folder { path: dir.to_path_buf(), source })?;
    let stem = slug(stem);
    let bytes = write_clip(clip, opts);
    for n in 1..=MAX_NAME_TRIES {
        let path = dir.join(format!("{stem}-{n:03}.mid"));
        // create_new reserves the name so two exports at once never collide; the
        // atomic write then replaces the empty reservation with the full file.
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(_) => {
                return match cadenza_core::fsutil::write_atomic(&path, &bytes) {
                    Ok(()) => Ok(path),
                    Err(source) => {
                        let _ = std::fs::remove_file(&path);
                        Err(KeepError::Write { path, source })
                    }
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(KeepError::Write { path, source }),
        }
    }
    Err(KeepError::NoName { dir: dir.to_path_buf() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadenza_core::midi::{parse, ReadOptions};
    use cadenza_core::ClipNote;

    fn clip(pitch: u8, start_beats: f64) -> Clip {
        Clip { notes: vec![ClipNote { pitch, velocity: 77, start_beats, length_beats: 1.0 }], length_beats: 4.0 }
    }

    #[test]
    fn exports_numbered_files_that_read_back_at_the_tempo() {
        let dir = tempfile::tempdir().expect("tmp");
        let joined = with_primer(&clip(60, 0.5), 4.0, &clip(67, 1.0));
        assert_eq!(joined.notes[1].start_beats, 5.0);
        assert_eq!(joined.length_beats, 8.0);
        let opts = WriteOptions { tempo_bpm: 90.0, ..WriteOptions::default() };
        let a = export(dir.path(), "jazz seed 7", &joined, &opts).expect("export");
        let b = export(dir.path(), "jazz seed 7", &joined, &opts).expect("export");
        assert_eq!(a.file_name().expect("name"), "jazz-seed-7-001.mid");
        assert_eq!(b.file_name().expect("name"), "jazz-seed-7-002.mid");
        let perf = parse(&std::fs::read(&a).expect("read"), &ReadOptions::default()).expect("parse");
        // Beat 5 at 90 BPM is 3.333 s.
        assert!((perf.notes[1].start_s - 5.0 * 60.0 / 90.0).abs() < 1e-3, "{:?}", perf.notes);
        assert_eq!(perf.notes[1].velocity, 77);
    }

    #[test]
    fn an_unwritable_folder_is_an_error_naming_it() {
        let err = export(Path::new("/proc/cadenza-no"), "x", &clip(60, 0.0), &WriteOptions::default())
            .expect_err("cannot write");
        assert!(err.to_string().contains("/proc/cadenza-no"), "{err}");
    }
}
