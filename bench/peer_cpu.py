#!/usr/bin/env python3
"""peer_cpu.py: PyTorch (CPU, eager, plain torch) side by side with the `loftq` binary at the same thread
counts, in one run; prints a Markdown table per part with the command lines and the ratios.

  python3 bench/peer_cpu.py [all|loftq|finetune] [--quick] [--threads 1,2] [--json OUT]
      part loftq:    [--ranks 16] [--r64] [--svd randomized,exact] [--iters 5] [--write] [--gbench]
      part finetune: [--ft-layers 4 --ft-hidden 512 --ft-vocab 4000 --ft-heads 8 --ft-kv-heads K
                      --ft-intermediate I] [--batch 4 --seq 256 --warmup 3 --steps 10 --ft-rank 16] [--ft-qlora]
      common:        [--loftq build/bin/loftq] [--bench-loftq build/bin/bench_loftq] [--workdir /tmp/peer_cpu]
                     [--python /usr/bin/python3] [--torch-omp-wait passive|unset]

  e.g.  python3 bench/peer_cpu.py --quick                      # small shapes, a minute: checks the plumbing
        nice -n 10 python3 bench/peer_cpu.py all --json peer.json  # the full sizes below
        python3 bench/peer_cpu.py loftq --r64 --svd randomized     # r = 16 and 64, randomized SVD only

Needs torch (Debian 12: apt-get install python3-torch, 1.13); nothing else (the safetensors reader is
below). Every measured run is its own process (a worker: this file with a hidden `_torch-*` command),
started with OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = MKL_NUM_THREADS = n, and torch workers also call
torch.set_num_threads(n), torch.set_num_interop_threads(1) and openblas_set_num_threads(n) (Debian's
torch does its dense linear algebra in the system OpenBLAS, which torch.set_num_threads does not
reach). Torch workers also get OMP_WAIT_POLICY=PASSIVE (--torch-omp-wait unset: not): Debian's torch
has two thread pools, GNU OpenMP (elementwise ops) and OpenBLAS pthreads (GEMM, LAPACK); OpenMP's
default spin-wait after each parallel region starves the OpenBLAS workers on 2 cores (measured here:
the quick training step 5-10x slower at 2 threads). loftq links no OpenMP. The same thread variables
are given to loftq, which also gets --threads n. Runs never overlap.

Part loftq: LoftQ of ONE fp32 weight, NF4 block 64, T = --iters alternating steps, rank r.
  model   `loftq make-demo W --layers 1 --hidden 4096 --intermediate 4096 --heads 32 --kv-heads 32
          --vocab 256 --dtype f32` (--quick: 512 / 512 / 8 heads); the weight is its
          model.layers.0.self_attn.q_proj.weight (4096 x 4096, fp32), read by both sides.
  torch   tests/python/bench_peft_loftq.py's loftq() (imported, not copied): Q = deq(q(W)) first, then
          T times { R = W - Q; B, A = rank-r SVD factors of R; L = B A; Q = deq(q(W - L)) }, quantizer
          blockwise absmax over the flattened row-major weight, NF4 table, codes by bucketize on the
          midpoints. --svd randomized: Halko-Martinsson-Tropp, p = 10 oversampling, q = 2 power
          iterations each re-orthonormalized by torch.linalg.qr, then the SVD of the small (r+p) x n
          matrix; --svd exact: torch.linalg.svd(full_matrices=False) every step, as PEFT's loftq_init.
          That loftq() also takes ||W - Q - L||_F / ||W||_F every step (one extra elementwise pass).
          Timed: the call alone, weight already in memory, after an untimed T = 1 warm-up on a small
          matrix (library start-up).
  loftq   `loftq quantize W --plan P --dry-run --quant nf4 --block 64 --rank r --iters T --svd S
          --seed 0 --threads n`, P = a plan that targets only *.q_proj.weight. Timed: the whole process
          (start, checkpoint mapping, the decomposition, the report; --write: with -o OUT --force
          instead of --dry-run, so also writing the HF LoftQ layout of the 1-layer model). "in-job" is
          the per-weight seconds loftq prints for q_proj ("[1/1] ... (12.3s)").
  gbench  --gbench: also `bench_loftq --benchmark_filter='BM_Loftq4096/'` (its own synthetic 4096 x 4096,
          NF4, r = 16, T = 5, randomized, 1 and 2 threads; Google Benchmark real time per iteration).
  ratio   torch seconds / loftq seconds (> 1: loftq is faster), same SVD kind, r and n.

Part finetune: one LoRA training step, PyTorch eager vs `loftq bench-finetune`.
  model   `loftq make-demo F --layers 4 --hidden 512 --vocab 4000 --heads 8` (+ --kv-heads /
          --intermediate only when given; make-demo's own defaults otherwise: 688 and 4, i.e. GQA);
          the torch model is built from F/config.json (hidden, intermediate, layers, heads, kv heads,
          vocab, rms_norm_eps, rope_theta, tie_word_embeddings) and loads F's safetensors as fp32.
  torch   LLaMA in plain torch: embedding; per layer RMSNorm -> q,k,v projections -> RoPE (HF's
          rotate_half convention) -> k, v repeated to the query heads -> softmax(q k^T / sqrt(d) +
          causal mask) v -> o; residual; RMSNorm -> down(silu(gate(x)) * up(x)); residual; final
          RMSNorm, lm_head (untied unless config says tied). Frozen fp32 base; LoRA r = --ft-rank,
          alpha = r, dropout 0 on q,k,v,o,gate,up,down: y = x W^T + (x A^T) B^T * alpha / r, A
          kaiming_uniform_(a = sqrt(5)) (PEFT's), B = 0. Loss: mean cross entropy of the next token
          (the last position of each row unscored). torch.optim.AdamW(LoRA params, lr 1e-4,
          weight_decay 0 as loftq's AdamW), clip_grad_norm_(1.0), zero_grad(set_to_none=True),
          loss.item() every step.
  loftq   `loftq bench-finetune F --init lora16 --rank r --batch B --seq T --warmup W --steps S
          --tokens IDS --threads n` (lora16: the base as stored, fp32 on the CPU; --ft-qlora adds
          `--init qlora --quant nf4`, whose CPU base is deq(q(W)) in fp32, not packed, so the same
          arithmetic). Its JSON line gives tokens_per_s.
  data    IDS: (W + S) x B x T uniform random ids (seed 0) as raw int32; step s uses batch s on both
          sides, so the first losses must agree (B = 0 at the start: both give the base model's loss;
          printed as a check that the two models are the same).
  timing  W untimed steps, then S steps timed by one clock around them; tokens/s = B x T x S / seconds.
  ratio   loftq tokens/s / torch tokens/s, per n and best-against-best.

--quick shrinks everything (512 x 512 weight; hidden 128, 2 layers, vocab 512, batch 2 x seq 64,
1 + 3 steps) to check the script in about a minute; its numbers mean nothing.
"""
import argparse
import ctypes
import glob
import importlib.util
import json
import math
import os
import re
import shlex
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
Q_PROJ = "model.layers.0.self_attn.q_proj.weight"
PLAN = {  # quantize q_proj only: exclude everything, then target it again (settings come from the flags)
    "format": "loftq-plan", "version": 1,
    "comment": "bench/peer_cpu.py: one weight",
    "rules": [{"match": "*", "target": False}, {"match": "*.q_proj.weight", "target": True}],
}


# --------------------------------------------------------------------------------------------- helpers

OMP_WAIT = ["passive"]  # main() sets it from --torch-omp-wait


def thread_env(n, torch_worker=False):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(n)
    if torch_worker and OMP_WAIT[0] == "passive":
        # torch's OpenMP workers spin after each parallel region while the OpenBLAS pthread workers
        # (GEMM, LAPACK) want the same cores: with 2 cores that cost torch up to 10x here
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif torch_worker:
        env.pop("OMP_WAIT_POLICY", None)
    return env


def cmdline(argv):
    return " ".join(shlex.quote(a) for a in argv)


def run(argv, env=None, what=""):
    """Runs argv; returns (wall seconds, stdout, stderr). Fails loudly with the tail of stderr."""
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sec = time.perf_counter() - t0
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"peer_cpu: {what or argv[0]} failed (exit {p.returncode}): {cmdline(argv)}")
    return sec, p.stdout, p.stderr


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit("peer_cpu: no JSON line in:\n" + text[-2000:])


def make_demo(loftq, path, flags):
    """Writes the demo once; a folder whose stamp holds the same flags is reused."""
    stamp = os.path.join(path, "peer_cpu.flags")
    want = cmdline(flags)
    if os.path.exists(stamp) and open(stamp).read() == want:
        return
    argv = [loftq, "make-demo", path] + flags
    print(f"peer_cpu: {cmdline(argv)}", file=sys.stderr, flush=True)
    if os.path.isdir(path):
        for f in glob.glob(os.path.join(path, "*")):
            os.remove(f)
    run(argv, what="make-demo")
    with open(stamp, "w") as f:
        f.write(want)


def read_safetensors(folder_or_file, names=None):
    """{name: fp32 torch tensor} from a safetensors file or every *.safetensors of a folder.
    Format: u64 little-endian header size, a JSON header {name: {dtype, shape, data_offsets}}, the data."""
    import torch
    files = sorted(glob.glob(os.path.join(folder_or_file, "*.safetensors"))) if os.path.isdir(folder_or_file) \
        else [folder_or_file]
    # bf16 is read as int16 and reinterpreted (same width), then widened to fp32 like the loaders do
    kinds = {"F32": (torch.float32, None), "F16": (torch.float16, None), "BF16": (torch.int16, torch.bfloat16)}
    out = {}
    for path in files:
        with open(path, "rb") as f:
            (hlen,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(hlen))
            for name, info in header.items():
                if name == "__metadata__" or (names is not None and name not in names):
                    continue
                if info["dtype"] not in kinds:
                    raise SystemExit(f"peer_cpu: {path}: {name}: dtype {info['dtype']} not handled")
                begin, end = info["data_offsets"]
                f.seek(8 + hlen + begin)
                raw, view = kinds[info["dtype"]]
                t = torch.frombuffer(bytearray(f.read(end - begin)), dtype=raw)
                if view is not None:
                    t = t.view(view)
                out[name] = t.float().reshape(info["shape"])
    if names is not None and set(names) - set(out):
        raise SystemExit(f"peer_cpu: {folder_or_file}: missing {sorted(set(names) - set(out))}")
    return out


def torch_threads(n):
    """Pins torch's and OpenBLAS's pools to n; returns what they report."""
    import torch
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already fixed by earlier parallel work
    blas = None
    for lib in ("libopenblas.so.0", "libopenblas.so"):
        try:
            ob = ctypes.CDLL(lib)  # the copy torch already loaded (same soname -> same handle)
            ob.openblas_set_num_threads(ctypes.c_int(n))
            blas = int(ob.openblas_get_num_threads())
            break
        except (OSError, AttributeError):
            continue
    return {"torch_threads": torch.get_num_threads(), "openblas_threads": blas, "torch": torch.__version__}


# ------------------------------------------------------------------------------------- workers (torch)

def worker_loftq(a):
    """Times tests/python/bench_peft_loftq.py's loftq() on the demo's q_proj, for each svd x rank."""
    import torch
    info = torch_threads(a.threads)
    sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
    import bench_peft_loftq as ref  # device-neutral at import: only torch and function definitions

    W = read_safetensors(a.demo, [Q_PROJ])[Q_PROJ].contiguous()  # out x in, fp32
    qdq = ref.make_quantizer("nf4", "cpu")
    gen = torch.Generator(device="cpu")
    gen.manual_seed(a.seed)
    results = []
    for svd in a.svd.split(","):
        # warm-up: LAPACK/OpenBLAS buffers and thread start on a small 256 x 256, T = 1 (not timed)
        ref.loftq(torch.randn(256, 256, generator=gen), qdq, 8, 1, svd, gen)
        for r in (int(x) for x in a.ranks.split(",")):
            t0 = time.perf_counter()
            err, base = ref.loftq(W, qdq, r, a.iters, svd, gen)
            sec = time.perf_counter() - t0
            results.append({"svd": svd, "rank": r, "threads": a.threads, "seconds": sec, "error": err,
                            "qlora": base})
            print(f"peer_cpu: torch {svd} r={r} n={a.threads}: {sec:.3f} s, error {err:.5f}",
                  file=sys.stderr, flush=True)
    print(json.dumps({"info": info, "shape": list(W.shape), "results": results}))


def build_llama(cfg, weights, rank, alpha):
    """A LLaMA causal LM in plain torch with LoRA on the seven projections; returns (model, LoRA params)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim", H // nh)
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", 10000.0)
    tied = cfg.get("tie_word_embeddings", False)

    def frozen(name):
        return nn.Parameter(weights[name], requires_grad=False)

    class LoraLinear(nn.Module):
        # base W: out x in (frozen); A: r x in, B: out x r (trained)
        def __init__(self, name):
            super().__init__()
            self.weight = frozen(name)
            out_f, in_f = self.weight.shape
            self.lora_A = nn.Parameter(torch.empty(rank, in_f))
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # PEFT's init of A
            self.lora_B = nn.Parameter(torch.zeros(out_f, rank))
            self.scaling = alpha / rank

        def forward(self, x):
            return F.linear(x, self.weight) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling

    class RMSNorm(nn.Module):
        def __init__(self, name):
            super().__init__()
            self.weight = frozen(name)

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * self.weight

    def rotate_half(x):  # HF convention: the two halves of each head, not interleaved pairs
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)

    class Layer(nn.Module):
        def __init__(self, i):
            super().__init__()
            p = f"model.layers.{i}."
            self.ln1 = RMSNorm(p + "input_layernorm.weight")
            self.ln2 = RMSNorm(p + "post_attention_layernorm.weight")
            for s in ("q", "k", "v", "o"):
                setattr(self, s, LoraLinear(p + f"self_attn.{s}_proj.weight"))
            for s in ("gate", "up", "down"):
                setattr(self, s, LoraLinear(p + f"mlp.{s}_proj.weight"))

        def forward(self, x, cos, sin, mask):
            B, T, _ = x.shape
            h = self.ln1(x)
            q = self.q(h).view(B, T, nh, hd).transpose(1, 2)    # B x nh x T x hd
            k = self.k(h).view(B, T, nkv, hd).transpose(1, 2)   # B x nkv x T x hd
            v = self.v(h).view(B, T, nkv, hd).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if nkv != nh:  # GQA: kv head j serves query heads j*g .. j*g+g-1 (HF's repeat_kv)
                k = k.repeat_interleave(nh // nkv, dim=1)
                v = v.repeat_interleave(nh // nkv, dim=1)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, dim=-1)  # B x nh x T x T
            y = (att @ v).transpose(1, 2).reshape(B, T, nh * hd)
            x = x + self.o(y)
            h = self.ln2(x)
            return x + self.down(F.silu(self.gate(h)) * self.up(h))

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = frozen("model.embed_tokens.weight")  # V x H
            self.layers = nn.ModuleList(Layer(i) for i in range(cfg["num_hidden_layers"]))
            self.norm = RMSNorm("model.norm.weight")
            self.head = self.embed if tied else frozen("lm_head.weight")  # V x H
            self.inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))

        def forward(self, ids):
            B, T = ids.shape
            pos = torch.arange(T, dtype=torch.float32)
            freqs = torch.outer(pos, self.inv_freq)          # T x hd/2
            emb = torch.cat((freqs, freqs), dim=-1)          # T x hd
            cos, sin = emb.cos(), emb.sin()
            mask = torch.full((T, T), float("-inf")).triu(1)  # causal: row t sees columns <= t
            x = F.embedding(ids, self.embed)
            for layer in self.layers:
                x = layer(x, cos, sin, mask)
            logits = F.linear(self.norm(x), self.head)      # B x T x V
            V = logits.shape[-1]
            return F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))

    model = Llama()
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    return model, lora


def worker_finetune(a):
    import torch
    info = torch_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = json.load(open(os.path.join(a.demo, "config.json")))
    model, lora = build_llama(cfg, read_safetensors(a.demo), a.rank, float(a.rank))
    opt = torch.optim.AdamW(lora, lr=1e-4, weight_decay=0.0)
    BT = a.batch * a.seq
    ids = torch.frombuffer(bytearray(open(a.tokens, "rb").read()), dtype=torch.int32).long()
    losses = []
    t0 = time.perf_counter()
    for s in range(a.warmup + a.steps):
        if s == a.warmup:
            t0 = time.perf_counter()
        batch = ids[s * BT:(s + 1) * BT].view(a.batch, a.seq)
        opt.zero_grad(set_to_none=True)
        loss = model(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora, 1.0)
        opt.step()
        losses.append(loss.item())
    sec = time.perf_counter() - t0
    print(json.dumps({"info": info, "seconds": sec, "tokens_per_s": BT * a.steps / sec,
                      "ms_per_step": 1e3 * sec / a.steps, "first_loss": losses[0], "last_loss": losses[-1],
                      "trainable": sum(p.numel() for p in lora)}))


PYTHON = [sys.executable]  # the workers' interpreter (main() may switch to one that has torch)


def worker_argv(cmd, **kw):
    argv = [PYTHON[0], os.path.abspath(__file__), cmd]
    for k, v in kw.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    return argv


# ----------------------------------------------------------------------------------------- part loftq

def part_loftq(a, threads, out):
    shape = (512, 512, 8) if a.quick else (4096, 4096, 32)  # hidden, intermediate, heads
    demo = os.path.join(a.workdir, f"w{shape[0]}")
    make_demo(a.loftq, demo, ["--layers", "1", "--hidden", str(shape[0]), "--intermediate", str(shape[1]),
                              "--heads", str(shape[2]), "--kv-heads", str(shape[2]), "--vocab", "256",
                              "--dtype", "f32", "--seed", "0"])
    plan = os.path.join(a.workdir, "q_proj_only.loftq.json")
    with open(plan, "w") as f:
        json.dump(PLAN, f, indent=1)
    ranks = [int(x) for x in a.ranks.split(",")] + ([64] if a.r64 and "64" not in a.ranks.split(",") else [])
    svds = a.svd.split(",")
    rows = []
    torch_cmds = []
    loftq_cmds = []
    for n in threads:
        argv = worker_argv("_torch-loftq", demo=demo, svd=",".join(svds), ranks=",".join(map(str, ranks)),
                           iters=a.iters, threads=n, seed=0)
        torch_cmds.append(cmdline(argv))
        _, so, _ = run(argv, env=thread_env(n, torch_worker=True), what="torch loftq worker")
        tw = last_json(so)
        for res in tw["results"]:
            r, svd = res["rank"], res["svd"]
            qa = [a.loftq, "quantize", demo, "--plan", plan, "--quant", "nf4", "--block", "64", "--rank", str(r),
                  "--iters", str(a.iters), "--svd", svd, "--seed", "0", "--threads", str(n), "--device", "cpu"]
            qa += ["-o", os.path.join(a.workdir, "qout"), "--force"] if a.write else ["--dry-run"]
            loftq_cmds.append(cmdline(qa))
            sec, _, se = run(qa, env=thread_env(n), what="loftq quantize")
            m = re.search(r"\] \S*q_proj\.weight: QLoRA ([\d.]+) -> LoftQ ([\d.]+) \(([\d.]+)s\)", se)
            injob = float(m.group(3)) if m else None
            lerr = float(m.group(2)) if m else None
            print(f"peer_cpu: loftq {svd} r={r} n={n}: {sec:.3f} s (in-job {injob})", file=sys.stderr, flush=True)
            rows.append({"svd": svd, "rank": r, "threads": n, "torch_s": res["seconds"], "loftq_s": sec,
                         "loftq_injob_s": injob, "ratio": res["seconds"] / sec,
                         "ratio_injob": res["seconds"] / injob if injob else None,
                         "torch_error": res["error"], "loftq_error": lerr, "qlora_error": res["qlora"],
                         "torch_info": tw["info"]})
    gb = []
    if a.gbench:
        exe = a.bench_loftq
        if os.path.exists(exe):
            ga = [exe, "--benchmark_filter=BM_Loftq4096/", "--benchmark_format=json"]
            _, so, _ = run(ga, env=thread_env(max(threads)), what="bench_loftq")
            for b in json.loads(so)["benchmarks"]:
                gb.append({"name": b["name"], "real_time_s": b["real_time"] / 1e3, "iterations": b["iterations"],
                           "error": b.get("error")})
            gb_cmd = cmdline(ga)
        else:
            print(f"peer_cpu: {exe} not found; --gbench skipped", file=sys.stderr)
    out["loftq"] = {"shape": [shape[0], shape[0]], "iters": a.iters, "rows": rows, "gbench": gb,
                    "torch_commands": torch_cmds, "loftq_commands": loftq_cmds}

    mode = "write (-o)" if a.write else "dry-run"
    print(f"\n### LoftQ of one {shape[0]} x {shape[0]} fp32 weight, NF4 block 64, T = {a.iters} (CPU)\n")
    print(f"torch {rows[0]['torch_info']['torch'] if rows else '?'}: tests/python/bench_peft_loftq.py loftq() "
          f"in-process; loftq: whole `loftq quantize` process ({mode}) and its per-weight in-job time.\n")
    print("| SVD | r | threads | torch s | loftq process s | loftq in-job s | torch / loftq (process) "
          "| torch / loftq (in-job) | error torch | error loftq | QLoRA error |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for x in sorted(rows, key=lambda x: (x["svd"] != "exact", x["rank"], x["threads"])):
        inj = f"{x['loftq_injob_s']:.3f}" if x["loftq_injob_s"] else "?"
        rinj = f"{x['ratio_injob']:.2f}" if x["ratio_injob"] else "?"
        lerr = f"{x['loftq_error']:.5f}" if x["loftq_error"] is not None else "?"
        print(f"| {x['svd']} | {x['rank']} | {x['threads']} | {x['torch_s']:.3f} | {x['loftq_s']:.3f} | {inj} | "
              f"{x['ratio']:.2f} | {rinj} | {x['torch_error']:.5f} | {lerr} | {x['qlora_error']:.5f} |")
    # PEFT's own path (exact SVD) against loftq's default (randomized), same r and n
    pairs = [(e, q) for e in rows for q in rows if e["svd"] == "exact" and q["svd"] == "randomized"
             and e["rank"] == q["rank"] and e["threads"] == q["threads"]]
    if pairs:
        print("\nPEFT's path (torch, exact SVD) / loftq default (randomized), whole process: " +
              ", ".join(f"r={e['rank']} n={e['threads']}: {e['torch_s'] / q['loftq_s']:.1f}x" for e, q in pairs))
    if gb:
        print("\n`" + gb_cmd + "` (its own synthetic 4096 x 4096, NF4, r = 16, T = 5, randomized): " +
              ", ".join(f"{g['name']}: {g['real_time_s']:.3f} s" for g in gb))
    print("\nCommands:\n")
    for c in torch_cmds + loftq_cmds:
        print(f"    {c}")


# -------------------------------------------------------------------------------------- part finetune

def part_finetune(a, threads, out):
    if a.quick:
        layers, hidden, vocab, heads = 2, 128, 512, 4
        batch, seq, warmup, steps = 2, 64, 1, 3
    else:
        layers, hidden, vocab, heads = a.ft_layers, a.ft_hidden, a.ft_vocab, a.ft_heads
        batch, seq, warmup, steps = a.batch, a.seq, a.warmup, a.steps
    flags = ["--layers", str(layers), "--hidden", str(hidden), "--vocab", str(vocab), "--heads", str(heads),
             "--seed", "0"]
    if a.ft_kv_heads:
        flags += ["--kv-heads", str(a.ft_kv_heads)]
    if a.ft_intermediate:
        flags += ["--intermediate", str(a.ft_intermediate)]
    demo = os.path.join(a.workdir, f"ft{hidden}x{layers}v{vocab}h{heads}k{a.ft_kv_heads or 'd'}i{a.ft_intermediate or 'd'}")
    make_demo(a.loftq, demo, flags)
    cfg = json.load(open(os.path.join(demo, "config.json")))

    # the same token ids on both sides: (warmup + steps) batches of batch x seq uniform ids, raw int32
    import random
    rng = random.Random(0)
    n_ids = (warmup + steps) * batch * seq
    tokens = os.path.join(a.workdir, f"ids_{vocab}_{n_ids}.i32")
    with open(tokens, "wb") as f:
        f.write(struct.pack(f"<{n_ids}i", *(rng.randrange(vocab) for _ in range(n_ids))))

    rows = []
    cmds = []
    inits = ["lora16"] + (["qlora"] if a.ft_qlora else [])
    for n in threads:
        argv = worker_argv("_torch-finetune", demo=demo, tokens=tokens, batch=batch, seq=seq, warmup=warmup,
                           steps=steps, rank=a.ft_rank, threads=n, seed=0)
        cmds.append(cmdline(argv))
        _, so, _ = run(argv, env=thread_env(n, torch_worker=True), what="torch finetune worker")
        t = last_json(so)
        print(f"peer_cpu: torch finetune n={n}: {t['tokens_per_s']:.0f} tokens/s", file=sys.stderr, flush=True)
        row = {"threads": n, "torch": t}
        for init in inits:
            la = [a.loftq, "bench-finetune", demo, "--init", init, "--rank", str(a.ft_rank), "--batch", str(batch),
                  "--seq", str(seq), "--warmup", str(warmup), "--steps", str(steps), "--tokens", tokens,
                  "--threads", str(n), "--device", "cpu", "--seed", "0", "-q"]
            if init == "qlora":
                la += ["--quant", "nf4"]
            cmds.append(cmdline(la))
            _, so, _ = run(la, env=thread_env(n), what="loftq bench-finetune")
            j = last_json(so)
            print(f"peer_cpu: loftq {init} n={n}: {j['tokens_per_s']:.0f} tokens/s", file=sys.stderr, flush=True)
            row[init] = j
        rows.append(row)
    out["finetune"] = {"config": {k: cfg.get(k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                          "num_attention_heads", "num_key_value_heads",
                                                          "vocab_size", "rms_norm_eps", "rope_theta",
                                                          "tie_word_embeddings")},
                       "batch": batch, "seq": seq, "warmup": warmup, "steps": steps, "rank": a.ft_rank,
                       "rows": rows, "commands": cmds}

    c = out["finetune"]["config"]
    print(f"\n### LoRA training step, LLaMA hidden {c['hidden_size']} x {c['num_hidden_layers']} layers, MLP "
          f"{c['intermediate_size']}, heads {c['num_attention_heads']}/{c['num_key_value_heads']} kv, vocab "
          f"{c['vocab_size']}; LoRA r = {a.ft_rank} on 7 projections; batch {batch} x seq {seq}, {warmup} + {steps} "
          f"steps (CPU)\n")
    head = "| threads | torch tokens/s | loftq lora16 tokens/s | loftq / torch |"
    sep = "| ---: | ---: | ---: | ---: |"
    if a.ft_qlora:
        head += " loftq qlora nf4 tokens/s | loftq qlora / torch |"
        sep += " ---: | ---: |"
    print(head + " first loss torch / loftq |")
    print(sep + " --- |")
    for r in rows:
        t = r["torch"]["tokens_per_s"]
        line = f"| {r['threads']} | {t:.0f} | {r['lora16']['tokens_per_s']:.0f} | {r['lora16']['tokens_per_s'] / t:.2f} |"
        if a.ft_qlora:
            line += f" {r['qlora']['tokens_per_s']:.0f} | {r['qlora']['tokens_per_s'] / t:.2f} |"
        line += f" {r['torch']['first_loss']:.4f} / {r['lora16']['first_loss']:.4f} |"
        print(line)
    bt = max(rows, key=lambda r: r["torch"]["tokens_per_s"])
    bl = max(rows, key=lambda r: r["lora16"]["tokens_per_s"])
    best = bl["lora16"]["tokens_per_s"] / bt["torch"]["tokens_per_s"]
    out["finetune"]["best_ratio"] = best
    print(f"| best | {bt['torch']['tokens_per_s']:.0f} (n={bt['threads']}) | {bl['lora16']['tokens_per_s']:.0f} "
          f"(n={bl['threads']}) | {best:.2f} |" + (" | |" if a.ft_qlora else "") + " |")
    print(f"\ntorch {rows[0]['torch']['info']['torch']}, torch threads / OpenBLAS threads per row: " +
          ", ".join(f"{r['torch']['info']['torch_threads']}/{r['torch']['info']['openblas_threads']}" for r in rows) +
          f"; trainable LoRA params torch {rows[0]['torch']['trainable']}, loftq {rows[0]['lora16']['trainable']}")
    print("\nCommands:\n")
    for cmd in cmds:
        print(f"    {cmd}")


# ------------------------------------------------------------------------------------------------ main

def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("_torch-loftq", "_torch-finetune"):
        wp = argparse.ArgumentParser(prog="peer_cpu.py " + sys.argv[1])
        wp.add_argument("--demo", required=True)
        wp.add_argument("--threads", type=int, required=True)
        wp.add_argument("--seed", type=int, default=0)
        if sys.argv[1] == "_torch-loftq":
            wp.add_argument("--svd", required=True)
            wp.add_argument("--ranks", required=True)
            wp.add_argument("--iters", type=int, required=True)
            worker_loftq(wp.parse_args(sys.argv[2:]))
        else:
            for k in ("batch", "seq", "warmup", "steps", "rank"):
                wp.add_argument("--" + k, type=int, required=True)
            wp.add_argument("--tokens", required=True)
            worker_finetune(wp.parse_args(sys.argv[2:]))
        return

    ap = argparse.ArgumentParser(description="PyTorch (CPU) vs loftq, side by side; see the docstring.")
    ap.add_argument("part", nargs="?", default="all", choices=["all", "loftq", "finetune"])
    ap.add_argument("--quick", action="store_true", help="small shapes, to check the script")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    ap.add_argument("--json", help="write all numbers here")
    ap.add_argument("--loftq", default=os.path.join(ROOT, "build", "bin", "loftq"))
    ap.add_argument("--bench-loftq", default=os.path.join(ROOT, "build", "bin", "bench_loftq"))
    ap.add_argument("--workdir", default="/tmp/peer_cpu", help="demo checkpoints (kept and reused), token ids")
    g = ap.add_argument_group("part loftq")
    g.add_argument("--ranks", default="16", help="LoRA ranks, comma-separated (default 16)")
    g.add_argument("--r64", action="store_true", help="also r = 64")
    g.add_argument("--svd", default="randomized,exact", help="randomized,exact (default both)")
    g.add_argument("--iters", type=int, default=5, help="alternating steps T (default 5)")
    g.add_argument("--write", action="store_true", help="time loftq quantize with -o (writes) instead of --dry-run")
    g.add_argument("--gbench", action="store_true", help="also run bench_loftq --benchmark_filter=BM_Loftq4096/")
    g = ap.add_argument_group("part finetune")
    g.add_argument("--ft-layers", type=int, default=4)
    g.add_argument("--ft-hidden", type=int, default=512)
    g.add_argument("--ft-vocab", type=int, default=4000)
    g.add_argument("--ft-heads", type=int, default=8)
    g.add_argument("--ft-kv-heads", type=int, default=0, help="default: make-demo's")
    g.add_argument("--ft-intermediate", type=int, default=0, help="default: make-demo's")
    g.add_argument("--ft-rank", type=int, default=16)
    g.add_argument("--ft-qlora", action="store_true", help="also loftq --init qlora --quant nf4")
    g.add_argument("--batch", type=int, default=4)
    g.add_argument("--seq", type=int, default=256)
    g.add_argument("--warmup", type=int, default=3)
    g.add_argument("--steps", type=int, default=10)
    ap.add_argument("--python", help="interpreter with torch for the workers (default: this one, else "
                    "/usr/bin/python3 when this one lacks torch, e.g. a pyenv shim)")
    ap.add_argument("--torch-omp-wait", choices=["passive", "unset"], default="passive",
                    help="OMP_WAIT_POLICY of the torch workers: PASSIVE (default; see the docstring) or left unset")
    a = ap.parse_args()
    OMP_WAIT[0] = a.torch_omp_wait
    if a.python:
        PYTHON[0] = a.python
    elif importlib.util.find_spec("torch") is None and os.path.exists("/usr/bin/python3"):
        PYTHON[0] = "/usr/bin/python3"
    if not os.path.exists(a.loftq):
        raise SystemExit(f"peer_cpu: {a.loftq} not found (build first, or --loftq PATH)")
    os.makedirs(a.workdir, exist_ok=True)
    threads = [int(x) for x in a.threads.split(",")]
    out = {"quick": a.quick, "threads": threads, "torch_omp_wait": a.torch_omp_wait, "cpus": os.cpu_count(), "uname": " ".join(os.uname()),
           "loadavg_start": os.getloadavg()}
    print(f"peer_cpu: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"
          + (" (--quick: numbers mean nothing)" if a.quick else ""))
    if a.part in ("all", "loftq"):
        part_loftq(a, threads, out)
    if a.part in ("all", "finetune"):
        part_finetune(a, threads, out)
    out["loadavg_end"] = os.getloadavg()
    print(f"\npeer_cpu: load average {os.getloadavg()[0]:.2f} at the end")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
