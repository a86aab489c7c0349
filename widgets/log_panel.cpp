// log_panel.cpp: see log_panel.h. Each line is its own text block, so blockCount() is the line
// count and maximumBlockCount drops the oldest lines.
#include "log_panel.h"

#include <QApplication>
#include <QClipboard>
#include <QMenu>
#include <QPlainTextEdit>
#include <QScrollBar>
#include <QTextBlock>
#include <QTextDocumentFragment>
#include <QTime>
#include <QVBoxLayout>

namespace studio {

LogPanel::LogPanel(QWidget* parent) : QWidget(parent) {
    edit_ = new QPlainTextEdit(this);
    edit_->setReadOnly(true);
    edit_->setMaximumBlockCount(kMaxLines);
    edit_->setLineWrapMode(QPlainTextEdit::NoWrap);
    edit_->setUndoRedoEnabled(false);
    edit_->setContextMenuPolicy(Qt::CustomContextMenu);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(edit_);
    connect(edit_, &QPlainTextEdit::customContextMenuRequested, this, [this](const QPoint& pos) {
        QMenu menu(this);
        QAction* copy = menu.addAction(edit_->textCursor().hasSelection() ? tr("Copy") : tr("Copy All"), this,
                                       &LogPanel::copyToClipboard);
        copy->setEnabled(lineCount() > 0);
        menu.addAction(tr("Select All"), edit_, &QPlainTextEdit::selectAll);
        menu.addSeparator();
        menu.addAction(tr("Clear"), this, &LogPanel::clear);
        menu.exec(edit_->viewport()->mapToGlobal(pos));
    });
}

void LogPanel::append(Level level, const QString& text) {
    if (level == Level::Error) lastError_ = text;
    const QString stamp = QTime::currentTime().toString(QStringLiteral("[HH:mm:ss] "));
    const QString prefix = level == Level::Error ? tr("error: ") : level == Level::Warning ? tr("warning: ") : QString();
    QTextCharFormat format;
    if (level != Level::Info) format.setForeground(level == Level::Error ? QColor(0xd32f2f) : QColor(0xb26a00));
    // Plain text with a colour (no HTML: the text is shown and copied exactly); follow the end
    // only when the view was already there.
    QScrollBar* bar = edit_->verticalScrollBar();
    const bool at_end = bar->value() == bar->maximum();
    QTextCursor c(edit_->document());
    c.movePosition(QTextCursor::End);
    c.beginEditBlock();
    const QStringList lines = text.split(QLatin1Char('\n'));
    for (int i = 0; i < lines.size(); ++i) {
        if (!edit_->document()->isEmpty() || i > 0) c.insertBlock(QTextBlockFormat(), format);
        c.insertText((i == 0 ? stamp + prefix : QString(stamp.size(), QLatin1Char(' '))) + lines[i], format);
    }
    c.endEditBlock();
    if (at_end) bar->setValue(bar->maximum());
}

void LogPanel::clear() { edit_->clear(); }

QString LogPanel::plainText() const { return edit_->toPlainText(); }

int LogPanel::lineCount() const { return edit_->document()->isEmpty() ? 0 : edit_->document()->blockCount(); }

void LogPanel::copyToClipboard() const {
    const QTextCursor c = edit_->textCursor();
    QApplication::clipboard()->setText(c.hasSelection() ? c.selection().toPlainText() : edit_->toPlainText());
}

}  // namespace studio
