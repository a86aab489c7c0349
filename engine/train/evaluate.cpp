// evaluate.cpp: run_eval (trainer.h) and the held-out loss it shares with the fine-tune loop
// (evaluate.h): batches of B examples in order, each batch's loss weighted by its scored tokens.
#include "train/evaluate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "core/clock.h"
#include "core/error.h"
#include "train/adapter_writer.h"
#include "train/tokenizer.h"
#include "train/train_device.h"
#include "train/trainer.h"

namespace loftq {

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

double original_model_loss(const TrainOptions& opt, ComputeDevice dev, const std::vector<Example>& eval_ex,
                           const std::string& eval_file, const CancelToken& cancel,
                           const std::function<void(const std::string&)>& say) {
    LoadOptions lo = opt.load;
    lo.init = InitKind::Lora16;
    lo.plan.reset();
    lo.rank = 0;   // W as stored, no adapter
    lo.keep_packed = false;
    if (lo.threads == 0) lo.threads = opt.threads;
    DeviceModel m = load_on_device(lo, dev, opt.gemm, opt.recompute, opt.batch, opt.seq, 1, {}, say);
    m.model->set_threads(resolve_threads(opt.threads));
    check_examples(eval_ex, opt.seq, m.model->config().vocab, eval_file);
    return mean_loss(*m.model, eval_ex, opt.batch, opt.seq, opt.eval_batches, cancel, nullptr);
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

}  // namespace loftq
