//! A run's settings: every default in one `Default` impl, named presets
//! (`tiny`, `small`, `base`) on top, then a TOML file that is a small diff
//! from them, then command-line overrides. Unknown keys are an error at every
//! level, so a typo never silently trains with a default.
//!
//! A TOML file may start from a preset with `preset = "small"` (the default)
//! and override model fields in a `[model]` table:
//!
//! ```toml
//! preset = "small"
//! epochs = 35
//! lr = 3e-4
//! min_lr = 2e-4
//! schedule = "linear"
//! [model]
//! dropout = 0.15
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use cadenza_core::ModelConfig;

use crate::model::Precision;

/// How the learning rate moves after the linear warm-up from 0 to `lr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Half a cosine from `lr` down to `min_lr` at the last step.
    Cosine,
    /// A straight line from `lr` down to `min_lr` at the last step (the study's
    /// jazz finetune: 3e-4 falling to 2e-4).
    Linear,
    /// `lr * sqrt(warmup / step)`, never below `min_lr` (the Transformer's
    /// schedule, which "accelerates then slowly decreases").
    InverseSqrt,
    /// `lr` throughout.
    Constant,
}

/// `auto` picks bfloat16 products where the hardware runs them natively
/// (a CUDA GPU, or a CPU with AVX512-BF16) and float32 elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionChoice {
    Auto,
    Fp32,
    Bf16,
}

impl PrecisionChoice {
    pub fn resolve(self, device: tch::Device) -> Precision {
        match self {
            PrecisionChoice::Fp32 => Precision::Fp32,
            PrecisionChoice::Bf16 => Precision::Bf16,
            PrecisionChoice::Auto => {
                if crate::device::native_bf16(device) {
                    Precision::Bf16
                } else {
                    Precision::Fp32
                }
            }
        }
    }
}

/// Everything a training run needs besides its data and its parent model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelConfig,
    /// Sequences per step.
    pub batch_size: usize,
    /// Events per training crop (at most `model.max_seq_len`); each crop is
    /// `seq_len + 1` events, input and target shifted by one.
    pub seq_len: usize,
    /// Passes over the training split; one epoch is as many steps as it takes
    /// to draw the split's number of events in random crops.
    pub epochs: usize,
    /// Stop after this many steps even if epochs remain (also the schedule's end).
    pub max_steps: Option<usize>,
    /// Peak learning rate, reached at the end of the warm-up.
    pub lr: f64,
    /// Learning rate at the last step (`cosine`, `linear`) or the floor (`inverse_sqrt`).
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub schedule: Schedule,
    /// AdamW's decoupled weight decay, on weight matrices only (see `optim`).
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Largest global gradient norm; 0 turns clipping off.
    pub grad_clip: f64,
    /// Random transposition and time-stretch of every crop (`codec::AUGMENT_*`).
    pub augment: bool,
    /// One log line and one metrics row every this many steps.
    pub log_every_steps: usize,
    /// Validation every this many steps (0: only at the end of each epoch).
    pub eval_every_steps: usize,
    /// A checkpoint every this many steps (0: only at the end of each epoch).
    pub checkpoint_every_steps: usize,
    /// Step checkpoints kept besides `best` (the oldest go first).
    pub keep_last: usize,
    /// Validation windows of `seq_len + 1` events at most (spread over the
    /// split) so a validation pass stays short on large sets.
    pub val_max_windows: usize,
    /// Freeze the token embedding and the first N blocks (finetuning).
    pub freeze_layers: usize,
    /// Seeds the initial weights, the crops, the augmentation and dropout.
    pub seed: u64,
    pub precision: PrecisionChoice,
    /// Share of each crop (0..1) whose next events do not count in the
    /// training loss: the model learns to continue a context it has heard,
    /// rather than to start from nothing. 0 counts every event.
    #[serde(default)]
    pub loss_from: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: ModelConfig::SMALL,
            batch_size: 8,
            seq_len: ModelConfig::SMALL.max_seq_len,
            epochs: 20,
            max_steps: None,
            lr: 5e-4,
            min_lr: 5e-5,
            warmup_steps: 400,
            schedule: Schedule::Cosine,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-9,
            grad_clip: 1.0,
            augment: true,
            log_every_steps: 20,
            eval_every_steps: 0,
            checkpoint_every_steps: 500,
            keep_last: 3,
            val_max_windows: 256,
            freeze_layers: 0,
            seed: 1,
            precision: PrecisionChoice::Auto,
            loss_from: 0.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown preset {0:?}; the presets are {names}", names = ModelConfig::preset_names())]
    UnknownPreset(String),
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid training configuration: {0}")]
    Invalid(String),
}

impl TrainConfig {
    /// The defaults with a model preset and settings that suit its size.
    pub fn preset(name: &str) -> Result<Self, ConfigError> {
        let model = ModelConfig::preset(name).ok_or_else(|| ConfigError::UnknownPreset(name.to_string()))?;
        let base = Self { model, seq_len: model.max_seq_len, ..Self::default() };
        // Training settings that suit each preset's size, keyed by its model (core names the presets).
        Ok(match model {
            m if m == ModelConfig::TINY => Self {
                batch_size: 8,
                lr: 1e-3,
                min_lr: 1e-4,
                warmup_steps: 20,
                log_every_steps: 10,
                checkpoint_every_steps: 100,
                val_max_windows: 32,
                ..base
            },
            // Ten-odd million weights: a lower peak and a longer warm-up than small's.
            m if m == ModelConfig::MEDIUM => {
                Self { lr: 3e-4, min_lr: 3e-5, warmup_steps: 1000, log_every_steps: 10, ..base }
            }
            // The study's batch; sequence 2048 makes each step long on a CPU.
            m if m == ModelConfig::BASE => {
                Self { batch_size: 2, lr: 2e-4, min_lr: 2e-5, warmup_steps: 1000, log_every_steps: 5, ..base }
            }
            _ => base,
        })
    }

    /// `--config VALUE`: a preset name, or a TOML file (a diff from a preset).
    pub fn from_arg(value: &str) -> Result<Self, ConfigError> {
        if ModelConfig::is_preset(value) {
            return Self::preset(value);
        }
        Self::from_toml_file(Path::new(value))
    }

    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::from_toml_str(&text).map_err(|message| ConfigError::Parse { path: path.into(), message })
    }

    /// Whether a TOML diff chooses the model (a `preset` or a `[model]` table);
    /// a finetune whose config does not takes its parent's model.
    /// (Dropout alone does not choose a model: it has no weights.)
    pub fn toml_sets_model(text: &str) -> bool {
        let Ok(t) = text.parse::<toml::Table>() else { return false };
        let model_shape = match t.get("model") {
            Some(toml::Value::Table(m)) => m.keys().any(|k| k != "dropout"),
            Some(_) => true,
            None => false,
        };
        t.contains_key("preset") || model_shape
    }

    /// Parse a TOML diff; the error message names the offending key.
    pub fn from_toml_str(text: &str) -> Result<Self, String> {
        let mut diff: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let preset = match diff.remove("preset") {
            None => "small".to_string(),
            Some(toml::Value::String(s)) => s,
            Some(other) => return Err(format!("preset must be a string, found {other}")),
        };
        let base = Self::preset(&preset).map_err(|e| e.to_string())?;
        let mut merged = toml::Table::try_from(&base).map_err(|e| e.to_string())?;
        // A model diff that changes max_seq_len moves the default crop with it.
        let seq_follows_model = !diff.contains_key("seq_len");
        merge(&mut merged, diff);
        let mut cfg: Self = merged.try_into().map_err(|e: toml::de::Error| e.to_string())?;
        if seq_follows_model {
            cfg.seq_len = cfg.seq_len.min(cfg.model.max_seq_len);
        }
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.model.validate().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let bad = |why: String| Err(ConfigError::Invalid(why));
        if self.batch_size == 0 || self.seq_len == 0 {
            return bad("batch_size and seq_len must be positive".into());
        }
        if self.seq_len > self.model.max_seq_len {
            return bad(format!("seq_len {} exceeds the model's max_seq_len {}", self.seq_len, self.model.max_seq_len));
        }
        if !(0.0..1.0).contains(&self.loss_from) {
            return bad(format!("loss_from {} is outside 0..1 (a share of each crop)", self.loss_from));
        }
        if !(self.lr > 0.0 && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return bad(format!("need 0 <= min_lr ({}) <= lr ({}) and lr > 0", self.min_lr, self.lr));
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) || self.eps <= 0.0 {
            return bad("beta1 and beta2 must lie in [0, 1) and eps be positive".into());
        }
        if self.epochs == 0 && self.max_steps.is_none() {
            return bad("epochs must be positive (or give max_steps)".into());
        }
        if self.log_every_steps == 0 {
            return bad("log_every_steps must be positive".into());
        }
        if self.freeze_layers > self.model.n_layers {
            return bad(format!(
                "freeze_layers {} exceeds the model's {} layers",
                self.freeze_layers, self.model.n_layers
            ));
        }
        Ok(())
    }

    /// Learning rate for update number `step` (0-based) of `total_steps`.
    /// Events at the start of each crop whose predictions the loss skips.
    pub fn loss_from_events(&self) -> usize {
        (self.seq_len as f64 * self.loss_from).floor() as usize
    }

    pub fn lr_at(&self, step: usize, total_steps: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        // The last step (total_steps - 1) lands exactly on min_lr.
        let span = total_steps.saturating_sub(self.warmup_steps + 1).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Linear => self.lr + (self.min_lr - self.lr) * progress,
            Schedule::Cosine => {
                self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            Schedule::InverseSqrt => {
                let w = self.warmup_steps.max(1) as f64;
                (self.lr * (w / (step + 1) as f64).sqrt()).max(self.min_lr)
            }
        }
    }
}

/// Recursive table merge: `diff`'s values replace `base`'s, sub-tables merge.
fn merge(base: &mut toml::Table, diff: toml::Table) {
    for (key, value) in diff {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(d)) => merge(b, d),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_diff_overrides_only_what_it_names() {
        let cfg = TrainConfig::from_toml_str("preset = \"tiny\"\nlr = 3e-4\n[model]\ndropout = 0.2\n").expect("parse");
        let tiny = TrainConfig::preset("tiny").expect("preset");
        assert_eq!(cfg.lr, 3e-4);
        assert_eq!(cfg.model.dropout, 0.2);
        assert_eq!(cfg.model.d_model, tiny.model.d_model);
        assert_eq!(cfg.batch_size, tiny.batch_size);
        assert_eq!(TrainConfig::from_toml_str("").expect("empty"), TrainConfig::preset("small").expect("small"));
    }

    #[test]
    fn unknown_keys_are_errors_at_every_level() {
        let top = TrainConfig::from_toml_str("learning_rate = 1e-3").expect_err("unknown top-level key");
        assert!(top.contains("learning_rate"), "{top}");
        let nested = TrainConfig::from_toml_str("[model]\nlayers = 3").expect_err("unknown model key");
        assert!(nested.contains("layers"), "{nested}");
        assert!(TrainConfig::from_toml_str("preset = \"huge\"").is_err());
        assert!(!TrainConfig::toml_sets_model("lr = 1e-4\n[model]\ndropout = 0.2"));
        assert!(TrainConfig::toml_sets_model("[model]\nd_model = 128"));
        assert!(TrainConfig::toml_sets_model("preset = \"tiny\""));
        assert!(TrainConfig::from_toml_str("schedule = \"sawtooth\"").is_err());
    }

    #[test]
    fn shipped_configs_parse_and_validate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("trainer/configs") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let cfg = TrainConfig::from_toml_file(&path).unwrap_or_else(|e| panic!("{e}"));
                cfg.validate().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 4, "expected configs for classical, jazz, pop and folk");
        let jazz = TrainConfig::from_toml_file(&dir.join("jazz.toml")).expect("jazz");
        let total = 1000;
        assert!((jazz.lr_at(jazz.warmup_steps, total) - 3e-4).abs() < 1e-12);
        assert!((jazz.lr_at(total - 1, total) - 2e-4).abs() < 1e-6);
    }

    #[test]
    fn schedules_warm_up_then_decay_to_min_lr() {
        for schedule in [Schedule::Cosine, Schedule::Linear, Schedule::InverseSqrt] {
            let cfg = TrainConfig { schedule, lr: 1e-3, min_lr: 1e-4, warmup_steps: 10, ..TrainConfig::default() };
            let lrs: Vec<f64> = (0..100).map(|s| cfg.lr_at(s, 100)).collect();
            assert!(lrs[..10].windows(2).all(|w| w[1] > w[0]), "{schedule:?} warm-up rises");
            assert!((lrs[9] - 1e-3).abs() < 1e-12);
            assert!(lrs[10..].windows(2).all(|w| w[1] <= w[0] + 1e-15), "{schedule:?} decays");
            assert!(lrs[99] >= 1e-4 - 1e-12);
            if schedule != Schedule::InverseSqrt {
                assert!((lrs[99] - 1e-4).abs() < 2e-6, "{schedule:?} ends at min_lr: {}", lrs[99]);
            }
        }
    }

    #[test]
    fn validation_rejects_crops_longer_than_the_model() {
        let cfg = TrainConfig { seq_len: 4096, ..TrainConfig::default() };
        assert!(matches!(cfg.validate(), Err(ConfigError::Invalid(_))));
        TrainConfig::default().validate().expect("defaults are valid");
    }
}
