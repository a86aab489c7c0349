// try_it_worker.cpp: see studio/try_it_worker.h.
#include "studio/try_it_worker.h"

#include <filesystem>
#include <new>

#include "core/error.h"

namespace studio {

namespace fs = std::filesystem;

namespace {
bool is_file(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}
bool is_dir(const fs::path& p) {
    std::error_code ec;
    return fs::is_directory(p, ec);
}
// The first line of an error message (the status line holds one sentence).
std::string first_line(std::string s) {
    if (const auto nl = s.find('\n'); nl != std::string::npos) s.resize(nl);
    return s.empty() ? "failed" : s;
}
}  // namespace

loftq::GeneratorSource generator_source(const TryItSource& s, int threads) {
    loftq::GeneratorSource src;
    src.device = loftq::ComputeDevice::Cpu;
    src.threads = threads;
    if (s.path.empty()) throw loftq::Error("no model is open: open one (File > Open, or Open Demo Model) first");
    const fs::path p(s.path);
    switch (s.kind) {
    case TryItSourceKind::Model:
        src.model = s.path;
        break;
    case TryItSourceKind::Run:
        if (!is_file(p / "adapter" / "adapter_config.json"))
            throw loftq::Error(s.path, "", "the run has no adapter (a stopped or failed run keeps only its checkpoint): "
                                           "run it to the end, or pick another");
        src.adapter = s.path;
        break;
    case TryItSourceKind::Folder:
        if (is_file(p / "adapter_config.json") || is_file(p / "adapter" / "adapter_config.json")) {
            src.adapter = s.path;   // an adapter folder, or a run folder holding one
        } else if (is_dir(p / "checkpoint") && !is_file(p / "config.json")) {
            throw loftq::Error(s.path, "", "the run has no adapter (a stopped or failed run keeps only its checkpoint): "
                                           "run it to the end, or pick another");
        } else {
            src.model = s.path;     // an export or a checkpoint folder
        }
        break;
    }
    return src;
}

int run_try_it(const std::vector<TryItColumnWork>& columns, const std::string& prompt, const loftq::GenerateOptions& opt,
               int threads, const TryItCallbacks& cb, const loftq::CancelToken& cancel) {
    int failures = 0;
    for (const TryItColumnWork& c : columns) {
        cancel.throw_if_cancelled();
        try {
            GeneratorSlot& slot = *c.slot;
            if (!slot.gen) {
                if (cb.loading) cb.loading(c.column);
                auto g = std::make_unique<loftq::Generator>(loftq::load_generator(generator_source(c.source, threads), {}, &cancel));
                slot.gen = std::move(g);
                ++slot.loads;
            }
            cancel.throw_if_cancelled();
            if (cb.generating) cb.generating(c.column, slot.gen->description + " on " + slot.gen->where);
            const loftq::GenerateResult r = loftq::generate(*slot.gen->model, *slot.gen->tok, prompt, opt, [&](const loftq::GeneratedToken& t) {
                if (cb.token) cb.token(c.column, t);
            }, &cancel);
            if (cb.done) cb.done(c.column, r);
        } catch (const loftq::Cancelled&) {
            throw;
        } catch (const std::bad_alloc&) {
            ++failures;
            if (cb.failed) cb.failed(c.column, "out of memory while loading or generating");
        } catch (const std::exception& e) {
            ++failures;
            if (cb.failed) cb.failed(c.column, first_line(e.what()));
        }
    }
    return failures;
}

}  // namespace studio
