// test_plan.cpp: plan JSON parsing and validation (every error names the file and the key
// path), JSON round trips, and resolution: default targets per model family, rules (glob, regex,
// layer ranges) applied in order, overrides last, keep/target, warnings.
#include <QtTest>

#include <fstream>

#include "core/error.h"
#include "expect_error.h"
#include "loftq/plan.h"
#include "test_support.h"

using namespace loftq;
using json = nlohmann::json;

namespace {
std::vector<TensorMeta> llama_tensors(int layers) {
    std::vector<TensorMeta> v = {{"model.embed_tokens.weight", DType::BF16, {512, 64}}};
    for (int l = 0; l < layers; ++l) {
        std::string p = "model.layers." + std::to_string(l) + ".";
        v.push_back({p + "input_layernorm.weight", DType::BF16, {64}});
        for (auto m : {"q_proj", "k_proj", "v_proj", "o_proj"}) v.push_back({p + "self_attn." + m + ".weight", DType::BF16, {64, 64}});
        for (auto m : {"gate_proj", "up_proj"}) v.push_back({p + "mlp." + m + ".weight", DType::BF16, {172, 64}});
        v.push_back({p + "mlp.down_proj.weight", DType::BF16, {64, 172}});
    }
    v.push_back({"model.norm.weight", DType::BF16, {64}});
    v.push_back({"lm_head.weight", DType::BF16, {512, 64}});
    return v;
}
const WeightPlan* find(const ResolvedPlan& r, const std::string& n) {
    for (auto& w : r.weights)
        if (w.name == n) return &w;
    return nullptr;
}
void expect_error(const json& j, const char* needle) {
    try {
        plan_from_json(j, "my.loftq.json");
        QFAIL(qPrintable(QString("no error for ") + QString::fromStdString(j.dump())));
    } catch (const Error& e) {
        QString msg = e.what();
        QVERIFY2(msg.startsWith("my.loftq.json: "), qPrintable(msg));
        QVERIFY2(msg.contains(needle), qPrintable(msg + "  (expected: " + needle + ")"));
    }
}
}  // namespace

class TestPlan : public QObject {
    Q_OBJECT
private slots:
    void namesAndModules() {
        QCOMPARE(layer_of("model.layers.12.self_attn.q_proj.weight"), 12);
        QCOMPARE(layer_of("transformer.h.3.attn.c_attn.weight"), 3);
        QCOMPARE(layer_of("bert.encoder.layer.7.attention.self.query.weight"), 7);
        QCOMPARE(layer_of("model.embed_tokens.weight"), -1);
        QCOMPARE(module_of("model.layers.12.self_attn.q_proj.weight"), std::string("q_proj"));
        QCOMPARE(module_of("model.layers.0.mlp.down_proj.weight"), std::string("down_proj"));
        QCOMPARE(module_of("transformer.h.3.attn.c_attn.weight"), std::string("attn.c_attn"));
        QCOMPARE(module_of("transformer.h.3.mlp.c_proj.weight"), std::string("mlp.c_proj"));
        QCOMPARE(module_of("bert.encoder.layer.7.attention.self.query.weight"), std::string("attention.self.query"));
    }

    void defaultTargets() {
        auto ts = llama_tensors(2);
        ResolvedPlan r = resolve_plan(Plan{}, ts);
        QCOMPARE(r.weights.size(), size_t(14));  // 7 projections x 2 layers
        for (auto& w : r.weights) QVERIFY(w.name.find("_proj.weight") != std::string::npos);
        QVERIFY(!find(r, "lm_head.weight") && !find(r, "model.embed_tokens.weight"));
        auto* w = find(r, "model.layers.1.mlp.down_proj.weight");
        QVERIFY(w);
        QCOMPARE(w->layer, 1);
        QCOMPARE(w->module, std::string("down_proj"));
        QCOMPARE(w->rows, int64_t(64));
        QCOMPARE(w->cols, int64_t(172));
        // GPT-2 and BERT families.
        std::vector<TensorMeta> g = {{"transformer.h.0.attn.c_attn.weight", DType::F32, {64, 192}},
                                     {"transformer.h.0.attn.c_proj.weight", DType::F32, {64, 64}},
                                     {"transformer.h.0.mlp.c_fc.weight", DType::F32, {64, 256}},
                                     {"transformer.h.0.mlp.c_proj.weight", DType::F32, {256, 64}},
                                     {"transformer.h.0.ln_1.weight", DType::F32, {64}},
                                     {"transformer.wte.weight", DType::F32, {100, 64}},
                                     {"bert.encoder.layer.0.attention.self.query.weight", DType::F32, {64, 64}},
                                     {"bert.encoder.layer.0.attention.output.dense.weight", DType::F32, {64, 64}},
                                     {"bert.encoder.layer.0.intermediate.dense.weight", DType::F32, {256, 64}},
                                     {"bert.encoder.layer.0.output.dense.weight", DType::F32, {64, 256}},
                                     {"bert.encoder.layer.0.attention.self.query.bias", DType::F32, {64}},
                                     {"model.layers.0.self_attn.q_proj.weight", DType::I8, {64, 64}}};
        ResolvedPlan rg = resolve_plan(Plan{}, g);
        QCOMPARE(rg.weights.size(), size_t(8));  // int8-stored q_proj is not convertible: kept
    }

    void rulesInOrderThenOverrides() {
        json j = json::parse(R"({
          "format": "loftq-plan", "version": 1,
          "defaults": {"quant": "nf2", "rank": 8, "iters": 3},
          "rules": [
            {"match": "*.mlp.*", "quant": "int4", "rank": 32},
            {"match": "model\\.layers\\.[01]\\.self_attn\\.(q|k)_proj", "regex": true, "quant": "nf4", "block": 128},
            {"match": "*", "layers": [2, 3], "iters": 1},
            {"match": "*.v_proj.weight", "layers": 3, "quant": "keep"},
            {"match": "lm_head.weight", "target": true, "rank": 4}
          ],
          "overrides": {"model.layers.0.mlp.up_proj.weight": {"quant": "nf3", "svd": "exact"},
                        "model.layers.9.mlp.up_proj.weight": {"rank": 2}}
        })");
        Plan p = plan_from_json(j);
        ResolvedPlan r = resolve_plan(p, llama_tensors(4));
        auto get = [&](const std::string& n) { auto* w = find(r, n); if (!w) qFatal("missing %s", n.c_str()); return w->s; };
        QCOMPARE(get("model.layers.1.self_attn.v_proj.weight").quant, QuantKind::NF2);
        QCOMPARE(get("model.layers.1.self_attn.v_proj.weight").rank, 8);
        QCOMPARE(get("model.layers.1.mlp.gate_proj.weight").quant, QuantKind::INT4);
        QCOMPARE(get("model.layers.1.mlp.gate_proj.weight").rank, 32);
        QCOMPARE(get("model.layers.0.self_attn.k_proj.weight").quant, QuantKind::NF4);
        QCOMPARE(get("model.layers.0.self_attn.k_proj.weight").block, 128);
        QCOMPARE(get("model.layers.2.self_attn.k_proj.weight").quant, QuantKind::NF2);  // regex names layers 0-1
        QCOMPARE(get("model.layers.2.self_attn.k_proj.weight").iters, 1);
        QCOMPARE(get("model.layers.1.self_attn.k_proj.weight").iters, 3);
        QVERIFY(!find(r, "model.layers.3.self_attn.v_proj.weight"));  // kept
        QVERIFY(find(r, "model.layers.2.self_attn.v_proj.weight"));
        QCOMPARE(get("lm_head.weight").rank, 4);  // opted in; no layer, so the [2,3] rule skipped it
        QCOMPARE(get("lm_head.weight").iters, 3);
        QCOMPARE(get("model.layers.0.mlp.up_proj.weight").quant, QuantKind::NF3);
        QCOMPARE(get("model.layers.0.mlp.up_proj.weight").svd, SvdMethod::Exact);
        QCOMPARE(get("model.layers.0.mlp.up_proj.weight").rank, 32);  // from the mlp rule
        QCOMPARE(r.weights.size(), size_t(4 * 7 - 1 + 1));
        bool warned = false;
        for (auto& w : r.warnings) warned |= w.find("model.layers.9.mlp.up_proj.weight") != std::string::npos;
        QVERIFY(warned);
    }

    // A rule that names a quantizer after an earlier "keep" does not re-target the weights (only
    // "target": true does), so they stay unquantized; the plan warns, naming the rule and the count.
    // With "target": true they are quantized and nothing is said.
    void quantAfterKeepWarns() {
        auto ts = llama_tensors(2);
        ResolvedPlan r = resolve_plan(plan_from_json(json::parse(R"({"version": 1, "rules": [
            {"match": "*", "quant": "keep"}, {"match": "*.q_proj.weight", "quant": "nf4"}]})")), ts);
        QCOMPARE(r.weights.size(), size_t(0));
        bool warned = false;
        for (auto& w : r.warnings)
            warned |= w.find("rule 1") != std::string::npos && w.find("2 weights") != std::string::npos &&
                      w.find("\"target\": true") != std::string::npos;
        QVERIFY2(warned, r.warnings.empty() ? "no warning" : r.warnings.front().c_str());
        r = resolve_plan(plan_from_json(json::parse(R"({"version": 1, "rules": [
            {"match": "*", "quant": "keep"}, {"match": "*.q_proj.weight", "quant": "nf4", "target": true}]})")), ts);
        QCOMPARE(r.weights.size(), size_t(2));
        QVERIFY(r.warnings.empty());
        r = resolve_plan(plan_from_json(json::parse(R"({"version": 1, "rules": [
            {"match": "*", "quant": "nf2"}, {"match": "*.q_proj.weight", "quant": "keep"}]})")), ts);
        QVERIFY(r.warnings.empty());  // kept on purpose, after the quantizer
    }

    // "quant": "keep" wins over "target": true in the same settings object, whatever the key order.
    void keepWinsOverTarget() {
        auto ts = llama_tensors(1);
        for (const char* text : {R"({"version": 1, "overrides": {"lm_head.weight": {"target": true, "quant": "keep"}}})",
                                 R"({"version": 1, "overrides": {"lm_head.weight": {"quant": "keep", "target": true}}})"}) {
            ResolvedPlan r = resolve_plan(plan_from_json(json::parse(text)), ts);
            QVERIFY2(!find(r, "lm_head.weight"), text);
        }
        ResolvedPlan r = resolve_plan(plan_from_json(json::parse(R"({"version": 1, "overrides": {"lm_head.weight": {"target": true}}})")), ts);
        QVERIFY(find(r, "lm_head.weight"));
    }

    void jsonRoundTrip() {
        json j = json::parse(R"({"format": "loftq-plan", "version": 1, "model": "m", "seed": 7, "lora_alpha": 16,
          "defaults": {"quant": "int8", "block": 32, "rank": 4, "iters": 0, "svd": "exact"},
          "svd": {"oversample": 6, "power_iters": 1},
          "rules": [{"match": "x.*", "regex": true, "layers": [1, 2], "quant": "keep"}, {"match": "*", "target": true, "rank": 3}],
          "overrides": {"a.weight": {"iters": 2}}})");
        Plan p = plan_from_json(j);
        QCOMPARE(p.seed, uint64_t(7));
        QCOMPARE(*p.lora_alpha, 16.0);
        QCOMPARE(p.oversample, 6);
        QCOMPARE(p.power_iters, 1);
        std::string dir = test::make_temp_dir("plan");
        std::string f = dir + "/p.loftq.json";
        save_plan(p, f);
        Plan q = load_plan(f);
        QCOMPARE(plan_to_json(q).dump(), plan_to_json(p).dump());
        QCOMPARE(q.rules.size(), size_t(2));
        QVERIFY(q.rules[0].set.target.has_value() && !*q.rules[0].set.target);
        QCOMPARE(*q.rules[0].layer_min, 1);
        QCOMPARE(*q.rules[1].set.target, true);
        QCOMPARE(q.defaults.quant, QuantKind::INT8);
        QCOMPARE(q.defaults.svd, SvdMethod::Exact);
        QCOMPARE(*q.overrides["a.weight"].iters, 2);
    }

    void validationErrors() {
        expect_error(json::parse(R"({"defaults": {}})"), "$.version: missing");
        expect_error(json::parse(R"({"version": 2})"), "newer than this reader");
        expect_error(json::parse(R"({"version": 1, "rnak": 3})"), "$.rnak: unknown key");
        expect_error(json::parse(R"({"version": 1, "defaults": {"quant": "nf5"}})"), "$.defaults.quant: unknown quantizer 'nf5'");
        expect_error(json::parse(R"({"version": 1, "defaults": {"rank": "16"}})"), "$.defaults.rank: expected an integer");
        expect_error(json::parse(R"({"version": 1, "defaults": {"block": 0}})"), "$.defaults.block: value 0 out of range");
        expect_error(json::parse(R"({"version": 1, "defaults": {"iters": -1}})"), "$.defaults.iters");
        expect_error(json::parse(R"({"version": 1, "defaults": {"svd": "fast"}})"), "$.defaults.svd");
        // (built as an object: moc mis-reads a raw string holding an unbalanced parenthesis)
        expect_error(json{{"version", 1}, {"rules", json::array({json{{"match", "[a-"}, {"regex", true}, {"rank", 2}}})}},
                     "$.rules[0].match: invalid regex");
        expect_error(json::parse(R"({"version": 1, "rules": [{"match": "*", "layers": [3, 1], "rank": 2}]})"), "$.rules[0].layers");
        expect_error(json::parse(R"({"version": 1, "rules": [{"match": "*"}]})"), "changes nothing");
        expect_error(json::parse(R"({"version": 1, "rules": [{"rank": 2}]})"), "$.rules[0].match");
        expect_error(json::parse(R"({"version": 1, "rules": {}})"), "$.rules: expected an array");
        expect_error(json::parse(R"({"version": 1, "overrides": {"a": {"quant": "int4", "x": 1}}})"), "unknown key");
        expect_error(json::parse(R"({"version": 1, "format": "other"})"), "$.format");
        expect_error(json::parse(R"({"version": 1, "lora_alpha": -2})"), "$.lora_alpha");
        expect_error(json::parse(R"([1, 2])"), "expected an object");
    }

    void badJsonFileNamesTheFile() {
        std::string dir = test::make_temp_dir("plan");
        std::string f = dir + "/broken.loftq.json";
        std::ofstream(f) << "{\"version\": 1, ";
        try {
            load_plan(f);
            QFAIL("no error");
        } catch (const Error& e) {
            QVERIFY(QString(e.what()).contains("broken.loftq.json"));
            QVERIFY(QString(e.what()).contains("not valid JSON"));
        }
        try {
            load_plan(dir + "/missing.loftq.json");
            QFAIL("no error");
        } catch (const Error& e) {
            QVERIFY(QString(e.what()).contains("missing.loftq.json"));
        }
    }

    // A deeply nested value (stack overflow when quoted in a message) and a repeated key are
    // refused while parsing, naming the file.
    void hostilePlanJsonIsRefused() {
        std::string dir = test::make_temp_dir("plan-hostile");
        std::string f = dir + "/deep.loftq.json";
        std::ofstream(f) << "{\"version\": 1, \"defaults\": " << std::string(100000, '[') << std::string(100000, ']') << "}";
        EXPECT_ERROR(load_plan(f), "deep.loftq.json", "nested more than 64");
        std::ofstream(f) << "{\"version\": 1, \"defaults\": {\"rank\": 8, \"rank\": 64}}";
        EXPECT_ERROR(load_plan(f), "deep.loftq.json", "'rank' appears twice");
    }

    // Patterns with catastrophic backtracking (they hung the CLI and froze the GUI with
    // std::regex) and a 40 KB tensor name (std::regex recursed once per character: stack
    // overflow) resolve in linear time; a backreference (not in RE2) is refused with the reason.
    void regexesRunInLinearTime() {
        std::vector<TensorMeta> ts;
        for (int l = 0; l < 4; ++l)
            for (const char* m : {"self_attn.q_proj", "mlp.up_proj"})
                ts.push_back({"model.layers." + std::to_string(l) + "." + m + ".weight", DType::F32, {64, 64}});
        const std::string huge = "model.layers.1." + std::string(40000, 'a') + "_proj.weight";
        ts.push_back({huge, DType::F32, {64, 64}});
        ts.push_back({std::string(30000, 'a') + "!", DType::F32, {64, 64}});
        QElapsedTimer t;
        t.start();
        for (const char* pat : {R"(^(\w+\.?)+\.bias$)", "(a+)+$", "(a|aa)+$", "(.*a){20}"}) {
            Plan p;
            PlanRule r;
            r.pattern = pat;
            r.regex = true;
            r.set.rank = 4;
            p.rules.push_back(r);
            ResolvedPlan rp = resolve_plan(p, ts);
            QVERIFY(!rp.weights.empty());
            (void)rule_matches(r, ts);
        }
        QCOMPARE(layer_of(huge), 1);
        QCOMPARE(module_of(huge), std::string(40000, 'a') + "_proj");
        QCOMPARE(layer_of("model.layers.99999999999999999999.mlp.up_proj.weight"), -1);   // does not fit an int
        QCOMPARE(layer_of("transformer.h.11.attn.c_attn.weight"), 11);
        QCOMPARE(layer_of("model.layer.3.x"), 3);
        QCOMPARE(layer_of("model.layers.3"), -1);
        QCOMPARE(module_of("model.layers.0.self_attn.q_proj.weight"), std::string("q_proj"));
        QCOMPARE(module_of("transformer.h.0.mlp.c_proj.weight"), std::string("mlp.c_proj"));
        QVERIFY2(t.elapsed() < 2000, qPrintable(QString::number(t.elapsed())));   // a ceiling against a hang
        PlanRule bad;
        bad.pattern = R"((a)\1)";
        bad.regex = true;
        EXPECT_ERROR(rule_matches(bad, ts), "invalid regex", "(a)\\1");
    }

    // The GUI's rule preview: the cells a rule's pattern and layer range touch, whatever later
    // rules do, must be exactly those resolve_plan applies the rule to.
    void rulePreviewAgreesWithResolve() {
        auto t = llama_tensors(4);
        PlanRule r;
        r.pattern = "*.mlp.*";
        r.layer_min = 1;
        r.layer_max = 2;
        r.set.rank = 7;
        std::vector<bool> hit = rule_matches(r, t);
        Plan p;
        p.rules = {r};
        ResolvedPlan rp = resolve_plan(p, t);
        int n = 0;
        for (size_t i = 0; i < t.size(); ++i) {
            const WeightPlan* w = find(rp, t[i].name);
            bool has_rank7 = w && w->s.rank == 7;
            QCOMPARE(bool(hit[i]), has_rank7 || (hit[i] && !w));  // hits on non-targets are still hits
            n += hit[i];
        }
        QCOMPARE(n, 2 * 3);  // gate, up, down in layers 1 and 2
        PlanRule bad;
        bad.regex = true;
        bad.pattern = "q_proj(";
        QVERIFY_THROWS_EXCEPTION(Error, rule_matches(bad, t));
    }

    // Regression (found by the grid's tests): an override holding both "keep" and a quantizer
    // (a cell set to NF2, then to keep) came back from JSON quantized.
    void keepBesideAQuantizerSurvivesJson() {
        Plan p;
        SettingsPatch o;
        o.quant = QuantKind::NF2;
        o.target = false;
        p.overrides["model.layers.0.mlp.up_proj.weight"] = o;
        PlanRule r;
        r.pattern = "*.k_proj.weight";
        r.set = o;
        p.rules.push_back(r);
        Plan back = plan_from_json(json::parse(plan_to_json(p).dump()), "rt");
        const SettingsPatch& b = back.overrides.at("model.layers.0.mlp.up_proj.weight");
        QVERIFY(b.target && !*b.target);
        QVERIFY(b.quant && *b.quant == QuantKind::NF2);
        QVERIFY(back.rules[0].set.target && !*back.rules[0].set.target);
        QCOMPARE(plan_to_json(back).dump(), plan_to_json(p).dump());
        auto t = llama_tensors(1);
        QVERIFY(!find(resolve_plan(back, t), "model.layers.0.mlp.up_proj.weight"));
    }

    void mergePatchOverlaysSetFields() {
        SettingsPatch a;
        a.quant = QuantKind::NF2;
        a.rank = 8;
        SettingsPatch b;
        b.rank = 32;
        b.iters = 0;
        merge_patch(a, b);
        QVERIFY(a.quant == QuantKind::NF2);
        QCOMPARE(*a.rank, 32);
        QCOMPARE(*a.iters, 0);
        QVERIFY(!a.block && !a.svd && !a.target);
    }

    void globMatching() {
        QVERIFY(glob_match("*", "a.b.c"));
        QVERIFY(glob_match("model.layers.*.mlp.*", "model.layers.3.mlp.up_proj.weight"));
        QVERIFY(!glob_match("model.layers.*.mlp.*", "model.layers.3.self_attn.q_proj.weight"));
        QVERIFY(glob_match("*.?_proj.weight", "x.q_proj.weight"));
        QVERIFY(!glob_match("*.?_proj.weight", "x.up_proj.weight"));
        QVERIFY(glob_match("a*b*c", "aXXbYYc"));
        QVERIFY(!glob_match("a*b*c", "aXXbYY"));
    }
};

QTEST_APPLESS_MAIN(TestPlan)
#include "test_plan.moc"
