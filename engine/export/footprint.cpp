// footprint.cpp: see footprint.h. Header sizes are estimates (names and shapes as the writers
// print them); payload sizes are exact.
#include "export/footprint.h"

#include <algorithm>

#include "export/bnb.h"

namespace loftq {

ExportFootprint export_footprint(const ResolvedPlan& plan, const std::vector<TensorMeta>& tensors, ExportFormat format) {
    ExportFootprint f;
    std::vector<const WeightPlan*> by_tensor(tensors.size(), nullptr);
    for (const auto& w : plan.weights)
        if (w.tensor >= 0 && size_t(w.tensor) < tensors.size()) by_tensor[size_t(w.tensor)] = &w;
    const bool packed = format == ExportFormat::Packed, bnb = format == ExportFormat::BnbNf4;
    // A header entry: "name":{"dtype":"F32","shape":[a,b],"data_offsets":[x,y]}, ~70 bytes + name.
    auto entry = [](size_t name_len) { return uint64_t(name_len) + 72; };
    f.header_bytes = 2 * 8 + 64;   // two files: length prefixes, braces, "__metadata__"
    for (size_t i = 0; i < tensors.size(); ++i) {
        const TensorMeta& t = tensors[i];
        uint64_t n = 1;
        for (auto d : t.shape) n *= uint64_t(d);
        const WeightPlan* w = by_tensor[i];
        if (!w || format == ExportFormat::Hf) {   // stored as is (hf: a target's Q at the source dtype)
            f.model_bytes += n * dtype_size(t.dtype);
            f.header_bytes += entry(t.name.size());
        }
        if (!w) continue;
        const uint64_t r = uint64_t(std::min<int64_t>(w->s.rank, std::min(w->rows, w->cols)));
        const uint64_t lora = r * uint64_t(w->rows + w->cols) * 4;
        const size_t module_len = t.name.size() - (t.name.size() > 7 ? 7 : 0);   // less ".weight"
        f.adapter_bytes += lora;
        f.header_bytes += 2 * entry(module_len + 17 + 15);   // base_model.model.<module>.lora_A.weight
        if (packed) {
            f.model_bytes += quantized_weight_bytes(w->rows, w->cols, w->s) + lora;
            // codes, scales, lora_A, lora_B entries + the weight's line in loftq.weights (~170 bytes)
            f.header_bytes += 2 * entry(t.name.size() + 8) + 2 * entry(module_len + 15) + 170;
        } else if (bnb) {
            const uint64_t nb = (n + 63) / 64;
            const uint64_t qs = BnbExport::quant_state_json(BnbExport::torch_dtype_name(t.dtype), w->rows, w->cols).size();
            f.model_bytes += (n + 1) / 2 + nb * 4 + 64 + qs;   // codes, absmax, quant_map, quant_state JSON
            f.header_bytes += entry(t.name.size()) + entry(t.name.size() + 7) + entry(t.name.size() + 10) +
                              entry(t.name.size() + 32);
        }
    }
    if (packed) f.header_bytes += 600 + 40 * tensors.size();   // the plan and the tensor order in the metadata
    return f;
}

}  // namespace loftq
