// footprint.h: the bytes an export of a plan will take on disk, per format, before it runs (the
// export dialog and the budget bar show it).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "loftq/budget.h"
#include "loftq/exporter.h"

namespace loftq {

// What an export folder of the plan takes on disk, which is more than plan_size: the exports
// store the LoRA factors in fp32 (4 bytes where the plan counts 2, the size of a bf16 adapter as
// trained), in loftq_init/ and, for the packed layout, once more in the model file; the HF layout
// stores every target as its dequantized Q at the source dtype. Tensor payloads are exact; the
// safetensors headers are estimated (~100 bytes per tensor plus the packed metadata). Config,
// tokenizer and metrics files are left out. Packed: without double quantization (with it the
// scales shrink by about 3/4).
struct ExportFootprint {
    uint64_t model_bytes = 0;     // model*.safetensors payloads
    uint64_t adapter_bytes = 0;   // loftq_init/adapter_model.safetensors payload (LoRA fp32)
    uint64_t header_bytes = 0;    // estimated safetensors headers of both
    uint64_t total() const { return model_bytes + adapter_bytes + header_bytes; }
};
ExportFootprint export_footprint(const ResolvedPlan& plan, const std::vector<TensorMeta>& tensors, ExportFormat format);

}  // namespace loftq
