#include "value_viewer.h"

#include <QFontDatabase>
#include <QHBoxLayout>
#include <QJsonDocument>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QScrollArea>
#include <QTabWidget>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include "format.h"
#include "pickle_disasm.h"
#include "regioncache/clock.h"
#include "regioncache/codec.h"
#include "regioncache/django_page.h"
#include "regioncache/pickle_reader.h"

namespace rcgui {

namespace {

// Tab order matches ValueView; then the Tree and Page tabs.
constexpr int kTabOf[] = {0, 1, 2, 3, 4};
constexpr int kTreeTab = 5, kPageTab = 6;
constexpr qsizetype kMaxTreeInput = qsizetype{64} << 20;  // bytes read into a tree

QPlainTextEdit* MakeTextView(bool mono) {
  auto* e = new QPlainTextEdit;
  e->setReadOnly(true);
  e->setLineWrapMode(mono ? QPlainTextEdit::NoWrap : QPlainTextEdit::WidgetWidth);
  if (mono) e->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  return e;
}

}  // namespace

RenderedValue RenderValue(Region& region, const std::string& key, qsizetype cap) {
  RenderedValue r;
  regioncache::Status s;
  auto store = region.acquire(&s);
  regioncache::Value value;
  if (store) s = store->Peek(key, &value);
  if (!s.ok()) {
    r.error = s.IsNotFound()
                  ? QString("region '%1': key %2 is gone (deleted, expired or evicted)")
                        .arg(region.spec().name, QString::fromStdString(key))
                  : StatusText(region, s);
    return r;
  }
  const QByteArray bytes(value.data.data(), static_cast<qsizetype>(value.data.size()));
  r.ok = true;
  r.total = static_cast<uint64_t>(bytes.size());
  r.best = BestView(bytes, value.flags);
  r.summary = QString("%1 · %2 · %3").arg(HumanBytes(r.total), EncodingText(value.flags),
                                           "expires " + ExpiryText(value.expires_ms, regioncache::NowMs()));

  const bool capped = cap > 0 && bytes.size() > cap;
  r.capped = capped;
  const QByteArray head = capped ? bytes.left(cap) : bytes;
  r.text = QString::fromUtf8(head);
  if (!LooksLikeText(head) && regioncache::Encoding(value.flags) != regioncache::kEncStr)
    r.text.prepend("[not text: shown with replacement characters; see Hex]\n");
  r.hex = HexDump(bytes, capped ? cap : bytes.size());
  QJsonParseError perr;
  QJsonDocument doc = QJsonDocument::fromJson(bytes, &perr);
  if (doc.isNull()) {
    r.json = QString("not JSON: %1 at offset %2").arg(perr.errorString()).arg(perr.offset);
  } else {
    QByteArray pretty = doc.toJson(QJsonDocument::Indented);
    r.json = QString::fromUtf8(capped ? pretty.left(cap * 2) : pretty);
    if (capped && pretty.size() > cap * 2) r.json += QString::fromUtf8("\n… (Load all shows the rest)");
  }
  QString fmt = ImageFormat(bytes);
  if (!fmt.isEmpty()) {
    if (r.image.loadFromData(bytes, fmt.toLatin1().constData()))
      r.image_info = QString("%1 image, %2 × %3").arg(fmt).arg(r.image.width()).arg(r.image.height());
    else
      r.image_info = QString("looks like %1 but does not decode").arg(fmt);
  } else {
    r.image_info = "not a PNG, JPEG or GIF image";
  }
  if (regioncache::Encoding(value.flags) == regioncache::kEncPickle || r.best == ValueView::kPickle) {
    PickleListing l = DisassemblePickle(bytes, capped ? 20000 : 5000000);
    r.pickle = PickleListingText(l);
    regioncache::pickle::Tree tree;
    regioncache::Status ps =
        bytes.size() > kMaxTreeInput
            ? regioncache::Status::InvalidArgument("pickle: larger than the " + std::to_string(kMaxTreeInput) +
                                                   " bytes the tree view reads")
            : regioncache::pickle::ReadPickle(value.data, &tree);
    if (ps.ok()) {
      r.tree = BuildPickleRows(tree);
      if (r.tree.cut) r.tree_note = QString("showing the first %1 rows").arg(r.tree.rows);
    } else {
      const QString why = QString::fromStdString(ps.message());
      r.tree_note = "Not read as a tree: " + why + ". The Pickle tab lists its opcodes.";
      r.pickle.prepend("[not read as a tree: " + why + "]\n\n");
    }
    regioncache::DjangoPage page;
    (void)regioncache::PageFromTree(tree, ps, &page);
    r.page = RenderPage(page);
  } else {
    r.pickle = "not a pickle (encoding " + EncodingText(value.flags) + ")";
  }
  return r;
}

ValueViewer::ValueViewer(QWidget* parent) : QWidget(parent) {
  summary_ = new QLabel;
  summary_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  summary_->setWordWrap(true);
  url_ = new QLabel;
  url_->setObjectName("pageUrl");
  url_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  url_->hide();
  tabs_ = new QTabWidget;
  text_ = MakeTextView(false);
  hex_ = MakeTextView(true);
  json_ = MakeTextView(true);
  pickle_ = MakeTextView(true);
  tree_ = new PickleTreeView;
  page_ = new PageView;
  image_ = new QLabel;
  image_->setAlignment(Qt::AlignCenter);
  image_area_ = new QScrollArea;
  image_area_->setWidget(image_);
  image_area_->setWidgetResizable(true);
  tabs_->addTab(text_, "Text");
  tabs_->addTab(hex_, "Hex");
  tabs_->addTab(json_, "JSON");
  tabs_->addTab(image_area_, "Image");
  tabs_->addTab(pickle_, "Pickle");
  tabs_->addTab(tree_, "Tree");
  tabs_->addTab(page_, "Page");
  cap_note_ = new QLabel;
  load_all_ = new QPushButton("Load all");
  load_all_->setObjectName("loadAll");
  auto* cap_row = new QHBoxLayout;
  cap_row->addWidget(cap_note_, 1);
  cap_row->addWidget(load_all_);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addWidget(summary_);
  layout->addWidget(url_);
  layout->addWidget(tabs_, 1);
  layout->addLayout(cap_row);
  connect(load_all_, &QPushButton::clicked, this, &ValueViewer::loadAll);
  connect(&watcher_, &QFutureWatcher<RenderedValue>::finished, this, [this] {
    if (watched_generation_ == generation_) {
      waiting_ = false;
      showRendered(watcher_.result());
      emit loaded();
    } else {
      startRender();  // a newer key (or Load all) was asked for while this one rendered
    }
  });
  showNothing();
}

ValueViewer::~ValueViewer() { watcher_.waitForFinished(); }

void ValueViewer::showNothing() {
  ++generation_;
  waiting_ = false;
  region_.reset();
  key_.clear();
  showRendered(RenderedValue{false, {}, "select a key to see its value", {}, {}, {}, {}, {}, {}, ValueView::kText, 0, false});
}

void ValueViewer::showKey(RegionPtr region, const std::string& key) {
  region_ = std::move(region);
  key_ = key;
  ++generation_;
  waiting_ = true;
  want_all_ = false;
  summary_->setText(QString::fromUtf8("reading %1 …").arg(QString::fromStdString(key)));
  if (!watcher_.isRunning()) startRender();
}

void ValueViewer::loadAll() {
  if (!region_) return;
  ++generation_;
  waiting_ = true;
  want_all_ = true;
  if (!watcher_.isRunning()) startRender();
}

void ValueViewer::startRender() {
  if (!region_) return;
  watched_generation_ = generation_;
  watcher_.setFuture(QtConcurrent::run([region = region_, key = key_, all = want_all_] {
    return RenderValue(*region, key, all ? 0 : kCap);
  }));
}

ValueView ValueViewer::currentView() const {
  const int tab = tabs_->currentIndex();
  return tab >= kTreeTab ? ValueView::kPickle : static_cast<ValueView>(tab);
}

void ValueViewer::setPageUrl(const std::string& key, const QString& url) {
  url_key_ = key;
  url_text_ = url;
  if (key == key_ && !waiting_ && shown_.ok && shown_.page.found) {  // already on screen
    url_->setText("URL: " + url);
    url_->show();
  }
}

QString ValueViewer::pageUrlText() const { return url_->isHidden() ? QString() : url_->text(); }

QString ValueViewer::currentTabName() const { return tabs_->tabText(tabs_->currentIndex()); }

void ValueViewer::showRendered(const RenderedValue& v) {
  shown_ = v;
  const bool url = v.ok && v.page.found && !url_key_.empty() && url_key_ == key_;
  url_->setText(url ? QString("URL: ") + url_text_ : QString());
  url_->setVisible(url);
  if (!v.ok) {
    summary_->setText(v.error.isEmpty() ? v.summary : v.error);
    summary_->setStyleSheet(v.error.isEmpty() ? QString() : QString("color: #b00020"));
    for (auto* e : {text_, hex_, json_, pickle_}) e->clear();
    tree_->clear();
    page_->clear();
    image_->clear();
    cap_note_->clear();
    load_all_->hide();
    return;
  }
  summary_->setStyleSheet(QString());
  summary_->setText(QString::fromStdString(key_) + "\n" + v.summary);
  text_->setPlainText(v.text);
  hex_->setPlainText(v.hex);
  json_->setPlainText(v.json);
  pickle_->setPlainText(v.pickle);
  if (!v.image.isNull()) {
    image_->setPixmap(QPixmap::fromImage(v.image));
    image_->setToolTip(v.image_info);
    summary_->setText(summary_->text() + " · " + v.image_info);
  } else {
    image_->setPixmap(QPixmap());
    image_->setText(v.image_info);
  }
  tree_->setRows(v.tree, v.tree_note);
  page_->setPage(v.page);
  if (v.page.found)
    tabs_->setCurrentIndex(kPageTab);
  else if (v.best == ValueView::kPickle && v.tree.ok)
    tabs_->setCurrentIndex(kTreeTab);
  else
    tabs_->setCurrentIndex(kTabOf[static_cast<int>(v.best)]);
  cap_note_->setText(v.capped ? QString("showing the first %1 of %2").arg(HumanBytes(kCap), HumanBytes(v.total))
                              : QString());
  load_all_->setVisible(v.capped);
}

}  // namespace rcgui
