//! `cargo xtask fuzz`: the reader and codec property tests (core/tests/fuzz.rs)
//! with many more generated inputs than the test suite runs.

use anyhow::Result;

use crate::env::{repo_root, run_checked};

/// Properties in core/tests/fuzz.rs; each runs `--cases` inputs.
const PROPERTIES: usize = 5;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Generated inputs per property.
    #[arg(long, default_value_t = 20_000)]
    pub cases: u32,
}

pub fn run(args: &Args) -> Result<()> {
    let t0 = std::time::Instant::now();
    let mut cmd = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(repo_root())
        .args(["test", "--release", "-p", "cadenza-core", "--test", "fuzz"])
        .env("PROPTEST_CASES", args.cases.to_string());
    run_checked(&mut cmd)?;
    println!(
        "fuzz: {} inputs ({} properties x {}) without a panic or a failed property in {:.0} s",
        PROPERTIES as u64 * u64::from(args.cases),
        PROPERTIES,
        args.cases,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
