//! Clips: notes in beats, as a DAW and the plugin think of them. A clip
//! converts to and from a performance in seconds at a given tempo.

use serde::{Deserialize, Serialize};

use crate::performance::{Note, Performance};

/// One note of a clip.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClipNote {
    /// MIDI key, 0..=127.
    pub pitch: u8,
    /// MIDI velocity, 1..=127.
    pub velocity: u8,
    /// Onset in quarter-note beats from the clip start.
    pub start_beats: f64,
    /// Length in quarter-note beats; always positive.
    pub length_beats: f64,
}

impl ClipNote {
    pub fn end_beats(&self) -> f64 {
        self.start_beats + self.length_beats
    }
}

/// A clip of notes in beats, sorted by onset then pitch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Clip {
    pub notes: Vec<ClipNote>,
    /// Length of the clip in beats (at least the last release).
    pub length_beats: f64,
}

impl Clip {
    /// Seconds to beats at `tempo_bpm` quarter notes per minute.
    pub fn from_performance(perf: &Performance, tempo_bpm: f64) -> Self {
        let beats_per_s = tempo_bpm / 60.0;
        let notes: Vec<ClipNote> = perf
            .notes
            .iter()
            .map(|n| ClipNote {
                pitch: n.pitch,
                velocity: n.velocity,
                start_beats: n.start_s * beats_per_s,
                length_beats: (n.end_s - n.start_s).max(0.0) * beats_per_s,
            })
            .collect();
        let length_beats = perf.duration_s() * beats_per_s;
        let mut clip = Self { notes, length_beats };
        clip.sort();
        clip
    }

    /// Beats to seconds at `tempo_bpm`.
    pub fn to_performance(&self, tempo_bpm: f64) -> Performance {
        let s_per_beat = 60.0 / tempo_bpm;
        Performance::new(
            self.notes
                .iter()
                .map(|n| Note {
                    pitch: n.pitch,
                    velocity: n.velocity,
                    start_s: n.start_beats * s_per_beat,
                    end_s: n.end_beats() * s_per_beat,
                })
                .collect(),
        )
    }

    pub fn sort(&mut self) {
        self.notes.sort_by(|a, b| a.start_beats.total_cmp(&b.start_beats).then(a.pitch.cmp(&b.pitch)));
    }

    /// Move onsets towards the nearest multiple of `grid_beats` by `strength`
    /// (0 leaves them, 1 snaps them); note ends keep their lengths.
    pub fn quantize(&mut self, grid_beats: f64, strength: f64) {
        if grid_beats <= 0.0 {
            return;
        }
        let strength = strength.clamp(0.0, 1.0);
        for n in &mut self.notes {
            let target = (n.start_beats / grid_beats).round() * grid_beats;
            n.start_beats += (target - n.start_beats) * strength;
        }
        self.sort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_and_seconds_convert_at_tempo() {
        let perf = Performance::new(vec![Note { pitch: 60, velocity: 80, start_s: 1.0, end_s: 1.5 }]);
        let clip = Clip::from_performance(&perf, 120.0);
        assert_eq!(clip.notes[0].start_beats, 2.0);
        assert_eq!(clip.notes[0].length_beats, 1.0);
        assert_eq!(clip.length_beats, 3.0);
        assert_eq!(clip.to_performance(120.0), perf);
    }

    #[test]
    fn quantize_moves_onsets_by_strength() {
        let mut clip = Clip {
            notes: vec![ClipNote { pitch: 60, velocity: 80, start_beats: 1.1, length_beats: 0.5 }],
            length_beats: 2.0,
        };
        clip.quantize(0.5, 0.5);
        assert!((clip.notes[0].start_beats - 1.05).abs() < 1e-12);
        clip.quantize(0.5, 1.0);
        assert!((clip.notes[0].start_beats - 1.0).abs() < 1e-12);
    }
}
