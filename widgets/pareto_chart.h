// pareto_chart.h: the mixed-precision trade-off of one model: x = the whole model's size (bits per
// parameter, or bytes), y = the predicted damage D = sum over target weights of e^2 (e = each
// weight's relative output error with calibration, else its weight error; mixed/allocator.h).
// Series, all copied from the engine (this view computes only bits = 8 bytes / params):
//   front      the allocator's least-damage plans at ~24 budgets (line with points; hollow
//              points where branch and bound stopped short of proving optimality)
//   uniform    every weight at one setting ("nf2 r16", ...): labelled squares
//   current    the plan in the grid (a cross), when the sweep knows its damage
//   chosen     a plan picked for a budget (a star; `loftq plan auto --front` writes one)
//   evaluated  plans whose held-out LoftQ-init loss was measured (diamonds on the right y axis),
//              with the original model's loss as a dotted line on that axis
//   marker     the budget slider: a vertical line, and a ring on the allocation at that budget
// The damage axis is logarithmic by default (the front spans orders of magnitude from 2 to 16
// bits; points of damage 0, e.g. "keep every weight", are then left out) and linear on request.
//
// Mouse: a click on a front or uniform point emits frontClicked / uniformClicked (the panel
// loads that plan); drag pans, wheel zooms, double-click resets; hover shows exact numbers;
// context menu: x unit, log axis, reset, export PNG/SVG/PDF. Replots are coalesced (~40 ms).
#pragma once
#include <QPointF>
#include <QString>
#include <QVector>
#include <QWidget>
#include <cmath>
#include <memory>
#include <optional>

namespace studio {

struct ParetoPoint {
    double bytes = 0;             // the whole model (loftq::PlanSize::total_bytes)
    double damage = NAN;          // sum of squared relative errors
    QString label;                // uniform: "nf2 r16"; otherwise a caption for the tooltip
    bool optimal = true;          // front: branch and bound proved it (else a gap remains)
};

struct ParetoEval {
    double bytes = 0;
    double loss = NAN;            // held-out loss of the plan's LoftQ init
    QString label;                // e.g. "plan 2"
    QString tip;                  // extra tooltip lines (QLoRA init, perplexities)
};

struct ParetoData {
    double params = 0;            // all parameters of the model (the bits-per-parameter denominator)
    QString metric;               // "output error" or "weight error"
    QVector<ParetoPoint> front, uniform;
    std::optional<ParetoPoint> current, chosen;
    QVector<ParetoEval> evaluated;
    double original_loss = NAN;   // the original model's held-out loss (dotted, right axis)
};

class ParetoChart : public QWidget {
    Q_OBJECT
public:
    enum class XUnit { BitsPerParam, Bytes };
    enum class Series { Front, Uniform, Current, Chosen, Evaluated };

    explicit ParetoChart(QWidget* parent = nullptr);
    ~ParetoChart() override;

    void setData(const ParetoData& data);
    const ParetoData& data() const;
    void setXUnit(XUnit u);
    XUnit xUnit() const;
    void setLogDamage(bool on);
    bool logDamage() const;
    // The budget slider's marker at `budget` bytes (NaN hides it) and the allocation found for
    // it (a ring at its bytes and damage; NaN: none yet).
    void setMarker(double budget, double alloc_bytes = NAN, double alloc_damage = NAN);
    double markerBytes() const;

    // As of the last replot (replotNow() flushes): points drawn per series, and where point i
    // of a series sits in the pixels of the QCustomPlot that fills this widget (tests click
    // there; (-1, -1) when not drawn).
    int pointCount(Series s) const;
    QPointF pointPixel(Series s, int i) const;
    QString xLabel() const;
    QString yLabel() const;

    bool save(const QString& path, int width = 0, int height = 0, QString* error = nullptr);
    void replotNow();
    void resetView();

signals:
    void frontClicked(int index);     // into data().front
    void uniformClicked(int index);   // into data().uniform
    void xUnitChanged(XUnit u);

protected:
    void changeEvent(QEvent* e) override;
    void resizeEvent(QResizeEvent* e) override;

private:
    QString pointTip(Series s, int i) const;
    struct Impl;
    std::unique_ptr<Impl> d;
};

}  // namespace studio
