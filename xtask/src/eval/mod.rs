//! `cargo xtask eval`: does a style sound like its style (`eval style`), does
//! it continue what was played (`eval continuation`), and what does transfer
//! learning buy (`eval transfer`); the validation loss of exported models
//! (`eval nll`).

pub mod classifier;
pub mod continuation;
pub mod features;
pub mod nll;
pub mod style;
pub mod transfer;

/// Where an evaluation finds real music and the style models.
#[derive(Debug, clap::Args)]
pub struct Sources {
    /// The folder `cargo xtask data` wrote.
    #[arg(long, default_value = "data")]
    pub data: std::path::PathBuf,
    /// Where the style models are (STYLE.onnx).
    #[arg(long, default_value = "models")]
    pub models: std::path::PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Train a style classifier on real music, then ask it to name the style of generated music.
    Style(style::Args),
    /// Continue held-out pieces and score how well each style follows the primer (key, register,
    /// density, rhythm, motifs, style), against the real continuation and other pieces.
    Continuation(continuation::Args),
    /// Finetuned against from-scratch training at equal steps: validation curves and a table.
    Transfer(transfer::Args),
    /// Validation loss of exported models (.onnx) on a data folder's validation split, through the
    /// engine: compares models that shipped without a checkpoint on today's split.
    Nll(nll::Args),
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.what {
        What::Style(a) => style::run(a),
        What::Continuation(a) => continuation::run(a),
        What::Transfer(a) => transfer::run(a),
        What::Nll(a) => nll::run(a),
    }
}
