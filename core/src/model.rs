//! The one description of the Music Transformer architecture (Huang et al.
//! 2018, arXiv:1809.04281). The trainer builds its libtorch model from it, the
//! exporter writes it into the ONNX metadata, and the engine checks a model
//! file against it before running a single step.
//!
//! Architecture (fixed by [`ARCHITECTURE`]; a change bumps it):
//! - token embedding, no absolute positions: order comes from relative attention;
//! - `n_layers` pre-norm blocks: `x + attn(ln1(x))`, then `x + ff(ln2(x))`,
//!   with `ff = fc2(relu(fc1(.)))`;
//! - causal multi-head self-attention whose logits are
//!   `(q k^T + q e_{i-j}^T) / sqrt(head_dim)`, where `e_d` (row `d` of the
//!   layer's `rel_emb`, shared by the heads) embeds the distance `d = i - j`,
//!   `0 <= d < max_seq_len`; training computes it with the paper's skewing;
//! - a final layer norm and an untied output projection to the vocabulary.

use serde::{Deserialize, Serialize};

use crate::codec;

/// Identifies the layer layout above; models record it and the engine refuses others.
pub const ARCHITECTURE: &str = "music-transformer-relative-prenorm-v1";

/// Hyper-parameters of one model. Weights are named after the module tree:
/// `embed.weight`, `layers.{i}.{ln1,ln2}.{weight,bias}`,
/// `layers.{i}.attn.{q,k,v,o}.{weight,bias}` (weight `[out, in]`),
/// `layers.{i}.attn.rel_emb` (`[max_seq_len, head_dim]`),
/// `layers.{i}.ff.{fc1,fc2}.{weight,bias}`, `ln_f.{weight,bias}`,
/// `head.{weight,bias}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Tokens in the vocabulary; [`codec::VOCAB_SIZE`] for this codec.
    pub vocab_size: usize,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    /// Width of the feed-forward hidden layer.
    pub d_ff: usize,
    /// Dropout probability while training (attention, residual, feed-forward).
    pub dropout: f64,
    /// Longest context in events: the training crop and the number of
    /// relative distances the model knows.
    pub max_seq_len: usize,
}

impl ModelConfig {
    /// Seconds on CPU; for tests.
    pub const TINY: Self = Self {
        vocab_size: codec::VOCAB_SIZE,
        n_layers: 2,
        d_model: 64,
        n_heads: 4,
        d_ff: 128,
        dropout: 0.1,
        max_seq_len: 256,
    };
    /// Trains well on two CPU cores in an hour or two.
    pub const SMALL: Self = Self {
        vocab_size: codec::VOCAB_SIZE,
        n_layers: 4,
        d_model: 256,
        n_heads: 4,
        d_ff: 1024,
        dropout: 0.1,
        max_seq_len: 512,
    };
    /// Models v2: half again as deep and wide as `small`, with twice its
    /// window (about 20 s of music), still quick enough on two CPU threads
    /// for 30 s of music in well under 2 s.
    pub const MEDIUM: Self = Self {
        vocab_size: codec::VOCAB_SIZE,
        n_layers: 6,
        d_model: 384,
        n_heads: 6,
        d_ff: 1536,
        dropout: 0.1,
        max_seq_len: 1024,
    };
    /// The study's configuration.
    pub const BASE: Self = Self {
        vocab_size: codec::VOCAB_SIZE,
        n_layers: 6,
        d_model: 512,
        n_heads: 8,
        d_ff: 1024,
        dropout: 0.1,
        max_seq_len: 2048,
    };

    pub const PRESETS: [(&'static str, Self); 4] =
        [("tiny", Self::TINY), ("small", Self::SMALL), ("medium", Self::MEDIUM), ("base", Self::BASE)];

    /// The preset names for messages: "tiny, small, medium and base".
    pub fn preset_names() -> String {
        let names: Vec<&str> = Self::PRESETS.iter().map(|(n, _)| *n).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }

    /// Whether `name` is one of [`Self::PRESETS`].
    pub fn is_preset(name: &str) -> bool {
        Self::preset(name).is_some()
    }

    pub fn preset(name: &str) -> Option<Self> {
        Self::PRESETS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
    }

    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// A typed reason the configuration cannot be built.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |why: String| Err(ConfigError(why));
        if self.vocab_size != codec::VOCAB_SIZE {
            return bad(format!("vocab_size is {}, the codec has {}", self.vocab_size, codec::VOCAB_SIZE));
        }
        if self.n_layers == 0 || self.d_model == 0 || self.n_heads == 0 || self.d_ff == 0 || self.max_seq_len < 2 {
            return bad("n_layers, d_model, n_heads and d_ff must be positive and max_seq_len at least 2".into());
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return bad(format!("d_model {} is not divisible by n_heads {}", self.d_model, self.n_heads));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} is outside [0, 1)", self.dropout));
        }
        Ok(())
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        let (v, d, f, l) = (self.vocab_size, self.d_model, self.d_ff, self.n_layers);
        let per_layer = 4 * (d * d + d) + self.max_seq_len * self.head_dim() + 2 * (2 * d) + (d * f + f) + (f * d + d);
        v * d + l * per_layer + 2 * d + (d * v + v)
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self::SMALL
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid model configuration: {0}")]
pub struct ConfigError(pub String);

/// Version of the decoder graph's inputs and outputs (not of the layers, which
/// [`ARCHITECTURE`] names). The exporter writes it as
/// [`onnx_names::META_GRAPH_VERSION`]; the engine refuses any other. Version 1
/// (no metadata entry) took `past_key_i` and returned `present_key_i` =
/// past + new, a copy of the whole cache per layer per step; version 2 reads
/// engine-owned cache buffers in place and returns only the new keys and values.
pub const GRAPH_VERSION: u32 = 2;

/// Names of the ONNX graph's inputs, outputs and metadata, shared by exporter and engine.
///
/// Graph version 2: the engine owns one buffer per layer for keys and one for
/// values, `[batch, n_heads, capacity, head_dim]`, of which the first
/// `past_len` positions are filled; the graph reads them in place (positions
/// `>= past_len` are masked) and returns the keys and values of the `new`
/// positions, which the engine writes at `past_len..past_len + new`. The
/// capacity must be at least `past_len + new`, or 0 when `past_len` is 0.
pub mod onnx_names {
    /// int64 `[batch, new]`: the tokens to append.
    pub const TOKENS: &str = "tokens";
    /// int64 `[1]`: how many positions of the cache buffers are filled.
    pub const PAST_LEN: &str = "past_len";
    /// float32 `[batch, n_heads, capacity, head_dim]`, one pair per layer; read, never written.
    pub fn cache_key(layer: usize) -> String {
        format!("cache_key_{layer}")
    }
    pub fn cache_value(layer: usize) -> String {
        format!("cache_value_{layer}")
    }
    /// float32 `[batch, new, vocab_size]`.
    pub const LOGITS: &str = "logits";
    /// float32 `[batch, n_heads, new, head_dim]`, one pair per layer: the keys
    /// and values of the new positions.
    pub fn new_key(layer: usize) -> String {
        format!("new_key_{layer}")
    }
    pub fn new_value(layer: usize) -> String {
        format!("new_value_{layer}")
    }

    /// Metadata: the [`super::ModelConfig`] as JSON.
    pub const META_CONFIG: &str = "cadenza.model_config";
    /// Metadata: [`crate::codec::CODEC_VERSION`] as a decimal string.
    pub const META_CODEC_VERSION: &str = "cadenza.codec_version";
    /// Metadata: [`super::ARCHITECTURE`].
    pub const META_ARCHITECTURE: &str = "cadenza.architecture";
    /// Metadata: [`super::GRAPH_VERSION`] as a decimal string; absent in version 1 files.
    pub const META_GRAPH_VERSION: &str = "cadenza.graph_version";
    /// Metadata: the style's name, e.g. "jazz".
    pub const META_STYLE: &str = "cadenza.style";
    /// Metadata: one line about the training data (files, hours, manifest hash).
    pub const META_DATA_SUMMARY: &str = "cadenza.data_summary";
    /// Metadata: how the weight products are stored, [`crate::export::Precision::name`];
    /// absent in files exported before int8 (all float32).
    pub const META_PRECISION: &str = "cadenza.precision";
    /// Metadata: the checkpoint's validation loss on its own style's split,
    /// in nats per event; absent when the run recorded none.
    pub const META_VALIDATION_NLL: &str = "cadenza.validation_nll";
    /// Metadata: the style this model leans away from by default
    /// ([`crate::sampling::ContrastAdvice`]); absent for most models.
    pub const META_CONTRAST_WITH: &str = "cadenza.contrast_with";
    /// Metadata: how far, a decimal; present with [`META_CONTRAST_WITH`].
    pub const META_CONTRAST: &str = "cadenza.contrast";
    /// Metadata: what the measurement behind it showed, one sentence.
    pub const META_CONTRAST_MEASURED: &str = "cadenza.contrast_measured";
    /// Metadata: the styles it leans away from instead while following a
    /// primer ([`crate::sampling::ContrastAdvice::following`]); absent when the same.
    pub const META_CONTRAST_FOLLOWING: &str = "cadenza.contrast_following";
    /// Metadata: how far it leans while following a primer
    /// ([`crate::sampling::ContrastAdvice::following_strength`]), a decimal; absent when the same.
    pub const META_CONTRAST_FOLLOWING_STRENGTH: &str = "cadenza.contrast_following_strength";
    /// Metadata: present when the model leads foreign primers by default
    /// ([`crate::sampling::LeadAdvice`]): what the measurement showed, one sentence.
    pub const META_LEADS: &str = "cadenza.style_leads";
    /// Metadata: how much harder the key holds while the model leads
    /// ([`crate::sampling::LeadKeyAdvice`]), a decimal; absent for most models.
    pub const META_LEAD_KEY_GAIN: &str = "cadenza.lead_key_gain";
    /// Metadata: what the measurement behind it showed, one sentence.
    pub const META_LEAD_KEY_MEASURED: &str = "cadenza.lead_key_measured";
    /// Metadata: how much wider the register spreads while the model leads
    /// ([`crate::sampling::LeadRegisterAdvice`]), a decimal; absent for most models.
    pub const META_LEAD_REGISTER_SPREAD: &str = "cadenza.lead_register_spread";
    /// Metadata: what the measurement behind it showed, one sentence.
    pub const META_LEAD_REGISTER_MEASURED: &str = "cadenza.lead_register_measured";
    /// Metadata: [`crate::export::EXPORT_REVISION`] as a decimal string.
    pub const META_EXPORT_REVISION: &str = "cadenza.export_revision";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_base_is_the_studys() {
        for (name, c) in ModelConfig::PRESETS {
            c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let b = ModelConfig::BASE;
        assert_eq!((b.n_layers, b.d_model, b.n_heads, b.d_ff, b.max_seq_len), (6, 512, 8, 1024, 2048));
    }

    #[test]
    fn config_json_refuses_unknown_keys() {
        let json = serde_json::to_string(&ModelConfig::TINY).expect("json");
        let back: ModelConfig = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, ModelConfig::TINY);
        let extra = json.replace('}', ",\"extra\":1}");
        assert!(serde_json::from_str::<ModelConfig>(&extra).is_err());
    }
}
