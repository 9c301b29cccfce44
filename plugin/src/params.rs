//! Cadenza's parameters and persisted fields. The `#[id]` strings are part of
//! every saved project and every automation lane: they never change once
//! shipped. New parameters get new ids; retired ones keep theirs reserved.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nice_plug::plugin::ParamValue;
use nice_plug::prelude::*;

use cadenza_core::request::{GenerationSettings, Length};
use cadenza_core::sampling::{
    Key, Sampling, ScaleMode, Steering, StyleLead, DEFAULT_CONTRAST, MAX_CONTRAST, MAX_NOTE_S, MIN_NOTE_S,
};

use crate::state::SessionSlot;

pub use cadenza_core::performance::{note_name, parse_note_name};

/// Most variations one generation produces (and the `choice` parameter's top): the engine's limit.
pub use cadenza_core::request::MAX_VARIATIONS;
/// Variations one press makes by default: enough to choose from, ready in a quarter second.
pub const DEFAULT_VARIATIONS: i32 = 4;
/// Longest continuation, in bars.
pub const MAX_BARS: i32 = 32;
/// Longest capture window, in bars.
pub const MAX_CAPTURE_BARS: i32 = 16;
/// The name of the parameter that lets a style lead a phrase foreign to it.
pub const STYLE_LEAD_NAME: &str = "Style leads foreign phrases";
/// The id of that parameter; projects saved before it had three choices hold a bool there.
pub const STYLE_LEAD_ID: &str = "stylelead";
/// The `answer` parameter's default for instances created from now on: the
/// standalone's `--answer` flag sets it (a host never does).
pub static ANSWER_BY_DEFAULT: AtomicBool = AtomicBool::new(false);
/// The "Longest note" parameter's value as the engine's `max_note_s`: 0
/// (free) below the shortest the engine accepts, else at most its longest.
pub fn max_note_s(value: f32) -> f64 {
    let v = f64::from(value);
    if v < MIN_NOTE_S {
        0.0
    } else {
        v.min(MAX_NOTE_S)
    }
}

/// A number with `digits` decimals that never shows "-0.00": a value that
/// rounds to zero reads as zero, so the text reads back to what it shows.
fn v2s_decimals(digits: usize) -> Arc<dyn Fn(f32) -> String + Send + Sync> {
    Arc::new(move |value| {
        let text = format!("{value:.digits$}");
        match text.strip_prefix('-') {
            Some(rest) if rest.bytes().all(|b| b == b'0' || b == b'.') => rest.to_owned(),
            _ => text,
        }
    })
}

/// A count where 0 means "free" (no limit), shown as the word.
fn count_or_free(count: i32) -> String {
    if count == 0 {
        "free".into()
    } else {
        count.to_string()
    }
}

/// Reads what [`count_or_free`] shows.
fn parse_count_or_free(text: &str) -> Option<i32> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("free") {
        Some(0)
    } else {
        text.parse().ok()
    }
}

/// The keys the pitch parameters offer: the piano's.
const PIANO_KEYS: IntRange = IntRange::Linear {
    min: cadenza_core::performance::PIANO_LOWEST as i32,
    max: cadenza_core::performance::PIANO_HIGHEST as i32,
};

/// Nats of note-on logit bias at density +1.
pub const DENSITY_NATS: f32 = 4.0;
/// Largest seed the parameter offers (seeds are saved with the project).
pub const MAX_SEED: i32 = 999_999;

/// The tonic of the key the engine is steered towards, or none.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTonic {
    #[id = "any"]
    #[name = "Any key"]
    Any,
    #[id = "c"]
    C,
    #[id = "cs"]
    #[name = "C#/Db"]
    CSharp,
    #[id = "d"]
    D,
    #[id = "ds"]
    #[name = "D#/Eb"]
    DSharp,
    #[id = "e"]
    E,
    #[id = "f"]
    F,
    #[id = "fs"]
    #[name = "F#/Gb"]
    FSharp,
    #[id = "g"]
    G,
    #[id = "gs"]
    #[name = "G#/Ab"]
    GSharp,
    #[id = "a"]
    A,
    #[id = "as"]
    #[name = "A#/Bb"]
    ASharp,
    #[id = "b"]
    B,
}

impl KeyTonic {
    /// Pitch class 0 (C) to 11 (B), or `None` for "any key".
    pub fn pitch_class(self) -> Option<u8> {
        match self {
            Self::Any => None,
            other => Some(other.to_index() as u8 - 1),
        }
    }

    /// The display name of pitch class `pc`.
    pub fn name_of(pc: u8) -> &'static str {
        Self::variants()[usize::from(pc % 12) + 1]
    }
}

/// The scale the key steering keeps notes in; one variant per engine [`ScaleMode`], same order.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleKind {
    #[id = "major"]
    Major,
    #[id = "minor"]
    #[name = "Natural minor"]
    Minor,
    #[id = "hminor"]
    #[name = "Harmonic minor"]
    HarmonicMinor,
    #[id = "mminor"]
    #[name = "Melodic minor"]
    MelodicMinor,
    #[id = "dorian"]
    Dorian,
    #[id = "phryg"]
    Phrygian,
    #[id = "lydian"]
    Lydian,
    #[id = "mixo"]
    Mixolydian,
    #[id = "locr"]
    Locrian,
    #[id = "penta"]
    #[name = "Major pentatonic"]
    MajorPentatonic,
    #[id = "mpenta"]
    #[name = "Minor pentatonic"]
    MinorPentatonic,
    #[id = "blues"]
    Blues,
    #[id = "whole"]
    #[name = "Whole tone"]
    WholeTone,
}

impl ScaleKind {
    /// The engine's scale.
    pub fn mode(self) -> ScaleMode {
        ScaleMode::ALL[self.to_index()]
    }
}

/// Whether the style leads a phrase foreign to it ([`StyleLead`]): the host shows these names.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadChoice {
    #[id = "off"]
    #[name = "Off"]
    Off,
    #[id = "model"]
    #[name = "Style's choice"]
    Model,
    #[id = "on"]
    #[name = "On"]
    On,
}

impl From<StyleLead> for LeadChoice {
    fn from(lead: StyleLead) -> Self {
        match lead {
            StyleLead::Off => LeadChoice::Off,
            StyleLead::Model => LeadChoice::Model,
            StyleLead::On => LeadChoice::On,
        }
    }
}

impl From<LeadChoice> for StyleLead {
    fn from(choice: LeadChoice) -> Self {
        match choice {
            LeadChoice::Off => StyleLead::Off,
            LeadChoice::Model => StyleLead::Model,
            LeadChoice::On => StyleLead::On,
        }
    }
}

/// Projects saved while "Style leads" was a checkbox hold a bool: on stays on;
/// off, then the only other choice and the default, becomes the style's choice.
pub fn migrate_style_lead(state: &mut PluginState) {
    if let Some(ParamValue::Bool(on)) = state.params.get(STYLE_LEAD_ID) {
        let id = if *on { "on" } else { "model" };
        state.params.insert(STYLE_LEAD_ID.to_string(), ParamValue::String(id.to_string()));
    }
}

/// The grid that quantize pulls onsets towards.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantizeGrid {
    #[id = "q4"]
    #[name = "1/4"]
    Quarter,
    #[id = "q8"]
    #[name = "1/8"]
    Eighth,
    #[id = "q8t"]
    #[name = "1/8 triplet"]
    EighthTriplet,
    #[id = "q16"]
    #[name = "1/16"]
    Sixteenth,
    #[id = "q16t"]
    #[name = "1/16 triplet"]
    SixteenthTriplet,
}

impl QuantizeGrid {
    /// Grid spacing in quarter-note beats.
    pub fn beats(self) -> f64 {
        match self {
            Self::Quarter => 1.0,
            Self::Eighth => 0.5,
            Self::EighthTriplet => 1.0 / 3.0,
            Self::Sixteenth => 0.25,
            Self::SixteenthTriplet => 1.0 / 6.0,
        }
    }
}

#[derive(Params)]
pub struct CadenzaParams {
    /// The session the musician built: primer, variations, style, folders.
    /// Versioned; see [`crate::state`].
    #[persist = "session"]
    pub session: SessionSlot,

    /// Generate on a rising edge (automatable, so a host can trigger it from a lane or a controller).
    #[id = "gen"]
    pub generate: BoolParam,
    /// Length of each variation, in bars of the host's metre.
    #[id = "bars"]
    pub bars: IntParam,
    /// How many variations one press makes, 1..=8.
    #[id = "vars"]
    pub variations: IntParam,
    /// The variation that plays and exports, 1-based.
    #[id = "choice"]
    pub choice: IntParam,
    /// Sampling temperature: below 1 plays safe, above 1 takes chances.
    #[id = "temp"]
    pub temperature: FloatParam,
    /// Nucleus sampling: keep the most likely events whose probabilities sum to this.
    #[id = "topp"]
    pub top_p: FloatParam,
    /// Random seed; the same seed, primer and settings give the same notes.
    #[id = "seed"]
    pub seed: IntParam,
    /// Lowest MIDI key the continuation may play.
    #[id = "plo"]
    pub pitch_low: IntParam,
    /// Highest MIDI key the continuation may play.
    #[id = "phi"]
    pub pitch_high: IntParam,
    /// Keep notes in this key (with `scale`), or any key.
    #[id = "key"]
    pub key: EnumParam<KeyTonic>,
    #[id = "scale"]
    pub scale: EnumParam<ScaleKind>,
    /// Most notes sounding at once; 0 leaves it to the model.
    #[id = "poly"]
    pub max_polyphony: IntParam,
    /// Note-density bias: below 0 sparser, above 0 busier (x [`DENSITY_NATS`] nats on every note-on).
    #[id = "dens"]
    pub density: FloatParam,
    /// Longest a generated note may sound, in seconds; 0 lets the model hold notes as long as it likes.
    #[id = "maxnote"]
    pub max_note: FloatParam,
    /// How strongly the continuation follows the primer's key, register, density, beat and
    /// figures: 0 (free) to 1 (strict). Key, pitch range and density, when set, win over it.
    #[id = "follow"]
    pub follow: FloatParam,
    /// How much the style's own voice leads a continuation: 0 imitates the primer as it
    /// sounds, 1 hears only what the continuation has played (Follow still keeps key and beat).
    #[id = "ownvoice"]
    pub own_voice: FloatParam,
    /// Let the style lead a phrase foreign to it (a nursery tune continued as jazz): the
    /// further the model finds the phrase from its style, the more its own voice, feel,
    /// figures and density take over; key, register and beat still follow. By default the
    /// style's model decides: classical, folk and electronic lead by their model's cost, jazz, pop
    /// and rock where Cadenza's style judge names the phrase another style.
    #[id = "stylelead"]
    pub style_lead: EnumParam<LeadChoice>,
    /// How far a style leans away from the styles its model names (electronic from rock, jazz from
    /// pop, and from pop and rock on a phrase) or the one the musician chose in the editor
    /// ([`crate::state::LeanFrom`]): what its finetuning taught, said more plainly (on a phrase,
    /// only as far as the phrase is foreign to the style, by the style judge's ear and, for a
    /// style that leads by cost, by its cost). 0 is off; with the model's choice, styles that name none ignore it.
    #[id = "lean"]
    pub lean: FloatParam,

    /// How many of the most recent bars the capture keeps as the primer.
    #[id = "capbar"]
    pub capture_bars: IntParam,
    /// Pass incoming notes through to the MIDI output.
    #[id = "thru"]
    pub pass_through: BoolParam,
    /// MIDI channel (1-16) the generated notes go out on; thru notes keep their own.
    #[id = "outch"]
    pub out_channel: IntParam,
    /// Call and response: generate by itself once the musician pauses for a bar after a phrase.
    #[id = "answer"]
    pub answer: BoolParam,
    /// Start the new variations at the next bar line as soon as they are ready.
    #[id = "auto"]
    pub autoplay: BoolParam,
    /// Loop the chosen variation.
    #[id = "loop"]
    pub looping: BoolParam,
    #[id = "qgrid"]
    pub quantize_grid: EnumParam<QuantizeGrid>,
    /// Quantize strength, 0 (as played) to 1 (on the grid); applies to the primer sent to the model
    /// and to the variations played and exported.
    #[id = "qstr"]
    pub quantize_strength: FloatParam,
    /// Render what Cadenza sends out with the built-in preview piano.
    #[id = "piano"]
    pub preview_piano: BoolParam,
    /// Preview piano level, in decibels.
    #[id = "pgain"]
    pub preview_gain_db: FloatParam,
}

impl CadenzaParams {
    pub fn new(session: SessionSlot) -> Self {
        // The engine's defaults, so the plugin and the command line start from the same music.
        let sampling = Sampling::default();
        let steering = Steering::default();
        Self {
            session,
            generate: BoolParam::new("Generate", false),
            bars: IntParam::new("Bars", 8, IntRange::Linear { min: 1, max: MAX_BARS }).with_unit(" bars"),
            variations: IntParam::new(
                "Variations",
                DEFAULT_VARIATIONS,
                IntRange::Linear { min: 1, max: MAX_VARIATIONS as i32 },
            ),
            choice: IntParam::new("Variation", 1, IntRange::Linear { min: 1, max: MAX_VARIATIONS as i32 }),
            temperature: FloatParam::new(
                "Temperature",
                sampling.temperature,
                FloatRange::Linear { min: 0.1, max: 2.0 },
            )
            .with_step_size(0.01)
            .with_value_to_string(v2s_decimals(2)),
            top_p: FloatParam::new("Top-p", sampling.top_p, FloatRange::Linear { min: 0.05, max: 1.0 })
                .with_step_size(0.01)
                .with_value_to_string(v2s_decimals(2)),
            seed: IntParam::new("Seed", 1, IntRange::Linear { min: 0, max: MAX_SEED }),
            pitch_low: IntParam::new("Lowest key", i32::from(steering.lowest_pitch), PIANO_KEYS)
                .with_value_to_string(Arc::new(|v| note_name(v as u8)))
                .with_string_to_value(Arc::new(parse_note_name)),
            pitch_high: IntParam::new("Highest key", i32::from(steering.highest_pitch), PIANO_KEYS)
                .with_value_to_string(Arc::new(|v| note_name(v as u8)))
                .with_string_to_value(Arc::new(parse_note_name)),
            key: EnumParam::new("Key", KeyTonic::Any),
            scale: EnumParam::new("Scale", ScaleKind::Major),
            max_polyphony: IntParam::new("Max polyphony", 0, IntRange::Linear { min: 0, max: 10 })
                .with_value_to_string(Arc::new(count_or_free))
                .with_string_to_value(Arc::new(parse_count_or_free)),
            density: FloatParam::new("Density", 0.0, FloatRange::Linear { min: -1.0, max: 1.0 })
                .with_step_size(0.05)
                .with_value_to_string(v2s_decimals(2)),
            max_note: FloatParam::new(
                "Longest note",
                steering.max_note_s as f32,
                FloatRange::Skewed { min: 0.0, max: MAX_NOTE_S as f32, factor: FloatRange::skew_factor(-1.5) },
            )
            .with_step_size(0.05)
            .with_value_to_string(Arc::new(|v| if v <= 0.0 { "free".into() } else { format!("{v:.2} s") }))
            .with_string_to_value(Arc::new(|s| {
                let s = s.trim().trim_end_matches('s').trim();
                if s.eq_ignore_ascii_case("free") {
                    Some(0.0)
                } else {
                    s.parse().ok()
                }
            })),
            follow: FloatParam::new("Follow primer", steering.follow, FloatRange::Linear { min: 0.0, max: 1.0 })
                .with_step_size(0.01)
                .with_value_to_string(Arc::new(|v| if v <= 0.0 { "free".into() } else { format!("{:.0}%", v * 100.0) }))
                .with_string_to_value(Arc::new(|s| {
                    let s = s.trim();
                    if s.eq_ignore_ascii_case("free") {
                        return Some(0.0);
                    }
                    s.trim_end_matches('%').trim().parse::<f32>().ok().map(|v| v / 100.0)
                })),
            own_voice: FloatParam::new("Style voice", steering.own_voice, FloatRange::Linear { min: 0.0, max: 1.0 })
                .with_step_size(0.01)
                .with_value_to_string(Arc::new(|v| format!("{:.0}%", v * 100.0)))
                .with_string_to_value(Arc::new(|s| {
                    s.trim().trim_end_matches('%').trim().parse::<f32>().ok().map(|v| v / 100.0)
                })),
            style_lead: EnumParam::new(STYLE_LEAD_NAME, LeadChoice::from(steering.style_lead)),
            lean: FloatParam::new("Lean away", DEFAULT_CONTRAST, FloatRange::Linear { min: 0.0, max: MAX_CONTRAST })
                .with_step_size(0.05)
                .with_value_to_string(Arc::new(|v| if v <= 0.0 { "off".into() } else { format!("{v:.2}") }))
                .with_string_to_value(Arc::new(|s| {
                    let s = s.trim();
                    if s.eq_ignore_ascii_case("off") {
                        Some(0.0)
                    } else {
                        s.parse().ok()
                    }
                })),
            capture_bars: IntParam::new("Capture bars", 4, IntRange::Linear { min: 1, max: MAX_CAPTURE_BARS })
                .with_unit(" bars"),
            pass_through: BoolParam::new("MIDI thru", true),
            out_channel: IntParam::new("Output channel", 1, IntRange::Linear { min: 1, max: 16 })
                .with_value_to_string(Arc::new(|v| format!("ch {v}")))
                .with_string_to_value(Arc::new(|s| s.trim().trim_start_matches("ch").trim().parse().ok())),
            answer: BoolParam::new("Answer when I pause", ANSWER_BY_DEFAULT.load(Ordering::Relaxed)),
            autoplay: BoolParam::new("Auto-play", true),
            looping: BoolParam::new("Loop", false),
            quantize_grid: EnumParam::new("Quantize grid", QuantizeGrid::Sixteenth),
            quantize_strength: FloatParam::new("Quantize", 0.0, FloatRange::Linear { min: 0.0, max: 1.0 })
                .with_unit("%")
                .with_value_to_string(formatters::v2s_f32_percentage(0))
                .with_string_to_value(formatters::s2v_f32_percentage()),
            preview_piano: BoolParam::new("Preview piano", false),
            preview_gain_db: FloatParam::new("Preview level", -6.0, FloatRange::Linear { min: -40.0, max: 6.0 })
                .with_unit(" dB")
                .with_step_size(0.5)
                .with_value_to_string(v2s_decimals(1)),
        }
    }

    /// The longest note steering enforces, in seconds: 0 (free) below the
    /// shortest the engine accepts, else within the engine's range.
    pub fn max_note_s(&self) -> f64 {
        max_note_s(self.max_note.value())
    }

    /// The key steering asks for, or `None` for any key.
    pub fn steering_key(&self) -> Option<Key> {
        self.key.value().pitch_class().map(|tonic| Key { tonic, mode: self.scale.value().mode() })
    }

    /// What the engine is asked now, for continuations `length` long. The
    /// musician asked for so many bars, so the model may not end early.
    pub fn generation_settings(&self, length: Length) -> GenerationSettings {
        let (a, b) = (self.pitch_low.value().clamp(0, 127) as u8, self.pitch_high.value().clamp(0, 127) as u8);
        let poly = self.max_polyphony.value().clamp(0, i32::from(u8::MAX)) as u8;
        GenerationSettings {
            length,
            variations: self.variations.value().clamp(1, MAX_VARIATIONS as i32) as usize,
            sampling: Sampling {
                temperature: self.temperature.value(),
                top_p: self.top_p.value(),
                seed: self.seed.value().max(0) as u64,
                ..Sampling::default()
            },
            steering: Steering {
                lowest_pitch: a.min(b),
                highest_pitch: a.max(b),
                key: self.steering_key(),
                max_polyphony: (poly > 0).then_some(poly),
                density_bias: self.density.value() * DENSITY_NATS,
                allow_end: false,
                max_note_s: self.max_note_s(),
                follow: self.follow.value().clamp(0.0, 1.0),
                own_voice: self.own_voice.value().clamp(0.0, 1.0),
                style_lead: self.style_lead.value().into(),
                // Only a style whose model names one leans (the inference thread loads it).
                contrast: self.lean.value().clamp(0.0, MAX_CONTRAST),
            },
        }
    }

    /// The grid and strength quantize uses now, or `None` when it is off.
    pub fn quantize(&self) -> Option<(f64, f64)> {
        let strength = f64::from(self.quantize_strength.value());
        (strength > 0.0).then(|| (self.quantize_grid.value().beats(), strength))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadenza_core::sampling::DEFAULT_MAX_NOTE_S;

    #[test]
    fn key_tonics_map_to_pitch_classes() {
        assert_eq!(KeyTonic::Any.pitch_class(), None);
        assert_eq!(KeyTonic::C.pitch_class(), Some(0));
        assert_eq!(KeyTonic::B.pitch_class(), Some(11));
        assert_eq!(KeyTonic::name_of(9), "A");
    }

    #[test]
    fn every_scale_maps_to_the_engine_scale_of_the_same_name() {
        assert_eq!(ScaleKind::variants().len(), ScaleMode::ALL.len());
        for (i, mode) in ScaleMode::ALL.iter().enumerate() {
            let ours = ScaleKind::from_index(i);
            assert_eq!(ours.mode(), *mode);
            let words = ScaleKind::variants()[i].to_ascii_lowercase().replace(' ', "-").replace("natural-", "");
            assert_eq!(words, mode.name());
        }
    }

    #[test]
    fn numbers_that_round_to_zero_show_as_zero() {
        let two = v2s_decimals(2);
        assert_eq!(
            (two(-0.004), two(-0.0), two(-0.006), two(0.004)),
            ("0.00".into(), "0.00".into(), "-0.01".into(), "0.00".into())
        );
        assert_eq!(v2s_decimals(1)(-40.0), "-40.0");
        assert_eq!(parse_count_or_free(&count_or_free(0)), Some(0));
        assert_eq!(parse_count_or_free(" 3 "), Some(3));
    }

    #[test]
    fn a_projects_style_lead_checkbox_becomes_a_choice() {
        let state = |value: Option<ParamValue>| PluginState {
            version: String::new(),
            params: value.map(|v| (STYLE_LEAD_ID.to_string(), v)).into_iter().collect(),
            fields: Default::default(),
        };
        let migrated = |value| {
            let mut s = state(value);
            migrate_style_lead(&mut s);
            match s.params.get(STYLE_LEAD_ID) {
                Some(ParamValue::String(id)) => Some(id.clone()),
                Some(other) => panic!("not an enum id: {other:?}"),
                None => None,
            }
        };
        assert_eq!(migrated(Some(ParamValue::Bool(true))).as_deref(), Some("on"));
        assert_eq!(migrated(Some(ParamValue::Bool(false))).as_deref(), Some("model"));
        assert_eq!(migrated(Some(ParamValue::String("off".into()))).as_deref(), Some("off"), "a choice stays");
        assert_eq!(migrated(None), None);
        // The ids are the enum's, and each choice is the engine's.
        let p = CadenzaParams::new(SessionSlot::default());
        assert_eq!(p.style_lead.value(), LeadChoice::Model);
        assert_eq!(p.generation_settings(Length::Seconds(4.0)).steering.style_lead, StyleLead::Model);
        assert_eq!(LeadChoice::ids(), Some(&StyleLead::NAMES[..]));
        for (i, lead) in [StyleLead::Off, StyleLead::Model, StyleLead::On].into_iter().enumerate() {
            assert_eq!((LeadChoice::from(lead).to_index(), StyleLead::from(LeadChoice::from_index(i))), (i, lead));
        }
    }

    #[test]
    fn longest_note_maps_to_the_engines_range_with_zero_for_free() {
        assert_eq!(max_note_s(0.0), 0.0);
        assert_eq!(max_note_s(0.01), 0.0, "below the engine's shortest note is free, not an error");
        assert_eq!(max_note_s(DEFAULT_MAX_NOTE_S as f32), DEFAULT_MAX_NOTE_S);
        assert_eq!(max_note_s(1000.0), MAX_NOTE_S);
        let p = CadenzaParams::new(SessionSlot::default());
        assert_eq!(p.max_note_s(), DEFAULT_MAX_NOTE_S, "the default is the engine's default");
        let s = p.generation_settings(Length::Seconds(4.0));
        let engine = Steering::default();
        assert_eq!(
            (s.steering.max_note_s, s.steering.follow, s.steering.own_voice, s.steering.style_lead),
            (engine.max_note_s, engine.follow, engine.own_voice, engine.style_lead)
        );
        assert_eq!(s.sampling, Sampling { seed: 1, ..Sampling::default() }, "the seed parameter starts at 1");
        assert!(s.validate().is_ok());
        let steering = cadenza_core::sampling::Steering { max_note_s: max_note_s(0.3), ..Default::default() };
        assert!(steering.validate().is_ok());
    }
}
