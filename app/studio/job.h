// job.h: the LoftQ quantize job for the GUI over a JobThread: engine events are copied
// and queued to the GUI thread as event(); the end arrives as finished(), cancelled() or
// failed(). Extra export files (the plots) are asked of the GUI thread (JobThread::ask) when
// the engine is about to commit an export. With calibration options (the Mixed precision panel's
// file), the job first collects the calibration statistics on its own thread
// (mixed/calibration.h), reports them as calibrated() so that they can be reused, and hands
// them to the engine (QuantizeOptions::calib: output errors beside weight errors); a model the
// forward pass cannot run falls back to weight errors with a message.
#pragma once
#include <memory>
#include <optional>

#include "dist/launcher.h"
#include "loftq/job.h"
#include "mixed/calibration.h"
#include "studio/job_thread.h"

namespace studio {

using ExtraFiles = std::vector<std::pair<std::string, std::string>>;

class StudioJob : public JobThread {
    Q_OBJECT
public:
    explicit StudioJob(QObject* parent = nullptr);
    // Starts a job (false while one runs). opt.extra_files is replaced by the provider below.
    // `calib`: collect statistics with these options first, unless opt.calib is already set.
    bool start(loftq::QuantizeOptions opt, std::optional<loftq::CalibOptions> calib = std::nullopt);
    // The same job through "Run on" (dist/launcher.h, job_launched.cpp): `loftq quantize` with the
    // plan (sent with the run) on `target`, in the new run folder `run_dir`, the export in
    // RUN/export; events stream back as event(), the result is rebuilt from them (`resolved` gives
    // the weights' settings) and finished() comes once the files are fetched. Options it carries:
    // model, plan, only, threads, device, format, double_quant (not calibration or plot files).
    bool startLaunched(const loftq::RunTarget& target, const loftq::QuantizeOptions& opt, const loftq::ResolvedPlan& resolved,
                       const std::string& run_dir);
    // Called on the GUI thread with the final result just before an export's commit.
    void setExtraFiles(std::function<ExtraFiles(const loftq::QuantizeResult&)> provider) { extra_ = std::move(provider); }

signals:
    void event(const loftq::JobEvent& e);
    void finished(std::shared_ptr<const loftq::QuantizeResult> result);
    // Statistics the job collected, with the options they were collected with.
    void calibrated(std::shared_ptr<const loftq::CalibStats> stats, const loftq::CalibOptions& options);

private:
    std::function<ExtraFiles(const loftq::QuantizeResult&)> extra_;
};

}  // namespace studio

Q_DECLARE_METATYPE(loftq::JobEvent)
