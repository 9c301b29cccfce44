//! ONNX export: a checkpoint (`<name>.safetensors` + `<name>.json`, see
//! [`crate::dataset::CheckpointMeta`]) becomes one `<style>.onnx` decoder
//! graph with a KV cache, which the engine in [`crate::engine`] runs with
//! ONNX Runtime. It reads the safetensors file itself and needs no libtorch,
//! so the trainer, the command line and tests (random weights, see
//! [`random_weights`]) all export with it.
//!
//! The graph serves both prefill (`new` = a chunk of the context) and
//! single-step decoding (`new` = 1) on a KV cache whose buffers the engine
//! owns (graph version [`GRAPH_VERSION`], names in
//! [`crate::model::onnx_names`]): inputs `tokens` int64 `[batch, new]`,
//! `past_len` int64 `[1]` and per layer `cache_key_i` / `cache_value_i`
//! float32 `[batch, heads, capacity, head_dim]`, of which the first
//! `past_len` positions are filled; outputs `logits` `[batch, new, vocab]`
//! and `new_key_i` / `new_value_i` `[batch, heads, new, head_dim]`, which the
//! engine writes into its buffers. ONNX Runtime reads the buffers in place,
//! so a step reads the cache once and copies nothing of it (version 1 took
//! `past_key_i` and returned `present_key_i` = past + new: a `Concat` copy of
//! the whole cache per layer per step, half the kernel time of a long-context
//! step).
//!
//! Relative attention for the new positions against every cached one: the
//! logit of query `i` and key `j` is `(q_i . k_j + q_i . e_{i-j}) / sqrt(head_dim)`
//! (the architecture in [`crate::model`]). Scores come in two parts:
//! the cache part `[.., new, capacity]` (positions `>= past_len` masked) and
//! the causal new-by-new part `[.., new, new]`. Each adds its relative term
//! as a bias: `q . E^T` against the part's distances (rows of the reversed
//! `rel_emb`), then the paper's skewing (pad one column, flatten, drop `new`
//! elements, reshape), which lines distance `i - j` up under key `j` for
//! every query row without an `L x L x D` tensor. The parts are joined on the
//! short score axis for one softmax, split again, and each multiplies its own
//! values. The 1/sqrt(head_dim) scale is folded into the query projection,
//! and q, k, v come from one `[d, 3d]` product.
//!
//! Plain MatMul-based attention in standard ops (opset 17), so the file is
//! runnable by any ONNX Runtime since 1.17 and fully checkable by
//! `onnx.checker`. Measured with `scripts/bench/step_profile.py` (2 cores):
//! relative logits against the whole distance table, then sliced, instead of
//! gathering the rows a step needs, ran at the same speed within noise; in a
//! `base` step at 2,048 events the weight and cache products take about 80%
//! of the kernel time and stream at about the machine's read bandwidth. Not
//! tried: a contrib attention op (`com.microsoft.GroupQueryAttention`, which
//! can share its past and present buffers); it could only save the small ops
//! around those products, and would cost the full checker.
//!
//! The trainer calls [`export_onnx`] at the end of every training run;
//! `cargo xtask export` calls it on demand.

mod graph;
pub mod proto;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::codec;
use crate::dataset::CheckpointMeta;
use crate::model::{onnx_names, ModelConfig, ARCHITECTURE, GRAPH_VERSION};
use crate::records::{self, CheckpointPaths, RecordError};

use graph::{Attr, Dim, GraphBuilder};
use proto::{data_type, ModelProto, OperatorSetIdProto, StringStringEntryProto};

/// ONNX IR version written (IR 9 = ONNX 1.14; every ONNX Runtime since 1.15 reads it).
pub const IR_VERSION: i64 = 9;
/// Default-domain opset: 17 is the first with `LayerNormalization`.
pub const OPSET: i64 = 17;
/// Layer-norm epsilon; libtorch's default, which the trainer's layers use.
pub const LAYER_NORM_EPS: f32 = 1e-5;
/// Protobuf messages cannot exceed 2 GiB; larger models would need external data.
pub const MAX_MODEL_BYTES: usize = (2 << 30) - 1;

/// What went wrong while exporting, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{}: not a readable safetensors file: {message}", path.display())]
    Safetensors { path: PathBuf, message: String },
    /// The sidecar is missing, unreadable or for another codec version.
    #[error(transparent)]
    Meta(#[from] RecordError),
    #[error("{}: the checkpoint has no tensor `{name}`", path.display())]
    MissingWeight { path: PathBuf, name: String },
    #[error("{}: tensor `{name}` has shape {found:?}, the model config needs {expected:?}", path.display())]
    WeightShape { path: PathBuf, name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("{}: tensor `{name}` is {dtype}; the exporter reads float32, float16 and bfloat16 checkpoints", path.display())]
    WeightDtype { path: PathBuf, name: String, dtype: String },
    #[error("{}: {error}", path.display())]
    Config { path: PathBuf, error: crate::model::ConfigError },
    /// The sidecar's contrast advice names no style or an impossible strength.
    #[error("{}: its sidecar's contrast advice: {message}", path.display())]
    Contrast { path: PathBuf, message: String },
    /// The sidecar's lead advice says nothing.
    #[error("{}: its sidecar's lead advice: {message}", path.display())]
    Lead { path: PathBuf, message: String },
    #[error("{}: the model would be {bytes} bytes, over the 2 GiB protobuf limit", path.display())]
    TooLarge { path: PathBuf, bytes: usize },
}

/// Float32 tensors by name, as a checkpoint holds them.
#[derive(Debug, Clone, Default)]
pub struct Weights {
    /// Where they came from, for error messages.
    pub source: PathBuf,
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Weights {
    /// Read every tensor of a safetensors file (float32, or float16/bfloat16 widened to float32).
    pub fn read_safetensors(path: &Path) -> Result<Self, ExportError> {
        let bytes = std::fs::read(path).map_err(|error| ExportError::Io { path: path.to_path_buf(), error })?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| ExportError::Safetensors { path: path.to_path_buf(), message: e.to_string() })?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            // Half-precision checkpoints (what ships in models/checkpoints/) widen exactly.
            let data: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => {
                    view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
                }
                safetensors::Dtype::F16 => {
                    view.data().chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
                }
                safetensors::Dtype::BF16 => {
                    view.data().chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
                }
                other => {
                    return Err(ExportError::WeightDtype {
                        path: path.to_path_buf(),
                        name,
                        dtype: format!("{other:?}"),
                    })
                }
            };
            tensors.insert(name, (view.shape().to_vec(), data));
        }
        Ok(Self { source: path.to_path_buf(), tensors })
    }

    /// Write the tensors as a float32 safetensors file, atomically: a checkpoint
    /// made without libtorch (tests, tools).
    pub fn write_safetensors(&self, path: &Path) -> Result<(), ExportError> {
        let safetensors_error = |e: safetensors::SafeTensorError| ExportError::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        let bytes: Vec<(&String, &Vec<usize>, Vec<u8>)> = names
            .into_iter()
            .map(|n| {
                let (shape, data) = &self.tensors[n];
                (n, shape, data.iter().flat_map(|v| v.to_le_bytes()).collect())
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(n, shape, b)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, (*shape).clone(), b)
                    .map(|v| (n.as_str(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(safetensors_error)?;
        let file = safetensors::serialize(views, None).map_err(safetensors_error)?;
        crate::fsutil::write_atomic(path, &file).map_err(|error| ExportError::Io { path: path.to_path_buf(), error })
    }

    /// The tensor `name`, checked against the shape the config implies.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32], ExportError> {
        let (found, data) = self
            .tensors
            .get(name)
            .ok_or_else(|| ExportError::MissingWeight { path: self.source.clone(), name: name.to_string() })?;
        if found.as_slice() != shape {
            return Err(ExportError::WeightShape {
                path: self.source.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found: found.clone(),
            });
        }
        Ok(data)
    }
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub path: PathBuf,
    pub bytes: usize,
    pub style: String,
    pub config: ModelConfig,
}

/// How the weight products (q/k/v, output, feed-forward, head) are stored and run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precision {
    /// Float32 weights and `MatMul`: exactly the trainer's numbers.
    #[default]
    Float32,
    /// Int8 weights, one symmetric scale per output column, and activations
    /// quantized per call (`DynamicQuantizeLinear` -> `MatMulInteger` -> scale),
    /// which ONNX Runtime fuses into one integer product. About a third of the
    /// bytes and twice the speed of a cached step on a CPU; see
    /// [`INT8_NLL_TOLERANCE`] for what it may cost.
    Int8,
}

impl Precision {
    /// The name `--precision` takes and [`onnx_names::META_PRECISION`] holds.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Float32 => "float32",
            Precision::Int8 => "int8",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        [Precision::Float32, Precision::Int8]
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| format!("`{name}` is not a precision: use int8 or float32"))
    }
}

/// The most an int8 export may add to a model's NLL (nats per event): the
/// xtask test `the_int8_export_of_a_shipped_model_scores_real_music_like_float32`
/// holds the shipped jazz model to it on real MIDI. `cargo xtask eval nll`
/// measured +0.0001 to +0.0007 on the shipped styles' validation splits.
pub const INT8_NLL_TOLERANCE: f64 = 0.005;

/// Bumped whenever the exporter writes a different model from the same
/// checkpoint, so that setup makes the shipped models again (2: int8 weight
/// products and the validation loss in the metadata).
pub const EXPORT_REVISION: u32 = 2;

/// An exported model file's metadata; `None` when it cannot be read as a model.
fn metadata(path: &Path) -> Option<HashMap<String, String>> {
    let model = ModelProto::decode(std::fs::read(path).ok()?.as_slice()).ok()?;
    Some(model.metadata_props.into_iter().map(|p| (p.key, p.value)).collect())
}

fn precision_of(meta: &HashMap<String, String>) -> Option<Precision> {
    meta.get(onnx_names::META_PRECISION).map_or(Some(Precision::Float32), |v| v.parse().ok())
}

/// The precision an exported model file declares: `None` when it cannot be
/// read as a model or declares an unknown one; float32 when it predates the
/// entry.
pub fn model_precision(path: &Path) -> Option<Precision> {
    precision_of(&metadata(path)?)
}

/// Whether `path` is a model this exporter would write at `precision`
/// (same [`EXPORT_REVISION`]), so a shipped model need not be made again.
pub fn export_is_current(path: &Path, precision: Precision) -> bool {
    metadata(path).is_some_and(|m| {
        precision_of(&m) == Some(precision)
            && m.get(onnx_names::META_EXPORT_REVISION).is_some_and(|r| r == &EXPORT_REVISION.to_string())
    })
}

/// How [`export_onnx`] exports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// The style written into the model; `None` keeps the sidecar's.
    pub style: Option<String>,
    pub precision: Precision,
}

/// Export a checkpoint (`<name>.safetensors` with its `<name>.json` sidecar;
/// `checkpoint` may name either file or the base path `<name>`) to `out`
/// atomically.
///
/// The trainer calls this at the end of a training run, e.g.
/// `export_onnx(&best, &run_dir.join(format!("{style}.onnx")), &ExportOptions::default())`.
pub fn export_onnx(checkpoint: &Path, out: &Path, options: &ExportOptions) -> Result<ExportReport, ExportError> {
    let paths = CheckpointPaths::new(checkpoint);
    let meta_path = paths.sidecar;
    let mut meta = records::read_sidecar(&meta_path)?;
    meta.model.validate().map_err(|error| ExportError::Config { path: meta_path.clone(), error })?;
    if let Some(s) = &options.style {
        meta.style = s.clone();
    }
    let weights = Weights::read_safetensors(&paths.weights)?;
    export_weights(&weights, &meta, options.precision, out)
}

/// Export in-memory weights described by `meta` to `out` atomically.
pub fn export_weights(
    weights: &Weights,
    meta: &CheckpointMeta,
    precision: Precision,
    out: &Path,
) -> Result<ExportReport, ExportError> {
    meta.model.validate().map_err(|error| ExportError::Config { path: weights.source.clone(), error })?;
    if let Some(advice) = &meta.contrast {
        advice.validate().map_err(|e| ExportError::Contrast { path: weights.source.clone(), message: e })?;
    }
    if let Some(advice) = &meta.lead {
        advice.validate().map_err(|e| ExportError::Lead { path: weights.source.clone(), message: e })?;
    }
    if let Some(advice) = &meta.lead_key {
        advice.validate().map_err(|e| ExportError::Lead { path: weights.source.clone(), message: e })?;
    }
    if let Some(advice) = &meta.lead_register {
        advice.validate().map_err(|e| ExportError::Lead { path: weights.source.clone(), message: e })?;
    }
    let model = build_model(weights, meta, precision)?;
    let bytes = model.encode_to_vec();
    if bytes.len() > MAX_MODEL_BYTES {
        return Err(ExportError::TooLarge { path: out.to_path_buf(), bytes: bytes.len() });
    }
    crate::fsutil::write_atomic(out, &bytes).map_err(|error| ExportError::Io { path: out.to_path_buf(), error })?;
    Ok(ExportReport { path: out.to_path_buf(), bytes: bytes.len(), style: meta.style.clone(), config: meta.model })
}

/// The ONNX model: graph, opset, and the metadata the engine checks.
pub fn build_model(weights: &Weights, meta: &CheckpointMeta, precision: Precision) -> Result<ModelProto, ExportError> {
    let cfg = &meta.model;
    let graph = model_graph(weights, cfg, precision)?;
    let config_json = serde_json::to_string(cfg).unwrap_or_default();
    let props = [
        (onnx_names::META_CONFIG, config_json),
        (onnx_names::META_CODEC_VERSION, codec::CODEC_VERSION.to_string()),
        (onnx_names::META_ARCHITECTURE, ARCHITECTURE.to_string()),
        (onnx_names::META_GRAPH_VERSION, GRAPH_VERSION.to_string()),
        (onnx_names::META_STYLE, meta.style.clone()),
        (onnx_names::META_DATA_SUMMARY, meta.data_summary.clone()),
        (
            "cadenza.checkpoint",
            format!("epoch {} step {} best_val_loss {:?}", meta.epoch, meta.step, meta.best_val_loss),
        ),
        ("cadenza.manifest_hash", meta.manifest_hash.clone()),
        (onnx_names::META_PRECISION, precision.name().to_string()),
        (onnx_names::META_EXPORT_REVISION, EXPORT_REVISION.to_string()),
    ];
    let advice = meta.contrast.iter().flat_map(|a| {
        [
            (onnx_names::META_CONTRAST_WITH, a.with.clone()),
            (onnx_names::META_CONTRAST, a.strength.to_string()),
            (onnx_names::META_CONTRAST_MEASURED, a.measured.clone()),
        ]
        .into_iter()
        .chain(a.following.clone().map(|f| (onnx_names::META_CONTRAST_FOLLOWING, f)))
        .chain(a.following_strength.map(|f| (onnx_names::META_CONTRAST_FOLLOWING_STRENGTH, f.to_string())))
    });
    let props = props
        .into_iter()
        .chain(meta.best_val_loss.filter(|v| v.is_finite()).map(|v| (onnx_names::META_VALIDATION_NLL, v.to_string())))
        .chain(advice)
        .chain(meta.lead.iter().map(|a| (onnx_names::META_LEADS, a.measured.clone())))
        .chain(meta.lead_key.iter().flat_map(|a| {
            [
                (onnx_names::META_LEAD_KEY_GAIN, a.gain.to_string()),
                (onnx_names::META_LEAD_KEY_MEASURED, a.measured.clone()),
            ]
        }))
        .chain(meta.lead_register.iter().flat_map(|a| {
            [
                (onnx_names::META_LEAD_REGISTER_SPREAD, a.spread.to_string()),
                (onnx_names::META_LEAD_REGISTER_MEASURED, a.measured.clone()),
            ]
        }));
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        // The exporter's first home; kept so a re-export gives the same bytes.
        producer_name: "cadenza-trainer".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: "org.cadenza".into(),
        model_version: 1,
        doc_string: format!("Cadenza Music Transformer, style {}", meta.style),
        graph: Some(graph),
        metadata_props: props.map(|(key, value)| StringStringEntryProto { key: key.to_string(), value }).collect(),
    })
}

/// `w` `[out, in]` (torch Linear) as `[in, out]` for `MatMul(x, w^T)`, times `scale`.
fn transposed(w: &[f32], out: usize, inp: usize, scale: f32) -> Vec<f32> {
    let mut t = vec![0.0f32; w.len()];
    for o in 0..out {
        for i in 0..inp {
            t[i * out + o] = w[o * inp + i] * scale;
        }
    }
    t
}

/// `x @ w + b` for a torch Linear named `prefix` (`prefix.weight` `[out, in]`).
fn linear(
    g: &mut GraphBuilder,
    w: &Weights,
    x: &str,
    prefix: &str,
    inp: usize,
    out: usize,
    precision: Precision,
) -> Result<String, ExportError> {
    let wt = transposed(w.get(&format!("{prefix}.weight"), &[out, inp])?, out, inp, 1.0);
    let bias = w.get(&format!("{prefix}.bias"), &[out])?;
    let mm = weight_product(g, x, &format!("{prefix}.weight_t"), &wt, inp, out, precision);
    let bn = g.init_f32(&format!("{prefix}.bias"), &[out], bias);
    Ok(g.op("Add", &[&mm, &bn], vec![]))
}

/// `x @ wt` for a weight `wt` `[inp, out]` named `name`, at `precision`.
fn weight_product(
    g: &mut GraphBuilder,
    x: &str,
    name: &str,
    wt: &[f32],
    inp: usize,
    out: usize,
    precision: Precision,
) -> String {
    match precision {
        Precision::Float32 => {
            let wn = g.init_f32(name, &[inp, out], wt);
            g.op("MatMul", &[x, &wn], vec![])
        }
        Precision::Int8 => {
            let (q, scales) = quantize_columns(wt, inp, out);
            let wq = g.init_i8(&format!("{name}_int8"), &[inp, out], &q);
            let wzero = g.init_i8(&format!("{name}_zero_point"), &[out], &vec![0; out]);
            let wscale = g.init_f32(&format!("{name}_scale"), &[out], &scales);
            let xq = g.op_outputs("DynamicQuantizeLinear", &[x], 3);
            let product = g.op("MatMulInteger", &[&xq[0], &wq, &xq[2], &wzero], vec![]);
            let product = g.op("Cast", &[&product], vec![("to", Attr::Int(proto::data_type::FLOAT as i64))]);
            let scale = g.op("Mul", &[&xq[1], &wscale], vec![]);
            g.op("Mul", &[&product, &scale], vec![])
        }
    }
}

/// The largest int8 weight magnitude: 7 bits, not 8. An AVX2 CPU without
/// VNNI multiplies uint8 activations by int8 weights in pairs summed into
/// int16 (`vpmaddubsw`), which saturates above 32,767: 2 x 255 x 127 can
/// overflow, 2 x 255 x 63 cannot. On the jazz model's validation split
/// (`cargo xtask eval nll`, 2-core AVX2 EPYC) 127 cost +0.0030 nats per
/// event against float32, 63 costs +0.0007.
const INT8_WEIGHT_MAX: f32 = 63.0;

/// Symmetric int8 quantization of `wt` `[inp, out]`, one scale per column:
/// the column's largest magnitude maps to [`INT8_WEIGHT_MAX`] (ties round to
/// even, as ONNX Runtime's own quantizer does). An all-zero column gets scale 1.
fn quantize_columns(wt: &[f32], inp: usize, out: usize) -> (Vec<i8>, Vec<f32>) {
    let mut scales = vec![0.0f32; out];
    for row in wt.chunks_exact(out).take(inp) {
        for (s, &v) in scales.iter_mut().zip(row) {
            *s = s.max(v.abs());
        }
    }
    for s in &mut scales {
        *s = if *s > 0.0 { *s / INT8_WEIGHT_MAX } else { 1.0 };
    }
    let q = wt
        .chunks_exact(out)
        .flat_map(|row| {
            row.iter()
                .zip(&scales)
                .map(|(&v, &s)| (v / s).round_ties_even().clamp(-INT8_WEIGHT_MAX, INT8_WEIGHT_MAX) as i8)
        })
        .collect();
    (q, scales)
}

fn layer_norm(g: &mut GraphBuilder, w: &Weights, x: &str, prefix: &str, d: usize) -> Result<String, ExportError> {
    let scale = g.init_f32(&format!("{prefix}.weight"), &[d], w.get(&format!("{prefix}.weight"), &[d])?);
    let bias = g.init_f32(&format!("{prefix}.bias"), &[d], w.get(&format!("{prefix}.bias"), &[d])?);
    Ok(g.op(
        "LayerNormalization",
        &[x, &scale, &bias],
        vec![("axis", Attr::Int(-1)), ("epsilon", Attr::Float(LAYER_NORM_EPS))],
    ))
}

/// The skew of the paper: `qe` `[batch, heads, new, m]`, whose column `c`
/// holds the distance `D - c` for a `D` fixed per layer input, becomes
/// `[batch, heads, new, m]` whose column `j` of row `i` holds the distance
/// `D - (new - 1 - i) - j`: pad one column on the left, flatten the last two
/// axes, drop the first `new` elements, reshape. `target` spells the shape
/// out (the capacity may be 0, which a `0` in a Reshape target cannot say).
fn skew(g: &mut GraphBuilder, s: &Shared, qe: &str, target: &str) -> String {
    let padded = g.op("Pad", &[qe, &s.pad_left], vec![]);
    let flat = g.op("Reshape", &[&padded, &s.flat_shape], vec![]);
    let shifted = g.op("Slice", &[&flat, &s.new_1d, &s.int_max, &s.axis2], vec![]);
    g.op("Reshape", &[&shifted, target], vec![("allowzero", Attr::Int(1))])
}

/// Values every layer uses, computed once from the inputs' shapes.
struct Shared {
    new_1d: String,
    cap_1d: String,
    /// float32 `[capacity]`: 0 for filled cache positions, -inf beyond `past_len`.
    cache_mask: String,
    /// int64 `[capacity]`: the row of the reversed distance table for each
    /// cache column before the skew.
    cache_rel_rows: String,
    /// float32 `[new, new]`: the causal mask among the new positions.
    new_mask: String,
    /// int64 `[1]`: the first row of the reversed table for the new part (`L - new`).
    new_rel_start: String,
    skew_cache_shape: String,
    skew_new_shape: String,
    pad_left: String,
    flat_shape: String,
    int_max: String,
    zero_1d: String,
    axis0: String,
    axis2: String,
    axis3: String,
}

fn shared_values(g: &mut GraphBuilder, cfg: &ModelConfig) -> Shared {
    let (h, l) = (cfg.n_heads as i64, cfg.max_seq_len as i64);
    g.set_scope("shapes");
    let batch_1d = g.op("Shape", &[onnx_names::TOKENS], vec![("start", Attr::Int(0)), ("end", Attr::Int(1))]);
    let new_1d = g.op("Shape", &[onnx_names::TOKENS], vec![("start", Attr::Int(1)), ("end", Attr::Int(2))]);
    let cache_key0 = onnx_names::cache_key(0);
    let cap_1d = g.op("Shape", &[&cache_key0], vec![("start", Attr::Int(2)), ("end", Attr::Int(3))]);
    let new_s = g.op("Squeeze", &[&new_1d], vec![]);
    let cap_s = g.op("Squeeze", &[&cap_1d], vec![]);
    let past_s = g.op("Squeeze", &[onnx_names::PAST_LEN], vec![]);
    let zero = g.scalar_i64("zero", 0);
    let one = g.scalar_i64("one", 1);
    let zero_f = g.scalar_f32("zero_f", 0.0);
    let neg_inf = g.scalar_f32("neg_inf", f32::NEG_INFINITY);

    // Cache part: positions at or beyond past_len hold nothing (yet).
    let cache_pos = g.op("Range", &[&zero, &cap_s, &one], vec![]);
    let filled = g.op("Less", &[&cache_pos, &past_s], vec![]);
    let cache_mask = g.op("Where", &[&filled, &zero_f, &neg_inf], vec![]);
    // Before the skew, cache column c stands for the distance
    // past + new - 1 - c, row L - past - new + c of the reversed table; the
    // columns past the table's end are masked positions, clipped to its last row.
    let max_len = g.ints("max_seq_len", &[l]);
    let rel_first_1d = g.op("Sub", &[&max_len, onnx_names::PAST_LEN], vec![]);
    let rel_first_1d = g.op("Sub", &[&rel_first_1d, &new_1d], vec![]);
    let rel_first = g.op("Squeeze", &[&rel_first_1d], vec![]);
    let rel_end = g.op("Add", &[&rel_first, &cap_s], vec![]);
    let rel_rows = g.op("Range", &[&rel_first, &rel_end, &one], vec![]);
    let last_row = g.scalar_i64("last_row", l - 1);
    let cache_rel_rows = g.op("Min", &[&rel_rows, &last_row], vec![]);

    // New part: causal among themselves, distances new-1 .. 0.
    let new_pos = g.op("Range", &[&zero, &new_s, &one], vec![]);
    let axis0 = g.ints("axis0", &[0]);
    let axis1 = g.ints("axis1", &[1]);
    let rows = g.op("Unsqueeze", &[&new_pos, &axis1], vec![]);
    let cols = g.op("Unsqueeze", &[&new_pos, &axis0], vec![]);
    let allowed = g.op("LessOrEqual", &[&cols, &rows], vec![]);
    let new_mask = g.op("Where", &[&allowed, &zero_f, &neg_inf], vec![]);
    let new_rel_start = g.op("Sub", &[&max_len, &new_1d], vec![]);

    let heads_1d = g.ints("heads", &[h]);
    let skew_cache_shape = g.op("Concat", &[&batch_1d, &heads_1d, &new_1d, &cap_1d], vec![("axis", Attr::Int(0))]);
    let skew_new_shape = g.op("Concat", &[&batch_1d, &heads_1d, &new_1d, &new_1d], vec![("axis", Attr::Int(0))]);
    Shared {
        new_1d,
        cap_1d,
        cache_mask,
        cache_rel_rows,
        new_mask,
        new_rel_start,
        skew_cache_shape,
        skew_new_shape,
        pad_left: g.ints("pad_left", &[0, 0, 0, 1, 0, 0, 0, 0]),
        flat_shape: g.ints("flat_shape", &[0, 0, -1]),
        int_max: g.ints("int_max", &[i64::MAX]),
        zero_1d: g.ints("zero_1d", &[0]),
        axis0,
        axis2: g.ints("axis2", &[2]),
        axis3: g.ints("axis3", &[3]),
    }
}

/// The decoder graph. See the module documentation for the attention layout.
pub fn model_graph(w: &Weights, cfg: &ModelConfig, precision: Precision) -> Result<proto::GraphProto, ExportError> {
    let (v, d, h, hd, f, l) = (cfg.vocab_size, cfg.d_model, cfg.n_heads, cfg.head_dim(), cfg.d_ff, cfg.max_seq_len);
    let mut g = GraphBuilder::new();

    g.input(onnx_names::TOKENS, data_type::INT64, &[Dim::Named("batch"), Dim::Named("new")]);
    g.input(onnx_names::PAST_LEN, data_type::INT64, &[Dim::Fixed(1)]);
    let cache_dims = [Dim::Named("batch"), Dim::Fixed(h as i64), Dim::Named("capacity"), Dim::Fixed(hd as i64)];
    let new_dims = [Dim::Named("batch"), Dim::Fixed(h as i64), Dim::Named("new"), Dim::Fixed(hd as i64)];
    for i in 0..cfg.n_layers {
        g.input(&onnx_names::cache_key(i), data_type::FLOAT, &cache_dims);
        g.input(&onnx_names::cache_value(i), data_type::FLOAT, &cache_dims);
    }
    g.output(onnx_names::LOGITS, data_type::FLOAT, &[Dim::Named("batch"), Dim::Named("new"), Dim::Fixed(v as i64)]);
    for i in 0..cfg.n_layers {
        g.output(&onnx_names::new_key(i), data_type::FLOAT, &new_dims);
        g.output(&onnx_names::new_value(i), data_type::FLOAT, &new_dims);
    }

    let s = shared_values(&mut g, cfg);
    let split_shape = g.ints("qkv_shape", &[0, 0, 3, h as i64, hd as i64]);
    let merge_shape = g.ints("merge_shape", &[0, 0, d as i64]);
    let idx: Vec<String> = (0..3).map(|i| g.scalar_i64("qkv_index", i)).collect();

    g.set_scope("embed");
    let table = g.init_f32("embed.weight", &[v, d], w.get("embed.weight", &[v, d])?);
    let mut x = g.op("Gather", &[&table, onnx_names::TOKENS], vec![("axis", Attr::Int(0))]);

    let scale = 1.0 / (hd as f32).sqrt();
    for i in 0..cfg.n_layers {
        let p = format!("layers.{i}");
        g.set_scope(&format!("{p}.attn"));
        let hn = layer_norm(&mut g, w, &x, &format!("{p}.ln1"), d)?;

        // One [d, 3d] projection for q (pre-scaled), k and v.
        let mut wqkv = vec![0.0f32; d * 3 * d];
        let mut bqkv = Vec::with_capacity(3 * d);
        for (slot, name) in ["q", "k", "v"].iter().enumerate() {
            let sc = if *name == "q" { scale } else { 1.0 };
            let wt = transposed(w.get(&format!("{p}.attn.{name}.weight"), &[d, d])?, d, d, sc);
            for r in 0..d {
                wqkv[r * 3 * d + slot * d..r * 3 * d + (slot + 1) * d].copy_from_slice(&wt[r * d..(r + 1) * d]);
            }
            bqkv.extend(w.get(&format!("{p}.attn.{name}.bias"), &[d])?.iter().map(|b| b * sc));
        }
        let mm = weight_product(&mut g, &hn, &format!("{p}.attn.qkv.weight_t"), &wqkv, d, 3 * d, precision);
        let bn = g.init_f32(&format!("{p}.attn.qkv.bias"), &[3 * d], &bqkv);
        let qkv = g.op("Add", &[&mm, &bn], vec![]);
        let qkv5 = g.op("Reshape", &[&qkv, &split_shape], vec![]);
        let qkv_t = g.op("Transpose", &[&qkv5], vec![("perm", Attr::Ints(vec![2, 0, 3, 1, 4]))]);
        let q = g.op("Gather", &[&qkv_t, &idx[0]], vec![("axis", Attr::Int(0))]);
        let k_new = g.op_named("Gather", &[&qkv_t, &idx[1]], &onnx_names::new_key(i), vec![("axis", Attr::Int(0))]);
        let v_new = g.op_named("Gather", &[&qkv_t, &idx[2]], &onnx_names::new_value(i), vec![("axis", Attr::Int(0))]);

        // Rows of rel_emb in reverse: row r embeds the distance L-1-r.
        let rel = w.get(&format!("{p}.attn.rel_emb"), &[l, hd])?;
        let mut rel_rev = Vec::with_capacity(l * hd);
        for r in (0..l).rev() {
            rel_rev.extend_from_slice(&rel[r * hd..(r + 1) * hd]);
        }
        let rel_rev = g.init_f32(&format!("{p}.attn.rel_emb_reversed"), &[l, hd], &rel_rev);

        // Scores against the cache buffer, read in place: q . k, q . e, mask.
        let cache_k = onnx_names::cache_key(i);
        let k_t = g.op("Transpose", &[&cache_k], vec![("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
        let content = g.op("MatMul", &[&q, &k_t], vec![]);
        let e = g.op("Gather", &[&rel_rev, &s.cache_rel_rows], vec![("axis", Attr::Int(0))]);
        let e_t = g.op("Transpose", &[&e], vec![("perm", Attr::Ints(vec![1, 0]))]);
        let qe = g.op("MatMul", &[&q, &e_t], vec![]);
        let relative = skew(&mut g, &s, &qe, &s.skew_cache_shape);
        let scores = g.op("Add", &[&content, &relative], vec![]);
        let cache_scores = g.op("Add", &[&scores, &s.cache_mask], vec![]);

        // Scores among the new positions, causal.
        let k_t = g.op("Transpose", &[&k_new], vec![("perm", Attr::Ints(vec![0, 1, 3, 2]))]);
        let content = g.op("MatMul", &[&q, &k_t], vec![]);
        let e = g.op("Slice", &[&rel_rev, &s.new_rel_start, &s.int_max, &s.axis0], vec![]);
        let e_t = g.op("Transpose", &[&e], vec![("perm", Attr::Ints(vec![1, 0]))]);
        let qe = g.op("MatMul", &[&q, &e_t], vec![]);
        let relative = skew(&mut g, &s, &qe, &s.skew_new_shape);
        let scores = g.op("Add", &[&content, &relative], vec![]);
        let new_scores = g.op("Add", &[&scores, &s.new_mask], vec![]);

        // One softmax over both parts (joined on the short score axis only),
        // then each part's probabilities times its values.
        let all = g.op("Concat", &[&cache_scores, &new_scores], vec![("axis", Attr::Int(-1))]);
        let probs = g.op("Softmax", &[&all], vec![("axis", Attr::Int(-1))]);
        let p_cache = g.op("Slice", &[&probs, &s.zero_1d, &s.cap_1d, &s.axis3], vec![]);
        let p_new = g.op("Slice", &[&probs, &s.cap_1d, &s.int_max, &s.axis3], vec![]);
        let ctx_cache = g.op("MatMul", &[&p_cache, &onnx_names::cache_value(i)], vec![]);
        let ctx_new = g.op("MatMul", &[&p_new, &v_new], vec![]);
        let ctx = g.op("Add", &[&ctx_cache, &ctx_new], vec![]);
        let ctx_t = g.op("Transpose", &[&ctx], vec![("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
        let merged = g.op("Reshape", &[&ctx_t, &merge_shape], vec![]);
        let attn_out = linear(&mut g, w, &merged, &format!("{p}.attn.o"), d, d, precision)?;
        x = g.op("Add", &[&x, &attn_out], vec![]);

        g.set_scope(&format!("{p}.ff"));
        let hn = layer_norm(&mut g, w, &x, &format!("{p}.ln2"), d)?;
        let h1 = linear(&mut g, w, &hn, &format!("{p}.ff.fc1"), d, f, precision)?;
        let a = g.op("Relu", &[&h1], vec![]);
        let h2 = linear(&mut g, w, &a, &format!("{p}.ff.fc2"), f, d, precision)?;
        x = g.op("Add", &[&x, &h2], vec![]);
    }

    g.set_scope("head");
    let xn = layer_norm(&mut g, w, &x, "ln_f", d)?;
    let wt = transposed(w.get("head.weight", &[v, d])?, v, d, 1.0);
    let mm = weight_product(&mut g, &xn, "head.weight_t", &wt, d, v, precision);
    let bn = g.init_f32("head.bias", &[v], w.get("head.bias", &[v])?);
    g.op_named("Add", &[&mm, &bn], onnx_names::LOGITS, vec![]);

    Ok(g.finish("cadenza_music_transformer", ARCHITECTURE))
}

/// Deterministic random weights with the checkpoint's names and shapes, for
/// benchmarks and tests that need a model of a given size but not a trained
/// one. Values are small (like a fresh initialisation) so activations stay finite.
pub fn random_weights(cfg: &ModelConfig, seed: u64) -> Weights {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        // xorshift64*: enough for reproducible test weights.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        (bits as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let (v, d, f, l, hd) = (cfg.vocab_size, cfg.d_model, cfg.d_ff, cfg.max_seq_len, cfg.head_dim());
    let mut tensors = HashMap::new();
    let mut put = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        let n = shape.iter().product();
        let data = (0..n).map(|_| offset + scale * next()).collect();
        tensors.insert(name, (shape, data));
    };
    let lin = |fan_in: usize| 1.0 / (fan_in as f32).sqrt();
    put("embed.weight".into(), vec![v, d], 1.0, 0.0);
    for i in 0..cfg.n_layers {
        let p = format!("layers.{i}");
        for ln in ["ln1", "ln2"] {
            put(format!("{p}.{ln}.weight"), vec![d], 0.1, 1.0);
            put(format!("{p}.{ln}.bias"), vec![d], 0.1, 0.0);
        }
        for name in ["q", "k", "v", "o"] {
            put(format!("{p}.attn.{name}.weight"), vec![d, d], lin(d), 0.0);
            put(format!("{p}.attn.{name}.bias"), vec![d], 0.02, 0.0);
        }
        put(format!("{p}.attn.rel_emb"), vec![l, hd], 1.0, 0.0);
        put(format!("{p}.ff.fc1.weight"), vec![f, d], lin(d), 0.0);
        put(format!("{p}.ff.fc1.bias"), vec![f], 0.02, 0.0);
        put(format!("{p}.ff.fc2.weight"), vec![d, f], lin(f), 0.0);
        put(format!("{p}.ff.fc2.bias"), vec![d], 0.02, 0.0);
    }
    put("ln_f.weight".into(), vec![d], 0.1, 1.0);
    put("ln_f.bias".into(), vec![d], 0.1, 0.0);
    put("head.weight".into(), vec![v, d], lin(d), 0.0);
    put("head.bias".into(), vec![v], 0.02, 0.0);
    Weights { source: PathBuf::from(format!("<random weights, seed {seed}>")), tensors }
}

/// Export [`random_weights`] of `cfg` (seed `seed`) as a `style` model to
/// `out`: a model of a given size for benchmarks and tests, no training run.
pub fn export_random(
    cfg: &ModelConfig,
    style: &str,
    seed: u64,
    precision: Precision,
    out: &Path,
) -> Result<ExportReport, ExportError> {
    // Before the weights: their shapes divide by n_heads.
    cfg.validate().map_err(|error| ExportError::Config { path: out.to_path_buf(), error })?;
    let meta = synthetic_meta(cfg, style, &format!("random weights (seed {seed}), for benchmarks and tests only"));
    export_weights(&random_weights(cfg, seed), &meta, precision, out)
}

/// A sidecar for weights that did not come from a training run (benchmarks, tests).
pub fn synthetic_meta(cfg: &ModelConfig, style: &str, summary: &str) -> CheckpointMeta {
    CheckpointMeta {
        model: *cfg,
        train: serde_json::Value::Null,
        style: style.to_string(),
        epoch: 0,
        step: 0,
        best_val_loss: None,
        manifest_hash: String::new(),
        codec_version: codec::CODEC_VERSION,
        data_summary: summary.to_string(),
        contrast: None,
        lead: None,
        lead_key: None,
        lead_register: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each column gets its own scale: its largest magnitude maps to the 7-bit
    /// limit, every weight comes back within half a step, and a zero column stays zero.
    #[test]
    fn int8_weights_have_a_scale_per_column_and_round_to_the_nearest_step() {
        let (inp, out) = (3, 3);
        let wt = [0.5, -0.02, 0.0, -1.0, 0.01, 0.0, 0.25, 0.005, 0.0];
        let (q, scales) = quantize_columns(&wt, inp, out);
        assert_eq!(scales, vec![1.0 / INT8_WEIGHT_MAX, 0.02 / INT8_WEIGHT_MAX, 1.0]);
        assert_eq!((q[3], q[1], q[2]), (-63, -63, 0));
        for (i, (&w, &v)) in wt.iter().zip(&q).enumerate() {
            let s = scales[i % out];
            assert!((f32::from(v) * s - w).abs() <= s / 2.0 + 1e-7, "weight {i}: {w} came back {}", f32::from(v) * s);
        }
    }

    #[test]
    fn transposed_swaps_rows_and_columns() {
        // [[1, 2, 3], [4, 5, 6]] (out 2, in 3) -> [[1, 4], [2, 5], [3, 6]]
        assert_eq!(transposed(&[1., 2., 3., 4., 5., 6.], 2, 3, 1.0), vec![1., 4., 2., 5., 3., 6.]);
    }

    #[test]
    fn missing_and_misshaped_weights_are_named() {
        let cfg = ModelConfig { n_layers: 1, d_model: 8, n_heads: 2, d_ff: 16, max_seq_len: 8, ..ModelConfig::TINY };
        let mut w = random_weights(&cfg, 1);
        w.tensors.remove("layers.0.attn.rel_emb");
        let e = model_graph(&w, &cfg, Precision::Float32).expect_err("missing");
        assert!(e.to_string().contains("layers.0.attn.rel_emb"), "{e}");
        let mut w = random_weights(&cfg, 1);
        w.tensors.insert("head.bias".into(), (vec![3], vec![0.0; 3]));
        let e = model_graph(&w, &cfg, Precision::Float32).expect_err("shape");
        assert!(e.to_string().contains("head.bias") && e.to_string().contains("[391]"), "{e}");
    }

    /// The shipped checkpoints are float16: they export as their exact float32 widening,
    /// and a tensor of another type is refused, naming the file and the tensor.
    #[test]
    fn half_precision_checkpoints_widen_and_other_types_are_named() {
        use safetensors::tensor::{Dtype, TensorView};
        let values = [0.5f32, -1.25, 3.0e-3, 65504.0];
        let f16: Vec<u8> = values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        let bf16: Vec<u8> = values.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect();
        let ints: Vec<u8> = [1i64, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, tensors: Vec<(&str, TensorView<'_>)>| {
            let path = dir.path().join(name);
            safetensors::serialize_to_file(tensors, None, &path).expect("write");
            path
        };
        let half_path = write(
            "half.safetensors",
            vec![
                ("a", TensorView::new(Dtype::F16, vec![2, 2], &f16).expect("view")),
                ("b", TensorView::new(Dtype::BF16, vec![4], &bf16).expect("view")),
            ],
        );
        let w = Weights::read_safetensors(&half_path).expect("half-precision weights read");
        let widened: Vec<f32> = values.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect();
        assert_eq!(w.get("a", &[2, 2]).expect("a"), widened.as_slice());
        let widened: Vec<f32> = values.iter().map(|v| half::bf16::from_f32(*v).to_f32()).collect();
        assert_eq!(w.get("b", &[4]).expect("b"), widened.as_slice());
        let int_path =
            write("int.safetensors", vec![("steps", TensorView::new(Dtype::I64, vec![2], &ints).expect("view"))]);
        let e = Weights::read_safetensors(&int_path).expect_err("integers are not weights").to_string();
        assert!(e.contains("int.safetensors") && e.contains("`steps`") && e.contains("I64"), "{e}");
    }

    #[test]
    fn metadata_carries_config_codec_architecture_and_style() {
        let cfg = ModelConfig { n_layers: 1, d_model: 8, n_heads: 2, d_ff: 16, max_seq_len: 8, ..ModelConfig::TINY };
        let m = build_model(&random_weights(&cfg, 2), &synthetic_meta(&cfg, "jazz", "test data"), Precision::Float32)
            .expect("model");
        let get = |k: &str| m.metadata_props.iter().find(|p| p.key == k).map(|p| p.value.clone());
        let back: ModelConfig = serde_json::from_str(&get(onnx_names::META_CONFIG).expect("config")).expect("json");
        assert_eq!(back, cfg);
        assert_eq!(get(onnx_names::META_CODEC_VERSION), Some(codec::CODEC_VERSION.to_string()));
        assert_eq!(get(onnx_names::META_ARCHITECTURE).as_deref(), Some(ARCHITECTURE));
        assert_eq!(get(onnx_names::META_STYLE).as_deref(), Some("jazz"));
        assert_eq!(get(onnx_names::META_DATA_SUMMARY).as_deref(), Some("test data"));
        assert!(m.ir_version >= 9 && m.opset_import[0].version >= 17);
    }

    /// Random models for benchmarks and tests: the same seed gives the same
    /// file, and a configuration that cannot be built is an error naming the
    /// file, not a panic.
    #[test]
    fn random_models_are_reproducible_and_a_bad_config_is_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = ModelConfig { n_layers: 1, d_model: 8, n_heads: 2, d_ff: 16, max_seq_len: 8, ..ModelConfig::TINY };
        let (a, b) = (tmp.path().join("a.onnx"), tmp.path().join("b.onnx"));
        let report = export_random(&cfg, "random-tiny", 4, Precision::Float32, &a).expect("export");
        assert_eq!((report.style.as_str(), report.config), ("random-tiny", cfg));
        export_random(&cfg, "random-tiny", 4, Precision::Float32, &b).expect("export");
        let bytes = std::fs::read(&a).expect("read");
        assert_eq!((bytes.len(), &bytes), (report.bytes, &std::fs::read(&b).expect("read")));

        let bad = tmp.path().join("bad.onnx");
        let e = export_random(&ModelConfig { n_heads: 0, ..cfg }, "x", 1, Precision::Float32, &bad)
            .expect_err("no heads")
            .to_string();
        assert!(e.contains("bad.onnx") && e.contains("n_heads"), "{e}");
        assert!(!bad.exists());
    }
}
