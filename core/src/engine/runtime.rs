//! ONNX Runtime underneath the engine: finding and loading the shared library
//! (once per process), creating a session on CUDA or the CPU, checking the
//! model's metadata, and running the decoder graph on a KV cache whose
//! buffers the engine owns and ONNX Runtime reads in place.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorRef};

use super::{EngineError, EngineOptions, ModelInfo, Provider};
use crate::codec;
use crate::model::{onnx_names, ModelConfig, ARCHITECTURE, GRAPH_VERSION};
use crate::sampling::{ContrastAdvice, LeadAdvice, LeadKeyAdvice, LeadRegisterAdvice};

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
        if let Some(found) = library_in(&dir, &mut searched) {
            return Ok(found);
        }
    }
    Err(EngineError::LibraryNotFound { searched })
}

/// The library in `dir`: a file of one of [`LIBRARY_NAMES`], else a versioned
/// file as the onnxruntime wheel ships it (`libonnxruntime.so.1.31.1`).
/// The names tried are added to `searched`.
pub fn library_in(dir: &Path, searched: &mut Vec<PathBuf>) -> Option<PathBuf> {
    for name in LIBRARY_NAMES {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Some(candidate);
        }
        searched.push(candidate);
    }
    let entries = std::fs::read_dir(dir).ok()?;
    let mut versioned: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so.1.")))
        .filter(|p| p.is_file())
        .collect();
    versioned.sort();
    versioned.pop()
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

/// Fewest positions a non-empty cache holds, so the first steps after a
/// short prefill do not grow it one bucket at a time.
pub const MIN_CACHE_CAPACITY: usize = 64;

/// Capacity buckets per doubling: a cache is at most 1/8 larger than it needs
/// to be, and grows (with one copy) every eighth of its size.
pub const CACHE_BUCKETS_PER_OCTAVE: usize = 8;

/// The capacity a cache holding `needed` positions gets, for a model whose
/// window is `max_len`: the smallest `m * 2^k >= needed` with `m` in 8..=16
/// (at least [`MIN_CACHE_CAPACITY`], at most the window), so short contexts
/// do not read a window-sized buffer and long ones seldom grow.
pub fn cache_capacity(needed: usize, max_len: usize) -> usize {
    if needed == 0 {
        return 0;
    }
    if needed <= MIN_CACHE_CAPACITY {
        return MIN_CACHE_CAPACITY.min(max_len).max(needed);
    }
    let octave = usize::BITS - 1 - (needed - 1).leading_zeros(); // 2^octave <= needed - 1
    let step = 1usize << octave.saturating_sub(CACHE_BUCKETS_PER_OCTAVE.trailing_zeros());
    needed.next_multiple_of(step).min(max_len).max(needed)
}

/// Keys and values of every layer for a batch of sequences, in buffers the
/// engine owns: one per layer for keys and one for values (`key_0`,
/// `value_0`, `key_1`, ...), each `[batch, heads, capacity, head_dim]`, of
/// which positions `0..len` are filled. ONNX Runtime reads them in place;
/// [`Model::forward`] writes the new positions after each run.
#[derive(Clone)]
pub struct KvCache {
    batch: usize,
    len: usize,
    capacity: usize,
    heads: usize,
    head_dim: usize,
    buffers: Vec<Vec<f32>>,
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("batch", &self.batch)
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl KvCache {
    fn new(cfg: &ModelConfig, batch: usize) -> Self {
        Self {
            batch,
            len: 0,
            capacity: 0,
            heads: cfg.n_heads,
            head_dim: cfg.head_dim(),
            buffers: vec![Vec::new(); 2 * cfg.n_layers],
        }
    }

    /// Sequences in the batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Positions cached per sequence.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the buffers hold per sequence before they must grow.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Floats of one sequence in one buffer.
    fn row_floats(&self) -> usize {
        self.heads * self.capacity * self.head_dim
    }

    /// Forget the contents, keep the buffers (for a new prefill of `batch` sequences).
    fn reset(&mut self, batch: usize) {
        if batch != self.batch {
            self.batch = batch;
            self.capacity = 0;
            for b in &mut self.buffers {
                b.clear();
            }
        }
        self.len = 0;
    }

    /// Grow the buffers, keeping their contents, so `needed` positions fit.
    fn reserve(&mut self, needed: usize, max_len: usize) {
        if needed <= self.capacity {
            return;
        }
        let capacity = cache_capacity(needed, max_len);
        let (hd, old_cap, len) = (self.head_dim, self.capacity, self.len);
        let rows = self.batch * self.heads;
        for buf in &mut self.buffers {
            // Zeros, not garbage: masked positions still enter a product with weight 0.
            let mut grown = vec![0.0f32; rows * capacity * hd];
            for r in 0..rows {
                grown[r * capacity * hd..(r * capacity + len) * hd]
                    .copy_from_slice(&buf[r * old_cap * hd..(r * old_cap + len) * hd]);
            }
            *buf = grown;
        }
        self.capacity = capacity;
    }

    /// Write `values` (`[batch, heads, new, head_dim]`) at positions `len..len + new` of buffer `slot`.
    fn write(&mut self, slot: usize, values: &[f32], new: usize) {
        let (hd, cap, len) = (self.head_dim, self.capacity, self.len);
        let buf = &mut self.buffers[slot];
        for (r, src) in values.chunks_exact(new * hd).enumerate() {
            buf[(r * cap + len) * hd..(r * cap + len + new) * hd].copy_from_slice(src);
        }
    }

    /// A batch-1 cache copied `batch` times (after one prefill of a shared primer).
    pub fn repeat(&mut self, batch: usize) -> Result<(), String> {
        if batch == self.batch {
            return Ok(());
        }
        if self.batch != 1 {
            return Err(format!("cannot repeat a cache of batch {} to {batch}", self.batch));
        }
        for buf in &mut self.buffers {
            let one = std::mem::take(buf);
            buf.reserve_exact(one.len() * batch);
            for _ in 0..batch {
                buf.extend_from_slice(&one);
            }
        }
        self.batch = batch;
        Ok(())
    }

    /// Keep only the sequences at `rows` (ascending), in that order: finished
    /// variations stop costing compute. Moves memory within the buffers.
    pub fn retain(&mut self, rows: &[usize]) -> Result<(), String> {
        if rows.windows(2).any(|w| w[0] >= w[1]) || rows.last().is_some_and(|&r| r >= self.batch) {
            return Err(format!("rows {rows:?} are not ascending rows of a batch of {}", self.batch));
        }
        let n = self.row_floats();
        for buf in &mut self.buffers {
            for (to, &from) in rows.iter().enumerate() {
                if to != from {
                    buf.copy_within(from * n..(from + 1) * n, to * n);
                }
            }
            buf.truncate(rows.len() * n);
        }
        self.batch = rows.len();
        Ok(())
    }
}

/// An ONNX Runtime session on a Cadenza decoder graph.
pub struct Model {
    session: Session,
    info: ModelInfo,
    /// The cache inputs in cache order (`cache_key_0`, `cache_value_0`, ...).
    cache_names: Vec<String>,
    /// The new-position outputs in cache order.
    new_names: Vec<String>,
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
        let runtime_err = |e: ort::Error| runtime_error(path, e);
        let builder_err = |e: ort::Error<SessionBuilder>| runtime_error(path, e);
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
                Err(e) => {
                    return Err(EngineError::ProviderUnavailable {
                        provider: "CUDA",
                        message: format!("{e} ({})", cuda_advice(&e.to_string(), &rt.library)),
                    })
                }
            }
        }
        let session = builder.commit_from_file(path).map_err(|e| bad(e.to_string()))?;
        let info = read_info(&session, path, provider, &rt.library)?;
        let cfg = info.config;
        let mut cache_names = Vec::new();
        let mut new_names = Vec::new();
        for i in 0..cfg.n_layers {
            cache_names.push(onnx_names::cache_key(i));
            cache_names.push(onnx_names::cache_value(i));
            new_names.push(onnx_names::new_key(i));
            new_names.push(onnx_names::new_value(i));
        }
        let have_in: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let have_out: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        for name in cache_names.iter().map(String::as_str).chain([onnx_names::TOKENS, onnx_names::PAST_LEN]) {
            if !have_in.contains(&name) {
                return Err(bad(format!("the graph has no input `{name}`; it was not exported by Cadenza")));
            }
        }
        for name in new_names.iter().map(String::as_str).chain([onnx_names::LOGITS]) {
            if !have_out.contains(&name) {
                return Err(bad(format!("the graph has no output `{name}`; it was not exported by Cadenza")));
            }
        }
        Ok(Model { session, info, cache_names, new_names })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// A runtime failure naming this model's file.
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> EngineError {
        runtime_error(&self.info.path, message)
    }

    /// A cache holding nothing, for `batch` sequences.
    pub fn empty_cache(&self, batch: usize) -> KvCache {
        KvCache::new(&self.info.config, batch)
    }

    /// Prefill equal-length `rows` (one per sequence of the batch) into
    /// `cache`, which is emptied first (its buffers are reused), in chunks so
    /// no attention-score tensor much exceeds [`MAX_PREFILL_SCORES`]; returns
    /// the logits after each row's last event (`[batch, vocab]`).
    pub fn prefill(&mut self, rows: &[&[u16]], cache: &mut KvCache) -> Result<Vec<f32>, EngineError> {
        self.prefill_inner(rows, None, cache, None)
    }

    /// The largest prefill chunk whose scores stay within [`MAX_PREFILL_SCORES`].
    fn prefill_chunk(&self, rows: &[&[u16]]) -> usize {
        let batch = rows.len().max(1);
        let len = rows.first().map_or(0, |r| r.len());
        // The scores of a chunk of c after a cache of capacity cap are
        // [batch, heads, c, cap + c]; the largest c that keeps them in bounds.
        let max_len = self.info.config.max_seq_len;
        let cap = cache_capacity((len + 1).min(max_len), max_len) as f64;
        let per_row = (MAX_PREFILL_SCORES / (batch * self.info.config.n_heads)) as f64;
        let chunk = ((-cap + (cap * cap + 4.0 * per_row).sqrt()) / 2.0) as usize;
        chunk.clamp(1, len.max(1))
    }

    /// [`Model::prefill`] of one row, and how surprised the model was by it:
    /// the mean negative log-likelihood, in nats per event, of each of its
    /// tokens after the first (`None` for a single token).
    pub fn prefill_scored(&mut self, row: &[u16], cache: &mut KvCache) -> Result<(Vec<f32>, Option<f64>), EngineError> {
        let mut nats = (0.0, 0usize);
        let last = self.prefill_inner(&[row], None, cache, Some(&mut nats))?;
        Ok((last, (nats.1 > 0).then(|| nats.0 / nats.1 as f64)))
    }

    /// [`Model::prefill`] in chunks of `chunk` events.
    pub fn prefill_chunked(
        &mut self,
        rows: &[&[u16]],
        chunk: usize,
        cache: &mut KvCache,
    ) -> Result<Vec<f32>, EngineError> {
        self.prefill_inner(rows, Some(chunk), cache, None)
    }

    /// A prefill in chunks of `chunk` events (`None`: as large as the
    /// scores' bound allows); with `nats`, adds row 0's negative
    /// log-likelihood of each token after its first, and counts them.
    fn prefill_inner(
        &mut self,
        rows: &[&[u16]],
        chunk: Option<usize>,
        cache: &mut KvCache,
        mut nats: Option<&mut (f64, usize)>,
    ) -> Result<Vec<f32>, EngineError> {
        let chunk = match chunk {
            Some(c) => c,
            None => self.prefill_chunk(rows),
        };
        let batch = rows.len();
        let len = rows.first().map_or(0, |r| r.len());
        if batch == 0 || len == 0 || chunk == 0 || rows.iter().any(|r| r.len() != len) {
            return Err(self.error("a prefill needs rows of one non-zero length"));
        }
        let vocab = self.info.config.vocab_size;
        cache.reset(batch);
        // Room for the prefill and the step after it, so that step does not grow the buffers.
        let max_len = self.info.config.max_seq_len;
        cache.reserve((len + 1).min(max_len), max_len);
        let mut start = 0;
        loop {
            let end = (start + chunk).min(len);
            let tokens: Vec<i64> = rows.iter().flat_map(|r| r[start..end].iter().map(|&t| i64::from(t))).collect();
            let logits = self.forward(&tokens, cache)?;
            if let Some((sum, count)) = nats.as_deref_mut() {
                // Row 0's predictions of its own next tokens within this chunk.
                for (pos, &next) in rows[0][start + 1..(end + 1).min(len)].iter().enumerate() {
                    let row = &logits[pos * vocab..(pos + 1) * vocab];
                    if let Some(z) = crate::sampling::log_sum_exp(row) {
                        *sum += f64::from(z - row[usize::from(next)]);
                        *count += 1;
                    }
                }
            }
            if end == len {
                let n = end - start;
                return Ok((0..batch)
                    .flat_map(|b| logits[(b * n + n - 1) * vocab..(b * n + n) * vocab].iter().copied())
                    .collect());
            }
            start = end;
        }
    }

    /// Run `tokens` (`batch` rows of equal length, row-major) after `cache`,
    /// which grows by them; returns the logits `[batch, new, vocab]` (row-major).
    pub fn forward(&mut self, tokens: &[i64], cache: &mut KvCache) -> Result<Vec<f32>, EngineError> {
        let batch = cache.batch;
        if batch == 0 || tokens.is_empty() || !tokens.len().is_multiple_of(batch) {
            return Err(self.error(format!("{} tokens do not split into {batch} rows", tokens.len())));
        }
        let new = tokens.len() / batch;
        let max_len = self.info.config.max_seq_len;
        if cache.len + new > max_len {
            return Err(
                self.error(format!("context of {} events exceeds the model's window of {max_len}", cache.len + new))
            );
        }
        cache.reserve(cache.len + new, max_len);
        let path = &self.info.path;
        let err = |e: ort::Error| runtime_error(path, e);
        let tokens_t = Tensor::<i64>::from_array(([batch as i64, new as i64], tokens.to_vec())).map_err(err)?;
        let past = [cache.len as i64];
        let past_t = TensorRef::<i64>::from_array_view(([1usize], &past[..])).map_err(err)?;
        // An empty cache is passed with capacity 0: nothing to read, nothing to mask.
        let capacity = if cache.len == 0 { 0 } else { cache.capacity };
        let shape = [batch, cache.heads, capacity, cache.head_dim];
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(self.cache_names.len() + 2);
        inputs.push((Cow::Borrowed(onnx_names::TOKENS), tokens_t.into()));
        inputs.push((Cow::Borrowed(onnx_names::PAST_LEN), past_t.into()));
        for (name, buf) in self.cache_names.iter().zip(&cache.buffers) {
            let data = if capacity == 0 { &buf[..0] } else { &buf[..] };
            let view = TensorRef::<f32>::from_array_view((shape, data)).map_err(err)?;
            inputs.push((Cow::Borrowed(name.as_str()), view.into()));
        }
        let mut outputs = self.session.run(inputs).map_err(err)?;
        let logits_v =
            outputs.remove(onnx_names::LOGITS).ok_or_else(|| runtime_error(path, "the run returned no logits"))?;
        let (_, logits) = logits_v.try_extract_tensor::<f32>().map_err(err)?;
        let logits = logits.to_vec();
        for (slot, name) in self.new_names.iter().enumerate() {
            let value =
                outputs.remove(name).ok_or_else(|| runtime_error(path, format!("the run returned no {name}")))?;
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(err)?;
            let expected = [batch as i64, cache.heads as i64, new as i64, cache.head_dim as i64];
            if shape[..] != expected[..] {
                return Err(runtime_error(path, format!("{name} has shape {shape:?}, expected {expected:?}")));
            }
            cache.write(slot, data, new);
        }
        cache.len += new;
        Ok(logits)
    }
}

pub(crate) fn runtime_error(path: &Path, message: impl std::fmt::Display) -> EngineError {
    EngineError::Runtime { path: path.to_path_buf(), message: message.to_string() }
}

/// Read and check the metadata the exporter writes.
fn read_info(session: &Session, path: &Path, provider: &'static str, library: &Path) -> Result<ModelInfo, EngineError> {
    let mismatch = |problem: String| EngineError::Metadata { path: path.to_path_buf(), problem };
    let meta = session.metadata().map_err(|e| runtime_error(path, e))?;
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
    // Files from before graph version 2 carry no version entry.
    let graph_version: u32 = match meta.custom(onnx_names::META_GRAPH_VERSION) {
        None => 1,
        Some(v) => v.trim().parse().map_err(|_| mismatch(format!("graph version `{v}` is not a number")))?,
    };
    if graph_version != GRAPH_VERSION {
        return Err(EngineError::GraphVersion {
            path: path.to_path_buf(),
            found: graph_version,
            expected: GRAPH_VERSION,
        });
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
        validation_nll: meta.custom(onnx_names::META_VALIDATION_NLL).and_then(|v| v.trim().parse().ok()),
        contrast_advice: contrast_advice(&meta).map_err(mismatch)?,
        lead_advice: meta.custom(onnx_names::META_LEADS).map(|measured| LeadAdvice { measured }),
        lead_key_advice: lead_key_advice(&meta).map_err(mismatch)?,
        lead_register_advice: lead_register_advice(&meta).map_err(mismatch)?,
    })
}

/// The model's [`LeadRegisterAdvice`], when its metadata holds one; a malformed one is an error.
fn lead_register_advice(meta: &ort::session::ModelMetadata) -> Result<Option<LeadRegisterAdvice>, String> {
    let Some((spread, measured)) = lead_factor(
        meta,
        "lead register spread",
        onnx_names::META_LEAD_REGISTER_SPREAD,
        onnx_names::META_LEAD_REGISTER_MEASURED,
    )?
    else {
        return Ok(None);
    };
    let advice = LeadRegisterAdvice { spread, measured };
    advice.validate()?;
    Ok(Some(advice))
}

/// The model's [`LeadKeyAdvice`], when its metadata holds one; a malformed one is an error.
fn lead_key_advice(meta: &ort::session::ModelMetadata) -> Result<Option<LeadKeyAdvice>, String> {
    let Some((gain, measured)) =
        lead_factor(meta, "lead key gain", onnx_names::META_LEAD_KEY_GAIN, onnx_names::META_LEAD_KEY_MEASURED)?
    else {
        return Ok(None);
    };
    let advice = LeadKeyAdvice { gain, measured };
    advice.validate()?;
    Ok(Some(advice))
}

/// A lead factor `what` and its sentence from the metadata keys `value` and `measured`, when
/// present; a value that is not a number is an error.
fn lead_factor(
    meta: &ort::session::ModelMetadata,
    what: &str,
    value: &str,
    measured: &str,
) -> Result<Option<(f32, String)>, String> {
    let Some(text) = meta.custom(value) else { return Ok(None) };
    let number: f32 = text.trim().parse().map_err(|_| format!("{what} `{text}` is not a number"))?;
    Ok(Some((number, meta.custom(measured).unwrap_or_default())))
}

/// The model's [`ContrastAdvice`], when its metadata holds one; a malformed one is an error.
fn contrast_advice(meta: &ort::session::ModelMetadata) -> Result<Option<ContrastAdvice>, String> {
    let Some(with) = meta.custom(onnx_names::META_CONTRAST_WITH) else { return Ok(None) };
    let strength = meta.custom(onnx_names::META_CONTRAST).unwrap_or_default();
    let strength: f32 =
        strength.trim().parse().map_err(|_| format!("contrast strength `{strength}` is not a number"))?;
    let measured = meta.custom(onnx_names::META_CONTRAST_MEASURED).unwrap_or_default();
    let following = meta.custom(onnx_names::META_CONTRAST_FOLLOWING);
    let following_strength = meta
        .custom(onnx_names::META_CONTRAST_FOLLOWING_STRENGTH)
        .map(|f| f.trim().parse::<f32>().map_err(|_| format!("contrast following a primer `{f}` is not a number")))
        .transpose()?;
    let advice = ContrastAdvice { with, strength, measured, following, following_strength };
    advice.validate().map_err(|e| format!("its contrast advice: {e}"))?;
    Ok(Some(advice))
}

/// What to do about a CUDA provider that would not start, from ONNX Runtime's
/// message: the GPU build is there but the machine has no NVIDIA driver; the
/// GPU build is there but CUDA's libraries are not; or the library is the CPU build.
fn cuda_advice(message: &str, library: &Path) -> String {
    let fallback = "or use --provider cpu or auto";
    if message.contains("libcuda.so") {
        format!(
            "ONNX Runtime from {} is the GPU build, but this machine has no NVIDIA driver (libcuda.so.1): install \
             the driver, {fallback}",
            library.display()
        )
    } else if message.contains("providers_cuda") {
        format!(
            "ONNX Runtime from {} is the GPU build, but CUDA's libraries (cuBLAS, cuDNN, the CUDA runtime) are not \
             found: `cargo xtask setup --cuda` installs them, or put them on LD_LIBRARY_PATH, {fallback}",
            library.display()
        )
    } else {
        format!(
            "ONNX Runtime from {} has no CUDA; install the GPU build with `cargo xtask setup --cuda`, PyPI's \
             onnxruntime-gpu, and point ORT_DYLIB_PATH at its libonnxruntime.so, {fallback}",
            library.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_advice_names_what_is_missing() {
        let lib = Path::new("/x/libonnxruntime.so.1.31.1");
        // ONNX Runtime's messages (1.31.1) on a machine without a driver, without CUDA's libraries, and with the CPU build.
        let no_driver =
            "Failed to load library /x/libonnxruntime_providers_cuda.so with error: libcuda.so.1: cannot open";
        let no_libs =
            "Failed to load library /x/libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open";
        let cpu_build = "CUDA execution provider is not enabled in this build";
        assert!(cuda_advice(no_driver, lib).contains("no NVIDIA driver (libcuda.so.1)"));
        assert!(cuda_advice(no_libs, lib).contains("CUDA's libraries"));
        let cpu = cuda_advice(cpu_build, lib);
        assert!(cpu.contains("has no CUDA") && cpu.contains("/x/libonnxruntime.so.1.31.1"), "{cpu}");
    }

    #[test]
    fn capacities_come_in_eighths_of_an_octave_within_the_window() {
        assert_eq!(cache_capacity(0, 2048), 0);
        assert_eq!(cache_capacity(1, 2048), MIN_CACHE_CAPACITY);
        assert_eq!(cache_capacity(10, 32), 32, "never beyond the window");
        assert_eq!(cache_capacity(65, 2048), 72);
        assert_eq!(cache_capacity(512, 2048), 512);
        assert_eq!(cache_capacity(513, 2048), 576);
        assert_eq!(cache_capacity(1025, 2048), 1152);
        assert_eq!(cache_capacity(2000, 2048), 2048);
        assert_eq!(cache_capacity(2048, 2048), 2048);
        for needed in 1..=4096 {
            let cap = cache_capacity(needed, 4096);
            assert!(cap >= needed, "{needed} -> {cap}");
            assert!(needed <= MIN_CACHE_CAPACITY || cap * 8 <= needed * 9, "{needed} -> {cap}: over 1/8 spare");
        }
    }

    fn tiny_cache(batch: usize) -> KvCache {
        let cfg = ModelConfig { n_layers: 1, d_model: 4, n_heads: 2, ..ModelConfig::TINY };
        KvCache::new(&cfg, batch)
    }

    /// `[batch, heads, new, head_dim]` values that say where they belong: b, h, position, dim.
    fn rows(batch: usize, new: usize, first: usize) -> Vec<f32> {
        let mut v = Vec::new();
        for b in 0..batch {
            for h in 0..2 {
                for t in first..first + new {
                    for d in 0..2 {
                        v.push((b * 1000 + h * 100 + t * 10 + d) as f32);
                    }
                }
            }
        }
        v
    }

    fn at(c: &KvCache, slot: usize, b: usize, h: usize, t: usize, d: usize) -> f32 {
        c.buffers[slot][((b * c.heads + h) * c.capacity + t) * c.head_dim + d]
    }

    #[test]
    fn a_cache_keeps_its_rows_while_it_grows_repeats_and_drops_sequences() {
        let mut c = tiny_cache(1);
        c.reserve(3, 256);
        assert_eq!(c.capacity(), MIN_CACHE_CAPACITY);
        c.write(0, &rows(1, 3, 0), 3);
        c.len = 3;
        c.reserve(100, 256);
        assert_eq!(c.capacity(), 104);
        assert_eq!(at(&c, 0, 0, 1, 2, 1), 121.0, "contents survive growth");
        assert_eq!(at(&c, 0, 0, 1, 3, 0), 0.0, "new room is zeros");
        c.repeat(3).expect("repeat");
        assert_eq!((c.batch(), at(&c, 0, 2, 1, 2, 1)), (3, 121.0));
        c.write(0, &rows(3, 1, 3), 1);
        c.len = 4;
        c.retain(&[1, 2]).expect("retain");
        assert_eq!(c.batch(), 2);
        assert_eq!(at(&c, 0, 0, 0, 3, 0), 1030.0, "old row 1 is row 0");
        assert_eq!(at(&c, 0, 1, 1, 3, 1), 2131.0, "old row 2 is row 1");
        assert_eq!(c.buffers[1].len(), 2 * 2 * 104 * 2);
        assert!(c.retain(&[2]).is_err());
        assert!(c.repeat(4).is_err(), "only a batch of 1 repeats");
        c.reset(2);
        assert_eq!((c.len(), c.capacity()), (0, 104), "a reset keeps the buffers of the same batch");
    }
}
