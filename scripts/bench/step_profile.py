#!/usr/bin/env python3
"""Where a cached decoding step of a Cadenza model (graph version 2) spends its time, and
interleaved A/B timings of two exported variants: the measurements behind the exporter's
choices (see the module documentation of core/src/export/mod.rs).

Usage:
  .venv/bin/python scripts/bench/step_profile.py MODEL.onnx [--contexts 256,1024,2047] [--threads 2]
  .venv/bin/python scripts/bench/step_profile.py A.onnx --compare B.onnx

MODEL comes from `cargo xtask bench generate` (target/bench/random-base-2048.onnx) or
`cargo xtask export`. The cache buffers are random (timing does not depend on their values),
with one spare position as the engine's capacity buckets leave. Prints the median step of 40
(these machines are shared: medians, and A and B alternate step by step), then ONNX Runtime's
kernel time per operator type and per operator and input shapes."""
import argparse, collections, json, os, tempfile, time

import numpy as np
import onnxruntime as ort

STEPS = 40


def session(path, threads, profile_dir=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_dir:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(profile_dir, "step")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def feeds(s, ctx, rng):
    meta = s.get_modelmeta().custom_metadata_map
    if meta.get("cadenza.graph_version") != "2":
        raise SystemExit("not a graph version 2 model (cache_key_i / past_len inputs); export it again")
    cfg = json.loads(meta["cadenza.model_config"])
    layers, heads, hd = cfg["n_layers"], cfg["n_heads"], cfg["d_model"] // cfg["n_heads"]
    f = {f"cache_{kv}_{i}": (0.5 * rng.standard_normal((1, heads, ctx + 1, hd))).astype(np.float32)
         for i in range(layers) for kv in ("key", "value")}
    f["tokens"] = np.array([[5]], np.int64)
    f["past_len"] = np.array([ctx], np.int64)
    return f


def median_ms(times):
    return float(np.median(times)) * 1e3


def profile(path, contexts, threads):
    rng = np.random.default_rng(0)
    for ctx in contexts:
        with tempfile.TemporaryDirectory() as tmp:
            s = session(path, threads, tmp)
            f = feeds(s, ctx, rng)
            for _ in range(3):
                s.run(None, f)
            times = []
            for _ in range(STEPS):
                t0 = time.perf_counter()
                s.run(None, f)
                times.append(time.perf_counter() - t0)
            events = json.load(open(s.end_profiling()))
        by_op, by_shape, calls = collections.Counter(), collections.Counter(), collections.Counter()
        for e in events:
            if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
                continue
            op = e["args"]["op_name"]
            shapes = str([list(x.values())[0] for x in e["args"].get("input_type_shape", [])])[:70]
            by_op[op] += e["dur"]
            by_shape[(op, shapes)] += e["dur"]
            calls[(op, shapes)] += 1
        runs = STEPS + 3
        total = sum(by_op.values())
        print(f"context {ctx}: median step {median_ms(times):.2f} ms (profiling on); "
              f"kernel time {total / 1e3 / runs:.2f} ms per step")
        for op, us in by_op.most_common(10):
            print(f"  {op:22s} {us / total * 100:5.1f}%  {us / 1e3 / runs:.3f} ms")
        print("  by operator and input shapes:")
        for (op, shapes), us in by_shape.most_common(12):
            print(f"  {op:14s} {shapes:72s} {us / 1e3 / runs:.3f} ms, {us / calls[(op, shapes)]:.1f} us a call")


def compare(a_path, b_path, contexts, threads):
    rng = np.random.default_rng(0)
    a, b = session(a_path, threads), session(b_path, threads)
    for ctx in contexts:
        f = feeds(a, ctx, rng)
        feeds(b, ctx, rng)  # checks B's version
        ta, tb = [], []
        for _ in range(3):
            a.run(None, f)
            b.run(None, f)
        for _ in range(STEPS):
            t0 = time.perf_counter(); a.run(None, f); ta.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); b.run(None, f); tb.append(time.perf_counter() - t0)
        print(f"context {ctx}: A {median_ms(ta):.2f} ms, B {median_ms(tb):.2f} ms "
              f"(median of {STEPS}, alternating), A/B {median_ms(ta) / median_ms(tb):.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--compare", help="a second model: time both, alternating, instead of profiling")
    p.add_argument("--contexts", default="256,1024,2047", help="cached positions before the step")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    contexts = [int(c) for c in a.contexts.split(",")]
    if a.compare:
        compare(a.model, a.compare, contexts, a.threads)
    else:
        profile(a.model, contexts, a.threads)


if __name__ == "__main__":
    main()
