// bench_cuda_loftq.cpp: the GPU LoftQ decomposition (cuda/decompose_cuda.h) end to end, a plain
// main (built only with loftq_cuda), for comparison with tests/python/bench_peft_loftq.py:
//   - one 4096 x 4096 synthetic weight (io/synthetic_model.h), NF4 and NF2, block 64, r = 16 and
//     64, T = 5, randomized SVD (p = 10, q = 2); exact SVD (cuSOLVER gesvdj) with LOFTQ_BENCH_EXACT=1;
//   - a LLaMA-2-7B-shaped set: one weight of each shape (4096x4096 x 128, 11008x4096 x 64,
//     4096x11008 x 32 = 224 weights) timed, scaled by the counts (weights run one after another
//     on the one GPU);
//   - the whole 7B-shaped model as the job runs it: all 224 weights in layer order through S
//     CudaDecomposers on S threads and streams (S = 1..4; job.cpp's --gpu-streams), each weight
//     copied from host memory into its decomposer's pinned buffer first (as the job reads it
//     from the mapped checkpoint), wall time of the whole set. The host holds one weight of
//     each shape (3 generated matrices, reused: generating 6.5 G distinct values would take
//     longer than the run), so every decomposition does the full work on real data.
// Seconds are wall time of the whole call (pinned upload, all steps, download), best of `reps`
// after one warm-up call; also the sum of the step times, the error, the QLoRA baseline and the
// device bytes the call allocated. Nothing is asserted. Without a GPU it says why and exits 0.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "cuda/decompose_cuda.h"
#include "cuda/device.h"
#include "io/synthetic_model.h"

using namespace loftq;

namespace {

struct Result {
    double seconds = 1e300, step_seconds = 0, error = 0, baseline = 0;
    size_t device_bytes = 0;
};

Result time_weight(const std::vector<float>& W, int64_t m, int64_t n, QuantKind q, int r, SvdMethod svd, int reps) {
    WeightSettings s;
    s.quant = q;
    s.block = 64;
    s.rank = r;
    s.iters = 5;
    s.svd = svd;
    SvdOptions o;
    o.seed = 7;
    Result res;
    for (int rep = 0; rep <= reps; ++rep) {  // rep 0: warm-up (handles, allocator, module load)
        CudaDecomposeStats st;
        const auto t0 = std::chrono::steady_clock::now();
        const Decomposition d = loftq_decompose_cuda(W.data(), m, n, s, o, {}, nullptr, &st);
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (rep == 0) continue;
        if (sec < res.seconds) {
            res.seconds = sec;
            res.step_seconds = 0;
            for (const StepReport& x : d.steps) res.step_seconds += x.seconds;
        }
        res.error = d.final_error;
        res.baseline = d.baseline;
        res.device_bytes = st.device_bytes;
    }
    return res;
}

void print(const char* what, int64_t m, int64_t n, QuantKind q, int r, SvdMethod svd, const Result& x) {
    std::printf("%-10s %5lld x %-5lld %-4s r=%-3d %-10s %8.3f s (steps %7.3f s)  error %.5f  qlora %.5f  device %.1f MiB\n",
                what, (long long)m, (long long)n, quant_format(q).name, r,
                svd == SvdMethod::Exact ? "exact" : "randomized", x.seconds, x.step_seconds, x.error, x.baseline,
                double(x.device_bytes) / (1 << 20));
    std::fflush(stdout);
}

// All 224 weights of the 7B shape through `streams` decomposers; returns wall seconds.
double time_model(const std::vector<std::vector<float>>& host, QuantKind q, int streams, double* mean_error,
                  size_t* peak_bytes) {
    struct Shape { int64_t m, n; };
    const Shape shapes[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
    std::vector<int> order;  // per layer: q k v o (shape 0), gate up (1), down (2)
    for (int l = 0; l < 32; ++l)
        for (int k : {0, 0, 0, 0, 1, 1, 2}) order.push_back(k);
    WeightSettings s;
    s.quant = q;
    s.block = 64;
    s.rank = 64;
    s.iters = 5;
    std::vector<std::unique_ptr<CudaDecomposer>> dec;
    for (int i = 0; i < streams; ++i) dec.push_back(std::make_unique<CudaDecomposer>());
    std::atomic<size_t> next{0};
    std::vector<double> err(order.size());
    const auto t0 = std::chrono::steady_clock::now();
    auto work = [&](int w) {
        for (size_t i; (i = next.fetch_add(1)) < order.size();) {
            const Shape sh = shapes[order[i]];
            float* W = dec[size_t(w)]->staging(size_t(sh.m * sh.n));
            std::memcpy(W, host[size_t(order[i])].data(), size_t(sh.m * sh.n) * sizeof(float));
            SvdOptions o;
            o.seed = 7 + i;
            err[i] = dec[size_t(w)]->run(W, sh.m, sh.n, s, o).final_error;
        }
    };
    std::vector<std::thread> pool;
    for (int w = 1; w < streams; ++w) pool.emplace_back(work, w);
    work(0);
    for (auto& t : pool) t.join();
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double se = 0;
    for (double e : err) se += e;
    *mean_error = se / double(err.size());
    *peak_bytes = 0;
    for (auto& d : dec) *peak_bytes += d->peak_device_bytes();
    return sec;
}

}  // namespace

int main() {
    std::string why;
    if (!cuda_available(&why)) {
        std::printf("bench_cuda_loftq: no CUDA device (%s); nothing to time\n", why.c_str());
        return 0;
    }
    std::printf("device: %s\n", cuda_device_name().c_str());
    const bool exact = std::getenv("LOFTQ_BENCH_EXACT") && std::string(std::getenv("LOFTQ_BENCH_EXACT")) == "1";
    try {
        const std::vector<float> W = synthetic_projection(4096, 4096, 42);
        for (QuantKind q : {QuantKind::NF4, QuantKind::NF2})
            for (int r : {16, 64}) {
                print("single", 4096, 4096, q, r, SvdMethod::Randomized, time_weight(W, 4096, 4096, q, r, SvdMethod::Randomized, 3));
                if (exact) print("single", 4096, 4096, q, r, SvdMethod::Exact, time_weight(W, 4096, 4096, q, r, SvdMethod::Exact, 1));
            }
        struct Shape { int64_t m, n; int count; };
        const Shape shapes[] = {{4096, 4096, 128}, {11008, 4096, 64}, {4096, 11008, 32}};
        for (QuantKind q : {QuantKind::NF4, QuantKind::NF2})
            for (SvdMethod svd : {SvdMethod::Randomized, SvdMethod::Exact}) {
                if (svd == SvdMethod::Exact && !exact) continue;
                double total = 0;
                for (const Shape& sh : shapes) {
                    const std::vector<float> w = synthetic_projection(sh.m, sh.n, 43);
                    const Result x = time_weight(w, sh.m, sh.n, q, 64, svd, 1);
                    print("llama2-7b", sh.m, sh.n, q, 64, svd, x);
                    total += x.seconds * sh.count;
                }
                std::printf("llama2-7b  224 weights %-4s r=64  %-10s estimated %.1f s\n", quant_format(q).name,
                            svd == SvdMethod::Exact ? "exact" : "randomized", total);
            }
        std::vector<std::vector<float>> host;
        for (auto [m, n] : {std::pair<int64_t, int64_t>{4096, 4096}, {11008, 4096}, {4096, 11008}})
            host.push_back(synthetic_projection(m, n, 44));
        for (QuantKind q : {QuantKind::NF4, QuantKind::NF2})
            for (int streams : {1, 2, 3, 4}) {
                double err = 0;
                size_t peak = 0;
                const double sec = time_model(host, q, streams, &err, &peak);
                std::printf("llama2-7b  224 weights %-4s r=64 T=5 randomized  %d stream%s  %.1f s wall  mean error %.5f  peak device %.2f GiB\n",
                            quant_format(q).name, streams, streams == 1 ? " " : "s", sec, err, double(peak) / double(1u << 30));
                std::fflush(stdout);
            }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_cuda_loftq: %s\n", e.what());
        return 1;
    }
    return 0;
}
