// job_thread_ask.h: JobThread::ask (a template, so in a header).
#pragma once
#include <QMetaObject>
#include <chrono>
#include <future>

namespace studio {

template <typename T>
T JobThread::ask(std::function<T()> fn, const loftq::CancelToken& token) {
    auto promise = std::make_shared<std::promise<T>>();
    std::future<T> answer = promise->get_future();
    QMetaObject::invokeMethod(this, [promise, fn = std::move(fn)] {
        try {
            promise->set_value(fn());
        } catch (...) {
            promise->set_exception(std::current_exception());
        }
    }, Qt::QueuedConnection);
    while (answer.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) token.throw_if_cancelled();
    return answer.get();
}

}  // namespace studio
