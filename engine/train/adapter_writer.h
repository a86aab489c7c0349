// adapter_writer.h: the PEFT LoRA adapter folder a fine-tuning run leaves (OUT/adapter/), and
// the reader `loftq eval --adapter` uses to put it back into a model.
//   adapter_model.safetensors: base_model.model.<module>.lora_A.weight (r x in) and .lora_B.weight
//     (out x r), F32, as LlamaModel::trainable() names them;
//   adapter_config.json: peft_adapter_config (r, lora_alpha, target_modules, rank/alpha patterns,
//     base_model_name_or_path, task_type CAUSAL_LM) — what `peft.PeftModel.from_pretrained` reads;
//   loftq_base.json: how the frozen base was built (the LoadOptions: model, init, quantizer,
//     block, rank, iters, alpha, seed), so that the same base can be rebuilt for evaluation
//     (PEFT ignores the file).
// Everything is staged and renamed into place together (fsutil.h StagedOutput).
// Leaves out: fan_in_fan_out (GPT-2 Conv1D) weights: the LLaMA model has none.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/peft_adapter.h"
#include "model/llama.h"

namespace loftq {

nlohmann::ordered_json load_options_json(const LoadOptions& o);
// Fills `o` from load_options_json's output; throws loftq::Error naming `file` on bad fields.
LoadOptions load_options_from_json(const nlohmann::json& j, const std::string& file);

// The PEFT modules (path, kind, rank, alpha = scale * rank) of every adapted site.
std::vector<AdapterModule> adapter_modules(const LlamaModel& model);

// Writes `dir`/{adapter_model.safetensors, adapter_config.json, loftq_base.json} atomically.
// Returns the final paths.
std::vector<std::string> write_peft_adapter(const std::string& dir, LlamaModel& model, const LoadOptions& base);

struct AdapterInfo {
    int r = 0;                    // most common rank (adapter_config "r")
    double lora_alpha = 0;        // most common alpha
    bool has_base = false;        // loftq_base.json was present
    LoadOptions base;             // its contents
};
// Reads adapter_config.json (and loftq_base.json when present). Throws loftq::Error naming the file.
AdapterInfo read_adapter_info(const std::string& dir);

// Copies the adapter's A and B into the model's LoRA tensors (B rescaled when the adapter's
// alpha / r differs from the model's scale for that module). Throws loftq::Error naming the file
// and tensor when a tensor is missing, has another shape or dtype, holds NaN/Inf, or is not a
// LoRA tensor of this model.
void apply_peft_adapter(const std::string& dir, LlamaModel& model);

}  // namespace loftq
