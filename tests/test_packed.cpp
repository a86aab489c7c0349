// test_packed.cpp: the packed LoftQ safetensors export (export/packed.h), its reader
// (packed_reader.h) and `unpack` (export/unpack.h): for every quantizer and several block sizes on odd
// shapes, the stored codes/scales equal the quantizer's, the dequantized weight equals the HF
// export's Q bit for bit, and unpack reproduces the HF export byte for byte; mixed precision and
// shards in one export; double quantization (smaller, small added error, reported); target bytes
// equal the budget's prediction exactly; corrupt files give loftq::Error naming file and tensor.
#include <QtTest>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "core/error.h"
#include "core/fsutil.h"
#include "expect_error.h"
#include "io/checkpoint.h"
#include "io/packed_reader.h"
#include "io/safetensors.h"
#include "io/synthetic_model.h"
#include "loftq/budget.h"
#include "loftq/decompose.h"
#include "export/footprint.h"
#include "export/quantize.h"
#include "export/unpack.h"
#include "export/verify.h"
#include "test_support.h"

using namespace loftq;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
SyntheticSpec small(DType dt = DType::F32) {
    SyntheticSpec s;
    s.layers = 2; s.hidden = 64; s.intermediate = 160; s.heads = 4; s.kv_heads = 2; s.vocab = 96; s.dtype = dt;
    return s;
}
std::string synthetic(const std::string& tag, SyntheticSpec s = small()) {
    std::string d = test::make_temp_dir(tag) + "/model";
    write_synthetic_model(d, s);
    return d;
}
// A model folder (synthetic config + tokenizer files) whose weights are odd-shaped: two targets
// (37 x 53 attention, 29 x 100 MLP: numel not a multiple of any block tried; in target_dtype)
// and two non-targets (a norm in F32, an embedding in BF16).
std::string odd_model(const std::string& tag, DType target_dtype = DType::F32) {
    std::string d = synthetic(tag);
    fs::remove(d + "/model.safetensors");
    struct T { std::string name; DType dt; std::vector<int64_t> shape; };
    std::vector<T> ts = {{"model.embed_tokens.weight", DType::BF16, {11, 53}},
                         {"model.layers.0.input_layernorm.weight", DType::F32, {53}},
                         {"model.layers.0.self_attn.q_proj.weight", target_dtype, {37, 53}},
                         {"model.layers.0.mlp.up_proj.weight", target_dtype, {29, 100}}};
    std::vector<OutTensor> layout;
    for (auto& t : ts) {
        uint64_t n = 1;
        for (auto x : t.shape) n *= uint64_t(x);
        layout.push_back({t.name, t.dt, "", t.shape, n * dtype_size(t.dt)});
    }
    SafetensorsWriter w(d + "/model.safetensors", layout, {{"format", "pt"}});
    uint64_t seed = 7;
    for (auto& t : ts) {
        Matrix m = t.shape.size() == 2 ? test::structured_matrix(t.shape[0], t.shape[1], seed++) : Matrix(1, t.shape[0], 1.f);
        std::vector<uint8_t> bytes(m.size() * dtype_size(t.dt));
        from_f32(t.dt, m.data(), bytes.data(), m.size());
        w.write(t.name, bytes.data(), bytes.size());
    }
    w.finish();
    w.commit();
    return d;
}
QuantizeOptions opts(const std::string& model, const std::string& out, ExportFormat format) {
    QuantizeOptions o;
    o.model = model;
    o.out_dir = out;
    o.format = format;
    o.plan.defaults.rank = 4;
    o.plan.defaults.iters = 2;
    o.threads = 2;
    o.checksums = false;
    return o;
}
void compare_files(const std::string& a, const std::string& b) {
    QVERIFY2(fs::exists(a) && fs::exists(b), (a + " / " + b).c_str());
    QVERIFY2(test::file_bytes(a) == test::file_bytes(b), ("differ: " + a + " vs " + b).c_str());
}
// Rewrites one safetensors file with edited tensors / metadata (a corruption under test).
struct Edit {
    std::vector<OutTensor> layout;
    std::map<std::string, std::vector<uint8_t>> data;
    std::map<std::string, std::string> meta;
};
void rewrite(const std::string& path, const std::function<void(Edit&)>& fn) {
    Edit e;
    {
        auto f = SafetensorsFile::open(path);
        e.meta = f->metadata();
        for (auto& t : f->tensors()) {
            e.layout.push_back({t.name, t.dtype, t.dtype_str, t.shape, t.nbytes()});
            e.data[t.name].assign(f->data(t), f->data(t) + t.nbytes());
        }
    }
    fn(e);
    fs::remove(path);
    SafetensorsWriter w(path, e.layout, e.meta);
    for (auto& t : e.layout) w.write(t.name, e.data[t.name].data(), e.data[t.name].size());
    w.finish();
    w.commit();
}
void copy_tree(const std::string& from, const std::string& to) {
    fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}
}  // namespace

class TestPacked : public QObject {
    Q_OBJECT
private slots:
    // Every quantizer x block on odd shapes: codes/scales as the quantizer computes them, the
    // dequantized weight == the HF export's Q bit for bit, unpack == the HF export byte for byte.
    void roundTripEveryQuantizerAndBlock() {
        std::string m = odd_model("pk-odd");
        auto src = Checkpoint::open(m);
        for (QuantKind k : all_quant_kinds())
            for (int block : {32, 64, 100, 256}) {
                const QuantFormat& f = quant_format(k);
                const std::string tag = std::string(f.name) + "-b" + std::to_string(block);
                std::string base = test::make_temp_dir("pk-" + tag);
                QuantizeOptions po = opts(m, base + "/packed", ExportFormat::Packed), ho = opts(m, base + "/hf", ExportFormat::Hf);
                for (QuantizeOptions* o : {&po, &ho}) { o->plan.defaults.quant = k; o->plan.defaults.block = block; }
                QuantizeResult pr = run_quantize(po, {}, CancelToken{});
                run_quantize(ho, {}, CancelToken{});
                QCOMPARE(pr.weights.size(), size_t(2));

                auto rd = PackedReader::open(base + "/packed");
                QCOMPARE(rd->weights().size(), size_t(2));
                auto hf = Checkpoint::open(base + "/hf");
                uint64_t stored = 0;
                for (const PackedWeight& w : rd->weights()) {
                    QCOMPARE(w.quant, k);
                    QCOMPARE(w.block, block);
                    QCOMPARE(w.dtype, DType::F32);
                    const TensorEntry* st = src->find(w.name);
                    QVERIFY(st && w.rows == st->shape[0] && w.cols == st->shape[1]);
                    WeightSettings s;
                    s.quant = k; s.block = block; s.rank = 4; s.iters = 2;
                    // The stored codes/scales must reproduce the stored Q; the stored Q must be the HF Q.
                    std::vector<uint8_t> codes = rd->codes(w);
                    std::vector<float> scales = rd->scales(w);
                    QCOMPARE(codes.size(), w.numel());
                    QCOMPARE(scales.size(), num_blocks(w.numel(), block));
                    std::vector<float> Q = rd->dequantize(w), Qhf = hf->read_f32(*hf->find(w.name));
                    QCOMPARE(Q.size(), Qhf.size());
                    for (size_t i = 0; i < Q.size(); ++i)
                        if (test::float_bits(Q[i]) != test::float_bits(Qhf[i]))
                            QFAIL(qPrintable(QString("%1 %2: element %3: packed %4 vs hf %5").arg(tag.c_str(), w.name.c_str()).arg(i).arg(Q[i]).arg(Qhf[i])));
                    stored += rd->stored_bytes(w);
                    QCOMPARE(rd->stored_bytes(w), quantized_weight_bytes(w.rows, w.cols, s));
                }
                QCOMPARE(stored, pr.size.quantized_bytes);

                std::string un = base + "/unpacked";
                unpack_packed(base + "/packed", un, false);
                compare_files(un + "/model.safetensors", base + "/hf/model.safetensors");
                compare_files(un + "/loftq_init/adapter_model.safetensors", base + "/hf/loftq_init/adapter_model.safetensors");
                compare_files(base + "/packed/loftq_init/adapter_model.safetensors", base + "/hf/loftq_init/adapter_model.safetensors");
                json ac = json::parse(read_text_file(un + "/loftq_init/adapter_config.json"));
                QCOMPARE(ac["base_model_name_or_path"].get<std::string>(), fs::absolute(un).lexically_normal().string());
                for (auto fn : {"config.json", "loftq_metrics.json", "tokenizer_config.json"}) QVERIFY2(fs::exists(un + "/" + fn), fn);
            }
    }

    // BF16 and F16 sources (every real LLM): the packed export records the source dtype, its
    // dequantized Q rounded to that dtype is the HF export's stored Q bit for bit, and unpack
    // gives the HF export byte for byte.
    void roundTripHalfSources_data() {
        QTest::addColumn<int>("dtype");
        QTest::addColumn<int>("quant");
        QTest::addColumn<int>("block");
        for (DType dt : {DType::BF16, DType::F16}) {
            const char* dn = dt == DType::BF16 ? "bf16" : "f16";
            QTest::newRow(qPrintable(QString("%1 nf4 b64").arg(dn))) << int(dt) << int(QuantKind::NF4) << 64;
            QTest::newRow(qPrintable(QString("%1 nf2 b100").arg(dn))) << int(dt) << int(QuantKind::NF2) << 100;
            QTest::newRow(qPrintable(QString("%1 nf3 b32").arg(dn))) << int(dt) << int(QuantKind::NF3) << 32;
            QTest::newRow(qPrintable(QString("%1 int8 b256").arg(dn))) << int(dt) << int(QuantKind::INT8) << 256;
        }
    }
    void roundTripHalfSources() {
        QFETCH(int, dtype);
        QFETCH(int, quant);
        QFETCH(int, block);
        const DType dt = DType(dtype);
        const std::string m = odd_model("pk-half", dt);
        const std::string base = test::make_temp_dir("pk-half-out");
        QuantizeOptions po = opts(m, base + "/packed", ExportFormat::Packed), ho = opts(m, base + "/hf", ExportFormat::Hf);
        for (QuantizeOptions* o : {&po, &ho}) { o->plan.defaults.quant = QuantKind(quant); o->plan.defaults.block = block; }
        run_quantize(po, {}, CancelToken{});
        run_quantize(ho, {}, CancelToken{});
        auto rd = PackedReader::open(base + "/packed");
        auto hf = SafetensorsFile::open(base + "/hf/model.safetensors");
        QCOMPARE(rd->weights().size(), size_t(2));
        for (const PackedWeight& w : rd->weights()) {
            QCOMPARE(w.dtype, dt);
            const std::vector<float> Q = rd->dequantize(w);
            std::vector<uint8_t> rounded(Q.size() * 2);
            from_f32(dt, Q.data(), rounded.data(), Q.size());
            const TensorInfo* h = hf->find(w.name);
            QVERIFY(h && h->dtype == dt && h->nbytes() == rounded.size());
            QVERIFY2(std::memcmp(rounded.data(), hf->data(*h), rounded.size()) == 0, w.name.c_str());
        }
        const std::string un = base + "/unpacked";
        unpack_packed(base + "/packed", un, false);
        compare_files(un + "/model.safetensors", base + "/hf/model.safetensors");
        compare_files(un + "/loftq_init/adapter_model.safetensors", base + "/hf/loftq_init/adapter_model.safetensors");
    }

    // T = 1: Q_1 = deq(q(W)), so the stored codes and scales must be exactly the decomposition's.
    void codesAndScalesEqualDecomposition() {
        std::string m = odd_model("pk-dec");
        auto src = Checkpoint::open(m);
        for (QuantKind k : all_quant_kinds()) {
            std::string out = test::make_temp_dir("pk-dec-out") + "/p";
            QuantizeOptions o = opts(m, out, ExportFormat::Packed);
            o.plan.defaults.quant = k;
            o.plan.defaults.block = 100;
            o.plan.defaults.iters = 1;
            run_quantize(o, {}, CancelToken{});
            auto rd = PackedReader::open(out);
            for (const PackedWeight& w : rd->weights()) {
                std::vector<float> W = src->read_f32(*src->find(w.name));
                WeightSettings s;
                s.quant = k; s.block = 100; s.rank = 4; s.iters = 1;
                SvdOptions so;
                so.seed = weight_seed(0, w.name, 0);
                Decomposition d = loftq_decompose(W.data(), w.rows, w.cols, s, so);
                const std::vector<uint8_t> codes = rd->codes(w);
                QVERIFY2(std::equal(codes.begin(), codes.end(), d.codes.begin(), d.codes.end()), quant_format(k).name);
                std::vector<float> sc = rd->scales(w);
                QCOMPARE(sc.size(), d.scales.size());
                QVERIFY(std::memcmp(sc.data(), d.scales.data(), sc.size() * 4) == 0);
                std::vector<float> Q = rd->dequantize(w);
                QVERIFY(std::memcmp(Q.data(), d.Q.data(), Q.size() * 4) == 0);
            }
        }
    }

    // Mixed precision in one (sharded) export; unpack reproduces the HF shards and index.
    // export_footprint (what the budget bar and the export dialog say the folder takes) against
    // the folders the three exporters write: tensor payloads to the byte, headers estimated
    // within 1% of the whole (or 2 KB on this tiny model).
    void exportFootprintMatchesTheFolder() {
        std::string m = synthetic("pk-foot", small(DType::BF16));
        std::string base = test::make_temp_dir("pk-foot-out");
        auto ck = Checkpoint::open(m);
        const std::vector<TensorMeta> metas = tensor_metas(*ck);
        for (const auto& [fmt, format] : kExportFormatNames) {
            QuantizeOptions o = opts(m, base + "/" + format, fmt);
            if (fmt != ExportFormat::BnbNf4) {
                o.plan.rules.push_back({"*.mlp.*", false, {}, {}, {.quant = QuantKind::NF2, .block = 32, .rank = 8}});
                o.plan.overrides["model.layers.0.self_attn.v_proj.weight"] = {.target = false};
            }
            QuantizeResult r = run_quantize(o, {}, CancelToken{});
            const ExportFootprint f = export_footprint(r.plan, metas, fmt);
            uint64_t payload = 0, header = 0;
            for (const auto& e : fs::recursive_directory_iterator(base + "/" + format)) {
                if (e.path().extension() != ".safetensors") continue;
                auto st = SafetensorsFile::open(e.path().string());
                uint64_t p = 0;
                for (const auto& t : st->tensors()) p += t.nbytes();
                payload += p;
                header += fs::file_size(e.path()) - p;
            }
            const uint64_t disk = payload + header;
            qInfo("%s: footprint %llu (payload %llu + headers ~%llu), on disk %llu (payload %llu + headers %llu); plan_size %llu",
                  format, (unsigned long long)f.total(), (unsigned long long)(f.model_bytes + f.adapter_bytes),
                  (unsigned long long)f.header_bytes, (unsigned long long)disk, (unsigned long long)payload,
                  (unsigned long long)header, (unsigned long long)r.size.total_bytes);
            QCOMPARE(f.model_bytes + f.adapter_bytes, payload);
            const double off = std::abs(double(f.total()) - double(disk));
            QVERIFY2(off <= std::max(0.01 * double(disk), 2048.0), qPrintable(QString("%1: estimate off by %2 bytes").arg(format).arg(off)));
            QVERIFY(f.total() > r.size.total_bytes);   // the LoRA factors at fp32 at least
        }
    }

    void mixedPrecisionSharded() {
        std::string m = synthetic("pk-mixed");
        std::string base = test::make_temp_dir("pk-mixed-out");
        QuantizeOptions po = opts(m, base + "/packed", ExportFormat::Packed), ho = opts(m, base + "/hf", ExportFormat::Hf);
        for (QuantizeOptions* o : {&po, &ho}) {
            o->plan.rules.push_back({"*.mlp.*", false, {}, {}, {.quant = QuantKind::NF2, .block = 32}});
            o->plan.rules.push_back({"*.self_attn.*", false, 1, 1, {.quant = QuantKind::INT8, .block = 128, .rank = 6}});
            o->plan.overrides["model.layers.0.self_attn.v_proj.weight"] = {.quant = QuantKind::NF3, .block = 100};
            o->max_shard_bytes = 60'000;
        }
        QuantizeResult pr = run_quantize(po, {}, CancelToken{});
        run_quantize(ho, {}, CancelToken{});
        QVERIFY(fs::exists(base + "/packed/model.safetensors.index.json"));
        auto rd = PackedReader::open(base + "/packed");
        QVERIFY(rd->files().size() > 1);
        QCOMPARE(rd->weights().size(), size_t(14));
        auto hf = Checkpoint::open(base + "/hf");
        std::map<std::string, int> kinds;
        for (const PackedWeight& w : rd->weights()) {
            kinds[quant_format(w.quant).name]++;
            if (w.name.find(".mlp.") != std::string::npos) QVERIFY(w.quant == QuantKind::NF2 && w.block == 32);
            if (w.name.find("layers.1.self_attn") != std::string::npos) QVERIFY(w.quant == QuantKind::INT8 && w.rank == 6);
            std::vector<float> Q = rd->dequantize(w), Qhf = hf->read_f32(*hf->find(w.name));
            QVERIFY2(std::memcmp(Q.data(), Qhf.data(), Q.size() * 4) == 0, w.name.c_str());
        }
        QCOMPARE(kinds["nf2"], 6);
        QCOMPARE(kinds["int8"], 4);
        QCOMPARE(kinds["nf3"], 1);
        QCOMPARE(kinds["nf4"], 3);
        std::string un = base + "/un";
        auto files = unpack_packed(base + "/packed", un, false);
        QVERIFY(!files.empty());
        for (auto& e : fs::directory_iterator(base + "/hf"))
            if (e.path().extension() == ".safetensors" || e.path().filename() == "model.safetensors.index.json")
                compare_files(un + "/" + e.path().filename().string(), e.path().string());
        compare_files(un + "/loftq_init/adapter_model.safetensors", base + "/hf/loftq_init/adapter_model.safetensors");
        // Not over a non-empty folder without force; with force it works.
        EXPECT_ERROR(unpack_packed(base + "/packed", un, false), "not empty");
        unpack_packed(base + "/packed", un, true);
        EXPECT_ERROR(unpack_packed(base + "/packed", base + "/packed/sub", true), "refusing to write into the input");
        (void)pr;
    }

    // Sizes: target bytes == the budget's quantized bytes, to the byte; file vs plan total reported.
    void sizesMatchBudget() {
        std::string m = synthetic("pk-size", small(DType::BF16));
        std::string out = test::make_temp_dir("pk-size-out") + "/p";
        QuantizeOptions o = opts(m, out, ExportFormat::Packed);
        o.plan.rules.push_back({"*.mlp.*", false, {}, {}, {.quant = QuantKind::INT3, .block = 100}});
        QuantizeResult r = run_quantize(o, {}, CancelToken{});
        auto rd = PackedReader::open(out);
        uint64_t stored = 0;
        for (const PackedWeight& w : rd->weights()) {
            const WeightPlan* wp = nullptr;
            for (auto& x : r.plan.weights) if (x.name == w.name) wp = &x;
            QVERIFY(wp);
            QCOMPARE(rd->stored_bytes(w), quantized_weight_bytes(w.rows, w.cols, wp->s));
            QCOMPARE(w.dtype, DType::BF16);
            stored += rd->stored_bytes(w);
        }
        QCOMPARE(stored, r.size.quantized_bytes);
        json mj = json::parse(read_text_file(out + "/loftq_metrics.json"));
        QCOMPARE(mj["packed"]["target_bytes"].get<uint64_t>(), r.size.quantized_bytes);
        QCOMPARE(mj["weights"][0]["packed_bytes"].get<uint64_t>(), rd->stored_bytes(rd->weights()[0]));
        const uint64_t file = fs::file_size(out + "/model.safetensors");
        QCOMPARE(mj["packed"]["file_bytes"].get<uint64_t>(), file);
        // file = plan total - LoRA at 2 bytes + LoRA at 4 bytes + header (JSON + metadata).
        const uint64_t header = file - (r.size.quantized_bytes + r.size.untouched_bytes + 2 * r.size.lora_bytes);
        qInfo("packed file %llu bytes vs plan_size total %llu (quantized %llu + lora@2B %llu + untouched %llu); "
              "lora stored fp32 adds %llu, header %llu",
              (unsigned long long)file, (unsigned long long)r.size.total_bytes, (unsigned long long)r.size.quantized_bytes,
              (unsigned long long)r.size.lora_bytes, (unsigned long long)r.size.untouched_bytes,
              (unsigned long long)r.size.lora_bytes, (unsigned long long)header);
        QVERIFY(header > 0 && header < 20'000);
    }

    // Double quantization: smaller scales as reported, small added error, reported.
    void doubleQuant() {
        std::string m = synthetic("pk-dq");
        std::string base = test::make_temp_dir("pk-dq-out");
        QuantizeOptions o = opts(m, base + "/dq", ExportFormat::Packed), h = opts(m, base + "/hf", ExportFormat::Hf);
        o.double_quant = true;
        for (QuantizeOptions* x : {&o, &h}) x->plan.defaults.block = 32;
        QuantizeResult r = run_quantize(o, {}, CancelToken{});
        run_quantize(h, {}, CancelToken{});
        auto rd = PackedReader::open(base + "/dq");
        auto hf = Checkpoint::open(base + "/hf");
        json mj = json::parse(read_text_file(base + "/dq/loftq_metrics.json"));
        uint64_t stored = 0;
        double max_err = 0;
        for (size_t i = 0; i < rd->weights().size(); ++i) {
            const PackedWeight& w = rd->weights()[i];
            QVERIFY(w.double_quant);
            QVERIFY(!rd->tensor(w.name + ".qscales"));
            QVERIFY(rd->tensor(w.name + ".qscales_q") && rd->tensor(w.name + ".qscales_absmax") && rd->tensor(w.name + ".qscales_offset"));
            const size_t nb = w.nblocks();
            QCOMPARE(rd->stored_bytes(w), packed_size(w.numel(), w.bits) + nb + 4 * ((nb + 255) / 256) + 4);
            stored += rd->stored_bytes(w);
            // Added error: the reader's Q vs the engine's Q (HF export), relative to ||W||.
            std::vector<float> Q = rd->dequantize(w), Qhf = hf->read_f32(*hf->find(w.name));
            auto src = Checkpoint::open(m);
            std::vector<float> W = src->read_f32(*src->find(w.name));
            double e = 0, wn = 0;
            for (size_t k = 0; k < Q.size(); ++k) { e += (double(Q[k]) - Qhf[k]) * (double(Q[k]) - Qhf[k]); wn += double(W[k]) * W[k]; }
            double added = std::sqrt(e / wn);
            const json* mw = nullptr;
            for (auto& x : mj["weights"]) if (x["name"] == w.name) mw = &x;
            QVERIFY(mw);
            double reported = (*mw)["double_quant_added_error"].get<double>();
            QVERIFY2(std::abs(added - reported) <= 1e-6 * added + 1e-12, qPrintable(QString("%1 vs %2").arg(added).arg(reported)));
            QVERIFY2(added > 0 && added < 0.05, qPrintable(QString("%1: added %2").arg(w.name.c_str()).arg(added)));
            max_err = std::max(max_err, added);
        }
        const uint64_t plain = r.size.quantized_bytes;
        QVERIFY(stored < plain);
        QCOMPARE(mj["packed"]["target_bytes"].get<uint64_t>(), stored);
        QCOMPARE(mj["packed"]["double_quant_saved_bytes"].get<int64_t>(), int64_t(plain - stored));
        QCOMPARE(mj["packed"]["double_quant_max_added_error"].get<double>(), max_err);
        qInfo("double quant (nf4, block 32): codes+scales %llu -> %llu bytes (%.1f%% smaller, %.3f -> %.3f bits/weight); "
              "max added error %.2e of ||W|| (mean LoftQ error %.4f)",
              (unsigned long long)plain, (unsigned long long)stored, 100.0 * double(plain - stored) / double(plain),
              8.0 * double(plain) / double(r.size.target_params), 8.0 * double(stored) / double(r.size.target_params), max_err,
              mj["summary"]["mean_final_error"].get<double>());
        // The scale maths alone: dequantized scales within half a step of the originals.
        std::vector<float> s = test::gaussian(1000, 3);
        for (auto& x : s) x = std::abs(x);
        std::vector<uint8_t> q(1000);
        std::vector<float> a(4), s2(1000);
        float off = 0;
        packed::dq_quantize_scales(s.data(), 1000, q.data(), a.data(), &off);
        packed::dq_dequantize_scales(q.data(), a.data(), off, 1000, s2.data());
        for (size_t i = 0; i < 1000; ++i) QVERIFY(std::abs(s2[i] - s[i]) <= a[i / 256] / 254.f * 1.001f + 1e-7f);
    }

    // Corrupt exports: loftq::Error naming the file and the tensor.
    void corruptFiles() {
        std::string m = odd_model("pk-bad");
        std::string good = test::make_temp_dir("pk-bad-out") + "/p";
        QuantizeOptions o = opts(m, good, ExportFormat::Packed);
        o.plan.defaults.quant = QuantKind::NF3;  // 37 x 53 x 3 bits: 5 padding bits in the last byte
        run_quantize(o, {}, CancelToken{});
        const std::string q = "model.layers.0.self_attn.q_proj.weight";
        int n = 0;
        auto fresh = [&] {
            std::string d = test::make_temp_dir("pk-bad-" + std::to_string(n++)) + "/p";
            copy_tree(good, d);
            return d;
        };
        {  // file cut short: the safetensors reader names the file
            std::string d = fresh();
            fs::resize_file(d + "/model.safetensors", fs::file_size(d + "/model.safetensors") - 100);
            EXPECT_ERROR(PackedReader::open(d), "model.safetensors");
        }
        {  // codes tensor one byte short
            std::string d = fresh();
            rewrite(d + "/model.safetensors", [&](Edit& e) {
                for (auto& t : e.layout)
                    if (t.name == q + ".qcodes") { t.shape[0] -= 1; t.nbytes -= 1; e.data[t.name].pop_back(); }
            });
            EXPECT_ERROR(PackedReader::open(d), "model.safetensors", q + ".qcodes", "truncated");
        }
        {  // NF3: a code field holding garbage past the last code (bits 3..7 of the last byte)
            std::string d = fresh();
            rewrite(d + "/model.safetensors", [&](Edit& e) { e.data[q + ".qcodes"].back() |= 0x80; });
            EXPECT_ERROR(PackedReader::open(d), "model.safetensors", q + ".qcodes", "padding bits");
        }
        {  // NF3 metadata over 4-bit codes (a code could be > 7): the sizes cannot match
            std::string d = fresh();
            rewrite(d + "/model.safetensors", [&](Edit& e) {
                json w = json::parse(e.meta["loftq.weights"]);
                w[q]["quant"] = "int4";
                w[q]["bits"] = 4;
                e.meta["loftq.weights"] = w.dump();
            });
            EXPECT_ERROR(PackedReader::open(d), "model.safetensors", q + ".qcodes", "expected 981");
        }
        {  // an edited shape: rows and cols swapped (same code count: the LoRA factors disagree), and
           // one whose product overflows (it unpacked with exit code 0 into a wrong checkpoint)
            std::string d = fresh();
            rewrite(d + "/model.safetensors", [&](Edit& e) {
                json w = json::parse(e.meta["loftq.weights"]);
                std::swap(w[q]["shape"][0], w[q]["shape"][1]);
                e.meta["loftq.weights"] = w.dump();
            });
            EXPECT_ERROR(PackedReader::open(d), "model.safetensors", "lora_A", "metadata's shape");
            rewrite(d + "/model.safetensors", [&](Edit& e) {
                json w = json::parse(e.meta["loftq.weights"]);
                w[q]["shape"] = {int64_t(1) << 62, 4};
                e.meta["loftq.weights"] = w.dump();
            });
            EXPECT_ERROR(PackedReader::open(d), "model.safetensors", q, "too large");
        }
        {  // a stored code table that is not this engine's
            std::string d = fresh();
            rewrite(d + "/model.safetensors", [&](Edit& e) {
                json b = json::parse(e.meta["loftq.codebooks"]);
                for (auto& [k, v] : b.items()) v[1] = v[1].get<double>() + 0.001;
                e.meta["loftq.codebooks"] = b.dump();
            });
            EXPECT_ERROR(PackedReader::open(d), "model.safetensors", "loftq.codebooks", "differs");
        }
        {  // scales tensor missing
            std::string d = fresh();
            rewrite(d + "/model.safetensors", [&](Edit& e) {
                std::erase_if(e.layout, [&](const OutTensor& t) { return t.name == q + ".qscales"; });
            });
            EXPECT_ERROR(PackedReader::open(d), "model.safetensors", q + ".qscales", "missing scales");
        }
        {  // a negative scale
            std::string d = fresh();
            rewrite(d + "/model.safetensors", [&](Edit& e) { float v = -1.f; std::memcpy(e.data[q + ".qscales"].data() + 8, &v, 4); });
            auto rd = PackedReader::open(d);
            EXPECT_ERROR(rd->dequantize(*rd->weight(q)), "model.safetensors", q + ".qscales", "block 2");
        }
        {  // bad metadata JSON
            std::string d = fresh();
            rewrite(d + "/model.safetensors", [&](Edit& e) { e.meta["loftq.weights"] = "{\"" + q + "\": {"; });
            EXPECT_ERROR(PackedReader::open(d), "model.safetensors", "__metadata__", "loftq.weights", "not valid JSON");
        }
        {  // a field of the wrong type, an unknown quantizer, wrong magic, newer version
            std::string d = fresh();
            rewrite(d + "/model.safetensors", [&](Edit& e) {
                json w = json::parse(e.meta["loftq.weights"]);
                w[q]["quant"] = "nf5";
                e.meta["loftq.weights"] = w.dump();
            });
            EXPECT_ERROR(PackedReader::open(d), "model.safetensors", "__metadata__", q, "unknown quantizer 'nf5'");
            rewrite(d + "/model.safetensors", [&](Edit& e) { e.meta["format"] = "pt"; });
            EXPECT_ERROR(PackedReader::open(d), "model.safetensors", "not a packed LoftQ export");
            rewrite(d + "/model.safetensors", [&](Edit& e) { e.meta["format"] = "loftq-packed"; e.meta["format_version"] = "2"; });
            EXPECT_ERROR(PackedReader::open(d), "model.safetensors", "format_version is '2'");
        }
        {  // unpack of a corrupt export leaves nothing behind
            std::string d = fresh();
            rewrite(d + "/model.safetensors", [&](Edit& e) { e.data[q + ".qcodes"].back() |= 0x80; });
            std::string out = test::make_temp_dir("pk-bad-un") + "/u";
            // (verify off: the checksums would refuse it first, see flippedCodeBytesAreCaught)
            EXPECT_ERROR(unpack_packed(d, out, false, false), q + ".qcodes");
            QVERIFY(!fs::exists(out + "/model.safetensors"));
            QVERIFY(!fs::exists(out));
        }
    }

    // A flipped bit in the codes passes every format check (any k-bit code is a level), so the
    // manifest's checksums must catch it: verify_export names the file, unpack refuses before
    // writing anything (and proceeds only when told not to verify). A deleted file is reported;
    // an export from before checksums (no "outputs") cannot be verified and unpacks unchecked.
    void flippedCodeBytesAreCaught() {
        std::string m = odd_model("pk-flip");
        const std::string base = test::make_temp_dir("pk-flip-out"), good = base + "/p";
        QuantizeOptions o = opts(m, good, ExportFormat::Packed);
        o.plan.defaults.quant = QuantKind::NF4;
        run_quantize(o, {}, CancelToken{});
        VerifyReport v = verify_export(good);
        QVERIFY(v.ok());
        QCOMPARE(v.files_checked, size_t(json::parse(read_text_file(good + "/loftq_metrics.json"))["outputs"].size()));
        QVERIFY(v.files_checked >= 6 && v.unlisted.empty());
        const json outs = json::parse(read_text_file(good + "/loftq_metrics.json"))["outputs"];
        for (auto rel : {"model.safetensors", "config.json", "loftq_init/adapter_model.safetensors",
                         "loftq_init/adapter_config.json", "loftq_metrics.csv"}) {
            QVERIFY2(outs.contains(rel), rel);
            QCOMPARE(outs[rel]["bytes"].get<uint64_t>(), uint64_t(fs::file_size(good + "/" + rel)));
            QCOMPARE(outs[rel]["xxh3_64"].get<std::string>(), file_checksum(good + "/" + rel));
        }
        QVERIFY(!outs.contains("loftq_metrics.json"));
        // The unpacked folder lists its own files.
        const std::string un = base + "/un";
        unpack_packed(good, un, false);
        QVERIFY(verify_export(un).ok());
        QCOMPARE(json::parse(read_text_file(un + "/loftq_metrics.json"))["outputs"]["model.safetensors"]["xxh3_64"].get<std::string>(),
                 file_checksum(un + "/model.safetensors"));

        const std::string q = "model.layers.0.mlp.up_proj.weight";
        const std::string d = base + "/flipped";
        copy_tree(good, d);
        {  // one bit of one code byte in the middle of the codes
            auto f = SafetensorsFile::open(d + "/model.safetensors");
            const TensorInfo* t = f->find(q + ".qcodes");
            QVERIFY(t);
            uint64_t header = 0;
            std::ifstream in(d + "/model.safetensors", std::ios::binary);
            in.read(reinterpret_cast<char*>(&header), 8);
            const uint64_t off = 8 + header + t->begin + t->nbytes() / 2;
            f.reset();
            std::fstream io(d + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
            io.seekg(std::streamoff(off));
            char c = 0;
            io.read(&c, 1);
            c ^= 0x10;
            io.seekp(std::streamoff(off));
            io.write(&c, 1);
        }
        auto rd = PackedReader::open(d);   // the format alone cannot tell
        rd->dequantize(*rd->weight(q));
        rd.reset();
        v = verify_export(d);
        QCOMPARE(int(v.status), int(VerifyReport::Status::Failed));
        QCOMPARE(v.problems.size(), size_t(1));
        QCOMPARE(QString::fromStdString(v.problems[0].file), QString("model.safetensors"));
        QVERIFY2(v.problems[0].what.find("changed") != std::string::npos, v.problems[0].what.c_str());
        const std::string refused = base + "/refused";
        EXPECT_ERROR(unpack_packed(d, refused, false), d + "/model.safetensors", "changed", "loftq verify");
        QVERIFY(!fs::exists(refused));
        for (auto& e : fs::directory_iterator(base)) QVERIFY2(e.path().filename().string().find(".loftq-") == std::string::npos, e.path().c_str());
        unpack_packed(d, refused, false, false);   // asked not to verify: it unpacks
        QVERIFY(fs::exists(refused + "/model.safetensors"));

        // A deleted file, and a file the manifest does not list (a note only).
        const std::string del = base + "/deleted";
        copy_tree(good, del);
        fs::remove(del + "/loftq_init/adapter_config.json");
        test::write_file(del + "/README.md", "mine");
        v = verify_export(del);
        QCOMPARE(int(v.status), int(VerifyReport::Status::Failed));
        QCOMPARE(v.problems.size(), size_t(1));
        QCOMPARE(QString::fromStdString(v.problems[0].file), QString("loftq_init/adapter_config.json"));
        QCOMPARE(QString::fromStdString(v.problems[0].what), QString("missing"));
        QCOMPARE(v.unlisted, std::vector<std::string>{"README.md"});
        EXPECT_ERROR(unpack_packed(del, base + "/del-un", false), "loftq_init/adapter_config.json", "missing");

        // An export written before checksums: it cannot be verified, and unpacks unchecked.
        const std::string older = base + "/older";
        copy_tree(good, older);
        json mj = json::parse(read_text_file(older + "/loftq_metrics.json"));
        mj.erase("outputs");
        test::write_file(older + "/loftq_metrics.json", mj.dump(2));
        v = verify_export(older);
        QCOMPARE(int(v.status), int(VerifyReport::Status::NoChecksums));
        QVERIFY2(v.cannot_verify_reason().find("cannot be verified") != std::string::npos, v.cannot_verify_reason().c_str());
        unpack_packed(older, base + "/older-un", false);
        QVERIFY(verify_export(base + "/older-un").ok());   // the unpacked folder has its own checksums
        fs::remove(older + "/loftq_metrics.json");
        QCOMPARE(int(verify_export(older).status), int(VerifyReport::Status::NoManifest));
        // A manifest that names a path outside the folder is a failure, not a read of that path.
        const std::string evil = base + "/evil";
        copy_tree(good, evil);
        mj = json::parse(read_text_file(evil + "/loftq_metrics.json"));
        mj["outputs"]["../p/config.json"] = {{"bytes", 1}, {"xxh3_64", "0000000000000000"}};
        test::write_file(evil + "/loftq_metrics.json", mj.dump(2));
        v = verify_export(evil);
        QCOMPARE(int(v.status), int(VerifyReport::Status::Failed));
        QCOMPARE(QString::fromStdString(v.problems[0].file), QString("loftq_metrics.json"));
        // The manifest goes through the checked JSON reader: a second "outputs" key (which one would
        // win?) is a damaged manifest, as is nesting deeper than the reader's limit.
        const std::string dup = base + "/dup";
        copy_tree(good, dup);
        std::string text = read_text_file(dup + "/loftq_metrics.json");
        text.insert(text.rfind('}'), ", \"outputs\": {}");
        test::write_file(dup + "/loftq_metrics.json", text);
        v = verify_export(dup);
        QCOMPARE(int(v.status), int(VerifyReport::Status::Failed));
        QCOMPARE(QString::fromStdString(v.problems[0].file), QString("loftq_metrics.json"));
        QVERIFY2(v.problems[0].what.find("outputs") != std::string::npos, v.problems[0].what.c_str());
        test::write_file(dup + "/loftq_metrics.json", "{\"outputs\": " + std::string(100000, '[') + std::string(100000, ']') + "}");
        v = verify_export(dup);
        QCOMPARE(int(v.status), int(VerifyReport::Status::Failed));
        QCOMPARE(QString::fromStdString(v.problems[0].file), QString("loftq_metrics.json"));
    }
};

QTEST_GUILESS_MAIN(TestPacked)
#include "test_packed.moc"
