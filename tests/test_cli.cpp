// test_cli.cpp: the `loftq` binary end to end (QProcess): make-demo -> inspect (text, --json)
// -> plan init -> quantize --plan, the non-TTY progress lines, exit codes and one-line errors
// naming the file for bad input (truncated safetensors, bad config.json, bad plan, output =
// input), and Ctrl-C (SIGINT) cancelling cleanly with exit code 130 and no output in place.
#include <QRegularExpression>
#include <QtTest>

#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "core/fsutil.h"
#include "core/units.h"
#include "test_support.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
QString cli() { return QString::fromLocal8Bit(qgetenv("LOFTQ_CLI")); }
struct Run { int code; QString out, err; };
Run run(const QStringList& args, int timeout_ms = 120000) {
    QProcess p;
    p.start(cli(), args);
    if (!p.waitForFinished(timeout_ms)) { p.kill(); p.waitForFinished(); return {-1, "", "timeout"}; }
    return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2, QString::fromUtf8(p.readAllStandardOutput()),
            QString::fromUtf8(p.readAllStandardError())};
}
QString tmp(const char* tag) { return QString::fromStdString(loftq::test::make_temp_dir(tag)); }
// The CLI with one more environment variable (LOFTQ_TEST_CRASH_AT: core/fsutil.h).
Run run_env(const QStringList& args, const QString& name, const QString& value, int timeout_ms = 120000) {
    QProcess p;
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.insert(name, value);
    p.setProcessEnvironment(env);
    p.start(cli(), args);
    if (!p.waitForFinished(timeout_ms)) { p.kill(); p.waitForFinished(); return {-1, "", "timeout"}; }
    return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2, QString::fromUtf8(p.readAllStandardOutput()),
            QString::fromUtf8(p.readAllStandardError())};
}
// Flips every bit of the byte in the middle of a file.
void flip_middle_byte(const QString& path) {
    std::string bytes = loftq::test::read_file(path.toStdString());
    bytes[bytes.size() / 2] = char(~bytes[bytes.size() / 2]);
    loftq::test::write_file(path.toStdString(), bytes);
}
// Every file under dir (relative path -> bytes) and every folder ("<rel>/" -> "").
std::map<std::string, std::string> snapshot(const QString& dir) {
    std::map<std::string, std::string> m;
    const fs::path root = dir.toStdString();
    for (auto& e : fs::recursive_directory_iterator(root)) {
        const std::string rel = e.path().lexically_relative(root).string();
        if (e.is_directory()) m[rel + "/"] = "";
        else m[rel] = loftq::test::read_file(e.path().string());
    }
    return m;
}
// Entries beside `out` named like its staging or old folders (.<name>.loftq-*).
QStringList staging_siblings(const QString& out) {
    const QFileInfo fi(out);
    return QDir(fi.absolutePath()).entryList({"." + fi.fileName() + ".loftq-*"}, QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot);
}
// A tiny demo checkpoint (2 layers, hidden 64, vocab 512, with its tokenizer and stories) in dir.
Run makeTinyDemo(const QString& dir) {
    return run({"make-demo", dir, "--layers", "2", "--hidden", "64", "--intermediate", "160", "--heads", "4", "--kv-heads", "2",
                "--vocab", "512"});
}
}  // namespace

class TestCli : public QObject {
    Q_OBJECT
    QString model;
private slots:
    void initTestCase() {
        if (cli().isEmpty() || !QFile::exists(cli())) QFAIL("LOFTQ_CLI does not point at the loftq binary");
        model = tmp("cli") + "/demo";
        Run r = run({"make-demo", model, "--layers", "2", "--hidden", "64", "--intermediate", "160", "--heads", "4",
                     "--kv-heads", "2", "--vocab", "96"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
    }

    // The paper in miniature end to end on a tiny demo (with its tokenizer and stories): six runs,
    // a table with one row each, appended to the report; a second call into the same --out is
    // refused up front.
    void experimentWritesItsTable() {
        const QString dir = tmp("cli-exp");
        const QString m = dir + "/demo";
        Run r = makeTinyDemo(m);
        QVERIFY2(r.code == 0, qPrintable(r.err));
        const QString report = dir + "/EXPERIMENTS.md";
        const QStringList args = {"experiment", m, "--data", m + "/demo-stories.txt", "--out", dir + "/runs", "--steps", "2",
                                  "--batch", "2", "--seq", "32", "--rank", "4", "--iters", "1", "--eval-batches", "1",
                                  "--threads", "2", "--report", report};
        r = run(args, 300000);
        QVERIFY2(r.code == 0, qPrintable(r.err));
        const QString md = QString::fromStdString(loftq::read_text_file(report.toStdString()));
        // rows: precision | bytes | bits/param | init | ...
        for (const char* row : {"2-bit \\| [^|]+ \\| [0-9.]+ \\| QLoRA", "2-bit \\| [^|]+ \\| [0-9.]+ \\| LoftQ",
                                "mixed 2/4-bit \\| [^|]+ \\| [0-9.]+ \\| QLoRA", "mixed 2/4-bit \\| [^|]+ \\| [0-9.]+ \\| LoftQ",
                                "4-bit \\| [^|]+ \\| [0-9.]+ \\| QLoRA", "4-bit \\| [^|]+ \\| [0-9.]+ \\| LoftQ"})
            QVERIFY2(md.contains(QRegularExpression(QString("^\\| ") + row + " \\|", QRegularExpression::MultilineOption)), row);
        QVERIFY(md.contains("Command: `loftq experiment"));
        r = run(args, 60000);
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains("not empty"), qPrintable(r.err));
    }

    void experimentComparesPlanFiles() {
        // --plan (repeatable): the rows are the plans, named by file, with their bytes as
        // plan_size counts them; LoftQ only unless --with-qlora.
        const QString dir = tmp("cli-exp-plans");
        const QString m = dir + "/demo";
        Run r = makeTinyDemo(m);
        QVERIFY2(r.code == 0, qPrintable(r.err));
        for (const char* q : {"nf2", "nf4"}) {
            r = run({"plan", "init", m, "-o", dir + "/" + q + ".loftq.json", "--quant", q, "--rank", "4", "--iters", "1"});
            QVERIFY2(r.code == 0, qPrintable(r.err));
        }
        const QString report = dir + "/EXPERIMENTS.md";
        r = run({"experiment", m, "--data", m + "/demo-stories.txt", "--out", dir + "/runs", "--steps", "2", "--batch", "2",
                 "--seq", "32", "--eval-batches", "1", "--threads", "2", "--report", report, "--plan", dir + "/nf2.loftq.json",
                 "--plan", dir + "/nf4.loftq.json", "--with-qlora"}, 300000);
        QVERIFY2(r.code == 0, qPrintable(r.err));
        const QString md = QString::fromStdString(loftq::read_text_file(report.toStdString()));
        for (const char* q : {"nf2", "nf4"}) {
            Run ins = run({"inspect", m, "--plan", dir + "/" + q + ".loftq.json", "--json"});
            const auto j = nlohmann::json::parse(ins.out.toStdString());
            const QString bytes = QString::fromStdString(loftq::human_bytes(double(j["plan"]["total_bytes"].get<uint64_t>())));
            for (const char* init : {"LoftQ", "QLoRA"}) {
                const QString row = QString("| %1.loftq.json | %2 | ").arg(q, bytes);
                QVERIFY2(md.contains(row) && md.contains(QRegularExpression(QRegularExpression::escape(row) + "[0-9.]+ \\| " + init)),
                         qPrintable(row + init));
            }
        }
        QVERIFY(md.contains("--plan " + dir + "/nf2.loftq.json --plan " + dir + "/nf4.loftq.json"));  // the command, every value
    }

    // Packed export from the command line: quantize --format packed, inspect shows its weights
    // with quantizer and recorded errors, unpack writes the HF layout; bnb-nf4 refuses NF2.
    void packedFormatRoundTrip() {
        const QString out = tmp("cli-packed") + "/p";
        Run r = run({"quantize", model, "--out", out, "--format", "packed", "--quant", "nf3", "--rank", "4", "--iters", "1", "-q"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        r = run({"inspect", out, "--json"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        const json j = json::parse(r.out.toStdString());
        QCOMPARE(QString::fromStdString(j["kind"].get<std::string>()), QString("loftq-packed"));
        QCOMPARE(int(j["weights"].size()), 14);
        for (const auto& w : j["weights"]) {
            QCOMPARE(QString::fromStdString(w["quant"].get<std::string>()), QString("nf3"));
            QVERIFY(w["final_error"].get<double>() < w["qlora_error"].get<double>());
        }
        const QString hf = tmp("cli-unpacked") + "/hf";
        r = run({"unpack", out, "--out", hf});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY(QFile::exists(hf + "/model.safetensors") && QFile::exists(hf + "/loftq_init/adapter_model.safetensors"));
        r = run({"quantize", model, "--out", tmp("cli-bnb") + "/b", "--format", "bnb-nf4", "--quant", "nf2"});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains("nf4"), qPrintable(r.err));
    }

    void usageErrors() {
        QCOMPARE(run({}).code, 106);  // CLI11: a subcommand is required
        Run r = run({"quantize", model});
        QVERIFY(r.code != 0);
        QVERIFY(r.err.contains("--out"));
        QVERIFY(run({"quantize", model, "--out", "x", "--quant", "nf9"}).err.contains("unknown quantizer"));
        QVERIFY(run({"--version"}).out.startsWith("loftq "));
        // An option's value outside its name table: a usage error naming the flag, the value and
        // the choices.
        Run d = run({"quantize", model, "--dry-run", "--device", "tpu"});
        QVERIFY(d.code != 0);
        QVERIFY2(d.err.contains("--device") && d.err.contains("'tpu'") && d.err.contains("auto, cpu or cuda"), qPrintable(d.err));
        Run f = run({"quantize", model, "--dry-run", "--format", "gguf"});
        QVERIFY(f.code != 0);
        QVERIFY2(f.err.contains("--format") && f.err.contains("unknown export format 'gguf' (expected hf, packed or bnb-nf4)"),
                 qPrintable(f.err));
        Run s = run({"quantize", model, "--dry-run", "--svd", "Exact"});   // names are case-sensitive, except --device's
        QVERIFY2(s.code != 0 && s.err.contains("--svd") && s.err.contains("randomized or exact"), qPrintable(s.err));
    }

    // --device: auto says where it ran; cuda without a usable GPU is one clear line and exit 1,
    // before anything is written (CI has no GPU; with one, the run goes to it).
    void deviceChoice() {
        const QString out = tmp("cli-dev") + "/out";
        Run a = run({"quantize", model, "--dry-run", "--iters", "1", "--device", "AUTO"});   // any case
        QVERIFY2(a.code == 0, qPrintable(a.err));
        QVERIFY2(a.err.contains("device: "), qPrintable(a.err));
        Run c = run({"quantize", model, "--out", out, "--iters", "1", "--device", "cuda", "--quiet"});
        if (c.code == 0) {
            QVERIFY(c.out.contains("cuda: ") && c.out.contains("streams"));
            return;
        }
        QCOMPARE(c.code, 1);
        QVERIFY2(c.err.contains("the CUDA device is not usable: "), qPrintable(c.err));
        QVERIFY(!QFileInfo::exists(out));
    }

    void inspectTextAndJson() {
        Run t = run({"inspect", model});
        QVERIFY2(t.code == 0, qPrintable(t.err));
        QVERIFY(t.out.contains("model.layers.1.mlp.down_proj.weight"));
        QVERIFY(t.out.contains("nf4/b64 r16 T5 randomized"));
        QVERIFY(t.out.contains("plan size:"));
        // One unit family with the workbench: decimal (kB, MB), never KiB/MiB.
        QVERIFY2(t.out.contains(" kB") && !t.out.contains("iB"), qPrintable(t.out.right(300)));
        Run j = run({"inspect", model, "--json", "--quant", "nf2", "--rank", "4"});
        QVERIFY2(j.code == 0, qPrintable(j.err));
        json v = json::parse(j.out.toStdString());
        QCOMPARE(v["config"]["layers"], 2);
        QCOMPARE(v["plan"]["targets"], 14);
        int targets = 0;
        for (auto& t : v["tensors"]) targets += t["target"].get<bool>();
        QCOMPARE(targets, 14);
        QCOMPARE(v["tensors"][1]["name"], "model.layers.0.input_layernorm.weight");
        for (auto& t : v["tensors"])
            if (t["target"].get<bool>()) QCOMPARE(t["quant"], "nf2");
    }

    void planInitThenQuantize() {
        QString dir = tmp("cli-plan");
        QString plan = dir + "/p.loftq.json";
        Run r = run({"plan", "init", model, "-o", plan, "--rank", "4", "--iters", "2", "--explicit"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        json p = json::parse(loftq::read_text_file(plan.toStdString()));
        QCOMPARE(p["overrides"].size(), size_t(14));
        p["overrides"]["model.layers.0.mlp.up_proj.weight"]["quant"] = "int2";
        p["rules"] = json::parse(R"([{"match": "*.self_attn.v_proj.weight", "quant": "keep"}])");
        std::ofstream(plan.toStdString()) << p.dump(2);
        QString out = dir + "/out";
        Run q = run({"quantize", model, "--out", out, "--plan", plan, "--threads", "2"});
        QVERIFY2(q.code == 0, qPrintable(q.err));
        QVERIFY(q.out.contains("mean relative error QLoRA"));
        QVERIFY2(q.err.contains("[ 1/12] ") || q.err.contains("[1/12]") || q.err.contains("/12] "), qPrintable(q.err));
        json m = json::parse(loftq::read_text_file((out + "/loftq_metrics.json").toStdString()));
        QCOMPARE(m["weights"].size(), size_t(12));  // v_proj kept in both layers
        for (auto& w : m["weights"]) {
            QCOMPARE(w["rank"], 4);
            QCOMPARE(w["errors"].size(), size_t(2));
            QCOMPARE(w["quant"], w["name"] == "model.layers.0.mlp.up_proj.weight" ? "int2" : "nf4");
        }
    }

    // `inspect` of an HF-layout export reports the plan it was made with (a mixed one here:
    // the metrics' per-weight settings, not the CLI defaults); flags still try another plan.
    void inspectOfAnHfExportShowsItsPlan() {
        QString dir = tmp("cli-inspect-hf");
        QString plan = dir + "/p.loftq.json";
        Run r = run({"plan", "init", model, "-o", plan, "--quant", "nf2", "--rank", "8", "--iters", "1"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        json p = json::parse(loftq::read_text_file(plan.toStdString()));
        p["overrides"]["model.layers.1.mlp.down_proj.weight"] = {{"quant", "int4"}, {"rank", 4}};
        p["rules"] = json::parse(R"([{"match": "*.self_attn.v_proj.weight", "quant": "keep"}])");
        std::ofstream(plan.toStdString()) << p.dump(2);
        const QString out = dir + "/export";
        Run q = run({"quantize", model, "--out", out, "--plan", plan, "--threads", "2", "--quiet"});
        QVERIFY2(q.code == 0, qPrintable(q.err));
        Run j = run({"inspect", out, "--json"});
        QVERIFY2(j.code == 0, qPrintable(j.err));
        json v = json::parse(j.out.toStdString());
        QCOMPARE(v["loftq_export"], "hf");
        QCOMPARE(v["plan"]["targets"], 12);
        int seen = 0;
        for (auto& t : v["tensors"]) {
            const std::string n = t["name"];
            if (n.find("v_proj") != std::string::npos) QVERIFY(!t["target"].get<bool>());
            if (!t["target"].get<bool>()) continue;
            ++seen;
            const bool down1 = n == "model.layers.1.mlp.down_proj.weight";
            QCOMPARE(t["quant"], down1 ? "int4" : "nf2");
            QCOMPARE(t["rank"], down1 ? 4 : 8);
            QCOMPARE(t["iters"], 1);
        }
        QCOMPARE(seen, 12);
        Run text = run({"inspect", out});
        QVERIFY2(text.out.contains("HF-layout LoftQ export") && text.out.contains("nf2/b64 r8 T1"), qPrintable(text.out));
        Run other = run({"inspect", out, "--json", "--quant", "int8"});
        json o = json::parse(other.out.toStdString());
        QCOMPARE(o["loftq_export"], "");
        for (auto& t : o["tensors"])
            if (t["target"].get<bool>()) QCOMPARE(t["quant"], "int8");
    }

    void dryRunWritesNothing() {
        // --dry-run with an --out given: the run completes, and neither the out folder nor
        // anything in the model's folder appears (the model's listing is compared).
        QString dir = tmp("cli-dry");
        const QStringList before = QDir(model).entryList(QDir::NoDotAndDotDot | QDir::AllEntries, QDir::Name);
        Run r = run({"quantize", model, "--out", dir + "/out", "--dry-run", "--iters", "1", "--rank", "2"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY2(r.out.contains("weights in"), qPrintable(r.out));   // it really ran
        QVERIFY(!QFileInfo::exists(dir + "/out"));
        QVERIFY(QDir(dir).entryList(QDir::NoDotAndDotDot | QDir::AllEntries).isEmpty());
        QCOMPARE(QDir(model).entryList(QDir::NoDotAndDotDot | QDir::AllEntries, QDir::Name), before);
    }

    void badInputsGiveOneClearLine() {
        QString dir = tmp("cli-bad");
        // Truncated safetensors.
        QString broken = dir + "/broken";
        fs::copy(model.toStdString(), broken.toStdString(), fs::copy_options::recursive);
        std::string st = (broken + "/model.safetensors").toStdString();
        fs::resize_file(st, fs::file_size(st) - 100);
        Run r = run({"quantize", broken, "--out", dir + "/o1"});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.startsWith("loftq: error: ") && r.err.contains("model.safetensors"), qPrintable(r.err));
        QCOMPARE(r.err.count('\n'), 1);
        QVERIFY(!QFile::exists(dir + "/o1/model.safetensors"));
        // Bad config.json.
        QString badcfg = dir + "/badcfg";
        fs::copy(model.toStdString(), badcfg.toStdString(), fs::copy_options::recursive);
        std::ofstream((badcfg + "/config.json").toStdString()) << "{ not json";
        r = run({"inspect", badcfg});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains("config.json"), qPrintable(r.err));
        // Bad plan.
        std::ofstream((dir + "/bad.loftq.json").toStdString()) << R"({"version": 1, "defaults": {"rank": -3}})";
        r = run({"quantize", model, "--out", dir + "/o2", "--plan", dir + "/bad.loftq.json"});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains("bad.loftq.json") && r.err.contains("$.defaults.rank"), qPrintable(r.err));
        // Output into the input.
        r = run({"quantize", model, "--out", model});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains("refusing"), qPrintable(r.err));
        // Missing model.
        r = run({"inspect", dir + "/nothing-here"});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains("nothing-here"), qPrintable(r.err));
    }

    // Memory is bounded by the weights in flight, not the model: quantizing a ~170 MB model with
    // one thread stays far below the model's size (mapped pages are released after each read).
    void memoryBoundedByWeightsInFlight() {
#if defined(LOFTQ_ASAN)
        QSKIP("AddressSanitizer's quarantine and shadow memory are not the program's peak memory");
#endif
        QString dir = tmp("cli-mem");
        Run r = run({"make-demo", dir + "/m", "--layers", "6", "--hidden", "1024", "--intermediate", "2816", "--heads", "16",
                     "--kv-heads", "16", "--vocab", "8000"});
        QVERIFY(r.code == 0);
        double model_mb = 0;
        for (auto& e : fs::directory_iterator((dir + "/m").toStdString())) model_mb += double(e.file_size()) / 1048576.0;
        r = run({"quantize", dir + "/m", "--out", dir + "/o", "--threads", "1", "--iters", "1", "--rank", "8", "-q"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        struct rusage ru {};
        getrusage(RUSAGE_CHILDREN, &ru);  // the largest of the loftq processes this test started
        double peak_mb = double(ru.ru_maxrss) / 1024.0;
        qInfo("model %.0f MB on disk, peak resident memory of loftq %.0f MB", model_mb, peak_mb);
        QVERIFY(model_mb > 150);
        QVERIFY2(peak_mb < 0.6 * model_mb, qPrintable(QString("peak %1 MB").arg(peak_mb)));
    }

    // A full disk (simulated by a file-size limit: writes fail with EFBIG) is one clear error
    // naming the file, exit code 1, and nothing left in the output folder.
    void fullDiskIsAnErrorAndLeavesNothing() {
        QString dir = tmp("cli-full");
        QProcess p;
        p.start("/bin/bash", {"-c", "trap '' XFSZ; ulimit -f 64; exec \"$0\" \"$@\"", cli(), "quantize", model, "--out", dir + "/o",
                              "--iters", "1", "--rank", "2"});
        QVERIFY(p.waitForFinished(60000));
        QString err = QString::fromUtf8(p.readAllStandardError());
        QCOMPARE(p.exitCode(), 1);
        QVERIFY2(err.contains("loftq: error: ") && err.contains("model.safetensors") && err.contains("too large"), qPrintable(err));
        QStringList left;
        if (QDir(dir + "/o").exists())
            for (QDirIterator it(dir + "/o", QDir::Files, QDirIterator::Subdirectories); it.hasNext();) left << it.next();
        QVERIFY2(left.isEmpty(), qPrintable(left.join(", ")));
    }

    // `loftq verify`: exit 0 on a fresh export; a flipped byte in a weight file or a deleted file
    // is exit 1 with a line naming the file; `loftq unpack` of a damaged packed export is refused
    // naming the file (--no-verify unpacks anyway); an export without a manifest or with one
    // from before checksums cannot be verified (exit 3, saying so).
    void verifyCommand() {
        const QString dir = tmp("cli-verify");
        const QString hf = dir + "/hf", packed = dir + "/packed";
        Run r = run({"quantize", model, "--out", hf, "--rank", "2", "--iters", "1", "-q"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        r = run({"quantize", model, "--out", packed, "--format", "packed", "--rank", "2", "--iters", "1", "-q"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        for (const QString& d : {hf, packed}) {
            r = run({"verify", d});
            QVERIFY2(r.code == 0, qPrintable(r.out + r.err));
            QVERIFY2(r.out.startsWith("ok: ") && r.out.contains("loftq_metrics.json"), qPrintable(r.out));
        }
        // A user's file beside the export is a note, not a failure.
        loftq::test::write_file((hf + "/notes.txt").toStdString(), "mine");
        r = run({"verify", hf});
        QCOMPARE(r.code, 0);
        QVERIFY2(r.out.contains("note: " + hf + "/notes.txt: not listed"), qPrintable(r.out));

        flip_middle_byte(hf + "/model.safetensors");
        r = run({"verify", hf});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.out.contains(hf + "/model.safetensors: changed"), qPrintable(r.out));
        QVERIFY2(r.err.contains("1 problem"), qPrintable(r.err));

        flip_middle_byte(packed + "/model.safetensors");
        r = run({"verify", packed});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.out.contains(packed + "/model.safetensors: changed"), qPrintable(r.out));
        r = run({"unpack", packed, "--out", dir + "/un"});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.startsWith("loftq: error: " + packed + "/model.safetensors: changed") && r.err.contains("loftq verify"),
                 qPrintable(r.err));
        QVERIFY(!QFileInfo::exists(dir + "/un"));
        QVERIFY(staging_siblings(dir + "/un").isEmpty());
        r = run({"unpack", packed, "--out", dir + "/un", "--no-verify"});
        QVERIFY2(r.code == 0, qPrintable(r.err));

        QFile::remove(packed + "/loftq_init/adapter_config.json");
        r = run({"verify", packed});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.out.contains(packed + "/loftq_init/adapter_config.json: missing"), qPrintable(r.out));

        // From before checksums were recorded: the manifest without "outputs".
        const QString old = dir + "/old";
        fs::copy(hf.toStdString(), old.toStdString(), fs::copy_options::recursive);
        json mj = json::parse(loftq::test::read_file((old + "/loftq_metrics.json").toStdString()));
        mj.erase("outputs");
        loftq::test::write_file((old + "/loftq_metrics.json").toStdString(), mj.dump(2));
        r = run({"verify", old});
        QCOMPARE(r.code, 3);
        QVERIFY2(r.err.contains("cannot verify") && r.err.contains("before loftq recorded them"), qPrintable(r.err));
        QFile::remove(old + "/loftq_metrics.json");
        r = run({"verify", old});
        QCOMPARE(r.code, 3);
        QVERIFY2(r.err.contains("cannot verify") && r.err.contains("loftq_metrics.json is missing"), qPrintable(r.err));
        r = run({"verify", dir + "/nothing"});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains("nothing") && r.err.contains("not a folder"), qPrintable(r.err));
    }

    // A real crash (the process ends at a named step of the commit: LOFTQ_TEST_CRASH_AT) during
    // a --force export over an older one: the folder is the old export byte for byte (before the
    // swap) or the complete new one (after it), never a mix; the user's file survives; the next
    // run removes the dead run's staging folder.
    void crashDuringForceCommit_data() {
        QTest::addColumn<QString>("step");
        QTest::addColumn<bool>("swapped");
        QTest::newRow("staged") << "staged" << false;
        QTest::newRow("carried") << "carried" << false;
        QTest::newRow("swapped") << "swapped" << true;
    }
    void crashDuringForceCommit() {
        QFETCH(QString, step);
        QFETCH(bool, swapped);
        const QString out = tmp("cli-crash") + "/out";
        Run r = run({"quantize", model, "--out", out, "--rank", "2", "--iters", "1", "--max-shard-size", "60000", "-q"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        loftq::test::write_file((out + "/notes.txt").toStdString(), "my notes");
        const auto before = snapshot(out);
        QVERIFY(before.count("model.safetensors.index.json"));
        r = run_env({"quantize", model, "--out", out, "--rank", "4", "--iters", "1", "--force", "-q"}, "LOFTQ_TEST_CRASH_AT", step);
        QCOMPARE(r.code, 86);   // ended at the step, nothing after it ran
        const auto after = snapshot(out);
        if (!swapped) {
            QVERIFY2(after == before, "the old export changed");
        } else {
            QVERIFY(after != before);
            QCOMPARE(QString::fromStdString(after.at("notes.txt")), QString("my notes"));
            QVERIFY(!after.count("model.safetensors.index.json"));
            QCOMPARE(json::parse(after.at("loftq_metrics.json"))["manifest"]["plan"]["defaults"]["rank"], 4);
            r = run({"verify", out, "-q"});
            QVERIFY2(r.code == 0, qPrintable(r.out + r.err));
        }
        QVERIFY(!staging_siblings(out).isEmpty());   // what the crash left beside it
        r = run({"quantize", model, "--out", out, "--rank", "4", "--iters", "1", "--force", "-q"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY2(staging_siblings(out).isEmpty(), qPrintable(staging_siblings(out).join(", ")));
        QCOMPARE(QString::fromStdString(loftq::test::read_file((out + "/notes.txt").toStdString())), QString("my notes"));
        r = run({"verify", out, "-q"});
        QVERIFY2(r.code == 0, qPrintable(r.out + r.err));
    }

    // Ctrl-C, and SIGTERM as `timeout`, systemd and docker send it: the same clean cancel.
    void sigintCancelsCleanly_data() {
        QTest::addColumn<int>("sig");
        QTest::addColumn<int>("code");
        QTest::newRow("SIGINT") << int(SIGINT) << 130;
        QTest::newRow("SIGTERM") << int(SIGTERM) << 143;
    }
    void sigintCancelsCleanly() {
        QFETCH(int, sig);
        QFETCH(int, code);
        QString dir = tmp("cli-int");
        QString big = dir + "/big";
        Run r = run({"make-demo", big, "--layers", "4", "--hidden", "512", "--intermediate", "1376", "--heads", "8", "--kv-heads", "8"});
        QVERIFY(r.code == 0);
        QProcess p;
        p.start(cli(), {"quantize", big, "--out", dir + "/out", "--iters", "30", "--threads", "2"});
        QVERIFY(p.waitForStarted());
        // Wait for the first finished weight, then Ctrl-C.
        QString err;
        QElapsedTimer t;
        t.start();
        while (!err.contains("/28]") && t.elapsed() < 60000) {
            p.waitForReadyRead(100);
            err += QString::fromUtf8(p.readAllStandardError());
        }
        QVERIFY2(err.contains("/28]"), qPrintable(err));
        QElapsedTimer c;
        c.start();
        // Weights finished when Ctrl-C is sent (the last "[k/28]" of the progress lines).
        auto last_done = [](const QString& text) {
            int k = 0;
            for (const auto& m : QRegularExpression("\\[(\\d+)/28\\]").globalMatch(text)) k = std::max(k, m.captured(1).toInt());
            return k;
        };
        const int done_at_sigint = last_done(err);
        ::kill(pid_t(p.processId()), sig);
        QVERIFY(p.waitForFinished(60000));   // a ceiling against hangs; the time itself is reported
        qInfo("signal %d -> exit in %lld ms", sig, (long long)c.elapsed());
        QCOMPARE(p.exitStatus(), QProcess::NormalExit);
        QCOMPARE(p.exitCode(), code);
        err += QString::fromUtf8(p.readAllStandardError());
        // The cancel lands at the next step poll: at most the 2 weights in flight (2 threads) end
        // after the signal, never the remaining 20-odd 30-step weights.
        QVERIFY2(last_done(err) <= done_at_sigint + 2, qPrintable(err));
        QVERIFY(err.contains("cancelled"));
        QVERIFY2(!QDir(dir + "/out").exists(), "the output folder the run created is left behind");
    }
};

QTEST_GUILESS_MAIN(TestCli)
#include "test_cli.moc"
