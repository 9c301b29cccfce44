//! What a training run leaves on disk, read and written without libtorch:
//! the run folder's layout, `run.json` ([`RunRecord`]), a checkpoint's JSON
//! sidecar ([`CheckpointMeta`] with the trainer's [`TrainMeta`] inside) and
//! `metrics.csv` ([`metrics`]). The trainer writes them; the model card, the
//! evaluations and the exporter read the same types.
//!
//! A run folder (`runs/<style>` by default) holds:
//! - `run.json`: a [`RunRecord`] (style, data, settings, parent checkpoint);
//! - `checkpoints/step-NNNNNNNN.*`: the last `keep_last` step checkpoints;
//! - `best.safetensors` + `best.json`: the lowest validation loss so far;
//! - `metrics.csv` and `plots/*.png`.
//!
//! A checkpoint is `<name>.safetensors` (the weights, named after the module
//! tree) and `<name>.json` (the sidecar); a step checkpoint adds
//! `<name>.optim.safetensors` (AdamW's moments). The sidecar is written last,
//! so a checkpoint exists exactly when its sidecar does.
//!
//! The trainer's settings and precision are its own types (`TrainConfig`,
//! `Precision` in cadenza-trainer), so the records take them as type
//! parameters: the trainer reads them typed, and a reader without the trainer
//! gets them as JSON values (the defaults). Both read the same files.

pub mod metrics;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codec;
use crate::dataset::CheckpointMeta;
use crate::fsutil::write_atomic;

/// The run record's file name in a run folder.
pub const RUN_FILE: &str = "run.json";
/// The folder of step checkpoints in a run folder.
pub const CHECKPOINT_DIR: &str = "checkpoints";
/// The base name of a run folder's best checkpoint.
pub const BEST: &str = "best";
const STEP_PREFIX: &str = "step-";

/// What a run folder records about itself, written when the run starts.
/// `C` is the trainer's settings, `P` its precision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord<C = Value, P = Value> {
    pub style: String,
    /// The data folder as given.
    pub data_dir: PathBuf,
    pub manifest_hash: String,
    pub data_summary: String,
    pub config: C,
    /// The precision `config.precision` resolved to on the first device.
    pub precision: P,
    /// Where the starting weights came from (a finetune), if anywhere.
    pub parent: Option<ParentRef>,
}

/// The checkpoint a finetune started from, and where its run sits on the
/// chain's epoch axis (the plots put this run's epochs after it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParentRef {
    pub checkpoint: PathBuf,
    /// The parent's run folder, when the checkpoint lives in one.
    pub run_dir: Option<PathBuf>,
    pub style: String,
    /// Epochs (fractional) of the whole chain up to the parent checkpoint.
    pub chain_epochs: f64,
}

/// The trainer's part of a sidecar (`CheckpointMeta::train`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainMeta<C = Value, P = Value> {
    pub config: C,
    pub state: TrainState<P>,
    pub parent: Option<ParentRef>,
}

/// Where a run stands; with the weights and moments it is all a resume needs
/// (batches and dropout masks are functions of the seed and the step).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState<P = Value> {
    /// Optimizer steps taken.
    pub step: usize,
    /// Epochs done, fractional (`step / steps_per_epoch`).
    pub epochs_done: f64,
    pub steps_per_epoch: usize,
    pub best_val_loss: Option<f64>,
    pub precision: P,
    /// Wall-clock training time so far.
    pub elapsed_s: f64,
}

/// A run record or sidecar that cannot be read, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a {what}: {message}", path.display())]
    Format { path: PathBuf, what: &'static str, message: String },
    #[error("{}: codec version {found}, this build's codec is version {}", path.display(), codec::CODEC_VERSION)]
    Codec { path: PathBuf, found: u32 },
}

const SIDECAR: &str = "checkpoint sidecar";
const RUN_RECORD: &str = "run record";

/// `<base>.safetensors`, `<base>.optim.safetensors`, `<base>.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointPaths {
    pub weights: PathBuf,
    pub optim: PathBuf,
    pub sidecar: PathBuf,
}

impl CheckpointPaths {
    /// From the base path without extension (`runs/jazz/best`) or any of the
    /// three files.
    pub fn new(path: &Path) -> Self {
        let s = path.to_string_lossy();
        let base = s
            .strip_suffix(".optim.safetensors")
            .or_else(|| s.strip_suffix(".safetensors"))
            .or_else(|| s.strip_suffix(".json"))
            .unwrap_or(&s)
            .to_string();
        Self {
            weights: PathBuf::from(format!("{base}.safetensors")),
            optim: PathBuf::from(format!("{base}.optim.safetensors")),
            sidecar: PathBuf::from(format!("{base}.json")),
        }
    }
}

/// The checkpoint a run folder offers to a finetune or an export: `best`, else the latest step checkpoint.
pub fn run_checkpoint(dir: &Path) -> Option<PathBuf> {
    let best = CheckpointPaths::new(&dir.join(BEST));
    if best.sidecar.is_file() && best.weights.is_file() {
        return Some(best.weights);
    }
    step_checkpoints(dir).last().map(|(_, p)| p.weights.clone())
}

/// Step checkpoints of a run folder whose sidecars exist, oldest first.
pub fn step_checkpoints(dir: &Path) -> Vec<(usize, CheckpointPaths)> {
    let Ok(entries) = std::fs::read_dir(dir.join(CHECKPOINT_DIR)) else { return Vec::new() };
    let mut out: Vec<(usize, CheckpointPaths)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix(STEP_PREFIX)?.strip_suffix(".json")?.parse().ok()?;
            Some((step, CheckpointPaths::new(&e.path())))
        })
        .collect();
    out.sort_by_key(|(s, _)| *s);
    out
}

/// The files of the step checkpoint `step` in run folder `dir`.
pub fn step_checkpoint_paths(dir: &Path, step: usize) -> CheckpointPaths {
    CheckpointPaths::new(&dir.join(CHECKPOINT_DIR).join(format!("{STEP_PREFIX}{step:08}")))
}

/// Read a checkpoint sidecar; one written for another codec version is refused.
pub fn read_sidecar(path: &Path) -> Result<CheckpointMeta, RecordError> {
    let meta: CheckpointMeta = read_json(path, SIDECAR)?;
    if meta.codec_version != codec::CODEC_VERSION {
        return Err(RecordError::Codec { path: path.to_path_buf(), found: meta.codec_version });
    }
    Ok(meta)
}

/// Write a checkpoint sidecar atomically (pretty JSON).
pub fn write_sidecar(path: &Path, meta: &CheckpointMeta) -> Result<(), RecordError> {
    write_json(path, meta, SIDECAR)
}

/// The trainer's settings and state inside a sidecar, when the checkpoint came from the trainer.
pub fn train_meta<C: DeserializeOwned, P: DeserializeOwned>(meta: &CheckpointMeta) -> Option<TrainMeta<C, P>> {
    serde_json::from_value(meta.train.clone()).ok()
}

/// Write `dir/run.json` atomically.
pub fn write_run_record<C: Serialize, P: Serialize>(dir: &Path, record: &RunRecord<C, P>) -> Result<(), RecordError> {
    write_json(&dir.join(RUN_FILE), record, RUN_RECORD)
}

/// Read `dir/run.json`.
pub fn read_run_record<C: DeserializeOwned, P: DeserializeOwned>(dir: &Path) -> Result<RunRecord<C, P>, RecordError> {
    read_json(&dir.join(RUN_FILE), RUN_RECORD)
}

/// The chain of runs from the one in `dir` back to its root (through each
/// record's `parent.run_dir`), newest first, with their folders. `dir`'s own
/// record must read; the chain stops at the first ancestor folder without a
/// readable record, and after `MAX_CHAIN_RUNS`.
pub fn run_chain(dir: &Path) -> Result<Vec<(PathBuf, RunRecord)>, RecordError> {
    let mut out = vec![(dir.to_path_buf(), read_run_record(dir)?)];
    while out.len() < MAX_CHAIN_RUNS {
        let Some(parent) = out.last().and_then(|(_, r)| r.parent.as_ref()?.run_dir.clone()) else { break };
        let Ok(record) = read_run_record(&parent) else { break };
        out.push((parent, record));
    }
    Ok(out)
}

/// Most runs [`run_chain`] follows (a guard against a record naming itself).
pub const MAX_CHAIN_RUNS: usize = 16;

fn read_json<T: DeserializeOwned>(path: &Path, what: &'static str) -> Result<T, RecordError> {
    let text = std::fs::read_to_string(path).map_err(|source| RecordError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|e| RecordError::Format {
        path: path.to_path_buf(),
        what,
        message: e.to_string(),
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T, what: &'static str) -> Result<(), RecordError> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| RecordError::Format {
        path: path.to_path_buf(),
        what,
        message: e.to_string(),
    })?;
    write_atomic(path, &json).map_err(|source| RecordError::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelConfig;

    #[test]
    fn paths_accept_any_of_the_three_files() {
        let a = CheckpointPaths::new(Path::new("runs/jazz/best"));
        assert_eq!(a, CheckpointPaths::new(Path::new("runs/jazz/best.safetensors")));
        assert_eq!(a, CheckpointPaths::new(Path::new("runs/jazz/best.json")));
        assert_eq!(a, CheckpointPaths::new(Path::new("runs/jazz/best.optim.safetensors")));
        assert_eq!(a.optim, PathBuf::from("runs/jazz/best.optim.safetensors"));
    }

    /// A sidecar as the trainer writes it, read back untyped: the fields a
    /// reader without the trainer uses are there.
    #[test]
    fn a_trainer_sidecar_reads_back_without_the_trainer_types() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let path = dir.join("best.json");
        let train = serde_json::json!({
            "config": {"batch_size": 8, "lr": 0.0005},
            "state": {"step": 40, "epochs_done": 2.5, "steps_per_epoch": 16, "best_val_loss": 2.1,
                      "precision": "bf16", "elapsed_s": 90.0},
            "parent": null
        });
        let meta = CheckpointMeta {
            model: ModelConfig::TINY,
            train,
            style: "jazz".into(),
            epoch: 2,
            step: 40,
            best_val_loss: Some(2.1),
            manifest_hash: "abc".into(),
            codec_version: codec::CODEC_VERSION,
            data_summary: "test".into(),
            contrast: None,
            lead: None,
            lead_key: None,
            lead_register: None,
        };
        write_sidecar(&path, &meta).expect("write");
        let back = read_sidecar(&path).expect("read");
        assert_eq!(back, meta);
        let t: TrainMeta = train_meta(&back).expect("trainer part");
        assert_eq!((t.state.step, t.state.elapsed_s), (40, 90.0));
        assert_eq!(t.state.precision, "bf16");
        assert_eq!(t.config["batch_size"], 8);

        let old = CheckpointMeta { codec_version: 0, ..meta };
        write_sidecar(&path, &old).expect("write");
        let e = read_sidecar(&path).expect_err("another codec");
        assert!(matches!(e, RecordError::Codec { found: 0, .. }) && e.to_string().contains("best.json"), "{e}");
        std::fs::write(&path, "{ not json").expect("write");
        let e = read_sidecar(&path).expect_err("not json");
        assert!(e.to_string().contains("best.json: not a checkpoint sidecar"), "{e}");
    }

    /// run.json files name their parent's run folder; the chain follows them back to the root.
    #[test]
    fn the_run_chain_follows_parents_to_the_root() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let record = |style: &str, parent: Option<&Path>| RunRecord::<Value, Value> {
            style: style.into(),
            data_dir: PathBuf::from(format!("data/{style}")),
            manifest_hash: String::new(),
            data_summary: String::new(),
            config: serde_json::json!({"seq_len": 128}),
            precision: Value::from("fp32"),
            parent: parent.map(|p| ParentRef {
                checkpoint: p.join("best.safetensors"),
                run_dir: Some(p.to_path_buf()),
                style: "parent".into(),
                chain_epochs: 1.5,
            }),
        };
        let (classical, jazz, pop) = (dir.join("classical"), dir.join("jazz"), dir.join("pop"));
        for (d, r) in [
            (&classical, record("classical", None)),
            (&jazz, record("jazz", Some(&classical))),
            (&pop, record("pop", Some(&jazz))),
        ] {
            std::fs::create_dir_all(d).expect("dir");
            write_run_record(d, &r).expect("write");
        }
        let chain = run_chain(&pop).expect("chain");
        assert_eq!(chain.iter().map(|(_, r)| r.style.as_str()).collect::<Vec<_>>(), ["pop", "jazz", "classical"]);
        assert_eq!(chain[1].0, jazz);
        // An ancestor whose record is gone ends the chain; the run's own record must read.
        std::fs::remove_file(classical.join(RUN_FILE)).expect("remove");
        let chain = run_chain(&pop).expect("chain");
        assert_eq!(chain.iter().map(|(_, r)| r.style.as_str()).collect::<Vec<_>>(), ["pop", "jazz"]);
        let e = run_chain(&classical).expect_err("no run.json of its own");
        assert!(e.to_string().contains("run.json"), "{e}");
        assert_eq!(read_run_record::<Value, Value>(&jazz).expect("read"), record("jazz", Some(&classical)));
        let e = read_run_record::<Value, Value>(dir).expect_err("no run.json");
        assert!(e.to_string().contains("run.json"), "{e}");
    }

    #[test]
    fn the_run_checkpoint_is_best_else_the_latest_step() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        assert_eq!(run_checkpoint(dir), None);
        for step in [5, 10] {
            let p = step_checkpoint_paths(dir, step);
            std::fs::create_dir_all(p.sidecar.parent().expect("parent")).expect("dir");
            std::fs::write(&p.sidecar, "{}").expect("sidecar");
            std::fs::write(&p.weights, "").expect("weights");
        }
        assert_eq!(step_checkpoints(dir).iter().map(|(s, _)| *s).collect::<Vec<_>>(), [5, 10]);
        assert_eq!(run_checkpoint(dir), Some(step_checkpoint_paths(dir, 10).weights));
        let best = CheckpointPaths::new(&dir.join(BEST));
        std::fs::write(&best.sidecar, "{}").expect("sidecar");
        std::fs::write(&best.weights, "").expect("weights");
        assert_eq!(run_checkpoint(dir), Some(best.weights));
    }
}
