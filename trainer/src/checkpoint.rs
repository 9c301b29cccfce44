//! Checkpoints in libtorch: a model's weights (and AdamW's moments) to and
//! from safetensors files, loading a checkpoint into a `VarStore`, saving,
//! pruning and resuming from a run folder's step checkpoints.
//!
//! The files' layout and the JSON records beside them (run folder, sidecar,
//! `run.json`) are [`cadenza_core::records`], which tools without libtorch
//! read too; here they are typed with the trainer's [`TrainConfig`] and
//! [`Precision`]. Every file is written atomically (temporary file, then
//! rename) and the sidecar goes last, so a checkpoint exists exactly when its
//! sidecar does; the step is also stored in each safetensors header, so a
//! torn pair (a kill between two renames) is detected instead of loaded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, View};
use tch::{nn, Device, Kind, Tensor};

use cadenza_core::dataset::CheckpointMeta;
use cadenza_core::fsutil::write_atomic;
use cadenza_core::records::{self, RecordError};
use cadenza_core::ModelConfig;

pub use cadenza_core::records::{
    run_checkpoint, step_checkpoint_paths, step_checkpoints, CheckpointPaths, ParentRef, BEST, CHECKPOINT_DIR, RUN_FILE,
};

use crate::config::TrainConfig;
use crate::model::{MusicTransformer, Precision};

/// safetensors header key holding the step a file belongs to.
const STEP_KEY: &str = "cadenza.step";

/// `run.json` as the trainer writes and reads it.
pub type RunRecord = records::RunRecord<TrainConfig, Precision>;
/// The trainer's part of a sidecar (`CheckpointMeta::train`).
pub type TrainMeta = records::TrainMeta<TrainConfig, Precision>;
/// Where a run stands (see [`records::TrainState`]).
pub type TrainState = records::TrainState<Precision>;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a checkpoint sidecar: {message}", path.display())]
    Sidecar { path: PathBuf, message: String },
    #[error("{}: not a readable safetensors file: {message}", path.display())]
    Tensors { path: PathBuf, message: String },
    #[error("{}: tensor {name} is missing", path.display())]
    MissingTensor { path: PathBuf, name: String },
    #[error("{}: tensor {name} has shape {found:?}, the model needs {expected:?}", path.display())]
    Shape { path: PathBuf, name: String, found: Vec<usize>, expected: Vec<i64> },
    #[error("{}: holds step {found}, its sidecar says step {expected} (a write was interrupted)", path.display())]
    Torn { path: PathBuf, found: String, expected: usize },
    #[error(
        "{}: this model does not fit the requested one: {why}",
        path.display()
    )]
    Incompatible { path: PathBuf, why: String },
    /// A sidecar or run record that cannot be read (or is for another codec version).
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("--from {value}: no checkpoint there (tried {tried})")]
    FromNotFound { value: String, tried: String },
    #[error("{}: no complete checkpoint to resume from", .0.display())]
    NothingToResume(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_path_buf(), source }
}

/// A tensor copied out of libtorch for serialisation, as float32 or float16.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.bytes[..]).into()
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn to_raw(t: &Tensor, dtype: Dtype) -> Result<Raw, tch::TchError> {
    let flat = t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?.f_view([-1])?;
    let values = Vec::<f32>::try_from(&flat)?;
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        match dtype {
            Dtype::F16 => bytes.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
            _ => bytes.extend_from_slice(&v.to_le_bytes()),
        }
    }
    let dtype = if dtype == Dtype::F16 { Dtype::F16 } else { Dtype::F32 };
    Ok(Raw { dtype, shape: t.size().iter().map(|&d| d as usize).collect(), bytes })
}

/// Write named float32 tensors atomically, with the step in the header.
pub fn write_tensors(path: &Path, tensors: &[(String, Tensor)], step: usize) -> Result<(), CheckpointError> {
    write_tensors_as(path, tensors, step, Dtype::F32)
}

/// [`write_tensors`] as float32 or (for shipping, half the bytes) float16.
pub fn write_tensors_as(
    path: &Path,
    tensors: &[(String, Tensor)],
    step: usize,
    dtype: Dtype,
) -> Result<(), CheckpointError> {
    let err = |message: String| CheckpointError::Tensors { path: path.to_path_buf(), message };
    let raws: Vec<(String, Raw)> = tensors
        .iter()
        .map(|(n, t)| to_raw(t, dtype).map(|r| (n.clone(), r)))
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    let info = HashMap::from([(STEP_KEY.to_string(), step.to_string())]);
    let bytes = safetensors::serialize(raws.iter().map(|(n, r)| (n.as_str(), r)), Some(info))
        .map_err(|e| err(e.to_string()))?;
    write_atomic(path, &bytes).map_err(io(path))
}

/// Read every tensor of a float32 or float16 safetensors file (onto
/// `device`, as float32) and the step recorded in its header.
pub fn read_tensors(path: &Path, device: Device) -> Result<(HashMap<String, Tensor>, Option<String>), CheckpointError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let err = |message: String| CheckpointError::Tensors { path: path.to_path_buf(), message };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| err(e.to_string()))?;
    let step = header.metadata().as_ref().and_then(|m| m.get(STEP_KEY).cloned());
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => {
                view.data().chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            other => return Err(err(format!("tensor {name} is {other:?}, expected F32 or F16"))),
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_slice(&values)
            .and_then(|t| t.f_view(shape.as_slice()))
            .and_then(|t| t.f_to_device(device))
            .map_err(|e| err(e.to_string()))?;
        out.insert(name, t);
    }
    Ok((out, step))
}

/// Copy checkpoint `from` (its weights and sidecar) to `to` (a base path, as
/// [`CheckpointPaths::new`] takes it) with float16 weights and no optimizer
/// state: what ships in `models/checkpoints/`, at half the bytes.
pub fn ship_half(from: &Path, to: &Path) -> Result<CheckpointPaths, CheckpointError> {
    let src = CheckpointPaths::new(from);
    let dst = CheckpointPaths::new(to);
    let meta = read_sidecar(&src.sidecar)?;
    let (tensors, step) = read_tensors(&src.weights, Device::Cpu)?;
    check_step(&src.weights, step, meta.step)?;
    let mut named: Vec<(String, Tensor)> = tensors.into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(dir) = dst.weights.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    write_tensors_as(&dst.weights, &named, meta.step, Dtype::F16)?;
    let sidecar = std::fs::read(&src.sidecar).map_err(io(&src.sidecar))?;
    write_atomic(&dst.sidecar, &sidecar).map_err(io(&dst.sidecar))?;
    Ok(dst)
}

/// A checkpoint's sidecar ([`records::read_sidecar`]).
pub fn read_sidecar(path: &Path) -> Result<CheckpointMeta, CheckpointError> {
    Ok(records::read_sidecar(path)?)
}

/// The trainer's settings and state inside a sidecar, when the checkpoint came from this trainer.
pub fn train_meta(meta: &CheckpointMeta) -> Option<TrainMeta> {
    records::train_meta(meta)
}

/// Copy `tensors` into the variables of `vs` (all must be present, with their shapes).
pub fn fill_var_store(
    vs: &nn::VarStore,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
) -> Result<(), CheckpointError> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, mut var) in vars {
        let src = tensors
            .get(&name)
            .ok_or_else(|| CheckpointError::MissingTensor { path: path.to_path_buf(), name: name.clone() })?;
        if src.size() != var.size() {
            return Err(CheckpointError::Shape {
                path: path.to_path_buf(),
                name,
                found: src.size().iter().map(|&d| d as usize).collect(),
                expected: var.size(),
            });
        }
        tch::no_grad(|| var.copy_(src));
    }
    Ok(())
}

/// A checkpoint loaded for inference, export or finetuning.
#[derive(Debug)]
pub struct LoadedCheckpoint {
    pub vs: nn::VarStore,
    pub model: MusicTransformer,
    pub meta: CheckpointMeta,
    pub paths: CheckpointPaths,
}

/// Load a checkpoint (`x.safetensors`, `x.json` or the base path `x`): the
/// model its sidecar describes, its weights in a fresh `VarStore` on `device`.
pub fn load_checkpoint(path: &Path, device: Device) -> Result<LoadedCheckpoint, CheckpointError> {
    let paths = CheckpointPaths::new(path);
    let meta = read_sidecar(&paths.sidecar)?;
    meta.model
        .validate()
        .map_err(|e| CheckpointError::Sidecar { path: paths.sidecar.clone(), message: e.to_string() })?;
    let vs = nn::VarStore::new(device);
    let model = MusicTransformer::new(&vs.root(), &meta.model);
    let (tensors, step) = read_tensors(&paths.weights, device)?;
    check_step(&paths.weights, step, meta.step)?;
    fill_var_store(&vs, &tensors, &paths.weights)?;
    Ok(LoadedCheckpoint { vs, model, meta, paths })
}

fn check_step(path: &Path, found: Option<String>, expected: usize) -> Result<(), CheckpointError> {
    match found {
        Some(s) if s != expected.to_string() => {
            Err(CheckpointError::Torn { path: path.to_path_buf(), found: s, expected })
        }
        _ => Ok(()),
    }
}

/// Whether weights shaped by `have` can start a model shaped by `want`
/// (dropout may differ: it has no weights).
pub fn check_fits(have: &ModelConfig, want: &ModelConfig, path: &Path) -> Result<(), CheckpointError> {
    let mut why = Vec::new();
    let fields = [
        ("vocab_size", have.vocab_size, want.vocab_size),
        ("n_layers", have.n_layers, want.n_layers),
        ("d_model", have.d_model, want.d_model),
        ("n_heads", have.n_heads, want.n_heads),
        ("d_ff", have.d_ff, want.d_ff),
        ("max_seq_len", have.max_seq_len, want.max_seq_len),
    ];
    for (name, h, w) in fields {
        if h != w {
            why.push(format!("{name} {h} (checkpoint) vs {w} (config)"));
        }
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(CheckpointError::Incompatible { path: path.to_path_buf(), why: why.join(", ") })
    }
}

/// Resolve `--from`: a checkpoint file or base path, a run folder (its `best`
/// checkpoint, else its latest step checkpoint), or a style name (the run
/// folder `runs_dir/<name>`, else the shipped checkpoint
/// `models/checkpoints/<name>`, so `--from classical` works on a fresh machine).
pub fn resolve_from(value: &str, runs_dir: &Path) -> Result<PathBuf, CheckpointError> {
    let as_path = Path::new(value);
    let mut tried = Vec::new();
    for dir in [as_path.to_path_buf(), runs_dir.join(value)] {
        if dir.is_dir() {
            if let Some(ckpt) = run_checkpoint(&dir) {
                return Ok(ckpt);
            }
            tried.push(format!("{} (a folder without checkpoints)", dir.display()));
        } else {
            tried.push(dir.display().to_string());
        }
    }
    let paths = CheckpointPaths::new(as_path);
    if paths.sidecar.is_file() && paths.weights.is_file() {
        return Ok(paths.weights);
    }
    tried.push(paths.weights.display().to_string());
    if let Some(shipped) = cadenza_core::locate::shipped_checkpoint(value) {
        eprintln!("finetuning from the shipped checkpoint {}", shipped.display());
        return Ok(shipped);
    }
    tried.push(format!("the shipped {}", cadenza_core::locate::SHIPPED_CHECKPOINTS_DIR));
    Err(CheckpointError::FromNotFound { value: value.to_string(), tried: tried.join(", ") })
}

/// Save weights (+ moments when `optim` is given) and then the sidecar.
pub fn save_checkpoint(
    paths: &CheckpointPaths,
    vs: &nn::VarStore,
    optim: Option<&[(String, Tensor)]>,
    meta: &CheckpointMeta,
) -> Result<(), CheckpointError> {
    if let Some(parent) = paths.sidecar.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    write_tensors(&paths.weights, &vars, meta.step)?;
    if let Some(state) = optim {
        write_tensors(&paths.optim, state, meta.step)?;
    }
    Ok(records::write_sidecar(&paths.sidecar, meta)?)
}

/// Delete step checkpoints beyond the newest `keep`; the sidecar goes first so
/// a kill mid-way never leaves a sidecar without its weights.
pub fn prune_step_checkpoints(dir: &Path, keep: usize) -> Result<(), CheckpointError> {
    let all = step_checkpoints(dir);
    let excess = all.len().saturating_sub(keep.max(1));
    for (_, p) in all.into_iter().take(excess) {
        for f in [&p.sidecar, &p.weights, &p.optim] {
            match std::fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CheckpointError::Io { path: f.clone(), source: e }),
            }
        }
    }
    Ok(())
}

/// Everything a resume restores.
#[derive(Debug)]
pub struct ResumePoint {
    pub paths: CheckpointPaths,
    pub meta: CheckpointMeta,
    pub train: TrainMeta,
    pub weights: HashMap<String, Tensor>,
    pub optim: HashMap<String, Tensor>,
}

/// The newest complete step checkpoint of a run folder; torn or unreadable
/// ones (a kill during a save) are skipped with a warning.
pub fn latest_resume_point(dir: &Path, device: Device) -> Result<ResumePoint, CheckpointError> {
    for (_, paths) in step_checkpoints(dir).into_iter().rev() {
        match read_resume_point(&paths, device) {
            Ok(p) => return Ok(p),
            Err(e) => eprintln!("warning: skipping checkpoint: {e}"),
        }
    }
    Err(CheckpointError::NothingToResume(dir.to_path_buf()))
}

fn read_resume_point(paths: &CheckpointPaths, device: Device) -> Result<ResumePoint, CheckpointError> {
    let meta = read_sidecar(&paths.sidecar)?;
    let train = train_meta(&meta).ok_or_else(|| CheckpointError::Sidecar {
        path: paths.sidecar.clone(),
        message: "no trainer state in `train`".into(),
    })?;
    let (weights, step) = read_tensors(&paths.weights, device)?;
    check_step(&paths.weights, step, meta.step)?;
    let (optim, step) = read_tensors(&paths.optim, device)?;
    check_step(&paths.optim, step, meta.step)?;
    Ok(ResumePoint { paths: paths.clone(), meta, train, weights, optim })
}

pub fn write_run_record(dir: &Path, record: &RunRecord) -> Result<(), CheckpointError> {
    Ok(records::write_run_record(dir, record)?)
}

/// `run.json` with the trainer's settings typed.
pub fn read_run_record(dir: &Path) -> Result<RunRecord, CheckpointError> {
    Ok(records::read_run_record(dir)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_round_trip_bit_for_bit_with_their_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.safetensors");
        let a = Tensor::randn([3, 5], (Kind::Float, Device::Cpu));
        let b = Tensor::from_slice(&[f32::MIN_POSITIVE, -0.0, 1e-38, 3.5]);
        write_tensors(&path, &[("a".into(), a.shallow_clone()), ("b.c".into(), b.shallow_clone())], 42).expect("write");
        let (back, step) = read_tensors(&path, Device::Cpu).expect("read");
        assert_eq!(step.as_deref(), Some("42"));
        assert!(back["a"].equal(&a));
        assert!(back["b.c"].equal(&b));
    }

    #[test]
    fn half_precision_weights_read_back_within_their_rounding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.safetensors");
        let a = Tensor::randn([64, 8], (Kind::Float, Device::Cpu));
        write_tensors_as(&path, &[("a".into(), a.shallow_clone())], 3, Dtype::F16).expect("write");
        let bytes = std::fs::metadata(&path).expect("written").len();
        assert!(bytes < 64 * 8 * 4 / 2 + 200, "two bytes a weight: {bytes}");
        let (back, step) = read_tensors(&path, Device::Cpu).expect("read");
        assert_eq!(step.as_deref(), Some("3"));
        let worst = (&back["a"] - &a).abs().max().double_value(&[]);
        assert!(worst <= 4.0 * 2f64.powi(-11), "within half's rounding of values below 4: {worst}");
    }

    #[test]
    fn a_torn_pair_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.safetensors");
        write_tensors(&path, &[("a".into(), Tensor::zeros([2], (Kind::Float, Device::Cpu)))], 7).expect("write");
        let (_, step) = read_tensors(&path, Device::Cpu).expect("read");
        assert!(matches!(check_step(&path, step, 8), Err(CheckpointError::Torn { expected: 8, .. })));
    }

    #[test]
    fn shapes_that_do_not_fit_are_named() {
        let e = check_fits(&ModelConfig::TINY, &ModelConfig::SMALL, Path::new("x.json")).expect_err("differs");
        let msg = e.to_string();
        assert!(msg.contains("d_model 64 (checkpoint) vs 256 (config)"), "{msg}");
        check_fits(&ModelConfig::TINY, &ModelConfig { dropout: 0.3, ..ModelConfig::TINY }, Path::new("x"))
            .expect("fits");
    }

    /// Issue 12: `--from NAME` finds a run first, then the shipped checkpoint (a fresh machine);
    /// a name that is neither is an error naming what was tried.
    #[test]
    fn from_a_name_is_a_run_then_the_shipped_checkpoint() {
        let runs = tempfile::tempdir().expect("tempdir");
        let shipped = cadenza_core::locate::shipped_checkpoint("classical").expect("classical is shipped");
        assert_eq!(resolve_from("classical", runs.path()).expect("shipped"), shipped);
        let err = resolve_from("no-such-style", runs.path()).expect_err("nothing").to_string();
        assert!(err.contains("the shipped models/checkpoints"), "{err}");
    }
}
