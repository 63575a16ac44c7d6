// The desktop app's remote source against its local one, in one run: the
// same shared-memory region opened by the app's core (Region::acquire, as
// for a local source) and through the inspection agent started as a local
// child by the `sh -c` prefix (RemoteStore over AgentClient, as for a Remote
// site, minus the network). Best of 5 rounds, each side in turn:
//
//   build/<dir>/gui/gui_remote_bench [ENTRIES]     (default 20,000)
//
// - list: every key, in pages of 10,000 (the app's largest page);
// - peek: 1,000 values read one by one (the value viewer's read);
// - stats: 200 GetStats (the region list's refresh of one region).
#include <QCoreApplication>
#include <QDir>
#include <QFile>
#include <QJsonDocument>
#include <QTemporaryDir>
#include <chrono>
#include <cstdio>
#include <functional>

#include "region.h"
#include "remote_store.h"
#include "test_support.h"

using namespace rcgui;
using namespace rcgui::testing;

namespace {

double BestMs(const std::function<bool()>& fn) {
  double best = 1e300;
  for (int round = 0; round < 5; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    if (!fn()) return -1;
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, ms);
  }
  return best;
}

bool ListAll(regioncache::Store& store, size_t* n) {
  regioncache::ListOptions opts;
  opts.limit = 10000;
  *n = 0;
  for (;;) {
    regioncache::ListPage page;
    if (!store.List(opts, &page).ok()) return false;
    *n += page.entries.size();
    if (page.next_cursor.empty()) return true;
    opts.cursor = page.next_cursor;
  }
}

}  // namespace

int main(int argc, char** argv) {
  QCoreApplication app(argc, argv);
  const int entries = argc > 1 ? std::atoi(argv[1]) : 20000;
  qputenv("PYTHONPATH", TestPythonPath().toLocal8Bit());
  KindUnderTest shm;
  for (const KindUnderTest& k : AllKinds())
    if (k.kind == "shm") shm = k;
  QJsonObject conf = shm.django_conf(UniqueName("bench-remote"));
  conf["OPTIONS"] = QJsonObject{{"SIZE", "64MB"}};
  QString error;
  DjangoRegion(conf, {"set-many", QString::number(entries), "user:", "3600"}, &error);
  if (!error.isEmpty()) {
    std::fprintf(stderr, "the region could not be filled: %s\n", qPrintable(error));
    return 1;
  }
  QTemporaryDir dir;
  QFile settings(QDir(dir.path()).filePath("bench_remote_settings.py"));
  if (!settings.open(QIODevice::WriteOnly)) return 1;
  settings.write("SECRET_KEY = 'x'\nINSTALLED_APPS = ['regioncache']\nCACHES = " +
                 QJsonDocument(QJsonObject{{"default", conf}}).toJson(QJsonDocument::Compact) + "\n");
  settings.close();

  RemoteSite site;
  site.use_prefix = true;
  site.prefix = {"sh", "-c"};
  site.python = PythonExe();
  site.settings = "bench_remote_settings";
  site.pythonpath = {dir.path()};
  auto client = std::make_shared<AgentClient>(site.Command());
  QList<RegionSpec> specs;
  int status = 0;
  if (!FetchRemoteRegions(site, client, &specs, &error) || specs.size() != 1) {
    std::fprintf(stderr, "the agent did not list the region: %s\n", qPrintable(error));
    status = 1;
  } else {
    Region remote(specs[0]);
    Region local(SpecFromConf("default", "shm", conf));
    regioncache::Status s;
    auto rs = remote.acquire(&s);
    auto ls = local.acquire(&s);
    if (!rs || !ls) {
      std::fprintf(stderr, "cannot open: %s\n", s.ToString().c_str());
      status = 1;
    } else {
      std::vector<std::string> keys;
      regioncache::ListOptions opts;
      opts.limit = 1000;
      regioncache::ListPage page;
      ls->List(opts, &page);
      for (const auto& e : page.entries) keys.push_back(e.key);
      std::printf("%d entries, shared memory; best of 5 rounds\n", entries);
      std::printf("%-32s %16s %16s %8s\n", "", "local", "remote", "ratio");
      auto row = [](const char* what, double l, double r, double per, const char* unit) {
        std::printf("%-32s %9.3f %s %9.3f %s %7.1fx\n", what, l / per, unit, r / per, unit, r / l);
      };
      size_t n = 0;
      const double list_l = BestMs([&] { return ListAll(*ls, &n); });
      const double list_r = BestMs([&] { return ListAll(*rs, &n); });
      row("list, every key (pages of 10k)", list_l * 1000, list_r * 1000, double(entries), "us/key");
      auto peek_all = [&](regioncache::Store& st) {
        for (const auto& k : keys) {
          regioncache::Value v;
          if (!st.Peek(k, &v).ok()) return false;
        }
        return true;
      };
      const double peek_l = BestMs([&] { return peek_all(*ls); });
      const double peek_r = BestMs([&] { return peek_all(*rs); });
      row("peek, one value", peek_l * 1000, peek_r * 1000, double(keys.size()), "us   ");
      auto stats = [&](regioncache::Store& st) {
        for (int i = 0; i < 200; ++i) {
          regioncache::Stats out;
          if (!st.GetStats(&out).ok()) return false;
        }
        return true;
      };
      const double stats_l = BestMs([&] { return stats(*ls); });
      const double stats_r = BestMs([&] { return stats(*rs); });
      row("stats of the region", stats_l * 1000, stats_r * 1000, 200.0, "us   ");
    }
  }
  shm.cleanup(conf);
  return status;
}
