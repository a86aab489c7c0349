// launcher.h: "Run on": a `loftq quantize|finetune` run started through a launcher command
// template, on this machine (`mpirun --hostfile H -np {n}`, `srun -N {nodes}`, `env X=1`) or on
// another one over ssh (`ssh gpu-box`, `ssh -p 2222 gpu-box mpirun -np {n}`), followed from here:
// the run's JSON-lines events (dist/events_json.h) stream back into the same printers and charts
// as a local run's, and its files are fetched into the local run folder. docs/RUN-ON.md is the
// user's guide.
//
// The job runs DETACHED on the target (its own session, stdin/stdout/stderr on files), so that a
// dropped connection or a closed app does not end it; the local run folder RUN keeps launch.json
// (what was started where, its state), from which the run can be re-attached at any time.
//
//   RUN/launch.json      the LaunchRecord below (rewritten atomically when the state changes)
//   RUN/events.jsonl     the events copied so far (over ssh; on this machine the job's own file)
//   RUN/...              after fetch(): every file of the run folder on the target (output.log,
//                        exit_code, the export or fine-tune folder the arguments named, ...)
// On the target, in the run folder (cwd of the job, so that a relative --out lands there):
//   events.jsonl (the job's --events), output.log (stdout + stderr), loftq.pid (the process group
//   leader), exit_code (written when the job ends). A job that ended without an exit line (killed,
//   loftq not found) gets one appended by the wrapper, so that every stream ends.
//
// No user text ever reaches a shell unquoted: template words and loftq arguments are passed as
// argv on this machine and through shell_quote() into the one `sh -c` on the target.
// Needs on the target: sh, setsid (util-linux), nohup, GNU tail (--pid), tar, kill; and the same
// loftq with the input files at the paths the arguments name.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/cancel.h"
#include "dist/events_json.h"

namespace loftq {

// Where a run goes. templ "" = this machine without a launcher (callers usually run in-process
// then; RemoteRun::start runs such a job detached on this machine).
struct RunTarget {
    std::string templ;             // launcher template, words split like a shell's (quotes, backslash), no expansion
    int ranks = 1;                 // {n}: processes (>= 1)
    int nodes = 1;                 // {nodes}: machines (>= 1)
    std::string remote_dir;        // ssh: the run folder on the target ("" = ~/loftq-runs/<name of RUN>); else unused
    std::string loftq = "loftq";   // the loftq program on the target (a name found on its PATH, or a path)
};

// A template split and expanded. When its first word is `ssh` (or a path ending in /ssh), the
// words up to and including the host (ssh options taking an argument, -p PORT, -i KEY, -o X=Y,
// ..., consume it) are the remote shell prefix, and the rest, maybe empty, is the launcher prefix
// run on the remote host; otherwise remote is empty and every word is the launcher prefix run here.
struct LaunchCommand {
    std::vector<std::string> remote;     // e.g. {"ssh", "-p", "2222", "user@gpu-box"}; empty: this machine
    std::vector<std::string> launcher;   // e.g. {"mpirun", "-np", "4"}; maybe empty
    bool over_ssh() const { return !remote.empty(); }
};

// Placeholders {n} (ranks) and {nodes} replaced; throws loftq::Error on an unknown placeholder,
// an unbalanced quote or brace, an unquoted shell operator (; | & < > ` $: words are arguments,
// never shell), ranks or nodes < 1, an ssh template without a host, or ssh -N / -f.
LaunchCommand parse_template(const RunTarget& t);
// The template text with its placeholders replaced (for display); validates as parse_template does.
std::string expand_template(const RunTarget& t);
// Splits a template into words as sh would (single and double quotes, backslash escapes), with no
// expansion; throws loftq::Error on an unbalanced quote or an unquoted shell operator.
std::vector<std::string> split_template_words(const std::string& templ);

// One word for sh: 'text' with every ' written as '\'' (safe for spaces, quotes, $, `, \, newlines;
// "" gives ''). shell_join quotes each word and joins them with spaces.
std::string shell_quote(const std::string& word);
std::string shell_join(const std::vector<std::string>& words);

// What launch.json holds.
enum class RunState { Running, Detached, Finished };
const char* run_state_name(RunState s);   // "running", "detached", "finished"

struct LaunchRecord {
    RunTarget target;
    std::vector<std::string> args;        // the loftq arguments as given, subcommand first ("quantize", MODEL, ...)
    std::vector<std::string> command;     // the job's argv on the target: launcher prefix, loftq, args, --events events.jsonl
    std::vector<std::string> remote;      // the remote shell prefix (LaunchCommand::remote); empty on this machine
    std::string remote_dir;               // the run folder on the target, absolute (RUN itself on this machine)
    long pid = 0;                         // the detached job's process-group leader on the target
    std::string started;                  // UTC, "2024-05-01T12:34:56Z"
    RunState state = RunState::Running;
    bool stop_requested = false;          // stop() was called
    std::optional<int> exit_code;         // once Finished: the exit line's code
    std::string error;                    // once Finished: the exit line's error ("" on success)
    bool fetched = false;                 // fetch() copied the target's files into RUN
};

// How a stream() ended.
struct StreamEnd {
    enum Kind {
        Finished,    // the exit line arrived: code and error are the run's
        Lost,        // the stream ended without an exit line (connection lost); the run may go on
                     // there (state "detached" recorded): attach() and stream() again
        Cancelled,   // `cancel` was set: only the following stopped, the run goes on (see stop())
    } kind = Lost;
    int code = -1;           // Finished: the exit code (0 ok, 1 error, 2 usage, 130 Ctrl-C, ...)
    std::string error;       // Finished: the exit line's error; Lost: why, e.g. ssh's last stderr line
};

// A run started through a template, followed from this machine. Movable, not copyable. Every
// failure throws loftq::Error naming the run folder, the host or the file.
class RemoteRun {
public:
    // Creates RUN (refused when it exists and is not empty; its parents are created), writes
    // launch.json, and starts `launcher loftq args... --events events.jsonl` detached on the target
    // with cwd = the target's run folder (refused when it exists and is not empty), stdout and
    // stderr to output.log there. Returns once the job runs (its pid known), not when it ends.
    // `send`: local files copied into the target's run folder (by file name) before the job
    // starts, for inputs that exist only here, e.g. a plan written by the workbench: the arguments
    // name them relatively (the job's cwd is that folder). Over ssh they travel as one tar stream
    // on the same connection that starts the job.
    static RemoteRun start(const RunTarget& target, const std::vector<std::string>& loftq_args, const std::string& run_dir,
                           const std::vector<std::string>& send = {});
    // Reads RUN/launch.json (throws naming it when absent or malformed).
    static RemoteRun attach(const std::string& run_dir);

    RemoteRun(RemoteRun&&) noexcept;
    RemoteRun& operator=(RemoteRun&&) noexcept;
    ~RemoteRun();

    // Follows the target's events.jsonl until the exit line, a lost connection or `cancel`. With
    // replay, first delivers the lines already copied into RUN/events.jsonl (all of them, so that a
    // re-attached view redraws from the start), then the new ones, appending each to RUN/events.jsonl
    // (over ssh) before on_event sees it. on_event runs on the calling thread; a line that is not
    // JSON is skipped. Records the state in launch.json (finished + code, or detached). Polls
    // `cancel` at least every 100 ms.
    StreamEnd stream(const std::function<void(const ParsedEvent&)>& on_event, const CancelToken& cancel,
                     bool replay = true);
    // Asks the run to cancel cleanly: SIGINT to its process group on the target (loftq cancels and
    // leaves nothing half-written, and writes its exit line: keep streaming to see it). Safe to
    // call from another thread while stream() runs; a run already ended is not an error.
    void stop();
    // stop(), then follows the run (no replay) until its exit line shows it ended, or `timeout_s`
    // passes (<= 0: no limit): what a Stop button or Ctrl-C does. A run that does not answer in
    // time is left going (Cancelled is returned; attach() finds it again).
    StreamEnd stop_and_follow(const std::function<void(const ParsedEvent&)>& on_event, double timeout_s);
    // What a caller that reports by exceptions does with a run (the workbench's jobs): stream();
    // when `cancel` is set, stop_and_follow (a minute at most), fetch what stayed and throw
    // loftq::Cancelled; a lost connection throws loftq::Error with the way back (attach RUN); a
    // finished run is fetched, and an exit code other than 0 throws loftq::Error with its error.
    void follow_to_end(const std::function<void(const ParsedEvent&)>& on_event, const CancelToken& cancel);
    // Copies every file of the target's run folder into RUN (ssh: `tar -cf -` there, `tar -xf -`
    // here); nothing to do on this machine. Call it after Finished (or any time for a snapshot).
    void fetch();

    const LaunchRecord& record() const;   // as of the last change made through this object
    const std::string& run_dir() const;   // RUN as given
    std::string where() const;            // "this machine", or the ssh host word (e.g. "me@gpu-box")
    bool over_ssh() const;
    // The stream's helper process on this machine (ssh ... tail, or tail), 0 when none: a test
    // kills it to simulate a lost connection.
    long stream_pid() const;

private:
    struct Impl;
    explicit RemoteRun(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Exit code of `loftq` when the connection to a run was lost (the run goes on; `loftq attach RUN`).
constexpr int kExitConnectionLost = 75;   // EX_TEMPFAIL

}  // namespace loftq
