//! `cargo xtask fuzz`: the reader and codec property tests (core/tests/fuzz.rs)
//! with many more generated inputs than the test suite runs (256 each there):
//! `--cases 200000` runs 1 M inputs as a benchmark.

use anyhow::Result;

use crate::env::{repo_root, run_checked};

/// Properties in core/tests/fuzz.rs; each runs `--cases` inputs.
const PROPERTIES: usize = 5;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Generated inputs per property (5 properties: 200000 makes 1 M inputs).
    #[arg(long, default_value_t = 20_000)]
    pub cases: u32,
}

/// `cargo test --release` of the fuzz target, with `extra` arguments.
fn fuzz_test(extra: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(repo_root()).args(["test", "--release", "-p", "cadenza-core", "--test", "fuzz"]).args(extra);
    cmd
}

pub fn run(args: &Args) -> Result<()> {
    // Build first, so the time reported is the fuzzing alone.
    run_checked(&mut fuzz_test(&["--no-run"]))?;
    let t0 = std::time::Instant::now();
    run_checked(fuzz_test(&[]).env("PROPTEST_CASES", args.cases.to_string()))?;
    let inputs = PROPERTIES as u64 * u64::from(args.cases);
    let seconds = t0.elapsed().as_secs_f64();
    println!(
        "fuzz: {inputs} inputs ({PROPERTIES} properties x {}) without a panic or a failed property in {seconds:.0} s \
         ({:.0} inputs/s)",
        args.cases,
        inputs as f64 / seconds.max(1e-9)
    );
    Ok(())
}
