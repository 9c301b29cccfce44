//! What a project saves: the session (primer, variations, style, folders) as a
//! versioned JSON object beside the parameters (chosen variation, seed and the
//! other settings are parameters and persist on their own).
//!
//! The host saves and loads on its main thread; the session thread owns the
//! live copy. [`SessionSlot`] sits between them: the session thread stores a
//! copy after each change, and a load bumps a counter the session thread
//! watches, so a restored project reaches the player without the host waiting.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use cadenza_core::sampling::Key;
use cadenza_core::Clip;
use nice_plug::params::persist::PersistentField;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The state format this build writes. A load of a higher version is refused
/// with a message (nothing is overwritten); lower versions are migrated.
pub const STATE_VERSION: u32 = 1;

/// A primer loaded from a MIDI file, kept in the project so it survives a move of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadedPrimer {
    pub path: PathBuf,
    /// The file's notes in beats at the tempo it was loaded at.
    pub clip: Clip,
}

/// The settings one generation ran with (shown in the editor and kept for the record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationSettings {
    pub bars: u32,
    pub variations: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    pub pitch_low: u8,
    pub pitch_high: u8,
    /// Key and scale, if steered.
    pub key: Option<Key>,
    /// 0: no limit.
    pub max_polyphony: u32,
    pub density: f32,
    /// Longest note in seconds, 0 for free (projects saved before this setting get the default).
    #[serde(default = "default_max_note_s")]
    pub max_note_s: f64,
}

fn default_max_note_s() -> f64 {
    cadenza_core::sampling::DEFAULT_MAX_NOTE_S
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
    pub settings: GenerationSettings,
    /// Wall time from the press to the result, in milliseconds.
    pub elapsed_ms: u64,
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
        // Version 1 is the first format; older versions would be migrated here.
        let mut state: SessionState =
            serde_json::from_value(value.clone()).map_err(|e| StateError::Malformed(e.to_string()))?;
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
                settings: GenerationSettings {
                    bars: 1,
                    variations: 2,
                    temperature: 1.0,
                    top_p: 0.9,
                    seed: 7,
                    pitch_low: 21,
                    pitch_high: 108,
                    key: Some(Key { tonic: 2, mode: ScaleMode::Dorian }),
                    max_polyphony: 0,
                    density: 0.0,
                    max_note_s: 2.5,
                },
                elapsed_ms: 1200,
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
