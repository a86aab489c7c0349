// generate.cpp: see generate.h.
#include "train/generate.h"

#include <algorithm>

#include "core/error.h"

namespace loftq {

std::vector<int> generate_greedy(LlamaModel& model, const std::vector<int>& prompt, int max_new, int eos,
                                 const CancelToken* cancel) {
    if (prompt.empty()) throw Error("generate: empty prompt (give at least the BOS token)");
    const LlamaConfig& c = model.config();
    std::vector<int> seq = prompt;
    std::vector<int> out;
    const int limit = c.max_seq > 0 ? c.max_seq : 2048;
    for (int i = 0; i < max_new && int(seq.size()) < limit; ++i) {
        if (cancel) cancel->throw_if_cancelled();
        const int T = int(seq.size());
        model.forward(seq.data(), nullptr, 1, T);
        const float* last = model.logits() + size_t(T - 1) * size_t(c.vocab);
        const int next = int(std::max_element(last, last + c.vocab) - last);  // first maximum on ties
        out.push_back(next);
        seq.push_back(next);
        if (eos >= 0 && next == eos) break;
    }
    return out;
}

std::string generate_text(LlamaModel& model, const Tokenizer& tok, const std::string& prompt, int max_new,
                          const CancelToken* cancel) {
    std::vector<int> ids;
    if (prompt.empty()) {
        const int bos = tok.bos_id();
        ids.push_back(bos >= 0 ? bos : 0);
    } else {
        ids = tok.encode(prompt, true, false);
        if (ids.empty()) ids.push_back(std::max(0, tok.bos_id()));
    }
    const std::vector<int> gen = generate_greedy(model, ids, max_new, tok.eos_id(), cancel);
    std::string text = prompt;
    int prev = ids.back();
    for (int id : gen) {
        if (id == tok.eos_id()) break;
        text += tok.piece(prev, id);
        prev = id;
    }
    return text;
}

}  // namespace loftq
