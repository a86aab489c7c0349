// main_window.h: the LoftQ Studio main window. Split by feature (STYLE: app):
//   studio/main_window.cpp         layout: central plan grid + edit bar + budget bar, docks, menus,
//                           settings (QSettings), drag and drop, about box
//   studio/main_window_open.cpp    open model / demo / recent files / load+save plan (plans are
//                           read and resolved on a QtConcurrent task, studio/plan_load.h)
//   studio/main_window_run.cpp     run all / run selected / cancel, engine events -> RunResults
//   studio/main_window_export.cpp  the export dialog's job, plots written into the same commit
//   (the Fine-tune tab is its own widget, studio/finetune.h, and so is the Try it tab,
//   studio/try_it.h, which generates from the model, the last export and the fine-tune runs;
//   the Mixed precision dock too,
//   studio/mixed.h, whose calibration file also gives runs their output errors)
// The window owns the document (plan), the run results and the job adapter; widgets are thin
// views over those. Nothing here computes numerics; long work goes to StudioJob or a
// QtConcurrent task, and errors arrive as messages (log + non-modal box), never crashes.
#pragma once
#include <QFutureWatcher>
#include <QMainWindow>
#include <QPointer>
#include <functional>
#include <memory>
#include <optional>

#include "dist/launcher.h"
#include "loftq/job.h"
#include "run_results.h"
#include "studio/help.h"
#include "studio/open.h"
#include "studio/plan_load.h"

class QAction;
class QCheckBox;
class QDockWidget;
class QLabel;
class QMenu;
class QProgressBar;
class QPushButton;
class QTabWidget;

namespace studio {

class BudgetBar;
class DeviceCombo;
class ErrorChart;
class FinetunePanel;
class ErrorHeatmap;
class ImprovementChart;
class LogPanel;
class MixedPanel;
class ModelOverview;
class PlanDocument;
class PlanEditBar;
class PlanGridView;
class RulesPanel;
class RunResults;
class StudioJob;
class TryItPanel;
class GgufExportDialog;

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    explicit MainWindow(QWidget* parent = nullptr);
    ~MainWindow() override;

    // Non-interactive mode (tests, --screenshot): errors go to the log and status bar only, no
    // message boxes, no file dialogs.
    void setInteractive(bool on);
    // The question asked before an unsaved plan would be lost (opening another model or the
    // demo, dropping a file, quitting): a message box when interactive; a test sets the answer
    // (QMessageBox::Save, Discard or Cancel), asked then even when non-interactive.
    void setUnsavedPlanPrompt(std::function<int()> ask) { askUnsaved_ = std::move(ask); }

    // Opening runs in the background; openFinished() follows (ok or not).
    void openModel(const QString& path);
    void openDemo();
    // Loading a plan file runs in the background (parsing and resolving a big plan on a model
    // with many tensors must not freeze the window): true when it started, and planLoaded()
    // follows (ok or not); false at once when it cannot start (no model, busy: the reason is in
    // the log). Meanwhile runs, exports and another load are disabled and Cancel drops the load;
    // opening another model drops it too. A dropped load's late answer is ignored.
    bool loadPlan(const QString& path);
    bool isLoadingPlan() const { return planLoading_; }
    bool savePlan(const QString& path);
    // Runs: all targets, or those of the selected grid cells. False if one is running.
    bool runAll();
    bool runSelected();
    void cancelRun();
    bool isRunning() const;
    // Export the current plan to `dir`: format Hf (HF LoftQ layout), Packed (low-bit codes +
    // scales, docs/FORMAT.md; double_quant for 8-bit scales) or BnbNf4; metrics, and plots as
    // PNG when `plots`.
    bool exportTo(const QString& dir, bool plots, bool force, loftq::ExportFormat format = loftq::ExportFormat::Hf,
                  bool double_quant = false);
    // The same export through "Run on" (File > Export's Run on): `loftq quantize` with the plan on
    // `target`, in the new run folder `run_dir`; the export lands in run_dir/export (no plots).
    bool exportVia(const loftq::RunTarget& target, const QString& run_dir, loftq::ExportFormat format = loftq::ExportFormat::Hf,
                   bool double_quant = false);

    PlanDocument* document() const { return doc_; }
    RunResults* results() const { return results_; }
    PlanGridView* grid() const { return grid_; }
    ErrorChart* chart() const { return chart_; }
    ErrorHeatmap* heatmap() const { return heatmap_; }
    ImprovementChart* improvement() const { return improvement_; }
    BudgetBar* budgetBar() const { return budget_; }
    RulesPanel* rulesPanel() const { return rules_; }
    LogPanel* log() const { return log_; }
    FinetunePanel* finetune() const { return finetune_; }
    TryItPanel* tryIt() const { return tryIt_; }   // the Try it tab (studio/try_it.h)
    // File > Export GGUF for llama.cpp: opens the dialog (studio/gguf_export_dialog.h) over the
    // models the Studio knows and returns it (it deletes itself when closed).
    GgufExportDialog* openGgufExport();
    MixedPanel* mixedPanel() const { return mixed_; }
    // View > Output Errors: the plots show output errors (enabled once the run has them, i.e.
    // a calibration file was set in the Mixed precision panel).
    QAction* outputErrorsAction() const { return actOutputErrors_; }
    QTabWidget* centralTabs() const { return centralTabs_; }
    std::shared_ptr<const loftq::QuantizeResult> lastResult() const { return last_result_; }
    QString lastExportDir() const { return last_export_dir_; }
    bool openedExport() const { return openedExport_; }
    // Help (studio/help.h): the dialog on one of its pages (non-modal, one per window); and the
    // getting-started page once, on the first start of an interactive window (true when shown).
    HelpDialog* showHelp(HelpDialog::Page page);
    // View > Reset Layout: the default docks, tabs and proportions for the window's size.
    void resetLayout();
    bool showFirstRunHelp();
    // Where Save Plan's dialog starts: the plan's file, else the last plans folder, else the
    // model's folder (when writable) or home, named after the model (never "/").
    QString planSaveStart() const;
    void setThreads(int n);
    DeviceCombo* deviceCombo() const { return device_; }

signals:
    void openFinished(bool ok);
    void planLoaded(bool ok);       // applied (true), or failed, cancelled or dropped (false)
    void runFinished(bool ok);      // finished (true) or cancelled/failed (false)
    void exportFinished(bool ok);

protected:
    void closeEvent(QCloseEvent* e) override;
    void dragEnterEvent(QDragEnterEvent* e) override;
    void dropEvent(QDropEvent* e) override;

private:
    // studio/main_window.cpp
    void buildWidgets();
    void buildDocks();
    void buildMenus();
    void restoreSettings();
    void saveSettings();
    void updateTitle();
    void updateActions();
    void showError(const QString& title, const QString& text);
    void about();
    void setBudgetDialog();
    void showOutputErrors(bool on);    // the three plots' ErrorKind
    void updateOutputToggle();         // enabled when the run has output errors
    // studio/main_window_open.cpp
    void onOpened(const OpenedModel& m);
    void onPlanLoaded(const LoadedPlan& p);
    void dropPlanLoad(const QString& why);   // a load in flight will not be applied
    void addRecent(const QString& path);
    void rebuildRecentMenu();
    void openDialog();
    void loadPlanDialog();
    bool savePlanDialog();
    bool maybeSavePlan();
    // studio/main_window_run.cpp
    struct ExportSpec {
        QString dir;              // the export folder; launched: the run folder (the export in dir/export)
        loftq::ExportFormat format = loftq::ExportFormat::Hf;
        bool plots = false, force = false, double_quant = false;
        std::optional<loftq::RunTarget> launch;   // "Run on" a launcher template (StudioJob::startLaunched)
    };
    bool startRun(const std::vector<std::string>& only, const ExportSpec& out);
    void onJobEvent(const loftq::JobEvent& e);
    void onJobFinished();   // last_result_ holds the result
    void onJobEnded(RunResults::State end, const QString& why);   // Finished, Cancelled or Failed
    void syncChartToSelection();
    // studio/main_window_export.cpp
    void exportDialog();
    std::vector<std::pair<std::string, std::string>> renderPlots(const loftq::QuantizeResult& r);

    PlanDocument* doc_ = nullptr;
    RunResults* results_ = nullptr;
    StudioJob* job_ = nullptr;
    PlanGridView* grid_ = nullptr;
    PlanEditBar* editBar_ = nullptr;
    BudgetBar* budget_ = nullptr;
    RulesPanel* rules_ = nullptr;
    ModelOverview* overview_ = nullptr;
    ErrorChart* chart_ = nullptr;
    ErrorHeatmap* heatmap_ = nullptr;
    ImprovementChart* improvement_ = nullptr;
    LogPanel* log_ = nullptr;
    QTabWidget* resultTabs_ = nullptr;
    QTabWidget* centralTabs_ = nullptr;
    FinetunePanel* finetune_ = nullptr;
    TryItPanel* tryIt_ = nullptr;
    MixedPanel* mixed_ = nullptr;
    QAction* actOutputErrors_ = nullptr;
    QCheckBox* outputErrorsBox_ = nullptr;   // the same toggle, in the Results dock's tab corner
    QProgressBar* progress_ = nullptr;
    QLabel* statusLabel_ = nullptr;
    QLabel* etaLabel_ = nullptr;
    QPushButton* cancelButton_ = nullptr;
    QMenu* recentMenu_ = nullptr;
    QMenu* viewMenu_ = nullptr;
    QAction *actOpen_ = nullptr, *actDemo_ = nullptr, *actLoadPlan_ = nullptr, *actSavePlan_ = nullptr,
            *actSavePlanAs_ = nullptr, *actExport_ = nullptr, *actRunAll_ = nullptr, *actRunSel_ = nullptr,
            *actCancel_ = nullptr, *actUndo_ = nullptr, *actRedo_ = nullptr, *actBudget_ = nullptr;
    QFutureWatcher<OpenedModel>* openWatcher_ = nullptr;
    QString openingPath_;
    // Plan loads: each takes the next ticket; its answer is applied only while the ticket is
    // still current (a cancel, another model or a later load moves it on).
    uint64_t planTicket_ = 0;
    bool planLoading_ = false;
    QString planLoadingPath_;
    QString planPath_;
    QString exportingDir_, last_export_dir_;
    bool exporting_ = false, exportPlots_ = false;
    bool interactive_ = true;
    bool layoutRestored_ = false;               // a saved dock layout was restored (else defaults apply)
    bool openedExport_ = false;                 // a packed export is open: shown, not re-quantized
    std::vector<std::string> loggedWarnings_;   // the plan warnings last written to the log
    std::vector<std::pair<QDockWidget*, bool>> planDocks_;   // chart, results, mixed docks; open before Fine-tune
    int threads_ = 0;
    HelpDialog* help_ = nullptr;
    std::function<int()> askUnsaved_;   // setUnsavedPlanPrompt
    DeviceCombo* device_ = nullptr;   // toolbar: where runs and exports decompose
    std::shared_ptr<const loftq::QuantizeResult> last_result_;
    QByteArray defaultState_;
    std::function<void()> applyDefaultProportions_;   // dock sizes in font heights for this window size
};

}  // namespace studio
