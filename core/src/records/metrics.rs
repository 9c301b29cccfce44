//! `metrics.csv`: one row per logging interval (`kind = step`) and one per
//! epoch (`kind = epoch`), appended and flushed as training goes, trimmed back
//! to the resumed step when a killed run resumes (so no row is duplicated).
//! The trainer writes it; its plots, the model card and the evaluations read
//! the same [`Row`].

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;

pub const METRICS_FILE: &str = "metrics.csv";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowKind {
    /// A logging interval (training figures averaged over it) or a validation point.
    Step,
    /// A whole epoch (training figures averaged over the epoch).
    Epoch,
}

/// One row. Validation columns are empty where no validation ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub kind: RowKind,
    /// Epochs done in this run at the end of the row's interval (fractional).
    pub epoch: f64,
    /// Optimizer steps done.
    pub step: usize,
    pub lr: f64,
    pub train_loss: Option<f64>,
    pub train_acc: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_acc: Option<f64>,
    /// Training tokens per second over the interval (validation time excluded).
    pub tokens_per_s: Option<f64>,
    /// Global gradient norm before clipping, averaged over the interval.
    pub grad_norm: Option<f64>,
    /// Training wall-clock time so far.
    pub elapsed_s: f64,
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct MetricsError {
    pub path: PathBuf,
    pub message: String,
}

/// Appends rows to a run's `metrics.csv`.
pub struct MetricsLog {
    path: PathBuf,
    writer: csv::Writer<File>,
}

impl MetricsLog {
    /// Open (creating) `dir/metrics.csv`; with `keep_until_step`, first drop
    /// the rows after that step (a resume).
    pub fn open(dir: &Path, keep_until_step: Option<usize>) -> Result<Self, MetricsError> {
        let path = dir.join(METRICS_FILE);
        let err = |message: String| MetricsError { path: path.clone(), message };
        let exists = path.is_file();
        if let (true, Some(step)) = (exists, keep_until_step) {
            let rows: Vec<Row> = read_metrics(&path)?.into_iter().filter(|r| r.step <= step).collect();
            let mut w = csv::Writer::from_writer(Vec::new());
            for r in &rows {
                w.serialize(r).map_err(|e| err(e.to_string()))?;
            }
            let bytes = w.into_inner().map_err(|e| err(e.to_string()))?;
            write_atomic(&path, &bytes).map_err(|e| err(e.to_string()))?;
        } else if exists {
            std::fs::remove_file(&path).map_err(|e| err(e.to_string()))?;
        }
        let has_rows = path.is_file() && std::fs::metadata(&path).map(|m| m.len() > 0).unwrap_or(false);
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| err(e.to_string()))?;
        let writer = csv::WriterBuilder::new().has_headers(!has_rows).from_writer(file);
        Ok(Self { path, writer })
    }

    pub fn append(&mut self, row: &Row) -> Result<(), MetricsError> {
        let err = |e: &dyn std::fmt::Display| MetricsError { path: self.path.clone(), message: e.to_string() };
        self.writer.serialize(row).map_err(|e| err(&e))?;
        self.writer.flush().map_err(|e| err(&e))
    }
}

pub fn read_metrics(path: &Path) -> Result<Vec<Row>, MetricsError> {
    let err = |message: String| MetricsError { path: path.to_path_buf(), message };
    let mut reader = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
    let mut rows = Vec::new();
    for r in reader.deserialize::<Row>() {
        match r {
            Ok(row) => rows.push(row),
            // A kill -9 can cut the last line short; everything before it is good.
            Err(e) if e.is_io_error() => return Err(err(e.to_string())),
            Err(_) => break,
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: usize, val: Option<f64>) -> Row {
        Row {
            kind: RowKind::Step,
            epoch: step as f64 / 10.0,
            step,
            lr: 1e-3,
            train_loss: Some(2.0),
            train_acc: Some(0.3),
            val_loss: val,
            val_acc: val.map(|_| 0.25),
            tokens_per_s: Some(1000.0),
            grad_norm: None,
            elapsed_s: step as f64,
        }
    }

    #[test]
    fn resume_trims_rows_after_the_checkpoint_and_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = MetricsLog::open(dir.path(), None).expect("open");
        for s in [10, 20, 30] {
            log.append(&row(s, (s == 20).then_some(2.5))).expect("append");
        }
        drop(log);
        let mut log = MetricsLog::open(dir.path(), Some(20)).expect("reopen");
        log.append(&row(30, None)).expect("append");
        drop(log);
        let rows = read_metrics(&dir.path().join(METRICS_FILE)).expect("read");
        assert_eq!(rows.iter().map(|r| r.step).collect::<Vec<_>>(), vec![10, 20, 30]);
        assert_eq!(rows[1].val_loss, Some(2.5));
        assert_eq!(rows[0].val_loss, None);
    }

    #[test]
    fn a_cut_last_line_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = MetricsLog::open(dir.path(), None).expect("open");
        log.append(&row(10, None)).expect("append");
        drop(log);
        let path = dir.path().join(METRICS_FILE);
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("step,1.0,2");
        std::fs::write(&path, text).expect("write");
        assert_eq!(read_metrics(&path).expect("read").len(), 1);
    }
}
