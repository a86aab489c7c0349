// error_heatmap.cpp: see error_heatmap.h. Cell (column c, layer l) sits at plot coordinates
// (c, l); the y axis is reversed so that layer 0 is at the top.
#include "error_heatmap.h"

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

struct ErrorHeatmap::Impl {
    RunResults* results = nullptr;
    QCustomPlot* plot = nullptr;
    QCPColorMap* map = nullptr;
    QCPColorScale* scale = nullptr;
    QCPItemText* hint = nullptr;
    QTimer timer;
    Mode mode = Mode::FinalError;
    ErrorKind kind = ErrorKind::Weight;
    QPoint press_pos{-1, -1};
    QSize export_size;          // valid while saving: labels and separators are laid out for it
    QVector<QCPItemStraightLine*> separators;   // thin lines between cells, when cells are large
    QVector<QCPItemRect*> stale_marks;          // two per stale cell: a grey veil and a cross hatch
    QVector<QPoint> stale_cells;                // (column, layer) of each
};

ErrorHeatmap::ErrorHeatmap(RunResults* results, QWidget* parent) : QWidget(parent), d(std::make_unique<Impl>()) {
    d->results = results;
    d->plot = add_filling_plot(this);

    QCustomPlot* p = d->plot;
    p->setContextMenuPolicy(Qt::CustomContextMenu);
    p->xAxis->setLabel(tr("module"));
    p->yAxis->setLabel(tr("decoder layer"));
    p->yAxis->setRangeReversed(true);
    p->xAxis->grid()->setVisible(false);
    p->yAxis->grid()->setVisible(false);
    auto yticker = QSharedPointer<QCPAxisTickerFixed>::create();
    yticker->setTickStep(1.0);
    yticker->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
    p->yAxis->setTicker(yticker);
    p->yAxis->setSubTicks(false);
    p->xAxis->setSubTicks(false);
    p->xAxis->setTicker(QSharedPointer<QCPAxisTickerText>::create());

    d->map = new QCPColorMap(p->xAxis, p->yAxis);
    d->map->setInterpolate(false);
    d->map->setTightBoundary(false);
    d->scale = new QCPColorScale(p);
    p->plotLayout()->addElement(0, 1, d->scale);
    d->scale->setType(QCPAxis::atRight);
    d->map->setColorScale(d->scale);
    auto* group = new QCPMarginGroup(p);
    p->axisRect()->setMarginGroup(QCP::msTop | QCP::msBottom, group);
    d->scale->setMarginGroup(QCP::msTop | QCP::msBottom, group);

    d->hint = add_centre_hint(p);

    coalesce_replots(d->timer, this, [this] { replotNow(); });
    connect(results, &RunResults::reset, this, [this] { request_replot(d->timer); });
    connect(results, &RunResults::weightChanged, this, [this] { request_replot(d->timer); });
    connect(results, &RunResults::staleChanged, this, [this] { request_replot(d->timer); });

    auto cell_at = [this](const QPointF& pos, int* layer, int* column) {
        if (!d->plot->axisRect()->rect().contains(pos.toPoint())) return false;
        *column = int(std::lround(d->plot->xAxis->pixelToCoord(pos.x())));
        *layer = int(std::lround(d->plot->yAxis->pixelToCoord(pos.y())));
        return d->results->weightAt(*layer, *column) >= 0;
    };
    connect(p, &QCustomPlot::mouseMove, this, [this, cell_at](QMouseEvent* ev) {
        int layer = -1, column = -1;
        if (ev->buttons() == Qt::NoButton && cell_at(ev->position(), &layer, &column))
            QToolTip::showText(ev->globalPosition().toPoint(), cellTip(layer, column), d->plot);
        else
            QToolTip::hideText();
    });
    connect(p, &QCustomPlot::mousePress, this, [this](QMouseEvent* ev) {
        d->press_pos = ev->button() == Qt::LeftButton ? ev->position().toPoint() : QPoint(-1, -1);
    });
    connect(p, &QCustomPlot::mouseRelease, this, [this, cell_at](QMouseEvent* ev) {
        if (ev->button() != Qt::LeftButton || d->press_pos.x() < 0) return;
        const bool click = (ev->position().toPoint() - d->press_pos).manhattanLength() <= 4;
        d->press_pos = QPoint(-1, -1);
        int layer = -1, column = -1;
        if (click && cell_at(ev->position(), &layer, &column))
            emit weightClicked(d->results->weight(d->results->weightAt(layer, column)).name);
    });

    connect(p, &QCustomPlot::customContextMenuRequested, this, [this](const QPoint& pos) {
        QMenu menu(this);
        QAction* fin = menu.addAction(tr("Final error"), this, [this] { setMode(Mode::FinalError); });
        QAction* imp = menu.addAction(tr("Improvement over QLoRA"), this, [this] { setMode(Mode::Improvement); });
        fin->setCheckable(true);
        imp->setCheckable(true);
        fin->setChecked(d->mode == Mode::FinalError);
        imp->setChecked(d->mode == Mode::Improvement);
        menu.addSeparator();
        add_export_actions(&menu, this, tr("Export heatmap"), QStringLiteral("loftq-heatmap"),
                           [this](const QString& path, QString* err) { return save(path, 0, 0, err); });
        menu.exec(d->plot->mapToGlobal(pos));
    });

    apply_plot_style(p, this);
    style_axis(d->scale->axis(), this);
    replotNow();
}

ErrorHeatmap::~ErrorHeatmap() = default;

ErrorHeatmap::Mode ErrorHeatmap::mode() const { return d->mode; }
ErrorKind ErrorHeatmap::errorKind() const { return d->kind; }

void ErrorHeatmap::setErrorKind(ErrorKind k) {
    if (k == d->kind) return;
    d->kind = k;
    replotNow();
}

void ErrorHeatmap::setMode(Mode m) {
    if (m == d->mode) return;
    d->mode = m;
    replotNow();
}

QSize ErrorHeatmap::cellGrid() const { return QSize(d->results->modules().size(), d->results->layers()); }

int ErrorHeatmap::staleMarkCount() const { return int(d->stale_cells.size()); }

bool ErrorHeatmap::staleMarkAt(int layer, int column) const { return d->stale_cells.contains(QPoint(column, layer)); }

bool ErrorHeatmap::textsFit() const { return plot_texts_fit(d->plot, d->hint); }

double ErrorHeatmap::valueAt(int layer, int column) const {
    QCPColorMapData* data = d->map->data();
    if (layer < 0 || column < 0 || column >= data->keySize() || layer >= data->valueSize()) return NAN;
    return data->cell(column, layer);
}

QString ErrorHeatmap::cellTip(int layer, int column) const {
    const int wi = d->results->weightAt(layer, column);
    if (wi < 0) return {};
    const WeightRun& w = d->results->weight(wi);
    QString s = QStringLiteral("%1\n%2").arg(short_weight_name(w.name, w.module, w.layer), w.name);
    if (w.stale) s = tr("STALE (run again): %1\n").arg(w.staleReason) + s;
    if (!w.done) {
        s += w.started ? tr("\nrunning: step %1 of %2").arg(w.errors.size()).arg(w.steps_planned) : tr("\nnot run yet");
        if (!std::isnan(w.baseline)) s += tr("\nQLoRA baseline %1").arg(format_sig(w.baseline));
        return s;
    }
    s += tr("\nfinal error %1 after %2 steps").arg(format_sig(w.final_error)).arg(w.steps_planned);
    s += tr("\nQLoRA baseline %1").arg(format_sig(w.baseline));
    const double imp = w.improvement();
    s += tr("\nimprovement %1").arg(format_sig(imp));
    if (w.baseline != 0) s += tr(" (%1% of baseline)").arg(format_sig(100.0 * imp / w.baseline, 4));
    if (!std::isnan(w.out_final)) {
        s += tr("\nfinal output error %1 (QLoRA %2)").arg(format_sig(w.out_final), format_sig(w.out_baseline));
        if (w.out_baseline != 0)
            s += tr(", improvement %1%").arg(format_sig(100.0 * w.improvementOf(ErrorKind::Output) / w.out_baseline, 4));
    }
    s += tr("\ntime %1 s").arg(format_sig(w.seconds, 3));
    return s;
}

void ErrorHeatmap::changeEvent(QEvent* e) {
    QWidget::changeEvent(e);
    if (e->type() == QEvent::PaletteChange || e->type() == QEvent::FontChange) {
        apply_plot_style(d->plot, this);
        style_axis(d->scale->axis(), this);
        d->timer.start();
    }
}

void ErrorHeatmap::resizeEvent(QResizeEvent* e) {
    QWidget::resizeEvent(e);
    request_replot(d->timer);   // tick label rotation depends on the width
}

bool ErrorHeatmap::save(const QString& path, int width, int height, QString* error) {
    return save_plot_laid_out(d->plot, &d->export_size, [this] { replotNow(); }, path, width, height, error);
}

void ErrorHeatmap::replotNow() {
    d->timer.stop();
    QCustomPlot* p = d->plot;
    const RunResults* rr = d->results;
    const int cols = int(rr->modules().size()), layers = rr->layers();
    const bool improvement = d->mode == Mode::Improvement;

    QCPColorMapData* data = d->map->data();
    data->setSize(std::max(cols, 1), std::max(layers, 1));
    // Cell centres at integer coordinates; a single cell spans its own +-0.5 (see QCPColorMap).
    data->setRange(cols > 1 ? QCPRange(0, cols - 1) : QCPRange(-0.5, 0.5),
                   layers > 1 ? QCPRange(0, layers - 1) : QCPRange(-0.5, 0.5));
    data->fill(NAN);
    double lo = INFINITY, hi = -INFINITY;
    for (int l = 0; l < layers; ++l)
        for (int c = 0; c < cols; ++c) {
            const int wi = rr->weightAt(l, c);
            if (wi < 0 || !rr->weight(wi).done) continue;
            const WeightRun& w = rr->weight(wi);
            const double v = improvement ? w.improvementOf(d->kind) : w.finalOf(d->kind);
            data->setCell(c, l, v);
            if (std::isfinite(v)) {
                lo = std::min(lo, v);
                hi = std::max(hi, v);
            }
        }

    QCPRange range(0, 1);
    if (improvement) {
        const double m = lo <= hi ? std::max(std::abs(lo), std::abs(hi)) : 0.0;
        range = m > 0 ? QCPRange(-m, m) : QCPRange(-1, 1);
    } else if (lo <= hi) {
        range = hi > lo ? QCPRange(lo, hi) : QCPRange(lo * 0.95, lo * 1.05 + 1e-12);
    }
    d->map->setGradient(improvement ? diverging_gradient() : viridis_gradient());
    d->map->setDataRange(range);
    const bool out = d->kind == ErrorKind::Output;
    d->scale->axis()->setLabel(improvement ? (out ? tr("output error: QLoRA − LoftQ") : tr("improvement: QLoRA error − LoftQ error"))
                                           : (out ? tr("final output error") : tr("final relative error")));

    // Module names as x tick labels, tilted when they would collide.
    auto ticker = QSharedPointer<QCPAxisTickerText>::create();
    const QFontMetrics fm(p->xAxis->tickLabelFont());
    int label_width = 0;
    for (int c = 0; c < cols; ++c) {
        ticker->addTick(c, rr->modules()[c]);
        label_width += fm.horizontalAdvance(rr->modules()[c]) + fm.averageCharWidth() * 2;
    }
    p->xAxis->setTicker(ticker);
    // Room for the labels: the plot's width less the y axis and the colour scale (~10 em).
    const QSize plot_size = d->export_size.isValid() ? d->export_size : plot_export_size(p, 0, 0);
    const int avail = std::max(1, plot_size.width() - 10 * fm.height());
    p->xAxis->setTickLabelRotation(label_width > avail ? -35 : 0);
    p->xAxis->setRange(-0.5, std::max(cols, 1) - 0.5);
    // The colour scale reports its current margins as its own need, so a margin group only ever
    // grows them (e.g. after tilted labels); start it from zero on every replot.
    d->scale->setMargins(QMargins());
    p->yAxis->setRange(-0.5, std::max(layers, 1) - 0.5);

    // Separators in the background colour between cells, when the cells are large enough.
    for (QCPItemStraightLine* line : d->separators) p->removeItem(line);
    d->separators.clear();
    const int em = fm.height();
    const bool roomy = cols > 0 && layers > 0 && (plot_size.width() - 10 * em) / cols >= 12 &&
                       (plot_size.height() - 4 * em) / layers >= 8;
    const QPen separator(palette().color(QPalette::Base), 1);
    auto add_line = [&](double x1, double y1, double x2, double y2) {
        auto* line = new QCPItemStraightLine(p);
        line->point1->setCoords(x1, y1);
        line->point2->setCoords(x2, y2);
        line->setPen(separator);
        line->setSelectable(false);
        d->separators.push_back(line);
    };
    for (int c = 0; roomy && c + 1 < cols; ++c) add_line(c + 0.5, 0, c + 0.5, 1);
    for (int l = 0; roomy && l + 1 < layers; ++l) add_line(0, l + 0.5, 1, l + 0.5);

    // Stale results: their old colour shows through a veil of the background colour, cross-hatched.
    for (QCPItemRect* r : d->stale_marks) p->removeItem(r);
    d->stale_marks.clear();
    d->stale_cells.clear();
    {
        const QPalette sp = palette();
        QColor veil = sp.color(QPalette::Base), cross = sp.color(QPalette::Text);
        veil.setAlpha(150);
        cross.setAlpha(160);
        for (int l = 0; l < layers; ++l)
            for (int c = 0; c < cols; ++c) {
                const int wi = rr->weightAt(l, c);
                if (wi < 0 || !rr->weight(wi).stale || !rr->weight(wi).done) continue;
                for (const QBrush& b : {QBrush(veil), QBrush(cross, Qt::DiagCrossPattern)}) {
                    auto* r = new QCPItemRect(p);
                    r->topLeft->setCoords(c - 0.5, l - 0.5);
                    r->bottomRight->setCoords(c + 0.5, l + 0.5);
                    r->setPen(Qt::NoPen);
                    r->setBrush(b);
                    r->setSelectable(false);
                    d->stale_marks.push_back(r);
                }
                d->stale_cells.push_back(QPoint(c, l));
            }
    }

    // Hatched axis-rect background: what shows through NaN ("no data") cells.
    const QPalette pal = palette();
    const QColor base = pal.color(QPalette::Base), text = pal.color(QPalette::Text);
    QColor hatch = text;
    hatch.setAlpha(70);
    p->axisRect()->setBackground(QBrush(hatch, Qt::BDiagPattern));
    p->setBackground(base);

    const bool empty = rr->count() == 0 || cols == 0;
    d->map->setVisible(!empty);
    d->hint->setVisible(empty);
    const int hint_room = (p->axisRect()->width() > 0 ? p->axisRect()->width() : p->width() / 2) - 16;
    d->hint->setText(wrap_to_width(rr->count() == 0 ? tr("Run the plan to see the final error per layer and module")
                                      : tr("No weights of this run sit in decoder layers"), QFontMetrics(font()), hint_room));
    d->hint->setFont(font());
    d->hint->setColor(text);
    d->hint->setBrush(base);
    d->hint->setPadding(QMargins(6, 4, 6, 4));
    p->replot();
}

}  // namespace studio
