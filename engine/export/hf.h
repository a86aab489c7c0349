// hf.h: the Hugging Face LoftQ layout, loadable by transformers + peft unchanged:
//   OUT/config.json, tokenizer/generation files copied from the source;
//   OUT/model.safetensors (or shards + model.safetensors.index.json): every source tensor, targets
//     replaced by the dequantized Q in the source dtype, all others copied bit-exactly;
//   OUT/loftq_init/adapter_model.safetensors: base_model.model.<module>.lora_A.weight (r x in) and
//     .lora_B.weight (out x r), fp32, and OUT/loftq_init/adapter_config.json;
//   OUT/loftq_metrics.json and .csv: the plan each weight ran, QLoRA baseline, error per step,
//     timings, and a run manifest (tool version, seeds, settings, input checksums);
//   any QuantizeOptions::extra_files (the GUI's plots), in the same commit.
// lora_alpha: by default each module's alpha equals its rank (PEFT scale alpha / r = 1, so B A is
// stored as computed, exactly); with a plan lora_alpha, A and B are each multiplied by
// sqrt(r / alpha) so that (alpha / r) B A equals the computed term (to fp32 rounding).
// Weights run with T = 0 (QLoRA) get QLoRA's init instead: A ~ kaiming-uniform
// (bound 1/sqrt(in)), B = 0.
// GPT-2 Conv1D weights are stored (in x out): their factors are transposed into PEFT's
// (r x in, out x r) and the config says fan_in_fan_out.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "loftq/exporter.h"
#include "loftq/job.h"

namespace loftq {

class HfExport : public Exporter {
public:
    // Opens the writers (partial files). Throws loftq::Error if out_dir is the input's folder or
    // holds the input, or is non-empty without `force`.
    HfExport(const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan);
    ~HfExport() override;
    // Thread-safe writers, called as results finish.
    void write_copy(const TensorEntry& t) override;  // a non-target tensor, bit-exact
    void write_target(size_t weight_index, const Decomposition& d) override;
    // Writes config, tokenizer files, adapter config and metrics, then renames everything into
    // place (metrics last). Returns the final file paths.
    std::vector<std::string> commit(const QuantizeResult& result, const nlohmann::ordered_json& manifest) override;

private:
    struct Impl;
    std::unique_ptr<Impl> p_;
};

}  // namespace loftq
