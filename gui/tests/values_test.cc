// The value side of the app: the pickle disassembler (checked opcode by
// opcode against Python's own pickletools), hex dumps, and the viewer on real
// values stored by Django (compressed by the file store among them).
#include <QDir>
#include <QDirIterator>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QPushButton>
#include <QtTest>

#include "format.h"
#include "key_table_model.h"
#include "pickle_disasm.h"
#include "region.h"
#include "regioncache/codec.h"
#include "test_support.h"
#include "value_decoder.h"
#include "value_viewer.h"

using namespace rcgui;
using namespace rcgui::testing;

class ValuesTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase();
  void cleanupTestCase();
  void pickleMatchesPickletools();
  void malformedPicklesAreReportedNotCrashed();
  void hostilePickleIsNeverRun();
  void compressedValuesShowDecoded();
  void hexDumpLayout();
  void realValuesPickTheirView();
  void hugeValueIsCappedUntilLoadAll();

 private:
  QJsonObject conf_;
  RegionPtr region_;
  QJsonArray stored_;
};

void ValuesTest::initTestCase() {
  conf_ = AllKinds().first().django_conf(UniqueName("values"));
  QString error;
  QByteArray out = DjangoRegion(conf_, {"fill"}, &error);
  QVERIFY2(error.isEmpty(), qPrintable(error));
  stored_ = QJsonDocument::fromJson(out).array();
  QCOMPARE(stored_.size(), 10);
  region_ = std::make_shared<Region>(SpecFromConf("values", "shm", conf_));
}

void ValuesTest::cleanupTestCase() { AllKinds().first().cleanup(conf_); }

void ValuesTest::pickleMatchesPickletools() {
  // Python pickles a spread of objects at every protocol and lists the
  // opcodes pickletools sees; ours must be the same, offset by offset.
  const char* code = R"PY(
import datetime, decimal, json, pickle, pickletools, sys, collections
objs = [None, True, False, 0, 1, -1, 255, 256, 65535, -65536, 2**31, 2**63, -2**100, 1.5, -0.0,
        "", "x", "h\u00e9llo \u2603" * 3, "a" * 300, b"", b"\x00\xff" * 200, bytearray(b"ab"),
        (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [], [1, [2, [3]]], {}, {"a": 1, "b": [1, 2]},
        {1, 2, 3}, frozenset({4}), datetime.datetime(2024, 5, 6, 7, 8, 9), decimal.Decimal("3.14"),
        collections.OrderedDict(a=1), complex(1, 2), [[]] * 3, {"deep": {"er": {"est": (None,)}}}]
out = []
for proto in range(0, pickle.HIGHEST_PROTOCOL + 1):
    for o in objs:
        try:
            data = pickle.dumps(o, proto)
        except Exception:
            continue
        ops = [[pos, op.name] for op, arg, pos in pickletools.genops(data)]
        out.append({"proto": proto, "repr": repr(o)[:60], "hex": data.hex(), "ops": ops})
json.dump(out, sys.stdout)
)PY";
  QByteArray out;
  QString error;
  QVERIFY2(RunPython({"-c", code}, &out, &error), qPrintable(error));
  const QJsonArray cases = QJsonDocument::fromJson(out).array();
  QVERIFY(cases.size() > 200);
  for (const auto& c : cases) {
    const QJsonObject o = c.toObject();
    const QByteArray data = QByteArray::fromHex(o["hex"].toString().toLatin1());
    const PickleListing l = DisassemblePickle(data);
    const QString what = QString("protocol %1, %2").arg(o["proto"].toInt()).arg(o["repr"].toString());
    QVERIFY2(l.error.isEmpty(), qPrintable(what + ": " + l.error));
    QVERIFY2(l.complete, qPrintable(what));
    const QJsonArray ops = o["ops"].toArray();
    QCOMPARE(l.ops.size(), ops.size());
    for (qsizetype i = 0; i < ops.size(); ++i) {
      const QJsonArray op = ops[i].toArray();
      QCOMPARE(l.ops[i].offset, qsizetype(op[0].toInteger()));
      QCOMPARE(l.ops[i].name, op[1].toString());
    }
    if (o["proto"].toInt() >= 2) QCOMPARE(l.protocol, o["proto"].toInt());
  }
  // Arguments read right: integers, strings, globals.
  QByteArray p5 = QByteArray::fromHex("80059520000000000000008c086275696c74696e73948c03737472949388"
                                      "4a39300000" "8a0501000000802e");
  const PickleListing l = DisassemblePickle(p5);
  const QString text = PickleListingText(l);
  QVERIFY2(text.contains("SHORT_BINUNICODE 'builtins'"), qPrintable(text));
  QVERIFY2(text.contains("BININT 12345"), qPrintable(text));
  QVERIFY2(text.contains("LONG1 -549755813887"), qPrintable(text));  // as pickle.loads reads it
}

void ValuesTest::malformedPicklesAreReportedNotCrashed() {
  QByteArray out;
  QString error;
  QVERIFY2(RunPython({"-c", "import pickle,sys,datetime; sys.stdout.write(pickle.dumps({'a':[1,'x'*70000,b'y'*300,"
                                "datetime.date(2020,1,1)]},5).hex())"},
                     &out, &error),
           qPrintable(error));
  const QByteArray good = QByteArray::fromHex(out);
  QVERIFY(DisassemblePickle(good).complete);
  // Every proper prefix is malformed: an error, never a crash or a read past the end.
  for (qsizetype n = 0; n < good.size(); n += (n < 200 ? 1 : 997)) {
    const PickleListing l = DisassemblePickle(good.left(n));
    QVERIFY2(!l.complete && !l.error.isEmpty(), qPrintable(QString("prefix %1").arg(n)));
  }
  QVERIFY(DisassemblePickle(QByteArray("\x80\x05\xff", 3)).error.contains("unknown opcode 0xff"));
  QVERIFY(DisassemblePickle(QByteArray("\x80\x05l.", 4)).error.contains("without a MARK"));
  // Lengths that claim more than the pickle holds.
  QVERIFY(DisassemblePickle(QByteArray::fromHex("8e ffffffffffffff7f 2e")).error.contains("runs past the end"));
  QVERIFY(DisassemblePickle(QByteArray::fromHex("8b ffffffff")).error.contains("negative"));
  // Bytes of every value through the disassembler: no crash whatever comes.
  QByteArray noise;
  for (int i = 0; i < 4096; ++i) noise.append(char((i * 7919 + 13) & 0xff));
  for (int i = 0; i + 64 <= noise.size(); i += 64) DisassemblePickle(noise.mid(i, 64));
  // The listing cap.
  const PickleListing capped = DisassemblePickle(good, 5);
  QVERIFY(capped.truncated);
  QCOMPARE(capped.ops.size(), 5);
}

void ValuesTest::hostilePickleIsNeverRun() {
  const QString marker = QDir::temp().filePath(UniqueName("pwned"));
  QByteArray out;
  QString error;
  const QString code = QString(
      "import os,pickle,sys\n"
      "class E:\n"
      "    def __reduce__(self): return (os.system, ('touch %1',))\n"
      "sys.stdout.write(pickle.dumps(E(), 5).hex())").arg(marker);
  QVERIFY2(RunPython({"-c", code}, &out, &error), qPrintable(error));
  const QByteArray evil = QByteArray::fromHex(out);
  const QString text = PickleListingText(DisassemblePickle(evil));
  QVERIFY2(text.contains("'system'") && text.contains("STACK_GLOBAL") && text.contains("REDUCE"),
           qPrintable(text));
  QVERIFY2(text.contains(marker), qPrintable(text));  // the command is shown, as data
  QVERIFY(!QFile::exists(marker));
}

void ValuesTest::compressedValuesShowDecoded() {
  // A file region that compresses what is over 1 KiB, filled by Django.
  const KindUnderTest file = AllKinds().last();
  QCOMPARE(file.kind, QString("file"));
  QJsonObject conf = file.django_conf(UniqueName("compressed"));
  QJsonObject options = conf["OPTIONS"].toObject();
  options["COMPRESS_MIN_SIZE"] = "1024";
  conf["OPTIONS"] = options;
  struct Removed {
    KindUnderTest kind;
    QJsonObject conf;
    ~Removed() { kind.cleanup(conf); }
  } removed{file, conf};
  const int length = 200000;
  QString error;
  const QByteArray out = DjangoRegion(conf, {"set-text", "long", QString::number(length)}, &error);
  QVERIFY2(error.isEmpty(), qPrintable(error));
  const std::string key = QJsonDocument::fromJson(out)["key"].toString().toStdString();
  // It went to disk compressed: the region's files hold far fewer bytes than the value.
  qint64 on_disk = 0;
  for (QDirIterator it(conf["LOCATION"].toString(), QDir::Files, QDirIterator::Subdirectories); it.hasNext();) {
    it.next();
    on_disk += it.fileInfo().size();
  }
  QVERIFY2(on_disk > 0 && on_disk < length / 10, qPrintable(QString("%1 bytes on disk").arg(on_disk)));
  // The app shows the value as Django stored it: its text, its size, its encoding.
  auto region = std::make_shared<Region>(SpecFromConf("compressed", "file", conf));
  const RenderedValue r = RenderValue(*region, key, 0);
  QVERIFY2(r.ok, qPrintable(r.error));
  QCOMPARE(r.total, uint64_t(length));
  QCOMPARE(int(r.best), int(ValueView::kText));
  QCOMPARE(r.text.size(), length);
  QVERIFY(r.text.startsWith("abcdefghijklmnopqrstuvwxyzabc"));
  QVERIFY2(r.summary.contains(HumanBytes(length)) && r.summary.contains("str"), qPrintable(r.summary));
  // And the key table lists it so.
  KeyTableModel model;
  QVERIFY2(ListInto(&model, region, "", &error), qPrintable(error));
  QCOMPARE(model.rowCount(), 1);
  QCOMPARE(model.data(model.index(0, KeyTableModel::kSize), Qt::ToolTipRole).toString(),
           QString("%1 bytes").arg(length));
  QCOMPARE(model.data(model.index(0, KeyTableModel::kEncoding)).toString(), QString("str"));
}

void ValuesTest::hexDumpLayout() {
  const QString dump = HexDump(QByteArray("Hello, world!\n\x00\xff" "abc", 19), 1000);
  QCOMPARE(dump.split('\n')[0],
           QString("00000000  48 65 6c 6c 6f 2c 20 77  6f 72 6c 64 21 0a 00 ff  |Hello, world!...|"));
  QVERIFY(dump.split('\n')[1].startsWith("00000010  61 62 63"));
  QVERIFY(HexDump(QByteArray(100, 'x'), 32).contains("68 more bytes"));
}

void ValuesTest::realValuesPickTheirView() {
  struct Want {
    const char* name;
    ValueView view;
    const char* shows;  // text the chosen view must contain
  };
  const Want wants[] = {
      {"json", ValueView::kJson, "\"tags\": ["},
      {"image", ValueView::kImage, "PNG image, 48 × 32"},
      {"session:abc", ValueView::kPickle, "'Decimal'"},
      {"session:def", ValueView::kPickle, "BINFLOAT 2.5"},
      {"counter", ValueView::kText, "42"},
      {"unicode", ValueView::kText, "h\u00e9llo \u2603"},
      {"blob", ValueView::kHex, "00000000  00 01 02 03"},
  };
  for (const Want& w : wants) {
    QString key;
    for (const auto& s : stored_)
      if (s.toObject()["name"].toString() == w.name) key = s.toObject()["key"].toString();
    QVERIFY(!key.isEmpty());
    const RenderedValue r = RenderValue(*region_, key.toStdString(), ValueViewer::kCap);
    QVERIFY2(r.ok, qPrintable(r.error));
    QCOMPARE(int(r.best), int(w.view));
    QString shown = w.view == ValueView::kJson ? r.json : w.view == ValueView::kImage ? r.image_info
                  : w.view == ValueView::kPickle ? r.pickle : w.view == ValueView::kHex ? r.hex : r.text;
    QVERIFY2(shown.contains(QString::fromUtf8(w.shows)), qPrintable(QString("%1: %2").arg(w.name, shown.left(2000))));
  }
  QVERIFY(!RenderValue(*region_, ":1:image", 0).image.isNull());
  const RenderedValue gone = RenderValue(*region_, ":1:no-such-key", 0);
  QVERIFY(!gone.ok);
  QVERIFY2(gone.error.contains("values") && gone.error.contains("no-such-key"), qPrintable(gone.error));
}

void ValuesTest::hugeValueIsCappedUntilLoadAll() {
  QString error;
  QByteArray out = DjangoRegion(conf_, {"set-text", "huge", "900000"}, &error);
  QVERIFY2(error.isEmpty(), qPrintable(error));
  const std::string key = QJsonDocument::fromJson(out)["key"].toString().toStdString();
  ValueViewer viewer;
  QSignalSpy loaded(&viewer, &ValueViewer::loaded);
  viewer.showKey(region_, key);
  QVERIFY(loaded.wait(10000));
  QVERIFY(viewer.rendered().capped);
  QCOMPARE(viewer.rendered().total, uint64_t(900000));
  QCOMPARE(viewer.rendered().text.size(), ValueViewer::kCap);
  auto* load_all = viewer.findChild<QPushButton*>("loadAll");
  QVERIFY(load_all && !load_all->isHidden());
  load_all->click();
  QVERIFY(loaded.wait(10000));
  QVERIFY(!viewer.rendered().capped);
  QCOMPARE(viewer.rendered().text.size(), 900000);
  QVERIFY(viewer.rendered().text.startsWith("abcdefghijklmnopqrstuvwxyzabc"));
  // Asked for in quick succession, the last request wins: the whole value.
  viewer.showKey(region_, key);
  viewer.loadAll();
  QVERIFY(viewer.busy());
  QVERIFY(WaitUntil([&] { return !viewer.busy(); }, 10000));
  QVERIFY(!viewer.rendered().capped);
  QCOMPARE(viewer.rendered().total, uint64_t(900000));
}

QTEST_MAIN(ValuesTest)
#include "values_test.moc"
