//! `cadenza-engine-check`: the inference half of the one-shot GPU check
//! (`scripts/gpu-check/`). For each model it loads the engine on the CPU and
//! on the requested provider in one process (one ONNX Runtime library serves
//! both), checks that the two give the same logits for the same events, and
//! times a KV-cache step at each context for each number of variations.
//! Prints one JSON object. On a machine without CUDA, `--provider cpu` runs
//! the same code path against itself, which is how the script is tested.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use cadenza_core::engine::{median, Engine, EngineError, EngineOptions, Provider};
use serde::Serialize;

/// Largest |CPU - provider| logit difference the check accepts.
const PARITY_TOLERANCE: f32 = 1e-3;
/// Events prefilled before the parity comparison, then compared step by step.
const PARITY_PREFIX: usize = 256;
const PARITY_STEPS: usize = 16;

struct Args {
    models: Vec<PathBuf>,
    provider: Provider,
    contexts: Vec<usize>,
    variations: Vec<usize>,
    steps: usize,
    threads: usize,
}

const USAGE: &str = "usage: cadenza-engine-check --model M.onnx [--model ...] [--provider cuda|cpu|auto] \
                     [--contexts 256,2048] [--variations 1,8] [--steps 32] [--threads 0]";

fn parse_list(flag: &str, value: &str) -> Result<Vec<usize>, String> {
    value
        .split(',')
        .map(|v| v.trim().parse::<usize>().map_err(|_| format!("{flag} {value}: expected numbers like 256,2048")))
        .collect()
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        models: Vec::new(),
        provider: Provider::Cuda,
        contexts: vec![256, 2048],
        variations: vec![1, 8],
        steps: 32,
        threads: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--model" => a.models.push(PathBuf::from(value()?)),
            "--provider" => {
                a.provider = match value()?.as_str() {
                    "cuda" => Provider::Cuda,
                    "cpu" => Provider::Cpu,
                    "auto" => Provider::Auto,
                    other => return Err(format!("--provider {other}: use cuda, cpu or auto")),
                }
            }
            "--contexts" => a.contexts = parse_list("--contexts", &value()?)?,
            "--variations" => a.variations = parse_list("--variations", &value()?)?,
            "--steps" => a.steps = parse_list("--steps", &value()?)?.first().copied().unwrap_or(32),
            "--threads" => a.threads = parse_list("--threads", &value()?)?.first().copied().unwrap_or(0),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if a.models.is_empty() {
        return Err(format!("no --model given\n{USAGE}"));
    }
    Ok(a)
}

#[derive(Serialize)]
struct Parity {
    events_compared: usize,
    max_abs_diff: f32,
    max_abs_logit: f32,
    /// Positions whose most likely next event is the same on both.
    argmax_agree: f64,
    tolerance: f32,
    pass: bool,
}

#[derive(Serialize)]
struct Timing {
    context: usize,
    variations: usize,
    /// Median wall time of one KV-cache step (all variations advance one event).
    ms_per_step: f64,
    /// The same per generated event.
    ms_per_event: f64,
}

#[derive(Serialize)]
struct ModelReport {
    model: PathBuf,
    style: String,
    params: usize,
    window: usize,
    provider: &'static str,
    cpu_provider: &'static str,
    parity: Parity,
    /// Empty when the provider is the CPU itself (see `cpu_timings`).
    timings: Vec<Timing>,
    cpu_timings: Vec<Timing>,
}

#[derive(Serialize)]
struct Report {
    library: Option<PathBuf>,
    requested: Provider,
    models: Vec<ModelReport>,
}

/// Deterministic events (the values do not change the time; any in-vocabulary ones do for parity).
fn events(len: usize, vocab: usize) -> Vec<u16> {
    let span = vocab.saturating_sub(3).max(1);
    (0..len).map(|i| ((i * 7919 + 13) % span) as u16).collect()
}

/// Logits of both engines over the same events: a prefill, then single steps.
fn parity(cpu: &mut Engine, other: &mut Engine) -> Result<Parity, EngineError> {
    let cfg = cpu.info().config;
    let prefix = PARITY_PREFIX.min(cfg.max_seq_len.saturating_sub(PARITY_STEPS + 1)).max(1);
    let seq = events(prefix + PARITY_STEPS, cfg.vocab_size);
    let (mut max_diff, mut max_logit, mut agree, mut compared) = (0f32, 0f32, 0usize, 0usize);
    let mut compare = |a: &[f32], b: &[f32]| {
        for (ra, rb) in a.chunks(cfg.vocab_size).zip(b.chunks(cfg.vocab_size)) {
            for (x, y) in ra.iter().zip(rb) {
                max_diff = max_diff.max((x - y).abs());
                max_logit = max_logit.max(x.abs());
            }
            let argmax = |r: &[f32]| r.iter().enumerate().max_by(|p, q| p.1.total_cmp(q.1)).map(|p| p.0);
            agree += usize::from(argmax(ra) == argmax(rb));
            compared += 1;
        }
    };
    let (mc, mo) = (cpu.model(), other.model());
    let (mut cc, mut co) = (mc.empty_cache(1), mo.empty_cache(1));
    compare(&mc.prefill(&[&seq[..prefix]], &mut cc)?, &mo.prefill(&[&seq[..prefix]], &mut co)?);
    for &t in &seq[prefix..] {
        let tok = [i64::from(t)];
        compare(&mc.forward(&tok, &mut cc)?, &mo.forward(&tok, &mut co)?);
    }
    Ok(Parity {
        events_compared: compared,
        max_abs_diff: max_diff,
        max_abs_logit: max_logit,
        argmax_agree: agree as f64 / compared.max(1) as f64,
        tolerance: PARITY_TOLERANCE,
        pass: max_diff <= PARITY_TOLERANCE,
    })
}

/// Median KV-cache step at each context (that fits the window) for each batch.
fn timings(
    engine: &mut Engine,
    contexts: &[usize],
    variations: &[usize],
    steps: usize,
) -> Result<Vec<Timing>, EngineError> {
    let cfg = engine.info().config;
    let seq = events(cfg.max_seq_len, cfg.vocab_size);
    let mut out = Vec::new();
    for &ctx in contexts.iter().filter(|&&c| c <= cfg.max_seq_len) {
        for &b in variations {
            let b = b.max(1);
            let model = engine.model();
            let start = ctx.saturating_sub(steps + 1).max(1);
            let rows: Vec<&[u16]> = (0..b).map(|_| &seq[..start]).collect();
            let mut cache = model.empty_cache(b);
            model.prefill(&rows, &mut cache)?;
            let step_tokens = |t: usize| vec![i64::from(seq[t]); b];
            // One untimed step warms the arena (and CUDA's kernels) for this size.
            model.forward(&step_tokens(start), &mut cache)?;
            let mut ms = Vec::new();
            for t in start + 1..ctx {
                let tokens = step_tokens(t);
                let t0 = Instant::now();
                model.forward(&tokens, &mut cache)?;
                ms.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            let ms_per_step = median(&mut ms);
            out.push(Timing { context: ctx, variations: b, ms_per_step, ms_per_event: ms_per_step / b as f64 });
        }
    }
    Ok(out)
}

fn run(a: &Args) -> Result<Report, EngineError> {
    let opts = |provider| EngineOptions { ort_library: None, intra_threads: a.threads, provider };
    let mut models = Vec::new();
    for path in &a.models {
        let mut cpu = Engine::load(path, &opts(Provider::Cpu))?;
        let cpu_timings = timings(&mut cpu, &a.contexts, &a.variations, a.steps)?;
        // With --provider cpu a second CPU session stands in for the GPU's, so the
        // comparison itself runs (and must find no difference).
        let mut other = Engine::load(path, &opts(a.provider))?;
        let provider = other.info().provider;
        let parity_report = parity(&mut cpu, &mut other)?;
        let provider_timings =
            if provider == "CPU" { Vec::new() } else { timings(&mut other, &a.contexts, &a.variations, a.steps)? };
        let info = cpu.info();
        models.push(ModelReport {
            model: path.clone(),
            style: info.style.clone(),
            params: info.config.num_params(),
            window: info.config.max_seq_len,
            provider,
            cpu_provider: info.provider,
            parity: parity_report,
            timings: provider_timings,
            cpu_timings,
        });
    }
    Ok(Report { library: cadenza_core::engine::loaded_library(), requested: a.provider, models })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cadenza-engine-check: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(line) => {
                println!("{line}");
                let failed = report.models.iter().any(|m| !m.parity.pass);
                if failed {
                    eprintln!("cadenza-engine-check: logits differ from the CPU's by more than {PARITY_TOLERANCE}");
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("cadenza-engine-check: cannot write the report: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("cadenza-engine-check: {e}");
            ExitCode::FAILURE
        }
    }
}
