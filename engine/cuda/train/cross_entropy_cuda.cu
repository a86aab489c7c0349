// cross_entropy_cuda.cu: cross-entropy over rows of logits (N x V) on the device (ops_cuda.h),
// forward beside backward; kernels then launchers. One block of kThreads per row; V may be
// anything from 1 to a few hundred thousand (152k for Qwen vocabularies).
// Numerics as model/ops.cpp: row max in fp32, sum of fp32 expf(l - max) in float64, lse =
// float(max + log(sum)), row_loss = float(lse64 - logit[target]) from the unrounded float64 lse.
// Ignored rows (target < 0) get lse 0, loss 0 and a zero gradient row, as on the CPU. Targets
// >= V are not range-checked (the caller does that on the host); such a row gets a NaN loss and
// a NaN gradient row instead of an out-of-row read or write.
// Leaves out: the mean over scored rows (the caller sums row_loss with sum_f64), label smoothing.
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/train/ops_cuda.h"

namespace loftq::cuda_ops {

namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kThreads = 512;

// Block reductions over blockDim.x threads (a multiple of 32, <= 1024), fixed trees; every
// thread gets the result (each warp reduces the per-warp partials itself).
__device__ float block_max(float v) {
    __shared__ float part[32];
    const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5, nwarps = int(blockDim.x) >> 5;
#pragma unroll
    for (int o = 16; o >= 1; o /= 2) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
    if (lane == 0) part[warp] = v;
    __syncthreads();
    float t = lane < nwarps ? part[lane] : -INFINITY;
#pragma unroll
    for (int o = 16; o >= 1; o /= 2) t = fmaxf(t, __shfl_xor_sync(kFull, t, o));
    __syncthreads();
    return t;
}

__device__ double block_sum(double v) {
    __shared__ double part[32];
    const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5, nwarps = int(blockDim.x) >> 5;
#pragma unroll
    for (int o = 16; o >= 1; o /= 2) v += __shfl_xor_sync(kFull, v, o);
    if (lane == 0) part[warp] = v;
    __syncthreads();
    double t = lane < nwarps ? part[lane] : 0.0;
#pragma unroll
    for (int o = 16; o >= 1; o /= 2) t += __shfl_xor_sync(kFull, t, o);
    __syncthreads();
    return t;
}

// Grid N, kThreads threads striding over the V logits of row n.
__global__ void __launch_bounds__(kThreads)
    cross_entropy_forward_kernel(float* __restrict__ lse, float* __restrict__ row_loss,
                                 const float* __restrict__ logits, const int* __restrict__ targets, int V) {
    const int64_t n = blockIdx.x;
    const int tgt = targets[n];
    if (tgt < 0) {  // block-uniform
        if (threadIdx.x == 0) lse[n] = row_loss[n] = 0.f;
        return;
    }
    const float* l = logits + n * V;
    float mx = -INFINITY;
    for (int j = int(threadIdx.x); j < V; j += int(blockDim.x)) mx = fmaxf(mx, l[j]);
    mx = block_max(mx);
    double s = 0;
    for (int j = int(threadIdx.x); j < V; j += int(blockDim.x)) s += double(expf(l[j] - mx));
    s = block_sum(s);
    if (threadIdx.x == 0) {
        const double z = double(mx) + log(s);
        lse[n] = float(z);
        row_loss[n] = tgt < V ? float(z - double(l[tgt])) : NAN;
    }
}

// d[j] = float(exp(l[j] - lse) * dloss), then d[target] -= dloss (two roundings, as the CPU;
// the _rn intrinsics keep nvcc from fusing them). In place is safe: each element is read and
// written by the same thread.
__global__ void __launch_bounds__(kThreads)
    cross_entropy_backward_kernel(float* dlogits, const float* logits, const float* __restrict__ lse,
                                  const int* __restrict__ targets, int V, float dloss) {
    const int64_t n = blockIdx.x;
    const int tgt = targets[n];
    float* d = dlogits + n * V;
    if (tgt < 0) {
        for (int j = int(threadIdx.x); j < V; j += int(blockDim.x)) d[j] = 0.f;
        return;
    }
    const float* l = logits + n * V;
    const float z = lse[n];
    const bool bad = tgt >= V;
    for (int j = int(threadIdx.x); j < V; j += int(blockDim.x)) {
        float g = __fmul_rn(expf(l[j] - z), dloss);
        if (j == tgt) g = __fsub_rn(g, dloss);
        d[j] = bad ? NAN : g;
    }
}

void check_args(const char* fn, int64_t N, int V) {
    if (N < 0 || V <= 0)
        throw Error(std::string("cuda_ops::") + fn + ": bad shape N " + std::to_string(N) + " x V " + std::to_string(V));
    if (N > INT_MAX) throw Error(std::string("cuda_ops::") + fn + ": " + std::to_string(N) + " rows exceed one launch's grid");
}

void check_ptr(const char* fn, const void* p, const char* what) {
    if (!p) throw Error(std::string("cuda_ops::") + fn + ": null " + what);
}

}  // namespace

void cross_entropy_forward(float* lse, float* row_loss, const float* logits, const int* targets, int64_t N, int V,
                           cudaStream_t stream) {
    check_args("cross_entropy_forward", N, V);
    if (N == 0) return;
    check_ptr("cross_entropy_forward", lse, "lse");
    check_ptr("cross_entropy_forward", row_loss, "row_loss");
    check_ptr("cross_entropy_forward", logits, "logits");
    check_ptr("cross_entropy_forward", targets, "targets");
    cross_entropy_forward_kernel<<<unsigned(N), kThreads, 0, stream>>>(lse, row_loss, logits, targets, V);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

void cross_entropy_backward(float* dlogits, const float* logits, const float* lse, const int* targets, int64_t N,
                            int V, float dloss, cudaStream_t stream) {
    check_args("cross_entropy_backward", N, V);
    if (N == 0) return;
    check_ptr("cross_entropy_backward", dlogits, "dlogits");
    check_ptr("cross_entropy_backward", logits, "logits");
    check_ptr("cross_entropy_backward", lse, "lse");
    check_ptr("cross_entropy_backward", targets, "targets");
    cross_entropy_backward_kernel<<<unsigned(N), kThreads, 0, stream>>>(dlogits, logits, lse, targets, V, dloss);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loftq::cuda_ops
