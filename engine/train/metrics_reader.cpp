// metrics_reader.cpp: read_metrics (trainer.h), the reader beside the trainer's metrics.jsonl
// writer: the GUI overlays finished or running runs from their folders with it.
#include <cmath>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fsutil.h"
#include "train/trainer.h"

namespace loftq {

std::vector<MetricsRecord> read_metrics(const std::string& run_dir_or_file) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const std::string path = fs::is_directory(run_dir_or_file, ec) ? (fs::path(run_dir_or_file) / "metrics.jsonl").string() : run_dir_or_file;
    const std::string text = read_text_file(path);
    std::vector<MetricsRecord> out;
    size_t pos = 0;
    int line_no = 0;
    while (pos < text.size()) {
        const size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) break;  // unterminated: being written
        const std::string line = text.substr(pos, nl - pos);
        pos = nl + 1;
        ++line_no;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception& e) {
            throw Error(path, "", "line " + std::to_string(line_no) + ": " + e.what());
        }
        auto num = [&](const char* k) {
            auto it = j.find(k);
            return it != j.end() && it->is_number() ? it->get<double>() : std::nan("");
        };
        MetricsRecord r;
        r.kind = j.value("kind", std::string());
        r.step = j.value("step", 0);
        r.train_loss = num("train_loss");
        r.eval_loss = num("eval_loss");
        r.lr = num("lr");
        r.tokens_per_s = num("tokens_per_s");
        out.push_back(r);
    }
    return out;
}

}  // namespace loftq
