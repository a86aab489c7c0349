// improvement_chart.h: one bar per decoder layer, the mean over the layer's finished weights of
// (baseline - final) / baseline in percent: how much of QLoRA's relative error LoftQ removed
// (> 0 blue = better, < 0 red = worse). A read-only view of RunResults; the mean and the percent
// are its only arithmetic. Layers with no finished weight have no bar (NaN in values()). Weights
// whose baseline is 0 (an all-zero weight) and weights outside decoder layers are left out.
// Live updates are coalesced (~40 ms) like ErrorChart; hover lists the exact numbers.
// setErrorKind(Output) uses the output errors of a calibrated run instead (same formula).
#pragma once
#include <QVector>
#include <QWidget>
#include <memory>

namespace studio {

class RunResults;
enum class ErrorKind;

class ImprovementChart : public QWidget {
    Q_OBJECT
public:
    explicit ImprovementChart(RunResults* results, QWidget* parent = nullptr);
    ~ImprovementChart() override;

    // Per layer 0..layers-1 (as of the last replot): mean of (baseline - final) / baseline * 100
    // over the finished weights of that layer; NaN where none has finished.
    QVector<double> values() const;
    void setErrorKind(ErrorKind k);
    ErrorKind errorKind() const;
    bool save(const QString& path, int width = 0, int height = 0, QString* error = nullptr);
    void replotNow();

protected:
    void changeEvent(QEvent* e) override;

private:
    QString layerTip(int layer) const;
    struct Impl;
    std::unique_ptr<Impl> d;
};

}  // namespace studio
