// synthetic_model.h: writes a small LLaMA-shaped Hugging Face checkpoint with structured,
// LLM-like weights, so that tests, benchmarks and `loftq make-demo` (and the GUI's --demo) have a
// real-format model without any download. Each projection is a sum of rank-one terms with a
// power-law spectrum plus Gaussian noise and a few outlier columns (as trained LLM weights have),
// so LoftQ has real low-rank structure to recover. Not a trained model: its outputs are noise.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace loftq {

struct SyntheticSpec {
    int layers = 4, hidden = 256, intermediate = 688, heads = 8, kv_heads = 4, vocab = 512;
    DType dtype = DType::BF16;
    bool tie_embeddings = false;
    uint64_t seed = 1234;
    uint64_t max_shard_bytes = 0;  // 0 = one model.safetensors; else shards + index
};

// Writes config.json, model.safetensors (or shards + index), tokenizer_config.json and
// generation_config.json into `dir` (created). Atomic per file.
void write_synthetic_model(const std::string& dir, const SyntheticSpec& spec);

// One rows x cols projection weight of the kind write_synthetic_model writes (row-major fp32).
std::vector<float> synthetic_projection(int64_t rows, int64_t cols, uint64_t seed);

}  // namespace loftq
