// Cached pages by URL: the records regioncache's recording middleware and
// @regioncache.cache_page store beside each page they cache
// (django_backend/regioncache/cached_pages.py, key
// "<KEY_PREFIX>:<version>:regioncache.page-url.<url md5>.<page key md5>",
// a JSON str value), read through the Store interface; the "Pages" tab of the
// key browser lists them and purges by URL or URL glob through the WriteGate.
#pragma once

#include <QAbstractTableModel>
#include <QFutureWatcher>
#include <QJsonObject>
#include <QString>
#include <QStringList>
#include <QWidget>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "region.h"
#include "write_gate.h"

class QLabel;
class QLineEdit;
class QPushButton;
class QTableView;

namespace rcgui {

inline constexpr std::string_view kRecordNamespace = "regioncache.page-url.";
inline constexpr std::string_view kPageNamespace = "views.decorators.cache.cache_page.";
inline constexpr std::string_view kHeaderNamespace = "views.decorators.cache.cache_header.";

// One recorded page variant.
struct PageRecord {
  std::string record_key;  // the record's full key
  std::string page_key;    // the page's full key (a pickled HttpResponse)
  std::string header_key;  // its header list's full key
  QString url, method;
  QString language, time_zone;  // "" when Django put none in the key
  QJsonObject vary;             // request header -> value as recorded
  int64_t expires_ms = 0;       // the record's own "expires" (0: none given)
  QString variantText() const;  // "en · Europe/Paris · Accept-Language=fr"
};

// Reads one record: record_key is its full key, json its stored text. A
// record is trusted only when it parses as a JSON object with a str url and
// method, and names a page key and a header-list key that start with the
// record's own KEY_PREFIX and version followed by Django's page and
// header-list namespaces and that core classifies as such
// (ClassifyDjangoKey): so a damaged or forged record can never point a purge
// at other keys. Returns false with *why saying what was wrong.
bool ParsePageRecord(std::string_view record_key, std::string_view json, PageRecord* out,
                     QString* why);

// True when url matches pattern: anchored at both ends, '*' any run of
// characters ('/' too), every other character literal ('?' of a query
// string included). The same rule as cached_pages.url_glob (used by
// regioncache.purge_url and `cacheregions purge --url`), so the app and
// Python agree on what a glob purges.
bool UrlGlobMatches(std::string_view pattern, std::string_view url);

struct PageIndex {
  std::vector<PageRecord> pages;  // live records whose page is still cached, by URL
  std::vector<PageRecord> stale;  // live records whose page is gone (a purge takes them too)
  int skipped = 0;                // records that were unreadable or untrusted
  QStringList notes;              // why, one line per skipped record (first 20)
};

// Lists the records of a region (Peek: no hits counted) and keeps those
// whose page is still cached. May block: call it from a worker.
regioncache::Status ReadPageIndex(Region& region, PageIndex* out);

// The full keys a purge of url_or_glob deletes, sorted: for each matching
// record, the page, its header list and the record; for an exact URL (no
// '*') also every page and header-list key whose URL hash is Django's MD5 of
// that URL (so pages cached without recording go too). May block.
regioncache::Status UrlPurgeKeys(Region& region, const PageIndex& index,
                                 const QString& url_or_glob, std::vector<std::string>* keys);

// The full key of the record of a page (its full key): "<head>regioncache.
// page-url.<url md5>.<md5 of the page key without head>", as cached_pages
// names it; "" for a key that is not a cached page.
std::string RecordKeyOf(std::string_view page_key);
// "GET https://…" recorded for that page (one Peek), "" if none or untrusted.
QString RecordedUrl(Region& region, const std::string& page_key);

// The pages of an index, one row per variant.
class PagesModel : public QAbstractTableModel {
  Q_OBJECT

 public:
  enum Column { kUrl, kMethod, kVariant, kExpires, kColumns };
  using QAbstractTableModel::QAbstractTableModel;

  void setIndex(PageIndex index);
  const PageIndex& pageIndex() const { return index_; }
  const PageRecord* record(int row) const;

  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QVariant headerData(int section, Qt::Orientation o, int role) const override;

 private:
  PageIndex index_;
};

// The "Pages" tab: the table of pages by URL, a URL / glob field and
// "Purge URL…" (the count first, then the confirmation, then the WriteGate).
class PagesPanel : public QWidget {
  Q_OBJECT

 public:
  using Confirmer = std::function<bool(const QString& title, const QString& text)>;

  PagesPanel(WriteGate* gate, QWidget* parent = nullptr);
  ~PagesPanel() override;

  // The records are read when the tab is shown (not while the keys of a big
  // region load beside it), and again after each purge.
  void setRegion(RegionPtr region);
  void reload();      // reads the records again (on a worker)
  void invalidate();  // reload() now if shown, else when next shown
  // Looks up the URL recorded for a page key on a worker; urlFound follows
  // if there is one.
  void lookUpUrl(const std::string& page_key);
  void setConfirmer(Confirmer c) { confirm_ = std::move(c); }
  void setReadOnly(bool on);
  // Counts what url_or_glob matches, asks, then deletes (workers).
  void purgeUrl(const QString& url_or_glob);

  PagesModel* model() const { return model_; }
  QTableView* table() const { return table_; }
  QLineEdit* urlField() const { return url_; }
  bool busy() const;
  QString noteText() const;
  QString lastMessage() const { return last_message_; }
  QString lastError() const { return last_error_; }

 signals:
  void pageSelected(const std::string& page_key, const QString& url);
  void urlFound(const std::string& page_key, const QString& url);
  void regionChanged();  // a purge deleted keys
  void message(const QString& text);

 protected:
  void showEvent(QShowEvent* e) override;

 private:
  struct Loaded {
    regioncache::Status status;
    PageIndex index;
  };
  struct Counted {
    RegionPtr region;  // the region counted (and then purged)
    regioncache::Status status;
    std::vector<std::string> keys;
    uint64_t deleted = 0;
  };
  void onLoaded();
  void showError(const QString& text);
  void showMessage(const QString& text);

  WriteGate* gate_;
  RegionPtr region_;
  Confirmer confirm_;
  PagesModel* model_;
  QTableView* table_;
  QLineEdit* url_;
  QPushButton* purge_;
  QPushButton* reload_;
  QLabel* note_;
  QLabel* error_;
  QFutureWatcher<Loaded> load_watcher_;
  QFutureWatcher<Counted> count_watcher_;
  QFutureWatcher<Counted> purge_watcher_;
  bool reload_again_ = false;
  bool stale_ = true;  // the table is not of the current region's records
  // Set when a worker starts, cleared when its result is handled on the UI
  // thread (a watcher stops running before its finished() is delivered).
  bool loading_ = false, counting_ = false, deleting_ = false;
  QString purging_;  // the URL or glob being purged
  QString last_message_, last_error_;
};

}  // namespace rcgui
