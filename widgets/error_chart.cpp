// error_chart.cpp: see error_chart.h. The plot is rebuilt from RunResults on every (coalesced)
// replot: at most kMaxCurves graphs plus as many straight-line items, cheap next to painting.
#include "error_chart.h"

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

struct ErrorChart::Impl {
    struct Curve {
        QString name;                 // tensor name
        QString label;                // "L3 q_proj"
        int weight = -1;              // index into RunResults
        QCPGraph* graph = nullptr;
        double baseline = NAN;
        int steps_planned = 0;
    };
    RunResults* results = nullptr;
    QCustomPlot* plot = nullptr;
    QCPItemText* hint_item = nullptr;   // the centred hint of the last replot, if any
    QTimer timer;
    QStringList names;
    QVector<int> selected;            // RunResults indices of `names` in the run, -1 when absent
    QVector<Curve> curves;
    QString note;
    bool user_view = false;           // the user panned/zoomed: live updates keep the view
    bool setting_range = false;
    QSize export_size;                // valid while saving: the legend is laid out for it
    QCPLayoutGrid* side = nullptr;    // the legend's column right of the axis rect (wide plots)
    bool legend_fits = true;          // false: too little room, the legend is hidden
    ErrorKind kind = ErrorKind::Weight;
};

namespace {
QString y_label(ErrorKind k) {
    return k == ErrorKind::Output ? ErrorChart::tr("output error ‖X(W − Q − L)ᵀ‖ / ‖XWᵀ‖")
                                  : ErrorChart::tr("relative error ‖W − Q − L‖ / ‖W‖");
}
}  // namespace

ErrorChart::ErrorChart(RunResults* results, QWidget* parent) : QWidget(parent), d(std::make_unique<Impl>()) {
    d->results = results;
    d->plot = add_filling_plot(this);

    QCustomPlot* p = d->plot;
    p->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    p->xAxis->setLabel(tr("alternating step t"));
    p->yAxis->setLabel(y_label(d->kind));
    auto ticker = QSharedPointer<QCPAxisTickerFixed>::create();
    ticker->setTickStep(1.0);
    ticker->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
    p->xAxis->setTicker(ticker);
    p->xAxis->setRange(0.75, 5.25);
    p->yAxis->setRange(0, 1);
    // Legend: in a column right of the axis rect (on top, an empty element below taking the spare
    // height), wrapping into more columns when tall; placeLegend() moves a short legend of a
    // narrow plot into the axis rect instead.
    p->legend->setVisible(false);
    auto* side = d->side = new QCPLayoutGrid;
    p->plotLayout()->addElement(0, 1, side);
    p->plotLayout()->setColumnStretchFactor(1, 0.001);
    side->addElement(0, 0, p->legend);
    side->addElement(1, 0, new QCPLayoutElement(p));
    side->setRowStretchFactor(0, 0.001);
    const int em = fontMetrics().height();
    side->setMargins(QMargins(em / 2, em / 2, em / 2, em / 2));
    p->legend->setFillOrder(QCPLegend::foRowsFirst);
    p->setContextMenuPolicy(Qt::CustomContextMenu);
    apply_plot_style(p, this);

    coalesce_replots(d->timer, this, [this] { replotNow(); });
    auto schedule = [this] { request_replot(d->timer); };
    connect(results, &RunResults::reset, this, [this, schedule] {
        d->selected.clear();   // indices change with the run
        d->user_view = false;  // and a new run gets a fitted view
        schedule();
    });
    connect(results, &RunResults::staleChanged, this, schedule);
    connect(results, &RunResults::weightChanged, this, [this, schedule](int w) {
        if (d->names.isEmpty()) return;
        if (d->selected.size() != d->names.size() || d->selected.contains(w)) schedule();
    });

    connect(p->xAxis, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), this, [this] {
        if (!d->setting_range) d->user_view = true;
    });
    connect(p->yAxis, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), this, [this] {
        if (!d->setting_range) d->user_view = true;
    });
    connect(p, &QCustomPlot::mouseDoubleClick, this, [this](QMouseEvent*) { resetView(); });

    connect(p, &QCustomPlot::customContextMenuRequested, this, [this](const QPoint& pos) {
        QMenu menu(this);
        menu.addAction(tr("Reset view"), this, &ErrorChart::resetView);
        menu.addSeparator();
        add_export_actions(&menu, this, tr("Export error chart"), QStringLiteral("loftq-error"),
                           [this](const QString& path, QString* err) { return save(path, 0, 0, err); });
        menu.exec(d->plot->mapToGlobal(pos));
    });

    connect(p, &QCustomPlot::mouseMove, this, [this](QMouseEvent* ev) {
        if (ev->buttons() != Qt::NoButton) return;
        const QPointF at = ev->position();
        const double radius = 0.8 * fontMetrics().height();
        const Impl::Curve* best = nullptr;
        int best_step = 0;
        double best_value = NAN, best_dist = radius * radius;
        for (const auto& c : d->curves) {
            for (auto it = c.graph->data()->constBegin(); it != c.graph->data()->constEnd(); ++it) {
                const QPointF px = c.graph->coordsToPixels(it->key, it->value);
                const double dd = (px.x() - at.x()) * (px.x() - at.x()) + (px.y() - at.y()) * (px.y() - at.y());
                if (dd < best_dist) {
                    best_dist = dd;
                    best = &c;
                    best_step = int(std::lround(it->key));
                    best_value = it->value;
                }
            }
        }
        QString text;
        if (best) {
            const double err = best_value;
            text = tr("%1\n%2\nstep %3 of %4\n%5 %6\nQLoRA baseline %7")
                       .arg(best->label, best->name)
                       .arg(best_step)
                       .arg(best->steps_planned)
                       .arg(d->kind == ErrorKind::Output ? tr("output error") : tr("error"), format_sig(err),
                            format_sig(best->baseline));
        } else {
            for (const auto& c : d->curves) {
                if (std::isnan(c.baseline)) continue;
                if (std::abs(d->plot->yAxis->coordToPixel(c.baseline) - at.y()) < 0.3 * radius + 2) {
                    text = tr("%1\n%2\nQLoRA baseline %3").arg(c.label, c.name, format_sig(c.baseline));
                    break;
                }
            }
        }
        if (text.isEmpty())
            QToolTip::hideText();
        else
            QToolTip::showText(ev->globalPosition().toPoint(), text, d->plot);
    });
}

ErrorChart::~ErrorChart() = default;

void ErrorChart::setWeights(const QStringList& names) {
    if (names == d->names) return;
    d->names = names;
    d->selected.clear();
    d->timer.start();
}

QStringList ErrorChart::weights() const { return d->names; }
ErrorKind ErrorChart::errorKind() const { return d->kind; }

void ErrorChart::setErrorKind(ErrorKind k) {
    if (k == d->kind) return;
    d->kind = k;
    d->plot->yAxis->setLabel(y_label(k));
    d->user_view = false;   // the other error has its own range
    replotNow();
}
int ErrorChart::curveCount() const { return int(d->curves.size()); }
QString ErrorChart::curveWeight(int i) const { return i >= 0 && i < d->curves.size() ? d->curves[i].name : QString(); }
QString ErrorChart::curveLabel(int i) const { return i >= 0 && i < d->curves.size() ? d->curves[i].label : QString(); }
double ErrorChart::baselineValue(int i) const { return i >= 0 && i < d->curves.size() ? d->curves[i].baseline : NAN; }
QString ErrorChart::noteText() const { return d->note; }

QVector<double> ErrorChart::curveValues(int i) const {
    QVector<double> out;
    if (i < 0 || i >= d->curves.size()) return out;
    for (auto it = d->curves[i].graph->data()->constBegin(); it != d->curves[i].graph->data()->constEnd(); ++it)
        out.push_back(it->value);
    return out;
}

bool ErrorChart::save(const QString& path, int width, int height, QString* error) {
    return save_plot_laid_out(d->plot, &d->export_size, [this] { replotNow(); }, path, width, height, error);
}

void ErrorChart::resetView() {
    d->user_view = false;
    replotNow();
}

void ErrorChart::changeEvent(QEvent* e) {
    QWidget::changeEvent(e);
    if (e->type() == QEvent::PaletteChange || e->type() == QEvent::FontChange) {
        apply_plot_style(d->plot, this);
        d->timer.start();
    }
}

void ErrorChart::resizeEvent(QResizeEvent* e) {
    QWidget::resizeEvent(e);
    placeLegend(plot_export_size(d->plot, 0, 0));   // now: the plot repaints itself at once
    request_replot(d->timer);
}

void ErrorChart::placeLegend(const QSize& size) {
    QCustomPlot* p = d->plot;
    const int em = QFontMetrics(p->legend->font()).height();
    // A new legend column every so many entries, so that it never runs off the bottom.
    p->legend->setWrap(std::max(3, (size.height() - 3 * em) / std::max(1, em + 2)));
    p->legend->setFillOrder(QCPLegend::foRowsFirst, true);
    // A legend that is wide for the plot but short goes inside the axis rect (top right); else
    // it gets its own column on the right.
    const QSize legend = p->legend->minimumOuterSizeHint();
    d->legend_fits = legend.width() < 0.5 * size.width();
    if (!d->legend_fits || (legend.width() > 0.3 * size.width() && legend.height() < 0.6 * size.height())) {
        if (p->legend->layout() != p->axisRect()->insetLayout())
            p->axisRect()->insetLayout()->addElement(p->legend, Qt::AlignTop | Qt::AlignRight);
    } else if (p->legend->layout() != d->side) {
        d->side->addElement(0, 0, p->legend);
    }
    // A legend that would leave the curves less than half the width is hidden (narrow docks,
    // high-DPI; parked in the inset layout, which reserves no room): hover tooltips name the curves.
    p->legend->setVisible(!d->curves.isEmpty() && d->legend_fits);
}

void ErrorChart::replotNow() {
    d->timer.stop();
    QCustomPlot* p = d->plot;
    const RunResults* rr = d->results;
    if (d->selected.size() != d->names.size()) {
        d->selected.clear();
        for (const QString& n : d->names) d->selected.push_back(rr->indexOf(n));
    }

    p->clearGraphs();
    p->clearItems();
    d->hint_item = nullptr;
    set_fitting_label(p->yAxis, y_label(d->kind), d->kind == ErrorKind::Output ? tr("output error") : tr("relative error"));
    p->legend->clearItems();
    d->curves.clear();
    const int em = QFontMetrics(p->legend->font()).height();
    int present = 0;
    for (int w : d->selected) present += w >= 0 ? 1 : 0;

    const QColor text = palette().color(QPalette::Text);
    int max_steps = 1;
    double lo = INFINITY, hi = -INFINITY;
    auto extend = [&](double v) {
        if (std::isfinite(v)) {
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
    };
    for (int w : d->selected) {
        if (w < 0) continue;
        if (d->curves.size() >= kMaxCurves) break;
        const WeightRun& run = rr->weight(w);
        Impl::Curve c;
        c.name = run.name;
        c.label = short_weight_name(run.name, run.module, run.layer);
        if (run.stale) c.label += tr(" (stale)");   // computed with settings the plan no longer gives
        c.weight = w;
        c.baseline = run.baselineOf(d->kind);
        c.steps_planned = run.steps_planned;
        const QColor color = series_color(int(d->curves.size()));
        c.graph = p->addGraph();
        c.graph->setName(c.label);
        c.graph->setPen(QPen(color, run.stale ? 1 : 2, run.stale ? Qt::DotLine : Qt::SolidLine));
        c.graph->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, color, color, 5));
        QVector<double> keys, values;
        const QVector<double>& errors = run.errorsOf(d->kind);
        for (int t = 0; t < errors.size(); ++t) {
            keys.push_back(t + 1);
            values.push_back(errors[t]);
            extend(errors[t]);
        }
        c.graph->setData(keys, values, true);
        max_steps = std::max({max_steps, run.steps_planned, int(errors.size())});
        if (!std::isnan(c.baseline)) {
            auto* line = new QCPItemStraightLine(p);
            line->point1->setCoords(0, c.baseline);
            line->point2->setCoords(1, c.baseline);
            line->setPen(QPen(color, 1.5, Qt::DashLine));
            line->setSelectable(false);
            extend(c.baseline);
        }
        d->curves.push_back(c);
    }
    const bool any_baseline = std::any_of(d->curves.begin(), d->curves.end(), [](const Impl::Curve& c) { return !std::isnan(c.baseline); });
    if (any_baseline) {
        QCPGraph* key = p->addGraph();   // legend entry only, no data
        key->setName(tr("dashed: QLoRA baseline"));
        key->setPen(QPen(text, 1.5, Qt::DashLine));
    }

    // Items clip to their rect; room below the text keeps underscores ("q_proj") visible.
    for (int i = 0; i < p->legend->itemCount(); ++i)
        if (QCPAbstractLegendItem* item = p->legend->item(i)) item->setMargins(QMargins(0, 0, 0, std::max(2, em / 6)));
    placeLegend(d->export_size.isValid() ? d->export_size : plot_export_size(p, 0, 0));

    d->note = present > kMaxCurves ? tr("showing %1 of %2 selected").arg(kMaxCurves).arg(present) : QString();
    QString hint;
    if (d->names.isEmpty())
        hint = tr("Select cells in the plan grid to plot their error");
    else if (d->curves.isEmpty())
        hint = rr->count() == 0 ? tr("Run the plan to plot the error of the selected weights")
                                : tr("The selected weights are not in this run");
    QColor faint = text;
    faint.setAlpha(170);
    auto add_text = [&](const QString& s, double x, double y, Qt::Alignment align) {
        auto* item = new QCPItemText(p);
        item->position->setType(QCPItemPosition::ptAxisRectRatio);
        item->position->setCoords(x, y);
        item->setPositionAlignment(align);
        item->setText(s);
        item->setFont(font());
        item->setColor(faint);
        item->setPadding(QMargins(4, 2, 4, 2));
        item->setSelectable(false);
    };
    if (!hint.isEmpty()) {
        const int room = (p->axisRect()->width() > 0 ? p->axisRect()->width() : p->width() * 2 / 3) - 12;
        add_text(wrap_to_width(hint, QFontMetrics(font()), room), 0.5, 0.5, Qt::AlignCenter);
        d->hint_item = qobject_cast<QCPItemText*>(p->item(p->itemCount() - 1));
    } else {
        d->hint_item = nullptr;
    }
    if (!d->note.isEmpty()) add_text(d->note, 0.0, 0.0, Qt::AlignLeft | Qt::AlignTop);

    if (!d->user_view) {
        d->setting_range = true;
        p->xAxis->setRange(0.75, max_steps + 0.25);
        if (lo <= hi) {
            const double span = hi - lo;
            const double pad = span > 0 ? 0.08 * span : std::max(0.1 * std::abs(hi), 1e-6);
            p->yAxis->setRange(std::max(0.0, lo - pad), hi + pad);
        } else {
            p->yAxis->setRange(0, 1);
        }
        d->setting_range = false;
    }
    p->replot();
    // A legend inside the plot goes to the corner where it covers the fewest points and
    // baselines (error curves fall to the right and the baselines run along the top, so the top
    // right, QCustomPlot's default, is often the worst place).
    if (p->legend->visible() && p->legend->layout() == p->axisRect()->insetLayout()) {
        QCPLayoutInset* inset = p->axisRect()->insetLayout();
        const int idx = [&] {
            for (int i = 0; i < inset->elementCount(); ++i)
                if (inset->elementAt(i) == p->legend) return i;
            return -1;
        }();
        if (idx >= 0) {
            int best = -1;
            Qt::Alignment best_at = Qt::AlignTop | Qt::AlignRight;
            for (Qt::Alignment at : {Qt::AlignTop | Qt::AlignRight, Qt::AlignBottom | Qt::AlignLeft, Qt::AlignBottom | Qt::AlignRight,
                                     Qt::AlignTop | Qt::AlignLeft}) {
                inset->setInsetAlignment(idx, at);
                inset->updateLayout();   // places the legend in that corner (the axis rect is laid out already)
                const int n = legendCollisionsAt(p->legend->outerRect());
                if (best < 0 || n < best) {
                    best = n;
                    best_at = at;
                }
                if (n == 0) break;
            }
            inset->setInsetAlignment(idx, best_at);
            if (best > 0) d->side->addElement(0, 0, p->legend);   // no free corner: beside the plot
            p->replot();
        }
    }
}

int ErrorChart::legendCollisionsAt(const QRect& r) const {
    QCustomPlot* p = d->plot;
    int n = 0;
    for (const Impl::Curve& c : d->curves) {
        for (auto it = c.graph->data()->constBegin(); it != c.graph->data()->constEnd(); ++it)
            n += r.contains(QPointF(p->xAxis->coordToPixel(it->key), p->yAxis->coordToPixel(it->value)).toPoint()) ? 1 : 0;
        if (!std::isnan(c.baseline)) {
            const double y = p->yAxis->coordToPixel(c.baseline);
            n += y >= r.top() - 2 && y <= r.bottom() + 2 ? 1 : 0;
        }
    }
    return n;
}

bool ErrorChart::textsFit() const { return plot_texts_fit(d->plot, d->hint_item); }

int ErrorChart::legendCollisions() const {
    QCustomPlot* p = d->plot;
    if (!p->legend->visible() || p->legend->layout() != p->axisRect()->insetLayout()) return 0;
    return legendCollisionsAt(p->legend->outerRect());
}

}  // namespace studio
