// studio_job.h: the LoftQ quantize job for the GUI over a JobThread: engine events are copied
// and queued to the GUI thread as event(); the end arrives as finished(), cancelled() or
// failed(). Extra export files (the plots) are asked of the GUI thread (JobThread::ask) when
// the engine is about to commit an export.
#pragma once
#include <memory>

#include "loftq/job.h"
#include "studio_job_thread.h"

namespace studio {

using ExtraFiles = std::vector<std::pair<std::string, std::string>>;

class StudioJob : public JobThread {
    Q_OBJECT
public:
    explicit StudioJob(QObject* parent = nullptr);
    // Starts a job (false while one runs). opt.extra_files is replaced by the provider below.
    bool start(loftq::QuantizeOptions opt);
    // Called on the GUI thread with the final result just before an export's commit.
    void setExtraFiles(std::function<ExtraFiles(const loftq::QuantizeResult&)> provider) { extra_ = std::move(provider); }

signals:
    void event(const loftq::JobEvent& e);
    void finished(std::shared_ptr<const loftq::QuantizeResult> result);

private:
    std::function<ExtraFiles(const loftq::QuantizeResult&)> extra_;
};

}  // namespace studio

Q_DECLARE_METATYPE(loftq::JobEvent)
