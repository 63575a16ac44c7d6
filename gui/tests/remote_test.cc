// The app on a Remote site: the real agent (python -m regioncache agent) as
// a local child through the `sh -c` prefix, quoted exactly as for ssh, on
// regions Django filled; what the app purges and deletes is then checked
// through Django. A killed or silent agent shows as a lost connection while
// the window keeps processing events, and a refresh brings the rows back.
#include <QAction>
#include <QApplication>
#include <QDir>
#include <QJsonDocument>
#include <QProcess>
#include <QSettings>
#include <QStandardPaths>
#include <QTableView>
#include <QTemporaryDir>
#include <QTimer>
#include <QtTest>
#include <atomic>
#include <thread>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent_client.h"
#include "key_browser.h"
#include "main_window.h"
#include "remote_store.h"
#include "source_dialogs.h"
#include "source_ref.h"
#include "test_support.h"
#include "value_viewer.h"

using namespace rcgui;
using namespace rcgui::testing;

class RemoteTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase();
  void cleanup();
  void quotingSurvivesTheShell();
  void sourceRefRemoteRoundTrip();
  void remoteSiteListsShowsPurgesAndDjangoSeesIt();
  void killedAgentShowsLostAndRefreshReconnects();
  void silentAgentTimesOut();
  void agentThatCannotLoadSettingsSaysSo();
  void readOnlyAgentRefusesWrites();
  void cancelledPurgeStopsTheAgent();
  void wrongOrDeadAgentsAreNamed();
  void bigValuesThroughTheAgent();
  void cancelReachesAQuietAgent();
  void shutdownEndsACallUnderWay();
  void throughRealSsh();

 private:
  // Regions filled by Django (a shm alias "default" and a memcached alias
  // "mc"), a settings module naming them, and a site that reaches them
  // through the agent run by `sh -c`.
  bool makeSite(RemoteSite* site);
  bool openWindow(const RemoteSite& site);
  int rowOfRemote(const QString& name) const;
  // Selects the remote region "default", waits for its 10 keys, filters on
  // "session:" (2 keys) and purges them through the app; *ok and *text say
  // how the purge ended. False (the test failed) when a step did not happen.
  bool purgeSessions(bool* ok, QString* text);
  QJsonObject djangoHas(const QJsonObject& conf, const QStringList& names);

  QTemporaryDir dir_;
  QJsonObject shm_conf_, mc_conf_;
  std::unique_ptr<MainWindow> window_;
  std::vector<std::function<void()>> cleanups_;
};

void RemoteTest::initTestCase() {
  QStandardPaths::setTestModeEnabled(true);
  static QTemporaryDir settings_dir;
  QSettings::setPath(QSettings::NativeFormat, QSettings::UserScope, settings_dir.path());
  QApplication::setOrganizationName("regioncache-tests");
  QApplication::setApplicationName("regioncache-gui-remote-test");
  QSettings().clear();
  QVERIFY(dir_.isValid());
  // The agent, a child of a child, finds this tree's package as the tests' Python does.
  qputenv("PYTHONPATH", TestPythonPath().toLocal8Bit());
}

void RemoteTest::cleanup() {
  window_.reset();
  for (auto& c : cleanups_) c();
  cleanups_.clear();
}

bool RemoteTest::makeSite(RemoteSite* site) {
  const QList<KindUnderTest> kinds = AllKinds();
  QString error;
  for (const KindUnderTest& k : kinds) {
    if (k.kind != "shm" && k.kind != "memcached") continue;
    QJsonObject conf = k.django_conf(UniqueName("remote-" + k.kind));
    cleanups_.push_back([k, conf] { k.cleanup(conf); });
    DjangoRegion(conf, {"fill"}, &error);
    if (!error.isEmpty()) {
      QTest::qFail(qPrintable("the region could not be filled: " + error), __FILE__, __LINE__);
      return false;
    }
    (k.kind == "shm" ? shm_conf_ : mc_conf_) = conf;
  }
  const QString module = QString("remote_settings_%1_%2").arg(QCoreApplication::applicationPid()).arg(cleanups_.size());
  QFile f(QDir(dir_.path()).filePath(module + ".py"));
  if (!f.open(QIODevice::WriteOnly)) {
    QTest::qFail(qPrintable("cannot write " + f.fileName()), __FILE__, __LINE__);
    return false;
  }
  const QJsonObject caches{{"default", shm_conf_}, {"mc", mc_conf_}};
  f.write("SECRET_KEY = 'x'\nINSTALLED_APPS = ['regioncache']\nCACHES = " +
          QJsonDocument(caches).toJson(QJsonDocument::Compact) + "\n");
  f.close();
  site->use_prefix = true;
  site->prefix = {"sh", "-c"};
  site->python = PythonExe();
  site->settings = module;
  site->pythonpath = {dir_.path()};
  site->reconnect_interval_ms = 600000;  // only a refresh reconnects here
  return true;
}

bool RemoteTest::openWindow(const RemoteSite& site) {
  window_ = std::make_unique<MainWindow>();
  window_->resize(1200, 700);
  window_->show();
  window_->browser()->setConfirmer([](const QString&, const QString&) { return true; });
  QSignalSpy done(window_.get(), &MainWindow::sourceDone);
  window_->openRemote(site);
  if (!done.wait(60000)) {
    QTest::qFail("the remote site did not answer", __FILE__, __LINE__);
    return false;
  }
  if (!done[0][0].toBool()) {
    QTest::qFail(qPrintable("the remote site failed: " + done[0][1].toString()), __FILE__, __LINE__);
    return false;
  }
  return true;
}

int RemoteTest::rowOfRemote(const QString& name) const {
  RegionListModel* regions = window_->regions();
  for (int r = 0; r < regions->rowCount(); ++r)
    if (regions->region(r)->spec().name == name && !regions->region(r)->spec().remote.isEmpty()) return r;
  return -1;
}

bool RemoteTest::purgeSessions(bool* ok, QString* text) {
  window_->selectRegion(rowOfRemote("default"));
  KeyBrowser* b = window_->browser();
  if (!WaitUntil([&] { return b->region() && !b->loader()->running() && b->model()->rowCount() == 10; })) {
    QTest::qFail(qPrintable("the 10 keys were not listed: " + b->lastError()), __FILE__, __LINE__);
    return false;
  }
  b->setFilter("session:", false);
  if (!WaitUntil([&] { return !b->loader()->running() && b->model()->rowCount() == 2; })) {
    QTest::qFail("the filter did not list the 2 session keys", __FILE__, __LINE__);
    return false;
  }
  QSignalSpy done(b, &KeyBrowser::operationDone);
  b->purgeByFilter();
  if (!done.wait(30000)) {
    QTest::qFail("the purge did not end", __FILE__, __LINE__);
    return false;
  }
  *ok = done[0][0].toBool();
  *text = done[0][1].toString();
  return true;
}

QJsonObject RemoteTest::djangoHas(const QJsonObject& conf, const QStringList& names) {
  QString error;
  const QByteArray out = DjangoRegion(conf, QStringList{"has"} + names, &error);
  if (!error.isEmpty()) qWarning("%s", qPrintable(error));
  return QJsonDocument::fromJson(out).object();
}

void RemoteTest::quotingSurvivesTheShell() {
  const std::vector<std::string> words{"plain",        "two words",      "it's",          "say \"hi\"",
                                       "$HOME `id` $(id) ${x:-y}", "line1\nline2\n", "",  "back\\slash\\",
                                       "*?[a]~",       "'",              "''\"'\"",       "semi;colon|pipe&"};
  // printf prints each word and a NUL: what the shell parsed, exactly.
  AgentCommand c;
  c.prefix = {"sh", "-c"};
  c.agent = {"printf", "%s\\0"};
  c.agent.insert(c.agent.end(), words.begin(), words.end());
  const std::vector<std::string> argv = c.Argv();
  QCOMPARE(argv.size(), size_t(3));
  QStringList args;
  for (size_t i = 1; i < argv.size(); ++i) args << QString::fromStdString(argv[i]);
  QProcess p;
  p.start(QString::fromStdString(argv[0]), args);
  QVERIFY(p.waitForFinished(30000));
  QCOMPARE(p.exitCode(), 0);
  const QByteArray out = p.readAllStandardOutput();
  QByteArray expected;
  for (const auto& w : words) expected += QByteArray::fromStdString(w) + '\0';
  QCOMPARE(out, expected);
  // No prefix: the words are exec'ed as they are.
  c.prefix.clear();
  QCOMPARE(c.Argv(), c.agent);
  // The ssh transport: its options, the port split off, then `--` and the quoted words.
  const std::vector<std::string> ssh = SshPrefix("deploy@web1:2222", {"-J", "bastion"});
  const std::vector<std::string> want{"ssh", "-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=15",
                                      "-p", "2222", "-J", "bastion", "deploy@web1", "--"};
  QCOMPARE(ssh, want);
  QCOMPARE(SshPrefix("web1", {}).at(6), std::string("web1"));
}

void RemoteTest::sourceRefRemoteRoundTrip() {
  SourceRef r;
  r.type = SourceRef::Type::kRemote;
  r.remote.destination = "deploy@web1:2222";
  r.remote.settings = "mysite.settings";
  r.remote.python = "/srv/venv/bin/python";
  r.remote.pythonpath = {"/srv/site", "/srv/lib"};
  r.remote.ssh_options = {"-J", "bastion"};
  r.remote.agent_read_only = true;
  SourceRef back;
  QVERIFY(SourceRef::decode(r.encode(), &back));
  QCOMPARE(int(back.type), int(SourceRef::Type::kRemote));
  QCOMPARE(back.remote.destination, r.remote.destination);
  QCOMPARE(back.remote.settings, r.remote.settings);
  QCOMPARE(back.remote.python, r.remote.python);
  QCOMPARE(back.remote.pythonpath, r.remote.pythonpath);
  QCOMPARE(back.remote.ssh_options, r.remote.ssh_options);
  QVERIFY(back.remote.agent_read_only);
  QVERIFY(!back.remote.use_prefix);
  QCOMPARE(back.label(), QString("Remote ssh deploy@web1:2222 mysite.settings"));
  QCOMPARE(back.encode(), r.encode());
  // A prefix transport survives as such (an empty prefix too: exec directly).
  SourceRef p = r;
  p.remote.use_prefix = true;
  p.remote.prefix = {"sh", "-c"};
  QVERIFY(SourceRef::decode(p.encode(), &back));
  QVERIFY(back.remote.use_prefix);
  QCOMPARE(back.remote.prefix, QStringList({"sh", "-c"}));
  QCOMPARE(back.remote.label(), QString("sh -c"));
  p.remote.prefix.clear();
  p.remote.destination.clear();
  QVERIFY(SourceRef::decode(p.encode(), &back));
  QVERIFY(back.remote.use_prefix && back.remote.prefix.isEmpty());
  // The Remote site dialog gives back what it was opened with (the ssh transport).
  RemoteSiteDialog dialog(r.remote);
  const RemoteSite from_dialog = dialog.site();
  QCOMPARE(from_dialog.destination, r.remote.destination);
  QCOMPARE(from_dialog.settings, r.remote.settings);
  QCOMPARE(from_dialog.python, r.remote.python);
  QCOMPARE(from_dialog.pythonpath, r.remote.pythonpath);
  QCOMPARE(from_dialog.ssh_options, r.remote.ssh_options);
  QVERIFY(from_dialog.agent_read_only);
  QVERIFY(!from_dialog.use_prefix);
  // Refused: no settings; ssh without a destination.
  QVERIFY(!SourceRef::decode(R"({"type": "remote", "destination": "web1"})", &back));
  QVERIFY(!SourceRef::decode(R"({"type": "remote", "settings": "s"})", &back));
  // A remote region never has the identity of a local one of the same place.
  RegionSpec local;
  local.kind = "shm";
  local.location = "pages";
  RegionSpec remote = local;
  remote.remote = r.remote.key();
  QVERIFY(local.Identity() != remote.Identity());
  QVERIFY(remote.Identity().contains("ssh deploy@web1:2222 mysite.settings"));
}

void RemoteTest::remoteSiteListsShowsPurgesAndDjangoSeesIt() {
  RemoteSite site;
  if (!makeSite(&site)) return;
  if (!openWindow(site)) return;
  RegionListModel* regions = window_->regions();
  // Both aliases, with their real kinds, and their figures through the agent.
  QCOMPARE(regions->rowCount(), 2);
  const int shm_row = rowOfRemote("default"), mc_row = rowOfRemote("mc");
  QVERIFY(shm_row >= 0 && mc_row >= 0);
  QCOMPARE(regions->region(shm_row)->spec().kind, QString("shm"));
  QCOMPARE(regions->region(mc_row)->spec().kind, QString("memcached"));
  const QString where = regions->data(regions->index(shm_row, RegionListModel::kLocation)).toString();
  QCOMPARE(where, shm_conf_["LOCATION"].toString() + " on sh -c " + site.settings);
  QVERIFY(WaitUntil([&] { return regions->row(shm_row).have_stats && regions->row(mc_row).have_stats; }));
  QVERIFY2(regions->row(shm_row).error.isEmpty(), qPrintable(regions->row(shm_row).error));
  QCOMPARE(regions->row(shm_row).stats.entries, uint64_t(10));
  QVERIFY(regions->row(shm_row).stats.capacity > 0);
  QVERIFY(!regions->row(shm_row).stats.extra.empty());
  QCOMPARE(regions->row(mc_row).stats.servers.size(), size_t(1));
  QVERIFY(regions->row(mc_row).stats.servers[0].up);
  // The same segment opened locally is another row: a remote region never merges with a local one.
  window_->addRegion(SpecFromConf("default", "shm", shm_conf_));
  QCOMPARE(regions->rowCount(), 3);

  window_->selectRegion(shm_row);
  KeyBrowser* b = window_->browser();
  QVERIFY(WaitUntil([&] { return b->region() && !b->loader()->running() && b->model()->rowCount() == 10; }));
  QVERIFY(!b->region()->spec().remote.isEmpty());
  b->setFilter("session:", false);
  QVERIFY(WaitUntil([&] { return !b->loader()->running() && b->model()->rowCount() == 2; }));

  // Values: a pickle (opcodes and tree, never unpickled) and a text.
  ValueViewer* viewer = b->viewer();
  viewer->showKey(b->region(), ":1:session:abc");
  QVERIFY(WaitUntil([&] { return !viewer->busy(); }));
  QVERIFY2(viewer->rendered().ok, qPrintable(viewer->rendered().error));
  QCOMPARE(int(viewer->rendered().best), int(ValueView::kPickle));
  QVERIFY2(viewer->rendered().pickle.contains("'Decimal'"), qPrintable(viewer->rendered().pickle.left(400)));
  QVERIFY(viewer->rendered().tree.ok && viewer->rendered().tree.rows > 1);
  viewer->showKey(b->region(), ":1:unicode");
  QVERIFY(WaitUntil([&] { return !viewer->busy(); }));
  QVERIFY2(viewer->rendered().ok, qPrintable(viewer->rendered().error));
  QCOMPARE(viewer->rendered().text, QString::fromUtf8("h\u00e9llo \u2603"));
  viewer->showKey(b->region(), ":1:no-such-key");
  QVERIFY(WaitUntil([&] { return !viewer->busy(); }));
  QVERIFY2(viewer->rendered().error.contains("is gone"), qPrintable(viewer->rendered().error));

  // Purge by the filter, then delete two selected keys; Django sees both.
  QSignalSpy done(b, &KeyBrowser::operationDone);
  b->purgeByFilter();
  QVERIFY(done.wait(30000));
  QVERIFY2(done[0][0].toBool(), qPrintable(done[0][1].toString()));
  QVERIFY2(b->lastMessage().contains("purged 2 keys"), qPrintable(b->lastMessage()));
  b->setFilter("", false);
  QVERIFY(WaitUntil([&] { return !b->loader()->running() && b->model()->rowCount() == 8; }));
  b->table()->clearSelection();
  for (int r = 0; r < b->model()->rowCount(); ++r) {
    const QString key = QString::fromStdString(b->model()->entry(r).key);
    if (key == ":1:user:1" || key == ":1:counter")
      b->table()->selectionModel()->select(b->model()->index(r, 0),
                                           QItemSelectionModel::Select | QItemSelectionModel::Rows);
  }
  b->deleteSelected();
  QVERIFY(done.wait(30000));
  QVERIFY2(done[1][0].toBool(), qPrintable(done[1][1].toString()));
  const QJsonObject has = djangoHas(shm_conf_, {"session:abc", "session:def", "user:1", "counter", "user:2", "json"});
  QCOMPARE(has["session:abc"].toBool(), false);
  QCOMPARE(has["session:def"].toBool(), false);
  QCOMPARE(has["user:1"].toBool(), false);
  QCOMPARE(has["counter"].toBool(), false);
  QCOMPARE(has["user:2"].toBool(), true);
  QCOMPARE(has["json"].toBool(), true);
  // The memcached region through the same agent: its keys, and a purge Django sees.
  window_->selectRegion(mc_row);
  QVERIFY(WaitUntil([&] { return b->region() == regions->region(mc_row) && !b->loader()->running() &&
                                 b->model()->rowCount() == 10; }));
  b->setFilter(":1:user:*", true);
  QVERIFY(WaitUntil([&] { return !b->loader()->running() && b->model()->rowCount() == 2; }));
  b->purgeByFilter();
  QVERIFY(done.wait(30000));
  QVERIFY2(done[2][0].toBool(), qPrintable(done[2][1].toString()));
  const QJsonObject mc = djangoHas(mc_conf_, {"user:1", "user:2", "json"});
  QCOMPARE(mc["user:1"].toBool(), false);
  QCOMPARE(mc["user:2"].toBool(), false);
  QCOMPARE(mc["json"].toBool(), true);
  // The recent sources remember the site.
  QVERIFY(window_->recentSources().join(QChar(10)).contains("\"type\":\"remote\""));
}

void RemoteTest::killedAgentShowsLostAndRefreshReconnects() {
  RemoteSite site;
  if (!makeSite(&site)) return;
  if (!openWindow(site)) return;
  RegionListModel* regions = window_->regions();
  QVERIFY(WaitUntil([&] { return regions->rowCount() == 2 && regions->row(0).have_stats &&
                                 regions->row(1).have_stats && !regions->refreshing(); }));
  std::shared_ptr<AgentClient> client = window_->remoteClient(site.key());
  QVERIFY(client);
  const qint64 pid = client->Hello().value("pid").toInteger();
  QVERIFY(pid > 0);
  // The UI thread keeps turning while the app meets the dead agent.
  int ticks = 0;
  QTimer ticker;
  connect(&ticker, &QTimer::timeout, [&] { ++ticks; });
  ticker.start(0);
  QCOMPARE(::kill(static_cast<pid_t>(pid), SIGKILL), 0);
  // The refresh of the region list (as auto-refresh runs it) meets the dead
  // agent; F5 (below) is what starts a new one.
  regions->refresh();
  QVERIFY2(WaitUntil([&] {
             return !regions->refreshing() && regions->row(0).error.contains("connection lost") &&
                    regions->row(1).error.contains("connection lost");
           }),
           qPrintable(QString("rows: [%1] [%2]; %3").arg(regions->row(0).error, regions->row(1).error,
                                                        client->LostText())));
  QVERIFY(ticks > 0);
  for (int r = 0; r < 2; ++r) {
    const QString e = regions->row(r).error;
    QVERIFY2(e.contains("region '" + regions->region(r)->spec().name + "'") && e.contains("sh -c") &&
                 (e.contains("agent exited with status") || e.contains("agent killed by signal")),
             qPrintable(e));
  }
  QVERIFY2(window_->sourceError().contains("sh -c: connection lost"), qPrintable(window_->sourceError()));
  // F5 starts a new agent: the rows and their figures come back.
  ticks = 0;
  window_->refreshAction()->trigger();
  QVERIFY(WaitUntil([&] {
    return !regions->refreshing() && regions->row(0).error.isEmpty() && regions->row(1).error.isEmpty();
  }));
  QVERIFY(ticks > 0);
  QCOMPARE(regions->row(rowOfRemote("default")).stats.entries, uint64_t(10));
  QVERIFY(window_->sourceError().isEmpty());
  QVERIFY(client->Hello().value("pid").toInteger() != pid);
}

void RemoteTest::silentAgentTimesOut() {
  RemoteSite site;
  site.use_prefix = true;
  site.prefix = {"sh", "-c", "sleep 600"};  // the quoted agent words become $0: never run
  site.settings = "never.settings";
  site.hello_timeout_ms = 1500;
  window_ = std::make_unique<MainWindow>();
  window_->show();
  int ticks = 0;
  QTimer ticker;
  connect(&ticker, &QTimer::timeout, [&] { ++ticks; });
  ticker.start(10);
  QSignalSpy done(window_.get(), &MainWindow::sourceDone);
  window_->openRemote(site);
  QVERIFY(done.wait(30000));
  QCOMPARE(done[0][0].toBool(), false);
  const QString text = done[0][1].toString();
  QVERIFY2(text.contains("sh -c sleep 600: connection lost: no hello from the agent: no answer within 1.5 s"),
           qPrintable(text));
  QCOMPARE(window_->sourceError(), text);
  QVERIFY(ticks > 10);  // the window was never frozen while it waited
  QCOMPARE(window_->regions()->rowCount(), 0);
}

void RemoteTest::agentThatCannotLoadSettingsSaysSo() {
  RemoteSite site;
  site.use_prefix = true;
  site.prefix = {"sh", "-c"};
  site.python = PythonExe();
  site.settings = "no_such_settings_module_xyz";
  window_ = std::make_unique<MainWindow>();
  QSignalSpy done(window_.get(), &MainWindow::sourceDone);
  window_->openRemote(site);
  QVERIFY(done.wait(60000));
  QCOMPARE(done[0][0].toBool(), false);
  const QString text = done[0][1].toString();
  QVERIFY2(text.contains("sh -c: connection lost: the agent could not start (settings)") &&
               text.contains("no_such_settings_module_xyz"),
           qPrintable(text));
}

void RemoteTest::readOnlyAgentRefusesWrites() {
  RemoteSite site;
  if (!makeSite(&site)) return;
  site.agent_read_only = true;
  if (!openWindow(site)) return;
  // The app is not read-only: the write goes to the agent, which refuses it.
  bool ok = true;
  QString text;
  if (!purgeSessions(&ok, &text)) return;
  QVERIFY(!ok);
  QVERIFY2(text.contains("read_only") && text.contains("'default'"), qPrintable(text));
  QCOMPARE(djangoHas(shm_conf_, {"session:abc"})["session:abc"].toBool(), true);
  // Reads still work: the agent was not lost over a refusal.
  QVERIFY(window_->remoteClient(site.key())->LostText().isEmpty());
}

void RemoteTest::cancelledPurgeStopsTheAgent() {
  RemoteSite site;
  if (!makeSite(&site)) return;
  QString error;
  DjangoRegion(shm_conf_, {"set-many", "30000", "bulk-", "3600"}, &error);
  QVERIFY2(error.isEmpty(), qPrintable(error));
  auto client = std::make_shared<AgentClient>(site.Command());
  QList<RegionSpec> specs;
  QVERIFY2(FetchRemoteRegions(site, client, &specs, &error), qPrintable(error));
  RegionSpec spec;
  for (const RegionSpec& s : specs)
    if (s.name == "default") spec = s;
  QCOMPARE(spec.kind, QString("shm"));
  RemoteStore store(client, spec);
  // The first progress line answers false: the client sends `cancel`, the agent stops.
  int calls = 0;
  uint64_t removed = 0;
  regioncache::Status s = store.PurgeMatching("*bulk-*", &removed, [&](uint64_t) { return ++calls > 1; });
  QVERIFY2(s.IsCancelled(), s.ToString().c_str());
  QCOMPARE(calls, 1);
  QVERIFY2(QString::fromStdString(s.message()).contains("'default'"), s.message().c_str());
  QVERIFY(removed < 30000);
  // The connection is still up, and the rest is still there for Django and for the agent.
  regioncache::Stats stats;
  QVERIFY(store.GetStats(&stats).ok());
  QCOMPARE(stats.entries, uint64_t(30000 + 10 - removed));
  QCOMPARE(djangoHas(shm_conf_, {"json"})["json"].toBool(), true);
  // Writes of the cache contract are refused, naming the region.
  s = store.Set(":1:x", "v", 0, 0);
  QVERIFY(s.IsInvalidArgument());
  QVERIFY2(QString::fromStdString(s.message()).contains("region 'default'"), s.message().c_str());
}

void RemoteTest::wrongOrDeadAgentsAreNamed() {
  // Commands that are not the agent, run as the app runs one: what each
  // call answers names the region, the source and what happened.
  struct Case {
    QString script;
    QString expected;
  };
  const QList<Case> cases{
      {"echo 'No module named regioncache' >&2; exit 7",
       "region 'pages': sh -c: connection lost: agent exited with status 7: No module named regioncache"},
      {"echo 'Welcome to web1'; sleep 30",
       "region 'pages': sh -c: connection lost: not a regioncache agent: its first line was 'Welcome to web1'"},
      {R"(echo '{"hello": "regioncache-agent", "protocol": 2}'; sleep 30)",
       "region 'pages': sh -c: connection lost: the agent speaks protocol 2; this app knows protocol 1"},
      {R"(echo '{"hello": "regioncache-agent", "protocol": 1}'; read line; exec >&-; sleep 30)",
       "region 'pages': sh -c: connection lost: agent closed its output"},
  };
  for (const Case& c : cases) {
    AgentCommand cmd;
    cmd.prefix = {"sh", "-c", c.script.toStdString()};
    cmd.agent = {"unused"};
    cmd.source = "sh -c";
    cmd.reconnect_interval_ms = 600000;
    AgentClient client(cmd);
    QJsonObject reply;
    regioncache::Status s = client.Call("pages", {{"op", "stats"}, {"region", "pages"}}, &reply);
    QVERIFY(s.IsUnavailable());
    QVERIFY2(QString::fromStdString(s.message()).startsWith(c.expected), s.message().c_str());
    // Within the reconnect interval the next call answers the same loss at once.
    regioncache::Status again = client.Call("other", {{"op", "stats"}}, &reply);
    QVERIFY2(QString::fromStdString(again.message()).startsWith("region 'other': sh -c: connection lost"),
             again.message().c_str());
    QVERIFY(client.LostText().startsWith("sh -c: connection lost"));
  }
  // A transport that is not installed.
  AgentCommand missing;
  missing.prefix = {"/nonexistent/ssh", "-T"};
  missing.agent = {"unused"};
  missing.source = "ssh web1";
  AgentClient nowhere(missing);
  QJsonObject reply;
  regioncache::Status gone = nowhere.Call("pages", {{"op", "stats"}}, &reply);
  QVERIFY(gone.IsUnavailable());
  QVERIFY2(QString::fromStdString(gone.message()).startsWith(
               "region 'pages': ssh web1: connection lost: cannot start '/nonexistent/ssh': No such file"),
           gone.message().c_str());
  // The app's read-only mode refuses before any agent is asked.
  AgentCommand never;
  never.prefix = {"sh", "-c", "exit 9"};
  never.agent = {"unused"};
  never.source = "sh -c";
  RegionSpec spec;
  spec.name = "pages";
  spec.kind = "shm";
  spec.location = "pages";
  spec.remote = "sh -c s";
  spec.agent = std::make_shared<AgentClient>(never);
  Region region(spec);
  WriteGate gate(true);
  uint64_t removed = 0;
  regioncache::Status s = gate.purgeMatching(region, "*", &removed, {});
  QVERIFY2(s.message().find("read-only mode") != std::string::npos, s.message().c_str());
  QVERIFY(spec.agent->LostText().isEmpty());  // never started
}

void RemoteTest::cancelReachesAQuietAgent() {
  // A peer that says hello, takes the request, sends no progress at all, and
  // echoes the next line it reads to stderr before it exits: the cancel the
  // client must send once the progress callback says stop, without waiting
  // for a progress line.
  AgentCommand cmd;
  cmd.prefix = {"sh", "-c",
                R"(echo '{"hello": "regioncache-agent", "protocol": 1}'; read request; read next; )"
                R"(echo "got $next" >&2; exit 0)"};
  cmd.agent = {"unused"};
  cmd.source = "sh -c";
  AgentClient client(cmd);
  int asked = 0;
  QJsonObject reply;
  regioncache::Status s = client.Call("pages", {{"op", "purge"}, {"region", "pages"}, {"glob", "*"}}, &reply,
                                      [&](uint64_t) { return ++asked > 1; });
  QCOMPARE(asked, 1);
  QVERIFY(s.IsUnavailable());
  QVERIFY2(QString::fromStdString(s.message()).contains(R"(agent exited with status 0: got {"id":2,"op":"cancel","target":1})"),
           s.message().c_str());
}

void RemoteTest::shutdownEndsACallUnderWay() {
  // A call waiting for a hello that never comes (its deadline far away)
  // ends at once when the window closing shuts the client down.
  AgentCommand cmd;
  cmd.prefix = {"sh", "-c", "echo started >&2; exec sleep 600"};
  cmd.agent = {"unused"};
  cmd.source = "sh -c";
  cmd.hello_timeout_ms = 600000;
  AgentClient client(cmd);
  regioncache::Status s;
  std::atomic<bool> finished{false};
  std::thread call([&] {
    QJsonObject reply;
    s = client.Call("pages", {{"op", "stats"}, {"region", "pages"}}, &reply);
    finished = true;
  });
  QVERIFY(WaitUntil([&] { return client.StderrTail().contains("started"); }));
  QVERIFY(!finished);
  client.Shutdown();
  call.join();
  QVERIFY(s.IsUnavailable());
  QVERIFY2(QString::fromStdString(s.message()).contains("sh -c: connection lost: agent killed by signal 9"),
           s.message().c_str());
}

void RemoteTest::bigValuesThroughTheAgent() {
  // A file region that takes values over 64 MiB.
  QTemporaryDir files;
  QVERIFY(files.isValid());
  const QJsonObject conf{{"BACKEND", "regioncache.FileCache"},
                         {"LOCATION", files.path() + "/region"},
                         {"OPTIONS", QJsonObject{{"MAX_SIZE", "512MB"}, {"MAX_ITEM_SIZE", "100MB"}}}};
  QString error;
  DjangoRegion(conf, {"set-text", "big", "3000000"}, &error);
  QVERIFY2(error.isEmpty(), qPrintable(error));
  DjangoRegion(conf, {"set-text", "huge", "70000000"}, &error);
  QVERIFY2(error.isEmpty(), qPrintable(error));
  const QString module = QString("remote_big_%1").arg(QCoreApplication::applicationPid());
  QFile f(QDir(dir_.path()).filePath(module + ".py"));
  QVERIFY(f.open(QIODevice::WriteOnly));
  f.write("SECRET_KEY = 'x'\nINSTALLED_APPS = ['regioncache']\nCACHES = " +
          QJsonDocument(QJsonObject{{"default", conf}}).toJson(QJsonDocument::Compact) + "\n");
  f.close();
  RemoteSite site;
  site.use_prefix = true;
  site.prefix = {"sh", "-c"};
  site.python = PythonExe();
  site.settings = module;
  site.pythonpath = {dir_.path()};
  auto client = std::make_shared<AgentClient>(site.Command());
  QList<RegionSpec> specs;
  QVERIFY2(FetchRemoteRegions(site, client, &specs, &error), qPrintable(error));
  QCOMPARE(specs.size(), 1);
  Region region(specs[0]);
  // Over the first read's 1 MiB: read whole by a second request.
  RenderedValue big = RenderValue(region, ":1:big", 0);
  QVERIFY2(big.ok, qPrintable(big.error));
  QCOMPARE(big.total, uint64_t(3000000));
  QVERIFY(big.text.startsWith("abcdefghijklmnopqrstuvwxyzabc"));
  QCOMPARE(big.text.size(), 3000000);
  // Over 64 MiB: refused, saying so, and the connection stays up.
  RenderedValue huge = RenderValue(region, ":1:huge", 0);
  QVERIFY(!huge.ok);
  QVERIFY2(huge.error.contains("region 'default'") && huge.error.contains("70000000 bytes") &&
               huge.error.contains("over the 64 MiB the app reads from a remote site"),
           qPrintable(huge.error));
  QVERIFY(client->LostText().isEmpty());
}

namespace {

int FreeLocalPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

bool Listening(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

void RemoteTest::throughRealSsh() {
  // OpenSSH's own server on a free 127.0.0.1 port, a key made for this run,
  // and the app's ssh transport as it runs in production.
  QTemporaryDir ssh_dir;
  QVERIFY(ssh_dir.isValid());
  const QString d = ssh_dir.path();
  for (const QString& key : {QString("host"), QString("id")}) {
    QProcess keygen;
    keygen.start("ssh-keygen", {"-q", "-t", "ed25519", "-N", "", "-f", d + "/" + key});
    QVERIFY2(keygen.waitForFinished(30000) && keygen.exitCode() == 0, qPrintable(keygen.readAllStandardError()));
  }
  QVERIFY(QFile::copy(d + "/id.pub", d + "/authorized_keys"));
  const int port = FreeLocalPort();
  QVERIFY(port > 0);
  QFile cfg(d + "/sshd_config");
  QVERIFY(cfg.open(QIODevice::WriteOnly));
  cfg.write(QString("Port %1\nListenAddress 127.0.0.1\nHostKey %2/host\nPidFile none\n"
                    "AuthorizedKeysFile %2/authorized_keys\nStrictModes no\nPasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"
                    "SetEnv PYTHONPATH=%3\nLogLevel ERROR\n")
                .arg(port)
                .arg(d, TestPythonPath())
                .toUtf8());
  cfg.close();
  QProcess sshd;
  sshd.setProcessChannelMode(QProcess::MergedChannels);
  sshd.start("/usr/sbin/sshd", {"-D", "-e", "-f", d + "/sshd_config"});
  QVERIFY2(sshd.waitForStarted(10000), qPrintable("sshd did not start: " + sshd.errorString()));
  auto stop = qScopeGuard([&] {
    sshd.kill();
    sshd.waitForFinished(10000);
  });
  QVERIFY2(WaitUntil([&] { return Listening(port) || sshd.state() == QProcess::NotRunning; }, 20000) &&
               sshd.state() == QProcess::Running,
           qPrintable("sshd is not listening: " + QString::fromUtf8(sshd.readAll())));

  RemoteSite site;
  if (!makeSite(&site)) return;
  site.use_prefix = false;
  site.prefix.clear();
  site.destination = QString("%1@127.0.0.1:%2").arg(QString::fromLocal8Bit(getpwuid(getuid())->pw_name)).arg(port);
  site.ssh_options = {"-F", "/dev/null", "-i", d + "/id", "-o", "StrictHostKeyChecking=no",
                      "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"};
  if (!openWindow(site)) return;
  RegionListModel* regions = window_->regions();
  QCOMPARE(regions->rowCount(), 2);
  QVERIFY(regions->region(0)->spec().origin.startsWith("ssh " + site.destination));
  const int row = rowOfRemote("default");
  bool ok = false;
  QString text;
  if (!purgeSessions(&ok, &text)) return;
  QVERIFY2(ok, qPrintable(text));
  const QJsonObject has = djangoHas(shm_conf_, {"session:abc", "session:def", "json"});
  QCOMPARE(has["session:abc"].toBool(), false);
  QCOMPARE(has["session:def"].toBool(), false);
  QCOMPARE(has["json"].toBool(), true);
  // The agent dying on the far side is a lost connection named by its ssh source.
  QVERIFY(WaitUntil([&] { return !regions->refreshing(); }));
  ::kill(static_cast<pid_t>(window_->remoteClient(site.key())->Hello().value("pid").toInteger()), SIGKILL);
  window_->refreshAll();
  QVERIFY(WaitUntil([&] { return !regions->refreshing() && regions->row(row).error.contains("connection lost"); }));
  QVERIFY2(regions->row(row).error.contains("ssh " + site.destination), qPrintable(regions->row(row).error));
}

QTEST_MAIN(RemoteTest)
#include "remote_test.moc"
