#include "page_index.h"

#include <QCryptographicHash>
#include <QDateTime>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QItemSelectionModel>
#include <QJsonDocument>
#include <QJsonValue>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPushButton>
#include <QTableView>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>
#include <algorithm>
#include <unordered_set>

#include "format.h"
#include "key_groups.h"
#include "regioncache/codec.h"
#include "regioncache/django_keys.h"

namespace rcgui {

using regioncache::DjangoKeyKind;
using regioncache::Status;

namespace {

constexpr size_t kSignatureBytes = 32;  // HMAC-SHA256 tag of a signed value (codec.h)
constexpr int kNotesKept = 20;

int64_t NowMs() { return QDateTime::currentMSecsSinceEpoch(); }

// Every live key of region matching glob.
Status ListKeys(regioncache::Store& store, const std::string& glob, std::vector<std::string>* out) {
  regioncache::ListOptions opts;
  opts.glob = glob;
  opts.limit = 5000;
  for (;;) {
    regioncache::ListPage page;
    Status s = store.List(opts, &page);
    if (!s.ok()) return s;
    for (auto& e : page.entries) out->push_back(std::move(e.key));
    if (page.next_cursor.empty()) return Status::OK();
    opts.cursor = page.next_cursor;
  }
}

QString Str(const QJsonObject& o, const char* name) {
  const QJsonValue v = o.value(name);
  return v.isString() ? v.toString() : QString();
}

}  // namespace

QString PageRecord::variantText() const {
  QStringList parts;
  if (!language.isEmpty()) parts << language;
  if (!time_zone.isEmpty()) parts << time_zone;
  for (auto it = vary.begin(); it != vary.end(); ++it) {
    QString name = it.key();
    if (name.startsWith("HTTP_")) name = name.mid(5);
    parts << name + "=" + (it.value().isString() ? it.value().toString() : QString("(none)"));
  }
  return parts.isEmpty() ? QString::fromUtf8("—") : parts.join(QString::fromUtf8(" · "));
}

bool ParsePageRecord(std::string_view record_key, std::string_view json, PageRecord* out,
                     QString* why) {
  const size_t at = record_key.find(kRecordNamespace);
  if (at == std::string_view::npos) {
    *why = "not a page record key";
    return false;
  }
  // "<KEY_PREFIX>:<version>:" of the record: its page and header list must
  // carry the same.
  const std::string head(record_key.substr(0, at));
  QJsonParseError err{};
  const QJsonDocument doc =
      QJsonDocument::fromJson(QByteArray(json.data(), static_cast<qsizetype>(json.size())), &err);
  if (err.error != QJsonParseError::NoError) {
    *why = QString("not JSON (%1 at offset %2)").arg(err.errorString()).arg(err.offset);
    return false;
  }
  if (!doc.isObject()) {
    *why = "not a JSON object";
    return false;
  }
  const QJsonObject o = doc.object();
  PageRecord r;
  r.record_key = std::string(record_key);
  r.url = Str(o, "url");
  r.method = Str(o, "method");
  r.page_key = Str(o, "page_key").toStdString();
  r.header_key = Str(o, "header_key").toStdString();
  if (r.url.isEmpty() || r.method.isEmpty()) {
    *why = "no url or method";
    return false;
  }
  const regioncache::DjangoKey page = regioncache::ClassifyDjangoKey(r.page_key);
  const regioncache::DjangoKey header = regioncache::ClassifyDjangoKey(r.header_key);
  if (!r.page_key.starts_with(head + std::string(kPageNamespace)) || page.kind != DjangoKeyKind::kPage ||
      !r.header_key.starts_with(head + std::string(kHeaderNamespace)) ||
      header.kind != DjangoKeyKind::kPageHeaders) {
    *why = "names keys outside this prefix's page namespaces: " +
           QString::fromStdString(r.page_key).left(120) + ", " +
           QString::fromStdString(r.header_key).left(120);
    return false;
  }
  r.language = Str(o, "language");
  r.time_zone = Str(o, "time_zone");
  r.vary = o.value("vary").toObject();
  const QJsonValue expires = o.value("expires");
  if (expires.isDouble()) r.expires_ms = static_cast<int64_t>(expires.toDouble() * 1000.0);
  *out = std::move(r);
  return true;
}

bool UrlGlobMatches(std::string_view pattern, std::string_view url) {
  // Greedy match with backtracking to the last '*' (linear in practice, at
  // worst pattern × url): no regex, so no character of the URL is special.
  size_t p = 0, u = 0, star = std::string_view::npos, resume = 0;
  while (u < url.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = u;
    } else if (p < pattern.size() && pattern[p] == url[u]) {
      ++p;
      ++u;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      u = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

Status ReadPageIndex(Region& region, PageIndex* out) {
  *out = {};
  Status s;
  auto store = region.acquire(&s);
  if (!store) return s;
  std::vector<std::string> records, pages;
  s = ListKeys(*store, "*" + GlobLiteral(kRecordNamespace) + "*", &records);
  if (!s.ok()) return s;
  s = ListKeys(*store, "*" + GlobLiteral(kPageNamespace) + "*", &pages);
  if (!s.ok()) return s;
  const std::unordered_set<std::string> cached(pages.begin(), pages.end());
  auto skip = [&](const std::string& key, const QString& why) {
    if (++out->skipped <= kNotesKept) out->notes << QString::fromStdString(key) + ": " + why;
  };
  for (const std::string& key : records) {
    regioncache::Value v;
    s = store->Peek(key, &v);
    if (s.IsNotFound()) continue;  // expired since listed
    if (!s.ok()) return s;
    std::string_view text = v.bytes();
    if (regioncache::Encoding(v.flags) != regioncache::kEncStr) {
      skip(key, QString("not a str value (%1)").arg(regioncache::EncodingName(v.flags)));
      continue;
    }
    if (v.flags & regioncache::kFlagSigned) {
      // Signed by the site (SIGNING_KEY): the app has no key to check the
      // tag, so it reads the text and trusts it no more than any record
      // (ParsePageRecord's namespace check).
      if (text.size() < kSignatureBytes) {
        skip(key, "signed value shorter than its tag");
        continue;
      }
      text.remove_suffix(kSignatureBytes);
    }
    PageRecord r;
    QString why;
    if (!ParsePageRecord(key, text, &r, &why)) {
      skip(key, why);
      continue;
    }
    (cached.count(r.page_key) ? out->pages : out->stale).push_back(std::move(r));
  }
  std::sort(out->pages.begin(), out->pages.end(), [](const PageRecord& a, const PageRecord& b) {
    return std::tie(a.url, a.method, a.page_key) < std::tie(b.url, b.method, b.page_key);
  });
  return Status::OK();
}

Status UrlPurgeKeys(Region& region, const PageIndex& index, const QString& url_or_glob,
                    std::vector<std::string>* keys) {
  keys->clear();
  const std::string pattern = url_or_glob.toStdString();
  const bool glob = url_or_glob.contains('*');
  std::unordered_set<std::string> doomed;
  // As cached_pages.url_keys: every trusted record of a matching URL, with
  // the page and header list it names, whether or not the page is still there.
  for (const auto* records : {&index.pages, &index.stale}) {
    for (const PageRecord& r : *records) {
      const std::string url = r.url.toStdString();
      if (glob ? !UrlGlobMatches(pattern, url) : url != pattern) continue;
      doomed.insert(r.record_key);
      doomed.insert(r.page_key);
      doomed.insert(r.header_key);
    }
  }
  if (!glob) {
    // Django's MD5 of the URL as given (what build_absolute_uri() returns
    // for a request of it): its pages and header lists, recorded or not.
    // Only keys core classifies as a page or header list of that hash.
    const std::string md5 =
        QCryptographicHash::hash(url_or_glob.toUtf8(), QCryptographicHash::Md5).toHex().toStdString();
    Status s;
    auto store = region.acquire(&s);
    if (!store) return s;
    std::vector<std::string> found;
    s = ListKeys(*store, "*" + md5 + "*", &found);
    if (!s.ok()) return s;
    for (std::string& key : found) {
      const regioncache::DjangoKey k = regioncache::ClassifyDjangoKey(key);
      if ((k.kind == DjangoKeyKind::kPage || k.kind == DjangoKeyKind::kPageHeaders) && k.url_hash == md5)
        doomed.insert(std::move(key));
    }
  }
  keys->assign(doomed.begin(), doomed.end());
  std::sort(keys->begin(), keys->end());
  return Status::OK();
}

std::string RecordKeyOf(std::string_view page_key) {
  const regioncache::DjangoKey k = regioncache::ClassifyDjangoKey(page_key);
  if (k.kind != DjangoKeyKind::kPage) return {};
  const std::string_view head = page_key.substr(0, page_key.size() - k.key.size());
  const QByteArray md5 = QCryptographicHash::hash(QByteArray(k.key.data(), qsizetype(k.key.size())),
                                                  QCryptographicHash::Md5)
                             .toHex();
  return std::string(head) + std::string(kRecordNamespace) + std::string(k.url_hash) + "." + md5.toStdString();
}

QString RecordedUrl(Region& region, const std::string& page_key) {
  const std::string record = RecordKeyOf(page_key);
  if (record.empty()) return {};
  Status s;
  auto store = region.acquire(&s);
  regioncache::Value v;
  if (!store || !store->Peek(record, &v).ok() || regioncache::Encoding(v.flags) != regioncache::kEncStr)
    return {};
  std::string_view text = v.bytes();
  if ((v.flags & regioncache::kFlagSigned) && text.size() >= kSignatureBytes) text.remove_suffix(kSignatureBytes);
  PageRecord r;
  QString why;
  if (!ParsePageRecord(record, text, &r, &why) || r.page_key != page_key) return {};
  return r.method + " " + r.url;
}

// --- the model ---------------------------------------------------------------

void PagesModel::setIndex(PageIndex index) {
  beginResetModel();
  index_ = std::move(index);
  endResetModel();
}

const PageRecord* PagesModel::record(int row) const {
  return row >= 0 && row < rowCount() ? &index_.pages[size_t(row)] : nullptr;
}

int PagesModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : int(index_.pages.size());
}

int PagesModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : kColumns; }

QVariant PagesModel::data(const QModelIndex& index, int role) const {
  const PageRecord* r = record(index.row());
  if (!r || (role != Qt::DisplayRole && role != Qt::ToolTipRole)) return {};
  switch (index.column()) {
    case kUrl: return r->url;
    case kMethod: return r->method;
    case kVariant:
      return role == Qt::ToolTipRole ? QString::fromStdString(r->page_key) : r->variantText();
    case kExpires: return r->expires_ms ? ExpiryText(r->expires_ms, NowMs()) : QString("unknown");
  }
  return {};
}

QVariant PagesModel::headerData(int section, Qt::Orientation o, int role) const {
  if (o != Qt::Horizontal || role != Qt::DisplayRole) return {};
  static const char* names[] = {"URL", "Method", "Variant (language, time zone, Vary)", "Expires"};
  return section >= 0 && section < kColumns ? QString(names[section]) : QVariant();
}

// --- the panel ---------------------------------------------------------------

PagesPanel::PagesPanel(WriteGate* gate, QWidget* parent) : QWidget(parent), gate_(gate) {
  confirm_ = [this](const QString& title, const QString& text) {
    return QMessageBox::question(this, title, text, QMessageBox::Yes | QMessageBox::Cancel,
                                 QMessageBox::Cancel) == QMessageBox::Yes;
  };
  model_ = new PagesModel(this);
  url_ = new QLineEdit;
  url_->setObjectName("pageUrl");
  url_->setPlaceholderText("a URL, or a glob like https://shop.example/articles/*");
  url_->setClearButtonEnabled(true);
  purge_ = new QPushButton(QString::fromUtf8("Purge URL…"));
  reload_ = new QPushButton("reload");
  note_ = new QLabel;
  note_->setWordWrap(true);
  note_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  error_ = new QLabel;
  error_->setStyleSheet("color: #b00020; font-weight: bold");
  error_->setWordWrap(true);
  error_->hide();
  table_ = new QTableView;
  table_->setObjectName("pages");
  table_->setModel(model_);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setSelectionMode(QAbstractItemView::SingleSelection);
  table_->setWordWrap(false);
  table_->verticalHeader()->hide();
  table_->horizontalHeader()->setStretchLastSection(true);
  table_->setColumnWidth(PagesModel::kUrl, 320);
  table_->setColumnWidth(PagesModel::kMethod, 70);
  table_->setColumnWidth(PagesModel::kVariant, 260);

  auto* bar = new QHBoxLayout;
  bar->addWidget(url_, 1);
  bar->addWidget(purge_);
  bar->addWidget(reload_);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addLayout(bar);
  layout->addWidget(error_);
  layout->addWidget(note_);
  layout->addWidget(table_, 1);

  connect(reload_, &QPushButton::clicked, this, &PagesPanel::reload);
  connect(purge_, &QPushButton::clicked, this, [this] { purgeUrl(url_->text().trimmed()); });
  connect(url_, &QLineEdit::returnPressed, this, [this] { purgeUrl(url_->text().trimmed()); });
  connect(table_->selectionModel(), &QItemSelectionModel::selectionChanged, this, [this] {
    const QModelIndexList rows = table_->selectionModel()->selectedRows();
    if (rows.isEmpty()) return;
    if (const PageRecord* r = model_->record(rows.first().row())) {
      url_->setText(r->url);  // ready to be purged, or edited into a glob
      emit pageSelected(r->page_key, r->method + " " + r->url);
    }
  });
  connect(&load_watcher_, &QFutureWatcher<Loaded>::finished, this, &PagesPanel::onLoaded);
  connect(&count_watcher_, &QFutureWatcher<Counted>::finished, this, [this] {
    counting_ = false;
    const Counted c = count_watcher_.result();
    if (c.region != region_) return showMessage("Another region was selected: purge dropped");
    if (!c.status.ok()) return showError(StatusText(*c.region, c.status));
    if (c.keys.empty())
      return showMessage(QString("No cached page matches %1: nothing purged").arg(purging_));
    size_t records = 0;
    for (const std::string& k : c.keys) records += k.find(kRecordNamespace) != std::string::npos;
    const QString text =
        QString("Purge %1 keys of %2 (pages and their header lists: %3, URL records: %4) matching\n%5?")
            .arg(c.keys.size())
            .arg(region_->spec().name)
            .arg(c.keys.size() - records)
            .arg(records)
            .arg(purging_);
    if (!confirm_("Purge cached pages", text)) return showMessage("Purge cancelled");
    purge_->setEnabled(false);
    deleting_ = true;
    purge_watcher_.setFuture(QtConcurrent::run([gate = gate_, region = c.region, keys = c.keys] {
      Counted r;
      r.region = region;
      r.status = gate->deleteKeys(*region, keys, &r.deleted);
      return r;
    }));
  });
  connect(&purge_watcher_, &QFutureWatcher<Counted>::finished, this, [this] {
    deleting_ = false;
    purge_->setEnabled(!gate_->readOnly());
    const Counted r = purge_watcher_.result();
    if (!r.status.ok()) showError(StatusText(*r.region, r.status));
    else showMessage(QString("Purged %1 keys of %2 matching %3").arg(r.deleted).arg(r.region->spec().name, purging_));
    if (r.deleted) emit regionChanged();
    reload();
  });
}

PagesPanel::~PagesPanel() {
  load_watcher_.waitForFinished();
  count_watcher_.waitForFinished();
  purge_watcher_.waitForFinished();
}

bool PagesPanel::busy() const {
  return loading_ || counting_ || deleting_;
}

QString PagesPanel::noteText() const { return note_->text(); }

void PagesPanel::setReadOnly(bool on) {
  purge_->setEnabled(!on);
  purge_->setToolTip(on ? "read-only mode: purging is refused" : QString());
}

void PagesPanel::setRegion(RegionPtr region) {
  if (region_ == region) return;
  region_ = std::move(region);
  url_->clear();
  model_->setIndex({});
  note_->clear();
  invalidate();
}

void PagesPanel::invalidate() {
  stale_ = true;
  if (isVisible()) reload();
}

void PagesPanel::showEvent(QShowEvent* e) {
  QWidget::showEvent(e);
  if (stale_) reload();
}

void PagesPanel::lookUpUrl(const std::string& page_key) {
  if (!region_ || RecordKeyOf(page_key).empty()) return;
  auto* watcher = new QFutureWatcher<QString>(this);
  connect(watcher, &QFutureWatcher<QString>::finished, this, [this, watcher, page_key] {
    const QString url = watcher->result();
    watcher->deleteLater();
    if (!url.isEmpty()) emit urlFound(page_key, url);
  });
  watcher->setFuture(QtConcurrent::run([region = region_, page_key] { return RecordedUrl(*region, page_key); }));
}

void PagesPanel::reload() {
  error_->hide();
  stale_ = false;
  if (loading_) {
    reload_again_ = true;  // the region or its keys changed while reading
    return;
  }
  if (!region_) {
    model_->setIndex({});
    note_->setText("no region selected");
    return;
  }
  loading_ = true;
  note_->setText(QString::fromUtf8("reading the page records of %1…").arg(region_->spec().name));
  load_watcher_.setFuture(QtConcurrent::run([region = region_] {
    Loaded l;
    l.status = ReadPageIndex(*region, &l.index);
    return l;
  }));
}

void PagesPanel::onLoaded() {
  loading_ = false;
  if (reload_again_) {
    reload_again_ = false;
    reload();
    return;
  }
  Loaded l = load_watcher_.result();
  if (!l.status.ok()) {
    model_->setIndex({});
    note_->clear();
    showError(StatusText(*region_, l.status));
    return;
  }
  QString note = l.index.pages.empty()
                     ? QString("No recorded page in %1 (pages are recorded by "
                               "regioncache.cache_page or RecordPagesMiddleware)")
                           .arg(region_->spec().name)
                     : QString("%1 cached pages by URL").arg(l.index.pages.size());
  if (l.index.skipped) {
    note += QString("; %1 records skipped, unreadable or naming keys outside the page namespaces:\n")
                .arg(l.index.skipped) +
            l.index.notes.join("\n");
  }
  note_->setText(note);
  model_->setIndex(std::move(l.index));
}

void PagesPanel::purgeUrl(const QString& url_or_glob) {
  if (!region_) return showError("Purge needs a region");
  if (counting_ || deleting_) return showError("A purge is running: wait for it to end");
  if (url_or_glob.isEmpty()) return showError("Purge needs a URL or a URL glob");
  error_->hide();
  purging_ = url_or_glob;
  counting_ = true;
  count_watcher_.setFuture(QtConcurrent::run([region = region_, url_or_glob] {
    Counted c;
    c.region = region;
    PageIndex index;  // read again: what is there now is what gets purged
    c.status = ReadPageIndex(*region, &index);
    if (c.status.ok()) c.status = UrlPurgeKeys(*region, index, url_or_glob, &c.keys);
    return c;
  }));
}

void PagesPanel::showError(const QString& text) {
  last_error_ = text;
  error_->setText(text);
  error_->show();
  emit message(text);
}

void PagesPanel::showMessage(const QString& text) {
  last_message_ = text;
  emit message(text);
}

}  // namespace rcgui
