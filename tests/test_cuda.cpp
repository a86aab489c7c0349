// test_cuda.cpp: Qt Test for engine/cuda: device discovery (never throws; a reason when there is
// no GPU) and the blockwise quantize/dequantize kernels against the CPU quantize_dequantize()
// of engine/quant, bit for bit (codes, scales and dequantized values), for every QuantKind,
// block sizes 32/64/128, odd lengths, random normal data plus all-zero, extreme, subnormal,
// infinite and NaN blocks. The GPU tests QSKIP without a usable device; the no-device test
// QSKIPs when one is present. Leaves out timing (bench/).
#include <QtTest>

#include "gpu_skip.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "cuda/device.h"
#include "cuda/quantize.h"
#include "quant/quantizer.h"
#include "test_support.h"

using namespace loftq;

namespace {

uint32_t bits_of(float f) { return loftq::test::float_bits(f); }

// Equal bits, or both NaN (a NaN's payload may differ between the CPU and the GPU: e.g.
// 0 * inf in a block whose scale is inf).
bool same_float(float a, float b) { return bits_of(a) == bits_of(b) || (std::isnan(a) && std::isnan(b)); }

// Random normal data with a few planted blocks (for block size `block`): all zero, huge and
// tiny values, subnormals, +-inf, NaN among normal values, signed zeros.
std::vector<float> test_data(size_t n, int block, uint64_t seed) {
    std::vector<float> x = test::gaussian(n, seed);
    const size_t b = size_t(block);
    const float big = std::numeric_limits<float>::max(), sub = std::numeric_limits<float>::denorm_min();
    auto blk = [&](size_t k) { return k * b < n ? x.data() + k * b : nullptr; };
    if (float* p = blk(1)) std::fill(p, p + b, 0.0f);
    if (float* p = blk(2)) { p[0] = big; p[1] = -big; p[2] = 1e-30f; p[3] = -0.0f; }
    if (float* p = blk(3)) for (size_t i = 0; i < b; ++i) p[i] = float(int(i % 7) - 3) * sub;
    if (float* p = blk(4)) { p[5] = std::numeric_limits<float>::infinity(); p[6] = -1.0f; }
    if (float* p = blk(5)) p[7] = std::numeric_limits<float>::quiet_NaN();
    if (float* p = blk(6)) { std::fill(p, p + b, -0.0f); p[1] = std::numeric_limits<float>::quiet_NaN(); }
    if (float* p = blk(7)) for (size_t i = 0; i < b; ++i) p[i] *= 1e-38f;  // normal/subnormal boundary
    return x;
}

}  // namespace

class TestCuda : public QObject {
    Q_OBJECT

    bool have_ = false;
    std::string why_;

private slots:
    void initTestCase() {
        have_ = cuda_available(&why_);
        if (have_) std::printf("CUDA device: %s\n", cuda_device_name().c_str());
        else std::printf("no CUDA device: %s\n", why_.c_str());
    }

    // Runs everywhere: without a device, cuda_available says why, and the API throws
    // loftq::Error instead of crashing.
    void noDeviceIsReported() {
        if (have_) QSKIP("a CUDA device is present");
        std::string why;
        bool ok = true;
        try {
            ok = cuda_available(&why);
        } catch (...) {
            QFAIL("cuda_available threw");
        }
        QVERIFY(!ok);
        QVERIFY(!why.empty());
        QVERIFY(!cuda_available(nullptr));
        std::vector<float> x(100, 1.0f), out(100);
        QVERIFY_THROWS_EXCEPTION(Error, cuda_quantize_dequantize_host(QuantKind::NF4, x.data(), 100, 64, out.data(),
                                                                       nullptr, nullptr));
        QVERIFY_THROWS_EXCEPTION(Error, cuda_device_name());
    }

    // Argument checks come before any CUDA call, so they run with or without a device.
    void badArguments() {
        std::vector<float> x(10, 1.0f), out(10);
        QVERIFY_THROWS_EXCEPTION(Error, cuda_quantize_dequantize_host(QuantKind::NF4, x.data(), 10, 0, out.data(),
                                                                       nullptr, nullptr));
        QVERIFY_THROWS_EXCEPTION(Error, cuda_quantize_dequantize_host(QuantKind::INT8, x.data(), -1, 64, out.data(),
                                                                       nullptr, nullptr));
        cuda_quantize_dequantize_host(QuantKind::NF4, x.data(), 0, 64, out.data(), nullptr, nullptr);  // no-op
    }

    void matchesCpu_data() {
        QTest::addColumn<int>("kind");
        QTest::addColumn<int>("block");
        QTest::addColumn<qlonglong>("n");
        for (QuantKind k : all_quant_kinds())
            for (int block : {32, 64, 128})
                for (qlonglong n : {qlonglong(4097), qlonglong(1000003)})
                    QTest::addRow("%s/b%d/n%lld", quant_format(k).name, block, n) << int(k) << block << n;
    }
    void matchesCpu() {
        GPU_OR_SKIP(have_, why_);
        QFETCH(int, kind);
        QFETCH(int, block);
        QFETCH(qlonglong, n);
        const QuantKind k = QuantKind(kind);
        const QuantFormat& f = quant_format(k);
        const size_t nn = size_t(n), nb = num_blocks(nn, block);
        const std::vector<float> x = test_data(nn, block, 1234 + uint64_t(kind) * 7 + uint64_t(block));

        std::vector<float> cpu_out(nn), cpu_scales(nb), gpu_out(nn, -7.0f), gpu_scales(nb, -7.0f);
        std::vector<uint8_t> cpu_codes(nn), gpu_codes(nn, 0xEE);
        quantize_dequantize(f, x.data(), nn, block, cpu_out.data(), cpu_codes.data(), cpu_scales.data(), 2);
        cuda_quantize_dequantize_host(k, x.data(), n, block, gpu_out.data(), gpu_codes.data(), gpu_scales.data());

        size_t bad_codes = 0, bad_scales = 0, bad_out = 0;
        double max_diff = 0;
        for (size_t i = 0; i < nn; ++i) {
            bad_codes += cpu_codes[i] != gpu_codes[i];
            bad_out += !same_float(cpu_out[i], gpu_out[i]);
            if (std::isfinite(cpu_out[i]) && std::isfinite(gpu_out[i]))
                max_diff = std::max(max_diff, std::fabs(double(cpu_out[i]) - double(gpu_out[i])));
        }
        for (size_t b = 0; b < nb; ++b) bad_scales += !same_float(cpu_scales[b], gpu_scales[b]);
        std::printf("  %-5s block %3d n %7lld: max |gpu - cpu| = %g, mismatches codes %zu scales %zu values %zu\n",
                    f.name, block, n, max_diff, bad_codes, bad_scales, bad_out);
        QCOMPARE(bad_codes, size_t(0));
        QCOMPARE(bad_scales, size_t(0));
        QCOMPARE(bad_out, size_t(0));

        // Outputs are optional: values only, and codes + scales only, give the same results.
        std::vector<float> out2(nn);
        cuda_quantize_dequantize_host(k, x.data(), n, block, out2.data(), nullptr, nullptr);
        for (size_t i = 0; i < nn; ++i)
            if (!same_float(out2[i], cpu_out[i])) QFAIL(qPrintable(QString("values-only run differs at %1").arg(i)));
        std::vector<uint8_t> codes2(nn);
        std::vector<float> scales2(nb);
        cuda_quantize_dequantize_host(k, x.data(), n, block, nullptr, codes2.data(), scales2.data());
        QVERIFY(codes2 == cpu_codes);
        for (size_t b = 0; b < nb; ++b) QVERIFY(same_float(scales2[b], cpu_scales[b]));
    }
};

QTEST_GUILESS_MAIN(TestCuda)
#include "test_cuda.moc"
