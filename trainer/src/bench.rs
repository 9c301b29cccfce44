//! Training throughput for `cargo xtask bench train`: timed optimizer steps
//! of the real model, optimizer and loss on random tokens (throughput does
//! not depend on the values), the way `scripts/bench/train_torch.py` times
//! the PyTorch eager implementation of the same model.

use std::time::Instant;

use serde::Serialize;
use tch::{nn, Device, Kind, Tensor};

use cadenza_core::{codec, ModelConfig};

use crate::model::{MusicTransformer, Precision};
use crate::optim::{AdamW, AdamWConfig};
use crate::train::train_step;

/// One measured configuration; printed as a JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    #[serde(rename = "impl")]
    pub implementation: String,
    pub config: String,
    pub batch: usize,
    pub seq_len: usize,
    pub steps: usize,
    pub tokens_per_s: f64,
    pub ms_per_step: f64,
    pub peak_rss_mb: Option<f64>,
    pub threads: i32,
    pub precision: Precision,
    pub device: String,
}

pub struct BenchArgs {
    pub name: String,
    pub model: ModelConfig,
    pub batch: usize,
    pub seq_len: usize,
    pub steps: usize,
    pub warmup_steps: usize,
    pub precision: Precision,
    pub device: Device,
}

pub fn bench_train(args: &BenchArgs) -> BenchResult {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(args.device);
    let mut model = MusicTransformer::new(&vs.root(), &args.model);
    model.set_precision(args.precision);
    let mut opt = AdamW::new(&vs, |_| true, AdamWConfig { beta1: 0.9, beta2: 0.98, eps: 1e-9, weight_decay: 0.01 });
    let (b, t) = (args.batch as i64, args.seq_len as i64);
    let mut step = |_: usize| {
        let seq = Tensor::randint(i64::from(codec::PAD), [b, t + 1], (Kind::Int64, args.device));
        train_step(&model, &mut opt, &seq.narrow(1, 0, t), &seq.narrow(1, 1, t), 1e-4, 1.0)
    };
    for i in 0..args.warmup_steps {
        step(i);
    }
    let start = Instant::now();
    for i in 0..args.steps {
        step(i);
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    BenchResult {
        implementation: "cadenza-tch".into(),
        config: args.name.clone(),
        batch: args.batch,
        seq_len: args.seq_len,
        steps: args.steps,
        tokens_per_s: (args.batch * args.seq_len * args.steps) as f64 / elapsed_s,
        ms_per_step: 1000.0 * elapsed_s / args.steps as f64,
        peak_rss_mb: crate::device::peak_rss_mib(),
        threads: tch::get_num_threads(),
        precision: args.precision,
        device: format!("{:?}", args.device),
    }
}
