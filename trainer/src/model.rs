//! The Music Transformer (Huang et al. 2018, arXiv:1809.04281) in libtorch,
//! built from [`ModelConfig`] exactly as `cadenza_core::model` describes it:
//! an unscaled token embedding (no absolute positions), pre-norm blocks
//! `x + attn(ln1(x))`, `x + ff(ln2(x))` with relative self-attention and a
//! ReLU feed-forward, a final layer norm (eps 1e-5, libtorch's default) and an
//! untied output projection. The `nn::Path` tree is the checkpoint's name
//! tree (`embed.weight`, `layers.{i}.attn.q.weight`, ...), which the ONNX
//! exporter reads back.
//!
//! Dropout (training only) sits on the embedding output, the attention
//! probabilities and each residual branch.

use tch::{nn, nn::Module, Kind, Tensor};

use cadenza_core::ModelConfig;

use crate::attention::{linear_config, residual_stdev, MaskRng, RelativeAttention};

/// Number format of the matrix products while training. Weights, optimizer
/// state, layer norms, softmax and loss stay float32 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    /// bfloat16 products with float32 master weights (mixed precision): about
    /// twice the matrix throughput on CPUs with AVX512-BF16 and on GPUs.
    Bf16,
}

impl Precision {
    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }
}

#[derive(Debug)]
struct FeedForward {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl FeedForward {
    fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let (d, f) = (cfg.d_model as i64, cfg.d_ff as i64);
        Self {
            fc1: nn::linear(p / "fc1", d, f, linear_config(0.02)),
            fc2: nn::linear(p / "fc2", f, d, linear_config(residual_stdev(cfg))),
        }
    }

    fn forward(&self, x: &Tensor, compute: Kind) -> Tensor {
        linear(&linear(x, &self.fc1, compute).relu(), &self.fc2, compute)
    }
}

#[derive(Debug)]
struct Block {
    ln1: nn::LayerNorm,
    attn: RelativeAttention,
    ln2: nn::LayerNorm,
    ff: FeedForward,
    dropout: f64,
}

impl Block {
    fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let d = cfg.d_model as i64;
        Self {
            ln1: nn::layer_norm(p / "ln1", vec![d], Default::default()),
            attn: RelativeAttention::new(&(p / "attn"), cfg),
            ln2: nn::layer_norm(p / "ln2", vec![d], Default::default()),
            ff: FeedForward::new(&(p / "ff"), cfg),
            dropout: cfg.dropout,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool, compute: Kind, masks: &MaskRng) -> Tensor {
        let a = self.attn.forward_t(&self.ln1.forward(x), train, compute, masks).dropout(self.dropout, train);
        let x = x + a;
        let f = self.ff.forward(&self.ln2.forward(&x), compute).dropout(self.dropout, train);
        x + f
    }
}

/// A linear layer whose product runs in `compute`.
fn linear(x: &Tensor, l: &nn::Linear, compute: Kind) -> Tensor {
    if compute == Kind::Float {
        return x.linear(&l.ws, l.bs.as_ref());
    }
    x.to_kind(compute).linear(&l.ws.to_kind(compute), l.bs.as_ref().map(|b| b.to_kind(compute)).as_ref())
}

/// The model. Build it under a `VarStore`'s root so the variable names are
/// the checkpoint's.
#[derive(Debug)]
pub struct MusicTransformer {
    embed: nn::Embedding,
    layers: Vec<Block>,
    ln_f: nn::LayerNorm,
    head: nn::Linear,
    cfg: ModelConfig,
    precision: Precision,
    /// Seeds of the CPU attention-dropout masks (see [`Self::reseed_dropout`]).
    masks: MaskRng,
}

impl MusicTransformer {
    /// Create the variables under `path` (normally `vs.root()`), freshly
    /// initialised; load a checkpoint into the `VarStore` afterwards to use
    /// trained weights. Computes in float32 until [`Self::set_precision`].
    pub fn new(path: &nn::Path, cfg: &ModelConfig) -> Self {
        let d = cfg.d_model as i64;
        let v = cfg.vocab_size as i64;
        let embed_cfg =
            nn::EmbeddingConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 }, ..Default::default() };
        let layers_path = path / "layers";
        Self {
            embed: nn::embedding(path / "embed", v, d, embed_cfg),
            layers: (0..cfg.n_layers).map(|i| Block::new(&(&layers_path / i), cfg)).collect(),
            ln_f: nn::layer_norm(path / "ln_f", vec![d], Default::default()),
            head: nn::linear(path / "head", d, v, linear_config(0.02)),
            cfg: *cfg,
            precision: Precision::Fp32,
            masks: MaskRng::default(),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    /// Reseed the attention-dropout masks drawn on the CPU (the trainer does
    /// before every step, from the run's seed and the step). libtorch's own
    /// generator, which the other dropouts use, is seeded with `tch::manual_seed`.
    pub fn reseed_dropout(&self, seed: u64) {
        self.masks.reseed(seed);
    }

    /// `tokens`: int64 `[batch, time]` with `time <= max_seq_len` ->
    /// float32 logits `[batch, time, vocab_size]` for the token after each
    /// position. `train` turns dropout on.
    ///
    /// Panics (a libtorch error) when `time` exceeds `max_seq_len`: the model
    /// knows no longer distances. Callers crop first.
    pub fn forward_t(&self, tokens: &Tensor, train: bool) -> Tensor {
        let compute = self.precision.kind();
        let mut x = self.embed.forward(tokens).dropout(self.cfg.dropout, train);
        for layer in &self.layers {
            x = layer.forward_t(&x, train, compute, &self.masks);
        }
        linear(&self.ln_f.forward(&x), &self.head, compute).to_kind(Kind::Float)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn variable_names_and_shapes_follow_the_core_contract() {
        let cfg = ModelConfig::TINY;
        let vs = nn::VarStore::new(Device::Cpu);
        let _model = MusicTransformer::new(&vs.root(), &cfg);
        let vars = vs.variables();
        let (v, d, f, l, hd) =
            (cfg.vocab_size as i64, cfg.d_model as i64, cfg.d_ff as i64, cfg.max_seq_len as i64, cfg.head_dim() as i64);
        let mut expected: Vec<(String, Vec<i64>)> = vec![
            ("embed.weight".into(), vec![v, d]),
            ("ln_f.weight".into(), vec![d]),
            ("ln_f.bias".into(), vec![d]),
            ("head.weight".into(), vec![v, d]),
            ("head.bias".into(), vec![v]),
        ];
        for i in 0..cfg.n_layers {
            let p = format!("layers.{i}");
            for ln in ["ln1", "ln2"] {
                expected.push((format!("{p}.{ln}.weight"), vec![d]));
                expected.push((format!("{p}.{ln}.bias"), vec![d]));
            }
            for m in ["q", "k", "v", "o"] {
                expected.push((format!("{p}.attn.{m}.weight"), vec![d, d]));
                expected.push((format!("{p}.attn.{m}.bias"), vec![d]));
            }
            expected.push((format!("{p}.attn.rel_emb"), vec![l, hd]));
            expected.push((format!("{p}.ff.fc1.weight"), vec![f, d]));
            expected.push((format!("{p}.ff.fc1.bias"), vec![f]));
            expected.push((format!("{p}.ff.fc2.weight"), vec![d, f]));
            expected.push((format!("{p}.ff.fc2.bias"), vec![d]));
        }
        assert_eq!(vars.len(), expected.len());
        for (name, shape) in &expected {
            let t = vars.get(name).unwrap_or_else(|| panic!("missing {name}"));
            assert_eq!(&t.size(), shape, "{name}");
        }
        let params: i64 = vars.values().map(|t| t.numel() as i64).sum();
        assert_eq!(params as usize, cfg.num_params());
    }

    #[test]
    fn logits_are_causal() {
        tch::manual_seed(1);
        let cfg = ModelConfig { dropout: 0.0, ..ModelConfig::TINY };
        let vs = nn::VarStore::new(Device::Cpu);
        let model = MusicTransformer::new(&vs.root(), &cfg);
        let a = Tensor::from_slice(&[389i64, 60, 300, 188, 12, 140, 270, 5]).view([1, 8]);
        let b = a.copy();
        let _ = b.narrow(1, 5, 3).fill_(7);
        let (la, lb) = (model.forward_t(&a, false), model.forward_t(&b, false));
        assert_eq!(la.size(), vec![1, 8, cfg.vocab_size as i64]);
        let same = (la.narrow(1, 0, 5) - lb.narrow(1, 0, 5)).abs().max().double_value(&[]);
        let later = (la.narrow(1, 5, 3) - lb.narrow(1, 5, 3)).abs().max().double_value(&[]);
        assert!(same < 1e-6, "positions before the change moved by {same}");
        assert!(later > 1e-4, "positions after the change did not move");
    }

    #[test]
    fn bf16_products_stay_close_to_fp32() {
        tch::manual_seed(2);
        let cfg = ModelConfig { dropout: 0.0, ..ModelConfig::TINY };
        let vs = nn::VarStore::new(Device::Cpu);
        let mut model = MusicTransformer::new(&vs.root(), &cfg);
        let tokens = Tensor::randint(388, [2, 64], (Kind::Int64, Device::Cpu));
        let full = model.forward_t(&tokens, false);
        model.set_precision(Precision::Bf16);
        let mixed = model.forward_t(&tokens, false);
        assert_eq!(mixed.kind(), Kind::Float);
        let diff = (full - mixed).abs().max().double_value(&[]);
        assert!(diff < 0.05, "bf16 logits differ by {diff}");
    }
}
