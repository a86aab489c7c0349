#!/usr/bin/env python3
"""Developer tool (NOT run by the tests): convert the llama2.c demo checkpoint
(resources/models/stories260K/stories260K.bin + tok512.bin) into reference GGUF
files written by llama.cpp's own Python writer (gguf-py), so that our GGUF
export can be compared with an independent one.

The gguf-py package must be importable, e.g. either
    python3 -m venv /tmp/ggufpy && /tmp/ggufpy/bin/pip install gguf numpy
or (no PyPI access) the gguf-py folder of the llama.cpp source that ships with
node-llama-cpp, used with Debian's python3-numpy:
    git clone -q tests/llamacpp/node_modules/node-llama-cpp/llama/gitRelease.bundle /tmp/llsrc
    PYTHONPATH=/tmp/llsrc/gguf-py /usr/bin/python3 tests/llamacpp/reference_gguf.py

Usage: reference_gguf.py [--model BIN] [--tokenizer BIN] [--out-dir DIR]
Writes DIR/stories260K-ref-f32.gguf and DIR/stories260K-ref-f16.gguf (DIR=/tmp).
"""
import argparse
import os
import struct

import numpy as np
import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_DIR = os.path.join(HERE, "..", "..", "resources", "models", "stories260K")


def read_checkpoint(path):
    """llama2.c checkpoint: 7 x int32 header, then float32 arrays (see run.c)."""
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack("<7i", data[:28])
    tied = vocab > 0  # negative vocab_size means a separate classifier follows
    vocab = abs(vocab)
    kv_dim = dim * n_kv_heads // n_heads
    flat = np.frombuffer(data, dtype="<f4", offset=28)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        a = flat[pos:pos + n].reshape(shape)
        pos += n
        return a

    L = n_layers
    w = {
        "tok": take(vocab, dim), "rms_att": take(L, dim),
        "wq": take(L, dim, dim), "wk": take(L, kv_dim, dim), "wv": take(L, kv_dim, dim),
        "wo": take(L, dim, dim), "rms_ffn": take(L, dim),
        "w1": take(L, hidden, dim), "w2": take(L, dim, hidden), "w3": take(L, hidden, dim),
        "rms_final": take(dim),
    }
    pos += seq_len * (dim // n_heads // 2) * 2  # freq_cis_real / imag (unused)
    if not tied:
        w["wcls"] = take(vocab, dim)
    cfg = dict(dim=dim, hidden=hidden, n_layers=L, n_heads=n_heads,
               n_kv_heads=n_kv_heads, vocab=vocab, seq_len=seq_len, tied=tied)
    return cfg, w


def read_tokenizer(path, vocab):
    """llama2.c tokenizer: int32 max_token_length, then (f32 score, i32 len, bytes)."""
    tokens, scores, types = [], [], []
    with open(path, "rb") as f:
        f.read(4)
        for i in range(vocab):
            score, n = struct.unpack("<fi", f.read(8))
            text = f.read(n).decode("utf-8")
            if i == 0:
                text, t = "<unk>", gguf.TokenType.UNKNOWN
            elif i == 1:
                text, t = "<s>", gguf.TokenType.CONTROL     # llama2.c stores "\n<s>\n"
            elif i == 2:
                text, t = "</s>", gguf.TokenType.CONTROL
            elif 3 <= i <= 258:
                assert text == "<0x%02X>" % (i - 3), (i, text)
                t = gguf.TokenType.BYTE
            else:
                t = gguf.TokenType.NORMAL
            # llama2.c replaced SentencePiece's U+2581 by ' '; GGUF wants it back.
            tokens.append(text.replace(" ", "\u2581"))
            scores.append(score)
            types.append(int(t))
    return tokens, scores, types


def write_gguf(path, cfg, w, vocab, f16):
    tokens, scores, types = vocab
    wr = gguf.GGUFWriter(path, "llama")
    wr.add_name("stories260K")
    wr.add_context_length(cfg["seq_len"])
    wr.add_embedding_length(cfg["dim"])
    wr.add_block_count(cfg["n_layers"])
    wr.add_feed_forward_length(cfg["hidden"])
    wr.add_head_count(cfg["n_heads"])
    wr.add_head_count_kv(cfg["n_kv_heads"])
    wr.add_rope_dimension_count(cfg["dim"] // cfg["n_heads"])
    wr.add_rope_freq_base(10000.0)
    wr.add_layer_norm_rms_eps(1e-5)
    wr.add_vocab_size(cfg["vocab"])
    wr.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    wr.add_tokenizer_model("llama")
    wr.add_token_list(tokens)
    wr.add_token_scores(scores)
    wr.add_token_types(types)
    wr.add_bos_token_id(1)
    wr.add_eos_token_id(2)
    wr.add_unk_token_id(0)
    wr.add_add_bos_token(True)
    wr.add_add_eos_token(False)

    def t(name, a):
        # numpy (rows=out, cols=in) == ggml ne[0]=in, ne[1]=out. Norms stay F32.
        a = np.ascontiguousarray(a, dtype=np.float32)
        wr.add_tensor(name, a.astype(np.float16) if (f16 and a.ndim == 2) else a)

    # llama2.c q/k rows already use the interleaved-pair RoPE layout of the
    # LLAMA architecture (Meta's layout), so no permutation is applied.
    t("token_embd.weight", w["tok"])
    for i in range(cfg["n_layers"]):
        t(f"blk.{i}.attn_norm.weight", w["rms_att"][i])
        t(f"blk.{i}.attn_q.weight", w["wq"][i])
        t(f"blk.{i}.attn_k.weight", w["wk"][i])
        t(f"blk.{i}.attn_v.weight", w["wv"][i])
        t(f"blk.{i}.attn_output.weight", w["wo"][i])
        t(f"blk.{i}.ffn_norm.weight", w["rms_ffn"][i])
        t(f"blk.{i}.ffn_gate.weight", w["w1"][i])
        t(f"blk.{i}.ffn_down.weight", w["w2"][i])
        t(f"blk.{i}.ffn_up.weight", w["w3"][i])
    t("output_norm.weight", w["rms_final"])
    if not cfg["tied"]:
        t("output.weight", w["wcls"])  # absent for stories260K (tied)

    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(MODEL_DIR, "stories260K.bin"))
    ap.add_argument("--tokenizer", default=os.path.join(MODEL_DIR, "tok512.bin"))
    ap.add_argument("--out-dir", default="/tmp")
    args = ap.parse_args()
    cfg, w = read_checkpoint(args.model)
    vocab = read_tokenizer(args.tokenizer, cfg["vocab"])
    print("config:", cfg)
    for f16 in (False, True):
        out = os.path.join(args.out_dir, "stories260K-ref-%s.gguf" % ("f16" if f16 else "f32"))
        write_gguf(out, cfg, w, vocab, f16)
        print("wrote", out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
