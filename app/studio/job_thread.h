// job_thread.h: one background engine job at a time, for the GUI (STYLE: app). The work
// runs on its own thread with a fresh CancelToken; it talks to the GUI thread only by post(),
// which queues a call to this object's thread; the job's end (ok, cancelled, failed) arrives
// the same way, after everything it posted. The destructor cancels and joins; Qt drops calls
// queued to a destroyed object, so a closing window never waits on, or is touched by, a job.
#pragma once
#include <QObject>
#include <QString>
#include <functional>
#include <memory>
#include <thread>

#include "core/cancel.h"

namespace studio {

class JobThread : public QObject {
    Q_OBJECT
public:
    explicit JobThread(QObject* parent = nullptr) : QObject(parent) {}
    ~JobThread() override;

    bool running() const { return running_; }   // GUI thread
    // Starts `work` (refused while a job runs). `work` returns normally (succeeded), throws
    // loftq::Cancelled (cancelled) or anything else (failed, with its message).
    bool start(std::function<void(const loftq::CancelToken&)> work);
    void cancel();
    // From the job thread: run fn on this object's (GUI) thread, in order.
    void post(std::function<void()> fn);
    // From the job thread: run fn on the GUI thread and wait for its result, giving up (by
    // throwing loftq::Cancelled) when the job is cancelled meanwhile.
    template <typename T>
    T ask(std::function<T()> fn, const loftq::CancelToken& token);

signals:
    void succeeded();
    void cancelled();
    void failed(const QString& message);

private:
    void join();
    std::thread thread_;
    std::shared_ptr<loftq::CancelToken> cancel_;   // one per job (a token cannot be reset)
    bool running_ = false;
};

}  // namespace studio

#include "studio/job_thread_ask.h"
