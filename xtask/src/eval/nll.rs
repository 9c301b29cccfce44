//! `cargo xtask eval nll`: the validation loss of exported models, through
//! the engine the plugin runs (ONNX Runtime, at the model's precision), on a data folder's
//! validation split cut into the trainer's windows
//! ([`cadenza_core::corpus::validation_windows`]). It needs no checkpoint, so
//! a model that shipped only as `.onnx` can be measured on a split that has
//! changed since it was trained, beside its successor, with one evaluator.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cadenza_core::codec;
use cadenza_core::corpus::{self, Corpus};
use cadenza_core::engine::{Engine, EngineOptions, Provider};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// An exported model (.onnx); repeat to compare several on the same windows.
    #[arg(long = "model", required = true)]
    pub models: Vec<PathBuf>,
    /// A data folder (`cargo xtask data`'s data/STYLE) whose validation split is measured.
    #[arg(long)]
    pub data: PathBuf,
    /// Windows at most, spread evenly over the split (0: all of them).
    #[arg(long, default_value_t = 0)]
    pub max_windows: usize,
    /// ONNX Runtime threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// One model's loss over the windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nll {
    pub windows: usize,
    /// Targets counted (padding excluded).
    pub events: usize,
    /// Mean cross-entropy, nats per event.
    pub nats_per_event: f64,
    pub accuracy: f64,
}

/// Cross-entropy of `engine` over `windows` (each `seq_len + 1` tokens, padded with PAD),
/// counted the way the trainer counts it: every non-padding target, summed, then divided.
pub fn nll(engine: &mut Engine, windows: &[Vec<i64>]) -> Result<Nll> {
    let vocab = engine.info().config.vocab_size;
    let pad = i64::from(codec::PAD);
    let (mut sum, mut hits, mut counted) = (0.0f64, 0usize, 0usize);
    for w in windows {
        let n = w.len() - 1;
        let model = engine.model();
        let mut cache = model.empty_cache(1);
        let logits = model.forward(&w[..n], &mut cache)?;
        for (row, &target) in logits.chunks(vocab).zip(&w[1..]) {
            if target == pad {
                continue;
            }
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let log_z = f64::from(max) + row.iter().map(|&x| f64::from(x - max).exp()).sum::<f64>().ln();
            sum += log_z - f64::from(row[target as usize]);
            let best = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as i64);
            hits += usize::from(best == Some(target));
            counted += 1;
        }
    }
    let n = counted.max(1) as f64;
    Ok(Nll { windows: windows.len(), events: counted, nats_per_event: sum / n, accuracy: hits as f64 / n })
}

pub fn run(a: &Args) -> Result<()> {
    let corpus = Corpus::load(&a.data).with_context(|| format!("{}: cannot load the data folder", a.data.display()))?;
    let per_s = corpus.valid_events_per_second();
    println!("{}: validation split {}", a.data.display(), corpus.summary);
    println!(
        "{:<40} {:>7} {:>8} {:>9} {:>12} {:>9} {:>9}",
        "model", "window", "windows", "events", "nats/event", "bits/s", "accuracy"
    );
    let opts =
        EngineOptions { ort_library: crate::env::ort_library(), intra_threads: a.threads, provider: Provider::Cpu };
    for path in &a.models {
        let mut engine = Engine::load(path, &opts)?;
        let window = engine.info().config.max_seq_len;
        let windows = corpus::validation_windows(&corpus, window, a.max_windows);
        let r = nll(&mut engine, &windows).with_context(|| format!("{}: evaluation failed", path.display()))?;
        println!(
            "{:<40} {:>7} {:>8} {:>9} {:>12.4} {:>9.2} {:>8.1}%",
            path.display(),
            window,
            r.windows,
            r.events,
            r.nats_per_event,
            codec::bits_per_second(r.nats_per_event, per_s),
            r.accuracy * 100.0
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadenza_core::export::{
        export_onnx, export_weights, model_precision, random_weights, synthetic_meta, ExportOptions, Precision,
        INT8_NLL_TOLERANCE,
    };
    use cadenza_core::model::ModelConfig;

    /// Padding is not counted, and the model is causal: a window padded after its
    /// music scores that music exactly as the unpadded, shorter window does.
    #[test]
    fn padding_is_not_counted_and_changes_nothing_before_it() {
        let dir = std::env::temp_dir().join(format!("cadenza-eval-nll-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let cfg = ModelConfig { max_seq_len: 32, dropout: 0.0, ..ModelConfig::TINY };
        let onnx = dir.join("nll.onnx");
        export_weights(
            &random_weights(&cfg, 9),
            &synthetic_meta(&cfg, "nll", "random weights"),
            Precision::Float32,
            &onnx,
        )
        .expect("export");
        let opts = EngineOptions { ort_library: crate::env::ort_library(), intra_threads: 1, provider: Provider::Cpu };
        let mut engine = Engine::load(&onnx, &opts).expect("engine");
        let music: Vec<i64> = std::iter::once(i64::from(codec::START)).chain((1..21).map(|i| i * 37 % 300)).collect();
        let mut padded = music.clone();
        padded.resize(33, i64::from(codec::PAD));
        let short = nll(&mut engine, std::slice::from_ref(&music)).expect("short window");
        let long = nll(&mut engine, &[padded]).expect("padded window");
        assert_eq!((short.events, long.events), (20, 20));
        assert!((short.nats_per_event - long.nats_per_event).abs() < 1e-5, "{short:?} vs {long:?}");
        // Random weights guess: about ln(vocabulary) nats per event.
        let uniform = (cfg.vocab_size as f64).ln();
        assert!((short.nats_per_event - uniform).abs() < 1.5, "{short:?} against ln(vocab) {uniform:.2}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The shipped jazz checkpoint exported with int8 weight products scores
    /// real music (two fixtures, one it never trained on) within
    /// [`INT8_NLL_TOLERANCE`] of its float32 export, from under a third of the bytes.
    #[test]
    fn the_int8_export_of_a_shipped_model_scores_real_music_like_float32() {
        let root = crate::env::repo_root();
        let checkpoint = root.join("models/checkpoints/jazz.safetensors");
        let dir = std::env::temp_dir().join(format!("cadenza-eval-int8-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let opts = EngineOptions { ort_library: crate::env::ort_library(), intra_threads: 1, provider: Provider::Cpu };
        let mut scores = Vec::new();
        for precision in [Precision::Float32, Precision::Int8] {
            let onnx = dir.join(format!("jazz-{}.onnx", precision.name()));
            let options = ExportOptions { style: None, precision };
            let report = export_onnx(&checkpoint, &onnx, &options).expect("export");
            assert_eq!(model_precision(&onnx), Some(precision));
            let mut engine = Engine::load(&onnx, &opts).expect("engine");
            let window = engine.info().config.max_seq_len + 1;
            let mut windows = Vec::new();
            for fixture in ["mma-swing-ii-v-i-major_C.mid", "npm-maple-leaf-rag.mid"] {
                let perf =
                    cadenza_core::midi::read_file(&root.join("tests/fixtures").join(fixture), &Default::default())
                        .expect("fixture");
                let mut tokens = vec![i64::from(codec::START)];
                tokens.extend(codec::encode(&perf).into_iter().map(|e| i64::from(e.to_token())));
                tokens.resize(window, i64::from(codec::PAD));
                windows.push(tokens);
            }
            scores.push((report.bytes, nll(&mut engine, &windows).expect("nll")));
        }
        let ((f_bytes, f), (q_bytes, q)) = (&scores[0], &scores[1]);
        assert!(f.events > 900 && f.nats_per_event < 3.0, "the fixtures are real music to this model: {f:?}");
        let cost = q.nats_per_event - f.nats_per_event;
        assert!(cost.abs() < INT8_NLL_TOLERANCE, "int8 {q:?} against float32 {f:?}");
        assert!(q_bytes * 3 < *f_bytes, "int8 {q_bytes} bytes against float32 {f_bytes}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
