// train_bench.cpp: run_train_bench (trainer.h): the training step alone (forward, backward,
// clipping, AdamW) on B x T token ids from a file or uniform draws, `warmup` untimed steps then
// `steps` timed ones, with the device synchronized at both ends of the timed stretch.
#include <cmath>
#include <cstring>
#include <memory>

#include "core/clock.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "model/llama_cpu.h"
#include "train/train_device.h"
#include "train/trainer.h"

namespace loftq {

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
