// test_fuzz_corpus: every fuzz target (fuzz/targets.h) over every input of its corpus
// (fuzz/corpus/<target>/: the seeds, and each input a fuzzing run found and we fixed, so that a
// fixed crash stays fixed in builds without libFuzzer). A finding aborts the test with
// "loftq fuzz: FINDING: ..." and the input's name printed just before it.
#include <QDir>
#include <QtTest>

#include <cstdio>

#include "targets.h"

using namespace loftq::fuzz;

class TestFuzzCorpus : public QObject {
    Q_OBJECT
private slots:
    // The CMake list of fuzz executables, targets.h's table and the corpus folders agree.
    void everyTargetHasACorpus() {
        QStringList cmake = QString(LOFTQ_FUZZ_TARGET_NAMES).split(',');
        QStringList table;
        for (const auto& t : kTargets) table << t.name;
        QCOMPARE(table, cmake);
        for (const auto& t : kTargets) {
            QDir d(QString(LOFTQ_FUZZ_DIR) + "/corpus/" + t.name);
            QVERIFY2(d.exists() && !d.entryList(QDir::Files).isEmpty(), qPrintable(d.path() + " has no seeds"));
        }
    }
    void corpus_data() {
        QTest::addColumn<int>("target");
        QTest::addColumn<QString>("file");
        for (int i = 0; i < int(std::size(kTargets)); ++i) {
            QDir d(QString(LOFTQ_FUZZ_DIR) + "/corpus/" + kTargets[i].name);
            for (const QString& f : d.entryList(QDir::Files, QDir::Name))
                QTest::newRow(qPrintable(QString(kTargets[i].name) + "/" + f)) << i << d.filePath(f);
        }
    }
    void corpus() {
        QFETCH(int, target);
        QFETCH(QString, file);
        QFile f(file);
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QByteArray bytes = f.readAll();
        std::fprintf(stderr, "replaying %s\n", qPrintable(file));
        QCOMPARE(kTargets[target].fn(reinterpret_cast<const uint8_t*>(bytes.constData()), size_t(bytes.size())), 0);
    }
};

QTEST_GUILESS_MAIN(TestFuzzCorpus)
#include "test_fuzz_corpus.moc"
