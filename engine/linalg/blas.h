// blas.h: the few BLAS/LAPACK entry points the engine uses, row-major, fp32.
//
// BLAS threads are one process-wide OpenBLAS setting, and LAPACK results differ in their last
// bits with the thread count; so the setting has one owner, here:
//   SingleThreadedBlas   a scope that needs results identical for any thread count (the LoftQ
//                        decompositions of a job, a sweep, an in-memory init): while any is
//                        alive, on any thread, BLAS runs single-threaded;
//   prefer_blas_threads  what everything else (the trainer's GEMMs) wants when no such scope is
//                        alive; applied when the last scope ends.
// So a fine-tune that starts during a quantize job cannot change the job's thread count (it
// could, with three independent writers), and the job's end does not reset the trainer's.
#pragma once
#include <cstdint>

namespace loftq {

class SingleThreadedBlas {
public:
    SingleThreadedBlas();
    ~SingleThreadedBlas();
    SingleThreadedBlas(const SingleThreadedBlas&) = delete;
    SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;
};
void prefer_blas_threads(int n);

// Low level (tests and benchmarks only): openblas_set/get_num_threads as they are.
void set_blas_threads(int n);
int blas_threads();

// C (M x N) = alpha * op(A) * op(B) + beta * C, all row-major; op(A) is M x K, op(B) is K x N.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Reference GEMM in float64 accumulation (tests, awkward shapes).
void gemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace loftq
