//! `cargo xtask`: Cadenza's front door in the repository. The chores live
//! here (setup, data, bundle, test, bench, eval, judge, card, samples, demo);
//! `generate`, `render`, `roundtrip`, `export` and `train` forward to the
//! `cadenza` crate (cli/), the command users install. Each subcommand's
//! `--help` explains its flags.

mod bench;
mod bundle;
mod card;
mod data;
mod demo;
mod env;
mod eval;
mod export;
mod fuzz;
mod generate;
mod judge;
mod primers;
mod render;
mod roundtrip;
mod samples;
mod setup;
mod shipped;
mod test;
mod train;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Cadenza: generate piano music in a style, train your own styles", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// The subcommands; generate, render, roundtrip, export and train take their
/// help from their `Args` struct's documentation (shared with `cadenza`).
#[derive(Subcommand)]
enum Cmd {
    /// Install what the project needs (Debian packages as root, a pinned Python environment); idempotent.
    Setup(setup::Args),
    /// The main job on the shipped defaults: build, then generate with the shipped styles into out/.
    Demo(demo::Args),
    /// Run every test (sets up first when needed).
    Test(test::Args),
    Generate(generate::Args),
    Train(train::Args),
    /// Measure: `bench train` (training throughput vs PyTorch), `bench generate`, `bench plugin`.
    Bench(bench::Args),
    Export(export::Args),
    Render(render::Args),
    Roundtrip(roundtrip::Args),
    /// Build the training corpora data/<style>/ (classical, jazz, pop, folk, rock, electronic) from pinned packages.
    Data(data::Args),
    /// Rewrite the bundled public-domain primers in models/primers/.
    Primers,
    /// Evaluate the styles: a style classifier on real and generated music.
    Eval(eval::Args),
    /// Train the style judge shipped beside the models (models/style-judge.json): it names a
    /// primer's style, so that a style leads a phrase that is not its own.
    Judge(judge::Args),
    /// Write a style's model card (models/STYLE.md) from its run, its data and a speed measurement.
    Card(card::Args),
    /// Write the listening examples in models/samples/ with the shipped styles.
    Samples(samples::Args),
    /// Fuzz the MIDI reader and the codec with generated inputs.
    Fuzz(fuzz::Args),
    /// Build the CLAP and VST3 plugin bundles (with ONNX Runtime and the shipped models) into target/bundled/.
    Bundle(bundle::BundleArgs),
    /// Bundle, then install into ~/.clap, ~/.vst3 and the user model folder.
    Install(bundle::InstallArgs),
}

fn main() {
    env::ToolEnv::restart_with_cuda_libraries();
    let cli = Cli::parse();
    let result: Result<()> = match &cli.command {
        Cmd::Setup(a) => setup::run(a),
        Cmd::Demo(a) => demo::run(a),
        Cmd::Test(a) => test::run(a),
        Cmd::Generate(a) => generate::run(a),
        Cmd::Train(a) => train::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Export(a) => export::run(a),
        Cmd::Roundtrip(a) => roundtrip::run(a),
        Cmd::Render(a) => render::run(a),
        Cmd::Data(a) => data::run(a),
        Cmd::Primers => primers::run(),
        Cmd::Fuzz(a) => fuzz::run(a),
        Cmd::Card(a) => card::run(a),
        Cmd::Judge(a) => judge::run(a),
        Cmd::Samples(a) => samples::run(a),
        Cmd::Eval(a) => eval::run(a),
        Cmd::Bundle(a) => bundle::run_bundle(a),
        Cmd::Install(a) => bundle::run_install(a),
    };
    if let Err(e) = result {
        eprint!("{}", cadenza_core::report_error(&*e));
        std::process::exit(1);
    }
}
