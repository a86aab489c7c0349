// export_hf.cpp: see export_hf.h.
#include "loftq/export_hf.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "io/peft_adapter.h"
#include "io/sharded_writer.h"
#include "loftq/export_common.h"

namespace fs = std::filesystem;

namespace loftq {

bool HfExport::is_conv1d(const ModelConfig& cfg, const std::string& module) {
    return cfg.model_type == "gpt2" &&
           (module == "attn.c_attn" || module == "attn.c_proj" || module == "mlp.c_fc" || module == "mlp.c_proj");
}

std::string HfExport::task_type(const ModelConfig& cfg) {
    static const std::set<std::string> encoders = {"bert", "roberta", "deberta", "deberta-v2", "distilbert"};
    return encoders.count(cfg.model_type) ? "SEQ_CLS" : "CAUSAL_LM";
}

struct HfExport::Impl {
    const Checkpoint& ck;
    const QuantizeOptions& opt;
    const ResolvedPlan& plan;
    std::string out;
    StagedOutput staged;
    std::unique_ptr<ShardedWriter> model, adapter;
    AdapterPlan ap;                 // per weight: exported rank, lora_alpha, Conv1D
    Impl(const Checkpoint& c, const QuantizeOptions& o, const ResolvedPlan& p)
        : ck(c), opt(o), plan(p), out(prepare_output_dir(o.out_dir, c, o.force)), staged(out), ap(c, o, p) {}
};

HfExport::HfExport(const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan)
    : p_(std::make_unique<Impl>(ck, opt, plan)) {
    const std::string& out = p_->out;
    std::vector<OutTensor> layout;
    for (const auto& t : ck.tensors()) layout.push_back({t.name, t.dtype, t.dtype_str, t.shape, t.nbytes});
    p_->model = std::make_unique<ShardedWriter>(out, "model", layout, opt.max_shard_bytes, std::map<std::string, std::string>{{"format", "pt"}});
    p_->adapter = open_adapter_writer(out, p_->ap.layout);
}

HfExport::~HfExport() = default;

void HfExport::write_copy(const TensorEntry& t) { copy_tensor(p_->ck, t, *p_->model); }

void HfExport::write_target(size_t wi, const Decomposition& d) {
    const WeightPlan& w = p_->plan.weights[wi];
    const TensorEntry& t = p_->ck.tensors()[size_t(w.tensor)];
    {
        std::vector<uint8_t> bytes(t.nbytes);
        from_f32(t.dtype, d.Q.data(), bytes.data(), d.Q.size());
        p_->model->write(t.name, bytes.data(), bytes.size());
    }
    if (p_->ap.ranks[wi] == 0) return;
    PeftFactors f = peft_factors(p_->ap, p_->opt, w, wi, d);
    std::string mp = module_path(w.name);
    p_->adapter->write(peft_lora_key(mp, 'A'), f.A.data(), f.A.size() * 4);
    p_->adapter->write(peft_lora_key(mp, 'B'), f.B.data(), f.B.size() * 4);
}

std::vector<std::string> HfExport::commit(const QuantizeResult& result, const nlohmann::ordered_json& manifest) {
    Impl& p = *p_;
    p.model->finish();
    p.adapter->finish();
    p.model->commit(p.staged);
    p.adapter->commit(p.staged);
    stage_export_files(p.staged, p.ck, p.opt, p.plan, p.ap, p.out, result, manifest);
    return finish_export(p.staged, p.out, *p.model, *p.adapter);
}

nlohmann::ordered_json metrics_json(const QuantizeResult& r, const nlohmann::ordered_json& manifest) {
    using oj = nlohmann::ordered_json;
    oj j;
    j["format"] = "loftq-metrics";
    j["version"] = 1;
    j["manifest"] = manifest;
    double sb = 0, sf = 0;
    for (auto& w : r.weights) { sb += w.baseline; sf += w.final_error; }
    size_t n = r.weights.size();
    j["summary"] = {{"weights", n},
                    {"mean_qlora_error", n ? sb / double(n) : 0.0},
                    {"mean_final_error", n ? sf / double(n) : 0.0},
                    {"seconds", r.seconds},
                    {"plan_bytes", r.size.total_bytes},
                    {"fp16_bytes", r.size.fp16_bytes},
                    {"target_bits_per_weight", r.size.target_bits_per_weight()},
                    {"bits_per_param", r.size.bits_per_param()}};
    oj ws = oj::array();
    for (auto& w : r.weights) {
        oj e;
        e["name"] = w.plan.name;
        e["layer"] = w.plan.layer;
        e["module"] = w.plan.module;
        e["shape"] = {w.plan.rows, w.plan.cols};
        e["quant"] = quant_format(w.plan.s.quant).name;
        e["block"] = w.plan.s.block;
        e["rank"] = w.rank;
        e["iters"] = w.plan.s.iters;
        e["svd"] = svd_method_name(w.plan.s.svd);
        e["qlora_error"] = w.baseline;
        oj errs = oj::array(), secs = oj::array();
        for (auto& s : w.steps) { errs.push_back(s.error); secs.push_back(s.seconds); }
        e["errors"] = errs;
        e["step_seconds"] = secs;
        e["final_error"] = w.final_error;
        if (w.out_baseline >= 0) {  // calibrated: output errors ||X E^T|| / ||X W^T|| (input_stats.h)
            oj outs = oj::array();
            for (auto& s : w.steps) outs.push_back(s.out_error);
            e["qlora_output_error"] = w.out_baseline;
            e["output_errors"] = outs;
            e["final_output_error"] = w.out_final;
        }
        e["seconds"] = w.seconds;
        ws.push_back(e);
    }
    j["weights"] = ws;
    return j;
}

std::string metrics_csv(const QuantizeResult& r) {
    size_t maxT = 0;
    for (auto& w : r.weights) maxT = std::max(maxT, w.steps.size());
    std::ostringstream s;
    s << "name,layer,module,rows,cols,quant,block,rank,iters,svd,qlora_error";
    for (size_t t = 1; t <= maxT; ++t) s << ",error_step" << t;
    s << ",final_error";
    bool calibrated = false;
    for (auto& w : r.weights) calibrated = calibrated || w.out_baseline >= 0;
    if (calibrated) {  // output errors (input_stats.h); empty cells for weights without statistics
        s << ",qlora_output_error";
        for (size_t t = 1; t <= maxT; ++t) s << ",output_error_step" << t;
        s << ",final_output_error";
    }
    s << ",seconds\n";
    char buf[64];
    auto num = [&](double x) { std::snprintf(buf, sizeof buf, "%.9g", x); return std::string(buf); };
    for (auto& w : r.weights) {
        s << w.plan.name << ',' << w.plan.layer << ',' << w.plan.module << ',' << w.plan.rows << ',' << w.plan.cols << ','
          << quant_format(w.plan.s.quant).name << ',' << w.plan.s.block << ',' << w.rank << ',' << w.plan.s.iters << ','
          << svd_method_name(w.plan.s.svd) << ',' << num(w.baseline);
        for (size_t t = 0; t < maxT; ++t) s << ',' << (t < w.steps.size() ? num(w.steps[t].error) : "");
        s << ',' << num(w.final_error);
        if (calibrated) {
            auto out = [&](double x) { return x >= 0 ? num(x) : std::string(); };
            s << ',' << out(w.out_baseline);
            for (size_t t = 0; t < maxT; ++t) s << ',' << (t < w.steps.size() ? out(w.steps[t].out_error) : "");
            s << ',' << out(w.out_final);
        }
        s << ',' << num(w.seconds) << '\n';
    }
    return s.str();
}

}  // namespace loftq
