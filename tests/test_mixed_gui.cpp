// test_mixed_gui.cpp: the Mixed precision panel and the output-error toggle, offscreen. A small
// synthetic LLaMA model (2 layers, hidden 64, with a byte-level tokenizer and story text for
// calibration and held-out loss) is opened in the main window; the panel sweeps it (in the
// background, the GUI thread never stalling long), the chart shows the allocator's front and
// the uniform plans, a click on a front point loads exactly plan_from_allocation of it as one
// undoable step (undo brings the previous plan back), the budget slider's Apply stays within
// its budget, an evaluation fills three rows with finite losses and adds the plan's point; a
// run with the panel's calibration file gives output errors that the heatmap then shows, the
// toggle being disabled without them; a cancelled sweep leaves the panel usable; and the
// headless --front-png renderer draws a `loftq plan auto --front` file.
#include <QtTest>

#include <QCheckBox>
#include <QDockWidget>
#include <QFileInfo>
#include <QImage>
#include <QProcess>
#include <QPushButton>
#include <QStandardPaths>
#include <QTabBar>
#include <QTabWidget>
#include <QTableWidget>
#include <cmath>
#include <nlohmann/json.hpp>
#include <qcustomplot.h>

#include "core/fsutil.h"
#include "device_combo.h"
#include "error_heatmap.h"
#include "io/synthetic_model.h"
#include "log_panel.h"
#include "studio/main_window.h"
#include "pareto_chart.h"
#include "plan_document.h"
#include "run_results.h"
#include "studio/mixed.h"
#include "gui_wait.h"
#include "test_support.h"
#include "train/demo_data.h"

using namespace studio;

namespace {

using loftq::test::Heartbeat;
using loftq::test::wait_bool;


std::string plan_text(const loftq::Plan& p) { return loftq::plan_to_json(p).dump(); }

// The `loftq plan auto --front` file of a sweep, as app/cli/mixed.cpp writes it.
nlohmann::ordered_json front_json(const MixedSweep& m, uint64_t budget) {
    nlohmann::ordered_json j;
    j["format"] = "loftq-front";
    j["model"] = "test";
    j["metric"] = m.sweep.calibrated ? "output error" : "weight error";
    j["params"] = m.sweep.params;
    j["budget_bytes"] = budget;
    nlohmann::ordered_json f = nlohmann::ordered_json::array();
    for (const auto& p : m.front)
        f.push_back({{"bytes", p.bytes}, {"bits_per_param", p.bits_per_param}, {"damage", p.damage}, {"optimal", p.alloc.optimal}});
    j["front"] = f;
    nlohmann::ordered_json u = nlohmann::ordered_json::array();
    for (const auto& p : m.uniform)
        u.push_back({{"label", p.label}, {"bytes", p.bytes}, {"bits_per_param", 8.0 * double(p.bytes) / double(m.sweep.params)},
                     {"damage", p.damage}});
    j["uniform"] = u;
    j["chosen"] = {{"bytes", m.front[m.front.size() / 2].bytes}, {"damage", m.front[m.front.size() / 2].damage}};
    return j;
}

}  // namespace

class TestMixedGui : public QObject {
    Q_OBJECT
    std::unique_ptr<MainWindow> w;
    std::string root, model, calib, heldout;

    MixedPanel* panel() const { return w->mixedPanel(); }
    QCustomPlot* plot() const { return panel()->chart()->findChild<QCustomPlot*>(); }

    bool sweep() {
        if (!panel()->startSweep()) return false;
        return wait_bool(panel(), &MixedPanel::sweepFinished, 300000);
    }

private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QCoreApplication::setOrganizationName("LoftQStudioTest");
        QCoreApplication::setApplicationName("test_mixed_gui");
        root = loftq::test::make_temp_dir("mixed-gui");
        // The sweep cache (loftq::default_sweep_cache_dir) in a fresh folder of this run.
        qputenv("XDG_CACHE_HOME", QByteArray::fromStdString(root + "/cache"));
        model = root + "/model";
        loftq::SyntheticSpec spec;
        spec.layers = 2;
        spec.hidden = 64;
        spec.intermediate = 128;
        spec.heads = 4;
        spec.kv_heads = 2;
        spec.vocab = 512;
        spec.dtype = loftq::DType::F32;
        loftq::write_synthetic_model(model, spec);
        const std::string corpus = loftq::demo_corpus(300, 7);
        loftq::write_demo_tokenizer(model + "/tokenizer.bin", corpus, 512);
        calib = root + "/calib.txt";
        heldout = root + "/heldout.txt";
        loftq::write_file_atomic(calib, corpus);
        loftq::write_file_atomic(heldout, loftq::demo_corpus(80, 99));

        w = std::make_unique<MainWindow>();
        w->setInteractive(false);
        w->setThreads(2);
        w->deviceCombo()->setDevice(loftq::ComputeDevice::Cpu);
        w->resize(1400, 880);
        w->show();
        w->openModel(QString::fromStdString(model));
        QVERIFY(wait_bool(w.get(), &MainWindow::openFinished, 60000));
        QCOMPARE(int(w->document()->resolved().weights.size()), 2 * 7);
        // The panel is a dock tabified with the error chart: show it.
        auto* dock = w->findChild<QDockWidget*>("MixedDock");
        QVERIFY(dock);
        dock->show();
        dock->raise();
        QVERIFY(QTest::qWaitForWindowExposed(w.get()));
    }
    void cleanupTestCase() { w.reset(); }

    void sweepShowsFrontAndUniformPlans() {
        QVERIFY(!panel()->sweep());
        QCOMPARE(panel()->chart()->pointCount(ParetoChart::Series::Front), 0);
        Heartbeat hb;
        QElapsedTimer t;
        t.start();
        QVERIFY(sweep());
        qInfo("sweep in %lld ms; longest GUI stall %lld ms", t.elapsed(), hb.worst);
        QVERIFY(hb.worst < 1000);
        auto s = panel()->sweep();
        QVERIFY(s);
        QCOMPARE(int(s->sweep.weights.size()), 14);
        QCOMPARE(int(s->sweep.weights[0].candidates.size()), 1 + 4 * 4);   // keep + 4 quantizers x 4 ranks
        QVERIFY(!s->sweep.calibrated);
        QVERIFY(!s->sweep.from_cache);
        QVERIFY(s->front.size() >= 10);
        QCOMPARE(int(s->uniform.size()), 8);

        ParetoChart* c = panel()->chart();
        c->replotNow();
        QCOMPARE(c->data().front.size(), qsizetype(s->front.size()));
        // Log damage axis: the front's damage-0 end (every weight kept) is not drawn.
        int positive = 0;
        for (const auto& f : s->front) positive += f.damage > 0 ? 1 : 0;
        QCOMPARE(c->pointCount(ParetoChart::Series::Front), positive);
        QCOMPARE(c->pointCount(ParetoChart::Series::Uniform), 8);
        QCOMPARE(c->data().metric, QString("weight error"));
        QVERIFY(c->yLabel().contains("damage"));
        // The grid's plan (defaults nf4 r16 everywhere) is uniform nf4 r16.
        QCOMPARE(c->pointCount(ParetoChart::Series::Current), 1);
        const auto& u = *std::find_if(s->uniform.begin(), s->uniform.end(), [](const auto& p) { return p.label == "nf4 r16"; });
        QCOMPARE(panel()->currentDamage(), u.damage);
        QCOMPARE(c->data().current->bytes, double(u.bytes));
        // The front is sorted by bytes, its damage falls.
        for (size_t i = 1; i < s->front.size(); ++i) {
            QVERIFY(s->front[i].bytes > s->front[i - 1].bytes);
            QVERIFY(s->front[i].damage <= s->front[i - 1].damage + 1e-12);
        }
        // x in bytes: the same points.
        c->setXUnit(ParetoChart::XUnit::Bytes);
        QVERIFY(c->xLabel().contains("kB") || c->xLabel().contains("MB"));
        QCOMPARE(c->pointCount(ParetoChart::Series::Uniform), 8);
        c->setXUnit(ParetoChart::XUnit::BitsPerParam);
        QVERIFY(c->xLabel().contains("bits per parameter"));
    }

    void clickingAFrontPointLoadsItsPlanUndoably() {
        auto s = panel()->sweep();
        QVERIFY(s);
        ParetoChart* c = panel()->chart();
        c->replotNow();
        PlanDocument* doc = w->document();
        const std::string before = plan_text(doc->plan());
        const int undo_count = doc->undoStack()->count();
        // A front point in the middle, away from every uniform point (so the click is unambiguous).
        int pick = -1;
        for (int i = int(s->front.size()) / 2; i < int(s->front.size()) && pick < 0; ++i) {
            const QPointF at = c->pointPixel(ParetoChart::Series::Front, i);
            if (at.x() < 0) continue;
            bool clear = true;
            for (int k = 0; k < 8; ++k) {
                const QPointF u = c->pointPixel(ParetoChart::Series::Uniform, k);
                clear &= std::hypot(u.x() - at.x(), u.y() - at.y()) > 4;
            }
            if (clear) pick = i;
        }
        QVERIFY(pick >= 0);
        QTest::mouseClick(plot(), Qt::LeftButton, {}, c->pointPixel(ParetoChart::Series::Front, pick).toPoint());
        const auto& f = s->front[size_t(pick)];
        QCOMPARE(plan_text(doc->plan()), plan_text(loftq::plan_from_allocation(s->sweep, f.alloc, s->base)));
        QCOMPARE(doc->undoStack()->count(), undo_count + 1);   // one undoable step
        QCOMPARE(doc->size().total_bytes, f.bytes);             // plan_size agrees with the allocator
        QCOMPARE(panel()->currentDamage(), f.damage);
        doc->undoStack()->undo();
        QCOMPARE(plan_text(doc->plan()), before);
        doc->undoStack()->redo();
        QCOMPARE(doc->size().total_bytes, f.bytes);
        doc->undoStack()->undo();

        // A uniform point: every target weight at that setting.
        const int k = 2;   // nf3 r16 (kUniformLabels order)
        QCOMPARE(s->uniform[k].label, std::string("nf3 r16"));
        c->replotNow();
        QTest::mouseClick(plot(), Qt::LeftButton, {}, c->pointPixel(ParetoChart::Series::Uniform, k).toPoint());
        QCOMPARE(int(doc->resolved().weights.size()), 14);
        for (const auto& wp : doc->resolved().weights) {
            QCOMPARE(wp.s.quant, loftq::QuantKind::NF3);
            QCOMPARE(wp.s.rank, 16);
        }
        doc->undoStack()->undo();
        QCOMPARE(plan_text(doc->plan()), before);
    }

    void budgetSliderAppliesWithinItsBudget() {
        auto s = panel()->sweep();
        PlanDocument* doc = w->document();
        const std::string before = plan_text(doc->plan());
        const uint64_t target = s->min_bytes + (s->max_bytes - s->min_bytes) / 3;
        QSignalSpy ready(panel(), &MixedPanel::budgetAllocated);
        panel()->setBudget(target);
        QVERIFY(ready.wait(60000));
        const loftq::Allocation* a = panel()->budgetAllocation();
        QVERIFY(a);
        const uint64_t b = panel()->budget();
        QVERIFY(a->bytes <= b);
        QCOMPARE(panel()->chart()->markerBytes(), double(b));
        QVERIFY(panel()->applyBudget());
        QVERIFY(doc->size().total_bytes <= b);
        QCOMPARE(doc->size().total_bytes, a->bytes);
        loftq::AllocOptions o = s->alloc;
        o.budget_bytes = b;
        QCOMPARE(plan_text(doc->plan()), plan_text(loftq::plan_from_allocation(s->sweep, loftq::allocate(s->sweep, o), s->base)));
        doc->undoStack()->undo();
        QCOMPARE(plan_text(doc->plan()), before);
    }

    void evaluatePlanFillsThreeRowsAndAPoint() {
        panel()->setHeldOut(QString::fromStdString(heldout));
        panel()->setEvalExamples(8);
        QVERIFY(panel()->startEval());
        QVERIFY(wait_bool(panel(), &MixedPanel::evalFinished, 300000));
        QTableWidget* t = panel()->evalTable();
        QCOMPARE(t->rowCount(), 3);
        for (int r = 0; r < 3; ++r) {
            bool ok = false;
            const double loss = t->item(r, 1)->text().toDouble(&ok);
            QVERIFY(ok && std::isfinite(loss) && loss > 0);
        }
        QCOMPARE(int(panel()->evaluations().size()), 1);
        const auto& rows = panel()->evaluations()[0].result.rows;
        QCOMPARE(int(rows.size()), 3);
        for (const auto& row : rows) QVERIFY(std::isfinite(row.loss) && std::isfinite(row.ppl));
        ParetoChart* c = panel()->chart();
        c->replotNow();
        QCOMPARE(c->pointCount(ParetoChart::Series::Evaluated), 1);
        QCOMPARE(c->data().evaluated[0].bytes, double(w->document()->size().total_bytes));
        QCOMPARE(c->data().evaluated[0].loss, rows[2].loss);   // the LoftQ init
    }

    void outputToggleIsDisabledWithoutCalibration() {
        QVERIFY(panel()->calibrationFile().isEmpty());
        QVERIFY(w->runAll());
        QVERIFY(wait_bool(w.get(), &MainWindow::runFinished, 300000));
        QVERIFY(!w->results()->hasOutputErrors());
        QAction* a = w->outputErrorsAction();
        QVERIFY(!a->isEnabled());
        QVERIFY(a->toolTip().contains("calibration"));
        auto* box = w->findChild<QCheckBox*>("OutputErrorsBox");
        QVERIFY(box && !box->isEnabled());
        QCOMPARE(w->heatmap()->errorKind(), ErrorKind::Weight);
    }

    void outputToggleShowsTheRunsOutputErrors() {
        panel()->setCalibration(QString::fromStdString(calib), 1024);
        QVERIFY(w->runAll());
        QVERIFY(wait_bool(w.get(), &MainWindow::runFinished, 300000));
        RunResults* res = w->results();
        QVERIFY(res->hasOutputErrors());
        auto r = w->lastResult();
        QVERIFY(r);
        for (const auto& wr : r->weights) QVERIFY(wr.out_final >= 0 && wr.out_baseline >= 0);
        QAction* a = w->outputErrorsAction();
        QVERIFY(a->isEnabled());
        // The run's statistics are kept for the next runs and sweeps.
        QVERIFY(panel()->cachedCalibration());

        ErrorHeatmap* h = w->heatmap();
        h->replotNow();
        auto check = [&](bool output) {
            h->replotNow();
            int cells = 0;
            for (int l = 0; l < res->layers(); ++l)
                for (int c = 0; c < res->modules().size(); ++c) {
                    const int wi = res->weightAt(l, c);
                    if (wi < 0) continue;
                    const auto& wr = r->weights[size_t(wi)];
                    QCOMPARE(h->valueAt(l, c), output ? wr.out_final : wr.final_error);
                    ++cells;
                }
            QCOMPARE(cells, 14);
        };
        check(false);
        a->setChecked(true);
        QCOMPARE(h->errorKind(), ErrorKind::Output);
        QVERIFY(w->findChild<QCheckBox*>("OutputErrorsBox")->isChecked());
        check(true);
        QVERIFY(std::abs(h->valueAt(0, 0) - r->weights[size_t(res->weightAt(0, 0))].final_error) > 1e-9);
        a->setChecked(false);
        check(false);

        // A sweep with the same file reuses the statistics: output errors on the chart.
        QVERIFY(sweep());
        QVERIFY(panel()->sweep()->sweep.calibrated);
        panel()->chart()->replotNow();
        QCOMPARE(panel()->chart()->data().metric, QString("output error"));
        panel()->setCalibration(QString());
    }

    void cancelledSweepLeavesThePanelUsable() {
        auto before = panel()->sweep();
        panel()->setCandidates("nf4,nf2", "8,32", true);   // a new cache key: real work to cancel
        QVERIFY(panel()->startSweep());
        QVERIFY(panel()->sweeping());
        panel()->cancelSweep();
        QVERIFY(!wait_bool(panel(), &MixedPanel::sweepFinished, 120000));
        QVERIFY(!panel()->sweeping());
        QCOMPARE(panel()->sweep(), before);   // the last finished sweep stays
        auto* button = panel()->findChild<QPushButton*>("SweepButton");
        QVERIFY(button);
        QVERIFY(button->isEnabled());
        QVERIFY(w->log()->plainText().contains("sweep cancelled"));
        QVERIFY(sweep());
        QCOMPARE(int(panel()->sweep()->sweep.weights[0].candidates.size()), 1 + 2 * 2);
        panel()->setCandidates("int8,nf4,nf3,nf2", "8,16,32,64", true);
        // The first sweep's settings again: from the cache.
        QVERIFY(sweep());
        QVERIFY(panel()->sweep()->sweep.from_cache);
    }

    // Reopening the model clears the panel; sweeping again reuses the cached sweep. The Fine-tune
    // tab hides the panel's dock and brings it back in front.
    void reopeningReusesTheCachedSweep() {
        auto* dock = w->findChild<QDockWidget*>("MixedDock");
        dock->raise();
        QTest::qWait(50);
        w->centralTabs()->setCurrentIndex(1);
        QVERIFY(!dock->isVisible());
        w->findChild<QDockWidget*>("ChartDock")->raise();   // hidden: no effect on what comes back
        w->centralTabs()->setCurrentIndex(0);
        QVERIFY(dock->isVisible());
        bool in_front = false;   // the dock tab bar of the Error vs step / Mixed precision group
        for (QTabBar* tb : w->findChildren<QTabBar*>())
            if (tb->count() == 2 && tb->tabText(0) + tb->tabText(1) == "Error vs stepMixed precision")
                in_front = tb->tabText(tb->currentIndex()) == "Mixed precision";
        QVERIFY(in_front);

        w->openModel(QString::fromStdString(model));
        QVERIFY(wait_bool(w.get(), &MainWindow::openFinished, 60000));
        QVERIFY(!panel()->sweep());
        QVERIFY(panel()->evaluations().empty());
        panel()->chart()->replotNow();
        QCOMPARE(panel()->chart()->pointCount(ParetoChart::Series::Front), 0);
        QElapsedTimer t;
        t.start();
        QVERIFY(sweep());
        QVERIFY(panel()->sweep()->sweep.from_cache);
        QVERIFY(w->log()->plainText().contains("reusing"));
        qInfo("cached sweep in %lld ms", t.elapsed());
    }

    void frontPngRendersAFrontFile() {
        auto s = panel()->sweep();
        QVERIFY(s);
        const QString dir = QString::fromStdString(root);
        const QString json = dir + "/front.json", png = dir + "/front.png", empty_png = dir + "/empty.png";
        loftq::write_file_atomic(json.toStdString(), front_json(*s, (s->min_bytes + s->max_bytes) / 2).dump(1));
        const FrontFile f = pareto_from_front_file(json);
        QCOMPARE(f.data.front.size(), qsizetype(s->front.size()));
        QCOMPARE(f.data.uniform.size(), qsizetype(8));
        QVERIFY(f.data.chosen);
        QString err;
        QVERIFY2(render_front_png(json, png, QSize(900, 560), &err), qPrintable(err));
        ParetoChart blank;
        QVERIFY(blank.save(empty_png, 900, 560, &err));
        const QImage a(png), b(empty_png);
        QCOMPARE(a.size(), QSize(900, 560));
        QCOMPARE(b.size(), QSize(900, 560));
        QVERIFY(a != b);
        // Bad input: a message, no file.
        loftq::write_file_atomic((dir + "/bad.json").toStdString(), "{\"format\": \"loftq-plan\"}");
        QVERIFY(!render_front_png(dir + "/bad.json", dir + "/bad.png", QSize(400, 300), &err));
        QVERIFY(err.contains("loftq-front"));
        QVERIFY(!QFileInfo::exists(dir + "/bad.png"));

        // The programs, when built beside the CLI: `loftq plan auto --front`, then
        // `loftq-studio MODEL --front F --front-png OUT`.
        const QString cli = qEnvironmentVariable("LOFTQ_CLI");
        const QString studio = QFileInfo(cli).absolutePath() + "/loftq-studio";
        if (cli.isEmpty() || !QFileInfo(cli).isExecutable() || !QFileInfo(studio).isExecutable()) {
            qInfo("LOFTQ_CLI or loftq-studio not built: the program round trip is skipped");
            return;
        }
        QProcess proc;
        proc.setProcessChannelMode(QProcess::MergedChannels);
        proc.start(cli, {"plan", "auto", QString::fromStdString(model), "--budget", "25bits", "-o", dir + "/auto.loftq.json", "--front",
                         dir + "/cli-front.json", "--threads", "2"});
        QVERIFY(proc.waitForFinished(300000));
        QVERIFY2(proc.exitCode() == 0, proc.readAll().constData());
        proc.start(studio, {QString::fromStdString(model), "--front", dir + "/cli-front.json", "--front-png", dir + "/cli-front.png"});
        QVERIFY(proc.waitForFinished(120000));
        QVERIFY2(proc.exitCode() == 0, proc.readAll().constData());
        QImage c(dir + "/cli-front.png");
        QCOMPARE(c.size(), QSize(1000, 620));
        QVERIFY(c != QImage(empty_png).scaled(c.size()));

    }

    // A look at the window with the panel (LOFTQ_MIXED_SHOT=FILE.png; not a check).
    void screenshotOnRequest() {
        const QString shot = qEnvironmentVariable("LOFTQ_MIXED_SHOT");
        if (shot.isEmpty() || !panel()->sweep()) return;
        panel()->setBudget((panel()->sweep()->min_bytes + panel()->sweep()->max_bytes) / 3);
        QSignalSpy(panel(), &MixedPanel::budgetAllocated).wait(30000);
        panel()->chart()->replotNow();
        QTest::qWait(300);
        QVERIFY(w->grab().save(shot));
    }
};

QTEST_MAIN(TestMixedGui)
#include "test_mixed_gui.moc"
