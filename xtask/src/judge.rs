//! `cargo xtask judge`: train the style judge shipped beside the models
//! (`models/style-judge.json`, [`cadenza_core::classifier::StyleJudge`]), a
//! classifier on phrases of every style's real train split, and say how well
//! it names the test split's phrases. The engine asks it whether a primer is
//! in the style continuing it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cadenza_core::classifier::{StyleJudge, JUDGE_FILE, JUDGE_VERSION};
use cadenza_core::dataset::Split;

use crate::env::repo_root;
use crate::eval::style::{real_windows, style_classifier_over};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder `cargo xtask data` wrote (every style's train and test splits).
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// The phrase length, seconds: the judge reads a primer's last phrase this long.
    #[arg(long, default_value_t = 10.0)]
    pub window_s: f64,
    /// Where to write it: beside the models it judges for.
    #[arg(long, default_value = "models/style-judge.json")]
    pub out: PathBuf,
}

/// Phrases taken from one real piece, at most, and real pieces per style and split (`eval home`'s
/// classifier takes as many).
pub const PHRASES_PER_PIECE: usize = 9;
pub const MAX_PIECES: usize = 400;

pub fn run(args: &Args) -> Result<()> {
    anyhow::ensure!(args.window_s.is_finite() && args.window_s > 0.0, "--window-s: give seconds above 0");
    let root = repo_root();
    let data = root.join(&args.data);
    let windowing = (args.window_s, PHRASES_PER_PIECE);
    let (classifier, train) = style_classifier_over(&data, MAX_PIECES, windowing)?;
    let windows = classifier
        .classes
        .iter()
        .map(|style| real_windows(&data, style, Split::Test, MAX_PIECES, windowing))
        .collect::<Result<Vec<_>>>()?;
    let test = classifier.confusion(&windows);
    let names = classifier.classes.join(", ");
    let measured = format!(
        "`cargo xtask judge --window-s {}`: {train} phrases of the real train splits ({names}); names the test \
         splits' phrases right {:.1}% (balanced {:.1}%)",
        args.window_s,
        100.0 * test.accuracy(),
        100.0 * test.balanced_accuracy()
    );
    let judge = StyleJudge { version: JUDGE_VERSION, window_s: args.window_s, measured, classifier };
    judge.validate().map_err(anyhow::Error::msg)?;
    let out = root.join(&args.out);
    if out.file_name().is_some_and(|n| n != JUDGE_FILE) {
        eprintln!("judge: the engine reads {JUDGE_FILE} beside a model; {} will not be found there", out.display());
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(&judge)? + "\n";
    cadenza_core::fsutil::write_atomic(&out, json.as_bytes())
        .with_context(|| format!("{}: cannot write", out.display()))?;
    println!("judge: {}\n{}judge: wrote {}", judge.measured, test.markdown(), out.display());
    Ok(())
}
