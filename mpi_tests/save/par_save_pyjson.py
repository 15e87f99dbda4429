#!/usr/bin/env python3
"""par_save_pyjson.py DIR... - an independent reader of the rank files par_save wrote.

For every shard-*.safetensors in each DIR, with Python's own json module:
the header parses; __metadata__ has exactly DCP_SHARDING_INFO, DCP_VERSION "1.0"
and format "pt"; DCP_SHARDING_INFO is byte for byte what json.dumps (PyTorch's
writer) produces for the same dict, with its entries in the header's tensor
order and one offset per dimension; the data offsets tile the data section.
"""
import glob
import json
import os
import struct
import sys

files = 0
for d in sys.argv[1:]:
    for path in sorted(glob.glob(os.path.join(d, "shard-*-model-*-of-*.safetensors"))):
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
        meta = header.pop("__metadata__")
        assert sorted(meta) == ["DCP_SHARDING_INFO", "DCP_VERSION", "format"], path
        assert meta["DCP_VERSION"] == "1.0" and meta["format"] == "pt", path
        info = meta["DCP_SHARDING_INFO"]
        parsed = json.loads(info)
        assert json.dumps(parsed) == info, (path, info[:300])
        assert list(parsed) == list(header), path
        end = 0
        for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
            assert len(parsed[name]["saved_offsets"]) == len(t["shape"]), (path, name)
            assert t["data_offsets"][0] == end, (path, name)
            end = t["data_offsets"][1]
        assert 8 + n + end == os.path.getsize(path), path
        files += 1
assert files > 0, "no rank files found"
print(f"par_save_pyjson: {files} rank files match Python's json.dumps")
