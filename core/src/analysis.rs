//! What a primer is, measured once: key and mode (Krumhansl-Kessler key
//! profiles over duration-weighted pitch classes), register, note density,
//! velocity, polyphony, melodic figures and, when the tempo is known, its
//! rhythmic grid and where it sits in the bar. Following the primer
//! ([`crate::follow`]) steers towards these; the continuation eval scores
//! against the same measures (`shared/continuation-metrics.md`), so the two
//! cannot drift apart.

use serde::{Deserialize, Serialize};

use crate::performance::{note_name, Note, Performance};
use crate::sampling::{Key, ScaleMode};

/// A note's weight in a pitch-class histogram is its duration, capped here:
/// one held pedal note must not outweigh a melody.
pub const MAX_NOTE_WEIGHT_S: f64 = 2.0;
/// An onset within this of a grid line is on the beat.
pub const ON_GRID_TOLERANCE_S: f64 = 0.020;
/// Grid lines per quarter-note beat the "on the beat" measure uses (16th notes).
pub const GRID_PER_BEAT: u32 = 4;
/// Bins of one beat in a [`Rhythm`] profile: 48 holds 16ths (every 12th bin),
/// 8th triplets (every 16th) and 16th triplets (every 8th) exactly.
pub const PHASE_BINS: usize = 48;
/// Consecutive melodic intervals that make one figure (a motif).
pub const MOTIF_INTERVALS: usize = 4;

/// Krumhansl-Kessler probe-tone ratings, tonic first.
pub const KK_MAJOR: [f64; 12] = [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88];
pub const KK_MINOR: [f64; 12] = [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17];

/// The 12-bin pitch-class histogram, each note weighted by its duration
/// capped at [`MAX_NOTE_WEIGHT_S`]. Not normalised.
pub fn pitch_class_histogram(notes: &[Note]) -> [f64; 12] {
    let mut h = [0.0; 12];
    for n in notes {
        h[usize::from(n.pitch % 12)] += n.duration_s().clamp(0.0, MAX_NOTE_WEIGHT_S);
    }
    h
}

/// Pearson correlation; 0 when either side is constant (nothing to correlate).
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    let mean = |x: &[f64]| x[..n].iter().sum::<f64>() / n as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (da, db) = (a[i] - ma, b[i] - mb);
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    if saa <= 1e-12 || sbb <= 1e-12 {
        return 0.0;
    }
    sab / (saa * sbb).sqrt()
}

/// The best of the 24 major and minor keys for a pitch-class histogram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KeyEstimate {
    /// Major or (natural) minor.
    pub key: Key,
    /// Correlation of the histogram with the key's profile, -1..=1.
    pub correlation: f64,
    /// How far the best key is ahead of the runner-up (correlation units):
    /// near 0 the music is ambiguous between two keys.
    pub margin: f64,
}

impl KeyEstimate {
    /// Whether pitch class `pc` is in the key's scale as the continuation
    /// metrics count it: major, 7 degrees; minor, natural minor plus the raised 7th.
    pub fn scale_contains(&self, pc: u8) -> bool {
        let degree = (pc % 12 + 12 - self.key.tonic % 12) % 12;
        self.key.mode.intervals().contains(&degree) || (self.key.mode == ScaleMode::Minor && degree == 11)
    }

    /// 0 for an ambiguous key to 1 for a clear one (the margin, scaled).
    pub fn confidence(&self) -> f64 {
        (self.margin / 0.2).clamp(0.0, 1.0) * self.correlation.clamp(0.0, 1.0)
    }
}

/// The key whose Krumhansl-Kessler profile correlates best with `hist`;
/// `None` for a histogram with nothing in it (or all twelve equal).
pub fn estimate_key(hist: &[f64; 12]) -> Option<KeyEstimate> {
    let mut scores: Vec<(f64, Key)> = Vec::with_capacity(24);
    for (mode, profile) in [(ScaleMode::Major, &KK_MAJOR), (ScaleMode::Minor, &KK_MINOR)] {
        for tonic in 0..12u8 {
            let rotated: Vec<f64> = (0..12).map(|pc| profile[(pc + 12 - usize::from(tonic)) % 12]).collect();
            scores.push((pearson(hist, &rotated), Key { tonic, mode }));
        }
    }
    if hist.iter().all(|&v| (v - hist[0]).abs() < 1e-12) {
        return None;
    }
    // Highest first; ties in a fixed order (major before minor, C upwards) so the answer is stable.
    scores.sort_by(|a, b| b.0.total_cmp(&a.0));
    Some(KeyEstimate { key: scores[0].1, correlation: scores[0].0, margin: scores[0].0 - scores[1].0 })
}

/// A tempo and where its bars lie on the primer's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meter {
    /// Quarter-note beats per minute.
    pub tempo_bpm: f64,
    /// A bar line, in seconds on the primer's timeline (0 for a primer that
    /// starts on one; negative for a primer that starts after one).
    pub bar_start_s: f64,
    /// Quarter-note beats in a bar (4 in 4/4, 3 in 6/8).
    pub bar_len_beats: f64,
}

impl Meter {
    pub fn new(tempo_bpm: f64) -> Self {
        Self { tempo_bpm, bar_start_s: 0.0, bar_len_beats: 4.0 }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.tempo_bpm.is_finite() && (10.0..=1000.0).contains(&self.tempo_bpm)) {
            return Err(format!("tempo {} BPM is outside 10..=1000", self.tempo_bpm));
        }
        if !(self.bar_len_beats.is_finite() && self.bar_len_beats > 0.0 && self.bar_start_s.is_finite()) {
            return Err(format!(
                "a bar of {} beats starting at {} s is not a metre",
                self.bar_len_beats, self.bar_start_s
            ));
        }
        Ok(())
    }

    pub fn beat_s(&self) -> f64 {
        60.0 / self.tempo_bpm
    }

    /// Position of `t_s` within its beat, 0..1.
    pub fn beat_phase(&self, t_s: f64) -> f64 {
        ((t_s - self.bar_start_s) / self.beat_s()).rem_euclid(1.0)
    }

    /// Beats from the last bar line to `t_s`.
    pub fn beats_into_bar(&self, t_s: f64) -> f64 {
        ((t_s - self.bar_start_s) / self.beat_s()).rem_euclid(self.bar_len_beats)
    }

    /// Distance in seconds from `t_s` to the nearest line of the 16th-note grid.
    pub fn grid_distance_s(&self, t_s: f64) -> f64 {
        self.distance_to_grid_s(t_s, GRID_PER_BEAT)
    }

    fn distance_to_grid_s(&self, t_s: f64, per_beat: u32) -> f64 {
        let grid_s = self.beat_s() / f64::from(per_beat);
        let x = (t_s - self.bar_start_s).rem_euclid(grid_s);
        x.min(grid_s - x)
    }

    /// Share of `onsets_s` within [`ON_GRID_TOLERANCE_S`] of the 16th grid (0 for none).
    pub fn on_grid_share(&self, onsets_s: impl IntoIterator<Item = f64>) -> f64 {
        self.share_on(onsets_s, GRID_PER_BEAT)
    }

    /// Share of `onsets_s` within [`ON_GRID_TOLERANCE_S`] of the 16th grid or of the 8th-note
    /// triplets (which hold swung 8ths): in time with the beat, straight or swung.
    pub fn in_time_share(&self, onsets_s: impl IntoIterator<Item = f64>) -> f64 {
        self.share_on_any(onsets_s, &[GRID_PER_BEAT, 3])
    }

    fn share_on(&self, onsets_s: impl IntoIterator<Item = f64>, per_beat: u32) -> f64 {
        self.share_on_any(onsets_s, &[per_beat])
    }

    fn share_on_any(&self, onsets_s: impl IntoIterator<Item = f64>, grids_per_beat: &[u32]) -> f64 {
        let (mut on, mut all) = (0usize, 0usize);
        for t in onsets_s {
            all += 1;
            if grids_per_beat.iter().any(|&g| self.distance_to_grid_s(t, g) <= ON_GRID_TOLERANCE_S + 1e-9) {
                on += 1;
            }
        }
        if all == 0 {
            0.0
        } else {
            on as f64 / all as f64
        }
    }

    /// The share of the 16th grid's period an onset at a random time falls
    /// within tolerance of: what music that ignores the grid scores.
    pub fn chance_on_grid(&self) -> f64 {
        self.chance_on(GRID_PER_BEAT)
    }

    fn chance_on(&self, per_beat: u32) -> f64 {
        (2.0 * ON_GRID_TOLERANCE_S / (self.beat_s() / f64::from(per_beat))).min(1.0)
    }

    /// How much more on a grid of this tempo `onsets_s` are than chance, 0..=1:
    /// the better of straight 16ths and 8th-note triplets (which hold swing).
    pub fn grid_fit(&self, onsets_s: &[f64]) -> f64 {
        [GRID_PER_BEAT, 3]
            .iter()
            .map(|&per_beat| {
                let chance = self.chance_on(per_beat);
                if chance >= 1.0 {
                    return 0.0;
                }
                ((self.share_on(onsets_s.iter().copied(), per_beat) - chance) / (1.0 - chance)).clamp(0.0, 1.0)
            })
            .fold(0.0, f64::max)
    }
}

/// Where in the beat a primer's onsets fall: a smoothed histogram over
/// [`PHASE_BINS`] bins of one beat. Straight 16ths, swung 8ths and triplets
/// each leave their own shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rhythm {
    /// Probability of an onset per phase bin (sums to 1), smoothed by the
    /// grid tolerance and shrunk towards uniform by how few onsets there were.
    pub profile: Vec<f64>,
    /// Share of the primer's onsets on the 16th grid.
    pub on_grid: f64,
    /// How much more on a grid of the tempo (straight or swung) the primer is
    /// than chance, 0..=1: 0 for rubato (or a tempo that does not describe the
    /// music), 1 for strict ([`Meter::grid_fit`]).
    pub grid_fit: f64,
}

impl Rhythm {
    /// Pseudo-onsets spread evenly over the beat, so a short primer gives a soft profile.
    const PRIOR_ONSETS: f64 = 6.0;

    fn new(onsets_s: &[f64], meter: &Meter) -> Self {
        let mut counts = vec![0.0; PHASE_BINS];
        // Spread each onset over the bins within the grid tolerance (a triangle kernel).
        let width_bins = (ON_GRID_TOLERANCE_S / meter.beat_s() * PHASE_BINS as f64).max(0.5);
        for &t in onsets_s {
            let x = meter.beat_phase(t) * PHASE_BINS as f64;
            let mut weights = [0.0; PHASE_BINS];
            let mut total = 0.0;
            for (b, w) in weights.iter_mut().enumerate() {
                let d = (b as f64 - x).rem_euclid(PHASE_BINS as f64);
                let d = d.min(PHASE_BINS as f64 - d);
                *w = (1.0 - d / (width_bins + 0.5)).max(0.0);
                total += *w;
            }
            for (c, w) in counts.iter_mut().zip(weights) {
                *c += w / total;
            }
        }
        let n = onsets_s.len() as f64;
        let uniform = 1.0 / PHASE_BINS as f64;
        let profile = counts.iter().map(|c| (c + Self::PRIOR_ONSETS * uniform) / (n + Self::PRIOR_ONSETS)).collect();
        Self { profile, on_grid: meter.on_grid_share(onsets_s.iter().copied()), grid_fit: meter.grid_fit(onsets_s) }
    }

    /// The profile's probability at `phase` (0..1 of a beat), linearly interpolated.
    pub fn at(&self, phase: f64) -> f64 {
        let x = phase.rem_euclid(1.0) * PHASE_BINS as f64;
        let i = (x.floor() as usize) % PHASE_BINS;
        let f = x - x.floor();
        self.profile[i] * (1.0 - f) + self.profile[(i + 1) % PHASE_BINS] * f
    }
}

/// The melodic intervals of `notes` in onset order, then pitch (chords read
/// upwards), in semitones.
pub fn intervals(notes: &[Note]) -> Vec<i8> {
    let mut order: Vec<&Note> = notes.iter().collect();
    order.sort_by(|a, b| a.start_s.total_cmp(&b.start_s).then(a.pitch.cmp(&b.pitch)));
    order.windows(2).map(|w| (i16::from(w[1].pitch) - i16::from(w[0].pitch)) as i8).collect()
}

/// Every run of [`MOTIF_INTERVALS`] consecutive intervals, sorted, without repeats.
pub fn motifs(notes: &[Note]) -> Vec<[i8; MOTIF_INTERVALS]> {
    let mut grams: Vec<[i8; MOTIF_INTERVALS]> = intervals(notes)
        .windows(MOTIF_INTERVALS)
        .map(|w| {
            let mut g = [0i8; MOTIF_INTERVALS];
            g.copy_from_slice(w);
            g
        })
        .collect();
    grams.sort_unstable();
    grams.dedup();
    grams
}

/// What the musician played, in the numbers the follow steering and the
/// continuation eval use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrimerAnalysis {
    pub notes: usize,
    /// From the first onset to the primer's end, in seconds.
    pub span_s: f64,
    /// Duration-weighted pitch classes, summing to 1.
    pub pitch_classes: [f64; 12],
    pub key: Option<KeyEstimate>,
    /// Mean MIDI pitch of the notes (each note once).
    pub mean_pitch: f64,
    /// Standard deviation of the pitches, in semitones.
    pub pitch_sd: f64,
    /// Lowest and highest pitch played.
    pub lowest: u8,
    pub highest: u8,
    /// Onsets per second over the span.
    pub notes_per_s: f64,
    /// Mean and standard deviation of the MIDI velocities.
    pub mean_velocity: f64,
    pub velocity_sd: f64,
    /// Mean number of notes sounding at an onset, the onset's own note included.
    pub polyphony: f64,
    /// Figures of [`MOTIF_INTERVALS`] intervals the primer plays (see [`motifs`]).
    pub motifs: Vec<[i8; MOTIF_INTERVALS]>,
    /// With a known metre: the primer's rhythmic grid.
    pub rhythm: Option<Rhythm>,
    /// With a known metre: beats from the last bar line to the primer's end.
    pub end_beats_into_bar: Option<f64>,
}

impl PrimerAnalysis {
    /// Analyse `primer`, which ends at `end_s` (its last release when `None`),
    /// with its metre when known. `None` for a primer without notes.
    pub fn new(primer: &Performance, end_s: Option<f64>, meter: Option<&Meter>) -> Option<Self> {
        let notes = &primer.notes;
        let first = notes.first()?.start_s;
        let end =
            end_s.unwrap_or_else(|| primer.duration_s()).max(notes.iter().map(|n| n.start_s).fold(first, f64::max));
        // A single onset still has a span: at least one 10 ms step.
        let span_s = (end - first).max(0.01);
        let hist = pitch_class_histogram(notes);
        let total: f64 = hist.iter().sum();
        let pitch_classes = if total > 0.0 { hist.map(|v| v / total) } else { [1.0 / 12.0; 12] };
        let count = notes.len() as f64;
        let mean = |f: &dyn Fn(&Note) -> f64| notes.iter().map(f).sum::<f64>() / count;
        let mean_pitch = mean(&|n| f64::from(n.pitch));
        let pitch_sd = mean(&|n| (f64::from(n.pitch) - mean_pitch).powi(2)).sqrt();
        let mean_velocity = mean(&|n| f64::from(n.velocity));
        let velocity_sd = mean(&|n| (f64::from(n.velocity) - mean_velocity).powi(2)).sqrt();
        let polyphony =
            mean(&|n| notes.iter().filter(|o| o.start_s <= n.start_s && o.end_s > n.start_s).count() as f64);
        let onsets: Vec<f64> = notes.iter().map(|n| n.start_s).collect();
        Some(Self {
            notes: notes.len(),
            span_s,
            pitch_classes,
            key: estimate_key(&hist),
            mean_pitch,
            pitch_sd,
            lowest: notes.iter().map(|n| n.pitch).min().unwrap_or(0),
            highest: notes.iter().map(|n| n.pitch).max().unwrap_or(0),
            notes_per_s: count / span_s,
            mean_velocity,
            velocity_sd,
            polyphony,
            motifs: motifs(notes),
            rhythm: meter.map(|m| Rhythm::new(&onsets, m)),
            end_beats_into_bar: meter.map(|m| m.beats_into_bar(end)),
        })
    }

    /// One line for a status display: "D minor, C3-C5, 6.0 notes/s".
    pub fn summary(&self) -> String {
        let key = match self.key {
            Some(k) if k.confidence() > 0.05 => k.key.name(),
            _ => "no clear key".into(),
        };
        format!("{key}, {}-{}, {:.1} notes/s", note_name(self.lowest), note_name(self.highest), self.notes_per_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(pitch: u8, start_s: f64, dur_s: f64) -> Note {
        Note { pitch, velocity: 80, start_s, end_s: start_s + dur_s }
    }

    /// A scale played up and down at 0.25 s a note, tonic held at both ends.
    fn scale(tonic: u8, steps: &[u8]) -> Performance {
        let mut notes = vec![note(tonic, 0.0, 1.0)];
        let mut t = 1.0;
        for &s in steps.iter().chain(steps.iter().rev()) {
            notes.push(note(tonic + s, t, 0.25));
            t += 0.25;
        }
        notes.push(note(tonic, t, 1.0));
        // The tonic triad, as a closing chord.
        for s in [0, steps[2], 7] {
            notes.push(note(tonic + s, t + 1.0, 1.0));
        }
        Performance::new(notes)
    }

    #[test]
    fn keys_of_scales_and_triads_are_found() {
        let major = [0, 2, 4, 5, 7, 9, 11, 12];
        let minor = [0, 2, 3, 5, 7, 8, 11, 12];
        for tonic in 60..72u8 {
            let a = PrimerAnalysis::new(&scale(tonic, &major), None, None).expect("notes");
            let k = a.key.expect("key");
            assert_eq!(k.key, Key { tonic: tonic % 12, mode: ScaleMode::Major }, "{}", k.key.name());
            assert!(k.correlation > 0.7 && k.margin > 0.0, "{k:?}");
            let a = PrimerAnalysis::new(&scale(tonic - 12, &minor), None, None).expect("notes");
            let k = a.key.expect("key");
            assert_eq!(k.key, Key { tonic: tonic % 12, mode: ScaleMode::Minor }, "{}", k.key.name());
        }
    }

    #[test]
    fn twinkle_is_in_c_major_with_its_range_and_density() {
        // "Twinkle, twinkle": C C G G A A G, F F E E D D C at 0.5 s a note.
        let tune = [60, 60, 67, 67, 69, 69, 67, 65, 65, 64, 64, 62, 62, 60];
        let notes: Vec<Note> = tune.iter().enumerate().map(|(i, &p)| note(p, i as f64 * 0.5, 0.45)).collect();
        let a = PrimerAnalysis::new(&Performance::new(notes), Some(7.0), Some(&Meter::new(120.0))).expect("notes");
        assert_eq!(a.key.expect("key").key.name(), "C major");
        assert_eq!((a.lowest, a.highest), (60, 69));
        assert!((a.notes_per_s - 2.0).abs() < 1e-9, "{}", a.notes_per_s);
        assert!((a.polyphony - 1.0).abs() < 1e-9);
        let r = a.rhythm.clone().expect("metre known");
        assert_eq!(r.on_grid, 1.0);
        assert!(r.grid_fit > 0.9, "{}", r.grid_fit);
        // Every onset is on a beat: the profile peaks at phase 0.
        assert!(r.at(0.0) > 10.0 * r.at(0.5), "{:?}", r.profile);
        assert_eq!(a.end_beats_into_bar, Some(2.0));
        assert_eq!(a.summary(), "C major, C4-A4, 2.0 notes/s");
        // C C G G A: intervals 0 +7 0 +2 ... the first figure is [0, 7, 0, 2].
        assert!(a.motifs.contains(&[0, 7, 0, 2]));
    }

    #[test]
    fn swing_and_rubato_leave_their_marks_on_the_rhythm() {
        let m = Meter::new(100.0);
        let beat = m.beat_s();
        // Swung 8ths: the off-beat at two thirds of the beat.
        let swung: Vec<f64> = (0..16).flat_map(|b| [b as f64 * beat, (b as f64 + 2.0 / 3.0) * beat]).collect();
        let r = Rhythm::new(&swung, &m);
        assert!(r.at(2.0 / 3.0) > 5.0 * r.at(0.5), "the swung off-beat, not the straight one");
        assert!(r.grid_fit > 0.9 && r.on_grid < 0.6, "swing fits the triplet grid, not the 16ths: {r:?}");
        // Onsets that ignore the grid: a golden-ratio walk through the beat.
        let rubato: Vec<f64> = (0..40).map(|i| (i as f64 * 0.618_034).fract() * beat + i as f64 * beat).collect();
        let r = Rhythm::new(&rubato, &m);
        assert!(r.grid_fit < 0.25, "{}", r.grid_fit);
        let max = r.profile.iter().copied().fold(0.0, f64::max);
        assert!(max < 2.5 / PHASE_BINS as f64, "a flat profile: {max}");
    }

    #[test]
    fn grid_distance_and_chance() {
        let m = Meter { tempo_bpm: 120.0, bar_start_s: 0.01, bar_len_beats: 4.0 };
        // 16ths of 125 ms from 10 ms.
        assert!((m.grid_distance_s(0.135) - 0.0).abs() < 1e-12);
        assert!((m.grid_distance_s(0.2) - 0.06).abs() < 1e-12);
        assert!((m.chance_on_grid() - 0.32).abs() < 1e-12);
        assert_eq!(m.on_grid_share([0.01, 0.135, 0.2, 0.25]), 0.75);
        // Triplets of 167 ms from 10 ms: swung, off the 16ths, in time.
        let swung = [0.01, 0.177, 0.343, 0.51];
        assert_eq!(m.on_grid_share(swung), 0.5);
        assert_eq!(m.in_time_share(swung), 1.0);
        assert_eq!(m.in_time_share([0.07]), 0.0);
        assert!(Meter { tempo_bpm: 0.0, ..m }.validate().is_err());
    }

    #[test]
    fn the_metric_minor_scale_has_the_raised_seventh() {
        let k = KeyEstimate { key: Key { tonic: 9, mode: ScaleMode::Minor }, correlation: 0.9, margin: 0.1 };
        assert!(k.scale_contains(7) && k.scale_contains(8), "G and G# both count in A minor");
        assert!(!k.scale_contains(10));
    }

    #[test]
    fn a_primer_without_notes_has_no_analysis() {
        assert!(PrimerAnalysis::new(&Performance::default(), Some(4.0), None).is_none());
        assert!(estimate_key(&[0.0; 12]).is_none());
        assert_eq!(pearson(&[1.0, 1.0], &[1.0, 2.0]), 0.0);
    }
}
