//! The engine on real MIDI through ONNX Runtime, with a model exported by
//! cadenza-core's exporter from deterministic random weights (`tiny`-sized,
//! window 640): no libtorch. Whether the exported graph computes what the
//! libtorch model does is the trainer's parity test (`trainer/tests/parity.rs`).
//!
//! - the file passes `onnx.checker.check_model(full_check=True)`;
//! - determinism: same model, primer, settings and seed give the same events;
//! - steering and length are honoured on a real primer; the window slides;
//!   notes are released after the longest-note setting;
//! - the engine's cache buffers: chunked prefill, reuse after a longer
//!   sequence, dropping finished rows from the batch;
//! - bad files (and failed runs) are typed errors naming the file, including
//!   a model exported for an older graph version.
//!
//! Needs the ONNX Runtime library: `ORT_DYLIB_PATH` (set by `cargo xtask test`)
//! or the one `cargo xtask setup` recorded in .cadenza-env.json.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cadenza_core::dataset::CheckpointMeta;
use cadenza_core::engine::{DefaultLead, Engine, EngineError, EngineOptions, Provider};
use cadenza_core::export::{build_model, random_weights, synthetic_meta, Precision, Weights};
use cadenza_core::model::{onnx_names, ModelConfig};
use cadenza_core::request::{GenerateRequest, GenerationSettings, Length};
use cadenza_core::sampling::{
    ContrastAdvice, Key, LeadAdvice, LeadKeyAdvice, LeadRegisterAdvice, Sampling, Steering, StyleLead,
};
use cadenza_core::{codec, Performance};
use cadenza_test_support::{chorale, chorale_tokens, engine_options, python};
use prost::Message;

/// Largest allowed |a - b| between logits that must agree, fp32.
const PARITY_TOLERANCE: f32 = 1e-4;
/// The fixture model's style, and so its file name.
const STYLE: &str = "tiny640";

/// A `tiny` model with a 640-event window and random weights, exported.
struct Exported {
    _dir: tempfile::TempDir,
    weights: Weights,
    meta: CheckpointMeta,
    onnx: PathBuf,
}

fn exported() -> &'static Exported {
    static FIXTURE: OnceLock<Exported> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = ModelConfig { max_seq_len: 640, dropout: 0.0, ..ModelConfig::TINY };
        let weights = random_weights(&cfg, 5);
        let meta = synthetic_meta(&cfg, STYLE, "random weights");
        let onnx = dir.path().join(format!("{STYLE}.onnx"));
        cadenza_core::export::export_weights(&weights, &meta, Precision::Float32, &onnx).expect("export");
        Exported { _dir: dir, weights, meta, onnx }
    })
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn exported_model_passes_the_full_onnx_checker() {
    let fx = exported();
    let out = std::process::Command::new(python().expect("the project's Python"))
        .args(["-c", "import sys, onnx; m = onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True); print(m.ir_version, m.opset_import[0].version)"])
        .arg(&fx.onnx)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "onnx.checker: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|x| x.parse::<i64>().expect("number"));
    let (ir, opset) = (it.next().expect("ir"), it.next().expect("opset"));
    assert!(ir >= 9 && opset >= 17, "IR {ir}, opset {opset}");
}

#[test]
fn same_seed_same_events_and_seeds_and_variations_differ() {
    let fx = exported();
    let primer = chorale("bwv66_6.mid");
    let req = GenerateRequest {
        primer: Some(primer),
        settings: GenerationSettings {
            length: Length::Seconds(6.0),
            variations: 3,
            sampling: Sampling { temperature: 1.0, top_k: 0, top_p: 0.95, seed: 7 },
            ..Default::default()
        },
        ..Default::default()
    };
    let run = |req: &GenerateRequest| {
        let mut e = Engine::load(&fx.onnx, &engine_options()).expect("engine");
        e.generate_variations(req, &mut |_| true).expect("generate")
    };
    let a = run(&req);
    let b = run(&req);
    assert_eq!(a, b, "same model, primer, settings and seed");
    assert_eq!(a.len(), 3);
    assert_ne!(a[0].tokens, a[1].tokens, "variations are independent draws");
    let mut other = req.clone();
    other.settings.sampling.seed = 8;
    let c = run(&other);
    assert_ne!(a[0].tokens, c[0].tokens, "another seed, other music");
}

/// The plugin's way: the chosen variation alone, its first seconds handed
/// over as soon as they are made and then all of it, the rest in one batch
/// after it. Each variation is the one a single batch gives, also with the
/// own voice and past the window.
#[test]
fn the_chosen_variation_comes_early_and_every_variation_is_the_batchs() {
    let fx = exported();
    let mut e = Engine::load(&fx.onnx, &engine_options()).expect("engine");
    let window = e.info().config.max_seq_len;
    for (one, own_voice, length) in [(0, 0.0, Length::Seconds(6.0)), (2, 0.5, Length::Events(window + 100))] {
        let req = GenerateRequest {
            primer: Some(chorale("bwv66_6.mid")),
            settings: GenerationSettings {
                length,
                variations: 4,
                sampling: Sampling { seed: 9, ..Default::default() },
                steering: Steering { own_voice, allow_end: false, ..Default::default() },
            },
            ..Default::default()
        };
        let batch = e.generate_variations(&req, &mut |_| true).expect("one batch");
        let done_now = std::cell::Cell::new(0);
        let (mut handed, mut last_fraction) = (Vec::new(), 0.0);
        let early = e
            .generate_one_early(
                &req,
                one,
                &mut |p| {
                    assert!(p.fraction >= last_fraction && p.fraction <= 1.0, "{} after {last_fraction}", p.fraction);
                    last_fraction = p.fraction;
                    done_now.set(p.variations_done);
                    true
                },
                &mut |v, complete| handed.push((v.clone(), complete, done_now.get())),
            )
            .expect("chosen early");
        assert_eq!(early, batch, "own voice {own_voice}: the same variations as one batch");
        assert_eq!((done_now.get(), last_fraction), (4, 1.0));
        let [(start, false, 0), (all, true, 1)] = &handed[..] else {
            panic!(
                "its start, then all of it when it alone was done: {:?}",
                handed.iter().map(|h| (h.1, h.2)).collect::<Vec<_>>()
            )
        };
        assert_eq!(all, &early[one]);
        // The start holds the notes made so far: each is in the variation, those still sounding
        // then held to the end asked for (6 s) or to the moment it was handed over.
        assert!(!start.performance.is_empty() && start.performance.notes.len() < all.performance.notes.len());
        let end_s = start.performance.notes.iter().map(|n| n.end_s).fold(0.0, f64::max);
        assert!(end_s >= cadenza_core::engine::EARLY_START_S, "handed over after {end_s} s of music");
        if let Length::Seconds(asked) = length {
            assert_eq!(end_s, asked, "notes sounding when it was handed over are held to the end asked for");
        }
        for n in &start.performance.notes {
            let same =
                |m: &&cadenza_core::Note| m.pitch == n.pitch && m.start_s == n.start_s && m.velocity == n.velocity;
            let m = all.performance.notes.iter().find(same).unwrap_or_else(|| panic!("{n:?} is not in the variation"));
            assert!(m.end_s == n.end_s || n.end_s == end_s, "{n:?} against {m:?}");
        }
    }
    // One variation: its start, then all of it.
    let req = GenerateRequest {
        settings: GenerationSettings { variations: 1, length: Length::Seconds(8.0), ..Default::default() },
        ..Default::default()
    };
    let mut handed = Vec::new();
    let one = e
        .generate_one_early(&req, 3, &mut |_| true, &mut |v, complete| handed.push((v.clone(), complete)))
        .expect("one");
    assert_eq!(handed.iter().map(|h| h.1).collect::<Vec<_>>(), [false, true]);
    assert_eq!(handed[1].0, one[0]);
}

#[test]
fn a_real_primer_is_continued_within_the_steering_and_length() {
    let fx = exported();
    let primer = chorale("bwv1_6.mid");
    let steering = Steering {
        lowest_pitch: 48,
        highest_pitch: 76,
        key: Some(Key::parse("F major").expect("key")),
        max_polyphony: Some(4),
        density_bias: 0.0,
        allow_end: false,
        max_note_s: 3.0,
        follow: 0.0,
        own_voice: 0.0,
        style_lead: StyleLead::Off,
        contrast: 0.0,
    };
    let req = GenerateRequest {
        primer: Some(primer),
        settings: GenerationSettings {
            length: Length::Seconds(12.0),
            variations: 2,
            sampling: Sampling { seed: 3, ..Default::default() },
            steering,
        },
        ..Default::default()
    };
    let mut e = Engine::load(&fx.onnx, &engine_options()).expect("engine");
    assert_eq!(e.info().style, STYLE);
    assert_eq!(e.info().provider, "CPU");
    let mut calls = 0;
    let out = e
        .generate(&req, &mut |p| {
            calls += 1;
            assert!((0.0..=1.0).contains(&p.fraction));
            true
        })
        .expect("generate");
    assert!(calls > 10);
    let key = steering.key.expect("key");
    // Random weights play sparsely under this steering (its key and range leave 17 of the 128
    // pitches); together the variations hold enough notes for the checks below to bite.
    let notes: usize = out.iter().map(|p| p.notes.len()).sum();
    assert!(notes >= 8, "12 s continuations with notes: {notes}");
    for perf in &out {
        assert!(perf.duration_s() <= 12.0 + 1e-9, "{}", perf.duration_s());
        for n in &perf.notes {
            assert!((48..=76).contains(&n.pitch) && key.contains(n.pitch), "pitch {}", n.pitch);
            assert!(n.start_s >= 0.0 && n.end_s > n.start_s);
            let sounding = perf.notes.iter().filter(|m| m.start_s <= n.start_s && m.end_s > n.start_s).count();
            assert!(sounding <= 4, "{sounding} notes at {}", n.start_s);
        }
    }
}

#[test]
fn generation_slides_past_the_window_and_can_be_cancelled() {
    let fx = exported();
    let mut e = Engine::load(&fx.onnx, &engine_options()).expect("engine");
    let window = e.info().config.max_seq_len;
    let req = GenerateRequest {
        settings: GenerationSettings {
            length: Length::Events(window + 300),
            steering: Steering { allow_end: false, ..Default::default() },
            sampling: Sampling { seed: 5, ..Default::default() },
            ..Default::default()
        },
        ..Default::default()
    };
    let v = e.generate_variations(&req, &mut |_| true).expect("generate past the window");
    assert_eq!(v[0].tokens.len(), window + 300);
    assert!(!v[0].performance.is_empty());
    let mut n = 0;
    let r = e.generate(&req, &mut |_| {
        n += 1;
        n < 50
    });
    assert!(matches!(r, Err(EngineError::Cancelled)), "{r:?}");
}

#[test]
fn the_own_voice_reads_the_continuation_without_the_primer() {
    let fx = exported();
    let mut e = Engine::load(&fx.onnx, &engine_options()).expect("engine");
    let window = e.info().config.max_seq_len;
    let run = |e: &mut Engine, primer: &str, own_voice: f32, events: usize| {
        let req = GenerateRequest {
            primer: Some(chorale(primer)),
            settings: GenerationSettings {
                length: Length::Events(events),
                variations: 2,
                sampling: Sampling { seed: 11, ..Default::default() },
                steering: Steering { follow: 0.0, own_voice, allow_end: false, ..Default::default() },
            },
            ..Default::default()
        };
        e.generate_variations(&req, &mut |_| true).expect("generate").into_iter().map(|v| v.tokens).collect::<Vec<_>>()
    };
    // The primed stream decides alone at 0, so the primer matters.
    assert_ne!(run(&mut e, "bwv66_6.mid", 0.0, 60), run(&mut e, "bwv1_6.mid", 0.0, 60));
    // At 1 only the own voice decides, and it never reads the primer: two primers, one continuation.
    assert_eq!(run(&mut e, "bwv66_6.mid", 1.0, 60), run(&mut e, "bwv1_6.mid", 1.0, 60));
    // Half way both count: unlike either alone.
    let half = run(&mut e, "bwv66_6.mid", 0.5, 60);
    assert_ne!(half, run(&mut e, "bwv66_6.mid", 0.0, 60));
    assert_ne!(half, run(&mut e, "bwv66_6.mid", 1.0, 60));
    // Both streams slide their windows past the model's.
    let long = run(&mut e, "bwv66_6.mid", 0.5, window + 200);
    assert!(long.iter().all(|t| t.len() == window + 200));
}

/// A contrast model leans the style away from itself: at strength 0, or
/// against the style's own model, nothing changes; against another model
/// the music does. It slides its own (shorter) window, and the chosen
/// variation handed over early is the batch's. Following a primer, it leans
/// as far as the primer is foreign to the style: not at all on its own music.
#[test]
fn the_style_leans_away_from_a_contrast_model() {
    let fx = exported();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ModelConfig { max_seq_len: 320, dropout: 0.0, ..ModelConfig::TINY };
    let other = cadenza_test_support::random_model(dir.path(), &cfg, 6, "other");
    let mut e = Engine::load(&fx.onnx, &engine_options()).expect("engine");
    let window = e.info().config.max_seq_len;
    let req = |contrast: f32, events: usize| GenerateRequest {
        primer: Some(chorale("bwv66_6.mid")),
        settings: GenerationSettings {
            length: Length::Events(events),
            variations: 3,
            sampling: Sampling { seed: 13, ..Default::default() },
            // Following nothing, the lean is whole.
            steering: Steering { contrast, allow_end: false, follow: 0.0, ..Default::default() },
        },
        ..Default::default()
    };
    let run = |e: &mut Engine, r: &GenerateRequest| e.generate_variations(r, &mut |_| true).expect("generate");
    let alone = run(&mut e, &req(1.0, 80));
    assert!(e.contrast_info().is_none());
    e.set_contrast(Some(cadenza_core::engine::Model::load(&fx.onnx, &engine_options()).expect("itself")));
    assert_eq!(run(&mut e, &req(1.0, 80)), alone, "against itself there is nothing to lean away from");
    e.set_contrast(Some(cadenza_core::engine::Model::load(&other, &engine_options()).expect("other")));
    assert_eq!(e.contrast_info().map(|i| i.style.as_str()), Some("other"));
    assert_eq!(run(&mut e, &req(0.0, 80)), alone, "strength 0 changes nothing");
    let leaned = run(&mut e, &req(1.0, 80));
    assert_ne!(leaned, alone, "another model: other music");
    // Past both windows (the contrast model's is half the style's), early or in one batch.
    let long = req(1.0, window + 100);
    let batch = run(&mut e, &long);
    assert!(batch.iter().all(|v| v.tokens.len() == window + 100));
    let early = e.generate_one_early(&long, 1, &mut |_| true, &mut |_, _| {}).expect("early");
    assert_eq!(early, batch);
    // Following the chorale: these weights record no loss of their own, so no primer is
    // foreign to them and they do not lean; weights that find their own music cheap do.
    let following = |contrast| {
        let mut r = req(contrast, 80);
        r.settings.steering.follow = 0.7;
        r
    };
    let plain = run(&mut e, &following(0.0));
    assert_eq!(run(&mut e, &following(1.0)), plain, "a primer it finds its own is followed as it sounds");
    assert_eq!(e.primer_fit().map(|f| f.foreignness), Some(0.0));
    let path = dir.path().join("cheap-home.onnx");
    let meta = CheckpointMeta { best_val_loss: Some(2.0), ..fx.meta.clone() };
    let mut cheap = export_and_load(fx, &meta, &path);
    assert_eq!(run(&mut cheap, &following(1.0)), plain, "the same weights, no contrast model");
    cheap.set_contrast(Some(cadenza_core::engine::Model::load(&other, &engine_options()).expect("other")));
    assert_ne!(run(&mut cheap, &following(1.0)), plain, "a foreign primer: it leans");
    assert_eq!(cheap.primer_fit().map(|f| f.foreignness), Some(1.0));
    e.set_contrast(None);
    assert_eq!(run(&mut e, &req(1.0, 80)), alone);
}

/// Several contrast models are leaned from at once, through the geometric
/// mean of their predictions: two copies of one model lean as that model
/// alone does, to the token; another beside it changes the music; with the
/// own voice as well (three streams beside the style's) the music is the
/// same run after run and handed over early or in one batch; another set
/// while following a primer is leaned from only then.
#[test]
fn the_style_leans_away_from_several_contrast_models_at_once() {
    let fx = exported();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ModelConfig { max_seq_len: 320, dropout: 0.0, ..ModelConfig::TINY };
    let other = cadenza_test_support::random_model(dir.path(), &cfg, 6, "other");
    let third = cadenza_test_support::random_model(dir.path(), &cfg, 9, "third");
    let load = |p: &std::path::Path| cadenza_core::engine::Model::load(p, &engine_options()).expect("model");
    let mut e = Engine::load(&fx.onnx, &engine_options()).expect("engine");
    let req = GenerateRequest {
        primer: Some(chorale("bwv66_6.mid")),
        settings: GenerationSettings {
            length: Length::Events(120),
            variations: 2,
            sampling: Sampling { seed: 5, ..Default::default() },
            steering: Steering { contrast: 1.0, allow_end: false, follow: 0.0, ..Default::default() },
        },
        ..Default::default()
    };
    let run = |e: &mut Engine| e.generate_variations(&req, &mut |_| true).expect("generate");
    e.set_contrast(Some(load(&other)));
    let one = run(&mut e);
    e.set_contrasts(vec![load(&other), load(&other)]);
    assert_eq!(e.contrast_infos().len(), 2);
    assert_eq!(run(&mut e), one, "the mean of one model twice is that model");
    e.set_contrasts(vec![load(&other), load(&third)]);
    let names: Vec<&str> = e.contrast_infos().iter().map(|i| i.style.as_str()).collect();
    assert_eq!(names, ["other", "third"]);
    let both = run(&mut e);
    assert_ne!(both, one, "a second model to lean from changes the music");
    assert!(both.iter().all(|v| v.tokens.len() == 120));
    let early = e.generate_one_early(&req, 1, &mut |_| true, &mut |_, _| {}).expect("early");
    assert_eq!(early, both, "handed over early or in one batch, the same");
    // The own voice beside both: three side streams.
    let voiced = GenerateRequest {
        settings: GenerationSettings { steering: Steering { own_voice: 0.5, ..req.settings.steering }, ..req.settings },
        ..req.clone()
    };
    let three = e.generate_variations(&voiced, &mut |_| true).expect("generate");
    assert_ne!(three, both, "the own voice changes the music");
    assert_eq!(e.generate_variations(&voiced, &mut |_| true).expect("generate"), three, "the same again");
    let early = e.generate_one_early(&voiced, 0, &mut |_| true, &mut |_, _| {}).expect("early");
    assert_eq!(early, three, "handed over early or in one batch, the same");
    e.set_contrasts(Vec::new());
    assert!(e.contrast_info().is_none());

    // Another set while following a primer: improvising leans from the first, following from
    // the second. Weights that find their own music cheap find the chorale foreign, so they lean.
    let meta = CheckpointMeta { best_val_loss: Some(2.0), ..fx.meta.clone() };
    let mut cheap = export_and_load(fx, &meta, &dir.path().join("cheap-home.onnx"));
    let following = GenerateRequest {
        settings: GenerationSettings { steering: Steering { follow: 0.7, ..req.settings.steering }, ..req.settings },
        ..req.clone()
    };
    let run_both = |e: &mut Engine| {
        let free = e.generate_variations(&req, &mut |_| true).expect("generate");
        (free, e.generate_variations(&following, &mut |_| true).expect("generate"))
    };
    cheap.set_contrasts(vec![load(&other)]);
    let (free_other, followed_other) = run_both(&mut cheap);
    cheap.set_contrasts(vec![load(&third)]);
    let (_, followed_third) = run_both(&mut cheap);
    assert_ne!(followed_third, followed_other);
    cheap.set_contrasts(vec![load(&other)]);
    cheap.set_following_contrasts(Some(vec![load(&third)]));
    let names: Vec<&str> = cheap.following_contrast_infos().iter().map(|i| i.style.as_str()).collect();
    assert_eq!(names, ["third"]);
    assert_eq!(
        run_both(&mut cheap),
        (free_other.clone(), followed_third),
        "improvising from one, following from the other"
    );
    cheap.set_contrasts(vec![load(&other)]);
    assert_eq!(cheap.following_contrast_infos().len(), 1, "a new set clears the one for following");
    assert_eq!(cheap.following_contrast_infos()[0].style, "other");

    // Leaning harder while following: as far as the steering's contrast that many times over,
    // improvising as before; a new set leans alike again.
    let harder = GenerateRequest {
        settings: GenerationSettings {
            steering: Steering { contrast: 1.5, ..following.settings.steering },
            ..following.settings
        },
        ..following.clone()
    };
    let followed_harder = cheap.generate_variations(&harder, &mut |_| true).expect("generate");
    assert_ne!(followed_harder, followed_other);
    cheap.set_following_contrast_gain(1.5);
    assert_eq!(run_both(&mut cheap), (free_other.clone(), followed_harder), "1.5 times as far only while following");
    cheap.set_contrasts(vec![load(&other)]);
    assert_eq!(run_both(&mut cheap), (free_other, followed_other), "a new set clears the gain");
}

/// A checkpoint's contrast advice travels through the export into the
/// loaded model's info; a malformed one is refused at export (naming the
/// checkpoint) and at load (naming the model).
#[test]
fn a_models_own_contrast_choice_is_exported_and_read_back() {
    let fx = exported();
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(Engine::load(&fx.onnx, &engine_options()).expect("engine").info().contrast_advice, None);
    let advice = ContrastAdvice {
        with: "rock".into(),
        strength: 0.5,
        measured: "named right more often".into(),
        following: None,
        following_strength: None,
    };
    let meta = CheckpointMeta { contrast: Some(advice.clone()), ..fx.meta.clone() };
    let path = dir.path().join("leaning.onnx");
    let e = export_and_load(fx, &meta, &path);
    assert_eq!(e.info().contrast_advice.as_ref(), Some(&advice));

    let bad = CheckpointMeta { contrast: Some(ContrastAdvice { strength: 3.0, ..advice.clone() }), ..fx.meta.clone() };
    let e = cadenza_core::export::export_weights(&fx.weights, &bad, Precision::Float32, &path).expect_err("strength");
    assert!(e.to_string().contains("contrast 3 is outside"), "{e}");
    let odd = dir.path().join("odd-advice.onnx");
    with_metadata_of(fx, &meta, onnx_names::META_CONTRAST, "lots", &odd);
    let e = Engine::load(&odd, &engine_options()).err().expect("not a number");
    assert!(matches!(e, EngineError::Metadata { .. }) && e.to_string().contains("odd-advice.onnx"), "{e}");
    assert!(e.to_string().contains("`lots` is not a number"), "{e}");
    with_metadata_of(fx, &meta, onnx_names::META_CONTRAST_WITH, "../rock", &odd);
    let e = Engine::load(&odd, &engine_options()).err().expect("not a style");
    assert!(e.to_string().contains("`../rock` is not a style name"), "{e}");
    // Several styles at once, joined by `+`; an empty one among them is refused.
    let several = ContrastAdvice { with: "pop+rock".into(), ..advice.clone() };
    let meta = CheckpointMeta { contrast: Some(several.clone()), ..fx.meta.clone() };
    let e = export_and_load(fx, &meta, &dir.path().join("leaning-twice.onnx"));
    assert_eq!(e.info().contrast_advice.as_ref().map(|a| a.styles().collect::<Vec<_>>()), Some(vec!["pop", "rock"]));
    with_metadata_of(fx, &meta, onnx_names::META_CONTRAST_WITH, "pop+", &odd);
    let e = Engine::load(&odd, &engine_options()).err().expect("an empty style");
    assert!(e.to_string().contains("`pop+` is not a style name"), "{e}");
    // Others while following a primer travel too; a malformed set is refused at export.
    let other_when_following = ContrastAdvice { following: Some("pop+rock".into()), ..advice.clone() };
    let meta = CheckpointMeta { contrast: Some(other_when_following.clone()), ..fx.meta.clone() };
    let e = export_and_load(fx, &meta, &dir.path().join("leaning-when-following.onnx"));
    assert_eq!(e.info().contrast_advice.as_ref(), Some(&other_when_following));
    let bad = ContrastAdvice { following: Some("pop+../rock".into()), ..advice.clone() };
    let meta = CheckpointMeta { contrast: Some(bad), ..fx.meta.clone() };
    let e = cadenza_core::export::export_weights(&fx.weights, &meta, Precision::Float32, &odd).expect_err("bad set");
    assert!(e.to_string().contains("`pop+../rock` is not a style name"), "{e}");
    // So does how far while following; one out of range is refused at export and at load.
    let harder = ContrastAdvice { following_strength: Some(0.75), ..other_when_following.clone() };
    let meta = CheckpointMeta { contrast: Some(harder.clone()), ..fx.meta.clone() };
    let e = export_and_load(fx, &meta, &dir.path().join("leaning-harder-when-following.onnx"));
    assert_eq!(e.info().contrast_advice.as_ref(), Some(&harder));
    assert_eq!(harder.following_gain(), 1.5);
    assert_eq!(advice.following_gain(), 1.0);
    let bad = CheckpointMeta {
        contrast: Some(ContrastAdvice { following_strength: Some(2.5), ..advice.clone() }),
        ..fx.meta.clone()
    };
    let e = cadenza_core::export::export_weights(&fx.weights, &bad, Precision::Float32, &odd).expect_err("too far");
    assert!(e.to_string().contains("contrast following a primer 2.5 is outside"), "{e}");
    with_metadata_of(fx, &meta, onnx_names::META_CONTRAST_FOLLOWING_STRENGTH, "hard", &odd);
    let e = Engine::load(&odd, &engine_options()).err().expect("not a number");
    assert!(e.to_string().contains("odd-advice.onnx") && e.to_string().contains("`hard` is not a number"), "{e}");
    with_metadata_of(fx, &meta, onnx_names::META_CONTRAST_FOLLOWING_STRENGTH, "0", &odd);
    let e = Engine::load(&odd, &engine_options()).err().expect("none");
    assert!(e.to_string().contains("contrast following a primer 0 is outside"), "{e}");

    let key = LeadKeyAdvice { gain: 2.0, measured: "the key kept".into() };
    let keyed = CheckpointMeta { lead_key: Some(key.clone()), ..fx.meta.clone() };
    with_metadata_of(fx, &keyed, onnx_names::META_LEAD_KEY_GAIN, "9", &odd);
    let e = Engine::load(&odd, &engine_options()).err().expect("too strong");
    assert!(e.to_string().contains("odd-advice.onnx") && e.to_string().contains("lead key gain 9"), "{e}");
    let mute = CheckpointMeta { lead_key: Some(LeadKeyAdvice { measured: String::new(), ..key }), ..fx.meta.clone() };
    let e = cadenza_core::export::export_weights(&fx.weights, &mute, Precision::Float32, &path).expect_err("mute");
    assert!(e.to_string().contains("lead key gain says nothing"), "{e}");
    let register = LeadRegisterAdvice { spread: 2.0, measured: "named rock more often".into() };
    let spread = CheckpointMeta { lead_register: Some(register.clone()), ..fx.meta.clone() };
    with_metadata_of(fx, &spread, onnx_names::META_LEAD_REGISTER_SPREAD, "wide", &odd);
    let e = Engine::load(&odd, &engine_options()).err().expect("not a number");
    assert!(e.to_string().contains("odd-advice.onnx") && e.to_string().contains("`wide` is not a number"), "{e}");
    with_metadata_of(fx, &spread, onnx_names::META_LEAD_REGISTER_SPREAD, "0.5", &odd);
    let e = Engine::load(&odd, &engine_options()).err().expect("narrower");
    assert!(e.to_string().contains("lead register spread 0.5 is outside"), "{e}");
    let mute = CheckpointMeta {
        lead_register: Some(LeadRegisterAdvice { measured: String::new(), ..register }),
        ..fx.meta.clone()
    };
    let e = cadenza_core::export::export_weights(&fx.weights, &mute, Precision::Float32, &path).expect_err("mute");
    assert!(e.to_string().contains("lead register spread says nothing"), "{e}");
    // Lead advice that says nothing of what was measured is refused at export, naming the checkpoint.
    let mute = CheckpointMeta { lead: Some(LeadAdvice { measured: " ".into() }), ..fx.meta.clone() };
    let e = cadenza_core::export::export_weights(&fx.weights, &mute, Precision::Float32, &path).expect_err("mute");
    let source = fx.weights.source.display().to_string();
    assert!(e.to_string().contains("lead advice") && e.to_string().contains(&source), "{e}");
}

#[test]
fn the_engine_says_what_the_primer_cost_and_whether_the_style_led_it() {
    let fx = exported();
    let dir = tempfile::tempdir().expect("tempdir");
    // The same random weights, recorded as finding their own music cheap or as dear as anything.
    let load_with = |home: f64, name: &str, lead: Option<LeadAdvice>| {
        let meta = CheckpointMeta { best_val_loss: Some(home), lead, ..fx.meta.clone() };
        export_and_load(fx, &meta, &dir.path().join(format!("{name}.onnx")))
    };
    let load = |home: f64, name: &str| load_with(home, name, None);
    let req = |primer: Option<Performance>, lead: StyleLead| GenerateRequest {
        primer,
        settings: GenerationSettings {
            length: Length::Events(16),
            steering: Steering { style_lead: lead, ..Default::default() },
            ..Default::default()
        },
        ..Default::default()
    };
    let generate = |e: &mut Engine, r: &GenerateRequest| {
        e.generate_variations(r, &mut |_| true).expect("generate");
        e.primer_fit()
    };
    // Random weights pay about ln 391 = 6 nats for each of a chorale's events.
    let mut cheap_home = load(2.0, "cheap");
    // By default the model decides, and one whose sidecar says nothing does not lead.
    assert_eq!(cheap_home.info().lead_advice, None);
    let fit = generate(&mut cheap_home, &req(Some(chorale("bwv1_6.mid")), StyleLead::Model)).expect("a primer's fit");
    assert!((5.0..7.0).contains(&fit.nats_per_event), "{fit:?}");
    assert_eq!((fit.home_nats_per_event, fit.foreignness, fit.led), (Some(2.0), 1.0, false));
    let advice = fit.advice("tiny", "--style-lead on").expect("a foreign primer is worth a word");
    assert!(advice.contains("foreign to tiny") && advice.contains("--style-lead on lets tiny lead it"), "{advice}");
    // Scoring a primer alone gives what the generation found it cost, and a primer without notes costs nothing.
    let cost = cheap_home.primer_cost(&chorale("bwv1_6.mid"), None).expect("scored");
    assert_eq!(cost, Some(fit.nats_per_event));
    assert_eq!(cheap_home.primer_cost(&Performance::default(), None).expect("scored"), None);
    assert!(cheap_home.primer_cost(&chorale("bwv1_6.mid"), Some(f64::NAN)).is_err(), "an end that is no time");
    // Let the style lead, and it says it did, with no advice to turn the lead on.
    let led = generate(&mut cheap_home, &req(Some(chorale("bwv1_6.mid")), StyleLead::On)).expect("a primer's fit");
    assert!(led.led && led.nats_per_event == fit.nats_per_event, "{led:?}");
    let advice = led.advice("tiny", "--style-lead on").expect("a word on the lead");
    assert!(advice.starts_with("Led by tiny: your phrase") && !advice.contains("--style-lead"), "{advice}");
    // Improvising has no primer to weigh, and a failed request leaves no fit behind.
    assert_eq!(generate(&mut cheap_home, &req(None, StyleLead::Off)), None);
    generate(&mut cheap_home, &req(Some(chorale("bwv1_6.mid")), StyleLead::Off));
    let mut bad = req(Some(chorale("bwv1_6.mid")), StyleLead::Off);
    bad.settings.steering.follow = 2.0;
    assert!(cheap_home.generate_variations(&bad, &mut |_| true).is_err());
    assert_eq!(cheap_home.primer_fit(), None);
    // A model whose own music costs as much finds the chorale its own: nothing to say, nothing led.
    let mut dear_home = load(6.5, "dear");
    let own = generate(&mut dear_home, &req(Some(chorale("bwv1_6.mid")), StyleLead::On)).expect("a primer's fit");
    assert_eq!((own.foreignness, own.led), (0.0, false));
    assert_eq!(own.advice("tiny", "--style-lead on"), None);
    // A checkpoint measured to lead carries it into the model: it leads by default, and Off still stops it.
    let advice = LeadAdvice { measured: "its own primers kept".into() };
    let mut leads = load_with(2.0, "leads", Some(advice.clone()));
    assert_eq!(leads.info().lead_advice, Some(advice));
    assert_eq!(leads.default_lead(), DefaultLead::ByCost);
    let by_default = generate(&mut leads, &req(Some(chorale("bwv1_6.mid")), StyleLead::Model)).expect("a fit");
    assert!(by_default.led && by_default.foreignness == 1.0, "{by_default:?}");
    let off = generate(&mut leads, &req(Some(chorale("bwv1_6.mid")), StyleLead::Off)).expect("a fit");
    assert!(!off.led, "{off:?}");
    // The lead changes the music: the own voice takes over.
    let music = |e: &mut Engine, lead| {
        e.generate_variations(&req(Some(chorale("bwv1_6.mid")), lead), &mut |_| true).expect("generate")[0]
            .tokens
            .clone()
    };
    assert_ne!(music(&mut leads, StyleLead::Model), music(&mut leads, StyleLead::Off));
    assert_eq!(music(&mut leads, StyleLead::Model), music(&mut cheap_home, StyleLead::On));
    // A checkpoint measured to hold the key harder while it leads carries the gain into the model;
    // it changes only what is led.
    let key = LeadKeyAdvice { gain: 4.0, measured: "the key kept".into() };
    let meta = CheckpointMeta { best_val_loss: Some(2.0), lead_key: Some(key.clone()), ..fx.meta.clone() };
    let mut keyed = export_and_load(fx, &meta, &dir.path().join("keyed.onnx"));
    assert_eq!(keyed.info().lead_key_advice, Some(key));
    assert_ne!(music(&mut keyed, StyleLead::On), music(&mut cheap_home, StyleLead::On));
    assert_eq!(music(&mut keyed, StyleLead::Off), music(&mut cheap_home, StyleLead::Off));
    // So does one measured to spread its parts wider while it leads.
    let register = LeadRegisterAdvice { spread: 4.0, measured: "named rock more often".into() };
    let meta = CheckpointMeta { best_val_loss: Some(2.0), lead_register: Some(register.clone()), ..fx.meta.clone() };
    let mut spread = export_and_load(fx, &meta, &dir.path().join("spread.onnx"));
    assert_eq!(spread.info().lead_register_advice, Some(register));
    assert_ne!(music(&mut spread, StyleLead::On), music(&mut cheap_home, StyleLead::On));
    assert_eq!(music(&mut spread, StyleLead::Off), music(&mut cheap_home, StyleLead::Off));
    // The engine's own setting wins over the advice: at 1 the register holds as without it.
    spread.set_lead_register_spread(Some(1.0));
    assert_eq!(music(&mut spread, StyleLead::On), music(&mut cheap_home, StyleLead::On));
}

/// A style judge beside a model lets a model that does not lead by cost lead a primer it names
/// another style, as foreign as it doubts the model's style, and says so; one naming the primer
/// the model's own style leaves it be. A model that leads by cost still leans away from its
/// contrast model as far as the judge doubts its style. A malformed judge is refused at load,
/// naming its file.
#[test]
fn a_style_judge_beside_the_model_lets_it_lead_what_it_names_another_style() {
    use cadenza_core::classifier::{StyleJudge, JUDGE_FILE, JUDGE_VERSION};
    use cadenza_core::features::NUM_FEATURES;
    let fx = exported();
    let dir = tempfile::tempdir().expect("tempdir");
    // Its own music as dear as the chorale: by cost nothing is foreign to it.
    let meta = CheckpointMeta { best_val_loss: Some(6.5), ..fx.meta.clone() };
    let path = dir.path().join("judged.onnx");
    cadenza_core::export::export_weights(&fx.weights, &meta, Precision::Float32, &path).expect("export");
    // A judge that names everything by its bias alone: `other` (by 4 nats) or the model's own style.
    let judge = |named_other: bool| -> StyleJudge {
        let row = |bias: f64| [vec![0.0; NUM_FEATURES], vec![bias]].concat();
        let (own, other) = if named_other { (0.0, 4.0) } else { (4.0, 0.0) };
        serde_json::from_value(serde_json::json!({
            "version": JUDGE_VERSION,
            "window_s": 10.0,
            "measured": "by its bias alone",
            "classifier": {
                "classes": [STYLE, "other"],
                "mean": vec![0.0; NUM_FEATURES],
                "std": vec![1.0; NUM_FEATURES],
                "weights": [row(own), row(other)],
            }
        }))
        .expect("a judge")
    };
    let req = |lead| GenerateRequest {
        primer: Some(chorale("bwv1_6.mid")),
        settings: GenerationSettings {
            length: Length::Events(16),
            steering: Steering { style_lead: lead, ..Default::default() },
            ..Default::default()
        },
        ..Default::default()
    };
    let run = |e: &mut Engine, lead| {
        let tokens = e.generate_variations(&req(lead), &mut |_| true).expect("generate")[0].tokens.clone();
        (tokens, e.primer_fit().expect("a primer's fit"))
    };
    let mut alone = Engine::load(&path, &engine_options()).expect("engine");
    assert!(alone.judge().is_none());
    assert_eq!(alone.default_lead(), DefaultLead::Never);
    let (followed, fit) = run(&mut alone, StyleLead::Model);
    assert_eq!((fit.foreignness, fit.led, fit.judged), (0.0, false, None));

    let file = dir.path().join(JUDGE_FILE);
    let write = |j: &StyleJudge| std::fs::write(&file, serde_json::to_string(j).expect("json")).expect("write");
    write(&judge(true));
    let mut judged = Engine::load(&path, &engine_options()).expect("engine with a judge");
    assert_eq!(judged.default_lead(), DefaultLead::ByJudge);
    let (led_music, led) = run(&mut judged, StyleLead::Model);
    let other_p = 4f64.exp() / (1.0 + 4f64.exp());
    assert!(led.led && (f64::from(led.foreignness) - other_p).abs() < 1e-4, "{led:?}");
    assert_eq!(led.judged.as_ref().map(|j| j.named.as_str()), Some("other"));
    assert_ne!(led_music, followed, "led, the own voice takes over");
    let advice = led.advice(STYLE, "--style-lead on").expect("a word on the lead");
    assert!(advice.starts_with(&format!("Led by {STYLE}")) && advice.contains("sounds like other"), "{advice}");
    assert!(!run(&mut judged, StyleLead::Off).1.led, "Off still follows");
    // Without the judge the same engine follows as before.
    judged.set_judge(None);
    assert_eq!(judged.default_lead(), DefaultLead::Never);
    assert_eq!(run(&mut judged, StyleLead::Model).0, followed);

    // A model measured to lead by cost finds the chorale its own and follows it, yet leans away
    // from its contrast model as far as the judge doubts its style, and not at all without the judge.
    let cfg = ModelConfig { max_seq_len: 320, dropout: 0.0, ..ModelConfig::TINY };
    let other = cadenza_test_support::random_model(dir.path(), &cfg, 6, "other");
    let lead = Some(LeadAdvice { measured: "its own primers kept".into() });
    let meta = CheckpointMeta { best_val_loss: Some(6.5), lead, ..fx.meta.clone() };
    let mut by_cost = export_and_load(fx, &meta, &dir.path().join("by-cost.onnx"));
    assert_eq!(by_cost.default_lead(), DefaultLead::ByCost);
    let leaning = |e: &mut Engine, contrast: f32| {
        let mut r = req(StyleLead::Model);
        r.settings.steering.contrast = contrast;
        let tokens = e.generate_variations(&r, &mut |_| true).expect("generate")[0].tokens.clone();
        (tokens, e.primer_fit().expect("a primer's fit"))
    };
    let (plain, _) = leaning(&mut by_cost, 0.0);
    by_cost.set_contrast(Some(cadenza_core::engine::Model::load(&other, &engine_options()).expect("other")));
    let (leaned, fit) = leaning(&mut by_cost, 1.0);
    assert!((fit.foreignness, fit.led) == (0.0, false) && (f64::from(fit.lean) - other_p).abs() < 1e-4, "{fit:?}");
    assert_ne!(leaned, plain, "named another style by ear, it leans");
    by_cost.set_judge(None);
    let (unheard, fit) = leaning(&mut by_cost, 1.0);
    assert_eq!((unheard, fit.lean), (plain, 0.0), "by cost alone the chorale is its own");

    write(&judge(false));
    let mut own = Engine::load(&path, &engine_options()).expect("engine with a judge");
    let (music, fit) = run(&mut own, StyleLead::Model);
    assert_eq!((music, fit.foreignness, fit.led), (followed, 0.0, false));
    assert_eq!(fit.judged.map(|j| j.named), Some(STYLE.to_string()));

    // A model that leads by the judge leans by ear alone: weights whose own music is cheap find
    // the chorale dear, yet while the judge names it their style they follow it unleaned.
    let cheap = CheckpointMeta { best_val_loss: Some(2.0), ..fx.meta.clone() };
    let mut by_ear = export_and_load(fx, &cheap, &dir.path().join("by-ear.onnx"));
    assert_eq!(by_ear.default_lead(), DefaultLead::ByJudge);
    let (plain, _) = leaning(&mut by_ear, 0.0);
    by_ear.set_contrast(Some(cadenza_core::engine::Model::load(&other, &engine_options()).expect("other")));
    let (music, fit) = leaning(&mut by_ear, 1.0);
    assert!(fit.foreignness == 1.0 && fit.lean == 0.0, "dear by cost, its own by ear: {fit:?}");
    assert_eq!(music, plain, "it does not lean");
    by_ear.set_judge(Some(judge(true)));
    let (led_plain, _) = leaning(&mut by_ear, 0.0);
    let (leaned, fit) = leaning(&mut by_ear, 1.0);
    assert!((f64::from(fit.lean) - other_p).abs() < 1e-4, "{fit:?}");
    assert_ne!(leaned, led_plain, "named another style, it leans as far as the judge doubts it");

    let mut short = judge(true);
    short.window_s = 0.0;
    write(&short);
    let e = Engine::load(&path, &engine_options()).err().expect("a bad judge");
    assert!(matches!(e, EngineError::Judge(_)) && e.to_string().contains(JUDGE_FILE), "{e}");
    assert!(e.to_string().contains("phrase length 0 s"), "{e}");
    std::fs::write(&file, "{").expect("write");
    let e = Engine::load(&path, &engine_options()).err().expect("not json");
    assert!(e.to_string().contains("not a style judge"), "{e}");
}

/// The fixture's weights exported to `path` with `meta`, and loaded.
fn export_and_load(fx: &Exported, meta: &CheckpointMeta, path: &Path) -> Engine {
    cadenza_core::export::export_weights(&fx.weights, meta, Precision::Float32, path).expect("export");
    Engine::load(path, &engine_options()).expect("engine")
}

fn with_metadata(fx: &Exported, key: &str, value: &str, out: &Path) {
    with_metadata_of(fx, &fx.meta, key, value, out);
}

/// Write `fx`'s weights with the sidecar `meta` and one metadata entry changed.
fn with_metadata_of(fx: &Exported, meta: &CheckpointMeta, key: &str, value: &str, out: &Path) {
    let mut m = build_model(&fx.weights, meta, Precision::Float32).expect("model");
    for p in &mut m.metadata_props {
        if p.key == key {
            p.value = value.to_string();
        }
    }
    std::fs::write(out, m.encode_to_vec()).expect("write");
}

#[test]
fn bad_model_files_are_typed_errors_naming_the_file() {
    let fx = exported();
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = engine_options();

    let missing = dir.path().join("missing.onnx");
    let e = Engine::load(&missing, &opts).err().expect("missing");
    assert!(matches!(e, EngineError::ModelRead { .. }) && e.to_string().contains("missing.onnx"), "{e}");

    let corrupt = dir.path().join("corrupt.onnx");
    std::fs::write(&corrupt, b"this is not a protobuf, let alone an ONNX model").expect("write");
    let e = Engine::load(&corrupt, &opts).err().expect("corrupt");
    assert!(matches!(e, EngineError::ModelInvalid { .. }) && e.to_string().contains("corrupt.onnx"), "{e}");

    let truncated = dir.path().join("truncated.onnx");
    let bytes = std::fs::read(&fx.onnx).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let e = Engine::load(&truncated, &opts).err().expect("truncated");
    assert!(e.to_string().contains("truncated.onnx"), "{e}");

    let old_codec = dir.path().join("old-codec.onnx");
    with_metadata(fx, onnx_names::META_CODEC_VERSION, "0", &old_codec);
    let e = Engine::load(&old_codec, &opts).err().expect("codec");
    assert!(matches!(e, EngineError::Metadata { .. }), "{e}");
    assert!(e.to_string().contains("old-codec.onnx") && e.to_string().contains("codec version 0"), "{e}");

    let other_arch = dir.path().join("other-arch.onnx");
    with_metadata(fx, onnx_names::META_ARCHITECTURE, "something-else-v9", &other_arch);
    let e = Engine::load(&other_arch, &opts).err().expect("architecture");
    assert!(matches!(e, EngineError::Metadata { .. }) && e.to_string().contains("something-else-v9"), "{e}");

    let old_graph = dir.path().join("old-graph.onnx");
    let mut m = build_model(&fx.weights, &fx.meta, Precision::Float32).expect("model");
    // A file from before graph version 2 has no version entry.
    m.metadata_props.retain(|p| p.key != onnx_names::META_GRAPH_VERSION);
    std::fs::write(&old_graph, m.encode_to_vec()).expect("write");
    let e = Engine::load(&old_graph, &opts).err().expect("graph version");
    assert!(matches!(e, EngineError::GraphVersion { found: 1, expected: 2, .. }), "{e}");
    assert!(e.to_string().contains("old-graph.onnx") && e.to_string().contains("export the model again"), "{e}");

    let wrong_library = EngineOptions { ort_library: Some(dir.path().join("libonnxruntime.so")), ..opts };
    let e = Engine::load(&fx.onnx, &wrong_library).err().expect("library");
    assert!(e.to_string().contains("libonnxruntime.so"), "{e}");
}

#[test]
fn a_chunked_prefill_gives_the_logits_of_a_single_one() {
    let fx = exported();
    let tokens: Vec<u16> = chorale_tokens(600).iter().take(600).map(|&t| t as u16).collect();
    let mut e = Engine::load(&fx.onnx, &engine_options()).expect("engine");
    let m = e.model();
    let (mut c1, mut c2) = (m.empty_cache(1), m.empty_cache(1));
    let whole = m.prefill_chunked(&[&tokens], tokens.len(), &mut c1).expect("one chunk");
    let chunked = m.prefill_chunked(&[&tokens], 97, &mut c2).expect("chunks of 97");
    assert!(max_abs_diff(&whole, &chunked) < PARITY_TOLERANCE);
    assert_eq!((c1.len(), c2.len()), (600, 600));
    let a = m.forward(&[60], &mut c1).expect("step");
    let b = m.forward(&[60], &mut c2).expect("step");
    assert!(max_abs_diff(&a, &b) < PARITY_TOLERANCE);
}

/// A scored prefill is the same prefill, and its cost is the mean of each
/// token's -log p under the logits one full forward pass gives.
#[test]
fn a_scored_prefill_costs_what_the_logits_say() {
    let fx = exported();
    let tokens: Vec<u16> = chorale_tokens(300).iter().take(300).map(|&t| t as u16).collect();
    let mut e = Engine::load(&fx.onnx, &engine_options()).expect("engine");
    let m = e.model();
    let (mut c1, mut c2) = (m.empty_cache(1), m.empty_cache(1));
    let plain = m.prefill(&[&tokens], &mut c1).expect("prefill");
    let (scored, nll) = m.prefill_scored(&tokens, &mut c2).expect("scored prefill");
    assert!(max_abs_diff(&plain, &scored) < PARITY_TOLERANCE);
    let all: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
    let logits = m.forward(&all, &mut m.empty_cache(1)).expect("forward");
    let vocab = logits.len() / tokens.len();
    let mut sum = 0.0f64;
    for (row, &next) in logits.chunks(vocab).zip(&tokens[1..]) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z = f64::from(max) + row.iter().map(|&x| f64::from(x - max).exp()).sum::<f64>().ln();
        sum += z - f64::from(row[usize::from(next)]);
    }
    let expected = sum / (tokens.len() - 1) as f64;
    let nll = nll.expect("299 tokens scored");
    assert!((nll - expected).abs() < 1e-3, "{nll} against {expected}");
    let (_, single) = m.prefill_scored(&tokens[..1], &mut c2).expect("one token");
    assert_eq!(single, None, "a lone START has nothing to score");
}

/// A cache reused for a shorter prefill (as after a window slide) holds the
/// old sequence's keys beyond its length; they must not leak into the scores.
#[test]
fn a_reused_cache_gives_the_logits_of_a_fresh_one() {
    let fx = exported();
    let tokens: Vec<u16> = chorale_tokens(640).iter().take(640).map(|&t| t as u16).collect();
    let mut e = Engine::load(&fx.onnx, &engine_options()).expect("engine");
    let m = e.model();
    let mut reused = m.empty_cache(1);
    m.prefill(&[&tokens[..630]], &mut reused).expect("long prefill");
    let capacity = reused.capacity();
    let (short, rest) = (&tokens[300..400], &tokens[400..420]);
    let a = m.prefill(&[short], &mut reused).expect("short prefill into the used cache");
    assert_eq!((reused.len(), reused.capacity()), (100, capacity), "buffers kept, contents forgotten");
    let mut fresh = m.empty_cache(1);
    let b = m.prefill(&[short], &mut fresh).expect("fresh prefill");
    assert!(fresh.capacity() < capacity, "a short context gets a small bucket: {}", fresh.capacity());
    let mut diff = max_abs_diff(&a, &b);
    for &t in rest {
        let a = m.forward(&[i64::from(t)], &mut reused).expect("step");
        let b = m.forward(&[i64::from(t)], &mut fresh).expect("step");
        diff = diff.max(max_abs_diff(&a, &b));
    }
    assert!(diff < PARITY_TOLERANCE, "reused vs fresh cache: {diff}");
}

/// Finished variations leave the batch: the rows kept go on exactly as they would have.
#[test]
fn dropping_finished_rows_from_the_batch_keeps_the_others() {
    let fx = exported();
    let tokens: Vec<u16> = chorale_tokens(400).iter().take(400).map(|&t| t as u16).collect();
    let v = codec::VOCAB_SIZE;
    let mut e = Engine::load(&fx.onnx, &engine_options()).expect("engine");
    let m = e.model();
    let rows: Vec<&[u16]> = vec![&tokens[0..120], &tokens[100..220], &tokens[200..320]];
    let mut full = m.empty_cache(3);
    m.prefill(&rows, &mut full).expect("prefill");
    let mut kept = m.empty_cache(3);
    m.prefill(&rows, &mut kept).expect("prefill");
    kept.retain(&[0, 2]).expect("retain");
    assert_eq!(kept.batch(), 2);
    let mut diff = 0.0f32;
    for t in 0..10 {
        let step = [i64::from(tokens[330 + t]), 7, i64::from(tokens[340 + t])];
        let all = m.forward(&step, &mut full).expect("batch of 3");
        let two = m.forward(&[step[0], step[2]], &mut kept).expect("batch of 2");
        diff = diff.max(max_abs_diff(&two[..v], &all[..v])).max(max_abs_diff(&two[v..], &all[2 * v..]));
    }
    assert!(diff < PARITY_TOLERANCE, "rows 0 and 2 after dropping row 1: {diff}");
    assert!(kept.retain(&[1, 0]).is_err(), "rows must be ascending");
}

/// The longest-note setting releases every note in time, with a note-off the
/// continuation's tokens carry (the model was fed it), and only when asked.
#[test]
fn notes_are_released_after_the_longest_note() {
    let fx = exported();
    let run = |max_note_s: f64| {
        let req = GenerateRequest {
            primer: Some(chorale("bwv66_6.mid")),
            settings: GenerationSettings {
                length: Length::Seconds(20.0),
                variations: 2,
                sampling: Sampling { seed: 4, ..Default::default() },
                steering: Steering { allow_end: false, max_note_s, ..Default::default() },
            },
            ..Default::default()
        };
        let mut e = Engine::load(&fx.onnx, &engine_options()).expect("engine");
        e.generate_variations(&req, &mut |_| true).expect("generate")
    };
    let longest = |perf: &Performance| perf.notes.iter().map(|n| n.end_s - n.start_s).fold(0.0f64, f64::max);
    let limit_s = 0.5;
    let free = run(0.0);
    assert!(
        free.iter().any(|v| longest(&v.performance) > limit_s + 0.05),
        "without a limit this model holds some note longer than {limit_s} s: {:?}",
        free.iter().map(|v| longest(&v.performance)).collect::<Vec<_>>()
    );
    for v in run(limit_s) {
        assert!(v.performance.notes.len() >= 10, "{} notes", v.performance.notes.len());
        assert!(longest(&v.performance) <= limit_s + 1e-9, "a note of {} s", longest(&v.performance));
        // The tokens alone (what the model saw) say the same.
        let from_tokens = codec::decode_tokens(&v.tokens);
        assert!(longest(&from_tokens) <= limit_s + 1e-9, "tokens hold a note for {} s", longest(&from_tokens));
    }
}

#[test]
fn a_failed_run_names_the_model_file() {
    let fx = exported();
    let mut e = Engine::load(&fx.onnx, &engine_options()).expect("engine");
    let m = e.model();
    let mut cache = m.empty_cache(1);
    // A token beyond the vocabulary: the embedding lookup fails inside ONNX Runtime.
    let err = m.forward(&[100_000], &mut cache).expect_err("out-of-vocabulary token");
    assert!(matches!(err, EngineError::Runtime { .. }), "{err}");
    assert!(err.to_string().contains(&format!("{STYLE}.onnx")), "{err}");
}

#[test]
fn the_provider_reported_is_the_one_running() {
    let fx = exported();
    let auto = Engine::load(&fx.onnx, &EngineOptions { provider: Provider::Auto, ..engine_options() }).expect("auto");
    let cuda = Engine::load(&fx.onnx, &EngineOptions { provider: Provider::Cuda, ..engine_options() });
    match cuda {
        // A CUDA build of ONNX Runtime on a machine with a GPU: auto picks it too.
        Ok(e) => {
            assert_eq!(e.info().provider, "CUDA");
            assert_eq!(auto.info().provider, "CUDA");
        }
        // The CPU build (the onnxruntime wheel): CUDA is refused, auto falls back to the CPU.
        Err(e) => {
            assert!(matches!(e, EngineError::ProviderUnavailable { provider: "CUDA", .. }), "{e}");
            assert_eq!(auto.info().provider, "CPU");
        }
    }
}
