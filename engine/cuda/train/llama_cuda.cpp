// llama_cuda.cpp: LlamaCuda's construction and state: from_cpu (the base and the LoRA values
// uploaded from a LlamaCpu, the recompute decision), allocation with accounting, the activation
// and backward blocks carved for a (B, T), the LoRA host mirrors, and the option names. The memory
// estimate and report are in llama_cuda_memory.cpp, the forward and backward in
// llama_cuda_forward.cpp; docs/CUDA-TRAINING.md explains the design. Every CUDA and cuBLAS call is
// checked (file, line, call, error).
#include "cuda/train/llama_cuda.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/units.h"
#include "cuda/cuda_check.h"
#include "cuda/train/llama_cuda_sizes.h"
#include "io/peft_adapter.h"
#include "model/ops.h"
#include "quant/quantizer.h"

namespace loftq {

using namespace llama_cuda_detail;

const char* recompute_name(Recompute r) {
    switch (r) {
        case Recompute::Off: return "off";
        case Recompute::On: return "on";
        case Recompute::Auto: return "auto";
    }
    return "?";
}

bool recompute_from_name(const std::string& s, Recompute& out) {
    for (Recompute r : {Recompute::Off, Recompute::On, Recompute::Auto})
        if (s == recompute_name(r)) { out = r; return true; }
    return false;
}

const char* gemm_math_name(cuda_ops::GemmMath m) {
    switch (m) {
        case cuda_ops::GemmMath::Fp32: return "fp32";
        case cuda_ops::GemmMath::Tf32: return "tf32";
        case cuda_ops::GemmMath::Bf16: return "bf16";
    }
    return "?";
}

bool gemm_math_from_name(const std::string& s, cuda_ops::GemmMath& out) {
    for (cuda_ops::GemmMath m : {cuda_ops::GemmMath::Fp32, cuda_ops::GemmMath::Tf32, cuda_ops::GemmMath::Bf16})
        if (s == gemm_math_name(m)) { out = m; return true; }
    return false;
}

// ---------------------------------------------------------------------------------------------
// allocation

template <class T>
void LlamaCuda::alloc(DeviceArray<T>& a, size_t n, Cat cat, const std::string& what) {
    held_[cat] -= a.bytes();
    try {
        a.reset(n);
    } catch (const Error& e) {
        throw Error("CUDA: cannot allocate " + what + " (" + human_bytes(double(uint64_t(n) * sizeof(T))) + ") on the device; held so far: " +
                    memory().summary() + ". Try recomputation on, a smaller batch or sequence length, or a lower rank. (" + e.what() + ")");
    }
    held_[cat] += a.bytes();
    uint64_t total = 0;
    for (uint64_t h : held_) total += h;
    peak_ = std::max(peak_, total);
}

// ---------------------------------------------------------------------------------------------
// construction

LlamaCuda::LlamaCuda(const LlamaConfig& c, const CudaTrainOptions& o) : cfg_(c), opt_(o) {
    for (int& s : scratch_layer_) s = -1;
    LOFTQ_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    try {
        LOFTQ_CUBLAS_CHECK(cublasCreate(&blas_));
        LOFTQ_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
        LOFTQ_CUBLAS_CHECK(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));
    } catch (...) {
        if (blas_) (void)cublasDestroy(blas_);
        (void)cudaStreamDestroy(stream_);
        throw;
    }
}

LlamaCuda::~LlamaCuda() {
    if (stream_) (void)cudaStreamSynchronize(stream_);
    // Device arrays are members and free themselves after this body; the handle and stream go first
    // (cudaFree does not need them).
    if (blas_) (void)cublasDestroy(blas_);
    if (stream_) (void)cudaStreamDestroy(stream_);
}

void LlamaCuda::synchronize() const { LOFTQ_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

void LlamaCuda::upload(void* dst, const void* src, size_t bytes) {
    if (bytes) LOFTQ_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
}

std::unique_ptr<LlamaCuda> LlamaCuda::from_cpu(LlamaCpu& m, const CudaTrainOptions& opt) {
    const LlamaConfig& c = m.config();
    const int64_t C = c.dim, KV = c.kv_dim(), V = c.vocab, L = c.n_layers;
    std::unique_ptr<LlamaCuda> d(new LlamaCuda(c, opt));
    d->threads_ = m.threads();
    d->packed_ = m.packed_sites();

    // Frozen base: embed, LM head, norms, biases, the seven projections of every layer.
    d->alloc(d->embed_, size_t(V * C), kBase, "the token embedding");
    d->upload(d->embed_.p, m.embed(), size_t(V * C) * 4);
    if (!c.tied_embeddings) {
        d->alloc(d->lm_head_, size_t(V * C), kBase, "the LM head");
        d->upload(d->lm_head_.p, m.lm_head(), size_t(V * C) * 4);
    }
    {
        std::vector<float> norms(size_t((2 * L + 1) * C));
        for (int64_t l = 0; l < L; ++l) {
            std::memcpy(norms.data() + (2 * l) * C, m.layer(int(l)).attn_norm, size_t(C) * 4);
            std::memcpy(norms.data() + (2 * l + 1) * C, m.layer(int(l)).ffn_norm, size_t(C) * 4);
        }
        std::memcpy(norms.data() + 2 * L * C, m.final_norm(), size_t(C) * 4);
        d->alloc(d->norms_, norms.size(), kBase, "the RMSNorm weights");
        d->upload(d->norms_.p, norms.data(), norms.size() * 4);
        d->synchronize();  // `norms` goes out of scope (pageable copies are staged, but be plain)
    }
    if (c.qkv_bias) {
        std::vector<float> bias(size_t(L * (C + 2 * KV)));
        for (int64_t l = 0; l < L; ++l) {
            float* p = bias.data() + l * (C + 2 * KV);
            std::memcpy(p, m.layer(int(l)).bq, size_t(C) * 4);
            std::memcpy(p + C, m.layer(int(l)).bk, size_t(KV) * 4);
            std::memcpy(p + C + KV, m.layer(int(l)).bv, size_t(KV) * 4);
        }
        d->alloc(d->bias_, bias.size(), kBase, "the q/k/v biases");
        d->upload(d->bias_.p, bias.data(), bias.size() * 4);
        d->synchronize();
    }
    d->sites_.resize(size_t(L) * kLoraSites);
    const bool bf16 = opt.math == cuda_ops::GemmMath::Bf16;
    DeviceArray<float> staging;  // Bf16, fp32 sites: the upload before the cast
    int64_t max_site = 0;
    for (int s = 0; s < kLoraSites; ++s)
        max_site = std::max<int64_t>(max_site, lora_site_out(c, LoraSite(s)) * lora_site_in(c, LoraSite(s)));
    for (int64_t l = 0; l < L; ++l)
        for (int s = 0; s < kLoraSites; ++s) {
            const LoraSite site = LoraSite(s);
            Site& st = d->sites_[size_t(l) * kLoraSites + size_t(s)];
            st.n = lora_site_out(c, site) * lora_site_in(c, site);
            const std::string name = lora_module_path(int(l), site) + ".weight";
            if (d->packed_) {
                const PackedSite& p = m.packed_site(int(l), site);
                const QuantFormat& f = quant_format(p.kind);
                if (p.codes.size() != packed_size(size_t(st.n), f.bits) || p.scales.size() != num_blocks(size_t(st.n), p.block))
                    throw Error("", name, "packed site has the wrong number of codes or scales (not loaded?)");
                st.kind = p.kind;
                st.block = p.block;
                d->alloc(st.codes, p.codes.size(), kBase, name + " (codes)");
                d->alloc(st.scales, p.scales.size(), kBase, name + " (scales)");
                d->upload(st.codes.p, p.codes.data(), p.codes.size());
                d->upload(st.scales.p, p.scales.data(), p.scales.size() * 4);
            } else if (bf16) {
                // Rounded to bf16 once, on the device, through one fp32 staging buffer (the largest
                // site), freed below; the fp32 copy is not kept. One stream: the next site's upload
                // into the staging buffer waits for this site's cast.
                if (!staging.count) d->alloc(staging, size_t(max_site), kScratch, "the bf16 conversion staging buffer");
                d->alloc(st.Wb, size_t(st.n), kBase, name + " (bf16)");
                d->upload(staging.p, m.site_weight(int(l), site), size_t(st.n) * 4);
                cuda_ops::cast_to_bf16(st.Wb.p, staging.p, st.n, d->stream_);
            } else {
                d->alloc(st.W, size_t(st.n), kBase, name);
                d->upload(st.W.p, m.site_weight(int(l), site), size_t(st.n) * 4);
            }
        }
    if (staging.count) {
        d->synchronize();
        d->alloc(staging, 0, kScratch, "the bf16 conversion staging buffer");  // freed
    }
    if (d->packed_)
        for (int s = 0; s < kLoraSites; ++s) {
            const size_t n = size_t(lora_site_out(c, LoraSite(s)) * lora_site_in(c, LoraSite(s)));
            const std::string what = std::string("the dequantization scratch of ") + lora_site_name(LoraSite(s));
            if (bf16)
                d->alloc(d->scratch_bf16_[s], n, kScratch, what + " (bf16)");
            else
                d->alloc(d->scratch_[s], n, kScratch, what);
        }

    // LoRA: LlamaCpu's slots and order (A then B per (layer, site)).
    d->slots_.resize(size_t(L) * kLoraSites);
    d->xa_site_.resize(d->slots_.size());
    d->xa_layer_.resize(size_t(L));
    std::vector<int> ranks(d->slots_.size());
    for (int64_t l = 0; l < L; ++l) {
        d->xa_layer_[size_t(l)] = d->rank_sum_;
        int64_t in_layer = 0;
        for (int s = 0; s < kLoraSites; ++s) {
            const size_t i = size_t(l) * kLoraSites + size_t(s);
            const LoraSlot& cs = m.slot(int(l), LoraSite(s));
            Slot& sl = d->slots_[i];
            sl.rank = cs.rank;
            sl.scale = cs.scale;
            sl.in = cs.in;
            sl.out = cs.out;
            ranks[i] = cs.rank;
            d->xa_site_[i] = in_layer;
            in_layer += cs.rank;
            if (!cs.rank) continue;
            sl.a = int64_t(d->lora_n_);
            d->lora_n_ += size_t(cs.rank) * size_t(cs.in);
            sl.b = int64_t(d->lora_n_);
            d->lora_n_ += size_t(cs.rank) * size_t(cs.out);
        }
        d->rank_sum_ += in_layer;
    }
    rank_sums(ranks, int(L), d->rank_sum_, d->layer_rank_max_, d->max_rank_);
    d->lora_host_.assign(d->lora_n_, 0.f);
    d->grad_host_.assign(d->lora_n_, 0.f);
    for (int64_t l = 0; l < L; ++l)
        for (int s = 0; s < kLoraSites; ++s) {
            const Slot& sl = d->slots_[size_t(l) * kLoraSites + size_t(s)];
            if (!sl.rank) continue;
            const LoraSlot& cs = m.slot(int(l), LoraSite(s));
            std::memcpy(d->lora_host_.data() + sl.a, cs.A, size_t(sl.rank * sl.in) * 4);
            std::memcpy(d->lora_host_.data() + sl.b, cs.B, size_t(sl.rank * sl.out) * 4);
        }
    d->alloc(d->lora_, d->lora_n_, kLora, "the LoRA values");
    d->alloc(d->lora_grad_, d->lora_n_, kLora, "the LoRA gradients");
    d->upload(d->lora_.p, d->lora_host_.data(), d->lora_n_ * 4);
    if (d->lora_n_) LOFTQ_CUDA_CHECK(cudaMemsetAsync(d->lora_grad_.p, 0, d->lora_n_ * 4, d->stream_));
    for (int64_t l = 0; l < L; ++l)
        for (int s = 0; s < kLoraSites; ++s) {
            const Slot& sl = d->slots_[size_t(l) * kLoraSites + size_t(s)];
            if (!sl.rank) continue;
            const std::string mp = lora_module_path(int(l), LoraSite(s));
            d->trainable_host_.push_back({peft_lora_key(mp, 'A'), d->lora_host_.data() + sl.a, d->grad_host_.data() + sl.a,
                                          sl.rank, sl.in});
            d->trainable_host_.push_back({peft_lora_key(mp, 'B'), d->lora_host_.data() + sl.b, d->grad_host_.data() + sl.b,
                                          sl.out, sl.rank});
            d->trainable_dev_.push_back({peft_lora_key(mp, 'A'), d->lora_.p + sl.a, d->lora_grad_.p + sl.a, sl.rank, sl.in});
            d->trainable_dev_.push_back({peft_lora_key(mp, 'B'), d->lora_.p + sl.b, d->lora_grad_.p + sl.b, sl.out, sl.rank});
        }
    d->inv_freq_ = ops::rope_inv_freq(c);
    d->synchronize();

    // Recompute: Auto turns it on when the planned shape would not fit the budget without it.
    d->recompute_ = opt.recompute == Recompute::On;
    if (opt.recompute == Recompute::Auto && opt.plan_batch > 0 && opt.plan_seq > 0) {
        const int bits = d->packed_ ? quant_format(d->sites_[0].kind).bits : 0;
        const int block = d->packed_ ? d->sites_[0].block : 64;
        const CudaMemory need =
            estimate_memory(c, ranks, bits, block, opt.plan_batch, opt.plan_seq, false, std::max(1, opt.accum), opt.math);
        uint64_t budget = opt.memory_budget;
        if (budget == 0) {
            size_t free_b = 0, total_b = 0;
            LOFTQ_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
            budget = uint64_t(0.9 * double(free_b)) + d->memory().total();  // what is already held counts as room
        }
        d->recompute_ = need.total() > budget;
    }
    d->note_device_used();
    return d;
}

// ---------------------------------------------------------------------------------------------
// buffers

void LlamaCuda::ensure_activations(int B, int T) {
    int64_t sz[kActParts];
    activation_sizes(cfg_, B, T, recompute_, rank_sum_, layer_rank_max_, sz);
    const size_t total = size_t(sum_of(sz, kActParts));
    if (total > act_.count) alloc(act_, total, kAct, "the activations for batch " + std::to_string(B) + " x " + std::to_string(T));
    float* p = act_.p;
    float** dst[kActParts] = {&res_, &mid_, &rstd1_, &rstd2_, &rstdf_, &q_, &k_, &v_, &alse_, &y_,
                              &g_, &u_, &xa_, &xn_, &h_, &logits_, &lse_, &row_loss_};
    for (int i = 0; i < kActParts; ++i) { *dst[i] = p; p += sz[i]; }
    const size_t N = size_t(B) * size_t(T);
    if (opt_.math == cuda_ops::GemmMath::Bf16 && N * size_t(bf16_scratch_cols(cfg_)) > act_bf16_.count)
        alloc(act_bf16_, N * size_t(bf16_scratch_cols(cfg_)), kAct, "the bf16 GEMM input scratch");
    if (N > tokens_.count) {
        alloc(tokens_, N, kAct, "the token ids");
        alloc(targets_, N, kAct, "the targets");
    }
    if (rope_T_ < T) {
        const size_t half = inv_freq_.size();
        std::vector<float> cs(size_t(T) * half), sn(size_t(T) * half);
        ops::rope_table(cs.data(), sn.data(), T, inv_freq_);
        alloc(rope_cos_, cs.size(), kAct, "the RoPE table");
        alloc(rope_sin_, sn.size(), kAct, "the RoPE table");
        upload(rope_cos_.p, cs.data(), cs.size() * 4);
        upload(rope_sin_.p, sn.data(), sn.size() * 4);
        synchronize();
        rope_T_ = T;
    }
    B_ = B;
    T_ = T;
}

void LlamaCuda::ensure_backward_scratch() {
    int64_t sz[kBwdParts];
    backward_sizes(cfg_, B_, T_, max_rank_, sz);
    ce_rows_ = ce_chunk_rows(int64_t(B_) * T_, cfg_.vocab);
    const size_t total = size_t(sum_of(sz, kBwdParts));
    if (total > grad_.count) alloc(grad_, total, kBwd, "the backward scratch");
    float* p = grad_.p;
    float** dst[kBwdParts] = {&dres_, &dxn_, &dq_, &dk_, &dv_, &dy_, &dg_, &du_, &dh_, &dxa_, &dlogits_, &att_scratch_};
    for (int i = 0; i < kBwdParts; ++i) { *dst[i] = p; p += sz[i]; }
}

// ---------------------------------------------------------------------------------------------
// LoRA host mirrors

void LlamaCuda::download_lora() {
    if (!lora_n_) return;
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(lora_host_.data(), lora_.p, lora_n_ * 4, cudaMemcpyDeviceToHost, stream_));
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(grad_host_.data(), lora_grad_.p, lora_n_ * 4, cudaMemcpyDeviceToHost, stream_));
    synchronize();
}

void LlamaCuda::upload_lora() {
    if (!lora_n_) return;
    upload(lora_.p, lora_host_.data(), lora_n_ * 4);
    synchronize();
}

void LlamaCuda::sum_lora_grads(const std::function<void(float*, size_t)>& sum) {
    if (!lora_n_) return;
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(grad_host_.data(), lora_grad_.p, lora_n_ * 4, cudaMemcpyDeviceToHost, stream_));
    synchronize();
    sum(grad_host_.data(), size_t(lora_n_));
    upload(lora_grad_.p, grad_host_.data(), lora_n_ * 4);
    synchronize();
}

}  // namespace loftq
