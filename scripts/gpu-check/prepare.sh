#!/usr/bin/env bash
# Build the GPU check's kit here, for a session lent a GPU machine
# (see scripts/gpu-check/README.md). Writes gpu-kit/ at the repository root:
# cadenza-train and cadenza-export built with the `cuda` feature (they link
# the GPU machine's own torch at run time) and cadenza-engine-check.
# Needs `cargo xtask setup` done (it reads .cadenza-env.json for libtorch).
#
#   scripts/gpu-check/prepare.sh         # gpu-kit/, for the GPU machine
#   scripts/gpu-check/prepare.sh --cpu   # gpu-kit-cpu/: the same binaries without the
#                                        # cuda feature, to test run.sh --cpu on a machine
#                                        # without CUDA's runtime libraries
set -euo pipefail
features=(--features cuda)
kit_name=gpu-kit
case "${1:-}" in
    --cpu) features=(); kit_name=gpu-kit-cpu ;;
    "") ;;
    *) echo "prepare: unknown argument $1 (use --cpu or nothing)" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
env_file=.cadenza-env.json
[ -f "$env_file" ] || { echo "prepare: $root/$env_file is missing; run cargo xtask setup first" >&2; exit 1; }
py=$(command -v python3)
LIBTORCH=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["libtorch"])' "$env_file")
export LIBTORCH
LD_LIBRARY_PATH=$("$py" -c 'import json,sys; print(":".join(json.load(open(sys.argv[1]))["library_path"]))' "$env_file")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
[ ${#features[@]} -eq 0 ] || [ -f "$LIBTORCH/lib/libtorch_cuda.so" ] || {
    echo "prepare: $LIBTORCH has no libtorch_cuda.so: the kit's trainer must link CUDA torch (install torch 2.11 with CUDA, e.g. cargo xtask setup --cuda)" >&2
    exit 1
}
cargo build --release -p cadenza-trainer "${features[@]}" --bin cadenza-train --bin cadenza-export
cargo build --release -p cadenza-core --bin cadenza-engine-check
kit="$root/$kit_name"
rm -rf "$kit.tmp" && mkdir -p "$kit.tmp/bin"
for b in cadenza-train cadenza-export cadenza-engine-check; do
    cp "target/release/$b" "$kit.tmp/bin/$b"
done
git rev-parse HEAD > "$kit.tmp/commit" 2>/dev/null || true
rm -rf "$kit" && mv "$kit.tmp" "$kit"
echo "prepare: kit in $kit ($(du -sh "$kit" | cut -f1)); carry $kit_name and data/classical, then run scripts/gpu-check/run.sh"
