// finetune.h: the Fine-tune tab: dataset, hyper-parameters, device, start/stop, live
// train and held-out loss curves with several runs overlaid (e.g. LoftQ vs QLoRA at the same
// bits), the runs' results and the greedy sample. It fills loftq::TrainOptions and calls the
// engine's run_finetune on a JobThread, exactly as `loftq finetune` does; no numerics here.
#pragma once
#include <QHash>
#include <QWidget>
#include <memory>

#include "dist/launcher.h"
#include "train/trainer.h"

class QCheckBox;
class QSplitter;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;

namespace studio {

class DeviceCombo;
class JobThread;
class RunOnBox;
class TrainingCurves;

class FinetunePanel : public QWidget {
    Q_OBJECT
public:
    explicit FinetunePanel(QWidget* parent = nullptr);
    ~FinetunePanel() override;

    // The model open in the Plan tab (the default MODEL); its folder's demo-stories.txt, if any,
    // becomes the data file when none was chosen or the data is an earlier model's corpus that
    // this call filled in.
    void setModelPath(const QString& path);
    // The Plan tab's current plan: the "LoftQ of the current plan" start decomposes it in memory
    // (its per-weight quantizers, ranks and steps), no export needed. Null: no plan (start
    // disabled).
    void setPlan(std::shared_ptr<const loftq::Plan> plan, const loftq::ResolvedPlan& resolved);
    // Options as the form shows them; start() runs them (false while a run is going).
    loftq::TrainOptions options() const;
    void setOptions(const loftq::TrainOptions& o);
    bool start();
    void stop();
    // Overlays a run from its folder's metrics.jsonl (a CLI run, or an earlier session's).
    bool openRun(const QString& dir);
    // Follows a run started through "Run on" from its local run folder (launch.json): its events
    // so far redraw the curves, new ones stream in, its files are fetched at the end. For a run
    // whose connection was lost, or one started by an earlier session.
    bool attachRun(const QString& runDir);
    RunOnBox* runOn() const { return runOn_; }
    bool running() const;
    TrainingCurves* curves() const { return curves_; }
    QString lastOutDir() const { return lastOut_; }
    const loftq::TrainResult& lastResult() const { return lastResult_; }

signals:
    void runFinished(bool ok);
    // A run with results: one that finished (its adapter written) or one opened with Open Run;
    // `dir` is its output folder (the Try it tab generates from it).
    void runReady(const QString& name, const QString& dir);
    void message(const QString& text, bool error);

private:
    void onEvent(const loftq::TrainEvent& e);
    void onEnded(bool ok, const QString& why);
    bool startRemote(loftq::TrainOptions o, const QString& name);
    // Job thread: streams a launched run into onEvent and `result`, fetches its files at the end.
    void followRemote(const QString& runDir, bool attach, const loftq::RunTarget& target,
                      const std::vector<std::string>& args, const std::vector<std::string>& send,
                      const loftq::CancelToken& token, const std::shared_ptr<loftq::TrainResult>& result);
    void updateEnabled();
    void resizeEvent(QResizeEvent* e) override;
    void updateInitChoices();   // export start only for an export; ignored fields disabled
    void addRunRow(int run, const QString& name);      // a table row for a curves run
    void setRunCell(int row, int col, const QString& text);
    int rowOfRun(int run) const;
public:
    // The run's name in the table and the legend: what is really trained, e.g. "loftq nf2 r8 T5",
    // "qlora nf4 r16", "lora16 r8", "export my-export".
    QString runLabel() const;
    // The runs table: selecting a row shows that run's sample and highlights its curves; the name
    // cell is editable (renames the run, kept unique); Delete or the context menu removes a run
    // (not the one training).
    QTableWidget* runsTable() const { return runs_; }
    int runAtRow(int row) const;                 // TrainingCurves index of a table row, -1 none
    bool removeRunAt(int row);
    QString sampleText() const;
private:

    JobThread* job_ = nullptr;
    TrainingCurves* curves_ = nullptr;
    QLineEdit *model_ = nullptr, *data_ = nullptr, *evalData_ = nullptr, *out_ = nullptr;
    QComboBox *init_ = nullptr, *quant_ = nullptr;
    std::shared_ptr<const loftq::Plan> plan_;   // setPlan
    QString planLabel_;                         // the run's name when starting from it
    bool modelIsExport_ = false;                // loftq::is_loftq_export of the model field's path
    QHash<int, QString> samples_;               // greedy sample per curves run
    QSplitter* split_ = nullptr;                // form | curves
    QSplitter* leftSplit_ = nullptr;            // form / runs table / sample
    int formWidth_ = 0;                         // the form's natural width (with its scroll bar)
    QCheckBox* measureOriginal_ = nullptr;
    QString referenceKey_;                      // what the reference line was measured for
    DeviceCombo* device_ = nullptr;   // Auto (default), CPU, CUDA (enabled when a usable GPU is present)
    RunOnBox* runOn_ = nullptr;       // this machine (in-process), or a launcher template (dist/launcher.h)
    QSpinBox *rank_ = nullptr, *iters_ = nullptr, *steps_ = nullptr, *batch_ = nullptr, *seq_ = nullptr, *accum_ = nullptr,
             *evalEvery_ = nullptr, *seed_ = nullptr, *threads_ = nullptr;
    QDoubleSpinBox* lr_ = nullptr;
    QPushButton *startButton_ = nullptr, *stopButton_ = nullptr;
    QProgressBar* progress_ = nullptr;
    QLabel* status_ = nullptr;
    QTableWidget* runs_ = nullptr;
    QPlainTextEdit* sample_ = nullptr;
    int currentRun_ = -1;
    QString lastOut_;
    QString autoData_;   // the data file setModelPath filled in last (a demo's own corpus)
    loftq::TrainResult lastResult_;
    std::shared_ptr<loftq::TrainResult> pending_;
};

}  // namespace studio

Q_DECLARE_METATYPE(loftq::TrainEvent)
