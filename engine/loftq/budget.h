// budget.h: what a plan costs in bytes, the one accounting function the CLI, the GUI's budget
// bar and the exports share.
//
// A quantized target of n elements: packed k-bit codes (ceil(n k / 8) bytes) + one fp32 absmax
// per block (4 bytes) — the packed LoftQ layout — plus its LoRA factors r (m + n) at
// `lora_bytes` per parameter (2: bf16/fp16 adapters as trained). Every other tensor at its
// source size. The reference is the fp16 model: 2 bytes per float parameter (other dtypes at
// their size).
#pragma once
#include <string>
#include <cstdint>
#include <vector>

#include "loftq/plan.h"

namespace loftq {

struct PlanSize {
    uint64_t total_bytes = 0;       // quantized + lora + untouched
    uint64_t quantized_bytes = 0;   // codes + scales of targets
    uint64_t lora_bytes = 0;        // adapters
    uint64_t untouched_bytes = 0;   // non-targets at source size
    uint64_t fp16_bytes = 0;        // whole model at 16 bits per float parameter
    uint64_t source_bytes = 0;      // whole model at source dtypes
    uint64_t params = 0;            // all parameters (elements)
    uint64_t target_params = 0;     // elements of targets
    uint64_t lora_params = 0;
    double target_bits_per_weight() const { return target_params ? 8.0 * double(quantized_bytes) / double(target_params) : 0.0; }
    double bits_per_param() const { return params ? 8.0 * double(total_bytes) / double(params) : 0.0; }
};

uint64_t quantized_weight_bytes(int64_t rows, int64_t cols, const WeightSettings& s);
PlanSize plan_size(const ResolvedPlan& plan, const std::vector<TensorMeta>& tensors, int lora_bytes = 2);

}  // namespace loftq
