//! Cadenza as a CLAP and VST3 plugin: it hears what is played on its track,
//! continues it in a chosen style, plays the continuation in time with the
//! host, and hands it back as a MIDI clip.
//!
//! Threads: the audio thread (`process`) only captures, schedules and renders,
//! without allocating, locking or touching files; the session thread
//! ([`session`]) owns the musician's session; the inference thread
//! ([`generator`]) runs the model; the editor ([`editor`]) draws a snapshot
//! and sends commands. The two worker threads start when the host activates
//! the instance or the editor opens, never for an instance a host only scans,
//! and end with the instance. The plugin never panics into the host: every failure
//! becomes a status line in words, and notes keep passing through.

pub mod capture;
pub mod clock;
pub mod editor;
pub mod generator;
pub mod keep;
pub mod locate;
pub mod params;
pub mod playback;
pub mod preview;
pub mod session;
pub mod settings;
pub mod shared;
pub mod state;
pub mod view;

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use nice_plug::midi::{Channel, Key, VoiceID};
use nice_plug::prelude::*;
use nice_plug_egui::EguiEditorState;

use crate::capture::CaptureEvent;
use crate::clock::{Clock, HostTime};
use crate::params::CadenzaParams;
use crate::playback::{OutBuffer, OutEvent, Player};
use crate::preview::PreviewSynth;
use crate::session::{AudioPorts, Workers};
use crate::shared::Shared;
use crate::state::SessionSlot;

/// The plugin instance.
pub struct Cadenza {
    params: Arc<CadenzaParams>,
    shared: Arc<Shared>,
    /// The session and inference threads, started at [`Plugin::activate`] or when the editor opens.
    workers: Arc<Workers>,
    editor_state: Arc<EguiEditorState>,

    // Audio thread only below: all allocated before the first `process` call.
    audio: AudioPorts,
    clock: Clock,
    player: Player,
    out: OutBuffer,
    synth: Option<Box<PreviewSynth>>,
    sample_rate: f64,
    /// The Generate parameter's value in the previous block (for its rising edge).
    generate_was_on: bool,
    /// Project loads seen: a load sets Generate as it was saved, which is no press.
    seen_restores: u64,
    seen_play: u32,
    seen_stop: u32,
    /// Whether the preview piano was rendering in the previous block.
    preview_was_on: bool,
}

/// Made for every instance a host creates, scans included: no thread starts here.
impl Default for Cadenza {
    fn default() -> Self {
        let params = Arc::new(CadenzaParams::new(SessionSlot::default()));
        let shared = Arc::new(Shared::default());
        let (session_ports, audio) = session::ports();
        let workers = Arc::new(Workers::new(params.clone(), shared.clone(), session_ports));
        Self {
            params,
            shared: shared.clone(),
            workers,
            editor_state: editor::default_state(),
            audio,
            clock: Clock::default(),
            player: Player::default(),
            out: OutBuffer::default(),
            synth: None,
            sample_rate: 48_000.0,
            generate_was_on: false,
            seen_restores: 0,
            seen_play: shared.play_requests.current(),
            seen_stop: shared.stop_requests.current(),
            preview_was_on: false,
        }
    }
}

impl Drop for Cadenza {
    fn drop(&mut self) {
        // The editor may hold the workers too; the threads still end with the instance.
        self.workers.stop();
    }
}

impl Cadenza {
    fn capture(&mut self, clock: &clock::BlockClock, timing: u32, pitch: u8, velocity: u8) {
        let ev = CaptureEvent {
            epoch: clock.epoch,
            beats: clock.beats_at(timing),
            bar_origin_beats: clock.bar_origin_beats,
            bar_len_beats: clock.bar_len_beats,
            pitch,
            velocity,
        };
        if self.audio.capture_tx.push(ev).is_err() {
            self.shared.capture_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn publish_clock(&self, clock: &clock::BlockClock, len: u32) {
        let info = &self.shared.clock;
        info.now_beats.store(clock.beats_at(len));
        info.tempo_bpm.store(clock.tempo_bpm);
        info.bar_len_beats.store(clock.bar_len_beats);
        info.bar_origin_beats.store(clock.bar_origin_beats);
        info.time_sig.store(u32::from(clock.time_sig.0) << 8 | u32::from(clock.time_sig.1), Ordering::Relaxed);
        info.host_playing.store(clock.host_playing, Ordering::Release);
        // Epoch last: the session reads it first and the rest belongs to it.
        info.epoch.store(clock.epoch, Ordering::Release);
    }
}

impl Plugin for Cadenza {
    const NAME: &'static str = "Cadenza";
    const VENDOR: &'static str = "Cadenza";
    const URL: &'static str = "https://github.com/cadenza-music/cadenza";
    const EMAIL: &'static str = "cadenza@users.noreply.github.com";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    /// Stereo out for the preview piano; no audio in (a MIDI instrument/effect).
    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[AudioIOLayout {
        main_input_channels: None,
        main_output_channels: NonZeroU32::new(2),
        aux_input_ports: &[],
        aux_output_ports: &[],
        names: PortNames::const_default(),
    }];
    const MIDI_INPUT: MidiConfig = MidiConfig::Basic;
    const MIDI_OUTPUT: MidiConfig = MidiConfig::Basic;
    const SAMPLE_ACCURATE_AUTOMATION: bool = false;

    type Editor = nice_plug_egui::EguiEditor<editor::CadenzaEditor>;
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn filter_state(state: &mut PluginState) {
        params::migrate_style_lead(state);
    }

    fn editor(&mut self, _async_executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        editor::create(self.editor_state.clone(), self.params.clone(), self.shared.clone(), self.workers.clone())
    }

    fn activate(
        &mut self,
        _audio_io_layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        _context: &mut impl ActivateContext<Self>,
    ) -> bool {
        self.sample_rate = f64::from(buffer_config.sample_rate);
        self.shared.clock.sample_rate.store(self.sample_rate);
        let offline = buffer_config.process_mode == ProcessMode::Offline;
        self.shared.clock.offline.store(offline, std::sync::atomic::Ordering::Release);
        // The host means to play: now the session and the model get their threads.
        self.workers.start();
        true
    }

    fn reset(&mut self) {
        self.clock = Clock::default();
        if let Some(synth) = self.synth.as_mut() {
            synth.panic();
        }
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let len = buffer.samples() as u32;
        let t = context.transport();
        let host = HostTime {
            playing: t.playing,
            tempo_bpm: t.tempo,
            time_sig: t.time_sig_numerator.zip(t.time_sig_denominator),
            pos_beats: t.pos_beats(),
            bar_start_beats: t.bar_start_pos_beats(),
        };
        let clock = self.clock.advance(&host, self.sample_rate, len);

        // New material from the session; the old goes back to be reused there.
        while let Ok(set) = self.audio.sets_rx.pop() {
            if let Some(old) = self.player.install(set) {
                if let Err(rtrb::PushError::Full(old)) = self.audio.sets_back_tx.push(old) {
                    // Cannot happen (the return queue holds the whole pool); never free here.
                    std::mem::forget(old);
                }
            }
        }
        while let Ok(synth) = self.audio.synth_rx.pop() {
            if let Some(old) = self.synth.replace(synth) {
                if let Err(rtrb::PushError::Full(old)) = self.audio.synth_back_tx.push(old) {
                    std::mem::forget(old);
                }
            }
        }

        let generate = self.params.generate.value();
        let restores = self.params.session.restores();
        if restores != self.seen_restores {
            // A project saved while Generate was high loads it high: only a change after the load is a press.
            self.seen_restores = restores;
            self.generate_was_on = generate;
        }
        if generate && !self.generate_was_on {
            self.shared.generate_requests.bump();
        }
        self.generate_was_on = generate;

        self.out.clear();
        if self.shared.stop_requests.take(&mut self.seen_stop) {
            self.player.stop(&mut self.out);
        }
        if self.shared.play_requests.take(&mut self.seen_play) {
            self.player.play();
        }

        let thru = self.params.pass_through.value();
        while let Some(event) = context.next_event() {
            match event {
                NoteEvent::NoteOn { timing, channel, key, velocity, .. } => {
                    let Some(pitch) = key.number() else { continue };
                    let vel = ((velocity * 127.0).round() as u8).clamp(1, 127);
                    self.capture(&clock, timing, pitch, vel);
                    if thru {
                        let channel = channel.number().unwrap_or(0);
                        self.out.push(OutEvent { timing, channel, pitch, velocity: vel });
                    }
                }
                NoteEvent::NoteOff { timing, channel, key, .. } => {
                    let Some(pitch) = key.number() else { continue };
                    self.capture(&clock, timing, pitch, 0);
                    if thru {
                        let channel = channel.number().unwrap_or(0);
                        self.out.push(OutEvent { timing, channel, pitch, velocity: 0 });
                    }
                }
                _ => {}
            }
        }

        let variation = (self.params.choice.value().max(1) - 1) as usize;
        self.player.set_channel((self.params.out_channel.value() - 1).clamp(0, 15) as u8);
        self.player.process(&clock, len, variation, self.params.looping.value(), &mut self.out);
        self.out.sort();
        for e in &self.out.events {
            let event = if e.velocity > 0 {
                NoteEvent::NoteOn {
                    timing: e.timing,
                    voice_id: VoiceID::Wildcard,
                    channel: Channel::Number(e.channel),
                    key: Key::Number(e.pitch),
                    velocity: f32::from(e.velocity) / 127.0,
                }
            } else {
                NoteEvent::NoteOff {
                    timing: e.timing,
                    voice_id: VoiceID::Wildcard,
                    channel: Channel::Number(e.channel),
                    key: Key::Number(e.pitch),
                    velocity: 0.0,
                }
            };
            // A full host buffer loses the event; count it rather than stall.
            if context.try_send_event(event).is_err() {
                self.shared.out_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.out.dropped > 0 {
            self.shared.out_dropped.fetch_add(std::mem::take(&mut self.out.dropped), Ordering::Relaxed);
        }

        for channel in buffer.as_slice().iter_mut() {
            channel.fill(0.0);
        }
        let preview = self.params.preview_piano.value();
        if let Some(synth) = self.synth.as_mut() {
            if preview {
                let gain = 10f32.powf(self.params.preview_gain_db.value() / 20.0);
                if let [left, right, ..] = buffer.as_slice() {
                    synth.render(&self.out.events, left, right, gain);
                }
            } else if self.preview_was_on {
                synth.panic();
            }
        }
        self.preview_was_on = preview;

        self.publish_clock(&clock, len);
        let play = &self.shared.play;
        play.state.store(self.player.state() as u8, Ordering::Release);
        play.position_beats.store(self.player.position_beats(clock.beats_at(len)).unwrap_or(0.0));
        play.variation.store(self.player.variation() as u32, Ordering::Release);
        play.serial.store(self.player.serial(), Ordering::Release);
        ProcessStatus::KeepAlive
    }
}

impl ClapPlugin for Cadenza {
    const CLAP_ID: &'static str = "org.cadenza-music.cadenza";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Continues the notes you play in a chosen style, in time with the host");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] =
        &[ClapFeature::NoteEffect, ClapFeature::Instrument, ClapFeature::Synthesizer, ClapFeature::Stereo];
}

impl Vst3Plugin for Cadenza {
    /// Fixed forever: hosts store it in every project.
    const VST3_CLASS_ID: [u8; 16] = *b"CadenzaMidiCont1";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Instrument, Vst3SubCategory::Generator, Vst3SubCategory::Piano];
}

nice_export_clap!(Cadenza);
nice_export_vst3!(Cadenza);
