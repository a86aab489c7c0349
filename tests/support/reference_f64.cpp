// reference_f64.cpp: see reference_f64.h. Plain loops, no BLAS, no LAPACK: independent of the
// code under test.
#include "reference_f64.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace loftq::test {

void svd_f64(const std::vector<double>& X, int64_t m, int64_t n, std::vector<double>& U, std::vector<double>& S,
             std::vector<double>& Vt) {
    // Work on A (rows x cols) with rows >= cols: A = X or X^T.
    const bool tr = m < n;
    const int64_t R = tr ? n : m, C = tr ? m : n;
    std::vector<double> A(static_cast<size_t>(R * C)), V(static_cast<size_t>(C * C), 0.0);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double x = X[size_t(i * n + j)];
            if (tr) A[size_t(j * C + i)] = x; else A[size_t(i * C + j)] = x;
        }
    for (int64_t i = 0; i < C; ++i) V[size_t(i * C + i)] = 1.0;
    for (int sweep = 0; sweep < 60; ++sweep) {
        double off = 0;
        for (int64_t p = 0; p < C - 1; ++p)
            for (int64_t q = p + 1; q < C; ++q) {
                double a = 0, b = 0, g = 0;
                for (int64_t i = 0; i < R; ++i) {
                    double x = A[size_t(i * C + p)], y = A[size_t(i * C + q)];
                    a += x * x; b += y * y; g += x * y;
                }
                if (std::abs(g) <= 1e-300 || std::abs(g) <= 1e-15 * std::sqrt(a * b)) continue;
                off = std::max(off, std::abs(g) / std::sqrt(a * b));
                double zeta = (b - a) / (2 * g);
                double t = (zeta >= 0 ? 1.0 : -1.0) / (std::abs(zeta) + std::sqrt(1 + zeta * zeta));
                double c = 1 / std::sqrt(1 + t * t), s = c * t;
                for (int64_t i = 0; i < R; ++i) {
                    double x = A[size_t(i * C + p)], y = A[size_t(i * C + q)];
                    A[size_t(i * C + p)] = c * x - s * y;
                    A[size_t(i * C + q)] = s * x + c * y;
                }
                for (int64_t i = 0; i < C; ++i) {
                    double x = V[size_t(i * C + p)], y = V[size_t(i * C + q)];
                    V[size_t(i * C + p)] = c * x - s * y;
                    V[size_t(i * C + q)] = s * x + c * y;
                }
            }
        if (off < 1e-15) break;
    }
    std::vector<double> sv(static_cast<size_t>(C));
    for (int64_t j = 0; j < C; ++j) {
        double s = 0;
        for (int64_t i = 0; i < R; ++i) s += A[size_t(i * C + j)] * A[size_t(i * C + j)];
        sv[size_t(j)] = std::sqrt(s);
    }
    std::vector<int64_t> order(static_cast<size_t>(C));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return sv[size_t(a)] > sv[size_t(b)]; });
    // A = Ul S, V: X^(T?) = Ul S V^T.  If tr: X = V S Ul^T.
    const int64_t k = C;
    S.assign(size_t(k), 0);
    U.assign(size_t(m * k), 0);
    Vt.assign(size_t(k * n), 0);
    for (int64_t c = 0; c < k; ++c) {
        int64_t j = order[size_t(c)];
        double s = sv[size_t(j)];
        S[size_t(c)] = s;
        for (int64_t i = 0; i < R; ++i) {
            double ul = s > 0 ? A[size_t(i * C + j)] / s : 0.0;
            if (tr) Vt[size_t(c * n + i)] = ul; else U[size_t(i * k + c)] = ul;
        }
        for (int64_t i = 0; i < C; ++i) {
            double v = V[size_t(i * C + j)];
            if (tr) U[size_t(i * k + c)] = v; else Vt[size_t(c * n + i)] = v;
        }
    }
}

std::vector<double> rank_r_f64(const std::vector<double>& X, int64_t m, int64_t n, int r) {
    std::vector<double> U, S, Vt;
    svd_f64(X, m, n, U, S, Vt);
    const int64_t k = int64_t(S.size());
    r = int(std::min<int64_t>(r, k));
    std::vector<double> L(static_cast<size_t>(m * n), 0.0);
    for (int c = 0; c < r; ++c)
        for (int64_t i = 0; i < m; ++i) {
            double u = U[size_t(i * k + c)] * S[size_t(c)];
            for (int64_t j = 0; j < n; ++j) L[size_t(i * n + j)] += u * Vt[size_t(c * n + j)];
        }
    return L;
}

std::vector<double> loftq_errors_f64(const std::vector<float>& W, int64_t m, int64_t n, int r, int T, QuantDequant qd,
                                     const void* ctx, std::vector<float>* final_q) {
    const size_t N = size_t(m * n);
    double wn = 0;
    for (float x : W) wn += double(x) * double(x);
    wn = std::sqrt(wn);
    std::vector<float> res(W), q(N);
    std::vector<double> errs;
    auto err_of = [&](const std::vector<double>& L) {
        double s = 0;
        for (size_t i = 0; i < N; ++i) {
            double d = double(W[i]) - double(q[i]) - (L.empty() ? 0.0 : L[i]);
            s += d * d;
        }
        return std::sqrt(s) / wn;
    };
    qd(W.data(), N, q.data(), ctx);
    errs.push_back(err_of({}));
    for (int t = 1; t <= T; ++t) {
        qd(res.data(), N, q.data(), ctx);
        std::vector<double> D(N);
        for (size_t i = 0; i < N; ++i) D[i] = double(W[i]) - double(q[i]);
        std::vector<double> L = rank_r_f64(D, m, n, r);
        errs.push_back(err_of(L));
        for (size_t i = 0; i < N; ++i) res[i] = float(double(W[i]) - L[i]);
    }
    if (final_q) *final_q = q;
    return errs;
}

}  // namespace loftq::test
