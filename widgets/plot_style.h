// plot_style.h: the look the plot widgets share (palette-aware colours, fonts from the widget,
// series colours, gradients), number and byte formatting for labels and tooltips, and
// save_plot(), the one export path for every QCustomPlot (PNG / SVG / PDF by suffix, written
// atomically). It holds no data and does no numerics; each plot widget keeps its own QCustomPlot
// behind a pimpl and only calls these helpers.
#pragma once
#include <QColor>
#include <QSize>
#include <QString>
#include <QTimer>
#include <cstdint>
#include <functional>

class QCustomPlot;
class QMenu;
class QCPItemText;
class QCPAxis;
class QFontMetrics;
class QCPColorGradient;
class QWidget;

namespace studio {

// Colours, fonts and interactions common to every plot, taken from `owner`'s palette and font
// (so dark themes and high-DPI scaling follow the app). Call again on palette / font changes.
void apply_plot_style(QCustomPlot* plot, const QWidget* owner);
// The same look for one axis outside the axis rects (e.g. a colour scale's axis).
void style_axis(QCPAxis* axis, const QWidget* owner);

// Distinct, colour-blind friendly series colour i (cycles after 12).
QColor series_color(int i);
// Viridis (perceptually uniform, low = dark purple, high = yellow) and a diverging red-white-blue
// gradient (negative = red, positive = blue); NaN cells are transparent in both.
QCPColorGradient viridis_gradient();
QCPColorGradient diverging_gradient();

// "L3 q_proj" for a weight in decoder layer 3, the module (or the tensor name) otherwise.
QString short_weight_name(const QString& tensor, const QString& module, int layer);
// v with `digits` significant digits ("0.12346", "1.2346e-05"); "—" for NaN.
QString format_sig(double v, int digits = 5);
// Decimal (1000-based) bytes with two decimals: "999 B", "12.35 kB", "1.23 MB", "2.00 GB", "1.50 TB".
QString format_bytes_decimal(uint64_t bytes);
// A duration as people read it: "4.2 s", "37 s", "3 min 5 s", "1 h 12 min"; "?" when negative (unknown).
QString format_seconds(double s);

// Writes the plot to `path`: PNG, SVG or PDF by the (case-insensitive) suffix. width/height 0 =
// the plot's current size (800 x 500 when it has never been laid out, or is tiny). The file is first written
// under a temporary name in the same folder, then renamed over `path`, so a failed export never
// leaves a partial or stray file. On failure returns false and sets *error (when given).
bool save_plot(QCustomPlot* plot, const QString& path, int width, int height, QString* error);
// The size save_plot() uses for width/height (0 = current size; 800 x 500 when the plot is
// smaller than 120 x 90, e.g. never laid out). Widgets also lay out labels for this size.
QSize plot_export_size(const QCustomPlot* plot, int width, int height);
// save_plot() for a widget that lays out its labels for *export_size when set: sets it to the
// export's size, relayouts, saves, clears it and relayouts for the screen again.
bool save_plot_laid_out(QCustomPlot* plot, QSize* export_size, const std::function<void()>& relayout, const QString& path,
                        int width, int height, QString* error);
// A new QCustomPlot filling `host` edge to edge (its only child); `host` gets the docks' minimum size.
QCustomPlot* add_filling_plot(QWidget* host);

// Coalescing of bursts of new data into one replot (STYLE: decouple data rate from paint rate):
// `timer` becomes a 40 ms single shot calling `replot`; request_replot starts it unless running.
void coalesce_replots(QTimer& timer, QObject* owner, const std::function<void()>& replot);
inline void request_replot(QTimer& timer) {
    if (!timer.isActive()) timer.start();
}
// The centred hint text of an empty plot (e.g. "Run the plan to ..."), placed in axis-rect ratios.
QCPItemText* add_centre_hint(QCustomPlot* plot);
// `text` broken into lines (at spaces) that each fit `width` pixels in `fm`: a centred hint that
// does not run off a narrow plot.
QString wrap_to_width(const QString& text, const QFontMetrics& fm, int width);
// The y axis label that fits the axis rect's height: `full` when it fits, else `brief`.
void set_fitting_label(QCPAxis* axis, const QString& full, const QString& brief);
// The axis label and the centred hint (if shown) fit the axis rect as last laid out.
bool plot_texts_fit(QCustomPlot* plot, const QCPItemText* hint);

// "Export PNG/SVG/PDF…" entries for a plot's context menu: a save dialog proposing
// `<stem>.<suffix>`, then `save(path, error)`; a failure shows a message box.
void add_export_actions(QMenu* menu, QWidget* owner, const QString& title, const QString& stem,
                        const std::function<bool(const QString& path, QString* error)>& save);

}  // namespace studio
