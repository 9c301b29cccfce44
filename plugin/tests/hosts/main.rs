//! Cadenza as hosts run it: our own CLAP and VST3 host harnesses over the built
//! plugin, Ardour 7 (its VST3 scanner and a headless session) and minihost (a
//! JUCE VST3 host), with real notes, a moving transport and real ONNX Runtime
//! (one `mod` per host).

mod ardour;
mod clap;
mod minihost;
mod vst3;
mod vst3_host;

use cadenza_test_support::{clap_host, hosts as support};
