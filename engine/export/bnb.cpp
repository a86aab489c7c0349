// bnb.cpp: see bnb.h.
#include "export/bnb.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "core/error.h"
#include "core/fsutil.h"
#include "io/peft_adapter.h"
#include "io/sharded_writer.h"
#include "export/common.h"
#include "export/hf.h"
#include "quant/quantizer.h"

namespace fs = std::filesystem;

namespace loftq {

namespace {
const char* kQuantStateSuffix = ".quant_state.bitsandbytes__nf4";

std::string last_component(const std::string& path) {
    auto d = path.rfind('.');
    return d == std::string::npos ? path : path.substr(d + 1);
}
// transformers' replace_with_bnb_linear keeps a module dense when its child name equals a key,
// or the key equals its full path, or key + "." occurs in its path.
bool skip_key_hits(const std::string& key, const std::string& path) {
    return last_component(path) == key || key == path || path.find(key + ".") != std::string::npos;
}
}  // namespace

std::string BnbExport::torch_dtype_name(DType t) {
    switch (t) {
        case DType::BF16: return "bfloat16";
        case DType::F16: return "float16";
        case DType::F32: return "float32";
        default: return "";
    }
}

std::string BnbExport::quant_state_json(const std::string& torch_dtype, int64_t rows, int64_t cols) {
    // json.dumps({"quant_type": ..., "blocksize": ..., "dtype": ..., "shape": (rows, cols)})
    return "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"" + torch_dtype + "\", \"shape\": [" +
           std::to_string(rows) + ", " + std::to_string(cols) + "]}";
}

struct BnbExport::Impl {
    const Checkpoint& ck;
    const QuantizeOptions& opt;
    const ResolvedPlan& plan;
    std::string out;  // absolute, set once the folder is prepared
    std::unique_ptr<StagedOutput> staged;
    std::unique_ptr<ShardedWriter> model, adapter;
    std::unique_ptr<AdapterPlan> ap;
    std::vector<std::string> qstate;  // per weight: quant_state JSON
    Impl(const Checkpoint& c, const QuantizeOptions& o, const ResolvedPlan& p)
        : ck(c), opt(o), plan(p) {}
};

BnbExport::BnbExport(const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan)
    : p_(std::make_unique<Impl>(ck, opt, plan)) {
    const ModelConfig& cfg = ck.config();
    // What bitsandbytes can hold, checked before anything is created.
    const std::string where = fs::absolute(opt.out_dir).lexically_normal().string();
    for (const auto& w : plan.weights) {
        if (w.s.quant != QuantKind::NF4)
            throw Error(where, w.name, std::string("format bnb-nf4 holds only NF4 weights, but this weight is planned as ") +
                                           quant_format(w.s.quant).name +
                                           ": set quant nf4 for it in the plan, or export with format hf or packed");
        if (w.s.block != 64)
            throw Error(where, w.name, "format bnb-nf4 needs block 64 (bitsandbytes' QLoRA blocksize), but this weight is "
                                       "planned with block " + std::to_string(w.s.block) +
                                           ": set block 64 for it in the plan, or export with format hf or packed");
        if (is_conv1d(cfg, w.module))
            throw Error(where, w.name, "format bnb-nf4 cannot hold a GPT-2 Conv1D weight (bitsandbytes quantizes it "
                                       "transposed, so its blocks differ from LoftQ's): exclude it from the plan, or "
                                       "export with format hf or packed");
        if (torch_dtype_name(ck.tensors()[size_t(w.tensor)].dtype).empty())
            throw Error(where, w.name, "format bnb-nf4 needs an F32, F16 or BF16 source weight");
    }
    p_->out = prepare_output_dir(opt.out_dir, ck, opt.force);
    p_->staged = std::make_unique<StagedOutput>(p_->out, export_folder_swap());
    const std::string& dir = p_->staged->dir();  // the staging folder beside the output

    std::map<int, size_t> weight_of;  // tensor index -> weight index
    for (size_t i = 0; i < plan.weights.size(); ++i) weight_of[plan.weights[i].tensor] = i;
    p_->qstate.resize(plan.weights.size());
    std::vector<OutTensor> layout;
    const auto& ts = ck.tensors();
    for (size_t ti = 0; ti < ts.size(); ++ti) {
        const auto& t = ts[ti];
        auto it = weight_of.find(int(ti));
        if (it == weight_of.end()) {
            layout.push_back({t.name, t.dtype, t.dtype_str, t.shape, t.nbytes});
            continue;
        }
        const WeightPlan& w = plan.weights[it->second];
        const uint64_t n = uint64_t(w.rows) * uint64_t(w.cols), packed = (n + 1) / 2, nb = num_blocks(n, 64);
        std::string qs = quant_state_json(torch_dtype_name(t.dtype), w.rows, w.cols);
        layout.push_back({t.name, DType::U8, "", {int64_t(packed), 1}, packed});
        layout.push_back({t.name + ".absmax", DType::F32, "", {int64_t(nb)}, nb * 4});
        layout.push_back({t.name + ".quant_map", DType::F32, "", {16}, 64});
        layout.push_back({t.name + kQuantStateSuffix, DType::U8, "", {int64_t(qs.size())}, qs.size()});
        p_->qstate[it->second] = std::move(qs);
    }
    p_->model = std::make_unique<ShardedWriter>(dir, "model", layout, opt.max_shard_bytes,
                                                std::map<std::string, std::string>{{"format", "pt"}});
    p_->ap = std::make_unique<AdapterPlan>(ck, opt, plan);
    p_->adapter = open_adapter_writer(dir, p_->ap->layout);
}

BnbExport::~BnbExport() = default;

void BnbExport::write_copy(const TensorEntry& t) { copy_tensor(p_->ck, t, *p_->model); }

void BnbExport::write_target(size_t wi, const Decomposition& d) {
    const WeightPlan& w = p_->plan.weights[wi];
    const TensorEntry& t = p_->ck.tensors()[size_t(w.tensor)];
    const size_t n = d.codes.size();
    if (n != size_t(w.rows) * size_t(w.cols) || d.scales.size() != num_blocks(n, 64))
        throw Error(p_->out, w.name, "internal: decomposition does not match the planned shape");
    {
        // bitsandbytes packs two 4-bit codes per byte, the first element in the high nibble.
        std::vector<uint8_t> packed((n + 1) / 2, 0);
        for (size_t i = 0; i < n; ++i) packed[i / 2] |= uint8_t((d.codes[i] & 0x0F) << ((i % 2) ? 0 : 4));
        p_->model->write(t.name, packed.data(), packed.size());
        p_->model->write(t.name + ".absmax", d.scales.data(), d.scales.size() * 4);
        p_->model->write(t.name + ".quant_map", quant_format(QuantKind::NF4).table, 64);
        const std::string& qs = p_->qstate[wi];
        p_->model->write(t.name + kQuantStateSuffix, qs.data(), qs.size());
    }
    // The loftq_init adapter, exactly as the HF export writes it.
    if (p_->ap->ranks[wi] == 0) return;
    PeftFactors f = peft_factors(*p_->ap, p_->opt, w, wi, d);
    std::string mp = module_path(w.name);
    p_->adapter->write(peft_lora_key(mp, 'A'), f.A.data(), f.A.size() * 4);
    p_->adapter->write(peft_lora_key(mp, 'B'), f.B.data(), f.B.size() * 4);
}

std::vector<std::string> BnbExport::commit(const QuantizeResult& result, const nlohmann::ordered_json& manifest) {
    Impl& p = *p_;
    p.model->finish();
    p.adapter->finish();
    p.model->commit(*p.staged);
    p.adapter->commit(*p.staged);

    // Modules transformers must keep dense: every 2-D non-target weight's module (by its kind
    // when no target shares the kind, else by full path) and lm_head (tied heads have no tensor).
    std::vector<std::string> targets;
    std::set<std::string> target_names;
    for (const auto& w : p.plan.weights) { targets.push_back(module_path(w.name)); target_names.insert(w.name); }
    auto safe = [&](const std::string& key) {
        return std::none_of(targets.begin(), targets.end(), [&](const std::string& t) { return skip_key_hits(key, t); });
    };
    std::vector<std::string> skip;
    auto add = [&](const std::string& k) { if (std::find(skip.begin(), skip.end(), k) == skip.end()) skip.push_back(k); };
    for (const auto& t : p.ck.tensors()) {
        if (!t.is_matrix() || target_names.count(t.name) || t.name.size() <= 7 ||
            t.name.compare(t.name.size() - 7, 7, ".weight") != 0)
            continue;
        std::string mp = module_path(t.name), kind = last_component(mp);
        add(safe(kind) ? kind : mp);
    }
    if (safe("lm_head")) add("lm_head");
    std::string compute = p.ck.config().torch_dtype;
    if (compute != "bfloat16" && compute != "float16" && compute != "float32")
        compute = p.plan.weights.empty() ? "float32" : torch_dtype_name(p.ck.tensors()[size_t(p.plan.weights[0].tensor)].dtype);
    nlohmann::json qc = {{"_load_in_4bit", true},
                         {"_load_in_8bit", false},
                         {"bnb_4bit_compute_dtype", compute},
                         {"bnb_4bit_quant_storage", "uint8"},
                         {"bnb_4bit_quant_type", "nf4"},
                         {"bnb_4bit_use_double_quant", false},
                         {"llm_int8_enable_fp32_cpu_offload", false},
                         {"llm_int8_has_fp16_weight", false},
                         {"llm_int8_skip_modules", skip},
                         {"llm_int8_threshold", 6.0},
                         {"load_in_4bit", true},
                         {"load_in_8bit", false},
                         {"quant_method", "bitsandbytes"}};
    stage_export_files(*p.staged, p.ck, p.opt, p.plan, *p.ap, p.out, result, manifest, {},
                       [&](nlohmann::json& config) { config["quantization_config"] = qc; });
    return finish_export(*p.staged);
}

}  // namespace loftq
