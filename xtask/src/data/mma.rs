//! Synthetic accompaniment: MMA (Musical MIDI Accompaniment, from the
//! pinned Debian package, run by the project's Python 3 from its unpacked copy) renders
//! the chord charts in `scripts/data/mma/` over jazz and pop grooves of its
//! standard library. Only the comping (chord, arpeggio, plectrum) and bass
//! tracks are kept; drums and melodic pads are dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use cadenza_core::dataset::{sha256_hex, Provenance};
use midly::{MetaMessage, MidiMessage, Smf, TrackEventKind};

use super::fetch::MMA;
use super::{Candidate, Origin, Style};
use crate::env::repo_root;

/// Bump with any change to how files are generated or filtered; it is hashed into every key.
const RENDER_VERSION: &str = "mma-render-1";
/// A chart is played through until the piece has at least this many bars.
const MIN_BARS: usize = 48;
/// Where the charts live, relative to the repository.
const CHART_DIR: &str = "scripts/data/mma";

/// A groove of MMA's standard library.
#[derive(Debug, Clone, Copy)]
pub struct Groove {
    /// Name as `Groove` takes it.
    pub name: &'static str,
    /// Its library file, relative to `usr/share/mma/lib/stdlib/`.
    pub file: &'static str,
    /// A busier variation for the second chorus, when the library has one.
    pub variation: Option<&'static str>,
    /// Tempo range in beats per minute; each render picks one from its hash.
    pub bpm: (u32, u32),
}

pub const JAZZ_GROOVES: [Groove; 7] = [
    Groove { name: "Swing", file: "swing.mma", variation: Some("SwingWalk"), bpm: (120, 176) },
    Groove { name: "Bebop", file: "bebop.mma", variation: Some("BebopPlus"), bpm: (160, 220) },
    Groove { name: "Ballad", file: "ballad.mma", variation: Some("Ballad1"), bpm: (60, 80) },
    Groove { name: "JazzWaltz", file: "jazzwaltz.mma", variation: Some("JazzWaltz1"), bpm: (120, 170) },
    Groove { name: "BossaNova", file: "bossanova.mma", variation: Some("BossaNovaPlus"), bpm: (120, 150) },
    Groove { name: "BoggieWoggie", file: "boggiewoggie.mma", variation: Some("BoggieWoggie1"), bpm: (130, 170) },
    Groove { name: "Evansish", file: "evansish.mma", variation: Some("Evansish1"), bpm: (70, 110) },
];

pub const POP_GROOVES: [Groove; 6] = [
    Groove { name: "PianoBallad", file: "pianoballad.mma", variation: Some("PianoBallad1"), bpm: (64, 84) },
    Groove { name: "PopBallad", file: "popballad.mma", variation: Some("PopBallad1"), bpm: (68, 88) },
    Groove { name: "SoftRock", file: "softrock.mma", variation: Some("SoftRock1"), bpm: (92, 116) },
    Groove { name: "8Beat", file: "8beat.mma", variation: Some("8Beat1"), bpm: (100, 126) },
    Groove { name: "R&B-Ballad", file: "rb-ballad.mma", variation: Some("R&B-BalladPlus"), bpm: (62, 78) },
    Groove { name: "RockBallad", file: "rockballad.mma", variation: Some("RockBallad1"), bpm: (66, 84) },
];

/// A chord chart of ours and the grooves it is played over.
#[derive(Debug, Clone, Copy)]
pub struct Chart {
    /// File stem under `scripts/data/mma/<style>/`.
    pub name: &'static str,
    pub style: Style,
    pub grooves: &'static [&'static str],
    /// Keys per groove; 12 plays every key.
    pub keys: usize,
}

const SWING_LIKE: &[&str] = &["Swing", "Bebop", "Ballad", "BossaNova", "Evansish"];
const ALL_POP: &[&str] = &["PianoBallad", "PopBallad", "SoftRock", "8Beat", "R&B-Ballad", "RockBallad"];

pub const CHARTS: [Chart; 22] = [
    Chart { name: "ii-v-i-major", style: Style::Jazz, grooves: SWING_LIKE, keys: 12 },
    Chart { name: "ii-v-i-minor", style: Style::Jazz, grooves: SWING_LIKE, keys: 12 },
    Chart { name: "blues", style: Style::Jazz, grooves: &["Swing", "Bebop", "BoggieWoggie"], keys: 6 },
    Chart { name: "minor-blues", style: Style::Jazz, grooves: &["Swing", "BossaNova", "Ballad"], keys: 4 },
    Chart { name: "boogie-blues", style: Style::Jazz, grooves: &["BoggieWoggie"], keys: 12 },
    Chart { name: "rhythm-changes", style: Style::Jazz, grooves: &["Swing", "Bebop"], keys: 6 },
    Chart { name: "aaba-ballad", style: Style::Jazz, grooves: &["Ballad", "Evansish", "Swing", "BossaNova"], keys: 4 },
    Chart { name: "minor-cycle", style: Style::Jazz, grooves: &["Swing", "BossaNova", "Ballad"], keys: 4 },
    Chart { name: "descending-ii-v", style: Style::Jazz, grooves: &["Swing", "Bebop", "BossaNova"], keys: 4 },
    Chart { name: "modal", style: Style::Jazz, grooves: &["Swing", "BossaNova"], keys: 3 },
    Chart { name: "waltz-ii-v-i", style: Style::Jazz, grooves: &["JazzWaltz"], keys: 12 },
    Chart { name: "waltz-form", style: Style::Jazz, grooves: &["JazzWaltz"], keys: 6 },
    Chart { name: "i-v-vi-iv", style: Style::Pop, grooves: ALL_POP, keys: 4 },
    Chart { name: "vi-iv-i-v", style: Style::Pop, grooves: ALL_POP, keys: 4 },
    Chart { name: "fifties", style: Style::Pop, grooves: ALL_POP, keys: 3 },
    Chart { name: "i-iv-vi-v", style: Style::Pop, grooves: ALL_POP, keys: 3 },
    Chart { name: "canon", style: Style::Pop, grooves: ALL_POP, keys: 3 },
    Chart { name: "royal-road", style: Style::Pop, grooves: ALL_POP, keys: 3 },
    Chart { name: "verse-chorus", style: Style::Pop, grooves: ALL_POP, keys: 4 },
    Chart { name: "ballad-slash", style: Style::Pop, grooves: ALL_POP, keys: 3 },
    Chart { name: "minor-pop", style: Style::Pop, grooves: ALL_POP, keys: 3 },
    Chart { name: "mixolydian", style: Style::Pop, grooves: ALL_POP, keys: 3 },
];

const KEY_NAMES: [&str; 12] = ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"];

/// One MMA run.
#[derive(Debug, Clone, PartialEq)]
pub struct Render {
    /// Content hash of the generated MMA file: names the cached MIDI.
    pub key: String,
    /// The generated MMA source.
    pub text: String,
    /// Folder holding `<key>.mid` (filtered) once rendered.
    pub out: PathBuf,
}

impl Render {
    pub fn midi_path(&self) -> PathBuf {
        self.out.join(format!("{}.mid", self.key))
    }

    fn error_path(&self) -> PathBuf {
        self.out.join(format!("{}.error.txt", self.key))
    }

    /// The error of an earlier failed render.
    pub fn recorded_error(&self) -> Option<String> {
        std::fs::read_to_string(self.error_path()).ok()
    }
}

fn groove(name: &str) -> Option<&'static Groove> {
    JAZZ_GROOVES.iter().chain(POP_GROOVES.iter()).find(|g| g.name == name)
}

/// Keys for the `g`-th groove of the `c`-th chart: distinct, and spread so
/// a chart's grooves together cover many keys.
pub fn keys_for(c: usize, g: usize, n: usize) -> Vec<u8> {
    if n >= 12 {
        return (0..12).collect();
    }
    // 7 generates the integers mod 12, so the n keys are distinct.
    (0..n).map(|j| ((c * 3 + g * 5 + j * 7) % 12) as u8).collect()
}

/// Transposition that keeps a key within a fourth or a fifth of the chart's C.
pub fn transpose_semitones(key: u8) -> i32 {
    let k = i32::from(key % 12);
    if k > 6 {
        k - 12
    } else {
        k
    }
}

/// Bars in a chart: its non-empty, non-comment lines.
pub fn chart_bars(body: &str) -> usize {
    body.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with("//")).count()
}

/// The MMA file for one chart in one key over one groove.
pub fn mma_source(chart: &Chart, body: &str, groove: &Groove, key: u8, seed: u64) -> String {
    let bars = chart_bars(body).max(1);
    let choruses = MIN_BARS.div_ceil(bars).max(2);
    let (lo, hi) = groove.bpm;
    let bpm = lo + (seed % u64::from(hi - lo + 1)) as u32;
    let mut s = format!(
        "// Cadenza: chart {} over groove {} in {}, generated by cargo xtask data\n\
         RndSeed {}\nTempo {bpm}\nTranspose {}\n",
        chart.name,
        groove.name,
        KEY_NAMES[usize::from(key % 12)],
        seed % 1_000_000,
        transpose_semitones(key),
    );
    for chorus in 0..choruses {
        let g = match groove.variation {
            Some(v) if chorus % 2 == 1 => v,
            _ => groove.name,
        };
        s.push_str(&format!("Groove {g}\n"));
        s.push_str(body);
        if !body.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}

/// Every chart × groove × key render for the chosen styles.
pub fn candidates(unpacked: &Path, cache: &Path, styles: &[Style], licence: &str) -> Result<Vec<Candidate>> {
    let lib = unpacked.join("usr/share/mma/lib/stdlib");
    for g in JAZZ_GROOVES.iter().chain(POP_GROOVES.iter()) {
        let file = lib.join(g.file);
        let text = std::fs::read_to_string(&file).with_context(|| format!("{}: cannot read", file.display()))?;
        for name in std::iter::once(g.name).chain(g.variation) {
            let defined = text.lines().any(|l| {
                let mut w = l.split_whitespace();
                w.next().is_some_and(|c| c.eq_ignore_ascii_case("DefGroove"))
                    && w.next().is_some_and(|n| n.eq_ignore_ascii_case(name))
            });
            if !defined {
                bail!("{}: MMA's library defines no groove {name}", file.display());
            }
        }
    }
    let out = cache.join("mma-midi");
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    let mut result = Vec::new();
    for (c, chart) in CHARTS.iter().enumerate() {
        if !styles.contains(&chart.style) {
            continue;
        }
        let path = repo_root().join(CHART_DIR).join(chart.style.name()).join(format!("{}.mma", chart.name));
        let body = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        for (g, gname) in chart.grooves.iter().enumerate() {
            let Some(groove) = groove(gname) else { bail!("chart {} names an unknown groove {gname}", chart.name) };
            for key in keys_for(c, g, chart.keys) {
                let seed_src = format!("{}/{}/{key}", chart.name, groove.name);
                let seed = u64::from_str_radix(&sha256_hex(seed_src.as_bytes())[..12], 16).unwrap_or(0);
                let text = mma_source(chart, &body, groove, key, seed);
                let key_hash = sha256_hex(format!("{RENDER_VERSION}\n{text}").as_bytes())[..32].to_string();
                let kname = KEY_NAMES[usize::from(key)];
                let gslug = groove.name.to_lowercase().replace('&', "n");
                result.push(Candidate {
                    style: chart.style,
                    family: format!("mma/{}", groove.name),
                    source: MMA.source.into(),
                    source_version: MMA.version.into(),
                    source_path: format!("usr/share/mma/lib/stdlib/{}", groove.file),
                    licence: licence.to_string(),
                    provenance: Provenance::Synthetic,
                    comment: format!(
                        "MMA groove {} (variation {}) over Cadenza chart {}/{}.mma in {kname}",
                        groove.name,
                        groove.variation.unwrap_or("none"),
                        chart.style.name(),
                        chart.name
                    ),
                    rel_path: PathBuf::from(format!("midi/mma/{gslug}/{}_{kname}.mid", chart.name)),
                    origin: Origin::Mma(Render { key: key_hash, text, out: out.clone() }),
                });
            }
        }
    }
    Ok(result)
}

/// MMA track kinds that sound like a pianist's hands: comping and bass.
const KEPT_TRACK_KINDS: [&str; 5] = ["chord", "arpeggio", "plectrum", "bass", "walk"];

/// General MIDI programs worth keeping as piano material: keyboards,
/// chromatic percussion, organs, guitars, basses (0..=39) and the harp (46).
fn kept_program(program: u8) -> bool {
    program <= 39 || program == 46
}

/// Keep the conductor track and the comping and bass tracks; drop drums,
/// solos, melodies and pads. Returns the new file and the kept tracks' names.
pub fn filter_tracks(bytes: &[u8]) -> Result<(Vec<u8>, Vec<String>)> {
    let smf = Smf::parse(bytes).context("MMA wrote an unreadable MIDI file")?;
    let mut kept = Vec::new();
    let mut names = Vec::new();
    for track in &smf.tracks {
        let mut name = String::new();
        let mut has_notes = false;
        let mut keep = true;
        for ev in track {
            match ev.kind {
                TrackEventKind::Meta(MetaMessage::TrackName(n)) => name = String::from_utf8_lossy(n).into_owned(),
                TrackEventKind::Midi { channel, message } => {
                    if channel.as_int() == cadenza_core::midi::DRUM_CHANNEL {
                        keep = false;
                    }
                    match message {
                        MidiMessage::NoteOn { .. } => has_notes = true,
                        MidiMessage::ProgramChange { program } if !kept_program(program.as_int()) => keep = false,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if !has_notes {
            kept.push(track.clone());
            continue;
        }
        let kind = name.split('-').next().unwrap_or("").to_lowercase();
        if keep && KEPT_TRACK_KINDS.contains(&kind.as_str()) {
            names.push(name);
            kept.push(track.clone());
        }
    }
    if names.is_empty() {
        bail!("no comping or bass track left after dropping drums and pads");
    }
    let out = Smf { header: smf.header, tracks: kept };
    let mut buf = Vec::new();
    out.write_std(&mut buf).context("cannot write the filtered MIDI")?;
    Ok((buf, names))
}

/// The names of the tracks with notes in a filtered file, for the manifest comment.
pub fn kept_track_names(bytes: &[u8]) -> Vec<String> {
    let Ok(smf) = Smf::parse(bytes) else { return Vec::new() };
    smf.tracks
        .iter()
        .filter(|t| {
            t.iter().any(|e| matches!(e.kind, TrackEventKind::Midi { message: MidiMessage::NoteOn { .. }, .. }))
        })
        .filter_map(|t| {
            t.iter().find_map(|e| match e.kind {
                TrackEventKind::Meta(MetaMessage::TrackName(n)) => Some(String::from_utf8_lossy(n).into_owned()),
                _ => None,
            })
        })
        .collect()
}

/// The MMA runner: its unpacked package, a private rc file, and the groove database built once.
pub struct Mma {
    /// The Python 3 that runs MMA (the project's virtual environment).
    python: PathBuf,
    home: PathBuf,
    script: PathBuf,
    rc: PathBuf,
}

impl Mma {
    pub fn prepare(unpacked: &Path, python: &Path) -> Result<Self> {
        let home = unpacked.join("usr/share/mma");
        let script = unpacked.join("usr/bin/mma");
        // An rc file of our own, so ~/.mmarc or /etc/mmarc cannot change the output.
        let rc = unpacked.join("cadenza-mmarc");
        if !rc.exists() {
            std::fs::write(&rc, "// Cadenza: no MMA settings beyond the defaults\n")
                .with_context(|| format!("{}: cannot write", rc.display()))?;
        }
        let mma = Self { python: python.to_path_buf(), home, script, rc };
        let stamp = unpacked.join(".cadenza-mma-db");
        if !stamp.exists() {
            eprintln!("data: building MMA's groove database");
            let out = mma.command().arg("-G").output().context("cannot run Python for MMA")?;
            if !out.status.success() {
                bail!("mma -G failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            std::fs::write(&stamp, b"ok\n")?;
        }
        Ok(mma)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.script).arg("-i").arg(&self.rc).env("MMA_HOME", &self.home).env("PYTHONHASHSEED", "0");
        cmd
    }

    /// Render one file (unless cached); a failure is recorded beside the key and not retried.
    pub fn render(&self, r: &Render) -> Result<()> {
        if r.midi_path().exists() || r.error_path().exists() {
            return Ok(());
        }
        let work = r.out.join(format!("work-{}", r.key));
        std::fs::create_dir_all(&work)?;
        let src = format!("{}.mma", r.key);
        std::fs::write(work.join(&src), &r.text)?;
        // Relative names: MMA writes the input's name into the file, which must not depend on the cache's place.
        let out = self.command().current_dir(&work).arg(&src).arg("-f").arg("raw.mid").output();
        let result = match out {
            Ok(o) if o.status.success() => match std::fs::read(work.join("raw.mid")) {
                Ok(raw) => filter_tracks(&raw).map(|(b, _)| b),
                Err(e) => Err(anyhow::anyhow!("MMA reported success but wrote no MIDI: {e}")),
            },
            Ok(o) => Err(anyhow::anyhow!(
                "MMA failed: {}{}",
                String::from_utf8_lossy(&o.stdout).trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(anyhow::anyhow!("cannot run Python for MMA: {e}")),
        };
        let _ = std::fs::remove_dir_all(&work);
        match result {
            Ok(bytes) => cadenza_core::fsutil::write_atomic(&r.midi_path(), &bytes)?,
            Err(e) => cadenza_core::fsutil::write_atomic(&r.error_path(), format!("{e:#}").as_bytes())?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use midly::{Format, Header, Timing, TrackEvent};

    #[test]
    fn keys_are_distinct_and_all_twelve_when_asked() {
        assert_eq!(keys_for(3, 2, 12), (0..12).collect::<Vec<u8>>());
        for c in 0..22 {
            for g in 0..6 {
                let mut k = keys_for(c, g, 4);
                k.sort_unstable();
                k.dedup();
                assert_eq!(k.len(), 4);
            }
        }
        assert_eq!(transpose_semitones(7), -5);
        assert_eq!(transpose_semitones(6), 6);
    }

    #[test]
    fn sources_repeat_short_charts_and_alternate_the_variation() {
        let chart = CHARTS[2];
        let body = "// comment\nC7\nF7\nC7\nC7\nF7\nF7\nC7\nC7\nG7\nF7\nC7\nG7\n";
        assert_eq!(chart_bars(body), 12);
        let s = mma_source(&chart, body, &JAZZ_GROOVES[0], 10, 12345);
        assert_eq!(s.matches("Groove Swing\n").count(), 2);
        assert_eq!(s.matches("Groove SwingWalk\n").count(), 2);
        assert!(s.contains("Transpose -2\n") && s.contains("RndSeed 12345\n"));
        let bpm: u32 = s.lines().find_map(|l| l.strip_prefix("Tempo ")).and_then(|t| t.parse().ok()).expect("tempo");
        assert!((120..=176).contains(&bpm));
    }

    #[test]
    fn every_chart_names_known_grooves() {
        for c in CHARTS {
            for g in c.grooves {
                assert!(groove(g).is_some(), "{} names {g}", c.name);
            }
        }
    }

    fn track(name: &'static [u8], channel: u8, program: u8) -> Vec<TrackEvent<'static>> {
        let midi = |message| TrackEventKind::Midi { channel: channel.into(), message };
        vec![
            TrackEvent { delta: 0.into(), kind: TrackEventKind::Meta(MetaMessage::TrackName(name)) },
            TrackEvent { delta: 0.into(), kind: midi(MidiMessage::ProgramChange { program: program.into() }) },
            TrackEvent { delta: 0.into(), kind: midi(MidiMessage::NoteOn { key: 60.into(), vel: 90.into() }) },
            TrackEvent { delta: 96.into(), kind: midi(MidiMessage::NoteOff { key: 60.into(), vel: 0.into() }) },
            TrackEvent { delta: 0.into(), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) },
        ]
    }

    #[test]
    fn filtering_keeps_comping_and_bass_and_drops_drums_and_pads() {
        let conductor = vec![
            TrackEvent { delta: 0.into(), kind: TrackEventKind::Meta(MetaMessage::Tempo(500_000.into())) },
            TrackEvent { delta: 0.into(), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) },
        ];
        let smf = Smf {
            header: Header { format: Format::Parallel, timing: Timing::Metrical(192.into()) },
            tracks: vec![
                conductor,
                track(b"Drum-Snare", 9, 0),
                track(b"Chord-Piano", 1, 0),
                track(b"Arpeggio", 2, 99),
                track(b"Bass", 3, 32),
                track(b"Solo-Sax", 4, 65),
            ],
        };
        let mut bytes = Vec::new();
        smf.write_std(&mut bytes).expect("write");
        let (out, names) = filter_tracks(&bytes).expect("filter");
        assert_eq!(names, ["Chord-Piano", "Bass"]);
        assert_eq!(kept_track_names(&out), ["Chord-Piano", "Bass"]);
        assert_eq!(Smf::parse(&out).expect("parse").tracks.len(), 3);
    }
}
