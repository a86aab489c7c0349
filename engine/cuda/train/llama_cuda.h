// llama_cuda.h: LlamaCuda, the LlamaModel (model/llama.h) on an NVIDIA GPU: the device counterpart
// of LlamaCpu (model/llama_cpu.h), which stays the reference (same ops, activations, gradient rule,
// loss normalisation, LoRA slots and PEFT names). Built from a loaded LlamaCpu by from_cpu: the
// frozen base stays on the device, packed (k-bit codes, dequantized per use) or fp32 (bf16 under
// GemmMath::Bf16); the LoRA values and gradients are one device block each, in LlamaCpu's order.
// trainable() returns HOST mirrors: download_lora() before reading them, upload_lora() after
// writing. All work runs on one stream. Shapes: B x T tokens, N = B * T rows, row-major fp32;
// memory in bytes (CudaMemory). Optional activation recomputation (CudaTrainOptions::recompute).
// See docs/CUDA-TRAINING.md for the design: packed base, GEMM precision, the memory formulas and
// their 7B example, recomputation.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cuda/blas_cuda.h"
#include "cuda/train/ops_cuda.h"
#include "model/device_llama.h"
#include "model/llama.h"
#include "model/llama_cpu.h"

namespace loftq {

enum class Recompute : uint8_t { Off, On, Auto };
const char* recompute_name(Recompute r);                         // "off", "on", "auto"
bool recompute_from_name(const std::string& s, Recompute& out);  // case-sensitive
const char* gemm_math_name(cuda_ops::GemmMath m);                // "fp32", "tf32", "bf16"
bool gemm_math_from_name(const std::string& s, cuda_ops::GemmMath& out);

struct CudaTrainOptions {
    cuda_ops::GemmMath math = cuda_ops::GemmMath::Tf32;
    Recompute recompute = Recompute::Auto;
    int plan_batch = 0, plan_seq = 0;  // the (B, T) Auto decides for (0: Auto = Off)
    int accum = 1;                     // micro-batches per step (the estimate counts the accumulation buffer)
    uint64_t memory_budget = 0;        // bytes Auto fits in; 0 = 90% of the free device memory
};

// Device bytes by category (docs/CUDA-TRAINING.md, Memory). From memory(): held now, with peaks; from
// estimate_memory(): predicted at (B, T), device_* zero.
struct CudaMemory {
    uint64_t base = 0, dequant_scratch = 0, lora = 0, optimizer = 0, activations = 0, backward = 0;
    uint64_t peak = 0;                 // the largest sum of the categories seen (own accounting)
    uint64_t device_used = 0, device_total = 0;  // cudaMemGetInfo now (all users, context included)
    uint64_t device_peak_used = 0;     // largest device_used sampled after each forward and backward
    uint64_t total() const { return base + dequant_scratch + lora + optimizer + activations + backward; }
    std::string summary() const;       // one line in GiB
};

class LlamaCuda final : public DeviceLlama {
public:
    // Uploads m's base and LoRA values (m is only read; it may be destroyed afterwards). Throws
    // loftq::Error without a usable device or when the device runs out of memory (naming what).
    static std::unique_ptr<LlamaCuda> from_cpu(LlamaCpu& m, const CudaTrainOptions& opt = {});
    // Predicted device bytes for this shape without a device. ranks: n_layers x 7; quant_bits 0 =
    // fp32 sites, else k-bit codes with `block` per scale. math: Bf16 holds the base sites (or
    // their dequantization scratch) as bf16 and adds the activations' bf16 scratch; Fp32 and Tf32
    // need the same bytes.
    static CudaMemory estimate_memory(const LlamaConfig& c, const std::vector<int>& ranks, int quant_bits, int block,
                                      int B, int T, bool recompute, int accum = 1,
                                      cuda_ops::GemmMath math = cuda_ops::GemmMath::Tf32);
    ~LlamaCuda() override;
    LlamaCuda(const LlamaCuda&) = delete;
    LlamaCuda& operator=(const LlamaCuda&) = delete;

    const LlamaConfig& config() const override { return cfg_; }
    float forward(const int* tokens, const int* targets, int B, int T) override;
    const float* logits() const override;          // host copy, made lazily; valid until the next forward
    int64_t scored_tokens() const override { return scored_; }
    void zero_grad() override;
    void backward() override;
    std::vector<TrainableTensor> trainable() override { return trainable_host_; }  // HOST mirrors
    int lora_rank(int layer, LoraSite s) const override { return slot(layer, s).rank; }
    float lora_scale(int layer, LoraSite s) const override { return slot(layer, s).scale; }
    void set_threads(int n) override { threads_ = n; }   // host work is light; kept for the interface

    // LoRA host mirrors <-> device.
    void download_lora() override;   // device values and gradients -> trainable()'s host mirrors (synchronizes)
    void upload_lora() override;     // trainable()'s host values -> device (gradients untouched; synchronizes)
    std::vector<TrainableTensor> device_trainable() const { return trainable_dev_; }  // device pointers
    float* lora_values_device() { return lora_.p; }
    float* lora_grads_device() { return lora_grad_.p; }
    // Data-parallel runs: the gradient block to the host mirror, `sum` over it (across ranks, in
    // place), back to the device (synchronizes).
    void sum_lora_grads(const std::function<void(float*, size_t)>& sum);
    int64_t lora_count() const { return int64_t(lora_n_); }

    cudaStream_t stream() const { return stream_; }
    cublasHandle_t blas() const { return blas_; }
    void synchronize() const override;
    bool packed_base() const override { return packed_; }
    bool recompute() const override { return recompute_; }
    std::string memory_summary() const override { return memory().summary(); }
    uint64_t memory_peak() const override { return memory().peak; }
    uint64_t device_peak_used() const override { return memory().device_peak_used; }
    cuda_ops::GemmMath math() const { return opt_.math; }

    CudaMemory memory() const;
    // Device bytes allocated (or freed, negative) by others on the model's behalf (the optimizer),
    // counted under `optimizer` and in the peak.
    void track_external(int64_t bytes);

private:
    struct Slot {
        int rank = 0;
        float scale = 0.f;
        int64_t in = 0, out = 0;
        int64_t a = 0, b = 0;   // offsets of A (rank x in) and B (out x rank) in the LoRA block
    };
    struct Site {               // one frozen projection weight (out x in)
        DeviceArray<float> W;        // fp32, or empty when packed or under GemmMath::Bf16
        DeviceArray<uint16_t> Wb;    // bf16 bits (GemmMath::Bf16, not packed), else empty
        DeviceArray<uint8_t> codes;  // packed: packed_size(n, bits) bytes
        DeviceArray<float> scales;   // packed: num_blocks(n, block)
        QuantKind kind = QuantKind::NF4;
        int block = 64;
        int64_t n = 0;
    };
    // Pointers of one layer's saved activations (see acts()).
    struct LayerActs {
        float *res, *next, *mid, *rstd1, *rstd2, *q, *k, *v, *lse, *y, *g, *u, *xa;
    };
    enum Cat { kBase, kScratch, kLora, kAct, kBwd, kOpt, kCats };

    LlamaCuda(const LlamaConfig& c, const CudaTrainOptions& o);
    const Slot& slot(int l, LoraSite s) const { return slots_[size_t(l) * kLoraSites + size_t(s)]; }
    template <class T>
    void alloc(DeviceArray<T>& a, size_t n, Cat cat, const std::string& what);
    void upload(void* dst, const void* src, size_t bytes);
    void note_device_used() const;

    const float* site_weight(int l, LoraSite s);     // dequantizes a packed site into its kind's scratch
    const void* site_weight_bf16(int l, LoraSite s); // the same for GemmMath::Bf16 (bf16 bits)
    cuda_ops::LoraLinear linear(int l, LoraSite s);
    LayerActs acts(int l) const;
    float* xa(const LayerActs& a, int l, LoraSite s) const;
    void ensure_activations(int B, int T);
    void ensure_backward_scratch();
    void layer_forward(int l);
    void head_gemm_forward(float* logits, const float* xn, int64_t rows);
    void head_gemm_backward(float* dxn, const float* dlogits, int64_t rows);

    LlamaConfig cfg_;
    CudaTrainOptions opt_;
    int threads_ = 1;
    bool packed_ = false, recompute_ = false;
    cudaStream_t stream_ = nullptr;
    cublasHandle_t blas_ = nullptr;

    // frozen base
    DeviceArray<float> embed_, lm_head_;            // V x C each (lm_head_ empty when tied)
    DeviceArray<float> norms_;                      // per layer attn_norm, ffn_norm (C each); final_norm (C)
    DeviceArray<float> bias_;                       // per layer bq (C), bk, bv (KV) when qkv_bias
    std::vector<Site> sites_;                       // n_layers x 7
    DeviceArray<float> scratch_[kLoraSites];        // packed: one dequantized weight per site kind
    DeviceArray<uint16_t> scratch_bf16_[kLoraSites];  // packed, GemmMath::Bf16: the same in bf16 (instead)
    int scratch_layer_[kLoraSites];                 // the layer each scratch holds (-1: none)

    // LoRA
    std::vector<Slot> slots_;
    size_t lora_n_ = 0;
    DeviceArray<float> lora_, lora_grad_;
    std::vector<float> lora_host_, grad_host_;
    std::vector<TrainableTensor> trainable_host_, trainable_dev_;
    std::vector<int64_t> xa_site_;                  // per (layer, site): sum of earlier ranks in the layer
    std::vector<int64_t> xa_layer_;                 // per layer: sum of ranks of earlier layers
    int64_t rank_sum_ = 0, layer_rank_max_ = 0;
    int max_rank_ = 0;

    // activations for the current (B, T), carved out of one block
    DeviceArray<float> act_;
    int B_ = 0, T_ = 0;
    float *res_ = nullptr, *mid_ = nullptr, *rstd1_ = nullptr, *rstd2_ = nullptr, *rstdf_ = nullptr;
    float *q_ = nullptr, *k_ = nullptr, *v_ = nullptr, *alse_ = nullptr, *y_ = nullptr;
    float *g_ = nullptr, *u_ = nullptr, *xa_ = nullptr, *xn_ = nullptr, *h_ = nullptr;
    float *logits_ = nullptr, *lse_ = nullptr, *row_loss_ = nullptr;
    DeviceArray<uint16_t> act_bf16_;                // GemmMath::Bf16: N x max(C, KV, F) bf16 GEMM inputs
    DeviceArray<int> tokens_, targets_;
    DeviceArray<float> rope_cos_, rope_sin_;        // T x d/2
    std::vector<double> inv_freq_;
    int rope_T_ = 0;
    bool has_targets_ = false;
    int64_t scored_ = 0;
    mutable std::vector<float> logits_host_;
    mutable bool logits_host_ok_ = false;

    // backward scratch
    DeviceArray<float> grad_;
    int64_t ce_rows_ = 0;
    float *dres_ = nullptr, *dxn_ = nullptr, *dq_ = nullptr, *dk_ = nullptr, *dv_ = nullptr, *dy_ = nullptr;
    float *dg_ = nullptr, *du_ = nullptr, *dh_ = nullptr, *dxa_ = nullptr, *dlogits_ = nullptr, *att_scratch_ = nullptr;

    // accounting
    uint64_t held_[kCats] = {};
    uint64_t peak_ = 0;
    mutable uint64_t device_peak_used_ = 0;
};

}  // namespace loftq
