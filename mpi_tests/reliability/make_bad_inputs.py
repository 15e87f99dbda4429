#!/usr/bin/python3
"""Writes the bad-input sweep: one checkpoint directory per defect, each with
the error name that every tool must give for it.

    /usr/bin/python3 make_bad_inputs.py --out DIR [--corpus CORPUS_BAD_DIR]

DIR/<case>/ holds the checkpoint; DIR/cases.tsv has one line per case:

    <case> TAB <tools> TAB <expected>

<tools> lists the tools that must reject it: v (stshard verify),
c (stshard consolidate: rank-file inputs), r (stshard reshard: any form).
<expected> is the error name (an extended regex, e.g. "A|B") the output must
name, or "-" for the few valid control cases that must succeed (they prove
the sweep can tell success from failure).

Defects cover the file format (every file of the header codec's bad corpus,
wrapped as rank file 2 of an otherwise valid checkpoint), the sharding
semantics (gaps, overlaps, dtype and rank disagreements, DCP_SHARDING_INFO
errors, absurd offsets), damaged files (truncated, empty, extended) and
consolidated checkpoints with a broken index.  Standard library only; output
is written at test time, never committed.
"""
import argparse
import json
import os
import shutil
import struct

BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8,
    "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16,
    "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64,
    "U64": 64,
}
RANK = {name: i for i, name in enumerate(BITS)}
U64_MAX = (1 << 64) - 1


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def nbytes(dtype, shape):
    return numel(shape) * BITS[dtype] // 8


class Block:
    """One rank's block of a tensor: local shape and global offsets."""

    def __init__(self, name, dtype, shape, offsets):
        self.name, self.dtype, self.shape, self.offsets = name, dtype, list(shape), list(offsets)


def data_bytes(seed, size):
    """Deterministic, non-zero, position-dependent bytes."""
    return bytes((seed * 131 + i * 7 + 1) & 0xFF for i in range(size))


def safetensors(tensors, metadata):
    """Canonical file bytes: tensors is a list of (name, dtype, shape, data); metadata a dict or
    None (no __metadata__ at all); a metadata value that is not a str is written as JSON."""
    order = sorted(tensors, key=lambda t: (-RANK[t[1]], t[0].encode("utf-8")))
    head, off, body = {}, 0, b""
    if metadata is not None:
        head["__metadata__"] = dict(sorted(metadata.items()))
    for name, dtype, shape, data in order:
        head[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
        body += data
    text = json.dumps(head, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + body


def sharding_info(blocks):
    """DCP_SHARDING_INFO the way PyTorch writes it (Python's default spacing)."""
    return json.dumps({b.name: {"saved_offsets": b.offsets} for b in blocks})


def rank_file(blocks, info=None, meta=None, seed=0):
    """A rank file; info overrides the DCP_SHARDING_INFO text, meta the whole __metadata__."""
    if meta is None:
        meta = {"DCP_SHARDING_INFO": info if info is not None else sharding_info(blocks),
                "DCP_VERSION": "1.0", "format": "pt"}
    elif meta == "none":
        meta = None
    tensors = [(b.name, b.dtype, b.shape, data_bytes(seed + i, nbytes(b.dtype, b.shape)))
               for i, b in enumerate(blocks)]
    return safetensors(tensors, meta)


def rank_name(r, k=1, n=1):
    return "shard-%05d-model-%05d-of-%05d.safetensors" % (r + 1, k, n)


# The base checkpoint: two ranks.  embed is row-sharded, proj column-sharded, norm
# replicated (stored by rank 0), step a scalar on rank 0.
def base_blocks():
    return [
        [Block("model.embed.weight", "BF16", [2, 6], [0, 0]),
         Block("layers.0.proj.weight", "F32", [3, 2], [0, 0]),
         Block("layers.0.norm.weight", "F32", [4], [0]),
         Block("step", "I64", [], [])],
        [Block("model.embed.weight", "BF16", [2, 6], [2, 0]),
         Block("layers.0.proj.weight", "F32", [3, 2], [0, 2])],
    ]


def find(blocks, name):
    return next(b for b in blocks if b.name == name)


class Sweep:
    def __init__(self, out):
        self.out, self.lines = out, []

    def case(self, name, tools, expected, files):
        """files: {file name: bytes, or None for an empty directory entry-less case}."""
        d = os.path.join(self.out, name)
        os.makedirs(d)
        for fname, data in files.items():
            with open(os.path.join(d, fname), "wb") as f:
                f.write(data)
        self.lines.append("%s\t%s\t%s\n" % (name, tools, expected))

    def ranks(self, name, expected, ranks, infos=None, tools="vcr"):
        """A rank-file checkpoint from per-rank block lists (None = no file for that rank)."""
        files = {}
        for r, blocks in enumerate(ranks):
            if blocks is None:
                continue
            info = infos[r] if infos else None
            files[rank_name(r)] = rank_file(blocks, info=info, seed=10 * r)
        self.case(name, tools, expected, files)

    def write_manifest(self):
        with open(os.path.join(self.out, "cases.tsv"), "w") as f:
            f.writelines(self.lines)


# ---------------------------------------------------------------------------
# Format defects: the header corpus, wrapped as rank file 2
# ---------------------------------------------------------------------------

def wrapped_corpus(s, corpus):
    good = rank_file(base_blocks()[0])
    for fname in sorted(os.listdir(corpus)):
        if not fname.endswith(".safetensors") or "__" not in fname:
            continue
        expected, defect = fname[: -len(".safetensors")].split("__", 1)
        with open(os.path.join(corpus, fname), "rb") as f:
            bad = f.read()
        s.case("fmt_" + defect + "__" + expected, "vcr", expected,
               {rank_name(0): good, rank_name(1): bad})


# ---------------------------------------------------------------------------
# Sharding semantics
# ---------------------------------------------------------------------------

def with_change(fn):
    """The base blocks after fn(ranks) edited them in place."""
    ranks = base_blocks()
    fn(ranks)
    return ranks


def set_block(r, name, **kw):
    def fn(ranks):
        b = find(ranks[r], name)
        for k, v in kw.items():
            setattr(b, k, v)
    return fn


def add_block(r, block):
    return lambda ranks: ranks[r].append(block)


def info_with(r, edit):
    """Per-rank DCP_SHARDING_INFO texts: the real ones, rank r's replaced by edit(dict) -> str."""
    ranks = base_blocks()
    infos = [sharding_info(b) for b in ranks]
    d = json.loads(infos[r])
    infos[r] = edit(d)
    return ranks, infos


def semantic_cases(s):
    E, P, N, S = ("model.embed.weight", "layers.0.proj.weight", "layers.0.norm.weight", "step")
    gap, over = "CoverageGap", "CoverageOverlap"
    # Gaps.
    s.ranks("sem_gap_rows", gap, with_change(set_block(1, E, shape=[1, 6], offsets=[3, 0])))
    s.ranks("sem_gap_first_row", gap, with_change(set_block(0, E, shape=[1, 6], offsets=[1, 0])))
    s.ranks("sem_gap_cols", gap, with_change(set_block(1, P, shape=[3, 1], offsets=[0, 3])))
    # (A missing LAST rank file cannot be seen: global shapes are derived from the blocks.)
    s.ranks("sem_gap_missing_first_rank_file", gap, [None, base_blocks()[1]])
    s.ranks("sem_gap_far_offset", gap,
            with_change(set_block(1, E, offsets=[1 << 40, 0])))
    s.ranks("sem_gap_huge_box", "CoverageGap|ValidationOverflow",
            with_change(set_block(1, P, offsets=[1 << 40, 1 << 40])))
    four = [[Block("conv.weight", "F16", [1, 1, 2], [i, j, 0])] for i in (0, 1) for j in (0, 1)]
    four[3] = [Block("other", "U8", [1], [0])]
    s.ranks("sem_gap_3d_grid_hole", gap, four)
    # Overlaps.
    s.ranks("sem_overlap_rows", over, with_change(set_block(1, E, shape=[3, 6], offsets=[1, 0])))
    s.ranks("sem_overlap_cols", over, with_change(set_block(1, P, shape=[3, 3], offsets=[0, 1])))
    s.ranks("sem_overlap_partial_replica", over,
            with_change(add_block(1, Block(N, "F32", [2], [1]))))
    s.ranks("sem_overlap_full_block", over,
            with_change(set_block(1, E, shape=[4, 6], offsets=[0, 0])))
    # Disagreements between the blocks of one tensor.
    s.ranks("sem_dtype_mismatch", "DtypeMismatch", with_change(set_block(1, E, dtype="F16")))
    s.ranks("sem_dtype_mismatch_width", "DtypeMismatch", with_change(set_block(1, P, dtype="F64")))
    s.ranks("sem_rank_mismatch", "InvalidShardingInfo",
            with_change(set_block(1, E, shape=[12], offsets=[12])))
    # DCP_SHARDING_INFO itself.
    I = "InvalidShardingInfo"
    s.case("sh_no_metadata", "vcr", I,
           {rank_name(0): rank_file(base_blocks()[0], meta="none"),
            rank_name(1): rank_file(base_blocks()[1])})
    s.case("sh_no_sharding_key", "vcr", I,
           {rank_name(0): rank_file(base_blocks()[0], meta={"format": "pt"}),
            rank_name(1): rank_file(base_blocks()[1])})
    edits = {
        "sh_unknown_tensor": lambda d: json.dumps(dict(d, ghost={"saved_offsets": [0]})),
        "sh_missing_tensor": lambda d: json.dumps({k: v for k, v in d.items() if k != S}),
        "sh_offsets_too_long": lambda d: json.dumps(dict(d, **{E: {"saved_offsets": [0, 0, 0]}})),
        "sh_offsets_too_short": lambda d: json.dumps(dict(d, **{E: {"saved_offsets": [0]}})),
        "sh_scalar_with_offset": lambda d: json.dumps(dict(d, **{S: {"saved_offsets": [0]}})),
        "sh_negative_offset": lambda d: json.dumps(dict(d, **{E: {"saved_offsets": [-1, 0]}})),
        "sh_float_offset": lambda d: json.dumps(dict(d, **{E: {"saved_offsets": [0.5, 0]}})),
        "sh_string_offset": lambda d: json.dumps(dict(d, **{E: {"saved_offsets": ["0", 0]}})),
        "sh_offset_overflows_shape":
            lambda d: json.dumps(dict(d, **{E: {"saved_offsets": [U64_MAX, 0]}})),
        "sh_offset_above_u64":
            lambda d: json.dumps(dict(d, **{E: {"saved_offsets": [U64_MAX + 1, 0]}})),
        "sh_offsets_not_array": lambda d: json.dumps(dict(d, **{E: {"saved_offsets": 0}})),
        "sh_entry_not_object": lambda d: json.dumps(dict(d, **{E: [0, 0]})),
        "sh_entry_no_offsets_key": lambda d: json.dumps(dict(d, **{E: {}})),
        "sh_not_json": lambda d: "{" + json.dumps(d)[1:-1],
        "sh_trailing_garbage": lambda d: json.dumps(d) + " x",
        "sh_top_level_array": lambda d: json.dumps(list(d.values())),
        "sh_top_level_string": lambda d: json.dumps("DCP"),
        "sh_empty_text": lambda d: "",
        "sh_duplicate_entry":
            lambda d: json.dumps(d)[:-1] + ', "%s": {"saved_offsets": [0]}}' % S,
    }
    for name, edit in edits.items():
        ranks, infos = info_with(0, edit)
        s.ranks(name, I, ranks, infos)


# ---------------------------------------------------------------------------
# Damaged files and directories
# ---------------------------------------------------------------------------

def damaged_cases(s):
    r0, r1 = (rank_file(b, seed=10 * i) for i, b in enumerate(base_blocks()))
    n1 = struct.unpack("<Q", r1[:8])[0]
    for name, expected, data in [
        ("dmg_truncated_data", "MetadataIncompleteBuffer", r1[:-1]),
        ("dmg_truncated_to_header", "MetadataIncompleteBuffer", r1[: 8 + n1]),
        ("dmg_truncated_in_header", "InvalidHeaderLength", r1[: 8 + n1 // 2]),
        ("dmg_truncated_in_prefix", "HeaderTooSmall", r1[:5]),
        ("dmg_zero_length", "HeaderTooSmall", b""),
        ("dmg_extra_byte", "MetadataIncompleteBuffer", r1 + b"\0"),
        ("dmg_extra_mebibyte", "MetadataIncompleteBuffer", r1 + bytes(1 << 20)),
        ("dmg_prefix_zeroed", "InvalidHeaderDeserialization|HeaderTooSmall",
         bytes(8) + r1[8:]),
        ("dmg_prefix_huge", "HeaderTooLarge", struct.pack("<Q", U64_MAX) + r1[8:]),
        ("dmg_header_bytes_zeroed", "InvalidHeaderDeserialization",
         r1[:8] + bytes(n1) + r1[8 + n1:]),
    ]:
        s.case(name, "vcr", expected, {rank_name(0): r0, rank_name(1): data})
    s.case("dir_empty", "vcr", "NoInput", {})
    s.case("dir_no_safetensors", "vcr", "NoInput", {"README.txt": b"not a checkpoint\n"})


# ---------------------------------------------------------------------------
# Consolidated checkpoints with a broken index (verify, reshard)
# ---------------------------------------------------------------------------

INDEX = "model.safetensors.index.json"
MODEL = "model-%05d-of-%05d.safetensors"


def model_files():
    a = [("embed.weight", "F32", [2, 3], data_bytes(1, 24)), ("step", "I64", [], data_bytes(2, 8))]
    b = [("norm.weight", "BF16", [4], data_bytes(3, 8))]
    return {MODEL % (1, 2): safetensors(a, {"format": "pt"}),
            MODEL % (2, 2): safetensors(b, {"format": "pt"})}, {
        "embed.weight": MODEL % (1, 2), "step": MODEL % (1, 2), "norm.weight": MODEL % (2, 2)}


def index_text(wmap, total=40):
    return json.dumps({"metadata": {"total_size": total}, "weight_map": wmap}, indent=2).encode()


def index_cases(s):
    X = "InvalidIndex"
    files, wmap = model_files()
    s.case("good_index", "vr", "-", dict(files, **{INDEX: index_text(wmap)}))

    def idx(name, expected, text, tools="vr", drop=None, replace=None):
        f = dict(files, **{INDEX: text})
        if drop:
            del f[drop]
        if replace:
            f.update(replace)
        s.case(name, tools, expected, f)

    idx("ix_missing_model_file", X + "|NotFound", index_text(wmap), drop=MODEL % (2, 2))
    idx("ix_names_absent_file", X + "|NotFound",
        index_text(dict(wmap, **{"norm.weight": MODEL % (3, 2)})))
    idx("ix_names_absent_tensor", X + "|TensorNotFound",
        index_text(dict(wmap, ghost=MODEL % (1, 2))))
    idx("ix_tensor_in_wrong_file", X, index_text(dict(wmap, step=MODEL % (2, 2))))
    idx("ix_not_json", X, b'{"metadata": {"total_size": 40}, "weight_map": {')
    idx("ix_empty_file", X, b"")
    idx("ix_top_level_array", X, b"[]")
    idx("ix_no_weight_map", X, b'{"metadata": {"total_size": 40}}')
    idx("ix_weight_map_array", X, b'{"metadata": {"total_size": 40}, "weight_map": []}')
    idx("ix_value_not_string", X, index_text(dict(wmap, step=1)))
    idx("ix_total_size_wrong", X, index_text(wmap, total=41), tools="v")
    idx("ix_model_file_truncated", "MetadataIncompleteBuffer", index_text(wmap),
        replace={MODEL % (2, 2): files[MODEL % (2, 2)][:-2]})
    idx("ix_model_file_bad_header", "InvalidHeaderDeserialization", index_text(wmap),
        replace={MODEL % (2, 2): struct.pack("<Q", 8) + b"{]      "})
    s.case("single_truncated", "vr", "MetadataIncompleteBuffer",
           {"model.safetensors": files[MODEL % (1, 2)][:-1]})
    s.case("single_empty", "vr", "HeaderTooSmall", {"model.safetensors": b""})


def control_cases(s):
    """Valid inputs: every tool must succeed on them."""
    s.ranks("good_ranks", "-", base_blocks())
    s.ranks("good_ranks_duplicate_replica", "-",
            with_change(add_block(1, Block("layers.0.norm.weight", "F32", [4], [0]))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--corpus", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "corpus", "bad"))
    a = ap.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    s = Sweep(a.out)
    control_cases(s)
    wrapped_corpus(s, a.corpus)
    semantic_cases(s)
    damaged_cases(s)
    index_cases(s)
    s.write_manifest()
    bad = sum(1 for line in s.lines if not line.rstrip("\n").endswith("\t-"))
    print("make_bad_inputs: %d cases (%d malformed) in %s" % (len(s.lines), bad, a.out))


if __name__ == "__main__":
    main()
