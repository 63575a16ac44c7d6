// The Tree and Page views of the value viewer on values Django really stored:
// pages cached by @cache_page through Django's test client (plain HTML with
// an image that must not load, and a gzipped page), a malicious pickle that
// would create a file, a page cut short and a pickle that cannot be read.
#include <QDir>
#include <QFile>
#include <QJsonDocument>
#include <QJsonObject>
#include <QtTest>

#include "region.h"
#include "regioncache/codec.h"
#include "test_support.h"
#include "value_viewer.h"

using namespace rcgui;
using namespace rcgui::testing;


class PickleViewsTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase();
  void cleanupTestCase();
  void cachedPageShowsStatusHeadersAndBody();
  void gzippedPageIsUnpacked();
  void maliciousPickleShowsAsATreeAndRunsNothing();
  void damagedPageShowsWhatWasReadAndWhy();
  void unreadablePickleFallsBackToOpcodes();

 private:
  void show(ValueViewer* viewer, const std::string& key);
  // Stores data under key with the flags of the entry at from.
  void storeRaw(const std::string& from, const std::string& key, const std::string& data);

  QJsonObject conf_;
  RegionPtr region_;
  QJsonObject keys_;
  QString evil_path_;
};

namespace {

// Caches two pages through Django's test client and stores a malicious value;
// prints the keys of each.
const char* kFill = R"PY(
import json, os, sys
import django
from django.conf import settings
conf, evil_path = json.loads(sys.argv[1]), sys.argv[2]
settings.configure(CACHES={"default": conf}, ROOT_URLCONF="__main__", MIDDLEWARE=[], USE_TZ=True,
                   ALLOWED_HOSTS=["testserver"], SECRET_KEY="t")
django.setup()
from django.core.cache import cache
from django.http import HttpResponse
from django.test import Client
from django.urls import path
from django.views.decorators.cache import cache_page
from django.views.decorators.gzip import gzip_page

@cache_page(60)
def article(request):
    r = HttpResponse('<html><body><h1>Caf\u00e9 42</h1><p>Read <b>this</b>.</p>'
                     '<img src="file:///etc/hostname"></body></html>')
    r["X-Article"] = "42"
    return r

@cache_page(60)
@gzip_page
def big(request):
    return HttpResponse("<html><body>" + "<p>zipped line</p>" * 50 + "</body></html>")

urlpatterns = [path("articles/42/", article), path("big/", big)]

def keys():
    out, cursor = set(), ""
    while True:
        entries, cursor = cache.list_entries(cursor=cursor, glob="*cache_page*")
        out |= {e["key"] for e in entries}
        if not cursor:
            return out

c = Client()
assert c.get("/articles/42/").status_code == 200
page = keys()
assert c.get("/big/", HTTP_ACCEPT_ENCODING="gzip")["Content-Encoding"] == "gzip"
gz = keys() - page

class Call:
    def __reduce__(self):
        return exec, ("open(%r, 'w').close()" % evil_path,)

cache.set("evil", {"user": "mallory", "payload": Call()})
print(json.dumps({"page": page.pop(), "gzip": gz.pop(), "evil": cache.make_key("evil")}))
)PY";

}  // namespace

void PickleViewsTest::initTestCase() {
  conf_ = AllKinds().first().django_conf(UniqueName("pickleviews"));
  evil_path_ = QDir::temp().filePath(UniqueName("pwned"));
  QFile::remove(evil_path_);
  QByteArray out;
  QString error;
  QVERIFY2(RunPython({"-c", kFill, QString::fromUtf8(QJsonDocument(conf_).toJson(QJsonDocument::Compact)),
                      evil_path_}, &out, &error),
           qPrintable(error));
  keys_ = QJsonDocument::fromJson(out).object();
  QVERIFY2(keys_.contains("page") && keys_.contains("gzip"), out.constData());
  QVERIFY(!QFile::exists(evil_path_));  // storing it ran nothing either
  region_ = std::make_shared<Region>(SpecFromConf("pickleviews", "shm", conf_));
}

void PickleViewsTest::cleanupTestCase() {
  QFile::remove(evil_path_);
  AllKinds().first().cleanup(conf_);
}

void PickleViewsTest::show(ValueViewer* viewer, const std::string& key) {
  viewer->showKey(region_, key);
  QVERIFY(WaitUntil([&] { return !viewer->busy(); }, 10000));
  QVERIFY2(viewer->rendered().ok, qPrintable(viewer->rendered().error));
}

void PickleViewsTest::storeRaw(const std::string& from, const std::string& key, const std::string& data) {
  regioncache::Status s;
  auto store = region_->acquire(&s);
  QVERIFY2(store, s.ToString().c_str());
  regioncache::Value v;
  QVERIFY(store->Peek(from, &v).ok());
  QVERIFY(store->Set(key, data, v.flags, 0).ok());
}

void PickleViewsTest::cachedPageShowsStatusHeadersAndBody() {
  ValueViewer viewer;
  viewer.resize(900, 700);
  viewer.show();
  show(&viewer, keys_["page"].toString().toStdString());
  QCOMPARE(viewer.currentTabName(), QString("Page"));  // chosen first for a page
  PageView* page = viewer.pageView();
  QVERIFY2(page->statusText().startsWith("200 OK"), qPrintable(page->statusText()));
  QVERIFY2(page->headersText().contains("X-Article: 42"), qPrintable(page->headersText()));
  QVERIFY(page->headersText().contains("Content-Type: text/html; charset=utf-8"));
  QVERIFY(page->headersText().contains("Cache-Control: max-age=60"));
  QVERIFY(page->sourceText().contains(QString::fromUtf8("<h1>Caf\u00e9 42</h1>")));
  QVERIFY(page->renderedText().contains(QString::fromUtf8("Caf\u00e9 42")));
  QVERIFY(page->renderedText().contains("Read this."));
  QVERIFY(!page->renderedText().contains("<h1>"));
  QVERIFY(page->noteText().isEmpty());
  // The <img src="file:///etc/hostname"> was asked for and refused.
  QVERIFY(page->refusedResources() >= 1);
  // The tree is there too, beside the opcode listing.
  QVERIFY(viewer.treeView()->text().contains("object django.http.response.HttpResponse"));
  QVERIFY(viewer.rendered().pickle.contains("SHORT_BINUNICODE"));
}

void PickleViewsTest::gzippedPageIsUnpacked() {
  ValueViewer viewer;
  show(&viewer, keys_["gzip"].toString().toStdString());
  QCOMPARE(viewer.currentTabName(), QString("Page"));
  PageView* page = viewer.pageView();
  QVERIFY(page->headersText().contains("Content-Encoding: gzip"));
  QVERIFY2(page->statusText().contains("gzip"), qPrintable(page->statusText()));
  QCOMPARE(page->sourceText().count("<p>zipped line</p>"), 50);
  QVERIFY(page->noteText().isEmpty());
}

void PickleViewsTest::maliciousPickleShowsAsATreeAndRunsNothing() {
  ValueViewer viewer;
  show(&viewer, keys_["evil"].toString().toStdString());
  QCOMPARE(viewer.currentTabName(), QString("Tree"));
  const QString tree = viewer.treeView()->text();
  QVERIFY2(tree.contains("'user': 'mallory' | str"), qPrintable(tree));
  QVERIFY2(tree.contains("'payload': object builtins.exec | object"), qPrintable(tree));
  QVERIFY(tree.contains(evil_path_));
  QVERIFY(viewer.treeView()->note().isEmpty());
  QVERIFY(!QFile::exists(evil_path_));
}

void PickleViewsTest::damagedPageShowsWhatWasReadAndWhy() {
  regioncache::Status s;
  auto store = region_->acquire(&s);
  QVERIFY(store);
  regioncache::Value v;
  const std::string page_key = keys_["page"].toString().toStdString();
  QVERIFY(store->Peek(page_key, &v).ok());
  const size_t body = v.data.find("<html><body>");
  QVERIFY(body != std::string::npos);
  storeRaw(page_key, "damaged-page", v.data.substr(0, body + 6));

  ValueViewer viewer;
  show(&viewer, "damaged-page");
  QCOMPARE(viewer.currentTabName(), QString("Page"));
  PageView* page = viewer.pageView();
  QVERIFY2(page->statusText().startsWith("200 OK"), qPrintable(page->statusText()));
  QVERIFY(page->headersText().contains("X-Article: 42"));
  const QString note = page->noteText();
  QVERIFY2(note.startsWith("Shown: what could be read. Not read: pickle: SHORT_BINBYTES"), qPrintable(note));
  QVERIFY(note.contains("offset"));
  QVERIFY(viewer.treeView()->note().contains("Not read as a tree"));
  QVERIFY(viewer.rendered().pickle.startsWith("[not read as a tree: pickle: SHORT_BINBYTES"));
}

void PickleViewsTest::unreadablePickleFallsBackToOpcodes() {
  const std::string evil_key = keys_["evil"].toString().toStdString();
  regioncache::Status s;
  auto store = region_->acquire(&s);
  QVERIFY(store);
  regioncache::Value v;
  QVERIFY(store->Peek(evil_key, &v).ok());
  storeRaw(evil_key, "cut-pickle", v.data.substr(0, v.data.size() / 2));
  ValueViewer viewer;
  show(&viewer, "cut-pickle");
  QCOMPARE(viewer.currentTabName(), QString("Pickle"));
  QVERIFY(viewer.rendered().pickle.startsWith("[not read as a tree: pickle:"));
  QVERIFY(viewer.treeView()->note().startsWith("Not read as a tree: pickle:"));
  QVERIFY(!QFile::exists(evil_path_));
}

QTEST_MAIN(PickleViewsTest)
#include "pickle_views_test.moc"
