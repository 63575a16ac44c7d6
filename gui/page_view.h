// The Page view of a cached Django page (what @cache_page and the cache
// middleware store: a pickled HttpResponse, read by regioncache/django_page.h
// without unpickling): status, headers, and the body decoded by its charset,
// as source and, for HTML, as rendered text. The rendered text is laid out by
// a QTextDocument that refuses every resource (images, style sheets), so
// showing a page reads no file and opens no connection.
#pragma once

#include <QList>
#include <QPair>
#include <QString>
#include <QTextDocument>
#include <QWidget>

#include "regioncache/django_page.h"

class QLabel;
class QPlainTextEdit;
class QTabWidget;
class QTextEdit;
class QTreeWidget;

namespace rcgui {

struct PageRendered {
  bool found = false;     // a response was read (maybe only part of it)
  QString status_line;    // "200 OK · django.http.response.HttpResponse"
  QList<QPair<QString, QString>> headers;
  QString body;           // decoded by charset (gzip/deflate unpacked)
  QString body_info;      // "1.2 KiB utf-8 · gzip 410 B"
  bool html = false;
  QString note;           // what could not be read, and why ("" when whole)
};

// Turns a page read by core into what the view shows (decodes the body).
PageRendered RenderPage(const regioncache::DjangoPage& page);

// A text document that loads nothing: every resource request is refused
// (and counted, for the tests).
class OfflineDocument : public QTextDocument {
  Q_OBJECT

 public:
  using QTextDocument::QTextDocument;
  int refused() const { return refused_; }

 protected:
  QVariant loadResource(int type, const QUrl& name) override;

 private:
  int refused_ = 0;
};

class PageView : public QWidget {
  Q_OBJECT

 public:
  explicit PageView(QWidget* parent = nullptr);
  void setPage(const PageRendered& page);
  void clear();

  QString statusText() const;
  QString headersText() const;   // "Name: value" lines
  QString sourceText() const;
  QString renderedText() const;  // the rendered HTML as plain text
  QString noteText() const;
  int refusedResources() const { return doc_->refused(); }

 private:
  QLabel* status_;
  QLabel* note_;
  QTreeWidget* headers_;
  QTabWidget* body_tabs_;
  QPlainTextEdit* source_;
  QTextEdit* rendered_;
  OfflineDocument* doc_;
};

}  // namespace rcgui
