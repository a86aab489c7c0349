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

#include <filesystem>

#include "studio/finetune.h"
#include "studio/run_on.h"
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
};

QTEST_MAIN(TestRunOn)
#include "test_run_on.moc"
