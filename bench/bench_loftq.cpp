// bench_loftq.cpp: the LoftQ decomposition end to end on LLM-shaped weights (synthetic
// projections with a power-law spectrum, noise and outlier columns, io/synthetic_model.h):
//   - one 4096 x 4096 weight, NF4 block 64, r = 16 and 64, T = 5, randomized SVD, 1 and 2 threads,
//     buffers reused between runs as a job's worker does (step1_ms, step_ms: per-step times);
//   - the same with exact SVD (LAPACK sgesdd, the PEFT-equivalent reference) when
//     LOFTQ_BENCH_EXACT=1 (about a minute or more here);
//   - a LLaMA-2-7B-shaped estimate at r = 16 and 64: one weight of each shape (4096x4096,
//     11008x4096, 4096x11008) timed single-threaded, scaled by the 224 weights (32 layers x 7) and divided by the cores,
//     as a job runs them (one weight per worker, workers = cores).
// Counters: error (LoftQ relative error after T), qlora (QLoRA baseline). Nothing is asserted.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <map>
#include <thread>

#include "io/synthetic_model.h"
#include "linalg/blas.h"
#include "loftq/decompose.h"

using namespace loftq;

namespace {
const std::vector<float>& weight(int64_t m, int64_t n) {
    static std::map<std::pair<int64_t, int64_t>, std::vector<float>> cache;
    auto& w = cache[{m, n}];
    if (w.empty()) w = synthetic_projection(m, n, 42);
    return w;
}

void run_weight(benchmark::State& st, int64_t m, int64_t n, SvdMethod svd, int threads, int rank) {
    const auto& W = weight(m, n);
    set_blas_threads(1);
    WeightSettings s;
    s.quant = QuantKind::NF4;
    s.rank = rank;
    s.iters = 5;
    s.svd = svd;
    SvdOptions o;
    o.seed = 7;
    DecomposeScratch scratch;  // as a job's worker: buffers reused from weight to weight
    Decomposition d;
    double first = 0, rest = 0;
    int runs = 0;
    for (auto _ : st) {
        scratch.recycle(std::move(d));
        d = loftq_decompose(W.data(), m, n, s, o, threads, {}, nullptr, nullptr, &scratch);
        benchmark::DoNotOptimize(d.Q.data());
        first += d.steps.front().seconds;
        for (size_t i = 1; i < d.steps.size(); ++i) rest += d.steps[i].seconds / double(d.steps.size() - 1);
        ++runs;
    }
    st.counters["error"] = d.final_error;
    st.counters["qlora"] = d.baseline;
    st.counters["threads"] = threads;
    st.counters["rank"] = rank;
    st.counters["step1_ms"] = 1e3 * first / runs;  // the first step includes the baseline quantizer pass
    st.counters["step_ms"] = 1e3 * rest / runs;    // mean of steps 2..T
}

// Args: threads, rank (r = 16: the single-weight case; r = 64: the paper's LLaMA setting).
void BM_Loftq4096(benchmark::State& st) {
    run_weight(st, 4096, 4096, SvdMethod::Randomized, int(st.range(0)), int(st.range(1)));
}
BENCHMARK(BM_Loftq4096)
    ->Args({1, 16})->Args({2, 16})->Args({1, 64})->Args({2, 64})
    ->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

void BM_Loftq4096Exact(benchmark::State& st) { run_weight(st, 4096, 4096, SvdMethod::Exact, 1, 16); }

// Arg: rank. One weight of each shape at one thread, scaled by its count and divided by the
// cores; the whole-model run (`loftq quantize` of a generated 7B checkpoint) is the real number.
void BM_Llama7BEstimate(benchmark::State& st) {
    const int cores = std::max(1u, std::thread::hardware_concurrency());
    double est = 0;
    DecomposeScratch scratch;
    for (auto _ : st) {
        est = 0;
        struct Shape { int64_t m, n; int count; };
        for (Shape sh : {Shape{11008, 4096, 64}, Shape{4096, 11008, 32}, Shape{4096, 4096, 128}}) {
            const auto& W = weight(sh.m, sh.n);
            WeightSettings s;
            s.rank = int(st.range(0));
            s.iters = 5;
            SvdOptions o;
            auto t0 = std::chrono::steady_clock::now();
            auto d = loftq_decompose(W.data(), sh.m, sh.n, s, o, 1, {}, nullptr, nullptr, &scratch);
            benchmark::DoNotOptimize(d.Q.data());
            est += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * sh.count;
            scratch.recycle(std::move(d));
        }
        est /= cores;
    }
    st.counters["est_7B_seconds"] = est;
    st.counters["cores"] = cores;
    st.counters["rank"] = double(st.range(0));
}
BENCHMARK(BM_Llama7BEstimate)->Arg(16)->Arg(64)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
}  // namespace

int main(int argc, char** argv) {
    if (const char* e = std::getenv("LOFTQ_BENCH_EXACT"); e && std::string(e) == "1")
        benchmark::RegisterBenchmark("BM_Loftq4096Exact", BM_Loftq4096Exact)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
