//! `cargo xtask demo`: the README's first command. Sets up what is missing,
//! then runs the main job on the shipped defaults: for every shipped style, a
//! piece that continues a bundled primer and one improvised from nothing, as
//! MIDI, WAV and piano roll in `out/`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;

use crate::env::{repo_root, ToolEnv};
use crate::eval::style::STYLES;
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

/// `generate`'s flags, parsed exactly as the command line would.
#[derive(Parser)]
struct GenerateCli {
    #[command(flatten)]
    args: generate::Args,
}

pub fn run(args: &Args) -> Result<()> {
    ToolEnv::load_or_setup()?;
    let root = repo_root();
    let out = root.join(&args.out);
    std::fs::create_dir_all(&out)?;
    let styles: Vec<&str> =
        STYLES.iter().copied().filter(|s| root.join("models").join(format!("{s}.onnx")).exists()).collect();
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
            let mut argv: Vec<String> =
                ["generate", "--style", style, "--seconds"].iter().map(|s| s.to_string()).collect();
            argv.push(args.seconds.to_string());
            // Each piece fills its length: the model may not end it early.
            argv.extend(["--no-end".into(), "--seed".into(), args.seed.to_string(), "--out".into()]);
            argv.push(out.join(format!("{name}.mid")).display().to_string());
            argv.extend(["--png".into(), out.join(format!("{name}.png")).display().to_string()]);
            if wav {
                argv.extend(["--wav".into(), out.join(format!("{name}.wav")).display().to_string()]);
            }
            if primed {
                argv.extend(["--primer".into(), primer.path().display().to_string(), "--with-primer".into()]);
                argv.extend(["--tempo".into(), primer.tempo_bpm.to_string()]);
            }
            let cli = GenerateCli::try_parse_from(&argv)?;
            let t0 = Instant::now();
            generate::run(&cli.args)?;
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
