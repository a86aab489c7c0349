// rules_panel.cpp: see rules_panel.h.
#include "rules_panel.h"

#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QTableView>
#include <QVBoxLayout>

#include "core/error.h"
#include "plan_document.h"
#include "rules_model.h"

namespace studio {

RulesPanel::RulesPanel(PlanDocument* doc, QWidget* parent) : QWidget(parent), doc_(doc), model_(new RulesModel(this)) {
    table_ = new QTableView(this);
    table_->setModel(model_);
    table_->setItemDelegate(new RulesDelegate(table_));
    table_->setSelectionBehavior(QAbstractItemView::SelectRows);
    table_->setSelectionMode(QAbstractItemView::SingleSelection);
    table_->setEditTriggers(QAbstractItemView::DoubleClicked | QAbstractItemView::EditKeyPressed | QAbstractItemView::AnyKeyPressed);
    table_->verticalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    table_->horizontalHeader()->setSectionResizeMode(QHeaderView::Interactive);
    table_->horizontalHeader()->setStretchLastSection(true);
    table_->setTextElideMode(Qt::ElideMiddle);
    // The pattern gets the room (a stretched first column collapses to nothing in a narrow dock);
    // the small columns fit their header text; a narrow dock scrolls sideways.
    const int ch = fontMetrics().averageCharWidth();
    const QFontMetrics hfm(table_->horizontalHeader()->font());
    table_->horizontalHeader()->setMinimumSectionSize(ch * 4);
    for (int c = RulesModel::Regex; c < RulesModel::ColumnCount; ++c)
        table_->setColumnWidth(c, std::max(ch * 6, hfm.horizontalAdvance(model_->headerData(c, Qt::Horizontal).toString()) + ch * 3));
    table_->setColumnWidth(RulesModel::Quant, ch * 9);
    table_->setColumnWidth(RulesModel::Pattern, ch * 24);

    add_ = new QPushButton(tr("Add"), this);
    remove_ = new QPushButton(tr("Remove"), this);
    up_ = new QPushButton(tr("Up"), this);
    down_ = new QPushButton(tr("Down"), this);
    add_->setToolTip(tr("Add a rule after the current one; later rules win"));
    remove_->setToolTip(tr("Remove the current rule"));
    up_->setToolTip(tr("Move the current rule earlier (rules apply in order, later ones win)"));
    down_->setToolTip(tr("Move the current rule later"));
    preview_ = new QLabel(this);
    preview_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    message_ = new QLabel(this);
    message_->setWordWrap(true);
    message_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    message_->hide();

    auto* buttons = new QHBoxLayout;
    buttons->addWidget(add_);
    buttons->addWidget(remove_);
    buttons->addWidget(up_);
    buttons->addWidget(down_);
    buttons->addStretch(1);
    auto* lay = new QVBoxLayout(this);
    lay->setContentsMargins(0, 0, 0, 0);
    lay->addWidget(table_, 1);
    lay->addWidget(preview_);
    lay->addWidget(message_);
    lay->addLayout(buttons);

    connect(add_, &QPushButton::clicked, this, &RulesPanel::addRule);
    connect(remove_, &QPushButton::clicked, this, &RulesPanel::removeRule);
    connect(up_, &QPushButton::clicked, this, [this] { moveRule(-1); });
    connect(down_, &QPushButton::clicked, this, [this] { moveRule(+1); });
    connect(model_, &RulesModel::refused, this, [this](const QString& why) { showMessage(why, true); });
    connect(model_, &RulesModel::ruleEdited, this, [this](int row) { commit(tr("Edit rule %1").arg(row + 1)); });
    connect(table_->selectionModel(), &QItemSelectionModel::currentRowChanged, this, [this] {
        updatePreview();
        updateButtons();
    });
    connect(doc_, &PlanDocument::planChanged, this, &RulesPanel::reloadFromDoc);
    connect(doc_, &PlanDocument::modelChanged, this, &RulesPanel::updatePreview);
    reloadFromDoc();
}

int RulesPanel::currentRule() const {
    QModelIndex i = table_->selectionModel()->currentIndex();
    return i.isValid() ? i.row() : -1;
}

void RulesPanel::setCurrentRule(int row) {
    if (row < 0 || row >= model_->rowCount()) {
        table_->selectionModel()->clear();
        updatePreview();
        updateButtons();
        return;
    }
    table_->selectionModel()->setCurrentIndex(model_->index(row, RulesModel::Pattern),
                                              QItemSelectionModel::ClearAndSelect | QItemSelectionModel::Rows);
}

void RulesPanel::reloadFromDoc() {
    if (!RulesModel::rulesEqual(model_->rules(), doc_->plan().rules)) {
        int row = currentRule();
        model_->setRules(doc_->plan().rules);   // resets: selection gone
        if (model_->rowCount()) setCurrentRule(std::min(std::max(row, 0), model_->rowCount() - 1));
    }
    updatePreview();
    updateButtons();
}

void RulesPanel::commit(const QString& what) {
    showMessage({}, false);
    doc_->setRules(model_->rules(), what);
}

void RulesPanel::addRule() {
    loftq::PlanRule r;
    QString first = doc_->columns().value(0);
    r.pattern = first.isEmpty() ? std::string("*") : ("*" + first + ".weight").toStdString();
    r.set.quant = doc_->plan().defaults.quant;
    std::vector<loftq::PlanRule> rules = doc_->plan().rules;
    int at = currentRule() >= 0 ? currentRule() + 1 : int(rules.size());
    rules.insert(rules.begin() + at, r);
    showMessage({}, false);
    doc_->setRules(rules, tr("Add rule"));
    setCurrentRule(at);
}

void RulesPanel::removeRule() {
    int row = currentRule();
    std::vector<loftq::PlanRule> rules = doc_->plan().rules;
    if (row < 0 || row >= int(rules.size())) return;
    rules.erase(rules.begin() + row);
    showMessage({}, false);
    doc_->setRules(rules, tr("Remove rule %1").arg(row + 1));
    setCurrentRule(std::min(row, int(rules.size()) - 1));
}

void RulesPanel::moveRule(int delta) {
    int row = currentRule(), to = row + delta;
    std::vector<loftq::PlanRule> rules = doc_->plan().rules;
    if (row < 0 || to < 0 || to >= int(rules.size())) return;
    std::swap(rules[size_t(row)], rules[size_t(to)]);
    showMessage({}, false);
    doc_->setRules(rules, delta < 0 ? tr("Move rule up") : tr("Move rule down"));
    setCurrentRule(to);
}

void RulesPanel::updatePreview() {
    int row = currentRule();
    if (row < 0 || row >= int(model_->rules().size()) || doc_->tensors().empty()) {
        preview_->setText(model_->rowCount() ? tr("Select a rule to see which tensors it matches")
                                             : tr("No rules: every weight uses the defaults and its grid overrides"));
        emit previewChanged({});
        return;
    }
    std::vector<bool> hits;
    try {
        hits = loftq::rule_matches(model_->rules()[size_t(row)], doc_->tensors());
    } catch (const loftq::Error& e) {
        preview_->setText(QString::fromStdString(e.what()));
        emit previewChanged({});
        return;
    }
    int n = 0, on_grid = 0;
    for (size_t i = 0; i < hits.size(); ++i)
        if (hits[i]) {
            ++n;
            if (doc_->cellOfTensor(int(i)).x() >= 0) ++on_grid;
        }
    preview_->setText(tr("Rule %1 matches %2 (%3 on the grid)")
                          .arg(row + 1)
                          .arg(n == 1 ? tr("1 tensor") : tr("%1 tensors").arg(n))
                          .arg(on_grid));
    emit previewChanged(hits);
}

void RulesPanel::updateButtons() {
    int row = currentRule(), n = model_->rowCount();
    remove_->setEnabled(row >= 0);
    up_->setEnabled(row > 0);
    down_->setEnabled(row >= 0 && row + 1 < n);
}

void RulesPanel::showMessage(const QString& text, bool error) {
    message_->setText(text);
    message_->setVisible(!text.isEmpty());
    QPalette pal = palette();
    if (error) pal.setColor(QPalette::WindowText, QColor(0xb0, 0x10, 0x10));
    message_->setPalette(pal);
}

}  // namespace studio
