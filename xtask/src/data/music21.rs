//! The music21 corpus: which collections feed which style, one conversion
//! job per score or ABC tune, and the run of `scripts/data/convert_music21.py`
//! that turns them into MIDI files in the cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use cadenza_core::dataset::{sha256_hex, Provenance};
use serde::{Deserialize, Serialize};

use super::fetch::{Pin, MUSIC21};
use super::{Candidate, Origin, Style};
use crate::env::{repo_root, run_checked};

/// Corpus folders of folk melodies; each ABC tune becomes one file.
pub const FOLK_COLLECTIONS: [&str; 6] =
    ["essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs", "miscFolk", "nottingham-dataset"];

/// Corpus folders that are test material, not music to learn from.
const SKIPPED_COLLECTIONS: [&str; 3] = ["demos", "theoryExercises", "_metadataCache"];

/// Score formats music21 reads, most complete first: when one piece sits in a
/// folder in two formats, only the first is used, so a piece is not split
/// across train and test as two slightly different files.
const SCORE_EXTENSIONS: [&str; 5] = ["mxl", "musicxml", "xml", "krn", "abc"];

/// The converter script, relative to the repository.
const CONVERTER: &str = "scripts/data/convert_music21.py";

/// Where a corpus file goes. Ragtime is jazz; the folk collections and the
/// Foster song are folk; everything else (the composers) is classical.
pub fn style_of(collection: &str, file_name: &str) -> Option<Style> {
    if SKIPPED_COLLECTIONS.contains(&collection) {
        return None;
    }
    if FOLK_COLLECTIONS.contains(&collection) {
        return Some(Style::Folk);
    }
    match (collection, file_name) {
        ("joplin", _) | ("leadSheet", "berlinAlexandersRagtime.mxl") => Some(Style::Jazz),
        ("leadSheet", _) => Some(Style::Folk),
        _ => Some(Style::Classical),
    }
}

/// One conversion for the Python script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Content hash: names the cached output; the same score converts once.
    pub key: String,
    /// `score` (a whole file) or `abc` (one tune of an ABC file, in `text`).
    pub kind: String,
    pub source: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Folder the script writes `<key>.mid` and `<key>.json` into.
    pub out: PathBuf,
}

/// What the script recorded for a job (it also writes key, version and seconds).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Outcome {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub repeats: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub composer: Option<String>,
    #[serde(default)]
    pub copyright: Option<String>,
    /// The script's FALLBACKS_VERSION when it recorded this outcome.
    #[serde(default)]
    pub fallbacks: Option<String>,
}

impl Job {
    pub fn midi_path(&self) -> PathBuf {
        self.out.join(format!("{}.mid", self.key))
    }

    pub fn outcome_path(&self) -> PathBuf {
        self.out.join(format!("{}.json", self.key))
    }

    /// The recorded outcome, or None while the job has not run.
    pub fn outcome(&self) -> Result<Option<Outcome>> {
        let path = self.outcome_path();
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("{}: not a conversion record", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
        }
    }
}

/// A `NAME = "value"` constant of the converter script, read from its text so
/// that the keys and the retry rule change when the script's do.
fn script_constant(name: &str) -> Result<String> {
    let path = repo_root().join(CONVERTER);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let prefix = format!("{name} = \"");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()).and_then(|r| r.strip_suffix('"')))
        .map(str::to_string)
        .with_context(|| format!("{}: no {name} line", path.display()))
}

/// The converter's output version, hashed into every job key.
pub fn converter_version() -> Result<String> {
    script_constant("CONVERTER_VERSION")
}

/// Whether a job needs (another) run: never ran, or failed before the
/// script's current fallbacks existed.
pub fn needs_run(outcome: Option<&Outcome>, fallbacks: &str) -> bool {
    match outcome {
        None => true,
        Some(o) => !o.ok && o.fallbacks.as_deref() != Some(fallbacks),
    }
}

pub fn job_key(version: &str, kind: &str, content: &[u8]) -> String {
    let mut buf = Vec::with_capacity(content.len() + 64);
    buf.extend_from_slice(version.as_bytes());
    buf.push(0);
    buf.extend_from_slice(kind.as_bytes());
    buf.push(0);
    buf.extend_from_slice(content);
    sha256_hex(&buf)[..32].to_string()
}

/// Split an ABC file into tunes: each starts at an `X:` line; the lines
/// before the first one (the file header) are kept in front of every tune.
pub fn split_abc(text: &str) -> Vec<(String, String)> {
    let mut header = String::new();
    let mut tunes: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("X:") {
            tunes.push((rest.trim().to_string(), header.clone()));
        }
        match tunes.last_mut() {
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {
                header.push_str(line);
                header.push('\n');
            }
        }
    }
    tunes
}

/// Licence statements inside a text score (Humdrum `!!!YEM`/`!!!YEC`,
/// MusicXML `<rights>`, copyright and GPL notices in an ABC header), joined
/// into one line.
pub fn embedded_licence(text: &str) -> Option<String> {
    let mut found: Vec<String> = Vec::new();
    for line in text.lines().take(MAX_HEADER_LINES) {
        let l = line.trim();
        let stmt = if let Some(r) = l.strip_prefix("!!!YEM:").or_else(|| l.strip_prefix("!!!YEC:")) {
            Some(r.trim().to_string())
        } else if let Some(r) = l.strip_prefix("<rights>").and_then(|r| r.strip_suffix("</rights>")) {
            Some(r.trim().to_string())
        } else if l.starts_with('%') && l.contains("Copyright") {
            Some(l.trim_start_matches('%').trim().to_string())
        } else {
            None
        };
        if let Some(s) = stmt.filter(|s| s.chars().any(char::is_alphanumeric) && s != "Copyright ©") {
            if !found.contains(&s) {
                found.push(s);
            }
        }
    }
    if text.contains("GNU General Public License") {
        let which = if text.contains("version 2 of the License, or") { "GPL-2.0-or-later" } else { "GNU GPL" };
        found.push(format!("{which} (stated in the file header)"));
    }
    (!found.is_empty()).then(|| found.join(" "))
}

/// Lines of a score searched for licence statements.
const MAX_HEADER_LINES: usize = 400;

/// The corpus-wide licence statement, or the collection's own licence file where it has one.
fn collection_licence(corpus: &Path, collection: &str) -> Result<String> {
    let own = corpus.join(collection).join("license.txt");
    if collection == "essenFolksong" && own.exists() {
        return Ok("Essen folksong database, ABC by Seymour Schlien: permission for non-commercial distribution \
                   and use in music21 (music21/corpus/essenFolksong/license.txt)"
            .into());
    }
    let general = corpus.join("license.txt");
    let text = std::fs::read_to_string(&general).with_context(|| format!("{}: cannot read", general.display()))?;
    if !text.contains("distributed with the permission of the encoders") {
        bail!("{}: the corpus licence statement changed; review it", general.display());
    }
    Ok("music21 corpus: encodings distributed with the encoders' permission, out of copyright in the US or \
        licensed for use; some restrict commercial use (music21/corpus/license.txt)"
        .into())
}

/// Every usable score and tune of the corpus, as candidates for their style.
pub fn candidates(unpacked: &Path, cache: &Path, styles: &[Style]) -> Result<Vec<Candidate>> {
    let pin: &Pin = &MUSIC21;
    let corpus = unpacked.join("music21/corpus");
    let version = converter_version()?;
    let out = cache.join("music21-midi");
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    let mut result = Vec::new();
    let mut collections: Vec<PathBuf> = read_dir_sorted(&corpus)?.into_iter().filter(|p| p.is_dir()).collect();
    collections.sort();
    for dir in collections {
        let collection = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if SKIPPED_COLLECTIONS.contains(&collection.as_str()) {
            continue;
        }
        let licence = collection_licence(&corpus, &collection)?;
        for file in score_files(&dir)? {
            let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let Some(style) = style_of(&collection, &file_name) else { continue };
            if !styles.contains(&style) {
                continue;
            }
            let rel = file.strip_prefix(unpacked).unwrap_or(&file).to_string_lossy().replace('\\', "/");
            let bytes = std::fs::read(&file).with_context(|| format!("{}: cannot read", file.display()))?;
            let text = String::from_utf8_lossy(&bytes);
            let file_licence = match embedded_licence(&text) {
                Some(own) => format!("{licence}{}{own}", super::FILE_STATES),
                None => licence.clone(),
            };
            let stem = rel.trim_start_matches("music21/corpus/").rsplit_once('.').map_or(rel.as_str(), |(s, _)| s);
            let family = if collection == "palestrina" {
                PALESTRINA_FAMILY.to_string()
            } else {
                format!("music21/{collection}")
            };
            let tunes = if style == Style::Folk && file_name.ends_with(".abc") { split_abc(&text) } else { Vec::new() };
            if tunes.is_empty() {
                let key = job_key(&version, "score", &bytes);
                result.push(Candidate {
                    style,
                    family,
                    source: pin.source.into(),
                    source_version: pin.version.into(),
                    source_path: rel.clone(),
                    licence: file_licence,
                    provenance: Provenance::Composed,
                    comment: format!("music21 corpus {collection}"),
                    rel_path: PathBuf::from(format!("midi/music21/{}.mid", sanitize_path(stem))),
                    origin: Origin::Music21(Job {
                        key,
                        kind: "score".into(),
                        source: file.clone(),
                        text: None,
                        out: out.clone(),
                    }),
                });
            } else {
                for (i, (number, tune)) in tunes.into_iter().enumerate() {
                    let key = job_key(&version, "abc", tune.as_bytes());
                    result.push(Candidate {
                        style,
                        family: family.clone(),
                        source: pin.source.into(),
                        source_version: pin.version.into(),
                        source_path: format!("{rel}#X:{number}"),
                        licence: file_licence.clone(),
                        provenance: Provenance::Composed,
                        comment: format!("music21 corpus {collection}, tune {} of the file", i + 1),
                        rel_path: PathBuf::from(format!("midi/music21/{}_{:04}.mid", sanitize_path(stem), i + 1)),
                        origin: Origin::Music21(Job {
                            key,
                            kind: "abc".into(),
                            source: file.clone(),
                            text: Some(tune),
                            out: out.clone(),
                        }),
                    });
                }
            }
        }
    }
    Ok(result)
}

/// The family whose share of classical notes is capped.
pub const PALESTRINA_FAMILY: &str = "music21/palestrina";

/// The entries of `dir`, sorted (a corpus is read in one order on every machine).
pub fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// Score files below `dir`, one per piece (see [`SCORE_EXTENSIONS`]).
fn score_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut by_stem: BTreeMap<PathBuf, (usize, PathBuf)> = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for p in read_dir_sorted(&d)? {
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let ext = p.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
            let Some(rank) = SCORE_EXTENSIONS.iter().position(|e| *e == ext) else { continue };
            let stem = p.with_extension("");
            match by_stem.get(&stem) {
                Some((r, _)) if *r <= rank => {}
                _ => {
                    by_stem.insert(stem, (rank, p));
                }
            }
        }
    }
    Ok(by_stem.into_values().map(|(_, p)| p).collect())
}

/// Keep a path readable and portable: letters, digits, `-`, `_`, `.`, `/`.
pub fn sanitize_path(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_./".contains(c) { c } else { '_' }).collect()
}

/// Convert every job that has no recorded outcome yet.
pub fn convert(python: &Path, unpacked: &Path, cache: &Path, jobs: &[&Job], workers: usize) -> Result<()> {
    let fallbacks = script_constant("FALLBACKS_VERSION")?;
    let mut todo: Vec<&&Job> = Vec::new();
    for j in jobs {
        if needs_run(j.outcome()?.as_ref(), &fallbacks) {
            todo.push(j);
        }
    }
    eprintln!("data: music21: {} of {} conversions cached, {} to go", jobs.len() - todo.len(), jobs.len(), todo.len());
    if todo.is_empty() {
        return Ok(());
    }
    let mut lines = String::new();
    for j in &todo {
        lines.push_str(&serde_json::to_string(j)?);
        lines.push('\n');
    }
    let list = cache.join("music21-jobs.jsonl");
    cadenza_core::fsutil::write_atomic(&list, lines.as_bytes())
        .with_context(|| format!("{}: cannot write", list.display()))?;
    let mut cmd = Command::new(python);
    cmd.arg(repo_root().join(CONVERTER))
        .arg("--music21")
        .arg(unpacked)
        .arg("--jobs")
        .arg(&list)
        .arg("--workers")
        .arg(workers.max(1).to_string())
        // music21's output must not depend on Python's per-process hash seed
        .env("PYTHONHASHSEED", "0");
    run_checked(&mut cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abc_files_split_into_tunes_with_the_header_in_front() {
        let text = "% header\nX:1\nT:One\nK:G\nGAB|\n\nX: 2\nT:Two\nK:D\nDEF|\n";
        let tunes = split_abc(text);
        assert_eq!(tunes.len(), 2);
        assert_eq!(tunes[0].0, "1");
        assert_eq!(tunes[1].0, "2");
        assert!(tunes[0].1.starts_with("% header\nX:1\n"));
        assert!(tunes[0].1.contains("GAB|") && !tunes[0].1.contains("DEF|"));
        assert!(tunes[1].1.starts_with("% header\nX: 2\n") && tunes[1].1.contains("DEF|"));
        assert!(split_abc("no tunes here\n").is_empty());
    }

    #[test]
    fn styles_follow_the_collections() {
        assert_eq!(style_of("essenFolksong", "altdeu10.abc"), Some(Style::Folk));
        assert_eq!(style_of("joplin", "maple_leaf_rag.mxl"), Some(Style::Jazz));
        assert_eq!(style_of("palestrina", "Agnus_01.krn"), Some(Style::Classical));
        assert_eq!(style_of("bach", "bwv66.6.mxl"), Some(Style::Classical));
        assert_eq!(style_of("demos", "two-parts.xml"), None);
    }

    #[test]
    fn keys_depend_on_content_kind_and_converter() {
        let a = job_key("v1", "abc", b"X:1");
        assert_eq!(a, job_key("v1", "abc", b"X:1"));
        assert_ne!(a, job_key("v2", "abc", b"X:1"));
        assert_ne!(a, job_key("v1", "score", b"X:1"));
        assert_ne!(a, job_key("v1", "abc", b"X:2"));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn licence_statements_are_found_in_text_scores() {
        let krn = "!!!COM: Palestrina\n!!!YEM: Rights reserved.\n!!!YEM: Rights reserved.\n**kern\n";
        assert_eq!(embedded_licence(krn).as_deref(), Some("Rights reserved."));
        let xml = "<identification>\n  <rights>CC-BY 4.0</rights>\n  <rights>Copyright ©</rights>\n";
        assert_eq!(embedded_licence(xml).as_deref(), Some("CC-BY 4.0"));
        assert_eq!(embedded_licence("X:1\nK:G\n"), None);
        let abc =
            "% Copyright (C) 1999  Laura\n%    under the terms of the GNU General Public License as published by\n\
                   %    the Free Software Foundation; either version 2 of the License, or\nX:1\n";
        assert_eq!(
            embedded_licence(abc).as_deref(),
            Some("Copyright (C) 1999  Laura GPL-2.0-or-later (stated in the file header)")
        );
    }

    #[test]
    fn failures_are_retried_only_under_new_fallbacks() {
        let rec = |ok: bool, fb: Option<&str>| Outcome { ok, fallbacks: fb.map(str::to_string), ..Default::default() };
        assert!(needs_run(None, "2"));
        assert!(!needs_run(Some(&rec(true, Some("1"))), "2"));
        assert!(!needs_run(Some(&rec(true, None)), "2"));
        assert!(!needs_run(Some(&rec(false, Some("2"))), "2"));
        assert!(needs_run(Some(&rec(false, Some("1"))), "2"));
        assert!(needs_run(Some(&rec(false, None)), "2"));
    }

    #[test]
    fn one_file_per_piece_prefers_musicxml() {
        let dir = std::env::temp_dir().join(format!("cadenza-score-files-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).expect("dir");
        for f in ["a.krn", "a.mxl", "b.krn", "sub/c.xml", "notes.txt", "d.rntxt"] {
            std::fs::write(dir.join(f), b"x").expect("write");
        }
        let names: Vec<String> = score_files(&dir)
            .expect("list")
            .iter()
            .map(|p| p.strip_prefix(&dir).expect("below").to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.mxl", "b.krn", "sub/c.xml"]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
