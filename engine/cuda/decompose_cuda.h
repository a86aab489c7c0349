// decompose_cuda.h: the LoftQ alternating decomposition of one weight on the GPU, the device
// counterpart of loftq_decompose (loftq/decompose.h): same algorithm, settings, seeds (the
// randomized SVD's test matrix is generated on the host with the CPU's generator and seed per
// step, splitmix64(svd.seed + t)), StepReport events and cancel points (before each step), and
// the same Decomposition (Q, codes, scales, B m x r, A r x n, S, baseline, final_error, w_norm,
// steps). Step 1's quantization is bit-identical to the CPU (cuda/quantize.h); later steps
// quantize W - B A from cuBLAS products, which differ from the CPU's in float rounding, so codes
// can differ where a value lies within rounding of a threshold, and errors agree to ~1e-5.
//
// Device memory per weight (bounded, allocated once per call): W, Q, R (3 m n fp32), codes (m n
// bytes), scales, 256 doubles, plus the low-rank solver's buffers (lowrank_cuda.h: O((m + n) l)
// for the randomized SVD, O((m + n) min(m, n)) + cuSOLVER workspace for the exact one). The
// residual is factorized in place (the exact SVD overwrites it). Host: one pinned m n fp32
// staging buffer (W up, Q down). CudaDecomposeStats reports the bytes.
// Not wired into jobs or the CLI (yet): callers pick it explicitly.
#pragma once
#include <cstdint>
#include <functional>

#include "core/cancel.h"
#include "loftq/decompose.h"

namespace loftq {

struct CudaDecomposeStats {
    size_t device_bytes = 0;  // all device allocations of the call (buffers + cuSOLVER workspace)
    size_t pinned_bytes = 0;  // page-locked host staging buffer
    double upload_seconds = 0, download_seconds = 0;
};

// Throws loftq::Error without a usable device (cuda_available) or on any failed CUDA, cuBLAS or
// cuSOLVER call; Cancelled when the token is set at a step boundary. Uses device 0.
Decomposition loftq_decompose_cuda(const float* W_host, int64_t m, int64_t n, const WeightSettings& s,
                                   const SvdOptions& svd, const std::function<void(const StepReport&)>& on_step = {},
                                   const CancelToken* cancel = nullptr, CudaDecomposeStats* stats = nullptr);

}  // namespace loftq
