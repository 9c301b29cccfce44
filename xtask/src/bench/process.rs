//! The benchmarks' measuring processes (a worker per model, PyTorch, the
//! trainer): each prints its result as one JSON line, read back here.

use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;

/// Run a measuring process and read the last JSON line it prints (its
/// result); its stderr goes into the error when it fails.
pub fn json_line<T: DeserializeOwned>(cmd: &mut Command, what: &str) -> Result<T> {
    let out = cmd.output().with_context(|| format!("cannot start {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("{what} printed no result line:\n{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The result is the last JSON line, whatever the process printed before
    /// it; a failed process's error carries its stderr.
    #[test]
    fn the_last_json_line_is_the_result_and_a_failure_shows_stderr() {
        let mut ok = Command::new("sh");
        ok.args(["-c", r#"echo '{"n": 1}'; echo warming up; echo '{"n": 2}'; echo done"#]);
        let v: serde_json::Value = json_line(&mut ok, "ok").expect("result");
        assert_eq!(v["n"], 2);
        let mut bad = Command::new("sh");
        bad.args(["-c", "echo 'no model here' >&2; exit 3"]);
        let e = json_line::<serde_json::Value>(&mut bad, "worker small").expect_err("failed").to_string();
        assert!(e.contains("worker small failed") && e.contains("no model here"), "{e}");
        let mut silent = Command::new("true");
        let e = json_line::<serde_json::Value>(&mut silent, "quiet").expect_err("no line").to_string();
        assert!(e.contains("quiet printed no result line"), "{e}");
    }
}
