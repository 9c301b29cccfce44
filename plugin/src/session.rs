//! The session thread: owns the musician's session (capture, primer,
//! variations, style, folders), answers the editor's commands, hands jobs to
//! the inference thread, turns results into play sets for the audio thread,
//! keeps the persisted copy current, and publishes the editor's view.
//!
//! It never blocks the audio thread: everything it sends there goes through
//! lock-free queues of preallocated objects, and the audio thread's requests
//! arrive as atomic counters it polls every [`TICK`].

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cadenza_core::analysis::Meter;
use cadenza_core::midi::{read_file, ReadOptions, WriteOptions};
use cadenza_core::request::{GenerateRequest, GenerationSettings, Length};
use cadenza_core::{Clip, Performance};
use crossbeam::channel::{Receiver, Select, Sender};
use parking_lot::Mutex;

use crate::capture::{Capture, CaptureEvent, MAX_CAPTURE_EVENTS_IN_FLIGHT};
use crate::generator::{Early, Finished, GenError, Job};
use crate::locate::{self, Style};
use crate::params::CadenzaParams;
use crate::playback::{PlaySet, StartMode, PLAY_SET_POOL};
use crate::preview::PreviewSynth;
use crate::settings::{MachineSettings, OrtChoice};
use crate::shared::Shared;
use crate::state::{Generation, LeanFrom, LoadedPrimer, SessionState};
use crate::view::{GenerationView, Level, PrimerSource, Status, StyleView, View};

/// How often the session thread looks at the audio thread's counters and queues.
pub const TICK: Duration = Duration::from_millis(10);
/// How often the live capture display is refreshed while notes are held or the clock moves.
const CAPTURE_REFRESH: Duration = Duration::from_millis(100);
/// Preview synthesizers in flight (one playing, one arriving).
pub const SYNTH_QUEUE: usize = 2;

/// What the editor asks of the session.
#[derive(Debug)]
pub enum Command {
    Generate,
    Cancel,
    /// Use a MIDI file as the primer.
    LoadPrimer(PathBuf),
    /// Go back to the capture as the primer.
    UseCapture,
    ClearCapture,
    SetStyle(String),
    /// Which style's model the style leans away from.
    SetLeanFrom(LeanFrom),
    RescanStyles,
    Export {
        with_primer: bool,
    },
    SetExportDir(PathBuf),
    /// `None`: search the system.
    SetSoundfont(Option<PathBuf>),
    /// Save this machine's ONNX Runtime library and provider (not part of the project).
    SetMachineSettings(MachineSettings),
    SynthLoaded {
        key: SynthKey,
        result: Result<Box<PreviewSynth>, String>,
    },
    Shutdown,
}

/// A soundfont at a sample rate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthKey {
    pub path: PathBuf,
    pub sample_rate: f64,
}

/// The session's ends of the queues to and from the audio thread.
pub struct SessionPorts {
    pub capture_rx: rtrb::Consumer<CaptureEvent>,
    pub sets_tx: rtrb::Producer<PlaySet>,
    pub sets_back_rx: rtrb::Consumer<PlaySet>,
    pub synth_tx: rtrb::Producer<Box<PreviewSynth>>,
    pub synth_back_rx: rtrb::Consumer<Box<PreviewSynth>>,
}

/// The audio thread's ends.
pub struct AudioPorts {
    pub capture_tx: rtrb::Producer<CaptureEvent>,
    pub sets_rx: rtrb::Consumer<PlaySet>,
    pub sets_back_tx: rtrb::Producer<PlaySet>,
    pub synth_rx: rtrb::Consumer<Box<PreviewSynth>>,
    pub synth_back_tx: rtrb::Producer<Box<PreviewSynth>>,
}

/// Make both ends of every queue.
pub fn ports() -> (SessionPorts, AudioPorts) {
    let (capture_tx, capture_rx) = rtrb::RingBuffer::new(MAX_CAPTURE_EVENTS_IN_FLIGHT);
    let (sets_tx, sets_rx) = rtrb::RingBuffer::new(PLAY_SET_POOL);
    let (sets_back_tx, sets_back_rx) = rtrb::RingBuffer::new(PLAY_SET_POOL);
    let (synth_tx, synth_rx) = rtrb::RingBuffer::new(SYNTH_QUEUE);
    let (synth_back_tx, synth_back_rx) = rtrb::RingBuffer::new(SYNTH_QUEUE + 1);
    (
        SessionPorts { capture_rx, sets_tx, sets_back_rx, synth_tx, synth_back_rx },
        AudioPorts { capture_tx, sets_rx, sets_back_tx, synth_rx, synth_back_tx },
    )
}

/// A job on the inference thread and what its result needs.
struct Pending {
    id: u64,
    started: Instant,
    primer: Option<Clip>,
    primer_len_beats: f64,
    tempo_bpm: f64,
    bar_len_beats: f64,
    time_signature: (u8, u8),
    style: String,
    bars: u32,
    settings: GenerationSettings,
    /// When the chosen variation's start came early ([`Finished::early`]): it is playing.
    first_ms: Option<u64>,
    /// Whether all of the chosen variation came early, not only its start.
    chosen_complete: bool,
}

struct Session {
    params: Arc<CadenzaParams>,
    shared: Arc<Shared>,
    ports: SessionPorts,
    commands_tx: Sender<Command>,
    jobs_tx: Option<Sender<Job>>,
    /// The model and machine settings the inference thread was last asked to load ahead of a
    /// Generate ([`Job::warm_only`]).
    warmed: Option<(PathBuf, MachineSettings, LeanFrom)>,
    inference: Option<std::thread::JoinHandle<()>>,
    loaders: Vec<std::thread::JoinHandle<()>>,

    state: SessionState,
    seen_restores: u64,
    capture: Capture,
    styles: Vec<Style>,
    status: Status,
    engine: String,
    /// This machine's settings as last read or saved.
    machine: MachineSettings,
    /// Why the settings file could not be read (the defaults are used meanwhile).
    machine_error: Option<String>,

    pool: Vec<PlaySet>,
    next_serial: u64,
    /// A play set that could not be sent yet (pool empty or queue full).
    pending_render: Option<StartMode>,
    rendered_quantize: Option<(f64, f64)>,

    job: Option<Pending>,
    next_job_id: u64,
    seen_generate: u32,
    /// The end of the last phrase answered (capture timeline beats).
    answered_up_to: f64,

    synth_loaded: Option<SynthKey>,
    synth_loading: Option<SynthKey>,
    synth_failed: Option<(SynthKey, String)>,

    dirty: bool,
    last_capture_publish: Instant,
}

/// One instance's session and inference threads, started on first need (the
/// host activating the plugin, or the editor opening) rather than when the
/// instance is made: hosts make many instances only to scan them. Stopped and
/// joined when the instance goes. Never touched by the audio thread.
pub struct Workers {
    params: Arc<CadenzaParams>,
    shared: Arc<Shared>,
    threads: Mutex<Threads>,
}

struct Threads {
    /// The session's ends of the queues, until the session thread takes them.
    ports: Option<SessionPorts>,
    commands: Option<Sender<Command>>,
    session: Option<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Nothing starts yet; `ports` wait for [`Workers::start`].
    pub fn new(params: Arc<CadenzaParams>, shared: Arc<Shared>, ports: SessionPorts) -> Self {
        Self { params, shared, threads: Mutex::new(Threads { ports: Some(ports), commands: None, session: None }) }
    }

    /// Start the threads, unless they are running, have stopped or could not start.
    pub fn start(&self) {
        let mut threads = self.threads.lock();
        let Some(ports) = threads.ports.take() else { return };
        match spawn(self.params.clone(), self.shared.clone(), ports) {
            Ok((commands, session)) => {
                threads.commands = Some(commands);
                threads.session = Some(session);
            }
            Err(e) => {
                nice_plug::nice_error!("cadenza: cannot start the session thread: {e}");
                self.shared.publish(View {
                    status: Status::error(format!(
                        "Cadenza could not start its worker thread ({e}); MIDI passes through, nothing else works."
                    )),
                    ..View::default()
                });
            }
        }
    }

    /// Whether the threads were started (and not yet stopped).
    pub fn running(&self) -> bool {
        self.threads.lock().session.is_some()
    }

    /// Send the session a command, starting the threads first if need be.
    pub fn send(&self, cmd: Command) {
        self.start();
        if let Some(tx) = &self.threads.lock().commands {
            let _ = tx.send(cmd);
        }
    }

    /// Stop the threads and wait for them: the plugin's code may be unloaded right after.
    pub fn stop(&self) {
        let (commands, session) = {
            let mut threads = self.threads.lock();
            threads.ports = None;
            (threads.commands.take(), threads.session.take())
        };
        if let Some(tx) = commands {
            let _ = tx.send(Command::Shutdown);
        }
        if let Some(handle) = session {
            let _ = handle.join();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start the session and inference threads. Returns the command sender and the session's handle.
pub fn spawn(
    params: Arc<CadenzaParams>,
    shared: Arc<Shared>,
    ports: SessionPorts,
) -> std::io::Result<(Sender<Command>, std::thread::JoinHandle<()>)> {
    let (commands_tx, commands_rx) = crossbeam::channel::unbounded();
    let (jobs_tx, jobs_rx) = crossbeam::channel::unbounded();
    let (finished_tx, finished_rx) = crossbeam::channel::unbounded();
    let inference = crate::generator::spawn(shared.clone(), jobs_rx, finished_tx)?;
    let (state, seen_restores) = params.session.snapshot();
    let mut session = Session {
        params,
        shared,
        ports,
        commands_tx: commands_tx.clone(),
        jobs_tx: Some(jobs_tx),
        warmed: None,
        inference: Some(inference),
        loaders: Vec::new(),
        state,
        seen_restores,
        capture: Capture::default(),
        styles: Vec::new(),
        status: Status::info("Play something, then press Generate."),
        engine: "ONNX Runtime: not loaded yet".into(),
        machine: MachineSettings::default(),
        machine_error: None,
        pool: (0..PLAY_SET_POOL).map(|_| PlaySet::with_capacity()).collect(),
        next_serial: 1,
        pending_render: None,
        rendered_quantize: None,
        job: None,
        next_job_id: 1,
        seen_generate: 0,
        answered_up_to: f64::NEG_INFINITY,
        synth_loaded: None,
        synth_loading: None,
        synth_failed: None,
        dirty: true,
        last_capture_publish: Instant::now(),
    };
    session.seen_generate = session.shared.generate_requests.current();
    let handle = std::thread::Builder::new().name("cadenza-session".into()).spawn(move || {
        session.startup();
        session.run(commands_rx, finished_rx);
    })?;
    Ok((commands_tx, handle))
}

impl Session {
    fn startup(&mut self) {
        self.rescan_styles();
        self.read_machine_settings();
        self.engine = match cadenza_core::engine::loaded_library() {
            Some(p) => format!("ONNX Runtime: {} (loaded in this host)", p.display()),
            None => format!("ONNX Runtime: {}", OrtChoice::current(&self.machine).describe()),
        };
        if let Some(e) = &self.machine_error {
            self.status = Status::warning(format!("{e}; using the bundle's ONNX Runtime on the CPU."));
        }
        // A generation here came with a project loaded before the threads started.
        if self.state.generation.is_some() {
            self.render(StartMode::Restored);
        }
    }

    fn run(&mut self, commands: Receiver<Command>, finished: Receiver<Finished>) {
        // Cleared when the inference thread is gone, so a closed channel is not selected forever.
        let mut inference_alive = true;
        loop {
            let mut select = Select::new();
            let on_command = select.recv(&commands);
            if inference_alive {
                select.recv(&finished);
            }
            match select.select_timeout(TICK) {
                Ok(op) if op.index() == on_command => match op.recv(&commands) {
                    Ok(Command::Shutdown) | Err(_) => break,
                    Ok(cmd) => self.handle(cmd),
                },
                Ok(op) => match op.recv(&finished) {
                    Ok(f) => self.finish(f),
                    Err(_) => inference_alive = false,
                },
                Err(_) => {}
            }
            // Drain whatever else queued up before doing the periodic work.
            while let Ok(cmd) = commands.try_recv() {
                if matches!(cmd, Command::Shutdown) {
                    self.shutdown();
                    return;
                }
                self.handle(cmd);
            }
            self.tick();
        }
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.progress.cancel.store(true, Ordering::Release);
        self.jobs_tx = None;
        // The plugin's code is unloaded after the instance goes: every thread must be gone first.
        if let Some(h) = self.inference.take() {
            let _ = h.join();
        }
        for h in self.loaders.drain(..) {
            let _ = h.join();
        }
    }

    fn tick(&mut self) {
        self.drain_capture();
        self.warm_up();
        self.check_restore();
        if self.shared.generate_requests.take(&mut self.seen_generate) {
            self.start_generation();
        }
        self.maybe_answer();
        while let Ok(set) = self.ports.sets_back_rx.pop() {
            self.pool.push(set);
        }
        while let Ok(synth) = self.ports.synth_back_rx.pop() {
            drop(synth);
        }
        let quantize = self.params.quantize();
        if self.state.generation.is_some() && quantize != self.rendered_quantize && self.pending_render.is_none() {
            self.render(StartMode::Keep);
            self.dirty = true;
        }
        if let Some(mode) = self.pending_render.take() {
            self.render(mode);
        }
        self.update_preview();
        if self.dirty {
            self.publish();
        }
    }

    /// Call and response: a phrase followed by a bar of silence gets an answer.
    fn maybe_answer(&mut self) {
        if !self.params.answer.value() || self.job.is_some() || self.state.primer_file.is_some() {
            return;
        }
        let Some(last) = self.capture.last_release() else { return };
        if last > self.answered_up_to && self.capture.now() - last >= self.capture.bar_len() {
            self.answered_up_to = last;
            self.start_generation();
        }
    }

    fn handle(&mut self, cmd: Command) {
        self.dirty = true;
        match cmd {
            Command::Generate => self.start_generation(),
            Command::Cancel => {
                if self.job.is_some() {
                    self.shared.progress.cancel.store(true, Ordering::Release);
                    self.status = Status::info("Cancelling…");
                }
            }
            Command::LoadPrimer(path) => self.load_primer(path),
            Command::UseCapture => {
                self.state.primer_file = None;
                self.status = Status::info("The primer is what you play (the last bars captured).");
                self.store();
            }
            Command::ClearCapture => {
                self.capture.clear();
                self.status = Status::info("Capture cleared.");
            }
            Command::SetStyle(name) => {
                self.state.style = Some(name);
                self.store();
            }
            Command::SetLeanFrom(lean_from) => {
                self.status = Status::info(match &lean_from {
                    LeanFrom::Model => "Each style leans away from the style its model names, if any.".to_string(),
                    LeanFrom::Off => "No style leans away from another.".to_string(),
                    LeanFrom::Style(other) => format!("The style leans away from {other} (as far as Lean away says)."),
                });
                self.state.lean_from = lean_from;
                self.store();
            }
            Command::RescanStyles => {
                self.rescan_styles();
                self.status = Status::info(format!("{} styles found.", self.styles.len()));
            }
            Command::Export { with_primer } => self.export(with_primer),
            Command::SetExportDir(dir) => {
                self.state.export_dir = Some(dir);
                self.store();
            }
            Command::SetSoundfont(path) => {
                self.state.soundfont = path;
                self.synth_failed = None;
                self.store();
            }
            Command::SetMachineSettings(settings) => self.save_machine_settings(settings),
            Command::SynthLoaded { key, result } => {
                self.synth_loading = None;
                match result {
                    Ok(synth) => match self.ports.synth_tx.push(synth) {
                        Ok(()) => {
                            self.synth_loaded = Some(key);
                            self.synth_failed = None;
                        }
                        Err(_) => self.synth_failed = Some((key, "the audio thread is not taking it".into())),
                    },
                    Err(message) => self.synth_failed = Some((key, message)),
                }
            }
            Command::Shutdown => {}
        }
    }

    fn drain_capture(&mut self) {
        let mut any = false;
        while let Ok(ev) = self.ports.capture_rx.pop() {
            self.capture.push(&ev);
            any = true;
        }
        let clock = &self.shared.clock;
        let epoch = clock.epoch.load(Ordering::Acquire);
        if epoch != 0 {
            self.capture.observe_now(
                epoch,
                clock.now_beats.load(),
                clock.bar_origin_beats.load(),
                clock.bar_len_beats.load(),
            );
        }
        if any || (!self.capture.is_empty() && self.last_capture_publish.elapsed() >= CAPTURE_REFRESH) {
            self.dirty = true;
        }
    }

    /// Once the musician plays into a style (or loads a primer), load its model, so that the
    /// first Generate does not wait for that (about 0.1 s for a shipped style on two cores).
    fn warm_up(&mut self) {
        if self.job.is_some() || (self.capture.is_empty() && self.state.primer_file.is_none()) {
            return;
        }
        let Some(style) = self.current_style() else { return };
        let key = (style.path.clone(), self.machine.clone(), self.state.lean_from.clone());
        if self.warmed.as_ref() == Some(&key) {
            return;
        }
        let job = Job {
            // No generation's: generations count from 1.
            id: 0,
            model: key.0.clone(),
            ort: OrtChoice::current(&self.machine),
            first: 0,
            stream_start: false,
            warm_only: true,
            lean_from: key.2.clone(),
            request: GenerateRequest::default(),
        };
        if self.jobs_tx.as_ref().is_some_and(|tx| tx.send(job).is_ok()) {
            self.warmed = Some(key);
        }
    }

    fn check_restore(&mut self) {
        let restores = self.params.session.restores();
        if restores == self.seen_restores {
            return;
        }
        self.dirty = true;
        if let Some(err) = self.params.session.take_restore_error() {
            self.seen_restores = restores;
            self.status = Status::error(format!("Could not restore the saved session: {err}. Nothing was changed."));
            // Keep what we had, and put it back as the state the host will save next.
            self.params.session.store(restores, &self.state);
            return;
        }
        let (state, seen) = self.params.session.snapshot();
        self.state = state;
        self.seen_restores = seen;
        // A load is no press of Generate, even if it came in with the parameter high.
        self.seen_generate = self.shared.generate_requests.current();
        self.status = Status::info("Session restored.");
        if self.state.generation.is_some() {
            self.render(StartMode::Restored);
        }
    }

    /// Keep the persisted copy current.
    fn store(&mut self) {
        self.params.session.store(self.seen_restores, &self.state);
    }

    fn read_machine_settings(&mut self) {
        match MachineSettings::load() {
            Ok(m) => {
                self.machine = m;
                self.machine_error = None;
            }
            Err(e) => self.machine_error = Some(format!("Cadenza's settings could not be read ({e})")),
        }
    }

    fn save_machine_settings(&mut self, settings: MachineSettings) {
        let path = match settings.save() {
            Ok(path) => path,
            Err(e) => {
                self.status = Status::error(format!("The ONNX Runtime setting was not saved: {e}"));
                return;
            }
        };
        self.machine = settings;
        self.machine_error = None;
        let choice = OrtChoice::current(&self.machine);
        let loaded = cadenza_core::engine::loaded_library();
        self.status = match (choice.libraries.first(), loaded) {
            (Some(wanted), Some(loaded)) if !crate::settings::same_file(&wanted.path, &loaded) => {
                Status::warning(format!(
                    "Saved in {}. ONNX Runtime is already loaded from {} in this host; restart the host to use {}.",
                    path.display(),
                    loaded.display(),
                    choice.describe()
                ))
            }
            _ => Status::success(format!(
                "Saved in {} for this machine; the next generation runs on {}.",
                path.display(),
                choice.describe()
            )),
        };
    }

    fn rescan_styles(&mut self) {
        self.styles = locate::scan_styles();
        // A style file may have changed: the next warm-up checks.
        self.warmed = None;
        self.dirty = true;
    }

    fn current_style(&self) -> Option<&Style> {
        let chosen = self.state.style.as_deref();
        chosen.and_then(|name| self.styles.iter().find(|s| s.name == name)).or_else(|| self.styles.first())
    }

    fn load_primer(&mut self, path: PathBuf) {
        let tempo = self.shared.clock.tempo_bpm.load();
        match read_file(&path, &ReadOptions::default()) {
            Ok(perf) => {
                let clip = Clip::from_performance(&perf.shifted_to(0.0), tempo);
                self.status = Status::success(format!(
                    "Primer loaded: {} ({} notes). Generate continues it.",
                    path.display(),
                    clip.notes.len()
                ));
                self.state.primer_file = Some(LoadedPrimer { path, clip });
                self.store();
            }
            Err(e) => self.status = Status::error(format!("Could not load the primer: {e}")),
        }
    }

    fn start_generation(&mut self) {
        self.dirty = true;
        if self.job.is_some() {
            self.status = Status::warning("Still generating; press Cancel to stop it first.");
            return;
        }
        // Everything played up to the press belongs to the primer, even what is still queued.
        self.drain_capture();
        let Some(style) = self.current_style().cloned() else {
            self.rescan_styles();
            let dir = locate::user_model_dir().map(|d| d.display().to_string()).unwrap_or_default();
            self.status = Status::error(format!(
                "No style found: the bundle ships none and {dir} holds no .onnx model. Reinstall Cadenza or train a style."
            ));
            return;
        };
        let p = &self.params;
        let clock = &self.shared.clock;
        let tempo_bpm = clock.tempo_bpm.load();
        let bar_len_beats = clock.bar_len_beats.load();
        let time_signature = clock.time_signature();
        let mut primer = match &self.state.primer_file {
            Some(f) => Some(f.clip.clone()),
            None => self.capture.primer(p.capture_bars.value().max(1) as u32),
        };
        if let (Some(clip), Some((grid, strength))) = (primer.as_mut(), p.quantize()) {
            clip.quantize(grid, strength);
        }
        let primer_len_beats =
            primer.as_ref().map_or(0.0, |c| ((c.length_beats / bar_len_beats) - 1e-6).ceil().max(1.0) * bar_len_beats);
        let bars = p.bars.value().max(1) as u32;
        let settings = p.generation_settings(Length::Seconds(f64::from(bars) * bar_len_beats * 60.0 / tempo_bpm));
        let first = (p.choice.value().max(1) as usize - 1).min(settings.variations - 1);
        // Another instance (or the user) may have changed this machine's settings since.
        self.read_machine_settings();
        let job = Job {
            id: self.next_job_id,
            model: style.path.clone(),
            ort: OrtChoice::current(&self.machine),
            // The chosen variation is made first and plays while the others are made.
            first,
            stream_start: !self.shared.clock.offline.load(Ordering::Acquire),
            warm_only: false,
            lean_from: self.state.lean_from.clone(),
            request: GenerateRequest {
                primer: primer.as_ref().map(|c| c.to_performance(tempo_bpm)),
                primer_end_s: primer.as_ref().map(|_| primer_len_beats * 60.0 / tempo_bpm),
                // The primer starts on a bar line of the host's metre.
                meter: Some(Meter { tempo_bpm, bar_start_s: 0.0, bar_len_beats }),
                settings,
            },
        };
        let following = match job.request.analysis() {
            Some(a) if settings.steering.follow > 0.0 => format!(", following {}", a.summary()),
            _ => String::new(),
        };
        self.next_job_id += 1;
        let from = match (&self.state.primer_file, &primer) {
            (Some(f), _) => {
                format!("continuing {}", f.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default())
            }
            (None, Some(c)) => format!("continuing the {} notes you played", c.notes.len()),
            (None, None) => "improvising (nothing captured yet)".into(),
        };
        self.status = Status::info(format!(
            "Generating {} variation{} of {bars} bars in {}, {from}{following}…",
            settings.variations,
            if settings.variations == 1 { "" } else { "s" },
            style.name
        ));
        self.shared.progress.cancel.store(false, Ordering::Release);
        self.shared.progress.permille.store(0, Ordering::Release);
        self.shared.progress.running.store(true, Ordering::Release);
        self.job = Some(Pending {
            id: job.id,
            started: Instant::now(),
            primer,
            primer_len_beats,
            tempo_bpm,
            bar_len_beats,
            time_signature,
            style: style.name.clone(),
            bars,
            settings,
            first_ms: None,
            chosen_complete: false,
        });
        let sent = self.jobs_tx.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        if !sent {
            self.job = None;
            self.shared.progress.running.store(false, Ordering::Release);
            self.status = Status::error("The inference thread is gone; reload the plugin.");
        }
    }

    /// The job's generation from `performances`, each fitted to the job's length.
    fn generation_of(job: &Pending, performances: &[Performance], elapsed_ms: u64) -> Generation {
        let length_beats = f64::from(job.bars) * job.bar_len_beats;
        Generation {
            primer: job.primer.clone().unwrap_or_default(),
            primer_len_beats: job.primer_len_beats,
            variations: performances
                .iter()
                .map(|p| fit_to_length(Clip::from_performance(p, job.tempo_bpm), length_beats))
                .collect(),
            tempo_bpm: job.tempo_bpm,
            bar_len_beats: job.bar_len_beats,
            time_signature: job.time_signature,
            style: job.style.clone(),
            bars: job.bars,
            settings: job.settings,
            elapsed_ms,
            first_ms: job.first_ms.unwrap_or(elapsed_ms),
        }
    }

    /// How a result starts playing: a fresh one from the next bar line (when auto-play is on);
    /// more of one already `playing` joins it, letting its notes ring when it is rendered as
    /// before (the same quantize).
    fn result_mode(&self, playing: bool) -> StartMode {
        if playing && self.rendered_quantize == self.params.quantize() {
            StartMode::Extend
        } else if playing || !self.params.autoplay.value() {
            StartMode::Keep
        } else {
            StartMode::Start
        }
    }

    /// Where playback of `what` stands, in words, after a result arrived.
    fn when_playing(&self, what: &str) -> String {
        if !self.params.autoplay.value() {
            format!("press Play to hear {what}")
        } else if self.shared.clock.host_playing.load(Ordering::Acquire) {
            "playing from the next bar line".into()
        } else {
            "playing now".into()
        }
    }

    /// The chosen variation (`index`), made alone ahead of the others: its start (the first
    /// message), then all of it. It plays from its start, and what follows joins it without a
    /// break; until the others come, their places hold empty clips of the job's length.
    fn early_ready(&mut self, f: Finished, Early { index, complete }: Early) {
        if !f.engine.is_empty() {
            self.engine = f.engine.clone();
        }
        let Some(job) = self.job.as_mut().filter(|j| j.id == f.id) else { return };
        let Ok(performances) = f.result else { return };
        let elapsed_ms = job.started.elapsed().as_millis() as u64;
        let (style, variations, seed) = (job.style.clone(), job.settings.variations, job.settings.sampling.seed);
        let index = index.min(variations - 1);
        let started = job.first_ms.is_some();
        job.first_ms.get_or_insert(elapsed_ms);
        job.chosen_complete = complete;
        let mut generation = Self::generation_of(job, &performances, elapsed_ms);
        let chosen = generation.variations.pop().unwrap_or_default();
        match self.state.generation.as_mut().filter(|_| started) {
            Some(g) => g.variations[index] = chosen,
            None => {
                let empty = Clip { notes: Vec::new(), length_beats: f64::from(job.bars) * job.bar_len_beats };
                generation.variations = vec![empty; variations];
                generation.variations[index] = chosen;
                self.state.generation = Some(generation);
            }
        }
        self.store();
        self.render(self.result_mode(started));
        let others = match variations - 1 {
            0 => String::new(),
            1 => " and the other one".into(),
            n => format!(" and the other {n}"),
        };
        let which = if variations == 1 {
            "The variation".to_string()
        } else {
            format!("Variation {} of {variations}", index + 1)
        };
        self.status = Status::info(if started {
            format!(
                "{which} ready in {:.1} s; the other{} follow…",
                elapsed_ms as f64 / 1000.0,
                if variations == 2 { "" } else { "s" }
            )
        } else {
            format!(
                "{which} starts after {elapsed_ms} ms ({style}, seed {seed}); {}; the rest of it{others} follow…",
                self.when_playing("it")
            )
        });
        self.say_notices(f.notices, !started);
        self.dirty = true;
    }

    /// What did not run as this machine's settings asked (and the machine settings' own error),
    /// said after the status, never hidden; logged once a job (`log`).
    fn say_notices(&mut self, mut notices: Vec<String>, log: bool) {
        if let Some(e) = &self.machine_error {
            notices.insert(0, e.clone());
        }
        if notices.is_empty() {
            return;
        }
        if log {
            nice_plug::nice_warn!("cadenza: {}", notices.join("; "));
        }
        let level = if self.status.level == Level::Error { Level::Error } else { Level::Warning };
        self.status = Status { level, text: format!("{} {}.", self.status.text, notices.join(". ")) };
    }

    fn finish(&mut self, f: Finished) {
        if let Some(early) = f.early {
            return self.early_ready(f, early);
        }
        // A warm-up ([`Job::warm_only`]) says only this.
        if !f.engine.is_empty() {
            self.engine = f.engine.clone();
            self.dirty = true;
        }
        let Some(job) = self.job.take_if(|j| j.id == f.id) else { return };
        // The chosen variation came early and is playing: what follows must not drop it.
        let kept = match job.first_ms {
            Some(_) if !job.chosen_complete => {
                " The start of the chosen variation is kept; the rest of it and the others were not made.".to_string()
            }
            Some(_) => " The chosen variation is kept; the others were not made.".to_string(),
            None => String::new(),
        };
        match f.result {
            Ok(performances) => {
                let elapsed_ms = job.started.elapsed().as_millis() as u64;
                let generation = Self::generation_of(&job, &performances, elapsed_ms);
                let notes: usize = generation.variations.iter().map(|v| v.notes.len()).sum();
                let count = generation.variations.len();
                self.state.generation = Some(generation);
                self.store();
                self.render(self.result_mode(job.first_ms.is_some()));
                let when = match job.first_ms.filter(|_| self.params.autoplay.value()) {
                    Some(ms) => format!("the chosen one started after {ms} ms"),
                    None => self.when_playing("them"),
                };
                self.status = if notes == 0 {
                    Status::warning(format!(
                        "{} made {count} variation(s) without a single note; try a higher temperature or another seed.",
                        job.style
                    ))
                } else {
                    // A phrase foreign to the style: say what was done with it, and how to let the style lead.
                    let advice = f
                        .primer_fit
                        .and_then(|fit| fit.advice(&job.style, &format!("\"{}\" On", crate::params::STYLE_LEAD_NAME)))
                        .map(|a| format!(" {a}."))
                        .unwrap_or_default();
                    Status::success(format!(
                        "{count} variation{} ready in {:.1} s ({}, seed {}); {when}.{advice}",
                        if count == 1 { "" } else { "s" },
                        elapsed_ms as f64 / 1000.0,
                        job.style,
                        job.settings.sampling.seed
                    ))
                };
            }
            Err(GenError::Cancelled) if kept.is_empty() => {
                self.status = Status::info("Generation cancelled; nothing changed.")
            }
            Err(GenError::Cancelled) => self.status = Status::info(format!("Generation cancelled.{kept}")),
            Err(e) => {
                let e = e.to_string();
                self.status = Status::error(format!("{}. MIDI still passes through.{kept}", e.trim_end_matches('.')));
            }
        }
        // What did not run as this machine's settings asked: logged already when the start came early.
        self.say_notices(f.notices, job.first_ms.is_none());
        self.dirty = true;
    }

    /// The variations as they play: quantized when quantize is on.
    fn rendered_variations(&self, g: &Generation) -> Vec<Clip> {
        let quantize = self.params.quantize();
        g.variations
            .iter()
            .map(|v| {
                let mut v = v.clone();
                if let Some((grid, strength)) = quantize {
                    v.quantize(grid, strength);
                }
                v
            })
            .collect()
    }

    /// Send the current generation to the audio thread.
    fn render(&mut self, mode: StartMode) {
        let Some(g) = &self.state.generation else { return };
        let variations = self.rendered_variations(g);
        let length_beats = f64::from(g.bars) * g.bar_len_beats;
        let Some(mut set) = self.pool.pop() else {
            self.pending_render = Some(mode);
            return;
        };
        set.fill(&variations, length_beats);
        set.start = mode;
        set.serial = self.next_serial;
        self.next_serial += 1;
        match self.ports.sets_tx.push(set) {
            Ok(()) => self.rendered_quantize = self.params.quantize(),
            Err(rtrb::PushError::Full(set)) => {
                self.pool.push(set);
                self.pending_render = Some(mode);
            }
        }
    }

    fn export(&mut self, with_primer: bool) {
        let Some(g) = &self.state.generation else {
            self.status = Status::warning("Nothing to export yet: generate first.");
            return;
        };
        let variations = self.rendered_variations(g);
        if variations.is_empty() {
            self.status = Status::warning("The last generation has no variations to export.");
            return;
        }
        let chosen = (self.params.choice.value().max(1) as usize - 1).min(variations.len() - 1);
        let variation = &variations[chosen];
        let clip = if with_primer {
            let mut primer = g.primer.clone();
            if let Some((grid, strength)) = self.params.quantize() {
                primer.quantize(grid, strength);
            }
            crate::keep::with_primer(&primer, g.primer_len_beats, variation)
        } else {
            variation.clone()
        };
        let clock = &self.shared.clock;
        let opts = WriteOptions {
            tempo_bpm: clock.tempo_bpm.load(),
            time_signature: clock.time_signature(),
            track_name: format!("Cadenza {} variation {}", g.style, chosen + 1),
        };
        let dir = self.state.export_dir.clone().unwrap_or_else(locate::default_export_dir);
        let stem = format!(
            "{}-seed{}-v{}{}",
            g.style,
            g.settings.sampling.seed,
            chosen + 1,
            if with_primer { "-with-primer" } else { "" }
        );
        match crate::keep::export(&dir, &stem, &clip, &opts) {
            Ok(path) => {
                self.status = Status::success(format!("Exported {}", path.display()));
                self.state.last_export = Some(path);
                self.store();
            }
            Err(e) => self.status = Status::error(format!("Export failed: {e}")),
        }
    }

    fn update_preview(&mut self) {
        let sample_rate = self.shared.clock.sample_rate.load();
        if !self.params.preview_piano.value() || sample_rate <= 0.0 {
            return;
        }
        let path = match self.state.soundfont.clone().or_else(|| locate::find_soundfonts().into_iter().next()) {
            Some(p) => p,
            None => {
                if self.synth_failed.is_none() {
                    let key = SynthKey { path: PathBuf::new(), sample_rate };
                    self.synth_failed =
                        Some((key, "no soundfont found (install fluid-soundfont-gm or choose an .sf2 file)".into()));
                    self.dirty = true;
                }
                return;
            }
        };
        let key = SynthKey { path: path.clone(), sample_rate };
        let busy = self.synth_loaded.as_ref() == Some(&key)
            || self.synth_loading.is_some()
            || self.synth_failed.as_ref().is_some_and(|(k, _)| k == &key);
        if busy {
            return;
        }
        self.synth_loading = Some(key.clone());
        self.dirty = true;
        let tx = self.commands_tx.clone();
        let spawned = std::thread::Builder::new().name("cadenza-soundfont".into()).spawn(move || {
            let result = PreviewSynth::load(&key.path, key.sample_rate as f32).map_err(|e| e.to_string());
            let _ = tx.send(Command::SynthLoaded { key, result });
        });
        match spawned {
            Ok(h) => self.loaders.push(h),
            Err(e) => {
                self.synth_failed = Some((SynthKey { path, sample_rate }, format!("cannot start the loader: {e}")));
                self.synth_loading = None;
            }
        }
    }

    fn publish(&mut self) {
        self.dirty = false;
        self.last_capture_publish = Instant::now();
        let generation = self.state.generation.as_ref().map(|g| {
            let mut primer = g.primer.clone();
            if let Some((grid, strength)) = self.params.quantize() {
                primer.quantize(grid, strength);
            }
            GenerationView {
                primer,
                primer_len_beats: g.primer_len_beats,
                variations: self.rendered_variations(g),
                length_beats: f64::from(g.bars) * g.bar_len_beats,
                bar_len_beats: g.bar_len_beats,
                tempo_bpm: g.tempo_bpm,
                style: g.style.clone(),
                settings: g.settings,
                elapsed_ms: g.elapsed_ms,
                first_ms: g.first_ms,
            }
        });
        let primer_source = match &self.state.primer_file {
            Some(f) => PrimerSource::File {
                path: f.path.clone(),
                notes: f.clip.notes.len(),
                bars: f.clip.length_beats / self.shared.clock.bar_len_beats.load().max(1e-9),
            },
            None => PrimerSource::Capture,
        };
        let capture_bars = self.params.capture_bars.value().max(1) as u32;
        let soundfont = self
            .synth_loaded
            .as_ref()
            .map(|k| k.path.clone())
            .or_else(|| self.state.soundfont.clone())
            .or_else(|| self.synth_loading.as_ref().map(|k| k.path.clone()));
        let view = View {
            status: self.status.clone(),
            styles: self.styles.iter().map(|s| StyleView { name: s.name.clone(), shipped: s.shipped }).collect(),
            style: self.current_style().map(|s| s.name.clone()),
            lean_from: self.state.lean_from.clone(),
            primer_source,
            live_capture: self.capture.recent(capture_bars),
            capture_notes: self.capture.len(),
            generation,
            export_dir: self.state.export_dir.clone().unwrap_or_else(locate::default_export_dir),
            last_export: self.state.last_export.clone(),
            soundfont,
            soundfont_ready: self.synth_loaded.is_some(),
            soundfont_error: self.synth_failed.as_ref().map(|(_, e)| e.clone()),
            engine: self.engine.clone(),
            machine: self.machine.clone(),
            ort_env: std::env::var_os(crate::settings::ORT_LIBRARY_ENV).filter(|v| !v.is_empty()).map(PathBuf::from),
        };
        self.shared.publish(view);
    }
}

/// Cut a continuation to `length_beats`: notes starting later go, notes running over end there.
pub fn fit_to_length(mut clip: Clip, length_beats: f64) -> Clip {
    clip.notes.retain(|n| n.start_beats < length_beats - 1e-9);
    for n in &mut clip.notes {
        n.length_beats = n.length_beats.min(length_beats - n.start_beats).max(1e-3);
    }
    clip.length_beats = length_beats;
    clip
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadenza_core::ClipNote;

    #[test]
    fn continuations_are_cut_to_the_bars_asked_for() {
        let clip = Clip {
            notes: vec![
                ClipNote { pitch: 60, velocity: 80, start_beats: 0.0, length_beats: 1.0 },
                ClipNote { pitch: 62, velocity: 80, start_beats: 7.5, length_beats: 2.0 },
                ClipNote { pitch: 64, velocity: 80, start_beats: 8.0, length_beats: 1.0 },
            ],
            length_beats: 9.0,
        };
        let fit = fit_to_length(clip, 8.0);
        assert_eq!(fit.notes.len(), 2);
        assert_eq!(fit.notes[1].length_beats, 0.5);
        assert_eq!(fit.length_beats, 8.0);
    }
}
