// blas_cuda.h: cuBLAS / cuSOLVER handles bound to one stream (RAII), and checked calls:
// LOFTQ_CUBLAS_CHECK(expr) and LOFTQ_CUSOLVER_CHECK(expr) throw loftq::Error naming the file,
// line, call and status, as LOFTQ_CUDA_CHECK does for the runtime (cuda_check.h). Also a device
// buffer freed on scope exit and a checked read of a cuSOLVER devInfo.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <cstdint>
#include <string>

#include "core/error.h"
#include "cuda/cuda_check.h"

namespace loftq {

inline void cublas_check(cublasStatus_t st, const char* expr, const char* file, int line) {
    if (st == CUBLAS_STATUS_SUCCESS) return;
    throw Error(std::string(file) + ":" + std::to_string(line) + ": " + expr + " failed: " + cublasGetStatusName(st) +
                " (" + cublasGetStatusString(st) + ")");
}

inline const char* cusolver_status_name(cusolverStatus_t st) {
    switch (st) {
    case CUSOLVER_STATUS_SUCCESS: return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    default: return "cusolverStatus_t (other)";
    }
}

inline void cusolver_check(cusolverStatus_t st, const char* expr, const char* file, int line) {
    if (st == CUSOLVER_STATUS_SUCCESS) return;
    throw Error(std::string(file) + ":" + std::to_string(line) + ": " + expr + " failed: " + cusolver_status_name(st) +
                " (" + std::to_string(int(st)) + ")");
}

}  // namespace loftq

#define LOFTQ_CUBLAS_CHECK(expr) ::loftq::cublas_check((expr), #expr, __FILE__, __LINE__)
#define LOFTQ_CUSOLVER_CHECK(expr) ::loftq::cusolver_check((expr), #expr, __FILE__, __LINE__)

namespace loftq {

// One stream with a cuBLAS and a cuSOLVER handle on it; destroyed in reverse order. The
// cuBLAS handle uses the default (non-tensor-core) fp32 maths: CUBLAS_DEFAULT_MATH, so no TF32.
struct CudaBlas {
    cudaStream_t stream = nullptr;
    cublasHandle_t blas = nullptr;
    cusolverDnHandle_t solver = nullptr;

    CudaBlas() {
        try {
            LOFTQ_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
            LOFTQ_CUBLAS_CHECK(cublasCreate(&blas));
            LOFTQ_CUBLAS_CHECK(cublasSetStream(blas, stream));
            LOFTQ_CUBLAS_CHECK(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
            LOFTQ_CUSOLVER_CHECK(cusolverDnCreate(&solver));
            LOFTQ_CUSOLVER_CHECK(cusolverDnSetStream(solver, stream));
        } catch (...) {
            release();
            throw;
        }
    }
    ~CudaBlas() { release(); }
    CudaBlas(const CudaBlas&) = delete;
    CudaBlas& operator=(const CudaBlas&) = delete;

private:
    void release() {
        if (solver) (void)cusolverDnDestroy(solver);
        if (blas) (void)cublasDestroy(blas);
        if (stream) (void)cudaStreamDestroy(stream);
        solver = nullptr;
        blas = nullptr;
        stream = nullptr;
    }
};

// A typed device allocation freed on scope exit (a throwing check does not leak it).
template <class T>
struct DeviceArray {
    T* p = nullptr;
    size_t count = 0;
    DeviceArray() = default;
    explicit DeviceArray(size_t n) { reset(n); }
    ~DeviceArray() {
        if (p) (void)cudaFree(p);
    }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;
    DeviceArray(DeviceArray&& o) noexcept : p(o.p), count(o.count) {
        o.p = nullptr;
        o.count = 0;
    }
    DeviceArray& operator=(DeviceArray&& o) noexcept {
        if (this != &o) {
            if (p) (void)cudaFree(p);
            p = o.p;
            count = o.count;
            o.p = nullptr;
            o.count = 0;
        }
        return *this;
    }
    void reset(size_t n) {
        if (p) (void)cudaFree(p);
        p = nullptr;
        count = 0;
        if (n) LOFTQ_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T)));
        count = n;
    }
    size_t bytes() const { return count * sizeof(T); }
};

// Reads a cuSOLVER devInfo (synchronizes the stream) and throws when it is not 0.
inline void cusolver_info_check(const int* d_info, cudaStream_t stream, const char* what, int64_t rows, int64_t cols) {
    int info = 0;
    LOFTQ_CUDA_CHECK(cudaMemcpyAsync(&info, d_info, sizeof(int), cudaMemcpyDeviceToHost, stream));
    LOFTQ_CUDA_CHECK(cudaStreamSynchronize(stream));
    if (info == 0) return;
    throw Error(std::string("cuda linalg: ") + what + " on " + std::to_string(rows) + " x " + std::to_string(cols) +
                ": " + (info < 0 ? "illegal argument " + std::to_string(-info) : "did not converge (info " + std::to_string(info) + ")"));
}

}  // namespace loftq
