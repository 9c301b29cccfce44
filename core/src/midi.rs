//! Standard MIDI Files in and out: any file a musician or a corpus hands us
//! becomes a [`Performance`] (or a typed error that says what is wrong), and a
//! performance or clip becomes a format-1 file a DAW imports.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

use crate::analysis::Meter;
use crate::clip::{Clip, ClipNote};
use crate::performance::{Note, Performance};

/// The General MIDI drum channel (channel 10, zero-based 9).
pub const DRUM_CHANNEL: u8 = 9;
/// Pulses per quarter note of the files we write.
pub const WRITE_PPQ: u16 = 480;
/// Tempo of a file without tempo events, in microseconds per quarter note (120 BPM).
pub const DEFAULT_TEMPO_US: u32 = 500_000;
/// CC number of the sustain (damper) pedal.
const SUSTAIN_CC: u8 = 64;

/// How a file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Hold notes while CC64 >= 64, as the Magenta performance pipeline does.
    pub sustain: bool,
    /// Keep channel 10. Off by default: a piano model has no drums.
    pub keep_drums: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self { sustain: true, keep_drums: false }
    }
}

/// A file that could not be read, with the file named.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct MidiError {
    pub path: PathBuf,
    pub kind: MidiErrorKind,
}

/// What is wrong with a MIDI file.
#[derive(Debug, thiserror::Error)]
pub enum MidiErrorKind {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the file is empty")]
    Empty,
    #[error("not a MIDI file: it looks like {0}")]
    NotMidi(String),
    #[error("truncated MIDI file: {0}")]
    Truncated(String),
    #[error("malformed MIDI file: {0}")]
    Malformed(String),
    #[error("the MIDI header declares zero tracks")]
    NoTracks,
    #[error("MIDI format 2 (independent sequential patterns) is not supported; save it as format 0 or 1")]
    SequentialFormat,
    #[error("the file holds no notes")]
    NoNotes,
    #[error("the file holds only drum notes (channel 10), which a piano model cannot use")]
    DrumsOnly,
}

impl MidiErrorKind {
    pub fn at(self, path: impl Into<PathBuf>) -> MidiError {
        MidiError { path: path.into(), kind: self }
    }
}

/// Read a MIDI file into a piano performance.
pub fn read_file(path: &Path, opts: &ReadOptions) -> Result<Performance, MidiError> {
    read_file_timed(path, opts).map(|(perf, _)| perf)
}

/// Parse MIDI bytes (also RIFF-wrapped RMID) into a piano performance.
pub fn parse(bytes: &[u8], opts: &ReadOptions) -> Result<Performance, MidiErrorKind> {
    parse_timed(bytes, opts).map(|(perf, _)| perf)
}

/// [`read_file`], with the file's tempo map and metre.
pub fn read_file_timed(path: &Path, opts: &ReadOptions) -> Result<(Performance, TempoMapInfo), MidiError> {
    let bytes = std::fs::read(path).map_err(|e| MidiErrorKind::Io(e).at(path))?;
    parse_timed(&bytes, opts).map_err(|k| k.at(path))
}

/// [`parse`], with the file's tempo map and metre.
pub fn parse_timed(bytes: &[u8], opts: &ReadOptions) -> Result<(Performance, TempoMapInfo), MidiErrorKind> {
    let bytes = unwrap_rmid(bytes)?;
    check_chunks(bytes)?;
    let smf = Smf::parse(bytes).map_err(|e| MidiErrorKind::Malformed(e.to_string()))?;
    performance_from_smf(&smf, opts)
}

/// Where a file's beats and bars fall: its tempo changes in seconds and its first time signature.
#[derive(Debug, Clone, PartialEq)]
pub struct TempoMapInfo {
    /// (seconds, quarter notes per minute) of each tempo from then on; the first is at 0 s.
    pub tempos: Vec<(f64, f64)>,
    /// The first time signature (numerator, denominator); 4/4 when the file states none.
    pub time_signature: (u8, u8),
}

impl TempoMapInfo {
    /// How far a tempo may stray from the first and still count as the same, as a ratio.
    pub const STEADY_TOLERANCE: f64 = 0.01;

    pub fn first_bpm(&self) -> f64 {
        self.tempos.first().map_or(120.0, |&(_, bpm)| bpm)
    }

    /// Whether every tempo before `end_s` is within [`Self::STEADY_TOLERANCE`] of the first.
    pub fn steady_until(&self, end_s: f64) -> bool {
        let first = self.first_bpm();
        self.tempos
            .iter()
            .filter(|(t, _)| *t < end_s)
            .all(|(_, bpm)| (bpm / first - 1.0).abs() <= Self::STEADY_TOLERANCE)
    }

    /// The first tempo and time signature, bar lines from 0 s.
    pub fn meter(&self) -> Meter {
        let (num, den) = self.time_signature;
        let bar_len_beats = f64::from(num.max(1)) * 4.0 / f64::from(den.max(1));
        Meter { tempo_bpm: self.first_bpm(), bar_start_s: 0.0, bar_len_beats }
    }
}

/// Tell what a non-MIDI file probably is, so the message helps.
fn sniff(bytes: &[u8]) -> String {
    let starts = |p: &[u8]| bytes.starts_with(p);
    if starts(b"RIFF") && bytes.get(8..12) == Some(b"WAVE") {
        "a WAV audio file (RIFF/WAVE); Cadenza needs MIDI notes, not audio".into()
    } else if starts(b"ID3") || starts(&[0xff, 0xfb]) || starts(&[0xff, 0xf3]) {
        "an MP3 audio file; Cadenza needs MIDI notes, not audio".into()
    } else if starts(b"OggS") || starts(b"fLaC") {
        "an Ogg or FLAC audio file; Cadenza needs MIDI notes, not audio".into()
    } else if starts(b"PK\x03\x04") {
        "a ZIP archive (compressed MusicXML?); export it as MIDI first".into()
    } else if starts(b"<?xml") || starts(b"<score") {
        "MusicXML text; export it as MIDI first".into()
    } else if starts(b"%PDF") {
        "a PDF document".into()
    } else {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("unknown data (first bytes {}; a MIDI file starts with \"MThd\")", head.join(" "))
    }
}

/// RMID files wrap a standard MIDI file in a RIFF "data" chunk.
fn unwrap_rmid(bytes: &[u8]) -> Result<&[u8], MidiErrorKind> {
    if bytes.is_empty() {
        return Err(MidiErrorKind::Empty);
    }
    if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"RMID") {
        let mut pos = 12;
        while pos + 8 <= bytes.len() {
            let len = u32::from_le_bytes([bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]]) as usize;
            let body = pos + 8;
            if &bytes[pos..pos + 4] == b"data" {
                return bytes
                    .get(body..body.saturating_add(len))
                    .ok_or_else(|| MidiErrorKind::Truncated("the RMID data chunk is cut short".into()));
            }
            pos = body.saturating_add(len + (len & 1));
        }
        return Err(MidiErrorKind::Malformed("an RMID file without a data chunk".into()));
    }
    Ok(bytes)
}

/// Walk the chunk structure before parsing, so truncation and wrong chunk
/// lengths get a precise message instead of a guess.
fn check_chunks(bytes: &[u8]) -> Result<(), MidiErrorKind> {
    if !bytes.starts_with(b"MThd") {
        if b"MThd".starts_with(bytes) {
            return Err(MidiErrorKind::Truncated(format!("only {} bytes", bytes.len())));
        }
        return Err(MidiErrorKind::NotMidi(sniff(bytes)));
    }
    let be32 = |p: usize| u32::from_be_bytes([bytes[p], bytes[p + 1], bytes[p + 2], bytes[p + 3]]) as usize;
    if bytes.len() < 14 {
        return Err(MidiErrorKind::Truncated(format!("the header needs 14 bytes, the file has {}", bytes.len())));
    }
    let header_len = be32(4);
    if header_len < 6 {
        return Err(MidiErrorKind::Malformed(format!(
            "the header chunk declares {header_len} bytes, at least 6 are needed"
        )));
    }
    let declared_tracks = usize::from(u16::from_be_bytes([bytes[10], bytes[11]]));
    if declared_tracks == 0 {
        return Err(MidiErrorKind::NoTracks);
    }
    let mut pos = 8usize.saturating_add(header_len);
    let mut tracks = 0usize;
    while tracks < declared_tracks {
        if pos.saturating_add(8) > bytes.len() {
            return Err(MidiErrorKind::Truncated(format!(
                "the header declares {declared_tracks} tracks, the file ends after {tracks}"
            )));
        }
        let id = &bytes[pos..pos + 4];
        if !id.iter().all(|b| b.is_ascii_alphanumeric() || *b == b' ') {
            return Err(MidiErrorKind::Malformed(format!(
                "no chunk starts at byte {pos} (found bytes {:02x?}); a chunk length before it is wrong",
                id
            )));
        }
        let len = be32(pos + 4);
        let remaining = bytes.len() - pos - 8;
        if id == b"MTrk" {
            if len > remaining {
                return Err(MidiErrorKind::Truncated(format!(
                    "track {} of {declared_tracks} declares {len} bytes but only {remaining} remain",
                    tracks + 1
                )));
            }
            tracks += 1;
        } else if len > remaining {
            return Err(MidiErrorKind::Malformed(format!(
                "a '{}' chunk at byte {pos} declares {len} bytes but only {remaining} remain",
                String::from_utf8_lossy(id)
            )));
        }
        pos += 8 + len;
    }
    Ok(())
}

/// Piecewise-linear map from ticks to seconds.
struct TempoMap {
    /// (tick, seconds at that tick, seconds per tick from there on)
    segments: Vec<(u64, f64, f64)>,
}

impl TempoMap {
    fn new(timing: Timing, mut changes: Vec<(u64, u32)>) -> Result<Self, MidiErrorKind> {
        match timing {
            Timing::Timecode(fps, subframes) => {
                let ticks_per_s = f64::from(fps.as_f32()) * f64::from(subframes);
                if ticks_per_s <= 0.0 {
                    return Err(MidiErrorKind::Malformed("SMPTE timing with zero ticks per frame".into()));
                }
                Ok(Self { segments: vec![(0, 0.0, 1.0 / ticks_per_s)] })
            }
            Timing::Metrical(ppq) => {
                let ppq = f64::from(ppq.as_int());
                if ppq == 0.0 {
                    return Err(MidiErrorKind::Malformed("the header declares 0 ticks per quarter note".into()));
                }
                changes.retain(|&(_, us)| us > 0);
                changes.sort_by_key(|&(tick, _)| tick);
                let spt = |us: u32| f64::from(us) / 1e6 / ppq;
                let mut segments = vec![(0u64, 0.0, spt(DEFAULT_TEMPO_US))];
                for (tick, us) in changes {
                    let &(t0, s0, rate) = segments.last().expect("non-empty");
                    let s = s0 + (tick - t0) as f64 * rate;
                    if tick == t0 {
                        segments.pop();
                    }
                    segments.push((tick, s, spt(us)));
                }
                Ok(Self { segments })
            }
        }
    }

    /// The tempo changes as (seconds, BPM), starting at 0 s; 120 BPM for SMPTE timing.
    fn tempos_bpm(&self, timing: Timing, changes: &[(u64, u32)]) -> Vec<(f64, f64)> {
        let mut out = vec![(0.0, 60e6 / f64::from(DEFAULT_TEMPO_US))];
        if let Timing::Metrical(_) = timing {
            let mut changes: Vec<(u64, u32)> = changes.iter().copied().filter(|&(_, us)| us > 0).collect();
            changes.sort_by_key(|&(tick, _)| tick);
            for (tick, us) in changes {
                let s = self.seconds(tick);
                if out.last().is_some_and(|&(t, _)| t >= s) {
                    out.pop();
                }
                out.push((s, 60e6 / f64::from(us)));
            }
        }
        out
    }

    fn seconds(&self, tick: u64) -> f64 {
        let i = self.segments.partition_point(|&(t, _, _)| t <= tick).saturating_sub(1);
        let (t0, s0, rate) = self.segments[i];
        s0 + (tick - t0) as f64 * rate
    }
}

/// A note still to be given its pedal-extended end.
struct RawNote {
    channel: u8,
    note: Note,
}

fn performance_from_smf(smf: &Smf, opts: &ReadOptions) -> Result<(Performance, TempoMapInfo), MidiErrorKind> {
    let Header { format, timing } = smf.header;
    if format == Format::Sequential {
        return Err(MidiErrorKind::SequentialFormat);
    }
    if smf.tracks.is_empty() {
        return Err(MidiErrorKind::NoTracks);
    }
    let mut tempo_changes = Vec::new();
    // (tick, numerator, denominator)
    let mut signatures: Vec<(u64, u8, u8)> = Vec::new();
    for track in &smf.tracks {
        let mut tick = 0u64;
        for ev in track {
            tick += u64::from(ev.delta.as_int());
            match ev.kind {
                TrackEventKind::Meta(MetaMessage::Tempo(us)) => tempo_changes.push((tick, us.as_int())),
                TrackEventKind::Meta(MetaMessage::TimeSignature(num, den_pow, _, _)) if den_pow < 8 => {
                    signatures.push((tick, num, 1u8 << den_pow))
                }
                _ => {}
            }
        }
    }
    let tempo = TempoMap::new(timing, tempo_changes.clone())?;
    let info = TempoMapInfo {
        tempos: tempo.tempos_bpm(timing, &tempo_changes),
        time_signature: signatures.iter().min_by_key(|s| s.0).map_or((4, 4), |&(_, n, d)| (n, d)),
    };

    let mut raw = Vec::new();
    // (channel) -> [(seconds, pedal down)]
    let mut pedal: HashMap<u8, Vec<(f64, bool)>> = HashMap::new();
    let mut drum_notes = 0usize;
    for track in &smf.tracks {
        read_track(track, &tempo, opts, &mut raw, &mut pedal, &mut drum_notes);
    }
    if raw.is_empty() {
        return Err(if drum_notes > 0 { MidiErrorKind::DrumsOnly } else { MidiErrorKind::NoNotes });
    }
    if opts.sustain {
        apply_sustain(&mut raw, &mut pedal);
    }
    Ok((Performance::new(raw.into_iter().map(|r| r.note).collect()), info))
}

fn read_track(
    track: &[TrackEvent],
    tempo: &TempoMap,
    opts: &ReadOptions,
    raw: &mut Vec<RawNote>,
    pedal: &mut HashMap<u8, Vec<(f64, bool)>>,
    drum_notes: &mut usize,
) {
    // (channel, pitch) -> onsets waiting for their release, oldest first
    let mut open: HashMap<(u8, u8), VecDeque<(f64, u8)>> = HashMap::new();
    let mut tick = 0u64;
    let close = |raw: &mut Vec<RawNote>, channel: u8, pitch: u8, start_s: f64, velocity: u8, end_s: f64| {
        raw.push(RawNote { channel, note: Note { pitch, velocity, start_s, end_s: end_s.max(start_s) } });
    };
    for ev in track {
        tick += u64::from(ev.delta.as_int());
        let TrackEventKind::Midi { channel, message } = ev.kind else { continue };
        let channel = channel.as_int();
        let is_drum = channel == DRUM_CHANNEL && !opts.keep_drums;
        let now = tempo.seconds(tick);
        match message {
            MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                if is_drum {
                    *drum_notes += 1;
                    continue;
                }
                open.entry((channel, key.as_int())).or_default().push_back((now, vel.as_int()));
            }
            MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                if let Some((start, vel)) = open.get_mut(&(channel, key.as_int())).and_then(VecDeque::pop_front) {
                    close(raw, channel, key.as_int(), start, vel, now);
                }
            }
            MidiMessage::Controller { controller, value } if controller.as_int() == SUSTAIN_CC && !is_drum => {
                pedal.entry(channel).or_default().push((now, value.as_int() >= 64));
            }
            _ => {}
        }
    }
    // Hanging notes close where the track ends.
    let end = tempo.seconds(tick);
    let mut hanging: Vec<_> = open.into_iter().collect();
    hanging.sort_by_key(|(k, _)| *k);
    for ((channel, pitch), starts) in hanging {
        for (start, vel) in starts {
            close(raw, channel, pitch, start, vel, end);
        }
    }
}

/// A release that falls while the pedal is down moves to the pedal's release
/// (or the end of the piece when it never comes up). Re-struck keys are cut
/// by the codec, as Magenta does.
fn apply_sustain(raw: &mut [RawNote], pedal: &mut HashMap<u8, Vec<(f64, bool)>>) {
    let piece_end = raw.iter().map(|r| r.note.end_s).fold(0.0, f64::max);
    // (channel) -> [(down_s, up_s)]
    let mut held: HashMap<u8, Vec<(f64, f64)>> = HashMap::new();
    for (&channel, events) in pedal.iter_mut() {
        events.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut spans = Vec::new();
        let mut down_since: Option<f64> = None;
        for &(t, down) in events.iter() {
            match (down, down_since) {
                (true, None) => down_since = Some(t),
                (false, Some(d)) => {
                    spans.push((d, t));
                    down_since = None;
                }
                _ => {}
            }
        }
        if let Some(d) = down_since {
            spans.push((d, piece_end.max(d)));
        }
        held.insert(channel, spans);
    }
    for r in raw.iter_mut() {
        let Some(spans) = held.get(&r.channel) else { continue };
        let end = r.note.end_s;
        // the span holding the release: down <= end < up
        let i = spans.partition_point(|&(down, _)| down <= end);
        if i > 0 {
            let (_, up) = spans[i - 1];
            if end < up {
                r.note.end_s = up;
            }
        }
    }
}

/// How a file is written.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOptions {
    /// Tempo written into the file, in beats per minute.
    pub tempo_bpm: f64,
    /// Time signature numerator and denominator.
    pub time_signature: (u8, u8),
    pub track_name: String,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self { tempo_bpm: 120.0, time_signature: (4, 4), track_name: "Cadenza".into() }
    }
}

/// A performance as a format-1 Standard MIDI File at `opts.tempo_bpm`.
pub fn write_performance(perf: &Performance, opts: &WriteOptions) -> Vec<u8> {
    let clip = Clip::from_performance(perf, opts.tempo_bpm);
    write_clip(&clip, opts)
}

/// A clip (times in beats) as a format-1 Standard MIDI File: a conductor
/// track with tempo and metre, then one piano track on channel 1.
pub fn write_clip(clip: &Clip, opts: &WriteOptions) -> Vec<u8> {
    let tempo_us = (60e6 / opts.tempo_bpm.clamp(1.0, 1000.0)).round() as u32;
    let ppq = f64::from(WRITE_PPQ);
    let to_tick = |beats: f64| (beats.max(0.0) * ppq).round() as u64;

    let mut conductor: Vec<(u64, TrackEventKind)> = vec![
        (0, TrackEventKind::Meta(MetaMessage::TrackName(opts.track_name.as_bytes()))),
        (0, TrackEventKind::Meta(MetaMessage::Tempo(tempo_us.min(0xff_ffff).into()))),
    ];
    let (num, den) = opts.time_signature;
    let den_pow = (den.max(1) as f64).log2().round() as u8;
    conductor.push((0, TrackEventKind::Meta(MetaMessage::TimeSignature(num.max(1), den_pow, 24, 8))));

    // (tick, 0 = off / 1 = on, pitch, velocity): offs first at a shared tick
    let mut timed: Vec<(u64, u8, u8, u8)> = Vec::with_capacity(clip.notes.len() * 2);
    for n in &clip.notes {
        let start = to_tick(n.start_beats);
        let end = to_tick(n.start_beats + n.length_beats).max(start + 1);
        timed.push((start, 1, n.pitch.min(127), n.velocity.clamp(1, 127)));
        timed.push((end, 0, n.pitch.min(127), 0));
    }
    timed.sort_unstable_by_key(|&(t, kind, p, _)| (t, kind, p));
    let mut piano: Vec<(u64, TrackEventKind)> = vec![
        (0, TrackEventKind::Meta(MetaMessage::TrackName(b"Piano"))),
        (0, TrackEventKind::Midi { channel: 0.into(), message: MidiMessage::ProgramChange { program: 0.into() } }),
    ];
    for (tick, kind, pitch, vel) in timed {
        let message = if kind == 1 {
            MidiMessage::NoteOn { key: pitch.into(), vel: vel.into() }
        } else {
            MidiMessage::NoteOff { key: pitch.into(), vel: 64.into() }
        };
        piano.push((tick, TrackEventKind::Midi { channel: 0.into(), message }));
    }
    let end_tick = piano.last().map_or(0, |e| e.0).max(to_tick(clip.length_beats));
    let tracks = vec![to_track(conductor, end_tick), to_track(piano, end_tick)];
    let smf = Smf { header: Header { format: Format::Parallel, timing: Timing::Metrical(WRITE_PPQ.into()) }, tracks };
    let mut out = Vec::new();
    smf.write_std(&mut out).expect("writing to a Vec cannot fail");
    out
}

fn to_track(events: Vec<(u64, TrackEventKind)>, end_tick: u64) -> Vec<TrackEvent> {
    let mut track = Vec::with_capacity(events.len() + 1);
    let mut last = 0u64;
    for (tick, kind) in events {
        let delta = (tick - last).min(0x0fff_ffff) as u32;
        track.push(TrackEvent { delta: delta.into(), kind });
        last = tick;
    }
    let delta = (end_tick.saturating_sub(last)).min(0x0fff_ffff) as u32;
    track.push(TrackEvent { delta: delta.into(), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) });
    track
}

/// Write a performance to `path` atomically.
pub fn write_performance_file(path: &Path, perf: &Performance, opts: &WriteOptions) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, &write_performance(perf, opts))
}

/// Clip notes of a performance, for callers that think in beats.
pub fn clip_notes(perf: &Performance, tempo_bpm: f64) -> Vec<ClipNote> {
    Clip::from_performance(perf, tempo_bpm).notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smf_bytes(format: Format, timing: Timing, tracks: Vec<Vec<TrackEvent>>) -> Vec<u8> {
        let smf = Smf { header: Header { format, timing }, tracks };
        let mut out = Vec::new();
        smf.write_std(&mut out).expect("write");
        out
    }

    fn ev(delta: u32, kind: TrackEventKind<'static>) -> TrackEvent<'static> {
        TrackEvent { delta: delta.into(), kind }
    }

    fn on(ch: u8, key: u8, vel: u8) -> TrackEventKind<'static> {
        TrackEventKind::Midi { channel: ch.into(), message: MidiMessage::NoteOn { key: key.into(), vel: vel.into() } }
    }

    fn off(ch: u8, key: u8) -> TrackEventKind<'static> {
        TrackEventKind::Midi { channel: ch.into(), message: MidiMessage::NoteOff { key: key.into(), vel: 0.into() } }
    }

    fn cc(ch: u8, controller: u8, value: u8) -> TrackEventKind<'static> {
        TrackEventKind::Midi {
            channel: ch.into(),
            message: MidiMessage::Controller { controller: controller.into(), value: value.into() },
        }
    }

    fn tempo(us: u32) -> TrackEventKind<'static> {
        TrackEventKind::Meta(MetaMessage::Tempo(us.into()))
    }

    #[test]
    fn tempo_changes_in_any_track_shape_the_clock() {
        // 480 ppq; 120 bpm for one beat, then 60 bpm.
        let conductor = vec![ev(0, tempo(500_000)), ev(480, tempo(1_000_000))];
        let notes = vec![ev(0, on(0, 60, 90)), ev(480, off(0, 60)), ev(0, on(0, 62, 90)), ev(480, off(0, 62))];
        let bytes = smf_bytes(Format::Parallel, Timing::Metrical(480.into()), vec![conductor, notes]);
        let p = parse(&bytes, &ReadOptions::default()).expect("parse");
        assert_eq!(p.notes.len(), 2);
        assert!((p.notes[0].end_s - 0.5).abs() < 1e-9);
        assert!((p.notes[1].start_s - 0.5).abs() < 1e-9);
        assert!((p.notes[1].end_s - 1.5).abs() < 1e-9);
        let (_, t) = parse_timed(&bytes, &ReadOptions::default()).expect("parse");
        assert_eq!(t.tempos, vec![(0.0, 120.0), (0.5, 60.0)]);
        assert!(t.steady_until(0.5) && !t.steady_until(0.6), "the tempo changes at 0.5 s");
    }

    #[test]
    fn a_written_file_reads_back_with_its_tempo_and_metre() {
        let perf = Performance::new(vec![Note { pitch: 60, velocity: 80, start_s: 0.0, end_s: 0.5 }]);
        let opts = WriteOptions { tempo_bpm: 93.0, time_signature: (6, 8), ..Default::default() };
        let (_, t) = parse_timed(&write_performance(&perf, &opts), &ReadOptions::default()).expect("parse");
        assert!((t.first_bpm() - 93.0).abs() < 1e-3, "{}", t.first_bpm());
        assert_eq!(t.time_signature, (6, 8));
        let m = t.meter();
        assert_eq!((m.bar_start_s, m.bar_len_beats), (0.0, 3.0), "6/8 is three quarter notes a bar");
    }

    #[test]
    fn velocity_zero_is_a_release_and_overlaps_pair_first_in_first_out() {
        let t = vec![ev(0, on(0, 60, 100)), ev(100, on(0, 60, 50)), ev(100, on(0, 60, 0)), ev(100, off(0, 60))];
        let bytes = smf_bytes(Format::SingleTrack, Timing::Metrical(100.into()), vec![t]);
        let p = parse(&bytes, &ReadOptions::default()).expect("parse");
        assert_eq!(p.notes.len(), 2);
        assert_eq!((p.notes[0].velocity, p.notes[0].end_s), (100, 1.0));
        assert_eq!((p.notes[1].velocity, p.notes[1].end_s), (50, 1.5));
    }

    #[test]
    fn sustain_holds_released_notes_until_pedal_up() {
        let t = vec![
            ev(0, cc(0, 64, 127)),
            ev(0, on(0, 60, 80)),
            ev(100, off(0, 60)),
            ev(300, cc(0, 64, 0)),
            ev(100, on(0, 62, 80)),
            ev(100, off(0, 62)),
        ];
        let bytes = smf_bytes(Format::SingleTrack, Timing::Metrical(100.into()), vec![t]);
        let p = parse(&bytes, &ReadOptions::default()).expect("parse");
        assert!((p.notes[0].end_s - 2.0).abs() < 1e-9, "{:?}", p.notes[0]);
        assert!((p.notes[1].end_s - 3.0).abs() < 1e-9);
        let dry = parse(&bytes, &ReadOptions { sustain: false, ..Default::default() }).expect("parse");
        assert!((dry.notes[0].end_s - 0.5).abs() < 1e-9);
    }

    #[test]
    fn hanging_notes_close_at_track_end_and_drums_are_dropped() {
        let t = vec![ev(0, on(9, 36, 100)), ev(0, on(0, 60, 80)), ev(960, off(9, 36))];
        let bytes = smf_bytes(Format::SingleTrack, Timing::Metrical(480.into()), vec![t]);
        let p = parse(&bytes, &ReadOptions::default()).expect("parse");
        assert_eq!(p.notes.len(), 1);
        assert!((p.notes[0].end_s - 1.0).abs() < 1e-9);
    }

    #[test]
    fn drums_only_is_its_own_error() {
        let t = vec![ev(0, on(9, 36, 100)), ev(480, off(9, 36))];
        let bytes = smf_bytes(Format::SingleTrack, Timing::Metrical(480.into()), vec![t]);
        assert!(matches!(parse(&bytes, &ReadOptions::default()), Err(MidiErrorKind::DrumsOnly)));
    }

    #[test]
    fn smpte_timing_counts_frames() {
        let t = vec![ev(0, on(0, 60, 80)), ev(100, off(0, 60))];
        let bytes = smf_bytes(Format::SingleTrack, Timing::Timecode(midly::Fps::Fps25, 40), vec![t]);
        let p = parse(&bytes, &ReadOptions::default()).expect("parse");
        assert!((p.notes[0].end_s - 0.1).abs() < 1e-9);
    }

    #[test]
    fn format_two_is_refused_by_name() {
        let t = vec![ev(0, on(0, 60, 80)), ev(100, off(0, 60))];
        let bytes = smf_bytes(Format::Sequential, Timing::Metrical(96.into()), vec![t]);
        assert!(matches!(parse(&bytes, &ReadOptions::default()), Err(MidiErrorKind::SequentialFormat)));
    }

    #[test]
    fn written_files_read_back_with_the_same_notes() {
        let perf = Performance::new(vec![
            Note { pitch: 60, velocity: 90, start_s: 0.0, end_s: 0.5 },
            Note { pitch: 64, velocity: 70, start_s: 0.25, end_s: 1.0 },
        ]);
        let bytes = write_performance(&perf, &WriteOptions { tempo_bpm: 93.0, ..Default::default() });
        let back = parse(&bytes, &ReadOptions::default()).expect("parse");
        assert_eq!(back.notes.len(), 2);
        for (a, b) in perf.notes.iter().zip(&back.notes) {
            assert_eq!((a.pitch, a.velocity), (b.pitch, b.velocity));
            assert!((a.start_s - b.start_s).abs() < 0.002);
            assert!((a.end_s - b.end_s).abs() < 0.002);
        }
    }

    #[test]
    fn bad_bytes_get_named_errors() {
        let opts = ReadOptions::default();
        assert!(matches!(parse(b"", &opts), Err(MidiErrorKind::Empty)));
        assert!(matches!(parse(b"MTh", &opts), Err(MidiErrorKind::Truncated(_))));
        let mut wav = b"RIFF\x24\0\0\0WAVEfmt ".to_vec();
        wav.extend_from_slice(&[0; 32]);
        match parse(&wav, &opts) {
            Err(MidiErrorKind::NotMidi(what)) => assert!(what.contains("WAV"), "{what}"),
            other => panic!("{other:?}"),
        }
        let good = smf_bytes(
            Format::SingleTrack,
            Timing::Metrical(96.into()),
            vec![vec![ev(0, on(0, 60, 80)), ev(96, off(0, 60))]],
        );
        assert!(matches!(parse(&good[..good.len() - 3], &opts), Err(MidiErrorKind::Truncated(_))));
        let mut zero_tracks = good.clone();
        zero_tracks[10] = 0;
        zero_tracks[11] = 0;
        assert!(matches!(parse(&zero_tracks, &opts), Err(MidiErrorKind::NoTracks)));
        let mut long_chunk = good.clone();
        long_chunk[21] = long_chunk[21].wrapping_add(40);
        assert!(matches!(parse(&long_chunk, &opts), Err(MidiErrorKind::Truncated(_))));
        let mut two_tracks = good;
        two_tracks[11] = 2;
        assert!(matches!(parse(&two_tracks, &opts), Err(MidiErrorKind::Truncated(_))));
    }
}
