// plan_grid_delegate.cpp: see plan_grid_delegate.h. Layout inside a cell (w x h):
//   [pad] r16 ............ T5 b64 [pad]     text vertically centred
//   [=========== error bar ====         ]   bottom h/8 px, only after a run
#include "plan_grid_delegate.h"

#include <algorithm>
#include <QPainter>
#include <cmath>

#include "plan_grid_model.h"
#include "quant_colors.h"

namespace studio {

PlanGridDelegate::PlanGridDelegate(QObject* parent) : QStyledItemDelegate(parent) {}

QSize PlanGridDelegate::cellSize(const QFont& font) {
    QFontMetrics fm(font);
    int pad = std::max(2, fm.averageCharWidth() / 2);
    int w = fm.horizontalAdvance("r128") + fm.horizontalAdvance("T10") * 4 / 5 + 4 * pad;
    return {std::max(w, fm.averageCharWidth() * 8), int(std::lround(1.6 * fm.height()))};
}

QSize PlanGridDelegate::sizeHint(const QStyleOptionViewItem& option, const QModelIndex&) const {
    return cellSize(option.font);
}

void PlanGridDelegate::paint(QPainter* p, const QStyleOptionViewItem& option, const QModelIndex& index) const {
    p->save();
    const QRect r = option.rect.adjusted(0, 0, -1, -1);   // leave the grid line
    const QPalette& pal = option.palette;
    const int code = index.data(PlanGridModel::QuantRole).toInt();
    const QuantStyle& st = quantStyle(code);
    const bool selected = option.state & QStyle::State_Selected;

    // Fill.
    if (code == kQuantEmpty) {
        p->fillRect(r, pal.color(QPalette::Base));
        p->fillRect(r, QBrush(pal.color(QPalette::Mid), Qt::DiagCrossPattern));
    } else {
        p->fillRect(r, st.fill);
        if (st.hatched) p->fillRect(r, QBrush(QColor(0, 0, 0, 60), Qt::BDiagPattern));
    }
    // Selection: a light highlight overlay (the quantizer hue stays recognisable) + a border.
    QColor under = code == kQuantEmpty ? pal.color(QPalette::Base) : st.fill;
    if (selected) {
        constexpr double a = 0.22;
        QColor hl = pal.color(QPalette::Highlight);
        under = QColor::fromRgbF(float(under.redF() * (1 - a) + hl.redF() * a), float(under.greenF() * (1 - a) + hl.greenF() * a),
                                 float(under.blueF() * (1 - a) + hl.blueF() * a));
        hl.setAlphaF(float(a));
        p->fillRect(r, hl);
    }

    // Text: rank big, T and block small on the right when they fit.
    QColor fg = textColorOn(under);
    if (!fg.isValid()) fg = pal.color(QPalette::Text);
    const QFontMetrics fm(option.font);
    const int pad = std::max(2, fm.averageCharWidth() / 2);
    QRect text = r.adjusted(pad + 1, 0, -pad, 0);
    QVariant rank = index.data(PlanGridModel::RankRole);
    p->setPen(fg);
    if (rank.isValid()) {
        QFont big = option.font;
        big.setBold(true);
        p->setFont(big);
        QString rs = QString("r%1").arg(rank.toInt());
        int rw = QFontMetrics(big).horizontalAdvance(rs);
        p->drawText(text, Qt::AlignLeft | Qt::AlignVCenter, rs);
        QFont small = option.font;
        if (small.pointSizeF() > 0) small.setPointSizeF(small.pointSizeF() * 0.8);
        else small.setPixelSize(std::max(6, small.pixelSize() * 4 / 5));
        QFontMetrics sfm(small);
        QString ts = QString("T%1").arg(index.data(PlanGridModel::ItersRole).toInt());
        QString bs = QString("b%1").arg(index.data(PlanGridModel::BlockRole).toInt());
        QString right;
        if (rw + pad + sfm.horizontalAdvance(ts + " " + bs) <= text.width()) right = ts + " " + bs;
        else if (rw + pad + sfm.horizontalAdvance(ts) <= text.width()) right = ts;
        if (!right.isEmpty()) {
            p->setFont(small);
            p->drawText(text, Qt::AlignRight | Qt::AlignVCenter, right);
        }
    } else if (code == kQuantKeep) {
        QFont it = option.font;
        it.setItalic(true);
        p->setFont(it);
        p->drawText(text, Qt::AlignHCenter | Qt::AlignVCenter, st.shortLabel);
    }

    // Final error of a run: bar of final / baseline along the bottom.
    const double err = index.data(PlanGridModel::ErrorRole).toDouble();
    const double base = index.data(PlanGridModel::BaselineRole).toDouble();
    // A stale result (the cell's settings changed since its run): the bar dotted, faint.
    const bool stale = index.data(PlanGridModel::StaleRole).toBool();
    if (std::isfinite(err)) {
        int bh = std::max(2, r.height() / 8);
        QRect track(r.left() + 1, r.bottom() - bh, r.width() - 1, bh);
        QColor ink = fg;
        ink.setAlpha(stale ? 70 : 150);
        if (std::isfinite(base) && base > 0) {
            double f = std::clamp(err / base, 0.0, 1.0);
            p->fillRect(QRect(track.left(), track.top(), int(std::lround(f * track.width())), bh),
                        stale ? QBrush(ink, Qt::Dense4Pattern) : QBrush(ink));
            if (err > base && !stale) {   // LoftQ ended worse than QLoRA: red corner mark
                int k = std::max(5, r.height() / 2);
                QPolygon tri({QPoint(r.right() - k, r.top()), QPoint(r.right(), r.top()), QPoint(r.right(), r.top() + k)});
                p->setPen(Qt::NoPen);
                p->setBrush(QColor(0xc0, 0x10, 0x10));
                p->drawPolygon(tri);
            }
        } else {
            p->fillRect(QRect(track.left(), track.top(), bh * 2, bh), ink);
        }
    }

    // Outlines: selection (solid highlight), then the rule preview on top (dashed yellow on
    // black, visible on every fill and over the selection border), focus (dotted).
    p->setBrush(Qt::NoBrush);
    if (selected) {
        const int bw = std::max(2, fm.height() / 7);   // ~2 px at 9-10 pt, scales with the font
        QPen sel(pal.color(QPalette::Highlight).darker(150), bw);
        sel.setJoinStyle(Qt::MiterJoin);
        p->setPen(sel);
        p->drawRect(QRectF(r).adjusted(bw / 2.0, bw / 2.0, -bw / 2.0, -bw / 2.0));
    }
    if (index.data(PlanGridModel::HighlightRole).toBool()) {
        QPen outer(QColor(Qt::black), 2, Qt::SolidLine);
        outer.setJoinStyle(Qt::MiterJoin);
        p->setPen(outer);
        p->drawRect(r.adjusted(1, 1, -1, -1));
        QPen inner(QColor(0xff, 0xe0, 0x00), 2, Qt::DashLine);
        inner.setJoinStyle(Qt::MiterJoin);
        p->setPen(inner);
        p->drawRect(r.adjusted(1, 1, -1, -1));
    }
    if (option.state & QStyle::State_HasFocus) {
        p->setPen(QPen(pal.color(QPalette::Text), 1, Qt::DotLine));
        p->drawRect(r.adjusted(3, 3, -3, -3));
    }
    p->restore();
}

}  // namespace studio
