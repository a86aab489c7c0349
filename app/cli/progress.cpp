// progress.cpp: see cli/progress.h.
#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>

#include "cli/common.h"

namespace loftq::cli {

ProgressPrinter::ProgressPrinter(bool quiet) : tty_(::isatty(2)), quiet_(quiet) {}

void ProgressPrinter::draw(const JobEvent& e, bool force) {
    auto now = std::chrono::steady_clock::now();
    if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    constexpr int W = 30;
    int filled = int(e.fraction * W + 0.5);
    std::string bar(size_t(filled), '#');
    bar += std::string(size_t(W - filled), '-');
    std::fprintf(stderr, "\r\033[K%3d%% [%s] %d/%d weights  %s elapsed  ETA %s  %s", int(e.fraction * 100 + 0.5), bar.c_str(),
                 e.weights_done, e.weights_total, human_seconds(e.elapsed).c_str(), human_seconds(e.eta).c_str(),
                 last_weight_.c_str());
    std::fflush(stderr);
    bar_drawn_ = true;
}

void ProgressPrinter::operator()(const JobEvent& e) {
    if (quiet_ && e.kind != EventKind::Message) return;
    char buf[512];
    switch (e.kind) {
        case EventKind::JobStarted:
            std::fprintf(stderr, "loftq: %s\n", e.message.c_str());
            break;
        case EventKind::Message:
            if (bar_drawn_) std::fprintf(stderr, "\r\033[K");
            std::fprintf(stderr, "loftq: %s\n", e.message.c_str());
            break;
        case EventKind::WeightStarted:
        case EventKind::StepDone:
            if (tty_) draw(e, false);
            break;
        case EventKind::WeightDone:
            std::snprintf(buf, sizeof buf, "%s %.4f -> %.4f", e.name.c_str(), e.baseline, e.error);
            last_weight_ = buf;
            if (tty_) {
                draw(e, false);
            } else {
                std::fprintf(stderr, "[%*d/%d] %s: QLoRA %.5f -> LoftQ %.5f (%.2fs)  ETA %s\n", int(std::to_string(e.weights_total).size()),
                             e.weights_done, e.weights_total, e.name.c_str(), e.baseline, e.error, e.seconds,
                             human_seconds(e.eta).c_str());
            }
            break;
        case EventKind::Writing:
            if (tty_) draw(e, true);
            if (bar_drawn_) std::fprintf(stderr, "\n");
            bar_drawn_ = false;
            std::fprintf(stderr, "loftq: %s\n", e.message.c_str());
            break;
        case EventKind::JobDone:
            if (tty_ && bar_drawn_) draw(e, true);
            break;
    }
}

void ProgressPrinter::finish() {
    if (bar_drawn_) std::fprintf(stderr, "\n");
    bar_drawn_ = false;
}

}  // namespace loftq::cli
