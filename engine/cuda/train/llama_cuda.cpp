// llama_cuda.cpp: see llama_cuda.h. Host code only: buffers, uploads, the order of the device ops
// (cuda/train/ops_cuda.h) and two cuBLAS GEMMs of the LM head. The forward and backward below are
// LlamaCpu::forward / backward (model/llama_cpu.cpp) line by line; where they differ, a comment
// says why. Every CUDA and cuBLAS call is checked (file, line, call, error).
#include "cuda/train/llama_cuda.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/units.h"
#include "cuda/cuda_check.h"
#include "io/peft_adapter.h"
#include "model/ops.h"
#include "quant/quantizer.h"

namespace loftq {

namespace {

// Sub-buffers carved out of one allocation start on 256-byte boundaries (vector loads in kernels).
int64_t pad(int64_t floats) { return (floats + 63) / 64 * 64; }

// The LM head's GEMMs (its weight stays fp32 in every mode): TF32 under Tf32 and Bf16.
cublasComputeType_t compute_type(cuda_ops::GemmMath m) {
    return m == cuda_ops::GemmMath::Fp32 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
}

// GemmMath::Bf16: the bf16 copy of a base GEMM's input (x: in columns, dy: out columns), N rows.
int64_t bf16_scratch_cols(const LlamaConfig& c) {
    return std::max<int64_t>({int64_t(c.dim), int64_t(c.kv_dim()), int64_t(c.hidden)});
}

// Rank sums of a ranks table (n_layers x 7).
void rank_sums(const std::vector<int>& ranks, int L, int64_t& total, int64_t& layer_max, int& max_rank) {
    total = layer_max = 0;
    max_rank = 0;
    for (int l = 0; l < L; ++l) {
        int64_t layer = 0;
        for (int s = 0; s < kLoraSites; ++s) {
            const int r = std::max(0, ranks[size_t(l) * kLoraSites + size_t(s)]);
            layer += r;
            max_rank = std::max(max_rank, r);
        }
        total += layer;
        layer_max = std::max(layer_max, layer);
    }
}

// The activation block's parts at (B, T), in carving order:
//   res, mid, rstd1, rstd2, rstdf, q, k, v, alse, y, g, u, xa, xn, h, logits, lse, row_loss.
// recompute: one layer's intermediates instead of L (the residual inputs are always kept).
constexpr int kActParts = 18;
void activation_sizes(const LlamaConfig& c, int64_t B, int64_t T, bool recompute, int64_t rank_sum,
                      int64_t layer_rank_max, int64_t out[kActParts]) {
    const int64_t N = B * T, C = c.dim, KV = c.kv_dim(), F = c.hidden, V = c.vocab, L = c.n_layers, H = c.n_heads;
    const int64_t Lx = recompute ? 1 : L;
    const int64_t s[kActParts] = {
        (L + 1) * N * C,                           // res: every layer's residual input + the final residual
        Lx * N * C,                                // mid
        Lx * N, Lx * N, N,                         // rstd1, rstd2, rstdf
        Lx * N * C,                                // q (after RoPE)
        Lx * N * KV, Lx * N * KV,                  // k (after RoPE), v
        Lx * B * H * T,                            // attention log-sum-exp (instead of B x H x T x T)
        Lx * N * C,                                // y (attention output)
        Lx * N * F, Lx * N * F,                    // g, u
        N * std::max<int64_t>(recompute ? layer_rank_max : rank_sum, 1),  // x A^T of each adapted site
        N * C, N * F,                              // xn, h (recomputed in backward, as on the CPU)
        N * V, N, N,                               // logits, CE log-sum-exp, per-row losses
    };
    for (int i = 0; i < kActParts; ++i) out[i] = pad(s[i]);
}

// The LM head's backward goes through dlogits in chunks of `rows` x V (<= 2^24 floats, 64 MB).
int64_t ce_chunk_rows(int64_t N, int64_t V) {
    return std::min<int64_t>(N, std::max<int64_t>(16, (int64_t(1) << 24) / std::max<int64_t>(V, 1)));
}

// Backward scratch at (B, T): dres, dxn, dq, dk, dv, dy, dg, du, dh, dxa, dlogits, attention scratch.
constexpr int kBwdParts = 12;
void backward_sizes(const LlamaConfig& c, int64_t B, int64_t T, int max_rank, int64_t out[kBwdParts]) {
    const int64_t N = B * T, C = c.dim, KV = c.kv_dim(), F = c.hidden, V = c.vocab;
    const int64_t s[kBwdParts] = {
        N * C, N * C, N * C, N * KV, N * KV, N * C, N * F, N * F, N * F, N * std::max(max_rank, 1),
        ce_chunk_rows(N, V) * V,
        std::max<int64_t>(1, cuda_ops::attention_backward_scratch(int(B), int(T), c.n_heads, c.n_kv_heads, c.head_dim())),
    };
    for (int i = 0; i < kBwdParts; ++i) out[i] = pad(s[i]);
}

int64_t sum_of(const int64_t* v, int n) {
    int64_t t = 0;
    for (int i = 0; i < n; ++i) t += v[i];
    return t;
}

}  // namespace

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

std::string CudaMemory::summary() const {
    std::string s = "base " + human_bytes(double(base));
    if (dequant_scratch) s += " (+ dequantization scratch " + human_bytes(double(dequant_scratch)) + ")";
    s += ", LoRA " + human_bytes(double(lora)) + ", optimizer " + human_bytes(double(optimizer)) + ", activations " + human_bytes(double(activations)) + ", backward " +
         human_bytes(double(backward)) + "; peak " + human_bytes(double(peak));
    if (device_total) s += "; device used " + human_bytes(double(device_peak_used)) + " at peak of " + human_bytes(double(device_total)) + " (context included)";
    return s;
}

// ---------------------------------------------------------------------------------------------
// memory

CudaMemory LlamaCuda::estimate_memory(const LlamaConfig& c, const std::vector<int>& ranks, int quant_bits, int block,
                                      int B, int T, bool recompute, int accum, cuda_ops::GemmMath math) {
    const int64_t C = c.dim, KV = c.kv_dim(), V = c.vocab, L = c.n_layers;
    if (int64_t(ranks.size()) != L * kLoraSites) throw Error("estimate_memory: ranks need n_layers x 7 entries");
    CudaMemory m;
    const bool bf16 = math == cuda_ops::GemmMath::Bf16;
    const uint64_t wbytes = bf16 ? 2 : 4;  // bytes per fp32-site weight or dequantized scratch value
    uint64_t sites = 0, scratch = 0, lora = 0;
    for (int s = 0; s < kLoraSites; ++s) {
        const uint64_t n = uint64_t(lora_site_out(c, LoraSite(s)) * lora_site_in(c, LoraSite(s)));
        sites += uint64_t(L) * (quant_bits > 0 ? packed_size(n, quant_bits) + 4 * num_blocks(n, block) : wbytes * n);
        if (quant_bits > 0) scratch += wbytes * n;
    }
    for (int64_t l = 0; l < L; ++l)
        for (int s = 0; s < kLoraSites; ++s)
            lora += uint64_t(std::max(0, ranks[size_t(l * kLoraSites + s)])) *
                    uint64_t(lora_site_in(c, LoraSite(s)) + lora_site_out(c, LoraSite(s)));
    m.base = sites + 4 * uint64_t(V * C * (c.tied_embeddings ? 1 : 2) + (2 * L + 1) * C + (c.qkv_bias ? L * (C + 2 * KV) : 0));
    m.dequant_scratch = scratch;
    m.lora = 8 * lora;
    m.optimizer = 8 * lora + (accum > 1 ? 4 * lora : 0);
    int64_t rank_sum = 0, layer_max = 0;
    int max_rank = 0;
    rank_sums(ranks, int(L), rank_sum, layer_max, max_rank);
    int64_t a[kActParts], b[kBwdParts];
    activation_sizes(c, B, T, recompute, rank_sum, layer_max, a);
    backward_sizes(c, B, T, max_rank, b);
    // + the RoPE tables (2 x T x d/2) and the token ids and targets (2 x N ints)
    m.activations = 4 * uint64_t(sum_of(a, kActParts) + 2 * int64_t(T) * (c.head_dim() / 2)) + 8 * uint64_t(B) * T;
    if (bf16) m.activations += 2 * uint64_t(int64_t(B) * T * bf16_scratch_cols(c));  // the GEMM inputs' bf16 copy
    m.backward = 4 * uint64_t(sum_of(b, kBwdParts));
    m.peak = m.total();
    return m;
}

template <class T>
void LlamaCuda::alloc(DeviceArray<T>& a, size_t n, Cat cat, const std::string& what) {
    held_[cat] -= a.bytes();
    try {
        a.reset(n);
    } catch (const Error& e) {
        throw Error("CUDA: cannot allocate " + what + " (" + human_bytes(double(uint64_t(n) * sizeof(T))) + ") on the device; held so far: " +
                    memory().summary() + ". Try --recompute on, a smaller --batch or --seq, or a lower rank. (" + e.what() + ")");
    }
    held_[cat] += a.bytes();
    uint64_t total = 0;
    for (uint64_t h : held_) total += h;
    peak_ = std::max(peak_, total);
}

void LlamaCuda::track_external(int64_t bytes) {
    held_[kOpt] = uint64_t(std::max<int64_t>(0, int64_t(held_[kOpt]) + bytes));
    uint64_t total = 0;
    for (uint64_t h : held_) total += h;
    peak_ = std::max(peak_, total);
}

void LlamaCuda::note_device_used() const {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
        device_peak_used_ = std::max<uint64_t>(device_peak_used_, uint64_t(total_b - free_b));
    else
        (void)cudaGetLastError();
}

CudaMemory LlamaCuda::memory() const {
    CudaMemory m;
    m.base = held_[kBase];
    m.dequant_scratch = held_[kScratch];
    m.lora = held_[kLora];
    m.optimizer = held_[kOpt];
    m.activations = held_[kAct];
    m.backward = held_[kBwd];
    m.peak = peak_;
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
        m.device_used = uint64_t(total_b - free_b);
        m.device_total = uint64_t(total_b);
    } else {
        (void)cudaGetLastError();
    }
    m.device_peak_used = std::max(device_peak_used_, m.device_used);
    return m;
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

}  // namespace loftq
