// decompose_cuda.cpp: see decompose_cuda.h. Host code driving the kernels (quantize.cu,
// residual_cuda.cu) and the cuBLAS/cuSOLVER factorization (lowrank_cuda.cpp) on one stream.
// Row-major buffers as column-major transposes: see lowrank_cuda.h.
#include "cuda/decompose_cuda.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "core/rng.h"
#include "cuda/blas_cuda.h"
#include "cuda/device.h"
#include "cuda/lowrank_cuda.h"
#include "cuda/quantize.h"
#include "cuda/residual_cuda.h"

namespace loftq {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Page-locked host memory freed on scope exit.
struct PinnedBuffer {
    float* p = nullptr;
    size_t bytes = 0;
    explicit PinnedBuffer(size_t count) {
        if (count) LOFTQ_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&p), count * sizeof(float)));
        bytes = count * sizeof(float);
    }
    ~PinnedBuffer() {
        if (p) (void)cudaFreeHost(p);
    }
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;
};
}  // namespace

Decomposition loftq_decompose_cuda(const float* W_host, int64_t m, int64_t n, const WeightSettings& s,
                                   const SvdOptions& svd, const std::function<void(const StepReport&)>& on_step,
                                   const CancelToken* cancel, CudaDecomposeStats* stats) {
    const auto t_start = Clock::now();
    if (m <= 0 || n <= 0) throw Error("loftq_decompose_cuda: empty weight " + std::to_string(m) + " x " + std::to_string(n));
    if (!W_host) throw Error("loftq_decompose_cuda: null weight");
    if (std::string why; !cuda_available(&why)) throw Error("loftq_decompose_cuda: no usable CUDA device: " + why);
    const size_t N = size_t(m) * size_t(n), nb = num_blocks(N, s.block);
    Decomposition d;
    d.Q = Matrix(m, n);
    d.codes.resize(N);
    d.scales.resize(nb);

    CudaBlas cb;
    PinnedBuffer host(N);
    DeviceArray<float> dW(N), dQ(N), dR(N), dScales(nb);
    DeviceArray<uint8_t> dCodes(N);
    DeviceArray<double> dPart(kCudaNormBlocks);
    size_t device_bytes = dW.bytes() + dQ.bytes() + dR.bytes() + dScales.bytes() + dCodes.bytes() + dPart.bytes();

    auto t0 = Clock::now();
    std::memcpy(host.p, W_host, N * sizeof(float));
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(dW.p, host.p, N * sizeof(float), cudaMemcpyHostToDevice, cb.stream));
    d.w_norm = std::sqrt(cuda_diff_sq(dW.p, nullptr, int64_t(N), dPart.p, cb.stream));  // synchronizes
    const double upload = since(t0);
    const double inv_norm = d.w_norm > 0 ? 1.0 / d.w_norm : 0.0;

    if (cancel) cancel->throw_if_cancelled();
    // Q_1 = q(W): the QLoRA baseline and the first step's backbone.
    auto t_step = Clock::now();
    cuda_quantize_dequantize(s.quant, dW.p, int64_t(N), s.block, dQ.p, dCodes.p, dScales.p, cb.stream);
    d.baseline = std::sqrt(cuda_diff_sq(dW.p, dQ.p, int64_t(N), dPart.p, cb.stream)) * inv_norm;
    d.final_error = d.baseline;
    const int r = int(std::min<int64_t>(s.rank, std::min(m, n)));

    std::unique_ptr<CudaLowRank> lr;
    if (s.iters > 0 && r > 0) {
        lr = std::make_unique<CudaLowRank>(cb, m, n, r, s.svd, svd.oversample);
        const float one = 1.f, minus_one = -1.f;
        for (int t = 1; t <= s.iters; ++t) {
            if (t > 1) {
                if (cancel) cancel->throw_if_cancelled();
                t_step = Clock::now();
                cuda_quantize_dequantize(s.quant, dR.p, int64_t(N), s.block, dQ.p, dCodes.p, dScales.p, cb.stream);
            }
            cuda_sub(dW.p, dQ.p, dR.p, int64_t(N), cb.stream);  // R = W - Q_t
            uint64_t x = svd.seed + uint64_t(t);                 // as loftq_decompose
            lr->run(dR.p, splitmix64(x), svd.power_iters);       // the exact SVD overwrites R
            // R = W - B A. Column-major: R^T (n x m, ld n) = W^T - A^T (n x r, ld n) B^T (r x m, ld r).
            LOFTQ_CUDA_CHECK(cudaMemcpyAsync(dR.p, dW.p, N * sizeof(float), cudaMemcpyDeviceToDevice, cb.stream));
            LOFTQ_CUBLAS_CHECK(cublasSgemm(cb.blas, CUBLAS_OP_N, CUBLAS_OP_N, int(n), int(m), lr->rank(), &minus_one,
                                           lr->A(), int(n), lr->B(), lr->rank(), &one, dR.p, int(n)));
            // error = ||R - Q|| = ||W - Q - B A|| (synchronizes: the step's time is complete).
            d.final_error = std::sqrt(cuda_diff_sq(dR.p, dQ.p, int64_t(N), dPart.p, cb.stream)) * inv_norm;
            StepReport rep{t, d.final_error, since(t_step), d.baseline};
            d.steps.push_back(rep);
            if (on_step) on_step(rep);
        }
    }

    t0 = Clock::now();
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(host.p, dQ.p, N * sizeof(float), cudaMemcpyDeviceToHost, cb.stream));
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(d.codes.data(), dCodes.p, N, cudaMemcpyDeviceToHost, cb.stream));
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(d.scales.data(), dScales.p, nb * sizeof(float), cudaMemcpyDeviceToHost, cb.stream));
    if (lr) {
        const int rk = lr->rank();
        d.lr.B = Matrix(m, rk);  // B^T column-major r x m == B row-major m x r
        d.lr.A = Matrix(rk, n);  // A^T column-major n x r == A row-major r x n
        d.lr.S.resize(size_t(rk));
        LOFTQ_CUDA_CHECK(cudaMemcpyAsync(d.lr.B.data(), lr->B(), size_t(m) * rk * sizeof(float), cudaMemcpyDeviceToHost, cb.stream));
        LOFTQ_CUDA_CHECK(cudaMemcpyAsync(d.lr.A.data(), lr->A(), size_t(n) * rk * sizeof(float), cudaMemcpyDeviceToHost, cb.stream));
        LOFTQ_CUDA_CHECK(cudaMemcpyAsync(d.lr.S.data(), lr->S(), size_t(rk) * sizeof(float), cudaMemcpyDeviceToHost, cb.stream));
        device_bytes += lr->bytes();  // after the run: the exact SVD's workspace is sized on first use
    } else {
        d.lr.B = Matrix(m, 0);
        d.lr.A = Matrix(0, n);
    }
    LOFTQ_CUDA_CHECK(cudaStreamSynchronize(cb.stream));
    std::memcpy(d.Q.data(), host.p, N * sizeof(float));
    if (stats) {
        stats->device_bytes = device_bytes;
        stats->pinned_bytes = host.bytes;
        stats->upload_seconds = upload;
        stats->download_seconds = since(t0);
    }
    d.seconds = since(t_start);
    return d;
}

}  // namespace loftq
