// metrics.cpp: see metrics.h.
#include "export/metrics.h"

#include <cstdio>
#include <sstream>

namespace loftq {

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
        e["svd"] = kSvdMethodNames.name(w.plan.s.svd);
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
          << kSvdMethodNames.name(w.plan.s.svd) << ',' << num(w.baseline);
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
