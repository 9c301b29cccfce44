#!/usr/bin/env bash
# The one-shot GPU check (issue 13), run on a machine lent with a GPU, from
# the repository root, with gpu-kit/ (scripts/gpu-check/prepare.sh) and
# data/classical carried. See scripts/gpu-check/README.md.
#
#   scripts/gpu-check/run.sh            # on the GPU machine; report in $OUT
#   scripts/gpu-check/run.sh --cpu --kit gpu-kit-cpu   # the same steps on the CPU (tested here)
#
# Steps, each recorded in $OUT/gpu-check.json even when it fails:
#   1. the machine: GPU, driver, torch and its CUDA;
#   2. training throughput (random tokens) of small and medium, CUDA bf16
#      beside the CPU (all cores, auto precision);
#   3. real training: classical on the medium preset continued from the
#      shipped checkpoint for --train-steps steps; the float16 result comes
#      back as $OUT/classical-medium.safetensors to commit;
#   4. ONNX Runtime: where a CUDA-capable onnxruntime is installed, logits
#      against the CPU's (within 1e-3) and ms/event at 256 and 2,048 events
#      for 1 and 8 variations.
set -u
mode=cuda
out=${OUT:-$PWD/out/gpu-check}
kit=gpu-kit
train_steps=600
train_timeout=300
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) mode=cpu ;;
        --out) out=$2; shift ;;
        --kit) kit=$2; shift ;;
        --train-steps) train_steps=$2; shift ;;
        --train-timeout) train_timeout=$2; shift ;;
        *) echo "run.sh: unknown argument $1 (use --cpu, --out DIR, --kit DIR, --train-steps N, --train-timeout S)" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log="$out/gpu-check.log"
: > "$log"
: > "$out/ship.jsonl"
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$log"; }

py=${CADENZA_PYTHON:-}
[ -n "$py" ] || { [ -x .venv/bin/python ] && py=.venv/bin/python; } || py=$(command -v python3)
for f in "$kit/bin/cadenza-train" "$kit/bin/cadenza-export" "$kit/bin/cadenza-engine-check"; do
    [ -x "$f" ] || { say "missing $f: run scripts/gpu-check/prepare.sh first and carry $kit"; exit 1; }
done
[ -f data/classical/manifest.csv ] || { say "missing data/classical/manifest.csv: carry data/classical"; exit 1; }
checkpoint=models/checkpoints/classical-medium

# 1. The machine, and torch's libraries for the kit's binaries.
"$py" - "$out/machine.json" <<'PY' 2>>"$log"
import json, os, subprocess, sys
import importlib.util
info = {}
spec = importlib.util.find_spec("torch")
if spec and spec.submodule_search_locations:
    info["torch_dir"] = list(spec.submodule_search_locations)[0]
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["bf16"] = torch.cuda.is_bf16_supported()
except Exception as e:
    info["torch_error"] = repr(e)
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                                        capture_output=True, text=True, timeout=30).stdout.strip()
except Exception as e:
    info["nvidia_smi"] = "unavailable: " + repr(e)
info["cpus"] = os.cpu_count()
json.dump(info, open(sys.argv[1], "w"), indent=1)
PY
torch_dir=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("torch_dir",""))' "$out/machine.json")
[ -n "$torch_dir" ] || { say "no torch installed for $py: cannot link the kit's trainer"; exit 1; }
nv_libs=$(ls -d "$(dirname "$torch_dir")"/nvidia/*/lib 2>/dev/null | paste -sd: -)
export LD_LIBRARY_PATH="$torch_dir/lib${nv_libs:+:$nv_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
say "mode $mode; torch in $torch_dir; $(cat "$out/machine.json" | tr -d '\n')"
cpus=$(nproc)

# 2. Training throughput on random tokens.
: > "$out/train-bench.jsonl"
bench() { # preset seq device precision steps threads warmup
    timeout 300 "$kit/bin/cadenza-train" bench --config "$1" --batch 8 --seq-len "$2" --device "$3" \
        --precision "$4" --steps "$5" --warmup "$7" --threads "$6" >>"$out/train-bench.jsonl" 2>>"$log" \
        || say "bench $1 on $3 failed (exit $?)"
}
for spec in "small 512" "medium 1024"; do
    set -- $spec
    say "bench $1: $mode"
    if [ "$mode" = cuda ]; then bench "$1" "$2" cuda bf16 30 "$cpus" 2; fi
    bench "$1" "$2" cpu auto 2 "$cpus" 1
done

# 3. Real training: classical (medium) continued from the shipped checkpoint.
start=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["train"]["state"]["step"])' "$checkpoint.json")
steps=$((start + train_steps))
say "train classical-medium on $mode: steps $start -> $steps (timeout ${train_timeout}s)"
t0=$(date +%s)
timeout "$train_timeout" "$kit/bin/cadenza-train" train --style classical --data data/classical \
    --continue-from "$checkpoint.safetensors" --steps "$steps" --device "$mode" --threads "$cpus" \
    --out "$work/run" --no-progress >>"$log" 2>&1
train_rc=$?
train_s=$(( $(date +%s) - t0 ))
say "training ended (exit $train_rc) after ${train_s}s"
cp "$work/run/metrics.csv" "$out/train-metrics.csv" 2>/dev/null
cp "$work/run/run.json" "$out/train-run.json" 2>/dev/null
# The newest checkpoint, float16 and checked, to commit as models/checkpoints/classical-medium.
if ls "$work"/run/checkpoints/step-*.safetensors >/dev/null 2>&1; then
    newest=$(ls "$work"/run/checkpoints/step-*.safetensors | grep -v optim | sort | tail -1)
    "$kit/bin/cadenza-train" ship --checkpoint "$newest" --out "$out/classical-medium" --data data/classical \
        >>"$out/ship.jsonl" 2>>"$log" || say "ship failed (exit $?)"
else
    say "no checkpoint written: nothing to bring back"
fi

# 4. ONNX Runtime: the CUDA provider against the CPU.
ort_lib=$("$py" - <<'PY' 2>>"$log"
import glob, os
try:
    import onnxruntime as o
except Exception:
    raise SystemExit(0)
if "CUDAExecutionProvider" not in o.get_available_providers():
    raise SystemExit(0)
libs = sorted(glob.glob(os.path.join(os.path.dirname(o.__file__), "capi", "libonnxruntime.so*")))
print(libs[-1] if libs else "")
PY
)
engine_provider=$mode
if [ "$mode" = cpu ]; then
    ort_lib=${ORT_DYLIB_PATH:-$("$py" -c 'import glob,os,onnxruntime as o; print(sorted(glob.glob(os.path.join(os.path.dirname(o.__file__),"capi","libonnxruntime.so*")))[-1])' 2>>"$log")}
fi
if [ -z "$ort_lib" ]; then
    say "no onnxruntime with the CUDA provider importable by $py: the ONNX check is skipped (pip install onnxruntime-gpu==1.31.1 on a machine with a network)"
    echo '{"skipped": "no onnxruntime with CUDAExecutionProvider on this machine"}' > "$out/engine.json"
else
    say "ONNX Runtime $ort_lib"
    models=()
    if [ -f "$out/classical-medium.safetensors" ]; then
        "$kit/bin/cadenza-export" --checkpoint "$out/classical-medium" --out "$work/classical-medium.onnx" >>"$log" 2>&1 \
            && models+=(--model "$work/classical-medium.onnx")
    fi
    for preset in small medium; do
        "$kit/bin/cadenza-export" --random "$preset" --max-seq-len 2048 --out "$work/random-$preset-2048.onnx" >>"$log" 2>&1 \
            && models+=(--model "$work/random-$preset-2048.onnx")
    done
    if [ ${#models[@]} -eq 0 ]; then
        say "no model could be exported: the ONNX check is skipped"
        echo '{"skipped": "no model could be exported (see the log)"}' > "$out/engine.json"
    else
    ORT_DYLIB_PATH=$ort_lib timeout 240 "$kit/bin/cadenza-engine-check" "${models[@]}" --provider "$engine_provider" \
        --contexts 256,2048 --variations 1,8 --steps 32 > "$out/engine.json" 2>>"$log" \
        || say "engine check failed (exit $?); see $log"
    fi
fi

# The report.
"$py" - "$out" "$mode" "$train_rc" "$train_s" "$start" <<'PY'
import csv, json, os, statistics, sys
out, mode, train_rc, train_s, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def load(name, lines=False):
    p = os.path.join(out, name)
    if not os.path.exists(p):
        return None
    with open(p) as f:
        if lines:
            return [json.loads(l) for l in f if l.strip().startswith("{")]
        text = f.read().strip()
        return json.loads(text) if text.startswith("{") else None
rows = []
if os.path.exists(os.path.join(out, "train-metrics.csv")):
    rows = list(csv.DictReader(open(os.path.join(out, "train-metrics.csv"))))
steps = [r for r in rows if r.get("tokens_per_s")]
vals = [(int(r["step"]), float(r["val_loss"])) for r in rows if r.get("val_loss")]
report = {
    "mode": mode,
    "machine": load("machine.json"),
    "train_bench": load("train-bench.jsonl", lines=True),
    "training": {
        "exit_code": train_rc, "wall_s": train_s, "start_step": start,
        "end_step": int(steps[-1]["step"]) if steps else start,
        "median_tokens_per_s": statistics.median(float(r["tokens_per_s"]) for r in steps) if steps else None,
        "validation": vals,
        "shipped": load("ship.jsonl", lines=True),
    },
    "engine": load("engine.json"),
}
json.dump(report, open(os.path.join(out, "gpu-check.json"), "w"), indent=1)
b = {(r["config"], r["device"]): r["tokens_per_s"] for r in report["train_bench"] or []}
for preset in ("small", "medium"):
    line = ", ".join(f"{d} {t:,.0f} tok/s" for (p, d), t in b.items() if p == preset)
    print(f"train bench {preset}: {line}")
t = report["training"]
print(f"training: steps {t['start_step']} -> {t['end_step']} in {t['wall_s']} s, median {t['median_tokens_per_s']} tok/s, validation {t['validation'][-1:] }")
for m in (report["engine"] or {}).get("models", []):
    p = m.get("parity") or {}
    print(f"engine {m['style']}: {m['provider']}, parity max |diff| {p.get('max_abs_diff')} (pass {p.get('pass')}); "
          + "; ".join(f"{x['context']}x{x['variations']}: {x['ms_per_event']:.3f} ms/event" for x in m["timings"] or m["cpu_timings"]))
print(f"report: {os.path.join(out, 'gpu-check.json')}")
PY
