// test_quant.cpp: Qt Test for engine/quant: the code tables (NF4/NF2 bit for bit against the
// literals of docs/ALGORITHM.md, the normal-float construction, NF3 and uniform tables, decision
// thresholds), fast quantize/dequantize against the scalar references (every format, several
// block sizes, every instruction-set variant, every thread count), tie and zero-block rules,
// k-bit packing, and round-trip error bounds checked in float64.
// Leaves out timing (bench/bench_quant.cpp) and the LoftQ alternating loop (test_loftq).
#include <QtTest>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "quant/quantizer.h"
#include "test_support.h"

using namespace loftq;

namespace {

uint32_t bits_of(float f) { return loftq::test::float_bits(f); }

// The literals exactly as printed in docs/ALGORITHM.md ("Code tables"), parsed at run time with
// strtof so that the comparison does not rest on the compiler reading the same literal twice.
const char* const kNF4Text[16] = {
    "-1.0", "-0.6961928009986877", "-0.5250730514526367", "-0.39491748809814453", "-0.28444138169288635",
    "-0.18477343022823334", "-0.09105003625154495", "0.0", "0.07958029955625534", "0.16093020141124725",
    "0.24611230194568634", "0.33791524171829224", "0.44070982933044434", "0.5626170039176941",
    "0.7229568362236023", "1.0"};
const char* const kNF2Text[4] = {"-1.0", "0.0", "0.33791524171829224", "1.0"};
// And their IEEE bit patterns, for a reader checking by hand.
const uint32_t kNF4Bits[16] = {0xbf800000u, 0xbf3239b1u, 0xbf066b30u, 0xbeca32a0u, 0xbe91a24du, 0xbe3d353fu,
                               0xbdba7871u, 0x00000000u, 0x3da2faffu, 0x3e24cae3u, 0x3e7c04ddu, 0x3ead033au,
                               0x3ee1a4b8u, 0x3f1007abu, 0x3f3913b3u, 0x3f800000u};
const uint32_t kNF2Bits[4] = {0xbf800000u, 0x00000000u, 0x3ead033au, 0x3f800000u};

// Selects one instruction-set variant of the fast kernels (see quantizer.cpp) for a scope.
struct IsaScope {
    explicit IsaScope(const char* isa) { qputenv("LOFTQ_QUANT_ISA", isa); }
    ~IsaScope() { qunsetenv("LOFTQ_QUANT_ISA"); }
};
const char* const kIsas[3] = {"generic", "avx2", "avx512"};

// Nearest-code rule in float64 for an independent error estimate: value = t[argmin] * s.
double nearest_value_f64(const QuantFormat& f, double xn) {
    int best = 0;
    for (int j = 1; j < f.levels; ++j)
        if (std::fabs(xn - f.table[j]) < std::fabs(xn - f.table[best])) best = j;
    return f.table[best];
}

struct Quantized {
    std::vector<uint8_t> codes;
    std::vector<float> scales, values;
};

Quantized run_ref(const QuantFormat& f, const std::vector<float>& x, int block) {
    Quantized q;
    q.codes.assign(x.size(), 0xEE);
    q.scales.assign(num_blocks(x.size(), block), -1.f);
    q.values.assign(x.size(), -7.f);
    quantize_ref(f, x.data(), x.size(), block, q.codes.data(), q.scales.data());
    dequantize_ref(f, q.codes.data(), q.scales.data(), x.size(), block, q.values.data());
    return q;
}

// First index where two arrays differ bitwise, or -1.
template <class T>
long long first_diff(const std::vector<T>& a, const std::vector<T>& b) {
    if (a.size() != b.size()) return 0;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) return (long long)i;
    return -1;
}

}  // namespace

class TestQuant : public QObject {
    Q_OBJECT
private slots:
    void nf4TableBitExact();
    void nf2TableBitExact();
    void factsFileLiterals();
    void constructionReproducesTables();
    void nf3Properties();
    void normalFloatFromIndependentQuantiles();
    void uniformTables();
    void thresholds();
    void formatLookup();
    void fastMatchesReference_data();
    void fastMatchesReference();
    void tiesGoToLowerCode();
    void allZeroBlock();
    void singleNonZero();
    void extremeInputs();
    void threadCountIndependent();
    void residualFusedMatchesSeparate();
    void packRoundTrip();
    void packLsbFirstExamples();
    void roundTripError_data();
    void roundTripError();
    void valuesOnGrid();
    void badArguments();
};

void TestQuant::nf4TableBitExact() {
    const QuantFormat& f = quant_format(QuantKind::NF4);
    QCOMPARE(f.levels, 16);
    QCOMPARE(f.bits, 4);
    for (int i = 0; i < 16; ++i) {
        QCOMPARE(bits_of(std::strtof(kNF4Text[i], nullptr)), kNF4Bits[i]);
        QCOMPARE(bits_of(f.table[i]), kNF4Bits[i]);
    }
}

void TestQuant::nf2TableBitExact() {
    const QuantFormat& f = quant_format(QuantKind::NF2);
    QCOMPARE(f.levels, 4);
    QCOMPARE(f.bits, 2);
    for (int i = 0; i < 4; ++i) {
        QCOMPARE(bits_of(std::strtof(kNF2Text[i], nullptr)), kNF2Bits[i]);
        QCOMPARE(bits_of(f.table[i]), kNF2Bits[i]);
    }
    // NF2 is a subset of NF4 (docs/ALGORITHM.md): 2-bit weights can be stored as NF4 losslessly.
    const QuantFormat& f4 = quant_format(QuantKind::NF4);
    for (int i = 0; i < 4; ++i) {
        bool found = false;
        for (int j = 0; j < 16; ++j) found = found || bits_of(f4.table[j]) == bits_of(f.table[i]);
        QVERIFY2(found, qPrintable(QString("NF2[%1] not in NF4").arg(i)));
    }
}

// When ../shared is present, read the tables straight out of LOFTQ-FACTS.md as well.
void TestQuant::factsFileLiterals() {
    const std::string dir = test::shared_dir();
    std::ifstream in(dir.empty() ? std::string() : dir + "/LOFTQ-FACTS.md");
    if (!in) QSKIP("LOFTQ-FACTS.md not found (LOFTQ_SHARED_DIR unset); the literals above cover it");
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    auto parse_after = [&](const std::string& key, int count) {
        std::vector<float> v;
        size_t p = text.find(key);
        if (p == std::string::npos) return v;
        p = text.find(':', p) + 1;
        const char* s = text.c_str() + p;
        while (int(v.size()) < count) {
            while (*s && !(*s == '-' || (*s >= '0' && *s <= '9'))) ++s;
            if (!*s) break;
            char* e = nullptr;
            v.push_back(std::strtof(s, &e));
            s = e;
        }
        return v;
    };
    std::vector<float> nf4 = parse_after("NF4 (16, float32)", 16), nf2 = parse_after("NF2 (4, float32)", 4);
    QCOMPARE(int(nf4.size()), 16);
    QCOMPARE(int(nf2.size()), 4);
    for (int i = 0; i < 16; ++i) QCOMPARE(bits_of(quant_format(QuantKind::NF4).table[i]), bits_of(nf4[size_t(i)]));
    for (int i = 0; i < 4; ++i) QCOMPARE(bits_of(quant_format(QuantKind::NF2).table[i]), bits_of(nf2[size_t(i)]));
}

void TestQuant::constructionReproducesTables() {
    for (QuantKind k : {QuantKind::NF4, QuantKind::NF2, QuantKind::NF3}) {
        const QuantFormat& f = quant_format(k);
        std::vector<float> c = nf_codebook_construct(f.bits);
        QCOMPARE(int(c.size()), f.levels);
        for (int i = 0; i < f.levels; ++i) {
            if (bits_of(c[size_t(i)]) != bits_of(f.table[i]))
                QFAIL(qPrintable(QString("%1[%2]: constructed %3 != table %4")
                                     .arg(f.name).arg(i)
                                     .arg(double(c[size_t(i)]), 0, 'g', 17)
                                     .arg(double(f.table[i]), 0, 'g', 17)));
        }
    }
}

void TestQuant::nf3Properties() {
    const QuantFormat& f = quant_format(QuantKind::NF3);
    QCOMPARE(f.levels, 8);
    QCOMPARE(f.bits, 3);
    QString line = "NF3:";
    int zeros = 0, pos = 0, neg = 0;
    for (int i = 0; i < 8; ++i) {
        line += QString(" %1").arg(double(f.table[i]), 0, 'g', 9);
        if (i > 0) QVERIFY(f.table[i] > f.table[i - 1]);
        zeros += f.table[i] == 0.0f;
        pos += f.table[i] > 0.0f;
        neg += f.table[i] < 0.0f;
    }
    qInfo("%s", qPrintable(line));
    QCOMPARE(f.table[0], -1.0f);
    QCOMPARE(f.table[7], 1.0f);
    QCOMPARE(zeros, 1);
    QCOMPARE(pos, 4);
    QCOMPARE(neg, 3);
    // Its positive half is every other positive NF4 level (linspace(off, .5, 5) is a subset of
    // linspace(off, .5, 9)).
    const QuantFormat& f4 = quant_format(QuantKind::NF4);
    for (int i = 0; i < 4; ++i) QCOMPARE(bits_of(f.table[4 + i]), bits_of(f4.table[9 + 2 * i]));
}

// The normal-float tables from an independent computation (not nf_codebook_construct): the
// recipe as published (float32 linspace from the offset 0.9677083 towards 0.5; 2^(k-1) positive
// quantiles, 0, 2^(k-1) - 1 negative ones; divided by the largest), with Phi^-1 by bisection on
// erfc in long double instead of the engine's rational guess + Halley steps. NF4 and NF2 check
// this recipe against the published tables; NF3, which has no published table, is then checked
// against it. Within 2 float32 ulps (the linspace's float32 rounding is reproduced; Phi^-1's last
// bits may differ between methods).
void TestQuant::normalFloatFromIndependentQuantiles() {
    auto ppf = [](long double p) {
        long double lo = -10, hi = 10;
        for (int i = 0; i < 200; ++i) {
            const long double mid = (lo + hi) / 2;
            (0.5L * std::erfc(-mid / std::sqrt(2.0L)) < p ? lo : hi) = mid;
        }
        return (lo + hi) / 2;
    };
    auto linspace32 = [](float a, float b, int n) {  // float32, as torch.linspace(dtype=float32)
        std::vector<float> v(static_cast<size_t>(n));
        const float step = (b - a) / float(n - 1);
        for (int i = 0; i < n; ++i) v[size_t(i)] = i < n / 2 ? a + step * float(i) : b - step * float(n - 1 - i);
        return v;
    };
    auto ulps = [](float a, float b) {
        int32_t ia, ib;
        std::memcpy(&ia, &a, 4);
        std::memcpy(&ib, &b, 4);
        if ((ia < 0) != (ib < 0)) return a == b ? 0 : 1 << 30;
        return std::abs(ia - ib);
    };
    for (QuantKind k : {QuantKind::NF4, QuantKind::NF2, QuantKind::NF3}) {
        const QuantFormat& f = quant_format(k);
        const int half = 1 << (f.bits - 1);
        std::vector<long double> v;
        const std::vector<float> pos = linspace32(0.9677083f, 0.5f, half + 1), neg = linspace32(0.9677083f, 0.5f, half);
        for (int i = 0; i < half; ++i) v.push_back(ppf(pos[size_t(i)]));
        v.push_back(0);
        for (int i = 0; i < half - 1; ++i) v.push_back(-ppf(neg[size_t(i)]));
        std::sort(v.begin(), v.end());
        const long double mx = v.back();
        QCOMPARE(int(v.size()), f.levels);
        QString line = QString("%1 independent:").arg(f.name);
        for (int i = 0; i < f.levels; ++i) {
            const float want = float(v[size_t(i)] / mx);
            line += QString(" %1").arg(double(want), 0, 'g', 9);
            QVERIFY2(ulps(want, f.table[i]) <= 2, qPrintable(QString("%1[%2]: independent %3 vs table %4")
                                                                 .arg(f.name).arg(i).arg(double(want), 0, 'g', 10)
                                                                 .arg(double(f.table[i]), 0, 'g', 10)));
        }
        qInfo("%s", qPrintable(line));
    }
}

void TestQuant::uniformTables() {
    for (QuantKind k : {QuantKind::INT2, QuantKind::INT3, QuantKind::INT4, QuantKind::INT8}) {
        const QuantFormat& f = quant_format(k);
        QCOMPARE(f.levels, 1 << f.bits);
        for (int i = 0; i < f.levels; ++i) {
            const float want = float(-1.0 + 2.0 * i / double(f.levels - 1));
            QCOMPARE(bits_of(f.table[i]), bits_of(want));
            QCOMPARE(bits_of(f.table[i]), bits_of(-f.table[f.levels - 1 - i]));  // symmetric
        }
        QCOMPARE(f.table[0], -1.0f);
        QCOMPARE(f.table[f.levels - 1], 1.0f);
    }
    const QuantFormat& i2 = quant_format(QuantKind::INT2);
    QCOMPARE(i2.table[1], float(-1.0 / 3.0));
    QCOMPARE(i2.table[2], float(1.0 / 3.0));
    QCOMPARE(quant_format(QuantKind::INT8).bits, 8);
}

void TestQuant::thresholds() {
    for (QuantKind k : all_quant_kinds()) {
        const QuantFormat& f = quant_format(k);
        for (int i = 0; i + 1 < f.levels; ++i) {
            const double m = (double(f.table[i]) + double(f.table[i + 1])) / 2.0;  // exact
            const float t = f.thresh[i];
            QVERIFY2(double(t) <= m, f.name);
            QVERIFY2(double(std::nextafter(t, 2.0f)) > m, f.name);
            QVERIFY2(t >= f.table[i] && t < f.table[i + 1], f.name);
            if (i > 0) QVERIFY2(f.thresh[i] > f.thresh[i - 1], f.name);
        }
    }
}

void TestQuant::formatLookup() {
    const std::vector<QuantKind>& kinds = all_quant_kinds();
    QCOMPARE(int(kinds.size()), 7);
    const char* names[7] = {"nf4", "nf3", "nf2", "int2", "int3", "int4", "int8"};
    const int bits[7] = {4, 3, 2, 2, 3, 4, 8};
    for (int i = 0; i < 7; ++i) {
        const QuantFormat& f = quant_format(kinds[size_t(i)]);
        QCOMPARE(int(f.kind), int(kinds[size_t(i)]));
        QCOMPARE(QString(f.name), QString(names[i]));
        QCOMPARE(f.bits, bits[i]);
        QCOMPARE(f.levels, 1 << bits[i]);
        auto k = quant_kind_from_name(names[i]);
        QVERIFY(k.has_value());
        QCOMPARE(int(*k), int(f.kind));
        auto ku = quant_kind_from_name(QString(names[i]).toUpper().toStdString());
        QVERIFY(ku.has_value());
        QCOMPARE(int(*ku), int(f.kind));
    }
    QCOMPARE(int(*quant_kind_from_name("Nf4")), int(QuantKind::NF4));
    QVERIFY(!quant_kind_from_name("nf5").has_value());
    QVERIFY(!quant_kind_from_name("").has_value());
    QVERIFY(!quant_kind_from_name("nf4 ").has_value());
    QCOMPARE(quantized_bytes(128, 4, 64), size_t(64 + 8));
    QCOMPARE(packed_size(5, 3), size_t(2));
}

void TestQuant::fastMatchesReference_data() {
    QTest::addColumn<int>("kind");
    QTest::addColumn<int>("block");
    QTest::addColumn<int>("n");
    for (QuantKind k : all_quant_kinds())
        for (int block : {32, 64, 128, 100, 4096}) {
            // not a multiple of the block: the last block is short
            const int n = block == 4096 ? 3 * 4096 + 1234 : 97 * block + block / 3 + 1;
            QTest::addRow("%s/b%d/n%d", quant_format(k).name, block, n) << int(k) << block << n;
        }
}

void TestQuant::fastMatchesReference() {
    QFETCH(int, kind);
    QFETCH(int, block);
    QFETCH(int, n);
    const QuantFormat& f = quant_format(QuantKind(kind));
    std::vector<float> x = test::gaussian(size_t(n), 1000 + uint64_t(kind) * 31 + uint64_t(block), 0.02);
    x[size_t(n) / 2] = 0.0f;    // a few special values
    x[size_t(n) / 3] = -0.0f;
    x[size_t(n) - 1] = 0.25f;   // the short last block's own maximum
    const Quantized ref = run_ref(f, x, block);
    for (const char* isa : kIsas) {
        IsaScope scope(isa);
        for (int threads : {1, 2}) {
            Quantized q;
            q.codes.assign(x.size(), 0xEE);
            q.scales.assign(ref.scales.size(), -1.f);
            q.values.assign(x.size(), -7.f);
            quantize(f, x.data(), x.size(), block, q.codes.data(), q.scales.data(), threads);
            QVERIFY2(first_diff(q.codes, ref.codes) < 0, isa);
            QVERIFY2(first_diff(q.scales, ref.scales) < 0, isa);
            dequantize(f, q.codes.data(), q.scales.data(), x.size(), block, q.values.data(), threads);
            QVERIFY2(first_diff(q.values, ref.values) < 0, isa);

            // fused, with and without the side outputs
            Quantized g;
            g.codes.assign(x.size(), 0xEE);
            g.scales.assign(ref.scales.size(), -1.f);
            g.values.assign(x.size(), -7.f);
            quantize_dequantize(f, x.data(), x.size(), block, g.values.data(), g.codes.data(), g.scales.data(),
                                threads);
            QVERIFY2(first_diff(g.codes, ref.codes) < 0, isa);
            QVERIFY2(first_diff(g.scales, ref.scales) < 0, isa);
            const long long d = first_diff(g.values, ref.values);
            if (d >= 0)
                QFAIL(qPrintable(QString("%1 %2: value %3: fast %4 ref %5 (x %6)")
                                     .arg(isa).arg(f.name).arg(d)
                                     .arg(double(g.values[size_t(d)]), 0, 'g', 9)
                                     .arg(double(ref.values[size_t(d)]), 0, 'g', 9)
                                     .arg(double(x[size_t(d)]), 0, 'g', 9)));
            std::vector<float> only(x.size(), -7.f);
            quantize_dequantize(f, x.data(), x.size(), block, only.data(), nullptr, nullptr, threads);
            QVERIFY2(first_diff(only, ref.values) < 0, isa);
            // in place: out == x
            std::vector<float> inplace = x;
            quantize_dequantize(f, inplace.data(), x.size(), block, inplace.data(), nullptr, nullptr, threads);
            QVERIFY2(first_diff(inplace, ref.values) < 0, isa);
        }
    }
}

// Inputs exactly at a midpoint of two levels go to the lower code; the next float up goes to
// the upper. Midpoints are built in double and used only where they are exact floats; the
// block's scale is a power of two (an element equal to +-scale sets it), so x / scale is exact.
void TestQuant::tiesGoToLowerCode() {
    for (QuantKind k : all_quant_kinds()) {
        const QuantFormat& f = quant_format(k);
        const float scale = 4.0f;
        std::vector<float> x = {scale};
        std::vector<uint8_t> want = {uint8_t(f.levels - 1)};
        for (int i = 0; i + 1 < f.levels; ++i) {
            const double m = (double(f.table[i]) + double(f.table[i + 1])) / 2.0;
            if (double(float(m)) != m) continue;
            x.push_back(float(m) * scale);
            want.push_back(uint8_t(i));
            x.push_back(std::nextafter(float(m), 2.0f) * scale);
            want.push_back(uint8_t(i + 1));
            x.push_back(std::nextafter(float(m), -2.0f) * scale);
            want.push_back(uint8_t(i));
        }
        const int block = int(x.size());
        for (const char* isa : kIsas) {
            IsaScope scope(isa);
            std::vector<uint8_t> c(x.size()), cr(x.size());
            std::vector<float> s(1), sr(1);
            quantize(f, x.data(), x.size(), block, c.data(), s.data(), 1);
            quantize_ref(f, x.data(), x.size(), block, cr.data(), sr.data());
            QCOMPARE(s[0], scale);
            QCOMPARE(sr[0], scale);
            for (size_t j = 0; j < x.size(); ++j) {
                QCOMPARE(int(cr[j]), int(want[j]));
                QCOMPARE(int(c[j]), int(want[j]));
            }
        }
        qInfo("%s: %d exact midpoint ties tested", f.name, int(x.size() - 1) / 3);
    }
    // int4 has an even number of levels, so 0 is the midpoint of -1/15 and 1/15: exact tie.
    const QuantFormat& i4 = quant_format(QuantKind::INT4);
    std::vector<float> x = {1.0f, 0.0f, 1e-30f, -1e-30f};
    std::vector<uint8_t> c(4);
    std::vector<float> s(1);
    quantize(i4, x.data(), 4, 4, c.data(), s.data(), 1);
    QCOMPARE(int(c[1]), 7);  // tie -> lower
    QCOMPARE(int(c[2]), 8);  // a tiny positive is strictly closer to +1/15
    QCOMPARE(int(c[3]), 7);
    quantize_ref(i4, x.data(), 4, 4, c.data(), s.data());
    QCOMPARE(int(c[1]), 7);
    QCOMPARE(int(c[2]), 8);  // needs the exact distance: a double difference would tie here
    QCOMPARE(int(c[3]), 7);
}

void TestQuant::allZeroBlock() {
    for (QuantKind k : all_quant_kinds()) {
        const QuantFormat& f = quant_format(k);
        const int block = 64;
        std::vector<float> x(3 * 64 + 5, 0.0f);
        for (int i = 64; i < 128; ++i) x[size_t(i)] = 0.01f * float(i - 96);  // middle block non-zero
        x[10] = -0.0f;
        const Quantized ref = run_ref(f, x, block);
        int zc = 0;  // code nearest 0, ties low
        for (int j = 0; j + 1 < f.levels; ++j) zc += 0.0f > f.thresh[j];
        for (const char* isa : kIsas) {
            IsaScope scope(isa);
            std::vector<uint8_t> c(x.size());
            std::vector<float> s(4), v(x.size(), 7.f);
            quantize_dequantize(f, x.data(), x.size(), block, v.data(), c.data(), s.data(), 2);
            QCOMPARE(s[0], 0.0f);
            QCOMPARE(s[2], 0.0f);
            QCOMPARE(s[3], 0.0f);
            for (int b : {0, 2, 3})
                for (int i = b * 64; i < std::min<int>(int(x.size()), b * 64 + 64); ++i) {
                    QCOMPARE(v[size_t(i)], 0.0f);  // +0 or -0
                    QCOMPARE(int(c[size_t(i)]), zc);
                }
            QVERIFY(first_diff(v, ref.values) < 0);
            QVERIFY(first_diff(c, ref.codes) < 0);
        }
        if (f.kind == QuantKind::NF4) QCOMPARE(zc, 7);
        if (f.kind == QuantKind::INT4) QCOMPARE(zc, 7);  // -1/15, the lower of the tie
    }
}

void TestQuant::singleNonZero() {
    for (QuantKind k : all_quant_kinds()) {
        const QuantFormat& f = quant_format(k);
        std::vector<float> x(100, 0.0f);
        x[37] = -3.0f;
        const Quantized ref = run_ref(f, x, 100);
        QCOMPARE(ref.scales[0], 3.0f);
        QCOMPARE(int(ref.codes[37]), 0);
        QCOMPARE(ref.values[37], -3.0f);
        int zc = 0;
        for (int j = 0; j + 1 < f.levels; ++j) zc += 0.0f > f.thresh[j];
        for (const char* isa : kIsas) {
            IsaScope scope(isa);
            std::vector<uint8_t> c(100);
            std::vector<float> s(1), v(100);
            quantize_dequantize(f, x.data(), 100, 100, v.data(), c.data(), s.data(), 1);
            QCOMPARE(s[0], 3.0f);
            QCOMPARE(v[37], -3.0f);
            QCOMPARE(int(c[0]), zc);
            QCOMPARE(v[0], f.table[zc] * 3.0f);
            QVERIFY(first_diff(v, ref.values) < 0);
            QVERIFY(first_diff(c, ref.codes) < 0);
        }
    }
}

// Subnormals, huge values, infinities and NaN: every path agrees with the reference bitwise
// (NaN values compared by bit pattern), and NaN never becomes a scale.
void TestQuant::extremeInputs() {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    const float den = std::numeric_limits<float>::denorm_min();
    std::vector<float> x = {1e-45f, den, -den, 3e-39f, 1.0f, -2.0f, 0.5f, 0.0f,          // block 0
                            3e38f, -3.4e38f, 1e-30f, 1.0f, 0.0f, -1e38f, 2e38f, 1e37f,  // block 1
                            nan, 1.0f, -0.5f, 0.25f, nan, 0.0f, -1.0f, 0.1f,            // block 2
                            inf, 1.0f, -inf, 0.0f, 2.0f, 3.0f, 4.0f, 5.0f,              // block 3
                            den, -den, den, 0.0f, 0.0f, den, -den, den};                // block 4
    for (QuantKind k : all_quant_kinds()) {
        const QuantFormat& f = quant_format(k);
        const Quantized ref = run_ref(f, x, 8);
        QCOMPARE(ref.scales[2], 1.0f);
        QCOMPARE(ref.scales[4], den);
        QCOMPARE(int(ref.codes[16]), 0);  // NaN -> code 0
        for (const char* isa : kIsas) {
            IsaScope scope(isa);
            std::vector<uint8_t> c(x.size());
            std::vector<float> s(5), v(x.size());
            quantize_dequantize(f, x.data(), x.size(), 8, v.data(), c.data(), s.data(), 1);
            QVERIFY2(first_diff(c, ref.codes) < 0, f.name);
            QVERIFY2(first_diff(s, ref.scales) < 0, f.name);
            QVERIFY2(first_diff(v, ref.values) < 0, f.name);
        }
    }
}

void TestQuant::threadCountIndependent() {
    const size_t n = (1u << 20) + 4321;
    std::vector<float> x = test::gaussian(n, 77);
    for (QuantKind k : all_quant_kinds()) {
        const QuantFormat& f = quant_format(k);
        for (int block : {64, 100}) {
            Quantized base;
            for (int threads : {1, 2, 3}) {
                Quantized q;
                q.codes.resize(n);
                q.scales.resize(num_blocks(n, block));
                q.values.resize(n);
                quantize_dequantize(f, x.data(), n, block, q.values.data(), q.codes.data(), q.scales.data(), threads);
                std::vector<float> dq(n);
                dequantize(f, q.codes.data(), q.scales.data(), n, block, dq.data(), threads);
                QVERIFY(first_diff(dq, q.values) < 0);
                if (threads == 1) {
                    base = q;
                    continue;
                }
                QVERIFY(first_diff(q.codes, base.codes) < 0);
                QVERIFY(first_diff(q.scales, base.scales) < 0);
                QVERIFY(first_diff(q.values, base.values) < 0);
            }
        }
    }
}

// quantize_residual (LoftQ's fused pass) == quantize_dequantize, then m - out as a separate fp32
// subtraction, bit for bit, in every instruction-set variant, with 1 and 3 threads, out of place
// and in place (resid == x), across all-zero blocks, a short last block, NaN and infinities.
void TestQuant::residualFusedMatchesSeparate() {
    const size_t n = 50000 + 37;
    std::vector<float> x = test::gaussian(n, 91), m = test::gaussian(n, 92);
    for (size_t i = 1000; i < 1300; ++i) x[i] = 0.f;  // all-zero blocks (scale 0)
    x[5] = std::numeric_limits<float>::quiet_NaN();
    x[7000] = std::numeric_limits<float>::infinity();
    m[9] = -0.f;
    for (const char* isa : kIsas) {
        IsaScope scope(isa);
        for (QuantKind k : all_quant_kinds()) {
            const QuantFormat& f = quant_format(k);
            for (int block : {64, 100}) {
                const size_t nb = num_blocks(n, block);
                std::vector<uint8_t> c0(n), c1(n);
                std::vector<float> s0(nb), s1(nb), q0(n), q1(n), r0(n), r1(n);
                quantize_dequantize(f, x.data(), n, block, q0.data(), c0.data(), s0.data(), 1);
                for (size_t i = 0; i < n; ++i) r0[i] = m[i] - q0[i];
                for (int threads : {1, 3}) {
                    quantize_residual(f, x.data(), n, block, m.data(), q1.data(), r1.data(), c1.data(), s1.data(), threads);
                    const QString what = QString("%1 %2 block %3 threads %4").arg(isa, f.name).arg(block).arg(threads);
                    QVERIFY2(first_diff(c0, c1) < 0 && first_diff(s0, s1) < 0, qPrintable(what));
                    QVERIFY2(first_diff(q0, q1) < 0, qPrintable(what));
                    QVERIFY2(first_diff(r0, r1) < 0, qPrintable(what));
                    std::vector<float> inplace = x;  // resid written over its own input
                    quantize_residual(f, inplace.data(), n, block, m.data(), q1.data(), inplace.data(), c1.data(),
                                      s1.data(), threads);
                    QVERIFY2(first_diff(r0, inplace) < 0, qPrintable(what + " in place"));
                    QVERIFY2(first_diff(c0, c1) < 0 && first_diff(q0, q1) < 0, qPrintable(what + " in place"));
                }
            }
        }
    }
    std::vector<float> out(n), res(n);
    std::vector<uint8_t> codes(n);
    QVERIFY_THROWS_EXCEPTION(Error, quantize_residual(quant_format(QuantKind::NF4), x.data(), n, 64, m.data(), out.data(),
                                                      res.data(), codes.data(), nullptr, 1));
}

void TestQuant::packRoundTrip() {
    Rng rng(5);
    for (int bits = 1; bits <= 8; ++bits) {
        for (size_t n : {size_t(0), size_t(1), size_t(2), size_t(3), size_t(5), size_t(7), size_t(9), size_t(17),
                         size_t(1001), size_t(65537)}) {
            std::vector<uint8_t> codes(n), back(n, 0xEE);
            for (auto& c : codes) c = uint8_t(rng.next() & ((1u << bits) - 1u));
            std::vector<uint8_t> packed(packed_size(n, bits) + 1, 0xA5);  // one guard byte
            pack_codes(codes.data(), n, bits, packed.data());
            QCOMPARE(int(packed.back()), 0xA5);  // nothing written past packed_size
            unpack_codes(packed.data(), n, bits, back.data());
            QVERIFY2(back == codes, qPrintable(QString("bits %1 n %2").arg(bits).arg(n)));
            // The general bitstream rule, read back bit by bit.
            for (size_t j = 0; j < n; ++j) {
                unsigned v = 0;
                for (int t = 0; t < bits; ++t) {
                    const size_t b = j * size_t(bits) + size_t(t);
                    v |= unsigned((packed[b / 8] >> (b % 8)) & 1u) << t;
                }
                if (v != codes[j]) QFAIL(qPrintable(QString("bits %1 code %2: stream %3 != %4").arg(bits).arg(j).arg(v).arg(codes[j])));
            }
            // Padding bits of the last byte are zero.
            if (n * size_t(bits) % 8) QCOMPARE(int(packed[packed_size(n, bits) - 1] >> (n * size_t(bits) % 8)), 0);
        }
    }
    // Bits above k in a code byte are ignored.
    const uint8_t dirty[3] = {0xF1, 0xF2, 0xF3};
    uint8_t p[1];
    pack_codes(dirty, 3, 2, p);
    QCOMPARE(int(p[0]), 0x39);
}

void TestQuant::packLsbFirstExamples() {
    {  // k = 2: code j at bits [2j, 2j+2); codes 1,2,3,0 | 1 -> 0b00111001, 0b00000001
        const uint8_t c[5] = {1, 2, 3, 0, 1};
        uint8_t p[2];
        pack_codes(c, 5, 2, p);
        QCOMPARE(int(p[0]), 0x39);
        QCOMPARE(int(p[1]), 0x01);
    }
    {  // k = 3: 5 at bits 0-2, 3 at 3-5, 7 at 6-8 (spans bytes), 1 at 9-11
        const uint8_t c[4] = {5, 3, 7, 1};
        uint8_t p[2];
        pack_codes(c, 4, 3, p);
        QCOMPARE(int(p[0]), 0xDD);  // 101 | 011 << 3 | 11 << 6
        QCOMPARE(int(p[1]), 0x03);  // 1 (top bit of 7) | 1 << 1
        uint8_t back[4];
        unpack_codes(p, 4, 3, back);
        QCOMPARE(int(back[2]), 7);
    }
    {  // k = 4: first code in the LOW nibble (PEFT NFQuantizer; bnb puts it high)
        const uint8_t c[3] = {0x3, 0xA, 0x5};
        uint8_t p[2];
        pack_codes(c, 3, 4, p);
        QCOMPARE(int(p[0]), 0xA3);
        QCOMPARE(int(p[1]), 0x05);
    }
    {  // k = 1 and k = 8
        const uint8_t c[9] = {1, 0, 0, 0, 0, 0, 0, 1, 1};
        uint8_t p[2];
        pack_codes(c, 9, 1, p);
        QCOMPARE(int(p[0]), 0x81);
        QCOMPARE(int(p[1]), 0x01);
        const uint8_t c8[2] = {0xAB, 0x01};
        pack_codes(c8, 2, 8, p);
        QCOMPARE(int(p[0]), 0xAB);
        QCOMPARE(int(p[1]), 0x01);
    }
}

void TestQuant::roundTripError_data() {
    // ||x - deq(q(x))||_F / ||x||_F on N(0,1), block 64, 2^20 values (seeded), and the band it
    // must fall in (about +-5% around the measured value). NF4 ~0.092 is the figure 4-bit
    // normal float is known for; NF2 {-1, 0, 0.34, 1} is lopsided and loses even to int2 on
    // symmetric data; int8 steps are 2/255 of the block absmax.
    QTest::addColumn<int>("kind");
    QTest::addColumn<double>("lo");
    QTest::addColumn<double>("hi");
    QTest::addRow("nf4") << int(QuantKind::NF4) << 0.087 << 0.097;
    QTest::addRow("nf3") << int(QuantKind::NF3) << 0.19 << 0.21;
    QTest::addRow("nf2") << int(QuantKind::NF2) << 0.53 << 0.59;
    QTest::addRow("int2") << int(QuantKind::INT2) << 0.48 << 0.53;
    QTest::addRow("int3") << int(QuantKind::INT3) << 0.205 << 0.226;
    QTest::addRow("int4") << int(QuantKind::INT4) << 0.095 << 0.106;
    QTest::addRow("int8") << int(QuantKind::INT8) << 0.0056 << 0.0062;
}

void TestQuant::roundTripError() {
    QFETCH(int, kind);
    QFETCH(double, lo);
    QFETCH(double, hi);
    const QuantFormat& f = quant_format(QuantKind(kind));
    const size_t n = 1 << 20;
    const int block = 64;
    std::vector<float> x = test::gaussian(n, 4242);
    std::vector<float> v(n);
    quantize_dequantize(f, x.data(), n, block, v.data(), nullptr, nullptr, 2);
    const double err = test::rel_err(x.data(), v.data(), n);
    // Independent float64 computation of the same error: absmax, x / s and nearest level in double.
    double num = 0, den = 0;
    for (size_t b = 0; b < n / size_t(block); ++b) {
        double s = 0;
        for (int i = 0; i < block; ++i) s = std::max(s, std::fabs(double(x[b * block + size_t(i)])));
        for (int i = 0; i < block; ++i) {
            const double xi = x[b * block + size_t(i)];
            const double d = xi - nearest_value_f64(f, xi / s) * s;
            num += d * d;
            den += xi * xi;
        }
    }
    const double err64 = std::sqrt(num / den);
    qInfo("%s block %d: rel err %.6f (float64 recomputation %.6f)", f.name, block, err, err64);
    QVERIFY2(std::fabs(err - err64) <= 1e-5 * err64 + 1e-9, "fp32 path disagrees with the float64 computation");
    QVERIFY2(err >= lo && err <= hi, qPrintable(QString("%1 outside [%2, %3]").arg(err).arg(lo).arg(hi)));
}

void TestQuant::valuesOnGrid() {
    const size_t n = 64 * 500 + 17;
    std::vector<float> x = test::gaussian(n, 9, 3.0);
    for (QuantKind k : all_quant_kinds()) {
        const QuantFormat& f = quant_format(k);
        for (int block : {64, 100}) {
            std::vector<float> v(n), s(num_blocks(n, block));
            quantize_dequantize(f, x.data(), n, block, v.data(), nullptr, s.data(), 1);
            for (size_t i = 0; i < n; ++i) {
                const float sc = s[i / size_t(block)];
                bool on = false;
                for (int j = 0; j < f.levels && !on; ++j) on = v[i] == f.table[j] * sc;
                if (!on) QFAIL(qPrintable(QString("%1: value %2 = %3 is off the grid").arg(f.name).arg(i).arg(double(v[i]))));
                QVERIFY(std::fabs(v[i]) <= sc);
            }
        }
    }
}

void TestQuant::badArguments() {
    const QuantFormat& f = quant_format(QuantKind::NF4);
    float x[4] = {1, 2, 3, 4}, out[4], s[4];
    uint8_t c[4];
    QVERIFY_THROWS_EXCEPTION(loftq::Error, quantize(f, x, 4, 0, c, s));
    QVERIFY_THROWS_EXCEPTION(loftq::Error, quantize_dequantize(f, x, 4, -1, out, c, s));
    QVERIFY_THROWS_EXCEPTION(loftq::Error, dequantize(f, c, s, 4, 0, out));
    QVERIFY_THROWS_EXCEPTION(loftq::Error, quantize_ref(f, x, 4, 0, c, s));
    uint8_t pk[8];
    QVERIFY_THROWS_EXCEPTION(loftq::Error, pack_codes(c, 4, 9, pk));
    QVERIFY_THROWS_EXCEPTION(loftq::Error, unpack_codes(c, 4, 0, c));
    // a format with a level count the fast kernels lack is refused before any thread starts
    const float t3[3] = {-1, 0, 1}, th3[2] = {-0.5f, 0.5f};
    const QuantFormat odd{QuantKind::NF2, "odd3", 2, 3, t3, th3};
    QVERIFY_THROWS_EXCEPTION(loftq::Error, quantize_dequantize(odd, x, 4, 2, out, c, s, 2));
    QVERIFY_THROWS_EXCEPTION(loftq::Error, dequantize(odd, c, s, 4, 2, out, 2));
    // n = 0 is a no-op
    quantize_dequantize(f, x, 0, 64, out, c, s, 2);
    dequantize(f, c, s, 0, 64, out, 2);
}

QTEST_GUILESS_MAIN(TestQuant)
#include "test_quant.moc"
