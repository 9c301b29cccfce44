//! The inference engine the command line and the plugin share: loads a
//! Cadenza `.onnx` model with ONNX Runtime, then continues a primer (or
//! improvises from nothing) with a KV cache, steering and seeded sampling,
//! several variations in one batched run (or one alone, handed over early,
//! and the rest in a batch: [`Engine::generate_one_early`]).
//!
//! One [`Engine`] belongs to one thread (`generate` takes `&mut self`); the
//! plugin runs it on its worker thread. ONNX Runtime is loaded once per
//! process from an explicit path, `ORT_DYLIB_PATH`, or the folder of the
//! binary holding this code; a missing library is an [`EngineError`], never a panic.
//!
//! The KV cache ([`KvCache`]) lives in buffers the engine owns, sized in
//! buckets ([`cache_capacity`]) so a short context reads a short buffer;
//! ONNX Runtime reads them in place and returns only the new positions' keys
//! and values. Variations that have finished leave the batch.
//!
//! A context longer than the model's window (primer plus generation) slides:
//! the most recent [`slide_keep`] events are prefilled again and generation
//! goes on. With relative attention and no absolute positions the model sees
//! exactly what it saw in training, a window of recent events.
//!
//! With a primer and [`crate::sampling::Steering::own_voice`] above 0, a
//! second stream per variation reads only the continuation, and its
//! prediction is mixed into the primed one before steering.
//!
//! With a contrast model ([`Engine::set_contrast`]) and
//! [`crate::sampling::Steering::contrast`] above 0, a third stream per
//! variation runs the contrast model over the primed context, and the
//! style's prediction leans away from its (from the geometric mean of
//! theirs when there are several, [`Engine::set_contrasts`]): fully when it improvises or
//! ignores its primer (follow 0), else as far as the primer is foreign to
//! the style by the style judge's ear and, for a style that leads by cost,
//! by cost ([`foreignness`], [`PrimerFit::lean`]), so a phrase in its own
//! idiom is followed as it sounds. A model may lean from other models
//! while following a primer ([`Engine::set_following_contrasts`]).
//!
//! Both side streams ([`SideVoice`]) run on a thread beside the primed
//! stream's, each step at the same time as its step, the own voice on a
//! second session of the style's model.
//!
//! A note held for [`crate::sampling::Steering::max_note_s`] is released by the engine: it
//! emits the note-off (shortening a time shift that would carry the note
//! further) and feeds it to the model like a sampled event.

pub mod runtime;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::classifier::{Judgement, StyleJudge};
use crate::codec::{self, Decoder, Event, START, VOCAB_SIZE};
use crate::follow::{FollowState, Follower};
use crate::model::ModelConfig;
use crate::performance::{Note, Performance};
use crate::sampling::{contrast_log_probs, mix_log_probs, ContrastAdvice, Sampler, StyleLead, MAX_CONTRAST};

use crate::request::{GenerateRequest, Length, MAX_EVENTS, MAX_EVENTS_PER_SECOND};

pub use runtime::{
    cache_capacity, find_library, library_in, library_search_dirs, loaded_library, KvCache, Model,
    CACHE_BUCKETS_PER_OCTAVE, LIBRARY_NAMES, MAX_PREFILL_SCORES, MIN_CACHE_CAPACITY, ORT_DYLIB_ENV,
};

/// Events kept when the window slides: half the window, so one prefill of
/// half a window buys half a window of cached steps (the model then always
/// sees between half and all of its window). Keeping three quarters costs
/// a prefill every quarter window: 30 s of music from `small` took 1.08 s
/// that way against 0.59 s with half (`cargo xtask bench generate`, 2 cores).
pub fn slide_keep(max_seq_len: usize) -> usize {
    (max_seq_len / 2).max(1)
}

/// What a model with a window of `max_seq_len` events reads of `prefix`:
/// all of it, or its most recent [`slide_keep`] events when it is longer.
fn context_window(prefix: &[u16], max_seq_len: usize) -> &[u16] {
    if prefix.len() > max_seq_len {
        &prefix[prefix.len() - slide_keep(max_seq_len)..]
    } else {
        prefix
    }
}

/// The median of `xs` (sorts them; NaN when empty): how benchmarks of the engine
/// report step times, robust to the odd step another process preempts.
pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// CUDA when ONNX Runtime can use it, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// CUDA or an error.
    Cuda,
}

/// ONNX Runtime threads for generating: one. A step of generation runs one
/// event per sequence through the graph, and its products are too small to
/// share: waking a second thread for each of them costs more than it saves.
/// On two cores one thread makes 30 s of music in about 0.8 of the time two
/// take for one variation, and in about the same time for four (`cargo xtask
/// bench generate` prints both ratios); its steps are the faster for every
/// preset up to `base`. Only whole-sequence runs (a long primer's prefill)
/// go faster on two.
pub const DEFAULT_INTRA_THREADS: usize = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// The ONNX Runtime shared library; `None` searches `ORT_DYLIB_PATH`,
    /// then the folder of this binary (see [`library_search_dirs`]).
    pub ort_library: Option<PathBuf>,
    /// Threads inside one operator; 0 lets ONNX Runtime pick (one per physical core).
    /// Idle threads sleep (spin-waiting is off), so a plugin costs nothing between runs.
    /// [`DEFAULT_INTRA_THREADS`] is what the plugin and `cadenza generate` use.
    pub intra_threads: usize,
    pub provider: Provider,
}

/// What a loaded model is.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub path: PathBuf,
    /// The style it was trained on, e.g. "jazz".
    pub style: String,
    pub config: ModelConfig,
    pub codec_version: u32,
    /// One line about the training data.
    pub data_summary: String,
    /// The execution provider actually running: "CPU" or "CUDA".
    pub provider: &'static str,
    /// The ONNX Runtime library in use.
    pub library: PathBuf,
    /// Its validation loss on its own style, nats per event, when the export
    /// recorded one: what music of its style costs it, against which a
    /// primer's cost says how foreign the primer is ([`foreignness`]).
    pub validation_nll: Option<f64>,
    /// The style it leans away from by default, when its export recorded one.
    pub contrast_advice: Option<ContrastAdvice>,
    /// Whether it leads foreign primers by default ([`crate::sampling::StyleLead::Model`]),
    /// when its export recorded so.
    pub lead_advice: Option<crate::sampling::LeadAdvice>,
    /// How much harder it holds the key while it leads, when its export recorded so.
    pub lead_key_advice: Option<crate::sampling::LeadKeyAdvice>,
    /// How much wider it spreads its parts about the primer's register while it leads, when its
    /// export recorded so.
    pub lead_register_advice: Option<crate::sampling::LeadRegisterAdvice>,
}

/// Reported after every generated event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Events generated so far per variation.
    pub events: usize,
    /// 0..=1, the mean over the variations.
    pub fraction: f64,
    pub variations_done: usize,
}

/// One continuation with the tokens that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Variation {
    /// The continuation only; time 0 is the end of the primer.
    pub performance: Performance,
    /// The sampled tokens, in order.
    pub tokens: Vec<u16>,
    /// Whether the model ended the piece (END) before the requested length.
    pub ended: bool,
}

/// Everything that can go wrong, naming the file where there is one.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "the ONNX Runtime library was not found (looked for {}); install it beside the program or set ORT_DYLIB_PATH",
        list(searched)
    )]
    LibraryNotFound { searched: Vec<PathBuf> },
    #[error("{}: cannot load ONNX Runtime: {message}", path.display())]
    LibraryLoad { path: PathBuf, message: String },
    #[error("ONNX Runtime is already loaded from {} in this process; it cannot also load {}", loaded.display(), requested.display())]
    LibraryConflict { loaded: PathBuf, requested: PathBuf },
    #[error("{}: cannot read the model: {error}", path.display())]
    ModelRead { path: PathBuf, error: std::io::Error },
    #[error("{}: not a usable ONNX model: {message}", path.display())]
    ModelInvalid { path: PathBuf, message: String },
    #[error("{}: {problem}", path.display())]
    Metadata { path: PathBuf, problem: String },
    /// A model exported for another engine's graph inputs and outputs
    /// ([`crate::model::GRAPH_VERSION`]); exporting its checkpoint again fixes it.
    #[error(
        "{}: exported with graph version {found}, this engine runs graph version {expected}; export the model again \
         (cargo xtask export)",
        path.display()
    )]
    GraphVersion { path: PathBuf, found: u32, expected: u32 },
    #[error("the {provider} execution provider is not available: {message}")]
    ProviderUnavailable { provider: &'static str, message: String },
    #[error("invalid generation request: {0}")]
    Request(String),
    #[error("{}: ONNX Runtime failed: {message}", path.display())]
    Runtime { path: PathBuf, message: String },
    #[error("generation was cancelled")]
    Cancelled,
    /// The style judge beside the model ([`StyleJudge::beside`]) is unreadable or invalid.
    #[error("{0}")]
    Judge(String),
}

fn list(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing to search".into();
    }
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// A loaded model, ready to generate.
pub struct Engine {
    model: Model,
    /// How it was loaded: a second session of the model, for the own voice, loads the same way.
    opts: EngineOptions,
    /// That second session, loaded the first time the own voice speaks.
    own: Option<Model>,
    /// What [`crate::sampling::Steering::contrast`] leans away from: none, one or several models.
    contrast: Vec<Model>,
    /// What it leans away from instead while following a primer, when that differs.
    contrast_following: Option<Vec<Model>>,
    /// How many times as far it leans while following a primer ([`ContrastAdvice::following_gain`]).
    contrast_following_gain: f32,
    /// What names a primer's style, when shipped beside the model.
    judge: Option<StyleJudge>,
    /// How much harder the key holds while the style leads, when set over the model's own advice.
    lead_key_gain: Option<f32>,
    /// How much wider the register spreads while the style leads, when set over the model's own advice.
    lead_register_spread: Option<f32>,
    /// What the last request's primer cost the model ([`Engine::primer_fit`]).
    last_fit: Option<PrimerFit>,
}

/// What "Style's choice" ([`StyleLead::Model`]) leads for a model ([`Engine::default_lead`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultLead {
    /// What costs it well more than its own music ([`ModelInfo::lead_advice`]: measured so).
    ByCost,
    /// What the style judge beside it names another style.
    ByJudge,
    /// Nothing: no lead advice, and no judge that knows the style.
    Never,
}

/// How a primer sat with the model that continued it.
#[derive(Debug, Clone, PartialEq)]
pub struct PrimerFit {
    /// What the primer cost the model, nats per event.
    pub nats_per_event: f64,
    /// What the model's own music costs it (its validation loss), when recorded.
    pub home_nats_per_event: Option<f64>,
    /// 0 (the model's own style) to 1 (wholly foreign to it): see [`foreignness`].
    pub foreignness: f32,
    /// Whether the style led the primer (the request let it, and the primer was foreign).
    pub led: bool,
    /// How far a style with a contrast model leans away from it while following this primer,
    /// 0 to 1 of [`crate::sampling::Steering::contrast`], led or not: for a style that leads
    /// by cost, the primer's foreignness by cost or by ear, whichever is more; for one that
    /// leads by the judge ([`DefaultLead::ByJudge`]: its cost cannot tell its own music from
    /// another style's), by ear alone. A style that leads by cost alone still leans
    /// from a phrase the judge names another style: electronic's model finds a nursery tune
    /// no dearer than its own music, yet its continuations of one were named electronic 83
    /// times in 100 leaning against 66 without (models/README.md).
    pub lean: f32,
    /// What the style judge named the primer, when the engine has one that knows the style.
    pub judged: Option<Judgement>,
}

/// From this foreignness on, a primer that the style did not lead is worth a word to the musician.
pub const FOREIGN_ADVICE_FROM: f32 = 0.5;

impl PrimerFit {
    /// A sentence for the musician when the primer was foreign to `style`:
    /// what was done with it, and `control` (the setting that lets the style
    /// lead, as the musician would write it: `--style-lead on`) when the style did not lead. `None` for a primer in the style.
    pub fn advice(&self, style: &str, control: &str) -> Option<String> {
        let cost = match self.home_nats_per_event {
            Some(home) => {
                format!("{:.1} nats per event against {:.1} for {style}'s own music", self.nats_per_event, home)
            }
            None => format!("{:.1} nats per event", self.nats_per_event),
        };
        let heard = match &self.judged {
            Some(j) if j.names_other_than(style) => format!("; it sounds like {} more than {style}", j.named),
            _ => String::new(),
        };
        if self.led {
            Some(format!(
                "Led by {style}: your phrase is {:.0}% foreign to it ({cost}{heard}), so its key, register and beat were \
                 followed and the manner is {style}'s",
                100.0 * self.foreignness
            ))
        } else if self.foreignness >= FOREIGN_ADVICE_FROM {
            Some(format!(
                "Your phrase is foreign to {style} ({cost}{heard}), so the continuation sounds more like your phrase \
                 than like {style}; {control} lets {style} lead it"
            ))
        } else {
            None
        }
    }
}

impl Engine {
    /// Load `model`, checking its metadata against this build's codec and architecture.
    pub fn load(model: &Path, opts: &EngineOptions) -> Result<Engine, EngineError> {
        let judge = StyleJudge::beside(model).map_err(EngineError::Judge)?;
        Ok(Engine {
            model: Model::load(model, opts)?,
            opts: opts.clone(),
            own: None,
            contrast: Vec::new(),
            contrast_following: None,
            contrast_following_gain: 1.0,
            judge,
            lead_key_gain: None,
            lead_register_spread: None,
            last_fit: None,
        })
    }

    /// Name primers' styles with `judge` (`None`: by cost alone); [`Engine::load`] takes the one
    /// shipped beside the model.
    pub fn set_judge(&mut self, judge: Option<StyleJudge>) {
        self.judge = judge;
    }

    /// Hold the primer's key `gain` times as hard while the style leads (`None`: as the model's
    /// [`ModelInfo::lead_key_advice`] says, else as when following); for measuring a gain
    /// before a checkpoint's sidecar records it.
    pub fn set_lead_key_gain(&mut self, gain: Option<f32>) {
        self.lead_key_gain = gain;
    }

    /// Spread the style's parts `spread` times as wide about the primer's register while it leads
    /// (`None`: as the model's [`ModelInfo::lead_register_advice`] says, else as when following);
    /// for measuring a spread before a checkpoint's sidecar records it.
    pub fn set_lead_register_spread(&mut self, spread: Option<f32>) {
        self.lead_register_spread = spread;
    }

    /// The style judge in use, if any.
    pub fn judge(&self) -> Option<&StyleJudge> {
        self.judge.as_ref()
    }

    /// Lean generations away from `model` by [`crate::sampling::Steering::contrast`]
    /// (`None` stops); usually the style's parent, so that what its
    /// finetuning taught it is said more plainly. Both must share the codec
    /// (each was checked against this build's when loaded).
    pub fn set_contrast(&mut self, model: Option<Model>) {
        self.set_contrasts(model.into_iter().collect());
    }

    /// Lean away from all of `models` at once (none stops): from the
    /// geometric mean of their predictions, renormalized, so the style says
    /// what sets it apart from each of the styles it is taken for. Each adds
    /// a step per event on the side streams' thread. It leans from them while
    /// following a primer too, as far, until [`Engine::set_following_contrasts`] and
    /// [`Engine::set_following_contrast_gain`] say otherwise.
    pub fn set_contrasts(&mut self, models: Vec<Model>) {
        self.contrast = models;
        self.contrast_following = None;
        self.contrast_following_gain = 1.0;
    }

    /// Lean while following a primer as `advice` says ([`Engine::set_following_contrast_gain`]).
    /// After [`Engine::load_contrasts`], which leans alike while following.
    pub fn set_following_lean(&mut self, advice: &ContrastAdvice) {
        self.set_following_contrast_gain(advice.following_gain());
    }

    /// Lean `gain` times as far while following a primer as
    /// [`crate::sampling::Steering::contrast`] says (at most [`MAX_CONTRAST`]; the
    /// primer's foreignness still scales it): a model's advice may lean harder on a
    /// phrase than when it improvises ([`ContrastAdvice::following_gain`]).
    pub fn set_following_contrast_gain(&mut self, gain: f32) {
        self.contrast_following_gain = if gain.is_finite() && gain > 0.0 { gain } else { 1.0 };
    }

    /// Lean away from `models` instead while following a primer (`None`: from those of
    /// [`Engine::set_contrasts`]): a style may be taken for one style when it improvises
    /// and for another when it continues a phrase.
    pub fn set_following_contrasts(&mut self, models: Option<Vec<Model>>) {
        self.contrast_following = models;
    }

    /// Load the models at `paths` as this engine's model was loaded and lean away from them
    /// ([`Engine::set_contrasts`]), and from those at `following` instead while following a
    /// primer ([`Engine::set_following_contrasts`]). Nothing changes when one fails to load.
    pub fn load_contrasts(&mut self, paths: &[PathBuf], following: Option<&[PathBuf]>) -> Result<(), EngineError> {
        let load = |paths: &[PathBuf]| paths.iter().map(|p| Model::load(p, &self.opts)).collect::<Result<Vec<_>, _>>();
        let (all, instead) = (load(paths)?, following.map(load).transpose()?);
        self.set_contrasts(all);
        self.set_following_contrasts(instead);
        Ok(())
    }

    /// The contrast model, if any (the first, when there are several).
    pub fn contrast_info(&self) -> Option<&ModelInfo> {
        self.contrast.first().map(Model::info)
    }

    /// Every contrast model, in the order they were set.
    pub fn contrast_infos(&self) -> Vec<&ModelInfo> {
        self.contrast.iter().map(Model::info).collect()
    }

    /// The contrast models leaned from while following a primer.
    pub fn following_contrast_infos(&self) -> Vec<&ModelInfo> {
        self.contrast_following.as_ref().unwrap_or(&self.contrast).iter().map(Model::info).collect()
    }

    pub fn info(&self) -> &ModelInfo {
        self.model.info()
    }

    /// What the last generation's primer cost the model and whether the
    /// style led it; `None` after an improvisation (no primer) or a failed
    /// request.
    pub fn primer_fit(&self) -> Option<PrimerFit> {
        self.last_fit.clone()
    }

    /// What `primer` (ending at `end_s`, when later than its last note) costs the model, nats per
    /// event, scored as a generation scores it before it weighs how foreign the primer is; `None`
    /// for a primer without notes. Generates nothing.
    pub fn primer_cost(&mut self, primer: &Performance, end_s: Option<f64>) -> Result<Option<f64>, EngineError> {
        let req = GenerateRequest { primer: Some(primer.clone()), primer_end_s: end_s, ..Default::default() };
        req.validate().map_err(EngineError::Request)?;
        let prefix = prefix_tokens(&req);
        if prefix.len() <= 1 {
            return Ok(None);
        }
        let window = context_window(&prefix, self.info().config.max_seq_len);
        let mut cache = self.model.empty_cache(1);
        Ok(self.model.prefill_scored(window, &mut cache)?.1)
    }

    /// The session underneath, for parity tests and benchmarks that drive the graph directly.
    pub fn model(&mut self) -> &mut Model {
        &mut self.model
    }

    /// Generate `req.settings.variations` continuations. `progress` is called after
    /// every event; returning `false` cancels with [`EngineError::Cancelled`].
    pub fn generate(
        &mut self,
        req: &GenerateRequest,
        progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<Vec<Performance>, EngineError> {
        Ok(self.generate_variations(req, progress)?.into_iter().map(|v| v.performance).collect())
    }

    /// [`Engine::generate`] with the tokens of each variation.
    pub fn generate_variations(
        &mut self,
        req: &GenerateRequest,
        progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<Vec<Variation>, EngineError> {
        self.generate_in_waves(req, progress, None)
    }

    /// [`Engine::generate_variations`], but variation `one` (0-based; the
    /// last when out of range) is generated alone and handed to `ready` as
    /// it is made; the others follow in one batch. `ready(v, false)` comes
    /// once [`EARLY_START_S`] of it are made, when it is being made at
    /// least [`EARLY_MIN_SPEED`] times faster than it plays: its notes so
    /// far, those still sounding held to the requested end (the complete
    /// variation ends them). `ready(v, true)` follows with all of it. A
    /// player can start on the first and take the rest as it comes, well
    /// ahead of the playhead: a dense 8-bar variation takes about half a
    /// second alone on two cores, four of them about 1.4 s.
    ///
    /// Each variation has the seed, stream and context a single batch gives
    /// it, so a float model makes the same variations; an int8 model
    /// quantizes each run's activations over the whole batch, so a sample
    /// may differ where a batch does.
    pub fn generate_one_early(
        &mut self,
        req: &GenerateRequest,
        one: usize,
        progress: &mut dyn FnMut(Progress) -> bool,
        ready: &mut dyn FnMut(&Variation, bool),
    ) -> Result<Vec<Variation>, EngineError> {
        self.generate_in_waves(req, progress, Some((one, ready)))
    }

    /// What "Style's choice" leads for this model: by cost where its export says it leads,
    /// else by the style judge when there is one that knows its style, else nothing.
    pub fn default_lead(&self) -> DefaultLead {
        let info = self.info();
        if info.lead_advice.is_some() {
            DefaultLead::ByCost
        } else if self.judge.as_ref().is_some_and(|j| j.knows(&info.style)) {
            DefaultLead::ByJudge
        } else {
            DefaultLead::Never
        }
    }

    /// How much harder the key holds while the style leads ([`Engine::set_lead_key_gain`]).
    fn lead_key_gain(&self) -> f32 {
        self.lead_key_gain.or(self.info().lead_key_advice.as_ref().map(|a| a.gain)).unwrap_or(1.0)
    }

    /// How much wider the register spreads while the style leads ([`Engine::set_lead_register_spread`]).
    fn lead_register_spread(&self) -> f32 {
        self.lead_register_spread.or(self.info().lead_register_advice.as_ref().map(|a| a.spread)).unwrap_or(1.0)
    }

    /// How a primer that cost `nll` nats per event sits with the model, and whether the style
    /// leads it. Foreign by cost ([`foreignness`]) or by ear: a style judge naming it another
    /// style makes it as foreign as the judge doubts the style (1 − its probability), whichever
    /// is more. A model whose export says it leads ([`ModelInfo::lead_advice`]) leads by cost,
    /// as measured; the others lead what the judge names another style (none without a judge).
    fn fit(&self, req: &GenerateRequest, nll: f64) -> PrimerFit {
        let info = self.info();
        let home = info.validation_nll;
        let by_cost = foreignness(nll, home);
        let judged = match (&self.judge, &req.primer) {
            (Some(j), Some(p)) => j.judge(p, req.primer_end_s.unwrap_or(0.0).max(p.duration_s()), &info.style),
            _ => None,
        };
        let by_ear = judged.as_ref().filter(|j| j.names_other_than(&info.style)).map_or(0.0, |j| (1.0 - j.own) as f32);
        let either = by_cost.max(by_ear);
        // A style measured to lead by cost tells a foreign phrase by it; the others find some
        // of their own held-out music dear (rock's two pieces cost it 2.13 nats an event against
        // 1.15), so where a judge knows them they lean as far as it doubts them, by ear alone.
        let lean = match self.default_lead() {
            DefaultLead::ByJudge => by_ear,
            DefaultLead::ByCost | DefaultLead::Never => either,
        };
        let (foreignness, led) = match req.settings.steering.style_lead {
            StyleLead::Off => (either, false),
            StyleLead::Model if self.default_lead() == DefaultLead::ByCost => (by_cost, by_cost > 0.0),
            StyleLead::Model => (either, by_ear > 0.0),
            StyleLead::On => (either, either > 0.0),
        };
        PrimerFit { nats_per_event: nll, home_nats_per_event: home, foreignness, led, lean, judged }
    }

    fn generate_in_waves(
        &mut self,
        req: &GenerateRequest,
        progress: &mut dyn FnMut(Progress) -> bool,
        early: Option<(usize, &mut ReadyFn)>,
    ) -> Result<Vec<Variation>, EngineError> {
        let started = std::time::Instant::now();
        self.last_fit = None;
        req.validate().map_err(EngineError::Request)?;
        let settings = &req.settings;
        let max_len = self.info().config.max_seq_len;
        let keep = slide_keep(max_len);
        let batch = settings.variations;

        let prefix = prefix_tokens(req);
        // One prefill of the shared context, copied to every variation; what
        // the primer cost the model says how foreign it is to this style.
        let window = context_window(&prefix, max_len);
        let mut shared = self.model.empty_cache(1);
        let (last, primer_nll) = self.model.prefill_scored(window, &mut shared)?;
        let fit = primer_nll.filter(|_| prefix.len() > 1).map(|nll| self.fit(req, nll));
        let foreign = fit.as_ref().filter(|f| f.led).map_or(0.0, |f| f.foreignness);
        // A free request (follow 0) has nothing to follow: its primer is not analysed.
        let follower = (settings.steering.follow > 0.0)
            .then(|| req.analysis())
            .flatten()
            .and_then(|a| Follower::new(&a, &settings.steering, req.meter.as_ref(), settings.steering.follow))
            .map(|f| {
                f.with_manner(1.0 - foreign)
                    .with_lead_key_gain(self.lead_key_gain())
                    .with_lead_register_spread(self.lead_register_spread())
            });
        let (target_steps, budget) = match settings.length {
            Length::Seconds(s) => {
                let steps = codec::seconds_to_steps(s).max(1);
                (Some(steps), ((s * MAX_EVENTS_PER_SECOND as f64).ceil() as usize + 64).min(MAX_EVENTS))
            }
            Length::Events(n) => (None, n),
        };
        let mut voices: Vec<Voice> = (0..batch)
            .map(|i| Voice::new(&prefix, settings.sampling.seed, i as u64, target_steps, budget, follower.as_ref()))
            .collect();
        // The style's own voice: the same model reading each continuation
        // without the primer; a foreign primer raises it towards 1.
        let own_weight = settings.steering.own_voice + (1.0 - settings.steering.own_voice) * foreign;
        // Leaning says the style more plainly; a phrase the style finds its own is
        // followed as it sounds, so with a primer to follow it leans as far as the
        // primer is foreign to it ([`PrimerFit::lean`]), from the set for following.
        let (contrast_strength, following) = match (&follower, &fit) {
            (Some(_), Some(f)) => {
                ((settings.steering.contrast * self.contrast_following_gain).min(MAX_CONTRAST) * f.lean, true)
            }
            _ => (settings.steering.contrast, false),
        };
        let contrast_models: &mut [Model] = match self.contrast_following.as_mut().filter(|_| following) {
            Some(models) => models,
            None => &mut self.contrast,
        };
        // Each contrast model reads the same context: its own prefill of the window it fits.
        let mut contrast = Vec::new();
        if contrast_strength > 0.0 {
            for m in contrast_models.iter_mut() {
                let mut cache = m.empty_cache(1);
                let last = m.prefill(&[context_window(&prefix, m.info().config.max_seq_len)], &mut cache)?;
                contrast.push((cache, last));
            }
        }
        let own_weight = (own_weight > 0.0 && prefix.len() > 1).then_some(own_weight);
        if own_weight.is_some() && self.own.is_none() {
            // The own voice runs beside the primed stream, so on a session of its own.
            self.own = Some(Model::load(&self.model.info().path, &self.opts)?);
        }
        let wave = Wave {
            shared: &shared,
            last: &last,
            steering: &settings.steering,
            sampling: &settings.sampling,
            follower: follower.as_ref(),
            own_weight,
            contrast: contrast.iter().map(|(c, l)| (c, l.as_slice())).collect(),
            contrast_strength,
            keep,
        };
        let mut events = 0usize;
        match early {
            Some((one, ready)) => {
                let one = one.min(batch - 1);
                let start = EarlyStart { ready: &mut *ready, started, sent: false };
                let models = Models { style: &mut self.model, own: self.own.as_mut(), contrast: &mut *contrast_models };
                wave.run(models, &mut voices, &[one], &mut events, progress, Some(start))?;
                ready(&voices[one].variation(), true);
                let rest: Vec<usize> = (0..batch).filter(|&i| i != one).collect();
                if !rest.is_empty() {
                    let models =
                        Models { style: &mut self.model, own: self.own.as_mut(), contrast: &mut *contrast_models };
                    wave.run(models, &mut voices, &rest, &mut events, progress, None)?;
                }
            }
            None => {
                let all: Vec<usize> = (0..batch).collect();
                let models = Models { style: &mut self.model, own: self.own.as_mut(), contrast: &mut *contrast_models };
                wave.run(models, &mut voices, &all, &mut events, progress, None)?;
            }
        }
        self.last_fit = fit;
        Ok(voices.iter().map(Voice::variation).collect())
    }
}

/// What [`Engine::generate_one_early`] hands the chosen variation to: it, and whether it is complete.
type ReadyFn<'r> = dyn FnMut(&Variation, bool) + 'r;

/// Music made before [`Engine::generate_one_early`] hands over the start of
/// the chosen variation: one bar of 4/4 at 120 BPM.
pub const EARLY_START_S: f64 = 2.0;
/// ... and how many times faster than it plays it must be being made, so
/// that the rest reaches a player well before its playhead does (on two
/// cores a small model makes music about 30 times faster than it plays).
pub const EARLY_MIN_SPEED: f64 = 4.0;

/// The start of the chosen variation, handed over once ([`EARLY_START_S`]).
struct EarlyStart<'r> {
    ready: &'r mut ReadyFn<'r>,
    /// When the request began.
    started: std::time::Instant,
    sent: bool,
}

/// What every batch of one request's variations shares: the prefilled
/// context (batch 1) and its last logits, the steering and the sampling.
struct Wave<'a> {
    shared: &'a KvCache,
    last: &'a [f32],
    steering: &'a crate::sampling::Steering,
    sampling: &'a crate::sampling::Sampling,
    follower: Option<&'a Follower>,
    /// The style's own voice's weight, when it speaks.
    own_weight: Option<f32>,
    /// Each contrast model's prefilled context and last logits, when it leans.
    contrast: Vec<(&'a KvCache, &'a [f32])>,
    /// How far it leans ([`crate::sampling::Steering::contrast`], less on a familiar primer).
    contrast_strength: f32,
    keep: usize,
}

/// The style's model, its second session for the own voice, and the contrast model, for one run.
struct Models<'m> {
    style: &'m mut Model,
    own: Option<&'m mut Model>,
    contrast: &'m mut [Model],
}

impl Wave<'_> {
    /// Generate the variations `rows` (ascending indices into `voices`) in one batch until each is done.
    fn run(
        &self,
        models: Models,
        voices: &mut [Voice],
        rows: &[usize],
        events: &mut usize,
        progress: &mut dyn FnMut(Progress) -> bool,
        early: Option<EarlyStart>,
    ) -> Result<(), EngineError> {
        let Models { style: model, own: own_model, contrast: contrast_model } = models;
        // The streams beside the style's: the own voice, then the contrast model.
        let mut side = Vec::new();
        let mut own = None;
        if let (Some(_), Some(m)) = (self.own_weight, own_model) {
            own = Some(side.len());
            side.push(SideVoice::own(m, voices.len(), rows)?);
        }
        let first = side.len();
        for ((cache, last), m) in self.contrast.iter().zip(contrast_model.iter_mut()) {
            side.push(SideVoice::contrast(m, cache, last, voices, rows)?);
        }
        let contrast = first..side.len();
        if side.is_empty() {
            return self.run_streams(model, None, voices, rows, events, progress, early);
        }
        std::thread::scope(|scope| {
            let side = SideThread::spawn(scope, side, SideIndex { own, contrast });
            self.run_streams(model, Some(side), voices, rows, events, progress, early)
        })
    }

    /// [`Wave::run`]'s loop: the style's stream here, the own voice's and
    /// the contrast model's, when they speak, on their thread.
    #[allow(clippy::too_many_arguments)]
    fn run_streams(
        &self,
        model: &mut Model,
        mut side: Option<SideThread>,
        voices: &mut [Voice],
        rows: &[usize],
        events: &mut usize,
        progress: &mut dyn FnMut(Progress) -> bool,
        mut early: Option<EarlyStart>,
    ) -> Result<(), EngineError> {
        let (keep, batch) = (self.keep, rows.len());
        let mut cache = self.shared.clone();
        cache.repeat(batch).map_err(|m| model.error(m))?;
        let mut logits: Vec<f32> = (0..batch).flat_map(|_| self.last.iter().copied()).collect();
        let max_note_steps = self.steering.max_note_steps();
        // Batch row -> variation; finished variations leave the batch.
        let mut active: Vec<usize> = rows.to_vec();
        let mut row = vec![0.0f32; VOCAB_SIZE];
        // The contrast models' geometric mean, when there are several.
        let mut blend = vec![0.0f32; VOCAB_SIZE];
        let mut next = vec![0i64; batch];
        loop {
            let (own, contrast) = match &mut side {
                Some(t) => t.logits()?,
                None => (None, &[][..]),
            };
            for (r, &i) in active.iter().enumerate() {
                let voice = &mut voices[i];
                let token = match voice.overdue_note_off(max_note_steps) {
                    // Not sampled, but the model sees it like any other event.
                    Some(off) => off,
                    None => {
                        row.copy_from_slice(&logits[r * VOCAB_SIZE..(r + 1) * VOCAB_SIZE]);
                        let span = r * VOCAB_SIZE..(r + 1) * VOCAB_SIZE;
                        if let (Some(o), Some(w)) = (own, self.own_weight) {
                            mix_log_probs(&mut row, &o[span.clone()], w);
                        }
                        match contrast {
                            [] => {}
                            [c] => contrast_log_probs(&mut row, &c[span], self.contrast_strength),
                            several => {
                                geometric_mean(&mut blend, several.iter().map(|c| &c[span.clone()]));
                                contrast_log_probs(&mut row, &blend, self.contrast_strength);
                            }
                        }
                        self.steering.apply(&mut row, &voice.sounding);
                        if let Some(f) = self.follower {
                            f.apply(&mut row, &voice.follow, voice.decoder.now_steps());
                        }
                        let t = voice.sampler.sample(&row, self.sampling);
                        voice.clip_shift(t, max_note_steps)
                    }
                };
                voice.accept(token);
                voice.history.push(token);
                next[r] = i64::from(token);
            }
            *events += 1;
            if let Some(e) = early.as_mut().filter(|e| !e.sent) {
                let voice = &voices[rows[0]];
                let made_s = codec::steps_to_seconds(voice.elapsed_steps());
                if made_s >= EARLY_START_S && !voice.done {
                    e.sent = true;
                    if made_s >= EARLY_MIN_SPEED * e.started.elapsed().as_secs_f64() {
                        (e.ready)(&voice.start_so_far(), false);
                    }
                }
            }
            let done = voices.iter().filter(|v| v.done).count();
            let fraction = voices.iter().map(Voice::fraction).sum::<f64>() / voices.len() as f64;
            if !progress(Progress { events: *events, fraction, variations_done: done }) {
                return Err(EngineError::Cancelled);
            }
            if active.iter().all(|&i| voices[i].done) {
                return Ok(());
            }
            let mut retained = None;
            if active.iter().any(|&i| voices[i].done) {
                // Finished variations stop costing compute: drop their rows.
                let rows: Vec<usize> = (0..active.len()).filter(|&r| !voices[active[r]].done).collect();
                cache.retain(&rows).map_err(|m| model.error(m))?;
                next = rows.iter().map(|&r| next[r]).collect();
                active = rows.iter().map(|&r| active[r]).collect();
                retained = Some(rows);
            }
            // The side streams read the step on their thread while the style reads it here.
            if let Some(t) = &mut side {
                t.send(SideStep { retain: retained, next: next.clone(), active: active.clone() })?;
            }
            logits = advance(model, &mut cache, &next, || {
                active.iter().map(|&i| &voices[i].history[voices[i].history.len() - keep..]).collect()
            })?;
        }
    }
}

/// A stream per variation beside the style's primed one, with its own
/// model session, KV cache, window and copy of what each variation has
/// read. Two kinds:
/// - the style's own voice ([`crate::sampling::Steering::own_voice`]): a
///   second session of the style's model whose context is START and the
///   continuation, never the primer;
/// - the contrast model ([`Engine::set_contrast`]), reading what the
///   style's primed stream reads.
///
/// They run on a thread of their own ([`SideThread`]), alongside the
/// style's step: on two cores a step of the style and one of its side
/// streams take about the time of one.
struct SideVoice<'m> {
    model: &'m mut Model,
    cache: KvCache,
    /// What it has read, per variation (for a window slide); empty for
    /// variations outside this batch.
    history: Vec<Vec<u16>>,
    /// Its prediction of the next event, per active row.
    logits: Vec<f32>,
}

/// What the style's stream sends the side streams after each event.
struct SideStep {
    /// Rows to keep first (ascending), when variations have finished.
    retain: Option<Vec<usize>>,
    /// The token each active row took.
    next: Vec<i64>,
    /// Batch row -> variation, after `retain`.
    active: Vec<usize>,
}

impl<'m> SideVoice<'m> {
    /// The own voice of the variations `rows` of `variations`: START alone, prefilled once.
    fn own(model: &'m mut Model, variations: usize, rows: &[usize]) -> Result<Self, EngineError> {
        let (cache, logits, _) = prefill_shared(model, &[START], rows.len())?;
        let mut history = vec![Vec::new(); variations];
        for &i in rows {
            history[i] = vec![START];
        }
        Ok(Self { model, cache, history, logits })
    }

    /// The contrast stream of the variations `rows` of `voices`: a copy of
    /// its prefilled `shared` context and `last` logits per row.
    fn contrast(
        model: &'m mut Model,
        shared: &KvCache,
        last: &[f32],
        voices: &[Voice],
        rows: &[usize],
    ) -> Result<Self, EngineError> {
        let mut cache = shared.clone();
        cache.repeat(rows.len()).map_err(|m| model.error(m))?;
        let mut history = vec![Vec::new(); voices.len()];
        for &i in rows {
            history[i].clone_from(&voices[i].history);
        }
        let logits = (0..rows.len()).flat_map(|_| last.iter().copied()).collect();
        Ok(Self { model, cache, history, logits })
    }

    /// Read one step's tokens; a full window slides to the most recent half
    /// of each variation's history.
    fn step(&mut self, s: &SideStep) -> Result<(), EngineError> {
        if let Some(rows) = &s.retain {
            self.cache.retain(rows).map_err(|m| self.model.error(m))?;
        }
        for (&i, &t) in s.active.iter().zip(&s.next) {
            self.history[i].push(t as u16);
        }
        let keep = slide_keep(self.model.info().config.max_seq_len);
        let history = &self.history;
        self.logits = advance(self.model, &mut self.cache, &s.next, || {
            s.active.iter().map(|&i| &history[i][history[i].len().saturating_sub(keep)..]).collect()
        })?;
        Ok(())
    }
}

/// The own voice's next logits, per active row, when it speaks, and each contrast model's.
type SideLogits<'a> = (Option<&'a [f32]>, &'a [Vec<f32>]);

/// Which of the side streams is which.
#[derive(Clone)]
struct SideIndex {
    own: Option<usize>,
    contrast: std::ops::Range<usize>,
}

/// The side streams' thread, seen from the style's: send a step, go on
/// with the style's own, then take their logits.
struct SideThread {
    steps: std::sync::mpsc::Sender<SideStep>,
    results: std::sync::mpsc::Receiver<Result<Vec<Vec<f32>>, EngineError>>,
    /// Each side stream's prediction of the next event, per active row.
    logits: Vec<Vec<f32>>,
    index: SideIndex,
    /// Whether a step was sent whose logits have not been taken.
    pending: bool,
    /// The first side stream's model file, for an error when the thread is gone.
    path: PathBuf,
}

impl SideThread {
    fn spawn<'scope, 'env: 'scope>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        mut voices: Vec<SideVoice<'env>>,
        index: SideIndex,
    ) -> Self {
        let (steps, step_rx) = std::sync::mpsc::channel::<SideStep>();
        let (result_tx, results) = std::sync::mpsc::channel();
        let path = voices.first().map(|v| v.model.info().path.clone()).unwrap_or_default();
        let logits = voices.iter_mut().map(|v| std::mem::take(&mut v.logits)).collect();
        scope.spawn(move || {
            // Ends when the style's stream drops its sender (done, cancelled or failed).
            while let Ok(step) = step_rx.recv() {
                let out = voices
                    .iter_mut()
                    .try_for_each(|v| v.step(&step))
                    .map(|()| voices.iter_mut().map(|v| std::mem::take(&mut v.logits)).collect());
                let failed = out.is_err();
                if result_tx.send(out).is_err() || failed {
                    break;
                }
            }
        });
        Self { steps, results, logits, index, pending: false, path }
    }

    fn send(&mut self, step: SideStep) -> Result<(), EngineError> {
        self.steps.send(step).map_err(|_| self.gone())?;
        self.pending = true;
        Ok(())
    }

    /// The own voice's and the contrast model's logits of the step last sent (waits for them).
    fn logits(&mut self) -> Result<SideLogits<'_>, EngineError> {
        if self.pending {
            self.logits = self.results.recv().map_err(|_| self.gone())??;
            self.pending = false;
        }
        let own = self.index.own.map(|i| self.logits[i].as_slice());
        Ok((own, &self.logits[self.index.contrast.clone()]))
    }

    fn gone(&self) -> EngineError {
        runtime::runtime_error(&self.path, "the thread of the own voice and the contrast model stopped")
    }
}

/// Write into `out` the geometric mean of the distributions whose logits are
/// `each` (the mean of their log-probabilities; not renormalized, as
/// [`contrast_log_probs`] normalizes what it leans from). An event one of
/// them rules out stays ruled out.
fn geometric_mean<'a>(out: &mut [f32], each: impl ExactSizeIterator<Item = &'a [f32]>) {
    let share = 1.0 / each.len().max(1) as f32;
    out.fill(0.0);
    for logits in each {
        let Some(lse) = crate::sampling::log_sum_exp(logits) else {
            out.fill(f32::NEG_INFINITY);
            return;
        };
        for (o, &x) in out.iter_mut().zip(logits) {
            *o += share * (x - lse);
        }
    }
}

/// One prefill of `window`, its cache and last logits copied to `batch`
/// rows, and the window's cost to the model in nats per event.
fn prefill_shared(
    model: &mut Model,
    window: &[u16],
    batch: usize,
) -> Result<(KvCache, Vec<f32>, Option<f64>), EngineError> {
    let mut cache = model.empty_cache(1);
    let (last, nll) = model.prefill_scored(window, &mut cache)?;
    let logits = (0..batch).flat_map(|_| last.iter().copied()).collect();
    cache.repeat(batch).map_err(|m| model.error(m))?;
    Ok((cache, logits, nll))
}

/// A primer's cost to the model (nats per event) at most this far above
/// the model's validation loss is its own style: nothing changes.
pub const FOREIGN_FROM_NATS: f64 = 0.5;
/// ... and this much further up, it is wholly foreign: the style leads.
pub const FOREIGN_SPAN_NATS: f64 = 1.0;

/// How foreign a primer that cost the model `primer_nll` nats per event is
/// to a model whose validation loss is `home_nll`, 0 (its own style) to 1;
/// 0 when the model recorded no validation loss.
pub fn foreignness(primer_nll: f64, home_nll: Option<f64>) -> f32 {
    home_nll.map_or(0.0, |home| ((primer_nll - home - FOREIGN_FROM_NATS) / FOREIGN_SPAN_NATS).clamp(0.0, 1.0) as f32)
}

/// The next logits of every row after `next`; when the window is full, it
/// slides instead: the rows' most recent events (`recent`) are prefilled again.
fn advance<'h>(
    model: &mut Model,
    cache: &mut KvCache,
    next: &[i64],
    recent: impl FnOnce() -> Vec<&'h [u16]>,
) -> Result<Vec<f32>, EngineError> {
    if cache.len() + 1 > model.info().config.max_seq_len {
        model.prefill(&recent(), cache)
    } else {
        model.forward(next, cache)
    }
}

/// START, then the primer's events, then the silence up to `primer_end_s`.
fn prefix_tokens(req: &GenerateRequest) -> Vec<u16> {
    let mut tokens = vec![START];
    if let Some(p) = req.primer.as_ref().filter(|p| !p.is_empty()) {
        let events = codec::encode(p);
        let steps: u64 = events.iter().map(|e| if let Event::TimeShift(s) = e { u64::from(*s) } else { 0 }).sum();
        tokens.extend(events.into_iter().map(Event::to_token));
        if let Some(end) = req.primer_end_s {
            let mut rest = codec::seconds_to_steps(end).saturating_sub(steps);
            while rest > 0 {
                let s = rest.min(u64::from(codec::MAX_SHIFT_STEPS));
                tokens.push(Event::TimeShift(s as u8).to_token());
                rest -= s;
            }
        }
    }
    tokens
}

/// One variation while it is being generated.
struct Voice {
    /// Fed the primer, then the continuation.
    decoder: Decoder,
    sampler: Sampler,
    /// Everything the model has seen for this variation (for a window slide).
    history: Vec<u16>,
    tokens: Vec<u16>,
    sounding: [bool; 128],
    /// What following the primer needs of this variation's past.
    follow: FollowState,
    /// Decoder time at which each sounding pitch started.
    onset_steps: [Option<u64>; 128],
    /// Time at the end of the primer.
    start_steps: u64,
    target_steps: Option<u64>,
    budget: usize,
    done: bool,
    ended: bool,
}

impl Voice {
    fn new(
        prefix: &[u16],
        seed: u64,
        stream: u64,
        target_steps: Option<u64>,
        budget: usize,
        follower: Option<&Follower>,
    ) -> Self {
        let mut v = Self {
            start_steps: 0,
            decoder: Decoder::new(),
            sampler: Sampler::new(seed, stream),
            history: prefix.to_vec(),
            tokens: Vec::new(),
            sounding: [false; 128],
            follow: FollowState::new(follower),
            onset_steps: [None; 128],
            target_steps,
            budget,
            done: false,
            ended: false,
        };
        for e in prefix.iter().filter_map(|&t| Event::from_token(t)) {
            v.track(e);
            v.decoder.push(e);
        }
        v.start_steps = v.decoder.now_steps();
        v.follow.begin(v.start_steps);
        v
    }

    fn elapsed_steps(&self) -> u64 {
        self.decoder.now_steps() - self.start_steps
    }

    /// Follow which notes sound and since when (before the decoder reads `e`).
    fn track(&mut self, e: Event) {
        self.follow.observe(e, self.decoder.now_steps());
        match e {
            Event::NoteOn(p) => {
                self.sounding[usize::from(p)] = true;
                self.onset_steps[usize::from(p)] = Some(self.decoder.now_steps());
            }
            Event::NoteOff(p) => {
                self.sounding[usize::from(p)] = false;
                self.onset_steps[usize::from(p)] = None;
            }
            _ => {}
        }
    }

    /// The note-off owed now: of the notes sounding `max_steps` or longer, the oldest.
    fn overdue_note_off(&self, max_steps: Option<u64>) -> Option<u16> {
        let max = max_steps?;
        let now = self.decoder.now_steps();
        (0..128u8)
            .filter_map(|p| self.onset_steps[usize::from(p)].map(|onset| (onset, p)))
            .filter(|&(onset, _)| now >= onset + max)
            .min()
            .map(|(_, p)| Event::NoteOff(p).to_token())
    }

    /// `token`, or a shorter time shift when it would carry a note past `max_steps`.
    fn clip_shift(&self, token: u16, max_steps: Option<u64>) -> u16 {
        let (Some(max), Some(Event::TimeShift(s))) = (max_steps, Event::from_token(token)) else {
            return token;
        };
        let Some(deadline) = self.onset_steps.iter().flatten().map(|onset| onset + max).min() else {
            return token;
        };
        let room = deadline.saturating_sub(self.decoder.now_steps());
        if room >= 1 && u64::from(s) > room {
            Event::TimeShift(room as u8).to_token()
        } else {
            token
        }
    }

    fn accept(&mut self, token: u16) {
        self.tokens.push(token);
        match Event::from_token(token) {
            Some(Event::End) => {
                self.ended = true;
                self.done = true;
            }
            Some(Event::TimeShift(s)) => {
                let s = u64::from(s);
                match self.target_steps {
                    Some(target) if self.elapsed_steps() + s >= target => {
                        // The last shift stops exactly at the requested length.
                        let rest = target - self.elapsed_steps();
                        if rest > 0 {
                            self.decoder.push(Event::TimeShift(rest as u8));
                        }
                        self.done = true;
                    }
                    _ => self.decoder.push(Event::TimeShift(s as u8)),
                }
            }
            Some(e) => {
                self.track(e);
                self.decoder.push(e);
            }
            None => {}
        }
        if self.tokens.len() >= self.budget {
            self.done = true;
        }
    }

    fn fraction(&self) -> f64 {
        if self.done {
            return 1.0;
        }
        match self.target_steps {
            Some(t) => self.elapsed_steps() as f64 / t as f64,
            None => self.tokens.len() as f64 / self.budget.max(1) as f64,
        }
    }

    /// The notes made so far, those still sounding held to the requested
    /// end (or to now, with no requested length).
    fn start_so_far(&self) -> Variation {
        let start_s = codec::steps_to_seconds(self.start_steps);
        let end_s = codec::steps_to_seconds(self.start_steps + self.target_steps.unwrap_or(self.elapsed_steps()));
        let sounding = self.decoder.sounding_notes().map(|(pitch, onset, velocity)| Note {
            pitch,
            velocity,
            start_s: codec::steps_to_seconds(onset),
            end_s,
        });
        let notes: Vec<Note> = self
            .decoder
            .finished_notes()
            .iter()
            .copied()
            .chain(sounding)
            .filter(|n| n.start_s >= start_s - 1e-9)
            .map(|n| Note { start_s: n.start_s - start_s, end_s: n.end_s - start_s, ..n })
            .collect();
        Variation { performance: Performance::new(notes), tokens: self.tokens.clone(), ended: false }
    }

    fn variation(&self) -> Variation {
        let start_s = codec::steps_to_seconds(self.start_steps);
        let notes: Vec<Note> = self
            .decoder
            .clone()
            .finish()
            .notes
            .into_iter()
            // Primer notes all end by the primer's end; the continuation's start there or later.
            .filter(|n| n.start_s >= start_s - 1e-9)
            .map(|n| Note { start_s: n.start_s - start_s, end_s: n.end_s - start_s, ..n })
            .collect();
        Variation { performance: Performance::new(notes), tokens: self.tokens.clone(), ended: self.ended }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A primer costing the model what its own style does is not foreign; one
    /// costing 2 nats more (a nursery rhyme to the classical model) is wholly
    /// foreign; a model without a recorded validation loss never judges.
    #[test]
    fn foreignness_rises_with_the_primers_cost_above_the_models_own() {
        assert_eq!(foreignness(1.2, Some(1.13)), 0.0);
        assert_eq!(foreignness(1.13 + FOREIGN_FROM_NATS + FOREIGN_SPAN_NATS / 2.0, Some(1.13)), 0.5);
        assert_eq!(foreignness(3.2, Some(1.13)), 1.0);
        assert_eq!(foreignness(9.0, None), 0.0);
    }

    #[test]
    fn prefix_is_start_primer_and_trailing_silence() {
        let primer = Performance::new(vec![Note { pitch: 60, velocity: 80, start_s: 0.0, end_s: 0.5 }]);
        let req = GenerateRequest { primer: Some(primer), primer_end_s: Some(2.0), ..Default::default() };
        let toks = prefix_tokens(&req);
        assert_eq!(toks[0], START);
        assert!((codec::tokens_duration_s(&toks) - 2.0).abs() < 1e-9);
        let improv = prefix_tokens(&GenerateRequest::default());
        assert_eq!(improv, vec![START]);
    }

    #[test]
    fn a_voice_stops_exactly_at_the_requested_length_and_closes_notes() {
        let mut v = Voice::new(&[START], 1, 0, Some(150), 1000, None);
        for e in
            [Event::Velocity(20), Event::NoteOn(60), Event::TimeShift(100), Event::NoteOn(64), Event::TimeShift(100)]
        {
            assert!(!v.done);
            v.accept(e.to_token());
        }
        assert!(v.done && !v.ended);
        let var = v.variation();
        assert_eq!(var.performance.notes.len(), 2);
        assert!((var.performance.duration_s() - 1.5).abs() < 1e-9, "{:?}", var.performance);
    }

    #[test]
    fn an_overdue_note_is_released_and_shifts_stop_at_its_deadline() {
        let max = Some(100); // 1 s
        let mut v = Voice::new(&[START], 1, 0, None, 1000, None);
        for e in [Event::NoteOn(60), Event::TimeShift(40), Event::NoteOn(64)] {
            v.accept(e.to_token());
        }
        assert_eq!(v.overdue_note_off(max), None);
        // 0.8 s would carry note 60 to 1.2 s: the shift stops at its deadline, 1.0 s.
        let shift = v.clip_shift(Event::TimeShift(80).to_token(), max);
        assert_eq!(Event::from_token(shift), Some(Event::TimeShift(60)));
        assert_eq!(v.clip_shift(Event::TimeShift(30).to_token(), max), Event::TimeShift(30).to_token());
        assert_eq!(v.clip_shift(Event::NoteOn(70).to_token(), max), Event::NoteOn(70).to_token());
        v.accept(shift);
        assert_eq!(v.overdue_note_off(max), Some(Event::NoteOff(60).to_token()));
        assert_eq!(v.overdue_note_off(None), None, "no limit, no release");
        v.accept(Event::NoteOff(60).to_token());
        assert_eq!(v.overdue_note_off(max), None, "note 64 has 0.4 s left");
        let shift = v.clip_shift(Event::TimeShift(100).to_token(), max);
        assert_eq!(Event::from_token(shift), Some(Event::TimeShift(40)));
        let perf = v.variation().performance;
        assert!(perf.notes.iter().all(|n| n.end_s - n.start_s <= 1.0 + 1e-9), "{perf:?}");
    }

    #[test]
    fn a_missing_runtime_library_is_an_error_naming_it() {
        let lib = Path::new("/nonexistent/cadenza/libonnxruntime.so");
        let opts = EngineOptions { ort_library: Some(lib.to_path_buf()), ..Default::default() };
        let e = Engine::load(Path::new("/nonexistent/model.onnx"), &opts).err().expect("no library");
        assert!(matches!(e, EngineError::LibraryNotFound { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/cadenza/libonnxruntime.so"), "{e}");
    }
}
