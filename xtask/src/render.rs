//! `cargo xtask render`, and the rendering `demo` and `samples` use: forwards
//! to the `cadenza` crate's (cli/src/render.rs).

use std::path::{Path, PathBuf};

pub use cadenza::render::*;

/// The soundfont to render with: `explicit`, else the best General MIDI one installed.
pub fn find_soundfont(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    Ok(cadenza_core::locate::general_midi_soundfont(explicit)?)
}
