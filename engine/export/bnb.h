// bnb.h: the bitsandbytes NF4 serialization ("bnb-nf4"), the layout transformers loads as
// a pre-quantized 4-bit model (AutoModelForCausalLM.from_pretrained(OUT), no re-quantization),
// with the LoftQ adapter beside it. docs/FORMAT.md, "bitsandbytes NF4 serialization", cites the
// bitsandbytes / transformers sources the layout follows.
//   OUT/model.safetensors (or shards + index): per target weight `<name>` (e.g. "...q_proj.weight")
//     <name>                                   U8  [ceil(numel/2), 1]  codes, 2 per byte, first
//                                                                      element in the HIGH nibble
//     <name>.absmax                            F32 [num_blocks]         one absmax per 64 elements
//     <name>.quant_map                         F32 [16]                 the NF4 table
//     <name>.quant_state.bitsandbytes__nf4     U8  [json bytes]         {"quant_type": "nf4",
//        "blocksize": 64, "dtype": "<source torch dtype>", "shape": [out, in]}
//   every other tensor copied bit-exactly; no double quantization (no nested_* keys);
//   OUT/config.json: the source's plus "quantization_config" (quant_method "bitsandbytes",
//     load_in_4bit, nf4, no double quant, compute dtype = the source's torch_dtype, storage uint8,
//     llm_int8_skip_modules = the linear modules kept dense: lm_head and non-target weights);
//   OUT/loftq_init/ (adapter), tokenizer files, metrics, extra files: exactly as the HF export.
// Dequantizing gives table[code] * absmax, the same Q the "hf" export stores.
// Every target must be NF4 with block 64 and not a GPT-2 Conv1D weight (bitsandbytes quantizes
// those transposed, so their blocks would differ); otherwise construction throws loftq::Error
// naming the first such weight, before anything is written.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "loftq/exporter.h"
#include "loftq/job.h"

namespace loftq {

class BnbExport : public Exporter {
public:
    BnbExport(const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan);
    ~BnbExport() override;
    void write_copy(const TensorEntry& t) override;
    void write_target(size_t weight_index, const Decomposition& d) override;
    std::vector<std::string> commit(const QuantizeResult& result, const nlohmann::ordered_json& manifest) override;

    // The quant_state JSON bitsandbytes' pack_dict_to_tensor writes (Python json.dumps spacing).
    static std::string quant_state_json(const std::string& torch_dtype, int64_t rows, int64_t cols);
    // torch dtype name of a storage dtype ("bfloat16", "float16", "float32").
    static std::string torch_dtype_name(DType t);

private:
    struct Impl;
    std::unique_ptr<Impl> p_;
};

}  // namespace loftq
