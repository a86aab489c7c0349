// run_results.h: the metrics of one LoftQ run as the GUI sees them, filled on the GUI thread
// from the engine's JobEvents (queued there by the app's job adapter) and read by the plots.
// It computes nothing: every number is one the engine reported.
//
// Weights are indexed as in the run's resolved plan (`loftq::ResolvedPlan::weights`), which may
// differ from the document's current plan once the user edits again; views look weights up by
// name when they need to cross over. Layout for the heatmap: rows = layers 0..layers()-1,
// columns = modules() (module kinds of the run's weights, first-seen order).
//
// Signals are per change; views coalesce them (a single-shot timer) before repainting.
#pragma once
#include <QObject>
#include <QString>
#include <QStringList>
#include <QVector>
#include <cmath>

#include "loftq/job.h"

namespace studio {

struct WeightRun {
    QString name;                 // tensor name
    QString module;               // module kind (column of the heatmap)
    int layer = -1;               // -1 when the weight is in no decoder layer
    int column = -1;              // index into RunResults::modules()
    int steps_planned = 0;        // T
    double baseline = NAN;        // QLoRA error ||W - q(W)|| / ||W||
    QVector<double> errors;       // relative error after step t at index t-1
    double final_error = NAN;
    double seconds = 0;
    bool started = false, done = false;
    double improvement() const { return baseline - final_error; }   // > 0: LoftQ beat QLoRA
};

class RunResults : public QObject {
    Q_OBJECT
public:
    enum class State { Empty, Running, Finished, Cancelled, Failed };
    explicit RunResults(QObject* parent = nullptr);

    // A new run over these weights: clears everything, emits reset().
    void start(const loftq::ResolvedPlan& plan);
    // One engine event (GUI thread). Emits weightChanged() / progressChanged().
    void apply(const loftq::JobEvent& e);
    // The job's final result: every weight's numbers are set from it (exact engine values).
    void finish(const loftq::QuantizeResult& r);
    void fail(State s, const QString& message);   // Cancelled or Failed
    void clear();

    State state() const { return state_; }
    QString stateMessage() const { return message_; }
    int count() const { return int(weights_.size()); }
    const WeightRun& weight(int i) const { return weights_[i]; }
    int indexOf(const QString& name) const;       // -1 when not in this run
    int layers() const { return layers_; }
    const QStringList& modules() const { return modules_; }
    int weightAt(int layer, int column) const;    // -1 when none
    double fraction() const { return fraction_; }
    double eta() const { return eta_; }           // seconds, < 0 unknown
    double elapsed() const { return elapsed_; }
    int weightsDone() const { return done_; }

signals:
    void reset();
    void weightChanged(int weight);
    void progressChanged(double fraction, double eta);
    void stateChanged();

private:
    QVector<WeightRun> weights_;
    QStringList modules_;
    QVector<int> cell_weight_;    // layers_ x modules_.size(), -1 = none
    int layers_ = 0, done_ = 0;
    double fraction_ = 0, eta_ = -1, elapsed_ = 0;
    State state_ = State::Empty;
    QString message_;
};

}  // namespace studio
