// error_heatmap.h: one cell per (decoder layer, module kind) of the run, coloured by the weight's
// final relative error ||W - Q - L|| / ||W||, or by its improvement over QLoRA (baseline - final,
// a difference of relative errors; > 0 = LoftQ is better). Rows = layers (layer 0 at the top),
// columns = RunResults::modules(). Cells without a weight, or whose weight has not finished, hold
// NaN and are drawn hatched ("no data"). A read-only view of RunResults: it copies the engine's
// numbers, computes only the difference. Live updates are coalesced (~40 ms) like ErrorChart.
//
// setErrorKind(Output) colours by the output errors ||X (W - Q - L)^T|| / ||X W^T|| of a
// calibrated run instead (NaN cells for a run without them). Hover shows the exact numbers; a click emits weightClicked(); context menu: mode, export.
// Leaves out weights outside decoder layers (layer -1, e.g. a targeted lm_head).
#pragma once
#include <QString>
#include <QWidget>
#include <memory>

namespace studio {

class RunResults;
enum class ErrorKind;

class ErrorHeatmap : public QWidget {
    Q_OBJECT
public:
    enum class Mode { FinalError, Improvement };

    explicit ErrorHeatmap(RunResults* results, QWidget* parent = nullptr);
    ~ErrorHeatmap() override;

    // What the map holds (as of the last replot): NaN where no weight / not done.
    double valueAt(int layer, int column) const;
    // Cells whose result is stale (the plan changed its settings since the run), as of the last
    // replot: drawn greyed and cross-hatched over their old colour, "stale" first in the tooltip.
    int staleMarkCount() const;
    QSize cellGrid() const;
    bool textsFit() const;    // the axis label and the hint fit the plot as last laid out   // (modules, layers) drawn, as of the last replot
    bool staleMarkAt(int layer, int column) const;
    QString toolTipAt(int layer, int column) const { return cellTip(layer, column); }
    void setMode(Mode m);
    Mode mode() const;
    void setErrorKind(ErrorKind k);
    ErrorKind errorKind() const;

    bool save(const QString& path, int width = 0, int height = 0, QString* error = nullptr);
    void replotNow();

signals:
    void weightClicked(const QString& name);      // tensor name of the clicked cell

protected:
    void changeEvent(QEvent* e) override;
    void resizeEvent(QResizeEvent* e) override;

private:
    QString cellTip(int layer, int column) const;
    struct Impl;
    std::unique_ptr<Impl> d;
};

}  // namespace studio
