// experiment.cpp: `loftq experiment MODEL --data FILE --out DIR [--report FILE.md]`: the
// paper in miniature. For 2-bit (NF2), mixed 2/4-bit (first half of the layers NF4, the rest
// NF2) and 4-bit (NF4), quantize with LoftQ (T steps) and with QLoRA (T = 0: q(W), A random,
// B = 0), then fine-tune each export with identical settings, data and seed. Reports the mean
// initial relative error of the targets, the held-out loss before and after fine-tuning, and
// the full-precision model's held-out loss, as a Markdown table (printed, and written to
// --report with the command that made it). It only calls the engine's run_quantize,
// run_finetune and run_eval, as the GUI does.
// With --plan FILE (repeatable) the rows are those plans instead (e.g. `loftq plan auto`'s
// against uniform plans of the same budget), each named by its file and with its bytes and bits
// per parameter; LoftQ init only unless --with-qlora.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>
#include <tuple>

#include "cli/common.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "io/checkpoint.h"
#include "export/quantize.h"
#include "train/trainer.h"

namespace loftq::cli {

namespace {

struct ExperimentArgs {
    std::string model, data, eval_data, out, report, tokenizer;
    int steps = 200, batch = 8, seq = 128, rank = 8, iters = 5, threads = 0, eval_every = 50, eval_batches = 16;
    double lr = 1e-3;
    uint64_t seed = 0;
    std::string command;
    ComputeDevice device = ComputeDevice::Auto;
    std::vector<std::string> plans;
    bool with_qlora = false;
};

struct Row {
    std::string config, init;
    double init_error = 0, loss_before = 0, loss_after = 0, seconds = 0;
    uint64_t bytes = 0;
    double bits_per_param = 0;
};

Plan plan_for(const std::string& config, int layers, int rank, int iters, uint64_t seed) {
    Plan p;
    p.defaults.rank = rank;
    p.defaults.iters = iters;
    p.seed = seed;
    p.defaults.quant = config == "4-bit" ? QuantKind::NF4 : QuantKind::NF2;
    if (config == "mixed 2/4-bit") {
        PlanRule r;
        r.pattern = "*";
        r.layer_min = 0;
        r.layer_max = std::max(0, layers / 2 - 1);
        r.set.quant = QuantKind::NF4;
        p.rules.push_back(r);
    }
    return p;
}

// Without --eval-data, a text file is split once, here, into OUT/train.txt and OUT/eval.txt
// (every 5th document to eval; documents = blank-line paragraphs, or lines when there are no
// blank lines), so that every run and the full-precision reference see the same held-out text.
std::pair<std::string, std::string> split_text(const std::string& data, const std::string& out) {
    const std::string text = read_text_file(data);
    std::vector<std::string> docs;
    const bool paragraphs = text.find("\n\n") != std::string::npos;
    std::string cur;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (paragraphs) {
            if (line.empty()) {
                if (!cur.empty()) docs.push_back(cur);
                cur.clear();
            } else {
                cur += line + "\n";
            }
        } else if (!line.empty()) {
            docs.push_back(line + "\n");
        }
    }
    if (!cur.empty()) docs.push_back(cur);
    if (docs.size() < 5) throw Error(data, "", "too few documents to hold out an evaluation split (give --eval-data)");
    std::string train, eval;
    for (size_t i = 0; i < docs.size(); ++i) (i % 5 == 4 ? eval : train) += docs[i] + (paragraphs ? "\n" : "");
    std::filesystem::create_directories(out);
    const std::string tp = out + "/train.txt", ep = out + "/eval.txt";
    write_file_atomic(tp, train);
    write_file_atomic(ep, eval);
    return {tp, ep};
}

void run_experiment(ExperimentArgs a) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::exists(a.out, ec) && !fs::is_empty(a.out, ec))
        throw Error(a.out, "", "--out is not empty (an earlier experiment's runs?): choose a new folder");
    if (a.eval_data.empty()) {
        const bool jsonl = a.data.size() > 6 && a.data.compare(a.data.size() - 6, 6, ".jsonl") == 0;
        if (jsonl) throw Error(a.data, "", "give --eval-data for JSONL data (e.g. GSM8K's test.jsonl)");
        std::tie(a.data, a.eval_data) = split_text(a.data, a.out);
    }
    const int layers = Checkpoint::open(a.model)->config().n_layers;
    std::vector<Row> rows;
    CancelToken cancel;
    auto progress = [](const char* what) {
        return [what](const TrainEvent& e) {
            if (e.kind == TrainEventKind::Eval)
                std::fprintf(stderr, "  %s step %d/%d: held-out loss %.4f\n", what, e.step, e.steps, e.eval_loss);
        };
    };

    // The full-precision reference.
    EvalOptions ev;
    ev.load.model = a.model;
    ev.load.init = InitKind::Lora16;  // B = 0: the original model
    ev.data = a.eval_data;
    ev.tokenizer = a.tokenizer;
    ev.batch = a.batch;
    ev.seq = a.seq;
    ev.max_examples = int64_t(a.eval_batches) * a.batch;
    ev.threads = a.threads;
    ev.device = a.device;
    std::string where;
    const ComputeDevice dev = resolve_device(a.device, &where);
    std::fprintf(stderr, "%s\n", where.c_str());
    const EvalResult full = run_eval(ev, cancel);
    std::fprintf(stderr, "full-precision held-out loss %.4f (%lld tokens)\n", full.loss, (long long)full.tokens);

    std::vector<std::string> configs = {"2-bit", "mixed 2/4-bit", "4-bit"};
    std::vector<std::string> inits = {"QLoRA", "LoftQ"};
    if (!a.plans.empty()) {
        configs = a.plans;
        if (!a.with_qlora) inits = {"LoftQ"};
    }
    for (const std::string& config_s : configs) {
        const char* config = config_s.c_str();
        for (const std::string& init_s : inits) {
            const char* init = init_s.c_str();
            const auto t0 = std::chrono::steady_clock::now();
            const bool loftq = std::string(init) == "LoftQ";
            const bool from_file = !a.plans.empty();
            const std::string name = from_file ? fs::path(config_s).filename().string() : config_s;
            std::string tag = name + "-" + init;
            for (auto& c : tag)
                if (c == ' ' || c == '/') c = '_';
            const std::string dir = (fs::path(a.out) / tag).string();
            QuantizeOptions q;
            q.model = a.model;
            q.out_dir = dir + "/export";
            if (from_file) {
                q.plan = load_plan(config_s);
                if (!loftq) {  // QLoRA: the same plan, T = 0 everywhere
                    q.plan.defaults.iters = 0;
                    for (auto& r : q.plan.rules) r.set.iters.reset();
                    for (auto& [n, o] : q.plan.overrides) o.iters.reset();
                }
            } else {
                q.plan = plan_for(config, layers, a.rank, loftq ? a.iters : 0, a.seed);
            }
            q.threads = a.threads;
            q.force = true;
            q.device = dev;
            std::fprintf(stderr, "%s, %s: quantizing\n", config, init);
            QuantizeResult qr = run_quantize(q, {}, cancel);
            Row row{name, init};
            row.bytes = qr.size.total_bytes;
            row.bits_per_param = qr.size.bits_per_param();
            for (const auto& w : qr.weights) row.init_error += w.final_error;
            row.init_error /= double(std::max<size_t>(1, qr.weights.size()));

            TrainOptions t;
            t.load.model = q.out_dir;
            t.load.init = InitKind::Export;
            t.load.threads = a.threads;
            t.load.seed = a.seed;
            t.data = a.data;
            t.eval_data = a.eval_data;
            t.eval_fraction = 0;
            t.tokenizer = a.tokenizer;
            t.out_dir = dir + "/finetune";
            t.steps = a.steps;
            t.batch = a.batch;
            t.seq = a.seq;
            t.lr = a.lr;
            t.eval_every = a.eval_every;
            t.eval_batches = a.eval_batches;
            t.seed = a.seed;
            t.threads = a.threads;
            t.device = a.device;
            std::fprintf(stderr, "%s, %s: fine-tuning %d steps\n", config, init, a.steps);
            TrainResult tr = run_finetune(t, progress(init), cancel);
            row.loss_before = tr.first_eval_loss;
            row.loss_after = tr.final_eval_loss;
            row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            rows.push_back(row);
        }
    }

    std::ostringstream md;
    char buf[512];
    md << "| " << (a.plans.empty() ? "precision" : "plan") << " | bytes | bits/param | init | init error ‖W−Q−BA‖/‖W‖ | held-out loss before | after "
       << a.steps << " steps | time |\n";
    md << "| --- | --- | --- | --- | --- | --- | --- | --- |\n";
    for (const auto& r : rows) {
        std::snprintf(buf, sizeof buf, "| %s | %s | %.3f | %s | %.4f | %.4f | %.4f | %.0f s |\n", r.config.c_str(),
                      human_bytes(double(r.bytes)).c_str(), r.bits_per_param, r.init.c_str(), r.init_error, r.loss_before,
                      r.loss_after, r.seconds);
        md << buf;
    }
    std::snprintf(buf, sizeof buf, "\nFull-precision model: held-out loss %.4f (perplexity %.2f) on the same held-out examples (%lld scored tokens).\n",
                  full.loss, full.ppl, (long long)full.tokens);
    md << buf;
    std::printf("%s", md.str().c_str());
    if (!a.report.empty()) {
        std::ostringstream doc;
        std::time_t now = std::time(nullptr);
        char date[32];
        std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
        doc << "## " << fs::path(a.model).filename().string() << ", " << date << "\n\nCommand: `" << a.command << "`  \n"
            << "Machine: " << std::thread::hardware_concurrency() << " hardware threads, "
            << (dev == ComputeDevice::Cuda ? "CUDA: " + cuda_status().device : std::string("CPU path")) << ".\n\n"
            << md.str() << "\n";
        std::string old;
        if (fs::exists(a.report)) old = read_text_file(a.report);
        const std::string marker = "<!-- experiments below: newest first -->\n";
        auto at = old.find(marker);
        std::string text = at == std::string::npos ? "# Experiments: the paper in miniature\n\n" + marker + doc.str() + old
                                                   : old.substr(0, at + marker.size()) + doc.str() + old.substr(at + marker.size());
        write_file_atomic(a.report, text);
        std::printf("appended to %s\n", a.report.c_str());
    }
}

}  // namespace

void add_experiment(CLI::App& app) {
    auto a = std::make_shared<ExperimentArgs>();
    CLI::App* sub = app.add_subcommand("experiment", "The paper in miniature: LoftQ vs QLoRA at 2, mixed 2/4 and 4 bits, fine-tuned alike");
    sub->add_option("MODEL", a->model, "Checkpoint (HF folder, .safetensors or llama2.c .bin)")->required();
    sub->add_option("--data", a->data, "Fine-tuning data (text or JSONL)")->required();
    sub->add_option("--eval-data", a->eval_data, "Held-out data (default: a split of --data)");
    sub->add_option("--out", a->out, "Working folder (exports and runs)")->required();
    sub->add_option("--report", a->report, "Markdown file to add the table to (e.g. docs/EXPERIMENTS.md)");
    sub->add_option("--tokenizer", a->tokenizer, "Tokenizer file (default: beside the model)");
    sub->add_option("--steps", a->steps, "Fine-tuning steps per run")->check(CLI::Range(1, 10000000));
    sub->add_option("--batch", a->batch, "Sequences per step")->check(CLI::Range(1, 4096));
    sub->add_option("--seq", a->seq, "Sequence length")->check(CLI::Range(8, 32768));
    sub->add_option("--lr", a->lr, "Peak learning rate");
    sub->add_option("--rank", a->rank, "LoRA rank")->check(CLI::Range(1, 4096));
    sub->add_option("--iters", a->iters, "LoftQ alternating steps T")->check(CLI::Range(1, 100));
    sub->add_option("--eval-every", a->eval_every, "Steps between evaluations");
    sub->add_option("--eval-batches", a->eval_batches, "Batches per evaluation");
    sub->add_option("--seed", a->seed, "Seed");
    sub->add_option("--threads", a->threads, "Threads (0 = all cores)");
    sub->add_option("--plan", a->plans, "Compare these plans (repeatable) instead of 2, 2/4 and 4 bits")->check(CLI::ExistingFile);
    sub->add_flag("--with-qlora", a->with_qlora, "With --plan: also each plan's QLoRA init (T = 0)");
    add_device_options(sub, a->device, ": quantize, fine-tune and evaluate there");
    sub->callback([a, sub] {
        a->command = "loftq experiment";
        for (auto* o : sub->get_options())
            if (o->count() > 0 && o->get_name() != "--help") {
                if (o->get_expected_max() == 0) {  // a flag
                    a->command += " " + o->get_name();
                    continue;
                }
                for (const auto& v : o->results())  // every value of a repeated option (--plan)
                    a->command += " " + (o->get_positional() ? std::string() : o->get_name() + " ") + v;
            }
        run_experiment(*a);
    });
}

}  // namespace loftq::cli
