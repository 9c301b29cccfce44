//! cadenza-trainer: the libtorch Music Transformer, its training loop and
//! checkpoints. The ONNX exporter and the run records (`metrics.csv`,
//! `run.json`, sidecars) live in cadenza-core, which needs no libtorch; they
//! are re-exported here as `export` and `metrics`.

pub mod attention;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub use cadenza_core::corpus as data;
pub mod device;
pub mod model;
pub mod optim;
pub mod plot;
pub mod train;

pub use cadenza_core::export;
pub use cadenza_core::records::metrics;

pub use checkpoint::{load_checkpoint, LoadedCheckpoint};
pub use model::{MusicTransformer, Precision};
