// cancel.h: cooperative cancellation. A job polls the token between units of work (a step of
// one weight, a tensor copy) and throws loftq::Cancelled; whoever holds the token (the CLI's
// SIGINT handler, the GUI's Cancel button) sets it from any thread.
#pragma once
#include <atomic>
#include "core/error.h"

namespace loftq {

struct CancelToken {
    std::atomic<bool> flag{false};
    void cancel() { flag.store(true, std::memory_order_relaxed); }
    bool cancelled() const { return flag.load(std::memory_order_relaxed); }
    void throw_if_cancelled() const { if (cancelled()) throw Cancelled(); }
};

}  // namespace loftq
