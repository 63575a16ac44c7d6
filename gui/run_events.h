// Running the event loop until something holds: the --screenshot mode waits
// so for the window to fill, and the app's tests for what they drive.
#pragma once

#include <functional>

namespace rcgui {

// Runs the event loop, step_ms at a time, until done() holds (true) or
// timeout_ms passes (false).
bool RunEventsUntil(const std::function<bool()>& done, int timeout_ms, int step_ms);

}  // namespace rcgui
