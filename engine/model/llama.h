// llama.h: a LLaMA-family decoder for LoRA fine-tuning on the CPU, fp32 (the reference path the
// CUDA backend must match). Token embedding, RMSNorm, rotary embeddings in the Hugging Face
// layout (rotate-half; llama2.c's interleaved pairs are permuted into it by the checkpoint
// reader, see io/checkpoint.h), grouped-query causal attention, SwiGLU MLP, final norm, tied or
// untied LM head, optional q/k/v bias (Qwen2).
//
// The base weights are frozen (the dequantized Q of a LoftQ export, QLoRA's q(W), or the
// original W); every adapted linear adds scale * B (A x) with A (r x in), B (out x r),
// scale = lora_alpha / r. Only A and B have gradients.
//
// Calls, as in llm.c: forward (with or without targets), zero_grad, backward (after a forward
// with targets), then the optimizer reads trainable(). Activations are sized for the largest
// (B, T) seen and reused; memory = params + LoRA (x3 with AdamW) + activations.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/cancel.h"
#include "core/name_table.h"
#include "io/checkpoint.h"
#include "loftq/plan.h"

namespace loftq {

struct LlamaConfig {
    int dim = 0, hidden = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab = 0;
    int max_seq = 2048;
    float rope_theta = 10000.f, norm_eps = 1e-5f;
    // config.json rope_scaling: "" (none), "linear" (frequencies / factor) or "llama3" (Llama 3.1+:
    // long wavelengths / factor, short ones kept, a blend between); see ops::rope_inv_freq.
    std::string rope_scaling;
    double rope_factor = 1, rope_low_freq_factor = 1, rope_high_freq_factor = 4;
    int rope_original_max = 8192;
    bool tied_embeddings = false;
    bool qkv_bias = false;          // Qwen2
    int head_dim() const { return dim / n_heads; }
    int kv_dim() const { return head_dim() * n_kv_heads; }
};
LlamaConfig llama_config_from(const ModelConfig& c);

// The seven adapted linears of a layer, in PEFT module-kind names.
enum class LoraSite : uint8_t { Q, K, V, O, Gate, Up, Down };
constexpr int kLoraSites = 7;
const char* lora_site_name(LoraSite s);          // "q_proj", ..., "down_proj"
std::string lora_module_path(int layer, LoraSite s);  // "model.layers.3.self_attn.q_proj"

// One trainable tensor (a LoRA A or B) as the optimizer and the adapter writer see it.
struct TrainableTensor {
    std::string name;        // PEFT key, e.g. "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    float* value = nullptr;
    float* grad = nullptr;
    int64_t rows = 0, cols = 0;
    int64_t numel() const { return rows * cols; }
};

class LlamaModel {
public:
    virtual ~LlamaModel() = default;
    virtual const LlamaConfig& config() const = 0;

    // tokens, targets: B x T row-major token ids; targets < 0 are not scored. Returns the mean
    // cross-entropy over scored positions (0 when none, or when targets is null). Logits
    // (B x T x vocab) stay readable until the next forward.
    virtual float forward(const int* tokens, const int* targets, int B, int T) = 0;
    virtual const float* logits() const = 0;
    virtual int64_t scored_tokens() const = 0;   // of the last forward
    virtual void zero_grad() = 0;
    virtual void backward() = 0;                  // d(mean loss)/d(LoRA), accumulated into grads
    virtual std::vector<TrainableTensor> trainable() = 0;
    // LoRA of one site: rank (0 = not adapted) and scale.
    virtual int lora_rank(int layer, LoraSite s) const = 0;
    virtual float lora_scale(int layer, LoraSite s) const = 0;
    virtual void set_threads(int n) = 0;

    // ---- Inference (generation) with a KV cache: the cache holds the keys and values of the
    // tokens decoded so far, positions [0, cached()). decode() runs `n` new tokens at positions
    // cached() .. cached() + n - 1 (a prompt's prefill: n = its length; then one token per step)
    // and returns the logits of the last one (vocab floats, valid until the next call).
    // Throws loftq::Error when the context (context_limit()) would overflow. Training calls do
    // not touch the cache. This default keeps the token history and re-runs forward() over all
    // of it (no cache: each step costs the whole sequence; logits() changes too), the reference
    // the cached implementation is tested against; LlamaCpu overrides it with a real cache
    // (llama_decode.cpp). The CUDA model uses this default.
    virtual const float* decode(const int* tokens, int n);
    virtual void reset_cache() { history_.clear(); }
    virtual int cached() const { return int(history_.size()); }
    int context_limit() const;   // config().max_seq, or 2048 when the config does not say

protected:
    std::vector<int> history_;   // the default decode()'s tokens
};

// How the frozen base and the adapters start.
enum class InitKind : uint8_t {
    Export,   // MODEL is a LoftQ export: backbone as stored, adapters from OUT/loftq_init (or QLoRA init if absent)
    Loftq,    // run the LoftQ decomposition in memory (settings below) and start from it
    Qlora,    // base = q(W), A ~ kaiming-uniform(seed), B = 0
    Lora16,   // base = W (16-bit LoRA), A ~ kaiming-uniform(seed), B = 0
};
inline constexpr auto kInitKindNames = name_table<InitKind>(
    "init", {{InitKind::Export, "export"}, {InitKind::Loftq, "loftq"}, {InitKind::Qlora, "qlora"}, {InitKind::Lora16, "lora16"}});

struct LoadOptions {
    std::string model;                // checkpoint path (folder, .safetensors, llama2.c .bin) or LoftQ export
    InitKind init = InitKind::Export;
    // Loftq / Qlora / Lora16: quantizer and LoRA shape for every site
    std::string quant = "nf4";        // quantizer name (quant_kind_from_name)
    int block = 64, rank = 16, iters = 5;
    double lora_alpha = 0;            // 0 = rank (scale 1)
    uint64_t seed = 0;
    int threads = 0;
    // Keep the quantized projection weights packed in memory (k-bit codes + one fp32 scale per
    // block, dequantized per use: PackedSite in llama_cpu.h) instead of fp32. Changes memory,
    // never results: the packed model computes bit for bit what the fp32 one does. Loftq / Qlora:
    // the codes come straight from the quantizer. Export (HF LoftQ layout): each stored Q is
    // requantized with its weight's quantizer and block (OUT/loftq_metrics.json, else quant and
    // block above); the base is kept packed only when dequantizing that gives back every stored
    // value bit for bit (true for an F32 export; a bf16/fp16 export rounds Q off the grid), else
    // every site stays fp32. A packed export is always kept packed; Lora16 never is. The CUDA
    // trainer sets it, so that the device holds k bits per weight. LlamaCpu::packed_sites() says
    // what the loader did.
    bool keep_packed = false;
    // Loftq / Qlora: per-weight settings from a plan (mixed quantizers, blocks, ranks and steps,
    // as `loftq quantize --plan` runs it: the same SVD seeds, oversampling and power iterations,
    // so the LoftQ start equals the plan's export) instead of quant/block/rank/iters above; the
    // plan's lora_alpha and seed replace lora_alpha and seed. A projection the plan does not
    // target ("keep") stays at W with no adapter. Only the seven projections may be targets.
    std::shared_ptr<const Plan> plan;
    // Export: check the export's files against the sizes and checksums its manifest records
    // (export/verify.h) before reading them; a changed or missing file is refused, naming it.
    // Exports without checksums (older ones, or no manifest) load unchecked.
    bool verify = true;
    // Polled before each tensor is read and each in-memory decomposition starts (may be null): a
    // cancel throws loftq::Cancelled (a GUI closing while a LoftQ start is built in memory).
    // Not part of a run's recorded options.
    const CancelToken* cancel = nullptr;
};

// Throws loftq::Error naming the file/tensor (missing tensors, shapes that disagree with the
// config, an adapter whose ranks do not match, NaN weights).
std::unique_ptr<LlamaModel> load_llama(const LoadOptions& opt);

// True when `model` is a LoftQ export: a packed one, or an HF-layout folder with its LoRA start
// (loftq_init/adapter_model.safetensors). InitKind::Export of anything else loads the weights as
// stored with fresh adapters (fine for evaluating a model as it is; fine-tuning refuses it,
// since that would train the unquantized weights under a quantized run's name).
bool is_loftq_export(const std::string& model);

}  // namespace loftq
