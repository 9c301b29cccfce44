//! `cadenza generate` (and so `cargo xtask generate`, which forwards to it):
//! MIDI, WAV and PNG outputs, the same seed giving the same file, and every
//! bad input a clear message naming the file, a non-zero exit, no panic and
//! no output left behind; the longest-note flag. The model is a `tiny`-sized
//! export of random weights: these tests are about the command, core's
//! `engine.rs` tests about the music.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use cadenza_core::dataset::CheckpointMeta;
use cadenza_core::export::{build_model, export_weights, random_weights, synthetic_meta, Precision};
use cadenza_core::model::{onnx_names, ModelConfig};
use cadenza_core::sampling::{ContrastAdvice, LeadAdvice};
use cadenza_core::{midi, Performance};
use cadenza_test_support::{random_model, repo_root};
use prost::Message;

struct Fixture {
    dir: tempfile::TempDir,
    model: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = random_model(dir.path(), &ModelConfig::TINY, 3, "tiny");
        Fixture { dir, model }
    })
}

/// `cadenza generate ARGS`, from a folder outside the checkout.
fn generate(args: &[&str]) -> Output {
    crate::run(Command::new(env!("CARGO_BIN_EXE_cadenza")).current_dir(fixture().dir.path()).arg("generate").args(args))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn twinkle() -> PathBuf {
    repo_root().join("models/primers/twinkle.mid")
}

#[test]
fn writes_midi_wav_and_png_and_the_same_seed_gives_the_same_file() {
    let fx = fixture();
    let out = fx.dir.path().join("ok");
    std::fs::create_dir_all(&out).expect("dir");
    let (mid, wav, png) = (out.join("a.mid"), out.join("a.wav"), out.join("a.png"));
    let args = |m: &Path| {
        vec![
            "--style".to_string(),
            s(&fx.model).to_string(),
            "--primer".into(),
            s(&twinkle()).to_string(),
            "--seconds".into(),
            "4".into(),
            "--seed".into(),
            "7".into(),
            "--variations".into(),
            "2".into(),
            "--no-end".into(),
            "--out".into(),
            s(m).to_string(),
        ]
    };
    let mut first = args(&mid);
    first.extend(["--wav".into(), s(&wav).into(), "--png".into(), s(&png).into()]);
    let r = generate(&first.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    for i in 1..=2 {
        let m = out.join(format!("a-{i}.mid"));
        let perf = midi::read_file(&m, &midi::ReadOptions::default()).expect("the MIDI reads back");
        assert!(!perf.is_empty() && perf.duration_s() <= 4.0 + 0.01, "{}: {} s", m.display(), perf.duration_s());
        let w = std::fs::read(out.join(format!("a-{i}.wav"))).expect("wav");
        assert_eq!(&w[..4], b"RIFF");
        assert!(w.len() > 44 + 4 * 44_100 * 4, "at least 4 s of stereo audio");
        let p = std::fs::read(out.join(format!("a-{i}.png"))).expect("png");
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
    }
    let again = out.join("b.mid");
    let r = generate(&args(&again).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read(out.join("a-1.mid")).expect("a"), std::fs::read(out.join("b-1.mid")).expect("b"));
    assert_eq!(std::fs::read(out.join("a-2.mid")).expect("a"), std::fs::read(out.join("b-2.mid")).expect("b"));
}

#[test]
fn with_primer_writes_the_primer_first() {
    let fx = fixture();
    let out = fx.dir.path().join("with-primer.mid");
    let r = generate(&[
        "--style",
        s(&fx.model),
        "--primer",
        s(&twinkle()),
        "--seconds",
        "3",
        "--seed",
        "1",
        "--no-end",
        "--with-primer",
        "--out",
        s(&out),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let primer = midi::read_file(&twinkle(), &midi::ReadOptions::default()).expect("primer");
    let got = midi::read_file(&out, &midi::ReadOptions::default()).expect("output");
    let first: Vec<u8> = got.notes.iter().take(primer.notes.len()).map(|n| n.pitch).collect();
    assert_eq!(first, primer.notes.iter().map(|n| n.pitch).collect::<Vec<_>>());
    assert!(got.duration_s() > primer.duration_s() + 2.5);
}

/// Run with `args`, expect failure naming `names`, and no `out` left behind.
fn expect_failure(args: &[&str], names: &str, out: &Path) {
    let r = generate(args);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "expected a failure for {args:?}");
    assert!(stderr.contains(names), "the message should name {names}:\n{stderr}");
    assert!(!out.exists(), "{} was left behind", out.display());
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().expect("parent"))
        .map(|rd| rd.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn bad_inputs_fail_clearly_without_output() {
    let fx = fixture();
    let dir = fx.dir.path().join("bad");
    std::fs::create_dir_all(&dir).expect("dir");
    let out = dir.join("out.mid");
    let o = s(&out);

    let missing = dir.join("missing.onnx");
    expect_failure(&["--style", s(&missing), "--out", o], "missing.onnx", &out);
    expect_failure(&["--style", "no-such-style", "--out", o], "no-such-style", &out);

    let corrupt = dir.join("corrupt.onnx");
    std::fs::write(&corrupt, b"not a model").expect("write");
    expect_failure(&["--style", s(&corrupt), "--out", o], "corrupt.onnx", &out);

    let old = dir.join("old-codec.onnx");
    let cfg = ModelConfig::TINY;
    let mut m =
        build_model(&random_weights(&cfg, 3), &synthetic_meta(&cfg, "test", ""), Precision::Float32).expect("model");
    for p in &mut m.metadata_props {
        if p.key == onnx_names::META_CODEC_VERSION {
            p.value = "999".into();
        }
    }
    std::fs::write(&old, m.encode_to_vec()).expect("write");
    expect_failure(&["--style", s(&old), "--out", o], "codec version 999", &out);

    let model = s(&fx.model);
    let text = dir.join("notes.txt");
    std::fs::write(&text, "these are not MIDI bytes at all").expect("write");
    expect_failure(&["--style", model, "--primer", s(&text), "--out", o], "notes.txt", &out);

    let silent = dir.join("silent.mid");
    std::fs::write(&silent, midi::write_performance(&Performance::default(), &midi::WriteOptions::default()))
        .expect("write");
    expect_failure(&["--style", model, "--primer", s(&silent), "--out", o], "silent.mid", &out);

    let unwritable = dir.join("no-such-folder").join("out.mid");
    expect_failure(&["--style", model, "--out", s(&unwritable)], "no-such-folder", &unwritable);

    let not_sf2 = dir.join("fake.sf2");
    std::fs::write(&not_sf2, b"RIFF....sfbk but not really").expect("write");
    let wav = dir.join("out.wav");
    expect_failure(&["--style", model, "--out", o, "--wav", s(&wav), "--soundfont", s(&not_sf2)], "fake.sf2", &out);
    assert!(!wav.exists());
    let no_sf2 = dir.join("absent.sf2");
    expect_failure(&["--style", model, "--out", o, "--wav", s(&wav), "--soundfont", s(&no_sf2)], "absent.sf2", &out);
}

#[test]
fn the_longest_note_flag_limits_every_note_and_refuses_nonsense() {
    let fx = fixture();
    let dir = fx.dir.path().join("max-note");
    std::fs::create_dir_all(&dir).expect("dir");
    let out = dir.join("short.mid");
    let run = |max: &str, out: &Path| {
        generate(&[
            "--style",
            s(&fx.model),
            "--primer",
            s(&twinkle()),
            "--seconds",
            "8",
            "--seed",
            "2",
            "--no-end",
            "--max-note-seconds",
            max,
            "--out",
            s(out),
        ])
    };
    let r = run("0.25", &out);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let perf = midi::read_file(&out, &midi::ReadOptions::default()).expect("the MIDI reads back");
    assert!(perf.notes.len() >= 5, "{} notes", perf.notes.len());
    // MIDI ticks round times a little.
    let longest = perf.notes.iter().map(|n| n.end_s - n.start_s).fold(0.0f64, f64::max);
    assert!(longest <= 0.25 + 0.01, "a note of {longest} s");
    // Without the limit this model holds notes longer: the flag is what shortened them.
    let free = dir.join("free.mid");
    let r = run("0", &free);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let perf = midi::read_file(&free, &midi::ReadOptions::default()).expect("the MIDI reads back");
    let longest = perf.notes.iter().map(|n| n.end_s - n.start_s).fold(0.0f64, f64::max);
    assert!(longest > 0.5, "the longest free note is {longest} s");

    let bad = dir.join("bad.mid");
    let r = run("0.001", &bad);
    assert!(!r.status.success(), "a 1 ms longest note is refused");
    assert!(String::from_utf8_lossy(&r.stderr).contains("longest note"), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(!bad.exists());
}

/// `--contrast-with` leans the style away from another model: other music
/// than without it, the same again with the same seed; a missing contrast
/// model or a strength out of range fails naming it, without output.
#[test]
fn the_contrast_flags_lean_away_from_another_model_and_refuse_nonsense() {
    let fx = fixture();
    let dir = fx.dir.path().join("contrast");
    std::fs::create_dir_all(&dir).expect("dir");
    let other = random_model(&dir, &ModelConfig::TINY, 8, "other");
    let primer = twinkle();
    let run = |extra: &[&str], out: &Path| {
        let mut args = vec!["--style", s(&fx.model), "--primer", s(&primer), "--seconds", "6", "--seed", "4"];
        args.extend_from_slice(&["--no-end", "--out", s(out)]);
        args.extend_from_slice(extra);
        generate(&args)
    };
    let plain = dir.join("plain.mid");
    let r = run(&[], &plain);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let (a, b) = (dir.join("a.mid"), dir.join("b.mid"));
    // Following nothing (--follow 0), the lean is whole.
    let free = dir.join("free.mid");
    assert!(run(&["--follow", "0"], &free).status.success());
    for out in [&a, &b] {
        let r = run(&["--contrast-with", s(&other), "--follow", "0"], out);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        assert!(String::from_utf8_lossy(&r.stderr).contains("leaning away from"), "says so");
    }
    let read = |p: &Path| std::fs::read(p).expect("written");
    assert_eq!(read(&a), read(&b), "same seed, same file");
    assert_ne!(read(&a), read(&free), "leaning away changes the music");
    // Following Twinkle, which this model (no loss of its own recorded) does not find foreign: no lean.
    let followed = dir.join("followed.mid");
    let r = run(&["--contrast-with", s(&other)], &followed);
    let said = String::from_utf8_lossy(&r.stderr);
    assert!(said.contains("0% foreign to") && said.contains("it leaned at 0.00"), "{said}");
    assert_eq!(read(&followed), read(&plain), "a familiar primer is followed as it sounds");

    let out = dir.join("bad.mid");
    expect_failure(
        &["--style", s(&fx.model), "--out", s(&out), "--contrast-with", "no-such-parent"],
        "no-such-parent",
        &out,
    );
    let too_far = ["--style", s(&fx.model), "--out", s(&out), "--contrast-with", s(&other), "--contrast", "3"];
    expect_failure(&too_far, "contrast", &out);
    expect_failure(&["--style", s(&fx.model), "--out", s(&out), "--contrast", "0.5"], "contrast-with", &out);
}

/// `model` continuing Twinkle for 6 s at `seed` with `extra` flags into `out`,
/// which must succeed: the file's bytes and what generate said.
fn continue_twinkle(model: &Path, seed: &str, extra: &[&str], out: &Path) -> (Vec<u8>, String) {
    let primer = twinkle();
    let mut args = vec!["--style", s(model), "--primer", s(&primer), "--seconds", "6", "--seed", seed];
    args.extend_from_slice(&["--no-end", "--out", s(out)]);
    args.extend_from_slice(extra);
    let r = generate(&args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    (std::fs::read(out).expect("written"), String::from_utf8_lossy(&r.stderr).into_owned())
}

/// A model that names a style to lean away from does so by default when
/// that style's model lies beside it, as `--contrast-with` would, and says
/// so; `--contrast 0` turns it off; without the other model it says so and
/// plays without leaning.
#[test]
fn a_models_own_contrast_choice_is_the_default() {
    let fx = fixture();
    let dir = fx.dir.path().join("own-choice");
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = ModelConfig::TINY;
    let advice = ContrastAdvice {
        with: "parent".into(),
        strength: 0.5,
        measured: String::new(),
        following: None,
        following_strength: None,
    };
    // Random weights pay about 6 nats an event for Twinkle: against a home of 2 it is foreign, so the child leans.
    let meta = CheckpointMeta {
        contrast: Some(advice),
        best_val_loss: Some(2.0),
        ..synthetic_meta(&cfg, "child", "random weights")
    };
    let child = dir.join("child.onnx");
    export_weights(&random_weights(&cfg, 3), &meta, Precision::Float32, &child).expect("export");
    let plain_model = dir.join("plain.onnx");
    export_weights(
        &random_weights(&cfg, 3),
        &CheckpointMeta { contrast: None, ..meta },
        Precision::Float32,
        &plain_model,
    )
    .expect("export");
    let run = |model: &Path, extra: &[&str], out: &Path| continue_twinkle(model, "4", extra, out);
    let (alone, said) = run(&child, &[], &dir.join("alone.mid"));
    assert!(said.contains("leans away from parent by default, but no parent.onnx"), "{said}");
    assert_eq!(
        alone,
        run(&plain_model, &[], &dir.join("plain.mid")).0,
        "without its parent it plays as if it named none"
    );

    let parent = random_model(&dir, &cfg, 8, "parent");
    let (own, said) = run(&child, &[], &dir.join("own.mid"));
    assert!(said.contains("leaning away from") && said.contains("child's own choice"), "{said}");
    assert_ne!(own, alone, "it leans by default");
    let (asked, _) = run(&plain_model, &["--contrast-with", s(&parent)], &dir.join("asked.mid"));
    assert_eq!(own, asked, "as if --contrast-with named its parent");
    let (off, said) = run(&child, &["--contrast", "0"], &dir.join("off.mid"));
    assert_eq!(off, alone, "--contrast 0 turns it off");
    assert!(!said.contains("leaning away"), "{said}");

    // Several styles at once, joined by `+`: one style twice leans as it alone does; a second
    // style beside it changes the music, and both are named.
    let naming_at = |with: &str, following_strength: Option<f32>, name: &str| {
        let advice = ContrastAdvice {
            with: with.into(),
            strength: 0.5,
            measured: String::new(),
            following: None,
            following_strength,
        };
        let meta = CheckpointMeta {
            contrast: Some(advice),
            best_val_loss: Some(2.0),
            ..synthetic_meta(&cfg, "child", "random weights")
        };
        let path = dir.join(name);
        export_weights(&random_weights(&cfg, 3), &meta, Precision::Float32, &path).expect("export");
        path
    };
    let naming = |with: &str, name: &str| naming_at(with, None, name);
    let (twice, _) = run(&naming("parent+parent", "twice.onnx"), &[], &dir.join("twice.mid"));
    assert_eq!(twice, own, "the same style twice is that style");
    random_model(&dir, &cfg, 9, "uncle");
    let (both, said) = run(&naming("parent+uncle", "both.onnx"), &[], &dir.join("both.mid"));
    assert_ne!(both, own, "a second style to lean from changes the music");
    assert!(said.contains("parent.onnx and ") && said.contains("uncle.onnx"), "{said}");

    // Leaning harder while following a phrase, as the advice says: Twinkle is followed as with
    // `--contrast 0.75`, and the musician's `--contrast` scales it alike.
    let harder = naming_at("parent", Some(0.75), "harder.onnx");
    let (followed, said) = run(&harder, &[], &dir.join("harder.mid"));
    assert!(said.contains("at 0.5 (at 0.75 following a primer)"), "{said}");
    let asked = |c| run(&plain_model, &["--contrast-with", s(&parent), "--contrast", c], &dir.join("asked-at.mid")).0;
    assert_eq!(followed, asked("0.75"));
    assert_ne!(followed, own);
    assert_eq!(run(&harder, &["--contrast", "0.4"], &dir.join("harder-less.mid")).0, asked("0.6"));
}

/// A model measured to lead foreign primers ([`LeadAdvice`] in its sidecar)
/// leads them by default, as `--style-lead` makes any model do; `--style-lead
/// off` stops it; a model without the advice follows and says how to let it lead.
#[test]
fn a_model_that_leads_foreign_primers_does_so_by_default() {
    let fx = fixture();
    let dir = fx.dir.path().join("leads");
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = ModelConfig::TINY;
    // Random weights pay about 6 nats an event for anything: against a home of 2, Twinkle is wholly foreign.
    let plain = CheckpointMeta { best_val_loss: Some(2.0), ..synthetic_meta(&cfg, "tiny", "random weights") };
    let leads = CheckpointMeta { lead: Some(LeadAdvice { measured: "measured".into() }), ..plain.clone() };
    let (plain_model, lead_model) = (dir.join("plain.onnx"), dir.join("leads.onnx"));
    export_weights(&random_weights(&cfg, 5), &plain, Precision::Float32, &plain_model).expect("export");
    export_weights(&random_weights(&cfg, 5), &leads, Precision::Float32, &lead_model).expect("export");
    let run = |model: &Path, extra: &[&str], out: &Path| continue_twinkle(model, "2", extra, out);
    let (led, said) = run(&lead_model, &[], &dir.join("led.mid"));
    assert!(said.contains("Led by tiny"), "{said}");
    let (followed, said) = run(&plain_model, &[], &dir.join("followed.mid"));
    assert!(said.contains("--style-lead on lets tiny lead it"), "{said}");
    assert_ne!(led, followed, "the lead changes the music");
    assert_eq!(led, run(&plain_model, &["--style-lead"], &dir.join("on.mid")).0, "--style-lead alone is on");
    assert_eq!(led, run(&plain_model, &["--style-lead", "on"], &dir.join("on2.mid")).0);
    assert_eq!(followed, run(&lead_model, &["--style-lead", "off"], &dir.join("off.mid")).0);
    let r = generate(&["--style", s(&lead_model), "--style-lead", "sometimes", "--out", s(&dir.join("x.mid"))]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("`sometimes` is not a style lead"));
}
