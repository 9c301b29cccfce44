//! Game soundtracks in Debian packages: the 53 MIDI tracks of
//! `simutrans-data` and the music lumps (`D_*`) of `freedoom`'s two WAD
//! files. Neither package says what genre a track is, so every track is
//! filed here by hand, from its instruments, tempo, swing (off-beat eighths
//! on the triplet) and harmony: swing, blues and jazz guitar are jazz; light
//! pop and electric-piano ballads are pop; rock and metal are rock; techno
//! and other electronic music are electronic; orchestral and ambient game
//! scoring fit no shipped style and are left out, listed in pop's `dropped.csv` (pop is
//! where a game track would otherwise be filed) with their genre. A package
//! version with a track these tables do not name is refused until someone
//! files it.
//!
//! Kept tracks are band arrangements: they go through the band reduction
//! ([`super::band`], the step `--band-reduction` names) into the cache
//! before the checks. A track whose
//! accompaniment Band-in-a-Box generated ([`band_in_a_box`]) is synthetic,
//! the rest composed (sequenced by hand).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cadenza_core::dataset::{sha256_hex, Provenance};
use midly::{MetaMessage, Smf, Timing, TrackEventKind};

use super::band::{self, BandReduction, Part};
use super::build::DropReason;
use super::fetch::{self, FREEDOOM, SIMUTRANS_DATA};
use super::music21::sanitize_path;
use super::{Candidate, Origin, Style};

/// Bump with any change to how a band file is reduced; it is hashed into the cached file's name.
const REDUCTION_VERSION: &str = "band-reduction-1";

/// A game track and where it goes.
#[derive(Debug, Clone, Copy)]
pub struct GameTrack {
    /// File name (Simutrans) or `wad/LUMP` (Freedoom).
    pub name: &'static str,
    pub genre: &'static str,
    /// None: the genre fits no shipped style.
    pub style: Option<Style>,
    /// What, beyond the instrument shares the build adds, the filing rests on.
    pub why: &'static str,
}

const fn t(name: &'static str, genre: &'static str, style: Option<Style>, why: &'static str) -> GameTrack {
    GameTrack { name, genre, style, why }
}

const JAZZ: Option<Style> = Some(Style::Jazz);
const POP: Option<Style> = Some(Style::Pop);
const ROCK_STYLE: Option<Style> = Some(Style::Rock);
const ELECTRONIC: Option<Style> = Some(Style::Electronic);
const OUT: Option<Style> = None;

pub const SIMUTRANS_DIR: &str = "usr/share/games/simutrans/music";

/// Every track of simutrans-data 123.0.1. "Swung" means most off-beat eighths
/// fall on the triplet; "straight" that they fall on the half beat.
pub const SIMUTRANS_TRACKS: [GameTrack; 53] = [
    t("01-Simutrans-Main-Theme.mid", "light pop", POP, "straight-eighth piano comping under a string lead, 120 bpm"),
    t("02-Gotta-catch-that-train.mid", "light pop", POP, "straight-eighth piano comping under a string lead, 130 bpm"),
    t("03-Sunday-drivers.mid", "jazz", JAZZ, "swung pianos, chord chart Cmaj7 E7 Dm7 Db7, 80 bpm"),
    t("04-Simutrans-B-Theme.mid", "light pop", POP, "straight-eighth piano comping under a string lead, 130 bpm"),
    t("05-Boring-afternoon.mid", "light pop", POP, "straight-eighth piano chords and lead, 70-140 bpm"),
    t(
        "06-A-busy-day-at-the-depot.mid",
        "light pop",
        POP,
        "straight nylon-guitar arpeggios under a string lead, 127 bpm",
    ),
    t("07-Transport-chaos.mid", "blues", JAZZ, "swung pianos over a C7 F7 blues chart, 120 bpm"),
    t("08-The-journey-home.mid", "light pop", POP, "straight-eighth piano comping under a string lead, 100 bpm"),
    t("09-Simupolitan-Swing.mid", "swing", JAZZ, "two trumpets and a walking bass over a swung ride cymbal"),
    t("10-Easy-driving.mid", "light pop", POP, "two-handed piano in straight eighths with strings and pads"),
    t("11-Stucked-Convoi.mid", "rock", ROCK_STYLE, "distorted guitar and organ over a straight rock beat"),
    t(
        "12-Steamin-across-the-prairies.mid",
        "electronic",
        ELECTRONIC,
        "synth-lead sequences over a four-on-the-floor kick",
    ),
    t("13-Stephenson-blues.mid", "blues", JAZZ, "swung piano and bass over a C7 G7 blues chart"),
    t("14-Last-journey-of-the-Niagara.mid", "light pop", POP, "straight guitars, electric piano and voices, 120 bpm"),
    t("15-The-Wayside-Blues.mid", "blues", JAZZ, "harmonica, organ and bass in a straight-eighth blues"),
    t("16-Midnight-Express2.mid", "jazz guitar", JAZZ, "swung jazz guitar and electric piano, ride cymbal, 210 bpm"),
    t("17-The-Benevolent-Dictators-March.mid", "march", OUT, "a straight march for honky-tonk piano and horn"),
    t("18-Ride-that-train.mid", "swing", JAZZ, "swung honky-tonk piano, guitar and tenor sax, ride cymbal"),
    t("19-Rockin-trucker.mid", "rock", ROCK_STYLE, "rock and roll: triplet piano at 200 bpm, named for it"),
    t("20-Last-Trip.mid", "pop ballad", POP, "straight piano, synth brass and strings, 90 bpm"),
    t(
        "21-Dusty-Eyes.mid",
        "jazz ballad",
        JAZZ,
        "swung piano and nylon guitar, nine chords in ten with four notes or more, 85 bpm",
    ),
    t(
        "22-Variable-Journeys.mid",
        "jazz ballad",
        JAZZ,
        "swung piano and guitar, nine chords in ten with four notes or more, 85 bpm",
    ),
    t("23-Something-for-Silver-Sand.mid", "swing", JAZZ, "swung piano and guitar, ride cymbal, 130 bpm"),
    t(
        "24-needlessly-striking.mid",
        "jazz",
        JAZZ,
        "up-tempo swing at 216 bpm: ride cymbal, jazz-guitar melody, extended chords",
    ),
    t("25-Float-on-by.mid", "pop ballad", POP, "straight piano melody over synth pads and synth bass, 76-101 bpm"),
    t("26-Tantalizingly-Unusual.mid", "world fusion", OUT, "koto and sitar over muted guitars with five echo parts"),
    t("27-March-Winds.mid", "light pop", POP, "straight electric piano, guitar and square lead, 75 bpm"),
    t("28-Road-to-Warm-Places.mid", "rock", ROCK_STYLE, "distorted and muted guitars over a double kick"),
    t("29-Runaway.mid", "rock", ROCK_STYLE, "distorted guitar and organ over a straight rock beat"),
    t("30-On-the-waterfront.mid", "orchestral", OUT, "strings, brass, harp and choir"),
    t("31-Courtenay-Bridge.mid", "swing", JAZZ, "clarinet and two pianos over a swung ride cymbal, 160 bpm"),
    t("32-incidental-skies.mid", "jazz guitar", JAZZ, "swung jazz-guitar melody, fiddle and brass, 181 bpm"),
    t("33-Journey-to-times-gone-by.mid", "jazz guitar", JAZZ, "swung jazz guitar and piano, ride cymbal, 185 bpm"),
    t("34-flyingaway.mid", "light pop", POP, "straight flutes over acoustic guitar, 100 bpm"),
    t("35-deep-ride.mid", "swing", JAZZ, "swung piano, guitars and voices, 135 bpm"),
    t("36-faded-things.mid", "organ swing", JAZZ, "swung organ, guitars and fretless bass, ride cymbal, 185 bpm"),
    t("37-inevitably-engrossed.mid", "swing", JAZZ, "swung piano and guitar, ride cymbal, 130 bpm"),
    t("38-positive-thrill.mid", "swing", JAZZ, "swung honky-tonk piano and organ, ride cymbal, 185 bpm"),
    t("39-bangin-mover.mid", "swing", JAZZ, "swung piano and jazz-guitar melody, 135 bpm"),
    t("40-alternative.mid", "electronic", ELECTRONIC, "saw-lead sequences, orchestra hits and synth basses"),
    t("41-Libertador.mid", "orchestral", OUT, "string sections, brass and synth lead over slap bass"),
    t("42-Stranger-Echoes.mid", "ambient", OUT, "atmosphere pads and a dozen nylon-guitar echoes, no kit"),
    t(
        "43-Driving-on-the-midnight-highway.mid",
        "pop ballad",
        POP,
        "two-handed piano over slap bass, straight, 50-80 bpm",
    ),
    t("44-Above-the-sky.mid", "electronic", ELECTRONIC, "square and saw leads at 180 bpm"),
    t("45-Misty-Forest.mid", "ambient", OUT, "vibraphone, glockenspiel, koto and pads"),
    t("46-House-in-the-station.mid", "electronic", ELECTRONIC, "house: synth bass and marimba sequences, 125 bpm"),
    t(
        "47-Salty-Breeze.mid",
        "light pop",
        POP,
        "straight piano, soprano sax and fretless bass, smooth-jazz colour, 120 bpm",
    ),
    t("48-Techno-movement.mid", "techno", ELECTRONIC, "square-lead and guitar sequences, 133 bpm, named for it"),
    t("49-Last-Sunday.mid", "electric piano pop", POP, "straight electric piano under English horn and muted trumpet"),
    t("50-Snowy-Road.mid", "electric piano pop", POP, "straight electric piano under synth arpeggios and bells"),
    t("51-Summer-Intersection.mid", "light pop", POP, "straight piano chords, synth brass lead and bells, 115 bpm"),
    t("52-Dreamy-Oriental-Nights.mid", "world fusion", OUT, "koto, nylon guitar and synth leads"),
    t(
        "53-Where-Thomassons-Lie.mid",
        "orchestral",
        OUT,
        "xylophone, cello, flute, horn and tuba; the game leaves it out",
    ),
];

pub const FREEDOOM_DIR: &str = "usr/share/games/doom";

const ROCK: &str = "rock";
const METAL_GUITARS: &str = "distorted guitars lead a rock kit";

/// Every music lump of freedoom 0.12.1 (`freedoom1.wad/D_E1M5` and
/// `D_E2M6` are the same bytes). None is jazz or pop piano; the rock and
/// metal lumps are rock, the synth ones electronic.
pub const FREEDOOM_LUMPS: [GameTrack; 67] = [
    t("freedoom1.wad/D_BUNNY", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E1M1", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E1M2", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E1M3", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E1M4", "electronic", ELECTRONIC, "synth bass and lead sequences"),
    t("freedoom1.wad/D_E1M5", "ambient", OUT, "strings and bells, no kit"),
    t("freedoom1.wad/D_E1M6", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E1M7", "orchestral", OUT, "strings and piano over a kit"),
    t("freedoom1.wad/D_E1M8", "ambient", OUT, "held electric-piano triads and pads over a slow kit"),
    t("freedoom1.wad/D_E1M9", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E2M1", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E2M2", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E2M3", ROCK, ROCK_STYLE, "jazz-rock: clean and distorted guitars, electric piano"),
    t("freedoom1.wad/D_E2M4", "ambient", OUT, "sound effects and pads"),
    t("freedoom1.wad/D_E2M5", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E2M6", "ambient", OUT, "strings and bells, no kit"),
    t("freedoom1.wad/D_E2M7", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E2M8", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E2M9", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E3M1", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E3M2", "orchestral", OUT, "strings over bass and kit"),
    t("freedoom1.wad/D_E3M3", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E3M4", ROCK, ROCK_STYLE, "clean and distorted guitars over a rock kit"),
    t("freedoom1.wad/D_E3M5", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E3M6", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E3M7", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom1.wad/D_E3M8", "ambient", OUT, "pads, bells and strings, no kit"),
    t("freedoom1.wad/D_E3M9", "electronic", ELECTRONIC, "synth leads over percussion"),
    t("freedoom1.wad/D_INTER", ROCK, ROCK_STYLE, "synth lead and distorted guitars"),
    t("freedoom1.wad/D_INTRO", "orchestral", OUT, "strings and clean guitar"),
    t("freedoom1.wad/D_INTROA", ROCK, ROCK_STYLE, "ten seconds of distorted guitar"),
    t("freedoom1.wad/D_VICTOR", "ambient", OUT, "pads, strings and winds, no kit"),
    t("freedoom2.wad/D_ADRIAN", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom2.wad/D_AMPIE", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom2.wad/D_BETWEE", "electronic", ELECTRONIC, "synth leads"),
    t("freedoom2.wad/D_COUNT2", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom2.wad/D_COUNTD", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom2.wad/D_DDTBL2", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom2.wad/D_DDTBL3", "orchestral", OUT, "strings, piano and organ"),
    t("freedoom2.wad/D_DDTBLU", "electronic", ELECTRONIC, "synth bass and lead"),
    t("freedoom2.wad/D_DEAD", "ambient", OUT, "strings and piano, no kit"),
    t("freedoom2.wad/D_DEAD2", ROCK, ROCK_STYLE, "clean and distorted guitars over a rock kit"),
    t("freedoom2.wad/D_DM2INT", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom2.wad/D_DM2TTL", "orchestral", OUT, "strings over a kit"),
    t("freedoom2.wad/D_DOOM", "electronic", ELECTRONIC, "synth leads"),
    t("freedoom2.wad/D_DOOM2", "orchestral", OUT, "strings over a kit"),
    t("freedoom2.wad/D_EVIL", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom2.wad/D_IN_CIT", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom2.wad/D_MESSAG", ROCK, ROCK_STYLE, "clean electric guitar over a bass riff, verse and chorus"),
    t("freedoom2.wad/D_MESSG2", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom2.wad/D_OPENIN", "ambient", OUT, "bass drone, pads and strings"),
    t("freedoom2.wad/D_READ_M", ROCK, ROCK_STYLE, "clean electric guitar over a bass riff, verse and chorus"),
    t("freedoom2.wad/D_ROMER2", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom2.wad/D_ROMERO", ROCK, ROCK_STYLE, "progressive rock: piano and electric piano with distorted guitar"),
    t("freedoom2.wad/D_RUNNI2", ROCK, ROCK_STYLE, "synth lead and distorted guitars"),
    t("freedoom2.wad/D_RUNNIN", ROCK, ROCK_STYLE, "synth lead and distorted guitars"),
    t("freedoom2.wad/D_SHAWN", ROCK, ROCK_STYLE, "organ and distorted guitar over a rock kit"),
    t("freedoom2.wad/D_SHAWN2", "orchestral", OUT, "strings, bells and piano"),
    t("freedoom2.wad/D_SHAWN3", "electronic", ELECTRONIC, "driving synth-bass line, 157 bpm"),
    t("freedoom2.wad/D_STALKS", "orchestral", OUT, "strings and synth lead"),
    t("freedoom2.wad/D_STLKS2", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom2.wad/D_STLKS3", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom2.wad/D_TENSE", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom2.wad/D_THEDA2", ROCK, ROCK_STYLE, METAL_GUITARS),
    t("freedoom2.wad/D_THEDA3", "ambient", OUT, "bass, strings and pads"),
    t("freedoom2.wad/D_THE_DA", "orchestral", OUT, "strings over bass"),
    t("freedoom2.wad/D_ULTIMA", ROCK, ROCK_STYLE, METAL_GUITARS),
];

/// The filing of `name` in a hand-made table; a file the table does not name
/// is refused until someone files it in `table_file` (`xtask/src/data/games.rs`, ...).
pub(super) fn lookup<'a>(table: &'a [GameTrack], name: &str, package: &str, table_file: &str) -> Result<&'a GameTrack> {
    table
        .iter()
        .find(|t| t.name == name)
        .with_context(|| format!("{package}: no genre on record for {name}; look at it and file it in {table_file}"))
}

/// Whether a hand-made table files each name once.
#[cfg(test)]
pub(super) fn filed_once(table: &[GameTrack]) -> bool {
    let mut names: Vec<&str> = table.iter().map(|t| t.name).collect();
    let n = names.len();
    names.sort_unstable();
    names.dedup();
    names.len() == n
}

/// The GM family names of programs 0-127, eight at a time, with the
/// distorted guitars (29-30) named apart from the clean ones.
fn family(program: u8) -> &'static str {
    match program {
        29 | 30 => "distorted guitar",
        p => [
            "piano",
            "chromatic percussion",
            "organ",
            "guitar",
            "bass",
            "strings",
            "ensemble",
            "brass",
            "reed",
            "pipe",
            "synth lead",
            "synth pad",
            "synth effects",
            "ethnic",
            "percussive",
            "sound effects",
        ][usize::from(p / 8)],
    }
}

/// The three largest instrument families' shares of the pitched notes, e.g.
/// `distorted guitar 63%, bass 19%, ensemble 9%`.
pub fn instrument_shares(parts: &[Part]) -> String {
    let mut by: Vec<(&str, usize)> = Vec::new();
    for p in parts {
        let f = family(p.program);
        match by.iter_mut().find(|(n, _)| *n == f) {
            Some(e) => e.1 += p.notes.len(),
            None => by.push((f, p.notes.len())),
        }
    }
    let total: usize = by.iter().map(|e| e.1).sum::<usize>().max(1);
    by.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    by.iter().take(3).map(|(n, c)| format!("{n} {}%", 100 * c / total)).collect::<Vec<_>>().join(", ")
}

/// Band-in-a-Box's MIDI export: 120 ticks a beat, its bass on channel 2 in a
/// track named Bass and its drums on channel 10 in a track named Drums (then
/// piano on 3, melody on 4, soloist on 8; a track may also carry its
/// `(BB)` label). Its bass, drums, piano, guitar, strings, harmonies and
/// soloist are generated from the chord chart by the program's styles, so
/// such a file is synthetic even when its melody was written by hand.
pub fn band_in_a_box(smf: &Smf, parts: &[Part]) -> bool {
    let named = |name: &str, want: &[&str]| want.iter().any(|w| name.starts_with(w));
    let drums = smf.tracks.iter().any(|track| {
        let name = track.iter().find_map(|e| match e.kind {
            TrackEventKind::Meta(MetaMessage::TrackName(n)) => Some(String::from_utf8_lossy(n).into_owned()),
            _ => None,
        });
        name.is_some_and(|n| named(&n, &["Drums"]))
            && track.iter().any(|e| {
                matches!(e.kind, TrackEventKind::Midi { channel, .. } if channel.as_int() == cadenza_core::midi::DRUM_CHANNEL)
            })
    });
    smf.header.timing == Timing::Metrical(120.into())
        && drums
        && parts.iter().any(|p| p.channel == 1 && named(&p.name, &["Bass", "Base"]))
}

/// The file's copyright lines, each once, as written (NoteWorthy Composer's
/// unfilled template, `Copyright © 2006 <Name>` and `All Rights Reserved`,
/// included: it is what the file says).
pub fn copyright_lines(smf: &Smf) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for track in &smf.tracks {
        for e in track {
            if let TrackEventKind::Meta(MetaMessage::Copyright(c)) = e.kind {
                let s = String::from_utf8_lossy(c).trim().trim_end_matches('\0').trim().to_string();
                if s.chars().any(char::is_alphanumeric) && !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }
    out
}

/// `music/<file>` and title line pairs of Simutrans's `music.tab` (a `#` disables an entry).
pub fn music_tab_titles(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().map(|l| l.trim().trim_start_matches('#').trim()).collect();
    lines.windows(2).filter_map(|w| w[0].strip_prefix("music/").map(|f| (f.to_string(), w[1].to_string()))).collect()
}

/// One directory entry of a WAD file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lump {
    pub name: String,
    pub offset: usize,
    pub size: usize,
}

/// The lump directory of a Doom WAD: a 12-byte header (`IWAD` or `PWAD`,
/// lump count, directory offset, little-endian) and 16-byte entries (offset,
/// size, 8-byte name padded with NULs).
pub fn wad_lumps(bytes: &[u8]) -> Result<Vec<Lump>> {
    let le = |at: usize| -> Result<usize> {
        let b: [u8; 4] = bytes.get(at..at + 4).and_then(|s| s.try_into().ok()).context("truncated")?;
        usize::try_from(i32::from_le_bytes(b)).context("negative count or offset")
    };
    match bytes.get(..4) {
        Some(b"IWAD") | Some(b"PWAD") => {}
        _ => bail!("not a WAD file (no IWAD or PWAD header)"),
    }
    let count = le(4)?;
    let dir = le(8)?;
    if dir.checked_add(count.checked_mul(16).context("lump count overflows")?).is_none_or(|end| end > bytes.len()) {
        bail!("the lump directory ({count} entries at {dir}) runs past the end of the file");
    }
    (0..count)
        .map(|i| {
            let at = dir + 16 * i;
            let (offset, size) = (le(at)?, le(at + 4)?);
            let name: String = bytes[at + 8..at + 16].iter().take_while(|&&c| c != 0).map(|&c| char::from(c)).collect();
            if offset.checked_add(size).is_none_or(|end| end > bytes.len()) {
                bail!("lump {name} ({size} bytes at {offset}) runs past the end of the file");
            }
            Ok(Lump { name, offset, size })
        })
        .collect()
}

/// What a music lump holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LumpMusic {
    /// A Standard MIDI File (`MThd`).
    Midi,
    /// DMX MUS (`MUS\x1a`), Doom's own format; Cadenza does not convert it.
    Mus,
    Other,
}

pub fn lump_music(data: &[u8]) -> LumpMusic {
    if data.starts_with(b"MThd") {
        LumpMusic::Midi
    } else if data.starts_with(b"MUS\x1a") {
        LumpMusic::Mus
    } else {
        LumpMusic::Other
    }
}

/// The parts of a track's bytes, for the instrument shares (empty when midly cannot read it).
fn parts_of(bytes: &[u8]) -> Vec<Part> {
    Smf::parse(bytes).map(|smf| band::parts(&smf)).unwrap_or_default()
}

/// A track left out: in pop's dropped.csv, with its genre and what shows it.
fn left_out(track: &GameTrack, parts: &[Part]) -> DropReason {
    DropReason::GenreFitsNoStyle(format!("{}: {}; {}", track.genre, track.why, instrument_shares(parts)))
}

/// A kept track: reduced into the cache (once per content and reduction), its
/// provenance, and the comment's note on the reduction.
fn reduced(
    bytes: &[u8],
    source_file: &Path,
    cache: &Path,
    reduction: BandReduction,
) -> Result<(Origin, Provenance, String)> {
    let Ok(smf) = Smf::parse(bytes) else {
        // The checks refuse it with the reader's own error.
        return Ok((Origin::Midi(source_file.to_path_buf()), Provenance::Composed, String::new()));
    };
    let parts = band::parts(&smf);
    let (provenance, made) = if band_in_a_box(&smf, &parts) {
        (Provenance::Synthetic, "accompaniment generated by Band-in-a-Box (its track layout)")
    } else {
        (Provenance::Composed, "sequenced by hand")
    };
    let (path, summary) = reduce_cached(bytes, cache, reduction)?;
    Ok((Origin::Midi(path), provenance, format!("{made}; {summary}")))
}

/// A band file reduced into the cache (once per content and reduction):
/// where it is, and the note on the reduction for the manifest comment.
pub(super) fn reduce_cached(bytes: &[u8], cache: &Path, reduction: BandReduction) -> Result<(PathBuf, String)> {
    let r = band::reduce(bytes, reduction)?;
    let mut keyed = format!("{REDUCTION_VERSION}\n{}\n", reduction.name()).into_bytes();
    keyed.extend_from_slice(bytes);
    let dir = cache.join("band-midi");
    let path = dir.join(format!("{}.mid", &sha256_hex(&keyed)[..32]));
    if std::fs::read(&path).map_or(true, |old| old != r.bytes) {
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        cadenza_core::fsutil::write_atomic(&path, &r.bytes)
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok((path, r.summary(reduction)))
}

fn with_file_terms(licence: &str, smf_bytes: &[u8]) -> String {
    let lines = Smf::parse(smf_bytes).map(|s| copyright_lines(&s)).unwrap_or_default();
    if lines.is_empty() {
        licence.to_string()
    } else {
        format!("{licence}{}{}", super::FILE_STATES, lines.join("; "))
    }
}

/// Simutrans's tracks, for jazz, pop, rock and electronic as [`SIMUTRANS_TRACKS`] files them.
pub fn simutrans_candidates(
    unpacked: &Path,
    cache: &Path,
    styles: &[Style],
    reduction: BandReduction,
) -> Result<Vec<Candidate>> {
    let dir = unpacked.join(SIMUTRANS_DIR);
    let licence =
        format!("{} (debian/copyright of simutrans-data)", fetch::debian_licence(unpacked, SIMUTRANS_DATA.name())?);
    let tab_path = dir.join("music.tab");
    let tab = std::fs::read_to_string(&tab_path).with_context(|| format!("{}: cannot read", tab_path.display()))?;
    let titles = music_tab_titles(&tab);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mid"))
        .collect();
    files.sort();
    if files.len() != SIMUTRANS_TRACKS.len() {
        bail!(
            "{}: {} tracks where the table files {}; review xtask/src/data/games.rs",
            dir.display(),
            files.len(),
            SIMUTRANS_TRACKS.len()
        );
    }
    let mut result = Vec::new();
    for path in files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let track = lookup(&SIMUTRANS_TRACKS, &name, SIMUTRANS_DATA.source, "xtask/src/data/games.rs")?;
        let style = track.style.unwrap_or(Style::Pop);
        if !styles.contains(&style) {
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let title = titles.iter().find(|(f, _)| *f == name).map_or("", |(_, t)| t.as_str());
        let mut cand = Candidate {
            style,
            family: "debian/simutrans".into(),
            source: SIMUTRANS_DATA.source.into(),
            source_version: SIMUTRANS_DATA.version.into(),
            source_path: format!("{SIMUTRANS_DIR}/{name}"),
            licence: with_file_terms(&licence, &bytes),
            provenance: Provenance::Composed,
            comment: String::new(),
            rel_path: PathBuf::from(format!("midi/simutrans/{}", sanitize_path(&name))),
            origin: Origin::Midi(path.clone()),
        };
        let parts = parts_of(&bytes);
        let filed = format!("\"{title}\", Simutrans; {}: {}; {}", track.genre, track.why, instrument_shares(&parts));
        if track.style.is_none() {
            cand.origin = Origin::LeftOut(left_out(track, &parts));
            cand.comment = filed;
        } else {
            let (origin, provenance, note) = reduced(&bytes, &path, cache, reduction)?;
            cand.origin = origin;
            cand.provenance = provenance;
            cand.comment = format!("{filed}; {note}");
        }
        result.push(cand);
    }
    Ok(result)
}

/// Freedoom's music lumps, as [`FREEDOOM_LUMPS`] files them (rock to rock, electronic to electronic, the rest left out).
pub fn freedoom_candidates(
    unpacked: &Path,
    cache: &Path,
    styles: &[Style],
    reduction: BandReduction,
) -> Result<Vec<Candidate>> {
    let licence = format!(
        "{} (BSD-3-Clause terms, debian/copyright of freedoom; contributors in CREDITS)",
        fetch::debian_licence(unpacked, FREEDOOM.name())?
    );
    let mut result = Vec::new();
    let mut seen = 0usize;
    for wad in ["freedoom1.wad", "freedoom2.wad"] {
        let path = unpacked.join(FREEDOOM_DIR).join(wad);
        let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let lumps = wad_lumps(&bytes).with_context(|| format!("{}: cannot read the WAD", path.display()))?;
        for lump in lumps.iter().filter(|l| l.name.starts_with("D_")) {
            seen += 1;
            let name = format!("{wad}/{}", lump.name);
            let track = lookup(&FREEDOOM_LUMPS, &name, FREEDOOM.source, "xtask/src/data/games.rs")?;
            let style = track.style.unwrap_or(Style::Pop);
            if !styles.contains(&style) {
                continue;
            }
            let data = &bytes[lump.offset..lump.offset + lump.size];
            let stem = wad.trim_end_matches(".wad");
            let mut provenance = Provenance::Composed;
            let mut comment = String::new();
            let origin = match lump_music(data) {
                LumpMusic::Mus => Origin::LeftOut(DropReason::ConversionFailed(
                    "a DMX MUS lump, not Standard MIDI; Cadenza does not convert MUS".into(),
                )),
                LumpMusic::Other => {
                    Origin::LeftOut(DropReason::Unparseable(format!("{name}: neither Standard MIDI (MThd) nor MUS")))
                }
                LumpMusic::Midi => {
                    let parts = parts_of(data);
                    comment = format!("Freedoom {name}; {}: {}; {}", track.genre, track.why, instrument_shares(&parts));
                    if track.style.is_none() {
                        Origin::LeftOut(left_out(track, &parts))
                    } else {
                        // The reader's own error, should the reduction fail, needs a file to name.
                        let raw_dir = cache.join("wad-midi");
                        let raw = raw_dir.join(format!("{stem}_{}.mid", sanitize_path(&lump.name)));
                        if std::fs::read(&raw).map_or(true, |old| old != data) {
                            std::fs::create_dir_all(&raw_dir)
                                .with_context(|| format!("{}: cannot create", raw_dir.display()))?;
                            cadenza_core::fsutil::write_atomic(&raw, data)
                                .with_context(|| format!("{}: cannot write", raw.display()))?;
                        }
                        let (origin, p, note) = reduced(data, &raw, cache, reduction)?;
                        provenance = p;
                        comment.push_str(&format!("; {note}"));
                        origin
                    }
                }
            };
            let cand = Candidate {
                style,
                family: "debian/freedoom".into(),
                source: FREEDOOM.source.into(),
                source_version: FREEDOOM.version.into(),
                source_path: format!("{FREEDOOM_DIR}/{wad}#{}", lump.name),
                licence: licence.clone(),
                provenance,
                comment,
                rel_path: PathBuf::from(format!("midi/freedoom/{stem}_{}.mid", sanitize_path(&lump.name))),
                origin,
            };
            result.push(cand);
        }
    }
    if seen != FREEDOOM_LUMPS.len() {
        bail!(
            "freedoom: {seen} music lumps where the table files {}; review xtask/src/data/games.rs",
            FREEDOOM_LUMPS.len()
        );
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wad(lumps: &[(&str, &[u8])]) -> Vec<u8> {
        let mut data = Vec::new();
        let mut dir = Vec::new();
        for (name, body) in lumps {
            let offset = 12 + data.len();
            data.extend_from_slice(body);
            dir.extend_from_slice(&(offset as i32).to_le_bytes());
            dir.extend_from_slice(&(body.len() as i32).to_le_bytes());
            let mut n = [0u8; 8];
            n[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&n);
        }
        let mut out = b"PWAD".to_vec();
        out.extend_from_slice(&(lumps.len() as i32).to_le_bytes());
        out.extend_from_slice(&((12 + data.len()) as i32).to_le_bytes());
        out.extend_from_slice(&data);
        out.extend_from_slice(&dir);
        out
    }

    #[test]
    fn wad_directories_list_lumps_and_music_formats() {
        let bytes = wad(&[("MAP01", b"xx"), ("D_RUNNIN", b"MThd\0\0\0\x06"), ("D_MUS", b"MUS\x1a...")]);
        let lumps = wad_lumps(&bytes).expect("reads");
        let names: Vec<&str> = lumps.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["MAP01", "D_RUNNIN", "D_MUS"]);
        let data = |l: &Lump| &bytes[l.offset..l.offset + l.size];
        assert_eq!(lump_music(data(&lumps[1])), LumpMusic::Midi);
        assert_eq!(lump_music(data(&lumps[2])), LumpMusic::Mus);
        assert_eq!(lump_music(data(&lumps[0])), LumpMusic::Other);
    }

    #[test]
    fn broken_wads_are_refused() {
        assert!(wad_lumps(b"RIFF\0\0\0\0\0\0\0\0").is_err());
        let mut bytes = wad(&[("D_X", b"MThd")]);
        let n = bytes.len();
        bytes.truncate(n - 4);
        assert!(wad_lumps(&bytes).is_err(), "directory past the end");
        let mut bytes = wad(&[("D_X", b"MThd")]);
        bytes[16..20].copy_from_slice(&1000i32.to_le_bytes());
        assert!(wad_lumps(&bytes).is_err(), "lump past the end");
    }

    #[test]
    fn music_tab_pairs_files_with_titles_even_when_disabled() {
        let tab = "# music.tab\nmusic/01-A.mid\nMain Theme\n#music/53-B.mid\n#Where B Lies\n";
        assert_eq!(
            music_tab_titles(tab),
            vec![
                ("01-A.mid".to_string(), "Main Theme".to_string()),
                ("53-B.mid".to_string(), "Where B Lies".to_string())
            ]
        );
    }

    #[test]
    fn tables_name_each_track_once_and_file_rock_and_electronic_apart() {
        for table in [&SIMUTRANS_TRACKS[..], &FREEDOOM_LUMPS[..]] {
            for (i, a) in table.iter().enumerate() {
                assert!(table[i + 1..].iter().all(|b| b.name != a.name), "{} twice", a.name);
                let out_genres = ["march", "orchestral", "ambient", "world fusion"];
                let filed_right = match a.genre {
                    "rock" => a.style == ROCK_STYLE,
                    "electronic" | "techno" => a.style == ELECTRONIC,
                    g if out_genres.contains(&g) => a.style.is_none(),
                    _ => matches!(a.style, Some(Style::Jazz | Style::Pop)),
                };
                assert!(filed_right, "{}: {} filed as {:?}", a.name, a.genre, a.style);
            }
        }
        let count = |table: &[GameTrack], s| table.iter().filter(|t| t.style == s).count();
        assert_eq!(
            [JAZZ, POP, ROCK_STYLE, ELECTRONIC, OUT].map(|s| count(&SIMUTRANS_TRACKS, s)),
            [19, 17, 4, 5, 8],
            "Simutrans: jazz, pop, rock, electronic, left out"
        );
        assert_eq!(
            [ROCK_STYLE, ELECTRONIC, OUT].map(|s| count(&FREEDOOM_LUMPS, s)),
            [43, 6, 18],
            "Freedoom: rock, electronic, left out"
        );
    }

    #[test]
    fn band_in_a_box_is_told_by_its_layout() {
        use midly::{Format, Header, MidiMessage, TrackEvent};
        let track = |name: &'static [u8], ch: u8| {
            let midi = |message| TrackEventKind::Midi { channel: ch.into(), message };
            vec![
                TrackEvent { delta: 0.into(), kind: TrackEventKind::Meta(MetaMessage::TrackName(name)) },
                TrackEvent { delta: 0.into(), kind: midi(MidiMessage::NoteOn { key: 40.into(), vel: 90.into() }) },
                TrackEvent { delta: 120.into(), kind: midi(MidiMessage::NoteOn { key: 40.into(), vel: 0.into() }) },
                TrackEvent { delta: 0.into(), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) },
            ]
        };
        let smf = |tpb: u16, bass: &'static [u8]| Smf {
            header: Header::new(Format::Parallel, Timing::Metrical(tpb.into())),
            tracks: vec![track(bass, 1), track(b"Drums", 9), track(b"Piano", 2), track(b"Melody", 3)],
        };
        let told = |s: &Smf| band_in_a_box(s, &band::parts(s));
        assert!(told(&smf(120, b"Bass")));
        assert!(!told(&smf(96, b"Bass")), "another resolution");
        assert!(!told(&smf(120, b"Baixo 01")), "another bass name");
    }

    #[test]
    fn instrument_shares_name_the_largest_families() {
        let part = |program, n| Part {
            track: 0,
            channel: 0,
            program,
            name: String::new(),
            notes: vec![band::PartNote { start: 0, end: 1, key: 60 }; n],
        };
        let parts = [part(30, 60), part(33, 30), part(0, 5), part(48, 5)];
        assert_eq!(instrument_shares(&parts), "distorted guitar 60%, bass 30%, ensemble 5%");
    }
}
