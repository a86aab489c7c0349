// target_plan.cpp: fuzz target for plans (loftq/plan.h): the file is loaded, resolved against a
// 4-layer LLaMA's tensor list (rules, regexes, layer ranges, overrides), summarised and written
// back to JSON, as the CLI and the app do with a plan a user opens.
#include "core/dtype.h"
#include "fuzz_support.h"
#include "loftq/plan.h"
#include "targets.h"

namespace loftq::fuzz {
namespace {

std::vector<TensorMeta> llama_tensors() {
    std::vector<TensorMeta> t;
    t.push_back({"model.embed_tokens.weight", DType::BF16, {64, 32}});
    for (int l = 0; l < 4; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        for (const char* m : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"})
            t.push_back({p + m + ".weight", DType::BF16, {32, 32}});
        for (const char* m : {"mlp.gate_proj", "mlp.up_proj"}) t.push_back({p + m + ".weight", DType::BF16, {64, 32}});
        t.push_back({p + "mlp.down_proj.weight", DType::BF16, {32, 64}});
        t.push_back({p + "input_layernorm.weight", DType::BF16, {32}});
        t.push_back({p + "self_attn.q_proj.bias", DType::F32, {32}});
    }
    t.push_back({"model.norm.weight", DType::BF16, {32}});
    t.push_back({"lm_head.weight", DType::BF16, {64, 32}});
    return t;
}

}  // namespace

int plan(const uint8_t* data, size_t size) {
    static const std::vector<TensorMeta> tensors = llama_tensors();
    const std::string path = write_scratch("plan/plan.loftq.json", data, size);
    Plan p;
    if (!expect_clean(path, [&] { p = load_plan(path); })) return 0;
    expect_clean(path, [&] {
        const ResolvedPlan rp = resolve_plan(p, tensors);
        for (const auto& w : rp.weights) (void)settings_summary(w.s);
        (void)plan_to_json(p).dump();
    });
    return 0;
}

}  // namespace loftq::fuzz
