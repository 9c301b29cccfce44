//! The study's figures from `metrics.csv`: learning rate, training accuracy,
//! validation accuracy and loss over a whole finetune chain (classical ->
//! jazz -> pop) on one epoch axis, with a dashed marker where each finetune
//! starts. The chain is core's [`run_chain`] (each `run.json`'s parent).

use std::path::{Path, PathBuf};

use cadenza_core::records::{run_chain, RunRecord};
use plotters::prelude::*;

use crate::metrics::{read_metrics, Row, RowKind, METRICS_FILE};

pub const PLOT_DIR: &str = "plots";
const SIZE_PX: (u32, u32) = (960, 540);

#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct PlotError {
    pub path: PathBuf,
    pub message: String,
}

/// One run of a chain, placed on the chain's epoch axis.
#[derive(Debug, Clone)]
pub struct ChainRun {
    pub dir: PathBuf,
    pub record: RunRecord,
    /// Chain epochs before this run's first step.
    pub offset_epochs: f64,
    pub rows: Vec<Row>,
}

/// The runs from the chain's root to `dir`, each cut where its child starts.
/// The chain ends at the first ancestor without metrics (nothing to plot).
pub fn load_chain(dir: &Path) -> Result<Vec<ChainRun>, PlotError> {
    let runs = run_chain(dir).map_err(|e| PlotError { path: dir.to_path_buf(), message: e.to_string() })?;
    let mut chain: Vec<ChainRun> = Vec::new();
    for (d, record) in runs {
        let metrics_path = d.join(METRICS_FILE);
        if !chain.is_empty() && !metrics_path.is_file() {
            break;
        }
        let rows = read_metrics(&metrics_path).map_err(|e| PlotError { path: metrics_path, message: e.message })?;
        let offset_epochs = record.parent.as_ref().map(|p| p.chain_epochs).unwrap_or(0.0);
        chain.push(ChainRun { dir: d, record, offset_epochs, rows });
    }
    chain.reverse();
    for i in 0..chain.len().saturating_sub(1) {
        let (limit, own) = (chain[i + 1].offset_epochs, chain[i].offset_epochs);
        chain[i].rows.retain(|r| own + r.epoch <= limit + 1e-9);
    }
    Ok(chain)
}

/// Write `plots/{learning_rate,train_accuracy,val_accuracy,loss}.png` into
/// `dir` for the chain that ends at `dir`; returns the files.
pub fn plot_chain(dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let chain = load_chain(dir)?;
    let out = dir.join(PLOT_DIR);
    std::fs::create_dir_all(&out).map_err(|e| PlotError { path: out.clone(), message: e.to_string() })?;
    let figures: [(&str, &str, &str, Pick); 4] = [
        ("learning_rate.png", "Learning rate", "learning rate", |r| {
            vec![("", (r.kind == RowKind::Step && r.train_loss.is_some()).then_some(r.lr))]
        }),
        ("train_accuracy.png", "Training accuracy", "next-event accuracy", |r| {
            vec![("", if r.kind == RowKind::Step { r.train_acc } else { None })]
        }),
        ("val_accuracy.png", "Validation accuracy", "next-event accuracy", |r| {
            vec![("", if r.kind == RowKind::Step { r.val_acc } else { None })]
        }),
        ("loss.png", "Cross-entropy loss", "loss (nats per event)", |r| {
            if r.kind == RowKind::Step {
                vec![("train", r.train_loss), ("valid", r.val_loss)]
            } else {
                vec![]
            }
        }),
    ];
    let mut written = Vec::new();
    for (file, title, y_desc, pick) in figures {
        let path = out.join(file);
        draw_figure(&path, title, y_desc, &chain, pick).map_err(|message| PlotError { path: path.clone(), message })?;
        written.push(path);
    }
    Ok(written)
}

type Series = (String, Vec<(f64, f64)>, usize);
/// Picks a figure's values from a row: `(series suffix, value)` pairs.
type Pick = fn(&Row) -> Vec<(&'static str, Option<f64>)>;

fn draw_figure(path: &Path, title: &str, y_desc: &str, chain: &[ChainRun], pick: Pick) -> Result<(), String> {
    let mut series: Vec<Series> = Vec::new();
    for (ci, run) in chain.iter().enumerate() {
        let mut by_name: Vec<(&'static str, Vec<(f64, f64)>)> = Vec::new();
        for row in &run.rows {
            for (name, value) in pick(row) {
                let Some(v) = value.filter(|v| v.is_finite()) else { continue };
                let x = run.offset_epochs + row.epoch;
                match by_name.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, pts)) => pts.push((x, v)),
                    None => by_name.push((name, vec![(x, v)])),
                }
            }
        }
        for (si, (name, pts)) in by_name.into_iter().enumerate() {
            let label = if name.is_empty() { run.record.style.clone() } else { format!("{} {name}", run.record.style) };
            series.push((label, pts, ci * 2 + si));
        }
    }
    let points = series.iter().flat_map(|s| s.1.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (0.0f64, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if y0 > y1 {
        // Nothing to draw yet (a run stopped before its first log line).
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    x1 = x1.max(x0 + 1e-3);
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    let (y0, y1) = (y0 - pad, y1 + pad);

    let tmp = path.with_file_name(format!(".{}.tmp.png", path.file_stem().and_then(|s| s.to_str()).unwrap_or("plot")));
    {
        let root = BitMapBackend::new(&tmp, SIZE_PX).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("epoch (whole chain)")
            .y_desc(y_desc)
            .y_label_formatter(&|v| if v.abs() < 1e-2 && *v != 0.0 { format!("{v:.1e}") } else { format!("{v:.3}") })
            .draw()
            .map_err(|e| e.to_string())?;
        for (label, pts, color_index) in &series {
            let color = Palette99::pick(*color_index).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        for run in chain.iter().skip(1) {
            let x = run.offset_epochs;
            chart
                .draw_series(DashedLineSeries::new(vec![(x, y0), (x, y1)], 6, 4, BLACK.stroke_width(1)))
                .map_err(|e| e.to_string())?;
            let parent = run.record.parent.as_ref().map(|p| p.style.as_str()).unwrap_or("?");
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{} from {parent}", run.record.style),
                    (x, y1),
                    ("sans-serif", 14).into_font().color(&BLACK),
                )))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadenza_core::records::metrics::MetricsLog;
    use cadenza_core::records::{write_run_record, ParentRef};
    use serde_json::Value;

    fn run(dir: &Path, style: &str, parent: Option<(&Path, f64)>, epochs: &[f64]) {
        std::fs::create_dir_all(dir).expect("dir");
        let record = RunRecord::<Value, Value> {
            style: style.into(),
            data_dir: PathBuf::from(format!("data/{style}")),
            manifest_hash: String::new(),
            data_summary: String::new(),
            config: Value::Null,
            precision: Value::from("fp32"),
            parent: parent.map(|(p, chain_epochs)| ParentRef {
                checkpoint: p.join("best.safetensors"),
                run_dir: Some(p.to_path_buf()),
                style: "parent".into(),
                chain_epochs,
            }),
        };
        write_run_record(dir, &record).expect("run.json");
        if epochs.is_empty() {
            return;
        }
        let mut log = MetricsLog::open(dir, None).expect("metrics");
        for (i, &epoch) in epochs.iter().enumerate() {
            let row = Row {
                kind: RowKind::Step,
                epoch,
                step: i + 1,
                lr: 1e-3,
                train_loss: Some(2.0),
                train_acc: None,
                val_loss: None,
                val_acc: None,
                tokens_per_s: None,
                grad_norm: None,
                elapsed_s: 0.0,
            };
            log.append(&row).expect("row");
        }
    }

    /// The chain is plotted root first on one axis: each parent is cut where
    /// its child started, and an ancestor without metrics ends the chain.
    #[test]
    fn the_chain_runs_root_first_each_parent_cut_where_its_child_starts() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (classical, jazz, pop) = (tmp.path().join("classical"), tmp.path().join("jazz"), tmp.path().join("pop"));
        run(&classical, "classical", None, &[]);
        run(&jazz, "jazz", Some((&classical, 0.5)), &[0.5, 1.0, 1.5, 2.0]);
        run(&pop, "pop", Some((&jazz, 2.0)), &[0.5, 1.0]);
        let chain = load_chain(&pop).expect("chain");
        assert_eq!(chain.iter().map(|c| c.record.style.as_str()).collect::<Vec<_>>(), ["jazz", "pop"]);
        assert_eq!(chain[0].rows.iter().map(|r| r.epoch).collect::<Vec<_>>(), [0.5, 1.0, 1.5], "jazz up to 2.0");
        assert_eq!((chain[0].offset_epochs, chain[1].offset_epochs), (0.5, 2.0));
        assert_eq!(chain[1].rows.len(), 2);

        let e = load_chain(tmp.path()).expect_err("no run.json");
        assert!(e.to_string().contains("run.json"), "{e}");
    }
}
