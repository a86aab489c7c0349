// main_window.cpp: the window's layout, menus, settings, drag and drop and about box. Features
// live in main_window_{open,run,export}.cpp (see studio/main_window.h).
#include "studio/main_window.h"

#include <QAction>
#include <QApplication>
#include <QCheckBox>
#include <QCloseEvent>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QInputDialog>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QStatusBar>
#include <QStyle>
#include <QTabWidget>
#include <QScrollArea>
#include <QTimer>
#include <QToolBar>
#include <QVBoxLayout>
#include <algorithm>
#include <memory>

#include "budget_bar.h"
#include "loftq/budget.h"
#include "device_combo.h"
#include "error_chart.h"
#include "error_heatmap.h"
#include "improvement_chart.h"
#include "log_panel.h"
#include "model_overview.h"
#include "plan_document.h"
#include "plan_edit_bar.h"
#include "plan_grid_model.h"
#include "plan_grid_view.h"
#include "rules_panel.h"
#include "run_results.h"
#include "studio/finetune.h"
#include "studio/try_it.h"
#include "studio/gguf_export_dialog.h"
#include "studio/job.h"
#include "studio/help.h"
#include "studio/mixed.h"
#include "export/footprint.h"

namespace studio {

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
    setObjectName("MainWindow");
    setAcceptDrops(true);
    doc_ = new PlanDocument(this);
    results_ = new RunResults(this);
    job_ = new StudioJob(this);
    openWatcher_ = new QFutureWatcher<OpenedModel>(this);
    connect(openWatcher_, &QFutureWatcher<OpenedModel>::finished, this, [this] { onOpened(openWatcher_->result()); });
    buildWidgets();
    buildDocks();
    buildMenus();
    defaultState_ = saveState();
    restoreSettings();
    connect(doc_, &PlanDocument::planChanged, this, [this] {
        budget_->setSize(doc_->size(), doc_->budgetBytes());
        // What the exports of this plan take on disk (a sum over the tensors: cheap).
        const bool nf4_64 = std::all_of(doc_->resolved().weights.begin(), doc_->resolved().weights.end(), [](const auto& w) {
            return w.s.quant == loftq::QuantKind::NF4 && w.s.block == 64;
        });
        auto disk = [this](loftq::ExportFormat f) { return loftq::export_footprint(doc_->resolved(), doc_->tensors(), f).total(); };
        budget_->setDiskBytes(doc_->hasModel() ? disk(loftq::ExportFormat::Packed) : 0, doc_->hasModel() ? disk(loftq::ExportFormat::Hf) : 0,
                              doc_->hasModel() && nf4_64 ? disk(loftq::ExportFormat::BnbNf4) : 0);
        updateTitle();
        updateActions();
        // Plan warnings are logged when they change, not again on every edit.
        if (doc_->resolved().warnings != loggedWarnings_) {
            loggedWarnings_ = doc_->resolved().warnings;
            for (const auto& w : loggedWarnings_) log_->append(LogPanel::Level::Warning, QString::fromStdString(w));
        }
    });
    connect(doc_, &PlanDocument::budgetChanged, this, [this] { budget_->setSize(doc_->size(), doc_->budgetBytes()); });
    connect(doc_->undoStack(), &QUndoStack::cleanChanged, this, &MainWindow::updateTitle);
    connect(job_, &StudioJob::event, this, &MainWindow::onJobEvent);
    // finished() carries the result; succeeded() (after it, once the job is no longer running) ends the run.
    connect(job_, &StudioJob::finished, this, [this](std::shared_ptr<const loftq::QuantizeResult> r) { last_result_ = std::move(r); });
    connect(job_, &JobThread::succeeded, this, &MainWindow::onJobFinished);
    connect(job_, &JobThread::cancelled, this, [this] { onJobEnded(RunResults::State::Cancelled, tr("cancelled")); });
    connect(job_, &JobThread::failed, this, [this](const QString& m) { onJobEnded(RunResults::State::Failed, m); });
    job_->setExtraFiles([this](const loftq::QuantizeResult& r) { return renderPlots(r); });
    // Statistics a run collected serve the next runs and sweeps on the same file.
    connect(job_, &StudioJob::calibrated, mixed_, &MixedPanel::rememberCalibration);
    connect(results_, &RunResults::outputErrorsChanged, this, &MainWindow::updateOutputToggle);
    // The Fine-tune tab can start from the current plan (decomposed in memory there).
    connect(doc_, &PlanDocument::planChanged, finetune_, [this] {
        if (!doc_->hasModel() || openedExport_) return finetune_->setPlan(nullptr, {});
        auto p = std::make_shared<loftq::Plan>(doc_->plan());
        p->model = doc_->modelPath().toStdString();
        finetune_->setPlan(std::move(p), doc_->resolved());
    });
    // Results whose settings the plan no longer gives are marked stale (and unmarked on undo).
    connect(doc_, &PlanDocument::planChanged, results_, [this] { results_->setPlan(doc_->resolved()); });
    updateOutputToggle();
    updateTitle();
    updateActions();
}

MainWindow::~MainWindow() = default;

void MainWindow::setInteractive(bool on) {
    interactive_ = on;
    mixed_->setInteractive(on);
    tryIt_->setInteractive(on);
}

void MainWindow::setThreads(int n) {
    threads_ = n;
    mixed_->setThreads(n);
    tryIt_->setThreads(n);
}

void MainWindow::showOutputErrors(bool on) {
    const ErrorKind k = on ? ErrorKind::Output : ErrorKind::Weight;
    chart_->setErrorKind(k);
    heatmap_->setErrorKind(k);
    improvement_->setErrorKind(k);
}

void MainWindow::updateOutputToggle() {
    const bool has = results_->hasOutputErrors();
    const QString tip = has ? tr("Plot each projection's output error ‖X(W−Q−BA)ᵀ‖/‖XWᵀ‖ on the calibration text instead of "
                                 "the weight error ‖W−Q−BA‖/‖W‖")
                            : tr("Output errors need a calibration file: set one in the Mixed precision panel, then run");
    actOutputErrors_->setEnabled(has);
    actOutputErrors_->setToolTip(tip);
    outputErrorsBox_->setEnabled(has);
    outputErrorsBox_->setToolTip(tip);
    if (!has && actOutputErrors_->isChecked()) actOutputErrors_->setChecked(false);
}

void MainWindow::buildWidgets() {
    auto* central = new QWidget(this);
    auto* lay = new QVBoxLayout(central);
    lay->setContentsMargins(4, 4, 4, 4);
    lay->setSpacing(4);
    grid_ = new PlanGridView(doc_, results_, central);
    grid_->setObjectName("PlanGrid");
    editBar_ = new PlanEditBar(doc_, grid_, central);
    editBar_->setObjectName("PlanEditBar");
    budget_ = new BudgetBar(central);
    budget_->setObjectName("BudgetBar");
    lay->addWidget(editBar_);
    lay->addWidget(grid_, 1);
    lay->addWidget(budget_);
    finetune_ = new FinetunePanel(this);
    finetune_->setObjectName("FinetunePanel");
    connect(finetune_, &FinetunePanel::message, this, [this](const QString& text, bool error) {
        log_->append(error ? LogPanel::Level::Error : LogPanel::Level::Info, text);
    });
    centralTabs_ = new QTabWidget(this);
    centralTabs_->setObjectName("CentralTabs");
    centralTabs_->addTab(central, tr("Plan"));
    centralTabs_->addTab(finetune_, tr("Fine-tune"));
    // Try it: text from the model, the last export and every fine-tune run, side by side.
    tryIt_ = new TryItPanel(this);
    tryIt_->setObjectName("TryItPanel");
    // Its columns must not raise the tabs' minimum width above the Plan tab's: that would take room
    // from the docks (and change what View > Reset Layout restores). It shrinks inside instead.
    tryIt_->setMinimumSize(1, 1);
    connect(tryIt_, &TryItPanel::message, this, [this](const QString& text, bool error) {
        log_->append(error ? LogPanel::Level::Error : LogPanel::Level::Info, text);
    });
    connect(finetune_, &FinetunePanel::runReady, tryIt_, &TryItPanel::addRun);
    centralTabs_->addTab(tryIt_, tr("Try it"));
    setCentralWidget(centralTabs_);
    connect(grid_, &PlanGridView::cellSelectionChanged, this, [this] { syncChartToSelection(); updateActions(); });

    progress_ = new QProgressBar(this);
    progress_->setRange(0, 1000);
    progress_->setMaximumWidth(220);
    progress_->setTextVisible(true);
    progress_->setVisible(false);
    etaLabel_ = new QLabel(this);
    cancelButton_ = new QPushButton(tr("Cancel"), this);
    cancelButton_->setVisible(false);
    connect(cancelButton_, &QPushButton::clicked, this, &MainWindow::cancelRun);
    statusLabel_ = new QLabel(tr("No model open"), this);
    statusBar()->addWidget(statusLabel_, 1);
    statusBar()->addPermanentWidget(etaLabel_);
    statusBar()->addPermanentWidget(progress_);
    statusBar()->addPermanentWidget(cancelButton_);
}

void MainWindow::buildDocks() {
    setDockNestingEnabled(true);
    // Form-like docks scroll when the window is small instead of imposing their full size on it
    // (so that the window fits 1000x650); plots and tables shrink by themselves.
    auto dock = [this](const QString& title, const QString& name, QWidget* w, Qt::DockWidgetArea area, bool scroll = false) {
        auto* d = new QDockWidget(title, this);
        d->setObjectName(name);
        if (scroll) {
            auto* area_ = new QScrollArea(d);
            area_->setObjectName(name + "Scroll");
            area_->setWidget(w);
            area_->setWidgetResizable(true);
            area_->setFrameShape(QFrame::NoFrame);
            area_->setHorizontalScrollBarPolicy(Qt::ScrollBarAsNeeded);
            d->setWidget(area_);
        } else {
            d->setWidget(w);
        }
        addDockWidget(area, d);
        return d;
    };
    overview_ = new ModelOverview(doc_, this);
    rules_ = new RulesPanel(doc_, this);
    connect(rules_, &RulesPanel::previewChanged, this, [this](const std::vector<bool>& hits) { grid_->gridModel()->setHighlight(hits); });
    auto* dModel = dock(tr("Model"), "ModelDock", overview_, Qt::LeftDockWidgetArea);
    auto* dRules = dock(tr("Rules"), "RulesDock", rules_, Qt::LeftDockWidgetArea, true);
    tabifyDockWidget(dModel, dRules);
    dModel->raise();

    chart_ = new ErrorChart(results_, this);
    chart_->setObjectName("ErrorChart");
    heatmap_ = new ErrorHeatmap(results_, this);
    heatmap_->setObjectName("ErrorHeatmap");
    improvement_ = new ImprovementChart(results_, this);
    improvement_->setObjectName("ImprovementChart");
    connect(heatmap_, &ErrorHeatmap::weightClicked, this, [this](const QString& name) {
        // Select that weight's cell in the grid, which drives the chart.
        for (size_t t = 0; t < doc_->tensors().size(); ++t)
            if (QString::fromStdString(doc_->tensors()[t].name) == name) {
                QPoint c = doc_->cellOfTensor(int(t));
                if (c.x() >= 0) grid_->selectCells({c});
            }
    });
    resultTabs_ = new QTabWidget(this);
    resultTabs_->addTab(heatmap_, tr("Final error"));
    resultTabs_->addTab(improvement_, tr("Improvement over QLoRA"));
    // The weight/output error toggle (View > Output Errors) at hand beside the result tabs.
    outputErrorsBox_ = new QCheckBox(tr("Output error"), resultTabs_);
    outputErrorsBox_->setObjectName("OutputErrorsBox");
    resultTabs_->setCornerWidget(outputErrorsBox_, Qt::TopRightCorner);
    auto* dChart = dock(tr("Error vs step"), "ChartDock", chart_, Qt::RightDockWidgetArea);
    auto* dResults = dock(tr("Results"), "ResultsDock", resultTabs_, Qt::RightDockWidgetArea);
    // Mixed precision: a tab beside the error chart (the grid stays in view for the plans it loads).
    mixed_ = new MixedPanel(doc_, this);
    connect(mixed_, &MixedPanel::message, this, [this](const QString& text, bool error) {
        log_->append(error ? LogPanel::Level::Error : LogPanel::Level::Info, text);
    });
    auto* dMixed = dock(tr("Mixed precision"), "MixedDock", mixed_, Qt::RightDockWidgetArea, true);
    tabifyDockWidget(dChart, dMixed);
    dChart->raise();
    connect(dMixed->toggleViewAction(), &QAction::triggered, dMixed, [dMixed](bool on) {
        if (on) dMixed->raise();
    });
    // Its chart needs height: while the Mixed precision tab is raised, its tab group takes two
    // thirds of the right column (Results keeps the rest); raising Error vs step again brings
    // the split from before back. Only for the default arrangement (both docked on the right).
    auto split = std::make_shared<QList<int>>();
    auto stacked = [this, dResults](QDockWidget* top) {
        return !top->isFloating() && !dResults->isFloating() && dResults->isVisible() &&
               dockWidgetArea(top) == Qt::RightDockWidgetArea && dockWidgetArea(dResults) == Qt::RightDockWidgetArea;
    };
    connect(dMixed, &QDockWidget::visibilityChanged, this, [this, dMixed, dResults, split, stacked](bool shown) {
        if (!shown || !stacked(dMixed)) return;
        const int h = dMixed->height() + dResults->height();
        if (split->isEmpty()) *split = {dMixed->height(), dResults->height()};
        resizeDocks({dMixed, dResults}, {h * 2 / 3, h - h * 2 / 3}, Qt::Vertical);
    });
    connect(dChart, &QDockWidget::visibilityChanged, this, [this, dChart, dResults, split, stacked](bool shown) {
        if (!shown || split->isEmpty() || !stacked(dChart)) return;
        resizeDocks({dChart, dResults}, *split, Qt::Vertical);
        split->clear();
    });

    log_ = new LogPanel(this);
    log_->setObjectName("LogPanel");
    auto* dLog = dock(tr("Log"), "LogDock", log_, Qt::BottomDockWidgetArea);
    // The Fine-tune tab is a perspective of its own: the LoftQ plots make room for its curves
    // while it is shown, and come back (if they were open) with the Plan tab.
    // (A dock behind another's tab is open, and even isVisible(): which of the two tabs was in
    // front is followed by their visibilityChanged and raised again on the way back.)
    planDocks_ = {{dChart, true}, {dResults, true}, {dMixed, true}};
    auto front = std::make_shared<QDockWidget*>(dChart), saved = std::make_shared<QDockWidget*>(nullptr);
    for (QDockWidget* d : {dChart, dMixed})
        connect(d, &QDockWidget::visibilityChanged, this, [front, d](bool shown) {
            if (shown) *front = d;
        });
    connect(centralTabs_, &QTabWidget::currentChanged, this, [this, front, saved](int index) {
        const bool plan = centralTabs_->widget(index) != finetune_ && centralTabs_->widget(index) != tryIt_;
        if (!plan == (*saved != nullptr)) return;   // no change of perspective
        if (!plan) {
            for (auto& [d, open] : planDocks_) open = d->toggleViewAction()->isChecked();
            *saved = *front;
        }
        for (auto& [d, open] : planDocks_) d->setVisible(plan && open);
        if (plan) {
            if ((*saved)->toggleViewAction()->isChecked()) (*saved)->raise();
            *saved = nullptr;
        }
    });
    // Default proportions (in font heights, so they scale with DPI and font): applied once the
    // window has its size; a saved layout replaces them.
    applyDefaultProportions_ = [this, dModel, dChart, dResults, dLog] {
        const int em = fontMetrics().height();
        resizeDocks({dModel, dChart}, {std::min(22 * em, width() / 5), std::min(34 * em, width() * 9 / 25)}, Qt::Horizontal);
        resizeDocks({dChart, dResults}, {height() / 2, height() / 2}, Qt::Vertical);
        resizeDocks({dLog}, {7 * em}, Qt::Vertical);
    };
    QTimer::singleShot(0, this, [this] {
        if (!layoutRestored_) applyDefaultProportions_();
    });
}

void MainWindow::resetLayout() {
    // The default docks and tabs, then the default proportions for the window's size now (the
    // state saved at construction has no sizes worth keeping: the window was not shown yet).
    restoreState(defaultState_);
    for (QDockWidget* d : findChildren<QDockWidget*>()) d->setFloating(false);
    applyDefaultProportions_();
}

void MainWindow::buildMenus() {
    // One action: text, slot, optional shortcut (Qt 6.4 deprecates addAction(text, obj, slot, key)).
    auto add = [this](QMenu* m, const QString& text, auto slot, const QKeySequence& key = {}) {
        QAction* a = m->addAction(text);
        a->setShortcut(key);
        connect(a, &QAction::triggered, this, slot);
        return a;
    };
    QMenu* file = menuBar()->addMenu(tr("&File"));
    actOpen_ = add(file, tr("&Open Model…"), &MainWindow::openDialog, QKeySequence::Open);
    add(file, tr("Open &Folder…"), [this] {
        QSettings s;
        QString d = QFileDialog::getExistingDirectory(this, tr("Open a Hugging Face model folder"), s.value("paths/last_open").toString());
        if (d.isEmpty()) return;
        s.setValue("paths/last_open", d);
        openModel(d);
    }, QKeySequence(tr("Ctrl+Shift+O")));
    actDemo_ = add(file, tr("Open &Demo Model"), &MainWindow::openDemo);
    recentMenu_ = file->addMenu(tr("Open &Recent"));
    file->addSeparator();
    actLoadPlan_ = add(file, tr("&Load Plan…"), &MainWindow::loadPlanDialog, QKeySequence(tr("Ctrl+L")));
    actSavePlan_ = add(file, tr("&Save Plan"), [this] {
        if (planPath_.isEmpty()) savePlanDialog();
        else savePlan(planPath_);
    }, QKeySequence::Save);
    actSavePlanAs_ = add(file, tr("Save Plan &As…"), &MainWindow::savePlanDialog, QKeySequence::SaveAs);
    file->addSeparator();
    actExport_ = add(file, tr("&Export…"), &MainWindow::exportDialog, QKeySequence(tr("Ctrl+E")));
    add(file, tr("Export &GGUF for llama.cpp…"), [this] { openGgufExport(); });
    file->addSeparator();
    add(file, tr("&Quit"), &QWidget::close, QKeySequence::Quit);

    QMenu* edit = menuBar()->addMenu(tr("&Edit"));
    actUndo_ = doc_->undoStack()->createUndoAction(this, tr("&Undo"));
    actUndo_->setShortcut(QKeySequence::Undo);
    actRedo_ = doc_->undoStack()->createRedoAction(this, tr("&Redo"));
    actRedo_->setShortcut(QKeySequence::Redo);
    edit->addAction(actUndo_);
    edit->addAction(actRedo_);
    edit->addSeparator();
    add(edit, tr("Select &All Cells"), [this] { grid_->selectAll(); });
    actBudget_ = add(edit, tr("Memory &Budget…"), &MainWindow::setBudgetDialog);

    QMenu* run = menuBar()->addMenu(tr("&Run"));
    actRunAll_ = add(run, tr("Run &All"), &MainWindow::runAll, QKeySequence(Qt::Key_F5));
    actRunSel_ = add(run, tr("Run &Selected"), &MainWindow::runSelected, QKeySequence(Qt::SHIFT | Qt::Key_F5));
    actCancel_ = add(run, tr("&Cancel"), &MainWindow::cancelRun, QKeySequence(Qt::CTRL | Qt::Key_Period));

    viewMenu_ = menuBar()->addMenu(tr("&View"));
    viewMenu_->setToolTipsVisible(true);   // the output-error toggle says why it is disabled
    for (QDockWidget* d : findChildren<QDockWidget*>()) viewMenu_->addAction(d->toggleViewAction());
    viewMenu_->addSeparator();
    actOutputErrors_ = viewMenu_->addAction(tr("&Output Errors"));
    actOutputErrors_->setObjectName("OutputErrorsAction");
    actOutputErrors_->setCheckable(true);
    connect(actOutputErrors_, &QAction::toggled, this, [this](bool on) {
        outputErrorsBox_->setChecked(on);
        showOutputErrors(on);
    });
    connect(outputErrorsBox_, &QCheckBox::toggled, actOutputErrors_, &QAction::setChecked);
    viewMenu_->addSeparator();
    add(viewMenu_, tr("&Reset Layout"), &MainWindow::resetLayout);

    QMenu* help = menuBar()->addMenu(tr("&Help"));
    add(help, tr("&Getting Started"), [this] { showHelp(HelpDialog::Page::GettingStarted); }, QKeySequence::HelpContents);
    add(help, tr("Reading the &Grid"), [this] { showHelp(HelpDialog::Page::Grid); });
    add(help, tr("&Keyboard Shortcuts"), [this] { showHelp(HelpDialog::Page::Shortcuts); });
    add(help, tr("&Documentation"), [this] { showHelp(HelpDialog::Page::Documentation); });
    help->addSeparator();
    add(help, tr("&About LoftQ Studio"), &MainWindow::about);
    connect(help->addAction(tr("About &Qt")), &QAction::triggered, qApp, &QApplication::aboutQt);

    QToolBar* tb = addToolBar(tr("Main"));
    tb->setObjectName("MainToolBar");
    tb->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);
    actOpen_->setIcon(style()->standardIcon(QStyle::SP_DialogOpenButton));
    actSavePlan_->setIcon(style()->standardIcon(QStyle::SP_DialogSaveButton));
    actRunAll_->setIcon(style()->standardIcon(QStyle::SP_MediaPlay));
    actRunSel_->setIcon(style()->standardIcon(QStyle::SP_MediaSeekForward));
    actCancel_->setIcon(style()->standardIcon(QStyle::SP_MediaStop));
    actExport_->setIcon(style()->standardIcon(QStyle::SP_DialogApplyButton));
    tb->addAction(actOpen_);
    tb->addAction(actSavePlan_);
    tb->addSeparator();
    // The stack's own actions carry "Undo <what>" (menu); the toolbar keeps short, fixed labels.
    for (QAction* src : {actUndo_, actRedo_}) {
        QAction* a = tb->addAction(src == actUndo_ ? tr("Undo") : tr("Redo"));
        a->setIcon(style()->standardIcon(src == actUndo_ ? QStyle::SP_ArrowBack : QStyle::SP_ArrowForward));
        a->setEnabled(src->isEnabled());
        connect(a, &QAction::triggered, src, &QAction::trigger);
        connect(src, &QAction::enabledChanged, a, &QAction::setEnabled);
        connect(src, &QAction::changed, a, [a, src] { a->setToolTip(src->text()); });
    }
    tb->addSeparator();
    tb->addAction(actRunAll_);
    tb->addAction(actRunSel_);
    tb->addAction(actCancel_);
    device_ = new DeviceCombo(tb);
    device_->setObjectName("RunDevice");
    tb->addWidget(device_);
    tb->addSeparator();
    tb->addAction(actExport_);
    rebuildRecentMenu();
}

void MainWindow::restoreSettings() {
    QSettings s;
    if (!restoreGeometry(s.value("window/geometry").toByteArray())) resize(1400, 880);
    layoutRestored_ = restoreState(s.value("window/state").toByteArray());
    doc_->setBudgetBytes(s.value("plan/budget_bytes", 0).toULongLong());
    setThreads(s.value("run/threads", 0).toInt());
    if (auto d = loftq::kComputeDeviceNames.find(s.value("run/device", "auto").toString().toStdString())) device_->setDevice(*d);
}

void MainWindow::saveSettings() {
    QSettings s;
    s.setValue("window/geometry", saveGeometry());
    s.setValue("window/state", saveState());
    s.setValue("plan/budget_bytes", qulonglong(doc_->budgetBytes()));
    s.setValue("run/device", loftq::kComputeDeviceNames.name(device_->device()));
}

void MainWindow::updateTitle() {
    QString t = doc_->hasModel() ? QFileInfo(doc_->modelPath()).fileName() : tr("no model");
    if (!planPath_.isEmpty()) t += " — " + QFileInfo(planPath_).fileName();
    setWindowTitle(t + (doc_->isModified() ? " *" : "") + " — LoftQ Studio");
}

void MainWindow::updateActions() {
    const bool model = doc_->hasModel(), opening = job_->running() || openWatcher_->isRunning();
    // While a plan loads, the plan on screen is about to be replaced: no run, export or second
    // load; opening another model stays possible (it drops the load).
    const bool busy = opening || planLoading_;
    const bool source = model && !openedExport_;   // runs and exports need source weights
    actOpen_->setEnabled(!opening);
    actDemo_->setEnabled(!opening);
    actLoadPlan_->setEnabled(model && !busy);
    actSavePlan_->setEnabled(model);
    actSavePlanAs_->setEnabled(model);
    actExport_->setEnabled(source && !busy);
    device_->setEnabled(!busy);
    actRunAll_->setEnabled(source && !busy && !doc_->resolved().weights.empty());
    actRunSel_->setEnabled(source && !busy && !doc_->weightsOfCells(grid_->selectedCells()).empty());
    actCancel_->setEnabled(job_->running() || planLoading_);
    mixed_->setSourceAvailable(!openedExport_);
    cancelButton_->setVisible(job_->running() || planLoading_);
    progress_->setRange(0, planLoading_ && !job_->running() ? 0 : 1000);   // 0..0: busy, no fraction known
    progress_->setVisible(job_->running() || planLoading_);
}

void MainWindow::showError(const QString& title, const QString& text) {
    log_->append(LogPanel::Level::Error, title + ": " + text);
    statusLabel_->setText(title + ": " + text.left(200));
    if (!interactive_) return;
    auto* box = new QMessageBox(QMessageBox::Warning, title, text, QMessageBox::Ok, this);
    box->setAttribute(Qt::WA_DeleteOnClose);
    box->open();  // non-modal to the event loop: runs and timers go on
}

HelpDialog* MainWindow::showHelp(HelpDialog::Page page) {
    if (!help_) {
        help_ = new HelpDialog(this, this);
        help_->setAttribute(Qt::WA_DeleteOnClose, false);
    }
    help_->showPage(page);
    help_->show();
    help_->raise();
    return help_;
}

bool MainWindow::showFirstRunHelp() {
    QSettings s;
    if (!interactive_ || s.value("help/first_run_shown", false).toBool()) return false;
    s.setValue("help/first_run_shown", true);
    showHelp(HelpDialog::Page::GettingStarted);
    return true;
}

void MainWindow::about() {
    QMessageBox::about(this, tr("About LoftQ Studio"),
                       tr("<h3>LoftQ Studio %1</h3>"
                          "<p>Quantize pretrained LLMs to 2-4 bits with a LoRA initialisation that "
                          "compensates the quantization error: LoftQ (Li et al., arXiv 2310.08659).</p>"
                          "<p>Engine: C++20, OpenBLAS, LAPACKE. GUI: Qt %2, QCustomPlot.</p>")
                           .arg(LOFTQ_VERSION, qVersion()));
}

void MainWindow::setBudgetDialog() {
    bool ok = false;
    double mb = QInputDialog::getDouble(this, tr("Memory budget"), tr("Budget in MB (1 MB = 10^6 bytes; 0 = none):"),
                                        double(doc_->budgetBytes()) / 1e6, 0, 1e9, 1, &ok);
    if (ok) doc_->setBudgetBytes(uint64_t(mb * 1e6));
}

void MainWindow::closeEvent(QCloseEvent* e) {
    if (!maybeSavePlan()) {
        e->ignore();
        return;
    }
    if (job_->running()) job_->cancel();
    saveSettings();
    e->accept();
}

void MainWindow::dragEnterEvent(QDragEnterEvent* e) {
    if (e->mimeData()->hasUrls() && !e->mimeData()->urls().isEmpty() && e->mimeData()->urls().first().isLocalFile())
        e->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* e) {
    const QString path = e->mimeData()->urls().first().toLocalFile();
    if (path.endsWith(".loftq.json") || (path.endsWith(".json") && !path.endsWith("config.json") && doc_->hasModel()))
        loadPlan(path);
    else
        openModel(path);
    e->acceptProposedAction();
}

}  // namespace studio
