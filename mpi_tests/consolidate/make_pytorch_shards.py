#!/usr/bin/env python3
"""Rank files in PyTorch DCP's exact byte layout, and the expected consolidation.

PyTorch's Hugging Face storage writer (save_sharded / save_distributed) stores
each rank's blocks with safetensors.torch.save(tensors, metadata={
"DCP_SHARDING_INFO": json.dumps({fqn: {"saved_offsets": [...]}}),
"DCP_VERSION": "1.0", "format": "pt"}).  This script writes such files with
only the Python standard library (struct + json), so the tests need neither
torch nor safetensors:

  OUT/shards/shard-RRRRR-model-00001-of-00001.safetensors   four rank files
  OUT/mapping.json                                           tensor -> file index
  OUT/expected/canonical/...   the reference writer's file of the full tensors
                               with {"format": "pt"}, and the index
  OUT/expected/pytorch/...     consolidate_safetensors_files's layout for
                               mapping.json (json.dumps header, mapping order,
                               no padding), with correct data, and its index

Byte i of a tensor's row-major bytes is value(seed(name), i), the function the
C tests use, so any consolidated file can be checked without a reference.
"""
import json
import os
import struct
import sys

# The reference writer's dtype order (rank 0 first) and bit sizes.
DTYPES = [("BOOL", 8), ("F4", 4), ("F6_E2M3", 6), ("F6_E3M2", 6), ("U8", 8), ("I8", 8),
          ("F8_E5M2", 8), ("F8_E4M3", 8), ("F8_E8M0", 8), ("F8_E4M3FNUZ", 8),
          ("F8_E5M2FNUZ", 8), ("I16", 16), ("U16", 16), ("F16", 16), ("BF16", 16), ("I32", 32),
          ("U32", 32), ("F32", 32), ("C64", 64), ("F64", 64), ("I64", 64), ("U64", 64)]
RANK = {name: i for i, (name, _) in enumerate(DTYPES)}
BITS = dict(DTYPES)


def seed(name):
    """FNV-1a of the UTF-8 name, folded to 16 bits (same as the C tests)."""
    h = 2166136261
    for b in name.encode("utf-8"):
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h & 0xFFFF


def value(s, i):
    return (i * 131 + s * 7 + 11 + (i >> 8)) & 0xFF


def nbytes(dtype, shape):
    n = 1
    for d in shape:
        n *= d
    return n * BITS[dtype] // 8


def byte_view(dtype, shape):
    """The shape in bytes: last dimension scaled, a scalar is its element's bytes."""
    if not shape:
        return [BITS[dtype] // 8]
    return list(shape[:-1]) + [shape[-1] * BITS[dtype] // 8]


def block_bytes(name, dtype, gshape, offsets, shape):
    """The bytes of a block, cut out of the full tensor's byte view."""
    g = byte_view(dtype, gshape)
    o = [0] if not shape else list(offsets[:-1]) + [offsets[-1] * BITS[dtype] // 8]
    b = byte_view(dtype, shape)
    s = seed(name)
    out = bytearray()
    total = 1
    for d in b:
        total *= d
    idx = [0] * len(b)
    for _ in range(total):
        flat = 0
        for k in range(len(b)):
            flat = flat * g[k] + o[k] + idx[k]
        out.append(value(s, flat))
        for k in reversed(range(len(b))):
            idx[k] += 1
            if idx[k] < b[k]:
                break
            idx[k] = 0
    return bytes(out)


def reference_file(tensors, metadata):
    """safetensors' serialize: compact JSON, __metadata__ first, dtype rank descending then
    name, entries dtype/shape/data_offsets, header padded with spaces to a multiple of 8."""
    order = sorted(tensors, key=lambda t: (-RANK[t[1]], t[0].encode("utf-8")))
    header = {}
    if metadata is not None:
        header["__metadata__"] = dict(sorted(metadata.items()))
    offset = 0
    for name, dtype, shape, data in order:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in order)


def pytorch_file(tensors):
    """consolidate_safetensors_files's _write_metadata: json.dumps(metadata), keys
    shape/dtype/data_offsets, tensors in the given order, no padding."""
    header = {}
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"shape": list(shape), "dtype": dtype,
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header).encode("utf-8")
    return struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors)


def pytorch_index(full, nfiles):
    """_write_overall_metadata_file: weight_map filled output file by output file (the files
    in the order the mapping first names them), each file's tensors in mapping order; then
    json.dump(indent=2): no sort_keys, no final newline."""
    files = {}
    for fqn, idx in MAPPING.items():
        files.setdefault("model-%05d-of-%05d.safetensors" % (idx, nfiles), []).append(fqn)
    weight_map = {}
    total = 0
    for name, fqns in files.items():
        for fqn in fqns:
            weight_map[fqn] = name
            total += len(full[fqn][3])
    return json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)


def chunks(n, k):
    """torch.chunk's split of n into k parts: ceil(n / k) each, the rest short or empty."""
    step = -(-n // k) if n else 0
    parts = []
    for i in range(k):
        lo = min(i * step, n)
        hi = min(lo + step, n)
        parts.append((lo, hi - lo))
    return parts


# name, dtype, global shape, sharding: ("row"|"col", ranks) | ("grid", rows, cols) | ("one", rank)
MODEL = [
    ("model.embed_tokens.weight", "BF16", [16, 8], ("row", 4)),
    ("model.layers.0.mlp.up_proj.weight", "F32", [6, 10], ("col", 4)),
    ("model.layers.0.self_attn.q_proj.weight", "F16", [5, 6], ("grid", 2, 2)),
    ("model.norm.weight", "F32", [8], ("one", 1)),
    ("lm_head.weight", "BF16", [7, 4], ("row", 4)),
    ("model.layers.0.step", "F32", [], ("one", 2)),
    ("model.layers.0.counts", "I64", [5], ("row", 3)),
    ("model.layers.0.mask", "BOOL", [4, 2], ("col", 2)),
    ("model.layers.0.fp8_scale", "F8_E4M3", [3, 4], ("row", 2)),
]
NRANKS = 4
MAPPING = {  # insertion order = PyTorch's order inside each output file
    "model.embed_tokens.weight": 1,
    "model.layers.0.self_attn.q_proj.weight": 1,
    "model.layers.0.mlp.up_proj.weight": 1,
    "model.layers.0.counts": 1,
    "model.layers.0.step": 2,
    "model.norm.weight": 2,
    "model.layers.0.mask": 2,
    "model.layers.0.fp8_scale": 2,
    "lm_head.weight": 2,
}


def blocks(shape, sharding):
    """(rank, offsets, shape) of every block of a tensor."""
    kind = sharding[0]
    if kind == "one":
        return [(sharding[1], [0] * len(shape), list(shape))]
    if kind in ("row", "col"):
        dim = 0 if kind == "row" else len(shape) - 1
        out = []
        for r, (lo, n) in enumerate(chunks(shape[dim], sharding[1])):
            off = [0] * len(shape)
            sh = list(shape)
            off[dim], sh[dim] = lo, n
            out.append((r, off, sh))
        return out
    rows, cols = chunks(shape[0], sharding[1]), chunks(shape[1], sharding[2])
    return [(i * len(cols) + j, [r[0], c[0]], [r[1], c[1]])
            for i, r in enumerate(rows) for j, c in enumerate(cols)]


def main():
    out = sys.argv[1]
    for sub in ("shards", "expected/canonical", "expected/pytorch"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    per_rank = [[] for _ in range(NRANKS)]
    full = {}
    for name, dtype, shape, sharding in MODEL:
        full[name] = (name, dtype, shape, block_bytes(name, dtype, shape, [0] * len(shape), shape))
        for rank, off, sh in blocks(shape, sharding):
            per_rank[rank].append((name, dtype, sh, block_bytes(name, dtype, shape, off, sh), off))
    for rank, items in enumerate(per_rank):
        if not items:
            continue
        info = {name: {"saved_offsets": off} for name, _, _, _, off in items}
        meta = {"DCP_SHARDING_INFO": json.dumps(info), "DCP_VERSION": "1.0", "format": "pt"}
        data = reference_file([i[:4] for i in items], meta)
        path = os.path.join(out, "shards",
                            "shard-%05d-model-00001-of-00001.safetensors" % (rank + 1))
        with open(path, "wb") as f:
            f.write(data)
    canon = os.path.join(out, "expected", "canonical")
    with open(os.path.join(canon, "model-00001-of-00001.safetensors"), "wb") as f:
        f.write(reference_file(list(full.values()), {"format": "pt"}))
    total = sum(len(t[3]) for t in full.values())
    index = {"metadata": {"total_size": total},
             "weight_map": {n: "model-00001-of-00001.safetensors" for n in full}}
    with open(os.path.join(canon, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    with open(os.path.join(out, "mapping.json"), "w") as f:
        json.dump(MAPPING, f, indent=2)
    nfiles = max(MAPPING.values())
    for k in range(1, nfiles + 1):
        members = [full[n] for n, idx in MAPPING.items() if idx == k]
        name = "model-%05d-of-%05d.safetensors" % (k, nfiles)
        with open(os.path.join(out, "expected", "pytorch", name), "wb") as f:
            f.write(pytorch_file(members))
    with open(os.path.join(out, "expected", "pytorch", "model.safetensors.index.json"), "w") as f:
        f.write(pytorch_index(full, nfiles))


if __name__ == "__main__":
    main()
