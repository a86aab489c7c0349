// trainer.cpp: run_finetune (see trainer.h). The loop, as in llm.c's train_gpt2:
// for each step, `accum` micro-batches of B examples each are forwarded and backpropagated; the
// step's loss is the mean over all its scored tokens, so micro-batch i's gradient enters with
// weight n_i / N (n_i its scored tokens, N the step's); then global-norm clipping and one AdamW
// update of model->trainable().
// Data order: epoch e visits the train examples in a permutation drawn from (seed, e) alone, and
// a cursor counts examples consumed; (cursor, optimizer state, LoRA values) is the whole state,
// which is what makes a resumed run bit-identical to an uninterrupted one.
// Events come from the calling thread only, one at a time (serialized by construction); a
// receiver should copy what it needs and return.
// Devices: the model is loaded on the host (LlamaCpu; for CUDA with the quantized sites kept
// packed) and, for CUDA, uploaded once (LlamaCuda) and the host copy dropped (train_device.h);
// the update runs behind train/optimizer.h. Everything else (data order, schedule, events, files)
// is the same code on both; on the device the LoRA values and moments come to the host only at
// checkpoints. metrics.jsonl is written by MetricsLog (metrics_log.h). A run that fails or is
// cancelled leaves only what a resume needs (run_outputs.h: the checkpoint and the metrics up to
// it, or nothing at all).
#include "train/trainer.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <new>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/clock.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "core/units.h"
#include "model/out_of_memory.h"
#include "train/adamw.h"
#include "train/adapter_writer.h"
#include "train/dataset.h"
#include "train/evaluate.h"
#include "train/generate.h"
#include "train/metrics_log.h"
#include "train/optimizer.h"
#include "train/run_outputs.h"
#include "train/tokenizer.h"
#include "train/train_checkpoint.h"
#include "train/train_device.h"

namespace fs = std::filesystem;

namespace loftq {

namespace {

// The order of epoch `epoch`: a Fisher-Yates shuffle of [0, n) seeded by (seed, epoch) only.
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
    std::vector<int64_t> o(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) o[size_t(i)] = i;
    Rng rng(seed ^ hash_name("loftq-train-epoch") ^ (uint64_t(epoch) * 0x9e3779b97f4a7c15ull));
    for (int64_t i = n - 1; i > 0; --i) {
        int64_t j = int64_t(rng.next() % uint64_t(i + 1));
        std::swap(o[size_t(i)], o[size_t(j)]);
    }
    return o;
}

// Example index at a cursor position, keeping the current epoch's order.
class Sampler {
public:
    Sampler(int64_t n, uint64_t seed) : n_(n), seed_(seed) {}
    int64_t at(int64_t cursor) {
        const int64_t e = cursor / n_;
        if (e != epoch_) { order_ = epoch_order(n_, seed_, e); epoch_ = e; }
        return order_[size_t(cursor % n_)];
    }
private:
    int64_t n_;
    uint64_t seed_;
    int64_t epoch_ = -1;
    std::vector<int64_t> order_;
};

std::string abs_path(const std::string& p) {
    std::error_code ec;
    fs::path a = fs::absolute(p, ec);
    return ec ? p : a.lexically_normal().string();
}

}  // namespace

TrainResult run_finetune(const TrainOptions& opt, const TrainCallback& cb, const CancelToken& cancel) {
    const auto t0 = Clock::now();
    // Data-parallel (data_parallel.h): this rank's micro-batches are [mb_begin, mb_end) of each
    // step's accum; rank 0 (the writer) alone reads the checkpoint, evaluates and writes.
    DataParallel* const dp = opt.parallel && opt.parallel->ranks() > 1 ? opt.parallel.get() : nullptr;
    const int n_ranks = dp ? dp->ranks() : 1, my_rank = dp ? dp->rank() : 0;
    const bool writer = my_rank == 0;
    if (dp && opt.accum % n_ranks != 0)
        throw Error("fine-tune over " + std::to_string(n_ranks) + " ranks: accum (" + std::to_string(opt.accum) +
                    ") must be a multiple of the ranks: each takes accum / ranks of a step's micro-batches of batch rows, "
                    "so that the global batch (batch x accum rows) is the one a single process takes");
    const int mb_begin = opt.accum / n_ranks * my_rank, mb_end = opt.accum / n_ranks * (my_rank + 1);
    const DeviceChoice dev = choose_device(opt.device, opt.gemm);
    if (opt.out_dir.empty()) throw Error("fine-tune: no output folder given");
    if (opt.data.empty()) throw Error("fine-tune: no training data given");
    if (opt.steps < 1 || opt.batch < 1 || opt.seq < 2 || opt.accum < 1)
        throw Error("fine-tune: steps, batch and accum must be >= 1 and seq >= 2");
    if (!(opt.lr > 0) || opt.min_lr_ratio < 0 || opt.min_lr_ratio > 1)
        throw Error("fine-tune: lr must be > 0 and min_lr_ratio in [0, 1]");
    const std::pair<const std::string*, const char*> paths[] = {
        {&opt.load.model, "the model's path"}, {&opt.data, "the data's path"}, {&opt.eval_data, "the held-out data's path"},
        {&opt.tokenizer, "the tokenizer's path"}, {&opt.out_dir, "the output folder's path"}};
    for (const auto& [path, what] : paths) require_utf8_path(*path, what);
    const std::string out = abs_path(opt.out_dir);
    if (same_file(out, opt.load.model) || path_within(opt.load.model, out))
        throw Error(out, "", "the output folder is or holds the input model; choose another output folder");
    if (opt.load.init == InitKind::Export && !is_loftq_export(opt.load.model))
        throw Error(opt.load.model, "",
                    "not a LoftQ export (no loftq_init/adapter_model.safetensors, not a packed export): fine-tuning it "
                    "'as stored' would train the original, unquantized weights; start from it with a LoftQ, QLoRA or "
                    "16-bit LoRA init, or give the export's folder");
    const std::string ckdir = (fs::path(out) / "checkpoint").string();
    const std::string ckfile = (fs::path(ckdir) / kCheckpointFile).string();
    if (writer && opt.resume && !has_train_checkpoint(ckdir))
        throw Error(ckfile, "", "no checkpoint to resume from (start a new run instead of resuming)");
    if (writer && !opt.resume && has_train_checkpoint(ckdir))
        throw Error(ckfile, "", "an earlier run's checkpoint is here; resume to continue it, or choose another output folder");

    auto emit = [&](TrainEvent e) {
        e.steps = opt.steps;
        e.elapsed = since(t0);
        if (cb) cb(e);
    };
    auto message = [&](const std::string& s) {
        TrainEvent e;
        e.kind = TrainEventKind::Message;
        e.text = s;
        emit(e);
    };

    TrainState st;
    if (opt.resume && writer) {
        st = read_train_state(ckdir);
        for (const auto& n : check_resume_compatible(ckfile, st.options, opt)) message("resume: " + n);
    }

    // Tokenizer and data first: their errors come before the (slow) model load.
    const std::string tok_path = opt.tokenizer.empty() ? opt.load.model : opt.tokenizer;
    std::unique_ptr<Tokenizer> tok = load_tokenizer(tok_path);
    DatasetOptions dopt;
    dopt.seq = opt.seq;
    dopt.eval_fraction = opt.eval_data.empty() ? opt.eval_fraction : 0.0;
    dopt.seed = opt.seed;
    Dataset data = load_dataset(opt.data, *tok, dopt);
    if (data.train.empty()) throw Error(opt.data, "", "no training examples (file too short for sequences of " + std::to_string(opt.seq) + " tokens?)");
    std::vector<Example> eval_ex = opt.eval_data.empty() ? std::move(data.eval) : load_examples(opt.eval_data, *tok, dopt);
    const std::string eval_file = opt.eval_data.empty() ? opt.data : opt.eval_data;
    cancel.throw_if_cancelled();
    if (dp) {  // every rank must read the same examples, or the replicas would train on different batches
        double here[2] = {double(data.train.size()), double(data.scored_tokens)}, root[2] = {here[0], here[1]};
        dp->broadcast(root, 2);
        if (here[0] != root[0] || here[1] != root[1])
            throw Error(opt.data, "", "rank " + std::to_string(my_rank) + " reads " + std::to_string(int64_t(here[0])) +
                                          " training examples (" + std::to_string(int64_t(here[1])) + " scored tokens), rank 0 " +
                                          std::to_string(int64_t(root[0])) + " (" + std::to_string(int64_t(root[1])) +
                                          "): every rank must read the same data file");
    }

    {
        TrainEvent e;
        e.kind = TrainEventKind::Started;
        std::ostringstream s;
        s << "fine-tuning " << opt.load.model << " (init " << kInitKindNames.name(opt.load.init);
        if (opt.load.plan && (opt.load.init == InitKind::Loftq || opt.load.init == InitKind::Qlora))
            s << ", a plan's per-weight settings";
        else if (opt.load.init != InitKind::Export)
            s << ", " << opt.load.quant << " rank " << opt.load.rank;
        s << ") on " << data.train.size() << " " << data.format << " examples of " << opt.seq << " tokens ("
          << data.scored_tokens << " scored), " << eval_ex.size() << " eval examples; tokenizer " << tok->kind();
        e.text = s.str();
        emit(e);
    }
    message(dev.note);
    // The original model on the same held-out examples (first: one model in memory at a time).
    double original_loss = NAN;
    if (opt.eval_original && writer && !opt.resume && !eval_ex.empty() && opt.load.init != InitKind::Export) {
        message("measuring the original model on the held-out examples...");
        original_loss = original_model_loss(opt, dev.device, eval_ex, eval_file, cancel, message);
        TrainEvent e;
        e.kind = TrainEventKind::Eval;
        e.step = -1;
        e.eval_loss = original_loss;
        e.eval_ppl = std::exp(original_loss);
        e.text = "original model";
        emit(e);
        message("original model: held-out loss " + std::to_string(original_loss));
    } else if (opt.eval_original && opt.load.init == InitKind::Export) {
        message("the original model of an export is not at hand: no reference loss");
    }
    cancel.throw_if_cancelled();
    message(opt.load.init == InitKind::Loftq ? "loading the model and running LoftQ in memory..." : "loading the model...");
    LoadOptions lo = opt.load;
    if (lo.threads == 0) lo.threads = opt.threads;
    DeviceModel dm = load_on_device(lo, dev.device, opt.gemm, opt.recompute, opt.batch, opt.seq, opt.accum, {}, message);
    LlamaModel* model = dm.model.get();
    const int threads = resolve_threads(opt.threads);
    model->set_threads(threads);
    const LlamaConfig& cfg = model->config();
    if (tok->vocab_size() > cfg.vocab)
        message("warning: the tokenizer has " + std::to_string(tok->vocab_size()) + " tokens, the model " +
                std::to_string(cfg.vocab));
    check_examples(data.train, opt.seq, cfg.vocab, opt.data);
    check_examples(eval_ex, opt.seq, cfg.vocab, eval_file);
    cancel.throw_if_cancelled();

    std::vector<TrainableTensor> params = model->trainable();
    int64_t n_params = 0;
    for (const auto& t : params) n_params += t.numel();
    AdamWParams ap;
    ap.beta1 = opt.beta1;
    ap.beta2 = opt.beta2;
    ap.eps = opt.eps;
    ap.weight_decay = opt.weight_decay;
    std::unique_ptr<Optimizer> optimizer;
    try {
        optimizer = make_optimizer(dm, params, ap, opt.accum > 1);
    } catch (const std::bad_alloc&) {   // two AdamW moments per LoRA value (plus a gradient sum when accumulating)
        throw Error(opt.load.model, "", out_of_memory_text(human_bytes(4.0 * double(n_params) * (opt.accum > 1 ? 3 : 2)) +
                                                           " for the optimizer's state of " + std::to_string(params.size()) +
                                                           " LoRA tensors (" + std::to_string(n_params) + " values)"));
    }
    if (opt.resume && writer) {
        st = load_train_checkpoint(ckdir, params, optimizer->host_state());  // host values and moments
        optimizer->sync_to_device();
        if (st.n_train != int64_t(data.train.size()))
            message("resume: the data now has " + std::to_string(data.train.size()) + " train examples, the checkpoint saw " +
                    std::to_string(st.n_train) + ": the batch order differs from an uninterrupted run");
        message("resumed from " + ckfile + " at step " + std::to_string(st.step));
    }
    if (dp) {  // every replica starts from rank 0's adapters, moments and position
        optimizer->sync_to_host();
        AdamW& adam = optimizer->host_state();
        for (size_t k = 0; k < params.size(); ++k) {
            dp->broadcast(params[k].value, size_t(params[k].numel()));
            dp->broadcast(adam.m()[k].data(), adam.m()[k].size());
            dp->broadcast(adam.v()[k].data(), adam.v()[k].size());
        }
        double pos[4] = {double(st.step), double(st.cursor), double(st.tokens), double(adam.t())};
        dp->broadcast(pos, 4);
        st.step = int(pos[0]);
        st.cursor = int64_t(pos[1]);
        st.tokens = int64_t(pos[2]);
        adam.set_t(int64_t(pos[3]));
        optimizer->sync_to_device();
        message("data-parallel over " + std::to_string(n_ranks) + " ranks: " + std::to_string(opt.accum / n_ranks) +
                " micro-batch(es) of " + std::to_string(opt.batch) + " rows each per step; LoRA gradients (" +
                human_bytes(4.0 * double(n_params)) + ") summed across ranks every step");
    }
    st.n_train = int64_t(data.train.size());
    st.options = train_options_json(opt);
    message(std::to_string(params.size()) + " LoRA tensors, " + std::to_string(n_params) + " trainable parameters; " +
            (dm.where == "cpu" ? std::to_string(threads) + " threads" : dm.where));

    LrSchedule sched;
    sched.lr = opt.lr;
    sched.min_lr_ratio = opt.min_lr_ratio;
    sched.steps = opt.steps;
    sched.warmup = opt.warmup >= 0 ? opt.warmup : int(std::lround(0.03 * opt.steps));

    // From here on the run writes into `out`. When it stops early (an error, a cancel), the guard
    // applies run_outputs.h's rule before the exception goes on (the checkpoint stays for a
    // resume; no adapter, sample or metrics that pass for a finished run) and says what stayed.
    // Only the writer (rank 0 of a data-parallel run) has outputs.
    std::optional<RunOutputs> outputs;
    if (writer) {
        outputs.emplace(out, opt.resume ? st.step : -1);
        outputs->create_folder();
    }
    const std::function<void(const std::string&)> say = message;
    struct StopGuard {
        std::optional<RunOutputs>& outputs;
        const TrainState& st;
        const std::function<void(const std::string&)>& say;
        ~StopGuard() {
            if (!outputs || outputs->is_finished()) return;
            const std::string note = outputs->stopped(st.step);
            try {
                if (!note.empty()) say(note);
            } catch (...) {   // a receiver's failure must not replace the error that stopped the run
            }
        }
    } stop_guard{outputs, st, say};

    std::optional<MetricsLog> metrics;
    if (writer) {
        metrics.emplace((fs::path(out) / "metrics.jsonl").string());
        metrics->start(opt.resume, st.step);
    }
    auto log_metrics = [&](const nlohmann::ordered_json& j) {
        if (!writer) return;
        metrics->append(j);
        outputs->metrics_written(metrics->path());
    };
    if (std::isfinite(original_loss)) {
        nlohmann::ordered_json j;
        j["kind"] = "eval_original";
        j["step"] = 0;
        j["eval_loss"] = json_number(original_loss);
        log_metrics(j);
    }

    TrainResult res;
    std::vector<std::string> files;
    auto add_files = [&](const std::vector<std::string>& fs_) {
        for (const auto& f : fs_)
            if (std::find(files.begin(), files.end(), f) == files.end()) files.push_back(f);
    };

    const int B = opt.batch, T = opt.seq;
    double last_eval_step_loss = st.last_eval_loss;
    int last_eval_step = opt.resume ? st.step : -1, last_ckpt_step = opt.resume ? st.step : -1;
    auto evaluate = [&](int step) {
        if (eval_ex.empty() || !writer) return;  // the other ranks go on to the next step's sum and wait there
        const double loss = mean_loss(*model, eval_ex, B, T, opt.eval_batches, cancel, nullptr);
        last_eval_step_loss = loss;
        last_eval_step = step;
        if (!std::isfinite(st.first_eval_loss)) st.first_eval_loss = loss;
        st.last_eval_loss = loss;
        TrainEvent e;
        e.kind = TrainEventKind::Eval;
        e.step = step;
        e.eval_loss = loss;
        e.eval_ppl = std::exp(loss);
        e.train_loss = st.last_train_loss;
        e.fraction = double(step) / opt.steps;
        emit(e);
        nlohmann::ordered_json j;
        j["kind"] = "eval";
        j["step"] = step;
        j["eval_loss"] = json_number(loss);
        j["eval_ppl"] = json_number(std::exp(loss));
        j["elapsed"] = since(t0);
        log_metrics(j);
    };

    const double prev_seconds = st.seconds;
    double run_train_seconds = 0;
    int64_t run_tokens = 0;
    auto checkpoint = [&](int step) {
        if (!writer) return;
        st.seconds = prev_seconds + run_train_seconds;
        optimizer->sync_to_host();  // LoRA values (params) and moments current on the host
        add_files(save_train_checkpoint(ckdir, params, optimizer->host_state(), st));
        outputs->checkpoint_saved(step);
        const std::string adapter_dir = (fs::path(out) / "adapter").string();
        add_files(write_peft_adapter(adapter_dir, *model, opt.load));
        outputs->adapter_written(adapter_dir);
        last_ckpt_step = step;
        TrainEvent e;
        e.kind = TrainEventKind::Checkpoint;
        e.step = step;
        e.fraction = double(step) / opt.steps;
        e.text = ckdir;
        emit(e);
    };

    if (eval_ex.empty()) message("no evaluation examples (data too short for a held-out split?): evaluation skipped");
    if (!opt.resume) evaluate(0);

    Sampler sampler(int64_t(data.train.size()), opt.seed);
    std::vector<std::vector<int>> tok_mb(size_t(opt.accum)), tgt_mb(size_t(opt.accum));
    std::vector<int64_t> n_mb(size_t(opt.accum));
    std::vector<const Example*> rows;
    const auto loop_start = Clock::now();
    const int start_step = st.step;

    for (int step = st.step; step < opt.steps; ++step) {
        const auto ts = Clock::now();
        const double lr = sched.at(step);
        int64_t cursor = st.cursor, N = 0;
        for (int i = 0; i < opt.accum; ++i) {
            rows.clear();
            for (int b = 0; b < B; ++b) rows.push_back(&data.train[size_t(sampler.at(cursor++))]);
            n_mb[size_t(i)] = fill_rows(rows, T, tok_mb[size_t(i)], tgt_mb[size_t(i)]);
            N += n_mb[size_t(i)];
        }
        double loss_sum = 0;
        if (opt.accum > 1) optimizer->begin_accumulation();
        for (int i = mb_begin; i < mb_end; ++i) {  // all of them in a single process
            cancel.throw_if_cancelled();
            model->zero_grad();
            if (n_mb[size_t(i)] == 0) continue;
            const double loss = model->forward(tok_mb[size_t(i)].data(), tgt_mb[size_t(i)].data(), B, T);
            loss_sum += loss * double(n_mb[size_t(i)]);
            model->backward();
            if (opt.accum > 1) optimizer->accumulate(float(double(n_mb[size_t(i)]) / double(N)));  // weight n_i / N
        }
        if (opt.accum > 1) optimizer->end_accumulation();
        double sync_seconds = 0;
        if (dp) {  // the global batch's gradient and loss: every rank's share, summed in a fixed order
            const auto tsync = Clock::now();  // includes waiting for the slowest rank
            optimizer->sum_gradients([&](float* g, size_t n) { dp->sum(g, n); });
            dp->sum(&loss_sum, 1);
            sync_seconds = since(tsync);
        }
        const double train_loss = N > 0 ? loss_sum / double(N) : std::numeric_limits<double>::quiet_NaN();
        const double gnorm = optimizer->clip_grad_norm(opt.clip);
        if (!std::isfinite(gnorm) || (N > 0 && !std::isfinite(train_loss)))
            throw Error("fine-tune diverged at step " + std::to_string(step + 1) + " (loss " + std::to_string(train_loss) +
                        ", gradient norm " + std::to_string(gnorm) + "); try a lower learning rate");
        optimizer->step(lr);

        st.step = step + 1;
        st.cursor = cursor;
        st.last_train_loss = train_loss;
        const int64_t step_tokens = int64_t(B) * T * opt.accum;
        st.tokens += step_tokens;
        run_tokens += step_tokens;
        run_train_seconds += since(ts);

        TrainEvent e;
        e.kind = TrainEventKind::Step;
        e.step = st.step;
        e.train_loss = train_loss;
        e.eval_loss = last_eval_step_loss;
        e.eval_ppl = std::exp(last_eval_step_loss);
        e.lr = lr;
        e.grad_norm = gnorm;
        e.sync_seconds = sync_seconds;
        e.tokens_per_s = run_train_seconds > 0 ? double(run_tokens) / run_train_seconds : 0;
        e.fraction = double(st.step) / opt.steps;
        const int done_here = st.step - start_step;
        e.eta = since(loop_start) / done_here * (opt.steps - st.step);
        emit(e);
        if (dm.cuda && done_here == 1) message("device memory after the first step: " + dm.cuda->memory_summary());
        nlohmann::ordered_json j;
        j["kind"] = "train";
        j["step"] = st.step;
        j["train_loss"] = json_number(train_loss);
        j["lr"] = lr;
        j["grad_norm"] = json_number(gnorm);
        j["tokens_per_s"] = e.tokens_per_s;
        j["scored_tokens"] = N;
        if (dp) j["sync_s"] = sync_seconds;
        j["elapsed"] = since(t0);
        log_metrics(j);

        if (st.step < opt.steps) {
            bool saved = false;
            if (opt.eval_every > 0 && st.step % opt.eval_every == 0) {
                evaluate(st.step);
                if (opt.checkpoint_every == 0) { checkpoint(st.step); saved = true; }
            }
            if (!saved && opt.checkpoint_every > 0 && st.step % opt.checkpoint_every == 0) checkpoint(st.step);
        }
    }

    // End: evaluate, checkpoint + adapter, sample.
    if (last_eval_step != st.step) evaluate(st.step);
    if (last_ckpt_step != st.step || !fs::exists(fs::path(out) / "adapter" / "adapter_model.safetensors")) checkpoint(st.step);
    if (writer) add_files({metrics->path()});

    if (opt.sample_tokens > 0 && writer) {
        res.sample = generate_text(*model, *tok, opt.sample_prompt, opt.sample_tokens, &cancel);
        const std::string sp = (fs::path(out) / "sample.txt").string();
        write_file_atomic(sp, res.sample + "\n");
        outputs->sample_written(sp);
        add_files({sp});
        TrainEvent e;
        e.kind = TrainEventKind::Sample;
        e.step = st.step;
        e.text = res.sample;
        e.fraction = 1;
        emit(e);
    }

    if (writer) outputs->finished();   // every file is in place: a failure from here on removes nothing
    res.steps_done = st.step;
    res.first_eval_loss = st.first_eval_loss;
    res.original_eval_loss = original_loss;
    res.final_eval_loss = st.last_eval_loss;
    res.final_train_loss = st.last_train_loss;
    res.seconds = since(t0);
    res.tokens_per_s = run_train_seconds > 0 ? double(run_tokens) / run_train_seconds : 0;
    res.files = files;
    res.device = dm.where;
    res.device_peak_bytes = dm.device_peak();
    res.ranks = n_ranks;
    if (dm.cuda) message("device memory at the end: " + dm.cuda->memory_summary());
    {
        TrainEvent e;
        e.kind = TrainEventKind::Done;
        e.step = st.step;
        e.train_loss = res.final_train_loss;
        e.eval_loss = res.final_eval_loss;
        e.eval_ppl = std::exp(res.final_eval_loss);
        e.tokens_per_s = res.tokens_per_s;
        e.fraction = 1;
        e.eta = 0;
        e.text = out;
        emit(e);
    }
    return res;
}

}  // namespace loftq
