// run_outputs.cpp: see run_outputs.h.
#include "train/run_outputs.h"

#include <filesystem>
#include <system_error>

#include "core/error.h"
#include "train/metrics_log.h"

namespace fs = std::filesystem;

namespace loftq {

RunOutputs::RunOutputs(std::string out, int checkpoint_step) : out_(std::move(out)), checkpoint_step_(checkpoint_step) {}

void RunOutputs::create_folder() {
    std::error_code ec;
    created_ = !fs::exists(out_, ec);
    checkpoint_dir_existed_ = fs::exists(fs::path(out_) / "checkpoint", ec);
    fs::create_directories(out_, ec);
    if (ec) throw Error(out_, "", "cannot create the output folder: " + ec.message());
}

std::string RunOutputs::stopped(int step) noexcept {
    if (finished_) return {};
    try {
        std::error_code ec;
        std::string removed;
        auto remove = [&](const std::string& path, const char* what) {
            if (path.empty()) return;
            if (fs::remove_all(path, ec) > 0 && !ec) removed += removed.empty() ? what : std::string(", ") + what;
        };
        // The adapter and sample this run wrote would pass for a finished run's.
        remove(adapter_, "the adapter");
        remove(sample_, "the sample");
        const std::string at = "stopped at step " + std::to_string(step) + ": ";
        if (checkpoint_step_ >= 0) {
            if (!metrics_.empty() && fs::exists(metrics_, ec)) {
                try {
                    MetricsLog(metrics_).start(true, checkpoint_step_);   // atomic rewrite: the lines up to the checkpoint
                } catch (const std::exception&) {
                }
            }
            return at + "kept " + (fs::path(out_) / "checkpoint").string() + " (step " + std::to_string(checkpoint_step_) +
                   ") and metrics.jsonl up to that step; resume from it to continue" +
                   (removed.empty() ? std::string() : "; removed " + removed + " (resuming writes them again)");
        }
        remove(metrics_, "metrics.jsonl");
        // A checkpoint folder a failed first save left empty, then the folder itself when this run
        // made it and nothing else is in it (remove() refuses a non-empty folder).
        if (!checkpoint_dir_existed_) fs::remove(fs::path(out_) / "checkpoint", ec);
        if (created_ && fs::remove(out_, ec) && !ec)
            return at + "no checkpoint had been written; removed the output folder " + out_;
        return at + "no checkpoint had been written; " +
               (removed.empty() ? std::string("nothing of the run was left in ") + out_ : "removed " + removed + " from " + out_);
    } catch (...) {
        return {};
    }
}

}  // namespace loftq
