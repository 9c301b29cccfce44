//! `cargo xtask roundtrip`: forwards to `cadenza roundtrip` (cli/src/roundtrip.rs).

pub use cadenza::roundtrip::{run, Args};
