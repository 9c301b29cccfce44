//! The performance-event codec of Performance RNN and Music Transformer
//! (Oore et al. 2018, Huang et al. 2018): notes in seconds to a stream of
//! 388 events (128 NOTE_ON, 128 NOTE_OFF, 100 TIME_SHIFT of 10 ms, 32 VELOCITY
//! bins) plus three special tokens, and back.
//!
//! Token layout (the model's vocabulary; changing it bumps [`CODEC_VERSION`]):
//!
//! | tokens    | event                                  |
//! |-----------|----------------------------------------|
//! | 0..128    | NOTE_ON pitch                          |
//! | 128..256  | NOTE_OFF pitch                         |
//! | 256..356  | TIME_SHIFT of 1..=100 steps of 10 ms   |
//! | 356..388  | VELOCITY bin 1..=32                    |
//! | 388       | PAD                                    |
//! | 389       | START (primes an improvisation)        |
//! | 390       | END (end of a piece)                   |

use crate::performance::{Note, Performance, PIANO_HIGHEST, PIANO_LOWEST};

/// Version of the token layout and timing grid. Models record it; the engine refuses a mismatch.
pub const CODEC_VERSION: u32 = 1;

/// Time-shift resolution.
pub const STEPS_PER_SECOND: u32 = 100;
/// Largest single time shift, in steps (1 second).
pub const MAX_SHIFT_STEPS: u32 = 100;
pub const NUM_VELOCITY_BINS: u32 = 32;
/// Width of one velocity bin in MIDI velocity units (ceil(127 / 32), as Magenta).
pub const VELOCITY_BIN_WIDTH: u32 = 4;

pub const NOTE_ON_OFFSET: u16 = 0;
pub const NOTE_OFF_OFFSET: u16 = 128;
pub const TIME_SHIFT_OFFSET: u16 = 256;
pub const VELOCITY_OFFSET: u16 = 356;
/// Number of performance events (without special tokens).
pub const NUM_EVENTS: u16 = 388;
pub const PAD: u16 = 388;
pub const START: u16 = 389;
pub const END: u16 = 390;
/// Size of the model's vocabulary.
pub const VOCAB_SIZE: usize = 391;

/// One decoded token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    NoteOn(u8),
    NoteOff(u8),
    /// Advance time by 1..=100 steps of 10 ms.
    TimeShift(u8),
    /// Velocity bin 1..=32 for the following note-ons.
    Velocity(u8),
    Pad,
    Start,
    End,
}

impl Event {
    pub fn to_token(self) -> u16 {
        match self {
            Event::NoteOn(p) => NOTE_ON_OFFSET + u16::from(p & 0x7f),
            Event::NoteOff(p) => NOTE_OFF_OFFSET + u16::from(p & 0x7f),
            Event::TimeShift(s) => TIME_SHIFT_OFFSET + u16::from(s.clamp(1, 100)) - 1,
            Event::Velocity(b) => VELOCITY_OFFSET + u16::from(b.clamp(1, 32)) - 1,
            Event::Pad => PAD,
            Event::Start => START,
            Event::End => END,
        }
    }

    /// `None` for tokens outside the vocabulary.
    pub fn from_token(token: u16) -> Option<Event> {
        Some(match token {
            0..=127 => Event::NoteOn(token as u8),
            128..=255 => Event::NoteOff((token - NOTE_OFF_OFFSET) as u8),
            256..=355 => Event::TimeShift((token - TIME_SHIFT_OFFSET + 1) as u8),
            356..=387 => Event::Velocity((token - VELOCITY_OFFSET + 1) as u8),
            PAD => Event::Pad,
            START => Event::Start,
            END => Event::End,
            _ => return None,
        })
    }
}

/// Velocity bin (1..=32) of a MIDI velocity (1..=127).
pub fn velocity_to_bin(velocity: u8) -> u8 {
    let v = u32::from(velocity.clamp(1, 127));
    ((v - 1) / VELOCITY_BIN_WIDTH + 1) as u8
}

/// A MIDI velocity inside the bin, near its centre.
pub fn bin_to_velocity(bin: u8) -> u8 {
    let b = u32::from(bin.clamp(1, NUM_VELOCITY_BINS as u8));
    ((b - 1) * VELOCITY_BIN_WIDTH + 3).min(127) as u8
}

/// A model's loss in bits per second of music, from nats per event and the
/// events per second of the music it was measured on: unlike nats per event,
/// comparable across tokenizers.
pub fn bits_per_second(nats_per_event: f64, events_per_second: f64) -> f64 {
    nats_per_event * events_per_second / std::f64::consts::LN_2
}

/// Seconds to steps of the 10 ms grid, rounded to nearest.
pub fn seconds_to_steps(seconds: f64) -> u64 {
    (seconds.max(0.0) * f64::from(STEPS_PER_SECOND)).round() as u64
}

pub fn steps_to_seconds(steps: u64) -> f64 {
    steps as f64 / f64::from(STEPS_PER_SECOND)
}

/// A note on the 10 ms grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GridNote {
    pitch: u8,
    velocity: u8,
    start: u64,
    end: u64,
}

/// Notes snapped to the grid, each at least one step long, with same-pitch
/// overlaps resolved: an earlier note ends where the next one of its pitch
/// starts (one key cannot sound twice), and two onsets of a key on one step
/// become one note at the louder velocity.
fn quantize(perf: &Performance) -> Vec<GridNote> {
    let mut grid: Vec<GridNote> = perf
        .notes
        .iter()
        .filter(|n| n.pitch < 128)
        .map(|n| {
            let start = seconds_to_steps(n.start_s);
            let end = seconds_to_steps(n.end_s).max(start + 1);
            GridNote { pitch: n.pitch, velocity: n.velocity.clamp(1, 127), start, end }
        })
        .collect();
    grid.sort_by_key(|n| (n.pitch, n.start, n.end));
    let mut out: Vec<GridNote> = Vec::with_capacity(grid.len());
    for n in grid {
        if let Some(prev) = out.last_mut() {
            if prev.pitch == n.pitch && prev.end > n.start {
                if prev.start == n.start {
                    // A unison of two merged parts sounds as one strike of the louder.
                    *prev = GridNote { end: prev.end.max(n.end), velocity: prev.velocity.max(n.velocity), ..n };
                    continue;
                }
                prev.end = n.start;
            }
        }
        out.push(n);
    }
    out
}

/// Encode a performance as events. Same-time note-offs come before note-ons,
/// so a re-struck key is released before it sounds again.
pub fn encode(perf: &Performance) -> Vec<Event> {
    let grid = quantize(perf);
    // (step, 0 = off / 1 = on, pitch, velocity)
    let mut timed: Vec<(u64, u8, u8, u8)> = Vec::with_capacity(grid.len() * 2);
    for n in &grid {
        timed.push((n.start, 1, n.pitch, n.velocity));
        timed.push((n.end, 0, n.pitch, n.velocity));
    }
    timed.sort_unstable_by_key(|&(step, kind, pitch, _)| (step, kind, pitch));

    let mut events = Vec::with_capacity(timed.len() * 2);
    let mut now = 0u64;
    let mut current_bin = 0u8;
    for (step, kind, pitch, velocity) in timed {
        push_shifts(&mut events, step - now);
        now = step;
        if kind == 1 {
            let bin = velocity_to_bin(velocity);
            if bin != current_bin {
                events.push(Event::Velocity(bin));
                current_bin = bin;
            }
            events.push(Event::NoteOn(pitch));
        } else {
            events.push(Event::NoteOff(pitch));
        }
    }
    events
}

fn push_shifts(events: &mut Vec<Event>, mut steps: u64) {
    while steps > 0 {
        let s = steps.min(u64::from(MAX_SHIFT_STEPS));
        events.push(Event::TimeShift(s as u8));
        steps -= s;
    }
}

/// Encode straight to model tokens.
pub fn encode_tokens(perf: &Performance) -> Vec<u16> {
    encode(perf).into_iter().map(Event::to_token).collect()
}

/// Incremental decoder: feed tokens one at a time (the engine does, while
/// sampling) and collect finished notes.
#[derive(Debug, Clone)]
pub struct Decoder {
    now_steps: u64,
    velocity: u8,
    /// Onset step and velocity of the sounding note of each pitch.
    active: [Option<(u64, u8)>; 128],
    notes: Vec<Note>,
    ended: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self { now_steps: 0, velocity: 64, active: [None; 128], notes: Vec::new(), ended: false }
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Current time in steps.
    pub fn now_steps(&self) -> u64 {
        self.now_steps
    }

    /// True once an END token was read; later tokens are ignored.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Pitches sounding now.
    pub fn sounding(&self) -> impl Iterator<Item = u8> + '_ {
        self.active.iter().enumerate().filter(|(_, a)| a.is_some()).map(|(p, _)| p as u8)
    }

    pub fn push_token(&mut self, token: u16) {
        if let Some(e) = Event::from_token(token) {
            self.push(e);
        }
    }

    pub fn push(&mut self, event: Event) {
        if self.ended {
            return;
        }
        match event {
            Event::NoteOn(p) => {
                let p = usize::from(p);
                if let Some((start, v)) = self.active[p] {
                    if start == self.now_steps {
                        // A doubled onset is one note; the later velocity wins.
                        self.active[p] = Some((start, self.velocity));
                        return;
                    }
                    self.close(p, start, v);
                }
                self.active[p] = Some((self.now_steps, self.velocity));
            }
            Event::NoteOff(p) => {
                let p = usize::from(p);
                if let Some((start, v)) = self.active[p] {
                    self.close(p, start, v);
                }
            }
            Event::TimeShift(s) => self.now_steps += u64::from(s),
            Event::Velocity(b) => self.velocity = bin_to_velocity(b),
            Event::End => self.ended = true,
            Event::Pad | Event::Start => {}
        }
    }

    fn close(&mut self, pitch: usize, start: u64, velocity: u8) {
        let end = self.now_steps.max(start + 1);
        self.notes.push(Note {
            pitch: pitch as u8,
            velocity,
            start_s: steps_to_seconds(start),
            end_s: steps_to_seconds(end),
        });
        self.active[pitch] = None;
    }

    /// Close every sounding note at the current time and return the performance.
    pub fn finish(mut self) -> Performance {
        for p in 0..128 {
            if let Some((start, v)) = self.active[p] {
                self.close(p, start, v);
            }
        }
        Performance::new(self.notes)
    }

    /// Notes finished so far (sounding ones excluded), in the order they ended.
    pub fn finished_notes(&self) -> &[Note] {
        &self.notes
    }

    /// Notes sounding now: pitch, onset in steps and velocity.
    pub fn sounding_notes(&self) -> impl Iterator<Item = (u8, u64, u8)> + '_ {
        self.active.iter().enumerate().filter_map(|(p, a)| a.map(|(onset, v)| (p as u8, onset, v)))
    }
}

/// Decode events to a performance; reading stops at END, and notes still
/// sounding at the end are closed there.
pub fn decode(events: &[Event]) -> Performance {
    let mut d = Decoder::new();
    for &e in events {
        d.push(e);
    }
    d.finish()
}

pub fn decode_tokens(tokens: &[u16]) -> Performance {
    let mut d = Decoder::new();
    for &t in tokens {
        d.push_token(t);
    }
    d.finish()
}

/// Length in seconds of a token stream (the sum of its time shifts up to END).
pub fn tokens_duration_s(tokens: &[u16]) -> f64 {
    let mut steps = 0u64;
    for &t in tokens {
        match Event::from_token(t) {
            Some(Event::TimeShift(s)) => steps += u64::from(s),
            Some(Event::End) => break,
            _ => {}
        }
    }
    steps_to_seconds(steps)
}

/// Transpositions the trainer draws from, in semitones.
pub const AUGMENT_TRANSPOSE: [i8; 7] = [-3, -2, -1, 0, 1, 2, 3];
/// Time-stretch factors the trainer draws from.
pub const AUGMENT_STRETCH: [f64; 5] = [0.95, 0.975, 1.0, 1.025, 1.05];

/// Training augmentation on a token stream (a whole piece or a crop of one):
/// transpose every note by `transpose` semitones, dropping notes the shift
/// pushes out of the piano's 21..=108 (never wrapping them), and stretch time
/// by `stretch` on the 10 ms grid. Special tokens keep their place in time.
pub fn augment_tokens(tokens: &[u16], transpose: i8, stretch: f64) -> Vec<u16> {
    if transpose == 0 && stretch == 1.0 {
        return tokens.to_vec();
    }
    let mut out = Vec::with_capacity(tokens.len() + tokens.len() / 8);
    let mut src_steps = 0u64;
    let mut out_steps = 0u64;
    for &t in tokens {
        let Some(e) = Event::from_token(t) else { continue };
        let shifted = match e {
            Event::TimeShift(s) => {
                src_steps += u64::from(s);
                continue;
            }
            Event::NoteOn(p) => match transpose_pitch(p, transpose) {
                Some(q) => Event::NoteOn(q),
                None => continue,
            },
            Event::NoteOff(p) => match transpose_pitch(p, transpose) {
                Some(q) => Event::NoteOff(q),
                None => continue,
            },
            other => other,
        };
        let target = (src_steps as f64 * stretch).round() as u64;
        if target > out_steps {
            let mut evs = Vec::new();
            push_shifts(&mut evs, target - out_steps);
            out.extend(evs.into_iter().map(Event::to_token));
            out_steps = target;
        }
        out.push(shifted.to_token());
    }
    // Trailing time keeps its (stretched) length.
    let target = (src_steps as f64 * stretch).round() as u64;
    if target > out_steps {
        let mut evs = Vec::new();
        push_shifts(&mut evs, target - out_steps);
        out.extend(evs.into_iter().map(Event::to_token));
    }
    out
}

fn transpose_pitch(pitch: u8, semitones: i8) -> Option<u8> {
    if semitones == 0 {
        return Some(pitch);
    }
    let q = i16::from(pitch) + i16::from(semitones);
    let in_piano = |x: i16| (i16::from(PIANO_LOWEST)..=i16::from(PIANO_HIGHEST)).contains(&x);
    // Notes outside the piano to begin with are left where they were only if the
    // shift keeps them valid MIDI; a shift that leaves the keyboard drops the note.
    if in_piano(q) || (!in_piano(i16::from(pitch)) && (0..128).contains(&q)) {
        Some(q as u8)
    } else {
        None
    }
}

/// Transpose a performance (the same rule as [`augment_tokens`]).
pub fn transpose(perf: &Performance, semitones: i8) -> Performance {
    Performance::new(
        perf.notes
            .iter()
            .filter_map(|n| transpose_pitch(n.pitch, semitones).map(|pitch| Note { pitch, ..*n }))
            .collect(),
    )
}

/// Stretch a performance in time by `factor`.
pub fn stretch(perf: &Performance, factor: f64) -> Performance {
    Performance::new(
        perf.notes.iter().map(|n| Note { start_s: n.start_s * factor, end_s: n.end_s * factor, ..*n }).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(pitch: u8, velocity: u8, start_s: f64, end_s: f64) -> Note {
        Note { pitch, velocity, start_s, end_s }
    }

    #[test]
    fn every_token_maps_to_an_event_and_back() {
        for t in 0..VOCAB_SIZE as u16 {
            let e = Event::from_token(t).expect("in vocabulary");
            assert_eq!(e.to_token(), t, "{e:?}");
        }
        assert_eq!(Event::from_token(VOCAB_SIZE as u16), None);
    }

    #[test]
    fn velocity_bins_cover_midi_range_and_decode_inside_their_bin() {
        assert_eq!(velocity_to_bin(1), 1);
        assert_eq!(velocity_to_bin(127), 32);
        for v in 1..=127u8 {
            let b = velocity_to_bin(v);
            assert!((1..=32).contains(&b));
            assert_eq!(velocity_to_bin(bin_to_velocity(b)), b, "velocity {v}");
        }
    }

    #[test]
    fn round_trip_keeps_pitch_onset_and_velocity_bin() {
        let notes = vec![
            n(60, 80, 0.0, 0.5),
            n(64, 80, 0.0, 0.5),
            n(67, 30, 0.503, 2.9),
            n(72, 127, 3.2, 3.3),
            n(21, 1, 10.0, 10.004),
        ];
        let p = Performance::new(notes.clone());
        let back = decode(&encode(&p));
        assert_eq!(back.notes.len(), notes.len());
        for (a, b) in p.notes.iter().zip(&back.notes) {
            assert_eq!(a.pitch, b.pitch);
            assert!((a.start_s - b.start_s).abs() <= 0.005 + 1e-9);
            assert_eq!(velocity_to_bin(a.velocity), velocity_to_bin(b.velocity));
        }
    }

    #[test]
    fn long_gaps_use_several_time_shifts() {
        let p = Performance::new(vec![n(60, 64, 2.5, 2.6)]);
        let ev = encode(&p);
        assert_eq!(&ev[..3], &[Event::TimeShift(100), Event::TimeShift(100), Event::TimeShift(50)]);
        assert!((tokens_duration_s(&encode_tokens(&p)) - 2.6).abs() < 1e-9);
    }

    #[test]
    fn same_pitch_overlap_is_released_before_restrike() {
        let p = Performance::new(vec![n(60, 64, 0.0, 1.0), n(60, 64, 0.5, 1.5)]);
        let back = decode(&encode(&p));
        assert_eq!(back.notes.len(), 2);
        assert!((back.notes[0].end_s - 0.5).abs() < 1e-9);
        assert!((back.notes[1].start_s - 0.5).abs() < 1e-9);
        assert!((back.notes[1].end_s - 1.5).abs() < 1e-9);
    }

    #[test]
    fn a_unison_of_two_parts_keeps_the_louder_strike() {
        let p = Performance::new(vec![n(60, 40, 1.0, 2.0), n(60, 100, 1.002, 1.5)]);
        let back = decode(&encode(&p));
        assert_eq!(back.notes.len(), 1);
        assert_eq!(velocity_to_bin(back.notes[0].velocity), velocity_to_bin(100));
        assert!((back.notes[0].end_s - 2.0).abs() < 1e-9);
        assert!(crate::compare::compare(&p, &back).faithful());
    }

    #[test]
    fn decoder_closes_hanging_notes_and_stops_at_end() {
        let tokens = [Event::NoteOn(60).to_token(), Event::TimeShift(50).to_token(), END, Event::NoteOn(62).to_token()];
        let p = decode_tokens(&tokens);
        assert_eq!(p.notes.len(), 1);
        assert!((p.notes[0].end_s - 0.5).abs() < 1e-9);
    }

    #[test]
    fn transposition_drops_notes_pushed_off_the_keyboard() {
        let p = Performance::new(vec![n(21, 64, 0.0, 1.0), n(60, 64, 0.0, 1.0), n(108, 64, 1.0, 2.0)]);
        let toks = encode_tokens(&p);
        let down = decode_tokens(&augment_tokens(&toks, -2, 1.0));
        assert_eq!(down.notes.iter().map(|n| n.pitch).collect::<Vec<_>>(), vec![58, 106]);
        let up = decode_tokens(&augment_tokens(&toks, 3, 1.0));
        assert_eq!(up.notes.iter().map(|n| n.pitch).collect::<Vec<_>>(), vec![24, 63]);
    }

    #[test]
    fn stretch_scales_time_on_the_grid() {
        let p = Performance::new(vec![n(60, 64, 1.0, 2.0), n(62, 64, 4.0, 4.5)]);
        let s = decode_tokens(&augment_tokens(&encode_tokens(&p), 0, 1.05));
        assert!((s.notes[0].start_s - 1.05).abs() < 0.011);
        assert!((s.notes[1].start_s - 4.2).abs() < 0.011);
        assert!((s.notes[1].end_s - 4.725).abs() < 0.011);
    }
}
