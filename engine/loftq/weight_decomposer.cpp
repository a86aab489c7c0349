// weight_decomposer.cpp: see weight_decomposer.h.
#include "loftq/weight_decomposer.h"

#include <utility>

#include "core/big_alloc.h"

#include "core/error.h"
#include "device/compute_device.h"
#include "device/cuda_plugin.h"

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
        return loftq_decompose(W, m, n, s, svd, threads_, on_step, cancel, input_, &scratch_);
    }
    void recycle(Decomposition&& d) override { scratch_.recycle(std::move(d)); }
    void set_input_stats(const InputStats* input) override { input_ = input; }

private:
    int threads_;
    const InputStats* input_ = nullptr;
    BigVector<float> buf_;          // W as read: no zero fill, huge pages (core/big_alloc.h)
    DecomposeScratch scratch_;      // reused from weight to weight
};

}  // namespace

std::unique_ptr<WeightDecomposer> make_cpu_decomposer(int threads) { return std::make_unique<CpuDecomposer>(threads); }

namespace {
const CudaPluginApi& plugin_or_throw() {
    std::string why;
    const CudaPluginApi* api = cuda_plugin(&why);
    if (!api) throw Error("CUDA LoftQ: " + why);
    return *api;
}
}  // namespace

std::unique_ptr<WeightDecomposer> make_cuda_decomposer() {
    return std::unique_ptr<WeightDecomposer>(plugin_or_throw().new_decomposer());
}

size_t cuda_decompose_estimate(int64_t m, int64_t n, const WeightSettings& s, int oversample) {
    const CudaPluginApi* api = cuda_plugin();
    return api ? api->decompose_estimate(m, n, s, oversample) : 0;
}

size_t cuda_free_bytes() {
    const CudaPluginApi* api = cuda_plugin();
    return api && cuda_status().available ? api->free_bytes() : 0;
}

}  // namespace loftq
