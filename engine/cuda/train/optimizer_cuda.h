// optimizer_cuda.h: AdamW on the device over a LlamaCuda's LoRA block, the device counterpart of
// train/adamw.h (AdamW::step and clip_grad_norm): moments m, v (fp32, same layout as the LoRA
// block, so one cuda_ops::adamw_update call updates every tensor: the update is elementwise), the
// global gradient norm from cuda_ops::sum_sq_accumulate (float64) with the square root and the
// clipping decision on the host, clipping as cuda_ops::scale_inplace (g *= c in fp32, as
// clip_grad_norm does, so that AdamW then sees the same gradients as on the CPU), and the
// micro-batch accumulation buffer (acc += w g by cuBLAS axpy, then g = acc).
// Bit-level: adamw_update rounds once from float64, like AdamW::step, so equal inputs give equal
// bits; the norm's summation order differs from the CPU's (float64 either way).
// Moments go to and from the host for checkpoints (per trainable tensor, in device_trainable()
// order, which is LlamaCpu's trainable() order).
// Leaves out: fused multi-tensor kernels (one tensor of all LoRA values already), 8-bit moments.
#pragma once
#include <cstdint>
#include <vector>

#include "cuda/blas_cuda.h"
#include "cuda/train/llama_cuda.h"

namespace loftq {

struct CudaAdamWParams {
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class CudaAdamW {
public:
    // accumulate: allocate the micro-batch accumulation buffer (accum > 1). Device bytes are
    // reported to the model (track_external), so memory() counts them.
    CudaAdamW(LlamaCuda& model, const CudaAdamWParams& p, bool accumulate);
    ~CudaAdamW();
    CudaAdamW(const CudaAdamW&) = delete;
    CudaAdamW& operator=(const CudaAdamW&) = delete;

    void zero_accum();              // acc = 0
    void accumulate(float w);       // acc += w * grad
    void take_accum();              // grad = acc
    // Global L2 norm of the gradients (float64 sums); scales them by max_norm / (norm + 1e-6) when
    // max_norm > 0 and the norm exceeds it. Returns the norm before clipping (synchronizes).
    double clip_grad_norm(double max_norm);
    // One AdamW update of every LoRA value at learning rate lr; increments t().
    void step(double lr);

    int64_t t() const { return t_; }
    void set_t(int64_t t) { t_ = t; }
    // Host copies, one vector per device_trainable() tensor (resized as needed).
    void download_moments(std::vector<std::vector<float>>& m, std::vector<std::vector<float>>& v) const;
    void upload_moments(const std::vector<std::vector<float>>& m, const std::vector<std::vector<float>>& v);
    uint64_t bytes() const { return m_.bytes() + v_.bytes() + acc_.bytes() + ss_.bytes(); }

private:
    LlamaCuda& model_;
    CudaAdamWParams p_;
    int64_t t_ = 0;
    int64_t n_ = 0;
    DeviceArray<float> m_, v_, acc_;
    DeviceArray<double> ss_;       // the sum of squares (one double)
    std::vector<int64_t> offsets_;  // per tensor: offset in the LoRA block
    std::vector<int64_t> sizes_;
};

}  // namespace loftq
