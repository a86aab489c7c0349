// error_chart.h: relative error ||W - Q_t - L_t|| / ||W|| against alternating step t = 1..T for
// the weights selected in the plan grid, one solid curve each, with each weight's QLoRA baseline
// ||W - q(W)|| / ||W|| as a dashed horizontal line in the same colour. A read-only view of
// RunResults (it copies the numbers into the plot, computes none). Curves follow a streaming run:
// RunResults signals are coalesced into one replot per ~40 ms. setErrorKind(Output) plots the
// output errors ||X (W - Q_t - L_t)^T|| / ||X W^T|| of a calibrated run instead (same layout).
//
// Mouse: drag pans, wheel zooms, double-click resets the view; context menu: reset, export
// PNG/SVG/PDF. Hover shows the exact numbers. At most kMaxCurves curves are drawn (a note says
// how many were selected). Leaves out: step timing plots, comparisons across runs.
#pragma once
#include <QStringList>
#include <QVector>
#include <QWidget>
#include <memory>

namespace studio {

class RunResults;
enum class ErrorKind;

class ErrorChart : public QWidget {
    Q_OBJECT
public:
    static constexpr int kMaxCurves = 24;

    explicit ErrorChart(RunResults* results, QWidget* parent = nullptr);
    ~ErrorChart() override;

    void setWeights(const QStringList& names);   // tensor names (the grid selection), in order
    QStringList weights() const;
    // Weight errors (default) or output errors (a run without them then draws no curves).
    void setErrorKind(ErrorKind k);
    ErrorKind errorKind() const;

    // What is drawn (as of the last replot; replotNow() flushes pending updates).
    int curveCount() const;                      // selected weights present in the run, capped
    QString curveWeight(int i) const;            // tensor name of curve i
    QString curveLabel(int i) const;
    // Points and baselines under the legend as drawn (0 when it is beside the plot or hidden).
    int legendCollisions() const;
    // The y axis label and the hint fit the plot as last laid out (a short label, a wrapped hint
    // when narrow).
    bool textsFit() const;             // its legend text ("L0 q_proj", "... (stale)": dotted)
    QVector<double> curveValues(int i) const;    // y of curve i, one point per finished step
    double baselineValue(int i) const;           // its dashed QLoRA line; NaN before the first step
    QString noteText() const;                    // "showing 24 of 30 selected", or empty

    bool save(const QString& path, int width = 0, int height = 0, QString* error = nullptr);
    void replotNow();                            // flush the coalescing timer
    void resetView();                            // auto-range both axes again

protected:
    void changeEvent(QEvent* e) override;
    void resizeEvent(QResizeEvent* e) override;

private:
    int legendCollisionsAt(const QRect& r) const;
    void placeLegend(const QSize& size);   // wrap and position for a plot of this size
    struct Impl;
    std::unique_ptr<Impl> d;
};

}  // namespace studio
