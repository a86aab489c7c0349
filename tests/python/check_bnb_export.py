#!/usr/bin/env python3
"""check_bnb_export.py: load a `loftq quantize --format bnb-nf4` export with transformers + bitsandbytes as a
pre-quantized 4-bit model and compare every Linear4bit's dequantized weight with the Q of an "hf" export of
the same plan (same model, plan and seed).

  python3 tests/python/check_bnb_export.py BNB_EXPORT_FOLDER HF_EXPORT_FOLDER

Checks: AutoModelForCausalLM.from_pretrained(BNB) loads (pre-quantized, no BitsAndBytesConfig passed: the
export's config.json carries quantization_config); every target of loftq_metrics.json is a bnb Linear4bit
with quant_type nf4, blocksize 64 and no nested (double) quantization; its weight dequantized with
bitsandbytes.functional.dequantize_4bit equals the HF export's tensor (exactly in fp32; bf16/fp16 exports
compare after the same rounding); modules that are not targets stay dense; the loftq_init adapter attaches
with peft when peft is installed. Needs torch, transformers, bitsandbytes and a CUDA GPU; not part of CTest.
Exit status 0 when every check passes, 1 on any mismatch.
"""
import json
import sys

import torch
import bitsandbytes as bnb
import bitsandbytes.functional as F
from safetensors import safe_open
from transformers import AutoModelForCausalLM


def hf_tensors(folder):
    import glob
    import os
    out = {}
    for f in sorted(glob.glob(os.path.join(folder, "model*.safetensors"))):
        with safe_open(f, framework="pt") as st:
            for k in st.keys():
                out[k] = st.get_tensor(k)
    return out


def main(bnb_dir, hf_dir):
    metrics = json.load(open(f"{bnb_dir}/loftq_metrics.json"))
    targets = [w["name"] for w in metrics["weights"]]
    model = AutoModelForCausalLM.from_pretrained(bnb_dir, device_map={"": 0})
    ref = hf_tensors(hf_dir)
    modules = dict(model.named_modules())
    bad = 0
    for name in targets:
        mod = modules.get(name[: -len(".weight")])
        if not isinstance(mod, bnb.nn.Linear4bit):
            print(f"FAIL {name}: loaded as {type(mod).__name__}, not Linear4bit")
            bad += 1
            continue
        qs = mod.weight.quant_state
        if qs.quant_type != "nf4" or qs.blocksize != 64 or qs.nested:
            print(f"FAIL {name}: quant_state {qs.quant_type} / {qs.blocksize} / nested={qs.nested}")
            bad += 1
            continue
        deq = F.dequantize_4bit(mod.weight.data, qs).float().cpu()
        want = ref[name].to(qs.dtype).float()
        if deq.shape != want.shape or not torch.equal(deq, want):
            diff = (deq - want).abs().max().item() if deq.shape == want.shape else float("nan")
            print(f"FAIL {name}: dequantized weight differs from the hf export's Q (max |diff| {diff})")
            bad += 1
        else:
            print(f"ok   {name}")
    for mname, mod in modules.items():
        if isinstance(mod, bnb.nn.Linear4bit) and mname + ".weight" not in targets:
            print(f"FAIL {mname}: not a target but loaded as Linear4bit")
            bad += 1
    try:
        from peft import PeftModel
        PeftModel.from_pretrained(model, bnb_dir, subfolder="loftq_init", is_trainable=True)
        print("ok   loftq_init adapter attached")
    except ImportError:
        print("skip loftq_init (peft not installed)")
    print("PASS" if bad == 0 else f"{bad} FAILURES")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
