// lowrank_cuda.cpp: the GPU rank-r factorizations (see lowrank_cuda.h). Host code only: cuBLAS
// and cuSOLVER calls plus the small kernels of residual_cuda.cu. Every call is checked.
#include "cuda/lowrank_cuda.h"

#include <algorithm>
#include <climits>
#include <string>

#include "core/rng.h"
#include "cuda/residual_cuda.h"

namespace loftq {

namespace {
int dim(int64_t v, const char* what) {
    if (v < 0 || v > int64_t(INT_MAX)) throw Error(std::string("cuda linalg: ") + what + " " + std::to_string(v) + " too large for cuBLAS/cuSOLVER");
    return int(v);
}
}  // namespace

CudaLowRank::CudaLowRank(CudaBlas& cb, int64_t m, int64_t n, int r, SvdMethod method, int oversample)
    : cb_(cb), m_(m), n_(n), k_(std::min(m, n)), r_(int(std::clamp<int64_t>(r, 0, std::min(m, n)))), method_(method) {
    if (r_ <= 0) throw Error("CudaLowRank: rank must be positive (got " + std::to_string(r) + ") on " + std::to_string(m) + " x " + std::to_string(n));
    dim(m, "rows");
    dim(n, "cols");
    dim(m * n, "elements");
    Bt_.reset(size_t(r_) * size_t(m));
    A_.reset(size_t(r_) * size_t(n));
    info_.reset(1);
    if (method == SvdMethod::Exact) {
        S_.reset(size_t(k_));
        U_.reset(size_t(n) * size_t(k_));
        VT_.reset(size_t(m) * size_t(k_));
    } else {
        l_ = std::min<int64_t>(int64_t(r_) + std::max(oversample, 0), k_);
        S_.reset(size_t(l_));
        W_.reset(size_t(n) * size_t(l_));
        Y_.reset(size_t(m) * size_t(l_));
        Z_.reset(size_t(n) * size_t(l_));
        tau_.reset(size_t(l_));
        VT_.reset(size_t(l_) * size_t(l_));
        omega_.resize(size_t(n) * size_t(l_));
        // Workspace for every QR and the small SVD, sized once.
        const int mm = int(m), nn = int(n), ll = int(l_);
        int lw = 0, w = 0;
        LOFTQ_CUSOLVER_CHECK(cusolverDnSgeqrf_bufferSize(cb_.solver, mm, ll, Y_.p, mm, &w)); lw = std::max(lw, w);
        LOFTQ_CUSOLVER_CHECK(cusolverDnSgeqrf_bufferSize(cb_.solver, nn, ll, Z_.p, nn, &w)); lw = std::max(lw, w);
        LOFTQ_CUSOLVER_CHECK(cusolverDnSorgqr_bufferSize(cb_.solver, mm, ll, ll, Y_.p, mm, tau_.p, &w)); lw = std::max(lw, w);
        LOFTQ_CUSOLVER_CHECK(cusolverDnSorgqr_bufferSize(cb_.solver, nn, ll, ll, Z_.p, nn, tau_.p, &w)); lw = std::max(lw, w);
        LOFTQ_CUSOLVER_CHECK(cusolverDnSgesvd_bufferSize(cb_.solver, nn, ll, &w)); lw = std::max(lw, w);
        ensure_work(lw);
    }
}

size_t CudaLowRank::bytes() const {
    return Bt_.bytes() + A_.bytes() + S_.bytes() + W_.bytes() + Y_.bytes() + Z_.bytes() + tau_.bytes() + VT_.bytes() +
           U_.bytes() + work_.bytes() + info_.bytes();
}

void CudaLowRank::ensure_work(int lwork) {
    if (size_t(std::max(lwork, 1)) > work_.count) work_.reset(size_t(std::max(lwork, 1)));
}

void CudaLowRank::qr(float* d_a, int64_t rows) {
    const int rr = int(rows), ll = int(l_), lw = int(work_.count);
    LOFTQ_CUSOLVER_CHECK(cusolverDnSgeqrf(cb_.solver, rr, ll, d_a, rr, tau_.p, work_.p, lw, info_.p));
    cusolver_info_check(info_.p, cb_.stream, "geqrf", rows, l_);
    LOFTQ_CUSOLVER_CHECK(cusolverDnSorgqr(cb_.solver, rr, ll, ll, d_a, rr, tau_.p, work_.p, lw, info_.p));
    cusolver_info_check(info_.p, cb_.stream, "orgqr", rows, l_);
}

void CudaLowRank::run(float* d_X, uint64_t seed, int power_iters) {
    if (method_ == SvdMethod::Exact) run_exact(d_X);
    else run_randomized(d_X, seed, power_iters);
}

void CudaLowRank::run_randomized(const float* d_X, uint64_t seed, int power_iters) {
    const int mm = int(m_), nn = int(n_), ll = int(l_), rr = r_;
    const float one = 1.f, zero = 0.f;
    // Omega exactly as low_rank_randomized draws it (row i: l draws), stored column-major n x l.
    {
        Rng rng(seed);
        for (int64_t i = 0; i < n_; ++i)
            for (int64_t j = 0; j < l_; ++j) omega_[size_t(j * n_ + i)] = float(rng.normal());
    }
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(W_.p, omega_.data(), W_.bytes(), cudaMemcpyHostToDevice, cb_.stream));
    // Y (m x l) = X Omega = Xc^T Omega.
    LOFTQ_CUBLAS_CHECK(cublasSgemm(cb_.blas, CUBLAS_OP_T, CUBLAS_OP_N, mm, ll, nn, &one, d_X, nn, W_.p, nn, &zero, Y_.p, mm));
    qr(Y_.p, m_);
    for (int it = 0; it < std::max(power_iters, 0); ++it) {
        // Z (n x l) = X^T Q = Xc Q; Q' = qr(Z); Y = X Q' = Xc^T Q'; Q = qr(Y).
        LOFTQ_CUBLAS_CHECK(cublasSgemm(cb_.blas, CUBLAS_OP_N, CUBLAS_OP_N, nn, ll, mm, &one, d_X, nn, Y_.p, mm, &zero, Z_.p, nn));
        qr(Z_.p, n_);
        LOFTQ_CUBLAS_CHECK(cublasSgemm(cb_.blas, CUBLAS_OP_T, CUBLAS_OP_N, mm, ll, nn, &one, d_X, nn, Z_.p, nn, &zero, Y_.p, mm));
        qr(Y_.p, m_);
    }
    // Z = X^T Q = C^T for C = Q^T X (l x n). SVD of Z (n x l, n >= l): Z = U' S V'^T, so
    // C = V' S U'^T: C's left vectors Uc = V', right vectors Vc = U'. U' goes to W_, V'^T to VT_.
    LOFTQ_CUBLAS_CHECK(cublasSgemm(cb_.blas, CUBLAS_OP_N, CUBLAS_OP_N, nn, ll, mm, &one, d_X, nn, Y_.p, mm, &zero, Z_.p, nn));
    LOFTQ_CUSOLVER_CHECK(cusolverDnSgesvd(cb_.solver, 'S', 'S', nn, ll, Z_.p, nn, S_.p, W_.p, nn, VT_.p, ll, work_.p,
                                         int(work_.count), nullptr, info_.p));
    cusolver_info_check(info_.p, cb_.stream, "gesvd", n_, l_);
    // B^T (r x m) = Uc[:, :r]^T Q^T = V'^T[:r, :] Q^T: the first r rows of VT_ (ld l) times Y_^T.
    LOFTQ_CUBLAS_CHECK(cublasSgemm(cb_.blas, CUBLAS_OP_N, CUBLAS_OP_T, rr, mm, ll, &one, VT_.p, ll, Y_.p, mm, &zero, Bt_.p, rr));
    cuda_scale_sqrt(Bt_.p, int64_t(rr) * m_, 1, rr, S_.p, cb_.stream);
    // A^T (n x r) = Vc[:, :r] = U'[:, :r]: the first n r values of W_, then sqrt(S) per column.
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(A_.p, W_.p, A_.bytes(), cudaMemcpyDeviceToDevice, cb_.stream));
    cuda_scale_sqrt(A_.p, int64_t(rr) * n_, n_, rr, S_.p, cb_.stream);
}

void CudaLowRank::run_exact(float* d_X) {
    // gesvdj of Xc = X^T (n x m, ld n) = U S V^T, econ: U n x k, V m x k. Then X = V S U^T:
    // B = V[:, :r] sqrt(S), A = sqrt(S) U[:, :r]^T.
    const int mm = int(m_), nn = int(n_), rr = r_;
    gesvdjInfo_t params = nullptr;
    LOFTQ_CUSOLVER_CHECK(cusolverDnCreateGesvdjInfo(&params));
    struct Guard { gesvdjInfo_t p; ~Guard() { (void)cusolverDnDestroyGesvdjInfo(p); } } guard{params};
    LOFTQ_CUSOLVER_CHECK(cusolverDnXgesvdjSetMaxSweeps(params, 100));
    int lw = 0;
    LOFTQ_CUSOLVER_CHECK(cusolverDnSgesvdj_bufferSize(cb_.solver, CUSOLVER_EIG_MODE_VECTOR, 1, nn, mm, d_X, nn, S_.p,
                                                      U_.p, nn, VT_.p, mm, &lw, params));
    ensure_work(lw);
    LOFTQ_CUSOLVER_CHECK(cusolverDnSgesvdj(cb_.solver, CUSOLVER_EIG_MODE_VECTOR, 1, nn, mm, d_X, nn, S_.p, U_.p, nn,
                                           VT_.p, mm, work_.p, int(work_.count), info_.p, params));
    cusolver_info_check(info_.p, cb_.stream, "gesvdj", m_, n_);
    // B^T (r x m, ld r) = V[:, :r]^T: transpose the m x r head of V (ld m).
    cuda_transpose(VT_.p, m_, rr, m_, Bt_.p, cb_.stream);
    cuda_scale_sqrt(Bt_.p, int64_t(rr) * m_, 1, rr, S_.p, cb_.stream);
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(A_.p, U_.p, A_.bytes(), cudaMemcpyDeviceToDevice, cb_.stream));
    cuda_scale_sqrt(A_.p, int64_t(rr) * n_, n_, rr, S_.p, cb_.stream);
}

}  // namespace loftq
