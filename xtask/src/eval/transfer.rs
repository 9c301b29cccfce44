//! `cargo xtask eval transfer`: what finetuning from the classical model buys
//! against training the same configuration from scratch on the same style
//! data, at equal steps and tokens. Trains whatever runs are missing (and
//! resumes unfinished ones), then plots validation curves and writes a table.
//!
//! The runs:
//! - jazz: `runs/jazz` (from classical; the shipped jazz) and `runs/study/jazz-scratch`;
//! - pop: `runs/pop` (from jazz, the study's chain; shipped), `runs/study/pop-from-classical`,
//!   `runs/study/pop-scratch`;
//! - folk: `runs/folk` (from classical; shipped) and `runs/study/folk-scratch`.
//!
//! Every run of a style uses that style's `trainer/configs/STYLE.toml` (the
//! scratch runs with the classical model's preset on top), the same seed and
//! the same number of steps, so each sees the same batches.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cadenza_core::records::metrics::{read_metrics, RowKind, METRICS_FILE};
use cadenza_core::records::RUN_FILE;
use plotters::prelude::*;

use crate::env::repo_root;
use crate::train;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Styles to study (each needs data/STYLE from `cargo xtask data`).
    #[arg(long, value_delimiter = ',', default_value = "jazz,pop,folk")]
    pub styles: Vec<String>,
    /// Optimizer steps of every run (batch and sequence come from the style's config).
    #[arg(long, default_value_t = 600)]
    pub steps: usize,
    /// Preset of the scratch runs: the classical model's.
    #[arg(long, default_value = "small")]
    pub preset: String,
    /// Where the report and plots go.
    #[arg(long, default_value = "models/eval")]
    pub out: PathBuf,
    /// Only report on runs that exist; train nothing.
    #[arg(long)]
    pub no_train: bool,
    /// CPU threads for libtorch (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// One arm of the comparison.
struct Arm {
    label: &'static str,
    dir: PathBuf,
    /// `--from` value, or `None` for a scratch run.
    from: Option<&'static str>,
}

fn arms(style: &str) -> Vec<Arm> {
    let root = repo_root();
    let study = root.join("runs/study");
    let mut v = match style {
        "pop" => vec![
            Arm { label: "from classical+jazz (chain)", dir: root.join("runs/pop"), from: Some("jazz") },
            Arm { label: "from classical", dir: study.join("pop-from-classical"), from: Some("classical") },
        ],
        _ => vec![Arm { label: "from classical", dir: root.join("runs").join(style), from: Some("classical") }],
    };
    v.push(Arm { label: "from scratch", dir: study.join(format!("{style}-scratch")), from: None });
    v
}

/// Validation points `(step, loss, accuracy)` of a run, in step order.
pub fn validation_curve(dir: &Path) -> Result<Vec<(usize, f64, f64)>> {
    let mut points = Vec::new();
    for r in read_metrics(&dir.join(METRICS_FILE))? {
        if let (RowKind::Step, Some(l), Some(a)) = (r.kind, r.val_loss, r.val_acc) {
            points.push((r.step, l, a));
        }
    }
    points.sort_by_key(|p| p.0);
    points.dedup_by_key(|p| p.0);
    Ok(points)
}

fn last_step(dir: &Path) -> usize {
    validation_curve(dir).ok().and_then(|c| c.last().map(|p| p.0)).unwrap_or(0)
}

fn train_arm(style: &str, arm: &Arm, args: &Args) -> Result<()> {
    let done = last_step(&arm.dir);
    if done >= args.steps {
        println!("transfer: {} ({}) is complete at step {done}", style, arm.label);
        return Ok(());
    }
    let root = repo_root();
    let style_config = root.join("trainer/configs").join(format!("{style}.toml"));
    let config = match arm.from {
        Some(_) => style_config.display().to_string(),
        None => {
            // The style's own settings on the classical model's preset.
            let text = std::fs::read_to_string(&style_config)
                .with_context(|| format!("{}: cannot read", style_config.display()))?;
            std::fs::create_dir_all(root.join("runs/study"))?;
            let path = root.join("runs/study").join(format!("{style}-scratch.toml"));
            let body = format!(
                "# {style} from scratch: trainer/configs/{style}.toml on the {} preset\npreset = \"{}\"\n{text}",
                args.preset, args.preset
            );
            cadenza_core::fsutil::write_atomic(&path, body.as_bytes())?;
            path.display().to_string()
        }
    };
    let resume = arm.dir.join(RUN_FILE).exists();
    println!(
        "transfer: training {style} {} for {} steps{}",
        arm.label,
        args.steps,
        if resume { " (resuming)" } else { "" }
    );
    train::run(&train::Args {
        style: style.to_string(),
        data: None,
        from: if resume { None } else { arm.from.map(str::to_string) },
        config: if resume { None } else { Some(config) },
        epochs: Some(1000),
        steps: Some(args.steps),
        out: Some(arm.dir.clone()),
        resume,
        continue_from: None,
        force: false,
        freeze_layers: None,
        seed: None,
        device: "cpu".into(),
        threads: args.threads,
        no_progress: true,
    })
}

/// A run's validation points `(step, loss, accuracy)`.
type Curve = Vec<(usize, f64, f64)>;

/// The validation point nearest `step`.
fn at(curve: &[(usize, f64, f64)], step: usize) -> Option<(usize, f64, f64)> {
    curve.iter().copied().min_by_key(|p| p.0.abs_diff(step))
}

pub fn run(args: &Args) -> Result<()> {
    let root = repo_root();
    let out = root.join(&args.out);
    std::fs::create_dir_all(&out)?;
    let mut report = format!(
        "# What transfer learning buys\n\nGenerated by `cargo xtask eval transfer --steps {}`. Each arm trains the same \
         model configuration with the style's own settings (`trainer/configs/STYLE.toml`), the same seed and the same \
         {} optimizer steps, so every arm sees the same batches of the same data; only the starting weights differ. \
         Validation loss (nats per event) and next-event accuracy on the style's validation split.\n",
        args.steps, args.steps
    );
    for style in &args.styles {
        if !root.join("data").join(style).join("manifest.csv").exists() {
            bail!("data/{style}/manifest.csv is missing; run `cargo xtask data` first");
        }
        let arms = arms(style);
        if !args.no_train {
            for arm in &arms {
                train_arm(style, arm, args)?;
            }
        }
        let curves: Vec<(&Arm, Curve)> = arms
            .iter()
            .filter_map(|a| validation_curve(&a.dir).ok().map(|c| (a, c)))
            .filter(|(_, c)| !c.is_empty())
            .collect();
        if curves.is_empty() {
            continue;
        }
        report.push_str(&format!("\n## {style}\n\n| arm | step 0 | 25% | 50% | 100% |\n|---|---|---|---|---|\n"));
        for (arm, c) in &curves {
            let cells: Vec<String> = [0, args.steps / 4, args.steps / 2, args.steps]
                .iter()
                .map(|&s| match at(c, s) {
                    Some((st, l, a)) if st.abs_diff(s) <= args.steps / 8 => format!("{l:.3} / {:.1}%", 100.0 * a),
                    _ => "–".into(),
                })
                .collect();
            report.push_str(&format!("| {} | {} |\n", arm.label, cells.join(" | ")));
        }
        report.push_str(
            "\nCells: validation loss / accuracy at the validation point nearest that share of the budget.\n",
        );
        let scratch = curves.iter().find(|(a, _)| a.from.is_none()).and_then(|(_, c)| c.last().copied());
        for (arm, c) in curves.iter().filter(|(a, _)| a.from.is_some()) {
            if let (Some(end), Some(s)) = (c.last(), scratch) {
                // the step at which the finetune first reached the scratch run's final loss
                let reached = c.iter().find(|p| p.1 <= s.1).map(|p| p.0);
                report.push_str(&format!(
                    "\n{}: final validation loss {:.3} against {:.3} from scratch ({:+.3}); accuracy {:.1}% against {:.1}%. {}\n",
                    arm.label,
                    end.1,
                    s.1,
                    end.1 - s.1,
                    100.0 * end.2,
                    100.0 * s.2,
                    match reached {
                        Some(st) => format!(
                            "It reached the scratch run's final loss at step {st} ({:.0}% of the budget).",
                            100.0 * st as f64 / args.steps as f64
                        ),
                        None => "It never reached the scratch run's final loss.".into(),
                    }
                ));
            }
        }
        let png = out.join(format!("transfer-{style}.png"));
        plot_curves(style, &curves, &png)?;
        report.push_str(&format!("\n![{style}](transfer-{style}.png)\n"));
        println!("transfer: {style}: {}", png.display());
    }
    if let Some(figures) = chain_figures(&out)? {
        report.push_str(&format!(
            "\n## The chain classical → jazz → pop\n\nThe study's figures, drawn by the trainer from the runs' metrics \
             (`runs/pop` and the runs it descends from) on one epoch axis, a dashed line where each finetune starts.\n\n{figures}"
        ));
    }
    let md = out.join("transfer.md");
    cadenza_core::fsutil::write_atomic(&md, report.as_bytes())?;
    println!("{report}\ntransfer: wrote {}", md.display());
    Ok(())
}

/// Draw the chain figures of `runs/pop` (learning rate, accuracies, loss) with
/// the trainer and copy them into `out` as `chain-*.png`; returns their Markdown,
/// or `None` when there is no chain here to draw.
fn chain_figures(out: &Path) -> Result<Option<String>> {
    let root = repo_root();
    let run = root.join("runs/pop");
    if !run.join(RUN_FILE).exists() {
        return Ok(None);
    }
    // Finetuned from a shipped checkpoint, the run's ancestors are not on this
    // machine: a one-run figure would replace the chain's, so leave those as they are.
    if cadenza_core::records::run_chain(&run)?.len() < 2 {
        println!(
            "transfer: {} starts from a checkpoint whose runs are not here; the chain figures are left as they are",
            run.display()
        );
        return Ok(None);
    }
    let env = crate::setup::tool_env()?;
    let bin = train::build_trainer(&env)?;
    let mut cmd = std::process::Command::new(bin);
    env.apply(&mut cmd);
    let listing = cmd.arg("plot").arg(&run).output()?;
    if !listing.status.success() {
        bail!("cadenza-train plot {}: {}", run.display(), String::from_utf8_lossy(&listing.stderr));
    }
    let mut md = String::new();
    for line in String::from_utf8_lossy(&listing.stdout).lines() {
        let src = PathBuf::from(line.trim());
        let Some(name) = src.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
        let dest = out.join(format!("chain-{name}"));
        let bytes = std::fs::read(&src).with_context(|| format!("{}: cannot read", src.display()))?;
        cadenza_core::fsutil::write_atomic(&dest, &bytes)?;
        md.push_str(&format!("![{}](chain-{name})\n", name.trim_end_matches(".png").replace('_', " ")));
    }
    Ok(Some(md))
}

const ARM_COLOURS: [RGBColor; 3] = [RGBColor(200, 40, 60), RGBColor(40, 120, 200), RGBColor(90, 90, 90)];

fn plot_curves(style: &str, curves: &[(&Arm, Curve)], path: &Path) -> Result<()> {
    let tmp = cadenza_core::fsutil::temp_path(path).with_extension("png");
    {
        let root = BitMapBackend::new(&tmp, (1400, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(700);
        let max_step = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.0)).max().unwrap_or(1).max(1) as f64;
        for (panel, pick, title) in [(&left, 1usize, "validation loss"), (&right, 2, "validation accuracy")] {
            let vals: Vec<f64> =
                curves.iter().flat_map(|(_, c)| c.iter().map(|p| if pick == 1 { p.1 } else { p.2 })).collect();
            let (lo, hi) = vals.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
            let pad = (hi - lo).max(1e-3) * 0.08;
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("{style}: {title}"), ("sans-serif", 24))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..max_step, (lo - pad)..(hi + pad))?;
            chart
                .configure_mesh()
                .x_desc("optimizer step")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_desc(title)
                .draw()?;
            for (i, (arm, c)) in curves.iter().enumerate() {
                let colour = ARM_COLOURS[i % ARM_COLOURS.len()];
                chart
                    .draw_series(LineSeries::new(
                        c.iter().map(|p| (p.0 as f64, if pick == 1 { p.1 } else { p.2 })),
                        colour.stroke_width(3),
                    ))?
                    .label(arm.label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3)));
            }
            chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK).draw()?;
        }
        root.present()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_points_are_read_in_step_order() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("cadenza-transfer-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join(METRICS_FILE),
            "kind,epoch,step,lr,train_loss,train_acc,val_loss,val_acc,tokens_per_s,grad_norm,elapsed_s\n\
             step,0.0,0,0.0001,,,6.0,0.01,,,0.0\n\
             step,0.5,20,0.0003,5.0,0.1,,,900,1.0,10\n\
             step,1.0,40,0.0003,4.0,0.2,4.5,0.2,900,1.0,20\n\
             epoch,1.0,40,0.0003,4.2,0.2,4.5,0.2,900,1.0,20\n",
        )?;
        let c = validation_curve(&dir)?;
        assert_eq!(c, vec![(0, 6.0, 0.01), (40, 4.5, 0.2)]);
        assert_eq!(at(&c, 30).map(|p| p.0), Some(40));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
