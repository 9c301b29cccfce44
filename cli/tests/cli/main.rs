//! The installed `cadenza` command as a musician runs it (the real binary):
//! one test binary, one module per topic.

mod generate;
mod styles;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A shipped file under the checkout's `models/`.
fn shipped(name: &str) -> PathBuf {
    cadenza_core::locate::checkout().expect("tests run in the checkout").join("models").join(name)
}

/// `cadenza ARGS` in `cwd`, with `data` as the user's data folder.
fn cadenza(cwd: &Path, data: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cadenza"));
    cmd.env("XDG_DATA_HOME", data);
    run(cmd.current_dir(cwd).args(args))
}

/// Run a prepared `cadenza` command; whatever it does, it must not panic.
fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("cadenza runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "the command panicked:\n{stderr}");
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
