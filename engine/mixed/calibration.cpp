// calibration.cpp: see calibration.h.
#include "mixed/calibration.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>

#include "core/error.h"
#include "core/fsutil.h"
#include "model/llama.h"
#include "model/llama_cpu.h"
#include "train/dataset.h"
#include "train/tokenizer.h"

namespace loftq {

namespace {
// The distinct inputs of a layer: q/k/v share one, gate/up another.
int input_group(LoraSite s) {
    switch (s) {
        case LoraSite::Q: case LoraSite::K: case LoraSite::V: return 0;
        case LoraSite::O: return 1;
        case LoraSite::Gate: case LoraSite::Up: return 2;
        case LoraSite::Down: return 3;
    }
    return 0;
}
const char* kGroupNames[4] = {"attention input (q/k/v)", "o_proj input", "MLP input (gate/up)", "down_proj input"};

struct GramAcc {
    int64_t in = 0;
    bool full = true;
    std::vector<double> g;      // in x in (full) or in (diagonal)
    std::vector<double> xd;     // scratch: x as float64 (full)
    void add(const float* x, int64_t N) {
        if (full) {
            xd.assign(x, x + N * in);
            // G += x^T x (upper triangle), mirrored when factored.
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, int(in), int(N), 1.0, xd.data(), int(in), 1.0, g.data(), int(in));
        } else {
            for (int64_t t = 0; t < N; ++t)
                for (int64_t j = 0; j < in; ++j) g[size_t(j)] += double(x[t * in + j]) * double(x[t * in + j]);
        }
    }
};
}  // namespace

CalibStats collect_calibration(const CalibOptions& opt, const std::function<void(double)>& progress,
                               const CancelToken& cancel) {
    if (opt.data.empty()) throw Error("calibration: no calibration file given");
    if (opt.tokens <= 0 || opt.seq < 2) throw Error("calibration: the token budget must be positive and seq >= 2");
    LoadOptions lo;
    lo.model = opt.model;
    lo.init = InitKind::Lora16;  // base = W, no adapters: the original model
    lo.rank = 0;
    lo.threads = opt.threads;
    std::unique_ptr<LlamaModel> base;
    try {
        base = load_llama(lo);
    } catch (const Error& e) {
        throw CalibrationUnsupported(std::string("calibration needs the model's forward pass, which cannot run on this model: ") +
                                     e.what());
    }
    auto* model = dynamic_cast<LlamaCpu*>(base.get());
    if (!model) throw Error("calibration: the CPU model is required");
    const LlamaConfig& cfg = model->config();

    std::unique_ptr<Tokenizer> tok = load_tokenizer(opt.tokenizer.empty() ? opt.model : opt.tokenizer);
    DatasetOptions dopt;
    dopt.seq = opt.seq;
    std::vector<Example> ex = load_examples(opt.data, *tok, dopt);
    // Real length of each window: up to the trailing padding (token 0, target -1).
    std::vector<int> len(ex.size());
    int64_t available = 0;
    for (size_t i = 0; i < ex.size(); ++i) {
        int n = int(ex[i].tokens.size());
        while (n > 0 && ex[i].tokens[size_t(n - 1)] == 0 && ex[i].targets[size_t(n - 1)] < 0) --n;
        len[i] = n;
        available += n;
        for (int t = 0; t < n; ++t)
            if (ex[i].tokens[size_t(t)] < 0 || ex[i].tokens[size_t(t)] >= cfg.vocab)
                throw Error(opt.data, "", "token id " + std::to_string(ex[i].tokens[size_t(t)]) +
                                              " is outside the model's vocabulary of " + std::to_string(cfg.vocab) +
                                              " (tokenizer and model do not match?)");
    }
    const int64_t need = std::min(opt.tokens, opt.min_tokens);
    if (available < need)
        throw Error(opt.data, "", "has " + std::to_string(available) + " tokens, too few to calibrate on (at least " +
                                      std::to_string(need) + " needed; the budget is " + std::to_string(opt.tokens) + ")");

    CalibStats st;
    st.source = opt.data;
    const int L = cfg.n_layers;
    std::vector<GramAcc> acc(size_t(L) * 4);
    for (int l = 0; l < L; ++l)
        for (int g = 0; g < 4; ++g) {
            GramAcc& a = acc[size_t(l) * 4 + size_t(g)];
            a.in = g == 3 ? cfg.hidden : cfg.dim;
            a.full = a.in <= opt.max_full_dim;
            a.g.assign(a.full ? size_t(a.in * a.in) : size_t(a.in), 0.0);
        }
    int64_t n_cur = 0;
    model->set_input_observer([&](int layer, LoraSite s, const float* x, int64_t N, int64_t in) {
        const bool first_of_group = s == LoraSite::Q || s == LoraSite::O || s == LoraSite::Gate || s == LoraSite::Down;
        if (!first_of_group) return;
        acc[size_t(layer) * 4 + size_t(input_group(s))].add(x, std::min(N, n_cur));
    });
    const int64_t budget = std::min(opt.tokens, available);
    int64_t used = 0;
    for (size_t i = 0; i < ex.size() && used < budget; ++i) {
        cancel.throw_if_cancelled();
        const int n = int(std::min<int64_t>(len[i], budget - used));
        if (n <= 0) continue;
        n_cur = n;
        model->forward(ex[i].tokens.data(), nullptr, 1, n);
        used += n;
        if (progress) progress(double(used) / double(budget));
    }
    model->set_input_observer({});
    st.tokens = used;
    if (used < opt.tokens)
        st.notes.push_back("used all " + std::to_string(used) + " tokens of " + opt.data + " (fewer than the " +
                           std::to_string(opt.tokens) + " asked)");

    for (int l = 0; l < L; ++l)
        for (int g = 0; g < 4; ++g) {
            GramAcc& a = acc[size_t(l) * 4 + size_t(g)];
            if (a.full)  // mirror the upper triangle dsyrk filled
                for (int64_t r = 0; r < a.in; ++r)
                    for (int64_t c = 0; c < r; ++c) a.g[size_t(r * a.in + c)] = a.g[size_t(c * a.in + r)];
            auto stats = std::make_shared<InputStats>();
            if (a.full) {
                *stats = input_stats_from_gram(a.g, a.in, used, true);
            } else {
                stats->in = a.in;
                stats->tokens = used;
                stats->full = false;
                stats->R.resize(size_t(a.in));
                for (int64_t j = 0; j < a.in; ++j) stats->R[size_t(j)] = float(std::sqrt(a.g[size_t(j)]));
            }
            a.g = {};
            for (int s = 0; s < kLoraSites; ++s)
                if (input_group(LoraSite(s)) == g) st.by_weight[lora_module_path(l, LoraSite(s)) + ".weight"] = stats;
        }
    for (int g = 0; g < 4; ++g) {
        const int64_t in = g == 3 ? cfg.hidden : cfg.dim;
        if (in > opt.max_full_dim)
            st.notes.push_back(std::string(kGroupNames[g]) + ": " + std::to_string(in) + " features > " +
                               std::to_string(opt.max_full_dim) +
                               ", Gram diagonal only (output errors treat these features as uncorrelated)");
    }
    st.key = file_checksum(opt.data) + "-t" + std::to_string(used) + "-s" + std::to_string(opt.seq) + "-f" +
             std::to_string(opt.max_full_dim);
    return st;
}

}  // namespace loftq
