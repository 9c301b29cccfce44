//! How faithfully one performance reproduces another: the measure behind
//! `cargo xtask roundtrip` and the codec's tests on real files.

use serde::Serialize;

use crate::codec::velocity_to_bin;
use crate::performance::Performance;

/// Note-by-note agreement between an original and a reproduction.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Comparison {
    pub notes_in: usize,
    pub notes_out: usize,
    /// Original notes with no reproduced note of the same pitch within 10 ms.
    pub unmatched: usize,
    /// Largest onset difference between an original note and its nearest
    /// same-pitch reproduction, in milliseconds.
    pub max_onset_error_ms: f64,
    /// Matched notes whose velocity left its codec bin.
    pub velocity_bin_changes: usize,
}

/// Onset tolerance of the codec's 10 ms grid.
pub const ONSET_TOLERANCE_MS: f64 = 10.0;

pub fn compare(original: &Performance, reproduced: &Performance) -> Comparison {
    let mut by_pitch: Vec<Vec<(f64, u8)>> = vec![Vec::new(); 128];
    for n in &reproduced.notes {
        by_pitch[usize::from(n.pitch & 0x7f)].push((n.start_s, n.velocity));
    }
    for v in &mut by_pitch {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let mut max_err = 0.0f64;
    let mut unmatched = 0;
    let mut bin_changes = 0;
    for n in &original.notes {
        let cands = &by_pitch[usize::from(n.pitch & 0x7f)];
        let i = cands.partition_point(|&(t, _)| t < n.start_s);
        let nearest = [i.checked_sub(1), Some(i)]
            .into_iter()
            .flatten()
            .filter_map(|j| cands.get(j))
            .min_by(|a, b| (a.0 - n.start_s).abs().total_cmp(&(b.0 - n.start_s).abs()));
        match nearest {
            Some(&(t, v)) if (t - n.start_s).abs() * 1000.0 <= ONSET_TOLERANCE_MS => {
                max_err = max_err.max((t - n.start_s).abs() * 1000.0);
                if velocity_to_bin(v) != velocity_to_bin(n.velocity) {
                    bin_changes += 1;
                }
            }
            _ => unmatched += 1,
        }
    }
    Comparison {
        notes_in: original.notes.len(),
        notes_out: reproduced.notes.len(),
        unmatched,
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
