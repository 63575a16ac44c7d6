#include "run_events.h"

#include <QElapsedTimer>
#include <QEventLoop>
#include <QTimer>

namespace rcgui {

bool RunEventsUntil(const std::function<bool()>& done, int timeout_ms, int step_ms) {
  QElapsedTimer t;
  t.start();
  while (!done()) {
    if (t.elapsed() > timeout_ms) return false;
    QEventLoop loop;
    QTimer::singleShot(step_ms, &loop, &QEventLoop::quit);
    loop.exec();
  }
  return true;
}

}  // namespace rcgui
