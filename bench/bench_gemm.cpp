// bench_gemm.cpp: GFLOP/s of the training step's large products on the CPU, our FMA tiles
// (linalg/tile_gemm.h) beside OpenBLAS sgemm on the same shapes, single-threaded by default
// (--threads via LOFTQ_BENCH_THREADS). The shapes are those of bench-finetune's issue-18 model
// (hidden 512, MLP 688, vocab 4000, batch 4 x 256 = 1024 token rows):
//   NT  y = x W^T   (forward of a projection / the LM head)
//   NN  dx = dy W   (backward, input gradient)
// Counter GFLOPs = 2 M N K / time. The OpenBLAS kernel family in use is printed as openblas_core
// (OPENBLAS_CORETYPE=SkylakeX etc. changes it). Asserts nothing.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdlib>
#include <vector>

#include "core/rng.h"
#include "linalg/blas.h"
#include "linalg/tile_gemm.h"

using namespace loftq;

namespace {

[[maybe_unused]] const int kContext = (benchmark::AddCustomContext("openblas_core", openblas_get_corename()), 0);

int bench_threads() {
    const char* e = std::getenv("LOFTQ_BENCH_THREADS");
    return e ? std::max(1, std::atoi(e)) : 1;
}

std::vector<float> randn(size_t n, uint64_t seed) {
    Rng rng(seed);
    std::vector<float> v(n);
    for (auto& x : v) x = float(rng.normal());
    return v;
}

// Args: M, N, K, trans_b (1 = NT), ours (1) or OpenBLAS (0).
void BM_Gemm(benchmark::State& st) {
    const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
    const bool tb = st.range(3) != 0, ours = st.range(4) != 0;
    const auto A = randn(size_t(M * K), 1), B = randn(size_t(N * K), 2);
    std::vector<float> C(size_t(M * N));
    const int threads = bench_threads();
    set_blas_threads(threads);
    for (auto _ : st) {
        if (ours) tile_gemm(tb, M, N, K, A.data(), K, B.data(), tb ? K : N, C.data(), N, false, threads);
        else gemm(false, tb, M, N, K, 1.f, A.data(), K, B.data(), tb ? K : N, 0.f, C.data(), N);
        benchmark::DoNotOptimize(C.data());
    }
    st.counters["GFLOPs"] = benchmark::Counter(2.0 * double(M) * double(N) * double(K), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
    st.counters["threads"] = threads;
    st.SetLabel(ours ? "tile_gemm" : "openblas");
}
BENCHMARK(BM_Gemm)
    ->ArgNames({"M", "N", "K", "NT", "ours"})
    ->Args({1024, 512, 512, 1, 1})->Args({1024, 512, 512, 1, 0})      // q / o projection forward
    ->Args({1024, 688, 512, 1, 1})->Args({1024, 688, 512, 1, 0})      // gate / up forward
    ->Args({1024, 512, 688, 0, 1})->Args({1024, 512, 688, 0, 0})      // gate / up backward (dx)
    ->Args({1024, 4000, 512, 1, 1})->Args({1024, 4000, 512, 1, 0})    // LM head forward
    ->Args({1024, 512, 4000, 0, 1})->Args({1024, 512, 4000, 0, 0})    // LM head backward
    ->Unit(benchmark::kMillisecond)->MinTime(0.5)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
