// export_dialog.h: File > Export's dialog. Folder, format (HF LoftQ layout, packed, bitsandbytes
// NF4), double quantization (packed only), plots, and replacing a non-empty folder. It says what
// the folder will take on disk for the chosen format (loftq::export_footprint: the LoRA factors
// are stored in fp32, the HF layout holds every target dequantized), beside the plan's size that
// the budget bar shows. Export checks the choice before closing: a non-empty folder without
// "Replace" checked, or a plan the format cannot hold (bnb-nf4: NF4 block 64 only), is said in
// the dialog, which stays open with everything entered. No numerics; settings are remembered.
#pragma once
#include <QDialog>
#include <vector>

#include "loftq/exporter.h"
#include "loftq/plan.h"

class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;

namespace studio {

class RunOnBox;

class ExportDialog : public QDialog {
    Q_OBJECT
public:
    ExportDialog(const loftq::ResolvedPlan& plan, const std::vector<loftq::TensorMeta>& tensors, QWidget* parent = nullptr);

    QString folder() const;
    loftq::ExportFormat format() const;
    bool plots() const;
    bool replace() const;            // allow a non-empty folder
    bool doubleQuant() const;        // packed only
    void setFolder(const QString& dir);
    void setFormat(loftq::ExportFormat format);
    void setReplace(bool on);

    // "Run on": this machine, or a launcher template; then the folder is the run folder (it must be
    // new or empty), the export lands in its export/, and no plots are written.
    RunOnBox* runOn() const { return runOn_; }
    QString footprintText() const;   // what the dialog says the folder will take
    QString problemText() const;     // why Export did not close the dialog ("" when none)
    // What Export does: checks the entries; accepts (and remembers them) when they are fine, else
    // shows the problem and keeps the dialog open. True when accepted.
    bool tryAccept();

private:
    static QString formatLabel(loftq::ExportFormat f);   // the combo box's text for a format
    void updateFootprint();
    QString problem() const;

    loftq::ResolvedPlan plan_;
    std::vector<loftq::TensorMeta> tensors_;
    QLineEdit* dir_ = nullptr;
    QComboBox* format_ = nullptr;
    QCheckBox *dq_ = nullptr, *plots_ = nullptr, *replace_ = nullptr;
    QLabel *footprint_ = nullptr, *problem_ = nullptr;
    RunOnBox* runOn_ = nullptr;
};

}  // namespace studio
