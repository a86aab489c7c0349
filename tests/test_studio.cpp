// test_studio.cpp: the desktop app end to end, offscreen. Opens the synthetic demo model, edits
// the plan in the grid, runs it to the end while a heartbeat timer measures the longest GUI
// stall, checks that each selected weight's curve has T points equal to the engine's per-step
// errors and that the heatmap holds the engine's final errors, checks that the CLI given the
// saved plan computes exactly the same numbers, cancels a second run mid-way, exports (files
// verified, plots included) and refuses bad input without crashing. Then the demo of `--demo`:
// the shipped stories260K opens byte for byte, runs, and fine-tunes from the Fine-tune tab.
#include <QtTest>

#include <QApplication>
#include <QComboBox>
#include <QDockWidget>
#include <QCryptographicHash>
#include <QDirIterator>
#include <QImage>
#include <QMessageBox>
#include <QProcess>
#include <QStandardItemModel>
#include <QStandardPaths>
#include <QTableWidget>
#include <QLabel>
#include <QSettings>
#include <QScrollBar>
#include <QScrollArea>
#include <QSpinBox>
#include <QThread>
#include <QThreadPool>
#include <QToolButton>
#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "error_chart.h"
#include "error_heatmap.h"
#include "loftq/budget.h"
#include "plot_style.h"
#include "studio/export_dialog.h"
#include "log_panel.h"
#include "core/cancel.h"
#include "core/fsutil.h"
#include "budget_bar.h"
#include "device_combo.h"
#include "export/summary.h"
#include "export/footprint.h"
#include "export/quantize.h"
#include "train/gguf_export.h"
#include "studio/main_window.h"
#include "plan_document.h"
#include "plan_edit_bar.h"
#include "plan_grid_model.h"
#include "plan_grid_view.h"
#include "run_results.h"
#include "quant_colors.h"
#include "studio/finetune.h"
#include "studio/help.h"
#include "studio/job.h"
#include "studio/open.h"
#include "gui_wait.h"
#include "layout_check.h"
#include "test_support.h"
#include "training_curves.h"

using namespace studio;

namespace {

using loftq::test::Heartbeat;

// Waits for a bool signal of the window; returns its value, or false after timeout_ms.
template <typename Sig>
bool wait_for(MainWindow* w, Sig signal, int timeout_ms) {
    return loftq::test::wait_bool(w, signal, timeout_ms);
}


QByteArray sha256_hex(const QString& path) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly)) return {};
    return QCryptographicHash::hash(f.readAll(), QCryptographicHash::Sha256).toHex();
}

// The shipped demo model (resources/models/stories260K, SOURCE.md there).
constexpr qint64 kStoriesBytes = 1056540;
const QByteArray kStoriesSha256 = "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696";
const QByteArray kTok512Sha256 = "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312";

}  // namespace

class TestStudio : public QObject {
    Q_OBJECT
    std::unique_ptr<MainWindow> w;

private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);  // settings and the demo cache in test locations
        QCoreApplication::setOrganizationName("LoftQStudioTest");
        QCoreApplication::setApplicationName("test_studio");
        w = std::make_unique<MainWindow>();
        w->setInteractive(false);
        w->setThreads(2);
        // The CPU, so that every number below is machine-independent; deviceChooser runs Auto.
        w->deviceCombo()->setDevice(loftq::ComputeDevice::Cpu);
        w->resize(1400, 900);
        w->show();
    }
    void cleanupTestCase() { w.reset(); }

    void badInputIsAMessageNotACrash() {
        std::string dir = loftq::test::make_temp_dir("studio-bad");
        std::string bad = dir + "/broken.safetensors";
        std::ofstream(bad) << "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": [1, 2";  // header cut short
        w->openModel(QString::fromStdString(bad));
        QVERIFY(!wait_for(w.get(), &MainWindow::openFinished, 30000));
        QVERIFY(w->log()->plainText().contains("broken.safetensors"));
        QVERIFY(!w->document()->hasModel());
    }

    // The synthetic demo (8 layers x 7 modules, hidden 256, with its own tokenizer and stories):
    // the tests up to opensAPackedExport use its shape (a T = 60 run long enough to cancel).
    void savePlanStartsBesideTheModel() {
        // Before any model or saved plan: home, never the root folder.
        QVERIFY(!w->planSaveStart().startsWith("//"));
        QVERIFY2(QFileInfo(w->planSaveStart()).absolutePath() != "/", qPrintable(w->planSaveStart()));
    }

    // Help: the shortcut list is every action's shortcut (read from the window), the grid page
    // has every quantizer's colour and explains the bar under a cell, the documentation links
    // exist; the getting-started page opens once on the first interactive start.
    void helpSaysWhatTheAppHas() {
        HelpDialog* h = w->showHelp(HelpDialog::Page::Shortcuts);
        QVERIFY(h && h->isVisible());
        QCOMPARE(h->page(), HelpDialog::Page::Shortcuts);
        int with_keys = 0;
        for (QAction* a : w->findChildren<QAction*>()) {
            if (a->shortcut().isEmpty() || a->text().isEmpty()) continue;
            ++with_keys;
            const QString key = a->shortcut().toString(QKeySequence::NativeText);
            QVERIFY2(h->pageText(HelpDialog::Page::Shortcuts).contains(key), qPrintable(a->text() + " " + key));
        }
        QVERIFY(with_keys >= 8);
        QVERIFY(h->shortcutRows().contains("Run All\tF5"));
        for (const QuantStyle& st : quantStyles())
            if (st.code != kQuantEmpty) QVERIFY2(h->pageText(HelpDialog::Page::Grid).contains(st.label), qPrintable(st.label));
        QVERIFY(h->pageText(HelpDialog::Page::Grid).contains("bar under a cell"));
        QVERIFY(h->documentationFiles().size() >= 5);
        for (const QString& f : h->documentationFiles()) QVERIFY2(QFileInfo(f).isFile(), qPrintable(f));
        h->close();
        // First start: shown once, then never again.
        QSettings().remove("help/first_run_shown");
        w->setInteractive(true);
        QVERIFY(w->showFirstRunHelp());
        QCOMPARE(h->page(), HelpDialog::Page::GettingStarted);
        QVERIFY(h->isVisible());
        QVERIFY(!w->showFirstRunHelp());
        w->setInteractive(false);
        h->close();
    }

    // At the default window size nothing of the edit bar is pushed into the "››" overflow,
    // Apply above all (issue: it hid there).
    void editBarFitsTheWindow() {
        auto* bar = w->findChild<PlanEditBar*>("PlanEditBar");
        QVERIFY(bar);
        // At the default size and at 1000x650 (where the bar wraps onto a second row), every
        // field and Apply are shown whole inside the bar.
        for (const QSize size : {QSize(1400, 900), QSize(1000, 650)}) {
            w->resize(size);
            QTest::qWait(50);
            QApplication::processEvents();
            for (QWidget* f : {static_cast<QWidget*>(bar->quantCombo()), static_cast<QWidget*>(bar->blockCombo()),
                               static_cast<QWidget*>(bar->rankSpin()), static_cast<QWidget*>(bar->itersSpin()),
                               static_cast<QWidget*>(bar->applyButton())}) {
                QVERIFY2(f->isVisible(), f->metaObject()->className());
                const QRect r(f->mapTo(bar, QPoint(0, 0)), f->size());
                QVERIFY2(bar->rect().contains(r), qPrintable(QString("%1 at %2x%3: %4,%5 %6x%7 outside the bar %8x%9")
                                                                  .arg(f->metaObject()->className()).arg(size.width()).arg(size.height())
                                                                  .arg(r.x()).arg(r.y()).arg(r.width()).arg(r.height())
                                                                  .arg(bar->width()).arg(bar->height())));
                QVERIFY(f->width() >= f->sizeHint().width());   // not squeezed
            }
        }
        w->resize(1400, 900);
        QTest::qWait(50);
    }

    void opensTheSyntheticDemo() {
        QElapsedTimer t;
        t.start();
        const QString dir = ensure_synthetic_demo(QStandardPaths::writableLocation(QStandardPaths::CacheLocation));
        w->openModel(dir);
        QVERIFY(wait_for(w.get(), &MainWindow::openFinished, 120000));
        qInfo("synthetic demo opened in %lld ms (first run generates it)", t.elapsed());
        PlanDocument* doc = w->document();
        QCOMPARE(doc->layers(), 8);
        QCOMPARE(doc->columns().size(), 7);
        QCOMPARE(int(doc->resolved().weights.size()), 8 * 7);
        QCOMPARE(QString::fromStdString(w->finetune()->options().data), QDir(dir).filePath("demo-stories.txt"));
        // Save Plan starts in the model's folder (no plan saved yet in this test profile).
        QCOMPARE(QFileInfo(w->planSaveStart()).absolutePath(), QFileInfo(dir).absoluteFilePath());
        QVERIFY(w->planSaveStart().endsWith(".loftq.json"));
    }

    // Plans load off the GUI thread (issue 14): loadPlan() returns to the event loop before the
    // plan is applied (a 1 ms timer keeps firing while thousands of regex rules are compiled and
    // resolved), the plan is applied once its answer arrives, a bad plan's reason reaches the
    // log, and a load that is cancelled or whose model is replaced meanwhile is never applied,
    // even when its answer arrives later.
    void plansLoadOffTheGuiThread() {
        PlanDocument* doc = w->document();
        const QString model = doc->modelPath();
        const std::string dir = loftq::test::make_temp_dir("studio-plan-load");
        const std::string before = loftq::plan_to_json(doc->plan()).dump();
        QVERIFY(!doc->isModified());
        // A big plan: 3000 regex rules, each matching one up_proj of the 8 layers (rank 4..32).
        constexpr int kRules = 3000;
        loftq::Plan big;
        for (int i = 0; i < kRules; ++i) {
            loftq::PlanRule r;
            r.pattern = "layers\\." + std::to_string(i % 8) + "\\.mlp\\.(up|down)_proj";
            r.regex = true;
            r.set.rank = 4 << (i % 4);
            big.rules.push_back(r);
        }
        const QString big_path = QString::fromStdString(dir + "/big.loftq.json");
        loftq::save_plan(big, big_path.toStdString());

        // A bad plan: its reason (file and problem) lands in the log; nothing changes.
        const QString bad_path = QString::fromStdString(dir + "/bad.loftq.json");
        loftq::test::write_file(bad_path.toStdString(), "{\"version\": 1, \"rules\": [{\"match\": \"(unclosed\", \"regex\": true, \"rank\": 8}]}");
        QSignalSpy loaded(w.get(), &MainWindow::planLoaded);
        QVERIFY(w->loadPlan(bad_path));
        QVERIFY(loaded.wait(30000));
        QCOMPARE(loaded.takeFirst().at(0).toBool(), false);
        QVERIFY2(w->log()->lastError().contains("bad.loftq.json"), qPrintable(w->log()->lastError()));
        QCOMPARE(loftq::plan_to_json(doc->plan()).dump(), before);

        // The big plan: the call returns at once, the window is busy (no run, no second load)
        // and its timers run until the answer is applied.
        int ticks = 0;
        QTimer tick;
        tick.setInterval(1);
        connect(&tick, &QTimer::timeout, [&] { ++ticks; });
        tick.start();
        Heartbeat hb;   // the longest GUI stall, applying the answer included
        const int resolves = doc->resolveCount();   // the GUI thread's resolve_plan calls
        QElapsedTimer t;
        t.start();
        QVERIFY(w->loadPlan(big_path));
        QCOMPARE(loftq::plan_to_json(doc->plan()).dump(), before);   // not applied yet
        QVERIFY(w->isLoadingPlan());
        QVERIFY(!w->runAll());
        QVERIFY(!w->loadPlan(big_path));
        QVERIFY(loaded.wait(60000));
        tick.stop();
        qInfo("a plan of %d regex rules loaded in %lld ms; the GUI timer fired %d times meanwhile; longest GUI stall %lld ms",
              kRules, t.elapsed(), ticks, hb.worst);
        QCOMPARE(loaded.takeFirst().at(0).toBool(), true);
        QVERIFY(ticks > 0);
        QCOMPARE(int(doc->plan().rules.size()), kRules);
        QVERIFY(!doc->isModified());
        QVERIFY(!w->isLoadingPlan());
        QVERIFY(w->log()->plainText().contains("loaded plan " + big_path));
        // Applied with the worker's resolution: the GUI thread resolved nothing, nor does it on
        // undo and redo (each side of the edit keeps its resolution).
        QCOMPARE(doc->resolveCount(), resolves);
        const int targets = int(doc->resolved().weights.size());
        doc->undoStack()->undo();
        doc->undoStack()->redo();
        QCOMPARE(int(doc->plan().rules.size()), kRules);
        QCOMPARE(int(doc->resolved().weights.size()), targets);
        QCOMPARE(doc->resolveCount(), resolves);

        // Cancel while it loads: the plan on screen stays, and the late answer is ignored.
        doc->undoStack()->undo();
        const std::string small = loftq::plan_to_json(doc->plan()).dump();
        QCOMPARE(small, before);
        QVERIFY(w->loadPlan(big_path));
        w->cancelRun();
        QCOMPARE(loaded.size(), 1);
        QCOMPARE(loaded.takeFirst().at(0).toBool(), false);
        QVERIFY(!w->isLoadingPlan());
        QThreadPool::globalInstance()->waitForDone();   // the load's answer is queued now
        QTest::qWait(50);
        QCOMPARE(loftq::plan_to_json(doc->plan()).dump(), small);
        QVERIFY(w->log()->plainText().contains("not applied: cancelled"));

        // The model replaced while the plan loads (the same folder opened again: a fresh
        // document): the plan is dropped, the new model keeps its own plan.
        QVERIFY(w->loadPlan(big_path));
        w->openModel(model);
        QCOMPARE(loaded.size(), 1);
        QCOMPARE(loaded.takeFirst().at(0).toBool(), false);
        QVERIFY(wait_for(w.get(), &MainWindow::openFinished, 60000));
        QThreadPool::globalInstance()->waitForDone();
        QTest::qWait(50);
        QVERIFY(loaded.isEmpty());
        QCOMPARE(loftq::plan_to_json(doc->plan()).dump(), before);
        QVERIFY(!doc->isModified());
        QVERIFY(w->log()->plainText().contains("not applied: another model is being opened"));
    }

    void editPlanRunAndWatch() {
        PlanDocument* doc = w->document();
        // Grid edit: layers 0-1 of every module to NF2 rank 8; undo, redo.
        QList<QPoint> cells;
        for (int l = 0; l < 2; ++l)
            for (int c = 0; c < doc->columns().size(); ++c) cells << QPoint(c, l);
        w->grid()->selectCells(cells);
        loftq::SettingsPatch p;
        p.quant = loftq::QuantKind::NF2;
        p.rank = 8;
        p.iters = 4;
        w->grid()->applyPatch(p, "NF2 r8 T4 on layers 0-1");
        QCOMPARE(doc->resolved().weights[0].s.quant, loftq::QuantKind::NF2);
        doc->undoStack()->undo();
        QCOMPARE(doc->resolved().weights[0].s.quant, loftq::QuantKind::NF4);
        doc->undoStack()->redo();
        QCOMPARE(doc->resolved().weights[0].s.rank, 8);

        Heartbeat hb;
        QElapsedTimer t;
        t.start();
        QVERIFY(w->runAll());
        QVERIFY(wait_for(w.get(), &MainWindow::runFinished, 300000));
        qInfo("full run of %zu weights in %lld ms; longest GUI stall %lld ms (heartbeat 5 ms)",
              doc->resolved().weights.size(), t.elapsed(), hb.worst);
        // The GUI thread never stops answering for long: the stall bound a user would notice
        // (the run's events are coalesced and plotted on timers; numerics on job threads).
        QVERIFY2(hb.worst < 1000, qPrintable(QString("GUI thread stalled %1 ms").arg(hb.worst)));
        auto r = w->lastResult();
        QVERIFY(r);
        QCOMPARE(r->weights.size(), doc->resolved().weights.size());

        // The chart follows the selection: layer 0 and 1 cells, T = 4 points each, engine numbers.
        ErrorChart* chart = w->chart();
        chart->replotNow();
        QCOMPARE(chart->curveCount(), cells.size());
        RunResults* res = w->results();
        for (int i = 0; i < chart->curveCount(); ++i) {
            const QString name = chart->curveWeight(i);
            const int wi = res->indexOf(name);
            QVERIFY(wi >= 0);
            const auto& engine = r->weights[size_t(wi)];
            QVector<double> ys = chart->curveValues(i);
            QCOMPARE(ys.size(), 4);
            for (int s = 0; s < 4; ++s) QCOMPARE(ys[s], engine.steps[size_t(s)].error);
            QCOMPARE(chart->baselineValue(i), engine.baseline);
        }
        // The heatmap holds every weight's final error.
        ErrorHeatmap* hm = w->heatmap();
        hm->replotNow();
        for (size_t i = 0; i < r->weights.size(); ++i) {
            const auto& e = r->weights[i];
            const int col = int(res->modules().indexOf(QString::fromStdString(e.plan.module)));
            QCOMPARE(hm->valueAt(e.plan.layer, col), e.final_error);
            QVERIFY(e.final_error < e.baseline);
        }
    }

    // What the GUI drew, the CLI runs: same plan file -> the same numbers to the last bit.
    void cliRunsWhatTheGuiDrew() {
        const QString cli = qEnvironmentVariable("LOFTQ_CLI");
        if (cli.isEmpty() || !QFileInfo::exists(cli)) QSKIP("LOFTQ_CLI not set (run through ctest)");
        std::string dir = loftq::test::make_temp_dir("studio-plan");
        const QString plan = QString::fromStdString(dir + "/edited.loftq.json");
        QVERIFY(w->savePlan(plan));
        QVERIFY(!w->document()->isModified());
        const QString out = QString::fromStdString(dir + "/cli-out");
        QProcess proc;
        proc.start(cli, {"quantize", w->document()->modelPath(), "--plan", plan, "--out", out, "--threads", "2", "--device", "cpu", "--quiet"});
        QVERIFY(proc.waitForFinished(300000));
        QVERIFY2(proc.exitCode() == 0, proc.readAllStandardError().constData());
        std::ifstream in((out + "/loftq_metrics.json").toStdString());
        auto j = nlohmann::json::parse(in);
        auto r = w->lastResult();
        QCOMPARE(j["weights"].size(), r->weights.size());
        for (size_t i = 0; i < r->weights.size(); ++i) {
            QCOMPARE(QString::fromStdString(j["weights"][i]["name"].get<std::string>()), QString::fromStdString(r->weights[i].plan.name));
            QCOMPARE(j["weights"][i]["final_error"].get<double>(), r->weights[i].final_error);
        }
    }

    // Results that merge and never lie (issue: daily use). After the full run: a changed cell
    // is marked stale everywhere it shows (heatmap veil and tooltip, grid role and tooltip, chart
    // label, improvement means); Run Selected re-runs just that cell and merges, every other
    // weight keeping its exact numbers; undo marks the re-run stale again (its numbers are of
    // the undone settings); a cancelled re-run gives back the earlier results it did not redo.
    void runSelectedMergesAndEditsMarkStale() {
        PlanDocument* doc = w->document();
        RunResults* res = w->results();
        ErrorHeatmap* map = w->heatmap();
        const int n = int(doc->resolved().weights.size());
        QCOMPARE(res->count(), n);
        QMap<QString, double> before;
        for (int i = 0; i < res->count(); ++i) {
            QVERIFY(res->weight(i).done && !res->weight(i).stale);
            before[res->weight(i).name] = res->weight(i).final_error;
        }
        const int layer = 3, col = 0;
        const QString name = QString::fromStdString(doc->resolved().weights[size_t(doc->weightAt(layer, col))].name);
        w->grid()->selectCells({QPoint(col, layer)});
        loftq::SettingsPatch p;
        p.quant = loftq::QuantKind::NF2;
        w->grid()->applyPatch(p, "NF2 on one cell");
        const int wi = res->indexOf(name);
        QVERIFY(res->weight(wi).stale);
        QVERIFY2(res->weight(wi).staleReason.contains("nf4") && res->weight(wi).staleReason.contains("nf2"),
                 qPrintable(res->weight(wi).staleReason));
        QCOMPARE(res->staleCount(), 1);
        map->replotNow();
        QCOMPARE(map->staleMarkCount(), 1);
        QVERIFY(map->staleMarkAt(layer, col));
        QVERIFY(map->toolTipAt(layer, col).startsWith("STALE"));
        QCOMPARE(map->valueAt(layer, col), before[name]);   // the old number, shown as such
        PlanGridModel* gm = w->grid()->gridModel();
        QTRY_VERIFY(gm->index(layer, col).data(PlanGridModel::StaleRole).toBool());
        QVERIFY(!gm->index(layer, col + 1).data(PlanGridModel::StaleRole).toBool());
        QVERIFY(gm->index(layer, col).data(Qt::ToolTipRole).toString().contains("stale result"));
        ErrorChart* chart = w->chart();
        chart->setWeights({name});
        chart->replotNow();
        QCOMPARE(chart->curveCount(), 1);
        QVERIFY(chart->curveLabel(0).endsWith("(stale)"));

        // Run Selected: only that cell runs; the rest keeps its numbers bit for bit.
        QVERIFY(w->runSelected());
        QVERIFY(wait_for(w.get(), &MainWindow::runFinished, 300000));
        QCOMPARE(res->count(), n);
        QCOMPARE(int(w->lastResult()->weights.size()), 1);
        for (int i = 0; i < res->count(); ++i) {
            const WeightRun& r = res->weight(i);
            QVERIFY(r.done && !r.stale);
            if (r.name != name) QCOMPARE(r.final_error, before[r.name]);
        }
        QCOMPARE(res->weight(res->indexOf(name)).settings.quant, loftq::QuantKind::NF2);
        QCOMPARE(res->weight(res->indexOf(name)).final_error, w->lastResult()->weights[0].final_error);
        QVERIFY(res->weight(res->indexOf(name)).final_error > before[name]);   // NF2 is worse than NF4
        map->replotNow();
        QCOMPARE(map->staleMarkCount(), 0);
        int cells = 0;
        for (int l = 0; l < res->layers(); ++l)
            for (int c = 0; c < res->modules().size(); ++c)
                cells += std::isfinite(map->valueAt(l, c)) ? 1 : 0;
        QCOMPARE(cells, n);   // nothing wiped

        // Undo: the plan says NF4 again; the result on show is NF2's, so it is stale.
        doc->undoStack()->undo();
        QVERIFY(res->weight(res->indexOf(name)).stale);
        QCOMPARE(res->staleCount(), 1);

        // A cancelled re-run of a whole layer at T = 60 loses nothing: what it did not finish
        // comes back as it was (the cell above still stale, the others current).
        QMap<QString, double> mid;
        for (int i = 0; i < res->count(); ++i) mid[res->weight(i).name] = res->weight(i).final_error;
        QList<QPoint> row;
        for (int c = 0; c < doc->columns().size(); ++c) row << QPoint(c, 5);
        w->grid()->selectCells(row);
        loftq::SettingsPatch slow;
        slow.iters = 60;
        w->grid()->applyPatch(slow, "T = 60 on layer 5");
        QCOMPARE(res->staleCount(), 1 + int(row.size()));
        QVERIFY(w->runSelected());
        w->cancelRun();
        QVERIFY(!wait_for(w.get(), &MainWindow::runFinished, 60000));
        QCOMPARE(res->count(), n);
        int restored = 0;
        for (int i = 0; i < res->count(); ++i) {
            const WeightRun& r = res->weight(i);
            QVERIFY2(r.done, qPrintable(r.name));
            if (r.settings.iters == 60) continue;   // finished before the cancel landed: new and current
            QCOMPARE(r.final_error, mid[r.name]);
            restored += r.layer == 5 ? 1 : 0;
        }
        QVERIFY(restored >= 1);
        doc->undoStack()->undo();   // T back; layer 5's restored results are current again
        for (int i = 0; i < res->count(); ++i)
            if (res->weight(i).layer == 5 && res->weight(i).settings.iters != 60) QVERIFY(!res->weight(i).stale);
    }

    // A layer kept whole in 16-bit still has its row in the heatmap (8 grid rows, 8 heatmap
    // rows), drawn as "no result", not dropped.
    void heatmapKeepsKeptLayers() {
        PlanDocument* doc = w->document();
        QList<QPoint> row;
        for (int c = 0; c < doc->columns().size(); ++c) row << QPoint(c, doc->layers() - 1);
        w->grid()->selectCells(row);
        loftq::SettingsPatch keep;
        keep.target = false;
        w->grid()->applyPatch(keep, "keep the last layer");
        QVERIFY(w->runAll());
        QVERIFY(wait_for(w.get(), &MainWindow::runFinished, 300000));
        ErrorHeatmap* map = w->heatmap();
        map->replotNow();
        QCOMPARE(map->cellGrid(), QSize(int(doc->columns().size()), doc->layers()));
        for (int c = 0; c < doc->columns().size(); ++c) {
            QVERIFY(std::isnan(map->valueAt(doc->layers() - 1, c)));
            QVERIFY(std::isfinite(map->valueAt(0, c)));
        }
        doc->undoStack()->undo();
        QVERIFY(w->runAll());   // back to results for every cell, as the tests below expect
        QVERIFY(wait_for(w.get(), &MainWindow::runFinished, 300000));
    }

    // Opening another model (or the demo) with unsaved plan edits asks first; Cancel keeps
    // everything as it was.
    void unsavedPlanIsNotDiscardedSilently() {
        PlanDocument* doc = w->document();
        const QString model = doc->modelPath();
        w->grid()->selectCells({QPoint(1, 1)});
        loftq::SettingsPatch p;
        p.rank = 4;
        w->grid()->applyPatch(p, "r4 on one cell");
        QVERIFY(doc->isModified());
        const std::string plan = loftq::plan_to_json(doc->plan()).dump();
        int asked = 0;
        w->setUnsavedPlanPrompt([&] {
            ++asked;
            return int(QMessageBox::Cancel);
        });
        w->openModel(model);
        QVERIFY(!wait_for(w.get(), &MainWindow::openFinished, 30000));
        QCOMPARE(asked, 1);
        w->openDemo();
        QCOMPARE(asked, 2);
        QTest::qWait(100);
        QCOMPARE(doc->modelPath(), model);
        QCOMPARE(loftq::plan_to_json(doc->plan()).dump(), plan);
        QVERIFY(doc->isModified());
        w->setUnsavedPlanPrompt({});
        doc->undoStack()->undo();
    }

    // The toolbar's device chooser: CUDA is listed, disabled with the reason when no GPU can be
    // used; a run follows the choice (Auto: CUDA when available, else the CPU), and says where
    // it ran in the log.
    void deviceChooser() {
        DeviceCombo* dc = w->deviceCombo();
        QVERIFY(dc);
        const loftq::CudaStatus& st = loftq::cuda_status();
        const int cuda = dc->findData(int(loftq::ComputeDevice::Cuda));
        QVERIFY(cuda >= 0);
        auto* model = qobject_cast<QStandardItemModel*>(dc->model());
        QVERIFY(model);
        QCOMPARE(model->item(cuda)->isEnabled(), st.available);
        if (!st.available)
            QCOMPARE(dc->itemData(cuda, Qt::ToolTipRole).toString(), QString::fromStdString(st.why_not));
        dc->setDevice(loftq::ComputeDevice::Cuda);  // falls back to Auto without a GPU
        QCOMPARE(dc->device(), st.available ? loftq::ComputeDevice::Cuda : loftq::ComputeDevice::Auto);
        dc->setDevice(loftq::ComputeDevice::Auto);
        w->grid()->selectCells({QPoint(0, 0)});
        QVERIFY(w->runSelected());
        QVERIFY(wait_for(w.get(), &MainWindow::runFinished, 300000));
        QCOMPARE(w->lastResult()->device, st.available ? loftq::ComputeDevice::Cuda : loftq::ComputeDevice::Cpu);
        QVERIFY(w->log()->plainText().contains(st.available ? "device: cuda" : "device: cpu (CUDA: "));
        dc->setDevice(loftq::ComputeDevice::Cpu);
    }

    void cancelMidRun() {
        PlanDocument* doc = w->document();
        loftq::WeightSettings heavy = doc->plan().defaults;
        heavy.iters = 60;  // long enough to cancel in the middle
        doc->setDefaults(heavy, "T = 60");
        // When each weight started, on the job's own clock (seconds since the job began): the
        // GUI receives events late when it is busy, so counting what it has received at the
        // cancel would blame the engine for the GUI's lag.
        auto* job = w->findChild<StudioJob*>();
        QVERIFY(job);
        std::vector<double> started_at;
        auto conn = connect(job, &StudioJob::event, this, [&](const loftq::JobEvent& e) {
            if (e.kind == loftq::EventKind::WeightStarted) started_at.push_back(e.elapsed);
        });
        QElapsedTimer since_run;
        since_run.start();   // the job's clock starts after this: its times are at most ours
        QVERIFY(w->runAll());
        QTRY_VERIFY_WITH_TIMEOUT(w->results()->weightsDone() >= 2, 120000);
        QElapsedTimer t;
        t.start();
        const double cancel_at = double(since_run.nsecsElapsed()) * 1e-9;
        w->cancelRun();
        QVERIFY(!wait_for(w.get(), &MainWindow::runFinished, 60000));   // a ceiling against hangs
        disconnect(conn);
        qInfo("cancel honoured after %lld ms", t.elapsed());
        // The cancel lands at the next step poll: the weights in flight (one per worker, at most
        // the hardware threads) may not even finish, and a worker that had just passed its check
        // may start one more; no other weight starts after the cancel. T = 60 per weight makes
        // any other outcome a missed cancel, not a slow machine.
        const long late = std::count_if(started_at.begin(), started_at.end(), [&](double s) { return s > cancel_at; });
        QVERIFY2(late <= std::max(1, QThread::idealThreadCount()),
                 qPrintable(QString("%1 of %2 weights started after the cancel").arg(late).arg(started_at.size())));
        QCOMPARE(w->results()->state(), RunResults::State::Cancelled);
        QVERIFY(w->results()->weightsDone() < int(doc->resolved().weights.size()));
        doc->undoStack()->undo();  // back to T = 4/5
        QCOMPARE(doc->plan().defaults.iters, 5);
    }

    // The Fine-tune tab on the demo (its tokenizer and stories come with it): two runs overlaid,
    // LoftQ then QLoRA at the same bits; curves hold every step; the adapter lands on disk; Stop
    // ends a long run promptly.
    void finetuneTabTrainsAndOverlaysRuns() {
        {   // Not an export: the export start is offered disabled, and runs are named for what they train.
            FinetunePanel* ft = w->finetune();
            auto* init = ft->findChild<QComboBox*>("FinetuneInit");
            QVERIFY(init);
            auto* items = qobject_cast<QStandardItemModel*>(init->model());
            QVERIFY(!items->item(init->findData(int(loftq::InitKind::Export)))->isEnabled());
            QCOMPARE(ft->options().load.init, loftq::InitKind::Loftq);
            QVERIFY2(ft->runLabel().startsWith("loftq ") && ft->runLabel().contains(" T"), qPrintable(ft->runLabel()));
            init->setCurrentIndex(init->findData(int(loftq::InitKind::Lora16)));
            QVERIFY2(ft->runLabel().startsWith("lora16 r"), qPrintable(ft->runLabel()));
            QVERIFY(!ft->findChild<QWidget*>("FinetuneQuant")->isEnabled());
            QVERIFY(!ft->findChild<QWidget*>("FinetuneIters")->isEnabled());
            init->setCurrentIndex(init->findData(int(loftq::InitKind::Loftq)));
            QVERIFY(ft->findChild<QWidget*>("FinetuneQuant")->isEnabled());
        }
        FinetunePanel* ft = w->finetune();
        loftq::TrainOptions o = ft->options();
        QVERIFY2(QFileInfo::exists(QString::fromStdString(o.data)), o.data.c_str());  // demo-stories.txt by default
        const std::string dir = loftq::test::make_temp_dir("studio-ft");
        o.steps = 8;
        o.batch = 2;
        o.seq = 32;
        o.eval_every = 4;
        o.threads = 2;
        o.load.init = loftq::InitKind::Loftq;
        o.load.quant = "nf2";
        o.load.rank = 4;
        o.load.iters = 1;
        o.out_dir = dir + "/loftq";
        ft->setOptions(o);
        QSignalSpy done(ft, &FinetunePanel::runFinished);
        QVERIFY(ft->start());
        QVERIFY(done.wait(300000));
        QVERIFY2(done.takeFirst().at(0).toBool(), qPrintable(w->log()->plainText().right(400)));
        TrainingCurves* c = ft->curves();
        QCOMPARE(c->trainPoints(0).size(), 8);
        QVERIFY(c->evalPoints(0).size() >= 2);
        QVERIFY(QFileInfo::exists(QString::fromStdString(dir + "/loftq/adapter/adapter_model.safetensors")));
        QVERIFY(QFileInfo::exists(QString::fromStdString(dir + "/loftq/metrics.jsonl")));
        const double loftq_final = ft->lastResult().final_eval_loss;
        const QString loftq_sample = QString::fromStdString(ft->lastResult().sample);
        // The original model was measured first on the same held-out examples: the dashed
        // reference, recorded in metrics.jsonl (this synthetic model is untrained, so no ordering).
        QVERIFY(std::isfinite(c->reference()));
        QVERIFY(std::isfinite(ft->lastResult().original_eval_loss));
        QCOMPARE(c->reference(), ft->lastResult().original_eval_loss);
        QCOMPARE(c->evalPoints(0)[0].x(), 0.0);   // the runs' own curves start at step 0; the reference is no point of them
        QVERIFY(loftq::read_text_file(dir + "/loftq/metrics.jsonl").find("\"eval_original\"") != std::string::npos);

        o.load.init = loftq::InitKind::Qlora;
        o.out_dir = dir + "/qlora";
        ft->setOptions(o);
        QVERIFY(ft->start());
        QVERIFY(done.wait(300000));
        QVERIFY(done.takeFirst().at(0).toBool());
        QCOMPARE(c->runCount(), 2);
        // The same run read back from its metrics.jsonl (what the CLI writes) overlays identically.
        QVERIFY(ft->openRun(QString::fromStdString(dir + "/loftq")));
        QCOMPARE(c->runCount(), 3);
        QCOMPARE(c->trainPoints(2).size(), c->trainPoints(0).size());
        for (int i = 0; i < c->trainPoints(0).size(); ++i) QCOMPARE(float(c->trainPoints(2)[i].y()), float(c->trainPoints(0)[i].y()));
        QCOMPARE(c->evalPoints(2).size(), c->evalPoints(0).size());
        qInfo("demo fine-tune, 8 steps, NF2 r4: held-out loss LoftQ %.4f, QLoRA %.4f (original model %.4f)", loftq_final,
              ft->lastResult().final_eval_loss, c->reference());
        // Same model and held-out data: not measured again.
        QVERIFY(loftq::read_text_file(dir + "/qlora/metrics.jsonl").find("\"eval_original\"") == std::string::npos);
        QVERIFY(c->legendNames().contains("original model (held-out)"));

        // The runs table: selecting a run shows its sample and highlights its curves; names are
        // unique in the legend; renaming keeps them unique; a run can be removed.
        QTableWidget* runs = ft->runsTable();
        QCOMPARE(runs->rowCount(), 3);
        runs->setCurrentCell(0, 1);
        QCOMPARE(c->highlight(), 0);
        QCOMPARE(ft->sampleText(), loftq_sample);
        runs->setCurrentCell(1, 1);
        QCOMPARE(c->highlight(), 1);
        QVERIFY(ft->sampleText() != loftq_sample || loftq_sample.isEmpty());
        QVERIFY(ft->openRun(QString::fromStdString(dir + "/loftq")));   // the same folder twice
        QCOMPARE(c->runName(3), c->runName(2) + " (2)");
        c->replotNow();
        QVERIFY(c->legendNames().contains(c->runName(3)));
        QVERIFY(!c->legendCoversPlot());   // below the plot, never over the curves
        runs->item(0, 0)->setText("mine");
        QCOMPARE(c->runName(0), QString("mine"));
        runs->item(1, 0)->setText("mine");
        QCOMPARE(c->runName(1), QString("mine (2)"));
        QCOMPARE(runs->item(1, 0)->text(), QString("mine (2)"));
        QVERIFY(ft->removeRunAt(3));
        QVERIFY(!c->runAlive(3));
        QCOMPARE(runs->rowCount(), 3);
        c->replotNow();
        QVERIFY(!c->legendNames().contains(c->runName(2) + " (2)"));

        o.steps = 100000;
        o.out_dir = dir + "/long";
        ft->setOptions(o);
        QVERIFY(ft->start());
        const int long_run = c->runCount() - 1;
        QTRY_VERIFY_WITH_TIMEOUT(c->trainPoints(long_run).size() >= 1 || !ft->running(), 120000);
        QVERIFY(!ft->removeRunAt(runs->rowCount() - 1));   // the run in progress stays
        QElapsedTimer t;
        t.start();
        ft->stop();
        QVERIFY(done.wait(30000));
        QVERIFY(!done.takeFirst().at(0).toBool());
        qInfo("fine-tune stop honoured after %lld ms", t.elapsed());

        // From the current plan: a mixed plan edited in the grid is decomposed in memory and
        // trained, no export; the fields it ignores are disabled; the run says what it trained and
        // its adapter records the plan (so `loftq eval --adapter` rebuilds the same base).
        PlanDocument* doc = w->document();
        w->grid()->selectCells({QPoint(0, 0), QPoint(1, 0)});
        loftq::SettingsPatch p;
        p.quant = loftq::QuantKind::NF2;
        p.rank = 2;
        p.iters = 1;
        w->grid()->applyPatch(p, "NF2 r2 T1 on two cells");
        auto* init = ft->findChild<QComboBox*>("FinetuneInit");
        init->setCurrentIndex(init->findData(100));   // kPlanStart
        QVERIFY(init->currentData().toInt() == 100);
        QVERIFY(!ft->findChild<QWidget*>("FinetuneQuant")->isEnabled());
        QVERIFY(!ft->findChild<QWidget*>("FinetuneRank")->isEnabled());
        QVERIFY2(ft->runLabel().startsWith("loftq plan: ") && ft->runLabel().contains("nf2 r2 T1 x2"), qPrintable(ft->runLabel()));
        loftq::TrainOptions po = ft->options();
        QVERIFY(po.load.plan);
        QCOMPARE(po.load.init, loftq::InitKind::Loftq);
        QCOMPARE(loftq::plan_to_json(*po.load.plan).dump(), [&] {
            loftq::Plan q = doc->plan();
            q.model = doc->modelPath().toStdString();
            return loftq::plan_to_json(q).dump();
        }());
        po.steps = 2;
        po.eval_every = 0;
        po.out_dir = dir + "/plan";
        ft->setOptions(po);
        QCOMPARE(init->currentData().toInt(), 100);
        QVERIFY(ft->start());
        QVERIFY(done.wait(300000));
        QVERIFY2(done.takeFirst().at(0).toBool(), qPrintable(w->log()->plainText().right(400)));
        const auto base = nlohmann::json::parse(loftq::read_text_file(dir + "/plan/adapter/loftq_base.json"));
        QVERIFY(base.contains("plan"));
        for (int col : {0, 1}) {
            const std::string n = doc->resolved().weights[size_t(doc->weightAt(0, col))].name;
            QCOMPARE(base["plan"]["overrides"][n]["quant"], "nf2");
            QCOMPARE(base["plan"]["overrides"][n]["rank"], 2);
        }
        QVERIFY(c->runCount() >= 6);
        doc->undoStack()->undo();
        init->setCurrentIndex(init->findData(int(loftq::InitKind::Loftq)));
    }

    void exportWritesEverythingOrNothing() {
        std::string dir = loftq::test::make_temp_dir("studio-export");
        const QString out = QString::fromStdString(dir + "/export");
        QVERIFY(w->exportTo(out, true, false));
        QVERIFY(wait_for(w.get(), &MainWindow::exportFinished, 300000));
        for (const char* f : {"config.json", "model.safetensors", "loftq_init/adapter_model.safetensors",
                              "loftq_init/adapter_config.json", "loftq_metrics.json", "loftq_metrics.csv"})
            QVERIFY2(QFileInfo::exists(out + "/" + f), f);
        for (const char* f : {"plots/error_vs_step.png", "plots/final_error_heatmap.png", "plots/improvement_per_layer.png"}) {
            QImage img(out + "/" + f);
            QVERIFY2(!img.isNull() && img.width() >= 600, f);
        }
        QVERIFY(QDir(out).entryList({"*.partial"}, QDir::Files).isEmpty());
        // A second export into the same folder without "allow non-empty" is refused, cleanly.
        QVERIFY(w->exportTo(out, true, false));
        QVERIFY(!wait_for(w.get(), &MainWindow::exportFinished, 60000));
        QVERIFY(w->log()->plainText().contains("Export failed"));
        QVERIFY(w->log()->plainText().contains("Replace the folder's contents"));   // the app's words, not only a CLI flag
        QVERIFY(QFileInfo::exists(out + "/loftq_metrics.json"));  // the earlier export is intact
        // The same plan as a packed low-bit export, chosen in the dialog's format list.
        const QString packed = QString::fromStdString(dir + "/packed");
        QVERIFY(w->exportTo(packed, false, false, loftq::ExportFormat::Packed));
        QVERIFY(wait_for(w.get(), &MainWindow::exportFinished, 300000));
        const loftq::ExportSummary es = loftq::read_packed_export(packed.toStdString());
        QCOMPARE(loftq::resolve_plan(es.plan, es.tensors).weights.size(), w->document()->resolved().weights.size());
        QCOMPARE(es.stored_quantized_bytes, w->budgetBar()->size().quantized_bytes);

        // What the folder takes on disk is what the bar and the dialog said (payloads exact,
        // headers estimated: within 1%), not the plan's size (LoRA at 16-bit, once).
        auto disk_of = [](const QString& d) {
            uint64_t n = 0;
            for (QDirIterator it(d, {"*.safetensors"}, QDir::Files, QDirIterator::Subdirectories); it.hasNext();) n += QFileInfo(it.next()).size();
            return n;
        };
        const uint64_t bar_packed = w->budgetBar()->diskBytesPacked();
        QVERIFY(bar_packed > w->budgetBar()->size().total_bytes);
        QVERIFY2(std::abs(double(bar_packed) - double(disk_of(packed))) <= 0.01 * double(disk_of(packed)),
                 qPrintable(QString("bar %1, disk %2").arg(bar_packed).arg(disk_of(packed))));
        QVERIFY(w->budgetBar()->summaryText().contains("packed export ≈ " + format_bytes_decimal(bar_packed)));
        const uint64_t hf = loftq::export_footprint(w->document()->resolved(), w->document()->tensors(), loftq::ExportFormat::Hf).total();
        QVERIFY2(std::abs(double(hf) - double(disk_of(out))) <= 0.01 * double(disk_of(out)),
                 qPrintable(QString("hf estimate %1, disk %2").arg(hf).arg(disk_of(out))));
        QVERIFY(w->budgetBar()->detailsText().contains(QString::number(hf) + " B"));

        // The dialog: says what the chosen format takes; a non-empty folder keeps it open with a
        // message (nothing entered is lost) until Replace is checked; bnb-nf4 of a non-NF4 plan too.
        ExportDialog dlg(w->document()->resolved(), w->document()->tensors());
        dlg.setFormat(loftq::ExportFormat::Packed);
        dlg.setFolder(out);
        dlg.setReplace(false);
        QVERIFY2(dlg.footprintText().contains(format_bytes_decimal(bar_packed)), qPrintable(dlg.footprintText()));
        QVERIFY(!dlg.tryAccept());
        QVERIFY2(dlg.problemText().contains("not empty"), qPrintable(dlg.problemText()));
        QCOMPARE(dlg.result(), int(QDialog::Rejected));
        QCOMPARE(dlg.folder(), out);
        dlg.setFormat(loftq::ExportFormat::Hf);
        QVERIFY(dlg.footprintText().contains(format_bytes_decimal(hf)));
        const bool all_nf4_64 = std::all_of(w->document()->resolved().weights.begin(), w->document()->resolved().weights.end(),
                                            [](const auto& x) { return x.s.quant == loftq::QuantKind::NF4 && x.s.block == 64; });
        dlg.setReplace(true);
        dlg.setFormat(loftq::ExportFormat::BnbNf4);
        if (!all_nf4_64) {
            QVERIFY(!dlg.tryAccept());
            QVERIFY2(dlg.problemText().contains("NF4"), qPrintable(dlg.problemText()));
        }
        dlg.setFormat(loftq::ExportFormat::Hf);
        QVERIFY(dlg.tryAccept());
        QCOMPARE(dlg.result(), int(QDialog::Accepted));
    }

    // Reload: a packed export opens read-only with its per-weight quantizers on the grid and its
    // recorded errors in the heatmap; runs are refused (it is already quantized); the Fine-tune
    // tab takes it as an export.
    void opensAPackedExport() {
        const std::string dir = loftq::test::make_temp_dir("studio-packed");
        loftq::QuantizeOptions q;
        q.model = w->document()->modelPath().toStdString();
        q.out_dir = dir + "/packed";
        q.format = loftq::ExportFormat::Packed;
        q.plan.defaults.quant = loftq::QuantKind::NF2;
        q.plan.defaults.rank = 4;
        q.plan.defaults.iters = 2;
        loftq::SettingsPatch nf4;
        nf4.quant = loftq::QuantKind::NF4;
        q.plan.overrides["model.layers.0.self_attn.q_proj.weight"] = nf4;
        q.threads = 2;
        // The budget bar, shown this plan on the source model, predicts the export's stored
        // codes + scales to the byte.
        PlanDocument* src = w->document();
        src->replacePlan(q.plan, "plan of the packed export");
        const uint64_t predicted = w->budgetBar()->size().quantized_bytes;
        src->undoStack()->undo();
        const loftq::QuantizeResult r = loftq::run_quantize(q, {}, loftq::CancelToken{});
        QCOMPARE(loftq::read_packed_export(q.out_dir).stored_quantized_bytes, predicted);
        w->openModel(QString::fromStdString(q.out_dir));
        QVERIFY(wait_for(w.get(), &MainWindow::openFinished, 60000));
        QVERIFY(w->openedExport());
        PlanDocument* doc = w->document();
        QCOMPARE(doc->resolved().weights.size(), r.weights.size());
        for (size_t i = 0; i < r.weights.size(); ++i) {
            QCOMPARE(QString::fromStdString(doc->resolved().weights[i].name), QString::fromStdString(r.weights[i].plan.name));
            QVERIFY(doc->resolved().weights[i].s.quant == r.weights[i].plan.s.quant);
        }
        ErrorHeatmap* hm = w->heatmap();
        hm->replotNow();
        RunResults* res = w->results();
        for (const auto& e : r.weights) {
            const int col = int(res->modules().indexOf(QString::fromStdString(e.plan.module)));
            QCOMPARE(hm->valueAt(e.plan.layer, col), e.final_error);
        }
        QVERIFY(!w->runAll());
        QVERIFY(!w->log()->plainText().contains("differ from the export's manifest"));
        // The Fine-tune tab starts from the export as stored, named after it; the quantizer,
        // rank and T fields (which an export start ignores) are disabled.
        FinetunePanel* ft = w->finetune();
        QCOMPARE(ft->options().load.init, loftq::InitKind::Export);
        QVERIFY(ft->runLabel().startsWith("export "));
        for (const char* name : {"FinetuneQuant", "FinetuneRank", "FinetuneIters"}) {
            QWidget* f = ft->findChild<QWidget*>(name);
            QVERIFY2(f && !f->isEnabled(), name);
        }
        // One flipped code bit: the export still opens (to look at it), and the log warns, naming
        // the changed file (the opening reads it against the manifest's checksums off the GUI thread).
        const std::string weights = q.out_dir + "/model.safetensors";
        loftq::test::flip_bits(weights, -8, 0x01);   // the first byte of an fp32 value (or a code byte)
        w->openModel(QString::fromStdString(q.out_dir));
        QVERIFY(wait_for(w.get(), &MainWindow::openFinished, 60000));
        QVERIFY(w->openedExport());
        const QString log = w->log()->plainText();
        QVERIFY2(log.contains("differ from the export's manifest") && log.contains("model.safetensors: changed"), qPrintable(log.right(600)));
    }

    // `loftq-studio --demo` (File > Open Demo Model): the shipped stories260K, found beside the
    // program (the build's copy) or in the source tree, opened byte for byte from a copy in the
    // cache with its tokenizer beside it and a story corpus for the Fine-tune tab.
    void opensTheShippedDemo() {
        const QString shipped = shipped_demo_dir();
        QVERIFY2(!shipped.isEmpty(), "stories260K is neither beside the program nor in the source tree");
        QCOMPARE(QFileInfo(shipped + "/stories260K.bin").size(), kStoriesBytes);
        QCOMPARE(sha256_hex(shipped + "/stories260K.bin"), kStoriesSha256);
        QCOMPARE(sha256_hex(shipped + "/tok512.bin"), kTok512Sha256);
        QVERIFY(QFileInfo::exists(shipped + "/LICENSE"));

        QElapsedTimer t;
        t.start();
        w->openDemo();
        QVERIFY(wait_for(w.get(), &MainWindow::openFinished, 120000));
        qInfo("stories260K demo opened in %lld ms", t.elapsed());
        PlanDocument* doc = w->document();
        QVERIFY(!w->openedExport());
        const QString path = doc->modelPath();
        const QDir dir = QFileInfo(path).dir();
        QCOMPARE(QFileInfo(path).fileName(), QString("stories260K.bin"));
        QCOMPARE(sha256_hex(path), kStoriesSha256);
        QCOMPARE(sha256_hex(dir.filePath("tok512.bin")), kTok512Sha256);
        QVERIFY(QFileInfo::exists(dir.filePath("LICENSE")));
        QCOMPARE(doc->layers(), 5);
        QCOMPARE(doc->columns().size(), 7);
        QCOMPARE(int(doc->resolved().weights.size()), 35);
        QMap<QString, QString> facts;
        for (const auto& [k, v] : open_model(path).facts) facts[k] = v;
        QCOMPARE(facts["Format"], QString("llama2.c .bin"));
        QCOMPARE(facts["Layers"], QString("5"));
        QCOMPARE(facts["Hidden size"], QString("64"));
        QCOMPARE(facts["Intermediate size"], QString("172"));
        QCOMPARE(facts["Attention heads"], QString("8 (KV 4)"));
        QCOMPARE(facts["Vocabulary"], QString("512"));
        // The previous model's corpus gives way to the demo's.
        const QString corpus = dir.filePath("demo-stories.txt");
        QCOMPARE(QString::fromStdString(w->finetune()->options().data), corpus);
        QVERIFY(QFileInfo(corpus).size() > 10000);
        // Opening it again reuses the copy.
        const QDateTime made = QFileInfo(corpus).lastModified();
        w->openDemo();
        QVERIFY(wait_for(w.get(), &MainWindow::openFinished, 60000));
        QCOMPARE(doc->modelPath(), path);
        QCOMPARE(QFileInfo(corpus).lastModified(), made);
    }

    // A .gguf opens like any checkpoint (issue 15): the plan grid, the overview, the same targets.
    void opensAGguf() {
        const std::string dir = loftq::test::make_temp_dir("studio-gguf");
        loftq::GgufExportOptions o;
        o.source.model = loftq::test::shipped_stories260k();
        o.out = dir + "/stories260K-f16.gguf";
        loftq::export_gguf(o);
        w->openModel(QString::fromStdString(o.out));
        QVERIFY(wait_for(w.get(), &MainWindow::openFinished, 60000));
        QCOMPARE(w->document()->modelPath(), QString::fromStdString(o.out));
        QCOMPARE(w->document()->layers(), 5);
        QCOMPARE(int(w->document()->resolved().weights.size()), 35);
        QMap<QString, QString> facts;
        for (const auto& [k, v] : open_model(QString::fromStdString(o.out)).facts) facts[k] = v;
        QCOMPARE(facts["Format"], QString("GGUF (llama.cpp)"));
        QCOMPARE(facts["Vocabulary"], QString("512"));
        w->openDemo();   // the tests after this one work on the shipped demo
        QVERIFY(wait_for(w.get(), &MainWindow::openFinished, 60000));
    }

    // The first look at the demo as it comes: Run LoftQ with the default plan, then fine-tune from
    // the Fine-tune tab with its defaults (corpus, tokenizer, NF4 r8 LoftQ start): real curves,
    // a held-out loss of a trained model that fine-tuning lowers, and a real sample.
    // The main window and the Fine-tune tab at 1000x650, 1400x880 and 1920x1080, and again after
    // shrinking and growing back: no editor, label or legend clipped or sticking out (geometry
    // against size hints and parents). With LOFTQ_LAYOUT_SHOTS=DIR the renders are saved there.
    void layoutHoldsAtEverySize() {
        const QString shots = qEnvironmentVariable("LOFTQ_LAYOUT_SHOTS");
        QStringList problems;
        auto check = [&](const QString& tag, QSize size) {
            w->resize(size);
            QTest::qWait(60);
            QApplication::processEvents();
            for (int tab : {0, 1}) {
                w->centralTabs()->setCurrentIndex(tab);
                QTest::qWait(40);
                QApplication::processEvents();
                const QString where = QString("%1 %2x%3 %4").arg(tag).arg(size.width()).arg(size.height()).arg(tab ? "fine-tune" : "plan");
                if (w->size() != size) {
                    QStringList mins;
                    for (QDockWidget* d : w->findChildren<QDockWidget*>())
                        if (d->isVisible()) mins << QString("%1 %2x%3").arg(d->objectName()).arg(d->minimumSizeHint().width()).arg(d->minimumSizeHint().height());
                    mins << QString("central %1x%2").arg(w->centralWidget()->minimumSizeHint().width()).arg(w->centralWidget()->minimumSizeHint().height());
                    problems << where + QString(": the window is %1x%2 (its minimum %3x%4: %5)").arg(w->width()).arg(w->height())
                                            .arg(w->minimumSizeHint().width()).arg(w->minimumSizeHint().height()).arg(mins.join(", "));
                }
                for (const QString& p : loftq::test::layout_problems(w.get())) problems << where + ": " + p;
                if (tab == 1 && w->finetune()->curves()->legendCoversPlot()) problems << where + ": the training legend covers the curves";
                if (tab == 0) {   // the plots' axis labels and hints fit (short label, wrapped hint when small)
                    for (int k = 0; k < 2; ++k) {   // the second pass sees the first one's layout
                        w->chart()->replotNow();
                        w->heatmap()->replotNow();
                    }
                    if (!w->chart()->textsFit()) problems << where + ": the error chart's axis label or hint is cut";
                    if (!w->heatmap()->textsFit()) problems << where + ": the heatmap's axis label or hint is cut";
                }
                if (tab == 1 && w->finetune()->curves()->legendClipped()) problems << where + ": the training legend is cut off";
                // From 1400x880 on, the Fine-tune form is shown whole, status line included (no scrolling).
                if (tab == 1 && size.width() >= 1400)
                    if (auto* fs = w->findChild<QScrollArea*>("FinetuneFormScroll"); fs) {
                        if (fs->horizontalScrollBar()->isVisible()) problems << where + ": the Fine-tune form needs sideways scrolling";
                        if (fs->verticalScrollBar()->isVisible()) problems << where + ": the Fine-tune form needs scrolling down";
                    }
                if (!shots.isEmpty())
                    w->grab().save(QString("%1/layout-%2-%3x%4-%5.png").arg(shots, tag).arg(size.width()).arg(size.height()).arg(tab ? "finetune" : "plan"));
            }
            w->centralTabs()->setCurrentIndex(0);
        };
        auto dockWidth = [&](const char* name) { return w->findChild<QDockWidget*>(name)->width(); };
        check("first", QSize(1400, 880));
        const int chart0 = dockWidth("ChartDock"), model0 = dockWidth("ModelDock");
        for (QSize s : {QSize(1000, 650), QSize(1920, 1080)}) check("first", s);
        check("grown-back", QSize(1400, 880));
        // Shrunk and grown back, the docks have their room again (not stuck at the small size).
        QVERIFY2(dockWidth("ChartDock") >= chart0 * 8 / 10, qPrintable(QString("chart dock %1 px, was %2").arg(dockWidth("ChartDock")).arg(chart0)));
        QVERIFY2(dockWidth("ModelDock") >= model0 * 8 / 10, qPrintable(QString("model dock %1 px, was %2").arg(dockWidth("ModelDock")).arg(model0)));
        // View > Reset Layout after a shrink brings the default proportions back.
        w->resize(1000, 650);
        QTest::qWait(60);
        w->resize(1400, 880);
        QTest::qWait(60);
        for (QAction* a : w->findChildren<QAction*>())
            if (a->text() == "&Reset Layout") a->trigger();
        QTest::qWait(60);
        QApplication::processEvents();
        QVERIFY2(std::abs(dockWidth("ChartDock") - chart0) <= chart0 / 10,
                 qPrintable(QString("after Reset Layout: chart dock %1 px, default %2").arg(dockWidth("ChartDock")).arg(chart0)));
        for (const QString& p : problems) qWarning("%s", qPrintable(p));
        QVERIFY2(problems.isEmpty(), qPrintable(QString("%1 layout problems (listed above)").arg(problems.size())));
    }

    void shippedDemoRunsAndFineTunes() {
        PlanDocument* doc = w->document();
        QVERIFY(w->runAll());
        QVERIFY(wait_for(w.get(), &MainWindow::runFinished, 300000));
        auto r = w->lastResult();
        QVERIFY(r);
        QCOMPARE(int(r->weights.size()), 35);
        for (const auto& e : r->weights) QVERIFY2(e.final_error < e.baseline, e.plan.name.c_str());

        // The tab's settings as a fresh window has them (the tests above changed this one's).
        FinetunePanel fresh;
        fresh.setModelPath(doc->modelPath());
        loftq::TrainOptions o = fresh.options();
        QCOMPARE(o.load.init, loftq::InitKind::Loftq);
        QCOMPARE(o.data, w->finetune()->options().data);
        FinetunePanel* ft = w->finetune();
        o.steps = 20;
        o.eval_every = 5;
        o.threads = 2;
        o.device = loftq::ComputeDevice::Cpu;
        o.out_dir = loftq::test::make_temp_dir("studio-stories") + "/run";
        ft->setOptions(o);
        QSignalSpy done(ft, &FinetunePanel::runFinished);
        QElapsedTimer t;
        t.start();
        QVERIFY(ft->start());
        QVERIFY(done.wait(300000));
        QVERIFY2(done.takeFirst().at(0).toBool(), qPrintable(w->log()->plainText().right(400)));
        TrainingCurves* c = ft->curves();
        const int run = c->runCount() - 1;
        QCOMPARE(c->trainPoints(run).size(), 20);
        QVERIFY(c->evalPoints(run).size() >= 4);
        const loftq::TrainResult& res = ft->lastResult();
        qInfo("stories260K fine-tune, 20 steps, %s r%d LoftQ: held-out loss %.4f -> %.4f in %.1f s; sample: %s",
              o.load.quant.c_str(), o.load.rank, res.first_eval_loss, res.final_eval_loss, t.elapsed() / 1000.0, res.sample.c_str());
        QVERIFY2(res.first_eval_loss < 3.0, "a trained model: far below ln(512) = 6.24 on stories");
        QVERIFY(res.final_eval_loss < res.first_eval_loss);
        QVERIFY(res.sample.size() > 40);
        QVERIFY(QFileInfo::exists(QString::fromStdString(o.out_dir + "/adapter/adapter_model.safetensors")));
    }

    // The program itself: `loftq-studio --demo --screenshot` opens stories260K and renders.
    void demoFlagOpensStories260K() {
        const QString studio = QCoreApplication::applicationDirPath() + "/loftq-studio";
        if (!QFileInfo::exists(studio)) QSKIP("loftq-studio is not built beside the tests");
        const std::string home = loftq::test::make_temp_dir("studio-demo-flag");
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert("QT_QPA_PLATFORM", "offscreen");
        env.insert("XDG_CACHE_HOME", QString::fromStdString(home + "/cache"));  // not the user's own folders
        env.insert("XDG_CONFIG_HOME", QString::fromStdString(home + "/config"));
        QProcess proc;
        proc.setProcessEnvironment(env);
        const QString shot = QString::fromStdString(home + "/demo.png");
        proc.start(studio, {"--demo", "--screenshot", shot, "--threads", "2"});
        QVERIFY(proc.waitForFinished(120000));
        QVERIFY2(proc.exitCode() == 0, proc.readAllStandardError().constData());
        QVERIFY(!QImage(shot).isNull());
        QStringList copies;
        for (QDirIterator it(QString::fromStdString(home + "/cache"), {"stories260K.bin"}, QDir::Files, QDirIterator::Subdirectories); it.hasNext();)
            copies << it.next();
        QCOMPARE(copies.size(), 1);
        QCOMPARE(sha256_hex(copies[0]), kStoriesSha256);
    }

    // Headless failures say why: the reason of a model that cannot be opened reaches stderr
    // (it said only "could not open the model").
    void headlessFailureSaysWhy() {
        const QString studio = QCoreApplication::applicationDirPath() + "/loftq-studio";
        if (!QFileInfo::exists(studio)) QSKIP("loftq-studio is not built beside the tests");
        const std::string home = loftq::test::make_temp_dir("studio-headless-fail");
        const std::string bad = home + "/broken.safetensors";
        loftq::test::write_file(bad, std::string("\x05\x00\x00", 3));
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert("QT_QPA_PLATFORM", "offscreen");
        env.insert("XDG_CACHE_HOME", QString::fromStdString(home + "/cache"));
        env.insert("XDG_CONFIG_HOME", QString::fromStdString(home + "/config"));
        QProcess proc;
        proc.setProcessEnvironment(env);
        proc.start(studio, {QString::fromStdString(bad), "--screenshot", QString::fromStdString(home + "/x.png")});
        QVERIFY(proc.waitForFinished(60000));
        const QString err = QString::fromUtf8(proc.readAllStandardError());
        QCOMPARE(proc.exitCode(), 1);
        QVERIFY2(err.contains("could not open the model: ") && err.contains("broken.safetensors") && err.contains("truncated"),
                 qPrintable(err));
    }
};

QTEST_MAIN(TestStudio)
#include "test_studio.moc"
