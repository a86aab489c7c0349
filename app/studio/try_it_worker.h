// try_it_worker.h: the work behind the Try it tab (studio/try_it.h), on its job thread and free
// of Qt: each column in turn gets its generator (train/generate.h: load_generator; a model, an
// export, a fine-tune run or a browsed folder), loaded once into a slot the panel keeps keyed by
// the source, then generates the prompt with it, handing every token to a callback as it comes.
// The callbacks run on the job thread; the panel's only copy what they need and queue a call to
// the GUI thread. Leaves out: widgets, the GUI thread, several prompts at once.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/cancel.h"
#include "train/generate.h"

namespace studio {

enum class TryItSourceKind : int {
    Model = 0,    // a checkpoint or a LoftQ export, as the Studio opened it ("Original model", "Export")
    Run = 1,      // a fine-tune run's output folder (its adapter/ on the base the run recorded)
    Folder = 2,   // a folder picked by hand: an adapter, a run, an export or a checkpoint folder
};

struct TryItSource {
    TryItSourceKind kind = TryItSourceKind::Model;
    std::string path;
    std::string key() const { return std::to_string(int(kind)) + "|" + path; }   // the cache's key
};

// One source's loaded model, kept between generations. `gen` is touched only by the job thread
// (the panel hands the slot to one job at a time and never reads it); the panel drops the slot
// when the source or the Studio's model changes.
struct GeneratorSlot {
    explicit GeneratorSlot(std::string k) : key(std::move(k)) {}
    std::string key;
    std::unique_ptr<loftq::Generator> gen;
    int loads = 0;   // how often it was loaded (the tests check that the cache holds)
};

struct TryItColumnWork {
    int column = 0;
    TryItSource source;
    std::shared_ptr<GeneratorSlot> slot;
};

// All called on the job thread, in this order per column: loading (only when the slot is empty),
// generating (loaded: the model's one-line description and where it runs), token per new token,
// then done or failed.
struct TryItCallbacks {
    std::function<void(int column)> loading;
    std::function<void(int column, const std::string& description)> generating;
    std::function<void(int column, const loftq::GeneratedToken&)> token;
    std::function<void(int column, const loftq::GenerateResult&)> done;
    std::function<void(int column, const std::string& error)> failed;
};

// The generator source for a panel source: its folder, which load_generator resolves (a
// checkpoint, an export, a run or adapter folder; a stopped run without its adapter is refused
// there in one sentence). Throws loftq::Error when no model is open. threads: 0 = all cores.
loftq::GeneratorSource generator_source(const TryItSource& s, int threads);

// Runs the columns one after the other with the same prompt and options. A column that fails
// (no model, a bad folder, a model that does not load) reports failed() with the error's first
// line and the next column still runs; a cancel throws loftq::Cancelled (checked between the tensors
// and weights of a load, and before every token). Returns how many columns failed.
int run_try_it(const std::vector<TryItColumnWork>& columns, const std::string& prompt, const loftq::GenerateOptions& opt,
               int threads, const TryItCallbacks& cb, const loftq::CancelToken& cancel);

}  // namespace studio
