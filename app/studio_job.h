// studio_job.h: the one adapter between the engine's quantize job and the GUI (STYLE: app).
// start() runs loftq::run_quantize on a job thread; the engine's callback only copies each
// JobEvent and queues it to this object's (GUI) thread, where event() is emitted. The job's end
// arrives the same way, after every event it sent: finished(), cancelled() or failed().
//
// Extra export files (the plots) are asked of the GUI thread from the job thread through
// setExtraFiles(): the job thread posts the request and waits for the answer, polling the cancel
// token, so a window that closes mid-export never deadlocks (the destructor cancels and joins).
#pragma once
#include <QObject>
#include <QString>
#include <atomic>
#include <functional>
#include <memory>
#include <thread>

#include "core/cancel.h"
#include "loftq/job.h"

namespace studio {

using ExtraFiles = std::vector<std::pair<std::string, std::string>>;

class StudioJob : public QObject {
    Q_OBJECT
public:
    explicit StudioJob(QObject* parent = nullptr);
    ~StudioJob() override;   // cancels a running job and waits for it

    bool running() const { return running_; }
    // Starts a job (refused, returning false, while one runs). opt.extra_files is replaced by the
    // GUI-thread provider set with setExtraFiles (if any).
    bool start(loftq::QuantizeOptions opt);
    void cancel();
    // Called on the GUI thread with the final result just before the export's commit.
    void setExtraFiles(std::function<ExtraFiles(const loftq::QuantizeResult&)> provider) { extra_ = std::move(provider); }

signals:
    void event(const loftq::JobEvent& e);
    void finished(std::shared_ptr<const loftq::QuantizeResult> result);
    void cancelled();
    void failed(const QString& message);

private:
    void join();
    std::thread thread_;
    std::shared_ptr<loftq::CancelToken> cancel_;   // one per job (a token cannot be reset)
    bool running_ = false;   // GUI thread only
    std::function<ExtraFiles(const loftq::QuantizeResult&)> extra_;
};

}  // namespace studio

Q_DECLARE_METATYPE(loftq::JobEvent)
