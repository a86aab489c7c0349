// training_curves.cpp: see training_curves.h.
#include "training_curves.h"

#include <QMenu>
#include <QTimer>
#include <algorithm>
#include <cmath>
#include <qcustomplot.h>

#include "plot_style.h"

namespace studio {

struct TrainingCurves::Impl {
    QCustomPlot* plot = nullptr;
    QTimer timer;
    struct Run {
        QString name;
        QVector<QPointF> train, eval;
        bool alive = true;
    };
    QVector<Run> runs;
    int highlight = -1;
    double reference = NAN;
    QString reference_label;
    QString unique(const QString& name, int except) const {
        auto taken = [&](const QString& n) {
            for (int i = 0; i < runs.size(); ++i)
                if (i != except && runs[i].alive && runs[i].name == n) return true;
            return false;
        };
        if (!taken(name)) return name;
        for (int k = 2;; ++k)
            if (!taken(QStringLiteral("%1 (%2)").arg(name).arg(k))) return QStringLiteral("%1 (%2)").arg(name).arg(k);
    }
};

TrainingCurves::TrainingCurves(QWidget* parent) : QWidget(parent), d(std::make_unique<Impl>()) {
    d->plot = add_filling_plot(this);
    QCustomPlot* p = d->plot;
    p->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    p->xAxis->setLabel(tr("step"));
    p->yAxis->setLabel(tr("loss (nats / token)"));
    // The legend has its own row below the plot (runs' names can be long and many: inside the
    // axis rect it would cover the curves), one entry per run plus keys for the line styles.
    p->legend->setVisible(true);
    p->plotLayout()->addElement(1, 0, p->legend);
    p->plotLayout()->setRowStretchFactor(1, 0.001);
    p->legend->setFillOrder(QCPLegend::foColumnsFirst, true);
    p->legend->setMargins(QMargins(4, 2, 4, 2));
    p->setContextMenuPolicy(Qt::CustomContextMenu);
    connect(p, &QCustomPlot::mouseDoubleClick, this, [this] { replotNow(); });
    connect(p, &QCustomPlot::customContextMenuRequested, this, [this](const QPoint& pos) {
        QMenu menu(this);
        connect(menu.addAction(tr("Reset view")), &QAction::triggered, this, &TrainingCurves::replotNow);
        menu.addSeparator();
        add_export_actions(&menu, this, tr("Export training curves"), QStringLiteral("loftq-training"),
                           [this](const QString& path, QString* err) { return save(path, 0, 0, err); });
        menu.exec(d->plot->mapToGlobal(pos));
    });
    coalesce_replots(d->timer, this, [this] { replotNow(); });
    apply_plot_style(p, this);
    replotNow();
}

TrainingCurves::~TrainingCurves() = default;

int TrainingCurves::addRun(const QString& name) {
    d->runs.push_back({d->unique(name, -1), {}, {}, true});
    request_replot(d->timer);
    return int(d->runs.size()) - 1;
}

void TrainingCurves::addTrainPoint(int run, int step, double loss) {
    if (run < 0 || run >= d->runs.size()) return;
    d->runs[run].train.push_back(QPointF(step, loss));
    request_replot(d->timer);
}

void TrainingCurves::addEvalPoint(int run, int step, double loss) {
    if (run < 0 || run >= d->runs.size()) return;
    d->runs[run].eval.push_back(QPointF(step, loss));
    request_replot(d->timer);
}

void TrainingCurves::removeRun(int run) {
    if (run < 0 || run >= d->runs.size()) return;
    d->runs[run].alive = false;  // indices stay valid for the runs after it
    if (d->highlight == run) d->highlight = -1;
    replotNow();
}

void TrainingCurves::renameRun(int run, const QString& name) {
    if (run < 0 || run >= d->runs.size() || name.trimmed().isEmpty()) return;
    d->runs[run].name = d->unique(name.trimmed(), run);
    replotNow();
}

bool TrainingCurves::runAlive(int run) const { return run >= 0 && run < d->runs.size() && d->runs[run].alive; }

void TrainingCurves::setHighlight(int run) {
    d->highlight = runAlive(run) ? run : -1;
    replotNow();
}

int TrainingCurves::highlight() const { return d->highlight; }

void TrainingCurves::setReference(double loss, const QString& label) {
    d->reference = loss;
    d->reference_label = label;
    replotNow();
}

double TrainingCurves::reference() const { return d->reference; }

bool TrainingCurves::legendCoversPlot() const {
    return d->plot->legend->visible() && d->plot->legend->outerRect().intersects(d->plot->axisRect()->rect());
}

bool TrainingCurves::legendClipped() const {
    const QCPLegend* l = d->plot->legend;
    if (!l->visible()) return false;
    for (int i = 0; i < l->itemCount(); ++i) {
        const QCPAbstractLegendItem* it = l->item(i);   // null for an empty cell of the wrapped grid
        if (it && (it->outerRect().right() > d->plot->width() + 1 || it->minimumOuterSizeHint().width() > it->outerRect().width() + 1))
            return true;
    }
    return false;
}

QStringList TrainingCurves::legendNames() const {
    QStringList l;
    for (int i = 0; i < d->plot->legend->itemCount(); ++i)
        if (auto* it = qobject_cast<QCPPlottableLegendItem*>(d->plot->legend->item(i))) l << it->plottable()->name();
    return l;
}

void TrainingCurves::clear() {
    d->highlight = -1;
    d->runs.clear();
    replotNow();
}

int TrainingCurves::runCount() const { return int(d->runs.size()); }
QString TrainingCurves::runName(int run) const { return run >= 0 && run < d->runs.size() ? d->runs[run].name : QString(); }
QVector<QPointF> TrainingCurves::trainPoints(int run) const { return run >= 0 && run < d->runs.size() ? d->runs[run].train : QVector<QPointF>(); }
QVector<QPointF> TrainingCurves::evalPoints(int run) const { return run >= 0 && run < d->runs.size() ? d->runs[run].eval : QVector<QPointF>(); }

void TrainingCurves::replotNow() {
    d->timer.stop();
    QCustomPlot* p = d->plot;
    p->clearGraphs();
    double xmax = 1, ymin = INFINITY, ymax = -INFINITY;
    auto add = [&](const QVector<QPointF>& pts, const QString& name, QPen pen, bool markers) {
        QCPGraph* g = p->addGraph();
        g->setName(name);
        g->setPen(pen);
        if (markers) g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, pen.color(), pen.color(), 6));
        QVector<double> x, y;
        for (const QPointF& q : pts) {
            if (!std::isfinite(q.y())) continue;
            x << q.x();
            y << q.y();
            xmax = std::max(xmax, q.x());
            ymin = std::min(ymin, q.y());
            ymax = std::max(ymax, q.y());
        }
        g->setData(x, y, true);
    };
    int colour = 0;
    const bool focus = d->highlight >= 0;
    QVector<int> order;   // the highlighted run last, so that it is drawn on top
    for (int i = 0; i < d->runs.size(); ++i)
        if (i != d->highlight) order << i;
    if (focus) order << d->highlight;
    for (int i : order) {
        const auto& r = d->runs[i];
        colour = i;
        QColor c = series_color(colour);
        if (!r.alive) continue;
        const bool hi = i == d->highlight;
        if (focus && !hi) c.setAlphaF(0.35);
        QColor light = c;
        light.setAlphaF(c.alphaF() * 0.55);
        add(r.train, r.name + tr(" (train)"), QPen(light, hi ? 1.8 : 1.2), false);
        p->graph()->removeFromLegend();   // one legend entry per run: its held-out curve
        // Long names (a mixed plan's) are shortened in the legend; the runs table has them whole.
        add(r.eval, r.name.size() > 26 ? r.name.left(25) + QStringLiteral("…") : r.name, QPen(c, hi ? 3.4 : 2.4), true);
    }
    if (p->graphCount() > 0) {   // keys for the line styles
        const QColor text = palette().color(QPalette::Text);
        QColor faint = text;
        faint.setAlphaF(0.55);
        p->addGraph()->setName(tr("thin: train loss"));
        p->graph()->setPen(QPen(faint, 1.2));
        p->addGraph()->setName(tr("bold: held-out loss"));
        p->graph()->setPen(QPen(text, 2.4));
    }
    if (std::isfinite(d->reference)) {
        const QColor text = palette().color(QPalette::Text);
        QCPGraph* g = p->addGraph();
        g->setName(d->reference_label.isEmpty() ? tr("original model (held-out)") : d->reference_label);
        g->setPen(QPen(text, 1.5, Qt::DashLine));
        // Across the x range shown (a segment far longer than the view draws its dashes solid).
        g->setData(QVector<double>{0, std::max(xmax, 1.0)}, QVector<double>{d->reference, d->reference}, true);
        ymin = std::min(ymin, d->reference);
        ymax = std::max(ymax, d->reference);
    }
    if (!std::isfinite(ymin)) {
        ymin = 0;
        ymax = 1;
    }
    const double pad = std::max(1e-3, 0.06 * (ymax - ymin));
    p->xAxis->setRange(0, xmax);
    p->yAxis->setRange(ymin - pad, ymax + pad);
    p->legend->setVisible(p->graphCount() > 0);
    // As many legend columns as fit the width.
    int widest = 1;
    for (int i = 0; i < p->legend->itemCount(); ++i)
        if (QCPAbstractLegendItem* it = p->legend->item(i)) widest = std::max(widest, it->minimumOuterSizeHint().width());
    p->legend->setWrap(std::max(1, (p->width() - 8) / (widest + 8)));
    p->replot();
}

bool TrainingCurves::save(const QString& path, int width, int height, QString* error) {
    replotNow();
    return save_plot(d->plot, path, width, height, error);
}

}  // namespace studio
