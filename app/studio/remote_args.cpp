// remote_args.cpp: see remote_args.h. Flag names are the CLI's (app/cli/finetune.cpp).
#include "studio/remote_args.h"

#include <cstdio>

#include "core/error.h"
#include "device/compute_device.h"
#include "model/device_llama.h"

namespace studio {

namespace {
std::string exact(double x) {  // round-trips a double
    char b[40];
    std::snprintf(b, sizeof b, "%.17g", x);
    return b;
}
}  // namespace

std::vector<std::string> finetune_cli_args(const loftq::TrainOptions& o, const std::string& out, const std::string& plan_file) {
    using std::to_string;
    const loftq::LoadOptions& l = o.load;
    std::vector<std::string> a{"finetune", l.model, "--data", o.data, "--out", out};
    auto add = [&](const char* flag, const std::string& v) {
        a.push_back(flag);
        a.push_back(v);
    };
    if (!o.eval_data.empty()) add("--eval-data", o.eval_data);
    if (!o.tokenizer.empty()) add("--tokenizer", o.tokenizer);
    add("--init", loftq::kInitKindNames.name(l.init));
    if (l.plan) {
        if (plan_file.empty()) throw loftq::Error("a plan start needs its plan in a file for the command line");
        add("--plan", plan_file);
    }
    add("--quant", l.quant);
    add("--block", to_string(l.block));
    add("--rank", to_string(l.rank));
    add("--iters", to_string(l.iters));
    add("--lora-alpha", exact(l.lora_alpha));
    add("--seed", to_string(o.seed));
    if (!l.verify) a.push_back("--no-verify");
    add("--device", loftq::kComputeDeviceNames.name(o.device));
    add("--gemm", loftq::kGemmModeNames.name(o.gemm));
    add("--recompute", loftq::kRecomputeModeNames.name(o.recompute));
    add("--steps", to_string(o.steps));
    add("--batch", to_string(o.batch));
    add("--seq", to_string(o.seq));
    add("--accum", to_string(o.accum));
    add("--lr", exact(o.lr));
    add("--min-lr-ratio", exact(o.min_lr_ratio));
    if (o.warmup >= 0) add("--warmup", to_string(o.warmup));
    add("--weight-decay", exact(o.weight_decay));
    add("--clip", exact(o.clip));
    add("--eval-every", to_string(o.eval_every));
    add("--eval-batches", to_string(o.eval_batches));
    add("--checkpoint-every", to_string(o.checkpoint_every));
    add("--sample-tokens", to_string(o.sample_tokens));
    if (!o.sample_prompt.empty()) add("--prompt", o.sample_prompt);
    add("--threads", to_string(o.threads));
    if (o.resume) a.push_back("--resume");
    if (o.eval_original) a.push_back("--eval-original");
    a.push_back("-q");
    return a;
}

}  // namespace studio
