#!/usr/bin/env python3
"""make_seeds.py CORPUS: the hand-made seeds of fuzz/make_seeds.sh (standard library only):
a tiny llama2.c checkpoint (shared and untied classifier), sentencepiece models (unigram, BPE with
byte fallback) as serialized ModelProto, a byte-level BPE tokenizer.json, fine-tuning data, and GGUF
files (valid and broken)."""
import json, os, random, struct, sys

c = sys.argv[1]
rnd = random.Random(7)

# llama2.c: 7 int32 (dim, hidden, layers, heads, kv_heads, vocab (negative: untied), seq_len), fp32 arrays.
def llama2c(path, dim=8, hidden=16, layers=1, heads=2, kv=1, vocab=16, seq=4):
    hd = dim // heads
    V = abs(vocab)
    n = V * dim + layers * (dim + dim * dim + 2 * dim * kv * hd + dim * dim + dim + 3 * dim * hidden) + dim + seq * hd
    if vocab < 0:
        n += V * dim
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", dim, hidden, layers, heads, kv, vocab, seq))
        f.write(struct.pack("<%df" % n, *[rnd.uniform(-0.5, 0.5) for _ in range(n)]))
llama2c(f"{c}/llama2c/tiny-shared.bin")
llama2c(f"{c}/llama2c/tiny-untied.bin", heads=2, kv=2, vocab=-12)

# Protocol buffers by hand: varint keys, length-delimited strings/messages, fixed32 floats.
def varint(v):
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out
def field(num, wire, payload):
    return varint(num << 3 | wire) + payload
def ld(num, data):
    return field(num, 2, varint(len(data)) + data)
def vi(num, v):
    return field(num, 0, varint(v))
def f32(num, x):
    return field(num, 5, struct.pack("<f", x))

def spm(path, model_type, byte_fallback):
    NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6
    pieces = [("<unk>", 0.0, UNKNOWN), ("<s>", 0.0, CONTROL), ("</s>", 0.0, CONTROL)]
    if byte_fallback:
        pieces += [("<0x%02X>" % b, 0.0, BYTE) for b in range(256)]
    words = ["\u2581", "\u2581the", "\u2581a", "\u2581once", "\u2581upon", "\u2581time", "th", "he", "on", "ce"]
    words += list("abcdefghijklmnopqrstuvwxyz,.!")
    pieces += [(w, -float(i) - 1.0, NORMAL) for i, w in enumerate(words)]
    body = b"".join(ld(1, ld(1, p.encode()) + f32(2, s) + vi(3, t)) for p, s, t in pieces)
    trainer = vi(3, model_type) + vi(4, len(pieces)) + vi(35, 1 if byte_fallback else 0) + vi(40, 0) + vi(41, 1) + vi(42, 2)
    trainer += field(43, 0, varint((1 << 64) - 1))  # pad_id = -1
    normalizer = ld(1, b"identity") + vi(3, 1) + vi(4, 1) + vi(5, 1)
    with open(path, "wb") as f:
        f.write(body + ld(2, trainer) + ld(3, normalizer))
spm(f"{c}/tok_spm/unigram.model", 1, False)
spm(f"{c}/tok_spm/bpe-bytes.model", 2, True)

# GPT-2 byte-level BPE: the 256 byte characters, a few merges, one special token.
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(x) for b, x in zip(bs, cs)}
bu = bytes_to_unicode()
vocab = {bu[b]: i for i, b in enumerate(range(256))}
merges = [("\u0120", "t"), ("h", "e"), ("\u0120t", "he"), ("o", "n"), ("\u0120", "a")]
for a, b in merges:
    vocab[a + b] = len(vocab)
vocab["<|endoftext|>"] = len(vocab)
tok = {"version": "1.0",
       "added_tokens": [{"id": vocab["<|endoftext|>"], "content": "<|endoftext|>", "special": True,
                         "single_word": False, "lstrip": False, "rstrip": False, "normalized": False}],
       "normalizer": None,
       "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
       "decoder": {"type": "ByteLevel"},
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "vocab": vocab,
                 "merges": [a + " " + b for a, b in merges]}}
with open(f"{c}/tok_hf/gpt2-style.json", "w", encoding="utf-8") as f:
    json.dump(tok, f, ensure_ascii=False)
tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
tok["model"]["merges"] = [[a, b] for a, b in merges]   # the newer list-of-pairs form
with open(f"{c}/tok_hf/llama3-style.json", "w", encoding="utf-8") as f:
    json.dump(tok, f, ensure_ascii=False)

# Fine-tuning data; the first byte picks the kind (bit 0: JSONL) and the sequence length.
def data(name, kind_byte, text):
    with open(f"{c}/dataset/{name}", "wb") as f:
        f.write(bytes([kind_byte]) + text.encode())
data("text", 0x20, "Once upon a time there was a cat.\n\nThe cat sat on the mat. It was happy.\n")
data("jsonl-text", 0x21, '{"text": "Lily went to the park."}\n{"text": "Tom saw a big dog."}\n')
data("jsonl-qa", 0xED, '{"question": "What is 2+3?", "answer": "2+3=5\\n#### 5"}\n{"question": "Tom has 4 apples.", "answer": "#### 4"}\n')
data("jsonl-instruct", 0xEF, '{"instruction": "Say hi", "input": "", "output": "Hi!"}\n{"instruction": "Add", "input": "1 2", "output": "3"}\n')

# GGUF (llama.cpp's format: little-endian, version 3; io/gguf.h): small valid files (every metadata
# value type, every readable tensor type plus an unreadable Q4_K, a 64-byte alignment) and broken
# ones (truncated, wrong magic, version 1, an unknown ggml type, a misaligned offset, a NaN).
def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b
def gkv(key, vtype, payload):
    return gstr(key) + struct.pack("<I", vtype) + payload
def garr(etype, items):
    return struct.pack("<IQ", etype, len(items)) + b"".join(items)
def gguf_bytes(kvs, tensors, align=32, version=3):
    """tensors: (name, ne (fastest first), ggml type, data bytes); each at an aligned offset."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(kvs)
    off, blobs = 0, b""
    for name, ne, gtype, data in tensors:
        head += gstr(name) + struct.pack("<I%dQIQ" % len(ne), len(ne), *ne, gtype, off)
        blobs += data + b"\0" * (-len(data) % align)
        off += len(data) + (-len(data) % align)
    return head + b"\0" * (-len(head) % align) + blobs
def f32s(xs):
    return struct.pack("<%df" % len(xs), *xs)
def f16s(xs):
    return struct.pack("<%de" % len(xs), *xs)
def bf16s(xs):  # truncation is enough for seeds
    return b"".join(struct.pack("<f", x)[2:] for x in xs)
def q8_0s(xs):  # ggml's rule: d = max|x| / 127 as fp16, q = round(x / d)
    out = b""
    for b in range(0, len(xs), 32):
        blk = xs[b:b + 32]
        d = max(abs(x) for x in blk) / 127
        out += struct.pack("<e", d) + bytes((round(x / d) if d else 0) & 0xFF for x in blk)
    return out
vals = [rnd.uniform(-2, 2) for _ in range(64)]
all_kvs = [gkv("general.architecture", 8, gstr("llama")), gkv("t.u8", 0, struct.pack("<B", 7)),
           gkv("t.i8", 1, struct.pack("<b", -7)), gkv("t.u16", 2, struct.pack("<H", 700)),
           gkv("t.i16", 3, struct.pack("<h", -700)), gkv("t.u32", 4, struct.pack("<I", 70000)),
           gkv("t.i32", 5, struct.pack("<i", -70000)), gkv("t.f32", 6, struct.pack("<f", 0.5)),
           gkv("t.bool", 7, b"\x01"), gkv("t.u64", 10, struct.pack("<Q", 1 << 40)),
           gkv("t.i64", 11, struct.pack("<q", -(1 << 40))), gkv("t.f64", 12, struct.pack("<d", 1e-5)),
           gkv("tokenizer.ggml.tokens", 9, garr(8, [gstr("<s>"), gstr("</s>"), gstr("a")])),
           gkv("tokenizer.ggml.scores", 9, garr(6, [struct.pack("<f", x) for x in (0.0, -1.0, -2.0)])),
           gkv("t.nested", 9, garr(9, [garr(5, [struct.pack("<i", 1)]), garr(8, [gstr("x")])]))]
all_tensors = [("token_embd.weight", [8, 4], 0, f32s(vals[:32])), ("blk.0.attn_norm.weight", [8], 1, f16s(vals[:8])),
               ("blk.0.ffn_up.weight", [4, 4], 30, bf16s(vals[:16])), ("blk.0.attn_q.weight", [32, 2], 8, q8_0s(vals)),
               ("blk.0.ffn_down.weight", [256], 12, bytes(rnd.randrange(256) for _ in range(144)))]
good = gguf_bytes(all_kvs, all_tensors)
def gguf_seed(name, data):
    with open(f"{c}/gguf/{name}", "wb") as f:
        f.write(data)
gguf_seed("all-types.gguf", good)
gguf_seed("align64-v2.gguf", gguf_bytes([gkv("general.alignment", 4, struct.pack("<I", 64))],
                                        [("output.weight", [8, 2], 0, f32s(vals[:16])), ("q", [32], 8, q8_0s(vals[:32]))],
                                        align=64, version=2))
gguf_seed("metadata-only.gguf", gguf_bytes(all_kvs, []))
gguf_seed("broken-truncated.gguf", good[:len(good) * 2 // 3])
gguf_seed("broken-magic.gguf", b"GGJT" + good[4:])
gguf_seed("broken-version1.gguf", good[:4] + struct.pack("<I", 1) + good[8:])
gguf_seed("broken-unknown-type.gguf", gguf_bytes([], [("w", [4], 77, b"\0" * 16)]))
gguf_seed("broken-nan.gguf", gguf_bytes([], [("w", [4], 0, f32s([1.0, float("nan"), 2.0, 3.0]))]))
mis = bytearray(gguf_bytes([], [("a", [4], 0, f32s([1, 2, 3, 4])), ("b", [4], 0, f32s([5, 6, 7, 8]))]))
off_at = mis.index(b"b", 24) + 1 + 4 + 8 + 4  # "b", n_dims, ne[0], type, then b's offset
mis[off_at:off_at + 8] = struct.pack("<Q", 16)
gguf_seed("broken-misaligned.gguf", bytes(mis))
