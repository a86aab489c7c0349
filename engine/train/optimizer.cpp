// optimizer.cpp: see optimizer.h.
#include "train/optimizer.h"

#include <algorithm>

#include "core/error.h"
#ifdef LOFTQ_WITH_CUDA
#include "cuda/train/llama_cuda.h"
#include "cuda/train/optimizer_cuda.h"
#endif

namespace loftq {

namespace {

class CpuOptimizer final : public Optimizer {
public:
    CpuOptimizer(const std::vector<TrainableTensor>& params, const AdamWParams& p, bool accumulate)
        : params_(params), adam_(params, p) {
        if (accumulate)
            for (const auto& t : params_) acc_.emplace_back(size_t(t.numel()), 0.f);
    }
    void begin_accumulation() override {
        for (auto& a : acc_) std::fill(a.begin(), a.end(), 0.f);
    }
    void accumulate(float w) override {
        if (acc_.size() != params_.size()) throw Error("optimizer: built without an accumulation buffer");
        for (size_t k = 0; k < params_.size(); ++k) {
            float* a = acc_[k].data();
            const float* g = params_[k].grad;
            for (int64_t e = 0; e < params_[k].numel(); ++e) a[e] += w * g[e];
        }
    }
    void end_accumulation() override {
        if (acc_.size() != params_.size()) throw Error("optimizer: built without an accumulation buffer");
        for (size_t k = 0; k < params_.size(); ++k) std::copy(acc_[k].begin(), acc_[k].end(), params_[k].grad);
    }
    double clip_grad_norm(double max_norm) override { return loftq::clip_grad_norm(params_, max_norm); }
    void step(double lr) override { adam_.step(params_, lr); }
    AdamW& host_state() override { return adam_; }
    void sync_to_host() override {}
    void sync_to_device() override {}

private:
    std::vector<TrainableTensor> params_;
    AdamW adam_;
    std::vector<std::vector<float>> acc_;
};

#ifdef LOFTQ_WITH_CUDA
class CudaOptimizer final : public Optimizer {
public:
    CudaOptimizer(LlamaCuda& model, const AdamWParams& p, bool accumulate)
        : model_(model), host_(model.trainable(), p), dev_(model, {p.beta1, p.beta2, p.eps, p.weight_decay}, accumulate) {}
    void begin_accumulation() override { dev_.zero_accum(); }
    void accumulate(float w) override { dev_.accumulate(w); }
    void end_accumulation() override { dev_.take_accum(); }
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
    AdamW host_;      // host copies of the moments (checkpoints); the live ones are on the device
    CudaAdamW dev_;
};
#endif

}  // namespace

std::unique_ptr<Optimizer> make_cpu_optimizer(const std::vector<TrainableTensor>& params, const AdamWParams& p,
                                              bool accumulate) {
    return std::make_unique<CpuOptimizer>(params, p, accumulate);
}

#ifdef LOFTQ_WITH_CUDA
std::unique_ptr<Optimizer> make_cuda_optimizer(LlamaCuda& model, const AdamWParams& p, bool accumulate) {
    return std::make_unique<CudaOptimizer>(model, p, accumulate);
}
#endif

}  // namespace loftq
