// quantizer.cpp: blockwise absmax quantize / dequantize (reference and fast paths) and k-bit
// LSB-first code packing. Leaves out the code tables and thresholds (codebook.cpp).
//
// Reference (quantize_ref/dequantize_ref): plain scalar loops that follow the definition
// literally: scale = max |x| over the block, xn = x / scale (fp32 division; 0 when the scale is
// 0), code = argmin_i |xn - t_i| by exact real distance scanning ascending with strict <, so
// ties go to the lower code; value = t[code] * scale (fp32).
//
// Fast paths: code = #{i : xn > thresh[i]} where thresh[i] is the largest float <= the exact
// midpoint of t[i], t[i+1]; for a float xn this is the same nearest-with-ties-low code (xn above
// thresh[i] means xn >= the next float, which is strictly above the midpoint). The loops are
// written branch-free with compile-time level counts so that GCC -O3 vectorizes them:
//  - <= 16 levels: count the thresholds xn exceeds, carrying the table value along by a select
//    chain (thresholds ascend, so the last select that fires picks t[code]);
//  - int8 (256 uniform levels): estimate the code from (xn + 1) (L - 1) / 2, biased so that it is
//    the code or one below it, then add one when xn is above the next midpoint; the levels come
//    from a closed form rather than table reads (see qd_int8).
// The results are bit-identical to the reference (division, compare and multiply are correctly
// rounded IEEE ops in every instruction set; the one a*b+c, in the int8 estimate, may be fused
// without harm). On x86-64 with GCC the kernels are compiled
// three times (baseline SSE2, AVX2, AVX-512) and picked by CPUID at run time; the environment
// variable LOFTQ_QUANT_ISA = generic | avx2 | avx512 caps the choice (tests use it to check every
// variant). Blocks are split across threads in contiguous ranges, so results never depend on the
// thread count.
//
// Codes read by the dequantizers are masked to the format's bit width (an out-of-range byte
// cannot index past the table). NaN inputs get code 0 in every path (all compares are false),
// and a NaN never becomes the block scale.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/parallel.h"
#include "quant/quantizer.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define LOFTQ_QUANT_MULTI_ISA 1
#define LOFTQ_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define LOFTQ_QUANT_MULTI_ISA 0
#define LOFTQ_ALWAYS_INLINE inline
#endif

namespace loftq {

namespace {

void check_args(const char* fn, int block) {
    if (block <= 0) throw Error(std::string(fn) + ": block size must be positive (got " + std::to_string(block) + ")");
}

// The fast kernels exist for these level counts; checked before any worker thread starts (an
// exception must not escape a std::thread).
void check_levels(const char* fn, const QuantFormat& f) {
    if (f.levels != 2 && f.levels != 4 && f.levels != 8 && f.levels != 16 && f.levels != 256)
        throw Error(std::string(fn) + ": format '" + f.name + "' has " + std::to_string(f.levels) +
                    " levels; fast paths support 2, 4, 8, 16, 256");
}

// ---------------------------------------------------------------------------------------------
// Reference

// |a - b| for floats a, b, exactly, as a normalized double-double (hi, lo): hi = fl(a - b) and
// lo the rounding error (TwoSum). A plain double difference is exact only when the exponents of
// a and b are within 29 of each other; a tiny xn next to a table entry would round and could
// turn a strict "closer" into a false tie.
struct ExactDist {
    double hi, lo;
};
ExactDist exact_abs_diff(float af, float bf) {
    double a = af, b = bf;
    double hi = a - b;
    double z = hi - a;
    double lo = (a - (hi - z)) + (-b - z);
    if (hi < 0) { hi = -hi; lo = -lo; }  // sign of (hi + lo) is the sign of hi (hi == 0 only when exact)
    return {hi, lo};
}
// fl() is monotone, so hi1 < hi2 implies the exact values compare the same way.
bool less(const ExactDist& p, const ExactDist& q) { return p.hi < q.hi || (p.hi == q.hi && p.lo < q.lo); }

}  // namespace

void quantize_ref(const QuantFormat& f, const float* x, size_t n, int block, uint8_t* codes, float* scales) {
    check_args("quantize_ref", block);
    const size_t nb = num_blocks(n, block);
    for (size_t b = 0; b < nb; ++b) {
        const size_t off = b * size_t(block), len = std::min(size_t(block), n - off);
        float s = 0.0f;
        for (size_t i = 0; i < len; ++i) {
            float a = std::fabs(x[off + i]);
            if (a > s) s = a;
        }
        scales[b] = s;
        for (size_t i = 0; i < len; ++i) {
            const float xn = s == 0.0f ? 0.0f : x[off + i] / s;
            int best = 0;
            ExactDist bd = exact_abs_diff(xn, f.table[0]);
            for (int j = 1; j < f.levels; ++j) {
                ExactDist d = exact_abs_diff(xn, f.table[j]);
                if (less(d, bd)) { bd = d; best = j; }
            }
            codes[off + i] = uint8_t(best);
        }
    }
}

void dequantize_ref(const QuantFormat& f, const uint8_t* codes, const float* scales, size_t n, int block, float* out) {
    check_args("dequantize_ref", block);
    const unsigned mask = unsigned(f.levels - 1);
    for (size_t i = 0; i < n; ++i) out[i] = f.table[codes[i] & mask] * scales[i / size_t(block)];
}

// ---------------------------------------------------------------------------------------------
// Fast paths

namespace {

// One call's arguments; kernels process blocks [b0, b1).
struct Work {
    const QuantFormat* f;
    const float* x;       // n inputs (quantize) or null
    const uint8_t* cin;   // n codes (dequantize) or null
    const float* sin;     // scales (dequantize) or null
    size_t n;
    size_t block;
    float* out;           // n dequantized values or null
    uint8_t* codes;       // n codes or null
    float* scales;        // num_blocks scales or null
    const float* minuend = nullptr;  // with resid: n values m
    float* resid = nullptr;          // n values m - dequantized (with codes and out), or null
    // 256 levels equal float(2c - 255) / 255 (see qd_int8). Used with AVX2/AVX-512 only: GCC
    // 12 does not vectorize that loop for baseline SSE2, where the two table reads are faster.
    bool int8_closed_form = false;
};

// True when table[c] == float(2c - 255) / 255 for all 256 codes and the thresholds are the
// rounded-down midpoints (what qd_int8 computes instead of reading them).
bool uniform_int8_closed_form(const QuantFormat& f) {
    if (f.levels != 256) return false;
    for (int c = 0; c < 256; ++c) {
        const float t = float(2 * c - 255) / 255.0f;
        if (std::memcmp(&t, &f.table[c], 4) != 0) return false;
    }
    for (int c = 0; c < 255; ++c) {
        const double mid = (double(f.table[c]) + double(f.table[c + 1])) * 0.5;
        const float th = f.thresh[c];
        if (!(double(th) <= mid && double(std::nextafter(th, 2.0f)) > mid)) return false;
    }
    return true;
}

// max |x[i]| over len values; NaN never wins (same "a > s" rule as the reference). 16 running
// maxima, one per lane, make the loop an elementwise select GCC vectorizes; max is exact, so
// the combining order does not matter.
LOFTQ_ALWAYS_INLINE float block_absmax(const float* x, size_t len) {
    float m[16] = {};
    size_t i = 0;
    for (; i + 16 <= len; i += 16)
        for (int j = 0; j < 16; ++j) {
            float a = std::fabs(x[i + j]);
            m[j] = a > m[j] ? a : m[j];
        }
    float s = 0.0f;
    for (; i < len; ++i) {
        float a = std::fabs(x[i]);
        s = a > s ? a : s;
    }
    for (int j = 0; j < 16; ++j) s = m[j] > s ? m[j] : s;
    return s;
}

// Elements per inner chunk of a block (the int32 code buffer lives on the stack).
constexpr size_t kChunk = 256;

LOFTQ_ALWAYS_INLINE void store_codes(const int32_t* tmp, size_t m, uint8_t* codes) {
    for (size_t i = 0; i < m; ++i) codes[i] = uint8_t(tmp[i]);
}

// The block loop every quantize kernel shares: per block the absmax scale, the all-zero case
// (code zc, value 0), then the elements in chunks through a small int32 code buffer (with every
// lane 32 bits wide the loop stays in one vector shape, instead of GCC narrowing each compare
// result to bytes). `level(xn, c)` sets the code c of the normalized value xn and returns t_c;
// it is inlined, so each caller's loop is vectorized with its own element rule.
template <bool WantCodes, bool WantOut, bool WantResid, class Level>
LOFTQ_ALWAYS_INLINE void qd_blocks(const Work& w, int64_t b0, int64_t b1, int zc, Level&& level) {
    for (int64_t b = b0; b < b1; ++b) {
        const size_t off = size_t(b) * w.block, len = std::min(w.block, w.n - off);
        const float* xp = w.x + off;
        const float s = block_absmax(xp, len);
        if (w.scales) w.scales[b] = s;
        if (s == 0.0f) {
            if (WantCodes) std::memset(w.codes + off, zc, len);
            const float q0 = w.f->table[zc] * s;  // +-0, as the reference
            if (WantOut) std::fill(w.out + off, w.out + off + len, q0);
            if (WantResid)
                for (size_t i = 0; i < len; ++i) w.resid[off + i] = w.minuend[off + i] - q0;
            continue;
        }
        for (size_t i0 = 0; i0 < len; i0 += kChunk) {
            const size_t m = std::min(kChunk, len - i0);
            const float* xc = xp + i0;
            float* oc = WantOut ? w.out + off + i0 : nullptr;
            float* rc = WantResid ? w.resid + off + i0 : nullptr;
            const float* mc = WantResid ? w.minuend + off + i0 : nullptr;
            int32_t tmp[kChunk];
            if (WantResid) {
                // Levels into a local first, so that resid may be x itself (the loop reading x
                // writes nothing it could alias, and stays vectorized).
                float qv[kChunk];
                for (size_t i = 0; i < m; ++i) {
                    int32_t c;
                    qv[i] = level(xc[i] / s, c) * s;
                    tmp[i] = c;
                }
                for (size_t i = 0; i < m; ++i) {
                    oc[i] = qv[i];
                    rc[i] = mc[i] - qv[i];  // as a separate a - b: the product was rounded into qv
                }
            } else {
                for (size_t i = 0; i < m; ++i) {
                    int32_t c;
                    const float v = level(xc[i] / s, c);
                    if (WantOut) oc[i] = v * s;
                    if (WantCodes) tmp[i] = c;
                }
            }
            if (WantCodes) store_codes(tmp, m, w.codes + off + i0);
        }
    }
}

// Code of xn = 0 (what an all-zero block stores).
inline int zero_code(const QuantFormat& f) {
    int zc = 0;
    for (int j = 0; j < f.levels - 1; ++j) zc += 0.0f > f.thresh[j];
    return zc;
}

// Tables with L <= 16 levels: branch-free count of thresholds below xn, selecting t_c as it goes.
template <int L, bool WantCodes, bool WantOut, bool WantResid>
LOFTQ_ALWAYS_INLINE void qd_small(const Work& w, int64_t b0, int64_t b1) {
    float th[L - 1], tv[L];  // local copies: cannot alias the outputs, so they stay in registers
    for (int j = 0; j < L - 1; ++j) th[j] = w.f->thresh[j];
    for (int j = 0; j < L; ++j) tv[j] = w.f->table[j];
    qd_blocks<WantCodes, WantOut, WantResid>(w, b0, b1, zero_code(*w.f), [&](float xn, int32_t& code) {
        int32_t c = 0;
        float v = tv[0];
        for (int j = 0; j < L - 1; ++j) {
            const bool g = xn > th[j];
            c += g;
            v = g ? tv[j + 1] : v;
        }
        code = c;
        return v;
    });
}

// The 256-level uniform int8 table, without table reads (gathers are slow): the level is
// computed as t_c = float(2c - 255) / 255, one correctly rounded fp32 division of exact
// integers. That equals the table's float(-1 + 2c/255 in double) for every c: the exact value is
// a fraction with odd denominator 255, never within double rounding error of a float tie;
// uniform_int8_closed_form() checks all 256 at run time and the table path below is used
// otherwise. The code is estimated from e = (xn + 1) 255/2, biased down by 1/4 so that it is the
// code or one below it (e is off by ~1e-5), then raised when xn is above the midpoint of t_c and
// t_c+1. That compare is exact in double (the sum of two such floats is exact), and for a float
// xn "xn > midpoint" is the same as "xn > thresh[c]".
template <bool WantCodes, bool WantOut, bool WantResid>
LOFTQ_ALWAYS_INLINE void qd_int8(const Work& w, int64_t b0, int64_t b1) {
    constexpr int L = 256;
    const float half_steps = 0.5f * float(L - 1);
    qd_blocks<WantCodes, WantOut, WantResid>(w, b0, b1, zero_code(*w.f), [&](float xn, int32_t& code) {
        // xn in [-1, 1] or NaN (|x| <= s). NaN -> -1 by bit masking: a select here lets GCC
        // thread the clamp into branches around the divisions below, which then cannot be
        // if-converted.
        const uint32_t u = std::bit_cast<uint32_t>(xn);
        const uint32_t nan_mask = uint32_t(-int32_t((u & 0x7fffffffu) > 0x7f800000u));
        const float xe = std::bit_cast<float>((u & ~nan_mask) | (0xbf800000u & nan_mask));
        const float e = (xe + 1.0f) * half_steps + 0.25f;  // in [0.25, 255.25]
        int32_t c = std::min(int32_t(e), L - 2);
        const float lo = float(2 * c - (L - 1)) / float(L - 1);  // t_c
        const float hi = float(2 * c - (L - 3)) / float(L - 1);  // t_c+1
        const bool g = double(xn) > (double(lo) + double(hi)) * 0.5;  // false for NaN: code 0
        code = c + g;
        return g ? hi : lo;
    });
}

// Fallback for a 256-level table without the closed form: estimate as above, then one
// threshold read (gather) and one value read per element.
template <bool WantCodes, bool WantOut, bool WantResid>
LOFTQ_ALWAYS_INLINE void qd_int8_table(const Work& w, int64_t b0, int64_t b1) {
    constexpr int L = 256;
    float th[L - 1], tv[L];
    for (int j = 0; j < L - 1; ++j) th[j] = w.f->thresh[j];
    for (int j = 0; j < L; ++j) tv[j] = w.f->table[j];
    const float half_steps = 0.5f * float(L - 1);
    qd_blocks<WantCodes, WantOut, WantResid>(w, b0, b1, zero_code(*w.f), [&](float xn, int32_t& code) {
        float e = (xn + 1.0f) * half_steps + 0.25f;
        e = e > 0.0f ? e : 0.0f;  // also maps NaN to 0
        e = e < float(L - 2) ? e : float(L - 2);
        int32_t c = int32_t(e);
        c += xn > th[c];  // c in [0, L-2], so th[c] exists
        code = c;
        return tv[c];
    });
}

// Dequantize blocks [b0, b1): out = t[code & (L-1)] * scale.
template <int L>
LOFTQ_ALWAYS_INLINE void deq_blocks(const Work& w, int64_t b0, int64_t b1) {
    float tv[L];
    for (int j = 0; j < L; ++j) tv[j] = w.f->table[j];
    for (int64_t b = b0; b < b1; ++b) {
        const size_t off = size_t(b) * w.block, len = std::min(w.block, w.n - off);
        const float s = w.sin[b];
        const uint8_t* cp = w.cin + off;
        float* op = w.out + off;
        for (size_t i = 0; i < len; ++i) op[i] = tv[cp[i] & (L - 1)] * s;
    }
}

template <bool WantCodes, bool WantOut, bool WantResid = false>
LOFTQ_ALWAYS_INLINE void qd_levels(const Work& w, int64_t b0, int64_t b1) {
    switch (w.f->levels) {
    case 2: qd_small<2, WantCodes, WantOut, WantResid>(w, b0, b1); break;
    case 4: qd_small<4, WantCodes, WantOut, WantResid>(w, b0, b1); break;
    case 8: qd_small<8, WantCodes, WantOut, WantResid>(w, b0, b1); break;
    case 16: qd_small<16, WantCodes, WantOut, WantResid>(w, b0, b1); break;
    case 256:
        if (w.int8_closed_form) qd_int8<WantCodes, WantOut, WantResid>(w, b0, b1);
        else qd_int8_table<WantCodes, WantOut, WantResid>(w, b0, b1);
        break;
    default: break;  // rejected by check_levels before the threads start
    }
}

LOFTQ_ALWAYS_INLINE void qd_dispatch(const Work& w, int64_t b0, int64_t b1) {
    if (w.resid) qd_levels<true, true, true>(w, b0, b1);  // quantize_residual: codes and out too
    else if (w.codes && w.out) qd_levels<true, true>(w, b0, b1);
    else if (w.codes) qd_levels<true, false>(w, b0, b1);
    else if (w.out) qd_levels<false, true>(w, b0, b1);
    else qd_levels<false, false>(w, b0, b1);  // scales only
}

LOFTQ_ALWAYS_INLINE void deq_dispatch(const Work& w, int64_t b0, int64_t b1) {
    switch (w.f->levels) {
    case 2: deq_blocks<2>(w, b0, b1); break;
    case 4: deq_blocks<4>(w, b0, b1); break;
    case 8: deq_blocks<8>(w, b0, b1); break;
    case 16: deq_blocks<16>(w, b0, b1); break;
    case 256: deq_blocks<256>(w, b0, b1); break;
    default: break;  // rejected by check_levels before the threads start
    }
}

using RangeFn = void (*)(const Work&, int64_t, int64_t);

// One copy of the quantize kernels per instruction set; everything above is inlined into each.
// Dequantize is a table read per element, which the wide variants turn into gathers that
// measured slower than the baseline build, so it has only the baseline copy.
void qd_generic(const Work& w, int64_t b0, int64_t b1) { qd_dispatch(w, b0, b1); }
void deq_generic(const Work& w, int64_t b0, int64_t b1) { deq_dispatch(w, b0, b1); }
#if LOFTQ_QUANT_MULTI_ISA
__attribute__((target("avx2"))) void qd_avx2(const Work& w, int64_t b0, int64_t b1) { qd_dispatch(w, b0, b1); }
#define LOFTQ_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx2,prefer-vector-width=512")))
LOFTQ_AVX512_TARGET void qd_avx512(const Work& w, int64_t b0, int64_t b1) { qd_dispatch(w, b0, b1); }
#endif

// 0 = generic, 1 = AVX2, 2 = AVX-512: the best the CPU has, capped by LOFTQ_QUANT_ISA.
int isa_level() {
#if LOFTQ_QUANT_MULTI_ISA
    static const int cpu = [] {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl"))
            return 2;
        return __builtin_cpu_supports("avx2") ? 1 : 0;
    }();
    int cap = 2;
    if (const char* e = std::getenv("LOFTQ_QUANT_ISA")) {
        std::string v = e;
        if (v == "generic") cap = 0;
        else if (v == "avx2") cap = 1;
    }
    return std::min(cpu, cap);
#else
    return 0;
#endif
}

RangeFn pick_qd(int isa) {
#if LOFTQ_QUANT_MULTI_ISA
    switch (isa) {
    case 2: return qd_avx512;
    case 1: return qd_avx2;
    default: break;
    }
#endif
    return qd_generic;
}

// Run fn over all blocks, split into contiguous block ranges of >= ~64K elements per thread.
void run_blocks(RangeFn fn, const Work& w, int threads) {
    const int64_t nb = int64_t(num_blocks(w.n, int(w.block)));
    const int64_t min_chunk = std::max<int64_t>(1, int64_t(65536 / w.block));
    parallel_for(nb, std::max(1, threads), min_chunk, [&](int64_t b0, int64_t b1) { fn(w, b0, b1); });
}

}  // namespace

void quantize(const QuantFormat& f, const float* x, size_t n, int block, uint8_t* codes, float* scales, int threads) {
    check_args("quantize", block);
    check_levels("quantize", f);
    Work w{&f, x, nullptr, nullptr, n, size_t(block), nullptr, codes, scales};
    const int isa = isa_level();
    w.int8_closed_form = isa > 0 && uniform_int8_closed_form(f);  // see Work::int8_closed_form
    run_blocks(pick_qd(isa), w, threads);
}

void dequantize(const QuantFormat& f, const uint8_t* codes, const float* scales, size_t n, int block, float* out,
                int threads) {
    check_args("dequantize", block);
    check_levels("dequantize", f);
    Work w{&f, nullptr, codes, scales, n, size_t(block), out, nullptr, nullptr};
    run_blocks(deq_generic, w, threads);
}

void quantize_dequantize(const QuantFormat& f, const float* x, size_t n, int block, float* out, uint8_t* codes,
                         float* scales, int threads) {
    check_args("quantize_dequantize", block);
    check_levels("quantize_dequantize", f);
    Work w{&f, x, nullptr, nullptr, n, size_t(block), out, codes, scales};
    const int isa = isa_level();
    w.int8_closed_form = isa > 0 && uniform_int8_closed_form(f);  // see Work::int8_closed_form
    run_blocks(pick_qd(isa), w, threads);
}

void quantize_residual(const QuantFormat& f, const float* x, size_t n, int block, const float* m, float* out,
                       float* resid, uint8_t* codes, float* scales, int threads) {
    check_args("quantize_residual", block);
    check_levels("quantize_residual", f);
    if (!m || !out || !resid || !codes || !scales) throw Error("quantize_residual: every buffer is required");
    Work w{&f, x, nullptr, nullptr, n, size_t(block), out, codes, scales};
    w.minuend = m;
    w.resid = resid;
    const int isa = isa_level();
    w.int8_closed_form = isa > 0 && uniform_int8_closed_form(f);
    run_blocks(pick_qd(isa), w, threads);
}

// ---------------------------------------------------------------------------------------------
// Packing: code j occupies stream bits [j*k, j*k + k); stream bit b is bit b % 8 of byte b / 8.
// Eight k-bit codes fill exactly k bytes, so the fast loop moves groups of 8 codes through one
// 64-bit word (byte i of the group = bits [8i, 8i+8) of the word, written with shifts, so it
// does not depend on host byte order); k = 2 and 4 use per-byte loops that GCC vectorizes, k = 8
// is a copy; a bit accumulator handles the last n % 8 codes.

namespace {

template <int K>
void pack_groups(const uint8_t* codes, size_t groups, uint8_t* packed) {
    constexpr uint64_t mask = (1u << K) - 1u;
    for (size_t g = 0; g < groups; ++g) {
        const uint8_t* c = codes + 8 * g;
        uint64_t w = 0;
        for (int j = 0; j < 8; ++j) w |= (uint64_t(c[j]) & mask) << (j * K);
        uint8_t* o = packed + size_t(K) * g;
        for (int i = 0; i < K; ++i) o[i] = uint8_t(w >> (8 * i));
    }
}

template <int K>
void unpack_groups(const uint8_t* packed, size_t groups, uint8_t* codes) {
    constexpr uint64_t mask = (1u << K) - 1u;
    for (size_t g = 0; g < groups; ++g) {
        const uint8_t* p = packed + size_t(K) * g;
        uint64_t w = 0;
        for (int i = 0; i < K; ++i) w |= uint64_t(p[i]) << (8 * i);
        uint8_t* c = codes + 8 * g;
        for (int j = 0; j < 8; ++j) c[j] = uint8_t((w >> (j * K)) & mask);
    }
}

void check_bits(const char* fn, int bits) {
    if (bits < 1 || bits > 8) throw Error(std::string(fn) + ": bits must be in 1..8 (got " + std::to_string(bits) + ")");
}

}  // namespace

void pack_codes(const uint8_t* codes, size_t n, int bits, uint8_t* packed) {
    check_bits("pack_codes", bits);
    const size_t groups = n / 8;
    switch (bits) {
    case 1: pack_groups<1>(codes, groups, packed); break;
    case 2:  // 4 codes per byte, a loop GCC vectorizes
        for (size_t i = 0; i < 2 * groups; ++i) {
            const uint8_t* c = codes + 4 * i;
            packed[i] = uint8_t((c[0] & 3u) | ((c[1] & 3u) << 2) | ((c[2] & 3u) << 4) | ((c[3] & 3u) << 6));
        }
        break;
    case 3: pack_groups<3>(codes, groups, packed); break;
    case 4:  // 2 codes per byte, first in the low nibble
        for (size_t i = 0; i < 4 * groups; ++i)
            packed[i] = uint8_t((codes[2 * i] & 15u) | ((codes[2 * i + 1] & 15u) << 4));
        break;
    case 5: pack_groups<5>(codes, groups, packed); break;
    case 6: pack_groups<6>(codes, groups, packed); break;
    case 7: pack_groups<7>(codes, groups, packed); break;
    default:  // k = 8: bytes as they are
        if (groups) std::memcpy(packed, codes, 8 * groups);
        break;
    }
    // Tail: the last n % 8 codes start on a byte boundary (8 codes = k bytes).
    const unsigned mask = (1u << bits) - 1u;
    uint32_t acc = 0;
    int nacc = 0;
    size_t o = size_t(bits) * groups;
    for (size_t i = 8 * groups; i < n; ++i) {
        acc |= uint32_t(codes[i] & mask) << nacc;
        nacc += bits;
        while (nacc >= 8) {
            packed[o++] = uint8_t(acc);
            acc >>= 8;
            nacc -= 8;
        }
    }
    if (nacc > 0) packed[o] = uint8_t(acc);  // unused high bits are 0
}

void unpack_codes(const uint8_t* packed, size_t n, int bits, uint8_t* codes) {
    check_bits("unpack_codes", bits);
    const size_t groups = n / 8;
    switch (bits) {
    case 1: unpack_groups<1>(packed, groups, codes); break;
    case 2:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        // one byte -> one 32-bit word holding its 4 codes in its 4 bytes (vectorizes)
        for (size_t i = 0; i < 2 * groups; ++i) {
            const uint32_t v = packed[i];
            const uint32_t spread = (v & 3u) | ((v & 0xCu) << 6) | ((v & 0x30u) << 12) | ((v & 0xC0u) << 18);
            std::memcpy(codes + 4 * i, &spread, 4);
        }
#else
        unpack_groups<2>(packed, groups, codes);
#endif
        break;
    case 3: unpack_groups<3>(packed, groups, codes); break;
    case 4:
        for (size_t i = 0; i < 4 * groups; ++i) {
            codes[2 * i] = uint8_t(packed[i] & 15u);
            codes[2 * i + 1] = uint8_t(packed[i] >> 4);
        }
        break;
    case 5: unpack_groups<5>(packed, groups, codes); break;
    case 6: unpack_groups<6>(packed, groups, codes); break;
    case 7: unpack_groups<7>(packed, groups, codes); break;
    default:
        if (groups) std::memcpy(codes, packed, 8 * groups);
        break;
    }
    const unsigned mask = (1u << bits) - 1u;
    uint32_t acc = 0;
    int nacc = 0;
    size_t in = size_t(bits) * groups;
    for (size_t i = 8 * groups; i < n; ++i) {
        while (nacc < bits) {
            acc |= uint32_t(packed[in++]) << nacc;
            nacc += 8;
        }
        codes[i] = uint8_t(acc & mask);
        acc >>= bits;
        nacc -= bits;
    }
}

}  // namespace loftq
