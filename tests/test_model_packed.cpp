// test_model_packed.cpp: the CPU model with its projection weights kept packed (k-bit codes +
// block scales, dequantized per use) computes exactly what the fp32 model computes when the fp32
// base holds the same dequantized values: logits, loss and every LoRA gradient bit for bit,
// for several quantizers; and the packed base is the size k bits + 32/block per weight.
// LoadOptions::keep_packed (the CUDA trainer's load): requantizing a dequantized grid gives back
// the same codes and scales for every quantizer (the claim the export path rests on), and a
// keep_packed load (qlora, loftq, an F32 HF export) computes bit for bit what the fp32 load does;
// a bf16 HF export is off the grid and falls back to fp32 sites, with the same results.
#include <QtTest>

#include <cmath>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/rng.h"
#include "core/cancel.h"
#include "core/fsutil.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "export/quantize.h"
#include "train/demo_data.h"
#include "train/trainer.h"
#include "io/synthetic_model.h"
#include "model/llama_cpu.h"
#include "expect_error.h"
#include "quant/quantizer.h"
#include "test_support.h"

using namespace loftq;

class TestModelPacked : public QObject {
    Q_OBJECT
    std::string dir_;

private slots:
    void initTestCase() {
        dir_ = test::make_temp_dir("model-packed") + "/m";
        SyntheticSpec s;
        s.layers = 2;
        s.hidden = 64;
        s.intermediate = 160;
        s.heads = 4;
        s.kv_heads = 2;
        s.vocab = 512;  // room for the demo tokenizer (fine-tune test)
        s.dtype = DType::F32;
        write_synthetic_model(dir_, s);
    }

    void packedEqualsFp32BitForBit_data() {
        QTest::addColumn<QString>("quant");
        QTest::addColumn<int>("block");
        QTest::newRow("nf4/64") << "nf4" << 64;
        QTest::newRow("nf2/64") << "nf2" << 64;
        QTest::newRow("nf3/100") << "nf3" << 100;
        QTest::newRow("int8/32") << "int8" << 32;
    }

    void packedEqualsFp32BitForBit() {
        QFETCH(QString, quant);
        QFETCH(int, block);
        const QuantFormat& f = quant_format(*quant_kind_from_name(quant.toStdString()));
        auto ck = Checkpoint::open(dir_);
        const ModelConfig& mc = ck->config();
        const LlamaConfig c = llama_config_from(mc);
        const int L = c.n_layers;
        std::vector<int> ranks(size_t(L) * kLoraSites, 4);
        std::vector<float> scales(ranks.size(), 2.0f);
        LlamaCpu dense(c, ranks, scales, 2), packed(c, ranks, scales, 2, true);
        QVERIFY(packed.packed_sites());

        auto read = [&](const std::string& name, float* out) { ck->read_f32(*ck->find(name), out); };
        read("model.embed_tokens.weight", dense.embed());
        read("model.norm.weight", dense.final_norm());
        read("lm_head.weight", dense.lm_head());
        std::memcpy(packed.embed(), dense.embed(), sizeof(float) * size_t(c.vocab) * size_t(c.dim));
        std::memcpy(packed.final_norm(), dense.final_norm(), sizeof(float) * size_t(c.dim));
        std::memcpy(packed.lm_head(), dense.lm_head(), sizeof(float) * size_t(c.vocab) * size_t(c.dim));
        uint64_t packed_bytes = 0, n_site = 0;
        for (int l = 0; l < L; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            read(p + "input_layernorm.weight", dense.layer(l).attn_norm);
            read(p + "post_attention_layernorm.weight", dense.layer(l).ffn_norm);
            std::memcpy(packed.layer(l).attn_norm, dense.layer(l).attn_norm, sizeof(float) * size_t(c.dim));
            std::memcpy(packed.layer(l).ffn_norm, dense.layer(l).ffn_norm, sizeof(float) * size_t(c.dim));
            for (int s = 0; s < kLoraSites; ++s) {
                const LoraSite site = LoraSite(s);
                const size_t n = size_t(lora_site_out(c, site) * lora_site_in(c, site));
                std::vector<float> W(n);
                read(lora_module_path(l, site) + ".weight", W.data());
                std::vector<uint8_t> codes(n);
                PackedSite ps;
                ps.kind = f.kind;
                ps.block = block;
                ps.scales.resize(num_blocks(n, block));
                quantize(f, W.data(), n, block, codes.data(), ps.scales.data());
                dequantize(f, codes.data(), ps.scales.data(), n, block, dense.site_weight(l, site));  // fp32 base = q(W)
                ps.codes.resize(packed_size(n, f.bits));
                pack_codes(codes.data(), n, f.bits, ps.codes.data());
                packed_bytes += ps.codes.size() + 4 * ps.scales.size();
                n_site += n;
                packed.set_packed_site(l, site, std::move(ps));
            }
        }
        // Same nonzero LoRA values in both.
        auto td = dense.trainable(), tp = packed.trainable();
        QCOMPARE(td.size(), tp.size());
        Rng rng(7);
        for (size_t i = 0; i < td.size(); ++i)
            for (int64_t j = 0; j < td[i].numel(); ++j) td[i].value[j] = tp[i].value[j] = float(0.05 * rng.normal());

        const int B = 2, T = 12;
        std::vector<int> tok(B * T), tgt(B * T);
        for (int i = 0; i < B * T; ++i) {
            tok[size_t(i)] = int(rng.next() % uint64_t(c.vocab));
            tgt[size_t(i)] = i % 5 == 0 ? -1 : int(rng.next() % uint64_t(c.vocab));
        }
        dense.zero_grad();
        packed.zero_grad();
        const float ld = dense.forward(tok.data(), tgt.data(), B, T);
        const float lp = packed.forward(tok.data(), tgt.data(), B, T);
        QCOMPARE(test::float_bits(lp), test::float_bits(ld));
        QVERIFY(std::memcmp(dense.logits(), packed.logits(), sizeof(float) * size_t(B * T) * size_t(c.vocab)) == 0);
        dense.backward();
        packed.backward();
        for (size_t i = 0; i < td.size(); ++i)
            QVERIFY2(std::memcmp(td[i].grad, tp[i].grad, sizeof(float) * size_t(td[i].numel())) == 0, td[i].name.c_str());
        // The packed sites cost k bits + one fp32 scale per block, plus one layer's fp32 scratch.
        const double bits = 8.0 * double(packed_bytes) / double(n_site);
        qInfo("%s: packed sites %.3f bits/weight (k = %d, block %d); base %llu bytes packed vs %llu fp32", qPrintable(quant), bits,
              f.bits, block, (unsigned long long)packed.base_bytes(), (unsigned long long)dense.base_bytes());
        QVERIFY(std::abs(bits - (f.bits + 32.0 / block)) < 0.05);
        QVERIFY(packed.base_bytes() < dense.base_bytes());
    }

    // Training straight from a packed export: the base stays packed in memory, and the model
    // computes bit for bit what it computes from the HF export of the same plan (F32 source, so
    // the HF backbone holds Q exactly); the same with one weight kept in 16-bit (then every site
    // is fp32); and a short fine-tune gives identical adapters from both.
    void loadsAndTrainsFromPackedExport() {
        const std::string root = test::make_temp_dir("model-packed-export");
        for (bool with_keep : {false, true}) {
            QuantizeOptions q;
            q.model = dir_;
            q.plan.defaults.quant = QuantKind::NF2;
            q.plan.defaults.rank = 4;
            q.plan.defaults.iters = 2;
            if (with_keep) {
                SettingsPatch keep;
                keep.target = false;
                q.plan.overrides["model.layers.1.mlp.up_proj.weight"] = keep;
            }
            q.threads = 2;
            const std::string tag = with_keep ? "keep" : "all";
            q.out_dir = root + "/hf-" + tag;
            run_quantize(q, {}, CancelToken{});
            q.out_dir = root + "/packed-" + tag;
            q.format = ExportFormat::Packed;
            run_quantize(q, {}, CancelToken{});

            LoadOptions lo;
            lo.init = InitKind::Export;
            lo.threads = 2;
            lo.model = root + "/hf-" + tag;
            auto hf = load_llama(lo);
            lo.model = root + "/packed-" + tag;
            auto pk = load_llama(lo);
            auto* hfc = dynamic_cast<LlamaCpu*>(hf.get());
            auto* pkc = dynamic_cast<LlamaCpu*>(pk.get());
            QVERIFY(hfc && pkc);
            QCOMPARE(pkc->packed_sites(), !with_keep);
            const LlamaConfig& c = hf->config();
            const int B = 2, T = 10;
            std::vector<int> tok(B * T), tgt(B * T);
            Rng rng(3);
            for (int i = 0; i < B * T; ++i) {
                tok[size_t(i)] = int(rng.next() % uint64_t(c.vocab));
                tgt[size_t(i)] = int(rng.next() % uint64_t(c.vocab));
            }
            hf->zero_grad();
            pk->zero_grad();
            QCOMPARE(test::float_bits(pk->forward(tok.data(), tgt.data(), B, T)), test::float_bits(hf->forward(tok.data(), tgt.data(), B, T)));
            hf->backward();
            pk->backward();
            auto th = hf->trainable(), tp = pk->trainable();
            QCOMPARE(th.size(), tp.size());
            for (size_t i = 0; i < th.size(); ++i) {
                QVERIFY2(std::memcmp(th[i].value, tp[i].value, sizeof(float) * size_t(th[i].numel())) == 0, th[i].name.c_str());
                QVERIFY2(std::memcmp(th[i].grad, tp[i].grad, sizeof(float) * size_t(th[i].numel())) == 0, th[i].name.c_str());
            }
            qInfo("%s: base in memory %llu bytes from the packed export vs %llu from the HF export", tag.c_str(),
                  (unsigned long long)pkc->base_bytes(), (unsigned long long)hfc->base_bytes());
            if (!with_keep) QVERIFY(pkc->base_bytes() < hfc->base_bytes());
        }
        // A packed export is an export: asking to quantize it again is refused with a clear error.
        LoadOptions again;
        again.model = root + "/packed-all";
        again.init = InitKind::Qlora;
        QVERIFY_THROWS_EXCEPTION(Error, load_llama(again));

        // A short fine-tune from each: identical adapters.
        const std::string data = root + "/stories.txt";
        write_file_atomic(data, demo_corpus(300, 5));
        write_demo_tokenizer(root + "/tokenizer.bin", demo_corpus(300, 5), 512);
        std::vector<std::vector<float>> adapters;
        for (const char* src : {"hf-all", "packed-all"}) {
            TrainOptions t;
            t.load.model = root + "/" + src;
            t.load.init = InitKind::Export;
            t.data = data;
            t.tokenizer = root + "/tokenizer.bin";
            t.out_dir = root + "/ft-" + src;
            t.steps = 3;
            t.batch = 2;
            t.seq = 16;
            t.eval_every = 0;
            t.eval_batches = 1;
            t.sample_tokens = 0;
            t.threads = 2;
            run_finetune(t, {}, CancelToken{});
            auto f = SafetensorsFile::open(t.out_dir + "/adapter/adapter_model.safetensors");
            std::vector<float> all;
            for (const auto& ti : f->tensors()) {
                std::vector<float> v(size_t(ti.numel()));
                std::memcpy(v.data(), f->data(ti), v.size() * 4);
                all.insert(all.end(), v.begin(), v.end());
            }
            adapters.push_back(all);
        }
        QVERIFY(!adapters[0].empty());
        QVERIFY(adapters[0] == adapters[1]);
    }

    // q(deq(c, s)) == (c, s): absmax of table[c] * s over a block is s (the element that set s has
    // code +-1, and |table| <= 1), and (table[c] * s) / s lands back in table[c]'s interval. Every
    // quantizer, several blocks (a short last block too), scales from 1e-30 to 1e30, zero blocks.
    void requantizingTheGridIsExact() {
        for (QuantKind k : all_quant_kinds()) {
            const QuantFormat& f = quant_format(k);
            for (int block : {64, 100, 7}) {
                const size_t n = 64 * 100 + 13;
                std::vector<float> W = test::gaussian(n, 17 + uint64_t(block));
                for (size_t i = 0; i < n; ++i) {
                    const size_t b = i / size_t(block);
                    const double mag = std::pow(10.0, double(int(b % 61) - 30));  // 1e-30 .. 1e30
                    W[i] = float(W[i] * mag);
                    if (b % 17 == 5) W[i] = 0.f;  // all-zero blocks
                }
                std::vector<uint8_t> c(n), c2(n);
                std::vector<float> sc(num_blocks(n, block)), sc2(sc.size()), Q(n), Q2(n);
                quantize(f, W.data(), n, block, c.data(), sc.data());
                dequantize(f, c.data(), sc.data(), n, block, Q.data());
                quantize(f, Q.data(), n, block, c2.data(), sc2.data());
                dequantize(f, c2.data(), sc2.data(), n, block, Q2.data());
                size_t bad_codes = 0, bad_scales = 0;
                for (size_t i = 0; i < n; ++i) bad_codes += c[i] != c2[i];
                for (size_t i = 0; i < sc.size(); ++i) bad_scales += test::float_bits(sc[i]) != test::float_bits(sc2[i]);
                QVERIFY2(bad_codes == 0 && bad_scales == 0,
                         qPrintable(QString("%1 block %2: %3 codes, %4 scales differ").arg(f.name).arg(block).arg(bad_codes).arg(bad_scales)));
                QVERIFY(std::memcmp(Q.data(), Q2.data(), n * 4) == 0);
            }
        }
    }

    // keep_packed gives the model the fp32 load gives, bit for bit: logits, loss, LoRA values and
    // gradients; the base is packed for qlora / loftq / an F32 HF export, fp32 for a bf16 export.
    void keepPackedLoadEqualsFp32Load_data() {
        QTest::addColumn<QString>("init");
        QTest::addColumn<QString>("quant");
        QTest::addColumn<int>("block");
        QTest::addColumn<bool>("packs");
        QTest::newRow("qlora nf4/64") << "qlora" << "nf4" << 64 << true;
        QTest::newRow("qlora nf2/64") << "qlora" << "nf2" << 64 << true;
        QTest::newRow("qlora int3/100") << "qlora" << "int3" << 100 << true;
        QTest::newRow("loftq nf3/64") << "loftq" << "nf3" << 64 << true;
        QTest::newRow("loftq int8/32") << "loftq" << "int8" << 32 << true;
        QTest::newRow("hf export F32 nf4") << "hf-f32" << "nf4" << 64 << true;
        QTest::newRow("hf export F32 int2/100, flags say nf4/64") << "hf-f32-other" << "int2" << 100 << true;
        QTest::newRow("hf export bf16 nf4 (off the grid)") << "hf-bf16" << "nf4" << 64 << false;
        QTest::newRow("lora16 (never packed)") << "lora16" << "nf4" << 64 << false;
    }
    void keepPackedLoadEqualsFp32Load() {
        QFETCH(QString, init);
        QFETCH(QString, quant);
        QFETCH(int, block);
        QFETCH(bool, packs);
        LoadOptions lo;
        lo.threads = 2;
        lo.rank = 4;
        lo.iters = 1;
        lo.seed = 9;
        lo.quant = quant.toStdString();
        lo.block = block;
        lo.model = dir_;
        if (init == "qlora") lo.init = InitKind::Qlora;
        else if (init == "loftq") lo.init = InitKind::Loftq;
        else if (init == "lora16") lo.init = InitKind::Lora16;
        else {
            // An HF LoftQ export of the synthetic model (F32 or bf16 source), loaded as an export;
            // "other": the load flags name another quantizer, the export's loftq_metrics.json wins.
            std::string src = dir_;
            if (init == "hf-bf16") {
                src = test::make_temp_dir("keep-packed-bf16") + "/m";
                SyntheticSpec sp;
                sp.layers = 2; sp.hidden = 64; sp.intermediate = 160; sp.heads = 4; sp.kv_heads = 2; sp.vocab = 512;
                sp.dtype = DType::BF16;
                write_synthetic_model(src, sp);
            }
            QuantizeOptions q;
            q.model = src;
            q.plan.defaults.quant = *quant_kind_from_name(lo.quant);
            q.plan.defaults.block = block;
            q.plan.defaults.rank = 4;
            q.plan.defaults.iters = 1;
            q.threads = 2;
            q.out_dir = test::make_temp_dir("keep-packed-export") + "/hf";
            run_quantize(q, {}, CancelToken{});
            lo.model = q.out_dir;
            lo.init = InitKind::Export;
            if (init == "hf-f32-other") { lo.quant = "nf4"; lo.block = 64; }
        }
        auto a = load_llama(lo);
        lo.keep_packed = true;
        auto b = load_llama(lo);
        auto* ca = dynamic_cast<LlamaCpu*>(a.get());
        auto* cb = dynamic_cast<LlamaCpu*>(b.get());
        QVERIFY(ca && cb);
        QVERIFY(!ca->packed_sites());
        QCOMPARE(cb->packed_sites(), packs);
        if (packs) {
            QCOMPARE(int(cb->packed_site(1, LoraSite::Down).kind), int(*quant_kind_from_name(quant.toStdString())));
            QCOMPARE(cb->packed_site(1, LoraSite::Down).block, block);
            QVERIFY(cb->base_bytes() < ca->base_bytes());
        }
        const LlamaConfig& c = a->config();
        const int B = 2, T = 11;
        std::vector<int> tok(B * T), tgt(B * T);
        Rng rng(5);
        for (int i = 0; i < B * T; ++i) {
            tok[size_t(i)] = int(rng.next() % uint64_t(c.vocab));
            tgt[size_t(i)] = i % 4 == 1 ? -1 : int(rng.next() % uint64_t(c.vocab));
        }
        a->zero_grad();
        b->zero_grad();
        const float la = a->forward(tok.data(), tgt.data(), B, T), lb = b->forward(tok.data(), tgt.data(), B, T);
        QCOMPARE(test::float_bits(lb), test::float_bits(la));
        QVERIFY(std::memcmp(a->logits(), b->logits(), sizeof(float) * size_t(B * T) * size_t(c.vocab)) == 0);
        a->backward();
        b->backward();
        auto ta = a->trainable(), tb = b->trainable();
        QCOMPARE(ta.size(), tb.size());
        for (size_t i = 0; i < ta.size(); ++i) {
            QVERIFY2(std::memcmp(ta[i].value, tb[i].value, sizeof(float) * size_t(ta[i].numel())) == 0, ta[i].name.c_str());
            QVERIFY2(std::memcmp(ta[i].grad, tb[i].grad, sizeof(float) * size_t(ta[i].numel())) == 0, ta[i].name.c_str());
        }
        qInfo("%s: base %llu bytes with keep_packed (%s), %llu without", qPrintable(init), (unsigned long long)cb->base_bytes(),
              packs ? "packed" : "fp32", (unsigned long long)ca->base_bytes());
    }

    // Loading an export (fine-tune, eval, the app's Fine-tune tab) checks its files against the
    // manifest's checksums first: one flipped bit in the backbone (a packed code, or the lowest
    // mantissa bit of an fp32 weight, which no format check can see) is refused naming the file;
    // verify = false loads it as it is.
    void changedExportIsRefusedOnLoad() {
        const std::string root = test::make_temp_dir("model-packed-verify");
        for (ExportFormat f : {ExportFormat::Hf, ExportFormat::Packed}) {
            QuantizeOptions q;
            q.model = dir_;
            q.plan.defaults.quant = QuantKind::NF4;
            q.plan.defaults.rank = 2;
            q.plan.defaults.iters = 1;
            q.threads = 2;
            q.format = f;
            q.out_dir = root + (f == ExportFormat::Hf ? "/hf" : "/packed");
            run_quantize(q, {}, CancelToken{});
            LoadOptions lo;
            lo.model = q.out_dir;
            lo.init = InitKind::Export;
            lo.threads = 2;
            QVERIFY(load_llama(lo));
            const std::string weights = q.out_dir + "/model.safetensors";
            test::flip_bits(weights, -8, 0x01);   // the first byte of an fp32 value (or a code byte)
            EXPECT_ERROR(load_llama(lo), weights, "changed");
            lo.verify = false;
            QVERIFY(load_llama(lo));
        }
    }

    void wrongSizesAreRefused() {
        auto ck = Checkpoint::open(dir_);
        const LlamaConfig c = llama_config_from(ck->config());
        std::vector<int> ranks(size_t(c.n_layers) * kLoraSites, 0);
        std::vector<float> scales(ranks.size(), 0.f);
        LlamaCpu packed(c, ranks, scales, 1, true);
        PackedSite ps;
        ps.kind = QuantKind::NF4;
        ps.codes.resize(10);
        ps.scales.resize(3);
        QVERIFY_THROWS_EXCEPTION(Error, packed.set_packed_site(0, LoraSite::Q, ps));
    }
};

QTEST_MAIN(TestModelPacked)
#include "test_model_packed.moc"
