//! What the plugin's host tests share: the built plugin, bundles laid out as
//! `cargo xtask bundle` lays them out (in a temporary folder), reading
//! Cadenza's saved state, and checking that a host played a variation from a
//! bar line. The workspace-wide helpers (paths, ONNX Runtime, Python, a real
//! model) are re-exported from the crate root, so a test names one module.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use crate::{ort_library, python, repo_root, target_profile_dir, test_model};

/// The plugin shared object cargo built for these tests (debug: with assert_process_allocs).
pub fn plugin_so() -> PathBuf {
    let so = target_profile_dir().join("libcadenza_plugin.so");
    assert!(so.is_file(), "{} is missing; build with `cargo test -p cadenza-plugin`", so.display());
    so
}

/// A CLAP bundle in `dir`: `Cadenza.clap` and `Cadenza.clap.resources/{lib,models}`, as `cargo xtask bundle` makes it.
pub fn clap_bundle(dir: &Path, models: &[(&str, &[u8])], with_ort: bool) -> PathBuf {
    let clap = dir.join("Cadenza.clap");
    std::fs::copy(plugin_so(), &clap).expect("copy plugin");
    let res = dir.join("Cadenza.clap.resources");
    std::fs::create_dir_all(res.join("lib")).expect("lib dir");
    std::fs::create_dir_all(res.join("models")).expect("models dir");
    if with_ort {
        std::os::unix::fs::symlink(ort_library(), res.join("lib").join("libonnxruntime.so.1.31.1")).expect("link ort");
    }
    for (name, bytes) in models {
        std::fs::write(res.join("models").join(format!("{name}.onnx")), bytes).expect("model");
    }
    clap
}

/// Keep the user's own model folder out of the tests: point XDG_DATA_HOME at an empty folder
/// (once, before any plugin is loaded; the plugin reads it when it scans styles and for this
/// machine's settings). Returns that folder.
pub fn isolate_user_data() -> PathBuf {
    static ONCE: OnceLock<PathBuf> = OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cadenza-host-tests-xdg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("xdg dir");
        // Set once, before any plugin is loaded into this process.
        std::env::set_var("XDG_DATA_HOME", &dir);
        dir
    })
    .clone()
}

/// The session JSON inside a saved CLAP state (nice-plug: 8-byte length, then JSON whose
/// `fields.session` holds the session as a JSON string).
pub fn session_of_state(state: &[u8]) -> serde_json::Value {
    assert!(state.len() > 8, "state too short");
    let len = u64::from_le_bytes(state[..8].try_into().expect("8 bytes")) as usize;
    let json: serde_json::Value = serde_json::from_slice(&state[8..8 + len]).expect("state JSON");
    let field = json["fields"]["session"].as_str().expect("fields.session string");
    serde_json::from_str(field).expect("session JSON")
}

/// A saved CLAP state as a host would have saved it after `edit` changed its JSON (`params`,
/// `fields.session` as a string); the inverse of [`session_of_state`] for the session.
pub fn edit_state(state: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let len = u64::from_le_bytes(state[..8].try_into().expect("8 bytes")) as usize;
    let mut json: serde_json::Value = serde_json::from_slice(&state[8..8 + len]).expect("state JSON");
    edit(&mut json);
    let bytes = serde_json::to_vec(&json).expect("serialize");
    let mut out = (bytes.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&bytes);
    out
}

/// Notes of the bundled twinkle primer as (start beats, length beats, key, velocity) at `tempo_bpm`.
pub fn twinkle(tempo_bpm: f64) -> Vec<(f64, f64, u8, u8)> {
    let perf = cadenza_core::midi::read_file(&repo_root().join("models/primers/twinkle.mid"), &Default::default())
        .expect("twinkle.mid");
    let beats_per_s = tempo_bpm / 60.0;
    perf.notes
        .iter()
        .map(|n| (n.start_s * beats_per_s, (n.end_s - n.start_s) * beats_per_s, n.pitch, n.velocity))
        .collect()
}

/// The session JSON inside a saved VST3 state (nice-plug writes the JSON alone there).
pub fn session_of_vst3_state(state: &[u8]) -> serde_json::Value {
    let json: serde_json::Value = serde_json::from_slice(state).expect("state JSON");
    let field = json["fields"]["session"].as_str().expect("fields.session string");
    serde_json::from_str(field).expect("session JSON")
}

/// A VST3 bundle in `dir`, as `cargo xtask bundle` lays it out: the plugin copied (hosts
/// that cache scans compare its modification time), ONNX Runtime and `models`. Returns the
/// bundle folder.
pub fn vst3_bundle(dir: &Path, models: &[(&str, &[u8])]) -> PathBuf {
    let bundle = dir.join("Cadenza.vst3");
    let contents = bundle.join("Contents");
    std::fs::create_dir_all(contents.join("x86_64-linux")).expect("arch dir");
    std::fs::create_dir_all(contents.join("Resources/lib")).expect("resources");
    std::fs::create_dir_all(contents.join("Resources/models")).expect("models");
    std::fs::copy(plugin_so(), contents.join("x86_64-linux/Cadenza.so")).expect("plugin");
    std::os::unix::fs::symlink(ort_library(), contents.join("Resources/lib/libonnxruntime.so.1.31.1")).expect("ort");
    for (name, bytes) in models {
        std::fs::write(contents.join("Resources/models").join(format!("{name}.onnx")), bytes).expect("model");
    }
    bundle
}

/// The notes of variation `choice` (1-based, as the Variation parameter counts) of the
/// generation in a session JSON, as (start beats, key), in order.
pub fn variation_notes(session: &serde_json::Value, choice: usize) -> Vec<(f64, u8)> {
    let notes = session["generation"]["variations"][choice - 1]["notes"].as_array().expect("variation notes");
    let mut notes: Vec<(f64, u8)> = notes
        .iter()
        .map(|n| {
            let start = n["start_beats"].as_f64().expect("start_beats");
            (start, n["pitch"].as_u64().and_then(|p| u8::try_from(p).ok()).expect("pitch"))
        })
        .collect();
    notes.sort_by(|a, b| a.0.total_cmp(&b.0));
    notes
}

/// A MIDI event a host received from Cadenza: (session sample, status, data 1, data 2).
pub type HostMidi = (u64, u8, u8, u8);

/// Note-ons (status 0x9n, velocity > 0) among a host's recorded MIDI, as (session sample, key).
pub fn note_ons(events: &[HostMidi]) -> Vec<(u64, u8)> {
    events.iter().filter(|e| e.1 & 0xf0 == 0x90 && e.3 > 0).map(|e| (e.0, e.2)).collect()
}

/// Where a host played a variation: the bar line (in beats) that its notes line up with.
/// Every note of `variation` must have sounded within `tolerance_samples` of its place after
/// that bar line at `samples_per_beat`, and nothing else in the `length_beats` that follow.
/// `ons` are the host's note-ons in order, the variation's first note first. Returns the bar
/// line and the farthest a note sounded from its place, in samples.
pub fn played_from_bar(
    ons: &[(u64, u8)],
    variation: &[(f64, u8)],
    samples_per_beat: f64,
    bar_len_beats: f64,
    length_beats: f64,
    tolerance_samples: f64,
) -> (f64, f64) {
    let first = ons.first().expect("the variation was heard");
    let anchor_beats = first.0 as f64 / samples_per_beat - variation.first().expect("a variation with notes").0;
    let bar = (anchor_beats / bar_len_beats).round() * bar_len_beats;
    assert!(
        ((anchor_beats - bar) * samples_per_beat).abs() <= tolerance_samples,
        "the variation starts {:.1} samples off the bar line at beat {bar}",
        (anchor_beats - bar) * samples_per_beat
    );
    let start = bar * samples_per_beat - tolerance_samples;
    // The window ends halfway between the variation's last note and the first note of
    // what follows it (the loop again), so a note in the last block of the bars counts.
    let last_beats = variation.iter().map(|n| n.0).fold(f64::MIN, f64::max);
    let next_first_beats = length_beats + variation.first().map_or(0.0, |n| n.0);
    let end = (bar + (last_beats + next_first_beats) / 2.0) * samples_per_beat;
    let heard: Vec<(u64, u8)> = ons.iter().copied().filter(|n| (start..end).contains(&(n.0 as f64))).collect();
    let mut unused = heard.clone();
    let mut farthest: f64 = 0.0;
    for &(beats, key) in variation {
        let expected = (bar + beats) * samples_per_beat;
        let nearest = unused
            .iter()
            .enumerate()
            .filter(|(_, n)| n.1 == key)
            .min_by(|a, b| (a.1 .0 as f64 - expected).abs().total_cmp(&(b.1 .0 as f64 - expected).abs()));
        match nearest {
            Some((i, n)) if (n.0 as f64 - expected).abs() <= tolerance_samples => {
                farthest = farthest.max((n.0 as f64 - expected).abs());
                unused.swap_remove(i);
            }
            _ => panic!(
                "key {key} at beat {beats} of the variation (sample {expected:.0}) was not heard; heard {heard:?}"
            ),
        }
    }
    assert!(unused.is_empty(), "notes outside the variation within its {length_beats} beats: {unused:?}");
    (bar, farthest)
}

/// The bar line a variation started on is the first that it could make: not before the
/// press, and the one before it came too soon for a generation that took `elapsed_ms` (the
/// session thread's own measure, from the press it noticed to variations ready; 250 ms
/// more for the ticks and blocks on either side).
pub fn assert_next_bar_line(bar: f64, press_beats: f64, elapsed_ms: u64, tempo_bpm: f64, bar_len_beats: f64) {
    let ready_beats = press_beats + (elapsed_ms as f64 + 250.0) / 1000.0 * tempo_bpm / 60.0;
    assert!(bar >= press_beats, "the variation started at beat {bar}, before Generate was pressed at {press_beats}");
    assert!(
        bar - bar_len_beats < ready_beats,
        "the variation started at beat {bar}, a bar later than it could: pressed at beat {press_beats}, \
         ready {elapsed_ms} ms later (beat {ready_beats:.2} at the latest)"
    );
}

/// The musician of the DAW tests (Ardour, minihost): plays the primer's first two bars,
/// presses Generate a beat into the third with MIDI thru off, asks for two variations of two
/// bars and picks the second, so that a restored choice differs from the default.
pub mod musician {
    pub const BAR_BEATS: f64 = 4.0;
    pub const PHRASE_BEATS: f64 = 8.0;
    pub const PRESS_BEAT: f64 = 9.0;
    pub const BARS: u32 = 2;
    pub const VARIATIONS: u32 = 2;
    pub const CHOICE: u32 = 2;
    pub const SEED: u32 = 7;

    /// The phrase at `tempo_bpm` in session samples: [note-on, note-off, key, velocity].
    pub fn phrase_samples(tempo_bpm: f64, sample_rate: u32) -> Vec<[u64; 4]> {
        let samples_per_beat = f64::from(sample_rate) * 60.0 / tempo_bpm;
        let at = |beats: f64| (beats * samples_per_beat).round() as u64;
        super::twinkle(tempo_bpm)
            .into_iter()
            .filter(|n| n.0 < PHRASE_BEATS)
            .map(|(start, len, key, vel)| [at(start), at(start + len), u64::from(key), u64::from(vel)])
            .collect()
    }
}
