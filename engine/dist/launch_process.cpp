// launch_process.cpp: see launch_process.h.
#include "dist/launch_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

extern char** environ;

namespace loftq::launch {

namespace {

void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

// Reads both pipes until both reach EOF (poll, so that neither can fill up and block the child).
void drain(int& out_fd, int& err_fd, std::string& out, std::string& err) {
    char buf[65536];
    while (out_fd >= 0 || err_fd >= 0) {
        pollfd p[2];
        int n = 0;
        if (out_fd >= 0) p[n++] = {out_fd, POLLIN, 0};
        if (err_fd >= 0) p[n++] = {err_fd, POLLIN, 0};
        if (::poll(p, nfds_t(n), -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < n; ++i) {
            if (!p[i].revents) continue;
            const ssize_t r = ::read(p[i].fd, buf, sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            const bool is_out = p[i].fd == out_fd;
            if (r <= 0) {
                close_fd(is_out ? out_fd : err_fd);
                continue;
            }
            (is_out ? out : err).append(buf, size_t(r));
        }
    }
}

}  // namespace

Child spawn(const std::vector<std::string>& argv, int in_fd, int out_fd, bool own_group) {
    if (argv.empty()) throw Error("launcher: empty command");
    int outp[2] = {-1, -1}, errp[2] = {-1, -1};
    if ((out_fd < 0 && ::pipe2(outp, O_CLOEXEC) != 0) || ::pipe2(errp, O_CLOEXEC) != 0)
        throw Error("launcher: pipe: " + std::string(std::strerror(errno)));
    int devnull = -1;
    if (in_fd < 0) devnull = in_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd >= 0 ? out_fd : outp[1], 1);
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);  // whatever this process ignores or handles (SIGINT guards)
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (own_group) {
        posix_spawnattr_setpgroup(&at, 0);
        flags |= POSIX_SPAWN_SETPGROUP;
    }
    posix_spawnattr_setflags(&at, flags);

    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = 0;
    const int rc = ::posix_spawnp(&pid, args[0], &fa, &at, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (devnull >= 0) ::close(devnull);
    close_fd(outp[1]);
    close_fd(errp[1]);
    if (rc != 0) {
        close_fd(outp[0]);
        close_fd(errp[0]);
        throw Error(argv[0] + ": cannot start: " + std::strerror(rc));
    }
    return {pid, outp[0], errp[0]};
}

int wait_child(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

Captured run_capture(const std::vector<std::string>& argv) {
    Child c = spawn(argv);
    Captured r;
    drain(c.out, c.err, r.out, r.err);
    r.code = wait_child(c.pid);
    return r;
}

PipelineResult run_pipeline(const std::vector<std::string>& a, const std::vector<std::string>& b) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw Error("launcher: pipe: " + std::string(std::strerror(errno)));
    Child ca, cb;
    try {
        ca = spawn(a, -1, p[1]);
    } catch (...) {
        ::close(p[0]);
        ::close(p[1]);
        throw;
    }
    ::close(p[1]);
    try {
        cb = spawn(b, p[0], -1);
    } catch (...) {
        ::close(p[0]);
        ::kill(ca.pid, SIGTERM);
        wait_child(ca.pid);
        close_fd(ca.err);
        throw;
    }
    ::close(p[0]);
    PipelineResult r;
    int none = -1;
    drain(none, ca.err, r.a.out, r.a.err);   // a's stdout goes to b
    drain(cb.out, cb.err, r.b.out, r.b.err);
    r.a.code = wait_child(ca.pid);
    r.b.code = wait_child(cb.pid);
    return r;
}

std::string last_line(const std::string& text) {
    size_t end = text.size();
    while (end > 0) {
        while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r' || text[end - 1] == ' ')) --end;
        if (end == 0) break;
        const size_t start = text.rfind('\n', end - 1);
        const size_t s = start == std::string::npos ? 0 : start + 1;
        if (end > s) return text.substr(s, end - s);
        end = s;
    }
    return "";
}

}  // namespace loftq::launch
