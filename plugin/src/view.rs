//! The editor's picture of the session: a read-only snapshot the session
//! thread publishes after each change. The editor never mutates it; it sends
//! commands instead.

use std::path::PathBuf;

use cadenza_core::{Clip, ClipNote};

use cadenza_core::request::GenerationSettings;

use crate::settings::MachineSettings;

/// How a status line should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    #[default]
    Info,
    Success,
    Warning,
    Error,
}

/// One line of status, in words.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    pub level: Level,
    pub text: String,
}

impl Status {
    pub fn info(text: impl Into<String>) -> Self {
        Self { level: Level::Info, text: text.into() }
    }
    pub fn success(text: impl Into<String>) -> Self {
        Self { level: Level::Success, text: text.into() }
    }
    pub fn warning(text: impl Into<String>) -> Self {
        Self { level: Level::Warning, text: text.into() }
    }
    pub fn error(text: impl Into<String>) -> Self {
        Self { level: Level::Error, text: text.into() }
    }
}

/// A style as the editor lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StyleView {
    pub name: String,
    pub shipped: bool,
}

/// The current result, as displayed (quantize applied).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationView {
    pub primer: Clip,
    pub primer_len_beats: f64,
    pub variations: Vec<Clip>,
    /// Length of each variation, in beats.
    pub length_beats: f64,
    pub bar_len_beats: f64,
    pub tempo_bpm: f64,
    pub style: String,
    pub settings: GenerationSettings,
    pub elapsed_ms: u64,
    /// When the chosen variation was ready (see [`crate::state::Generation::first_ms`]).
    pub first_ms: u64,
}

/// Where the next primer comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PrimerSource {
    /// The rolling capture of what was played.
    Capture,
    /// A loaded MIDI file.
    File { path: PathBuf, notes: usize, bars: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub status: Status,
    pub styles: Vec<StyleView>,
    pub style: Option<String>,
    /// Which style's model the style leans away from.
    pub lean_from: crate::state::LeanFrom,
    pub primer_source: PrimerSource,
    /// What was played recently, in beats before now (all starts <= 0).
    pub live_capture: Vec<ClipNote>,
    pub capture_notes: usize,
    pub generation: Option<GenerationView>,
    pub export_dir: PathBuf,
    pub last_export: Option<PathBuf>,
    /// Soundfont in use (or the one that will be used) and what went wrong with it.
    pub soundfont: Option<PathBuf>,
    pub soundfont_ready: bool,
    pub soundfont_error: Option<String>,
    /// Which ONNX Runtime library and execution provider run, or why none does.
    pub engine: String,
    /// This machine's ONNX Runtime library and provider, as saved.
    pub machine: MachineSettings,
    /// The library `CADENZA_ORT_LIBRARY` names, which overrides the saved one.
    pub ort_env: Option<PathBuf>,
}

impl Default for View {
    fn default() -> Self {
        Self {
            status: Status::info("Play something, then press Generate."),
            styles: Vec::new(),
            style: None,
            lean_from: crate::state::LeanFrom::Model,
            primer_source: PrimerSource::Capture,
            live_capture: Vec::new(),
            capture_notes: 0,
            generation: None,
            export_dir: crate::locate::default_export_dir(),
            last_export: None,
            soundfont: None,
            soundfont_ready: false,
            soundfont_error: None,
            engine: "engine not loaded yet".into(),
            machine: MachineSettings::default(),
            ort_env: None,
        }
    }
}
