// trainer.h: LoRA fine-tuning of a LLaMA-family model from its LoftQ (or QLoRA / 16-bit LoRA)
// start: the one engine call `loftq finetune` and the GUI's Fine-tune tab make.
// AdamW (decoupled weight decay), linear warm-up then cosine decay to min_lr, global-norm
// gradient clipping, gradient accumulation, fixed seeds. Evaluates loss/perplexity on the
// held-out examples every eval_every steps and at the end; greedy sample at the end.
// Writes OUT/adapter/ (PEFT: adapter_model.safetensors + adapter_config.json),
// OUT/checkpoint/ (adapters + AdamW moments + step + options, resumable), OUT/metrics.jsonl
// (one JSON object per step / eval: step, train_loss, eval_loss, eval_ppl, lr, tokens_per_s),
// each written atomically. Cancelling keeps the last checkpoint.
// Device: Cpu (the reference), Cuda (LlamaCuda + CudaAdamW, engine/cuda/train/; the base stays
// packed on the device for quantized starts), or Auto (CUDA when usable, else the CPU, with a
// Message saying why). The loop, data order, checkpoints and outputs are the same on both;
// optimizer.h hides where the update runs. Files: trainer.cpp (the loop), evaluate.cpp (run_eval
// and the held-out loss), train_device.cpp (device choice and the model on it), metrics_log.cpp
// (metrics.jsonl), train_bench.cpp (run_train_bench), metrics_reader.cpp (read_metrics).
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/cancel.h"
#include "device/compute_device.h"
#include "model/device_llama.h"
#include "model/llama.h"
#include "train/data_parallel.h"

namespace loftq {

struct TrainOptions {
    LoadOptions load;                 // model + init
    std::string data, eval_data;      // eval_data "" = a held-out split of data
    std::string tokenizer;            // "" = beside the model
    std::string out_dir;
    ComputeDevice device = ComputeDevice::Cpu;        // the CLI and GUI default to Auto
    GemmMode gemm = GemmMode::Tf32;                   // CUDA: the frozen base's GEMMs (Bf16: CUDA only, refused on the CPU)
    RecomputeMode recompute = RecomputeMode::Auto;    // CUDA activation checkpointing (Auto: when the activations would not fit)
    int steps = 100, batch = 4, seq = 128, accum = 1;
    double lr = 2e-4, min_lr_ratio = 0.1, weight_decay = 0.0, clip = 1.0;
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    int warmup = -1;                  // steps; -1 = 3% of steps
    int eval_every = 50, eval_batches = 8;
    double eval_fraction = 0.05;
    // Also measure the original model (16-bit W, no adapter) on the same held-out examples, before
    // the start is loaded (one model at a time): TrainResult::original_eval_loss, an Eval event
    // with step -1 and a {"kind": "eval_original"} line in metrics.jsonl. The reference line that
    // every quantized start should approach.
    bool eval_original = false;
    int sample_tokens = 64;
    std::string sample_prompt;        // "" = BOS only
    int checkpoint_every = 0;         // 0 = at evals and the end
    uint64_t seed = 0;
    int threads = 0;
    bool resume = false;              // continue from OUT/checkpoint
    // Data-parallel over ranks (data_parallel.h; `mpirun -np N loftq finetune`): accum must be a
    // multiple of the ranks; rank 0 writes every output. The cancel token given to run_finetune
    // must be the one the transport cancels on a peer's abort. Null or one rank: this process alone.
    std::shared_ptr<DataParallel> parallel;
};

enum class TrainEventKind : uint8_t { Started, Step, Eval, Sample, Checkpoint, Message, Done };
struct TrainEvent {
    TrainEventKind kind = TrainEventKind::Message;
    int step = 0, steps = 0;
    double train_loss = 0, eval_loss = 0, eval_ppl = 0, lr = 0, grad_norm = 0;
    double tokens_per_s = 0, elapsed = 0, eta = -1, fraction = 0;
    double sync_seconds = 0;          // Step of a data-parallel run: time in the cross-rank gradient sum
    std::string text;                 // Message / Sample
};
using TrainCallback = std::function<void(const TrainEvent&)>;

struct TrainResult {
    int steps_done = 0;
    double first_eval_loss = 0, final_eval_loss = 0, final_train_loss = 0;
    double original_eval_loss = NAN;  // TrainOptions::eval_original, else NaN
    double seconds = 0, tokens_per_s = 0;
    std::string sample;
    std::vector<std::string> files;
    std::string device;               // where it ran: "cpu" or "cuda, <GPU name>"
    uint64_t device_peak_bytes = 0;   // CUDA: peak device memory in use (cudaMemGetInfo, context included)
    int ranks = 1;                    // data-parallel ranks (TrainOptions::parallel)
};

TrainResult run_finetune(const TrainOptions& opt, const TrainCallback& cb, const CancelToken& cancel);

// One line of OUT/metrics.jsonl as the GUI (and any reader) sees it: "train" lines carry the
// train loss, "eval" lines the held-out loss; other fields are NaN / 0 when absent.
struct MetricsRecord {
    std::string kind;                 // "train" or "eval"
    int step = 0;
    double train_loss = 0, eval_loss = 0, lr = 0, tokens_per_s = 0;
};
// Reads OUT/metrics.jsonl (or the file itself); skips an unterminated last line (a run still
// writing). Throws loftq::Error naming the file and line for malformed JSON.
std::vector<MetricsRecord> read_metrics(const std::string& run_dir_or_file);

struct EvalOptions {
    LoadOptions load;
    std::string data, tokenizer;
    int batch = 4, seq = 128;
    int64_t max_examples = 0;
    std::string adapter;              // a PEFT adapter folder to apply (e.g. OUT/adapter), "" = none
    int threads = 0;
    ComputeDevice device = ComputeDevice::Cpu;   // as TrainOptions::device
    GemmMode gemm = GemmMode::Tf32;              // as TrainOptions::gemm
};
struct EvalResult {
    double loss = 0, ppl = 0;
    int64_t tokens = 0;
    int64_t examples = 0;
    double seconds = 0;
    std::string device;               // "cpu" or "cuda, <GPU name>"
};
EvalResult run_eval(const EvalOptions& opt, const CancelToken& cancel);

// Throughput of the training step alone (forward, backward, clipping, AdamW), without data files
// or outputs: `loftq bench-finetune` and tests/python/bench_peft_finetune.py, which runs PyTorch +
// PEFT on the same model, tokens, batch and length. Tokens: `tokens_file` (raw little-endian
// int32 ids, read B x T at a time, cyclically) or uniform ids from `seed`; targets = the next
// token of the row (the last position unscored), as a causal-LM loss over the same tokens.
// `warmup` steps run untimed, then `steps` timed ones (the device synchronized at both ends).
struct TrainBenchOptions {
    LoadOptions load;
    ComputeDevice device = ComputeDevice::Auto;
    GemmMode gemm = GemmMode::Tf32;
    RecomputeMode recompute = RecomputeMode::Auto;
    int batch = 4, seq = 512, warmup = 3, steps = 10;
    double lr = 1e-4;
    std::string tokens_file;
    uint64_t seed = 0;
    int threads = 0;
};
struct TrainBenchResult {
    std::string device;               // "cpu" or "cuda, <GPU name>"
    std::string gemm, base;           // kGemmModeNames' name on CUDA, "" on the CPU; "packed" or "fp32"
    bool recompute = false;
    int64_t trainable = 0;            // LoRA parameters
    double load_seconds = 0, seconds = 0, ms_per_step = 0, tokens_per_s = 0;
    double first_loss = 0, last_loss = 0;
    uint64_t peak_bytes = 0;          // CUDA: own accounting of buffers; CPU: model bytes
    uint64_t device_peak_used = 0;    // CUDA: cudaMemGetInfo peak (context and cuBLAS included)
    std::string memory;               // one-line breakdown
};
TrainBenchResult run_train_bench(const TrainBenchOptions& opt, const TrainCallback& cb, const CancelToken& cancel);

}  // namespace loftq
