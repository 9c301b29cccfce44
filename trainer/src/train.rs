//! The training loop: pretraining from scratch, finetuning from a checkpoint
//! (`--from`), and resuming a killed run (`--resume`) exactly where it
//! stopped.
//!
//! Exactness: the batch of step `s` is a function of `(seed, s)` (see
//! `data::Sampler`) and libtorch's generator is reseeded from `(seed, s)`
//! before every step, so dropout masks need no saved state either; weights and
//! AdamW moments are restored bit for bit from safetensors. A resumed run
//! therefore takes the same steps an uninterrupted one would have.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use tch::{nn, Device, Kind, Reduction, Tensor};

use cadenza_core::codec;
use cadenza_core::dataset::CheckpointMeta;

use crate::checkpoint::{
    self, CheckpointError, CheckpointPaths, LoadedCheckpoint, ParentRef, ResumePoint, RunRecord, TrainMeta, TrainState,
    BEST, CHECKPOINT_DIR, RUN_FILE,
};
use crate::config::{ConfigError, TrainConfig};
use crate::data::{self, Corpus, DataError, Sampler};
use crate::device::{DeviceChoice, NoCuda};
use crate::metrics::{MetricsError, MetricsLog, Row, RowKind, METRICS_FILE};
use crate::model::{MusicTransformer, Precision};
use crate::optim::{AdamW, AdamWConfig};

/// What the command line (or a test) asks for.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Style name, recorded in checkpoints and exported models.
    pub style: String,
    /// Data folder; on `--resume` the run's own is used when this is `None`.
    pub data: Option<PathBuf>,
    /// Finetune from: a style name, run folder or checkpoint.
    pub from: Option<String>,
    /// `--config`: a preset name or a TOML file.
    pub config: Option<String>,
    pub epochs: Option<usize>,
    pub steps: Option<usize>,
    pub freeze_layers: Option<usize>,
    pub seed: Option<u64>,
    /// The run folder.
    pub out: PathBuf,
    /// Where style names given to `--from` are looked up (`runs/`).
    pub runs_dir: PathBuf,
    pub resume: bool,
    /// Continue a run in a new folder from a checkpoint's weights, settings
    /// and step (the shipped `models/checkpoints/STYLE` on a fresh machine):
    /// the same schedule and batches, a fresh optimizer warmed up over
    /// [`REWARM_STEPS`]. What it costs against an exact `--resume` is in the notes.
    pub continue_from: Option<PathBuf>,
    pub force: bool,
    pub device: DeviceChoice,
    /// libtorch intra-op threads (`None`: libtorch's default, one per core).
    pub threads: Option<usize>,
    /// Stop (as if killed) after this step; the schedule is unchanged. For tests.
    pub stop_after_steps: Option<usize>,
    /// Draw a progress bar (when stderr is a terminal).
    pub progress: bool,
}

impl RunOptions {
    pub fn new(style: &str, out: &Path) -> Self {
        Self {
            style: style.to_string(),
            data: None,
            from: None,
            config: None,
            epochs: None,
            steps: None,
            freeze_layers: None,
            seed: None,
            out: out.to_path_buf(),
            runs_dir: PathBuf::from("runs"),
            resume: false,
            continue_from: None,
            force: false,
            device: DeviceChoice::Cpu,
            threads: None,
            stop_after_steps: None,
            progress: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Device(#[from] NoCuda),
    #[error("{}: a run is already there; pass --resume to continue it or --force to start over", .0.display())]
    RunExists(PathBuf),
    #[error("{}: no run to resume ({} is missing)", .0.display(), RUN_FILE)]
    NoRunToResume(PathBuf),
    #[error(
        "--resume continues the run as it was set up, and these flags would change it: {}; \
         drop them, or start a new run (another --out, or --force)",
        .0.join("; ")
    )]
    ResumeConflict(Vec<String>),
    #[error("no data folder: pass --data")]
    NoData,
    #[error("{}: the data changed since the run started (manifest {found}, the run used {expected})", dir.display())]
    DataChanged { dir: PathBuf, found: String, expected: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// How a finished (or stopped) run went.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub out: PathBuf,
    pub step: usize,
    pub total_steps: usize,
    pub best_val_loss: Option<f64>,
    /// Validation loss and accuracy before the first step of a new run.
    pub initial_val: Option<(f64, f64)>,
    /// The last validation loss and accuracy.
    pub last_val: Option<(f64, f64)>,
    /// Training loss of every step this process ran, by step (for tests and plots).
    pub step_losses: Vec<(usize, f64)>,
    /// `best` checkpoint (weights file), when one was written.
    pub best_checkpoint: Option<PathBuf>,
    pub elapsed_s: f64,
}

/// What one optimizer step measured.
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    pub loss: f64,
    /// Next-event accuracy over the non-padding targets.
    pub accuracy: f64,
    pub grad_norm: f64,
}

/// Mean cross-entropy over the non-padding targets, and the number of correct
/// argmax predictions and of counted targets.
pub fn loss_and_hits(logits: &Tensor, targets: &Tensor, reduction: Reduction) -> (Tensor, Tensor, Tensor) {
    let vocab = logits.size()[2];
    let flat_logits = logits.view([-1, vocab]);
    let flat_targets = targets.reshape([-1]);
    let loss = flat_logits.cross_entropy_loss::<Tensor>(&flat_targets, None, reduction, i64::from(codec::PAD), 0.0);
    let counted = flat_targets.ne(i64::from(codec::PAD));
    let hits = flat_logits.argmax(-1, false).eq_tensor(&flat_targets).logical_and(&counted);
    (loss, hits.sum(Kind::Int64), counted.sum(Kind::Int64))
}

/// `targets` with the first `skip` positions of every row set to PAD, which
/// the loss ignores: those predictions still shape the context, but only the
/// continuation's count ([`TrainConfig::loss_from`]).
pub fn continuation_targets(targets: &Tensor, skip: usize) -> Tensor {
    if skip == 0 {
        return targets.shallow_clone();
    }
    let masked = targets.copy();
    let _ = masked.narrow(1, 0, (skip as i64).min(targets.size()[1])).fill_(i64::from(codec::PAD));
    masked
}

/// Forward, backward, clip and update on one batch.
pub fn train_step(
    model: &MusicTransformer,
    opt: &mut AdamW,
    input: &Tensor,
    target: &Tensor,
    lr: f64,
    grad_clip: f64,
) -> StepStats {
    opt.zero_grad();
    let logits = model.forward_t(input, true);
    let (loss, hits, counted) = loss_and_hits(&logits, target, Reduction::Mean);
    loss.backward();
    let grad_norm = opt.clip_grad_norm(grad_clip);
    opt.step(lr);
    let counted = counted.int64_value(&[]).max(1) as f64;
    StepStats { loss: loss.double_value(&[]), accuracy: hits.int64_value(&[]) as f64 / counted, grad_norm }
}

/// Mean loss and accuracy over fixed windows (`[n, seq_len + 1]` rows), in
/// batches of `batch`, without dropout.
pub fn evaluate(model: &MusicTransformer, windows: &[Vec<i64>], batch: usize, device: Device) -> (f64, f64) {
    let _guard = tch::no_grad_guard();
    let (mut loss_sum, mut hits, mut counted) = (0.0f64, 0i64, 0i64);
    for chunk in windows.chunks(batch.max(1)) {
        let width = chunk[0].len() as i64;
        let flat: Vec<i64> = chunk.iter().flatten().copied().collect();
        let seq = Tensor::from_slice(&flat).view([chunk.len() as i64, width]).to_device(device);
        let logits = model.forward_t(&seq.narrow(1, 0, width - 1), false);
        let (l, h, c) = loss_and_hits(&logits, &seq.narrow(1, 1, width - 1), Reduction::Sum);
        loss_sum += l.double_value(&[]);
        hits += h.int64_value(&[]);
        counted += c.int64_value(&[]);
    }
    let n = counted.max(1) as f64;
    (loss_sum / n, hits as f64 / n)
}

/// A checkpoint measured on a validation split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Validation {
    /// Mean cross-entropy, nats per event.
    pub loss: f64,
    pub accuracy: f64,
    /// Events per second of the split's music.
    pub events_per_s: f64,
}

impl Validation {
    pub fn bits_per_s(&self) -> f64 {
        codec::bits_per_second(self.loss, self.events_per_s)
    }
}

/// Validation loss and accuracy of a checkpoint on a data folder's validation
/// split, exactly as a run with `seq_len`, `max_windows` and `batch` measures it.
pub fn evaluate_checkpoint(
    checkpoint: &Path,
    data_dir: &Path,
    seq_len: usize,
    max_windows: usize,
    batch: usize,
    precision: Precision,
    device: Device,
) -> Result<Validation, TrainError> {
    let mut loaded = checkpoint::load_checkpoint(checkpoint, device)?;
    loaded.model.set_precision(precision);
    let corpus = Corpus::load(data_dir)?;
    let windows = data::validation_windows(&corpus, seq_len, max_windows);
    let (loss, accuracy) = evaluate(&loaded.model, &windows, batch, device);
    Ok(Validation { loss, accuracy, events_per_s: corpus.valid_events_per_second() })
}

/// The frozen part of a finetune: the token embedding and blocks `0..n`.
fn trainable(name: &str, freeze_layers: usize) -> bool {
    if freeze_layers == 0 {
        return true;
    }
    if name.starts_with("embed.") {
        return false;
    }
    let Some(rest) = name.strip_prefix("layers.") else { return true };
    let index: Option<usize> = rest.split('.').next().and_then(|i| i.parse().ok());
    index.is_none_or(|i| i >= freeze_layers)
}

/// Settings for a new run: defaults, `--config`, then flags. A finetune whose
/// `--config` does not choose a model takes the parent's.
fn build_config(opts: &RunOptions, parent_model: Option<cadenza_core::ModelConfig>) -> Result<TrainConfig, TrainError> {
    let (mut cfg, sets_model) = match &opts.config {
        None => (TrainConfig::default(), false),
        Some(v) if cadenza_core::ModelConfig::is_preset(v) => (TrainConfig::preset(v)?, true),
        Some(v) => {
            let path = Path::new(v);
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
            (TrainConfig::from_toml_file(path)?, TrainConfig::toml_sets_model(&text))
        }
    };
    if let (Some(parent), false) = (parent_model, sets_model) {
        cfg.model = cadenza_core::ModelConfig { dropout: cfg.model.dropout, ..parent };
        cfg.seq_len = cfg.seq_len.min(parent.max_seq_len);
        if opts.config.is_none() {
            cfg.seq_len = parent.max_seq_len;
        }
    }
    if let Some(e) = opts.epochs {
        cfg.epochs = e;
    }
    if let Some(s) = opts.steps {
        cfg.max_steps = Some(s);
    }
    if let Some(f) = opts.freeze_layers {
        cfg.freeze_layers = f;
    }
    if let Some(s) = opts.seed {
        cfg.seed = s;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// What the flags given with `--resume` would change in the run's own setup,
/// one entry per change; flags equal to the run's are no change. `--epochs`,
/// `--steps` and `--data` may change on a resume and are not checked here.
fn resume_changes(opts: &RunOptions, record: &RunRecord) -> Result<Vec<String>, TrainError> {
    let mut changes = Vec::new();
    if let Some(from) = &opts.from {
        let given = checkpoint::resolve_from(from, &opts.runs_dir).map(|p| std::fs::canonicalize(&p).unwrap_or(p));
        match (&record.parent, given) {
            (Some(parent), Ok(path)) if path == parent.checkpoint => {}
            (Some(parent), _) => {
                changes.push(format!("--from {from} (the run started from {})", parent.checkpoint.display()))
            }
            (None, _) => changes.push(format!("--from {from} (the run started from scratch)")),
        }
    }
    let mut asked = match &opts.config {
        // A finetune's model is its parent's unless its config set one, so the run's own stands in for the parent's.
        Some(_) => build_config(opts, record.parent.as_ref().map(|_| record.config.model))?,
        None => {
            let mut cfg = record.config.clone();
            cfg.freeze_layers = opts.freeze_layers.unwrap_or(cfg.freeze_layers);
            cfg.seed = opts.seed.unwrap_or(cfg.seed);
            cfg
        }
    };
    (asked.epochs, asked.max_steps) = (record.config.epochs, record.config.max_steps);
    let (Ok(run), Ok(asked)) = (serde_json::to_value(&record.config), serde_json::to_value(&asked)) else {
        return Ok(changes);
    };
    let mut differences = Vec::new();
    value_differences("", &run, &asked, &mut differences);
    let flag = |key: &str| match key {
        "freeze_layers" if opts.freeze_layers.is_some() => "--freeze-layers",
        "seed" if opts.seed.is_some() => "--seed",
        _ => "--config",
    };
    changes.extend(
        differences
            .into_iter()
            .map(|(key, run, asked)| format!("{} sets {key} {asked} (the run's is {run})", flag(&key))),
    );
    Ok(changes)
}

/// The leaves where two JSON values differ, as (dotted key, first, second).
fn value_differences(key: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<(String, String, String)>) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, va) in a {
                let sub = if key.is_empty() { k.clone() } else { format!("{key}.{k}") };
                value_differences(&sub, va, b.get(k).unwrap_or(&serde_json::Value::Null), out);
            }
        }
        _ if a != b => out.push((key.to_string(), a.to_string(), b.to_string())),
        _ => {}
    }
}

/// Remove what a previous run left in `dir` (only the trainer's own files).
fn clear_run_folder(dir: &Path) -> Result<(), TrainError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    for sub in [CHECKPOINT_DIR, crate::plot::PLOT_DIR] {
        let p = dir.join(sub);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).map_err(io(&p))?;
        }
    }
    let best = CheckpointPaths::new(&dir.join(BEST));
    for f in [dir.join(RUN_FILE), dir.join(METRICS_FILE), best.sidecar, best.weights, best.optim] {
        if f.exists() {
            std::fs::remove_file(&f).map_err(io(&f))?;
        }
    }
    Ok(())
}

fn run_folder_in_use(dir: &Path) -> bool {
    dir.join(RUN_FILE).exists() || dir.join(CHECKPOINT_DIR).exists() || dir.join(METRICS_FILE).exists()
}

/// Steps over which a run continued from weights alone ([`RunOptions::continue_from`])
/// ramps its learning rate back up, while the fresh optimizer's moments settle.
pub const REWARM_STEPS: usize = 100;

/// The learning rate's share `step` steps into a continued run's warm-up
/// (1 once it is over, and always for a run that was not continued).
fn rewarm_factor(step: usize, from: Option<usize>) -> f64 {
    match from {
        Some(start) if step < start + REWARM_STEPS => (step + 1 - start) as f64 / REWARM_STEPS as f64,
        _ => 1.0,
    }
}

/// Train (or finetune, or resume) one run: set it up, then step until its
/// schedule (or `stop_after_steps`) ends.
pub fn run(opts: &RunOptions) -> Result<RunSummary, TrainError> {
    let device = opts.device.resolve()?;
    if let Some(n) = opts.threads {
        tch::set_num_threads(n as i32);
    }
    let out = &opts.out;
    let setup = set_up(opts, device)?;
    println!("{}", setup.headline(opts, device));
    let Setup {
        record,
        cfg,
        corpus,
        vs,
        model,
        mut opt,
        mut state,
        fresh,
        rewarm_from,
        tokens_per_step,
        steps_per_epoch,
        total_steps,
        sampler,
        windows,
        mut metrics,
    } = setup;
    let ctx = SaveContext { cfg: &cfg, style: &record.style, corpus: &corpus, parent: &record.parent };

    let mut summary = RunSummary {
        out: out.clone(),
        step: state.step,
        total_steps,
        best_val_loss: state.best_val_loss,
        initial_val: None,
        last_val: None,
        step_losses: Vec::new(),
        best_checkpoint: None,
        elapsed_s: state.elapsed_s,
    };

    if fresh {
        // Where the run starts: for a finetune, the parent's loss on this data.
        let (vl, va) = evaluate(&model, &windows, cfg.batch_size, device);
        summary.initial_val = Some((vl, va));
        metrics.append(&Row {
            kind: RowKind::Step,
            epoch: state.epochs_done,
            step: state.step,
            lr: cfg.lr_at(state.step, total_steps),
            train_loss: None,
            train_acc: None,
            val_loss: Some(vl),
            val_acc: Some(va),
            tokens_per_s: None,
            grad_norm: None,
            elapsed_s: 0.0,
        })?;
        println!("step {} | val {vl:.3} | val acc {va:.3}", state.step);
    }

    let bar = progress_bar(opts.progress, total_steps, state.step);
    let say = |line: String| {
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
    };

    let mut interval = Accumulator::default();
    let mut epoch_acc = Accumulator::default();
    // Within an epoch that was cut by a resume, the epoch row averages what this process saw.
    while state.step < total_steps {
        let step = state.step;
        let lr = cfg.lr_at(step, total_steps) * rewarm_factor(step, rewarm_from);
        let started = Instant::now();
        let dropout_seed = data::mix(cfg.seed ^ 0xD50F, step as u64);
        tch::manual_seed((dropout_seed >> 1) as i64);
        model.reseed_dropout(dropout_seed);
        let flat = sampler.batch(&corpus, step as u64);
        let width = (cfg.seq_len + 1) as i64;
        let seq = Tensor::from_slice(&flat).view([cfg.batch_size as i64, width]).to_device(device);
        let target = continuation_targets(&seq.narrow(1, 1, width - 1), cfg.loss_from_events());
        let stats = train_step(&model, &mut opt, &seq.narrow(1, 0, width - 1), &target, lr, cfg.grad_clip);
        let took_s = started.elapsed().as_secs_f64();
        state.step += 1;
        state.elapsed_s += took_s;
        state.epochs_done = state.step as f64 / steps_per_epoch as f64;
        summary.step_losses.push((state.step, stats.loss));
        interval.add(&stats, tokens_per_step, took_s);
        epoch_acc.add(&stats, tokens_per_step, took_s);
        bar.set_position(state.step as u64);
        bar.set_message(format!("{:.0} tok/s | loss {:.3}", tokens_per_step as f64 / took_s, stats.loss));

        let s = state.step;
        let epoch_end = s.is_multiple_of(steps_per_epoch) || s == total_steps;
        let eval_due = epoch_end || (cfg.eval_every_steps > 0 && s.is_multiple_of(cfg.eval_every_steps));
        let log_due = s.is_multiple_of(cfg.log_every_steps) || eval_due;
        let ckpt_due = epoch_end
            || (cfg.checkpoint_every_steps > 0 && s.is_multiple_of(cfg.checkpoint_every_steps))
            || opts.stop_after_steps == Some(s);

        let val = if eval_due {
            let v = evaluate(&model, &windows, cfg.batch_size, device);
            summary.last_val = Some(v);
            if state.best_val_loss.is_none_or(|b| v.0 < b) {
                state.best_val_loss = Some(v.0);
                let best = CheckpointPaths::new(&out.join(BEST));
                checkpoint::save_checkpoint(&best, &vs, None, &ctx.meta(&state))?;
                summary.best_checkpoint = Some(best.weights);
            }
            Some(v)
        } else {
            None
        };
        if log_due {
            let row = interval.row(RowKind::Step, &state, lr, val);
            metrics.append(&row)?;
            say(log_line(&row, interval.mean_ms()));
            interval = Accumulator::default();
        }
        if epoch_end {
            metrics.append(&epoch_acc.row(RowKind::Epoch, &state, lr, val))?;
            epoch_acc = Accumulator::default();
        }
        if ckpt_due {
            let paths = checkpoint::step_checkpoint_paths(out, s);
            checkpoint::save_checkpoint(&paths, &vs, Some(&opt.state_tensors()), &ctx.meta(&state))?;
            checkpoint::prune_step_checkpoints(out, cfg.keep_last)?;
        }
        if opts.stop_after_steps == Some(s) {
            break;
        }
    }
    bar.finish_and_clear();

    summary.step = state.step;
    summary.best_val_loss = state.best_val_loss;
    summary.elapsed_s = state.elapsed_s;
    if summary.best_checkpoint.is_none() {
        let best = CheckpointPaths::new(&out.join(BEST));
        summary.best_checkpoint = best.sidecar.is_file().then_some(best.weights);
    }
    if let Err(e) = crate::plot::plot_chain(out) {
        eprintln!("warning: no plots: {e}");
    }
    Ok(summary)
}

/// A run ready to take its next step: what [`set_up`] returns to [`run`].
struct Setup {
    /// The run's `run.json` (written for a new run, read for a resumed one).
    record: RunRecord,
    cfg: TrainConfig,
    corpus: Corpus,
    vs: nn::VarStore,
    model: MusicTransformer,
    opt: AdamW,
    /// The step to take next, and the state saved with every checkpoint.
    state: TrainState,
    /// A new run (or a resume killed before its first checkpoint): validate before the first step.
    fresh: bool,
    /// The step a continued run started at: its learning rate ramps up from there.
    rewarm_from: Option<usize>,
    tokens_per_step: usize,
    steps_per_epoch: usize,
    total_steps: usize,
    sampler: Sampler,
    /// Fixed validation windows (`[seq_len + 1]` each).
    windows: Vec<Vec<i64>>,
    metrics: MetricsLog,
}

/// Where a run's weights come from, besides a fresh initialisation.
struct Origin {
    /// The run's `run.json`: read for a resume, `None` for a new run.
    record: Option<RunRecord>,
    /// A resume's newest complete checkpoint (`None` if it was killed before its first).
    resume: Option<ResumePoint>,
    /// `--continue-from`: a checkpoint's weights and training state.
    continued: Option<(LoadedCheckpoint, TrainMeta)>,
    /// The finetune's parent, with its weights when this run starts from them.
    parent: Option<(ParentRef, Option<LoadedCheckpoint>)>,
}

/// Everything before the first step: the run's origin (resume, continue,
/// finetune or scratch), settings, data and `run.json`, then the model,
/// optimizer and state with the starting weights in, the schedule, the
/// sampler and the metrics log.
fn set_up(opts: &RunOptions, device: Device) -> Result<Setup, TrainError> {
    let out = &opts.out;
    let Origin { record, resume, continued, parent } = origin(opts, device)?;
    let cfg = run_config(opts, &record, &continued, &parent)?;
    if let Some((p, Some(loaded))) = &parent {
        checkpoint::check_fits(&loaded.meta.model, &cfg.model, &p.checkpoint)?;
    }
    let (corpus, data_dir) = load_data(opts, &record)?;
    let precision = match &record {
        Some(r) => r.precision,
        None => cfg.precision.resolve(device),
    };
    let record = match record {
        Some(r) => r,
        None => {
            std::fs::create_dir_all(out).map_err(|source| TrainError::Io { path: out.clone(), source })?;
            let r = RunRecord {
                style: opts.style.clone(),
                data_dir,
                manifest_hash: corpus.manifest_hash.clone(),
                data_summary: corpus.summary.clone(),
                config: cfg.clone(),
                precision,
                parent: parent.as_ref().map(|(p, _)| p.clone()),
            };
            checkpoint::write_run_record(out, &r)?;
            r
        }
    };

    // Model and optimizer; the initialisation draws from the seed even when
    // weights are loaded over it, so every kind of start draws the same.
    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(device);
    let mut model = MusicTransformer::new(&vs.root(), &cfg.model);
    model.set_precision(precision);
    if let Some((_, Some(loaded))) = &parent {
        let tensors = loaded.vs.variables();
        checkpoint::fill_var_store(&vs, &tensors.into_iter().collect(), &loaded.paths.weights)?;
    }
    let adam = AdamWConfig { beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weight_decay: cfg.weight_decay };
    let mut opt = AdamW::new(&vs, |n| trainable(n, cfg.freeze_layers), adam);
    let mut state =
        TrainState { step: 0, epochs_done: 0.0, steps_per_epoch: 1, best_val_loss: None, precision, elapsed_s: 0.0 };
    let fresh = resume.is_none();
    let mut rewarm_from = None;
    if let Some((loaded, meta)) = &continued {
        checkpoint::fill_var_store(&vs, &loaded.vs.variables().into_iter().collect(), &loaded.paths.weights)?;
        state = TrainState { precision, ..meta.state };
        rewarm_from = Some(state.step);
    }
    if let Some(point) = &resume {
        checkpoint::fill_var_store(&vs, &point.weights, &point.paths.weights)?;
        opt.load_state(&point.optim, point.train.state.step as i64)
            .map_err(|e| CheckpointError::Tensors { path: point.paths.optim.clone(), message: e.to_string() })?;
        state = point.train.state;
    }

    // The schedule, the batches and the log.
    let tokens_per_step = cfg.batch_size * cfg.seq_len;
    let steps_per_epoch = corpus.train_events().div_ceil(tokens_per_step).max(1);
    state.steps_per_epoch = steps_per_epoch;
    let mut total_steps = cfg.epochs * steps_per_epoch;
    if let Some(m) = cfg.max_steps {
        total_steps = if cfg.epochs == 0 { m } else { total_steps.min(m) };
    }
    let sampler = Sampler::new(&corpus, cfg.batch_size, cfg.seq_len, cfg.augment, cfg.seed);
    let windows = data::validation_windows(&corpus, cfg.seq_len, cfg.val_max_windows);
    let metrics = MetricsLog::open(out, if fresh { None } else { Some(state.step) })?;
    Ok(Setup {
        record,
        cfg,
        corpus,
        vs,
        model,
        opt,
        state,
        fresh,
        rewarm_from,
        tokens_per_step,
        steps_per_epoch,
        total_steps,
        sampler,
        windows,
        metrics,
    })
}

/// Resume (`--resume`: the run's record and newest checkpoint), continue
/// (`--continue-from`), finetune (`--from`) or scratch; a new run's folder is
/// checked (and with `--force` cleared) here.
fn origin(opts: &RunOptions, device: Device) -> Result<Origin, TrainError> {
    let out = &opts.out;
    let (record, resume) = if opts.resume {
        if !out.join(RUN_FILE).is_file() {
            return Err(TrainError::NoRunToResume(out.clone()));
        }
        let mut record = checkpoint::read_run_record(out)?;
        let changes = resume_changes(opts, &record)?;
        if !changes.is_empty() {
            return Err(TrainError::ResumeConflict(changes));
        }
        if let Some(e) = opts.epochs {
            record.config.epochs = e;
        }
        if let Some(s) = opts.steps {
            record.config.max_steps = Some(s);
        }
        if let Some(d) = &opts.data {
            record.data_dir = d.clone();
        }
        let point = match checkpoint::latest_resume_point(out, device) {
            Ok(p) => Some(p),
            // Killed before its first checkpoint: start the same run again.
            Err(CheckpointError::NothingToResume(_)) => None,
            Err(e) => return Err(e.into()),
        };
        (Some(record), point)
    } else {
        if run_folder_in_use(out) {
            if !opts.force {
                return Err(TrainError::RunExists(out.clone()));
            }
            clear_run_folder(out)?;
        }
        (None, None)
    };

    // Weights, settings and step to continue from (a fresh machine's start).
    let continued = match (&record, &opts.continue_from) {
        (None, Some(path)) => {
            let loaded = checkpoint::load_checkpoint(path, device)?;
            let meta = checkpoint::train_meta(&loaded.meta).ok_or_else(|| CheckpointError::Sidecar {
                path: loaded.paths.sidecar.clone(),
                message: "holds no training state (settings, step) to continue from".into(),
            })?;
            Some((loaded, meta))
        }
        _ => None,
    };

    let parent = match (&record, &opts.from) {
        (Some(r), _) => r.parent.clone().map(|p| (p, None)),
        // A continued run keeps the lineage of the run it continues.
        (None, _) if continued.is_some() => continued.as_ref().and_then(|(_, m)| m.parent.clone()).map(|p| (p, None)),
        (None, Some(from)) => {
            let path = checkpoint::resolve_from(from, &opts.runs_dir)?;
            let loaded = checkpoint::load_checkpoint(&path, device)?;
            let chain_epochs = checkpoint::train_meta(&loaded.meta)
                .map(|t| t.state.epochs_done + t.parent.map(|p| p.chain_epochs).unwrap_or(0.0))
                .unwrap_or(0.0);
            let run_dir = path
                .parent()
                .filter(|d| d.join(RUN_FILE).is_file())
                .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf()));
            let parent_ref = ParentRef {
                checkpoint: std::fs::canonicalize(&path).unwrap_or(path),
                run_dir,
                style: loaded.meta.style.clone(),
                chain_epochs,
            };
            Some((parent_ref, Some(loaded)))
        }
        (None, None) => None,
    };
    Ok(Origin { record, resume, continued, parent })
}

/// The run's settings: a resumed run's own, a continued checkpoint's (with
/// `--epochs`/`--steps`), or a new run's from defaults, `--config` and flags.
fn run_config(
    opts: &RunOptions,
    record: &Option<RunRecord>,
    continued: &Option<(LoadedCheckpoint, TrainMeta)>,
    parent: &Option<(ParentRef, Option<LoadedCheckpoint>)>,
) -> Result<TrainConfig, TrainError> {
    Ok(match (record, continued) {
        (Some(r), _) => {
            r.config.validate()?;
            r.config.clone()
        }
        (None, Some((_, meta))) => {
            let mut c = meta.config.clone();
            c.epochs = opts.epochs.unwrap_or(c.epochs);
            c.max_steps = opts.steps.or(c.max_steps);
            c.validate()?;
            c
        }
        (None, None) => build_config(opts, parent.as_ref().and_then(|(_, l)| l.as_ref()).map(|l| l.meta.model))?,
    })
}

/// The corpus and its folder: a resumed run's own (refused if its manifest
/// changed), else `--data`. Skipped files and notices are printed.
fn load_data(opts: &RunOptions, record: &Option<RunRecord>) -> Result<(Corpus, PathBuf), TrainError> {
    let data_dir = match (record, &opts.data) {
        (Some(r), _) => r.data_dir.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => return Err(TrainError::NoData),
    };
    let corpus = Corpus::load(&data_dir)?;
    for s in &corpus.skipped {
        eprintln!("warning: skipping {}: {}", s.path.display(), s.reason);
    }
    if let Some(n) = &corpus.notice {
        eprintln!("note: {n}");
    }
    if let Some(r) = record {
        if r.manifest_hash != corpus.manifest_hash {
            return Err(TrainError::DataChanged {
                dir: data_dir,
                found: corpus.manifest_hash.clone(),
                expected: r.manifest_hash.clone(),
            });
        }
    }
    Ok((corpus, data_dir))
}

impl Setup {
    /// The line a run starts with: style, origin, size, data, schedule,
    /// device and precision, and how it started.
    fn headline(&self, opts: &RunOptions, device: Device) -> String {
        let (record, state) = (&self.record, &self.state);
        format!(
            "{}: {} | {} params | {} | {} steps/epoch, {} steps | {:?} {} | {}",
            record.style,
            if let Some(p) = &record.parent {
                format!("finetune from {}", p.checkpoint.display())
            } else {
                "from scratch".into()
            },
            self.cfg.model.num_params(),
            self.corpus.summary,
            self.steps_per_epoch,
            self.total_steps,
            device,
            match record.precision {
                Precision::Fp32 => "fp32",
                Precision::Bf16 => "bf16 mixed",
            },
            match (self.fresh, &opts.continue_from) {
                (true, Some(from)) => format!(
                    "continued at step {} from {} (fresh optimizer, {REWARM_STEPS}-step warm-up)",
                    state.step,
                    from.display()
                ),
                (true, None) => "new run".to_string(),
                (false, _) => format!("resumed at step {}", state.step),
            },
        )
    }
}

/// What every checkpoint of a run shares.
struct SaveContext<'a> {
    cfg: &'a TrainConfig,
    style: &'a str,
    corpus: &'a Corpus,
    parent: &'a Option<ParentRef>,
}

impl SaveContext<'_> {
    fn meta(&self, state: &TrainState) -> CheckpointMeta {
        let train = TrainMeta { config: self.cfg.clone(), state: *state, parent: self.parent.clone() };
        CheckpointMeta {
            model: self.cfg.model,
            train: serde_json::to_value(&train).unwrap_or(serde_json::Value::Null),
            style: self.style.to_string(),
            epoch: state.step / state.steps_per_epoch.max(1),
            step: state.step,
            best_val_loss: state.best_val_loss,
            manifest_hash: self.corpus.manifest_hash.clone(),
            codec_version: codec::CODEC_VERSION,
            data_summary: self.corpus.summary.clone(),
            contrast: None,
            lead: None,
            lead_key: None,
            lead_register: None,
        }
    }
}

/// Running sums over a logging interval or an epoch.
#[derive(Debug, Default)]
struct Accumulator {
    steps: usize,
    loss: f64,
    acc: f64,
    grad_norm: f64,
    tokens: usize,
    seconds: f64,
}

impl Accumulator {
    fn add(&mut self, s: &StepStats, tokens: usize, seconds: f64) {
        self.steps += 1;
        self.loss += s.loss;
        self.acc += s.accuracy;
        self.grad_norm += s.grad_norm;
        self.tokens += tokens;
        self.seconds += seconds;
    }

    fn mean_ms(&self) -> f64 {
        1000.0 * self.seconds / self.steps.max(1) as f64
    }

    fn row(&self, kind: RowKind, state: &TrainState, lr: f64, val: Option<(f64, f64)>) -> Row {
        let n = self.steps.max(1) as f64;
        let some = |x: f64| (self.steps > 0).then_some(x);
        Row {
            kind,
            epoch: state.epochs_done,
            step: state.step,
            lr,
            train_loss: some(self.loss / n),
            train_acc: some(self.acc / n),
            val_loss: val.map(|v| v.0),
            val_acc: val.map(|v| v.1),
            tokens_per_s: (self.seconds > 0.0).then(|| self.tokens as f64 / self.seconds),
            grad_norm: some(self.grad_norm / n),
            elapsed_s: state.elapsed_s,
        }
    }
}

/// `step 1200 | loss 2.341 | val 2.410 | lr 3.0e-4 | 812 ms`, plus accuracy,
/// epoch and throughput.
fn log_line(row: &Row, ms_per_step: f64) -> String {
    let mut line = format!("step {}", row.step);
    if let Some(l) = row.train_loss {
        line += &format!(" | loss {l:.3}");
    }
    if let Some(v) = row.val_loss {
        line += &format!(" | val {v:.3}");
    }
    line += &format!(" | lr {:.1e} | {ms_per_step:.0} ms", row.lr);
    if let Some(a) = row.train_acc {
        line += &format!(" | acc {a:.3}");
    }
    if let Some(a) = row.val_acc {
        line += &format!(" | val acc {a:.3}");
    }
    line += &format!(" | epoch {:.2}", row.epoch);
    if let Some(t) = row.tokens_per_s {
        line += &format!(" | {t:.0} tok/s");
    }
    line
}

fn progress_bar(enabled: bool, total: usize, position: usize) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    let style = ProgressStyle::with_template("{bar:30} {pos}/{len} steps | {msg} | ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_position(position as u64);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11: `--resume` with the flags the run started with continues it; a flag that would
    /// change it is refused by name, with the run's value and the asked one.
    #[test]
    fn resume_accepts_the_runs_own_flags_and_names_changes() {
        let dir = tempfile::tempdir().expect("tmp");
        let config = dir.path().join("jazz.toml");
        std::fs::write(&config, "preset = \"tiny\"\nepochs = 35\nlr = 3e-4\n[model]\ndropout = 0.15\n").expect("write");
        let config = config.display().to_string();
        let started = RunOptions { config: Some(config.clone()), seed: Some(9), ..RunOptions::new("jazz", dir.path()) };
        let record = RunRecord {
            style: "jazz".into(),
            data_dir: dir.path().into(),
            manifest_hash: String::new(),
            data_summary: String::new(),
            // As the run was set up: its config file, with the epochs given on the command line.
            config: build_config(&RunOptions { epochs: Some(3), ..started.clone() }, None).expect("config"),
            precision: Precision::Fp32,
            parent: None,
        };
        let resume = |opts: RunOptions| resume_changes(&RunOptions { resume: true, ..opts }, &record).expect("checked");
        assert_eq!(resume(started.clone()), Vec::<String>::new(), "the run's own --config and --seed");
        assert!(resume(RunOptions { steps: Some(50), epochs: Some(4), ..started.clone() }).is_empty());
        assert!(resume(RunOptions::new("jazz", dir.path())).is_empty(), "no flags at all");

        let changed = resume(RunOptions { seed: Some(10), config: Some("tiny".into()), ..started.clone() });
        assert_eq!(
            changed,
            [
                "--config sets lr 0.001 (the run's is 0.0003)",
                "--config sets model.dropout 0.1 (the run's is 0.15)",
                "--seed sets seed 10 (the run's is 9)"
            ],
            "each change named, nothing else"
        );
        let from = resume(RunOptions { from: Some("classical".into()), freeze_layers: Some(2), ..started });
        assert_eq!(from.len(), 2, "{from:?}");
        assert!(from[0].starts_with("--from classical (the run started from scratch)"), "{from:?}");
        assert_eq!(from[1], "--freeze-layers sets freeze_layers 2 (the run's is 0)");
        let message = TrainError::ResumeConflict(from).to_string();
        assert!(message.contains("--from classical") && message.contains("freeze_layers 2"), "{message}");

        // A finetune resumed with its own --from (the same checkpoint, by another spelling) goes on.
        let parent = CheckpointPaths::new(&dir.path().join("classical/best"));
        std::fs::create_dir_all(dir.path().join("classical")).expect("mkdir");
        for file in [&parent.weights, &parent.sidecar] {
            std::fs::write(file, b"{}").expect("write");
        }
        let record = RunRecord {
            parent: Some(ParentRef {
                checkpoint: std::fs::canonicalize(&parent.weights).expect("canonical"),
                run_dir: None,
                style: "classical".into(),
                chain_epochs: 1.0,
            }),
            ..record
        };
        let by_file = parent.sidecar.display().to_string();
        let finetune = RunOptions { from: Some(by_file), resume: true, ..RunOptions::new("jazz", dir.path()) };
        assert_eq!(resume_changes(&finetune, &record).expect("checked"), Vec::<String>::new());
    }

    #[test]
    fn freezing_covers_the_embedding_and_the_first_blocks() {
        assert!(trainable("layers.0.ff.fc1.weight", 0));
        assert!(!trainable("embed.weight", 1));
        assert!(!trainable("layers.0.attn.q.weight", 2));
        assert!(!trainable("layers.1.ln1.bias", 2));
        assert!(trainable("layers.2.ln1.bias", 2));
        assert!(trainable("layers.10.ln1.bias", 2));
        assert!(trainable("head.weight", 2));
        assert!(trainable("ln_f.weight", 2));
    }

    #[test]
    fn a_continuation_loss_skips_the_first_events_of_every_crop() {
        let targets = Tensor::from_slice(&[5i64, 6, 7, 8, 9, 10]).view([2, 3]);
        let masked = continuation_targets(&targets, 2);
        let pad = i64::from(codec::PAD);
        assert_eq!(Vec::<i64>::try_from(masked.reshape([-1])).expect("ints"), vec![pad, pad, 7, pad, pad, 10]);
        assert_eq!(Vec::<i64>::try_from(targets.reshape([-1])).expect("ints"), vec![5, 6, 7, 8, 9, 10], "a copy");
        // The loss counts only what is left.
        let logits = Tensor::zeros([2, 3, codec::VOCAB_SIZE as i64], (Kind::Float, Device::Cpu));
        let (_, _, counted) = loss_and_hits(&logits, &masked, Reduction::Sum);
        assert_eq!(counted.int64_value(&[]), 2);
        let cfg = TrainConfig { seq_len: 512, loss_from: 0.5, ..TrainConfig::default() };
        assert_eq!(cfg.loss_from_events(), 256);
        assert!(TrainConfig { loss_from: 1.0, ..TrainConfig::default() }.validate().is_err());
    }

    #[test]
    fn log_lines_read_like_the_style_guide() {
        let row = Row {
            kind: RowKind::Step,
            epoch: 1.5,
            step: 1200,
            lr: 3e-4,
            train_loss: Some(2.3414),
            train_acc: Some(0.4),
            val_loss: Some(2.41),
            val_acc: None,
            tokens_per_s: Some(1262.0),
            grad_norm: None,
            elapsed_s: 10.0,
        };
        let line = log_line(&row, 812.2);
        assert!(line.starts_with("step 1200 | loss 2.341 | val 2.410 | lr 3.0e-4 | 812 ms"), "{line}");
    }
}
