// peft_adapter.h: PEFT LoRA adapter naming and adapter_config.json for the `loftq_init` folder.
//
// Keys: base_model.model.<module path>.lora_A.weight (r x in), .lora_B.weight (out x r).
// PEFT scales B A by lora_alpha / r. The module set is written as a list of module kinds
// (["q_proj", "v_proj"]) when every weight of those kinds is adapted, else as a regex that
// PEFT full-matches against module paths. Ranks and alphas that differ from the most common
// ones go to rank_pattern / alpha_pattern, keyed so both old (".*\.KEY$") and new
// ("(.*\.)?KEY$") PEFT matching find exactly one module.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loftq {

struct AdapterModule {
    std::string path;   // module path, e.g. "model.layers.0.self_attn.q_proj"
    std::string kind;   // module kind, e.g. "q_proj"
    int rank = 0;
    double alpha = 0;   // lora_alpha for this module
};

std::string peft_lora_key(const std::string& module_path, char which /* 'A' or 'B' */);

// all_linear: module paths of every 2-D weight of the model (decides list vs regex).
nlohmann::ordered_json peft_adapter_config(const std::vector<AdapterModule>& modules,
                                           const std::vector<std::string>& all_linear,
                                           const std::string& base_model_name_or_path,
                                           const std::string& task_type, bool fan_in_fan_out);

}  // namespace loftq
