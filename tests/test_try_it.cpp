// test_try_it.cpp: the Studio's Try it tab (studio/try_it.h), offscreen. Without a model the
// status line says so; on the shipped stories260K the panel's greedy text is exactly the engine's
// generate() (and `loftq generate`'s, when the CLI is at hand), token by token across the queued
// hop, and the model is loaded once; a fine-tune run from the Fine-tune tab is offered and
// generates as the engine does from its folder; bad sources are one-sentence errors in their
// column. On the larger synthetic demo both columns stream (the text grows over several
// appends, each a prefix of the end), Cancel stops at once, a second Generate works, the GUI
// thread never stalls, and closing the window mid-generation is safe. The tab lays out at
// 1000x650 and 1400x880 without cut editors.
#include <QtTest>

#include <QApplication>
#include <QComboBox>
#include <QFileInfo>
#include <QPointer>
#include <QElapsedTimer>
#include <QLabel>
#include <QPlainTextEdit>
#include <QProcess>
#include <QStandardPaths>
#include <QTabWidget>
#include <filesystem>

#include "core/fsutil.h"
#include "plan_document.h"
#include "studio/finetune.h"
#include "studio/gguf_export_dialog.h"
#include "studio/main_window.h"
#include "studio/open.h"
#include "studio/try_it.h"
#include "train/generate.h"
#include "train/gguf_export.h"
#include "gui_wait.h"
#include "layout_check.h"
#include "test_support.h"

using namespace studio;
using loftq::test::Heartbeat;

namespace {

// The engine's own greedy text for a source, the reference the panel must reproduce.
loftq::GenerateResult reference(const loftq::GeneratorSource& src, const std::string& prompt, int max_tokens) {
    loftq::Generator g = loftq::load_generator(src);
    loftq::GenerateOptions o;
    o.max_tokens = max_tokens;
    return loftq::generate(*g.model, *g.tok, prompt, o);
}

}  // namespace

class TestTryIt : public QObject {
    Q_OBJECT
    std::unique_ptr<MainWindow> w;
    TryItPanel* t = nullptr;
    QString runDir;   // the fine-tune run of comparesAFineTuneRun

    // Generates and waits for the end; returns finished()'s ok.
    bool generateAndWait(int timeout_ms = 120000) {
        QSignalSpy done(t, &TryItPanel::finished);
        if (!t->generate()) return false;
        if (!done.wait(timeout_ms)) return false;
        return done.takeFirst().at(0).toBool();
    }
    void setGreedy(int max_tokens) {
        loftq::GenerateOptions o;
        o.max_tokens = max_tokens;
        t->setOptions(o);
    }

private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QCoreApplication::setOrganizationName("LoftQStudioTest");
        QCoreApplication::setApplicationName("test_try_it");
        w = std::make_unique<MainWindow>();
        w->setInteractive(false);
        w->setThreads(2);
        w->resize(1400, 900);
        w->show();
        t = w->tryIt();
        QVERIFY(t);
        w->centralTabs()->setCurrentWidget(t);
        QCOMPARE(w->centralTabs()->tabText(w->centralTabs()->currentIndex()), QString("Try it"));
    }
    void cleanupTestCase() { w.reset(); }

    void noModelIsASentence() {
        QVERIFY(!generateAndWait());
        QVERIFY2(t->status(TryItPanel::A)->text().contains("no model is open"), qPrintable(t->status(TryItPanel::A)->text()));
        QVERIFY(t->generatedText(TryItPanel::A).isEmpty());
    }

    // Greedy from the panel = the engine's generate() = `loftq generate`, for the same prompt and
    // token count; every token crossed the hop as its own queued call; the model loads once.
    void matchesTheEngine() {
        w->openDemo();
        QVERIFY(loftq::test::wait_bool(w.get(), &MainWindow::openFinished, 120000));
        const QString model = w->document()->modelPath();
        QVERIFY(t->selectSource(TryItPanel::A, TryItSourceKind::Model, model));
        t->selectNone();
        const QString prompt = "Once upon a time";
        t->setPrompt(prompt);
        setGreedy(60);
        Heartbeat hb;
        QVERIFY(generateAndWait());
        loftq::GeneratorSource src;
        src.model = model.toStdString();
        src.threads = 2;
        const loftq::GenerateResult ref = reference(src, prompt.toStdString(), 60);
        QVERIFY(!ref.text.empty());
        QCOMPARE(t->generatedText(TryItPanel::A), QString::fromStdString(ref.text));
        QCOMPARE(t->output(TryItPanel::A)->toPlainText(), prompt + QString::fromStdString(ref.text));
        QCOMPARE(t->tokenEvents(TryItPanel::A), int(ref.ids.size()));
        QVERIFY(t->appends(TryItPanel::A) >= 1);
        const QString status = t->status(TryItPanel::A)->text();
        QVERIFY2(status.contains(QString("%1 tokens").arg(ref.ids.size())) && status.contains("tokens/s") &&
                     status.contains(QString("stopped at %1").arg(loftq::kGenerateStopNames.name(ref.stop))),
                 qPrintable(status));
        QVERIFY2(hb.worst < 500, qPrintable(QString("GUI thread stalled %1 ms").arg(hb.worst)));
        QCOMPARE(t->loads(TryItPanel::A), 1);
        QVERIFY(generateAndWait());   // the cache holds: no second load, the same text
        QCOMPARE(t->loads(TryItPanel::A), 1);
        QCOMPARE(t->generatedText(TryItPanel::A), QString::fromStdString(ref.text));

        const QString cli = qEnvironmentVariable("LOFTQ_CLI");
        if (cli.isEmpty() || !QFileInfo::exists(cli)) {
            qInfo("LOFTQ_CLI not set (run through ctest): the engine's generate() was the reference");
            return;
        }
        QProcess p;
        p.start(cli, {"generate", model, "-p", prompt, "-n", "60", "-q", "--threads", "2"});
        QVERIFY(p.waitForFinished(60000));
        QCOMPARE(p.exitCode(), 0);
        QCOMPARE(QString::fromUtf8(p.readAllStandardOutput()), t->generatedText(TryItPanel::A) + "\n");
    }

    // A run of the Fine-tune tab is offered to both columns; B generates from its folder as the
    // engine does (its adapter on the base it recorded), after A, whose model stays loaded.
    void comparesAFineTuneRun() {
        FinetunePanel* ft = w->finetune();
        loftq::TrainOptions o = ft->options();
        o.steps = 3;
        o.batch = 2;
        o.seq = 32;
        o.eval_every = 3;
        o.threads = 2;
        o.load.init = loftq::InitKind::Loftq;
        o.load.quant = "nf2";
        o.load.rank = 4;
        o.load.iters = 1;
        o.eval_original = false;
        o.out_dir = loftq::test::make_temp_dir("try-it-run") + "/loftq";
        ft->setOptions(o);
        QSignalSpy ran(ft, &FinetunePanel::runFinished);
        QVERIFY(ft->start());
        QVERIFY(ran.wait(300000));
        QVERIFY(ran.takeFirst().at(0).toBool());
        runDir = QString::fromStdString(o.out_dir);
        QVERIFY2(t->selectSource(TryItPanel::B, TryItSourceKind::Run, runDir), "the run is not offered");
        QVERIFY(t->sourceBox(TryItPanel::B)->currentText().startsWith("Run: loftq"));
        QVERIFY(t->sourceBox(TryItPanel::A)->findText(t->sourceBox(TryItPanel::B)->currentText()) >= 0);
        w->centralTabs()->setCurrentWidget(t);
        setGreedy(40);
        QVERIFY2(generateAndWait(), qPrintable(t->status(TryItPanel::B)->text()));
        QCOMPARE(t->loads(TryItPanel::A), 1);
        QCOMPARE(t->loads(TryItPanel::B), 1);
        loftq::GeneratorSource src;
        src.adapter = runDir.toStdString();
        src.threads = 2;
        const loftq::GenerateResult ref = reference(src, t->prompt().toStdString(), 40);
        QCOMPARE(t->generatedText(TryItPanel::B), QString::fromStdString(ref.text));
        QCOMPARE(t->tokenEvents(TryItPanel::B), int(ref.ids.size()));
        QVERIFY(t->status(TryItPanel::B)->text().contains("tokens/s"));
        QVERIFY(t->status(TryItPanel::A)->text().contains("tokens/s"));
    }

    // File > Export GGUF for llama.cpp (issue 15): the dialog offers the Studio's models (the open
    // one, the fine-tune run), and writes byte for byte the file the engine's export_gguf writes
    // for the same source (the run: its LoRA merged); an existing file is refused without
    // Replace; a cancel leaves no file; the job never blocks the GUI.
    void exportsGgufFromTheStudio() {
        QVERIFY(!runDir.isEmpty());
        const std::string dir = loftq::test::make_temp_dir("try-it-gguf");
        GgufExportDialog* dlg = w->openGgufExport();
        QVERIFY(dlg);
        QPointer<GgufExportDialog> alive(dlg);
        int run = -1;
        const auto choices = t->sourceChoices();
        for (int i = 0; i < choices.size(); ++i)
            if (choices[i].source.kind == TryItSourceKind::Run && choices[i].source.path == runDir.toStdString()) run = i;
        QVERIFY2(run >= 0, "the run is not offered");
        QCOMPARE(dlg->sourceCount(), choices.size());

        struct Case { int source; loftq::GgufWeightType type; std::string file; loftq::GeneratorSource ref; };
        loftq::GeneratorSource orig, fine;
        orig.model = w->document()->modelPath().toStdString();
        fine.adapter = runDir.toStdString();
        const Case cases[] = {{0, loftq::GgufWeightType::Q8_0, dir + "/model.gguf", orig},
                              {run, loftq::GgufWeightType::F16, dir + "/run.gguf", fine}};
        for (const Case& c : cases) {
            dlg->setSourceIndex(c.source);
            dlg->setOutput(QString::fromStdString(c.file));
            dlg->setType(c.type);
            QSignalSpy done(dlg, &GgufExportDialog::finished);
            Heartbeat hb;
            QVERIFY(dlg->startExport());
            QVERIFY(done.wait(120000));
            QVERIFY2(done.takeFirst().at(0).toBool(), qPrintable(dlg->statusText()));
            QVERIFY2(hb.worst < 500, qPrintable(QString("GUI stalled %1 ms").arg(hb.worst)));
            QVERIFY(dlg->statusText().startsWith("Wrote "));
            loftq::GgufExportOptions eo;
            eo.source = c.ref;
            eo.source.threads = 2;
            eo.out = dir + "/reference.gguf";
            eo.type = c.type;
            loftq::export_gguf(eo);
            QCOMPARE(loftq::test::read_file(c.file), loftq::test::read_file(eo.out));
        }
        QVERIFY(dlg->statusText().contains("35 LoRA merged"));
        // an existing file needs Replace
        QVERIFY(!dlg->startExport());
        QVERIFY(dlg->statusText().contains("exists"));
        // a cancel right after the start: nothing is written (or, if the export won the race, all of it)
        dlg->setReplace(true);
        const QString cancelled = QString::fromStdString(dir + "/cancelled.gguf");
        dlg->setOutput(cancelled);
        QSignalSpy done(dlg, &GgufExportDialog::finished);
        QVERIFY(dlg->startExport());
        dlg->cancel();
        QVERIFY(done.wait(30000));
        const bool ok = done.takeFirst().at(0).toBool();
        qInfo("GGUF export cancelled right after its start: %s", qPrintable(dlg->statusText()));
        QCOMPARE(QFileInfo::exists(cancelled), ok);
        if (!ok) QVERIFY(dlg->statusText().startsWith("Cancelled"));
        QVERIFY(!QFileInfo::exists(cancelled + ".partial"));
        dlg->close();   // deletes itself
        QTRY_VERIFY(alive.isNull());
    }

    // Bad sources: one sentence in their own column's status, the other column unharmed, and the
    // next Generate works.
    void badSourcesSayWhy() {
        const std::string dir = loftq::test::make_temp_dir("try-it-bad");
        const QString empty = QString::fromStdString(dir + "/empty");
        QDir().mkpath(empty);
        const QString stopped = QString::fromStdString(dir + "/stopped-run");
        QDir().mkpath(stopped + "/checkpoint");
        loftq::write_file_atomic((stopped + "/metrics.jsonl").toStdString(), "");
        setGreedy(10);
        t->addRun("stopped", stopped);
        QVERIFY(t->selectSource(TryItPanel::B, TryItSourceKind::Run, stopped));
        QVERIFY(!generateAndWait());
        QString s = t->status(TryItPanel::B)->text();
        QVERIFY2(s.startsWith("Error: ") && s.contains("no adapter") && !s.contains('\n'), qPrintable(s));
        QVERIFY(t->status(TryItPanel::A)->text().contains("tokens/s"));
        QVERIFY(!t->generatedText(TryItPanel::A).isEmpty());

        const int id = t->addFolder(empty);
        t->sourceBox(TryItPanel::B)->setCurrentIndex(t->sourceBox(TryItPanel::B)->findData(id));
        QVERIFY(!generateAndWait());
        s = t->status(TryItPanel::B)->text();
        QVERIFY2(s.startsWith("Error: ") && s.contains(empty) && !s.contains('\n'), qPrintable(s));
        QVERIFY(t->status(TryItPanel::A)->text().contains("tokens/s"));

        t->selectNone();
        QVERIFY(generateAndWait());
        QVERIFY(t->generatedText(TryItPanel::B).isEmpty());
    }

    // The synthetic demo (8 layers, hidden 256): slow enough to watch. Both columns stream, Cancel
    // stops at once, and the GUI thread stays free throughout.
    void streamsCancelsAndStaysResponsive() {
        const QString dir = ensure_synthetic_demo(QStandardPaths::writableLocation(QStandardPaths::CacheLocation));
        w->openModel(dir);
        QVERIFY(loftq::test::wait_bool(w.get(), &MainWindow::openFinished, 120000));
        w->centralTabs()->setCurrentWidget(t);
        QCOMPARE(t->loads(TryItPanel::A), 0);   // another model in the Studio: nothing loaded
        QVERIFY(t->selectSource(TryItPanel::A, TryItSourceKind::Model, dir));
        const int id = t->addFolder(dir);   // the same weights through another source: loaded again for B
        t->sourceBox(TryItPanel::B)->setCurrentIndex(t->sourceBox(TryItPanel::B)->findData(id));
        t->setPrompt("Once upon a time");
        loftq::GenerateOptions o;
        o.max_tokens = 200;
        o.sampling.temperature = 0.8;
        o.sampling.top_k = 40;
        o.sampling.seed = 7;
        t->setOptions(o);

        std::array<QStringList, 2> seen;
        for (int c : {0, 1})
            connect(t->output(c), &QPlainTextEdit::textChanged, this, [this, c, &seen] { seen[c] << t->output(c)->toPlainText(); });
        Heartbeat hb;
        QElapsedTimer clock;
        clock.start();
        QVERIFY2(generateAndWait(), qPrintable(t->status(TryItPanel::A)->text() + " / " + t->status(TryItPanel::B)->text()));
        const qint64 ms = clock.elapsed();
        for (int c : {0, 1}) {
            disconnect(t->output(c), nullptr, this, nullptr);
            const QString end = t->output(c)->toPlainText();
            qInfo("column %c: %d tokens, %d appends in %lld ms; %s", 'A' + c, t->tokenEvents(c), t->appends(c), ms,
                  qPrintable(t->status(c)->text()));
            QVERIFY2(t->appends(c) >= 3, qPrintable(QString("column %1: %2 appends").arg(c).arg(t->appends(c))));
            QVERIFY(t->appends(c) < t->tokenEvents(c));   // coalesced
            for (const QString& s : seen[c]) QVERIFY(end.startsWith(s));
        }
        QCOMPARE(t->generatedText(TryItPanel::A), t->generatedText(TryItPanel::B));   // same weights, seed and options
        QVERIFY2(hb.worst < 500, qPrintable(QString("GUI thread stalled %1 ms").arg(hb.worst)));

        // Cancel mid-generation: it stops at once, and the panel is ready again.
        o.max_tokens = 1 << 20;   // up to the model's context
        t->setOptions(o);
        QSignalSpy done(t, &TryItPanel::finished);
        QVERIFY(t->generate());
        QVERIFY(!t->generate());   // one at a time
        QTRY_VERIFY_WITH_TIMEOUT(t->appends(TryItPanel::A) >= 2, 60000);
        clock.restart();
        t->cancel();
        QVERIFY(done.wait(5000));
        const qint64 stop_ms = clock.elapsed();
        QVERIFY(!done.takeFirst().at(0).toBool());
        QVERIFY2(stop_ms < 1000, qPrintable(QString("cancel took %1 ms").arg(stop_ms)));
        QVERIFY2(t->status(TryItPanel::A)->text().startsWith("Cancelled after"), qPrintable(t->status(TryItPanel::A)->text()));
        QVERIFY(t->status(TryItPanel::B)->text().startsWith("Cancelled"));
        QVERIFY(!t->running());
        setGreedy(12);
        QVERIFY(generateAndWait());
        QCOMPARE(t->tokenEvents(TryItPanel::A), 12);
        QCOMPARE(t->tokenEvents(TryItPanel::B), 12);
        QVERIFY2(hb.worst < 500, qPrintable(QString("GUI thread stalled %1 ms").arg(hb.worst)));
    }

    void layoutHolds() {
        w->centralTabs()->setCurrentWidget(t);
        QStringList problems;
        for (QSize size : {QSize(1000, 650), QSize(1400, 880), QSize(1920, 1080)}) {
            w->resize(size);
            QTest::qWait(60);
            QApplication::processEvents();
            for (const QString& p : loftq::test::layout_problems(t))
                problems << QString("%1x%2: %3").arg(size.width()).arg(size.height()).arg(p);
            QVERIFY(t->output(TryItPanel::A)->width() > 150 && t->output(TryItPanel::B)->width() > 150);
        }
        for (const QString& p : problems) qWarning("%s", qPrintable(p));
        QVERIFY(problems.isEmpty());
    }

    // Closing the window while both columns generate: no wait on the job beyond its next token,
    // no crash, nothing delivered to the dead panel.
    void closingWhileGeneratingIsSafe() {
        loftq::GenerateOptions o;
        o.max_tokens = 1 << 20;
        t->setOptions(o);
        QVERIFY(t->generate());
        QTRY_VERIFY_WITH_TIMEOUT(t->tokenEvents(TryItPanel::A) >= 5, 60000);
        QElapsedTimer clock;
        clock.start();
        w.reset();
        t = nullptr;
        QApplication::processEvents();
        QVERIFY2(clock.elapsed() < 2000, qPrintable(QString("closing took %1 ms").arg(clock.elapsed())));
    }
};

QTEST_MAIN(TestTryIt)
#include "test_try_it.moc"
