// progress.h: renders job events on stderr — a redrawn progress bar with ETA on a terminal
// (at most 10 redraws a second), one plain line per finished weight otherwise (logs, CI).
#pragma once
#include <chrono>
#include <string>

#include "loftq/job.h"

namespace loftq::cli {

class ProgressPrinter {
public:
    explicit ProgressPrinter(bool quiet = false);
    void operator()(const JobEvent& e);  // called serialized by the job
    void finish();                        // ends the bar line

private:
    bool tty_, quiet_, bar_drawn_ = false;
    std::chrono::steady_clock::time_point last_draw_{};
    std::string last_weight_;
    void draw(const JobEvent& e, bool force);
};

}  // namespace loftq::cli
