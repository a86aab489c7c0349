// test_cuda_train_ops.cpp: Qt Test for the device layers of cuda/train/ops_cuda.h against the CPU
// reference: model/ops.h for every layer, train/adamw.h for the optimizer, quant/quantizer.h for
// the packed dequantizer. Random inputs from fixed seeds, odd shapes (C = 72, T = 37, H = 6,
// KVH = 2, d = 12; d = 33, 64, 100, 128 for attention; V = 1000, 1003, 151936), one printed
// error per tensor. Errors are max |gpu - cpu| / max |cpu| (the reference's largest magnitude;
// "rel max err" below), with per-op tolerances:
//   exact (bit for bit): embedding, add_inplace, scale_inplace, dequantize_packed, adamw_update
//     (one correctly rounded operation per step on both sides, in the same order);
//   1e-5: rmsnorm, rope, swiglu, cross-entropy lse / row loss / gradient (CUDA expf vs glibc expf
//     differ by an ulp or two, nvcc may fuse a multiply-add, sums run in another order);
//   1e-4: fused attention y, lse (against a float64 computation) and dq, dk, dv (online softmax,
//     different summation order; gradients floored at magnitude 1, since dq = 0 exactly at T = 1);
//   Fp32 linear 1e-5; Tf32 linear 4e-3 for the two base-weight products (y, dx): TF32 keeps 10
//     mantissa bits, 2^-11 relative per operand when rounded, up to 2^-10 and biased if the
//     tensor cores truncate, i.e. ~1.5e-3 of the largest output in the worst case; everything else
//     (xa, dA, dB) is full fp32 in both modes and held to 1e-5;
//   Bf16 linear: y and dx (the base-weight products, on bf16 W and bf16 x / dy, fp32 accumulation)
//     1e-2 against the fp32 reference: bf16 keeps 8 significant bits, 2^-9 relative per rounded
//     operand, two operands, errors partly cancel over the sum, i.e. a few 1e-3 of the largest
//     output; and 1e-5 against a CPU reference computed on the same bf16-rounded W, x, dy (what
//     remains is fp32 summation order), which checks the plumbing tightly; xa, dA, dB stay 1e-5;
//   cast_to_bf16, dequantize_packed_bf16: exact, against a host float -> bf16 round-to-nearest-even
//     written independently below (nearest of the two neighbours, ties to the even one).
//   sums: float64 against a long double host sum, 1e-12 (of sum |x| for sum_f64).
// Determinism: attention_backward, sum_f64 and sum_sq_accumulate run twice and compare bits.
// Every GPU test QSKIPs when cuda_available() is false; badArguments runs everywhere (the checks
// throw before any CUDA call). Leaves out timing (bench/) and the whole model (the model's tests).
#include <QtTest>

#include "gpu_skip.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "core/error.h"
#include "core/rng.h"
#include "cuda/blas_cuda.h"
#include "cuda/cuda_check.h"
#include "cuda/device.h"
#include "cuda/train/ops_cuda.h"
#include "expect_error.h"
#include "model/llama.h"
#include "model/ops.h"
#include "quant/quantizer.h"
#include "test_support.h"
#include "train/adamw.h"

using namespace loftq;
namespace co = loftq::cuda_ops;

namespace {

// A device copy of a host vector (movable, freed on scope exit). get() waits for all device work
// (the linear tests run on CudaBlas's non-blocking stream) and copies back.
template <class T>
struct Dev {
    T* p = nullptr;
    size_t n = 0;
    explicit Dev(size_t count) : n(count) {
        if (n) LOFTQ_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T)));
    }
    explicit Dev(const std::vector<T>& h) : Dev(h.size()) { set(h); }
    Dev(Dev&& o) noexcept : p(o.p), n(o.n) { o.p = nullptr; o.n = 0; }
    Dev(const Dev&) = delete;
    Dev& operator=(const Dev&) = delete;
    Dev& operator=(Dev&&) = delete;
    ~Dev() {
        if (p) (void)cudaFree(p);
    }
    // Both wait for the device before and after: the copy / memset run on the legacy stream,
    // which CudaBlas's non-blocking stream does not wait for.
    void set(const std::vector<T>& h) {
        LOFTQ_CUDA_CHECK(cudaDeviceSynchronize());
        if (n) LOFTQ_CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
        LOFTQ_CUDA_CHECK(cudaDeviceSynchronize());
    }
    // Bytes 0xFF everywhere: NaN floats, so a kernel that skips an element it must write shows.
    void poison() {
        LOFTQ_CUDA_CHECK(cudaDeviceSynchronize());
        if (n) LOFTQ_CUDA_CHECK(cudaMemset(p, 0xFF, n * sizeof(T)));
        LOFTQ_CUDA_CHECK(cudaDeviceSynchronize());
    }
    std::vector<T> get() const {
        LOFTQ_CUDA_CHECK(cudaDeviceSynchronize());
        std::vector<T> h(n);
        if (n) LOFTQ_CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
        return h;
    }
};

std::vector<float> randn(size_t n, uint64_t seed, double sigma = 1.0) { return test::gaussian(n, seed, sigma); }

// max |got - ref| / max(max |ref|, floor); infinity when got holds a NaN/Inf that ref does not,
// or the sizes differ.
double rel_max_err(const std::vector<float>& got, const std::vector<float>& ref, double floor = 1e-30) {
    if (got.size() != ref.size()) return std::numeric_limits<double>::infinity();
    double diff = 0, mag = floor;
    for (size_t i = 0; i < ref.size(); ++i) {
        if (std::isfinite(ref[i]) && !std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
        diff = std::max(diff, std::fabs(double(got[i]) - double(ref[i])));
        mag = std::max(mag, std::fabs(double(ref[i])));
    }
    return diff / mag;
}

// Elements whose bits differ (NaN == NaN whatever the payload).
size_t bit_mismatches(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return std::max(a.size(), b.size());
    size_t bad = 0;
    for (size_t i = 0; i < a.size(); ++i)
        bad += test::float_bits(a[i]) != test::float_bits(b[i]) && !(std::isnan(a[i]) && std::isnan(b[i]));
    return bad;
}

// float -> bf16 bits, round to nearest, ties to even, NaN -> 0x7fff: the host reference of
// cast_to_bf16. Written as "the nearer of the two bf16 neighbours" (not the device's add-and-shift),
// an independent derivation; overflow: the neighbour above the largest bf16 is 2^128 (-> inf).
uint16_t bf16_ref(float f) {
    if (std::isnan(f)) return 0x7fff;
    const uint32_t u = test::float_bits(f);
    const uint32_t lo = u & 0xffff0000u;  // toward zero
    if (lo == u) return uint16_t(u >> 16);
    const uint32_t hi = lo + 0x10000u;    // away from zero (same sign)
    auto value = [](uint32_t b) {
        if ((b & 0x7f800000u) == 0x7f800000u) return (b >> 31 ? -1.0 : 1.0) * std::ldexp(1.0, 128);
        float g;
        std::memcpy(&g, &b, 4);
        return double(g);
    };
    const double dl = std::fabs(value(lo) - double(f)), dh = std::fabs(value(hi) - double(f));
    if (dl != dh) return uint16_t((dl < dh ? lo : hi) >> 16);
    return uint16_t(((lo >> 16) & 1u) ? hi >> 16 : lo >> 16);
}
float bf16_to_float(uint16_t h) {
    const uint32_t b = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}
std::vector<float> bf16_round(const std::vector<float>& v) {
    std::vector<float> r(v.size());
    for (size_t i = 0; i < v.size(); ++i) r[i] = bf16_to_float(bf16_ref(v[i]));
    return r;
}
size_t u16_mismatches(const std::vector<uint16_t>& a, const std::vector<uint16_t>& b) {
    if (a.size() != b.size()) return std::max(a.size(), b.size());
    size_t bad = 0;
    for (size_t i = 0; i < a.size(); ++i) bad += a[i] != b[i];
    return bad;
}

bool same_bytes(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

}  // namespace

// Prints "  <what>: rel max err E (tol T)" and fails with the same text when E > T.
#define CHECK_CLOSE(what, got, ref, tol, ...)                                                                   \
    do {                                                                                                        \
        const std::string what_ = (what);                                                                       \
        const double err_ = rel_max_err((got), (ref) __VA_OPT__(, ) __VA_ARGS__);                                           \
        std::printf("  %-46s rel max err %.3g (tol %.1g)\n", what_.c_str(), err_, double(tol));                 \
        QVERIFY2(err_ <= (tol), qPrintable(QString("%1: rel max err %2 > tol %3")                                \
                                               .arg(QString::fromStdString(what_)).arg(err_).arg(double(tol)))); \
    } while (0)

// Fails naming the op and the count when two float vectors differ in any bit.
#define CHECK_BITS(what, got, ref)                                                                              \
    do {                                                                                                        \
        const std::string what_ = (what);                                                                       \
        const size_t bad_ = bit_mismatches((got), (ref));                                                       \
        std::printf("  %-46s %zu of %zu elements differ in bits\n", what_.c_str(), bad_, (ref).size());        \
        QVERIFY2(bad_ == 0, qPrintable(QString("%1: %2 of %3 elements differ from the CPU bit pattern")         \
                                           .arg(QString::fromStdString(what_)).arg(bad_).arg((ref).size())));   \
    } while (0)

class TestCudaTrainOps : public QObject {
    Q_OBJECT

    bool have_ = false;
    std::string why_;

#define NEED_GPU() \
    GPU_OR_SKIP(have_, why_)

private slots:
    void initTestCase() {
        have_ = cuda_available(&why_);
        if (have_) std::printf("CUDA device: %s\n", cuda_device_name().c_str());
        else std::printf("no CUDA device: %s\n", why_.c_str());
    }

    // Runs everywhere: shape and pointer checks throw loftq::Error before any CUDA call, and empty
    // work is a no-op.
    void badArguments() {
        float dummy = 0;
        float* f = &dummy;
        EXPECT_ERROR(co::attention_forward(f, f, f, f, f, 1, 4, 6, 4, 16, nullptr), "attention_forward", "multiple");
        EXPECT_ERROR(co::attention_forward(f, f, f, f, f, 1, 4, 2, 1, 129, nullptr), "attention_forward", "128");
        EXPECT_ERROR(co::attention_backward_scratch(1, 4, 2, 1, 200), "attention_backward_scratch", "128");
        EXPECT_ERROR(co::attention_backward(f, f, f, f, f, f, f, f, f, nullptr, 1, 4, 2, 1, 16, nullptr),
                     "attention_backward", "scratch");
        EXPECT_ERROR(co::rope_forward(f, 1, 4, 2, 7, f, f, nullptr), "rope_forward", "even");
        EXPECT_ERROR(co::rmsnorm_forward(f, f, f, f, 4, 0, 1e-5f, nullptr), "rmsnorm_forward");
        EXPECT_ERROR(co::cross_entropy_forward(f, f, f, nullptr, 4, 0, nullptr), "cross_entropy_forward");
        EXPECT_ERROR(co::cross_entropy_backward(f, f, f, nullptr, 4, 10, 1.f, nullptr), "cross_entropy_backward",
                     "targets");
        EXPECT_ERROR(co::dequantize_packed(f, nullptr, f, QuantKind::NF4, 0, 10, nullptr), "dequantize_packed", "block");
        EXPECT_ERROR(co::adamw_update(f, f, f, f, -1, co::AdamWStep{}, nullptr), "adamw_update", "negative");
        EXPECT_ERROR(co::adamw_update(nullptr, f, f, f, 10, co::AdamWStep{}, nullptr), "adamw_update", "null");
        co::LoraLinear L;
        L.W = f;
        L.in = 8;
        L.out = 4;
        L.r = 2;  // A, B null
        EXPECT_ERROR(co::lora_linear_forward(nullptr, f, f, f, 3, L, co::GemmMath::Fp32, nullptr), "lora_linear_forward",
                     "rank 2");
        L.r = 0;
        EXPECT_ERROR(co::lora_linear_forward(nullptr, f, f, f, 3, L, co::GemmMath::Fp32, nullptr), "lora_linear_forward",
                     "handle");
        // Bf16 needs W_bf16 and the scratch (W alone is not enough), checked before the handle.
        EXPECT_ERROR(co::lora_linear_forward(nullptr, f, f, f, 3, L, co::GemmMath::Bf16, nullptr), "lora_linear_forward",
                     "W_bf16");
        EXPECT_ERROR(co::lora_linear_backward(nullptr, f, false, nullptr, nullptr, f, f, nullptr, nullptr, 3, L,
                                              co::GemmMath::Bf16, nullptr),
                     "lora_linear_backward", "bf16_scratch");
        EXPECT_ERROR(co::dequantize_packed_bf16(f, nullptr, f, QuantKind::NF4, 0, 10, nullptr), "dequantize_packed_bf16",
                     "block");
        EXPECT_ERROR(co::cast_to_bf16(nullptr, f, 10, nullptr), "cast_to_bf16", "null");
        EXPECT_ERROR(co::cast_to_bf16(f, f, -1, nullptr), "cast_to_bf16", "negative");
        co::cast_to_bf16(nullptr, nullptr, 0, nullptr);  // n = 0: no CUDA call
        EXPECT_ERROR(co::swiglu_forward(f, f, f, -3, nullptr), "swiglu_forward", "negative");
        // n = 0: nothing to do, no CUDA call.
        QCOMPARE(co::sum_f64(nullptr, 0, nullptr), 0.0);
        co::add_inplace(nullptr, nullptr, 0, nullptr);
        co::sum_sq_accumulate(nullptr, nullptr, 0, nullptr);
        co::attention_forward(nullptr, nullptr, nullptr, nullptr, nullptr, 0, 5, 2, 1, 16, nullptr);
    }

    void embedding() {
        NEED_GPU();
        const int64_t N = 2 * 37;
        const int C = 72, V = 1000;
        const std::vector<float> table = randn(size_t(V) * C, 11);
        std::vector<int> tok(static_cast<size_t>(N));
        Rng rng(12);
        for (auto& t : tok) t = int(rng.next() % uint64_t(V));
        tok[0] = 0;
        tok[1] = V - 1;
        std::vector<float> ref(size_t(N) * C);
        ops::embedding_forward(ref.data(), tok.data(), table.data(), N, C, V);
        Dev<float> dtab(table), dout(ref.size());
        Dev<int> dtok(tok);
        dout.poison();
        co::embedding_forward(dout.p, dtok.p, dtab.p, N, C, nullptr);
        CHECK_BITS("embedding_forward out", dout.get(), ref);
    }

    void rmsnorm_data() {
        QTest::addColumn<qlonglong>("N");
        QTest::addColumn<int>("C");
        QTest::newRow("N74/C72") << qlonglong(74) << 72;
        QTest::newRow("N5/C4096") << qlonglong(5) << 4096;
        QTest::newRow("N3/C1") << qlonglong(3) << 1;
        QTest::newRow("N9/C1000") << qlonglong(9) << 1000;
    }
    void rmsnorm() {
        NEED_GPU();
        QFETCH(qlonglong, N);
        QFETCH(int, C);
        const size_t nc = size_t(N) * size_t(C);
        const float eps = 1e-5f;
        const std::vector<float> x = randn(nc, 21, 2.0), dout = randn(nc, 22), dx0 = randn(nc, 23);
        std::vector<float> w = randn(size_t(C), 24, 0.1);
        for (auto& v : w) v += 1.f;
        std::vector<float> out(nc), rstd(static_cast<size_t>(N)), dx = dx0;
        ops::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, eps, 1);
        ops::rmsnorm_backward(dx.data(), nullptr, dout.data(), x.data(), w.data(), rstd.data(), N, C, 1);

        Dev<float> dX(x), dW(w), dOut(nc), dR(static_cast<size_t>(N)), dDout(dout), dDx(dx0);
        dOut.poison();
        dR.poison();
        co::rmsnorm_forward(dOut.p, dR.p, dX.p, dW.p, N, C, eps, nullptr);
        co::rmsnorm_backward(dDx.p, dDout.p, dX.p, dW.p, dR.p, N, C, nullptr);
        CHECK_CLOSE("rmsnorm_forward out", dOut.get(), out, 1e-5);
        CHECK_CLOSE("rmsnorm_forward rstd", dR.get(), rstd, 1e-5);
        CHECK_CLOSE("rmsnorm_backward dx (+=)", dDx.get(), dx, 1e-5);
    }

    void rope_data() {
        QTest::addColumn<int>("B");
        QTest::addColumn<int>("T");
        QTest::addColumn<int>("heads");
        QTest::addColumn<int>("d");
        QTest::newRow("B2/T37/h6/d12") << 2 << 37 << 6 << 12;
        QTest::newRow("B1/T19/h2/d128") << 1 << 19 << 2 << 128;
        QTest::newRow("B3/T5/h32/d64") << 3 << 5 << 32 << 64;
    }
    void rope() {
        NEED_GPU();
        QFETCH(int, B);
        QFETCH(int, T);
        QFETCH(int, heads);
        QFETCH(int, d);
        const int half = d / 2;
        std::vector<double> inv(static_cast<size_t>(half));
        for (int i = 0; i < half; ++i) inv[size_t(i)] = 1.0 / std::pow(10000.0, double(2 * i) / double(d));
        std::vector<float> cs(size_t(T) * half), sn(size_t(T) * half);
        ops::rope_table(cs.data(), sn.data(), T, inv);
        const size_t n = size_t(B) * T * heads * d;
        const std::vector<float> x = randn(n, 31), g = randn(n, 32);
        std::vector<float> xf = x, gb = g;
        ops::rope_forward(xf.data(), B, T, heads, d, cs.data(), sn.data(), 1);
        ops::rope_backward(gb.data(), B, T, heads, d, cs.data(), sn.data(), 1);
        Dev<float> dx(x), dg(g), dc(cs), ds(sn);
        co::rope_forward(dx.p, B, T, heads, d, dc.p, ds.p, nullptr);
        co::rope_backward(dg.p, B, T, heads, d, dc.p, ds.p, nullptr);
        CHECK_CLOSE("rope_forward x", dx.get(), xf, 1e-5);
        CHECK_CLOSE("rope_backward dx", dg.get(), gb, 1e-5);
    }

    void attention_data() {
        QTest::addColumn<int>("B");
        QTest::addColumn<int>("T");
        QTest::addColumn<int>("H");
        QTest::addColumn<int>("KVH");
        QTest::addColumn<int>("d");
        QTest::newRow("B2/T37/H6/KVH2/d12") << 2 << 37 << 6 << 2 << 12;  // GQA 3:1, tails in every tile
        QTest::newRow("B1/T1/H2/KVH1/d8") << 1 << 1 << 2 << 1 << 8;
        QTest::newRow("B2/T70/H4/KVH4/d64") << 2 << 70 << 4 << 4 << 64;   // MHA: dk/dv written directly
        QTest::newRow("B1/T257/H4/KVH2/d64") << 1 << 257 << 4 << 2 << 64; // many tiles
        QTest::newRow("B2/T33/H2/KVH1/d128") << 2 << 33 << 2 << 1 << 128;
        QTest::newRow("B1/T45/H3/KVH3/d100") << 1 << 45 << 3 << 3 << 100; // partial last register
        QTest::newRow("B3/T50/H4/KVH2/d33") << 3 << 50 << 4 << 2 << 33;   // odd head dim
    }
    void attention() {
        NEED_GPU();
        QFETCH(int, B);
        QFETCH(int, T);
        QFETCH(int, H);
        QFETCH(int, KVH);
        QFETCH(int, d);
        const int64_t N = int64_t(B) * T;
        const size_t nq = size_t(N) * H * d, nk = size_t(N) * KVH * d, nl = size_t(B) * H * T;
        const uint64_t seed = 100 + uint64_t(T) * 7 + uint64_t(d);
        const std::vector<float> q = randn(nq, seed, 1.5), k = randn(nk, seed + 1, 1.5), v = randn(nk, seed + 2),
                                 dy = randn(nq, seed + 3);

        // CPU reference (probabilities kept for its backward).
        std::vector<float> y(nq), att(nl * size_t(T)), dq(nq), dk(nk), dv(nk);
        ops::attention_forward(y.data(), att.data(), q.data(), k.data(), v.data(), B, T, H, KVH, d, 2);
        ops::attention_backward(dq.data(), dk.data(), dv.data(), dy.data(), att.data(), q.data(), k.data(), v.data(),
                                B, T, H, KVH, d, 2);
        // lse in float64: log sum_j exp(s_j), s_j = (q . k_j) / sqrt(d), j <= t.
        std::vector<float> lse_ref(nl);
        const int G = H / KVH;
        const double sc = 1.0 / std::sqrt(double(d));
        std::vector<double> s(static_cast<size_t>(T));
        for (int b = 0; b < B; ++b)
            for (int h = 0; h < H; ++h)
                for (int t = 0; t < T; ++t) {
                    double mx = -std::numeric_limits<double>::infinity();
                    for (int j = 0; j <= t; ++j) {
                        double acc = 0;
                        for (int i = 0; i < d; ++i)
                            acc += double(q[size_t((int64_t(b) * T + t) * H * d + h * d + i)]) *
                                   double(k[size_t((int64_t(b) * T + j) * KVH * d + (h / G) * d + i)]);
                        s[size_t(j)] = acc * sc;
                        mx = std::max(mx, s[size_t(j)]);
                    }
                    double sum = 0;
                    for (int j = 0; j <= t; ++j) sum += std::exp(s[size_t(j)] - mx);
                    lse_ref[(size_t(b) * H + size_t(h)) * T + size_t(t)] = float(mx + std::log(sum));
                }

        Dev<float> dQ(q), dK(k), dV(v), dY(dy), dYo(nq), dL(nl), dDq(nq), dDk(nk), dDv(nk);
        const int64_t scratch_n = co::attention_backward_scratch(B, T, H, KVH, d);
        QVERIFY(scratch_n >= int64_t(nl));
        Dev<float> scratch(static_cast<size_t>(scratch_n));
        dYo.poison();
        dL.poison();
        co::attention_forward(dYo.p, dL.p, dQ.p, dK.p, dV.p, B, T, H, KVH, d, nullptr);
        CHECK_CLOSE("attention_forward y", dYo.get(), y, 1e-4);
        CHECK_CLOSE("attention_forward lse (vs float64)", dL.get(), lse_ref, 1e-4, 1.0);

        dDq.poison();
        dDk.poison();
        dDv.poison();
        scratch.poison();  // the scratch needs no initial value
        co::attention_backward(dDq.p, dDk.p, dDv.p, dY.p, dYo.p, dL.p, dQ.p, dK.p, dV.p, scratch.p, B, T, H, KVH, d,
                               nullptr);
        const std::vector<float> gq = dDq.get(), gk = dDk.get(), gv = dDv.get();
        CHECK_CLOSE("attention_backward dq", gq, dq, 1e-4, 1.0);
        CHECK_CLOSE("attention_backward dk", gk, dk, 1e-4, 1.0);
        CHECK_CLOSE("attention_backward dv", gv, dv, 1e-4, 1.0);

        // Deterministic: a second run (outputs and scratch poisoned again) gives the same bytes.
        dDq.poison();
        dDk.poison();
        dDv.poison();
        scratch.poison();
        co::attention_backward(dDq.p, dDk.p, dDv.p, dY.p, dYo.p, dL.p, dQ.p, dK.p, dV.p, scratch.p, B, T, H, KVH, d,
                               nullptr);
        QVERIFY2(same_bytes(dDq.get(), gq), "attention_backward dq differs between two identical runs");
        QVERIFY2(same_bytes(dDk.get(), gk), "attention_backward dk differs between two identical runs");
        QVERIFY2(same_bytes(dDv.get(), gv), "attention_backward dv differs between two identical runs");
    }

    void swiglu() {
        NEED_GPU();
        const int64_t n = 10007;
        const std::vector<float> g = randn(size_t(n), 41, 3.0), u = randn(size_t(n), 42), dh = randn(size_t(n), 43);
        std::vector<float> h(static_cast<size_t>(n)), dg(static_cast<size_t>(n)), du(static_cast<size_t>(n));
        ops::swiglu_forward(h.data(), g.data(), u.data(), n, 1);
        ops::swiglu_backward(dg.data(), du.data(), dh.data(), g.data(), u.data(), n, 1);
        Dev<float> dG(g), dU(u), dDh(dh), dH(static_cast<size_t>(n)), dDg(static_cast<size_t>(n)), dDu(static_cast<size_t>(n));
        dDg.poison();
        dDu.poison();
        co::swiglu_forward(dH.p, dG.p, dU.p, n, nullptr);
        co::swiglu_backward(dDg.p, dDu.p, dDh.p, dG.p, dU.p, n, nullptr);
        CHECK_CLOSE("swiglu_forward h", dH.get(), h, 1e-5);
        CHECK_CLOSE("swiglu_backward dg", dDg.get(), dg, 1e-5);
        CHECK_CLOSE("swiglu_backward du", dDu.get(), du, 1e-5);
    }

    void loraLinear_data() {
        QTest::addColumn<qlonglong>("N");
        QTest::addColumn<qlonglong>("in");
        QTest::addColumn<qlonglong>("out");
        QTest::addColumn<int>("r");
        QTest::addColumn<bool>("bias");
        QTest::addColumn<bool>("accumulate");
        QTest::addColumn<int>("math");  // co::GemmMath
        for (co::GemmMath mm : {co::GemmMath::Fp32, co::GemmMath::Tf32, co::GemmMath::Bf16}) {
            const char* m = mm == co::GemmMath::Fp32 ? "fp32" : mm == co::GemmMath::Tf32 ? "tf32" : "bf16";
            QTest::addRow("N37/in72/out100/r8/bias/%s", m) << qlonglong(37) << qlonglong(72) << qlonglong(100) << 8
                                                           << true << false << int(mm);
            QTest::addRow("N64/in512/out384/r16/acc/%s", m) << qlonglong(64) << qlonglong(512) << qlonglong(384) << 16
                                                            << false << true << int(mm);
            QTest::addRow("N37/in72/out100/r0/%s", m) << qlonglong(37) << qlonglong(72) << qlonglong(100) << 0 << true
                                                      << true << int(mm);
        }
        QTest::addRow("N33/in1000/out72/r4/bias/acc/bf16") << qlonglong(33) << qlonglong(1000) << qlonglong(72) << 4
                                                           << true << true << int(co::GemmMath::Bf16);
    }
    void loraLinear() {
        NEED_GPU();
        QFETCH(qlonglong, N);
        QFETCH(qlonglong, in);
        QFETCH(qlonglong, out);
        QFETCH(int, r);
        QFETCH(bool, bias);
        QFETCH(bool, accumulate);
        QFETCH(int, math);
        const co::GemmMath gm = co::GemmMath(math);
        const bool tf32 = gm == co::GemmMath::Tf32, bf16 = gm == co::GemmMath::Bf16;
        const size_t sN = size_t(N), sI = size_t(in), sO = size_t(out), sR = size_t(r);
        const float scale = 2.0f;
        const std::vector<float> W = randn(sO * sI, 51, 0.05), bv = randn(sO, 52), A = randn(sR * sI, 53, 0.05),
                                 Bm = randn(sO * sR, 54, 0.05), x = randn(sN * sI, 55), dy = randn(sN * sO, 56),
                                 dx0 = randn(sN * sI, 57), dA0 = randn(sR * sI, 58), dB0 = randn(sO * sR, 59);

        ops::LoraLinear Lc;
        Lc.W = W.data();
        Lc.bias = bias ? bv.data() : nullptr;
        Lc.A = r ? A.data() : nullptr;
        Lc.B = r ? Bm.data() : nullptr;
        Lc.in = in;
        Lc.out = out;
        Lc.r = r;
        Lc.scale = scale;
        std::vector<float> y(sN * sO), xa(sN * sR), dx = dx0, dA = dA0, dB = dB0, dxa(sN * sR);
        ops::lora_linear_forward(y.data(), r ? xa.data() : nullptr, x.data(), N, Lc);
        ops::lora_linear_backward(dx.data(), accumulate, r ? dA.data() : nullptr, r ? dB.data() : nullptr, nullptr,
                                  dy.data(), x.data(), r ? xa.data() : nullptr, r ? dxa.data() : nullptr, N, Lc);

        CudaBlas cb;
        Dev<float> dW(W), dBias(bv), dAm(A), dBm(Bm), dX(x), dDy(dy), dYo(sN * sO), dXa(sN * sR), dDx(dx0),
            dDA(dA0), dDB(dB0), dDxa(sN * sR);
        co::LoraLinear Lg;
        Lg.W = bf16 ? nullptr : dW.p;  // Bf16 must not read the fp32 W
        Dev<uint16_t> dWb(bf16 ? sO * sI : 0), dScr(bf16 ? sN * std::max(sI, sO) : 0);
        if (bf16) {
            co::cast_to_bf16(dWb.p, dW.p, int64_t(sO * sI), nullptr);
            LOFTQ_CUDA_CHECK(cudaDeviceSynchronize());  // the legacy stream vs CudaBlas's stream
            Lg.W_bf16 = dWb.p;
            Lg.bf16_scratch = dScr.p;
        }
        Lg.bias = bias ? dBias.p : nullptr;
        Lg.A = r ? dAm.p : nullptr;
        Lg.B = r ? dBm.p : nullptr;
        Lg.in = in;
        Lg.out = out;
        Lg.r = r;
        Lg.scale = scale;
        const co::GemmMath mth = gm;
        if (!accumulate) dDx.poison();  // overwritten
        dYo.poison();
        co::lora_linear_forward(cb.blas, dYo.p, dXa.p, dX.p, N, Lg, mth, cb.stream);
        co::lora_linear_backward(cb.blas, dDx.p, accumulate, dDA.p, dDB.p, dDy.p, dX.p, dXa.p, dDxa.p, N, Lg, mth,
                                 cb.stream);
        const double tol_w = bf16 ? 1e-2 : tf32 ? 4e-3 : 1e-5;  // products with the base weight W
        const std::vector<float> gy = dYo.get(), gdx = dDx.get();
        CHECK_CLOSE("lora_linear_forward y", gy, y, tol_w);
        CHECK_CLOSE(accumulate ? "lora_linear_backward dx (+=)" : "lora_linear_backward dx (=)", gdx, dx, tol_w);
        if (bf16) {
            // The CPU on the same bf16-rounded operands: base part on (bf16 W, bf16 x / dy), the
            // LoRA part (and bias, dx0) in fp32, as the device computes them.
            const std::vector<float> Wr = bf16_round(W), xr = bf16_round(x), dyr = bf16_round(dy);
            ops::LoraLinear Lp = Lc, Lr = Lc;
            Lp.A = Lp.B = Lr.A = Lr.B = nullptr;
            Lp.r = Lr.r = 0;
            Lr.W = Wr.data();
            std::vector<float> yp(sN * sO), yr(sN * sO), dxp = dx0, dxr = dx0, ye(sN * sO), dxe(sN * sI);
            ops::lora_linear_forward(yp.data(), nullptr, x.data(), N, Lp);
            ops::lora_linear_forward(yr.data(), nullptr, xr.data(), N, Lr);
            ops::lora_linear_backward(dxp.data(), accumulate, nullptr, nullptr, nullptr, dy.data(), x.data(), nullptr,
                                      nullptr, N, Lp);
            ops::lora_linear_backward(dxr.data(), accumulate, nullptr, nullptr, nullptr, dyr.data(), xr.data(), nullptr,
                                      nullptr, N, Lr);
            for (size_t i = 0; i < ye.size(); ++i) ye[i] = yr[i] + (y[i] - yp[i]);
            for (size_t i = 0; i < dxe.size(); ++i) dxe[i] = dxr[i] + (dx[i] - dxp[i]);
            CHECK_CLOSE("y vs CPU on bf16-rounded W, x", gy, ye, 1e-5);
            CHECK_CLOSE("dx vs CPU on bf16-rounded W, dy", gdx, dxe, 1e-5);
        }
        if (r > 0) {
            CHECK_CLOSE("lora_linear_forward xa", dXa.get(), xa, 1e-5);
            CHECK_CLOSE("lora_linear_backward dA (+=)", dDA.get(), dA, 1e-5);
            CHECK_CLOSE("lora_linear_backward dB (+=)", dDB.get(), dB, 1e-5);
        }
    }

    void crossEntropy_data() {
        QTest::addColumn<qlonglong>("N");
        QTest::addColumn<int>("V");
        QTest::newRow("N37/V1000") << qlonglong(37) << 1000;
        QTest::newRow("N37/V1003") << qlonglong(37) << 1003;
        QTest::newRow("N5/V151936") << qlonglong(5) << 151936;
        QTest::newRow("N4/V1") << qlonglong(4) << 1;
    }
    void crossEntropy() {
        NEED_GPU();
        QFETCH(qlonglong, N);
        QFETCH(int, V);
        const size_t nv = size_t(N) * size_t(V);
        std::vector<float> logits = randn(nv, 61 + uint64_t(V), 3.0);
        logits[size_t(V) / 2] = 40.f;  // a dominant logit in row 0
        std::vector<int> tgt(static_cast<size_t>(N));
        Rng rng(62);
        for (size_t n = 0; n < tgt.size(); ++n) tgt[n] = n % 5 == 3 ? -1 : int(rng.next() % uint64_t(V));  // some ignored
        tgt[0] = V - 1;
        int64_t scored = 0;
        std::vector<float> lse(static_cast<size_t>(N));
        const double mean = ops::cross_entropy_forward(lse.data(), logits.data(), tgt.data(), N, V, &scored, 1);
        QVERIFY(scored > 0);
        std::vector<float> row_ref(size_t(N), 0.f);
        for (size_t n = 0; n < row_ref.size(); ++n)
            if (tgt[n] >= 0) row_ref[n] = float(double(lse[n]) - double(logits[n * size_t(V) + size_t(tgt[n])]));
        const float dloss = float(1.0 / double(scored));
        std::vector<float> dlog(nv);
        ops::cross_entropy_backward(dlog.data(), logits.data(), lse.data(), tgt.data(), N, V, dloss, 1);

        Dev<float> dLog(logits), dLse(static_cast<size_t>(N)), dRow(static_cast<size_t>(N)), dD(nv);
        Dev<int> dT(tgt);
        dLse.poison();
        dRow.poison();
        dD.poison();
        co::cross_entropy_forward(dLse.p, dRow.p, dLog.p, dT.p, N, V, nullptr);
        CHECK_CLOSE("cross_entropy_forward lse", dLse.get(), lse, 1e-5);
        CHECK_CLOSE("cross_entropy_forward row_loss", dRow.get(), row_ref, 1e-5);
        const double gmean = co::sum_f64(dRow.p, N, nullptr) / double(scored);
        const double mean_err = std::fabs(gmean - mean) / std::max(std::fabs(mean), 1e-30);
        std::printf("  %-46s rel err %.3g (tol 1e-5): gpu %.9g cpu %.9g\n", "cross_entropy mean loss", mean_err, gmean,
                    mean);
        QVERIFY2(mean_err <= 1e-5, qPrintable(QString("cross_entropy mean loss: rel err %1 > 1e-5").arg(mean_err)));

        co::cross_entropy_backward(dD.p, dLog.p, dLse.p, dT.p, N, V, dloss, nullptr);
        const std::vector<float> g_out = dD.get();
        CHECK_CLOSE("cross_entropy_backward dlogits", g_out, dlog, 1e-5);
        // In place (dlogits == logits): the same bits as out of place.
        co::cross_entropy_backward(dLog.p, dLog.p, dLse.p, dT.p, N, V, dloss, nullptr);
        CHECK_BITS("cross_entropy_backward in place vs out of place", dLog.get(), g_out);
    }

    void elementwise() {
        NEED_GPU();
        const int64_t n = 100003;
        const std::vector<float> x = randn(size_t(n), 71), y0 = randn(size_t(n), 72);
        const float s = 0.3712f;
        std::vector<float> y = y0, xs = x;
        for (size_t i = 0; i < y.size(); ++i) y[i] += x[i];
        for (auto& e : xs) e *= s;
        Dev<float> dX(x), dY(y0);
        co::add_inplace(dY.p, dX.p, n, nullptr);
        co::scale_inplace(dX.p, n, s, nullptr);
        CHECK_BITS("add_inplace", dY.get(), y);
        CHECK_BITS("scale_inplace", dX.get(), xs);
    }

    void sums_data() {
        QTest::addColumn<qlonglong>("n");
        for (qlonglong n : {1LL, 1000LL, 1000003LL, (8LL << 20) + 5}) QTest::addRow("n%lld", n) << n;
    }
    void sums() {
        NEED_GPU();
        QFETCH(qlonglong, n);
        const std::vector<float> x = randn(size_t(n), 81), x2 = randn(size_t(n), 82, 3.0);
        // References in long double (64-bit mantissa on x86-64): a plain float64 loop over 8M
        // squares is itself off by ~1e-12, the size of the tolerance.
        long double lref = 0, lmag = 0, lss = 0, lss2 = 0;
        for (float v : x) {
            lref += v;
            lmag += std::fabs(v);
            lss += (long double)v * v;
        }
        for (float v : x2) lss2 += (long double)v * v;
        const double ref = double(lref), mag = double(lmag);
        Dev<float> dX(x), dX2(x2);
        const double got = co::sum_f64(dX.p, n, nullptr);
        const double err = std::fabs(got - ref) / mag;
        std::printf("  %-46s |gpu - cpu| / sum|x| = %.3g (tol 1e-12)\n", "sum_f64", err);
        QVERIFY2(err <= 1e-12, qPrintable(QString("sum_f64: error %1 of sum |x| > 1e-12").arg(err)));
        const double again = co::sum_f64(dX.p, n, nullptr);
        QVERIFY2(std::memcmp(&got, &again, sizeof got) == 0, "sum_f64 differs between two identical calls");

        // Accumulates: 1.5 + sum x^2 + sum x2^2.
        Dev<double> acc(std::vector<double>{1.5});
        co::sum_sq_accumulate(acc.p, dX.p, n, nullptr);
        co::sum_sq_accumulate(acc.p, dX2.p, n, nullptr);
        const double a = acc.get()[0], aref = double(1.5L + lss + lss2);
        const double aerr = std::fabs(a - aref) / aref;
        std::printf("  %-46s rel err %.3g (tol 1e-12)\n", "sum_sq_accumulate", aerr);
        QVERIFY2(aerr <= 1e-12, qPrintable(QString("sum_sq_accumulate: rel err %1 > 1e-12").arg(aerr)));
        acc.set(std::vector<double>{1.5});
        co::sum_sq_accumulate(acc.p, dX.p, n, nullptr);
        co::sum_sq_accumulate(acc.p, dX2.p, n, nullptr);
        const double b = acc.get()[0];
        QVERIFY2(std::memcmp(&a, &b, sizeof a) == 0, "sum_sq_accumulate differs between two identical runs");
    }

    void dequantizePacked_data() {
        QTest::addColumn<int>("kind");
        QTest::addColumn<int>("block");
        QTest::addColumn<qlonglong>("n");
        for (QuantKind k : all_quant_kinds())
            for (int block : {32, 64, 100})
                for (qlonglong n : {10001LL, 7LL})
                    QTest::addRow("%s/b%d/n%lld", quant_format(k).name, block, n) << int(k) << block << n;
    }
    void dequantizePacked() {
        NEED_GPU();
        QFETCH(int, kind);
        QFETCH(int, block);
        QFETCH(qlonglong, n);
        const QuantFormat& f = quant_format(QuantKind(kind));
        const size_t nn = size_t(n), nb = num_blocks(nn, block);
        Rng rng(91 + uint64_t(kind) * 13 + uint64_t(block));
        std::vector<uint8_t> codes(nn);
        for (auto& c : codes) c = uint8_t(rng.next() % uint64_t(f.levels));
        std::vector<float> scales = randn(nb, 92);
        for (auto& s : scales) s = std::fabs(s);
        scales[0] = nb > 1 ? 0.f : scales[0];  // an all-zero block
        if (nb > 2) scales[1] = 1e-40f;          // subnormal scale: subnormal values (no flush to zero)
        if (nb > 3) scales[2] = 3e38f;
        std::vector<uint8_t> packed(packed_size(nn, f.bits));
        pack_codes(codes.data(), nn, f.bits, packed.data());
        std::vector<uint8_t> unpacked(nn);
        unpack_codes(packed.data(), nn, f.bits, unpacked.data());
        QVERIFY(unpacked == codes);
        std::vector<float> ref(nn);
        dequantize(f, unpacked.data(), scales.data(), nn, block, ref.data(), 1);

        Dev<uint8_t> dP(packed);  // exactly packed_size bytes: an over-read would show under compute-sanitizer
        Dev<float> dS(scales), dW(nn);
        dW.poison();
        co::dequantize_packed(dW.p, dP.p, dS.p, QuantKind(kind), block, n, nullptr);
        CHECK_BITS(std::string("dequantize_packed ") + f.name, dW.get(), ref);

        // bf16: the same fp32 value rounded once.
        std::vector<uint16_t> ref16(nn);
        for (size_t i = 0; i < nn; ++i) ref16[i] = bf16_ref(ref[i]);
        Dev<uint16_t> dWb(nn);
        dWb.poison();
        co::dequantize_packed_bf16(dWb.p, dP.p, dS.p, QuantKind(kind), block, n, nullptr);
        const size_t bad = u16_mismatches(dWb.get(), ref16);
        std::printf("  dequantize_packed_bf16 %-23s %zu of %zu elements differ in bits\n", f.name, bad, nn);
        QVERIFY2(bad == 0, "dequantize_packed_bf16 differs from the host bf16 rounding of dequantize");
    }

    // cast_to_bf16 against bf16_ref: random values over many scales, and the special cases (signed
    // zeros, infinities, NaN, subnormals, exact ties both ways, the largest float -> inf).
    void castToBf16() {
        NEED_GPU();
        std::vector<float> v = randn(10001, 97);
        for (size_t i = 0; i < v.size(); ++i) v[i] = std::ldexp(v[i], int(i % 61) - 30);
        const uint32_t special[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u,
                                    0x00000001u, 0x00008000u, 0x00018000u, 0x0000ffffu, 0x007fffffu, 0x3f808000u,
                                    0x3f818000u, 0xbf808000u, 0x3f808001u, 0x3f807fffu, 0x7f7fffffu, 0xff7fffffu,
                                    0x7f7f8000u, 0x7f7f7fffu};
        for (uint32_t b : special) {
            float f;
            std::memcpy(&f, &b, 4);
            v.push_back(f);
        }
        std::vector<uint16_t> ref(v.size());
        for (size_t i = 0; i < v.size(); ++i) ref[i] = bf16_ref(v[i]);
        QCOMPARE(bf16_ref(1.00390625f), uint16_t(0x3f80));  // tie, even below
        QCOMPARE(ref[ref.size() - 4], uint16_t(0x7f80));      // FLT_MAX -> inf
        Dev<float> dV(v);
        Dev<uint16_t> dO(v.size());
        dO.poison();
        co::cast_to_bf16(dO.p, dV.p, int64_t(v.size()), nullptr);
        const size_t bad = u16_mismatches(dO.get(), ref);
        std::printf("  cast_to_bf16: %zu of %zu elements differ in bits\n", bad, v.size());
        QVERIFY2(bad == 0, "cast_to_bf16 differs from the host round-to-nearest-even");
    }

    void adamw_data() {
        QTest::addColumn<qlonglong>("n");
        QTest::addColumn<double>("weight_decay");
        QTest::newRow("n1000/wd0") << qlonglong(1000) << 0.0;
        QTest::newRow("n1001/wd0.01") << qlonglong(1001) << 0.01;
    }
    void adamw() {
        NEED_GPU();
        QFETCH(qlonglong, n);
        QFETCH(double, weight_decay);
        const size_t nn = size_t(n);
        std::vector<float> p = randn(nn, 101, 0.02), g(nn);
        TrainableTensor tt;
        tt.name = "test.lora_A.weight";
        tt.value = p.data();
        tt.grad = g.data();
        tt.rows = 1;
        tt.cols = n;
        AdamWParams prm;
        prm.weight_decay = weight_decay;
        AdamW opt({tt}, prm);

        Dev<float> dP(p), dG(nn), dM(std::vector<float>(nn, 0.f)), dV(std::vector<float>(nn, 0.f));
        const double lrs[] = {1e-3, 2e-4, 5e-4, 1e-4, 3e-3};
        for (int step = 0; step < 5; ++step) {
            std::vector<float> g0 = randn(nn, 110 + uint64_t(step), step == 2 ? 5.0 : 0.1);
            g0[0] = 0.f;
            g0[1] = 1e-30f;
            g0[2] = -1e-42f;  // subnormal
            g0[3] = 1e3f;
            dG.set(g0);
            // Every other step clips to max_norm 0.5: the CPU scales the gradients in place
            // (clip_grad_norm), the device gets the unscaled gradients and the same scale.
            double grad_scale = 1.0;
            std::copy(g0.begin(), g0.end(), g.begin());  // tt.grad points into g
            if (step % 2 == 1) {
                double ss = 0;
                for (float v : g0) ss += double(v) * double(v);
                const double norm = std::sqrt(ss), max_norm = 0.5;
                QVERIFY(norm > max_norm);
                grad_scale = max_norm / (norm + 1e-6);
                QCOMPARE(clip_grad_norm({tt}, max_norm), norm);
            }
            opt.step({tt}, lrs[step]);

            co::AdamWStep s;
            s.lr = lrs[step];
            s.beta1 = prm.beta1;
            s.beta2 = prm.beta2;
            s.eps = prm.eps;
            s.weight_decay = prm.weight_decay;
            s.bc1 = 1.0 - std::pow(prm.beta1, double(step + 1));
            s.bc2 = 1.0 - std::pow(prm.beta2, double(step + 1));
            s.grad_scale = grad_scale;
            co::adamw_update(dP.p, dG.p, dM.p, dV.p, n, s, nullptr);
            const std::string tag = " step " + std::to_string(step + 1) + (step % 2 ? " (clipped)" : "");
            CHECK_BITS("adamw_update p" + tag, dP.get(), p);
            CHECK_BITS("adamw_update m" + tag, dM.get(), opt.m()[0]);
            CHECK_BITS("adamw_update v" + tag, dV.get(), opt.v()[0]);
        }
    }
};

QTEST_GUILESS_MAIN(TestCudaTrainOps)
#include "test_cuda_train_ops.moc"
