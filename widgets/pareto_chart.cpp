// pareto_chart.cpp: see pareto_chart.h. Every replot rebuilds the few graphs and items from
// ParetoData (tens of points); each drawn point remembers its index in the data so that clicks
// and tooltips map back to it, whatever was left out (damage 0 on a log axis).
#include "pareto_chart.h"

#include <QMenu>
#include <QTimer>
#include <QToolTip>
#include <algorithm>
#include <array>
#include <qcustomplot.h>

#include "plot_style.h"

namespace studio {

namespace {
constexpr int kSeries = 5;
int series_index(ParetoChart::Series s) { return int(s); }
}  // namespace

struct ParetoChart::Impl {
    struct Drawn {
        double x = 0, y = 0;   // plot coordinates (y on yAxis2 for evaluated points)
        int index = -1;        // into the series' data
    };
    ParetoData data;
    QCustomPlot* plot = nullptr;
    QCPItemText* hint = nullptr;
    QTimer timer;
    XUnit unit = XUnit::BitsPerParam;
    bool log = true;
    double marker = NAN, alloc_bytes = NAN, alloc_damage = NAN;
    std::array<QVector<Drawn>, kSeries> drawn;
    double byte_scale = 1e6;   // bytes per x unit in Bytes mode
    QString byte_unit = QStringLiteral("MB");
    bool user_view = false, setting_range = false;
    QPoint press_pos{-1, -1};
    QSize export_size;         // valid while saving: labels are laid out for it
};

ParetoChart::ParetoChart(QWidget* parent) : QWidget(parent), d(std::make_unique<Impl>()) {
    d->plot = add_filling_plot(this);
    QCustomPlot* p = d->plot;
    p->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    p->setContextMenuPolicy(Qt::CustomContextMenu);
    p->yAxis2->setVisible(false);
    p->legend->setVisible(false);
    p->axisRect()->insetLayout()->addElement(p->legend, Qt::AlignTop | Qt::AlignRight);
    d->hint = add_centre_hint(p);
    apply_plot_style(p, this);

    coalesce_replots(d->timer, this, [this] { replotNow(); });
    for (QCPAxis* a : {p->xAxis, p->yAxis, p->yAxis2})
        connect(a, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), this, [this] {
            if (!d->setting_range) d->user_view = true;
        });
    connect(p, &QCustomPlot::mouseDoubleClick, this, [this](QMouseEvent*) { resetView(); });

    // The nearest drawn point within ~0.8 em of `at`: (series, data index), or (-1, -1).
    auto hit = [this](const QPointF& at) -> std::pair<int, int> {
        const double radius = 0.8 * fontMetrics().height();
        double best = radius * radius;
        std::pair<int, int> found{-1, -1};
        for (int s = 0; s < kSeries; ++s) {
            QCPAxis* y = s == series_index(Series::Evaluated) ? d->plot->yAxis2 : d->plot->yAxis;
            for (const auto& pt : d->drawn[size_t(s)]) {
                const QPointF px(d->plot->xAxis->coordToPixel(pt.x), y->coordToPixel(pt.y));
                const double dd = (px.x() - at.x()) * (px.x() - at.x()) + (px.y() - at.y()) * (px.y() - at.y());
                if (dd < best) {
                    best = dd;
                    found = {s, pt.index};
                }
            }
        }
        return found;
    };
    connect(p, &QCustomPlot::mouseMove, this, [this, hit](QMouseEvent* ev) {
        if (ev->buttons() != Qt::NoButton) return;
        const auto [s, i] = hit(ev->position());
        if (s < 0)
            QToolTip::hideText();
        else
            QToolTip::showText(ev->globalPosition().toPoint(), pointTip(Series(s), i), d->plot);
    });
    connect(p, &QCustomPlot::mousePress, this, [this](QMouseEvent* ev) {
        d->press_pos = ev->button() == Qt::LeftButton ? ev->position().toPoint() : QPoint(-1, -1);
    });
    connect(p, &QCustomPlot::mouseRelease, this, [this, hit](QMouseEvent* ev) {
        if (ev->button() != Qt::LeftButton || d->press_pos.x() < 0) return;
        const bool click = (ev->position().toPoint() - d->press_pos).manhattanLength() <= 4;
        d->press_pos = QPoint(-1, -1);
        if (!click) return;
        const auto [s, i] = hit(ev->position());
        if (s == series_index(Series::Front)) emit frontClicked(i);
        if (s == series_index(Series::Uniform)) emit uniformClicked(i);
    });
    connect(p, &QCustomPlot::customContextMenuRequested, this, [this](const QPoint& pos) {
        QMenu menu(this);
        QAction* bits = menu.addAction(tr("x: bits per parameter"), this, [this] { setXUnit(XUnit::BitsPerParam); });
        QAction* bytes = menu.addAction(tr("x: model size in bytes"), this, [this] { setXUnit(XUnit::Bytes); });
        bits->setCheckable(true);
        bytes->setCheckable(true);
        bits->setChecked(d->unit == XUnit::BitsPerParam);
        bytes->setChecked(d->unit == XUnit::Bytes);
        QAction* log = menu.addAction(tr("Logarithmic damage axis"), this, [this](bool on) { setLogDamage(on); });
        log->setCheckable(true);
        log->setChecked(d->log);
        menu.addAction(tr("Reset view"), this, &ParetoChart::resetView);
        menu.addSeparator();
        add_export_actions(&menu, this, tr("Export the mixed-precision front"), QStringLiteral("loftq-front"),
                           [this](const QString& path, QString* err) { return save(path, 0, 0, err); });
        menu.exec(d->plot->mapToGlobal(pos));
    });
    replotNow();
}

ParetoChart::~ParetoChart() = default;

void ParetoChart::setData(const ParetoData& data) {
    d->data = data;
    d->user_view = false;
    request_replot(d->timer);
}

const ParetoData& ParetoChart::data() const { return d->data; }
ParetoChart::XUnit ParetoChart::xUnit() const { return d->unit; }
bool ParetoChart::logDamage() const { return d->log; }
double ParetoChart::markerBytes() const { return d->marker; }
QString ParetoChart::xLabel() const { return d->plot->xAxis->label(); }
QString ParetoChart::yLabel() const { return d->plot->yAxis->label(); }

void ParetoChart::setXUnit(XUnit u) {
    if (u == d->unit) return;
    d->unit = u;
    d->user_view = false;
    replotNow();
    emit xUnitChanged(u);
}

void ParetoChart::setLogDamage(bool on) {
    if (on == d->log) return;
    d->log = on;
    d->user_view = false;
    replotNow();
}

void ParetoChart::setMarker(double budget, double alloc_bytes, double alloc_damage) {
    d->marker = budget;
    d->alloc_bytes = alloc_bytes;
    d->alloc_damage = alloc_damage;
    request_replot(d->timer);
}

int ParetoChart::pointCount(Series s) const { return int(d->drawn[size_t(series_index(s))].size()); }

QPointF ParetoChart::pointPixel(Series s, int i) const {
    for (const auto& pt : d->drawn[size_t(series_index(s))])
        if (pt.index == i) {
            QCPAxis* y = s == Series::Evaluated ? d->plot->yAxis2 : d->plot->yAxis;
            return QPointF(d->plot->xAxis->coordToPixel(pt.x), y->coordToPixel(pt.y));
        }
    return QPointF(-1, -1);
}

bool ParetoChart::save(const QString& path, int width, int height, QString* error) {
    return save_plot_laid_out(d->plot, &d->export_size, [this] { replotNow(); }, path, width, height, error);
}

void ParetoChart::resetView() {
    d->user_view = false;
    replotNow();
}

void ParetoChart::changeEvent(QEvent* e) {
    QWidget::changeEvent(e);
    if (e->type() == QEvent::PaletteChange || e->type() == QEvent::FontChange) {
        apply_plot_style(d->plot, this);
        request_replot(d->timer);
    }
}

void ParetoChart::resizeEvent(QResizeEvent* e) {
    QWidget::resizeEvent(e);
    request_replot(d->timer);   // label fonts and the legend depend on the size
}

QString ParetoChart::pointTip(Series s, int i) const {
    const ParetoData& dt = d->data;
    auto size = [&](double bytes) {
        QString t = format_bytes_decimal(uint64_t(std::max(0.0, bytes)));
        if (dt.params > 0) t += tr(", %1 bits/param").arg(8.0 * bytes / dt.params, 0, 'f', 3);
        return t;
    };
    const QString metric = dt.metric.isEmpty() ? tr("error") : dt.metric;
    switch (s) {
    case Series::Front: {
        const ParetoPoint& p = dt.front[i];
        return tr("allocator's plan %1 of %2\n%3\ndamage %4 (Σ squared relative %5)%6\nclick: load this plan into the grid")
            .arg(i + 1)
            .arg(dt.front.size())
            .arg(size(p.bytes), format_sig(p.damage), metric, p.optimal ? tr(", optimal") : tr(", not proved optimal"));
    }
    case Series::Uniform: {
        const ParetoPoint& p = dt.uniform[i];
        return tr("uniform %1 (every target weight)\n%2\ndamage %3\nclick: load this plan into the grid")
            .arg(p.label, size(p.bytes), format_sig(p.damage));
    }
    case Series::Current:
        return tr("the plan in the grid\n%1\ndamage %2").arg(size(dt.current->bytes), format_sig(dt.current->damage));
    case Series::Chosen:
        return tr("%1\n%2\ndamage %3")
            .arg(dt.chosen->label.isEmpty() ? tr("chosen plan") : dt.chosen->label, size(dt.chosen->bytes), format_sig(dt.chosen->damage));
    case Series::Evaluated: {
        const ParetoEval& e = dt.evaluated[i];
        QString t = tr("%1\n%2\nheld-out loss of the LoftQ init %3").arg(e.label, size(e.bytes), format_sig(e.loss));
        if (!e.tip.isEmpty()) t += "\n" + e.tip;
        return t;
    }
    }
    return {};
}

void ParetoChart::replotNow() {
    d->timer.stop();
    QCustomPlot* p = d->plot;
    const ParetoData& dt = d->data;
    p->clearGraphs();
    p->clearItems();
    p->legend->clearItems();
    for (auto& v : d->drawn) v.clear();
    d->hint = add_centre_hint(p);

    const QPalette pal = palette();
    const QColor text = pal.color(QPalette::Text), base = pal.color(QPalette::Base);
    const QSize size = d->export_size.isValid() ? d->export_size : plot_export_size(p, 0, 0);
    const int em = QFontMetrics(font()).height();

    // x: bits per parameter, or bytes in a unit chosen from the largest point.
    double max_bytes = 0;
    for (const auto& v : {dt.front, dt.uniform})
        for (const auto& pt : v) max_bytes = std::max(max_bytes, pt.bytes);
    for (const auto& e : dt.evaluated) max_bytes = std::max(max_bytes, e.bytes);
    if (dt.current) max_bytes = std::max(max_bytes, dt.current->bytes);
    if (dt.chosen) max_bytes = std::max(max_bytes, dt.chosen->bytes);
    d->byte_scale = max_bytes >= 1e9 ? 1e9 : max_bytes >= 1e6 ? 1e6 : 1e3;
    d->byte_unit = max_bytes >= 1e9 ? QStringLiteral("GB") : max_bytes >= 1e6 ? QStringLiteral("MB") : QStringLiteral("kB");
    const bool bits = d->unit == XUnit::BitsPerParam && dt.params > 0;
    auto X = [&](double bytes) { return bits ? 8.0 * bytes / dt.params : bytes / d->byte_scale; };
    p->xAxis->setLabel(bits ? tr("bits per parameter (whole model, LoRA factors included)")
                            : tr("model size (%1, LoRA factors included)").arg(d->byte_unit));
    // Axis titles: the full wording when the plot is tall enough for it, else a short one.
    const QString metric = dt.metric.isEmpty() ? tr("error") : dt.metric;
    const QFontMetrics label_fm(p->yAxis->labelFont());
    const int tall = size.height() - 4 * em;
    auto fit = [&](const QStringList& texts) {   // the longest that fits, else the shortest
        for (const QString& t : texts)
            if (label_fm.horizontalAdvance(t) < tall) return t;
        return texts.back();
    };
    p->yAxis->setLabel(fit({tr("predicted damage Σ e² (e: relative %1)").arg(metric), tr("damage Σe² (%1)").arg(metric),
                            tr("damage Σe²")}));
    p->yAxis->setScaleType(d->log ? QCPAxis::stLogarithmic : QCPAxis::stLinear);
    if (d->log) {
        auto t = QSharedPointer<QCPAxisTickerLog>::create();
        t->setSubTickCount(8);
        p->yAxis->setTicker(t);
        p->yAxis->setNumberFormat("gb");
        p->yAxis->setNumberPrecision(0);
    } else {
        p->yAxis->setTicker(QSharedPointer<QCPAxisTicker>::create());
        p->yAxis->setNumberFormat("g");
        p->yAxis->setNumberPrecision(4);
    }
    auto drawable = [&](double damage) { return std::isfinite(damage) && (!d->log || damage > 0); };

    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    auto extend = [&](double x, double y) {
        xlo = std::min(xlo, x);
        xhi = std::max(xhi, x);
        ylo = std::min(ylo, y);
        yhi = std::max(yhi, y);
    };
    auto add_graph = [&](const QString& name, QCPAxis* y, QPen pen, QCPScatterStyle sc) {
        QCPGraph* g = p->addGraph(p->xAxis, y);
        g->setName(name);
        g->setPen(pen);
        g->setScatterStyle(sc);
        return g;
    };

    QFont small = font();   // point labels
    if (small.pointSizeF() > 0) small.setPointSizeF(small.pointSizeF() * 0.85);

    // The front: a line with points; a hollow point where optimality was not proved.
    const QColor front_c = series_color(0);
    if (!dt.front.isEmpty()) {
        QCPGraph* g = add_graph(tr("allocator's front"), p->yAxis, QPen(front_c, 2),
                                QCPScatterStyle(QCPScatterStyle::ssCircle, front_c, front_c, 7));
        QCPGraph* open = nullptr;
        QVector<double> xs, ys, ox, oy;
        for (int i = 0; i < dt.front.size(); ++i) {
            const ParetoPoint& pt = dt.front[i];
            if (!drawable(pt.damage)) continue;
            const double x = X(pt.bytes);
            (pt.optimal ? xs : ox).push_back(x);
            (pt.optimal ? ys : oy).push_back(pt.damage);
            if (!pt.optimal) {
                xs.push_back(x);   // the line passes through it too
                ys.push_back(pt.damage);
            }
            d->drawn[size_t(series_index(Series::Front))].push_back({x, pt.damage, i});
            extend(x, pt.damage);
        }
        g->setData(xs, ys);
        if (!ox.isEmpty()) {
            open = add_graph(tr("front, not proved optimal"), p->yAxis, Qt::NoPen,
                             QCPScatterStyle(QCPScatterStyle::ssCircle, QPen(front_c, 1.5), base, 7));
            open->setLineStyle(QCPGraph::lsNone);
            open->setData(ox, oy);
        }
    }

    // Uniform plans: labelled squares.
    const QColor uni_c = series_color(1);
    if (!dt.uniform.isEmpty()) {
        QCPGraph* g = add_graph(tr("uniform plans"), p->yAxis, Qt::NoPen,
                                QCPScatterStyle(QCPScatterStyle::ssSquare, uni_c, uni_c, 7));
        g->setLineStyle(QCPGraph::lsNone);
        QVector<double> xs, ys;
        for (int i = 0; i < dt.uniform.size(); ++i) {
            const ParetoPoint& pt = dt.uniform[i];
            if (!drawable(pt.damage)) continue;
            const double x = X(pt.bytes);
            xs.push_back(x);
            ys.push_back(pt.damage);
            d->drawn[size_t(series_index(Series::Uniform))].push_back({x, pt.damage, i});
            extend(x, pt.damage);
            auto* label = new QCPItemText(p);
            label->position->setCoords(x, pt.damage);
            // Ranks alternate above and below their point, so that r16 and r64 of one
            // quantizer (close in x) do not overlap.
            const bool above = !pt.label.endsWith(QStringLiteral("r64"));
            label->setPositionAlignment(Qt::AlignHCenter | (above ? Qt::AlignBottom : Qt::AlignTop));
            label->setPadding(QMargins(2, above ? 0 : 5, 2, above ? 5 : 0));
            label->setText(pt.label);
            label->setFont(small);
            label->setColor(uni_c.darker(140));
            label->setClipToAxisRect(true);
            label->setSelectable(false);
        }
        g->setData(xs, ys);
    }

    // A short caption right of a point (the legend may be hidden in a small dock).
    auto caption = [&](double x, double y, QCPAxis* yaxis, const QString& s, const QColor& c) {
        auto* label = new QCPItemText(p);
        label->position->setAxes(p->xAxis, yaxis);
        label->position->setCoords(x, y);
        label->setPositionAlignment(Qt::AlignLeft | Qt::AlignVCenter);
        label->setPadding(QMargins(em * 3 / 4, 0, 2, 0));
        label->setText(s);
        label->setFont(small);
        label->setColor(c);
        label->setClipToAxisRect(true);
        label->setSelectable(false);
    };

    // The plan in the grid, and a chosen plan.
    auto single = [&](const std::optional<ParetoPoint>& pt, Series s, const QString& name, const QString& cap, QCPScatterStyle sc) {
        if (!pt || !drawable(pt->damage)) return;
        QCPGraph* g = add_graph(name, p->yAxis, Qt::NoPen, sc);
        g->setLineStyle(QCPGraph::lsNone);
        const double x = X(pt->bytes);
        g->setData({x}, {pt->damage});
        d->drawn[size_t(series_index(s))].push_back({x, pt->damage, 0});
        extend(x, pt->damage);
        caption(x, pt->damage, p->yAxis, cap, sc.pen().color());
    };
    single(dt.current, Series::Current, tr("plan in the grid"), tr("grid"),
           QCPScatterStyle(QCPScatterStyle::ssCrossCircle, QPen(text, 2), Qt::NoBrush, 13));
    const QColor chosen_c = series_color(2);
    single(dt.chosen, Series::Chosen, dt.chosen && !dt.chosen->label.isEmpty() ? dt.chosen->label : tr("chosen plan"), tr("chosen"),
           QCPScatterStyle(QCPScatterStyle::ssStar, QPen(chosen_c, 2.5), Qt::NoBrush, 15));

    // Evaluated plans on the right axis: held-out loss of the LoftQ init.
    const bool evals = !dt.evaluated.isEmpty() || std::isfinite(dt.original_loss);
    p->yAxis2->setVisible(evals);
    double llo = INFINITY, lhi = -INFINITY;
    if (evals) {
        style_axis(p->yAxis2, this);
        p->yAxis2->grid()->setVisible(false);
        p->yAxis2->setLabel(fit({tr("held-out loss (LoftQ init)"), tr("held-out loss"), tr("loss")}));
        const QColor ev_c = series_color(4);
        QCPGraph* g = add_graph(tr("evaluated: held-out loss (right)"), p->yAxis2, Qt::NoPen,
                                QCPScatterStyle(QCPScatterStyle::ssDiamond, ev_c, ev_c, 10));
        g->setLineStyle(QCPGraph::lsNone);
        QVector<double> xs, ys;
        for (int i = 0; i < dt.evaluated.size(); ++i) {
            const ParetoEval& e = dt.evaluated[i];
            if (!std::isfinite(e.loss)) continue;
            const double x = X(e.bytes);
            xs.push_back(x);
            ys.push_back(e.loss);
            d->drawn[size_t(series_index(Series::Evaluated))].push_back({x, e.loss, i});
            caption(x, e.loss, p->yAxis2, e.label, ev_c.darker(130));
            xlo = std::min(xlo, x);
            xhi = std::max(xhi, x);
            llo = std::min(llo, e.loss);
            lhi = std::max(lhi, e.loss);
        }
        g->setData(xs, ys);
        if (std::isfinite(dt.original_loss)) {
            auto* line = new QCPItemStraightLine(p);
            line->point1->setAxes(p->xAxis, p->yAxis2);
            line->point2->setAxes(p->xAxis, p->yAxis2);
            line->point1->setCoords(0, dt.original_loss);
            line->point2->setCoords(1, dt.original_loss);
            line->setPen(QPen(ev_c, 1.2, Qt::DotLine));
            line->setSelectable(false);
            QCPGraph* key = add_graph(tr("original model's loss (right)"), p->yAxis2, QPen(ev_c, 1.2, Qt::DotLine), QCPScatterStyle());
            (void)key;   // legend entry only
            llo = std::min(llo, dt.original_loss);
            lhi = std::max(lhi, dt.original_loss);
        }
    }

    // The budget slider's marker and the allocation at it.
    if (std::isfinite(d->marker)) {
        const QColor m = series_color(3);
        auto* line = new QCPItemStraightLine(p);
        line->point1->setCoords(X(d->marker), 0);
        line->point2->setCoords(X(d->marker), 1);
        line->setPen(QPen(m, 1.5, Qt::DashLine));
        line->setSelectable(false);
        QCPGraph* key = add_graph(tr("budget"), p->yAxis, QPen(m, 1.5, Qt::DashLine), QCPScatterStyle());
        if (std::isfinite(d->alloc_bytes) && drawable(d->alloc_damage)) {
            key->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, QPen(m, 2), Qt::NoBrush, 14));
            auto* ring = add_graph(QString(), p->yAxis, Qt::NoPen, QCPScatterStyle(QCPScatterStyle::ssCircle, QPen(m, 2), Qt::NoBrush, 14));
            ring->setLineStyle(QCPGraph::lsNone);
            ring->setData({X(d->alloc_bytes)}, {d->alloc_damage});
            ring->removeFromLegend();
        }
        xlo = std::min(xlo, X(d->marker));
        xhi = std::max(xhi, X(d->marker));
    }

    const bool empty = dt.front.isEmpty() && dt.uniform.isEmpty() && !dt.current && !dt.chosen && dt.evaluated.isEmpty();
    d->hint->setVisible(empty);
    d->hint->setText(tr("Sweep the model to see the least damage at each size"));
    d->hint->setFont(font());
    d->hint->setColor(text);
    d->hint->setBrush(base);
    d->hint->setPadding(QMargins(6, 4, 6, 4));

    // Legend inside the axis rect, top right (the front falls from top left to bottom right);
    // hidden when the plot is too small for it to leave the points visible.
    for (int i = 0; i < p->legend->itemCount(); ++i)
        if (QCPAbstractLegendItem* item = p->legend->item(i)) item->setMargins(QMargins(0, 0, 0, std::max(2, em / 6)));
    const QSize legend = p->legend->minimumOuterSizeHint();
    p->legend->setVisible(!empty && legend.width() < 0.4 * size.width() &&
                          double(legend.width()) * legend.height() < 0.16 * size.width() * size.height());

    if (!d->user_view) {
        d->setting_range = true;
        if (xlo <= xhi) {
            const double pad = xhi > xlo ? 0.05 * (xhi - xlo) : std::max(0.5, 0.1 * std::abs(xhi));
            p->xAxis->setRange(xlo - pad, xhi + pad);
        } else {
            p->xAxis->setRange(0, 16);
        }
        if (ylo <= yhi) {
            if (d->log) {
                p->yAxis->setRange(ylo / 1.8, yhi * 1.8);
            } else {
                const double pad = yhi > ylo ? 0.06 * (yhi - ylo) : std::max(1e-6, 0.1 * std::abs(yhi));
                p->yAxis->setRange(std::max(0.0, ylo - pad), yhi + pad);
            }
        } else {
            p->yAxis->setRange(d->log ? 1e-4 : 0.0, 1);
        }
        if (llo <= lhi) {
            const double pad = lhi > llo ? 0.1 * (lhi - llo) : std::max(0.05, 0.05 * std::abs(lhi));
            p->yAxis2->setRange(llo - pad, lhi + pad);
        }
        d->setting_range = false;
    }
    p->replot();
}

}  // namespace studio
