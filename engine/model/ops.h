// ops.h: the layers of the LLaMA decoder on the CPU, fp32, each forward beside its backward with
// the same argument names (llm.c train_gpt2.c). Shapes are noted once per op; every buffer is
// row-major and dense. N = B * T rows (token positions, batch-major: row n = b * T + t).
//
// Gradient rule (stated once, as llm.c's layernorm does): parameter gradients accumulate (+=),
// activation gradients overwrite (=), except on the residual path: rmsnorm_backward adds into dx
// (its input is the residual stream, whose gradient also flows around the block), and
// lora_linear_backward adds into dx when `accumulate_dx` (q/k/v share one input, gate/up another).
// In the model only LoRA A and B are parameters; the optional dw / dbias / dweight pointers of the
// ops below (frozen in the model, nullptr there) exist for the per-op gradient tests.
//
// Threads: `threads` splits rows (norms, elementwise, loss) or (batch, kv head) pairs (attention)
// into contiguous chunks; results do not depend on the thread count. The products (x W^T, dy W, the
// LoRA ones: linalg/tile_gemm.h; attention's: linalg/small_gemm.h) are our FMA tiles, split over
// LoraLinear::threads; below 8 rows (generation) tile_gemm hands them to OpenBLAS, whose thread
// count is process-wide and owned by linalg/blas.h (prefer_blas_threads, SingleThreadedBlas).
// Leaves out: the model's buffers and loading (llama_cpu.h, llama_load.cpp), fused kernels.
#pragma once
#include <cstdint>
#include <vector>

namespace loftq {
struct LlamaConfig;
}

namespace loftq::ops {

// ---- embedding: out (N x C) = table[tokens[n]] (table V x C). Tokens outside [0, V) throw
// loftq::Error naming the position.
void embedding_forward(float* out, const int* tokens, const float* table, int64_t N, int C, int V);
// dtable (V x C) += scatter of dout (N x C) rows.
void embedding_backward(float* dtable, const float* dout, const int* tokens, int64_t N, int C);

// ---- RMSNorm: out (N x C) = x * rstd * w, rstd (N) = 1 / sqrt(mean(x^2) + eps), saved.
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int C, float eps, int threads);
// dx (N x C) += d/dx (residual path); dw (C) += sum_n dout * x * rstd when not null (serial).
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                      int64_t N, int C, int threads);

// ---- RoPE, Hugging Face rotate-half layout, in place on x (N x heads*d), position = t:
// for each head, pairs (i, i + d/2) rotate by angle t * inv_freq[i]:
//   x'_i = x_i cos - x_{i+d/2} sin,   x'_{i+d/2} = x_{i+d/2} cos + x_i sin.
// cos, sin: T x d/2 tables (rope_table).
void rope_forward(float* x, int B, int T, int heads, int d, const float* cos, const float* sin, int threads);
// The transpose rotation (angle -t * inv_freq), in place on dx.
void rope_backward(float* dx, int B, int T, int heads, int d, const float* cos, const float* sin, int threads);
// Frequencies theta^(-2i/d), i < d/2, adjusted by the config's rope_scaling ("linear", "llama3").
std::vector<double> rope_inv_freq(const LlamaConfig& c);
// cos/sin (T x d/2) of t * inv_freq[i], computed in float64 and rounded once.
void rope_table(float* cos, float* sin, int T, const std::vector<double>& inv_freq);

// ---- causal grouped-query attention, scale 1/sqrt(d). q (N x H*d), k, v (N x KVH*d); query
// head h reads kv head h / (H / KVH). att (B x H x T x T): softmax probabilities, zero above the
// diagonal (saved for backward). y (N x H*d) = att @ v per head.
void attention_forward(float* y, float* att, const float* q, const float* k, const float* v, int B, int T, int H,
                       int KVH, int d, int threads);
// dq (N x H*d), dk, dv (N x KVH*d) overwritten.
void attention_backward(float* dq, float* dk, float* dv, const float* dy, const float* att, const float* q,
                        const float* k, const float* v, int B, int T, int H, int KVH, int d, int threads);

// ---- the same attention for generation, over a KV cache: q (n x H*d) holds n new tokens at
// positions pos .. pos + n - 1; kc, vc (pos + n x KVH*d) the keys (after RoPE) and values of
// every position so far, the new ones included. y (n x H*d). Token i attends to positions
// 0 .. pos + i, with forward's arithmetic in the same order (results equal forward's rows).
void attention_decode(float* y, const float* q, const float* kc, const float* vc, int n, int pos, int H, int KVH,
                      int d, int threads);

// ---- SwiGLU: h (n) = silu(g) * u, silu(g) = g * sigmoid(g); g, u, h of the same size n.
void swiglu_forward(float* h, const float* g, const float* u, int64_t n, int threads);
// dg, du overwritten.
void swiglu_backward(float* dg, float* du, const float* dh, const float* g, const float* u, int64_t n, int threads);

// ---- adapted linear: y (N x out) = x W^T (+ bias) + scale * (x A^T) B^T,
// x (N x in), W (out x in), bias (out) or null, A (r x in), B (out x r); r = 0: plain linear.
struct LoraLinear {
    const float* W = nullptr;
    const float* bias = nullptr;
    const float* A = nullptr;
    const float* B = nullptr;
    int64_t in = 0, out = 0;
    int r = 0;
    float scale = 1.f;
    int threads = 0;  // for the base products x W^T, dy W (tile_gemm; 0 = the BLAS setting)
};
// xa (N x r) = x A^T is saved for backward (null allowed when r = 0).
void lora_linear_forward(float* y, float* xa, const float* x, int64_t N, const LoraLinear& L);
// dx (N x in) = (or += when accumulate_dx) dy W + scale * (dy B) A; dA (r x in) += scale * (dy B)^T x;
// dB (out x r) += scale * dy^T xa; dbias (out) += column sums of dy when not null.
// dxa_scratch: N x r floats.
void lora_linear_backward(float* dx, bool accumulate_dx, float* dA, float* dB, float* dbias, const float* dy,
                          const float* x, const float* xa, float* dxa_scratch, int64_t N, const LoraLinear& L);

// ---- cross-entropy over rows of logits (N x V) against targets (N); targets < 0 are ignored,
// targets >= V throw loftq::Error. lse (N) = log-sum-exp of each row (saved). Returns the mean
// over scored rows (0 when none); *scored = their count.
double cross_entropy_forward(float* lse, const float* logits, const int* targets, int64_t N, int V, int64_t* scored,
                             int threads);
// dlogits (N x V) = dloss * (softmax - onehot) for scored rows, 0 for ignored ones; dloss is
// d(loss)/d(sum of row losses), 1 / scored for the mean. Works on any row range [0, N) of a
// larger batch (the model calls it chunk by chunk).
void cross_entropy_backward(float* dlogits, const float* logits, const float* lse, const int* targets, int64_t N,
                            int V, float dloss, int threads);

}  // namespace loftq::ops
