// test_io.cpp: tests of engine/io and core/dtype: f16/bf16 conversions against a float64
// reference, safetensors write -> read round trips, atomic-write guarantees, corrupt-file errors,
// sharded folders, config.json parsing, llama2.c checkpoints (layout, exact size, and the RoPE
// row permutation proven equivalent by computing attention logits both ways), and the real
// stories260K model when ../shared is present.
// Leaves out: PEFT adapters and synthetic models (their own tests), quantization.
#include <QtTest>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "expect_error.h"
#include "test_support.h"

using namespace loftq;
using loftq::test::read_file;
using loftq::test::write_file;
namespace fs = std::filesystem;

namespace {

std::string le64(uint64_t n) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[size_t(i)] = char(uint8_t(n >> (8 * i)));
    return s;
}

// A raw safetensors file: header length (explicit or the JSON's), header JSON, data bytes.
std::string raw_st(const std::string& json, const std::string& data, int64_t header_len = -1) {
    return le64(header_len < 0 ? json.size() : uint64_t(header_len)) + json + data;
}

// ---- float64 references for the narrow float types (round to nearest, ties to even) ----

// Value x rounds to in a binary format with `mant` fraction bits, minimum normal exponent emin
// and largest finite value `maxv`; +-Inf beyond. Works in double, where x / ulp is exact.
double ref_round(float x, int mant, int emin, double maxv) {
    if (std::isnan(x)) return x;
    if (std::isinf(x)) return x;
    double a = std::fabs(double(x));
    if (a == 0) return double(x);
    int E = 0;
    std::frexp(a, &E);                      // a = m * 2^E, m in [0.5, 1): exponent is E - 1
    int e = std::max(E - 1, emin);          // subnormals share the minimum exponent's ulp
    double ulp = std::ldexp(1.0, e - mant);
    double r = std::nearbyint(a / ulp) * ulp;  // default rounding mode: ties to even
    if (r > maxv) r = INFINITY;
    return std::copysign(r, double(x));
}
double ref_f16(float x) { return ref_round(x, 10, -14, 65504.0); }
double ref_bf16(float x) { return ref_round(x, 7, -126, std::ldexp(255.0 / 128.0, 127)); }

bool same_value(double expect, float got) {
    if (std::isnan(expect)) return std::isnan(got);
    return double(got) == expect && std::signbit(expect) == std::signbit(got);
}

float bits_to_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// ---- llama2.c test files ----

struct L2cDims {
    int dim = 24, hidden = 40, layers = 2, heads = 4, kv_heads = 2, vocab = 32, seq_len = 8;
    bool tied = true;
    int hd() const { return dim / heads; }
    int kv_dim() const { return hd() * kv_heads; }
};

// Float offsets (after the 28-byte header) of each llama2.c array, computed independently of
// the engine from the documented order.
struct L2cLayout {
    size_t emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq, wcls, total;
    explicit L2cLayout(const L2cDims& d) {
        size_t D = size_t(d.dim), H = size_t(d.hidden), L = size_t(d.layers), V = size_t(d.vocab),
               KV = size_t(d.kv_dim());
        size_t o = 0;
        emb = o; o += V * D;
        rms_att = o; o += L * D;
        wq = o; o += L * D * D;
        wk = o; o += L * KV * D;
        wv = o; o += L * KV * D;
        wo = o; o += L * D * D;
        rms_ffn = o; o += L * D;
        w1 = o; o += L * H * D;
        w2 = o; o += L * D * H;
        w3 = o; o += L * H * D;
        rms_final = o; o += D;
        freq = o; o += size_t(d.seq_len) * size_t(d.hd());
        wcls = o; o += d.tied ? 0 : V * D;
        total = o;
    }
};

// Writes a llama2.c file with random weights; returns the floats after the header.
std::vector<float> write_llama2c(const std::string& path, const L2cDims& d, uint64_t seed, int64_t extra_bytes = 0) {
    L2cLayout lay(d);
    std::vector<float> w = test::gaussian(lay.total, seed, 0.5);
    int32_t h[7] = {d.dim, d.hidden, d.layers, d.heads, d.kv_heads, d.tied ? d.vocab : -d.vocab, d.seq_len};
    std::string bytes(reinterpret_cast<const char*>(h), 28);
    bytes.append(reinterpret_cast<const char*>(w.data()), w.size() * 4);
    if (extra_bytes > 0) bytes.append(size_t(extra_bytes), '\0');
    if (extra_bytes < 0) bytes.resize(bytes.size() - size_t(-extra_bytes));
    write_file(path, bytes);
    return w;
}

// llama2.c's RoPE (run.c): interleaved pairs (2i, 2i+1) of each head rotated by
// pos * 10000^(-2i/hd), for the first `n` entries of v.
void rope_llama2c(std::vector<double>& v, int n, int hd, int pos) {
    for (int i = 0; i < n; i += 2) {
        int head_dim = i % hd;
        double freq = 1.0 / std::pow(10000.0, double(head_dim) / double(hd));
        double a = pos * freq, c = std::cos(a), s = std::sin(a);
        double v0 = v[size_t(i)], v1 = v[size_t(i + 1)];
        v[size_t(i)] = v0 * c - v1 * s;
        v[size_t(i + 1)] = v0 * s + v1 * c;
    }
}

// HF's rotate_half RoPE: within each head, pairs (j, j + hd/2) rotated by pos * 10000^(-2j/hd).
void rope_hf(std::vector<double>& v, int n, int hd, int pos) {
    for (int h = 0; h < n / hd; ++h)
        for (int j = 0; j < hd / 2; ++j) {
            double freq = 1.0 / std::pow(10000.0, 2.0 * j / double(hd));
            double a = pos * freq, c = std::cos(a), s = std::sin(a);
            size_t i0 = size_t(h * hd + j), i1 = size_t(h * hd + j + hd / 2);
            double x0 = v[i0], x1 = v[i1];
            v[i0] = x0 * c - x1 * s;
            v[i1] = x1 * c + x0 * s;
        }
}

std::vector<double> matvec(const float* w, int rows, int cols, const std::vector<double>& x) {
    std::vector<double> y(size_t(rows), 0.0);
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) y[size_t(r)] += double(w[size_t(r) * size_t(cols) + size_t(c)]) * x[size_t(c)];
    return y;
}

// Attention logits q_h . k_{h / group} for every head, after RoPE at positions pq and pk.
std::vector<double> logits(std::vector<double> q, std::vector<double> k, int heads, int kv_heads, int hd, int pq,
                           int pk, bool hf) {
    if (hf) { rope_hf(q, heads * hd, hd, pq); rope_hf(k, kv_heads * hd, hd, pk); }
    else { rope_llama2c(q, heads * hd, hd, pq); rope_llama2c(k, kv_heads * hd, hd, pk); }
    std::vector<double> out;
    for (int h = 0; h < heads; ++h) {
        int kh = h / (heads / kv_heads);
        double s = 0;
        for (int j = 0; j < hd; ++j) s += q[size_t(h * hd + j)] * k[size_t(kh * hd + j)];
        out.push_back(s);
    }
    return out;
}

// Max relative difference of llama2.c-convention logits (original weights) vs HF-convention
// logits (weights as the checkpoint presents them), over several random inputs and positions.
double rope_equivalence(const float* wq_orig, const float* wk_orig, const std::vector<float>& wq_hf,
                        const std::vector<float>& wk_hf, int dim, int heads, int kv_heads, uint64_t seed,
                        double* max_unpermuted = nullptr) {
    int hd = dim / heads;
    Rng rng(seed);
    double worst = 0, unperm = 0;
    for (int trial = 0; trial < 4; ++trial) {
        std::vector<double> xq(static_cast<size_t>(dim)), xk(static_cast<size_t>(dim));
        for (auto& v : xq) v = rng.normal();
        for (auto& v : xk) v = rng.normal();
        int pq = 3 + 5 * trial, pk = 1 + 2 * trial;
        auto ref = logits(matvec(wq_orig, dim, dim, xq), matvec(wk_orig, kv_heads * hd, dim, xk), heads, kv_heads,
                          hd, pq, pk, false);
        auto got = logits(matvec(wq_hf.data(), dim, dim, xq), matvec(wk_hf.data(), kv_heads * hd, dim, xk), heads,
                          kv_heads, hd, pq, pk, true);
        auto bad = logits(matvec(wq_orig, dim, dim, xq), matvec(wk_orig, kv_heads * hd, dim, xk), heads, kv_heads,
                          hd, pq, pk, true);
        double scale = 0;
        for (double v : ref) scale = std::max(scale, std::fabs(v));
        for (size_t i = 0; i < ref.size(); ++i) {
            worst = std::max(worst, std::fabs(ref[i] - got[i]) / std::max(scale, 1e-30));
            unperm = std::max(unperm, std::fabs(ref[i] - bad[i]) / std::max(scale, 1e-30));
        }
    }
    if (max_unpermuted) *max_unpermuted = unperm;
    return worst;
}

}  // namespace

class TestIo : public QObject {
    Q_OBJECT

private slots:
    // ---- dtype conversions ----
    void f16AllPatternsRoundTrip() {
        int checked = 0;
        for (uint32_t h = 0; h < 65536; ++h) {
            uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
            float f = f16_to_f32(uint16_t(h));
            if (exp == 31 && man != 0) {
                QVERIFY2(std::isnan(f), qPrintable(QString::number(h, 16)));
                QVERIFY(std::isnan(f16_to_f32(f32_to_f16(f))));
                continue;
            }
            // Independent decode: subnormal man * 2^-24, normal (1024 + man) * 2^(exp - 25).
            double want = exp == 31 ? INFINITY : exp == 0 ? std::ldexp(double(man), -24)
                                                          : std::ldexp(double(1024 + man), int(exp) - 25);
            if (h & 0x8000) want = -want;
            QVERIFY2(same_value(want, f), qPrintable(QString("f16 0x%1 -> %2, want %3").arg(h, 0, 16).arg(f).arg(want)));
            QCOMPARE(uint32_t(f32_to_f16(f)), h);
            ++checked;
        }
        QCOMPARE(checked, 65536 - 2 * 1023);
    }

    void f32ToNarrowMatchesReference() {
        std::vector<float> xs;
        Rng rng(11);
        for (int i = 0; i < 200000; ++i) xs.push_back(bits_to_f32(uint32_t(rng.next())));  // any bits
        for (int i = 0; i < 100000; ++i)  // values inside f16's range, normal and subnormal
            xs.push_back(float(std::ldexp(rng.normal(), int(rng.next() % 40) - 26)));
        // Exact ties between adjacent f16 values (both even and odd lower neighbours).
        for (uint32_t h = 0; h < 0x7bff; h += 7) {
            float a = f16_to_f32(uint16_t(h)), b = f16_to_f32(uint16_t(h + 1));
            xs.push_back(float((double(a) + double(b)) / 2));
            xs.push_back(-float((double(a) + double(b)) / 2));
        }
        // Exact bf16 ties: low 16 bits 0x8000, and just around them.
        for (int i = 0; i < 20000; ++i) {
            uint32_t u = (uint32_t(rng.next()) & 0xffff0000u) | 0x8000u;
            xs.push_back(bits_to_f32(u));
            xs.push_back(bits_to_f32(u + 1));
            xs.push_back(bits_to_f32(u - 1));
        }
        // Subnormals (f32 and f16), overflow boundaries, specials.
        for (uint32_t u = 1; u < 5000; u += 3) xs.push_back(bits_to_f32(u));
        for (float v : {65504.f, 65519.99f, 65520.f, 65536.f, 1e6f, 3.4e38f, 5.9604645e-8f, 2.9802322e-8f,
                        2.9802326e-8f, 6.1035156e-5f, 6.0975552e-5f, 0.f, -0.f, INFINITY, -INFINITY,
                        bits_to_f32(0x7f7fffff), bits_to_f32(0x7f7f8000), bits_to_f32(0x7f7f7fff)})
            xs.push_back(v), xs.push_back(-v);
        size_t nan_seen = 0;
        for (float x : xs) {
            double w16 = ref_f16(x), w16b = ref_bf16(x);
            float g16 = f16_to_f32(f32_to_f16(x)), gbf = bf16_to_f32(f32_to_bf16(x));
            if (std::isnan(x)) ++nan_seen;
            QVERIFY2(same_value(w16, g16), qPrintable(QString("f16(%1 = 0x%2) = %3, reference %4")
                                                          .arg(double(x), 0, 'g', 9).arg(uint32_t(f32_to_f16(x)), 0, 16)
                                                          .arg(double(g16), 0, 'g', 9).arg(w16, 0, 'g', 9)));
            QVERIFY2(same_value(w16b, gbf), qPrintable(QString("bf16(%1) = %2, reference %3")
                                                           .arg(double(x), 0, 'g', 9).arg(double(gbf), 0, 'g', 9)
                                                           .arg(w16b, 0, 'g', 9)));
        }
        QVERIFY(nan_seen > 100);  // random bit patterns include NaNs
        // NaN payloads that live only in the low bits must stay NaN in bf16 (not become Inf).
        for (uint32_t u : {0x7f800001u, 0xff800001u, 0x7fc00000u, 0x7f80ffffu}) {
            QVERIFY(std::isnan(bf16_to_f32(f32_to_bf16(bits_to_f32(u)))));
            QVERIFY(std::isnan(f16_to_f32(f32_to_f16(bits_to_f32(u)))));
        }
    }

    // ---- writer -> reader ----
    void writerReaderRoundTrip() {
        std::string dir = test::make_temp_dir("io-rt");
        std::string path = dir + "/out.safetensors";
        std::vector<OutTensor> layout;
        std::map<std::string, std::vector<uint8_t>> payload;
        std::map<std::string, std::vector<float>> source;
        const DType types[] = {DType::F32, DType::F16, DType::BF16};
        for (int i = 0; i < 24; ++i) {
            OutTensor t;
            t.name = "layer." + std::to_string(i) + ".weight";
            t.dtype = types[i % 3];
            t.shape = {int64_t(3 + i), int64_t(5 + (i % 4))};
            size_t n = size_t(t.shape[0] * t.shape[1]);
            t.nbytes = n * dtype_size(t.dtype);
            auto v = test::gaussian(n, 100 + uint64_t(i));
            std::vector<uint8_t> b(t.nbytes);
            from_f32(t.dtype, v.data(), b.data(), n);
            payload[t.name] = b;
            source[t.name] = v;
            layout.push_back(t);
        }
        OutTensor odd;  // an unknown dtype is copied through bit-exactly
        odd.name = "quant.codes";
        odd.dtype = DType::Unknown;
        odd.dtype_str = "Q4_MYSTERY";
        odd.shape = {7};
        odd.nbytes = 13;
        layout.push_back(odd);
        payload[odd.name] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
        OutTensor empty;
        empty.name = "empty.bias";
        empty.dtype = DType::F32;
        empty.shape = {0};
        layout.push_back(empty);
        payload[empty.name] = {};
        std::map<std::string, std::string> meta = {{"format", "pt"}, {"loftq", "test \"quoted\""}};

        {
            SafetensorsWriter w(path, layout, meta);
            QVERIFY(fs::exists(path + ".partial"));
            QVERIFY(!fs::exists(path));
            QVERIFY(w.has("quant.codes") && !w.has("nope"));
            // Out of order, from 4 threads at once.
            std::atomic<int> errors{0};
            std::vector<std::thread> pool;
            for (int th = 0; th < 4; ++th)
                pool.emplace_back([&, th] {
                    for (int i = int(layout.size()) - 1 - th; i >= 0; i -= 4) {
                        const auto& t = layout[size_t(i)];
                        try { w.write(t.name, payload[t.name].data(), payload[t.name].size()); }
                        catch (...) { ++errors; }
                    }
                });
            for (auto& t : pool) t.join();
            QCOMPARE(errors.load(), 0);
            EXPECT_ERROR(w.write(layout[0].name, payload[layout[0].name].data(), payload[layout[0].name].size()),
                         layout[0].name, "twice");
            w.commit();
            QCOMPARE(fs::file_size(path), w.total_bytes());
        }
        QVERIFY(fs::exists(path));
        QVERIFY(!fs::exists(path + ".partial"));

        // Header: length multiple of 8 (padded), size as predicted, keys in layout order.
        std::string raw = read_file(path);
        uint64_t hl = 0;
        for (int i = 7; i >= 0; --i) hl = (hl << 8) | uint8_t(raw[size_t(i)]);
        QCOMPARE(hl % 8, uint64_t(0));
        QCOMPARE(8 + hl, safetensors_header_size(layout, meta));
        std::string header = raw.substr(8, size_t(hl));
        QVERIFY(header.find("layer.0.weight") < header.find("layer.1.weight"));
        QVERIFY(header.find("layer.9.weight") < header.find("layer.10.weight"));

        auto f = SafetensorsFile::open(path);
        QCOMPARE(f->tensors().size(), layout.size());
        QCOMPARE(f->metadata(), meta);
        uint64_t prev = 0;
        for (const auto& t : f->tensors()) {
            QVERIFY(t.begin >= prev);
            prev = t.end;
        }
        for (const auto& lt : layout) {
            const TensorInfo* t = f->find(lt.name);
            QVERIFY2(t, lt.name.c_str());
            QCOMPARE(t->shape, lt.shape);
            QCOMPARE(t->dtype, lt.dtype);
            QCOMPARE(t->nbytes(), payload[lt.name].size());
            if (!payload[lt.name].empty())
                QVERIFY(std::memcmp(f->data(*t), payload[lt.name].data(), payload[lt.name].size()) == 0);
        }
        QCOMPARE(f->find("quant.codes")->dtype_str, std::string("Q4_MYSTERY"));
        QVERIFY(f->find("missing") == nullptr);

        // Through Checkpoint: fp32 values equal the narrow type's rounding of the source.
        auto ck = Checkpoint::open(path);
        QCOMPARE(ck->kind(), CheckpointKind::SafetensorsFile);
        QVERIFY(!ck->has_config_json());
        QCOMPARE(ck->size_on_disk(), uint64_t(fs::file_size(path)));
        for (const auto& lt : layout) {
            if (lt.dtype == DType::Unknown || lt.name == "empty.bias") continue;
            const TensorEntry* e = ck->find(lt.name);
            QVERIFY(e);
            auto got = ck->read_f32(*e);
            const auto& src = source[lt.name];
            for (size_t i = 0; i < got.size(); ++i) {
                float want = lt.dtype == DType::F32 ? src[i]
                             : lt.dtype == DType::F16 ? f16_to_f32(f32_to_f16(src[i]))
                                                      : bf16_to_f32(f32_to_bf16(src[i]));
                QCOMPARE(got[i], want);
            }
            QVERIFY(ck->read_bytes(*e) == payload[lt.name]);
        }
        const TensorEntry* q = ck->find("quant.codes");
        QVERIFY(q);
        QVERIFY(ck->read_bytes(*q) == payload["quant.codes"]);
        EXPECT_ERROR(ck->read_f32(*q), "quant.codes", "Q4_MYSTERY", path);
    }

    void writerZeroTensorsIsValid() {
        std::string dir = test::make_temp_dir("io-empty");
        std::string path = dir + "/empty.safetensors";
        {
            SafetensorsWriter w(path, {});
            w.commit();
        }
        auto f = SafetensorsFile::open(path);
        QCOMPARE(f->tensors().size(), size_t(0));
        QCOMPARE(f->file_size() % 8, uint64_t(0));
        // A bare "{}" header, unpadded, is also well formed.
        write_file(dir + "/bare.safetensors", raw_st("{}", ""));
        QCOMPARE(SafetensorsFile::open(dir + "/bare.safetensors")->tensors().size(), size_t(0));
        write_file(dir + "/meta.safetensors", raw_st(R"({"__metadata__":{"a":"b"}})", ""));
        QCOMPARE(SafetensorsFile::open(dir + "/meta.safetensors")->metadata().at("a"), std::string("b"));
    }

    void writerWithoutCommitLeavesNothing() {
        std::string dir = test::make_temp_dir("io-abort");
        std::string path = dir + "/abort.safetensors";
        std::vector<OutTensor> layout = {{"a", DType::F32, "", {4}, 16}, {"b", DType::BF16, "", {2, 2}, 8}};
        {
            SafetensorsWriter w(path, layout);
            float a[4] = {1, 2, 3, 4};
            w.write("a", a, 16);
            QVERIFY(fs::exists(path + ".partial"));
        }
        QVERIFY(!fs::exists(path));
        QVERIFY(!fs::exists(path + ".partial"));
        {   // finished but not committed: still removed
            SafetensorsWriter w(path, layout);
            std::vector<uint8_t> z(16, 0);
            w.write("a", z.data(), 16);
            w.write("b", z.data(), 8);
            w.finish();
        }
        QVERIFY(!fs::exists(path) && !fs::exists(path + ".partial"));
        QVERIFY(fs::is_empty(dir));
    }

    void writerFinishNamesMissingTensor() {
        std::string dir = test::make_temp_dir("io-missing");
        std::string path = dir + "/m.safetensors";
        std::vector<OutTensor> layout = {{"first.weight", DType::F32, "", {2}, 8},
                                         {"second.weight", DType::F16, "", {3}, 6},
                                         {"third.weight", DType::F32, "", {1}, 4}};
        {
            SafetensorsWriter w(path, layout);
            float v[2] = {1, 2};
            w.write("first.weight", v, 8);
            w.write("third.weight", v, 4);
            EXPECT_ERROR(w.finish(), "second.weight", path);
            EXPECT_ERROR(w.write("first.weight", v, 4), "first.weight");  // wrong size and twice
            EXPECT_ERROR(w.write("nope", v, 4), "nope");
            EXPECT_ERROR(w.write("second.weight", v, 5), "second.weight", "5");
            EXPECT_ERROR(w.commit(), "second.weight");
        }
        QVERIFY(!fs::exists(path) && !fs::exists(path + ".partial"));
        // A bad layout is refused up front, naming the tensor.
        EXPECT_ERROR(SafetensorsWriter(path, {{"x", DType::F32, "", {3}, 8}}), "x", "nbytes");
        EXPECT_ERROR(SafetensorsWriter(path, {{"x", DType::F32, "", {1}, 4}, {"x", DType::F32, "", {1}, 4}}), "x");
        EXPECT_ERROR(SafetensorsWriter(dir + "/no/such/dir/f.safetensors", {}), "no/such/dir");
    }

    // ---- sharded folders ----
    void shardedFolderOpensAndReads() {
        std::string dir = test::make_temp_dir("io-shard");
        auto v1 = test::gaussian(12, 1), v2 = test::gaussian(6, 2), v3 = test::gaussian(4, 3);
        auto put = [](const std::string& p, const std::vector<std::pair<std::string, std::vector<float>>>& ts) {
            std::vector<OutTensor> lay;
            for (const auto& [n, v] : ts) lay.push_back({n, DType::F32, "", {int64_t(v.size())}, v.size() * 4});
            SafetensorsWriter w(p, lay);
            for (const auto& [n, v] : ts) w.write(n, v.data(), v.size() * 4);
            w.commit();
        };
        put(dir + "/model-00001-of-00002.safetensors", {{"model.embed_tokens.weight", v1}, {"model.norm.weight", v3}});
        put(dir + "/model-00002-of-00002.safetensors", {{"lm_head.weight", v2}});
        write_file(dir + "/model.safetensors.index.json", R"({"metadata": {"total_size": 88}, "weight_map": {
            "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
            "model.norm.weight": "model-00001-of-00002.safetensors",
            "lm_head.weight": "model-00002-of-00002.safetensors"}})");
        write_file(dir + "/config.json", R"({"model_type": "llama", "hidden_size": 4, "num_hidden_layers": 1,
            "num_attention_heads": 2, "vocab_size": 3, "torch_dtype": "float32"})");
        write_file(dir + "/tokenizer.json", "{}");
        write_file(dir + "/generation_config.json", "{}");

        auto ck = Checkpoint::open(dir);
        QCOMPARE(ck->kind(), CheckpointKind::HFFolder);
        QCOMPARE(ck->files().size(), size_t(2));
        QCOMPARE(ck->tensors().size(), size_t(3));
        QVERIFY(ck->has_config_json());
        QCOMPARE(ck->config().hidden, 4);
        QCOMPARE(ck->config().n_kv_heads, 2);  // defaults to the head count
        QVERIFY(!ck->config().tie_word_embeddings);
        QCOMPARE(ck->hf_config_json()["vocab_size"].get<int>(), 3);
        QCOMPARE(ck->size_on_disk(), uint64_t(fs::file_size(ck->files()[0]) + fs::file_size(ck->files()[1])));
        const TensorEntry* lm = ck->find("lm_head.weight");
        QVERIFY(lm);
        QCOMPARE(ck->files()[size_t(lm->file)], dir + "/model-00002-of-00002.safetensors");
        QVERIFY(ck->read_f32(*lm) == v2);
        QVERIFY(ck->read_f32(*ck->find("model.embed_tokens.weight")) == v1);
        QVERIFY(ck->read_f32(*ck->find("model.norm.weight")) == v3);
        QVERIFY(ck->find("model.layers.0.x") == nullptr);
        auto aux = ck->aux_files();
        QCOMPARE(aux.size(), size_t(2));
        QCOMPARE(aux[0], dir + "/tokenizer.json");
        // The index file itself opens the same checkpoint.
        QCOMPARE(Checkpoint::open(dir + "/model.safetensors.index.json")->tensors().size(), size_t(3));

        // Index naming a missing shard: names the index and the shard.
        std::string idx_path = dir + "/model.safetensors.index.json";
        std::string good_index = read_file(idx_path);
        write_file(idx_path, R"({"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
            "lm_head.weight": "model-00003-of-00002.safetensors"}})");
        EXPECT_ERROR(Checkpoint::open(dir), idx_path, "model-00003-of-00002.safetensors", "lm_head.weight");
        // Index naming a tensor absent from its shard.
        write_file(idx_path, R"({"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
            "model.layers.0.mlp.up_proj.weight": "model-00002-of-00002.safetensors"}})");
        EXPECT_ERROR(Checkpoint::open(dir), idx_path, "model-00002-of-00002.safetensors",
                     "model.layers.0.mlp.up_proj.weight");
        write_file(idx_path, "{\"weight_map\": [1, 2]}");
        EXPECT_ERROR(Checkpoint::open(dir), idx_path, "weight_map");
        write_file(idx_path, "{\"weight_map\": ");
        EXPECT_ERROR(Checkpoint::open(dir), idx_path, "JSON");
        write_file(idx_path, good_index);
        QCOMPARE(Checkpoint::open(dir)->tensors().size(), size_t(3));
        // A corrupt shard is named.
        std::string shard2 = dir + "/model-00002-of-00002.safetensors";
        std::string s2 = read_file(shard2);
        write_file(shard2, s2.substr(0, s2.size() - 4));
        EXPECT_ERROR(Checkpoint::open(dir), shard2, "lm_head.weight");
    }

    void singleFileFolders() {
        std::string dir = test::make_temp_dir("io-folder");
        EXPECT_ERROR(Checkpoint::open(dir), dir, "no model");
        EXPECT_ERROR(Checkpoint::open(dir + "/nothing.safetensors"), "nothing.safetensors");
        float v[3] = {1, 2, 3};
        {
            SafetensorsWriter w(dir + "/weights.safetensors", {{"w", DType::F32, "", {3}, 12}});
            w.write("w", v, 12);
            w.commit();
        }
        auto ck = Checkpoint::open(dir + "/");  // a lone *.safetensors, no index
        QCOMPARE(ck->kind(), CheckpointKind::HFFolder);
        QCOMPARE(ck->read_f32(*ck->find("w")), std::vector<float>({1, 2, 3}));
        write_file(dir + "/config.json", "{\"model_type\": \"gpt2\", \"n_embd\": 8");
        EXPECT_ERROR(Checkpoint::open(dir + "/weights.safetensors"), dir + "/config.json", "JSON");
    }

    // ---- corrupt files ----
    void corruptFilesGiveErrors() {
        std::string dir = test::make_temp_dir("io-corrupt");
        int k = 0;
        // Writes `bytes` to a fresh file and checks that opening it (directly and as a
        // Checkpoint) throws loftq::Error naming the file and every needle.
        auto check = [&](const std::string& bytes, std::vector<std::string> needles) {
            std::string p = dir + "/bad" + std::to_string(k++) + ".safetensors";
            write_file(p, bytes);
            needles.push_back(p);
            std::string msg;
            bool ok = test::throws_error([&] { SafetensorsFile::open(p); }, needles, msg);
            if (!ok) qWarning("file %s: %s", p.c_str(), msg.c_str());
            bool ok2 = test::throws_error([&] { Checkpoint::open(p); }, needles, msg);
            if (!ok2) qWarning("checkpoint %s: %s", p.c_str(), msg.c_str());
            return ok && ok2;
        };
        const std::string d16(16, '\0');
        QVERIFY(check("", {"truncated"}));
        QVERIFY(check("\x05\x00\x00", {"truncated"}));
        QVERIFY(check(raw_st("{}", "", 4000), {"4000", "exceeds"}));                     // length past the file
        QVERIFY(check(raw_st("", "", 0), {"too small"}));                                 // length 0
        QVERIFY(check(raw_st("{", "", 1), {"too small"}));                                // length 1 (< 2)
        QVERIFY(check(le64(200ull * 1000 * 1000) + std::string(64, ' '), {"exceeds"}));
        {   // header length inside the file but above 100 MB (a sparse file: no disk used)
            std::string p = dir + "/huge.safetensors";
            write_file(p, le64(100ull * 1000 * 1000 + 8));
            fs::resize_file(p, 100ull * 1000 * 1000 + 64);
            EXPECT_ERROR(SafetensorsFile::open(p), p, "100 MB");
        }
        QVERIFY(check(raw_st(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]})", d16), {"JSON"}));
        QVERIFY(check(raw_st("[1, 2, 3]", ""), {"array"}));
        QVERIFY(check(raw_st(R"({"w": 5})", d16), {"'w'"}));
        QVERIFY(check(raw_st(R"({"w": {"shape": [4], "data_offsets": [0, 16]}})", d16), {"'w'", "dtype"}));
        QVERIFY(check(raw_st(R"({"w": {"dtype": "F32", "data_offsets": [0, 16]}})", d16), {"'w'", "shape"}));
        QVERIFY(check(raw_st(R"({"w": {"dtype": "F32", "shape": [4]}})", d16), {"'w'", "data_offsets"}));
        QVERIFY(check(raw_st(R"({"w": {"dtype": 7, "shape": [4], "data_offsets": [0, 16]}})", d16), {"'w'", "dtype"}));
        QVERIFY(check(raw_st(R"({"w": {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}})", d16), {"'w'", "shape"}));
        QVERIFY(check(raw_st(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0]}})", d16), {"'w'", "data_offsets"}));
        QVERIFY(check(raw_st(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": ["0", 16]}})", d16), {"'w'"}));
        QVERIFY(check(raw_st(R"({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}})", d16), {"'w'", "negative"}));
        QVERIFY(check(raw_st(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}})", d16), {"'w'", "begin"}));
        QVERIFY(check(raw_st(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 32]}})", d16 + d16 ), {"'w'", "32", "16"}));
        QVERIFY(check(raw_st(R"({"w": {"dtype": "F16", "shape": [4], "data_offsets": [0, 16]}})", d16), {"'w'", "needs 8"}));
        QVERIFY(check(raw_st(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})", d16), {"'w'", "out of bounds"}));
        QVERIFY(check(raw_st(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                 "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})", d16),
                      {"overlap", "'a'", "'b'"}));
        QVERIFY(check(raw_st(R"({"__metadata__": {"k": 1}})", ""), {"__metadata__"}));
        QVERIFY(check(raw_st(R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 8], "data_offsets": [0, 16]}})", d16),
                      {"'w'"}));
        // Truncated data: a valid file with its tail cut off.
        std::string good = dir + "/good.safetensors";
        std::vector<float> v(64, 1.f);
        {
            SafetensorsWriter w(good, {{"x.weight", DType::F32, "", {8, 8}, 256}});
            w.write("x.weight", v.data(), 256);
            w.commit();
        }
        std::string bytes = read_file(good);
        QVERIFY(SafetensorsFile::open(good)->find("x.weight"));
        QVERIFY(check(bytes.substr(0, bytes.size() - 1), {"x.weight", "out of bounds"}));
        QVERIFY(check(bytes.substr(0, 40), {"exceeds"}));
        // Unknown dtypes are not a size error; gaps between tensors are allowed.
        write_file(dir + "/unk.safetensors",
                   raw_st(R"({"q": {"dtype": "Q3_K", "shape": [100], "data_offsets": [0, 5]},
                              "w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})", d16));
        auto f = SafetensorsFile::open(dir + "/unk.safetensors");
        QCOMPARE(f->find("q")->dtype, DType::Unknown);
        QCOMPARE(f->tensors()[0].name, std::string("q"));  // sorted by offset
    }

    void nonFiniteWeightsAreNamed() {
        std::string dir = test::make_temp_dir("io-nan");
        std::vector<float> v = test::gaussian(20, 5);
        v[7] = NAN;
        v[13] = INFINITY;
        v[19] = -INFINITY;
        std::vector<uint16_t> h(20), b(20);
        from_f32(DType::F16, v.data(), h.data(), 20);
        from_f32(DType::BF16, v.data(), b.data(), 20);
        {
            SafetensorsWriter w(dir + "/model.safetensors",
                                {{"bad.f32", DType::F32, "", {4, 5}, 80}, {"bad.f16", DType::F16, "", {20}, 40},
                                 {"bad.bf16", DType::BF16, "", {20}, 40}});
            w.write("bad.f32", v.data(), 80);
            w.write("bad.f16", h.data(), 40);
            w.write("bad.bf16", b.data(), 40);
            w.commit();
        }
        auto ck = Checkpoint::open(dir);
        for (const char* n : {"bad.f32", "bad.f16", "bad.bf16"})
            EXPECT_ERROR(ck->read_f32(*ck->find(n)), n, "index 7", "3 non-finite", dir + "/model.safetensors");
        EXPECT_ERROR(ck->read_f32(*ck->find("bad.f32")), "row 1, col 2");
        auto raw = ck->read_f32(*ck->find("bad.f32"), false);
        QVERIFY(std::isnan(raw[7]) && std::isinf(raw[13]));
        QCOMPARE(raw[0], v[0]);
    }

    // ---- config.json ----
    // Hostile JSON (issue: a deeply nested value crashed by stack overflow when a message quoted
    // it; a repeated tensor name was silently resolved): each is one clear error naming the file
    // (and the key), fast, at every place we parse JSON from outside.
    void hostileJsonIsRefused() {
        std::string dir = test::make_temp_dir("io-hostile");
        const std::string deep = std::string(200000, '[') + std::string(200000, ']');
        QElapsedTimer t;
        t.start();
        {
            std::string p = dir + "/deep.safetensors";
            write_file(p, raw_st(R"({"w": {"dtype": "F32", "shape": )" + deep + R"(, "data_offsets": [0, 16]}})", std::string(16, '\0')));
            EXPECT_ERROR(SafetensorsFile::open(p), p, "header", "nested more than 64");
            EXPECT_ERROR(Checkpoint::open(p), p, "nested");
        }
        {   // nesting just within the limit still parses (and is refused for what it is)
            std::string p = dir + "/deep63.safetensors";
            const std::string ok = std::string(62, '[') + std::string(62, ']');
            write_file(p, raw_st(R"({"w": {"dtype": "F32", "shape": )" + ok + R"(, "data_offsets": [0, 16]}})", std::string(16, '\0')));
            EXPECT_ERROR(SafetensorsFile::open(p), p, "'w'", "shape");
        }
        {   // a tensor named twice
            std::string p = dir + "/dup.safetensors";
            write_file(p, raw_st(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},)"
                                 R"( "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                                 std::string(16, '\0')));
            EXPECT_ERROR(SafetensorsFile::open(p), p, "key 'w' appears twice");
        }
        {   // config.json and the shard index of a folder
            std::string m = dir + "/model";
            fs::create_directories(m);
            write_file(m + "/model.safetensors", raw_st(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", std::string(16, '\0')));
            write_file(m + "/config.json", R"({"model_type": "llama", "x": )" + deep + "}");
            EXPECT_ERROR(Checkpoint::open(m), m + "/config.json", "nested");
            write_file(m + "/config.json", R"({"model_type": "llama", "model_type": "gpt2"})");
            EXPECT_ERROR(Checkpoint::open(m), m + "/config.json", "'model_type' appears twice");
        }
        QVERIFY2(t.elapsed() < 5000, qPrintable(QString::number(t.elapsed())));  // a ceiling against a hang
    }

    void configParsing() {
        std::string dir = test::make_temp_dir("io-config");
        std::string p = dir + "/config.json";
        write_file(p, R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
            "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 4096,
            "rope_theta": 500000.0, "rms_norm_eps": 1e-06, "torch_dtype": "bfloat16"})");
        ModelConfig c = read_model_config(p);
        QCOMPARE(c.model_type, std::string("llama"));
        QCOMPARE(c.hidden, 4096);
        QCOMPARE(c.intermediate, 11008);
        QCOMPARE(c.n_layers, 32);
        QCOMPARE(c.n_heads, 32);
        QCOMPARE(c.n_kv_heads, 8);
        QCOMPARE(c.vocab, 32000);
        QCOMPARE(c.max_position, 4096);
        QCOMPARE(c.rope_theta, 500000.0);
        QCOMPARE(c.rms_norm_eps, 1e-6);
        QCOMPARE(c.torch_dtype, std::string("bfloat16"));
        QVERIFY(!c.tie_word_embeddings);
        QCOMPARE(c.raw["architectures"][0].get<std::string>(), std::string("LlamaForCausalLM"));

        write_file(p, R"({"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": null,
            "vocab_size": 50257, "n_positions": 1024, "layer_norm_epsilon": 1e-05})");
        c = read_model_config(p);
        QCOMPARE(c.hidden, 768);
        QCOMPARE(c.n_layers, 12);
        QCOMPARE(c.n_heads, 12);
        QCOMPARE(c.n_kv_heads, 12);
        QCOMPARE(c.intermediate, 4 * 768);
        QCOMPARE(c.max_position, 1024);
        QVERIFY(c.tie_word_embeddings);

        write_file(p, R"({"model_type": "qwen2", "hidden_size": 896, "tie_word_embeddings": true,
            "num_key_value_heads": 2, "num_attention_heads": 14})");
        c = read_model_config(p);
        QVERIFY(c.tie_word_embeddings);
        QCOMPARE(c.n_kv_heads, 2);

        write_file(p, R"({"model_type": "llama", "hidden_size": )");
        EXPECT_ERROR(read_model_config(p), p, "JSON");
        write_file(p, R"([1, 2])");
        EXPECT_ERROR(read_model_config(p), p, "object");
        write_file(p, R"({"model_type": "llama", "hidden_size": "4096"})");
        EXPECT_ERROR(read_model_config(p), p, "hidden_size");
        write_file(p, R"({"model_type": "llama", "tie_word_embeddings": "yes"})");
        EXPECT_ERROR(read_model_config(p), p, "tie_word_embeddings");
        write_file(p, R"({"model_type": 3})");
        EXPECT_ERROR(read_model_config(p), p, "model_type");
        EXPECT_ERROR(read_model_config(dir + "/absent.json"), dir + "/absent.json");
    }

    // ---- llama2.c ----
    void llama2cTiedAndUntied() {
        for (bool tied : {true, false}) {
            std::string dir = test::make_temp_dir("io-l2c");
            L2cDims d;
            d.tied = tied;
            L2cLayout lay(d);
            std::string path = dir + "/model.bin";
            auto w = write_llama2c(path, d, tied ? 21 : 22);
            write_file(dir + "/tok32.bin", "x");
            write_file(dir + "/tokenizer.bin", "x");
            auto ck = Checkpoint::open(path);
            QCOMPARE(ck->kind(), CheckpointKind::Llama2c);
            QVERIFY(!ck->has_config_json());
            const ModelConfig& c = ck->config();
            QCOMPARE(c.model_type, std::string("llama"));
            QCOMPARE(c.hidden, d.dim);
            QCOMPARE(c.intermediate, d.hidden);
            QCOMPARE(c.n_layers, d.layers);
            QCOMPARE(c.n_heads, d.heads);
            QCOMPARE(c.n_kv_heads, d.kv_heads);
            QCOMPARE(c.vocab, d.vocab);
            QCOMPARE(c.max_position, d.seq_len);
            QCOMPARE(c.tie_word_embeddings, tied);
            QCOMPARE(ck->tensors().size(), size_t(2 + 9 * d.layers + (tied ? 0 : 1)));
            QCOMPARE(ck->size_on_disk(), uint64_t(28 + 4 * lay.total));
            QCOMPARE(ck->find("lm_head.weight") != nullptr, !tied);
            auto hf = ck->hf_config_json();
            QCOMPARE(hf["architectures"][0].get<std::string>(), std::string("LlamaForCausalLM"));
            QCOMPARE(hf["hidden_size"].get<int>(), d.dim);
            QCOMPARE(hf["num_key_value_heads"].get<int>(), d.kv_heads);
            QCOMPARE(hf["tie_word_embeddings"].get<bool>(), tied);
            QCOMPARE(hf["hidden_act"].get<std::string>(), std::string("silu"));
            QCOMPARE(hf["rope_theta"].get<double>(), 10000.0);
            auto aux = ck->aux_files();
            QCOMPARE(aux, std::vector<std::string>({dir + "/tok32.bin", dir + "/tokenizer.bin"}));
            // The folder opens the same model (tokenizer .bin files are not mistaken for it).
            QCOMPARE(Checkpoint::open(dir)->tensors().size(), ck->tensors().size());

            const int D = d.dim, H = d.hidden, KV = d.kv_dim(), hd = d.hd();
            // Straight-mapped tensors: (name, float offset, shape).
            struct Straight { std::string name; size_t off; std::vector<int64_t> shape; };
            std::vector<Straight> straight = {{"model.embed_tokens.weight", lay.emb, {d.vocab, D}},
                                              {"model.norm.weight", lay.rms_final, {D}}};
            if (!tied) straight.push_back({"lm_head.weight", lay.wcls, {d.vocab, D}});
            for (int l = 0; l < d.layers; ++l) {
                std::string p = "model.layers." + std::to_string(l) + ".";
                size_t L = size_t(l);
                straight.push_back({p + "input_layernorm.weight", lay.rms_att + L * D, {D}});
                straight.push_back({p + "post_attention_layernorm.weight", lay.rms_ffn + L * D, {D}});
                straight.push_back({p + "self_attn.v_proj.weight", lay.wv + L * KV * D, {KV, D}});
                straight.push_back({p + "self_attn.o_proj.weight", lay.wo + L * D * D, {D, D}});
                straight.push_back({p + "mlp.gate_proj.weight", lay.w1 + L * H * D, {H, D}});
                straight.push_back({p + "mlp.down_proj.weight", lay.w2 + L * D * H, {D, H}});
                straight.push_back({p + "mlp.up_proj.weight", lay.w3 + L * H * D, {H, D}});
            }
            for (const auto& s : straight) {
                const TensorEntry* e = ck->find(s.name);
                QVERIFY2(e, s.name.c_str());
                QCOMPARE(e->shape, s.shape);
                QCOMPARE(e->dtype, DType::F32);
                QCOMPARE(e->rope_permute_heads, 0);
                auto got = ck->read_f32(*e);
                QVERIFY2(std::memcmp(got.data(), w.data() + s.off, got.size() * 4) == 0, s.name.c_str());
            }
            // q/k: HF rows (h, half, i) come from llama2.c rows (h, i, half).
            for (int l = 0; l < d.layers; ++l) {
                std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
                for (int which = 0; which < 2; ++which) {
                    const TensorEntry* e = ck->find(p + (which == 0 ? "q_proj.weight" : "k_proj.weight"));
                    QVERIFY(e);
                    int heads = which == 0 ? d.heads : d.kv_heads;
                    QCOMPARE(e->rope_permute_heads, heads);
                    QCOMPARE(e->shape, std::vector<int64_t>({int64_t(heads * hd), int64_t(D)}));
                    const float* src = w.data() + (which == 0 ? lay.wq + size_t(l) * D * D : lay.wk + size_t(l) * KV * D);
                    auto got = ck->read_f32(*e);
                    auto bytes = ck->read_bytes(*e);
                    QVERIFY(std::memcmp(bytes.data(), got.data(), bytes.size()) == 0);
                    for (int h = 0; h < heads; ++h)
                        for (int half = 0; half < 2; ++half)
                            for (int i = 0; i < hd / 2; ++i) {
                                int out_row = h * hd + half * (hd / 2) + i, in_row = h * hd + 2 * i + half;
                                QVERIFY(std::memcmp(got.data() + size_t(out_row) * D, src + size_t(in_row) * D, 4 * size_t(D)) == 0);
                            }
                }
            }
            // Exact size: one byte short or long is refused, saying both sizes.
            std::string bad = dir + "/short.bin";
            write_llama2c(bad, d, 1, -1);
            EXPECT_ERROR(Checkpoint::open(bad), bad, std::to_string(28 + 4 * lay.total), std::to_string(27 + 4 * lay.total));
            write_llama2c(bad, d, 1, 4);
            EXPECT_ERROR(Checkpoint::open(bad), bad, std::to_string(28 + 4 * lay.total), std::to_string(32 + 4 * lay.total));
        }
    }

    void llama2cRopePermutationIsExact() {
        // Attention logits with llama2.c's interleaved RoPE on the original weights equal those
        // with HF's rotate_half RoPE on the presented (permuted) weights; unpermuted ones do not.
        for (auto [dim, heads, kv] : {std::tuple{24, 4, 2}, std::tuple{32, 4, 4}, std::tuple{48, 6, 3}}) {
            std::string dir = test::make_temp_dir("io-rope");
            L2cDims d;
            d.dim = dim;
            d.heads = heads;
            d.kv_heads = kv;
            L2cLayout lay(d);
            auto w = write_llama2c(dir + "/m.bin", d, uint64_t(dim * 7 + heads));
            auto ck = Checkpoint::open(dir + "/m.bin");
            for (int l = 0; l < d.layers; ++l) {
                std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
                auto wq = ck->read_f32(*ck->find(p + "q_proj.weight"));
                auto wk = ck->read_f32(*ck->find(p + "k_proj.weight"));
                double unperm = 0;
                double err = rope_equivalence(w.data() + lay.wq + size_t(l) * dim * dim,
                                              w.data() + lay.wk + size_t(l) * d.kv_dim() * dim, wq, wk, dim, heads, kv,
                                              uint64_t(l + 1), &unperm);
                QVERIFY2(err < 1e-9, qPrintable(QString("dim %1 layer %2: rel diff %3").arg(dim).arg(l).arg(err)));
                QVERIFY2(unperm > 1e-3, qPrintable(QString("unpermuted weights agree too (%1)").arg(unperm)));
            }
        }
    }

    void llama2cBadHeaders() {
        std::string dir = test::make_temp_dir("io-l2c-bad");
        auto header_only = [&](const std::string& name, std::vector<int32_t> h) {
            std::string p = dir + "/" + name;
            std::string bytes(reinterpret_cast<const char*>(h.data()), h.size() * 4);
            bytes.append(4096, '\0');
            write_file(p, bytes);
            return p;
        };
        std::string p = header_only("a.bin", {24, 40, 2, 5, 1, 32, 8});
        EXPECT_ERROR(Checkpoint::open(p), p, "n_heads");
        p = header_only("b.bin", {24, 40, 2, 4, 3, 32, 8});
        EXPECT_ERROR(Checkpoint::open(p), p, "n_kv_heads");
        p = header_only("c.bin", {24, -40, 2, 4, 2, 32, 8});
        EXPECT_ERROR(Checkpoint::open(p), p, "hidden_dim=-40");
        p = header_only("d.bin", {0x40000000, 0x7fffffff, 0x7fffffff, 1, 1, 0x7fffffff, 0x7fffffff});
        EXPECT_ERROR(Checkpoint::open(p), p, "bytes");
        p = dir + "/e.bin";
        write_file(p, "tiny");
        EXPECT_ERROR(Checkpoint::open(p), p, "28");
        p = dir + "/f.bin";
        write_file(p, std::string("24ka") + std::string(300, '\0'));
        EXPECT_ERROR(Checkpoint::open(p), p, "ak42");
    }

    // ---- the real model ----
    void stories260K() {
        std::string shared = test::shared_dir();
        if (shared.empty()) QSKIP("../shared not found (set LOFTQ_SHARED_DIR or run beside ../shared): real stories260K model not tested");
        std::string path = shared + "/models/stories260K/stories260K.bin";
        if (!fs::exists(path)) QSKIP("../shared/models/stories260K/stories260K.bin absent");
        auto ck = Checkpoint::open(path);
        const ModelConfig& c = ck->config();
        QCOMPARE(c.hidden, 64);
        QCOMPARE(c.intermediate, 172);
        QCOMPARE(c.n_layers, 5);
        QCOMPARE(c.n_heads, 8);
        QCOMPARE(c.n_kv_heads, 4);
        QCOMPARE(c.vocab, 512);
        QCOMPARE(c.max_position, 512);
        QVERIFY(c.tie_word_embeddings);
        QCOMPARE(ck->size_on_disk(), uint64_t(1056540));
        QCOMPARE(ck->tensors().size(), size_t(2 + 9 * 5));  // embed + norm + 9 per layer, tied: no lm_head
        QVERIFY(ck->find("lm_head.weight") == nullptr);
        QCOMPARE(ck->find("model.layers.4.self_attn.k_proj.weight")->shape, std::vector<int64_t>({32, 64}));
        QCOMPARE(ck->find("model.layers.0.mlp.down_proj.weight")->shape, std::vector<int64_t>({64, 172}));
        size_t total = 0;
        double norm_mean = 0;
        for (const auto& t : ck->tensors()) {
            auto v = ck->read_f32(t, true);  // throws on NaN/Inf
            total += v.size();
            if (t.name == "model.norm.weight")
                for (float x : v) norm_mean += x / 64.0;
        }
        QCOMPARE(total, size_t((1056540 - 28) / 4 - 512 * 4 * 2));  // all but the RoPE tables
        qInfo("stories260K: %zu tensors, %zu weights, final norm mean %.4f", ck->tensors().size(), total, norm_mean);
        auto aux = ck->aux_files();
        bool has_tok = false;
        for (const auto& a : aux) has_tok |= fs::path(a).filename() == "tok512.bin";
        QVERIFY(has_tok);
        // The permutation on the real weights: layer 0 logits agree across conventions.
        std::string raw = read_file(path);
        const float* f = reinterpret_cast<const float*>(raw.data() + 28);
        size_t wq0 = 512 * 64 + 5 * 64, wk0 = wq0 + 5 * 64 * 64;
        auto wq = ck->read_f32(*ck->find("model.layers.0.self_attn.q_proj.weight"));
        auto wk = ck->read_f32(*ck->find("model.layers.0.self_attn.k_proj.weight"));
        double unperm = 0;
        double err = rope_equivalence(f + wq0, f + wk0, wq, wk, 64, 8, 4, 99, &unperm);
        QVERIFY2(err < 1e-9, qPrintable(QString::number(err)));
        QVERIFY(unperm > 1e-3);
        QCOMPARE(ck->hf_config_json()["vocab_size"].get<int>(), 512);
    }
};

QTEST_APPLESS_MAIN(TestIo)
#include "test_io.moc"
