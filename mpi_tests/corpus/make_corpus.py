#!/usr/bin/python3
"""Writes the safetensors header corpus: one file per defect in bad/, named
<ExpectedErrorName>__<defect>.safetensors, and legal edge cases in good/.

Run with /usr/bin/python3 (standard library only).  The output is committed;
the test corpus_fresh re-runs this script into a scratch directory and
compares, so edit this script, re-run it, and commit both.

    /usr/bin/python3 mpi_tests/corpus/make_corpus.py [--out DIR]

The 100,000,000-byte header case is not here: corpus_check --big writes it
into the build tree at test time.
"""
import argparse
import json
import os
import struct
import sys

BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8,
    "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16,
    "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64,
    "U64": 64,
}
RANK = {name: i for i, name in enumerate(BITS)}


def raw(header, data_len=0, n=None):
    """Prefix + header bytes + data_len zero bytes; n overrides the length prefix."""
    if isinstance(header, str):
        header = header.encode("utf-8")
    if n is None:
        n = len(header)
    return struct.pack("<Q", n) + header + bytes(data_len)


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def nbytes(dtype, shape):
    numel = 1
    for s in shape:
        numel *= s
    return numel * BITS[dtype] // 8


def canonical(tensors, metadata=None):
    """A file as the reference writer lays it out: tensors is {name: (dtype, shape)}."""
    order = sorted(tensors, key=lambda k: (-RANK[tensors[k][0]], k.encode("utf-8")))
    head, off = {}, 0
    if metadata is not None:
        head["__metadata__"] = dict(sorted(metadata.items()))
    for name in order:
        dtype, shape = tensors[name]
        size = nbytes(dtype, shape)
        head[name] = entry(dtype, shape, off, off + size)
        off += size
    text = json.dumps(head, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return raw(text, off)


T4 = '"%s":{"dtype":"F32","shape":[1],"data_offsets":[%d,%d]}'


def t4(name, b, e):
    return T4 % (name, b, e)


def obj(*entries):
    return "{" + ",".join(entries) + "}"


def bad_cases():
    c = {}
    # Prefix rules.
    c["HeaderTooSmall__empty"] = b""
    c["HeaderTooSmall__seven_bytes"] = b"\x02\x00\x00\x00\x00\x00\x00"
    c["HeaderTooSmall__one_byte"] = b"{"
    c["HeaderTooLarge__n_100000001"] = raw("{}", 0, n=100000001)
    c["HeaderTooLarge__n_u64_max"] = b"\xff" * 8 + b"{}"
    c["HeaderTooLarge__n_2pow63"] = raw("{}", 0, n=1 << 63)
    c["InvalidHeaderLength__past_eof"] = raw(obj(t4("a", 0, 4)), 0, n=200)
    c["InvalidHeaderLength__n_limit_small_file"] = raw("{}", 0, n=100000000)
    c["InvalidHeaderLength__one_past_eof"] = raw("{}      ", 0, n=9)
    # Not UTF-8.
    c["InvalidHeader__byte_ff"] = raw(b'{"a\xff":' + b'{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4)
    c["InvalidHeader__overlong_slash"] = raw(b'{"\xc0\xaf":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4)
    c["InvalidHeader__utf8_surrogate"] = raw(b'{"\xed\xa0\x80":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4)
    c["InvalidHeader__truncated_sequence"] = raw(b'{}    \xe2\x82', 0)
    c["InvalidHeader__latin1_name"] = raw('{"caf\xe9":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'.encode("latin-1"), 4)
    c["InvalidHeader__above_10ffff"] = raw(b'{"\xf4\x90\x80\x80":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4)
    # JSON syntax and types.
    D = "InvalidHeaderDeserialization__"
    c[D + "empty_header"] = raw("", 0)
    c[D + "top_level_array"] = raw("[]      ", 0)
    c[D + "trailing_comma"] = raw(obj(t4("a", 0, 4)) [:-1] + ",}", 4)
    c[D + "trailing_garbage"] = raw(obj(t4("a", 0, 4)) + " x", 4)
    c[D + "nul_padding"] = raw(obj(t4("a", 0, 4)).encode() + b"\0" * 4, 4)
    c[D + "unknown_dtype"] = raw('{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}', 16)
    c[D + "lowercase_dtype"] = raw('{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}', 4)
    c[D + "negative_dim"] = raw('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', 4)
    c[D + "float_offset"] = raw('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4.0]}}', 4)
    c[D + "exponent_dim"] = raw('{"a":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}}', 4)
    c[D + "leading_zero"] = raw('{"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}', 4)
    c[D + "offset_above_u64"] = raw('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551616]}}', 4)
    c[D + "three_offsets"] = raw('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,4]}}', 4)
    c[D + "missing_dtype"] = raw('{"a":{"shape":[1],"data_offsets":[0,4]}}', 4)
    c[D + "missing_offsets"] = raw('{"a":{"dtype":"F32","shape":[1]}}', 4)
    c[D + "duplicate_field"] = raw('{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4)
    c[D + "tensor_as_array"] = raw('{"a":["F32",[1],[0,4]]}', 4)
    c[D + "metadata_int_value"] = raw('{"__metadata__":{"step":1}}', 0)
    c[D + "metadata_array"] = raw('{"__metadata__":["format","pt"]}', 0)
    c[D + "lone_surrogate_escape"] = raw('{"a\\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4)
    c[D + "raw_tab_in_name"] = raw('{"a\tb":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4)
    c[D + "nul_in_name"] = raw(b'{"a\0b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4)
    c[D + "vertical_tab_whitespace"] = raw("\x0b{}", 0)
    c[D + "unterminated"] = raw('{"a":{"dtype":"F32"', 0)
    # Offsets and sizes.
    c["InvalidOffset__gap"] = raw(obj(t4("a", 0, 4), t4("b", 8, 12)), 12)
    c["InvalidOffset__overlap"] = raw(obj(t4("a", 0, 4), t4("b", 2, 6)), 6)
    c["InvalidOffset__first_not_zero"] = raw(obj(t4("a", 4, 8)), 8)
    c["InvalidOffset__end_before_begin"] = raw(
        '{"z":{"dtype":"F32","shape":[0],"data_offsets":[4,0]},' + t4("a", 0, 4) + "}", 4)
    c["ValidationOverflow__numel"] = raw(
        '{"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}}', 0)
    c["ValidationOverflow__bits"] = raw(
        '{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}}', 0)
    c["MisalignedSlice__f4_odd"] = raw('{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}}', 1)
    c["MisalignedSlice__f6_two"] = raw('{"a":{"dtype":"F6_E3M2","shape":[2],"data_offsets":[0,1]}}', 1)
    c["TensorInvalidInfo__span_too_small"] = raw('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', 4)
    c["TensorInvalidInfo__span_too_large"] = raw('{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,8]}}', 8)
    c["TensorInvalidInfo__scalar_zero_span"] = raw('{"a":{"dtype":"F32","shape":[],"data_offsets":[0,0]}}', 0)
    c["MetadataIncompleteBuffer__extra_byte"] = raw(obj(t4("a", 0, 4)), 5)
    c["MetadataIncompleteBuffer__missing_byte"] = raw(obj(t4("a", 0, 4)), 3)
    c["MetadataIncompleteBuffer__empty_with_data"] = raw("{}", 1)
    # Our stricter rules.
    c["DuplicateName__tensor_twice"] = raw(obj(t4("a", 0, 4), t4("a", 4, 8)), 8)
    c["DuplicateName__tensor_twice_escaped"] = raw(obj(t4("a", 0, 4), t4("\\u0061", 4, 8)), 8)
    c["DuplicateName__metadata_key_twice"] = raw('{"__metadata__":{"format":"pt","format":"pt"}}', 0)
    c["DuplicateName__metadata_twice"] = raw('{"__metadata__":{"a":"1"},"__metadata__":{"b":"2"}}', 0)
    c["ReservedName__tensor_named_metadata"] = raw(
        '{"__metadata__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4)
    c["ReservedName__after_tensor"] = raw(
        "{" + t4("a", 0, 4) + ',"__metadata__":{"shape":[],"dtype":"U8","data_offsets":[4,5]}}', 5)
    c["UnknownKey__extra_key"] = raw(
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"strides":[1]}}', 4)
    c["UnknownKey__case_variant"] = raw(
        '{"a":{"Dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4)
    c["UnknownKey__null_valued"] = raw(
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"requires_grad":null}}', 4)
    return c


def good_cases():
    c = {}
    c["empty_object"] = canonical({})
    c["empty_object_unpadded"] = raw("{}", 0)
    c["scalar"] = canonical({"s": ("F64", [])})
    c["zero_size"] = canonical({"z": ("F32", [3, 0])})
    c["zero_size_shared_offsets"] = raw(
        '{"z1":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},' + t4("a", 0, 4)
        + ',"z2":{"dtype":"I8","shape":[0,5],"data_offsets":[4,4]},'
        + '"z0":{"dtype":"I8","shape":[0],"data_offsets":[0,0]},' + t4("b", 4, 8) + "}", 8)
    c["whitespace_around"] = raw(" \t\r\n" + obj(t4("a", 0, 4)) + "\n\r\t   ", 4)
    c["whitespace_inside"] = raw('{ "a" : { "data_offsets" : [ 0 , 4 ] ,\n "shape" : [ 1 ] ,'
                                 '\t"dtype" : "F32" } }', 4)
    c["metadata_null"] = raw('{"__metadata__":null,' + t4("a", 0, 4) + "}", 4)
    c["metadata_empty"] = raw('{"__metadata__":{}}', 0)
    c["metadata_tensor_like_keys"] = raw('{"__metadata__":{"dtype":"F32","shape":"[1]"}}', 0)
    c["golden_attn_0"] = canonical({"attn.0": ("F32", [1, 2, 3])})
    c["golden_attn0"] = canonical({"attn0": ("F32", [1, 1, 2, 3])})
    c["golden_i32_f16"] = canonical({"test1": ("I32", [2, 2]), "test2": ("F16", [2, 2])})
    c["all_dtypes"] = canonical({"t_" + d.lower(): (d, [2, 4]) for d in BITS})
    c["sub_byte"] = canonical({"f4": ("F4", [2]), "f6": ("F6_E2M3", [4]), "f6b": ("F6_E3M2", [8])})
    c["unicode_names"] = canonical({"caf\u00e9": ("U8", [1]), "\U0001f600": ("U8", [2]),
                                    "esc\"\\\n\x01": ("U8", [3])})
    c["escaped_names"] = raw('{"\\u0041\\/\\b\\f\\r\\t\\u00e9\\ud83d\\ude00\\u0000x":'
                             '{"\\u0064type":"F\\u00332","shape":[],"data_offsets":[0,4]}}', 4)
    head = {"w": {"shape": [2, 3], "dtype": "BF16", "data_offsets": [0, 12]},
            "b": {"shape": [3], "dtype": "F32", "data_offsets": [12, 24]}}
    c["pytorch_layout"] = raw(json.dumps(head), 24)
    c["dcp_rank_file"] = canonical(
        {"w": ("BF16", [2, 3]), "b": ("F32", [3]), "step": ("I64", [])},
        {"DCP_SHARDING_INFO": json.dumps({"w": {"saved_offsets": [4, 0]},
                                          "b": {"saved_offsets": [3]},
                                          "step": {"saved_offsets": []}}),
         "DCP_VERSION": "1.0", "format": "pt"})
    c["u64_limits"] = raw('{"a":{"dtype":"U8","shape":[0,18446744073709551615],'
                          '"data_offsets":[0,0]}}', 0)
    c["unsorted_offsets"] = raw(obj(t4("c", 8, 12), t4("a", 0, 4), t4("b", 4, 8)), 12)
    return c


def write_dir(path, cases):
    os.makedirs(path, exist_ok=True)
    for f in os.listdir(path):
        if f.endswith(".safetensors"):
            os.remove(os.path.join(path, f))
    for name, data in sorted(cases.items()):
        with open(os.path.join(path, name + ".safetensors"), "wb") as f:
            f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()
    write_dir(os.path.join(a.out, "bad"), bad_cases())
    write_dir(os.path.join(a.out, "good"), good_cases())
    return 0


if __name__ == "__main__":
    sys.exit(main())
