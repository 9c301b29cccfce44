//! The generator and the thread it runs on. Inference never runs on the audio
//! or GUI thread: the session thread sends a [`Job`] (core's generation
//! request and the model to run it), the inference thread loads the style's
//! model (once, then cached), generates with progress and cancel, and answers
//! with a [`Finished`] on its own channel. The model is ONNX Runtime through
//! `cadenza_core::engine`, with the library and provider this machine's
//! settings choose ([`crate::settings`]): the bundle's CPU library unless the
//! user has a GPU build, and the CPU whenever CUDA does not start.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use cadenza_core::engine::PrimerFit;
use cadenza_core::request::GenerateRequest;
use cadenza_core::Performance;
use crossbeam::channel::{Receiver, Sender};

use crate::settings::OrtChoice;
use crate::shared::Shared;
use crate::state::LeanFrom;

/// One generation: the request in seconds (the session converts from beats), the model to run
/// it, and the ONNX Runtime libraries and provider this machine's settings choose.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: u64,
    pub model: PathBuf,
    pub request: GenerateRequest,
    pub ort: OrtChoice,
    /// The variation the musician has chosen (0-based): made first, alone, and sent as soon as
    /// it is done, so that it plays while the others are made.
    pub first: usize,
    /// Send the chosen variation's start as soon as it is made ([`Early`]); off while the host
    /// renders faster than real time, whose playhead could overtake the rest of it.
    pub stream_start: bool,
    /// Only load the model, so that its first generation does not wait for that, and answer
    /// with what runs it (a [`Finished`] without variations, its `id` that of no generation):
    /// the session sends one when the musician starts playing into a style.
    pub warm_only: bool,
    /// Which style's model the style leans away from.
    pub lean_from: LeanFrom,
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

/// The result of a job, sent back to the session thread: early with the
/// chosen variation alone (`early`), its start as soon as it is made and then
/// all of it, and at the end with all the variations.
#[derive(Debug)]
pub struct Finished {
    pub id: u64,
    /// Some: the result holds the chosen variation alone, made before the others so that it can
    /// play while they are made; the job goes on. `None`: the job's end.
    pub early: Option<Early>,
    pub result: Result<Vec<Performance>, GenError>,
    /// Wall time the inference thread spent (model load included), in milliseconds.
    pub elapsed_ms: u64,
    /// What ran it, e.g. "jazz model (...) on ONNX Runtime CPU from /x (Cadenza's bundle)".
    pub engine: String,
    /// What did not run as the settings asked, in words (a library that did not load, CUDA
    /// that did not start, a change that needs a restart of the host); empty when all did.
    pub notices: Vec<String>,
    /// What the primer cost the style and whether the style led it; `None` when improvising.
    pub primer_fit: Option<PrimerFit>,
}

/// What an early [`Finished`] holds of the chosen variation
/// ([`cadenza_core::engine::Engine::generate_one_early`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Early {
    /// Which variation (0-based).
    pub index: usize,
    /// All of it; false: its start, notes still sounding held to the end.
    pub complete: bool,
}

/// Something that continues a primer. One implementation exists: ONNX Runtime via the engine.
pub trait Generator: Send {
    /// Which library and execution provider run it.
    fn describe(&self) -> String;
    /// Generate the request's variations; `progress(fraction)` returns false to cancel, and
    /// `ready(variation, complete)` receives variation `first` as it is made, before the others:
    /// its start, then all of it.
    fn generate(
        &mut self,
        request: &GenerateRequest,
        first: usize,
        progress: &mut dyn FnMut(f32) -> bool,
        ready: &mut dyn FnMut(Performance, bool),
    ) -> Result<Vec<Performance>, GenError>;
    /// The last generation's [`PrimerFit`]; `None` after an improvisation or a failure.
    fn primer_fit(&self) -> Option<PrimerFit>;
}

/// A loaded generator and what did not go as `ort` asked (see [`Finished::notices`]).
pub struct Loaded {
    pub generator: Box<dyn Generator>,
    pub notices: Vec<String>,
}

/// Load the model at `model` with the first library of `ort` that loads, on its provider, with
/// the model it leans away from (`lean_from`). ONNX Runtime loads once per process: once it has,
/// that library runs every model, and a choice of another one is a notice asking for a restart of
/// the host.
pub fn load_generator(model: &Path, ort: &OrtChoice, lean_from: &LeanFrom) -> Result<Loaded, GenError> {
    engine_impl::load(model, ort, lean_from)
}

mod engine_impl {
    use super::*;
    use crate::settings::{same_file, LibrarySource};
    use cadenza_core::engine::{DefaultLead, Engine, EngineError, EngineOptions, Provider, DEFAULT_INTRA_THREADS};

    struct EngineGenerator {
        engine: Engine,
        model: PathBuf,
        /// The style it leans away from, when that model loaded, and whether the musician chose
        /// it (else its model did).
        leans_from: Option<(String, bool)>,
        /// Where the library came from; `None`: the development fallback (`ORT_DYLIB_PATH`).
        source: Option<LibrarySource>,
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

    fn options(library: Option<&Path>, provider: Provider) -> EngineOptions {
        // One thread: the fastest for generating, and it leaves the host's audio threads the rest.
        EngineOptions { ort_library: library.map(Path::to_path_buf), intra_threads: DEFAULT_INTRA_THREADS, provider }
    }

    /// The model on `library`: on CUDA where `execution` asks for it (`auto`: unless the
    /// library is the bundle's, which has no CUDA), else or when CUDA does not start on the CPU.
    fn open(
        model: &Path,
        library: Option<&Path>,
        source: Option<LibrarySource>,
        execution: Provider,
        notices: &mut Vec<String>,
    ) -> Result<Engine, EngineError> {
        let try_cuda = match execution {
            Provider::Cpu => false,
            Provider::Cuda => true,
            Provider::Auto => source.is_some_and(|s| s != LibrarySource::Bundle),
        };
        if try_cuda {
            match Engine::load(model, &options(library, Provider::Cuda)) {
                Err(EngineError::ProviderUnavailable { message, .. }) => {
                    // The engine's advice after the reason is for the command line.
                    let reason = message.split(" (ONNX Runtime from ").next().unwrap_or(&message);
                    let from = library.map(|p| format!(" from {}", p.display())).unwrap_or_default();
                    notices.push(format!(
                        "CUDA did not start with ONNX Runtime{from} ({reason}); running on the CPU. A GPU needs \
                         onnxruntime-gpu's library (cargo xtask setup --cuda) and NVIDIA's CUDA 13 and cuDNN 9 libraries"
                    ));
                }
                other => return other,
            }
        }
        Engine::load(model, &options(library, Provider::Cpu))
    }

    /// The model of the style `engine`'s model leans away from: the musician's choice
    /// (`lean_from`), else the one its model names
    /// ([`cadenza_core::engine::ModelInfo::contrast_advice`]); found beside it or among the
    /// styles and loaded on the same library and provider. Returns that style and whether the
    /// musician chose it. A model that is missing or does not load is a notice: the style still
    /// plays, without leaning.
    fn load_contrast(
        engine: &mut Engine,
        model: &Path,
        lean_from: &LeanFrom,
        notices: &mut Vec<String>,
    ) -> Option<(String, bool)> {
        let info = engine.info().clone();
        let (other, paths, following, advice) = match lean_from {
            LeanFrom::Off => return None,
            LeanFrom::Style(other) if *other == info.style => {
                notices.push(format!("{other} cannot lean away from itself; it plays without leaning"));
                return None;
            }
            LeanFrom::Style(other) => match cadenza_core::locate::model_beside_or_style(model, other) {
                Some(path) => (other.clone(), vec![path], None, None),
                None => {
                    notices.push(format!(
                        "no {other}.onnx is beside {} or among the styles to lean away from; {} plays without leaning",
                        model.display(),
                        info.style
                    ));
                    return None;
                }
            },
            LeanFrom::Model => {
                let advice = info.contrast_advice.as_ref()?;
                match cadenza_core::locate::advised_contrast_models(model, &info.style, advice) {
                    Ok((paths, following)) => {
                        let mut named = advice.styles().collect::<Vec<_>>().join(" and ");
                        if following.is_some() {
                            named += &format!(
                                " ({} following a phrase)",
                                advice.following_styles().collect::<Vec<_>>().join(" and ")
                            );
                        }
                        (named, paths, following, Some(advice))
                    }
                    Err(nowhere) => {
                        notices.push(format!("{nowhere}; it plays without leaning"));
                        return None;
                    }
                }
            }
        };
        // Loaded on the engine's library and provider, each checked against this build's codec.
        match engine.load_contrasts(&paths, following.as_deref()) {
            Ok(()) => {
                if let Some(advice) = advice {
                    engine.set_following_lean(advice);
                }
                Some((other, !lean_from.is_model()))
            }
            Err(e) => {
                notices.push(format!("{} plays without leaning away from {other}: {e}", info.style));
                None
            }
        }
    }

    pub fn load(model: &Path, ort: &OrtChoice, lean_from: &LeanFrom) -> Result<Loaded, GenError> {
        let mut notices = Vec::new();
        let done = |mut engine: Engine, source, mut notices: Vec<String>| {
            let leans_from = load_contrast(&mut engine, model, lean_from, &mut notices);
            let generator = Box::new(EngineGenerator { engine, model: model.to_path_buf(), leans_from, source });
            Ok(Loaded { generator, notices })
        };
        if let Some(loaded) = cadenza_core::engine::loaded_library() {
            if let Some(wanted) = ort.libraries.first().filter(|l| !same_file(&l.path, &loaded)) {
                let (path, from) = (wanted.path.display(), wanted.source.describe());
                notices.push(if wanted.path.is_file() {
                    format!(
                        "ONNX Runtime is already loaded from {} in this host and cannot be swapped; restart the \
                         host to use {path} (from {from})",
                        loaded.display()
                    )
                } else {
                    format!("{path} (from {from}) is not a file; ONNX Runtime runs from {}", loaded.display())
                });
            }
            let source = ort.libraries.iter().find(|l| same_file(&l.path, &loaded)).map(|l| l.source);
            let engine =
                open(model, Some(&loaded), source, ort.execution, &mut notices).map_err(|e| to_gen_error(e, model))?;
            return done(engine, source, notices);
        }
        if ort.libraries.is_empty() {
            // Outside a bundle (development), the engine's own search (ORT_DYLIB_PATH) may still find it.
            if std::env::var_os(cadenza_core::engine::ORT_DYLIB_ENV).is_none() {
                let tried: Vec<String> = ort.bundle_missing.iter().map(|p| p.display().to_string()).collect();
                return Err(GenError::Runtime(format!(
                    "the library is not in Cadenza's bundle (looked for {}); reinstall Cadenza",
                    tried.join(", ")
                )));
            }
            let engine = open(model, None, None, ort.execution, &mut notices).map_err(|e| to_gen_error(e, model))?;
            return done(engine, None, notices);
        }
        let last = ort.libraries.len() - 1;
        for (i, library) in ort.libraries.iter().enumerate() {
            match open(model, Some(&library.path), Some(library.source), ort.execution, &mut notices) {
                Ok(engine) => return done(engine, Some(library.source), notices),
                Err(e @ (EngineError::LibraryNotFound { .. } | EngineError::LibraryLoad { .. })) if i < last => {
                    let why = match e {
                        EngineError::LibraryLoad { message, .. } => message,
                        _ => "no such file".to_string(),
                    };
                    let next = &ort.libraries[i + 1];
                    notices.push(format!(
                        "ONNX Runtime from {} ({}) did not load: {why}; using {}'s",
                        library.path.display(),
                        library.source.describe(),
                        next.source.describe()
                    ));
                }
                Err(e) => return Err(to_gen_error(e, model)),
            }
        }
        Err(GenError::Runtime("no ONNX Runtime library to try".into()))
    }

    impl Generator for EngineGenerator {
        fn describe(&self) -> String {
            let info = self.engine.info();
            let from = self.source.map(|s| format!(" ({})", s.describe())).unwrap_or_default();
            let leans = self.leans_from.as_ref().map_or(String::new(), |(s, chosen)| {
                format!("; leans away from {s}{} (Lean away)", if *chosen { ", as you chose" } else { "" })
            });
            let leads = match self.engine.default_lead() {
                DefaultLead::ByCost => "; leads foreign phrases by default (Style leads)",
                DefaultLead::ByJudge => "; leads phrases that sound like another style (Style leads)",
                DefaultLead::Never => "",
            };
            format!(
                "{} model ({} layers, window {}) on ONNX Runtime {} from {}{from}{leans}{leads}",
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
            first: usize,
            progress: &mut dyn FnMut(f32) -> bool,
            ready: &mut dyn FnMut(Performance, bool),
        ) -> Result<Vec<Performance>, GenError> {
            let mut report = |p: cadenza_core::engine::Progress| progress(p.fraction as f32);
            let mut early = |v: &cadenza_core::engine::Variation, complete| ready(v.performance.clone(), complete);
            let variations = self
                .engine
                .generate_one_early(request, first, &mut report, &mut early)
                .map_err(|e| to_gen_error(e, &self.model))?;
            Ok(variations.into_iter().map(|v| v.performance).collect())
        }

        fn primer_fit(&self) -> Option<PrimerFit> {
            self.engine.primer_fit()
        }
    }
}

/// The loaded model: which file at which modification time, on which libraries and provider.
struct Cached {
    model: PathBuf,
    modified: std::time::SystemTime,
    ort: OrtChoice,
    lean_from: LeanFrom,
    loaded: Loaded,
}

/// Spawn the inference thread. It ends when `jobs` is closed.
pub fn spawn(
    shared: Arc<Shared>,
    jobs: Receiver<Job>,
    done: Sender<Finished>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("cadenza-inference".into()).spawn(move || {
        let mut cache: Option<Cached> = None;
        while let Ok(job) = jobs.recv() {
            if job.warm_only {
                // A failure is said when Generate runs into it.
                if let (Ok(()), Some(c)) = (load_cached(&job, &mut cache), cache.as_ref()) {
                    let engine = c.loaded.generator.describe();
                    let (result, notices) = (Ok(Vec::new()), Vec::new());
                    let warm =
                        Finished { id: job.id, early: None, result, elapsed_ms: 0, engine, notices, primer_fit: None };
                    if done.send(warm).is_err() {
                        break;
                    }
                }
                continue;
            }
            let started = Instant::now();
            shared.progress.permille.store(0, Ordering::Release);
            // The chosen variation goes to the session as it is made: its start, then (when others
            // follow) all of it.
            let variations = job.request.settings.variations;
            let mut ready = |p: Performance, complete: bool, engine: &str, notices: &[String]| {
                if (!complete && job.stream_start) || (complete && variations > 1) {
                    let _ = done.send(Finished {
                        id: job.id,
                        early: Some(Early { index: job.first.min(variations - 1), complete }),
                        result: Ok(vec![p]),
                        elapsed_ms: started.elapsed().as_millis() as u64,
                        engine: engine.to_string(),
                        notices: notices.to_vec(),
                        primer_fit: None,
                    });
                }
            };
            let (result, engine, notices) = run_job(&shared, &job, &mut cache, &mut ready);
            let primer_fit = match (&result, cache.as_ref()) {
                (Ok(_), Some(c)) => c.loaded.generator.primer_fit(),
                _ => None,
            };
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let finished = Finished { id: job.id, early: None, result, elapsed_ms, engine, notices, primer_fit };
            shared.progress.running.store(false, Ordering::Release);
            if done.send(finished).is_err() {
                break;
            }
        }
    })
}

/// Hands the chosen variation on as it is made: it, whether it is complete, and what runs it
/// (see [`Finished::engine`] and [`Finished::notices`]).
type ReadyFn<'r> = dyn FnMut(Performance, bool, &str, &[String]) + 'r;

/// The job's model in `cache`, loaded unless it is there already (the same file, unchanged,
/// on the same libraries).
fn load_cached(job: &Job, cache: &mut Option<Cached>) -> Result<(), GenError> {
    let modified = std::fs::metadata(&job.model).and_then(|m| m.modified()).map_err(|e| GenError::Model {
        path: job.model.clone(),
        message: format!("{}: cannot read the model: {e}", job.model.display()),
    })?;
    let fresh = matches!(cache, Some(c) if c.model == job.model && c.modified == modified && c.ort == job.ort
        && c.lean_from == job.lean_from);
    if !fresh {
        *cache = None;
        // A panic while loading (inside ONNX Runtime's bindings) must not take the host down either.
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            load_generator(&job.model, &job.ort, &job.lean_from)
        }))
        .unwrap_or_else(|_| Err(GenError::Failed("loading the model panicked; see the log".into())))?;
        let lean_from = job.lean_from.clone();
        *cache = Some(Cached { model: job.model.clone(), modified, ort: job.ort.clone(), lean_from, loaded });
    }
    Ok(())
}

fn run_job(
    shared: &Shared,
    job: &Job,
    cache: &mut Option<Cached>,
    ready: &mut ReadyFn,
) -> (Result<Vec<Performance>, GenError>, String, Vec<String>) {
    if let Err(e) = load_cached(job, cache) {
        return (Err(e), String::new(), Vec::new());
    }
    let Some(Cached { loaded: Loaded { generator, notices }, .. }) = cache.as_mut() else {
        return (Err(GenError::Failed("no model loaded".into())), String::new(), Vec::new());
    };
    let engine = generator.describe();
    let notices = notices.clone();
    let mut progress = |fraction: f32| {
        shared.progress.permille.store((fraction.clamp(0.0, 1.0) * 1000.0) as u32, Ordering::Release);
        !shared.progress.cancel.load(Ordering::Acquire)
    };
    let mut ready = |p: Performance, complete: bool| ready(p, complete, &engine, &notices);
    // A panic inside the engine must not take the host down: it becomes an error.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        generator.generate(&job.request, job.first, &mut progress, &mut ready)
    }))
    .unwrap_or_else(|_| Err(GenError::Failed("the engine panicked; see the log".into())));
    if result.is_err() && shared.progress.cancel.load(Ordering::Acquire) {
        return (Err(GenError::Cancelled), engine, notices);
    }
    (result, engine, notices)
}
