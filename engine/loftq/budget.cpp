// budget.cpp: see budget.h.
#include "loftq/budget.h"

#include <algorithm>

namespace loftq {

uint64_t quantized_weight_bytes(int64_t rows, int64_t cols, const WeightSettings& s) {
    return quantized_bytes(size_t(rows) * size_t(cols), quant_format(s.quant).bits, s.block);
}

PlanSize plan_size(const ResolvedPlan& plan, const std::vector<TensorMeta>& tensors, int lora_bytes) {
    PlanSize z;
    std::vector<const WeightPlan*> by_tensor(tensors.size(), nullptr);
    for (const auto& w : plan.weights)
        if (w.tensor >= 0 && size_t(w.tensor) < tensors.size()) by_tensor[size_t(w.tensor)] = &w;
    for (size_t i = 0; i < tensors.size(); ++i) {
        const TensorMeta& t = tensors[i];
        uint64_t n = 1;
        for (auto d : t.shape) n *= uint64_t(d);
        size_t es = dtype_size(t.dtype);
        z.params += n;
        z.source_bytes += n * es;
        z.fp16_bytes += n * (dtype_is_float_convertible(t.dtype) ? 2 : es);
        if (const WeightPlan* w = by_tensor[i]) {
            z.target_params += n;
            z.quantized_bytes += quantized_weight_bytes(w->rows, w->cols, w->s);
            uint64_t r = uint64_t(std::min<int64_t>(w->s.rank, std::min(w->rows, w->cols)));
            uint64_t lp = r * uint64_t(w->rows + w->cols);
            z.lora_params += lp;
            z.lora_bytes += lp * uint64_t(lora_bytes);
        } else {
            z.untouched_bytes += n * es;
        }
    }
    z.total_bytes = z.quantized_bytes + z.lora_bytes + z.untouched_bytes;
    return z;
}

}  // namespace loftq
