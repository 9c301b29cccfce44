//! End-to-end tests of the trainer on real MIDI (public-domain fixtures in
//! tests/fixtures: Bach chorales as "classical", Ryan's Mammoth Collection
//! reels as "folk"), with the `tiny` model on the CPU.
//!
//! libtorch's random generator is process-global, so the tests take turns
//! (one lock) to keep every run reproducible.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use cadenza_trainer::checkpoint::{self, CheckpointError};
use cadenza_trainer::device::DeviceChoice;
use cadenza_trainer::metrics::{read_metrics, RowKind, METRICS_FILE};
use cadenza_trainer::model::Precision;
use cadenza_trainer::train::{self, RunOptions, RunSummary, TrainError};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A tiny fp32 configuration as a TOML diff: short crops so a step takes milliseconds.
const TINY_TOML: &str = r#"
preset = "tiny"
precision = "fp32"
seq_len = 128
batch_size = 8
lr = 2e-3
min_lr = 2e-4
warmup_steps = 20
log_every_steps = 25
checkpoint_every_steps = 100
val_max_windows = 16
epochs = 1000
"#;

/// [`TINY_TOML`] with some `key = value` lines replaced or added.
fn write_config(dir: &Path, overrides: &str) -> String {
    let keys: Vec<&str> = overrides.lines().filter_map(|l| l.split('=').next()).map(str::trim).collect();
    let mut text: String = TINY_TOML
        .lines()
        .filter(|l| !keys.contains(&l.split('=').next().unwrap_or("").trim()))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(overrides);
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

fn options(style: &str, out: &Path, data: &Path, config: &str, steps: usize) -> RunOptions {
    RunOptions {
        data: Some(data.to_path_buf()),
        config: Some(config.to_string()),
        steps: Some(steps),
        device: DeviceChoice::Cpu,
        // One thread: libtorch's OpenMP workers spin at every barrier, which
        // costs several times the work on a busy two-core machine.
        threads: Some(1),
        progress: false,
        ..RunOptions::new(style, out)
    }
}

/// One classical pretraining run shared by the tests that need a trained parent.
struct Pretrained {
    _dir: tempfile::TempDir,
    run: PathBuf,
    config: String,
    summary: RunSummary,
}

fn pretrained() -> &'static Pretrained {
    static RUN: OnceLock<Pretrained> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write_config(dir.path(), "");
        let run = dir.path().join("runs/classical");
        let summary =
            train::run(&options("classical", &run, &fixtures().join("classical"), &config, 300)).expect("pretraining");
        Pretrained { _dir: dir, run, config, summary }
    })
}

mod learning {
    use super::*;

    /// Issue 3: the loss falls clearly within a few hundred steps on real files.
    #[test]
    fn loss_falls_within_a_few_hundred_steps() {
        let _g = serial();
        let p = pretrained();
        let losses: Vec<f64> = p.summary.step_losses.iter().map(|(_, l)| *l).collect();
        assert_eq!(losses.len(), 300);
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
        let (first, last) = (mean(&losses[..20]), mean(&losses[280..]));
        assert!(first > 5.0, "an untrained model starts near ln(391) = 5.97, got {first:.3}");
        assert!(last < first - 2.0, "training loss fell only from {first:.3} to {last:.3}");
        let (v0, _) = p.summary.initial_val.expect("validation before the first step");
        let (v1, a1) = p.summary.last_val.expect("validation at the end");
        assert!(v1 < v0 - 1.5, "validation loss fell only from {v0:.3} to {v1:.3}");
        assert!(a1 > 0.15, "validation accuracy {a1:.3}");

        // The run folder has everything the issue asks for.
        let rows = read_metrics(&p.run.join(METRICS_FILE)).expect("metrics");
        assert!(rows.iter().filter(|r| r.kind == RowKind::Step).count() >= 12);
        assert!(rows.iter().any(|r| r.kind == RowKind::Step && r.val_loss.is_some() && r.step == 0));
        let logged = rows.iter().find(|r| r.step == 25).expect("a row at step 25");
        assert!(logged.train_loss.is_some() && logged.train_acc.is_some() && logged.tokens_per_s.is_some());
        for f in ["learning_rate.png", "train_accuracy.png", "val_accuracy.png", "loss.png"] {
            let png = p.run.join("plots").join(f);
            let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
            assert!(bytes.starts_with(b"\x89PNG"), "{f} is not a PNG");
        }
        let best = checkpoint::load_checkpoint(&p.run.join("best"), tch::Device::Cpu).expect("best checkpoint");
        assert_eq!(best.meta.style, "classical");
        assert_eq!(best.meta.best_val_loss, p.summary.best_val_loss);
        // keep_last = 3 step checkpoints: 100, 200, 300 (and epoch ends in between, pruned).
        assert!(checkpoint::step_checkpoints(&p.run).len() <= 3);
    }
}

mod resume {
    use super::*;

    /// Issue 3: save, load and resume reproduce the next step's loss exactly
    /// (weights, AdamW moments, data order, augmentation and dropout).
    #[test]
    fn a_resumed_run_takes_exactly_the_steps_of_an_uninterrupted_one() {
        let _g = serial();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write_config(dir.path(), "checkpoint_every_steps = 10\n");
        let data = fixtures().join("classical");

        let whole = train::run(&options("c", &dir.path().join("whole"), &data, &config, 30)).expect("whole run");

        let cut = dir.path().join("cut");
        let first = train::run(&RunOptions { stop_after_steps: Some(15), ..options("c", &cut, &data, &config, 30) })
            .expect("first half");
        assert_eq!(first.step, 15);
        // A later checkpoint torn by a kill: weights written, sidecar never renamed into place.
        let torn = checkpoint::step_checkpoint_paths(&cut, 20);
        std::fs::copy(checkpoint::step_checkpoint_paths(&cut, 15).weights, &torn.weights).expect("torn weights");

        let resumed = train::run(&RunOptions {
            resume: true,
            data: None,
            config: None,
            steps: None,
            ..options("c", &cut, &data, &config, 30)
        })
        .expect("resume");
        assert_eq!(resumed.step, 30);
        assert_eq!(resumed.step_losses.first().map(|s| s.0), Some(16), "resumes after step 15");
        let expected: Vec<(usize, f64)> = whole.step_losses[15..].to_vec();
        assert_eq!(resumed.step_losses, expected, "bit-identical losses after the resume");
        assert_eq!(resumed.last_val, whole.last_val);

        // metrics.csv reads like one run: no step logged twice.
        let rows = read_metrics(&cut.join(METRICS_FILE)).expect("metrics");
        let steps: Vec<usize> = rows.iter().filter(|r| r.kind == RowKind::Step).map(|r| r.step).collect();
        let mut dedup = steps.clone();
        dedup.dedup();
        assert_eq!(steps, dedup, "{steps:?}");
    }

    /// The same through the binary, with a real kill -9 in the middle of training.
    #[test]
    fn the_binary_resumes_after_kill_9() {
        let _g = serial();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write_config(dir.path(), "checkpoint_every_steps = 5\nlog_every_steps = 5\n");
        let data = fixtures().join("classical");
        let bin = env!("CARGO_BIN_EXE_cadenza-train");
        let train_cmd = |out: &Path, extra: &[&str]| {
            let mut cmd = std::process::Command::new(bin);
            cmd.args(["train", "--style", "c", "--threads", "1", "--no-progress", "--steps", "60"])
                .arg("--out")
                .arg(out)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            if !extra.contains(&"--resume") {
                cmd.arg("--data").arg(&data).args(["--config", &config]);
            }
            cmd.args(extra);
            cmd
        };

        let whole = dir.path().join("whole");
        assert!(train_cmd(&whole, &[]).status().expect("run").success());

        let killed = dir.path().join("killed");
        let mut child = train_cmd(&killed, &[]).spawn().expect("spawn");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while checkpoint::step_checkpoints(&killed).iter().all(|(s, _)| *s < 10) {
            assert!(std::time::Instant::now() < deadline, "no checkpoint after 60 s");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().expect("kill -9"); // SIGKILL on Unix
        let _ = child.wait();
        let newest = checkpoint::step_checkpoints(&killed).last().map(|(s, _)| *s).unwrap_or(0);
        assert!(newest < 60, "the run finished before the kill; the test proves nothing");
        assert!(train_cmd(&killed, &["--resume"]).status().expect("resume").success());

        let last = |run: &Path| {
            let rows = read_metrics(&run.join(METRICS_FILE)).expect("metrics");
            rows.into_iter().rfind(|r| r.kind == RowKind::Step).expect("rows")
        };
        let (a, b) = (last(&whole), last(&killed));
        assert_eq!(a.step, 60);
        assert_eq!((a.step, a.train_loss, a.val_loss, a.val_acc), (b.step, b.train_loss, b.val_loss, b.val_acc));
    }
}

/// Issue 10: a machine without the run continues it from the weights that
/// ship (float16, no optimizer state): at the same step, with the same
/// schedule and batches, a fresh optimizer warmed up again.
mod continuing {
    use super::*;

    #[test]
    fn a_run_continues_from_its_shipped_half_weights_at_its_step() {
        let _g = serial();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write_config(dir.path(), "checkpoint_every_steps = 20\n");
        let data = fixtures().join("classical");
        let whole = train::run(&options("c", &dir.path().join("whole"), &data, &config, 160)).expect("whole run");

        let cut = dir.path().join("cut");
        train::run(&RunOptions { stop_after_steps: Some(40), ..options("c", &cut, &data, &config, 160) })
            .expect("first 40 steps");
        let shipped = dir.path().join("models/checkpoints/c");
        let paths = checkpoint::ship_half(&checkpoint::step_checkpoint_paths(&cut, 40).weights, &shipped)
            .expect("ship in half precision");

        let out = dir.path().join("continued");
        let continued = train::run(&RunOptions {
            continue_from: Some(paths.weights.clone()),
            // The settings are the checkpoint's: a config given here is not used.
            config: None,
            ..options("c", &out, &data, &config, 160)
        })
        .expect("continue");
        assert_eq!(continued.step, 160);
        assert_eq!(continued.step_losses.first().map(|s| s.0), Some(41), "continues after step 40");
        let record = checkpoint::read_run_record(&out).expect("a run of its own");
        assert_eq!(record.config, checkpoint::read_run_record(&cut).expect("the cut run").config);
        let rows = read_metrics(&out.join(METRICS_FILE)).expect("metrics");
        let first = rows.iter().find(|r| r.kind == RowKind::Step).expect("a first row");
        assert_eq!(first.step, 40, "the run's validation where it continues");
        // A fresh optimizer costs something, but 120 steps later the two runs are close.
        let (exact, warm) = (whole.last_val.expect("whole").0, continued.last_val.expect("continued").0);
        eprintln!("validation at step 160: uninterrupted {exact:.4}, continued from half weights at 40 {warm:.4}");
        assert!((warm - exact).abs() < 0.4, "exact {exact:.3}, continued {warm:.3}");
    }
}

mod finetune {
    use super::*;

    /// Issue 3: a finetune starts from the source model's weights: its
    /// validation loss before the first step equals the source model's on the same data.
    #[test]
    fn starts_from_the_source_weights_and_records_the_chain() {
        let _g = serial();
        let p = pretrained();
        let dir = tempfile::tempdir().expect("tempdir");
        let folk = fixtures().join("folk");
        let cfg = cadenza_trainer::config::TrainConfig::from_arg(&p.config).expect("config");
        let source = train::evaluate_checkpoint(
            &p.run.join("best"),
            &folk,
            cfg.seq_len,
            cfg.val_max_windows,
            cfg.batch_size,
            Precision::Fp32,
            tch::Device::Cpu,
        )
        .expect("source on folk");

        let out = dir.path().join("folk");
        let ft = train::run(&RunOptions {
            from: Some(p.run.display().to_string()),
            freeze_layers: Some(1),
            ..options("folk", &out, &folk, &p.config, 40)
        })
        .expect("finetune");
        assert_eq!(
            ft.initial_val,
            Some((source.loss, source.accuracy)),
            "finetune's first validation = the source model's"
        );
        let (v0, v1) = (ft.initial_val.map(|v| v.0), ft.last_val.map(|v| v.0));
        assert!(v1 < v0, "finetuning did not lower the folk validation loss: {v0:?} -> {v1:?}");

        // Frozen layers did not move; the rest did.
        let parent = checkpoint::load_checkpoint(&p.run.join("best"), tch::Device::Cpu).expect("parent");
        let child = checkpoint::load_checkpoint(&out.join("best"), tch::Device::Cpu).expect("child");
        let (pv, cv) = (parent.vs.variables(), child.vs.variables());
        assert!(pv["layers.0.attn.q.weight"].equal(&cv["layers.0.attn.q.weight"]));
        assert!(pv["embed.weight"].equal(&cv["embed.weight"]));
        assert!(!pv["layers.1.attn.q.weight"].equal(&cv["layers.1.attn.q.weight"]));

        // The chain is recorded and plotted on one axis.
        let record = checkpoint::read_run_record(&out).expect("run.json");
        let parent_ref = record.parent.expect("parent recorded");
        assert_eq!(parent_ref.style, "classical");
        assert!(parent_ref.chain_epochs > 0.0);
        let chain = cadenza_trainer::plot::load_chain(&out).expect("chain");
        assert_eq!(chain.iter().map(|c| c.record.style.as_str()).collect::<Vec<_>>(), vec!["classical", "folk"]);
        assert!(out.join("plots/loss.png").is_file());
    }

    #[test]
    fn a_parent_whose_shape_does_not_fit_is_a_typed_error() {
        let _g = serial();
        let p = pretrained();
        let dir = tempfile::tempdir().expect("tempdir");
        let err = train::run(&RunOptions {
            from: Some(p.run.display().to_string()),
            ..options("folk", &dir.path().join("x"), &fixtures().join("folk"), "small", 1)
        })
        .expect_err("tiny weights cannot start a small model");
        match err {
            TrainError::Checkpoint(CheckpointError::Incompatible { why, .. }) => {
                assert!(why.contains("d_model"), "{why}")
            }
            other => panic!("expected Incompatible, got {other}"),
        }
        let err = train::run(&RunOptions {
            from: Some("no-such-style".into()),
            runs_dir: dir.path().to_path_buf(),
            ..options("folk", &dir.path().join("y"), &fixtures().join("folk"), "tiny", 1)
        })
        .expect_err("unknown parent");
        assert!(matches!(err, TrainError::Checkpoint(CheckpointError::FromNotFound { .. })), "{err}");
    }
}

mod errors {
    use super::*;

    #[test]
    fn bad_data_and_existing_runs_are_refused_with_the_path_named() {
        let _g = serial();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write_config(dir.path(), "");
        let out = dir.path().join("run");

        let missing = dir.path().join("nothing-here");
        let err = train::run(&options("s", &out, &missing, &config, 2)).expect_err("missing folder");
        assert!(err.to_string().contains("nothing-here"), "{err}");

        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).expect("mkdir");
        let err = train::run(&options("s", &out, &empty, &config, 2)).expect_err("no MIDI");
        assert!(err.to_string().contains("no MIDI"), "{err}");

        // An unreadable file is skipped; the run goes on with the others.
        let mixed = dir.path().join("mixed");
        std::fs::create_dir_all(mixed.join("sub")).expect("mkdir");
        for f in std::fs::read_dir(fixtures().join("folk")).expect("fixtures").take(4) {
            let f = f.expect("entry").path();
            std::fs::copy(&f, mixed.join("sub").join(f.file_name().expect("name"))).expect("copy");
        }
        std::fs::write(mixed.join("broken.MID"), b"RIFF....not a midi file").expect("write");
        let corpus = cadenza_trainer::data::Corpus::load(&mixed).expect("the good files load");
        assert_eq!(corpus.skipped.len(), 1);
        assert!(corpus.skipped[0].path.ends_with("broken.MID"));
        train::run(&options("s", &out, &mixed, &config, 2)).expect("trains on the readable files");

        let err = train::run(&options("s", &out, &mixed, &config, 2)).expect_err("run folder exists");
        assert!(matches!(err, TrainError::RunExists(_)), "{err}");
        train::run(&RunOptions { force: true, ..options("s", &out, &mixed, &config, 2) }).expect("--force starts over");

        let err = train::run(&RunOptions {
            resume: true,
            config: None,
            ..options("s", &dir.path().join("none"), &mixed, &config, 2)
        })
        .expect_err("nothing to resume");
        assert!(matches!(err, TrainError::NoRunToResume(_)), "{err}");

        let bad_toml = dir.path().join("bad.toml");
        std::fs::write(&bad_toml, "preset = \"tiny\"\nlearning_rate = 1e-3\n").expect("write");
        let err = train::run(&options("s", &dir.path().join("z"), &mixed, &bad_toml.display().to_string(), 2))
            .expect_err("unknown key");
        assert!(err.to_string().contains("learning_rate") && err.to_string().contains("bad.toml"), "{err}");
    }
}
