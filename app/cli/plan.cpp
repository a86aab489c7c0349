// plan.cpp: `loftq plan init MODEL -o plan.loftq.json [settings flags] [--explicit]`: writes a
// plan to edit — the defaults (from the flags), no rules, and with --explicit one override per
// target weight so that each can be changed by hand — after checking it against the model.
#include <cstdio>
#include <memory>

#include "cli/common.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "loftq/job.h"
#include "loftq/budget.h"

namespace loftq::cli {

namespace {
struct PlanInitArgs {
    std::string model, out;
    bool explicit_weights = false;
    PlanFlags flags;
};

void run_plan_init(const PlanInitArgs& a) {
    auto ck = Checkpoint::open(a.model);
    Plan plan = a.flags.make_plan();
    plan.model = ck->path();
    const std::vector<TensorMeta> metas = tensor_metas(*ck);
    ResolvedPlan rp = resolve_plan(plan, metas);
    if (a.explicit_weights)
        for (auto& w : rp.weights) {
            SettingsPatch p;
            p.quant = w.s.quant;
            p.block = w.s.block;
            p.rank = w.s.rank;
            p.iters = w.s.iters;
            plan.overrides[w.name] = p;
        }
    save_plan(plan, a.out);
    PlanSize sz = plan_size(rp, metas);
    std::printf("wrote %s: %zu target weights, %s (%.3f bits/weight on targets)\n", a.out.c_str(), rp.weights.size(),
                human_bytes(double(sz.total_bytes)).c_str(), sz.target_bits_per_weight());
}
}  // namespace

void add_plan(CLI::App& app) {
    CLI::App* plan = app.add_subcommand("plan", "Create and check plans (*.loftq.json)");
    plan->require_subcommand(1);
    auto args = std::make_shared<PlanInitArgs>();
    CLI::App* init = plan->add_subcommand("init", "Write a plan for MODEL to edit");
    init->add_option("MODEL", args->model, "HF folder, .safetensors file or llama2.c .bin")->required();
    init->add_option("-o,--out", args->out, "Plan file to write")->required();
    init->add_flag("--explicit", args->explicit_weights, "One override per target weight");
    args->flags.add_to(init);
    init->callback([args] { run_plan_init(*args); });
    add_plan_auto(plan);
}

}  // namespace loftq::cli
