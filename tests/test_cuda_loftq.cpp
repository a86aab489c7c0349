// test_cuda_loftq.cpp: Qt Test for the GPU LoftQ decomposition (cuda/decompose_cuda.h) against
// the CPU loftq_decompose on a structured 512 x 384 weight: NF4 and NF2, r 8 and 16, T = 3,
// randomized (same host-generated test matrix) and exact SVD. Checks ||W||, the QLoRA baseline
// (1e-6 relative), every step's error (1e-4 relative), the final codes (equal except where a
// value lies within rounding of a threshold: mismatches counted and printed, at most 1e-3 of
// them) and the low-rank product B A (printed, loose bound); T = 0 (bit-identical to the CPU);
// cancellation. GPU tests QSKIP with the reason when cuda_available() is false; the no-device
// test checks that the call then throws loftq::Error. Leaves out timing (bench/).
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/cancel.h"
#include "core/error.h"
#include "cuda/decompose_cuda.h"
#include "cuda/device.h"
#include "linalg/blas.h"
#include "loftq/decompose.h"
#include "test_support.h"

using namespace loftq;

namespace {

constexpr int64_t kM = 512, kN = 384;

double rel_diff(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-300); }

// B A (m x n) in float64 accumulation.
std::vector<float> product(const LowRank& f) {
    const int64_t m = f.B.rows, n = f.A.cols, r = f.B.cols;
    std::vector<float> p(size_t(m * n), 0.f);
    if (r > 0) gemm_ref(false, false, m, n, r, 1.f, f.B.data(), r, f.A.data(), n, 0.f, p.data(), n);
    return p;
}

}  // namespace

class TestCudaLoftq : public QObject {
    Q_OBJECT

    bool have_ = false;
    std::string why_;
    Matrix W_;

private slots:
    void initTestCase() {
        have_ = cuda_available(&why_);
        if (have_) std::printf("CUDA device: %s\n", cuda_device_name().c_str());
        else std::printf("no CUDA device: %s\n", why_.c_str());
        W_ = test::structured_matrix(kM, kN, 2024);
        set_blas_threads(1);
    }

    // Runs everywhere: without a device the call throws loftq::Error (never crashes).
    void noDeviceThrows() {
        if (have_) QSKIP("a CUDA device is present");
        WeightSettings s;
        SvdOptions o;
        QVERIFY_THROWS_EXCEPTION(Error, loftq_decompose_cuda(W_.data(), kM, kN, s, o));
    }

    void matchesCpu_data() {
        QTest::addColumn<int>("kind");
        QTest::addColumn<int>("rank");
        QTest::addColumn<int>("method");
        for (QuantKind k : {QuantKind::NF4, QuantKind::NF2})
            for (int r : {8, 16})
                for (SvdMethod mth : {SvdMethod::Randomized, SvdMethod::Exact})
                    QTest::addRow("%s/r%d/%s", quant_format(k).name, r, mth == SvdMethod::Exact ? "exact" : "randomized")
                        << int(k) << r << int(mth);
    }
    void matchesCpu() {
        if (!have_) QSKIP(("no CUDA device: " + why_).c_str());
        QFETCH(int, kind);
        QFETCH(int, rank);
        QFETCH(int, method);
        WeightSettings s;
        s.quant = QuantKind(kind);
        s.block = 64;
        s.rank = rank;
        s.iters = 3;
        s.svd = SvdMethod(method);
        SvdOptions o;
        o.seed = weight_seed(17, "layers.0.q_proj", 0);

        const Decomposition cpu = loftq_decompose(W_.data(), kM, kN, s, o, 2);
        std::vector<StepReport> events;
        CudaDecomposeStats stats;
        const Decomposition gpu = loftq_decompose_cuda(
            W_.data(), kM, kN, s, o, [&](const StepReport& r) { events.push_back(r); }, nullptr, &stats);

        QCOMPARE(gpu.Q.rows, kM);
        QCOMPARE(gpu.Q.cols, kN);
        QCOMPARE(gpu.lr.B.rows, kM);
        QCOMPARE(gpu.lr.B.cols, int64_t(rank));
        QCOMPARE(gpu.lr.A.rows, int64_t(rank));
        QCOMPARE(gpu.lr.A.cols, kN);
        QCOMPARE(gpu.codes.size(), cpu.codes.size());
        QCOMPARE(gpu.scales.size(), cpu.scales.size());
        QCOMPARE(gpu.steps.size(), cpu.steps.size());
        QCOMPARE(events.size(), size_t(s.iters));

        size_t code_mismatch = 0;
        for (size_t i = 0; i < cpu.codes.size(); ++i) code_mismatch += cpu.codes[i] != gpu.codes[i];
        const std::vector<float> pc = product(cpu.lr), pg = product(gpu.lr);
        const double lr_diff = test::rel_err(pc.data(), pg.data(), pc.size());
        std::printf("  |W| rel %.2e  baseline rel %.2e  codes mismatched %zu / %zu  BA rel %.2e  device %.2f MiB\n",
                    rel_diff(gpu.w_norm, cpu.w_norm), rel_diff(gpu.baseline, cpu.baseline), code_mismatch,
                    cpu.codes.size(), lr_diff, double(stats.device_bytes) / (1 << 20));
        for (size_t t = 0; t < cpu.steps.size(); ++t) {
            std::printf("  step %d: cpu %.8f gpu %.8f rel %.2e\n", cpu.steps[t].step, cpu.steps[t].error,
                        gpu.steps[t].error, rel_diff(gpu.steps[t].error, cpu.steps[t].error));
            QCOMPARE(gpu.steps[t].step, cpu.steps[t].step);
            QCOMPARE(events[t].step, int(t + 1));
            QVERIFY(rel_diff(gpu.steps[t].error, cpu.steps[t].error) <= 1e-4);
            QCOMPARE(gpu.steps[t].baseline, gpu.baseline);
        }
        QVERIFY(rel_diff(gpu.w_norm, cpu.w_norm) <= 1e-9);
        QVERIFY(rel_diff(gpu.baseline, cpu.baseline) <= 1e-6);
        QVERIFY(rel_diff(gpu.final_error, cpu.final_error) <= 1e-4);
        QVERIFY(gpu.final_error < gpu.baseline);
        QVERIFY2(double(code_mismatch) <= 1e-3 * double(cpu.codes.size()), "too many code mismatches");
        QVERIFY2(lr_diff <= 1e-2, "low-rank products differ");
        QVERIFY(stats.device_bytes >= 3 * size_t(kM * kN) * sizeof(float));
        for (int j = 0; j + 1 < rank; ++j) QVERIFY(gpu.lr.S[size_t(j)] >= gpu.lr.S[size_t(j + 1)]);
    }

    // T = 0 is the QLoRA baseline: the GPU quantizer is bit-identical to the CPU's.
    void baselineOnlyIsBitIdentical() {
        if (!have_) QSKIP(("no CUDA device: " + why_).c_str());
        WeightSettings s;
        s.iters = 0;
        SvdOptions o;
        const Decomposition cpu = loftq_decompose(W_.data(), kM, kN, s, o, 1);
        const Decomposition gpu = loftq_decompose_cuda(W_.data(), kM, kN, s, o);
        QVERIFY(cpu.codes == gpu.codes);
        QVERIFY(cpu.scales == gpu.scales);
        QVERIFY(cpu.Q.buf == gpu.Q.buf);
        QCOMPARE(gpu.lr.B.cols, int64_t(0));
        QCOMPARE(gpu.lr.A.rows, int64_t(0));
        QVERIFY(gpu.steps.empty());
        QVERIFY(rel_diff(gpu.baseline, cpu.baseline) <= 1e-6);
        QCOMPARE(gpu.final_error, gpu.baseline);
    }

    void cancelledBeforeTheFirstStep() {
        if (!have_) QSKIP(("no CUDA device: " + why_).c_str());
        CancelToken tok;
        tok.cancel();
        WeightSettings s;
        SvdOptions o;
        QVERIFY_THROWS_EXCEPTION(Cancelled, loftq_decompose_cuda(W_.data(), kM, kN, s, o, {}, &tok));
    }

    // Cancelled from the step callback: the next step boundary throws.
    void cancelledBetweenSteps() {
        if (!have_) QSKIP(("no CUDA device: " + why_).c_str());
        CancelToken tok;
        WeightSettings s;
        s.iters = 4;
        SvdOptions o;
        int seen = 0;
        QVERIFY_THROWS_EXCEPTION(Cancelled, loftq_decompose_cuda(W_.data(), kM, kN, s, o, [&](const StepReport&) {
            ++seen;
            tok.cancel();
        }, &tok));
        QCOMPARE(seen, 1);
    }
};

QTEST_GUILESS_MAIN(TestCudaLoftq)
#include "test_cuda_loftq.moc"
