// help.h: Help > Getting Started / Reading the Grid / Keyboard Shortcuts / Documentation,
// one dialog with a tab each, written from what the app holds so it cannot drift from it: the
// shortcut list is read from the window's actions, the colour legend from quant_colors.h, the
// documentation links from the files installed beside the program (share/doc/loftq-studio) or,
// in a build tree, the source's docs/. The getting-started tab is the short guided first run
// (shown once on the first start of an interactive window).
#pragma once
#include <QDialog>
#include <QStringList>

class QTabWidget;
class QTextBrowser;

namespace studio {

class HelpDialog : public QDialog {
    Q_OBJECT
public:
    enum class Page { GettingStarted, Grid, Shortcuts, Documentation };
    // `actions_of`: the window whose actions (menus, toolbars) are listed with their shortcuts.
    explicit HelpDialog(QWidget* actions_of, QWidget* parent = nullptr);
    void showPage(Page p);
    Page page() const;

    QString pageText(Page p) const;          // plain text of a tab (tests)
    QStringList shortcutRows() const;        // "Run All\tF5", ... in menu order
    QStringList documentationFiles() const;  // absolute paths of the linked documents that exist

    // Where the documentation lives: beside the program when installed, else the source tree.
    static QString docsDir();

private:
    QTabWidget* tabs_ = nullptr;
    QTextBrowser* pages_[4] = {};
    QStringList shortcuts_, docs_;
};

}  // namespace studio
