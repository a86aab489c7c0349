// test_support.cpp: see test_support.h.
#include "test_support.h"

#include <QtGlobal>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "core/rng.h"

namespace fs = std::filesystem;

namespace loftq::test {

std::string shared_dir() {
    // LOFTQ_SHARED_DIR (CTest sets it from the CMake cache variable of that name), else the
    // folder beside the source tree (the build's LOFTQ_DEFAULT_SHARED_DIR), never the working
    // directory. Missing: "" (the caller skips, saying why), unless it is required: configured
    // explicitly (-DLOFTQ_SHARED_DIR) or LOFTQ_REQUIRE_SHARED=1; then the test run stops, so that
    // real-data checks cannot skip unseen.
    const char* env = std::getenv("LOFTQ_SHARED_DIR");
    std::string d = env && *env ? env : std::string(LOFTQ_DEFAULT_SHARED_DIR);
    std::error_code ec;
    if (fs::is_directory(d, ec) && fs::is_directory(fs::path(d) / "models", ec)) return fs::absolute(d).string();
    const char* req = std::getenv("LOFTQ_REQUIRE_SHARED");
    if (LOFTQ_SHARED_REQUIRED || (req && std::string(req) == "1")) {
        std::fprintf(stderr, "FATAL: the shared folder '%s' (models, data) is missing, but it is required (%s)\n", d.c_str(),
                     LOFTQ_SHARED_REQUIRED ? "configured with -DLOFTQ_SHARED_DIR" : "LOFTQ_REQUIRE_SHARED=1");
        std::abort();
    }
    std::fprintf(stderr, "note: the shared folder '%s' is absent: the tests on real models and data skip\n", d.c_str());
    return "";
}

std::string source_dir() { return LOFTQ_SOURCE_DIR; }
std::string shipped_stories260k() { return std::string(LOFTQ_SOURCE_DIR) + "/resources/models/stories260K/stories260K.bin"; }

namespace {
std::vector<std::string>& temp_dirs() {
    static std::vector<std::string> dirs;
    static bool registered = false;
    if (!registered) {
        registered = true;
        std::atexit([] {
            std::error_code ec;
            for (auto& d : temp_dirs()) fs::remove_all(d, ec);
        });
    }
    return dirs;
}
}  // namespace

std::string make_temp_dir(const std::string& tag) {
    static std::mutex mu;
    std::lock_guard<std::mutex> lock(mu);
    std::string tmpl = (fs::temp_directory_path() / ("loftq-" + tag + "-XXXXXX")).string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    char* p = mkdtemp(buf.data());
    if (!p) return "";
    temp_dirs().push_back(p);
    return p;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<uint8_t> file_bytes(const std::string& path) {
    const std::string s = read_file(path);
    return {s.begin(), s.end()};
}

void flip_bits(const std::string& path, int64_t offset, uint8_t mask) {
    std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
    if (!io) qFatal("flip_bits: cannot open %s", path.c_str());
    const auto where = offset < 0 ? std::ios::end : std::ios::beg;
    io.seekg(offset, where);
    char c = 0;
    io.read(&c, 1);
    c = char(uint8_t(c) ^ mask);
    io.seekp(offset, where);
    io.write(&c, 1);
    if (!io) qFatal("flip_bits: cannot rewrite a byte of %s", path.c_str());
}

void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}

std::vector<float> gaussian(size_t n, uint64_t seed, double sigma) {
    Rng rng(seed);
    std::vector<float> v(n);
    for (auto& x : v) x = float(sigma * rng.normal());
    return v;
}

Matrix structured_matrix(int64_t m, int64_t n, uint64_t seed, double decay, double noise) {
    Matrix w(m, n);
    Rng rng(seed);
    int64_t k = std::min<int64_t>(std::min(m, n), 48);
    std::vector<double> u(static_cast<size_t>(m)), v(static_cast<size_t>(n));
    std::vector<double> acc(size_t(m * n), 0.0);
    for (int64_t c = 0; c < k; ++c) {
        double s = std::pow(decay, double(c)) * std::sqrt(double(m + n)) * 0.05;
        for (auto& x : u) x = rng.normal() / std::sqrt(double(m));
        for (auto& x : v) x = rng.normal() / std::sqrt(double(n));
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) acc[size_t(i * n + j)] += s * u[size_t(i)] * v[size_t(j)];
    }
    for (size_t i = 0; i < acc.size(); ++i) {
        double x = acc[i] + noise * rng.normal();
        if (rng.uniform() < 0.002) x *= 8.0;  // a few outliers, as in trained LLM weights
        w.buf[i] = float(x);
    }
    return w;
}

double frob(const float* a, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += double(a[i]) * double(a[i]);
    return std::sqrt(s);
}

double rel_err(const float* a, const float* b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; ++i) {
        double d = double(a[i]) - double(b[i]);
        num += d * d;
        den += double(a[i]) * double(a[i]);
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace loftq::test
