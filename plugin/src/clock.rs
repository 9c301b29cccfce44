//! The musical clock of one process block: where the block starts in beats,
//! how fast beats pass, and where the bar lines are. It follows the host
//! transport while it plays and runs free at the host tempo while it is
//! stopped, so capture and playback work either way. Every jump (transport
//! start or stop, a relocation, a host loop) starts a new epoch, which is how
//! capture and playback tell "time moved on" from "time was moved".

/// Tempo assumed when the host reports none, in beats per minute.
pub const DEFAULT_TEMPO_BPM: f64 = 120.0;
/// Beats of disagreement between the expected and the reported position that
/// count as a jump (hosts round positions; a real relocation is far larger).
const JUMP_TOLERANCE_BEATS: f64 = 1e-3;

/// What the host said about time for one block (a plain copy, so tests can build one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostTime {
    pub playing: bool,
    pub tempo_bpm: Option<f64>,
    pub time_sig: Option<(i32, i32)>,
    pub pos_beats: Option<f64>,
    pub bar_start_beats: Option<f64>,
}

/// The clock of one block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockClock {
    /// Beat position of the block's first sample.
    pub start_beats: f64,
    /// Beats per sample at the current tempo.
    pub beats_per_sample: f64,
    pub tempo_bpm: f64,
    /// Length of a bar in quarter-note beats.
    pub bar_len_beats: f64,
    /// A beat position known to be a bar line (bar lines are this plus multiples of `bar_len_beats`).
    pub bar_origin_beats: f64,
    pub time_sig: (u8, u8),
    /// Whether the host transport drives the clock (false: free-running).
    pub host_playing: bool,
    /// Changes whenever time jumps.
    pub epoch: u32,
    /// True on the first block of a new epoch.
    pub jumped: bool,
}

impl BlockClock {
    /// Beat position of sample `offset` in this block.
    pub fn beats_at(&self, offset: u32) -> f64 {
        self.start_beats + f64::from(offset) * self.beats_per_sample
    }

    /// The first bar line at or after `beats`.
    pub fn next_bar_line(&self, beats: f64) -> f64 {
        let bars = ((beats - self.bar_origin_beats) / self.bar_len_beats - 1e-9).ceil();
        self.bar_origin_beats + bars * self.bar_len_beats
    }

    /// The last bar line at or before `beats`.
    pub fn bar_line_before(&self, beats: f64) -> f64 {
        let bars = ((beats - self.bar_origin_beats) / self.bar_len_beats + 1e-9).floor();
        self.bar_origin_beats + bars * self.bar_len_beats
    }

    /// The sample (relative to the block start, rounded) that `beats` falls on. Every beat
    /// position belongs to exactly one block this way, whatever the rounding of block starts.
    pub fn sample_of(&self, beats: f64) -> f64 {
        ((beats - self.start_beats) / self.beats_per_sample).round()
    }

    /// Sample offset of `beats` inside a block of `len` samples, if it falls there.
    pub fn offset_of(&self, beats: f64, len: u32) -> Option<u32> {
        let s = self.sample_of(beats);
        (s >= 0.0 && s < f64::from(len)).then_some(s as u32)
    }
}

/// The clock's memory between blocks (audio thread only; no allocation).
#[derive(Debug, Clone)]
pub struct Clock {
    free_beats: f64,
    expected_beats: Option<f64>,
    was_playing: bool,
    epoch: u32,
    /// Bar origin of the free-running clock: where it started.
    free_origin_beats: f64,
}

impl Default for Clock {
    fn default() -> Self {
        Self { free_beats: 0.0, expected_beats: None, was_playing: false, epoch: 1, free_origin_beats: 0.0 }
    }
}

impl Clock {
    /// Advance over a block of `len` samples at `sample_rate`.
    pub fn advance(&mut self, host: &HostTime, sample_rate: f64, len: u32) -> BlockClock {
        let tempo_bpm = host.tempo_bpm.filter(|t| t.is_finite() && *t > 0.0).unwrap_or(DEFAULT_TEMPO_BPM);
        let (num, den) = host
            .time_sig
            .filter(|(n, d)| *n > 0 && *d > 0 && *n <= 64 && (*d as u32).is_power_of_two() && *d <= 64)
            .unwrap_or((4, 4));
        let bar_len_beats = f64::from(num) * 4.0 / f64::from(den);
        let beats_per_sample = tempo_bpm / 60.0 / sample_rate.max(1.0);
        let block_beats = beats_per_sample * f64::from(len);
        let host_pos = host.pos_beats.filter(|p| p.is_finite());
        let host_playing = host.playing && host_pos.is_some();

        let mut jumped = false;
        let (start_beats, bar_origin_beats) = if let Some(pos) = host_pos.filter(|_| host_playing) {
            let moved = match self.expected_beats {
                Some(expected) => (pos - expected).abs() > JUMP_TOLERANCE_BEATS.max(beats_per_sample * 2.0),
                None => true,
            };
            if !self.was_playing || moved {
                jumped = true;
            }
            self.expected_beats = Some(pos + block_beats);
            let origin = host.bar_start_beats.filter(|b| b.is_finite()).unwrap_or(0.0);
            (pos, origin)
        } else {
            if self.was_playing {
                // Stopped: run free from where the host left off so the playhead doesn't leap.
                jumped = true;
                self.free_beats = self.expected_beats.unwrap_or(0.0);
                self.free_origin_beats = self.free_beats;
            }
            self.expected_beats = None;
            let start = self.free_beats;
            self.free_beats += block_beats;
            (start, self.free_origin_beats)
        };
        if jumped {
            self.epoch = self.epoch.wrapping_add(1);
        }
        self.was_playing = host_playing;
        BlockClock {
            start_beats,
            beats_per_sample,
            tempo_bpm,
            bar_len_beats,
            bar_origin_beats,
            time_sig: (num as u8, den as u8),
            host_playing,
            epoch: self.epoch,
            jumped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playing_at(pos_beats: f64) -> HostTime {
        HostTime {
            playing: true,
            tempo_bpm: Some(120.0),
            time_sig: Some((4, 4)),
            pos_beats: Some(pos_beats),
            bar_start_beats: Some((pos_beats / 4.0).floor() * 4.0),
        }
    }

    #[test]
    fn follows_the_transport_and_flags_only_real_jumps() {
        let mut clock = Clock::default();
        let sr = 48_000.0;
        let first = clock.advance(&playing_at(0.0), sr, 512);
        assert!(first.jumped, "transport start is a new epoch");
        let step = 512.0 * 2.0 / sr;
        let second = clock.advance(&playing_at(step), sr, 512);
        assert!(!second.jumped);
        assert_eq!(second.epoch, first.epoch);
        let relocated = clock.advance(&playing_at(16.0), sr, 512);
        assert!(relocated.jumped && relocated.epoch != first.epoch);
    }

    #[test]
    fn runs_free_when_stopped_and_continues_from_the_stop_point() {
        let mut clock = Clock::default();
        let sr = 48_000.0;
        clock.advance(&playing_at(8.0), sr, 480);
        let stopped = HostTime { playing: false, ..playing_at(8.0) };
        let a = clock.advance(&stopped, sr, 480);
        assert!(a.jumped && !a.host_playing);
        assert!((a.start_beats - (8.0 + 480.0 * 2.0 / sr)).abs() < 1e-9);
        let b = clock.advance(&stopped, sr, 480);
        assert!(!b.jumped);
        assert!((b.start_beats - a.start_beats - 480.0 * 2.0 / sr).abs() < 1e-9);
        assert_eq!(a.next_bar_line(a.start_beats), a.start_beats, "free clock: a bar starts where it started");
    }

    #[test]
    fn bar_lines_follow_the_metre() {
        let mut clock = Clock::default();
        let host = HostTime { time_sig: Some((3, 4)), bar_start_beats: Some(3.0), ..playing_at(4.0) };
        let c = clock.advance(&host, 44_100.0, 64);
        assert_eq!(c.bar_len_beats, 3.0);
        assert_eq!(c.next_bar_line(4.0), 6.0);
        assert_eq!(c.next_bar_line(6.0), 6.0);
        assert_eq!(c.bar_line_before(5.9), 3.0);
        let six_eight = HostTime { time_sig: Some((6, 8)), ..playing_at(0.0) };
        assert_eq!(clock.advance(&six_eight, 44_100.0, 64).bar_len_beats, 3.0);
    }

    #[test]
    fn offsets_land_inside_the_block() {
        let mut clock = Clock::default();
        let c = clock.advance(&playing_at(1.0), 48_000.0, 512);
        assert_eq!(c.offset_of(1.0, 512), Some(0));
        let beat_at_100 = c.beats_at(100);
        assert_eq!(c.offset_of(beat_at_100, 512), Some(100));
        assert_eq!(c.offset_of(c.beats_at(512), 512), None);
        assert_eq!(c.offset_of(0.5, 512), None);
    }
}
