// main.cpp: `loftq-studio [MODEL] [--demo] [--plan FILE] [--run] [--finetune N] [--try-it PROMPT]
// [--screenshot FILE.png] [--size WxH] [--threads N]`. With --screenshot the window is rendered
// (offscreen works) after the model opens, the plan loads, with --run a full run ends, with
// --finetune the two fine-tunes end and with --try-it the Try it tab has generated; then the
// program exits (status 0 on success). Everything else is the interactive desktop app.
#include <QApplication>
#include <QCommandLineParser>
#include <QDir>
#include <QDockWidget>
#include <QEventLoop>
#include <QFileInfo>
#include <QIcon>
#include <QLabel>
#include <QTabWidget>
#include <QTimer>
#include <cstdio>

#include "error_chart.h"
#include "error_heatmap.h"
#include "improvement_chart.h"
#include "log_panel.h"
#include "studio/main_window.h"
#include "plan_document.h"
#include "plan_grid_view.h"
#include "rules_panel.h"
#include "studio/finetune.h"
#include "studio/mixed.h"
#include "studio/try_it.h"
#include "training_curves.h"

namespace {

// Waits for `signal` of `obj` (or a timeout); returns its bool argument, false on timeout.
template <typename Obj, typename Sig>
bool wait_for(Obj* obj, Sig signal, int timeout_ms) {
    QEventLoop loop;
    bool result = false;
    QObject::connect(obj, signal, &loop, [&](bool ok) {
        result = ok;
        loop.quit();
    });
    QTimer::singleShot(timeout_ms, &loop, &QEventLoop::quit);
    loop.exec();
    return result;
}

}  // namespace

int main(int argc, char** argv) {
    // --screenshot, --help and --version need no screen: use the offscreen platform when there
    // is no display, instead of failing to start.
    bool headless_ok = false;
    for (int i = 1; i < argc; ++i) {
        const QByteArray a(argv[i]);
        headless_ok |= a == "--screenshot" || a.startsWith("--screenshot=") || a == "--help" || a == "-h" || a == "--version" || a == "-v";
        headless_ok |= a == "--front-png" || a.startsWith("--front-png=");
    }
    if (headless_ok && qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM") && qEnvironmentVariableIsEmpty("DISPLAY") &&
        qEnvironmentVariableIsEmpty("WAYLAND_DISPLAY"))
        qputenv("QT_QPA_PLATFORM", "offscreen");
    QApplication app(argc, argv);
    Q_INIT_RESOURCE(studio);  // the .qrc lives in the static library loftq_studio
    QApplication::setOrganizationName("LoftQStudio");
    QApplication::setApplicationName("loftq-studio");
    QApplication::setApplicationVersion(LOFTQ_VERSION);
    QApplication::setWindowIcon(QIcon(":/studio/loftq-studio.svg"));

    QCommandLineParser p;
    p.setApplicationDescription("LoftQ Studio: plan, run and export LoftQ quantization of LLM checkpoints.");
    p.addHelpOption();
    p.addVersionOption();
    p.addPositionalArgument("model", "Checkpoint to open: HF folder, .safetensors or llama2.c .bin", "[MODEL]");
    QCommandLineOption demo("demo", "Open the demo model: the shipped stories260K (llama2.c, MIT licence), with a story corpus for the Fine-tune tab.");
    QCommandLineOption plan("plan", "Load this plan (*.loftq.json) after opening.", "file");
    QCommandLineOption run("run", "With --screenshot: run the whole plan before rendering.");
    QCommandLineOption shot("screenshot", "Render the main window to this PNG and exit.", "file");
    QCommandLineOption size("size", "Window size for --screenshot (default 1500x940).", "WxH", "1500x940");
    QCommandLineOption threads("threads", "Engine threads (0 = all cores).", "n", "0");
    QCommandLineOption rule("show-rule", "With --screenshot: show the Rules dock with rule N selected (its cells outlined).", "n");
    QCommandLineOption finetune("finetune", "With --screenshot: fine-tune the open model N steps (LoftQ, then QLoRA, same settings) on the Fine-tune tab before rendering.", "n");
    QCommandLineOption tryIt("try-it", "With --screenshot: generate from PROMPT on the Try it tab before rendering: column A the open model, column B the first --finetune run (if any).", "prompt");
    p.addOptions({demo, plan, run, shot, size, threads, rule, finetune, tryIt});
    QCommandLineOption front("front", "With --front-png: a front written by `loftq plan auto ... --front FILE.json`.", "file");
    QCommandLineOption frontPng("front-png", "Render the Pareto chart of --front to this PNG (--size, default 1000x620) and exit; MODEL is not needed.", "file");
    p.addOptions({front, frontPng});
    p.process(app);
    if (p.isSet(frontPng)) {   // headless: the mixed-precision chart of a front file (studio/mixed.h)
        const QStringList wh = p.isSet(size) ? p.value(size).split('x') : QStringList{"1000", "620"};
        QString err = "--front-png needs --front FILE.json";
        if (!p.isSet(front) || !studio::render_front_png(p.value(front), p.value(frontPng), QSize(wh.value(0).toInt(), wh.value(1).toInt()), &err)) {
            std::fprintf(stderr, "loftq-studio: %s\n", qPrintable(err));
            return 1;
        }
        std::printf("loftq-studio: wrote %s\n", qPrintable(p.value(frontPng)));
        return 0;
    }

    studio::MainWindow w;
    w.setThreads(p.value(threads).toInt());
    const bool screenshot = p.isSet(shot);
    if (screenshot) {
        w.setInteractive(false);
        QStringList wh = p.value(size).split('x');
        w.resize(wh.value(0).toInt() > 0 ? wh.value(0).toInt() : 1500, wh.value(1).toInt() > 0 ? wh.value(1).toInt() : 940);
    }
    w.show();

    QString model = p.positionalArguments().value(0);
    bool opened = false;
    if (p.isSet(demo) || !model.isEmpty()) {
        if (p.isSet(demo)) QTimer::singleShot(0, &w, [&w] { w.openDemo(); });
        else QTimer::singleShot(0, &w, [&w, model] { w.openModel(model); });
        if (screenshot) opened = wait_for(&w, &studio::MainWindow::openFinished, 120000);
        else QObject::connect(&w, &studio::MainWindow::openFinished, &w, [&w, &p, &plan](bool ok) {
                 if (ok && p.isSet(plan)) w.loadPlan(p.value(plan));
             }, Qt::SingleShotConnection);
    }
    if (!screenshot) {
        QTimer::singleShot(300, &w, [&w] { w.showFirstRunHelp(); });   // the guided first run, once
        return app.exec();
    }

    if (!opened && (p.isSet(demo) || !model.isEmpty())) {
        const QString why = w.log()->lastError();
        std::fprintf(stderr, "loftq-studio: could not open the model%s%s\n", why.isEmpty() ? "" : ": ", qPrintable(why));
        return 1;
    }
    // The plan loads in the background (studio/plan_load.h): wait for its answer.
    if (p.isSet(plan) && (!w.loadPlan(p.value(plan)) || !wait_for(&w, &studio::MainWindow::planLoaded, 120000))) {
        const QString why = w.log()->lastError();
        std::fprintf(stderr, "loftq-studio: could not load the plan %s%s%s\n", qPrintable(p.value(plan)), why.isEmpty() ? "" : ": ",
                     qPrintable(why));
        return 1;
    }
    if (p.isSet(run) && opened) {
        // Show curves for a few weights: the first and the last layer's cells.
        QList<QPoint> cells;
        const auto* doc = w.document();
        for (int layer : {0, doc->layers() - 1})
            for (int c = 0; c < doc->columns().size(); ++c) cells.append(QPoint(c, layer));
        w.grid()->selectCells(cells);
        if (!w.runAll() || !wait_for(&w, &studio::MainWindow::runFinished, 600000)) {
            std::fprintf(stderr, "loftq-studio: the run did not finish\n");
            return 1;
        }
    }
    QString firstRun;
    if (p.isSet(finetune) && opened) {
        studio::FinetunePanel* ft = w.finetune();
        w.centralTabs()->setCurrentWidget(ft);
        for (auto init : {loftq::InitKind::Loftq, loftq::InitKind::Qlora}) {
            loftq::TrainOptions o = ft->options();
            o.steps = p.value(finetune).toInt();
            o.batch = 8;
            o.seq = 64;
            o.eval_every = std::max(1, o.steps / 8);
            o.load.init = init;
            o.load.quant = "nf2";
            o.load.rank = 8;
            o.threads = p.value(threads).toInt();
            ft->setOptions(o);
            if (!ft->start() || !wait_for(ft, &studio::FinetunePanel::runFinished, 1800000)) {
                std::fprintf(stderr, "loftq-studio: the fine-tune did not finish\n");
                return 1;
            }
            if (firstRun.isEmpty()) firstRun = ft->lastOutDir();   // the LoftQ run, for --try-it's column B
        }
        ft->curves()->replotNow();
    }
    if (p.isSet(tryIt) && opened) {
        studio::TryItPanel* t = w.tryIt();
        w.centralTabs()->setCurrentWidget(t);
        t->setPrompt(p.value(tryIt));
        t->selectSource(studio::TryItPanel::A, studio::TryItSourceKind::Model, w.document()->modelPath());
        if (firstRun.isEmpty() || !t->selectSource(studio::TryItPanel::B, studio::TryItSourceKind::Run, firstRun)) t->selectNone();
        if (!t->generate() || !wait_for(t, &studio::TryItPanel::finished, 600000)) {
            std::fprintf(stderr, "loftq-studio: Try it did not generate: A: %s; B: %s\n", qPrintable(t->status(0)->text()),
                         qPrintable(t->status(1)->text()));
            return 1;
        }
    }
    if (p.isSet(rule)) {
        if (auto* d = w.findChild<QDockWidget*>("RulesDock")) d->raise();
        w.rulesPanel()->setCurrentRule(p.value(rule).toInt());
    }
    w.chart()->replotNow();
    w.heatmap()->replotNow();
    w.improvement()->replotNow();
    QEventLoop settle;
    QTimer::singleShot(200, &settle, &QEventLoop::quit);
    settle.exec();
    const QString out = p.value(shot);
    QDir().mkpath(QFileInfo(out).absolutePath());
    if (!w.grab().save(out)) {
        std::fprintf(stderr, "loftq-studio: cannot write %s\n", qPrintable(out));
        return 1;
    }
    std::printf("loftq-studio: wrote %s\n", qPrintable(out));
    return 0;
}
