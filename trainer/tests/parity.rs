//! The exported model under ONNX Runtime against the libtorch model it came
//! from: tch logits vs ONNX Runtime logits, max |diff| < 1e-4 in fp32, for a
//! 512-event prefill and 64 cached steps after it, on a `tiny`-sized model
//! (window 640) trained for 300 steps on the Bach chorales in
//! tests/fixtures/classical and exported with `export_onnx`, and on random
//! `small`-sized weights. What the engine does with an exported model is
//! tested beside it, in core/tests/engine.rs, without libtorch.
//!
//! Needs the ONNX Runtime library: `ORT_DYLIB_PATH` (set by `cargo xtask test`)
//! or the one `cargo xtask setup` recorded in .cadenza-env.json.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use cadenza_core::codec;
use cadenza_core::engine::Engine;
use cadenza_core::export::{export_onnx, synthetic_meta, ExportOptions};
use cadenza_core::model::ModelConfig;
use cadenza_test_support::{chorale_tokens, chorales_dir, engine_options};
use cadenza_trainer::checkpoint::{self, CheckpointPaths};
use cadenza_trainer::device::DeviceChoice;
use cadenza_trainer::train::{self, RunOptions};
use cadenza_trainer::MusicTransformer;
use tch::{nn, Device, Tensor};

/// Largest allowed |tch - ORT| on any logit, fp32.
const PARITY_TOLERANCE: f32 = 1e-4;
const PREFILL: usize = 512;
const STEPS: usize = 64;

/// libtorch's random generator is process-global: tests that train or
/// initialise weights take turns.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A tiny model with a 640-event window, trained on real chorales, exported.
struct Trained {
    _dir: tempfile::TempDir,
    checkpoint: PathBuf,
    onnx: PathBuf,
}

fn trained() -> &'static Trained {
    static FIXTURE: OnceLock<Trained> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let _lock = serial();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("tiny640.toml");
        std::fs::write(
            &config,
            "preset = \"tiny\"\nprecision = \"fp32\"\nseq_len = 128\nbatch_size = 8\nlr = 2e-3\nmin_lr = 2e-4\n\
             warmup_steps = 20\nlog_every_steps = 100\ncheckpoint_every_steps = 300\nval_max_windows = 8\n\
             epochs = 1000\n[model]\nmax_seq_len = 640\n",
        )
        .expect("config");
        let run = dir.path().join("runs/classical");
        let summary = train::run(&RunOptions {
            data: Some(chorales_dir()),
            config: Some(config.display().to_string()),
            steps: Some(300),
            device: DeviceChoice::Cpu,
            threads: Some(2),
            progress: false,
            ..RunOptions::new("classical", &run)
        })
        .expect("a short real training run");
        let checkpoint = checkpoint::run_checkpoint(&summary.out).expect("a checkpoint");
        let onnx = dir.path().join("classical.onnx");
        export_onnx(&checkpoint, &onnx, &ExportOptions::default()).expect("export");
        Trained { _dir: dir, checkpoint, onnx }
    })
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).expect("float tensor")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Prefill `PREFILL` events, then `STEPS` cached steps; compare every logit with tch.
fn assert_parity(model: &MusicTransformer, onnx: &Path, tokens: &[i64]) {
    assert!(tokens.len() >= PREFILL + STEPS);
    let v = codec::VOCAB_SIZE;
    let mut engine = Engine::load(onnx, &engine_options()).expect("engine loads");
    let ort = engine.model();
    let mut cache = ort.empty_cache(1);
    let logits = ort.forward(&tokens[..PREFILL], &mut cache).expect("prefill");
    assert_eq!(cache.capacity(), PREFILL, "the capacity bucket of a 512-event prefill");
    let reference = tch::no_grad(|| {
        model.forward_t(&Tensor::from_slice(&tokens[..PREFILL + STEPS]).view([1, (PREFILL + STEPS) as i64]), false)
    });
    let reference = to_vec(&reference);
    let prefill_diff = max_abs_diff(&logits, &reference[..PREFILL * v]);
    assert!(prefill_diff < PARITY_TOLERANCE, "prefill: max |tch - ort| = {prefill_diff}");
    let mut step_diff = 0.0f32;
    for t in PREFILL..PREFILL + STEPS {
        let l = ort.forward(&tokens[t..t + 1], &mut cache).expect("step");
        step_diff = step_diff.max(max_abs_diff(&l, &reference[t * v..(t + 1) * v]));
    }
    assert!(step_diff < PARITY_TOLERANCE, "cached steps: max |tch - ort| = {step_diff}");
    // The steps grew the buffers past the prefill's bucket (one copy) and read
    // them with masked room to spare.
    assert_eq!((cache.len(), cache.capacity()), (PREFILL + STEPS, 576));
    // The logits are not trivially flat: a check that can fail.
    let spread =
        reference[..v].iter().fold(f32::MIN, |m, &x| m.max(x)) - reference[..v].iter().fold(f32::MAX, |m, &x| m.min(x));
    assert!(spread > 0.5, "logit spread {spread}");
    eprintln!("parity: prefill {prefill_diff:.2e}, {STEPS} cached steps {step_diff:.2e}, spread {spread:.1}");
}

#[test]
fn ort_matches_tch_on_a_trained_model() {
    let fx = trained();
    let _lock = serial();
    tch::set_num_threads(2);
    let loaded = checkpoint::load_checkpoint(&fx.checkpoint, Device::Cpu).expect("checkpoint loads");
    assert_parity(&loaded.model, &fx.onnx, &chorale_tokens(PREFILL + STEPS));
}

#[test]
fn ort_matches_tch_on_small_sized_random_weights() {
    let _lock = serial();
    tch::manual_seed(11);
    tch::set_num_threads(2);
    let cfg = ModelConfig { max_seq_len: 640, dropout: 0.0, ..ModelConfig::SMALL };
    let vs = nn::VarStore::new(Device::Cpu);
    let model = MusicTransformer::new(&vs.root(), &cfg);
    // Four times the initialisation (as after training) so attention is far from uniform.
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if name.ends_with("rel_emb") || name.contains(".q.") || name.contains(".k.") {
                let _ = t.f_mul_scalar_(4.0).expect("scale");
            }
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = CheckpointPaths::new(&dir.path().join("random"));
    let meta = synthetic_meta(&cfg, "random", "random weights");
    checkpoint::save_checkpoint(&paths, &vs, None, &meta).expect("save");
    let onnx = dir.path().join("random.onnx");
    export_onnx(&paths.weights, &onnx, &ExportOptions::default()).expect("export");
    let tokens: Vec<i64> = (0..(PREFILL + STEPS) as i64).map(|i| (i * 7919 + 5) % 388).collect();
    assert_parity(&model, &onnx, &tokens);
}
