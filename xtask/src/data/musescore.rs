//! The demo scores of Debian `musescore3-common` (`.mscx`, and `.mscz`, a
//! zip holding one), converted to MIDI by MuseScore 3 itself, headless
//! (`mscore3 -o OUT.mid IN` with `QT_QPA_PLATFORM=offscreen`; the
//! `musescore3` package, installed by `cargo xtask setup`). The conversion
//! is cached under `cache/musescore/`, keyed by the score's bytes and the
//! converter's version; it is deterministic (same bytes twice).
//!
//! Each demo is filed by hand in [`DEMOS`], with the licence its
//! `debian/copyright` stanza gives that file. MuseScore 3.2 does not play
//! chord symbols, so a lead sheet converts to its melody alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use cadenza_core::dataset::{sha256_hex, Provenance};

use super::build::DropReason;
use super::fetch::{self, MUSESCORE3_COMMON};
use super::games::{lookup, GameTrack};
use super::music21::sanitize_path;
use super::{Candidate, Origin, Style};

/// Where the demos are in the unpacked package, and in the source tree the copyright file names.
pub const DEMOS_DIR: &str = "usr/share/mscore3-3.2/demos";
const SOURCE_DIR: &str = "demos";
/// The converter; bump [`CONVERTER`] when its version changes.
pub const MSCORE: &str = "mscore3";
const CONVERTER: &str = "mscore3 3.2.3+dfsg2-16 -o";

/// Every demo of musescore3-common 3.2.3; a demo filed under no style is held
/// back (its `why` says for what), not left out.
pub const DEMOS: [GameTrack; 5] = [
    GameTrack {
        name: "Brassed_Up.mscx",
        genre: "classical",
        style: None,
        why: "James Thistlewood: a short piece for trumpet, trombone and tuba; proposed for the next classical rebuild",
    },
    GameTrack {
        name: "Dynamic_Strings.mscx",
        genre: "classical",
        style: None,
        why: "James Thistlewood: a string-trio study in dynamics; proposed for the next classical rebuild",
    },
    GameTrack {
        name: "Fugue_1.mscx",
        genre: "classical",
        style: None,
        why: "Marc Sabatella: a fugue for string quartet in D minor; proposed for the next classical rebuild",
    },
    GameTrack {
        name: "Reunion.mscz",
        genre: "jazz",
        style: Some(Style::Jazz),
        why: "Marc Sabatella: solo piano, rubato (tempo marks from 74 to 135 bpm), quartal voicings and \
              altered dominants (flat-ninth chords)",
    },
    GameTrack {
        name: "Unclaimed_Gift.mscx",
        genre: "jazz lead sheet",
        style: None,
        why: "Marc Sabatella: a melody with 56 chord symbols; MuseScore 3.2 does not play chord symbols, so \
              the MIDI is the melody alone, no piano part; proposed: realise the chord symbols (that part \
              would be synthetic)",
    },
];

/// Convert one score into the cache (once per score bytes and converter).
fn convert(score: &Path, cache: &Path) -> Result<PathBuf> {
    let bytes = std::fs::read(score).with_context(|| format!("{}: cannot read", score.display()))?;
    let mut keyed = format!("{CONVERTER}\n").into_bytes();
    keyed.extend_from_slice(&bytes);
    let dir = cache.join("musescore");
    let out = dir.join(format!("{}.mid", &sha256_hex(&keyed)[..32]));
    if out.exists() {
        return Ok(out);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    // mscore3 picks the input format by extension, so the partial output keeps `.mid`.
    let partial = dir.join(format!("{}.partial.mid", &sha256_hex(&keyed)[..32]));
    let result = Command::new(MSCORE).arg("-o").arg(&partial).arg(score).env("QT_QPA_PLATFORM", "offscreen").output();
    let output = match result {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{}: {MSCORE} is not installed; run `cargo xtask setup` (it installs musescore3)", score.display())
        }
        Err(e) => return Err(e).with_context(|| format!("{}: cannot run {MSCORE}", score.display())),
    };
    if !output.status.success() || !partial.exists() {
        let _ = std::fs::remove_file(&partial);
        let err = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        bail!("{}: {MSCORE} failed ({}): {}", score.display(), output.status, tail.join(" | "));
    }
    std::fs::rename(&partial, &out).with_context(|| format!("{}: cannot rename", partial.display()))?;
    Ok(out)
}

/// The demos filed into `styles`; the ones held back are listed (as the
/// first wanted style's dropped rows) with their genre.
pub fn candidates(unpacked: &Path, cache: &Path, styles: &[Style]) -> Result<Vec<Candidate>> {
    let Some(&listed_in) = styles.iter().find(|s| matches!(s, Style::Jazz | Style::Pop)) else {
        return Ok(Vec::new());
    };
    let dir = unpacked.join(DEMOS_DIR);
    let licences = fetch::FileLicences::read(unpacked, &MUSESCORE3_COMMON)?;
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".mscx") || n.ends_with(".mscz"))
        .collect();
    files.sort();
    let mut result = Vec::new();
    for name in &files {
        let demo = lookup(&DEMOS, name, MUSESCORE3_COMMON.source, "xtask/src/data/musescore.rs")?;
        let style = demo.style.unwrap_or(listed_in);
        if !styles.contains(&style) {
            continue;
        }
        let source_file = dir.join(name);
        let origin = match demo.style {
            None => Origin::LeftOut(DropReason::HeldBack(format!("{}: {}", demo.genre, demo.why))),
            Some(_) => Origin::Midi(convert(&source_file, cache)?),
        };
        let stem = name.trim_end_matches(".mscx").trim_end_matches(".mscz");
        result.push(Candidate {
            style,
            family: "debian/musescore3-demos".into(),
            source: MUSESCORE3_COMMON.source.into(),
            source_version: MUSESCORE3_COMMON.version.into(),
            source_path: format!("{DEMOS_DIR}/{name}"),
            licence: licences.of(&format!("{SOURCE_DIR}/{name}"))?,
            provenance: Provenance::Composed,
            comment: format!("{}: {}; converted by {MSCORE} -o", demo.genre, demo.why),
            rel_path: PathBuf::from(format!("midi/musescore/{}.mid", sanitize_path(stem))),
            origin,
        });
    }
    if files.len() != DEMOS.len() {
        bail!(
            "{}: {} demos where the table files {}; review xtask/src/data/musescore.rs",
            dir.display(),
            files.len(),
            DEMOS.len()
        );
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demos_are_filed_once_and_only_reunion_is_kept() {
        let kept: Vec<&str> = DEMOS.iter().filter(|d| d.style.is_some()).map(|d| d.name).collect();
        assert_eq!(kept, ["Reunion.mscz"]);
        let mut names: Vec<&str> = DEMOS.iter().map(|d| d.name).collect();
        names.dedup();
        assert_eq!(names.len(), DEMOS.len());
    }

    /// The real converter on the real package, when both are here.
    #[test]
    fn the_real_demo_converts_the_same_twice() {
        let dir = crate::env::repo_root().join("data/cache/unpacked").join(MUSESCORE3_COMMON.archive).join(DEMOS_DIR);
        let score = dir.join("Reunion.mscz");
        if !score.exists() || Command::new(MSCORE).arg("--version").output().is_err() {
            eprintln!(
                "skipped: {} or {MSCORE} is not there (run cargo xtask setup and cargo xtask data)",
                score.display()
            );
            return;
        }
        let cache = std::env::temp_dir().join(format!("cadenza-mscore-{}", std::process::id()));
        let a = std::fs::read(convert(&score, &cache).expect("converts")).expect("read");
        std::fs::remove_dir_all(&cache).expect("clean");
        let b = std::fs::read(convert(&score, &cache).expect("converts")).expect("read");
        std::fs::remove_dir_all(&cache).expect("clean");
        assert_eq!(a, b);
        let perf = cadenza_core::midi::parse(&a, &Default::default()).expect("parses");
        assert!(perf.notes.len() > 200, "{}", perf.notes.len());
    }

    #[test]
    fn a_missing_score_is_an_error_naming_it() {
        let e = convert(Path::new("/nonexistent/x.mscz"), &std::env::temp_dir()).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/x.mscz"), "{e}");
    }
}
