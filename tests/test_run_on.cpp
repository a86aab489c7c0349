// test_run_on.cpp: the Studio's "Run on" (app/studio/run_on.h, finetune_remote.cpp) through a
// real launcher template on this machine (`env LOFTQ_RUN_ON_TEST=1`, a prefix that changes
// nothing): the Fine-tune tab's run launched as a `loftq finetune` command line trains exactly
// what the in-process run trains (the adapter byte for byte, the same curve), its events drive
// the same curves and table, its files land in the run folder; Attach… replays a finished run;
// a failing launched run and a bad template are one clear line each. (The ssh and mpirun
// launchers themselves are test_launch's and test_dist's.)
#include <QComboBox>
#include <QSignalSpy>
#include <QtTest>

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "io/synthetic_model.h"
#include "loftq/plan.h"
#include "studio/export_dialog.h"
#include "studio/finetune.h"
#include "studio/main_window.h"
#include "studio/remote_args.h"
#include "studio/run_on.h"
#include "device_combo.h"
#include "gui_wait.h"
#include "log_panel.h"
#include "plan_document.h"
#include "run_results.h"
#include "training_curves.h"
#include "train_fixtures.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace studio;

namespace {
QString cli_path() {
    QString p = QString::fromLocal8Bit(qgetenv("LOFTQ_CLI"));
    if (p.isEmpty()) p = QCoreApplication::applicationDirPath() + "/loftq";
    return QFile::exists(p) ? p : QString();
}
}  // namespace

class TestRunOn : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        QCoreApplication::setOrganizationName("loftq-test-run-on");
        QCoreApplication::setApplicationName("test_run_on");
    }

    void badTemplateIsOneLine() {
        RunOnBox box;
        QVERIFY(box.local());
        QCOMPARE(box.target().templ, std::string());
        box.setTemplate("mpirun -np {n} ; rm -rf /");
        QVERIFY(!box.local());
        try {
            box.target();
            QFAIL("a template with a shell operator was accepted");
        } catch (const std::exception& e) {
            QVERIFY2(QString(e.what()).contains(";"), e.what());
        }
        box.setTemplate("mpirun --hostfile hosts -np {n}");
        box.setRanks(4);
        QCOMPARE(QString::fromStdString(loftq::expand_template(box.target())), QString("mpirun --hostfile hosts -np 4"));
        box.remember();
        RunOnBox again;  // the recent templates come back
        QVERIFY(again.combo()->findText("mpirun --hostfile hosts -np {n}") > 0);
    }

    void finetuneArgumentsCarryEveryField() {
        loftq::TrainOptions o;
        o.load.model = "/m";
        o.data = "/d.txt";
        o.lr = 0.1 + 0.2;   // not exactly 0.3: the text must give back the same double
        o.load.plan = std::make_shared<const loftq::Plan>();
        o.load.init = loftq::InitKind::Loftq;
        const auto a = finetune_cli_args(o, "finetune", "plan.loftq.json");
        auto value = [&](const std::string& flag) {
            auto it = std::find(a.begin(), a.end(), flag);
            return it == a.end() || it + 1 == a.end() ? std::string("<none>") : *(it + 1);
        };
        QCOMPARE(value("--plan"), std::string("plan.loftq.json"));
        QCOMPARE(value("--out"), std::string("finetune"));
        QCOMPARE(std::stod(value("--lr")), 0.1 + 0.2);
        QCOMPARE(value("--init"), std::string("loftq"));
        QVERIFY_THROWS_EXCEPTION(loftq::Error, finetune_cli_args(o, "finetune"));   // a plan needs its file
    }

    void launchedFinetuneEqualsInProcessAndAttachReplays() {
        if (cli_path().isEmpty()) QSKIP("the loftq binary was not found (LOFTQ_CLI)");
        const loftq::test::Synth s = loftq::test::make_synth("run-on", 64, 160);
        const std::string dir = loftq::test::make_temp_dir("run-on-out");
        FinetunePanel ft;
        loftq::TrainOptions o = ft.options();
        o.load.model = s.model;
        o.data = s.data;
        o.eval_data = s.eval;
        o.steps = 6;
        o.batch = 2;
        o.seq = 32;
        o.accum = 1;
        o.lr = 5e-3;
        o.eval_every = 3;
        o.threads = 1;
        o.load.init = loftq::InitKind::Loftq;
        o.load.quant = "nf2";
        o.load.rank = 4;
        o.load.iters = 1;
        o.device = loftq::ComputeDevice::Cpu;
        o.out_dir = dir + "/local";
        ft.setOptions(o);
        QSignalSpy done(&ft, &FinetunePanel::runFinished);
        QVERIFY(ft.start());
        QVERIFY(done.wait(300000));
        QVERIFY(done.takeFirst().at(0).toBool());
        const loftq::TrainResult local = ft.lastResult();

        // The same form, launched: `env LOFTQ_RUN_ON_TEST=1 loftq finetune ...` in the run folder.
        ft.runOn()->setTemplate("env LOFTQ_RUN_ON_TEST=1");
        ft.runOn()->setRemoteLoftq(cli_path());
        o.out_dir = dir + "/launched";
        ft.setOptions(o);
        QVERIFY(ft.start());
        QVERIFY(done.wait(300000));
        QVERIFY2(done.takeFirst().at(0).toBool(), qPrintable(loftq::test::read_file(dir + "/launched/output.log").c_str()));
        QCOMPARE(ft.lastOutDir(), QString::fromStdString(dir + "/launched/finetune"));
        const std::string adapter = "/adapter/adapter_model.safetensors";
        QVERIFY(fs::exists(dir + "/launched/finetune" + adapter));
        QVERIFY2(loftq::test::read_file(dir + "/local" + adapter) == loftq::test::read_file(dir + "/launched/finetune" + adapter),
                 "the launched run trained something else than the in-process one");
        QVERIFY(fs::exists(dir + "/launched/launch.json"));
        QVERIFY(fs::exists(dir + "/launched/events.jsonl"));
        TrainingCurves* c = ft.curves();
        QCOMPARE(c->runCount(), 2);
        QCOMPARE(c->trainPoints(1).size(), c->trainPoints(0).size());
        for (int i = 0; i < c->trainPoints(0).size(); ++i) QCOMPARE(c->trainPoints(1)[i].y(), c->trainPoints(0)[i].y());
        QCOMPARE(ft.lastResult().final_eval_loss, local.final_eval_loss);
        QCOMPARE(ft.lastResult().steps_done, 6);

        // Attach… to the finished run: its events replay into a new curve.
        QVERIFY(ft.attachRun(QString::fromStdString(dir + "/launched")));
        QVERIFY(done.wait(120000));
        QVERIFY(done.takeFirst().at(0).toBool());
        QCOMPARE(c->runCount(), 3);
        QCOMPARE(c->trainPoints(2).size(), c->trainPoints(0).size());
        QVERIFY(!ft.attachRun(QString::fromStdString(dir + "/local")));   // not a launched run: refused, no job

        // A launched run that fails (data missing on the target) ends with its error, nothing hangs.
        o.data = dir + "/no-such-data.txt";
        o.out_dir = dir + "/failed";
        ft.setOptions(o);
        QSignalSpy msgs(&ft, &FinetunePanel::message);
        QVERIFY(ft.start());
        QVERIFY(done.wait(120000));
        QVERIFY(!done.takeFirst().at(0).toBool());
        bool named = false;
        for (const auto& m : msgs) named = named || m.at(0).toString().contains("no-such-data");
        QVERIFY2(named, "the failure did not name the missing file");
    }

    // File > Export through Run on: the plan goes with the run, the events fill the same results
    // and charts, and the export in RUN/export equals the in-process export file for file.
    void launchedExportEqualsInProcess() {
        if (cli_path().isEmpty()) QSKIP("the loftq binary was not found (LOFTQ_CLI)");
        const std::string dir = loftq::test::make_temp_dir("run-on-export");
        loftq::SyntheticSpec spec;
        spec.layers = 2;
        spec.hidden = 64;
        spec.intermediate = 160;
        spec.heads = 4;
        spec.kv_heads = 2;
        spec.vocab = 96;
        loftq::write_synthetic_model(dir + "/model", spec);
        MainWindow w;
        w.setInteractive(false);
        w.setThreads(1);
        w.deviceCombo()->setDevice(loftq::ComputeDevice::Cpu);
        w.openModel(QString::fromStdString(dir + "/model"));
        QVERIFY(loftq::test::wait_bool(&w, &MainWindow::openFinished, 60000));
        QVERIFY(w.exportTo(QString::fromStdString(dir + "/local"), false, false));
        QVERIFY(loftq::test::wait_bool(&w, &MainWindow::exportFinished, 120000));
        const int weights = w.results()->count();
        QVERIFY(weights > 0);

        loftq::RunTarget t;
        t.templ = "env LOFTQ_RUN_ON_TEST=1";
        t.loftq = cli_path().toStdString();
        QSignalSpy finished(&w, &MainWindow::exportFinished);
        QVERIFY(w.exportVia(t, QString::fromStdString(dir + "/launched")));
        QVERIFY(finished.wait(120000));
        QVERIFY2(finished.takeFirst().at(0).toBool(), qPrintable(w.log()->plainText().right(600)));
        QCOMPARE(w.results()->count(), weights);
        QCOMPARE(w.results()->weightsDone(), weights);
        QVERIFY(fs::exists(dir + "/launched/plan.loftq.json"));
        for (const char* f : {"model.safetensors", "loftq_init/adapter_model.safetensors", "config.json"})
            QVERIFY2(loftq::test::read_file(dir + "/local/" + f) == loftq::test::read_file(dir + "/launched/export/" + f), f);
        QVERIFY(w.log()->plainText().contains("launched/export"));

        // The dialog: a launched export wants a new run folder and a template the launcher accepts.
        ExportDialog dlg(w.document()->resolved(), w.document()->tensors());
        dlg.setFolder(QString::fromStdString(dir + "/launched"));
        dlg.runOn()->setTemplate("env X=1");
        QVERIFY(!dlg.tryAccept());
        QVERIFY2(dlg.problemText().contains("new run folder"), qPrintable(dlg.problemText()));
        dlg.setFolder(QString::fromStdString(dir + "/fresh"));
        dlg.runOn()->setTemplate("env X=1 | tee");
        QVERIFY(!dlg.tryAccept());
        QVERIFY2(dlg.problemText().contains("Run on"), qPrintable(dlg.problemText()));
    }
};

QTEST_MAIN(TestRunOn)
#include "test_run_on.moc"
