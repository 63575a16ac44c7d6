// A source of regions as remembered in the recent-sources menu (QSettings):
// a Django project, a JSON file, or one region typed by hand. Stored as a
// compact JSON string so the menu survives versions that add fields.
#pragma once

#include <QString>

#include "django_describer.h"
#include "region_spec.h"

namespace rcgui {

struct SourceRef {
  enum class Type { kDjango, kJsonFile, kManual };
  Type type = Type::kDjango;
  DjangoProject django;   // kDjango
  QString path;           // kJsonFile
  RegionSpec manual;      // kManual (kind, location, options)

  QString label() const;  // for the menu: "Django demo.settings (examples/demo_site)"
  QString encode() const;
  static bool decode(const QString& text, SourceRef* out);
};

}  // namespace rcgui
