// The --screenshot mode: waits until the window shows its regions and keys,
// then saves PNGs of the main views (the region list with keys, and the value
// viewer on a JSON value, an image, a pickle and binary bytes when the
// region holds such values, and the Pages tab with a cached page selected
// when the region holds pages recorded by regioncache.cache_page) into a
// directory. Used by gui/screenshots.sh for
// the README; runs offscreen.
#pragma once

#include <QString>
#include <QStringList>

namespace rcgui {

class MainWindow;

// Returns the files written; *error set (and an empty list) on failure.
QStringList TakeScreenshots(MainWindow* window, const QString& dir, QString* error);

}  // namespace rcgui
