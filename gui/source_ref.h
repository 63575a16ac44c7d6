// A source of regions as remembered in the recent-sources menu (QSettings):
// a Django project, a JSON file, one region typed by hand, or a remote site. Stored as a
// compact JSON string so the menu survives versions that add fields.
#pragma once

#include <QString>

#include "django_describer.h"
#include "region_spec.h"
#include "remote_store.h"

namespace rcgui {

struct SourceRef {
  enum class Type { kDjango, kJsonFile, kManual, kRemote };
  Type type = Type::kDjango;
  DjangoProject django;   // kDjango
  QString path;           // kJsonFile
  RegionSpec manual;      // kManual (kind, location, options)
  RemoteSite remote;      // kRemote (destination or prefix, settings, python, paths, options)

  QString label() const;  // for the menu: "Django demo.settings (examples/demo_site)"
  QString encode() const;
  static bool decode(const QString& text, SourceRef* out);
};

}  // namespace rcgui
