//! `cargo xtask bench <what>`: the measurements the README and the model
//! cards quote, printed as ratios measured in one run (these machines are
//! noisy, so every comparison runs side by side, never against a stored
//! number). One module per target.

pub mod generate;
pub mod plugin;
mod process;
pub mod train;

use anyhow::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Training throughput (tokens/s) and peak RSS: cadenza-train vs PyTorch eager, same model.
    Train(train::TrainArgs),
    /// The engine: ms per event with and without the KV cache, peak memory, 30 s of music.
    Generate(generate::GenerateArgs),
    /// The plugin in a CLAP host: process() time and Generate-to-first-note latency.
    Plugin(plugin::PluginArgs),
}

pub fn run(args: &Args) -> Result<()> {
    match &args.what {
        What::Train(a) => train::run(a),
        What::Generate(a) => generate::run(a),
        What::Plugin(a) => plugin::run(a),
    }
}
