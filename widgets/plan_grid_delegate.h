// plan_grid_delegate.h: paints one plan-grid cell from PlanGridModel's roles: fill colour by
// quantizer (quant_colors.h), "r16" (LoRA rank) and, as width allows, a small "T5" (alternating
// steps) and "b64" (block); kept cells grey and hatched, empty cells (no tensor) faintly
// cross-hatched; a dashed outline for the rule preview (HighlightRole); a thin bar along the
// bottom for the final error of a run (length = final / QLoRA error, so a short bar is a large
// LoftQ gain; a red corner mark when LoftQ ended worse than QLoRA); selection as a
// palette-highlight overlay with a solid border; a dotted frame on the current cell.
//
// All sizes derive from the font (no fixed pixels besides 1-2 px lines), so the grid scales with
// the desktop's font and DPI. Leaves out: editing (edits are bulk: see plan_grid_view.h).
#pragma once
#include <QStyledItemDelegate>

namespace studio {

class PlanGridDelegate : public QStyledItemDelegate {
    Q_OBJECT
public:
    explicit PlanGridDelegate(QObject* parent = nullptr);
    void paint(QPainter* p, const QStyleOptionViewItem& option, const QModelIndex& index) const override;
    QSize sizeHint(const QStyleOptionViewItem& option, const QModelIndex& index) const override;
    // The cell size for a font: width fits "r128 T10" plus padding (about 56-72 px at common
    // default fonts), height 1.6 x the line height. The view sizes its sections with it.
    static QSize cellSize(const QFont& font);
};

}  // namespace studio
