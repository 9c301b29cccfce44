//! `cargo xtask eval continuation`: does a style continue what was played?
//! Real held-out pieces (each style's test split) are cut at 10 s from their
//! first note; the shipped model continues the first 10 s for 20 s, and the
//! continuation is scored against the primer beside the piece's own next
//! 20 s (the truth) and the next 20 s of every other piece (the floor). The
//! measures are those of `shared/continuation-metrics.md`; grounding places a
//! style between floor (0) and truth (1). Cross-style cases continue
//! classical and folk primers as jazz and pop. A sweep over follow strengths
//! plots grounding and the style classifier's accuracy against strength.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cadenza_core::analysis::{
    intervals, motifs, pearson, pitch_class_histogram, KeyEstimate, Meter, PrimerAnalysis, MAX_NOTE_WEIGHT_S,
    MOTIF_INTERVALS,
};
use cadenza_core::dataset::Split;
use cadenza_core::engine::Engine;
use cadenza_core::request::{GenerateRequest, GenerationSettings, Length};
use cadenza_core::sampling::{Sampling, Steering, DEFAULT_FOLLOW};
use cadenza_core::{midi, Note, Performance};
use plotters::prelude::*;

use super::style::{shipped_styles, style_classifier};
use crate::env::repo_root;
use cadenza_core::classifier::Classifier;
use cadenza_core::features::{excerpt, features};

/// The primer: this much music from the piece's first note.
pub const PRIMER_S: f64 = 10.0;
/// The continuation, and the truth it is compared with.
pub const CONTINUATION_S: f64 = 20.0;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub sources: super::Sources,
    /// Test pieces per style, at most (the first by file hash among those at least 30 s long).
    #[arg(long, default_value_t = 30)]
    pub pieces: usize,
    /// Continuations per piece (variations of one seed: independent random streams).
    #[arg(long, default_value_t = 2)]
    pub seeds: usize,
    /// Seed of the generated continuations.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Follow strength of the main table.
    #[arg(long, default_value_t = DEFAULT_FOLLOW)]
    pub strength: f32,
    /// How much the style's own voice leads (0 = the primer's context alone; see `Steering::own_voice`).
    #[arg(long, default_value_t = Steering::default().own_voice)]
    pub own_voice: f32,
    #[command(flatten)]
    pub lead: super::Lead,
    #[command(flatten)]
    pub lean: super::Lean,
    /// Strengths of the sweep plotted against grounding and style accuracy (empty: no sweep).
    #[arg(long, value_delimiter = ',', default_value = "0,0.25,0.5,0.75,1")]
    pub strengths: Vec<f32>,
    /// Only these styles' models (default: every shipped style).
    #[arg(long, value_delimiter = ',')]
    pub styles: Vec<String>,
    /// Only each style continuing its own primers (no classical and folk primers continued as jazz and pop).
    #[arg(long)]
    pub no_cross: bool,
    /// Where to write continuation.md and the plot.
    #[arg(long, default_value = "models/eval")]
    pub out: PathBuf,
}

/// One held-out piece, cut.
struct Piece {
    /// Manifest path, for the report.
    name: String,
    primer: Performance,
    analysis: PrimerAnalysis,
    /// The next [`CONTINUATION_S`] of the piece, from 0 at the cut.
    truth: Performance,
    /// The file's metre on the primer's timeline (its first note at 0).
    meter: Meter,
    /// Whether the file keeps one tempo through the primer and the truth.
    steady: bool,
}

/// The measures of `shared/continuation-metrics.md` for one continuation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    pub key: f64,
    pub in_scale: f64,
    pub register_gap: f64,
    pub density: f64,
    pub motif: f64,
    /// Only for pieces with a steady tempo.
    pub on_beat: Option<f64>,
    /// On the 16ths or the 8th-note triplets (swing is in time, off the 16ths); steady tempo only.
    pub in_time: Option<f64>,
}

/// How many measures a continuation gets ([`MEASURES`]).
const NUM_MEASURES: usize = 7;

/// The measures in report order: (name, lower is better).
const MEASURES: [(&str, bool); NUM_MEASURES] = [
    ("key (pitch-class r)", false),
    ("in scale", false),
    ("register gap (st)", true),
    ("density |log ratio|", true),
    ("motif reuse", false),
    ("on the beat", false),
    ("in time (triplets too)", false),
];

impl Scores {
    fn values(&self) -> [Option<f64>; NUM_MEASURES] {
        [
            Some(self.key),
            Some(self.in_scale),
            Some(self.register_gap),
            Some(self.density),
            Some(self.motif),
            self.on_beat,
            self.in_time,
        ]
    }
}

/// Score `cont` (time 0 at the cut) against `piece`'s primer. `None` for a
/// continuation without notes (it has no register or density to compare).
pub fn score(
    primer: &Performance,
    key: Option<&KeyEstimate>,
    cont: &Performance,
    meter: Option<&Meter>,
) -> Option<Scores> {
    if cont.notes.is_empty() || primer.notes.is_empty() {
        return None;
    }
    let (hp, hc) = (pitch_class_histogram(&primer.notes), pitch_class_histogram(&cont.notes));
    let weight = |n: &Note| n.duration_s().clamp(0.0, MAX_NOTE_WEIGHT_S);
    let total: f64 = cont.notes.iter().map(weight).sum();
    let in_scale = match key {
        Some(k) if total > 0.0 => {
            cont.notes.iter().filter(|n| k.scale_contains(n.pitch % 12)).map(weight).sum::<f64>() / total
        }
        _ => 0.0,
    };
    let mean_pitch = |p: &Performance| p.notes.iter().map(|n| f64::from(n.pitch)).sum::<f64>() / p.notes.len() as f64;
    let rate = |p: &Performance, span_s: f64| p.notes.len() as f64 / span_s;
    let primer_grams = motifs(&primer.notes);
    let steps = intervals(&cont.notes);
    let grams = steps.windows(MOTIF_INTERVALS);
    let reused = grams.clone().filter(|g| primer_grams.binary_search_by(|m| m[..].cmp(g)).is_ok()).count();
    let motif = if grams.len() == 0 { 0.0 } else { reused as f64 / grams.len() as f64 };
    let onsets = || cont.notes.iter().map(|n| PRIMER_S + n.start_s);
    Some(Scores {
        key: pearson(&hp, &hc),
        in_scale,
        register_gap: (mean_pitch(cont) - mean_pitch(primer)).abs(),
        density: (rate(cont, CONTINUATION_S) / rate(primer, PRIMER_S)).ln().abs(),
        motif,
        on_beat: meter.map(|m| m.on_grid_share(onsets())),
        in_time: meter.map(|m| m.in_time_share(onsets())),
    })
}

/// Means of each measure over the scores that have it.
#[derive(Debug, Clone, Copy, Default)]
struct Mean {
    sum: [f64; NUM_MEASURES],
    count: [usize; NUM_MEASURES],
}

impl Mean {
    fn add(&mut self, s: &Scores) {
        for (i, v) in s.values().iter().enumerate() {
            if let Some(v) = v {
                self.sum[i] += v;
                self.count[i] += 1;
            }
        }
    }

    fn get(&self, i: usize) -> Option<f64> {
        (self.count[i] > 0).then(|| self.sum[i] / self.count[i] as f64)
    }
}

/// The cut of one real piece, or why it cannot be used.
fn cut(path: &Path, name: &str) -> Result<Option<Piece>> {
    let (perf, tempo) = midi::read_file_timed(path, &midi::ReadOptions::default())?;
    let Some(t0) = perf.notes.first().map(|n| n.start_s) else { return Ok(None) };
    let (cut_s, end_s) = (t0 + PRIMER_S, t0 + PRIMER_S + CONTINUATION_S);
    if perf.duration_s() < end_s {
        return Ok(None);
    }
    let primer = excerpt(&perf, t0, cut_s);
    let truth = excerpt(&perf, cut_s, end_s);
    if primer.notes.len() < 4 || truth.notes.is_empty() {
        return Ok(None);
    }
    let meter = Meter { bar_start_s: -t0, ..tempo.meter() };
    let Some(analysis) = PrimerAnalysis::new(&primer, Some(PRIMER_S), Some(&meter)) else { return Ok(None) };
    Ok(Some(Piece { name: name.to_string(), primer, analysis, truth, meter, steady: tempo.steady_until(end_s) }))
}

/// Up to `max` usable test pieces of a style, the first by file hash.
fn test_pieces(data: &Path, style: &str, max: usize) -> Result<Vec<Piece>> {
    let dir = data.join(style);
    let mut out = Vec::new();
    for r in super::split_rows(&dir, Split::Test)? {
        if out.len() >= max {
            break;
        }
        match cut(&dir.join(&r.path), &r.path.display().to_string()) {
            Ok(Some(p)) => out.push(p),
            Ok(None) => {}
            Err(e) => eprintln!("eval continuation: skipping {e:#}"),
        }
    }
    Ok(out)
}

/// One row of the table: a model continuing one style's primers.
struct Case {
    model: String,
    primers: String,
    /// Index of the model's style in the classifier's classes.
    class: usize,
}

/// What one case scored at one strength.
struct Outcome {
    generated: Mean,
    truth: Mean,
    floor: Mean,
    pieces: usize,
    steady: usize,
    empty: usize,
    /// Continuations the classifier named as the model's style, of all.
    style_right: usize,
    style_all: usize,
    seconds: f64,
    /// What the primers cost the model (nats per event) and how foreign it found them, per piece.
    primer_cost: Mean1,
    foreignness: Mean1,
    /// Primers the style led.
    led: usize,
}

/// A running mean of one number.
#[derive(Default)]
struct Mean1 {
    sum: f64,
    n: usize,
}

impl Mean1 {
    fn add(&mut self, v: f64) {
        self.sum += v;
        self.n += 1;
    }

    fn get(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

impl Outcome {
    fn grounding(&self, i: usize) -> Option<f64> {
        let (g, t, f) = (self.generated.get(i)?, self.truth.get(i)?, self.floor.get(i)?);
        ((t - f).abs() > 1e-9).then(|| (g - f) / (t - f))
    }
}

fn run_case(
    engine: &mut Engine,
    pieces: &[Piece],
    case: &Case,
    classifier: &Classifier,
    args: &Args,
    strength: f32,
    contrast: f32,
) -> Result<Outcome> {
    let t0 = std::time::Instant::now();
    let mut o = Outcome {
        generated: Mean::default(),
        truth: Mean::default(),
        floor: Mean::default(),
        pieces: pieces.len(),
        steady: pieces.iter().filter(|p| p.steady).count(),
        empty: 0,
        style_right: 0,
        style_all: 0,
        seconds: 0.0,
        primer_cost: Mean1::default(),
        foreignness: Mean1::default(),
        led: 0,
    };
    for (i, p) in pieces.iter().enumerate() {
        let meter = p.steady.then_some(&p.meter);
        let key = p.analysis.key.as_ref();
        if let Some(s) = score(&p.primer, key, &p.truth, meter) {
            o.truth.add(&s);
        }
        let mut floor = Mean::default();
        for (j, other) in pieces.iter().enumerate() {
            if j != i {
                if let Some(s) = score(&p.primer, key, &other.truth, meter) {
                    floor.add(&s);
                }
            }
        }
        // Each primer's floor counts once, like its truth.
        if let Some(mean) = mean_scores(&floor) {
            o.floor.add(&mean);
        }
        let req = GenerateRequest {
            primer: Some(p.primer.clone()),
            primer_end_s: Some(PRIMER_S),
            meter: Some(p.meter),
            settings: GenerationSettings {
                length: Length::Seconds(CONTINUATION_S),
                variations: args.seeds,
                sampling: Sampling { seed: args.seed, ..Sampling::default() },
                steering: Steering {
                    allow_end: false,
                    follow: strength,
                    own_voice: args.own_voice,
                    style_lead: args.lead.style_lead,
                    contrast,
                    ..Steering::default()
                },
            },
        };
        let conts = engine.generate(&req, &mut |_| true).with_context(|| format!("{}: generation failed", p.name))?;
        if let Some(fit) = engine.primer_fit() {
            o.primer_cost.add(fit.nats_per_event);
            o.foreignness.add(f64::from(fit.foreignness));
            o.led += usize::from(fit.led);
        }
        let mut per_piece = Mean::default();
        for c in &conts {
            o.style_all += 1;
            if classifier.predict(&features(c)) == case.class {
                o.style_right += 1;
            }
            match score(&p.primer, key, c, meter) {
                Some(s) => per_piece.add(&s),
                None => o.empty += 1,
            }
        }
        if let Some(mean) = mean_scores(&per_piece) {
            o.generated.add(&mean);
        }
    }
    o.seconds = t0.elapsed().as_secs_f64();
    Ok(o)
}

/// A [`Mean`] back as one [`Scores`]; `None` when it holds nothing.
fn mean_scores(m: &Mean) -> Option<Scores> {
    Some(Scores {
        key: m.get(0)?,
        in_scale: m.get(1)?,
        register_gap: m.get(2)?,
        density: m.get(3)?,
        motif: m.get(4)?,
        on_beat: m.get(5),
        in_time: m.get(6),
    })
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.2}"))
}

pub fn run(args: &Args) -> Result<()> {
    if !(0.0..=1.0).contains(&args.strength) || args.strengths.iter().any(|s| !(0.0..=1.0).contains(s)) {
        bail!("follow strengths must lie in 0..=1");
    }
    if args.seeds == 0 || args.seeds > cadenza_core::request::MAX_VARIATIONS {
        bail!("--seeds {}: ask for 1 to {}", args.seeds, cadenza_core::request::MAX_VARIATIONS);
    }
    let root = repo_root();
    let data = root.join(&args.sources.data);
    let out = root.join(&args.out);
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    crate::setup::tool_env()?;
    let (classifier, _) = style_classifier(&data, 400)?;
    let classes = classifier.classes.clone();
    let styles: Vec<&str> = shipped_styles()
        .into_iter()
        .filter(|s| classes.iter().any(|c| c == s))
        .filter(|s| args.styles.is_empty() || args.styles.iter().any(|a| a == s))
        .collect();
    if styles.is_empty() {
        bail!("no shipped style has test data in {}; run `cargo xtask data` first", data.display());
    }
    let mut pieces: Vec<(String, Vec<Piece>)> = Vec::new();
    for s in &styles {
        let p = test_pieces(&data, s, args.pieces)?;
        println!("eval continuation: {s}: {} test pieces of at least {:.0} s", p.len(), PRIMER_S + CONTINUATION_S);
        pieces.push((s.to_string(), p));
    }
    let mut cases: Vec<Case> = Vec::new();
    let class_of = |s: &str| classes.iter().position(|c| c == s).unwrap_or(0);
    for s in &styles {
        cases.push(Case { model: s.to_string(), primers: s.to_string(), class: class_of(s) });
    }
    let cross = if args.no_cross { &[][..] } else { &["jazz", "pop"][..] };
    for model in cross.iter().copied().filter(|m| styles.contains(m)) {
        for primers in ["classical", "folk"].into_iter().filter(|p| styles.contains(p)) {
            cases.push(Case { model: model.into(), primers: primers.into(), class: class_of(model) });
        }
    }
    let mut strengths = args.strengths.clone();
    if !strengths.contains(&args.strength) {
        strengths.push(args.strength);
    }
    strengths.sort_by(|a, b| a.total_cmp(b));
    // (strength, case index, outcome)
    let mut results: Vec<(f32, usize, Outcome)> = Vec::new();
    let mut leaning: Vec<String> = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        let model = root.join(&args.sources.models).join(format!("{}.onnx", case.model));
        let (mut engine, contrast, leans) = args.lean.engine(&model, &case.model, &args.lead)?;
        leaning.extend(leans.filter(|l| !leaning.contains(l)));
        let set = &pieces.iter().find(|(s, _)| *s == case.primers).expect("pieces of every style").1;
        for &strength in &strengths {
            let o = run_case(&mut engine, set, case, &classifier, args, strength, contrast)?;
            println!(
                "eval continuation: {} continuing {} at follow {strength:.2}: key {} register {} density {} motif {} \
                 beat {} in time {} style {:.0}%, primer cost {} foreign {} ({:.0} s)",
                case.model,
                case.primers,
                fmt(o.grounding(0)),
                fmt(o.generated.get(2)),
                fmt(o.generated.get(3)),
                fmt(o.generated.get(4)),
                fmt(o.grounding(5)),
                fmt(o.grounding(6)),
                100.0 * o.style_right as f64 / o.style_all.max(1) as f64,
                fmt(o.primer_cost.get()),
                fmt(o.foreignness.get()),
                o.seconds
            );
            results.push((strength, ci, o));
        }
    }
    let report = report(args, &cases, &results, &leaning);
    let md = out.join("continuation.md");
    cadenza_core::fsutil::write_atomic(&md, report.as_bytes())?;
    let plot = out.join("continuation-follow.png");
    plot_sweep(&cases, &results, &plot)?;
    println!("eval continuation: wrote {} and {}", md.display(), plot.display());
    Ok(())
}

fn report(args: &Args, cases: &[Case], results: &[(f32, usize, Outcome)], leaning: &[String]) -> String {
    let mut r = format!(
        "# Does a style continue what was played?\n\nGenerated by `cargo xtask eval continuation --pieces {} --seeds {} \
         --seed {} --own-voice {}{}`. Each held-out piece (test split, at least {:.0} s) is cut {PRIMER_S:.0} s after its first note; \
         the model continues the primer for {CONTINUATION_S:.0} s ({} continuations per piece, the file's tempo and \
         bars given as the metre). Measures as in `shared/continuation-metrics.md`; **truth** is the piece's own next \
         {CONTINUATION_S:.0} s, **floor** the next {CONTINUATION_S:.0} s of every other piece of the set, both scored \
         against the same primer. Grounding = (generated − floor) / (truth − floor): 0 ignores the primer, 1 follows \
         it as the piece itself does. \"On the beat\" counts only pieces whose file keeps one tempo; \"in time\" counts the 8th-note \
         triplets as well as the 16ths, so swung 8ths on the primer's beat are in time though off its 16ths.\n\n",
        args.pieces,
        args.seeds,
        args.seed,
        args.own_voice,
        args.lead.flags(),
        PRIMER_S + CONTINUATION_S,
        args.seeds
    );
    if !leaning.is_empty() {
        r.push_str(&format!(
            "Styles leaning away from a contrast model (`Steering::contrast`): {}.\n\n",
            leaning.join("; ")
        ));
    }
    r.push_str(&format!("## At follow strength {:.2}\n\n", args.strength));
    r.push_str(
        "| model | primers | pieces (steady) | key r: gen / truth / floor (grounding) | in scale | register gap \
         (st) | density \\|log ratio\\| | motif reuse | on the beat (grounding) | in time, triplets too (grounding) | style named | \
         primer cost (foreign) |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (_, ci, o) in results.iter().filter(|(s, _, _)| *s == args.strength) {
        let c = &cases[*ci];
        let trio =
            |i: usize| format!("{} / {} / {}", fmt(o.generated.get(i)), fmt(o.truth.get(i)), fmt(o.floor.get(i)));
        r.push_str(&format!(
            "| {} | {} | {} ({}) | {} ({}) | {} | {} | {} | {} | {} ({}) | {} ({}) | {:.1}% | {} ({}; led {} of {}) |\n",
            c.model,
            c.primers,
            o.pieces,
            o.steady,
            trio(0),
            fmt(o.grounding(0)),
            trio(1),
            trio(2),
            trio(3),
            trio(4),
            trio(5),
            fmt(o.grounding(5)),
            trio(6),
            fmt(o.grounding(6)),
            100.0 * o.style_right as f64 / o.style_all.max(1) as f64,
            fmt(o.primer_cost.get()),
            fmt(o.foreignness.get()),
            o.led,
            o.pieces
        ));
    }
    r.push_str(
        "\nEach cell: generated / truth / floor. Primer cost: what the primers cost the model, nats per event \
         (its own music's cost is its validation loss, on its card); foreign: how far above that they lie, 0 \
         (its own style) to 1 (`Steering::style_lead`; classical, folk and electronic lead by cost by default, \
         jazz, pop and rock where the style judge names the primer another style); led: the primers \
         the style led.\n\n## Follow strength against grounding\n\n",
    );
    r.push_str("| model | primers | strength |");
    for (name, _) in MEASURES {
        r.push_str(&format!(" {} |", name.replace('|', "\\|")));
    }
    r.push_str(" style named | empty |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (strength, ci, o) in results {
        let c = &cases[*ci];
        r.push_str(&format!("| {} | {} | {strength:.2} |", c.model, c.primers));
        for (i, (_, lower_better)) in MEASURES.iter().enumerate() {
            // Register and density are reported as they are (their targets are absolute); the rest as grounding.
            let v = if *lower_better || i == 4 { o.generated.get(i) } else { o.grounding(i) };
            r.push_str(&format!(" {} |", fmt(v)));
        }
        r.push_str(&format!(" {:.1}% | {} |\n", 100.0 * o.style_right as f64 / o.style_all.max(1) as f64, o.empty));
    }
    r.push_str(
        "\nKey, in-scale, on-the-beat and in-time columns are grounding; register gap, density and motif reuse are the \
         generated values.\n\n![follow strength](continuation-follow.png)\n",
    );
    r
}

/// One plotted measure of an outcome.
type Measure = dyn Fn(&Outcome) -> Option<f64>;

/// Grounding (key, on the beat) and style accuracy of the same-style cases against strength.
fn plot_sweep(cases: &[Case], results: &[(f32, usize, Outcome)], path: &Path) -> Result<()> {
    let tmp = cadenza_core::fsutil::temp_path(path).with_extension("png");
    {
        let root = BitMapBackend::new(&tmp, (1500, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((1, 3));
        let palette = [RGBColor(70, 110, 180), RGBColor(230, 140, 40), RGBColor(60, 160, 90), RGBColor(190, 60, 60)];
        let series: [(&str, &Measure); 3] = [
            ("key grounding", &|o| o.grounding(0)),
            ("on-the-beat grounding", &|o| o.grounding(5)),
            ("style named (%)", &|o| Some(100.0 * o.style_right as f64 / o.style_all.max(1) as f64)),
        ];
        for (panel, (title, value)) in panels.iter().zip(series) {
            let plotted = |ci: &usize| cases[*ci].model == cases[*ci].primers;
            let points: Vec<f64> =
                results.iter().filter(|(_, ci, _)| plotted(ci)).filter_map(|(_, _, o)| value(o)).collect();
            let lo = points.iter().copied().fold(0.0f64, f64::min);
            let hi = points.iter().copied().fold(1.0f64, f64::max) * 1.05;
            let mut chart = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(48)
                .build_cartesian_2d(0.0f64..1.0f64, lo..hi)?;
            chart.configure_mesh().x_desc("follow strength").draw()?;
            for (ci, c) in cases.iter().enumerate().filter(|(_, c)| c.model == c.primers) {
                let colour = palette[ci % palette.len()];
                let line: Vec<(f64, f64)> = results
                    .iter()
                    .filter(|(_, i, _)| *i == ci)
                    .filter_map(|(s, _, o)| value(o).map(|v| (f64::from(*s), v)))
                    .collect();
                chart
                    .draw_series(LineSeries::new(line, colour.stroke_width(3)))?
                    .label(c.model.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3)));
            }
            chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        }
        root.present()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(pitch: u8, start_s: f64) -> Note {
        Note { pitch, velocity: 80, start_s, end_s: start_s + 0.4 }
    }

    fn line(pitches: &[u8], step_s: f64) -> Performance {
        Performance::new(pitches.iter().enumerate().map(|(i, &p)| note(p, i as f64 * step_s)).collect())
    }

    #[test]
    fn a_continuation_that_repeats_the_primer_scores_like_it() {
        let tune = [60u8, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72, 67, 64, 60, 60, 62, 64, 65, 67];
        let primer = line(&tune, PRIMER_S / tune.len() as f64);
        let key = PrimerAnalysis::new(&primer, Some(PRIMER_S), None).and_then(|a| a.key);
        // The same tune at the same pace over twice the time: twice the notes.
        let twice: Vec<u8> = tune.iter().chain(tune.iter()).copied().collect();
        let cont = line(&twice, PRIMER_S / tune.len() as f64);
        let meter = Meter::new(120.0);
        let s = score(&primer, key.as_ref(), &cont, Some(&meter)).expect("notes");
        assert!((s.key - 1.0).abs() < 1e-9, "{}", s.key);
        assert_eq!(s.in_scale, 1.0);
        assert!(s.register_gap < 1e-9);
        assert!(s.density < 1e-9, "{}", s.density);
        // Every figure but the two that straddle the repeat is the primer's.
        assert!(s.motif > 0.8, "{}", s.motif);
        assert_eq!(s.on_beat, Some(1.0), "0.5 s apart at 120 BPM: every onset on a beat");
        assert_eq!(s.in_time, Some(1.0));

        // An octave up, a semitone off, four times denser: every measure notices.
        let shifted: Vec<u8> = twice.iter().map(|p| p + 13).collect();
        let busy = line(&shifted.repeat(4), PRIMER_S / tune.len() as f64 / 4.0);
        let s = score(&primer, key.as_ref(), &busy, Some(&meter)).expect("notes");
        assert!(s.key < 0.5 && s.in_scale < 0.7, "{s:?}");
        assert!((s.register_gap - 13.0).abs() < 1e-9);
        assert!((s.density - 2f64.ln() * 2.0).abs() < 1e-9, "{}", s.density);
        assert!(score(&primer, key.as_ref(), &Performance::default(), None).is_none());
    }

    #[test]
    fn grounding_places_between_floor_and_truth() {
        let mut o = Outcome {
            generated: Mean::default(),
            truth: Mean::default(),
            floor: Mean::default(),
            pieces: 1,
            steady: 0,
            empty: 0,
            style_right: 0,
            style_all: 0,
            seconds: 0.0,
            primer_cost: Mean1::default(),
            foreignness: Mean1::default(),
            led: 0,
        };
        let at = |key: f64| Scores { key, ..Scores::default() };
        o.generated.add(&at(0.6));
        o.truth.add(&at(0.9));
        o.floor.add(&at(0.4));
        assert!((o.grounding(0).expect("defined") - 0.4).abs() < 1e-9);
        assert_eq!(o.grounding(5), None, "no steady pieces, no beat grounding");
    }
}
