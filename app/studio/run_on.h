// run_on.h: the "Run on" choice (dist/launcher.h): this machine, or a launcher template such as
// `mpirun --hostfile hosts -np {n}`, `srun -N {nodes} -n {n}` or `ssh gpu-box` (typed, or picked
// from the last ones used, kept in QSettings), with the ranks ({n}), the run folder on the target
// and the loftq program there. A thin form: it parses nothing itself but through the launcher's
// parse_template, whose error it shows under the combo.
#pragma once
#include <QWidget>

#include "dist/launcher.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QSpinBox;

namespace studio {

class RunOnBox : public QWidget {
    Q_OBJECT
public:
    explicit RunOnBox(QWidget* parent = nullptr);
    static QString thisMachine();            // the first item's text
    bool local() const;                      // "This machine" (or an empty template)
    // The target as the form shows it; throws loftq::Error for a template parse_template refuses.
    loftq::RunTarget target() const;
    void setTemplate(const QString& templ);  // "" = this machine
    void setRanks(int n);
    void setRemoteDir(const QString& dir);
    void setRemoteLoftq(const QString& program);
    // Remembers the current template among the recent ones (after a successful start).
    void remember();
    QComboBox* combo() const { return combo_; }

signals:
    void changed();

private:
    void validate();
    QComboBox* combo_ = nullptr;
    QSpinBox* ranks_ = nullptr;
    QLineEdit *remoteDir_ = nullptr, *remoteLoftq_ = nullptr;
    QLabel* note_ = nullptr;
};

}  // namespace studio
