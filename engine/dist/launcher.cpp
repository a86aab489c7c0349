// launcher.cpp: RemoteRun (see launcher.h): the scripts run on the target through its remote
// prefix (or `sh -c` here), launch.json, following events.jsonl, stop and fetch.
#include "dist/launcher.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "core/fsutil.h"
#include "dist/launch_process.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace loftq {

namespace {

constexpr const char* kRecordFile = "launch.json";
constexpr const char* kEventsFile = "events.jsonl";

std::string utc_now() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

json record_json(const LaunchRecord& r) {
    json j;
    j["launcher"] = 1;  // this file's version
    j["target"] = {{"template", r.target.templ}, {"ranks", r.target.ranks}, {"nodes", r.target.nodes},
                   {"remote_dir", r.target.remote_dir}, {"loftq", r.target.loftq}};
    j["args"] = r.args;
    j["command"] = r.command;
    j["remote"] = r.remote;
    j["remote_dir"] = r.remote_dir;
    j["pid"] = r.pid;
    j["started"] = r.started;
    j["state"] = run_state_name(r.state);
    j["stop_requested"] = r.stop_requested;
    j["exit_code"] = r.exit_code ? json(*r.exit_code) : json(nullptr);
    j["error"] = r.error;
    j["fetched"] = r.fetched;
    return j;
}

LaunchRecord record_from_json(const json& j) {
    LaunchRecord r;
    const json& t = j.at("target");
    r.target.templ = t.at("template").get<std::string>();
    r.target.ranks = t.at("ranks").get<int>();
    r.target.nodes = t.at("nodes").get<int>();
    r.target.remote_dir = t.at("remote_dir").get<std::string>();
    r.target.loftq = t.at("loftq").get<std::string>();
    r.args = j.at("args").get<std::vector<std::string>>();
    r.command = j.at("command").get<std::vector<std::string>>();
    r.remote = j.at("remote").get<std::vector<std::string>>();
    r.remote_dir = j.at("remote_dir").get<std::string>();
    r.pid = j.at("pid").get<long>();
    r.started = j.at("started").get<std::string>();
    const std::string state = j.at("state").get<std::string>();
    if (state == "running") r.state = RunState::Running;
    else if (state == "detached") r.state = RunState::Detached;
    else if (state == "finished") r.state = RunState::Finished;
    else throw std::runtime_error("unknown state '" + state + "'");
    r.stop_requested = j.value("stop_requested", false);
    if (j.contains("exit_code") && !j["exit_code"].is_null()) r.exit_code = j["exit_code"].get<int>();
    r.error = j.value("error", "");
    r.fetched = j.value("fetched", false);
    return r;
}

// The host part of a remote prefix, for messages ("user@gpu-box"); "this machine" when none.
std::string place_of(const LaunchRecord& r) { return r.remote.empty() ? std::string("this machine") : r.remote.back(); }

// A path as one sh word that cannot be read as an option.
std::string dir_word(const std::string& dir) {
    return shell_quote(!dir.empty() && dir[0] == '-' ? "./" + dir : dir);
}

// The lines of a file; the last one only when it ends in '\n' (a line still being written is not yet one).
std::vector<std::string> complete_lines(const std::string& path) {
    std::vector<std::string> lines;
    std::ifstream f(path, std::ios::binary);
    if (!f) return lines;
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    size_t start = 0;
    for (size_t nl; (nl = all.find('\n', start)) != std::string::npos; start = nl + 1) lines.push_back(all.substr(start, nl - start));
    return lines;
}

}  // namespace

struct RemoteRun::Impl {
    std::string run_dir;
    LaunchRecord rec;
    std::atomic<long> stream_pid{0};
    size_t lines_seen = 0;   // this machine: lines of the job's events.jsonl read by the last stream()

    std::string record_path() const { return (fs::path(run_dir) / kRecordFile).string(); }
    std::string events_path() const { return (fs::path(run_dir) / kEventsFile).string(); }
    bool over_ssh() const { return !rec.remote.empty(); }
    void save() const { write_file_atomic(record_path(), record_json(rec).dump(2) + "\n"); }

    // argv that runs `script` with sh on the target: remote prefix + one word, or sh -c here.
    std::vector<std::string> on_target(const std::string& script, bool keepalive = false) const {
        if (!over_ssh()) return {"sh", "-c", script};
        std::vector<std::string> argv = rec.remote;
        if (keepalive) {  // a silent connection is noticed within a minute (the user's own -o wins: ssh takes the first)
            const std::vector<std::string> opts = {"-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"};
            argv.insert(argv.end() - 1, opts.begin(), opts.end());
        }
        // ssh joins its words for the remote login shell: give it one, `sh -c 'script'`, whatever that shell is.
        argv.push_back("sh -c " + shell_quote(script));
        return argv;
    }
};

RemoteRun::RemoteRun(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RemoteRun::RemoteRun(RemoteRun&&) noexcept = default;
RemoteRun& RemoteRun::operator=(RemoteRun&&) noexcept = default;
RemoteRun::~RemoteRun() = default;

const LaunchRecord& RemoteRun::record() const { return impl_->rec; }
const std::string& RemoteRun::run_dir() const { return impl_->run_dir; }
bool RemoteRun::over_ssh() const { return impl_->over_ssh(); }
std::string RemoteRun::where() const { return place_of(impl_->rec); }
long RemoteRun::stream_pid() const { return impl_->stream_pid.load(); }

RemoteRun RemoteRun::start(const RunTarget& target, const std::vector<std::string>& loftq_args, const std::string& run_dir,
                           const std::vector<std::string>& send) {
    if (run_dir.empty()) throw Error("run-on: no run folder given");
    if (loftq_args.empty() || (loftq_args[0] != "quantize" && loftq_args[0] != "finetune"))
        throw Error(run_dir, "", "run-on: only `quantize` and `finetune` run through a launcher (got '" +
                                     (loftq_args.empty() ? std::string() : loftq_args[0]) + "')");
    for (const auto& a : loftq_args)
        if (a == "--events" || a.rfind("--events=", 0) == 0)
            throw Error(run_dir, "", "run-on: leave out --events (the launcher sets it to the run folder's events.jsonl)");
    if (target.loftq.empty()) throw Error(run_dir, "", "run-on: the loftq program on the target is empty");
    const LaunchCommand lc = parse_template(target);
    std::vector<std::string> send_names;
    for (const auto& f : send) {
        std::error_code fe;
        if (!fs::is_regular_file(f, fe)) throw Error(f, "", "run-on: a file to send with the run is not a readable file");
        const std::string name = fs::path(f).filename().string();
        if (name == "launch.json" || name == kEventsFile || name == "output.log" || name == "exit_code" || name == "loftq.pid" ||
            std::find(send_names.begin(), send_names.end(), name) != send_names.end())
            throw Error(f, "", "run-on: a file to send with the run has a name the run folder already uses: " + name);
        send_names.push_back(name);
    }

    std::error_code ec;
    if (fs::exists(run_dir, ec) && !(fs::is_directory(run_dir, ec) && fs::is_empty(run_dir, ec)))
        throw Error(run_dir, "", "run folder exists and is not empty (pick a new one, or `loftq attach` it)");
    fs::create_directories(run_dir, ec);
    if (ec) throw Error(run_dir, "", "cannot create the run folder: " + ec.message());

    auto impl = std::make_unique<Impl>();
    impl->run_dir = run_dir;
    LaunchRecord& r = impl->rec;
    r.target = target;
    r.args = loftq_args;
    r.remote = lc.remote;
    r.command = lc.launcher;
    r.command.push_back(target.loftq);
    r.command.insert(r.command.end(), loftq_args.begin(), loftq_args.end());
    r.command.push_back("--events");
    r.command.push_back(kEventsFile);
    r.started = utc_now();
    if (lc.over_ssh()) {
        r.remote_dir = target.remote_dir.empty() ? "loftq-runs/" + fs::absolute(run_dir).lexically_normal().filename().string()
                                                 : target.remote_dir;
        if (fs::path(r.remote_dir).filename().empty())  // "RUN/" gives an empty file name
            r.remote_dir = "loftq-runs/" + fs::absolute(run_dir).lexically_normal().parent_path().filename().string();
    } else {
        r.remote_dir = fs::absolute(run_dir).lexically_normal().string();
    }
    impl->save();

    // The job, in its own session (setsid: no terminal, no SIGHUP when the connection drops; nohup
    // for good measure). `trap : INT` keeps this wrapper alive through stop()'s SIGINT to the group
    // (its children get the default action back) so that it records the exit status and, when the
    // job wrote no exit line (killed, loftq not found), appends one: every stream then ends.
    const std::string wrapper =
        "trap : INT; echo $$ > loftq.pid; " + shell_join(r.command) +
        " > output.log 2>&1 < /dev/null; rc=$?; echo $rc > exit_code.tmp; mv -f exit_code.tmp exit_code; "
        "if ! tail -n 1 events.jsonl 2>/dev/null | grep -q '\"event\":\"exit\"'; then "
        "if [ -n \"$(tail -c 1 events.jsonl 2>/dev/null)\" ]; then echo >> events.jsonl; fi; "
        "printf '{\"event\":\"exit\",\"code\":%d,\"error\":\"loftq ended without an exit line (status %d); see output.log\"}\\n' "
        "$rc $rc >> events.jsonl; fi";
    const std::string dir = dir_word(r.remote_dir);
    std::string script = "set -e; mkdir -p " + dir + "; cd " + dir + "; ";
    if (lc.over_ssh())  // here RUN was checked above (and holds launch.json)
        script += "if [ -n \"$(ls -A)\" ]; then echo \"run folder $(pwd) is not empty\" >&2; exit 3; fi; ";
    std::vector<std::string> tar;  // the files to send, as one tar stream into the script's stdin
    if (!send.empty()) {
        if (lc.over_ssh()) {
            tar = {"tar", "-cf", "-"};
            for (const auto& f : send) {
                const fs::path a = fs::absolute(f).lexically_normal();
                tar.insert(tar.end(), {"-C", a.parent_path().string(), a.filename().string()});
            }
            script += "tar -xf -; ";
        } else {  // the run folder is RUN itself
            for (const auto& f : send) {
                fs::copy_file(f, fs::path(run_dir) / fs::path(f).filename(), fs::copy_options::overwrite_existing, ec);
                if (ec) throw Error(f, "", "run-on: cannot copy into the run folder: " + ec.message());
            }
        }
    }
    script += "setsid -f nohup sh -c " + shell_quote(wrapper) +
              " > /dev/null 2>&1 < /dev/null; i=0; while [ ! -s loftq.pid ]; do i=$((i+1)); "
              "if [ $i -gt 100 ]; then echo 'the job did not start (no loftq.pid after 10 s)' >&2; exit 4; fi; "
              "sleep 0.1; done; pwd; cat loftq.pid";
    launch::Captured c;
    try {
        if (tar.empty()) {
            c = launch::run_capture(impl->on_target(script));
        } else {
            launch::PipelineResult p = launch::run_pipeline(tar, impl->on_target(script));
            if (p.a.code != 0) throw Error("tar of the files to send failed: " + launch::last_line(p.a.err));
            c = p.b;
        }
    } catch (const Error& e) {
        fs::remove_all(run_dir, ec);
        throw Error(run_dir, "", "run-on: " + std::string(e.what()));
    }
    std::vector<std::string> out;
    for (size_t s = 0, nl; (nl = c.out.find('\n', s)) != std::string::npos; s = nl + 1) out.push_back(c.out.substr(s, nl - s));
    if (c.code != 0 || out.size() < 2) {
        fs::remove_all(run_dir, ec);
        std::string why = launch::last_line(c.err);
        if (why.empty()) why = "exit status " + std::to_string(c.code);
        throw Error(run_dir, "", "run-on: could not start the job on " + place_of(r) + ": " + why);
    }
    r.remote_dir = out[out.size() - 2];
    r.pid = std::atol(out.back().c_str());
    impl->save();
    return RemoteRun(std::move(impl));
}

RemoteRun RemoteRun::attach(const std::string& run_dir) {
    auto impl = std::make_unique<Impl>();
    impl->run_dir = run_dir;
    const std::string path = impl->record_path();
    std::ifstream f(path);
    if (!f) throw Error(path, "", "cannot read (not a run folder made by --run-on?)");
    try {
        impl->rec = record_from_json(json::parse(f));
    } catch (const std::exception& e) {
        throw Error(path, "", std::string("malformed launch record: ") + e.what());
    }
    return RemoteRun(std::move(impl));
}

StreamEnd RemoteRun::stream(const std::function<void(const ParsedEvent&)>& on_event, const CancelToken& cancel, bool replay) {
    Impl& m = *impl_;
    LaunchRecord& r = m.rec;
    StreamEnd end;
    // Delivers one line; true when it was the exit line.
    auto deliver = [&](const std::string& line) {
        ParsedEvent ev;
        try {
            ev = parse_event_line(line);
        } catch (const Error&) {
            return false;  // not JSON (a line cut by a crash): skipped
        }
        if (on_event) on_event(ev);
        if (!ev.exit_code) return false;
        end.kind = StreamEnd::Finished;
        end.code = *ev.exit_code;
        end.error = ev.exit_error;
        return true;
    };
    auto is_exit = [](const std::string& line) {
        try {
            return parse_event_line(line).exit_code.has_value();
        } catch (const Error&) {
            return false;
        }
    };
    auto finished = [&]() {
        r.state = RunState::Finished;
        r.exit_code = end.code;
        r.error = end.error;
        m.save();
        return end;
    };

    // Over ssh: the lines copied so far, delivered again with replay; here the job's own file is followed from line 1.
    const std::vector<std::string> copied = m.over_ssh() ? complete_lines(m.events_path()) : std::vector<std::string>{};
    size_t skip = 0;  // lines of the followed file not to deliver
    if (m.over_ssh()) {
        for (const auto& line : copied) {
            if (replay ? deliver(line) : is_exit(line) && deliver(line)) return finished();
        }
    } else if (!replay) {
        skip = m.lines_seen;  // the lines this object delivered before
    }
    if (!m.over_ssh()) m.lines_seen = 0;  // counted again from line 1
    const size_t from = m.over_ssh() ? copied.size() + 1 : 1;  // tail -n +FROM

    std::vector<std::string> argv;
    if (m.over_ssh()) {
        argv = m.on_target("cd " + dir_word(r.remote_dir) + " && exec tail --pid=" + std::to_string(r.pid) +
                               " -s 0.2 -n +" + std::to_string(from) + " -F " + kEventsFile + " 2>/dev/null",
                           true);
    } else {
        argv = {"tail", "--pid=" + std::to_string(r.pid), "-s", "0.2", "-n", "+" + std::to_string(from), "-F", m.events_path()};
    }
    // In a process group of its own: a Ctrl-C at the terminal is for the caller (who may stop() the
    // run and keep streaming), not for the stream.
    launch::Child child = launch::spawn(argv, -1, -1, true);
    m.stream_pid = long(child.pid);
    std::ofstream copy;
    if (m.over_ssh()) {
        copy.open(m.events_path(), std::ios::app | std::ios::binary);
        if (!copy) {
            ::kill(child.pid, SIGTERM);
            launch::wait_child(child.pid);
            throw Error(m.events_path(), "", "cannot append: " + std::string(std::strerror(errno)));
        }
    }
    auto stop_child = [&]() {
        ::kill(child.pid, SIGTERM);
        if (child.out >= 0) ::close(child.out);
        if (child.err >= 0) ::close(child.err);
        child.out = child.err = -1;
        const int code = launch::wait_child(child.pid);
        m.stream_pid = 0;
        return code;
    };

    std::string buf, err;
    char chunk[65536];
    // After the exit line on this machine: up to 10 s for the job's wrapper to end (exit_code
    // written, output.log complete, mpirun's ranks gone: rank 0 writes the exit line before the
    // others are done). Over ssh fetch() waits for exit_code there instead.
    auto wait_wrapper = [&]() {
        if (m.over_ssh() || r.pid <= 0) return;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (::kill(pid_t(r.pid), 0) == 0 && !cancel.cancelled() && std::chrono::steady_clock::now() < deadline)
            ::usleep(20000);
    };
    while (true) {
        if (cancel.cancelled()) {
            stop_child();
            end.kind = StreamEnd::Cancelled;
            return end;
        }
        pollfd p[2];
        nfds_t n = 0;
        if (child.out >= 0) p[n++] = {child.out, POLLIN, 0};
        if (child.err >= 0) p[n++] = {child.err, POLLIN, 0};
        if (n == 0 || child.out < 0) break;  // stdout ended: the stream is over
        if (::poll(p, n, 100) <= 0) continue;
        for (nfds_t i = 0; i < n; ++i) {
            if (!p[i].revents) continue;
            const bool is_out = p[i].fd == child.out;
            const ssize_t got = ::read(p[i].fd, chunk, sizeof chunk);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                ::close(p[i].fd);
                (is_out ? child.out : child.err) = -1;
                continue;
            }
            if (!is_out) {
                err.append(chunk, size_t(got));
                if (err.size() > 65536) err.erase(0, err.size() - 65536);
                continue;
            }
            buf.append(chunk, size_t(got));
            for (size_t nl; (nl = buf.find('\n')) != std::string::npos;) {
                const std::string line = buf.substr(0, nl);
                buf.erase(0, nl + 1);
                if (copy.is_open()) {
                    copy << line << '\n';
                    copy.flush();
                } else {
                    ++m.lines_seen;
                }
                if (skip > 0) {
                    --skip;
                    continue;
                }
                if (deliver(line)) {
                    stop_child();
                    wait_wrapper();
                    return finished();
                }
            }
        }
    }
    // Stdout closed without an exit line: read what stderr still says, then why.
    if (child.err >= 0) {
        ssize_t got;
        while ((got = ::read(child.err, chunk, sizeof chunk)) > 0) err.append(chunk, size_t(got));
    }
    const int code = stop_child();
    if (cancel.cancelled()) {
        end.kind = StreamEnd::Cancelled;
        return end;
    }
    end.kind = StreamEnd::Lost;
    end.error = launch::last_line(err);
    if (end.error.empty()) {
        if (!m.over_ssh() && r.pid > 0 && ::kill(pid_t(r.pid), 0) != 0 && errno == ESRCH)
            end.error = "the run's process on this machine is gone without an exit line (see output.log)";
        else
            end.error = "the event stream from " + place_of(r) + " ended without an exit line (status " + std::to_string(code) + ")";
    }
    r.state = RunState::Detached;
    m.save();
    return end;
}

void RemoteRun::stop() {
    Impl& m = *impl_;
    LaunchRecord& r = m.rec;
    if (r.pid <= 0) throw Error(m.record_path(), "", "stop: the run's process id is not known");
    if (!m.over_ssh()) {
        if (::kill(-pid_t(r.pid), SIGINT) != 0 && errno != ESRCH)
            throw Error(m.run_dir, "", "stop: cannot signal process group " + std::to_string(r.pid) + ": " + std::strerror(errno));
    } else {
        const launch::Captured c =
            launch::run_capture(m.on_target("kill -s INT -- -" + std::to_string(r.pid) + " 2>/dev/null; true"));
        if (c.code != 0)
            throw Error(m.run_dir, "", "stop: could not reach " + place_of(r) + ": " + launch::last_line(c.err));
    }
    r.stop_requested = true;
    m.save();
}

void RemoteRun::follow_to_end(const std::function<void(const ParsedEvent&)>& on_event, const CancelToken& cancel) {
    StreamEnd end = stream(on_event, cancel);
    if (end.kind == StreamEnd::Cancelled) {
        if (stop_and_follow(on_event, 60).kind == StreamEnd::Finished) fetch();  // what stayed (a checkpoint for a resume)
        throw Cancelled();
    }
    const LaunchRecord& r = impl_->rec;
    if (end.kind == StreamEnd::Lost)
        throw Error(impl_->run_dir, "", "lost the connection to the run on " + place_of(r) + " (" + end.error +
                                            "); it goes on there: attach this run folder to follow it again");
    fetch();
    if (end.code != 0)
        throw Error(end.error.empty() ? "the run on " + place_of(r) + " failed (exit code " + std::to_string(end.code) +
                                            "; " + impl_->run_dir + "/output.log has its output)"
                                      : end.error);
}

StreamEnd RemoteRun::stop_and_follow(const std::function<void(const ParsedEvent&)>& on_event, double timeout_s) {
    stop();
    CancelToken give_up, done;
    std::thread timer;
    if (timeout_s > 0)
        timer = std::thread([&] {
            const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
            while (!done.cancelled() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(50));
            give_up.cancel();
        });
    StreamEnd end;
    try {
        end = stream(on_event, give_up, false);
    } catch (...) {
        done.cancel();
        if (timer.joinable()) timer.join();
        throw;
    }
    done.cancel();
    if (timer.joinable()) timer.join();
    return end;
}

void RemoteRun::fetch() {
    Impl& m = *impl_;
    LaunchRecord& r = m.rec;
    if (m.over_ssh()) {
        // A finished run: up to 10 s for its wrapper to record the exit status, then the whole folder.
        const std::string wait = r.state == RunState::Finished
                                     ? "i=0; while [ ! -e exit_code ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; "
                                     : "";
        const auto p = launch::run_pipeline(m.on_target("cd " + dir_word(r.remote_dir) + " && " + wait + "tar -cf - ."),
                                            {"tar", "-C", m.run_dir, "--no-same-owner", "-xf", "-"});
        if (p.a.code != 0)
            throw Error(m.run_dir, "", "fetch from " + place_of(r) + ":" + r.remote_dir + " failed: " +
                                           (launch::last_line(p.a.err).empty() ? "status " + std::to_string(p.a.code)
                                                                               : launch::last_line(p.a.err)));
        if (p.b.code != 0)
            throw Error(m.run_dir, "", "fetch: tar could not unpack into the run folder: " + launch::last_line(p.b.err));
    }
    r.fetched = true;
    m.save();
}

}  // namespace loftq
