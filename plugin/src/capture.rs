//! Capture: always listening. The audio thread stamps each incoming note with
//! its beat position and pushes it into a lock-free queue ([`CaptureEvent`]);
//! the session thread folds the events into a rolling buffer of the last bars
//! ([`Capture`]) and cuts the primer out of it when Generate is pressed.
//!
//! Time jumps (transport start/stop, relocation, host loops) would tear a
//! phrase apart, so the buffer keeps its own continuous timeline: each epoch
//! of the clock is appended where the previous one ended.

use cadenza_core::{Clip, ClipNote};

/// Capacity of the audio-to-session event queue; a burst beyond it is counted and dropped.
pub const MAX_CAPTURE_EVENTS_IN_FLIGHT: usize = 4096;
/// Most notes the rolling buffer keeps (older ones go first).
pub const MAX_CAPTURED_NOTES: usize = 8192;

/// One incoming note edge, as the audio thread saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaptureEvent {
    /// Clock epoch the beat position belongs to.
    pub epoch: u32,
    /// Beat position of the event.
    pub beats: f64,
    /// A bar line of this epoch's grid, and the bar length, both in beats.
    pub bar_origin_beats: f64,
    pub bar_len_beats: f64,
    pub pitch: u8,
    /// 1..=127 for a note-on, 0 for a note-off.
    pub velocity: u8,
}

/// A note in the capture timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
struct HeldNote {
    start: f64,
    velocity: u8,
}

/// The rolling buffer (session thread).
#[derive(Debug, Clone)]
pub struct Capture {
    notes: Vec<(f64, f64, u8, u8)>,
    held: [Option<HeldNote>; 128],
    epoch: u32,
    /// timeline = beats + offset, for the current epoch.
    offset_beats: f64,
    /// Latest timeline position seen (an event or the clock).
    now: f64,
    /// The current epoch's bar grid, in timeline beats.
    bar_origin: f64,
    bar_len: f64,
}

impl Default for Capture {
    fn default() -> Self {
        Self {
            notes: Vec::new(),
            held: [None; 128],
            epoch: 0,
            offset_beats: 0.0,
            now: 0.0,
            bar_origin: 0.0,
            bar_len: 4.0,
        }
    }
}

impl Capture {
    /// Move to `epoch` at beat `beats` (no-op within the same epoch).
    fn enter(&mut self, epoch: u32, beats: f64, bar_origin_beats: f64, bar_len_beats: f64) {
        if epoch != self.epoch {
            if self.epoch != 0 {
                // Close what was held across the jump where the old epoch ended.
                let end = self.now;
                for pitch in 0..128u8 {
                    if let Some(h) = self.held[usize::from(pitch)].take() {
                        self.push_note(h.start, end, pitch, h.velocity);
                    }
                }
            }
            self.epoch = epoch;
            self.offset_beats = self.now - beats;
        }
        self.bar_origin = bar_origin_beats + self.offset_beats;
        if bar_len_beats > 0.0 {
            self.bar_len = bar_len_beats;
        }
    }

    fn push_note(&mut self, start: f64, end: f64, pitch: u8, velocity: u8) {
        if end > start {
            self.notes.push((start, end, pitch, velocity));
        }
        if self.notes.len() > MAX_CAPTURED_NOTES {
            let excess = self.notes.len() - MAX_CAPTURED_NOTES;
            self.notes.drain(..excess);
        }
    }

    /// Fold one event in.
    pub fn push(&mut self, ev: &CaptureEvent) {
        self.enter(ev.epoch, ev.beats, ev.bar_origin_beats, ev.bar_len_beats);
        let t = ev.beats + self.offset_beats;
        self.now = self.now.max(t);
        let slot = usize::from(ev.pitch.min(127));
        if let Some(h) = self.held[slot].take() {
            // A note-off, or a re-strike of a held key: the old note ends here.
            self.push_note(h.start, t, ev.pitch, h.velocity);
        }
        if ev.velocity > 0 {
            self.held[slot] = Some(HeldNote { start: t, velocity: ev.velocity });
        }
    }

    /// Tell the buffer where the clock is now, and drop what fell out of reach.
    pub fn observe_now(&mut self, epoch: u32, beats: f64, bar_origin_beats: f64, bar_len_beats: f64) {
        self.enter(epoch, beats, bar_origin_beats, bar_len_beats);
        self.now = self.now.max(beats + self.offset_beats);
        let keep_from = self.now - f64::from(crate::params::MAX_CAPTURE_BARS + 1) * self.bar_len;
        self.notes.retain(|n| n.1 >= keep_from);
    }

    /// The capture timeline's present, in beats.
    pub fn now(&self) -> f64 {
        self.now
    }

    /// Bar length of the current epoch, in beats.
    pub fn bar_len(&self) -> f64 {
        self.bar_len
    }

    /// When the last note ended (timeline beats), or `None` while a key is held or nothing was played.
    pub fn last_release(&self) -> Option<f64> {
        if self.held.iter().any(Option::is_some) {
            return None;
        }
        self.notes.iter().map(|n| n.1).reduce(f64::max)
    }

    pub fn clear(&mut self) {
        self.notes.clear();
        self.held = [None; 128];
    }

    /// Notes captured so far (finished and held).
    pub fn len(&self) -> usize {
        self.notes.len() + self.held.iter().filter(|h| h.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The primer: notes of the last `bars` bars up to now (held notes end now),
    /// starting at beat 0 on the bar line of the first bar that holds a note.
    pub fn primer(&self, bars: u32) -> Option<Clip> {
        let bar_len = self.bar_len;
        let bars_back = (self.now - f64::from(bars) * bar_len - self.bar_origin) / bar_len;
        let window_start = self.bar_origin + (bars_back + 1e-9).floor() * bar_len;
        let mut notes: Vec<ClipNote> = self
            .notes
            .iter()
            .copied()
            .chain(
                self.held.iter().enumerate().filter_map(|(p, h)| h.map(|h| (h.start, self.now, p as u8, h.velocity))),
            )
            .filter(|n| n.0 >= window_start - 1e-9 && n.0 < self.now && n.1 > n.0)
            .map(|(start, end, pitch, velocity)| ClipNote {
                pitch,
                velocity,
                start_beats: start - window_start,
                length_beats: end - start,
            })
            .collect();
        let first = notes.iter().map(|n| n.start_beats).fold(f64::INFINITY, f64::min);
        if !first.is_finite() {
            return None;
        }
        let lead_beats = (first / bar_len + 1e-9).floor() * bar_len;
        for n in &mut notes {
            n.start_beats = (n.start_beats - lead_beats).max(0.0);
        }
        let length_beats = notes.iter().map(ClipNote::end_beats).fold(0.0, f64::max);
        let mut clip = Clip { notes, length_beats };
        clip.sort();
        Some(clip)
    }

    /// The captured notes of the last `bars` bars for display, in beats relative to now (all <= 0).
    pub fn recent(&self, bars: u32) -> Vec<ClipNote> {
        let from = self.now - f64::from(bars) * self.bar_len;
        self.notes
            .iter()
            .copied()
            .chain(
                self.held.iter().enumerate().filter_map(|(p, h)| h.map(|h| (h.start, self.now, p as u8, h.velocity))),
            )
            .filter(|n| n.1 >= from)
            .map(|(start, end, pitch, velocity)| ClipNote {
                pitch,
                velocity,
                start_beats: start - self.now,
                length_beats: end - start,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(epoch: u32, beats: f64, pitch: u8, velocity: u8) -> CaptureEvent {
        CaptureEvent { epoch, beats, bar_origin_beats: 0.0, bar_len_beats: 4.0, pitch, velocity }
    }

    #[test]
    fn primer_is_the_last_bars_starting_on_a_bar_line() {
        let mut cap = Capture::default();
        // Bar 1 (beats 0..4): C; bar 3 (8..12): E held to 9.5; bar 4: G still held at "now".
        cap.push(&ev(2, 0.0, 60, 80));
        cap.push(&ev(2, 1.0, 60, 0));
        cap.push(&ev(2, 8.5, 64, 90));
        cap.push(&ev(2, 9.5, 64, 0));
        cap.push(&ev(2, 12.25, 67, 70));
        cap.observe_now(2, 13.0, 0.0, 4.0);
        let primer = cap.primer(2).expect("notes");
        // Two bars back from 13 is 5 -> window from bar line 4; first note in bar 8..12.
        assert_eq!(primer.notes.len(), 2);
        assert_eq!(primer.notes[0].pitch, 64);
        assert!((primer.notes[0].start_beats - 0.5).abs() < 1e-9);
        assert!((primer.notes[1].start_beats - 4.25).abs() < 1e-9);
        assert!((primer.notes[1].length_beats - 0.75).abs() < 1e-9, "held note ends now");
        let all = cap.primer(8).expect("notes");
        assert_eq!(all.notes.len(), 3);
        assert_eq!(all.notes[0].start_beats, 0.0);
    }

    #[test]
    fn a_jump_continues_the_timeline_and_closes_held_notes() {
        let mut cap = Capture::default();
        cap.push(&ev(1, 100.0, 60, 80));
        cap.observe_now(1, 101.0, 0.0, 4.0);
        // Transport relocates to beat 0: the held C ends at the jump, the new note follows it.
        cap.push(&ev(2, 0.0, 62, 80));
        cap.push(&ev(2, 0.5, 62, 0));
        cap.observe_now(2, 1.0, 0.0, 4.0);
        let primer = cap.primer(4).expect("notes");
        assert_eq!(primer.notes.len(), 2);
        assert!((primer.notes[0].length_beats - 1.0).abs() < 1e-9);
        assert!(primer.notes[1].start_beats > primer.notes[0].start_beats);
    }

    #[test]
    fn last_release_waits_for_every_key_to_be_let_go() {
        let mut cap = Capture::default();
        assert_eq!(cap.last_release(), None);
        cap.push(&ev(1, 0.0, 60, 80));
        cap.push(&ev(1, 0.5, 64, 80));
        cap.push(&ev(1, 1.0, 60, 0));
        assert_eq!(cap.last_release(), None, "64 is still held");
        cap.push(&ev(1, 2.0, 64, 0));
        assert_eq!(cap.last_release(), Some(2.0));
    }

    #[test]
    fn nothing_captured_gives_no_primer_and_clear_forgets() {
        let mut cap = Capture::default();
        assert!(cap.primer(4).is_none());
        cap.push(&ev(1, 0.0, 60, 80));
        cap.push(&ev(1, 0.5, 60, 0));
        assert!(!cap.is_empty());
        cap.clear();
        assert!(cap.primer(4).is_none());
    }
}
