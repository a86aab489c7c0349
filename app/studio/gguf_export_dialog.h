// gguf_export_dialog.h: File > Export GGUF for llama.cpp: `loftq export-gguf` in a dialog
// (train/gguf_export.h). The source is one of the models the Studio knows (its open model, the
// last export, every fine-tune run: the Try it tab's list) or a folder picked by hand; the file,
// the matrix type (F16, Q8_0, F32) and whether the LoRA is merged or left out are chosen here.
// The export runs on a JobThread, its notes and the result go to the status line, Cancel stops it
// (nothing is written), closing the dialog cancels it. No numerics on the GUI thread.
#pragma once
#include <QDialog>
#include <QList>

#include "studio/try_it.h"
#include "train/gguf_export.h"

class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QPushButton;

namespace studio {

class JobThread;

class GgufExportDialog : public QDialog {
    Q_OBJECT
public:
    GgufExportDialog(QList<TryItPanel::SourceChoice> sources, int threads, QWidget* parent = nullptr);
    ~GgufExportDialog() override;

    // The settings, as the widgets hold them (tests and the CLI-like flags of --screenshot runs).
    void setSourceIndex(int i);
    int sourceCount() const;
    void setOutput(const QString& path);
    void setType(loftq::GgufWeightType t);
    void setBackboneOnly(bool on);
    void setReplace(bool on);
    loftq::GgufExportOptions options() const;   // what Export would run (output with ".gguf" added)

    // Export: checks the entries (an output file, not an existing one unless Replace), then starts
    // the job. False (with the reason in the status line) when it does not start.
    bool startExport();
    void cancel();
    bool running() const;
    QString statusText() const;

signals:
    void finished(bool ok, const QString& path);   // the job ended (ok: the file is written)
    void message(const QString& text, bool error); // for the Studio's log

private:
    void browseOutput();
    void browseSource();
    void onEnded(bool cancelled, const QString& error);
    void updateEnabled();

    QList<TryItPanel::SourceChoice> sources_;
    int threads_ = 0;
    QComboBox *source_ = nullptr, *type_ = nullptr;
    QLineEdit* out_ = nullptr;
    QCheckBox *backbone_ = nullptr, *replace_ = nullptr;
    QLabel* status_ = nullptr;
    QPushButton *export_ = nullptr, *cancel_ = nullptr;
    JobThread* job_ = nullptr;
    loftq::GgufExportResult result_;   // written by the job, read after it ended
    QString target_;                   // the file the running job writes
};

}  // namespace studio
