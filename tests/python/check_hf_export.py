#!/usr/bin/env python3
"""check_hf_export.py: load a `loftq quantize` export with transformers + peft exactly as a user would,
and check it against the source model and the export's own metrics.

  python3 tests/python/check_hf_export.py SOURCE_HF_FOLDER EXPORT_FOLDER

Checks: the backbone loads with AutoModelForCausalLM; PeftModel.from_pretrained(subfolder="loftq_init")
attaches an adapter to exactly the exported targets; for every target, ||W - (Q + scale * B A)||_F / ||W||_F
recomputed in float64 from the loaded modules equals loftq_metrics.json's final_error (1e-3 relative, bf16
storage of Q allowed for); the LoRA model's logits on a few tokens are closer to the source model's than the
bare quantized backbone's. Needs torch, transformers, peft (the GPU device image has them); it is not part of
CTest, which runs where they are absent. Exit status 0 when every check passes.
"""
import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM


def main(src, out):
    metrics = json.load(open(f"{out}/loftq_metrics.json"))
    dtype = json.load(open(f"{out}/config.json")).get("torch_dtype", "float32")
    final = {w["name"]: w["final_error"] for w in metrics["weights"]}
    ref = AutoModelForCausalLM.from_pretrained(src, torch_dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32)
    bare_logits_model = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(base, out, subfolder="loftq_init")
    ref_w = dict(ref.named_parameters())
    failures, checked = [], 0
    for name, module in model.named_modules():
        if not hasattr(module, "lora_A") or "default" not in module.lora_A:
            continue
        key = name.removeprefix("base_model.model.") + ".weight"
        W = ref_w[key].detach().double()
        Q = module.base_layer.weight.detach().double()
        A = module.lora_A["default"].weight.detach().double()
        B = module.lora_B["default"].weight.detach().double()
        delta = module.scaling["default"] * (B @ A)
        if getattr(module, "fan_in_fan_out", False):
            delta = delta.T
        err = (torch.linalg.norm(W - Q - delta) / torch.linalg.norm(W)).item()
        want = final.get(key)
        checked += 1
        # Q is stored in the source dtype: bf16/fp16 rounding (relative 2^-9 / 2^-12 per element) moves
        # the recomputed error by at most about that much of ||Q|| / ||W|| ~ 1.
        tol = 1e-3 * (want or 0) + {"bfloat16": 4e-3, "float16": 5e-4}.get(dtype, 1e-6)
        if want is None or abs(err - want) > tol:
            failures.append(f"{key}: recomputed {err:.6f}, metrics {want}")
    if checked != len(final):
        failures.append(f"adapter covers {checked} modules, metrics list {len(final)}")
    ids = torch.arange(1, 17).unsqueeze(0) % ref.config.vocab_size
    with torch.no_grad():
        l_ref = ref(ids).logits
        l_lora = model(ids).logits
        l_bare = bare_logits_model(ids).logits
    d_lora = torch.linalg.norm(l_lora - l_ref).item()
    d_bare = torch.linalg.norm(l_bare - l_ref).item()
    print(f"{checked} adapted modules; logits distance to source: LoftQ {d_lora:.4f}, backbone alone {d_bare:.4f}")
    if not d_lora < d_bare:
        failures.append("LoftQ adapter does not bring the logits closer to the source model")
    for f in failures:
        print("FAIL", f)
    print("OK" if not failures else f"{len(failures)} failures")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
