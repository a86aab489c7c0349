// training_curves.h: train and eval loss against step for one or more fine-tuning runs, overlaid
// (e.g. LoftQ vs QLoRA at the same bits): per run a thin line for the train loss and a bold
// line with markers for the held-out loss, in the run's colour; a legend below the plot (one
// entry per run, keys for the line styles); zoom/pan; double-click
// resets; PNG/SVG/PDF export from the context menu. QCustomPlot stays behind a pimpl; points
// arrive from the GUI thread and replots are coalesced (one per 40 ms at most).
#pragma once
#include <QPointF>
#include <QString>
#include <QStringList>
#include <QVector>
#include <QWidget>
#include <memory>

namespace studio {

class TrainingCurves : public QWidget {
    Q_OBJECT
public:
    explicit TrainingCurves(QWidget* parent = nullptr);
    ~TrainingCurves() override;

    // Runs keep their index for life (a removed run leaves a gap). Legend names are unique:
    // a name already shown gets " (2)", " (3)", ...
    int addRun(const QString& name);              // returns the run's index
    void renameRun(int run, const QString& name); // made unique the same way
    bool runAlive(int run) const;                 // not removed
    // One run drawn bold on top, the others faded (-1: none).
    void setHighlight(int run);
    int highlight() const;
    // A dashed horizontal reference: the original model's held-out loss (NaN: none).
    void setReference(double loss, const QString& label);
    double reference() const;
    QStringList legendNames() const;              // as the legend shows them (after a replot)
    bool legendCoversPlot() const;                // the legend overlaps the curves' area (never should)
    bool legendClipped() const;                   // some legend entry is wider than the legend's room
    void addTrainPoint(int run, int step, double loss);
    void addEvalPoint(int run, int step, double loss);
    void removeRun(int run);
    void clear();
    int runCount() const;
    QString runName(int run) const;
    QVector<QPointF> trainPoints(int run) const;
    QVector<QPointF> evalPoints(int run) const;
    bool save(const QString& path, int width = 0, int height = 0, QString* error = nullptr);
    void replotNow();

private:
    struct Impl;
    std::unique_ptr<Impl> d;
};

}  // namespace studio
