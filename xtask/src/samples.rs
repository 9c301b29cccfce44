//! `cargo xtask samples`: the listening examples kept in `models/samples/`:
//! for every shipped style, an improvisation and a continuation of each
//! bundled primer, as MIDI, piano roll and a compact WAV (22.05 kHz mono).

use std::path::PathBuf;

use anyhow::{bail, Result};
use cadenza_core::midi;

use crate::env::repo_root;
use crate::eval::style::shipped_styles;
use crate::generate;
use crate::primers::PRIMERS;
use crate::render::{self, WavFormat};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds generated after the primer (or from nothing).
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Seed of every sample.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Where the samples go.
    #[arg(long, default_value = "models/samples")]
    pub out: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    crate::setup::tool_env()?;
    let root = repo_root();
    let out = root.join(&args.out);
    std::fs::create_dir_all(&out)?;
    let soundfont = render::load_soundfont(&render::find_soundfont(None)?)?;
    let styles = shipped_styles();
    if styles.is_empty() {
        bail!("no shipped model in models/");
    }
    for style in styles {
        let mut jobs: Vec<(String, Option<&crate::primers::Primer>)> = vec![(format!("{style}-improv"), None)];
        jobs.extend(PRIMERS.iter().map(|p| (format!("{style}-{}", p.name), Some(p))));
        for (name, primer) in jobs {
            // The compact WAV is rendered here, not by generate's CD-quality --wav.
            generate::run(&generate::piece_args(style, &out, &name, args.seconds, args.seed, primer, false)?)?;
            let mid = out.join(format!("{name}.mid"));
            let perf = midi::read_file(&mid, &midi::ReadOptions::default())?;
            let wav = out.join(format!("{name}.wav"));
            render::write_wav_as(&perf, &soundfont, &wav, WavFormat::COMPACT)?;
            println!("samples: {}", wav.display());
        }
    }
    Ok(())
}
