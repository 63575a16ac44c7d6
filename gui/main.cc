// regioncache-gui: browse, inspect and purge regioncache regions.
//
//   regioncache-gui [--django-settings MODULE [--pythonpath DIR]... [--python EXE]]
//                   [--ssh DEST | --agent-prefix 'CMD ...'] [--remote-python EXE]
//                   [--regions-json FILE]... [--shm NAME]... [--no-shm-discovery]
//                   [--read-only] [--open REGION] [--screenshot DIR]
#include <QApplication>
#include <QCommandLineParser>
#include <QProcess>
#include <QTimer>
#include <cstdio>

#include "main_window.h"
#include "screenshot.h"

int main(int argc, char** argv) {
  // --help, --version and --screenshot need no screen: without a display,
  // render offscreen instead of failing to find one.
  bool headless_ok = false;
  for (int i = 1; i < argc; ++i) {
    const QByteArray a(argv[i]);
    headless_ok = headless_ok || a == "-h" || a == "--help" || a == "--help-all" || a == "-v" ||
                  a == "--version" || a.startsWith("--screenshot");
  }
  if (headless_ok && qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM") &&
      qEnvironmentVariableIsEmpty("DISPLAY") && qEnvironmentVariableIsEmpty("WAYLAND_DISPLAY"))
    qputenv("QT_QPA_PLATFORM", "offscreen");
  QApplication app(argc, argv);
  QApplication::setOrganizationName("regioncache");
  QApplication::setApplicationName("regioncache-gui");
  QApplication::setApplicationVersion("0.1.0");

  QCommandLineParser cli;
  cli.setApplicationDescription("Browse, inspect and purge regioncache cache regions.");
  cli.addHelpOption();
  cli.addVersionOption();
  QCommandLineOption settings("django-settings", "Read the regions of this Django settings module.", "module");
  QCommandLineOption pythonpath("pythonpath", "Directory added to the Python path (repeatable).", "dir");
  QCommandLineOption python("python", "Python interpreter that runs the project (default: python3, "
                                      "or $REGIONCACHE_PYTHON).", "exe");
  QCommandLineOption json("regions-json", "Read regions from a JSON file (repeatable).", "file");
  QCommandLineOption shm("shm", "Open this shared-memory region (repeatable).", "name");
  QCommandLineOption no_discovery("no-shm-discovery", "Do not list this user's shared-memory regions at start.");
  QCommandLineOption read_only("read-only", "Start in read-only mode: every write is refused.");
  QCommandLineOption open("open", "Select this region once listed (a CACHES alias) and its first cached page.", "name");
  QCommandLineOption screenshot("screenshot", "Save screenshots of the main views into dir and exit.", "dir");
  QCommandLineOption ssh("ssh", "Open the Django project --django-settings names on this host, through its "
                                "inspection agent started by ssh (user@host[:port] or a host alias).", "dest");
  QCommandLineOption remote_python("remote-python", "Python that runs the agent on the remote host (default: python3).",
                                   "exe");
  QCommandLineOption agent_prefix("agent-prefix", "Start the agent with this command prefix instead of ssh "
                                                  "(e.g. 'sh -c' runs it here, quoted as for ssh; '' runs it directly).",
                                  "cmd");
  cli.addOptions({settings, pythonpath, python, json, shm, no_discovery, read_only, open, screenshot, ssh,
                  remote_python, agent_prefix});
  cli.process(app);

  rcgui::MainWindow window(cli.isSet(read_only));
  window.resize(1400, 820);
  if (cli.isSet(open)) window.openWhenListed(cli.value(open));
  if (!cli.isSet(no_discovery)) window.discoverShm();
  for (const QString& name : cli.values(shm)) {
    rcgui::RegionSpec spec;
    QString error;
    if (rcgui::ManualRegion("shm", name, QString(), &spec, &error)) window.addRegion(spec);
  }
  for (const QString& file : cli.values(json)) window.openJsonFile(file);
  const bool remote = cli.isSet(ssh) || cli.isSet(agent_prefix);
  if (remote && !cli.isSet(settings)) {
    std::fprintf(stderr, "regioncache-gui: --ssh and --agent-prefix need --django-settings MODULE\n");
    return 2;
  }
  if (remote) {
    rcgui::RemoteSite site;
    site.destination = cli.value(ssh);
    site.use_prefix = cli.isSet(agent_prefix);
    site.prefix = QProcess::splitCommand(cli.value(agent_prefix));
    site.settings = cli.value(settings);
    site.pythonpath = cli.values(pythonpath);
    if (cli.isSet(remote_python)) site.python = cli.value(remote_python);
    site.agent_read_only = cli.isSet(read_only);
    window.openRemote(site);
  } else if (cli.isSet(settings)) {
    rcgui::DjangoProject project;
    project.python = cli.value(python);
    if (project.python.isEmpty()) project.python = qEnvironmentVariable("REGIONCACHE_PYTHON", "python3");
    project.settings = cli.value(settings);
    project.pythonpath = cli.values(pythonpath);
    window.openDjangoProject(project);
  }
  window.show();

  if (cli.isSet(screenshot)) {
    int status = 0;
    QTimer::singleShot(0, &window, [&] {
      QString error;
      QStringList files = rcgui::TakeScreenshots(&window, cli.value(screenshot), &error);
      if (files.isEmpty()) {
        std::fprintf(stderr, "regioncache-gui: screenshots failed: %s\n", qPrintable(error));
        status = 1;
      }
      for (const QString& f : files) std::printf("%s\n", qPrintable(f));
      app.exit(status);
    });
    return app.exec();
  }
  return app.exec();
}
