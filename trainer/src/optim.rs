//! AdamW (Loshchilov & Hutter 2019: Adam with decoupled weight decay) on
//! plain tch tensors, with weight-decay groups and global-norm gradient
//! clipping. Written here rather than taken from `tch::nn::Optimizer` because
//! its moments must go into a checkpoint and come back bit for bit, which the
//! libtorch optimizer behind tch does not expose.
//!
//! Groups: matrices of the linear layers (and the output head) decay; layer
//! norms, biases, the token embedding and the relative-distance embeddings do
//! not (decaying a norm's gain or an embedding row pulls it toward zero for no
//! regularising benefit).

use std::collections::HashMap;

use tch::{nn, Kind, Tensor};

/// Optimizer hyper-parameters; the learning rate comes per step from the schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// One trained variable and its moments.
#[derive(Debug)]
struct Slot {
    name: String,
    param: Tensor,
    decay: bool,
    /// First moment (running mean of the gradient).
    m: Tensor,
    /// Second moment (running mean of the squared gradient).
    v: Tensor,
}

#[derive(Debug)]
pub struct AdamW {
    slots: Vec<Slot>,
    cfg: AdamWConfig,
    /// Updates applied so far (drives the bias correction).
    steps: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum OptimStateError {
    #[error("optimizer state has no tensor {0}")]
    Missing(String),
    #[error("optimizer state tensor {name} has shape {found:?}, the model needs {expected:?}")]
    Shape { name: String, found: Vec<i64>, expected: Vec<i64> },
}

/// Whether a variable belongs to the weight-decay group.
pub fn decays(name: &str, dims: usize) -> bool {
    dims >= 2 && name.ends_with(".weight") && name != "embed.weight"
}

impl AdamW {
    /// Optimise the variables of `vs` for which `trainable(name)` holds; the
    /// others get `requires_grad = false` (frozen layers).
    pub fn new(vs: &nn::VarStore, trainable: impl Fn(&str) -> bool, cfg: AdamWConfig) -> Self {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut slots = Vec::new();
        for (name, param) in vars {
            if !trainable(&name) {
                let _ = param.set_requires_grad(false);
                continue;
            }
            let decay = decays(&name, param.dim());
            let m = param.zeros_like().detach();
            let v = param.zeros_like().detach();
            slots.push(Slot { name, param, decay, m, v });
        }
        Self { slots, cfg, steps: 0 }
    }

    /// Number of updates applied (restored from a checkpoint too).
    pub fn steps(&self) -> i64 {
        self.steps
    }

    /// Names of the optimised variables, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.slots.iter().map(|s| s.name.as_str()).collect()
    }

    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            s.param.zero_grad();
        }
    }

    /// Scale the gradients so their global L2 norm is at most `max_norm`;
    /// returns the norm before clipping. `max_norm <= 0` only measures.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        tch::no_grad(|| {
            let norms: Vec<Tensor> = self
                .slots
                .iter()
                .filter_map(|s| {
                    let g = s.param.grad();
                    g.defined().then(|| g.to_kind(Kind::Float).square().sum(Kind::Float))
                })
                .collect();
            if norms.is_empty() {
                return 0.0;
            }
            let total = Tensor::stack(&norms, 0).sum(Kind::Float).sqrt().double_value(&[]);
            if max_norm > 0.0 && total > max_norm {
                let scale = max_norm / (total + 1e-6);
                for s in &self.slots {
                    let mut g = s.param.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(scale);
                    }
                }
            }
            total
        })
    }

    /// One AdamW update at learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let t = self.steps as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bias1 = 1.0 - b1.powi(t);
        let bias2_sqrt = (1.0 - b2.powi(t)).sqrt();
        let step_size = lr / bias1;
        tch::no_grad(|| {
            for s in &mut self.slots {
                let g = s.param.grad();
                if !g.defined() {
                    continue;
                }
                if s.decay && self.cfg.weight_decay > 0.0 {
                    let _ = s.param.g_mul_scalar_(1.0 - lr * self.cfg.weight_decay);
                }
                let _ = s.m.lerp_(&g, 1.0 - b1);
                let _ = s.v.lerp_(&g.square(), 1.0 - b2);
                let denom = s.v.sqrt() / bias2_sqrt + self.cfg.eps;
                let update = &s.m / denom * (-step_size);
                let _ = s.param.g_add_(&update);
            }
        });
    }

    /// The moments as named tensors (`m.<var>`, `v.<var>`) for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            out.push((format!("m.{}", s.name), s.m.shallow_clone()));
            out.push((format!("v.{}", s.name), s.v.shallow_clone()));
        }
        out
    }

    /// Restore moments written by [`Self::state_tensors`] and the update count.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, steps: i64) -> Result<(), OptimStateError> {
        for s in &mut self.slots {
            for (prefix, dst) in [("m", &mut s.m), ("v", &mut s.v)] {
                let name = format!("{prefix}.{}", s.name);
                let src = tensors.get(&name).ok_or_else(|| OptimStateError::Missing(name.clone()))?;
                if src.size() != dst.size() {
                    return Err(OptimStateError::Shape { name, found: src.size(), expected: dst.size() });
                }
                tch::no_grad(|| dst.copy_(src));
            }
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn config() -> AdamWConfig {
        AdamWConfig { beta1: 0.9, beta2: 0.98, eps: 1e-9, weight_decay: 0.1 }
    }

    #[test]
    fn groups_follow_the_names() {
        assert!(decays("layers.0.attn.q.weight", 2));
        assert!(decays("head.weight", 2));
        assert!(!decays("layers.0.attn.q.bias", 1));
        assert!(!decays("layers.0.ln1.weight", 1));
        assert!(!decays("embed.weight", 2));
        assert!(!decays("layers.3.attn.rel_emb", 2));
    }

    /// Two steps by hand against the textbook formulas.
    #[test]
    fn update_matches_the_adamw_formulas() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = (vs.root() / "lin").var_copy("weight", &Tensor::from_slice(&[1.0f32, -2.0, 0.5, 3.0]).view([2, 2]));
        let b = (vs.root() / "lin").var_copy("bias", &Tensor::from_slice(&[0.1f32, -0.1]));
        let mut opt = AdamW::new(&vs, |_| true, config());
        let (lr, cfg) = (0.01, config());
        let (mut m, mut v) = ([0.0f64; 6], [0.0f64; 6]);
        let mut expect: Vec<f64> = vec![1.0, -2.0, 0.5, 3.0, 0.1, -0.1];
        for step in 1..=2 {
            opt.zero_grad();
            let loss = (&w * &w).sum(Kind::Float) * 0.5 + (&b * 3.0).sum(Kind::Float);
            loss.backward();
            // grads: w -> w, b -> 3
            let grads: Vec<f64> = expect[..4].iter().copied().chain([3.0, 3.0]).collect();
            for i in 0..6 {
                if i < 4 {
                    expect[i] *= 1.0 - lr * cfg.weight_decay;
                }
                m[i] = cfg.beta1 * m[i] + (1.0 - cfg.beta1) * grads[i];
                v[i] = cfg.beta2 * v[i] + (1.0 - cfg.beta2) * grads[i] * grads[i];
                let mh = m[i] / (1.0 - cfg.beta1.powi(step));
                let vh = v[i] / (1.0 - cfg.beta2.powi(step));
                expect[i] -= lr * mh / (vh.sqrt() + cfg.eps);
            }
            opt.step(lr);
        }
        let got: Vec<f64> =
            Vec::<f64>::try_from(Tensor::cat(&[w.view([-1]), b.shallow_clone()], 0).to_kind(Kind::Double))
                .expect("values");
        for (g, e) in got.iter().zip(&expect) {
            assert!((g - e).abs() < 1e-6, "{got:?} vs {expect:?}");
        }
    }

    #[test]
    fn clipping_scales_the_global_norm() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = (vs.root() / "a").var_copy("weight", &Tensor::from_slice(&[3.0f32, 4.0]).view([1, 2]));
        let mut opt = AdamW::new(&vs, |_| true, config());
        (&w * &w).sum(Kind::Float).backward(); // grad 2w = (6, 8), norm 10
        let before = opt.clip_grad_norm(1.0);
        assert!((before - 10.0).abs() < 1e-5);
        let after = w.grad().norm().double_value(&[]);
        assert!((after - 1.0).abs() < 1e-4, "{after}");
    }

    #[test]
    fn frozen_variables_are_left_alone() {
        let vs = nn::VarStore::new(Device::Cpu);
        let a = (vs.root() / "layers" / 0 / "ff" / "fc1")
            .var_copy("weight", &Tensor::ones([2, 2], (Kind::Float, Device::Cpu)));
        let _b = (vs.root() / "layers" / 1 / "ff" / "fc1")
            .var_copy("weight", &Tensor::ones([2, 2], (Kind::Float, Device::Cpu)));
        let opt = AdamW::new(&vs, |n| !n.starts_with("layers.0."), config());
        assert_eq!(opt.names(), vec!["layers.1.ff.fc1.weight"]);
        assert!(!a.requires_grad());
    }
}
