//! Following the primer: soft logit biases, never masks, that pull a
//! continuation towards what the musician played ([`PrimerAnalysis`]): its
//! pitch classes (the primer's own weighting of degrees, not only a scale),
//! its register, its note density, its loudness, its rhythmic grid and its
//! melodic figures. One strength scales them all, from 0 (free) to 1 (strict).
//!
//! Density, register, loudness, pitch classes and figure reuse are closed
//! loops: each pull answers what the continuation has played so far, so a
//! model that drifts is pulled back rather than pushed by a fixed amount,
//! and one that copies the primer is pushed away from copying. The pulls on
//! which note, which loudness and which time shift move probability within
//! their kind of event; only the density loop changes how likely a note is. Everything is precomputed per
//! request ([`Follower`]) or kept in fixed arrays per variation
//! ([`FollowState`]): a step allocates nothing.
//!
//! Explicit steering wins over the analysis: a key, a pitch range or a
//! density bias set by the musician turns off the matching pull.

use std::sync::Arc;

use crate::analysis::{Meter, PrimerAnalysis, Rhythm, MOTIF_INTERVALS, PHASE_BINS};
use crate::codec::{self, Event, NOTE_ON_OFFSET, NUM_VELOCITY_BINS, TIME_SHIFT_OFFSET, VELOCITY_OFFSET};
use crate::performance::{PIANO_HIGHEST, PIANO_LOWEST};
use crate::sampling::{log_sum_exp, Steering};

/// Nats of pull, per unit of strength, of each measure. Chosen with
/// `cargo xtask eval continuation` against the held-out pieces.
mod weight {
    /// Times ln(12 p(pc)): the primer's pitch-class weighting, always. Small:
    /// a stronger fixed pull sharpens the key beyond the primer's and the
    /// style classifier stops recognising jazz.
    pub const PITCH_CLASS: f32 = 0.1;
    /// Times 12 (target - recent share) of a pitch class: played too little
    /// lately, it is pulled up; too much, down. A loop, so it matches the
    /// primer's weighting rather than sharpening it. 0.4 since the jazz model
    /// trained on the capped corpus, more chromatic, kept the key less at 0.25.
    pub const PITCH_CLASS_LOOP: f32 = 0.4;
    /// Nats per spread of pitch, per spread of drift: the register's tilt
    /// back towards the primer's centre when recent notes have wandered off.
    pub const REGISTER: f32 = 1.5;
    /// Times ln(target rate / rate so far), on every note-on. Strong: the
    /// rhythm pull makes time move in larger steps, which this must make up.
    pub const DENSITY: f32 = 7.5;
    /// Times ln(PHASE_BINS p(phase)) of the rhythm profile, at full grid fit,
    /// on the time shift landing there.
    pub const RHYTHM: f32 = 6.0;
    /// Added to a note-on that completes one of the primer's figures (half for
    /// one on the way to a figure) while the continuation reuses well under
    /// [`super::MAX_REUSE`] of them; fading to 0 at it, and taken away above it.
    pub const MOTIF: f32 = 9.0;
    /// Nats per velocity bin of drift: the loudness tilt back towards the primer's.
    pub const VELOCITY: f32 = 0.3;
}

/// Most nats any single pull may add or take away: a bias, not a ban.
const MAX_PULL: f32 = 4.0;
/// Most nats the density loop may add or take away from every note-on.
const MAX_DENSITY_PULL: f32 = 6.0;
/// Most nats the rhythm pull may add to or take from one time shift: a
/// shift off the primer's grid is rare, yet possible (rubato, grace notes).
const MAX_RHYTHM_PULL: f32 = 8.0;
/// Share of the continuation's figures that may be the primer's before the
/// motif pull turns against copying: real continuations reuse about a
/// quarter, and much more than this is repeating the primer, not developing it.
pub const MAX_REUSE: f64 = 0.45;
/// Figures at a quarter reused counted into the continuation's, so its first ones do not swing the pull.
const REUSE_PRIOR: f64 = 8.0;
/// Seconds at the primer's density counted into the continuation's, so its first notes do not swing the pull.
const DENSITY_PRIOR_S: f64 = 2.0;
/// How quickly the recent register and loudness follow new notes (weight of each new one).
const RECENT_EMA: f64 = 0.08;
/// How quickly the recent pitch-class shares follow new notes (about the last 20).
const PITCH_CLASS_EMA: f32 = 0.05;
/// Beyond this many spreads from the primer's centre, a note is pulled back however the music drifts.
const REGISTER_GUARD_SPREADS: f64 = 2.5;

/// What one request follows, computed once from the primer and the steering.
#[derive(Debug, Clone)]
pub struct Follower {
    strength: f32,
    /// The pitch-class shares to keep, and their fixed pull per MIDI key;
    /// `None` when the key is steered explicitly.
    pitch_classes: Option<([f32; 12], [f32; 128])>,
    /// The register's centre and spread; `None` when a pitch range is set.
    register: Option<(f64, f64)>,
    /// Notes per second to keep; `None` when a density bias is set.
    target_rate: Option<f64>,
    /// The primer's mean velocity, in codec bins.
    velocity_bin: f64,
    /// The primer's tempo and where on its beat time shifts are pulled to land.
    rhythm: Option<RhythmPull>,
    /// The primer's figures, sorted.
    motifs: Arc<[[i8; MOTIF_INTERVALS]]>,
    /// How much of the primer's manner (its rhythmic feel, density, figures,
    /// dynamics) is followed, 0 to 1: 1 unless the style leads a foreign primer.
    manner: f32,
    /// The key's pulls times this when none of the manner is followed ([`Self::with_lead_key_gain`]).
    lead_key_gain: f32,
    /// The register's spread times this when none of the manner is followed ([`Self::with_lead_register_spread`]).
    lead_register_spread: f64,
}

/// The rhythm pull: ln(PHASE_BINS p) per phase bin of a beat, scaled by the
/// primer's grid fit.
#[derive(Debug, Clone)]
struct RhythmPull {
    meter: Meter,
    /// The primer's profile mixed with the beat's grid ([`rhythm_bias`]).
    primer: [f32; PHASE_BINS],
    /// The beat's grid alone, every line alike ([`lead_grid_bias`]).
    lead: [f32; PHASE_BINS],
    /// The two mixed by the manner followed: what time shifts are pulled with.
    bias: [f32; PHASE_BINS],
}

/// One variation's recent past, as the pulls need it.
#[derive(Debug, Clone, Default)]
pub struct FollowState {
    /// The primer's figures (shared with the [`Follower`]), to count reuse.
    motifs: Arc<[[i8; MOTIF_INTERVALS]]>,
    /// When the continuation began (the primer's end), and its onsets,
    /// figures and reused figures since.
    begin_steps: Option<u64>,
    onsets_since_begin: usize,
    figures_since_begin: usize,
    reused_since_begin: usize,
    /// The last [`MOTIF_INTERVALS`] + 1 pitches struck, oldest first.
    last_pitches: [u8; MOTIF_INTERVALS + 1],
    struck: usize,
    /// Exponential means of the pitches struck and of the velocity bins set.
    recent_pitch: Option<f64>,
    recent_velocity_bin: Option<f64>,
    /// Exponential mean of the pitch classes struck (one-hot per note).
    recent_pitch_classes: [f32; 12],
}

fn ema(mean: Option<f64>, x: f64) -> Option<f64> {
    Some(mean.map_or(x, |m| m + RECENT_EMA * (x - m)))
}

impl FollowState {
    /// The state of one variation following with `follower` (none: nothing to count).
    pub fn new(follower: Option<&Follower>) -> Self {
        Self { motifs: follower.map(|f| f.motifs.clone()).unwrap_or_default(), ..Self::default() }
    }

    /// The last `n` intervals struck (n <= [`MOTIF_INTERVALS`]), oldest first.
    fn last_intervals(&self) -> [i8; MOTIF_INTERVALS] {
        let p = &self.last_pitches;
        std::array::from_fn(|i| (i16::from(p[i + 1]) - i16::from(p[i])) as i8)
    }

    /// Take in one event at `now_steps` (before the decoder moves on).
    pub fn observe(&mut self, event: Event, now_steps: u64) {
        match event {
            Event::NoteOn(p) => {
                self.last_pitches.rotate_left(1);
                self.last_pitches[MOTIF_INTERVALS] = p;
                self.struck += 1;
                if self.begin_steps.is_some_and(|b| now_steps >= b) {
                    self.onsets_since_begin += 1;
                    if self.struck > MOTIF_INTERVALS {
                        self.figures_since_begin += 1;
                        if self.motifs.binary_search(&self.last_intervals()).is_ok() {
                            self.reused_since_begin += 1;
                        }
                    }
                }
                self.recent_pitch = ema(self.recent_pitch, f64::from(p));
                for (pc, share) in self.recent_pitch_classes.iter_mut().enumerate() {
                    let hit = if pc == usize::from(p % 12) { 1.0 } else { 0.0 };
                    *share += PITCH_CLASS_EMA * (hit - *share);
                }
            }
            Event::Velocity(bin) => self.recent_velocity_bin = ema(self.recent_velocity_bin, f64::from(bin)),
            _ => {}
        }
    }

    /// The primer has been heard: the continuation starts at `now_steps`.
    pub fn begin(&mut self, now_steps: u64) {
        self.begin_steps = Some(now_steps);
        self.onsets_since_begin = 0;
        self.figures_since_begin = 0;
        self.reused_since_begin = 0;
    }

    /// Share of the continuation's figures that are the primer's so far, with
    /// [`REUSE_PRIOR`] figures at a quarter reused mixed in.
    fn reuse(&self) -> f64 {
        (self.reused_since_begin as f64 + 0.25 * REUSE_PRIOR) / (self.figures_since_begin as f64 + REUSE_PRIOR)
    }

    /// Onsets per second of the continuation so far, with [`DENSITY_PRIOR_S`]
    /// at `prior_rate` mixed in.
    fn rate(&self, now_steps: u64, prior_rate: f64) -> f64 {
        let elapsed_s = codec::steps_to_seconds(now_steps.saturating_sub(self.begin_steps.unwrap_or(now_steps)));
        (self.onsets_since_begin as f64 + prior_rate * DENSITY_PRIOR_S) / (elapsed_s + DENSITY_PRIOR_S)
    }
}

/// Add `bias(i)` to the finite entries of `block`, then shift the block so its
/// total probability mass is what it was: the pulls say which note or which
/// shift, never whether there is one.
fn redistribute(block: &mut [f32], bias: impl Fn(usize) -> f32) {
    let Some(before) = log_sum_exp(block) else { return };
    for (i, l) in block.iter_mut().enumerate() {
        if l.is_finite() {
            *l += bias(i);
        }
    }
    if let Some(after) = log_sum_exp(block) {
        let shift = before - after;
        block.iter_mut().filter(|l| l.is_finite()).for_each(|l| *l += shift);
    }
}

impl Follower {
    /// The pulls of `analysis` at `strength` (0..=1), minus those `steering`
    /// sets explicitly. `None` when there is nothing to do (strength 0).
    pub fn new(analysis: &PrimerAnalysis, steering: &Steering, meter: Option<&Meter>, strength: f32) -> Option<Self> {
        if strength <= 0.0 {
            return None;
        }
        let pitch_classes = steering.key.is_none().then(|| {
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
            let target: [f32; 12] = std::array::from_fn(|pc| {
                (0.8 * analysis.pitch_classes[pc] + 0.15 * scale[pc] / scale_total + 0.05 / 12.0) as f32
            });
            let bias: [f32; 128] = std::array::from_fn(|pitch| {
                (weight::PITCH_CLASS * (12.0 * target[pitch % 12]).ln()).clamp(-MAX_PULL, MAX_PULL)
            });
            (target, bias)
        });
        let full_range = steering.lowest_pitch <= PIANO_LOWEST && steering.highest_pitch >= PIANO_HIGHEST;
        let register = full_range.then(|| (analysis.mean_pitch, analysis.pitch_sd.max(3.0)));
        let target_rate = (steering.density_bias == 0.0).then_some(analysis.notes_per_s);
        let velocity_bin = f64::from(codec::velocity_to_bin(analysis.mean_velocity.round().clamp(1.0, 127.0) as u8));
        let rhythm = match (meter, &analysis.rhythm) {
            (Some(m), Some(r)) if r.grid_fit > 0.0 => {
                let primer = rhythm_bias(r);
                Some(RhythmPull { meter: *m, primer, lead: lead_grid_bias(r.grid_fit), bias: primer })
            }
            _ => None,
        };
        Some(Self {
            strength: strength.clamp(0.0, 1.0),
            pitch_classes,
            register,
            target_rate,
            velocity_bin,
            rhythm,
            motifs: analysis.motifs.clone().into(),
            manner: 1.0,
            lead_key_gain: 1.0,
            lead_register_spread: 1.0,
        })
    }

    /// The same pulls with the primer's manner (rhythmic feel, density,
    /// figures, dynamics) followed only `manner` (0..=1) as strongly; its
    /// key, register, tempo and beat as before (the key held harder by
    /// [`Self::with_lead_key_gain`], the register's spread widened about the
    /// same centre by [`Self::with_lead_register_spread`]). The engine softens it for a
    /// foreign primer: how busy jazz plays is part of jazz, so a nursery
    /// tune's few notes per second must not hold it (with density kept, 80%
    /// of nursery primers were named in their style; without, 90%). The beat
    /// stays because the primer was played to the host's: what gives way is
    /// which of the beat's lines the primer used, so jazz may swing a
    /// nursery tune's straight 8ths (without the beat, jazz's and pop's
    /// onsets fell off the primer's grid more often than other music's do).
    pub fn with_manner(mut self, manner: f32) -> Self {
        self.manner = manner.clamp(0.0, 1.0);
        if let Some(r) = &mut self.rhythm {
            r.bias = std::array::from_fn(|i| self.manner * r.primer[i] + (1.0 - self.manner) * r.lead[i]);
        }
        self
    }

    /// The key's pulls times `gain` (at least 1) where none of the manner is followed, in
    /// proportion where some is ([`crate::sampling::LeadKeyAdvice`]): a led continuation's
    /// own voice reads it without the primer, so these pulls alone hold the key.
    pub fn with_lead_key_gain(mut self, gain: f32) -> Self {
        self.lead_key_gain = if gain.is_finite() { gain.max(1.0) } else { 1.0 };
        self
    }

    /// The register's spread times `spread` (at least 1) where none of the manner is followed, in
    /// proportion where some is ([`crate::sampling::LeadRegisterAdvice`]), about the same centre:
    /// a led style places its bass and chords as it does.
    pub fn with_lead_register_spread(mut self, spread: f32) -> Self {
        self.lead_register_spread = if spread.is_finite() { f64::from(spread).max(1.0) } else { 1.0 };
        self
    }

    /// Add the pulls to `logits` (already masked by [`Steering::apply`]) for
    /// a variation in `state` at decoder time `now_steps`.
    pub fn apply(&self, logits: &mut [f32], state: &FollowState, now_steps: u64) {
        let s = self.strength;
        let ons = usize::from(NOTE_ON_OFFSET)..usize::from(NOTE_ON_OFFSET) + 128;
        // Which note: pitch class, register and figure, without changing how likely a note is.
        let led = 1.0 - f64::from(self.manner);
        let register = self.register.map(|(centre, spread)| {
            let spread = spread * (1.0 + (self.lead_register_spread - 1.0) * led);
            let drift = state.recent_pitch.map_or(0.0, |r| ((r - centre) / spread).clamp(-2.0, 2.0));
            (centre, spread, drift)
        });
        let (motif_next, motif_count) = self.motif_continuations(state);
        let motif_next = &motif_next[..motif_count];
        // Well below the most reuse, figures are pulled in; above it, pushed away.
        let motif_pull =
            self.manner * weight::MOTIF * ((3.0 * (MAX_REUSE - state.reuse()) / MAX_REUSE).clamp(-1.0, 1.0) as f32);
        let heard: f32 = state.recent_pitch_classes.iter().sum();
        let key_gain = 1.0 + (self.lead_key_gain - 1.0) * (1.0 - self.manner);
        redistribute(&mut logits[ons.clone()], |pitch| {
            let mut b = 0.0;
            if let Some((target, fixed)) = &self.pitch_classes {
                let pc = pitch % 12;
                let recent = if heard > 0.0 { state.recent_pitch_classes[pc] / heard } else { target[pc] };
                b += key_gain * (fixed[pitch] + weight::PITCH_CLASS_LOOP * 12.0 * (target[pc] - recent));
            }
            if let Some((centre, spread, drift)) = register {
                let z = (pitch as f64 - centre) / spread;
                let guard = (z.abs() - REGISTER_GUARD_SPREADS).max(0.0);
                b -= (weight::REGISTER * (drift * z + guard) as f32).clamp(-MAX_PULL, MAX_PULL);
            }
            for &(m, full) in motif_next {
                if usize::from(m) == pitch {
                    b += if full { motif_pull } else { 0.5 * motif_pull };
                }
            }
            s * b
        });
        // Whether a note: the density the primer had. (Not also "not now, off
        // the grid": on top of the shifts' pull below, that starved jazz and pop of notes.)
        if let Some(target) = self.target_rate {
            let rate = state.rate(now_steps, target);
            let pull = (weight::DENSITY * (target.max(0.05) / rate.max(0.05)).ln() as f32)
                .clamp(-MAX_DENSITY_PULL, MAX_DENSITY_PULL);
            logits[ons].iter_mut().filter(|l| l.is_finite()).for_each(|l| *l += s * self.manner * pull);
        }
        // How loud: tilt back towards the primer's level when recent notes have drifted.
        if let Some(recent) = state.recent_velocity_bin.filter(|_| self.manner > 0.0) {
            let drift = (recent - self.velocity_bin).clamp(-8.0, 8.0);
            let vels = usize::from(VELOCITY_OFFSET)..usize::from(VELOCITY_OFFSET) + NUM_VELOCITY_BINS as usize;
            let s = s * self.manner;
            redistribute(&mut logits[vels], |bin| {
                -s * weight::VELOCITY * (drift * (bin as f64 - self.velocity_bin) / 4.0) as f32
            });
        }
        // When: shifts that land on the primer's grid.
        if let Some(r) = &self.rhythm {
            let shifts =
                usize::from(TIME_SHIFT_OFFSET)..usize::from(TIME_SHIFT_OFFSET) + codec::MAX_SHIFT_STEPS as usize;
            redistribute(&mut logits[shifts], |k| {
                let land_s = codec::steps_to_seconds(now_steps + k as u64 + 1);
                s * phase_bias_at(&r.meter, &r.bias, land_s)
            });
        }
    }

    /// Pitches whose note-on would make the last intervals one of the
    /// primer's figures (`true`), or its first three (`false`: on the way to
    /// one), and how many there are.
    fn motif_continuations(&self, state: &FollowState) -> ([(u8, bool); MAX_MOTIF_CONTINUATIONS], usize) {
        let mut out = [(0u8, false); MAX_MOTIF_CONTINUATIONS];
        let mut n = 0;
        if self.motifs.is_empty() || state.struck < MOTIF_INTERVALS {
            return (out, n);
        }
        let steps = state.last_intervals();
        let last = i16::from(state.last_pitches[MOTIF_INTERVALS]);
        for (known, full) in [(MOTIF_INTERVALS - 1, true), (MOTIF_INTERVALS - 2, false)] {
            let prefix = &steps[MOTIF_INTERVALS - known..];
            let start = self.motifs.partition_point(|m| &m[..known] < prefix);
            for m in self.motifs[start..].iter().take_while(|m| &m[..known] == prefix) {
                let next = last + i16::from(m[known]);
                if n < MAX_MOTIF_CONTINUATIONS
                    && (0..128).contains(&next)
                    && !out[..n].iter().any(|&(q, _)| i16::from(q) == next)
                {
                    out[n] = (next as u8, full);
                    n += 1;
                }
            }
        }
        (out, n)
    }
}

/// Most continuations of one figure prefix the motif pull considers.
const MAX_MOTIF_CONTINUATIONS: usize = 16;

/// Share of the rhythm pull's profile that is the beat's own grid
/// ([`metrical_grid`]) rather than the phases the primer happened to use: a
/// primer in quarter notes sets the tempo and the beat, not a ban on 8ths,
/// 16ths or a swing (its profile alone took about 15 nats from every 8th).
const METRICAL_SHARE: f64 = 0.5;

/// Where a beat's onsets may fall whatever the primer played, as a
/// probability per phase bin: the beat, then its 8th, its 16ths and its
/// triplets (which hold swung 8ths), each spread over a bin either side.
fn metrical_grid() -> [f64; PHASE_BINS] {
    beat_grid([4.0, 2.0, 1.0, 1.0])
}

/// The beat's grid lines weighted `[beat, 8th, each 16th, each triplet]`,
/// each spread over a bin either side, as a probability per phase bin.
fn beat_grid([beat, eighth, sixteenth, triplet]: [f64; 4]) -> [f64; PHASE_BINS] {
    let b = PHASE_BINS;
    let positions = [
        (0, beat),
        (b / 2, eighth),
        (b / 4, sixteenth),
        (3 * b / 4, sixteenth),
        (b / 3, triplet),
        (2 * b / 3, triplet),
    ];
    let mut g = [0.0; PHASE_BINS];
    for (centre, w) in positions {
        for (d, k) in [(0usize, 1.0), (1, 0.5), (b - 1, 0.5)] {
            g[(centre + d) % b] += w * k;
        }
    }
    let total: f64 = g.iter().sum();
    g.map(|x| x / total)
}

/// ln(PHASE_BINS p) per bin of the primer's profile mixed with the beat's
/// grid, scaled by how well the primer fits a grid at all.
fn rhythm_bias(r: &Rhythm) -> [f32; PHASE_BINS] {
    let grid = metrical_grid();
    let mut out = [0.0f32; PHASE_BINS];
    for ((o, p), g) in out.iter_mut().zip(&r.profile).zip(grid) {
        *o = phase_pull((1.0 - METRICAL_SHARE) * p + METRICAL_SHARE * g, r.grid_fit);
    }
    out
}

/// The pull on landing in a phase bin of probability `p`: ln(PHASE_BINS p)
/// nats of [`weight::RHYTHM`] at full grid fit, scaled by `grid_fit`.
fn phase_pull(p: f64, grid_fit: f64) -> f32 {
    (weight::RHYTHM * grid_fit as f32 * (PHASE_BINS as f64 * p).ln() as f32).clamp(-MAX_RHYTHM_PULL, MAX_RHYTHM_PULL)
}

/// Share of the lead's grid spread evenly over the beat: off the grid is
/// less likely, not rare. Chosen with `cargo xtask eval style --style-lead`
/// and `eval continuation --style-lead` (models/README.md): at 0.2 fewer
/// nursery continuations were named in their style (82.9% against 86.7% at
/// 0.6, three seeds each).
const LEAD_GRID_FLOOR: f64 = 0.6;

/// The rhythm pull of a style leading a foreign primer: the primer's tempo
/// and beat, every line of the beat alike (straight or swung, 8ths or 16ths
/// are the style's to choose), scaled like [`rhythm_bias`] by how well the
/// primer fits a grid.
fn lead_grid_bias(grid_fit: f64) -> [f32; PHASE_BINS] {
    beat_grid([1.0; 4]).map(|g| phase_pull((1.0 - LEAD_GRID_FLOOR) * g + LEAD_GRID_FLOOR / PHASE_BINS as f64, grid_fit))
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
        assert!(f.pitch_classes.is_none());
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
            st.begin(1000);
            let every = 100 / onsets_per_s;
            for i in 0..(4 * onsets_per_s) {
                st.observe(Event::NoteOn(62), 1000 + i * every);
            }
            let mut l = vec![0.0f32; VOCAB_SIZE];
            f.apply(&mut l, &st, 1400);
            l[on(62)]
        };
        // The primer plays 4 notes/s: busier playing is pulled down, sparser up.
        assert!(pull(20) < pull(4) && pull(4) < pull(1), "{} {} {}", pull(20), pull(4), pull(1));
    }

    /// Without the primer's manner, density and loudness pull no more, and
    /// the key, register and beat pull as before.
    #[test]
    fn a_follower_without_manner_keeps_key_register_and_beat_only() {
        let f = follower(&Steering::default(), 1.0);
        // Loud, and far busier than the primer's 4 notes per second.
        let mut state = FollowState { recent_velocity_bin: Some(30.0), ..FollowState::default() };
        state.begin(0);
        for i in 0..80 {
            state.observe(Event::NoteOn(62 + (i % 2) as u8), 5 * i);
        }
        let (mut full, mut keyed) = (vec![0.0f32; VOCAB_SIZE], vec![0.0f32; VOCAB_SIZE]);
        f.apply(&mut full, &state, 400);
        f.clone().with_manner(0.0).apply(&mut keyed, &state, 400);
        let shift = |l: &[f32], k: u8| l[usize::from(Event::TimeShift(k).to_token())];
        let vel = |l: &[f32], b: u8| l[usize::from(Event::Velocity(b).to_token())];
        // Note-ons as a block against the other events: what density moves.
        let ons = |l: &[f32]| {
            log_sum_exp(&l[usize::from(NOTE_ON_OFFSET)..usize::from(NOTE_ON_OFFSET) + 128])
                .expect("finite note-on logits")
        };
        assert!(shift(&full, 25) > shift(&full, 13) + 1.0 && vel(&full, 10) > vel(&full, 30) + 1.0);
        assert!(ons(&full) < ons(&keyed) - 0.5, "busy playing is pulled down only with manner");
        assert!(shift(&keyed, 25) > shift(&keyed, 13) + 1.0, "the beat's grid stays");
        assert_eq!((vel(&keyed, 10), vel(&keyed, 30)), (0.0, 0.0), "no loudness");
        assert!((ons(&keyed) - ons(&vec![0.0f32; VOCAB_SIZE])).abs() < 1e-4, "no density");
        let d_over_e_flat = |l: &[f32]| l[on(62)] - l[on(63)];
        assert!((d_over_e_flat(&keyed) - d_over_e_flat(&full)).abs() < 1e-4, "the key and register as before");
        // With a lead key gain the key holds harder where the style leads, and as before where it follows.
        let mut harder = vec![0.0f32; VOCAB_SIZE];
        f.clone().with_lead_key_gain(2.0).with_manner(0.0).apply(&mut harder, &state, 400);
        assert!(d_over_e_flat(&full) > 0.0 && d_over_e_flat(&harder) > d_over_e_flat(&keyed) + 0.1);
        let mut following = vec![0.0f32; VOCAB_SIZE];
        f.clone().with_lead_key_gain(2.0).apply(&mut following, &state, 400);
        assert!((d_over_e_flat(&following) - d_over_e_flat(&full)).abs() < 1e-4);
    }

    /// With a lead register spread, a led style may play further from the primer's centre, in
    /// proportion to the lead, and far from it is still held back; following, as before.
    #[test]
    fn a_led_follower_widens_the_register_about_the_same_centre() {
        let f = follower(&Steering::default(), 1.0).with_lead_register_spread(2.0);
        let mut state = FollowState::default();
        state.begin(0);
        // A D below the primer's D4 against D4 itself: the same pitch class, so only the register.
        let below = |manner: f32, pitch: u8| {
            let mut l = vec![0.0f32; VOCAB_SIZE];
            f.clone().with_manner(manner).apply(&mut l, &state, 400);
            l[on(pitch)] - l[on(62)]
        };
        let (followed, half, led) = (below(1.0, 50), below(0.5, 50), below(0.0, 50));
        assert!(followed < half - 0.5 && half <= led && led > -0.5, "an octave down: {followed} {half} {led}");
        assert!(below(0.0, 26) < -1.0, "three octaves down is still held back: {}", below(0.0, 26));
        let mut plain = vec![0.0f32; VOCAB_SIZE];
        follower(&Steering::default(), 1.0).apply(&mut plain, &state, 400);
        assert!((plain[on(50)] - plain[on(62)] - followed).abs() < 1e-6, "following, the spread is the primer's");
        let mut unled = vec![0.0f32; VOCAB_SIZE];
        follower(&Steering::default(), 1.0).with_manner(0.0).apply(&mut unled, &state, 400);
        assert!(unled[on(50)] - unled[on(62)] < led - 0.5, "without the advice, leading keeps the primer's spread");
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
        // Only the shifts move: a note now is as likely off the grid as on it
        // (penalising it too starved jazz and pop of notes).
        let mut off = vec![0.0f32; VOCAB_SIZE];
        f.apply(&mut off, &FollowState::default(), 413);
        assert!((off[on(62)] - l[on(62)]).abs() < 1e-5);
    }

    #[test]
    fn a_primer_in_quarter_notes_keeps_the_grid_not_its_note_values() {
        // A C major scale in quarter notes at 120 BPM: onsets on the beat only.
        let notes = (0..16)
            .map(|i| Note {
                pitch: 60 + [0, 2, 4, 5, 7, 9, 11, 12][i % 8],
                velocity: 70,
                start_s: i as f64 * 0.5,
                end_s: i as f64 * 0.5 + 0.45,
            })
            .collect();
        let m = Meter::new(120.0);
        let a = PrimerAnalysis::new(&Performance::new(notes), Some(8.0), Some(&m)).expect("notes");
        let f = Follower::new(&a, &Steering::default(), Some(&m), 1.0).expect("follows");
        let mut l = vec![0.0f32; VOCAB_SIZE];
        f.apply(&mut l, &FollowState::default(), 800);
        let shift = |k: u8| l[usize::from(Event::TimeShift(k).to_token())];
        // From a beat: 50 steps is the next beat, 25 its 8th, 17 a triplet (a swung
        // 8th's partner), 19 on no grid line.
        assert!(shift(50) - shift(25) < 4.0, "an 8th stays playable: {} {}", shift(50), shift(25));
        assert!(shift(25) > shift(19) + 4.0, "off the grid stays unlikely: {} {}", shift(25), shift(19));
        assert!(shift(17) > shift(19) + 2.0, "a triplet is on a grid: {} {}", shift(17), shift(19));
    }

    /// A style leading a primer in straight 8ths keeps its beat but may
    /// swing: the triplet line is pulled like the 8th, which the primer's
    /// own profile prefers.
    #[test]
    fn a_follower_without_manner_keeps_the_beat_not_its_feel() {
        let f = follower(&Steering::default(), 1.0);
        let bias = |f: &Follower, k: u8| {
            let mut l = vec![0.0f32; VOCAB_SIZE];
            // At 4.00 s, on a beat: 25 steps is the 8th, 33 the swung 8th
            // (the second triplet), 40 on no line of the beat.
            f.apply(&mut l, &FollowState::default(), 400);
            l[usize::from(Event::TimeShift(k).to_token())]
        };
        let led = f.clone().with_manner(0.0);
        // 33 steps is a third of a bin short of the triplet's line: a little less pull.
        let swing_cost = |f: &Follower| bias(f, 25) - bias(f, 33);
        assert!(swing_cost(&led) < 1.0, "any line: {}", swing_cost(&led));
        assert!(swing_cost(&f) > swing_cost(&led) + 1.0, "the primer's feel: {}", swing_cost(&f));
        assert!(bias(&led, 33) > bias(&led, 40) + 1.0, "off the beat's lines: {} {}", bias(&led, 33), bias(&led, 40));
        // Half the manner, half of each.
        let half = f.clone().with_manner(0.5);
        assert!((swing_cost(&half) - 0.5 * (swing_cost(&f) + swing_cost(&led))).abs() < 1e-4);
    }

    #[test]
    fn a_figure_of_the_primer_is_continued_until_it_is_copied() {
        let (p, m) = d_minor();
        let a = PrimerAnalysis::new(&p, Some(4.0), Some(&m)).expect("notes");
        let f = Follower::new(&a, &Steering::default(), Some(&m), 1.0).expect("follows");
        let mut st = FollowState::new(Some(&f));
        st.begin(400);
        assert_eq!(f.motif_continuations(&st).1, 0, "no figure yet");
        // Something else first: no figure of the primer's reused so far.
        for (i, p) in [48u8, 49, 50, 51, 52, 53].into_iter().enumerate() {
            st.observe(Event::NoteOn(p), 400 + 10 * i as u64);
        }
        // 62 65 69 67 is the primer's start; it went on to 65 (intervals +3 +4 -2 -2).
        for (i, p) in [62u8, 65, 69, 67].into_iter().enumerate() {
            st.observe(Event::NoteOn(p), 500 + 25 * i as u64);
        }
        let (next, n) = f.motif_continuations(&st);
        assert!(next[..n].contains(&(65, true)), "{:?}", &next[..n]);
        let pull = |st: &FollowState| {
            let mut l = vec![0.0f32; VOCAB_SIZE];
            f.apply(&mut l, st, 600);
            l[on(65)] - l[on(64)]
        };
        let mut other = FollowState::new(Some(&f));
        other.begin(400);
        for (i, p) in [48u8, 49, 50, 51, 52, 53, 67, 69, 65, 62].into_iter().enumerate() {
            other.observe(Event::NoteOn(p), 500 + 25 * i as u64);
        }
        // Other notes before: only the figure's continuation differs (E and F are both near).
        assert!(pull(&st) > pull(&other) + 1.0, "{} {}", pull(&st), pull(&other));
        // A continuation that has copied the primer note for note is pushed away from more of it.
        let mut copier = FollowState::new(Some(&f));
        copier.begin(0);
        let tune = [62u8, 65, 69, 67, 65, 64, 62, 61, 62, 65, 69, 74, 69, 65, 62, 62];
        for (i, p) in tune.iter().chain(&tune[..4]).enumerate() {
            copier.observe(Event::NoteOn(*p), 25 * i as u64);
        }
        assert!(copier.reuse() > 0.5, "{}", copier.reuse());
        assert!(pull(&copier) < pull(&other), "{} {}", pull(&copier), pull(&other));
    }

    #[test]
    fn pulls_move_the_mass_within_a_block_not_between_blocks() {
        let f = follower(&Steering { density_bias: 0.5, ..Default::default() }, 1.0);
        let mut l: Vec<f32> = (0..VOCAB_SIZE).map(|i| ((i * 7) % 5) as f32 * 0.3).collect();
        let mass =
            |l: &[f32], from: u16, n: usize| log_sum_exp(&l[usize::from(from)..usize::from(from) + n]).expect("finite");
        let shifts_before = mass(&l, TIME_SHIFT_OFFSET, 100);
        let ons_before = mass(&l, NOTE_ON_OFFSET, 128);
        let mut st = FollowState::default();
        st.observe(Event::Velocity(30), 0);
        // On the grid now, with no density target: only redistribution.
        f.apply(&mut l, &st, 400);
        assert!((mass(&l, TIME_SHIFT_OFFSET, 100) - shifts_before).abs() < 1e-4);
        assert!((mass(&l, NOTE_ON_OFFSET, 128) - ons_before).abs() < 1e-4);
    }
}
