// test_model_packed.cpp: the CPU model with its projection weights kept packed (k-bit codes +
// block scales, dequantized per use) computes exactly what the fp32 model computes when the fp32
// base holds the same dequantized values: logits, loss and every LoRA gradient bit for bit,
// for several quantizers; and the packed base is the size k bits + 32/block per weight.
#include <QtTest>

#include <cstring>

#include "core/error.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "io/synthetic_model.h"
#include "model/llama_cpu.h"
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
        s.vocab = 96;
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
