//! The editor (egui through baseview): the controls across the top, a piano
//! roll of the primer and the chosen variation with the host's bar lines, the
//! keep and preview rows, and the status in words at the bottom. It reads the
//! session's published snapshot and the audio thread's atomics, and changes
//! things only through parameters (host-automatable) or session commands.
//!
//! Drag and drop: baseview (0.4.2) is an XDND *target* on X11 only (files can
//! be dropped onto a window), and egui-baseview (0.9) drops even those events;
//! neither can start a drag *out* of the window. So a clip leaves Cadenza as
//! an exported file: the editor shows its path, copies it to the clipboard and
//! opens the export folder in the file manager, from which it drags into the DAW.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use cadenza_core::engine::Provider;
use cadenza_core::ClipNote;
use egui::{Align2, Color32, CornerRadius, FontId, Pos2, Rect, RichText, Sense, Stroke, StrokeKind, Vec2};
use nice_plug::context::gui::GuiContext;
use nice_plug::prelude::*;
use nice_plug_egui::widgets::ParamSlider;
use nice_plug_egui::{EguiEditorState, EguiNiceSettings, NiceEguiApp};

use crate::params::{note_name, CadenzaParams};
use crate::playback::PlayState;
use crate::session::{Command, Workers};
use crate::settings::{execution_name, MachineSettings, ORT_LIBRARY_ENV};
use crate::shared::Shared;
use crate::state::LeanFrom;
use crate::view::{Level, PrimerSource, View};

/// Editor size in logical pixels.
pub const EDITOR_WIDTH: u32 = 1000;
pub const EDITOR_HEIGHT: u32 = 660;

const PRIMER_COLOUR: Color32 = Color32::from_rgb(0x5f, 0xa8, 0xd3);
const GENERATED_COLOUR: Color32 = Color32::from_rgb(0xf2, 0xa5, 0x41);
const LIVE_COLOUR: Color32 = Color32::from_rgb(0x8f, 0xc9, 0x8b);
const ROLL_BACKGROUND: Color32 = Color32::from_rgb(0x1c, 0x1e, 0x24);
const BLACK_KEY_LANE: Color32 = Color32::from_rgb(0x17, 0x19, 0x1e);
const BAR_LINE: Color32 = Color32::from_rgb(0x55, 0x5a, 0x66);
const BEAT_LINE: Color32 = Color32::from_rgb(0x2c, 0x2f, 0x37);
const PLAYHEAD: Color32 = Color32::from_rgb(0xff, 0x5a, 0x5f);

pub fn default_state() -> Arc<EguiEditorState> {
    EguiEditorState::from_size(nice_plug::editor::dpi::LogicalSize::new(EDITOR_WIDTH as f32, EDITOR_HEIGHT as f32), 1.0)
}

pub fn create(
    state: Arc<EguiEditorState>,
    params: Arc<CadenzaParams>,
    shared: Arc<Shared>,
    workers: Arc<Workers>,
) -> Option<nice_plug_egui::EguiEditor<CadenzaEditor>> {
    let view = shared.view();
    let notifier = nice_plug_egui::RepaintNotifier::new();
    *shared.repaint.lock() = Some(notifier.clone());
    let app = CadenzaEditor {
        params,
        shared,
        workers,
        gui: None,
        primer_path: String::new(),
        export_dir: view.export_dir.display().to_string(),
        soundfont_path: view.soundfont.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        seen_export_dir: view.export_dir.clone(),
        ort_library: String::new(),
        execution: Provider::Auto,
        seen_machine: None,
    };
    nice_plug_egui::create_egui_editor(state, notifier, EguiNiceSettings::new().with_tile("Cadenza"), app)
}

pub struct CadenzaEditor {
    params: Arc<CadenzaParams>,
    shared: Arc<Shared>,
    /// The session's threads: the editor opening starts them if the host has not activated yet.
    workers: Arc<Workers>,
    gui: Option<GuiContext>,
    /// Text the musician typed into the path fields.
    primer_path: String,
    export_dir: String,
    soundfont_path: String,
    /// The export folder last shown, to refresh the field when the session changes it.
    seen_export_dir: PathBuf,
    /// This machine's ONNX Runtime library and provider as being edited.
    ort_library: String,
    execution: Provider,
    /// The saved settings last shown, to refresh the fields when they change.
    seen_machine: Option<MachineSettings>,
}

impl CadenzaEditor {
    fn send(&self, cmd: Command) {
        self.workers.send(cmd);
    }
}

/// A parameter's setter, or nothing while the editor has no context yet.
fn with_setter(gui: &Option<GuiContext>, f: impl FnOnce(&ParamSetter)) {
    if let Some(gui) = gui {
        f(&gui.param_setter());
    }
}

fn set_param<P: Param>(setter: &ParamSetter, param: &P, value: P::Plain) {
    setter.begin_set_parameter(param);
    setter.set_parameter(param, value);
    setter.end_set_parameter(param);
}

/// A labelled slider for a parameter.
fn slider<P: Param>(ui: &mut egui::Ui, label: &str, param: &P, setter: &ParamSetter, width: f32) {
    ui.vertical(|ui| {
        ui.label(RichText::new(label).small().weak());
        ui.add(ParamSlider::for_param(param, setter).with_width(width));
    });
}

/// A labelled checkbox for a bool parameter.
fn toggle(ui: &mut egui::Ui, param: &BoolParam, setter: &ParamSetter, label: &str) {
    let mut value = param.value();
    if ui.checkbox(&mut value, label).changed() {
        set_param(setter, param, value);
    }
}

/// A labelled drop-down for an enum parameter.
fn choose<T: Enum + PartialEq + Copy + 'static>(
    ui: &mut egui::Ui,
    label: &str,
    param: &EnumParam<T>,
    setter: &ParamSetter,
    width: f32,
) -> egui::Response {
    ui.vertical(|ui| {
        ui.label(RichText::new(label).small().weak());
        let current = param.value();
        egui::ComboBox::from_id_salt(label).width(width).selected_text(T::variants()[current.to_index()]).show_ui(
            ui,
            |ui| {
                for (i, name) in T::variants().iter().enumerate() {
                    let v = T::from_index(i);
                    if ui.selectable_label(v == current, *name).clicked() {
                        set_param(setter, param, v);
                    }
                }
            },
        );
    })
    .response
}

impl NiceEguiApp for CadenzaEditor {
    fn build(
        &mut self,
        egui_ctx: egui::Context,
        nice_gui_ctx: GuiContext,
        _frame: &mut nice_plug_egui::Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        let mut style = (*egui_ctx.global_style()).clone();
        style.visuals = egui::Visuals::dark();
        style.spacing.item_spacing = Vec2::new(8.0, 6.0);
        egui_ctx.set_global_style(style);
        self.gui = Some(nice_gui_ctx);
        self.workers.start();
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut nice_plug_egui::Frame) {
        let view = self.shared.view();
        if view.export_dir != self.seen_export_dir {
            self.export_dir = view.export_dir.display().to_string();
            self.seen_export_dir = view.export_dir.clone();
        }
        // Progress and the playhead move without a new snapshot: keep drawing while they do.
        let running = self.shared.progress.running.load(Ordering::Acquire);
        let playing = self.shared.play.state.load(Ordering::Acquire) != PlayState::Idle as u8;
        // New snapshots wake the editor through the repaint notifier; this also keeps the tempo
        // and transport line current while nothing else moves.
        let interval_ms = if running || playing || view.capture_notes > 0 { 33 } else { 250 };
        ui.ctx().request_repaint_after(std::time::Duration::from_millis(interval_ms));

        egui::Panel::top("controls").show(ui, |ui| {
            ui.add_space(4.0);
            self.header(ui, &view);
            ui.separator();
            self.generate_row(ui, running);
            self.steering_row(ui);
            self.primer_row(ui, &view);
            ui.add_space(2.0);
        });
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.add_space(2.0);
            self.keep_row(ui, &view);
            self.preview_row(ui, &view);
            self.engine_row(ui, &view);
            ui.separator();
            status_line(ui, &view);
            ui.add_space(2.0);
        });
        egui::CentralPanel::default().show(ui, |ui| {
            self.variation_row(ui, &view);
            piano_roll(ui, &view, &self.shared, self.params.choice.value().max(1) as usize - 1);
        });
    }
}

impl CadenzaEditor {
    fn header(&mut self, ui: &mut egui::Ui, view: &View) {
        ui.horizontal(|ui| {
            ui.heading(RichText::new("Cadenza").strong().color(GENERATED_COLOUR));
            ui.label(RichText::new("continues what you play").weak());
            ui.add_space(16.0);
            ui.label("Style");
            let selected = view.style.clone().unwrap_or_else(|| "no style found".into());
            egui::ComboBox::from_id_salt("style").width(160.0).selected_text(selected).show_ui(ui, |ui| {
                for s in &view.styles {
                    let label = if s.shipped { s.name.clone() } else { format!("{} (yours)", s.name) };
                    if ui.selectable_label(view.style.as_deref() == Some(s.name.as_str()), label).clicked() {
                        self.send(Command::SetStyle(s.name.clone()));
                    }
                }
            });
            if ui.button("Rescan").on_hover_text("Look for new models in the bundle and your model folder").clicked() {
                self.send(Command::RescanStyles);
            }
            ui.label("leaning away from").on_hover_text(
                "Whose manner the style steers away from, as far as Lean away says: what its finetuning \
                 taught, said more plainly. Style's choice: the style its model names (jazz from pop, \
                 electronic from rock), none for the others.",
            );
            egui::ComboBox::from_id_salt("lean_from").width(110.0).selected_text(view.lean_from.label()).show_ui(
                ui,
                |ui| {
                    let others = view.styles.iter().filter(|s| view.style.as_deref() != Some(s.name.as_str()));
                    let choices = [LeanFrom::Model, LeanFrom::Off]
                        .into_iter()
                        .chain(others.map(|s| LeanFrom::Style(s.name.clone())));
                    for choice in choices {
                        if ui.selectable_label(view.lean_from == choice, choice.label()).clicked() {
                            self.send(Command::SetLeanFrom(choice));
                        }
                    }
                },
            );
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let clock = &self.shared.clock;
                let (num, den) = clock.time_signature();
                let transport =
                    if clock.host_playing.load(Ordering::Acquire) { "host playing" } else { "host stopped" };
                ui.label(
                    RichText::new(format!("{:.1} BPM  {num}/{den}  {transport}", clock.tempo_bpm.load()))
                        .monospace()
                        .weak(),
                );
            });
        });
    }

    fn generate_row(&mut self, ui: &mut egui::Ui, running: bool) {
        let params = self.params.clone();
        let gui = self.gui.clone();
        ui.horizontal(|ui| {
            if running {
                // Cancel over the progress, in the Generate button's width: the row keeps its layout.
                let permille = self.shared.progress.permille.load(Ordering::Acquire);
                ui.vertical(|ui| {
                    if ui.add_sized([110.0, 16.0], egui::Button::new(RichText::new("Cancel").strong())).clicked() {
                        self.send(Command::Cancel);
                    }
                    ui.add(
                        egui::ProgressBar::new(permille as f32 / 1000.0)
                            .desired_width(110.0)
                            .desired_height(14.0)
                            .text(RichText::new(format!("{:.0}%", permille as f32 / 10.0)).small()),
                    );
                });
            } else {
                let button = egui::Button::new(RichText::new("Generate").strong().size(16.0).color(Color32::BLACK))
                    .fill(GENERATED_COLOUR);
                if ui.add_sized([110.0, 34.0], button).clicked() {
                    self.send(Command::Generate);
                }
            }
            with_setter(&gui, |s| {
                slider(ui, "Bars", &params.bars, s, 90.0);
                slider(ui, "Variations", &params.variations, s, 90.0);
                slider(ui, "Temperature", &params.temperature, s, 90.0);
                slider(ui, "Top-p", &params.top_p, s, 90.0);
                slider(ui, "Seed", &params.seed, s, 90.0);
                ui.vertical(|ui| {
                    ui.label(RichText::new(" ").small());
                    if ui.button("New seed").on_hover_text("Pick a random seed").clicked() {
                        let nanos = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).wrapping_mul(2_654_435_761))
                            .unwrap_or(7);
                        set_param(s, &params.seed, (nanos % (crate::params::MAX_SEED as u32 + 1)) as i32);
                    }
                });
            });
        });
    }

    fn steering_row(&mut self, ui: &mut egui::Ui) {
        let params = self.params.clone();
        // Two rows: what notes may sound, then how they are shaped and placed.
        ui.horizontal(|ui| {
            with_setter(&self.gui, |s| {
                slider(ui, "Lowest key", &params.pitch_low, s, 80.0);
                slider(ui, "Highest key", &params.pitch_high, s, 80.0);
                choose(ui, "Key", &params.key, s, 80.0);
                choose(ui, "Scale", &params.scale, s, 120.0);
                slider(ui, "Max polyphony", &params.max_polyphony, s, 80.0);
            });
        });
        ui.horizontal(|ui| {
            with_setter(&self.gui, |s| {
                slider(ui, "Follow primer", &params.follow, s, 80.0);
                slider(ui, "Style voice", &params.own_voice, s, 80.0);
                choose(ui, "Style leads", &params.style_lead, s, 110.0).on_hover_text(
                    "Whether the style plays its own manner over a phrase that is not in its style, keeping \
                     your key, beat and register (about its centre: rock spreads its parts twice as wide, its \
                     bass and power chords under your tune). Style's choice: classical, folk and electronic lead what their \
                     model finds foreign; jazz, pop and rock what Cadenza's style judge names another style. \
                     On: whatever is foreign. Off: follow your phrase as it sounds.",
                );
                slider(ui, "Lean away", &params.lean, s, 70.0);
                slider(ui, "Density", &params.density, s, 80.0);
                slider(ui, "Longest note", &params.max_note, s, 80.0);
                choose(ui, "Quantize grid", &params.quantize_grid, s, 90.0);
                slider(ui, "Quantize", &params.quantize_strength, s, 80.0);
            });
        });
    }

    fn primer_row(&mut self, ui: &mut egui::Ui, view: &View) {
        let params = self.params.clone();
        ui.horizontal(|ui| {
            ui.label(RichText::new("Primer").strong());
            match &view.primer_source {
                PrimerSource::Capture => {
                    ui.label(RichText::new(format!("capture: {} notes", view.capture_notes)).color(LIVE_COLOUR));
                }
                PrimerSource::File { path, notes, bars } => {
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    ui.label(
                        RichText::new(format!("file: {name} ({notes} notes, {bars:.1} bars)")).color(PRIMER_COLOUR),
                    )
                    .on_hover_text(path.display().to_string());
                    if ui.button("Use capture").clicked() {
                        self.send(Command::UseCapture);
                    }
                }
            }
            with_setter(&self.gui, |s| {
                ui.label("keep the last");
                ui.add(ParamSlider::for_param(&params.capture_bars, s).with_width(80.0))
                    .on_hover_text("How many of the last bars the capture keeps as the primer");
                toggle(ui, &params.pass_through, s, "MIDI thru");
                toggle(ui, &params.answer, s, "Answer when I pause");
            });
            if ui.button("Clear capture").clicked() {
                self.send(Command::ClearCapture);
            }
            ui.add(
                egui::TextEdit::singleline(&mut self.primer_path).hint_text("/path/to/primer.mid").desired_width(170.0),
            );
            if ui.button("Load .mid").clicked() && !self.primer_path.trim().is_empty() {
                self.send(Command::LoadPrimer(PathBuf::from(self.primer_path.trim())));
            }
        });
    }

    fn variation_row(&mut self, ui: &mut egui::Ui, view: &View) {
        let params = self.params.clone();
        let count = view.generation.as_ref().map_or(0, |g| g.variations.len());
        ui.horizontal(|ui| {
            ui.label(RichText::new("Variation").strong());
            with_setter(&self.gui, |s| {
                let chosen = params.choice.value();
                for i in 1..=count.max(1) as i32 {
                    let enabled = (i as usize) <= count;
                    let b = ui.add_enabled(enabled, egui::Button::selectable(chosen == i && enabled, format!(" {i} ")));
                    if b.clicked() {
                        set_param(s, &params.choice, i);
                    }
                }
                ui.separator();
                let state = self.shared.play.state.load(Ordering::Acquire);
                let label = match state {
                    s if s == PlayState::Playing as u8 => "Stop",
                    s if s == PlayState::Waiting as u8 => "Stop (starts at the bar line)",
                    s if s == PlayState::Cued as u8 => "Stop (loops when the transport rolls)",
                    _ => "Play",
                };
                if ui.add_enabled(count > 0, egui::Button::new(label)).clicked() {
                    if state == PlayState::Idle as u8 {
                        self.shared.play_requests.bump();
                    } else {
                        self.shared.stop_requests.bump();
                    }
                }
                toggle(ui, &params.looping, s, "Loop");
                toggle(ui, &params.autoplay, s, "Auto-play new results");
            });
            if let Some(g) = &view.generation {
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    let key = match g.settings.steering.key {
                        Some(k) => format!(" · {}", k.name()),
                        None => String::new(),
                    };
                    // The chosen variation plays while the others are made: say when each was ready.
                    let took = if g.first_ms > 0 && g.first_ms < g.elapsed_ms {
                        format!("chosen {:.1} s, all {:.1} s", g.first_ms as f64 / 1000.0, g.elapsed_ms as f64 / 1000.0)
                    } else {
                        format!("{:.1} s", g.elapsed_ms as f64 / 1000.0)
                    };
                    ui.label(
                        RichText::new(format!(
                            "{} · seed {} · temp {:.2} · top-p {:.2}{key} · {took}",
                            g.style,
                            g.settings.sampling.seed,
                            g.settings.sampling.temperature,
                            g.settings.sampling.top_p,
                        ))
                        .weak(),
                    );
                });
            }
        });
    }

    fn keep_row(&mut self, ui: &mut egui::Ui, view: &View) {
        ui.horizontal(|ui| {
            ui.label(RichText::new("Keep").strong());
            let has = view.generation.is_some();
            if ui.add_enabled(has, egui::Button::new("Export variation")).clicked() {
                self.apply_export_dir(view);
                self.send(Command::Export { with_primer: false });
            }
            if ui.add_enabled(has, egui::Button::new("Export with primer")).clicked() {
                self.apply_export_dir(view);
                self.send(Command::Export { with_primer: true });
            }
            ui.label("to");
            ui.add(egui::TextEdit::singleline(&mut self.export_dir).desired_width(240.0));
            if ui.button("Open folder").on_hover_text("Drag the .mid from your file manager into the DAW").clicked() {
                let url = format!("file://{}", view.export_dir.display());
                ui.ctx().open_url(egui::OpenUrl::new_tab(url));
            }
            if let Some(path) = &view.last_export {
                if ui.button("Copy path").clicked() {
                    ui.ctx().copy_text(path.display().to_string());
                }
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                ui.label(RichText::new(name).monospace()).on_hover_text(path.display().to_string());
            }
        });
    }

    fn apply_export_dir(&mut self, view: &View) {
        let typed = PathBuf::from(self.export_dir.trim());
        if !typed.as_os_str().is_empty() && typed != view.export_dir {
            self.send(Command::SetExportDir(typed));
        }
    }

    fn preview_row(&mut self, ui: &mut egui::Ui, view: &View) {
        let params = self.params.clone();
        ui.horizontal(|ui| {
            with_setter(&self.gui, |s| {
                ui.label("Out on");
                ui.add(ParamSlider::for_param(&params.out_channel, s).with_width(60.0))
                    .on_hover_text("MIDI channel of the generated notes; notes passed through keep their own");
                ui.separator();
                toggle(ui, &params.preview_piano, s, "Preview piano");
                ui.add(ParamSlider::for_param(&params.preview_gain_db, s).with_width(90.0));
            });
            ui.add(
                egui::TextEdit::singleline(&mut self.soundfont_path)
                    .hint_text("soundfont (.sf2): found automatically")
                    .desired_width(200.0),
            );
            if ui.button("Use soundfont").clicked() {
                let typed = self.soundfont_path.trim();
                self.send(Command::SetSoundfont((!typed.is_empty()).then(|| PathBuf::from(typed))));
            }
            let (text, colour) = match (&view.soundfont_error, view.soundfont_ready, &view.soundfont) {
                (Some(e), _, _) => (e.clone(), Color32::from_rgb(0xff, 0x8a, 0x80)),
                (None, true, Some(p)) => (
                    format!("ready: {}", p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
                    LIVE_COLOUR,
                ),
                (None, false, Some(_)) if params.preview_piano.value() => ("loading…".into(), Color32::GRAY),
                _ => ("off".into(), Color32::GRAY),
            };
            ui.label(RichText::new(text).color(colour).small());
        });
    }
}

impl CadenzaEditor {
    /// This machine's ONNX Runtime library and execution provider (saved per machine, not in the project).
    fn engine_row(&mut self, ui: &mut egui::Ui, view: &View) {
        if self.seen_machine.as_ref() != Some(&view.machine) {
            self.ort_library = view.machine.ort_library.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
            self.execution = view.machine.execution;
            self.seen_machine = Some(view.machine.clone());
        }
        ui.horizontal(|ui| {
            ui.label("ONNX Runtime")
                .on_hover_text("Saved for this computer, not in the project. A GPU needs onnxruntime-gpu's library");
            ui.add(
                egui::TextEdit::singleline(&mut self.ort_library)
                    .hint_text("libonnxruntime.so of a GPU build: the bundle's (CPU) when empty")
                    .desired_width(330.0),
            );
            ui.label("Execution");
            egui::ComboBox::from_id_salt("execution")
                .width(70.0)
                .selected_text(execution_name(self.execution))
                .show_ui(ui, |ui| {
                    for p in [Provider::Auto, Provider::Cpu, Provider::Cuda] {
                        ui.selectable_value(&mut self.execution, p, execution_name(p));
                    }
                });
            let typed = self.ort_library.trim();
            let edited = MachineSettings {
                ort_library: (!typed.is_empty()).then(|| PathBuf::from(typed)),
                execution: self.execution,
            };
            if ui.add_enabled(edited != view.machine, egui::Button::new("Save")).clicked() {
                self.send(Command::SetMachineSettings(edited));
            }
            if let Some(env) = &view.ort_env {
                ui.label(
                    RichText::new(format!("{ORT_LIBRARY_ENV} overrides it: {}", env.display()))
                        .small()
                        .color(Color32::from_rgb(0xff, 0xcc, 0x66)),
                );
            }
        });
    }
}

/// The status in words, wrapped to as many lines as it needs (a foreign phrase's advice runs
/// long), then what runs the model on one line of its own, cut to the width (all of it on hover).
fn status_line(ui: &mut egui::Ui, view: &View) {
    let colour = match view.status.level {
        Level::Info => Color32::from_rgb(0xd0, 0xd4, 0xdc),
        Level::Success => LIVE_COLOUR,
        Level::Warning => Color32::from_rgb(0xff, 0xcc, 0x66),
        Level::Error => Color32::from_rgb(0xff, 0x6b, 0x6b),
    };
    ui.add(egui::Label::new(RichText::new(&view.status.text).color(colour)).wrap());
    ui.add(egui::Label::new(RichText::new(&view.engine).small().weak()).truncate()).on_hover_text(&view.engine);
}

/// The notes to draw: (start, length, pitch, velocity, colour), beats relative to the continuation's start.
/// A note to draw: start and length in beats, key, velocity, colour.
type RollNote = (f64, f64, u8, u8, Color32);

/// The notes to draw and the beat range and bar length to draw them in.
fn roll_notes(view: &View, chosen: usize) -> (Vec<RollNote>, f64, f64, f64) {
    let mut notes = Vec::new();
    let push = |notes: &mut Vec<_>, n: &ClipNote, offset: f64, colour: Color32| {
        notes.push((n.start_beats + offset, n.length_beats, n.pitch, n.velocity, colour));
    };
    match &view.generation {
        Some(g) => {
            for n in &g.primer.notes {
                push(&mut notes, n, -g.primer_len_beats, PRIMER_COLOUR);
            }
            if let Some(v) = g.variations.get(chosen.min(g.variations.len().saturating_sub(1))) {
                for n in &v.notes {
                    push(&mut notes, n, 0.0, GENERATED_COLOUR);
                }
            }
            (notes, -g.primer_len_beats.max(g.bar_len_beats), g.length_beats, g.bar_len_beats)
        }
        None => {
            for n in &view.live_capture {
                push(&mut notes, n, 0.0, LIVE_COLOUR);
            }
            let first = view.live_capture.iter().map(|n| n.start_beats).fold(-16.0, f64::min);
            (notes, first, 16.0, 4.0)
        }
    }
}

fn piano_roll(ui: &mut egui::Ui, view: &View, shared: &Shared, chosen: usize) {
    let size = ui.available_size();
    let (response, painter) = ui.allocate_painter(size, Sense::hover());
    let full = response.rect;
    painter.rect_filled(full, CornerRadius::same(4), ROLL_BACKGROUND);
    let keys_w = 34.0;
    // Two header rows: bar numbers, then the region labels.
    let header_h = 32.0;
    let area = Rect::from_min_max(Pos2::new(full.min.x + keys_w, full.min.y + header_h), full.max);

    let (notes, from_beats, to_beats, bar_len) = roll_notes(view, chosen);
    let (mut lo, mut hi) = notes.iter().fold((127u8, 0u8), |(lo, hi), n| (lo.min(n.2), hi.max(n.2)));
    if lo > hi {
        (lo, hi) = (55, 79);
    }
    let lo = lo.saturating_sub(3);
    let hi = (hi + 3).min(127).max(lo + 24);
    let span_beats = (to_beats - from_beats).max(1.0);
    let x_of = |beats: f64| area.min.x + ((beats - from_beats) / span_beats) as f32 * area.width();
    let lane_h = area.height() / f32::from(hi - lo + 1);
    let y_of = |pitch: u8| area.max.y - f32::from(pitch - lo + 1) * lane_h;

    // Key lanes, and a keyboard strip: white keys full width, black keys shorter on top.
    let strip = Rect::from_min_max(Pos2::new(full.min.x, area.min.y), Pos2::new(full.min.x + keys_w - 2.0, area.max.y));
    painter.rect_filled(strip, 0, Color32::from_gray(215));
    for pitch in lo..=hi {
        let black = matches!(pitch % 12, 1 | 3 | 6 | 8 | 10);
        let y = y_of(pitch);
        if black {
            let lane = Rect::from_min_size(Pos2::new(area.min.x, y), Vec2::new(area.width(), lane_h));
            painter.rect_filled(lane, 0, BLACK_KEY_LANE);
            let key = Rect::from_min_size(Pos2::new(full.min.x, y), Vec2::new((keys_w - 2.0) * 0.62, lane_h));
            painter.rect_filled(key, 0, Color32::from_gray(35));
        } else if matches!(pitch % 12, 0 | 5) {
            // Where two white keys meet (B-C, E-F).
            let y_line = y + lane_h;
            let edge = [Pos2::new(full.min.x, y_line), Pos2::new(full.min.x + keys_w - 2.0, y_line)];
            painter.line_segment(edge, Stroke::new(1.0, Color32::from_gray(120)));
        }
        if pitch % 12 == 0 && lane_h >= 7.0 {
            painter.text(
                Pos2::new(full.min.x + 2.0, y + lane_h / 2.0),
                Align2::LEFT_CENTER,
                note_name(pitch),
                FontId::proportional(lane_h.clamp(8.0, 11.0)),
                Color32::from_gray(30),
            );
        }
    }

    // Beat and bar lines from the host's metre, numbered from the continuation's start.
    let mut beat = (from_beats).floor();
    while beat <= to_beats {
        let x = x_of(beat);
        let is_bar = ((beat / bar_len).round() * bar_len - beat).abs() < 1e-6;
        let colour = if is_bar { BAR_LINE } else { BEAT_LINE };
        painter.line_segment([Pos2::new(x, area.min.y), Pos2::new(x, area.max.y)], Stroke::new(1.0, colour));
        if is_bar {
            let bar = (beat / bar_len).round() as i64;
            let label = if bar >= 0 { format!("{}", bar + 1) } else { format!("{bar}") };
            painter.text(
                Pos2::new(x + 3.0, full.min.y + 2.0),
                Align2::LEFT_TOP,
                label,
                FontId::monospace(11.0),
                Color32::GRAY,
            );
        }
        beat += 1.0;
    }
    // The seam between primer and continuation.
    let zero = x_of(0.0);
    painter.line_segment(
        [Pos2::new(zero, full.min.y), Pos2::new(zero, area.max.y)],
        Stroke::new(2.0, Color32::from_gray(160)),
    );
    let (left_label, right_label) = match &view.generation {
        Some(_) => ("primer", format!("variation {}", chosen + 1)),
        None => ("captured (live)", "press Generate".to_string()),
    };
    painter.text(
        Pos2::new(zero - 6.0, full.min.y + 16.0),
        Align2::RIGHT_TOP,
        left_label,
        FontId::proportional(12.0),
        PRIMER_COLOUR,
    );
    painter.text(
        Pos2::new(zero + 6.0, full.min.y + 16.0),
        Align2::LEFT_TOP,
        right_label,
        FontId::proportional(12.0),
        GENERATED_COLOUR,
    );

    for &(start, length, pitch, velocity, colour) in &notes {
        if pitch < lo || pitch > hi {
            continue;
        }
        let x0 = x_of(start.max(from_beats));
        let x1 = x_of((start + length).min(to_beats)).max(x0 + 2.0);
        let y = y_of(pitch);
        let rect = Rect::from_min_max(Pos2::new(x0, y + 0.5), Pos2::new(x1, y + lane_h - 0.5));
        let strength = 0.45 + 0.55 * f32::from(velocity) / 127.0;
        let fill = Color32::from_rgb(
            (f32::from(colour.r()) * strength) as u8,
            (f32::from(colour.g()) * strength) as u8,
            (f32::from(colour.b()) * strength) as u8,
        );
        painter.rect(rect, CornerRadius::same(2), fill, Stroke::new(1.0, colour), StrokeKind::Inside);
    }

    if view.generation.is_some() && shared.play.state.load(Ordering::Acquire) == PlayState::Playing as u8 {
        let pos = shared.play.position_beats.load();
        if (0.0..=to_beats).contains(&pos) {
            let x = x_of(pos);
            painter.line_segment([Pos2::new(x, full.min.y), Pos2::new(x, area.max.y)], Stroke::new(2.0, PLAYHEAD));
        }
    }
    if notes.is_empty() {
        painter.text(
            area.center(),
            Align2::CENTER_CENTER,
            "Play a phrase on this track (or load a .mid), then press Generate",
            FontId::proportional(16.0),
            Color32::from_gray(150),
        );
    }
}
