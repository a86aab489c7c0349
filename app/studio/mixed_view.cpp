// mixed_view.cpp: the Mixed precision panel's widgets (buildUi), its Pareto chart with the
// evaluated plans, the plan evaluation job, and the headless front renderer (--front-png);
// see studio/mixed.h.
#include "studio/mixed.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDateTime>
#include <QFileDialog>
#include <QFileInfo>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSlider>
#include <QSpinBox>
#include <QTableWidget>
#include <QTimer>
#include <QToolButton>
#include <QVBoxLayout>
#include <QtConcurrent>
#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fsutil.h"
#include "plan_document.h"
#include "plot_style.h"
#include "quant/quantizer.h"
#include "studio/job_thread.h"

namespace studio {

namespace {

QString start_name(const std::string& s) {
    return s == "original" ? MixedPanel::tr("original") : s == "qlora" ? MixedPanel::tr("QLoRA init") : MixedPanel::tr("LoftQ init");
}

const loftq::EvalPlanRow* row_of(const loftq::EvalPlanResult& r, const char* start) {
    for (const auto& row : r.rows)
        if (row.start == start) return &row;
    return nullptr;
}

}  // namespace

void MixedPanel::buildUi() {
    auto* lay = new QVBoxLayout(this);
    lay->setContentsMargins(4, 4, 4, 4);
    lay->setSpacing(4);
    const int em = fontMetrics().height();

    // Sweep: button, cancel, the settings' disclosure button, progress, status.
    auto* row2 = new QHBoxLayout;
    sweepButton_ = new QPushButton(tr("Sweep"), this);
    sweepButton_->setObjectName("SweepButton");
    sweepButton_->setToolTip(tr("Measure every target weight at every candidate setting (cached), then the least-damage plan "
                                "for each budget"));
    cancelButton_ = new QPushButton(tr("Cancel"), this);
    settingsButton_ = new QToolButton(this);
    settingsButton_->setText(tr("Settings"));
    settingsButton_->setToolTip(tr("Candidate quantizers and ranks, and the calibration text"));
    settingsButton_->setCheckable(true);
    settingsButton_->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);
    sweepProgress_ = new QProgressBar(this);
    sweepProgress_->setRange(0, 1000);
    sweepProgress_->setTextVisible(true);
    sweepStatus_ = new QLabel(this);
    sweepStatus_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    sweepStatus_->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);   // long text is cut, not widening the dock
    row2->addWidget(sweepButton_);
    row2->addWidget(cancelButton_);
    row2->addWidget(settingsButton_);
    row2->addWidget(sweepProgress_, 1);
    row2->addWidget(sweepStatus_, 2);
    lay->addLayout(row2);
    connect(sweepButton_, &QPushButton::clicked, this, &MixedPanel::startSweep);
    connect(cancelButton_, &QPushButton::clicked, this, &MixedPanel::cancelSweep);

    // Candidates and calibration: open until a sweep arrives (then the status line sums them up
    // and the chart gets the room), and whenever the Settings button is checked.
    settings_ = new QWidget(this);
    auto* form = new QGridLayout(settings_);
    form->setContentsMargins(0, 0, 0, 0);
    form->setHorizontalSpacing(6);
    form->setVerticalSpacing(3);
    quants_ = new QLineEdit("int8,nf4,nf3,nf2", settings_);
    quants_->setToolTip(tr("Candidate quantizers, comma-separated (int2..int8, nf2..nf4)"));
    ranks_ = new QLineEdit("8,16,32,64", settings_);
    ranks_->setToolTip(tr("Candidate LoRA ranks, comma-separated"));
    ranks_->setMaximumWidth(7 * em);
    keep_ = new QCheckBox(tr("keep"), settings_);
    keep_->setChecked(true);
    keep_->setToolTip(tr("Also offer keeping a weight in 16-bit"));
    form->addWidget(new QLabel(tr("Quantizers"), settings_), 0, 0);
    auto* row0 = new QHBoxLayout;
    row0->addWidget(quants_, 2);
    row0->addWidget(new QLabel(tr("ranks"), settings_));
    row0->addWidget(ranks_, 1);
    row0->addWidget(keep_);
    form->addLayout(row0, 0, 1);
    calibFile_ = new QLineEdit(settings_);
    calibFile_->setPlaceholderText(tr("optional: text or JSONL for output errors"));
    calibFile_->setToolTip(tr("Calibration text (or JSONL): the sweep and the runs then also measure each projection's "
                              "output error ‖X(W−Q−BA)ᵀ‖/‖XWᵀ‖ on it"));
    calibBrowse_ = new QPushButton(tr("…"), settings_);
    calibBrowse_->setMaximumWidth(3 * em);
    calibTokens_ = new QSpinBox(settings_);
    calibTokens_->setRange(256, 100000000);
    calibTokens_->setValue(4096);
    calibTokens_->setToolTip(tr("Calibration token budget"));
    form->addWidget(new QLabel(tr("Calibration"), settings_), 1, 0);
    auto* row1 = new QHBoxLayout;
    row1->addWidget(calibFile_, 1);
    row1->addWidget(calibBrowse_);
    row1->addWidget(new QLabel(tr("tokens"), settings_));
    row1->addWidget(calibTokens_);
    form->addLayout(row1, 1, 1);
    lay->addWidget(settings_);
    connect(calibBrowse_, &QPushButton::clicked, this, [this] {
        QSettings s;
        const QString f = QFileDialog::getOpenFileName(this, tr("Calibration text"), s.value("mixed/calib_dir").toString(),
                                                       tr("Text or JSONL (*.txt *.jsonl *.json);;All files (*)"));
        if (f.isEmpty()) return;
        s.setValue("mixed/calib_dir", QFileInfo(f).absolutePath());
        calibFile_->setText(f);
    });
    connect(settingsButton_, &QToolButton::toggled, this, [this](bool on) {
        settings_->setVisible(on);
        settingsButton_->setArrowType(on ? Qt::DownArrow : Qt::RightArrow);
    });
    settingsButton_->setChecked(true);
    settingsButton_->setArrowType(Qt::DownArrow);
    for (QLineEdit* e : {quants_, ranks_, calibFile_})
        connect(e, &QLineEdit::textChanged, this, [this] { updateEnabled(); });
    connect(keep_, &QCheckBox::toggled, this, [this] { updateEnabled(); });
    connect(calibTokens_, qOverload<int>(&QSpinBox::valueChanged), this, [this] { updateEnabled(); });

    chart_ = new ParetoChart(this);
    chart_->setObjectName("ParetoChart");
    chart_->setMinimumHeight(10 * em);
    lay->addWidget(chart_, 1);
    connect(chart_, &ParetoChart::frontClicked, this, &MixedPanel::applyFront);
    connect(chart_, &ParetoChart::uniformClicked, this, &MixedPanel::applyUniform);

    // Budget slider, x unit, Apply.
    auto* row3 = new QHBoxLayout;
    slider_ = new QSlider(Qt::Horizontal, this);
    slider_->setRange(0, kSliderSteps);
    slider_->setValue(kSliderSteps / 2);
    slider_->setToolTip(tr("Memory budget: the least-damage plan that fits is shown, Apply loads it"));
    applyButton_ = new QPushButton(tr("Apply"), this);
    applyButton_->setObjectName("ApplyBudgetButton");
    applyButton_->setToolTip(tr("Load the allocation at this budget into the grid (undoable)"));
    xUnit_ = new QComboBox(this);
    xUnit_->addItems({tr("bits/param"), tr("bytes")});
    xUnit_->setToolTip(tr("x axis of the chart"));
    row3->addWidget(new QLabel(tr("Budget"), this));
    row3->addWidget(slider_, 1);
    row3->addWidget(applyButton_);
    row3->addWidget(xUnit_);
    lay->addLayout(row3);
    budgetLabel_ = new QLabel(this);
    budgetLabel_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    budgetLabel_->setWordWrap(true);
    lay->addWidget(budgetLabel_);
    connect(slider_, &QSlider::valueChanged, this, &MixedPanel::sliderMoved);
    connect(applyButton_, &QPushButton::clicked, this, &MixedPanel::applyBudget);
    connect(xUnit_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this](int i) {
        chart_->setXUnit(i == 0 ? ParetoChart::XUnit::BitsPerParam : ParetoChart::XUnit::Bytes);
    });
    connect(chart_, &ParetoChart::xUnitChanged, this, [this](ParetoChart::XUnit u) {
        xUnit_->setCurrentIndex(u == ParetoChart::XUnit::BitsPerParam ? 0 : 1);
    });

    // Evaluate: held-out file, examples, button, cancel, progress; the table.
    auto* row4 = new QHBoxLayout;
    evalButton_ = new QPushButton(tr("Evaluate plan"), this);
    evalButton_->setObjectName("EvaluateButton");
    evalButton_->setToolTip(tr("Held-out loss of the original model, the grid plan's QLoRA init and its LoftQ init"));
    heldOut_ = new QLineEdit(this);
    heldOut_->setPlaceholderText(tr("held-out text or JSONL"));
    heldBrowse_ = new QPushButton(tr("…"), this);
    heldBrowse_->setMaximumWidth(3 * em);
    evalExamples_ = new QSpinBox(this);
    evalExamples_->setRange(0, 1000000);
    evalExamples_->setValue(64);
    evalExamples_->setSpecialValueText(tr("all"));
    evalExamples_->setToolTip(tr("Sequences of 128 tokens to evaluate (all: the whole file)"));
    evalCancel_ = new QPushButton(tr("Cancel"), this);
    evalProgress_ = new QProgressBar(this);
    evalProgress_->setRange(0, 1000);
    evalProgress_->setMaximumWidth(8 * em);
    row4->addWidget(evalButton_);
    row4->addWidget(heldOut_, 1);
    row4->addWidget(heldBrowse_);
    row4->addWidget(evalExamples_);
    row4->addWidget(evalCancel_);
    row4->addWidget(evalProgress_);
    lay->addLayout(row4);
    connect(evalButton_, &QPushButton::clicked, this, &MixedPanel::startEval);
    connect(evalCancel_, &QPushButton::clicked, this, &MixedPanel::cancelEval);
    connect(heldBrowse_, &QPushButton::clicked, this, [this] {
        const QString f = QFileDialog::getOpenFileName(this, tr("Held-out text"), QFileInfo(heldOut()).absolutePath(),
                                                       tr("Text or JSONL (*.txt *.jsonl *.json);;All files (*)"));
        if (!f.isEmpty()) setHeldOut(f);
    });
    connect(heldOut_, &QLineEdit::editingFinished, this, [this] { QSettings().setValue("mixed/held_out", heldOut()); });

    evalCaption_ = new QLabel(this);
    evalCaption_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    evalCaption_->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
    evalCaption_->setVisible(false);   // until a plan was evaluated
    lay->addWidget(evalCaption_);
    table_ = new QTableWidget(0, 4, this);
    table_->setObjectName("MixedEvalTable");
    table_->setHorizontalHeaderLabels({tr("model"), tr("held-out loss"), tr("perplexity"), tr("tokens")});
    table_->verticalHeader()->setVisible(false);
    table_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
    table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    table_->setSelectionMode(QAbstractItemView::NoSelection);
    table_->verticalHeader()->setDefaultSectionSize(em + 6);
    // Header + three rows, no scrolling.
    table_->setFixedHeight(table_->horizontalHeader()->sizeHint().height() + 3 * (em + 6) + 2 * table_->frameWidth());
    table_->setVerticalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    lay->addWidget(table_);
}

void MixedPanel::updateChart() {
    ParetoData data;
    if (sweep_) {
        const auto& sw = sweep_->sweep;
        data.params = double(sw.params);
        data.metric = sw.calibrated && sweep_->alloc.output_error ? tr("output error") : tr("weight error");
        for (const auto& f : sweep_->front) data.front.push_back({double(f.bytes), f.damage, QString(), f.alloc.optimal});
        for (const auto& u : sweep_->uniform) data.uniform.push_back({double(u.bytes), u.damage, QString::fromStdString(u.label)});
        const double cur = currentDamage();
        if (std::isfinite(cur)) data.current = ParetoPoint{double(doc_->size().total_bytes), cur, tr("plan in the grid")};
    } else if (doc_->hasModel()) {
        data.params = double(doc_->size().params);
    }
    for (const auto& e : evals_) {
        const auto* lo = row_of(e.result, "loftq");
        if (!lo) continue;
        QString tip;
        for (const auto& r : e.result.rows)
            tip += (tip.isEmpty() ? "" : "\n") + tr("%1: loss %2, perplexity %3").arg(start_name(r.start), format_sig(r.loss, 5), format_sig(r.ppl, 5));
        data.evaluated.push_back({double(e.result.size.total_bytes), lo->loss, e.label, tip});
        if (const auto* orig = row_of(e.result, "original")) data.original_loss = orig->loss;
    }
    chart_->setData(data);
}

bool MixedPanel::startEval() {
    if (evalJob_->running()) return false;
    if (!doc_->hasModel() || !source_) {
        fail(tr("Evaluate: open a model with its source weights first"));
        return false;
    }
    if (heldOut().isEmpty() && interactive_) heldBrowse_->click();
    if (heldOut().isEmpty()) {
        fail(tr("Evaluate: choose a held-out text file first"));
        return false;
    }
    if (!QFileInfo::exists(heldOut())) {
        fail(tr("Evaluate: the held-out file %1 does not exist").arg(heldOut()));
        return false;
    }
    QSettings().setValue("mixed/held_out", heldOut());
    loftq::EvalPlanOptions o;
    o.model = doc_->modelPath().toStdString();
    o.data = heldOut().toStdString();
    o.plan = doc_->plan();
    o.max_examples = evalExamples_->value();
    o.threads = threads_;
    const QString label = tr("plan %1").arg(evals_.size() + 1);
    evalProgress_->setValue(0);
    evalProgress_->setFormat(tr("original"));
    const int gen = modelGen_;
    const bool started = evalJob_->start([this, o = std::move(o), label, gen](const loftq::CancelToken& token) {
        JobThread* job = evalJob_;
        auto r = loftq::run_eval_plan(o, [this, job](const std::string& row, double f) {
            job->post([this, row, f] {
                evalProgress_->setValue(int(f * 1000));
                if (!row.empty()) evalProgress_->setFormat(start_name(row));
            });
        }, token);
        job->post([this, r, label, gen] {
            if (gen != modelGen_) return;   // the model changed meanwhile
            evals_.push_back({label, r});
            table_->setRowCount(0);
            for (const auto& row : r.rows) {
                const int i = table_->rowCount();
                table_->insertRow(i);
                const QStringList cells = {start_name(row.start), QString::number(row.loss, 'f', 4), QString::number(row.ppl, 'f', 3),
                                           QString::number(row.tokens)};
                for (int c = 0; c < cells.size(); ++c) {
                    auto* item = new QTableWidgetItem(cells[c]);
                    if (c > 0) item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
                    table_->setItem(i, c, item);
                }
            }
            evalCaption_->setVisible(true);
            evalCaption_->setText(tr("%1: %2, %3 bits/param, held-out %4")
                                      .arg(label, format_bytes_decimal(r.size.total_bytes))
                                      .arg(r.size.bits_per_param(), 0, 'f', 3)
                                      .arg(QFileInfo(heldOut()).fileName()));
            updateChart();
        });
    });
    if (!started) return false;
    emit message(tr("evaluation of the grid's plan on %1 started").arg(QFileInfo(heldOut()).fileName()), false);
    updateEnabled();
    return true;
}

void MixedPanel::cancelEval() {
    if (evalJob_->running()) evalJob_->cancel();
}

void MixedPanel::onEvalEnded(bool ok, const QString& why) {
    evalProgress_->setValue(ok ? 1000 : 0);
    evalProgress_->setFormat(ok ? tr("done") : QString());
    if (ok && !evals_.empty()) {
        const auto& r = evals_.back().result;
        QString line;
        for (const auto& row : r.rows) line += QStringLiteral(", %1 %2").arg(start_name(row.start), format_sig(row.loss, 5));
        emit message(tr("evaluated %1: held-out loss%2").arg(evals_.back().label, line), false);
    } else if (!ok) {
        emit message(why.startsWith(tr("evaluation")) ? why : tr("evaluation failed: %1").arg(why), why != tr("evaluation cancelled"));
    }
    updateEnabled();
    emit evalFinished(ok);
}

// ---- the headless front renderer -----------------------------------------------------------

FrontFile pareto_from_front_file(const QString& path) {
    const std::string p = path.toStdString();
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(loftq::read_text_file(p));
    } catch (const nlohmann::json::exception& e) {
        throw loftq::Error(p, "", std::string("not JSON: ") + e.what());
    }
    if (!j.is_object() || j.value("format", "") != "loftq-front")
        throw loftq::Error(p, "", "not a loftq-front file (write one with `loftq plan auto ... --front FILE.json`)");
    FrontFile f;
    try {
        f.data.params = j.at("params").get<double>();
        f.data.metric = QString::fromStdString(j.value("metric", "weight error"));
        for (const auto& e : j.at("front"))
            f.data.front.push_back({e.at("bytes").get<double>(), e.at("damage").get<double>(), QString(), e.value("optimal", true)});
        for (const auto& e : j.value("uniform", nlohmann::json::array()))
            f.data.uniform.push_back(
                {e.at("bytes").get<double>(), e.at("damage").get<double>(), QString::fromStdString(e.at("label").get<std::string>())});
        if (j.contains("chosen"))
            f.data.chosen = ParetoPoint{j["chosen"].at("bytes").get<double>(), j["chosen"].at("damage").get<double>(),
                                        MixedPanel::tr("chosen plan"), true};
        if (j.contains("budget_bytes")) f.budget_bytes = j["budget_bytes"].get<double>();
    } catch (const nlohmann::json::exception& e) {
        throw loftq::Error(p, "", std::string("bad loftq-front file: ") + e.what());
    }
    if (f.data.params <= 0) throw loftq::Error(p, "", "bad loftq-front file: params must be positive");
    if (f.data.chosen && std::isfinite(f.budget_bytes))
        f.data.chosen->label = MixedPanel::tr("chosen for %1").arg(format_bytes_decimal(uint64_t(f.budget_bytes)));
    return f;
}

bool render_front_png(const QString& front_json, const QString& png, const QSize& size, QString* error) {
    try {
        const FrontFile f = pareto_from_front_file(front_json);
        ParetoChart chart;
        chart.setData(f.data);
        if (std::isfinite(f.budget_bytes)) chart.setMarker(f.budget_bytes);
        chart.replotNow();
        return chart.save(png, size.width(), size.height(), error);
    } catch (const std::exception& e) {
        if (error) *error = QString::fromStdString(e.what());
        return false;
    }
}

}  // namespace studio
