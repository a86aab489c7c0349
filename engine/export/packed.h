// packed.h: the packed LoftQ safetensors export (docs/FORMAT.md, "Packed LoftQ
// safetensors"): each target stored as its k-bit codes packed LSB-first (`<name>.qcodes`, U8)
// and its fp32 block absmax scales (`<name>.qscales`; with QuantizeOptions::double_quant,
// 8-bit scales + per-256 absmax + offset), beside its LoRA factors (`<module>.lora_A.weight`,
// `<module>.lora_B.weight`, fp32, the same values as loftq_init); every other tensor copied as
// it was. __metadata__ says "format": "loftq-packed", "format_version": "1" and holds per-weight
// quantizer / block / shape / source dtype ("loftq.weights"), the source tensor order
// ("loftq.tensors"), the plan ("loftq.plan") and the shard limit. Sharded like the HF export.
// Around it the same files as the HF export: config, tokenizer files, loftq_init/ (so PEFT
// loads the adapter unchanged), loftq_metrics.json/.csv (plus a "packed" section: bytes per
// weight and, with double quantization, its size saving and added error). Without double
// quantization the codes + scales bytes of every target equal quantized_weight_bytes (budget.h).
// `loftq unpack` (export/unpack.h) turns an export back into the HF layout.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "loftq/exporter.h"
#include "loftq/job.h"

namespace loftq {

class PackedExport : public Exporter {
public:
    // Opens the writers (partial files). Throws loftq::Error as HfExport does for bad folders.
    PackedExport(const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan);
    ~PackedExport() override;
    void write_copy(const TensorEntry& t) override;
    void write_target(size_t weight_index, const Decomposition& d) override;
    std::vector<std::string> commit(const QuantizeResult& result, const nlohmann::ordered_json& manifest) override;

private:
    struct Impl;
    std::unique_ptr<Impl> p_;
};

}  // namespace loftq
