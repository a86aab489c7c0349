// test_grid.cpp: the plan-editing widgets over a synthetic LLaMA-shaped checkpoint (4 layers):
// item models through QAbstractItemModelTester, grid geometry, selection by mouse, headers and
// keyboard, edits through the edit bar, the context menu and shortcuts changing exactly the
// selected weights (each one undo step, undo restoring the plan exactly), the rules panel
// (preview = loftq::rule_matches, commit changes the resolved plan, invalid input refused), the
// plan JSON round trip and the budget against the engine, the overview filter, run errors.
// With LOFTQ_GRID_CHECK_DIR set it also writes PNGs of the widgets there for a visual check.
#include <QAbstractItemModelTester>
#include <QComboBox>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QMenu>
#include <QSignalSpy>
#include <QSortFilterProxyModel>
#include <QSpinBox>
#include <QTableView>
#include <QVBoxLayout>
#include <QtTest>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "io/checkpoint.h"
#include "io/synthetic_model.h"
#include "loftq/budget.h"
#include "loftq/job.h"
#include "model_overview.h"
#include "plan_document.h"
#include "plan_edit_bar.h"
#include "plan_grid_model.h"
#include "plan_grid_view.h"
#include "quant_colors.h"
#include "rules_model.h"
#include "rules_panel.h"
#include "run_results.h"
#include "test_support.h"

using namespace studio;
using Settings = std::optional<loftq::WeightSettings>;   // nullopt = kept
using Snapshot = std::map<std::string, Settings>;        // tensor name -> resolved settings

Q_DECLARE_METATYPE(std::vector<bool>)

namespace {

std::string summary(const Settings& s) { return s ? loftq::settings_summary(*s) : std::string("keep"); }

Snapshot snapshot(const PlanDocument& doc) {
    Snapshot m;
    for (size_t t = 0; t < doc.tensors().size(); ++t) {
        int w = doc.weightOfTensor(int(t));
        m[doc.tensors()[t].name] = w >= 0 ? Settings(doc.resolved().weights[size_t(w)].s) : std::nullopt;
    }
    return m;
}

std::string planDump(const PlanDocument& doc) { return loftq::plan_to_json(doc.plan()).dump(); }

QString cellsText(const QList<QPoint>& cells) {
    QStringList s;
    for (QPoint c : cells) s << QString("(%1,%2)").arg(c.x()).arg(c.y());
    return s.join(' ');
}

}  // namespace

class TestGrid : public QObject {
    Q_OBJECT
    std::string dir_;
    std::vector<loftq::TensorMeta> metas_;

    void open(PlanDocument& doc) { doc.setModel(QString::fromStdString(dir_), metas_); }

    // Every tensor whose cell is in `cells` must now have fn(old settings); every other tensor
    // must be unchanged.
    void expectOnly(const PlanDocument& doc, const Snapshot& before, const QList<QPoint>& cells,
                    const std::function<Settings(const Settings&)>& fn) {
        Snapshot after = snapshot(doc);
        std::set<int> sel;
        for (QPoint c : cells)
            if (doc.tensorAt(c.y(), c.x()) >= 0) sel.insert(doc.tensorAt(c.y(), c.x()));
        QVERIFY(!sel.empty());
        for (size_t t = 0; t < doc.tensors().size(); ++t) {
            const std::string& n = doc.tensors()[t].name;
            std::string want = summary(sel.count(int(t)) ? fn(before.at(n)) : before.at(n));
            QVERIFY2(summary(after.at(n)) == want, qPrintable(QString::fromStdString(n + ": got " + summary(after.at(n)) + ", want " + want)));
        }
    }

    // One action = one undo step; undo restores the plan exactly, redo re-applies it.
    void checkUndoRedo(PlanDocument& doc, const std::string& before, int count_before) {
        QCOMPARE(doc.undoStack()->count(), count_before + 1);
        std::string after = planDump(doc);
        QVERIFY(after != before);
        doc.undoStack()->undo();
        QCOMPARE(planDump(doc), before);
        doc.undoStack()->redo();
        QCOMPARE(planDump(doc), after);
    }

    static QPoint centre(PlanGridView& v, int layer, int col) { return v.visualRect(v.gridModel()->index(layer, col)).center(); }

    static void showActive(QWidget& w) {
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        w.activateWindow();
        QVERIFY(QTest::qWaitForWindowActive(&w));
    }

private slots:
    void initTestCase() {
        qRegisterMetaType<std::vector<bool>>();
        dir_ = loftq::test::make_temp_dir("grid") + "/model";
        loftq::SyntheticSpec spec;
        spec.layers = 4;
        spec.hidden = 64;
        spec.intermediate = 160;
        spec.heads = 4;
        spec.kv_heads = 2;
        spec.vocab = 64;
        loftq::write_synthetic_model(dir_, spec);
        auto ck = loftq::Checkpoint::open(dir_);
        metas_ = loftq::tensor_metas(*ck);
        QVERIFY(metas_.size() > 28);
    }

    void geometry() {
        PlanDocument doc;
        open(doc);
        PlanGridView view(&doc);
        PlanGridModel* m = view.gridModel();
        QCOMPARE(m->rowCount(), 4);
        QCOMPARE(m->columnCount(), 7);
        QStringList shortNames;
        for (int c = 0; c < 7; ++c) shortNames << m->headerData(c, Qt::Horizontal).toString();
        QStringList sorted = shortNames;
        sorted.sort();
        QCOMPARE(sorted, QStringList({"down", "gate", "k", "o", "q", "up", "v"}));
        for (int c = 0; c < 7; ++c)
            QVERIFY(m->headerData(c, Qt::Horizontal, Qt::ToolTipRole).toString().contains(doc.columns()[c]));
        for (int l = 0; l < 4; ++l) QCOMPARE(m->headerData(l, Qt::Vertical).toString(), QString("L%1").arg(l));
        // Every cell holds a default target (NF4 r16 T5 b64 by default).
        for (int l = 0; l < 4; ++l)
            for (int c = 0; c < 7; ++c) {
                QModelIndex i = m->index(l, c);
                QCOMPARE(i.data(PlanGridModel::QuantRole).toInt(), int(loftq::QuantKind::NF4));
                QCOMPARE(i.data(PlanGridModel::RankRole).toInt(), 16);
                QCOMPARE(i.data(PlanGridModel::ItersRole).toInt(), 5);
                QCOMPARE(i.data(PlanGridModel::BlockRole).toInt(), 64);
                QVERIFY(std::isnan(i.data(PlanGridModel::ErrorRole).toDouble()));
                QString tip = i.data(Qt::ToolTipRole).toString();
                int t = doc.tensorAt(l, c);
                QVERIFY(tip.contains(QString::fromStdString(doc.tensors()[size_t(t)].name)));
                QVERIFY(tip.contains("nf4/b64 r16 T5"));
            }
        // Column labels drop "_proj"; GPT-2 style duplicates keep their container.
        QCOMPARE(PlanGridModel::shortColumnNames({"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}),
                 QStringList({"c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"}));
        // Cells are compact: 1.6 x line height, width in a sane range.
        QFontMetrics fm(view.font());
        QVERIFY(std::abs(view.rowHeight(0) - 1.6 * fm.height()) <= 1);
        QVERIFY(view.columnWidth(0) >= fm.averageCharWidth() * 6 && view.columnWidth(0) <= fm.averageCharWidth() * 16);
    }

    void itemModelTesters() {
        PlanDocument doc;
        RunResults results;
        PlanGridModel grid(&doc, &results);
        QAbstractItemModelTester t1(&grid, QAbstractItemModelTester::FailureReportingMode::QtTest);
        open(doc);
        std::vector<bool> hl(doc.tensors().size(), false);
        hl[size_t(doc.tensorAt(1, 2))] = true;
        grid.setHighlight(hl);
        QVERIFY(grid.index(1, 2).data(PlanGridModel::HighlightRole).toBool());
        QVERIFY(!grid.index(1, 3).data(PlanGridModel::HighlightRole).toBool());
        loftq::SettingsPatch p;
        p.rank = 8;
        doc.editCells({QPoint(0, 0), QPoint(3, 2)}, p, "r8");
        results.start(doc.resolved());
        QTest::qWait(1);
        doc.clear();
        open(doc);

        RulesModel rules;
        QAbstractItemModelTester t2(&rules, QAbstractItemModelTester::FailureReportingMode::QtTest);
        loftq::PlanRule r;
        r.pattern = "*down_proj*";
        r.set.rank = 32;
        rules.setRules({r, r});
        QVERIFY(rules.setData(rules.index(0, RulesModel::Rank), 64));
        QVERIFY(rules.setData(rules.index(1, RulesModel::Layers), "2-"));
        QCOMPARE(rules.index(1, RulesModel::Layers).data().toString(), QString("2-"));
        QVERIFY(rules.setData(rules.index(1, RulesModel::Regex), int(Qt::Checked), Qt::CheckStateRole) == false);  // "*down..." is no regex
        rules.setRules({});
    }

    void mouseSelection() {
        PlanDocument doc;
        open(doc);
        PlanGridView view(&doc);
        view.resize(700, 300);
        showActive(view);
        QSignalSpy spy(&view, &PlanGridView::cellSelectionChanged);
        QWidget* vp = view.viewport();
        QTest::mouseClick(vp, Qt::LeftButton, Qt::NoModifier, centre(view, 1, 2));
        QCOMPARE(view.selectedCells(), QList<QPoint>({QPoint(2, 1)}));
        QVERIFY(spy.count() >= 1);
        QCOMPARE(spy.last().at(0).value<QList<QPoint>>(), QList<QPoint>({QPoint(2, 1)}));
        QTest::mouseClick(vp, Qt::LeftButton, Qt::ControlModifier, centre(view, 3, 5));
        QCOMPARE(view.selectedCells(), QList<QPoint>({QPoint(2, 1), QPoint(5, 3)}));
        QTest::mouseClick(vp, Qt::LeftButton, Qt::ControlModifier, centre(view, 1, 2));   // toggles off
        QCOMPARE(view.selectedCells(), QList<QPoint>({QPoint(5, 3)}));
        QTest::mouseClick(vp, Qt::LeftButton, Qt::NoModifier, centre(view, 0, 0));
        QTest::mouseClick(vp, Qt::LeftButton, Qt::ShiftModifier, centre(view, 1, 2));     // rectangle
        QList<QPoint> rect;
        for (int l = 0; l <= 1; ++l)
            for (int c = 0; c <= 2; ++c) rect << QPoint(c, l);
        QCOMPARE(view.selectedCells(), rect);

        // Header clicks: a module column, Ctrl adds another, a layer row replaces.
        QHeaderView* h = view.horizontalHeader();
        auto hpos = [h](int c) { return QPoint(h->sectionViewportPosition(c) + h->sectionSize(c) / 2, h->height() / 2); };
        QTest::mouseClick(h->viewport(), Qt::LeftButton, Qt::NoModifier, hpos(3));
        QList<QPoint> col3, col36;
        for (int l = 0; l < 4; ++l) col3 << QPoint(3, l);
        for (int l = 0; l < 4; ++l) col36 << QPoint(3, l) << QPoint(6, l);
        QCOMPARE(view.selectedCells(), col3);
        QTest::mouseClick(h->viewport(), Qt::LeftButton, Qt::ControlModifier, hpos(6));
        QCOMPARE(view.selectedCells(), col36);
        QHeaderView* vh = view.verticalHeader();
        QTest::mouseClick(vh->viewport(), Qt::LeftButton, Qt::NoModifier,
                          QPoint(vh->width() / 2, vh->sectionViewportPosition(2) + vh->sectionSize(2) / 2));
        QList<QPoint> row2;
        for (int c = 0; c < 7; ++c) row2 << QPoint(c, 2);
        QCOMPARE(view.selectedCells(), row2);
        QTest::mouseClick(vh->viewport(), Qt::LeftButton, Qt::ShiftModifier,
                          QPoint(vh->width() / 2, vh->sectionViewportPosition(3) + vh->sectionSize(3) / 2));
        QCOMPARE(view.selectedCells().size(), 14);

        // Keyboard: Shift+arrows extend from the current cell; Ctrl+A selects all.
        QTest::mouseClick(vp, Qt::LeftButton, Qt::NoModifier, centre(view, 1, 1));
        QTest::keyClick(&view, Qt::Key_Right, Qt::ShiftModifier);
        QTest::keyClick(&view, Qt::Key_Down, Qt::ShiftModifier);
        QCOMPARE(view.selectedCells(), QList<QPoint>({QPoint(1, 1), QPoint(2, 1), QPoint(1, 2), QPoint(2, 2)}));
        QTest::keyClick(&view, Qt::Key_Left);
        QCOMPARE(view.selectedCells(), QList<QPoint>({QPoint(1, 2)}));
        QTest::keyClick(&view, Qt::Key_A, Qt::ControlModifier);
        QCOMPARE(view.selectedCells().size(), 28);
        view.selectCells({QPoint(4, 0), QPoint(0, 3)});
        QCOMPARE(view.selectedCells(), QList<QPoint>({QPoint(4, 0), QPoint(0, 3)}));

        // Right-click inside the selection keeps it; on another cell selects that cell.
        QContextMenuEvent inside(QContextMenuEvent::Mouse, centre(view, 0, 4), vp->mapToGlobal(centre(view, 0, 4)));
        QApplication::sendEvent(vp, &inside);
        QCOMPARE(view.selectedCells().size(), 2);
        QTRY_VERIFY(view.cellMenu()->isVisible());
        view.cellMenu()->hide();
        QContextMenuEvent outside(QContextMenuEvent::Mouse, centre(view, 2, 6), vp->mapToGlobal(centre(view, 2, 6)));
        QApplication::sendEvent(vp, &outside);
        QCOMPARE(view.selectedCells(), QList<QPoint>({QPoint(6, 2)}));
        QVERIFY(view.editAction("rank_32")->isEnabled());
        view.cellMenu()->hide();
    }

    void editBar() {
        PlanDocument doc;
        open(doc);
        QWidget w;
        auto* view = new PlanGridView(&doc);
        auto* bar = new PlanEditBar(&doc, view);
        auto* lay = new QVBoxLayout(&w);
        lay->addWidget(bar);
        lay->addWidget(view);
        QList<QPoint> cells = {QPoint(0, 0), QPoint(6, 1), QPoint(2, 3)};
        view->selectCells(cells);
        QCOMPARE(bar->quantCombo()->currentData().toInt(), int(loftq::QuantKind::NF4));
        QCOMPARE(bar->rankSpin()->value(), 16);
        QVERIFY(bar->selectionLabel()->text().contains("3"));
        Snapshot before = snapshot(doc);
        std::string dump = planDump(doc);
        int count = doc.undoStack()->count();
        QVERIFY(!bar->pending());
        QCOMPARE(bar->applyAction()->text(), QString("Apply"));
        bar->quantCombo()->setCurrentIndex(bar->quantCombo()->findData(int(loftq::QuantKind::INT3)));
        // A changed field is marked as not applied yet (nothing changes in the plan until Apply).
        QVERIFY(bar->pending());
        QVERIFY(bar->applyAction()->text().contains(QString::fromUtf8("•")));
        QVERIFY2(bar->selectionLabel()->text().contains("not applied"), qPrintable(bar->selectionLabel()->text()));
        QCOMPARE(planDump(doc), dump);
        bar->blockCombo()->setCurrentIndex(bar->blockCombo()->findData(128));
        bar->rankSpin()->setValue(48);
        // T typed as 300 is not read as 30: it stays 300, is refused with a reason, Apply is off.
        bar->itersSpin()->clear();
        QTest::keyClicks(bar->itersSpin(), "300");
        QCOMPARE(bar->itersSpin()->value(), 300);
        QVERIFY(!bar->problem().isEmpty());
        QVERIFY(!bar->applyAction()->isEnabled());
        QVERIFY(bar->selectionLabel()->text().contains("at most 100"));
        bar->itersSpin()->setValue(2);
        QVERIFY(bar->problem().isEmpty() && bar->applyAction()->isEnabled());
        bar->applyAction()->trigger();
        QVERIFY(!bar->pending());   // applied: the fields are the selection's settings again
        QCOMPARE(bar->applyAction()->text(), QString("Apply"));
        expectOnly(doc, before, cells, [](const Settings& s) {
            loftq::WeightSettings n = *s;
            n.quant = loftq::QuantKind::INT3;
            n.block = 128;
            n.rank = 48;
            n.iters = 2;
            return Settings(n);
        });
        checkUndoRedo(doc, dump, count);
        // The controls follow the first selected cell; a mixed selection says so.
        view->selectCells({QPoint(0, 0), QPoint(1, 0)});
        QCOMPARE(bar->rankSpin()->value(), 48);
        QVERIFY(bar->selectionLabel()->text().contains("mixed"));
        // Keep from the bar.
        before = snapshot(doc);
        dump = planDump(doc);
        count = doc.undoStack()->count();
        bar->quantCombo()->setCurrentIndex(bar->quantCombo()->findData(kQuantKeep));
        QVERIFY(!bar->rankSpin()->isEnabled());
        bar->apply();
        expectOnly(doc, before, {QPoint(0, 0), QPoint(1, 0)}, [](const Settings&) { return Settings(); });
        checkUndoRedo(doc, dump, count);
        QCOMPARE(view->gridModel()->index(0, 0).data(PlanGridModel::QuantRole).toInt(), kQuantKeep);

        // Return in one of the bar's controls applies.
        showActive(w);
        view->selectCells({QPoint(3, 2)});
        bar->quantCombo()->setCurrentIndex(bar->quantCombo()->findData(int(loftq::QuantKind::NF3)));
        bar->rankSpin()->setFocus();
        bar->rankSpin()->setValue(20);
        count = doc.undoStack()->count();
        QTest::keyClick(bar->rankSpin(), Qt::Key_Return);
        QCOMPARE(doc.undoStack()->count(), count + 1);
        QCOMPARE(view->gridModel()->index(2, 3).data(PlanGridModel::RankRole).toInt(), 20);
        QCOMPARE(view->gridModel()->index(2, 3).data(PlanGridModel::QuantRole).toInt(), int(loftq::QuantKind::NF3));
    }

    void contextMenuActions() {
        PlanDocument doc;
        open(doc);
        PlanGridView view(&doc);
        QList<QPoint> cells = {QPoint(1, 0), QPoint(1, 1), QPoint(5, 2)};
        view.selectCells(cells);
        struct Case {
            const char* action;
            std::function<Settings(const Settings&)> fn;
        };
        auto with = [](std::function<void(loftq::WeightSettings&)> f) {
            return [f](const Settings& s) {
                loftq::WeightSettings n = s ? *s : loftq::WeightSettings{};
                f(n);
                return Settings(n);
            };
        };
        const Case cases[] = {
            {"quant_int3", with([](auto& n) { n.quant = loftq::QuantKind::INT3; })},
            {"quant_nf2", with([](auto& n) { n.quant = loftq::QuantKind::NF2; })},
            {"rank_64", with([](auto& n) { n.rank = 64; })},
            {"iters_0", with([](auto& n) { n.iters = 0; })},
            {"block_128", with([](auto& n) { n.block = 128; })},
            {"rank_double", with([](auto& n) { n.rank *= 2; })},
            {"rank_halve", with([](auto& n) { n.rank /= 2; })},
            {"quant_keep", [](const Settings&) { return Settings(); }},
            {"quant_int8", with([](auto& n) { n.quant = loftq::QuantKind::INT8; })},
        };
        for (const Case& c : cases) {
            QAction* a = view.editAction(c.action);
            QVERIFY2(a, c.action);
            QVERIFY2(a->isEnabled(), c.action);
            Snapshot before = snapshot(doc);
            std::string dump = planDump(doc);
            int count = doc.undoStack()->count();
            a->trigger();
            expectOnly(doc, before, cells, c.fn);
            checkUndoRedo(doc, dump, count);
        }
        // After "keep" then INT8 the cells are targets again with the override's earlier fields
        // gone (keep resets the override): INT8 on the plan defaults.
        QCOMPARE(QString::fromStdString(summary(snapshot(doc).at(doc.tensors()[size_t(doc.tensorAt(0, 1))].name))),
                 QString("int8/b64 r16 T5 randomized"));
        // Clear overrides: back to what defaults + rules give.
        std::string dump = planDump(doc);
        view.editAction("clear_overrides")->trigger();
        QVERIFY(doc.plan().overrides.empty());
        PlanDocument fresh;
        open(fresh);
        for (auto& [n, s] : snapshot(fresh)) QCOMPARE(summary(snapshot(doc).at(n)), summary(s));
        doc.undoStack()->undo();
        QCOMPARE(planDump(doc), dump);
        // Nothing selected: actions disabled, no edit.
        view.selectCells({});
        QVERIFY(!view.editAction("quant_nf4")->isEnabled());
        QCOMPARE(view.cellMenu()->actions().size() >= 5, true);
    }

    void shortcuts() {
        PlanDocument doc;
        open(doc);
        PlanGridView view(&doc);
        view.resize(700, 300);
        showActive(view);
        view.setFocus();
        QList<QPoint> cells = {QPoint(3, 0), QPoint(3, 1), QPoint(4, 1)};
        view.selectCells(cells);
        auto quant = [](loftq::QuantKind k) {
            return [k](const Settings& s) {
                loftq::WeightSettings n = s ? *s : loftq::WeightSettings{};
                n.quant = k;
                return Settings(n);
            };
        };
        auto rank = [](int f2) {   // f2: 2 doubles, 0 halves
            return [f2](const Settings& s) {
                loftq::WeightSettings n = *s;
                n.rank = f2 ? n.rank * 2 : n.rank / 2;
                return Settings(n);
            };
        };
        struct Case {
            Qt::Key key;
            Qt::KeyboardModifiers mods;
            std::function<Settings(const Settings&)> fn;
        };
        const Case cases[] = {
            {Qt::Key_2, Qt::NoModifier, quant(loftq::QuantKind::NF2)},
            {Qt::Key_3, Qt::NoModifier, quant(loftq::QuantKind::NF3)},
            {Qt::Key_8, Qt::NoModifier, quant(loftq::QuantKind::INT8)},
            {Qt::Key_4, Qt::NoModifier, quant(loftq::QuantKind::NF4)},
            {Qt::Key_2, Qt::ShiftModifier, quant(loftq::QuantKind::INT2)},
            {Qt::Key_3, Qt::AltModifier, quant(loftq::QuantKind::INT3)},
            {Qt::Key_4, Qt::AltModifier, quant(loftq::QuantKind::INT4)},
            {Qt::Key_Plus, Qt::NoModifier, rank(2)},
            {Qt::Key_Minus, Qt::NoModifier, rank(0)},
            {Qt::Key_K, Qt::NoModifier, [](const Settings&) { return Settings(); }},
        };
        for (const Case& c : cases) {
            Snapshot before = snapshot(doc);
            std::string dump = planDump(doc);
            int count = doc.undoStack()->count();
            QTest::keyClick(&view, c.key, c.mods);
            expectOnly(doc, before, cells, c.fn);
            checkUndoRedo(doc, dump, count);
            QCOMPARE(view.selectedCells(), cells);   // shortcuts do not move the selection
        }
        // Rank +/- over cells of different ranks: one undo step, each rank doubled, clamp at 1024.
        view.selectCells(cells);
        QTest::keyClick(&view, Qt::Key_4);   // targets again
        loftq::SettingsPatch p;
        p.rank = 1000;
        doc.editCells({QPoint(3, 0)}, p, "r1000");
        Snapshot before = snapshot(doc);
        std::string dump = planDump(doc);
        int count = doc.undoStack()->count();
        QTest::keyClick(&view, Qt::Key_Plus);
        expectOnly(doc, before, cells, [](const Settings& s) {
            loftq::WeightSettings n = *s;
            n.rank = std::min(1024, n.rank * 2);
            return Settings(n);
        });
        checkUndoRedo(doc, dump, count);
        // Delete clears the overrides of the selected cells only.
        loftq::SettingsPatch other;
        other.iters = 1;
        doc.editCells({QPoint(0, 0)}, other, "T1");
        QTest::keyClick(&view, Qt::Key_Delete);
        QCOMPARE(doc.plan().overrides.size(), size_t(1));
        QVERIFY(doc.plan().overrides.count(doc.tensors()[size_t(doc.tensorAt(0, 0))].name));
    }

    void rulesPanel() {
        PlanDocument doc;
        open(doc);
        RulesPanel panel(&doc);
        PlanGridModel grid(&doc, nullptr);
        connect(&panel, &RulesPanel::previewChanged, &grid, &PlanGridModel::setHighlight);
        QSignalSpy preview(&panel, &RulesPanel::previewChanged);
        RulesModel* m = panel.rulesModel();

        std::string dump0 = planDump(doc);
        panel.addRule();
        QCOMPARE(int(doc.plan().rules.size()), 1);
        QCOMPARE(m->rowCount(), 1);
        QCOMPARE(panel.currentRule(), 0);
        // Make it "down_proj in layers 2 and up: rank 40, T 1" through the model (as the delegate does).
        QVERIFY(m->setData(m->index(0, RulesModel::Pattern), "*mlp.down_proj.weight"));
        QVERIFY(m->setData(m->index(0, RulesModel::Layers), "2-"));
        QVERIFY(m->setData(m->index(0, RulesModel::Rank), 40));
        QVERIFY(m->setData(m->index(0, RulesModel::Iters), 1));
        QCOMPARE(int(doc.plan().rules.size()), 1);
        const loftq::PlanRule& r = doc.plan().rules[0];
        QCOMPARE(r.pattern, std::string("*mlp.down_proj.weight"));
        QCOMPARE(r.layer_min, std::optional<int>(2));
        QVERIFY(!r.layer_max);
        // Preview = the engine's rule_matches, and the grid highlights exactly those cells.
        std::vector<bool> want = loftq::rule_matches(r, doc.tensors());
        QVERIFY(preview.count() > 0);
        QCOMPARE(preview.last().at(0).value<std::vector<bool>>(), want);
        int n = 0;
        for (size_t t = 0; t < want.size(); ++t) {
            n += want[t];
            QPoint c = doc.cellOfTensor(int(t));
            if (c.x() >= 0) QCOMPARE(grid.index(c.y(), c.x()).data(PlanGridModel::HighlightRole).toBool(), bool(want[t]));
        }
        QCOMPARE(n, 2);
        QVERIFY(panel.previewLabel()->text().contains("2 tensors"));
        QVERIFY(panel.previewLabel()->text().contains("2 on the grid"));
        // The resolved plan changed for exactly those weights.
        for (size_t t = 0; t < want.size(); ++t) {
            int w = doc.weightOfTensor(int(t));
            QVERIFY(w >= 0 || doc.cellOfTensor(int(t)).x() < 0);
            if (w < 0) continue;
            QCOMPARE(doc.resolved().weights[size_t(w)].s.rank, want[t] ? 40 : 16);
            QCOMPARE(doc.resolved().weights[size_t(w)].s.iters, want[t] ? 1 : 5);
        }

        // Invalid input is refused and the document is unchanged.
        std::string dump1 = planDump(doc);
        int count = doc.undoStack()->count();
        QSignalSpy refused(m, &RulesModel::refused);
        QVERIFY(!m->setData(m->index(0, RulesModel::Regex), int(Qt::Checked), Qt::CheckStateRole));   // "*mlp..." is a bad regex
        QVERIFY(!m->setData(m->index(0, RulesModel::Layers), "3-1"));
        QVERIFY(!m->setData(m->index(0, RulesModel::Layers), "x"));
        QVERIFY(!m->setData(m->index(0, RulesModel::Pattern), ""));
        QVERIFY(!m->setData(m->index(0, RulesModel::Quant), "nf5"));
        QVERIFY(!m->setData(m->index(0, RulesModel::Block), 0));
        QCOMPARE(refused.count(), 6);
        QVERIFY(refused.first().at(0).toString().contains("regex"));
        QCOMPARE(planDump(doc), dump1);
        QCOMPARE(doc.undoStack()->count(), count);
        QVERIFY(!panel.messageLabel()->isHidden());
        QVERIFY(panel.messageLabel()->text().contains("Rule 1 not changed"));
        QCOMPARE(m->index(0, RulesModel::Pattern).data().toString(), QString("*mlp.down_proj.weight"));
        // A valid regex rule.
        QVERIFY(m->setData(m->index(0, RulesModel::Pattern), R"(layers\.[01]\.self_attn\.(q|k)_proj)"));
        QVERIFY(m->setData(m->index(0, RulesModel::Layers), ""));
        QVERIFY(m->setData(m->index(0, RulesModel::Regex), int(Qt::Checked), Qt::CheckStateRole));
        QVERIFY(m->setData(m->index(0, RulesModel::Quant), "int4"));
        QVERIFY(panel.messageLabel()->isHidden());
        QCOMPARE(preview.last().at(0).value<std::vector<bool>>(), loftq::rule_matches(doc.plan().rules[0], doc.tensors()));
        QVERIFY(panel.previewLabel()->text().contains("4 tensors"));

        // Editing through the delegate: the Rank spin box.
        panel.resize(800, 300);
        panel.show();
        QVERIFY(QTest::qWaitForWindowExposed(&panel));
        QModelIndex ri = m->index(0, RulesModel::Rank);
        panel.table()->setCurrentIndex(ri);
        panel.table()->edit(ri);
        auto* spin = panel.table()->viewport()->findChild<QSpinBox*>();
        QVERIFY(spin);
        QCOMPARE(spin->value(), 40);
        spin->setValue(24);
        QTest::keyClick(spin, Qt::Key_Enter);
        QTRY_COMPARE(*doc.plan().rules[0].set.rank, 24);   // the delegate commits queued

        // Add / Up / Down / Remove are one undo step each; undo of all restores the first plan.
        panel.addRule();
        QCOMPARE(int(doc.plan().rules.size()), 2);
        QCOMPARE(panel.currentRule(), 1);
        panel.moveRule(-1);
        QCOMPARE(panel.currentRule(), 0);
        QCOMPARE(doc.plan().rules[1].pattern, std::string(R"(layers\.[01]\.self_attn\.(q|k)_proj)"));
        panel.removeRule();
        QCOMPARE(int(doc.plan().rules.size()), 1);
        while (doc.undoStack()->canUndo()) doc.undoStack()->undo();
        QCOMPARE(planDump(doc), dump0);
        QCOMPARE(m->rowCount(), 0);
        QVERIFY(preview.last().at(0).value<std::vector<bool>>().empty());
    }

    void jsonRoundTripAndBudget() {
        PlanDocument doc;
        open(doc);
        PlanGridView view(&doc);
        view.selectCells({QPoint(0, 0), QPoint(1, 0)});
        view.editAction("quant_nf2")->trigger();
        view.editAction("quant_keep")->trigger();        // keep after a quantizer: must survive JSON
        view.selectCells({QPoint(6, 3), QPoint(5, 3), QPoint(2, 1)});
        view.editAction("quant_int8")->trigger();
        view.editAction("rank_64")->trigger();
        view.editAction("block_32")->trigger();
        view.editAction("iters_0")->trigger();
        loftq::PlanRule r;
        r.pattern = "*gate_proj*";
        r.layer_min = 1;
        r.layer_max = 2;
        r.set.quant = loftq::QuantKind::NF3;
        r.set.rank = 8;
        loftq::PlanRule lm;
        lm.pattern = "lm_head.weight";
        lm.set.target = true;
        doc.setRules({r, lm}, "rules");

        std::string path = loftq::test::make_temp_dir("grid-plan") + "/edited.loftq.json";
        loftq::save_plan(doc.plan(), path);
        loftq::Plan back = loftq::load_plan(path);
        loftq::ResolvedPlan res = loftq::resolve_plan(back, metas_);
        QCOMPARE(res.weights.size(), doc.resolved().weights.size());
        for (size_t i = 0; i < res.weights.size(); ++i) {
            QCOMPARE(res.weights[i].name, doc.resolved().weights[i].name);
            QCOMPARE(loftq::settings_summary(res.weights[i].s), loftq::settings_summary(doc.resolved().weights[i].s));
        }
        QCOMPARE(doc.weightAt(0, 0), -1);   // kept
        QVERIFY(doc.weightOfTensor(doc.tensorAt(0, 0)) < 0);

        // Budget: the document's size is the engine's plan_size of the engine's resolution.
        loftq::PlanSize want = loftq::plan_size(loftq::resolve_plan(doc.plan(), metas_), metas_);
        const loftq::PlanSize& got = doc.size();
        QCOMPARE(got.total_bytes, want.total_bytes);
        QCOMPARE(got.quantized_bytes, want.quantized_bytes);
        QCOMPARE(got.lora_bytes, want.lora_bytes);
        QCOMPARE(got.untouched_bytes, want.untouched_bytes);
        QCOMPARE(got.fp16_bytes, want.fp16_bytes);
        QCOMPARE(got.params, want.params);
        QCOMPARE(got.target_params, want.target_params);
        QCOMPARE(got.lora_params, want.lora_params);
    }

    void overviewFilter() {
        PlanDocument doc;
        open(doc);
        ModelOverview ov(&doc);
        ov.setFacts({{"model_type", "llama"}, {"layers", "4"}});
        QAbstractItemModelTester t(ov.tensorModel(), QAbstractItemModelTester::FailureReportingMode::QtTest);
        QCOMPARE(ov.proxy()->rowCount(), int(metas_.size()));
        ov.filterEdit()->setText("MLP.DOWN");
        QCOMPARE(ov.proxy()->rowCount(), 4);
        ov.filterEdit()->setText("layers.1.");
        QCOMPARE(ov.proxy()->rowCount(), 9);   // 7 projections + 2 norms
        ov.filterEdit()->setText("layers.1.self_attn.q_proj");
        QCOMPARE(ov.proxy()->rowCount(), 1);
        QModelIndex settings = ov.proxy()->index(0, TensorTableModel::Settings);
        QCOMPARE(settings.data().toString(), QString("nf4/b64 r16 T5 randomized"));
        loftq::SettingsPatch p;
        p.rank = 12;
        doc.editCells({doc.cellOfTensor(doc.tensorAt(1, doc.columns().indexOf("q_proj")))}, p, "r12");
        QCOMPARE(ov.proxy()->index(0, TensorTableModel::Settings).data().toString(), QString("nf4/b64 r12 T5 randomized"));
        ov.filterEdit()->clear();
        QCOMPARE(ov.proxy()->rowCount(), int(metas_.size()));
    }

    void runErrors() {
        PlanDocument doc;
        open(doc);
        RunResults results;
        PlanGridView view(&doc, &results);
        results.start(doc.resolved());
        loftq::QuantizeResult qr;
        qr.plan = doc.resolved();
        for (size_t i = 0; i < qr.plan.weights.size(); ++i) {
            loftq::WeightResult w;
            w.plan = qr.plan.weights[i];
            w.baseline = 0.1;
            w.final_error = 0.1 - 0.001 * double(i);
            w.steps.push_back({1, w.final_error, 0.0, w.baseline});
            qr.weights.push_back(w);
        }
        results.finish(qr);
        int w = doc.weightAt(2, 3);
        QModelIndex i = view.gridModel()->index(2, 3);
        QTRY_VERIFY(std::isfinite(i.data(PlanGridModel::ErrorRole).toDouble()));
        QCOMPARE(i.data(PlanGridModel::ErrorRole).toDouble(), 0.1 - 0.001 * w);
        QCOMPARE(i.data(PlanGridModel::BaselineRole).toDouble(), 0.1);
        QString tip = i.data(Qt::ToolTipRole).toString();
        QVERIFY2(tip.contains("final error " + QString::number(0.1 - 0.001 * w, 'g', 5)), qPrintable(tip));
        QVERIFY(tip.contains("QLoRA baseline 0.1"));
        results.clear();
        QTRY_VERIFY(std::isnan(i.data(PlanGridModel::ErrorRole).toDouble()));
    }

    // Not a check: PNGs for a human look (LOFTQ_GRID_CHECK_DIR=/tmp/grid-check).
    void renderForLooking() {
        QString out = qEnvironmentVariable("LOFTQ_GRID_CHECK_DIR");
        if (out.isEmpty()) QSKIP("LOFTQ_GRID_CHECK_DIR not set");
        QDir().mkpath(out);
        PlanDocument doc;
        open(doc);
        RunResults results;
        QWidget w;
        auto* view = new PlanGridView(&doc, &results);
        auto* bar = new PlanEditBar(&doc, view);
        auto* legend = new QuantLegend;
        auto* lay = new QVBoxLayout(&w);
        lay->addWidget(bar);
        lay->addWidget(legend);
        lay->addWidget(view);
        using K = loftq::QuantKind;
        const K ks[] = {K::NF4, K::NF3, K::NF2, K::INT2, K::INT3, K::INT4, K::INT8};
        for (int c = 0; c < 7; ++c) {
            loftq::SettingsPatch p;
            p.quant = ks[c];
            p.rank = 4 << c;
            doc.editCells({QPoint(c, 1)}, p, "q");
        }
        view->selectCells({QPoint(0, 3), QPoint(1, 3)});
        view->keepSelected();
        results.start(doc.resolved());
        loftq::QuantizeResult qr;
        qr.plan = doc.resolved();
        for (size_t i = 0; i < qr.plan.weights.size(); ++i) {
            loftq::WeightResult wr;
            wr.plan = qr.plan.weights[i];
            wr.baseline = 0.1;
            wr.final_error = i == 5 ? 0.12 : 0.1 * double((i * 37) % 100) / 100.0;
            qr.weights.push_back(wr);
        }
        results.finish(qr);
        RulesPanel panel(&doc);
        connect(&panel, &RulesPanel::previewChanged, view->gridModel(), &PlanGridModel::setHighlight);
        panel.addRule();
        panel.rulesModel()->setData(panel.rulesModel()->index(0, RulesModel::Pattern), "*mlp.up_proj.weight");
        panel.rulesModel()->setData(panel.rulesModel()->index(0, RulesModel::Layers), "0-2");
        panel.rulesModel()->setData(panel.rulesModel()->index(0, RulesModel::Rank), 32);
        panel.addRule();
        panel.rulesModel()->setData(panel.rulesModel()->index(1, RulesModel::Pattern), "lm_head.weight");
        panel.rulesModel()->setData(panel.rulesModel()->index(1, RulesModel::Target), "target");
        panel.setCurrentRule(0);
        panel.rulesModel()->setData(panel.rulesModel()->index(0, RulesModel::Regex), int(Qt::Checked), Qt::CheckStateRole);
        view->selectCells({QPoint(4, 0), QPoint(5, 0), QPoint(4, 1)});
        w.resize(w.sizeHint().expandedTo(QSize(640, 300)));
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QTest::qWait(20);
        QVERIFY(w.grab().save(out + "/grid.png"));
        panel.resize(720, 260);
        panel.show();
        QVERIFY(QTest::qWaitForWindowExposed(&panel));
        QVERIFY(panel.grab().save(out + "/rules.png"));
        ModelOverview ov(&doc);
        ov.setFacts({{"model_type", "llama"}, {"layers", "4"}, {"hidden", "64"}});
        ov.resize(760, 480);
        ov.show();
        QVERIFY(QTest::qWaitForWindowExposed(&ov));
        QVERIFY(ov.grab().save(out + "/overview.png"));
        QFont small = w.font();
        small.setPointSizeF(small.pointSizeF() * 0.75);
        w.setFont(small);
        w.resize(420, 200);
        QTest::qWait(20);
        QVERIFY(w.grab().save(out + "/grid-small.png"));
    }
};

QTEST_MAIN(TestGrid)
#include "test_grid.moc"
