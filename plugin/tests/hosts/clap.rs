//! Cadenza in a CLAP host: the built `.clap` (debug, so any allocation in
//! process() aborts the test), real notes from the bundled primer, a moving
//! transport, a real model through real ONNX Runtime.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::clap_host::{param_hash, ClapLibrary, InEvent, OutNote, Transport};
use crate::support;

pub(crate) const SAMPLE_RATE: f64 = 48_000.0;
pub(crate) const FRAMES: u32 = 512;
pub(crate) const TEMPO_BPM: f64 = 120.0;
pub(crate) const BEATS_PER_SAMPLE: f64 = TEMPO_BPM / 60.0 / SAMPLE_RATE;
const CLAP_ID: &str = "org.cadenza-music.cadenza";

/// Every parameter id Cadenza ships with. Changing one breaks saved projects and automation.
pub(crate) const PARAM_IDS: &[&str] = &[
    "gen",
    "bars",
    "vars",
    "choice",
    "temp",
    "topp",
    "seed",
    "plo",
    "phi",
    "key",
    "scale",
    "poly",
    "dens",
    "maxnote",
    "follow",
    "ownvoice",
    "stylelead",
    "lean",
    "capbar",
    "thru",
    "outch",
    "answer",
    "auto",
    "loop",
    "qgrid",
    "qstr",
    "piano",
    "pgain",
];

pub(crate) fn transport_at(beats: f64) -> Transport {
    Transport { playing: true, tempo_bpm: TEMPO_BPM, beats, tsig: (4, 4) }
}

/// Input events of block `b` for notes given as (start beats, length beats, key, velocity), from beat `from`.
pub(crate) fn block_notes(notes: &[(f64, f64, u8, u8)], b: usize, from: f64) -> Vec<InEvent> {
    let start = from + b as f64 * f64::from(FRAMES) * BEATS_PER_SAMPLE;
    let end = start + f64::from(FRAMES) * BEATS_PER_SAMPLE;
    let mut events = Vec::new();
    let mut edges: Vec<(f64, u8, u8, bool)> = Vec::new();
    for &(s, l, k, v) in notes {
        edges.push((s, k, v, true));
        edges.push((s + l, k, 0, false));
    }
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.3.cmp(&b.3)));
    for (t, key, vel, on) in edges {
        if t >= start && t < end {
            let time = (((t - start) / BEATS_PER_SAMPLE).floor() as u32).min(FRAMES - 1);
            events.push(InEvent::Note { time, key: i16::from(key), velocity: f64::from(vel) / 127.0, on });
        }
    }
    events
}

/// Input events of block `b` for a press of Generate at block 0: the trigger high, then low.
fn press_generate(b: usize) -> Vec<InEvent> {
    match b {
        0 => vec![InEvent::Param { time: 0, id: param_hash("gen"), value: 1.0 }],
        1 => vec![InEvent::Param { time: 0, id: param_hash("gen"), value: 0.0 }],
        _ => Vec::new(),
    }
}

/// The bundle with the test model as its one style, loaded: (style, bundle folder, library).
fn load_test_model() -> (String, tempfile::TempDir, ClapLibrary) {
    let (style, model) = support::test_model();
    let model_bytes = std::fs::read(&model).expect("model");
    let (dir, lib) = load(&[(style.as_str(), &model_bytes)]);
    (style, dir, lib)
}

fn load(models: &[(&str, &[u8])]) -> (tempfile::TempDir, ClapLibrary) {
    support::isolate_user_data();
    let dir = tempfile::tempdir().expect("tmp");
    let clap = support::clap_bundle(dir.path(), models, true);
    let lib = ClapLibrary::load(&clap).expect("load the .clap");
    (dir, lib)
}

#[test]
fn clap_lists_fixed_parameters_and_one_note_port_each_way() {
    let (_dir, lib) = load(&[]);
    let descs = lib.descriptors();
    assert_eq!(descs.len(), 1);
    let (id, name, features) = &descs[0];
    assert_eq!((id.as_str(), name.as_str()), (CLAP_ID, "Cadenza"));
    assert!(features.iter().any(|f| f == "note-effect") && features.iter().any(|f| f == "instrument"), "{features:?}");

    let mut inst = lib.instantiate(CLAP_ID).expect("instance");
    let params = inst.params();
    for p in &params {
        eprintln!("param {:>10} {:<22} {:>6}..{:<6} default {}", p.id, p.name, p.min, p.max, p.default);
    }
    let ids: BTreeSet<u32> = params.iter().map(|p| p.id).collect();
    let expected: BTreeSet<u32> = PARAM_IDS.iter().map(|id| param_hash(id)).collect();
    assert_eq!(ids, expected, "parameter ids are fixed forever");
    let gen = params.iter().find(|p| p.id == param_hash("gen")).expect("gen");
    assert!(gen.automatable && gen.max == 1.0, "the Generate trigger is an automatable switch");
    assert_eq!(inst.note_ports(), (1, 1));

    // The debug build carries nice-plug's allocation checker, so every process() below is checked.
    let so = std::fs::read(support::plugin_so()).expect("read .so");
    let marker = b"Memory allocation of";
    assert!(so.windows(marker.len()).any(|w| w == marker), "assert_process_allocs is compiled in");

    inst.activate(SAMPLE_RATE, FRAMES);
    let out = inst.process_blocks(8, FRAMES, |_| Vec::new(), |b| transport_at(b as f64 * 0.02), |_, _| true);
    assert!(out.is_empty(), "silence in, silence out");
}

/// Issue 11: every parameter's value -> text -> value -> text gives the same text (an external
/// CLAP validator found Density's 0.4949 showing "-0.00", read back as 0.5, then "0.00"). Probed at
/// both ends of each range, just inside them, around the value written "0" and at random values.
#[test]
fn clap_parameter_text_round_trips_for_every_parameter() {
    let (_dir, lib) = load(&[]);
    let inst = lib.instantiate(CLAP_ID).expect("instance");
    let params = inst.params();
    assert_eq!(params.len(), PARAM_IDS.len());
    // A fixed linear congruential sequence: the same "random" values on every run.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut random = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut checked = 0;
    let mut problems = Vec::new();
    for p in &params {
        let span = p.max - p.min;
        let mut values = vec![p.min, p.max, p.default, p.min + span * 1e-4, p.max - span * 1e-4];
        values.extend([0.5, 0.4949, 0.5051].map(|f| p.min + span * f));
        if let Some(zero) = inst.text_to_value(p.id, "0") {
            for d in [1e-6, 1e-4, 1e-3, 5e-3, 1e-2, 2.6e-2] {
                values.extend([zero - d * span, zero + d * span]);
            }
        }
        values.extend((0..64).map(|_| p.min + span * random()));
        for value in values.into_iter().map(|v| v.clamp(p.min, p.max)) {
            checked += 1;
            let Some(text) = inst.value_to_text(p.id, value) else {
                problems.push(format!("{}: no text for {value}", p.name));
                continue;
            };
            let Some(back) = inst.text_to_value(p.id, &text) else {
                problems.push(format!("{}: {value} shows {text:?}, which does not read back", p.name));
                continue;
            };
            let again = inst.value_to_text(p.id, back).unwrap_or_default();
            if again != text {
                problems.push(format!("{}: {value} -> {text:?} -> {back} -> {again:?}", p.name));
            }
            if text.starts_with('-') && text.chars().filter(char::is_ascii_digit).all(|c| c == '0') {
                problems.push(format!("{}: {value} shows as negative zero {text:?}", p.name));
            }
        }
    }
    problems.dedup_by(|a, b| a.split(':').next() == b.split(':').next());
    assert!(problems.is_empty(), "unstable parameter text (first per parameter):\n{}", problems.join("\n"));
    eprintln!("{checked} value -> text -> value -> text round trips over {} parameters", params.len());
}

/// Names of this process's threads that Cadenza started (`cadenza-session`, `cadenza-inferen`...).
fn cadenza_threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("cadenza-"))
        .collect();
    names.sort();
    names
}

/// Set in the child process that counts threads alone.
const THREAD_PROBE: &str = "CADENZA_THREAD_PROBE";

/// Issue 11: a host scanning makes many instances and never activates them; they start no
/// thread, and their state still saves and loads. Activation starts the session's threads;
/// destroying the instance ends them.
#[test]
fn clap_instances_start_no_threads_until_activated() {
    // Threads are counted per process and the other tests start their own: count in a child.
    if std::env::var_os(THREAD_PROBE).is_none() {
        let name = "clap::clap_instances_start_no_threads_until_activated";
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(THREAD_PROBE, "1")
            .output()
            .expect("run the thread probe");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("1 passed"), "thread probe failed:\n{text}");
        eprintln!("{}", text.lines().filter(|l| l.starts_with("threads:")).collect::<Vec<_>>().join("\n"));
        return;
    }
    let (_dir, lib) = load(&[]);
    let tasks = || std::fs::read_dir("/proc/self/task").expect("tasks").count();
    let before = tasks();
    assert_eq!(cadenza_threads(), Vec::<String>::new(), "nothing runs before an instance exists");
    let mut scanned: Vec<_> = (0..50).map(|_| lib.instantiate(CLAP_ID).expect("instance")).collect();
    for inst in &scanned {
        assert_eq!(inst.params().len(), PARAM_IDS.len());
    }
    // A project loads into an instance before the host activates it, and saves from one.
    let state = scanned[0].save_state();
    let mut session = support::session_of_state(&state);
    session["style"] = "probe".into();
    let edited = support::edit_state(&state, |json| json["fields"]["session"] = session.to_string().into());
    assert!(scanned[1].load_state(&edited), "state loads into an instance that was never activated");
    assert_eq!(support::session_of_state(&scanned[1].save_state())["style"], "probe", "and saves from it");
    let after_scan = tasks();
    assert_eq!(cadenza_threads(), Vec::<String>::new(), "50 instances that were never activated start no thread");
    eprintln!("threads: {before} before, {after_scan} with 50 instances never activated");

    scanned[1].activate(SAMPLE_RATE, FRAMES);
    // A new thread names itself once it runs: wait for that.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut running = cadenza_threads();
    while running != ["cadenza-inferen", "cadenza-session"] {
        assert!(Instant::now() < deadline, "activation starts the session and the model's thread: {running:?}");
        std::thread::sleep(Duration::from_millis(5));
        running = cadenza_threads();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while support::session_of_state(&scanned[1].save_state())["style"] != "probe" {
        assert!(Instant::now() < deadline, "the running session lost the state loaded before activation");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("threads: {} with one of them active ({running:?})", tasks());
    scanned.clear();
    assert_eq!(cadenza_threads(), Vec::<String>::new(), "destroying the instances ends their threads");
}

/// Without a usable model, Generate does nothing harmful and notes still pass through.
#[test]
fn clap_without_a_usable_model_still_passes_notes_through() {
    for models in [&[][..], &[("broken", &b"this is not an onnx file"[..])][..]] {
        let (_dir, lib) = load(models);
        let mut inst = lib.instantiate(CLAP_ID).expect("instance");
        inst.activate(SAMPLE_RATE, FRAMES);
        let phrase: Vec<(f64, f64, u8, u8)> = support::twinkle(TEMPO_BPM).into_iter().filter(|n| n.0 < 8.0).collect();
        let blocks = (9.0 / (f64::from(FRAMES) * BEATS_PER_SAMPLE)) as usize;
        let gen_block = blocks / 2;
        let out = inst.process_blocks(
            blocks,
            FRAMES,
            |b| {
                let mut ev = block_notes(&phrase, b, 0.0);
                if b == gen_block {
                    ev.push(InEvent::Param { time: 0, id: param_hash("gen"), value: 1.0 });
                }
                if b == gen_block + 1 {
                    ev.push(InEvent::Param { time: 0, id: param_hash("gen"), value: 0.0 });
                }
                ev
            },
            |b| transport_at(b as f64 * f64::from(FRAMES) * BEATS_PER_SAMPLE),
            |_, _| {
                std::thread::sleep(Duration::from_millis(1));
                true
            },
        );
        let ons: Vec<&OutNote> = out.iter().filter(|n| n.velocity > 0.0).collect();
        assert_eq!(ons.len(), phrase.len(), "every note passes through, nothing else comes out ({models:?})");
        for (n, p) in ons.iter().zip(&phrase) {
            let expected = (p.0 / BEATS_PER_SAMPLE).floor() as u64;
            assert_eq!((n.key, n.sample), (i16::from(p.2), expected), "pass-through keeps key and sample time");
        }
    }
}

/// Set in the child process that runs with a wrong ONNX Runtime library.
const WRONG_ORT_PROBE: &str = "CADENZA_WRONG_ORT_PROBE";

/// Issue 13: `CADENZA_ORT_LIBRARY` names a file that is no ONNX Runtime and this machine's
/// settings ask for CUDA. The plugin falls back to its bundle's library on the CPU and the
/// continuation still comes out; the host goes on, and the project holds no such setting.
#[test]
fn clap_a_wrong_onnx_runtime_library_falls_back_to_the_bundle_on_the_cpu() {
    // ONNX Runtime loads once per process and the variable is process-wide: run in a child.
    if std::env::var_os(WRONG_ORT_PROBE).is_none() {
        let tmp = tempfile::tempdir().expect("tmp");
        let junk = tmp.path().join("libonnxruntime.so.1.31.1");
        std::fs::write(&junk, b"not a shared library").expect("write");
        let name = "clap::clap_a_wrong_onnx_runtime_library_falls_back_to_the_bundle_on_the_cpu";
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(WRONG_ORT_PROBE, "1")
            .env("CADENZA_ORT_LIBRARY", &junk)
            .env("NICE_LOG", "stderr")
            .output()
            .expect("run the probe");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("1 passed"), "wrong-library probe failed:\n{text}");
        // The plugin logs what the status line says (nice-plug's logger, on stderr).
        let warning = text.lines().find(|l| l.contains("cadenza: ")).unwrap_or_default();
        assert!(
            warning.contains("(CADENZA_ORT_LIBRARY) did not load") && warning.contains("running on the CPU"),
            "the fallback is said in words:\n{text}"
        );
        eprintln!("{}", text.lines().filter(|l| l.starts_with("probe:")).collect::<Vec<_>>().join("\n"));
        eprintln!("{warning}");
        return;
    }
    let settings = support::isolate_user_data().join("cadenza/settings.json");
    std::fs::create_dir_all(settings.parent().expect("dir")).expect("dir");
    std::fs::write(&settings, r#"{"execution": "cuda"}"#).expect("settings");
    let (style, _dir, lib) = load_test_model();
    let mut inst = lib.instantiate(CLAP_ID).expect("instance");
    inst.activate(SAMPLE_RATE, FRAMES);
    let block_beats = f64::from(FRAMES) * BEATS_PER_SAMPLE;
    let phrase: Vec<(f64, f64, u8, u8)> = support::twinkle(TEMPO_BPM).into_iter().filter(|n| n.0 < 8.0).collect();
    let phrase_blocks = (8.5 / block_beats).ceil() as usize;
    inst.process_blocks(
        phrase_blocks,
        FRAMES,
        |b| block_notes(&phrase, b, 0.0),
        |b| transport_at(b as f64 * block_beats),
        |_, _| true,
    );
    let pressed_beat = phrase_blocks as f64 * block_beats;
    let pressed_at = Instant::now();
    let mut generated = false;
    inst.process_blocks(
        200_000,
        FRAMES,
        press_generate,
        |b| transport_at(pressed_beat + b as f64 * block_beats),
        |_, notes| {
            generated = notes.iter().any(|n| n.velocity > 0.0);
            std::thread::sleep(Duration::from_micros(500));
            assert!(pressed_at.elapsed() < Duration::from_secs(300), "no continuation within 5 minutes");
            !generated
        },
    );
    assert!(generated, "the continuation plays on the bundle's library");
    let session = support::session_of_state(&inst.save_state());
    assert_eq!(session["generation"]["style"], style.as_str());
    assert!(!session.to_string().contains("libonnxruntime"), "the project holds no ONNX Runtime setting: {session}");
    eprintln!(
        "probe: generated in {} ms with CADENZA_ORT_LIBRARY naming a non-library",
        pressed_at.elapsed().as_millis()
    );
}

/// Waits until block `b` is due in real time, counted from `played_from` (when block
/// `first_block` played); nothing before that moment is set.
pub(crate) fn pace_in_real_time(played_from: Option<(Instant, usize)>, b: usize) {
    if let Some((at, first_block)) = played_from {
        let due = at + Duration::from_secs_f64((b - first_block) as f64 * f64::from(FRAMES) / SAMPLE_RATE);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// The whole musician's loop: play a phrase, press Generate, hear the continuation from the next
/// bar line in time with the transport; save the project, reopen it, find the same variations.
#[test]
fn clap_continues_a_phrase_in_time_and_restores_it() {
    let (style, _dir, lib) = load_test_model();
    let mut inst = lib.instantiate(CLAP_ID).expect("instance");
    inst.activate(SAMPLE_RATE, FRAMES);
    let block_beats = f64::from(FRAMES) * BEATS_PER_SAMPLE;

    // Settings as a host's automation would send them (CLAP values: plain minus minimum for integers).
    let settings = [
        InEvent::Param { time: 0, id: param_hash("bars"), value: 2.0 - 1.0 },
        InEvent::Param { time: 0, id: param_hash("vars"), value: 2.0 - 1.0 },
        InEvent::Param { time: 0, id: param_hash("seed"), value: 7.0 },
        InEvent::Param { time: 0, id: param_hash("plo"), value: 48.0 - 21.0 },
        InEvent::Param { time: 0, id: param_hash("phi"), value: 84.0 - 21.0 },
    ];
    let phrase: Vec<(f64, f64, u8, u8)> = support::twinkle(TEMPO_BPM).into_iter().filter(|n| n.0 < 14.0).collect();
    assert!(phrase.len() >= 10, "a real phrase");
    let phrase_blocks = (16.5 / block_beats).ceil() as usize;
    let out = inst.process_blocks(
        phrase_blocks,
        FRAMES,
        |b| {
            let mut ev = block_notes(&phrase, b, 0.0);
            if b == 0 {
                ev.extend(settings.iter().copied());
            }
            ev
        },
        |b| transport_at(b as f64 * block_beats),
        |_, _| true,
    );
    assert_eq!(out.iter().filter(|n| n.velocity > 0.0).count(), phrase.len(), "the phrase passes through");

    // Press Generate (a rising edge of the automatable trigger), then let the transport run.
    let pressed_beat = phrase_blocks as f64 * block_beats;
    let pressed_at = Instant::now();
    let mut first_on: Option<(u64, Duration)> = None;
    let mut stop_after_sample = u64::MAX;
    let mut played_from: Option<(Instant, usize)> = None;
    let start_sample = inst.steady_time;
    let generated = inst.process_blocks(
        200_000,
        FRAMES,
        press_generate,
        |b| transport_at(pressed_beat + b as f64 * block_beats),
        |b, notes| {
            if first_on.is_none() {
                if let Some(n) = notes.iter().find(|n| n.velocity > 0.0) {
                    first_on = Some((n.sample, pressed_at.elapsed()));
                    // Two bars of 4/4 at 120 BPM are 4 s: play them out, plus a beat.
                    stop_after_sample = n.sample + (9.0 / BEATS_PER_SAMPLE) as u64;
                    played_from = Some((Instant::now(), b));
                }
                std::thread::sleep(Duration::from_micros(500));
                assert!(pressed_at.elapsed() < Duration::from_secs(300), "no continuation within 5 minutes");
            }
            // From the first note on, blocks come in real time, as a host that is not rendering
            // offline plays them: the rest of the variation joins its start while it plays.
            pace_in_real_time(played_from, b);
            start_sample + (b as u64 + 1) * u64::from(FRAMES) < stop_after_sample
        },
    );
    let (first_sample, waited) = first_on.expect("generated notes came out");
    let first_beat = first_sample as f64 * BEATS_PER_SAMPLE;
    eprintln!(
        "first generated note at beat {first_beat:.4} (pressed at {pressed_beat:.3}), {} ms after pressing; {} events",
        waited.as_millis(),
        generated.len()
    );
    let ons: Vec<&OutNote> = generated.iter().filter(|n| n.velocity > 0.0).collect();
    assert!(!ons.is_empty());
    assert!(ons.iter().all(|n| (48..=84).contains(&n.key)), "steering keeps notes in range: {ons:?}");
    assert!(first_beat >= pressed_beat, "nothing plays before the press");

    // What the plugin says it generated, from its saved state.
    let state = inst.save_state();
    let session = support::session_of_state(&state);
    let generation = &session["generation"];
    assert_eq!(generation["style"], style.as_str());
    assert_eq!(generation["settings"]["sampling"]["seed"], 7);
    assert_eq!(generation["bars"], 2);
    let variations = generation["variations"].as_array().expect("variations");
    assert_eq!(variations.len(), 2);
    let primer_notes = generation["primer"]["notes"].as_array().expect("primer").len();
    assert!(primer_notes >= 8, "the captured phrase is the primer ({primer_notes} notes)");
    let chosen: Vec<(f64, i64, i64)> = variations[0]["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .map(|n| {
            (
                n["start_beats"].as_f64().expect("start"),
                n["pitch"].as_i64().expect("pitch"),
                n["velocity"].as_i64().expect("vel"),
            )
        })
        .collect();
    assert!(!chosen.is_empty(), "variation 1 has notes");
    // In time with the transport: variation 1's notes sound at anchor + their beat, to the sample,
    // where the anchor is the first bar line at or after the moment the result arrived.
    let anchor = first_beat - chosen[0].0;
    let bar = (anchor / 4.0).round() * 4.0;
    assert!((anchor - bar).abs() < 2.0 * BEATS_PER_SAMPLE, "starts on a bar line (anchor beat {anchor})");
    assert!(bar >= pressed_beat, "on the next bar line after the press, not before");
    for (start, pitch, velocity) in &chosen {
        let expected = ((bar + start) / BEATS_PER_SAMPLE).round() as i64;
        let hit = ons.iter().find(|n| i64::from(n.key) == *pitch && (n.sample as i64 - expected).abs() <= 1);
        let hit = hit.unwrap_or_else(|| {
            panic!("note {pitch} at beat {start} of the variation never sounded at sample {expected}")
        });
        assert!((hit.velocity * 127.0 - *velocity as f64).abs() < 0.51, "velocity kept");
    }
    // Every note that went on went off again (the last ones at the end of the variation).
    for key in ons.iter().map(|n| n.key).collect::<BTreeSet<_>>() {
        let on = generated.iter().filter(|n| n.key == key && n.velocity > 0.0).count();
        let off = generated.iter().filter(|n| n.key == key && n.velocity == 0.0).count();
        assert_eq!(on, off, "key {key}: {on} on, {off} off");
    }

    // Reopen the project: a fresh instance loads the state and holds the same session.
    let fresh = lib.instantiate(CLAP_ID).expect("fresh instance");
    assert!(fresh.load_state(&state), "state loads");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let restored = support::session_of_state(&fresh.save_state());
        if restored == session {
            break;
        }
        assert!(Instant::now() < deadline, "the fresh instance did not restore the session: {restored}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Issue 11: an untouched project saves the same bytes, or hosts mark it changed.
    let again = fresh.save_state();
    assert!(again == state, "save -> load -> save is byte-identical ({} then {} bytes)", state.len(), again.len());
    // CLAP values of integer parameters: plain minus minimum (through an f32 normalized value).
    let near = |id: &str, v: f64| fresh.param_value(param_hash(id)).is_some_and(|x| (x - v).abs() < 1e-3);
    assert!(near("seed", 7.0) && near("bars", 1.0) && near("plo", 27.0), "parameters come back with the project");
    eprintln!(
        "state: {} bytes; restored {} variations, {} notes in variation 1",
        state.len(),
        variations.len(),
        chosen.len()
    );
}

/// Issue 11 (seen in a JUCE host): a project saved while the Generate parameter was high does not
/// generate when it loads, and with Loop on its chosen variation plays from the bar line after the
/// transport rolls, as it did before the save. A real model is there, so a generation would happen.
#[test]
fn clap_a_loaded_project_does_not_generate_and_its_loop_plays_when_the_transport_rolls() {
    use cadenza_core::{Clip, ClipNote};
    let (style, _dir, lib) = load_test_model();
    let clip = |pitch: u8| Clip {
        notes: vec![
            ClipNote { pitch, velocity: 90, start_beats: 0.5, length_beats: 1.0 },
            ClipNote { pitch: pitch + 4, velocity: 80, start_beats: 2.0, length_beats: 1.5 },
        ],
        length_beats: 4.0,
    };
    let settings = cadenza_core::request::GenerationSettings::default();
    let session = serde_json::json!({
        "version": 2,
        "style": style,
        "generation": {
            "primer": clip(48),
            "primer_len_beats": 4.0,
            "variations": [clip(60), clip(67)],
            "tempo_bpm": TEMPO_BPM,
            "bar_len_beats": 4.0,
            "time_signature": [4, 4],
            "style": style,
            "bars": 1,
            "settings": settings,
            "elapsed_ms": 321
        }
    });
    // Saved with Generate high, Loop on and variation 2 chosen.
    let blank = lib.instantiate(CLAP_ID).expect("instance").save_state();
    let project = support::edit_state(&blank, |json| {
        json["fields"]["session"] = session.to_string().into();
        json["params"]["gen"] = serde_json::json!({"bool": true});
        json["params"]["loop"] = serde_json::json!({"bool": true});
        json["params"]["choice"] = serde_json::json!({"i32": 2});
    });

    let mut inst = lib.instantiate(CLAP_ID).expect("instance");
    assert!(inst.load_state(&project), "the project loads");
    assert_eq!(inst.param_value(param_hash("gen")), Some(1.0), "Generate comes back high, as saved");
    inst.activate(SAMPLE_RATE, FRAMES);
    let block_beats = f64::from(FRAMES) * BEATS_PER_SAMPLE;
    let pause = |_: usize, _: &[OutNote]| {
        std::thread::sleep(Duration::from_millis(2));
        true
    };
    // Half a second with the transport stopped, then it rolls from beat 2 to beat 9.5.
    let stopped = Transport { playing: false, ..transport_at(0.0) };
    let before = inst.process_blocks(47, FRAMES, |_| Vec::new(), |_| stopped, pause);
    assert!(before.is_empty(), "nothing plays while the transport is stopped: {before:?}");
    let rolled_at = inst.steady_time;
    let blocks = (7.5 / block_beats).ceil() as usize;
    let out =
        inst.process_blocks(blocks, FRAMES, |_| Vec::new(), |b| transport_at(2.0 + b as f64 * block_beats), pause);
    let ons: Vec<(f64, i16)> = out
        .iter()
        .filter(|n| n.velocity > 0.0)
        .map(|n| (2.0 + (n.sample - rolled_at) as f64 * BEATS_PER_SAMPLE, n.key))
        .collect();
    // Variation 2 from the bar line at beat 4, and again from beat 8.
    let expected = [(4.5, 67), (6.0, 71), (8.5, 67)];
    assert_eq!(ons.len(), expected.len(), "the chosen variation loops from the next bar line: {ons:?}");
    for ((beat, key), (want_beat, want_key)) in ons.iter().zip(expected) {
        assert!(*key == want_key && (beat - want_beat).abs() < 2.0 * BEATS_PER_SAMPLE, "{ons:?}");
    }
    let restored = support::session_of_state(&inst.save_state());
    assert_eq!(restored["generation"], session["generation"], "no generation started by itself");
}

/// The preview piano: a soundfont found on the system renders what Cadenza sends out, inside
/// process() and without allocating there (this debug build aborts if it does).
#[test]
fn clap_preview_piano_sounds_the_notes_it_sends() {
    let (_dir, lib) = load(&[]);
    let mut inst = lib.instantiate(CLAP_ID).expect("instance");
    inst.activate(SAMPLE_RATE, FRAMES);
    let block_beats = f64::from(FRAMES) * BEATS_PER_SAMPLE;
    let started = Instant::now();
    let mut block = 0usize;
    let mut heard = false;
    while !heard {
        assert!(started.elapsed() < Duration::from_secs(120), "the preview piano never sounded");
        let first = block;
        inst.process_blocks(
            100,
            FRAMES,
            |b| match (first + b) % 100 {
                0 if first == 0 => vec![InEvent::Param { time: 0, id: param_hash("piano"), value: 1.0 }],
                10 => vec![InEvent::Note { time: 7, key: 60, velocity: 0.8, on: true }],
                60 => vec![InEvent::Note { time: 7, key: 60, velocity: 0.0, on: false }],
                _ => Vec::new(),
            },
            |b| transport_at((first + b) as f64 * block_beats),
            |_, _| {
                std::thread::sleep(Duration::from_millis(2));
                true
            },
        );
        block += 100;
        let peak = inst.block_peak.iter().copied().fold(0f32, f32::max);
        heard = peak > 1e-3;
        if heard {
            eprintln!(
                "preview piano peak {peak:.3} after {:.1} s (soundfont load included)",
                started.elapsed().as_secs_f64()
            );
        }
    }
}
