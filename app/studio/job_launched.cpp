// job_launched.cpp: StudioJob::startLaunched (studio/job.h): a plan's export through "Run on".
// The plan goes with the run as plan.loftq.json (RemoteRun's `send`); the target runs
// `loftq quantize MODEL --plan plan.loftq.json --out export ...` in its run folder; the events
// drive the same RunResults as a local run; the QuantizeResult the window finishes with is put
// together from them (every weight's steps, errors and time), and the files are fetched into
// RUN before finished(). Stop, a lost connection and a failed run: RemoteRun::follow_to_end.
#include <QDir>
#include <QTemporaryDir>

#include "core/error.h"
#include "device/compute_device.h"
#include "loftq/plan.h"
#include "studio/job.h"

namespace studio {

namespace {
constexpr const char* kPlanFile = "plan.loftq.json";
constexpr const char* kExportInRun = "export";

std::vector<std::string> quantize_args(const loftq::QuantizeOptions& o) {
    std::vector<std::string> a{"quantize", o.model, "--plan", kPlanFile, "--out", kExportInRun, "--format",
                               loftq::kExportFormatNames.name(o.format), "--device", loftq::kComputeDeviceNames.name(o.device),
                               "--threads", std::to_string(o.threads), "-q"};
    if (o.double_quant) a.push_back("--double-quant");
    if (!o.only.empty())
        throw loftq::Error("Run on runs the whole plan; run selected weights on this machine");
    return a;
}
}  // namespace

bool StudioJob::startLaunched(const loftq::RunTarget& target, const loftq::QuantizeOptions& opt,
                              const loftq::ResolvedPlan& resolved, const std::string& run_dir) {
    if (running()) return false;
    return JobThread::start([this, target, opt, resolved, run_dir](const loftq::CancelToken& token) {
        QTemporaryDir tmp;
        if (!tmp.isValid()) throw loftq::Error("cannot create a temporary folder for the plan");
        const std::string plan_path = QDir(tmp.path()).filePath(kPlanFile).toStdString();
        loftq::save_plan(opt.plan, plan_path);
        loftq::RemoteRun run = loftq::RemoteRun::start(target, quantize_args(opt), run_dir, {plan_path});
        const std::string where = run.over_ssh() ? run.where() : loftq::expand_template(target);
        {
            loftq::JobEvent e;
            e.kind = loftq::EventKind::Message;
            e.message = "run on " + where + ": run folder " + run_dir + " (export in " + kExportInRun + "/)";
            post([this, e] { emit event(e); });
        }
        auto result = std::make_shared<loftq::QuantizeResult>();
        result->plan = resolved;
        result->weights.resize(resolved.weights.size());
        result->device_name = where;
        auto on_event = [&](const loftq::ParsedEvent& p) {
            if (!p.job) return;
            const loftq::JobEvent e = *p.job;
            const bool known = e.weight >= 0 && size_t(e.weight) < result->weights.size();
            if (known && e.kind == loftq::EventKind::StepDone) {
                loftq::StepReport s;
                s.step = e.step;
                s.error = e.error;
                s.seconds = e.seconds;
                s.baseline = e.baseline;
                s.out_error = e.out_error;
                s.out_baseline = e.out_baseline;
                result->weights[size_t(e.weight)].steps.push_back(s);
            } else if (known && e.kind == loftq::EventKind::WeightDone) {
                loftq::WeightResult& w = result->weights[size_t(e.weight)];
                w.plan = resolved.weights[size_t(e.weight)];
                w.rank = int(std::min<int64_t>(w.plan.s.rank, std::min(w.plan.rows, w.plan.cols)));
                w.baseline = e.baseline;
                w.final_error = e.error;
                w.out_baseline = e.out_baseline;
                w.out_final = e.out_error;
                w.seconds = e.seconds;
            } else if (e.kind == loftq::EventKind::JobDone) {
                result->seconds = e.elapsed;
            }
            post([this, e] { emit event(e); });
        };
        run.follow_to_end(on_event, token);
        result->files = {QDir(QString::fromStdString(run_dir)).filePath(kExportInRun).toStdString()};
        std::shared_ptr<const loftq::QuantizeResult> done = result;
        post([this, done] { emit finished(done); });
    });
}

}  // namespace studio
