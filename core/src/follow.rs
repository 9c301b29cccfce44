//! Following the primer: soft logit biases, never masks, that pull a
//! continuation towards what the musician played ([`PrimerAnalysis`]): its
//! pitch classes (the primer's own weighting of degrees, not only a scale),
//! its register, its note density, its loudness, its rhythmic grid and its
//! melodic figures. One strength scales them all, from 0 (free) to 1 (strict).
//!
//! Density and register are closed loops: the bias answers what the
//! continuation has played so far, so a model that drifts is pulled back
//! rather than pushed by a fixed amount. Everything is precomputed per
//! request ([`Follower`]) or kept in fixed arrays per variation
//! ([`FollowState`]): a step allocates nothing.
//!
//! Explicit steering wins over the analysis: a key, a pitch range or a
//! density bias set by the musician turns off the matching pull.

use crate::analysis::{Meter, PrimerAnalysis, Rhythm, MOTIF_INTERVALS, PHASE_BINS};
use crate::codec::{self, Event, NOTE_ON_OFFSET, NUM_VELOCITY_BINS, TIME_SHIFT_OFFSET, VELOCITY_OFFSET};
use crate::performance::{PIANO_HIGHEST, PIANO_LOWEST};
use crate::sampling::Steering;

/// Follow strength when nothing else is asked for (chosen by
/// `cargo xtask eval continuation --strengths`; see models/README.md).
pub const DEFAULT_FOLLOW: f32 = 0.0;

/// Nats of pull, per unit of strength, of each measure. Chosen with
/// `cargo xtask eval continuation` against the held-out pieces.
mod weight {
    /// Times ln(12 p(pc)): the primer's pitch-class weighting.
    pub const PITCH_CLASS: f32 = 1.6;
    /// Times half the squared distance from the register's centre, in spreads.
    pub const REGISTER: f32 = 1.2;
    /// How far (in primer spreads) the register's centre moves against a drift.
    pub const REGISTER_FEEDBACK: f64 = 0.8;
    /// Times ln(target rate / recent rate), on every note-on.
    pub const DENSITY: f32 = 1.5;
    /// Times ln(PHASE_BINS p(phase)) of the rhythm profile, at full grid fit.
    pub const RHYTHM: f32 = 1.5;
    /// Added to a note-on that continues one of the primer's figures.
    pub const MOTIF: f32 = 1.0;
    /// Times half the squared distance from the primer's velocity, in spreads.
    pub const VELOCITY: f32 = 0.5;
}

/// Most nats any single pull may add or take away: a bias, not a ban.
const MAX_PULL: f32 = 4.0;
/// The window the recent note density is measured over, in codec steps (4 s).
const DENSITY_WINDOW_STEPS: u64 = 400;
/// Onsets remembered for the density measure (more than 4 s of dense playing needs).
const ONSET_RING: usize = 128;
/// How quickly the recent register follows new notes (weight of each new note).
const REGISTER_EMA: f64 = 0.08;

/// What one request follows, computed once from the primer and the steering.
#[derive(Debug, Clone)]
pub struct Follower {
    strength: f32,
    /// Pitch-class pull per MIDI key (0 when the key is steered explicitly).
    pitch_class_bias: [f32; 128],
    /// The register's centre and spread; `None` when a pitch range is set.
    register: Option<(f64, f64)>,
    /// Notes per second to keep; `None` when a density bias is set.
    target_rate: Option<f64>,
    velocity_bias: [f32; NUM_VELOCITY_BINS as usize],
    /// The grid in codec steps, with ln(PHASE_BINS p) per phase bin, scaled by grid fit.
    rhythm: Option<(Meter, [f32; PHASE_BINS])>,
    /// The primer's figures, sorted.
    motifs: Vec<[i8; MOTIF_INTERVALS]>,
}

/// One variation's recent past, as the pulls need it.
#[derive(Debug, Clone)]
pub struct FollowState {
    onsets: [u64; ONSET_RING],
    /// Onsets pushed in all (the ring holds the last [`ONSET_RING`]).
    onset_count: usize,
    /// The last [`MOTIF_INTERVALS`] pitches struck, oldest first.
    last_pitches: [u8; MOTIF_INTERVALS],
    struck: usize,
    /// Exponential mean of the pitches struck.
    recent_pitch: Option<f64>,
}

impl Default for FollowState {
    fn default() -> Self {
        Self {
            onsets: [0; ONSET_RING],
            onset_count: 0,
            last_pitches: [0; MOTIF_INTERVALS],
            struck: 0,
            recent_pitch: None,
        }
    }
}

impl FollowState {
    /// Take in one event at `now_steps` (before the decoder moves on).
    pub fn observe(&mut self, event: Event, now_steps: u64) {
        let Event::NoteOn(p) = event else { return };
        self.onsets[self.onset_count % ONSET_RING] = now_steps;
        self.onset_count += 1;
        self.last_pitches.rotate_left(1);
        self.last_pitches[MOTIF_INTERVALS - 1] = p;
        self.struck += 1;
        let p = f64::from(p);
        self.recent_pitch = Some(self.recent_pitch.map_or(p, |m| m + REGISTER_EMA * (p - m)));
    }

    /// Onsets per second over the last [`DENSITY_WINDOW_STEPS`] before `now_steps`,
    /// with one second at `prior_rate` mixed in so a fresh start is not extreme.
    fn recent_rate(&self, now_steps: u64, prior_rate: f64) -> f64 {
        let from = now_steps.saturating_sub(DENSITY_WINDOW_STEPS);
        let held = self.onset_count.min(ONSET_RING);
        let mut n = 0usize;
        let mut oldest = now_steps;
        for i in 0..held {
            let t = self.onsets[(self.onset_count - 1 - i) % ONSET_RING];
            if t < from {
                break;
            }
            n += 1;
            oldest = t;
        }
        // A full ring inside the window: the rate over the span the ring covers.
        let span_steps = if n == ONSET_RING { now_steps - oldest } else { now_steps - from };
        let span_s = codec::steps_to_seconds(span_steps.max(1));
        (n as f64 + prior_rate) / (span_s + 1.0)
    }
}

impl Follower {
    /// The pulls of `analysis` at `strength` (0..=1), minus those `steering`
    /// sets explicitly. `None` when there is nothing to do (strength 0).
    pub fn new(analysis: &PrimerAnalysis, steering: &Steering, meter: Option<&Meter>, strength: f32) -> Option<Self> {
        if strength <= 0.0 {
            return None;
        }
        let mut pitch_class_bias = [0.0f32; 128];
        if steering.key.is_none() {
            // The primer's weighting, softened by its key's scale and a floor, so
            // an unplayed colour note is less likely, never impossible.
            let scale: Vec<f64> = (0..12u8)
                .map(|pc| match analysis.key {
                    Some(k) if k.scale_contains(pc) => 1.0,
                    Some(_) => 0.0,
                    None => 1.0,
                })
                .collect();
            let scale_total: f64 = scale.iter().sum();
            for (pitch, bias) in pitch_class_bias.iter_mut().enumerate() {
                let pc = pitch % 12;
                let p = 0.7 * analysis.pitch_classes[pc] + 0.2 * scale[pc] / scale_total + 0.1 / 12.0;
                *bias = (weight::PITCH_CLASS * (12.0 * p).ln() as f32).clamp(-MAX_PULL, MAX_PULL);
            }
        }
        let full_range = steering.lowest_pitch <= PIANO_LOWEST && steering.highest_pitch >= PIANO_HIGHEST;
        let register = full_range.then(|| (analysis.mean_pitch, analysis.pitch_sd.max(2.5) * 1.5 + 1.0));
        let target_rate = (steering.density_bias == 0.0).then_some(analysis.notes_per_s);
        let mut velocity_bias = [0.0f32; NUM_VELOCITY_BINS as usize];
        let centre = f64::from(codec::velocity_to_bin(analysis.mean_velocity.round().clamp(1.0, 127.0) as u8));
        let spread = analysis.velocity_sd / f64::from(codec::VELOCITY_BIN_WIDTH) * 1.5 + 1.5;
        for (bin, bias) in velocity_bias.iter_mut().enumerate() {
            let z = (bin as f64 - centre) / spread;
            *bias = (-weight::VELOCITY * (0.5 * z * z) as f32).max(-MAX_PULL);
        }
        let rhythm = match (meter, &analysis.rhythm) {
            (Some(m), Some(r)) if r.grid_fit > 0.0 => Some((*m, rhythm_bias(r))),
            _ => None,
        };
        Some(Self {
            strength: strength.clamp(0.0, 1.0),
            pitch_class_bias,
            register,
            target_rate,
            velocity_bias,
            rhythm,
            motifs: analysis.motifs.clone(),
        })
    }

    /// Add the pulls to `logits` (already masked by [`Steering::apply`]) for
    /// a variation in `state` at decoder time `now_steps`.
    pub fn apply(&self, logits: &mut [f32], state: &FollowState, now_steps: u64) {
        let s = self.strength;
        let mut on_bias = 0.0f32;
        if let Some(target) = self.target_rate {
            let rate = state.recent_rate(now_steps, target);
            on_bias += (weight::DENSITY * (target.max(0.05) / rate.max(0.05)).ln() as f32).clamp(-MAX_PULL, MAX_PULL);
        }
        if let Some((meter, phase_bias)) = &self.rhythm {
            // A note now, off the primer's grid, is less likely (a shift to the grid is the way out).
            on_bias += phase_bias_at(meter, phase_bias, codec::steps_to_seconds(now_steps)).min(0.0);
        }
        let register = self.register.map(|(mean, spread)| {
            let drift = state.recent_pitch.map_or(0.0, |r| (r - mean).clamp(-spread, spread));
            (mean - weight::REGISTER_FEEDBACK * drift, spread)
        });
        for pitch in 0..128usize {
            let t = usize::from(NOTE_ON_OFFSET) + pitch;
            if logits[t] == f32::NEG_INFINITY {
                continue;
            }
            let mut b = on_bias + self.pitch_class_bias[pitch];
            if let Some((centre, spread)) = register {
                let z = (pitch as f64 - centre) / spread;
                b -= (weight::REGISTER * (0.5 * z * z) as f32).min(MAX_PULL);
            }
            logits[t] += s * b;
        }
        self.pull_motifs(logits, state);
        for (bin, bias) in self.velocity_bias.iter().enumerate() {
            logits[usize::from(VELOCITY_OFFSET) + bin] += s * bias;
        }
        if let Some((meter, phase_bias)) = &self.rhythm {
            for k in 1..=codec::MAX_SHIFT_STEPS {
                let t = usize::from(TIME_SHIFT_OFFSET) + k as usize - 1;
                let land_s = codec::steps_to_seconds(now_steps + u64::from(k));
                logits[t] += s * phase_bias_at(meter, phase_bias, land_s);
            }
        }
    }

    /// A note-on that makes the last figure one of the primer's gets a push.
    fn pull_motifs(&self, logits: &mut [f32], state: &FollowState) {
        if self.motifs.is_empty() || state.struck < MOTIF_INTERVALS {
            return;
        }
        let p = &state.last_pitches;
        let mut prefix = [0i8; MOTIF_INTERVALS - 1];
        for (i, v) in prefix.iter_mut().enumerate() {
            *v = (i16::from(p[i + 1]) - i16::from(p[i])) as i8;
        }
        let start = self.motifs.partition_point(|m| m[..MOTIF_INTERVALS - 1] < prefix[..]);
        let last = i16::from(p[MOTIF_INTERVALS - 1]);
        for m in self.motifs[start..].iter().take_while(|m| m[..MOTIF_INTERVALS - 1] == prefix[..]) {
            let next = last + i16::from(m[MOTIF_INTERVALS - 1]);
            if (0..128).contains(&next) {
                let t = usize::from(NOTE_ON_OFFSET) + next as usize;
                if logits[t] != f32::NEG_INFINITY {
                    logits[t] += self.strength * weight::MOTIF;
                }
            }
        }
    }
}

/// ln(PHASE_BINS p) per bin, scaled by how well the primer fits a grid at all.
fn rhythm_bias(r: &Rhythm) -> [f32; PHASE_BINS] {
    let mut out = [0.0f32; PHASE_BINS];
    for (o, p) in out.iter_mut().zip(&r.profile) {
        *o = (weight::RHYTHM * r.grid_fit as f32 * (PHASE_BINS as f64 * p).ln() as f32).clamp(-MAX_PULL, MAX_PULL);
    }
    out
}

fn phase_bias_at(meter: &Meter, bias: &[f32; PHASE_BINS], t_s: f64) -> f32 {
    let x = meter.beat_phase(t_s) * PHASE_BINS as f64;
    let i = (x.floor() as usize) % PHASE_BINS;
    let f = (x - x.floor()) as f32;
    bias[i] * (1.0 - f) + bias[(i + 1) % PHASE_BINS] * f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::VOCAB_SIZE;
    use crate::performance::{Note, Performance};
    use crate::sampling::Key;

    /// A D minor phrase around D4-A4 in 8th notes at 120 BPM (4 notes/s).
    fn d_minor() -> (Performance, Meter) {
        let tune = [62, 65, 69, 67, 65, 64, 62, 61, 62, 65, 69, 74, 69, 65, 62, 62];
        let notes = tune
            .iter()
            .enumerate()
            .map(|(i, &p)| Note { pitch: p, velocity: 70, start_s: i as f64 * 0.25, end_s: i as f64 * 0.25 + 0.2 })
            .collect();
        (Performance::new(notes), Meter::new(120.0))
    }

    fn follower(steering: &Steering, strength: f32) -> Follower {
        let (p, m) = d_minor();
        let a = PrimerAnalysis::new(&p, Some(4.0), Some(&m)).expect("notes");
        Follower::new(&a, steering, Some(&m), strength).expect("strength > 0")
    }

    fn on(p: u8) -> usize {
        usize::from(Event::NoteOn(p).to_token())
    }

    #[test]
    fn pitch_classes_and_register_pull_without_banning() {
        let f = follower(&Steering::default(), 1.0);
        let mut l = vec![0.0f32; VOCAB_SIZE];
        f.apply(&mut l, &FollowState::default(), 400);
        assert!(l[on(62)] > l[on(63)], "D over Eb");
        assert!(l[on(65)] > l[on(66)], "F over F#");
        assert!(l[on(62)] > l[on(86)], "D4 over D6: the register");
        assert!(l[on(62)] > l[on(38)], "D4 over D2");
        assert!(l.iter().all(|v| v.is_finite()), "a pull never bans");
        // Half the strength, half the pull.
        let half = follower(&Steering::default(), 0.5);
        let mut h = vec![0.0f32; VOCAB_SIZE];
        half.apply(&mut h, &FollowState::default(), 400);
        assert!(((l[on(63)] - l[on(62)]) / 2.0 - (h[on(63)] - h[on(62)])).abs() < 1e-4);
    }

    #[test]
    fn explicit_settings_turn_their_pulls_off() {
        let steering = Steering {
            key: Some(Key::parse("D minor").expect("key")),
            lowest_pitch: 40,
            highest_pitch: 90,
            density_bias: 1.0,
            ..Default::default()
        };
        let f = follower(&steering, 1.0);
        assert!(f.pitch_class_bias.iter().all(|&b| b == 0.0));
        assert!(f.register.is_none() && f.target_rate.is_none());
        assert!(follower(&Steering::default(), 1.0).register.is_some());
        let (p, m) = d_minor();
        let a = PrimerAnalysis::new(&p, Some(4.0), Some(&m)).expect("notes");
        assert!(Follower::new(&a, &Steering::default(), Some(&m), 0.0).is_none(), "strength 0 is free");
    }

    #[test]
    fn density_answers_what_was_played() {
        let f = follower(&Steering::default(), 1.0);
        let pull = |onsets_per_s: u64| {
            let mut st = FollowState::default();
            let every = 100 / onsets_per_s;
            for i in 0..(4 * onsets_per_s) {
                st.observe(Event::NoteOn(62), 1000 + i * every);
            }
            let mut l = vec![0.0f32; VOCAB_SIZE];
            f.apply(&mut l, &st, 1400);
            l[on(62)] - f.pitch_class_bias[62]
        };
        // The primer plays 4 notes/s: busier playing is pulled down, sparser up.
        assert!(pull(20) < pull(4) && pull(4) < pull(1), "{} {} {}", pull(20), pull(4), pull(1));
    }

    #[test]
    fn time_shifts_to_the_grid_are_preferred() {
        let f = follower(&Steering::default(), 1.0);
        let mut l = vec![0.0f32; VOCAB_SIZE];
        // At 4.00 s: a shift of 25 steps lands on the next 8th, 13 steps between grid lines.
        f.apply(&mut l, &FollowState::default(), 400);
        let shift = |k: u8| l[usize::from(Event::TimeShift(k).to_token())];
        assert!(shift(25) > shift(13) + 1.0, "{} {}", shift(25), shift(13));
        assert!(shift(50) > shift(37));
        // Off the grid now, a note-on is less likely than on it.
        let mut off = vec![0.0f32; VOCAB_SIZE];
        f.apply(&mut off, &FollowState::default(), 413);
        assert!(off[on(62)] < l[on(62)]);
    }

    #[test]
    fn a_figure_of_the_primer_is_continued() {
        let f = follower(&Steering::default(), 1.0);
        let mut st = FollowState::default();
        // 62 65 69 67 is the primer's start; it went on to 65 (intervals +3 +4 -2 -2).
        for (i, p) in [62u8, 65, 69, 67].into_iter().enumerate() {
            st.observe(Event::NoteOn(p), 500 + 25 * i as u64);
        }
        let mut with = vec![0.0f32; VOCAB_SIZE];
        f.apply(&mut with, &st, 600);
        let mut without = vec![0.0f32; VOCAB_SIZE];
        f.pull_motifs(&mut without, &FollowState::default());
        assert!(without.iter().all(|&v| v == 0.0));
        let mut only = vec![0.0f32; VOCAB_SIZE];
        f.pull_motifs(&mut only, &st);
        assert_eq!(only[on(65)], weight::MOTIF);
        assert_eq!(only.iter().filter(|&&v| v != 0.0).count(), 1);
    }
}
