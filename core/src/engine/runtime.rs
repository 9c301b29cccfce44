//! ONNX Runtime underneath the engine: finding and loading the shared library
//! (once per process), creating a session on CUDA or the CPU, checking the
//! model's metadata, and running the decoder graph with its KV cache.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor};

use super::{EngineError, EngineOptions, ModelInfo, Provider};
use crate::codec;
use crate::model::{onnx_names, ModelConfig, ARCHITECTURE};

/// Environment variable naming the ONNX Runtime library (also what `ort` reads).
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// File names the library goes by beside a binary, most specific first.
#[cfg(target_os = "linux")]
pub const LIBRARY_NAMES: &[&str] = &["libonnxruntime.so", "libonnxruntime.so.1"];
#[cfg(target_os = "macos")]
pub const LIBRARY_NAMES: &[&str] = &["libonnxruntime.dylib"];
#[cfg(target_os = "windows")]
pub const LIBRARY_NAMES: &[&str] = &["onnxruntime.dll"];
#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
pub const LIBRARY_NAMES: &[&str] = &["libonnxruntime.so"];

/// Most floats in one attention-score tensor `[batch, heads, chunk, total]`
/// while prefilling (32 MB): longer contexts are prefilled in chunks.
pub const MAX_PREFILL_SCORES: usize = 8 << 20;

/// The loaded library and the process's one ONNX Runtime environment.
struct Runtime {
    library: PathBuf,
    env: Environment,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Serializes the first load, so two threads never both call `init_from`.
static INIT: Mutex<()> = Mutex::new(());

/// Folders searched for the library when neither an explicit path nor
/// `ORT_DYLIB_PATH` names one: the folder of the binary holding this code
/// (the plugin's shared object inside a DAW), then the executable's folder.
pub fn library_search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = this_module_path().and_then(|p| p.parent().map(Path::to_path_buf)) {
        dirs.push(d);
    }
    if let Some(d) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

/// The file this function's machine code was loaded from: for a plugin, its
/// `.so` rather than the host's executable. Linux only (from /proc/self/maps).
fn this_module_path() -> Option<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        let addr = this_module_path as *const () as usize;
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let (lo, hi) = range.split_once('-')?;
            let (lo, hi) = (usize::from_str_radix(lo, 16).ok()?, usize::from_str_radix(hi, 16).ok()?);
            if (lo..hi).contains(&addr) {
                let path = fields.nth(4)?;
                return path.starts_with('/').then(|| PathBuf::from(path));
            }
        }
        None
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Where the library is: the explicit path, else `ORT_DYLIB_PATH`, else a
/// known file name in [`library_search_dirs`].
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, EngineError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(EngineError::LibraryNotFound { searched: vec![p.to_path_buf()] })
        };
    }
    if let Some(p) = std::env::var_os(ORT_DYLIB_ENV).filter(|v| !v.is_empty()).map(PathBuf::from) {
        return if p.is_file() { Ok(p) } else { Err(EngineError::LibraryNotFound { searched: vec![p] }) };
    }
    let mut searched = Vec::new();
    for dir in library_search_dirs() {
        for name in LIBRARY_NAMES {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
            searched.push(candidate);
        }
        // A versioned file as the onnxruntime wheel ships it (libonnxruntime.so.1.31.1).
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut versioned: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so.1."))
                })
                .collect();
            versioned.sort();
            if let Some(p) = versioned.pop() {
                return Ok(p);
            }
        }
    }
    Err(EngineError::LibraryNotFound { searched })
}

/// Load the library once per process; a later request for another file is an error.
fn runtime(explicit: Option<&Path>) -> Result<&'static Runtime, EngineError> {
    if let Some(rt) = RUNTIME.get() {
        return check_same(rt, explicit);
    }
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return check_same(rt, explicit);
    }
    let library = find_library(explicit)?;
    let builder = ort::init_from(&library)
        .map_err(|e| EngineError::LibraryLoad { path: library.clone(), message: e.to_string() })?;
    let env = builder
        .with_name("cadenza")
        .with_telemetry(false)
        .build()
        .map_err(|e| EngineError::LibraryLoad { path: library.clone(), message: e.to_string() })?;
    Ok(RUNTIME.get_or_init(|| Runtime { library, env }))
}

fn check_same(rt: &'static Runtime, explicit: Option<&Path>) -> Result<&'static Runtime, EngineError> {
    if let Some(p) = explicit {
        let same = match (p.canonicalize(), rt.library.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => p == rt.library,
        };
        if !same {
            return Err(EngineError::LibraryConflict { loaded: rt.library.clone(), requested: p.to_path_buf() });
        }
    }
    Ok(rt)
}

/// The ONNX Runtime library this process loaded, if any.
pub fn loaded_library() -> Option<PathBuf> {
    RUNTIME.get().map(|rt| rt.library.clone())
}

/// Past keys and values of every layer for a batch of sequences, in the
/// graph's input order (`past_key_0`, `past_value_0`, `past_key_1`, ...).
pub struct KvCache {
    pub batch: usize,
    /// Positions cached per sequence.
    pub len: usize,
    values: Vec<DynValue>,
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache").field("batch", &self.batch).field("len", &self.len).finish_non_exhaustive()
    }
}

/// An ONNX Runtime session on a Cadenza decoder graph.
pub struct Model {
    session: Session,
    info: ModelInfo,
    /// `tokens`, then the past inputs in cache order.
    input_names: Vec<String>,
    /// The present outputs in cache order.
    present_names: Vec<String>,
}

fn runtime_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Runtime(e.to_string())
}

impl Model {
    pub fn load(path: &Path, opts: &EngineOptions) -> Result<Model, EngineError> {
        let rt = runtime(opts.ort_library.as_deref())?;
        let meta =
            std::fs::metadata(path).map_err(|error| EngineError::ModelRead { path: path.to_path_buf(), error })?;
        if !meta.is_file() {
            return Err(EngineError::ModelInvalid { path: path.to_path_buf(), message: "not a file".into() });
        }
        let bad = |message: String| EngineError::ModelInvalid { path: path.to_path_buf(), message };
        let builder_err = |e: ort::Error<SessionBuilder>| EngineError::Runtime(e.to_string());
        let mut builder = Session::builder(&rt.env)
            .map_err(runtime_err)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(builder_err)?
            .with_intra_threads(opts.intra_threads)
            .map_err(builder_err)?
            .with_inter_threads(1)
            .map_err(builder_err)?
            .with_intra_op_spinning(false)
            .map_err(builder_err)?
            .with_inter_op_spinning(false)
            .map_err(builder_err)?;
        let mut provider = "CPU";
        if matches!(opts.provider, Provider::Auto | Provider::Cuda) {
            let cuda = ort::ep::CUDA::default().build().error_on_failure();
            match builder.with_execution_providers([cuda]) {
                Ok(b) => {
                    builder = b;
                    provider = "CUDA";
                }
                Err(e) if opts.provider == Provider::Auto => builder = e.recover(),
                Err(e) => return Err(EngineError::ProviderUnavailable { provider: "CUDA", message: e.to_string() }),
            }
        }
        let session = builder.commit_from_file(path).map_err(|e| bad(e.to_string()))?;
        let info = read_info(&session, path, provider, &rt.library)?;
        let cfg = info.config;
        let mut input_names = vec![onnx_names::TOKENS.to_string()];
        let mut present_names = Vec::new();
        for i in 0..cfg.n_layers {
            input_names.push(onnx_names::past_key(i));
            input_names.push(onnx_names::past_value(i));
            present_names.push(onnx_names::present_key(i));
            present_names.push(onnx_names::present_value(i));
        }
        let have_in: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let have_out: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        for name in &input_names {
            if !have_in.contains(&name.as_str()) {
                return Err(bad(format!("the graph has no input `{name}`; it was not exported by Cadenza")));
            }
        }
        for name in present_names.iter().map(String::as_str).chain([onnx_names::LOGITS]) {
            if !have_out.contains(&name) {
                return Err(bad(format!("the graph has no output `{name}`; it was not exported by Cadenza")));
            }
        }
        Ok(Model { session, info, input_names, present_names })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// A cache holding nothing, for a prefill of `batch` sequences.
    pub fn empty_cache(&self, batch: usize) -> Result<KvCache, EngineError> {
        let cfg = &self.info.config;
        let shape = [batch as i64, cfg.n_heads as i64, 0, cfg.head_dim() as i64];
        let values = (0..2 * cfg.n_layers)
            .map(|_| Tensor::<f32>::from_array((shape, Vec::<f32>::new())).map(|t| t.into_dyn()).map_err(runtime_err))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KvCache { batch, len: 0, values })
    }

    /// Copy a batch-1 cache `batch` times (after one prefill of a shared primer).
    pub fn repeat_cache(&self, cache: KvCache, batch: usize) -> Result<KvCache, EngineError> {
        if cache.batch == batch {
            return Ok(cache);
        }
        if cache.batch != 1 {
            return Err(EngineError::Runtime(format!("cannot repeat a cache of batch {} to {batch}", cache.batch)));
        }
        let mut values = Vec::with_capacity(cache.values.len());
        for v in &cache.values {
            let (shape, data) = v.try_extract_tensor::<f32>().map_err(runtime_err)?;
            let mut dims: Vec<i64> = shape.iter().copied().collect();
            dims[0] = batch as i64;
            let mut tiled = Vec::with_capacity(data.len() * batch);
            for _ in 0..batch {
                tiled.extend_from_slice(data);
            }
            values.push(Tensor::<f32>::from_array((dims, tiled)).map_err(runtime_err)?.into_dyn());
        }
        Ok(KvCache { batch, len: cache.len, values })
    }

    /// Prefill equal-length `rows` (one per sequence of the batch) from an
    /// empty cache, in chunks so no attention-score tensor exceeds
    /// [`MAX_PREFILL_SCORES`]; returns the logits after each row's last event
    /// (`[batch, vocab]`) and the cache.
    pub fn prefill(&mut self, rows: &[&[u16]]) -> Result<(Vec<f32>, KvCache), EngineError> {
        let batch = rows.len();
        let len = rows.first().map_or(0, |r| r.len());
        if batch == 0 || len == 0 || rows.iter().any(|r| r.len() != len) {
            return Err(EngineError::Runtime("a prefill needs rows of one non-zero length".into()));
        }
        let chunk = (MAX_PREFILL_SCORES / (batch * self.info.config.n_heads * len)).clamp(1, len);
        self.prefill_chunked(rows, chunk)
    }

    /// [`Model::prefill`] in chunks of `chunk` events.
    pub fn prefill_chunked(&mut self, rows: &[&[u16]], chunk: usize) -> Result<(Vec<f32>, KvCache), EngineError> {
        let batch = rows.len();
        let len = rows.first().map_or(0, |r| r.len());
        if batch == 0 || len == 0 || chunk == 0 || rows.iter().any(|r| r.len() != len) {
            return Err(EngineError::Runtime("a prefill needs rows of one non-zero length".into()));
        }
        let vocab = self.info.config.vocab_size;
        let mut cache = self.empty_cache(batch)?;
        let mut start = 0;
        loop {
            let end = (start + chunk).min(len);
            let tokens: Vec<i64> = rows.iter().flat_map(|r| r[start..end].iter().map(|&t| i64::from(t))).collect();
            let (logits, c) = self.forward(&tokens, cache)?;
            cache = c;
            if end == len {
                let n = end - start;
                let last = (0..batch)
                    .flat_map(|b| logits[(b * n + n - 1) * vocab..(b * n + n) * vocab].iter().copied())
                    .collect();
                return Ok((last, cache));
            }
            start = end;
        }
    }

    /// Run `tokens` (`batch` rows of equal length, row-major) after `cache`;
    /// returns the logits `[batch, new, vocab]` (row-major) and the grown cache.
    pub fn forward(&mut self, tokens: &[i64], cache: KvCache) -> Result<(Vec<f32>, KvCache), EngineError> {
        let batch = cache.batch;
        if batch == 0 || tokens.is_empty() || !tokens.len().is_multiple_of(batch) {
            return Err(EngineError::Runtime(format!("{} tokens do not split into {batch} rows", tokens.len())));
        }
        let new = tokens.len() / batch;
        let max_len = self.info.config.max_seq_len;
        if cache.len + new > max_len {
            return Err(EngineError::Runtime(format!(
                "context of {} events exceeds the model's window of {max_len}",
                cache.len + new
            )));
        }
        let tokens_t = Tensor::<i64>::from_array(([batch as i64, new as i64], tokens.to_vec())).map_err(runtime_err)?;
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(self.input_names.len());
        inputs.push((Cow::Borrowed(self.input_names[0].as_str()), tokens_t.into()));
        for (name, value) in self.input_names[1..].iter().zip(cache.values) {
            inputs.push((Cow::Borrowed(name.as_str()), value.into()));
        }
        let mut outputs = self.session.run(inputs).map_err(runtime_err)?;
        let logits_v = outputs
            .remove(onnx_names::LOGITS)
            .ok_or_else(|| EngineError::Runtime("the run returned no logits".into()))?;
        let (_, logits) = logits_v.try_extract_tensor::<f32>().map_err(runtime_err)?;
        let logits = logits.to_vec();
        let mut values = Vec::with_capacity(self.present_names.len());
        for name in &self.present_names {
            values
                .push(outputs.remove(name).ok_or_else(|| EngineError::Runtime(format!("the run returned no {name}")))?);
        }
        Ok((logits, KvCache { batch, len: cache.len + new, values }))
    }
}

/// Read and check the metadata the exporter writes.
fn read_info(session: &Session, path: &Path, provider: &'static str, library: &Path) -> Result<ModelInfo, EngineError> {
    let mismatch = |problem: String| EngineError::Metadata { path: path.to_path_buf(), problem };
    let meta = session.metadata().map_err(runtime_err)?;
    let get = |key: &str| {
        meta.custom(key).ok_or_else(|| mismatch(format!("no `{key}` entry; it was not exported by Cadenza")))
    };
    let codec_version: u32 = get(onnx_names::META_CODEC_VERSION)?
        .trim()
        .parse()
        .map_err(|_| mismatch("the codec version is not a number".into()))?;
    if codec_version != codec::CODEC_VERSION {
        return Err(mismatch(format!(
            "made for codec version {codec_version}, this build reads codec version {}",
            codec::CODEC_VERSION
        )));
    }
    let architecture = get(onnx_names::META_ARCHITECTURE)?;
    if architecture != ARCHITECTURE {
        return Err(mismatch(format!("architecture `{architecture}`, this build runs `{ARCHITECTURE}`")));
    }
    let config: ModelConfig = serde_json::from_str(&get(onnx_names::META_CONFIG)?)
        .map_err(|e| mismatch(format!("unreadable model config: {e}")))?;
    config.validate().map_err(|e| mismatch(e.to_string()))?;
    Ok(ModelInfo {
        path: path.to_path_buf(),
        style: meta.custom(onnx_names::META_STYLE).unwrap_or_default(),
        data_summary: meta.custom(onnx_names::META_DATA_SUMMARY).unwrap_or_default(),
        config,
        codec_version,
        provider,
        library: library.to_path_buf(),
    })
}
