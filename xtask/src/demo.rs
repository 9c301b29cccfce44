//! `cargo xtask demo`: the README's first command. Sets up, builds, and runs
//! the main job on the shipped defaults.

use std::time::Instant;

use anyhow::Result;
use cadenza_core::{codec, compare::compare, midi};

use crate::env::{repo_root, ToolEnv};
use crate::primers::PRIMERS;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the results.
    #[arg(long, default_value = "out")]
    pub out: std::path::PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let _env = ToolEnv::load_or_setup()?;
    let out = repo_root().join(&args.out);
    std::fs::create_dir_all(&out)?;
    for p in &PRIMERS {
        let t0 = Instant::now();
        let original = midi::read_file(&p.path(), &midi::ReadOptions::default())?;
        let decoded = codec::decode(&codec::encode(&original));
        let path = out.join(format!("{}-roundtrip.mid", p.name));
        midi::write_performance_file(
            &path,
            &decoded,
            &midi::WriteOptions { tempo_bpm: p.tempo_bpm, ..Default::default() },
        )?;
        let cmp = compare(&original, &midi::read_file(&path, &midi::ReadOptions::default())?);
        println!(
            "{}: {} notes through the codec, largest onset error {} ms, written to {} in {:.1} ms",
            p.title,
            cmp.notes_out,
            cmp.max_onset_error_ms,
            path.display(),
            t0.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}
