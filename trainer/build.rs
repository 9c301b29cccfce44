//! Link settings for binaries that use libtorch: an rpath to the torch
//! library folder (from LIBTORCH, as tch's build uses it), so
//! `cadenza-train` and the test binaries run without LD_LIBRARY_PATH; and,
//! with the `cuda` feature, a forced link of libtorch_cuda, which the linker
//! would otherwise drop (no symbol of it is referenced directly, but loading
//! it is what registers the CUDA backend).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        println!("cargo:warning=LIBTORCH is not set: binaries need LD_LIBRARY_PATH to find libtorch");
        return;
    };
    let lib = libtorch.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,-ltorch,--as-needed");
    }
}
