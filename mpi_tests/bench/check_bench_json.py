#!/usr/bin/env python3
"""check_bench_json.py REPORT RANKS ITERATIONS OPS KEEP [CHECK]

Checks the structure and the internal consistency of a `stshard bench --json`
report (never a timing): the keys, one sample per iteration and per rank for
every operation in OPS (comma-separated) and no other, per-rank bytes adding
up to the total, the time being the slowest rank's, the summary agreeing with
the samples, byte counts matching the model, the raw references and
fractions, and whether the work directory was kept (KEEP 1) or removed.
With CHECK 1, the read-back check must have compared elements and found none
differing.  Exits 1 with every failure listed.
"""
import json
import math
import os
import re
import sys

GIB = float(1 << 30)
errors = []


def need(cond, what):
    if not cond:
        errors.append(what)
    return cond


def close(a, b, rel=1e-6):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def check_op(op, np, iters, model_bytes):
    name = op["operation"]
    its = op["iterations"]
    need(len(its) == iters, f"{name}: {len(its)} iterations, expected {iters}")
    gibs = []
    for it in its:
        tag = f"{name} iteration {it.get('iteration')}"
        rs, rb = it["rank_seconds"], it["rank_bytes"]
        need(len(rs) == np and len(rb) == np, f"{tag}: per-rank arrays are not {np} long")
        need(sum(rb) == it["bytes"], f"{tag}: rank bytes add up to {sum(rb)}, not {it['bytes']}")
        need(close(max(rs), it["seconds"]), f"{tag}: seconds is not the slowest rank's")
        need(it["seconds"] > 0, f"{tag}: no time measured")
        need(close(it["gib_per_s"], it["bytes"] / it["seconds"] / GIB), f"{tag}: GiB/s != bytes/s")
        gibs.append(it["gib_per_s"])
        if name in ("save", "consolidate", "fpp-write", "fpp-read", "shared-write", "shared-read"):
            need(it["bytes"] == model_bytes, f"{tag}: {it['bytes']} bytes, model has {model_bytes}")
        if name == "load":
            need(it["bytes"] >= model_bytes, f"{tag}: loaded {it['bytes']} < model {model_bytes}")
        if name in ("save", "consolidate", "load"):
            need(it.get("library_seconds", 0) > 0, f"{tag}: no library_seconds")
    s = op["summary"]
    if gibs:
        mean = sum(gibs) / len(gibs)
        sd = math.sqrt(sum((g - mean) ** 2 for g in gibs) / len(gibs))
        need(close(s["max_gib_per_s"], max(gibs)), f"{name}: summary max")
        need(close(s["min_gib_per_s"], min(gibs)), f"{name}: summary min")
        need(close(s["mean_gib_per_s"], mean), f"{name}: summary mean")
        need(close(s["stddev_gib_per_s"], sd, 1e-5), f"{name}: summary stddev")
    need(s["imbalance_bytes"] >= 1.0 - 1e-9, f"{name}: byte imbalance below 1")
    need(s["imbalance_time"] >= 1.0 - 1e-9, f"{name}: time imbalance below 1")
    return s


def main():
    path, np, iters, ops, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    want_check = len(sys.argv) > 6 and sys.argv[6] == "1"
    with open(path) as f:
        r = json.load(f)
    for k in ("tool", "version", "command_line", "began", "finished", "environment", "options",
              "model", "operations", "raw_gib_per_s", "drop_caches"):
        need(k in r, f"missing key {k}")
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
    need(iso.match(r["began"]) and iso.match(r["finished"]), "dates are not ISO 8601 UTC")
    env = r["environment"]
    need(env["ranks"] == np, f"environment.ranks {env['ranks']} != {np}")
    need(env["nodes"] >= 1 and env["host"], "host/nodes missing")
    need(env["mpi_library"] != "", "mpi_library empty")
    for k in ("loadavg_began", "loadavg_finished"):
        need(len(env[k]) == 3, f"{k} does not have the 1, 5 and 15 minute averages")
    need(env["mpiio_component"] in ("ompio", "romio321", "unknown"), "mpiio_component")
    need(isinstance(env["hints_in_effect"], dict), "hints_in_effect is not an object")
    hints = os.environ.get("STSHARD_MPI_HINTS")
    need(env["stshard_mpi_hints"] == hints, f"stshard_mpi_hints {env['stshard_mpi_hints']!r} != {hints!r}")
    model_bytes = r["model"]["bytes"]
    need(model_bytes > 0 and r["model"]["tensors"] > 0, "model is empty")
    names = [op["operation"] for op in r["operations"]]
    need(sorted(names) == sorted(ops.split(",")), f"operations {names} != {ops}")
    summaries = {op["operation"]: check_op(op, np, iters, model_bytes) for op in r["operations"]}
    raw = r["raw_gib_per_s"]
    base = r["options"]["baseline"]
    if base:
        w = max(summaries[n]["mean_gib_per_s"] for n in ("fpp-write", "shared-write"))
        rd = max(summaries[n]["mean_gib_per_s"] for n in ("fpp-read", "shared-read"))
        need(close(raw["write"], w) and close(raw["read"], rd), "raw write/read are not the better baselines")
        need(close(raw["copy"], 1 / (1 / rd + 1 / w)), "raw copy != 1/(1/read + 1/write)")
    for phase, ref in (("save", "write"), ("consolidate", "copy"), ("load", "read")):
        if phase not in summaries:
            continue
        s = summaries[phase]
        if base:
            need(s.get("raw_reference") == ref, f"{phase}: raw_reference {s.get('raw_reference')}")
            need(close(s.get("fraction_of_raw", -1), s["mean_gib_per_s"] / raw[ref]), f"{phase}: fraction")
        else:
            need("fraction_of_raw" not in s, f"{phase}: a fraction without baselines")
    d = r["drop_caches"]
    if d["requested"]:
        need(d["done"] + d["skipped"] > 0, "drop_caches requested but neither done nor skipped")
        need(d["skipped"] == 0 or d["skipped_reason"], "skipped drops without a reason")
    else:
        need(d["done"] == 0 and d["skipped"] == 0, "drops without --drop-caches")
    work = r["options"]["work_dir"]
    if keep == "1":
        need(os.path.isdir(work), f"--keep, but {work} is gone")
    else:
        need(not os.path.exists(work), f"{work} was not removed")
    if want_check:
        c = r.get("check", {})
        need(c.get("elements", 0) > 0 and c.get("mismatches") == 0, f"check: {c}")
    if errors:
        print("\n".join("FAIL: " + e for e in errors))
        return 1
    print(f"ok: {len(names)} operations x {iters} iterations x {np} ranks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
