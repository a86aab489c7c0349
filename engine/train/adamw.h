// adamw.h: the optimizer of LoRA fine-tuning: AdamW with decoupled weight decay (Loshchilov &
// Hutter; PyTorch's torch.optim.AdamW update), the learning-rate schedule (linear warm-up, then
// cosine decay to min_lr_ratio * lr, as llm.c's train_gpt2 does), and global-norm gradient
// clipping (torch.nn.utils.clip_grad_norm_). Moments are fp32, one pair per trainable tensor;
// the arithmetic of one update is done in float64 and rounded once, so the result depends only
// on (value, grad, m, v, step): a resumed run continues bit-identically.
// Leaves out: parameter groups, AMSGrad, fused/vectorized kernels (LoRA tensors are small).
#pragma once
#include <cstdint>
#include <vector>

#include "model/llama.h"

namespace loftq {

struct AdamWParams {
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// Learning rate of the update made at 0-based `step` of `steps`:
//   step < warmup: lr * (step + 1) / warmup;
//   after: min + 0.5 (1 + cos(pi * (step - warmup) / (steps - warmup))) (lr - min), min = ratio * lr.
struct LrSchedule {
    double lr = 2e-4, min_lr_ratio = 0.1;
    int warmup = 0, steps = 1;
    double at(int step) const;
};

// Global L2 norm of all gradients (float64 accumulation). If max_norm > 0 and the norm exceeds
// it, every gradient is scaled by max_norm / (norm + 1e-6) (PyTorch's rule). Returns the norm
// before clipping (NaN/Inf passes through untouched, for the caller to report).
double clip_grad_norm(const std::vector<TrainableTensor>& params, double max_norm);

class AdamW {
public:
    AdamW() = default;
    explicit AdamW(const std::vector<TrainableTensor>& params, AdamWParams p = {});

    // One update of every tensor with its current grad at learning rate lr; increments t().
    //   p <- p - lr wd p;  m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    //   p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    void step(const std::vector<TrainableTensor>& params, double lr);

    int64_t t() const { return t_; }               // updates made so far
    void set_t(int64_t t) { t_ = t; }
    const AdamWParams& params() const { return p_; }
    // Moments, same order and sizes as the params given to the constructor.
    std::vector<std::vector<float>>& m() { return m_; }
    std::vector<std::vector<float>>& v() { return v_; }
    const std::vector<std::vector<float>>& m() const { return m_; }
    const std::vector<std::vector<float>>& v() const { return v_; }

private:
    AdamWParams p_;
    int64_t t_ = 0;
    std::vector<std::vector<float>> m_, v_;
};

}  // namespace loftq
