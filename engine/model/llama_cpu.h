// llama_cpu.h: the CPU fp32 LlamaModel (llama.h) — model = config, frozen base weights, LoRA
// parameters and gradients, activations, as in llm.c's GPT2 struct.
//
// Memory (C = dim, KV = kv_dim, F = hidden, V = vocab, L = layers, H = heads, N = B * T):
//   base: one fp32 block, named pointers into it: embed (V x C); per layer attn_norm (C),
//     wq (C x C), wk, wv (KV x C), [bq (C), bk, bv (KV) for Qwen2], wo (C x C), ffn_norm (C),
//     wg, wu (F x C), wd (C x F); final_norm (C); lm_head (V x C) unless tied (then = embed).
//   LoRA: one block of values and one of gradients, per adapted site A (r x in) then B (out x r).
//   activations (sized for the largest N and T seen, reused): per layer the residual input
//     (N x C), the attention residual `mid` (N x C), two rstd (N), q (N x C, after RoPE), k, v
//     (N x KV, k after RoPE), softmax probabilities (B x H x T x T), attention output (N x C),
//     gate and up pre-activations (N x F), x A^T of each adapted site (N x r); then the final
//     residual, logits (N x V), log-sum-exp (N) and one N x C / N x F scratch each. The
//     normalized inputs and silu(g) * u are recomputed in backward (cheap) instead of kept.
//   backward scratch (allocated by the first backward): a handful of N x C / N x F / N x KV
//     gradients, N x r_max, and a chunk of dlogits (rows x V, the LM head is done in row chunks).
//   decode (generation, llama_decode.cpp): a KV cache of 2 x L x positions x KV, grown as used,
//     and one step's buffers (n new tokens: n x C / n x F each, the logits of the last, V).
// Leaves out: loading (llama_load.cpp), the optimizer (train/), GPU.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/llama.h"
#include "model/ops.h"
#include "quant/quantizer.h"

namespace loftq {

struct LlamaLayerWeights {
    float* attn_norm = nullptr;                          // C
    float* wq = nullptr;                                 // C x C
    float* wk = nullptr;                                 // KV x C
    float* wv = nullptr;                                 // KV x C
    float* bq = nullptr, *bk = nullptr, *bv = nullptr;   // C, KV, KV (qkv_bias only, else null)
    float* wo = nullptr;                                 // C x C
    float* ffn_norm = nullptr;                           // C
    float* wg = nullptr;                                 // F x C
    float* wu = nullptr;                                 // F x C
    float* wd = nullptr;                                 // C x F
};

// A frozen site weight kept in its low-bit form (a packed export): k-bit codes packed LSB-first
// and one fp32 scale per block; dequantized into a per-site-kind scratch each time the site is
// used, so the base costs k bits per weight (+ 32 / block) instead of 32.
struct PackedSite {
    QuantKind kind = QuantKind::NF4;
    int block = 64;
    std::vector<uint8_t> codes;   // packed_size(out * in, bits)
    std::vector<float> scales;    // num_blocks(out * in, block)
};

// One adapted site: y += scale * (x A^T) B^T. rank 0: A, B, dA, dB are null.
struct LoraSlot {
    int rank = 0;
    float scale = 0.f;
    int64_t in = 0, out = 0;
    float* A = nullptr;   // rank x in
    float* B = nullptr;   // out x rank
    float* dA = nullptr;
    float* dB = nullptr;
};

// (out, in) of a site's weight.
int64_t lora_site_out(const LlamaConfig& c, LoraSite s);
int64_t lora_site_in(const LlamaConfig& c, LoraSite s);

class LlamaCpu final : public LlamaModel {
public:
    // ranks, scales: n_layers x kLoraSites, row-major (layer, site); rank 0 = not adapted.
    // Base weights and LoRA values are left uninitialized for the loader to fill.
    // packed_sites: the seven projection weights of every layer are held as PackedSite (filled
    // by the loader through set_packed_site) instead of fp32 in the base block.
    LlamaCpu(const LlamaConfig& c, const std::vector<int>& ranks, const std::vector<float>& scales, int threads,
             bool packed_sites = false);

    const LlamaConfig& config() const override { return cfg_; }
    float forward(const int* tokens, const int* targets, int B, int T) override;
    const float* logits() const override { return logits_; }
    int64_t scored_tokens() const override { return scored_; }
    void zero_grad() override;
    void backward() override;
    std::vector<TrainableTensor> trainable() override { return trainable_; }
    int lora_rank(int layer, LoraSite s) const override { return slot(layer, s).rank; }
    float lora_scale(int layer, LoraSite s) const override { return slot(layer, s).scale; }
    void set_threads(int n) override;
    // Generation with a KV cache (llama_decode.cpp): keys (after RoPE) and values of every
    // layer, grown as positions are used (up to context_limit()).
    const float* decode(const int* tokens, int n) override;
    void reset_cache() override { pos_ = 0; }
    int cached() const override { return pos_; }
    uint64_t cache_bytes() const { return uint64_t(kcache_.size() + vcache_.size()) * 4; }

    // The loader's and tests' view.
    float* embed() { return embed_; }
    float* final_norm() { return final_norm_; }
    float* lm_head() { return lm_head_; }            // == embed() when tied
    LlamaLayerWeights& layer(int l) { return layers_[size_t(l)]; }
    float* site_weight(int l, LoraSite s);           // the frozen base W of a site (out x in); null when packed
    // The frozen base W of a site as fp32 (out x in): site_weight(), or a packed site dequantized
    // into its site kind's scratch (valid until that kind is dequantized again).
    const float* site_weight_f32(int l, LoraSite s) const;
    bool packed_sites() const { return packed_sites_; }
    void set_packed_site(int l, LoraSite s, PackedSite p);   // checks sizes; throws loftq::Error
    const PackedSite& packed_site(int l, LoraSite s) const { return packed_[size_t(l) * kLoraSites + size_t(s)]; }  // packed only
    float* site_bias(int l, LoraSite s);             // q/k/v bias or null
    LoraSlot& slot(int l, LoraSite s) { return slots_[size_t(l) * kLoraSites + size_t(s)]; }
    const LoraSlot& slot(int l, LoraSite s) const { return slots_[size_t(l) * kLoraSites + size_t(s)]; }
    int threads() const { return threads_; }
    // Called during forward() with the input x (N x in) of each adapted linear, before it is
    // used, in layer order: q, k, v (one input), o, gate, up (one input), down. For calibration
    // statistics (mixed/calibration.h); empty = none. Not called by backward's recomputation.
    using InputObserver = std::function<void(int layer, LoraSite site, const float* x, int64_t N, int64_t in)>;
    void set_input_observer(InputObserver f) { observer_ = std::move(f); }
    // Bytes held: base weights, LoRA values + grads, activations + backward scratch.
    uint64_t base_bytes() const;   // fp32 block + packed sites + their dequantization scratch
    uint64_t lora_bytes() const { return uint64_t(lora_n_) * 8; }
    uint64_t activation_bytes() const { return uint64_t(act_cap_ + grad_cap_) * 4; }

private:
    ops::LoraLinear linear(int l, LoraSite s) const;   // dequantizes a packed site into its scratch
    float* xa(int l, LoraSite s) const;  // N x rank slice of the activation block
    void ensure_activations(int B, int T);
    void ensure_backward_scratch();
    void ensure_rope(int T);
    void ensure_decode(int n, int positions);

    LlamaConfig cfg_;
    int threads_ = 1;
    InputObserver observer_;

    std::unique_ptr<float[]> base_;
    size_t base_n_ = 0;
    float* embed_ = nullptr;
    float* final_norm_ = nullptr;
    float* lm_head_ = nullptr;
    std::vector<LlamaLayerWeights> layers_;
    bool packed_sites_ = false;
    std::vector<PackedSite> packed_;                  // n_layers x 7 when packed_sites_
    mutable std::vector<std::vector<float>> site_scratch_;   // one per site kind (out x in)
    mutable std::vector<uint8_t> code_scratch_;       // unpacked codes of one site

    std::vector<float> lora_, lora_grad_;
    size_t lora_n_ = 0;
    std::vector<LoraSlot> slots_;
    std::vector<int64_t> xa_prefix_;  // per (layer, site): sum of earlier ranks (xa offset / N)
    int64_t rank_sum_ = 0;
    int max_rank_ = 0;
    std::vector<TrainableTensor> trainable_;

    // activations for the current (B, T), carved out of one block
    std::unique_ptr<float[]> act_;
    size_t act_cap_ = 0;
    int B_ = 0, T_ = 0;
    float *res_ = nullptr, *mid_ = nullptr, *rstd1_ = nullptr, *rstd2_ = nullptr, *rstdf_ = nullptr;
    float *q_ = nullptr, *k_ = nullptr, *v_ = nullptr, *att_ = nullptr, *y_ = nullptr;
    float *g_ = nullptr, *u_ = nullptr, *xa_ = nullptr, *xn_ = nullptr, *h_ = nullptr;
    float *logits_ = nullptr, *lse_ = nullptr;
    std::vector<float> rope_cos_, rope_sin_;
    std::vector<double> inv_freq_;
    int rope_T_ = 0;
    std::vector<int> targets_;
    bool has_targets_ = false;
    int64_t scored_ = 0;

    // decode: KV cache, L x cache_cap_ x KV each (layer-major), and one step's buffers (n rows)
    std::vector<float> kcache_, vcache_;
    int cache_cap_ = 0, pos_ = 0;
    struct DecodeBuffers {
        int rows = 0;
        std::vector<float> x, xn, rstd, q, y, tmp, g, u, h, xa, logits;   // n x (C, C, 1, C, C, C, F, F, F, r_max); V (k, v go to the cache)
    } dec_;

    // backward scratch
    std::unique_ptr<float[]> grad_;
    size_t grad_cap_ = 0;
    int64_t ce_rows_ = 0;  // rows per dlogits chunk
    float *dres_ = nullptr, *dxn_ = nullptr, *dq_ = nullptr, *dk_ = nullptr, *dv_ = nullptr, *dy_ = nullptr;
    float *dg_ = nullptr, *du_ = nullptr, *dh_ = nullptr, *dxa_ = nullptr, *dlogits_ = nullptr;
};

}  // namespace loftq
