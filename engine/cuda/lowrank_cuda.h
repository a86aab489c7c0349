// lowrank_cuda.h: rank-r factorizations X ~= B A of an m x n row-major fp32 matrix on the GPU,
// the device counterpart of linalg/svd.h (same factor layout: B = U_r sqrt(S_r), m x r row-major;
// A = sqrt(S_r) V_r^T, r x n row-major; S_r descending).
//
// Randomized (Halko-Martinsson-Tropp, as low_rank_randomized): the Gaussian test matrix is
// generated on the HOST with the CPU's generator and draw order (Rng(seed), row i of the n x l
// Omega gets l draws), so both backends probe with the same Omega; it is copied to the device.
// Range finder and power iterations are cuBLAS sgemm (fp32, CUBLAS_DEFAULT_MATH: no TF32), each
// re-orthonormalized by cuSOLVER geqrf + orgqr; the small SVD runs on the device by cuSOLVER
// gesvd of Z = X^T Q (n x l, i.e. C^T for C = Q^T X: gesvd wants rows >= cols).
// Exact (the reference): cuSOLVER gesvdj (Jacobi, econ) of the whole matrix; it overwrites X.
//
// Row-major vs cuBLAS/cuSOLVER column-major (the same trick as linalg/svd.cpp): a row-major
// p x q buffer IS a column-major q x p matrix (its transpose). So X (m x n row-major) is used as
// the column-major Xc = X^T (n x m, ld n) and products are written with op = T where X itself is
// meant; B row-major m x r is produced as the column-major r x m matrix B^T, and A row-major r x n
// as the column-major n x r matrix A^T: no transposing copies of X, the factors land in place.
//
// All buffers are allocated once per solver (bounded by m, n and l = r + p); bytes() reports them.
#pragma once
#include <cstdint>
#include <vector>

#include "cuda/blas_cuda.h"
#include "linalg/svd.h"

namespace loftq {

class CudaLowRank {
public:
    // r >= 1 is clamped to min(m, n); l = min(r + max(oversample, 0), min(m, n)).
    CudaLowRank(CudaBlas& cb, int64_t m, int64_t n, int r, SvdMethod method, int oversample);

    // Factorizes the device matrix d_X (m x n row-major). Randomized: d_X is only read; Exact: d_X
    // is overwritten. Results in B(), A(), S() until the next run. Asynchronous except for the
    // cuSOLVER devInfo checks, which synchronize the stream.
    void run(float* d_X, uint64_t seed, int power_iters);

    int rank() const { return r_; }
    int probes() const { return int(l_); }
    const float* B() const { return Bt_.p; }  // m x r row-major (column-major B^T, ld r)
    const float* A() const { return A_.p; }   // r x n row-major (column-major A^T, ld n)
    const float* S() const { return S_.p; }   // r leading singular values (device), descending
    size_t bytes() const;                     // device bytes held (buffers + solver workspace)

private:
    void qr(float* d_a, int64_t rows);  // thin Q of the column-major rows x l matrix, in place
    void ensure_work(int lwork);
    void run_randomized(const float* d_X, uint64_t seed, int power_iters);
    void run_exact(float* d_X);

    CudaBlas& cb_;
    int64_t m_, n_, k_, l_ = 0;
    int r_;
    SvdMethod method_;
    DeviceArray<float> Bt_, A_, S_;       // factors (S_ holds l or k values)
    DeviceArray<float> W_, Y_, Z_, tau_;  // randomized: Omega / U' (n x l), Q (m x l), Z (n x l), tau
    DeviceArray<float> VT_;               // randomized: V'^T (l x l); exact: V (m x k)
    DeviceArray<float> U_;                // exact: U of X^T (n x k)
    DeviceArray<float> work_;
    DeviceArray<int> info_;
    std::vector<float> omega_;            // host n x l test matrix (column-major)
};

}  // namespace loftq
