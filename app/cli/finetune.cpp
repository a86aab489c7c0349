// finetune.cpp: `loftq finetune MODEL --data FILE --out DIR [...]` (LoRA fine-tuning from a
// LoftQ export, or from a plain checkpoint with LoftQ / QLoRA / 16-bit LoRA initialization made in
// memory) and `loftq eval MODEL --data FILE [--adapter DIR]` (loss and perplexity). Both fill the
// engine's structs and call run_finetune / run_eval, as the GUI does. Ctrl-C cancels a fine-tune
// between micro-batches; the last checkpoint stays and `--resume` continues from it.
// --device auto (default: the GPU when this build has CUDA and one is usable, else the CPU, with
// a line saying why), cpu or cuda (an error naming the reason when unusable); --gemm and
// --recompute tune the CUDA path (trainer.h).
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "cli/common.h"
#include "cli/events.h"
#include "cli/train_printer.h"
#include "cli/world.h"
#include "core/error.h"
#include "dist/data_parallel.h"
#include "quant/quantizer.h"
#include "train/adapter_writer.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace loftq::cli {

namespace {

// Model/init flags shared by finetune and eval.
struct InitFlags {
    std::optional<InitKind> init;
    std::string quant = "nf4";
    int block = 64, rank = 16, iters = 5;
    double lora_alpha = 0;
    uint64_t seed = 0;
    std::string plan;
    bool no_verify = false;
    void add_to(CLI::App* sub, const char* default_text) {
        sub->add_flag("--no-verify", no_verify,
                      "Load an export without checking its files against the checksums in its manifest");
        sub->add_option("--plan", plan,
                        "A plan file (loftq plan init/auto, the workbench's Save Plan): --init loftq or qlora with its "
                        "per-weight quantizers, ranks and steps (default init then loftq)");
        add_enum_option(sub, "--init", init, kInitKindNames,
                        std::string("loftq (LoftQ in memory), qlora, lora16 or export (default: ") + default_text + ")");
        sub->add_option("--quant", quant, "Quantizer for --init loftq/qlora: nf4 (default), nf3, nf2, int2, int3, int4, int8");
        sub->add_option("--block", block, "Elements per scale block (default 64)")->check(CLI::Range(1, 1 << 20));
        sub->add_option("--rank", rank, "LoRA rank r (default 16)")->check(CLI::Range(1, 65536));
        sub->add_option("--iters", iters, "LoftQ alternating steps T (default 5)")->check(CLI::Range(0, 100));
        sub->add_option("--lora-alpha", lora_alpha, "PEFT lora_alpha (default: the rank, scale 1)")->check(CLI::NonNegativeNumber);
        sub->add_option("--seed", seed, "Seed for LoftQ's SVD, LoRA init, the data split and order (default 0)");
    }
    // `fallback` is the init when --init is not given.
    LoadOptions make(const std::string& model, InitKind fallback) const {
        if (!quant_kind_from_name(quant))
            throw Error("--quant " + quant + ": unknown quantizer (expected nf4, nf3, nf2, int2, int3, int4, int8)");
        LoadOptions lo;
        lo.model = model;
        lo.init = fallback;
        if (init) lo.init = *init;
        lo.quant = quant;
        lo.block = block;
        lo.rank = rank;
        lo.iters = iters;
        lo.lora_alpha = lora_alpha;
        lo.seed = seed;
        lo.verify = !no_verify;
        if (!plan.empty()) {
            if (!init) lo.init = InitKind::Loftq;
            if (lo.init != InitKind::Loftq && lo.init != InitKind::Qlora)
                throw Error(plan, "", "--plan gives per-weight quantizer settings: use it with --init loftq or qlora");
            lo.plan = std::make_shared<const Plan>(load_plan(plan));
        }
        return lo;
    }
};


struct FinetuneArgs {
    TrainOptions opt;
    InitFlags init;
    std::string model;
    bool quiet = false;
};

void run_finetune_cmd(FinetuneArgs& a) {
    TrainOptions opt = a.opt;
    opt.load = a.init.make(a.model, is_loftq_export(a.model) ? InitKind::Export : InitKind::Loftq);
    opt.load.threads = opt.threads;
    if (Comm* w = world()) opt.parallel = make_data_parallel(*w);  // `mpirun -np N`: rank 0 prints and writes
    const bool root = is_root();
    CancelToken cancel;
    WorldCancel world_cancel(cancel);
    TrainPrinter printer(a.quiet);
    TrainResult r;
    {
        SigintGuard sigint(cancel);
        try {
            EventWriter* ev = events();
            r = run_finetune(opt,
                             root ? TrainCallback([&](const TrainEvent& e) {
                                 printer(e);
                                 if (ev) ev->write(event_json(e));
                             })
                                  : TrainCallback(),
                             cancel);
        } catch (const Cancelled&) {
            printer.finish();
            // Spread over ranks: main says why (rank 0) and tells the others.
            if (world() && (!world()->abort_reason().empty() || !root)) throw;
            // The engine has said what stayed in the output folder (a checkpoint for --resume, or nothing).
            // Exit code 128 + the signal (130 Ctrl-C, 143 SIGTERM), without main's "no output was left" line.
            const int sig = cancel_signal() ? cancel_signal() : SIGINT;
            std::fprintf(stderr, "\nloftq: cancelled%s; where %s/checkpoint was kept, rerun with --resume to continue\n",
                         sig == SIGTERM ? " (SIGTERM)" : "", opt.out_dir.c_str());
            throw CLI::RuntimeError(128 + sig);
        } catch (...) {
            printer.finish();
            throw;
        }
    }
    if (!root) return;
    std::printf("%d steps in %s, %.0f tokens/s on %s%s\n", r.steps_done, human_seconds(r.seconds).c_str(), r.tokens_per_s,
                r.device.c_str(), r.ranks > 1 ? (" x " + std::to_string(r.ranks) + " ranks").c_str() : "");
    if (r.device_peak_bytes) std::printf("peak device memory %s (cudaMemGetInfo, context included)\n", human_bytes(double(r.device_peak_bytes)).c_str());
    if (std::isfinite(r.first_eval_loss))
        std::printf("eval loss %.4f -> %.4f (perplexity %.3f -> %.3f); last train loss %.4f\n", r.first_eval_loss,
                    r.final_eval_loss, std::exp(r.first_eval_loss), std::exp(r.final_eval_loss), r.final_train_loss);
    if (std::isfinite(r.original_eval_loss))
        std::printf("original model: eval loss %.4f (perplexity %.3f)\n", r.original_eval_loss, std::exp(r.original_eval_loss));
    if (!r.sample.empty()) std::printf("sample: %s\n", r.sample.c_str());
    std::printf("wrote %s (adapter/, checkpoint/, metrics.jsonl)\n", opt.out_dir.c_str());
}

struct EvalArgs {
    EvalOptions opt;
    InitFlags init;
    std::string model;
};

void run_eval_cmd(EvalArgs& a) {
    EvalOptions opt = a.opt;
    opt.load = a.init.make(a.model, InitKind::Export);
    if (!opt.adapter.empty() && !a.init.init) {
        // The adapter says how its frozen base was built (loftq_base.json): rebuild the same base.
        AdapterInfo info = read_adapter_info(opt.adapter);
        if (info.has_base) {
            opt.load = info.base;
            opt.load.model = a.model;
            const std::string how = opt.load.plan                     ? ", a plan's per-weight settings"
                                    : opt.load.init == InitKind::Export ? ""
                                                                        : ", " + opt.load.quant + " rank " + std::to_string(opt.load.rank);
            std::fprintf(stderr, "loftq: base as the adapter was trained on: init %s%s\n", kInitKindNames.name(opt.load.init), how.c_str());
        }
    }
    opt.load.threads = opt.threads;
    CancelToken cancel;
    EvalResult r;
    {
        SigintGuard sigint(cancel);
        r = run_eval(opt, cancel);
    }
    std::printf("loss %.4f  perplexity %.3f  (%lld scored tokens in %lld examples of %d, %s on %s)\n", r.loss, r.ppl,
                (long long)r.tokens, (long long)r.examples, opt.seq, human_seconds(r.seconds).c_str(), r.device.c_str());
}
}  // namespace

void add_finetune(CLI::App& app) {
    auto a = std::make_shared<FinetuneArgs>();
    TrainOptions& o = a->opt;
    CLI::App* sub = app.add_subcommand("finetune", "LoRA fine-tuning from a LoftQ export or a checkpoint (LoftQ/QLoRA/LoRA init in memory)");
    sub->add_option("MODEL", a->model, "LoftQ export folder, HF folder, .safetensors or llama2.c .bin")->required();
    sub->add_option("--data", o.data, "Training data: .txt (plain text) or .jsonl (text / question+answer / instruction+output)")
        ->required()->check(CLI::ExistingFile);
    sub->add_option("--eval-data", o.eval_data, "Evaluation data (default: a held-out share of --data)")->check(CLI::ExistingFile);
    sub->add_option("-o,--out", o.out_dir, "Output folder: adapter/, checkpoint/, metrics.jsonl")->required();
    add_events_option(sub);
    sub->add_option("--steps", o.steps, "Optimizer steps (default 100)")->check(CLI::Range(1, 100000000));
    sub->add_option("--batch", o.batch, "Examples per micro-batch (default 4)")->check(CLI::Range(1, 65536));
    sub->add_option("--seq", o.seq, "Tokens per example (default 128)")->check(CLI::Range(2, 1 << 20));
    sub->add_option("--accum", o.accum, "Micro-batches per step (gradient accumulation, default 1)")->check(CLI::Range(1, 65536));
    sub->add_option("--lr", o.lr, "Peak learning rate (default 2e-4)")->check(CLI::PositiveNumber);
    sub->add_option("--min-lr-ratio", o.min_lr_ratio, "Cosine decay floor as a share of --lr (default 0.1)")->check(CLI::Range(0.0, 1.0));
    sub->add_option("--warmup", o.warmup, "Linear warm-up steps (default 3% of --steps)")->check(CLI::Range(0, 100000000));
    sub->add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay (default 0)")->check(CLI::NonNegativeNumber);
    sub->add_option("--clip", o.clip, "Global gradient-norm clip, 0 = off (default 1)")->check(CLI::NonNegativeNumber);
    sub->add_option("--eval-every", o.eval_every, "Evaluate (and checkpoint) every N steps, 0 = only at start and end (default 50)")
        ->check(CLI::Range(0, 100000000));
    sub->add_option("--eval-batches", o.eval_batches, "Batches per evaluation (default 8)")->check(CLI::Range(1, 1000000));
    sub->add_option("--checkpoint-every", o.checkpoint_every, "Checkpoint every N steps (default 0: at evaluations and the end)")
        ->check(CLI::Range(0, 100000000));
    sub->add_option("--sample-tokens", o.sample_tokens, "Greedy sample length at the end, 0 = none (default 64)")->check(CLI::Range(0, 100000));
    sub->add_option("--prompt", o.sample_prompt, "Prompt for the final sample (default: BOS only)");
    add_device_options(sub, o.device, "", &o.gemm, &o.recompute);
    sub->add_option("--tokenizer", o.tokenizer, "Tokenizer file (default: beside MODEL)")->check(CLI::ExistingFile);
    sub->add_option("--threads", o.threads, "Threads (default: all cores)")->check(CLI::Range(0, 4096));
    sub->add_flag("--resume", o.resume, "Continue from OUT/checkpoint");
    sub->add_flag("--eval-original", o.eval_original,
                  "Also measure the original (16-bit) model on the same held-out examples first: the reference loss");
    sub->add_flag("-q,--quiet", a->quiet, "No progress output");
    a->init.add_to(sub, "export when MODEL holds loftq_init/, else loftq");
    sub->callback([a] {
        a->opt.seed = a->init.seed;
        run_finetune_cmd(*a);
    });
}

void add_eval(CLI::App& app) {
    auto a = std::make_shared<EvalArgs>();
    EvalOptions& o = a->opt;
    CLI::App* sub = app.add_subcommand("eval", "Loss and perplexity of a model (optionally with a PEFT adapter) on a data file");
    sub->add_option("MODEL", a->model, "LoftQ export folder, HF folder, .safetensors or llama2.c .bin")->required();
    sub->add_option("--data", o.data, "Data: .txt or .jsonl")->required()->check(CLI::ExistingFile);
    sub->add_option("--adapter", o.adapter, "PEFT adapter folder to apply (e.g. OUT/adapter of a fine-tune)")->check(CLI::ExistingDirectory);
    sub->add_option("--seq", o.seq, "Tokens per example (default 128)")->check(CLI::Range(2, 1 << 20));
    sub->add_option("--batch", o.batch, "Examples per forward (default 4)")->check(CLI::Range(1, 65536));
    sub->add_option("--max-examples", o.max_examples, "Evaluate the first N examples only (default: all)")->check(CLI::Range(int64_t(0), INT64_MAX));
    sub->add_option("--tokenizer", o.tokenizer, "Tokenizer file (default: beside MODEL)")->check(CLI::ExistingFile);
    sub->add_option("--threads", o.threads, "Threads (default: all cores)")->check(CLI::Range(0, 4096));
    add_device_options(sub, o.device, "", &o.gemm);
    a->init.add_to(sub, "export: the model as stored, with its loftq_init adapter when it has one; with --adapter, the base that adapter was trained on");
    sub->callback([a] { run_eval_cmd(*a); });
}

}  // namespace loftq::cli
