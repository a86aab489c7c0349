// plan_grid_view.h: the plan grid (layers x module kinds) as a QTableView with bulk edits of the
// selected cells: a context menu, keyboard shortcuts and applyPatch() for the edit bar. Each edit
// is one PlanDocument undo step.
//
// Selection: extended selection of cells; a column header click selects that module in every
// layer, a row header click the whole layer (Ctrl toggles, Shift extends, as QTableView does);
// Ctrl+A selects all; arrows move, Shift+arrows extend.
//
// Shortcuts while the grid (or a child) has focus, also shown in the context menu:
//   2 / 3 / 4      NF2 / NF3 / NF4          8        INT8
//   Alt+2/3/4      INT2 / INT3 / INT4       (Shift+2/3/4 too where the keyboard layout reports
//                                            the digit; on most layouts Shift+2 is '@', so Alt
//                                            is the documented one)
//   K              keep in 16-bit (not quantized)
//   + (or =) / -   double / halve each selected weight's rank, clamped to 1..1024
//   Delete, Backspace  clear the selected cells' per-weight overrides (back to defaults + rules)
//
// Keep and clear-overrides edit the plan through PlanDocument::replacePlan rather than
// editCells: a SettingsPatch can neither remove an override nor drop an override's quantizer,
// and an override holding both "keep" and a quantizer does not survive plan_to_json (the
// quantizer name overwrites "keep"). Everything else goes through editCells; rank +/- over cells
// of different ranks is one undo macro of one editCells per distinct rank.
// Leaves out: painting (plan_grid_delegate.h), data (plan_grid_model.h), the edit toolbar.
#pragma once
#include <QList>
#include <QPoint>
#include <QTableView>

#include "loftq/plan.h"

class QMenu;

namespace studio {

class PlanDocument;
class RunResults;
class PlanGridModel;

class PlanGridView : public QTableView {
    Q_OBJECT
public:
    explicit PlanGridView(PlanDocument* doc, RunResults* results = nullptr, QWidget* parent = nullptr);

    QList<QPoint> selectedCells() const;        // QPoint(x = column, y = layer), sorted by layer, column
    void selectCells(const QList<QPoint>& cells);
    PlanGridModel* gridModel() const { return model_; }
    PlanDocument* document() const { return doc_; }

    // doc->editCells(selectedCells(), p, what); a patch with target == false (keep) instead makes
    // each selected tensor's override exactly {keep} (see the file comment).
    void applyPatch(const loftq::SettingsPatch& p, const QString& what);
    void keepSelected();
    void scaleRank(bool up);                    // x2 or /2, clamped to 1..1024; kept cells skipped
    void clearOverrides();                      // erase the selected tensors' overrides

    // The cell context menu (also what right-click pops up). Its actions carry object names for
    // scripting and tests: quant_nf4 ... quant_int8, quant_keep, rank_4 ... rank_128, rank_other,
    // rank_double, rank_halve, iters_0 ... iters_10, block_32 ... block_256, clear_overrides.
    QMenu* cellMenu() const { return menu_; }
    QAction* editAction(const QString& objectName) const;

signals:
    void cellSelectionChanged(const QList<QPoint>& cells);

protected:
    void contextMenuEvent(QContextMenuEvent* e) override;
    void changeEvent(QEvent* e) override;

private:
    void buildMenu();
    void updateSectionSizes();
    void updateActions();

    PlanDocument* doc_;
    PlanGridModel* model_;
    QMenu* menu_ = nullptr;
};

}  // namespace studio
