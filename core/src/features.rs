//! Style features of a performance: what a listener notices first about a
//! style (which scale degrees and intervals, how dense and how chordal, how
//! even the rhythm, how loud and how varied), as a fixed-length vector for the
//! style classifier and as named statistics for the real-vs-generated report.

use crate::analysis::estimate_key;
use crate::sampling::ScaleMode;
use crate::Performance;

/// Onsets closer than this form one chord or attack.
const ONSET_GROUP_S: f64 = 0.03;
const MAJOR_SCALE: [usize; 7] = [0, 2, 4, 5, 7, 9, 11];
const NATURAL_MINOR: [usize; 7] = [0, 2, 3, 5, 7, 8, 10];
/// Upper edges of the inter-onset-interval bins, in seconds.
const IOI_EDGES_S: [f64; 6] = [0.1, 0.2, 0.3, 0.5, 0.8, 1.2];

/// Named summary statistics, comparable between real and generated music.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Notes per second of music.
    pub note_density: f64,
    /// Mean number of notes sounding, over the time any note sounds.
    pub polyphony: f64,
    /// Share of 4-grams of onset pitch sets that already occurred earlier in the piece.
    pub repetition: f64,
    /// Share of notes inside the best-fitting major or natural-minor scale.
    pub scale_use: f64,
    /// Mean MIDI pitch.
    pub register: f64,
    /// Standard deviation of MIDI pitch.
    pub pitch_spread: f64,
    /// Share of attacks that are chords of three or more notes.
    pub chord_share: f64,
    /// Standard deviation of velocity.
    pub velocity_spread: f64,
}

impl Stats {
    pub const NAMES: [&'static str; 8] = [
        "note_density",
        "polyphony",
        "repetition",
        "scale_use",
        "register",
        "pitch_spread",
        "chord_share",
        "velocity_spread",
    ];

    pub fn values(&self) -> [f64; 8] {
        [
            self.note_density,
            self.polyphony,
            self.repetition,
            self.scale_use,
            self.register,
            self.pitch_spread,
            self.chord_share,
            self.velocity_spread,
        ]
    }
}

/// Length of [`features`].
pub const NUM_FEATURES: usize = 12 + 2 + 14 + 7 + 1 + 8 + 2 + 3 + 2 + 4;

/// What each of [`features`] measures, in its order (for reports that say why a piece was named
/// what it was).
pub fn feature_names() -> Vec<String> {
    const DEGREES: [&str; 12] = ["1", "♭2", "2", "♭3", "3", "4", "♯4", "5", "♭6", "6", "♭7", "7"];
    let mut names: Vec<String> = DEGREES.iter().map(|d| format!("scale degree {d}")).collect();
    names.extend(["minor key".into(), "key fit".into()]);
    names.extend((0..13).map(|i| format!("top-voice step of {i} semitones")));
    names.push("top-voice leap over an octave".into());
    let mut low = 0.0;
    for e in IOI_EDGES_S {
        names.push(format!("onset gaps {low}-{e} s"));
        low = e;
    }
    names.push(format!("onset gaps over {low} s"));
    names.push("swung pairs".into());
    names.extend(
        ["notes per second (log)", "polyphony", "repetition", "scale use", "register", "pitch spread"]
            .map(String::from),
    );
    names.extend(["chord share", "velocity spread", "four-colour chords", "tritone chords"].map(String::from));
    names.extend(
        ["note length (log mean)", "note length spread", "loudness", "notes per attack", "pitch range"]
            .map(String::from),
    );
    names.extend(["bare fifths", "bass pedal", "steady grid", "held tones"].map(String::from));
    names
}

/// Attacks: groups of onsets within [`ONSET_GROUP_S`], as (time, sorted pitches).
fn attacks(perf: &Performance) -> Vec<(f64, Vec<u8>)> {
    let mut out: Vec<(f64, Vec<u8>)> = Vec::new();
    for n in &perf.notes {
        match out.last_mut() {
            Some((t, pitches)) if n.start_s - *t < ONSET_GROUP_S => pitches.push(n.pitch),
            _ => out.push((n.start_s, vec![n.pitch])),
        }
    }
    for (_, p) in &mut out {
        p.sort_unstable();
    }
    out
}

fn mean_std(xs: impl Iterator<Item = f64>) -> (f64, f64) {
    let v: Vec<f64> = xs.collect();
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
    (m, var.sqrt())
}

/// Duration-weighted pitch-class histogram, normalised to sum 1.
fn pitch_classes(perf: &Performance) -> [f64; 12] {
    let mut h = [0.0; 12];
    for n in &perf.notes {
        h[usize::from(n.pitch % 12)] += n.duration_s().clamp(0.05, 2.0);
    }
    let total: f64 = h.iter().sum();
    if total > 0.0 {
        h.iter_mut().for_each(|x| *x /= total);
    }
    h
}

/// (tonic, is_minor, correlation) of the best-fitting key (C major for a flat histogram).
fn key_of(pc: &[f64; 12]) -> (usize, bool, f64) {
    estimate_key(pc)
        .map_or((0, false, 0.0), |k| (usize::from(k.key.tonic), k.key.mode == ScaleMode::Minor, k.correlation))
}

pub fn stats(perf: &Performance) -> Stats {
    let notes = &perf.notes;
    if notes.is_empty() {
        return Stats::default();
    }
    let span = (perf.duration_s() - notes[0].start_s).max(1e-3);
    let att = attacks(perf);
    let pc = pitch_classes(perf);
    let (tonic, minor, _) = key_of(&pc);
    let scale = if minor { NATURAL_MINOR } else { MAJOR_SCALE };
    let in_scale = notes.iter().filter(|n| scale.contains(&((usize::from(n.pitch) + 12 - tonic) % 12))).count();
    let (register, pitch_spread) = mean_std(notes.iter().map(|n| f64::from(n.pitch)));
    let (_, velocity_spread) = mean_std(notes.iter().map(|n| f64::from(n.velocity)));
    let sounding: f64 = notes.iter().map(|n| n.duration_s()).sum();
    let covered = span - perf.silent_s();
    let signature: Vec<u16> = att.iter().map(|(_, ps)| ps.iter().fold(0u16, |acc, p| acc | (1 << (p % 12)))).collect();
    let grams: Vec<&[u16]> = signature.windows(4).collect();
    let mut seen = std::collections::HashSet::new();
    let repeated = grams.iter().filter(|g| !seen.insert(**g)).count();
    Stats {
        note_density: notes.len() as f64 / span,
        polyphony: if covered > 0.0 { sounding / covered } else { 0.0 },
        repetition: if grams.is_empty() { 0.0 } else { repeated as f64 / grams.len() as f64 },
        scale_use: in_scale as f64 / notes.len() as f64,
        register,
        pitch_spread,
        chord_share: att.iter().filter(|(_, p)| p.len() >= 3).count() as f64 / att.len() as f64,
        velocity_spread,
    }
}

/// The classifier's input: key-relative scale-degree histogram, key fit,
/// melodic interval and inter-onset histograms, swing, summary statistics,
/// chord colour, duration and velocity level.
pub fn features(perf: &Performance) -> [f64; NUM_FEATURES] {
    let mut f = Vec::with_capacity(NUM_FEATURES);
    let pc = pitch_classes(perf);
    let (tonic, minor, fit) = key_of(&pc);
    f.extend((0..12).map(|i| pc[(i + tonic) % 12]));
    f.push(if minor { 1.0 } else { 0.0 });
    f.push(fit);

    let att = attacks(perf);
    // melodic motion of the top voice: |interval| 0..=12, and wider
    let mut intervals = [0.0; 14];
    for w in att.windows(2) {
        let (a, b) = (w[0].1.last().copied().unwrap_or(0), w[1].1.last().copied().unwrap_or(0));
        let d = usize::from(a.abs_diff(b)).min(13);
        intervals[d] += 1.0;
    }
    normalise(&mut intervals);
    f.extend(intervals);

    let iois: Vec<f64> = att.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let mut ioi_hist = [0.0; 7];
    for &d in &iois {
        ioi_hist[IOI_EDGES_S.iter().position(|&e| d < e).unwrap_or(6)] += 1.0;
    }
    normalise(&mut ioi_hist);
    f.extend(ioi_hist);
    // long-short pairs near 2:1, the mark of swung eighths
    let pairs = iois.windows(2).filter(|w| w[1] > 0.0).count().max(1);
    let swung = iois.windows(2).filter(|w| w[1] > 0.0 && (1.6..=2.4).contains(&(w[0] / w[1]))).count();
    f.push(swung as f64 / pairs as f64);

    let s = stats(perf);
    f.extend([
        s.note_density.ln_1p(),
        s.polyphony,
        s.repetition,
        s.scale_use,
        s.register / 127.0,
        s.pitch_spread / 24.0,
        s.chord_share,
        s.velocity_spread / 32.0,
    ]);

    // chord colour: attacks with 4+ pitch classes, and with a tritone
    let chords: Vec<&Vec<u8>> = att.iter().map(|(_, p)| p).filter(|p| p.len() >= 3).collect();
    let n_chords = chords.len().max(1) as f64;
    let classes = |p: &Vec<u8>| p.iter().fold(0u16, |acc, x| acc | (1 << (x % 12)));
    f.push(chords.iter().filter(|p| classes(p).count_ones() >= 4).count() as f64 / n_chords);
    f.push(
        chords
            .iter()
            .filter(|p| {
                let c = classes(p);
                (0..12).any(|i| c & (1 << i) != 0 && c & (1 << ((i + 6) % 12)) != 0)
            })
            .count() as f64
            / n_chords,
    );

    let (dur_mean, dur_std) = mean_std(perf.notes.iter().map(|n| n.duration_s().max(0.01).ln()));
    let (vel_mean, _) = mean_std(perf.notes.iter().map(|n| f64::from(n.velocity)));
    f.extend([dur_mean, dur_std, vel_mean / 127.0]);
    f.push(att.iter().map(|(_, p)| p.len() as f64).sum::<f64>() / att.len().max(1) as f64);
    f.push(
        (perf.notes.iter().map(|n| n.pitch).max().unwrap_or(0) - perf.notes.iter().map(|n| n.pitch).min().unwrap_or(0))
            as f64
            / 88.0,
    );

    f.extend(band_texture(perf, &att, &iois));

    let mut out = [0.0; NUM_FEATURES];
    for (o, v) in out.iter_mut().zip(f) {
        *o = if v.is_finite() { v } else { 0.0 };
    }
    out
}

/// What tells a band's keyboard reduction apart (rock against electronic
/// against pop): bare fifths (power chords), a bass that repeats its note (a
/// pedal or a pulse), a steady grid (the same gap as the last), and held
/// tones (the share of sounding time in notes of 2 s or more: pads, drones).
fn band_texture(perf: &Performance, att: &[(f64, Vec<u8>)], iois: &[f64]) -> [f64; 4] {
    let n_att = att.len().max(1) as f64;
    let fifths = att
        .iter()
        .filter(|(_, p)| {
            let root = p[0] % 12;
            let c = p.iter().fold(0u16, |acc, x| acc | (1 << ((x % 12 + 12 - root) % 12)));
            p.len() >= 2 && c == (1 | 1 << 7)
        })
        .count() as f64
        / n_att;
    let pedal = att.windows(2).filter(|w| w[0].1[0] == w[1].1[0]).count() as f64 / (n_att - 1.0).max(1.0);
    let steady = iois.windows(2).filter(|w| w[0] > 0.0 && (w[1] / w[0] - 1.0).abs() < 0.1).count() as f64
        / iois.len().saturating_sub(1).max(1) as f64;
    let sounding: f64 = perf.notes.iter().map(|n| n.duration_s()).sum();
    let held: f64 = perf.notes.iter().map(|n| n.duration_s()).filter(|&d| d >= 2.0).sum();
    [fifths, pedal, steady, if sounding > 0.0 { held / sounding } else { 0.0 }]
}

fn normalise(h: &mut [f64]) {
    let total: f64 = h.iter().sum();
    if total > 0.0 {
        h.iter_mut().for_each(|x| *x /= total);
    }
}

/// The notes of `perf` struck from `from` to before `to` seconds, shifted to start at 0 and cut
/// at `to`.
pub fn excerpt(perf: &Performance, from: f64, to: f64) -> Performance {
    Performance::new(
        perf.notes
            .iter()
            .filter(|n| n.start_s >= from && n.start_s < to)
            .map(|n| crate::Note { start_s: n.start_s - from, end_s: n.end_s.min(to) - from, ..*n })
            .collect(),
    )
}

/// Windows of `window_s` seconds (at most `max_windows`, evenly spread), each
/// shifted to start at 0; a piece shorter than one window is one window.
pub fn windows(perf: &Performance, window_s: f64, max_windows: usize) -> Vec<Performance> {
    let end = perf.duration_s();
    let count = ((end / window_s).floor() as usize).clamp(1, max_windows.max(1));
    let stride = if count > 1 { (end - window_s).max(0.0) / (count - 1) as f64 } else { 0.0 };
    (0..count)
        .map(|i| i as f64 * stride)
        .map(|t0| excerpt(perf, t0, t0 + window_s))
        .filter(|p| p.notes.len() >= crate::classifier::MIN_JUDGED_NOTES)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Note;

    fn scale_run(tonic: u8, steps: &[u8], chords: bool) -> Performance {
        let mut notes = Vec::new();
        for i in 0..64 {
            let t = i as f64 * 0.25;
            let p = tonic + steps[i % steps.len()];
            notes.push(Note { pitch: p, velocity: 80, start_s: t, end_s: t + 0.2 });
            if chords && i % 4 == 0 {
                for d in [4, 7, 10] {
                    notes.push(Note { pitch: tonic - 12 + d, velocity: 60, start_s: t, end_s: t + 0.9 });
                }
            }
        }
        Performance::new(notes)
    }

    #[test]
    fn key_finding_makes_features_transposition_invariant() {
        let a = features(&scale_run(60, &[0, 2, 4, 5, 7, 9, 11, 12], false));
        let b = features(&scale_run(65, &[0, 2, 4, 5, 7, 9, 11, 12], false));
        for (x, y) in a.iter().zip(&b).take(14) {
            assert!((x - y).abs() < 1e-9);
        }
        let s = stats(&scale_run(60, &[0, 2, 4, 5, 7, 9, 11, 12], false));
        assert!((s.scale_use - 1.0).abs() < 1e-9);
        assert!((s.note_density - 64.0 / 15.95).abs() < 1e-6);
    }

    #[test]
    fn chords_raise_polyphony_and_chord_share() {
        let plain = stats(&scale_run(60, &[0, 2, 4], false));
        let chordal = stats(&scale_run(60, &[0, 2, 4], true));
        assert!(chordal.polyphony > plain.polyphony + 1.0);
        assert!(chordal.chord_share > 0.2 && plain.chord_share == 0.0);
    }

    #[test]
    fn power_chords_pedals_and_pads_are_measured() {
        // eighths on a pedal E with bare fifths above, under one held pad tone
        let mut notes = vec![Note { pitch: 76, velocity: 60, start_s: 0.0, end_s: 8.0 }];
        for i in 0..32 {
            let t = i as f64 * 0.25 + 0.01;
            notes.push(Note { pitch: 40, velocity: 90, start_s: t, end_s: t + 0.2 });
            notes.push(Note { pitch: 47, velocity: 90, start_s: t, end_s: t + 0.2 });
        }
        let riff = Performance::new(notes);
        let f = features(&riff);
        let [fifths, pedal, steady, held] = [f[51], f[52], f[53], f[54]];
        assert!(fifths > 0.95 && pedal > 0.95 && steady > 0.95, "{fifths} {pedal} {steady}");
        assert!((held - 8.0 / (8.0 + 64.0 * 0.2)).abs() < 1e-9, "{held}");
        let tune = features(&scale_run(60, &[0, 2, 4, 5, 7, 9, 11, 12], true));
        assert!(tune[51] == 0.0 && tune[54] == 0.0);
    }

    #[test]
    fn every_feature_has_one_name() {
        let names = feature_names();
        assert_eq!(names.len(), NUM_FEATURES);
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), NUM_FEATURES, "{names:?}");
        // The band texture's four close the vector, as `power_chords_pedals_and_pads_are_measured` reads them.
        assert_eq!(names[51], "bare fifths");
        assert_eq!(names[54], "held tones");
        assert_eq!(names[35], "swung pairs");
        assert_eq!(names[36], "notes per second (log)");
    }

    #[test]
    fn windows_split_long_pieces() {
        let p = scale_run(60, &[0, 2, 4], false);
        let w = windows(&p, 4.0, 3);
        assert_eq!(w.len(), 3);
        assert!(w.iter().all(|x| x.notes[0].start_s < 0.3 && x.duration_s() <= 4.0 + 1e-9));
    }
}
