// optimizer.cpp: see optimizer.h.
#include "train/optimizer.h"

#include <algorithm>

#include "core/error.h"

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
    void sum_gradients(const std::function<void(float*, size_t)>& sum) override {
        size_t n = 0;
        for (const auto& t : params_) n += size_t(t.numel());
        packed_.resize(n);
        size_t at = 0;
        for (const auto& t : params_) at = size_t(std::copy(t.grad, t.grad + t.numel(), packed_.data() + at) - packed_.data());
        sum(packed_.data(), n);
        at = 0;
        for (const auto& t : params_) {
            std::copy(packed_.data() + at, packed_.data() + at + t.numel(), t.grad);
            at += size_t(t.numel());
        }
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
    std::vector<float> packed_;  // sum_gradients' buffer
};


}  // namespace

std::unique_ptr<Optimizer> make_cpu_optimizer(const std::vector<TrainableTensor>& params, const AdamWParams& p,
                                              bool accumulate) {
    return std::make_unique<CpuOptimizer>(params, p, accumulate);
}


}  // namespace loftq
