// decompose_cuda.h: the LoftQ alternating decomposition of one weight on the GPU, the device
// counterpart of loftq_decompose (loftq/decompose.h): same algorithm, settings, seeds (the
// randomized SVD's test matrix is generated on the host with the CPU's generator and seed per
// step, splitmix64(svd.seed + t)), StepReport events and cancel points (before each step), and
// the same Decomposition (Q, codes, scales, B m x r, A r x n, S, baseline, final_error, w_norm,
// steps). Step 1's quantization is bit-identical to the CPU (cuda/quantize.h); later steps
// quantize W - B A from cuBLAS products, which differ from the CPU's in float rounding, so codes
// can differ where a value lies within rounding of a threshold, and errors agree to ~1e-5.
//
// CudaDecomposer is one stream's worth of state, reused weight after weight: the stream with its
// cuBLAS/cuSOLVER handles (created once: ~tens of ms), device buffers that grow to the largest
// weight seen and stay (no cudaMalloc per weight), low-rank solvers cached per shape, and one
// pinned host staging buffer. A job runs several decomposers on their own threads and streams,
// so one weight's upload and download overlap the others' compute (loftq/job.cpp).
//
// Device memory of one decomposer (bounded by its largest weight, m n elements, l = r + p):
// W, Q, R (3 m n fp32) + codes (m n bytes) + scales (4 m n / block) + 256 doubles + per cached
// shape the low-rank solver's O((m + n) l) buffers and cuSOLVER workspace (lowrank_cuda.h; the
// exact SVD, the reference: O((m + n) min(m, n))). estimate_bytes() is this formula with a
// margin, for choosing how many decomposers fit a memory limit before any is made; bytes()
// reports what one actually holds. Host: one pinned m n fp32 staging buffer (W up, Q down).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/cancel.h"
#include "loftq/decompose.h"

namespace loftq {

struct CudaBlas;
class CudaLowRank;
template <class T>
struct DeviceArray;

struct CudaDecomposeStats {
    size_t device_bytes = 0;  // device memory the decomposer held after the call (buffers + workspace)
    size_t pinned_bytes = 0;  // page-locked host staging buffer
    double upload_seconds = 0, download_seconds = 0;
};

class CudaDecomposer {
public:
    // Creates the stream and handles on device 0; throws loftq::Error without a usable device.
    CudaDecomposer();
    ~CudaDecomposer();
    CudaDecomposer(const CudaDecomposer&) = delete;
    CudaDecomposer& operator=(const CudaDecomposer&) = delete;

    // Pinned host buffer of at least `count` floats (grown on demand; contents kept only until
    // the next run): a caller that reads W straight into it saves one host copy.
    float* staging(size_t count);

    // Decomposes W_host (m x n row-major, host; may be staging()). Throws loftq::Error on a failed
    // CUDA/cuBLAS/cuSOLVER call, Cancelled when the token is set at a step boundary; after either
    // the decomposer stays usable.
    Decomposition run(const float* W_host, int64_t m, int64_t n, const WeightSettings& s, const SvdOptions& svd,
                      const std::function<void(const StepReport&)>& on_step = {}, const CancelToken* cancel = nullptr,
                      CudaDecomposeStats* stats = nullptr);

    size_t device_bytes() const;       // held now
    size_t peak_device_bytes() const;  // the most held at once
    size_t pinned_bytes() const;

    // Upper estimate of one decomposer's device bytes for an m x n weight (formula above).
    static size_t estimate_bytes(int64_t m, int64_t n, const WeightSettings& s, int oversample);

private:
    CudaLowRank& solver(int64_t m, int64_t n, int r, SvdMethod method, int oversample);
    void ensure(size_t N, size_t nb);

    struct Impl;
    std::unique_ptr<Impl> d_;
};

// One-off form: a fresh CudaDecomposer for one weight (tests, benchmarks of a single call).
Decomposition loftq_decompose_cuda(const float* W_host, int64_t m, int64_t n, const WeightSettings& s,
                                   const SvdOptions& svd, const std::function<void(const StepReport&)>& on_step = {},
                                   const CancelToken* cancel = nullptr, CudaDecomposeStats* stats = nullptr);

}  // namespace loftq
