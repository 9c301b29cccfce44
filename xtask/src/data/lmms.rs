//! The demo projects of Debian `lmms-common` (`.mmp`, LMMS's XML, and
//! `.mmpz`, the same behind Qt's `qCompress`: a 4-byte length, then zlib).
//! [`read_project`] plays a project's notes as LMMS does: the song editor's
//! patterns at their positions (notes past a pattern's end do not sound),
//! and each Beat/Bassline clip looping its beat's patterns over the clip's
//! length (the one beat editor, saved inside the first Beat/Bassline track,
//! holds every beat: beat N's patterns start at bar N, and the beat lasts as
//! long as its longest pattern); muted tracks, patterns and clips are silent. A note's
//! key sounds `key - basenote + 57` (LMMS's A4 is key 57, MIDI 69). Drums
//! are the unpitched instruments: the Kicker and sfxr synths, a SoundFont's
//! bank 128, and sample tracks whose sample is not from LMMS's pitched
//! folders ([`PITCHED_SAMPLE_DIRS`]). The notes go out as a
//! [`super::rosegarden::Song`] (LMMS's 48 ticks a quarter scaled to 960),
//! written and band-reduced like the Rosegarden songs.
//!
//! Each project is filed by hand in [`PROJECTS`]: the electronic dance music
//! (trance, house, techno, drum and bass, dubstep) is electronic, the 80s
//! rock piece rock, three reggae projects pop; the chiptune, hip-hop sketches
//! and the tutorial fit no shipped style.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cadenza_core::dataset::Provenance;

use super::band::BandReduction;
use super::build::DropReason;
use super::fetch::{self, LMMS_COMMON};
use super::games::{lookup, GameTrack};
use super::music21::sanitize_path;
use super::rosegarden::{to_midi, Song, SongNote, SongTrack, TICKS_PER_QUARTER};
use super::xml::{tree, Element};
use super::{Candidate, Origin, Style};

/// Where the projects are in the unpacked package, and in the source tree the copyright file names.
pub const PROJECTS_DIR: &str = "usr/share/lmms/projects";
const SOURCE_DIR: &str = "data/projects";
/// LMMS's ticks in a quarter note.
pub const LMMS_TICKS_PER_QUARTER: i64 = 48;
/// LMMS's A4: the key a note sounds at its sample's or synth's own pitch (base note 57).
const DEFAULT_BASE_NOTE: i64 = 57;
/// How long a one-shot step (length -192, the beat editor's) lasts: a sixteenth.
const STEP_TICKS: i64 = 12;
/// Sample folders of LMMS whose samples are pitched instruments (the rest are drums and effects).
pub const PITCHED_SAMPLE_DIRS: [&str; 5] =
    ["instruments/", "stringsnpads/", "basses/", "drumsynth/instrument/", "latin/latin_guitar"];
/// Instrument plugins that play no pitch.
const UNPITCHED_PLUGINS: [&str; 2] = ["kicker", "sfxr"];

const POP: Option<Style> = Some(Style::Pop);
const ROCK: Option<Style> = Some(Style::Rock);
const ELECTRONIC: Option<Style> = Some(Style::Electronic);
const OUT: Option<Style> = None;

const fn p(name: &'static str, genre: &'static str, style: Option<Style>, why: &'static str) -> GameTrack {
    GameTrack { name, genre, style, why }
}

const EDM: &str = "electronic";

/// Every project of lmms-common 1.2.2 (paths under `projects/`).
pub const PROJECTS: [GameTrack; 26] = [
    p(
        "demos/Alf42red-Mauiwowi.mmpz",
        "reggae pop",
        POP,
        "Alf42red: 102 bpm, shuffled guitar and four-note chord stabs on the beat over an acoustic kit and \
         woodblocks, a bass line and two melodies",
    ),
    p(
        "demos/CapDan/CapDan-ReggaeTry.mmpz",
        "reggae",
        POP,
        "CapDan: electric-piano chords, slap bass and strings over a reggae beat (samples)",
    ),
    p(
        "demos/CapDan/CapDan-ReggaetonTry.mmpz",
        "reggaeton",
        POP,
        "CapDan: electric-piano chords, muted bass and a trumpet line over a dembow beat (samples)",
    ),
    p(
        "demos/CapDan/CapDan-TwilightArea-OriginalByAlf42red.mmpz",
        "drum and bass",
        ELECTRONIC,
        "170 bpm, dirt bass, pads",
    ),
    p(
        "demos/CapDan/CapDan-ZeroSumGame-OriginalByZakarra.mmpz",
        "dubstep",
        ELECTRONIC,
        "144 bpm, sub and dub bass, synths",
    ),
    p("demos/EsoXLB-CPU.mmpz", "techno", ELECTRONIC, "128 bpm, LB302 and SID bass, effects, voices"),
    p("demos/Impulslogik-Zen.mmpz", "trance", ELECTRONIC, "140 bpm, synth leads over a four-on-the-floor kick"),
    p("demos/Jousboxx-BuzzerBeater.mmpz", EDM, ELECTRONIC, "128 bpm, Kicker-synth arpeggios and chords, sidechain"),
    p("demos/Momo64-esp.mmpz", "trance", ELECTRONIC, "138 bpm, analogue basses, pads and leads"),
    p("demos/Oglsdl-Dr8v2.mmpz", EDM, ELECTRONIC, "ZynAddSubFX synth layers only"),
    p("demos/Oglsdl-PpTrip.mmpz", "psytrance", ELECTRONIC, "140 bpm, synth sequences and organ"),
    p("demos/Saber-FinalStep.mmpz", EDM, ELECTRONIC, "140 bpm, synth stabs over beat patterns"),
    p("demos/Settel-InnerRecreation.mmpz", "trance", ELECTRONIC, "148 bpm, lead, choir and bass"),
    p("demos/Shovon-ProgressiveHousePluckDemo.mmpz", "progressive house", ELECTRONIC, "a pluck sequence over a kick"),
    p("demos/Skiessi/Skiessi-C64.mmpz", "chiptune", OUT, "five SID voices over a drum machine"),
    p("demos/Skiessi/Skiessi-Onion.mmpz", EDM, ELECTRONIC, "140 bpm, LB302 and Bit Invader over electro drums"),
    p("demos/Socceroos-Progress.mmpz", EDM, ELECTRONIC, "200 bpm, synth bass line and sequences"),
    p("demos/StrictProduction-DearJonDoe.mmp", "hip-hop", OUT, "87 bpm, chopped guitar samples over a beat"),
    p("demos/TameAnderson-MakeMe.mmpz", EDM, ELECTRONIC, "140 bpm, rave bass and synths"),
    p("demos/Thomasso-AxeFromThe80s.mmpz", "rock", ROCK, "140 bpm, synth lead and slap bass over a rock kit"),
    p("shorties/Crunk(Demo).mmp", "hip-hop", OUT, "a few bars of Game Boy synth over a crunk beat"),
    p("shorties/DirtyLove.mmpz", "drum and bass", ELECTRONIC, "177 bpm, synth bass, pad and voice"),
    p("shorties/Greshz-CoolSnip.mmpz", EDM, ELECTRONIC, "a few bars of one synth over a kick"),
    p("shorties/Skiessi-222.mmpz", "hip-hop", OUT, "100 bpm, two synths over a hip-hop beat"),
    p("shorties/Surrender-Main.mmpz", "trance", ELECTRONIC, "a few bars of lead, bass, strings and arpeggio"),
    p("tutorials/editing_note_volumes.mmp", "tutorial", OUT, "one beat pattern showing note volumes"),
];

/// The XML text of a project file's bytes (`.mmpz`: length-prefixed zlib).
pub fn project_text(bytes: &[u8], compressed: bool) -> Result<String> {
    if !compressed {
        return String::from_utf8(bytes.to_vec()).context("not UTF-8 text");
    }
    let Some(body) = bytes.get(4..) else { bail!("too short for a compressed project") };
    let mut text = String::new();
    flate2::read::ZlibDecoder::new(body).read_to_string(&mut text).context("not zlib-compressed UTF-8 text")?;
    Ok(text)
}

fn num(e: &Element, key: &str, default: i64) -> Result<i64> {
    match e.attr(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<f64>()
            .map(|x| x.round() as i64)
            .with_context(|| format!("<{}> attribute {key}={v:?} is not a number", e.name)),
    }
}

fn muted(e: &Element) -> bool {
    e.attr("muted").is_some_and(|m| m != "0")
}

/// An instrument track's name, GM program (guessed from its name, for the
/// band reduction's bass and held-chord rules), whether it is drums, and its key offset.
fn instrument(track: &Element) -> (String, u8, bool, i64) {
    let name = track.attr("name").unwrap_or("").trim().to_string();
    let it = track.first("instrumenttrack");
    let base = it.and_then(|i| num(i, "basenote", DEFAULT_BASE_NOTE).ok()).unwrap_or(DEFAULT_BASE_NOTE);
    let inst = it.and_then(|i| i.first("instrument"));
    let plugin = inst.and_then(|i| i.attr("name")).unwrap_or("");
    let settings = inst.and_then(|i| i.children.first());
    let drums = match plugin {
        p if UNPITCHED_PLUGINS.contains(&p) => true,
        "audiofileprocessor" => {
            let src = settings.and_then(|s| s.attr("src")).unwrap_or("");
            !PITCHED_SAMPLE_DIRS.iter().any(|d| src.starts_with(d))
        }
        "sf2player" => settings.and_then(|s| s.attr("bank")) == Some("128"),
        _ => false,
    };
    let lower = name.to_lowercase();
    let program = if lower.contains("bass") {
        33
    } else if ["pad", "string", "choir"].iter().any(|w| lower.contains(w)) {
        89
    } else if lower.contains("piano") {
        4
    } else {
        0
    };
    (name, program, drums, DEFAULT_BASE_NOTE - base)
}

/// Notes of a pattern, placed at `at` and cut at `until` (LMMS ticks).
fn pattern_notes(pattern: &Element, at: i64, until: i64, offset: i64, out: &mut Vec<SongNote>) -> Result<()> {
    for n in pattern.all("note") {
        let start = at + num(n, "pos", 0)?;
        let len = num(n, "len", STEP_TICKS)?;
        let end = (start + if len > 0 { len } else { STEP_TICKS }).min(until);
        let key = num(n, "key", DEFAULT_BASE_NOTE)? + offset + 12;
        if start >= until || end <= start || !(0..=127).contains(&key) {
            continue;
        }
        let scale = i64::from(TICKS_PER_QUARTER) / LMMS_TICKS_PER_QUARTER;
        out.push(SongNote {
            start: start * scale,
            end: end * scale,
            pitch: key as u8,
            velocity: num(n, "vol", 100)?.clamp(1, 127) as u8,
        });
    }
    Ok(())
}

/// Read a project from its XML text.
pub fn read_project(xml: &str) -> Result<Song> {
    let root = tree(xml)?;
    if root.name != "lmms-project" && root.name != "multimedia-project" {
        bail!("not an LMMS project (root <{}>)", root.name);
    }
    let head = root.first("head").context("no <head>")?;
    let bpm = num(head, "bpm", 140)?;
    if bpm <= 0 {
        bail!("<head> bpm {bpm}");
    }
    let ts_num = num(head, "timesig_numerator", 4)?.clamp(1, 64);
    let ts_den = num(head, "timesig_denominator", 4)?.clamp(1, 64);
    let bar = (4 * LMMS_TICKS_PER_QUARTER * ts_num / ts_den).max(1);
    let song_el = root.first("song").context("no <song>")?;
    let container = song_el.first("trackcontainer").context("no song <trackcontainer>")?;
    // One beat editor serves every Beat/Bassline track; LMMS saves it inside the first.
    let beat_tracks: Vec<&Element> = container
        .all("track")
        .filter_map(|t| t.first("bbtrack").and_then(|b| b.first("trackcontainer")))
        .next()
        .map(|c| c.all("track").filter(|t| t.attr("type") == Some("0") && !muted(t)).collect())
        .unwrap_or_default();
    let mut beat_notes: Vec<Vec<SongNote>> = vec![Vec::new(); beat_tracks.len()];
    let mut tracks = Vec::new();
    let mut beat_index = 0i64;
    for track in container.all("track") {
        match track.attr("type") {
            Some("0") if !muted(track) => {
                let (label, program, drums, offset) = instrument(track);
                let mut notes = Vec::new();
                for pat in track.all("pattern").filter(|p| !muted(p)) {
                    let at = num(pat, "pos", 0)?;
                    let len = num(pat, "len", bar)?.max(1);
                    pattern_notes(pat, at, at + len, offset, &mut notes)?;
                }
                tracks.push(SongTrack { label, program, drums, notes, pedal: Vec::new() });
            }
            Some("1") => {
                let index = beat_index;
                beat_index += 1;
                if muted(track) {
                    continue;
                }
                // This beat's pattern of each beat-editor track, and the beat's length.
                let mut patterns: Vec<Vec<&Element>> = Vec::new();
                let mut length = bar;
                for t in &beat_tracks {
                    let mut mine = Vec::new();
                    for pat in t.all("pattern").filter(|p| !muted(p)) {
                        if num(pat, "pos", 0)? / bar == index {
                            let len = num(pat, "len", bar)?;
                            length = length.max((len + bar - 1) / bar * bar);
                            mine.push(pat);
                        }
                    }
                    patterns.push(mine);
                }
                for clip in track.all("bbtco").filter(|c| !muted(c)) {
                    let at = num(clip, "pos", 0)?;
                    let until = at + num(clip, "len", length)?.max(0);
                    for (ti, pats) in patterns.iter().enumerate() {
                        let offset = instrument(beat_tracks[ti]).3;
                        let mut loop_at = at;
                        while loop_at < until {
                            for pat in pats {
                                pattern_notes(pat, loop_at, until, offset, &mut beat_notes[ti])?;
                            }
                            loop_at += length;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    for (t, notes) in beat_tracks.iter().zip(beat_notes) {
        let (label, program, drums, _) = instrument(t);
        tracks.push(SongTrack { label, program, drums, notes, pedal: Vec::new() });
    }
    tracks.retain(|t| !t.notes.is_empty());
    for t in &mut tracks {
        t.notes.sort_by_key(|n| (n.start, n.pitch, n.end));
    }
    Ok(Song {
        tracks,
        tempos: vec![(0, bpm as f64)],
        time_signatures: vec![(0, ts_num as u8, ts_den as u8)],
        title: String::new(),
        composer: String::new(),
        copyright: String::new(),
        muted: Vec::new(),
    })
}

/// The projects filed into `styles` (pop, rock, electronic); the rest are listed (as pop's dropped rows) with their genre.
pub fn candidates(unpacked: &Path, cache: &Path, styles: &[Style], reduction: BandReduction) -> Result<Vec<Candidate>> {
    if ![Style::Pop, Style::Rock, Style::Electronic].iter().any(|s| styles.contains(s)) {
        return Ok(Vec::new());
    }
    let dir = unpacked.join(PROJECTS_DIR);
    let licences = fetch::FileLicences::read(unpacked, &LMMS_COMMON)?;
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("{}: cannot list", d.display()))? {
            let path = e?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "mmp" || x == "mmpz") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut result = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&dir).unwrap_or(path).to_string_lossy().into_owned();
        let project = lookup(&PROJECTS, &rel, LMMS_COMMON.source, "xtask/src/data/lmms.rs")?;
        let stem = rel.trim_end_matches(".mmpz").trim_end_matches(".mmp").replace('/', "-");
        let style = project.style.unwrap_or(Style::Pop);
        if !styles.contains(&style) {
            continue;
        }
        let mut cand = Candidate {
            style,
            family: "debian/lmms-demos".into(),
            source: LMMS_COMMON.source.into(),
            source_version: LMMS_COMMON.version.into(),
            source_path: format!("{PROJECTS_DIR}/{rel}"),
            licence: licences.of(&format!("{SOURCE_DIR}/{rel}"))?,
            provenance: Provenance::Composed,
            comment: String::new(),
            rel_path: PathBuf::from(format!("midi/lmms/{}.mid", sanitize_path(&stem))),
            origin: Origin::LeftOut(DropReason::GenreFitsNoStyle(format!("{}: {}", project.genre, project.why))),
        };
        if project.style.is_some() {
            let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
            let song = project_text(&bytes, rel.ends_with(".mmpz"))
                .and_then(|t| read_project(&t))
                .with_context(|| format!("{}", path.display()))?;
            let midi = to_midi(&song).with_context(|| format!("{}", path.display()))?;
            let (file, summary) = super::games::reduce_cached(&midi, cache, reduction)?;
            cand.comment = format!(
                "{}: {}; read from the LMMS project (loops expanded, drums dropped), sequenced by hand; {summary}",
                project.genre, project.why
            );
            cand.origin = Origin::Midi(file);
        }
        result.push(cand);
    }
    if files.len() != PROJECTS.len() {
        bail!(
            "{}: {} projects where the table files {}; review xtask/src/data/lmms.rs",
            dir.display(),
            files.len(),
            PROJECTS.len()
        );
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROJECT: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lmms-project>
<lmms-project version="1.0">
  <head bpm="120" timesig_numerator="4" timesig_denominator="4"/>
  <song>
    <trackcontainer type="song">
      <track type="0" name="Keys" muted="0">
        <instrumenttrack basenote="57"><instrument name="tripleoscillator"><tripleoscillator/></instrument></instrumenttrack>
        <pattern pos="192" len="192" muted="0"><note pos="0" key="48" len="48" vol="80"/><note pos="240" key="50" len="48"/></pattern>
        <pattern pos="0" len="192" muted="1"><note pos="0" key="40" len="48"/></pattern>
      </track>
      <track type="0" name="Low bass" muted="0">
        <instrumenttrack basenote="69"><instrument name="audiofileprocessor"><audiofileprocessor src="basses/b.ogg"/></instrument></instrumenttrack>
        <pattern pos="0" len="192"><note pos="0" key="57" len="24"/></pattern>
      </track>
      <track type="1" name="Beat 0" muted="0">
        <bbtrack><trackcontainer type="bbtrackcontainer">
          <track type="0" name="Kick"><instrumenttrack><instrument name="audiofileprocessor"><audiofileprocessor src="drums/kick01.ogg"/></instrument></instrumenttrack>
            <pattern pos="0" len="192" steps="16"><note pos="0" key="57" len="-192"/><note pos="96" key="57" len="-192"/></pattern>
            <pattern pos="192" len="192" steps="16"><note pos="0" key="60" len="-192"/></pattern>
          </track>
        </trackcontainer></bbtrack>
        <bbtco pos="0" len="384" muted="0"/>
        <bbtco pos="768" len="96" muted="1"/>
      </track>
      <track type="1" name="Beat 1" muted="0">
        <bbtrack/>
        <bbtco pos="1536" len="96" muted="0"/>
      </track>
    </trackcontainer>
  </song>
</lmms-project>"#;

    #[test]
    fn a_project_plays_its_patterns_and_loops() {
        let song = read_project(PROJECT).expect("reads");
        assert_eq!(song.tempos, vec![(0, 120.0)]);
        let by = |l: &str| song.tracks.iter().find(|t| t.label == l).expect(l);
        let keys = by("Keys");
        assert!(!keys.drums);
        // The muted pattern is silent; the note past the pattern's end does not sound;
        // key 48 is LMMS's C4, MIDI 60; 48 LMMS ticks are 960.
        let n: Vec<(i64, i64, u8, u8)> = keys.notes.iter().map(|n| (n.start, n.end, n.pitch, n.velocity)).collect();
        assert_eq!(n, vec![(192 * 20, 240 * 20, 60, 80)]);
        // Base note 69: key 57 sounds an octave lower than written.
        assert_eq!(by("Low bass").notes[0].pitch, 57);
        assert_eq!(by("Low bass").program, 33);
        let kick = by("Kick");
        assert!(kick.drums);
        // Beat 0 (one bar) loops twice in its 384-tick clip; the muted clip is silent;
        // beat 1 (the kick's pattern at bar 1) sounds in Beat 1's clip.
        let starts: Vec<(i64, u8)> = kick.notes.iter().map(|n| (n.start / 20, n.pitch)).collect();
        assert_eq!(starts, vec![(0, 69), (96, 69), (192, 69), (288, 69), (1536, 72)]);
        assert_eq!(kick.notes[0].end - kick.notes[0].start, STEP_TICKS * 20);
    }

    #[test]
    fn compressed_and_broken_projects() {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(PROJECT.as_bytes()).expect("zlib");
        let mut bytes = (PROJECT.len() as u32).to_be_bytes().to_vec();
        bytes.extend(z.finish().expect("zlib"));
        assert_eq!(project_text(&bytes, true).expect("inflates"), PROJECT);
        assert!(project_text(b"\0\0\0\x05junk", true).is_err());
        let e = read_project("<rosegarden-data/>").expect_err("not lmms");
        assert!(e.to_string().contains("not an LMMS project"), "{e}");
        let bad = PROJECT.replace("bpm=\"120\"", "bpm=\"fast\"");
        assert!(format!("{:#}", read_project(&bad).expect_err("bpm")).contains("bpm=\"fast\" is not a number"));
    }

    #[test]
    fn projects_are_filed_once() {
        assert!(super::super::games::filed_once(&PROJECTS));
    }

    #[test]
    fn dance_music_is_electronic() {
        let edm =
            ["electronic", "techno", "trance", "psytrance", "house", "progressive house", "drum and bass", "dubstep"];
        for p in &PROJECTS {
            assert_eq!(p.style == ELECTRONIC, edm.contains(&p.genre), "{}: {}", p.name, p.genre);
        }
        assert_eq!(PROJECTS.iter().filter(|p| p.style == ELECTRONIC).count(), 17);
    }

    /// The real package, when a data build has unpacked it.
    #[test]
    fn the_real_reggae_demo_reads() {
        let path = crate::env::repo_root()
            .join("data/cache/unpacked")
            .join(LMMS_COMMON.archive)
            .join(PROJECTS_DIR)
            .join("demos/CapDan/CapDan-ReggaeTry.mmpz");
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("skipped: {} is not there (run cargo xtask data --styles pop)", path.display());
            return;
        };
        let song = read_project(&project_text(&bytes, true).expect("inflates")).expect("reads");
        let pitched: usize = song.tracks.iter().filter(|t| !t.drums).map(|t| t.notes.len()).sum();
        let drums = song.tracks.iter().filter(|t| t.drums).count();
        assert!(pitched > 100 && drums >= 4, "{pitched} pitched notes, {drums} drum tracks");
    }
}
