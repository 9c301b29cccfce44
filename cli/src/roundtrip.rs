//! `cadenza roundtrip IN.mid OUT.mid` (and `cargo xtask roundtrip`): MIDI to events and back, to hear
//! and measure what the codec keeps.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cadenza_core::codec;
use cadenza_core::compare::compare;
use cadenza_core::midi::{self, ReadOptions, WriteOptions};

/// Encode a MIDI file to performance events and back; print a one-line JSON summary.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A Standard MIDI File (format 0 or 1).
    pub input: PathBuf,
    /// Where to write the decoded performance (format 1, 120 BPM, 480 PPQ).
    pub output: PathBuf,
    /// Ignore the sustain pedal (CC64) instead of holding notes under it.
    #[arg(long)]
    pub no_sustain: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let opts = ReadOptions { sustain: !args.no_sustain, ..Default::default() };
    let original = midi::read_file(&args.input, &opts)?;
    let events = codec::encode(&original);
    let decoded = codec::decode(&events);
    midi::write_performance_file(&args.output, &decoded, &WriteOptions::default())
        .with_context(|| format!("{}: cannot write", args.output.display()))?;
    let reread = midi::read_file(&args.output, &opts)?;
    let cmp = compare(&original, &reread);
    let summary = serde_json::json!({
        "input": args.input,
        "output": args.output,
        "notes_in": cmp.notes_in,
        "notes_out": cmp.notes_out,
        "events": events.len(),
        "duration_s": (original.duration_s() * 1000.0).round() / 1000.0,
        "max_onset_error_ms": cmp.max_onset_error_ms,
        "unmatched_notes": cmp.unmatched,
        "merged_double_strikes": cmp.merged,
        "velocity_bin_changes": cmp.velocity_bin_changes,
    });
    println!("{summary}");
    Ok(())
}
