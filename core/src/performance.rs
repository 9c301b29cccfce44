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

#[cfg(test)]
mod tests {
    use super::*;

    fn n(pitch: u8, start_s: f64, end_s: f64) -> Note {
        Note { pitch, velocity: 64, start_s, end_s }
    }

    #[test]
    fn silence_counts_only_gaps_between_notes() {
        let p = Performance::new(vec![n(60, 1.0, 2.0), n(62, 1.5, 3.0), n(64, 5.0, 6.0)]);
        assert!((p.silent_s() - 2.0).abs() < 1e-9);
        assert!((p.duration_s() - 6.0).abs() < 1e-9);
    }
}
