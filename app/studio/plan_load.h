// plan_load.h: reading a plan file (`*.loftq.json`) for the GUI, off the GUI thread. The file is
// parsed (rules compiled) and resolved against the open model's tensor list, which for a big plan
// (thousands of rules) or a model with many tensors takes long enough to freeze a window; the
// window runs this on a QtConcurrent task and applies the answer on its own thread.
#pragma once
#include <QString>
#include <cstdint>
#include <vector>

#include "loftq/plan.h"

namespace studio {

struct LoadedPlan {
    QString path;           // as asked for
    loftq::Plan plan;       // the file's plan, valid for the tensors it was resolved against
    loftq::ResolvedPlan resolved;   // plan resolved on those tensors (applied as is: no second resolve)
    size_t targets = 0;     // weights the plan quantizes on that model
    QString error;          // set instead of the above when the file is missing, malformed or
                            // does not resolve on the model (a bad regex, a conflicting rule)
    uint64_t ticket = 0;    // the window's load ticket when the load started (stale when changed)
};

// Reads `path` and resolves it on `tensors`; never throws (problems land in error). Safe on any
// thread: it touches no Qt object.
LoadedPlan try_load_plan(const QString& path, const std::vector<loftq::TensorMeta>& tensors);

}  // namespace studio
