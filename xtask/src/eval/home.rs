//! `cargo xtask eval home`: what a phrase costs a style, by its length.
//! A style weighs how foreign a primer is by what the primer costs it
//! (nats per event) against what its own music costs it. Its validation loss
//! is scored on full 512-event windows, where every event has context behind
//! it; a phrase of a few seconds has little, so even the style's own phrases
//! cost more. This measures the style's own phrases (the first seconds of each
//! validation piece) and the nursery primers at the same lengths, so the
//! margin between them can be read off, length by length.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cadenza_core::dataset::Split;
use cadenza_core::engine::{Engine, EngineOptions};
use cadenza_core::{midi, Performance};

use super::style::{shipped_styles, style_classifier_over};
use crate::env::repo_root;
use crate::judge::{MAX_PIECES, PHRASES_PER_PIECE};
use crate::primers::PRIMERS;
use cadenza_core::classifier::Classifier;
use cadenza_core::features::{excerpt, features};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub sources: super::Sources,
    /// Phrase lengths measured, seconds from the phrase's first note.
    #[arg(long, value_delimiter = ',', default_value = "2.5,5,10,20")]
    pub lengths: Vec<f64>,
    /// Validation pieces per style, at most (the first by file hash).
    #[arg(long, default_value_t = 60)]
    pub pieces: usize,
    /// Also name each phrase's style with a classifier trained on windows this long of the real
    /// train splits (at most 9 a piece): does it tell a style's own phrases from the nursery
    /// tunes where their cost cannot? 0: no classifier.
    #[arg(long, default_value_t = 10.0)]
    pub classify_s: f64,
    /// Only these styles' models (default: every shipped style).
    #[arg(long, value_delimiter = ',')]
    pub styles: Vec<String>,
    /// Where to write home.md.
    #[arg(long, default_value = "models/eval")]
    pub out: PathBuf,
}

/// A new phrase starts this often through a piece, from its first note: a musician plays from
/// the middle of a piece as often as from its start.
pub const PHRASE_EVERY_S: f64 = 30.0;

/// The `length_s` of `perf` from `from_s` seconds after its first note, the first onset there
/// at 0 and notes cut at the end; `None` when the piece ends sooner or the phrase holds fewer
/// than 4 notes.
pub fn phrase(perf: &Performance, from_s: f64, length_s: f64) -> Option<Performance> {
    let first = perf.notes.first()?.start_s + from_s;
    let t0 = perf.notes.iter().find(|n| n.start_s >= first)?.start_s;
    if perf.duration_s() < t0 + length_s {
        return None;
    }
    Some(excerpt(perf, t0, t0 + length_s)).filter(|p| p.notes.len() >= 4)
}

/// Every phrase of `length_s` in `perf`, one each [`PHRASE_EVERY_S`] from its first note.
pub fn phrases(perf: &Performance, length_s: f64) -> Vec<Performance> {
    let span = perf.duration_s() - perf.notes.first().map_or(0.0, |n| n.start_s);
    (0..)
        .map(|i| f64::from(i) * PHRASE_EVERY_S)
        .take_while(|from| from + length_s <= span)
        .filter_map(|from| phrase(perf, from, length_s))
        .collect()
}

/// Count, mean, 10th percentile, median and 90th percentile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub mean: f64,
    pub p10: f64,
    pub median: f64,
    pub p90: f64,
}

impl Spread {
    pub fn of(xs: &[f64]) -> Option<Spread> {
        if xs.is_empty() {
            return None;
        }
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some(Spread {
            n: v.len(),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p10: at(0.1),
            median: at(0.5),
            p90: at(0.9),
        })
    }

    fn cell(s: Option<Spread>) -> String {
        s.map_or("–".into(), |s| format!("{:.2} ({:.2}–{:.2}, {})", s.mean, s.p10, s.p90, s.n))
    }
}

/// The validation pieces of `style`, read, at most `max`, the first by file hash.
fn validation_pieces(data: &Path, style: &str, max: usize) -> Result<Vec<Performance>> {
    let dir = data.join(style);
    let mut out = Vec::new();
    for r in super::split_rows(&dir, Split::Valid)?.iter().take(max) {
        match midi::read_file_timed(&dir.join(&r.path), &midi::ReadOptions::default()) {
            Ok((perf, _)) => out.push(perf),
            Err(e) => eprintln!("eval home: skipping {e}"),
        }
    }
    Ok(out)
}

/// One style's costs at each length: its own validation phrases, then the nursery primers; and
/// what the classifier named them (class indices), when it ran and knows the style.
struct Row {
    style: String,
    validation_nll: Option<f64>,
    own: Vec<Option<Spread>>,
    nursery: Vec<Option<Spread>>,
    own_named: Vec<Vec<usize>>,
    nursery_named: Vec<Vec<usize>>,
}

pub fn run(args: &Args) -> Result<()> {
    anyhow::ensure!(
        !args.lengths.is_empty() && args.lengths.iter().all(|l| l.is_finite() && *l > 0.0),
        "--lengths: give positive seconds, as 5,10,20"
    );
    crate::setup::tool_env()?;
    let root = repo_root();
    let data = root.join(&args.sources.data);
    let styles: Vec<String> = if args.styles.is_empty() {
        shipped_styles().into_iter().map(String::from).collect()
    } else {
        args.styles.clone()
    };
    let nursery: Vec<Performance> = PRIMERS.iter().map(|p| p.clip().to_performance(p.tempo_bpm)).collect();
    let opts = EngineOptions { ort_library: crate::env::ort_library(), ..Default::default() };
    anyhow::ensure!(args.classify_s.is_finite() && args.classify_s >= 0.0, "--classify-s: give seconds, or 0");
    let classifier = if args.classify_s > 0.0 {
        let (c, windows) = style_classifier_over(&data, MAX_PIECES, (args.classify_s, PHRASES_PER_PIECE))?;
        println!("eval home: classifier on {windows} windows of {} s: {}", args.classify_s, c.classes.join(", "));
        Some(c)
    } else {
        None
    };
    let named = |phrases: &[Performance]| -> Vec<usize> {
        classifier.as_ref().map_or(Vec::new(), |c| phrases.iter().map(|p| c.predict(&features(p))).collect())
    };
    let mut rows = Vec::new();
    for style in &styles {
        let model = root.join(&args.sources.models).join(format!("{style}.onnx"));
        let mut engine = Engine::load(&model, &opts)?;
        let pieces = validation_pieces(&data, style, args.pieces)
            .with_context(|| format!("{}: no validation split (run cargo xtask data)", data.join(style).display()))?;
        let mut costs = |phrases: &[Performance], length: f64| -> Result<Option<Spread>> {
            let mut xs = Vec::new();
            for p in phrases {
                xs.extend(engine.primer_cost(p, Some(length))?);
            }
            Ok(Spread::of(&xs))
        };
        let mut row = Row {
            style: style.clone(),
            validation_nll: None,
            own: Vec::new(),
            nursery: Vec::new(),
            own_named: Vec::new(),
            nursery_named: Vec::new(),
        };
        for &l in &args.lengths {
            let cut =
                |perfs: &[Performance]| -> Vec<Performance> { perfs.iter().flat_map(|p| phrases(p, l)).collect() };
            let (own, theirs) = (cut(&pieces), cut(&nursery));
            row.own.push(costs(&own, l)?);
            row.nursery.push(costs(&theirs, l)?);
            row.own_named.push(named(&own));
            row.nursery_named.push(named(&theirs));
        }
        row.validation_nll = engine.info().validation_nll;
        println!(
            "eval home: {style}: validation loss {}; {}",
            row.validation_nll.map_or("not recorded".into(), |v| format!("{v:.3}")),
            args.lengths
                .iter()
                .zip(row.own.iter().zip(&row.nursery))
                .map(|(l, (o, n))| format!("{l} s own {} nursery {}", Spread::cell(*o), Spread::cell(*n)))
                .collect::<Vec<_>>()
                .join("; ")
        );
        rows.push(row);
    }
    let out = root.join(&args.out);
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    let path = out.join("home.md");
    cadenza_core::fsutil::write_atomic(&path, report(args, &rows, classifier.as_ref()).as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    println!("eval home: wrote {}", path.display());
    Ok(())
}

fn report(args: &Args, rows: &[Row], classifier: Option<&Classifier>) -> String {
    let lengths: Vec<String> = args.lengths.iter().map(|l| format!("{l} s")).collect();
    let mut s = format!(
        "# What a phrase costs each style, by its length\n\nGenerated by `cargo xtask eval home --pieces {} \
         --lengths {}{}`. Nats per event, scored as a generation scores its primer; each cell: mean (10th–90th \
         percentile, phrases). **own**: phrases of the style's validation pieces (at most {} per style, the \
         first by file hash), one every {PHRASE_EVERY_S} s from the first note; **nursery**: the bundled \
         primers (Twinkle, Frère Jacques) cut the same way. Validation loss: full windows, as the card gives it.\n\n| style | validation loss | {} |\n|---|---|{}\n",
        args.pieces,
        args.lengths.iter().map(f64::to_string).collect::<Vec<_>>().join(","),
        if args.styles.is_empty() { String::new() } else { format!(" --styles {}", args.styles.join(",")) },
        args.pieces,
        lengths.iter().flat_map(|l| [format!("own {l}"), format!("nursery {l}")]).collect::<Vec<_>>().join(" | "),
        "---|".repeat(2 * lengths.len()),
    );
    for r in rows {
        let cells: Vec<String> =
            r.own.iter().zip(&r.nursery).flat_map(|(o, n)| [Spread::cell(*o), Spread::cell(*n)]).collect();
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            r.style,
            r.validation_nll.map_or("–".into(), |v| format!("{v:.2}")),
            cells.join(" | ")
        ));
    }
    if let Some(c) = classifier {
        s.push_str(&format!(
            "\n## What a style classifier names them\n\nA logistic-regression classifier on the style \
             evaluation's features, trained on windows of {} s of the real train splits (at most \
             {PHRASES_PER_PIECE} a piece, {MAX_PIECES} pieces a style; classes {}). Each cell: the style's own \
             phrases named as the style, then what the nursery phrases were named.\n\n| style | {} |\n|---|{}\n",
            args.classify_s,
            c.classes.join(", "),
            lengths
                .iter()
                .flat_map(|l| [format!("own named {l}"), format!("nursery named {l}")])
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(2 * lengths.len()),
        ));
        for r in rows {
            let Some(class) = c.classes.iter().position(|k| *k == r.style) else { continue };
            let cells: Vec<String> = r
                .own_named
                .iter()
                .zip(&r.nursery_named)
                .flat_map(|(own, nursery)| {
                    let right = own.iter().filter(|&&k| k == class).count();
                    let own = if own.is_empty() { "–".into() } else { format!("{right} of {}", own.len()) };
                    let nursery = if nursery.is_empty() {
                        "–".into()
                    } else {
                        nursery.iter().map(|&k| c.classes[k].as_str()).collect::<Vec<_>>().join(", ")
                    };
                    [own, nursery]
                })
                .collect();
            s.push_str(&format!("| {} | {} |\n", r.style, cells.join(" | ")));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadenza_core::Note;

    fn note(pitch: u8, start_s: f64) -> Note {
        Note { pitch, velocity: 80, start_s, end_s: start_s + 0.5 }
    }

    #[test]
    fn a_phrase_starts_at_a_note_and_cuts_notes_at_its_end() {
        let perf = Performance::new((0..20).map(|i| note(60 + i as u8, 2.0 + f64::from(i) * 0.5)).collect());
        let p = phrase(&perf, 0.0, 3.2).expect("long enough");
        assert_eq!(p.notes.len(), 7, "onsets 0.0 to 3.0");
        assert_eq!(p.notes[0].start_s, 0.0);
        assert!((p.notes[6].end_s - 3.2).abs() < 1e-9, "the last note is cut at the end: {:?}", p.notes[6]);
        let later = phrase(&perf, 1.2, 2.0).expect("long enough");
        assert_eq!(later.notes[0].pitch, 63, "the first onset at or after 1.2 s in");
        assert_eq!(later.notes[0].start_s, 0.0);
        assert!(phrase(&perf, 0.0, 30.0).is_none(), "a piece shorter than the phrase gives none");
        assert!(phrase(&perf, 0.0, 1.0).is_none(), "fewer than 4 notes gives none");
    }

    #[test]
    fn a_long_piece_gives_a_phrase_every_thirty_seconds() {
        let perf = Performance::new((0..200).map(|i| note(60 + (i % 12) as u8, f64::from(i) * 0.5)).collect());
        // Notes sound from 0 to 100 s.
        let starts: Vec<usize> = phrases(&perf, 10.0).iter().map(|p| p.notes.len()).collect();
        assert_eq!(starts, vec![20, 20, 20, 20], "0, 30, 60 and 90 s");
        assert!(phrases(&perf, 120.0).is_empty());
    }

    #[test]
    fn the_report_counts_own_phrases_named_right_and_names_the_nursery_ones() {
        use cadenza_core::classifier::Fit;
        let samples = vec![(vec![0.0], 0), (vec![1.0], 1)];
        let c = Classifier::fit(vec!["jazz".into(), "folk".into()], &samples, Fit::default());
        let args = Args {
            sources: super::super::Sources { data: "data".into(), models: "models".into() },
            lengths: vec![5.0],
            pieces: 60,
            classify_s: 10.0,
            styles: Vec::new(),
            out: "models/eval".into(),
        };
        let row = |style: &str, own: Vec<usize>| Row {
            style: style.into(),
            validation_nll: Some(1.5),
            own: vec![Spread::of(&[2.0, 3.0])],
            nursery: vec![None],
            own_named: vec![own],
            nursery_named: vec![vec![1, 1]],
        };
        let rows = [row("jazz", vec![0, 1, 0]), row("rock", vec![0])];
        let md = report(&args, &rows, Some(&c));
        assert!(md.contains("| jazz | 1.50 | 2.50 (2.00–3.00, 2) | – |"), "{md}");
        assert!(md.contains("| jazz | 2 of 3 | folk, folk |"), "{md}");
        assert!(!md.contains("| rock | 1 of"), "a style the classifier does not know is left out: {md}");
        assert!(!report(&args, &rows, None).contains("classifier names"), "no classifier, no table");
    }

    #[test]
    fn spread_reads_percentiles_from_the_sorted_values() {
        let s = Spread::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).expect("values");
        assert_eq!((s.n, s.mean, s.p10, s.median, s.p90), (5, 3.0, 1.0, 3.0, 5.0));
        assert!(Spread::of(&[]).is_none());
    }
}
