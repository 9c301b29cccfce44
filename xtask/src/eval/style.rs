//! `cargo xtask eval style`: a classifier trained on the real train split of
//! every style, its confusion matrix on the real test split, then on music
//! the shipped models generate (improvised and primed), with the real and
//! generated statistics side by side.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cadenza_core::analysis::Meter;
use cadenza_core::dataset::{Split, MANIFEST_FILE};
use cadenza_core::engine::Engine;
use cadenza_core::request::{GenerateRequest, GenerationSettings, Length};
use cadenza_core::sampling::{Sampling, Steering};
use cadenza_core::{midi, Performance};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::env::repo_root;
use crate::primers::PRIMERS;
use cadenza_core::classifier::{Classifier, Confusion, Fit};
use cadenza_core::features::{feature_names, features, stats, windows, Stats, NUM_FEATURES};

/// The styles Cadenza ships, in report order.
pub const STYLES: [&str; 6] = ["classical", "jazz", "pop", "folk", "rock", "electronic"];

/// The styles of [`STYLES`] whose model `models/STYLE.onnx` is present.
pub fn shipped_styles() -> Vec<&'static str> {
    let models = repo_root().join("models");
    STYLES.iter().copied().filter(|s| models.join(format!("{s}.onnx")).exists()).collect()
}
/// Length of a window of real music and of each generated piece.
const WINDOW_S: f64 = 30.0;
/// Windows taken from one real piece, so long pieces cannot dominate.
const MAX_WINDOWS_PER_PIECE: usize = 3;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub sources: super::Sources,
    /// Generated pieces per style; half improvised, half continuing the bundled primers.
    #[arg(long, default_value_t = 20)]
    pub pieces: usize,
    /// Real pieces per style and split, at most (a deterministic choice by file hash).
    #[arg(long, default_value_t = 400)]
    pub max_pieces: usize,
    /// Seed of the generated pieces.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Generate with this many seeds, from --seed on: the tables add them up,
    /// and a table gives each seed's pieces named right per style (at 20
    /// pieces a seed, two or three either way are noise).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub seeds: u64,
    /// How closely primed pieces follow their primer (0 free .. 1 strict).
    #[arg(long, default_value_t = Steering::default().follow)]
    pub follow: f32,
    /// How much the style's own voice leads primed pieces (0 = the primer's context alone).
    #[arg(long, default_value_t = Steering::default().own_voice)]
    pub own_voice: f32,
    #[command(flatten)]
    pub lead: super::Lead,
    /// Sampling temperature of the generated pieces.
    #[arg(long, default_value_t = Sampling::default().temperature)]
    pub temperature: f32,
    /// Nucleus (top-p) of the generated pieces.
    #[arg(long, default_value_t = Sampling::default().top_p)]
    pub top_p: f32,
    /// Longest a generated note may sound, in seconds (0 = no limit; see `Steering::max_note_s`).
    #[arg(long, default_value_t = Steering::default().max_note_s)]
    pub max_note_s: f64,
    #[command(flatten)]
    pub lean: super::Lean,
    /// Generate only these styles (repeatable; default every style with a model).
    #[arg(long = "style", value_name = "STYLE")]
    pub only: Vec<String>,
    /// Where to write style.md and the plots.
    #[arg(long, default_value = "models/eval")]
    pub out: PathBuf,
    /// Only the real-music part: skip generation.
    #[arg(long)]
    pub real_only: bool,
    /// Also write every generated piece here as MIDI, named by style, seed, piece, whether it
    /// improvised or continued a primer, and the style the classifier named it
    /// (`rock-seed1-03-primed-named-electronic.mid`), to hear what it heard.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Classify the pieces an earlier `--keep DIR` wrote instead of generating them again (with
    /// the same --pieces, --seed and --seeds; the MIDI round trip moves a note by a millisecond
    /// at most), to see what another classifier or report makes of the same music.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["keep", "real_only"])]
    pub kept: Option<PathBuf>,
}

/// Real windows of a style's split: (features, stats) per window.
pub(crate) fn real_windows(
    data: &Path,
    style: &str,
    split: Split,
    max_pieces: usize,
    (window_s, per_piece): (f64, usize),
) -> Result<Vec<Performance>> {
    let dir = data.join(style);
    let mut rows = super::split_rows(&dir, split)?;
    rows.truncate(max_pieces);
    let mut out = Vec::new();
    for r in rows {
        let path = dir.join(&r.path);
        match midi::read_file(&path, &midi::ReadOptions::default()) {
            Ok(p) => out.extend(windows(&p, window_s, per_piece)),
            Err(e) => eprintln!("eval: skipping {e}"),
        }
    }
    Ok(out)
}

/// What the primed pieces' primers cost a model, on average: nats per event, its own music's, and foreignness.
struct PrimedCost {
    nats_per_event: f64,
    home: Option<f64>,
    foreignness: f64,
    /// Whether the style led them.
    led: bool,
    /// How far, on average, a style with a contrast model leaned from it (0..1 of its strength).
    lean: f64,
}

fn generate(
    engine: &mut Engine,
    pieces: usize,
    sampling: Sampling,
    steering: Steering,
) -> Result<(Vec<Performance>, f64, Option<PrimedCost>)> {
    let t0 = std::time::Instant::now();
    let mut out = Vec::new();
    let mut fits = Vec::new();
    for i in 0..pieces {
        // even pieces improvise, odd ones continue a bundled primer
        let primer = (i % 2 == 1).then(|| &PRIMERS[(i / 2) % PRIMERS.len()]);
        let req = GenerateRequest {
            primer: primer.map(|p| p.clip().to_performance(p.tempo_bpm)),
            meter: primer.map(|p| Meter::new(p.tempo_bpm)),
            settings: GenerationSettings {
                length: Length::Seconds(WINDOW_S),
                sampling: Sampling { seed: sampling.seed.wrapping_mul(1000).wrapping_add(i as u64), ..sampling },
                steering,
                ..Default::default()
            },
            ..GenerateRequest::default()
        };
        let mut variations = engine.generate(&req, &mut |_| true)?;
        out.push(variations.remove(0));
        fits.extend(engine.primer_fit());
    }
    let n = fits.len() as f64;
    let cost = (!fits.is_empty()).then(|| PrimedCost {
        nats_per_event: fits.iter().map(|f| f.nats_per_event).sum::<f64>() / n,
        home: fits[0].home_nats_per_event,
        foreignness: fits.iter().map(|f| f64::from(f.foreignness)).sum::<f64>() / n,
        led: fits.iter().any(|f| f.led),
        lean: fits.iter().map(|f| f64::from(f.lean)).sum::<f64>() / n,
    });
    Ok((out, t0.elapsed().as_secs_f64(), cost))
}

fn mean_stats(perfs: &[Performance]) -> [f64; 8] {
    let mut acc = [0.0; 8];
    for p in perfs {
        for (a, v) in acc.iter_mut().zip(stats(p).values()) {
            *a += v / perfs.len().max(1) as f64;
        }
    }
    acc
}

/// The style classifier, trained on the real train split of every style of
/// [`STYLES`] with data in `data` (at most `max_pieces` pieces each), and how
/// many windows it saw. Its classes are those styles, in [`STYLES`] order.
pub fn style_classifier(data: &Path, max_pieces: usize) -> Result<(Classifier, usize)> {
    style_classifier_over(data, max_pieces, (WINDOW_S, MAX_WINDOWS_PER_PIECE))
}

/// [`style_classifier`] on windows of another length, at most so many per piece: a phrase of a few
/// seconds is told by one trained on phrases that long.
pub fn style_classifier_over(data: &Path, max_pieces: usize, windowing: (f64, usize)) -> Result<(Classifier, usize)> {
    let styles: Vec<String> =
        STYLES.iter().filter(|s| data.join(s).join(MANIFEST_FILE).exists()).map(|s| s.to_string()).collect();
    if styles.len() < 2 {
        bail!("{}: needs at least two styles with a manifest.csv; run `cargo xtask data` first", data.display());
    }
    let mut train = Vec::new();
    for (c, style) in styles.iter().enumerate() {
        let tr = real_windows(data, style, Split::Train, max_pieces, windowing)?;
        println!("eval: {style}: {} train windows", tr.len());
        train.extend(tr.iter().map(|p| (features(p).to_vec(), c)));
    }
    Ok((Classifier::fit(styles, &train, Fit::default()), train.len()))
}

pub fn run(args: &Args) -> Result<()> {
    let root = repo_root();
    let data = root.join(&args.sources.data);
    let out = root.join(&args.out);
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    let (model, train_windows) = style_classifier(&data, args.max_pieces)?;
    let styles = model.classes.clone();
    if let Some(unknown) = args.only.iter().find(|s| !styles.contains(s)) {
        anyhow::bail!("--style {unknown}: no such style in {} (styles: {})", data.display(), styles.join(", "));
    }
    let mut test: Vec<Vec<Performance>> = Vec::new();
    for style in &styles {
        let te = real_windows(&data, style, Split::Test, args.max_pieces, (WINDOW_S, MAX_WINDOWS_PER_PIECE))?;
        println!("eval style: {style}: {} test windows", te.len());
        test.push(te);
    }
    let real_cm = model.confusion(&test);
    let mut report = format!(
        "# Does a style sound like its style?\n\nGenerated by `cargo xtask eval style` ({}, temperature {}, top-p {}, primed pieces following their primer at {}, own voice {}, style lead {}, longest note {}). \
         A logistic-regression \
         classifier on {} features per {WINDOW_S:.0}-second window (key-relative scale degrees, melodic intervals, \
         inter-onset times, swing, density, polyphony, repetition, chords, dynamics), trained on the real train split \
         ({} windows, at most {MAX_WINDOWS_PER_PIECE} per piece).\n\n## Real held-out music (test split)\n\n\
         Accuracy {:.1}%, balanced {:.1}% (chance {:.1}%).\n\n{}\n",
        seed_range(args.seed, args.seeds),
        args.temperature,
        args.top_p,
        args.follow,
        args.own_voice,
        args.lead.words(),
        if args.max_note_s == 0.0 { "unlimited".to_string() } else { format!("{} s", args.max_note_s) },
        cadenza_core::features::NUM_FEATURES,
        train_windows,
        100.0 * real_cm.accuracy(),
        100.0 * real_cm.balanced_accuracy(),
        100.0 / styles.len() as f64,
        real_cm.markdown()
    );
    println!("real test split: accuracy {:.1}%\n{}", 100.0 * real_cm.accuracy(), real_cm.markdown());

    if let Some(dir) = &args.kept {
        report.push_str(&format!(
            "The generated pieces were read back from `{}`, where an earlier run with these settings kept them \
             (`--keep`).\n\n",
            dir.display()
        ));
    }
    // Per style, `args.pieces` pieces for each seed in turn.
    let mut generated: Vec<(usize, Vec<Performance>)> = Vec::new();
    let mut primed_costs: Vec<String> = Vec::new();
    let mut contrasts: Vec<String> = Vec::new();
    if let Some(dir) = &args.kept {
        generated = read_kept(&root.join(dir), &styles, args)?;
    } else if !args.real_only {
        crate::setup::tool_env()?;
        for (c, style) in styles.iter().enumerate() {
            let path = root.join(&args.sources.models).join(format!("{style}.onnx"));
            if !args.only.is_empty() && !args.only.contains(style) {
                continue;
            }
            if !path.exists() {
                println!("eval style: no model {} — skipped", path.display());
                continue;
            }
            // One engine for every seed: each request carries its own seed.
            let (mut engine, contrast, leans) = args.lean.engine(&path, style, &args.lead)?;
            contrasts.extend(leans);
            let mut pieces = Vec::new();
            for seed in args.seed..args.seed + args.seeds {
                let (perfs, secs, cost) = generate(
                    &mut engine,
                    args.pieces,
                    Sampling { temperature: args.temperature, top_p: args.top_p, seed, ..Sampling::default() },
                    Steering {
                        follow: args.follow,
                        own_voice: args.own_voice,
                        style_lead: args.lead.style_lead,
                        max_note_s: args.max_note_s,
                        contrast,
                        ..Steering::default()
                    },
                )?;
                println!("eval style: generated {} {style} pieces (seed {seed}) in {secs:.1} s", perfs.len());
                // What the primers cost does not depend on the seed.
                if let (Some(c), true) = (cost, seed == args.seed) {
                    let home = c.home.map_or(String::new(), |h| format!(", its own music {h:.2}"));
                    let leaning = if contrast > 0.0 {
                        format!(", leaning at {:.2}", f64::from(contrast) * c.lean)
                    } else {
                        String::new()
                    };
                    primed_costs.push(format!(
                        "{style} {:.2} nats per event{home}, foreignness {:.2}{}{leaning}",
                        c.nats_per_event,
                        c.foreignness,
                        if c.led { ", led" } else { "" }
                    ));
                }
                pieces.extend(perfs);
            }
            generated.push((c, pieces));
        }
    }
    if !generated.is_empty() {
        let mut cm = Confusion::new(&styles);
        let mut by_mode = [Confusion::new(&styles), Confusion::new(&styles)];
        let mut by_seed: Vec<(u64, [Confusion; 2])> = (args.seed..args.seed + args.seeds)
            .map(|seed| (seed, [Confusion::new(&styles), Confusion::new(&styles)]))
            .collect();
        let mut primed: Vec<(usize, usize, [f64; NUM_FEATURES])> = Vec::new();
        for (c, perfs) in &generated {
            for (i, p) in perfs.iter().enumerate() {
                let x = features(p);
                let guess = model.predict(&x);
                // Within a seed, even pieces improvise and odd ones continue a primer (`generate`).
                let mode = i % args.pieces % 2;
                cm.add(*c, guess);
                by_mode[mode].add(*c, guess);
                by_seed[i / args.pieces].1[mode].add(*c, guess);
                if mode == 1 {
                    primed.push((*c, guess, x));
                }
                if let Some(dir) = &args.keep {
                    let seed = args.seed + (i / args.pieces) as u64;
                    let name = format!("{}{}.mid", kept_prefix(&styles[*c], seed, i % args.pieces), styles[guess]);
                    keep_piece(&root.join(dir), &name, p)?;
                }
            }
        }
        report.push_str(&format!(
            "## Generated music ({} pieces per style{}, {WINDOW_S:.0} s each; half improvised, half continuing the \
             bundled primers, which are not part of the window)\n\nAccuracy {:.1}%, balanced {:.1}% (chance \
             {:.1}%); improvised {:.1}%, primed {:.1}%.\n\n{}\n",
            args.pieces,
            if args.seeds > 1 { format!(" at each of {} seeds", args.seeds) } else { String::new() },
            100.0 * cm.accuracy(),
            100.0 * cm.balanced_accuracy(),
            100.0 / styles.len() as f64,
            100.0 * by_mode[0].accuracy(),
            100.0 * by_mode[1].accuracy(),
            cm.markdown()
        ));
        if by_seed.len() > 1 {
            report.push_str(&format!(
                "Pieces named right at each seed (improvised, then primed, per style):\n\n{}\n",
                seed_table(&by_seed, &by_mode)
            ));
        }
        report.push_str(&format!(
            "The primed pieces alone (each style continuing the nursery primers, which belong to no style):\n\n{}\n",
            by_mode[1].markdown()
        ));
        report.push_str(&why_missed(&model, &primed));
        // Pieces read back with --kept were not generated here: what their primers cost is not known.
        if !primed_costs.is_empty() {
            report.push_str(&format!(
                "What the nursery primers cost each model, on average: {}. Foreignness runs from 0 (the model's \
                 own style) to 1; where the style led them (`Steering::style_lead`), that much of the manner is \
                 the style's. A style with a contrast model leans from it as far as the primers are foreign to it \
                 by the style judge's ear and, for a style that leads by cost, by cost (`PrimerFit::lean`), led \
                 or not.\n\n",
                primed_costs.join("; ")
            ));
        }
        if !contrasts.is_empty() {
            report.push_str(&format!(
                "Styles leaning away from a contrast model (`Steering::contrast`): {}.\n\n",
                contrasts.join("; ")
            ));
        }
        println!("generated: accuracy {:.1}%\n{}", 100.0 * cm.accuracy(), cm.markdown());
        println!("primed: accuracy {:.1}%\n{}", 100.0 * by_mode[1].accuracy(), by_mode[1].markdown());
    }

    report.push_str("## Real and generated music, side by side (means per window)\n\n| style | source |");
    for n in Stats::NAMES {
        report.push_str(&format!(" {n} |"));
    }
    report.push_str(&format!("\n|---|---|{}\n", "---|".repeat(Stats::NAMES.len())));
    let mut rows: Vec<(String, bool, [f64; 8])> = Vec::new();
    for (c, style) in styles.iter().enumerate() {
        rows.push((style.clone(), false, mean_stats(&test[c])));
        if let Some((_, g)) = generated.iter().find(|(gc, _)| *gc == c) {
            rows.push((style.clone(), true, mean_stats(g)));
        }
    }
    for (style, is_gen, v) in &rows {
        let cells: Vec<String> = v.iter().map(|x| format!("{x:.2}")).collect();
        report.push_str(&format!(
            "| {style} | {} | {} |\n",
            if *is_gen { "generated" } else { "real" },
            cells.join(" | ")
        ));
    }
    let plot = out.join("style-stats.png");
    plot_stats(&rows, &plot)?;
    report.push_str("\n![statistics](style-stats.png)\n");
    let md = out.join("style.md");
    cadenza_core::fsutil::write_atomic(&md, report.as_bytes())?;
    println!("eval style: wrote {} and {}", md.display(), plot.display());
    Ok(())
}

/// The name a kept piece starts with; the style it was named follows.
fn kept_prefix(style: &str, seed: u64, piece: usize) -> String {
    format!("{style}-seed{seed}-{piece:02}-{}-named-", if piece.is_multiple_of(2) { "improvised" } else { "primed" })
}

/// The pieces `--keep` wrote to `dir`, per style in the order they were generated; a style with
/// none is left out, a style with some missing is an error.
fn read_kept(dir: &Path, styles: &[String], args: &Args) -> Result<Vec<(usize, Vec<Performance>)>> {
    let files: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read the kept pieces", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".mid"))
        .collect();
    let mut out = Vec::new();
    for (c, style) in styles.iter().enumerate() {
        if !args.only.is_empty() && !args.only.contains(style) {
            continue;
        }
        if !files.iter().any(|f| f.starts_with(&format!("{style}-seed"))) {
            println!("eval style: no kept {style} pieces in {} — skipped", dir.display());
            continue;
        }
        let mut pieces = Vec::new();
        for seed in args.seed..args.seed + args.seeds {
            let beyond = kept_prefix(style, seed, args.pieces);
            if files.iter().any(|f| f.starts_with(&beyond)) {
                bail!("{}: holds {beyond}*.mid, more than --pieces {} a seed kept", dir.display(), args.pieces);
            }
            for i in 0..args.pieces {
                let prefix = kept_prefix(style, seed, i);
                let name = files.iter().find(|f| f.starts_with(&prefix)).with_context(|| {
                    format!(
                        "{}: no {prefix}*.mid (--pieces, --seed and --seeds must be those of the run that kept them)",
                        dir.display()
                    )
                })?;
                let path = dir.join(name);
                pieces.push(midi::read_file(&path, &midi::ReadOptions::default())?);
            }
        }
        println!("eval style: read {} kept {style} pieces", pieces.len());
        out.push((c, pieces));
    }
    Ok(out)
}

fn keep_piece(dir: &Path, name: &str, perf: &Performance) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let path = dir.join(name);
    cadenza_core::fsutil::write_atomic(&path, &midi::write_performance(perf, &midi::WriteOptions::default()))
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// Misses of one style for another this many times or more are explained.
const MIN_MISSES_EXPLAINED: usize = 5;
/// Features listed per explained miss.
const PULLS_LISTED: usize = 4;

/// For each style's primed pieces most often named another style, the features that set them
/// apart from the style's primed pieces named right, weighted by what the classifier makes of
/// them: each feature's share of the difference in log-odds of the other style against their own
/// between the two groups' means (against the classifier's centre where none was named right),
/// with the feature's mean in each group.
fn why_missed(model: &Classifier, primed: &[(usize, usize, [f64; NUM_FEATURES])]) -> String {
    let names = feature_names();
    let k = model.classes.len();
    let mut pairs: Vec<(usize, usize, usize)> = (0..k)
        .flat_map(|c| (0..k).map(move |g| (c, g)))
        .filter(|(c, g)| c != g)
        .map(|(c, g)| (c, g, primed.iter().filter(|p| p.0 == c && p.1 == g).count()))
        .filter(|p| p.2 >= MIN_MISSES_EXPLAINED)
        .collect();
    if pairs.is_empty() {
        return String::new();
    }
    pairs.sort_by(|a, b| b.2.cmp(&a.2).then(a.cmp(b)));
    let mean = |c: usize, g: usize| -> Option<Vec<f64>> {
        let xs: Vec<&[f64; NUM_FEATURES]> = primed.iter().filter(|p| p.0 == c && p.1 == g).map(|p| &p.2).collect();
        (!xs.is_empty())
            .then(|| (0..NUM_FEATURES).map(|j| xs.iter().map(|x| x[j]).sum::<f64>() / xs.len() as f64).collect())
    };
    let mut out = format!(
        "Why primed pieces were named another style ({MIN_MISSES_EXPLAINED} or more times): the features that set \
         them apart from the style's primed pieces named right, as their share of the difference in the \
         classifier's log-odds of that style against their own, with the feature's mean in the missed pieces \
         against those named right:\n\n| style, named | pieces | log-odds apart | {} |\n|---|---|---|{}\n",
        (1..=PULLS_LISTED).map(|i| format!("pull {i}")).collect::<Vec<_>>().join(" | "),
        "---|".repeat(PULLS_LISTED)
    );
    for (c, g, n) in pairs {
        let missed = mean(c, g).expect("a pair has its misses");
        let right = mean(c, c);
        let base = right.as_ref().map(|r| model.pulls(r, c, g));
        let pull: Vec<f64> = model
            .pulls(&missed, c, g)
            .iter()
            .enumerate()
            .map(|(j, p)| p - base.as_ref().map_or(0.0, |b| b[j]))
            .collect();
        let mut order: Vec<usize> = (0..NUM_FEATURES).collect();
        order.sort_by(|a, b| pull[*b].total_cmp(&pull[*a]));
        let cells: Vec<String> = order
            .iter()
            .take(PULLS_LISTED)
            .map(|&j| {
                let against = right.as_ref().map_or("none named right".to_string(), |r| format!("{:.2}", r[j]));
                format!("{} +{:.2} ({:.2} against {against})", names[j], pull[j], missed[j])
            })
            .collect();
        let apart: f64 = pull.iter().sum();
        out.push_str(&format!(
            "| {} → {} | {n} | {apart:.2} | {} |\n",
            model.classes[c],
            model.classes[g],
            cells.join(" | ")
        ));
    }
    out.push('\n');
    out
}

/// "seed 3" or "seeds 1-5".
fn seed_range(first: u64, count: u64) -> String {
    if count > 1 {
        format!("seeds {first}-{}", first + count - 1)
    } else {
        format!("seed {first}")
    }
}

/// A Markdown table with a row per seed and one for `total` (all seeds):
/// per style, the improvised and the primed pieces named right of how many
/// ("19/20 · 4/20"), then both shares over all styles.
fn seed_table(by_seed: &[(u64, [Confusion; 2])], total: &[Confusion; 2]) -> String {
    let classes = &total[0].classes;
    // Only the styles that generated (`--style` may leave some out).
    let shown: Vec<usize> =
        (0..classes.len()).filter(|&c| total.iter().any(|m| m.counts[c].iter().sum::<usize>() > 0)).collect();
    let names: Vec<&str> = shown.iter().map(|&c| classes[c].as_str()).collect();
    let mut s = format!("| seed | {} | improvised | primed |\n|---|", names.join(" | "));
    s.push_str(&"---|".repeat(shown.len() + 2));
    s.push('\n');
    let row = |label: String, modes: &[Confusion; 2]| {
        let cells: Vec<String> = shown
            .iter()
            .map(|&c| {
                let [imp, pri] = [&modes[0], &modes[1]].map(|m| (m.counts[c][c], m.counts[c].iter().sum::<usize>()));
                format!("{}/{} · {}/{}", imp.0, imp.1, pri.0, pri.1)
            })
            .collect();
        format!(
            "| {label} | {} | {:.1}% | {:.1}% |\n",
            cells.join(" | "),
            100.0 * modes[0].accuracy(),
            100.0 * modes[1].accuracy()
        )
    };
    for (seed, modes) in by_seed {
        s.push_str(&row(seed.to_string(), modes));
    }
    s.push_str(&row("all".to_string(), total));
    s
}

/// One panel per statistic; bars per style, real and generated side by side.
fn plot_stats(rows: &[(String, bool, [f64; 8])], path: &Path) -> Result<()> {
    let tmp = cadenza_core::fsutil::temp_path(path).with_extension("png");
    {
        let root = BitMapBackend::new(&tmp, (1600, 800)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((2, 4));
        let styles: Vec<&String> = rows.iter().filter(|r| !r.1).map(|r| &r.0).collect();
        for (k, panel) in panels.iter().enumerate() {
            let max = rows.iter().map(|r| r.2[k]).fold(0.0f64, f64::max).max(1e-6) * 1.15;
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("{} (blue real, orange generated)", Stats::NAMES[k]), ("sans-serif", 17))
                .margin(8)
                .x_label_area_size(28)
                .y_label_area_size(48)
                .build_cartesian_2d(0.0..styles.len() as f64, 0.0..max)?;
            chart.configure_mesh().disable_x_mesh().x_labels(0).draw()?;
            // Style names over their pairs of bars (plotters places axis ticks itself).
            let label = ("sans-serif", 15).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top));
            chart.draw_series(
                styles
                    .iter()
                    .enumerate()
                    .map(|(i, s)| Text::new(s.to_string(), (i as f64 + 0.5, max * 0.99), label.clone())),
            )?;
            for (i, style) in styles.iter().enumerate() {
                for (is_gen, color) in [(false, RGBColor(70, 110, 180)), (true, RGBColor(230, 140, 40))] {
                    if let Some(r) = rows.iter().find(|r| &r.0 == *style && r.1 == is_gen) {
                        let x0 = i as f64 + if is_gen { 0.5 } else { 0.1 };
                        chart.draw_series(std::iter::once(Rectangle::new(
                            [(x0, 0.0), (x0 + 0.4, r.2[k])],
                            color.filled(),
                        )))?;
                    }
                }
            }
        }
        root.present()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confusion(classes: &[String], pairs: &[(usize, usize)]) -> Confusion {
        let mut cm = Confusion::new(classes);
        for &(truth, guess) in pairs {
            cm.add(truth, guess);
        }
        cm
    }

    #[test]
    fn seed_table_gives_each_seed_and_their_total() {
        let classes = vec!["jazz".to_string(), "pop".to_string()];
        let (improvised1, primed1) = ([(0, 0), (0, 1), (1, 1)], [(0, 1), (1, 1)]);
        let (improvised2, primed2) = ([(0, 0), (0, 0), (1, 0)], [(0, 0), (1, 1)]);
        let seed1 = [confusion(&classes, &improvised1), confusion(&classes, &primed1)];
        let seed2 = [confusion(&classes, &improvised2), confusion(&classes, &primed2)];
        let total = [
            confusion(&classes, &[improvised1.as_slice(), &improvised2].concat()),
            confusion(&classes, &[primed1.as_slice(), &primed2].concat()),
        ];
        let table = seed_table(&[(4, seed1), (5, seed2)], &total);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "| seed | jazz | pop | improvised | primed |");
        assert_eq!(lines[2], "| 4 | 1/2 · 0/1 | 1/1 · 1/1 | 66.7% | 50.0% |");
        assert_eq!(lines[3], "| 5 | 2/2 · 1/1 | 0/1 · 1/1 | 66.7% | 100.0% |");
        assert_eq!(lines[4], "| all | 3/4 · 1/2 | 1/2 · 2/2 | 66.7% | 75.0% |");
        assert_eq!(lines.len(), 5);
        // A style that generated nothing (left out with --style) gets no column.
        let three = vec!["jazz".to_string(), "folk".to_string(), "pop".to_string()];
        let only = [confusion(&three, &[(0, 0), (2, 0)]), confusion(&three, &[(0, 2), (2, 2)])];
        let table = seed_table(&[(1, only.clone())], &only);
        assert_eq!(table.lines().next(), Some("| seed | jazz | pop | improvised | primed |"));
        assert_eq!(table.lines().nth(2), Some("| 1 | 1/1 · 0/1 | 0/1 · 1/1 | 50.0% | 50.0% |"));
    }

    #[test]
    fn a_miss_is_explained_by_the_feature_that_tells_the_styles_apart() {
        // Rock and electronic differ here only in held tones (the last feature).
        let classes = vec!["rock".to_string(), "electronic".to_string()];
        let piece = |held: f64, wobble: f64| {
            let mut x = [0.5; NUM_FEATURES];
            x[0] = wobble;
            x[NUM_FEATURES - 1] = held;
            x
        };
        let train: Vec<(Vec<f64>, usize)> = (0..40)
            .map(|i| {
                let c = i % 2;
                (piece(if c == 0 { 0.1 } else { 0.6 } + 0.01 * (i % 5) as f64, (i as f64).sin()).to_vec(), c)
            })
            .collect();
        let model = Classifier::fit(classes, &train, Fit::default());
        let mut primed: Vec<(usize, usize, [f64; NUM_FEATURES])> =
            (0..6).map(|i| (0, 1, piece(0.55, (i as f64).cos()))).collect();
        primed.push((0, 0, piece(0.1, 0.0)));
        let text = why_missed(&model, &primed);
        let row = text.lines().find(|l| l.starts_with("| rock → electronic |")).expect(&text);
        assert!(row.starts_with("| rock → electronic | 6 | "), "{row}");
        assert!(row.split(" | ").nth(3).is_some_and(|c| c.starts_with("held tones +")), "{row}");
        assert!(row.contains("(0.55 against 0.10)"), "{row}");
        // Fewer misses than MIN_MISSES_EXPLAINED explain nothing.
        assert_eq!(why_missed(&model, &primed[3..]), "");
    }

    #[test]
    fn kept_pieces_come_back_in_the_order_they_were_made() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let parse =
            |extra: &[&str]| <Cli as clap::Parser>::try_parse_from(["style"].iter().chain(extra)).expect("parses").args;
        let dir = std::env::temp_dir().join(format!("cadenza-kept-{}", std::process::id()));
        let styles = vec!["jazz".to_string(), "rock".to_string()];
        for (seed, piece, named) in [(2, 0, "rock"), (2, 1, "jazz"), (3, 0, "rock"), (3, 1, "pop")] {
            let notes = (0..8)
                .map(|i| cadenza_core::Note {
                    pitch: 40 + seed as u8 * 10 + piece as u8,
                    velocity: 80,
                    start_s: i as f64 * 0.5,
                    end_s: i as f64 * 0.5 + 0.4,
                })
                .collect();
            let name = format!("{}{named}.mid", kept_prefix("rock", seed, piece));
            keep_piece(&dir, &name, &Performance::new(notes)).expect("kept");
        }
        let args = parse(&["--pieces", "2", "--seed", "2", "--seeds", "2"]);
        let kept = read_kept(&dir, &styles, &args).expect("read");
        assert_eq!(kept.len(), 1, "jazz kept nothing and is left out");
        let pitches: Vec<u8> = kept[0].1.iter().map(|p| p.notes[0].pitch).collect();
        assert_eq!((kept[0].0, pitches), (1, vec![60, 61, 70, 71]));
        // Settings other than the run's are refused, naming the folder.
        let e = read_kept(&dir, &styles, &parse(&["--pieces", "1", "--seed", "2", "--seeds", "2"]))
            .expect_err("too few pieces");
        assert!(e.to_string().contains("more than --pieces 1"), "{e}");
        let e = read_kept(&dir, &styles, &parse(&["--pieces", "2", "--seed", "2", "--seeds", "3"]))
            .expect_err("a seed too many");
        assert!(e.to_string().contains("no rock-seed4-00-improvised-named-*.mid"), "{e}");
        assert!(<Cli as clap::Parser>::try_parse_from(["style", "--kept", "a", "--keep", "b"]).is_err());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn seed_range_names_one_seed_or_the_span() {
        assert_eq!(seed_range(3, 1), "seed 3");
        assert_eq!(seed_range(1, 5), "seeds 1-5");
    }
}
