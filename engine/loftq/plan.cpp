// plan.cpp: plan resolution (defaults -> rules in order -> overrides) and the JSON form with
// strict validation: unknown keys and wrong types are errors naming the file and the key path,
// because a typo in a plan ("rnak": 64) silently doing nothing costs a user hours.
#include "loftq/plan.h"

#include <charconv>
#include <cstring>

#include "core/error.h"
#include "core/fsutil.h"
#include "io/json_read.h"
#include "loftq/name_regex.h"

namespace loftq {

using json = nlohmann::json;


std::string settings_summary(const WeightSettings& s) {
    return std::string(quant_format(s.quant).name) + "/b" + std::to_string(s.block) + " r" + std::to_string(s.rank) +
           " T" + std::to_string(s.iters) + " " + kSvdMethodNames.name(s.svd);
}

// The leftmost ".<layers|layer|h|blocks>.<digits>." in a name: the layer number and where the
// rest of the name starts; false when there is none (or the number does not fit an int). A scan
// in linear time: names come from files and may be long (std::regex recursed once per character).
static bool find_layer(const std::string& name, int* layer, size_t* rest) {
    static const char* const kWords[] = {"layers", "layer", "h", "blocks"};
    for (size_t i = name.find('.'); i != std::string::npos; i = name.find('.', i + 1)) {
        for (const char* w : kWords) {
            const size_t wl = std::strlen(w), d0 = i + 1 + wl + 1;
            if (name.compare(i + 1, wl, w) != 0 || d0 > name.size() || name[d0 - 1] != '.') continue;
            size_t d = d0;
            while (d < name.size() && name[d] >= '0' && name[d] <= '9') ++d;
            if (d == d0 || d >= name.size() || name[d] != '.') continue;
            int v = 0;
            auto [ptr, ec] = std::from_chars(name.data() + d0, name.data() + d, v);
            if (ec != std::errc() || ptr != name.data() + d) continue;
            *layer = v;
            *rest = d + 1;
            return true;
        }
    }
    return false;
}

int layer_of(const std::string& name) {
    int layer = -1;
    size_t rest = 0;
    return find_layer(name, &layer, &rest) ? layer : -1;
}

std::string module_of(const std::string& name) {
    int layer = -1;
    size_t at = 0;
    std::string rest = find_layer(name, &layer, &at) ? name.substr(at) : name;
    if (rest.ends_with(".weight") && rest.size() > 7) rest.resize(rest.size() - 7);
    // LLaMA-family: "self_attn.q_proj" -> "q_proj", "mlp.gate_proj" -> "gate_proj".
    auto dot = rest.rfind('.');
    std::string last = dot == std::string::npos ? rest : rest.substr(dot + 1);
    if (last.size() > 5 && last.ends_with("_proj") && last != "c_proj") return last;
    return rest;
}

bool default_target(const TensorMeta& t) {
    if (t.shape.size() != 2 || !dtype_is_float_convertible(t.dtype)) return false;
    const std::string& n = t.name;
    if (layer_of(n) < 0) return false;  // embeddings, final norm, LM head
    // LLaMA-family projections, GPT-2's Conv1D modules, BERT-family attention and MLP.
    static const char* const kSuffixes[] = {
        "_proj.weight", ".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight",
        ".attention.self.query.weight", ".attention.self.key.weight", ".attention.self.value.weight",
        ".attention.output.dense.weight", ".intermediate.dense.weight", ".output.dense.weight"};
    for (const char* suf : kSuffixes)
        if (n.ends_with(suf)) return true;
    return false;
}

bool glob_match(const std::string& p, const std::string& s) {
    // Iterative wildcard match with backtracking on the last '*'.
    size_t pi = 0, si = 0, star = std::string::npos, mark = 0;
    while (si < s.size()) {
        if (pi < p.size() && (p[pi] == '?' || p[pi] == s[si])) { ++pi; ++si; }
        else if (pi < p.size() && p[pi] == '*') { star = pi++; mark = si; }
        else if (star != std::string::npos) { pi = star + 1; si = ++mark; }
        else return false;
    }
    while (pi < p.size() && p[pi] == '*') ++pi;
    return pi == p.size();
}

static void apply(WeightSettings& s, bool& target, const SettingsPatch& p) {
    if (p.target) target = *p.target;
    if (p.quant) s.quant = *p.quant;
    if (p.block) s.block = *p.block;
    if (p.rank) s.rank = *p.rank;
    if (p.iters) s.iters = *p.iters;
    if (p.svd) s.svd = *p.svd;
}

void merge_patch(SettingsPatch& into, const SettingsPatch& p) {
    if (p.target) into.target = p.target;
    if (p.quant) into.quant = p.quant;
    if (p.block) into.block = p.block;
    if (p.rank) into.rank = p.rank;
    if (p.iters) into.iters = p.iters;
    if (p.svd) into.svd = p.svd;
}

// Does rule r (with its compiled regex, if any) touch the tensor `name` in decoder layer `layer`?
static bool rule_hit(const PlanRule& r, const NameRegex& re, const std::string& name, int layer) {
    if (r.layer_min || r.layer_max) {
        if (layer < 0) return false;
        if (r.layer_min && layer < *r.layer_min) return false;
        if (r.layer_max && layer > *r.layer_max) return false;
    }
    return r.regex ? re.search(name) : glob_match(r.pattern, name);
}

std::vector<bool> rule_matches(const PlanRule& r, const std::vector<TensorMeta>& tensors) {
    NameRegex re;
    if (r.regex) re = NameRegex(r.pattern, "plan: rule pattern");
    std::vector<bool> out(tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) out[i] = rule_hit(r, re, tensors[i].name, layer_of(tensors[i].name));
    return out;
}

ResolvedPlan resolve_plan(const Plan& plan, const std::vector<TensorMeta>& tensors) {
    ResolvedPlan out;
    std::vector<NameRegex> regs(plan.rules.size());
    for (size_t i = 0; i < plan.rules.size(); ++i)
        if (plan.rules[i].regex) regs[i] = NameRegex(plan.rules[i].pattern, "plan: rule pattern");
    std::vector<int> rule_hits(plan.rules.size(), 0);
    // Per rule: default targets it named a quantizer for (without "target") that an earlier
    // "keep" / "target": false had excluded and that stayed excluded: a likely mistake, warned.
    std::vector<int> rule_unrevived(plan.rules.size(), 0);
    std::map<std::string, bool> override_seen;
    for (auto& [k, v] : plan.overrides) override_seen[k] = false;

    for (size_t ti = 0; ti < tensors.size(); ++ti) {
        const TensorMeta& t = tensors[ti];
        bool target = default_target(t);
        WeightSettings s = plan.defaults;
        int layer = layer_of(t.name);
        int quant_after_exclusion = -1;  // the last rule naming a quantizer for it while excluded
        for (size_t ri = 0; ri < plan.rules.size(); ++ri) {
            if (!rule_hit(plan.rules[ri], regs[ri], t.name, layer)) continue;
            ++rule_hits[ri];
            const SettingsPatch& set = plan.rules[ri].set;
            if (!target && set.quant && !set.target) quant_after_exclusion = int(ri);
            if (set.target) quant_after_exclusion = -1;  // excluded or revived on purpose from here
            apply(s, target, set);
        }
        auto ov = plan.overrides.find(t.name);
        if (ov != plan.overrides.end()) {
            override_seen[t.name] = true;
            apply(s, target, ov->second);
        }
        if (!target && quant_after_exclusion >= 0 && default_target(t)) ++rule_unrevived[size_t(quant_after_exclusion)];
        if (!target) continue;
        if (t.shape.size() != 2 || !dtype_is_float_convertible(t.dtype)) {
            out.warnings.push_back("'" + t.name + "' was selected but is not a 2-D F32/F16/BF16 weight: kept");
            continue;
        }
        WeightPlan w;
        w.tensor = int(ti);
        w.name = t.name;
        w.module = module_of(t.name);
        w.layer = layer;
        w.rows = t.shape[0];
        w.cols = t.shape[1];
        w.s = s;
        out.weights.push_back(std::move(w));
    }
    for (size_t ri = 0; ri < plan.rules.size(); ++ri) {
        if (rule_hits[ri] == 0) out.warnings.push_back("rule " + std::to_string(ri) + " ('" + plan.rules[ri].pattern + "') matches no tensor");
        if (rule_unrevived[ri] > 0)
            out.warnings.push_back("rule " + std::to_string(ri) + " ('" + plan.rules[ri].pattern + "') names a quantizer for " +
                                   std::to_string(rule_unrevived[ri]) +
                                   " weights that an earlier rule excluded (\"quant\": \"keep\" or \"target\": false); they stay "
                                   "unquantized: add \"target\": true to that rule to quantize them");
    }
    for (auto& [k, seen] : override_seen)
        if (!seen) out.warnings.push_back("override '" + k + "' names no tensor of the model");
    return out;
}

// ---------------------------------------------------------------- JSON

namespace {

struct Ctx {
    const std::string& source;
    [[noreturn]] void fail(const std::string& path, const std::string& msg) const { throw Error(source, "", path + ": " + msg); }
};

void check_keys(const Ctx& c, const json& obj, const std::string& path, std::initializer_list<const char*> allowed) {
    if (!obj.is_object()) c.fail(path, "expected an object");
    for (auto it = obj.begin(); it != obj.end(); ++it) {
        bool ok = false;
        for (auto a : allowed) ok |= it.key() == a;
        if (!ok) {
            std::string list;
            for (auto a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
            c.fail(path + "." + it.key(), "unknown key (expected one of: " + list + ")");
        }
    }
}

int get_int(const Ctx& c, const json& v, const std::string& path, int lo, int hi) {
    if (!v.is_number_integer()) c.fail(path, "expected an integer, got " + v.dump());
    int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) c.fail(path, "value " + std::to_string(x) + " out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return int(x);
}

SvdMethod get_svd(const Ctx& c, const json& v, const std::string& path) {
    if (v.is_string())
        if (auto m = kSvdMethodNames.find(v.get<std::string>())) return *m;
    c.fail(path, "expected " + kSvdMethodNames.choices() + ", got " + v.dump());
}

// "quant" may name a quantizer or "keep" (not quantized); returns nullopt for keep.
std::optional<QuantKind> get_quant(const Ctx& c, const json& v, const std::string& path, bool& keep) {
    keep = false;
    if (!v.is_string()) c.fail(path, "expected a string, got " + v.dump());
    std::string s = v.get<std::string>();
    if (s == "keep" || s == "fp16" || s == "bf16" || s == "none") { keep = true; return std::nullopt; }
    auto k = quant_kind_from_name(s);
    if (!k) c.fail(path, "unknown quantizer '" + s + "' (expected nf4, nf3, nf2, int2, int3, int4, int8 or keep)");
    return k;
}

constexpr int kMaxBlock = 1 << 20, kMaxRank = 65536, kMaxIters = 100;

SettingsPatch get_patch(const Ctx& c, const json& o, const std::string& path, bool allow_target) {
    SettingsPatch p;
    bool keep = false;  // "quant": "keep" excludes the tensor even beside "target": true
    for (auto it = o.begin(); it != o.end(); ++it) {
        const std::string& k = it.key();
        std::string kp = path + "." + k;
        if (k == "quant") {
            auto q = get_quant(c, *it, kp, keep);
            if (!keep) p.quant = q;
        } else if (k == "block") p.block = get_int(c, *it, kp, 1, kMaxBlock);
        else if (k == "rank") p.rank = get_int(c, *it, kp, 0, kMaxRank);
        else if (k == "iters") p.iters = get_int(c, *it, kp, 0, kMaxIters);
        else if (k == "svd") p.svd = get_svd(c, *it, kp);
        else if (k == "target" && allow_target) {
            if (!it->is_boolean()) c.fail(kp, "expected true or false");
            p.target = it->get<bool>();
        }
    }
    if (keep) p.target = false;
    return p;
}

}  // namespace

Plan plan_from_json(const json& j, const std::string& source) {
    Ctx c{source};
    Plan p;
    check_keys(c, j, "$", {"format", "version", "model", "comment", "defaults", "svd", "seed", "lora_alpha", "rules", "overrides"});
    if (j.contains("format") && j["format"] != "loftq-plan") c.fail("$.format", "expected \"loftq-plan\", got " + j["format"].dump());
    if (!j.contains("version")) c.fail("$.version", "missing (this reader understands version 1)");
    p.version = get_int(c, j["version"], "$.version", 1, 1000);
    if (p.version != 1) c.fail("$.version", "version " + std::to_string(p.version) + " is newer than this reader (1): update loftq");
    if (j.contains("model")) {
        if (!j["model"].is_string()) c.fail("$.model", "expected a string");
        p.model = j["model"].get<std::string>();
    }
    if (j.contains("defaults")) {
        const json& d = j["defaults"];
        check_keys(c, d, "$.defaults", {"quant", "block", "rank", "iters", "svd"});
        SettingsPatch patch = get_patch(c, d, "$.defaults", false);
        if (patch.target) c.fail("$.defaults.quant", "\"keep\" is not a default; use a rule to keep tensors");
        bool dummy = true;
        apply(p.defaults, dummy, patch);
    }
    if (j.contains("svd")) {
        const json& s = j["svd"];
        check_keys(c, s, "$.svd", {"oversample", "power_iters"});
        if (s.contains("oversample")) p.oversample = get_int(c, s["oversample"], "$.svd.oversample", 0, 1024);
        if (s.contains("power_iters")) p.power_iters = get_int(c, s["power_iters"], "$.svd.power_iters", 0, 32);
    }
    if (j.contains("seed")) {
        if (!j["seed"].is_number_unsigned() && !j["seed"].is_number_integer()) c.fail("$.seed", "expected a non-negative integer");
        if (j["seed"].is_number_integer() && j["seed"].get<int64_t>() < 0) c.fail("$.seed", "expected a non-negative integer");
        p.seed = j["seed"].get<uint64_t>();
    }
    if (j.contains("lora_alpha") && !j["lora_alpha"].is_null()) {
        if (!j["lora_alpha"].is_number() || j["lora_alpha"].get<double>() <= 0) c.fail("$.lora_alpha", "expected a positive number or null");
        p.lora_alpha = j["lora_alpha"].get<double>();
    }
    if (j.contains("rules")) {
        const json& rs = j["rules"];
        if (!rs.is_array()) c.fail("$.rules", "expected an array");
        for (size_t i = 0; i < rs.size(); ++i) {
            std::string path = "$.rules[" + std::to_string(i) + "]";
            const json& r = rs[i];
            check_keys(c, r, path, {"match", "regex", "layers", "target", "quant", "block", "rank", "iters", "svd", "comment"});
            PlanRule rule;
            if (!r.contains("match") || !r["match"].is_string() || r["match"].get<std::string>().empty())
                c.fail(path + ".match", "expected a non-empty glob or regex string");
            rule.pattern = r["match"].get<std::string>();
            if (r.contains("regex")) {
                if (!r["regex"].is_boolean()) c.fail(path + ".regex", "expected true or false");
                rule.regex = r["regex"].get<bool>();
            }
            if (rule.regex) {
                try {
                    NameRegex test(rule.pattern, "");
                } catch (const Error& e) {
                    c.fail(path + ".match", e.detail);
                }
            }
            if (r.contains("layers")) {
                const json& l = r["layers"];
                if (l.is_number_integer()) {
                    rule.layer_min = rule.layer_max = get_int(c, l, path + ".layers", 0, 1 << 20);
                } else if (l.is_array() && l.size() == 2) {
                    rule.layer_min = get_int(c, l[0], path + ".layers[0]", 0, 1 << 20);
                    rule.layer_max = get_int(c, l[1], path + ".layers[1]", 0, 1 << 20);
                    if (*rule.layer_min > *rule.layer_max) c.fail(path + ".layers", "first layer is after the last");
                } else {
                    c.fail(path + ".layers", "expected a layer index or [first, last], got " + l.dump());
                }
            }
            rule.set = get_patch(c, r, path, true);
            if (rule.set.empty()) c.fail(path, "the rule changes nothing (give quant, block, rank, iters, svd or target)");
            p.rules.push_back(std::move(rule));
        }
    }
    if (j.contains("overrides")) {
        const json& os = j["overrides"];
        if (!os.is_object()) c.fail("$.overrides", "expected an object {tensor name: settings}");
        for (auto it = os.begin(); it != os.end(); ++it) {
            std::string path = "$.overrides[\"" + it.key() + "\"]";
            check_keys(c, *it, path, {"target", "quant", "block", "rank", "iters", "svd"});
            p.overrides[it.key()] = get_patch(c, *it, path, true);
        }
    }
    return p;
}

Plan load_plan(const std::string& path) {
    return plan_from_json(read_json_file(path, "plan"), path);
}

static nlohmann::ordered_json patch_to_json(const SettingsPatch& p) {
    nlohmann::ordered_json o = nlohmann::ordered_json::object();
    // "keep" is written as "quant": "keep" unless the patch also names a quantizer (a rule or
    // override that excludes the tensor but keeps the quantizer for a later rule to re-target):
    // then "target": false beside it, so that both survive the round trip.
    if (p.target && !*p.target) {
        if (p.quant) o["target"] = false;
        else o["quant"] = "keep";
    } else if (p.target) {
        o["target"] = true;
    }
    if (p.quant) o["quant"] = quant_format(*p.quant).name;
    if (p.block) o["block"] = *p.block;
    if (p.rank) o["rank"] = *p.rank;
    if (p.iters) o["iters"] = *p.iters;
    if (p.svd) o["svd"] = kSvdMethodNames.name(*p.svd);
    return o;
}

nlohmann::ordered_json plan_to_json(const Plan& p) {
    nlohmann::ordered_json j;
    j["format"] = "loftq-plan";
    j["version"] = p.version;
    if (!p.model.empty()) j["model"] = p.model;
    j["defaults"] = {{"quant", quant_format(p.defaults.quant).name}, {"block", p.defaults.block}, {"rank", p.defaults.rank},
                     {"iters", p.defaults.iters}, {"svd", kSvdMethodNames.name(p.defaults.svd)}};
    j["svd"] = {{"oversample", p.oversample}, {"power_iters", p.power_iters}};
    j["seed"] = p.seed;
    j["lora_alpha"] = p.lora_alpha ? nlohmann::ordered_json(*p.lora_alpha) : nlohmann::ordered_json(nullptr);
    j["rules"] = nlohmann::ordered_json::array();
    for (const auto& r : p.rules) {
        nlohmann::ordered_json o;
        o["match"] = r.pattern;
        if (r.regex) o["regex"] = true;
        if (r.layer_min || r.layer_max) o["layers"] = {r.layer_min.value_or(0), r.layer_max.value_or(1 << 20)};
        auto patch = patch_to_json(r.set);
        for (auto& [k, v] : patch.items()) o[k] = v;
        j["rules"].push_back(o);
    }
    j["overrides"] = nlohmann::ordered_json::object();
    for (const auto& [name, patch] : p.overrides) j["overrides"][name] = patch_to_json(patch);
    return j;
}

void save_plan(const Plan& p, const std::string& path) { write_file_atomic(path, plan_to_json(p).dump(2) + "\n"); }

}  // namespace loftq
