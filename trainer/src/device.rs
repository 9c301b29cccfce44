//! Where training runs: CPU by default, CUDA when asked for or (with `auto`)
//! when libtorch sees a GPU, and whether the hardware multiplies bfloat16
//! natively (which makes mixed precision worth it).

use tch::Device;

/// `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    Auto,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "--device cuda: libtorch sees no CUDA GPU (a CPU-only torch, no driver, or a binary built without the `cuda` feature)"
)]
pub struct NoCuda;

impl DeviceChoice {
    pub fn resolve(self) -> Result<Device, NoCuda> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceChoice::Cuda => Err(NoCuda),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        }
    }
}

/// Whether bfloat16 matrix products run natively: on CUDA GPUs (Ampere and
/// later do; older ones emulate, so pick `precision = "fp32"` there), and on
/// CPUs with AVX512-BF16 (oneDNN's bf16 GEMM).
pub fn native_bf16(device: Device) -> bool {
    match device {
        Device::Cuda(_) => true,
        _ => cpu_has_avx512_bf16(),
    }
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_avx512_bf16() -> bool {
    std::arch::is_x86_feature_detected!("avx512bf16")
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_avx512_bf16() -> bool {
    false
}

/// Peak resident memory of this process (VmHWM), in MiB; `None` off Linux.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
