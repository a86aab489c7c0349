// eval_plan.cpp: see eval_plan.h.
#include "mixed/eval_plan.h"

#include <memory>

#include "io/checkpoint.h"
#include "loftq/job.h"
#include "train/trainer.h"

namespace loftq {

EvalPlanResult run_eval_plan(const EvalPlanOptions& opt, const std::function<void(const std::string&, double)>& progress,
                             const CancelToken& cancel) {
    EvalPlanResult res;
    {
        auto ck = Checkpoint::open(opt.model);
        const auto metas = tensor_metas(*ck);
        res.size = plan_size(resolve_plan(opt.plan, metas), metas);
    }
    auto plan = std::make_shared<const Plan>(opt.plan);
    struct Row { const char* name; InitKind init; bool on; };
    const Row rows[] = {{"original", InitKind::Lora16, opt.original},
                        {"qlora", InitKind::Qlora, opt.qlora},
                        {"loftq", InitKind::Loftq, opt.loftq}};
    int total = 0, done = 0;
    for (const Row& r : rows) total += r.on ? 1 : 0;
    for (const Row& r : rows) {
        if (!r.on) continue;
        if (progress) progress(r.name, double(done) / double(total));
        EvalOptions eo;
        eo.load.model = opt.model;
        eo.load.init = r.init;
        eo.load.rank = 0;                 // original: no adapters
        if (r.init != InitKind::Lora16) eo.load.plan = plan;
        eo.load.threads = opt.threads;
        eo.data = opt.data;
        eo.tokenizer = opt.tokenizer;
        eo.batch = opt.batch;
        eo.seq = opt.seq;
        eo.max_examples = opt.max_examples;
        eo.threads = opt.threads;
        eo.device = ComputeDevice::Cpu;
        const EvalResult er = run_eval(eo, cancel);
        res.rows.push_back({r.name, er.loss, er.ppl, er.tokens, er.seconds});
        ++done;
    }
    if (progress) progress("", 1.0);
    return res;
}

}  // namespace loftq
