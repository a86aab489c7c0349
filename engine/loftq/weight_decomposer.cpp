// weight_decomposer.cpp: see weight_decomposer.h.
#include "loftq/weight_decomposer.h"

#include <vector>

#include "core/error.h"
#include "loftq/compute_device.h"
#ifdef LOFTQ_WITH_CUDA
#include <cuda_runtime_api.h>

#include "cuda/decompose_cuda.h"
#endif

namespace loftq {

namespace {
class CpuDecomposer final : public WeightDecomposer {
public:
    explicit CpuDecomposer(int threads) : threads_(threads) {}
    float* buffer(size_t count) override {
        buf_.resize(count);
        return buf_.data();
    }
    Decomposition run(const float* W, int64_t m, int64_t n, const WeightSettings& s, const SvdOptions& svd,
                      const std::function<void(const StepReport&)>& on_step, const CancelToken* cancel) override {
        return loftq_decompose(W, m, n, s, svd, threads_, on_step, cancel);
    }

private:
    int threads_;
    std::vector<float> buf_;
};

#ifdef LOFTQ_WITH_CUDA
class GpuDecomposer final : public WeightDecomposer {
public:
    float* buffer(size_t count) override { return dec_.staging(count); }
    Decomposition run(const float* W, int64_t m, int64_t n, const WeightSettings& s, const SvdOptions& svd,
                      const std::function<void(const StepReport&)>& on_step, const CancelToken* cancel) override {
        return dec_.run(W, m, n, s, svd, on_step, cancel);
    }
    size_t peak_device_bytes() const override { return dec_.peak_device_bytes(); }
    size_t pinned_bytes() const override { return dec_.pinned_bytes(); }

private:
    CudaDecomposer dec_;
};
#endif
}  // namespace

std::unique_ptr<WeightDecomposer> make_cpu_decomposer(int threads) { return std::make_unique<CpuDecomposer>(threads); }

std::unique_ptr<WeightDecomposer> make_cuda_decomposer() {
#ifdef LOFTQ_WITH_CUDA
    return std::make_unique<GpuDecomposer>();
#else
    throw Error("CUDA LoftQ: " + cuda_status().why_not);
#endif
}

size_t cuda_decompose_estimate(int64_t m, int64_t n, const WeightSettings& s, int oversample) {
#ifdef LOFTQ_WITH_CUDA
    return CudaDecomposer::estimate_bytes(m, n, s, oversample);
#else
    return 0;
#endif
}

size_t cuda_free_bytes() {
#ifdef LOFTQ_WITH_CUDA
    if (!cuda_status().available) return 0;
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return free_b;
#else
    return 0;
#endif
}

}  // namespace loftq
