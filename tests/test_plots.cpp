// test_plots.cpp: the plot and status widgets (ErrorChart, ErrorHeatmap, ImprovementChart,
// BudgetBar, LogPanel, save_plot) against a real engine run: a small synthetic checkpoint is
// decomposed by loftq::run_quantize (dry run), its events are fed to RunResults, and every number
// the widgets hold must equal the engine's exactly (the GUI computes nothing but the per-layer
// mean and percentages, checked against a hand computation). Also: exports (PNG/SVG/PDF, failure
// leaves no file), a partial run, live coalesced updates, the curve cap, hover tooltips and the
// heatmap click. With LOFTQ_PLOTS_CHECK_DIR set, renders PNGs there for a person to look at.
// Leaves out zoom/pan, context menus and file dialogs.
#include <QApplication>
#include <QDir>
#include <QFile>
#include <QImage>
#include <QSet>
#include <QToolTip>
#include <QSignalSpy>
#include <QtTest>
#include <algorithm>
#include <cmath>
#include <qcustomplot.h>

#include "budget_bar.h"
#include "error_chart.h"
#include "error_heatmap.h"
#include "improvement_chart.h"
#include "io/checkpoint.h"
#include "io/synthetic_model.h"
#include "log_panel.h"
#include "export/quantize.h"
#include "plot_style.h"
#include "run_results.h"
#include "test_support.h"

using namespace studio;

namespace {

const char* kShortT = "model.layers.1.mlp.down_proj.weight";   // run with T = 2, the rest T = 5

bool same_bits(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

// Pixels that differ between two images of the same size (-1 when the sizes differ).
long differing_pixels(const QImage& a, const QImage& b) {
    if (a.size() != b.size()) return -1;
    const QImage x = a.convertToFormat(QImage::Format_RGB32), y = b.convertToFormat(QImage::Format_RGB32);
    long n = 0;
    for (int r = 0; r < x.height(); ++r)
        for (int c = 0; c < x.width(); ++c) n += x.pixel(c, r) != y.pixel(c, r) ? 1 : 0;
    return n;
}

// Columns where any of these rows has exactly this colour: [first x, last x] and how many (the
// bar's segments are filled without antialiasing, so their colours are exact; two rows, top and
// bottom of the bar, so that a label's ascenders and descenders do not both cover a column).
struct Run {
    int first = -1, last = -1, count = 0;
};
Run colour_run(const QImage& img, std::initializer_list<int> rows, QColor c) {
    Run r;
    for (int x = 0; x < img.width(); ++x)
        if (std::any_of(rows.begin(), rows.end(), [&](int y) { return QColor(img.pixel(x, y)).rgb() == c.rgb(); })) {
            if (r.first < 0) r.first = x;
            r.last = x;
            ++r.count;
        }
    return r;
}

QByteArray head(const QString& path, int n) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly)) return {};
    return f.read(n);
}

}  // namespace

class TestPlots : public QObject {
    Q_OBJECT

    std::string model_;
    std::vector<loftq::TensorMeta> metas_;
    loftq::QuantizeResult result_;
    std::vector<loftq::JobEvent> events_;

    // A RunResults replaying the first `n` events (all when n < 0), then finish() when asked.
    void replay(RunResults& rr, int n, bool finish) {
        rr.start(result_.plan);
        const int count = n < 0 ? int(events_.size()) : n;
        for (int i = 0; i < count; ++i) rr.apply(events_[size_t(i)]);
        if (finish) rr.finish(result_);
    }
    const loftq::WeightResult& result_of(const QString& name) {
        for (const auto& w : result_.weights)
            if (QString::fromStdString(w.plan.name) == name) return w;
        qFatal("no weight %s", qPrintable(name));
    }

private slots:
    void initTestCase() {
        loftq::SyntheticSpec spec;
        spec.layers = 2;
        spec.hidden = 64;
        spec.intermediate = 160;
        spec.heads = 4;
        spec.kv_heads = 2;
        spec.vocab = 64;
        model_ = loftq::test::make_temp_dir("plots") + "/model";
        loftq::write_synthetic_model(model_, spec);
        metas_ = loftq::tensor_metas(*loftq::Checkpoint::open(model_));

        loftq::QuantizeOptions opt;
        opt.model = model_;
        opt.out_dir = "";   // dry run
        opt.threads = 2;
        opt.plan.defaults.rank = 8;
        opt.plan.overrides[kShortT].iters = 2;
        loftq::CancelToken cancel;
        // Worker threads: only copy the event (the job serializes the callback).
        result_ = loftq::run_quantize(opt, [this](const loftq::JobEvent& e) { events_.push_back(e); }, cancel);
        QCOMPARE(int(result_.weights.size()), 14);
        QVERIFY(events_.size() > 14 * 3);
    }

    void chartMatchesEngine() {
        RunResults rr;
        ErrorChart chart(&rr);
        QCOMPARE(chart.curveCount(), 0);
        const QStringList names = {"model.layers.0.self_attn.q_proj.weight", kShortT, "model.layers.1.self_attn.k_proj.weight"};
        chart.setWeights(names);
        QCOMPARE(chart.weights(), names);
        for (bool finished : {false, true}) {   // streamed events, then the final result
            replay(rr, -1, finished);
            chart.replotNow();
            QCOMPARE(chart.curveCount(), 3);
            for (int i = 0; i < 3; ++i) {
                QCOMPARE(chart.curveWeight(i), names[i]);
                const loftq::WeightResult& w = result_of(names[i]);
                const QVector<double> ys = chart.curveValues(i);
                QCOMPARE(ys.size(), qsizetype(w.plan.s.iters));
                QCOMPARE(ys.size(), qsizetype(w.steps.size()));
                for (int t = 0; t < ys.size(); ++t) QVERIFY2(same_bits(ys[t], w.steps[size_t(t)].error), qPrintable(names[i]));
                QVERIFY(same_bits(chart.baselineValue(i), w.baseline));
            }
        }
        QCOMPARE(chart.curveValues(1).size(), 2);   // the T = 2 weight
        QVERIFY(chart.noteText().isEmpty());
        // Names not in the run draw nothing; an empty selection draws nothing.
        chart.setWeights({"no.such.weight"});
        chart.replotNow();
        QCOMPARE(chart.curveCount(), 0);
        chart.setWeights({});
        chart.replotNow();
        QCOMPARE(chart.curveCount(), 0);
    }

    // The legend, when it sits inside the plot, covers no point and no baseline: it takes the
    // free corner (the top right, where it used to sit, holds the baselines).
    void chartLegendCoversNothing() {
        RunResults rr;
        replay(rr, -1, true);
        ErrorChart chart(&rr);
        chart.setWeights({"model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight"});
        chart.show();
        auto* plot = chart.findChild<QCustomPlot*>();
        int inside_cases = 0;
        for (int width = 360; width <= 720; width += 60) {   // beside the plot when wide, inside when narrow
            chart.resize(width, 380);
            QTest::qWait(10);
            chart.replotNow();
            if (!plot->legend->visible()) continue;
            const bool inside = plot->legend->layout() == plot->axisRect()->insetLayout();
            inside_cases += inside ? 1 : 0;
            QVERIFY2(chart.legendCollisions() == 0,
                     qPrintable(QString("%1 px: %2 points/baselines under the legend").arg(width).arg(chart.legendCollisions())));
            QVERIFY(plot->rect().contains(plot->legend->outerRect()));
        }
        // One weight, a short legend: a free corner exists and the legend goes there, inside.
        chart.setWeights({"model.layers.0.self_attn.q_proj.weight"});
        for (int width = 360; width <= 720; width += 60) {
            chart.resize(width, 760);
            QTest::qWait(10);
            chart.replotNow();
            if (!plot->legend->visible()) continue;
            inside_cases += plot->legend->layout() == plot->axisRect()->insetLayout() ? 1 : 0;
            QCOMPARE(chart.legendCollisions(), 0);
        }
        qInfo("legend inside the plot in %d of the cases, never over a point or a baseline", inside_cases);
        QVERIFY(inside_cases > 0);   // the case that used to cover the baselines was exercised
    }

    void chartCapsCurves() {
        // A made-up run of 30 weights (no engine needed to count curves).
        loftq::ResolvedPlan plan;
        QStringList names;
        for (int i = 0; i < 30; ++i) {
            loftq::WeightPlan w;
            w.name = "model.layers." + std::to_string(i) + ".mlp.up_proj.weight";
            w.module = "up_proj";
            w.layer = i;
            w.s.iters = 3;
            plan.weights.push_back(w);
            names << QString::fromStdString(w.name);
        }
        RunResults rr;
        rr.start(plan);
        ErrorChart chart(&rr);
        chart.setWeights(names);
        chart.replotNow();
        QCOMPARE(chart.curveCount(), ErrorChart::kMaxCurves);
        QVERIFY2(chart.noteText().contains("24 of 30"), qPrintable(chart.noteText()));
    }

    void liveUpdatesAreCoalesced() {
        RunResults rr;
        ErrorChart chart(&rr);
        ErrorHeatmap map(&rr);
        const QString name = "model.layers.0.mlp.up_proj.weight";
        chart.setWeights({name});
        replay(rr, -1, false);   // no replotNow: the timers must pick it up
        QTRY_COMPARE(chart.curveValues(0).size(), 5);
        const loftq::WeightResult& w = result_of(name);
        QTRY_VERIFY(same_bits(map.valueAt(0, int(rr.modules().indexOf("up_proj"))), w.final_error));
    }

    void tooltipsShowExactNumbers() {
        RunResults rr;
        replay(rr, -1, true);
        const QString name = "model.layers.1.self_attn.v_proj.weight";
        const loftq::WeightResult& w = result_of(name);
        ErrorChart chart(&rr);
        chart.setWeights({name});
        chart.resize(800, 500);
        chart.show();
        QVERIFY(QTest::qWaitForWindowExposed(&chart));
        chart.replotNow();
        auto* plot = chart.findChild<QCustomPlot*>();
        QVERIFY(plot);
        const QPointF at = plot->graph(0)->coordsToPixels(3, w.steps[2].error);
        QTest::mouseMove(plot, at.toPoint());
        QTRY_VERIFY(QToolTip::isVisible());
        QString tip = QToolTip::text();
        QVERIFY2(tip.contains("L1 v_proj") && tip.contains(name) && tip.contains("step 3 of 5"), qPrintable(tip));
        QVERIFY2(tip.contains("error " + QString::number(w.steps[2].error, 'g', 5)), qPrintable(tip));
        QVERIFY2(tip.contains("QLoRA baseline " + QString::number(w.baseline, 'g', 5)), qPrintable(tip));
        chart.hide();

        ErrorHeatmap map(&rr);
        map.resize(700, 450);
        map.show();
        QVERIFY(QTest::qWaitForWindowExposed(&map));
        map.replotNow();
        auto* mplot = map.findChild<QCustomPlot*>();
        const int col = int(rr.modules().indexOf("v_proj"));
        const QPoint cell(int(mplot->xAxis->coordToPixel(col)), int(mplot->yAxis->coordToPixel(1)));
        QSignalSpy clicked(&map, &ErrorHeatmap::weightClicked);
        QTest::mouseMove(mplot, cell + QPoint(1, 1));
        QTRY_VERIFY(QToolTip::isVisible() && QToolTip::text().contains("final error"));
        tip = QToolTip::text();
        QVERIFY2(tip.contains(name) && tip.contains("final error " + QString::number(w.final_error, 'g', 5)), qPrintable(tip));
        QVERIFY2(tip.contains("QLoRA baseline " + QString::number(w.baseline, 'g', 5)), qPrintable(tip));
        QTest::mouseClick(mplot, Qt::LeftButton, {}, cell);
        QCOMPARE(clicked.size(), 1);
        QCOMPARE(clicked[0][0].toString(), name);
        map.hide();
    }

    void heatmapMatchesEngine() {
        RunResults rr;
        replay(rr, -1, true);
        ErrorHeatmap map(&rr);
        map.replotNow();
        QCOMPARE(rr.layers(), 2);
        QCOMPARE(int(rr.modules().size()), 7);
        for (const auto& w : result_.weights) {
            const int col = int(rr.modules().indexOf(QString::fromStdString(w.plan.module)));
            QVERIFY(col >= 0);
            QVERIFY2(same_bits(map.valueAt(w.plan.layer, col), w.final_error), w.plan.name.c_str());
        }
        QVERIFY(std::isnan(map.valueAt(2, 0)));
        QVERIFY(std::isnan(map.valueAt(0, 7)));
        map.setMode(ErrorHeatmap::Mode::Improvement);
        QCOMPARE(map.mode(), ErrorHeatmap::Mode::Improvement);
        for (const auto& w : result_.weights) {
            const int col = int(rr.modules().indexOf(QString::fromStdString(w.plan.module)));
            QVERIFY(same_bits(map.valueAt(w.plan.layer, col), w.baseline - w.final_error));
        }
    }

    void improvementMatchesHandComputation() {
        RunResults rr;
        replay(rr, -1, true);
        ImprovementChart chart(&rr);
        chart.replotNow();
        const QVector<double> v = chart.values();
        QCOMPARE(v.size(), 2);
        for (int layer = 0; layer < 2; ++layer) {
            double sum = 0;
            int n = 0;
            for (const auto& w : result_.weights)
                if (w.plan.layer == layer) {
                    sum += (w.baseline - w.final_error) / w.baseline * 100.0;
                    ++n;
                }
            QCOMPARE(n, 7);
            QCOMPARE(v[layer], sum / n);
            QVERIFY(v[layer] > 0);   // LoftQ beats QLoRA on structured weights
        }
    }

    void budgetBarShowsEngineSize() {
        const loftq::PlanSize ref = loftq::plan_size(result_.plan, metas_);
        BudgetBar bar;
        QCOMPARE(bar.summaryText(), QString("no model"));
        bar.setSize(result_.size, 0);
        const loftq::PlanSize& s = bar.size();
        QCOMPARE(s.total_bytes, ref.total_bytes);
        QCOMPARE(s.quantized_bytes, ref.quantized_bytes);
        QCOMPARE(s.lora_bytes, ref.lora_bytes);
        QCOMPARE(s.untouched_bytes, ref.untouched_bytes);
        QCOMPARE(s.fp16_bytes, ref.fp16_bytes);
        QCOMPARE(s.source_bytes, ref.source_bytes);
        QCOMPARE(s.params, ref.params);
        QCOMPARE(s.target_params, ref.target_params);
        QCOMPARE(s.lora_params, ref.lora_params);

        QVERIFY(ref.total_bytes >= 1000 && ref.total_bytes < 1000000);   // formatted in kB
        const QString total = QString::number(double(ref.total_bytes) / 1e3, 'f', 2) + " kB";
        const QString bits = QString::number(ref.bits_per_param(), 'f', 2) + " bits/param";
        const QString fp16 = QString::number(100.0 * double(ref.total_bytes) / double(ref.fp16_bytes), 'f', 1) + "% of fp16";
        QCOMPARE(bar.summaryText(), total + " · " + bits + " · " + fp16);
        const QString tip = bar.detailsText();
        for (uint64_t b : {ref.total_bytes, ref.quantized_bytes, ref.lora_bytes, ref.untouched_bytes, ref.fp16_bytes, ref.source_bytes})
            QVERIFY2(tip.contains(QString::number(b) + " B"), qPrintable(tip));
        QVERIFY(tip.contains("1 kB = 1000 B"));
        QCOMPARE(bar.toolTip(), tip);

        bar.setSize(result_.size, 2 * ref.total_bytes);
        QVERIFY(!bar.overBudget());
        QVERIFY2(bar.summaryText().endsWith(" · budget " + QString::number(2.0 * double(ref.total_bytes) / 1e3, 'f', 2) + " kB (50%)"),
                 qPrintable(bar.summaryText()));
        bar.setSize(result_.size, ref.total_bytes / 2);
        QVERIFY(bar.overBudget());
        QVERIFY2(bar.summaryText().endsWith(", over)"), qPrintable(bar.summaryText()));
        QVERIFY(bar.sizeHint().height() < 4 * bar.fontMetrics().height());

        // What is painted: along the rows inside the bar's top and bottom edges, the three
        // segments in their colours, side by side, each as wide as its bytes on the scale
        // max(fp16, budget, total) over the bar's width - 4 px (budget_bar.cpp), within 2 px.
        const int W = 804;
        bar.resize(W, bar.sizeHint().height());
        auto painted = [&](uint64_t budget) {
            bar.setSize(result_.size, budget);
            return bar.grab().toImage();
        };
        const double track = W - 4;
        for (const uint64_t budget : {uint64_t(0), 2 * ref.total_bytes}) {
            const QImage img = painted(budget);
            const double scale = double(std::max({ref.fp16_bytes, budget, ref.total_bytes}));
            const int y0 = 3, y1 = bar.fontMetrics().height();   // the bar spans y = 2 .. 2 + em, framed
            const Run q = colour_run(img, {y0, y1}, BudgetBar::color(BudgetBar::Part::Quantized));
            const Run l = colour_run(img, {y0, y1}, BudgetBar::color(BudgetBar::Part::Lora));
            const Run u = colour_run(img, {y0, y1}, BudgetBar::color(BudgetBar::Part::Untouched));
            auto near = [&](const Run& r, uint64_t from, uint64_t bytes) {
                const double x0 = 2 + track * double(from) / scale, w = track * double(bytes) / scale;
                return r.count > 0 && std::abs(r.first - x0) <= 2 && std::abs(r.last + 1 - (x0 + w)) <= 2 &&
                       r.count >= int(w) - 3;   // contiguous, up to a 1 px marker line
            };
            QVERIFY2(near(q, 0, ref.quantized_bytes), qPrintable(QString("quantized %1..%2 (%3 px), expected from 2 over %4 px").arg(q.first).arg(q.last).arg(q.count).arg(track * double(ref.quantized_bytes) / scale)));
            QVERIFY2(near(l, ref.quantized_bytes, ref.lora_bytes), qPrintable(QString("LoRA %1..%2").arg(l.first).arg(l.last)));
            QVERIFY2(near(u, ref.quantized_bytes + ref.lora_bytes, ref.untouched_bytes),
                     qPrintable(QString("untouched %1..%2").arg(u.first).arg(u.last)));
            QVERIFY(q.last < l.first && l.last < u.first);   // in that order
        }
        // Over budget: beyond the budget the bar is tinted red, not plain segment colours;
        // within the budget it is not.
        {
            const uint64_t budget = ref.total_bytes / 2;
            const QImage img = painted(budget);
            const double scale = double(std::max({ref.fp16_bytes, budget, ref.total_bytes}));
            const int xb = int(2 + track * double(budget) / scale), xt = int(2 + track * double(ref.total_bytes) / scale);
            const int y = 3;
            int reddish = 0;
            for (int x = xb + 3; x < xt - 1; ++x) {
                const QColor c(img.pixel(x, y));
                reddish += c.red() > c.blue() + 40 ? 1 : 0;
            }
            QVERIFY2(reddish >= (xt - xb - 4) / 2, qPrintable(QString("%1 of %2 reddish").arg(reddish).arg(xt - xb - 4)));
            const Run q = colour_run(img, {y}, BudgetBar::color(BudgetBar::Part::Quantized));
            QVERIFY(q.first >= 2 && q.first <= 3);   // after the 1 px frame
            QVERIFY(q.last < xb);   // quantized codes end before the budget here
        }
        // The budget marker never cuts a label: a budget in the middle of the LoRA segment hides
        // "LoRA" (the segment still painted); elsewhere it is shown.
        {
            BudgetBar b2;
            b2.resize(W, b2.sizeHint().height());
            b2.setSize(result_.size, 0);
            QVERIFY2(b2.shownLabels().contains("LoRA"), qPrintable(b2.shownLabels().join(",")));
            b2.setSize(result_.size, ref.quantized_bytes + ref.lora_bytes / 2);
            QVERIFY(!b2.shownLabels().contains("LoRA"));
            QVERIFY(b2.shownLabels().contains("quantized"));
        }
        // What an export takes on disk: named in the summary (packed), every format in the tooltip.
        bar.setSize(result_.size, 0);
        bar.setDiskBytes(3 * ref.total_bytes, 4 * ref.total_bytes, 0);
        QVERIFY2(bar.summaryText().endsWith(" · packed export ≈ " + format_bytes_decimal(3 * ref.total_bytes) + " on disk"),
                 qPrintable(bar.summaryText()));
        QVERIFY(bar.toolTip().contains(QString::number(3 * ref.total_bytes) + " B") &&
                bar.toolTip().contains(QString::number(4 * ref.total_bytes) + " B"));
        QVERIFY(!bar.toolTip().contains("bitsandbytes"));
        QCOMPARE(format_bytes_decimal(999), QString("999 B"));
        QCOMPARE(format_bytes_decimal(1230000000ull), QString("1.23 GB"));
    }

    void exportsWriteValidFiles() {
        RunResults rr;
        replay(rr, -1, true);
        ErrorChart chart(&rr);
        chart.setWeights({"model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.gate_proj.weight"});
        ErrorHeatmap map(&rr);
        ImprovementChart bars(&rr);
        const QString dir = QString::fromStdString(loftq::test::make_temp_dir("plots-export"));
        // The same widgets over no results: what a PNG must differ from.
        RunResults none;
        ErrorChart chart0(&none);
        ErrorHeatmap map0(&none);
        ImprovementChart bars0(&none);
        struct Target {
            const char* name;
            std::function<bool(const QString&, QString*)> save, save_empty;
        };
        const Target targets[] = {
            {"chart", [&](const QString& p, QString* e) { return chart.save(p, 640, 400, e); },
             [&](const QString& p, QString* e) { return chart0.save(p, 640, 400, e); }},
            {"heatmap", [&](const QString& p, QString* e) { return map.save(p, 640, 400, e); },
             [&](const QString& p, QString* e) { return map0.save(p, 640, 400, e); }},
            {"bars", [&](const QString& p, QString* e) { return bars.save(p, 640, 400, e); },
             [&](const QString& p, QString* e) { return bars0.save(p, 640, 400, e); }},
        };
        const QString emptyDir = QString::fromStdString(loftq::test::make_temp_dir("plots-empty"));
        QStringList expected;
        for (const Target& t : targets) {
            QString err;
            const QString png = dir + "/" + t.name + ".png", svg = dir + "/" + t.name + ".svg", pdf = dir + "/" + t.name + ".pdf";
            QVERIFY2(t.save(png, &err), qPrintable(err));
            QVERIFY2(t.save(svg, &err), qPrintable(err));
            QVERIFY2(t.save(pdf, &err), qPrintable(err));
            const QImage img(png);
            QVERIFY(!img.isNull());
            QCOMPARE(img.size(), QSize(640, 400));
            // The data is drawn: the PNG differs from the same widget rendered without results
            // in a good share of its pixels (curves, cells or bars; not just a title).
            QVERIFY2(t.save_empty(emptyDir + "/" + t.name + ".png", &err), qPrintable(err));
            const long diff = differing_pixels(img, QImage(emptyDir + "/" + t.name + ".png"));
            qInfo("%s: %ld of %d pixels differ from the empty render", t.name, diff, 640 * 400);
            QVERIFY2(diff >= 640 * 400 / 50, qPrintable(QString("%1: only %2 pixels differ from an empty render").arg(t.name).arg(diff)));
            const QByteArray s = head(svg, 4096);
            QVERIFY(s.startsWith("<?xml") || s.contains("<svg"));
            QVERIFY(QFileInfo(svg).size() > 1000);
            QVERIFY(head(pdf, 5).startsWith("%PDF"));
            QVERIFY(QFileInfo(pdf).size() > 1000);
            expected << QString(t.name) + ".png" << QString(t.name) + ".svg" << QString(t.name) + ".pdf";
        }
        // Overwriting works and leaves no temporary files behind.
        QString err;
        QVERIFY2(chart.save(dir + "/chart.png", 320, 200, &err), qPrintable(err));
        QCOMPARE(QImage(dir + "/chart.png").size(), QSize(320, 200));
        QStringList listed = QDir(dir).entryList(QDir::Files | QDir::Hidden);
        listed.sort();
        expected.sort();
        QCOMPARE(listed, expected);

        // Unwritable targets: false, an error, no file.
        const QString bad_dir = dir + "/no-such-folder/chart.png";
        err.clear();
        QVERIFY(!chart.save(bad_dir, 0, 0, &err));
        QVERIFY(!err.isEmpty());
        QVERIFY(!QFileInfo::exists(bad_dir));
        const QString under_file = dir + "/chart.pdf/inside.svg";   // parent is a file
        err.clear();
        QVERIFY(!map.save(under_file, 0, 0, &err));
        QVERIFY(!err.isEmpty());
        err.clear();
        QVERIFY(!bars.save(dir + "/bars.bmp", 0, 0, &err));
        QVERIFY(err.contains("bmp"));
        listed = QDir(dir).entryList(QDir::Files | QDir::Hidden);
        listed.sort();
        QCOMPARE(listed, expected);
        // An unwritable folder (only meaningful when not running as root).
        const QString ro = dir + "/ro";
        QVERIFY(QDir().mkpath(ro));
        QFile::setPermissions(ro, QFileDevice::ReadOwner | QFileDevice::ExeOwner);
        if (!QFileInfo(ro).isWritable()) {
            err.clear();
            QVERIFY(!chart.save(ro + "/chart.svg", 0, 0, &err));
            QVERIFY(!err.isEmpty());
            QVERIFY(QDir(ro).entryList(QDir::Files | QDir::Hidden).isEmpty());
        }
        QFile::setPermissions(ro, QFileDevice::ReadOwner | QFileDevice::WriteOwner | QFileDevice::ExeOwner);
    }

    void partialRun() {
        // Cut the stream at the first "step 2 done": that weight has 2 of 5 points, not done.
        int cut = -1;
        for (size_t i = 0; i < events_.size(); ++i)
            if (events_[i].kind == loftq::EventKind::StepDone && events_[i].step == 2) {
                cut = int(i);
                break;
            }
        QVERIFY(cut > 0);
        RunResults rr;
        replay(rr, cut + 1, false);
        const QString running = QString::fromStdString(events_[size_t(cut)].name);
        ErrorChart chart(&rr);
        ErrorHeatmap map(&rr);
        ImprovementChart bars(&rr);
        QStringList all;
        for (const auto& w : result_.weights) all << QString::fromStdString(w.plan.name);
        chart.setWeights(all);
        chart.replotNow();
        map.replotNow();
        bars.replotNow();
        QCOMPARE(chart.curveCount(), 14);
        int unfinished = 0;
        for (int i = 0; i < chart.curveCount(); ++i) {
            const WeightRun& w = rr.weight(rr.indexOf(chart.curveWeight(i)));
            const loftq::WeightResult& ref = result_of(w.name);
            const QVector<double> ys = chart.curveValues(i);
            QVERIFY(ys.size() <= qsizetype(ref.steps.size()));
            for (int t = 0; t < ys.size(); ++t) QVERIFY(same_bits(ys[t], ref.steps[size_t(t)].error));
            const double cell = map.valueAt(w.layer, w.column);
            if (w.done) {
                QVERIFY(same_bits(cell, ref.final_error));
            } else {
                QVERIFY2(std::isnan(cell), qPrintable(w.name));
                ++unfinished;
            }
            if (w.name == running) {
                QCOMPARE(ys.size(), 2);
                QVERIFY(!w.done);
            }
        }
        QVERIFY(unfinished > 0);
        const QVector<double> v = bars.values();
        for (int layer = 0; layer < v.size(); ++layer) {
            bool any_done = false;
            for (int i = 0; i < rr.count(); ++i) any_done |= rr.weight(i).layer == layer && rr.weight(i).done;
            QCOMPARE(std::isnan(v[layer]), !any_done);
        }
    }

    void logPanelCountsLines() {
        LogPanel log;
        QCOMPARE(log.lineCount(), 0);
        log.append(LogPanel::Level::Info, "opened model <demo> & plan");
        log.append(LogPanel::Level::Warning, "rule matches nothing");
        log.append(LogPanel::Level::Error, "two\nlines");
        QCOMPARE(log.lineCount(), 4);
        const QString text = log.plainText();
        QVERIFY2(text.contains("opened model <demo> & plan"), qPrintable(text));
        QVERIFY(text.contains("warning: rule matches nothing"));
        QVERIFY(text.contains("error: two"));
        QVERIFY(text.contains("           lines"));   // continuation indented under the stamp
        QCOMPARE(text.count('\n'), 3);
        QVERIFY(text.contains(QRegularExpression("^\\[\\d\\d:\\d\\d:\\d\\d\\] opened")));
        log.clear();
        QCOMPARE(log.lineCount(), 0);
        for (int i = 0; i < LogPanel::kMaxLines + 10; ++i) log.append(LogPanel::Level::Info, QString::number(i));
        QCOMPARE(log.lineCount(), LogPanel::kMaxLines);
    }

    void renderForInspection() {
        const QString out = qEnvironmentVariable("LOFTQ_PLOTS_CHECK_DIR");
        if (out.isEmpty()) QSKIP("set LOFTQ_PLOTS_CHECK_DIR to render PNGs for inspection");
        QDir().mkpath(out);
        RunResults rr;
        replay(rr, -1, true);
        ErrorChart chart(&rr);
        QStringList some;
        for (const auto& w : result_.weights) some << QString::fromStdString(w.plan.name);
        chart.setWeights(some.mid(0, 6));
        QVERIFY(chart.save(out + "/chart.png", 900, 500));
        QVERIFY(chart.save(out + "/chart-small.png", 420, 260));
        chart.setWeights(some);
        QVERIFY(chart.save(out + "/chart-all.png", 900, 500));
        chart.setWeights({});
        QVERIFY(chart.save(out + "/chart-empty.png", 600, 300));
        ErrorHeatmap map(&rr);
        QVERIFY(map.save(out + "/heatmap.png", 700, 450));
        QVERIFY(map.save(out + "/heatmap-small.png", 360, 260));
        map.setMode(ErrorHeatmap::Mode::Improvement);
        QVERIFY(map.save(out + "/heatmap-improvement.png", 700, 450));
        ImprovementChart bars(&rr);
        QVERIFY(bars.save(out + "/improvement.png", 700, 400));
        RunResults partial;
        replay(partial, int(events_.size() / 2), false);
        ErrorHeatmap pmap(&partial);
        QVERIFY(pmap.save(out + "/heatmap-partial.png", 700, 450));
        BudgetBar bar;
        bar.resize(bar.sizeHint().width() + 100, bar.sizeHint().height());
        bar.setSize(result_.size, 2 * result_.size.total_bytes);
        QVERIFY(bar.grab().save(out + "/budget.png"));
        bar.setSize(result_.size, result_.size.total_bytes * 3 / 4);
        QVERIFY(bar.grab().save(out + "/budget-over.png"));
        bar.setSize(result_.size, 0);
        bar.resize(200, bar.sizeHint().height());
        QVERIFY(bar.grab().save(out + "/budget-narrow.png"));
        LogPanel log;
        log.resize(500, 150);
        log.append(LogPanel::Level::Info, "opened demo model");
        log.append(LogPanel::Level::Warning, "plan: rule 'foo' matches nothing");
        log.append(LogPanel::Level::Error, "cannot write /x/y: permission denied");
        QVERIFY(log.grab().save(out + "/log.png"));
    }
};

QTEST_MAIN(TestPlots)
#include "test_plots.moc"
