//! `cargo xtask bench generate`: the engine's speed and memory. For each
//! preset (random weights are fine for timing) and context length, in one
//! process per model so its peak RSS is its own: milliseconds per event
//! with the KV cache (median step: these machines are shared and noisy), the
//! same model recomputing the whole sequence for every event (as the study's
//! generator did), their ratio, and the memory-traffic bound of a cached step
//! (weights + KV cache read once, at this machine's read bandwidth, measured
//! just before each model's timings); each preset at every precision asked
//! for (float32 and int8 weight products). Then the wall time for 30 seconds
//! of music from the shipped `small` model, at each precision, from its
//! checkpoint.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cadenza_core::engine::{median, Engine, EngineOptions, Provider};
use cadenza_core::export::{export_onnx, export_random, model_precision, ExportOptions, Precision};
use cadenza_core::model::ModelConfig;
use cadenza_core::request::{GenerateRequest, GenerationSettings, Length};
use cadenza_core::sampling::{Sampling, Steering};
use serde::{Deserialize, Serialize};

use super::process::json_line;
use crate::env::repo_root;

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Presets to time, comma-separated (random weights).
    #[arg(long, value_delimiter = ',', default_value = "small,base")]
    pub presets: Vec<String>,
    /// Context lengths in events, comma-separated. A preset whose window is
    /// shorter is timed with the same layers and a window this long.
    #[arg(long, value_delimiter = ',', default_value = "256,1024,2048")]
    pub contexts: Vec<usize>,
    /// ONNX Runtime intra-op threads (the plugin's and `cadenza generate`'s default, one).
    #[arg(long, default_value_t = cadenza_core::engine::DEFAULT_INTRA_THREADS)]
    pub threads: usize,
    /// Also time the music with this many threads, for the ratio (0: not).
    #[arg(long, default_value_t = 2)]
    pub compare_threads: usize,
    /// Timed cached steps per context (the cache grows from context-steps to
    /// context); the table shows the median step.
    #[arg(long, default_value_t = 32)]
    pub steps: usize,
    /// Timed full recomputations per context; the table shows the median.
    #[arg(long, default_value_t = 3)]
    pub recompute: usize,
    /// Model for the "30 s of music" timing: a trained small model gives a
    /// realistic event rate. Default: models/*.onnx with the small config, else random small weights.
    #[arg(long)]
    pub music_model: Option<PathBuf>,
    /// Seconds of music for the music timing.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Variations generated together in the music timing.
    #[arg(long, default_value_t = 1)]
    pub variations: usize,
    /// Internal: with --worker-music, generate this many events instead of --seconds.
    #[arg(long, hide = true)]
    pub events: Option<usize>,
    /// Execution provider: auto, cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub provider: String,
    /// Precisions of the weight products to time, comma-separated: float32, int8.
    #[arg(long, value_delimiter = ',', default_value = "float32,int8")]
    pub precisions: Vec<Precision>,
    /// Internal: time one model in this process and print one JSON line.
    #[arg(long, hide = true)]
    pub worker: Option<PathBuf>,
    /// Internal: with --worker, time generating --seconds of music instead.
    #[arg(long, hide = true)]
    pub worker_music: bool,
    /// Internal: with --worker-music, continue this MIDI file (its tempo and metre known) ...
    #[arg(long, hide = true)]
    pub primer: Option<PathBuf>,
    /// Internal: ... following it this strongly.
    #[arg(long, hide = true, default_value_t = 0.0)]
    pub follow: f32,
    /// Internal: the read bandwidth the parent measured, in GB/s.
    #[arg(long, hide = true, default_value_t = 0.0)]
    pub read_gb_s: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ContextRow {
    context: usize,
    /// Positions the cache buffers held at the end of the timed steps.
    capacity: usize,
    cached_ms: f64,
    recompute_ms: f64,
    bound_ms: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct WorkerReport {
    provider: String,
    config: ModelConfig,
    rows: Vec<ContextRow>,
    /// Peak RSS after the cached steps (model, runtime, caches up to the longest context).
    cached_peak_rss_mb: f64,
    /// Peak RSS after the full recomputations as well.
    peak_rss_mb: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct MusicReport {
    provider: String,
    style: String,
    config: ModelConfig,
    events: usize,
    music_s: f64,
    wall_s: f64,
    load_s: f64,
    peak_rss_mb: f64,
}

fn provider(name: &str) -> Result<Provider> {
    Ok(match name {
        "auto" => Provider::Auto,
        "cpu" => Provider::Cpu,
        "cuda" => Provider::Cuda,
        other => bail!("--provider {other}: use auto, cpu or cuda"),
    })
}

fn engine_options(a: &GenerateArgs) -> Result<EngineOptions> {
    Ok(EngineOptions {
        ort_library: crate::env::ort_library(),
        intra_threads: a.threads,
        provider: provider(&a.provider)?,
    })
}

/// Peak resident memory of this process, from /proc/self/status (Linux).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Read bandwidth with `threads` threads summing a 512 MB buffer (best of 5),
/// in GB/s: the rate at which a cached step can stream weights and cache.
/// Integer sums in independent lanes, so the adds vectorize and memory is the limit.
fn read_bandwidth_gb_s(threads: usize) -> f64 {
    const LANES: usize = 8;
    let n: usize = 64 << 20; // u64s
    let data: Vec<u64> = (0..n as u64).collect();
    let chunk = n.div_ceil(threads.max(1)).next_multiple_of(LANES);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = data
                .chunks(chunk)
                .map(|c| {
                    s.spawn(move || {
                        let mut acc = [0u64; LANES];
                        for block in c.chunks_exact(LANES) {
                            for (a, x) in acc.iter_mut().zip(block) {
                                *a = a.wrapping_add(*x);
                            }
                        }
                        acc.iter().fold(0u64, |a, x| a.wrapping_add(*x))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).fold(0u64, u64::wrapping_add)
        });
        std::hint::black_box(total);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    (n * 8) as f64 / best / 1e9
}

/// Bytes of weights a cached step reads: the weight products (q/k/v, output,
/// feed-forward, head) at `precision`, every other weight float32.
fn weight_bytes(cfg: &ModelConfig, precision: Precision) -> f64 {
    let (v, d, f, l) = (cfg.vocab_size, cfg.d_model, cfg.d_ff, cfg.n_layers);
    let products = l * (4 * d * d + 2 * d * f) + d * v;
    let product_bytes = match precision {
        Precision::Float32 => 4.0,
        Precision::Int8 => 1.0,
    };
    products as f64 * product_bytes + (cfg.num_params() - products) as f64 * 4.0
}

fn worker(a: &GenerateArgs, model: &Path) -> Result<()> {
    let read_gb_s = a.read_gb_s;
    let mut engine = Engine::load(model, &engine_options(a)?)?;
    let info = engine.info().clone();
    let cfg = info.config;
    if a.worker_music {
        let (primer, meter) = match &a.primer {
            Some(p) => {
                let (perf, tempo) = cadenza_core::midi::read_file_timed(p, &Default::default())?;
                (Some(perf), Some(tempo.meter()))
            }
            None => (None, None),
        };
        let req = GenerateRequest {
            primer,
            meter,
            settings: GenerationSettings {
                length: a.events.map_or(Length::Seconds(a.seconds), Length::Events),
                variations: a.variations,
                sampling: Sampling { seed: 7, ..Default::default() },
                steering: Steering { allow_end: false, follow: a.follow, ..Default::default() },
            },
            ..Default::default()
        };
        let t0 = Instant::now();
        let mut events = 0;
        let v = engine.generate_variations(&req, &mut |p| {
            events = p.events;
            true
        })?;
        let wall_s = t0.elapsed().as_secs_f64();
        let report = MusicReport {
            provider: info.provider.to_string(),
            style: info.style.clone(),
            config: cfg,
            events,
            music_s: v.first().map_or(0.0, |v| v.performance.duration_s()),
            wall_s,
            load_s: 0.0,
            peak_rss_mb: peak_rss_mb(),
        };
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let weight_bytes = weight_bytes(&cfg, model_precision(model).unwrap_or_default());
    let contexts: Vec<usize> = a.contexts.iter().copied().filter(|&c| c <= cfg.max_seq_len).collect();
    // Deterministic pseudo-random events (the content does not change the time).
    let tokens: Vec<i64> = (0..cfg.max_seq_len as i64).map(|i| (i * 7919 + 13) % 388).collect();
    let events: Vec<u16> = tokens.iter().map(|&t| t as u16).collect();
    let mut cached = Vec::new();
    for &ctx in &contexts {
        let model = engine.model();
        let start = ctx.saturating_sub(a.steps).max(1);
        let mut cache = model.empty_cache(1);
        model.prefill(&[&events[..start]], &mut cache)?;
        // One untimed step warms the arena for this size.
        model.forward(&tokens[start..start + 1], &mut cache)?;
        let mut step_ms = Vec::with_capacity(ctx - start);
        for t in start + 1..ctx {
            let t0 = Instant::now();
            model.forward(&tokens[t..t + 1], &mut cache)?;
            step_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        cached.push((median(&mut step_ms), cache.capacity()));
    }
    let cached_peak_rss_mb = peak_rss_mb();
    let mut rows = Vec::new();
    for (&ctx, (cached_ms, capacity)) in contexts.iter().zip(cached) {
        let model = engine.model();
        model.forward(&tokens[..ctx], &mut model.empty_cache(1))?; // warm-up
        let mut runs_ms = Vec::with_capacity(a.recompute);
        for _ in 0..a.recompute.max(1) {
            let t0 = Instant::now();
            model.forward(&tokens[..ctx], &mut model.empty_cache(1))?;
            runs_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let recompute_ms = median(&mut runs_ms);
        let kv_bytes = (2 * cfg.n_layers * ctx * cfg.d_model * 4) as f64;
        let bound_ms = (weight_bytes + kv_bytes) / (read_gb_s * 1e9) * 1e3;
        rows.push(ContextRow { context: ctx, capacity, cached_ms, recompute_ms, bound_ms });
    }
    let report = WorkerReport {
        provider: info.provider.to_string(),
        config: cfg,
        rows,
        cached_peak_rss_mb,
        peak_rss_mb: peak_rss_mb(),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Export random weights for `preset` (window `max_len`) once into
/// target/bench/, with core's exporter (no libtorch); again whenever this
/// program, which holds the exporter, is newer than the file.
fn random_model(preset: &str, max_len: usize, precision: Precision) -> Result<PathBuf> {
    let base = ModelConfig::preset(preset).with_context(|| format!("unknown preset `{preset}`"))?;
    let path = bench_dir()?.join(format!("random-{preset}-{max_len}-{}.onnx", precision.name()));
    if stale(&path, &[]) {
        let cfg = ModelConfig { max_seq_len: max_len, ..base };
        export_random(&cfg, &format!("random-{preset}"), RANDOM_SEED, precision, &path)?;
    }
    Ok(path)
}

/// target/bench/, where the benchmarks' models are exported.
fn bench_dir() -> Result<PathBuf> {
    let dir = repo_root().join("target").join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    Ok(dir)
}

/// Whether `path` is missing or older than this program (which holds the
/// exporter) or any of `sources`.
fn stale(path: &Path, sources: &[PathBuf]) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(made) = modified(path) else { return true };
    let me = std::env::current_exe().ok();
    me.iter().chain(sources).any(|p| modified(p) > Some(made))
}

/// The shipped model `model` (`models/STYLE.onnx`) exported from its
/// checkpoint (`models/checkpoints/STYLE`) at `precision` into target/bench/;
/// `None` for a model without one.
fn shipped_at(model: &Path, precision: Precision) -> Result<Option<PathBuf>> {
    let (Some(dir), Some(style)) = (model.parent(), model.file_stem().and_then(|s| s.to_str())) else {
        return Ok(None);
    };
    let weights = dir.join("checkpoints").join(format!("{style}.safetensors"));
    if !weights.is_file() {
        return Ok(None);
    }
    let path = bench_dir()?.join(format!("{style}-{}.onnx", precision.name()));
    if stale(&path, &[weights.clone(), weights.with_extension("json")]) {
        export_onnx(&weights, &path, &ExportOptions { style: Some(style.to_string()), precision })?;
    }
    Ok(Some(path))
}

/// Seed of the benchmarks' random weights (the timings do not depend on it).
const RANDOM_SEED: u64 = 1;

/// Events per second of real piano music: the MIDI fixtures of the repository
/// (and `data/`, when the corpora are built) through the codec.
fn real_events_per_second() -> Option<(f64, usize)> {
    let root = repo_root();
    let mut files = Vec::new();
    let mut dirs = vec![root.join("trainer/tests/fixtures"), root.join("tests/fixtures"), root.join("data")];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() && !p.ends_with("cache") {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "mid" || x == "midi") && files.len() < MAX_RATE_FILES {
                files.push(p);
            }
        }
    }
    let (mut events, mut seconds) = (0usize, 0.0f64);
    for f in &files {
        if let Ok(perf) = cadenza_core::midi::read_file(f, &cadenza_core::midi::ReadOptions::default()) {
            events += cadenza_core::codec::encode(&perf).len();
            seconds += perf.duration_s();
        }
    }
    (seconds > 0.0).then(|| (events as f64 / seconds, files.len()))
}

/// Files read at most to estimate the event rate.
const MAX_RATE_FILES: usize = 500;

/// A shipped model with the small config, for a realistic event rate.
fn shipped_small() -> Option<PathBuf> {
    let dir = repo_root().join("models");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    found.sort();
    found.into_iter().find(|p| {
        let opts = EngineOptions { ort_library: crate::env::ort_library(), intra_threads: 1, provider: Provider::Cpu };
        Engine::load(p, &opts).is_ok_and(|e| {
            let c = e.info().config;
            (c.n_layers, c.d_model, c.n_heads, c.d_ff) == {
                let s = ModelConfig::SMALL;
                (s.n_layers, s.d_model, s.n_heads, s.d_ff)
            }
        })
    })
}

pub fn run(a: &GenerateArgs) -> Result<()> {
    if let Some(model) = &a.worker {
        return worker(a, model);
    }
    let env = crate::setup::tool_env()?;
    let me = std::env::current_exe().context("cannot find the xtask binary")?;
    let longest = a.contexts.iter().copied().max().unwrap_or(2048);
    let common = |cmd: &mut Command, read_gb_s: f64, threads: usize| {
        env.apply(cmd);
        cmd.args(["bench", "generate", "--threads", &threads.to_string(), "--provider", &a.provider]);
        cmd.args(["--steps", &a.steps.to_string(), "--recompute", &a.recompute.to_string()]);
        cmd.args(["--seconds", &a.seconds.to_string(), "--read-gb-s", &read_gb_s.to_string()]);
        cmd.arg("--contexts").arg(a.contexts.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","));
    };

    println!(
        "generation speed, batch 1, {} threads, provider {}: cached = KV-cache step (buffers read in place, \
         `cap` positions); recompute = whole sequence per event",
        a.threads, a.provider
    );
    println!(
        "memory-traffic bound = (weights + float32 KV cache) / this machine's {}-thread read bandwidth, measured \
         just before each model's timings (other processes share it); int8 = int8 weight products",
        a.threads
    );
    println!(
        "{:<13} {:>8} {:>6} {:>11} {:>14} {:>9} {:>11} {:>9} {:>16}",
        "model", "context", "cap", "cached ms", "recompute ms", "speed-up", "bound ms", "x bound", "peak MB (cached)"
    );
    for (preset, &precision) in a.presets.iter().flat_map(|p| a.precisions.iter().map(move |q| (p, q))) {
        let base = ModelConfig::preset(preset).with_context(|| format!("unknown preset `{preset}`"))?;
        let max_len = base.max_seq_len.max(longest);
        let model = random_model(preset, max_len, precision)?;
        let label = format!("{preset} {}", precision.name());
        let read_gb_s = read_bandwidth_gb_s(a.threads);
        let mut cmd = Command::new(&me);
        common(&mut cmd, read_gb_s, a.threads);
        cmd.arg("--worker").arg(&model);
        let r: WorkerReport = json_line(&mut cmd, &format!("bench worker {preset}"))?;
        for row in &r.rows {
            println!(
                "{:<13} {:>8} {:>6} {:>11.2} {:>14.1} {:>8.0}x {:>11.2} {:>9.2} {:>16.0}",
                label,
                row.context,
                row.capacity,
                row.cached_ms,
                row.recompute_ms,
                row.recompute_ms / row.cached_ms,
                row.bound_ms,
                row.cached_ms / row.bound_ms,
                r.cached_peak_rss_mb
            );
        }
        println!(
            "        ({label} on {}; read bandwidth {read_gb_s:.1} GB/s; peak {:.0} MB with the full recomputations; window {}{})",
            r.provider,
            r.peak_rss_mb,
            r.config.max_seq_len,
            if r.config.max_seq_len != base.max_seq_len {
                format!(", stretched from {} to time long contexts", base.max_seq_len)
            } else {
                String::new()
            }
        );
    }

    let (music_model, trained) = match (&a.music_model, shipped_small()) {
        (Some(p), _) => (p.clone(), true),
        (None, Some(p)) => (p, true),
        (None, None) => (random_model("small", ModelConfig::SMALL.max_seq_len, Precision::default())?, false),
    };
    let music_cmd = |model: &Path, threads: usize, variations: usize| {
        let mut cmd = Command::new(&me);
        common(&mut cmd, 0.0, threads);
        cmd.arg("--worker").arg(model).arg("--worker-music");
        cmd.args(["--variations", &variations.to_string()]);
        cmd
    };
    let music_at = |model: &Path, threads: usize, variations: usize| -> Result<MusicReport> {
        json_line(&mut music_cmd(model, threads, variations), "bench worker music")
    };
    let music_with = |model: &Path, events: Option<usize>, primer: Option<(&Path, f32)>| -> Result<MusicReport> {
        let mut cmd = music_cmd(model, a.threads, a.variations);
        if let Some(n) = events {
            cmd.args(["--events", &n.to_string()]);
        }
        if let Some((path, follow)) = primer {
            cmd.arg("--primer").arg(path).args(["--follow", &follow.to_string()]);
        }
        json_line(&mut cmd, "bench worker music")
    };
    let line = |model: &Path, m: &MusicReport, what: &str| {
        println!(
            "{what} from {} ({}, {} variation(s)): {} events in {:.2} s ({:.2} ms per event, window slides included), peak {:.0} MB",
            model.display(),
            m.style,
            a.variations,
            m.events,
            m.wall_s,
            m.wall_s * 1e3 / m.events.max(1) as f64,
            m.peak_rss_mb
        )
    };
    let per_event = |m: &MusicReport| m.wall_s * 1e3 / m.events.max(1) as f64;
    if trained {
        // A shipped model at each precision, from its checkpoint, so one run shows their ratio.
        let mut at = Vec::new();
        for &p in &a.precisions {
            if let Some(model) = shipped_at(&music_model, p)? {
                at.push((p, model));
            }
        }
        if at.is_empty() {
            let m = music_with(&music_model, None, None)?;
            line(&music_model, &m, &format!("{:.0} s of music", m.music_s));
        }
        let mut timed = Vec::new();
        for (p, model) in &at {
            let m = music_with(model, None, None)?;
            line(model, &m, &format!("{:.0} s of music, {},", m.music_s, p.name()));
            timed.push((*p, m));
        }
        if let [(p0, m0), (p1, m1), ..] = timed.as_slice() {
            println!(
                "{} takes {:.2}x the time per event of {} ({:.3} against {:.3} ms)",
                p1.name(),
                per_event(m1) / per_event(m0),
                p0.name(),
                per_event(m1),
                per_event(m0)
            );
        }
        // Following a primer adds work to every step: timed against the same primer, free.
        let primer = repo_root().join("models/primers/twinkle.mid");
        // The same number of events both ways: a followed continuation is sparser, and fixed costs
        // (prefilling the primer, the first run of the graph) would weigh more per event.
        let free = music_with(&music_model, None, Some((&primer, 0.0)))?;
        let follow = cadenza_core::sampling::DEFAULT_FOLLOW;
        let followed = music_with(&music_model, Some(free.events), Some((&primer, follow)))?;
        line(&music_model, &free, &format!("{:.0} s continuing {}, follow 0,", free.music_s, primer.display()));
        line(
            &music_model,
            &followed,
            &format!("as many events continuing it, follow {follow} ({:.0} s),", followed.music_s),
        );
        println!(
            "following the primer costs {:.2}x the time of generating free ({:.3} against {:.3} ms per event)",
            per_event(&followed) / per_event(&free),
            per_event(&followed),
            per_event(&free)
        );
        if a.compare_threads > 0 && a.compare_threads != a.threads {
            // A step's products are small: whether more threads pay for waking each other.
            for variations in [1, 4] {
                let ours = music_at(&music_model, a.threads, variations)?;
                let theirs = music_at(&music_model, a.compare_threads, variations)?;
                println!(
                    "{:.0} s of music, {variations} variation(s): {} thread(s) {:.2} s, {} threads {:.2} s: {:.2}x the time",
                    ours.music_s,
                    a.threads,
                    ours.wall_s,
                    a.compare_threads,
                    theirs.wall_s,
                    ours.wall_s / theirs.wall_s
                );
            }
        }
    } else {
        // Random weights move time at random; time the number of events real music of this length has.
        let (rate, files) = real_events_per_second().context("no MIDI fixtures to measure a real event rate")?;
        let n = (rate * a.seconds).round() as usize;
        let m = music_with(&music_model, Some(n), None)?;
        line(
            &music_model,
            &m,
            &format!(
                "{} s of music at the real event rate ({rate:.1} events/s over {files} MIDI files), random small weights,",
                a.seconds
            ),
        );
    }
    Ok(())
}
