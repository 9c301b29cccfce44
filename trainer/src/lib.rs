//! cadenza-trainer: the libtorch Music Transformer, its training loop and
//! checkpoints, and the ONNX exporter the engine's models come from.

pub mod attention;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod export;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod plot;
pub mod train;

pub use checkpoint::{load_checkpoint, LoadedCheckpoint};
pub use model::{MusicTransformer, Precision};
