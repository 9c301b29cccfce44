//! `cargo xtask setup`: everything the other commands need, fetched only from
//! the package registries, and safe to run again (it then does nothing).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::env::{env_file, repo_root, run_checked, ToolEnv};

/// Debian packages the project builds and tests with: the plugin's windowing
/// and audio headers, the hosts the tests drive, and a General MIDI soundfont.
pub const APT_PACKAGES: &[&str] = &[
    "pkg-config",
    "libasound2-dev",
    "libjack-jackd2-dev",
    "libx11-dev",
    "libx11-xcb-dev",
    "libxcb1-dev",
    "libxcb-icccm4-dev",
    "libxcb-dri2-0-dev",
    "libxcursor-dev",
    "libgl-dev",
    "libgl1-mesa-dri",
    "libglx-mesa0",
    "xvfb",
    "xauth",
    "jackd2",
    "fluid-soundfont-gm",
    "npm",
    "libfontconfig1-dev",
    "fonts-dejavu-core",
    // Ardour's VST3 scanner (/usr/lib/ardour7/ardour-vst3-scanner) loads the plugin in the host
    // tests: 51 MB download, about 35 s to install.
    "ardour",
    // `cargo xtask data` converts MuseScore 3's demo scores with it (mscore3 -o x.mid, headless).
    "musescore3",
];

/// The Python side, pinned. torch is installed without its dependencies: its
/// CPU library links only the two CUDA wheels below (see the README).
pub const TORCH: &str = "torch==2.11.0";
pub const TORCH_CPU_EXTRAS: &[&str] = &["nvidia-cuda-runtime==13.0.96", "nvidia-cuda-cupti==13.0.85"];
/// minihost is a headless JUCE VST3 host that returns a plugin's MIDI output; the plugin's
/// host tests drive the bundle with it (a wheel with no dependencies).
pub const WHEELS: &[&str] = &["onnx==1.23.2", "music21==10.5.1", "numpy==2.4.6", "minihost==0.11.0"];
/// ONNX Runtime for the CPU (what the bundles carry) ...
pub const ORT_CPU: &str = "onnxruntime==1.31.1";
/// ... or, with `--cuda`, the same version built with the CUDA provider, with
/// the NVIDIA CUDA 13 and cuDNN 9 wheels it loads (both install the same
/// `onnxruntime` package, so one replaces the other).
pub const ORT_GPU: &str = "onnxruntime-gpu[cuda,cudnn]==1.31.1";
/// The ONNX Runtime library inside the onnxruntime wheel.
pub const ORT_LIBRARY: &str = "onnxruntime/capi/libonnxruntime.so.1.31.1";

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Install torch with all its CUDA libraries (several GB) instead of the slim CPU set.
    #[arg(long)]
    pub cuda: bool,
    /// Skip the Debian packages even when running as root.
    #[arg(long)]
    pub no_apt: bool,
}

/// The tool environment, running `setup` first when it is missing or stale,
/// and the shipped styles' models made from their checkpoints where needed.
pub fn tool_env() -> Result<ToolEnv> {
    match ToolEnv::load() {
        Ok(env) => {
            crate::shipped::ensure_models(env.cuda)?;
            Ok(env)
        }
        // Setup makes the models too.
        Err(_) => {
            run(&Args::default())?;
            ToolEnv::load()
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    if !args.no_apt {
        apt_packages()?;
    }
    let env = python_env(args.cuda)?;
    let json = serde_json::to_string_pretty(&env)?;
    cadenza_core::fsutil::write_atomic(&env_file(), json.as_bytes())
        .with_context(|| format!("{}: cannot write", env_file().display()))?;
    crate::shipped::ensure_models(env.cuda)?;
    eprintln!("setup: ready ({})", env_file().display());
    Ok(())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Packages whose command may already come from elsewhere: a machine with
/// Node.js from NodeSource has its own npm, and Debian's `npm` package then
/// conflicts with its `nodejs`. Such a package counts as present when the
/// command runs.
const PROVIDED_BY_COMMAND: &[(&str, &str)] = &[("npm", "npm")];

fn command_runs(command: &str) -> bool {
    Command::new(command).arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

fn missing_apt_packages() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            if PROVIDED_BY_COMMAND.iter().any(|(pkg, cmd)| pkg == p && command_runs(cmd)) {
                return false;
            }
            let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

fn apt_packages() -> Result<()> {
    let missing = missing_apt_packages();
    if missing.is_empty() {
        return Ok(());
    }
    let line = format!("apt-get install -y --no-install-recommends {}", missing.join(" "));
    if !is_root() {
        eprintln!("setup: these Debian packages are missing; as root, run:\n  {line}");
        return Ok(());
    }
    eprintln!("setup: installing {}", missing.join(" "));
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if !install().map(|s| s.success()).unwrap_or(false) {
        run_checked(Command::new("apt-get").args(["update", "-q"]))?;
        if !install()?.success() {
            bail!("apt-get could not install: {line}");
        }
    }
    Ok(())
}

fn venv_python() -> PathBuf {
    repo_root().join(".venv/bin/python")
}

/// The requirement lines this setup installs, in order.
fn requirements(cuda: bool) -> Vec<String> {
    let mut req = vec![format!("{TORCH} cuda={cuda}")];
    if !cuda {
        req.extend(TORCH_CPU_EXTRAS.iter().map(|s| s.to_string()));
    }
    req.push(ort_wheel(cuda).to_string());
    req.extend(WHEELS.iter().map(|s| s.to_string()));
    req
}

fn ort_wheel(cuda: bool) -> &'static str {
    if cuda {
        ORT_GPU
    } else {
        ORT_CPU
    }
}

/// The pip distribution name of a requirement ("onnxruntime-gpu" of "onnxruntime-gpu[cuda]==1").
fn distribution(requirement: &str) -> &str {
    requirement.split(['[', '=']).next().unwrap_or(requirement)
}

fn python_env(cuda: bool) -> Result<ToolEnv> {
    let root = repo_root();
    let python = venv_python();
    if !python.exists() {
        eprintln!("setup: creating .venv");
        run_checked(Command::new("python3").args(["-m", "venv"]).arg(root.join(".venv")))?;
    }
    let stamp = root.join(".venv/cadenza-requirements.txt");
    let wanted = requirements(cuda).join("\n");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let pip = |args: &[&str]| {
            let mut cmd = Command::new(&python);
            cmd.args(["-m", "pip", "install", "-q", "--disable-pip-version-check"]).args(args);
            run_checked(&mut cmd)
        };
        eprintln!("setup: installing {TORCH} ({})", if cuda { "with CUDA" } else { "slim CPU set" });
        if cuda {
            pip(&[TORCH])?;
        } else {
            pip(&["--no-deps", TORCH])?;
            pip(&[&["--no-deps"], TORCH_CPU_EXTRAS].concat())?;
        }
        // The CPU and GPU builds share the `onnxruntime` package folder: remove the other one first.
        let other = distribution(ort_wheel(!cuda));
        let _ = Command::new(&python).args(["-m", "pip", "uninstall", "-y", "-q", other]).status();
        eprintln!("setup: installing {} {}", ort_wheel(cuda), WHEELS.join(" "));
        pip(&[&[ort_wheel(cuda)], WHEELS].concat())?;
        std::fs::write(&stamp, &wanted)?;
    }
    let site = site_packages(&python)?;
    let libtorch = site.join("torch");
    let ort_dylib_path = site.join(ORT_LIBRARY);
    for p in [&libtorch.join("lib"), &ort_dylib_path] {
        if !p.exists() {
            bail!("{}: missing after install; delete .venv and run `cargo xtask setup` again", p.display());
        }
    }
    let mut library_path = vec![libtorch.join("lib"), site.join("nvidia/cu13/lib")];
    if cuda {
        // cuDNN, which ONNX Runtime's CUDA provider loads by name.
        library_path.push(site.join("nvidia/cudnn/lib"));
    }
    Ok(ToolEnv { python, libtorch, ort_dylib_path, library_path, cuda })
}

fn site_packages(python: &Path) -> Result<PathBuf> {
    let out = Command::new(python)
        .args(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        bail!("{} cannot report its site-packages", python.display());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--cuda` swaps the CPU ONNX Runtime for the GPU build of the same version (the
    /// download itself, several GB, is not part of the tests).
    #[test]
    fn cuda_installs_the_gpu_build_of_the_same_onnx_runtime() {
        let cpu = requirements(false);
        let gpu = requirements(true);
        assert!(cpu.iter().any(|r| r == ORT_CPU) && !cpu.iter().any(|r| r.starts_with("onnxruntime-gpu")));
        assert!(gpu.iter().any(|r| r == ORT_GPU) && !gpu.iter().any(|r| r == ORT_CPU));
        assert_eq!(distribution(ORT_GPU), "onnxruntime-gpu");
        assert_eq!(distribution(ORT_CPU), "onnxruntime");
        let version = |r: &str| r.rsplit("==").next().map(str::to_string);
        assert_eq!(version(ORT_CPU), version(ORT_GPU));
        assert!(ORT_LIBRARY.ends_with(&format!("libonnxruntime.so.{}", version(ORT_CPU).expect("pinned"))));
    }
}
