// ops_norm_rope.cu: the row-wise and element-wise layers of ops_cuda.h (embedding, RMSNorm, RoPE,
// SwiGLU, residual add, scale) and the deterministic float64 sums, kernels then launchers, each
// forward beside its backward. The maths and the float64 accumulations are those of
// model/ops.cpp; results agree with the CPU to a few ulps (the CPU's std::exp and CUDA's expf are
// both faithfully rounded but not identical, the sums are taken in another order, and nvcc may
// fuse a multiply and an add into one FMA where GCC for baseline x86-64 does not).
// Leaves out: attention (attention_cuda.cu), cross-entropy (cross_entropy_cuda.cu), the linears
// (linear_cuda.cu), AdamW and dequantization (adamw_dequant.cu).
#include <climits>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/train/ops_cuda.h"

namespace loftq::cuda_ops {

namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kThreads = 256;     // element-wise and row kernels
constexpr int kSumBlocks = 256;   // most blocks of the first stage of a float64 sum
constexpr int kSumThreads = 256;  // threads per block of both stages (final stage: one block)

// ---- reductions. Fixed trees: the result depends only on the inputs and the launch shape.

// Butterfly: every lane ends with the same value (a + b == b + a in IEEE arithmetic).
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
    for (int o = 16; o >= 1; o /= 2) v += __shfl_xor_sync(kFull, v, o);
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the total. Each
// warp reduces the per-warp partials itself, so no broadcast step is needed.
__device__ double block_sum(double v) {
    __shared__ double part[32];
    const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5, nwarps = int(blockDim.x) >> 5;
    v = warp_sum(v);
    if (lane == 0) part[warp] = v;
    __syncthreads();
    double t = lane < nwarps ? part[lane] : 0.0;
    t = warp_sum(t);
    __syncthreads();  // part[] is free again for a next call
    return t;
}

unsigned grid_for(int64_t n) {
    const int64_t g = (n + kThreads - 1) / kThreads;
    return unsigned(g < 65535 * 16 ? (g < 1 ? 1 : g) : 65535 * 16);
}

void check_rows(const char* fn, int64_t N, int C) {
    if (N < 0 || C <= 0)
        throw Error(std::string("cuda_ops::") + fn + ": bad shape N " + std::to_string(N) + " x C " + std::to_string(C));
    if (N > INT_MAX) throw Error(std::string("cuda_ops::") + fn + ": " + std::to_string(N) + " rows exceed one launch's grid");
}

void check_ptr(const char* fn, const void* p, const char* what) {
    if (!p) throw Error(std::string("cuda_ops::") + fn + ": null " + what);
}

// ---- embedding. Grid N (one block per row), kThreads threads stride over the C columns.
__global__ void embedding_forward_kernel(float* __restrict__ out, const int* __restrict__ tokens,
                                         const float* __restrict__ table, int C) {
    const int64_t n = blockIdx.x;
    const float* src = table + int64_t(tokens[n]) * C;
    float* dst = out + n * C;
    for (int c = int(threadIdx.x); c < C; c += int(blockDim.x)) dst[c] = src[c];
}

// ---- RMSNorm. Grid N (one block per row of C), kThreads threads; sums of squares in float64
// as on the CPU. rstd = float(1 / sqrt(ss / C + eps)) with IEEE double division and sqrt.
__global__ void __launch_bounds__(kThreads) rmsnorm_forward_kernel(float* __restrict__ out, float* __restrict__ rstd,
                                                                   const float* __restrict__ x,
                                                                   const float* __restrict__ w, int C, float eps) {
    const int64_t n = blockIdx.x;
    const float* xr = x + n * C;
    double ss = 0;
    for (int c = int(threadIdx.x); c < C; c += int(blockDim.x)) ss += double(xr[c]) * double(xr[c]);
    ss = block_sum(ss);
    const float rs = float(1.0 / sqrt(ss / C + double(eps)));
    if (threadIdx.x == 0) rstd[n] = rs;
    float* o = out + n * C;
    for (int c = int(threadIdx.x); c < C; c += int(blockDim.x)) o[c] = (xr[c] * rs) * w[c];
}

// dL/dx_j = r (g_j - xhat_j mean_c(g_c xhat_c)), g = dout * w, xhat = x r; added into dx.
// Same launch shape as the forward; the mean is a float64 block sum.
__global__ void __launch_bounds__(kThreads) rmsnorm_backward_kernel(float* __restrict__ dx, const float* __restrict__ dout,
                                                                    const float* __restrict__ x,
                                                                    const float* __restrict__ w,
                                                                    const float* __restrict__ rstd, int C) {
    const int64_t n = blockIdx.x;
    const float* xr = x + n * C;
    const float* gr = dout + n * C;
    const float rs = rstd[n];
    double m = 0;
    for (int c = int(threadIdx.x); c < C; c += int(blockDim.x)) m += double(gr[c] * w[c]) * double(xr[c] * rs);
    m = block_sum(m);
    const float mean = float(m / C);
    float* d = dx + n * C;
    for (int c = int(threadIdx.x); c < C; c += int(blockDim.x)) d[c] += rs * (gr[c] * w[c] - xr[c] * rs * mean);
}

// ---- RoPE (rotate-half). Grid N = B * T (one block per token row), kThreads threads stride
// over the heads * d/2 pairs (i, i + d/2) of the row; position t = n % T. `sign` = +1 rotates by
// +angle (forward), -1 by -angle (backward: the transpose rotation).
__global__ void rope_kernel(float* __restrict__ x, int T, int heads, int d, const float* __restrict__ cos,
                            const float* __restrict__ sin, float sign) {
    const int64_t n = blockIdx.x;
    const int half = d / 2;
    const int64_t t = n % T;
    const float* cr = cos + t * half;
    const float* sr = sin + t * half;
    float* row = x + n * int64_t(heads) * d;
    for (int e = int(threadIdx.x); e < heads * half; e += int(blockDim.x)) {
        const int h = e / half, i = e % half;
        float* p = row + int64_t(h) * d;
        const float a = p[i], b = p[i + half], c = cr[i], s = sign * sr[i];  // sign * s is exact
        p[i] = a * c - b * s;
        p[i + half] = b * c + a * s;
    }
}

// ---- SwiGLU, element-wise, grid-stride over n.
__global__ void swiglu_forward_kernel(float* __restrict__ h, const float* __restrict__ g, const float* __restrict__ u,
                                      int64_t n) {
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
        h[i] = g[i] / (1.f + expf(-g[i])) * u[i];
}

// d silu(g)/dg = s (1 + g (1 - s)), s = sigmoid(g).
__global__ void swiglu_backward_kernel(float* __restrict__ dg, float* __restrict__ du, const float* __restrict__ dh,
                                       const float* __restrict__ g, const float* __restrict__ u, int64_t n) {
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float s = 1.f / (1.f + expf(-g[i]));
        du[i] = dh[i] * g[i] * s;
        dg[i] = dh[i] * u[i] * s * (1.f + g[i] * (1.f - s));
    }
}

// ---- y += x, x *= s: one correctly rounded op per element, so bit-identical to the CPU.
__global__ void add_kernel(float* __restrict__ y, const float* __restrict__ x, int64_t n) {
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) y[i] += x[i];
}

__global__ void scale_kernel(float* __restrict__ x, int64_t n, float s) {
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) x[i] *= s;
}

// ---- float64 sums in two stages. Stage 1: grid `blocks` x kSumThreads, thread i of the grid
// sums x[i], x[i + stride], ... (squared when Square) in float64, the block tree-reduces into
// partials[blockIdx.x]. Stage 2: one block of kSumThreads reduces the `blocks` partials in a fixed
// tree and writes (or adds into) *out. `blocks` depends only on n (sum_blocks), so a call's result
// depends only on n and the data: no atomics anywhere.
template <bool Square>
__global__ void __launch_bounds__(kSumThreads) sum_stage1_kernel(double* __restrict__ partials,
                                                                 const float* __restrict__ x, int64_t n) {
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    double s = 0;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        const double v = x[i];
        s += Square ? v * v : v;
    }
    s = block_sum(s);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

__global__ void __launch_bounds__(kSumThreads) sum_stage2_kernel(double* __restrict__ out,
                                                                 const double* __restrict__ partials, int blocks,
                                                                 bool accumulate) {
    double s = 0;
    for (int i = int(threadIdx.x); i < blocks; i += int(blockDim.x)) s += partials[i];
    s = block_sum(s);
    if (threadIdx.x == 0) *out = accumulate ? *out + s : s;
}

// Blocks of stage 1: about 4 elements per thread for small n, at most kSumBlocks.
int sum_blocks(int64_t n) {
    const int64_t b = (n + 4 * kSumThreads - 1) / (4 * kSumThreads);
    return int(b < 1 ? 1 : (b > kSumBlocks ? kSumBlocks : b));
}

// Stream-ordered scratch (cudaMallocAsync, from the device's default pool, so cheap after the
// first call), freed in stream order on scope exit, also when a check throws.
struct StreamScratch {
    double* p = nullptr;
    cudaStream_t stream;
    StreamScratch(size_t count, cudaStream_t s) : stream(s) {
        LOFTQ_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&p), count * sizeof(double), stream));
    }
    ~StreamScratch() {
        if (p) (void)cudaFreeAsync(p, stream);
    }
    StreamScratch(const StreamScratch&) = delete;
    StreamScratch& operator=(const StreamScratch&) = delete;
};

// Stage 1 into scratch[1 ..], stage 2 into *out (scratch[0] when out is null).
void launch_sum(bool square, double* out, bool accumulate, const float* x, int64_t n, double* scratch,
                cudaStream_t stream) {
    const int blocks = sum_blocks(n);
    if (square) sum_stage1_kernel<true><<<blocks, kSumThreads, 0, stream>>>(scratch + 1, x, n);
    else sum_stage1_kernel<false><<<blocks, kSumThreads, 0, stream>>>(scratch + 1, x, n);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
    sum_stage2_kernel<<<1, kSumThreads, 0, stream>>>(out ? out : scratch, scratch + 1, blocks, accumulate);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// embedding

void embedding_forward(float* out, const int* tokens, const float* table, int64_t N, int C, cudaStream_t stream) {
    check_rows("embedding_forward", N, C);
    if (N == 0) return;
    check_ptr("embedding_forward", out, "out");
    check_ptr("embedding_forward", tokens, "tokens");
    check_ptr("embedding_forward", table, "table");
    embedding_forward_kernel<<<unsigned(N), kThreads, 0, stream>>>(out, tokens, table, C);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int C, float eps,
                     cudaStream_t stream) {
    check_rows("rmsnorm_forward", N, C);
    if (N == 0) return;
    check_ptr("rmsnorm_forward", out, "out");
    check_ptr("rmsnorm_forward", rstd, "rstd");
    check_ptr("rmsnorm_forward", x, "x");
    check_ptr("rmsnorm_forward", w, "w");
    rmsnorm_forward_kernel<<<unsigned(N), kThreads, 0, stream>>>(out, rstd, x, w, C, eps);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

void rmsnorm_backward(float* dx, const float* dout, const float* x, const float* w, const float* rstd, int64_t N,
                      int C, cudaStream_t stream) {
    check_rows("rmsnorm_backward", N, C);
    if (N == 0) return;
    check_ptr("rmsnorm_backward", dx, "dx");
    check_ptr("rmsnorm_backward", dout, "dout");
    check_ptr("rmsnorm_backward", x, "x");
    check_ptr("rmsnorm_backward", w, "w");
    check_ptr("rmsnorm_backward", rstd, "rstd");
    rmsnorm_backward_kernel<<<unsigned(N), kThreads, 0, stream>>>(dx, dout, x, w, rstd, C);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

// ---------------------------------------------------------------------------------------------
// RoPE

namespace {
void launch_rope(const char* fn, float* x, int B, int T, int heads, int d, const float* cos, const float* sin,
                 float sign, cudaStream_t stream) {
    if (B < 0 || T < 0 || heads <= 0 || d <= 0 || d % 2 != 0)
        throw Error(std::string("cuda_ops::") + fn + ": bad shape B " + std::to_string(B) + " T " + std::to_string(T) +
                    " heads " + std::to_string(heads) + " d " + std::to_string(d) + " (d must be even)");
    const int64_t N = int64_t(B) * T;
    if (N == 0) return;
    if (N > INT_MAX) throw Error(std::string("cuda_ops::") + fn + ": " + std::to_string(N) + " rows exceed one launch's grid");
    if (int64_t(heads) * (d / 2) > INT_MAX) throw Error(std::string("cuda_ops::") + fn + ": heads * d too large");
    check_ptr(fn, x, "x");
    check_ptr(fn, cos, "cos table");
    check_ptr(fn, sin, "sin table");
    rope_kernel<<<unsigned(N), kThreads, 0, stream>>>(x, T, heads, d, cos, sin, sign);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}
}  // namespace

void rope_forward(float* x, int B, int T, int heads, int d, const float* cos, const float* sin, cudaStream_t stream) {
    launch_rope("rope_forward", x, B, T, heads, d, cos, sin, 1.f, stream);
}

void rope_backward(float* dx, int B, int T, int heads, int d, const float* cos, const float* sin, cudaStream_t stream) {
    launch_rope("rope_backward", dx, B, T, heads, d, cos, sin, -1.f, stream);
}

// ---------------------------------------------------------------------------------------------
// SwiGLU

void swiglu_forward(float* h, const float* g, const float* u, int64_t n, cudaStream_t stream) {
    if (n < 0) throw Error("cuda_ops::swiglu_forward: negative size " + std::to_string(n));
    if (n == 0) return;
    check_ptr("swiglu_forward", h, "h");
    check_ptr("swiglu_forward", g, "g");
    check_ptr("swiglu_forward", u, "u");
    swiglu_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(h, g, u, n);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

void swiglu_backward(float* dg, float* du, const float* dh, const float* g, const float* u, int64_t n,
                     cudaStream_t stream) {
    if (n < 0) throw Error("cuda_ops::swiglu_backward: negative size " + std::to_string(n));
    if (n == 0) return;
    check_ptr("swiglu_backward", dg, "dg");
    check_ptr("swiglu_backward", du, "du");
    check_ptr("swiglu_backward", dh, "dh");
    check_ptr("swiglu_backward", g, "g");
    check_ptr("swiglu_backward", u, "u");
    swiglu_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(dg, du, dh, g, u, n);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

// ---------------------------------------------------------------------------------------------
// element-wise helpers and sums

void add_inplace(float* y, const float* x, int64_t n, cudaStream_t stream) {
    if (n < 0) throw Error("cuda_ops::add_inplace: negative size " + std::to_string(n));
    if (n == 0) return;
    check_ptr("add_inplace", y, "y");
    check_ptr("add_inplace", x, "x");
    add_kernel<<<grid_for(n), kThreads, 0, stream>>>(y, x, n);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

void scale_inplace(float* x, int64_t n, float s, cudaStream_t stream) {
    if (n < 0) throw Error("cuda_ops::scale_inplace: negative size " + std::to_string(n));
    if (n == 0) return;
    check_ptr("scale_inplace", x, "x");
    scale_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, n, s);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

double sum_f64(const float* x, int64_t n, cudaStream_t stream) {
    if (n < 0) throw Error("cuda_ops::sum_f64: negative size " + std::to_string(n));
    if (n == 0) return 0.0;
    check_ptr("sum_f64", x, "x");
    StreamScratch scratch(size_t(1 + kSumBlocks), stream);
    launch_sum(false, nullptr, false, x, n, scratch.p, stream);
    double s = 0;
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(&s, scratch.p, sizeof(double), cudaMemcpyDeviceToHost, stream));
    LOFTQ_CUDA_CHECK(cudaStreamSynchronize(stream));
    return s;
}

void sum_sq_accumulate(double* d_acc, const float* x, int64_t n, cudaStream_t stream) {
    if (n < 0) throw Error("cuda_ops::sum_sq_accumulate: negative size " + std::to_string(n));
    if (n == 0) return;
    check_ptr("sum_sq_accumulate", d_acc, "accumulator");
    check_ptr("sum_sq_accumulate", x, "x");
    StreamScratch scratch(size_t(1 + kSumBlocks), stream);
    launch_sum(true, d_acc, true, x, n, scratch.p, stream);
}

}  // namespace loftq::cuda_ops
