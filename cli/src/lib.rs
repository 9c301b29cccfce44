//! The `cadenza` command users install (`cargo install --path cli`):
//! generate, render, roundtrip, export and train. Each subcommand is a
//! module with its flags (`Args`) and a `run` function; `cargo xtask` calls
//! the same functions, so the repository's front door and the installed
//! command behave alike.
//!
//! Nothing here needs the checkout or libtorch: styles are found with
//! [`cadenza_core::locate`] (the user's style folder first, then the shipped
//! models), ONNX Runtime with [`tools::ort_library`], and training runs in
//! the separate `cadenza-train` program ([`tools::sibling_program`]).

pub mod export;
pub mod generate;
pub mod render;
pub mod roundtrip;
pub mod tools;
pub mod train;
