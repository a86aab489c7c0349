// blas.cpp: the engine's BLAS entry points (see blas.h): OpenBLAS thread control, a row-major
// fp32 GEMM over cblas_sgemm, and a naive float64-accumulating reference GEMM kept beside it
// for tests and awkward shapes. Leaves out everything LAPACK (svd.cpp) and any BLAS choice:
// <cblas.h> here is OpenBLAS's, which is what provides openblas_set_num_threads.
#include "linalg/blas.h"

#include <cblas.h>

#include <climits>
#include <mutex>
#include <string>

#include "core/error.h"

namespace loftq {

void set_blas_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }

int blas_threads() { return openblas_get_num_threads(); }

namespace {
// The owner's state: how many single-threaded scopes are alive, and the preferred count.
struct BlasOwner {
    std::mutex mu;
    int single = 0;
    int preferred = 0;   // 0: OpenBLAS's own default, read at first use
};
BlasOwner& owner() {
    static BlasOwner o;
    return o;
}
}  // namespace

SingleThreadedBlas::SingleThreadedBlas() {
    BlasOwner& o = owner();
    std::lock_guard<std::mutex> lock(o.mu);
    if (o.preferred == 0) o.preferred = blas_threads();
    if (o.single++ == 0) set_blas_threads(1);
}

SingleThreadedBlas::~SingleThreadedBlas() {
    BlasOwner& o = owner();
    std::lock_guard<std::mutex> lock(o.mu);
    if (--o.single == 0) set_blas_threads(o.preferred);
}

void prefer_blas_threads(int n) {
    BlasOwner& o = owner();
    std::lock_guard<std::mutex> lock(o.mu);
    o.preferred = n < 1 ? 1 : n;
    if (o.single == 0) set_blas_threads(o.preferred);
}

namespace {

// cblas takes 32-bit ints (Debian's OpenBLAS is not the ILP64 build). A weight has at most a
// few hundred million elements, but a dimension or leading dimension past INT_MAX must fail
// loudly rather than wrap.
int checked_int(int64_t v, const char* what) {
    if (v < 0 || v > INT_MAX)
        throw Error(std::string("gemm: ") + what + " = " + std::to_string(v) + " does not fit a 32-bit BLAS int");
    return int(v);
}

// C = beta * C for the K == 0 case (BLAS convention: beta == 0 writes zeros, never reads C,
// so NaN garbage in an uninitialized C does not survive).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
    for (int64_t i = 0; i < M; ++i) {
        float* row = C + i * ldc;
        for (int64_t j = 0; j < N; ++j) row[j] = beta == 0.f ? 0.f : beta * row[j];
    }
}

}  // namespace

// Row-major, so element (i, k) of op(A) is A[i*lda + k] (no transpose) or A[k*lda + i]
// (transpose); lda is at least op(A)'s stored row length. Same for B and C.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { scale_c(M, N, beta, C, ldc); return; }
    // OpenBLAS rejects leading dimensions below the stored row length (xerbla prints and the
    // call does nothing): check here so that the error is an exception with a message.
    int64_t need_a = trans_a ? M : K, need_b = trans_b ? K : N;
    if (lda < need_a || ldb < need_b || ldc < N)
        throw Error("gemm: leading dimension too small (lda " + std::to_string(lda) + " < " + std::to_string(need_a) +
                    ", ldb " + std::to_string(ldb) + " < " + std::to_string(need_b) + " or ldc " +
                    std::to_string(ldc) + " < " + std::to_string(N) + ")");
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                checked_int(M, "M"), checked_int(N, "N"), checked_int(K, "K"), alpha, A, checked_int(lda, "lda"),
                B, checked_int(ldb, "ldb"), beta, C, checked_int(ldc, "ldc"));
}

// Naive triple loop, one float64 sum per element, accumulated over k in order 0..K-1.
// O(M N K) and slow; it exists to check gemm, not to be used on weights.
void gemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    for (int64_t i = 0; i < M; ++i) {
        for (int64_t j = 0; j < N; ++j) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; ++k) {
                double a = trans_a ? A[k * lda + i] : A[i * lda + k];
                double b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                acc += a * b;
            }
            double c = double(alpha) * acc;
            if (beta != 0.f) c += double(beta) * double(C[i * ldc + j]);
            C[i * ldc + j] = float(c);
        }
    }
}

}  // namespace loftq
