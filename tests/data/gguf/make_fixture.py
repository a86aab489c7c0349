#!/usr/bin/env python3
"""make_fixture.py: writes gguf_py_tiny.gguf with llama.cpp's own Python writer (gguf-py's
gguf.GGUFWriter, F32/F16 tensors as numpy arrays, Q8_0 and BF16 through gguf.quants.quantize) and
gguf_py_tiny.expected.txt beside it: the metadata and every tensor's values as gguf-py itself reads
them back (gguf.quants.dequantize), as float32 bit patterns. tests/test_gguf.cpp (readsGgufPyFile)
compares LoftQ Studio's reader with that file; it skips while the fixture is absent.

Run (needs network access to PyPI):
    python3 -m venv /tmp/ggufpy && /tmp/ggufpy/bin/pip install gguf numpy
    /tmp/ggufpy/bin/python tests/data/gguf/make_fixture.py
or, without PyPI, with the gguf-py folder of the llama.cpp source that node-llama-cpp ships
(tests/llamacpp/README.md says how to unpack it) and Debian's python3-numpy:
    PYTHONPATH=/tmp/llsrc/gguf-py python3 tests/data/gguf/make_fixture.py
The gguf-py version used is written into the expected file's first line. Deterministic (fixed seed).
Expected-file lines (whitespace-separated; strings hold no spaces):
    kv KEY str|int|float|bool VALUE      kv KEY strs N S1 .. SN
    tensor NAME GGML_TYPE NDIMS D1 .. DN (row-major shape) N HEX1 .. HEXN (float32 bits)"""
import importlib.metadata
import os

import numpy as np
import gguf
from gguf.constants import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

here = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(here, "gguf_py_tiny.gguf")
rng = np.random.default_rng(15)

w = gguf.GGUFWriter(path, arch="llama")  # writes general.architecture = "llama"
def gguf_version():
    try:
        return importlib.metadata.version("gguf")
    except importlib.metadata.PackageNotFoundError:  # gguf-py from a llama.cpp source tree
        toml = os.path.join(os.path.dirname(os.path.dirname(gguf.__file__)), "pyproject.toml")
        for line in open(toml, encoding="utf-8"):
            if line.startswith("version"):
                return line.split("=")[1].strip().strip('"') + " (llama.cpp source tree)"
        return "unknown"


lines = [f"# gguf-py {gguf_version()}, numpy {np.__version__}",
         "kv general.architecture str llama"]
w.add_uint32("llama.block_count", 1); lines.append("kv llama.block_count int 1")
w.add_int32("t.i32", -5); lines.append("kv t.i32 int -5")
w.add_float32("llama.attention.layer_norm_rms_epsilon", 0.5); lines.append("kv llama.attention.layer_norm_rms_epsilon float 0.5")
w.add_bool("t.bool", True); lines.append("kv t.bool bool 1")
w.add_string("tokenizer.ggml.model", "llama"); lines.append("kv tokenizer.ggml.model str llama")
toks = ["<unk>", "<s>", "</s>", "\u2581the"]
w.add_token_list(toks); lines.append("kv tokenizer.ggml.tokens strs %d %s" % (len(toks), " ".join(toks)))

def bits(a):
    a = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    return " ".join("%08x" % v for v in a.view(np.uint32))

def tensor_line(name, gtype, shape, values):
    lines.append("tensor %s %s %d %s %d %s" % (name, gtype, len(shape), " ".join(map(str, shape)), values.size, bits(values)))

# F32 (8, 32): stored as given.
a = rng.standard_normal((8, 32)).astype(np.float32)
w.add_tensor("token_embd.weight", a)
tensor_line("token_embd.weight", "F32", a.shape, a)
# F16 (32,): numpy's float16 (round to nearest even).
b = (rng.standard_normal(32) * 3).astype(np.float16)
w.add_tensor("blk.0.attn_norm.weight", b)
tensor_line("blk.0.attn_norm.weight", "F16", b.shape, b.astype(np.float32))
# Q8_0 (4, 64), one all-zero block and one of large values.
c = rng.standard_normal((4, 64)).astype(np.float32)
c[0, :32] = 0
c[1, 32:] *= 1000
qc = quantize(c, T.Q8_0)
w.add_tensor("blk.0.attn_q.weight", qc, raw_dtype=T.Q8_0)
tensor_line("blk.0.attn_q.weight", "Q8_0", c.shape, dequantize(qc, T.Q8_0))
# BF16 (2, 3, 16).
d = rng.standard_normal((2, 3, 16)).astype(np.float32)
qd = quantize(d, T.BF16)
w.add_tensor("blk.0.ffn_up.weight", qd, raw_dtype=T.BF16)
tensor_line("blk.0.ffn_up.weight", "BF16", d.shape, dequantize(qd, T.BF16))

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
with open(os.path.join(here, "gguf_py_tiny.expected.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
print("wrote", path, os.path.getsize(path), "bytes")
