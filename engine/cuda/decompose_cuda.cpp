// decompose_cuda.cpp: see decompose_cuda.h. Host code driving the kernels (quantize.cu,
// residual_cuda.cu) and the cuBLAS/cuSOLVER factorization (lowrank_cuda.cpp) on one stream per
// CudaDecomposer.
// Row-major buffers as column-major transposes: see lowrank_cuda.h.
#include "cuda/decompose_cuda.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>

#include "core/clock.h"
#include "core/rng.h"
#include "cuda/blas_cuda.h"
#include "cuda/device.h"
#include "cuda/lowrank_cuda.h"
#include "cuda/quantize.h"
#include "cuda/residual_cuda.h"

namespace loftq {

namespace {

// Page-locked host memory, grown on demand, freed on destruction.
struct PinnedBuffer {
    float* p = nullptr;
    size_t count = 0;
    PinnedBuffer() = default;
    ~PinnedBuffer() {
        if (p) (void)cudaFreeHost(p);
    }
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;
    void grow(size_t n) {
        if (n <= count) return;
        if (p) (void)cudaFreeHost(p);
        p = nullptr;
        count = 0;
        LOFTQ_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&p), n * sizeof(float)));
        count = n;
    }
    size_t bytes() const { return count * sizeof(float); }
};

// Grows a device buffer to at least n elements (contents not kept).
template <class T>
void grow(DeviceArray<T>& a, size_t n) {
    if (n > a.count) a.reset(n);
}
}  // namespace

// Low-rank solvers are cached by (m, n, r, method, oversample): a job's weights come in a few
// shapes, and a solver's buffers and workspace depend only on those. At most kMaxSolvers are
// kept (least recently used goes), so memory stays bounded whatever the plan.
struct CudaDecomposer::Impl {
    static constexpr size_t kMaxSolvers = 4;
    CudaBlas cb;
    PinnedBuffer host;
    DeviceArray<float> W, Q, R, scales;
    DeviceArray<uint8_t> codes;
    DeviceArray<double> part{kCudaNormBlocks};
    struct Solver {
        std::tuple<int64_t, int64_t, int, SvdMethod, int> key;
        std::unique_ptr<CudaLowRank> lr;
        uint64_t used = 0;
    };
    std::vector<Solver> solvers;
    uint64_t clock = 0;
    size_t peak = 0;
};

CudaDecomposer::CudaDecomposer() {
    if (std::string why; !cuda_available(&why)) throw Error("CUDA LoftQ: no usable CUDA device: " + why);
    d_ = std::make_unique<Impl>();
}

CudaDecomposer::~CudaDecomposer() = default;

float* CudaDecomposer::staging(size_t count) {
    d_->host.grow(count);
    return d_->host.p;
}

size_t CudaDecomposer::device_bytes() const {
    size_t b = d_->W.bytes() + d_->Q.bytes() + d_->R.bytes() + d_->scales.bytes() + d_->codes.bytes() + d_->part.bytes();
    for (const auto& s : d_->solvers) b += s.lr->bytes();
    return b;
}

size_t CudaDecomposer::peak_device_bytes() const { return std::max(d_->peak, device_bytes()); }

size_t CudaDecomposer::pinned_bytes() const { return d_->host.bytes(); }

size_t CudaDecomposer::estimate_bytes(int64_t m, int64_t n, const WeightSettings& s, int oversample) {
    const size_t N = size_t(m) * size_t(n), k = size_t(std::min(m, n));
    const size_t r = std::min(size_t(std::max(s.rank, 1)), k), l = std::min(r + size_t(std::max(oversample, 0)), k);
    size_t bytes = 3 * N * 4 + N + 4 * num_blocks(N, s.block) + 8 * kCudaNormBlocks;  // W, Q, R, codes, scales, partials
    if (s.svd == SvdMethod::Exact)
        bytes += 4 * ((size_t(m) + size_t(n)) * k + k) + 4 * N;  // U, V, S + gesvdj workspace (allowance: m n)
    else
        bytes += 4 * ((size_t(m) + size_t(n)) * (r + 3 * l) + 2 * l * l + 4 * l);  // factors, Omega/Q/Z, l x l, work
    return bytes + bytes / 8 + (16u << 20);  // 12.5% + 16 MiB margin (allocator granularity, cuBLAS workspace)
}

void CudaDecomposer::ensure(size_t N, size_t nb) {
    grow(d_->W, N);
    grow(d_->Q, N);
    grow(d_->R, N);
    grow(d_->codes, N);
    grow(d_->scales, nb);
}

CudaLowRank& CudaDecomposer::solver(int64_t m, int64_t n, int r, SvdMethod method, int oversample) {
    auto key = std::make_tuple(m, n, r, method, oversample);
    ++d_->clock;
    for (auto& s : d_->solvers)
        if (s.key == key) {
            s.used = d_->clock;
            return *s.lr;
        }
    if (d_->solvers.size() >= Impl::kMaxSolvers) {
        auto lru = std::min_element(d_->solvers.begin(), d_->solvers.end(), [](auto& a, auto& b) { return a.used < b.used; });
        d_->solvers.erase(lru);
    }
    d_->solvers.push_back({key, std::make_unique<CudaLowRank>(d_->cb, m, n, r, method, oversample), d_->clock});
    return *d_->solvers.back().lr;
}

Decomposition loftq_decompose_cuda(const float* W_host, int64_t m, int64_t n, const WeightSettings& s,
                                   const SvdOptions& svd, const std::function<void(const StepReport&)>& on_step,
                                   const CancelToken* cancel, CudaDecomposeStats* stats) {
    CudaDecomposer dec;
    return dec.run(W_host, m, n, s, svd, on_step, cancel, stats);
}


Decomposition CudaDecomposer::run(const float* W_host, int64_t m, int64_t n, const WeightSettings& s,
                                  const SvdOptions& svd, const std::function<void(const StepReport&)>& on_step,
                                  const CancelToken* cancel, CudaDecomposeStats* stats) {
    const auto t_start = Clock::now();
    if (m <= 0 || n <= 0) throw Error("loftq_decompose_cuda: empty weight " + std::to_string(m) + " x " + std::to_string(n));
    if (!W_host) throw Error("loftq_decompose_cuda: null weight");
    const size_t N = size_t(m) * size_t(n), nb = num_blocks(N, s.block);
    Decomposition d;
    d.Q = Matrix(m, n);
    d.codes.resize(N);
    d.scales.resize(nb);

    Impl& x = *d_;
    CudaBlas& cb = x.cb;
    // A failed or cancelled call may leave work queued on the stream; the next call must not
    // race it, so every exit path drains the stream first.
    struct Drain {
        cudaStream_t st;
        ~Drain() { (void)cudaStreamSynchronize(st); }
    } drain{cb.stream};
    ensure(N, nb);
    if (W_host != x.host.p) {
        x.host.grow(N);
        std::memcpy(x.host.p, W_host, N * sizeof(float));
    }
    float* dW = x.W.p;
    float* dQ = x.Q.p;
    float* dR = x.R.p;

    auto t0 = Clock::now();
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(dW, x.host.p, N * sizeof(float), cudaMemcpyHostToDevice, cb.stream));
    d.w_norm = std::sqrt(cuda_diff_sq(dW, nullptr, int64_t(N), x.part.p, cb.stream));  // synchronizes
    const double upload = since(t0);
    const double inv_norm = d.w_norm > 0 ? 1.0 / d.w_norm : 0.0;

    if (cancel) cancel->throw_if_cancelled();
    // Q_1 = q(W): the QLoRA baseline and the first step's backbone.
    auto t_step = Clock::now();
    cuda_quantize_dequantize(s.quant, dW, int64_t(N), s.block, dQ, x.codes.p, x.scales.p, cb.stream);
    d.baseline = std::sqrt(cuda_diff_sq(dW, dQ, int64_t(N), x.part.p, cb.stream)) * inv_norm;
    d.final_error = d.baseline;
    const int r = int(std::min<int64_t>(s.rank, std::min(m, n)));

    CudaLowRank* lr = nullptr;
    if (s.iters > 0 && r > 0) {
        lr = &solver(m, n, r, s.svd, svd.oversample);
        const float one = 1.f, minus_one = -1.f;
        for (int t = 1; t <= s.iters; ++t) {
            if (t > 1) {
                if (cancel) cancel->throw_if_cancelled();
                t_step = Clock::now();
                cuda_quantize_dequantize(s.quant, dR, int64_t(N), s.block, dQ, x.codes.p, x.scales.p, cb.stream);
            }
            cuda_sub(dW, dQ, dR, int64_t(N), cb.stream);  // R = W - Q_t
            uint64_t seed = svd.seed + uint64_t(t);          // as loftq_decompose
            lr->run(dR, splitmix64(seed), svd.power_iters);  // the exact SVD overwrites R
            // R = W - B A. Column-major: R^T (n x m, ld n) = W^T - A^T (n x r, ld n) B^T (r x m, ld r).
            LOFTQ_CUDA_CHECK(cudaMemcpyAsync(dR, dW, N * sizeof(float), cudaMemcpyDeviceToDevice, cb.stream));
            LOFTQ_CUBLAS_CHECK(cublasSgemm(cb.blas, CUBLAS_OP_N, CUBLAS_OP_N, int(n), int(m), lr->rank(), &minus_one,
                                           lr->A(), int(n), lr->B(), lr->rank(), &one, dR, int(n)));
            // error = ||R - Q|| = ||W - Q - B A|| (synchronizes: the step's time is complete).
            d.final_error = std::sqrt(cuda_diff_sq(dR, dQ, int64_t(N), x.part.p, cb.stream)) * inv_norm;
            StepReport rep{t, d.final_error, since(t_step), d.baseline};
            d.steps.push_back(rep);
            if (on_step) on_step(rep);
        }
    }

    t0 = Clock::now();
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(x.host.p, dQ, N * sizeof(float), cudaMemcpyDeviceToHost, cb.stream));
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(d.codes.data(), x.codes.p, N, cudaMemcpyDeviceToHost, cb.stream));
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(d.scales.data(), x.scales.p, nb * sizeof(float), cudaMemcpyDeviceToHost, cb.stream));
    if (lr) {
        const int rk = lr->rank();
        d.lr.B = Matrix(m, rk);  // B^T column-major r x m == B row-major m x r
        d.lr.A = Matrix(rk, n);  // A^T column-major n x r == A row-major r x n
        d.lr.S.resize(size_t(rk));
        LOFTQ_CUDA_CHECK(cudaMemcpyAsync(d.lr.B.data(), lr->B(), size_t(m) * rk * sizeof(float), cudaMemcpyDeviceToHost, cb.stream));
        LOFTQ_CUDA_CHECK(cudaMemcpyAsync(d.lr.A.data(), lr->A(), size_t(n) * rk * sizeof(float), cudaMemcpyDeviceToHost, cb.stream));
        LOFTQ_CUDA_CHECK(cudaMemcpyAsync(d.lr.S.data(), lr->S(), size_t(rk) * sizeof(float), cudaMemcpyDeviceToHost, cb.stream));
    } else {
        d.lr.B = Matrix(m, 0);
        d.lr.A = Matrix(0, n);
    }
    LOFTQ_CUDA_CHECK(cudaStreamSynchronize(cb.stream));
    std::memcpy(d.Q.data(), x.host.p, N * sizeof(float));
    x.peak = std::max(x.peak, device_bytes());  // after the run: the exact SVD's workspace is sized on first use
    if (stats) {
        stats->device_bytes = device_bytes();
        stats->pinned_bytes = x.host.bytes();
        stats->upload_seconds = upload;
        stats->download_seconds = since(t0);
    }
    d.seconds = since(t_start);
    return d;
}

}  // namespace loftq
