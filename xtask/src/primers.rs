//! The bundled primers: two public-domain melodies, written here note by note
//! so their provenance is this file. `cargo xtask primers` rewrites
//! `models/primers/*.mid` from it.

use anyhow::{Context, Result};
use cadenza_core::clip::{Clip, ClipNote};
use cadenza_core::midi::{write_clip, WriteOptions};

use crate::env::repo_root;

/// (pitch, beats) pairs of a melody; pitch 0 is a rest.
type Line = &'static [(u8, f64)];

/// "Twinkle, Twinkle, Little Star" (traditional, 18th-century French melody), first two phrases.
const TWINKLE: Line = &[
    (60, 1.0),
    (60, 1.0),
    (67, 1.0),
    (67, 1.0),
    (69, 1.0),
    (69, 1.0),
    (67, 2.0),
    (65, 1.0),
    (65, 1.0),
    (64, 1.0),
    (64, 1.0),
    (62, 1.0),
    (62, 1.0),
    (60, 2.0),
];
const TWINKLE_BASS: Line = &[(48, 4.0), (53, 2.0), (48, 2.0), (50, 2.0), (48, 2.0), (43, 2.0), (48, 2.0)];

/// "Frère Jacques" (traditional French round), first four bars twice.
const FRERE_JACQUES: Line = &[
    (60, 1.0),
    (62, 1.0),
    (64, 1.0),
    (60, 1.0),
    (60, 1.0),
    (62, 1.0),
    (64, 1.0),
    (60, 1.0),
    (64, 1.0),
    (65, 1.0),
    (67, 2.0),
    (64, 1.0),
    (65, 1.0),
    (67, 2.0),
    (67, 0.5),
    (69, 0.5),
    (67, 0.5),
    (65, 0.5),
    (64, 1.0),
    (60, 1.0),
    (67, 0.5),
    (69, 0.5),
    (67, 0.5),
    (65, 0.5),
    (64, 1.0),
    (60, 1.0),
];
const FRERE_JACQUES_BASS: Line = &[(48, 4.0), (48, 4.0), (48, 4.0), (48, 4.0), (48, 4.0), (48, 4.0)];

pub struct Primer {
    pub name: &'static str,
    pub title: &'static str,
    pub tempo_bpm: f64,
    melody: Line,
    bass: Line,
}

pub const PRIMERS: [Primer; 2] = [
    Primer {
        name: "twinkle",
        title: "Twinkle, Twinkle, Little Star",
        tempo_bpm: 100.0,
        melody: TWINKLE,
        bass: TWINKLE_BASS,
    },
    Primer {
        name: "frere_jacques",
        title: "Frère Jacques",
        tempo_bpm: 108.0,
        melody: FRERE_JACQUES,
        bass: FRERE_JACQUES_BASS,
    },
];

fn line_notes(line: Line, velocity: u8, legato: f64, out: &mut Vec<ClipNote>) -> f64 {
    let mut t = 0.0;
    for &(pitch, beats) in line {
        if pitch > 0 {
            out.push(ClipNote { pitch, velocity, start_beats: t, length_beats: beats * legato });
        }
        t += beats;
    }
    t
}

impl Primer {
    pub fn clip(&self) -> Clip {
        let mut notes = Vec::new();
        let a = line_notes(self.melody, 84, 0.9, &mut notes);
        let b = line_notes(self.bass, 58, 0.95, &mut notes);
        let mut clip = Clip { notes, length_beats: a.max(b) };
        clip.sort();
        clip
    }

    pub fn path(&self) -> std::path::PathBuf {
        repo_root().join("models/primers").join(format!("{}.mid", self.name))
    }

    pub fn midi_bytes(&self) -> Vec<u8> {
        write_clip(
            &self.clip(),
            &WriteOptions { tempo_bpm: self.tempo_bpm, track_name: self.title.into(), ..Default::default() },
        )
    }
}

pub fn run() -> Result<()> {
    for p in &PRIMERS {
        let path = p.path();
        std::fs::create_dir_all(path.parent().expect("has parent"))?;
        cadenza_core::fsutil::write_atomic(&path, &p.midi_bytes())
            .with_context(|| format!("{}: cannot write", path.display()))?;
        println!("{}: {} ({} notes)", path.display(), p.title, p.clip().notes.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_primers_match_their_source() {
        for p in &PRIMERS {
            let shipped = std::fs::read(p.path()).expect("models/primers holds every primer");
            assert_eq!(shipped, p.midi_bytes(), "{} differs from primers.rs; run `cargo xtask primers`", p.name);
        }
    }
}
