// summary.cpp: see summary.h.
#include "export/summary.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fsutil.h"
#include "io/packed_reader.h"
#include "quant/quantizer.h"

namespace loftq {

namespace fs = std::filesystem;

ExportSummary read_packed_export(const std::string& path) {
    auto r = PackedReader::open(path);
    ExportSummary s;
    s.dir = r->dir();
    // Logical tensors: quantized weights as the source had them, every other tensor as stored.
    for (const std::string& name : r->tensor_order()) {
        if (const PackedWeight* w = r->weight(name)) {
            s.tensors.push_back({name, w->dtype, {w->rows, w->cols}});
            s.stored_quantized_bytes += r->stored_bytes(*w);
            continue;
        }
        const TensorInfo* t = r->tensor(name);
        if (!t) throw Error(r->dir(), name, "listed in loftq.tensors but not stored");
        s.tensors.push_back({name, t->dtype, t->shape});
    }
    if (!r->plan().is_null()) s.plan = plan_from_json(r->plan(), r->dir() + " (__metadata__ loftq.plan)");
    // What was stored wins over what the plan would resolve to: make every weight explicit.
    std::vector<bool> quantized(s.tensors.size(), false);
    for (size_t i = 0; i < s.tensors.size(); ++i) {
        const PackedWeight* w = r->weight(s.tensors[i].name);
        SettingsPatch p;
        if (w) {
            p.target = true;
            p.quant = w->quant;
            p.block = w->block;
            p.rank = w->rank;
        } else {
            p.target = false;
        }
        s.plan.overrides[s.tensors[i].name] = p;
    }
    // The recorded run.
    const fs::path metrics = fs::path(r->dir()) / "loftq_metrics.json";
    std::error_code ec;
    if (fs::is_regular_file(metrics, ec)) {
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(read_text_file(metrics.string()));
        } catch (const nlohmann::json::exception& e) {
            throw Error(metrics.string(), "", std::string("not valid JSON: ") + e.what());
        }
        const ResolvedPlan rp = resolve_plan(s.plan, s.tensors);
        s.result.plan = rp;
        s.result.weights.resize(rp.weights.size());
        for (size_t i = 0; i < rp.weights.size(); ++i) s.result.weights[i].plan = rp.weights[i];
        for (const auto& e : j.value("weights", nlohmann::json::array())) {
            const std::string name = e.value("name", std::string());
            for (size_t i = 0; i < rp.weights.size(); ++i) {
                if (rp.weights[i].name != name) continue;
                WeightResult& w = s.result.weights[i];
                w.rank = e.value("rank", 0);
                w.baseline = e.value("qlora_error", 0.0);
                w.final_error = e.value("final_error", 0.0);
                w.seconds = e.value("seconds", 0.0);
                int step = 0;
                for (const auto& err : e.value("errors", nlohmann::json::array())) w.steps.push_back({++step, err.get<double>(), 0.0, w.baseline});
            }
        }
        s.result.size = plan_size(rp, s.tensors);
        s.has_metrics = true;
    }
    return s;
}

std::optional<Plan> hf_export_plan(const std::string& dir) {
    std::error_code ec;
    const fs::path metrics = fs::path(dir) / "loftq_metrics.json";
    if (!fs::is_directory(fs::path(dir) / "loftq_init", ec) || !fs::is_regular_file(metrics, ec)) return std::nullopt;
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(read_text_file(metrics.string()));
    } catch (const nlohmann::json::exception& e) {
        throw Error(metrics.string(), "", std::string("not valid JSON: ") + e.what());
    }
    const nlohmann::json* plan = j.contains("manifest") && j["manifest"].is_object() && j["manifest"].contains("plan")
                                     ? &j["manifest"]["plan"]
                                     : nullptr;
    if (!plan) return std::nullopt;   // an older export without its plan: the caller's default stands
    Plan p = plan_from_json(*plan, metrics.string() + " (manifest.plan)");
    try {
        for (const auto& w : j.value("weights", nlohmann::json::array())) {
            SettingsPatch s;
            s.target = true;
            s.quant = quant_kind_from_name(w.at("quant").get<std::string>());
            if (!s.quant) throw Error(metrics.string(), w.value("name", ""), "unknown quantizer '" + w.at("quant").get<std::string>() + "'");
            s.block = w.at("block").get<int>();
            s.rank = w.at("rank").get<int>();
            s.iters = w.at("iters").get<int>();
            if (w.contains("svd")) s.svd = kSvdMethodNames.find(w["svd"].get<std::string>()).value_or(SvdMethod::Randomized);
            p.overrides[w.at("name").get<std::string>()] = s;
        }
    } catch (const nlohmann::json::exception& e) {
        throw Error(metrics.string(), "", std::string("bad weights entry: ") + e.what());
    }
    return p;
}

}  // namespace loftq
