// cuda_plugin_module.cpp: the table of libloftq_cuda.so (device/cuda_plugin.h): the engine's
// device interfaces implemented over engine/cuda — WeightDecomposer over CudaDecomposer,
// DeviceLlama is LlamaCuda itself, Optimizer over CudaAdamW. Exceptions (loftq::Error,
// Cancelled) cross back into the program as they are.
#include <cuda_runtime_api.h>

#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "cuda/decompose_cuda.h"
#include "cuda/device.h"
#include "cuda/train/llama_cuda.h"
#include "cuda/train/optimizer_cuda.h"
#include "device/cuda_plugin.h"
#include "loftq/weight_decomposer.h"
#include "train/optimizer.h"

namespace loftq {
namespace {

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

// AdamW on the device; host copies of the moments only for checkpoints (optimizer.h).
class CudaOptimizer final : public Optimizer {
public:
    CudaOptimizer(LlamaCuda& model, const AdamWParams& p, bool accumulate)
        : model_(model), host_(model.trainable(), p), dev_(model, {p.beta1, p.beta2, p.eps, p.weight_decay}, accumulate) {}
    void begin_accumulation() override { dev_.zero_accum(); }
    void accumulate(float w) override { dev_.accumulate(w); }
    void end_accumulation() override { dev_.take_accum(); }
    // Through host memory and the host's transport (MPI): the LoRA gradients are small. A
    // device-side reduction (NCCL) would skip the two copies; see docs/DISTRIBUTED.md.
    void sum_gradients(const std::function<void(float*, size_t)>& sum) override { model_.sum_lora_grads(sum); }
    double clip_grad_norm(double max_norm) override { return dev_.clip_grad_norm(max_norm); }
    void step(double lr) override { dev_.step(lr); }
    AdamW& host_state() override { return host_; }
    void sync_to_host() override {
        model_.download_lora();
        dev_.download_moments(host_.m(), host_.v());
        host_.set_t(dev_.t());
    }
    void sync_to_device() override {
        model_.upload_lora();
        dev_.upload_moments(host_.m(), host_.v());
        dev_.set_t(host_.t());
    }

private:
    LlamaCuda& model_;
    AdamW host_;
    CudaAdamW dev_;
};

bool available(std::string* why) { return cuda_available(why); }

size_t free_bytes() {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return free_b;
}

WeightDecomposer* new_decomposer() { return new GpuDecomposer(); }

size_t decompose_estimate(int64_t m, int64_t n, const WeightSettings& s, int oversample) {
    return CudaDecomposer::estimate_bytes(m, n, s, oversample);
}

// The engine's settings (model/device_llama.h) in the CUDA model's own terms.
cuda_ops::GemmMath gemm_math(GemmMode g) {
    switch (g) {
        case GemmMode::Tf32: return cuda_ops::GemmMath::Tf32;
        case GemmMode::Fp32: return cuda_ops::GemmMath::Fp32;
        case GemmMode::Bf16: return cuda_ops::GemmMath::Bf16;
    }
    throw Error("CUDA: unknown GEMM mode " + std::to_string(int(g)));
}
Recompute recompute(RecomputeMode r) {
    switch (r) {
        case RecomputeMode::Auto: return Recompute::Auto;
        case RecomputeMode::On: return Recompute::On;
        case RecomputeMode::Off: return Recompute::Off;
    }
    throw Error("CUDA: unknown recompute mode " + std::to_string(int(r)));
}

DeviceLlama* new_llama(LlamaCpu& cpu, const DeviceTrainSettings& s) {
    CudaTrainOptions co;
    co.math = gemm_math(s.gemm);
    co.recompute = recompute(s.recompute);
    co.plan_batch = s.plan_batch;
    co.plan_seq = s.plan_seq;
    co.accum = s.accum;
    return LlamaCuda::from_cpu(cpu, co).release();
}

Optimizer* new_optimizer(DeviceLlama& model, const AdamWParams& p, bool accumulate) {
    auto* m = dynamic_cast<LlamaCuda*>(&model);
    if (!m) throw Error("CUDA optimizer: the model is not on the CUDA device");
    return new CudaOptimizer(*m, p, accumulate);
}

}  // namespace
}  // namespace loftq

extern "C" __attribute__((visibility("default"))) const loftq::CudaPluginApi* loftq_cuda_plugin_api() {
    static const loftq::CudaPluginApi api = [] {
        loftq::CudaPluginApi a;
        a.abi = loftq::kCudaPluginAbi;
        a.available = &loftq::available;
        a.device_name = &loftq::cuda_device_name;
        a.free_bytes = &loftq::free_bytes;
        a.new_decomposer = &loftq::new_decomposer;
        a.decompose_estimate = &loftq::decompose_estimate;
        a.new_llama = &loftq::new_llama;
        a.new_optimizer = &loftq::new_optimizer;
        return a;
    }();
    return &api;
}
