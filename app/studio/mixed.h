// mixed.h: the Mixed precision panel (a dock of the main window) and its background jobs:
//   Sweep      optional calibration (mixed/calibration.h) then the sensitivity sweep
//              (mixed/sweep.h, cached in loftq::default_sweep_cache_dir(), so reopening a model
//              and sweeping again reuses it), then the allocator's front over kFrontPoints
//              budgets and the uniform plans (mixed/allocator.h), all on a JobThread with
//              progress, ETA and Cancel. The sweep's base is the plan in the grid (targets,
//              block, T, SVD, seed); when that plan is one this panel loaded, its base is reused,
//              so that weights a loaded plan keeps in 16-bit are swept again.
//   Chart      ParetoChart (widgets/pareto_chart.h): front, uniform points, the grid's plan,
//              evaluated plans. A click on a front or uniform point, or Apply at the budget
//              slider, replaces the grid's plan with plan_from_allocation(...) as one undoable
//              step (PlanDocument::replacePlan).
//   Budget     a slider from min_plan_bytes to max_plan_bytes; the allocation at its budget is
//              computed on a QtConcurrent task (branch and bound can take a while on big
//              models), the newest budget winning.
//   Evaluate   run_eval_plan (mixed/eval_plan.h) of the grid's plan on a held-out file
//              (remembered in QSettings): original / QLoRA init / LoftQ init loss and
//              perplexity in a table, and the plan's point (bytes, LoftQ loss) on the chart.
// The calibration file also serves the window's ordinary runs (calibOptions(), and the
// statistics already collected for it: cachedCalibration()). Nothing here computes numerics on
// the GUI thread except looking up the grid plan's damage in the sweep (a sum over its weights).
//
// Also the headless renderer of `loftq plan auto --front FILE.json` output (format
// "loftq-front"): pareto_from_front_file() and render_front_png().
#pragma once
#include <QFutureWatcher>
#include <QSize>
#include <QWidget>
#include <memory>
#include <optional>

#include "mixed/allocator.h"
#include "mixed/calibration.h"
#include "mixed/eval_plan.h"
#include "mixed/sweep.h"
#include "pareto_chart.h"

class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSlider;
class QSpinBox;
class QTableWidget;
class QTimer;
class QToolButton;

namespace studio {

class JobThread;
class PlanDocument;

// One finished sweep and what the panel derived from it (on the job thread).
struct MixedSweep {
    loftq::SweepResult sweep;
    loftq::Plan base;                        // the plan swept: allocations become plans over it
    loftq::AllocOptions alloc;               // budget_bytes unset; output errors when calibrated
    std::vector<loftq::FrontPoint> front;    // allocation_front over kFrontPoints budgets
    std::vector<loftq::UniformPoint> uniform;  // of kUniformLabels, those every weight offers
    uint64_t min_bytes = 0, max_bytes = 0;   // smallest and largest plan
};

// The allocation at one budget of one sweep (a QtConcurrent task's answer).
struct MixedAllocation {
    std::shared_ptr<const MixedSweep> sweep;  // the sweep it was computed on
    uint64_t budget = 0;
    std::optional<loftq::Allocation> alloc;   // nullopt: below the smallest plan
};

// One evaluated plan.
struct MixedEval {
    QString label;                           // "plan 1", ...
    loftq::EvalPlanResult result;            // rows: original, qlora, loftq; size of the plan
};

class MixedPanel : public QWidget {
    Q_OBJECT
public:
    static constexpr int kFrontPoints = 24;
    static constexpr int kSliderSteps = 1000;
    static const char* const kUniformLabels[8];   // nf2/nf3/nf4/int8 at r16 and r64

    explicit MixedPanel(PlanDocument* doc, QWidget* parent = nullptr);
    ~MixedPanel() override;

    // Non-interactive (tests, screenshots): no file dialogs; problems go to message() only.
    void setInteractive(bool on) { interactive_ = on; }
    void setThreads(int n) { threads_ = n; }
    // False while the open model has no source weights to sweep (a packed export).
    void setSourceAvailable(bool ok);

    // Settings (as the form shows them).
    void setCandidates(const QString& quants, const QString& ranks, bool keep);
    void setCalibration(const QString& file, int tokens = 4096);
    QString calibrationFile() const;
    int calibrationTokens() const;
    void setHeldOut(const QString& file);     // also remembered (QSettings mixed/held_out)
    QString heldOut() const;
    void setEvalExamples(int n);              // sequences of 128 tokens to evaluate; 0 = the whole file
    // Calibration of the open model with the form's file (nullopt when none is set), and the
    // statistics already collected with exactly those options (else null).
    std::optional<loftq::CalibOptions> calibOptions() const;
    std::shared_ptr<const loftq::CalibStats> cachedCalibration() const;
    void rememberCalibration(std::shared_ptr<const loftq::CalibStats> stats, const loftq::CalibOptions& options);

    // Jobs: false when refused (running, no model, bad settings: message() says why).
    bool startSweep();
    void cancelSweep();
    bool sweeping() const;
    bool startEval();
    void cancelEval();
    bool evaluating() const;

    // Results.
    std::shared_ptr<const MixedSweep> sweep() const { return sweep_; }
    const std::vector<MixedEval>& evaluations() const { return evals_; }
    ParetoChart* chart() const { return chart_; }
    QTableWidget* evalTable() const { return table_; }
    // The budget slider: bytes at the slider, and the allocation for exactly that budget once
    // its task ended (null before, and when the sweep changed).
    void setBudget(uint64_t bytes);           // nearest slider step
    uint64_t budget() const;
    const loftq::Allocation* budgetAllocation() const { return budgetAlloc_ ? &*budgetAlloc_ : nullptr; }
    // Loading a plan into the grid (one undoable step each); false when there is nothing to load.
    bool applyFront(int index);
    bool applyUniform(int index);
    bool applyBudget();
    // The grid plan's predicted damage from the sweep; NaN when some weight's settings are not
    // among the sweep's candidates (or no sweep).
    double currentDamage() const;

signals:
    void message(const QString& text, bool error);
    void sweepFinished(bool ok);
    void evalFinished(bool ok);
    void budgetAllocated();                   // budgetAllocation() is set for budget()

private:
    void buildUi();
    void updateEnabled();
    void updateChart();
    void onModelChanged();
    void onSweepDone(std::shared_ptr<const MixedSweep> s);
    void onSweepEnded(bool ok, const QString& why);
    void onEvalEnded(bool ok, const QString& why);
    void sliderMoved();
    void startAllocation();
    void showAllocation();
    void applyChoice(const std::vector<int>& choice, const QString& what);
    void fail(const QString& text);

    PlanDocument* doc_ = nullptr;
    ParetoChart* chart_ = nullptr;
    JobThread* sweepJob_ = nullptr;
    JobThread* evalJob_ = nullptr;
    QLineEdit *quants_ = nullptr, *ranks_ = nullptr, *calibFile_ = nullptr, *heldOut_ = nullptr;
    QCheckBox* keep_ = nullptr;
    QToolButton* settingsButton_ = nullptr;
    QWidget* settings_ = nullptr;             // the candidates and calibration rows (collapsible)
    QSpinBox *calibTokens_ = nullptr, *evalExamples_ = nullptr;
    QPushButton *sweepButton_ = nullptr, *cancelButton_ = nullptr, *applyButton_ = nullptr, *evalButton_ = nullptr,
                *evalCancel_ = nullptr, *calibBrowse_ = nullptr, *heldBrowse_ = nullptr;
    QProgressBar *sweepProgress_ = nullptr, *evalProgress_ = nullptr;
    QLabel *sweepStatus_ = nullptr, *budgetLabel_ = nullptr, *evalCaption_ = nullptr;
    QSlider* slider_ = nullptr;
    QComboBox* xUnit_ = nullptr;
    QTableWidget* table_ = nullptr;
    QTimer* allocDebounce_ = nullptr;
    QFutureWatcher<MixedAllocation>* allocWatcher_ = nullptr;

    std::shared_ptr<const MixedSweep> sweep_;
    std::optional<loftq::Allocation> budgetAlloc_;
    uint64_t budgetAllocFor_ = 0;              // the budget budgetAlloc_ was computed for
    std::vector<MixedEval> evals_;
    std::shared_ptr<const loftq::CalibStats> calib_;
    std::optional<loftq::CalibOptions> calibFor_;   // the options calib_ was collected with
    qint64 calibStamp_ = 0;                    // the file's size and mtime then (changed = stale)
    std::string appliedPlan_;                  // plan_to_json of the last plan loaded from here
    loftq::Plan appliedBase_;                  // and the sweep base it was made over
    int threads_ = 0;
    int modelGen_ = 0;                         // bumped per opened model: late job results are dropped
    bool interactive_ = true, source_ = true;
};

// The chart data of a `loftq plan auto --front FILE.json` file (format "loftq-front": params,
// metric, front[], uniform[], chosen, budget_bytes). Throws loftq::Error naming the file.
struct FrontFile {
    ParetoData data;
    double budget_bytes = NAN;
};
FrontFile pareto_from_front_file(const QString& path);
// Renders that file's chart to a PNG of `size` (`loftq-studio --front F --front-png OUT`).
// False with *error set on any problem.
bool render_front_png(const QString& front_json, const QString& png, const QSize& size, QString* error);

}  // namespace studio
