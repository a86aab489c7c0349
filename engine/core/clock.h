// clock.h: wall-clock timings for results and progress events: t0 = Clock::now(), then
// since(t0) in seconds.
#pragma once
#include <chrono>

namespace loftq {

using Clock = std::chrono::steady_clock;
inline double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace loftq
