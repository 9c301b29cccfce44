//! `cargo xtask generate`: forwards to `cadenza generate`
//! (cli/src/generate.rs). [`piece_args`] is the piece `demo` and `samples`
//! make with the shipped styles.

use std::path::Path;

use anyhow::Result;
pub use cadenza::generate::{run, Args};

use crate::env::repo_root;

/// `generate`'s flags, parsed exactly as the command line would.
#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

/// One piece as `demo` and `samples` make it, parsed like the command line
/// (so every other setting is the CLI's default): `seconds` of the shipped
/// `style` (models/STYLE.onnx, never a style of the same name in the user's
/// folder) after the primer (or from nothing), filled to its length (the
/// model may not end it early), written to `dir/NAME.mid` and `dir/NAME.png`,
/// and to `dir/NAME.wav` with `wav`; a primed piece starts with its primer,
/// at the primer's tempo.
pub fn piece_args(
    style: &str,
    dir: &Path,
    name: &str,
    seconds: f64,
    seed: u64,
    primer: Option<&crate::primers::Primer>,
    wav: bool,
) -> Result<Args> {
    let file = |ext: &str| dir.join(format!("{name}.{ext}")).display().to_string();
    let model = repo_root().join("models").join(format!("{style}.onnx")).display().to_string();
    let mut argv: Vec<String> = vec!["generate".into(), "--style".into(), model];
    argv.extend(["--seconds".into(), seconds.to_string(), "--seed".into(), seed.to_string(), "--no-end".into()]);
    argv.extend(["--out".into(), file("mid"), "--png".into(), file("png")]);
    if wav {
        argv.extend(["--wav".into(), file("wav")]);
    }
    if let Some(p) = primer {
        argv.extend(["--primer".into(), p.path().display().to_string(), "--with-primer".into()]);
        argv.extend(["--tempo".into(), p.tempo_bpm.to_string()]);
    }
    Ok(<Cli as clap::Parser>::try_parse_from(&argv)?.args)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The samples and the demo use the shipped model file, never a user's style of the same
    /// name, and a primed piece starts with its primer at the primer's tempo.
    #[test]
    fn a_piece_uses_the_shipped_model_and_its_primer() {
        let primer = &crate::primers::PRIMERS[0];
        let dir = Path::new("/tmp/pieces");
        let a = piece_args("jazz", dir, "jazz-p", 12.0, 7, Some(primer), true).expect("parses");
        assert_eq!(Path::new(&a.style), repo_root().join("models/jazz.onnx"));
        assert_eq!((a.seconds, a.seed, a.no_end, a.with_primer), (12.0, Some(7), true, true));
        assert_eq!((a.tempo, a.primer), (Some(primer.tempo_bpm), Some(primer.path())));
        assert_eq!(a.wav.as_deref(), Some(dir.join("jazz-p.wav").as_path()));
        let free = piece_args("folk", dir, "folk-i", 5.0, 1, None, false).expect("parses");
        assert_eq!((free.primer, free.wav, free.with_primer), (None, None, false));
    }
}
