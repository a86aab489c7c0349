// weight_decomposer.h: one job worker's decomposition engine — loftq_decompose on the CPU, or a
// CudaDecomposer (cuda/decompose_cuda.h) on its own CUDA stream — behind one interface, so that
// job.cpp runs the same loop (read W, decompose with events and cancel points, export) on
// either device. The CUDA implementation lives in the CUDA plugin (device/cuda_plugin.h); without it
// make_cuda_decomposer throws (with the reason) and the estimates are 0.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>

#include "core/cancel.h"
#include "loftq/decompose.h"

namespace loftq {

class WeightDecomposer {
public:
    virtual ~WeightDecomposer() = default;
    // Where the worker reads W (count floats) before run(): pinned host memory for CUDA (the
    // upload then needs no extra copy), a plain vector on the CPU. Valid until the next call.
    virtual float* buffer(size_t count) = 0;
    virtual Decomposition run(const float* W, int64_t m, int64_t n, const WeightSettings& s, const SvdOptions& svd,
                              const std::function<void(const StepReport&)>& on_step, const CancelToken* cancel) = 0;
    // Hands a consumed result back, so that its large buffers serve the next run (the CPU
    // reuses them; others drop them).
    virtual void recycle(Decomposition&& d) { (void)d; }
    // Input statistics for the output errors of the next runs (null = none). The CPU computes
    // them; the CUDA decomposer does not (its reports keep -1).
    virtual void set_input_stats(const InputStats* input) { (void)input; }
    virtual size_t peak_device_bytes() const { return 0; }
    virtual size_t pinned_bytes() const { return 0; }
};

// threads: the quantizer's and randomized SVD's threads inside one weight (loftq_decompose).
std::unique_ptr<WeightDecomposer> make_cpu_decomposer(int threads);
// One stream on device 0; throws loftq::Error when the build has no CUDA or no device is usable.
std::unique_ptr<WeightDecomposer> make_cuda_decomposer();

// CudaDecomposer::estimate_bytes (0 without CUDA) and the device's free memory now (0 without).
size_t cuda_decompose_estimate(int64_t m, int64_t n, const WeightSettings& s, int oversample);
size_t cuda_free_bytes();

}  // namespace loftq
