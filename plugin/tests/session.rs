//! The session thread as the editor sees it: what the status line says when
//! something is missing or broken (no style, no ONNX Runtime, a corrupt
//! model), a real generation reaching the audio thread, determinism of a
//! repeated press, export of the clip, and a refused project from a newer
//! version, this machine's ONNX Runtime setting (a wrong library falls back to
//! the bundle's on the CPU, a change once a library is loaded asks for a
//! restart, a project load leaves the setting alone). Real model, real ONNX
//! Runtime; the audio thread's side of the queues is played by the test.
//!
//! One test function: the scenarios point `CADENZA_RESOURCES` at different
//! folders, and the environment is process-wide.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cadenza_core::engine::Provider;
use cadenza_plugin::capture::CaptureEvent;
use cadenza_plugin::params::CadenzaParams;
use cadenza_plugin::session::{self, AudioPorts, Command};
use cadenza_plugin::settings::{self, MachineSettings};
use cadenza_plugin::shared::Shared;
use cadenza_plugin::state::{LeanFrom, SessionSlot};
use cadenza_plugin::view::{Level, View};
use crossbeam::channel::Sender;

use cadenza_test_support::hosts as support;

struct Running {
    params: Arc<CadenzaParams>,
    shared: Arc<Shared>,
    audio: AudioPorts,
    commands: Sender<Command>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(h) = self.handle.take() {
            h.join().expect("session thread ends cleanly");
        }
    }
}

fn start(resources: &Path) -> Running {
    std::env::set_var("CADENZA_RESOURCES", resources);
    // Default parameters: 8 bars, 4 variations, seed 1.
    let params = Arc::new(CadenzaParams::new(SessionSlot::default()));
    let shared = Arc::new(Shared::default());
    let (session_ports, audio) = session::ports();
    let (commands, handle) = session::spawn(params.clone(), shared.clone(), session_ports).expect("session starts");
    Running { params, shared, audio, commands, handle: Some(handle) }
}

/// Play the twinkle phrase into the capture, as the audio thread would, and move the clock past it.
fn play_phrase(r: &mut Running) {
    let clock = &r.shared.clock;
    clock.epoch.store(3, std::sync::atomic::Ordering::Release);
    clock.tempo_bpm.store(120.0);
    for (start, len, pitch, velocity) in support::twinkle(120.0).into_iter().filter(|n| n.0 < 14.0) {
        for (beats, velocity) in [(start, velocity), (start + len, 0)] {
            let ev = CaptureEvent { epoch: 3, beats, bar_origin_beats: 0.0, bar_len_beats: 4.0, pitch, velocity };
            r.audio.capture_tx.push(ev).expect("capture queue");
        }
    }
    clock.now_beats.store(16.5);
}

fn wait_view(r: &Running, what: &str, mut done: impl FnMut(&View) -> bool) -> Arc<View> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let view = r.shared.view();
        if done(&view) {
            return view;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; status: {:?}", view.status);
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn resources(dir: &Path, ort: bool, models: &[(&str, &[u8])]) -> PathBuf {
    let res = dir.join("Cadenza.clap.resources");
    std::fs::create_dir_all(res.join("lib")).expect("lib");
    std::fs::create_dir_all(res.join("models")).expect("models");
    if ort {
        std::os::unix::fs::symlink(support::ort_library(), res.join("lib/libonnxruntime.so.1.31.1")).expect("ort");
    }
    for (name, bytes) in models {
        std::fs::write(res.join("models").join(format!("{name}.onnx")), bytes).expect("model");
    }
    res
}

/// Two `tiny` random-weight models: "child", whose sidecar names "parent" to lean away from, and "parent".
fn leaning_models(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    use cadenza_core::export::{export_weights, random_weights, synthetic_meta, Precision};
    let cfg = cadenza_core::model::ModelConfig::TINY;
    let advice = cadenza_core::sampling::ContrastAdvice {
        with: "parent".into(),
        strength: 0.5,
        measured: String::new(),
        following: None,
        following_strength: None,
    };
    let child =
        cadenza_core::dataset::CheckpointMeta { contrast: Some(advice), ..synthetic_meta(&cfg, "child", "random") };
    let parent = synthetic_meta(&cfg, "parent", "random");
    let bytes = |seed, meta, name: &str| {
        let path = dir.join(format!("{name}.onnx"));
        export_weights(&random_weights(&cfg, seed), meta, Precision::Float32, &path).expect("export");
        std::fs::read(&path).expect("read")
    };
    (bytes(3, &child, "child"), bytes(8, &parent, "parent"))
}

#[test]
fn session_reports_problems_in_words_generates_exports_and_refuses_newer_projects() {
    let ort = support::ort_library();
    let (style, model) = support::test_model();
    let model_bytes = std::fs::read(&model).expect("model");
    support::isolate_user_data();
    // The plugin finds ONNX Runtime in its bundle; the development variable must not stand in for it.
    std::env::remove_var("ORT_DYLIB_PATH");
    let tmp = tempfile::tempdir().expect("tmp");

    // No style anywhere.
    let mut r = start(&resources(&tmp.path().join("a"), true, &[]));
    play_phrase(&mut r);
    r.commands.send(Command::Generate).expect("send");
    let v = wait_view(&r, "the no-style error", |v| v.status.level == Level::Error);
    eprintln!("no style      -> {}", v.status.text);
    assert!(v.status.text.contains("No style found"), "{}", v.status.text);
    drop(r);

    // A model but no ONNX Runtime library in the bundle.
    let mut r = start(&resources(&tmp.path().join("b"), false, &[(&style, &model_bytes)]));
    play_phrase(&mut r);
    r.commands.send(Command::Generate).expect("send");
    let v = wait_view(&r, "the missing-runtime error", |v| v.status.level == Level::Error);
    eprintln!("no runtime    -> {}", v.status.text);
    assert!(
        v.status.text.contains("ONNX Runtime") && v.status.text.contains("MIDI still passes through"),
        "{}",
        v.status.text
    );
    assert!(v.engine.contains("not found"), "{}", v.engine);
    drop(r);

    // Issue 13: this machine's setting names a library that is not there and asks for CUDA.
    // Generation still runs, on the bundle's CPU library, and the status line says why.
    let mut r = start(&resources(&tmp.path().join("wrong-ort"), true, &[(&style, &model_bytes)]));
    let wrong = tmp.path().join("no-such-dir/libonnxruntime.so.1.31.1");
    let machine = MachineSettings { ort_library: Some(wrong.clone()), execution: Provider::Cuda };
    r.commands.send(Command::SetMachineSettings(machine.clone())).expect("send");
    let v = wait_view(&r, "the setting saved", |v| v.machine == machine);
    eprintln!("setting saved -> {}", v.status.text);
    let settings_file = settings::settings_path().expect("a user folder");
    assert_eq!(MachineSettings::load_from(&settings_file).expect("read back"), machine);
    play_phrase(&mut r);
    r.commands.send(Command::Generate).expect("send");
    let v = wait_view(&r, "a generation on the CPU", |v| {
        v.generation.is_some() && v.status.text.contains("variations ready")
    });
    eprintln!("wrong library -> {} [{}]", v.status.text, v.engine);
    assert_eq!(v.status.level, Level::Warning, "{}", v.status.text);
    assert!(v.status.text.contains(&wrong.display().to_string()), "names the library: {}", v.status.text);
    assert!(v.status.text.contains("CUDA did not start"), "says why CUDA does not run: {}", v.status.text);
    assert!(v.status.text.contains("running on the CPU"), "{}", v.status.text);
    assert!(v.engine.contains("ONNX Runtime CPU from") && v.engine.contains("Cadenza's bundle"), "{}", v.engine);
    r.commands.send(Command::SetMachineSettings(MachineSettings::default())).expect("send");
    wait_view(&r, "the default setting", |v| v.machine == MachineSettings::default());
    drop(r);

    // A corrupt model.
    let res = resources(&tmp.path().join("c"), true, &[("broken", b"not a model at all")]);
    let mut r = start(&res);
    play_phrase(&mut r);
    r.commands.send(Command::Generate).expect("send");
    let v = wait_view(&r, "the corrupt-model error", |v| v.status.level == Level::Error);
    eprintln!("corrupt model -> {}", v.status.text);
    assert!(v.status.text.contains("broken.onnx"), "the message names the file: {}", v.status.text);
    drop(r);

    // A style whose model names a style to lean away from: with that style's model beside it
    // the engine line says it leans; without, the status line says it plays without leaning.
    let (child, parent) = leaning_models(tmp.path());
    let res = resources(&tmp.path().join("lean"), true, &[("child", &child), ("parent", &parent)]);
    let mut r = start(&res);
    play_phrase(&mut r);
    r.commands.send(Command::Generate).expect("send");
    let v = wait_view(&r, "a leaning generation", |v| v.generation.is_some() && v.status.level != Level::Info);
    eprintln!("leaning       -> {} [{}]", v.status.text, v.engine);
    assert_eq!(v.status.level, Level::Success, "{}", v.status.text);
    assert!(v.engine.contains("child model (") && v.engine.contains("leans away from parent"), "{}", v.engine);
    drop(r);
    let mut r = start(&resources(&tmp.path().join("lean-alone"), true, &[("child", &child)]));
    play_phrase(&mut r);
    r.commands.send(Command::Generate).expect("send");
    let v =
        wait_view(&r, "a generation without its parent", |v| v.generation.is_some() && v.status.level != Level::Info);
    eprintln!("no parent     -> {} [{}]", v.status.text, v.engine);
    assert_eq!(v.status.level, Level::Warning, "{}", v.status.text);
    assert!(v.status.text.contains("no parent.onnx") && v.status.text.contains("without leaning"), "{}", v.status.text);
    assert!(!v.engine.contains("leans away"), "{}", v.engine);
    drop(r);
    // The musician chooses whom a style leans away from: none, any other style (here the parent,
    // which names none, leaning away from the child), or one that is not there, which is said.
    let chosen = resources(&tmp.path().join("lean-chosen"), true, &[("child", &child), ("parent", &parent)]);
    let generate_with = |style: &str, lean_from: LeanFrom| {
        let mut r = start(&chosen);
        r.commands.send(Command::SetStyle(style.into())).expect("send");
        r.commands.send(Command::SetLeanFrom(lean_from.clone())).expect("send");
        play_phrase(&mut r);
        r.commands.send(Command::Generate).expect("send");
        let v = wait_view(&r, "a generation leaning as chosen", |v| {
            v.generation.is_some() && v.status.level != Level::Info
        });
        eprintln!("lean {lean_from:?} -> {} [{}]", v.status.text, v.engine);
        assert_eq!(v.lean_from, lean_from, "the editor shows the choice");
        v
    };
    let v = generate_with("child", LeanFrom::Off);
    assert_eq!(v.status.level, Level::Success, "{}", v.status.text);
    assert!(v.engine.contains("child model (") && !v.engine.contains("leans away"), "{}", v.engine);
    let v = generate_with("parent", LeanFrom::Style("child".into()));
    assert_eq!(v.status.level, Level::Success, "{}", v.status.text);
    assert!(
        v.engine.contains("parent model (") && v.engine.contains("leans away from child, as you chose"),
        "{}",
        v.engine
    );
    let v = generate_with("child", LeanFrom::Style("nosuch".into()));
    assert_eq!(v.status.level, Level::Warning, "{}", v.status.text);
    assert!(v.status.text.contains("no nosuch.onnx") && v.status.text.contains("without leaning"), "{}", v.status.text);
    assert!(!v.engine.contains("leans away"), "{}", v.engine);

    // A real model: the result reaches the audio thread and the editor. The style judge the
    // models ship with goes beside it, as a bundle has it.
    let with_model = resources(&tmp.path().join("d"), true, &[(&style, &model_bytes)]);
    let judge = model.with_file_name(cadenza_core::classifier::JUDGE_FILE);
    if judge.exists() {
        std::fs::copy(&judge, with_model.join("models").join(cadenza_core::classifier::JUDGE_FILE)).expect("judge");
    }
    let mut r = start(&with_model);
    play_phrase(&mut r);
    // Playing into the style loads its model before Generate is pressed, and the editor says
    // what will run it.
    let v = wait_view(&r, "the model loaded ahead", |v| v.engine.contains(&format!("{style} model (")));
    eprintln!("warmed up     -> {}", v.engine);
    assert!(v.generation.is_none(), "nothing generated yet");
    r.commands.send(Command::Generate).expect("send");
    let v = wait_view(&r, "a generation", |v| v.generation.is_some() && v.status.level != Level::Info);
    eprintln!("generated     -> {} [{}]", v.status.text, v.engine);
    assert_eq!(v.status.level, Level::Success, "{}", v.status.text);
    // A nursery tune is foreign to every shipped style (each pays over 3 nats an event for it, twice
    // its own music's cost or more), and the style judge names it classical or folk: the status
    // line says so. A style that leads by cost or by the judge says it led; one that does not
    // names the parameter that lets it lead. The stand-in random model records no validation loss
    // to weigh it against.
    if style != "tinytest" {
        let judged = v.engine.contains("leads phrases that sound like another style");
        let says = if v.engine.contains("leads foreign phrases by default") || judged {
            vec![format!("Led by {style}"), "% foreign to it".to_owned()]
        } else {
            vec![format!("foreign to {style}"), format!("\"{}\"", cadenza_plugin::params::STYLE_LEAD_NAME)]
        };
        assert!(says.iter().all(|s| v.status.text.contains(s.as_str())), "{}", v.status.text);
    }
    assert!(v.engine.contains(&ort.file_name().expect("name").to_string_lossy().into_owned()), "{}", v.engine);
    let g = v.generation.as_ref().expect("generation");
    assert_eq!(g.variations.len(), 4);
    assert_eq!(g.length_beats, 32.0, "eight bars of 4/4");
    assert!(g.primer.notes.len() >= 8, "the captured phrase is the primer: {:?}", g.primer);
    assert!(g.variations.iter().all(|v| v.notes.iter().all(|n| n.start_beats < 32.0)));
    fn next_set(r: &mut Running) -> cadenza_plugin::playback::PlaySet {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(set) = r.audio.sets_rx.pop() {
                break set;
            }
            assert!(Instant::now() < deadline, "no play set reached the audio thread");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // The chosen variation (the first) is made alone. Its start comes first and starts playing,
    // the other three places empty; then all of it; then the others join it. What follows the
    // start must leave its notes sounding.
    let (start, chosen, all) = (next_set(&mut r), next_set(&mut r), next_set(&mut r));
    use cadenza_plugin::playback::StartMode;
    assert_eq!((start.count, start.start), (4, StartMode::Start), "auto-play starts it");
    assert_eq!((chosen.count, chosen.start), (4, StartMode::Extend));
    assert_eq!((all.count, all.start), (4, StartMode::Extend));
    for set in [&start, &chosen] {
        assert!(set.clips[1..4].iter().all(|c| c.events.is_empty()), "the others are still being made");
    }
    let ons = |events: &[cadenza_plugin::playback::PlayEvent]| {
        events.iter().filter(|e| e.velocity > 0).map(|e| (e.pitch, e.beats, e.velocity)).collect::<Vec<_>>()
    };
    let (start_ons, chosen_ons) = (ons(&start.clips[0].events), ons(&chosen.clips[0].events));
    assert!(!start_ons.is_empty() && start_ons.len() < chosen_ons.len(), "{start_ons:?}");
    assert_eq!(start_ons[..], chosen_ons[..start_ons.len()], "the start is the variation's start");
    assert_eq!(chosen.clips[0].events, all.clips[0].events, "the chosen variation is unchanged");
    assert!(0 < g.first_ms && g.first_ms <= g.elapsed_ms, "first {} ms, all {} ms", g.first_ms, g.elapsed_ms);
    let first = g.clone();

    // The same phrase, settings and seed again: the same notes. This time the host renders
    // offline, faster than real time: no start ahead of the rest, which its playhead could
    // overtake; the chosen variation comes whole, then the others join it.
    for set in [start, chosen, all] {
        r.audio.sets_back_tx.push(set).expect("the pool takes its sets back");
    }
    r.shared.clock.offline.store(true, std::sync::atomic::Ordering::Release);
    r.commands.send(Command::RescanStyles).expect("send");
    wait_view(&r, "the rescan", |v| v.status.text.contains("styles found"));
    r.commands.send(Command::Generate).expect("send");
    let v = wait_view(&r, "a second generation", |v| v.status.text.contains("variations ready"));
    let second = v.generation.as_ref().expect("generation");
    assert_eq!(second.variations, first.variations, "deterministic for a seed");
    let (chosen, all) = (next_set(&mut r), next_set(&mut r));
    assert_eq!((chosen.count, chosen.start, all.start), (4, StartMode::Start, StartMode::Extend));
    assert!(chosen.clips[1..4].iter().all(|c| c.events.is_empty()), "the others are still being made");
    assert_eq!(chosen.clips[0].events, all.clips[0].events, "the chosen variation came whole");
    assert!(r.audio.sets_rx.pop().is_err(), "and nothing else");
    r.shared.clock.offline.store(false, std::sync::atomic::Ordering::Release);

    // Keep: export with and without the primer into a chosen folder.
    let out = tmp.path().join("exports");
    r.commands.send(Command::SetExportDir(out.clone())).expect("send");
    r.commands.send(Command::Export { with_primer: false }).expect("send");
    let v = wait_view(&r, "an export", |v| v.last_export.is_some());
    let plain = v.last_export.clone().expect("path");
    r.commands.send(Command::Export { with_primer: true }).expect("send");
    let v = wait_view(&r, "a second export", |v| v.last_export.as_ref().is_some_and(|p| *p != plain));
    let joined = v.last_export.clone().expect("path");
    eprintln!("exported      -> {} and {}", plain.display(), joined.display());
    assert!(plain.starts_with(&out) && joined.starts_with(&out));
    let read = |p: &Path| cadenza_core::midi::read_file(p, &Default::default());
    let joined_perf = read(&joined).expect("the export with primer reads back");
    let primer_notes = first.primer.notes.len();
    let variation_notes = first.variations[0].notes.len();
    assert_eq!(joined_perf.notes.len(), primer_notes + variation_notes);
    if variation_notes > 0 {
        let plain_perf = read(&plain).expect("the export reads back");
        assert_eq!(plain_perf.notes.len(), variation_notes);
    }

    // Issue 13: another library once one is loaded: saved, and a restart of the host is asked for;
    // generation goes on with the loaded library.
    let other = tmp.path().join("gpu-build/libonnxruntime.so.1.31.1");
    std::fs::create_dir_all(other.parent().expect("dir")).expect("dir");
    std::fs::write(&other, b"stands in for a GPU build; never loaded").expect("write");
    let machine = MachineSettings { ort_library: Some(other.clone()), execution: Provider::Auto };
    r.commands.send(Command::SetMachineSettings(machine.clone())).expect("send");
    let v = wait_view(&r, "the restart notice", |v| v.machine == machine);
    eprintln!("swap library  -> {}", v.status.text);
    assert_eq!(v.status.level, Level::Warning, "{}", v.status.text);
    assert!(v.status.text.contains("restart the host"), "{}", v.status.text);
    r.commands.send(Command::Generate).expect("send");
    let v = wait_view(&r, "a generation after the change", |v| v.status.text.contains("variations ready"));
    eprintln!("after swap    -> {} [{}]", v.status.text, v.engine);
    assert!(v.status.text.contains("restart the host"), "{}", v.status.text);
    assert_eq!(v.generation.as_ref().expect("generation").variations, first.variations, "the same library ran it");

    // The setting belongs to the machine: a project load neither carries nor changes it.
    let settings_bytes = std::fs::read(&settings_file).expect("settings");
    let saved = serde_json::to_value(r.params.session.snapshot().0).expect("state JSON");
    assert!(!saved.to_string().contains("gpu-build"), "the project holds no ONNX Runtime setting: {saved}");
    nice_plug::params::persist::PersistentField::set(&r.params.session, saved);
    wait_view(&r, "the project load", |v| v.status.text == "Session restored.");
    assert_eq!(std::fs::read(&settings_file).expect("settings"), settings_bytes, "a load leaves the setting alone");

    // A project saved by a newer Cadenza is refused in words, and nothing is lost.
    let before = r.params.session.snapshot().0;
    assert!(before.generation.is_some());
    nice_plug::params::persist::PersistentField::set(&r.params.session, serde_json::json!({"version": 99}));
    let v = wait_view(&r, "the refusal", |v| v.status.text.contains("newer Cadenza"));
    eprintln!("newer project -> {}", v.status.text);
    assert_eq!(r.params.session.snapshot().0, before, "the session is kept");
}
