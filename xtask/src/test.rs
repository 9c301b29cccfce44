//! `cargo xtask test`: set up what is missing, then run every test of the
//! workspace against the real libtorch, ONNX Runtime and plugin hosts.

use anyhow::Result;

use crate::env::{cargo, run_checked};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only tests whose name contains this.
    pub filter: Option<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let env = crate::setup::tool_env()?;
    // The host tests load the plugin as a host would, from the debug cdylib
    // (built with assert_process_allocs); `cargo test` builds only the rlib.
    run_checked(cargo(&env).args(["build", "--workspace", "--lib"]))?;
    let mut cmd = cargo(&env);
    // Every suite runs and reports, even after one fails.
    cmd.args(["test", "--workspace", "--no-fail-fast"]);
    if let Some(f) = &args.filter {
        cmd.arg("--").arg(f);
    }
    run_checked(&mut cmd)
}
