// quantize.cu: blockwise absmax quantize + dequantize kernels (see quantize.h), then their
// launchers.
//
// One warp per quantization block, kWarps warps per thread block; a warp strides over its
// block's elements, so any block size works (lanes idle past the end of a short block). The
// absmax is a per-lane running max then a shuffle-xor reduction; max is exact, so the order does
// not matter, and the rule `a > s ? a : s` keeps a NaN from ever becoming the scale, as on the
// CPU. The code is the count of thresholds below xn, found by a fixed-depth binary search over
// the ascending thresholds (log2 L compares; a NaN compares false everywhere: code 0).
//
// Bit-for-bit with the CPU: this file must be compiled without --use_fast_math (and without
// -prec-div=false / -ftz=true), so that x / s is the correctly rounded IEEE division and
// subnormals are kept; table[c] * s is a plain multiply (no add for nvcc to contract into an FMA).
// The table and thresholds travel in the kernel parameters (__grid_constant__: read in place
// from the constant bank, no per-device initialization).
#include <cassert>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/quantize.h"

#if defined(__CUDACC__) && (defined(__USE_FAST_MATH__) || (defined(__CUDA_FTZ) && __CUDA_FTZ))
#error "engine/cuda/quantize.cu must be compiled without fast math / flush-to-zero (bit parity with the CPU)"
#endif

namespace loftq {

namespace {

constexpr int kWarps = 4;  // warps (= quantization blocks) per thread block
constexpr int kThreads = 32 * kWarps;

struct Tables {
    float t[256];   // levels
    float th[255];  // thresholds, ascending
};

// #{i < L-1 : xn > th[i]} for ascending th, L a power of two.
template <int L>
__device__ __forceinline__ int code_of(const float* th, float xn) {
    int c = 0;
#pragma unroll
    for (int step = L / 2; step >= 1; step /= 2)
        if (xn > th[c + step - 1]) c += step;
    return c;
}

template <int L>
__global__ void __launch_bounds__(kThreads)
    quantize_dequantize_kernel(const __grid_constant__ Tables tab, const float* __restrict__ x, int64_t n, int block,
                               int64_t nblocks, float* __restrict__ out, uint8_t* __restrict__ codes,
                               float* __restrict__ scales) {
    const int lane = int(threadIdx.x) & 31;
    const int64_t b = int64_t(blockIdx.x) * kWarps + int64_t(threadIdx.x >> 5);
    if (b >= nblocks) return;  // the whole warp leaves together
    const int64_t off = b * int64_t(block);
    const int len = int(min(int64_t(block), n - off));
    const float* xb = x + off;

    float s = 0.0f;
    for (int i = lane; i < len; i += 32) {
        const float a = fabsf(xb[i]);
        s = a > s ? a : s;
    }
#pragma unroll
    for (int o = 16; o >= 1; o /= 2) {
        const float t = __shfl_xor_sync(0xffffffffu, s, o);
        s = t > s ? t : s;
    }
    if (lane == 0 && scales) scales[b] = s;

    for (int i = lane; i < len; i += 32) {
        const float xn = s == 0.0f ? 0.0f : __fdiv_rn(xb[i], s);
        const int c = code_of<L>(tab.th, xn);
        if (codes) codes[off + i] = uint8_t(c);
        if (out) out[off + i] = __fmul_rn(tab.t[c], s);
    }
}

}  // namespace

void cuda_quantize_dequantize(QuantKind kind, const float* d_x, int64_t n, int block, float* d_out,
                              uint8_t* d_codes, float* d_scales, cudaStream_t stream) {
    if (block <= 0)
        throw Error("cuda_quantize_dequantize: block size must be positive (got " + std::to_string(block) + ")");
    if (n < 0) throw Error("cuda_quantize_dequantize: negative element count " + std::to_string(n));
    if (n == 0) return;
    if (!d_x) throw Error("cuda_quantize_dequantize: null input");
    const QuantFormat& f = quant_format(kind);
    Tables tab{};
    for (int j = 0; j < f.levels; ++j) tab.t[j] = f.table[j];
    for (int j = 0; j < f.levels - 1; ++j) tab.th[j] = f.thresh[j];

    const int64_t nblocks = int64_t(num_blocks(size_t(n), block));
    const int64_t grid = (nblocks + kWarps - 1) / kWarps;
    if (grid > 0x7fffffff)
        throw Error("cuda_quantize_dequantize: " + std::to_string(n) + " elements in blocks of " +
                    std::to_string(block) + " exceed one launch's grid");
    assert(grid >= 1 && kThreads % 32 == 0);
    const dim3 g{unsigned(grid)}, t{unsigned(kThreads)};
    switch (f.levels) {
    case 2: quantize_dequantize_kernel<2><<<g, t, 0, stream>>>(tab, d_x, n, block, nblocks, d_out, d_codes, d_scales); break;
    case 4: quantize_dequantize_kernel<4><<<g, t, 0, stream>>>(tab, d_x, n, block, nblocks, d_out, d_codes, d_scales); break;
    case 8: quantize_dequantize_kernel<8><<<g, t, 0, stream>>>(tab, d_x, n, block, nblocks, d_out, d_codes, d_scales); break;
    case 16: quantize_dequantize_kernel<16><<<g, t, 0, stream>>>(tab, d_x, n, block, nblocks, d_out, d_codes, d_scales); break;
    case 256: quantize_dequantize_kernel<256><<<g, t, 0, stream>>>(tab, d_x, n, block, nblocks, d_out, d_codes, d_scales); break;
    default:
        throw Error(std::string("cuda_quantize_dequantize: format '") + f.name + "' has " + std::to_string(f.levels) +
                    " levels; kernels exist for 2, 4, 8, 16, 256");
    }
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

namespace {

// A device allocation freed on scope exit (so that a throwing check does not leak it).
struct DeviceBuffer {
    void* p = nullptr;
    explicit DeviceBuffer(size_t bytes) {
        if (bytes) LOFTQ_CUDA_CHECK(cudaMalloc(&p, bytes));
    }
    ~DeviceBuffer() {
        if (p) (void)cudaFree(p);
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    template <class T>
    T* as() const { return static_cast<T*>(p); }
};

}  // namespace

void cuda_quantize_dequantize_host(QuantKind kind, const float* x, int64_t n, int block, float* out,
                                   uint8_t* codes, float* scales) {
    if (block <= 0)
        throw Error("cuda_quantize_dequantize_host: block size must be positive (got " + std::to_string(block) + ")");
    if (n < 0) throw Error("cuda_quantize_dequantize_host: negative element count " + std::to_string(n));
    if (n == 0) return;
    const size_t nn = size_t(n), nb = num_blocks(nn, block);
    DeviceBuffer dx(nn * sizeof(float));
    DeviceBuffer dout(out ? nn * sizeof(float) : 0);
    DeviceBuffer dcodes(codes ? nn : 0);
    DeviceBuffer dscales(scales ? nb * sizeof(float) : 0);
    LOFTQ_CUDA_CHECK(cudaMemcpy(dx.p, x, nn * sizeof(float), cudaMemcpyHostToDevice));
    cuda_quantize_dequantize(kind, dx.as<float>(), n, block, dout.as<float>(), dcodes.as<uint8_t>(),
                             dscales.as<float>(), nullptr);
    LOFTQ_CUDA_CHECK(cudaDeviceSynchronize());
    if (out) LOFTQ_CUDA_CHECK(cudaMemcpy(out, dout.p, nn * sizeof(float), cudaMemcpyDeviceToHost));
    if (codes) LOFTQ_CUDA_CHECK(cudaMemcpy(codes, dcodes.p, nn, cudaMemcpyDeviceToHost));
    if (scales) LOFTQ_CUDA_CHECK(cudaMemcpy(scales, dscales.p, nb * sizeof(float), cudaMemcpyDeviceToHost));
}

}  // namespace loftq
