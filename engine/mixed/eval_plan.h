// eval_plan.h: what a plan does to the model, without writing an export. Held-out loss and
// perplexity of three models side by side on the same examples: the original (W), the plan's
// QLoRA init (every target at q(W), adapters B = 0, so the LoRA term is zero) and its LoftQ init
// (Q_T + the B A of the plan's T steps, as `loftq quantize --plan` exports it). The same engine
// calls as `loftq eval` (train/trainer.h), with the plan handed to the loader (model/llama.h).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/cancel.h"
#include "loftq/budget.h"
#include "loftq/plan.h"

namespace loftq {

struct EvalPlanOptions {
    std::string model, data, tokenizer;   // tokenizer "" = beside the model
    Plan plan;
    int batch = 4, seq = 128;
    int64_t max_examples = 0;             // 0 = all
    int threads = 0;
    bool original = true, qlora = true, loftq = true;   // which rows to compute
};

struct EvalPlanRow {
    std::string start;                    // "original", "qlora", "loftq"
    double loss = 0, ppl = 0;
    int64_t tokens = 0;
    double seconds = 0;
};

struct EvalPlanResult {
    std::vector<EvalPlanRow> rows;
    PlanSize size;                        // of the plan on this model
};

// progress(row being computed, fraction of rows done). Throws loftq::Error and loftq::Cancelled.
EvalPlanResult run_eval_plan(const EvalPlanOptions& opt, const std::function<void(const std::string&, double)>& progress,
                             const CancelToken& cancel);

}  // namespace loftq
