// improvement_chart.cpp: see improvement_chart.h. Two QCPBars (gains, losses) so that each sign
// has its own colour; bar k sits at x = layer k.
#include "improvement_chart.h"

#include <QFileDialog>
#include <QMenu>
#include <QMessageBox>
#include <QTimer>
#include <QToolTip>
#include <algorithm>
#include <cmath>
#include <qcustomplot.h>

#include "plot_style.h"
#include "run_results.h"

namespace studio {

struct ImprovementChart::Impl {
    RunResults* results = nullptr;
    QCustomPlot* plot = nullptr;
    QCPBars* gains = nullptr;
    QCPBars* losses = nullptr;
    QCPItemText* hint = nullptr;
    QTimer timer;
    QVector<double> values;     // per layer, percent; NaN = no finished weight
    ErrorKind kind = ErrorKind::Weight;
};

namespace {
bool counts(const WeightRun& w, ErrorKind k) {
    const double b = w.baselineOf(k);
    // Stale results (computed with settings the plan no longer gives) are left out of the means.
    return w.done && !w.stale && w.layer >= 0 && b != 0 && std::isfinite(b) && std::isfinite(w.finalOf(k));
}
QString y_label(ErrorKind k) {
    return k == ErrorKind::Output ? ImprovementChart::tr("improvement over QLoRA (% of its output error)")
                                  : ImprovementChart::tr("improvement over QLoRA (% of its error)");
}
}  // namespace

ImprovementChart::ImprovementChart(RunResults* results, QWidget* parent) : QWidget(parent), d(std::make_unique<Impl>()) {
    d->results = results;
    d->plot = add_filling_plot(this);

    QCustomPlot* p = d->plot;
    p->setContextMenuPolicy(Qt::CustomContextMenu);
    p->xAxis->setLabel(tr("decoder layer"));
    p->yAxis->setLabel(y_label(d->kind));
    auto ticker = QSharedPointer<QCPAxisTickerFixed>::create();
    ticker->setTickStep(1.0);
    ticker->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
    p->xAxis->setTicker(ticker);
    p->xAxis->grid()->setVisible(false);
    p->xAxis->setSubTicks(false);
    d->gains = new QCPBars(p->xAxis, p->yAxis);
    d->losses = new QCPBars(p->xAxis, p->yAxis);
    d->gains->setPen(Qt::NoPen);
    d->losses->setPen(Qt::NoPen);
    d->gains->setBrush(QColor(0x4e79a7));
    d->losses->setBrush(QColor(0xe15759));
    d->gains->setWidth(0.7);
    d->losses->setWidth(0.7);

    d->hint = add_centre_hint(p);

    coalesce_replots(d->timer, this, [this] { replotNow(); });
    connect(results, &RunResults::reset, this, [this] { request_replot(d->timer); });
    connect(results, &RunResults::weightChanged, this, [this] { request_replot(d->timer); });
    connect(results, &RunResults::staleChanged, this, [this] { request_replot(d->timer); });

    connect(p, &QCustomPlot::mouseMove, this, [this](QMouseEvent* ev) {
        const QPointF at = ev->position();
        const int layer = int(std::lround(d->plot->xAxis->pixelToCoord(at.x())));
        const bool in = d->plot->axisRect()->rect().contains(at.toPoint()) && layer >= 0 &&
                        layer < d->values.size() && std::abs(d->plot->xAxis->pixelToCoord(at.x()) - layer) <= 0.35;
        if (in)
            QToolTip::showText(ev->globalPosition().toPoint(), layerTip(layer), d->plot);
        else
            QToolTip::hideText();
    });
    connect(p, &QCustomPlot::customContextMenuRequested, this, [this](const QPoint& pos) {
        QMenu menu(this);
        add_export_actions(&menu, this, tr("Export improvement chart"), QStringLiteral("loftq-improvement"),
                           [this](const QString& path, QString* err) { return save(path, 0, 0, err); });
        menu.exec(d->plot->mapToGlobal(pos));
    });

    apply_plot_style(p, this);
    replotNow();
}

ImprovementChart::~ImprovementChart() = default;

QVector<double> ImprovementChart::values() const { return d->values; }
ErrorKind ImprovementChart::errorKind() const { return d->kind; }

void ImprovementChart::setErrorKind(ErrorKind k) {
    if (k == d->kind) return;
    d->kind = k;
    d->plot->yAxis->setLabel(y_label(k));
    replotNow();
}

QString ImprovementChart::layerTip(int layer) const {
    const RunResults* rr = d->results;
    QString s = tr("layer %1: ").arg(layer);
    s += std::isnan(d->values[layer]) ? tr("no finished weight") : tr("mean improvement %1%").arg(format_sig(d->values[layer]));
    for (int i = 0; i < rr->count(); ++i) {
        const WeightRun& w = rr->weight(i);
        if (w.layer != layer) continue;
        s += QStringLiteral("\n%1: ").arg(w.module);
        const double b = w.baselineOf(d->kind), f = w.finalOf(d->kind);
        if (!counts(w, d->kind))
            s += !w.done ? tr("not finished")
                 : w.stale ? tr("stale (settings changed since the run), left out")
                 : std::isfinite(f) ? tr("baseline 0, left out")
                                    : tr("no output error");
        else
            s += tr("QLoRA %1 → LoftQ %2 (%3%)").arg(format_sig(b), format_sig(f), format_sig(100.0 * (b - f) / b));
    }
    return s;
}

void ImprovementChart::changeEvent(QEvent* e) {
    QWidget::changeEvent(e);
    if (e->type() == QEvent::PaletteChange || e->type() == QEvent::FontChange) {
        apply_plot_style(d->plot, this);
        d->timer.start();
    }
}

bool ImprovementChart::save(const QString& path, int width, int height, QString* error) {
    replotNow();
    return save_plot(d->plot, path, width, height, error);
}

void ImprovementChart::replotNow() {
    d->timer.stop();
    const RunResults* rr = d->results;
    const int layers = rr->layers();
    QVector<double> sum(layers, 0.0);
    QVector<int> n(layers, 0);
    for (int i = 0; i < rr->count(); ++i) {
        const WeightRun& w = rr->weight(i);
        if (!counts(w, d->kind) || w.layer >= layers) continue;
        const double b = w.baselineOf(d->kind);
        sum[w.layer] += (b - w.finalOf(d->kind)) / b * 100.0;
        n[w.layer] += 1;
    }
    d->values.fill(NAN, layers);
    QVector<double> gk, gv, lk, lv;
    double lo = 0, hi = 0;
    for (int l = 0; l < layers; ++l) {
        if (n[l] == 0) continue;
        const double v = sum[l] / n[l];
        d->values[l] = v;
        (v >= 0 ? gk : lk).push_back(l);
        (v >= 0 ? gv : lv).push_back(v);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    d->gains->setData(gk, gv, true);
    d->losses->setData(lk, lv, true);

    QCustomPlot* p = d->plot;
    p->xAxis->setRange(-0.6, std::max(layers, 1) - 0.4);
    const double pad = 0.08 * std::max(hi - lo, 1e-9);
    p->yAxis->setRange(lo < 0 ? lo - pad : 0, hi > 0 ? hi + pad : (lo < 0 ? pad : 1));
    const QPalette pal = palette();
    p->yAxis->grid()->setZeroLinePen(QPen(pal.color(QPalette::Text), 0));
    d->hint->setVisible(gk.isEmpty() && lk.isEmpty());
    d->hint->setText(rr->count() == 0 ? tr("Run the plan to compare LoftQ with QLoRA per layer")
                                      : tr("No finished weights in decoder layers yet"));
    d->hint->setFont(font());
    d->hint->setColor(pal.color(QPalette::Text));
    p->replot();
}

}  // namespace studio
