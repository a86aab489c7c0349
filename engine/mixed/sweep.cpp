// sweep.cpp: see sweep.h.
#include "mixed/sweep.h"

#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>

#include "core/big_alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "model/out_of_memory.h"
#include "core/fsutil.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "core/task_pool.h"
#include "io/checkpoint.h"
#include "io/json_read.h"
#include "linalg/blas.h"
#include "linalg/svd.h"
#include "loftq/budget.h"
#include "loftq/decompose.h"
#include "loftq/job.h"

namespace fs = std::filesystem;

namespace loftq {

std::string SweepCandidate::label() const {
    if (keep) return "keep";
    return std::string(quant_format(s.quant).name) + " r" + std::to_string(s.rank);
}

std::string default_sweep_cache_dir() {
    const char* x = std::getenv("XDG_CACHE_HOME");
    const char* h = std::getenv("HOME");
    fs::path base = x && *x ? fs::path(x) : fs::path(h && *h ? h : "/tmp") / ".cache";
    return (base / "loftq" / "sweeps").string();
}

namespace {

double sum_sq(const float* a, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += double(a[i]) * double(a[i]);
    return s;
}

// Candidate settings (keep first), from the plan's defaults for block, T and SVD.
std::vector<SweepCandidate> candidate_list(const SweepOptions& opt) {
    std::vector<SweepCandidate> c;
    if (opt.keep) c.push_back({.keep = true});
    for (QuantKind q : opt.quants)
        for (int r : opt.ranks) {
            SweepCandidate k;
            k.s = opt.plan.defaults;
            k.s.quant = q;
            k.s.rank = r;
            c.push_back(k);
        }
    return c;
}

uint64_t candidate_bytes(const SweepCandidate& c, const WeightPlan& w, size_t source_elem_bytes) {
    if (c.keep) return uint64_t(w.rows * w.cols) * source_elem_bytes;
    const uint64_t r = uint64_t(std::min<int64_t>(c.s.rank, std::min(w.rows, w.cols)));
    return quantized_weight_bytes(w.rows, w.cols, c.s) + r * uint64_t(w.rows + w.cols) * 2;
}

// The cache key: XXH3 of a canonical JSON of everything the numbers depend on.
std::string sweep_key(const SweepOptions& opt, const Checkpoint& ck, const ResolvedPlan& rp, SweepMode mode) {
    nlohmann::ordered_json k;
    k["v"] = 1;
    nlohmann::ordered_json files = nlohmann::ordered_json::array();
    for (const auto& f : ck.files()) files.push_back(file_checksum(f));
    k["model"] = files;
    nlohmann::ordered_json targets = nlohmann::ordered_json::array();
    for (const auto& w : rp.weights) targets.push_back(w.name);
    k["targets"] = targets;
    nlohmann::ordered_json q = nlohmann::ordered_json::array();
    for (QuantKind x : opt.quants) q.push_back(quant_format(x).name);
    k["quants"] = q;
    k["ranks"] = opt.ranks;
    k["keep"] = opt.keep;
    k["mode"] = kSweepModeNames.name(mode);
    k["block"] = opt.plan.defaults.block;
    k["iters"] = opt.plan.defaults.iters;
    k["svd"] = kSvdMethodNames.name(opt.plan.defaults.svd);
    k["seed"] = opt.plan.seed;
    k["oversample"] = opt.plan.oversample;
    k["power_iters"] = opt.plan.power_iters;
    k["calib"] = opt.calib ? opt.calib->key : "";
    const std::string s = k.dump();
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(XXH3_64bits(s.data(), s.size())));
    return buf;
}

// Fills every candidate of one weight (W: rows x cols).
void sweep_weight(const SweepOptions& opt, SweepMode mode, const WeightPlan& wp, const float* W, const InputStats* st,
                  int threads, WeightSweep& out, const CancelToken& cancel) {
    const int64_t m = wp.rows, n = wp.cols;
    const size_t N = size_t(m) * size_t(n);
    out.w_norm = std::sqrt(sum_sq(W, N));
    if (st) out.out_norm = std::sqrt(output_error_sq(*st, W, m, threads));
    const double inv_w = out.w_norm > 0 ? 1.0 / out.w_norm : 0.0;
    const double inv_o = out.out_norm > 0 ? 1.0 / out.out_norm : 0.0;
    for (auto& c : out.candidates)
        if (c.keep) c.error = 0, c.out_error = st ? 0.0 : -1.0;
    SvdOptions so;
    so.oversample = opt.plan.oversample;
    so.power_iters = opt.plan.power_iters;
    so.seed = weight_seed(opt.plan.seed, wp.name, 0);
    so.threads = threads;
    if (mode == SweepMode::Full) {
        DecomposeScratch scratch;  // the weight's candidates share their large buffers
        for (auto& c : out.candidates) {
            if (c.keep) continue;
            cancel.throw_if_cancelled();
            so.method = c.s.svd;
            Decomposition d = loftq_decompose(W, m, n, c.s, so, threads, {}, &cancel, st, &scratch);
            c.error = d.final_error;
            c.out_error = d.out_final;
            scratch.recycle(std::move(d));
        }
        return;
    }
    // Fast: per quantizer, q(W) once and one randomized SVD at the largest rank. Buffers written in
    // full before they are read: no zero fill (core/big_alloc.h).
    BigVector<float> Q(N), R(N), E;
    if (st) E.resize(N);
    for (QuantKind qk : opt.quants) {
        cancel.throw_if_cancelled();
        const int block = opt.plan.defaults.block;
        quantize_dequantize(quant_format(qk), W, N, block, Q.data(), nullptr, nullptr, threads);
        for (size_t i = 0; i < N; ++i) R[i] = W[i] - Q[i];
        const double r2 = sum_sq(R.data(), N);
        int rmax = 0;
        for (auto& c : out.candidates)
            if (!c.keep && c.s.quant == qk) rmax = std::max<int>(rmax, int(std::min<int64_t>(c.s.rank, std::min(m, n))));
        LowRank lr;
        if (rmax > 0) {
            SvdOptions o = so;
            o.method = SvdMethod::Randomized;
            uint64_t x = so.seed + 1;  // the seed loftq_decompose gives step 1
            o.seed = splitmix64(x);
            lr = low_rank(R.data(), m, n, rmax, o);
        }
        const int64_t kr = int64_t(lr.S.size());
        for (auto& c : out.candidates) {
            if (c.keep || c.s.quant != qk) continue;
            const int r = int(std::min<int64_t>(std::min<int64_t>(c.s.rank, std::min(m, n)), kr));
            if (c.s.iters <= 0 || r == 0) {  // QLoRA's error
                c.error = std::sqrt(r2) * inv_w;
                if (st) c.out_error = std::sqrt(output_error_sq(*st, R.data(), m, threads)) * inv_o;
                continue;
            }
            double e2 = r2;
            for (int i = 0; i < r; ++i) e2 -= double(lr.S[size_t(i)]) * double(lr.S[size_t(i)]);
            c.error = std::sqrt(std::max(0.0, e2)) * inv_w;
            if (st) {  // E = R - B[:, :r] A[:r, :]
                E = R;
                gemm(false, false, m, n, r, -1.f, lr.B.data(), lr.B.cols, lr.A.data(), n, 1.f, E.data(), n);
                c.out_error = std::sqrt(output_error_sq(*st, E.data(), m, threads)) * inv_o;
            }
        }
    }
}
}  // namespace

nlohmann::ordered_json sweep_to_json(const SweepResult& r) {
    using oj = nlohmann::ordered_json;
    oj j;
    j["format"] = "loftq-sweep";
    j["version"] = 1;
    j["key"] = r.key;
    j["mode"] = kSweepModeNames.name(r.mode);
    j["calibrated"] = r.calibrated;
    j["iters"] = r.iters;
    j["fixed_bytes"] = r.fixed_bytes;
    j["params"] = r.params;
    j["fp16_bytes"] = r.fp16_bytes;
    j["seconds"] = r.seconds;
    j["notes"] = r.notes;
    oj ws = oj::array();
    for (const auto& w : r.weights) {
        oj e;
        e["name"] = w.name;
        e["module"] = w.module;
        e["layer"] = w.layer;
        e["shape"] = {w.rows, w.cols};
        e["w_norm"] = w.w_norm;
        e["out_norm"] = w.out_norm;
        oj cs = oj::array();
        for (const auto& c : w.candidates) {
            oj x;
            x["quant"] = c.keep ? std::string("keep") : std::string(quant_format(c.s.quant).name);
            x["block"] = c.s.block;
            x["rank"] = c.s.rank;
            x["iters"] = c.s.iters;
            x["svd"] = kSvdMethodNames.name(c.s.svd);
            x["bytes"] = c.bytes;
            x["error"] = c.error;
            x["out_error"] = c.out_error;
            cs.push_back(x);
        }
        e["candidates"] = cs;
        ws.push_back(e);
    }
    j["weights"] = ws;
    return j;
}

SweepResult sweep_from_json(const nlohmann::json& j, const std::string& source) {
    try {
        if (j.at("format").get<std::string>() != "loftq-sweep" || j.at("version").get<int>() != 1)
            throw Error(source, "", "not a version-1 loftq sweep");
        SweepResult r;
        r.key = j.at("key").get<std::string>();
        r.mode = kSweepModeNames.find(j.at("mode").get<std::string>()).value_or(SweepMode::Fast);
        r.calibrated = j.at("calibrated").get<bool>();
        r.iters = j.at("iters").get<int>();
        r.fixed_bytes = j.at("fixed_bytes").get<uint64_t>();
        r.params = j.at("params").get<uint64_t>();
        r.fp16_bytes = j.at("fp16_bytes").get<uint64_t>();
        r.seconds = j.at("seconds").get<double>();
        r.notes = j.at("notes").get<std::vector<std::string>>();
        for (const auto& e : j.at("weights")) {
            WeightSweep w;
            w.name = e.at("name").get<std::string>();
            w.module = e.at("module").get<std::string>();
            w.layer = e.at("layer").get<int>();
            w.rows = e.at("shape").at(0).get<int64_t>();
            w.cols = e.at("shape").at(1).get<int64_t>();
            w.w_norm = e.at("w_norm").get<double>();
            w.out_norm = e.at("out_norm").get<double>();
            for (const auto& x : e.at("candidates")) {
                SweepCandidate c;
                const std::string q = x.at("quant").get<std::string>();
                c.keep = q == "keep";
                if (!c.keep) {
                    auto k = quant_kind_from_name(q);
                    if (!k) throw Error(source, w.name, "unknown quantizer '" + q + "'");
                    c.s.quant = *k;
                }
                c.s.block = x.at("block").get<int>();
                c.s.rank = x.at("rank").get<int>();
                c.s.iters = x.at("iters").get<int>();
                c.s.svd = kSvdMethodNames.find(x.at("svd").get<std::string>()).value_or(SvdMethod::Randomized);
                c.bytes = x.at("bytes").get<uint64_t>();
                c.error = x.at("error").get<double>();
                c.out_error = x.at("out_error").get<double>();
                w.candidates.push_back(c);
            }
            r.weights.push_back(std::move(w));
        }
        return r;
    } catch (const nlohmann::json::exception& e) {
        throw Error(source, "", std::string("malformed sweep: ") + e.what());
    }
}

SweepResult run_sweep(const SweepOptions& opt, const std::function<void(const SweepEvent&)>& on_event,
                      const CancelToken& cancel) {
    const auto t0 = Clock::now();
    std::mutex ev_mu;
    auto emit = [&](SweepEvent e) {
        if (!on_event) return;
        std::lock_guard<std::mutex> lock(ev_mu);
        e.elapsed = since(t0);
        on_event(e);
    };
    if (opt.quants.empty() && !opt.keep) throw Error("sweep: no candidates (no quantizer and no keep)");
    for (int r : opt.ranks)
        if (r <= 0) throw Error("sweep: ranks must be positive, got " + std::to_string(r));
    if (!opt.quants.empty() && opt.ranks.empty()) throw Error("sweep: no LoRA rank to try");

    auto ck = Checkpoint::open(opt.model);
    const auto metas = tensor_metas(*ck);
    const ResolvedPlan rp = resolve_plan(opt.plan, metas);
    if (rp.weights.empty()) throw Error(ck->path(), "", "the plan has no target weight to sweep");
    const PlanSize all = plan_size(rp, metas);

    uint64_t elements = 0;
    for (const auto& w : rp.weights) elements += uint64_t(w.rows * w.cols);
    const std::vector<SweepCandidate> proto = candidate_list(opt);
    SweepMode mode = opt.mode;
    if (mode == SweepMode::Auto) {
        const double work = double(elements) * double(proto.size()) * std::max(1, opt.plan.defaults.iters);
        mode = work < 1e9 ? SweepMode::Full : SweepMode::Fast;
    }

    SweepResult res;
    res.mode = mode;
    res.calibrated = opt.calib != nullptr;
    res.iters = opt.plan.defaults.iters;
    res.params = all.params;
    res.fp16_bytes = all.fp16_bytes;
    res.fixed_bytes = all.untouched_bytes;
    res.key = sweep_key(opt, *ck, rp, mode);
    const fs::path cache_file = opt.cache_dir.empty() ? fs::path() : fs::path(opt.cache_dir) / ("sweep-" + res.key + ".json");
    std::error_code ec;
    if (!cache_file.empty() && fs::is_regular_file(cache_file, ec)) {
        try {
            SweepResult c = sweep_from_json(read_json_file(cache_file.string(), "sweep cache"), cache_file.string());
            if (c.key == res.key && c.weights.size() == rp.weights.size()) {
                c.from_cache = true;
                emit({.weights_done = int(c.weights.size()), .weights_total = int(c.weights.size()), .fraction = 1,
                      .message = "sweep: reusing " + cache_file.string()});
                return c;
            }
        } catch (const std::exception& e) {
            emit({.message = std::string("sweep: ignoring an unreadable cache file: ") + e.what()});
        }
    }
    if (mode == SweepMode::Fast)
        res.notes.push_back("fast sweep: errors after LoftQ's first step (one quantization and one randomized SVD at "
                            "the largest rank per quantizer); the plan runs T = " + std::to_string(res.iters));
    if (opt.calib) {
        res.notes.push_back("output errors on " + std::to_string(opt.calib->tokens) + " calibration tokens of " + opt.calib->source);
        for (const auto& n : opt.calib->notes) res.notes.push_back("calibration: " + n);
    }

    const size_t K = rp.weights.size();
    res.weights.resize(K);
    for (size_t i = 0; i < K; ++i) {
        const WeightPlan& w = rp.weights[i];
        WeightSweep& ws = res.weights[i];
        ws.name = w.name;
        ws.module = w.module;
        ws.layer = w.layer;
        ws.rows = w.rows;
        ws.cols = w.cols;
        ws.candidates = proto;
        const size_t es = dtype_size(metas[size_t(w.tensor)].dtype);
        for (auto& c : ws.candidates) {
            c.s.block = c.keep ? c.s.block : w.s.block;
            c.s.iters = c.keep ? c.s.iters : w.s.iters;
            c.s.svd = w.s.svd;
            c.bytes = candidate_bytes(c, w, es);
        }
    }

    // Workers over weights, largest first (core/task_pool.h); the rest of the threads inside each
    // weight (as the quantize job; BLAS at one thread so the numbers do not depend on the thread count).
    const int threads = opt.threads > 0 ? opt.threads : hardware_threads();
    const int workers = int(std::max<size_t>(1, std::min<size_t>(size_t(threads), K)));
    const int inner = std::max(1, threads / workers);
    SingleThreadedBlas single_blas;  // LAPACK steps single-threaded: identical results for any thread count (linalg/blas.h)
    std::vector<size_t> order(K);
    for (size_t i = 0; i < K; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return rp.weights[a].rows * rp.weights[a].cols > rp.weights[b].rows * rp.weights[b].cols;
    });
    std::atomic<int> done{0};
    std::atomic<uint64_t> done_elems{0};
    emit({.weights_total = int(K), .message = "sweep: " + std::to_string(K) + " weights x " +
                                               std::to_string(proto.size()) + " candidates, " + kSweepModeNames.name(mode) +
                                               (opt.calib ? ", with output errors" : "")});
    std::vector<std::vector<float>> W(static_cast<size_t>(workers));  // each worker's fp32 copy of the weight
    run_tasks(K, workers, &cancel, [&](int worker, size_t oi) {
        const size_t i = order[oi];
        const WeightPlan& wp = rp.weights[i];
        try {
            const TensorEntry& te = ck->tensors()[size_t(wp.tensor)];
            std::vector<float>& w = W[size_t(worker)];
            w.resize(size_t(wp.rows * wp.cols));
            ck->read_f32(te, w.data(), true);
            ck->release(te);
            const InputStats* st = opt.calib ? opt.calib->find(wp.name) : nullptr;
            if (opt.calib && !st)
                throw Error(ck->path(), wp.name, "no calibration statistics for this weight (the forward pass does not use it)");
            sweep_weight(opt, mode, wp, w.data(), st, inner, res.weights[i], cancel);
            const int d = done.fetch_add(1) + 1;
            const uint64_t de = done_elems.fetch_add(uint64_t(wp.rows * wp.cols)) + uint64_t(wp.rows * wp.cols);
            SweepEvent e{.weights_done = d, .weights_total = int(K), .name = wp.name};
            e.fraction = double(de) / double(elements);
            const double el = since(t0);
            e.eta = e.fraction > 0.001 ? el * (1 - e.fraction) / e.fraction : -1;
            emit(e);
        } catch (...) {   // e.g. LAPACK did not converge; out of memory says the size of the weight's copies
            rethrow_naming_size(ck->path(), wp.name, {wp.rows, wp.cols});
        }
    });
    cancel.throw_if_cancelled();
    res.seconds = since(t0);
    if (!cache_file.empty()) {
        try {
            fs::create_directories(cache_file.parent_path());
            write_file_atomic(cache_file.string(), sweep_to_json(res).dump(1));
        } catch (const std::exception& e) {
            emit({.message = std::string("sweep: could not write the cache: ") + e.what()});
        }
    }
    return res;
}

}  // namespace loftq
