//! Playback: the chosen variation as MIDI out, sample-accurate and in beats,
//! so it follows the host's tempo. The session thread fills preallocated
//! [`PlaySet`]s and hands them over a lock-free queue; the audio thread's
//! [`Player`] swaps them in and returns the old ones the same way, so nothing
//! is allocated or freed on the audio thread.
//!
//! A new set starts on the next bar line while the transport plays, or at
//! once while it is stopped. A looping variation waits for the transport
//! when the host stops and when a project is loaded, and starts again on the
//! bar line after it rolls. All notes go off on stop, on loop jumps, on a
//! transport jump and on a change of variation.

use cadenza_core::Clip;

use crate::clock::BlockClock;
use crate::params::MAX_VARIATIONS;

/// Most note edges one variation can hold (4096 notes).
pub const MAX_EVENTS_PER_CLIP: usize = 8192;
/// Most events one process block sends (generated and passed through together).
pub const MAX_OUT_EVENTS_PER_BLOCK: usize = 2048;
/// Play sets in circulation between the session and the audio thread.
pub const PLAY_SET_POOL: usize = 4;

/// One note edge of a variation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayEvent {
    /// Beats from the variation's start.
    pub beats: f64,
    pub pitch: u8,
    /// 1..=127 for a note-on, 0 for a note-off.
    pub velocity: u8,
}

/// One variation ready to play.
#[derive(Debug, Clone)]
pub struct PlayClip {
    /// Sorted by beat, note-offs before note-ons at the same beat.
    pub events: Vec<PlayEvent>,
    /// Where the variation ends (and loops), in beats.
    pub length_beats: f64,
}

/// What the player does when a set arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// A fresh result: start the chosen variation at the next bar line (or now when stopped).
    Start,
    /// The same music re-rendered (quantize changed): keep playing if it was.
    Keep,
    /// The variation playing, unchanged, with the others beside it (those
    /// of a generation whose chosen one came early): keep playing, and let
    /// sounding notes ring to their ends.
    Extend,
    /// A project loaded: with Loop on, the chosen variation plays from the bar line after the
    /// transport rolls, as the loop did before the project was saved.
    Restored,
}

/// All variations of one generation.
#[derive(Debug, Clone)]
pub struct PlaySet {
    pub clips: Vec<PlayClip>,
    /// How many of `clips` hold a variation.
    pub count: usize,
    pub start: StartMode,
    /// Increases with every set the session sends (0: none yet).
    pub serial: u64,
}

impl PlaySet {
    /// An empty set with all its storage allocated.
    pub fn with_capacity() -> Self {
        let clips = (0..MAX_VARIATIONS)
            .map(|_| PlayClip { events: Vec::with_capacity(MAX_EVENTS_PER_CLIP), length_beats: 0.0 })
            .collect();
        Self { clips, count: 0, start: StartMode::Keep, serial: 0 }
    }

    /// Fill from `variations`, each `length_beats` long. Notes past the end are cut, and a
    /// variation with more than [`MAX_EVENTS_PER_CLIP`] edges is cut short.
    pub fn fill(&mut self, variations: &[Clip], length_beats: f64) {
        self.count = variations.len().min(self.clips.len());
        for (slot, clip) in self.clips.iter_mut().zip(variations) {
            slot.events.clear();
            slot.length_beats = length_beats;
            for n in &clip.notes {
                if slot.events.len() + 2 > MAX_EVENTS_PER_CLIP {
                    break;
                }
                if n.start_beats >= length_beats || n.start_beats < 0.0 || n.pitch > 127 {
                    continue;
                }
                let end = n.end_beats().min(length_beats);
                slot.events.push(PlayEvent { beats: n.start_beats, pitch: n.pitch, velocity: n.velocity.max(1) });
                slot.events.push(PlayEvent { beats: end, pitch: n.pitch, velocity: 0 });
            }
            slot.events.sort_unstable_by(|a, b| {
                a.beats.total_cmp(&b.beats).then((a.velocity > 0).cmp(&(b.velocity > 0))).then(a.pitch.cmp(&b.pitch))
            });
        }
    }
}

/// One outgoing note edge of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutEvent {
    /// Sample offset in the block.
    pub timing: u32,
    /// MIDI channel 0..=15.
    pub channel: u8,
    pub pitch: u8,
    /// 1..=127 note-on, 0 note-off.
    pub velocity: u8,
}

/// A block's outgoing events, preallocated.
#[derive(Debug)]
pub struct OutBuffer {
    pub events: Vec<OutEvent>,
    /// Events that did not fit this block (should stay 0).
    pub dropped: u32,
}

impl Default for OutBuffer {
    fn default() -> Self {
        Self { events: Vec::with_capacity(MAX_OUT_EVENTS_PER_BLOCK), dropped: 0 }
    }
}

impl OutBuffer {
    pub fn clear(&mut self) {
        self.events.clear();
    }

    pub fn push(&mut self, ev: OutEvent) {
        if self.events.len() < MAX_OUT_EVENTS_PER_BLOCK {
            self.events.push(ev);
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// Order by time, note-offs first at the same time (no allocation: unstable sort).
    pub fn sort(&mut self) {
        self.events.sort_unstable_by_key(|e| (e.timing, e.velocity > 0, e.channel, e.pitch));
    }
}

/// Channel the generated notes go out on by default (MIDI channel 1).
pub const OUT_CHANNEL: u8 = 0;

/// What the player is doing, for the editor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PlayState {
    Idle = 0,
    /// Waiting for the bar line it will start on.
    Waiting = 1,
    Playing = 2,
    /// A loop waiting for the host's transport to roll.
    Cued = 3,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Idle,
    /// Start when the next block begins (at its next bar line or at once).
    Armed,
    /// Start (with Loop on) when the host's transport plays: arm then.
    Cued,
    /// Playing with beat 0 of the variation at `anchor` (absolute beats).
    Playing {
        anchor: f64,
    },
}

/// The audio thread's player.
#[derive(Debug)]
pub struct Player {
    set: Option<PlaySet>,
    mode: Mode,
    cursor: usize,
    variation: usize,
    /// The channel each sounding pitch started on, so its note-off goes there
    /// even when the output channel changed in between.
    sounding: [Option<u8>; 128],
    /// Channel 0..=15 new notes go out on.
    channel: u8,
    was_host_playing: bool,
    /// New material arrived: silence what the old one left sounding at the next block.
    flush_notes: bool,
}

impl Default for Player {
    fn default() -> Self {
        Self {
            set: None,
            mode: Mode::Idle,
            cursor: 0,
            variation: 0,
            sounding: [None; 128],
            channel: OUT_CHANNEL,
            was_host_playing: false,
            flush_notes: false,
        }
    }
}

impl Player {
    /// Swap in a new set; returns the old one for the caller to send back.
    pub fn install(&mut self, set: PlaySet) -> Option<PlaySet> {
        let start = set.start;
        let old = self.set.replace(set);
        match start {
            StartMode::Start => self.mode = Mode::Armed,
            StartMode::Restored => self.mode = Mode::Cued,
            StartMode::Keep | StartMode::Extend => {
                if let Mode::Playing { anchor } = self.mode {
                    self.mode = Mode::Playing { anchor };
                }
            }
        }
        // Position within the new material is found again on the next block.
        self.cursor = usize::MAX;
        // Sounding notes end in the new material only when it is the same.
        self.flush_notes = start != StartMode::Extend;
        old
    }

    pub fn serial(&self) -> u64 {
        self.set.as_ref().map_or(0, |s| s.serial)
    }

    pub fn play(&mut self) {
        if self.set.as_ref().is_some_and(|s| s.count > 0) {
            self.mode = Mode::Armed;
        }
    }

    pub fn stop(&mut self, out: &mut OutBuffer) {
        self.all_notes_off(0, out);
        self.mode = Mode::Idle;
    }

    pub fn state(&self) -> PlayState {
        match self.mode {
            Mode::Idle => PlayState::Idle,
            Mode::Armed => PlayState::Waiting,
            Mode::Cued => PlayState::Cued,
            Mode::Playing { .. } => PlayState::Playing,
        }
    }

    /// Beats into the variation at absolute position `beats` (negative while waiting).
    pub fn position_beats(&self, beats: f64) -> Option<f64> {
        match self.mode {
            Mode::Playing { anchor } => Some(beats - anchor),
            _ => None,
        }
    }

    pub fn variation(&self) -> usize {
        self.variation
    }

    /// The MIDI channel (0..=15) the next notes start on; sounding notes end where they began.
    pub fn set_channel(&mut self, channel: u8) {
        self.channel = channel.min(15);
    }

    fn all_notes_off(&mut self, timing: u32, out: &mut OutBuffer) {
        for pitch in 0..128u8 {
            if let Some(channel) = self.sounding[usize::from(pitch)].take() {
                out.push(OutEvent { timing, channel, pitch, velocity: 0 });
            }
        }
    }

    fn emit(&mut self, timing: u32, ev: &PlayEvent, out: &mut OutBuffer) {
        let p = usize::from(ev.pitch);
        if ev.velocity > 0 {
            if let Some(channel) = self.sounding[p] {
                out.push(OutEvent { timing, channel, pitch: ev.pitch, velocity: 0 });
            }
            out.push(OutEvent { timing, channel: self.channel, pitch: ev.pitch, velocity: ev.velocity });
            self.sounding[p] = Some(self.channel);
        } else if let Some(channel) = self.sounding[p].take() {
            out.push(OutEvent { timing, channel, pitch: ev.pitch, velocity: 0 });
        }
    }

    /// Point the cursor at the first event at or after `clip_beats`.
    fn seek(&mut self, clip_beats: f64) {
        let Some(set) = &self.set else { return };
        let Some(clip) = set.clips.get(self.variation) else { return };
        self.cursor = clip.events.partition_point(|e| e.beats < clip_beats - 1e-9);
    }

    /// Play one block of `len` samples. `variation` is the chosen one (0-based).
    pub fn process(&mut self, clock: &BlockClock, len: u32, variation: usize, looping: bool, out: &mut OutBuffer) {
        let host_started = clock.host_playing && !self.was_host_playing;
        self.was_host_playing = clock.host_playing;
        if std::mem::take(&mut self.flush_notes) {
            self.all_notes_off(0, out);
        }
        let count = self.set.as_ref().map_or(0, |s| s.count);
        if count == 0 {
            if self.mode != Mode::Idle {
                self.stop(out);
            }
            return;
        }
        let variation = variation.min(count - 1);
        if variation != self.variation {
            self.all_notes_off(0, out);
            self.variation = variation;
            self.cursor = usize::MAX;
        }
        if clock.jumped {
            self.all_notes_off(0, out);
            match self.mode {
                // The host stopped: so do we; a loop waits for it to roll again.
                Mode::Playing { .. } if !clock.host_playing => {
                    self.mode = if looping { Mode::Cued } else { Mode::Idle };
                }
                // Free-running playback meets the host transport: restart in its time.
                Mode::Playing { .. } if host_started => self.mode = Mode::Armed,
                // A relocation or host loop: keep the anchor, find our place again.
                _ => self.cursor = usize::MAX,
            }
        }
        if self.mode == Mode::Cued {
            // Only a loop waits for the transport.
            if !looping {
                self.mode = Mode::Idle;
            } else if clock.host_playing {
                self.mode = Mode::Armed;
            }
        }
        let block_start = clock.start_beats;
        let len_samples = f64::from(len);
        if self.mode == Mode::Armed {
            let anchor = if clock.host_playing { clock.next_bar_line(block_start) } else { block_start };
            self.mode = Mode::Playing { anchor };
            self.cursor = 0;
        }
        let Mode::Playing { mut anchor } = self.mode else { return };
        if self.cursor == usize::MAX {
            self.seek(block_start - anchor);
        }
        // A block can hold the end of one loop pass and the start of the next.
        for _pass in 0..4 {
            if clock.sample_of(anchor) >= len_samples {
                break;
            }
            let (length_beats, n_events) = match self.set.as_ref().and_then(|s| s.clips.get(self.variation)) {
                Some(c) => (c.length_beats, c.events.len()),
                None => break,
            };
            if length_beats <= 0.0 {
                self.stop(out);
                return;
            }
            let end_abs = anchor + length_beats;
            while self.cursor < n_events {
                let ev = match self.set.as_ref() {
                    Some(s) => s.clips[self.variation].events[self.cursor],
                    None => break,
                };
                let t = anchor + ev.beats;
                let s = clock.sample_of(t);
                if s >= len_samples || t >= end_abs - 1e-9 {
                    break;
                }
                // Events before the block (only after a seek) are skipped, not played late.
                if s >= 0.0 {
                    self.emit(s as u32, &ev, out);
                }
                self.cursor += 1;
            }
            let end_s = clock.sample_of(end_abs);
            if end_s < len_samples {
                let timing = end_s.max(0.0) as u32;
                self.all_notes_off(timing, out);
                if looping {
                    anchor = end_abs;
                    self.cursor = 0;
                    self.mode = Mode::Playing { anchor };
                    continue;
                }
                self.mode = Mode::Idle;
            }
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, HostTime};
    use cadenza_core::ClipNote;

    fn set_of(variations: &[Clip], length_beats: f64, start: StartMode) -> PlaySet {
        let mut set = PlaySet::with_capacity();
        set.fill(variations, length_beats);
        set.start = start;
        set.serial = 1;
        set
    }

    fn two_note_clip(pitch: u8) -> Clip {
        Clip {
            notes: vec![
                ClipNote { pitch, velocity: 100, start_beats: 0.0, length_beats: 1.0 },
                ClipNote { pitch: pitch + 2, velocity: 90, start_beats: 2.0, length_beats: 4.0 },
            ],
            length_beats: 6.0,
        }
    }

    /// Run `blocks` blocks of `len` samples at 120 BPM, 48 kHz from `pos` beats; return (absolute sample, event).
    fn run(
        player: &mut Player,
        playing: bool,
        pos: f64,
        blocks: usize,
        len: u32,
        looping: bool,
    ) -> Vec<(u64, OutEvent)> {
        let mut clock = Clock::default();
        let sr = 48_000.0;
        let mut out = OutBuffer::default();
        let mut all = Vec::new();
        for b in 0..blocks {
            let beats = pos + (b as f64) * f64::from(len) * 2.0 / sr;
            let host = HostTime {
                playing,
                tempo_bpm: Some(120.0),
                time_sig: Some((4, 4)),
                pos_beats: Some(beats),
                bar_start_beats: Some((beats / 4.0).floor() * 4.0),
            };
            let c = clock.advance(&host, sr, len);
            out.clear();
            player.process(&c, len, 0, looping, &mut out);
            out.sort();
            for e in &out.events {
                all.push(((b as u64) * u64::from(len) + u64::from(e.timing), *e));
            }
        }
        all
    }

    #[test]
    fn starts_on_the_next_bar_line_sample_accurately() {
        let mut player = Player::default();
        assert!(player.install(set_of(&[two_note_clip(60)], 4.0, StartMode::Start)).is_none());
        // Transport at beat 1.0; next bar line at beat 4 = 1.5 s later = sample 72000.
        let events = run(&mut player, true, 1.0, 400, 512, false);
        let first = events.first().expect("events");
        assert_eq!(first.1, OutEvent { timing: first.1.timing, channel: 0, pitch: 60, velocity: 100 });
        assert_eq!(first.0, 72_000);
        // The second note starts at beat 2 of the clip (+1 s) and is cut at the clip end (beat 4).
        let second_on = events.iter().find(|(_, e)| e.pitch == 62 && e.velocity > 0).expect("second");
        assert_eq!(second_on.0, 72_000 + 48_000);
        let second_off = events.iter().find(|(_, e)| e.pitch == 62 && e.velocity == 0).expect("off");
        assert_eq!(second_off.0, 72_000 + 96_000);
        assert_eq!(player.state(), PlayState::Idle, "one pass without loop");
    }

    #[test]
    fn notes_go_out_on_the_chosen_channel_and_end_on_the_one_they_began_on() {
        let mut player = Player::default();
        player.set_channel(3);
        player.install(set_of(&[two_note_clip(60)], 4.0, StartMode::Start));
        let events = run(&mut player, false, 0.0, 200, 512, false);
        assert!(!events.is_empty());
        assert!(events.iter().all(|(_, e)| e.channel == 3), "every note on and off on channel 4: {events:?}");

        let mut player = Player::default();
        let mut out = OutBuffer::default();
        player.set_channel(2);
        player.emit(0, &PlayEvent { beats: 0.0, pitch: 64, velocity: 80 }, &mut out);
        player.set_channel(9);
        player.emit(10, &PlayEvent { beats: 0.5, pitch: 67, velocity: 80 }, &mut out);
        player.emit(20, &PlayEvent { beats: 1.0, pitch: 64, velocity: 0 }, &mut out);
        player.all_notes_off(30, &mut out);
        assert_eq!(
            out.events,
            vec![
                OutEvent { timing: 0, channel: 2, pitch: 64, velocity: 80 },
                OutEvent { timing: 10, channel: 9, pitch: 67, velocity: 80 },
                OutEvent { timing: 20, channel: 2, pitch: 64, velocity: 0 },
                OutEvent { timing: 30, channel: 9, pitch: 67, velocity: 0 },
            ]
        );
        player.set_channel(200);
        assert_eq!(player.channel, 15, "out-of-range channels are clamped");
    }

    #[test]
    fn starts_at_once_when_stopped_and_loops_with_notes_off() {
        let mut player = Player::default();
        player.install(set_of(&[two_note_clip(60)], 4.0, StartMode::Start));
        // 4 beats = 2 s = 96000 samples per pass; run ~2.5 passes.
        let events = run(&mut player, false, 0.0, 470, 512, true);
        let ons: Vec<u64> = events.iter().filter(|(_, e)| e.pitch == 60 && e.velocity > 0).map(|x| x.0).collect();
        assert_eq!(ons, vec![0, 96_000, 192_000]);
        // The long note is turned off at every loop boundary before the next pass starts.
        let offs_62: Vec<u64> = events.iter().filter(|(_, e)| e.pitch == 62 && e.velocity == 0).map(|x| x.0).collect();
        assert_eq!(offs_62, vec![96_000, 192_000]);
        assert_eq!(player.state(), PlayState::Playing);
    }

    #[test]
    fn changing_variation_turns_notes_off_and_continues_in_the_other() {
        let mut player = Player::default();
        player.install(set_of(&[two_note_clip(60), two_note_clip(70)], 8.0, StartMode::Start));
        let mut clock = Clock::default();
        let mut out = OutBuffer::default();
        let stopped =
            HostTime { playing: false, tempo_bpm: Some(120.0), time_sig: None, pos_beats: None, bar_start_beats: None };
        // Into beat 2.5 of variation 1: the long note 62 sounds.
        for _ in 0..((2.5 * 24_000.0) as usize / 500) {
            let c = clock.advance(&stopped, 48_000.0, 500);
            player.process(&c, 500, 0, false, &mut out);
        }
        out.clear();
        let c = clock.advance(&stopped, 48_000.0, 500);
        player.process(&c, 500, 1, false, &mut out);
        assert!(out.events.contains(&OutEvent { timing: 0, channel: 0, pitch: 62, velocity: 0 }));
        assert_eq!(player.variation(), 1);
        // Variation 2's long note (72 at beat 2) already started, so it is not replayed mid-way.
        assert!(!out.events.iter().any(|e| e.velocity > 0));
    }

    /// The other variations arrive while the first plays (its notes unchanged):
    /// nothing is cut or struck again, and the first plays on to its end.
    /// Re-rendered material (Keep) ends sounding notes instead.
    #[test]
    fn the_others_join_the_first_without_cutting_its_notes() {
        for (mode, cut) in [(StartMode::Extend, false), (StartMode::Keep, true)] {
            let mut player = Player::default();
            player.install(set_of(&[two_note_clip(60)], 8.0, StartMode::Start));
            let mut clock = Clock::default();
            let mut out = OutBuffer::default();
            let stopped = HostTime {
                playing: false,
                tempo_bpm: Some(120.0),
                time_sig: None,
                pos_beats: None,
                bar_start_beats: None,
            };
            let mut events = Vec::new();
            // Into beat 2.5: the long note 62 (beats 2 to 6) sounds when the others arrive.
            for b in 0..(8 * 24_000 / 500) {
                if b == (2.5 * 24_000.0) as usize / 500 {
                    assert!(player.install(set_of(&[two_note_clip(60), two_note_clip(70)], 8.0, mode)).is_some());
                }
                let c = clock.advance(&stopped, 48_000.0, 500);
                out.clear();
                player.process(&c, 500, 0, false, &mut out);
                events.extend(out.events.iter().map(|e| (b * 500 + e.timing as usize, *e)));
            }
            let offs: Vec<usize> =
                events.iter().filter(|(_, e)| e.pitch == 62 && e.velocity == 0).map(|x| x.0).collect();
            let ons = events.iter().filter(|(_, e)| e.pitch == 62 && e.velocity > 0).count();
            assert_eq!(ons, 1, "{mode:?}: struck once");
            if cut {
                assert_eq!(offs, vec![(2.5 * 24_000.0) as usize / 500 * 500], "{mode:?}: cut when the set arrived");
            } else {
                assert_eq!(offs, vec![6 * 24_000], "{mode:?}: rings to its end at beat 6");
            }
            assert_eq!(player.variation(), 0);
        }
    }

    /// A host at 120 BPM in 4/4 at `pos_beats`, rolling or not.
    fn host_at(pos_beats: f64, playing: bool) -> HostTime {
        HostTime {
            playing,
            tempo_bpm: Some(120.0),
            time_sig: Some((4, 4)),
            pos_beats: Some(pos_beats),
            bar_start_beats: Some((pos_beats / 4.0).floor() * 4.0),
        }
    }

    #[test]
    fn transport_stop_stops_and_silences() {
        let mut player = Player::default();
        player.install(set_of(&[two_note_clip(60)], 4.0, StartMode::Start));
        let host = host_at;
        let mut clock = Clock::default();
        let mut out = OutBuffer::default();
        let mut pos = 4.0;
        for _ in 0..40 {
            let c = clock.advance(&host(pos, true), 48_000.0, 512);
            out.clear();
            player.process(&c, 512, 0, false, &mut out);
            pos += 512.0 * 2.0 / 48_000.0;
        }
        // Beat ~4.85: the first note (beats 4..5) sounds. The host stops.
        out.clear();
        let c = clock.advance(&host(pos, false), 48_000.0, 512);
        player.process(&c, 512, 0, false, &mut out);
        assert_eq!(out.events, vec![OutEvent { timing: 0, channel: 0, pitch: 60, velocity: 0 }]);
        assert_eq!(player.state(), PlayState::Idle);
    }

    /// Issue 11: a loop waits for the transport when the host stops and when a project is
    /// loaded, then starts on the bar line after the transport rolls; without Loop it does not.
    #[test]
    fn a_loop_waits_for_the_transport_after_a_stop_and_a_load() {
        let host = host_at;
        // (block, plays) for each block of 512 samples: the note-ons of the run.
        let run_blocks = |player: &mut Player, clock: &mut Clock, from: f64, blocks: usize, playing, looping| {
            let mut out = OutBuffer::default();
            let mut ons = Vec::new();
            for b in 0..blocks {
                let pos = from + b as f64 * 512.0 * 2.0 / 48_000.0;
                let c = clock.advance(&host(pos, playing), 48_000.0, 512);
                out.clear();
                player.process(&c, 512, 0, looping, &mut out);
                ons.extend(out.events.iter().filter(|e| e.velocity > 0).map(|e| c.beats_at(e.timing)));
            }
            ons
        };
        for restored in [false, true] {
            let mut player = Player::default();
            let mut clock = Clock::default();
            let start = if restored { StartMode::Restored } else { StartMode::Start };
            player.install(set_of(&[two_note_clip(60)], 4.0, start));
            if !restored {
                // Looping with the host, then the host stops: the loop waits.
                assert!(!run_blocks(&mut player, &mut clock, 0.0, 200, true, true).is_empty());
                assert!(run_blocks(&mut player, &mut clock, 4.0, 10, false, true).is_empty());
            } else {
                assert!(run_blocks(&mut player, &mut clock, 0.0, 10, false, true).is_empty(), "silent while stopped");
            }
            assert_eq!(player.state(), PlayState::Cued);
            // The transport rolls at beat 9: the loop starts on the bar line at beat 12.
            let ons = run_blocks(&mut player, &mut clock, 9.0, 400, true, true);
            assert!((ons[0] - 12.0).abs() < 1e-3, "restored {restored}: first note at beat {}", ons[0]);
            assert_eq!(player.state(), PlayState::Playing);
        }
        let mut player = Player::default();
        let mut clock = Clock::default();
        player.install(set_of(&[two_note_clip(60)], 4.0, StartMode::Restored));
        assert!(run_blocks(&mut player, &mut clock, 9.0, 400, true, false).is_empty(), "no loop: nothing plays");
        assert_eq!(player.state(), PlayState::Idle);
    }

    #[test]
    fn fill_cuts_at_the_length_and_orders_offs_first() {
        let clip = Clip {
            notes: vec![
                ClipNote { pitch: 60, velocity: 80, start_beats: 0.0, length_beats: 1.0 },
                ClipNote { pitch: 60, velocity: 80, start_beats: 1.0, length_beats: 9.0 },
                ClipNote { pitch: 64, velocity: 80, start_beats: 5.0, length_beats: 1.0 },
            ],
            length_beats: 10.0,
        };
        let set = set_of(&[clip], 4.0, StartMode::Keep);
        let ev = &set.clips[0].events;
        assert_eq!(ev.len(), 4);
        assert_eq!((ev[1].beats, ev[1].velocity), (1.0, 0), "the off of the first note precedes the re-strike");
        assert_eq!((ev[2].beats, ev[2].velocity), (1.0, 80));
        assert_eq!(ev[3].beats, 4.0);
    }
}
