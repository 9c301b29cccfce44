//! What a project saves: the session (primer, variations, style, folders) as a
//! versioned JSON object beside the parameters (chosen variation, seed and the
//! other settings are parameters and persist on their own). A generation keeps
//! the settings it ran with as core's [`GenerationSettings`], the same type
//! the engine was given.
//!
//! The host saves and loads on its main thread; the session thread owns the
//! live copy. [`SessionSlot`] sits between them: the session thread stores a
//! copy after each change, and a load bumps a counter the session thread
//! watches, so a restored project reaches the player without the host waiting.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use cadenza_core::request::{GenerationSettings, Length};
use cadenza_core::sampling::{Key, Sampling, Steering};
use cadenza_core::Clip;
use nice_plug::params::persist::PersistentField;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The state format this build writes. A load of a higher version is refused
/// with a message (nothing is overwritten); lower versions are migrated.
/// 2: a generation's settings are core's [`GenerationSettings`] and its bars.
pub const STATE_VERSION: u32 = 2;

/// A primer loaded from a MIDI file, kept in the project so it survives a move of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadedPrimer {
    pub path: PathBuf,
    /// The file's notes in beats at the tempo it was loaded at.
    pub clip: Clip,
}

/// Nats of note-on bias per unit of format 1's saved density, as the plugin
/// then ran it. Fixed with the format: a later change of the knob's scale
/// (`params::DENSITY_NATS`) must not change what an old session plays.
const V1_DENSITY_NATS: f32 = 4.0;

/// A generation's settings as format 1 saved them (density in the
/// parameter's -1..=1), read only to migrate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct SettingsV1 {
    bars: u32,
    variations: u32,
    temperature: f32,
    top_p: f32,
    seed: u64,
    pitch_low: u8,
    pitch_high: u8,
    key: Option<Key>,
    max_polyphony: u32,
    density: f32,
    #[serde(default = "default_max_note_s")]
    max_note_s: f64,
}

fn default_max_note_s() -> f64 {
    cadenza_core::sampling::DEFAULT_MAX_NOTE_S
}

impl SettingsV1 {
    /// The same settings in core's terms, `seconds` long, as the plugin then ran them.
    fn migrate(&self, seconds: f64) -> GenerationSettings {
        GenerationSettings {
            length: Length::Seconds(seconds),
            variations: self.variations as usize,
            sampling: Sampling { temperature: self.temperature, top_k: 0, top_p: self.top_p, seed: self.seed },
            steering: Steering {
                lowest_pitch: self.pitch_low.min(self.pitch_high),
                highest_pitch: self.pitch_low.max(self.pitch_high),
                key: self.key,
                max_polyphony: (self.max_polyphony > 0).then(|| self.max_polyphony.min(u32::from(u8::MAX)) as u8),
                density_bias: self.density * V1_DENSITY_NATS,
                allow_end: false,
                max_note_s: self.max_note_s,
                // Format 1 had no following, and no second voice.
                follow: 0.0,
                own_voice: 0.0,
                style_lead: cadenza_core::sampling::StyleLead::Off,
                contrast: 0.0,
            },
        }
    }
}

/// Rewrite a format-1 session as format 2, in place.
fn migrate_v1(value: &mut serde_json::Value) -> Result<(), StateError> {
    let Some(g) = value.get_mut("generation").filter(|g| !g.is_null()) else { return Ok(()) };
    let old: SettingsV1 = serde_json::from_value(g.get("settings").cloned().unwrap_or_default())
        .map_err(|e| StateError::Malformed(format!("generation settings: {e}")))?;
    let number = |key: &str| g.get(key).and_then(|v| v.as_f64()).unwrap_or(0.0);
    let seconds = f64::from(old.bars) * number("bar_len_beats") * 60.0 / number("tempo_bpm").max(1e-9);
    g["settings"] = serde_json::to_value(old.migrate(seconds)).map_err(|e| StateError::Malformed(e.to_string()))?;
    g["bars"] = old.bars.into();
    Ok(())
}

/// Leaves `first_ms` out of projects that have none, so they save again as they were.
fn is_zero(ms: &u64) -> bool {
    *ms == 0
}

/// A finished generation: the primer it continued and its variations, all in beats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The primer as the model heard it, starting at beat 0 on a bar line.
    pub primer: Clip,
    /// Where the continuation starts relative to the primer: its end rounded up to a bar line.
    pub primer_len_beats: f64,
    /// The continuations, each starting at its own beat 0 and `bars` bars long.
    pub variations: Vec<Clip>,
    /// Host tempo the seconds<->beats conversion used.
    pub tempo_bpm: f64,
    /// Bar length in quarter-note beats at generation time.
    pub bar_len_beats: f64,
    /// Time signature numerator and denominator at generation time.
    pub time_signature: (u8, u8),
    /// Style (model file stem) that generated it.
    pub style: String,
    /// Length of each variation, in bars of `bar_len_beats`.
    pub bars: u32,
    /// What the engine was asked (in seconds, at `tempo_bpm`).
    pub settings: GenerationSettings,
    /// Wall time from the press to the result, in milliseconds.
    pub elapsed_ms: u64,
    /// Wall time from the press to the chosen variation, which plays while the others are made;
    /// equal to `elapsed_ms` for one variation, 0 in projects saved before it was kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first_ms: u64,
}

/// Which style's model a style leans away from ([`cadenza_core::sampling::Steering::contrast`],
/// as far as the "Lean away" parameter says).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeanFrom {
    /// The one the style's model names, if any (jazz from pop, electronic from rock).
    #[default]
    Model,
    /// None: the style plays as it was trained.
    Off,
    /// This style's model (its file stem), whatever the model names.
    Style(String),
}

impl LeanFrom {
    pub fn is_model(&self) -> bool {
        *self == LeanFrom::Model
    }

    /// How the editor names the choice.
    pub fn label(&self) -> String {
        match self {
            LeanFrom::Model => "Style's choice".into(),
            LeanFrom::Off => "None".into(),
            LeanFrom::Style(s) => s.clone(),
        }
    }
}

/// Everything the session keeps beyond parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionState {
    pub version: u32,
    /// Chosen style (model file stem); `None` picks the first one found.
    pub style: Option<String>,
    /// A primer loaded from a file; while set, Generate continues it instead of the capture.
    pub primer_file: Option<LoadedPrimer>,
    pub generation: Option<Generation>,
    /// Folder exports go to; `None` uses the default (see `crate::keep`).
    pub export_dir: Option<PathBuf>,
    /// The last file exported, shown in the editor.
    pub last_export: Option<PathBuf>,
    /// Soundfont the preview piano uses; `None` searches the system.
    pub soundfont: Option<PathBuf>,
    /// Which style the chosen style leans away from; left out while it is the model's choice, so a
    /// project that keeps the default opens in builds from before the choice.
    #[serde(skip_serializing_if = "LeanFrom::is_model")]
    pub lean_from: LeanFrom,
}

impl Default for SessionState {
    fn default() -> Self {
        Self {
            version: STATE_VERSION,
            style: None,
            primer_file: None,
            generation: None,
            export_dir: None,
            last_export: None,
            soundfont: None,
            lean_from: LeanFrom::Model,
        }
    }
}

/// Why a saved session could not be restored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    #[error("the project was saved by a newer Cadenza (session format {0}, this one reads up to {STATE_VERSION})")]
    TooNew(u32),
    #[error("the saved session has no format version")]
    NoVersion,
    #[error("the saved session is damaged: {0}")]
    Malformed(String),
}

impl SessionState {
    /// Parse a saved session, checking its version first.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, StateError> {
        let version = value.get("version").and_then(|v| v.as_u64()).ok_or(StateError::NoVersion)?;
        let version = u32::try_from(version).unwrap_or(u32::MAX);
        if version > STATE_VERSION {
            return Err(StateError::TooNew(version));
        }
        let mut value = value.clone();
        if version < 2 {
            migrate_v1(&mut value)?;
        }
        let mut state: SessionState =
            serde_json::from_value(value).map_err(|e| StateError::Malformed(e.to_string()))?;
        state.version = STATE_VERSION;
        if let Some(g) = &state.generation {
            let finite = g.tempo_bpm.is_finite() && g.tempo_bpm > 0.0 && g.bar_len_beats > 0.0;
            let notes_ok = g.variations.iter().chain(std::iter::once(&g.primer)).all(|c| {
                c.notes.iter().all(|n| n.pitch < 128 && n.start_beats.is_finite() && n.length_beats.is_finite())
            });
            if !finite || !notes_ok {
                return Err(StateError::Malformed("a clip holds out-of-range notes".into()));
            }
        }
        Ok(state)
    }
}

/// The persisted field: the session as the host will save it, plus a counter
/// that tells the session thread a project was loaded.
#[derive(Debug, Default)]
pub struct SessionSlot {
    state: Mutex<SessionState>,
    /// Bumped on every load by the host.
    restores: AtomicU64,
    /// Why the last load was refused, if it was.
    restore_error: Mutex<Option<StateError>>,
}

impl SessionSlot {
    /// How many loads happened so far.
    pub fn restores(&self) -> u64 {
        self.restores.load(Ordering::Acquire)
    }

    /// The current state and the load counter it belongs to.
    pub fn snapshot(&self) -> (SessionState, u64) {
        let state = self.state.lock();
        (state.clone(), self.restores())
    }

    /// Store the session thread's copy, unless a load happened after `seen_restores`
    /// (the loaded project wins; the session thread picks it up next).
    pub fn store(&self, seen_restores: u64, new_state: &SessionState) -> bool {
        let mut state = self.state.lock();
        if self.restores() != seen_restores {
            return false;
        }
        *state = new_state.clone();
        true
    }

    /// Take the reason the last load was refused.
    pub fn take_restore_error(&self) -> Option<StateError> {
        self.restore_error.lock().take()
    }

    fn load(&self, value: &serde_json::Value) {
        match SessionState::from_json(value) {
            Ok(parsed) => {
                let mut state = self.state.lock();
                *state = parsed;
                self.restores.fetch_add(1, Ordering::AcqRel);
            }
            Err(e) => {
                *self.restore_error.lock() = Some(e);
                self.restores.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

impl<'a> PersistentField<'a, serde_json::Value> for SessionSlot {
    fn set(&self, new_value: serde_json::Value) {
        self.load(&new_value);
    }

    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&serde_json::Value) -> R,
    {
        let value = serde_json::to_value(&*self.state.lock()).unwrap_or(serde_json::Value::Null);
        f(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadenza_core::sampling::ScaleMode;
    use cadenza_core::ClipNote;

    fn sample_state() -> SessionState {
        let clip = Clip {
            notes: vec![ClipNote { pitch: 60, velocity: 90, start_beats: 0.0, length_beats: 1.0 }],
            length_beats: 4.0,
        };
        SessionState {
            style: Some("jazz".into()),
            generation: Some(Generation {
                primer: clip.clone(),
                primer_len_beats: 4.0,
                variations: vec![clip.clone(), clip],
                tempo_bpm: 96.0,
                bar_len_beats: 4.0,
                time_signature: (4, 4),
                style: "jazz".into(),
                bars: 1,
                settings: GenerationSettings {
                    length: Length::Seconds(2.5),
                    variations: 2,
                    sampling: Sampling { temperature: 1.0, top_k: 0, top_p: 0.9, seed: 7 },
                    steering: Steering {
                        key: Some(Key { tonic: 2, mode: ScaleMode::Dorian }),
                        allow_end: false,
                        max_note_s: 2.5,
                        ..Steering::default()
                    },
                },
                elapsed_ms: 1200,
                first_ms: 300,
            }),
            ..SessionState::default()
        }
    }

    #[test]
    fn session_round_trips_through_json() {
        let state = sample_state();
        let value = serde_json::to_value(&state).expect("serialize");
        assert_eq!(SessionState::from_json(&value).expect("parse"), state);
    }

    /// The choice of whom to lean away from is kept; the default is left out of the saved
    /// session, so such a project opens in builds from before the choice.
    #[test]
    fn the_lean_from_choice_round_trips_and_its_default_is_not_written() {
        let value = serde_json::to_value(sample_state()).expect("serialize");
        assert!(value.get("lean_from").is_none(), "{value}");
        for lean_from in [LeanFrom::Off, LeanFrom::Style("rock".into())] {
            let state = SessionState { lean_from: lean_from.clone(), ..sample_state() };
            let value = serde_json::to_value(&state).expect("serialize");
            assert_eq!(SessionState::from_json(&value).expect("parse").lean_from, lean_from, "{value}");
        }
        let written = serde_json::to_value(LeanFrom::Style("rock".into())).expect("serialize");
        assert_eq!(written, serde_json::json!({"style": "rock"}));
    }

    #[test]
    fn newer_or_unversioned_or_damaged_sessions_are_refused() {
        let mut value = serde_json::to_value(sample_state()).expect("serialize");
        value["version"] = serde_json::json!(STATE_VERSION + 1);
        assert_eq!(SessionState::from_json(&value), Err(StateError::TooNew(STATE_VERSION + 1)));
        value.as_object_mut().expect("object").remove("version");
        assert_eq!(SessionState::from_json(&value), Err(StateError::NoVersion));
        let damaged = serde_json::json!({"version": 1, "generation": {"primer": 3}});
        assert!(matches!(SessionState::from_json(&damaged), Err(StateError::Malformed(_))));
    }

    /// A project saved by format 1 loads with the settings it generated with.
    #[test]
    fn format_1_sessions_are_migrated() {
        let mut value = serde_json::to_value(sample_state()).expect("serialize");
        value["version"] = 1.into();
        let g = &mut value["generation"];
        g.as_object_mut().expect("object").remove("bars");
        g["settings"] = serde_json::json!({
            "bars": 1, "variations": 2, "temperature": 1.0, "top_p": 0.9, "seed": 7,
            "pitch_low": 108, "pitch_high": 21, "key": {"tonic": 2, "mode": "dorian"},
            "max_polyphony": 3, "density": 0.5
        });
        let state = SessionState::from_json(&value).expect("migrated");
        assert_eq!(state.version, STATE_VERSION);
        let g = state.generation.expect("generation");
        assert_eq!(g.bars, 1);
        let s = g.settings;
        assert_eq!(s.length, Length::Seconds(2.5), "one bar of 4 beats at 96 BPM");
        assert_eq!((s.variations, s.sampling.seed, s.sampling.top_p), (2, 7, 0.9));
        assert_eq!((s.steering.lowest_pitch, s.steering.highest_pitch), (21, 108));
        assert_eq!(s.steering.max_polyphony, Some(3));
        assert_eq!(s.steering.density_bias, 2.0, "density 0.5 at format 1's 4 nats");
        assert_eq!(s.steering.max_note_s, cadenza_core::sampling::DEFAULT_MAX_NOTE_S);
        assert_eq!((s.steering.follow, s.steering.allow_end), (0.0, false));
        let bad = serde_json::json!({"version": 1, "generation": {"settings": {"bars": "x"}}});
        assert!(matches!(SessionState::from_json(&bad), Err(StateError::Malformed(_))));
    }

    #[test]
    fn a_load_wins_over_a_stale_store() {
        let slot = SessionSlot::default();
        let (_, seen) = slot.snapshot();
        slot.set(serde_json::to_value(sample_state()).expect("serialize"));
        assert!(!slot.store(seen, &SessionState::default()), "a store from before the load must not clobber it");
        let (state, now) = slot.snapshot();
        assert_eq!(state, sample_state());
        assert!(slot.store(now, &SessionState::default()));
    }
}
