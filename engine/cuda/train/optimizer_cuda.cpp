// optimizer_cuda.cpp: see optimizer_cuda.h.
#include "cuda/train/optimizer_cuda.h"

#include <cmath>

#include "core/error.h"
#include "cuda/cuda_check.h"

namespace loftq {

CudaAdamW::CudaAdamW(LlamaCuda& model, const CudaAdamWParams& p, bool accumulate)
    : model_(model), p_(p), n_(model.lora_count()) {
    const float* base = model.lora_values_device();
    for (const TrainableTensor& t : model.device_trainable()) {
        offsets_.push_back(int64_t(t.value - base));
        sizes_.push_back(t.numel());
    }
    try {
        m_.reset(size_t(n_));
        v_.reset(size_t(n_));
        if (accumulate) acc_.reset(size_t(n_));
        ss_.reset(1);
    } catch (const Error& e) {
        throw Error(std::string("CUDA: cannot allocate the AdamW moments on the device (") + e.what() +
                    "); try a lower rank or recomputation on");
    }
    cudaStream_t st = model.stream();
    if (n_) {
        LOFTQ_CUDA_CHECK(cudaMemsetAsync(m_.p, 0, size_t(n_) * 4, st));
        LOFTQ_CUDA_CHECK(cudaMemsetAsync(v_.p, 0, size_t(n_) * 4, st));
    }
    model_.track_external(int64_t(bytes()));
}

CudaAdamW::~CudaAdamW() {
    (void)cudaStreamSynchronize(model_.stream());
    model_.track_external(-int64_t(bytes()));
}

void CudaAdamW::zero_accum() {
    if (!acc_.p) throw Error("CudaAdamW: built without an accumulation buffer");
    if (n_) LOFTQ_CUDA_CHECK(cudaMemsetAsync(acc_.p, 0, size_t(n_) * 4, model_.stream()));
}

void CudaAdamW::accumulate(float w) {
    if (!acc_.p) throw Error("CudaAdamW: built without an accumulation buffer");
    if (!n_) return;
    LOFTQ_CUBLAS_CHECK(cublasSaxpy_64(model_.blas(), n_, &w, model_.lora_grads_device(), 1, acc_.p, 1));
}

void CudaAdamW::take_accum() {
    if (!acc_.p) throw Error("CudaAdamW: built without an accumulation buffer");
    if (n_)
        LOFTQ_CUDA_CHECK(cudaMemcpyAsync(model_.lora_grads_device(), acc_.p, size_t(n_) * 4, cudaMemcpyDeviceToDevice,
                                         model_.stream()));
}

double CudaAdamW::clip_grad_norm(double max_norm) {
    if (!n_) return 0.0;
    cudaStream_t st = model_.stream();
    LOFTQ_CUDA_CHECK(cudaMemsetAsync(ss_.p, 0, sizeof(double), st));
    cuda_ops::sum_sq_accumulate(ss_.p, model_.lora_grads_device(), n_, st);
    double ss = 0;
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(&ss, ss_.p, sizeof(double), cudaMemcpyDeviceToHost, st));
    LOFTQ_CUDA_CHECK(cudaStreamSynchronize(st));
    const double norm = std::sqrt(ss);
    if (max_norm > 0 && std::isfinite(norm) && norm > max_norm)
        cuda_ops::scale_inplace(model_.lora_grads_device(), n_, float(max_norm / (norm + 1e-6)), st);
    return norm;
}

void CudaAdamW::step(double lr) {
    ++t_;
    if (!n_) return;
    cuda_ops::AdamWStep s;
    s.lr = lr;
    s.beta1 = p_.beta1;
    s.beta2 = p_.beta2;
    s.eps = p_.eps;
    s.weight_decay = p_.weight_decay;
    s.bc1 = 1.0 - std::pow(p_.beta1, double(t_));   // as AdamW::step
    s.bc2 = 1.0 - std::pow(p_.beta2, double(t_));
    s.grad_scale = 1.0;                              // clipping already scaled the gradients
    cuda_ops::adamw_update(model_.lora_values_device(), model_.lora_grads_device(), m_.p, v_.p, n_, s, model_.stream());
}

void CudaAdamW::download_moments(std::vector<std::vector<float>>& m, std::vector<std::vector<float>>& v) const {
    std::vector<float> hm(static_cast<size_t>(n_)), hv(static_cast<size_t>(n_));
    cudaStream_t st = model_.stream();
    if (n_) {
        LOFTQ_CUDA_CHECK(cudaMemcpyAsync(hm.data(), m_.p, size_t(n_) * 4, cudaMemcpyDeviceToHost, st));
        LOFTQ_CUDA_CHECK(cudaMemcpyAsync(hv.data(), v_.p, size_t(n_) * 4, cudaMemcpyDeviceToHost, st));
        LOFTQ_CUDA_CHECK(cudaStreamSynchronize(st));
    }
    m.resize(offsets_.size());
    v.resize(offsets_.size());
    for (size_t k = 0; k < offsets_.size(); ++k) {
        m[k].assign(hm.begin() + offsets_[k], hm.begin() + offsets_[k] + sizes_[k]);
        v[k].assign(hv.begin() + offsets_[k], hv.begin() + offsets_[k] + sizes_[k]);
    }
}

void CudaAdamW::upload_moments(const std::vector<std::vector<float>>& m, const std::vector<std::vector<float>>& v) {
    if (m.size() != offsets_.size() || v.size() != offsets_.size())
        throw Error("CudaAdamW: moments for " + std::to_string(m.size()) + " tensors, the model has " +
                    std::to_string(offsets_.size()));
    std::vector<float> hm(static_cast<size_t>(n_)), hv(static_cast<size_t>(n_));
    for (size_t k = 0; k < offsets_.size(); ++k) {
        if (int64_t(m[k].size()) != sizes_[k] || int64_t(v[k].size()) != sizes_[k])
            throw Error("CudaAdamW: moment " + std::to_string(k) + " has the wrong size");
        std::copy(m[k].begin(), m[k].end(), hm.begin() + offsets_[k]);
        std::copy(v[k].begin(), v[k].end(), hv.begin() + offsets_[k]);
    }
    cudaStream_t st = model_.stream();
    if (n_) {
        LOFTQ_CUDA_CHECK(cudaMemcpyAsync(m_.p, hm.data(), size_t(n_) * 4, cudaMemcpyHostToDevice, st));
        LOFTQ_CUDA_CHECK(cudaMemcpyAsync(v_.p, hv.data(), size_t(n_) * 4, cudaMemcpyHostToDevice, st));
        LOFTQ_CUDA_CHECK(cudaStreamSynchronize(st));
    }
}

}  // namespace loftq
