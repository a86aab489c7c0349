// flow_layout.cpp: see flow_layout.h.
#include "flow_layout.h"

#include <QWidget>
#include <algorithm>

namespace studio {

FlowLayout::FlowLayout(QWidget* parent, int hspacing, int vspacing) : QLayout(parent), hspace_(hspacing), vspace_(vspacing) {
    setContentsMargins(0, 0, 0, 0);
}

FlowLayout::~FlowLayout() {
    while (QLayoutItem* it = takeAt(0)) delete it;
}

void FlowLayout::addItem(QLayoutItem* item) { items_.append(item); }
int FlowLayout::count() const { return int(items_.size()); }
QLayoutItem* FlowLayout::itemAt(int index) const { return index >= 0 && index < items_.size() ? items_[index] : nullptr; }
QLayoutItem* FlowLayout::takeAt(int index) { return index >= 0 && index < items_.size() ? items_.takeAt(index) : nullptr; }

int FlowLayout::heightForWidth(int width) const { return place(QRect(0, 0, width, 0), false); }

QSize FlowLayout::sizeHint() const {
    int w = 0, h = 0, n = 0;
    for (QLayoutItem* it : items_) {
        if (it->isEmpty()) continue;
        const QSize s = it->sizeHint();
        w += s.width() + (n++ ? hspace_ : 0);
        h = std::max(h, s.height());
    }
    const QMargins m = contentsMargins();
    return QSize(w + m.left() + m.right(), h + m.top() + m.bottom());
}

QSize FlowLayout::minimumSize() const {
    QSize s;
    for (QLayoutItem* it : items_)
        if (!it->isEmpty()) s = s.expandedTo(it->sizeHint());
    const QMargins m = contentsMargins();
    return s + QSize(m.left() + m.right(), m.top() + m.bottom());
}

void FlowLayout::setGeometry(const QRect& rect) {
    QLayout::setGeometry(rect);
    place(rect, true);
}

int FlowLayout::place(const QRect& rect, bool apply) const {
    const QMargins m = contentsMargins();
    const QRect area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom());
    int x = area.x(), y = area.y(), row_h = 0;
    // Items of a row share its vertical centre line.
    QList<QPair<QLayoutItem*, QPoint>> row;
    auto flush = [&] {
        if (apply)
            for (const auto& [it, at] : row) {
                const QSize s = it->sizeHint();
                it->setGeometry(QRect(QPoint(at.x(), at.y() + (row_h - s.height()) / 2), s));
            }
        row.clear();
    };
    for (QLayoutItem* it : items_) {
        if (it->isEmpty()) continue;
        const QSize s = it->sizeHint();
        if (x > area.x() && x + s.width() > area.right() + 1) {   // wrap
            flush();
            x = area.x();
            y += row_h + vspace_;
            row_h = 0;
        }
        row.append({it, QPoint(x, y)});
        x += s.width() + hspace_;
        row_h = std::max(row_h, s.height());
    }
    flush();
    return y + row_h - rect.y() + m.bottom();
}

}  // namespace studio
