// reference_f64.h: independent float64 references for the tests: a one-sided Jacobi SVD
// (Hestenes), the best rank-r approximation built from it, and the LoftQ alternation written
// directly from the paper in float64 (with the quantizer applied to the fp32-rounded residual,
// since the quantizer is defined on fp32 inputs).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace loftq::test {

// X (m x n, row-major) = U diag(S) Vt with U m x k, Vt k x n, k = min(m, n), S descending.
void svd_f64(const std::vector<double>& X, int64_t m, int64_t n, std::vector<double>& U, std::vector<double>& S,
             std::vector<double>& Vt);
// Best rank-r approximation of X (m x n) in float64.
std::vector<double> rank_r_f64(const std::vector<double>& X, int64_t m, int64_t n, int r);

// LoftQ in float64: returns the relative errors after each of T steps (index 0 = QLoRA baseline,
// i.e. ||W - q(W)|| / ||W||). `qd` quantizes-dequantizes an fp32 vector.
using QuantDequant = void (*)(const float* x, size_t n, float* out, const void* ctx);
// final_q (optional): the last step's dequantized backbone Q_T.
std::vector<double> loftq_errors_f64(const std::vector<float>& W, int64_t m, int64_t n, int r, int T, QuantDequant qd,
                                     const void* ctx, std::vector<float>* final_q = nullptr);

}  // namespace loftq::test
