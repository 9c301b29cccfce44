//! Relative self-attention (Huang et al. 2018, arXiv:1809.04281, section 3.4):
//! causal multi-head attention whose logits add `q_i . e_{i-j}` for a learned
//! embedding `e_d` of the distance `d = i - j`, computed with the paper's
//! memory-efficient "skewing" instead of an `L x L x head_dim` tensor.
//!
//! The distance embedding `rel_emb` (`[max_seq_len, head_dim]`, row `d` for
//! distance `d`) is shared by the heads of a layer, as in the paper. The
//! weight names are the contract in `cadenza_core::model`.

use std::cell::Cell;

use tch::{nn, Kind, Tensor};

use cadenza_core::ModelConfig;

/// `q`, `k`, `v`, `o` projections and the distance embedding of one layer.
#[derive(Debug)]
pub struct RelativeAttention {
    q: nn::Linear,
    k: nn::Linear,
    v: nn::Linear,
    o: nn::Linear,
    /// `[max_seq_len, head_dim]`; row `d` embeds distance `d = i - j`.
    rel_emb: Tensor,
    n_heads: i64,
    head_dim: i64,
    dropout: f64,
}

/// Linear layer initialisation: N(0, 0.02) weights, zero biases (GPT-2's).
pub(crate) fn linear_config(stdev: f64) -> nn::LinearConfig {
    nn::LinearConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev }, bs_init: Some(nn::Init::Const(0.0)), bias: true }
}

/// The residual projections' initial scale shrinks with depth, so the sum over
/// layers keeps the residual stream's variance (GPT-2).
pub(crate) fn residual_stdev(cfg: &ModelConfig) -> f64 {
    0.02 / (2.0 * cfg.n_layers as f64).sqrt()
}

impl RelativeAttention {
    pub fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let d = cfg.d_model as i64;
        let head_dim = cfg.head_dim() as i64;
        Self {
            q: nn::linear(p / "q", d, d, linear_config(0.02)),
            k: nn::linear(p / "k", d, d, linear_config(0.02)),
            v: nn::linear(p / "v", d, d, linear_config(0.02)),
            o: nn::linear(p / "o", d, d, linear_config(residual_stdev(cfg))),
            rel_emb: p.var("rel_emb", &[cfg.max_seq_len as i64, head_dim], nn::Init::Randn { mean: 0.0, stdev: 0.02 }),
            n_heads: cfg.n_heads as i64,
            head_dim,
            dropout: cfg.dropout,
        }
    }

    /// `x`: `[batch, time, d_model]` (float32) -> `[batch, time, d_model]`.
    /// Matrix products run in `compute` (float32, or bfloat16 for mixed
    /// precision); the softmax always runs in float32.
    pub fn forward_t(&self, x: &Tensor, train: bool, compute: Kind, masks: &MaskRng) -> Tensor {
        let size = x.size();
        let (b, t, d) = (size[0], size[1], size[2]);
        let (h, hd) = (self.n_heads, self.head_dim);

        // One [3d, d] product instead of three: fewer passes over x.
        let w = Tensor::cat(&[&self.q.ws, &self.k.ws, &self.v.ws], 0).to_kind(compute);
        let bias = match (&self.q.bs, &self.k.bs, &self.v.bs) {
            (Some(bq), Some(bk), Some(bv)) => Some(Tensor::cat(&[bq, bk, bv], 0).to_kind(compute)),
            _ => None,
        };
        let qkv = x.to_kind(compute).linear(&w, bias.as_ref()).view([b, t, 3, h, hd]).permute([2, 0, 3, 1, 4]);
        // The 1/sqrt(head_dim) scale goes on q: both logit terms are linear in q,
        // and scaling [b, h, t, hd] is cheaper than scaling [b, h, t, t].
        let q = qkv.get(0) * (1.0 / (hd as f64).sqrt());
        let k = qkv.get(1);
        let v = qkv.get(2);

        // content + relative in one GEMM pass: baddbmm writes the skewed
        // relative logits into its output and accumulates q k^T onto them.
        let relative = relative_logits(&q, &self.rel_emb.to_kind(compute)).view([b * h, t, t]);
        let k_t = k.reshape([b * h, t, hd]).transpose(1, 2);
        let mut logits = relative.baddbmm(&q.reshape([b * h, t, hd]), &k_t, 1.0, 1.0).to_kind(Kind::Float);
        let _ = logits.masked_fill_(&causal_mask(t, x.device()), f64::NEG_INFINITY);
        let probs = logits.softmax(-1, Kind::Float).view([b, h, t, t]);
        let (probs, scale) = self.dropout_probs(probs, train, masks);
        let mut ctx = probs.to_kind(compute).matmul(&v);
        if scale != 1.0 {
            // The dropout's 1/keep scale on [b, h, t, hd] instead of [b, h, t, t].
            ctx *= scale;
        }
        let out = ctx.transpose(1, 2).reshape([b, t, d]);
        out.linear(&self.o.ws.to_kind(compute), self.o.bs.as_ref().map(|x| x.to_kind(compute)).as_ref())
    }

    /// Attention dropout. On the CPU the keep mask comes from [`keep_mask`]
    /// (libtorch's CPU Bernoulli draws one 64-bit number per element on one
    /// thread, which at sequence 2048 costs more than the attention products);
    /// elsewhere libtorch's dropout. Returns the masked probabilities and the
    /// scale still to apply.
    fn dropout_probs(&self, probs: Tensor, train: bool, masks: &MaskRng) -> (Tensor, f64) {
        if !train || self.dropout <= 0.0 {
            return (probs, 1.0);
        }
        if probs.device() != tch::Device::Cpu {
            return (probs.dropout(self.dropout, true), 1.0);
        }
        let (mask, scale) = keep_mask(probs.numel(), self.dropout, masks.next_seed());
        let keep = Tensor::from_slice(&mask).view(probs.size().as_slice());
        (probs * keep, scale)
    }
}

/// Seeds for the CPU dropout masks: reseeded every step (from the run's seed
/// and the step), then one seed per dropout call in forward order, so a
/// resumed run draws the same masks.
#[derive(Debug, Default)]
pub struct MaskRng {
    base: Cell<u64>,
    calls: Cell<u64>,
}

impl MaskRng {
    pub fn reseed(&self, seed: u64) {
        self.base.set(seed);
        self.calls.set(0);
    }

    fn next_seed(&self) -> u64 {
        let n = self.calls.get();
        self.calls.set(n + 1);
        crate::data::mix(self.base.get(), n)
    }
}

/// Bytes of one dropout mask generated per work item (the unit of parallelism).
const MASK_CHUNK_BYTES: usize = 1 << 20;

/// A keep mask of `n` elements (1 = keep) with drop probability `p` rounded to
/// 1/256, and the matching `1 / keep_probability` scale. Counter-based
/// (splitmix64 of the seed and the position), so the mask does not depend on
/// how many threads fill it.
pub fn keep_mask(n: usize, p: f64, seed: u64) -> (Vec<u8>, f64) {
    let threshold = ((p * 256.0).round() as u32).clamp(1, 255);
    let scale = 256.0 / f64::from(256 - threshold);
    let mut mask = vec![0u8; n];
    let threads = (tch::get_num_threads().max(1) as usize).min(n.div_ceil(MASK_CHUNK_BYTES).max(1));
    let per_thread = n.div_ceil(threads).div_ceil(8) * 8;
    std::thread::scope(|s| {
        for (ti, part) in mask.chunks_mut(per_thread.max(8)).enumerate() {
            s.spawn(move || {
                let first_word = (ti * per_thread.max(8) / 8) as u64;
                for (wi, bytes) in part.chunks_mut(8).enumerate() {
                    let word = crate::data::mix(seed, first_word + wi as u64).to_le_bytes();
                    for (dst, r) in bytes.iter_mut().zip(word) {
                        *dst = u8::from(u32::from(r) >= threshold);
                    }
                }
            });
        }
    });
    (mask, scale)
}

/// `true` above the diagonal: key `j` is in query `i`'s future.
pub fn causal_mask(t: i64, device: tch::Device) -> Tensor {
    Tensor::ones([t, t], (Kind::Bool, device)).triu(1)
}

/// Relative logits `S[.., i, j] = q_i . rel_emb[i - j]` for `j <= i` (entries
/// above the diagonal are meaningless: the causal mask removes them).
///
/// `q`: `[.., t, hd]`; `rel_emb`: `[>= t, hd]`. This is [`skew`] of `q`
/// times the embeddings of distances `t-1, .., 0`, with the skew's zero
/// column produced by the product itself: a zero row in front of the
/// reversed embeddings makes `q E^T` come out already padded, so the padding
/// copy (and its backward) disappears and only the view and slice remain.
pub fn relative_logits(q: &Tensor, rel_emb: &Tensor) -> Tensor {
    let size = q.size();
    let n = size.len();
    let (t, hd) = (size[n - 2], size[n - 1]);
    let reversed = rel_emb.narrow(0, 0, t).flip([0]);
    let zero = Tensor::zeros([1, hd], (reversed.kind(), reversed.device()));
    let padded = q.matmul(&Tensor::cat(&[&zero, &reversed], 0).transpose(0, 1)); // [.., t, t + 1]
    let mut shape = size[..n - 2].to_vec();
    shape.extend([t + 1, t]);
    padded.view(shape.as_slice()).narrow((n - 2) as i64, 1, t)
}

/// The paper's skewing: pad one zero column on the left, view the
/// `[t, t+1]` matrix as `[t+1, t]`, and drop the first row. Element `(i, j)`
/// of the result is element `(i, t-1 - (i-j))` of the input for `j <= i`, so
/// the column that held distance `i - j` lines up under key `j`. Only views
/// and one padded copy; no `[t, t, hd]` gather.
pub fn skew(qe: &Tensor) -> Tensor {
    let size = qe.size();
    let n = size.len();
    let t = size[n - 1];
    let mut padded_shape = size[..n - 2].to_vec();
    padded_shape.extend([t + 1, t]);
    qe.constant_pad_nd([1, 0]).view(padded_shape.as_slice()).narrow((n - 2) as i64, 1, t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// The O(L^2 D) definition: gather one embedding per (i, j) pair.
    fn direct_relative_logits(q: &Tensor, rel_emb: &Tensor) -> Tensor {
        let t = q.size()[q.dim() - 2];
        let i = Tensor::arange(t, (Kind::Int64, Device::Cpu)).view([t, 1]);
        let j = Tensor::arange(t, (Kind::Int64, Device::Cpu)).view([1, t]);
        let distance = (i - j).clamp_min(0); // [t, t]
        let e = rel_emb.index_select(0, &distance.view([-1])).view([t, t, -1]); // [t, t, hd]
                                                                                // S[.., i, j] = sum_c q[.., i, c] * e[i, j, c]
        (q.unsqueeze(-2) * &e).sum_dim_intlist([-1i64].as_slice(), false, Kind::Double)
    }

    #[test]
    fn skewed_relative_logits_equal_the_direct_computation() {
        tch::manual_seed(7);
        for (b, h, t, hd, max_len) in [(2, 3, 7, 5, 9), (1, 4, 33, 8, 33), (3, 1, 1, 4, 4)] {
            let q = Tensor::randn([b, h, t, hd], (Kind::Double, Device::Cpu));
            let rel = Tensor::randn([max_len, hd], (Kind::Double, Device::Cpu));
            let fast = relative_logits(&q, &rel);
            let slow = direct_relative_logits(&q, &rel);
            let lower = causal_mask(t, Device::Cpu).logical_not();
            let diff = (&fast - &slow).abs().masked_select(&lower).max().double_value(&[]);
            assert!(diff < 1e-12, "b{b} h{h} t{t}: max difference {diff}");
            // The paper's pad-reshape-slice form gives the same numbers.
            let reversed = rel.narrow(0, 0, t).flip([0]);
            let paper = skew(&q.matmul(&reversed.transpose(0, 1)));
            let diff = (&paper - &slow).abs().masked_select(&lower).max().double_value(&[]);
            assert!(diff < 1e-12, "skew b{b} h{h} t{t}: max difference {diff}");
        }
    }

    #[test]
    fn attention_layer_matches_a_direct_implementation() {
        tch::manual_seed(3);
        let cfg = ModelConfig {
            n_layers: 1,
            d_model: 24,
            n_heads: 3,
            d_ff: 8,
            dropout: 0.0,
            max_seq_len: 16,
            ..ModelConfig::TINY
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let attn = RelativeAttention::new(&vs.root(), &cfg);
        let t = 11;
        let x = Tensor::randn([2, t, 24], (Kind::Float, Device::Cpu));
        let fast = attn.forward_t(&x, false, Kind::Float, &MaskRng::default());

        // Per head, per query: softmax over j <= i of (q_i.k_j + q_i.e_{i-j}) / sqrt(hd).
        let lin = |l: &nn::Linear| x.linear(&l.ws, l.bs.as_ref());
        let (q, k, v) = (lin(&attn.q), lin(&attn.k), lin(&attn.v));
        let out = Tensor::zeros([2, t, 24], (Kind::Float, Device::Cpu));
        let hd = 8;
        for bi in 0..2 {
            for head in 0..3 {
                for i in 0..t {
                    let qi = q.get(bi).get(i).narrow(0, head * hd, hd);
                    let scores: Vec<Tensor> = (0..=i)
                        .map(|j| {
                            let kj = k.get(bi).get(j).narrow(0, head * hd, hd);
                            let e = attn.rel_emb.get(i - j);
                            (qi.dot(&kj) + qi.dot(&e)) / (hd as f64).sqrt()
                        })
                        .collect();
                    let p = Tensor::stack(&scores, 0).softmax(0, Kind::Float);
                    let vs_ = v.get(bi).narrow(0, 0, i + 1).narrow(1, head * hd, hd);
                    let ctx = p.unsqueeze(0).matmul(&vs_).squeeze_dim(0);
                    out.get(bi).get(i).narrow(0, head * hd, hd).copy_(&ctx);
                }
            }
        }
        let slow = out.linear(&attn.o.ws, attn.o.bs.as_ref());
        let diff = (fast - slow).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "max difference {diff}");
    }

    #[test]
    fn keep_masks_are_seeded_and_drop_about_p() {
        let (a, scale) = keep_mask(3_000_001, 0.1, 5);
        assert_eq!(a, keep_mask(3_000_001, 0.1, 5).0);
        assert_ne!(a, keep_mask(3_000_001, 0.1, 6).0);
        let kept = a.iter().map(|&x| f64::from(x)).sum::<f64>() / a.len() as f64;
        assert!((kept - 230.0 / 256.0).abs() < 2e-3, "kept {kept}");
        assert!((scale * 230.0 / 256.0 - 1.0).abs() < 1e-12);
        assert!(a.iter().all(|&x| x <= 1));
    }
}
