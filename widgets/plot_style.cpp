// plot_style.cpp: see plot_style.h. Leaves out anything specific to one plot (layouts, data).
#include "plot_style.h"

#include "core/units.h"

#include <QFile>
#include <QFileDialog>
#include <QMenu>
#include <QVBoxLayout>
#include <QMessageBox>
#include <QFileInfo>
#include <QRandomGenerator>
#include <QSvgGenerator>
#include <QWidget>
#include <cmath>
#include <filesystem>
#include <qcustomplot.h>

namespace studio {

namespace {

QColor mix(const QColor& a, const QColor& b, double t) {
    return QColor::fromRgbF(float(a.redF() * (1 - t) + b.redF() * t), float(a.greenF() * (1 - t) + b.greenF() * t),
                            float(a.blueF() * (1 - t) + b.blueF() * t));
}

void set_error(QString* error, const QString& text) {
    if (error) *error = text;
}

}  // namespace

void style_axis(QCPAxis* axis, const QWidget* owner) {
    const QPalette pal = owner->palette();
    const QColor text = pal.color(QPalette::Text);
    const QColor grid = mix(pal.color(QPalette::Base), text, 0.18);
    QFont label = owner->font();
    QFont ticks = owner->font();
    if (ticks.pointSizeF() > 0) ticks.setPointSizeF(ticks.pointSizeF() * 0.9);
    axis->setBasePen(QPen(text, 0));
    axis->setTickPen(QPen(text, 0));
    axis->setSubTickPen(QPen(text, 0));
    axis->setTickLabelColor(text);
    axis->setLabelColor(text);
    axis->setTickLabelFont(ticks);
    axis->setLabelFont(label);
    axis->grid()->setPen(QPen(grid, 0, Qt::DotLine));
    axis->grid()->setSubGridVisible(false);
    axis->grid()->setZeroLinePen(Qt::NoPen);
}

void apply_plot_style(QCustomPlot* plot, const QWidget* owner) {
    const QPalette pal = owner->palette();
    const QColor base = pal.color(QPalette::Base);
    const QColor text = pal.color(QPalette::Text);
    plot->setBackground(base);
    const int line = QFontMetrics(owner->font()).height();
    for (QCPAxisRect* rect : plot->axisRects()) {
        rect->setBackground(Qt::NoBrush);
        rect->setMinimumMargins(QMargins(line / 2, line / 2, line / 2, line / 2));
        for (QCPAxis* axis : rect->axes()) style_axis(axis, owner);
    }
    QFont small = owner->font();
    if (small.pointSizeF() > 0) small.setPointSizeF(small.pointSizeF() * 0.9);
    plot->legend->setFont(small);
    plot->legend->setTextColor(text);
    QColor legend_bg = base;
    legend_bg.setAlpha(220);
    plot->legend->setBrush(legend_bg);
    plot->legend->setBorderPen(QPen(mix(base, text, 0.3), 0));
    const int em = QFontMetrics(small).height();
    plot->legend->setIconSize(2 * em, em * 2 / 3);
    plot->setNoAntialiasingOnDrag(true);
}

QColor series_color(int i) {
    // Tableau 10 plus two; the second cycle is darker so that 24 curves stay distinguishable.
    static const QRgb colors[] = {0x4e79a7, 0xf28e2b, 0xe15759, 0x76b7b2, 0x59a14f, 0xedc948,
                                  0xb07aa1, 0xff9da7, 0x9c755f, 0x7f7f7f, 0x17becf, 0xbcbd22};
    const int n = int(sizeof(colors) / sizeof(colors[0]));
    QColor c(colors[((i % n) + n) % n]);
    const int cycle = (i / n) % 3;
    return cycle == 0 ? c : cycle == 1 ? c.darker(150) : c.lighter(130);
}

QCPColorGradient viridis_gradient() {
    QCPColorGradient g;
    g.clearColorStops();
    static const QRgb stops[] = {0x440154, 0x472d7b, 0x3b528b, 0x2c728e, 0x21918c,
                                 0x28ae80, 0x5ec962, 0xaddc30, 0xfde725};
    for (int i = 0; i < 9; ++i) g.setColorStopAt(i / 8.0, QColor(stops[i]));
    g.setColorInterpolation(QCPColorGradient::ciRGB);
    g.setLevelCount(256);
    g.setNanHandling(QCPColorGradient::nhTransparent);
    return g;
}

QCPColorGradient diverging_gradient() {
    QCPColorGradient g;
    g.clearColorStops();
    g.setColorStopAt(0.0, QColor(0xb2182b));
    g.setColorStopAt(0.25, QColor(0xef8a62));
    g.setColorStopAt(0.5, QColor(0xf7f7f7));
    g.setColorStopAt(0.75, QColor(0x67a9cf));
    g.setColorStopAt(1.0, QColor(0x2166ac));
    g.setColorInterpolation(QCPColorGradient::ciRGB);
    g.setLevelCount(256);
    g.setNanHandling(QCPColorGradient::nhTransparent);
    return g;
}

QString short_weight_name(const QString& tensor, const QString& module, int layer) {
    if (layer >= 0) return QStringLiteral("L%1 %2").arg(layer).arg(module.isEmpty() ? tensor : module);
    return module.isEmpty() ? tensor : module;
}

QString format_sig(double v, int digits) {
    if (std::isnan(v)) return QStringLiteral("—");
    return QString::number(v, 'g', digits);
}

bool save_plot_laid_out(QCustomPlot* plot, QSize* export_size, const std::function<void()>& relayout, const QString& path,
                        int width, int height, QString* error) {
    *export_size = plot_export_size(plot, width, height);
    relayout();
    const bool ok = save_plot(plot, path, width, height, error);
    *export_size = QSize();
    relayout();
    return ok;
}

QCustomPlot* add_filling_plot(QWidget* host) {
    auto* plot = new QCustomPlot(host);
    auto* layout = new QVBoxLayout(host);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(plot);
    host->setMinimumSize(160, 120);
    return plot;
}

QString format_bytes_decimal(uint64_t bytes) { return QString::fromStdString(loftq::human_bytes(double(bytes))); }

QString format_seconds(double s) {
    if (s < 0) return QStringLiteral("?");
    if (s < 60) return QStringLiteral("%1 s").arg(s, 0, 'f', s < 10 ? 1 : 0);
    if (s < 3600) return QStringLiteral("%1 min %2 s").arg(int(s) / 60).arg(int(s) % 60);
    return QStringLiteral("%1 h %2 min").arg(int(s) / 3600).arg((int(s) % 3600) / 60);
}

QSize plot_export_size(const QCustomPlot* plot, int width, int height) {
    // A plot never laid out keeps QWidget's default child size (100 x 30): not a real size.
    const bool laid_out = plot->width() >= 120 && plot->height() >= 90;
    return QSize(width > 0 ? width : laid_out ? plot->width() : 800, height > 0 ? height : laid_out ? plot->height() : 500);
}

bool save_plot(QCustomPlot* plot, const QString& path, int width, int height, QString* error) {
    const QFileInfo target(path);
    const QString suffix = target.suffix().toLower();
    if (suffix != "png" && suffix != "svg" && suffix != "pdf") {
        set_error(error, QStringLiteral("cannot export to '%1': unknown format '%2' (use .png, .svg or .pdf)").arg(path, suffix));
        return false;
    }
    const QFileInfo folder(target.absolutePath());
    if (!folder.isDir()) {
        set_error(error, QStringLiteral("cannot export to '%1': folder '%2' does not exist").arg(path, folder.filePath()));
        return false;
    }
    if (!folder.isWritable()) {
        set_error(error, QStringLiteral("cannot export to '%1': folder '%2' is not writable").arg(path, folder.filePath()));
        return false;
    }
    if (target.isDir()) {
        set_error(error, QStringLiteral("cannot export to '%1': it is a folder").arg(path));
        return false;
    }
    const QSize size = plot_export_size(plot, width, height);
    width = size.width();
    height = size.height();

    // Temporary name in the same folder (same file system, so the rename is atomic); the suffix
    // is kept for writers that look at it.
    const QString tmp = QStringLiteral("%1/.%2.tmp-%3.%4")
                            .arg(target.absolutePath(), target.completeBaseName())
                            .arg(QRandomGenerator::global()->generate(), 8, 16, QLatin1Char('0'))
                            .arg(suffix);
    bool ok = false;
    if (suffix == "png") {
        ok = plot->savePng(tmp, width, height, 1.0, -1, 96);
    } else if (suffix == "pdf") {
        ok = plot->savePdf(tmp, width, height, QCP::epNoCosmetic, QStringLiteral("LoftQ Studio"), target.completeBaseName());
    } else {
        QSvgGenerator svg;
        svg.setFileName(tmp);
        svg.setSize(QSize(width, height));
        svg.setViewBox(QRect(0, 0, width, height));
        svg.setTitle(target.completeBaseName());
        svg.setDescription(QStringLiteral("LoftQ Studio"));
        QCPPainter painter;
        if (painter.begin(&svg)) {
            painter.setMode(QCPPainter::pmVectorized);
            painter.setMode(QCPPainter::pmNoCaching);
            plot->toPainter(&painter, width, height);
            ok = painter.end();
        }
    }
    std::error_code ec;
    const std::filesystem::path tmp_path(QFile::encodeName(tmp).toStdString());
    if (ok && QFileInfo(tmp).size() <= 0) ok = false;
    if (!ok) {
        std::filesystem::remove(tmp_path, ec);
        set_error(error, QStringLiteral("cannot write '%1'").arg(path));
        return false;
    }
    std::filesystem::rename(tmp_path, std::filesystem::path(QFile::encodeName(target.absoluteFilePath()).toStdString()), ec);
    if (ec) {
        std::error_code ignored;
        std::filesystem::remove(tmp_path, ignored);
        set_error(error, QStringLiteral("cannot write '%1': %2").arg(path, QString::fromStdString(ec.message())));
        return false;
    }
    return true;
}

void add_export_actions(QMenu* menu, QWidget* owner, const QString& title, const QString& stem,
                        const std::function<bool(const QString& path, QString* error)>& save) {
    for (const char* fmt : {"PNG", "SVG", "PDF"}) {
        const QString f = QString::fromLatin1(fmt);
        QAction* a = menu->addAction(QObject::tr("Export %1…").arg(f));
        QObject::connect(a, &QAction::triggered, owner, [owner, title, stem, save, f] {
            const QString path = QFileDialog::getSaveFileName(owner, title, QStringLiteral("%1.%2").arg(stem, f.toLower()),
                                                              QObject::tr("%1 files (*.%2)").arg(f, f.toLower()));
            if (path.isEmpty()) return;
            QString err;
            if (!save(path, &err)) QMessageBox::warning(owner, QObject::tr("Export failed"), err);
        });
    }
}

void coalesce_replots(QTimer& timer, QObject* owner, const std::function<void()>& replot) {
    timer.setSingleShot(true);
    timer.setInterval(40);
    QObject::connect(&timer, &QTimer::timeout, owner, replot);
}

QCPItemText* add_centre_hint(QCustomPlot* plot) {
    auto* hint = new QCPItemText(plot);
    hint->position->setType(QCPItemPosition::ptAxisRectRatio);
    hint->position->setCoords(0.5, 0.5);
    hint->setPositionAlignment(Qt::AlignCenter);
    hint->setSelectable(false);
    return hint;
}

QString wrap_to_width(const QString& text, const QFontMetrics& fm, int width) {
    QStringList lines;
    QString line;
    for (const QString& word : text.split(' ', Qt::SkipEmptyParts)) {
        const QString next = line.isEmpty() ? word : line + ' ' + word;
        if (!line.isEmpty() && fm.horizontalAdvance(next) > width) {
            lines << line;
            line = word;
        } else {
            line = next;
        }
    }
    if (!line.isEmpty()) lines << line;
    return lines.join('\n');
}

void set_fitting_label(QCPAxis* axis, const QString& full, const QString& brief) {
    const QFontMetrics fm(axis->labelFont());
    const int room = axis->axisRect()->height() > 0 ? axis->axisRect()->height() : axis->parentPlot()->height() * 2 / 3;
    axis->setLabel(fm.horizontalAdvance(full) + 8 <= room ? full : brief);
}

bool plot_texts_fit(QCustomPlot* plot, const QCPItemText* hint) {
    const QRect r = plot->axisRect()->rect();
    const QFontMetrics lf(plot->yAxis->labelFont());
    if (lf.horizontalAdvance(plot->yAxis->label()) > r.height() + 1) return false;
    if (hint && hint->visible()) {
        const QFontMetrics hf(hint->font());
        for (const QString& l : hint->text().split('\n'))
            if (hf.horizontalAdvance(l) + hint->padding().left() + hint->padding().right() > r.width() + 1) return false;
    }
    return true;
}

}  // namespace studio
