#!/usr/bin/env python3
"""Independent reference for cairn's GGUF reader (tests/test_gguf.cpp), built on gguf-py.

  gguf_reference.py synth OUTDIR
      Writes OUTDIR/ref.gguf (metadata of every value type, tensors of every type cairn dequantizes,
      awkward 1- to 4-D shapes) and OUTDIR/ref_align64.gguf (general.alignment = 64) with
      gguf.GGUFWriter, then OUTDIR/expected.json and one OUTDIR/<file>.<i>.f32 per tensor.
  gguf_reference.py dequant FILE OUTDIR NAME...
      Writes OUTDIR/<k>.f32 for the k-th named tensor of an existing GGUF file (the SmolLM2 test).

Every .f32 is gguf.quants.dequantize() of the tensor's bytes as read back by gguf.GGUFReader, as raw
little-endian float32 in the file's element order (ne[0] fastest). Types gguf.quants can quantize
(Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 BF16) are quantized from random floats; every quantized type, K-quants
included, also gets a tensor of random block bytes whose f16 scales are overwritten with finite,
model-sized values. expected.json lists each file's keys in order, their types and values, and each
tensor's name, type, ne, offset and .f32 file.
"""
import json
import os
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as V

# Byte offsets of the f16 scale fields in one block of each quantized type (ggml-common.h layouts).
F16_FIELDS = {
    Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q8_0: [0],
    Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208],
}
QUANTIZABLE = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0]
VALUE_TYPE_NAMES = {V.UINT8: "u8", V.INT8: "i8", V.UINT16: "u16", V.INT16: "i16", V.UINT32: "u32",
                    V.INT32: "i32", V.UINT64: "u64", V.INT64: "i64", V.FLOAT32: "f32", V.FLOAT64: "f64",
                    V.BOOL: "bool", V.STRING: "string", V.ARRAY: "array"}


def f32(x):
    return float(np.float32(x))  # the double that a stored f32 widens to


# (key, value, type, element type for arrays): every scalar type, every array element type, strings
# with non-ASCII and empty ones, and arrays of arrays (mixed element types, three levels deep).
METADATA = [
    ("t.u8", 200, V.UINT8, None),
    ("t.i8", -100, V.INT8, None),
    ("t.u16", 60000, V.UINT16, None),
    ("t.i16", -30000, V.INT16, None),
    ("t.u32", 4000000000, V.UINT32, None),
    ("t.i32", -2000000000, V.INT32, None),
    ("t.u64", 12345678901234567, V.UINT64, None),
    ("t.u64_max", 2**64 - 1, V.UINT64, None),
    ("t.i64", -2**63, V.INT64, None),
    ("t.f32", f32(3.14159), V.FLOAT32, None),
    ("t.f64", -2.718281828459045e-300, V.FLOAT64, None),
    ("t.bool_true", True, V.BOOL, None),
    ("t.bool_false", False, V.BOOL, None),
    ("t.string", "héllo wörld 字 🙂 \"quoted\" \\ tab\t", V.STRING, None),
    ("t.empty_string", "", V.STRING, None),
    ("t.arr_u8", [0, 1, 255, 128], V.ARRAY, V.UINT8),
    ("t.arr_i8", [-128, 127, 0], V.ARRAY, V.INT8),
    ("t.arr_u16", [65535, 1], V.ARRAY, V.UINT16),
    ("t.arr_i16", [-32768, 32767], V.ARRAY, V.INT16),
    ("t.arr_u32", [4294967295, 7], V.ARRAY, V.UINT32),
    ("t.arr_i32", [-2147483648, 2147483647, 5], V.ARRAY, V.INT32),
    ("t.arr_u64", [2**63 - 1, 3], V.ARRAY, V.UINT64),
    ("t.arr_i64", [-2**63, 2**63 - 1], V.ARRAY, V.INT64),
    ("t.arr_f32", [f32(0.1), f32(-1e30), f32(1.5e-40)], V.ARRAY, V.FLOAT32),
    ("t.arr_f64", [0.1, -1e300, 5e-324], V.ARRAY, V.FLOAT64),
    ("t.arr_bool", [True, False, True], V.ARRAY, V.BOOL),
    ("t.arr_string", ["a", "", "Ġthe", "字🙂", "x" * 300], V.ARRAY, V.STRING),
    ("t.arr_nested", [[1, 2, 3], ["x", "yz"], [[f32(0.5)], [True]]], V.ARRAY, V.ARRAY),
]


def typed(value, vtype):
    """The JSON description of a value as GGUFWriter stores it (arrays of arrays: INT32 / FLOAT32 /
    BOOL / STRING elements chosen by gguf.GGUFValueType.get_type, as the writer does)."""
    if isinstance(value, list):
        elem = gguf.GGUFValueType.get_type(value[0]) if vtype is None else vtype
        if elem == V.ARRAY:
            return {"type": "array", "elem": "array", "value": [typed(v, None) for v in value]}
        return {"type": "array", "elem": VALUE_TYPE_NAMES[elem], "value": value}
    t = gguf.GGUFValueType.get_type(value) if vtype is None else vtype
    return {"type": VALUE_TYPE_NAMES[t], "value": value}


def random_blocks(rng, qtype, rows, row_elems):
    """Random block bytes for `rows` rows of `row_elems` elements, f16 scales set to finite values."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    data = rng.integers(0, 256, size=(rows * (row_elems // block), size), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        scale = rng.uniform(-0.05, 0.05, size=data.shape[0]).astype(np.float16)
        data[:, off:off + 2] = scale.view(np.uint8).reshape(-1, 2)
    return data.reshape(rows, (row_elems // block) * size)


def weights(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32) * np.float32(0.02)
    flat = x.reshape(-1)
    flat[:: 37] *= 40  # outliers, so the block scales differ a lot
    return x


def add_quantized(w, name, data, qtype):
    """data: float32 (PyTorch order, last axis innermost) or uint8 blocks already in qtype."""
    q = data if data.dtype == np.uint8 else gguf.quants.quantize(data, qtype)
    w.add_tensor(name, q, raw_dtype=qtype)
    return q


def write_synth(path, alignment, tensors):
    w = gguf.GGUFWriter(path, arch="cairn-test")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, value, vtype, sub in METADATA:
        w.add_key_value(key, value, vtype, sub_type=sub)
    expected_raw = {}
    for name, qtype, data in tensors:
        if qtype == Q.F32 or qtype == Q.F16:
            w.add_tensor(name, data)
            expected_raw[name] = data
        else:
            expected_raw[name] = add_quantized(w, name, data, qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expected_raw


def special_f16():
    bits = np.array([0x0000, 0x8000, 0x0001, 0x83FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x3C00],
                    dtype=np.uint16)
    return bits.view(np.float16)


def synth_tensors(rng):
    f16 = rng.standard_normal((6, 33)).astype(np.float16)
    f16.reshape(-1)[: len(special_f16())] = special_f16()
    f32 = rng.standard_normal((3, 5, 7)).astype(np.float32)
    f32.reshape(-1)[:6] = np.array([0x00000000, 0x80000000, 0x00000001, 0x7F800000, 0xFF800000, 0x7FC00001],
                                   dtype=np.uint32).view(np.float32)
    bf16_src = rng.standard_normal((4, 19)).astype(np.float32)
    bf16_src.reshape(-1)[:3] = np.array([1e-40, -3e38, 0.0], dtype=np.float32)
    t = [
        ("f32.3d", Q.F32, f32),
        ("f32.1d", Q.F32, rng.standard_normal(10).astype(np.float32)),
        ("f32.4d", Q.F32, rng.standard_normal((2, 3, 2, 4)).astype(np.float32)),
        ("f16.2d", Q.F16, f16),
        ("bf16.2d", Q.BF16, bf16_src),
        ("q8_0.2d", Q.Q8_0, weights(rng, (5, 96))),
        ("q8_0.1d", Q.Q8_0, weights(rng, (64,))),
        ("q4_0.3d", Q.Q4_0, weights(rng, (3, 4, 64))),
        ("q4_1.2d", Q.Q4_1, weights(rng, (7, 32))),
        ("q5_0.2d", Q.Q5_0, weights(rng, (2, 160))),
        ("q5_1.3d", Q.Q5_1, weights(rng, (3, 2, 96))),
    ]
    raw_shapes = {Q.Q4_0: (3, 64), Q.Q4_1: (2, 96), Q.Q5_0: (4, 32), Q.Q5_1: (3, 64), Q.Q8_0: (2, 128),
                  Q.Q2_K: (3, 512), Q.Q3_K: (2, 256), Q.Q4_K: (2, 3, 512), Q.Q5_K: (4, 256), Q.Q6_K: (3, 768)}
    for qtype, shape in raw_shapes.items():
        rows = int(np.prod(shape[:-1]))
        data = random_blocks(rng, qtype, rows, shape[-1])
        data = data.reshape(*shape[:-1], data.shape[-1])
        t.append((f"{qtype.name.lower()}.raw.{len(shape)}d", qtype, data))
    return t


def dump_tensors(path, outdir, stem, names=None):
    """Dequantizes tensors of `path` with gguf.quants; returns their descriptions."""
    reader = gguf.GGUFReader(path)
    by_name = {t.name: t for t in reader.tensors}
    out = []
    for k, name in enumerate(names if names is not None else by_name):
        t = by_name[name]
        x = gguf.quants.dequantize(t.data, t.tensor_type).astype("<f4", copy=False)
        assert x.size == t.n_elements, name
        fname = f"{stem}{k}.f32"
        x.tofile(os.path.join(outdir, fname))
        out.append({"name": name, "type": t.tensor_type.name, "ne": [int(n) for n in t.shape],
                    "offset": int(t.data_offset - reader.data_offset), "n_bytes": int(t.n_bytes), "f32": fname})
    return reader, out


def synth(outdir):
    rng = np.random.default_rng(20250101)
    files = []
    for fname, alignment, tensors in [
        ("ref.gguf", None, synth_tensors(rng)),
        ("ref_align64.gguf", 64, [("a.q8_0", Q.Q8_0, weights(rng, (3, 32))),
                                  ("b.f32", Q.F32, rng.standard_normal(3).astype(np.float32)),
                                  ("c.q6_k", Q.Q6_K, random_blocks(rng, Q.Q6_K, 1, 256))]),
    ]:
        path = os.path.join(outdir, fname)
        written = write_synth(path, alignment, tensors)
        reader, descs = dump_tensors(path, outdir, fname + ".")
        # The reader must see exactly the bytes the writer was given.
        for t in reader.tensors:
            assert np.array_equal(np.asarray(t.data).reshape(-1).view(np.uint8),
                                  np.ascontiguousarray(written[t.name]).reshape(-1).view(np.uint8)), t.name
        keys = [k for k in reader.fields if not k.startswith("GGUF.")]
        kv = {"general.architecture": typed("cairn-test", V.STRING)}
        if alignment is not None:
            kv["general.alignment"] = typed(alignment, V.UINT32)
        for key, value, vtype, sub in METADATA:
            kv[key] = typed(value, sub if vtype == V.ARRAY else vtype)
        assert sorted(keys) == sorted(kv), (keys, list(kv))
        files.append({"path": fname, "alignment": alignment or 32, "keys": keys, "kv": kv, "tensors": descs})
    with open(os.path.join(outdir, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"files": files}, f, ensure_ascii=False, indent=1)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "synth":
        synth(sys.argv[2])
    elif len(sys.argv) >= 5 and sys.argv[1] == "dequant":
        dump_tensors(sys.argv[2], sys.argv[3], "", sys.argv[4:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
