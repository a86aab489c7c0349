#!/usr/bin/env python3
"""make_seeds.py CORPUS: the hand-made seeds of fuzz/make_seeds.sh (standard library only):
a tiny llama2.c checkpoint (shared and untied classifier), sentencepiece models (unigram, BPE with
byte fallback) as serialized ModelProto, a byte-level BPE tokenizer.json, and fine-tuning data."""
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
