// run_results.h: the metrics of one LoftQ run as the GUI sees them, filled on the GUI thread
// from the engine's JobEvents (queued there by the app's job adapter) and read by the plots.
// It computes nothing: every number is one the engine reported.
//
// Weights are indexed as in the run's resolved plan (`loftq::ResolvedPlan::weights`), which may
// differ from the document's current plan once the user edits again; views look weights up by
// name when they need to cross over. Layout for the heatmap: rows = layers 0..layers()-1,
// columns = modules() (module kinds of the run's weights, first-seen order).
//
// Two errors per weight: the weight error ||W - Q - B A|| / ||W|| always, and with calibration
// (QuantizeOptions::calib) the output error ||X (W - Q - B A)^T|| / ||X W^T|| too (NaN without);
// views show either (ErrorKind), the app's View > Output Errors toggle chooses.
//
// Runs merge: a run over some weights (Run Selected) replaces just those weights' results and
// keeps the others'; a cancelled or failed run gives back the earlier results of the weights it
// did not finish. Every weight remembers the settings it was computed with; setPlan() with the
// document's current plan marks a result stale when the plan no longer gives that weight those
// settings (or no longer quantizes it), and the views mark stale results as such.
//
// Signals are per change; views coalesce them (a single-shot timer) before repainting.
#pragma once
#include <QObject>
#include <QString>
#include <QStringList>
#include <QHash>
#include <QVector>
#include <cmath>
#include <optional>

#include "loftq/job.h"

namespace studio {

// Which relative error a view shows: of the weight, or of the projection's output on the
// calibration inputs (loftq/input_stats.h).
enum class ErrorKind { Weight, Output };

struct WeightRun {
    QString name;                 // tensor name
    QString module;               // module kind (column of the heatmap)
    int layer = -1;               // -1 when the weight is in no decoder layer
    int column = -1;              // index into RunResults::modules()
    int steps_planned = 0;        // T
    double baseline = NAN;        // QLoRA error ||W - q(W)|| / ||W||
    QVector<double> errors;       // relative error after step t at index t-1
    double final_error = NAN;
    // The same as output errors; NaN (empty) when the run had no calibration.
    double out_baseline = NAN;
    QVector<double> out_errors;
    double out_final = NAN;
    double seconds = 0;
    bool started = false, done = false;
    loftq::WeightSettings settings;   // what the numbers were computed with
    bool stale = false;               // the current plan gives this weight other settings (or none)
    QString staleReason;              // e.g. "plan now: nf2/b64 r8 T5 randomized"; empty when not stale
    double improvement() const { return baseline - final_error; }   // > 0: LoftQ beat QLoRA
    double baselineOf(ErrorKind k) const { return k == ErrorKind::Output ? out_baseline : baseline; }
    double finalOf(ErrorKind k) const { return k == ErrorKind::Output ? out_final : final_error; }
    const QVector<double>& errorsOf(ErrorKind k) const { return k == ErrorKind::Output ? out_errors : errors; }
    double improvementOf(ErrorKind k) const { return baselineOf(k) - finalOf(k); }
};

class RunResults : public QObject {
    Q_OBJECT
public:
    enum class State { Empty, Running, Finished, Cancelled, Failed };
    explicit RunResults(QObject* parent = nullptr);

    // A new run over these weights, emits reset(). Replace: the results are those of this run
    // only (Run All, export). Merge: the other weights' results stay (Run Selected).
    enum class Mode { Replace, Merge };
    void start(const loftq::ResolvedPlan& plan, Mode mode = Mode::Replace);
    // The document's current plan: marks results whose settings it no longer gives (stale), and
    // un-marks them when it gives them again (undo). Emits staleChanged() when any mark changed.
    void setPlan(const loftq::ResolvedPlan& current);
    // The model's grid (decoder layers x module kinds, as the plan grid shows it): the heatmap
    // then has a row for every layer and a column for every module, kept ones included (no
    // result: drawn as such), instead of only those the run touched.
    void setModelLayout(int layers, const QStringList& modules);
    int staleCount() const;
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
    int weightsDone() const { return done_; }         // of the current (or last) run
    // True once any weight of this run reported an output error (the run had calibration).
    bool hasOutputErrors() const { return has_output_; }

signals:
    void reset();
    void weightChanged(int weight);
    void progressChanged(double fraction, double eta);
    void stateChanged();
    void outputErrorsChanged(bool available);   // hasOutputErrors() turned true, or false on a reset
    void staleChanged();                        // some weight's stale mark changed

private:
    QVector<WeightRun> weights_;
    QStringList modules_;
    QVector<int> run_index_;          // the run's weight i (engine index) -> index into weights_
    QHash<int, WeightRun> replaced_;  // earlier results of the run's weights, until it finishes
    // The last setPlan() by weight name, for marking results as they arrive; unset before the first.
    std::optional<QHash<QString, loftq::WeightSettings>> current_;
    int model_layers_ = 0;
    QStringList model_modules_;
    void noteOutput(bool any);   // sets has_output_, emits outputErrorsChanged on a change
    void relayout();             // modules_, layers_, cell_weight_ from weights_
    bool markStale(WeightRun& w) const;   // from current_; true when the mark changed
    int slot(int run_weight) const;       // run_index_ lookup, -1 when out of range
    QVector<int> cell_weight_;    // layers_ x modules_.size(), -1 = none
    int layers_ = 0, done_ = 0;
    double fraction_ = 0, eta_ = -1, elapsed_ = 0;
    bool has_output_ = false;
    State state_ = State::Empty;
    QString message_;
};

}  // namespace studio
