//! Cadenza in minihost (issue 11), a headless JUCE VST3 host from PyPI that
//! `cargo xtask setup` installs in the project's Python environment. The
//! script beside this file plays the host (`minihost_host.py`): the phrase in,
//! the transport moving block by block, Generate pressed by a parameter change;
//! this test checks what came out at two tempos.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support;
use crate::support::musician::{BARS, BAR_BEATS, CHOICE, PRESS_BEAT, SEED, VARIATIONS};

const SAMPLE_RATE: u32 = 48_000;
const BLOCK: u32 = 512;

/// minihost importable by `python`, or why not: Err(message) to skip with, or a panic when
/// `cargo xtask setup` installed it into this environment and it still does not load.
fn minihost_available(python: &Path) -> Result<(), String> {
    let out = Command::new(python).args(["-c", "import minihost"]).output().expect("run python");
    if out.status.success() {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr).trim().lines().last().unwrap_or_default().to_string();
    // setup's record of what it installed, beside the virtual environment's bin/.
    let installed = python
        .parent()
        .and_then(Path::parent)
        .and_then(|venv| std::fs::read_to_string(venv.join("cadenza-requirements.txt")).ok())
        .is_some_and(|r| r.lines().any(|l| l.starts_with("minihost==")));
    assert!(!installed, "`cargo xtask setup` installed minihost, yet {} cannot import it: {why}", python.display());
    Err(format!("minihost is not installed in {} ({why}); `cargo xtask setup` installs it", python.display()))
}

/// One run of the host at `tempo_bpm`: (events as (session sample, status, data 1, data 2),
/// sample of the block that pressed Generate, saved component state).
fn run_minihost(python: &Path, dir: &Path, bundle: &Path, tempo_bpm: f64) -> (Vec<support::HostMidi>, u64, Vec<u8>) {
    let samples_per_beat = f64::from(SAMPLE_RATE) * 60.0 / tempo_bpm;
    let job = serde_json::json!({
        "bundle": bundle,
        "sample_rate": SAMPLE_RATE,
        "block": BLOCK,
        "tempo_bpm": tempo_bpm,
        "phrase": support::musician::phrase_samples(tempo_bpm, SAMPLE_RATE),
        "settings": {
            "Bars": BARS.to_string(), "Variations": VARIATIONS.to_string(), "Variation": CHOICE.to_string(),
            "Seed": SEED.to_string(),
            "MIDI thru": "Off", "Loop": "Off", "Auto-play": "On",
        },
        "press_sample": (PRESS_BEAT * samples_per_beat).round() as u64,
        // The variation, and a bar of silence after it.
        "beats_after_first_note": f64::from(BARS) * BAR_BEATS + BAR_BEATS,
        "timeout_s": 60,
    });
    let job_path = dir.join(format!("job-{tempo_bpm}.json"));
    let out_path = dir.join(format!("out-{tempo_bpm}.json"));
    std::fs::write(&job_path, job.to_string()).expect("job");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hosts/minihost_host.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(&job_path)
        .arg(&out_path)
        .env("XDG_DATA_HOME", dir.join("data"))
        .output()
        .expect("run the minihost script");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{}", log.trim());
    assert!(out.status.success(), "the minihost script failed ({}):\n{log}", out.status);
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path).expect("result")).expect("result JSON");
    assert_eq!(result["dropped"], 0, "minihost dropped none of Cadenza's MIDI");
    let events = result["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            let f = |i: usize| e[i].as_u64().expect("number");
            (f(0), f(1) as u8, f(2) as u8, f(3) as u8)
        })
        .collect();
    let pressed_at = result["pressed_at"].as_u64().expect("pressed_at");
    (events, pressed_at, result["state"].as_str().expect("state").as_bytes().to_vec())
}

#[test]
fn minihost_plays_the_variation_from_the_bar_line_at_90_and_140_bpm() {
    let Some(python) = support::python() else {
        eprintln!("skipped: no Python environment (CADENZA_PYTHON, .cadenza-env.json); `cargo xtask setup` makes it");
        return;
    };
    if let Err(why) = minihost_available(&python) {
        eprintln!("skipped: {why}");
        return;
    }
    let (style, model) = support::test_model();
    let model_bytes = std::fs::read(&model).expect("model");
    let tmp = tempfile::tempdir().expect("tmp");
    let bundle: PathBuf = support::vst3_bundle(tmp.path(), &[(style.as_str(), &model_bytes)]);
    let length_beats = f64::from(BARS) * BAR_BEATS;

    for tempo_bpm in [90.0, 140.0] {
        let samples_per_beat = f64::from(SAMPLE_RATE) * 60.0 / tempo_bpm;
        let (events, pressed_at, state) = run_minihost(&python, tmp.path(), &bundle, tempo_bpm);
        let session = support::session_of_vst3_state(&state);
        let generation = &session["generation"];
        assert_eq!(generation["tempo_bpm"], tempo_bpm, "generated at the host's tempo");
        assert_eq!(generation["bars"], BARS);

        // MIDI thru off: only the generated notes, all after the press, once (Loop off).
        let ons = support::note_ons(&events);
        assert!(ons.iter().all(|n| n.0 >= pressed_at), "a note before the press at {pressed_at}: {ons:?}");
        let variation = support::variation_notes(&session, CHOICE as usize);
        let (bar, off) = support::played_from_bar(&ons, &variation, samples_per_beat, BAR_BEATS, length_beats, 1.0);
        let press_beats = pressed_at as f64 / samples_per_beat;
        let elapsed_ms = generation["elapsed_ms"].as_u64().expect("elapsed_ms");
        // The chosen variation plays as soon as it alone is made, before the other.
        let first_ms = generation["first_ms"].as_u64().expect("first_ms");
        assert!(first_ms <= elapsed_ms, "chosen after {first_ms} ms, all after {elapsed_ms} ms");
        support::assert_next_bar_line(bar, press_beats, first_ms, tempo_bpm, BAR_BEATS);
        let end = ((bar + length_beats) * samples_per_beat) as u64;
        assert!(ons.iter().all(|n| n.0 < end), "every note within the {BARS} bars asked (to sample {end}): {ons:?}");
        let offs = events.iter().filter(|e| e.1 & 0xf0 == 0x80 || (e.1 & 0xf0 == 0x90 && e.3 == 0)).count();
        assert_eq!(offs, ons.len(), "every generated note ends");
        eprintln!(
            "minihost at {tempo_bpm} BPM: pressed at beat {press_beats:.3}, chosen ready in {first_ms} ms (all {elapsed_ms} ms), variation \
             {CHOICE} from beat {bar} ({} notes, each within {off:.1} samples of its place)",
            ons.len()
        );
    }
}
