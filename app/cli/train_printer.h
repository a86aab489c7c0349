// train_printer.h: renders fine-tuning events on stderr, for `loftq finetune` and for a fine-tune
// followed from another machine (`--run-on`, `loftq attach`: cli/launch.cpp): a redrawn status
// line on a terminal, plain lines otherwise (one per step for short runs, about 100 in all for
// long ones), evals and messages always.
#pragma once
#include <chrono>
#include <string>

#include "train/trainer.h"

namespace loftq::cli {

class TrainPrinter {
public:
    explicit TrainPrinter(bool quiet);
    void operator()(const TrainEvent& e);
    void finish();   // ends the status line

private:
    bool tty_, quiet_, bar_ = false;
    std::chrono::steady_clock::time_point last_draw_{};
    void line(const std::string& s);
};

}  // namespace loftq::cli
