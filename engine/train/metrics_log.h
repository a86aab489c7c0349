// metrics_log.h: the writer of OUT/metrics.jsonl, one JSON object a line (read back by
// read_metrics, metrics_reader.cpp). Each line is appended with one write() on an O_APPEND
// descriptor and fdatasync'ed (no rewrite per step, so long runs stay cheap); a resumed run first
// rewrites the file atomically without the lines after its checkpoint's step, and a reader drops
// a trailing line without '\n' (a crash mid-write).
#pragma once
#include <cmath>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

namespace loftq {

class MetricsLog {
public:
    explicit MetricsLog(std::string path) : path_(std::move(path)) {}
    // Fresh run: the first append truncates. Resume: keep the lines with step <= keep_step.
    void start(bool resume, int keep_step);
    void append(const nlohmann::ordered_json& j);   // throws loftq::Error naming the file
    const std::string& path() const { return path_; }

private:
    std::string path_;
    bool truncate_ = true;
};

// x, or null when it is not finite (JSON has no NaN or infinity).
inline nlohmann::ordered_json json_number(double x) {
    return std::isfinite(x) ? nlohmann::ordered_json(x) : nlohmann::ordered_json();
}

}  // namespace loftq
