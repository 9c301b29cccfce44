//! One generation request, defined once: what the command line, the plugin's
//! parameters, its saved projects, its inference thread and the engine all
//! pass along. [`GenerationSettings`] is everything the musician chooses
//! (length, variations, sampling, steering, follow strength), with its
//! defaults in one `Default`; [`GenerateRequest`] adds the music it continues.

use serde::{Deserialize, Serialize};

use crate::analysis::{Meter, PrimerAnalysis};
use crate::performance::Performance;
use crate::sampling::{Sampling, Steering};

/// Most variations one request may ask for (the plugin keeps a player for each).
pub const MAX_VARIATIONS: usize = 8;
/// Longest continuation one request may ask for, in seconds.
pub const MAX_SECONDS: f64 = 600.0;
/// Most events one request may ask for (and the cap of a request in seconds).
pub const MAX_EVENTS: usize = 200_000;
/// A request in seconds stops after this many events per requested second,
/// in case a model stops moving time forward.
pub const MAX_EVENTS_PER_SECOND: usize = 400;

/// How much to generate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Length {
    /// Seconds of music after the primer.
    Seconds(f64),
    /// Performance events (notes on and off, time shifts, velocities).
    Events(usize),
}

/// What the musician asks of one generation, apart from the music it continues.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationSettings {
    pub length: Length,
    /// Independent continuations of the same primer, 1..=[`MAX_VARIATIONS`], generated as one batch.
    pub variations: usize,
    pub sampling: Sampling,
    pub steering: Steering,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        Self {
            length: Length::Seconds(30.0),
            variations: 1,
            sampling: Sampling::default(),
            steering: Steering::default(),
        }
    }
}

impl GenerationSettings {
    /// A message naming the first setting out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.variations == 0 || self.variations > MAX_VARIATIONS {
            return Err(format!("{} variations; ask for 1 to {MAX_VARIATIONS}", self.variations));
        }
        match self.length {
            Length::Seconds(s) if !(s.is_finite() && s > 0.0 && s <= MAX_SECONDS) => {
                return Err(format!("{s} seconds; ask for more than 0 and at most {MAX_SECONDS}"))
            }
            Length::Events(n) if n == 0 || n > MAX_EVENTS => {
                return Err(format!("{n} events; ask for 1 to {MAX_EVENTS}"))
            }
            _ => {}
        }
        self.sampling.validate()?;
        self.steering.validate()
    }
}

/// One generation: the settings and the music they continue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerateRequest {
    /// The music to continue; `None` (or a primer without notes) improvises from scratch.
    pub primer: Option<Performance>,
    /// Where the primer ends, in seconds from its start, when that is later
    /// than its last note-off (a captured phrase that ends on a bar line);
    /// `None` ends it at its last event.
    pub primer_end_s: Option<f64>,
    /// The primer's tempo and bar lines, when known (the host's, or the MIDI
    /// file's): following the primer keeps the continuation on its grid.
    pub meter: Option<Meter>,
    pub settings: GenerationSettings,
}

impl GenerateRequest {
    /// Whether the engine would accept this request (it checks again).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(end) = self.primer_end_s {
            if !end.is_finite() || end < 0.0 {
                return Err(format!("primer end {end} s is not a time"));
            }
        }
        if let Some(m) = &self.meter {
            m.validate()?;
        }
        self.settings.validate()
    }

    /// What the primer holds, as following it sees it; `None` without a primer or notes.
    pub fn analysis(&self) -> Option<PrimerAnalysis> {
        PrimerAnalysis::new(self.primer.as_ref()?, self.primer_end_s, self.meter.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_out_of_range_are_refused() {
        let with = |f: &dyn Fn(&mut GenerationSettings)| {
            let mut s = GenerationSettings::default();
            f(&mut s);
            GenerateRequest { settings: s, ..Default::default() }
        };
        let bad = [
            with(&|s| s.variations = 0),
            with(&|s| s.variations = MAX_VARIATIONS + 1),
            with(&|s| s.length = Length::Seconds(f64::NAN)),
            with(&|s| s.length = Length::Events(0)),
            GenerateRequest { primer_end_s: Some(-1.0), ..Default::default() },
            GenerateRequest { meter: Some(Meter::new(0.0)), ..Default::default() },
        ];
        for r in &bad {
            assert!(r.validate().is_err(), "{r:?}");
        }
        assert!(GenerateRequest::default().validate().is_ok());
    }

    #[test]
    fn settings_round_trip_and_fill_missing_fields_with_defaults() {
        let s = GenerationSettings { variations: 3, length: Length::Seconds(12.5), ..Default::default() };
        let back: GenerationSettings = serde_json::from_str(&serde_json::to_string(&s).expect("json")).expect("parse");
        assert_eq!(back, s);
        let partial: GenerationSettings = serde_json::from_str(r#"{"variations": 2}"#).expect("parse");
        assert_eq!(partial, GenerationSettings { variations: 2, ..Default::default() });
        assert!(serde_json::from_str::<GenerationSettings>(r#"{"bars": 2}"#).is_err(), "unknown keys are errors");
    }
}
