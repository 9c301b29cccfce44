//! cadenza-core: what the trainer, the engine, the command line and the
//! plugin share. The MIDI reader and writer, the performance-event codec,
//! clips in beats, and the model description; the inference engine, the
//! ONNX exporter, the run records and the training corpus (none of which
//! needs libtorch).

pub mod analysis;
pub mod classifier;
pub mod clip;
pub mod codec;
pub mod compare;
pub mod corpus;
pub mod dataset;
pub mod engine;
pub mod export;
pub mod features;
pub mod follow;
pub mod fsutil;
pub mod join;
pub mod locate;
pub mod midi;
pub mod model;
pub mod performance;
pub mod records;
pub mod report;
pub mod request;
pub mod sampling;
#[cfg(feature = "clap")]
pub mod train_args;

pub use clip::{Clip, ClipNote};
pub use model::ModelConfig;
pub use performance::{Note, Performance};
pub use report::report_error;
