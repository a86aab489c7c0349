// exporter.h: what the quantize job writes results through. One implementation per output
// format, chosen by QuantizeOptions::format:
//   "hf"      the Hugging Face LoftQ layout, backbone dequantized (export_hf.h);
//   "packed"  packed k-bit codes + block scales + LoRA factors in safetensors (export_packed.h,
//             docs/FORMAT.md);
//   "bnb-nf4" the bitsandbytes 4-bit serialization transformers loads pre-quantized, with the
//             loftq_init adapter beside it (export_bnb.h).
// The job calls write_copy / write_target from worker threads (thread-safe), then commit once
// on one thread; an exporter destroyed without commit leaves nothing in place.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "loftq/decompose.h"

namespace loftq {

struct QuantizeOptions;
struct QuantizeResult;
struct ResolvedPlan;

class Exporter {
public:
    virtual ~Exporter() = default;
    virtual void write_copy(const TensorEntry& t) = 0;                       // a non-target tensor
    virtual void write_target(size_t weight_index, const Decomposition& d) = 0;
    // Writes the remaining files (config, tokenizer, adapter config, metrics, extra files) and
    // renames everything into place in one commit. Returns the final paths.
    virtual std::vector<std::string> commit(const QuantizeResult& result, const nlohmann::ordered_json& manifest) = 0;
};

// The exporter for opt.format; throws loftq::Error for an unknown format or a plan the format
// cannot hold (e.g. bnb-nf4 with a weight that is not NF4 / block 64).
std::unique_ptr<Exporter> make_exporter(const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan);

}  // namespace loftq
