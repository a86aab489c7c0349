// log_panel.h: the app's message log — one timestamped line per message (warnings amber, errors
// red), read-only, capped at kMaxLines (oldest dropped), context menu "Copy" (the selection, or
// everything) and "Clear". GUI thread only: engine messages arrive through the app's job adapter.
// Leaves out filtering, search and writing the log to a file.
#pragma once
#include <QString>
#include <QWidget>

class QPlainTextEdit;

namespace studio {

class LogPanel : public QWidget {
    Q_OBJECT
public:
    enum class Level { Info, Warning, Error };
    static constexpr int kMaxLines = 5000;

    explicit LogPanel(QWidget* parent = nullptr);

    // "[hh:mm:ss] text"; a multi-line text becomes one line per text line.
    void append(Level level, const QString& text);
    void clear();
    QString plainText() const;
    int lineCount() const;
    // The text of the last Error appended (kept even after Clear), "" when none: what a headless
    // run prints when it fails.
    QString lastError() const { return lastError_; }
    void copyToClipboard() const;   // the selection, or everything when nothing is selected

private:
    QPlainTextEdit* edit_ = nullptr;
    QString lastError_;
};

}  // namespace studio
