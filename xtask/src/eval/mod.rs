//! `cargo xtask eval`: does a style sound like its style (`eval style`), does
//! it continue what was played (`eval continuation`), and what does transfer
//! learning buy (`eval transfer`); the validation loss of exported models
//! (`eval nll`).

pub mod continuation;
pub mod home;
pub mod nll;
pub mod style;
pub mod transfer;

/// The manifest rows of the style folder `dir` in `split`, by file hash: a choice of pieces that
/// stays the same from run to run.
pub fn split_rows(
    dir: &std::path::Path,
    split: cadenza_core::dataset::Split,
) -> anyhow::Result<Vec<cadenza_core::dataset::ManifestRow>> {
    use cadenza_core::dataset::{read_manifest, MANIFEST_FILE};
    let mut rows = read_manifest(&dir.join(MANIFEST_FILE))?;
    rows.retain(|r| r.split == split);
    rows.sort_by(|a, b| a.sha256.cmp(&b.sha256));
    Ok(rows)
}

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

/// Whether each style leads primers foreign to it (`Steering::style_lead`), for the
/// evaluations that generate.
#[derive(Debug, clap::Args)]
pub struct Lead {
    /// off, model (each model's own choice, the default) or on; `--style-lead` alone is on.
    #[arg(long, value_name = "off|model|on", num_args = 0..=1, default_missing_value = "on",
          default_value_t = cadenza_core::sampling::StyleLead::Model)]
    pub style_lead: cadenza_core::sampling::StyleLead,
    /// Judge primers by their cost alone: leave out the style judge shipped beside the models
    /// (`cargo xtask judge`), which lets a style lead a primer it names another style.
    #[arg(long)]
    pub no_judge: bool,
    /// How much harder every style holds the primer's key while it leads (1: as when following;
    /// default each model's own, `lead_key` in its checkpoint's sidecar).
    #[arg(long, value_name = "GAIN")]
    pub lead_key_gain: Option<f32>,
    /// How much wider every style spreads its parts about the primer's register while it leads (1:
    /// as when following; default each model's own, `lead_register` in its checkpoint's sidecar).
    #[arg(long, value_name = "SPREAD")]
    pub lead_register_spread: Option<f32>,
}

impl Lead {
    /// How a report names the setting.
    pub fn words(&self) -> String {
        let lead = match self.style_lead {
            cadenza_core::sampling::StyleLead::Off => "off",
            cadenza_core::sampling::StyleLead::Model => "each model's own choice",
            cadenza_core::sampling::StyleLead::On => "on",
        };
        let judge = if self.no_judge { ", without the style judge" } else { "" };
        let key = self.lead_key_gain.map_or(String::new(), |g| format!(", the key held {g}× as hard while leading"));
        let register =
            self.lead_register_spread.map_or(String::new(), |s| format!(", the register {s}× as wide while leading"));
        format!("{lead}{judge}{key}{register}")
    }

    /// The setting as the command's flags, each with its leading space; empty for the defaults.
    pub fn flags(&self) -> String {
        let lead = match self.style_lead {
            cadenza_core::sampling::StyleLead::Model => String::new(),
            lead => format!(" --style-lead {lead}"),
        };
        let key = self.lead_key_gain.map_or(String::new(), |g| format!(" --lead-key-gain {g}"));
        let register = self.lead_register_spread.map_or(String::new(), |s| format!(" --lead-register-spread {s}"));
        lead + if self.no_judge { " --no-judge" } else { "" } + &key + &register
    }
}

/// Which style each style leans away from (`Steering::contrast`), for the
/// evaluations that generate.
#[derive(Debug, Default, clap::Args)]
pub struct Lean {
    /// How far each style leans away from its contrast model (`Steering::contrast`): 0
    /// turns every style's off, its own choice included; default 0.5 for
    /// --contrast-with and the strength a model names for its own choice.
    #[arg(long)]
    pub contrast: Option<f32>,
    /// The contrast model of a style: STYLE=OTHER, or OTHER alone for every
    /// style but OTHER itself; OTHER may name several styles, pop+rock, to lean
    /// from them all at once; repeatable (a style's own entry wins). A style
    /// without one leans away from the style its model names, if any
    /// (`ModelInfo::contrast_advice`; electronic from rock, jazz from pop).
    #[arg(long = "contrast-with", value_name = "STYLE=OTHER")]
    pub contrast_with: Vec<String>,
    /// How far each style leans while following a primer, when not as far as --contrast
    /// (`ContrastAdvice::following_strength`; default each model's own, else --contrast).
    #[arg(long, value_name = "STRENGTH")]
    pub contrast_following: Option<f32>,
}

impl Lean {
    /// The style whose model `style` leans away from, by the `--contrast-with` entries.
    fn contrast_of(&self, style: &str) -> anyhow::Result<Option<String>> {
        let mut all = None;
        for e in &self.contrast_with {
            match e.split_once('=') {
                Some((s, other)) if s.trim().is_empty() || other.trim().is_empty() => {
                    anyhow::bail!("--contrast-with {e:?}: write STYLE=OTHER or OTHER")
                }
                Some((s, other)) if s.trim() == style => return Ok(Some(other.trim().to_string())),
                Some(_) => {}
                None if e.trim().is_empty() => anyhow::bail!("--contrast-with is empty: write STYLE=OTHER or OTHER"),
                None if e.trim() != style => all = Some(e.trim().to_string()),
                None => {}
            }
        }
        Ok(all)
    }

    /// The engine of `style`'s `model`, without its style judge under `lead`'s `--no-judge`,
    /// leaning away from its `--contrast-with` entry or else its model's own choice (a model
    /// of that style beside it), unless `--contrast 0`; with the strength and a line saying
    /// which style it leans from, when it does.
    pub fn engine(
        &self,
        model: &std::path::Path,
        style: &str,
        lead: &Lead,
    ) -> anyhow::Result<(cadenza_core::engine::Engine, f32, Option<String>)> {
        use cadenza_core::engine::{Engine, EngineOptions};
        let opts = EngineOptions { ort_library: crate::env::ort_library(), ..Default::default() };
        let mut engine = Engine::load(model, &opts)?;
        if lead.no_judge {
            engine.set_judge(None);
        }
        if let Some(gain) = lead.lead_key_gain {
            cadenza_core::sampling::check_lead_key_gain(gain).map_err(|e| anyhow::anyhow!("--lead-key-gain: {e}"))?;
            engine.set_lead_key_gain(Some(gain));
        }
        if let Some(spread) = lead.lead_register_spread {
            cadenza_core::sampling::check_lead_register_spread(spread)
                .map_err(|e| anyhow::anyhow!("--lead-register-spread: {e}"))?;
            engine.set_lead_register_spread(Some(spread));
        }
        let (other, strength, whose, (paths, following), advice) =
            match (self.contrast_of(style)?, &engine.info().contrast_advice) {
                _ if self.contrast == Some(0.0) => return Ok((engine, 0.0, None)),
                (Some(other), _) => {
                    let mut paths = Vec::new();
                    for one in cadenza_core::sampling::contrast_styles(&other) {
                        let path = model.with_file_name(format!("{one}.onnx"));
                        anyhow::ensure!(path.exists(), "{style} leans away from {one}: no model {}", path.display());
                        paths.push(path);
                    }
                    (other, self.contrast.unwrap_or(cadenza_core::sampling::DEFAULT_CONTRAST), "", (paths, None), None)
                }
                (None, Some(a)) => {
                    let paths =
                        cadenza_core::locate::advised_contrast_models(model, style, a).map_err(anyhow::Error::msg)?;
                    let strength = self.contrast.unwrap_or(a.strength);
                    let gain = a.following_gain();
                    let at = if gain == 1.0 { String::new() } else { format!(" at {}", strength * gain) };
                    let other = match &a.following {
                        Some(f) => format!("{} ({f}{at} following a primer)", a.with),
                        None if at.is_empty() => a.with.clone(),
                        None => format!("{} ({}following a primer)", a.with, &at[1..]),
                    };
                    (other, strength, ", its model's own choice", paths, Some(a.clone()))
                }
                (None, None) => return Ok((engine, 0.0, None)),
            };
        engine.load_contrasts(&paths, following.as_deref())?;
        if let Some(a) = &advice {
            engine.set_following_lean(a);
        }
        let other = match self.contrast_following {
            Some(f) => {
                anyhow::ensure!(
                    f.is_finite() && f > 0.0 && f <= cadenza_core::sampling::MAX_CONTRAST,
                    "--contrast-following {f} is outside (0, {}]",
                    cadenza_core::sampling::MAX_CONTRAST
                );
                engine.set_following_contrast_gain(f / strength);
                format!("{other} (at {f} following a primer)")
            }
            None => other,
        };
        Ok((engine, strength, Some(format!("{style} from {other} at {strength}{whose}"))))
    }
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
    /// What a phrase of the style's own music costs it against the nursery primers, by the
    /// phrase's length: where a primer starts to be foreign.
    Home(home::Args),
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.what {
        What::Style(a) => style::run(a),
        What::Continuation(a) => continuation::run(a),
        What::Transfer(a) => transfer::run(a),
        What::Nll(a) => nll::run(a),
        What::Home(a) => home::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::{Lead, Lean};
    use cadenza_core::sampling::StyleLead;

    #[test]
    fn style_lead_is_each_models_choice_unless_asked_and_alone_means_on() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            lead: Lead,
        }
        let parse = |args: &[&str]| {
            <Cli as clap::Parser>::try_parse_from(std::iter::once("eval").chain(args.iter().copied())).map(|c| c.lead)
        };
        let lead = |args: &[&str]| parse(args).expect("parses").style_lead;
        assert_eq!(lead(&[]), StyleLead::Model);
        assert_eq!(lead(&["--style-lead"]), StyleLead::On);
        assert_eq!(lead(&["--style-lead", "off"]), StyleLead::Off);
        assert_eq!(lead(&["--style-lead", "model"]), StyleLead::Model);
        assert!(parse(&["--style-lead", "maybe"]).is_err());
        assert_eq!(parse(&[]).expect("parses").words(), "each model's own choice");
        // The report gives back the flags that make it.
        assert_eq!(parse(&[]).expect("parses").flags(), "");
        let keyed = parse(&["--no-judge", "--lead-key-gain", "1.5"]).expect("parses");
        assert_eq!(keyed.flags(), " --no-judge --lead-key-gain 1.5");
        let spread = parse(&["--lead-register-spread", "2"]).expect("parses");
        assert_eq!(spread.flags(), " --lead-register-spread 2");
        assert!(spread.words().ends_with(", the register 2× as wide while leading"), "{}", spread.words());
        assert!(keyed.words().ends_with("without the style judge, the key held 1.5× as hard while leading"));
    }

    #[test]
    fn a_styles_own_contrast_entry_wins_over_one_for_every_style() {
        let lean = Lean { contrast_with: vec!["jazz=classical".into(), "rock".into()], ..Default::default() };
        let of = |s: &str| lean.contrast_of(s).expect("well formed");
        assert_eq!(of("jazz").as_deref(), Some("classical"));
        assert_eq!(of("pop").as_deref(), Some("rock"), "OTHER alone is for every style");
        assert_eq!(of("rock"), None, "but not for itself");
        assert_eq!(Lean::default().contrast_of("jazz").expect("none"), None);
        for bad in ["=classical", "jazz=", " "] {
            let lean = Lean { contrast_with: vec![bad.into()], ..Default::default() };
            let e = lean.contrast_of("jazz").expect_err(bad);
            assert!(e.to_string().contains("STYLE=OTHER"), "{e}");
        }
    }
}
