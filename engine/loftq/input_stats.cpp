// input_stats.cpp: see input_stats.h.
#include "loftq/input_stats.h"

#include <lapacke.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/parallel.h"

namespace loftq {

InputStats input_stats_from_gram(const std::vector<double>& gram, int64_t in, int64_t tokens, bool full) {
    if (in <= 0 || gram.size() != size_t(in) * size_t(in)) throw Error("input stats: Gram of the wrong size");
    InputStats st;
    st.in = in;
    st.tokens = tokens;
    st.full = full;
    if (!full) {
        st.R.resize(size_t(in));
        for (int64_t j = 0; j < in; ++j) st.R[size_t(j)] = float(std::sqrt(std::max(0.0, gram[size_t(j * in + j)])));
        return st;
    }
    // G = V diag(w) V^T, ascending eigenvalues; R = diag(sqrt(w)) V^T over the kept ones.
    std::vector<double> v(gram);
    std::vector<double> w(static_cast<size_t>(in));
    const lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', lapack_int(in), v.data(), lapack_int(in), w.data());
    if (info != 0) throw Error("input stats: eigendecomposition of a " + std::to_string(in) + " x " + std::to_string(in) +
                               " Gram failed (LAPACK dsyevd info " + std::to_string(info) + ")");
    const double wmax = std::max(0.0, w[size_t(in - 1)]);
    std::vector<int64_t> keep;
    for (int64_t e = in - 1; e >= 0; --e)
        if (w[size_t(e)] > 1e-12 * wmax && w[size_t(e)] > 0) keep.push_back(e);
    st.k = int64_t(keep.size());
    st.R.resize(size_t(st.k) * size_t(in));
    for (int64_t r = 0; r < st.k; ++r) {
        const int64_t e = keep[size_t(r)];
        const double s = std::sqrt(w[size_t(e)]);
        for (int64_t j = 0; j < in; ++j) st.R[size_t(r * in + j)] = float(s * v[size_t(j * in + e)]);  // column e of V
    }
    return st;
}

namespace {
// dot of two float rows with 8 partial sums (vectorizable without reassociation flags; the
// order is fixed, so the bits do not depend on threads).
inline float dot8(const float* a, const float* b, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int u = 0; u < 8; ++u) acc[u] += a[j + u] * b[j + u];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; j < n; ++j) s += a[j] * b[j];
    return s;
}
}  // namespace

double output_error_sq(const InputStats& st, const float* E, int64_t m, int threads) {
    const int64_t n = st.in;
    std::vector<double> part(size_t(m), 0.0);
    if (st.full) {
        parallel_for(m, threads, 8, [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) {
                double s = 0;
                for (int64_t r = 0; r < st.k; ++r) {
                    const double p = dot8(E + i * n, st.R.data() + r * n, n);
                    s += p * p;
                }
                part[size_t(i)] = s;
            }
        });
    } else {
        parallel_for(m, threads, 64, [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) {
                double s = 0;
                for (int64_t j = 0; j < n; ++j) {
                    const double p = double(E[i * n + j]) * double(st.R[size_t(j)]);
                    s += p * p;
                }
                part[size_t(i)] = s;
            }
        });
    }
    double s = 0;
    for (double p : part) s += p;
    return s;
}

}  // namespace loftq
