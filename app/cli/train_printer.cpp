// train_printer.cpp: see train_printer.h (moved out of finetune.cpp unchanged).
#include "cli/train_printer.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "cli/common.h"

namespace loftq::cli {

TrainPrinter::TrainPrinter(bool quiet) : tty_(::isatty(2)), quiet_(quiet) {}

void TrainPrinter::operator()(const TrainEvent& e) {
    if (quiet_ && e.kind != TrainEventKind::Message) return;
    switch (e.kind) {
        case TrainEventKind::Started:
        case TrainEventKind::Message:
            line("loftq: " + e.text);
            break;
        case TrainEventKind::Step: {
            char buf[256];
            std::snprintf(buf, sizeof buf, "[%*d/%d] loss %.4f  lr %.2e  |g| %.3f  %.0f tok/s  ETA %s",
                          int(std::to_string(e.steps).size()), e.step, e.steps, e.train_loss, e.lr, e.grad_norm,
                          e.tokens_per_s, human_seconds(e.eta).c_str());
            if (tty_) {
                auto now = std::chrono::steady_clock::now();
                if (e.step != e.steps && now - last_draw_ < std::chrono::milliseconds(100)) break;
                last_draw_ = now;
                std::fprintf(stderr, "\r\033[K%3d%% %s", int(e.fraction * 100 + 0.5), buf);
                std::fflush(stderr);
                bar_ = true;
            } else {
                int every = std::max(1, e.steps / 100);
                if (e.step % every == 0 || e.step == e.steps || e.step == 1) std::fprintf(stderr, "%s\n", buf);
            }
            break;
        }
        case TrainEventKind::Eval: {
            char buf[160];
            std::snprintf(buf, sizeof buf, "eval @ step %d: loss %.4f  perplexity %.3f", e.step, e.eval_loss, e.eval_ppl);
            line(buf);
            break;
        }
        case TrainEventKind::Checkpoint:
            if (!tty_) line("checkpoint @ step " + std::to_string(e.step) + " -> " + e.text);
            break;
        case TrainEventKind::Sample:
            line("sample: " + e.text);
            break;
        case TrainEventKind::Done:
            finish();
            break;
    }
}

void TrainPrinter::finish() {
    if (bar_) std::fprintf(stderr, "\n");
    bar_ = false;
}

void TrainPrinter::line(const std::string& s) {
    if (bar_) std::fprintf(stderr, "\r\033[K");
    std::fprintf(stderr, "%s\n", s.c_str());
    bar_ = false;
}

}  // namespace loftq::cli
