//! The preview piano: renders what Cadenza sends out with a General MIDI
//! soundfont (rustysynth), so the result is heard even in a DAW that does not
//! route a plugin's MIDI output. The session thread loads the soundfont and
//! builds the synthesizer; the audio thread only plays it.

use std::path::Path;
use std::sync::Arc;

use rustysynth::{SoundFont, Synthesizer, SynthesizerSettings};

use crate::playback::OutEvent;

/// Voices the preview synthesizer keeps.
const MAX_PREVIEW_VOICES: usize = 64;

/// Why the preview piano could not start.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("{}: cannot open the soundfont: {source}", path.display())]
    Open { path: std::path::PathBuf, source: std::io::Error },
    #[error("{}: not a usable soundfont: {message}", path.display())]
    Parse { path: std::path::PathBuf, message: String },
    #[error("the preview piano cannot run at {0} Hz")]
    SampleRate(f32),
}

/// A ready synthesizer at one sample rate.
pub struct PreviewSynth {
    synth: Synthesizer,
    /// The sample rate it was built for.
    pub sample_rate: f32,
}

impl std::fmt::Debug for PreviewSynth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviewSynth").field("sample_rate", &self.sample_rate).finish()
    }
}

impl PreviewSynth {
    /// Load `path` (slow: reads the whole soundfont) and build a synthesizer for `sample_rate`.
    pub fn load(path: &Path, sample_rate: f32) -> Result<Box<Self>, PreviewError> {
        let file = std::fs::File::open(path).map_err(|source| PreviewError::Open { path: path.into(), source })?;
        let mut reader = std::io::BufReader::new(file);
        let font = SoundFont::new(&mut reader)
            .map_err(|e| PreviewError::Parse { path: path.into(), message: e.to_string() })?;
        let mut settings = SynthesizerSettings::new(sample_rate.round() as i32);
        settings.maximum_polyphony = MAX_PREVIEW_VOICES;
        settings.enable_reverb_and_chorus = true;
        let synth = Synthesizer::new(&Arc::new(font), &settings).map_err(|_| PreviewError::SampleRate(sample_rate))?;
        Ok(Box::new(Self { synth, sample_rate }))
    }

    /// Silence every voice at once (transport jumps, preview switched off).
    pub fn panic(&mut self) {
        self.synth.note_off_all(true);
    }

    /// Render one block into `left`/`right` (added to what is there), playing `events`
    /// (sorted by timing) at their sample offsets. No allocation.
    pub fn render(&mut self, events: &[OutEvent], left: &mut [f32], right: &mut [f32], gain: f32) {
        let len = left.len().min(right.len());
        let mut pos = 0usize;
        let mut next = 0usize;
        while pos < len {
            while next < events.len() && (events[next].timing as usize) <= pos {
                let e = events[next];
                if e.velocity > 0 {
                    self.synth.note_on(0, i32::from(e.pitch), i32::from(e.velocity));
                } else {
                    self.synth.note_off(0, i32::from(e.pitch));
                }
                next += 1;
            }
            let until = events.get(next).map_or(len, |e| (e.timing as usize).clamp(pos + 1, len));
            let (l, r) = (&mut left[pos..until], &mut right[pos..until]);
            // Render into the output then scale: the synthesizer overwrites, so mix by hand.
            mix_render(&mut self.synth, l, r, gain);
            pos = until;
        }
    }
}

/// Render into scratch space on the stack in chunks and add to the output.
fn mix_render(synth: &mut Synthesizer, left: &mut [f32], right: &mut [f32], gain: f32) {
    const CHUNK: usize = 256;
    let mut l = [0f32; CHUNK];
    let mut r = [0f32; CHUNK];
    let mut done = 0;
    while done < left.len() {
        let n = (left.len() - done).min(CHUNK);
        synth.render(&mut l[..n], &mut r[..n]);
        for i in 0..n {
            left[done + i] += l[i] * gain;
            right[done + i] += r[i] * gain;
        }
        done += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_soundfont_is_an_error_naming_the_file() {
        let err = PreviewSynth::load(Path::new("/nonexistent/piano.sf2"), 48_000.0).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/piano.sf2"), "{err}");
    }

    #[test]
    fn a_found_soundfont_plays_a_note() {
        // Real soundfont from the system (Debian fluid-soundfont-gm); skip quietly if none is installed.
        let Some(path) = crate::locate::find_soundfonts().into_iter().next() else {
            eprintln!("no soundfont installed; preview test skipped");
            return;
        };
        let mut synth = PreviewSynth::load(&path, 48_000.0).expect("load");
        let mut left = vec![0f32; 4800];
        let mut right = vec![0f32; 4800];
        let on = [OutEvent { timing: 100, channel: 0, pitch: 60, velocity: 100 }];
        synth.render(&on, &mut left, &mut right, 1.0);
        assert!(left[..100].iter().all(|s| s.abs() < 1e-6), "silent before the note");
        let peak = left.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!(peak > 1e-3, "the note sounds (peak {peak})");
    }
}
