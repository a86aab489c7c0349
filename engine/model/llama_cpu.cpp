// llama_cpu.cpp: see llama_cpu.h. The forward pass keeps exactly what backward needs (listed in
// the header); backward walks the layers in reverse with the gradient rule of ops.h: LoRA
// gradients accumulate, activation gradients overwrite, except dres (the residual stream's
// gradient), which every block's RMSNorm backward adds into.
#include "model/llama_cpu.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <thread>

#include "core/error.h"
#include "core/units.h"
#include "io/peft_adapter.h"
#include "linalg/blas.h"
#include "linalg/tile_gemm.h"
#include "model/out_of_memory.h"

namespace loftq {

int64_t lora_site_out(const LlamaConfig& c, LoraSite s) {
    switch (s) {
        case LoraSite::Q: case LoraSite::O: case LoraSite::Down: return c.dim;
        case LoraSite::K: case LoraSite::V: return c.kv_dim();
        case LoraSite::Gate: case LoraSite::Up: return c.hidden;
    }
    return 0;
}

int64_t lora_site_in(const LlamaConfig& c, LoraSite s) { return s == LoraSite::Down ? c.hidden : c.dim; }

namespace {
std::unique_ptr<float[]> alloc_floats(size_t n) { return std::unique_ptr<float[]>(new float[std::max<size_t>(n, 1)]); }
}  // namespace

LlamaCpu::LlamaCpu(const LlamaConfig& c, const std::vector<int>& ranks, const std::vector<float>& scales, int threads,
                   bool packed_sites)
    : cfg_(c), packed_sites_(packed_sites) {
    const int64_t C = c.dim, KV = c.kv_dim(), F = c.hidden, V = c.vocab, L = c.n_layers;
    if (int64_t(ranks.size()) != L * kLoraSites || int64_t(scales.size()) != L * kLoraSites)
        throw Error("LlamaCpu: ranks and scales need n_layers x 7 entries");

    // Base block.
    const int64_t site_floats = packed_sites ? 0 : 2 * C * C + 2 * KV * C + 3 * F * C;
    const int64_t per_layer = 2 * C + site_floats + (c.qkv_bias ? C + 2 * KV : 0);
    base_n_ = size_t(V * C + L * per_layer + C + (c.tied_embeddings ? 0 : V * C));
    base_ = alloc_floats(base_n_);
    float* p = base_.get();
    auto take = [&](int64_t n) { float* r = p; p += n; return r; };
    embed_ = take(V * C);
    layers_.resize(size_t(L));
    for (auto& w : layers_) {
        auto site = [&](int64_t n) { return packed_sites ? nullptr : take(n); };
        w.attn_norm = take(C);
        w.wq = site(C * C);
        w.wk = site(KV * C);
        w.wv = site(KV * C);
        if (c.qkv_bias) { w.bq = take(C); w.bk = take(KV); w.bv = take(KV); }
        w.wo = site(C * C);
        w.ffn_norm = take(C);
        w.wg = site(F * C);
        w.wu = site(F * C);
        w.wd = site(C * F);
    }
    final_norm_ = take(C);
    lm_head_ = c.tied_embeddings ? embed_ : take(V * C);
    if (packed_sites) {
        packed_.resize(size_t(L) * kLoraSites);
        site_scratch_.resize(kLoraSites);
        for (int s = 0; s < kLoraSites; ++s)
            site_scratch_[size_t(s)].resize(size_t(lora_site_out(c, LoraSite(s)) * lora_site_in(c, LoraSite(s))));
        code_scratch_.resize(size_t(std::max({C * C, F * C, KV * C})));
    }

    // LoRA blocks: per site A then B, in (layer, site) order — also the trainable() order.
    slots_.resize(size_t(L) * kLoraSites);
    xa_prefix_.resize(slots_.size());
    for (int l = 0; l < L; ++l)
        for (int s = 0; s < kLoraSites; ++s) {
            const size_t i = size_t(l) * kLoraSites + size_t(s);
            LoraSlot& sl = slots_[i];
            sl.in = lora_site_in(c, LoraSite(s));
            sl.out = lora_site_out(c, LoraSite(s));
            sl.rank = std::max(0, ranks[i]);
            sl.scale = sl.rank ? scales[i] : 0.f;
            xa_prefix_[i] = rank_sum_;
            rank_sum_ += sl.rank;
            max_rank_ = std::max(max_rank_, sl.rank);
            lora_n_ += size_t(sl.rank) * size_t(sl.in + sl.out);
        }
    lora_.assign(lora_n_, 0.f);
    lora_grad_.assign(lora_n_, 0.f);
    size_t off = 0;
    for (int l = 0; l < L; ++l)
        for (int s = 0; s < kLoraSites; ++s) {
            LoraSlot& sl = slot(l, LoraSite(s));
            if (!sl.rank) continue;
            const std::string mp = lora_module_path(l, LoraSite(s));
            sl.A = lora_.data() + off;
            sl.dA = lora_grad_.data() + off;
            trainable_.push_back({peft_lora_key(mp, 'A'), sl.A, sl.dA, sl.rank, sl.in});
            off += size_t(sl.rank) * size_t(sl.in);
            sl.B = lora_.data() + off;
            sl.dB = lora_grad_.data() + off;
            trainable_.push_back({peft_lora_key(mp, 'B'), sl.B, sl.dB, sl.out, sl.rank});
            off += size_t(sl.rank) * size_t(sl.out);
        }
    inv_freq_ = ops::rope_inv_freq(cfg_);
    set_threads(threads);
}

void LlamaCpu::set_threads(int n) {
    threads_ = n > 0 ? n : int(std::max(1u, std::thread::hardware_concurrency()));
    // OpenBLAS's threads serve the few-row products of generation (tile_gemm hands those to it); a
    // training step at LoRA rank >= 8 makes no OpenBLAS call (its products are tile_gemm's and
    // attention's, split over threads_), so OpenBLAS's spinning idle workers do not compete there.
    prefer_blas_threads(threads_);   // applied unless a decomposition needs BLAS single-threaded (linalg/blas.h)
}

float* LlamaCpu::site_weight(int l, LoraSite s) {
    LlamaLayerWeights& w = layer(l);
    switch (s) {
        case LoraSite::Q: return w.wq;
        case LoraSite::K: return w.wk;
        case LoraSite::V: return w.wv;
        case LoraSite::O: return w.wo;
        case LoraSite::Gate: return w.wg;
        case LoraSite::Up: return w.wu;
        case LoraSite::Down: return w.wd;
    }
    return nullptr;
}

float* LlamaCpu::site_bias(int l, LoraSite s) {
    LlamaLayerWeights& w = layer(l);
    return s == LoraSite::Q ? w.bq : s == LoraSite::K ? w.bk : s == LoraSite::V ? w.bv : nullptr;
}

void LlamaCpu::set_packed_site(int l, LoraSite s, PackedSite p) {
    if (!packed_sites_) throw Error("LlamaCpu: set_packed_site on a model built with fp32 sites");
    const QuantFormat& f = quant_format(p.kind);
    const size_t n = size_t(lora_site_out(cfg_, s) * lora_site_in(cfg_, s));
    const std::string name = lora_module_path(l, s) + ".weight";
    if (p.block <= 0 || p.codes.size() != packed_size(n, f.bits) || p.scales.size() != num_blocks(n, p.block))
        throw Error("", name, "packed weight has " + std::to_string(p.codes.size()) + " code bytes and " +
                                  std::to_string(p.scales.size()) + " scales; expected " + std::to_string(packed_size(n, f.bits)) +
                                  " and " + std::to_string(p.block > 0 ? num_blocks(n, p.block) : 0));
    packed_[size_t(l) * kLoraSites + size_t(s)] = std::move(p);
}

uint64_t LlamaCpu::base_bytes() const {
    uint64_t b = uint64_t(base_n_) * 4;
    for (const auto& p : packed_) b += p.codes.size() + 4 * p.scales.size();
    for (const auto& v : site_scratch_) b += 4 * v.size();
    return b + code_scratch_.size();
}

const float* LlamaCpu::site_weight_f32(int l, LoraSite s) const {
    auto* self = const_cast<LlamaCpu*>(this);
    if (!packed_sites_) return self->site_weight(l, s);
    // Each site kind has its own scratch: q, k and v (or gate and up) can be live at once.
    const PackedSite& p = packed_[size_t(l) * kLoraSites + size_t(s)];
    const QuantFormat& f = quant_format(p.kind);
    const size_t n = size_t(lora_site_out(cfg_, s) * lora_site_in(cfg_, s));
    float* out = site_scratch_[size_t(s)].data();
    unpack_codes(p.codes.data(), n, f.bits, code_scratch_.data());
    dequantize(f, code_scratch_.data(), p.scales.data(), n, p.block, out, threads_);
    return out;
}

ops::LoraLinear LlamaCpu::linear(int l, LoraSite s) const {
    const LoraSlot& sl = slot(l, s);
    auto* self = const_cast<LlamaCpu*>(this);
    return {site_weight_f32(l, s), self->site_bias(l, s), sl.A, sl.B, sl.in, sl.out, sl.rank, sl.scale, threads_};
}

float* LlamaCpu::xa(int l, LoraSite s) const {
    return xa_ + int64_t(B_) * T_ * xa_prefix_[size_t(l) * kLoraSites + size_t(s)];
}

void LlamaCpu::ensure_activations(int B, int T) {
    const int64_t N = int64_t(B) * T, C = cfg_.dim, KV = cfg_.kv_dim(), F = cfg_.hidden, V = cfg_.vocab,
                  L = cfg_.n_layers, H = cfg_.n_heads;
    const int64_t sizes[] = {
        (L + 1) * N * C,      // res
        L * N * C,            // mid
        L * N, L * N, N,      // rstd1, rstd2, rstdf
        L * N * C,            // q
        L * N * KV, L * N * KV,  // k, v
        L * B * H * T * T,    // att
        L * N * C,            // y
        L * N * F, L * N * F, // g, u
        N * rank_sum_,        // xa
        N * C, N * F,         // xn, h scratch
        N * V, N,             // logits, lse
    };
    size_t total = 0;
    for (int64_t s : sizes) total += size_t(s);
    if (total > act_cap_) {
        act_.reset();  // free the old block before taking the new one
        try {
            act_ = alloc_floats(total);
        } catch (const std::bad_alloc&) {
            act_cap_ = 0;
            throw Error("", "", out_of_memory_text(human_bytes(4.0 * double(total)) + " for the activations of a batch of " + std::to_string(B) +
                                                   " x " + std::to_string(T) + " tokens (the attention scores alone " +
                                                   fp32_size_text({L, int64_t(B), H, int64_t(T), int64_t(T)}) + ", the logits " +
                                                   fp32_size_text({N, V}) + "); use a smaller batch or sequence"));
        }
        act_cap_ = total;
    }
    float* p = act_.get();
    float** dst[] = {&res_, &mid_, &rstd1_, &rstd2_, &rstdf_, &q_, &k_, &v_, &att_, &y_, &g_, &u_, &xa_, &xn_, &h_,
                     &logits_, &lse_};
    for (size_t i = 0; i < std::size(sizes); ++i) { *dst[i] = p; p += sizes[i]; }
    B_ = B;
    T_ = T;
}

void LlamaCpu::ensure_backward_scratch() {
    const int64_t N = int64_t(B_) * T_, C = cfg_.dim, KV = cfg_.kv_dim(), F = cfg_.hidden, V = cfg_.vocab;
    // The LM head's backward runs over row chunks of about 2^20 dlogits (4 MB), at least 16 rows.
    ce_rows_ = std::min<int64_t>(N, std::max<int64_t>(16, (int64_t(1) << 20) / std::max<int64_t>(V, 1)));
    const int64_t sizes[] = {N * C, N * C, N * C, N * KV, N * KV, N * C, N * F, N * F, N * F,
                             N * std::max(max_rank_, 1), ce_rows_ * V};
    size_t total = 0;
    for (int64_t s : sizes) total += size_t(s);
    if (total > grad_cap_) {
        grad_.reset();
        try {
            grad_ = alloc_floats(total);
        } catch (const std::bad_alloc&) {
            grad_cap_ = 0;
            throw Error("", "", out_of_memory_text(human_bytes(4.0 * double(total)) + " for the backward pass's gradients of a batch of " +
                                                   std::to_string(B_) + " x " + std::to_string(T_) + " tokens; use a smaller batch or sequence"));
        }
        grad_cap_ = total;
    }
    float* p = grad_.get();
    float** dst[] = {&dres_, &dxn_, &dq_, &dk_, &dv_, &dy_, &dg_, &du_, &dh_, &dxa_, &dlogits_};
    for (size_t i = 0; i < std::size(sizes); ++i) { *dst[i] = p; p += sizes[i]; }
}

void LlamaCpu::ensure_rope(int T) {
    if (rope_T_ >= T) return;
    rope_cos_.resize(size_t(T) * inv_freq_.size());
    rope_sin_.resize(size_t(T) * inv_freq_.size());
    ops::rope_table(rope_cos_.data(), rope_sin_.data(), T, inv_freq_);
    rope_T_ = T;
}

float LlamaCpu::forward(const int* tokens, const int* targets, int B, int T) {
    if (B <= 0 || T <= 0) throw Error("forward: batch " + std::to_string(B) + " x length " + std::to_string(T) + " is empty");
    ensure_activations(B, T);
    const int64_t N = int64_t(B) * T, C = cfg_.dim, KV = cfg_.kv_dim(), F = cfg_.hidden, V = cfg_.vocab;
    const int L = cfg_.n_layers, H = cfg_.n_heads, KVH = cfg_.n_kv_heads, d = cfg_.head_dim();
    const int th = threads_;
    ensure_rope(T);
    has_targets_ = false;
    scored_ = 0;

    ops::embedding_forward(res_, tokens, embed_, N, int(C), int(V));
    for (int l = 0; l < L; ++l) {
        const LlamaLayerWeights& w = layers_[size_t(l)];
        float* res = res_ + l * N * C;
        float* mid = mid_ + l * N * C;
        float* q = q_ + l * N * C;
        float* k = k_ + l * N * KV;
        float* v = v_ + l * N * KV;
        float* att = att_ + int64_t(l) * B * H * T * T;
        float* y = y_ + l * N * C;
        float* g = g_ + l * N * F;
        float* u = u_ + l * N * F;
        // attention block: mid = res + o(attn(rope(q(xn)), rope(k(xn)), v(xn))), xn = norm(res)
        ops::rmsnorm_forward(xn_, rstd1_ + l * N, res, w.attn_norm, N, int(C), cfg_.norm_eps, th);
        if (observer_) observer_(l, LoraSite::Q, xn_, N, lora_site_in(cfg_, LoraSite::Q));
        ops::lora_linear_forward(q, xa(l, LoraSite::Q), xn_, N, linear(l, LoraSite::Q));
        if (observer_) observer_(l, LoraSite::K, xn_, N, lora_site_in(cfg_, LoraSite::K));
        ops::lora_linear_forward(k, xa(l, LoraSite::K), xn_, N, linear(l, LoraSite::K));
        if (observer_) observer_(l, LoraSite::V, xn_, N, lora_site_in(cfg_, LoraSite::V));
        ops::lora_linear_forward(v, xa(l, LoraSite::V), xn_, N, linear(l, LoraSite::V));
        ops::rope_forward(q, B, T, H, d, rope_cos_.data(), rope_sin_.data(), th);
        ops::rope_forward(k, B, T, KVH, d, rope_cos_.data(), rope_sin_.data(), th);
        ops::attention_forward(y, att, q, k, v, B, T, H, KVH, d, th);
        if (observer_) observer_(l, LoraSite::O, y, N, lora_site_in(cfg_, LoraSite::O));
        ops::lora_linear_forward(mid, xa(l, LoraSite::O), y, N, linear(l, LoraSite::O));
        for (int64_t i = 0; i < N * C; ++i) mid[i] += res[i];
        // MLP block: res' = mid + down(silu(gate(xn)) * up(xn)), xn = norm(mid)
        float* next = res_ + (l + 1) * N * C;
        ops::rmsnorm_forward(xn_, rstd2_ + l * N, mid, w.ffn_norm, N, int(C), cfg_.norm_eps, th);
        if (observer_) observer_(l, LoraSite::Gate, xn_, N, lora_site_in(cfg_, LoraSite::Gate));
        ops::lora_linear_forward(g, xa(l, LoraSite::Gate), xn_, N, linear(l, LoraSite::Gate));
        if (observer_) observer_(l, LoraSite::Up, xn_, N, lora_site_in(cfg_, LoraSite::Up));
        ops::lora_linear_forward(u, xa(l, LoraSite::Up), xn_, N, linear(l, LoraSite::Up));
        ops::swiglu_forward(h_, g, u, N * F, th);
        if (observer_) observer_(l, LoraSite::Down, h_, N, lora_site_in(cfg_, LoraSite::Down));
        ops::lora_linear_forward(next, xa(l, LoraSite::Down), h_, N, linear(l, LoraSite::Down));
        for (int64_t i = 0; i < N * C; ++i) next[i] += mid[i];
    }
    ops::rmsnorm_forward(xn_, rstdf_, res_ + int64_t(L) * N * C, final_norm_, N, int(C), cfg_.norm_eps, th);
    tile_gemm(true, N, V, C, xn_, C, lm_head_, C, logits_, V, false, threads_);  // logits = xn lm_head^T
    if (!targets) return 0.f;
    targets_.assign(targets, targets + N);
    const double loss = ops::cross_entropy_forward(lse_, logits_, targets_.data(), N, int(V), &scored_, th);
    has_targets_ = true;
    return float(loss);
}

void LlamaCpu::zero_grad() { std::fill(lora_grad_.begin(), lora_grad_.end(), 0.f); }

void LlamaCpu::backward() {
    if (!has_targets_) throw Error("backward: the last forward() had no targets");
    if (scored_ == 0) return;  // the loss is a constant 0: nothing to add
    ensure_backward_scratch();
    const int B = B_, T = T_;
    const int64_t N = int64_t(B) * T, C = cfg_.dim, KV = cfg_.kv_dim(), F = cfg_.hidden, V = cfg_.vocab;
    const int L = cfg_.n_layers, H = cfg_.n_heads, KVH = cfg_.n_kv_heads, d = cfg_.head_dim();
    const int th = threads_;
    const float dloss = 1.f / float(scored_);

    // LM head and final norm: dxn = dlogits @ lm_head, a chunk of rows at a time.
    for (int64_t r0 = 0; r0 < N; r0 += ce_rows_) {
        const int64_t rows = std::min(ce_rows_, N - r0);
        ops::cross_entropy_backward(dlogits_, logits_ + r0 * V, lse_ + r0, targets_.data() + r0, rows, int(V), dloss, th);
        tile_gemm(false, rows, C, V, dlogits_, V, lm_head_, C, dxn_ + r0 * C, C, false, threads_);
    }
    std::fill(dres_, dres_ + N * C, 0.f);
    ops::rmsnorm_backward(dres_, nullptr, dxn_, res_ + int64_t(L) * N * C, final_norm_, rstdf_, N, int(C), th);

    for (int l = L - 1; l >= 0; --l) {
        const LlamaLayerWeights& w = layers_[size_t(l)];
        const float* res = res_ + l * N * C;
        const float* mid = mid_ + l * N * C;
        const float* q = q_ + l * N * C;
        const float* k = k_ + l * N * KV;
        const float* v = v_ + l * N * KV;
        const float* att = att_ + int64_t(l) * B * H * T * T;
        const float* y = y_ + l * N * C;
        const float* g = g_ + l * N * F;
        const float* u = u_ + l * N * F;
        auto slot_grads = [&](LoraSite s) { LoraSlot& sl = slot(l, s); return std::pair{sl.dA, sl.dB}; };

        // MLP block (dres holds d res_{l+1}); recompute xn = norm(mid) and h = silu(g) * u.
        ops::rmsnorm_forward(xn_, rstd2_ + l * N, mid, w.ffn_norm, N, int(C), cfg_.norm_eps, th);
        ops::swiglu_forward(h_, g, u, N * F, th);
        {
            auto [dA, dB] = slot_grads(LoraSite::Down);
            ops::lora_linear_backward(dh_, false, dA, dB, nullptr, dres_, h_, xa(l, LoraSite::Down), dxa_, N,
                                      linear(l, LoraSite::Down));
        }
        ops::swiglu_backward(dg_, du_, dh_, g, u, N * F, th);
        {
            auto [dA, dB] = slot_grads(LoraSite::Gate);
            ops::lora_linear_backward(dxn_, false, dA, dB, nullptr, dg_, xn_, xa(l, LoraSite::Gate), dxa_, N,
                                      linear(l, LoraSite::Gate));
        }
        {
            auto [dA, dB] = slot_grads(LoraSite::Up);
            ops::lora_linear_backward(dxn_, true, dA, dB, nullptr, du_, xn_, xa(l, LoraSite::Up), dxa_, N,
                                      linear(l, LoraSite::Up));
        }
        ops::rmsnorm_backward(dres_, nullptr, dxn_, mid, w.ffn_norm, rstd2_ + l * N, N, int(C), th);  // dres = d mid

        // attention block; recompute xn = norm(res).
        {
            auto [dA, dB] = slot_grads(LoraSite::O);
            ops::lora_linear_backward(dy_, false, dA, dB, nullptr, dres_, y, xa(l, LoraSite::O), dxa_, N,
                                      linear(l, LoraSite::O));
        }
        ops::attention_backward(dq_, dk_, dv_, dy_, att, q, k, v, B, T, H, KVH, d, th);
        ops::rope_backward(dq_, B, T, H, d, rope_cos_.data(), rope_sin_.data(), th);
        ops::rope_backward(dk_, B, T, KVH, d, rope_cos_.data(), rope_sin_.data(), th);
        ops::rmsnorm_forward(xn_, rstd1_ + l * N, res, w.attn_norm, N, int(C), cfg_.norm_eps, th);
        // Layer 0's input is the frozen embedding: no gradient needed below it.
        float* dx = l > 0 ? dxn_ : nullptr;
        {
            auto [dA, dB] = slot_grads(LoraSite::Q);
            ops::lora_linear_backward(dx, false, dA, dB, nullptr, dq_, xn_, xa(l, LoraSite::Q), dxa_, N,
                                      linear(l, LoraSite::Q));
        }
        {
            auto [dA, dB] = slot_grads(LoraSite::K);
            ops::lora_linear_backward(dx, true, dA, dB, nullptr, dk_, xn_, xa(l, LoraSite::K), dxa_, N,
                                      linear(l, LoraSite::K));
        }
        {
            auto [dA, dB] = slot_grads(LoraSite::V);
            ops::lora_linear_backward(dx, true, dA, dB, nullptr, dv_, xn_, xa(l, LoraSite::V), dxa_, N,
                                      linear(l, LoraSite::V));
        }
        if (l > 0) ops::rmsnorm_backward(dres_, nullptr, dxn_, res, w.attn_norm, rstd1_ + l * N, N, int(C), th);
    }
}

}  // namespace loftq
