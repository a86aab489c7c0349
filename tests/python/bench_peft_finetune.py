#!/usr/bin/env python3
"""bench_peft_finetune.py: LoRA fine-tuning throughput and memory, PyTorch + PEFT against `loftq
bench-finetune --device cuda`, on the same model, the same token ids, batch, sequence length and LoRA
rank, in one run; prints a Markdown table for docs/PERFORMANCE.md.

  python3 tests/python/bench_peft_finetune.py [--shape 7b|tinyllama|small | --model HF_DIR]
      [--base nf4|bf16] [--batch 4] [--seq 512] [--rank 64] [--warmup 3] [--steps 10]
      [--recompute off|on] [--gemm tf32|fp32|bf16] [--loftq build/bin/loftq] [--workdir DIR] [--out results.json]

What runs (each side in its own process, so that neither sees the other's GPU memory):
  model   --model: an HF LLaMA folder as is. --shape: a LLaMA config of that shape with random
          weights (transformers' init, std 0.02, seed --seed), written once as bf16 safetensors into
          --workdir (7b: LLaMA-2-7B, 4096 x 32 layers, 11008 MLP, 32k vocab; tinyllama: TinyLlama-1.1B,
          2048 x 22, GQA 32/4 heads, 5632 MLP; small: 1024 x 8, 2816 MLP, 32k vocab).
  tokens  (warmup + steps) x batch x seq uniform ids from --seed, written as raw int32; step s uses
          ids [s B T, (s + 1) B T) on both sides, targets = the next token (HF's labels = input_ids
          shift; the last position of each row is unscored on both sides).
  PEFT    transformers AutoModelForCausalLM, --base nf4: bitsandbytes 4-bit NF4 (block 64, no double
          quantization, bf16 compute: QLoRA) / bf16: the bf16 weights; LoRA r = --rank, lora_alpha = r
          on q,k,v,o,gate,up,down, dropout 0, LoRA weights fp32; bf16 autocast; torch.optim.AdamW
          (fused when available), clip_grad_norm_(1.0); attention = sdpa; --recompute on:
          gradient_checkpointing_enable(use_reentrant=False). Peak: torch.cuda.max_memory_allocated
          and max_memory_reserved over the timed loop (the CUDA context, ~0.5 GiB, is not in them).
  loftq   loftq bench-finetune MODEL --init qlora --quant nf4 (--base nf4: NF4 block 64, the base
          packed on the device, dequantized per use) or --init lora16 (--base bf16: the weights as fp32
          on the device), the same rank, alpha, batch, seq, warmup, steps and token file; --gemm
          (tf32: base GEMMs on TF32 tensor cores; bf16: base weights bf16 and the base GEMMs on bf16
          inputs with fp32 accumulation, as autocast; activations fp32); AdamW with clipping at 1.0.
          Peak: own accounting of its buffers and cudaMemGetInfo's device use (context included).
Timing: warmup steps untimed, then steps timed with the device synchronized at both ends; both
sides read the loss back every step. tokens/s = batch x seq x steps / seconds.
Needs: a CUDA GPU, torch, transformers, peft (bitsandbytes for --base nf4), and a loftq built with
CUDA. Not part of CTest; this machine's tests only byte-compile it (python3 -m py_compile).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from array import array

SHAPES = {
    # name: (hidden, intermediate, layers, heads, kv_heads, vocab)
    "7b": (4096, 11008, 32, 32, 32, 32000),
    "tinyllama": (2048, 5632, 22, 32, 4, 32000),
    "small": (1024, 2816, 8, 16, 16, 32000),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GiB = float(1 << 30)


# ---------------------------------------------------------------------------------------------- workers

def worker_make_model(args):
    """Writes a random-init LLaMA of --shape as bf16 safetensors into --model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, inter, layers, heads, kv, vocab = SHAPES[args.shape]
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv, vocab_size=vocab,
                      max_position_embeddings=max(4096, args.seq), rms_norm_eps=1e-5, rope_theta=10000.0,
                      hidden_act="silu", tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    model = model.to(torch.bfloat16)
    model.config.torch_dtype = torch.bfloat16
    model.save_pretrained(args.model, safe_serialization=True, max_shard_size="5GB")
    print(json.dumps({"model": args.model, "params": sum(p.numel() for p in model.parameters())}))


def worker_peft(args):
    """PyTorch + PEFT LoRA training steps on the token file; prints one JSON object."""
    import torch
    from transformers import AutoModelForCausalLM
    from peft import LoraConfig, get_peft_model

    B, T = args.batch, args.seq
    with open(args.tokens, "rb") as f:
        ids = torch.frombuffer(bytearray(f.read()), dtype=torch.int32).to(torch.long)
    n = ids.numel()

    def batch(step):  # the same ids as loftq's cyclic reader
        start = (step * B * T) % n
        idx = (torch.arange(B * T) + start) % n
        return ids[idx].view(B, T)

    kwargs = {"torch_dtype": torch.bfloat16, "device_map": {"": 0}, "attn_implementation": args.attn}
    quant = "bf16"
    if args.base == "nf4":
        from transformers import BitsAndBytesConfig
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=False,
            bnb_4bit_compute_dtype=torch.bfloat16)
        quant = "bitsandbytes nf4"
    t_load = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.model, **kwargs)
    model.config.use_cache = False
    if args.recompute == "on":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lcfg = LoraConfig(r=args.rank, lora_alpha=args.rank, target_modules=TARGETS, lora_dropout=0.0, bias="none",
                      task_type="CAUSAL_LM")
    model = get_peft_model(model, lcfg)
    params = []
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # LoRA weights and their AdamW state in fp32, as loftq keeps them
            params.append(p)
    trainable = sum(p.numel() for p in params)
    try:
        opt = torch.optim.AdamW(params, lr=args.lr, fused=True)
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(params, lr=args.lr)
    load_seconds = time.perf_counter() - t_load
    model.train()
    losses = []
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for s in range(args.warmup + args.steps):
        if s == args.warmup:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        x = batch(s).cuda(non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(input_ids=x, labels=x)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(out.loss.item()))  # a read-back per step, as loftq's loss
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "tool": "peft", "device": torch.cuda.get_device_name(0), "base": quant, "attn": args.attn,
        "recompute": args.recompute == "on", "batch": B, "seq": T, "steps": args.steps, "trainable": trainable,
        "load_seconds": load_seconds, "seconds": seconds, "ms_per_step": 1e3 * seconds / args.steps,
        "tokens_per_s": B * T * args.steps / seconds, "first_loss": losses[0], "last_loss": losses[-1],
        "max_allocated": torch.cuda.max_memory_allocated(), "max_reserved": torch.cuda.max_memory_reserved(),
        "versions": versions(),
    }))


def versions():
    out = {}
    for mod in ("torch", "transformers", "peft", "bitsandbytes"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - absent or broken: reported as such
            out[mod] = None
    return out


# ---------------------------------------------------------------------------------------------- driver

def run_json(cmd, what):
    """Runs cmd, streams its stderr, returns the JSON object on its last stdout line (or None)."""
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True)
    if p.returncode != 0:
        print(f"{what} failed with exit code {p.returncode}", file=sys.stderr)
        return None
    lines = [l for l in p.stdout.strip().splitlines() if l.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def default_loftq():
    env = os.environ.get("LOFTQ_CLI")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "build", "bin", "loftq"))


def gib(b):
    return f"{b / GiB:.2f} GiB"


def table(args, ours, peft):
    rows = []
    dev = (ours or {}).get("device") or (peft or {}).get("device") or "?"
    shape = args.model if args.model else f"{args.shape} (random init)"
    rows.append(f"Model {shape}; batch {args.batch} x seq {args.seq}; LoRA r = {args.rank} (alpha = r) on q,k,v,o,"
                f"gate,up,down; base {args.base}; recompute {args.recompute}; {args.warmup} warm-up + {args.steps} "
                f"timed steps; {dev}.")
    rows.append("")
    ours_base = 'NF4 packed' if args.base == 'nf4' else ('bf16 base' if args.gemm == 'bf16' else 'fp32 base')
    ours_name = f"loftq ({ours_base}, {args.gemm} GEMMs, fp32 activations)"
    peft_name = f"PyTorch + PEFT ({(peft or {}).get('base', args.base)}, bf16 autocast, {args.attn})"
    rows.append(f"| | {peft_name} | {ours_name} | loftq / PEFT |")
    rows.append("|---|---|---|---|")

    def cell(d, key, fmt):
        return fmt(d[key]) if d and d.get(key) is not None else "n/a"

    ratio = "n/a"
    if ours and peft:
        ratio = f"**{ours['tokens_per_s'] / peft['tokens_per_s']:.2f}x**"
    rows.append(f"| tokens/s | {cell(peft, 'tokens_per_s', lambda v: f'{v:,.0f}')} | "
                f"{cell(ours, 'tokens_per_s', lambda v: f'{v:,.0f}')} | {ratio} |")
    rows.append(f"| ms/step | {cell(peft, 'ms_per_step', lambda v: f'{v:.1f}')} | "
                f"{cell(ours, 'ms_per_step', lambda v: f'{v:.1f}')} | |")
    peft_mem = "n/a"
    if peft:
        peft_mem = f"{gib(peft['max_allocated'])} allocated, {gib(peft['max_reserved'])} reserved (no context)"
    ours_mem = "n/a"
    if ours:
        ours_mem = f"{gib(ours['peak_bytes'])} buffers, {gib(ours['device_peak_used'])} device (with context)"
    rows.append(f"| peak memory | {peft_mem} | {ours_mem} | |")
    rows.append(f"| trainable parameters | {cell(peft, 'trainable', lambda v: f'{v:,}')} | "
                f"{cell(ours, 'trainable', lambda v: f'{v:,}')} | |")
    rows.append(f"| loss first -> last | {cell(peft, 'first_loss', lambda v: f'{v:.4f}')} -> "
                f"{cell(peft, 'last_loss', lambda v: f'{v:.4f}')} | {cell(ours, 'first_loss', lambda v: f'{v:.4f}')} -> "
                f"{cell(ours, 'last_loss', lambda v: f'{v:.4f}')} | |")
    if ours and ours.get("memory"):
        rows.append("")
        rows.append(f"loftq memory: {ours['memory']}.")
    if peft and peft.get("versions"):
        rows.append("")
        rows.append("PyTorch side: " + ", ".join(f"{k} {v}" for k, v in peft["versions"].items() if v) + ".")
    if ours and peft:
        goal = ours["tokens_per_s"] / peft["tokens_per_s"]
        rows.append("")
        rows.append(f"Goal >= 1.5x: {'met' if goal >= 1.5 else 'NOT met'} ({goal:.2f}x).")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    ap.add_argument("--model", default="", help="an HF LLaMA folder instead of a random --shape")
    ap.add_argument("--base", choices=["nf4", "bf16"], default="nf4")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recompute", choices=["off", "on"], default="off")
    ap.add_argument("--gemm", choices=["tf32", "fp32", "bf16"], default="tf32")
    ap.add_argument("--attn", default="sdpa", help="transformers attn_implementation for PEFT (sdpa, eager, flash_attention_2)")
    ap.add_argument("--loftq", default=default_loftq())
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "loftq-bench-finetune"))
    ap.add_argument("--skip-peft", action="store_true")
    ap.add_argument("--skip-loftq", action="store_true")
    ap.add_argument("--out", default="", help="also write both results and the table as JSON here")
    ap.add_argument("--tokens", default="", help=argparse.SUPPRESS)
    ap.add_argument("--worker", choices=["make-model", "peft"], help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker == "make-model":
        return worker_make_model(args)
    if args.worker == "peft":
        return worker_peft(args)

    os.makedirs(args.workdir, exist_ok=True)
    if not args.model:
        args.model_dir = os.path.join(args.workdir, f"model-{args.shape}-seed{args.seed}")
        if not os.path.exists(os.path.join(args.model_dir, "config.json")):
            r = run_json([sys.executable, os.path.abspath(__file__), "--worker", "make-model", "--shape", args.shape,
                          "--seed", str(args.seed), "--seq", str(args.seq), "--model", args.model_dir], "make-model")
            if r is None:
                sys.exit("could not write the random model (needs torch and transformers)")
    else:
        args.model_dir = args.model
    with open(os.path.join(args.model_dir, "config.json")) as f:
        vocab = int(json.load(f)["vocab_size"])

    count = (args.warmup + args.steps) * args.batch * args.seq
    tokens = os.path.join(args.workdir, f"tokens-v{vocab}-n{count}-seed{args.seed}.i32")
    rng = random.Random(args.seed)
    ids = array("i", (rng.randrange(vocab) for _ in range(count)))
    if sys.byteorder != "little":
        ids.byteswap()
    with open(tokens, "wb") as f:
        ids.tofile(f)

    ours = None
    if not args.skip_loftq:
        init = ["--init", "qlora", "--quant", "nf4", "--block", "64"] if args.base == "nf4" else ["--init", "lora16"]
        ours = run_json([args.loftq, "bench-finetune", args.model_dir, *init, "--rank", str(args.rank), "--lora-alpha",
                         str(args.rank), "--batch", str(args.batch), "--seq", str(args.seq), "--warmup",
                         str(args.warmup), "--steps", str(args.steps), "--lr", str(args.lr), "--tokens", tokens,
                         "--seed", str(args.seed), "--device", "cuda", "--gemm", args.gemm, "--recompute",
                         args.recompute], "loftq bench-finetune")
    peft = None
    if not args.skip_peft:
        peft = run_json([sys.executable, os.path.abspath(__file__), "--worker", "peft", "--model", args.model_dir,
                         "--tokens", tokens, "--base", args.base, "--batch", str(args.batch), "--seq", str(args.seq),
                         "--rank", str(args.rank), "--warmup", str(args.warmup), "--steps", str(args.steps), "--lr",
                         str(args.lr), "--recompute", args.recompute, "--attn", args.attn], "PEFT")
    md = table(args, ours, peft)
    print(md)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"loftq": ours, "peft": peft, "markdown": md}, f, indent=2)
    return 0 if (ours or args.skip_loftq) and (peft or args.skip_peft) else 1


if __name__ == "__main__":
    sys.exit(main())
