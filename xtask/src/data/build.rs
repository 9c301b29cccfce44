//! From converted files to a style folder: read every candidate with the
//! core MIDI reader, apply the drop rules, check the codec's round trip,
//! drop duplicates, cap Palestrina and the synthetic hours, then write the
//! MIDI files, `manifest.csv` and `dropped.csv` (each only when its bytes
//! change) and print the table.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use cadenza_core::codec;
use cadenza_core::compare::{compare, Comparison, ONSET_TOLERANCE_MS};
use cadenza_core::dataset::{
    read_manifest, sha256_hex, split_for_sha256, split_rank, write_manifest, ManifestRow, Provenance, Split,
    MANIFEST_FILE,
};
use cadenza_core::fsutil::write_atomic;
use cadenza_core::midi::{self, MidiErrorKind, ReadOptions, WriteOptions};
use cadenza_core::Performance;
use serde::Serialize;

use super::mma::{kept_track_names, Mma, Render};
use super::music21::PALESTRINA_FAMILY;
use super::{Candidate, Origin, Style};

/// Files with fewer notes teach the model nothing about a style.
pub const MIN_NOTES: usize = 50;
/// "Mostly silence": more than this share of the time between the first
/// onset and the last release has no note sounding.
pub const MAX_SILENT_SHARE: f64 = 0.5;
/// Palestrina's masses are ~59% of the corpus' classical notes; they may make
/// up at most this share of the classical notes that are kept.
pub const PALESTRINA_MAX_SHARE: f64 = 0.15;
/// Synthetic files (MMA renders, Band-in-a-Box accompaniments) may make up at
/// most this share of a style's kept hours (issue 10: jazz was 86.5% synthetic
/// and pop 89.0%, against about an hour of real music each, and no allowed
/// package holds more). `cargo xtask data --max-synthetic-share` overrides it;
/// 1 keeps every synthetic file.
pub const MAX_SYNTHETIC_SHARE: f64 = 0.5;
/// Files between progress lines of the checks (renders: a twentieth of it).
const PROGRESS_EVERY_FILES: usize = 2000;
/// File name of a style folder's list of dropped files.
pub const DROPPED_FILE: &str = "dropped.csv";

/// Why a candidate is not in its style.
#[derive(Debug, Clone, PartialEq)]
pub enum DropReason {
    /// music21 or MMA could not produce a MIDI file.
    ConversionFailed(String),
    /// The core reader refused the file; the text is the typed `MidiError`.
    Unparseable(String),
    DrumsOnly,
    TooFewNotes(usize),
    MostlySilent {
        silent_share: f64,
    },
    /// Byte-identical to a file kept under this path.
    Duplicate(String),
    /// Left out by the Palestrina cap.
    Capped {
        share_limit: f64,
    },
    /// Left out by the synthetic cap ([`MAX_SYNTHETIC_SHARE`] or `--max-synthetic-share`).
    SyntheticCapped {
        share_limit: f64,
    },
    /// A game track filed under no style: its genre, then what shows it.
    GenreFitsNoStyle(String),
    /// Fits a style whose corpus is frozen for now: its genre, why, and for which rebuild.
    HeldBack(String),
}

impl DropReason {
    pub fn kind(&self) -> &'static str {
        match self {
            DropReason::ConversionFailed(_) => "conversion failed",
            DropReason::Unparseable(_) => "unparseable",
            DropReason::DrumsOnly => "drums only",
            DropReason::TooFewNotes(_) => "fewer than 50 notes",
            DropReason::MostlySilent { .. } => "mostly silence",
            DropReason::Duplicate(_) => "duplicate",
            DropReason::Capped { .. } => "palestrina cap",
            DropReason::SyntheticCapped { .. } => "synthetic cap",
            DropReason::GenreFitsNoStyle(_) => "genre fits no shipped style",
            DropReason::HeldBack(_) => "held back for a later rebuild",
        }
    }

    pub fn detail(&self) -> String {
        match self {
            DropReason::ConversionFailed(e)
            | DropReason::Unparseable(e)
            | DropReason::GenreFitsNoStyle(e)
            | DropReason::HeldBack(e) => e.clone(),
            DropReason::DrumsOnly => "every note is on channel 10".into(),
            DropReason::TooFewNotes(n) => format!("{n} notes"),
            DropReason::MostlySilent { silent_share } => {
                format!("{:.0}% of the span between first onset and last release is silent", silent_share * 100.0)
            }
            DropReason::Duplicate(of) => format!("same bytes as {of}"),
            DropReason::Capped { share_limit } => {
                format!("Palestrina kept to at most {:.0}% of the classical notes", share_limit * 100.0)
            }
            DropReason::SyntheticCapped { share_limit } => format!(
                "synthetic files kept to at most {:.0}% of the style's hours (taken in SHA-256 order until the next \
                 would exceed it)",
                share_limit * 100.0
            ),
        }
    }
}

/// The drop rules on a file the reader accepted.
pub fn drop_rule(perf: &Performance) -> Option<DropReason> {
    if perf.notes.len() < MIN_NOTES {
        return Some(DropReason::TooFewNotes(perf.notes.len()));
    }
    let first = perf.notes.first().map_or(0.0, |n| n.start_s);
    let span = perf.duration_s() - first;
    let silent_share = if span > 0.0 { perf.silent_s() / span } else { 1.0 };
    (silent_share > MAX_SILENT_SHARE).then_some(DropReason::MostlySilent { silent_share })
}

/// The reader's refusals, as drop reasons.
pub fn read_error_reason(err: &midi::MidiError) -> DropReason {
    match err.kind {
        MidiErrorKind::DrumsOnly => DropReason::DrumsOnly,
        MidiErrorKind::NoNotes => DropReason::TooFewNotes(0),
        _ => DropReason::Unparseable(err.to_string()),
    }
}

/// What reading a usable file told.
#[derive(Debug, Clone)]
pub struct Checked {
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub notes: usize,
    pub seconds: f64,
    pub events: usize,
    pub roundtrip: Comparison,
    /// The round trip of the notes that have their key to themselves (see [`without_unisons`]).
    pub roundtrip_solo: Comparison,
}

/// The performance without the notes that strike a key within 10 ms of
/// another onset of the same key: unison doublings of merged parts, which a
/// piano (and the codec) sounds as one note with one velocity.
pub fn without_unisons(perf: &Performance) -> Performance {
    let tol_s = ONSET_TOLERANCE_MS / 1000.0;
    let mut by_pitch: Vec<Vec<usize>> = vec![Vec::new(); 128];
    for (i, n) in perf.notes.iter().enumerate() {
        by_pitch[usize::from(n.pitch & 0x7f)].push(i);
    }
    let mut doubled = vec![false; perf.notes.len()];
    for idx in &mut by_pitch {
        idx.sort_by(|&a, &b| perf.notes[a].start_s.total_cmp(&perf.notes[b].start_s));
        for w in idx.windows(2) {
            if perf.notes[w[1]].start_s - perf.notes[w[0]].start_s <= tol_s {
                doubled[w[0]] = true;
                doubled[w[1]] = true;
            }
        }
    }
    Performance::new(perf.notes.iter().zip(&doubled).filter(|(_, d)| !**d).map(|(n, _)| *n).collect())
}

/// Read, apply the drop rules, and run the codec round trip (encode, decode,
/// write a MIDI file, read it back, compare note by note).
pub fn check_file(path: &Path) -> Result<Checked, DropReason> {
    let bytes = std::fs::read(path).map_err(|e| DropReason::Unparseable(format!("{}: {e}", path.display())))?;
    let perf = midi::parse(&bytes, &ReadOptions::default()).map_err(|k| read_error_reason(&k.at(path)))?;
    if let Some(reason) = drop_rule(&perf) {
        return Err(reason);
    }
    let events = codec::encode(&perf);
    let decoded = codec::decode(&events);
    let written = midi::write_performance(&decoded, &WriteOptions::default());
    let back = midi::parse(&written, &ReadOptions::default()).unwrap_or_default();
    let roundtrip = compare(&perf, &back);
    let roundtrip_solo = compare(&without_unisons(&perf), &back);
    Ok(Checked {
        sha256: sha256_hex(&bytes),
        bytes,
        notes: perf.notes.len(),
        seconds: perf.duration_s(),
        events: events.len(),
        roundtrip,
        roundtrip_solo,
    })
}

/// Which items of a family may stay so that the family's weight (notes,
/// seconds) is at most `max_share` of all kept weight. Family items are taken
/// in SHA-256 order (stable and unrelated to the music) until the next one
/// would break the share. `items` are (in family, weight, sha256); returns
/// keep flags.
pub fn cap_family_share(items: &[(bool, f64, &str)], max_share: f64) -> Vec<bool> {
    let others: f64 = items.iter().filter(|i| !i.0).map(|i| i.1).sum();
    let mut order: Vec<usize> = (0..items.len()).filter(|&i| items[i].0).collect();
    order.sort_by(|&a, &b| items[a].2.cmp(items[b].2));
    let mut keep: Vec<bool> = items.iter().map(|i| !i.0).collect();
    let mut family = 0.0;
    for i in order {
        let with = family + items[i].1;
        if with > max_share * (others + with) {
            break;
        }
        family = with;
        keep[i] = true;
    }
    keep
}

/// Drop the kept rows `in_family` does not keep under `max_share`
/// ([`cap_family_share`] over `weight`), listing each with `reason`.
fn apply_cap<'a>(
    kept: &mut Vec<(ManifestRow, &'a Candidate, Checked)>,
    dropped: &mut Vec<(&'a Candidate, DropReason)>,
    in_family: impl Fn(&ManifestRow, &Candidate) -> bool,
    weight: impl Fn(&ManifestRow) -> f64,
    max_share: f64,
    reason: DropReason,
) {
    let items: Vec<(bool, f64, &str)> =
        kept.iter().map(|(r, c, _)| (in_family(r, c), weight(r), r.sha256.as_str())).collect();
    let keep = cap_family_share(&items, max_share);
    let mut i = 0;
    kept.retain(|(_, c, _)| {
        let k = keep[i];
        i += 1;
        if !k {
            dropped.push((c, reason.clone()));
        }
        k
    });
}

/// One dropped candidate in `dropped.csv`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DroppedRow {
    pub style: String,
    pub family: String,
    pub source: String,
    pub source_version: String,
    pub source_path: String,
    pub reason: String,
    pub detail: String,
}

/// Per-family totals for the table.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub files: usize,
    pub notes: usize,
    pub seconds: f64,
    pub events: usize,
    pub synthetic_seconds: f64,
    pub synthetic_files: usize,
    pub faithful: usize,
    /// Files whose notes all kept pitch and onset within 10 ms (velocity aside).
    pub onsets_kept: usize,
    /// Files faithful once unison doublings are set aside.
    pub faithful_solo: usize,
    pub max_onset_error_ms: f64,
    pub dropped: BTreeMap<&'static str, usize>,
}

impl Totals {
    fn add(&mut self, row: &ManifestRow, checked: &Checked) {
        self.files += 1;
        self.notes += row.notes;
        self.seconds += row.seconds;
        self.events += row.events;
        if row.provenance == Provenance::Synthetic {
            self.synthetic_seconds += row.seconds;
            self.synthetic_files += 1;
        }
        self.faithful += usize::from(checked.roundtrip.faithful());
        self.onsets_kept += usize::from(checked.roundtrip.unmatched == 0);
        self.faithful_solo += usize::from(checked.roundtrip_solo.faithful());
        self.max_onset_error_ms = self.max_onset_error_ms.max(checked.roundtrip.max_onset_error_ms);
    }
}

/// What a build wrote, for the table.
#[derive(Debug, Default)]
pub struct Report {
    pub styles: BTreeMap<Style, Totals>,
    pub families: BTreeMap<(Style, String), Totals>,
    /// Files whose round trip lost a note or a velocity bin even with unison
    /// doublings set aside: (style, path, comparison of the solo notes).
    pub unfaithful: Vec<(Style, PathBuf, Comparison)>,
}

/// Render every MMA file that is not cached, `jobs` at a time.
pub fn render_all(runner: &Mma, renders: &[&Render], jobs: usize) -> Result<()> {
    let todo: Vec<&&Render> =
        renders.iter().filter(|r| !r.midi_path().exists() && r.recorded_error().is_none()).collect();
    eprintln!("data: mma: {} of {} renders cached, {} to go", renders.len() - todo.len(), renders.len(), todo.len());
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = todo.get(i) else { break };
                if let Err(e) = runner.render(r) {
                    if let Ok(mut f) = failure.lock() {
                        f.get_or_insert(e);
                    }
                    break;
                }
                if (i + 1).is_multiple_of(PROGRESS_EVERY_FILES / 20) {
                    eprintln!("data: mma: {}/{} rendered", i + 1, todo.len());
                }
            });
        }
    });
    match failure.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Where a candidate's MIDI file is, or why there is none.
fn resolve(c: &Candidate) -> Result<(PathBuf, String, String), DropReason> {
    match &c.origin {
        Origin::Midi(p) => Ok((p.clone(), c.comment.clone(), c.licence.clone())),
        Origin::LeftOut(reason) => Err(reason.clone()),
        Origin::Music21(job) => match job.outcome() {
            Ok(Some(o)) if o.ok => {
                let mut comment = c.comment.clone();
                for (label, v) in [("title", &o.title), ("composer", &o.composer)] {
                    if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                        comment.push_str(&format!("; {label} {v}"));
                    }
                }
                if let Some(r) = o.repeats.as_deref().filter(|r| r.starts_with("removed")) {
                    comment.push_str(&format!("; repeat expansion failed, {}", truncate(r, 160)));
                }
                let mut licence = c.licence.clone();
                let copyright = o.copyright.as_deref().map(str::trim);
                if let Some(cr) = copyright.filter(|s| says_something(s) && !licence.contains(s)) {
                    licence.push_str(&format!("{}{cr}", super::SCORE_METADATA));
                }
                Ok((job.midi_path(), comment, licence))
            }
            Ok(Some(o)) => Err(DropReason::ConversionFailed(format!(
                "music21: {}",
                o.error.unwrap_or_else(|| "failed without a message".into())
            ))),
            Ok(None) => Err(DropReason::ConversionFailed("music21 has not converted it (interrupted run?)".into())),
            Err(e) => Err(DropReason::ConversionFailed(format!("{e:#}"))),
        },
        Origin::Mma(r) => {
            if let Some(e) = r.recorded_error() {
                return Err(DropReason::ConversionFailed(e));
            }
            let path = r.midi_path();
            let tracks = std::fs::read(&path).map(|b| kept_track_names(&b)).unwrap_or_default();
            Ok((path, format!("{}; kept tracks {}", c.comment, tracks.join(", ")), c.licence.clone()))
        }
    }
}

/// A copyright field with more in it than the word and the sign.
fn says_something(copyright: &str) -> bool {
    copyright.replace("Copyright", "").replace("copyright", "").chars().any(char::is_alphanumeric)
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(max_chars).collect::<String>())
    }
}

/// A candidate after its checks.
struct Outcome<'a> {
    cand: &'a Candidate,
    result: Result<(Checked, String, String), DropReason>,
}

/// Check every candidate, decide, write the style folders, and total them up.
/// Synthetic files are kept to `max_synthetic_share` of each style's hours.
pub fn build(
    candidates: &[Candidate],
    styles: &[Style],
    out: &Path,
    jobs: usize,
    max_synthetic_share: f64,
) -> Result<Report> {
    let mut seen: BTreeSet<(Style, &Path)> = BTreeSet::new();
    for c in candidates {
        if !seen.insert((c.style, c.rel_path.as_path())) {
            bail!("two sources would both be written to {}/{}", c.style.name(), c.rel_path.display());
        }
    }
    let outcomes = check_all(candidates, jobs);
    let mut report = Report::default();
    for &style in styles {
        let mut kept: Vec<(ManifestRow, &Candidate, Checked)> = Vec::new();
        let mut dropped: Vec<(&Candidate, DropReason)> = Vec::new();
        let mut by_sha: HashMap<String, PathBuf> = HashMap::new();
        for o in outcomes.iter().filter(|o| o.cand.style == style) {
            match &o.result {
                Err(reason) => dropped.push((o.cand, reason.clone())),
                Ok((checked, comment, licence)) => {
                    if let Some(first) = by_sha.get(&checked.sha256) {
                        dropped.push((o.cand, DropReason::Duplicate(first.display().to_string())));
                        continue;
                    }
                    by_sha.insert(checked.sha256.clone(), o.cand.rel_path.clone());
                    let row = ManifestRow {
                        path: o.cand.rel_path.clone(),
                        style: style.name().into(),
                        split: split_for_sha256(&checked.sha256),
                        source: o.cand.source.clone(),
                        source_version: o.cand.source_version.clone(),
                        source_path: o.cand.source_path.clone(),
                        licence: licence.clone(),
                        sha256: checked.sha256.clone(),
                        provenance: o.cand.provenance,
                        notes: checked.notes,
                        seconds: (checked.seconds * 1000.0).round() / 1000.0,
                        events: checked.events,
                        comment: comment.clone(),
                    };
                    kept.push((row, o.cand, checked.clone()));
                }
            }
        }
        if style == Style::Classical {
            apply_cap(
                &mut kept,
                &mut dropped,
                |_, c| c.family == PALESTRINA_FAMILY,
                |r| r.notes as f64,
                PALESTRINA_MAX_SHARE,
                DropReason::Capped { share_limit: PALESTRINA_MAX_SHARE },
            );
        }
        apply_cap(
            &mut kept,
            &mut dropped,
            |r, _| r.provenance == Provenance::Synthetic,
            |r| r.seconds,
            max_synthetic_share,
            DropReason::SyntheticCapped { share_limit: max_synthetic_share },
        );
        hold_out_at_least(&mut kept, MIN_HELD_OUT_FILES);
        kept.sort_by(|a, b| a.0.path.cmp(&b.0.path));
        dropped.sort_by(|a, b| (&a.0.family, &a.0.source_path).cmp(&(&b.0.family, &b.0.source_path)));
        for (c, reason) in &dropped {
            eprintln!("data: {}: dropped {} ({}): {}", style.name(), c.source_path, reason.kind(), reason.detail());
        }
        write_style(out, style, &kept, &dropped)?;

        let totals = report.styles.entry(style).or_default();
        for (row, cand, checked) in &kept {
            totals.add(row, checked);
            report.families.entry((style, cand.family.clone())).or_default().add(row, checked);
            if !checked.roundtrip_solo.faithful() {
                report.unfaithful.push((style, row.path.clone(), checked.roundtrip_solo.clone()));
            }
        }
        for (c, reason) in &dropped {
            *totals.dropped.entry(reason.kind()).or_default() += 1;
            *report.families.entry((style, c.family.clone())).or_default().dropped.entry(reason.kind()).or_default() +=
                1;
        }
    }
    Ok(report)
}

/// How many files a validation or test split the hash left empty takes.
pub const MIN_HELD_OUT_FILES: usize = 2;

/// A small corpus can leave a split empty by the hash alone (rock's 50 files
/// gave no validation file). Then `min` train files nearest the cut, by
/// [`split_rank`] from 89 down (ties by SHA-256), move to it (validation
/// first, then test): a choice that depends only on the files, like the
/// split itself. A split holding any file is left as it is, so corpora
/// built before this rule keep their splits.
fn hold_out_at_least<T, U>(kept: &mut [(ManifestRow, T, U)], min: usize) {
    for split in [Split::Valid, Split::Test] {
        let have = kept.iter().filter(|k| k.0.split == split).count();
        if have > 0 {
            continue;
        }
        let mut train: Vec<usize> = (0..kept.len()).filter(|&i| kept[i].0.split == Split::Train).collect();
        train.sort_by(|&a, &b| {
            let (ra, rb) = (&kept[a].0, &kept[b].0);
            split_rank(&rb.sha256).cmp(&split_rank(&ra.sha256)).then(ra.sha256.cmp(&rb.sha256))
        });
        // Keep at least one file to train on.
        for &i in train.iter().take(min.min(train.len().saturating_sub(1))) {
            kept[i].0.split = split;
        }
    }
}

fn check_all(candidates: &[Candidate], jobs: usize) -> Vec<Outcome<'_>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new((0..candidates.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(cand) = candidates.get(i) else { break };
                let result = resolve(cand)
                    .and_then(|(path, comment, licence)| check_file(&path).map(|checked| (checked, comment, licence)));
                if (i + 1).is_multiple_of(PROGRESS_EVERY_FILES) {
                    eprintln!("data: checked {}/{} files", i + 1, candidates.len());
                }
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(Outcome { cand, result });
                }
            });
        }
    });
    results.into_inner().unwrap_or_default().into_iter().flatten().collect()
}

/// Write a file only when its bytes differ, so a second run changes nothing.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    write_atomic(path, bytes).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(true)
}

fn write_style(
    out: &Path,
    style: Style,
    kept: &[(ManifestRow, &Candidate, Checked)],
    dropped: &[(&Candidate, DropReason)],
) -> Result<()> {
    let dir = out.join(style.name());
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut written = 0usize;
    for (row, _, checked) in kept {
        written += usize::from(write_if_changed(&dir.join(&row.path), &checked.bytes)?);
    }
    // Files of an earlier run that this one did not keep.
    let wanted: BTreeSet<PathBuf> = kept.iter().map(|(r, _, _)| dir.join(&r.path)).collect();
    let mut removed = 0usize;
    for f in list_midi(&dir.join("midi"))? {
        if !wanted.contains(&f) {
            std::fs::remove_file(&f).with_context(|| format!("{}: cannot remove", f.display()))?;
            removed += 1;
        }
    }
    let rows: Vec<ManifestRow> = kept.iter().map(|(r, _, _)| r.clone()).collect();
    let manifest = dir.join(MANIFEST_FILE);
    let manifest_same = manifest.exists() && read_manifest(&manifest).is_ok_and(|old| old == rows);
    if !manifest_same {
        write_manifest(&manifest, &rows)?;
    }
    let dropped_rows: Vec<DroppedRow> = dropped
        .iter()
        .map(|(c, reason)| DroppedRow {
            style: style.name().into(),
            family: c.family.clone(),
            source: c.source.clone(),
            source_version: c.source_version.clone(),
            source_path: c.source_path.clone(),
            reason: reason.kind().into(),
            detail: reason.detail(),
        })
        .collect();
    let mut w = csv::Writer::from_writer(Vec::new());
    if dropped_rows.is_empty() {
        w.write_record(["style", "family", "source", "source_version", "source_path", "reason", "detail"])?;
    }
    for r in &dropped_rows {
        w.serialize(r)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("cannot write {DROPPED_FILE}: {e}"))?;
    let dropped_changed = write_if_changed(&dir.join(DROPPED_FILE), &bytes)?;
    eprintln!(
        "data: {}: {} files ({written} written, {removed} stale removed), manifest {}, {DROPPED_FILE} {}",
        style.name(),
        kept.len(),
        if manifest_same { "unchanged" } else { "written" },
        if dropped_changed { "written" } else { "unchanged" },
    );
    Ok(())
}

fn list_midi(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    Ok(cadenza_core::locate::midi_files_below(dir)?)
}

fn dropped_summary(d: &BTreeMap<&'static str, usize>) -> String {
    if d.is_empty() {
        return "-".into();
    }
    d.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
}

fn ratio(n: usize, of: usize) -> String {
    format!("{n}/{of}")
}

pub fn print_table(report: &Report) {
    println!(
        "{:<10} {:>6} {:>9} {:>7} {:>10} {:>9} {:>11} {:>11} {:>11} {:>8}  dropped",
        "style", "files", "notes", "hours", "events", "synthetic", "onsets", "faithful", "solo", "max ms"
    );
    for (style, t) in &report.styles {
        let share = if t.seconds > 0.0 { 100.0 * t.synthetic_seconds / t.seconds } else { 0.0 };
        println!(
            "{:<10} {:>6} {:>9} {:>7.2} {:>10} {:>8.1}% {:>11} {:>11} {:>11} {:>8.1}  {}",
            style.name(),
            t.files,
            t.notes,
            t.seconds / 3600.0,
            t.events,
            share,
            ratio(t.onsets_kept, t.files),
            ratio(t.faithful, t.files),
            ratio(t.faithful_solo, t.files),
            t.max_onset_error_ms,
            dropped_summary(&t.dropped)
        );
    }
    println!(
        "synthetic: share of the hours generated by a program (MMA renders, Band-in-a-Box accompaniments). Round trips (encode, decode, write, read back): \
         onsets = files whose every note kept its pitch and onset within 10 ms; faithful = that and every \
         velocity in its bin; solo = faithful once notes doubling another onset of the same key within \
         10 ms (unisons of merged parts, one key on a piano) are set aside; max ms = largest onset error."
    );
    println!();
    println!(
        "{:<10} {:<28} {:>6} {:>9} {:>7} {:>11} {:>11} {:>11}  dropped",
        "style", "family", "files", "notes", "hours", "onsets", "faithful", "solo"
    );
    for ((style, family), t) in &report.families {
        println!(
            "{:<10} {:<28} {:>6} {:>9} {:>7.2} {:>11} {:>11} {:>11}  {}",
            style.name(),
            family,
            t.files,
            t.notes,
            t.seconds / 3600.0,
            ratio(t.onsets_kept, t.files),
            ratio(t.faithful, t.files),
            ratio(t.faithful_solo, t.files),
            dropped_summary(&t.dropped)
        );
    }
    for (style, path, cmp) in report.unfaithful.iter().take(MAX_LISTED_UNFAITHFUL) {
        println!(
            "round trip not faithful (solo notes): {}/{}: {} of {} notes unmatched, {} velocity bins changed, \
             largest onset error {} ms",
            style.name(),
            path.display(),
            cmp.unmatched,
            cmp.notes_in,
            cmp.velocity_bin_changes,
            cmp.max_onset_error_ms
        );
    }
    if report.unfaithful.len() > MAX_LISTED_UNFAITHFUL {
        println!("... and {} more", report.unfaithful.len() - MAX_LISTED_UNFAITHFUL);
    }
}

/// Unfaithful round trips listed by name under the table.
const MAX_LISTED_UNFAITHFUL: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;
    use cadenza_core::Note;

    fn notes(n: usize, gap_s: f64) -> Performance {
        Performance::new(
            (0..n)
                .map(|i| {
                    let t = i as f64 * (0.25 + gap_s);
                    Note { pitch: 60 + (i % 12) as u8, velocity: 80, start_s: t, end_s: t + 0.25 }
                })
                .collect(),
        )
    }

    #[test]
    fn drop_rules_count_notes_and_silence() {
        assert_eq!(drop_rule(&notes(49, 0.0)), Some(DropReason::TooFewNotes(49)));
        assert_eq!(drop_rule(&notes(50, 0.0)), None);
        // 0.25 s sounding, 0.3 s silent: just over half silent
        assert!(matches!(drop_rule(&notes(60, 0.3)), Some(DropReason::MostlySilent { .. })));
        // 0.25 s sounding, 0.2 s silent: under half
        assert_eq!(drop_rule(&notes(60, 0.2)), None);
    }

    #[test]
    fn unison_doublings_are_set_aside_in_pairs() {
        let n = |pitch, start_s: f64, velocity| Note { pitch, velocity, start_s, end_s: start_s + 0.5 };
        let perf = Performance::new(vec![n(60, 0.0, 40), n(60, 0.004, 100), n(64, 0.0, 80), n(60, 1.0, 80)]);
        let solo = without_unisons(&perf);
        let kept: Vec<(u8, f64)> = solo.notes.iter().map(|x| (x.pitch, x.start_s)).collect();
        assert_eq!(kept, vec![(64, 0.0), (60, 1.0)]);
    }

    #[test]
    fn empty_copyright_fields_are_not_licences() {
        assert!(!says_something("Copyright ©"));
        assert!(!says_something(" © "));
        assert!(says_something("Copyright 2000, John Miller"));
    }

    #[test]
    fn read_errors_become_drop_reasons() {
        let drums = MidiErrorKind::DrumsOnly.at("d.mid");
        assert_eq!(read_error_reason(&drums), DropReason::DrumsOnly);
        let garbage = MidiErrorKind::NotMidi("unknown data".into()).at("g.mid");
        match read_error_reason(&garbage) {
            DropReason::Unparseable(msg) => assert!(msg.contains("g.mid") && msg.contains("not a MIDI file")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn palestrina_cap_keeps_its_share_under_the_limit() {
        // 1000 other notes; family items of 100 notes each: at most 15% means
        // p <= 0.15 (1000 + p), so p <= 176 -> one item of 100 fits, two do not.
        let items =
            [(false, 600.0, "f"), (true, 100.0, "b"), (false, 400.0, "e"), (true, 100.0, "a"), (true, 100.0, "c")];
        let keep = cap_family_share(&items, 0.15);
        assert_eq!(keep, vec![true, false, true, true, false]);
        let p: f64 = items.iter().zip(&keep).filter(|(i, k)| i.0 && **k).map(|(i, _)| i.1).sum();
        let all: f64 = items.iter().zip(&keep).filter(|(_, k)| **k).map(|(i, _)| i.1).sum();
        assert!(p <= 0.15 * all);
        // Without a family nothing is dropped; with only the family nothing fits.
        assert_eq!(cap_family_share(&[(false, 10.0, "x")], 0.15), vec![true]);
        assert_eq!(cap_family_share(&[(true, 10.0, "x")], 0.15), vec![false]);
    }

    /// A corpus whose hash split leaves validation or test empty takes the
    /// train files nearest the cut; one whose splits hold files is untouched.
    #[test]
    fn small_corpora_hold_out_files_nearest_the_cut() {
        let row = |sha: String| ManifestRow {
            path: PathBuf::from(format!("{sha}.mid")),
            style: "rock".into(),
            split: split_for_sha256(&sha),
            source: String::new(),
            source_version: String::new(),
            source_path: String::new(),
            licence: String::new(),
            sha256: sha,
            provenance: Provenance::Composed,
            notes: 100,
            seconds: 60.0,
            events: 300,
            comment: String::new(),
        };
        // Ranks 10, 89, 50, 88, 87: all train.
        let ranks = [10u32, 89, 50, 88, 87];
        let mut kept: Vec<(ManifestRow, (), ())> =
            ranks.iter().map(|r| (row(format!("{r:08x}{}", "0".repeat(56))), (), ())).collect();
        assert!(kept.iter().all(|k| k.0.split == Split::Train));
        hold_out_at_least(&mut kept, 2);
        let split_of = |kept: &[(ManifestRow, (), ())], r: u32| {
            kept.iter().find(|k| split_rank(&k.0.sha256) == r).map(|k| k.0.split).expect("rank")
        };
        assert_eq!(split_of(&kept, 89), Split::Valid);
        assert_eq!(split_of(&kept, 88), Split::Valid);
        assert_eq!(split_of(&kept, 87), Split::Test);
        assert_eq!(split_of(&kept, 50), Split::Test);
        assert_eq!(split_of(&kept, 10), Split::Train, "one file is left to train on");
        // Splits that hold a file are left alone, however few.
        let full: Vec<u32> = vec![1, 2, 90, 95, 96, 89];
        let mut kept: Vec<(ManifestRow, (), ())> =
            full.iter().map(|r| (row(format!("{r:08x}{}", "0".repeat(56))), (), ())).collect();
        let before: Vec<Split> = kept.iter().map(|k| k.0.split).collect();
        hold_out_at_least(&mut kept, 2);
        assert_eq!(kept.iter().map(|k| k.0.split).collect::<Vec<_>>(), before);
    }

    /// Issue 10: synthetic files are kept to the share of a style's hours, a
    /// prefix of them in SHA-256 order, each left out listed in dropped.csv.
    #[test]
    fn synthetic_cap_keeps_synthetic_hours_under_the_share() {
        let dir = std::env::temp_dir().join(format!("cadenza-data-synth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let mk = |name: &str, n: usize, provenance: Provenance| {
            let path = dir.join(format!("{name}.mid"));
            midi::write_performance_file(&path, &notes(n, 0.0), &WriteOptions::default()).expect("write");
            Candidate {
                style: Style::Pop,
                family: "test".into(),
                source: "test".into(),
                source_version: "1".into(),
                source_path: format!("{name}.mid"),
                licence: "CC0".into(),
                provenance,
                comment: String::new(),
                rel_path: PathBuf::from(format!("midi/{name}.mid")),
                origin: Origin::Midi(path),
            }
        };
        // 60 s composed; synthetic files of 15-18 s each (60-72 notes of 0.25 s), 98 s in all.
        let mut cands = vec![mk("real", 240, Provenance::Composed)];
        cands.extend((0..6).map(|i| mk(&format!("synth{i}"), 60 + 2 * i, Provenance::Synthetic)));
        let out = dir.join("out");
        let report = build(&cands, &[Style::Pop], &out, 2, 0.5).expect("build");
        let t = &report.styles[&Style::Pop];
        assert!(t.synthetic_seconds <= 0.5 * t.seconds, "{} of {} s", t.synthetic_seconds, t.seconds);
        // Three files (45-51 s) fit under the composed minute, four (>= 66 s) do not.
        assert_eq!((t.files, t.synthetic_files), (4, 3));
        assert_eq!(t.dropped.get("synthetic cap"), Some(&3));
        let rows = read_manifest(&out.join("pop").join(MANIFEST_FILE)).expect("manifest");
        let mut shas: Vec<(String, bool)> = cands[1..]
            .iter()
            .map(|c| {
                let Origin::Midi(p) = &c.origin else { unreachable!() };
                let sha = sha256_hex(&std::fs::read(p).expect("read"));
                (sha.clone(), rows.iter().any(|r| r.sha256 == sha))
            })
            .collect();
        shas.sort();
        let kept: Vec<bool> = shas.iter().map(|s| s.1).collect();
        assert_eq!(kept, [true, true, true, false, false, false], "the first files in SHA-256 order stay");
        let dropped = std::fs::read_to_string(out.join("pop").join(DROPPED_FILE)).expect("dropped");
        assert_eq!(dropped.matches(",synthetic cap,synthetic files kept to at most 50%").count(), 3, "{dropped}");
        // A share of 1 keeps every synthetic file.
        let report = build(&cands, &[Style::Pop], &out, 1, 1.0).expect("build");
        assert_eq!(report.styles[&Style::Pop].synthetic_files, 6);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn real_round_trip_on_a_written_file_is_faithful() {
        let dir = std::env::temp_dir().join(format!("cadenza-data-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("a.mid");
        midi::write_performance_file(&path, &notes(64, 0.0), &WriteOptions::default()).expect("write");
        let checked = check_file(&path).expect("usable");
        assert_eq!(checked.notes, 64);
        assert!(checked.roundtrip.faithful(), "{:?}", checked.roundtrip);
        assert_eq!(checked.sha256, sha256_hex(&std::fs::read(&path).expect("read")));
        std::fs::write(&path, b"RIFF\0\0\0\0WAVEfmt ").expect("write");
        assert!(matches!(check_file(&path), Err(DropReason::Unparseable(_))));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn writing_a_style_twice_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("cadenza-data-idem-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let src = dir.join("src.mid");
        std::fs::create_dir_all(&dir).expect("dir");
        midi::write_performance_file(&src, &notes(64, 0.0), &WriteOptions::default()).expect("write");
        let cand = Candidate {
            style: Style::Folk,
            family: "test".into(),
            source: "test".into(),
            source_version: "1".into(),
            source_path: "src.mid".into(),
            licence: "CC0".into(),
            provenance: Provenance::Composed,
            comment: "a, \"quoted\" comment".into(),
            rel_path: PathBuf::from("midi/test/src.mid"),
            origin: Origin::Midi(src.clone()),
        };
        let mut stale = cand.clone();
        stale.rel_path = PathBuf::from("midi/test/old.mid");
        let out = dir.join("out");
        std::fs::create_dir_all(out.join("folk/midi/test")).expect("dir");
        std::fs::write(out.join("folk/midi/test/old.mid"), b"stale").expect("write");
        build(std::slice::from_ref(&cand), &[Style::Folk], &out, 1, MAX_SYNTHETIC_SHARE).expect("first build");
        assert!(!out.join("folk/midi/test/old.mid").exists(), "stale files are removed");
        let manifest = out.join("folk").join(MANIFEST_FILE);
        let rows = read_manifest(&manifest).expect("manifest");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].notes, 64);
        let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).expect("mtime");
        let before =
            [stamp(&manifest), stamp(&out.join("folk/midi/test/src.mid")), stamp(&out.join("folk/dropped.csv"))];
        std::thread::sleep(std::time::Duration::from_millis(20));
        build(std::slice::from_ref(&cand), &[Style::Folk], &out, 2, MAX_SYNTHETIC_SHARE).expect("second build");
        let after =
            [stamp(&manifest), stamp(&out.join("folk/midi/test/src.mid")), stamp(&out.join("folk/dropped.csv"))];
        assert_eq!(before, after);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn duplicates_are_dropped_and_listed() {
        let dir = std::env::temp_dir().join(format!("cadenza-data-dup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let src = dir.join("a.mid");
        midi::write_performance_file(&src, &notes(64, 0.0), &WriteOptions::default()).expect("write");
        let short = dir.join("short.mid");
        midi::write_performance_file(&short, &notes(10, 0.0), &WriteOptions::default()).expect("write");
        let mk = |name: &str, path: &Path| Candidate {
            style: Style::Jazz,
            family: "test".into(),
            source: "test".into(),
            source_version: "1".into(),
            source_path: name.into(),
            licence: "CC0".into(),
            provenance: Provenance::Synthetic,
            comment: String::new(),
            rel_path: PathBuf::from(format!("midi/{name}")),
            origin: Origin::Midi(path.to_path_buf()),
        };
        let cands = [mk("a.mid", &src), mk("b.mid", &src), mk("short.mid", &short)];
        let out = dir.join("out");
        let report = build(&cands, &[Style::Jazz], &out, 2, 1.0).expect("build");
        let t = &report.styles[&Style::Jazz];
        assert_eq!((t.files, t.synthetic_files, t.faithful), (1, 1, 1));
        assert_eq!(t.dropped.get("duplicate"), Some(&1));
        assert_eq!(t.dropped.get("fewer than 50 notes"), Some(&1));
        let dropped = std::fs::read_to_string(out.join("jazz").join(DROPPED_FILE)).expect("dropped");
        assert!(dropped.contains("b.mid,duplicate,same bytes as midi/a.mid"), "{dropped}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
