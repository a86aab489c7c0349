// job.cpp: see job.h. Tasks (one per tensor) go to the engine's pool (core/task_pool.h): targets
// first, largest first (so the long ones do not end up alone at the tail), then copies.
#include "loftq/job.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include "core/clock.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "core/parallel.h"
#include "core/task_pool.h"
#include "core/units.h"
#include "io/checkpoint.h"
#include "linalg/blas.h"
#include "loftq/weight_decomposer.h"
#include "quant/quantizer.h"

namespace loftq {

std::vector<TensorMeta> tensor_metas(const Checkpoint& ck) {
    std::vector<TensorMeta> v;
    for (const auto& t : ck.tensors()) v.push_back({t.name, t.dtype, t.shape});
    return v;
}

namespace {

nlohmann::ordered_json manifest_of(const QuantizeOptions& opt, const Checkpoint& ck, int threads, int workers,
                                   const QuantizeResult& res) {
    nlohmann::ordered_json m;
    m["tool"] = "loftq";
    m["version"] = LOFTQ_VERSION;
    m["created"] = utc_timestamp();
    m["model"] = std::filesystem::absolute(opt.model).string();
    nlohmann::ordered_json inputs = nlohmann::ordered_json::array();
    for (const auto& f : ck.files()) {
        nlohmann::ordered_json e;
        e["file"] = f;
        std::error_code ec;
        e["bytes"] = std::filesystem::file_size(f, ec);
        if (opt.checksums) e["xxh3_64"] = file_checksum(f);
        inputs.push_back(e);
    }
    m["inputs"] = inputs;
    m["threads"] = threads;
    m["workers"] = workers;
    if (res.ranks > 1) m["ranks"] = res.ranks;
    m["device"] = kComputeDeviceNames.name(res.device);
    if (res.device == ComputeDevice::Cuda) {
        m["gpu"] = res.device_name;
        m["gpu_streams"] = res.streams;
        m["gpu_peak_bytes"] = res.device_peak_bytes;
    }
    m["seed"] = opt.plan.seed;
    m["svd"] = {{"oversample", opt.plan.oversample}, {"power_iters", opt.plan.power_iters}};
    m["plan"] = plan_to_json(opt.plan);
    if (opt.calib)
        m["calibration"] = {{"file", opt.calib->source}, {"tokens", opt.calib->tokens}, {"key", opt.calib->key},
                            {"notes", opt.calib->notes}};
    return m;
}
// The events of one weight's step and of its end, the same whether it ran here or on another rank.
JobEvent step_event(int idx, const WeightPlan& wp, const StepReport& s) {
    JobEvent e{.kind = EventKind::StepDone, .weight = idx, .name = wp.name, .step = s.step, .steps = wp.s.iters};
    e.error = s.error;
    e.seconds = s.seconds;
    e.baseline = s.baseline;
    e.out_error = s.out_error;
    e.out_baseline = s.out_baseline;
    return e;
}
JobEvent weight_done_event(int idx, const WeightPlan& wp, const WeightResult& r) {
    JobEvent e{.kind = EventKind::WeightDone, .weight = idx, .name = wp.name, .steps = wp.s.iters};
    e.error = r.final_error;
    e.baseline = r.baseline;
    e.out_error = r.out_final;
    e.out_baseline = r.out_baseline;
    e.seconds = r.seconds;
    return e;
}
// CUDA: how many decomposers (streams) fit the memory limit; throws when one weight alone does not.
int cuda_streams_for(const QuantizeOptions& opt, const ResolvedPlan& plan, size_t K, std::string* note) {
    size_t est = 0;
    std::string largest;
    for (const auto& w : plan.weights) {
        const size_t e = cuda_decompose_estimate(w.rows, w.cols, w.s, opt.plan.oversample);
        if (e > est) est = e, largest = w.name;
    }
    const size_t free_b = cuda_free_bytes();
    const uint64_t limit = opt.gpu_memory > 0 ? opt.gpu_memory : uint64_t(0.9 * double(free_b));
    if (est > limit)
        throw Error("CUDA LoftQ: weight " + largest + " needs about " + human_bytes(double(est)) + " of device memory, more than the " +
                    human_bytes(double(limit)) + " allowed (" + human_bytes(double(free_b)) + " free); allow the job more GPU memory or run it on the CPU");
    int streams = std::max(1, opt.gpu_streams);
    streams = int(std::min<size_t>(size_t(streams), std::max<size_t>(1, K)));
    if (est > 0) streams = int(std::min<uint64_t>(uint64_t(streams), limit / est));
    streams = std::max(1, streams);
    *note = std::to_string(streams) + " stream" + (streams == 1 ? "" : "s") + ", up to " + human_bytes(double(est) * streams) +
            " of device memory (limit " + human_bytes(double(limit)) + ")";
    return streams;
}
}  // namespace

QuantizeResult run_quantize_with(const QuantizeOptions& opt, const ExporterFactory& make_exporter,
                                 const JobCallback& on_event, const CancelToken& cancel) {
    const auto t0 = Clock::now();
    auto elapsed = [&] { return since(t0); };
    std::mutex ev_mu;
    // Progress is stamped under the same lock that delivers the event, so the fractions a
    // listener sees never go backwards even when two workers report at once.
    std::function<void(JobEvent&)> stamp;
    auto emit = [&](JobEvent e) {
        if (!on_event) return;
        std::lock_guard<std::mutex> lock(ev_mu);
        if (stamp) stamp(e);
        on_event(e);
    };

    require_utf8_path(opt.model, "the model's path");
    if (!opt.out_dir.empty()) require_utf8_path(opt.out_dir, "the output folder's path");
    auto ck = Checkpoint::open(opt.model);
    const auto metas = tensor_metas(*ck);
    QuantizeResult res;
    res.plan = resolve_plan(opt.plan, metas);
    if (!opt.only.empty()) {
        std::vector<WeightPlan> keep;
        for (auto& w : res.plan.weights)
            if (std::find(opt.only.begin(), opt.only.end(), w.name) != opt.only.end()) keep.push_back(w);
        res.plan.weights = std::move(keep);
    }
    res.size = plan_size(res.plan, metas);
    for (auto& w : res.plan.warnings) emit({.kind = EventKind::Message, .message = "plan: " + w});

    const size_t K = res.plan.weights.size();
    res.weights.resize(K);
    // Spread over ranks: this one decomposes the weights split_weights gives it; rank 0 receives
    // the others' and alone writes (job_share.h).
    const bool spread = opt.share && opt.share->ranks() > 1;
    const bool writer = !spread || opt.share->rank() == 0;
    const std::vector<int> owner = spread ? split_weights(res.plan, opt.share->ranks()) : std::vector<int>(K, 0);
    auto mine = [&](size_t i) { return !spread || owner[i] == opt.share->rank(); };
    size_t K_here = 0;
    for (size_t i = 0; i < K; ++i) K_here += mine(i) ? 1 : 0;
    res.ranks = spread ? opt.share->ranks() : 1;
    res.weights_here = int(K_here);
    std::string device_note;
    res.device = resolve_device(opt.device, &device_note);
    const bool on_gpu = res.device == ComputeDevice::Cuda;
    res.device_name = on_gpu ? cuda_status().device : "cpu";
    const int threads = opt.threads > 0 ? opt.threads : hardware_threads();
    int workers = int(std::max<size_t>(1, std::min<size_t>(size_t(threads), K_here)));
    if (on_gpu) {
        std::string streams_note;
        workers = cuda_streams_for(opt, res.plan, K_here, &streams_note);
        device_note += "; " + streams_note;
    }
    res.streams = on_gpu ? workers : 0;
    const int inner = on_gpu ? 1 : std::max(1, threads / workers);
    SingleThreadedBlas single_blas;  // LAPACK steps single-threaded: identical results for any thread count (linalg/blas.h)

    std::unique_ptr<Exporter> exporter;
    if (make_exporter && writer) exporter = make_exporter(*ck, opt, res.plan);

    // Tasks: this rank's targets (largest first), then non-target copies when exporting.
    std::vector<int> target_of_tensor(ck->tensors().size(), -1);
    for (size_t i = 0; i < K; ++i) target_of_tensor[size_t(res.plan.weights[i].tensor)] = int(i);
    std::vector<std::pair<int, int>> tasks;  // (kind 0 = target index, 1 = tensor copy, index)
    for (size_t i = 0; i < K; ++i)
        if (mine(i)) tasks.push_back({0, int(i)});
    std::stable_sort(tasks.begin(), tasks.end(), [&](auto a, auto b) {
        auto sz = [&](int i) { return res.plan.weights[size_t(i)].rows * res.plan.weights[size_t(i)].cols; };
        return sz(a.second) > sz(b.second);
    });
    if (exporter)
        for (size_t t = 0; t < ck->tensors().size(); ++t)
            if (target_of_tensor[t] < 0) tasks.push_back({1, int(t)});

    // Progress in units of weight elements per step (rank 0 counts every rank's weights).
    double total_units = 0;
    for (size_t i = 0; i < K; ++i) {
        const auto& w = res.plan.weights[i];
        if (writer || mine(i)) total_units += double(w.rows * w.cols) * std::max(1, w.s.iters);
    }
    std::atomic<double> done_units{0};
    std::atomic<int> weights_done{0};
    stamp = [&](JobEvent& e) {
        e.weights_done = weights_done.load();
        e.weights_total = int(K);
        double f = total_units > 0 ? done_units.load() / total_units : 1.0;
        e.fraction = std::min(1.0, f);
        e.elapsed = elapsed();
        e.eta = f > 0.001 ? e.elapsed * (1.0 - e.fraction) / e.fraction : -1.0;
    };
    auto add_units = [&](double u) {
        double cur = done_units.load();
        while (!done_units.compare_exchange_weak(cur, cur + u)) {}
    };

    {
        JobEvent e{.kind = EventKind::JobStarted};
        e.message = std::to_string(K) + " weights, " +
                    (spread ? std::to_string(K_here) + " on rank " + std::to_string(opt.share->rank()) + " of " +
                                  std::to_string(res.ranks) + ", "
                            : std::string()) +
                    (on_gpu ? std::to_string(workers) + " CUDA streams"
                            : std::to_string(workers) + " workers x " + std::to_string(inner) + " threads");
        emit(e);
    }
    emit({.kind = EventKind::Message, .message = device_note});

    // One decomposer per worker, made on its first weight (on CUDA: its own stream and memory).
    std::vector<std::unique_ptr<WeightDecomposer>> decs(static_cast<size_t>(workers));
    auto task = [&](int worker, size_t ti) {
        const auto kind = tasks[ti].first;  // not a structured binding: clang 14 cannot capture one
        const auto idx = tasks[ti].second;
        if (kind == 1) {
            const TensorEntry& te = ck->tensors()[size_t(idx)];
            try {
                exporter->write_copy(te);
            } catch (...) {
                rethrow_naming(opt.out_dir, te.name);
            }
            return;
        }
        const WeightPlan& wp = res.plan.weights[size_t(idx)];
        try {
            const TensorEntry& te = ck->tensors()[size_t(wp.tensor)];
            {
                JobEvent e{.kind = EventKind::WeightStarted, .weight = idx, .name = wp.name};
                e.steps = wp.s.iters;
                emit(e);
            }
            auto& dec = decs[size_t(worker)];
            if (!dec) dec = on_gpu ? make_cuda_decomposer() : make_cpu_decomposer(inner);
            dec->set_input_stats(opt.calib ? opt.calib->find(wp.name) : nullptr);
            float* W = dec->buffer(size_t(wp.rows * wp.cols));
            ck->read_f32(te, W, true);
            ck->release(te);
            SvdOptions so;
            so.method = wp.s.svd;
            so.oversample = opt.plan.oversample;
            so.power_iters = opt.plan.power_iters;
            so.seed = weight_seed(opt.plan.seed, wp.name, 0);
            so.threads = inner;
            const double step_units = double(wp.rows * wp.cols);
            Decomposition d = dec->run(
                W, wp.rows, wp.cols, wp.s, so,
                [&](const StepReport& s) {
                    add_units(step_units);
                    emit(step_event(idx, wp, s));
                },
                &cancel);
            if (wp.s.iters <= 0) add_units(step_units);
            if (exporter) exporter->write_target(size_t(idx), d);
            WeightResult& r = res.weights[size_t(idx)];
            r.plan = wp;
            // T = 0 has no factors but exports QLoRA's rank-r init.
            r.rank = wp.s.iters > 0 ? int(d.lr.B.cols) : int(std::min<int64_t>(wp.s.rank, std::min(wp.rows, wp.cols)));
            r.baseline = d.baseline;
            r.final_error = d.final_error;
            r.w_norm = d.w_norm;
            r.out_baseline = d.out_baseline;
            r.out_final = d.out_final;
            r.steps = d.steps;
            r.seconds = d.seconds;
            if (spread && !writer) opt.share->send(idx, r, d);  // rank 0 writes it
            weights_done.fetch_add(1);
            emit(weight_done_event(idx, wp, r));
            dec->recycle(std::move(d));  // its buffers serve this worker's next weight
        } catch (...) {
            rethrow_naming(opt.model, wp.name);
        }
    };
    // Rank 0 of a spread run: one thread takes the other ranks' weights as they come and hands
    // them to the exporter, with the same events as local ones (the charts do not tell them apart).
    std::exception_ptr receive_error;
    auto receive_all = [&] {
        try {
            WeightResult r;
            Decomposition d;
            for (size_t n = K_here; n < K; ++n) {
                const int idx = opt.share->receive(r, d, cancel);
                if (idx < 0 || size_t(idx) >= K || mine(size_t(idx)))
                    throw Error("rank 0 received weight " + std::to_string(idx) + ", which is not another rank's");
                const WeightPlan& wp = res.plan.weights[size_t(idx)];
                if (d.codes.size() != size_t(wp.rows * wp.cols))
                    throw Error("rank 0 received " + wp.name + " with " + std::to_string(d.codes.size()) + " codes, expected " +
                                std::to_string(wp.rows * wp.cols));
                if (exporter) {  // Q for the writer (a dry run writes nothing: no Q needed)
                    d.Q.reshape_uninit(wp.rows, wp.cols);
                    dequantize(quant_format(wp.s.quant), d.codes.data(), d.scales.data(), d.codes.size(), wp.s.block, d.Q.data());
                }
                const double step_units = double(wp.rows * wp.cols);
                for (const auto& s : r.steps) {
                    add_units(step_units);
                    emit(step_event(idx, wp, s));
                }
                if (wp.s.iters <= 0) add_units(step_units);
                if (exporter) exporter->write_target(size_t(idx), d);
                r.plan = wp;
                res.weights[size_t(idx)] = r;
                weights_done.fetch_add(1);
                emit(weight_done_event(idx, wp, r));
            }
        } catch (const Cancelled&) {
            receive_error = std::current_exception();
        } catch (const std::exception& ex) {
            receive_error = std::current_exception();
            opt.share->abort(std::string("rank 0: ") + ex.what());  // stops the other ranks and this one's workers
        }
    };
    std::thread receiver;
    if (spread && writer && K_here < K) receiver = std::thread(receive_all);
    try {
        run_tasks(tasks.size(), workers, &cancel, task);
    } catch (const std::exception& ex) {
        if (receiver.joinable()) {
            if (!dynamic_cast<const Cancelled*>(&ex)) opt.share->abort(std::string("rank 0: ") + ex.what());
            receiver.join();
        }
        throw;
    }
    if (receiver.joinable()) receiver.join();
    if (receive_error) std::rethrow_exception(receive_error);
    for (auto& dec : decs)  // the decomposers' memory use
        if (dec) res.device_peak_bytes += dec->peak_device_bytes(), res.pinned_bytes += dec->pinned_bytes();
    cancel.throw_if_cancelled();
    if (on_gpu)
        emit({.kind = EventKind::Message, .message = "cuda: peak device memory " + human_bytes(double(res.device_peak_bytes)) +
                                                     " over " + std::to_string(res.streams) + " streams, pinned host " +
                                                     human_bytes(double(res.pinned_bytes))});

    res.seconds = elapsed();
    if (exporter) {
        emit({.kind = EventKind::Writing, .message = "writing " + opt.out_dir});
        res.files = exporter->commit(res, manifest_of(opt, *ck, threads, workers, res));
        res.seconds = elapsed();
    }
    stamp = [&](JobEvent& ev) {
        ev.weights_done = weights_done.load();
        ev.weights_total = int(K);
        ev.fraction = 1.0;
        ev.elapsed = elapsed();
        ev.eta = 0;
    };
    emit({.kind = EventKind::JobDone});
    return res;
}

}  // namespace loftq
