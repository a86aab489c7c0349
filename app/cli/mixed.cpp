// mixed.cpp: mixed precision from the shell.
//   loftq plan auto MODEL --budget 2.5bits|600MB [--calib FILE] -o plan.loftq.json
//       sweep every target x candidate (mixed/sweep.h), choose the least damage under the budget
//       (mixed/allocator.h), write an ordinary plan; --front FILE.json adds the allocator's front
//       and the uniform plans for plotting.
//   loftq eval-plan MODEL --plan P --data HELD_OUT
//       held-out loss of the original, the plan's QLoRA init and its LoftQ init (mixed/eval_plan.h).
// And the calibration flags that `quantize` shares (CalibFlags in cli/common.h).
#include <cstdio>
#include <map>
#include <memory>
#include <sstream>

#include "cli/common.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "io/checkpoint.h"
#include "loftq/budget.h"
#include "loftq/job.h"
#include "mixed/allocator.h"
#include "mixed/calibration.h"
#include "mixed/eval_plan.h"
#include "mixed/sweep.h"

namespace loftq::cli {

void CalibFlags::add_to(CLI::App* app) {
    app->add_option("--calib", file, "Calibration text or JSONL: output errors ||X(W-Q-BA)^T||/||XW^T|| beside weight errors")
        ->check(CLI::ExistingFile);
    app->add_option("--calib-tokens", tokens, "Calibration token budget (default 4096)")->check(CLI::Range(1, 100000000));
    app->add_option("--calib-seq", seq, "Calibration window length (default 256)")->check(CLI::Range(2, 32768));
    app->add_option("--tokenizer", tokenizer, "Tokenizer for --calib (default: beside the model)");
}

std::shared_ptr<const CalibStats> CalibFlags::collect(const std::string& model, int threads, bool fall_back) const {
    if (file.empty()) return nullptr;
    CalibOptions o;
    o.model = model;
    o.data = file;
    o.tokenizer = tokenizer;
    o.tokens = tokens;
    o.seq = seq;
    o.threads = threads;
    CancelToken cancel;
    SigintGuard sigint(cancel);
    try {
        auto st = std::make_shared<CalibStats>(collect_calibration(o, {}, cancel));
        std::fprintf(stderr, "calibration: %lld tokens of %s\n", (long long)st->tokens, file.c_str());
        for (const auto& n : st->notes) std::fprintf(stderr, "calibration: %s\n", n.c_str());
        return st;
    } catch (const CalibrationUnsupported& e) {
        if (!fall_back) throw;
        std::fprintf(stderr, "calibration skipped: %s; using weight errors\n", e.what());
        return nullptr;
    }
}

namespace {

std::vector<int> parse_int_list(const std::string& s, const char* flag) {
    std::vector<int> r;
    std::stringstream in(s);
    for (std::string t; std::getline(in, t, ',');) {
        try {
            r.push_back(std::stoi(t));
        } catch (const std::exception&) {
            throw Error(std::string(flag) + " " + s + ": expected comma-separated integers");
        }
    }
    return r;
}

struct AutoArgs {
    std::string model, out, budget, front, quants = "int8,nf4,nf3,nf2", ranks = "8,16,32,64", cache_dir;
    SweepMode mode = SweepMode::Auto;
    bool no_keep = false, no_cache = false, weight_error = false;
    int threads = 0, min_bits_ends = 0, front_points = 24;
    std::optional<int> fixed_rank;
    PlanFlags flags;
    CalibFlags calib;
};

void run_plan_auto(const AutoArgs& a) {
    SweepOptions so;
    so.model = a.model;
    so.plan = a.flags.make_plan();
    so.quants.clear();
    std::stringstream qs(a.quants);
    for (std::string t; std::getline(qs, t, ',');) {
        auto k = quant_kind_from_name(t);
        if (!k) throw Error("--quants " + a.quants + ": unknown quantizer '" + t + "'");
        so.quants.push_back(*k);
    }
    so.ranks = parse_int_list(a.ranks, "--ranks");
    so.keep = !a.no_keep;
    so.mode = a.mode;
    so.threads = a.threads;
    so.cache_dir = a.no_cache ? "" : (a.cache_dir.empty() ? default_sweep_cache_dir() : a.cache_dir);
    so.calib = a.calib.collect(a.model, a.threads, true);
    CancelToken cancel;
    SweepResult sw;
    {
        SigintGuard sigint(cancel);
        sw = run_sweep(so, [](const SweepEvent& e) {
            if (!e.message.empty()) std::fprintf(stderr, "%s\n", e.message.c_str());
            else if (e.weights_done == e.weights_total || e.weights_done % 16 == 0)
                std::fprintf(stderr, "sweep: %d/%d weights, %s%s\n", e.weights_done, e.weights_total,
                             human_seconds(e.elapsed).c_str(), e.eta >= 0 ? (", eta " + human_seconds(e.eta)).c_str() : "");
        }, cancel);
    }
    for (const auto& n : sw.notes) std::fprintf(stderr, "sweep: %s\n", n.c_str());
    std::printf("sweep: %zu weights x %zu candidates (%s%s) in %s%s\n", sw.weights.size(),
                sw.weights.empty() ? size_t(0) : sw.weights[0].candidates.size(), kSweepModeNames.name(sw.mode),
                sw.calibrated ? ", output errors" : ", weight errors", human_seconds(sw.seconds).c_str(),
                sw.from_cache ? " (cached)" : "");

    AllocOptions ao;
    ao.output_error = !a.weight_error;
    ao.fixed_rank = a.fixed_rank;
    ao.min_bits_ends = a.min_bits_ends;
    ao.budget_bytes = parse_budget(a.budget, sw);
    const Allocation al = allocate(sw, ao);
    Plan plan = plan_from_allocation(sw, al, so.plan);
    auto ck = Checkpoint::open(a.model);
    plan.model = ck->path();
    const auto metas = tensor_metas(*ck);
    const PlanSize ps = plan_size(resolve_plan(plan, metas), metas);
    if (ps.total_bytes != al.bytes)  // the allocator's accounting is plan_size's; a mismatch is a bug
        throw Error("plan auto: internal size mismatch (" + std::to_string(ps.total_bytes) + " vs " +
                    std::to_string(al.bytes) + " bytes)");
    save_plan(plan, a.out);
    std::map<std::string, int> counts;
    for (size_t i = 0; i < sw.weights.size(); ++i) counts[sw.weights[i].candidates[size_t(al.choice[i])].label()]++;
    std::printf("budget %s (%llu bytes, %.3f bits/param)\n", human_bytes(double(ao.budget_bytes)).c_str(),
                (unsigned long long)ao.budget_bytes, 8.0 * double(ao.budget_bytes) / double(sw.params));
    std::printf("plan   %s (%llu bytes, %.3f bits/param), damage %.6g (sum of squared relative %s), %s\n",
                human_bytes(double(al.bytes)).c_str(), (unsigned long long)al.bytes, ps.bits_per_param(), al.damage,
                al.metric.c_str(),
                al.optimal ? "optimal" : ("within " + std::to_string(100 * al.gap) + "% of optimal").c_str());
    std::string mix;
    for (const auto& [k, n] : counts) mix += (mix.empty() ? "" : ", ") + std::to_string(n) + " x " + k;
    std::printf("choices: %s\n", mix.c_str());
    std::printf("uniform plans that fit:\n");
    for (const char* q : {"int8", "nf4", "nf3", "nf2"})
        for (int r : {16, 64}) {
            const auto u = uniform_point(sw, std::string(q) + " r" + std::to_string(r), ao.output_error);
            if (u && u->bytes <= ao.budget_bytes)
                std::printf("  %-9s %s (%.3f bits/param), damage %.6g\n", u->label.c_str(), human_bytes(double(u->bytes)).c_str(),
                            8.0 * double(u->bytes) / double(sw.params), u->damage);
        }
    std::printf("wrote %s\n", a.out.c_str());
    if (!a.front.empty()) {
        nlohmann::ordered_json j;
        j["format"] = "loftq-front";
        j["model"] = ck->path();
        j["metric"] = al.metric;
        j["params"] = sw.params;
        j["budget_bytes"] = ao.budget_bytes;
        nlohmann::ordered_json f = nlohmann::ordered_json::array();
        for (const auto& p : allocation_front(sw, ao, a.front_points))
            f.push_back({{"bytes", p.bytes}, {"bits_per_param", p.bits_per_param}, {"damage", p.damage}, {"optimal", p.alloc.optimal}});
        j["front"] = f;
        nlohmann::ordered_json u = nlohmann::ordered_json::array();
        for (const char* q : {"int8", "nf4", "nf3", "nf2"})
            for (int r : {16, 64})
                if (const auto p = uniform_point(sw, std::string(q) + " r" + std::to_string(r), ao.output_error))
                    u.push_back({{"label", p->label}, {"bytes", p->bytes}, {"bits_per_param", 8.0 * double(p->bytes) / double(sw.params)},
                                 {"damage", p->damage}});
        j["uniform"] = u;
        j["chosen"] = {{"bytes", al.bytes}, {"damage", al.damage}};
        write_file_atomic(a.front, j.dump(1));
        std::printf("wrote %s\n", a.front.c_str());
    }
}

struct EvalPlanArgs {
    std::string model, plan, data, tokenizer;
    int batch = 4, seq = 128, threads = 0;
    int64_t max_examples = 0;
    bool json = false;
};

void run_eval_plan_cmd(const EvalPlanArgs& a) {
    EvalPlanOptions o;
    o.model = a.model;
    o.plan = load_plan(a.plan);
    o.data = a.data;
    o.tokenizer = a.tokenizer;
    o.batch = a.batch;
    o.seq = a.seq;
    o.max_examples = a.max_examples;
    o.threads = a.threads;
    CancelToken cancel;
    EvalPlanResult r;
    {
        SigintGuard sigint(cancel);
        r = run_eval_plan(o, [](const std::string& row, double) {
            if (!row.empty()) std::fprintf(stderr, "evaluating %s...\n", row.c_str());
        }, cancel);
    }
    if (a.json) {
        nlohmann::ordered_json j;
        j["plan"] = a.plan;
        j["plan_bytes"] = r.size.total_bytes;
        j["bits_per_param"] = r.size.bits_per_param();
        for (const auto& row : r.rows) j[row.start] = {{"loss", row.loss}, {"ppl", row.ppl}, {"tokens", row.tokens}};
        std::printf("%s\n", j.dump(1).c_str());
        return;
    }
    std::printf("plan %s: %s, %.3f bits/param\n", a.plan.c_str(), human_bytes(double(r.size.total_bytes)).c_str(),
                r.size.bits_per_param());
    std::printf("| model | held-out loss | perplexity | tokens |\n| --- | --- | --- | --- |\n");
    for (const auto& row : r.rows)
        std::printf("| %s | %.4f | %.3f | %lld |\n", row.start == "original" ? "original" : row.start == "qlora" ? "QLoRA init" : "LoftQ init",
                    row.loss, row.ppl, (long long)row.tokens);
}

}  // namespace

void add_plan_auto(CLI::App* plan) {
    auto a = std::make_shared<AutoArgs>();
    CLI::App* sub = plan->add_subcommand("auto", "The least-damage plan under a memory budget (sweep + knapsack)");
    sub->add_option("MODEL", a->model, "HF folder, .safetensors file or llama2.c .bin")->required();
    sub->add_option("-o,--out", a->out, "Plan file to write")->required();
    sub->add_option("--budget", a->budget, "Whole-model budget: bits per parameter (2.5bits) or bytes (600MB, 1.2GiB)")->required();
    sub->add_option("--quants", a->quants, "Candidate quantizers (default int8,nf4,nf3,nf2)");
    sub->add_option("--ranks", a->ranks, "Candidate LoRA ranks (default 8,16,32,64)");
    sub->add_flag("--no-keep", a->no_keep, "Do not offer keeping a weight in 16-bit");
    add_enum_option(sub, "--sweep", a->mode, kSweepModeNames,
                    "Sweep: auto (default), fast (LoftQ's first step), full (every candidate's T steps)");
    sub->add_option("--fixed-rank", a->fixed_rank, "Only candidates of this LoRA rank")->check(CLI::Range(1, 65536));
    sub->add_option("--min-bits-ends", a->min_bits_ends, "First and last layer at least this many bits (e.g. 4)")->check(CLI::Range(0, 16));
    sub->add_flag("--weight-error", a->weight_error, "Allocate on weight errors even with --calib");
    sub->add_option("--front", a->front, "Also write the allocator's front and the uniform plans (JSON)");
    sub->add_option("--front-points", a->front_points, "Budgets on the front (default 24)")->check(CLI::Range(2, 1000));
    sub->add_option("--cache-dir", a->cache_dir, "Sweep cache folder (default ~/.cache/loftq/sweeps)");
    sub->add_flag("--no-cache", a->no_cache, "Neither read nor write the sweep cache");
    sub->add_option("--threads", a->threads, "Threads (default: all cores)")->check(CLI::Range(0, 4096));
    a->flags.add_to(sub);
    a->calib.add_to(sub);
    sub->callback([a] { run_plan_auto(*a); });
}

void add_eval_plan(CLI::App& app) {
    auto a = std::make_shared<EvalPlanArgs>();
    CLI::App* sub = app.add_subcommand("eval-plan", "Held-out loss of the original model, a plan's QLoRA init and its LoftQ init");
    sub->add_option("MODEL", a->model, "The original checkpoint")->required();
    sub->add_option("--plan", a->plan, "Plan file (*.loftq.json)")->required()->check(CLI::ExistingFile);
    sub->add_option("--data", a->data, "Held-out text or JSONL")->required()->check(CLI::ExistingFile);
    sub->add_option("--tokenizer", a->tokenizer, "Tokenizer (default: beside the model)");
    sub->add_option("--batch", a->batch, "Sequences per forward (default 4)")->check(CLI::Range(1, 4096));
    sub->add_option("--seq", a->seq, "Sequence length (default 128)")->check(CLI::Range(2, 32768));
    sub->add_option("--max-examples", a->max_examples, "Evaluate at most this many sequences (0 = all)");
    sub->add_option("--threads", a->threads, "Threads (default: all cores)")->check(CLI::Range(0, 4096));
    sub->add_flag("--json", a->json, "Print JSON");
    sub->callback([a] { run_eval_plan_cmd(*a); });
}

}  // namespace loftq::cli
