// linear_cuda.cu: the adapted linear of ops_cuda.h on cuBLAS, forward beside backward; the same
// sequence of products as ops::lora_linear_forward / _backward (model/ops.cpp), each written as a
// row-major gemm so that the two read alike. A .cu file only for the bias kernel.
//
// Row-major vs cuBLAS column-major (as engine/cuda/lowrank_cuda.h): a row-major p x q buffer IS
// the column-major q x p matrix (its transpose). So the row-major product C = op(A) op(B)
// (M x N, K inner) is the column-major C^T = op(B)^T op(A)^T: cuBLAS gets (opB, opA, N, M, K,
// B, ldb, A, lda, C, ldc) with the same transpose flags and leading dimensions (row lengths).
//
// Maths: GemmMath::Tf32 lets cuBLAS use TF32 tensor cores (cublasGemmEx with
// CUBLAS_COMPUTE_32F_FAST_TF32) for the two base-weight products only (y = x W^T, dx = dy W);
// every LoRA product, and everything under GemmMath::Fp32, is cublasSgemm. The handle must be in
// host pointer mode and must not itself enable TF32 (CUBLAS_TF32_TENSOR_OP_MATH), or Fp32 would
// not be fp32: both are checked, as is that the handle is bound to `stream`.
// GemmMath::Bf16: the same two products take bf16 inputs (L.W_bf16, and x or dy rounded to bf16
// by cast_to_bf16 into L.bf16_scratch right before the GEMM) through cublasGemmEx with
// CUDA_R_16BF A/B, CUDA_R_32F C and CUBLAS_COMPUTE_32F (fp32 accumulation, fp32 output; beta = 1
// accumulates into the fp32 dx as in the other modes). The LoRA products stay cublasSgemm.
// Leaves out: fp16 weights, fused dequantize-in-GEMM (the packed base is dequantized into an
// fp32 or bf16 buffer by dequantize_packed(_bf16) first).
#include <climits>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "cuda/blas_cuda.h"
#include "cuda/cuda_check.h"
#include "cuda/train/ops_cuda.h"

namespace loftq::cuda_ops {

namespace {

// y[n, o] += bias[o]; y N x out. Grid-stride over N * out.
__global__ void add_bias_kernel(float* __restrict__ y, const float* __restrict__ bias, int64_t N, int64_t out) {
    const int64_t total = N * out, stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) y[e] += bias[e % out];
}

// Row-major C (M x N, ldc) = alpha op(A) op(B) + beta C, op(A) M x K, op(B) K x N (as linalg gemm).
void gemm(cublasHandle_t h, bool tf32, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (tf32)
        LOFTQ_CUBLAS_CHECK(cublasGemmEx(h, opb, opa, int(N), int(M), int(K), &alpha, B, CUDA_R_32F, int(ldb), A,
                                        CUDA_R_32F, int(lda), &beta, C, CUDA_R_32F, int(ldc),
                                        CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
    else
        LOFTQ_CUBLAS_CHECK(cublasSgemm(h, opb, opa, int(N), int(M), int(K), &alpha, B, int(ldb), A, int(lda), &beta, C,
                                       int(ldc)));
}

// The bf16 form of gemm (GemmMath::Bf16): A and B are bf16 (2 bytes each), C fp32.
void gemm_bf16(cublasHandle_t h, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
               int64_t lda, const void* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    LOFTQ_CUBLAS_CHECK(cublasGemmEx(h, opb, opa, int(N), int(M), int(K), &alpha, B, CUDA_R_16BF, int(ldb), A,
                                    CUDA_R_16BF, int(lda), &beta, C, CUDA_R_32F, int(ldc), CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT));
}

void check_linear(const char* fn, cublasHandle_t blas, int64_t N, const LoraLinear& L, GemmMath math) {
    const std::string f = std::string("cuda_ops::") + fn + ": ";
    if (N < 0 || L.in <= 0 || L.out <= 0 || L.r < 0)
        throw Error(f + "bad shape N " + std::to_string(N) + " in " + std::to_string(L.in) + " out " +
                    std::to_string(L.out) + " r " + std::to_string(L.r));
    if (N > INT_MAX || L.in > INT_MAX || L.out > INT_MAX)  // cuBLAS sizes are int
        throw Error(f + "dimension above INT_MAX (N " + std::to_string(N) + " in " + std::to_string(L.in) + " out " +
                    std::to_string(L.out) + ")");
    if (math == GemmMath::Bf16) {
        if (!L.W_bf16 || !L.bf16_scratch) throw Error(f + "GemmMath::Bf16 needs W_bf16 and bf16_scratch (null)");
    } else if (!L.W) {
        throw Error(f + "null W");
    }
    if (L.r > 0 && (!L.A || !L.B)) throw Error(f + "rank " + std::to_string(L.r) + " but null A or B");
    if (!blas) throw Error(f + "null cuBLAS handle");
}

// The handle's state that the maths relies on (see the file comment).
void check_handle(const char* fn, cublasHandle_t blas, cudaStream_t stream) {
    const std::string f = std::string("cuda_ops::") + fn + ": ";
    cublasPointerMode_t pm;
    LOFTQ_CUBLAS_CHECK(cublasGetPointerMode(blas, &pm));
    if (pm != CUBLAS_POINTER_MODE_HOST) throw Error(f + "the cuBLAS handle must be in host pointer mode");
    cublasMath_t mm;
    LOFTQ_CUBLAS_CHECK(cublasGetMathMode(blas, &mm));
    if ((unsigned(mm) & 0xfu) == unsigned(CUBLAS_TF32_TENSOR_OP_MATH))
        throw Error(f + "the cuBLAS handle enables TF32 for all fp32 products; set CUBLAS_DEFAULT_MATH (GemmMath "
                        "chooses TF32 per call)");
    cudaStream_t hs = nullptr;
    LOFTQ_CUBLAS_CHECK(cublasGetStream(blas, &hs));
    if (hs != stream) throw Error(f + "the cuBLAS handle is bound to another stream than the one given");
}

}  // namespace

void lora_linear_forward(cublasHandle_t blas, float* y, float* xa, const float* x, int64_t N, const LoraLinear& L,
                         GemmMath math, cudaStream_t stream) {
    check_linear("lora_linear_forward", blas, N, L, math);
    if (!y || !x) throw Error("cuda_ops::lora_linear_forward: null y or x");
    if (L.r > 0 && !xa) throw Error("cuda_ops::lora_linear_forward: rank " + std::to_string(L.r) + " but null xa");
    if (N == 0) return;
    check_handle("lora_linear_forward", blas, stream);
    const bool tf32 = math == GemmMath::Tf32;
    if (math == GemmMath::Bf16) {
        cast_to_bf16(L.bf16_scratch, x, N * L.in, stream);                                           // xb = bf16(x)
        gemm_bf16(blas, false, true, N, L.out, L.in, 1.f, L.bf16_scratch, L.in, L.W_bf16, L.in, 0.f, y, L.out);  // y = xb Wb^T
    } else {
        gemm(blas, tf32, false, true, N, L.out, L.in, 1.f, x, L.in, L.W, L.in, 0.f, y, L.out);  // y = x W^T
    }
    if (L.bias) {
        const int64_t g = (N * L.out + 255) / 256;
        add_bias_kernel<<<unsigned(g < 65535 * 16 ? g : 65535 * 16), 256, 0, stream>>>(y, L.bias, N, L.out);
        LOFTQ_CUDA_CHECK(cudaGetLastError());
    }
    if (L.r > 0) {
        gemm(blas, false, false, true, N, L.r, L.in, 1.f, x, L.in, L.A, L.in, 0.f, xa, L.r);         // xa = x A^T
        gemm(blas, false, false, true, N, L.out, L.r, L.scale, xa, L.r, L.B, L.r, 1.f, y, L.out);   // y += s xa B^T
    }
}

void lora_linear_backward(cublasHandle_t blas, float* dx, bool accumulate_dx, float* dA, float* dB, const float* dy,
                          const float* x, const float* xa, float* dxa, int64_t N, const LoraLinear& L, GemmMath math,
                          cudaStream_t stream) {
    check_linear("lora_linear_backward", blas, N, L, math);
    if (!dy) throw Error("cuda_ops::lora_linear_backward: null dy");
    if (L.r > 0 && (!dA || !dB || !x || !xa || !dxa))
        throw Error("cuda_ops::lora_linear_backward: rank " + std::to_string(L.r) +
                    " but null dA, dB, x, xa or dxa_scratch");
    if (N == 0) return;
    check_handle("lora_linear_backward", blas, stream);
    const bool tf32 = math == GemmMath::Tf32;
    if (L.r > 0) {
        gemm(blas, false, true, false, L.out, L.r, N, L.scale, dy, L.out, xa, L.r, 1.f, dB, L.r);    // dB += s dy^T xa
        gemm(blas, false, false, false, N, L.r, L.out, L.scale, dy, L.out, L.B, L.r, 0.f, dxa, L.r); // dxa = s dy B
        gemm(blas, false, true, false, L.r, L.in, N, 1.f, dxa, L.r, x, L.in, 1.f, dA, L.in);         // dA += dxa^T x
    }
    if (dx) {  // null: the caller needs no input gradient (as on the CPU)
        if (math == GemmMath::Bf16) {
            cast_to_bf16(L.bf16_scratch, dy, N * L.out, stream);                                     // dyb = bf16(dy)
            gemm_bf16(blas, false, false, N, L.in, L.out, 1.f, L.bf16_scratch, L.out, L.W_bf16, L.in,
                      accumulate_dx ? 1.f : 0.f, dx, L.in);                                           // dx (+)= dyb Wb
        } else {
            gemm(blas, tf32, false, false, N, L.in, L.out, 1.f, dy, L.out, L.W, L.in, accumulate_dx ? 1.f : 0.f, dx,
                 L.in);                                                                              // dx (+)= dy W
        }
        if (L.r > 0) gemm(blas, false, false, false, N, L.in, L.r, 1.f, dxa, L.r, L.A, L.in, 1.f, dx, L.in);  // += dxa A
    }
}

}  // namespace loftq::cuda_ops
