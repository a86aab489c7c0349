// metrics_log.cpp: see metrics_log.h.
#include "train/metrics_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "core/fsutil.h"

namespace fs = std::filesystem;

namespace loftq {

void MetricsLog::start(bool resume, int keep_step) {
    truncate_ = !resume;
    if (!resume) return;
    std::error_code ec;
    if (!fs::is_regular_file(path_, ec)) return;
    std::istringstream in(read_text_file(path_));
    std::string line, kept;
    while (std::getline(in, line)) {
        if (in.eof()) break;  // no '\n' after it: an interrupted write
        try {
            auto j = nlohmann::json::parse(line);
            if (j.value("step", 0) <= keep_step) kept += line + "\n";
        } catch (const nlohmann::json::exception&) {
        }
    }
    write_file_atomic(path_, kept);
}

void MetricsLog::append(const nlohmann::ordered_json& j) {
    const std::string line = j.dump() + "\n";
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (truncate_ ? O_TRUNC : O_APPEND);
    int fd = ::open(path_.c_str(), flags, 0644);
    if (fd < 0) throw Error(path_, "", std::string("cannot open for append: ") + std::strerror(errno));
    const char* p = line.data();
    size_t left = line.size();
    while (left > 0) {
        ssize_t w = ::write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            std::string e = std::strerror(errno);
            ::close(fd);
            throw Error(path_, "", "write failed: " + e);
        }
        p += w;
        left -= size_t(w);
    }
    ::fdatasync(fd);
    ::close(fd);
    if (truncate_) fsync_dir(fs::path(path_).parent_path().string());
    truncate_ = false;
}

}  // namespace loftq
