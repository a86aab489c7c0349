// attention_cuda.cu: fused causal grouped-query attention (ops_cuda.h), flash-attention-2 style
// in fp32: no B x H x T x T matrix is ever stored. Kernels, then launchers; forward beside backward.
//
// Shapes (row n = b * T + t): q, y, dy, dq (N x H*d); k, v, dk, dv (N x KVH*d); lse (B x H x T);
// query head h reads kv head kh = h / (H / KVH); scale = 1 / sqrt(d) (float, as the CPU).
//
// Forward: one block per (b, h, tile of kFwdRows query rows), one warp per query row. Key/value
// tiles of kKeyTile rows go through shared memory up to the block's causal limit; lane j scores
// key j0 + j (a length-d dot product, fp32, in the CPU's order i = 0..d-1), the warp keeps the
// running max m and sum l of the online softmax, and each lane accumulates output features
// lane, lane + 32, ... (R = ceil(d / 32) registers). y = acc / l, lse = m + log(l).
//
// Backward (deterministic: every output element is written by one thread, sums in fixed order):
//   1. rowdot: D (B x H x T) = rowsum(dy * y), one warp per (n, h);
//   2. dq: one block per (b, h, tile of kDqRows query rows), one warp per query row, key tiles as
//      in the forward: p = exp(s - lse), dp = dy . v_j, ds = p (dp - D) scale, dq += ds k_j;
//   3. dk/dv: one block per (b, h, tile of kDkvKeys keys), one warp per key, query tiles of
//      kQueryTile rows from the first key on (lane r = query row t0 + r):
//      dv_j += p dy_t, dk_j += ds q_t; written per QUERY head (scratch, N x H*d each) ...
//   4. ... and summed over the H / KVH query heads of each kv head in order g = 0, 1, ... When
//      H == KVH there is nothing to sum and step 3 writes dk, dv directly.
// P is recomputed in steps 2 and 3 (twice the score work of FA-2's single pass, which needs
// float atomics for dq); correctness and determinism first.
//
// Shared-memory rows that are read one row per lane (lane j reads row j, feature i) use an odd
// stride (d | 1), so the 32 lanes hit 32 different banks; rows read across lanes (lane = feature)
// or broadcast keep stride d. All tiles fit the default 48 KB for d <= 128 (sizes below).
// Leaves out: dropout, masks other than causal, bf16/fp16 inputs, tensor cores.
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/train/ops_cuda.h"

namespace loftq::cuda_ops {

namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kMaxHeadDim = 128;
constexpr int kKeyTile = 32;    // keys per shared tile in forward and dq (one lane per key)
constexpr int kFwdRows = 16;    // query rows (warps) per forward block
constexpr int kDqRows = 8;      // query rows (warps) per dq block
constexpr int kDkvKeys = 8;     // keys (warps) per dk/dv block
constexpr int kQueryTile = 32;  // query rows per shared tile in dk/dv (one lane per row)

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o >= 1; o /= 2) v += __shfl_xor_sync(kFull, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o >= 1; o /= 2) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
    return v;
}

// a . b over d features, fp32, in order 0..d-1 (as the CPU's score loop).
__device__ __forceinline__ float dot(const float* a, const float* b, int d) {
    float s = 0.f;
    for (int i = 0; i < d; ++i) s += a[i] * b[i];
    return s;
}

// ---- forward. Grid (B*H, ceil(T / kFwdRows)), kFwdRows warps. Query tiles are taken last
// first (the causal tail has the most keys, so the longest blocks start first).
// Shared (floats): Qs kFwdRows x d | Ks kKeyTile x (d|1) | Vs kKeyTile x d.
template <int R>
__global__ void __launch_bounds__(kFwdRows * 32)
    attention_forward_kernel(float* __restrict__ y, float* __restrict__ lse, const float* __restrict__ q,
                             const float* __restrict__ k, const float* __restrict__ v, int T, int H, int KVH, int d,
                             float scale) {
    extern __shared__ float smem[];
    const int ks = d | 1;
    float* Qs = smem;
    float* Ks = Qs + kFwdRows * d;
    float* Vs = Ks + kKeyTile * ks;

    const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
    const int b = int(blockIdx.x) / H, h = int(blockIdx.x) % H, kh = h / (H / KVH);
    const int t0 = int(gridDim.y - 1 - blockIdx.y) * kFwdRows;
    const int t = t0 + warp;                           // this warp's query row
    const int t_last = min(T - 1, t0 + kFwdRows - 1);  // the block's causal limit
    const int64_t C = int64_t(H) * d, KC = int64_t(KVH) * d;
    const float* kb = k + int64_t(b) * T * KC + int64_t(kh) * d;  // key j at kb + j * KC
    const float* vb = v + int64_t(b) * T * KC + int64_t(kh) * d;

    float* qs = Qs + warp * d;
    for (int i = lane; i < d; i += 32) qs[i] = t < T ? q[(int64_t(b) * T + t) * C + int64_t(h) * d + i] : 0.f;

    float m = -INFINITY, l = 0.f, acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.f;

    for (int j0 = 0; j0 <= t_last; j0 += kKeyTile) {
        __syncthreads();  // the previous tile is consumed (first pass: Qs is written)
        for (int e = int(threadIdx.x); e < kKeyTile * d; e += int(blockDim.x)) {
            const int jj = e / d, i = e % d, j = j0 + jj;
            Ks[jj * ks + i] = j < T ? kb[int64_t(j) * KC + i] : 0.f;
            Vs[jj * d + i] = j < T ? vb[int64_t(j) * KC + i] : 0.f;
        }
        __syncthreads();
        if (t < T && j0 <= t) {  // warp-uniform; key j0 <= t is valid, so the tile max is finite
            const int j = j0 + lane;
            const float s = j <= t ? dot(qs, Ks + lane * ks, d) * scale : -INFINITY;
            const float m_new = fmaxf(m, warp_max(s));
            const float p = j <= t ? expf(s - m_new) : 0.f;
            const float alpha = expf(m - m_new);  // 0 on the first tile (m = -inf)
            l = l * alpha + warp_sum(p);
#pragma unroll
            for (int r = 0; r < R; ++r) acc[r] *= alpha;
            const int nj = min(kKeyTile, t - j0 + 1);  // keys of this tile row t sees
            for (int jj = 0; jj < nj; ++jj) {
                const float pj = __shfl_sync(kFull, p, jj);
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const int i = lane + 32 * r;
                    if (i < d) acc[r] += pj * Vs[jj * d + i];
                }
            }
            m = m_new;
        }
    }
    if (t < T) {
        float* yr = y + (int64_t(b) * T + t) * C + int64_t(h) * d;
        const float inv = 1.f / l;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int i = lane + 32 * r;
            if (i < d) yr[i] = acc[r] * inv;
        }
        if (lane == 0) lse[(int64_t(b) * H + h) * T + t] = m + logf(l);
    }
}

// ---- backward 1: D (B x H x T) = rowsum(dy * y). One warp per (n, h); 8 warps per block.
__global__ void attention_rowdot_kernel(float* __restrict__ D, const float* __restrict__ dy,
                                        const float* __restrict__ y, int64_t N, int T, int H, int d) {
    const int64_t w = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
    if (w >= N * H) return;  // the whole warp leaves together
    const int lane = int(threadIdx.x) & 31;
    const int64_t n = w / H;
    const int h = int(w % H);
    const float* a = dy + n * H * d + int64_t(h) * d;
    const float* c = y + n * H * d + int64_t(h) * d;
    float s = 0.f;
    for (int i = lane; i < d; i += 32) s += a[i] * c[i];
    s = warp_sum(s);
    if (lane == 0) {
        const int64_t b = n / T, t = n % T;
        D[(b * H + h) * T + t] = s;
    }
}

// ---- backward 2: dq. Grid (B*H, ceil(T / kDqRows)), kDqRows warps, one per query row.
// Shared (floats): Qs kDqRows x d | dYs kDqRows x d | Ks kKeyTile x (d|1) | Vs kKeyTile x (d|1).
template <int R>
__global__ void __launch_bounds__(kDqRows * 32)
    attention_backward_dq_kernel(float* __restrict__ dq, const float* __restrict__ dy, const float* __restrict__ lse,
                                 const float* __restrict__ D, const float* __restrict__ q,
                                 const float* __restrict__ k, const float* __restrict__ v, int T, int H, int KVH,
                                 int d, float scale) {
    extern __shared__ float smem[];
    const int ks = d | 1;
    float* Qs = smem;
    float* dYs = Qs + kDqRows * d;
    float* Ks = dYs + kDqRows * d;
    float* Vs = Ks + kKeyTile * ks;

    const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
    const int b = int(blockIdx.x) / H, h = int(blockIdx.x) % H, kh = h / (H / KVH);
    const int t0 = int(gridDim.y - 1 - blockIdx.y) * kDqRows;
    const int t = t0 + warp;
    const int t_last = min(T - 1, t0 + kDqRows - 1);
    const int64_t C = int64_t(H) * d, KC = int64_t(KVH) * d;
    const float* kb = k + int64_t(b) * T * KC + int64_t(kh) * d;
    const float* vb = v + int64_t(b) * T * KC + int64_t(kh) * d;

    float* qs = Qs + warp * d;
    float* dys = dYs + warp * d;
    const int64_t row = (int64_t(b) * T + t) * C + int64_t(h) * d;
    for (int i = lane; i < d; i += 32) {
        qs[i] = t < T ? q[row + i] : 0.f;
        dys[i] = t < T ? dy[row + i] : 0.f;
    }
    const int64_t bht = (int64_t(b) * H + h) * T + t;
    const float lse_t = t < T ? lse[bht] : 0.f, D_t = t < T ? D[bht] : 0.f;

    float acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.f;

    for (int j0 = 0; j0 <= t_last; j0 += kKeyTile) {
        __syncthreads();
        for (int e = int(threadIdx.x); e < kKeyTile * d; e += int(blockDim.x)) {
            const int jj = e / d, i = e % d, j = j0 + jj;
            Ks[jj * ks + i] = j < T ? kb[int64_t(j) * KC + i] : 0.f;
            Vs[jj * ks + i] = j < T ? vb[int64_t(j) * KC + i] : 0.f;
        }
        __syncthreads();
        if (t < T && j0 <= t) {  // warp-uniform
            const int j = j0 + lane;
            float ds = 0.f;
            if (j <= t) {
                const float p = expf(dot(qs, Ks + lane * ks, d) * scale - lse_t);
                const float dp = dot(dys, Vs + lane * ks, d);
                ds = p * (dp - D_t) * scale;
            }
            const int nj = min(kKeyTile, t - j0 + 1);
            for (int jj = 0; jj < nj; ++jj) {
                const float dsj = __shfl_sync(kFull, ds, jj);
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const int i = lane + 32 * r;
                    if (i < d) acc[r] += dsj * Ks[jj * ks + i];
                }
            }
        }
    }
    if (t < T) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int i = lane + 32 * r;
            if (i < d) dq[row + i] = acc[r];
        }
    }
}

// ---- backward 3: dk, dv of query head h. Grid (B*H, ceil(T / kDkvKeys)), kDkvKeys warps, one
// per key j = j0 + warp. Output rows have stride H*d (the per-query-head scratch, or dk/dv
// themselves when H == KVH). Key tiles are taken first first (the first keys see the most rows).
// Shared (floats): Qs kQueryTile x (d|1) | dYs kQueryTile x (d|1) | Ks kDkvKeys x d |
// Vs kDkvKeys x d | Ls kQueryTile | Ds kQueryTile.
template <int R>
__global__ void __launch_bounds__(kDkvKeys * 32)
    attention_backward_dkv_kernel(float* __restrict__ dk_h, float* __restrict__ dv_h, const float* __restrict__ dy,
                                  const float* __restrict__ lse, const float* __restrict__ D,
                                  const float* __restrict__ q, const float* __restrict__ k,
                                  const float* __restrict__ v, int T, int H, int KVH, int d, float scale) {
    extern __shared__ float smem[];
    const int ks = d | 1;
    float* Qs = smem;
    float* dYs = Qs + kQueryTile * ks;
    float* Ks = dYs + kQueryTile * ks;
    float* Vs = Ks + kDkvKeys * d;
    float* Ls = Vs + kDkvKeys * d;
    float* Ds = Ls + kQueryTile;

    const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
    const int b = int(blockIdx.x) / H, h = int(blockIdx.x) % H, kh = h / (H / KVH);
    const int j0 = int(blockIdx.y) * kDkvKeys;
    const int j = j0 + warp;  // this warp's key
    const int64_t C = int64_t(H) * d, KC = int64_t(KVH) * d;
    const float* qb = q + int64_t(b) * T * C + int64_t(h) * d;    // query row t at qb + t * C
    const float* dyb = dy + int64_t(b) * T * C + int64_t(h) * d;
    const float* lb = lse + (int64_t(b) * H + h) * T;             // row t at lb[t]
    const float* Db = D + (int64_t(b) * H + h) * T;

    float* kr = Ks + warp * d;
    float* vr = Vs + warp * d;
    for (int i = lane; i < d; i += 32) {
        kr[i] = j < T ? k[(int64_t(b) * T + j) * KC + int64_t(kh) * d + i] : 0.f;
        vr[i] = j < T ? v[(int64_t(b) * T + j) * KC + int64_t(kh) * d + i] : 0.f;
    }

    float adk[R], adv[R];
#pragma unroll
    for (int r = 0; r < R; ++r) adk[r] = adv[r] = 0.f;

    for (int t0 = j0; t0 < T; t0 += kQueryTile) {
        __syncthreads();  // the previous tile is consumed
        for (int e = int(threadIdx.x); e < kQueryTile * d; e += int(blockDim.x)) {
            const int rr = e / d, i = e % d, tt = t0 + rr;
            Qs[rr * ks + i] = tt < T ? qb[int64_t(tt) * C + i] : 0.f;
            dYs[rr * ks + i] = tt < T ? dyb[int64_t(tt) * C + i] : 0.f;
        }
        for (int e = int(threadIdx.x); e < kQueryTile; e += int(blockDim.x)) {
            Ls[e] = t0 + e < T ? lb[t0 + e] : 0.f;
            Ds[e] = t0 + e < T ? Db[t0 + e] : 0.f;
        }
        __syncthreads();
        if (j < T) {  // warp-uniform
            const int tt = t0 + lane;  // this lane's query row
            float p = 0.f, ds = 0.f;
            if (tt < T && j <= tt) {
                p = expf(dot(Qs + lane * ks, kr, d) * scale - Ls[lane]);
                const float dp = dot(dYs + lane * ks, vr, d);
                ds = p * (dp - Ds[lane]) * scale;
            }
            const int nr = min(kQueryTile, T - t0);  // rows of this tile
            for (int rr = 0; rr < nr; ++rr) {
                const float pr = __shfl_sync(kFull, p, rr), dsr = __shfl_sync(kFull, ds, rr);
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const int i = lane + 32 * r;
                    if (i < d) {
                        adv[r] += pr * dYs[rr * ks + i];
                        adk[r] += dsr * Qs[rr * ks + i];
                    }
                }
            }
        }
    }
    if (j < T) {
        const int64_t o = (int64_t(b) * T + j) * C + int64_t(h) * d;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int i = lane + 32 * r;
            if (i < d) {
                dk_h[o + i] = adk[r];
                dv_h[o + i] = adv[r];
            }
        }
    }
}

// ---- backward 4: dk[n, kh, i] = sum_{g < G} dk_h[n, kh * G + g, i] in order g = 0, 1, ...
// (same for dv). Grid-stride over N * KVH * d.
__global__ void gqa_reduce_kernel(float* __restrict__ dk, float* __restrict__ dv, const float* __restrict__ dk_h,
                                  const float* __restrict__ dv_h, int64_t N, int H, int KVH, int d) {
    const int G = H / KVH;
    const int64_t KC = int64_t(KVH) * d, total = N * KC;
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
        const int64_t n = e / KC;
        const int c = int(e % KC);  // kh * d + i
        const int kh = c / d, i = c % d;
        const int64_t src = n * H * d + int64_t(kh) * G * d + i;  // head kh * G, feature i
        float sk = 0.f, sv = 0.f;
        for (int g = 0; g < G; ++g) {
            sk += dk_h[src + int64_t(g) * d];
            sv += dv_h[src + int64_t(g) * d];
        }
        dk[e] = sk;
        dv[e] = sv;
    }
}

// ---- host side

void check_shape(const char* fn, int B, int T, int H, int KVH, int d) {
    const std::string shape = " (B " + std::to_string(B) + " T " + std::to_string(T) + " H " + std::to_string(H) +
                              " KVH " + std::to_string(KVH) + " d " + std::to_string(d) + ")";
    if (B < 0 || T < 0 || H <= 0 || KVH <= 0 || d <= 0)
        throw Error(std::string("cuda_ops::") + fn + ": bad shape" + shape);
    if (H % KVH != 0)
        throw Error(std::string("cuda_ops::") + fn + ": query heads must be a multiple of kv heads" + shape);
    if (d > kMaxHeadDim)
        throw Error(std::string("cuda_ops::") + fn + ": head dim above " + std::to_string(kMaxHeadDim) +
                    " is not supported by the fused kernels" + shape);
    // Grid x = B*H; grid y = T / 8 tiles at most (65535 limit); element offsets are int64.
    if (int64_t(B) * H > INT_MAX || (int64_t(T) + kDqRows - 1) / kDqRows > 65535)
        throw Error(std::string("cuda_ops::") + fn + ": shape exceeds one launch's grid" + shape);
}

void check_ptr(const char* fn, const void* p, const char* what) {
    if (!p) throw Error(std::string("cuda_ops::") + fn + ": null " + what);
}

unsigned tiles(int T, int rows) { return unsigned((T + rows - 1) / rows); }

// Floats of D in the scratch, rounded up to 64 floats (256 bytes) so the next part is aligned.
int64_t rowdot_floats(int B, int T, int H) { return (int64_t(B) * H * T + 63) / 64 * 64; }

// Launch kernel<R> for R = ceil(d / 32) (1..4; d <= 128 checked before).
#define LOFTQ_ATTN_DISPATCH(R_, CALL)        \
    switch (R_) {                            \
    case 1: CALL(1); break;                  \
    case 2: CALL(2); break;                  \
    case 3: CALL(3); break;                  \
    default: CALL(4); break;                 \
    }

}  // namespace

void attention_forward(float* y, float* lse, const float* q, const float* k, const float* v, int B, int T, int H,
                       int KVH, int d, cudaStream_t stream) {
    check_shape("attention_forward", B, T, H, KVH, d);
    if (B == 0 || T == 0) return;
    check_ptr("attention_forward", y, "y");
    check_ptr("attention_forward", lse, "lse");
    check_ptr("attention_forward", q, "q");
    check_ptr("attention_forward", k, "k");
    check_ptr("attention_forward", v, "v");
    const float scale = 1.f / std::sqrt(float(d));
    const int ks = d | 1;
    const size_t smem = sizeof(float) * size_t(kFwdRows * d + kKeyTile * ks + kKeyTile * d);  // <= 41 KB
    const dim3 grid(unsigned(B * H), tiles(T, kFwdRows));
#define LOFTQ_CALL(R)                                                                                  \
    attention_forward_kernel<R><<<grid, kFwdRows * 32, smem, stream>>>(y, lse, q, k, v, T, H, KVH, d, scale)
    LOFTQ_ATTN_DISPATCH((d + 31) / 32, LOFTQ_CALL)
#undef LOFTQ_CALL
    LOFTQ_CUDA_CHECK(cudaGetLastError());
}

int64_t attention_backward_scratch(int B, int T, int H, int KVH, int d) {
    check_shape("attention_backward_scratch", B, T, H, KVH, d);
    const int64_t per_head = H == KVH ? 0 : 2 * int64_t(B) * T * H * d;  // dk_h, dv_h
    return rowdot_floats(B, T, H) + per_head;
}

void attention_backward(float* dq, float* dk, float* dv, const float* dy, const float* y, const float* lse,
                        const float* q, const float* k, const float* v, float* scratch, int B, int T, int H, int KVH,
                        int d, cudaStream_t stream) {
    check_shape("attention_backward", B, T, H, KVH, d);
    if (B == 0 || T == 0) return;
    check_ptr("attention_backward", dq, "dq");
    check_ptr("attention_backward", dk, "dk");
    check_ptr("attention_backward", dv, "dv");
    check_ptr("attention_backward", dy, "dy");
    check_ptr("attention_backward", y, "y");
    check_ptr("attention_backward", lse, "lse");
    check_ptr("attention_backward", q, "q");
    check_ptr("attention_backward", k, "k");
    check_ptr("attention_backward", v, "v");
    check_ptr("attention_backward", scratch, "scratch");
    const int64_t N = int64_t(B) * T;
    const float scale = 1.f / std::sqrt(float(d));
    const int ks = d | 1;
    const int R = (d + 31) / 32;

    // 1. D = rowsum(dy * y): 8 warps per block, one warp per (n, h).
    float* D = scratch;
    const int64_t warps = N * H, rd_blocks = (warps + 7) / 8;
    if (rd_blocks > INT_MAX) throw Error("cuda_ops::attention_backward: B * T * H too large for one launch");
    attention_rowdot_kernel<<<unsigned(rd_blocks), 256, 0, stream>>>(D, dy, y, N, T, H, d);
    LOFTQ_CUDA_CHECK(cudaGetLastError());

    // 2. dq.
    {
        const size_t smem = sizeof(float) * size_t(2 * kDqRows * d + 2 * kKeyTile * ks);  // <= 41 KB
        const dim3 grid(unsigned(B * H), tiles(T, kDqRows));
#define LOFTQ_CALL(R)                                                                                            \
    attention_backward_dq_kernel<R><<<grid, kDqRows * 32, smem, stream>>>(dq, dy, lse, D, q, k, v, T, H, KVH, d, \
                                                                          scale)
        LOFTQ_ATTN_DISPATCH(R, LOFTQ_CALL)
#undef LOFTQ_CALL
        LOFTQ_CUDA_CHECK(cudaGetLastError());
    }

    // 3. dk, dv per query head (straight into dk, dv when there is one query head per kv head).
    const bool grouped = H != KVH;
    float* dk_h = grouped ? scratch + rowdot_floats(B, T, H) : dk;
    float* dv_h = grouped ? dk_h + N * H * d : dv;
    {
        const size_t smem = sizeof(float) * size_t(2 * kQueryTile * ks + 2 * kDkvKeys * d + 2 * kQueryTile);  // <= 41 KB
        const dim3 grid(unsigned(B * H), tiles(T, kDkvKeys));
#define LOFTQ_CALL(R)                                                                                           \
    attention_backward_dkv_kernel<R><<<grid, kDkvKeys * 32, smem, stream>>>(dk_h, dv_h, dy, lse, D, q, k, v, T, \
                                                                            H, KVH, d, scale)
        LOFTQ_ATTN_DISPATCH(R, LOFTQ_CALL)
#undef LOFTQ_CALL
        LOFTQ_CUDA_CHECK(cudaGetLastError());
    }

    // 4. GQA: sum the group's query heads in a fixed order.
    if (grouped) {
        const int64_t total = N * KVH * d;
        const int64_t g = (total + 255) / 256;
        gqa_reduce_kernel<<<unsigned(g < 65535 * 16 ? g : 65535 * 16), 256, 0, stream>>>(dk, dv, dk_h, dv_h, N, H,
                                                                                         KVH, d);
        LOFTQ_CUDA_CHECK(cudaGetLastError());
    }
}

#undef LOFTQ_ATTN_DISPATCH

}  // namespace loftq::cuda_ops
