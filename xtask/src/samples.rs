//! `cargo xtask samples`: the listening examples kept in `models/samples/`:
//! for every shipped style, an improvisation and a continuation of each
//! bundled primer, as MIDI, piano roll and a compact WAV (22.05 kHz mono).

use std::path::PathBuf;

use anyhow::{bail, Result};
use cadenza_core::midi;
use clap::Parser;

use crate::env::{repo_root, ToolEnv};
use crate::eval::style::STYLES;
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
    let soundfont = render::load_soundfont(&render::find_soundfont(None)?)?;
    let styles: Vec<&str> =
        STYLES.iter().copied().filter(|s| root.join("models").join(format!("{s}.onnx")).exists()).collect();
    if styles.is_empty() {
        bail!("no shipped model in models/");
    }
    for style in styles {
        let mut jobs: Vec<(String, Option<&crate::primers::Primer>)> = vec![(format!("{style}-improv"), None)];
        jobs.extend(PRIMERS.iter().map(|p| (format!("{style}-{}", p.name), Some(p))));
        for (name, primer) in jobs {
            let mid = out.join(format!("{name}.mid"));
            let mut argv: Vec<String> = vec!["generate".into(), "--style".into(), style.into()];
            argv.extend(["--seconds".into(), args.seconds.to_string(), "--seed".into(), args.seed.to_string()]);
            // Each sample fills its length: the model may not end the piece early.
            argv.extend(["--no-end".into(), "--out".into(), mid.display().to_string()]);
            argv.extend(["--png".into(), out.join(format!("{name}.png")).display().to_string()]);
            if let Some(p) = primer {
                argv.extend(["--primer".into(), p.path().display().to_string(), "--with-primer".into()]);
                argv.extend(["--tempo".into(), p.tempo_bpm.to_string()]);
            }
            generate::run(&GenerateCli::try_parse_from(&argv)?.args)?;
            let perf = midi::read_file(&mid, &midi::ReadOptions::default())?;
            let wav = out.join(format!("{name}.wav"));
            render::write_wav_as(&perf, &soundfont, &wav, WavFormat::COMPACT)?;
            println!("samples: {}", wav.display());
        }
    }
    Ok(())
}
