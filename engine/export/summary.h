// summary.h: what a packed LoftQ export holds, in the planner's terms, for `loftq inspect`
// and `loftq-studio` opening an export: its tensors as the source had them (quantized weights
// under their own names, with source dtype and shape), the plan that made it with every
// weight's quantizer / block / rank made explicit, and the recorded run (QLoRA error, error
// after each step, final error) from loftq_metrics.json when present. Reads headers and the
// metrics only, never weights.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "loftq/job.h"
#include "loftq/plan.h"

namespace loftq {

struct ExportSummary {
    std::string dir;
    std::vector<TensorMeta> tensors;   // logical tensors in source order
    Plan plan;                         // the export's plan + per-weight overrides as stored
    bool has_metrics = false;
    QuantizeResult result;             // from loftq_metrics.json: weights in resolve order
    uint64_t stored_quantized_bytes = 0;   // codes + scales tensors of every quantized weight
};

// Throws loftq::Error naming the file for anything malformed.
ExportSummary read_packed_export(const std::string& path);

// The plan an HF-layout LoftQ export was made with (a folder with loftq_init/ and
// loftq_metrics.json): the manifest's plan, with every weight the metrics list made explicit
// (its quantizer, block, rank, steps and SVD as run). nullopt when `dir` is not such an export.
// Throws loftq::Error naming loftq_metrics.json when it is malformed.
std::optional<Plan> hf_export_plan(const std::string& dir);

}  // namespace loftq
