// job_thread.cpp: see studio/job_thread.h.
#include "studio/job_thread.h"

#include "core/error.h"

namespace studio {

JobThread::~JobThread() {
    cancel();
    join();
}

void JobThread::join() {
    if (thread_.joinable()) thread_.join();
}

void JobThread::cancel() {
    if (cancel_) cancel_->cancel();
}

void JobThread::post(std::function<void()> fn) { QMetaObject::invokeMethod(this, std::move(fn), Qt::QueuedConnection); }

bool JobThread::start(std::function<void(const loftq::CancelToken&)> work) {
    if (running_) return false;
    join();  // the previous job's thread has ended (its last queued call ran): reap it
    running_ = true;
    cancel_ = std::make_shared<loftq::CancelToken>();
    thread_ = std::thread([this, work = std::move(work), token = cancel_] {
        auto end = [this](std::function<void()> emit_end) {
            post([this, emit_end] {
                running_ = false;
                emit_end();
            });
        };
        try {
            work(*token);
            end([this] { emit succeeded(); });
        } catch (const loftq::Cancelled&) {
            end([this] { emit cancelled(); });
        } catch (const std::exception& e) {
            QString msg = QString::fromStdString(e.what());
            end([this, msg] { emit failed(msg); });
        }
    });
    return true;
}

}  // namespace studio
