//! The generator and the thread it runs on. Inference never runs on the audio
//! or GUI thread: the session thread sends a [`Job`] (core's generation
//! request and the model to run it), the inference thread loads the style's
//! model (once, then cached), generates with progress and cancel, and answers
//! with a [`Finished`] on its own channel. The model is ONNX Runtime through
//! `cadenza_core::engine`, with the library found inside the bundle.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use cadenza_core::request::GenerateRequest;
use cadenza_core::Performance;
use crossbeam::channel::{Receiver, Sender};

use crate::shared::Shared;

/// One generation: the request in seconds (the session converts from beats) and the model to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: u64,
    pub model: PathBuf,
    pub request: GenerateRequest,
}

/// Why a generation produced nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenError {
    #[error("ONNX Runtime is missing: {0}")]
    Runtime(String),
    /// `message` names the file.
    #[error("{message}")]
    Model { path: PathBuf, message: String },
    #[error("generation failed: {0}")]
    Failed(String),
    #[error("cancelled")]
    Cancelled,
}

/// The result of a job, sent back to the session thread.
#[derive(Debug)]
pub struct Finished {
    pub id: u64,
    pub result: Result<Vec<Performance>, GenError>,
    /// Wall time the inference thread spent (model load included), in milliseconds.
    pub elapsed_ms: u64,
    /// What ran it, e.g. "ONNX Runtime (CPU)".
    pub engine: String,
}

/// Something that continues a primer. One implementation exists: ONNX Runtime via the engine.
pub trait Generator: Send {
    /// Which library and execution provider run it.
    fn describe(&self) -> String;
    /// Generate the request's variations; `progress(fraction)` returns false to cancel.
    fn generate(
        &mut self,
        request: &GenerateRequest,
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> Result<Vec<Performance>, GenError>;
}

/// Load the model at `model` with the ONNX Runtime library at `ort_library`.
pub fn load_generator(model: &Path, ort_library: Option<&Path>) -> Result<Box<dyn Generator>, GenError> {
    engine_impl::load(model, ort_library)
}

mod engine_impl {
    use super::*;
    use cadenza_core::engine::{Engine, EngineError, EngineOptions, Provider};

    /// Most ONNX Runtime threads one generation uses: leave the host's audio threads room.
    const MAX_INTRA_THREADS: usize = 4;

    struct EngineGenerator {
        engine: Engine,
        model: PathBuf,
    }

    fn to_gen_error(e: EngineError, model: &Path) -> GenError {
        match e {
            EngineError::LibraryNotFound { .. }
            | EngineError::LibraryLoad { .. }
            | EngineError::LibraryConflict { .. } => GenError::Runtime(e.to_string()),
            EngineError::ModelRead { .. }
            | EngineError::ModelInvalid { .. }
            | EngineError::Metadata { .. }
            | EngineError::GraphVersion { .. } => GenError::Model { path: model.to_path_buf(), message: e.to_string() },
            EngineError::Cancelled => GenError::Cancelled,
            other => GenError::Failed(other.to_string()),
        }
    }

    pub fn load(model: &Path, ort_library: Option<&Path>) -> Result<Box<dyn Generator>, GenError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_INTRA_THREADS);
        let opts = EngineOptions {
            ort_library: ort_library.map(Path::to_path_buf),
            intra_threads: threads,
            provider: Provider::Cpu,
        };
        let engine = Engine::load(model, &opts).map_err(|e| to_gen_error(e, model))?;
        Ok(Box::new(EngineGenerator { engine, model: model.to_path_buf() }))
    }

    impl Generator for EngineGenerator {
        fn describe(&self) -> String {
            let info = self.engine.info();
            format!(
                "{} model ({} layers, window {}) on ONNX Runtime {} from {}",
                info.style,
                info.config.n_layers,
                info.config.max_seq_len,
                info.provider,
                info.library.display()
            )
        }

        fn generate(
            &mut self,
            request: &GenerateRequest,
            progress: &mut dyn FnMut(f32) -> bool,
        ) -> Result<Vec<Performance>, GenError> {
            let mut report = |p: cadenza_core::engine::Progress| progress(p.fraction as f32);
            self.engine.generate(request, &mut report).map_err(|e| to_gen_error(e, &self.model))
        }
    }
}

/// Spawn the inference thread. It ends when `jobs` is closed.
pub fn spawn(
    shared: Arc<Shared>,
    jobs: Receiver<Job>,
    done: Sender<Finished>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("cadenza-inference".into()).spawn(move || {
        let mut cache: Option<(PathBuf, std::time::SystemTime, Box<dyn Generator>)> = None;
        while let Ok(job) = jobs.recv() {
            let started = Instant::now();
            shared.progress.permille.store(0, Ordering::Release);
            let (result, engine) = run_job(&shared, &job, &mut cache);
            let finished = Finished { id: job.id, result, elapsed_ms: started.elapsed().as_millis() as u64, engine };
            shared.progress.running.store(false, Ordering::Release);
            if done.send(finished).is_err() {
                break;
            }
        }
    })
}

fn run_job(
    shared: &Shared,
    job: &Job,
    cache: &mut Option<(PathBuf, std::time::SystemTime, Box<dyn Generator>)>,
) -> (Result<Vec<Performance>, GenError>, String) {
    let modified = match std::fs::metadata(&job.model).and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(e) => {
            return (
                Err(GenError::Model {
                    path: job.model.clone(),
                    message: format!("{}: cannot read the model: {e}", job.model.display()),
                }),
                String::new(),
            )
        }
    };
    let fresh = matches!(cache, Some((p, t, _)) if *p == job.model && *t == modified);
    if !fresh {
        *cache = None;
        let ort = match crate::locate::ort_library() {
            Ok(path) => Some(path),
            // Outside a bundle (development), the engine's own search (ORT_DYLIB_PATH) may still find it.
            Err(_) if std::env::var_os(cadenza_core::engine::ORT_DYLIB_ENV).is_some() => None,
            Err(tried) => {
                let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
                let message = format!(
                    "the library is not in Cadenza's bundle (looked for {}); reinstall Cadenza",
                    tried.join(", ")
                );
                return (Err(GenError::Runtime(message)), String::new());
            }
        };
        match load_generator(&job.model, ort.as_deref()) {
            Ok(g) => *cache = Some((job.model.clone(), modified, g)),
            Err(e) => return (Err(e), String::new()),
        }
    }
    let Some((_, _, generator)) = cache.as_mut() else {
        return (Err(GenError::Failed("no model loaded".into())), String::new());
    };
    let engine = generator.describe();
    let mut progress = |fraction: f32| {
        shared.progress.permille.store((fraction.clamp(0.0, 1.0) * 1000.0) as u32, Ordering::Release);
        !shared.progress.cancel.load(Ordering::Acquire)
    };
    // A panic inside the engine must not take the host down: it becomes an error.
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| generator.generate(&job.request, &mut progress)))
            .unwrap_or_else(|_| Err(GenError::Failed("the engine panicked; see the log".into())));
    if result.is_err() && shared.progress.cancel.load(Ordering::Acquire) {
        return (Err(GenError::Cancelled), engine);
    }
    (result, engine)
}
