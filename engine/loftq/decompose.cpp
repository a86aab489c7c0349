// decompose.cpp: see decompose.h. The residual updates and norms are fused element loops; the
// heavy parts are the quantizer (quant/) and the rank-r factorization (linalg/).
#include "loftq/decompose.h"

#include <chrono>
#include <atomic>
#include <cmath>
#include <exception>
#include <memory>
#include <thread>

#include "core/clock.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "linalg/low_rank_update.h"

namespace loftq {

namespace {

// sum (a - b)^2 (b == nullptr: sum a^2) in float64, chunked so the result does not depend on
// the thread count.
double diff_sq(const float* a, const float* b, size_t n, int threads) {
    constexpr int64_t kChunk = 1 << 16;
    int64_t chunks = int64_t((n + kChunk - 1) / kChunk);
    std::vector<double> part(size_t(chunks), 0.0);
    parallel_for(chunks, threads, 4, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
            size_t i0 = size_t(c) * kChunk, i1 = std::min(n, i0 + kChunk);
            double s = 0;
            if (b)
                for (size_t i = i0; i < i1; ++i) { double d = double(a[i]) - double(b[i]); s += d * d; }
            else
                for (size_t i = i0; i < i1; ++i) s += double(a[i]) * double(a[i]);
            part[size_t(c)] = s;
        }
    });
    double s = 0;
    for (double p : part) s += p;
    return s;
}

void sub(const float* a, const float* b, float* out, size_t n, int threads) {
    parallel_for(int64_t(n), threads, 1 << 16, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) out[i] = a[i] - b[i];
    });
}
}  // namespace

// The rank-r factorization, cancellable: an exact SVD of a large weight is one LAPACK call of
// seconds to minutes that cannot be interrupted, so with a token it runs on a helper thread that
// owns a copy of its input; the caller polls the token every 20 ms and, when cancelled, abandons
// the helper (it finishes on its own and frees what it owns) and throws Cancelled at once.
static LowRank low_rank_cancellable(const float* X, int64_t m, int64_t n, int r, const SvdOptions& o,
                                    const CancelToken* cancel) {
    constexpr int64_t kAsyncElements = 1 << 20;  // below this an exact SVD takes well under a second
    if (!cancel || o.method != SvdMethod::Exact || m * n < kAsyncElements) return low_rank(X, m, n, r, o);
    struct Shared {
        std::vector<float> x;
        LowRank result;
        std::exception_ptr error;
        std::atomic<bool> done{false};
    };
    auto sh = std::make_shared<Shared>();
    sh->x.assign(X, X + size_t(m) * size_t(n));
    std::thread([sh, m, n, r, o] {
        try {
            sh->result = low_rank(sh->x.data(), m, n, r, o);
        } catch (...) {
            sh->error = std::current_exception();
        }
        sh->done.store(true, std::memory_order_release);
    }).detach();
    while (!sh->done.load(std::memory_order_acquire)) {
        if (cancel->cancelled()) throw Cancelled();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (sh->error) std::rethrow_exception(sh->error);
    return std::move(sh->result);
}

uint64_t weight_seed(uint64_t plan_seed, const std::string& name, int step) {
    uint64_t x = plan_seed ^ hash_name(name) ^ (uint64_t(step) * 0x9e3779b97f4a7c15ull);
    return splitmix64(x);
}

Decomposition loftq_decompose(const float* W, int64_t m, int64_t n, const WeightSettings& s, const SvdOptions& svd,
                              int threads, const std::function<void(const StepReport&)>& on_step,
                              const CancelToken* cancel, const InputStats* input, DecomposeScratch* scratch) {
    auto t_start = Clock::now();
    const QuantFormat& fmt = quant_format(s.quant);
    const size_t N = size_t(m) * size_t(n);
    DecomposeScratch local;
    DecomposeScratch& ws = scratch ? *scratch : local;
    Decomposition d;
    // Q, codes and scales reuse a recycled result's storage; every element is written below.
    d.Q = std::move(ws.spare.Q);
    d.codes = std::move(ws.spare.codes);
    d.scales = std::move(ws.spare.scales);
    ws.spare = Decomposition{};
    d.Q.reshape_uninit(m, n);
    d.codes.resize(N);
    d.scales.resize(num_blocks(N, s.block));
    d.w_norm = std::sqrt(diff_sq(W, nullptr, N, threads));
    const double inv_norm = d.w_norm > 0 ? 1.0 / d.w_norm : 0.0;
    const int r = int(std::min<int64_t>(s.rank, std::min(m, n)));
    const bool steps = s.iters > 0 && r > 0;

    if (cancel) cancel->throw_if_cancelled();
    // Q_1 = q(W): the QLoRA baseline and the first step's backbone; with steps to run, the same
    // pass writes the first residual R = W - Q_1.
    auto t_step = Clock::now();
    Matrix& R = ws.R;  // W - Q_t, then the residual W - B A for the next step's quantizer
    if (steps) {
        R.reshape_uninit(m, n);
        quantize_residual(fmt, W, N, s.block, W, d.Q.data(), R.data(), d.codes.data(), d.scales.data(), threads);
    } else {
        quantize_dequantize(fmt, W, N, s.block, d.Q.data(), d.codes.data(), d.scales.data(), threads);
    }
    d.baseline = std::sqrt(diff_sq(W, d.Q.data(), N, threads)) * inv_norm;
    d.final_error = d.baseline;
    // Output errors ||X E^T|| / ||X W^T|| of E = a - b (input_stats.h), through one scratch.
    if (input && input->in != n)
        throw Error("LoftQ: input statistics have " + std::to_string(input->in) + " features, the weight " +
                    std::to_string(n) + " columns");
    if (input) ws.E.reshape_uninit(m, n);
    double inv_out = 0;
    auto out_error = [&](const float* a, const float* b) {
        sub(a, b, ws.E.data(), N, threads);
        return std::sqrt(output_error_sq(*input, ws.E.data(), m, threads)) * inv_out;
    };
    if (input) {
        d.out_norm = std::sqrt(output_error_sq(*input, W, m, threads));
        inv_out = d.out_norm > 0 ? 1.0 / d.out_norm : 0.0;
        d.out_baseline = out_error(W, d.Q.data());
        d.out_final = d.out_baseline;
    }
    if (!steps) {
        d.lr.B = Matrix(m, 0);
        d.lr.A = Matrix(0, n);
        d.seconds = since(t_start);
        return d;
    }

    for (int t = 1; t <= s.iters; ++t) {
        if (t > 1) {
            if (cancel) cancel->throw_if_cancelled();
            t_step = Clock::now();
            // Q_t = q(W - B A) and R = W - Q_t, in place over the residual.
            quantize_residual(fmt, R.data(), N, s.block, W, d.Q.data(), R.data(), d.codes.data(), d.scales.data(),
                              threads);
        }
        SvdOptions o = svd;
        o.method = s.svd;
        o.threads = svd.threads > 0 ? svd.threads : threads;
        uint64_t x = svd.seed + uint64_t(t);  // svd.seed is the weight's seed (weight_seed)
        o.seed = splitmix64(x);
        d.lr = low_rank_cancellable(R.data(), m, n, r, o, cancel);
        // R = W - B A (next residual) and error = ||R - Q|| = ||W - Q - B A||, one pass.
        const double e2 = sub_low_rank(W, d.lr.B.data(), d.lr.A.data(), m, n, d.lr.B.cols, R.data(), d.Q.data(),
                                       threads);
        d.final_error = std::sqrt(e2) * inv_norm;
        if (input) d.out_final = out_error(R.data(), d.Q.data());
        StepReport rep{t, d.final_error, since(t_step), d.baseline, d.out_final, d.out_baseline};
        d.steps.push_back(rep);
        if (on_step) on_step(rep);
    }
    d.seconds = since(t_start);
    return d;
}

}  // namespace loftq
