//! Notes in seconds: the common ground between MIDI files, the event codec and clips.

use serde::{Deserialize, Serialize};

/// Lowest key of an 88-key piano (A0).
pub const PIANO_LOWEST: u8 = 21;
/// Highest key of an 88-key piano (C8).
pub const PIANO_HIGHEST: u8 = 108;

/// One sounding note.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Note {
    /// MIDI key, 0..=127.
    pub pitch: u8,
    /// MIDI velocity, 1..=127.
    pub velocity: u8,
    /// Onset in seconds from the start of the performance.
    pub start_s: f64,
    /// Release in seconds; always greater than `start_s`.
    pub end_s: f64,
}

impl Note {
    pub fn duration_s(&self) -> f64 {
        self.end_s - self.start_s
    }
}

/// A piano performance: notes sorted by onset, then pitch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Performance {
    pub notes: Vec<Note>,
}

impl Performance {
    pub fn new(mut notes: Vec<Note>) -> Self {
        sort_notes(&mut notes);
        Self { notes }
    }

    /// Time of the last release, in seconds (0 when empty).
    pub fn duration_s(&self) -> f64 {
        self.notes.iter().map(|n| n.end_s).fold(0.0, f64::max)
    }

    pub fn is_empty(&self) -> bool {
        self.notes.is_empty()
    }

    /// Seconds in which no note sounds, between the first onset and the last release.
    pub fn silent_s(&self) -> f64 {
        let mut silent = 0.0;
        let mut covered_until = match self.notes.first() {
            Some(n) => n.start_s,
            None => return 0.0,
        };
        for n in &self.notes {
            if n.start_s > covered_until {
                silent += n.start_s - covered_until;
            }
            covered_until = covered_until.max(n.end_s);
        }
        silent
    }

    /// Shift every note so the first onset is at `start_s`.
    pub fn shifted_to(&self, start_s: f64) -> Self {
        let first = self.notes.first().map_or(0.0, |n| n.start_s);
        let delta = start_s - first;
        Self {
            notes: self
                .notes
                .iter()
                .map(|n| Note { start_s: n.start_s + delta, end_s: n.end_s + delta, ..*n })
                .collect(),
        }
    }
}

/// The order the codec and every writer rely on: onset, then pitch, then release.
pub fn sort_notes(notes: &mut [Note]) {
    notes.sort_by(|a, b| a.start_s.total_cmp(&b.start_s).then(a.pitch.cmp(&b.pitch)).then(a.end_s.total_cmp(&b.end_s)));
}

/// "C4" for MIDI key 60 (sharps, middle C in octave 4).
pub fn note_name(key: u8) -> String {
    const NAMES: [&str; 12] = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
    format!("{}{}", NAMES[usize::from(key % 12)], i32::from(key / 12) - 1)
}

/// Semitones from C of a note letter with accidentals ("C", "f#", "Bb", "E♭",
/// "B#" = 12): `None` for anything else.
pub fn semitones_above_c(word: &str) -> Option<i32> {
    let mut chars = word.chars();
    let mut semitones: i32 = match chars.next()?.to_ascii_uppercase() {
        'C' => 0,
        'D' => 2,
        'E' => 4,
        'F' => 5,
        'G' => 7,
        'A' => 9,
        'B' => 11,
        _ => return None,
    };
    for c in chars {
        match c {
            '#' | '♯' => semitones += 1,
            'b' | '♭' => semitones -= 1,
            _ => return None,
        }
    }
    Some(semitones)
}

/// MIDI key from "C4", "c#4", "Bb2", "C-1" or a plain number (not range-checked).
pub fn parse_note_name(text: &str) -> Option<i32> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Some(n);
    }
    let split = t.find(|c: char| c.is_ascii_digit() || c == '-')?;
    let octave: i32 = t[split..].parse().ok()?;
    Some((octave + 1) * 12 + semitones_above_c(&t[..split])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(pitch: u8, start_s: f64, end_s: f64) -> Note {
        Note { pitch, velocity: 64, start_s, end_s }
    }

    #[test]
    fn note_names_round_trip() {
        for key in 0..=127u8 {
            assert_eq!(parse_note_name(&note_name(key)), Some(i32::from(key)));
        }
        assert_eq!(note_name(60), "C4");
        assert_eq!(parse_note_name("Bb2"), Some(46));
        assert_eq!(parse_note_name(" f♯3 "), Some(54));
        assert_eq!(parse_note_name("B#3"), Some(60));
        assert_eq!(parse_note_name("H2"), None);
        assert_eq!(parse_note_name("C"), None);
    }

    #[test]
    fn silence_counts_only_gaps_between_notes() {
        let p = Performance::new(vec![n(60, 1.0, 2.0), n(62, 1.5, 3.0), n(64, 5.0, 6.0)]);
        assert!((p.silent_s() - 2.0).abs() < 1e-9);
        assert!((p.duration_s() - 6.0).abs() < 1e-9);
    }
}
