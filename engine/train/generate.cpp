// generate.cpp: see generate.h. The loop, the UTF-8 boundary of the stream, and the loader.
#include "train/generate.h"

#include <algorithm>
#include <filesystem>

#include "core/clock.h"
#include "core/error.h"
#include "train/adapter_writer.h"
#include "train/train_device.h"

namespace fs = std::filesystem;

namespace loftq {

namespace {

// Bytes of `s` that end on a whole UTF-8 character: a multi-byte character cut by the end of a
// token waits for the next token. A malformed tail (a stray continuation byte, an impossible lead)
// is let through rather than held forever.
size_t complete_utf8_prefix(const std::string& s) {
    const size_t n = s.size();
    for (size_t back = 1; back <= std::min<size_t>(n, 4); ++back) {
        const unsigned char c = static_cast<unsigned char>(s[n - back]);
        if ((c & 0xC0) == 0x80) continue;   // a continuation byte: look further back
        const size_t need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
        return back >= need ? n : n - back;
    }
    return n;
}

}  // namespace

double GenerateResult::tokens_per_second() const {
    const size_t steps = ids.size() > 1 ? ids.size() - 1 : 0;   // the first token comes from the prefill
    return decode_seconds > 0 ? double(steps) / decode_seconds : 0;
}

GenerateResult generate_ids(LlamaModel& model, const std::vector<int>& prompt, int eos, const GenerateOptions& opt,
                            const Tokenizer* tok, const TokenSink& on_token, const CancelToken* cancel) {
    if (prompt.empty()) throw Error("generate: empty prompt (give at least the BOS token)");
    if (opt.max_tokens < 0) throw Error("generate: max tokens must be >= 0");
    TokenSampler sampler(opt.sampling);
    const int V = model.config().vocab;
    const int limit = model.context_limit();
    if (int(prompt.size()) > limit)
        throw Error("", "", "the prompt has " + std::to_string(prompt.size()) + " tokens, more than the model's context of " +
                                std::to_string(limit));
    GenerateResult r;
    r.prompt_ids = prompt;
    r.stop = GenerateStop::Length;
    std::string pending;   // text not yet handed on (an unfinished UTF-8 character)
    auto emit = [&](int index, int id, bool last) {
        GeneratedToken t{index, id, {}};
        if (tok && !(eos >= 0 && id == eos)) {
            const int prev = index == 0 ? prompt.back() : r.ids[size_t(index) - 1];
            pending += tok->piece(prev, id);
            const size_t k = last ? pending.size() : complete_utf8_prefix(pending);
            t.text = pending.substr(0, k);
            pending.erase(0, k);
        }
        r.text += t.text;
        if (on_token) on_token(t);
    };

    model.reset_cache();
    if (cancel) cancel->throw_if_cancelled();
    auto t0 = Clock::now();
    if (opt.max_tokens == 0) return r;
    const float* logits = model.decode(prompt.data(), int(prompt.size()));
    r.prefill_seconds = since(t0);
    t0 = Clock::now();
    for (int i = 0; i < opt.max_tokens; ++i) {
        if (cancel) cancel->throw_if_cancelled();
        const int next = sampler.next(logits, V);
        r.ids.push_back(next);
        const bool at_eos = opt.stop_at_eos && eos >= 0 && next == eos;
        const bool full = model.cached() >= limit;   // no room to run `next`
        const bool last = at_eos || full || i + 1 == opt.max_tokens;
        emit(i, next, last);
        if (at_eos) { r.stop = GenerateStop::Eos; break; }
        if (last) { r.stop = full ? GenerateStop::Context : GenerateStop::Length; break; }
        logits = model.decode(&next, 1);
    }
    r.decode_seconds = since(t0);
    return r;
}

GenerateResult generate(LlamaModel& model, const Tokenizer& tok, const std::string& prompt, const GenerateOptions& opt,
                        const TokenSink& on_token, const CancelToken* cancel) {
    std::vector<int> ids = tok.encode(prompt, opt.add_bos, false);
    if (ids.empty()) {
        if (tok.bos_id() < 0) throw Error("generate: empty prompt and the tokenizer has no BOS token to start from");
        ids.push_back(tok.bos_id());
    }
    return generate_ids(model, ids, tok.eos_id(), opt, &tok, on_token, cancel);
}

std::string generate_text(LlamaModel& model, const Tokenizer& tok, const std::string& prompt, int max_new,
                          const CancelToken* cancel) {
    GenerateOptions opt;
    opt.max_tokens = max_new;
    return prompt + generate(model, tok, prompt, opt, {}, cancel).text;
}

// ---- loading

namespace {
bool is_file(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}
bool is_run_folder(const std::string& p) { return !p.empty() && is_file(fs::path(p) / "adapter" / "adapter_config.json"); }
// An adapter folder (not an export's root, which has config.json beside its loftq_init/).
bool is_adapter_folder(const std::string& p) {
    return !p.empty() && is_file(fs::path(p) / "adapter_config.json") && !is_file(fs::path(p) / "config.json");
}
// A fine-tune's output folder that holds no adapter (a stopped run keeps only its checkpoint).
void refuse_stopped_run(const std::string& p) {
    std::error_code ec;
    const fs::path d(p);
    if (p.empty() || is_file(d / "config.json") || is_run_folder(p)) return;
    if (fs::is_directory(d / "checkpoint", ec) || is_file(d / "metrics.jsonl"))
        throw Error(p, "", "the run has no adapter (a stopped or failed run keeps only its checkpoint): run it to the end, or pick another");
}
}  // namespace

Generator load_generator(const GeneratorSource& src, const std::function<void(const std::string&)>& say,
                         const CancelToken* cancel) {
    std::string model = src.model, adapter = src.adapter;
    refuse_stopped_run(adapter.empty() ? model : adapter);
    // A fine-tune's output folder or an adapter folder named as the model: that adapter.
    if (adapter.empty() && (is_run_folder(model) || is_adapter_folder(model))) {
        adapter = model;
        model.clear();
    }
    if (is_run_folder(adapter)) adapter = (fs::path(adapter) / "adapter").string();

    LoadOptions lo;
    std::string what;
    if (!adapter.empty()) {
        const AdapterInfo info = read_adapter_info(adapter);
        if (info.has_base) lo = info.base;
        else lo.init = InitKind::Export;
        if (!model.empty()) lo.model = model;
        if (lo.model.empty())
            throw Error(adapter, "", "the adapter does not say which model it was trained on (no loftq_base.json); name the model too");
        lo.rank = info.r;   // the LoRA shapes must match the adapter's (as `loftq eval --adapter`)
        lo.lora_alpha = info.lora_alpha;
        what = lo.model + " (" + kInitKindNames.name(lo.init) + " base) + adapter " + adapter;
    } else {
        if (model.empty()) throw Error("generate: no model given");
        lo.model = model;
        if (is_loftq_export(model)) {
            lo.init = InitKind::Export;   // backbone + its LoftQ initialization
            what = model + " (LoftQ export: backbone + loftq_init)";
        } else {
            lo.init = InitKind::Lora16;   // the weights as stored, no adapter
            lo.rank = 0;
            what = model;
        }
    }
    lo.threads = src.threads;
    lo.verify = true;
    lo.cancel = cancel;

    Generator g;
    g.tok = load_tokenizer(src.tokenizer.empty() ? lo.model : src.tokenizer);
    const DeviceChoice dev = choose_device(src.device, GemmMode::Fp32);
    auto prepare = [&](LlamaModel& m) {
        if (!adapter.empty()) apply_peft_adapter(adapter, m);
    };
    DeviceModel dm = load_on_device(lo, dev.device, GemmMode::Fp32, RecomputeMode::Off, 1, 1, 1, prepare, say);
    dm.model->set_threads(resolve_threads(src.threads));
    if (g.tok->vocab_size() > dm.model->config().vocab)
        throw Error(src.tokenizer.empty() ? lo.model : src.tokenizer, "",
                    "the tokenizer has " + std::to_string(g.tok->vocab_size()) + " tokens, the model only " +
                        std::to_string(dm.model->config().vocab));
    g.model = std::move(dm.model);
    g.where = dm.where;
    g.description = what;
    return g;
}

}  // namespace loftq
