#include "page_view.h"

#include <QFontDatabase>
#include <QLabel>
#include <QPlainTextEdit>
#include <QSplitter>
#include <QStringDecoder>
#include <QTabWidget>
#include <QTextEdit>
#include <QTreeWidget>
#include <QVBoxLayout>

#include "format.h"

namespace rcgui {

PageRendered RenderPage(const regioncache::DjangoPage& page) {
  PageRendered r;
  r.found = page.found;
  if (!page.found) return r;
  r.status_line = page.status
                      ? QString("%1 %2").arg(page.status).arg(QString::fromStdString(page.reason))
                      : QString("status not read");
  r.status_line += QString::fromUtf8(" · ") + QString::fromStdString(page.class_name);
  QString content_type;
  for (const auto& [n, v] : page.headers) {
    r.headers.append({QString::fromUtf8(n.data(), static_cast<qsizetype>(n.size())),
                      QString::fromUtf8(v.data(), static_cast<qsizetype>(v.size()))});
    if (QString::fromStdString(n).compare("content-type", Qt::CaseInsensitive) == 0)
      content_type = r.headers.last().second;
  }
  const QByteArray body(page.body.data(), static_cast<qsizetype>(page.body.size()));
  QStringDecoder decoder(page.charset.c_str());
  QString note_charset;
  if (decoder.isValid()) {
    r.body = decoder.decode(body);
    if (decoder.hasError()) note_charset = QString("the body is not all valid %1").arg(QString::fromStdString(page.charset));
  } else {
    r.body = QString::fromLatin1(body);
    note_charset = QString("charset '%1' is unknown here: the body is shown as Latin-1")
                       .arg(QString::fromStdString(page.charset));
  }
  r.html = content_type.contains("html", Qt::CaseInsensitive) ||
           (content_type.isEmpty() && r.body.trimmed().startsWith('<'));
  r.body_info = QString("%1 %2").arg(HumanBytes(page.body.size()), QString::fromStdString(page.charset));
  if (!page.content_encoding.empty())
    r.body_info += QString::fromUtf8(" · %1 %2 as stored")
                       .arg(QString::fromStdString(page.content_encoding), HumanBytes(page.stored_body.size()));
  QStringList notes;
  for (const std::string& p : page.problems) notes << QString::fromUtf8(p.data(), static_cast<qsizetype>(p.size()));
  if (!note_charset.isEmpty()) notes << note_charset;
  if (!notes.isEmpty()) r.note = "Shown: what could be read. Not read: " + notes.join("; ");
  return r;
}

QVariant OfflineDocument::loadResource(int, const QUrl&) {
  ++refused_;
  return {};
}

PageView::PageView(QWidget* parent) : QWidget(parent) {
  status_ = new QLabel;
  status_->setObjectName("pageStatus");
  status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  QFont bold = status_->font();
  bold.setBold(true);
  status_->setFont(bold);
  note_ = new QLabel;
  note_->setObjectName("pageNote");
  note_->setWordWrap(true);
  note_->setStyleSheet("color: #b00020");
  note_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  headers_ = new QTreeWidget;
  headers_->setObjectName("pageHeaders");
  headers_->setHeaderLabels({"header", "value"});
  headers_->setRootIsDecorated(false);
  source_ = new QPlainTextEdit;
  source_->setReadOnly(true);
  source_->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  doc_ = new OfflineDocument(this);
  rendered_ = new QTextEdit;  // not a QTextBrowser: links are not followed either
  rendered_->setReadOnly(true);
  rendered_->setDocument(doc_);
  body_tabs_ = new QTabWidget;
  body_tabs_->addTab(source_, "Source");
  body_tabs_->addTab(rendered_, "Rendered");
  auto* split = new QSplitter(Qt::Vertical);
  split->addWidget(headers_);
  split->addWidget(body_tabs_);
  split->setStretchFactor(1, 3);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addWidget(status_);
  layout->addWidget(note_);
  layout->addWidget(split, 1);
  clear();
}

void PageView::clear() {
  status_->setText("not a cached page");
  note_->clear();
  note_->hide();
  headers_->clear();
  source_->clear();
  doc_->clear();
}

void PageView::setPage(const PageRendered& page) {
  clear();
  if (!page.found) return;
  status_->setText(page.status_line + QString::fromUtf8(" · ") + page.body_info);
  note_->setText(page.note);
  note_->setVisible(!page.note.isEmpty());
  for (const auto& [n, v] : page.headers) headers_->addTopLevelItem(new QTreeWidgetItem({n, v}));
  headers_->resizeColumnToContents(0);
  source_->setPlainText(page.body);
  if (page.html) doc_->setHtml(page.body);
  else doc_->setPlainText(page.body);
  body_tabs_->setTabEnabled(1, true);
  body_tabs_->setCurrentIndex(page.html ? 1 : 0);
}

QString PageView::statusText() const { return status_->text(); }

QString PageView::headersText() const {
  QString out;
  for (int k = 0; k < headers_->topLevelItemCount(); ++k)
    out += headers_->topLevelItem(k)->text(0) + ": " + headers_->topLevelItem(k)->text(1) + "\n";
  return out;
}

QString PageView::sourceText() const { return source_->toPlainText(); }
QString PageView::renderedText() const { return doc_->toPlainText(); }
QString PageView::noteText() const { return note_->isHidden() ? QString() : note_->text(); }

}  // namespace rcgui
