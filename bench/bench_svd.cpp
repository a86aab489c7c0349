// bench_svd.cpp: wall time of the rank-r factorizations LoftQ runs per weight: exact (sgesdd)
// vs randomized (Halko-Martinsson-Tropp, p = 10, q = 2) at LLM weight shapes, with 1 and 2 BLAS
// threads. Counters: err = ||X - B A||_F / ||X||_F and, where the exact spectrum is cheap
// (<= 2048), vs_exact = ||X - B A||_F / ||X - (B A)_exact||_F - 1 (0 = optimal).
// Leaves out GPU paths and the quantization half of LoftQ. Asserts nothing about time.
// Try OPENBLAS_CORETYPE=SkylakeX on AVX-512 machines (Debian's OpenBLAS picks Haswell there);
// the kernel OpenBLAS chose is printed in the context header as openblas_core.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cmath>
#include <map>
#include <utility>
#include <vector>

#include "core/matrix.h"
#include "core/rng.h"
#include "linalg/blas.h"
#include "linalg/svd.h"

using namespace loftq;

namespace {

[[maybe_unused]] const int kContext = (benchmark::AddCustomContext("openblas_core", openblas_get_corename()), 0);

// A weight-like m x n matrix: 48 rank-one terms with geometrically decaying strengths plus
// Gaussian noise (the same recipe as tests' structured_matrix, built with gemm to be quick).
const Matrix& weight(int64_t m, int64_t n) {
    static std::map<std::pair<int64_t, int64_t>, Matrix> cache;
    auto key = std::make_pair(m, n);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    const int64_t k = 48;
    Rng rng(uint64_t(m) * 1000003u + uint64_t(n));
    std::vector<float> U(size_t(m * k)), Vt(size_t(k * n));
    for (int64_t i = 0; i < m; ++i)
        for (int64_t c = 0; c < k; ++c)
            U[size_t(i * k + c)] = float(std::pow(0.9, double(c)) * std::sqrt(double(m + n)) * 0.05 * rng.normal() / std::sqrt(double(m)));
    for (auto& v : Vt) v = float(rng.normal() / std::sqrt(double(n)));
    Matrix X(m, n);
    for (auto& v : X.buf) v = float(0.02 * rng.normal());
    gemm(false, false, m, n, k, 1.f, U.data(), k, Vt.data(), n, 1.f, X.data(), n);
    return cache.emplace(key, std::move(X)).first->second;
}

double frob2(const float* x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += double(x[i]) * double(x[i]);
    return s;
}

// Squared singular values of X, descending (exact, cached): the optimal rank-r residual is the
// sum of those past r (Eckart-Young).
const std::vector<double>& spectrum2(int64_t m, int64_t n) {
    static std::map<std::pair<int64_t, int64_t>, std::vector<double>> cache;
    auto key = std::make_pair(m, n);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    auto s = singular_values(weight(m, n).data(), m, n);
    std::vector<double> s2;
    for (float v : s) s2.push_back(double(v) * double(v));
    return cache.emplace(key, std::move(s2)).first->second;
}

// ||X - B A||_F in float64 (B A formed by gemm).
double residual(const Matrix& X, const LowRank& f) {
    Matrix ba(X.rows, X.cols);
    gemm(false, false, X.rows, X.cols, f.B.cols, 1.f, f.B.data(), f.B.cols, f.A.data(), f.A.cols, 0.f, ba.data(), X.cols);
    double s = 0;
    for (size_t i = 0; i < X.size(); ++i) {
        double d = double(X.buf[i]) - double(ba.buf[i]);
        s += d * d;
    }
    return std::sqrt(s);
}

void report_error(benchmark::State& state, const Matrix& X, const LowRank& f, int r) {
    double res = residual(X, f);
    state.counters["err"] = res / std::sqrt(frob2(X.data(), X.size()));
    if (X.rows <= 2048 && X.cols <= 2048) {
        const auto& s2 = spectrum2(X.rows, X.cols);
        double tail = 0;
        for (size_t i = size_t(r); i < s2.size(); ++i) tail += s2[i];
        state.counters["vs_exact"] = res / std::sqrt(tail) - 1.0;
    }
}

// Args: m, n, r, BLAS threads.
void BM_LowRankExact(benchmark::State& state) {
    const int64_t m = state.range(0), n = state.range(1);
    const int r = int(state.range(2));
    set_blas_threads(int(state.range(3)));
    const Matrix& X = weight(m, n);
    LowRank f;
    for (auto _ : state) {
        f = low_rank_exact(X.data(), m, n, r);
        benchmark::DoNotOptimize(f.B.data());
    }
    state.counters["err"] = residual(X, f) / std::sqrt(frob2(X.data(), X.size()));
}

void BM_LowRankRandomized(benchmark::State& state) {
    const int64_t m = state.range(0), n = state.range(1);
    const int r = int(state.range(2));
    set_blas_threads(int(state.range(3)));
    const Matrix& X = weight(m, n);
    LowRank f;
    for (auto _ : state) {
        f = low_rank_randomized(X.data(), m, n, r, 10, 2, 42);
        benchmark::DoNotOptimize(f.B.data());
    }
    // Arithmetic rate of the six skinny GEMM passes over X (the dominant cost).
    const double l = double(std::min<int64_t>(r + 10, std::min(m, n)));
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(m) * double(n) * l * 6.0 * double(state.iterations()) * 1e-9,
                                                   benchmark::Counter::kIsRate);
    report_error(state, X, f, r);
}

}  // namespace

BENCHMARK(BM_LowRankExact)
    ->ArgNames({"m", "n", "r", "threads"})
    ->Args({1024, 1024, 16, 1})
    ->Args({1024, 1024, 16, 2})
    ->Args({2048, 2048, 16, 1})
    ->Args({2048, 2048, 16, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// 4096^2 exact takes 10-15 s: once, for reference (skip with --benchmark_filter=-.*Exact.*4096).
BENCHMARK(BM_LowRankExact)
    ->ArgNames({"m", "n", "r", "threads"})
    ->Args({4096, 4096, 16, 2})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK(BM_LowRankRandomized)
    ->ArgNames({"m", "n", "r", "threads"})
    ->ArgsProduct({{1024}, {1024}, {16, 64}, {1, 2}})
    ->ArgsProduct({{2048}, {2048}, {16, 64}, {1, 2}})
    ->ArgsProduct({{4096}, {4096}, {16, 64}, {1, 2}})
    ->ArgsProduct({{4096}, {11008}, {16, 64}, {1, 2}})
    ->ArgsProduct({{11008}, {4096}, {16, 64}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
