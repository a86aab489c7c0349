// try_it.h: the Try it tab: one prompt, the sampling options of `loftq generate` (max tokens,
// temperature (0 = greedy), top-k, top-p, seed) and two columns side by side, A and B (B may be
// "(none)"), each generating from its own source with its text streamed in as it comes and a
// status line (tokens, tokens/s, why it stopped, or the error in one sentence). Sources: the
// model open in the Studio, the last export written or opened, every fine-tune run of the
// Fine-tune tab (its output folder: e.g. the LoftQ and the QLoRA run side by side) and any folder
// picked with Browse. Each column's model is loaded once and kept until its source or the
// Studio's model changes.
// The work runs on one JobThread (studio/try_it_worker.h): A, then B, so that each column's
// tokens/s is measured alone, not with the other column fighting it for the same cores. Tokens
// reach the GUI thread as queued calls and are appended at most once per 30 ms (one single-shot
// timer). No numerics here.
#pragma once
#include <QString>
#include <QWidget>
#include <array>
#include <memory>

#include "studio/try_it_worker.h"

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QPlainTextEdit;
class QPushButton;
class QSpinBox;
class QTimer;

namespace studio {

class JobThread;

class TryItPanel : public QWidget {
    Q_OBJECT
public:
    enum Column { A = 0, B = 1 };
    explicit TryItPanel(QWidget* parent = nullptr);
    ~TryItPanel() override;

    // The model open in the Studio ("Original model"). Drops every loaded model (a generation
    // in progress is cancelled).
    void setModelPath(const QString& path);
    // The last export written or opened ("Export: NAME").
    void setExportPath(const QString& dir);
    // A fine-tune run ("Run: NAME", its output folder), offered to both columns.
    void addRun(const QString& name, const QString& dir);
    // A folder picked by hand (an adapter, a run, an export or a checkpoint), offered to both
    // columns; returns its id (the source boxes' item data).
    int addFolder(const QString& dir);
    void setThreads(int n);
    void setInteractive(bool on) { interactive_ = on; }   // the folder dialog only when interactive

    // Every source offered (the Studio's model first), for other dialogs that work on the same
    // models (File > Export GGUF).
    struct SourceChoice {
        QString label;
        TryItSource source;
    };
    QList<SourceChoice> sourceChoices() const;

    // A column's source: the choices are the combo box's items (B's first is "(none)").
    QComboBox* sourceBox(int column) const { return cols_[column].source; }
    // Selects the source of that kind and path; false when it is not offered.
    bool selectSource(int column, TryItSourceKind kind, const QString& path);
    void selectNone();   // column B: "(none)"

    void setPrompt(const QString& text);
    QString prompt() const;
    loftq::GenerateOptions options() const;
    void setOptions(const loftq::GenerateOptions& o);

    // Starts A (and B when chosen); false while running or when there is nothing to run.
    bool generate();
    void cancel();
    bool running() const;

    QPlainTextEdit* output(int column) const { return cols_[column].out; }   // the prompt, then the new text
    QLabel* status(int column) const { return cols_[column].status; }
    QString generatedText(int column) const { return cols_[column].text + cols_[column].pending; }
    // Of the last generation: token calls that crossed to the GUI thread, and text appends.
    int tokenEvents(int column) const { return cols_[column].tokenEvents; }
    int appends(int column) const { return cols_[column].appends; }
    // How often the column's current source was loaded (1 while the cache holds it).
    int loads(int column) const;

signals:
    void finished(bool ok);   // the generation ended: ok when every column generated
    void message(const QString& text, bool error);

private:
    struct Source {
        int id;                                // the boxes' item data: stable while the list changes
        QString label;
        TryItSourceKind kind;
        QString path;
    };
    struct ColumnView {
        QComboBox* source = nullptr;
        QPlainTextEdit* out = nullptr;
        QLabel* status = nullptr;
        std::shared_ptr<GeneratorSlot> slot;   // the cache: the loaded model of the chosen source
        QString text, pending;                 // shown new text, and what waits for the next append
        int tokens = 0, tokenEvents = 0, appends = 0;
        int lastIndex = 0;                     // the source box's index before a Browse
        bool used = false;                     // part of the last generation
        bool active = false, ok = false;       // still generating (or waiting); generated
    };
    QWidget* buildColumn(int column);
    void rebuildSources();                     // both boxes from sources_, keeping the choices
    void onSourceChosen(int column);
    const Source* chosen(int column) const;    // null: "(none)"
    void resetSlot(int column);
    void flush();                              // pending text -> the outputs
    void onToken(int column, const QString& text);
    void onColumnDone(int column, int tokens, double tokensPerSecond, double prefill, const QString& stop);
    void onColumnFailed(int column, const QString& error);
    void onEnded(bool cancelled, const QString& why);
    void updateEnabled();

    std::array<ColumnView, 2> cols_;
    QList<Source> sources_;   // in the boxes' order (after B's "(none)"); [0] the Studio's model
    int nextId_ = 1;
    JobThread* job_ = nullptr;
    QTimer* flushTimer_ = nullptr;
    QPlainTextEdit* prompt_ = nullptr;
    QSpinBox *maxTokens_ = nullptr, *topK_ = nullptr, *seed_ = nullptr;
    QDoubleSpinBox *temperature_ = nullptr, *topP_ = nullptr;
    QPushButton *generateButton_ = nullptr, *cancelButton_ = nullptr;
    QString modelPath_;
    int threads_ = 0;
    bool interactive_ = true;
    bool rebuilding_ = false;
};

}  // namespace studio
