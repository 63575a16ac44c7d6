// The Pages tab on pages real Django views cached through
// regioncache.cache_page (Django's test client, Vary: Accept-Language, i18n
// and time zones on, GET and HEAD) in each store kind: the app lists them by
// URL, shows the URL, status and body of the one selected, and a purge by URL
// glob deletes every variant, header list and record of the matching URLs,
// the very keys regioncache.purge_url would (cached_pages.url_keys), and
// leaves the other pages. A damaged record and a forged one (naming a key
// outside the page namespaces) are skipped with a note; read-only refuses.
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLineEdit>
#include <QTabWidget>
#include <QTableView>
#include <QtTest>
#include <set>

#include "key_browser.h"
#include "page_index.h"
#include "region.h"
#include "test_support.h"
#include "value_viewer.h"

using namespace rcgui;
using namespace rcgui::testing;

class PagesByUrlTest : public QObject {
  Q_OBJECT

 private slots:
  void globIsAnchoredWithStarOnly();
  void recordsAreParsedAndCheckedNeverTrusted();
  void listsPagesByUrlAndShowsUrlStatusAndBody_data() { kinds(); }
  void listsPagesByUrlAndShowsUrlStatusAndBody();
  void purgeByGlobLeavesTheOtherPages_data() { kinds(); }
  void purgeByGlobLeavesTheOtherPages();
  void exactUrlIsPurgedAndNoMatchSaysSo();
  void readOnlyRefusesThePurge();
  void cleanupTestCase();

 private:
  void kinds() {
    QTest::addColumn<int>("kind");
    const auto all = AllKinds();
    for (int i = 0; i < all.size(); ++i) QTest::newRow(qPrintable(all[i].kind)) << i;
  }
  // A fresh region of a kind filled by kFill, Python's answers, and a key
  // browser on it with its keys and pages read.
  struct Filled {
    RegionPtr region;
    QJsonObject py;
    WriteGate gate;
    std::unique_ptr<KeyBrowser> browser;
  };
  bool fill(int kind, Filled* f);
  bool has(const RegionPtr& region, const std::string& key);

  QList<QPair<int, QJsonObject>> made_;
};

namespace {

// Caches pages through Django's test client with regioncache.cache_page,
// adds a damaged record and a forged one, and prints what Python's
// cached_pages says a purge would delete.
const char* kFill = R"PY(
import json, sys
import django
from django.conf import settings
conf = json.loads(sys.argv[1])
settings.configure(CACHES={"default": conf}, ROOT_URLCONF="__main__",
                   MIDDLEWARE=["django.middleware.locale.LocaleMiddleware"], USE_I18N=True,
                   LANGUAGE_CODE="en", LANGUAGES=[("en", "English"), ("fr", "French")],
                   USE_TZ=True, TIME_ZONE="Europe/Paris",
                   ALLOWED_HOSTS=["testserver"], SECRET_KEY="t")
django.setup()
import regioncache
from regioncache import cached_pages
from django.core.cache import cache
from django.http import HttpResponse
from django.test import Client
from django.urls import path
from django.views.decorators.vary import vary_on_headers

@regioncache.cache_page(60)
@vary_on_headers("X-Device")
def article(request, pk):
    return HttpResponse("<html><body><h1>Article %d</h1><p>%s %s</p></body></html>"
                        % (pk, request.LANGUAGE_CODE, request.headers.get("X-Device", "")))

@regioncache.cache_page(60)
def about(request):
    return HttpResponse("<html><body><h1>About us</h1></body></html>")

urlpatterns = [path("articles/<int:pk>/", article), path("about/", about)]

c = Client()
# Article 1 in three variants (two languages, two devices), article 2 by
# HEAD first (so Django stores a HEAD page), then by GET.
for lang, device in (("en", "desk"), ("fr", "desk"), ("en", "phone")):
    assert c.get("/articles/1/", HTTP_ACCEPT_LANGUAGE=lang, HTTP_X_DEVICE=device).status_code == 200
assert c.head("/articles/2/", HTTP_ACCEPT_LANGUAGE="en").status_code == 200
assert c.get("/articles/2/", HTTP_ACCEPT_LANGUAGE="en").status_code == 200
assert c.get("/about/").status_code == 200
cache.set("precious", "keep me")
cache.set("regioncache.page-url.0123.4567", '{"url": "http://testserver/articles/3/", "meth')
cache.set("regioncache.page-url.89ab.cdef", json.dumps({
    "url": "http://testserver/articles/9/", "method": "GET",
    "page_key": cache.make_key("precious"), "header_key": cache.make_key("precious")}))
print(json.dumps({
    "glob": cached_pages.url_keys("http://testserver/articles/*", "default"),
    "about": cached_pages.url_keys("http://testserver/about/", "default"),
    "pages": [[p["url"], p["method"], len(p["variants"])] for p in cached_pages.pages("default")],
    "precious": cache.make_key("precious"),
}))
)PY";

std::set<std::string> Strings(const QJsonArray& a) {
  std::set<std::string> out;
  for (const QJsonValue& v : a) out.insert(v.toString().toStdString());
  return out;
}

}  // namespace

bool PagesByUrlTest::fill(int kind, Filled* f) {
  const KindUnderTest k = AllKinds()[kind];
  const QJsonObject conf = k.django_conf(UniqueName("pages"));
  made_.push_back({kind, conf});
  QByteArray out;
  QString error;
  if (!RunPython({"-c", kFill, QString::fromUtf8(QJsonDocument(conf).toJson(QJsonDocument::Compact))}, &out,
                 &error)) {
    qWarning("%s", qPrintable(error));
    return false;
  }
  f->py = QJsonDocument::fromJson(out).object();
  f->region = std::make_shared<Region>(SpecFromConf("pages", k.kind, conf));
  if (!f->py.contains("glob")) return false;
  KeyBrowser* b = (f->browser = std::make_unique<KeyBrowser>(&f->gate)).get();
  b->resize(1000, 700);
  b->show();
  b->views()->setCurrentWidget(b->pages());  // the records are read when the tab shows
  b->setRegion(f->region);
  return WaitUntil([&] { return !b->pages()->busy() && !b->loader()->running(); }, 30000);
}

bool PagesByUrlTest::has(const RegionPtr& region, const std::string& key) {
  regioncache::Status s;
  auto store = region->acquire(&s);
  regioncache::Value v;
  return store && store->Peek(key, &v).ok();
}

void PagesByUrlTest::cleanupTestCase() {
  const auto all = AllKinds();
  for (const auto& [kind, conf] : made_) all[kind].cleanup(conf);
}

void PagesByUrlTest::globIsAnchoredWithStarOnly() {
  QVERIFY(UrlGlobMatches("https://shop.example/articles/*", "https://shop.example/articles/42/"));
  QVERIFY(UrlGlobMatches("https://shop.example/articles/*", "https://shop.example/articles/"));
  QVERIFY(UrlGlobMatches("*/42/", "https://shop.example/a/b/42/"));  // '*' spans '/'
  QVERIFY(UrlGlobMatches("https://*/x?a=1", "https://h/x?a=1"));
  QVERIFY(!UrlGlobMatches("https://*/x?a=1", "https://h/x/a=1"));     // '?' is literal
  QVERIFY(!UrlGlobMatches("https://shop.example/articles/", "https://shop.example/articles/42/"));  // anchored end
  QVERIFY(!UrlGlobMatches("shop.example/*", "https://shop.example/a/"));  // anchored start
  QVERIFY(!UrlGlobMatches("https://shop.example/[a]*", "https://shop.example/a/"));  // '[' literal
  QVERIFY(UrlGlobMatches("https://shop.example/[a]*", "https://shop.example/[a]/"));
  QVERIFY(UrlGlobMatches("*a*a*a*b", std::string(40, 'a') + "b"));
  QVERIFY(!UrlGlobMatches("*a*a*a*b", std::string(40, 'a')));
}

void PagesByUrlTest::recordsAreParsedAndCheckedNeverTrusted() {
  const std::string head = "site:1:";
  const std::string rec = head + "regioncache.page-url.aaa.bbb";
  const std::string page =
      head + "views.decorators.cache.cache_page..GET.0f1e2d3c4b5a69788796a5b4c3d2e1f0.d41d8cd98f00b204e9800998ecf8427e.en";
  const std::string hdr = head + "views.decorators.cache.cache_header..0f1e2d3c4b5a69788796a5b4c3d2e1f0.en";
  QJsonObject o{{"url", "https://h/a/"}, {"method", "GET"}, {"page_key", QString::fromStdString(page)},
                {"header_key", QString::fromStdString(hdr)}, {"language", "en"},
                {"vary", QJsonObject{{"HTTP_ACCEPT_LANGUAGE", "fr"}}}, {"expires", 2e9}};
  const std::string good = QJsonDocument(o).toJson().toStdString();
  PageRecord r;
  QString why;
  QVERIFY2(ParsePageRecord(rec, good, &r, &why), qPrintable(why));
  QCOMPARE(r.url, QString("https://h/a/"));
  QCOMPARE(r.page_key, page);
  QCOMPARE(r.expires_ms, int64_t(2e12));
  QCOMPARE(r.variantText(), QString::fromUtf8("en · ACCEPT_LANGUAGE=fr"));
  // Cut short, not an object, no URL.
  QVERIFY(!ParsePageRecord(rec, good.substr(0, good.size() / 2), &r, &why));
  QVERIFY2(why.startsWith("not JSON"), qPrintable(why));
  QVERIFY(!ParsePageRecord(rec, "[1]", &r, &why));
  QVERIFY(!ParsePageRecord(rec, R"({"method":"GET"})", &r, &why));
  // Keys of another prefix, of another namespace, or a plain key: refused.
  for (const std::string& bad : {std::string("other:1:") + page.substr(head.size()), head + "precious",
                                 head + "views.decorators.cache.cache_page.nonsense"}) {
    QJsonObject f = o;
    f["page_key"] = QString::fromStdString(bad);
    QVERIFY(!ParsePageRecord(rec, QJsonDocument(f).toJson().toStdString(), &r, &why));
    QVERIFY2(why.startsWith("names keys outside"), qPrintable(why));
  }
  QJsonObject f = o;
  f["header_key"] = QString::fromStdString(page);  // a page where its header list should be
  QVERIFY(!ParsePageRecord(rec, QJsonDocument(f).toJson().toStdString(), &r, &why));
}

void PagesByUrlTest::listsPagesByUrlAndShowsUrlStatusAndBody() {
  QFETCH(int, kind);
  Filled f;
  QVERIFY(fill(kind, &f));
  KeyBrowser& b = *f.browser;
  PagesModel* m = b.pages()->model();
  // What Python's regioncache.pages() lists, variant by variant.
  QMap<QString, int> expected, shown;
  for (const QJsonValue& p : f.py["pages"].toArray())
    expected[p[0].toString() + " " + p[1].toString()] = p[2].toInt();
  for (int row = 0; row < m->rowCount(); ++row) ++shown[m->record(row)->url + " " + m->record(row)->method];
  QCOMPARE(shown, expected);
  QCOMPARE(shown.value("http://testserver/articles/1/ GET"), 3);  // en, fr; desk, phone
  QCOMPARE(shown.value("http://testserver/articles/2/ HEAD"), 1);
  QCOMPARE(shown.value("http://testserver/articles/2/ GET"), 1);
  QVERIFY(shown.contains("http://testserver/about/ GET"));
  // The damaged and the forged record: skipped, and said so.
  QCOMPARE(m->pageIndex().skipped, 2);
  const QString note = b.pages()->noteText();
  QVERIFY2(note.contains("2 records skipped") && note.contains("not JSON") &&
               note.contains("names keys outside"),
           qPrintable(note));

  int fr = -1;
  for (int row = 0; row < m->rowCount(); ++row)
    if (m->record(row)->method == "GET" && m->record(row)->url.endsWith("/articles/1/") &&
        m->record(row)->language == "fr")
      fr = row;
  QVERIFY(fr >= 0);
  const QString variant = m->data(m->index(fr, PagesModel::kVariant), Qt::DisplayRole).toString();
  QVERIFY2(variant == QString::fromUtf8("fr · Europe/Paris · X_DEVICE=desk"),
           qPrintable(variant));
  b.pages()->table()->selectRow(fr);
  QVERIFY(WaitUntil([&] { return !b.viewer()->busy(); }, 10000));
  ValueViewer* v = b.viewer();
  QCOMPARE(v->currentTabName(), QString("Page"));
  QCOMPARE(v->pageUrlText(), QString("URL: GET http://testserver/articles/1/"));
  QVERIFY2(v->pageView()->statusText().startsWith("200 OK"), qPrintable(v->pageView()->statusText()));
  QVERIFY2(v->pageView()->sourceText().contains("<h1>Article 1</h1><p>fr desk</p>"),
           qPrintable(v->pageView()->sourceText()));
  QCOMPARE(b.pages()->urlField()->text(), QString("http://testserver/articles/1/"));

  // The same URL shows above the page when it is selected in the Keys tab.
  b.views()->setCurrentWidget(b.table());
  const std::string about = [&] {
    for (int row = 0; row < m->rowCount(); ++row)
      if (m->record(row)->url.endsWith("/about/")) return m->record(row)->page_key;
    return std::string();
  }();
  for (int row = 0; row < b.model()->rowCount(); ++row)
    if (b.model()->data(b.model()->index(row, 0), KeyTableModel::kRawKeyRole).toByteArray().toStdString() == about)
      b.table()->selectRow(row);
  QVERIFY(WaitUntil([&] { return !b.viewer()->busy() && !v->pageUrlText().isEmpty(); }, 10000));
  QCOMPARE(v->pageUrlText(), QString("URL: GET http://testserver/about/"));
  QVERIFY(v->pageView()->sourceText().contains("About us"));
}

void PagesByUrlTest::purgeByGlobLeavesTheOtherPages() {
  QFETCH(int, kind);
  Filled f;
  QVERIFY(fill(kind, &f));
  KeyBrowser& b = *f.browser;
  const std::set<std::string> doomed = Strings(f.py["glob"].toArray());
  const std::set<std::string> about = Strings(f.py["about"].toArray());
  // Article 1 (GET en desk, fr desk, en phone: header lists en and fr) and
  // article 2 (HEAD and GET: one header list): 5 pages, 3 header lists, 5
  // records; about: page, header list, record.
  QCOMPARE(doomed.size(), size_t(13));
  QCOMPARE(about.size(), size_t(3));
  for (const std::string& k : doomed) QVERIFY2(has(f.region, k), k.c_str());

  // The app's keys for the glob are Python's.
  PageIndex index;
  QVERIFY(ReadPageIndex(*f.region, &index).ok());
  std::vector<std::string> keys;
  QVERIFY(UrlPurgeKeys(*f.region, index, "http://testserver/articles/*", &keys).ok());
  QCOMPARE(std::set<std::string>(keys.begin(), keys.end()), doomed);

  QString asked;
  b.setConfirmer([&](const QString&, const QString& text) {
    asked = text;
    return true;
  });
  b.pages()->urlField()->setText("http://testserver/articles/*");
  QTest::keyClick(b.pages()->urlField(), Qt::Key_Return);
  QVERIFY(WaitUntil([&] { return !b.pages()->busy() && !b.loader()->running(); }, 30000));
  QVERIFY2(asked.startsWith("Purge 13 keys of pages (pages and their header lists: 8, URL records: 5)"),
           qPrintable(asked));
  QVERIFY2(b.pages()->lastMessage().startsWith("Purged 13 keys of pages"), qPrintable(b.pages()->lastMessage()));
  for (const std::string& k : doomed) QVERIFY2(!has(f.region, k), k.c_str());
  for (const std::string& k : about) QVERIFY2(has(f.region, k), k.c_str());
  QVERIFY(has(f.region, f.py["precious"].toString().toStdString()));  // the forged record named it
  PagesModel* m = b.pages()->model();
  QCOMPARE(m->rowCount(), 1);
  QCOMPARE(m->record(0)->url, QString("http://testserver/about/"));
}

void PagesByUrlTest::exactUrlIsPurgedAndNoMatchSaysSo() {
  Filled f;
  QVERIFY(fill(0, &f));
  KeyBrowser& b = *f.browser;
  int asked = 0;
  b.setConfirmer([&](const QString&, const QString&) { return ++asked, true; });
  b.pages()->purgeUrl("http://testserver/nothing/*");
  QVERIFY(WaitUntil([&] { return !b.pages()->busy(); }, 30000));
  QCOMPARE(b.pages()->lastMessage(), QString("No cached page matches http://testserver/nothing/*: nothing purged"));
  b.pages()->purgeUrl("http://testserver/about");  // no slash: another URL
  QVERIFY(WaitUntil([&] { return !b.pages()->busy(); }, 30000));
  QVERIFY(b.pages()->lastMessage().startsWith("No cached page matches"));
  QCOMPARE(asked, 0);

  b.pages()->purgeUrl("http://testserver/about/");
  QVERIFY(WaitUntil([&] { return !b.pages()->busy() && !b.loader()->running(); }, 30000));
  QCOMPARE(asked, 1);
  for (const QJsonValue& k : f.py["about"].toArray()) QVERIFY(!has(f.region, k.toString().toStdString()));
  QCOMPARE(b.pages()->model()->rowCount(), 5);  // the articles' variants

  // No region while the records are read: the read is dropped, nothing shown.
  b.pages()->reload();
  b.setRegion(nullptr);
  QVERIFY(WaitUntil([&] { return !b.pages()->busy(); }, 30000));
  QCOMPARE(b.pages()->model()->rowCount(), 0);
  QCOMPARE(b.pages()->noteText(), QString("no region selected"));
}

void PagesByUrlTest::readOnlyRefusesThePurge() {
  Filled f;
  QVERIFY(fill(0, &f));
  KeyBrowser& b = *f.browser;
  b.setConfirmer([](const QString&, const QString&) { return true; });
  // A browser on the Keys tab reads no record until the Pages tab shows.
  WriteGate gate;
  KeyBrowser keys(&gate);
  keys.show();
  keys.setRegion(f.region);
  QVERIFY(WaitUntil([&] { return !keys.loader()->running(); }, 30000));
  QVERIFY(!keys.pages()->busy());
  QCOMPARE(keys.pages()->model()->rowCount(), 0);
  keys.views()->setCurrentWidget(keys.pages());
  QVERIFY(WaitUntil([&] { return !keys.pages()->busy(); }, 30000));
  QCOMPARE(keys.pages()->model()->rowCount(), 6);

  b.setReadOnly(true);
  b.pages()->purgeUrl("http://testserver/articles/*");
  QVERIFY(WaitUntil([&] { return !b.pages()->busy(); }, 30000));
  QVERIFY2(b.pages()->lastError().contains("refused: the app is in read-only mode"),
           qPrintable(b.pages()->lastError()));
  for (const QJsonValue& k : f.py["glob"].toArray()) QVERIFY(has(f.region, k.toString().toStdString()));
}

QTEST_MAIN(PagesByUrlTest)
#include "pages_by_url_test.moc"
