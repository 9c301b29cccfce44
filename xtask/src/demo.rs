//! `cargo xtask demo`: the README's first command. Sets up what is missing,
//! then runs the main job on the shipped defaults: for every shipped style, a
//! piece that continues a bundled primer and one improvised from nothing, as
//! MIDI, WAV and piano roll in `out/`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::env::repo_root;
use crate::eval::style::shipped_styles;
use crate::generate;
use crate::primers::PRIMERS;
use crate::render;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the pieces.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Seconds of music per piece.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Seed of every piece (the same seed gives the same music).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

pub fn run(args: &Args) -> Result<()> {
    crate::setup::tool_env()?;
    let root = repo_root();
    let out = root.join(&args.out);
    std::fs::create_dir_all(&out)?;
    let styles = shipped_styles();
    if styles.is_empty() {
        bail!("no shipped model in {}; train one with `cargo xtask train`", root.join("models").display());
    }
    let wav = match render::find_soundfont(None) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("demo: no WAV files: {e}");
            false
        }
    };
    let primer = &PRIMERS[0];
    let t_all = Instant::now();
    for style in &styles {
        for primed in [true, false] {
            let name = format!("{style}-{}", if primed { primer.name.to_string() } else { "improv".into() });
            let piece =
                generate::piece_args(style, &out, &name, args.seconds, args.seed, primed.then_some(primer), wav)?;
            let t0 = Instant::now();
            generate::run(&piece)?;
            println!(
                "demo: {style} {} in {:.1} s",
                if primed { format!("continuing \"{}\"", primer.title) } else { "improvisation".into() },
                t0.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "demo: {} pieces in {} ({:.0} s in all). Listen to the .wav files, open the .png piano rolls, or drag the .mid files into a DAW.",
        styles.len() * 2,
        out.display(),
        t_all.elapsed().as_secs_f64()
    );
    Ok(())
}
