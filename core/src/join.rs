//! Joining a primer and its continuation into one piece, once for every
//! unit: the command line joins performances in seconds, the plugin clips in
//! beats. The continuation starts where the primer ends (`primer_len`, in
//! the notes' own unit): every continuation note moves later by it.

use crate::clip::{Clip, ClipNote};
use crate::performance::{Note, Performance};

/// A note that can be moved later in time, by an amount in its own unit.
pub trait Timed: Copy {
    fn delayed(self, by: f64) -> Self;
}

impl Timed for Note {
    fn delayed(self, by_s: f64) -> Self {
        Note { start_s: self.start_s + by_s, end_s: self.end_s + by_s, ..self }
    }
}

impl Timed for ClipNote {
    fn delayed(self, by_beats: f64) -> Self {
        ClipNote { start_beats: self.start_beats + by_beats, ..self }
    }
}

/// The primer's notes, then the continuation's moved to start at `primer_len`.
pub fn join_notes<N: Timed>(primer: &[N], continuation: &[N], primer_len: f64) -> Vec<N> {
    primer.iter().copied().chain(continuation.iter().map(|n| n.delayed(primer_len))).collect()
}

/// The primer (if any) followed by the continuation, which starts at `primer_end_s`.
pub fn join_performances(primer: Option<&Performance>, continuation: &Performance, primer_end_s: f64) -> Performance {
    let primer_notes = primer.map_or(&[][..], |p| &p.notes);
    Performance::new(join_notes(primer_notes, &continuation.notes, primer_end_s))
}

/// The primer followed by `continuation`, which starts at `primer_len_beats`;
/// the clip lasts both lengths.
pub fn join_clips(primer: &Clip, primer_len_beats: f64, continuation: &Clip) -> Clip {
    let notes = join_notes(&primer.notes, &continuation.notes, primer_len_beats);
    let mut clip = Clip { notes, length_beats: primer_len_beats + continuation.length_beats };
    clip.sort();
    clip
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_continuation_starts_where_the_primer_ends_in_either_unit() {
        let note = |pitch, start_s| Note { pitch, velocity: 70, start_s, end_s: start_s + 0.5 };
        let primer = Performance::new(vec![note(60, 0.0)]);
        let joined = join_performances(Some(&primer), &Performance::new(vec![note(67, 0.25)]), 2.0);
        assert_eq!(joined.notes, vec![note(60, 0.0), note(67, 2.25)]);
        assert_eq!(join_performances(None, &primer, 2.0).notes, vec![note(60, 2.0)], "no primer: moved alone");

        let clip = |pitch, start_beats| Clip {
            notes: vec![ClipNote { pitch, velocity: 77, start_beats, length_beats: 1.0 }],
            length_beats: 4.0,
        };
        let joined = join_clips(&clip(60, 0.5), 4.0, &clip(67, 1.0));
        assert_eq!(joined.notes.iter().map(|n| (n.pitch, n.start_beats)).collect::<Vec<_>>(), [(60, 0.5), (67, 5.0)]);
        assert_eq!(joined.length_beats, 8.0);
    }
}
