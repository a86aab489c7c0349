// adamw_dequant.cu: the bit-exact kernels of ops_cuda.h, kernels then launchers:
//   - adamw_update: AdamW::step (train/adamw.cpp) for one tensor, element by element;
//   - dequantize_packed: loftq::dequantize (quant/quantizer.cpp) of LSB-first packed codes;
//   - dequantize_packed_bf16 / cast_to_bf16: the same fp32 values rounded once to bf16 (nearest,
//     ties to even), for GemmMath::Bf16.
// Both must give the CPU's bits for the same inputs. That holds because every operation is a
// correctly rounded IEEE operation on both sides, in the same order: the double arithmetic is
// written with __dadd_rn / __dmul_rn / ... so that nvcc cannot fuse a multiply and an add into
// an FMA (GCC for baseline x86-64, which builds the CPU code, does not fuse either), and this
// file must be compiled without fast math or flush-to-zero (checked below), so fp32 subnormals
// survive as on the CPU.
// Leaves out: the learning-rate schedule and the gradient norm (the caller's, with sum_sq_accumulate).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/train/ops_cuda.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#endif

#if defined(__CUDACC__) && (defined(__USE_FAST_MATH__) || (defined(__CUDA_FTZ) && __CUDA_FTZ))
#error "engine/cuda/train/adamw_dequant.cu must be compiled without fast math / flush-to-zero (bit parity with the CPU)"
#endif

namespace loftq::cuda_ops {

namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
    const int64_t g = (n + kThreads - 1) / kThreads;
    return unsigned(g < 65535 * 16 ? (g < 1 ? 1 : g) : 65535 * 16);
}

// Constants of one update, computed on the host exactly as AdamW::step computes them.
struct AdamWConsts {
    double lr, b1, b2, one_minus_b1, one_minus_b2, eps, bc1, bc2, decay;
    float grad_scale;
};

// Per element, in the CPU's order of operations (adamw.cpp, clip_grad_norm):
//   g' = float(g * grad_scale)            (fp32 multiply, as clip_grad_norm's g[i] *= c)
//   m' = b1 m + (1 - b1) g'               v' = b2 v + ((1 - b2) g') g'       (float64)
//   p' = float(p decay - (lr (m' / bc1)) / (sqrt(v' / bc2) + eps)),  m, v stored as float(m'), float(v').
// Grid-stride over n.
__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                             float* __restrict__ v, int64_t n, const AdamWConsts c) {
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        const double gi = double(__fmul_rn(g[i], c.grad_scale));
        const double mi = __dadd_rn(__dmul_rn(c.b1, double(m[i])), __dmul_rn(c.one_minus_b1, gi));
        const double vi = __dadd_rn(__dmul_rn(c.b2, double(v[i])), __dmul_rn(__dmul_rn(c.one_minus_b2, gi), gi));
        m[i] = __double2float_rn(mi);
        v[i] = __double2float_rn(vi);
        const double mhat = __ddiv_rn(mi, c.bc1), vhat = __ddiv_rn(vi, c.bc2);
        const double step = __ddiv_rn(__dmul_rn(c.lr, mhat), __dadd_rn(__dsqrt_rn(vhat), c.eps));
        p[i] = __double2float_rn(__dsub_rn(__dmul_rn(double(p[i]), c.decay), step));
    }
}

// fp32 -> bf16 bits, round to nearest, ties to even; NaN -> 0x7fff (canonical). On the device
// __float2bfloat16_rn (cvt.rn.bf16.f32); the integer form (same results, subnormals kept) where
// this file is compiled for the host (CPU emulation of the kernels).
__device__ inline uint16_t bf16_bits_rn(float f) {
#if defined(__CUDA_ARCH__)
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
#else
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t(0x7fff);
    return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
#endif
}

__global__ void cast_to_bf16_kernel(uint16_t* __restrict__ out, const float* __restrict__ in, int64_t n) {
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = bf16_bits_rn(in[i]);
}

// Code tables travel in the kernel parameters (read in place from the constant bank), as in
// engine/cuda/quantize.cu.
struct Table {
    float t[256];
};

// W[i] = table[code_i] * scales[i / block], code_i = bits [i*k, i*k + k) of the LSB-first
// stream (bit b = bit b % 8 of byte b / 8); k <= 8, so a code spans at most two bytes, and the
// second is read only when the code reaches into it (never past the packed_size(n, k) bytes).
// Grid-stride over n.
template <class Out>
__global__ void dequantize_packed_kernel(Out* __restrict__ W, const uint8_t* __restrict__ packed,
                                         const float* __restrict__ scales, const __grid_constant__ Table tab, int bits,
                                         int block, int64_t n) {
    const unsigned mask = (1u << bits) - 1u;
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int64_t bit = i * bits;
        const int64_t byte = bit >> 3;
        const int off = int(bit & 7);
        unsigned word = packed[byte];
        if (off + bits > 8) word |= unsigned(packed[byte + 1]) << 8;
        const unsigned code = (word >> off) & mask;
        const float w = __fmul_rn(tab.t[code], scales[i / block]);
        if constexpr (sizeof(Out) == 4)
            W[i] = w;
        else
            W[i] = bf16_bits_rn(w);
    }
}

}  // namespace

void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s, cudaStream_t stream) {
    if (n < 0) throw Error("cuda_ops::adamw_update: negative size " + std::to_string(n));
    if (n == 0) return;
    if (!p || !g || !m || !v) throw Error("cuda_ops::adamw_update: null parameter, gradient or moment");
    if (!(s.bc1 > 0) || !(s.bc2 > 0))
        throw Error("cuda_ops::adamw_update: bias corrections must be positive (bc1 " + std::to_string(s.bc1) +
                    ", bc2 " + std::to_string(s.bc2) + "; the step count starts at 1)");
    // Host doubles, as AdamW::step: (1.0 - b1), (1.0 - b2), decay = 1.0 - lr * wd. The grad scale
    // is rounded to float once, as clip_grad_norm's c = float(max_norm / (norm + 1e-6)).
    AdamWConsts c{};
    c.lr = s.lr;
    c.b1 = s.beta1;
    c.b2 = s.beta2;
    c.one_minus_b1 = 1.0 - s.beta1;
    c.one_minus_b2 = 1.0 - s.beta2;
    c.eps = s.eps;
    c.bc1 = s.bc1;
    c.bc2 = s.bc2;
    c.decay = 1.0 - s.lr * s.weight_decay;
    c.grad_scale = float(s.grad_scale);
    adamw_kernel<<<grid_for(n), kThreads, 0, stream>>>(p, g, m, v, n, c);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

namespace {

template <class Out>
void dequantize_packed_any(const char* fn, Out* W, const uint8_t* packed_codes, const float* scales, QuantKind kind,
                           int block, int64_t n, cudaStream_t stream) {
    const std::string f0 = std::string("cuda_ops::") + fn + ": ";
    if (block <= 0) throw Error(f0 + "block size must be positive (got " + std::to_string(block) + ")");
    if (n < 0) throw Error(f0 + "negative element count " + std::to_string(n));
    if (n == 0) return;
    if (!W || !packed_codes || !scales) throw Error(f0 + "null output, codes or scales");
    const QuantFormat& f = quant_format(kind);
    if (f.bits < 1 || f.bits > 8 || f.levels != (1 << f.bits))
        throw Error(f0 + "format '" + f.name + "' has " + std::to_string(f.bits) + " bits and " +
                    std::to_string(f.levels) + " levels; expected 2^bits levels, bits 1..8");
    Table tab{};
    for (int j = 0; j < f.levels; ++j) tab.t[j] = f.table[j];
    dequantize_packed_kernel<Out><<<grid_for(n), kThreads, 0, stream>>>(W, packed_codes, scales, tab, f.bits, block, n);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void dequantize_packed(float* W, const uint8_t* packed_codes, const float* scales, QuantKind kind, int block,
                       int64_t n, cudaStream_t stream) {
    dequantize_packed_any<float>("dequantize_packed", W, packed_codes, scales, kind, block, n, stream);
}

void dequantize_packed_bf16(void* W, const uint8_t* packed_codes, const float* scales, QuantKind kind, int block,
                            int64_t n, cudaStream_t stream) {
    dequantize_packed_any<uint16_t>("dequantize_packed_bf16", static_cast<uint16_t*>(W), packed_codes, scales, kind,
                                    block, n, stream);
}

void cast_to_bf16(void* out, const float* in, int64_t n, cudaStream_t stream) {
    if (n < 0) throw Error("cuda_ops::cast_to_bf16: negative element count " + std::to_string(n));
    if (n == 0) return;
    if (!out || !in) throw Error("cuda_ops::cast_to_bf16: null output or input");
    cast_to_bf16_kernel<<<grid_for(n), kThreads, 0, stream>>>(static_cast<uint16_t*>(out), in, n);
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loftq::cuda_ops
