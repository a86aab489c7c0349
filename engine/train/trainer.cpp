// trainer.cpp: run_finetune and run_eval (see trainer.h). The loop, as in llm.c's train_gpt2:
// for each step, `accum` micro-batches of B examples each are forwarded and backpropagated; the
// step's loss is the mean over all its scored tokens, so micro-batch i's gradient enters with
// weight n_i / N (n_i its scored tokens, N the step's); then global-norm clipping and one AdamW
// update of model->trainable().
// Data order: epoch e visits the train examples in a permutation drawn from (seed, e) alone, and
// a cursor counts examples consumed; (cursor, optimizer state, LoRA values) is the whole state,
// which is what makes a resumed run bit-identical to an uninterrupted one.
// Events come from the calling thread only, one at a time (serialized by construction); a
// receiver should copy what it needs and return.
// metrics.jsonl: each line is appended with one write() on an O_APPEND descriptor and
// fdatasync'ed (no rewrite per step, so long runs stay cheap); a resumed run first rewrites the
// file atomically without the lines after its checkpoint's step, and a reader drops a trailing
// line without '\n' (a crash mid-write).
// Devices: the model is loaded on the host (LlamaCpu; for CUDA with the quantized sites kept
// packed) and, for CUDA, uploaded once (LlamaCuda) and the host copy dropped; the update runs
// behind train/optimizer.h. Everything else (data order, schedule, events, files) is the same
// code on both; on the device the LoRA values and moments come to the host only at checkpoints.
#include "train/trainer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/clock.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "device/compute_device.h"
#include "core/parallel.h"
#include "model/llama_cpu.h"
#include "train/adamw.h"
#include "train/adapter_writer.h"
#include "train/dataset.h"
#include "train/generate.h"
#include "train/optimizer.h"
#include "train/tokenizer.h"
#include "train/train_checkpoint.h"
#include "device/cuda_plugin.h"
#include "model/device_llama.h"
#include "model/llama_cpu.h"

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

// Copies examples [first, first + B) (by index list) into B x T token/target rows; returns the
// scored target count.
int64_t fill_rows(const std::vector<const Example*>& ex, int T, std::vector<int>& tok, std::vector<int>& tgt) {
    tok.resize(ex.size() * size_t(T));
    tgt.resize(ex.size() * size_t(T));
    int64_t scored = 0;
    for (size_t b = 0; b < ex.size(); ++b) {
        std::copy(ex[b]->tokens.begin(), ex[b]->tokens.end(), tok.begin() + ptrdiff_t(b * size_t(T)));
        std::copy(ex[b]->targets.begin(), ex[b]->targets.end(), tgt.begin() + ptrdiff_t(b * size_t(T)));
        for (int t : ex[b]->targets) scored += t >= 0;
    }
    return scored;
}

// Every example must be T long with ids inside the model's vocabulary.
void check_examples(const std::vector<Example>& ex, int T, int vocab, const std::string& file) {
    for (size_t i = 0; i < ex.size(); ++i) {
        const Example& e = ex[i];
        if (int(e.tokens.size()) != T || int(e.targets.size()) != T)
            throw Error(file, "", "example " + std::to_string(i) + " has " + std::to_string(e.tokens.size()) +
                                      " tokens, expected " + std::to_string(T));
        for (int t = 0; t < T; ++t)
            if (e.tokens[size_t(t)] < 0 || e.tokens[size_t(t)] >= vocab || e.targets[size_t(t)] >= vocab)
                throw Error(file, "", "example " + std::to_string(i) + " holds token id " +
                                          std::to_string(std::max(e.tokens[size_t(t)], e.targets[size_t(t)])) +
                                          " outside the model's vocabulary of " + std::to_string(vocab) +
                                          " (tokenizer and model do not match?)");
    }
}

// Mean cross-entropy over the scored tokens of the first `max_batches` batches (0 = all) of B
// examples, in order. `scored` receives the token count.
double mean_loss(LlamaModel& model, const std::vector<Example>& ex, int B, int T, int max_batches,
                 const CancelToken& cancel, int64_t* scored) {
    double sum = 0;
    int64_t n = 0;
    std::vector<int> tok, tgt;
    std::vector<const Example*> rows;
    size_t limit = ex.size();
    if (max_batches > 0) limit = std::min(limit, size_t(max_batches) * size_t(B));
    for (size_t i = 0; i < limit; i += size_t(B)) {
        cancel.throw_if_cancelled();
        rows.clear();
        for (size_t j = i; j < std::min(limit, i + size_t(B)); ++j) rows.push_back(&ex[j]);
        if (fill_rows(rows, T, tok, tgt) == 0) continue;
        const double loss = model.forward(tok.data(), tgt.data(), int(rows.size()), T);
        const int64_t k = model.scored_tokens();
        sum += loss * double(k);
        n += k;
    }
    if (scored) *scored = n;
    return n > 0 ? sum / double(n) : std::numeric_limits<double>::quiet_NaN();
}

// OUT/metrics.jsonl (see the file comment).
class MetricsLog {
public:
    explicit MetricsLog(std::string path) : path_(std::move(path)) {}
    // Fresh run: the first append truncates. Resume: keep the lines with step <= keep_step.
    void start(bool resume, int keep_step) {
        truncate_ = !resume;
        if (!resume) return;
        std::error_code ec;
        if (!fs::is_regular_file(path_, ec)) return;
        std::istringstream in(read_text_file(path_));
        std::string line, kept;
        while (std::getline(in, line)) {
            if (in.eof()) break;  // no '\n' after it: an interrupted write
            try {
                auto j = nlohmann::json::parse(line);
                if (j.value("step", 0) <= keep_step) kept += line + "\n";
            } catch (const nlohmann::json::exception&) {
            }
        }
        write_file_atomic(path_, kept);
    }
    void append(const nlohmann::ordered_json& j) {
        const std::string line = j.dump() + "\n";
        int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (truncate_ ? O_TRUNC : O_APPEND);
        int fd = ::open(path_.c_str(), flags, 0644);
        if (fd < 0) throw Error(path_, "", std::string("cannot open for append: ") + std::strerror(errno));
        const char* p = line.data();
        size_t left = line.size();
        while (left > 0) {
            ssize_t w = ::write(fd, p, left);
            if (w < 0) {
                if (errno == EINTR) continue;
                std::string e = std::strerror(errno);
                ::close(fd);
                throw Error(path_, "", "write failed: " + e);
            }
            p += w;
            left -= size_t(w);
        }
        ::fdatasync(fd);
        ::close(fd);
        if (truncate_) fsync_dir(fs::path(path_).parent_path().string());
        truncate_ = false;
    }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    bool truncate_ = true;
};

nlohmann::ordered_json num(double x) { return std::isfinite(x) ? nlohmann::ordered_json(x) : nlohmann::ordered_json(); }

std::string abs_path(const std::string& p) {
    std::error_code ec;
    fs::path a = fs::absolute(p, ec);
    return ec ? p : a.lexically_normal().string();
}

int resolve_threads(int n) { return n > 0 ? n : hardware_threads(); }

// Where a run goes: the device resolved (throws kCudaNotUsable + why when CUDA is asked for and
// unusable; GemmMode::Bf16 with the CPU asked for explicitly is refused) and resolve_device's
// line for the log.
struct DeviceChoice {
    ComputeDevice device = ComputeDevice::Cpu;
    std::string note;
};
DeviceChoice choose_device(ComputeDevice device, GemmMode gemm) {
    // bf16 changes the numerics (bf16 base weights and GEMM inputs), which only the CUDA path has:
    // asked together with an explicit CPU device, say so instead of silently computing in fp32
    // (tf32 / fp32 are speed settings that the CPU, always exact fp32, may ignore; auto resolving
    // to the CPU ignores bf16 too, with the device note saying where the run goes).
    if (gemm == GemmMode::Bf16 && device == ComputeDevice::Cpu)
        throw Error("GEMM mode bf16 exists on the CUDA device only (the CPU computes in fp32): choose the CUDA device "
                    "or auto, or GEMM mode tf32");
    DeviceChoice c;
    c.device = resolve_device(device, &c.note);
    return c;
}

// The model on its device. CUDA: the quantized base is kept packed (LoadOptions::keep_packed),
// `prepare` runs on the host model (e.g. to apply an adapter), then the model is uploaded and the
// host copy dropped. B, T, accum: the shape the run uses (for RecomputeMode::Auto).
struct DeviceModel {
    std::unique_ptr<LlamaModel> model;
    std::string where = "cpu";   // "cpu" or "cuda, <GPU name>"
    DeviceLlama* cuda = nullptr;  // the model when it is on the CUDA device
    uint64_t device_peak() const { return cuda ? cuda->device_peak_used() : 0; }
};
DeviceModel load_on_device(LoadOptions lo, ComputeDevice dev, GemmMode gemm, RecomputeMode recompute,
                           int B, int T, int accum, const std::function<void(LlamaModel&)>& prepare,
                           const std::function<void(const std::string&)>& say) {
    DeviceModel r;
    auto note = [&](const std::string& text) {
        if (say) say(text);
    };
    if (dev == ComputeDevice::Cuda) lo.keep_packed = true;
    std::unique_ptr<LlamaModel> m = load_llama(lo);
    if (prepare) prepare(*m);
    if (dev == ComputeDevice::Cuda) {
        auto* cpu = dynamic_cast<LlamaCpu*>(m.get());
        if (!cpu) throw Error("fine-tune: the loader returned no CPU model to upload");
        std::string why;
        const CudaPluginApi* api = cuda_plugin(&why);
        if (!api) throw Error(kCudaNotUsable + why);
        if (lo.init != InitKind::Lora16 && !cpu->packed_sites())
            note("the base goes to the device as fp32 (32 bits per weight): the stored weights are not on their "
                "quantizer's grid (a bf16/fp16 export or a 16-bit checkpoint); a packed export or a LoftQ/QLoRA start "
                "keeps k bits per weight");
        DeviceTrainSettings ds;
        ds.gemm = gemm;
        ds.recompute = recompute;
        ds.plan_batch = B;
        ds.plan_seq = T;
        ds.accum = accum;
        std::string base = "fp32";
        if (cpu->packed_sites()) {
            const PackedSite& p = cpu->packed_site(0, LoraSite::Q);
            base = std::string(quant_format(p.kind).name) + " packed (block " + std::to_string(p.block) + ")";
        }
        std::unique_ptr<DeviceLlama> dm(api->new_llama(*cpu, ds));
        m.reset();  // the host copy of the base is no longer needed
        note("on the device: " + base + " base, " + kGemmModeNames.name(gemm) + " GEMMs, recompute " +
             (dm->recompute() ? "on" : "off") + "; device memory held: " + dm->memory_summary());
        r.where = "cuda, " + cuda_status().device;
        r.cuda = dm.get();
        r.model = std::move(dm);
        return r;
    }
    r.model = std::move(m);
    return r;
}

std::unique_ptr<Optimizer> make_optimizer(DeviceModel& dm, const std::vector<TrainableTensor>& params,
                                          const AdamWParams& ap, bool accumulate) {
    if (dm.cuda) {
        const CudaPluginApi* api = cuda_plugin();  // loaded: it made the model
        return std::unique_ptr<Optimizer>(api->new_optimizer(*dm.cuda, ap, accumulate));
    }
    return make_cpu_optimizer(params, ap, accumulate);
}
}  // namespace

TrainResult run_finetune(const TrainOptions& opt, const TrainCallback& cb, const CancelToken& cancel) {
    const auto t0 = Clock::now();
    const DeviceChoice dev = choose_device(opt.device, opt.gemm);
    if (opt.out_dir.empty()) throw Error("fine-tune: no output folder given");
    if (opt.data.empty()) throw Error("fine-tune: no training data given");
    if (opt.steps < 1 || opt.batch < 1 || opt.seq < 2 || opt.accum < 1)
        throw Error("fine-tune: steps, batch and accum must be >= 1 and seq >= 2");
    if (!(opt.lr > 0) || opt.min_lr_ratio < 0 || opt.min_lr_ratio > 1)
        throw Error("fine-tune: lr must be > 0 and min_lr_ratio in [0, 1]");
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
    if (opt.resume && !has_train_checkpoint(ckdir))
        throw Error(ckfile, "", "no checkpoint to resume from (start a new run instead of resuming)");
    if (!opt.resume && has_train_checkpoint(ckdir))
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
    if (opt.resume) {
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
    // The original model on the same held-out examples (loaded, measured and freed first, so
    // that only one model is in memory at a time).
    double original_loss = NAN;
    if (opt.eval_original && !opt.resume && !eval_ex.empty() && opt.load.init != InitKind::Export) {
        message("measuring the original model on the held-out examples...");
        LoadOptions lo0 = opt.load;
        lo0.init = InitKind::Lora16;
        lo0.plan.reset();
        lo0.rank = 0;   // W as stored, no adapter
        lo0.keep_packed = false;
        if (lo0.threads == 0) lo0.threads = opt.threads;
        DeviceModel m0 = load_on_device(lo0, dev.device, opt.gemm, opt.recompute, opt.batch, opt.seq, 1, {}, message);
        m0.model->set_threads(resolve_threads(opt.threads));
        check_examples(eval_ex, opt.seq, m0.model->config().vocab, eval_file);
        original_loss = mean_loss(*m0.model, eval_ex, opt.batch, opt.seq, opt.eval_batches, cancel, nullptr);
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
    std::unique_ptr<Optimizer> optimizer = make_optimizer(dm, params, ap, opt.accum > 1);
    if (opt.resume) {
        st = load_train_checkpoint(ckdir, params, optimizer->host_state());  // host values and moments
        optimizer->sync_to_device();
        if (st.n_train != int64_t(data.train.size()))
            message("resume: the data now has " + std::to_string(data.train.size()) + " train examples, the checkpoint saw " +
                    std::to_string(st.n_train) + ": the batch order differs from an uninterrupted run");
        message("resumed from " + ckfile + " at step " + std::to_string(st.step));
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

    MetricsLog metrics((fs::path(out) / "metrics.jsonl").string());
    {
        std::error_code ec;
        fs::create_directories(out, ec);
        if (ec) throw Error(out, "", "cannot create the output folder: " + ec.message());
    }
    metrics.start(opt.resume, st.step);
    if (std::isfinite(original_loss)) {
        nlohmann::ordered_json j;
        j["kind"] = "eval_original";
        j["step"] = 0;
        j["eval_loss"] = num(original_loss);
        metrics.append(j);
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
        if (eval_ex.empty()) return;
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
        j["eval_loss"] = num(loss);
        j["eval_ppl"] = num(std::exp(loss));
        j["elapsed"] = since(t0);
        metrics.append(j);
    };

    const double prev_seconds = st.seconds;
    double run_train_seconds = 0;
    int64_t run_tokens = 0;
    auto checkpoint = [&](int step) {
        st.seconds = prev_seconds + run_train_seconds;
        optimizer->sync_to_host();  // LoRA values (params) and moments current on the host
        add_files(save_train_checkpoint(ckdir, params, optimizer->host_state(), st));
        add_files(write_peft_adapter((fs::path(out) / "adapter").string(), *model, opt.load));
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
        for (int i = 0; i < opt.accum; ++i) {
            cancel.throw_if_cancelled();
            model->zero_grad();
            if (n_mb[size_t(i)] == 0) continue;
            const double loss = model->forward(tok_mb[size_t(i)].data(), tgt_mb[size_t(i)].data(), B, T);
            loss_sum += loss * double(n_mb[size_t(i)]);
            model->backward();
            if (opt.accum > 1) optimizer->accumulate(float(double(n_mb[size_t(i)]) / double(N)));  // weight n_i / N
        }
        if (opt.accum > 1) optimizer->end_accumulation();
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
        e.tokens_per_s = run_train_seconds > 0 ? double(run_tokens) / run_train_seconds : 0;
        e.fraction = double(st.step) / opt.steps;
        const int done_here = st.step - start_step;
        e.eta = since(loop_start) / done_here * (opt.steps - st.step);
        emit(e);
        if (dm.cuda && done_here == 1) message("device memory after the first step: " + dm.cuda->memory_summary());
        nlohmann::ordered_json j;
        j["kind"] = "train";
        j["step"] = st.step;
        j["train_loss"] = num(train_loss);
        j["lr"] = lr;
        j["grad_norm"] = num(gnorm);
        j["tokens_per_s"] = e.tokens_per_s;
        j["scored_tokens"] = N;
        j["elapsed"] = since(t0);
        metrics.append(j);

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
    add_files({metrics.path()});

    if (opt.sample_tokens > 0) {
        res.sample = generate_text(*model, *tok, opt.sample_prompt, opt.sample_tokens, &cancel);
        const std::string sp = (fs::path(out) / "sample.txt").string();
        write_file_atomic(sp, res.sample + "\n");
        add_files({sp});
        TrainEvent e;
        e.kind = TrainEventKind::Sample;
        e.step = st.step;
        e.text = res.sample;
        e.fraction = 1;
        emit(e);
    }

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

EvalResult run_eval(const EvalOptions& opt, const CancelToken& cancel) {
    const auto t0 = Clock::now();
    const DeviceChoice dev = choose_device(opt.device, opt.gemm);
    if (opt.data.empty()) throw Error("eval: no data given");
    if (opt.batch < 1 || opt.seq < 2) throw Error("eval: batch must be >= 1 and seq >= 2");
    LoadOptions lo = opt.load;
    if (lo.threads == 0) lo.threads = opt.threads;
    if (!opt.adapter.empty()) {
        AdapterInfo info = read_adapter_info(opt.adapter);
        lo.rank = info.r;  // the LoRA shapes must match the adapter's
        lo.lora_alpha = info.lora_alpha;
    }
    const std::string tok_path = opt.tokenizer.empty() ? lo.model : opt.tokenizer;
    std::unique_ptr<Tokenizer> tok = load_tokenizer(tok_path);
    DatasetOptions dopt;
    dopt.seq = opt.seq;
    dopt.max_examples = opt.max_examples;
    std::vector<Example> ex = load_examples(opt.data, *tok, dopt);
    if (opt.max_examples > 0 && int64_t(ex.size()) > opt.max_examples) ex.resize(size_t(opt.max_examples));
    if (ex.empty()) throw Error(opt.data, "", "no examples to evaluate (file too short for sequences of " + std::to_string(opt.seq) + " tokens?)");
    cancel.throw_if_cancelled();

    // The adapter goes into the host model, before the upload.
    auto prepare = [&](LlamaModel& m) {
        check_examples(ex, opt.seq, m.config().vocab, opt.data);
        if (!opt.adapter.empty()) apply_peft_adapter(opt.adapter, m);
    };
    DeviceModel dm = load_on_device(lo, dev.device, opt.gemm, RecomputeMode::Auto, opt.batch, opt.seq, 1, prepare, {});
    LlamaModel* model = dm.model.get();
    model->set_threads(resolve_threads(opt.threads));
    cancel.throw_if_cancelled();

    EvalResult r;
    r.loss = mean_loss(*model, ex, opt.batch, opt.seq, 0, cancel, &r.tokens);
    r.ppl = std::exp(r.loss);
    r.examples = int64_t(ex.size());
    r.seconds = since(t0);
    r.device = dm.where;
    return r;
}

TrainBenchResult run_train_bench(const TrainBenchOptions& opt, const TrainCallback& cb, const CancelToken& cancel) {
    const auto t0 = Clock::now();
    const DeviceChoice dev = choose_device(opt.device, opt.gemm);
    if (opt.batch < 1 || opt.seq < 2 || opt.steps < 1 || opt.warmup < 0)
        throw Error("bench: batch and steps must be >= 1, seq >= 2, warmup >= 0");
    auto message = [&](const std::string& text) {
        if (!cb) return;
        TrainEvent e;
        e.kind = TrainEventKind::Message;
        e.text = text;
        e.steps = opt.steps;
        e.elapsed = since(t0);
        cb(e);
    };
    const int B = opt.batch, T = opt.seq;
    const size_t BT = size_t(B) * size_t(T);

    // Token ids: a file of int32 (cycled) or uniform draws; checked against the vocabulary below.
    std::vector<int32_t> ids;
    if (!opt.tokens_file.empty()) {
        const std::string bytes = read_text_file(opt.tokens_file);
        if (bytes.size() < BT * 4 || bytes.size() % 4 != 0)
            throw Error(opt.tokens_file, "", "holds " + std::to_string(bytes.size()) + " bytes; expected int32 token ids, at least batch x seq = " +
                                                 std::to_string(BT) + " of them");
        ids.resize(bytes.size() / 4);
        std::memcpy(ids.data(), bytes.data(), bytes.size());
    }

    message(dev.note);
    message(opt.load.init == InitKind::Loftq ? "loading the model and running LoftQ in memory..." : "loading the model...");
    LoadOptions lo = opt.load;
    if (lo.threads == 0) lo.threads = opt.threads;
    DeviceModel dm = load_on_device(lo, dev.device, opt.gemm, opt.recompute, B, T, 1, {}, message);
    LlamaModel& model = *dm.model;
    model.set_threads(resolve_threads(opt.threads));
    const int V = model.config().vocab;
    TrainBenchResult r;
    r.load_seconds = since(t0);
    r.device = dm.where;
    for (int32_t id : ids)
        if (id < 0 || id >= V)
            throw Error(opt.tokens_file, "", "token id " + std::to_string(id) + " is outside the model's vocabulary of " + std::to_string(V));
    cancel.throw_if_cancelled();

    std::vector<TrainableTensor> params = model.trainable();
    for (const auto& t : params) r.trainable += t.numel();
    std::unique_ptr<Optimizer> optimizer = make_optimizer(dm, params, AdamWParams{}, false);
    Rng rng(opt.seed ^ hash_name("loftq-bench-tokens"));
    size_t cursor = 0;
    std::vector<int> tok(BT), tgt(BT);
    auto next_batch = [&] {
        for (size_t i = 0; i < BT; ++i) {
            if (ids.empty()) {
                tok[i] = int(rng.next() % uint64_t(V));
            } else {
                tok[i] = ids[cursor];
                cursor = (cursor + 1) % ids.size();
            }
        }
        for (size_t i = 0; i < BT; ++i) tgt[i] = (i + 1) % size_t(T) == 0 ? -1 : tok[i + 1];
    };
    auto sync = [&] {
        if (dm.cuda) dm.cuda->synchronize();
    };
    Clock::time_point start = Clock::now();
    for (int s = 0; s < opt.warmup + opt.steps; ++s) {
        cancel.throw_if_cancelled();
        if (s == opt.warmup) {
            sync();
            start = Clock::now();
        }
        next_batch();
        model.zero_grad();
        const double loss = model.forward(tok.data(), tgt.data(), B, T);
        model.backward();
        optimizer->clip_grad_norm(1.0);
        optimizer->step(opt.lr);
        if (s == 0) r.first_loss = loss;
        r.last_loss = loss;
        if (!std::isfinite(loss)) throw Error("bench: the loss is not finite at step " + std::to_string(s + 1));
        TrainEvent e;
        e.kind = TrainEventKind::Step;
        e.step = s + 1;
        e.steps = opt.warmup + opt.steps;
        e.train_loss = loss;
        e.lr = opt.lr;
        e.fraction = double(s + 1) / double(opt.warmup + opt.steps);
        e.elapsed = since(t0);
        if (cb) cb(e);
    }
    sync();
    r.seconds = since(start);
    r.ms_per_step = 1e3 * r.seconds / opt.steps;
    r.tokens_per_s = double(BT) * opt.steps / r.seconds;
    r.gemm = dev.device == ComputeDevice::Cuda ? kGemmModeNames.name(opt.gemm) : "";
    r.base = "fp32";
    if (dm.cuda) {
        r.recompute = dm.cuda->recompute();
        r.peak_bytes = dm.cuda->memory_peak();
        r.device_peak_used = dm.cuda->device_peak_used();
        r.memory = dm.cuda->memory_summary();
        if (dm.cuda->packed_base()) r.base = "packed";
    }
    if (auto* cpu = dynamic_cast<LlamaCpu*>(&model)) {
        r.peak_bytes = cpu->base_bytes() + cpu->lora_bytes() + cpu->activation_bytes();
        if (cpu->packed_sites()) r.base = "packed";
        r.memory = "host: base " + std::to_string(cpu->base_bytes()) + " bytes, LoRA " + std::to_string(cpu->lora_bytes()) +
                   ", activations " + std::to_string(cpu->activation_bytes());
    }
    return r;
}

}  // namespace loftq
