// llama_decode.cpp: generation's forward pass over a KV cache (llama.h LlamaModel::decode): the
// no-cache default every model has, and LlamaCpu's cached one. A step runs only its n new rows
// through every layer: their k and v (k after RoPE) are appended to the layer's cache and their
// queries attend to all cached positions (ops::attention_decode); only the last row goes through
// the final norm and the LM head. Same ops, same order as LlamaCpu::forward, so a cached step's
// logits equal the no-cache forward's last row up to BLAS blocking (tests/test_generate.cpp).
// Leaves out: batching several sequences, cache eviction or sliding windows (the context is the
// config's max_seq), the CUDA model (it runs the default).
#include <algorithm>
#include <new>
#include <string>

#include "core/error.h"
#include "core/units.h"
#include "linalg/blas.h"
#include "model/llama_cpu.h"
#include "model/out_of_memory.h"

namespace loftq {

int LlamaModel::context_limit() const {
    const int m = config().max_seq;
    return m > 0 ? m : 2048;
}

namespace {
void check_room(const LlamaModel& m, int n) {
    if (n <= 0) throw Error("decode: no tokens to run");
    const int limit = m.context_limit();
    if (m.cached() + n > limit)
        throw Error("", "", "the context is full: " + std::to_string(m.cached()) + " positions used + " + std::to_string(n) +
                                " new > the model's " + std::to_string(limit) + " (max_position_embeddings)");
}
}  // namespace

const float* LlamaModel::decode(const int* tokens, int n) {
    check_room(*this, n);
    history_.insert(history_.end(), tokens, tokens + n);
    const int T = int(history_.size());
    forward(history_.data(), nullptr, 1, T);
    return logits() + size_t(T - 1) * size_t(config().vocab);
}

void LlamaCpu::ensure_decode(int n, int positions) {
    const int64_t C = cfg_.dim, KV = cfg_.kv_dim(), F = cfg_.hidden, V = cfg_.vocab, L = cfg_.n_layers;
    try {
        if (positions > cache_cap_) {
            // Grow geometrically (a prompt, then one token at a time), never past the context.
            const int cap = std::min(context_limit(), std::max({positions, 2 * cache_cap_, 64}));
            std::vector<float> k(size_t(L * cap * KV)), v(size_t(L * cap * KV));
            for (int64_t l = 0; l < L && pos_ > 0; ++l) {
                std::copy_n(kcache_.begin() + l * cache_cap_ * KV, size_t(pos_ * KV), k.begin() + l * cap * KV);
                std::copy_n(vcache_.begin() + l * cache_cap_ * KV, size_t(pos_ * KV), v.begin() + l * cap * KV);
            }
            kcache_.swap(k);
            vcache_.swap(v);
            cache_cap_ = cap;
        }
        if (n > dec_.rows) {
            const size_t N = size_t(n);
            dec_.x.resize(N * C); dec_.xn.resize(N * C); dec_.rstd.resize(N);
            dec_.q.resize(N * C); dec_.y.resize(N * C); dec_.tmp.resize(N * C);
            dec_.g.resize(N * F); dec_.u.resize(N * F); dec_.h.resize(N * F);
            dec_.xa.resize(N * size_t(std::max(max_rank_, 1)));
            dec_.logits.resize(size_t(V));
            dec_.rows = n;
        }
    } catch (const std::bad_alloc&) {
        throw Error("", "", out_of_memory_text(fp32_size_text({2, L, int64_t(positions), KV}) + " for the KV cache of " +
                                               std::to_string(positions) + " positions; use a shorter prompt or --max-tokens"));
    }
    ensure_rope(positions);
}

const float* LlamaCpu::decode(const int* tokens, int n) {
    check_room(*this, n);
    ensure_decode(n, pos_ + n);
    const int64_t C = cfg_.dim, KV = cfg_.kv_dim(), F = cfg_.hidden, V = cfg_.vocab;
    const int L = cfg_.n_layers, H = cfg_.n_heads, KVH = cfg_.n_kv_heads, d = cfg_.head_dim(), th = threads_;
    const int64_t N = n, half = d / 2;
    const float* cos = rope_cos_.data() + pos_ * half;   // the rows of positions pos_ ..
    const float* sin = rope_sin_.data() + pos_ * half;
    DecodeBuffers& b = dec_;
    float* x = b.x.data();

    ops::embedding_forward(x, tokens, embed_, N, int(C), int(V));
    for (int l = 0; l < L; ++l) {
        const LlamaLayerWeights& w = layers_[size_t(l)];
        float* kc = kcache_.data() + int64_t(l) * cache_cap_ * KV;   // cache_cap_ x KV
        float* vc = vcache_.data() + int64_t(l) * cache_cap_ * KV;
        float* knew = kc + int64_t(pos_) * KV;                       // this step's rows
        float* vnew = vc + int64_t(pos_) * KV;
        // attention block: x += o(attn(rope(q(xn)), cache + rope(k(xn)), cache + v(xn))), xn = norm(x)
        ops::rmsnorm_forward(b.xn.data(), b.rstd.data(), x, w.attn_norm, N, int(C), cfg_.norm_eps, th);
        ops::lora_linear_forward(b.q.data(), b.xa.data(), b.xn.data(), N, linear(l, LoraSite::Q));
        ops::lora_linear_forward(knew, b.xa.data(), b.xn.data(), N, linear(l, LoraSite::K));
        ops::lora_linear_forward(vnew, b.xa.data(), b.xn.data(), N, linear(l, LoraSite::V));
        ops::rope_forward(b.q.data(), 1, n, H, d, cos, sin, th);
        ops::rope_forward(knew, 1, n, KVH, d, cos, sin, th);
        ops::attention_decode(b.y.data(), b.q.data(), kc, vc, n, pos_, H, KVH, d, th);
        ops::lora_linear_forward(b.tmp.data(), b.xa.data(), b.y.data(), N, linear(l, LoraSite::O));
        for (int64_t i = 0; i < N * C; ++i) x[i] = b.tmp[size_t(i)] + x[i];
        // MLP block: x += down(silu(gate(xn)) * up(xn)), xn = norm(x)
        ops::rmsnorm_forward(b.xn.data(), b.rstd.data(), x, w.ffn_norm, N, int(C), cfg_.norm_eps, th);
        ops::lora_linear_forward(b.g.data(), b.xa.data(), b.xn.data(), N, linear(l, LoraSite::Gate));
        ops::lora_linear_forward(b.u.data(), b.xa.data(), b.xn.data(), N, linear(l, LoraSite::Up));
        ops::swiglu_forward(b.h.data(), b.g.data(), b.u.data(), N * F, th);
        ops::lora_linear_forward(b.tmp.data(), b.xa.data(), b.h.data(), N, linear(l, LoraSite::Down));
        for (int64_t i = 0; i < N * C; ++i) x[i] = b.tmp[size_t(i)] + x[i];
    }
    // Only the last row's logits are needed.
    ops::rmsnorm_forward(b.xn.data(), b.rstd.data(), x + (N - 1) * C, final_norm_, 1, int(C), cfg_.norm_eps, th);
    gemm(false, true, 1, V, C, 1.f, b.xn.data(), C, lm_head_, C, 0.f, b.logits.data(), V);
    pos_ += n;
    return b.logits.data();
}

}  // namespace loftq
