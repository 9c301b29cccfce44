//! `cadenza`: generate piano music in a style, render and round-trip MIDI,
//! export and train styles. Each subcommand's `--help` explains its flags;
//! the crate's documentation (`src/lib.rs`) says where it finds things.

use std::process::Command;

use anyhow::{Context, Result};
use cadenza::{export, generate, render, roundtrip, tools, train};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cadenza", about = "Cadenza: generate piano music in a style, train your own styles", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// The subcommands; each one's help is its `Args` struct's documentation.
#[derive(Subcommand)]
enum Cmd {
    Generate(generate::Args),
    Render(render::Args),
    Roundtrip(roundtrip::Args),
    Export(export::Args),
    /// Train a style from a folder of MIDI, finetune it from another (--from), or resume a run
    /// (with the separate `cadenza-train` program: `cargo install --path trainer`).
    Train(train::Args),
}

/// The folder runs and data are relative to: where the command was typed.
fn work_dir() -> Result<std::path::PathBuf> {
    std::env::current_dir().context("cannot read the current folder")
}

fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Cmd::Generate(a) => generate::run(a),
        Cmd::Render(a) => render::run(a),
        Cmd::Roundtrip(a) => roundtrip::run(a),
        Cmd::Export(a) => export::run(a, &work_dir()?).map(drop),
        Cmd::Train(a) => {
            let trainer = tools::sibling_program("cadenza-train", train::INSTALL_TRAINER)?;
            train::run(a, Command::new(trainer), &work_dir()?)
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprint!("{}", cadenza_core::report_error(&*e));
        std::process::exit(1);
    }
}
