//! `cadenza-standalone`: Cadenza without a DAW, on JACK (or ALSA), with its
//! editor in a window. nice-plug's standalone flags apply (`--help`), plus:
//!
//! - `--answer`: start in call-and-response mode (Cadenza answers every phrase
//!   you play once you pause for a bar), since a standalone has no host to
//!   automate the Generate parameter.

use std::sync::atomic::Ordering;

use cadenza_plugin::params::ANSWER_BY_DEFAULT;
use cadenza_plugin::Cadenza;

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--answer") {
        args.remove(i);
        ANSWER_BY_DEFAULT.store(true, Ordering::Relaxed);
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("Cadenza standalone. Extra flag: --answer (answer each phrase after a bar of silence).\n");
    }
    if !nice_plug::prelude::nice_export_standalone_with_args::<Cadenza, _>(args) {
        std::process::exit(1);
    }
}
