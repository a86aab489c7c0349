// studio_job.cpp: see studio_job.h.
#include "studio_job.h"

#include <QMetaObject>
#include <QPointer>
#include <chrono>
#include <future>

#include "core/error.h"

namespace studio {

StudioJob::StudioJob(QObject* parent) : QObject(parent) { qRegisterMetaType<loftq::JobEvent>(); }

StudioJob::~StudioJob() {
    cancel();
    join();
}

void StudioJob::join() {
    if (thread_.joinable()) thread_.join();
}

void StudioJob::cancel() {
    if (cancel_) cancel_->cancel();
}

bool StudioJob::start(loftq::QuantizeOptions opt) {
    if (running_) return false;
    join();  // the previous job's thread has ended (its last queued call ran), reap it
    running_ = true;
    cancel_ = std::make_shared<loftq::CancelToken>();
    auto token = cancel_;
    if (extra_ && !opt.out_dir.empty()) {
        // Job thread -> GUI thread and back: post the request, wait for the answer, give up on cancel.
        opt.extra_files = [this, token](const loftq::QuantizeResult& r) {
            auto promise = std::make_shared<std::promise<ExtraFiles>>();
            std::future<ExtraFiles> answer = promise->get_future();
            auto copy = std::make_shared<const loftq::QuantizeResult>(r);  // outlives a cancelled wait
            QMetaObject::invokeMethod(this, [this, promise, copy] {
                try {
                    promise->set_value(extra_(*copy));
                } catch (...) {
                    promise->set_exception(std::current_exception());
                }
            }, Qt::QueuedConnection);
            while (answer.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) token->throw_if_cancelled();
            return answer.get();
        };
    }
    // The job thread touches `this` only through queued calls; the destructor cancels and joins
    // before `this` goes, and Qt drops calls queued to a destroyed object.
    thread_ = std::thread([this, opt = std::move(opt), token] {
        auto done = [this](auto emit_end) {
            QMetaObject::invokeMethod(this, [this, emit_end] {
                running_ = false;
                emit_end();
            }, Qt::QueuedConnection);
        };
        try {
            auto result = std::make_shared<const loftq::QuantizeResult>(loftq::run_quantize(
                opt,
                [this](const loftq::JobEvent& e) {
                    QMetaObject::invokeMethod(this, [this, e] { emit event(e); }, Qt::QueuedConnection);
                },
                *token));
            done([this, result] { emit finished(result); });
        } catch (const loftq::Cancelled&) {
            done([this] { emit cancelled(); });
        } catch (const std::exception& e) {
            QString msg = QString::fromStdString(e.what());
            done([this, msg] { emit failed(msg); });
        }
    });
    return true;
}

}  // namespace studio
