//! Styles: from a folder outside the checkout, `cadenza` finds a style in
//! the user's style folder (issue 12) and the shipped ones, and a style that
//! is nowhere is a clear error naming the folders searched. `export` writes
//! where `generate` finds it. `XDG_DATA_HOME` stands in for the user's data folder.

use std::process::Command;

use crate::{cadenza, shipped, stderr};

/// A temporary folder holding the user's data folder, with the shipped jazz weights as their
/// style `mine`, and a working folder: (it, data, work).
fn with_mine() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let (data, work) = (tmp.path().join("data"), tmp.path().join("work"));
    let styles = data.join("cadenza/models");
    std::fs::create_dir_all(&styles).expect("dir");
    std::fs::create_dir_all(&work).expect("dir");
    std::fs::copy(shipped("jazz.onnx"), styles.join("mine.onnx")).expect("place a style");
    (tmp, data, work)
}

/// Issue 12: a style placed in the user's style folder is found by name from any folder,
/// and a shipped style still is.
#[test]
fn generates_with_a_style_from_the_users_folder_and_a_shipped_one() {
    let (_tmp, data, work) = with_mine();
    let styles = data.join("cadenza/models");

    let out =
        cadenza(&work, &data, &["generate", "--style", "mine", "--seconds", "2", "--seed", "1", "--out", "x.mid"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&styles.join("mine.onnx").display().to_string()), "{}", stderr(&out));
    let perf = cadenza_core::midi::read_file(&work.join("x.mid"), &Default::default()).expect("a MIDI file");
    assert!(!perf.notes.is_empty());

    let out =
        cadenza(&work, &data, &["generate", "--style", "folk", "--seconds", "2", "--seed", "1", "--out", "f.mid"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&shipped("folk.onnx").display().to_string()), "{}", stderr(&out));
}

/// Issue 12: a style that is nowhere is a one-line error naming every folder searched and
/// the styles that exist; nothing is written.
#[test]
fn a_missing_style_names_the_folders_searched() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = cadenza(tmp.path(), tmp.path(), &["generate", "--style", "nowhere", "--out", "x.mid"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: no style `nowhere`"), "{err}");
    assert!(err.contains(&tmp.path().join("cadenza/models").display().to_string()), "the user's folder: {err}");
    assert!(err.contains(&shipped("").display().to_string().trim_end_matches('/').to_string()), "shipped: {err}");
    assert!(err.contains("jazz"), "the styles that exist: {err}");
    assert!(!tmp.path().join("x.mid").exists());
}

/// Issue 12: `cadenza export` writes into the user's style folder (not the checkout's
/// models/), where `generate --style NAME` (and the plugin's Rescan) find it.
#[test]
fn export_writes_into_the_users_style_folder_where_generate_finds_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let checkpoint = shipped("checkpoints/classical.safetensors");
    let out = cadenza(
        tmp.path(),
        tmp.path(),
        &["export", "--style", "mine", "--checkpoint", checkpoint.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let model = tmp.path().join("cadenza/models/mine.onnx");
    assert!(model.is_file(), "{}", stderr(&out));
    assert!(!shipped("mine.onnx").exists(), "nothing in the checkout");
    let out = cadenza(tmp.path(), tmp.path(), &["generate", "--style", "mine", "--seconds", "1", "--out", "m.mid"]);
    assert!(out.status.success() && stderr(&out).contains(&model.display().to_string()), "{}", stderr(&out));

    let out = cadenza(tmp.path(), tmp.path(), &["export", "--style", "nothing"]);
    assert_eq!(out.status.code(), Some(1));
    let runs = tmp.path().join("runs/nothing");
    assert!(
        stderr(&out).contains(&format!("{}: no checkpoint in this run folder", runs.display())),
        "{}",
        stderr(&out)
    );
}

/// `cadenza train` without the trainer installed says how to install it.
#[test]
fn train_without_the_trainer_says_how_to_install_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let alone = tmp.path().join("cadenza");
    std::fs::copy(env!("CARGO_BIN_EXE_cadenza"), &alone).expect("copy the program");
    let out = Command::new(&alone)
        .current_dir(tmp.path())
        .env("PATH", tmp.path().join("nothing"))
        .args(["train", "--style", "mine"])
        .output()
        .expect("cadenza runs");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("`cadenza-train` was not found") && err.contains("cargo install --path trainer"), "{err}");
}

/// The style judge shipped beside the models names a nursery tune classical or folk, so jazz,
/// which does not lead by cost (its own phrases cost it as much), leads it and says why;
/// `--style-lead off` still follows it. The same weights as a style of the user's own, with no
/// judge beside them, follow it and say how to let it lead.
#[test]
fn the_shipped_judge_lets_jazz_lead_a_nursery_tune() {
    let (_tmp, data, work) = with_mine();
    let twinkle = shipped("primers/twinkle.mid");
    let run = |style: &str, extra: &[&str]| {
        let mut args = vec!["generate", "--style", style, "--primer", twinkle.to_str().expect("utf-8")];
        args.extend_from_slice(&["--seconds", "4", "--seed", "1", "--out", "x.mid"]);
        args.extend_from_slice(extra);
        let out = cadenza(&work, &data, &args);
        assert!(out.status.success(), "{}", stderr(&out));
        (std::fs::read(work.join("x.mid")).expect("written"), stderr(&out))
    };
    let (led, said) = run("jazz", &[]);
    assert!(said.contains("Led by jazz") && said.contains("sounds like"), "{said}");
    let (followed, said) = run("jazz", &["--style-lead", "off"]);
    assert!(!said.contains("Led by"), "{said}");
    assert_ne!(led, followed, "the lead changes the music");
    let (mine, said) = run("mine", &[]);
    assert!(said.contains("--style-lead on lets jazz lead it"), "{said}");
    assert_ne!(mine, led, "no judge: not led");
}
