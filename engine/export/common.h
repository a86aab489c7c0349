// common.h: what every export format shares (export_hf, export_packed, unpack): the
// output-folder checks, the PEFT adapter (ranks, alphas, GPT-2 Conv1D orientation, the
// factors exactly as loftq_init stores them), the trailing files of an export (config,
// tokenizer, adapter config, extra files, metrics last) and removal of stale weight files after
// a --force export. Formats keep only their own weight layout.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/fsutil.h"
#include "core/matrix.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "io/sharded_writer.h"
#include "loftq/decompose.h"
#include "loftq/job.h"

namespace loftq {

// GPT-2's Conv1D modules (c_attn, c_proj, c_fc) store weights (in x out): their factors are
// transposed into PEFT's orientation and the adapter config says fan_in_fan_out.
bool is_conv1d(const ModelConfig& cfg, const std::string& module);
// The adapter config's task_type: SEQ_CLS for encoder models (BERT family), else CAUSAL_LM.
std::string peft_task_type(const ModelConfig& cfg);

// "model.layers.0.mlp.up_proj.weight" -> "model.layers.0.mlp.up_proj" (names without ".weight"
// are returned as they are).
std::string module_path(const std::string& tensor_name);

// A non-target tensor copied as it was (bytes in HF layout), its mapped pages released after.
void copy_tensor(const Checkpoint& ck, const TensorEntry& t, ShardedWriter& out);
// The writer of DIR/loftq_init/adapter_model.safetensors for an adapter layout (DIR: staged.dir()).
std::unique_ptr<ShardedWriter> open_adapter_writer(const std::string& dir, const std::vector<OutTensor>& layout);

// The absolute, normalized output folder; its parent is created, the folder itself is not (the
// export's staging folder is renamed into place at the end, see fsutil.h StagedOutput). Throws
// loftq::Error when it is (or holds) the input, is a file or a dangling link, or is non-empty
// without `force`. *created (when given): the folder does not exist yet.
std::string prepare_output_dir(const std::string& out_dir, const Checkpoint& ck, bool force, bool* created = nullptr);
// The same checks for a folder that must not be, or lie inside / around, `input_dir`.
std::string prepare_output_dir(const std::string& out_dir, const std::string& input_dir,
                               const std::vector<std::string>& input_files, bool force, bool* created = nullptr);

// The weight files of an export's layout, relative to its folder: `model.safetensors`,
// `model-XXXXX-of-XXXXX.safetensors`, `model.safetensors.index.json` and the same names of
// `loftq_init/adapter_model`. A --force export never carries these over from the folder it
// replaces (they are the old export's, and a stale shard or index would mislead a loader).
bool is_export_weight_file(const std::string& rel);
// How an export commits: the whole folder at once (StagedOutput::FolderSwap), the replaced
// folder's other files (a user's notes, older plots) carried over, its weight files not.
StagedOutput::FolderSwap export_folder_swap();

// What an exporter's state starts with (hf, packed): the job's inputs and its output folder,
// prepared (checked) and staged: writers write under staged.dir() (the staging folder beside
// `out`); files record `out`. Members an exporter adds after it are destroyed first, so its
// writers are gone before the staging folder is removed (an abandoned export).
struct ExportState {
    const Checkpoint& ck;
    const QuantizeOptions& opt;
    const ResolvedPlan& plan;
    bool created = false;
    std::string out;
    StagedOutput staged;
    ExportState(const Checkpoint& c, const QuantizeOptions& o, const ResolvedPlan& p)
        : ck(c), opt(o), plan(p), out(prepare_output_dir(o.out_dir, c, o.force, &created)),
          staged(out, export_folder_swap()) {}
};

// The loftq_init adapter of a plan: per weight its exported rank (clamped to min(m, n); 0 = no
// factors), lora_alpha and Conv1D flag, and the adapter file's layout (PEFT keys, fp32).
struct AdapterPlan {
    std::vector<int> ranks;
    std::vector<double> alphas;
    std::vector<bool> conv1d;
    std::vector<OutTensor> layout;
    AdapterPlan(const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan);
};

// Weight wi's factors in PEFT orientation, exactly as loftq_init stores them: A (r x in),
// B (out x r), fp32, scaled by sqrt(r / alpha); QLoRA's init when the weight ran T = 0;
// transposed for Conv1D (see export/hf.h). Requires ranks[wi] > 0.
struct PeftFactors {
    Matrix A, B;
};
PeftFactors peft_factors(const AdapterPlan& ap, const QuantizeOptions& opt, const WeightPlan& w, size_t wi,
                         const Decomposition& d);

// Stages config.json, the tokenizer/generation files, loftq_init/adapter_config.json (base
// model = `out`), the options' extra files, loftq_metrics.csv and loftq_metrics.json (last; the
// marker of a finished export; its "outputs" lists the size and XXH3-64 of every file staged
// before it, export/verify.h). `amend_metrics` may add format-specific fields to the JSON.
void stage_export_files(StagedOutput& staged, const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan,
                        const AdapterPlan& ap, const std::string& out, const QuantizeResult& result,
                        const nlohmann::ordered_json& manifest,
                        const std::function<void(nlohmann::ordered_json&)>& amend_metrics = {},
                        const std::function<void(nlohmann::json&)>& amend_config = {});
// Commits the staged folder (StagedOutput::commit) and returns the final paths of the files the
// export wrote, in staging order (data files first, the metrics last).
std::vector<std::string> finish_export(StagedOutput& staged);

}  // namespace loftq
