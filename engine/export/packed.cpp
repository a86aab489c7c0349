// packed.cpp: see packed.h.
#include "export/packed.h"

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/fsutil.h"
#include "io/packed_reader.h"
#include "io/peft_adapter.h"
#include "io/sharded_writer.h"
#include "export/common.h"

namespace fs = std::filesystem;

namespace loftq {

struct PackedExport::Impl : ExportState {
    AdapterPlan ap;
    std::unique_ptr<ShardedWriter> model, adapter;
    // Per weight, filled by write_target (distinct indices from distinct threads).
    std::vector<uint64_t> stored;        // codes + scales bytes as written
    std::vector<uint64_t> plain_scales;  // fp32 scale bytes (4 per block)
    std::vector<double> dq_error;        // ||Q_dq - Q||_F / ||W||_F (double quant), else 0
    Impl(const Checkpoint& c, const QuantizeOptions& o, const ResolvedPlan& p)
        : ExportState(c, o, p), ap(c, o, p),
          stored(p.weights.size()), plain_scales(p.weights.size()), dq_error(p.weights.size()) {}
};

PackedExport::PackedExport(const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan)
    : p_(std::make_unique<Impl>(ck, opt, plan)) {
    Impl& p = *p_;
    std::vector<int> weight_of(ck.tensors().size(), -1);
    for (size_t i = 0; i < plan.weights.size(); ++i) weight_of[size_t(plan.weights[i].tensor)] = int(i);

    nlohmann::ordered_json weights = nlohmann::ordered_json::object(), order = nlohmann::ordered_json::array();
    std::vector<OutTensor> layout;
    for (size_t ti = 0; ti < ck.tensors().size(); ++ti) {
        const TensorEntry& t = ck.tensors()[ti];
        order.push_back(t.name);
        if (weight_of[ti] < 0) {
            layout.push_back({t.name, t.dtype, t.dtype_str, t.shape, t.nbytes});
            continue;
        }
        const size_t wi = size_t(weight_of[ti]);
        const WeightPlan& w = plan.weights[wi];
        const QuantFormat& f = quant_format(w.s.quant);
        const size_t n = size_t(w.rows) * size_t(w.cols), nb = num_blocks(n, w.s.block);
        const int64_t pk = int64_t(packed_size(n, f.bits));
        layout.push_back({w.name + packed::kCodes, DType::U8, "", {pk}, uint64_t(pk)});
        if (opt.double_quant) {
            const int64_t g = int64_t(packed::dq_blocks(nb));
            layout.push_back({w.name + packed::kScalesQ, DType::U8, "", {int64_t(nb)}, uint64_t(nb)});
            layout.push_back({w.name + packed::kScalesAbsmax, DType::F32, "", {g}, uint64_t(g) * 4});
            layout.push_back({w.name + packed::kScalesOffset, DType::F32, "", {1}, 4});
        } else {
            layout.push_back({w.name + packed::kScales, DType::F32, "", {int64_t(nb)}, uint64_t(nb) * 4});
        }
        const int r = p.ap.ranks[wi];
        if (r > 0) {
            // The adapter's (PEFT) shapes, under the module path without "base_model.model.".
            const std::string mp = module_path(w.name);
            for (const auto& a : p.ap.layout)
                if (a.name == peft_lora_key(mp, 'A') || a.name == peft_lora_key(mp, 'B')) {
                    OutTensor o = a;
                    o.name = mp + (a.name == peft_lora_key(mp, 'A') ? ".lora_A.weight" : ".lora_B.weight");
                    layout.push_back(o);
                }
        }
        nlohmann::ordered_json e;
        e["quant"] = f.name;
        e["bits"] = f.bits;
        e["block"] = w.s.block;
        e["shape"] = {w.rows, w.cols};
        e["dtype"] = dtype_name(t.dtype);
        e["double_quant"] = opt.double_quant;
        e["rank"] = r;
        e["lora_alpha"] = p.ap.alphas[wi];
        weights[w.name] = e;
    }
    // The code table of every quantizer used, exact (each fp32 value printed so it parses back
    // to the same float): a reader needs nothing of ours to dequantize.
    nlohmann::ordered_json books = nlohmann::ordered_json::object();
    for (const auto& w : plan.weights) {
        const QuantFormat& f = quant_format(w.s.quant);
        if (books.contains(f.name)) continue;
        nlohmann::ordered_json t = nlohmann::ordered_json::array();
        for (int i = 0; i < f.levels; ++i) t.push_back(double(f.table[i]));
        books[f.name] = t;
    }
    const std::map<std::string, std::string> meta = {
        {"format", packed::kFormat},
        {"loftq.codebooks", books.dump()},
        {"format_version", packed::kVersion},
        {"loftq.weights", weights.dump()},
        {"loftq.tensors", order.dump()},
        {"loftq.plan", plan_to_json(opt.plan).dump()},
        {"loftq.max_shard_bytes", std::to_string(opt.max_shard_bytes)},
    };
    p.model = std::make_unique<ShardedWriter>(p.staged.dir(), "model", layout, opt.max_shard_bytes, meta);
    p.adapter = open_adapter_writer(p.staged.dir(), p.ap.layout);
}

PackedExport::~PackedExport() = default;

void PackedExport::write_copy(const TensorEntry& t) { copy_tensor(p_->ck, t, *p_->model); }

void PackedExport::write_target(size_t wi, const Decomposition& d) {
    Impl& p = *p_;
    const WeightPlan& w = p.plan.weights[wi];
    const QuantFormat& f = quant_format(w.s.quant);
    const size_t n = d.codes.size(), nb = d.scales.size();
    if (n != size_t(w.rows) * size_t(w.cols) || nb != num_blocks(n, w.s.block))
        throw Error(p.out, w.name, "decomposition codes/scales do not match the plan's shape and block");
    std::vector<uint8_t> packed(packed_size(n, f.bits));
    pack_codes(d.codes.data(), n, f.bits, packed.data());
    p.model->write(w.name + packed::kCodes, packed.data(), packed.size());
    p.plain_scales[wi] = 4 * uint64_t(nb);
    if (p.opt.double_quant) {
        std::vector<uint8_t> q(nb);
        std::vector<float> absmax(packed::dq_blocks(nb)), s2(nb), Q2(n);
        float offset = 0;
        packed::dq_quantize_scales(d.scales.data(), nb, q.data(), absmax.data(), &offset);
        p.model->write(w.name + packed::kScalesQ, q.data(), q.size());
        p.model->write(w.name + packed::kScalesAbsmax, absmax.data(), absmax.size() * 4);
        p.model->write(w.name + packed::kScalesOffset, &offset, 4);
        // The weight a reader gets back, and how far it moved from the engine's Q.
        packed::dq_dequantize_scales(q.data(), absmax.data(), offset, nb, s2.data());
        dequantize(f, d.codes.data(), s2.data(), n, w.s.block, Q2.data());
        double e = 0;
        for (size_t i = 0; i < n; ++i) {
            double x = double(Q2[i]) - double(d.Q.buf[i]);
            e += x * x;
        }
        p.dq_error[wi] = d.w_norm > 0 ? std::sqrt(e) / d.w_norm : 0.0;
        p.stored[wi] = packed.size() + packed::scale_bytes(nb, true);
    } else {
        p.model->write(w.name + packed::kScales, d.scales.data(), nb * 4);
        p.stored[wi] = packed.size() + packed::scale_bytes(nb, false);
    }
    if (p.ap.ranks[wi] == 0) return;
    PeftFactors fac = peft_factors(p.ap, p.opt, w, wi, d);
    const std::string mp = module_path(w.name);
    p.model->write(mp + ".lora_A.weight", fac.A.data(), fac.A.size() * 4);
    p.model->write(mp + ".lora_B.weight", fac.B.data(), fac.B.size() * 4);
    p.adapter->write(peft_lora_key(mp, 'A'), fac.A.data(), fac.A.size() * 4);
    p.adapter->write(peft_lora_key(mp, 'B'), fac.B.data(), fac.B.size() * 4);
}

std::vector<std::string> PackedExport::commit(const QuantizeResult& result, const nlohmann::ordered_json& manifest) {
    Impl& p = *p_;
    p.model->finish();
    p.adapter->finish();
    const uint64_t file_bytes = p.model->total_bytes();
    p.model->commit(p.staged);
    p.adapter->commit(p.staged);
    stage_export_files(p.staged, p.ck, p.opt, p.plan, p.ap, p.out, result, manifest, [&](nlohmann::ordered_json& j) {
        uint64_t stored = 0, plain = 0, lora = 0;
        double dq_max = 0;
        for (size_t i = 0; i < p.plan.weights.size(); ++i) {
            stored += p.stored[i];
            const WeightPlan& w = p.plan.weights[i];
            plain += quantized_weight_bytes(w.rows, w.cols, w.s);
            lora += uint64_t(p.ap.ranks[i]) * uint64_t(w.rows + w.cols) * 4;
            dq_max = std::max(dq_max, p.dq_error[i]);
            auto& e = j["weights"][i];
            e["packed_bytes"] = p.stored[i];
            if (p.opt.double_quant) {
                e["scale_bytes_fp32"] = p.plain_scales[i];
                e["scale_bytes_double_quant"] = packed::scale_bytes(num_blocks(size_t(w.rows * w.cols), w.s.block), true);
                e["double_quant_added_error"] = p.dq_error[i];
                e["final_error_bound"] = result.weights[i].final_error + p.dq_error[i];
            }
        }
        nlohmann::ordered_json s;
        s["format"] = packed::kFormat;
        s["format_version"] = packed::kVersion;
        s["double_quant"] = p.opt.double_quant;
        s["file_bytes"] = file_bytes;                          // model*.safetensors, headers included
        s["target_bytes"] = stored;                            // codes + scales of every target
        s["plan_quantized_bytes"] = result.size.quantized_bytes;  // == target_bytes without double quant
        s["lora_fp32_bytes"] = lora;
        s["plan_total_bytes"] = result.size.total_bytes;       // LoRA counted at 2 bytes/param there
        if (p.opt.double_quant) {
            s["double_quant_saved_bytes"] = int64_t(plain) - int64_t(stored);
            s["double_quant_max_added_error"] = dq_max;
        }
        j["packed"] = s;
    });
    return finish_export(p.staged);
}

}  // namespace loftq
