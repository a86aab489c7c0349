// run_on.cpp: see run_on.h.
#include "studio/run_on.h"

#include <QComboBox>
#include <QGridLayout>
#include <QLabel>
#include <QLineEdit>
#include <QSettings>
#include <QSpinBox>

#include "core/error.h"

namespace studio {

namespace {
constexpr const char* kRecentKey = "runOn/recent";
constexpr int kRecentMax = 8;
}  // namespace

QString RunOnBox::thisMachine() { return tr("This machine"); }

RunOnBox::RunOnBox(QWidget* parent) : QWidget(parent) {
    auto* g = new QGridLayout(this);
    g->setContentsMargins(0, 0, 0, 0);
    combo_ = new QComboBox(this);
    combo_->setEditable(true);
    combo_->setInsertPolicy(QComboBox::NoInsert);
    combo_->setMinimumContentsLength(12);
    combo_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    combo_->addItem(thisMachine());
    for (const QString& t : QSettings().value(kRecentKey).toStringList())
        if (!t.isEmpty() && combo_->findText(t) < 0) combo_->addItem(t);
    combo_->setToolTip(tr("Where the run goes: this machine, or a launcher command template that runs the same loftq "
                          "command elsewhere, e.g.\n  mpirun --hostfile hosts -np {n}\n  srun -N {nodes} -n {n}\n  ssh gpu-box\n"
                          "  ssh gpu-box mpirun -np {n}\nThe model and data paths must exist on the target."));
    ranks_ = new QSpinBox(this);
    ranks_->setRange(1, 4096);
    ranks_->setToolTip(tr("{n}: the processes the launcher starts (data-parallel ranks for a fine-tune: they must divide accum)"));
    remoteDir_ = new QLineEdit(this);
    remoteDir_->setPlaceholderText(tr("target folder (default ~/loftq-runs/<run>)"));
    remoteDir_->setToolTip(tr("ssh: the run folder on the target; its files are fetched into the local run folder at the end"));
    remoteLoftq_ = new QLineEdit(this);
    remoteLoftq_->setPlaceholderText(tr("loftq"));
    remoteLoftq_->setToolTip(tr("The loftq program on the target (a name on its PATH, or a path)"));
    note_ = new QLabel(this);
    note_->setWordWrap(true);
    note_->setStyleSheet("color: palette(mid)");
    g->addWidget(combo_, 0, 0, 1, 2);
    g->addWidget(new QLabel(tr("ranks"), this), 0, 2);
    g->addWidget(ranks_, 0, 3);
    g->addWidget(remoteDir_, 1, 0);
    g->addWidget(remoteLoftq_, 1, 1, 1, 3);
    g->addWidget(note_, 2, 0, 1, 4);
    g->setColumnStretch(0, 3);
    g->setColumnStretch(1, 1);
    connect(combo_, &QComboBox::currentTextChanged, this, [this] { validate(); emit changed(); });
    connect(ranks_, &QSpinBox::valueChanged, this, [this] { validate(); emit changed(); });
    validate();
}

bool RunOnBox::local() const {
    const QString t = combo_->currentText().trimmed();
    return t.isEmpty() || t == thisMachine();
}

loftq::RunTarget RunOnBox::target() const {
    loftq::RunTarget t;
    if (!local()) t.templ = combo_->currentText().trimmed().toStdString();
    t.ranks = ranks_->value();
    t.remote_dir = remoteDir_->text().trimmed().toStdString();
    if (!remoteLoftq_->text().trimmed().isEmpty()) t.loftq = remoteLoftq_->text().trimmed().toStdString();
    if (!t.templ.empty()) loftq::parse_template(t);  // throws with the reason
    return t;
}

void RunOnBox::setTemplate(const QString& templ) { combo_->setEditText(templ.isEmpty() ? thisMachine() : templ); }
void RunOnBox::setRanks(int n) { ranks_->setValue(n); }
void RunOnBox::setRemoteDir(const QString& dir) { remoteDir_->setText(dir); }
void RunOnBox::setRemoteLoftq(const QString& program) { remoteLoftq_->setText(program); }

void RunOnBox::remember() {
    if (local()) return;
    const QString t = combo_->currentText().trimmed();
    QStringList recent = QSettings().value(kRecentKey).toStringList();
    recent.removeAll(t);
    recent.prepend(t);
    while (recent.size() > kRecentMax) recent.removeLast();
    QSettings().setValue(kRecentKey, recent);
    if (combo_->findText(t) < 0) combo_->insertItem(1, t);
}

void RunOnBox::validate() {
    const bool remote = !local();
    ranks_->setEnabled(remote);
    remoteLoftq_->setEnabled(remote);
    try {
        const loftq::RunTarget t = target();
        remoteDir_->setEnabled(remote && loftq::parse_template(t).over_ssh());
        note_->setText(remote ? tr("runs: %1 loftq …").arg(QString::fromStdString(loftq::expand_template(t))) : QString());
        note_->setStyleSheet("color: palette(mid)");
    } catch (const std::exception& e) {
        remoteDir_->setEnabled(false);
        note_->setText(QString::fromStdString(e.what()));
        note_->setStyleSheet("color: #b00020");
    }
}

}  // namespace studio
