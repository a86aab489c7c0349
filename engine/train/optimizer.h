// optimizer.h: what the training loop (trainer.cpp) does with the LoRA gradients between the
// backward passes and the next step, behind one interface so that the loop is the same on the
// CPU and on the GPU: micro-batch accumulation (sum of w_i grad_i), global-norm clipping, the AdamW
// update, and the host view checkpoints need.
//   CPU:  AdamW (adamw.h) and clip_grad_norm over model->trainable(), exactly the arithmetic the
//         trainer has always done (resumed runs stay bit-identical to uninterrupted ones).
//   CUDA: CudaAdamW (cuda/train/optimizer_cuda.h) over a LlamaCuda's device LoRA block; the values
//         and moments come to the host only for checkpoints and adapters (sync_to_host) and go
//         back on resume (sync_to_device). Made by the CUDA plugin (device/cuda_plugin.h).
// Leaves out: other optimizers (the interface is AdamW-shaped on purpose: checkpoints store m, v).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "model/llama.h"
#include "train/adamw.h"

namespace loftq {

class Optimizer {
public:
    virtual ~Optimizer() = default;

    // Gradient accumulation over a step's micro-batches (accum > 1, `accumulate` at creation):
    // begin zeroes the sum, accumulate(w) adds w * the model's current gradients (after a
    // micro-batch's backward), end copies the sum into the gradients.
    virtual void begin_accumulation() = 0;
    virtual void accumulate(float w) = 0;
    virtual void end_accumulation() = 0;
    // Data-parallel runs (train/data_parallel.h): hands every LoRA gradient, packed into one
    // buffer in trainable() order, to `sum` (which sums it across ranks in place), then puts the
    // sums back. CPU: the host gradients; CUDA: the device block, through host memory.
    virtual void sum_gradients(const std::function<void(float*, size_t)>& sum) = 0;
    // Global L2 norm of the gradients before clipping; clipped in place to max_norm (> 0).
    virtual double clip_grad_norm(double max_norm) = 0;
    // One AdamW update at learning rate lr.
    virtual void step(double lr) = 0;

    // Checkpoints: after sync_to_host(), the model's trainable() values and host_state()'s moments
    // and t are current; after changing them (resume), sync_to_device() puts them back. No-ops on
    // the CPU, where they are the live state.
    virtual AdamW& host_state() = 0;
    virtual void sync_to_host() = 0;
    virtual void sync_to_device() = 0;
};

// AdamW on the CPU over `params` (the model's trainable(), host memory).
std::unique_ptr<Optimizer> make_cpu_optimizer(const std::vector<TrainableTensor>& params, const AdamWParams& p,
                                              bool accumulate);


}  // namespace loftq
