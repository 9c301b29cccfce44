//! `cadenza generate` (and `cargo xtask generate`): continue a MIDI primer (or improvise) in a style
//! with the ONNX Runtime engine, and write MIDI, optionally a WAV and a
//! piano-roll PNG. Every output is checked before the model runs and written
//! atomically; on any error the files of this run are removed again.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cadenza_core::analysis::Meter;
use cadenza_core::engine::{Engine, EngineOptions, ModelInfo, Provider};
use cadenza_core::fsutil::temp_path;
use cadenza_core::join::join_performances;
use cadenza_core::locate::{general_midi_soundfont, resolve_model};
use cadenza_core::request::{GenerateRequest, GenerationSettings, Length, MAX_VARIATIONS};
use cadenza_core::sampling::{Key, Sampling, Steering, StyleLead};
use cadenza_core::{codec, midi};

use crate::render;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderArg {
    Auto,
    Cpu,
    Cuda,
}

/// Continue a MIDI primer (or improvise) in a style; write MIDI, optionally WAV and a piano-roll PNG.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A style name (looked up in your style folder ~/.local/share/cadenza/models, then in the
    /// shipped models) or the path of an .onnx model.
    #[arg(long)]
    pub style: String,
    /// A MIDI file to continue; without it the model improvises from nothing.
    #[arg(long)]
    pub primer: Option<PathBuf>,
    /// Seconds of music to generate after the primer.
    #[arg(long, default_value_t = 30.0, conflicts_with = "events")]
    pub seconds: f64,
    /// Generate this many performance events instead of --seconds.
    #[arg(long)]
    pub events: Option<usize>,
    /// Random seed: the same model, primer, settings and seed give the same music.
    /// Default: a fresh seed, printed so the result can be made again.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The MIDI file to write. With several variations: OUT-1.mid, OUT-2.mid, ...
    #[arg(long)]
    pub out: PathBuf,
    /// Also render a WAV file with a General MIDI piano (named like --out for variations).
    #[arg(long)]
    pub wav: Option<PathBuf>,
    /// Also draw a piano roll (primer in blue, continuation in orange).
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Independent continuations, generated together in one batch (1-8).
    #[arg(long, default_value_t = GenerationSettings::default().variations)]
    pub variations: usize,
    /// Sampling temperature: below 1 safer, above 1 wilder, 0 always the likeliest event.
    #[arg(long, default_value_t = Sampling::default().temperature)]
    pub temperature: f32,
    /// Nucleus sampling: draw from the likeliest events holding this much probability (1 = all).
    #[arg(long, default_value_t = Sampling::default().top_p)]
    pub top_p: f32,
    /// Draw only from the K likeliest events (0 = no limit).
    #[arg(long, default_value_t = Sampling::default().top_k)]
    pub top_k: usize,
    /// Write the primer before the continuation in the MIDI and WAV files.
    #[arg(long)]
    pub with_primer: bool,
    /// The primer's tempo in BPM: following the primer keeps its beat, and the MIDI file is
    /// written at it (the music's timing in seconds does not change). Default: the primer
    /// file's first tempo and time signature, else 120.
    #[arg(long)]
    pub tempo: Option<f64>,
    /// The SF2 soundfont for --wav (default: the installed General MIDI soundfont).
    #[arg(long)]
    pub soundfont: Option<PathBuf>,
    /// Lowest MIDI pitch of new notes (setting it turns off following the primer's register).
    #[arg(long, default_value_t = Steering::default().lowest_pitch)]
    pub lowest_pitch: u8,
    /// Highest MIDI pitch of new notes (setting it turns off following the primer's register).
    #[arg(long, default_value_t = Steering::default().highest_pitch)]
    pub highest_pitch: u8,
    /// Keep new notes in a key, e.g. "C major", "A minor", "D dorian", "Eb blues" (a hard
    /// limit; it replaces following the primer's pitch classes).
    #[arg(long)]
    pub key: Option<String>,
    /// Most notes sounding at once.
    #[arg(long)]
    pub max_polyphony: Option<u8>,
    /// Note-density bias in nats (-8..8): positive gives more notes, negative fewer
    /// (a value other than 0 turns off following the primer's density).
    #[arg(long, default_value_t = Steering::default().density_bias, allow_hyphen_values = true)]
    pub density: f32,
    /// Never let the model end the piece early: always fill the requested length.
    #[arg(long)]
    pub no_end: bool,
    /// Longest a note may sound, in seconds (0 = no limit): a note held this long
    /// is released, and the model hears the release like one it chose.
    #[arg(long, default_value_t = Steering::default().max_note_s)]
    pub max_note_seconds: f64,
    /// Follow the primer: pull the continuation towards its key, register, note density,
    /// loudness, rhythmic grid and figures, from 0 (free) to 1 (strict). Soft: nothing is
    /// banned. --key, --lowest-pitch/--highest-pitch and --density override their part.
    #[arg(long, default_value_t = Steering::default().follow)]
    pub follow: f32,
    /// How much the style's own voice leads a continuation, from 0 (the model imitates the
    /// primer as it sounds) to 1 (it hears only what it has played since; --follow still
    /// keeps key, register and beat). Higher keeps jazz jazz over a nursery-rhyme primer.
    #[arg(long, default_value_t = Steering::default().own_voice)]
    pub own_voice: f32,
    /// Let the style lead a primer foreign to it (a nursery rhyme continued as jazz): the
    /// further the primer lies from the style, the more the style's own voice and its feel
    /// (straight or swung), figures and density take over; key, register and beat still
    /// follow. A primer in the style's own idiom changes nothing. `model` (the default)
    /// leaves it to the model: classical, folk and electronic lead by cost, measured to keep
    /// following their own styles' phrases; jazz, pop and rock lead what the style judge
    /// shipped with the models names another style; `--style-lead` alone is `on`.
    #[arg(long, value_name = "off|model|on", default_value_t = StyleLead::Model, num_args = 0..=1, default_missing_value = "on")]
    pub style_lead: StyleLead,
    /// Lean away from another style, usually the one this style was finetuned from (a
    /// style name or an .onnx path): what the finetuning taught is said more plainly.
    /// That model runs beside the style's, on a second thread. A model may name its own
    /// (electronic leans away from rock and jazz from pop by default, measured in models/README.md); this
    /// replaces it. Several styles joined by `+` (pop+rock) are leaned from at once.
    #[arg(long, value_name = "STYLE")]
    pub contrast_with: Option<String>,
    /// How far to lean away, 0 (not at all: also turns off a model's own choice) to 2;
    /// default 0.5, or the strength the model names.
    #[arg(long)]
    pub contrast: Option<f32>,
    /// ONNX Runtime threads (0 = one per physical core). One is the fastest for
    /// generating: a step's products are too small to share.
    #[arg(long, default_value_t = cadenza_core::engine::DEFAULT_INTRA_THREADS)]
    pub threads: usize,
    /// Where the model runs: CUDA when available (auto), the CPU, or CUDA only.
    #[arg(long, value_enum, default_value_t = ProviderArg::Auto)]
    pub provider: ProviderArg,
}

/// `out` for variation `i` of `n`: unchanged for one, `stem-i.ext` for several.
pub fn variation_path(out: &Path, i: usize, n: usize) -> PathBuf {
    if n == 1 {
        return out.to_path_buf();
    }
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match out.extension() {
        Some(ext) => format!("{stem}-{}.{}", i + 1, ext.to_string_lossy()),
        None => format!("{stem}-{}", i + 1),
    };
    out.with_file_name(name)
}

/// Fail now, before minutes of work, if `path` cannot be written.
fn check_writable(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!("{}: is a folder, not a file name", path.display());
    }
    let probe = temp_path(path);
    std::fs::write(&probe, b"").with_context(|| format!("{}: cannot write here", path.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Removes the files of a run that failed half-way.
struct Written(Vec<PathBuf>);

impl Drop for Written {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (nanos as u64 ^ (u64::from(std::process::id()) << 32)) % 1_000_000
}

pub fn run(args: &Args) -> Result<()> {
    let model_path = resolve_model(&args.style)?;
    let n = args.variations;
    if n == 0 || n > MAX_VARIATIONS {
        bail!("--variations {n}: ask for 1 to {MAX_VARIATIONS}");
    }
    let outputs: Vec<(PathBuf, Option<PathBuf>, Option<PathBuf>)> = (0..n)
        .map(|i| {
            (
                variation_path(&args.out, i, n),
                args.wav.as_ref().map(|w| variation_path(w, i, n)),
                args.png.as_ref().map(|p| variation_path(p, i, n)),
            )
        })
        .collect();
    for (mid, wav, png) in &outputs {
        for p in std::iter::once(mid).chain(wav).chain(png) {
            check_writable(p)?;
        }
    }
    let soundfont = match &args.wav {
        Some(_) => {
            let path = general_midi_soundfont(args.soundfont.as_deref())?;
            Some(render::load_soundfont(&path)?)
        }
        None => None,
    };
    let (primer, file_tempo) = match &args.primer {
        Some(p) => {
            let (perf, tempo) = midi::read_file_timed(p, &midi::ReadOptions::default())?;
            (Some(perf), Some(tempo))
        }
        None => (None, None),
    };
    let meter = match (args.tempo, &file_tempo) {
        (Some(bpm), Some(t)) => Some(Meter { tempo_bpm: bpm, ..t.meter() }),
        (Some(bpm), None) => Some(Meter::new(bpm)),
        (None, Some(t)) => Some(t.meter()),
        (None, None) => None,
    };
    if let Some(m) = &meter {
        m.validate().map_err(|e| anyhow::anyhow!("--tempo: {e}"))?;
    }
    let key = args.key.as_deref().map(Key::parse).transpose().map_err(|e| anyhow::anyhow!("--key: {e}"))?;
    let seed = args.seed.unwrap_or_else(fresh_seed);
    let mut req = GenerateRequest {
        primer: primer.clone(),
        primer_end_s: None,
        meter: primer.as_ref().and(meter),
        settings: GenerationSettings {
            length: match args.events {
                Some(e) => Length::Events(e),
                None => Length::Seconds(args.seconds),
            },
            variations: n,
            sampling: Sampling { temperature: args.temperature, top_k: args.top_k, top_p: args.top_p, seed },
            steering: Steering {
                lowest_pitch: args.lowest_pitch,
                highest_pitch: args.highest_pitch,
                key,
                max_polyphony: args.max_polyphony,
                density_bias: args.density,
                allow_end: !args.no_end,
                max_note_s: args.max_note_seconds,
                follow: args.follow,
                own_voice: args.own_voice,
                style_lead: args.style_lead,
                // Set once the model is loaded: it may name a style to lean away from.
                contrast: args.contrast.unwrap_or(0.0),
            },
        },
    };
    req.validate().map_err(|e| anyhow::anyhow!("invalid settings: {e}"))?;

    let opts = EngineOptions {
        ort_library: crate::tools::ort_library(),
        intra_threads: args.threads,
        provider: match args.provider {
            ProviderArg::Auto => Provider::Auto,
            ProviderArg::Cpu => Provider::Cpu,
            ProviderArg::Cuda => Provider::Cuda,
        },
    };
    let t_load = Instant::now();
    let mut engine = Engine::load(&model_path, &opts)?;
    let info = engine.info().clone();
    if let Some(Lean { paths, following, strength, advice, why }) = contrast_choice(args, &model_path, &info)? {
        engine.load_contrasts(&paths, following.as_deref())?;
        let following_gain = advice.as_ref().map_or(1.0, |a| a.following_gain());
        if let Some(a) = &advice {
            engine.set_following_lean(a);
        }
        req.settings.steering.contrast = strength;
        req.validate().map_err(|e| anyhow::anyhow!("invalid settings: {e}"))?;
        let names = |paths: &[PathBuf]| paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and ");
        let instead = match (following.as_deref(), following_gain != 1.0) {
            (Some(f), true) => format!(" (from {} at {} following a primer)", names(f), strength * following_gain),
            (Some(f), false) => format!(" (from {} following a primer)", names(f)),
            (None, true) => format!(" (at {} following a primer)", strength * following_gain),
            (None, false) => String::new(),
        };
        eprintln!("generate: leaning away from {} at {strength}{instead}{why}", names(&paths));
    }
    eprintln!(
        "generate: {} ({} style, {} layers x {}, window {}) on {} in {:.0} ms; seed {seed}",
        model_path.display(),
        info.style,
        info.config.n_layers,
        info.config.d_model,
        info.config.max_seq_len,
        info.provider,
        t_load.elapsed().as_secs_f64() * 1e3
    );

    let t_gen = Instant::now();
    let mut progress = GenerateProgress::new(std::io::stderr().is_terminal());
    let mut events = 0usize;
    let variations = engine.generate_variations(&req, &mut |p| {
        events = p.events;
        if let Some(line) = progress.update(p.fraction, p.events) {
            eprint!("{line}");
        }
        true
    })?;
    let gen_s = t_gen.elapsed().as_secs_f64();
    eprintln!(
        "{}generate: {events} events per variation in {gen_s:.2} s ({:.2} ms per event)",
        progress.line_start(),
        gen_s * 1e3 / events.max(1) as f64
    );

    // With a primer to follow, the lean goes as far as the primer is foreign to the style, by cost or by ear.
    let contrast = req.settings.steering.contrast;
    if let Some(fit) = engine.primer_fit().filter(|_| engine.contrast_info().is_some() && contrast > 0.0) {
        if req.settings.steering.follow > 0.0 {
            eprintln!(
                "generate: following the primer, which is {:.0}% foreign to {}, it leaned at {:.2}.",
                100.0 * fit.lean,
                info.style,
                contrast * fit.lean
            );
        }
    }
    if let Some(advice) = engine.primer_fit().and_then(|f| f.advice(&info.style, "--style-lead on")) {
        eprintln!("generate: {advice}.");
    }

    // Where the continuation starts: the primer's end on the codec's grid.
    let primer_end_s = primer.as_ref().map_or(0.0, |p| codec::tokens_duration_s(&codec::encode_tokens(p)));
    let mut written = Written(Vec::new());
    let write_opts = midi::WriteOptions {
        tempo_bpm: meter.map_or(120.0, |m| m.tempo_bpm),
        time_signature: file_tempo.as_ref().map_or((4, 4), |t| t.time_signature),
        ..Default::default()
    };
    for (i, (v, (mid, wav, png))) in variations.iter().zip(&outputs).enumerate() {
        let placed = join_performances(primer.as_ref(), &v.performance, primer_end_s);
        let file_perf = if args.with_primer { &placed } else { &v.performance };
        written.0.push(mid.clone());
        midi::write_performance_file(mid, file_perf, &write_opts)
            .with_context(|| format!("{}: cannot write", mid.display()))?;
        if let (Some(wav), Some(sf)) = (wav, &soundfont) {
            written.0.push(wav.clone());
            render::write_wav(file_perf, sf, wav)?;
        }
        if let Some(png) = png {
            written.0.push(png.clone());
            let title = format!("{} · seed {seed} · variation {}", info.style, i + 1);
            let split = primer.as_ref().map(|_| primer_end_s);
            render::write_piano_roll(&placed, split, &title, png)?;
        }
        println!(
            "{}: {} notes, {:.1} s{}{}",
            mid.display(),
            v.performance.notes.len(),
            v.performance.duration_s(),
            if v.ended { ", the model ended the piece" } else { "" },
            [wav, png].iter().filter_map(|p| p.as_ref()).map(|p| format!(", {}", p.display())).collect::<String>()
        );
    }
    written.0.clear();
    Ok(())
}

/// What [`contrast_choice`] chose: the models to lean from, those instead while following a
/// primer when they differ, how far, and why.
struct Lean {
    paths: Vec<PathBuf>,
    following: Option<Vec<PathBuf>>,
    strength: f32,
    /// The model's advice, when it is its own choice: how it leans while following a primer
    /// ([`Engine::set_following_lean`]).
    advice: Option<cadenza_core::sampling::ContrastAdvice>,
    why: String,
}

/// The models to lean away from, how far, and why (empty when asked on the
/// command line): `--contrast-with`, else the styles the model names
/// ([`ModelInfo::contrast_advice`]) unless `--contrast 0`; `None` for neither.
fn contrast_choice(args: &Args, model: &Path, info: &ModelInfo) -> Result<Option<Lean>> {
    let asked = args.contrast;
    if let Some(other) = &args.contrast_with {
        // One style or file, else several styles joined by `+` (pop+rock).
        let paths = match resolve_model(other) {
            Ok(path) => vec![path],
            Err(_) if other.contains(cadenza_core::sampling::CONTRAST_STYLES_JOIN) => {
                cadenza_core::sampling::contrast_styles(other)
                    .map(|one| resolve_model(one).with_context(|| format!("--contrast-with {other}")))
                    .collect::<Result<_>>()?
            }
            Err(e) => return Err(e).context("--contrast-with"),
        };
        let strength = asked.unwrap_or(cadenza_core::sampling::DEFAULT_CONTRAST);
        return Ok(Some(Lean { paths, following: None, strength, advice: None, why: String::new() }));
    }
    match &info.contrast_advice {
        _ if asked == Some(0.0) => Ok(None),
        Some(advice) => match cadenza_core::locate::advised_contrast_models(model, &info.style, advice) {
            Ok((paths, following)) => Ok(Some(Lean {
                paths,
                following,
                strength: asked.unwrap_or(advice.strength),
                advice: Some(advice.clone()),
                why: format!(", {}'s own choice (--contrast 0 turns it off)", info.style),
            })),
            Err(nowhere) => {
                eprintln!("generate: {nowhere}; generating without it");
                Ok(None)
            }
        },
        None => match asked {
            Some(x) => {
                bail!("--contrast {x}: {} names no style to lean away from; add --contrast-with STYLE", info.style)
            }
            None => Ok(None),
        },
    }
}

/// How generation progress reaches stderr: on a terminal one line rewritten
/// in place four times a second; in a log (no terminal) one line per tenth
/// done, so updates never run together on one line.
struct GenerateProgress {
    terminal: bool,
    last: Instant,
    /// Tenths done already reported (logs only).
    tenths: u32,
}

impl GenerateProgress {
    fn new(terminal: bool) -> Self {
        Self { terminal, last: Instant::now(), tenths: 0 }
    }

    /// What to print for `fraction` (0..=1) done after `events` events, if anything.
    fn update(&mut self, fraction: f64, events: usize) -> Option<String> {
        if self.terminal {
            if self.last.elapsed() < Duration::from_millis(250) {
                return None;
            }
            self.last = Instant::now();
            return Some(format!("\rgenerate: {:>3.0}% ({events} events)", fraction * 100.0));
        }
        let tenths = (fraction * 10.0).floor().clamp(0.0, 9.0) as u32;
        if tenths <= self.tenths {
            return None;
        }
        self.tenths = tenths;
        Some(format!("generate: {:>3}% ({events} events)\n", tenths * 10))
    }

    /// What the next whole line starts with: a return over the terminal's progress line.
    fn line_start(&self) -> &'static str {
        if self.terminal {
            "\r"
        } else {
            ""
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11: without a terminal, progress is whole lines, one per tenth done, never "\r".
    #[test]
    fn progress_in_a_log_is_one_line_per_tenth() {
        let mut log = GenerateProgress::new(false);
        let lines: Vec<String> = (0..=1000).filter_map(|i| log.update(f64::from(i) / 1000.0, i as usize)).collect();
        assert_eq!(lines.len(), 9, "10% to 90%; the summary line says 100%: {lines:?}");
        assert_eq!(lines[0], "generate:  10% (100 events)\n");
        assert!(lines.iter().all(|l| l.ends_with('\n') && !l.contains('\r')));
        assert_eq!(log.line_start(), "");
        let mut terminal = GenerateProgress::new(true);
        terminal.last -= Duration::from_secs(1);
        assert_eq!(terminal.update(0.5, 7).as_deref(), Some("\rgenerate:  50% (7 events)"));
        assert_eq!(terminal.update(0.6, 8), None, "at most four a second");
    }

    #[test]
    fn variations_get_numbered_names() {
        assert_eq!(variation_path(Path::new("out/a.mid"), 0, 1), PathBuf::from("out/a.mid"));
        assert_eq!(variation_path(Path::new("out/a.mid"), 1, 3), PathBuf::from("out/a-2.mid"));
    }

    #[test]
    fn unwritable_outputs_are_refused_before_work() {
        assert!(check_writable(Path::new("/nonexistent-dir/out.mid")).is_err());
        assert!(check_writable(&std::env::temp_dir()).is_err());
    }
}
