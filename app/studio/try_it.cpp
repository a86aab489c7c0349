// try_it.cpp: see studio/try_it.h.
#include "studio/try_it.h"

#include <QComboBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QScrollBar>
#include <QShortcut>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QSplitter>
#include <QTextCharFormat>
#include <QTextCursor>
#include <QTimer>
#include <QVBoxLayout>
#include <algorithm>
#include <limits>

#include "flow_layout.h"
#include "studio/job_thread.h"

namespace studio {

namespace {
constexpr int kNone = -1;     // B's "(none)"
constexpr int kBrowse = -2;   // "Browse folder…"
constexpr int kAppendMs = 30; // at most one text append per column per 30 ms

// A label and its editor as one item of the flow layout (they wrap together).
QWidget* labelled(QWidget* parent, const QString& label, QWidget* editor) {
    auto* box = new QWidget(parent);
    auto* lay = new QHBoxLayout(box);
    lay->setContentsMargins(0, 0, 0, 0);
    lay->addWidget(new QLabel(label, box));
    editor->setParent(box);
    lay->addWidget(editor);
    return box;
}
}  // namespace

TryItPanel::TryItPanel(QWidget* parent) : QWidget(parent) {
    job_ = new JobThread(this);
    connect(job_, &JobThread::succeeded, this, [this] { onEnded(false, QString()); });
    connect(job_, &JobThread::cancelled, this, [this] { onEnded(true, QString()); });
    connect(job_, &JobThread::failed, this, [this](const QString& m) { onEnded(false, m); });
    flushTimer_ = new QTimer(this);
    flushTimer_->setSingleShot(true);
    flushTimer_->setInterval(kAppendMs);
    connect(flushTimer_, &QTimer::timeout, this, &TryItPanel::flush);

    prompt_ = new QPlainTextEdit(this);
    prompt_->setObjectName("TryItPrompt");
    prompt_->setPlaceholderText(tr("Prompt (Ctrl+Enter generates)"));
    prompt_->setPlainText("Once upon a time");
    prompt_->setFixedHeight(prompt_->fontMetrics().lineSpacing() * 3 + 14);
    auto* shortcut = new QShortcut(QKeySequence(Qt::CTRL | Qt::Key_Return), prompt_);
    shortcut->setContext(Qt::WidgetShortcut);
    connect(shortcut, &QShortcut::activated, this, [this] { generate(); });

    maxTokens_ = new QSpinBox(this);
    maxTokens_->setObjectName("TryItMaxTokens");
    maxTokens_->setRange(1, 1 << 20);
    maxTokens_->setValue(128);
    temperature_ = new QDoubleSpinBox(this);
    temperature_->setObjectName("TryItTemperature");
    temperature_->setRange(0, 5);
    temperature_->setDecimals(2);
    temperature_->setSingleStep(0.1);
    temperature_->setSpecialValueText(tr("0 (greedy)"));
    topK_ = new QSpinBox(this);
    topK_->setObjectName("TryItTopK");
    topK_->setRange(0, 1 << 20);
    topK_->setSpecialValueText(tr("all"));
    topP_ = new QDoubleSpinBox(this);
    topP_->setObjectName("TryItTopP");
    topP_->setRange(0.01, 1.0);
    topP_->setDecimals(2);
    topP_->setSingleStep(0.05);
    topP_->setValue(1.0);
    seed_ = new QSpinBox(this);
    seed_->setObjectName("TryItSeed");
    seed_->setRange(0, std::numeric_limits<int>::max());
    generateButton_ = new QPushButton(tr("Generate"), this);
    generateButton_->setObjectName("TryItGenerate");
    cancelButton_ = new QPushButton(tr("Cancel"), this);
    cancelButton_->setObjectName("TryItCancel");
    connect(generateButton_, &QPushButton::clicked, this, [this] { generate(); });
    connect(cancelButton_, &QPushButton::clicked, this, &TryItPanel::cancel);
    const QString greedyTip = tr("Temperature 0 is greedy (the most likely token each step), as `loftq generate`'s default");
    temperature_->setToolTip(greedyTip);
    topK_->setToolTip(tr("Sample among the K most likely tokens (all: no limit)"));
    topP_->setToolTip(tr("Nucleus sampling: the most likely tokens holding this much of the probability"));
    seed_->setToolTip(tr("The same seed, options and model give the same text"));

    auto* bar = new QWidget(this);
    auto* flow = new FlowLayout(bar, 12, 4);
    flow->setContentsMargins(0, 0, 0, 0);
    flow->addWidget(labelled(bar, tr("Max tokens"), maxTokens_));
    flow->addWidget(labelled(bar, tr("Temperature"), temperature_));
    flow->addWidget(labelled(bar, tr("Top-k"), topK_));
    flow->addWidget(labelled(bar, tr("Top-p"), topP_));
    flow->addWidget(labelled(bar, tr("Seed"), seed_));
    auto* buttons = new QWidget(bar);
    auto* blay = new QHBoxLayout(buttons);
    blay->setContentsMargins(0, 0, 0, 0);
    generateButton_->setParent(buttons);
    cancelButton_->setParent(buttons);
    blay->addWidget(generateButton_);
    blay->addWidget(cancelButton_);
    flow->addWidget(buttons);

    auto* split = new QSplitter(Qt::Horizontal, this);
    split->setObjectName("TryItColumns");
    split->setChildrenCollapsible(false);
    split->addWidget(buildColumn(A));
    split->addWidget(buildColumn(B));

    auto* lay = new QVBoxLayout(this);
    lay->setContentsMargins(6, 6, 6, 6);
    lay->addWidget(prompt_);
    lay->addWidget(bar);
    lay->addWidget(split, 1);

    sources_.append({0, tr("Original model (none open)"), TryItSourceKind::Model, QString()});
    rebuildSources();
    selectNone();
    for (int c : {A, B}) resetSlot(c);
    cols_[A].status->setText(tr("Pick the sources, write a prompt and Generate."));
    cols_[B].status->setText(tr("Pick a second source to compare with."));
    updateEnabled();
}

TryItPanel::~TryItPanel() {
    // Cancel and join before the members go: the job's callbacks post to job_, never touch them.
    delete job_;
}

QWidget* TryItPanel::buildColumn(int column) {
    ColumnView& v = cols_[column];
    auto* w = new QWidget(this);
    auto* lay = new QVBoxLayout(w);
    lay->setContentsMargins(0, 0, 0, 0);
    auto* head = new QHBoxLayout;
    auto* name = new QLabel(column == A ? "A" : "B", w);
    QFont bold = name->font();
    bold.setBold(true);
    name->setFont(bold);
    v.source = new QComboBox(w);
    v.source->setObjectName(column == A ? "TryItSourceA" : "TryItSourceB");
    v.source->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    v.source->setMinimumContentsLength(12);
    v.source->setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
    v.source->setToolTip(tr("What this column generates with: the Studio's model, an export, a fine-tune run, or a folder"));
    head->addWidget(name);
    head->addWidget(v.source, 1);
    lay->addLayout(head);
    v.out = new QPlainTextEdit(w);
    v.out->setObjectName(column == A ? "TryItOutputA" : "TryItOutputB");
    v.out->setReadOnly(true);
    lay->addWidget(v.out, 1);
    v.status = new QLabel(w);
    v.status->setObjectName(column == A ? "TryItStatusA" : "TryItStatusB");
    v.status->setWordWrap(true);
    v.status->setTextInteractionFlags(Qt::TextSelectableByMouse);
    lay->addWidget(v.status);
    connect(v.source, qOverload<int>(&QComboBox::currentIndexChanged), this, [this, column] { onSourceChosen(column); });
    return w;
}

// ---- Sources

QList<TryItPanel::SourceChoice> TryItPanel::sourceChoices() const {
    QList<SourceChoice> out;
    for (const Source& s : sources_) out.push_back({s.label, TryItSource{s.kind, s.path.toStdString()}});
    return out;
}

void TryItPanel::setModelPath(const QString& path) {
    if (running()) cancel();   // the model it generates with is no longer the Studio's
    modelPath_ = path;
    sources_[0].path = path;
    sources_[0].label = path.isEmpty() ? tr("Original model (none open)") : tr("Original model: %1").arg(QFileInfo(path).fileName());
    rebuildSources();
    for (ColumnView& v : cols_) v.slot.reset();   // every loaded model goes with the old one
    for (int c : {A, B}) resetSlot(c);
}

void TryItPanel::setExportPath(const QString& dir) {
    if (dir.isEmpty()) return;
    const QString label = tr("Export: %1").arg(QFileInfo(dir).fileName());
    // The export is the one Model source after the Studio's model: the last one replaces it.
    auto it = std::find_if(sources_.begin() + 1, sources_.end(), [](const Source& s) { return s.kind == TryItSourceKind::Model; });
    if (it != sources_.end()) {
        if (it->path == dir) return;
        it->path = dir;
        it->label = label;
    } else {
        sources_.insert(1, {nextId_++, label, TryItSourceKind::Model, dir});
    }
    rebuildSources();
    for (int c : {A, B}) resetSlot(c);
}

void TryItPanel::addRun(const QString& name, const QString& dir) {
    for (Source& s : sources_)
        if (s.kind == TryItSourceKind::Run && s.path == dir) {
            s.label = tr("Run: %1").arg(name);
            rebuildSources();
            return;
        }
    sources_.append({nextId_++, tr("Run: %1").arg(name), TryItSourceKind::Run, dir});
    rebuildSources();
}

int TryItPanel::addFolder(const QString& dir) {
    for (const Source& s : sources_)
        if (s.path == dir && s.kind != TryItSourceKind::Model) return s.id;
    sources_.append({nextId_++, tr("Folder: %1").arg(QFileInfo(dir).fileName()), TryItSourceKind::Folder, dir});
    rebuildSources();
    return sources_.back().id;
}

void TryItPanel::setThreads(int n) {
    if (n == threads_) return;
    threads_ = n;   // a model's threads are set when it loads: load again
    for (ColumnView& v : cols_) v.slot.reset();
    for (int c : {A, B}) resetSlot(c);
}

void TryItPanel::rebuildSources() {
    rebuilding_ = true;
    for (int c : {A, B}) {
        QComboBox* box = cols_[c].source;
        const int was = box->count() ? box->currentData().toInt() : (c == A ? 0 : kNone);
        box->clear();
        if (c == B) box->addItem(tr("(none)"), kNone);
        for (const Source& s : sources_) {
            box->addItem(s.label, s.id);
            box->setItemData(box->count() - 1, s.path, Qt::ToolTipRole);
        }
        box->addItem(tr("Browse folder…"), kBrowse);
        const int index = box->findData(was);
        box->setCurrentIndex(index >= 0 ? index : 0);   // a source that went: A the Studio's model, B none
        cols_[c].lastIndex = box->currentIndex();
    }
    rebuilding_ = false;
}

const TryItPanel::Source* TryItPanel::chosen(int column) const {
    const QComboBox* box = cols_[column].source;
    if (box->currentIndex() < 0) return nullptr;
    const int id = box->currentData().toInt();
    for (const Source& s : sources_)
        if (s.id == id) return &s;
    return nullptr;
}

bool TryItPanel::selectSource(int column, TryItSourceKind kind, const QString& path) {
    for (const Source& s : sources_)
        if (s.kind == kind && s.path == path) {
            cols_[column].source->setCurrentIndex(cols_[column].source->findData(s.id));
            return true;
        }
    return false;
}

void TryItPanel::selectNone() { cols_[B].source->setCurrentIndex(cols_[B].source->findData(kNone)); }

void TryItPanel::onSourceChosen(int column) {
    if (rebuilding_) return;
    ColumnView& v = cols_[column];
    if (v.source->currentData().toInt() == kBrowse) {
        QString dir;
        if (interactive_)
            dir = QFileDialog::getExistingDirectory(this, tr("A fine-tune run, an adapter, an export or a model folder"),
                                                    chosen(A) ? QFileInfo(chosen(A)->path).absolutePath() : QString());
        QSignalBlocker block(v.source);
        v.source->setCurrentIndex(v.lastIndex);   // back to the last source, unless a folder was picked
        if (dir.isEmpty()) return;
        block.unblock();
        v.source->setCurrentIndex(v.source->findData(addFolder(dir)));
        return;
    }
    v.lastIndex = v.source->currentIndex();
    resetSlot(column);
    if (!running()) {
        v.status->setText(chosen(column) ? tr("Ready: %1").arg(chosen(column)->label) : tr("Pick a second source to compare with."));
        v.status->setToolTip(chosen(column) ? chosen(column)->path : QString());
    }
}

void TryItPanel::resetSlot(int column) {
    const Source* s = chosen(column);
    ColumnView& v = cols_[column];
    if (!s) {
        v.slot.reset();
        return;
    }
    const std::string key = TryItSource{s->kind, s->path.toStdString()}.key();
    if (v.slot && v.slot->key == key) return;   // the same source: keep its model
    const auto& other = cols_[1 - column].slot;
    v.slot = other && other->key == key ? other : std::make_shared<GeneratorSlot>(key);   // one model for both columns
}

int TryItPanel::loads(int column) const { return cols_[column].slot ? cols_[column].slot->loads : 0; }

// ---- Options

void TryItPanel::setPrompt(const QString& text) { prompt_->setPlainText(text); }
QString TryItPanel::prompt() const { return prompt_->toPlainText(); }

loftq::GenerateOptions TryItPanel::options() const {
    loftq::GenerateOptions o;
    o.max_tokens = maxTokens_->value();
    o.sampling.temperature = temperature_->value();
    o.sampling.top_k = topK_->value();
    o.sampling.top_p = topP_->value();
    o.sampling.seed = uint64_t(seed_->value());
    return o;
}

void TryItPanel::setOptions(const loftq::GenerateOptions& o) {
    maxTokens_->setValue(o.max_tokens);
    temperature_->setValue(o.sampling.temperature);
    topK_->setValue(o.sampling.top_k);
    topP_->setValue(o.sampling.top_p);
    seed_->setValue(int(o.sampling.seed));
}

// ---- Generation

bool TryItPanel::running() const { return job_->running(); }

bool TryItPanel::generate() {
    if (job_->running()) return false;
    const std::string prompt = prompt_->toPlainText().toStdString();
    const loftq::GenerateOptions opt = options();
    std::vector<TryItColumnWork> work;
    QTextCharFormat promptFormat;
    promptFormat.setFontWeight(QFont::Bold);
    for (int c : {A, B}) {
        ColumnView& v = cols_[c];
        v.text.clear();
        v.pending.clear();
        v.tokens = v.tokenEvents = v.appends = 0;
        v.ok = v.active = v.used = false;
        const Source* s = chosen(c);
        if (!s) continue;
        resetSlot(c);
        v.active = v.used = true;
        v.out->clear();
        QTextCursor cur(v.out->document());
        cur.insertText(prompt_->toPlainText(), promptFormat);
        v.status->setText(c == A ? tr("Waiting…") : tr("Waiting for A…"));
        v.status->setToolTip(s->path);
        work.push_back({c, TryItSource{s->kind, s->path.toStdString()}, v.slot});
    }
    if (!cols_[B].active) {
        cols_[B].out->clear();
        cols_[B].status->setText(tr("Pick a second source to compare with."));
    }
    // The work holds its slots (shared) and the JobThread, never this panel: everything that
    // touches the widgets is a call queued to the GUI thread (JobThread::post).
    JobThread* job = job_;
    TryItCallbacks cb;
    cb.loading = [this, job](int c) { job->post([this, c] { cols_[c].status->setText(tr("Loading the model…")); }); };
    cb.generating = [this, job](int c, const std::string& what) {
        job->post([this, c, what = QString::fromStdString(what)] {
            cols_[c].status->setText(tr("Generating…"));
            cols_[c].status->setToolTip(what);
        });
    };
    cb.token = [this, job](int c, const loftq::GeneratedToken& t) {
        job->post([this, c, text = QString::fromStdString(t.text)] { onToken(c, text); });
    };
    cb.done = [this, job](int c, const loftq::GenerateResult& r) {
        const int n = int(r.ids.size());
        const double tps = r.tokens_per_second(), prefill = r.prefill_seconds;
        const QString stop = QString::fromLatin1(loftq::kGenerateStopNames.name(r.stop));
        job->post([this, c, n, tps, prefill, stop] { onColumnDone(c, n, tps, prefill, stop); });
    };
    cb.failed = [this, job](int c, const std::string& e) {
        job->post([this, c, e = QString::fromStdString(e)] { onColumnFailed(c, e); });
    };
    const int threads = threads_;
    job_->start([work = std::move(work), prompt, opt, threads, cb](const loftq::CancelToken& token) {
        run_try_it(work, prompt, opt, threads, cb, token);
    });
    updateEnabled();
    return true;
}

void TryItPanel::cancel() {
    if (!job_->running()) return;
    job_->cancel();
    for (ColumnView& v : cols_)
        if (v.active) v.status->setText(tr("Cancelling…"));
}

void TryItPanel::onToken(int column, const QString& text) {
    ColumnView& v = cols_[column];
    v.pending += text;
    ++v.tokenEvents;
    ++v.tokens;
    if (!flushTimer_->isActive()) flushTimer_->start();
}

void TryItPanel::flush() {
    flushTimer_->stop();
    for (ColumnView& v : cols_) {
        if (v.pending.isEmpty()) continue;
        QScrollBar* sb = v.out->verticalScrollBar();
        const bool atEnd = sb->value() >= sb->maximum() - 2;
        QTextCursor cur(v.out->document());
        cur.movePosition(QTextCursor::End);
        cur.insertText(v.pending, QTextCharFormat());
        v.text += v.pending;
        v.pending.clear();
        ++v.appends;
        if (atEnd) sb->setValue(sb->maximum());   // follow the text unless the user scrolled up
    }
}

void TryItPanel::onColumnDone(int column, int tokens, double tokensPerSecond, double prefill, const QString& stop) {
    flush();
    ColumnView& v = cols_[column];
    v.active = false;
    v.ok = true;
    v.status->setText(tr("%1 tokens · %2 tokens/s · stopped at %3 · prompt %4 ms")
                          .arg(tokens)
                          .arg(tokensPerSecond, 0, 'f', tokensPerSecond >= 100 ? 0 : 1)
                          .arg(stop)
                          .arg(prefill * 1000, 0, 'f', 1));
}

void TryItPanel::onColumnFailed(int column, const QString& error) {
    flush();
    ColumnView& v = cols_[column];
    v.active = false;
    v.status->setText(tr("Error: %1").arg(error));
    emit message(tr("Try it, column %1: %2").arg(column == A ? "A" : "B", error), true);
}

void TryItPanel::onEnded(bool cancelled, const QString& why) {
    flush();
    bool ok = !cancelled && why.isEmpty();
    for (ColumnView& v : cols_) {
        if (v.active) {   // it was generating or waiting when the job ended
            v.status->setText(cancelled ? (v.tokens ? tr("Cancelled after %1 tokens").arg(v.tokens) : tr("Cancelled"))
                                        : tr("Error: %1").arg(why));
            v.active = false;
            ok = false;
        } else if (v.used && !v.ok) {
            ok = false;   // failed (its status says why)
        }
    }
    updateEnabled();
    emit finished(ok);
}

void TryItPanel::updateEnabled() {
    generateButton_->setEnabled(!job_->running());
    cancelButton_->setEnabled(job_->running());
}

}  // namespace studio
