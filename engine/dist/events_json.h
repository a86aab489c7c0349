// events_json.h: a job's events as JSON lines, the machine-readable stream `loftq quantize|
// finetune --events FILE` writes (FILE "-" = stdout) and the launcher (dist/launcher.h) reads back
// from a run on another machine, so that a remote run feeds the same charts as a local one.
// One object per line, flushed per line; field "event" names the kind:
//   quantize: job_started, weight_started, step, weight_done, message, writing, job_done
//             (fields as loftq/job.h's JobEvent: weight, name, step, steps, error, baseline,
//             out_error, out_baseline, seconds, weights_done, weights_total, fraction, elapsed,
//             eta, message);
//   finetune: train_started, train_step, eval, sample, checkpoint, train_message, train_done
//             (fields as train/trainer.h's TrainEvent: step, steps, train_loss, eval_loss,
//             eval_ppl, lr, grad_norm, tokens_per_s, elapsed, eta, fraction, text; sync_seconds
//             on a data-parallel run's steps);
//   both:     exit {"code": N, "error": "..."}: the last line of every run, also a failed one.
// Non-finite numbers are written as null and read back as NaN. docs/DISTRIBUTED.md has examples.
#pragma once
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "loftq/job.h"
#include "train/trainer.h"

namespace loftq {

nlohmann::ordered_json event_json(const JobEvent& e);
nlohmann::ordered_json event_json(const TrainEvent& e);
nlohmann::ordered_json exit_json(int code, const std::string& error);

// What one line holds: a quantize event, a fine-tune event, the exit, or nothing we know (an
// unknown "event" is skipped: a newer loftq may add kinds). Throws loftq::Error on a line that is
// not a JSON object.
struct ParsedEvent {
    std::optional<JobEvent> job;
    std::optional<TrainEvent> train;
    std::optional<int> exit_code;
    std::string exit_error;
};
ParsedEvent parse_event_line(const std::string& line);

// Writes events to a file (or stdout for "-") one line at a time, flushed; thread-safe.
class EventWriter {
public:
    explicit EventWriter(const std::string& path);  // throws loftq::Error naming the file
    ~EventWriter();
    EventWriter(const EventWriter&) = delete;
    EventWriter& operator=(const EventWriter&) = delete;
    void write(const nlohmann::ordered_json& j);

private:
    std::mutex mu_;
    std::FILE* f_ = nullptr;
    bool own_ = false;
    std::string path_;
};

}  // namespace loftq
