// peft_adapter.cpp: see peft_adapter.h.
#include "io/peft_adapter.h"

#include <algorithm>
#include <map>
#include <set>

namespace loftq {

std::string peft_lora_key(const std::string& module_path, char which) {
    return "base_model.model." + module_path + (which == 'A' ? ".lora_A.weight" : ".lora_B.weight");
}

namespace {
std::string regex_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (std::string("\\^$.|?*+()[]{}").find(c) != std::string::npos) o += '\\';
        o += c;
    }
    return o;
}
std::string kind_of_path(const std::string& p) {
    auto d = p.rfind('.');
    return d == std::string::npos ? p : p.substr(d + 1);
}
// Pattern key: the module path without its first component, escaped.
std::string pattern_key(const std::string& path) {
    auto d = path.find('.');
    return regex_escape(d == std::string::npos ? path : path.substr(d + 1));
}
template <class T>
T most_common(const std::vector<T>& v) {
    std::map<T, int> c;
    for (auto& x : v) ++c[x];
    T best = v.front();
    int n = 0;
    for (auto& [k, cnt] : c)
        if (cnt > n) { best = k; n = cnt; }
    return best;
}
}  // namespace

nlohmann::ordered_json peft_adapter_config(const std::vector<AdapterModule>& modules,
                                           const std::vector<std::string>& all_linear,
                                           const std::string& base_model_name_or_path,
                                           const std::string& task_type, bool fan_in_fan_out) {
    using oj = nlohmann::ordered_json;
    std::vector<int> ranks;
    std::vector<double> alphas;
    std::set<std::string> kinds, paths;
    for (auto& m : modules) {
        ranks.push_back(m.rank);
        alphas.push_back(m.alpha);
        kinds.insert(kind_of_path(m.path));
        paths.insert(m.path);
    }
    int r = modules.empty() ? 8 : most_common(ranks);
    double alpha = modules.empty() ? 8.0 : most_common(alphas);

    // A list of kinds works only if every linear module of those kinds is adapted.
    bool list_ok = true;
    for (auto& p : all_linear)
        if (kinds.count(kind_of_path(p)) && !paths.count(p)) list_ok = false;
    oj target;
    if (list_ok) {
        target = oj::array();
        for (auto& k : kinds) target.push_back(k);
    } else {
        std::string re;
        for (auto& p : paths) { if (!re.empty()) re += '|'; re += regex_escape(p); }
        target = "(" + re + ")";
    }
    oj rank_pattern = oj::object(), alpha_pattern = oj::object();
    for (auto& m : modules) {
        if (m.rank != r) rank_pattern[pattern_key(m.path)] = m.rank;
        if (m.alpha != alpha) alpha_pattern[pattern_key(m.path)] = m.alpha;
    }
    oj j;
    j["peft_type"] = "LORA";
    j["task_type"] = task_type;
    j["base_model_name_or_path"] = base_model_name_or_path;
    j["r"] = r;
    j["lora_alpha"] = alpha;
    j["lora_dropout"] = 0.0;
    j["target_modules"] = target;
    j["rank_pattern"] = rank_pattern;
    j["alpha_pattern"] = alpha_pattern;
    j["init_lora_weights"] = true;
    j["fan_in_fan_out"] = fan_in_fan_out;
    j["bias"] = "none";
    j["modules_to_save"] = nullptr;
    j["inference_mode"] = true;
    j["use_rslora"] = false;
    j["use_dora"] = false;
    j["layers_to_transform"] = nullptr;
    j["layers_pattern"] = nullptr;
    j["revision"] = nullptr;
    return j;
}

}  // namespace loftq
