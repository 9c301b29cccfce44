//! Cadenza as hosts run it: a CLAP host harness over the built plugin, with
//! real notes, a moving transport and real ONNX Runtime (one `mod` per host).

mod clap;
mod clap_host;
mod support;
mod vst3;
mod vst3_host;
