// llama_cuda.h: the LlamaModel (model/llama.h) on an NVIDIA GPU, the device counterpart of
// LlamaCpu (model/llama_cpu.h), which stays the reference: the same forward and backward, op by op
// (cuda/train/ops_cuda.h mirrors model/ops.h), the same saved activations (except attention, which
// saves a log-sum-exp per query row instead of the B x H x T x T probabilities), the same gradient
// rule (LoRA gradients accumulate, activation gradients overwrite, dres accumulates), the same loss
// normalisation (mean over scored targets), the same LoRA slots and PEFT names.
//
// Built from a loaded LlamaCpu (from_cpu): embed, norms, biases and the LM head are uploaded fp32;
// the seven projection weights of each layer either PACKED (when the LlamaCpu holds PackedSite:
// the k-bit codes and block scales go to the device as they are) or fp32.
//
// Packed base, "dequantize per use" (what bitsandbytes does for QLoRA training): right before
// a GEMM that needs a site's weight, forward or backward, cuda_ops::dequantize_packed expands it
// into one fp32 scratch per site kind (q, k, v, o, gate, up, down), and cuBLAS runs the GEMM on
// that. Not a fused dequant-GEMM, because: training GEMMs have N = B * T rows (hundreds to
// thousands), so they are compute-bound, and cuBLAS tensor-core GEMMs beat any hand-written
// kernel that decodes codes inside its inner loop; the dequantization reads k bits and writes 32
// per weight, O(out * in) against the GEMM's O(N * out * in), a few percent at N >= 512. Fused
// kernels pay off for N ~ 1 (generation), which training is not. Each scratch remembers which
// layer it holds, so the last layer's weights are reused from the forward into the backward, and
// with recompute a layer's re-run forward leaves its seven weights ready for its backward.
//
// LoRA: values and gradients live on the device in one block each, in LlamaCpu's order (per
// (layer, site): A then B), so the optimizer (optimizer_cuda.h) updates the whole block in one
// call. trainable() returns HOST MIRRORS of them (same names and shapes as LlamaCpu), for the
// code that reads or writes LoRA values through the LlamaModel interface (adapter writer,
// checkpoints, apply_peft_adapter): call download_lora() before reading them (values and
// gradients) and upload_lora() after writing values. device_trainable() gives the device view.
//
// Tokens and targets are range-checked on the HOST before upload (kernels cannot throw), with
// the CPU's messages. logits() returns a host copy made on the first call after a forward.
// GEMMs: CudaTrainOptions::math = Tf32 (default, speed: the frozen-base products and the LM head
// on TF32 tensor cores, fp32 accumulation) or Fp32 (plain fp32 everywhere: the parity tests'
// setting) or Bf16 (speed, PyTorch bf16 autocast's numerics for the frozen base: the seven
// projection weights held as bf16 and their two products per linear, y = x W^T and dx = dy W, on
// bf16 inputs with fp32 accumulation and fp32 outputs; the activations are rounded to bf16 in a
// scratch right before each such GEMM, and stay fp32 everywhere else; the LM head, whose weight
// stays fp32, uses TF32 as in Tf32). LoRA products and all A/B gradients are fp32 in every mode.
// Under Bf16, fp32 (non-packed) sites are rounded to bf16 once at upload (the fp32 copy is not
// kept: half the projection memory) and packed sites are dequantized per use into bf16 scratches
// (dequantize_packed_bf16: the fp32 value rounded once; half the scratch).
//
// Memory (bytes; C = dim, KV = kv_dim, F = hidden, V = vocab, L = layers, H = heads, N = B * T,
// n_s = out * in of site kind s, k bits and block b for a packed base, R = sum of all LoRA ranks,
// R_l = the largest per-layer sum of ranks, r = the largest rank, P = sum over adapted sites of
// r_s (in_s + out_s) = the LoRA parameter count, L' = L without recompute, 1 with it):
//   base        = L sum_s (ceil(k n_s / 8) + 4 ceil(n_s / b))        [packed; 4 L sum_s n_s if fp32]
//                 + 4 (V C (1 tied, 2 untied) + (2 L + 1) C + [L (C + 2 KV) with q/k/v bias])
//   scratch     = 4 sum_s n_s = 4 (2 C^2 + 2 KV C + 3 F C)          [packed only: one per site kind]
//   Bf16 math: the fp32-site term 4 L sum_s n_s becomes 2 L sum_s n_s, the scratch 2 sum_s n_s, and
//   activations gain 2 N max(C, KV, F) (the bf16 copy of a GEMM's input, counted in activations).
//   lora        = 8 P                                                 (values + gradients)
//   optimizer   = 8 P (AdamW m, v) + 4 P when accumulating micro-batches
//   activations = 4 N [ (L + 1) C                                     (every layer's residual input)
//                       + L' (3 C + 2 KV + 2 F + 2 + H)               (mid, q, y, k, v, g, u, 2 rstd, attention lse)
//                       + (recompute ? R_l : R) + C + F + V + 3 ]     (x A^T, xn, h, logits, rstd, CE lse, row loss)
//                 + RoPE tables and token ids (small)
//   backward    = 4 [ N (4 C + 2 KV + 3 F + r) + rows V + attention scratch ],  rows = min(N, max(16, 2^24 / V))
//   plus the CUDA context and cuBLAS workspace (~0.5-1 GiB; in device_used, not in the own accounting).
// LLaMA-2-7B (C = KV = 4096, F = 11008, L = 32, H = 32, V = 32000, untied), NF4 block 64, r = 64 on
// all seven projections (P = 160 M), T = 512, in GiB: base 4.37 (3.39 projections + 0.98 embed
// and head) + scratch 0.75, LoRA 1.19, AdamW 1.19, backward 0.17 (B = 1) / 0.50 (B = 4);
// activations B = 1: 2.97 (0.43 with recompute), B = 4: 11.88 (1.72). Totals: B = 1 10.65 GiB
// (8.11 with recompute), B = 4 19.89 GiB (9.73 with recompute), + context: 24 GB holds every
// case but B >= 5 without recompute. estimate_memory() computes this for any shape
// (test_cuda_train checks the 7B case without a GPU); memory() reports what is held and peaks.
//
// Recompute (activation checkpointing, per layer): the forward keeps only each layer's residual
// input; backward re-runs the layer's forward from it (into one layer's buffers) right before the
// layer's backward. Costs one extra forward (~+30% time), saves L - 1 layers of intermediates.
// CudaTrainOptions::recompute = Auto turns it on when the estimate without it exceeds the budget
// (memory_budget, default 90% of the device's free memory at from_cpu).
//
// Leaves out: multi-GPU, mixed bf16 activations, a KV cache for generation (generation re-runs
// the sequence, as on the CPU), training the base or the embeddings.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
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

// Device bytes by category (see the header comment). From memory(): held now, with peaks; from
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
