// llama_cuda_memory.cpp: LlamaCuda's device memory in numbers: the sizes of its buffers
// (llama_cuda_sizes.h), estimate_memory (the bytes a shape needs, without a device), the
// accounting of what is held (memory(), track_external, the device's peak use) and the one-line
// report (CudaMemory::summary). The formulas are written out in docs/CUDA-TRAINING.md.
#include "cuda/train/llama_cuda.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/units.h"
#include "cuda/train/llama_cuda_sizes.h"
#include "quant/quantizer.h"

namespace loftq {

namespace {

// Sub-buffers carved out of one allocation start on 256-byte boundaries (vector loads in kernels).
int64_t pad(int64_t floats) { return (floats + 63) / 64 * 64; }

}  // namespace

// The buffer sizes; what each one computes is said where they are declared (llama_cuda_sizes.h).
namespace llama_cuda_detail {

int64_t bf16_scratch_cols(const LlamaConfig& c) {
    return std::max<int64_t>({int64_t(c.dim), int64_t(c.kv_dim()), int64_t(c.hidden)});
}

void rank_sums(const std::vector<int>& ranks, int L, int64_t& total, int64_t& layer_max, int& max_rank) {
    total = layer_max = 0;
    max_rank = 0;
    for (int l = 0; l < L; ++l) {
        int64_t layer = 0;
        for (int s = 0; s < kLoraSites; ++s) {
            const int r = std::max(0, ranks[size_t(l) * kLoraSites + size_t(s)]);
            layer += r;
            max_rank = std::max(max_rank, r);
        }
        total += layer;
        layer_max = std::max(layer_max, layer);
    }
}

void activation_sizes(const LlamaConfig& c, int64_t B, int64_t T, bool recompute, int64_t rank_sum,
                      int64_t layer_rank_max, int64_t out[kActParts]) {
    const int64_t N = B * T, C = c.dim, KV = c.kv_dim(), F = c.hidden, V = c.vocab, L = c.n_layers, H = c.n_heads;
    const int64_t Lx = recompute ? 1 : L;
    const int64_t s[kActParts] = {
        (L + 1) * N * C,                           // res: every layer's residual input + the final residual
        Lx * N * C,                                // mid
        Lx * N, Lx * N, N,                         // rstd1, rstd2, rstdf
        Lx * N * C,                                // q (after RoPE)
        Lx * N * KV, Lx * N * KV,                  // k (after RoPE), v
        Lx * B * H * T,                            // attention log-sum-exp (instead of B x H x T x T)
        Lx * N * C,                                // y (attention output)
        Lx * N * F, Lx * N * F,                    // g, u
        N * std::max<int64_t>(recompute ? layer_rank_max : rank_sum, 1),  // x A^T of each adapted site
        N * C, N * F,                              // xn, h (recomputed in backward, as on the CPU)
        N * V, N, N,                               // logits, CE log-sum-exp, per-row losses
    };
    for (int i = 0; i < kActParts; ++i) out[i] = pad(s[i]);
}

int64_t ce_chunk_rows(int64_t N, int64_t V) {
    return std::min<int64_t>(N, std::max<int64_t>(16, (int64_t(1) << 24) / std::max<int64_t>(V, 1)));
}

void backward_sizes(const LlamaConfig& c, int64_t B, int64_t T, int max_rank, int64_t out[kBwdParts]) {
    const int64_t N = B * T, C = c.dim, KV = c.kv_dim(), F = c.hidden, V = c.vocab;
    const int64_t s[kBwdParts] = {
        N * C, N * C, N * C, N * KV, N * KV, N * C, N * F, N * F, N * F, N * std::max(max_rank, 1),
        ce_chunk_rows(N, V) * V,
        std::max<int64_t>(1, cuda_ops::attention_backward_scratch(int(B), int(T), c.n_heads, c.n_kv_heads, c.head_dim())),
    };
    for (int i = 0; i < kBwdParts; ++i) out[i] = pad(s[i]);
}

int64_t sum_of(const int64_t* v, int n) {
    int64_t t = 0;
    for (int i = 0; i < n; ++i) t += v[i];
    return t;
}

}  // namespace llama_cuda_detail

using namespace llama_cuda_detail;

std::string CudaMemory::summary() const {
    std::string s = "base " + human_bytes(double(base));
    if (dequant_scratch) s += " (+ dequantization scratch " + human_bytes(double(dequant_scratch)) + ")";
    s += ", LoRA " + human_bytes(double(lora)) + ", optimizer " + human_bytes(double(optimizer)) + ", activations " + human_bytes(double(activations)) + ", backward " +
         human_bytes(double(backward)) + "; peak " + human_bytes(double(peak));
    if (device_total) s += "; device used " + human_bytes(double(device_peak_used)) + " at peak of " + human_bytes(double(device_total)) + " (context included)";
    return s;
}

// ---------------------------------------------------------------------------------------------
// memory

CudaMemory LlamaCuda::estimate_memory(const LlamaConfig& c, const std::vector<int>& ranks, int quant_bits, int block,
                                      int B, int T, bool recompute, int accum, cuda_ops::GemmMath math) {
    const int64_t C = c.dim, KV = c.kv_dim(), V = c.vocab, L = c.n_layers;
    if (int64_t(ranks.size()) != L * kLoraSites) throw Error("estimate_memory: ranks need n_layers x 7 entries");
    CudaMemory m;
    const bool bf16 = math == cuda_ops::GemmMath::Bf16;
    const uint64_t wbytes = bf16 ? 2 : 4;  // bytes per fp32-site weight or dequantized scratch value
    uint64_t sites = 0, scratch = 0, lora = 0;
    for (int s = 0; s < kLoraSites; ++s) {
        const uint64_t n = uint64_t(lora_site_out(c, LoraSite(s)) * lora_site_in(c, LoraSite(s)));
        sites += uint64_t(L) * (quant_bits > 0 ? packed_size(n, quant_bits) + 4 * num_blocks(n, block) : wbytes * n);
        if (quant_bits > 0) scratch += wbytes * n;
    }
    for (int64_t l = 0; l < L; ++l)
        for (int s = 0; s < kLoraSites; ++s)
            lora += uint64_t(std::max(0, ranks[size_t(l * kLoraSites + s)])) *
                    uint64_t(lora_site_in(c, LoraSite(s)) + lora_site_out(c, LoraSite(s)));
    m.base = sites + 4 * uint64_t(V * C * (c.tied_embeddings ? 1 : 2) + (2 * L + 1) * C + (c.qkv_bias ? L * (C + 2 * KV) : 0));
    m.dequant_scratch = scratch;
    m.lora = 8 * lora;
    m.optimizer = 8 * lora + (accum > 1 ? 4 * lora : 0);
    int64_t rank_sum = 0, layer_max = 0;
    int max_rank = 0;
    rank_sums(ranks, int(L), rank_sum, layer_max, max_rank);
    int64_t a[kActParts], b[kBwdParts];
    activation_sizes(c, B, T, recompute, rank_sum, layer_max, a);
    backward_sizes(c, B, T, max_rank, b);
    // + the RoPE tables (2 x T x d/2) and the token ids and targets (2 x N ints)
    m.activations = 4 * uint64_t(sum_of(a, kActParts) + 2 * int64_t(T) * (c.head_dim() / 2)) + 8 * uint64_t(B) * T;
    if (bf16) m.activations += 2 * uint64_t(int64_t(B) * T * bf16_scratch_cols(c));  // the GEMM inputs' bf16 copy
    m.backward = 4 * uint64_t(sum_of(b, kBwdParts));
    m.peak = m.total();
    return m;
}

void LlamaCuda::track_external(int64_t bytes) {
    held_[kOpt] = uint64_t(std::max<int64_t>(0, int64_t(held_[kOpt]) + bytes));
    uint64_t total = 0;
    for (uint64_t h : held_) total += h;
    peak_ = std::max(peak_, total);
}

void LlamaCuda::note_device_used() const {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
        device_peak_used_ = std::max<uint64_t>(device_peak_used_, uint64_t(total_b - free_b));
    else
        (void)cudaGetLastError();
}

CudaMemory LlamaCuda::memory() const {
    CudaMemory m;
    m.base = held_[kBase];
    m.dequant_scratch = held_[kScratch];
    m.lora = held_[kLora];
    m.optimizer = held_[kOpt];
    m.activations = held_[kAct];
    m.backward = held_[kBwd];
    m.peak = peak_;
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
        m.device_used = uint64_t(total_b - free_b);
        m.device_total = uint64_t(total_b);
    } else {
        (void)cudaGetLastError();
    }
    m.device_peak_used = std::max(device_peak_used_, m.device_used);
    return m;
}

}  // namespace loftq
