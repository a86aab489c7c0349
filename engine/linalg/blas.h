// blas.h: the few BLAS/LAPACK entry points the engine uses, row-major, fp32.
// BLAS threads are a process-wide OpenBLAS setting: jobs set them once (see loftq/job.cpp).
#pragma once
#include <cstdint>

namespace loftq {

void set_blas_threads(int n);  // openblas_set_num_threads
int blas_threads();

// C (M x N) = alpha * op(A) * op(B) + beta * C, all row-major; op(A) is M x K, op(B) is K x N.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Reference GEMM in float64 accumulation (tests, awkward shapes).
void gemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace loftq
