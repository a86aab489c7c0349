// inspect.cpp: `loftq inspect MODEL [--json] [--plan FILE ...]`: architecture facts, every
// tensor (shape, dtype, parameters, target or kept and with which settings), the model's sizes
// and the size of the plan (default or given) in bytes and bits per weight.
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli/common.h"
#include "io/checkpoint.h"
#include "io/packed_reader.h"
#include "loftq/budget.h"
#include "export/summary.h"
#include "loftq/job.h"

namespace loftq::cli {

namespace {
struct InspectArgs {
    std::string model;
    bool json = false;
    PlanFlags flags;
};

const char* kind_name(CheckpointKind k) {
    switch (k) {
        case CheckpointKind::HFFolder: return "huggingface-folder";
        case CheckpointKind::SafetensorsFile: return "safetensors-file";
        case CheckpointKind::Llama2c: return "llama2c";
        case CheckpointKind::Gguf: return "gguf";
    }
    return "?";
}

std::string shape_str(const std::vector<int64_t>& s) {
    std::string o = "[";
    for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
    return o + "]";
}

// A packed export: its per-weight quantizers, stored bytes and recorded errors.
void inspect_packed(const InspectArgs& a) {
    const ExportSummary s = read_packed_export(a.model);
    const ResolvedPlan rp = resolve_plan(s.plan, s.tensors);
    const PlanSize sz = plan_size(rp, s.tensors);
    if (a.json) {
        nlohmann::ordered_json j;
        j["path"] = s.dir;
        j["kind"] = "loftq-packed";
        nlohmann::ordered_json ws = nlohmann::ordered_json::array();
        for (size_t i = 0; i < rp.weights.size(); ++i) {
            const WeightPlan& w = rp.weights[i];
            nlohmann::ordered_json e = {{"name", w.name}, {"quant", quant_format(w.s.quant).name}, {"block", w.s.block},
                                        {"rank", w.s.rank}, {"shape", {w.rows, w.cols}},
                                        {"bytes", quantized_weight_bytes(w.rows, w.cols, w.s)}};
            if (s.has_metrics) {
                e["qlora_error"] = s.result.weights[i].baseline;
                e["final_error"] = s.result.weights[i].final_error;
            }
            ws.push_back(e);
        }
        j["weights"] = ws;
        j["quantized_bytes"] = s.stored_quantized_bytes;
        j["plan_size"] = {{"total_bytes", sz.total_bytes}, {"bits_per_param", sz.bits_per_param()}};
        std::printf("%s\n", j.dump(2).c_str());
        return;
    }
    std::printf("%s  (packed LoftQ export, %zu tensors, %zu quantized)\n", s.dir.c_str(), s.tensors.size(), rp.weights.size());
    std::printf("%-52s %-5s %5s %5s %13s %10s %8s %8s\n", "weight", "quant", "block", "rank", "shape", "bytes", "QLoRA", "LoftQ");
    for (size_t i = 0; i < rp.weights.size(); ++i) {
        const WeightPlan& w = rp.weights[i];
        char shape[32];
        std::snprintf(shape, sizeof shape, "%lldx%lld", (long long)w.rows, (long long)w.cols);
        std::printf("%-52s %-5s %5d %5d %13s %10llu", w.name.c_str(), quant_format(w.s.quant).name, w.s.block, w.s.rank, shape,
                    (unsigned long long)quantized_weight_bytes(w.rows, w.cols, w.s));
        if (s.has_metrics) std::printf(" %8.5f %8.5f", s.result.weights[i].baseline, s.result.weights[i].final_error);
        std::printf("\n");
    }
    std::printf("quantized weights: %s stored (codes + scales); whole export as planned: %s, %.3f bits per param\n",
                human_bytes(double(s.stored_quantized_bytes)).c_str(), human_bytes(double(sz.total_bytes)).c_str(), sz.bits_per_param());
}

void run_inspect(const InspectArgs& a) {
    auto ck = Checkpoint::open(a.model);
    if (is_packed_checkpoint(*ck)) return inspect_packed(a);
    // An HF-layout LoftQ export: the plan it was made with (unless a plan is given to try).
    std::optional<Plan> recorded = a.flags.given() ? std::nullopt : hf_export_plan(ck->path());
    Plan plan = recorded ? *recorded : a.flags.make_plan();
    const std::vector<TensorMeta> metas = tensor_metas(*ck);
    ResolvedPlan rp = resolve_plan(plan, metas);
    PlanSize sz = plan_size(rp, metas);
    std::vector<const WeightPlan*> by_tensor(metas.size(), nullptr);
    for (auto& w : rp.weights) by_tensor[size_t(w.tensor)] = &w;
    const ModelConfig& c = ck->config();

    if (a.json) {
        nlohmann::ordered_json j;
        j["path"] = ck->path();
        j["kind"] = kind_name(ck->kind());
        j["loftq_export"] = recorded ? "hf" : "";   // "hf": the plan below is the export's own
        j["plan_source"] = recorded ? "loftq_metrics.json" : a.flags.plan_file.empty() ? "flags" : a.flags.plan_file;
        j["files"] = ck->files();
        j["size_on_disk"] = ck->size_on_disk();
        j["config"] = {{"model_type", c.model_type}, {"layers", c.n_layers}, {"hidden", c.hidden}, {"heads", c.n_heads},
                       {"kv_heads", c.n_kv_heads}, {"intermediate", c.intermediate}, {"vocab", c.vocab},
                       {"tie_word_embeddings", c.tie_word_embeddings}, {"max_position", c.max_position}};
        nlohmann::ordered_json ts = nlohmann::ordered_json::array();
        for (size_t i = 0; i < metas.size(); ++i) {
            const auto& t = ck->tensors()[i];
            nlohmann::ordered_json e = {{"name", t.name}, {"dtype", t.dtype_str.empty() ? dtype_name(t.dtype) : t.dtype_str},
                                        {"shape", t.shape}, {"params", t.numel()}, {"target", by_tensor[i] != nullptr}};
            if (auto* w = by_tensor[i]) {
                e["layer"] = w->layer;
                e["module"] = w->module;
                e["quant"] = quant_format(w->s.quant).name;
                e["block"] = w->s.block;
                e["rank"] = w->s.rank;
                e["iters"] = w->s.iters;
                e["svd"] = kSvdMethodNames.name(w->s.svd);
                e["quantized_bytes"] = quantized_weight_bytes(w->rows, w->cols, w->s);
            }
            ts.push_back(e);
        }
        j["tensors"] = ts;
        j["params"] = sz.params;
        j["target_params"] = sz.target_params;
        j["plan"] = {{"targets", rp.weights.size()}, {"total_bytes", sz.total_bytes}, {"quantized_bytes", sz.quantized_bytes},
                     {"lora_bytes", sz.lora_bytes}, {"untouched_bytes", sz.untouched_bytes}, {"fp16_bytes", sz.fp16_bytes},
                     {"source_bytes", sz.source_bytes}, {"target_bits_per_weight", sz.target_bits_per_weight()},
                     {"bits_per_param", sz.bits_per_param()}, {"warnings", rp.warnings}};
        std::cout << j.dump(2) << "\n";
        return;
    }
    std::printf("%s  (%s, %zu file%s, %s on disk)\n", ck->path().c_str(), kind_name(ck->kind()), ck->files().size(),
                ck->files().size() == 1 ? "" : "s", human_bytes(double(ck->size_on_disk())).c_str());
    if (recorded)
        std::printf("HF-layout LoftQ export: the weights below are stored dequantized (Q) at their dtype, the LoRA start in "
                    "loftq_init/; the plan shown is the one it was made with (loftq_metrics.json)\n");
    std::printf("architecture: %s, %d layers, hidden %d, heads %d (kv %d), intermediate %d, vocab %d, %s embeddings\n",
                c.model_type.empty() ? "unknown" : c.model_type.c_str(), c.n_layers, c.hidden, c.n_heads, c.n_kv_heads,
                c.intermediate, c.vocab, c.tie_word_embeddings ? "tied" : "untied");
    std::printf("\n%-56s %-5s %-14s %12s  %s\n", "tensor", "dtype", "shape", "params", "plan");
    for (size_t i = 0; i < metas.size(); ++i) {
        const auto& t = ck->tensors()[i];
        std::string plan_s = by_tensor[i] ? settings_summary(by_tensor[i]->s) : "kept";
        std::printf("%-56s %-5s %-14s %12llu  %s\n", t.name.c_str(), t.dtype_str.empty() ? dtype_name(t.dtype) : t.dtype_str.c_str(),
                    shape_str(t.shape).c_str(), (unsigned long long)t.numel(), plan_s.c_str());
    }
    std::printf("\nparameters: %llu total, %llu in %zu target weights (%.1f%%)\n", (unsigned long long)sz.params,
                (unsigned long long)sz.target_params, rp.weights.size(),
                sz.params ? 100.0 * double(sz.target_params) / double(sz.params) : 0.0);
    std::printf("model size: %s as stored, %s at fp16\n", human_bytes(double(sz.source_bytes)).c_str(), human_bytes(double(sz.fp16_bytes)).c_str());
    std::printf("plan size:  %s (%.2f bits per param; targets %.3f bits/weight = codes + fp32 block scales; LoRA %s at 16-bit; kept tensors %s)\n",
                human_bytes(double(sz.total_bytes)).c_str(), sz.bits_per_param(), sz.target_bits_per_weight(),
                human_bytes(double(sz.lora_bytes)).c_str(), human_bytes(double(sz.untouched_bytes)).c_str());
    for (auto& w : rp.warnings) std::printf("warning: %s\n", w.c_str());
}
}  // namespace

void add_inspect(CLI::App& app) {
    auto args = std::make_shared<InspectArgs>();
    CLI::App* sub = app.add_subcommand("inspect", "List a checkpoint's tensors, targets and sizes");
    sub->add_option("MODEL", args->model, "HF folder, .safetensors file or llama2.c .bin")->required();
    sub->add_flag("--json", args->json, "Machine-readable output");
    args->flags.add_to(sub);
    sub->callback([args] { run_inspect(*args); });
}

}  // namespace loftq::cli
