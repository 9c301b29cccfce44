//! How faithfully one performance reproduces another: the measure behind
//! `cargo xtask roundtrip` and the codec's tests on real files.

use serde::Serialize;

use crate::codec::{seconds_to_steps, velocity_to_bin};
use crate::performance::Performance;

/// Note-by-note agreement between an original and a reproduction.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Comparison {
    pub notes_in: usize,
    pub notes_out: usize,
    /// Original notes with no reproduced note of the same pitch within 10 ms.
    pub unmatched: usize,
    /// Original notes that struck a key again within the same 10 ms step as
    /// another onset of that key; the codec keeps them as one note.
    pub merged: usize,
    /// Largest onset difference between an original note and its nearest
    /// same-pitch reproduction, in milliseconds.
    pub max_onset_error_ms: f64,
    /// Matched notes whose velocity left its codec bin.
    pub velocity_bin_changes: usize,
}

/// Onset tolerance of the codec's 10 ms grid.
pub const ONSET_TOLERANCE_MS: f64 = 10.0;

pub fn compare(original: &Performance, reproduced: &Performance) -> Comparison {
    let tol_s = ONSET_TOLERANCE_MS / 1000.0;
    // (onset, velocity, used) of the reproduction, per pitch, in time order
    let mut by_pitch: Vec<Vec<(f64, u8, bool)>> = vec![Vec::new(); 128];
    for n in &reproduced.notes {
        by_pitch[usize::from(n.pitch & 0x7f)].push((n.start_s, n.velocity, false));
    }
    for v in &mut by_pitch {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let mut originals: Vec<_> = original.notes.iter().collect();
    // Onsets of a key on one 10 ms step become one note at the loudest
    // velocity, so the loudest of each step is matched first.
    originals.sort_by_key(|n| (seconds_to_steps(n.start_s), std::cmp::Reverse(n.velocity)));
    let (mut max_err, mut unmatched, mut merged, mut bin_changes) = (0.0f64, 0, 0, 0);
    for n in originals {
        let cands = &mut by_pitch[usize::from(n.pitch & 0x7f)];
        let lo = cands.partition_point(|c| c.0 < n.start_s - tol_s);
        let window = lo..cands.partition_point(|c| c.0 <= n.start_s + tol_s);
        // The codec keeps the order of a key's onsets, so the earliest unused
        // candidate is the note's own; a used one means two onsets of the key
        // fell on one 10 ms step and were folded into one note.
        let pick = window.clone().find(|&j| !cands[j].2);
        match pick.or_else(|| window.clone().next()) {
            Some(j) => {
                let (t, v, used) = cands[j];
                max_err = max_err.max((t - n.start_s).abs() * 1000.0);
                if used {
                    merged += 1;
                } else {
                    cands[j].2 = true;
                    if velocity_to_bin(v) != velocity_to_bin(n.velocity) {
                        bin_changes += 1;
                    }
                }
            }
            None => unmatched += 1,
        }
    }
    Comparison {
        notes_in: original.notes.len(),
        notes_out: reproduced.notes.len(),
        unmatched,
        merged,
        max_onset_error_ms: (max_err * 1000.0).round() / 1000.0,
        velocity_bin_changes: bin_changes,
    }
}

impl Comparison {
    /// Every note kept its pitch, its onset within 10 ms and its velocity bin.
    pub fn faithful(&self) -> bool {
        self.unmatched == 0 && self.velocity_bin_changes == 0
    }
}
