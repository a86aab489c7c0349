// layout_check.h: what a user would see as broken in a laid-out window (GUI tests, header-only):
// an editor, button or label narrower than it needs to show its content (a spin box cutting
// "128" to "12", a label cut off), or a widget sticking out of its parent. Word-wrapped labels and
// widgets whose size policy lets them shrink on purpose (Ignored: they elide) are exempt, as are
// item views' and text views' internals (they scroll).
#pragma once
#include <QAbstractButton>
#include <QAbstractScrollArea>
#include <QAbstractSpinBox>
#include <QComboBox>
#include <QLabel>
#include <QLineEdit>
#include <QStringList>
#include <QTabBar>
#include <QWidget>

namespace loftq::test {

// Inside an item view or a text view (their contents scroll and elide by design). A QScrollArea
// holding a form is not exempt: a resizable one lays its form out at the viewport's width, which
// can squeeze the form's fields.
inline bool inside_scroll_area(const QWidget* w, const QWidget* top) {
    for (const QWidget* p = w->parentWidget(); p && p != top; p = p->parentWidget())
        if (qobject_cast<const QAbstractScrollArea*>(p) && !p->inherits("QScrollArea")) return true;
    return false;
}

// One line per problem, "" when none. Every visible widget below `top`.
inline QStringList layout_problems(QWidget* top) {
    QStringList out;
    for (QWidget* w : top->findChildren<QWidget*>()) {
        if (!w->isVisible() || w->isWindow() || inside_scroll_area(w, top)) continue;
        if (w->visibleRegion().isEmpty()) continue;   // e.g. a dock behind another's tab
        if (w->sizePolicy().horizontalPolicy() == QSizePolicy::Ignored) continue;
        if (w->objectName().startsWith("qt_") || w->objectName().startsWith("Scroll") || qobject_cast<QTabBar*>(w->parentWidget()))
            continue;   // Qt's own dock title and tab scroll buttons
        const QString name = QStringLiteral("%1 '%2'").arg(w->metaObject()->className(), w->objectName());
        const bool editor = qobject_cast<QAbstractSpinBox*>(w) || qobject_cast<QComboBox*>(w);
        if (editor && w->width() + 1 < w->minimumSizeHint().width())
            out << QStringLiteral("%1: %2 px wide, needs %3").arg(name).arg(w->width()).arg(w->minimumSizeHint().width());
        if (auto* b = qobject_cast<QAbstractButton*>(w); b && !b->text().isEmpty()) {
            const int need = b->fontMetrics().horizontalAdvance(QString(b->text()).remove('&')) + (b->icon().isNull() ? 4 : b->iconSize().width() + 8);
            if (b->width() < need)
                out << QStringLiteral("%1 \"%2\": %3 px wide, its text needs %4").arg(name, b->text()).arg(b->width()).arg(need);
        }
        if (auto* sb = qobject_cast<QAbstractSpinBox*>(w); sb && sb->width() + 1 < sb->sizeHint().width())
            out << QStringLiteral("%1: %2 px wide, its longest value needs %3").arg(name).arg(w->width()).arg(w->sizeHint().width());
        if (auto* l = qobject_cast<QLabel*>(w); l && !l->wordWrap() && !l->text().isEmpty() && l->pixmap().isNull()) {
            const int need = l->fontMetrics().horizontalAdvance(l->textFormat() == Qt::RichText ? QString() : l->text());
            if (need > l->contentsRect().width() + 1)
                out << QStringLiteral("%1 \"%2\": %3 px wide, text needs %4").arg(name, l->text().left(40)).arg(l->contentsRect().width()).arg(need);
        }
        if (QWidget* p = w->parentWidget(); p && !qobject_cast<QTabBar*>(w) && p->objectName() != "qt_scrollarea_viewport") {
            const QRect r = w->geometry();
            if (!p->rect().adjusted(-1, -1, 1, 1).contains(r) && r.width() > 0 && r.height() > 0)
                out << QStringLiteral("%1: %2,%3 %4x%5 outside its parent %6 (%7x%8)")
                           .arg(name).arg(r.x()).arg(r.y()).arg(r.width()).arg(r.height())
                           .arg(p->metaObject()->className()).arg(p->width()).arg(p->height());
        }
    }
    return out;
}

}  // namespace loftq::test
