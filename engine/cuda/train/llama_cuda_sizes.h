// llama_cuda_sizes.h: the sizes of LlamaCuda's device buffers, shared by the estimate
// (estimate_memory) and the buffers it carves for a (B, T) (ensure_activations,
// ensure_backward_scratch); private to llama_cuda*.cpp. Sizes are in floats, each part padded to
// 64 floats (256 bytes). Defined in llama_cuda_memory.cpp.
#pragma once
#include <cstdint>
#include <vector>

#include "model/llama.h"

namespace loftq::llama_cuda_detail {

// GemmMath::Bf16: the bf16 copy of a base GEMM's input (x: in columns, dy: out columns), N rows.
int64_t bf16_scratch_cols(const LlamaConfig& c);

// Rank sums of a ranks table (n_layers x 7).
void rank_sums(const std::vector<int>& ranks, int L, int64_t& total, int64_t& layer_max, int& max_rank);

// The activation block's parts at (B, T), in carving order:
//   res, mid, rstd1, rstd2, rstdf, q, k, v, alse, y, g, u, xa, xn, h, logits, lse, row_loss.
// recompute: one layer's intermediates instead of L (the residual inputs are always kept).
constexpr int kActParts = 18;
void activation_sizes(const LlamaConfig& c, int64_t B, int64_t T, bool recompute, int64_t rank_sum,
                      int64_t layer_rank_max, int64_t out[kActParts]);

// The LM head's backward goes through dlogits in chunks of `rows` x V (<= 2^24 floats, 64 MB).
int64_t ce_chunk_rows(int64_t N, int64_t V);

// Backward scratch at (B, T): dres, dxn, dq, dk, dv, dy, dg, du, dh, dxa, dlogits, attention scratch.
constexpr int kBwdParts = 12;
void backward_sizes(const LlamaConfig& c, int64_t B, int64_t T, int max_rank, int64_t out[kBwdParts]);

int64_t sum_of(const int64_t* v, int n);

}  // namespace loftq::llama_cuda_detail
