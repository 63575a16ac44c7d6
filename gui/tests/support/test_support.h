// Shared helpers of the desktop app's QtTest programs: running the Python
// backend (the real Django cache) on a region, and the store kinds under test.
#pragma once

#include <QByteArray>
#include <QJsonArray>
#include <QJsonObject>
#include <QString>
#include <QStringList>
#include <functional>

#include "key_table_model.h"
#include "region.h"
#include "region_spec.h"

namespace rcgui::testing {

// The interpreter that has Django and regioncache (CMake's Python3, or
// $REGIONCACHE_TEST_PYTHON).
QString PythonExe();

// PYTHONPATH for the Python the tests run (RunPython, the app's describe
// child): this source tree's django_backend/ first when the native module is
// built there (a _native*.so beside the package), else $PYTHONPATH as it is,
// so that a regioncache installed with `pip install .` is the one imported.
QString TestPythonPath();

// Runs python with args; returns its stdout. On failure (cannot start, exit
// status != 0, timeout) *error names the command and holds its stderr.
bool RunPython(const QStringList& args, QByteArray* out, QString* error, int timeout_ms = 120000);

// Runs gui/tests/support/django_region.py CONF cmd args... and parses its
// JSON output. Fails the calling test (QFAIL-style, through *ok) otherwise.
QByteArray DjangoRegion(const QJsonObject& conf, const QStringList& cmd_args, QString* error);

// A region name unique to this process and call: "guitest-<pid>-<tag>-<n>".
QString UniqueName(const QString& tag);

// One store kind as the tests use it: how Django is configured for a fresh
// region of that kind, how the app names it, and how to remove it after.
// Adding a kind (file, memcached) is one more entry in AllKinds().
struct KindUnderTest {
  QString kind;
  // The CACHES entry for a new region (BACKEND, LOCATION, OPTIONS).
  std::function<QJsonObject(const QString& unique_name)> django_conf;
  // The CACHES entry of a region that cannot be reached (no segment, no server).
  std::function<QJsonObject(const QString& unique_name)> absent_conf;
  // Removes what django_conf made (segment, directory); must not fail if gone.
  std::function<void(const QJsonObject& conf)> cleanup;
};
QList<KindUnderTest> AllKinds();

// The spec the app opens for a CACHES entry (as `describe` would print it).
RegionSpec SpecFromConf(const QString& alias, const QString& kind, const QJsonObject& conf);

// Lists the keys of region matching glob into model through a KeyLoader, as
// the app does; false, with *error naming why, when the listing fails or does
// not finish within timeout_ms.
bool ListInto(KeyTableModel* model, const RegionPtr& region, const QString& glob, QString* error,
              int timeout_ms = 30000);

// Waits (running the event loop) until pred holds; false on timeout.
bool WaitUntil(const std::function<bool()>& pred, int timeout_ms = 30000);

}  // namespace rcgui::testing
