//! What the audio thread, the session thread and the editor share: atomics
//! only on the audio side (the audio thread never waits on anyone), plus the
//! editor's view, a snapshot the session thread publishes by swapping one
//! `Arc` (the audio thread never touches it).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::view::View;

/// An `f64` in an `AtomicU64`.
#[derive(Debug, Default)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub fn new(v: f64) -> Self {
        Self(AtomicU64::new(v.to_bits()))
    }
    pub fn load(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Acquire))
    }
    pub fn store(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Release);
    }
}

/// A counter one side bumps and the other side compares with what it saw last:
/// a request that cannot be lost or seen twice, without a queue.
#[derive(Debug, Default)]
pub struct Requests(AtomicU32);

impl Requests {
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
    /// True if requests arrived since `seen`, which is updated.
    pub fn take(&self, seen: &mut u32) -> bool {
        let now = self.0.load(Ordering::Acquire);
        let fresh = now != *seen;
        *seen = now;
        fresh
    }
    pub fn current(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

/// The audio thread's latest clock, for capture and the editor's playhead.
#[derive(Debug)]
pub struct ClockInfo {
    pub now_beats: AtomicF64,
    pub epoch: AtomicU32,
    pub tempo_bpm: AtomicF64,
    pub bar_len_beats: AtomicF64,
    pub bar_origin_beats: AtomicF64,
    /// Time signature as `numerator << 8 | denominator`.
    pub time_sig: AtomicU32,
    pub host_playing: AtomicBool,
    /// Sample rate of the running processor (0 before activation).
    pub sample_rate: AtomicF64,
    /// The host renders faster than real time (an offline bounce): the start of a chosen
    /// variation is not played ahead of the rest of it, which the playhead could overtake.
    pub offline: AtomicBool,
}

impl Default for ClockInfo {
    fn default() -> Self {
        Self {
            now_beats: AtomicF64::new(0.0),
            epoch: AtomicU32::new(0),
            tempo_bpm: AtomicF64::new(crate::clock::DEFAULT_TEMPO_BPM),
            bar_len_beats: AtomicF64::new(4.0),
            bar_origin_beats: AtomicF64::new(0.0),
            time_sig: AtomicU32::new(4 << 8 | 4),
            host_playing: AtomicBool::new(false),
            sample_rate: AtomicF64::new(0.0),
            offline: AtomicBool::new(false),
        }
    }
}

impl ClockInfo {
    pub fn time_signature(&self) -> (u8, u8) {
        let packed = self.time_sig.load(Ordering::Relaxed);
        ((packed >> 8) as u8, packed as u8)
    }
}

/// The player's state, for the editor.
#[derive(Debug, Default)]
pub struct PlayInfo {
    /// [`crate::playback::PlayState`] as a number.
    pub state: AtomicU8,
    /// Beats into the playing variation.
    pub position_beats: AtomicF64,
    /// 0-based index of the variation playing.
    pub variation: AtomicU32,
    /// Serial of the play set the audio thread holds.
    pub serial: AtomicU64,
}

/// Generation progress, written by the inference thread.
#[derive(Debug, Default)]
pub struct Progress {
    pub running: AtomicBool,
    /// 0..=1000.
    pub permille: AtomicU32,
    /// Set by Cancel; the inference thread stops at the next step.
    pub cancel: AtomicBool,
}

#[derive(Debug, Default)]
pub struct Shared {
    pub clock: ClockInfo,
    pub play: PlayInfo,
    pub progress: Progress,
    /// Rising edges of the Generate parameter (audio thread -> session).
    pub generate_requests: Requests,
    /// Play and Stop buttons (editor -> audio thread).
    pub play_requests: Requests,
    pub stop_requests: Requests,
    /// Capture events dropped because the queue was full.
    pub capture_dropped: AtomicU32,
    /// Output events dropped because a block was full.
    pub out_dropped: AtomicU32,
    /// The editor's snapshot of the session.
    pub view: Mutex<Arc<View>>,
    /// Wakes the editor when the view changes (set by the session, read by the editor).
    pub view_serial: AtomicU64,
    /// The open editor's repaint flag (an atomic inside), so a new view is drawn at once.
    pub repaint: Mutex<Option<nice_plug_egui::RepaintNotifier>>,
}

impl Shared {
    pub fn publish(&self, view: View) {
        *self.view.lock() = Arc::new(view);
        self.view_serial.fetch_add(1, Ordering::AcqRel);
        if let Some(notifier) = self.repaint.lock().as_ref() {
            notifier.request_repaint();
        }
    }

    pub fn view(&self) -> Arc<View> {
        self.view.lock().clone()
    }
}
