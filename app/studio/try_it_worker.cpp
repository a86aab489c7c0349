// try_it_worker.cpp: see studio/try_it_worker.h.
#include "studio/try_it_worker.h"

#include <new>

#include "core/error.h"

namespace studio {

namespace {
// The first line of an error message (the status line holds one sentence).
std::string first_line(std::string s) {
    if (const auto nl = s.find('\n'); nl != std::string::npos) s.resize(nl);
    return s.empty() ? "failed" : s;
}
}  // namespace

loftq::GeneratorSource generator_source(const TryItSource& s, int threads) {
    if (s.path.empty()) throw loftq::Error("no model is open: open one (File > Open, or Open Demo Model) first");
    loftq::GeneratorSource src;
    src.device = loftq::ComputeDevice::Cpu;
    src.threads = threads;
    src.model = s.path;   // load_generator tells a checkpoint, an export, a run and an adapter folder apart
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
