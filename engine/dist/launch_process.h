// launch_process.h: child processes for the launcher (dist/launcher.h), by argv and never through
// a local shell: spawn with pipes, wait, run to completion capturing output, and a two-process
// pipeline (fetch: ssh ... tar -cf - | tar -xf -). Internal to engine/dist.
#pragma once
#include <sys/types.h>

#include <string>
#include <vector>

namespace loftq::launch {

// A started child: its pid and the read ends of its stdout / stderr pipes (-1 when not piped).
struct Child {
    pid_t pid = 0;
    int out = -1, err = -1;
};

// Starts argv[0] (searched on PATH) with stdin from in_fd (-1: /dev/null), stdout to out_fd (-1: a
// new pipe, returned in Child::out) and stderr to a new pipe; the child gets default signal
// dispositions and an empty mask; own_group puts it in a process group of its own (a terminal's
// Ctrl-C, meant for us, then does not reach it). Throws loftq::Error naming the program when it
// cannot start.
Child spawn(const std::vector<std::string>& argv, int in_fd = -1, int out_fd = -1, bool own_group = false);
// Waits for a child: its exit code, or 128 + the signal that ended it.
int wait_child(pid_t pid);

struct Captured {
    int code = 0;          // exit code, or 128 + signal
    std::string out, err;
};
// Runs argv to its end, reading its stdout and stderr.
Captured run_capture(const std::vector<std::string>& argv);
// Runs `a | b` (a's stdout into b's stdin) to their ends; each side's exit code and stderr.
struct PipelineResult {
    Captured a, b;
};
PipelineResult run_pipeline(const std::vector<std::string>& a, const std::vector<std::string>& b);

// The last non-empty line of a program's stderr (for one-line messages), "" when none.
std::string last_line(const std::string& text);

}  // namespace loftq::launch
