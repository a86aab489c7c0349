// test_bnb.cpp: the bitsandbytes NF4 serialization ("bnb-nf4", export/bnb.h) on a synthetic F32
// LLaMA-shaped checkpoint: per target exactly the keys, dtypes and shapes of bitsandbytes'
// QuantState.as_dict(packed=True) layout, the quant_state JSON, quant_map == the NF4 table bit for
// bit, dequantized (high nibble first, table[code] * absmax per 64) == the Q of an "hf" export of
// the same plan bit for bit, non-targets copied, config.json's quantization_config, and the
// loftq_init adapter byte-identical to the HF export's; NF2 / block 128 plans refused, nothing left.
//
// NOT run here: loading the export with transformers + bitsandbytes (no torch, no bitsandbytes, no
// GPU on this machine). The key layout was checked against the sources cited in docs/FORMAT.md
// (bitsandbytes functional.py QuantState.as_dict/from_dict, nn/modules.py Linear4bit
// _save_to_state_dict, utils.py pack_dict_to_tensor; transformers quantizer_bnb_4bit.py and
// integrations/bitsandbytes.py). tests/python/check_bnb_export.py does the real load on a GPU box.
#include <QtTest>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "expect_error.h"
#include "io/safetensors.h"
#include "io/synthetic_model.h"
#include "export/quantize.h"
#include "quant/quantizer.h"
#include "test_support.h"

using namespace loftq;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
SyntheticSpec small() {
    SyntheticSpec s;
    s.layers = 2; s.hidden = 64; s.intermediate = 160; s.heads = 4; s.kv_heads = 2; s.vocab = 96; s.dtype = DType::F32;
    return s;
}
QuantizeOptions opts(const std::string& model, const std::string& out, ExportFormat format) {
    QuantizeOptions o;
    o.model = model;
    o.out_dir = out;
    o.format = format;
    o.plan.defaults.rank = 8;
    o.plan.defaults.iters = 2;
    o.threads = 2;
    return o;
}
}  // namespace

class TestBnb : public QObject {
    Q_OBJECT
private slots:
    void layoutValuesConfigAdapter() {
        std::string root = test::make_temp_dir("bnb");
        std::string model = root + "/model";
        write_synthetic_model(model, small());
        QuantizeOptions ob = opts(model, root + "/bnb", ExportFormat::BnbNf4), oh = opts(model, root + "/hf", ExportFormat::Hf);
        ob.plan.overrides["model.layers.1.mlp.down_proj.weight"].iters = 0;  // a QLoRA-init weight too
        oh.plan.overrides = ob.plan.overrides;
        QuantizeResult rb = run_quantize(ob, {}, CancelToken{});
        QuantizeResult rh = run_quantize(oh, {}, CancelToken{});
        QCOMPARE(rb.plan.weights.size(), size_t(14));

        auto bnb = SafetensorsFile::open(root + "/bnb/model.safetensors");
        auto hf = SafetensorsFile::open(root + "/hf/model.safetensors");
        const QuantFormat& nf4 = quant_format(QuantKind::NF4);
        std::set<std::string> targets;
        for (const auto& w : rb.plan.weights) {
            targets.insert(w.name);
            const uint64_t n = uint64_t(w.rows) * uint64_t(w.cols), nb = (n + 63) / 64;
            const TensorInfo* q = bnb->find(w.name);
            const TensorInfo* am = bnb->find(w.name + ".absmax");
            const TensorInfo* qm = bnb->find(w.name + ".quant_map");
            const TensorInfo* qs = bnb->find(w.name + ".quant_state.bitsandbytes__nf4");
            QVERIFY2(q && am && qm && qs, w.name.c_str());
            QCOMPARE(q->dtype, DType::U8);
            QCOMPARE(q->shape, (std::vector<int64_t>{int64_t((n + 1) / 2), 1}));
            QCOMPARE(am->dtype, DType::F32);
            QCOMPARE(am->shape, (std::vector<int64_t>{int64_t(nb)}));
            QCOMPARE(qm->dtype, DType::F32);
            QCOMPARE(qm->shape, (std::vector<int64_t>{16}));
            QCOMPARE(qs->dtype, DType::U8);
            QCOMPARE(qs->shape.size(), size_t(1));
            QVERIFY(std::memcmp(bnb->data(*qm), nf4.table, 64) == 0);
            std::string js(reinterpret_cast<const char*>(bnb->data(*qs)), qs->nbytes());
            json st = json::parse(js);
            QCOMPARE(st.size(), size_t(4));  // no nested_* keys: no double quantization
            QCOMPARE(st["quant_type"].get<std::string>(), std::string("nf4"));
            QCOMPARE(st["blocksize"].get<int>(), 64);
            QCOMPARE(st["dtype"].get<std::string>(), std::string("float32"));
            QCOMPARE(st["shape"], json::array({w.rows, w.cols}));
            QCOMPARE(js.substr(0, 34), std::string("{\"quant_type\": \"nf4\", \"blocksize\":"));  // json.dumps spacing

            // Dequantize as bitsandbytes does: high nibble = first element.
            const uint8_t* packed = bnb->data(*q);
            std::vector<float> absmax(nb), deq(n);
            std::memcpy(absmax.data(), bnb->data(*am), nb * 4);
            for (uint64_t i = 0; i < n; ++i) {
                uint8_t code = (i % 2 == 0) ? packed[i / 2] >> 4 : packed[i / 2] & 0x0F;
                deq[i] = nf4.table[code] * absmax[i / 64];
            }
            const TensorInfo* hq = hf->find(w.name);
            QVERIFY(hq && hq->dtype == DType::F32 && hq->nbytes() == n * 4);
            QVERIFY2(std::memcmp(deq.data(), hf->data(*hq), n * 4) == 0, w.name.c_str());
        }
        // Exactly the bnb keys for targets, every other tensor copied bit-exactly.
        size_t expect = 0;
        for (const auto& t : hf->tensors()) {
            if (targets.count(t.name)) { expect += 4; continue; }
            ++expect;
            const TensorInfo* b = bnb->find(t.name);
            QVERIFY2(b && b->dtype == t.dtype && b->shape == t.shape, t.name.c_str());
            QVERIFY(std::memcmp(bnb->data(*b), hf->data(t), t.nbytes()) == 0);
        }
        QCOMPARE(bnb->tensors().size(), expect);

        // config.json: the source's plus quantization_config.
        json cfg = json::parse(test::read_file(root + "/bnb/config.json"));
        json src = json::parse(test::read_file(model + "/config.json"));
        for (auto& [k, v] : src.items()) QCOMPARE(cfg[k], v);
        const json& qc = cfg["quantization_config"];
        QCOMPARE(qc["quant_method"].get<std::string>(), std::string("bitsandbytes"));
        QCOMPARE(qc["load_in_4bit"].get<bool>(), true);
        QCOMPARE(qc["load_in_8bit"].get<bool>(), false);
        QCOMPARE(qc["bnb_4bit_quant_type"].get<std::string>(), std::string("nf4"));
        QCOMPARE(qc["bnb_4bit_use_double_quant"].get<bool>(), false);
        QCOMPARE(qc["bnb_4bit_quant_storage"].get<std::string>(), std::string("uint8"));
        QCOMPARE(qc["bnb_4bit_compute_dtype"].get<std::string>(), std::string("float32"));
        std::vector<std::string> skip = qc["llm_int8_skip_modules"].get<std::vector<std::string>>();
        QVERIFY(std::find(skip.begin(), skip.end(), "lm_head") != skip.end());
        for (const auto& key : skip)
            for (const auto& t : targets) {  // transformers' matching must leave every target quantized
                std::string mp = t.substr(0, t.size() - 7), kind = mp.substr(mp.rfind('.') + 1);
                QVERIFY2(key != kind && key != mp && mp.find(key + ".") == std::string::npos, key.c_str());
            }

        // loftq_init: the HF export's adapter, byte for byte (config differs only in the base path).
        QCOMPARE(test::read_file(root + "/bnb/loftq_init/adapter_model.safetensors"),
                 test::read_file(root + "/hf/loftq_init/adapter_model.safetensors"));
        json ab = json::parse(test::read_file(root + "/bnb/loftq_init/adapter_config.json"));
        json ah = json::parse(test::read_file(root + "/hf/loftq_init/adapter_config.json"));
        QCOMPARE(ab["base_model_name_or_path"].get<std::string>(), fs::absolute(root + "/bnb").lexically_normal().string());
        ab.erase("base_model_name_or_path");
        ah.erase("base_model_name_or_path");
        QCOMPARE(ab, ah);
        QVERIFY(fs::exists(root + "/bnb/loftq_metrics.json") && fs::exists(root + "/bnb/loftq_metrics.csv"));
        QVERIFY(fs::exists(root + "/bnb/tokenizer_config.json"));
        for (const auto& f : rb.files) QVERIFY2(fs::exists(f), f.c_str());
    }

    // BF16 and F16 sources: the quant state names the source dtype ("bfloat16" / "float16"),
    // and bitsandbytes' dequantization (table[code] * absmax) rounded to that dtype is the HF
    // export's stored Q bit for bit.
    void halfSources() {
        for (DType dt : {DType::BF16, DType::F16}) {
            const std::string want = dt == DType::BF16 ? "bfloat16" : "float16";
            std::string root = test::make_temp_dir("bnb-half");
            std::string model = root + "/model";
            SyntheticSpec sp = small();
            sp.dtype = dt;
            write_synthetic_model(model, sp);
            QuantizeOptions ob = opts(model, root + "/bnb", ExportFormat::BnbNf4), oh = opts(model, root + "/hf", ExportFormat::Hf);
            QuantizeResult rb = run_quantize(ob, {}, CancelToken{});
            run_quantize(oh, {}, CancelToken{});
            auto bnb = SafetensorsFile::open(root + "/bnb/model.safetensors");
            auto hf = SafetensorsFile::open(root + "/hf/model.safetensors");
            const QuantFormat& nf4 = quant_format(QuantKind::NF4);
            for (const auto& w : rb.plan.weights) {
                const uint64_t n = uint64_t(w.rows) * uint64_t(w.cols), nb = (n + 63) / 64;
                const TensorInfo* q = bnb->find(w.name);
                const TensorInfo* am = bnb->find(w.name + ".absmax");
                const TensorInfo* qs = bnb->find(w.name + ".quant_state.bitsandbytes__nf4");
                QVERIFY2(q && am && qs, w.name.c_str());
                json st = json::parse(std::string(reinterpret_cast<const char*>(bnb->data(*qs)), qs->nbytes()));
                QCOMPARE(st["dtype"].get<std::string>(), want);
                const uint8_t* packed = bnb->data(*q);
                std::vector<float> absmax(nb), deq(n);
                std::memcpy(absmax.data(), bnb->data(*am), nb * 4);
                for (uint64_t i = 0; i < n; ++i) {
                    uint8_t code = (i % 2 == 0) ? packed[i / 2] >> 4 : packed[i / 2] & 0x0F;
                    deq[i] = nf4.table[code] * absmax[i / 64];
                }
                std::vector<uint8_t> rounded(n * 2);
                from_f32(dt, deq.data(), rounded.data(), n);
                const TensorInfo* hq = hf->find(w.name);
                QVERIFY(hq && hq->dtype == dt && hq->nbytes() == n * 2);
                QVERIFY2(std::memcmp(rounded.data(), hf->data(*hq), n * 2) == 0, (want + " " + w.name).c_str());
            }
            json cfg = json::parse(test::read_file(root + "/bnb/config.json"));
            QCOMPARE(cfg["quantization_config"]["bnb_4bit_compute_dtype"].get<std::string>(), want);
        }
    }

    void refusesWhatBitsandbytesCannotHold() {
        std::string root = test::make_temp_dir("bnb-refuse");
        std::string model = root + "/model";
        write_synthetic_model(model, small());
        QuantizeOptions o = opts(model, root + "/out2", ExportFormat::BnbNf4);
        o.plan.overrides["model.layers.1.self_attn.v_proj.weight"].quant = QuantKind::NF2;
        EXPECT_ERROR(run_quantize(o, {}, CancelToken{}), "model.layers.1.self_attn.v_proj.weight", "nf2", "bnb-nf4",
                     "set quant nf4");
        QVERIFY(!fs::exists(root + "/out2"));

        QuantizeOptions b = opts(model, root + "/out128", ExportFormat::BnbNf4);
        b.plan.defaults.block = 128;
        EXPECT_ERROR(run_quantize(b, {}, CancelToken{}), "model.layers.0.self_attn.q_proj.weight", "block 128",
                     "set block 64");
        QVERIFY(!fs::exists(root + "/out128"));
    }
};

QTEST_APPLESS_MAIN(TestBnb)
#include "test_bnb.moc"
