// events_json.cpp: see events_json.h.
#include "dist/events_json.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/name_table.h"

namespace loftq {

namespace {

using json = nlohmann::ordered_json;

constexpr auto kJobEventNames = name_table<EventKind>(
    "quantize event", {{EventKind::JobStarted, "job_started"}, {EventKind::WeightStarted, "weight_started"},
                       {EventKind::StepDone, "step"}, {EventKind::WeightDone, "weight_done"}, {EventKind::Message, "message"},
                       {EventKind::Writing, "writing"}, {EventKind::JobDone, "job_done"}});
constexpr auto kTrainEventNames = name_table<TrainEventKind>(
    "fine-tune event", {{TrainEventKind::Started, "train_started"}, {TrainEventKind::Step, "train_step"},
                        {TrainEventKind::Eval, "eval"}, {TrainEventKind::Sample, "sample"},
                        {TrainEventKind::Checkpoint, "checkpoint"}, {TrainEventKind::Message, "train_message"},
                        {TrainEventKind::Done, "train_done"}});

json num(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }
double get(const nlohmann::json& j, const char* k, double fallback = 0) {
    auto it = j.find(k);
    if (it == j.end() || it->is_null()) return it == j.end() ? fallback : std::numeric_limits<double>::quiet_NaN();
    return it->is_number() ? it->get<double>() : fallback;
}
int geti(const nlohmann::json& j, const char* k, int fallback = 0) {
    auto it = j.find(k);
    return it != j.end() && it->is_number() ? it->get<int>() : fallback;
}
std::string gets(const nlohmann::json& j, const char* k) {
    auto it = j.find(k);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

json event_json(const JobEvent& e) {
    json j;
    j["event"] = kJobEventNames.name(e.kind);
    if (e.weight >= 0) j["weight"] = e.weight;
    if (!e.name.empty()) j["name"] = e.name;
    if (e.kind == EventKind::StepDone || e.kind == EventKind::WeightStarted || e.kind == EventKind::WeightDone) {
        j["step"] = e.step;
        j["steps"] = e.steps;
    }
    if (e.kind == EventKind::StepDone || e.kind == EventKind::WeightDone) {
        j["error"] = num(e.error);
        j["baseline"] = num(e.baseline);
        if (e.out_error >= 0) j["out_error"] = num(e.out_error);
        if (e.out_baseline >= 0) j["out_baseline"] = num(e.out_baseline);
        j["seconds"] = num(e.seconds);
    }
    j["weights_done"] = e.weights_done;
    j["weights_total"] = e.weights_total;
    j["fraction"] = num(e.fraction);
    j["elapsed"] = num(e.elapsed);
    j["eta"] = num(e.eta);
    if (!e.message.empty()) j["message"] = e.message;
    return j;
}

json event_json(const TrainEvent& e) {
    json j;
    j["event"] = kTrainEventNames.name(e.kind);
    j["step"] = e.step;
    j["steps"] = e.steps;
    for (auto [k, v] : {std::pair<const char*, double>{"train_loss", e.train_loss}, {"eval_loss", e.eval_loss},
                        {"eval_ppl", e.eval_ppl}, {"lr", e.lr}, {"grad_norm", e.grad_norm}, {"tokens_per_s", e.tokens_per_s},
                        {"elapsed", e.elapsed}, {"eta", e.eta}, {"fraction", e.fraction}})
        j[k] = num(v);
    if (e.sync_seconds > 0) j["sync_seconds"] = num(e.sync_seconds);
    if (!e.text.empty()) j["text"] = e.text;
    return j;
}

json exit_json(int code, const std::string& error) {
    json j;
    j["event"] = "exit";
    j["code"] = code;
    j["error"] = error;
    return j;
}

ParsedEvent parse_event_line(const std::string& line) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& ex) {
        throw Error("an event line is not JSON (" + std::string(ex.what()) + "): " + line.substr(0, 200));
    }
    if (!j.is_object() || !j.contains("event") || !j["event"].is_string())
        throw Error("an event line has no \"event\" name: " + line.substr(0, 200));
    const std::string kind = j["event"].get<std::string>();
    ParsedEvent p;
    if (kind == "exit") {
        p.exit_code = geti(j, "code", 1);
        p.exit_error = gets(j, "error");
    } else if (auto k = kJobEventNames.find(kind)) {
        JobEvent e;
        e.kind = *k;
        e.weight = geti(j, "weight", -1);
        e.name = gets(j, "name");
        e.step = geti(j, "step");
        e.steps = geti(j, "steps");
        e.error = get(j, "error");
        e.baseline = get(j, "baseline");
        e.out_error = get(j, "out_error", -1);
        e.out_baseline = get(j, "out_baseline", -1);
        e.seconds = get(j, "seconds");
        e.weights_done = geti(j, "weights_done");
        e.weights_total = geti(j, "weights_total");
        e.fraction = get(j, "fraction");
        e.elapsed = get(j, "elapsed");
        e.eta = get(j, "eta", -1);
        e.message = gets(j, "message");
        p.job = e;
    } else if (auto t = kTrainEventNames.find(kind)) {
        TrainEvent e;
        e.kind = *t;
        e.step = geti(j, "step");
        e.steps = geti(j, "steps");
        e.train_loss = get(j, "train_loss");
        e.eval_loss = get(j, "eval_loss");
        e.eval_ppl = get(j, "eval_ppl");
        e.lr = get(j, "lr");
        e.grad_norm = get(j, "grad_norm");
        e.tokens_per_s = get(j, "tokens_per_s");
        e.elapsed = get(j, "elapsed");
        e.eta = get(j, "eta", -1);
        e.fraction = get(j, "fraction");
        e.sync_seconds = get(j, "sync_seconds");
        e.text = gets(j, "text");
        p.train = e;
    }
    return p;
}

EventWriter::EventWriter(const std::string& path) : path_(path) {
    if (path == "-") {
        f_ = stdout;
    } else {
        f_ = std::fopen(path.c_str(), "w");
        if (!f_) throw Error(path, "", std::string("cannot write the events file: ") + std::strerror(errno));
        own_ = true;
    }
}

EventWriter::~EventWriter() {
    if (own_ && f_) std::fclose(f_);
}

void EventWriter::write(const nlohmann::ordered_json& j) {
    const std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    std::lock_guard<std::mutex> lock(mu_);
    std::fwrite(line.data(), 1, line.size(), f_);
    std::fflush(f_);
}

}  // namespace loftq
