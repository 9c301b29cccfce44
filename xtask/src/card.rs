//! `cargo xtask card --style NAME`: the model card `models/NAME.md`, written
//! from what the run recorded (config, steps, time, validation), the data
//! manifest (files, hours, events, synthetic share, licences) and a
//! generation-speed measurement of the exported model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use cadenza_core::classifier::JUDGE_FILE;
use cadenza_core::dataset::{read_manifest, Provenance, Split, MANIFEST_FILE};
use cadenza_core::engine::{DefaultLead, Engine, EngineOptions, ModelInfo};
use cadenza_core::records::metrics::{read_metrics, RowKind, METRICS_FILE};
use cadenza_core::records::{self, CheckpointPaths, RunRecord, TrainMeta, BEST};
use cadenza_core::request::{GenerateRequest, GenerationSettings, Length};
use cadenza_core::sampling::ContrastAdvice;
use cadenza_core::sampling::{Sampling, Steering};
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
    /// The checkpoint shipped, when it is not the run's best (a later step the
    /// style classifier or the test split preferred); default: the run's best.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Free text for the card's "Known limits" section, one item per flag.
    #[arg(long)]
    pub limit: Vec<String>,
}

fn speed(engine: &mut Engine) -> Result<(f64, usize, &'static str)> {
    let provider = engine.info().provider;
    let req = GenerateRequest {
        settings: GenerationSettings {
            length: Length::Seconds(30.0),
            sampling: Sampling { seed: 1, ..Sampling::default() },
            // The full 30 s, timed: a model that ends its piece early would time less music.
            steering: Steering { allow_end: false, ..Steering::default() },
            ..Default::default()
        },
        ..GenerateRequest::default()
    };
    let t0 = Instant::now();
    let v = engine.generate_variations(&req, &mut |_| true)?;
    Ok((t0.elapsed().as_secs_f64(), v[0].tokens.len(), provider))
}

/// The card's paragraph on the style its model leans away from by default, if any.
fn leaning(info: &ModelInfo) -> Option<String> {
    info.contrast_advice.as_ref().map(|a| {
        format!(
            "## Leaning away\n\nBy default this style leans away from {} at {} (`Steering::contrast`: the plugin's \
             Lean away, `cadenza generate --contrast`; 0 turns it off; following a phrase, only as far as the phrase \
             is foreign to it, by ear alone where the style judge leads it, else by its cost or by ear: \
             `PrimerFit::lean`){}, from its checkpoint's sidecar: {}.\n\n",
            a.styles().collect::<Vec<_>>().join(" and "),
            a.strength,
            following_lean(a),
            a.measured
        )
    })
}

/// How the sidecar's advice leans while following a phrase, when not as when improvising.
fn following_lean(a: &ContrastAdvice) -> String {
    match (&a.following, a.following_strength) {
        (Some(_), Some(f)) => format!(
            "; following a phrase it leans from {} instead, at {f}",
            a.following_styles().collect::<Vec<_>>().join(" and ")
        ),
        (Some(_), None) => format!(
            "; following a phrase it leans from {} instead",
            a.following_styles().collect::<Vec<_>>().join(" and ")
        ),
        (None, Some(f)) => format!("; following a phrase it leans at {f}"),
        (None, None) => String::new(),
    }
}

/// The card's paragraph on whether this style leads a phrase foreign to it by default (`lead`):
/// by its sidecar's measurement or by the style judge beside its model.
fn leading(info: &ModelInfo, lead: DefaultLead) -> String {
    let setting = "(`Steering::style_lead`: the plugin's Style leads, `cadenza generate --style-lead off|model|on`)";
    let key = info.lead_key_advice.as_ref().map_or(String::new(), |a| {
        format!(
            "Leading, it holds the phrase's key {}× as hard as when it follows, since its own voice reads the \
             continuation without the phrase. From its checkpoint's sidecar: {}.\n\n",
            a.gain, a.measured
        )
    });
    let register = info.lead_register_advice.as_ref().map_or(String::new(), |a| {
        format!(
            "Leading, it spreads its parts {}× as wide about the phrase's register as when it follows, about the \
             same centre, so its bass and chords sit where its own music puts them. From its checkpoint's sidecar: \
             {}.\n\n",
            a.spread, a.measured
        )
    });
    let whether = match (lead, &info.lead_advice) {
        (DefaultLead::ByCost, Some(a)) => format!(
            "## Leading foreign phrases\n\nBy default this style leads a phrase foreign to it by cost, one that costs \
             the model well more than its own music does {setting}: the more foreign, the more of the manner is its \
             own, while key, register and beat follow the phrase. The style judge does not decide for it. From its \
             checkpoint's sidecar: {}.\n\n",
            a.measured
        ),
        (DefaultLead::ByJudge, _) => format!(
            "## Leading foreign phrases\n\nBy default this style leads a phrase that the style judge shipped with the \
             models (`models/{JUDGE_FILE}`, `cargo xtask judge`) names another style {setting}, the more of the manner \
             its own the more the judge doubts the phrase is {0}, while key, register and beat follow the phrase. A \
             phrase it names {0} is followed as it sounds, however much it costs the model: some of {0}'s own phrases \
             cost it as much as a nursery tune (`cargo xtask eval home`), so cost alone cannot decide. Style leads On \
             leads whatever is foreign by cost or by the judge; Off never leads.\n\n",
            info.style
        ),
        _ => format!(
            "## Leading foreign phrases\n\nBy default this style follows any phrase as it sounds; Style leads On \
             {setting} lets it lead a phrase foreign to it. Its checkpoint records no measurement that its own \
             style's phrases keep their following with the lead on.\n\n"
        ),
    };
    whether + &key + &register
}

pub fn run(args: &Args) -> Result<()> {
    crate::setup::tool_env()?;
    let root = repo_root();
    let run = args.run.clone().map(|r| root.join(r)).unwrap_or_else(|| root.join("runs").join(&args.style));
    let shipped = args.checkpoint.as_ref().map(|c| root.join(c)).unwrap_or_else(|| run.join(BEST));
    let meta = records::read_sidecar(&CheckpointPaths::new(&shipped).sidecar)?;
    let train: Option<TrainMeta> = records::train_meta(&meta);
    let record: RunRecord = records::read_run_record(&run)?;
    let model = root.join("models").join(format!("{}.onnx", args.style));
    let model_mb =
        std::fs::metadata(&model).with_context(|| format!("{}: export it first", model.display()))?.len() as f64 / 1e6;

    // The run's metrics: last validation point, the best, steps and time.
    let rows = read_metrics(&run.join(METRICS_FILE))?;
    let vals = crate::eval::transfer::validation_curve(&run)?;
    let first_val = vals.first();
    let best_val = vals.iter().min_by(|a, b| a.1.total_cmp(&b.1));
    let last = rows.last();
    let mut tok_s: Vec<f64> = rows.iter().filter(|r| r.kind == RowKind::Step).filter_map(|r| r.tokens_per_s).collect();
    tok_s.sort_by(f64::total_cmp);
    let median_tok_s = tok_s.get(tok_s.len() / 2).copied().unwrap_or(0.0);
    let elapsed_s = train.as_ref().map_or(0.0, |t| t.state.elapsed_s);
    let precision = record.precision.as_str().unwrap_or("fp32");

    // The data, from the manifest the run trained on.
    let data_dir = root.join(&record.data_dir);
    let mut data_md = String::new();
    if let Ok(rows) = read_manifest(&data_dir.join(MANIFEST_FILE)) {
        let hours: f64 = rows.iter().map(|r| r.seconds).sum::<f64>() / 3600.0;
        // + 0.0: an empty float sum is -0.0, which would print as "-0%".
        let synth_h: f64 =
            rows.iter().filter(|r| r.provenance == Provenance::Synthetic).map(|r| r.seconds).sum::<f64>() / 3600.0
                + 0.0;
        let events: usize = rows.iter().map(|r| r.events).sum();
        let split = |s: Split| rows.iter().filter(|r| r.split == s).count();
        // Grouped by the package's statement; what a file says of itself is
        // counted, not repeated per file.
        // A licence a package's copyright file gives per file (with its path
        // and holders) is grouped by the licence and the package.
        let mut licences: BTreeMap<String, (usize, BTreeMap<String, usize>, usize)> = BTreeMap::new();
        let mut per_file = 0;
        for r in &rows {
            let (package, own) = crate::data::package_licence(&r.licence);
            let key = crate::data::per_file_licence(package);
            per_file += usize::from(key.is_some());
            let e = licences.entry(key.unwrap_or_else(|| package.to_string())).or_default();
            e.0 += 1;
            *e.1.entry(r.source.clone()).or_default() += 1;
            e.2 += usize::from(own);
        }
        data_md.push_str(&format!(
            "- Folder `{}`, manifest SHA-256 `{}`{}\n- {} files ({} train / {} valid / {} test), {hours:.1} hours, {events} events\n- Synthetic (generated by a program: MMA renders, Band-in-a-Box accompaniments): {:.0}% of the hours\n- Licences as the packages state them:\n",
            data_dir.strip_prefix(&root).unwrap_or(&data_dir).display(),
            meta.manifest_hash,
            manifest_since(&meta.manifest_hash, &data_dir),
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
            let files = if n == 1 { "file" } else { "files" };
            data_md.push_str(&format!("  - {n} {files}: {licence} ({}){own}\n", src.join(", ")));
        }
        if per_file > 0 {
            data_md.push_str(&format!(
                "  - The copyright file's stanza for each of {per_file} files (its path and holders) is in the manifest's `licence` column\n"
            ));
        }
    } else {
        data_md.push_str(&format!("- {}\n", meta.data_summary));
    }

    let chain = records::run_chain(&run)?;
    // A chain whose first run started from a checkpoint outside any run here
    // (a shipped style, continued on a fresh machine) does not go back to scratch.
    let outside_parent = chain.last().and_then(|(_, r)| r.parent.clone());
    let mut lineage: Vec<String> = outside_parent
        .iter()
        .map(|p| {
            format!(
                "{} (the checkpoint `{}` as an earlier session shipped it; its own lineage is in that version's card)",
                p.style,
                p.checkpoint.strip_prefix(&root).unwrap_or(&p.checkpoint).display()
            )
        })
        .collect();
    lineage.extend(
        chain.iter().rev().map(|(d, r)| format!("{} (`{}`)", r.style, d.strip_prefix(&root).unwrap_or(d).display())),
    );

    let mut engine =
        Engine::load(&model, &EngineOptions { ort_library: crate::env::ort_library(), ..Default::default() })?;
    let (gen_s, gen_events, provider) = speed(&mut engine)?;
    let cfg = meta.model;
    let mut md = format!("# Cadenza style: {}\n\n", args.style);
    md.push_str(&format!(
        "A Music Transformer with relative attention (`{}`), {} parameters, exported to `models/{}.onnx` ({model_mb:.1} MB, {} weight products, ONNX graph with a KV cache). Git holds it as the float16 checkpoint `models/checkpoints/{}.safetensors`, from which setup makes the model. Written by `cargo xtask card --style {}`.\n\n",
        cadenza_core::model::ARCHITECTURE,
        cfg.num_params(),
        args.style,
        cadenza_core::export::model_precision(&model).unwrap_or_default().name(),
        args.style,
        args.style
    ));
    md.push_str(&format!("## Lineage\n\n{}\n\n", lineage.join(" → ")));
    md.push_str(&format!("## Data\n\n{data_md}\n"));
    md.push_str(&format!(
        "## Model\n\n| layers | d_model | heads | d_ff | dropout | window (events) |\n|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} |\n\n",
        cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.max_seq_len
    ));
    let tc = train.map_or(Value::Null, |t| t.config);
    let g = |k: &str| tc.get(k).map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    md.push_str(&format!(
        "## Training\n\n- {} optimizer steps ({:.1} epochs), batch {} × {} events, AdamW (weight decay {}), learning rate {} → {} ({} schedule, {} warm-up steps), gradient clipping {}, augmentation (transpose ±3, stretch ±5%): {}\n- {}\n- {} of training on a 2-core CPU, {precision} matrix products with fp32 master weights; median {median_tok_s:.0} tokens/s\n\n",
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
        shipped_line(args.checkpoint.is_some(), meta.step, meta.epoch, best_val.map(|b| b.0)),
        hours_or_minutes(elapsed_s),
    ));
    if let Some((steps, hours, runs)) = lineage_totals(&chain).filter(|t| t.2 > 1) {
        // Replace the blank line that ends the list with this item and a blank line.
        md.truncate(md.len() - 1);
        let what = if outside_parent.is_some() { "after that checkpoint" } else { "from scratch" };
        md.push_str(&format!(
            "- The whole lineage {what} ({runs} runs): {steps} optimizer steps, {hours:.1} hours of training\n\n"
        ));
    }
    md.push_str(
        "## Validation (held-out files of the style)\n\n| | loss (nats/event) | next-event accuracy |\n|---|---|---|\n",
    );
    if let Some((step, l, a)) = first_val {
        md.push_str(&format!("| before training (step {step}) | {l:.3} | {:.1}% |\n", 100.0 * a));
    }
    if let Some((step, l, a)) = best_val {
        md.push_str(&format!("| best (step {step}) | {l:.3} | {:.1}% |\n", 100.0 * a));
    }
    if let Some((step, l, a)) = vals.iter().find(|v| args.checkpoint.is_some() && v.0 == meta.step) {
        md.push_str(&format!("| shipped (step {step}) | {l:.3} | {:.1}% |\n", 100.0 * a));
    }
    md.push_str(&format!(
        "\n## Generation speed\n\n30 seconds of improvised music ({gen_events} events) in {gen_s:.2} s on ONNX Runtime {provider}, 1 stream, on the machine that wrote this card ({}; {:.2} ms per event).\n\n",
        cpu_summary(),
        gen_s * 1e3 / gen_events.max(1) as f64
    ));
    md.push_str(&leaning(engine.info()).unwrap_or_default());
    md.push_str(&leading(engine.info(), engine.default_lead()));
    md.push_str("## Known limits\n\n");
    md.push_str(&known_limits(&args.limit));
    let path = root.join("models").join(format!("{}.md", args.style));
    cadenza_core::fsutil::write_atomic(&path, md.as_bytes())?;
    println!("card: wrote {}", path.display());
    Ok(())
}

/// What the card says when the folder's manifest is no longer the one the run
/// trained on (a later `cargo xtask data` rewrote a licence or a comment):
/// the rows below are today's.
fn manifest_since(trained: &str, data_dir: &Path) -> String {
    match std::fs::read(data_dir.join(MANIFEST_FILE)).map(|b| cadenza_core::dataset::sha256_hex(&b)) {
        Ok(now) if now != trained => format!(
            " as trained; the folder's manifest is now `{}` (rewritten since by `cargo xtask data`; the counts below are from it)",
            &now[..12]
        ),
        _ => String::new(),
    }
}

/// "1.3 hours", or "3 minutes" for a run shorter than an hour.
fn hours_or_minutes(seconds: f64) -> String {
    if seconds < 3600.0 {
        format!("{:.0} minutes", (seconds / 60.0).max(1.0))
    } else {
        format!("{:.1} hours", seconds / 3600.0)
    }
}

/// The training list's line on the checkpoint the card describes.
fn shipped_line(chosen: bool, step: usize, epoch: usize, best_step: Option<usize>) -> String {
    match (chosen, best_step) {
        (true, Some(best)) if best != step => format!(
            "Shipped checkpoint at step {step} (epoch {epoch}), not the best validation step {best}: see the known limits; the card's numbers are the shipped checkpoint's"
        ),
        _ => format!("Best checkpoint at step {step} (epoch {epoch}); the card's numbers are that checkpoint's"),
    }
}

/// What every card says of the data and the compute, before its own limits.
const GENERIC_LIMITS: [&str; 2] = [
    "Score-derived training files (music21 conversions, MMA renders) have notated, flat dynamics and exact timing; no file is a recorded performance (a few classical files are sequences with shaped dynamics and tempo), so velocities and rubato are less varied than a pianist's.",
    "Trained on a 2-core CPU for a short time against the study's GPU days: expect plausible local texture more than long-range form.",
];

/// The "Known limits" items: [`GENERIC_LIMITS`], then each `--limit` once
/// (one repeating a generic item, as a card's earlier limits passed back in
/// may, is left out).
fn known_limits(own: &[String]) -> String {
    let mut items: Vec<&str> = GENERIC_LIMITS.to_vec();
    for l in own {
        let l = l.trim().trim_start_matches("- ").trim();
        if !l.is_empty() && !items.contains(&l) {
            items.push(l);
        }
    }
    items.iter().map(|l| format!("- {l}\n")).collect()
}

/// This machine's CPU in a few words, from /proc/cpuinfo: cores, model and
/// its widest vector extension (speed differs about threefold between AVX2
/// and AVX-512 machines of this project); "an unknown CPU" elsewhere.
fn cpu_summary() -> String {
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else { return "an unknown CPU".into() };
    let field = |name: &str| {
        info.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    let cores = info.lines().filter(|l| l.starts_with("processor")).count();
    let flags = field("flags").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let vector = if has("avx512_bf16") {
        "AVX-512 with BF16"
    } else if has("avx512f") {
        "AVX-512"
    } else if has("avx2") {
        "AVX2, no AVX-512"
    } else {
        "no AVX2"
    };
    format!("{cores} cores, {}, {vector}", field("model name").unwrap_or_else(|| "unnamed CPU".into()))
}

/// Optimizer steps and hours of training over a run's chain, as [`records::run_chain`]
/// gives it (each run's last metrics row; a run continued from a checkpoint counts on
/// from that checkpoint's step and time), with the number of runs; `None` when a run
/// of the chain has no metrics here.
fn lineage_totals(chain: &[(PathBuf, RunRecord)]) -> Option<(usize, f64, usize)> {
    let (mut steps, mut seconds) = (0usize, 0.0f64);
    for (dir, _) in chain {
        let rows = read_metrics(&dir.join(METRICS_FILE)).ok()?;
        let last = rows.last()?;
        steps += last.step;
        seconds += last.elapsed_s;
    }
    Some((steps, seconds / 3600.0, chain.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_runs_are_timed_in_minutes() {
        assert_eq!(hours_or_minutes(175.0), "3 minutes");
        assert_eq!(hours_or_minutes(4680.0), "1.3 hours");
    }

    #[test]
    fn a_shipped_step_other_than_the_best_is_named() {
        assert!(shipped_line(false, 825, 13, Some(825)).starts_with("Best checkpoint at step 825 (epoch 13)"));
        let line = shipped_line(true, 600, 9, Some(124));
        assert!(
            line.starts_with("Shipped checkpoint at step 600 (epoch 9), not the best validation step 124"),
            "{line}"
        );
        assert!(shipped_line(true, 124, 2, Some(124)).starts_with("Best checkpoint"));
    }

    #[test]
    fn a_limit_is_listed_once() {
        let own = vec![GENERIC_LIMITS[1].to_string(), "Trained on rock.".into(), "- Trained on rock.".into()];
        let md = known_limits(&own);
        assert_eq!(md.lines().count(), 3, "{md}");
        assert!(md.ends_with("- Trained on rock.\n"), "{md}");
        assert_eq!(md.matches("2-core CPU").count(), 1, "{md}");
    }
}
