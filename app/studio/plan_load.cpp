// plan_load.cpp: see studio/plan_load.h.
#include "studio/plan_load.h"

#include <new>

namespace studio {

LoadedPlan try_load_plan(const QString& path, const std::vector<loftq::TensorMeta>& tensors) {
    LoadedPlan r;
    r.path = path;
    try {
        r.plan = loftq::load_plan(path.toStdString());
        // Checked against this model before the window commits it (a rule that matches in a bad
        // way throws here, not later inside an undo command).
        r.resolved = loftq::resolve_plan(r.plan, tensors);
        r.targets = r.resolved.weights.size();
    } catch (const std::bad_alloc&) {
        r.plan = {};
        r.resolved = {};
        r.error = path + QStringLiteral(": out of memory reading the plan");
    } catch (const std::exception& e) {
        r.plan = {};
        r.resolved = {};
        r.error = QString::fromStdString(e.what());
    }
    return r;
}

}  // namespace studio
