// llama_cuda_forward.cpp: LlamaCuda's forward and backward: the order of the device ops
// (cuda/train/ops_cuda.h) over the buffers that llama_cuda.cpp carves, a site's weight (dequantized
// per use when packed) and LoRA factors as one linear, and the two cuBLAS GEMMs of the LM head.
// The forward and backward below are LlamaCpu::forward / backward (model/llama_cpu.cpp) line by
// line; where they differ, a comment says why. Every CUDA and cuBLAS call is checked (file, line,
// call, error).
#include "cuda/train/llama_cuda.h"

#include <algorithm>
#include <climits>
#include <string>
#include <utility>

#include "core/error.h"
#include "cuda/cuda_check.h"

namespace loftq {

namespace {

// The LM head's GEMMs (its weight stays fp32 in every mode): TF32 under Tf32 and Bf16.
cublasComputeType_t compute_type(cuda_ops::GemmMath m) {
    return m == cuda_ops::GemmMath::Fp32 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// a layer's activations, a site's weight and LoRA as one linear, the LM head's GEMMs

LlamaCuda::LayerActs LlamaCuda::acts(int l) const {
    const int64_t N = int64_t(B_) * T_, C = cfg_.dim, KV = cfg_.kv_dim(), F = cfg_.hidden, H = cfg_.n_heads;
    const int64_t i = recompute_ ? 0 : l;  // recompute: one layer's buffers, reused by every layer
    LayerActs a;
    a.res = res_ + l * N * C;
    a.next = res_ + (l + 1) * N * C;
    a.mid = mid_ + i * N * C;
    a.rstd1 = rstd1_ + i * N;
    a.rstd2 = rstd2_ + i * N;
    a.q = q_ + i * N * C;
    a.k = k_ + i * N * KV;
    a.v = v_ + i * N * KV;
    a.lse = alse_ + i * N * H;
    a.y = y_ + i * N * C;
    a.g = g_ + i * N * F;
    a.u = u_ + i * N * F;
    a.xa = xa_ + N * (recompute_ ? 0 : xa_layer_[size_t(l)]);
    return a;
}

float* LlamaCuda::xa(const LayerActs& a, int l, LoraSite s) const {
    return a.xa + int64_t(B_) * T_ * xa_site_[size_t(l) * kLoraSites + size_t(s)];
}

const float* LlamaCuda::site_weight(int l, LoraSite s) {
    Site& st = sites_[size_t(l) * kLoraSites + size_t(s)];
    if (!packed_) return st.W.p;
    // Dequantize per use into this kind's scratch, unless it already holds layer l (all work is
    // ordered on one stream, so a later dequantization never overtakes an earlier GEMM's read).
    float* out = scratch_[int(s)].p;
    if (scratch_layer_[int(s)] != l) {
        cuda_ops::dequantize_packed(out, st.codes.p, st.scales.p, st.kind, st.block, st.n, stream_);
        scratch_layer_[int(s)] = l;
    }
    return out;
}

const void* LlamaCuda::site_weight_bf16(int l, LoraSite s) {
    Site& st = sites_[size_t(l) * kLoraSites + size_t(s)];
    if (!packed_) return st.Wb.p;
    uint16_t* out = scratch_bf16_[int(s)].p;  // as site_weight
    if (scratch_layer_[int(s)] != l) {
        cuda_ops::dequantize_packed_bf16(out, st.codes.p, st.scales.p, st.kind, st.block, st.n, stream_);
        scratch_layer_[int(s)] = l;
    }
    return out;
}

cuda_ops::LoraLinear LlamaCuda::linear(int l, LoraSite s) {
    const Slot& sl = slot(l, s);
    cuda_ops::LoraLinear L;
    if (opt_.math == cuda_ops::GemmMath::Bf16) {
        L.W_bf16 = site_weight_bf16(l, s);
        L.bf16_scratch = act_bf16_.p;
    } else {
        L.W = site_weight(l, s);
    }
    if (cfg_.qkv_bias && (s == LoraSite::Q || s == LoraSite::K || s == LoraSite::V)) {
        const int64_t C = cfg_.dim, KV = cfg_.kv_dim();
        const float* b = bias_.p + int64_t(l) * (C + 2 * KV);
        L.bias = s == LoraSite::Q ? b : s == LoraSite::K ? b + C : b + C + KV;
    }
    L.A = sl.rank ? lora_.p + sl.a : nullptr;
    L.B = sl.rank ? lora_.p + sl.b : nullptr;
    L.in = sl.in;
    L.out = sl.out;
    L.r = sl.rank;
    L.scale = sl.scale;
    return L;
}

void LlamaCuda::head_gemm_forward(float* logits, const float* xn, int64_t rows) {
    // logits (rows x V) = xn (rows x C) head^T; column-major: logits^T (V x rows) = head^T^T xn^T.
    const float one = 1.f, zero = 0.f;
    const float* W = cfg_.tied_embeddings ? embed_.p : lm_head_.p;
    const int V = cfg_.vocab, C = cfg_.dim;
    LOFTQ_CUBLAS_CHECK(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, V, int(rows), C, &one, W, CUDA_R_32F, C, xn, CUDA_R_32F,
                                    C, &zero, logits, CUDA_R_32F, V, compute_type(opt_.math), CUBLAS_GEMM_DEFAULT));
}

void LlamaCuda::head_gemm_backward(float* dxn, const float* dlogits, int64_t rows) {
    // dxn (rows x C) = dlogits (rows x V) head (V x C); column-major: dxn^T = head^T dlogits^T.
    const float one = 1.f, zero = 0.f;
    const float* W = cfg_.tied_embeddings ? embed_.p : lm_head_.p;
    const int V = cfg_.vocab, C = cfg_.dim;
    LOFTQ_CUBLAS_CHECK(cublasGemmEx(blas_, CUBLAS_OP_N, CUBLAS_OP_N, C, int(rows), V, &one, W, CUDA_R_32F, C, dlogits,
                                    CUDA_R_32F, V, &zero, dxn, CUDA_R_32F, C, compute_type(opt_.math), CUBLAS_GEMM_DEFAULT));
}

// ---------------------------------------------------------------------------------------------
// forward

// One decoder layer: acts(l).next = layer(acts(l).res), keeping what backward needs in acts(l).
void LlamaCuda::layer_forward(int l) {
    const int B = B_, T = T_;
    const int64_t N = int64_t(B) * T, C = cfg_.dim, F = cfg_.hidden;
    const int H = cfg_.n_heads, KVH = cfg_.n_kv_heads, d = cfg_.head_dim();
    const cuda_ops::GemmMath m = opt_.math;
    cudaStream_t st = stream_;
    const float* attn_norm = norms_.p + int64_t(2 * l) * C;
    const float* ffn_norm = norms_.p + int64_t(2 * l + 1) * C;
    const LayerActs a = acts(l);
    // attention block: mid = res + o(attn(rope(q(xn)), rope(k(xn)), v(xn))), xn = norm(res)
    cuda_ops::rmsnorm_forward(xn_, a.rstd1, a.res, attn_norm, N, int(C), cfg_.norm_eps, st);
    cuda_ops::lora_linear_forward(blas_, a.q, xa(a, l, LoraSite::Q), xn_, N, linear(l, LoraSite::Q), m, st);
    cuda_ops::lora_linear_forward(blas_, a.k, xa(a, l, LoraSite::K), xn_, N, linear(l, LoraSite::K), m, st);
    cuda_ops::lora_linear_forward(blas_, a.v, xa(a, l, LoraSite::V), xn_, N, linear(l, LoraSite::V), m, st);
    cuda_ops::rope_forward(a.q, B, T, H, d, rope_cos_.p, rope_sin_.p, st);
    cuda_ops::rope_forward(a.k, B, T, KVH, d, rope_cos_.p, rope_sin_.p, st);
    cuda_ops::attention_forward(a.y, a.lse, a.q, a.k, a.v, B, T, H, KVH, d, st);
    cuda_ops::lora_linear_forward(blas_, a.mid, xa(a, l, LoraSite::O), a.y, N, linear(l, LoraSite::O), m, st);
    cuda_ops::add_inplace(a.mid, a.res, N * C, st);
    // MLP block: next = mid + down(silu(gate(xn)) * up(xn)), xn = norm(mid)
    cuda_ops::rmsnorm_forward(xn_, a.rstd2, a.mid, ffn_norm, N, int(C), cfg_.norm_eps, st);
    cuda_ops::lora_linear_forward(blas_, a.g, xa(a, l, LoraSite::Gate), xn_, N, linear(l, LoraSite::Gate), m, st);
    cuda_ops::lora_linear_forward(blas_, a.u, xa(a, l, LoraSite::Up), xn_, N, linear(l, LoraSite::Up), m, st);
    cuda_ops::swiglu_forward(h_, a.g, a.u, N * F, st);
    cuda_ops::lora_linear_forward(blas_, a.next, xa(a, l, LoraSite::Down), h_, N, linear(l, LoraSite::Down), m, st);
    cuda_ops::add_inplace(a.next, a.mid, N * C, st);
}

float LlamaCuda::forward(const int* tokens, const int* targets, int B, int T) {
    if (B <= 0 || T <= 0) throw Error("forward: batch " + std::to_string(B) + " x length " + std::to_string(T) + " is empty");
    const int64_t N = int64_t(B) * T, C = cfg_.dim, V = cfg_.vocab;
    if (N > int64_t(INT_MAX) / 2) throw Error("forward: batch x length " + std::to_string(N) + " is too large");
    // Range checks on the host, with the CPU ops' messages (kernels cannot throw).
    for (int64_t n = 0; n < N; ++n)
        if (tokens[n] < 0 || tokens[n] >= V)
            throw Error("", "", "token id " + std::to_string(tokens[n]) + " at position " + std::to_string(n) +
                                    " is outside the vocabulary [0, " + std::to_string(V) + ")");
    int64_t scored = 0;
    if (targets)
        for (int64_t n = 0; n < N; ++n) {
            if (targets[n] >= V)
                throw Error("", "", "target id " + std::to_string(targets[n]) + " at position " + std::to_string(n) +
                                        " is outside the vocabulary [0, " + std::to_string(V) + ")");
            scored += targets[n] >= 0;
        }
    ensure_activations(B, T);
    has_targets_ = false;
    scored_ = 0;
    logits_host_ok_ = false;
    upload(tokens_.p, tokens, size_t(N) * sizeof(int));
    if (targets) upload(targets_.p, targets, size_t(N) * sizeof(int));

    const int L = cfg_.n_layers;
    cuda_ops::embedding_forward(res_, tokens_.p, embed_.p, N, int(C), stream_);
    for (int l = 0; l < L; ++l) layer_forward(l);
    cuda_ops::rmsnorm_forward(xn_, rstdf_, res_ + int64_t(L) * N * C, norms_.p + int64_t(2 * L) * C, N, int(C),
                              cfg_.norm_eps, stream_);
    head_gemm_forward(logits_, xn_, N);
    if (!targets) {
        note_device_used();
        return 0.f;
    }
    cuda_ops::cross_entropy_forward(lse_, row_loss_, logits_, targets_.p, N, int(V), stream_);
    const double sum = cuda_ops::sum_f64(row_loss_, N, stream_);  // synchronizes
    scored_ = scored;
    has_targets_ = true;
    note_device_used();
    return scored > 0 ? float(sum / double(scored)) : 0.f;
}

const float* LlamaCuda::logits() const {
    if (!logits_host_ok_) {
        if (!logits_) throw Error("logits: no forward has run");
        const size_t n = size_t(B_) * size_t(T_) * size_t(cfg_.vocab);
        logits_host_.resize(n);
        LOFTQ_CUDA_CHECK(cudaMemcpyAsync(logits_host_.data(), logits_, n * 4, cudaMemcpyDeviceToHost, stream_));
        LOFTQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
        logits_host_ok_ = true;
    }
    return logits_host_.data();
}

// ---------------------------------------------------------------------------------------------
// backward

void LlamaCuda::zero_grad() {
    if (lora_n_) LOFTQ_CUDA_CHECK(cudaMemsetAsync(lora_grad_.p, 0, lora_n_ * 4, stream_));
}

void LlamaCuda::backward() {
    if (!has_targets_) throw Error("backward: the last forward() had no targets");
    if (scored_ == 0) return;  // the loss is a constant 0: nothing to add
    ensure_backward_scratch();
    const int B = B_, T = T_;
    const int64_t N = int64_t(B) * T, C = cfg_.dim, F = cfg_.hidden, V = cfg_.vocab;
    const int L = cfg_.n_layers, H = cfg_.n_heads, KVH = cfg_.n_kv_heads, d = cfg_.head_dim();
    const cuda_ops::GemmMath m = opt_.math;
    cudaStream_t st = stream_;
    const float dloss = 1.f / float(scored_);
    auto grads = [&](int l, LoraSite s) {
        const Slot& sl = slot(l, s);
        return std::pair<float*, float*>{sl.rank ? lora_grad_.p + sl.a : nullptr, sl.rank ? lora_grad_.p + sl.b : nullptr};
    };

    // LM head and final norm: dxn = dlogits @ lm_head, a chunk of rows at a time (the logits stay
    // intact, so logits() still answers after backward, as on the CPU).
    for (int64_t r0 = 0; r0 < N; r0 += ce_rows_) {
        const int64_t rows = std::min(ce_rows_, N - r0);
        cuda_ops::cross_entropy_backward(dlogits_, logits_ + r0 * V, lse_ + r0, targets_.p + r0, rows, int(V), dloss, st);
        head_gemm_backward(dxn_ + r0 * C, dlogits_, rows);
    }
    LOFTQ_CUDA_CHECK(cudaMemsetAsync(dres_, 0, size_t(N * C) * 4, st));
    cuda_ops::rmsnorm_backward(dres_, dxn_, res_ + int64_t(L) * N * C, norms_.p + int64_t(2 * L) * C, rstdf_, N, int(C), st);

    for (int l = L - 1; l >= 0; --l) {
        // Recompute: re-run this layer's forward from its saved residual input (it also rewrites
        // res_{l+1}, whose last reader, layer l + 1's backward, is done; same values anyway).
        if (recompute_) layer_forward(l);
        const LayerActs a = acts(l);
        const float* attn_norm = norms_.p + int64_t(2 * l) * C;
        const float* ffn_norm = norms_.p + int64_t(2 * l + 1) * C;

        // MLP block (dres holds d res_{l+1}); recompute xn = norm(mid) and h = silu(g) * u.
        cuda_ops::rmsnorm_forward(xn_, a.rstd2, a.mid, ffn_norm, N, int(C), cfg_.norm_eps, st);
        cuda_ops::swiglu_forward(h_, a.g, a.u, N * F, st);
        {
            auto [dA, dB] = grads(l, LoraSite::Down);
            cuda_ops::lora_linear_backward(blas_, dh_, false, dA, dB, dres_, h_, xa(a, l, LoraSite::Down), dxa_, N,
                                           linear(l, LoraSite::Down), m, st);
        }
        cuda_ops::swiglu_backward(dg_, du_, dh_, a.g, a.u, N * F, st);
        {
            auto [dA, dB] = grads(l, LoraSite::Gate);
            cuda_ops::lora_linear_backward(blas_, dxn_, false, dA, dB, dg_, xn_, xa(a, l, LoraSite::Gate), dxa_, N,
                                           linear(l, LoraSite::Gate), m, st);
        }
        {
            auto [dA, dB] = grads(l, LoraSite::Up);
            cuda_ops::lora_linear_backward(blas_, dxn_, true, dA, dB, du_, xn_, xa(a, l, LoraSite::Up), dxa_, N,
                                           linear(l, LoraSite::Up), m, st);
        }
        cuda_ops::rmsnorm_backward(dres_, dxn_, a.mid, ffn_norm, a.rstd2, N, int(C), st);  // dres = d mid

        // attention block; recompute xn = norm(res).
        {
            auto [dA, dB] = grads(l, LoraSite::O);
            cuda_ops::lora_linear_backward(blas_, dy_, false, dA, dB, dres_, a.y, xa(a, l, LoraSite::O), dxa_, N,
                                           linear(l, LoraSite::O), m, st);
        }
        cuda_ops::attention_backward(dq_, dk_, dv_, dy_, a.y, a.lse, a.q, a.k, a.v, att_scratch_, B, T, H, KVH, d, st);
        cuda_ops::rope_backward(dq_, B, T, H, d, rope_cos_.p, rope_sin_.p, st);
        cuda_ops::rope_backward(dk_, B, T, KVH, d, rope_cos_.p, rope_sin_.p, st);
        cuda_ops::rmsnorm_forward(xn_, a.rstd1, a.res, attn_norm, N, int(C), cfg_.norm_eps, st);
        // Layer 0's input is the frozen embedding: no gradient needed below it (dx = null, as on
        // the CPU; lora_linear_backward then skips the two dx products).
        float* dx = l > 0 ? dxn_ : nullptr;
        {
            auto [dA, dB] = grads(l, LoraSite::Q);
            cuda_ops::lora_linear_backward(blas_, dx, false, dA, dB, dq_, xn_, xa(a, l, LoraSite::Q), dxa_, N,
                                           linear(l, LoraSite::Q), m, st);
        }
        {
            auto [dA, dB] = grads(l, LoraSite::K);
            cuda_ops::lora_linear_backward(blas_, dx, true, dA, dB, dk_, xn_, xa(a, l, LoraSite::K), dxa_, N,
                                           linear(l, LoraSite::K), m, st);
        }
        {
            auto [dA, dB] = grads(l, LoraSite::V);
            cuda_ops::lora_linear_backward(blas_, dx, true, dA, dB, dv_, xn_, xa(a, l, LoraSite::V), dxa_, N,
                                           linear(l, LoraSite::V), m, st);
        }
        if (l > 0) cuda_ops::rmsnorm_backward(dres_, dxn_, a.res, attn_norm, a.rstd1, N, int(C), st);
    }
    note_device_used();
}

}  // namespace loftq
