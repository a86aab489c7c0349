// ops_cuda.h: the layers of the LLaMA decoder on the GPU, the device counterparts of
// model/ops.h (same names, same argument order, same shapes, same gradient rule; read ops.h for
// the maths). Each forward sits beside its backward, as on the CPU (llm.c train_gpt2.cu).
// All pointers are DEVICE pointers, fp32, row-major, dense; N = B * T rows (row n = b * T + t).
// Every call is asynchronous on `stream` and throws loftq::Error on bad arguments or a failed
// launch (checked with cudaGetLastError); none synchronizes unless stated.
//
// Differences from the CPU ops (each for a reason):
//   - no `threads` arguments; no dw / dweight / dbias of frozen tensors in rmsnorm/embedding
//     (the base is frozen on the device; the CPU keeps them for its per-op gradient tests);
//   - tokens and targets are device ints and are NOT range-checked by the kernels (a kernel
//     cannot throw): the model checks them on the host before uploading;
//   - attention is fused (flash-attention style: online softmax over key tiles, no B x H x T x T
//     matrix): forward saves the per-row log-sum-exp (B x H x T) instead of the probabilities,
//     backward recomputes them tile by tile;
//   - cross-entropy forward writes per-row losses (the caller sums them), and backward may run in
//     place (dlogits == logits), which is how the model saves the N x V gradient buffer;
//   - linears go to cuBLAS (cublasGemmEx / cublasSgemm) with fp32 accumulation; `GemmMath::Tf32`
//     lets cuBLAS use TF32 tensor cores for the base-weight products (the LoRA products and all
//     gradients of A and B stay full fp32), `Fp32` is bit-for-bit the plain fp32 path.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "quant/quantizer.h"

namespace loftq::cuda_ops {

// Fp32: plain fp32 everywhere. Tf32: the base-weight products on TF32 tensor cores. Bf16: the
// base-weight products with bf16 inputs (LoraLinear::W_bf16, activations rounded to bf16 in
// LoraLinear::bf16_scratch), fp32 accumulation and output (cublasGemmEx CUDA_R_16BF A/B,
// CUDA_R_32F C, CUBLAS_COMPUTE_32F).
enum class GemmMath : uint8_t { Fp32, Tf32, Bf16 };

// ---- embedding: out (N x C) = table[tokens[n]] (table V x C). No backward (the table is frozen).
void embedding_forward(float* out, const int* tokens, const float* table, int64_t N, int C, cudaStream_t stream);

// ---- RMSNorm: out (N x C) = x * rstd * w, rstd (N) = 1 / sqrt(mean(x^2) + eps), saved.
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int C, float eps,
                     cudaStream_t stream);
// dx (N x C) += d/dx of the norm (residual path, as ops::rmsnorm_backward).
void rmsnorm_backward(float* dx, const float* dout, const float* x, const float* w, const float* rstd, int64_t N,
                      int C, cudaStream_t stream);

// ---- RoPE, HF rotate-half, in place on x (N x heads*d); cos, sin: device T x d/2 tables
// (ops::rope_table computed on the host and uploaded).
void rope_forward(float* x, int B, int T, int heads, int d, const float* cos, const float* sin, cudaStream_t stream);
void rope_backward(float* dx, int B, int T, int heads, int d, const float* cos, const float* sin, cudaStream_t stream);

// ---- fused causal grouped-query attention, scale 1/sqrt(d); q (N x H*d), k, v (N x KVH*d);
// query head h reads kv head h / (H / KVH). d <= 128 (checked). y (N x H*d); lse (B x H x T):
// the log-sum-exp of each query row's scaled scores (saved for backward).
void attention_forward(float* y, float* lse, const float* q, const float* k, const float* v, int B, int T, int H,
                       int KVH, int d, cudaStream_t stream);
// Floats of scratch attention_backward needs (e.g. the row sums D = rowsum(dy * y), per-query-
// head dk/dv before the GQA reduction).
int64_t attention_backward_scratch(int B, int T, int H, int KVH, int d);
// dq (N x H*d), dk, dv (N x KVH*d) overwritten; deterministic for fixed shapes.
void attention_backward(float* dq, float* dk, float* dv, const float* dy, const float* y, const float* lse,
                        const float* q, const float* k, const float* v, float* scratch, int B, int T, int H, int KVH,
                        int d, cudaStream_t stream);

// ---- SwiGLU: h (n) = silu(g) * u; dg, du overwritten.
void swiglu_forward(float* h, const float* g, const float* u, int64_t n, cudaStream_t stream);
void swiglu_backward(float* dg, float* du, const float* dh, const float* g, const float* u, int64_t n,
                     cudaStream_t stream);

// ---- adapted linear, as ops::LoraLinear: y (N x out) = x W^T (+ bias) + scale * (x A^T) B^T.
// W (out x in), bias (out) or null, A (r x in), B (out x r); r = 0: plain linear. Device pointers.
// GemmMath::Bf16 reads W_bf16 (out x in, bf16 bits, W may then be null) instead of W and needs
// bf16_scratch (N x max(in, out) bf16 = 2 bytes each) for the bf16 copy of x (forward) or dy
// (backward); both are plain void* so that this header needs no cuda_bf16.h.
struct LoraLinear {
    const float* W = nullptr;
    const void* W_bf16 = nullptr;
    void* bf16_scratch = nullptr;
    const float* bias = nullptr;
    const float* A = nullptr;
    const float* B = nullptr;
    int64_t in = 0, out = 0;
    int r = 0;
    float scale = 1.f;
};
// xa (N x r) = x A^T saved for backward. `blas` must be bound to `stream`.
void lora_linear_forward(cublasHandle_t blas, float* y, float* xa, const float* x, int64_t N, const LoraLinear& L,
                         GemmMath math, cudaStream_t stream);
// dx (N x in) = (or += when accumulate_dx) dy W + scale * (dy B) A; dA (r x in) += scale (dy B)^T x;
// dB (out x r) += scale dy^T xa. dxa_scratch: N x r floats.
void lora_linear_backward(cublasHandle_t blas, float* dx, bool accumulate_dx, float* dA, float* dB, const float* dy,
                          const float* x, const float* xa, float* dxa_scratch, int64_t N, const LoraLinear& L,
                          GemmMath math, cudaStream_t stream);

// ---- cross-entropy over logits (N x V) against targets (N, device; < 0 ignored).
// lse (N) saved; row_loss (N) = lse - logit[target] for scored rows, 0 for ignored ones.
void cross_entropy_forward(float* lse, float* row_loss, const float* logits, const int* targets, int64_t N, int V,
                           cudaStream_t stream);
// dlogits (N x V) = dloss * (softmax - onehot) for scored rows, 0 for ignored; may equal logits.
void cross_entropy_backward(float* dlogits, const float* logits, const float* lse, const int* targets, int64_t N,
                            int V, float dloss, cudaStream_t stream);

// ---- elementwise helpers
// y[i] += x[i] (the residual adds).
void add_inplace(float* y, const float* x, int64_t n, cudaStream_t stream);
// Sum of x (n floats) in float64, deterministic (fixed blocks, fixed tree); synchronizes.
double sum_f64(const float* x, int64_t n, cudaStream_t stream);
// Sum of squares of x added into *d_acc (one device double), deterministic order per call.
void sum_sq_accumulate(double* d_acc, const float* x, int64_t n, cudaStream_t stream);
// x[i] *= s.
void scale_inplace(float* x, int64_t n, float s, cudaStream_t stream);

// ---- the packed frozen base: W (n fp32) = table[code] * scale for k-bit codes packed
// LSB-first (quant/quantizer.h layout) and one fp32 scale per block; bit-identical to
// loftq::dequantize of the unpacked codes.
void dequantize_packed(float* W, const uint8_t* packed_codes, const float* scales, QuantKind kind, int block,
                       int64_t n, cudaStream_t stream);

// The same into bf16 (W: n bf16 values, 2 bytes each): the fp32 value table[code] * scale above,
// rounded once to bf16 (nearest, ties to even).
void dequantize_packed_bf16(void* W, const uint8_t* packed_codes, const float* scales, QuantKind kind, int block,
                            int64_t n, cudaStream_t stream);
// out (n bf16) = in (n fp32) rounded to nearest, ties to even (__float2bfloat16_rn; NaN -> 0x7fff).
void cast_to_bf16(void* out, const float* in, int64_t n, cudaStream_t stream);

// ---- AdamW (train/adamw.h), one tensor of n values; the update of each element is done in
// float64 and rounded once, as AdamW::step on the CPU, so both give the same bits.
// bc1 = 1 - beta1^t, bc2 = 1 - beta2^t (computed by the caller in float64), grad_scale multiplies
// the gradient first (global-norm clipping; 1 when not clipping).
struct AdamWStep {
    double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0, bc1 = 1, bc2 = 1, grad_scale = 1;
};
void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s, cudaStream_t stream);

}  // namespace loftq::cuda_ops
