//! What `generate` writes besides MIDI, and `cadenza render` makes of any
//! MIDI file: a WAV rendered with rustysynth and a General MIDI soundfont
//! (found by [`cadenza_core::locate::general_midi_soundfont`]), and a
//! piano-roll PNG drawn with plotters (primer and continuation in different
//! colours). Both are written through a temporary file and a rename, so a
//! failure leaves nothing behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use cadenza_core::fsutil::{temp_path, write_atomic};
use cadenza_core::locate::general_midi_soundfont;
use cadenza_core::{midi, Performance};
use plotters::prelude::*;
use rustysynth::{SoundFont, Synthesizer, SynthesizerSettings};

/// Sample rate of rendered WAV files.
pub const SAMPLE_RATE_HZ: u32 = 44_100;

/// Rate and channels of a rendered WAV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavFormat {
    pub rate_hz: u32,
    pub channels: u16,
}

impl WavFormat {
    /// What `generate --wav` writes.
    pub const CD: Self = Self { rate_hz: SAMPLE_RATE_HZ, channels: 2 };
    /// A quarter of the bytes, for the samples kept in the repository.
    pub const COMPACT: Self = Self { rate_hz: 22_050, channels: 1 };
}
/// Silence rendered after the last release, so the notes ring out.
pub const TAIL_S: f64 = 1.5;
/// Longest audio rendered, in seconds (an hour of CD-quality stereo is 635 MB).
pub const MAX_RENDER_S: f64 = 3600.0;

/// Render a MIDI file on a General MIDI piano to a WAV file (and a piano-roll PNG).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A Standard MIDI File (format 0 or 1) to render on piano.
    pub input: PathBuf,
    /// The WAV file to write (44.1 kHz, 16-bit stereo).
    #[arg(long)]
    pub out: PathBuf,
    /// Also draw a piano roll of the file.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// The SF2 soundfont (default: the installed General MIDI soundfont).
    #[arg(long)]
    pub soundfont: Option<PathBuf>,
    /// Ignore the sustain pedal (CC64) instead of holding notes under it.
    #[arg(long)]
    pub no_sustain: bool,
}

/// `cadenza render`: a MIDI file to a WAV (and a piano roll) as `generate --wav` renders.
pub fn run(args: &Args) -> Result<()> {
    let soundfont = load_soundfont(&general_midi_soundfont(args.soundfont.as_deref())?)?;
    let opts = midi::ReadOptions { sustain: !args.no_sustain, ..Default::default() };
    let perf = midi::read_file(&args.input, &opts)?;
    write_wav(&perf, &soundfont, &args.out)?;
    if let Some(png) = &args.png {
        let title = args.input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        write_piano_roll(&perf, None, &title, png)?;
    }
    println!(
        "{}: {} notes, {:.1} s{}",
        args.out.display(),
        perf.notes.len(),
        perf.duration_s(),
        args.png.as_ref().map(|p| format!(", {}", p.display())).unwrap_or_default()
    );
    Ok(())
}

/// Load a soundfont, naming the file when it is not one.
pub fn load_soundfont(path: &Path) -> Result<Arc<SoundFont>> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open the soundfont", path.display()))?;
    let sf = SoundFont::new(&mut file)
        .map_err(|e| anyhow::anyhow!("{}: not a usable SF2 soundfont: {e}", path.display()))?;
    Ok(Arc::new(sf))
}

/// Render `perf` on piano (General MIDI program 0) to interleaved 16-bit
/// samples in `format` (mono mixes both sides).
pub fn synthesize(perf: &Performance, soundfont: &Arc<SoundFont>, format: WavFormat) -> Result<Vec<i16>> {
    let rate = format.rate_hz;
    let settings = SynthesizerSettings::new(rate as i32);
    let mut synth =
        Synthesizer::new(soundfont, &settings).map_err(|e| anyhow::anyhow!("cannot start the synthesizer: {e}"))?;
    let seconds = (perf.duration_s() + TAIL_S).min(MAX_RENDER_S);
    let total = (seconds * f64::from(rate)).ceil() as usize;
    // (sample, 0 = off / 1 = on, pitch, velocity): offs first at a shared instant.
    let mut events: Vec<(usize, u8, u8, u8)> = Vec::with_capacity(perf.notes.len() * 2);
    let at = |s: f64| ((s * f64::from(rate)).round().max(0.0) as usize).min(total);
    for n in &perf.notes {
        events.push((at(n.start_s), 1, n.pitch, n.velocity));
        events.push((at(n.end_s), 0, n.pitch, 0));
    }
    events.sort_unstable_by_key(|e| (e.0, e.1, e.2));

    let mut left = vec![0.0f32; total];
    let mut right = vec![0.0f32; total];
    let mut pos = 0usize;
    for (sample, kind, pitch, velocity) in events {
        if sample > pos {
            synth.render(&mut left[pos..sample], &mut right[pos..sample]);
            pos = sample;
        }
        if kind == 1 {
            synth.note_on(0, i32::from(pitch), i32::from(velocity));
        } else {
            synth.note_off(0, i32::from(pitch));
        }
    }
    if total > pos {
        synth.render(&mut left[pos..], &mut right[pos..]);
    }
    let to_i16 = |x: f32| (x.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16;
    Ok(if format.channels == 1 {
        left.iter().zip(&right).map(|(&l, &r)| to_i16(0.5 * (l + r))).collect()
    } else {
        left.iter().zip(&right).flat_map(|(&l, &r)| [to_i16(l), to_i16(r)]).collect()
    })
}

/// A canonical 44-byte-header PCM WAV file of interleaved samples in `format`.
pub fn wav_bytes(samples: &[i16], format: WavFormat) -> Vec<u8> {
    let (rate, channels) = (format.rate_hz, format.channels);
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes()); // bytes per second
    out.extend_from_slice(&(2 * channels).to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

pub fn write_wav(perf: &Performance, soundfont: &Arc<SoundFont>, out: &Path) -> Result<()> {
    write_wav_as(perf, soundfont, out, WavFormat::CD)
}

pub fn write_wav_as(perf: &Performance, soundfont: &Arc<SoundFont>, out: &Path, format: WavFormat) -> Result<()> {
    let samples = synthesize(perf, soundfont, format)?;
    write_atomic(out, &wav_bytes(&samples, format)).with_context(|| format!("{}: cannot write", out.display()))
}

/// A piano roll: time in seconds across, pitch up; the primer (if any) in
/// grey-blue before `split_s`, the continuation in orange; opacity follows velocity.
pub fn write_piano_roll(perf: &Performance, split_s: Option<f64>, title: &str, out: &Path) -> Result<()> {
    // The image encoder picks the format from the extension, so the temporary file keeps `.png`.
    let tmp = temp_path(out).with_extension("tmp.png");
    let result = draw_piano_roll(perf, split_s, title, &tmp)
        .map_err(|e| anyhow::anyhow!("{}: cannot draw the piano roll: {e}", out.display()))
        .and_then(|()| std::fs::rename(&tmp, out).with_context(|| format!("{}: cannot write", out.display())));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn draw_piano_roll(
    perf: &Performance,
    split_s: Option<f64>,
    title: &str,
    path: &Path,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let end_s = perf.duration_s().max(1.0);
    let (lo, hi) = perf.notes.iter().fold((127u8, 0u8), |(lo, hi), n| (lo.min(n.pitch), hi.max(n.pitch)));
    let (lo, hi) = if lo > hi { (48, 84) } else { (lo.saturating_sub(2), (hi + 2).min(127)) };
    let root = BitMapBackend::new(path, (1600, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..end_s, f64::from(lo)..f64::from(hi) + 1.0)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("MIDI pitch")
        .y_label_formatter(&|y| format!("{}", *y as i64))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    // Octave lines at each C.
    for c in (0..=127u8).filter(|p| p % 12 == 0 && *p >= lo && *p <= hi) {
        chart.draw_series(LineSeries::new([(0.0, f64::from(c)), (end_s, f64::from(c))], BLACK.mix(0.15)))?;
    }
    if let Some(s) = split_s {
        chart.draw_series(LineSeries::new([(s, f64::from(lo)), (s, f64::from(hi) + 1.0)], BLACK.stroke_width(2)))?;
    }
    let primer_colour = RGBColor(70, 110, 170);
    let cont_colour = RGBColor(230, 120, 20);
    chart.draw_series(perf.notes.iter().map(|n| {
        let colour = if split_s.is_some_and(|s| n.start_s < s) { primer_colour } else { cont_colour };
        let alpha = 0.35 + 0.65 * f64::from(n.velocity) / 127.0;
        let y = f64::from(n.pitch);
        Rectangle::new([(n.start_s, y + 0.1), (n.end_s, y + 0.9)], colour.mix(alpha).filled())
    }))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadenza_core::Note;

    #[test]
    fn wav_header_matches_the_data() {
        let bytes = wav_bytes(&[0, 1, -1, 2], WavFormat::CD);
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize, bytes.len() - 8);
        assert_eq!(u32::from_le_bytes([bytes[40], bytes[41], bytes[42], bytes[43]]), 8);
        assert_eq!(bytes.len(), 44 + 8);
    }

    #[test]
    fn compact_wav_is_mono_at_half_rate() {
        let bytes = wav_bytes(&[0, 1, -1], WavFormat::COMPACT);
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        assert_eq!((u16_at(22), u32_at(24), u32_at(28), u16_at(32)), (1, 22_050, 44_100, 2));
        assert_eq!(bytes.len(), 44 + 6);
    }

    #[test]
    fn piano_renders_sound_where_the_notes_are() -> Result<()> {
        let Ok(sf) = general_midi_soundfont(None) else {
            eprintln!("skipped: no General MIDI soundfont installed");
            return Ok(());
        };
        let sf = load_soundfont(&sf)?;
        let perf = Performance::new(vec![Note { pitch: 60, velocity: 100, start_s: 0.5, end_s: 1.0 }]);
        let s = synthesize(&perf, &sf, WavFormat::CD)?;
        let rate = SAMPLE_RATE_HZ as usize;
        let energy = |a: usize, b: usize| s[a * 2..b * 2].iter().map(|&x| f64::from(x).abs()).sum::<f64>();
        assert_eq!(energy(0, rate / 2), 0.0, "silence before the note");
        assert!(energy(rate / 2, rate) > 1e5, "the note sounds");
        assert_eq!(s.len(), ((1.0 + TAIL_S) * rate as f64).ceil() as usize * 2);
        Ok(())
    }
}
