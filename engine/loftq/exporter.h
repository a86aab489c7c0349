// exporter.h: what the quantize job (job.h) writes results through, the interface only, and the
// output formats' names. The implementations, one per format, live in engine/export
// (export/quantize.h picks one by QuantizeOptions::format); the job knows none of them.
// The job calls write_copy / write_target from worker threads (thread-safe), then commit once
// on one thread; an exporter destroyed without commit leaves nothing in place.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/name_table.h"
#include "io/checkpoint.h"
#include "loftq/decompose.h"

namespace loftq {

// The output formats (export/quantize.h has each one's layout): the Hugging Face LoftQ layout
// (targets dequantized), packed k-bit codes + block scales, bitsandbytes NF4.
enum class ExportFormat : uint8_t { Hf, Packed, BnbNf4 };
inline constexpr auto kExportFormatNames = name_table<ExportFormat>(
    "export format", {{ExportFormat::Hf, "hf"}, {ExportFormat::Packed, "packed"}, {ExportFormat::BnbNf4, "bnb-nf4"}});

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

// Makes the job's exporter once the checkpoint is open and the plan resolved (before any weight
// runs, so that a refused output folder costs nothing).
using ExporterFactory =
    std::function<std::unique_ptr<Exporter>(const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan)>;

}  // namespace loftq
