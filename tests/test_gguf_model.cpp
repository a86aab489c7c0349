// test_gguf_model.cpp: GGUF as a model format (engine/io/checkpoint.cpp's GGUF form,
// io/gguf_names.h, train/tokenizer_gguf.cpp, train/gguf_export.h), everywhere (no llama.cpp needed;
// tests/test_llamacpp.cpp runs the real one):
//   - export -> read back: every tensor of stories260K comes back under its HF name and layout,
//     bit for bit from an F32 GGUF (so the q/k row permutation and its inverse agree), as the F16
//     rounding of the source from an F16 one, within ggml's Q8_0 bound (half a step of the block's
//     scale, plus the fp16 scale's rounding) from a Q8_0 one, whose down_proj (rows of 172) stays F16;
//   - the tokenizer inside the GGUF encodes and decodes as the llama2.c tok512.bin it came from;
//   - generation from the GGUF equals generation from the source (F32: the same ids);
//   - a LoRA merged into the weights: the GGUF model's logits equal the unmerged model's
//     (tolerance 1e-4 of the largest |logit|: W + scale B A rounded once in fp32);
//   - refusals: writing over the source, a byte-level BPE tokenizer, a truncated GGUF.
#include <QtTest>

#include <cmath>
#include <filesystem>

#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "io/gguf.h"
#include "export/quantize.h"
#include "loftq/job.h"
#include "model/llama.h"
#include "model/llama_cpu.h"
#include "quant/ggml_types.h"
#include "train/adapter_writer.h"
#include "train/generate.h"
#include "train/gguf_export.h"
#include "train/tokenizer.h"
#include "train/trainer.h"
#include "expect_error.h"
#include "test_support.h"

using namespace loftq;
namespace fs = std::filesystem;

namespace {
GgufExportResult export_to(const std::string& model, const std::string& out, GgufWeightType t, const std::string& adapter = "") {
    GgufExportOptions o;
    o.source.model = model;
    o.source.adapter = adapter;
    o.source.threads = 2;
    o.out = out;
    o.type = t;
    return export_gguf(o);
}
}  // namespace

class TestGgufModel : public QObject {
    Q_OBJECT
    std::string dir_, src_;

private slots:
    void initTestCase() {
        dir_ = loftq::test::make_temp_dir("gguf-model");
        src_ = loftq::test::shipped_stories260k();
    }

    void roundTripsEveryTensor() {
        auto ref = Checkpoint::open(src_);
        for (GgufWeightType t : {GgufWeightType::F32, GgufWeightType::F16, GgufWeightType::Q8_0}) {
            const std::string path = dir_ + "/s-" + kGgufWeightTypeNames.name(t) + ".gguf";
            const GgufExportResult r = export_to(src_, path, t);
            QCOMPARE(r.tensors, int(ref->tensors().size()));
            QCOMPARE(r.f16_fallbacks, t == GgufWeightType::Q8_0 ? 5 : 0);   // down_proj: rows of 172
            auto back = Checkpoint::open(path);
            QCOMPARE(back->kind(), CheckpointKind::Gguf);
            QCOMPARE(back->config().hidden, 64);
            QCOMPARE(back->config().n_kv_heads, 4);
            QCOMPARE(back->config().max_position, 512);
            QVERIFY(back->config().tie_word_embeddings);
            QCOMPARE(back->tensors().size(), ref->tensors().size());
            double worst_q8 = 0;
            for (const auto& te : ref->tensors()) {
                const TensorEntry* be = back->find(te.name);
                QVERIFY2(be, te.name.c_str());
                QCOMPARE(be->shape, te.shape);
                const std::vector<float> a = ref->read_f32(te), b = back->read_f32(*be);
                const bool matrix = te.shape.size() == 2;
                if (t == GgufWeightType::F32 || !matrix) {
                    for (size_t i = 0; i < a.size(); ++i)
                        if (loftq::test::float_bits(a[i]) != loftq::test::float_bits(b[i]))
                            QFAIL(qPrintable(QString("%1 [%2]: %3 != %4").arg(te.name.c_str()).arg(i).arg(a[i]).arg(b[i])));
                } else if (t == GgufWeightType::F16 || te.shape[1] % 32 != 0) {
                    for (size_t i = 0; i < a.size(); ++i) QCOMPARE(b[i], f16_to_f32(f32_to_f16(a[i])));
                } else {
                    // Q8_0: per block of 32 along a row, |x - d q| <= d / 2 with d = fp16(amax / 127)
                    for (size_t b0 = 0; b0 < a.size(); b0 += 32) {
                        float amax = 0;
                        for (size_t i = b0; i < b0 + 32; ++i) amax = std::max(amax, std::fabs(a[i]));
                        const double d = f16_to_f32(f32_to_f16(amax / 127.f));
                        for (size_t i = b0; i < b0 + 32; ++i) {
                            const double e = std::fabs(double(a[i]) - b[i]);
                            worst_q8 = std::max(worst_q8, e / std::max(d, 1e-30));
                            QVERIFY2(e <= 0.5 * d + 1e-3 * amax + 1e-12, qPrintable(QString("%1 [%2]").arg(te.name.c_str()).arg(i)));
                        }
                    }
                }
            }
            if (t == GgufWeightType::Q8_0) qInfo("Q8_0: worst |error| = %.3f steps of the block scale", worst_q8);
        }
    }

    void tokenizerInsideTheGguf() {
        const std::string path = dir_ + "/tok.gguf";
        export_to(src_, path, GgufWeightType::F16);
        auto a = load_tokenizer(fs::path(src_).parent_path() / "tok512.bin");
        auto b = load_tokenizer(path);
        QCOMPARE(b->kind(), std::string("gguf-llama"));
        QCOMPARE(b->vocab_size(), a->vocab_size());
        QCOMPARE(b->bos_id(), 1);
        QCOMPARE(b->eos_id(), 2);
        for (const std::string s : {"Once upon a time", "The cat sat.  Two  spaces", "caf\xC3\xA9 \xE2\x82\xAC 100 \xF0\x9F\x98\x80", "", " lead", "<s> text"}) {
            const auto ia = a->encode(s, true, true), ib = b->encode(s, true, true);
            QCOMPARE(ib, ia);
            QCOMPARE(b->decode(ib), a->decode(ia));
        }
        // the vocabulary as stored: spaces as U+2581, types unk/control/byte/normal
        const auto v = b->scored_vocab();
        QVERIFY(v);
        QCOMPARE(v->types[0], 2);
        QCOMPARE(v->types[1], 3);
        QCOMPARE(v->types[3], 6);
        QCOMPARE(v->types[300], 1);
        // a folder holding the one .gguf finds it
        QCOMPARE(load_tokenizer(dir_ + "/tok.gguf")->vocab_size(), 512);
    }

    void generationFromTheGgufEqualsTheSource() {
        const std::string path = dir_ + "/gen-f32.gguf";
        export_to(src_, path, GgufWeightType::F32);
        GeneratorSource s1, s2;
        s1.model = src_;
        s2.model = path;
        s1.threads = s2.threads = 2;
        Generator a = load_generator(s1), b = load_generator(s2);
        GenerateOptions o;
        o.max_tokens = 80;
        for (const char* p : {"", "Once upon a time", "The dog"}) {
            const GenerateResult ra = generate(*a.model, *a.tok, p, o), rb = generate(*b.model, *b.tok, p, o);
            QCOMPARE(rb.prompt_ids, ra.prompt_ids);
            QCOMPARE(rb.ids, ra.ids);
            QCOMPARE(rb.text, ra.text);
        }
    }

    void mergedLoraEqualsUnmergedModel() {
        // a LoftQ NF2 start with a changed adapter, saved as a fine-tune would save it
        LoadOptions lo;
        lo.model = src_;
        lo.init = InitKind::Loftq;
        lo.quant = "nf2";
        lo.rank = 4;
        lo.iters = 2;
        lo.threads = 2;
        auto m = load_llama(lo);
        Rng rng(3);
        for (auto& t : m->trainable())
            for (int64_t i = 0; i < t.numel(); ++i) t.value[i] += float(0.02 * rng.normal());
        const std::string adapter = dir_ + "/adapter";
        write_peft_adapter(adapter, *m, lo);
        const std::string path = dir_ + "/merged.gguf";
        const GgufExportResult r = export_to("", path, GgufWeightType::F32, adapter);
        QCOMPARE(r.merged_sites, 35);

        GeneratorSource gs;
        gs.model = path;
        gs.threads = 2;
        Generator g = load_generator(gs);
        std::vector<int> seq = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315};
        const int T = int(seq.size()), V = 512;
        m->forward(seq.data(), nullptr, 1, T);
        std::vector<float> want(m->logits(), m->logits() + size_t(T) * V);
        g.model->forward(seq.data(), nullptr, 1, T);
        double mx = 0, d = 0;
        for (size_t i = 0; i < want.size(); ++i) {
            mx = std::max(mx, double(std::fabs(want[i])));
            d = std::max(d, double(std::fabs(want[i] - g.model->logits()[i])));
        }
        qInfo("merged GGUF vs unmerged model: max |logit diff| = %.3g of max |logit| %.3g", d, mx);
        QVERIFY(d <= 1e-4 * mx);
        // and the backbone alone differs (the LoRA matters)
        GgufExportOptions o;
        o.source.adapter = adapter;
        o.out = dir_ + "/backbone.gguf";
        o.backbone_only = true;
        QCOMPARE(export_gguf(o).merged_sites, 0);
    }

    void loftqFromAGgufSource() {
        // A GGUF is a LoftQ source like any checkpoint: the export carries its tokenizer (as
        // tokenizer.bin) and generates what the GGUF's LoftQ start generates.
        fs::create_directories(dir_ + "/src");
        const std::string g = dir_ + "/src/model.gguf";
        export_to(src_, g, GgufWeightType::F16);
        QuantizeOptions q;
        q.model = g;
        q.out_dir = dir_ + "/loftq-from-gguf";
        q.plan = Plan{};
        q.plan.defaults.quant = QuantKind::NF4;
        q.plan.defaults.rank = 8;
        q.threads = 2;
        run_quantize(q, {}, CancelToken{});
        QVERIFY(fs::is_regular_file(q.out_dir + "/tokenizer.bin"));
        QCOMPARE(load_tokenizer(q.out_dir)->encode("Once upon a time", true, false), load_tokenizer(g)->encode("Once upon a time", true, false));
        GeneratorSource a;
        a.model = q.out_dir;
        a.threads = 2;
        Generator ga = load_generator(a);
        QVERIFY(ga.description.find("LoftQ export") != std::string::npos);
        GenerateOptions o;
        o.max_tokens = 20;
        const std::string text = generate(*ga.model, *ga.tok, "Once upon a time", o).text;
        qInfo("LoftQ NF4 r8 of the GGUF: \"Once upon a time%s\"", text.c_str());
        QVERIFY(text.size() > 20);

        // and fine-tuning straight from the GGUF: its own tokenizer, a LoftQ start made in memory
        const std::string data = dir_ + "/stories.txt";
        std::string corpus;
        for (int i = 0; i < 40; ++i) corpus += "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.\n";
        loftq::test::write_file(data, corpus);
        TrainOptions to;
        to.load.model = g;
        to.load.init = InitKind::Loftq;
        to.load.quant = "nf4";
        to.load.rank = 4;
        to.load.iters = 1;
        to.data = data;
        to.out_dir = dir_ + "/run-from-gguf";
        to.steps = 4;
        to.batch = 2;
        to.seq = 32;
        to.eval_every = 4;
        to.sample_tokens = 0;
        to.threads = 2;
        const TrainResult tr = run_finetune(to, {}, CancelToken{});
        QCOMPARE(tr.steps_done, 4);
        QVERIFY(std::isfinite(tr.final_eval_loss));
        QVERIFY(fs::is_regular_file(to.out_dir + "/adapter/adapter_model.safetensors"));
    }

    void refusals() {
        const std::string copy = dir_ + "/self.gguf";
        export_to(src_, copy, GgufWeightType::F16);
        EXPECT_ERROR(export_to(copy, copy, GgufWeightType::F16), "refusing to write over an input");
        // truncated: the checkpoint names the file
        const std::string bytes = loftq::test::read_file(copy);
        const std::string cut = dir_ + "/cut.gguf";
        loftq::test::write_file(cut, bytes.substr(0, bytes.size() / 2));
        EXPECT_ERROR(Checkpoint::open(cut), "cut.gguf");
        EXPECT_ERROR(load_tokenizer(cut), "cut.gguf");
        // not written when the source fails: no partial file left
        const std::string none = dir_ + "/none.gguf";
        QVERIFY_THROWS_EXCEPTION(Error, export_to(cut, none, GgufWeightType::F16));
        QVERIFY(!fs::exists(none));
    }
};

QTEST_GUILESS_MAIN(TestGgufModel)
#include "test_gguf_model.moc"
