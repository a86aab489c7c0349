// bench_finetune.cpp: `loftq bench-finetune MODEL [--batch B --seq T --steps S ...]`: the
// throughput and memory of the LoRA training step alone (forward, backward, clipping, AdamW), on
// random or given token ids, without data files or outputs. Fills TrainBenchOptions and calls the
// engine's run_train_bench. Prints a human summary on stderr and one JSON object on stdout (read
// by tests/python/bench_peft_finetune.py, which runs PyTorch + PEFT on the same model and tokens).
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "core/error.h"
#include "quant/quantizer.h"
#include "train/adapter_writer.h"
#include "train/trainer.h"

namespace loftq::cli {

namespace {

struct BenchArgs {
    TrainBenchOptions opt;
    std::string model;
    InitKind init = InitKind::Qlora;
    std::string quant = "nf4";
    int block = 64, rank = 16, iters = 1;
    double lora_alpha = 0;
    bool quiet = false;
};

void run_bench_cmd(BenchArgs& a) {
    TrainBenchOptions opt = a.opt;
    if (!quant_kind_from_name(a.quant))
        throw Error("--quant " + a.quant + ": unknown quantizer (expected nf4, nf3, nf2, int2, int3, int4, int8)");
    opt.load.model = a.model;
    opt.load.init = a.init;
    opt.load.quant = a.quant;
    opt.load.block = a.block;
    opt.load.rank = a.rank;
    opt.load.iters = a.iters;
    opt.load.lora_alpha = a.lora_alpha;
    opt.load.seed = opt.seed;
    opt.load.threads = opt.threads;
    CancelToken cancel;
    TrainBenchResult r;
    {
        SigintGuard sigint(cancel);
        r = run_train_bench(opt, [&](const TrainEvent& e) {
            if (a.quiet) return;
            if (e.kind == TrainEventKind::Message) std::fprintf(stderr, "loftq: %s\n", e.text.c_str());
            if (e.kind == TrainEventKind::Step)
                std::fprintf(stderr, "step %d/%d  loss %.4f  (%.1f s)\n", e.step, e.steps, e.train_loss, e.elapsed);
        }, cancel);
    }
    std::fprintf(stderr, "loftq: %s, batch %d x seq %d, %lld LoRA parameters: %.1f ms/step, %.0f tokens/s; peak %s\n",
                 r.device.c_str(), opt.batch, opt.seq, (long long)r.trainable, r.ms_per_step, r.tokens_per_s,
                 human_bytes(double(r.device_peak_used ? r.device_peak_used : r.peak_bytes)).c_str());
    if (!r.memory.empty()) std::fprintf(stderr, "loftq: memory: %s\n", r.memory.c_str());
    nlohmann::ordered_json j;
    j["tool"] = "loftq";
    j["device"] = r.device;
    j["init"] = kInitKindNames.name(a.init);
    j["quant"] = a.quant;
    j["block"] = a.block;
    j["rank"] = a.rank;
    j["base"] = r.base;
    j["gemm"] = r.gemm;
    j["recompute"] = r.recompute;
    j["batch"] = opt.batch;
    j["seq"] = opt.seq;
    j["warmup"] = opt.warmup;
    j["steps"] = opt.steps;
    j["trainable"] = r.trainable;
    j["load_seconds"] = r.load_seconds;
    j["seconds"] = r.seconds;
    j["ms_per_step"] = r.ms_per_step;
    j["tokens_per_s"] = r.tokens_per_s;
    j["first_loss"] = r.first_loss;
    j["last_loss"] = r.last_loss;
    j["peak_bytes"] = r.peak_bytes;
    j["device_peak_used"] = r.device_peak_used;
    j["memory"] = r.memory;
    std::printf("%s\n", j.dump().c_str());
}

}  // namespace

void add_bench_finetune(CLI::App& app) {
    auto a = std::make_shared<BenchArgs>();
    TrainBenchOptions& o = a->opt;
    CLI::App* sub = app.add_subcommand("bench-finetune", "Tokens/s and memory of the LoRA training step (no data, no outputs)");
    sub->add_option("MODEL", a->model, "HF folder, .safetensors, llama2.c .bin or LoftQ export")->required();
    add_enum_option(sub, "--init", a->init, kInitKindNames, "qlora (default), loftq, lora16 or export");
    sub->add_option("--quant", a->quant, "Quantizer for --init loftq/qlora (default nf4)");
    sub->add_option("--block", a->block, "Elements per scale block (default 64)")->check(CLI::Range(1, 1 << 20));
    sub->add_option("--rank", a->rank, "LoRA rank r on all seven projections (default 16)")->check(CLI::Range(1, 65536));
    sub->add_option("--iters", a->iters, "LoftQ steps for --init loftq (default 1)")->check(CLI::Range(0, 100));
    sub->add_option("--lora-alpha", a->lora_alpha, "PEFT lora_alpha (default: the rank)")->check(CLI::NonNegativeNumber);
    sub->add_option("--batch", o.batch, "Examples per step (default 4)")->check(CLI::Range(1, 65536));
    sub->add_option("--seq", o.seq, "Tokens per example (default 512)")->check(CLI::Range(2, 1 << 20));
    sub->add_option("--warmup", o.warmup, "Untimed steps first (default 3)")->check(CLI::Range(0, 100000));
    sub->add_option("--steps", o.steps, "Timed steps (default 10)")->check(CLI::Range(1, 100000));
    sub->add_option("--lr", o.lr, "AdamW learning rate (default 1e-4)")->check(CLI::PositiveNumber);
    sub->add_option("--tokens", o.tokens_file, "Raw int32 token ids (default: uniform random ids from --seed)")
        ->check(CLI::ExistingFile);
    sub->add_option("--seed", o.seed, "Seed of the random ids and the LoRA init (default 0)");
    add_device_options(sub, o.device, "", &o.gemm, &o.recompute);
    sub->add_option("--threads", o.threads, "CPU threads (default: all cores)")->check(CLI::Range(0, 4096));
    sub->add_flag("-q,--quiet", a->quiet, "Only the JSON line");
    sub->callback([a] { run_bench_cmd(*a); });
}

}  // namespace loftq::cli
