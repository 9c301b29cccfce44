//! The flags of `train`, defined once: `cadenza train` and `cargo xtask
//! train` parse them and hand them to the `cadenza-train` binary, which
//! parses the same struct. [`TrainArgs::to_args`] writes them back as a
//! command line; a test parses that again, so the two cannot drift apart.
//! (Behind the `clap` feature: the plugin does not need it.)

use std::ffi::OsString;
use std::path::PathBuf;

/// Devices `--device` accepts.
pub const DEVICES: [&str; 3] = ["cpu", "cuda", "auto"];

/// Train a style from a folder of MIDI, finetune it from another (--from), or resume a run (--resume).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct TrainArgs {
    /// Style name: names the run folder (runs/STYLE), the default data folder (data/STYLE), the
    /// model, and the default config (the style's shipped trainer/configs/STYLE.toml, when it exists).
    #[arg(long)]
    pub style: String,
    /// Folder of MIDI files: a `cargo xtask data` style folder (with manifest.csv) or any folder
    /// of *.mid/*.midi (searched recursively, split 90/5/5 by file hash; unreadable files are
    /// skipped with a warning). Default: data/STYLE.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Finetune from a style name (its run folder runs/NAME, else the shipped
    /// models/checkpoints/NAME), a run folder, or a checkpoint (.safetensors/.json); a run
    /// folder gives its best checkpoint. The optimizer starts fresh.
    #[arg(long)]
    pub from: Option<String>,
    /// A preset (tiny, small, medium, base) or a TOML file of settings that differ from the defaults;
    /// unknown keys are an error. Default: the style's own config if shipped, else `small`
    /// (or the parent's model with --from).
    #[arg(long)]
    pub config: Option<String>,
    /// Passes over the training data (overrides the config).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many optimizer steps (the learning-rate schedule ends there too).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Run folder. Default: runs/STYLE.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in the run folder from its newest complete checkpoint (weights, optimizer
    /// moments, step and random streams), also after kill -9. On a machine without the run,
    /// continue from the shipped models/checkpoints/STYLE instead (as --continue-from does).
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Continue a run from a checkpoint's weights, settings and step alone (the shipped
    /// models/checkpoints/STYLE.safetensors, half precision, no optimizer state): the same
    /// schedule and batches, a fresh optimizer warmed up over 100 steps.
    #[arg(long, conflicts_with_all = ["resume", "from", "config"])]
    pub continue_from: Option<PathBuf>,
    /// Start over in an existing run folder (its checkpoints, metrics and plots are deleted).
    #[arg(long)]
    pub force: bool,
    /// Freeze the token embedding and the first N blocks while finetuning (very little data).
    #[arg(long)]
    pub freeze_layers: Option<usize>,
    /// Seed for weights, crops, augmentation and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// cpu, cuda, or auto (CUDA when libtorch sees a GPU).
    #[arg(long, default_value = "cpu", value_parser = DEVICES)]
    pub device: String,
    /// CPU threads for libtorch (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar, log lines only.
    #[arg(long)]
    pub no_progress: bool,
}

impl TrainArgs {
    /// The flags as a command line that parses back to `self`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec!["--style".into(), self.style.clone().into()];
        let mut opt = |flag: &str, value: Option<OsString>| {
            if let Some(v) = value {
                out.push(flag.into());
                out.push(v);
            }
        };
        opt("--data", self.data.clone().map(Into::into));
        opt("--from", self.from.clone().map(Into::into));
        opt("--config", self.config.clone().map(Into::into));
        opt("--epochs", self.epochs.map(|v| v.to_string().into()));
        opt("--steps", self.steps.map(|v| v.to_string().into()));
        opt("--out", self.out.clone().map(Into::into));
        opt("--continue-from", self.continue_from.clone().map(Into::into));
        opt("--freeze-layers", self.freeze_layers.map(|v| v.to_string().into()));
        opt("--seed", self.seed.map(|v| v.to_string().into()));
        opt("--device", Some(self.device.clone().into()));
        opt("--threads", self.threads.map(|v| v.to_string().into()));
        for (on, flag) in [(self.resume, "--resume"), (self.force, "--force"), (self.no_progress, "--no-progress")] {
            if on {
                out.push(flag.into());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TrainArgs,
    }

    fn parse(args: &[OsString]) -> TrainArgs {
        Cli::try_parse_from(std::iter::once(OsString::from("train")).chain(args.iter().cloned())).expect("parses").args
    }

    /// Every flag survives the trip to the trainer's command line and back.
    #[test]
    fn flags_written_as_a_command_line_parse_back_the_same() {
        let full = TrainArgs {
            style: "jazz".into(),
            data: Some("/d/jazz midi".into()),
            from: Some("classical".into()),
            config: Some("tiny".into()),
            epochs: Some(3),
            steps: Some(40),
            out: Some("runs/j".into()),
            resume: false,
            continue_from: None,
            force: true,
            freeze_layers: Some(2),
            seed: Some(9),
            device: "auto".into(),
            threads: Some(2),
            no_progress: true,
        };
        assert_eq!(parse(&full.to_args()), full);
        let bare = parse(&["--style".into(), "pop".into(), "--resume".into()]);
        assert_eq!((bare.device.as_str(), bare.resume, bare.data.is_none()), ("cpu", true, true));
        assert_eq!(parse(&bare.to_args()), bare);
        let resumed =
            TrainArgs { continue_from: Some("models/checkpoints/pop.safetensors".into()), resume: false, ..bare };
        assert_eq!(parse(&resumed.to_args()), resumed);
    }

    #[test]
    fn an_unknown_device_is_refused() {
        let e = Cli::try_parse_from(["train", "--style", "x", "--device", "tpu"]).err().expect("refused");
        assert!(e.to_string().contains("tpu"), "{e}");
    }
}
