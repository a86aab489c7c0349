// gui_wait.h: helpers of the GUI tests (header-only, Qt Core + Test).
//   wait_bool(obj, &Class::signal, ms)  waits for a signal whose first argument is a bool and
//                                       returns it (false after the timeout)
//   Heartbeat                           the longest gap between ticks of a 5 ms timer while it
//                                       lives, in ms: how long the GUI thread was ever busy
#pragma once
#include <QElapsedTimer>
#include <QObject>
#include <QSignalSpy>
#include <QTimer>
#include <algorithm>

namespace loftq::test {

template <typename Obj, typename Sig>
bool wait_bool(Obj* o, Sig signal, int timeout_ms) {
    QSignalSpy spy(o, signal);
    if (!spy.wait(timeout_ms)) return false;
    return spy.takeFirst().at(0).toBool();
}

struct Heartbeat {
    QTimer timer;
    QElapsedTimer clock;
    qint64 last = 0, worst = 0;
    Heartbeat() {
        timer.setInterval(5);
        QObject::connect(&timer, &QTimer::timeout, [this] {
            const qint64 now = clock.elapsed();
            worst = std::max(worst, now - last);
            last = now;
        });
        clock.start();
        timer.start();
    }
};

}  // namespace loftq::test
