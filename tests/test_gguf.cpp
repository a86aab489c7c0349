// test_gguf.cpp: tests of the GGUF reader and writer (io/gguf.h, io/gguf_writer.h) and the ggml
// type table and row converters (quant/ggml_types.h):
//  - a GGUF file built byte by byte here (independent of the writer): every parsed field and value;
//  - Q8_0 against a float64 reference of ggml's quantize_row_q8_0_ref, F16/BF16 rows against
//    float64 rounding references;
//  - writer -> reader round trips (all writable types, all KV types), determinism, alignment,
//    atomicity on cancel and failure;
//  - bad input: each refusal a loftq::Error naming the file (and the tensor or key);
//  - a file written by llama.cpp's gguf-py (tests/data/gguf/, made by make_fixture.py).
// Leaves out: mapping GGUF names onto a model (the checkpoint loader's tests), fuzzing (fuzz/).
#include <QtTest>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "core/cancel.h"
#include "core/dtype.h"
#include "core/error.h"
#include "expect_error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "quant/ggml_types.h"
#include "test_support.h"

using namespace loftq;
using loftq::test::read_file;
using loftq::test::write_file;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t F32 = 0, F16 = 1, Q8_0 = 8, Q4_K = 12, BF16 = 30;

// ---- little-endian bytes, by hand ----
struct Buf {
    std::string s;
    template <class T>
    Buf& put(T v) {
        char b[sizeof(T)];
        std::memcpy(b, &v, sizeof(T));
        s.append(b, sizeof(T));
        return *this;
    }
    Buf& str(const std::string& v) { put<uint64_t>(v.size()); s += v; return *this; }
};
template <class T>
std::string kv(const std::string& key, uint32_t type, T v) {
    Buf b;
    b.str(key).put<uint32_t>(type).put<T>(v);
    return b.s;
}
std::string kv_str(const std::string& key, const std::string& v) {
    Buf b;
    b.str(key).put<uint32_t>(8).str(v);
    return b.s;
}

// A tensor info as written: name, n_dims (ne.size() unless overridden), ne, type, offset.
struct Info {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    uint64_t offset;
    std::optional<uint32_t> n_dims;
};

// A GGUF file by hand; tests change a field to make it bad.
struct Hand {
    std::string magic = "GGUF";
    uint32_t version = 3;
    std::optional<uint64_t> n_tensors, n_kv;  // counts as written (default: the real ones)
    std::vector<std::string> kvs;              // serialized key/values
    std::vector<Info> tensors;
    uint64_t alignment = 64;                   // padding before the data section
    std::string data;                          // the data section
    std::string bytes() const {
        Buf b;
        b.s = magic;
        b.put<uint32_t>(version).put<uint64_t>(n_tensors.value_or(tensors.size())).put<uint64_t>(n_kv.value_or(kvs.size()));
        for (const auto& k : kvs) b.s += k;
        for (const auto& t : tensors) {
            b.str(t.name).put<uint32_t>(t.n_dims.value_or(uint32_t(t.ne.size())));
            for (auto d : t.ne) b.put<uint64_t>(d);
            b.put<uint32_t>(t.type).put<uint64_t>(t.offset);
        }
        b.s.append((alignment - b.s.size() % alignment) % alignment, '\0');
        return b.s + data;
    }
};

uint16_t f16_bits_of(float x) { return f32_to_f16(x); }

// The handmade file: KVs of every scalar type, a string array, a nested array, alignment 64;
// tensors F32 (2, 3), F16 (4), BF16 (2, 2), Q8_0 (2, 32), Q4_K (256), each at a 64-byte offset.
// The file ends with the last tensor's data, so that every shorter prefix is truncated.
Hand handmade() {
    Hand h;
    h.kvs.push_back(kv_str("general.architecture", "llama"));
    h.kvs.push_back(kv<uint8_t>("t.u8", 0, 200));
    h.kvs.push_back(kv<int8_t>("t.i8", 1, -5));
    h.kvs.push_back(kv<uint16_t>("t.u16", 2, 60000));
    h.kvs.push_back(kv<int16_t>("t.i16", 3, -30000));
    h.kvs.push_back(kv<uint32_t>("t.u32", 4, 4000000000u));
    h.kvs.push_back(kv<int32_t>("t.i32", 5, -123456));
    h.kvs.push_back(kv<float>("t.f32", 6, 1.5f));
    h.kvs.push_back(kv<uint8_t>("t.bool", 7, 1));
    h.kvs.push_back(kv<uint64_t>("t.u64", 10, (uint64_t(1) << 63) + 5));
    h.kvs.push_back(kv<int64_t>("t.i64", 11, -(int64_t(1) << 40)));
    h.kvs.push_back(kv<double>("t.f64", 12, 0.1));
    {
        Buf b;  // tokenizer.ggml.tokens: ARRAY of STRING ["<s>", "a", ""]
        b.str("tokenizer.ggml.tokens").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(3).str("<s>").str("a").str("");
        h.kvs.push_back(b.s);
    }
    {
        Buf b;  // ARRAY of FLOAT32 [0.5, -1]
        b.str("t.scores").put<uint32_t>(9).put<uint32_t>(6).put<uint64_t>(2).put<float>(0.5f).put<float>(-1.0f);
        h.kvs.push_back(b.s);
    }
    {
        Buf b;  // ARRAY of ARRAY: [[1, 2] (INT32), ["x"] (STRING)]
        b.str("t.nested").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(2);
        b.put<uint32_t>(5).put<uint64_t>(2).put<int32_t>(1).put<int32_t>(2);
        b.put<uint32_t>(8).put<uint64_t>(1).str("x");
        h.kvs.push_back(b.s);
    }
    h.kvs.push_back(kv<uint32_t>("general.alignment", 4, 64));

    h.data.assign(320 + 144, '\0');
    auto at = [&](uint64_t off, const void* p, size_t n) { std::memcpy(&h.data[off], p, n); };
    // F32 (2, 3): -1 + 0.25 i
    h.tensors.push_back({"blk.0.f32", {3, 2}, F32, 0});
    for (int i = 0; i < 6; ++i) { float v = -1.0f + 0.25f * float(i); at(uint64_t(4 * i), &v, 4); }
    // F16 (4): 1, -2, 2^-24 (smallest subnormal), 65504 (largest finite)
    h.tensors.push_back({"f16", {4}, F16, 64});
    const uint16_t f16s[4] = {0x3c00, 0xc000, 0x0001, 0x7bff};
    at(64, f16s, 8);
    // BF16 (2, 2): 1, -3, 3.140625, -0
    h.tensors.push_back({"bf16", {2, 2}, BF16, 128});
    const uint16_t bf16s[4] = {0x3f80, 0xc040, 0x4049, 0x8000};
    at(128, bf16s, 8);
    // Q8_0 (2, 32): block 0 d = 0.5, q = j - 16; block 1 d = 1, q = +-127 alternating
    h.tensors.push_back({"q8", {32, 2}, Q8_0, 192});
    BlockQ8_0 blk[2];
    blk[0].d = 0x3800;
    blk[1].d = 0x3c00;
    for (int j = 0; j < 32; ++j) { blk[0].qs[j] = int8_t(j - 16); blk[1].qs[j] = int8_t(j % 2 ? 127 : -127); }
    at(192, blk, sizeof blk);
    // Q4_K (256): 144 bytes of a pattern: valid to open, not readable
    h.tensors.push_back({"q4k", {256}, Q4_K, 320});
    for (int i = 0; i < 144; ++i) h.data[size_t(320 + i)] = char(i * 7);
    return h;
}

std::string temp_file(const std::string& tag, const std::string& bytes) {
    static const std::string dir = loftq::test::make_temp_dir("gguf");
    const std::string p = dir + "/" + tag + ".gguf";
    write_file(p, bytes);
    return p;
}

// ---- float64 references ----

// x rounded to a binary format with `mant` fraction bits, minimum normal exponent emin, largest
// finite maxv (+-Inf beyond); ties to even (nearbyint's default mode).
double ref_round(double x, int mant, int emin, double maxv) {
    if (std::isnan(x) || std::isinf(x) || x == 0) return x;
    double a = std::fabs(x);
    int E = 0;
    std::frexp(a, &E);
    double ulp = std::ldexp(1.0, std::max(E - 1, emin) - mant);
    double r = std::nearbyint(a / ulp) * ulp;
    if (r > maxv) r = INFINITY;
    return std::copysign(r, x);
}
double ref_f16(double x) { return ref_round(x, 10, -14, 65504.0); }
double ref_bf16(double x) { return ref_round(x, 7, -126, std::ldexp(255.0 / 128.0, 127)); }

// ggml's quantize_row_q8_0_ref for one block in float64, rounding to float exactly where ggml's
// float arithmetic does (a float op's result = its exact value rounded to float; double holds
// every exact product and rounds a quotient correctly before the float rounding).
struct RefQ8 { double d16; int q[32]; };
RefQ8 ref_q8_block(const float* x) {
    double amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(double(x[j])));
    const float d = float(amax / 127.0);
    const float id = d != 0 ? float(1.0 / double(d)) : 0.0f;
    RefQ8 r;
    r.d16 = ref_f16(d);
    for (int j = 0; j < 32; ++j) {
        const double p = double(float(double(x[j]) * double(id)));
        r.q[j] = int(p < 0 ? -std::floor(-p + 0.5) : std::floor(p + 0.5));  // roundf: half away from zero
    }
    return r;
}

bool same_bits(float a, float b) { return loftq::test::float_bits(a) == loftq::test::float_bits(b); }

// tests/data/gguf in the source tree (found from the shipped model's path, which test_support
// resolves against the source folder).
std::string fixture_dir() {
    return (fs::path(loftq::test::shipped_stories260k()).parent_path().parent_path().parent_path().parent_path() / "tests" /
            "data" / "gguf")
        .string();
}

}  // namespace

class TestGguf : public QObject {
    Q_OBJECT

private slots:
    // ---- the type table ----
    void typeTable() {
        struct { uint32_t id; const char* name; int be, bb; bool readable; } want[] = {
            {0, "F32", 1, 4, true},      {1, "F16", 1, 2, true},      {2, "Q4_0", 32, 18, false},
            {3, "Q4_1", 32, 20, false},  {6, "Q5_0", 32, 22, false},  {7, "Q5_1", 32, 24, false},
            {8, "Q8_0", 32, 34, true},   {9, "Q8_1", 32, 36, false},  {10, "Q2_K", 256, 84, false},
            {11, "Q3_K", 256, 110, false}, {12, "Q4_K", 256, 144, false}, {13, "Q5_K", 256, 176, false},
            {14, "Q6_K", 256, 210, false}, {15, "Q8_K", 256, 292, false}, {16, "IQ2_XXS", 256, 66, false},
            {17, "IQ2_XS", 256, 74, false}, {18, "IQ3_XXS", 256, 98, false}, {19, "IQ1_S", 256, 50, false},
            {20, "IQ4_NL", 32, 18, false}, {21, "IQ3_S", 256, 110, false}, {22, "IQ2_S", 256, 82, false},
            {23, "IQ4_XS", 256, 136, false}, {24, "I8", 1, 1, false},  {25, "I16", 1, 2, false},
            {26, "I32", 1, 4, false},    {27, "I64", 1, 8, false},    {28, "F64", 1, 8, false},
            {29, "IQ1_M", 256, 56, false}, {30, "BF16", 1, 2, true},  {34, "TQ1_0", 256, 54, false},
            {35, "TQ2_0", 256, 66, false}, {39, "MXFP4", 32, 17, false},
        };
        int known = 0;
        for (uint32_t id = 0; id < 64; ++id) known += ggml_type_info(id) != nullptr;
        QCOMPARE(known, int(std::size(want)));
        for (const auto& w : want) {
            const GgmlTypeInfo* t = ggml_type_info(w.id);
            QVERIFY2(t, w.name);
            QCOMPARE(std::string(t->name), std::string(w.name));
            QCOMPARE(t->block_elems, w.be);
            QCOMPARE(t->block_bytes, w.bb);
            QCOMPARE(t->readable, w.readable);
            QCOMPARE(t->writable, w.readable);
            QCOMPARE(t->id, w.id);
        }
        QVERIFY(!ggml_type_info(4) && !ggml_type_info(31) && !ggml_type_info(77) && !ggml_type_info(0xffffffffu));
        QCOMPARE(ggml_type_name(12), std::string("Q4_K"));
        QCOMPARE(ggml_type_name(77), std::string("type 77"));
        QCOMPARE(ggml_row_bytes(Q4_K, 512), uint64_t(288));
        QCOMPARE(ggml_row_bytes(Q8_0, 64), uint64_t(68));
        QCOMPARE(ggml_row_bytes(Q8_0, 33), uint64_t(0));
        QCOMPARE(ggml_row_bytes(BF16, 3), uint64_t(6));
        std::vector<uint8_t> b(144);
        std::vector<float> f(256);
        EXPECT_ERROR(ggml_dequantize_row(Q4_K, b.data(), f.data(), 256), "Q4_K", "cannot be read");
        EXPECT_ERROR(ggml_quantize_row(Q4_K, f.data(), b.data(), 256), "Q4_K", "cannot be written");
    }

    // ---- conversions against float64 references ----
    void q8_0MatchesGgmlReference() {
        const int blocks = 64;
        std::vector<float> x = loftq::test::gaussian(size_t(32 * blocks), 15);
        for (int j = 0; j < 32; ++j) {
            x[size_t(j)] = 0.0f;                                      // block 0: all zero
            x[size_t(32 + j)] *= 1.0e5f;                              // block 1: large
            x[size_t(64 + j)] = j == 0 ? -8.0e6f : x[size_t(64 + j)] * 1.0e6f;  // block 2: d near fp16's top
            x[size_t(96 + j)] *= 1.0e-7f;                             // block 3: d below half fp16's smallest subnormal
            x[size_t(128 + j)] = float(j % 8) - 3.5f;                 // block 4: few distinct values
        }
        x[160] = 127.0f;  // block 5: d = 1, id = 1, so x = +-2.5 rounds away from zero to +-3
        x[161] = 2.5f;
        x[162] = -2.5f;
        x[163] = 0.5f;
        x[164] = -0.5f;
        std::vector<uint8_t> q(size_t(34 * blocks));
        ggml_quantize_row(Q8_0, x.data(), q.data(), int64_t(x.size()));
        std::vector<float> y(x.size());
        ggml_dequantize_row(Q8_0, q.data(), y.data(), int64_t(x.size()));
        double worst = 0;
        for (int b = 0; b < blocks; ++b) {
            const RefQ8 r = ref_q8_block(&x[size_t(32 * b)]);
            BlockQ8_0 blk;
            std::memcpy(&blk, &q[size_t(34 * b)], 34);
            QCOMPARE(double(f16_to_f32(blk.d)), r.d16);
            for (int j = 0; j < 32; ++j) {
                QCOMPARE(int(blk.qs[j]), r.q[j]);
                QCOMPARE(double(y[size_t(32 * b + j)]), r.d16 * r.q[j]);  // exact: 11 x 8 bits fit a float
                if (r.d16 > 0) worst = std::max(worst, std::fabs(double(x[size_t(32 * b + j)]) - r.d16 * r.q[j]) / r.d16);
            }
        }
        QCOMPARE(int(reinterpret_cast<BlockQ8_0*>(&q[0])->d), 0);       // all-zero block: d = 0, q = 0
        QCOMPARE(int(reinterpret_cast<BlockQ8_0*>(&q[5 * 34])->qs[1]), 3);
        QCOMPARE(int(reinterpret_cast<BlockQ8_0*>(&q[5 * 34])->qs[2]), -3);
        QCOMPARE(int(reinterpret_cast<BlockQ8_0*>(&q[5 * 34])->qs[3]), 1);
        QCOMPARE(double(y[96]), 0.0);                                    // d rounded to fp16 zero
        // Round-trip error: half a step plus the fp16 rounding of d (2^-11 relative) times 127.
        QVERIFY2(worst <= 0.5 + 127.0 / 2048.0, qPrintable(QString::number(worst)));
    }

    void f16AndBf16RowsRoundToNearestEven() {
        std::vector<float> x = loftq::test::gaussian(4096, 16, 3.0);
        const float specials[] = {0.0f, -0.0f, 65504.0f, 65519.0f, 65520.0f, -70000.0f, 1e-8f, 2.9802322e-8f, 5.9604645e-8f,
                                  6.1035156e-5f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, 3.0e38f, 1.0f + 1.0f / 256,
                                  INFINITY, -INFINITY};
        x.insert(x.end(), std::begin(specials), std::end(specials));
        for (size_t i = 0; i < 4096; i += 7) x[i] = std::ldexp(x[i], int(i % 60) - 30);
        const int64_t n = int64_t(x.size());
        std::vector<uint8_t> h(size_t(2 * n)), b(size_t(2 * n));
        ggml_quantize_row(F16, x.data(), h.data(), n);
        ggml_quantize_row(BF16, x.data(), b.data(), n);
        std::vector<float> yh(x.size()), yb(x.size());
        ggml_dequantize_row(F16, h.data(), yh.data(), n);
        ggml_dequantize_row(BF16, b.data(), yb.data(), n);
        for (size_t i = 0; i < x.size(); ++i) {
            QVERIFY2(double(yh[i]) == ref_f16(x[i]), qPrintable(QString("f16 %1 -> %2").arg(double(x[i])).arg(double(yh[i]))));
            QVERIFY2(double(yb[i]) == ref_bf16(x[i]), qPrintable(QString("bf16 %1 -> %2").arg(double(x[i])).arg(double(yb[i]))));
            QCOMPARE(std::signbit(yh[i]), std::signbit(x[i]));
        }
        // F32 rows are copies, NaN payload included.
        x[0] = std::nanf("0x123");
        std::vector<uint8_t> f(size_t(4 * n));
        std::vector<float> yf(x.size());
        ggml_quantize_row(F32, x.data(), f.data(), n);
        ggml_dequantize_row(F32, f.data(), yf.data(), n);
        for (size_t i = 0; i < x.size(); ++i) QVERIFY(same_bits(x[i], yf[i]));
    }

    // ---- the handmade file ----
    void handmadeFileParses() {
        const Hand h = handmade();
        const std::string bytes = h.bytes();
        const std::string p = temp_file("handmade", bytes);
        auto f = GgufFile::open(p);
        QCOMPARE(f->path(), p);
        QCOMPARE(f->version(), 3u);
        QCOMPARE(f->alignment(), uint64_t(64));
        QCOMPARE(f->file_size(), uint64_t(bytes.size()));
        QCOMPARE(f->data_offset(), uint64_t(bytes.size() - h.data.size()));
        QCOMPARE(f->data_offset() % 64, uint64_t(0));

        // Metadata: file order, every type.
        const char* keys[] = {"general.architecture", "t.u8", "t.i8", "t.u16", "t.i16", "t.u32", "t.i32", "t.f32", "t.bool",
                              "t.u64", "t.i64", "t.f64", "tokenizer.ggml.tokens", "t.scores", "t.nested", "general.alignment"};
        QCOMPARE(f->metadata().size(), std::size(keys));
        for (size_t i = 0; i < std::size(keys); ++i) QCOMPARE(f->metadata()[i].first, std::string(keys[i]));
        QCOMPARE(f->get_string("general.architecture"), std::string("llama"));
        QCOMPARE(f->find("general.architecture")->type, GgufType::String);
        QCOMPARE(f->get_int("t.u8", 0), int64_t(200));
        QCOMPARE(f->get_int("t.i8", 0), int64_t(-5));
        QCOMPARE(f->get_int("t.u16", 0), int64_t(60000));
        QCOMPARE(f->get_int("t.i16", 0), int64_t(-30000));
        QCOMPARE(f->get_int("t.u32", 0), int64_t(4000000000));
        QCOMPARE(f->get_int("t.i32", 0), int64_t(-123456));
        QCOMPARE(f->get_int("t.i64", 0), -(int64_t(1) << 40));
        QCOMPARE(f->get_int("t.bool", 0), int64_t(1));
        QCOMPARE(f->get_bool("t.bool", false), true);
        QCOMPARE(f->get_float("t.f32", 0), 1.5);
        QCOMPARE(f->get_float("t.f64", 0), 0.1);
        QCOMPARE(f->get_float("t.i32", 0), -123456.0);
        const GgufValue* u64 = f->find("t.u64");
        QCOMPARE(u64->type, GgufType::U64);
        QCOMPARE(u64->u, (uint64_t(1) << 63) + 5);
        QCOMPARE(u64->i, int64_t(0));  // does not fit
        QCOMPARE(f->find("t.i8")->u, uint64_t(0));  // negative: u does not fit
        QCOMPARE(f->find("t.i8")->f, -5.0);
        const GgufValue* toks = f->find("tokenizer.ggml.tokens");
        QCOMPARE(toks->type, GgufType::Array);
        QCOMPARE(toks->array_type, GgufType::String);
        QCOMPARE(toks->count, uint64_t(3));
        QCOMPARE(toks->strs, (std::vector<std::string>{"<s>", "a", ""}));
        const GgufValue* sc = f->find("t.scores");
        QCOMPARE(sc->array_type, GgufType::F32);
        QCOMPARE(sc->nums, (std::vector<double>{0.5, -1.0}));
        const GgufValue* nested = f->find("t.nested");
        QCOMPARE(nested->array_type, GgufType::Array);
        QCOMPARE(nested->count, uint64_t(2));
        QVERIFY(nested->nums.empty() && nested->strs.empty());
        QCOMPARE(nested->type_text(), std::string("ARRAY of ARRAY"));
        QCOMPARE(f->get_int("general.alignment", 0), int64_t(64));
        // Absent: the fallback. Present with another type: an error naming the file and key.
        QVERIFY(!f->find("nope"));
        QCOMPARE(f->get_string("nope", "dflt"), std::string("dflt"));
        QCOMPARE(f->get_int("nope", -7), int64_t(-7));
        QCOMPARE(f->get_float("nope", 2.5), 2.5);
        QCOMPARE(f->get_bool("nope", true), true);
        EXPECT_ERROR(f->get_string("t.u8"), p, "t.u8", "UINT8", "STRING");
        EXPECT_ERROR(f->get_int("t.f32", 0), p, "t.f32", "FLOAT32", "integer");
        EXPECT_ERROR(f->get_int("t.u64", 0), p, "t.u64", "int64");
        EXPECT_ERROR(f->get_float("tokenizer.ggml.tokens", 0), p, "tokenizer.ggml.tokens", "ARRAY of STRING");
        EXPECT_ERROR(f->get_bool("t.u8", false), p, "t.u8", "BOOL");

        // Tensors: file order, shapes both ways, sizes, data.
        QCOMPARE(f->tensors().size(), size_t(5));
        const char* names[] = {"blk.0.f32", "f16", "bf16", "q8", "q4k"};
        for (size_t i = 0; i < 5; ++i) QCOMPARE(f->tensors()[i].name, std::string(names[i]));
        const GgufTensor* t = f->find_tensor("blk.0.f32");
        QVERIFY(t && !f->find_tensor("missing"));
        QCOMPARE(t->ne, (std::vector<int64_t>{3, 2}));
        QCOMPARE(t->shape(), (std::vector<int64_t>{2, 3}));
        QCOMPARE(t->numel(), uint64_t(6));
        QCOMPARE(t->nbytes, uint64_t(24));
        QCOMPARE(t->type, F32);
        QCOMPARE(t->offset, uint64_t(0));
        QCOMPARE(f->find_tensor("q4k")->data - t->data, ptrdiff_t(320));  // data = mapping + data_offset + offset
        std::vector<float> v = f->read_f32(*t);
        for (int i = 0; i < 6; ++i) QCOMPARE(v[size_t(i)], -1.0f + 0.25f * float(i));
        v = f->read_f32(*f->find_tensor("f16"));
        QCOMPARE(v, (std::vector<float>{1.0f, -2.0f, std::ldexp(1.0f, -24), 65504.0f}));
        const GgufTensor* b16 = f->find_tensor("bf16");
        QCOMPARE(b16->shape(), (std::vector<int64_t>{2, 2}));
        QCOMPARE(b16->offset, uint64_t(128));
        v = f->read_f32(*b16);
        QCOMPARE(v, (std::vector<float>{1.0f, -3.0f, 3.140625f, -0.0f}));
        QVERIFY(std::signbit(v[3]));
        const GgufTensor* q8 = f->find_tensor("q8");
        QCOMPARE(q8->shape(), (std::vector<int64_t>{2, 32}));
        QCOMPARE(q8->nbytes, uint64_t(68));
        v = f->read_f32(*q8);
        for (int j = 0; j < 32; ++j) {
            QCOMPARE(v[size_t(j)], 0.5f * float(j - 16));
            QCOMPARE(v[size_t(32 + j)], j % 2 ? 127.0f : -127.0f);
        }
        const GgufTensor* q4 = f->find_tensor("q4k");
        QCOMPARE(q4->nbytes, uint64_t(144));
        QCOMPARE(int(q4->data[1]), 7);
        QCOMPARE(uint64_t(q4->offset + q4->nbytes + f->data_offset()), f->file_size());
        std::vector<float> out(256);
        EXPECT_ERROR(f->read_f32(*q4, out.data()), p, "q4k", "type Q4_K cannot be read exactly",
                     "LoftQ Studio reads F32, F16, BF16 and Q8_0");
        f->release(*q8);  // a hint: the data reads the same afterwards
        QCOMPARE(f->read_f32(*q8)[0], -8.0f);
    }

    void everyPrefixIsRefusedCleanly() {
        const std::string bytes = handmade().bytes();
        for (size_t n = 0; n < bytes.size(); ++n) {
            const std::string p = temp_file("prefix", bytes.substr(0, n));
            std::string msg;
            QVERIFY2(loftq::test::throws_error([&] { GgufFile::open(p); }, {p}, msg),
                     qPrintable(QString("prefix %1: %2").arg(n).arg(QString::fromStdString(msg))));
        }
    }

    // ---- bad input: one refusal each, naming the file (and the key or tensor) ----
    void badHeaders() {
        std::string p = temp_file("empty", "");
        EXPECT_ERROR(GgufFile::open(p), p, "0 bytes");
        p = temp_file("safetensors", std::string("\x02\0\0\0\0\0\0\0{}", 10));
        EXPECT_ERROR(GgufFile::open(p), p, "not a GGUF file", "safetensors");
        p = temp_file("text", "hello world, this is not a model file");
        EXPECT_ERROR(GgufFile::open(p), p, "not a GGUF file", "68 65 6c 6c");
        Hand h = handmade();
        h.version = 1;
        p = temp_file("v1", h.bytes());
        EXPECT_ERROR(GgufFile::open(p), p, "version 1", "not supported");
        h.version = 4;
        p = temp_file("v4", h.bytes());
        EXPECT_ERROR(GgufFile::open(p), p, "unknown GGUF version 4");
        h.version = 0x03000000;  // 3 written big-endian
        p = temp_file("be", h.bytes());
        EXPECT_ERROR(GgufFile::open(p), p, "big-endian");
        h = handmade();
        h.version = 2;  // version 2 has the same layout
        p = temp_file("v2", h.bytes());
        QCOMPARE(GgufFile::open(p)->version(), 2u);
    }

    void hugeCountsAreRefusedBeforeAllocating() {
        Hand h = handmade();
        h.n_tensors = uint64_t(1) << 60;
        std::string p = temp_file("huge-tensors", h.bytes());
        EXPECT_ERROR(GgufFile::open(p), p, "tensor_count 1152921504606846976", "cannot fit");
        h = handmade();
        h.n_kv = ~uint64_t(0);
        p = temp_file("huge-kv", h.bytes());
        EXPECT_ERROR(GgufFile::open(p), p, "metadata_kv_count", "cannot fit");
        h = handmade();
        Buf b;
        b.put<uint64_t>(uint64_t(1) << 62).s += "key";  // a key whose length is beyond the file
        h.kvs[0] = b.s;
        p = temp_file("huge-string", h.bytes());
        EXPECT_ERROR(GgufFile::open(p), p, "length 4611686018427387904", "beyond the file");
        h = handmade();
        Buf a;
        a.str("t.big").put<uint32_t>(9).put<uint32_t>(6).put<uint64_t>(uint64_t(1) << 61);
        h.kvs[1] = a.s;
        p = temp_file("huge-array", h.bytes());
        EXPECT_ERROR(GgufFile::open(p), p, "t.big", "cannot fit");
    }

    void badMetadata() {
        Hand h = handmade();
        h.kvs[1] = kv<uint8_t>("t.weird", 13, 0);
        std::string p = temp_file("value-type", h.bytes());
        EXPECT_ERROR(GgufFile::open(p), p, "t.weird", "unknown value type 13");
        h = handmade();
        Buf b;  // ARRAY of ARRAY of ARRAY of ARRAY of U8: four levels
        b.str("t.deep").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(1).put<uint32_t>(9).put<uint64_t>(1).put<uint32_t>(9)
            .put<uint64_t>(1).put<uint32_t>(0).put<uint64_t>(0);
        h.kvs[1] = b.s;
        p = temp_file("deep", h.bytes());
        EXPECT_ERROR(GgufFile::open(p), p, "t.deep", "nested deeper");
        h = handmade();
        h.kvs[2] = kv<uint8_t>("t.u8", 0, 1);
        p = temp_file("dup-key", h.bytes());
        EXPECT_ERROR(GgufFile::open(p), p, "'t.u8' appears twice");
        for (const auto& bad : {kv<uint32_t>("general.alignment", 4, 48), kv<uint32_t>("general.alignment", 4, 0),
                                kv<uint64_t>("general.alignment", 10, 64)}) {
            h = handmade();
            h.kvs.back() = bad;
            p = temp_file("alignment", h.bytes());
            EXPECT_ERROR(GgufFile::open(p), p, "general.alignment", "power of two");
        }
    }

    void badTensorInfos() {
        auto refuses = [](const std::string& tag, Hand h, std::vector<std::string> needles) {
            const std::string p = temp_file(tag, h.bytes());
            needles.push_back(p);
            std::string msg;
            const bool ok = loftq::test::throws_error([&] { GgufFile::open(p); }, needles, msg);
            if (!ok) qWarning("%s: %s", tag.c_str(), msg.c_str());
            return ok;
        };
        Hand h = handmade();
        h.tensors[1].type = 77;
        QVERIFY(refuses("ggml-type", h, {"'f16'", "unknown ggml type id 77"}));
        h = handmade();
        h.tensors[2].n_dims = 0;
        h.tensors[2].ne.clear();
        QVERIFY(refuses("ndims0", h, {"'bf16'", "n_dims 0"}));
        h = handmade();
        h.tensors[2].ne = {1, 1, 1, 2, 2};
        QVERIFY(refuses("ndims5", h, {"'bf16'", "n_dims 5"}));
        h = handmade();
        h.tensors[0].ne = {3, 0};
        QVERIFY(refuses("ne0", h, {"'blk.0.f32'", "ne[1] = 0"}));
        h = handmade();
        h.tensors[0].ne = {uint64_t(1) << 40, uint64_t(1) << 40};
        QVERIFY(refuses("ne-overflow", h, {"'blk.0.f32'", "overflows"}));
        h = handmade();
        h.tensors[3].ne = {16, 4};
        QVERIFY(refuses("block", h, {"'q8'", "not a multiple of Q8_0's block of 32"}));
        h = handmade();
        h.tensors[1].offset = 32;  // a multiple of 32, not of the file's 64
        QVERIFY(refuses("misaligned", h, {"'f16'", "offset 32", "alignment 64"}));
        h = handmade();
        h.tensors[4].offset = 384;
        QVERIFY(refuses("out-of-range", h, {"'q4k'", "outside the file", "[384, 528)"}));
        h = handmade();
        h.tensors[2].name = "f16";
        QVERIFY(refuses("dup-tensor", h, {"'f16'", "appears twice"}));
        h = handmade();
        h.tensors[2].offset = 64;  // bf16 onto f16's bytes
        QVERIFY(refuses("overlap", h, {"overlaps"}));
    }

    void nanInATensorIsNamed() {
        Hand h = handmade();
        const float nan = std::nanf(""), inf = INFINITY;
        std::memcpy(&h.data[4 * 4], &nan, 4);
        std::memcpy(&h.data[5 * 4], &inf, 4);
        const std::string p = temp_file("nan", h.bytes());
        auto f = GgufFile::open(p);
        const GgufTensor& t = *f->find_tensor("blk.0.f32");
        EXPECT_ERROR(f->read_f32(t), p, "blk.0.f32", "2 of 6 values are NaN or Inf", "value 4 = NaN");
        std::vector<float> v = f->read_f32(t, false);  // unchecked: as stored
        QVERIFY(std::isnan(v[4]) && std::isinf(v[5]));
    }

    // ---- the writer ----
    void writerRoundTrip() {
        const std::string dir = loftq::test::make_temp_dir("gguf-writer");
        auto values = [](size_t n, uint64_t seed) { return loftq::test::gaussian(n, seed, 2.0); };
        const auto a = values(15, 1), b = values(32, 2), c = values(24, 3), d = values(3 * 64, 4);
        auto build = [&](uint32_t alignment) {
            GgufWriter w(alignment);
            w.add_string("general.architecture", "llama");
            w.add_string("t.empty", "");
            w.add_u32("t.u32", 4000000000u);
            w.add_i32("t.i32", -7);
            w.add_f32("t.f32", 0.1f);
            w.add_bool("t.true", true);
            w.add_bool("t.false", false);
            w.add_u64("t.u64", ~uint64_t(0));
            w.add_i64("t.i64", INT64_MIN);
            w.add_f64("t.f64", 1e300);
            w.add_strings("tokenizer.ggml.tokens", {"<unk>", "\xe2\x96\x81the", ""});
            w.add_f32s("tokenizer.ggml.scores", {0.0f, -1.5f, 3.25f});
            w.add_i32s("tokenizer.ggml.token_type", {2, 1, -1});
            auto from = [](const std::vector<float>& v) { return [v](float* dst) { std::copy(v.begin(), v.end(), dst); }; };
            w.add_tensor("a.f32", {3, 5}, F32, from(a));
            w.add_tensor("b.f16", {32}, F16, from(b));
            w.add_tensor("c.bf16", {2, 3, 4}, BF16, from(c));
            w.add_tensor("d.q8_0", {3, 64}, Q8_0, from(d));
            return w;
        };
        for (uint32_t alignment : {32u, 64u, 1u, 4096u}) {
            const std::string p = dir + "/out-" + std::to_string(alignment) + ".gguf";
            std::vector<std::pair<size_t, size_t>> calls;
            build(alignment).write(p, [&](size_t done, size_t total) { calls.emplace_back(done, total); });
            QCOMPARE(calls.size(), size_t(4));
            QCOMPARE(calls.back(), (std::pair<size_t, size_t>(4, 4)));
            QVERIFY(!fs::exists(p + ".partial"));
            auto f = GgufFile::open(p);
            QCOMPARE(f->version(), 3u);
            QCOMPARE(f->alignment(), uint64_t(alignment));
            QCOMPARE(f->find("general.alignment") != nullptr, alignment != 32);
            QCOMPARE(f->metadata().size(), size_t(13 + (alignment != 32)));
            QCOMPARE(f->get_string("general.architecture"), std::string("llama"));
            QCOMPARE(f->get_string("t.empty", "x"), std::string(""));
            QCOMPARE(f->find("t.u32")->type, GgufType::U32);
            QCOMPARE(f->get_int("t.u32", 0), int64_t(4000000000));
            QCOMPARE(f->find("t.i32")->type, GgufType::I32);
            QCOMPARE(f->get_int("t.i32", 0), int64_t(-7));
            QCOMPARE(f->find("t.f32")->type, GgufType::F32);
            QCOMPARE(f->get_float("t.f32", 0), double(0.1f));
            QCOMPARE(f->get_bool("t.true", false), true);
            QCOMPARE(f->get_bool("t.false", true), false);
            QCOMPARE(f->find("t.u64")->u, ~uint64_t(0));
            QCOMPARE(f->get_int("t.i64", 0), INT64_MIN);
            QCOMPARE(f->get_float("t.f64", 0), 1e300);
            QCOMPARE(f->find("tokenizer.ggml.tokens")->strs, (std::vector<std::string>{"<unk>", "\xe2\x96\x81the", ""}));
            QCOMPARE(f->find("tokenizer.ggml.scores")->nums, (std::vector<double>{0.0, -1.5, 3.25}));
            QCOMPARE(f->find("tokenizer.ggml.token_type")->array_type, GgufType::I32);
            QCOMPARE(f->find("tokenizer.ggml.token_type")->nums, (std::vector<double>{2, 1, -1}));

            QCOMPARE(f->tensors().size(), size_t(4));
            QCOMPARE(f->data_offset() % alignment, uint64_t(0));
            for (const GgufTensor& t : f->tensors()) {
                QCOMPARE(t.offset % alignment, uint64_t(0));
                QCOMPARE(uint64_t(t.data - f->tensors()[0].data), t.offset);  // the first is at offset 0
            }
            // Last tensor padded too: the file ends on the alignment.
            QCOMPARE(f->file_size() % alignment, uint64_t(0));
            const GgufTensor& ta = *f->find_tensor("a.f32");
            QCOMPARE(ta.ne, (std::vector<int64_t>{5, 3}));
            QCOMPARE(ta.shape(), (std::vector<int64_t>{3, 5}));
            std::vector<float> v = f->read_f32(ta);
            for (size_t i = 0; i < a.size(); ++i) QVERIFY(same_bits(v[i], a[i]));
            v = f->read_f32(*f->find_tensor("b.f16"));
            for (size_t i = 0; i < b.size(); ++i) QCOMPARE(double(v[i]), ref_f16(b[i]));
            const GgufTensor& tc = *f->find_tensor("c.bf16");
            QCOMPARE(tc.ne, (std::vector<int64_t>{4, 3, 2}));
            v = f->read_f32(tc);
            for (size_t i = 0; i < c.size(); ++i) QCOMPARE(double(v[i]), ref_bf16(c[i]));
            const GgufTensor& td = *f->find_tensor("d.q8_0");
            QCOMPARE(td.ne, (std::vector<int64_t>{64, 3}));
            QCOMPARE(td.nbytes, uint64_t(6 * 34));
            v = f->read_f32(td);
            for (size_t blk = 0; blk < 6; ++blk) {
                const RefQ8 r = ref_q8_block(&d[32 * blk]);
                for (int j = 0; j < 32; ++j) QCOMPARE(double(v[32 * blk + size_t(j)]), r.d16 * r.q[j]);
            }
        }
        // Deterministic: the same calls, the same bytes.
        const std::string p1 = dir + "/twice-1.gguf", p2 = dir + "/twice-2.gguf";
        build(64).write(p1);
        build(64).write(p2);
        QVERIFY(read_file(p1) == read_file(p2));
        QVERIFY(read_file(p1) != read_file(dir + "/out-32.gguf"));
        // Written over: the new file replaces the old one whole.
        build(32).write(p1);
        QVERIFY(read_file(p1) == read_file(dir + "/out-32.gguf"));
    }

    void writerRefusesBadCalls() {
        GgufWriter w;
        w.add_u32("k", 1);
        EXPECT_ERROR(w.add_string("k", "again"), "'k' added twice");
        EXPECT_ERROR(w.add_u32("general.alignment", 64), "general.alignment", "32");
        EXPECT_ERROR(w.add_string("general.alignment", "32"), "general.alignment");
        w.add_u32("general.alignment", 32);  // agreeing with the writer: kept as given
        auto fill = [](float* dst) { dst[0] = 0; };
        w.add_tensor("t", {1}, F32, fill);
        EXPECT_ERROR(w.add_tensor("t", {1}, F32, fill), "'t'", "added twice");
        EXPECT_ERROR(w.add_tensor("q", {2, 48}, Q8_0, fill), "'q'", "multiple of 32");
        EXPECT_ERROR(w.add_tensor("k4", {256}, Q4_K, fill), "'k4'", "Q4_K");
        EXPECT_ERROR(w.add_tensor("z", {2, 0}, F32, fill), "'z'", "positive");
        EXPECT_ERROR(w.add_tensor("d5", {1, 1, 1, 1, 1}, F32, fill), "'d5'", "1 to 4");
        EXPECT_ERROR(GgufWriter(48), "48", "power of two");
    }

    void failedOrCancelledWriteLeavesNoFile() {
        const std::string dir = loftq::test::make_temp_dir("gguf-atomic");
        auto make = [](std::function<void(float*)> second) {
            GgufWriter w;
            w.add_string("general.architecture", "llama");
            w.add_tensor("first", {4, 32}, Q8_0, [](float* d) { for (int i = 0; i < 128; ++i) d[i] = float(i); });
            w.add_tensor("second", {8}, F32, std::move(second));
            return w;
        };
        auto nothing_there = [&](const std::string& p) {
            QVERIFY2(!fs::exists(p), p.c_str());
            QVERIFY2(!fs::exists(p + ".partial"), p.c_str());
        };
        // A fill that throws: the error names the file and tensor.
        const std::string p = dir + "/model.gguf";
        EXPECT_ERROR(make([](float*) { throw std::runtime_error("boom"); }).write(p), p, "second", "boom");
        nothing_there(p);
        // Cancelled before it starts, and between tensors (from the progress callback).
        CancelToken cancel;
        cancel.cancel();
        bool threw = false;
        try {
            make([](float* d) { d[0] = 0; }).write(p, {}, &cancel);
        } catch (const Cancelled&) {
            threw = true;
        }
        QVERIFY(threw);
        nothing_there(p);
        CancelToken later;
        threw = false;
        try {
            make([](float* d) { std::fill(d, d + 8, 1.0f); }).write(p, [&](size_t, size_t) { later.cancel(); }, &later);
        } catch (const Cancelled&) {
            threw = true;
        }
        QVERIFY(threw);
        nothing_there(p);
        // Q8_0 values it cannot store: NaN, and a scale beyond fp16.
        GgufWriter nan;
        nan.add_tensor("w", {32}, Q8_0, [](float* d) { std::fill(d, d + 32, 0.0f); d[3] = std::nanf(""); });
        EXPECT_ERROR(nan.write(p), p, "'w'", "value 3 is NaN");
        nothing_there(p);
        GgufWriter big;
        big.add_tensor("w", {64}, Q8_0, [](float* d) { std::fill(d, d + 64, 1.0f); d[40] = 1e7f; });
        EXPECT_ERROR(big.write(p), p, "'w'", "Q8_0 block 1", "fp16");
        nothing_there(p);
        // A failure over an existing file leaves it as it was.
        make([](float* d) { std::fill(d, d + 8, 2.0f); }).write(p);
        const std::string before = read_file(p);
        EXPECT_ERROR(make([](float*) { throw Error("", "", "disk on fire"); }).write(p), p, "second", "disk on fire");
        QVERIFY(read_file(p) == before);
        QVERIFY(!fs::exists(p + ".partial"));
        // A folder that cannot be made: the error names the file.
        EXPECT_ERROR(make([](float* d) { d[0] = 0; }).write("/proc/loftq-test/model.gguf"), "/proc/loftq-test/model.gguf");
    }

    // ---- llama.cpp's own writer (gguf-py), from tests/data/gguf/make_fixture.py ----
    void readsGgufPyFile() {
        const std::string dir = fixture_dir();
        const std::string p = dir + "/gguf_py_tiny.gguf";
        if (!fs::exists(p)) QSKIP("tests/data/gguf/gguf_py_tiny.gguf is absent");
        auto f = GgufFile::open(p);
        QCOMPARE(f->version(), 3u);
        // make_fixture.py writes the expected values beside the file: key lines and tensor lines.
        std::ifstream in(dir + "/gguf_py_tiny.expected.txt");
        QVERIFY(in.good());
        std::string kind;
        int tensors = 0, kvs = 0;
        while (in >> kind) {
            if (kind == "#") { std::string rest; std::getline(in, rest); continue; }
            if (kind == "kv") {  // kv KEY TYPE VALUE
                std::string key, type;
                in >> key >> type;
                ++kvs;
                if (type == "str") { std::string v; in >> v; QCOMPARE(f->get_string(key), v); }
                else if (type == "int") { int64_t v; in >> v; QCOMPARE(f->get_int(key, 0), v); }
                else if (type == "float") { double v; in >> v; QCOMPARE(f->get_float(key, 0), v); }
                else if (type == "bool") { int v; in >> v; QCOMPARE(f->get_bool(key, !v), bool(v)); }
                else if (type == "strs") {
                    size_t n; in >> n;
                    std::vector<std::string> v(n);
                    for (auto& s : v) in >> s;
                    QCOMPARE(f->find(key)->strs, v);
                } else QFAIL(qPrintable(QString::fromStdString("unknown kv kind " + type)));
            } else if (kind == "tensor") {  // tensor NAME TYPE NDIMS shape... N value-bits...
                std::string name, type;
                size_t ndims, n;
                in >> name >> type >> ndims;
                std::vector<int64_t> shape(ndims);
                for (auto& s : shape) in >> s;
                in >> n;
                const GgufTensor* t = f->find_tensor(name);
                QVERIFY2(t, name.c_str());
                QCOMPARE(ggml_type_name(t->type), type);
                QCOMPARE(t->shape(), shape);
                QCOMPARE(t->numel(), uint64_t(n));
                QCOMPARE(t->offset % f->alignment(), uint64_t(0));
                const std::vector<float> v = f->read_f32(*t);
                for (size_t i = 0; i < n; ++i) {
                    uint32_t bits;
                    in >> std::hex >> bits >> std::dec;
                    QVERIFY2(loftq::test::float_bits(v[i]) == bits,
                             qPrintable(QString("%1[%2]: %3 vs expected %4").arg(name.c_str()).arg(i).arg(double(v[i])).arg(bits, 8, 16)));
                }
                ++tensors;
            } else {
                QFAIL(qPrintable(QString::fromStdString("bad line kind " + kind)));
            }
        }
        QCOMPARE(size_t(tensors), f->tensors().size());
        QVERIFY(kvs > 0);
    }
};

QTEST_APPLESS_MAIN(TestGguf)
#include "test_gguf.moc"
