//! The shipped styles' models. Git holds each shipped style as its model card
//! (`models/STYLE.md`) and its float16 checkpoint
//! (`models/checkpoints/STYLE.safetensors` with its `.json` sidecar), half
//! the size of the float32 ONNX model and the file training continues from.
//! `models/STYLE.onnx` is made from them here, like any build output: when it
//! is missing or older than its checkpoint. Setup and every command that
//! sets up first call [`ensure_models`], so the README's commands find them.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use cadenza_core::export::{export_is_current, export_onnx, ExportOptions, Precision};

use crate::env::repo_root;

/// Styles that ship: a model card and a checkpoint of the same name.
pub fn shipped_styles(models: &Path) -> Result<Vec<String>> {
    let checkpoints = models.join("checkpoints");
    let mut styles = Vec::new();
    let entries = std::fs::read_dir(models).with_context(|| format!("{}: cannot list", models.display()))?;
    for entry in entries {
        let path = entry.with_context(|| format!("{}: cannot list", models.display()))?.path();
        let (Some(stem), Some("md")) =
            (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|e| e.to_str()))
        else {
            continue;
        };
        if checkpoints.join(format!("{stem}.safetensors")).is_file() {
            styles.push(stem.to_string());
        }
    }
    styles.sort();
    Ok(styles)
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Export `models/STYLE.onnx` at `precision` for every shipped style whose
/// model is missing, older than its checkpoint or sidecar, of another
/// precision or from an older exporter; returns the models written.
pub fn ensure_models_in(models: &Path, precision: Precision) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for style in shipped_styles(models)? {
        let base = models.join("checkpoints").join(&style);
        let weights = base.with_extension("safetensors");
        let sidecar = base.with_extension("json");
        let onnx = models.join(format!("{style}.onnx"));
        let newest_source = modified(&weights).max(modified(&sidecar));
        if modified(&onnx).is_some_and(|m| Some(m) >= newest_source) && export_is_current(&onnx, precision) {
            continue;
        }
        let options = ExportOptions { style: Some(style.clone()), precision };
        let report = export_onnx(&weights, &onnx, &options)
            .with_context(|| format!("{}: cannot make the shipped model {}", weights.display(), onnx.display()))?;
        eprintln!(
            "setup: made {} from {} ({}, {:.1} MB)",
            onnx.display(),
            weights.display(),
            precision.name(),
            report.bytes as f64 / 1e6
        );
        written.push(onnx);
    }
    Ok(written)
}

/// The precision of the shipped models: int8, twice as fast on a CPU, unless
/// setup installed the CUDA build, whose provider runs int8 products on the
/// CPU and float32 ones on the GPU.
pub fn shipped_precision(cuda: bool) -> Precision {
    if cuda {
        Precision::Float32
    } else {
        Precision::Int8
    }
}

/// [`ensure_models_in`] for the repository's `models/`.
pub fn ensure_models(cuda: bool) -> Result<Vec<PathBuf>> {
    ensure_models_in(&repo_root().join("models"), shipped_precision(cuda))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadenza_core::export::{model_precision, random_weights, synthetic_meta};
    use cadenza_core::model::ModelConfig;

    /// A card and a checkpoint make a style; its model is made once, again when the
    /// checkpoint is newer or the wanted precision differs, and a checkpoint
    /// without a card (a training run's) is left alone.
    #[test]
    fn models_are_made_from_checkpoints_of_carded_styles_only() {
        let dir = std::env::temp_dir().join(format!("cadenza-shipped-{}", std::process::id()));
        let models = dir.join("models");
        std::fs::create_dir_all(models.join("checkpoints")).expect("dirs");
        let cfg = ModelConfig { max_seq_len: 16, dropout: 0.0, ..ModelConfig::TINY };
        let weights = random_weights(&cfg, 3);
        for style in ["jazz", "jazz-medium"] {
            let base = models.join("checkpoints").join(style);
            weights.write_safetensors(&base.with_extension("safetensors")).expect("weights");
            let meta = synthetic_meta(&cfg, "jazz", "random weights");
            std::fs::write(base.with_extension("json"), serde_json::to_vec(&meta).expect("json")).expect("sidecar");
        }
        std::fs::write(models.join("jazz.md"), "# jazz").expect("card");
        assert_eq!(shipped_styles(&models).expect("styles"), vec!["jazz".to_string()]);
        let int8 = Precision::Int8;
        assert_eq!(ensure_models_in(&models, int8).expect("made"), vec![models.join("jazz.onnx")]);
        assert!(!models.join("jazz-medium.onnx").exists());
        assert_eq!(model_precision(&models.join("jazz.onnx")), Some(int8));
        assert!(
            ensure_models_in(&models, int8).expect("up to date").is_empty(),
            "an up-to-date model is not made again"
        );
        // A CUDA setup wants float32: the int8 model is made again, then kept.
        let float = Precision::Float32;
        assert_eq!(ensure_models_in(&models, float).expect("float32"), vec![models.join("jazz.onnx")]);
        assert_eq!(model_precision(&models.join("jazz.onnx")), Some(float));
        assert!(ensure_models_in(&models, float).expect("up to date").is_empty());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let sidecar = models.join("checkpoints/jazz.json");
        std::fs::write(&sidecar, std::fs::read(&sidecar).expect("read")).expect("touch");
        assert_eq!(ensure_models_in(&models, float).expect("remade"), vec![models.join("jazz.onnx")]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
