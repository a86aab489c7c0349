// adamw.cpp: see adamw.h.
#include "train/adamw.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace loftq {

double LrSchedule::at(int step) const {
    const double min_lr = min_lr_ratio * lr;
    if (warmup > 0 && step < warmup) return lr * double(step + 1) / double(warmup);
    const int decay_steps = steps - warmup;
    if (decay_steps <= 0) return lr;
    double ratio = double(step - warmup) / double(decay_steps);
    ratio = std::clamp(ratio, 0.0, 1.0);
    const double coeff = 0.5 * (1.0 + std::cos(M_PI * ratio));
    return min_lr + coeff * (lr - min_lr);
}

double clip_grad_norm(const std::vector<TrainableTensor>& params, double max_norm) {
    double ss = 0;
    for (const auto& t : params) {
        const float* g = t.grad;
        const int64_t n = t.numel();
        for (int64_t i = 0; i < n; ++i) ss += double(g[i]) * double(g[i]);
    }
    const double norm = std::sqrt(ss);
    if (max_norm > 0 && std::isfinite(norm) && norm > max_norm) {
        const float c = float(max_norm / (norm + 1e-6));
        for (const auto& t : params) {
            float* g = t.grad;
            const int64_t n = t.numel();
            for (int64_t i = 0; i < n; ++i) g[i] *= c;
        }
    }
    return norm;
}

AdamW::AdamW(const std::vector<TrainableTensor>& params, AdamWParams p) : p_(p) {
    m_.reserve(params.size());
    v_.reserve(params.size());
    for (const auto& t : params) {
        m_.emplace_back(size_t(t.numel()), 0.f);
        v_.emplace_back(size_t(t.numel()), 0.f);
    }
}

void AdamW::step(const std::vector<TrainableTensor>& params, double lr) {
    if (params.size() != m_.size()) throw Error("AdamW: parameter list changed size since the optimizer was created");
    ++t_;
    const double b1 = p_.beta1, b2 = p_.beta2;
    const double bc1 = 1.0 - std::pow(b1, double(t_)), bc2 = 1.0 - std::pow(b2, double(t_));
    const double decay = 1.0 - lr * p_.weight_decay;
    for (size_t k = 0; k < params.size(); ++k) {
        const TrainableTensor& t = params[k];
        if (size_t(t.numel()) != m_[k].size())
            throw Error("", t.name, "AdamW: tensor size changed since the optimizer was created");
        float* w = t.value;
        const float* g = t.grad;
        float* m = m_[k].data();
        float* v = v_[k].data();
        const int64_t n = t.numel();
        for (int64_t i = 0; i < n; ++i) {
            const double gi = g[i];
            const double mi = b1 * double(m[i]) + (1.0 - b1) * gi;
            const double vi = b2 * double(v[i]) + (1.0 - b2) * gi * gi;
            m[i] = float(mi);
            v[i] = float(vi);
            const double mhat = mi / bc1, vhat = vi / bc2;
            w[i] = float(double(w[i]) * decay - lr * mhat / (std::sqrt(vhat) + p_.eps));
        }
    }
}

}  // namespace loftq
