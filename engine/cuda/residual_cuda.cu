// residual_cuda.cu: element-wise kernels of the GPU LoftQ decomposition (see residual_cuda.h),
// then their launchers. Grid-stride loops in 64-bit indices; launches are checked.
#include <string>
#include <vector>

#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/residual_cuda.h"

namespace loftq {

namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
    const int64_t g = (n + kThreads - 1) / kThreads;
    return unsigned(g < 65535 * 16 ? (g < 1 ? 1 : g) : 65535 * 16);
}

__global__ void sub_kernel(const float* a, const float* b, float* out, int64_t n) {
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = __fsub_rn(a[i], b[i]);
}

__global__ void __launch_bounds__(kThreads) diff_sq_kernel(const float* __restrict__ a, const float* __restrict__ b,
                                                           int64_t n, double* __restrict__ partials) {
    __shared__ double sh[kThreads];
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    double s = 0.0;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        const double d = b ? double(a[i]) - double(b[i]) : double(a[i]);
        s = fma(d, d, s);
    }
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int w = kThreads / 2; w >= 1; w /= 2) {
        if (int(threadIdx.x) < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partials[blockIdx.x] = sh[0];
}

__global__ void scale_sqrt_kernel(float* x, int64_t count, int64_t div, int r, const float* S) {
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride)
        x[i] = __fmul_rn(x[i], __fsqrt_rn(S[(i / div) % r]));
}

// Tiled transpose through shared memory (32 x 32 tiles, 32 x 8 threads).
__global__ void transpose_kernel(const float* in, int64_t rows, int64_t cols, int64_t ld_in, float* out) {
    __shared__ float tile[32][33];
    const int64_t r0 = int64_t(blockIdx.x) * 32, c0 = int64_t(blockIdx.y) * 32;
    for (int k = int(threadIdx.y); k < 32; k += 8) {
        const int64_t r = r0 + threadIdx.x, c = c0 + k;
        if (r < rows && c < cols) tile[k][threadIdx.x] = in[c * ld_in + r];
    }
    __syncthreads();
    for (int k = int(threadIdx.y); k < 32; k += 8) {
        const int64_t c = c0 + threadIdx.x, r = r0 + k;
        if (r < rows && c < cols) out[r * cols + c] = tile[threadIdx.x][k];
    }
}

}  // namespace

void cuda_sub(const float* d_a, const float* d_b, float* d_out, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    sub_kernel<<<grid_for(n), kThreads, 0, stream>>>(d_a, d_b, d_out, n);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

double cuda_diff_sq(const float* d_a, const float* d_b, int64_t n, double* d_partials, cudaStream_t stream) {
    if (n <= 0) return 0.0;
    diff_sq_kernel<<<kCudaNormBlocks, kThreads, 0, stream>>>(d_a, d_b, n, d_partials);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
    std::vector<double> part(kCudaNormBlocks);
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(part.data(), d_partials, sizeof(double) * kCudaNormBlocks,
                                     cudaMemcpyDeviceToHost, stream));
    LOFTQ_CUDA_CHECK(cudaStreamSynchronize(stream));
    double s = 0.0;
    for (double p : part) s += p;
    return s;
}

void cuda_scale_sqrt(float* d_x, int64_t count, int64_t div, int r, const float* d_S, cudaStream_t stream) {
    if (count <= 0 || r <= 0) return;
    if (div <= 0) throw Error("cuda_scale_sqrt: divisor must be positive (got " + std::to_string(div) + ")");
    scale_sqrt_kernel<<<grid_for(count), kThreads, 0, stream>>>(d_x, count, div, r, d_S);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

void cuda_transpose(const float* d_in, int64_t rows, int64_t cols, int64_t ld_in, float* d_out, cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return;
    if (ld_in < rows) throw Error("cuda_transpose: leading dimension " + std::to_string(ld_in) + " < rows " + std::to_string(rows));
    const int64_t gx = (rows + 31) / 32, gy = (cols + 31) / 32;
    if (gx > 0x7fffffff || gy > 65535) throw Error("cuda_transpose: " + std::to_string(rows) + " x " + std::to_string(cols) + " exceeds one launch's grid");
    transpose_kernel<<<dim3(unsigned(gx), unsigned(gy)), dim3(32, 8), 0, stream>>>(d_in, rows, cols, ld_in, d_out);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loftq
