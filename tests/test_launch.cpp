// test_launch.cpp: "Run on" (dist/launcher.h, cli/launch.cpp): templates, their placeholders and
// ssh prefixes, shell quoting (checked by sh itself); a real `loftq quantize` run through a local
// prefix template (`env ...`), through `mpirun -np 2`, and over ssh to an sshd this test starts on
// 127.0.0.1 with keys it makes (never any other host): streamed events equal the run's
// events.jsonl, exports fetched byte-identical to a local run, a lost connection reported and
// re-attached, stop() cancelling cleanly (exit 130, no output there); and the CLI's --run-on and
// `loftq attach`. The ssh cases skip without /usr/sbin/sshd or root; the mpirun case without mpirun.
#include <QtTest>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "dist/comm_mpi.h"
#include "dist/launcher.h"
#include "test_support.h"

namespace fs = std::filesystem;
using loftq::RemoteRun;
using loftq::RunTarget;
using loftq::StreamEnd;

namespace {

QString cli() { return QString::fromLocal8Bit(qgetenv("LOFTQ_CLI")); }
std::string cli_s() { return cli().toStdString(); }
struct Run { int code; QString out, err; };
Run run(const QStringList& args, int timeout_ms = 120000) {
    QProcess p;
    p.start(cli(), args);
    if (!p.waitForFinished(timeout_ms)) { p.kill(); p.waitForFinished(); return {-1, "", "timeout"}; }
    return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2, QString::fromUtf8(p.readAllStandardOutput()),
            QString::fromUtf8(p.readAllStandardError())};
}
std::string tmp(const char* tag) { return loftq::test::make_temp_dir(tag); }
// Every file of an export (relative path -> bytes) but those that record when and where it was
// made (the metrics' seconds, the adapter's base path and creation time).
std::map<std::string, std::string> files_of(const std::string& dir) {
    std::map<std::string, std::string> m;
    for (auto& e : fs::recursive_directory_iterator(dir)) {
        const std::string rel = e.path().lexically_relative(dir).string();
        if (!e.is_regular_file() || rel.rfind("loftq_metrics.", 0) == 0 || rel == "loftq_init/adapter_config.json") continue;
        m[rel] = loftq::test::read_file(e.path().string());
    }
    return m;
}
// The kind of a parsed line: the "event" field, read back through what parse_event_line filled.
std::string kind_of(const loftq::ParsedEvent& e) {
    if (e.exit_code) return "exit";
    if (e.job) return "job" + std::to_string(int(e.job->kind));
    if (e.train) return "train" + std::to_string(int(e.train->kind));
    return "?";
}
std::vector<std::string> kinds_in_file(const std::string& path) {
    std::vector<std::string> kinds;
    std::ifstream f(path);
    for (std::string line; std::getline(f, line);) kinds.push_back(kind_of(loftq::parse_event_line(line)));
    return kinds;
}
// The quantize arguments every run here uses: a relative --out, so that it lands in the run folder.
std::vector<std::string> quantize_args(const std::string& model, int iters = 2) {
    return {"quantize", model, "--out", "export", "--quant", "nf2", "--rank", "4", "--iters", std::to_string(iters),
            "--threads", "1"};
}
// Streams a run to its end, collecting the kinds of the events; `each` runs on every event first.
struct Followed {
    StreamEnd end;
    std::vector<std::string> kinds;
};
Followed follow(RemoteRun& r, const std::function<void(const loftq::ParsedEvent&)>& each = {}) {
    Followed f;
    loftq::CancelToken cancel;
    f.end = r.stream([&](const loftq::ParsedEvent& e) {
        f.kinds.push_back(kind_of(e));
        if (each) each(e);
    }, cancel);
    return f;
}
QString why(const Followed& f) { return QString::fromStdString(f.end.error); }

int free_port() {
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(s);
    return ntohs(a.sin_port);
}
bool port_open(int port) {
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(uint16_t(port));
    const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(s);
    return ok;
}

}  // namespace

class TestLaunch : public QObject {
    Q_OBJECT
    std::string dir, model, slow_model, local_export;
    // The test's own sshd on 127.0.0.1 (started by the first ssh case).
    QProcess sshd;
    std::string ssh_templ, ssh_skip;

    // "" when sshd runs (ssh_templ set), else why the ssh cases skip.
    std::string start_sshd() {
        if (!ssh_templ.empty() || !ssh_skip.empty()) return ssh_skip;
        if (!fs::exists("/usr/sbin/sshd")) return ssh_skip = "no /usr/sbin/sshd (Debian's openssh-server)";
        if (::geteuid() != 0) return ssh_skip = "not root (the test's sshd logs in as root on 127.0.0.1)";
        const std::string d = tmp("launch-sshd");
        for (const char* key : {"host_key", "user_key"}) {
            QProcess kg;
            kg.start("ssh-keygen", {"-q", "-t", "ed25519", "-N", "", "-C", "loftq-test", "-f", QString::fromStdString(d + "/" + key)});
            if (!kg.waitForFinished(30000) || kg.exitCode() != 0) return ssh_skip = "ssh-keygen failed";
        }
        fs::copy_file(d + "/user_key.pub", d + "/authorized_keys");
        fs::create_directories("/run/sshd");   // sshd's privilege separation folder
        const int port = free_port();
        loftq::test::write_file(d + "/sshd_config",
                                "ListenAddress 127.0.0.1\nPort " + std::to_string(port) + "\nHostKey " + d +
                                    "/host_key\nAuthorizedKeysFile " + d +
                                    "/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                                    "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile " + d +
                                    "/sshd.pid\n");
        sshd.setStandardErrorFile(QString::fromStdString(d + "/sshd.log"));
        sshd.start("/usr/sbin/sshd", {"-D", "-e", "-f", QString::fromStdString(d + "/sshd_config")});
        if (!sshd.waitForStarted(10000)) return ssh_skip = "sshd did not start";
        for (int i = 0; i < 100 && !port_open(port); ++i) QThread::msleep(50);
        if (!port_open(port))
            return ssh_skip = "sshd does not listen on 127.0.0.1:" + std::to_string(port) + ": " + loftq::test::read_file(d + "/sshd.log");
        // 127.0.0.1 only, with the test's key, never any other host.
        ssh_templ = "ssh -F /dev/null -p " + std::to_string(port) + " -i " + d +
                    "/user_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR "
                    "root@127.0.0.1";
        return "";
    }
    // delay: the job waits that long on the target before it starts (a launcher prefix made of a
    // quoted shell word), so that the stream is connected (ssh logins here take a second or two)
    // before its first event.
    RunTarget ssh_target(const std::string& remote_dir, int delay = 0) {
        RunTarget t;
        t.templ = ssh_templ;
        // The BLAS settings of this process (OpenBLAS picks its kernels by them, and LAPACK's bits
        // follow), which an ssh login does not inherit: with them the target computes what a local run does.
        std::string env = " env";
        for (const QString& kv : QProcessEnvironment::systemEnvironment().toStringList())
            if (kv.startsWith("OPENBLAS_") || kv.startsWith("LOFTQ_LINALG")) env += " " + loftq::shell_quote(kv.toStdString());
        t.templ += env;
        if (delay > 0) t.templ += " sh -c 'sleep " + std::to_string(delay) + "; exec \"$@\"' delayed";
        t.remote_dir = remote_dir;
        t.loftq = cli_s();
        return t;
    }

private slots:
    void initTestCase() {
        if (cli().isEmpty() || !QFile::exists(cli())) QFAIL("LOFTQ_CLI does not point at the loftq binary");
        dir = tmp("launch");
        model = dir + "/demo";
        Run r = run({"make-demo", QString::fromStdString(model), "--layers", "2", "--hidden", "64", "--intermediate", "160",
                     "--heads", "4", "--kv-heads", "2", "--vocab", "96"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        // A model whose quantize at --iters 100 lasts seconds: long enough to stop it or cut its stream mid-run.
        slow_model = dir + "/slow";
        r = run({"make-demo", QString::fromStdString(slow_model), "--layers", "4", "--hidden", "512", "--intermediate", "1376",
                 "--heads", "4", "--kv-heads", "2", "--vocab", "96"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        // The same quantize run here, plainly: what every launched run must reproduce byte for byte.
        local_export = dir + "/local-export";
        QStringList args;
        for (const auto& a : quantize_args(model)) args << QString::fromStdString(a);
        args[3] = QString::fromStdString(local_export);
        r = run(args);
        QVERIFY2(r.code == 0, qPrintable(r.err));
    }
    void cleanupTestCase() {
        if (sshd.state() != QProcess::NotRunning) {
            sshd.terminate();
            sshd.waitForFinished(5000);
        }
    }

    void templatesSplitAndExpand() {
        RunTarget t;
        t.templ = "mpirun --hostfile 'my hosts' -np {n} -x \"A=b c\" --map-by ppr:{n}:node";
        t.ranks = 4;
        auto c = loftq::parse_template(t);
        QVERIFY(!c.over_ssh());
        QCOMPARE(c.launcher, (std::vector<std::string>{"mpirun", "--hostfile", "my hosts", "-np", "4", "-x", "A=b c", "--map-by",
                                                       "ppr:4:node"}));
        QCOMPARE(loftq::expand_template(t), std::string("mpirun --hostfile 'my hosts' -np 4 -x \"A=b c\" --map-by ppr:4:node"));
        t.templ = "srun -N {nodes} -n {n}";
        t.nodes = 2;
        QCOMPARE(loftq::parse_template(t).launcher, (std::vector<std::string>{"srun", "-N", "2", "-n", "4"}));
        // ssh: options with an argument (separate or attached), flags, then the host, then the remote launcher.
        t.templ = "ssh -p 2222 -i /k/id -o BatchMode=yes -vC -l me -p2223 gpu-box mpirun -np {n}";
        c = loftq::parse_template(t);
        QCOMPARE(c.remote, (std::vector<std::string>{"ssh", "-p", "2222", "-i", "/k/id", "-o", "BatchMode=yes", "-vC", "-l", "me",
                                                     "-p2223", "gpu-box"}));
        QCOMPARE(c.launcher, (std::vector<std::string>{"mpirun", "-np", "4"}));
        t.templ = "/usr/bin/ssh host";
        c = loftq::parse_template(t);
        QCOMPARE(c.remote, (std::vector<std::string>{"/usr/bin/ssh", "host"}));
        QVERIFY(c.launcher.empty());
        t.templ = "";
        c = loftq::parse_template(t);
        QVERIFY(!c.over_ssh() && c.launcher.empty());
        QCOMPARE(loftq::split_template_words("a\\ b \"c\\\"d\\\\e\\x\" 'f\\g' h"),
                 (std::vector<std::string>{"a b", "c\"d\\e\\x", "f\\g", "h"}));
    }

    void badTemplatesAreRefused() {
        auto refused = [](const std::string& templ, int ranks, const char* needle) {
            RunTarget t;
            t.templ = templ;
            t.ranks = ranks;
            try {
                loftq::parse_template(t);
            } catch (const loftq::Error& e) {
                const std::string msg = e.what();
                if (msg.find(needle) == std::string::npos || msg.find("run-on template") == std::string::npos)
                    qWarning("message: %s", msg.c_str());
                return msg.find(needle) != std::string::npos;
            }
            return false;
        };
        QVERIFY(refused("mpirun -np {ranks}", 1, "unknown placeholder {ranks}"));
        QVERIFY(refused("mpirun -np {n", 1, "'{' without '}'"));
        QVERIFY(refused("mpirun -np n}", 1, "'}' without '{'"));
        QVERIFY(refused("mpirun 'oops", 1, "unbalanced single quote"));
        QVERIFY(refused("mpirun \"oops", 1, "unbalanced double quote"));
        QVERIFY(refused("mpirun -np {n}", 0, "ranks must be at least 1"));
        QVERIFY(refused("ssh -p 22", 1, "needs a host"));
        QVERIFY(refused("ssh -p", 1, "needs an argument"));
        QVERIFY(refused("ssh -N host", 1, "ssh -N"));
        QVERIFY(refused("mpirun -np 2; rm -rf /", 1, "';' is not allowed unquoted"));
        QVERIFY(refused("ssh host $(whoami)", 1, "'$' is not allowed unquoted"));
        QVERIFY(refused("env A=1 | cat", 1, "'|' is not allowed unquoted"));
        RunTarget t;
        t.templ = "mpirun";
        t.nodes = 0;
        QVERIFY_THROWS_EXCEPTION(loftq::Error, loftq::parse_template(t));
    }

    // shell_quote's words come back out of sh unchanged, whatever they hold.
    void shellQuotingSurvivesSh() {
        const std::vector<std::string> words = {"", "plain", "two words", "it's", "'", "''", "a\"b", "$HOME", "`id`", "$(id)",
                                                "back\\slash\\", "new\nline", "*", "; rm -rf /", "-n", "tab\there", "!x", "~"};
        QCOMPARE(loftq::shell_quote("it's"), std::string("'it'\\''s'"));
        QCOMPARE(loftq::shell_quote(""), std::string("''"));
        QProcess sh;
        sh.start("sh", {"-c", QString::fromStdString("printf '%s\\0' " + loftq::shell_join(words))});
        QVERIFY(sh.waitForFinished(10000));
        const QByteArray out = sh.readAllStandardOutput();
        std::vector<std::string> back;
        for (const QByteArray& w : out.split('\0')) back.push_back(w.toStdString());
        back.pop_back();  // after the last NUL
        QCOMPARE(back, words);
        // Quoted twice (sh -c 'sh -c ...', as over ssh): still the same words.
        sh.start("sh", {"-c", QString::fromStdString("sh -c " + loftq::shell_quote("printf '%s\\0' " + loftq::shell_join(words)))});
        QVERIFY(sh.waitForFinished(10000));
        back.clear();
        for (const QByteArray& w : sh.readAllStandardOutput().split('\0')) back.push_back(w.toStdString());
        back.pop_back();
        QCOMPARE(back, words);
    }

    // A local prefix template: the job runs detached in the run folder, its events stream as written.
    void localPrefixRunStreamsAndExports() {
        const std::string run_dir = dir + "/runs/local";
        RunTarget t;
        t.templ = "env LOFTQ_TEST=1";
        t.loftq = cli_s();
        RemoteRun r = RemoteRun::start(t, quantize_args(model), run_dir);
        QVERIFY(!r.over_ssh());
        QVERIFY(r.record().pid > 0);
        QCOMPARE(r.record().remote_dir, fs::absolute(run_dir).lexically_normal().string());
        QCOMPARE(r.record().command.front(), std::string("env"));
        QCOMPARE(r.record().command.back(), std::string("events.jsonl"));
        const Followed f = follow(r);
        QVERIFY2(f.end.kind == StreamEnd::Finished, qPrintable(why(f)));
        QCOMPARE(f.end.code, 0);
        QCOMPARE(f.kinds, kinds_in_file(run_dir + "/events.jsonl"));
        QVERIFY(f.kinds.size() > 5);
        QCOMPARE(f.kinds.front(), std::string("job0"));   // job_started
        QCOMPARE(f.kinds.back(), std::string("exit"));
        QCOMPARE(files_of(run_dir + "/export"), files_of(local_export));
        QCOMPARE(loftq::test::read_file(run_dir + "/exit_code"), std::string("0\n"));
        r.fetch();  // nothing to copy here
        // launch.json says how it ended; attach reads it back.
        RemoteRun again = RemoteRun::attach(run_dir);
        QCOMPARE(again.record().state, loftq::RunState::Finished);
        QCOMPARE(*again.record().exit_code, 0);
        QVERIFY(again.record().fetched);
        QCOMPARE(again.record().args, quantize_args(model));
        // A finished run streams again from the start (a re-attached view redraws), and ends.
        const Followed g = follow(again);
        QVERIFY(g.end.kind == StreamEnd::Finished);
        QCOMPARE(g.kinds, f.kinds);
        // The run folder is not reused.
        QVERIFY_THROWS_EXCEPTION(loftq::Error, RemoteRun::start(t, quantize_args(model), run_dir));
    }

    // A lost stream on this machine (its tail killed) is Lost; attach follows the run to its end.
    void localLostStreamReattaches() {
        const std::string run_dir = dir + "/runs/local-lost";
        RunTarget t;
        t.templ = "env";
        t.loftq = cli_s();
        RemoteRun r = RemoteRun::start(t, quantize_args(slow_model, 4), run_dir);
        const Followed f = follow(r, [&](const loftq::ParsedEvent&) {
            if (r.stream_pid() > 0) ::kill(pid_t(r.stream_pid()), SIGKILL);
        });
        QVERIFY(f.end.kind == StreamEnd::Lost);
        QCOMPARE(RemoteRun::attach(run_dir).record().state, loftq::RunState::Detached);
        RemoteRun a = RemoteRun::attach(run_dir);
        const Followed g = follow(a);
        QVERIFY2(g.end.kind == StreamEnd::Finished, qPrintable(why(g)));
        QCOMPARE(g.end.code, 0);
        QCOMPARE(g.kinds, kinds_in_file(run_dir + "/events.jsonl"));
        QVERIFY(fs::exists(run_dir + "/export/model.safetensors"));
    }

    // A job that cannot start still ends its stream: the wrapper writes the exit line loftq did not.
    void missingProgramEndsWithAnExitLine() {
        const std::string run_dir = dir + "/runs/missing";
        RunTarget t;
        t.templ = "env";
        t.loftq = dir + "/no such loftq";
        RemoteRun r = RemoteRun::start(t, quantize_args(model), run_dir);
        const Followed f = follow(r);
        QVERIFY(f.end.kind == StreamEnd::Finished);
        QCOMPARE(f.end.code, 127);
        QVERIFY2(f.end.error.find("output.log") != std::string::npos, qPrintable(why(f)));
        QVERIFY(loftq::test::read_file(run_dir + "/output.log").find("no such loftq") != std::string::npos);
    }

    void mpirunTwoRanks() {
        if (QStandardPaths::findExecutable("mpirun").isEmpty()) QSKIP("no mpirun on PATH (Debian's openmpi-bin)");
        if (!loftq::mpi_built()) QSKIP("this build has no MPI (configured with LOFTQ_MPI=OFF, as the sanitizer job is, or without libopenmpi-dev)");
        const std::string run_dir = dir + "/runs/mpi";
        RunTarget t;
        t.templ = std::string("mpirun --oversubscribe ") + (::geteuid() == 0 ? "--allow-run-as-root " : "") + "-np {n}";
        t.ranks = 2;
        t.loftq = cli_s();
        RemoteRun r = RemoteRun::start(t, quantize_args(model), run_dir);
        QCOMPARE(r.record().command[4], std::string("2"));  // mpirun --oversubscribe --allow-run-as-root -np 2
        const Followed f = follow(r);
        QVERIFY2(f.end.kind == StreamEnd::Finished && f.end.code == 0,
                 qPrintable(why(f) + "\n" + QString::fromStdString(loftq::test::read_file(run_dir + "/output.log"))));
        QCOMPARE(f.kinds, kinds_in_file(run_dir + "/events.jsonl"));
        QCOMPARE(files_of(run_dir + "/export"), files_of(local_export));
        // The stream ends once mpirun has (rank 0 writes the exit line before the ranks are done).
        QCOMPARE(loftq::test::read_file(run_dir + "/exit_code"), std::string("0\n"));
    }

    void sshRunStreamsAndFetches() {
        if (const std::string skip = start_sshd(); !skip.empty()) QSKIP(skip.c_str());
        const std::string run_dir = dir + "/runs/ssh", remote = dir + "/remote/ssh";
        RemoteRun r = RemoteRun::start(ssh_target(remote), quantize_args(model), run_dir);
        QVERIFY(r.over_ssh());
        QCOMPARE(r.record().remote.back(), std::string("root@127.0.0.1"));
        QCOMPARE(r.record().remote_dir, remote);
        const Followed f = follow(r);
        QVERIFY2(f.end.kind == StreamEnd::Finished && f.end.code == 0,
                 qPrintable(why(f) + "\n" + QString::fromStdString(loftq::test::read_file(remote + "/output.log"))));
        // The copy here is the target's file, line for line, and the events are its lines.
        QCOMPARE(loftq::test::read_file(run_dir + "/events.jsonl"), loftq::test::read_file(remote + "/events.jsonl"));
        QCOMPARE(f.kinds, kinds_in_file(remote + "/events.jsonl"));
        QVERIFY(!fs::exists(run_dir + "/export"));
        r.fetch();
        QCOMPARE(files_of(run_dir + "/export"), files_of(local_export));
        QVERIFY(fs::exists(run_dir + "/output.log"));
        QVERIFY(RemoteRun::attach(run_dir).record().fetched);
        // The target's run folder is not reused either.
        QVERIFY_THROWS_EXCEPTION(loftq::Error, RemoteRun::start(ssh_target(remote), quantize_args(model), dir + "/runs/ssh-again"));
        QVERIFY(!fs::exists(dir + "/runs/ssh-again"));
    }

    // Files that exist only here (a plan the workbench wrote) go with the run into the target's
    // run folder, and the arguments name them relatively: over ssh and on this machine.
    void sentFilesReachTheTarget() {
        const std::string src = dir + "/to-send";
        fs::create_directories(src);
        // The plan the flags give anyway: the export must equal the local one.
        loftq::test::write_file(src + "/my plan.loftq.json",
                                "{\"version\": 1, \"defaults\": {\"quant\": \"nf2\", \"rank\": 4, \"iters\": 2}}\n");
        std::vector<std::string> args = quantize_args(model);
        args.insert(args.begin() + 2, {"--plan", "my plan.loftq.json"});
        RunTarget local;
        local.templ = "env LOFTQ_TEST=1";
        local.loftq = cli_s();
        std::vector<std::pair<RunTarget, std::string>> cases{{local, dir + "/runs/send-local"}};
        const std::string skip = start_sshd();
        if (skip.empty()) cases.push_back({ssh_target(dir + "/remote/send"), dir + "/runs/send-ssh"});
        for (const auto& [t, run_dir] : cases) {
            RemoteRun r = RemoteRun::start(t, args, run_dir, {src + "/my plan.loftq.json"});
            const Followed f = follow(r);
            QVERIFY2(f.end.kind == StreamEnd::Finished && f.end.code == 0, qPrintable(why(f)));
            r.fetch();
            QCOMPARE(loftq::test::read_file(run_dir + "/my plan.loftq.json"), loftq::test::read_file(src + "/my plan.loftq.json"));
            QCOMPARE(files_of(run_dir + "/export"), files_of(local_export));
        }
        // A file that is not there, or one named like the run folder's own files, is refused before anything starts.
        QVERIFY_THROWS_EXCEPTION(loftq::Error, RemoteRun::start(local, args, dir + "/runs/send-missing", {src + "/nope.json"}));
        QVERIFY(!fs::exists(dir + "/runs/send-missing"));
        loftq::test::write_file(src + "/launch.json", "{}");
        QVERIFY_THROWS_EXCEPTION(loftq::Error, RemoteRun::start(local, args, dir + "/runs/send-clash", {src + "/launch.json"}));
        if (!skip.empty()) QSKIP(("sent over ssh not checked: " + skip).c_str());
    }

    void sshLostConnectionReattaches() {
        if (const std::string skip = start_sshd(); !skip.empty()) QSKIP(skip.c_str());
        const std::string run_dir = dir + "/runs/ssh-lost", remote = dir + "/remote/ssh-lost";
        RemoteRun r = RemoteRun::start(ssh_target(remote, 2), quantize_args(slow_model, 50), run_dir);
        int seen = 0;
        const Followed f = follow(r, [&](const loftq::ParsedEvent&) {
            if (++seen == 1 && r.stream_pid() > 0) ::kill(pid_t(r.stream_pid()), SIGKILL);  // the connection drops
        });
        QVERIFY2(f.end.kind == StreamEnd::Lost, qPrintable(why(f)));
        QVERIFY(!f.end.error.empty());
        QCOMPARE(RemoteRun::attach(run_dir).record().state, loftq::RunState::Detached);
        RemoteRun a = RemoteRun::attach(run_dir);
        const Followed g = follow(a);
        QVERIFY2(g.end.kind == StreamEnd::Finished && g.end.code == 0, qPrintable(why(g)));
        QCOMPARE(loftq::test::read_file(run_dir + "/events.jsonl"), loftq::test::read_file(remote + "/events.jsonl"));
        QCOMPARE(g.kinds, kinds_in_file(remote + "/events.jsonl"));
        a.fetch();
        QCOMPARE(files_of(run_dir + "/export"), files_of(remote + "/export"));
        QCOMPARE(RemoteRun::attach(run_dir).record().state, loftq::RunState::Finished);
    }

    void sshStopCancelsCleanly() {
        if (const std::string skip = start_sshd(); !skip.empty()) QSKIP(skip.c_str());
        const std::string run_dir = dir + "/runs/ssh-stop", remote = dir + "/remote/ssh-stop";
        RemoteRun r = RemoteRun::start(ssh_target(remote, 2), quantize_args(slow_model, 100), run_dir);
        bool stopped = false;
        const Followed f = follow(r, [&](const loftq::ParsedEvent& e) {
            if (!stopped && e.job) {
                r.stop();
                stopped = true;
            }
        });
        QVERIFY2(f.end.kind == StreamEnd::Finished, qPrintable(why(f)));
        QCOMPARE(f.end.code, 130);
        QCOMPARE(f.end.error, std::string("cancelled"));
        QVERIFY(!fs::exists(remote + "/export"));
        for (auto& e : fs::directory_iterator(remote))  // no staging folder left beside it either
            QVERIFY2(e.path().filename().string().find("export") == std::string::npos, e.path().c_str());
        QVERIFY(RemoteRun::attach(run_dir).record().stop_requested);
        // The stream ends at the exit line, which loftq writes before it exits; the wrapper writes
        // exit_code after. fetch() waits for it (an ASan build's exit takes a while: leak check).
        r.fetch();
        QCOMPARE(loftq::test::read_file(remote + "/exit_code"), std::string("130\n"));
        QCOMPARE(loftq::test::read_file(run_dir + "/exit_code"), std::string("130\n"));
        QVERIFY(!fs::exists(run_dir + "/export"));
        QVERIFY(fs::exists(run_dir + "/output.log"));
    }

    // The CLI: --run-on runs, streams into the usual progress lines and exits with the run's code;
    // `loftq attach` follows a run folder again; bad options are one-line errors.
    void cliRunOnAndAttach() {
        const QString run_dir = QString::fromStdString(dir + "/runs/cli");
        QStringList args;
        for (const auto& a : quantize_args(model)) args << QString::fromStdString(a);
        Run r = run(args + QStringList{"--run-on", "env LOFTQ_TEST=1", "--run-dir", run_dir});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY2(r.err.contains("started on this machine"), qPrintable(r.err));
        QVERIFY2(r.err.contains("weights"), qPrintable(r.err));   // the quantize progress lines
        QVERIFY2(r.out.contains("finished"), qPrintable(r.out));
        QCOMPARE(files_of(run_dir.toStdString() + "/export"), files_of(local_export));
        r = run({"attach", run_dir});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY2(r.err.contains("attached to the run on this machine (finished"), qPrintable(r.err));
        // The remote exit code comes back: a usage error in the job.
        r = run({"quantize", QString::fromStdString(model), "--out", "x", "--quant", "nf9", "--run-on", "env", "--run-dir",
                 run_dir + "-bad"});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains("nf9"), qPrintable(r.err));
        r = run({"quantize", QString::fromStdString(model), "--out", "x", "--run-on", "ssh -p 22"});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains("needs a host"), qPrintable(r.err));
        r = run({"quantize", QString::fromStdString(model), "--out", "x", "--ranks", "2"});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains("go with --run-on"), qPrintable(r.err));
        r = run({"attach", QString::fromStdString(dir + "/nowhere")});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains("launch.json"), qPrintable(r.err));
    }

    // Over ssh through the CLI: a lost connection exits 75 with the attach hint; attach finishes it.
    void cliSshLostThenAttach() {
        if (const std::string skip = start_sshd(); !skip.empty()) QSKIP(skip.c_str());
        const QString run_dir = QString::fromStdString(dir + "/runs/cli-ssh");
        QStringList args;
        for (const auto& a : quantize_args(slow_model, 4)) args << QString::fromStdString(a);
        QProcess p;
        p.start(cli(), args + QStringList{"--run-on", QString::fromStdString(ssh_templ), "--run-dir", run_dir, "--remote-dir",
                                          QString::fromStdString(dir + "/remote/cli-ssh"), "--remote-loftq", cli()});
        QVERIFY(p.waitForStarted());
        // Cut the connection once the stream runs: kill the CLI's ssh child that runs tail.
        bool cut = false;
        for (int i = 0; i < 400 && !cut; ++i) {
            QThread::msleep(25);
            QProcess ps;
            ps.start("pgrep", {"-P", QString::number(p.processId()), "-f", "tail --pid"});
            ps.waitForFinished();
            const QString pid = QString::fromUtf8(ps.readAllStandardOutput()).trimmed().split('\n').value(0);
            if (!pid.isEmpty()) cut = ::kill(pid.toInt(), SIGKILL) == 0;
        }
        QVERIFY(cut);
        QVERIFY(p.waitForFinished(60000));
        const QString err = QString::fromUtf8(p.readAllStandardError());
        QCOMPARE(p.exitCode(), loftq::kExitConnectionLost);
        QVERIFY2(err.contains("lost the connection to root@127.0.0.1") && err.contains("loftq attach " + run_dir), qPrintable(err));
        Run r = run({"attach", run_dir});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY(fs::exists(run_dir.toStdString() + "/export/model.safetensors"));
    }
};

QTEST_GUILESS_MAIN(TestLaunch)
#include "test_launch.moc"
