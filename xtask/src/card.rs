//! `cargo xtask card --style NAME`: the model card `models/NAME.md`, written
//! from what the run recorded (config, steps, time, validation), the data
//! manifest (files, hours, events, synthetic share, licences) and a
//! generation-speed measurement of the exported model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use cadenza_core::dataset::{read_manifest, CheckpointMeta, Provenance, Split, MANIFEST_FILE};
use cadenza_core::engine::{Engine, EngineOptions};
use cadenza_core::request::{GenerateRequest, GenerationSettings, Length};
use cadenza_core::sampling::Sampling;
use serde_json::Value;

use crate::env::repo_root;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The style: reads runs/STYLE and models/STYLE.onnx, writes models/STYLE.md.
    #[arg(long)]
    pub style: String,
    /// The run folder (default runs/STYLE).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Free text for the card's "Known limits" section, one item per flag.
    #[arg(long)]
    pub limit: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
struct MetricsRow {
    kind: String,
    step: usize,
    epoch: f64,
    tokens_per_s: Option<f64>,
}

/// The chain of runs from this one back to the root, newest first.
fn chain(run: &Path) -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    let mut dir = Some(run.to_path_buf());
    while let Some(d) = dir.take() {
        let Ok(text) = std::fs::read_to_string(d.join("run.json")) else { break };
        let Ok(v) = serde_json::from_str::<Value>(&text) else { break };
        dir = v.pointer("/parent/run_dir").and_then(Value::as_str).map(PathBuf::from);
        out.push((d, v));
        if out.len() > 8 {
            break;
        }
    }
    out
}

fn speed(model: &Path) -> Result<(f64, usize, &'static str)> {
    let mut engine =
        Engine::load(model, &EngineOptions { ort_library: crate::env::ort_library(), ..Default::default() })?;
    let provider = engine.info().provider;
    let req = GenerateRequest {
        settings: GenerationSettings {
            length: Length::Seconds(30.0),
            sampling: Sampling { seed: 1, ..Sampling::default() },
            ..Default::default()
        },
        ..GenerateRequest::default()
    };
    let t0 = Instant::now();
    let v = engine.generate_variations(&req, &mut |_| true)?;
    Ok((t0.elapsed().as_secs_f64(), v[0].tokens.len(), provider))
}

pub fn run(args: &Args) -> Result<()> {
    crate::setup::tool_env()?;
    let root = repo_root();
    let run = args.run.clone().map(|r| root.join(r)).unwrap_or_else(|| root.join("runs").join(&args.style));
    let best = run.join("best.json");
    let meta: CheckpointMeta = serde_json::from_str(
        &std::fs::read_to_string(&best).with_context(|| format!("{}: cannot read", best.display()))?,
    )
    .with_context(|| format!("{}: not a checkpoint sidecar", best.display()))?;
    let run_json: Value = serde_json::from_str(&std::fs::read_to_string(run.join("run.json"))?)?;
    let model = root.join("models").join(format!("{}.onnx", args.style));
    let model_mb =
        std::fs::metadata(&model).with_context(|| format!("{}: export it first", model.display()))?.len() as f64 / 1e6;

    // The run's metrics: last validation point, the best, steps and time.
    let mpath = run.join("metrics.csv");
    let mut rows: Vec<MetricsRow> = Vec::new();
    for r in csv::Reader::from_path(&mpath)?.deserialize() {
        rows.push(r.with_context(|| format!("{}: not a metrics file", mpath.display()))?);
    }
    let vals = crate::eval::transfer::validation_curve(&run)?;
    let first_val = vals.first();
    let best_val = vals.iter().min_by(|a, b| a.1.total_cmp(&b.1));
    let last = rows.last();
    let mut tok_s: Vec<f64> = rows.iter().filter(|r| r.kind == "step").filter_map(|r| r.tokens_per_s).collect();
    tok_s.sort_by(f64::total_cmp);
    let median_tok_s = tok_s.get(tok_s.len() / 2).copied().unwrap_or(0.0);
    let elapsed_s = meta.train.pointer("/state/elapsed_s").and_then(Value::as_f64).unwrap_or(0.0);
    let precision = run_json.get("precision").and_then(Value::as_str).unwrap_or("fp32");

    // The data, from the manifest the run trained on.
    let data_dir = run_json.get("data_dir").and_then(Value::as_str).map(|d| root.join(d));
    let mut data_md = String::new();
    if let Some(rows) = data_dir.as_ref().and_then(|d| read_manifest(&d.join(MANIFEST_FILE)).ok()) {
        let hours: f64 = rows.iter().map(|r| r.seconds).sum::<f64>() / 3600.0;
        // + 0.0: an empty float sum is -0.0, which would print as "-0%".
        let synth_h: f64 =
            rows.iter().filter(|r| r.provenance == Provenance::Synthetic).map(|r| r.seconds).sum::<f64>() / 3600.0
                + 0.0;
        let events: usize = rows.iter().map(|r| r.events).sum();
        let split = |s: Split| rows.iter().filter(|r| r.split == s).count();
        // Grouped by the package's statement; what a file says of itself is
        // counted, not repeated per file.
        let mut licences: BTreeMap<String, (usize, BTreeMap<String, usize>, usize)> = BTreeMap::new();
        for r in &rows {
            let (package, own) = crate::data::package_licence(&r.licence);
            let e = licences.entry(package.to_string()).or_default();
            e.0 += 1;
            *e.1.entry(r.source.clone()).or_default() += 1;
            e.2 += usize::from(own);
        }
        data_md.push_str(&format!(
            "- Folder `{}`, manifest SHA-256 `{}`\n- {} files ({} train / {} valid / {} test), {hours:.1} hours, {events} events\n- Synthetic (generated by a program: MMA renders, Band-in-a-Box accompaniments): {:.0}% of the hours\n- Licences as the packages state them:\n",
            data_dir.as_ref().map(|d| d.strip_prefix(&root).unwrap_or(d).display().to_string()).unwrap_or_default(),
            meta.manifest_hash,
            rows.len(),
            split(Split::Train),
            split(Split::Valid),
            split(Split::Test),
            100.0 * synth_h / hours.max(1e-9),
        ));
        let mut lic: Vec<_> = licences.into_iter().collect();
        lic.sort_by_key(|l| std::cmp::Reverse(l.1 .0));
        for (licence, (n, sources, own)) in lic {
            let src: Vec<String> = sources.into_iter().map(|(s, k)| format!("{s} ×{k}")).collect();
            let own = if own > 0 {
                format!("; {own} of them state their own terms too (the manifest's `licence` column has each)")
            } else {
                String::new()
            };
            data_md.push_str(&format!("  - {n} files: {licence} ({}){own}\n", src.join(", ")));
        }
    } else {
        data_md.push_str(&format!("- {}\n", meta.data_summary));
    }

    let lineage: Vec<String> = chain(&run)
        .iter()
        .rev()
        .map(|(d, v)| {
            format!(
                "{} (`{}`)",
                v.get("style").and_then(Value::as_str).unwrap_or("?"),
                d.strip_prefix(&root).unwrap_or(d).display()
            )
        })
        .collect();

    let (gen_s, gen_events, provider) = speed(&model)?;
    let cfg = meta.model;
    let mut md = format!("# Cadenza style: {}\n\n", args.style);
    md.push_str(&format!(
        "A Music Transformer with relative attention (`{}`), {} parameters, exported to `models/{}.onnx` ({model_mb:.1} MB, fp32 weights, ONNX graph with a KV cache). Written by `cargo xtask card --style {}`.\n\n",
        cadenza_core::model::ARCHITECTURE,
        cfg.num_params(),
        args.style,
        args.style
    ));
    md.push_str(&format!("## Lineage\n\n{}\n\n", lineage.join(" → ")));
    md.push_str(&format!("## Data\n\n{data_md}\n"));
    md.push_str(&format!(
        "## Model\n\n| layers | d_model | heads | d_ff | dropout | window (events) |\n|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} |\n\n",
        cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.max_seq_len
    ));
    let tc = meta.train.get("config").cloned().unwrap_or(Value::Null);
    let g = |k: &str| tc.get(k).map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    md.push_str(&format!(
        "## Training\n\n- {} optimizer steps ({:.1} epochs), batch {} × {} events, AdamW (weight decay {}), learning rate {} → {} ({} schedule, {} warm-up steps), gradient clipping {}, augmentation (transpose ±3, stretch ±5%): {}\n- Best checkpoint at step {} (epoch {}); the card's numbers are that checkpoint's\n- {:.1} hours of training on this project's CPU machine (2 cores, AMD EPYC with AVX512-BF16), {precision} matrix products with fp32 master weights; median {median_tok_s:.0} tokens/s\n\n",
        last.map_or(0, |r| r.step),
        last.map_or(0.0, |r| r.epoch),
        g("batch_size"),
        g("seq_len"),
        g("weight_decay"),
        g("lr"),
        g("min_lr"),
        g("schedule").trim_matches('"'),
        g("warmup_steps"),
        g("grad_clip"),
        g("augment"),
        meta.step,
        meta.epoch,
        elapsed_s / 3600.0,
    ));
    md.push_str(
        "## Validation (held-out files of the style)\n\n| | loss (nats/event) | next-event accuracy |\n|---|---|---|\n",
    );
    if let Some((step, l, a)) = first_val {
        md.push_str(&format!("| before training (step {step}) | {l:.3} | {:.1}% |\n", 100.0 * a));
    }
    if let Some((step, l, a)) = best_val {
        md.push_str(&format!("| best (step {step}) | {l:.3} | {:.1}% |\n", 100.0 * a));
    }
    md.push_str(&format!(
        "\n## Generation speed\n\n30 seconds of improvised music ({gen_events} events) in {gen_s:.2} s on ONNX Runtime {provider}, 1 stream, this 2-core machine ({:.2} ms per event).\n\n",
        gen_s * 1e3 / gen_events.max(1) as f64
    ));
    md.push_str("## Known limits\n\n");
    md.push_str("- Score-derived training files (music21 conversions, MMA renders) have notated, flat dynamics and exact timing; no file is a recorded performance (a few classical files are sequences with shaped dynamics and tempo), so velocities and rubato are less varied than a pianist's.\n");
    md.push_str("- Trained on a 2-core CPU for a short time against the study's GPU days: expect plausible local texture more than long-range form.\n");
    for l in &args.limit {
        md.push_str(&format!("- {l}\n"));
    }
    let path = root.join("models").join(format!("{}.md", args.style));
    cadenza_core::fsutil::write_atomic(&path, md.as_bytes())?;
    println!("card: wrote {}", path.display());
    Ok(())
}
