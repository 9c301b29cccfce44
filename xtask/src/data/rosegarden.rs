//! The example songs of Debian `rosegarden`, compiled into its executable
//! as Qt resources (`/examples/*.rg`, gzip-compressed Rosegarden XML; see
//! [`super::qrc`]). [`read_song`] reads a song's notes the way Rosegarden
//! plays them: segments placed on their tracks, each event at its absolute
//! time or its offset from the running time (a `<chord>` advancing by its
//! shortest note), tied notes joined, repeating segments repeated until the
//! next segment on the track or the composition's end, segment transposition
//! and end markers applied, muted tracks, trigger (ornament) segments and
//! audio left out, drums (channel 10 or a percussion bank) on channel 10;
//! tempo and time signatures kept. [`to_midi`] writes it as a Standard MIDI
//! File with one track per Rosegarden track, which then goes through the
//! band reduction like the game tracks ([`super::games::reduce_cached`]).
//!
//! Every example is filed by hand in [`EXAMPLES`]: the originals by D.
//! Michael McIntyre and Steve Conrad that are pop go to pop, the recorded
//! piano improvisation too; Steve Conrad's rock pastiches go to rock; the
//! classical pieces are held back for the next classical rebuild (classical
//! is mid-training on a fixed split), and the notation and export tests are
//! left out.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cadenza_core::dataset::Provenance;
use midly::num::{u15, u24, u28, u4, u7};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

use super::band::BandReduction;
use super::build::DropReason;
use super::fetch::{self, ROSEGARDEN};
use super::music21::sanitize_path;
use super::xml::{tags, Tag};
use super::{Candidate, Origin, Style};

/// Rosegarden's timebase: ticks in a quarter note.
pub const TICKS_PER_QUARTER: u16 = 960;
const DEFAULT_QPM: f64 = 120.0;
const DEFAULT_VELOCITY: u8 = 100;
/// 0-based MIDI channel of the drums.
const DRUMS: u8 = 9;
const SUSTAIN_CC: u8 = 64;

/// How a Rosegarden example is filed.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// File name under `/examples/`.
    pub name: &'static str,
    pub genre: &'static str,
    pub filing: Filing,
    pub why: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filing {
    Into(Style, Provenance),
    /// Fits a shipped style whose corpus is frozen this session.
    HeldBack(Style),
    /// Fits no shipped style, or is a test of the notation editor.
    Out,
}

const fn e(name: &'static str, genre: &'static str, filing: Filing, why: &'static str) -> Example {
    Example { name, genre, filing, why }
}

const POP_COMPOSED: Filing = Filing::Into(Style::Pop, Provenance::Composed);
const ROCK_COMPOSED: Filing = Filing::Into(Style::Rock, Provenance::Composed);
const CLASSICAL: Filing = Filing::HeldBack(Style::Classical);
const TEST: &str = "notation test";
const TEST_WHY: &str = "a notation or LilyPond-export test, a few bars";

/// Every example of rosegarden 22.12.1 (the executable's `/examples`).
pub const EXAMPLES: [Example; 39] = [
    e("Brandenburg_No3-BWV_1048.rg", "classical", CLASSICAL, "J. S. Bach, strings, public domain"),
    e("Chopin-Prelude-in-E-minor-Aere.rg", "classical", CLASSICAL, "Chopin arranged with cello and flute"),
    e("Djer-Fire.rg", "rock", ROCK_COMPOSED, "Steve Conrad, 'apologies to Page, Plant et al': a Led Zeppelin pastiche"),
    e("Hallelujah_Chorus_from_Messiah.rg", "classical", CLASSICAL, "Handel, orchestra and choir"),
    e("Romanza.rg", "classical", CLASSICAL, "anonymous Romanza for guitar"),
    e("aveverum.rg", "classical", CLASSICAL, "Mozart, K. 618"),
    e("aylindaamiga.rg", "classical", CLASSICAL, "anonymous Renaissance part-song, SATB"),
    e("beaming.rg", TEST, Filing::Out, TEST_WHY),
    e(
        "bogus-surf-jam.rg",
        "surf rock",
        ROCK_COMPOSED,
        "Steve Conrad: overdriven lead guitar over surf drums, with horns and vibes",
    ),
    e("bwv-1060-trumpet-duet-excerpt.rg", "classical", CLASSICAL, "Bach arranged for two trumpets"),
    e(
        "children.rg",
        "piano improvisation",
        Filing::Into(Style::Pop, Provenance::Performed),
        "a recorded two-handed piano improvisation (track 'improvised by winges.y.'; onsets off \
         the grid, 50 velocities from 49 to 102, sustain pedal), diatonic C major at 96 bpm in \
         straight eighths and sixteenths: pop piano, not jazz (no swing, 2% chromatic notes)",
    ),
    e("doodle-q.rg", "classical", CLASSICAL, "a string-quartet exercise, two violins and two cellos"),
    e("exercise_notation.rg", TEST, Filing::Out, TEST_WHY),
    e("glazunov-for-solo-and-piano-with-cue.rg", "classical", CLASSICAL, "Glazunov, Op. 71, cello and piano"),
    e("glazunov.rg", "classical", CLASSICAL, "Glazunov, Op. 71, cello and piano"),
    e("headers-and-unicode-lyrics.rg", TEST, Filing::Out, TEST_WHY),
    e("himno_de_riego.rg", "anthem", CLASSICAL, "the 19th-century Spanish anthem, one piano staff"),
    e("interpretation-example.rg", TEST, Filing::Out, TEST_WHY),
    e("let-all-mortal-flesh.rg", "hymn", CLASSICAL, "a hymn setting, organ chords"),
    e("lilypond-alternative-endings.rg", TEST, Filing::Out, TEST_WHY),
    e("lilypond-alternative-endings_new-way.rg", TEST, Filing::Out, TEST_WHY),
    e("lilypond-directives.rg", TEST, Filing::Out, TEST_WHY),
    e("lilypond-staff-groupings.rg", TEST, Filing::Out, TEST_WHY),
    e("lilypond-tied-grace-notes.rg", TEST, Filing::Out, TEST_WHY),
    e("lilypond-up-down.rg", TEST, Filing::Out, TEST_WHY),
    e("logical-segments-4.rg", TEST, Filing::Out, TEST_WHY),
    e("mandolin-sonatina.rg", "classical", CLASSICAL, "Beethoven, mandolin and piano"),
    e("marks-test.rg", TEST, Filing::Out, TEST_WHY),
    e("mozart-quartet.rg", "classical", CLASSICAL, "Mozart, string quartet"),
    e("notation-for-string-orchestra-in-D-minor.rg", TEST, Filing::Out, TEST_WHY),
    e(
        "perfect-moment.rg",
        "synth pop",
        POP_COMPOSED,
        "D. Michael McIntyre: a slow synth-pop piece, held chords, eighth-note arpeggios and a lead",
    ),
    e("ravel-pc-gmaj-adagio.rg", "classical", CLASSICAL, "Ravel, Piano Concerto in G, Adagio, piano part"),
    e("sicut-locutus.rg", TEST, Filing::Out, TEST_WHY),
    e(
        "stormy-riders.rg",
        "rock",
        ROCK_COMPOSED,
        "Steve Conrad, 'apologies to Jim Morrison et al': a Doors pastiche, guitars and organ over a rock kit",
    ),
    e("test_selection.rg", TEST, Filing::Out, TEST_WHY),
    e("test_tuplets.rg", TEST, Filing::Out, TEST_WHY),
    e(
        "the-rose-garden.rg",
        "light pop",
        POP_COMPOSED,
        "D. Michael McIntyre: dulcimers, kalimba, flute, vibes and fretless bass over light \
         percussion, straight eighths",
    ),
    e("vivaldi-cs3mv2.rg", "classical", CLASSICAL, "Vivaldi, cello sonata, cello and piano"),
    e("vivaldi_op44_11_1.rg", "classical", CLASSICAL, "Vivaldi, Concerto for flautino, Op. 44 No. 11"),
];

fn example(name: &str) -> Option<&'static Example> {
    EXAMPLES.iter().find(|x| x.name == name)
}

/// One note, in Rosegarden ticks from the composition's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SongNote {
    pub start: i64,
    pub end: i64,
    pub pitch: u8,
    pub velocity: u8,
}

/// One Rosegarden track as played.
#[derive(Debug, Clone, PartialEq)]
pub struct SongTrack {
    pub label: String,
    pub program: u8,
    pub drums: bool,
    pub notes: Vec<SongNote>,
    /// Sustain pedal: (tick, down).
    pub pedal: Vec<(i64, bool)>,
}

/// What [`read_song`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Song {
    pub tracks: Vec<SongTrack>,
    /// (tick, quarter notes per minute), sorted; the composition default first at the earliest time.
    pub tempos: Vec<(i64, f64)>,
    /// (tick, numerator, denominator).
    pub time_signatures: Vec<(i64, u8, u8)>,
    pub title: String,
    pub composer: String,
    pub copyright: String,
    /// Labels of the muted tracks left out.
    pub muted: Vec<String>,
}

#[derive(Debug, Default)]
struct Instrument {
    program: u8,
    percussion: bool,
    midi: bool,
}

#[derive(Debug, Default)]
struct TrackInfo {
    label: String,
    instrument: String,
    muted: bool,
}

#[derive(Debug, Default, Clone)]
struct RawNote {
    start: i64,
    end: i64,
    pitch: i64,
    velocity: i64,
    tied_forward: bool,
    tied_back: bool,
}

#[derive(Debug, Default)]
struct Segment {
    track: String,
    start: i64,
    end_marker: Option<i64>,
    repeat: bool,
    transpose: i64,
    delay: i64,
    notes: Vec<RawNote>,
    pedal: Vec<(i64, bool)>,
}

fn int(tag: &Tag, key: &str) -> Result<Option<i64>> {
    match tag.attr(key) {
        None => Ok(None),
        Some(v) => v.trim().parse::<i64>().map(Some).with_context(|| format!("attribute {key}={v:?} is not a number")),
    }
}

/// The event being read: its type, time, duration and properties so far.
#[derive(Debug, Default)]
struct OpenEvent {
    kind: String,
    time: i64,
    duration: i64,
    props: BTreeMap<String, String>,
}

/// Read a song from its (decompressed) XML text.
pub fn read_song(xml: &str) -> Result<Song> {
    let tags = tags(xml)?;
    let mut instruments: BTreeMap<String, Instrument> = BTreeMap::new();
    let mut tracks: Vec<(String, TrackInfo)> = Vec::new();
    let mut segments: Vec<Segment> = Vec::new();
    let mut tempos: Vec<(i64, f64)> = Vec::new();
    let mut default_qpm = DEFAULT_QPM;
    let mut time_signatures = Vec::new();
    let mut metadata: BTreeMap<String, String> = BTreeMap::new();
    let mut end_marker: Option<i64> = None;
    let mut in_metadata = false;
    let mut instrument: Option<String> = None;
    let mut segment: Option<Segment> = None;
    let mut now = 0i64;
    let mut in_chord = false;
    let mut chord_duration = 0i64;
    let mut event: Option<OpenEvent> = None;
    let mut saw_root = false;
    for tag in &tags {
        match tag {
            Tag::Start { name, empty, .. } => {
                let ctx = || format!("<{name}>");
                match name.as_str() {
                    "rosegarden-data" => saw_root = true,
                    "composition" => {
                        end_marker = int(tag, "endMarker").with_context(ctx)?;
                        if let Some(t) = int(tag, "compositionDefaultTempo").with_context(ctx)? {
                            default_qpm = t as f64 / 100_000.0;
                        } else if let Some(t) = tag.attr("defaultTempo").and_then(|v| v.parse::<f64>().ok()) {
                            default_qpm = t;
                        }
                    }
                    "metadata" => in_metadata = !empty,
                    "property" if in_metadata && event.is_none() => {
                        if let (Some(k), Some(v)) = (tag.attr("name"), tag.attr("value")) {
                            metadata.insert(k.to_string(), v.trim().to_string());
                        }
                    }
                    "track" if segment.is_none() => {
                        let id = tag.attr("id").with_context(|| "<track> without id".to_string())?;
                        tracks.push((
                            id.to_string(),
                            TrackInfo {
                                label: tag.attr("label").unwrap_or("").trim().to_string(),
                                instrument: tag.attr("instrument").unwrap_or("").to_string(),
                                muted: tag.attr("muted") == Some("true"),
                            },
                        ));
                    }
                    "tempo" if segment.is_none() => {
                        let time = int(tag, "time").with_context(ctx)?.unwrap_or(0);
                        let qpm = match (int(tag, "tempo").with_context(ctx)?, int(tag, "bph").with_context(ctx)?) {
                            (Some(t), _) => t as f64 / 100_000.0,
                            (None, Some(bph)) => bph as f64 / 60.0,
                            (None, None) => bail!("<tempo> at {time} gives neither tempo nor bph"),
                        };
                        if qpm <= 0.0 {
                            bail!("<tempo> at {time}: {qpm} quarter notes a minute");
                        }
                        tempos.push((time, qpm));
                    }
                    "timesignature" if segment.is_none() => {
                        let time = int(tag, "time").with_context(ctx)?.unwrap_or(0);
                        let num = int(tag, "numerator").with_context(ctx)?.unwrap_or(4);
                        let den = int(tag, "denominator").with_context(ctx)?.unwrap_or(4);
                        time_signatures.push((time, num.clamp(1, 255) as u8, den.clamp(1, 128) as u8));
                    }
                    "instrument" => {
                        let id = tag.attr("id").with_context(|| "<instrument> without id".to_string())?;
                        let channel = int(tag, "channel").with_context(ctx)?.unwrap_or(0).clamp(0, 15) as u8;
                        instruments.insert(
                            id.to_string(),
                            Instrument {
                                midi: tag.attr("type") == Some("midi"),
                                percussion: channel == DRUMS,
                                program: 0,
                            },
                        );
                        instrument = (!empty).then(|| id.to_string());
                    }
                    "bank" => {
                        if let Some(i) = instrument.as_ref().and_then(|id| instruments.get_mut(id)) {
                            i.percussion |= tag.attr("percussion") == Some("true");
                        }
                    }
                    "program" => {
                        if let (Some(i), Some(p)) =
                            (instrument.as_ref().and_then(|id| instruments.get_mut(id)), int(tag, "id").ok().flatten())
                        {
                            i.program = p.clamp(0, 127) as u8;
                        }
                    }
                    "segment" => {
                        if segment.is_some() {
                            bail!("a <segment> inside another");
                        }
                        let start = int(tag, "start").with_context(ctx)?.unwrap_or(0);
                        now = start;
                        in_chord = false;
                        chord_duration = 0;
                        let playable =
                            tag.attr("triggerid").is_none() && tag.attr("type").unwrap_or("internal") != "audio";
                        let seg = Segment {
                            track: tag.attr("track").unwrap_or("").to_string(),
                            start,
                            end_marker: int(tag, "endmarker").with_context(ctx)?,
                            repeat: tag.attr("repeat") == Some("true"),
                            transpose: int(tag, "transpose").with_context(ctx)?.unwrap_or(0),
                            delay: int(tag, "delay").with_context(ctx)?.unwrap_or(0),
                            ..Default::default()
                        };
                        // Trigger segments and audio are read (for the running time) but not kept.
                        segment = Some(seg);
                        if !playable {
                            if let Some(s) = segment.as_mut() {
                                s.track = String::new();
                            }
                        }
                        if *empty {
                            segments.extend(segment.take());
                        }
                    }
                    "chord" if segment.is_some() => {
                        in_chord = true;
                        chord_duration = 0;
                    }
                    "event" if segment.is_some() => {
                        if event.is_some() {
                            bail!("an <event> inside another");
                        }
                        let time = match (int(tag, "absoluteTime")?, int(tag, "timeOffset")?) {
                            (Some(t), _) => t,
                            (None, Some(off)) => now + off,
                            (None, None) => now,
                        };
                        let duration = int(tag, "duration")?.unwrap_or(0);
                        if duration < 0 {
                            bail!("an event at {time} lasts {duration} ticks");
                        }
                        if !in_chord {
                            now = time + duration;
                        } else if duration != 0 && (chord_duration == 0 || duration < chord_duration) {
                            chord_duration = duration;
                        }
                        event = Some(OpenEvent {
                            kind: tag.attr("type").unwrap_or("").to_string(),
                            time,
                            duration,
                            props: BTreeMap::new(),
                        });
                        if *empty {
                            finish_event(event.take(), segment.as_mut());
                        }
                    }
                    "property" | "nproperty" => {
                        if let (Some(ev), Some(k)) = (event.as_mut(), tag.attr("name")) {
                            let v = tag.attr("int").or(tag.attr("bool")).or(tag.attr("string")).unwrap_or("");
                            ev.props.insert(k.to_string(), v.to_string());
                        }
                    }
                    _ => {}
                }
            }
            Tag::End { name } => match name.as_str() {
                "metadata" => in_metadata = false,
                "instrument" => instrument = None,
                "chord" if segment.is_some() => {
                    now += chord_duration;
                    in_chord = false;
                    chord_duration = 0;
                }
                "event" => finish_event(event.take(), segment.as_mut()),
                "segment" => segments.extend(segment.take()),
                _ => {}
            },
        }
    }
    if !saw_root {
        bail!("not a Rosegarden document (no <rosegarden-data>)");
    }
    let composition_end =
        end_marker.unwrap_or_else(|| segments.iter().flat_map(|s| s.notes.iter().map(|n| n.end)).max().unwrap_or(0));
    let mut song = Song {
        tracks: Vec::new(),
        tempos: Vec::new(),
        time_signatures,
        title: metadata.get("title").cloned().unwrap_or_default(),
        composer: metadata.get("composer").cloned().unwrap_or_default(),
        copyright: metadata.get("copyright").cloned().unwrap_or_default(),
        muted: Vec::new(),
    };
    tempos.sort_by_key(|t| t.0);
    let first_time = segments.iter().map(|s| s.start).min().unwrap_or(0).min(0);
    if tempos.first().is_none_or(|t| t.0 > first_time) {
        tempos.insert(0, (first_time, default_qpm));
    }
    song.tempos = tempos;
    for (id, info) in &tracks {
        let segs: Vec<&Segment> = segments.iter().filter(|s| &s.track == id).collect();
        if segs.iter().all(|s| s.notes.is_empty()) {
            continue;
        }
        if info.muted {
            song.muted.push(info.label.clone());
            continue;
        }
        let inst = instruments.get(&info.instrument);
        // A soft synth has no General MIDI program or bank: its drums are known only by name.
        let drums =
            inst.is_some_and(|i| i.percussion) || (inst.is_none_or(|i| !i.midi) && label_says_drums(&info.label));
        let mut notes = Vec::new();
        let mut pedal = Vec::new();
        for s in &segs {
            let next_start = segments.iter().filter(|o| &o.track == id && o.start > s.start).map(|o| o.start).min();
            let (n, p) = play_segment(s, next_start, composition_end);
            notes.extend(n);
            pedal.extend(p);
        }
        notes.sort_by_key(|n| (n.start, n.pitch, n.end));
        pedal.sort();
        song.tracks.push(SongTrack {
            label: info.label.clone(),
            program: inst.map_or(0, |i| i.program),
            drums,
            notes,
            pedal,
        });
    }
    Ok(song)
}

fn label_says_drums(label: &str) -> bool {
    let l = label.to_lowercase();
    ["drum", "perc", "hat", "kit"].iter().any(|w| l.contains(w))
}

fn finish_event(ev: Option<OpenEvent>, seg: Option<&mut Segment>) {
    let (Some(ev), Some(seg)) = (ev, seg) else { return };
    let num = |k: &str| ev.props.get(k).and_then(|v| v.parse::<i64>().ok());
    let flag = |k: &str| ev.props.get(k).is_some_and(|v| v == "true");
    match ev.kind.as_str() {
        "note" => {
            let Some(pitch) = num("pitch") else { return };
            seg.notes.push(RawNote {
                start: ev.time,
                end: ev.time + ev.duration,
                pitch,
                velocity: num("velocity").unwrap_or(i64::from(DEFAULT_VELOCITY)),
                tied_forward: flag("tiedforward"),
                tied_back: flag("tiedback"),
            });
        }
        "controller" if num("number") == Some(i64::from(SUSTAIN_CC)) => {
            seg.pedal.push((ev.time, num("value").unwrap_or(0) >= 64));
        }
        _ => {}
    }
}

/// Tied notes joined: a note tied back to a note of its pitch that ends where
/// it starts and is tied forward extends that note instead of sounding again.
fn join_ties(mut notes: Vec<RawNote>) -> Vec<RawNote> {
    notes.sort_by_key(|n| (n.start, n.pitch));
    let mut out: Vec<RawNote> = Vec::with_capacity(notes.len());
    let mut open: BTreeMap<i64, usize> = BTreeMap::new();
    for n in notes {
        if n.tied_back {
            if let Some(&i) = open.get(&n.pitch) {
                if out[i].tied_forward && out[i].end == n.start {
                    out[i].end = n.end;
                    out[i].tied_forward = n.tied_forward;
                    continue;
                }
            }
        }
        open.insert(n.pitch, out.len());
        out.push(n);
    }
    out
}

/// A segment's notes and pedal as played: joined, transposed, delayed, cut
/// at its end marker and repeated when it repeats.
fn play_segment(s: &Segment, next_start: Option<i64>, composition_end: i64) -> (Vec<SongNote>, Vec<(i64, bool)>) {
    let notes = join_ties(s.notes.clone());
    let natural_end = notes.iter().map(|n| n.end).chain(s.pedal.iter().map(|p| p.0)).max().unwrap_or(s.start);
    let end = s.end_marker.unwrap_or(natural_end).max(s.start);
    let length = end - s.start;
    let repeat_end = if s.repeat && length > 0 {
        match next_start {
            Some(t) if t >= end => t,
            Some(_) => end,
            None => composition_end.max(end),
        }
    } else {
        end
    };
    let mut out = Vec::new();
    let mut pedal = Vec::new();
    let mut copy_start = s.start;
    while copy_start < repeat_end {
        let shift = copy_start - s.start;
        let copy_end = (copy_start + length).min(repeat_end);
        for n in &notes {
            let start = n.start + shift;
            if start >= copy_end || n.start < s.start {
                continue;
            }
            let stop = (n.end + shift).min(copy_end);
            let pitch = n.pitch + s.transpose;
            if !(0..=127).contains(&pitch) || stop <= start {
                continue;
            }
            out.push(SongNote {
                start: start + s.delay,
                end: stop + s.delay,
                pitch: pitch as u8,
                velocity: n.velocity.clamp(1, 127) as u8,
            });
        }
        for &(t, down) in &s.pedal {
            if t >= s.start && t + shift < copy_end {
                pedal.push((t + shift + s.delay, down));
            }
        }
        if length <= 0 {
            break;
        }
        copy_start += length;
    }
    (out, pedal)
}

/// The song as a Standard MIDI File: a conductor track (tempo, time
/// signatures), then one track per Rosegarden track with its name and
/// program, drums on channel 10 and the others on channels of their own
/// (cycling past 16 tracks: the band reduction's parts are per track).
pub fn to_midi(song: &Song) -> Result<Vec<u8>> {
    let first = song
        .tracks
        .iter()
        .flat_map(|t| t.notes.iter().map(|n| n.start).chain(t.pedal.iter().map(|p| p.0)))
        .chain(song.tempos.iter().map(|t| t.0))
        .min()
        .unwrap_or(0)
        .min(0);
    let tick = |t: i64| -> Result<u64> {
        u64::try_from(t - first).with_context(|| format!("time {t} before the song's start {first}"))
    };
    let mut conductor: Vec<(u64, u8, TrackEventKind<'_>)> = Vec::new();
    for &(t, qpm) in &song.tempos {
        let us = (60_000_000.0 / qpm).round().clamp(1.0, f64::from(0xff_ffff)) as u32;
        conductor.push((tick(t.max(first))?, 0, TrackEventKind::Meta(MetaMessage::Tempo(u24::new(us)))));
    }
    for &(t, num, den) in &song.time_signatures {
        let den_pow = (den.max(1) as f64).log2().round() as u8;
        conductor.push((tick(t.max(first))?, 0, TrackEventKind::Meta(MetaMessage::TimeSignature(num, den_pow, 24, 8))));
    }
    let mut tracks = vec![finish_track(conductor)];
    let mut next_channel = 0u8;
    for t in &song.tracks {
        let channel = if t.drums {
            DRUMS
        } else {
            let c = next_channel;
            next_channel = (next_channel + 1) % 16;
            if next_channel == DRUMS {
                next_channel += 1;
            }
            c
        };
        let ch = u4::new(channel);
        let mut ev: Vec<(u64, u8, TrackEventKind<'_>)> = vec![
            (0, 0, TrackEventKind::Meta(MetaMessage::TrackName(t.label.as_bytes()))),
            (
                0,
                1,
                TrackEventKind::Midi {
                    channel: ch,
                    message: MidiMessage::ProgramChange { program: u7::new(t.program & 0x7f) },
                },
            ),
        ];
        for n in &t.notes {
            let key = u7::new(n.pitch & 0x7f);
            // Offs sort before ons at one tick, so a repeated key sounds again.
            ev.push((
                tick(n.end)?,
                2,
                TrackEventKind::Midi { channel: ch, message: MidiMessage::NoteOff { key, vel: u7::new(0) } },
            ));
            ev.push((
                tick(n.start)?,
                4,
                TrackEventKind::Midi {
                    channel: ch,
                    message: MidiMessage::NoteOn { key, vel: u7::new(n.velocity & 0x7f) },
                },
            ));
        }
        for &(t, down) in &t.pedal {
            ev.push((
                tick(t)?,
                3,
                TrackEventKind::Midi {
                    channel: ch,
                    message: MidiMessage::Controller {
                        controller: u7::new(SUSTAIN_CC),
                        value: u7::new(if down { 127 } else { 0 }),
                    },
                },
            ));
        }
        tracks.push(finish_track(ev));
    }
    let smf = Smf { header: Header::new(Format::Parallel, Timing::Metrical(u15::new(TICKS_PER_QUARTER))), tracks };
    let mut buf = Vec::new();
    smf.write_std(&mut buf).context("cannot write the MIDI file")?;
    Ok(buf)
}

fn finish_track(mut ev: Vec<(u64, u8, TrackEventKind<'_>)>) -> Vec<TrackEvent<'_>> {
    ev.sort_by_key(|e| (e.0, e.1));
    let mut now = 0u64;
    let mut out: Vec<TrackEvent<'_>> = ev
        .into_iter()
        .map(|(t, _, kind)| {
            let delta = u28::new(((t - now).min(0x0fff_ffff)) as u32);
            now = t;
            TrackEvent { delta, kind }
        })
        .collect();
    out.push(TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) });
    out
}

/// The text of a gzip-compressed Rosegarden file.
pub fn gunzip(data: &[u8]) -> Result<String> {
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(data).read_to_string(&mut text).context("not gzip-compressed UTF-8 text")?;
    Ok(text)
}

/// Where the executable is in the unpacked package.
pub const EXECUTABLE: &str = "usr/bin/rosegarden";

/// The examples filed into `styles`; those filed elsewhere or out are listed
/// (as pop's dropped rows) with their genre.
pub fn candidates(unpacked: &Path, cache: &Path, styles: &[Style], reduction: BandReduction) -> Result<Vec<Candidate>> {
    let exe = unpacked.join(EXECUTABLE);
    let binary = std::fs::read(&exe).with_context(|| format!("{}: cannot read", exe.display()))?;
    let resources = super::qrc::resources(&binary, "examples").with_context(|| format!("{}", exe.display()))?;
    let licence = format!("{} (debian/copyright of rosegarden)", fetch::debian_licence(unpacked, ROSEGARDEN.name())?);
    let mut result = Vec::new();
    let mut seen = 0usize;
    for r in resources.iter().filter(|r| r.path.starts_with("/examples/") && r.path.ends_with(".rg")) {
        seen += 1;
        let name = r.path.trim_start_matches("/examples/");
        let source_path = format!("{EXECUTABLE}:{}", r.path);
        let ex = example(name).with_context(|| {
            format!(
                "{}: no genre on record for {name}; look at it and file it in xtask/src/data/rosegarden.rs",
                ROSEGARDEN.source
            )
        })?;
        let (style, provenance) = match ex.filing {
            Filing::Into(s, p) => (s, p),
            Filing::HeldBack(_) | Filing::Out => (Style::Pop, Provenance::Composed),
        };
        if !styles.contains(&style) {
            continue;
        }
        let mut cand = Candidate {
            style,
            family: "debian/rosegarden".into(),
            source: ROSEGARDEN.source.into(),
            source_version: ROSEGARDEN.version.into(),
            source_path,
            licence: licence.clone(),
            provenance,
            comment: String::new(),
            rel_path: PathBuf::from(format!("midi/rosegarden/{}.mid", sanitize_path(name.trim_end_matches(".rg")))),
            origin: Origin::LeftOut(DropReason::GenreFitsNoStyle(String::new())),
        };
        match ex.filing {
            Filing::HeldBack(s) => {
                cand.origin = Origin::LeftOut(DropReason::HeldBack(format!(
                    "{}: {}; proposed for the next {} rebuild (that corpus is frozen this session)",
                    ex.genre,
                    ex.why,
                    s.name()
                )));
            }
            Filing::Out => {
                cand.origin = Origin::LeftOut(DropReason::GenreFitsNoStyle(format!("{}: {}", ex.genre, ex.why)));
            }
            Filing::Into(..) => {
                let song = if r.zlib {
                    bail!("{source}: zlib-compressed resource", source = cand.source_path)
                } else {
                    gunzip(&r.data).and_then(|t| read_song(&t)).with_context(|| cand.source_path.clone())?
                };
                let bytes = to_midi(&song).with_context(|| cand.source_path.clone())?;
                let (midi, summary) = super::games::reduce_cached(&bytes, cache, reduction)?;
                let title = match (song.title.as_str(), song.composer.as_str()) {
                    ("", _) => String::new(),
                    (t, "") => format!("\"{t}\"; "),
                    (t, c) => format!("\"{t}\" by {c}; "),
                };
                let muted = if song.muted.is_empty() {
                    String::new()
                } else {
                    format!("; muted tracks left out: {}", song.muted.join(", "))
                };
                let made = if provenance == Provenance::Performed { "recorded" } else { "sequenced by hand" };
                cand.comment =
                    format!("{title}{}: {}; read from Rosegarden XML, {made}; {summary}{muted}", ex.genre, ex.why);
                if !song.copyright.is_empty() && song.copyright.chars().any(char::is_alphanumeric) {
                    cand.licence.push_str(&format!("{}{}", super::FILE_STATES, song.copyright));
                }
                cand.origin = Origin::Midi(midi);
            }
        }
        result.push(cand);
    }
    if seen != EXAMPLES.len() {
        bail!(
            "{}: {seen} examples where the table files {}; review xtask/src/data/rosegarden.rs",
            exe.display(),
            EXAMPLES.len()
        );
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SONG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE rosegarden-data>
<rosegarden-data version="22.12">
<composition compositionDefaultTempo="12000000" endMarker="15360">
  <track id="0" label="Piano" muted="false" instrument="2000"/>
  <track id="1" label="drums" muted="false" instrument="2009"/>
  <track id="2" label="Pad" muted="true" instrument="2001"/>
  <timesignature time="0" numerator="3" denominator="4"/>
  <tempo time="0" bph="5760" tempo="9600000"/>
  <metadata><property name="title" value="Test &amp; Song"/><property name="copyright" value="2004 Someone"/></metadata>
</composition>
<segment track="0" start="0" endmarker="3840">
  <event type="note" duration="960"><property name="pitch" int="60"/><property name="velocity" int="90"/></event>
  <chord>
    <event type="note" duration="960"><property name="pitch" int="64"/></event>
    <event type="note" duration="480"><property name="pitch" int="67"/><property name="tiedforward" bool="true"/></event>
  </chord>
  <event type="note" duration="480"><property name="pitch" int="67"/><property name="tiedback" bool="true"/></event>
  <event type="controller" timeOffset="-480"><property name="number" int="64"/><property name="value" int="127"/></event>
  <event type="rest" duration="960" timeOffset="480"/>
  <event type="note" duration="960" absoluteTime="3000"><property name="pitch" int="72"/></event>
</segment>
<segment track="1" start="0" repeat="true" endmarker="1920">
  <event type="note" duration="960"><property name="pitch" int="36"/></event>
</segment>
<segment track="1" start="7680">
  <event type="note" duration="960"><property name="pitch" int="38"/></event>
</segment>
<segment track="2" start="0"><event type="note" duration="960"><property name="pitch" int="50"/></event></segment>
<segment track="0" start="0" triggerid="1"><event type="note" duration="10"><property name="pitch" int="90"/></event></segment>
<studio>
  <device id="0" type="midi">
    <instrument id="2000" channel="0" type="midi"><bank percussion="false"/><program id="4"/></instrument>
    <instrument id="2009" channel="9" type="midi"><program id="0"/></instrument>
  </device>
</studio>
</rosegarden-data>"#;

    #[test]
    fn a_song_plays_as_rosegarden_plays_it() {
        let song = read_song(SONG).expect("reads");
        assert_eq!(song.title, "Test & Song");
        assert_eq!(song.muted, vec!["Pad".to_string()]);
        assert_eq!(song.tempos, vec![(0, 96.0)]);
        assert_eq!(song.time_signatures, vec![(0, 3, 4)]);
        assert_eq!(song.tracks.len(), 2);
        let piano = &song.tracks[0];
        assert_eq!((piano.program, piano.drums), (4, false));
        let n: Vec<(i64, i64, u8)> = piano.notes.iter().map(|n| (n.start, n.end, n.pitch)).collect();
        // 60 at 0; the chord at 960 (64 a beat, 67 tied on for a beat in all);
        // the chord advances by its shortest note, so the tied half starts at
        // 1440; the rest follows the controller's offset; 72 at its absolute time.
        assert_eq!(n, vec![(0, 960, 60), (960, 1920, 64), (960, 1920, 67), (3000, 3840, 72)]);
        assert_eq!(piano.notes[0].velocity, 90);
        assert_eq!(piano.notes[1].velocity, DEFAULT_VELOCITY);
        assert_eq!(piano.pedal, vec![(1440, true)]);
        let drums = &song.tracks[1];
        assert!(drums.drums);
        // Repeats every 1920 ticks until the next segment on the track at 7680.
        let starts: Vec<i64> = drums.notes.iter().map(|n| n.start).collect();
        assert_eq!(starts, vec![0, 1920, 3840, 5760, 7680]);
    }

    #[test]
    fn the_midi_file_keeps_tracks_tempo_and_drums_apart() {
        let song = read_song(SONG).expect("reads");
        let bytes = to_midi(&song).expect("writes");
        let perf = cadenza_core::midi::parse(&bytes, &Default::default()).expect("parses");
        // Drums dropped by the reader; the tie sounds once; 96 bpm: a beat is 0.625 s.
        assert_eq!(perf.notes.len(), 4);
        let last = perf.notes.iter().find(|n| n.pitch == 72).expect("72");
        assert!((last.start_s - 3000.0 / 960.0 * 0.625).abs() < 1e-3, "{}", last.start_s);
        let smf = Smf::parse(&bytes).expect("smf");
        let parts = super::super::band::parts(&smf);
        assert_eq!(parts.len(), 1);
        assert_eq!((parts[0].name.as_str(), parts[0].program), ("Piano", 4));
    }

    #[test]
    fn broken_songs_are_refused_with_the_reason() {
        let e = read_song("<x/>").expect_err("no root");
        assert!(e.to_string().contains("not a Rosegarden document"), "{e}");
        let bad = SONG.replace("duration=\"960\" absoluteTime", "duration=\"-5\" absoluteTime");
        let e = read_song(&bad).expect_err("negative");
        assert!(format!("{e:#}").contains("lasts -5 ticks"), "{e:#}");
        let bad = SONG.replace("bph=\"5760\" tempo=\"9600000\"", "");
        assert!(format!("{:#}", read_song(&bad).expect_err("tempo")).contains("neither tempo nor bph"));
        assert!(gunzip(b"not gzip").is_err());
    }

    #[test]
    fn every_example_is_filed_once() {
        let mut names: Vec<&str> = EXAMPLES.iter().map(|e| e.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
        assert!(example("children.rg").is_some_and(|e| e.filing == Filing::Into(Style::Pop, Provenance::Performed)));
    }

    /// The real package, when a data build has unpacked it.
    #[test]
    fn the_real_examples_read() {
        let dir = crate::env::repo_root().join("data/cache").join("unpacked").join(ROSEGARDEN.archive);
        let exe = dir.join(EXECUTABLE);
        let Ok(binary) = std::fs::read(&exe) else {
            eprintln!("skipped: {} is not there (run cargo xtask data --styles pop)", exe.display());
            return;
        };
        let res = super::super::qrc::resources(&binary, "examples").expect("resources");
        let children = res.iter().find(|r| r.path == "/examples/children.rg").expect("children.rg");
        let song = read_song(&gunzip(&children.data).expect("gzip")).expect("song");
        let notes: usize = song.tracks.iter().map(|t| t.notes.len()).sum();
        assert!(notes > 1000, "{notes}");
        assert!(song.tracks.iter().any(|t| !t.pedal.is_empty()));
        let perf = cadenza_core::midi::parse(&to_midi(&song).expect("midi"), &Default::default()).expect("parses");
        assert!(perf.duration_s() > 60.0, "{}", perf.duration_s());
    }
}
