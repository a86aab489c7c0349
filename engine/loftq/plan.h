// plan.h: what to do with each weight — quantizer, block, rank, alternating steps T, SVD — as
// plain data: defaults, ordered rules (glob or regex on tensor names, optional layer range) and
// per-weight overrides, later ones winning. Plans are JSON (`*.loftq.json`, see
// docs/PLAN-FORMAT.md); the CLI and the GUI read and write the same file.
//
// Targets: by default every 2-D float weight of the attention and MLP projections
// (LLaMA-family `*_proj.weight` under a decoder layer; GPT-2 `attn.c_attn`, `attn.c_proj`,
// `mlp.c_fc`, `mlp.c_proj`; BERT `attention.self.{query,key,value}`, `attention.output.dense`,
// `intermediate.dense`, `output.dense`). Embeddings, norms and the LM head are kept unless a rule
// says `"target": true`. `"quant": "keep"` keeps a weight in its source dtype (not a target).
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "linalg/svd.h"
#include "quant/quantizer.h"

namespace loftq {

struct WeightSettings {
    QuantKind quant = QuantKind::NF4;
    int block = 64;      // elements per scale block
    int rank = 16;       // LoRA rank r
    int iters = 5;       // alternating steps T; 0 = QLoRA baseline (no low-rank correction)
    SvdMethod svd = SvdMethod::Randomized;
    bool operator==(const WeightSettings&) const = default;
};

// Settings a rule or override changes; unset fields leave what was there.
struct SettingsPatch {
    std::optional<bool> target;       // include / exclude the tensor ("quant": "keep" sets false)
    std::optional<QuantKind> quant;
    std::optional<int> block, rank, iters;
    std::optional<SvdMethod> svd;
    bool empty() const { return !target && !quant && !block && !rank && !iters && !svd; }
};

struct PlanRule {
    std::string pattern;              // glob (whole name; '*' spans dots, '?' one char) or regex
    bool regex = false;               // regex (RE2 syntax, linear time: loftq/name_regex.h), searched anywhere in the name
    std::optional<int> layer_min, layer_max;  // inclusive; a rule with a range skips unlayered tensors
    SettingsPatch set;
};

struct Plan {
    int version = 1;
    WeightSettings defaults;
    std::vector<PlanRule> rules;
    std::map<std::string, SettingsPatch> overrides;  // exact tensor name
    int oversample = 10, power_iters = 2;            // randomized SVD
    uint64_t seed = 0;                               // mixed with each weight's name
    std::optional<double> lora_alpha;                // PEFT lora_alpha; unset = each weight's rank (scale 1)
    std::string model;                               // informational: the model it was made for
};

// A tensor as the planner sees it.
struct TensorMeta {
    std::string name;
    DType dtype = DType::Unknown;
    std::vector<int64_t> shape;
};

// One resolved target weight.
struct WeightPlan {
    int tensor = -1;         // index into the tensor list given to resolve_plan
    std::string name;        // full tensor name
    std::string module;      // module kind, e.g. "q_proj", "mlp.c_fc"
    int layer = -1;          // decoder layer index, -1 when none
    int64_t rows = 0, cols = 0;
    WeightSettings s;
};

struct ResolvedPlan {
    std::vector<WeightPlan> weights;    // in tensor order
    std::vector<std::string> warnings;  // e.g. an override naming no tensor, a rule matching nothing
};

// Name helpers (also used by the GUI grid): layer index from ".layers.N." / ".h.N." / ".layer.N." /
// ".blocks.N." (-1 if none), and the module kind (the name after the layer index, minus
// ".weight", with "self_attn." / "attention." style containers dropped for LLaMA names).
int layer_of(const std::string& name);
std::string module_of(const std::string& name);
bool default_target(const TensorMeta& t);
bool glob_match(const std::string& pattern, const std::string& name);

ResolvedPlan resolve_plan(const Plan& plan, const std::vector<TensorMeta>& tensors);
// Which tensors a rule's pattern and layer range touch (whatever later rules or overrides then
// do to them): the GUI's rule preview. Throws loftq::Error for an invalid regex.
std::vector<bool> rule_matches(const PlanRule& r, const std::vector<TensorMeta>& tensors);
// Overlays the fields `p` sets onto `into` (a grid edit on a weight that already has an override).
void merge_patch(SettingsPatch& into, const SettingsPatch& p);

// JSON. parse throws loftq::Error naming `source` (a file name) and the JSON path of the problem.
Plan plan_from_json(const nlohmann::json& j, const std::string& source = "plan");
Plan load_plan(const std::string& path);
nlohmann::ordered_json plan_to_json(const Plan& p);
void save_plan(const Plan& p, const std::string& path);  // atomic write

std::string settings_summary(const WeightSettings& s);   // "nf4/b64 r16 T5 randomized"

}  // namespace loftq
