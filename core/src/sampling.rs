//! Choosing the next event from the model's logits: steering (logit masks and
//! biases that keep the music inside a pitch range, a key, a polyphony limit
//! and a note density) and then seeded sampling (temperature, top-k, top-p).
//! The same logits, settings and seed always give the same token.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::codec::{self, END, NOTE_OFF_OFFSET, NOTE_ON_OFFSET, PAD, START, VOCAB_SIZE};
use crate::performance::{PIANO_HIGHEST, PIANO_LOWEST};

/// Largest density bias, in logit units (nats); e^8 is already a 3000x push.
pub const MAX_DENSITY_BIAS: f32 = 8.0;
/// Default longest note, in seconds: longer than any sustained chord a
/// pianist holds in these styles, shorter than the tens of seconds an
/// under-trained model leaves a key down.
pub const DEFAULT_MAX_NOTE_S: f64 = 6.0;
/// Largest [`Steering::max_note_s`] besides 0 (off).
pub const MAX_NOTE_S: f64 = 60.0;
/// Follow strength ([`Steering::follow`]) when nothing else is asked for
/// (chosen by `cargo xtask eval continuation --strengths`; see models/README.md).
pub const DEFAULT_FOLLOW: f32 = 0.7;
/// Default [`Steering::own_voice`]: off. Measured with `cargo xtask eval
/// style` and `cargo xtask eval continuation` (models/README.md has the
/// numbers), 0.5 names more nursery-primed pieces right but costs classical
/// its key grounding and jazz its density on their own primers, the
/// targets continuing a phrase is held to; it is a setting for turning a
/// phrase into another style.
pub const DEFAULT_OWN_VOICE: f32 = 0.0;
/// Smallest [`Steering::max_note_s`] besides 0 (off): a few of the codec's 10 ms steps.
pub const MIN_NOTE_S: f64 = 0.05;

/// How the next token is drawn from the steered distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// Divides the logits: below 1 is safer, above 1 wilder; 0 picks the most likely token.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p (nucleus); 1 keeps all.
    pub top_p: f32,
    /// Seed of the random draws; variation `i` uses stream `i` of this seed.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self { temperature: 1.0, top_k: 0, top_p: 0.95, seed: 0 }
    }
}

impl Sampling {
    pub fn validate(&self) -> Result<(), String> {
        if !self.temperature.is_finite() || self.temperature < 0.0 || self.temperature > 10.0 {
            return Err(format!("temperature {} is outside 0..=10", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top-p {} is outside (0, 1]", self.top_p));
        }
        Ok(())
    }
}

/// Scales a key can restrict note-ons to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScaleMode {
    Major,
    Minor,
    HarmonicMinor,
    MelodicMinor,
    Dorian,
    Phrygian,
    Lydian,
    Mixolydian,
    Locrian,
    MajorPentatonic,
    MinorPentatonic,
    Blues,
    WholeTone,
}

impl ScaleMode {
    pub const ALL: [ScaleMode; 13] = [
        ScaleMode::Major,
        ScaleMode::Minor,
        ScaleMode::HarmonicMinor,
        ScaleMode::MelodicMinor,
        ScaleMode::Dorian,
        ScaleMode::Phrygian,
        ScaleMode::Lydian,
        ScaleMode::Mixolydian,
        ScaleMode::Locrian,
        ScaleMode::MajorPentatonic,
        ScaleMode::MinorPentatonic,
        ScaleMode::Blues,
        ScaleMode::WholeTone,
    ];

    /// Semitones above the tonic.
    pub fn intervals(self) -> &'static [u8] {
        match self {
            ScaleMode::Major => &[0, 2, 4, 5, 7, 9, 11],
            ScaleMode::Minor => &[0, 2, 3, 5, 7, 8, 10],
            ScaleMode::HarmonicMinor => &[0, 2, 3, 5, 7, 8, 11],
            ScaleMode::MelodicMinor => &[0, 2, 3, 5, 7, 9, 11],
            ScaleMode::Dorian => &[0, 2, 3, 5, 7, 9, 10],
            ScaleMode::Phrygian => &[0, 1, 3, 5, 7, 8, 10],
            ScaleMode::Lydian => &[0, 2, 4, 6, 7, 9, 11],
            ScaleMode::Mixolydian => &[0, 2, 4, 5, 7, 9, 10],
            ScaleMode::Locrian => &[0, 1, 3, 5, 6, 8, 10],
            ScaleMode::MajorPentatonic => &[0, 2, 4, 7, 9],
            ScaleMode::MinorPentatonic => &[0, 3, 5, 7, 10],
            ScaleMode::Blues => &[0, 3, 5, 6, 7, 10],
            ScaleMode::WholeTone => &[0, 2, 4, 6, 8, 10],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ScaleMode::Major => "major",
            ScaleMode::Minor => "minor",
            ScaleMode::HarmonicMinor => "harmonic-minor",
            ScaleMode::MelodicMinor => "melodic-minor",
            ScaleMode::Dorian => "dorian",
            ScaleMode::Phrygian => "phrygian",
            ScaleMode::Lydian => "lydian",
            ScaleMode::Mixolydian => "mixolydian",
            ScaleMode::Locrian => "locrian",
            ScaleMode::MajorPentatonic => "major-pentatonic",
            ScaleMode::MinorPentatonic => "minor-pentatonic",
            ScaleMode::Blues => "blues",
            ScaleMode::WholeTone => "whole-tone",
        }
    }
}

const PITCH_CLASS_NAMES: [&str; 12] = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];

/// A tonic pitch class and a scale, e.g. "D dorian".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    /// Pitch class of the tonic, 0 = C .. 11 = B.
    pub tonic: u8,
    pub mode: ScaleMode,
}

impl Key {
    /// Parse "C major", "f# minor", "Bb dorian", "A minor-pentatonic" (also "A minor pentatonic").
    pub fn parse(text: &str) -> Result<Key, String> {
        let mut words = text.split_whitespace();
        let tonic_word = words.next().ok_or_else(|| "empty key; write e.g. \"C major\" or \"A minor\"".to_string())?;
        let mode_word = words.collect::<Vec<_>>().join("-").to_ascii_lowercase();
        let tonic = parse_pitch_class(tonic_word)
            .ok_or_else(|| format!("\"{tonic_word}\" is not a note name (C, C#, Db, D, ..., B)"))?;
        let mode_word = if mode_word.is_empty() { "major".to_string() } else { mode_word };
        let mode = ScaleMode::ALL.iter().copied().find(|m| m.name() == mode_word).ok_or_else(|| {
            let names: Vec<&str> = ScaleMode::ALL.iter().map(|m| m.name()).collect();
            format!("\"{mode_word}\" is not a known scale; use one of {}", names.join(", "))
        })?;
        Ok(Key { tonic, mode })
    }

    pub fn name(&self) -> String {
        format!("{} {}", PITCH_CLASS_NAMES[usize::from(self.tonic % 12)], self.mode.name())
    }

    pub fn contains(&self, pitch: u8) -> bool {
        let offset = (pitch % 12 + 12 - self.tonic % 12) % 12;
        self.mode.intervals().contains(&offset)
    }
}

fn parse_pitch_class(word: &str) -> Option<u8> {
    crate::performance::semitones_above_c(word).map(|pc| pc.rem_euclid(12) as u8)
}

/// log(sum(exp(x))) over the finite entries; `None` when there are none.
pub(crate) fn log_sum_exp(xs: &[f32]) -> Option<f32> {
    let max = xs.iter().copied().filter(|x| x.is_finite()).fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return None;
    }
    let sum: f32 = xs.iter().filter(|x| x.is_finite()).map(|x| (x - max).exp()).sum();
    Some(max + sum.ln())
}

/// Mix two predictions of the next event: `into` becomes
/// `(1 - weight) log p_into + weight log p_other`, a weighted geometric mean
/// of the two distributions (the sampler normalises it again). An event
/// either prediction rules out stays ruled out.
pub fn mix_log_probs(into: &mut [f32], other: &[f32], weight: f32) {
    debug_assert_eq!(into.len(), other.len());
    if weight <= 0.0 {
        return;
    }
    let (Some(a), Some(b)) = (log_sum_exp(into), log_sum_exp(other)) else { return };
    for (x, y) in into.iter_mut().zip(other).filter(|(x, _)| x.is_finite()) {
        *x = (1.0 - weight) * (*x - a) + weight * (y - b);
    }
}

/// Strongest [`Steering::contrast`].
pub const MAX_CONTRAST: f32 = 2.0;
/// The contrast to use when there is a contrast model: over seeds 1-5 of
/// `cargo xtask eval style`, 0.5 named jazz's improvisations right 83 of
/// 100 times against jazz from classical (76 without), electronic's 91
/// against electronic from rock (71); 1.0 fell to 56 and 74.
pub const DEFAULT_CONTRAST: f32 = 0.5;

/// A style another style's model should lean away from by default, and how
/// far: recorded in a checkpoint's sidecar once measured for those weights
/// (`models/checkpoints/STYLE.json`), exported into the model's metadata
/// ([`crate::model::onnx_names::META_CONTRAST_WITH`]) and read back into
/// [`crate::engine::ModelInfo::contrast_advice`]. A checkpoint trained
/// further carries none until it is measured again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContrastAdvice {
    /// The style to lean away from (a model of that name beside this one),
    /// or several joined by [`CONTRAST_STYLES_JOIN`] to lean from at once.
    pub with: String,
    /// [`Steering::contrast`], in (0, [`MAX_CONTRAST`]].
    pub strength: f32,
    /// What the measurement showed, in one sentence.
    #[serde(default)]
    pub measured: String,
    /// The styles to lean away from instead while following a primer, when
    /// they differ from [`ContrastAdvice::with`] (the same syntax): a style is
    /// taken for one style when it improvises and for another when it
    /// continues a phrase (jazz: pop, then rock as well).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub following: Option<String>,
    /// How far it leans while following a primer, when that differs from
    /// [`ContrastAdvice::strength`] (the same range; the primer's foreignness
    /// still scales it, [`PrimerFit::lean`]). The musician's lean scales both
    /// alike ([`ContrastAdvice::following_gain`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub following_strength: Option<f32>,
}

/// The styles `with` names: one, or several joined by [`CONTRAST_STYLES_JOIN`] (`pop+rock`).
pub fn contrast_styles(with: &str) -> impl Iterator<Item = &str> {
    with.split(CONTRAST_STYLES_JOIN).map(str::trim)
}

/// Joins the styles a model leans away from all at once ([`ContrastAdvice::with`]).
pub const CONTRAST_STYLES_JOIN: char = '+';

impl ContrastAdvice {
    /// The styles to lean away from, in order ([`contrast_styles`]).
    pub fn styles(&self) -> impl Iterator<Item = &str> {
        contrast_styles(&self.with)
    }

    /// The styles to lean away from while following a primer.
    pub fn following_styles(&self) -> impl Iterator<Item = &str> {
        contrast_styles(self.following.as_deref().unwrap_or(&self.with))
    }

    /// How many times as far it leans while following a primer as while improvising
    /// ([`ContrastAdvice::following_strength`] over [`ContrastAdvice::strength`]; 1 when unsaid).
    pub fn following_gain(&self) -> f32 {
        self.following_strength.map_or(1.0, |f| f / self.strength)
    }

    /// Style names and strengths Cadenza can use, else what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_' || c == '.');
        for with in std::iter::once(&self.with).chain(&self.following) {
            if !contrast_styles(with).all(name_ok) {
                return Err(format!("`{with}` is not a style name, nor several joined by `{CONTRAST_STYLES_JOIN}`"));
            }
        }
        let in_range = |s: f32| s.is_finite() && s > 0.0 && s <= MAX_CONTRAST;
        if !in_range(self.strength) {
            return Err(format!("contrast {} is outside (0, {MAX_CONTRAST}]", self.strength));
        }
        match self.following_strength {
            Some(f) if !in_range(f) => Err(format!("contrast following a primer {f} is outside (0, {MAX_CONTRAST}]")),
            _ => Ok(()),
        }
    }
}

/// Whether a style leads a primer foreign to it ([`Steering::style_lead`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StyleLead {
    /// Never: the continuation follows the primer's manner, however foreign.
    Off,
    /// As the model's checkpoint advises ([`LeadAdvice`]): by cost where it
    /// was measured to keep its own style's primers; else where the style
    /// judge shipped beside the models names the primer another style
    /// ([`crate::classifier::StyleJudge`]), and never without one.
    #[default]
    Model,
    /// Always, in proportion to how foreign the primer is (by cost or by the judge).
    On,
}

impl StyleLead {
    /// The names [`StyleLead::from_str`] takes, in order.
    pub const NAMES: [&'static str; 3] = ["off", "model", "on"];
}

impl std::fmt::Display for StyleLead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Self::NAMES[*self as usize])
    }
}

impl std::str::FromStr for StyleLead {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "false" | "no" => Ok(StyleLead::Off),
            "model" | "auto" => Ok(StyleLead::Model),
            "on" | "true" | "yes" => Ok(StyleLead::On),
            other => Err(format!("`{other}` is not a style lead: use off, model or on")),
        }
    }
}

/// Sessions saved before [`StyleLead`] recorded a bool (`style_leads_foreign`):
/// true led, false did not.
fn style_lead_from_bool_or_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<StyleLead, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Bool(bool),
        Name(String),
    }
    match Either::deserialize(d)? {
        Either::Bool(b) => Ok(if b { StyleLead::On } else { StyleLead::Off }),
        Either::Name(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// A model that leads foreign primers by default ([`StyleLead::Model`]):
/// recorded in a checkpoint's sidecar once measured for those weights (its
/// own style's held-out primers keep their following with the lead on),
/// exported into the model's metadata
/// ([`crate::model::onnx_names::META_LEADS`]) and read back into
/// [`crate::engine::ModelInfo::lead_advice`]. A checkpoint trained further
/// carries none until it is measured again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadAdvice {
    /// What the measurement showed, in one sentence.
    pub measured: String,
}

impl LeadAdvice {
    /// A sentence Cadenza can store, else what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.measured.trim().is_empty() {
            return Err("its lead advice says nothing of what was measured".into());
        }
        Ok(())
    }
}

/// Strongest [`LeadKeyAdvice::gain`].
pub const MAX_LEAD_KEY_GAIN: f32 = 4.0;

/// How much harder a style holds the primer's key while it leads: the led
/// continuation's own voice reads it without the primer, so the follower's
/// key pulls alone keep the key ([`crate::follow::Follower::with_lead_key_gain`]).
/// Recorded in a checkpoint's sidecar once measured, exported into the
/// model's metadata ([`crate::model::onnx_names::META_LEAD_KEY_GAIN`]) and
/// read back into [`crate::engine::ModelInfo::lead_key_advice`]; without
/// one the key pulls as when following. The key held harder costs some of
/// the style (jazz in a nursery tune's C major is less plainly jazz), so
/// each style's gain is its own measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadKeyAdvice {
    /// The key's pulls times this when the style leads wholly, in [1, [`MAX_LEAD_KEY_GAIN`]].
    pub gain: f32,
    /// What the measurement showed, in one sentence.
    pub measured: String,
}

/// A lead key gain Cadenza can use (in [1, [`MAX_LEAD_KEY_GAIN`]]), else what is wrong.
pub fn check_lead_key_gain(gain: f32) -> Result<(), String> {
    check_lead_factor("lead key gain", gain, MAX_LEAD_KEY_GAIN)
}

/// `value` of the factor `what` if it lies in [1, `max`], else what is wrong.
fn check_lead_factor(what: &str, value: f32, max: f32) -> Result<(), String> {
    if value.is_finite() && (1.0..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("{what} {value} is outside [1, {max}]"))
    }
}

/// A sidecar's lead factor `what` (checked by `check`) with the sentence saying what was measured.
fn validate_lead_factor(
    what: &str,
    value: f32,
    measured: &str,
    check: fn(f32) -> Result<(), String>,
) -> Result<(), String> {
    check(value).map_err(|e| format!("its {e}"))?;
    if measured.trim().is_empty() {
        return Err(format!("its {what} says nothing of what was measured"));
    }
    Ok(())
}

impl LeadKeyAdvice {
    /// A gain and a sentence Cadenza can use, else what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        validate_lead_factor("lead key gain", self.gain, &self.measured, check_lead_key_gain)
    }
}

/// Widest [`LeadRegisterAdvice::spread`].
pub const MAX_LEAD_REGISTER_SPREAD: f32 = 4.0;

/// How much wider a style spreads its parts about the primer's register while it leads: the
/// register's centre holds, its spread is the primer's times this
/// ([`crate::follow::Follower::with_lead_register_spread`]), so rock can put its bass and power
/// chords under a nursery tune. Recorded in a checkpoint's sidecar once measured, exported into
/// the model's metadata ([`crate::model::onnx_names::META_LEAD_REGISTER_SPREAD`]) and read back
/// into [`crate::engine::ModelInfo::lead_register_advice`]; without one the register holds as
/// when following. A wider register moves the continuation's centre from the phrase's (jazz and
/// pop drift to their own low register under a folk tune), so each style's spread is its own
/// measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadRegisterAdvice {
    /// The primer's register spread times this when the style leads wholly, in
    /// [1, [`MAX_LEAD_REGISTER_SPREAD`]].
    pub spread: f32,
    /// What the measurement showed, in one sentence.
    pub measured: String,
}

/// A lead register spread Cadenza can use (in [1, [`MAX_LEAD_REGISTER_SPREAD`]]), else what is wrong.
pub fn check_lead_register_spread(spread: f32) -> Result<(), String> {
    check_lead_factor("lead register spread", spread, MAX_LEAD_REGISTER_SPREAD)
}

impl LeadRegisterAdvice {
    /// A spread and a sentence Cadenza can use, else what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        validate_lead_factor("lead register spread", self.spread, &self.measured, check_lead_register_spread)
    }
}

/// An event the style itself finds this many nats less likely than its
/// likeliest is implausible: contrast may lower it, never raise it (else
/// an event both models all but rule out could win on their ratio).
pub const CONTRAST_PLAUSIBLE_NATS: f32 = 4.6;

/// Lean the style's prediction `into` away from a contrast model's
/// `other`: each event's log-probability `lp` gains `strength (lp - lq)`,
/// where `lq` is the contrast model's (contrastive decoding). An event more
/// than [`CONTRAST_PLAUSIBLE_NATS`] below the style's likeliest only loses.
/// Events `into` rules out stay ruled out; an event `other` rules out is
/// left as the style has it.
pub fn contrast_log_probs(into: &mut [f32], other: &[f32], strength: f32) {
    debug_assert_eq!(into.len(), other.len());
    if strength <= 0.0 {
        return;
    }
    let (Some(a), Some(b)) = (log_sum_exp(into), log_sum_exp(other)) else { return };
    let best = into.iter().copied().fold(f32::NEG_INFINITY, f32::max) - a;
    for (x, y) in into.iter_mut().zip(other).filter(|(x, _)| x.is_finite()) {
        let lp = *x - a;
        let gain = if y.is_finite() { strength * (lp - (y - b)) } else { 0.0 };
        *x = lp + if lp < best - CONTRAST_PLAUSIBLE_NATS { gain.min(0.0) } else { gain };
    }
}

/// Steering beyond temperature: masks and biases applied to the logits
/// before sampling ([`Steering::apply`]), and a longest note the engine
/// enforces by emitting note-offs ([`Steering::max_note_steps`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Steering {
    /// Lowest MIDI pitch a new note may have.
    pub lowest_pitch: u8,
    /// Highest MIDI pitch a new note may have.
    pub highest_pitch: u8,
    /// Only notes of this key and scale start; `None` allows all twelve pitch classes.
    pub key: Option<Key>,
    /// At most this many notes sound at once; `None` is unlimited.
    pub max_polyphony: Option<u8>,
    /// Added to the logit of every note-on, in nats (-8..=8): positive gives
    /// more notes per second, negative fewer.
    pub density_bias: f32,
    /// Whether the model may end the piece early with END; `false` always fills the requested length.
    pub allow_end: bool,
    /// Longest a note may sound, in seconds ([`MIN_NOTE_S`]..=[`MAX_NOTE_S`]);
    /// 0 = no limit. The engine emits the note-off of a note held this long
    /// (shortening a time shift that would carry it further) and feeds it to
    /// the model like a sampled event, so the model's context stays what was played.
    #[serde(default = "default_max_note_s")]
    pub max_note_s: f64,
    /// How strongly the continuation follows the primer's key, register,
    /// density, rhythm and figures, 0 (free) to 1 (strict): soft pulls, see
    /// [`crate::follow`]. The key, pitch range and density above override
    /// the matching pull when set.
    #[serde(default = "default_follow")]
    pub follow: f32,
    /// How much the style's own voice leads a continuation, 0 to 1. The same
    /// model also reads the continuation alone, without the primer, and its
    /// prediction is mixed into the primed one (a weighted geometric mean,
    /// [`mix_log_probs`]): at 0 the primer's context decides alone, as a
    /// model imitates whatever it is shown; at 1 only the continuation's own
    /// past does, and Follow's pulls alone keep it to the primer. Costs a
    /// second model step per event when there is a primer.
    #[serde(default = "default_own_voice")]
    pub own_voice: f32,
    /// Whether the style leads a primer foreign to it: the further the
    /// primer's cost to the model (nats per event) lies above the model's
    /// own validation loss, the more the own voice rises towards 1 and the
    /// less Follow pulls towards the primer's rhythmic feel, density,
    /// figures and dynamics; its key, register and beat pulls stay. A primer
    /// in the model's own style changes nothing. See
    /// [`crate::engine::foreignness`]. By default the model decides
    /// ([`StyleLead::Model`]): a model leads when its checkpoint was measured
    /// to keep following its own style's primers with the lead on
    /// ([`LeadAdvice`]; classical and folk), and not otherwise (jazz, pop
    /// and rock find some of their own real primers foreign; models/README.md).
    #[serde(default, alias = "style_leads_foreign", deserialize_with = "style_lead_from_bool_or_name")]
    pub style_lead: StyleLead,
    /// How far the style leans away from a contrast model, 0 (off) to
    /// [`MAX_CONTRAST`]: when the engine has one ([`crate::engine::Engine::set_contrast`],
    /// usually the style's parent), each event's log-probability gains
    /// `contrast` times the style's log-probability less the contrast
    /// model's ([`contrast_log_probs`]), so what the finetuning taught the
    /// style is said more plainly. With a primer to follow (`follow` above
    /// 0) it leans only as far as the primer is foreign to the style, by the
    /// style judge's ear and, for a style that leads by cost, by its cost
    /// ([`crate::engine::PrimerFit::lean`]): a phrase in the style's own idiom is
    /// followed as it sounds (jazz leaning away from pop held a folk tune's
    /// key at 0.45 grounding against 0.78 without). Costs a step of each
    /// contrast model per event; without a contrast model it changes nothing.
    #[serde(default)]
    pub contrast: f32,
}

fn default_own_voice() -> f32 {
    DEFAULT_OWN_VOICE
}

fn default_follow() -> f32 {
    DEFAULT_FOLLOW
}

fn default_max_note_s() -> f64 {
    DEFAULT_MAX_NOTE_S
}

impl Default for Steering {
    fn default() -> Self {
        Self {
            lowest_pitch: PIANO_LOWEST,
            highest_pitch: PIANO_HIGHEST,
            key: None,
            max_polyphony: None,
            density_bias: 0.0,
            allow_end: true,
            max_note_s: DEFAULT_MAX_NOTE_S,
            follow: DEFAULT_FOLLOW,
            own_voice: DEFAULT_OWN_VOICE,
            style_lead: StyleLead::Model,
            contrast: 0.0,
        }
    }
}

impl Steering {
    pub fn validate(&self) -> Result<(), String> {
        if self.lowest_pitch > self.highest_pitch || self.highest_pitch > 127 {
            return Err(format!(
                "pitch range {}..={} is empty or beyond MIDI's 0..=127",
                self.lowest_pitch, self.highest_pitch
            ));
        }
        if let Some(key) = self.key {
            if !(self.lowest_pitch..=self.highest_pitch).any(|p| key.contains(p)) {
                return Err(format!(
                    "no pitch of {} lies in {}..={}",
                    key.name(),
                    self.lowest_pitch,
                    self.highest_pitch
                ));
            }
        }
        if self.max_polyphony == Some(0) {
            return Err("maximum polyphony 0 would allow no notes".into());
        }
        if !self.density_bias.is_finite() || self.density_bias.abs() > MAX_DENSITY_BIAS {
            return Err(format!(
                "density bias {} is outside -{MAX_DENSITY_BIAS}..={MAX_DENSITY_BIAS}",
                self.density_bias
            ));
        }
        if !(self.max_note_s == 0.0 || (MIN_NOTE_S..=MAX_NOTE_S).contains(&self.max_note_s)) {
            return Err(format!(
                "longest note {} s is outside {MIN_NOTE_S}..={MAX_NOTE_S} s (0 = no limit)",
                self.max_note_s
            ));
        }
        if !(self.follow.is_finite() && (0.0..=1.0).contains(&self.follow)) {
            return Err(format!("follow strength {} is outside 0..=1 (0 = free, 1 = strict)", self.follow));
        }
        if !(self.own_voice.is_finite() && (0.0..=1.0).contains(&self.own_voice)) {
            return Err(format!(
                "own voice {} is outside 0..=1 (0 = the primer's context alone, 1 = the continuation's)",
                self.own_voice
            ));
        }
        if !(self.contrast.is_finite() && (0.0..=MAX_CONTRAST).contains(&self.contrast)) {
            return Err(format!("style contrast {} is outside 0..={MAX_CONTRAST} (0 = off)", self.contrast));
        }
        Ok(())
    }

    /// [`Steering::max_note_s`] in codec steps; `None` when there is no limit.
    pub fn max_note_steps(&self) -> Option<u64> {
        (self.max_note_s > 0.0).then(|| codec::seconds_to_steps(self.max_note_s).max(1))
    }

    /// Mask and bias `logits` (one row of `VOCAB_SIZE`) for the next event,
    /// given which pitches are sounding now. PAD and START never come out of
    /// a generator; a note-off of a silent key is a no-op the codec never
    /// writes, so it is masked too. Time shifts and velocities are never
    /// masked, so at least one token always stays possible.
    pub fn apply(&self, logits: &mut [f32], sounding: &[bool; 128]) {
        debug_assert_eq!(logits.len(), VOCAB_SIZE);
        logits[usize::from(PAD)] = f32::NEG_INFINITY;
        logits[usize::from(START)] = f32::NEG_INFINITY;
        if !self.allow_end {
            logits[usize::from(END)] = f32::NEG_INFINITY;
        }
        let voices = sounding.iter().filter(|s| **s).count();
        let full = self.max_polyphony.is_some_and(|m| voices >= usize::from(m));
        for pitch in 0..128u8 {
            let on = usize::from(NOTE_ON_OFFSET + u16::from(pitch));
            let is_sounding = sounding[usize::from(pitch)];
            let allowed = (self.lowest_pitch..=self.highest_pitch).contains(&pitch)
                && self.key.is_none_or(|k| k.contains(pitch))
                // A re-strike of a sounding key keeps the voice count.
                && (!full || is_sounding);
            if allowed {
                logits[on] += self.density_bias;
            } else {
                logits[on] = f32::NEG_INFINITY;
            }
            if !is_sounding {
                logits[usize::from(NOTE_OFF_OFFSET + u16::from(pitch))] = f32::NEG_INFINITY;
            }
        }
    }
}

/// Draws tokens from logits with its own seeded random stream.
#[derive(Debug, Clone)]
pub struct Sampler {
    rng: ChaCha8Rng,
    /// (logit, token) candidates; kept to avoid an allocation per event.
    scratch: Vec<(f32, u16)>,
    probs: Vec<f64>,
}

impl Sampler {
    /// Stream `stream` of `seed`: variation `i` of a request uses stream `i`.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Self { rng, scratch: Vec::with_capacity(VOCAB_SIZE), probs: Vec::with_capacity(VOCAB_SIZE) }
    }

    /// A token from `logits` (already steered). Tokens at -inf are never chosen;
    /// if every logit is -inf or NaN, a one-step time shift keeps time moving.
    pub fn sample(&mut self, logits: &[f32], s: &Sampling) -> u16 {
        self.scratch.clear();
        self.scratch.extend(logits.iter().enumerate().filter(|(_, l)| l.is_finite()).map(|(t, &l)| (l, t as u16)));
        if self.scratch.is_empty() {
            return codec::Event::TimeShift(1).to_token();
        }
        // Highest logit first; ties by token so the order is total.
        self.scratch.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        if s.temperature <= f32::EPSILON {
            return self.scratch[0].1;
        }
        if s.top_k > 0 {
            self.scratch.truncate(s.top_k);
        }
        let inv_t = 1.0 / f64::from(s.temperature);
        let top = f64::from(self.scratch[0].0) * inv_t;
        self.probs.clear();
        self.probs.extend(self.scratch.iter().map(|(l, _)| (f64::from(*l) * inv_t - top).exp()));
        let total: f64 = self.probs.iter().sum();
        let mut keep = self.probs.len();
        if s.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, p) in self.probs.iter().enumerate() {
                cum += p / total;
                if cum >= f64::from(s.top_p) {
                    keep = i + 1;
                    break;
                }
            }
        }
        let kept: f64 = self.probs[..keep].iter().sum();
        let mut u = self.rng.gen::<f64>() * kept;
        for i in 0..keep {
            u -= self.probs[i];
            if u < 0.0 {
                return self.scratch[i].1;
            }
        }
        self.scratch[keep - 1].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Event, TIME_SHIFT_OFFSET, VELOCITY_OFFSET};

    fn flat() -> Vec<f32> {
        vec![0.0; VOCAB_SIZE]
    }

    #[test]
    fn same_seed_same_tokens_and_streams_differ() {
        let logits: Vec<f32> = (0..VOCAB_SIZE).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let s = Sampling { temperature: 1.0, top_k: 0, top_p: 1.0, seed: 7 };
        let draw = |stream| {
            let mut sm = Sampler::new(7, stream);
            (0..200).map(|_| sm.sample(&logits, &s)).collect::<Vec<_>>()
        };
        assert_eq!(draw(0), draw(0));
        assert_ne!(draw(0), draw(1));
    }

    #[test]
    fn zero_temperature_is_argmax_and_top_k_one_too() {
        let mut l = flat();
        l[42] = 5.0;
        let mut sm = Sampler::new(1, 0);
        assert_eq!(sm.sample(&l, &Sampling { temperature: 0.0, ..Default::default() }), 42);
        for _ in 0..50 {
            assert_eq!(sm.sample(&l, &Sampling { temperature: 2.0, top_k: 1, top_p: 1.0, seed: 0 }), 42);
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Two tokens hold ~99.99% of the mass; top-p 0.9 must never leave them.
        let mut l = vec![-10.0; VOCAB_SIZE];
        l[3] = 5.0;
        l[9] = 4.0;
        let mut sm = Sampler::new(3, 0);
        let s = Sampling { temperature: 1.0, top_k: 0, top_p: 0.9, seed: 3 };
        let mut seen = [0usize; VOCAB_SIZE];
        for _ in 0..2000 {
            seen[usize::from(sm.sample(&l, &s))] += 1;
        }
        assert_eq!(seen[3] + seen[9], 2000);
        // p(3) is about 0.73 < 0.9, so the nucleus holds both tokens.
        assert!(seen[9] > 300, "{}", seen[9]);
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let mut l = vec![f32::NEG_INFINITY; VOCAB_SIZE];
        l[0] = 0.0;
        l[1] = (3.0f32).ln();
        let mut sm = Sampler::new(11, 0);
        let s = Sampling { temperature: 1.0, top_k: 0, top_p: 1.0, seed: 11 };
        let ones = (0..8000).filter(|_| sm.sample(&l, &s) == 1).count();
        assert!((5700..6300).contains(&ones), "{ones} of 8000, expected ~6000");
    }

    #[test]
    fn style_lead_reads_its_names_and_the_bool_sessions_saved_before_it() {
        assert_eq!(Steering::default().style_lead, StyleLead::Model);
        for (i, name) in StyleLead::NAMES.iter().enumerate() {
            let lead: StyleLead = name.parse().expect("a name");
            assert_eq!((lead as usize, lead.to_string().as_str()), (i, *name));
        }
        let refused = "sometimes".parse::<StyleLead>().expect_err("not a lead");
        assert!(refused.contains("`sometimes` is not a style lead"), "{refused}");
        let mut json = serde_json::to_value(Steering::default()).expect("json");
        assert_eq!(json["style_lead"], "model");
        let field = json.as_object_mut().expect("object").remove("style_lead").expect("field");
        for (old, lead) in [(serde_json::json!(true), StyleLead::On), (serde_json::json!(false), StyleLead::Off)] {
            json["style_leads_foreign"] = old;
            assert_eq!(serde_json::from_value::<Steering>(json.clone()).expect("old session").style_lead, lead);
        }
        json.as_object_mut().expect("object").remove("style_leads_foreign");
        json["style_lead"] = field;
        assert_eq!(serde_json::from_value::<Steering>(json).expect("new session"), Steering::default());
        assert!(LeadAdvice { measured: " ".into() }.validate().is_err());
        let key = |gain: f32, measured: &str| LeadKeyAdvice { gain, measured: measured.into() }.validate();
        assert!(key(1.5, "measured").is_ok() && key(MAX_LEAD_KEY_GAIN, "measured").is_ok());
        for gain in [0.5, MAX_LEAD_KEY_GAIN + 0.1, f32::NAN] {
            assert!(key(gain, "measured").is_err(), "{gain}");
        }
        assert!(key(1.5, "").is_err());
        let register =
            |spread: f32, measured: &str| LeadRegisterAdvice { spread, measured: measured.into() }.validate();
        assert!(register(2.0, "measured").is_ok() && register(MAX_LEAD_REGISTER_SPREAD, "measured").is_ok());
        for spread in [0.9, MAX_LEAD_REGISTER_SPREAD + 0.1, f32::INFINITY] {
            assert!(register(spread, "measured").is_err(), "{spread}");
        }
        assert!(register(2.0, " ").is_err());
    }

    #[test]
    fn steering_masks_range_key_polyphony_and_silent_note_offs() {
        let steer = Steering {
            lowest_pitch: 48,
            highest_pitch: 72,
            key: Some(Key::parse("C major").expect("key")),
            max_polyphony: Some(2),
            density_bias: 1.5,
            allow_end: false,
            max_note_s: 4.0,
            follow: 0.0,
            own_voice: 0.0,
            style_lead: StyleLead::Off,
            contrast: 0.0,
        };
        let mut sounding = [false; 128];
        sounding[60] = true;
        let mut l = flat();
        steer.apply(&mut l, &sounding);
        let on = |p: u8| l[usize::from(Event::NoteOn(p).to_token())];
        let off = |p: u8| l[usize::from(Event::NoteOff(p).to_token())];
        assert_eq!(on(62), 1.5); // D, in range and key
        assert_eq!(on(61), f32::NEG_INFINITY); // C# is not in C major
        assert_eq!(on(74), f32::NEG_INFINITY); // above the range
        assert_eq!(off(60), 0.0);
        assert_eq!(off(62), f32::NEG_INFINITY); // not sounding
        assert_eq!(l[usize::from(END)], f32::NEG_INFINITY);
        assert_eq!(l[usize::from(PAD)], f32::NEG_INFINITY);
        assert_eq!(l[usize::from(TIME_SHIFT_OFFSET)], 0.0);
        assert_eq!(l[usize::from(VELOCITY_OFFSET)], 0.0);

        sounding[64] = true; // two voices: only re-strikes may start
        let mut l = flat();
        steer.apply(&mut l, &sounding);
        assert_eq!(l[usize::from(Event::NoteOn(62).to_token())], f32::NEG_INFINITY);
        assert_eq!(l[usize::from(Event::NoteOn(64).to_token())], 1.5);
    }

    #[test]
    fn the_longest_note_is_in_steps_and_reads_from_older_settings() {
        assert_eq!(Steering::default().max_note_steps(), Some(600));
        assert_eq!(Steering { max_note_s: 0.0, ..Default::default() }.max_note_steps(), None);
        // Settings saved before the field existed get the default.
        let mut json = serde_json::to_value(Steering::default()).expect("json");
        json.as_object_mut().expect("object").remove("max_note_s");
        let back: Steering = serde_json::from_value(json).expect("parse");
        assert_eq!(back.max_note_s, DEFAULT_MAX_NOTE_S);
    }

    #[test]
    fn keys_parse_and_contain_their_notes() {
        let k = Key::parse("Bb dorian").expect("parse");
        assert_eq!((k.tonic, k.mode), (10, ScaleMode::Dorian));
        assert_eq!(k.name(), "Bb dorian");
        assert!(Key::parse("A minor pentatonic").expect("parse").contains(69 + 3));
        assert!(!Key::parse("A minor").expect("parse").contains(70));
        assert_eq!(Key::parse("f#").expect("parse"), Key { tonic: 6, mode: ScaleMode::Major });
        assert!(Key::parse("H major").is_err());
        assert!(Key::parse("C lydian-flat").is_err());
    }

    #[test]
    fn invalid_settings_are_refused() {
        assert!(Sampling { top_p: 0.0, ..Default::default() }.validate().is_err());
        assert!(Sampling { temperature: -1.0, ..Default::default() }.validate().is_err());
        assert!(Steering { lowest_pitch: 80, highest_pitch: 70, ..Default::default() }.validate().is_err());
        assert!(Steering { max_polyphony: Some(0), ..Default::default() }.validate().is_err());
        for bad in [-1.0, 0.01, MAX_NOTE_S + 1.0, f64::NAN, f64::INFINITY] {
            assert!(Steering { max_note_s: bad, ..Default::default() }.validate().is_err(), "{bad}");
        }
        for bad in [-0.1, 1.01, f32::NAN] {
            assert!(Steering { follow: bad, ..Default::default() }.validate().is_err(), "{bad}");
            assert!(Steering { own_voice: bad, ..Default::default() }.validate().is_err(), "{bad}");
        }
        for bad in [-0.1, MAX_CONTRAST + 0.1, f32::NAN] {
            assert!(Steering { contrast: bad, ..Default::default() }.validate().is_err(), "{bad}");
        }
        for good in [0.0, MIN_NOTE_S, DEFAULT_MAX_NOTE_S, MAX_NOTE_S] {
            assert!(Steering { max_note_s: good, ..Default::default() }.validate().is_ok(), "{good}");
        }
        let narrow = Steering {
            lowest_pitch: 61,
            highest_pitch: 61,
            key: Some(Key::parse("C major").expect("key")),
            ..Default::default()
        };
        assert!(narrow.validate().is_err());
    }

    /// Probabilities of a row of logits.
    fn probs(logits: &[f32]) -> Vec<f32> {
        let lse = log_sum_exp(logits).expect("finite");
        logits.iter().map(|l| (l - lse).exp()).collect()
    }

    #[test]
    fn mixing_is_a_weighted_geometric_mean() {
        let primed = [2.0f32, 0.0, -1.0, f32::NEG_INFINITY];
        let own = [-1.0f32, 1.0, 3.0, 0.0];
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
        // Weight 0 leaves the primed prediction as it was; 1 gives the other's distribution
        // (except what the primed one rules out).
        let mut m = primed;
        mix_log_probs(&mut m, &own, 0.0);
        assert_eq!(m, primed);
        let mut m = primed;
        mix_log_probs(&mut m, &own, 1.0);
        assert!(close(&probs(&m)[..3], &probs(&own[..3])), "{m:?}");
        assert_eq!(m[3], f32::NEG_INFINITY, "ruled out stays ruled out");
        // Half way: p ~ sqrt(p_primed p_own), so the mixed odds are the geometric mean of both odds.
        let mut m = primed;
        mix_log_probs(&mut m, &own, 0.5);
        let odds = |l: &[f32]| l[0] - l[2];
        assert!((odds(&m) - 0.5 * (odds(&primed) + odds(&own))).abs() < 1e-5);
        assert!(probs(&m)[2] > probs(&primed)[2] && probs(&m)[2] < probs(&own)[2]);
    }

    #[test]
    fn contrast_leans_away_from_the_other_model_among_plausible_events() {
        // The style: events 0-2 plausible, 3 implausible (7 nats below the best), 4 ruled out.
        let style = [0.0f32, -0.5, -1.0, -7.0, f32::NEG_INFINITY];
        let other = [1.0f32, -2.0, -1.0, -12.0, 0.0];
        let odds = |l: &[f32], i: usize, j: usize| l[i] - l[j];
        let mut c = style;
        contrast_log_probs(&mut c, &other, 0.0);
        assert_eq!(c, style, "strength 0 changes nothing");
        // The same distribution shifted: nothing to lean away from.
        let mut c = style;
        contrast_log_probs(&mut c, &style.map(|x| x + 3.0), 1.5);
        assert!(
            (odds(&c, 0, 2) - odds(&style, 0, 2)).abs() < 1e-5 && (odds(&c, 3, 0) - odds(&style, 3, 0)).abs() < 1e-5
        );
        // At strength s each plausible odds ratio grows by s times the style's over the other's.
        let mut c = style;
        contrast_log_probs(&mut c, &other, 0.5);
        let expect = odds(&style, 1, 0) + 0.5 * (odds(&style, 1, 0) - odds(&other, 1, 0));
        assert!((odds(&c, 1, 0) - expect).abs() < 1e-5, "{c:?}");
        assert!(probs(&c[..4])[1] > probs(&style[..4])[1], "the event the other model finds unlikely gains");
        assert!(probs(&c[..4])[0] < probs(&style[..4])[0], "the one it favours loses");
        // The implausible event would gain on the ratio, but keeps its log-probability.
        let lse = |l: &[f32]| log_sum_exp(l).expect("finite");
        assert!(style[3] - lse(&style) > other[3] - lse(&other));
        assert!((c[3] - (style[3] - lse(&style))).abs() < 1e-5, "{c:?}");
        assert_eq!(c[4], f32::NEG_INFINITY, "ruled out stays ruled out");
        // An event the other model rules out keeps the style's log-probability.
        let mut c = style;
        contrast_log_probs(&mut c, &[0.0, -0.5, f32::NEG_INFINITY, -7.0, 0.0], 1.0);
        assert!((c[2] - (style[2] - lse(&style))).abs() < 1e-5, "{c:?}");
    }
}
