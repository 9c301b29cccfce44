#!/usr/bin/env python3
"""Compare the exported (MatMul-based) decoder graph with a com.microsoft.MultiHeadAttention
variant built from the same weights: parity of prefill and cached-step logits, and ms per cached
step at contexts 256 and 2047 on the CPU (2 threads).

Usage: .venv/bin/python scripts/bench/attention_variants.py target/bench/random-base-2048.onnx
(the model comes from `cargo xtask bench generate`). Writes /tmp/cadenza-mha.onnx.

Graph version 1 only (past_key_i in, present_key_i out): the measurement that chose plain
MatMul attention for that layout. The exporter now writes graph version 2 (cache buffers read
in place); scripts/bench/step_profile.py profiles and compares those files."""
import sys, time, json, numpy as np, onnx, onnxruntime as ort
from onnx import helper as h, TensorProto as T, numpy_helper as nh
src = sys.argv[1]
m = onnx.load(src)
cfg = json.loads({p.key: p.value for p in m.metadata_props}["cadenza.model_config"])
L, d, H, V, S = cfg["n_layers"], cfg["d_model"], cfg["n_heads"], cfg["vocab_size"], cfg["max_seq_len"]; hd = d // H
W = {i.name: nh.to_array(i) for i in m.graph.initializer}
nodes, inits = [], []
def init(name, arr): inits.append(nh.from_array(np.asarray(arr), name)); return name
cnt = [0]
def op(t, ins, n_out=1, domain="", **attrs):
    cnt[0] += 1; outs = [f"{t}_{cnt[0]}_{i}" for i in range(n_out)]
    nodes.append(h.make_node(t, ins, outs, domain=domain, **attrs)); return outs[0] if n_out == 1 else outs
inputs = [h.make_tensor_value_info("tokens", T.INT64, ["batch", "new"])]
outputs = [h.make_tensor_value_info("logits", T.FLOAT, ["batch", "new", V])]
for i in range(L):
    for kv in ("key", "value"):
        inputs.append(h.make_tensor_value_info(f"past_{kv}_{i}", T.FLOAT, ["batch", H, "past", hd]))
        outputs.append(h.make_tensor_value_info(f"present_{kv}_{i}", T.FLOAT, ["batch", H, "total", hd]))
new1 = op("Shape", ["tokens"], start=1, end=2); past1 = op("Shape", ["past_key_0"], start=2, end=3)
tot1 = op("Add", [new1, past1]); start = op("Sub", [init("L", np.array([S], np.int64)), tot1])
past_s = op("Squeeze", [past1]); tot_s = op("Squeeze", [tot1])
one = init("one", np.array(1, np.int64)); zero = init("zero", np.array(0, np.int64))
rows = op("Unsqueeze", [op("Range", [past_s, tot_s, one]), init("a1", np.array([1], np.int64))])
cols = op("Unsqueeze", [op("Range", [zero, tot_s, one]), init("a0", np.array([0], np.int64))])
mask = op("Where", [op("LessOrEqual", [cols, rows]), init("zf", np.array(0, np.float32)), init("ninf", np.array(-np.inf, np.float32))])
skew_shape = op("Concat", [init("zz", np.array([0, 0], np.int64)), new1, init("m1", np.array([-1], np.int64))], axis=0)
x = op("Gather", [init("embed.weight", W["embed.weight"]), "tokens"], axis=0)
for i in range(L):
    p = f"layers.{i}"
    hn = op("LayerNormalization", [x, init(p+"ln1w", W[f"{p}.ln1.weight"]), init(p+"ln1b", W[f"{p}.ln1.bias"])], axis=-1, epsilon=1e-5)
    qkv = op("Add", [op("MatMul", [hn, init(p+"qkvw", W[f"{p}.attn.qkv.weight_t"])]), init(p+"qkvb", W[f"{p}.attn.qkv.bias"])])
    q, k, v = op("Split", [qkv, init(p+"sp", np.array([d, d, d], np.int64))], n_out=3, axis=-1)
    q4 = op("Transpose", [op("Reshape", [q, init(p+"qs", np.array([0, 0, H, hd], np.int64))])], perm=[0, 2, 1, 3])
    er = op("Slice", [init(p+"rel", W[f"{p}.attn.rel_emb_reversed"]), start, init(p+"im", np.array([2**62], np.int64)), init(p+"ax0", np.array([0], np.int64))])
    qe = op("MatMul", [q4, op("Transpose", [er], perm=[1, 0])])
    pad = op("Pad", [qe, init(p+"pad", np.array([0, 0, 0, 1, 0, 0, 0, 0], np.int64))])
    fl = op("Reshape", [pad, init(p+"fs", np.array([0, 0, -1], np.int64))])
    sh = op("Slice", [fl, new1, init(p+"im2", np.array([2**62], np.int64)), init(p+"ax2", np.array([2], np.int64))])
    bias = op("Add", [op("Reshape", [sh, skew_shape]), mask])
    cnt[0] += 1
    out = f"mha_{i}"
    nodes.append(h.make_node("MultiHeadAttention", [q, k, v, "", "", bias, f"past_key_{i}", f"past_value_{i}"],
                             [out, f"present_key_{i}", f"present_value_{i}"], domain="com.microsoft", num_heads=H, scale=1.0))
    ao = op("Add", [op("MatMul", [out, init(p+"ow", W[f"{p}.attn.o.weight_t"])]), init(p+"ob", W[f"{p}.attn.o.bias"])])
    x = op("Add", [x, ao])
    hn = op("LayerNormalization", [x, init(p+"ln2w", W[f"{p}.ln2.weight"]), init(p+"ln2b", W[f"{p}.ln2.bias"])], axis=-1, epsilon=1e-5)
    f1 = op("Relu", [op("Add", [op("MatMul", [hn, init(p+"f1w", W[f"{p}.ff.fc1.weight_t"])]), init(p+"f1b", W[f"{p}.ff.fc1.bias"])])])
    x = op("Add", [x, op("Add", [op("MatMul", [f1, init(p+"f2w", W[f"{p}.ff.fc2.weight_t"])]), init(p+"f2b", W[f"{p}.ff.fc2.bias"])])])
xn = op("LayerNormalization", [x, init("lnfw", W["ln_f.weight"]), init("lnfb", W["ln_f.bias"])], axis=-1, epsilon=1e-5)
nodes.append(h.make_node("Add", [op("MatMul", [xn, init("hw", W["head.weight_t"])]), init("hb", W["head.bias"])], ["logits"]))
g = h.make_graph(nodes, "mha", inputs, outputs, inits)
mm = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)], ir_version=9)
onnx.save(mm, "/tmp/cadenza-mha.onnx")
def sess(pth):
    so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(pth, so, providers=["CPUExecutionProvider"])
a, b = sess(src), sess("/tmp/cadenza-mha.onnx")
rng = np.random.default_rng(0)
toks = rng.integers(0, 388, (1, 300)).astype(np.int64)
empty = {f"past_{kv}_{i}": np.zeros((1, H, 0, hd), np.float32) for i in range(L) for kv in ("key", "value")}
oa, ob = a.run(None, {"tokens": toks, **empty}), b.run(None, {"tokens": toks, **empty})
print("prefill parity", float(np.abs(oa[0] - ob[0]).max()))
names = [o.name for o in a.get_outputs()]
ca = {n.replace("present", "past"): v for n, v in zip(names[1:], oa[1:])}
x1 = a.run(None, {"tokens": toks[:, :1], **ca})[0]; x2 = b.run(None, {"tokens": toks[:, :1], **ca})[0]
print("step parity", float(np.abs(x1 - x2).max()))
for ctx in [256, 2047]:
    cache = {f"past_{kv}_{i}": (0.5 * rng.standard_normal((1, H, ctx, hd))).astype(np.float32) for i in range(L) for kv in ("key", "value")}
    tok = np.array([[5]], np.int64)
    for name, s in [("matmul", a), ("mha", b), ("matmul", a), ("mha", b)]:
        for _ in range(3): s.run(None, {"tokens": tok, **cache})
        t0 = time.perf_counter()
        for _ in range(20): s.run(None, {"tokens": tok, **cache})
        print(ctx, name, "ms", round((time.perf_counter() - t0) / 20 * 1e3, 2))
