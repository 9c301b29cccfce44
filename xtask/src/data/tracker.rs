//! Tracker modules: the MOD, S3M, XM and IT files of four Debian game
//! packages (`heroes-sound-tracks`, `tecnoballz-data`, `pingus-data`,
//! `tuxmath-data`). A module is patterns of rows, each row a cell per
//! channel (note, instrument, volume, effect), played in the order list's
//! sequence at `speed` ticks a row and `tempo` (2.5 / tempo seconds a tick).
//!
//! [`read_module`] reads the patterns, instrument names and sample lengths of
//! the four formats, and [`play`] walks the order list once as a tracker
//! would: speed and tempo changes, position jumps and pattern breaks,
//! pattern delays, note delays and cuts, key-offs, and the volume column.
//! A note lasts until its channel's next note, key-off or cut, and never
//! past the end of a sample that does not loop. A jump back to a row
//! already played (a song's loop) ends the song; pattern loops play once.
//!
//! Pitch: the written note is the sounding one, since a tracker musician
//! tunes each sample (its rate, relative note or finetune) until it is; MOD
//! C-2, S3M and XM C-4 and IT C-5 (the notes that play a sample at its own
//! rate) are MIDI 60, and an IT instrument's keyboard may play a note as
//! another. The octave is the musician's choice of sample, so a bass
//! written an octave up stays there.
//!
//! Instruments become General MIDI programs by their names
//! ([`program_of`]); a sample that the song only ever strikes on one or two
//! notes, never held past half a second, is a drum ([`is_drum`]). Modules
//! are filed by hand in [`HEROES`], [`PINGUS`], [`TECNOBALLZ`] and
//! [`TUXMATH`]: Pingus's light-pop level tunes to pop, the techno, trance,
//! house and demoscene modules to electronic; the Amiga chiptunes, jingles,
//! marches and world pieces fit no shipped style.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cadenza_core::dataset::Provenance;

use super::band::{self, BandReduction};
use super::build::DropReason;
use super::fetch::{self, Pin, HEROES_SOUND_TRACKS, PINGUS_DATA, TECNOBALLZ_DATA, TUXMATH_DATA};
use super::games::{instrument_shares, lookup, reduce_cached, GameTrack};
use super::music21::sanitize_path;
use super::rosegarden::{to_midi, Song, SongNote, SongTrack, TICKS_PER_QUARTER};
use super::{Candidate, Origin, Style};

/// A cell's note.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Note {
    None,
    /// A note to strike, as written: 60 is the format's own-rate note (see the
    /// module docs); the instrument's [`Instrument::shift`] is still to add.
    On(f64),
    /// Key off (XM 97, IT 255): the note ends.
    Off,
    /// Note cut (S3M 254, IT 254): the note ends.
    Cut,
}

/// What of a cell's effect changes timing or length; the rest (slides,
/// vibrato, arpeggio, panning) is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Ticks a row.
    Speed(u8),
    /// Tempo: 2.5 / tempo seconds a tick.
    Tempo(u8),
    /// To this order position, row 0.
    Jump(u8),
    /// To this row of the next order position.
    Break(u8),
    /// Strike the note this many ticks into the row.
    NoteDelay(u8),
    /// End the note this many ticks into the row.
    NoteCut(u8),
    /// Play the row this many more times (notes once).
    PatternDelay(u8),
    /// Set the note's volume, 0-64.
    Volume(u8),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    pub note: Note,
    /// 1-based instrument (or sample, without instruments); 0 keeps the channel's.
    pub instrument: u8,
    /// The volume column, 0-64.
    pub volume: Option<u8>,
    pub effect: Effect,
}

impl Cell {
    const EMPTY: Cell = Cell { note: Note::None, instrument: 0, volume: None, effect: Effect::None };
}

/// What playing needs of an instrument.
#[derive(Debug, Clone, PartialEq)]
pub struct Instrument {
    /// Its name and its samples' names, as the file spells them.
    pub name: String,
    /// Default volume, 0-64.
    pub volume: u8,
    /// Seconds of sample at MIDI 60, when the sample does not loop (`None`: it loops or is unknown).
    pub one_shot_s: Option<f64>,
    /// Semitones each note (0-127, as in [`Note::On`]) sounds away from it:
    /// an IT keyboard's remapping.
    pub shift: Vec<f64>,
}

impl Instrument {
    fn new(name: String, volume: u8, one_shot_s: Option<f64>, shift: f64) -> Instrument {
        Instrument { name, volume, one_shot_s, shift: vec![shift; 128] }
    }

    /// The MIDI pitch of `note` on this instrument.
    pub fn pitch(&self, note: f64) -> f64 {
        note + self.shift.get(note.round().clamp(0.0, 127.0) as usize).copied().unwrap_or(0.0)
    }
}

/// One pattern: rows of a cell per channel.
pub type Pattern = Vec<Vec<Cell>>;

#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    pub format: &'static str,
    pub title: String,
    pub channels: usize,
    pub instruments: Vec<Instrument>,
    /// Pattern numbers in play order, the skip markers (254) removed; 255 ends the song.
    pub orders: Vec<u8>,
    pub patterns: Vec<Pattern>,
    /// Ticks a row at the song's start.
    pub speed: u8,
    /// Tempo at the song's start: a tick lasts 2.5 / tempo seconds.
    pub tempo: u8,
}

/// Little-endian and fixed-width reads that fail with where the file ran out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn slice(&self, at: usize, len: usize) -> Result<&[u8]> {
        at.checked_add(len)
            .and_then(|end| self.0.get(at..end))
            .with_context(|| format!("truncated: {len} bytes at {at} run past the end ({} bytes)", self.0.len()))
    }
    fn u8(&self, at: usize) -> Result<u8> {
        Ok(self.slice(at, 1)?[0])
    }
    fn u16(&self, at: usize) -> Result<u16> {
        let b = self.slice(at, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u16be(&self, at: usize) -> Result<u16> {
        let b = self.slice(at, 2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&self, at: usize) -> Result<u32> {
        let b = self.slice(at, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn text(&self, at: usize, len: usize) -> Result<String> {
        let raw = self.slice(at, len)?;
        let s: String =
            raw.iter().take_while(|&&c| c != 0).map(|&c| if c.is_ascii_graphic() { c as char } else { ' ' }).collect();
        Ok(s.trim().to_string())
    }
}

/// Read a module of any of the four formats, told apart by their magic bytes.
pub fn read_module(bytes: &[u8]) -> Result<Module> {
    if bytes.starts_with(b"Extended Module: ") {
        read_xm(bytes).context("XM")
    } else if bytes.starts_with(b"IMPM") {
        read_it(bytes).context("IT")
    } else if bytes.get(0x2c..0x30) == Some(b"SCRM") {
        read_s3m(bytes).context("S3M")
    } else if bytes.len() >= 1084 && mod_channels(&bytes[1080..1084]).is_some() {
        read_mod(bytes).context("MOD")
    } else {
        bail!("not a module Cadenza reads (MOD with a 31-sample tag, S3M, XM or IT)")
    }
}

/// The channel count a ProTracker-family tag names.
fn mod_channels(tag: &[u8]) -> Option<usize> {
    match tag {
        b"M.K." | b"M!K!" | b"FLT4" | b"4CHN" => Some(4),
        b"6CHN" => Some(6),
        b"8CHN" | b"OKTA" | b"CD81" => Some(8),
        [a, b, b'C', b'H' | b'N'] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Some(usize::from(a - b'0') * 10 + usize::from(b - b'0')).filter(|&n| n > 0)
        }
        [a, b'C', b'H', b'N'] if a.is_ascii_digit() => Some(usize::from(a - b'0')).filter(|&n| n > 0),
        _ => None,
    }
}

/// The ProTracker effects that matter here (shared by XM), from effect and parameter.
fn mod_effect(effect: u8, param: u8) -> Effect {
    match effect {
        0x0b => Effect::Jump(param),
        0x0c => Effect::Volume(param.min(64)),
        0x0d => Effect::Break((param >> 4) * 10 + (param & 0x0f)),
        0x0e => match param >> 4 {
            0x0c => Effect::NoteCut(param & 0x0f),
            0x0d => Effect::NoteDelay(param & 0x0f),
            0x0e => Effect::PatternDelay(param & 0x0f),
            _ => Effect::None,
        },
        0x0f if param == 0 => Effect::None,
        0x0f if param < 0x20 => Effect::Speed(param),
        0x0f => Effect::Tempo(param),
        _ => Effect::None,
    }
}

/// Seconds of a one-shot sample of `frames` frames at `rate_hz` frames a second at MIDI 60.
fn one_shot(frames: u32, looped: bool, rate_hz: f64) -> Option<f64> {
    (!looped && frames > 0 && rate_hz > 0.0).then(|| f64::from(frames) / rate_hz)
}

/// Amiga rate of a ProTracker sample at C-2, with its finetune (eighths of a semitone).
const AMIGA_C2_HZ: f64 = 8363.0;

fn read_mod(bytes: &[u8]) -> Result<Module> {
    let b = Bytes(bytes);
    let channels = mod_channels(b.slice(1080, 4)?).context("no channel tag")?;
    let mut instruments = Vec::new();
    for i in 0..31 {
        let at = 20 + 30 * i;
        let frames = u32::from(b.u16be(at + 22)?) * 2;
        let finetune = f64::from(((b.u8(at + 24)? & 0x0f) as i8) << 4 >> 4);
        let loop_len = u32::from(b.u16be(at + 28)?) * 2;
        let rate = AMIGA_C2_HZ * 2f64.powf(finetune / 96.0);
        instruments.push(Instrument::new(
            b.text(at, 22)?,
            b.u8(at + 25)?.min(64),
            one_shot(frames, loop_len > 2, rate),
            0.0,
        ));
    }
    let length = usize::from(b.u8(950)?).min(128);
    let table = b.slice(952, 128)?;
    let count = usize::from(table.iter().copied().max().unwrap_or(0)) + 1;
    let orders = table[..length].to_vec();
    let row_bytes = 4 * channels;
    let mut patterns = Vec::with_capacity(count);
    for p in 0..count {
        let data = b.slice(1084 + p * 64 * row_bytes, 64 * row_bytes).with_context(|| format!("pattern {p}"))?;
        let rows = data
            .chunks_exact(row_bytes)
            .map(|row| {
                row.chunks_exact(4)
                    .map(|c| {
                        let period = (u16::from(c[0] & 0x0f) << 8) | u16::from(c[1]);
                        Cell {
                            // C-2 (period 428) is MIDI 60.
                            note: if period == 0 {
                                Note::None
                            } else {
                                Note::On(60.0 + 12.0 * (428.0 / f64::from(period)).log2())
                            },
                            instrument: (c[0] & 0xf0) | (c[2] >> 4),
                            volume: None,
                            effect: mod_effect(c[2] & 0x0f, c[3]),
                        }
                    })
                    .collect()
            })
            .collect();
        patterns.push(rows);
    }
    Ok(Module { format: "MOD", title: b.text(0, 20)?, channels, instruments, orders, patterns, speed: 6, tempo: 125 })
}

/// The S3M and IT effects that matter here: command letters A (1) to Z.
fn it_effect(command: u8, param: u8, break_bcd: bool) -> Effect {
    match command {
        1 if param > 0 => Effect::Speed(param),
        2 => Effect::Jump(param),
        3 if break_bcd => Effect::Break((param >> 4) * 10 + (param & 0x0f)),
        3 => Effect::Break(param),
        19 => match param >> 4 {
            0x0c => Effect::NoteCut(param & 0x0f),
            0x0d => Effect::NoteDelay(param & 0x0f),
            0x0e => Effect::PatternDelay(param & 0x0f),
            _ => Effect::None,
        },
        20 if param >= 0x20 => Effect::Tempo(param),
        _ => Effect::None,
    }
}

/// An order list with IT's and S3M's skip markers (254) taken out.
fn orders_without_skips(raw: &[u8]) -> Vec<u8> {
    raw.iter().copied().filter(|&o| o != 254).collect()
}

fn read_s3m(bytes: &[u8]) -> Result<Module> {
    let b = Bytes(bytes);
    let (ordnum, insnum, patnum) = (usize::from(b.u16(0x20)?), usize::from(b.u16(0x22)?), usize::from(b.u16(0x24)?));
    let orders = orders_without_skips(b.slice(0x60, ordnum)?);
    let para = |at: usize| -> Result<usize> { Ok(usize::from(b.u16(at)?) * 16) };
    let ins_at = 0x60 + ordnum;
    let pat_at = ins_at + 2 * insnum;
    let mut instruments = Vec::new();
    for i in 0..insnum {
        let at = para(ins_at + 2 * i)?;
        let frames = b.u32(at + 0x10)?;
        let looped = b.u8(at + 0x1f)? & 1 != 0;
        let rate = f64::from(b.u32(at + 0x20)?);
        instruments.push(Instrument::new(
            format!("{} {}", b.text(at + 0x30, 28)?, b.text(at + 1, 12)?).trim().to_string(),
            b.u8(at + 0x1c)?.min(64),
            one_shot(frames, looped, rate),
            0.0,
        ));
    }
    let channels = 32;
    let mut patterns = Vec::new();
    for p in 0..patnum {
        let at = para(pat_at + 2 * p)?;
        let mut rows = vec![vec![Cell::EMPTY; channels]; 64];
        if at == 0 {
            patterns.push(rows);
            continue;
        }
        let mut pos = at + 2;
        for row in rows.iter_mut() {
            loop {
                let what = b.u8(pos).with_context(|| format!("pattern {p}"))?;
                pos += 1;
                if what == 0 {
                    break;
                }
                let cell = &mut row[usize::from(what & 31)];
                if what & 32 != 0 {
                    let (note, ins) = (b.u8(pos)?, b.u8(pos + 1)?);
                    pos += 2;
                    cell.instrument = ins;
                    cell.note = match note {
                        255 => Note::None,
                        254 => Note::Cut,
                        // Octave 4, C is the sample's own rate: MIDI 60.
                        n => Note::On(f64::from(12 * (n >> 4) + (n & 0x0f) + 12)),
                    };
                }
                if what & 64 != 0 {
                    cell.volume = Some(b.u8(pos)?.min(64));
                    pos += 1;
                }
                if what & 128 != 0 {
                    cell.effect = it_effect(b.u8(pos)?, b.u8(pos + 1)?, true);
                    pos += 2;
                }
            }
        }
        patterns.push(rows);
    }
    Ok(Module {
        format: "S3M",
        title: b.text(0, 28)?,
        channels,
        instruments,
        orders,
        patterns,
        speed: b.u8(0x31)?.max(1),
        tempo: b.u8(0x32)?.max(32),
    })
}

fn read_xm(bytes: &[u8]) -> Result<Module> {
    let b = Bytes(bytes);
    let header = b.u32(60)? as usize;
    let (length, channels, npat, nins) =
        (usize::from(b.u16(64)?), usize::from(b.u16(68)?), usize::from(b.u16(70)?), usize::from(b.u16(72)?));
    if channels == 0 || channels > 64 {
        bail!("{channels} channels");
    }
    let orders = b.slice(80, length.min(256))?.to_vec();
    let mut pos = 60 + header;
    let mut raw_patterns: Vec<(usize, &[u8])> = Vec::with_capacity(npat);
    for p in 0..npat {
        let head = b.u32(pos)? as usize;
        let rows = usize::from(b.u16(pos + 5)?);
        let size = usize::from(b.u16(pos + 7)?);
        raw_patterns.push((rows, b.slice(pos + head, size).with_context(|| format!("pattern {p}"))?));
        pos += head + size;
    }
    // Instruments first: a note's pitch needs its sample's relative note.
    let mut instruments = Vec::new();
    for _ in 0..nins {
        let size = b.u32(pos)? as usize;
        let name = b.text(pos + 4, 22)?;
        let nsamples = usize::from(b.u16(pos + 27)?);
        let mut inst = Instrument::new(name, 64, None, 0.0);
        if nsamples == 0 {
            pos += size;
        } else {
            let sample_header = b.u32(pos + 29)? as usize;
            let keymap = b.slice(pos + 33, 96)?.to_vec();
            pos += size;
            let mut total = 0usize;
            let mut samples = Vec::new();
            for s in 0..nsamples {
                let at = pos + s * sample_header;
                let len = b.u32(at)? as usize;
                let kind = b.u8(at + 14)?;
                let sixteen = kind & 0x10 != 0;
                let frames = if sixteen { len / 2 } else { len };
                let relative = f64::from(b.u8(at + 16)? as i8) + f64::from(b.u8(at + 13)? as i8) / 128.0;
                samples.push((frames as u32, kind & 3 != 0, b.u8(at + 12)?.min(64), relative, b.text(at + 18, 22)?));
                total += len;
            }
            pos += nsamples * sample_header + total;
            let main = &samples[usize::from(keymap[48]).min(samples.len() - 1)];
            inst.volume = main.2;
            let rate = AMIGA_C2_HZ * 2f64.powf(main.3 / 12.0);
            inst.one_shot_s = one_shot(main.0, main.1, rate);
            let names: Vec<&str> = samples.iter().map(|s| s.4.as_str()).filter(|n| !n.is_empty()).collect();
            inst.name = format!("{} {}", inst.name, names.join(" ")).trim().to_string();
        }
        instruments.push(inst);
    }
    let mut patterns = Vec::with_capacity(npat);
    for (p, (nrows, data)) in raw_patterns.into_iter().enumerate() {
        let d = Bytes(data);
        let mut at = 0usize;
        let mut rows = vec![vec![Cell::EMPTY; channels]; nrows];
        if !data.is_empty() {
            for row in rows.iter_mut() {
                for cell in row.iter_mut() {
                    let first = d.u8(at).with_context(|| format!("pattern {p}"))?;
                    let (mask, mut f) = if first & 0x80 != 0 { (first, at + 1) } else { (0x1f, at) };
                    let mut next = |bit: u8| -> Result<u8> {
                        if mask & bit != 0 {
                            let v = d.u8(f)?;
                            f += 1;
                            Ok(v)
                        } else {
                            Ok(0)
                        }
                    };
                    let (note, ins, vol, eff, param) = (next(1)?, next(2)?, next(4)?, next(8)?, next(16)?);
                    at = f;
                    cell.instrument = ins;
                    cell.note = match note {
                        0 => Note::None,
                        97 => Note::Off,
                        // C-4 (note 49) is the sample's own rate: MIDI 60.
                        n if n <= 96 => Note::On(f64::from(n) + 11.0),
                        _ => Note::None,
                    };
                    cell.volume = (0x10..=0x50).contains(&vol).then(|| vol - 0x10);
                    cell.effect = match eff {
                        0x14 => Effect::NoteCut(param),
                        e => mod_effect(e, param),
                    };
                }
            }
        }
        patterns.push(rows);
    }
    Ok(Module {
        format: "XM",
        title: b.text(17, 20)?,
        channels,
        instruments,
        orders,
        patterns,
        speed: b.u16(76)?.clamp(1, 31) as u8,
        tempo: b.u16(78)?.clamp(32, 255) as u8,
    })
}

fn read_it(bytes: &[u8]) -> Result<Module> {
    let b = Bytes(bytes);
    let (ordnum, insnum, smpnum, patnum) =
        (usize::from(b.u16(0x20)?), usize::from(b.u16(0x22)?), usize::from(b.u16(0x24)?), usize::from(b.u16(0x26)?));
    let flags = b.u16(0x2c)?;
    let orders = orders_without_skips(b.slice(0xc0, ordnum)?);
    let ins_at = 0xc0 + ordnum;
    let smp_at = ins_at + 4 * insnum;
    let pat_at = smp_at + 4 * smpnum;
    // Samples: name, volume and one-shot length.
    let mut samples = Vec::new();
    for s in 0..smpnum {
        let at = b.u32(smp_at + 4 * s)? as usize;
        if b.slice(at, 4)? != b"IMPS" {
            bail!("sample {} has no IMPS header", s + 1);
        }
        let sflags = b.u8(at + 0x12)?;
        let rate = f64::from(b.u32(at + 0x3c)?);
        samples.push((
            format!("{} {}", b.text(at + 0x14, 26)?, b.text(at + 4, 12)?).trim().to_string(),
            b.u8(at + 0x13)?.min(64),
            one_shot(if sflags & 1 != 0 { b.u32(at + 0x30)? } else { 0 }, sflags & 0x10 != 0, rate),
        ));
    }
    // With instruments, a cell's instrument maps each note to a note and a sample.
    let uses_instruments = flags & 4 != 0 && insnum > 0;
    let mut instruments = Vec::new();
    if uses_instruments {
        for i in 0..insnum {
            let at = b.u32(ins_at + 4 * i)? as usize;
            if b.slice(at, 4)? != b"IMPI" {
                bail!("instrument {} has no IMPI header", i + 1);
            }
            let map: Vec<(u8, u8)> = b.slice(at + 0x40, 240)?.chunks_exact(2).map(|c| (c[0], c[1])).collect();
            let main = samples.get(usize::from(map[60].1).wrapping_sub(1));
            let mut inst = Instrument::new(
                format!("{} {}", b.text(at + 0x20, 26)?, main.map_or("", |s| s.0.as_str())).trim().to_string(),
                main.map_or(64, |s| s.1),
                main.and_then(|s| s.2),
                0.0,
            );
            // The keyboard plays note k as another note (of another sample) when it says so.
            for (k, &(note, _)) in map.iter().enumerate() {
                inst.shift[k] = if note <= 119 { f64::from(note) - k as f64 } else { 0.0 };
            }
            instruments.push(inst);
        }
    } else {
        for s in &samples {
            instruments.push(Instrument::new(s.0.clone(), s.1, s.2, 0.0));
        }
    }
    let channels = 64;
    let mut patterns = Vec::with_capacity(patnum);
    for p in 0..patnum {
        let at = b.u32(pat_at + 4 * p)? as usize;
        if at == 0 {
            patterns.push(vec![vec![Cell::EMPTY; channels]; 64]);
            continue;
        }
        let nrows = usize::from(b.u16(at + 2)?);
        let mut rows = vec![vec![Cell::EMPTY; channels]; nrows];
        let mut pos = at + 8;
        let mut last = [(0u8, 0u8, 0u8, 255u8, 0u8, 0u8); 64];
        for row in rows.iter_mut() {
            loop {
                let var = b.u8(pos).with_context(|| format!("pattern {p}"))?;
                pos += 1;
                if var == 0 {
                    break;
                }
                let ch = usize::from((var - 1) & 63);
                let l = &mut last[ch];
                if var & 128 != 0 {
                    l.0 = b.u8(pos)?;
                    pos += 1;
                }
                let mask = l.0;
                if mask & 1 != 0 {
                    l.1 = b.u8(pos)?;
                    pos += 1;
                }
                if mask & 2 != 0 {
                    l.2 = b.u8(pos)?;
                    pos += 1;
                }
                if mask & 4 != 0 {
                    l.3 = b.u8(pos)?;
                    pos += 1;
                }
                if mask & 8 != 0 {
                    l.4 = b.u8(pos)?;
                    l.5 = b.u8(pos + 1)?;
                    pos += 2;
                }
                let cell = &mut row[ch];
                if mask & (2 | 32) != 0 {
                    cell.instrument = l.2;
                }
                if mask & (1 | 16) != 0 {
                    cell.note = match l.1 {
                        255 => Note::Off,
                        254 => Note::Cut,
                        // C-5 (note 60) is the sample's own rate: MIDI 60.
                        n if n <= 119 => Note::On(f64::from(n)),
                        _ => Note::Off,
                    };
                }
                if mask & (4 | 64) != 0 && l.3 <= 64 {
                    cell.volume = Some(l.3);
                }
                if mask & (8 | 128) != 0 {
                    cell.effect = it_effect(l.4, l.5, false);
                }
            }
        }
        patterns.push(rows);
    }
    Ok(Module {
        format: "IT",
        title: b.text(4, 26)?,
        channels,
        instruments,
        orders,
        patterns,
        speed: b.u8(0x32)?.max(1),
        tempo: b.u8(0x33)?.max(32),
    })
}

/// One note as the module plays it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayedNote {
    pub channel: usize,
    /// 0-based instrument.
    pub instrument: usize,
    /// MIDI pitch, fractional (finetune and sample rates); rounded when written.
    pub pitch: f64,
    pub start_s: f64,
    pub end_s: f64,
    /// 1-64.
    pub volume: u8,
}

/// What [`play`] heard.
#[derive(Debug, Clone, PartialEq)]
pub struct Played {
    pub notes: Vec<PlayedNote>,
    pub duration_s: f64,
    /// Seconds a row lasts at the song's start: a beat is four rows.
    pub first_row_s: f64,
}

/// Longest song played: a module that never ends within it is cut there.
pub const MAX_SONG_S: f64 = 1800.0;

/// Play the order list once (see the module docs).
pub fn play(m: &Module) -> Played {
    let (mut speed, mut tempo) = (u32::from(m.speed.max(1)), f64::from(m.tempo.max(32)));
    let row_s = |speed: u32, tempo: f64| f64::from(speed) * 2.5 / tempo;
    let first_row_s = row_s(speed, tempo);
    let mut notes: Vec<PlayedNote> = Vec::new();
    // Per channel: the sounding note's index in `notes`, and the last instrument.
    let mut sounding: Vec<Option<usize>> = vec![None; m.channels];
    let mut last_ins = vec![0u8; m.channels];
    let mut seen = std::collections::HashSet::new();
    let (mut order, mut row, mut t) = (0usize, 0usize, 0.0f64);
    let end_note = |notes: &mut Vec<PlayedNote>, slot: &mut Option<usize>, at: f64| {
        if let Some(i) = slot.take() {
            let n = &mut notes[i];
            n.end_s = n.end_s.min(at.max(n.start_s));
        }
    };
    'song: while order < m.orders.len() && t < MAX_SONG_S {
        let p = m.orders[order];
        let Some(pattern) = m.patterns.get(usize::from(p)).filter(|_| p != 255) else { break };
        if row >= pattern.len() {
            (order, row) = (order + 1, 0);
            continue;
        }
        if !seen.insert((order, row)) {
            break 'song;
        }
        let cells = &pattern[row];
        let (mut jump, mut brk, mut delay_rows) = (None, None, 0u32);
        for c in cells {
            match c.effect {
                Effect::Speed(s) => speed = u32::from(s),
                Effect::Tempo(x) => tempo = f64::from(x),
                Effect::Jump(o) => jump = Some(usize::from(o)),
                Effect::Break(r) => brk = Some(usize::from(r)),
                Effect::PatternDelay(d) => delay_rows = delay_rows.max(u32::from(d)),
                _ => {}
            }
        }
        let tick_s = 2.5 / tempo;
        for (ch, c) in cells.iter().enumerate().take(m.channels) {
            if c.instrument != 0 {
                last_ins[ch] = c.instrument;
            }
            let at = match c.effect {
                Effect::NoteDelay(d) if u32::from(d) < speed => t + f64::from(d) * tick_s,
                _ => t,
            };
            match c.note {
                Note::On(note) => {
                    end_note(&mut notes, &mut sounding[ch], at);
                    let Some(ins) = usize::from(last_ins[ch]).checked_sub(1).filter(|&i| i < m.instruments.len())
                    else {
                        continue;
                    };
                    let inst = &m.instruments[ins];
                    let pitch = inst.pitch(note);
                    let volume = match (c.volume, c.effect) {
                        (Some(v), _) => v,
                        (None, Effect::Volume(v)) => v,
                        _ => inst.volume,
                    };
                    if volume == 0 {
                        continue;
                    }
                    // A one-shot sample runs out sooner the higher it plays.
                    let longest = inst.one_shot_s.map_or(f64::INFINITY, |s| s / 2f64.powf((note - 60.0) / 12.0));
                    notes.push(PlayedNote {
                        channel: ch,
                        instrument: ins,
                        pitch,
                        start_s: at,
                        end_s: at + longest,
                        volume,
                    });
                    sounding[ch] = Some(notes.len() - 1);
                }
                Note::Off | Note::Cut => end_note(&mut notes, &mut sounding[ch], at),
                Note::None => {}
            }
            match (c.effect, c.volume) {
                (Effect::NoteCut(x), _) => end_note(&mut notes, &mut sounding[ch], t + f64::from(x) * tick_s),
                (_, Some(0)) if c.note == Note::None => end_note(&mut notes, &mut sounding[ch], t),
                _ => {}
            }
        }
        t += row_s(speed.max(1), tempo) * f64::from(1 + delay_rows);
        match (jump, brk) {
            (Some(o), b) => (order, row) = (o, b.unwrap_or(0)),
            (None, Some(r)) => (order, row) = (order + 1, r),
            (None, None) => row += 1,
        }
    }
    for slot in sounding.iter_mut() {
        end_note(&mut notes, slot, t);
    }
    notes.retain(|n| n.end_s > n.start_s);
    Played { notes, duration_s: t, first_row_s }
}

/// A sample or instrument's General MIDI program (0-based) from its name;
/// piano when the name says nothing. Drums are told apart by [`is_drum`].
pub fn program_of(name: &str) -> u8 {
    let n = name.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| n.contains(w));
    if has(&["e-piano", "epiano", "rhodes", "wurli", "electric piano"]) {
        4
    } else if has(&["piano", "pno"]) {
        0
    } else if has(&["organ"]) {
        16
    } else if has(&["303", "analog-bass", "analog bass", "synthbass", "synth bass", "bass.bas", ".bas"]) {
        38
    } else if has(&["bassoon"]) {
        70
    } else if has(&["bass"]) {
        33
    } else if has(&["dist", "overdrive"]) && has(&["guitar", "gtr", "git"]) {
        29
    } else if has(&["acoustic-guitar", "acoustic guitar", "nylon"]) {
        24
    } else if has(&["guitar", "gtr", "gitar"]) {
        27
    } else if has(&["string", "strg"]) {
        48
    } else if has(&["brass"]) {
        61
    } else if has(&["choir", "voice", "vox", "aah", "ooo", "chorus"]) {
        52
    } else if has(&["trumpet"]) {
        56
    } else if has(&["trombone"]) {
        57
    } else if has(&["horn"]) {
        60
    } else if has(&["sax"]) {
        65
    } else if has(&["oboe"]) {
        68
    } else if has(&["clarinet"]) {
        71
    } else if has(&["flute", "flj00te", "pipe"]) {
        73
    } else if has(&["vibe", "vibraphone"]) {
        11
    } else if has(&["marimba"]) {
        12
    } else if has(&["xylo"]) {
        13
    } else if has(&["glock"]) {
        9
    } else if has(&["bell", "chime"]) {
        14
    } else if has(&["harp"]) {
        46
    } else if has(&["pad"]) {
        89
    } else if has(&["square", "sqr"]) {
        80
    } else if has(&["saw", "lead", "synth", "juno", "analog"]) {
        81
    } else {
        0
    }
}

/// Words in a sample's name that make it a drum.
const DRUM_WORDS: [&str; 25] = [
    "kick",
    "bassdrum",
    "bass drum",
    "bd",
    "snare",
    "sd",
    "hat",
    "hihat",
    "hh",
    "hht",
    "cymbal",
    "cym",
    "crash",
    "ride",
    "tom",
    "conga",
    "bongo",
    "tabla",
    "perc",
    "clap",
    "drum",
    "shaker",
    "tamb",
    "hit",
    "block",
];

/// Whether an instrument is a drum: its name says so (one of
/// [`DRUM_WORDS`] anywhere, or as a word of its own, digits after it
/// allowed, for the short ones), or the song strikes it at least eight
/// times on at most two pitches, which is how a tracker plays a drum sample
/// (a bass line on two notes only would go with them).
pub fn is_drum(name: &str, notes: &[&PlayedNote]) -> bool {
    let n = name.to_lowercase();
    let named = DRUM_WORDS.iter().any(|w| {
        if w.len() <= 3 {
            n.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|word| word.strip_prefix(w).is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit())))
        } else {
            n.contains(w)
        }
    });
    let mut pitches: Vec<i64> = notes.iter().map(|p| p.pitch.round() as i64).collect();
    pitches.sort_unstable();
    pitches.dedup();
    named || (notes.len() >= 8 && pitches.len() <= 2)
}

/// The module as a [`Song`]: a track per instrument that sounds (named, with
/// its General MIDI program, drums apart), at the song's first tempo with
/// four rows a beat (the time signature is not in the file: 4/4 is
/// assumed); later speed changes are in the notes' times.
pub fn to_song(m: &Module, played: &Played) -> Song {
    let qpm = 60.0 / (4.0 * played.first_row_s);
    let ticks = |s: f64| (s * qpm / 60.0 * f64::from(TICKS_PER_QUARTER)).round() as i64;
    let mut tracks = Vec::new();
    for (i, inst) in m.instruments.iter().enumerate() {
        let notes: Vec<&PlayedNote> = played.notes.iter().filter(|n| n.instrument == i).collect();
        if notes.is_empty() {
            continue;
        }
        let drums = is_drum(&inst.name, &notes);
        let label = if inst.name.is_empty() { format!("instrument {}", i + 1) } else { inst.name.clone() };
        tracks.push(SongTrack {
            program: if drums { 0 } else { program_of(&inst.name) },
            drums,
            notes: notes
                .iter()
                .filter(|n| (0.0..=127.0).contains(&n.pitch.round()))
                .map(|n| SongNote {
                    start: ticks(n.start_s),
                    end: ticks(n.end_s).max(ticks(n.start_s) + 1),
                    pitch: n.pitch.round() as u8,
                    velocity: ((u32::from(n.volume) * 127 + 32) / 64).clamp(1, 127) as u8,
                })
                .collect(),
            label,
            pedal: Vec::new(),
        });
    }
    Song {
        tracks,
        tempos: vec![(0, qpm)],
        time_signatures: vec![(0, 4, 4)],
        title: m.title.clone(),
        composer: String::new(),
        copyright: String::new(),
        muted: Vec::new(),
    }
}

const POP: Option<Style> = Some(Style::Pop);
const ELECTRONIC: Option<Style> = Some(Style::Electronic);
const OUT: Option<Style> = None;

const fn t(name: &'static str, genre: &'static str, style: Option<Style>, why: &'static str) -> GameTrack {
    GameTrack { name, genre, style, why }
}

const TECHNO: &str = "electronic";
const CHIP: &str = "chiptune";

/// Every module of heroes-sound-tracks 1.0 (Alexel and TNK of Realtech, 1997-2000).
pub const HEROES: [GameTrack; 13] = [
    t("endscroll.xm", TECHNO, ELECTRONIC, "the end tune: synth lead and bass over drum samples, 14 channels"),
    t("heroes01.xm", TECHNO, ELECTRONIC, "synth sequences over drum samples, 264 bpm in rows"),
    t("heroes02.xm", "trance", ELECTRONIC, "synth arpeggios and leads, its samples say 'even if it's trance'"),
    t("heroes03.xm", TECHNO, ELECTRONIC, "unnamed drum and synth samples, one pitch each"),
    t("heroes04.xm", TECHNO, ELECTRONIC, "synth, choir and church-organ samples over a bass drum"),
    t("heroes05.xm", TECHNO, ELECTRONIC, "TB-303 and filter-synth lines over tablas and percussion"),
    t("heroes06.xm", "house", ELECTRONIC, "Juno-106 synths and a vocal lead over house drums"),
    t("heroes07.xm", "industrial", ELECTRONIC, "metal hits, TB-303 and Juno-106 lines, filter sweeps"),
    t("heroes08.xm", TECHNO, ELECTRONIC, "synth lead over a bass drum"),
    t("heroes09.xm", TECHNO, ELECTRONIC, "synth leads over a bass drum"),
    t("heroes10.xm", TECHNO, ELECTRONIC, "synth sequences over drum samples"),
    t("intro.xm", TECHNO, ELECTRONIC, "22 s of synth chords"),
    t("menu.xm", TECHNO, ELECTRONIC, "synth sequences over drum samples"),
];

/// Every module of pingus-data 0.7.6; the level tunes are Joseph Toscano's (2000).
pub const PINGUS: [GameTrack; 20] = [
    t("gd-cancn.it", "novelty", OUT, "Offenbach's can-can for trumpet and guitar, 26 s"),
    t("gd-giirm.s3m", "world", OUT, "'Goose in Israel': strings, flute, bassoon and bass over toms and hi-hat"),
    t("gd-ite.it", "jingle", OUT, "23 s of flute and vibraphone"),
    t("gd-matth.it", TECHNO, ELECTRONIC, "six unnamed samples, four of them struck on one pitch"),
    t("gd-myla.it", TECHNO, ELECTRONIC, "synths over hi-hats at 258 bpm in rows"),
    t("goin_march.it", "march", OUT, "a march for drum samples and two lines"),
    t("pingus-1.it", "light pop", POP, "the menu tune: piano and strings lead, flute, over bass drum, tom and snare"),
    t("pingus-2.it", "film", POP, "the game-over cue: flutes, strings and chorus over a snare, slow"),
    t("pingus-3.it", "light pop", POP, "piano and flutes over conga, snare and bass, strings"),
    t("pingus-4.it", "new age", POP, "piano and chimes with strings, brass choir and flute, no kit"),
    t("pingus-5.it", "light pop", POP, "piano, flutes and vibraphone over bass and snare, strings"),
    t("pingus-6.it", "light pop", POP, "two pianos and strings over an analogue bass and a drum kit"),
    t("pingus-7.it", "light pop", POP, "acoustic guitar, piano and bass guitar, chimes, snare"),
    t("pingus-8.it", "light pop", POP, "piano and bass guitar with a square lead and brass choir over a drum kit"),
    t("pingus-9.it", "world", OUT, "the desert level: bass oboe, buzz and bells, flute"),
    t("rough_journey.it", TECHNO, ELECTRONIC, "drum samples lead; three pitched samples"),
    t("sorcerer.it", TECHNO, ELECTRONIC, "Dukas's Sorcerer's Apprentice on synth and guitar samples"),
    t("success_1.it", "jingle", OUT, "6 s"),
    t("success_2.it", "jingle", OUT, "10 s"),
    t("the_big_march_in_space.it", "march", OUT, "a march for three samples"),
];

const REG: &str = "four-channel Amiga game music by REG (Regis Parret), synth and drum samples";

/// Every module of tecnoballz-data 0.93.1.
pub const TECNOBALLZ: [GameTrack; 15] = [
    t("area1-game.mod", CHIP, OUT, REG),
    t("area1-game2.mod", CHIP, OUT, "the same tune as area1-game.mod, saved as XM"),
    t("area2-game.mod", CHIP, OUT, REG),
    t("area3-game.mod", CHIP, OUT, REG),
    t("area4-game.mod", CHIP, OUT, REG),
    t("area5-game.mod", CHIP, OUT, REG),
    t("fridge-in-space_from_reg-zbb.mod", CHIP, OUT, "REG and ZBB: synth pads and leads over drum samples"),
    t("gardien-go.mod", CHIP, OUT, REG),
    t("high-score.mod", CHIP, OUT, REG),
    t("in-game-music-1_reg.mod", CHIP, OUT, REG),
    t("mon-lapin_reg-zbb.mod", CHIP, OUT, "REG and ZBB: synth lines over drum samples"),
    t("over-theme.mod", CHIP, OUT, REG),
    t("tecno-winn.mod", CHIP, OUT, REG),
    t("tecnoballz.mod", CHIP, OUT, REG),
    t("termigator_reg-zbb.mod", CHIP, OUT, "REG and ZBB: synth lines over drum samples"),
];

/// The three modules of tuxmath-data 2.0.3 (demoscene music of 1994, public domain).
pub const TUXMATH: [GameTrack; 3] = [
    t("game.mod", TECHNO, ELECTRONIC, "'Beyond the Horizon' by Mystra of Stone Arts: synth and breakbeat samples"),
    t("game2.mod", TECHNO, ELECTRONIC, "'CCCP Main' by Groo of CNCD: synth and drum samples"),
    t(
        "game3.mod",
        "synth-pop",
        ELECTRONIC,
        "'Soft Brilliance' by Tjoppbass: synth bass, square and lead over a drum machine",
    ),
];

/// One package of modules: where they are and how each is filed.
struct Package {
    pin: &'static Pin,
    dir: &'static str,
    /// Where the modules are in the source tree its copyright file names.
    source_dir: &'static str,
    table: &'static [GameTrack],
}

const PACKAGES: [Package; 4] = [
    Package { pin: &HEROES_SOUND_TRACKS, dir: "usr/share/games/heroes/mod", source_dir: "", table: &HEROES },
    Package { pin: &PINGUS_DATA, dir: "usr/share/games/pingus/data/music", source_dir: "", table: &PINGUS },
    Package { pin: &TECNOBALLZ_DATA, dir: "usr/share/games/tecnoballz/musics", source_dir: "", table: &TECNOBALLZ },
    Package { pin: &TUXMATH_DATA, dir: "usr/share/tuxmath/sounds", source_dir: "data/sounds", table: &TUXMATH },
];

/// The licence of a package's modules, as its copyright file states it.
/// pingus-data's file is free text: GPL-2 or later for the whole package.
fn licence(pkg: &Package, unpacked: &Path, name: &str) -> Result<String> {
    if pkg.pin.name() == PINGUS_DATA.name() {
        return Ok("GPL-2+ (debian/copyright of pingus-data: the package, Ingo Ruhnke and others)".into());
    }
    if !pkg.source_dir.is_empty() {
        return fetch::FileLicences::read(unpacked, pkg.pin)?.of(&format!("{}/{name}", pkg.source_dir));
    }
    Ok(format!("{} (debian/copyright of {})", fetch::debian_licence(unpacked, pkg.pin.name())?, pkg.pin.name()))
}

/// The modules of every package for pop and electronic (the styles a module
/// is filed to): kept ones played into MIDI and band-reduced into the cache,
/// the rest left out with their genre (as pop's dropped rows).
pub fn candidates(cache: &Path, python: &Path, styles: &[Style], reduction: BandReduction) -> Result<Vec<Candidate>> {
    if ![Style::Pop, Style::Electronic].iter().any(|s| styles.contains(s)) {
        return Ok(Vec::new());
    }
    let mut result = Vec::new();
    for pkg in &PACKAGES {
        let unpacked = fetch::ensure(pkg.pin, cache, python)?;
        result.extend(package_candidates(pkg, &unpacked, cache, styles, reduction)?);
    }
    Ok(result)
}

fn package_candidates(
    pkg: &Package,
    unpacked: &Path,
    cache: &Path,
    styles: &[Style],
    reduction: BandReduction,
) -> Result<Vec<Candidate>> {
    let dir = unpacked.join(pkg.dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| ["mod", "xm", "it", "s3m"].iter().any(|e| x.eq_ignore_ascii_case(e))))
        .collect();
    files.sort();
    if files.len() != pkg.table.len() {
        bail!(
            "{}: {} modules where the table files {}; review xtask/src/data/tracker.rs",
            dir.display(),
            files.len(),
            pkg.table.len()
        );
    }
    let mut out = Vec::new();
    for path in files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let track = lookup(pkg.table, &name, pkg.pin.source, "xtask/src/data/tracker.rs")?;
        let style = track.style.unwrap_or(Style::Pop);
        if !styles.contains(&style) {
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let module = read_module(&bytes).with_context(|| format!("{}", path.display()))?;
        let played = play(&module);
        let song = to_song(&module, &played);
        let midi = to_midi(&song).with_context(|| format!("{}", path.display()))?;
        let parts_note = midly::Smf::parse(&midi).map(|smf| instrument_shares(&band::parts(&smf))).unwrap_or_default();
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
        let mut cand = Candidate {
            style,
            family: format!("debian/{}", pkg.pin.name().trim_end_matches("-data").trim_end_matches("-sound-tracks")),
            source: pkg.pin.source.into(),
            source_version: pkg.pin.version.into(),
            source_path: format!("{}/{name}", pkg.dir),
            licence: licence(pkg, unpacked, &name)?,
            provenance: Provenance::Composed,
            comment: String::new(),
            rel_path: PathBuf::from(format!(
                "midi/modules/{}.mid",
                sanitize_path(&format!("{}-{stem}", pkg.pin.name()))
            )),
            origin: Origin::LeftOut(DropReason::GenreFitsNoStyle(format!(
                "{}: {}; {} module, {parts_note}",
                track.genre, track.why, module.format
            ))),
        };
        if track.style.is_some() {
            let (file, summary) = reduce_cached(&midi, cache, reduction)?;
            cand.comment = format!(
                "{}: {}; played from the {} module (instruments by name, drums dropped), sequenced by hand; \
                 {parts_note}; {summary}",
                track.genre, track.why, module.format
            );
            cand.origin = Origin::Midi(file);
        }
        out.push(cand);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell to write: row, channel, sample, period, effect, parameter.
    type Written = (usize, usize, u8, u16, u8, u8);

    /// A ProTracker module: two named samples, four channels, and `patterns` of cells.
    fn protracker(orders: &[u8], patterns: &[&[Written]]) -> Vec<u8> {
        let mut b = vec![0u8; 1084];
        b[..4].copy_from_slice(b"test");
        for (i, (name, words, looped)) in [("piano", 1000u16, false), ("kick", 100, false)].iter().enumerate() {
            let at = 20 + 30 * i;
            b[at..at + name.len()].copy_from_slice(name.as_bytes());
            b[at + 22..at + 24].copy_from_slice(&words.to_be_bytes());
            b[at + 25] = 64;
            b[at + 28..at + 30].copy_from_slice(&(if *looped { *words } else { 1 }).to_be_bytes());
        }
        b[950] = orders.len() as u8;
        b[952..952 + orders.len()].copy_from_slice(orders);
        b[1080..1084].copy_from_slice(b"M.K.");
        for cells in patterns {
            let mut pat = vec![0u8; 64 * 4 * 4];
            for &(row, ch, sample, period, effect, param) in *cells {
                let at = (row * 4 + ch) * 4;
                pat[at] = (sample & 0xf0) | ((period >> 8) as u8 & 0x0f);
                pat[at + 1] = (period & 0xff) as u8;
                pat[at + 2] = ((sample & 0x0f) << 4) | (effect & 0x0f);
                pat[at + 3] = param;
            }
            b.extend(pat);
        }
        b
    }

    #[test]
    fn a_module_plays_its_speed_breaks_jumps_cuts_and_volumes() {
        let bytes = protracker(
            &[0, 1],
            &[
                &[
                    (0, 0, 1, 428, 0x0f, 3),    // C-2, MIDI 60; speed 3: a row is 3 × 2.5 / 125 = 0.06 s
                    (4, 0, 0, 214, 0x0e, 0xc1), // C-3 on the channel's piano, cut after one tick
                    (8, 1, 2, 428, 0x0c, 32),   // the kick at half volume
                    (10, 2, 0, 0, 0x0d, 0x05),  // break to row 5 of the next position
                ],
                &[
                    (0, 0, 1, 856, 0, 0),  // skipped by the break
                    (5, 0, 1, 856, 0, 0),  // C-1, MIDI 48
                    (6, 3, 0, 0, 0x0b, 0), // back to the start: the song's loop ends it
                ],
            ],
        );
        let m = read_module(&bytes).expect("reads");
        assert_eq!((m.format, m.channels, m.patterns.len(), m.orders.clone()), ("MOD", 4, 2, vec![0, 1]));
        assert_eq!(m.instruments[0].name, "piano");
        let played = play(&m);
        let got: Vec<(usize, i64, i64, i64, u8)> = played
            .notes
            .iter()
            .map(|n| {
                (
                    n.channel,
                    n.pitch.round() as i64,
                    (n.start_s * 1000.0).round() as i64,
                    (n.end_s * 1000.0).round() as i64,
                    n.volume,
                )
            })
            .collect();
        // The piano's 2,000 frames last 0.239 s at 8,363 Hz on C-2, half that an octave up.
        assert_eq!(got, vec![(0, 60, 0, 239, 64), (0, 72, 240, 260, 64), (1, 60, 480, 504, 32), (0, 48, 660, 780, 64)]);
        assert!((played.duration_s - 0.78).abs() < 1e-9, "{}", played.duration_s);
        assert!((played.first_row_s - 0.12).abs() < 1e-9, "the song's first speed is 6: {}", played.first_row_s);
        // As a song: the piano a track of its own; the kick struck once is not taken for a drum by its pitches,
        // but by its name.
        let song = to_song(&m, &played);
        let by = |l: &str| song.tracks.iter().find(|t| t.label == l).expect(l);
        assert!(!by("piano").drums && by("piano").program == 0 && by("piano").notes.len() == 3);
        assert!(by("kick").drums);
        assert_eq!(by("kick").notes[0].velocity, 64);
    }

    #[test]
    fn broken_modules_fail_in_words() {
        let bytes = protracker(&[0], &[&[(0, 0, 1, 428, 0, 0)]]);
        let e = read_module(&bytes[..1500]).expect_err("truncated");
        assert!(format!("{e:#}").contains("truncated"), "{e:#}");
        let e = read_module(b"just some text, not music at all").expect_err("not a module");
        assert!(e.to_string().contains("not a module"), "{e}");
        assert!(read_module(b"Extended Module: x").is_err());
        assert!(read_module(b"IMPM").is_err());
    }

    #[test]
    fn instruments_are_named_to_programs_and_drums() {
        assert_eq!(program_of("bass-guitar:maz"), 33);
        assert_eq!(program_of("brass-choir:maz"), 61);
        assert_eq!(program_of("flj00te:* written and tracked by"), 73);
        assert_eq!(program_of("alesis-piano:tek"), 0);
        assert_eq!(program_of("whee-analog-bass:*"), 38);
        assert_eq!(program_of("cs1x-strings"), 48);
        assert_eq!(program_of("mars1:necros"), 0);
        let note = |pitch: f64| PlayedNote { channel: 0, instrument: 0, pitch, start_s: 0.0, end_s: 0.1, volume: 64 };
        let one_pitch: Vec<PlayedNote> = (0..10).map(|_| note(60.0)).collect();
        let line: Vec<PlayedNote> = (0..10).map(|i| note(48.0 + f64::from(i))).collect();
        fn refs(v: &[PlayedNote]) -> Vec<&PlayedNote> {
            v.iter().collect()
        }
        assert!(is_drum("bass:alexg", &refs(&one_pitch)), "struck on one pitch");
        assert!(!is_drum("bass:elwood", &refs(&line)));
        assert!(
            is_drum("Hihat55", &refs(&line)) && is_drum("LD5 block2", &refs(&line)) && is_drum("O_HIT68", &refs(&line))
        );
        assert!(!is_drum("tomato lead", &refs(&line)) && !is_drum("hitchhiker", &refs(&line)));
    }

    #[test]
    fn modules_are_filed_once() {
        for table in [&HEROES[..], &PINGUS[..], &TECNOBALLZ[..], &TUXMATH[..]] {
            assert!(crate::data::games::filed_once(table));
        }
    }

    /// Electronic dance music goes to electronic; chiptune stays out.
    #[test]
    fn electronic_modules_are_electronic() {
        let edm = ["electronic", "trance", "house", "industrial", "synth-pop"];
        for t in HEROES.iter().chain(&PINGUS).chain(&TECNOBALLZ).chain(&TUXMATH) {
            let want = if edm.contains(&t.genre) {
                ELECTRONIC
            } else if t.genre == CHIP {
                OUT
            } else {
                t.style
            };
            assert_eq!(t.style, want, "{}: {}", t.name, t.genre);
        }
        let electronic = HEROES.iter().chain(&PINGUS).chain(&TUXMATH).filter(|t| t.style == ELECTRONIC).count();
        assert_eq!(electronic, 20);
    }

    /// Four real modules, one of each format, when a data build has unpacked
    /// them: their length as libxmp 4.5 reports it (`xmp --load-only -v`).
    #[test]
    fn real_modules_last_as_long_as_libxmp_says() {
        let unpacked = crate::env::repo_root().join("data/cache/unpacked");
        for (pin, path, seconds, min_notes) in [
            (&TECNOBALLZ_DATA, "usr/share/games/tecnoballz/musics/area1-game.mod", 84.0, 800),
            (&HEROES_SOUND_TRACKS, "usr/share/games/heroes/mod/heroes02.xm", 187.0, 8000),
            (&PINGUS_DATA, "usr/share/games/pingus/data/music/pingus-3.it", 106.0, 2000),
            (&PINGUS_DATA, "usr/share/games/pingus/data/music/gd-giirm.s3m", 52.0, 1000),
        ] {
            let file = unpacked.join(pin.archive).join(path);
            let Ok(bytes) = std::fs::read(&file) else {
                eprintln!("skipped: {} is not there (run cargo xtask data --styles pop)", file.display());
                continue;
            };
            let played = play(&read_module(&bytes).expect("reads"));
            assert!((played.duration_s - seconds).abs() < 1.0, "{path}: {} s", played.duration_s);
            assert!(played.notes.len() >= min_notes, "{path}: {} notes", played.notes.len());
        }
    }

    /// Every module of the four packages, when a data build (or `apt-get download`) has unpacked them
    /// under `CADENZA_TRACKER_DIR`: what each plays, for filing them by hand.
    #[test]
    #[ignore]
    fn inventory() {
        let Some(dir) = std::env::var_os("CADENZA_TRACKER_DIR") else { return };
        let mut files = Vec::new();
        let mut stack = vec![std::path::PathBuf::from(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if ["mod", "xm", "it", "s3m"]
                    .iter()
                    .any(|x| p.extension().is_some_and(|e| e.eq_ignore_ascii_case(x)))
                {
                    files.push(p);
                }
            }
        }
        files.sort();
        for f in files {
            let m = match read_module(&std::fs::read(&f).expect("read")) {
                Ok(m) => m,
                Err(e) => {
                    println!("{}: ERROR {e:#}", f.display());
                    continue;
                }
            };
            let played = play(&m);
            let bpm = 60.0 / (4.0 * played.first_row_s);
            println!(
                "\n== {} [{}] '{}' {} ch, speed {} tempo {} -> {bpm:.0} bpm, {:.0} s, {} notes",
                f.file_name().expect("a file").to_string_lossy(),
                m.format,
                m.title,
                m.channels,
                m.speed,
                m.tempo,
                played.duration_s,
                played.notes.len()
            );
            for (i, inst) in m.instruments.iter().enumerate() {
                let ns: Vec<&PlayedNote> = played.notes.iter().filter(|n| n.instrument == i).collect();
                if ns.is_empty() {
                    continue;
                }
                let mut pitches: Vec<i64> = ns.iter().map(|n| n.pitch.round() as i64).collect();
                pitches.sort_unstable();
                let distinct = {
                    let mut d = pitches.clone();
                    d.dedup();
                    d.len()
                };
                let mut lens: Vec<f64> = ns.iter().map(|n| n.end_s - n.start_s).collect();
                lens.sort_by(f64::total_cmp);
                println!(
                    "  {:2} {:40} {} n={:5} pitch {}..{} med {} distinct {:3} len med {:.2}s one-shot {:?}",
                    i + 1,
                    inst.name,
                    if is_drum(&inst.name, &ns) {
                        "DRUM".to_string()
                    } else {
                        format!("GM{:3}", program_of(&inst.name) + 1)
                    },
                    ns.len(),
                    pitches[0],
                    pitches[pitches.len() - 1],
                    pitches[pitches.len() / 2],
                    distinct,
                    lens[lens.len() / 2],
                    inst.one_shot_s.map(|s| (s * 100.0).round() / 100.0)
                );
            }
        }
    }
}
